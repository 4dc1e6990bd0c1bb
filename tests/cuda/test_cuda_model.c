/*
 * Whole models on the CUDA backend (-ngl all), against the references and the
 * CPU engine:
 *   - every fixture model's logits against the original implementation's (refs/),
 *     with the CPU's bounds (model_eval.h), and against the CPU engine's logits:
 *     GPU - CPU must be smaller than the CPU's own distance to the references;
 *   - one token at a time (the decode path) equals the whole-prompt pass;
 *   - two sequences interleaved in one batch equal each alone (segments, pages);
 *   - q8_0, q4_0 and iq4_nl KV caches (rows Walsh-Hadamard rotated) against the CPU
 *     with the same cache type;
 *   - embeddings mode (normed hidden states) against the CPU's, whole and token by
 *     token, and logits after it in the same context (graphs keyed by the mode);
 *   - every block format (quant/tiny-qwen3-TYPE.gguf) against the exact logits of
 *     its weights, at most half the peer engine's error (quant/peer-error.txt).
 * Models absent from the fixtures folder are reported and skipped one by one (the
 * GPU machine gets a subset: HALO_FIXTURES points at it).
 */
#include "../model/model_eval.h"
#include "cuda_test.h"

#include <sys/stat.h>

#ifdef HALO_HAVE_CUDA
static bool present(const char *rel) {
    struct stat st;
    return stat(halo_test_fixture_path(rel), &st) == 0;
}

static halo_model *load_gpu_opts(const char *rel, int n_cpu_moe, const char *const *ot,
                                 int n_ot) {
    halo_model *m = NULL;
    halo_error err = {0};
    halo_load_options lo = {.n_gpu_layers = -1, .n_cpu_moe = n_cpu_moe, .tensor_overrides = ot,
                            .n_tensor_overrides = n_ot};
    if (halo_model_load(halo_test_fixture_path(rel), &lo, &m, &err))
        fprintf(stderr, "%s: %s\n", rel, err.msg);
    return m;
}

static halo_model *load_gpu(const char *rel) {
    halo_model *m = NULL;
    halo_error err = {0};
    halo_load_options lo = {.n_gpu_layers = -1};
    if (halo_model_load(halo_test_fixture_path(rel), &lo, &m, &err))
        fprintf(stderr, "%s: %s\n", rel, err.msg);
    return m;
}

/* Sequences a and b interleaved token by token in one batch per chunk of 2 * step
 * tokens (both in sequences 0 and 1 of one context); logits into oa, ob. */
static bool eval_interleaved(halo_model *m, const int32_t *a, int32_t la, const int32_t *b,
                             int32_t lb, float *oa, float *ob) {
    halo_context_params p;
    eval_params(&p, 1, 2);
    halo_context *ctx = NULL;
    halo_error err = {0};
    if (halo_context_new(m, &p, &ctx, &err)) {
        fprintf(stderr, "context: %s\n", err.msg);
        return false;
    }
    const int32_t nv = halo_model_n_vocab(m), step = 5;
    int32_t tok[64], seq[64], ia = 0, ib = 0;
    int32_t from[64];
    bool ok = true;
    while ((ia < la || ib < lb) && ok) {
        int32_t n = 0;
        for (int32_t k = 0; k < step && ia < la; k++, ia++) tok[n] = a[ia], seq[n] = 0, from[n++] = ia;
        for (int32_t k = 0; k < step && ib < lb; k++, ib++) tok[n] = b[ib], seq[n] = 1, from[n++] = ib;
        int8_t want[64];
        for (int32_t t = 0; t < n; t++) want[t] = 1;
        halo_batch bt = {n, tok, NULL, seq, want};
        if (halo_decode(ctx, &bt, &err)) {
            fprintf(stderr, "decode: %s\n", err.msg);
            ok = false;
            break;
        }
        for (int32_t t = 0; t < n; t++)
            memcpy((seq[t] ? ob : oa) + (size_t)from[t] * nv, halo_get_logits(ctx, t),
                   sizeof(float) * nv);
    }
    halo_context_free(ctx);
    return ok;
}

/* Embeddings mode (the normed hidden states) of every position of tok, chunk tokens per
 * decode, in a fresh context; then, in the same context, the logits of the sequence
 * token by token into logits: the CUDA graphs recorded for one mode must not replay in
 * the other (no head in embeddings mode). */
static bool eval_embeddings(halo_model *m, const int32_t *tok, int32_t len, int32_t chunk,
                            float *out, float *logits) {
    halo_context_params p;
    eval_params(&p, 1, 1);
    halo_context *ctx = NULL;
    halo_error err = {0};
    if (halo_context_new(m, &p, &ctx, &err)) {
        fprintf(stderr, "context: %s\n", err.msg);
        return false;
    }
    const int32_t e = halo_model_n_embd(m);
    int8_t want[4096];
    memset(want, 1, sizeof want);
    bool ok = true;
    halo_set_embeddings(ctx, true);
    for (int32_t i0 = 0; ok && i0 < len; i0 += chunk) {
        int32_t n = len - i0 < chunk ? len - i0 : chunk;
        halo_batch b = {n, tok + i0, NULL, NULL, want};
        ok = halo_decode(ctx, &b, &err) == 0;
        for (int32_t t = 0; ok && t < n; t++) {
            const float *r = halo_get_embeddings(ctx, t);
            ok = r != NULL;
            if (ok) memcpy(out + (size_t)(i0 + t) * e, r, sizeof(float) * (size_t)e);
        }
    }
    halo_set_embeddings(ctx, false);
    ok = ok && eval_decode_seq(ctx, 0, tok, len, 1, logits);
    if (!ok) fprintf(stderr, "embeddings: %s\n", err.msg);
    halo_context_free(ctx);
    return ok;
}

static void check_embeddings(const char *name, halo_model *cpu, halo_model *gpu, const eval_seqs *s,
                             const float *gpu_logits) {
    const int32_t e = halo_model_n_embd(cpu), nv = halo_model_n_vocab(cpu), len = s->len[0];
    float *c = malloc(sizeof(float) * (size_t)len * e), *g = malloc(sizeof(float) * (size_t)len * e);
    float *g1 = malloc(sizeof(float) * (size_t)len * e);
    float *lc = malloc(sizeof(float) * (size_t)len * nv), *lg = malloc(sizeof(float) * (size_t)len * nv);
    if (c && g && g1 && lc && lg && eval_embeddings(cpu, s->tokens[0], len, len, c, lc) &&
        eval_embeddings(gpu, s->tokens[0], len, len, g, lg) &&
        eval_embeddings(gpu, s->tokens[0], len, 1, g1, lg)) {
        const double whole = rel_rms(g, c, (size_t)len * e), one = rel_rms(g1, c, (size_t)len * e);
        const double lo = rel_rms(lg, gpu_logits, (size_t)len * nv);
        printf("%-20s embeddings GPU vs CPU relRMS %.2e (whole), %.2e (token by token); logits "
               "after them %.2e\n", name, whole, one, lo);
        CHECK_MSG(whole < 1e-4 && one < 1e-4, "%s: %.3e %.3e", name, whole, one);
        CHECK_MSG(lo < 1e-4, "%s: logits after embeddings %.3e", name, lo);
    } else {
        CHECK(!"embeddings evaluation failed");
    }
    free(c);
    free(g);
    free(g1);
    free(lc);
    free(lg);
}

static void check_model(const eval_model *em) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s.gguf", em->name);
    if (!present(rel)) {
        printf("%-20s not in the fixtures folder: skipped\n", em->name);
        return;
    }
    halo_model *cpu = eval_load(rel), *gpu = load_gpu(rel);
    eval_seqs s;
    CHECK(cpu && gpu);
    CHECK(eval_read_ref_tokens(em->name, &s));
    if (!cpu || !gpu || !s.n) goto done;
    const int32_t nv = halo_model_n_vocab(cpu);
    size_t n = eval_total_tokens(&s), bytes;
    snprintf(rel, sizeof rel, "refs/%s.logits.f32", em->name);
    float *ref = halo_test_read_file(halo_test_fixture_path(rel), &bytes);
    float *g = malloc(sizeof(float) * n * nv), *c = malloc(sizeof(float) * n * nv);
    float *g1 = malloc(sizeof(float) * n * nv);
    double cpu_err = 0.0; /* the CPU's error against refs/ */
    CHECK(ref && bytes == sizeof(float) * n * nv);
    if (ref && bytes == sizeof(float) * n * nv && eval_all(gpu, 1, &s, 4096, g) &&
        eval_all(cpu, 1, &s, 4096, c) && eval_all(gpu, 1, &s, 1, g1)) {
        int counted;
        double rr = rel_rms(g, ref, n * nv), rc = rel_rms(c, ref, n * nv);
        double gc = rel_rms(g, c, n * nv), dec = rel_rms(g1, g, n * nv);
        cpu_err = rc;
        double top1 = eval_top1(g, ref, n, nv, &counted);
        printf("%-20s GPU vs refs %.3e (CPU %.3e, bound %.0e), GPU vs CPU %.3e, decode vs "
               "prefill %.3e, top-1 %.1f%% of %d\n",
               em->name, rr, rc, em->ref_rel_rms, gc, dec, 100 * top1, counted);
        CHECK_MSG(rr <= em->ref_rel_rms, "%s GPU relRMS %.3e", em->name, rr);
        CHECK_MSG(top1 >= 0.99, "%s top-1 %.3f", em->name, top1);
        CHECK_MSG(gc < rc, "%s GPU-CPU %.3e not below the CPU's error %.3e", em->name, gc, rc);
        /* one token at a time: other kernels (decode shapes), same math; bounded
         * like GPU vs CPU (summation order only) */
        CHECK_MSG(dec < rc, "%s decode vs prefill %.3e", em->name, dec);
        check_embeddings(em->name, cpu, gpu, &s, g1);
    } else {
        CHECK(!"evaluation failed");
    }
    /* MoE models with routed experts kept on the CPU (--n-cpu-moe: the first half of the
     * layers; -ot: the down experts of every layer, which takes the layer's three): the
     * same products on the CPU and the GPU's, so bounded like GPU vs CPU, whole prompts
     * (experts grouped per expert on the CPU) and one token at a time */
    if (strstr(em->name, "moe") && cpu_err > 0) {
        static const char *const ot[] = {"blk\\.0\\.ffn_up_exps=CUDA0", "ffn_down_exps=CPU"};
        char relm[256];
        snprintf(relm, sizeof relm, "models/%s.gguf", em->name);
        halo_model *hy[2] = {load_gpu_opts(relm, 2, NULL, 0), load_gpu_opts(relm, 0, ot, 2)};
        for (int v = 0; v < 2; v++) {
            CHECK(hy[v] != NULL);
            if (!hy[v]) continue;
            if (eval_all(hy[v], 1, &s, 4096, g1) && eval_all(hy[v], 1, &s, 1, g)) {
                const double a = rel_rms(g1, c, n * nv), b1 = rel_rms(g, c, n * nv);
                printf("%-20s experts on the CPU (%s): vs CPU %.3e, one token at a time %.3e\n",
                       em->name, v ? "-ot ffn_down_exps=CPU" : "--n-cpu-moe 2", a, b1);
                CHECK_MSG(a < cpu_err && b1 < cpu_err,
                          "%s CPU experts: %.3e / %.3e vs the CPU's error %.3e", em->name, a, b1,
                          cpu_err);
            } else {
                CHECK(!"evaluation with CPU experts failed");
            }
            halo_model_free(hy[v]);
        }
    }
    /* two sequences in one batch, interleaved */
    if (s.n >= 2) {
        size_t n0 = (size_t)s.len[0] * nv, n1 = (size_t)s.len[1] * nv;
        float *ia = malloc(sizeof(float) * n0), *ib = malloc(sizeof(float) * n1);
        if (eval_interleaved(gpu, s.tokens[0], s.len[0], s.tokens[1], s.len[1], ia, ib)) {
            double d = fmax(rel_rms(ia, g, n0), rel_rms(ib, g + n0, n1));
            printf("%-20s two sequences in one batch vs alone: %.3e\n", em->name, d);
            CHECK_MSG(d < 1e-4, "%s interleaved %.3e", em->name, d);
        } else {
            CHECK(!"interleaved evaluation failed");
        }
        free(ia);
        free(ib);
    }
    /* quantized KV caches: the GPU against the CPU with the same cache type */
    const int kv_types[] = {8 /* q8_0 */, 2 /* q4_0 */, 20 /* iq4_nl */};
    for (int i = 0; i < 3; i++) {
        if (eval_all(gpu, kv_types[i], &s, 4096, g) && eval_all(cpu, kv_types[i], &s, 4096, c)) {
            double gc = rel_rms(g, c, n * nv);
            printf("%-20s KV %s: GPU vs CPU %.3e\n", em->name,
                   i == 2 ? "iq4_nl" : i ? "q4_0" : "q8_0", gc);
            /* the same stored bytes on both (bit-exact encoders), so only summation
             * order remains, as with f16; a rounding difference in the encoder shows
             * up as a step of the format's quantum (>= 1e-2 for q4_0) */
            CHECK_MSG(gc < 5e-3, "%s KV type %d GPU-CPU %.3e", em->name, kv_types[i], gc);
        } else {
            CHECK(!"quantized KV evaluation failed");
        }
    }
    free(g);
    free(g1);
    free(c);
    free(ref);
done:
    eval_seqs_free(&s);
    halo_model_free(cpu);
    halo_model_free(gpu);
}

static void check_quant_types(void) {
    size_t size;
    char *table = halo_test_read_file(halo_test_fixture_path("quant/peer-error.txt"), &size);
    eval_seqs s;
    if (!table || !eval_read_token_lines(halo_test_fixture_path("quant/tokens.txt"), &s)) {
        printf("quant/ fixtures not in the fixtures folder: block formats skipped\n");
        free(table);
        return;
    }
    char *save = NULL;
    int n_types = 0;
    for (char *line = strtok_r(table, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char type[32], rel[256];
        double peer;
        if (line[0] == '#' || sscanf(line, "%31s %lf", type, &peer) != 2) continue;
        snprintf(rel, sizeof rel, "quant/tiny-qwen3-%s.gguf", type);
        if (!present(rel)) continue;
        halo_model *m = load_gpu(rel);
        CHECK_MSG(m != NULL, "%s", rel);
        if (!m) continue;
        const int32_t nv = halo_model_n_vocab(m);
        size_t n = eval_total_tokens(&s), bytes;
        snprintf(rel, sizeof rel, "quant/tiny-qwen3-%s.exact-logits.f32", type);
        float *ref = halo_test_read_file(halo_test_fixture_path(rel), &bytes);
        float *got = malloc(sizeof(float) * n * nv);
        float *got1 = malloc(sizeof(float) * n * nv);
        /* whole prompts (prefill products) and one token at a time (decode products:
         * int16 activations for the integer formats) */
        if (ref && bytes == sizeof(float) * n * nv && eval_all(m, 1, &s, 4096, got) &&
            eval_all(m, 1, &s, 1, got1)) {
            double rr = rel_rms(got, ref, n * nv), r1 = rel_rms(got1, ref, n * nv);
            printf("%-7s GPU relRMS %.3e vs exact, one token at a time %.3e (peer %.3e, bound "
                   "half of it)\n", type, rr, r1, peer);
            CHECK_MSG(rr <= 0.5 * peer, "%s relRMS %.3e > half the peer's %.3e", type, rr, peer);
            CHECK_MSG(r1 <= 0.5 * peer, "%s one token at a time: relRMS %.3e > half the peer's %.3e",
                      type, r1, peer);
            n_types++;
        } else {
            CHECK_MSG(false, "%s: evaluation failed", type);
        }
        free(ref);
        free(got);
        free(got1);
        halo_model_free(m);
    }
    printf("%d block formats checked on the GPU\n", n_types);
    eval_seqs_free(&s);
    free(table);
}

/* A recurrent-state checkpoint in GPU memory (halo_state_buf_new): feed half a
 * sequence, save, feed other tokens, restore, feed the rest; the rest's logits equal
 * those of the straight run (same chunks, same kernels: at most 1e-6 apart). */
static bool feed_chunk(halo_context *ctx, const int32_t *tok, int32_t n, float *out) {
    int8_t want[256];
    halo_error err = {0};
    if (n > 256) return false;
    for (int32_t i = 0; i < n; i++) want[i] = 1;
    halo_batch b = {n, tok, NULL, NULL, want};
    if (halo_decode(ctx, &b, &err)) {
        fprintf(stderr, "decode: %s\n", err.msg);
        return false;
    }
    const int32_t nv = halo_model_n_vocab(halo_context_model(ctx));
    for (int32_t i = 0; i < n && out; i++)
        memcpy(out + (size_t)i * nv, halo_get_logits(ctx, i), sizeof(float) * nv);
    return true;
}

static void check_checkpoint(void) {
    const char *rel = "models/kdoc-moe-bf16.gguf";
    if (!present(rel)) {
        printf("checkpoint: %s not in the fixtures folder: skipped\n", rel);
        return;
    }
    halo_model *m = load_gpu(rel);
    CHECK(m != NULL);
    if (!m) return;
    halo_context_params p;
    eval_params(&p, 1, 1);
    halo_context *ctx = NULL;
    halo_error err = {0};
    CHECK_MSG(halo_context_new(m, &p, &ctx, &err) == 0, "%s", err.msg);
    const int32_t nv = halo_model_n_vocab(m), half = 40, rest = 24;
    int32_t tok[128];
    for (int32_t i = 0; i < half + rest; i++) tok[i] = 5 + (i * 131) % 1500;
    float *a = malloc(sizeof(float) * (size_t)rest * nv), *b = malloc(sizeof(float) * (size_t)rest * nv);
    void *buf = ctx ? halo_state_buf_new(ctx) : NULL;
    CHECK(a && b && buf);
    if (ctx && a && b && buf) {
        CHECK(feed_chunk(ctx, tok, half, NULL) && feed_chunk(ctx, tok + half, rest, a));
        halo_seq_clear(ctx, 0);
        CHECK(feed_chunk(ctx, tok, half, NULL));
        CHECK_MSG(halo_seq_state_save_buf(ctx, 0, buf, &err) == 0, "%s", err.msg);
        CHECK(feed_chunk(ctx, tok + 7, 9, NULL));
        CHECK_MSG(halo_seq_state_load_buf(ctx, 0, buf, half, &err) == 0, "%s", err.msg);
        CHECK(halo_seq_length(ctx, 0) == half);
        CHECK(feed_chunk(ctx, tok + half, rest, b));
        double e = rel_rms(b, a, (size_t)rest * nv);
        printf("checkpoint in GPU memory, restored and continued vs straight: %.3e (limit 1e-6)\n",
               e);
        CHECK_MSG(e <= 1e-6, "checkpoint restore %.3g", e);
    }
    halo_state_buf_free(ctx, buf);
    free(a);
    free(b);
    halo_context_free(ctx);
    halo_model_free(m);
}
#endif

int main(void) {
    halo_test_require_fixtures();
    cuda_test_require_gpu();
#ifdef HALO_HAVE_CUDA
    for (size_t k = 0; k < EVAL_N_MODELS; k++) check_model(&EVAL_MODELS[k]);
    check_quant_types();
    check_checkpoint();
#endif
    return halo_test_finish("cuda/model");
}
