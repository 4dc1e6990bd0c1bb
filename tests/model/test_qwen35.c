/* The Qwen3.5 hybrids (qwen35, qwen35moe) end to end, through the public API:
 * (their logits against the original implementation's: test_refs)
 * - consistency: one batch == chunks of 7 (and 13) == token by token (f32 and f16 KV),
 *   two sequences in one batch == each alone, q8_0 KV near f16;
 * - the recurrent state carried by halo_seq_copy and by state checkpoints.
 * Every measured figure is printed. */
#include "compare.h"
#include "harness.h"
#include "halo.h"

#include <math.h>
#include <stdint.h>

typedef struct ref_seq {
    int32_t tokens[64];
    int32_t n;
} ref_seq;

typedef struct fixture {
    const char *name;      /* models/NAME.gguf, refs/NAME.logits.* */
    ref_seq seq[2];
    int32_t n_vocab;
    float *ref;            /* [64][n_vocab] both sequences */
} fixture;

/* The token lists from NAME.logits.json: "tokens": [a, b, ...] twice. */
static bool read_refs(fixture *f) {
    char rel[256];
    snprintf(rel, sizeof rel, "refs/%s.logits.json", f->name);
    size_t size;
    char *json = halo_test_read_file(halo_test_fixture_path(rel), &size);
    if (!json) return false;
    const char *p = json;
    for (int s = 0; s < 2; s++) {
        p = strstr(p, "\"tokens\"");
        if (!p) break;
        p = strchr(p, '[') + 1;
        f->seq[s].n = 0;
        while (*p && *p != ']' && f->seq[s].n < 64) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p) { p++; continue; }
            f->seq[s].tokens[f->seq[s].n++] = (int32_t)v;
            p = end;
        }
    }
    const char *nv = strstr(json, "\"n_vocab\"");
    f->n_vocab = nv ? (int32_t)strtol(strchr(nv, ':') + 1, NULL, 10) : 0;
    free(json);
    snprintf(rel, sizeof rel, "refs/%s.logits.f32", f->name);
    f->ref = halo_test_read_file(halo_test_fixture_path(rel), &size);
    return f->ref && f->n_vocab > 0 && f->seq[0].n > 0 && f->seq[1].n > 0 &&
           size == sizeof(float) * (size_t)(f->seq[0].n + f->seq[1].n) * (size_t)f->n_vocab;
}

/* Two threads where several sequences share a batch (the heads and sequences
 * split over threads), one elsewhere (fast under the sanitizers). */
static halo_context *make_ctx(halo_model *m, int type_kv, uint32_t n_seq) {
    halo_context_params p;
    halo_context_default_params(&p);
    p.n_ctx = 256;
    p.n_seq_max = n_seq;
    p.n_threads = n_seq > 1 ? 2 : 1;
    p.type_k = p.type_v = type_kv;
    halo_context *ctx = NULL;
    halo_error err = {0};
    if (halo_context_new(m, &p, &ctx, &err)) fprintf(stderr, "context: %s\n", err.msg);
    return ctx;
}

/* Feed tokens[0..n) of sequence `seq` from position `pos0` in pieces of `chunk`
 * tokens; the logits of every token go to out[n][n_vocab]. */
static bool feed(halo_context *ctx, const int32_t *tokens, int32_t n, int32_t seq, int32_t pos0,
                 int32_t chunk, int32_t n_vocab, float *out) {
    int32_t pos[64], seqs[64];
    int8_t want[64];
    for (int32_t t0 = 0; t0 < n; t0 += chunk) {
        const int32_t c = n - t0 < chunk ? n - t0 : chunk;
        for (int32_t i = 0; i < c; i++) pos[i] = pos0 + t0 + i, seqs[i] = seq, want[i] = 1;
        halo_batch b = {.n_tokens = c, .token = tokens + t0, .pos = pos, .seq_id = seqs, .logits = want};
        halo_error err = {0};
        if (halo_decode(ctx, &b, &err)) {
            fprintf(stderr, "decode: %s\n", err.msg);
            return false;
        }
        for (int32_t i = 0; i < c; i++)
            memcpy(out + (size_t)(t0 + i) * n_vocab, halo_get_logits(ctx, i),
                   sizeof(float) * (size_t)n_vocab);
    }
    return true;
}

/* Both reference sequences, each from an empty cache, in pieces of `chunk`. */
static bool eval_refs(halo_model *m, const fixture *f, int type_kv, int32_t chunk, float *out) {
    halo_context *ctx = make_ctx(m, type_kv, 1);
    if (!ctx) return false;
    bool ok = true;
    size_t off = 0;
    for (int s = 0; s < 2 && ok; s++) {
        halo_seq_clear(ctx, 0);
        ok = feed(ctx, f->seq[s].tokens, f->seq[s].n, 0, 0, chunk, f->n_vocab,
                  out + off * f->n_vocab);
        off += (size_t)f->seq[s].n;
    }
    halo_context_free(ctx);
    return ok;
}

/* quick (HALO_TEST_QUICK=1, the sanitizer build): 16 tokens of each sequence */
static void test_model(fixture *f, bool quick) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s.gguf", f->name);
    halo_model *m = NULL;
    halo_error err = {0};
    CHECK_MSG(read_refs(f), "%s: reference files unreadable", f->name);
    CHECK_MSG(halo_model_load(halo_test_fixture_path(rel), NULL, &m, &err) == 0, "%s: %s",
              f->name, err.msg);
    if (!m || !f->ref) return;
    if (quick)
        for (int i = 0; i < 2; i++) f->seq[i].n = f->seq[i].n < 16 ? f->seq[i].n : 16;
    CHECK(halo_model_n_vocab(m) == f->n_vocab);
    const int32_t nv = f->n_vocab, n0 = f->seq[0].n, n1 = f->seq[1].n, nt = n0 + n1;
    const size_t total = (size_t)nt * nv;
    float *base = malloc(sizeof(float) * total), *alt = malloc(sizeof(float) * total);
    float *f32 = malloc(sizeof(float) * total);

    /* the default (f16) cache, one batch per sequence: the base of the comparisons
     * below (test_refs checks it against the reference) */
    CHECK(eval_refs(m, f, 1 /* F16 */, 64, base));
    double e;

    /* one batch vs chunks of 7 vs token by token */
    const int types[2] = {0 /* F32 */, 1 /* F16 */};
    const double limits[2] = {1e-4, 1e-3};
    for (int ti = 0; ti < 2; ti++) {
        float *one = ti == 0 ? f32 : base;
        if (ti == 0) CHECK(eval_refs(m, f, types[ti], 64, one));
        /* 7 and 1: the recurrent step; 13: the chunked form from a carried state */
        const int32_t chunks[3] = {7, 1, 13};
        for (int ci = 0; ci < 3; ci++) {
            CHECK(eval_refs(m, f, types[ti], chunks[ci], alt));
            e = rel_rms(alt, one, total);
            printf("%s: %s KV, chunks of %d vs one batch: %.3e (limit %.0e)\n", f->name,
                   ti == 0 ? "f32" : "f16", chunks[ci], e, limits[ti]);
            CHECK_MSG(e <= limits[ti], "%s: chunks of %d: %.3g", f->name, chunks[ci], e);
        }
    }
    if (!quick) printf("%s: f32 KV vs reference %.3e\n", f->name, rel_rms(f32, f->ref, total));

    /* q8_0 cache near f16 */
    CHECK(eval_refs(m, f, 8 /* Q8_0 */, 64, alt));
    e = rel_rms(alt, base, total);
    printf("%s: q8_0 KV vs f16: %.3e (limit 1e-2)\n", f->name, e);
    CHECK_MSG(e <= 1e-2, "%s: q8_0 %.3g", f->name, e);

    /* two sequences interleaved in one batch == each alone (f32 cache) */
    halo_context *ctx = make_ctx(m, 0, 2);
    CHECK(ctx != NULL);
    if (ctx) {
        int32_t tok[128], pos[128], seq[128];
        int8_t want[128];
        int32_t n = 0, i0 = 0, i1 = 0;
        while (i0 < n0 || i1 < n1) { /* 2 of seq 0, then 1 of seq 1, ... */
            for (int r = 0; r < 2 && i0 < n0; r++, n++)
                tok[n] = f->seq[0].tokens[i0], pos[n] = i0++, seq[n] = 0;
            if (i1 < n1) tok[n] = f->seq[1].tokens[i1], pos[n] = i1++, seq[n] = 1, n++;
        }
        for (int32_t i = 0; i < n; i++) want[i] = 1;
        halo_batch b = {.n_tokens = n, .token = tok, .pos = pos, .seq_id = seq, .logits = want};
        CHECK_MSG(halo_decode(ctx, &b, &err) == 0, "%s", err.msg);
        for (int32_t i = 0; i < n; i++) {
            const float *l = halo_get_logits(ctx, i);
            size_t row = seq[i] == 0 ? (size_t)pos[i] : (size_t)(n0 + pos[i]);
            if (l) memcpy(alt + row * nv, l, sizeof(float) * (size_t)nv);
        }
        e = rel_rms(alt, f32, total);
        printf("%s: two sequences in one batch vs each alone: %.3e (limit 1e-4)\n", f->name, e);
        CHECK_MSG(e <= 1e-4, "%s: two sequences %.3g", f->name, e);

        /* halo_seq_copy carries the recurrent state: the first half in seq 0,
         * copied to seq 1, the second half continued there */
        const int32_t half = n0 / 2;
        halo_seq_clear(ctx, 0), halo_seq_clear(ctx, 1);
        CHECK(feed(ctx, f->seq[0].tokens, half, 0, 0, half, nv, alt));
        CHECK_MSG(halo_seq_copy(ctx, 0, 1, &err) == 0, "%s", err.msg);
        CHECK(halo_seq_length(ctx, 1) == half);
        CHECK(feed(ctx, f->seq[0].tokens + half, n0 - half, 1, half, 7, nv,
                   alt + (size_t)half * nv));
        e = rel_rms(alt, f32, (size_t)n0 * nv);
        printf("%s: continued after halo_seq_copy: %.3e (limit 1e-4)\n", f->name, e);
        CHECK_MSG(e <= 1e-4, "%s: seq_copy %.3g", f->name, e);

        /* a checkpoint of seq 0 after `half` tokens: run on with other tokens,
         * restore, and the real continuation gives the reference logits again */
        size_t sz = halo_seq_state_size(ctx);
        CHECK(sz > 0);
        void *state = malloc(sz ? sz : 1);
        CHECK_MSG(halo_seq_state_save(ctx, 0, state, &err) == 0, "%s", err.msg);
        CHECK(feed(ctx, f->seq[1].tokens, 9, 0, half, 9, nv, alt + (size_t)half * nv));
        CHECK_MSG(halo_seq_state_load(ctx, 0, state, half, &err) == 0, "%s", err.msg);
        CHECK(halo_seq_length(ctx, 0) == half);
        CHECK(feed(ctx, f->seq[0].tokens + half, n0 - half, 0, half, n0 - half, nv,
                   alt + (size_t)half * nv));
        e = rel_rms(alt, f32, (size_t)n0 * nv);
        printf("%s: continued after a state checkpoint restore: %.3e (limit 1e-4)\n", f->name, e);
        CHECK_MSG(e <= 1e-4, "%s: checkpoint %.3g", f->name, e);
        /* the same through a buffer in the backend's memory */
        void *dev = halo_state_buf_new(ctx);
        CHECK(dev != NULL);
        CHECK_MSG(halo_seq_state_load(ctx, 0, state, half, &err) == 0, "%s", err.msg);
        CHECK_MSG(halo_seq_state_save_buf(ctx, 0, dev, &err) == 0, "%s", err.msg);
        CHECK(feed(ctx, f->seq[1].tokens, 9, 0, half, 9, nv, alt + (size_t)half * nv));
        CHECK_MSG(halo_seq_state_load_buf(ctx, 0, dev, half, &err) == 0, "%s", err.msg);
        CHECK(halo_seq_length(ctx, 0) == half);
        CHECK(halo_seq_state_load_buf(ctx, 0, dev, half + 1, &err) == HALO_ERR_ARG);
        CHECK(feed(ctx, f->seq[0].tokens + half, n0 - half, 0, half, n0 - half, nv,
                   alt + (size_t)half * nv));
        e = rel_rms(alt, f32, (size_t)n0 * nv);
        printf("%s: continued after a backend-buffer checkpoint restore: %.3e (limit 1e-4)\n",
               f->name, e);
        CHECK_MSG(e <= 1e-4, "%s: backend checkpoint %.3g", f->name, e);
        halo_state_buf_free(ctx, dev);
        /* a hybrid cannot roll back by truncation */
        CHECK(halo_seq_truncate(ctx, 0, 3, &err) == HALO_ERR_UNSUPPORTED);
        free(state);
        halo_context_free(ctx);
    }
    free(base), free(alt), free(f32), free(f->ref);
    halo_model_free(m);
}

int main(void) {
    halo_test_require_fixtures();
    halo_log_set_level(HALO_LOG_WARN);
    const char *q = getenv("HALO_TEST_QUICK");
    const bool quick = q && !strcmp(q, "1");
    fixture tiny = {.name = "tiny-qwen35-f16"};
    fixture kdoc = {.name = "kdoc-moe-bf16"};
    test_model(&tiny, quick);
    test_model(&kdoc, quick);
    return halo_test_finish("qwen35");
}
