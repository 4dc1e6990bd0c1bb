/* Cache and state consistency for every fixture model: the same sequences in
 * one batch, in chunks of 7 and token by token (f32 cache within 1e-4, f16
 * within 1e-3); two different sequences in one interleaved batch against each
 * alone; and the quantized caches' error against f16 (printed, and bounded as
 * explained at q8_bound). */
#include "../model/model_eval.h"

static double pos_median(const float *a, const float *b, size_t n_pos, int32_t nv) {
    double *e = malloc(sizeof(double) * n_pos);
    for (size_t p = 0; p < n_pos; p++) e[p] = rel_rms(a + p * nv, b + p * nv, (size_t)nv);
    for (size_t i = 1; i < n_pos; i++) /* insertion sort: n_pos is small */
        for (size_t j = i; j > 0 && e[j] < e[j - 1]; j--) {
            double t = e[j];
            e[j] = e[j - 1];
            e[j - 1] = t;
        }
    double m = e[n_pos / 2];
    free(e);
    return m;
}

/* Both reference sequences in one batch, tokens alternating between sequence 0
 * and 1, against each evaluated alone (f32 cache). */
static double interleaved(halo_model *m, const eval_seqs *s, const float *alone) {
    halo_context_params p;
    eval_params(&p, 0 /* f32 */, 2);
    halo_context *ctx = NULL;
    halo_error err = {0};
    if (halo_context_new(m, &p, &ctx, &err)) return 1;
    const int32_t nv = halo_model_n_vocab(m);
    int32_t tok[256], pos[256], seq[256], n = 0, idx[2] = {0, 0};
    while ((idx[0] < s->len[0] || idx[1] < s->len[1]) && n < 256)
        for (int q = 0; q < 2; q++)
            if (idx[q] < s->len[q]) {
                tok[n] = s->tokens[q][idx[q]];
                pos[n] = idx[q]++;
                seq[n++] = q;
            }
    halo_batch b = {n, tok, pos, seq, NULL};
    int8_t want[256];
    memset(want, 1, sizeof want);
    b.logits = want;
    double worst = 1;
    if (!halo_decode(ctx, &b, &err)) {
        float *got = malloc(sizeof(float) * (size_t)n * nv);
        for (int32_t t = 0; t < n; t++) {
            size_t off = (size_t)(seq[t] ? s->len[0] : 0) + (size_t)pos[t];
            memcpy(got + off * nv, halo_get_logits(ctx, t), sizeof(float) * nv);
        }
        worst = rel_rms(got, alone, (size_t)n * nv);
        free(got);
    } else {
        fprintf(stderr, "interleaved decode: %s\n", err.msg);
    }
    halo_context_free(ctx);
    return worst;
}

/* A long sequence token by token on 4 threads (decode attention split over the
 * threads once the context is long) against one batch, f32 cache. */
static double long_decode(halo_model *m) {
    enum { N = 200 };
    const int32_t nv = halo_model_n_vocab(m);
    int32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (i * 131 + 7) % nv;
    float *a = malloc(sizeof(float) * N * nv), *b = malloc(sizeof(float) * N * nv);
    halo_context_params p;
    eval_params(&p, 0, 1);
    p.n_threads = 4;
    halo_context *ctx = NULL;
    halo_error err = {0};
    double rr = 1;
    if (!halo_context_new(m, &p, &ctx, &err) && eval_decode_seq(ctx, 0, tok, N, N, a) &&
        eval_decode_seq(ctx, 0, tok, N, 1, b))
        rr = rel_rms(b, a, (size_t)N * nv);
    halo_context_free(ctx);
    free(a);
    free(b);
    return rr;
}

int main(void) {
    halo_test_require_fixtures();
    const bool quick = getenv("HALO_TEST_QUICK") != NULL;
    for (size_t k = 0; k < EVAL_N_MODELS; k++) {
        const eval_model *em = &EVAL_MODELS[k];
        char rel[256];
        snprintf(rel, sizeof rel, "models/%s.gguf", em->name);
        halo_model *m = eval_load(rel);
        eval_seqs s;
        CHECK(m != NULL);
        CHECK(eval_read_ref_tokens(em->name, &s));
        if (!m || s.n < 2) continue;
        const int32_t nv = halo_model_n_vocab(m);
        const size_t n = eval_total_tokens(&s), sz = n * (size_t)nv;
        float *whole = malloc(sizeof(float) * sz), *part = malloc(sizeof(float) * sz);
        float *f16 = malloc(sizeof(float) * sz), *f32 = malloc(sizeof(float) * sz);

        /* one batch vs chunks of 7 vs token by token */
        const int types[2] = {0 /* f32 */, 1 /* f16 */};
        const double bound[2] = {1e-4, 1e-3};
        for (int ti = 0; ti < 2; ti++) {
            CHECK(eval_all(m, types[ti], &s, 4096, whole));
            memcpy(ti ? f16 : f32, whole, sizeof(float) * sz);
            for (int c = 0; c < 2; c++) {
                int32_t chunk = c ? 1 : 7;
                if (quick && ti == 1 && c == 0) continue; /* sanitizers: f16 one by one only */
                CHECK(eval_all(m, types[ti], &s, chunk, part));
                double rr = rel_rms(part, whole, sz);
                printf("%-20s %s cache: chunks of %d vs one batch: relRMS %.3e (bound %.0e)\n",
                       em->name, ti ? "f16" : "f32", chunk, rr, bound[ti]);
                CHECK_MSG(rr <= bound[ti], "%s chunk %d: %.3e", em->name, chunk, rr);
            }
        }

        /* under the sanitizers (HALO_TEST_QUICK) the 4-thread decode runs on the
         * first model only: it is the same runtime path for every architecture */
        if (k == 0 || !quick) {
            double lr = long_decode(m);
            printf("%-20s 200 tokens one by one on 4 threads vs one batch (f32): relRMS %.3e\n",
                   em->name, lr);
            CHECK_MSG(lr <= 1e-4, "%s long decode: %.3e", em->name, lr);
        }

        /* two sequences in one batch == each alone */
        double rr = interleaved(m, &s, f32);
        printf("%-20s two sequences in one batch vs each alone (f32): relRMS %.3e\n", em->name, rr);
        CHECK_MSG(rr <= 1e-4, "%s interleaved: %.3e", em->name, rr);

        /* quantized caches against f16. q8_bound: q8_0 rounds each value to
         * amax/127 of its block of 32, f16 to 2^-11 relative: on these models'
         * K/V rows that is ~24x more noise per value (measured), so q8_0's
         * logits error is bounded per position by 40x the f16 cache's own error
         * against f32. The overall relRMS is printed, not bounded: in MoE
         * models that noise can flip a near-tied expert choice at a position,
         * which moves that position's logits a lot (tiny-qwen3moe: 2 of 64). */
        double f16_err = rel_rms(f16, f32, sz);
        const int qtypes[2] = {8 /* q8_0 */, 2 /* q4_0 */};
        /* under the sanitizers the quantized caches run on the first model only */
        for (int qi = 0; qi < (quick ? (k == 0) : 2); qi++) {
            CHECK(eval_all(m, qtypes[qi], &s, 4096, part));
            int counted;
            double q_rr = rel_rms(part, f16, sz), med = pos_median(part, f16, n, nv);
            double top1 = eval_top1(part, f16, n, nv, &counted);
            printf("%-20s %s cache vs f16: relRMS %.3e, median per position %.3e, top-1 %.1f%% "
                   "(f16 vs f32: %.3e)\n",
                   em->name, qi ? "q4_0" : "q8_0", q_rr, med, 100 * top1, f16_err);
            if (qi == 0) {
                CHECK_MSG(med <= 40 * f16_err, "%s q8_0 median %.3e", em->name, med);
                CHECK_MSG(top1 >= 0.95, "%s q8_0 top-1 %.3f", em->name, top1);
            }
        }
        free(whole);
        free(part);
        free(f16);
        free(f32);
        eval_seqs_free(&s);
        halo_model_free(m);
    }
    return halo_test_finish("runtime/consistency");
}
