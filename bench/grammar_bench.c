/*
 * grammar_bench — what constrained decoding costs per token over a real vocabulary.
 * Not a test (timings are noisy on shared machines); figures go to docs/PERF.md.
 *
 *   build/grammar_bench [-m VOCAB.gguf] [--reps N]
 *
 * Builds the grammar vocabulary (the prefix trie) of the file's tokenizer, then
 * follows a JSON text, tokenized by the same tokenizer, through a JSON-schema
 * grammar (and the generic json_object one): at every token it times the check of
 * that one token with the advance over it (what the sampler pays when the model's
 * pick is allowed) and the full mask over the vocabulary (what it pays when the pick
 * is rejected). Each figure is the best of --reps passes over the text, in CPU time of the
 * thread (the machine may be shared; memory stalls still count).
 */
#include "halo.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU time of this thread: the machine is shared, and the walk is single-threaded */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char schema_text[] =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
    "\"integer\"},\"languages\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},\"bio\":"
    "{\"type\":\"string\"}},\"required\":[\"name\",\"age\",\"languages\",\"bio\"],"
    "\"additionalProperties\":false}";

static const char sample[] =
    "{\"name\": \"Ada Lovelace\", \"age\": 36, \"languages\": [\"English\", \"French\"], "
    "\"bio\": \"Mathematician and writer, known for her work on Charles Babbage's proposed "
    "mechanical general-purpose computer, the Analytical Engine.\"}";

typedef struct figures {
    double step; /* seconds per token: the one-token check and the advance */
    double mask; /* seconds per token: the full mask */
    double mask_max;
    int32_t allowed_min, allowed_max;
} figures;

/* One pass over the tokens, each checked and accepted, timed as a whole (the check
 * alone is too short for the clock). */
static int time_steps(const halo_grammar *g, const halo_grammar_vocab *v, const int32_t *ids,
                      size_t n, double *per_token) {
    halo_grammar_matcher *m = NULL;
    halo_error err = {0};
    if (halo_grammar_matcher_new(g, v, &m, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
    double t0 = now();
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++)
        ok = halo_grammar_matcher_allows(m, ids[i]) && halo_grammar_matcher_accept(m, ids[i]);
    *per_token = (now() - t0) / (double)n;
    halo_grammar_matcher_free(m);
    if (!ok) fprintf(stderr, "grammar_bench: the text breaks the grammar\n");
    return ok ? 0 : -1;
}

/* One pass with the full mask at every token (each timed), checked against the token. */
static int time_masks(const halo_grammar *g, const halo_grammar_vocab *v, const int32_t *ids,
                      size_t n, uint8_t *allowed, figures *f) {
    halo_grammar_matcher *m = NULL;
    halo_error err = {0};
    if (halo_grammar_matcher_new(g, v, &m, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
    double total = 0, max = 0;
    int32_t amin = INT32_MAX, amax = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        double t0 = now();
        int32_t count = halo_grammar_matcher_mask(m, allowed);
        double t = now() - t0;
        total += t;
        if (t > max) max = t;
        if (count < amin) amin = count;
        if (count > amax) amax = count;
        if (!allowed[ids[i]] || !halo_grammar_matcher_accept(m, ids[i])) {
            fprintf(stderr, "grammar_bench: token %zu (%d) rejected\n", i, (int)ids[i]);
            rc = -1;
        }
    }
    halo_grammar_matcher_free(m);
    if (rc == 0 && (f->mask == 0 || total / (double)n < f->mask)) {
        f->mask = total / (double)n;
        f->mask_max = max;
        f->allowed_min = amin;
        f->allowed_max = amax;
    }
    return rc;
}

static int run_pass(const halo_grammar *g, const halo_grammar_vocab *v, const int32_t *ids,
                    size_t n, uint8_t *allowed, figures *f) {
    double step;
    if (time_steps(g, v, ids, n, &step)) return -1;
    if (f->step == 0 || step < f->step) f->step = step;
    return time_masks(g, v, ids, n, allowed, f);
}

/* The sampler when its first pick is rejected (an end-of-generation token before the
 * text is complete, 20 nats above the rest): the time of halo_sampler_sample per token
 * with top-k (the best allowed candidates are found by checking) and without (the
 * whole vocabulary is masked). The text's own token is 5 nats up, and is what is
 * accepted. Returns seconds per token, or -1. */
static double time_sampler(const halo_grammar *g, const halo_grammar_vocab *v, const int32_t *ids,
                           size_t n, int32_t eog, int32_t top_k) {
    int32_t nv = halo_grammar_vocab_n_tokens(v);
    halo_sampler_params sp;
    halo_sampler_default_params(&sp);
    sp.top_k = top_k;
    sp.seed = 1;
    halo_sampler *s = NULL;
    halo_grammar_matcher *m = NULL;
    halo_error err = {0};
    float *logits = malloc(sizeof *logits * (size_t)nv);
    if (!logits || halo_sampler_new(&sp, nv, &s, &err) || halo_grammar_matcher_new(g, v, &m, &err))
        return -1;
    halo_sampler_set_grammar(s, m);
    uint64_t x = 88172645463325252ull;
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        for (int32_t t = 0; t < nv; t++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            logits[t] = (float)(x >> 40) * 0x1p-24f * 4.0f;
        }
        logits[ids[i]] += 5.0f;
        logits[eog] += 20.0f;
        double t0 = now();
        halo_sampler_sample(s, logits);
        total += now() - t0;
        halo_sampler_accept(s, ids[i]);
    }
    halo_sampler_free(s);
    halo_grammar_matcher_free(m);
    free(logits);
    return total / (double)n;
}

static int bench_grammar(const char *label, const char *gbnf, const halo_grammar_vocab *v,
                         const int32_t *ids, size_t n, int32_t eog, int reps) {
    halo_grammar *g = NULL;
    halo_error err = {0};
    if (halo_grammar_compile(gbnf, strlen(gbnf), NULL, &g, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    uint8_t *allowed = malloc((size_t)halo_grammar_vocab_n_tokens(v));
    figures f = {0};
    int rc = 0;
    for (int r = 0; r < reps && rc == 0; r++)
        rc = run_pass(g, v, ids, n, allowed, &f);
    if (rc == 0)
        printf("%-12s %5zu tokens  check+advance %6.2f us  mask %8.1f us (max %8.1f)  "
               "allowed %d..%d\n",
               label, n, 1e6 * f.step, 1e6 * f.mask, 1e6 * f.mask_max, (int)f.allowed_min,
               (int)f.allowed_max);
    if (rc == 0) {
        double k40 = time_sampler(g, v, ids, n, eog, 40), k0 = time_sampler(g, v, ids, n, eog, 0);
        printf("%-12s sampler, first pick rejected: top-k 40 %8.1f us, no top-k %8.1f us\n", "",
               1e6 * k40, 1e6 * k0);
    }
    free(allowed);
    halo_grammar_free(g);
    return rc;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else
            return fprintf(stderr, "usage: grammar_bench [-m VOCAB.gguf] [--reps N]\n"), 2;
    }
    static char def[1024];
    if (!path) {
        const char *fx = getenv("HALO_FIXTURES");
        snprintf(def, sizeof def, "%s/models/qwen3-vocab.gguf", fx ? fx : "../shared/fixtures");
        path = def;
    }
    halo_gguf *gg = NULL;
    halo_tokenizer *t = NULL;
    halo_error err = {0};
    if (halo_gguf_open(path, NULL, &gg, &err) || halo_tokenizer_load(gg, &t, &err))
        return fprintf(stderr, "grammar_bench: %s: %s\n", path, err.msg), 1;
    halo_gguf_close(gg);

    double t0 = now();
    halo_grammar_vocab *v = NULL;
    if (halo_tok_grammar_vocab(t, false, &v, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    double t_build = now() - t0;
    printf("vocabulary   %s: %d tokens, trie of %zu nodes built in %.1f ms\n", path,
           (int)halo_tok_n_vocab(t), halo_grammar_vocab_n_nodes(v), 1e3 * t_build);

    int32_t *ids = NULL;
    size_t n = 0;
    if (halo_tok_encode(t, sample, strlen(sample), 0, &ids, &n, &err))
        return fprintf(stderr, "%s\n", err.msg), 1;
    cJSON *schema = cJSON_Parse(schema_text);
    char *gbnf = NULL;
    if (halo_json_schema_to_gbnf(schema, &gbnf, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    int32_t eog = -1;
    for (int32_t id = 0; id < halo_tok_n_vocab(t) && eog < 0; id++)
        if (halo_tok_is_eog(t, id)) eog = id;
    int rc = bench_grammar("json_schema", gbnf, v, ids, n, eog, reps);
    if (rc == 0) rc = bench_grammar("json_object", halo_json_object_gbnf(), v, ids, n, eog, reps);
    free(gbnf);
    cJSON_Delete(schema);
    free(ids);
    halo_grammar_vocab_free(v);
    halo_tokenizer_free(t);
    return rc ? 1 : 0;
}
