/*
 * grammar_bench — what constrained decoding costs per token over a real vocabulary.
 * Not a test (timings are noisy on shared machines); figures go to docs/PERF.md.
 *
 *   build/grammar_bench [-m VOCAB.gguf] [--reps N]
 *
 * Builds the grammar vocabulary (the prefix trie) of the file's tokenizer, then
 * follows a JSON text, tokenized by the same tokenizer, through a JSON-schema
 * grammar (and the generic json_object one): at every token it times the check of
 * that one token (what the sampler pays when the model's pick is allowed) and the
 * full mask over the vocabulary (what it pays when the pick is rejected), and the
 * advance. Each figure is the best of --reps passes over the text, in CPU time of the
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
    double check, mask, accept; /* seconds per token */
    double mask_max;
    int32_t allowed_min, allowed_max;
} figures;

/* One pass over the tokens: per-token times into f (keeping the best pass). */
static int run_pass(const halo_grammar *g, const halo_grammar_vocab *v, const int32_t *ids,
                    size_t n, uint8_t *allowed, figures *f) {
    halo_grammar_matcher *m = NULL;
    halo_error err = {0};
    if (halo_grammar_matcher_new(g, v, &m, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
    double t_check = 0, t_mask = 0, t_accept = 0, t_max = 0;
    int32_t amin = INT32_MAX, amax = 0;
    for (size_t i = 0; i < n; i++) {
        double t0 = now();
        bool ok = halo_grammar_matcher_allows(m, ids[i]);
        double t1 = now();
        int32_t count = halo_grammar_matcher_mask(m, allowed);
        double t2 = now();
        if (!ok || !allowed[ids[i]] || !halo_grammar_matcher_accept(m, ids[i])) {
            fprintf(stderr, "grammar_bench: token %zu (%d) rejected\n", i, (int)ids[i]);
            halo_grammar_matcher_free(m);
            return -1;
        }
        double t3 = now();
        t_check += t1 - t0, t_mask += t2 - t1, t_accept += t3 - t2;
        if (t2 - t1 > t_max) t_max = t2 - t1;
        if (count < amin) amin = count;
        if (count > amax) amax = count;
    }
    halo_grammar_matcher_free(m);
    double k = 1.0 / (double)n;
    if (f->mask == 0 || t_mask * k < f->mask) {
        *f = (figures){t_check * k, t_mask * k, t_accept * k, t_max, amin, amax};
    }
    return 0;
}

static int bench_grammar(const char *label, const char *gbnf, const halo_grammar_vocab *v,
                         const int32_t *ids, size_t n, int reps) {
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
        printf("%-12s %6zu tokens  check %6.2f us  mask %8.1f us (max %8.1f)  accept %6.2f us  "
               "allowed %d..%d\n",
               label, n, 1e6 * f.check, 1e6 * f.mask, 1e6 * f.mask_max, 1e6 * f.accept,
               (int)f.allowed_min, (int)f.allowed_max);
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
    int rc = bench_grammar("json_schema", gbnf, v, ids, n, reps);
    if (rc == 0) rc = bench_grammar("json_object", halo_json_object_gbnf(), v, ids, n, reps);
    free(gbnf);
    cJSON_Delete(schema);
    free(ids);
    halo_grammar_vocab_free(v);
    halo_tokenizer_free(t);
    return rc ? 1 : 0;
}
