/* The CUDA matrix products (kernels/cuda/matmul.cu) against the scalar reference
 * halo_matmul_ref, for every block type, decode and prefill shapes; get_rows bit for
 * bit against the CPU decoder; matmul_id against per-expert products.
 *
 * Tolerance: the error of an output is measured relative to sum_c |w_c x_c| (the
 * scale that bounds any summation-order error). The reference sums in double; a
 * plain f32 loop over the same decoded weights (computed here on the CPU for every
 * case) shows what f32 summation alone costs. The GPU sums in a different order
 * (blocked partial sums, then a tree), typically more accurately, so each case must
 * stay within 2x the f32 loop's worst error plus 4 ulps of the scale (the final
 * roundings). A wrong weight, index or scale gives errors of order 1e-2..1.
 *
 * Products that quantize the activations (halo_cuda_matmul_xq: int8 tensor-core
 * prefill, kernels/cuda/xq.cuh) have a second, legitimate error: x_c is replaced by
 * d_b q_c, d_b = amax_b / 32639 for its block b of 32 columns, q_c = rint(x_c / d_b)
 * computed as rint(x_c * (32639 / amax_b)) in f32, so |x_c - d_b q_c| <= d_b / 2 +
 * 3 f32 roundings of amax_b = d_b (0.5 + 3 * 32639 * 2^-24) < 0.51 d_b. The weight's
 * code part multiplies it (the mins of Q4_K/Q5_K use the exact sums of x), so each
 * output must stay within
 *     0.51 * sum_c |wcode_c| d_b(c)  +  (2 * f32 loop error + 4 ulps) * sum_c |w'_c x_c|
 * with wcode the weight less its min (decoded with dmin = 0) and |w'_c| = |wcode_c| +
 * |w_c - wcode_c| (the kernel sums codes and mins apart). The test computes this
 * bound per output; it is ~1e-5 of sum |w x|, so a wrong fragment layout, scale or
 * token order (errors of order 1) fails loudly; the test checks that the bound stays
 * below 1e-3 of sum |w x| so that it cannot become vacuous. */
#include "cuda_test.h"
#include "harness.h"
#include "rng.h"

#include "kernels/kernels.h"
#include "quant/quant.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef HALO_HAVE_CUDA

enum { MAX_ROWS = 1000, MAX_COLS = 4096, MAX_TOK = 300 };
#define WS_BYTES ((size_t)16 << 20) /* the CUDA backend's split-K workspace */

static const int types[] = {
    HALO_TYPE_F32,  HALO_TYPE_F16,  HALO_TYPE_BF16,   HALO_TYPE_Q4_0,   HALO_TYPE_Q4_1,
    HALO_TYPE_Q5_0, HALO_TYPE_Q5_1, HALO_TYPE_Q8_0,   HALO_TYPE_Q8_1,   HALO_TYPE_Q2_K,
    HALO_TYPE_Q3_K, HALO_TYPE_Q4_K, HALO_TYPE_Q5_K,   HALO_TYPE_Q6_K,   HALO_TYPE_Q8_K,
    HALO_TYPE_IQ4_NL, HALO_TYPE_IQ4_XS, HALO_TYPE_MXFP4,
};

/* decoded rows of the encoded matrix (the exact weights), MAX_ROWS x MAX_COLS; their
 * code parts (Q4_K/Q5_K decoded with dmin = 0; dec itself for the others) */
static float *dec, *dec_code;

/* Per case: the GPU's and a plain f32 loop's worst error relative to sum |w x|. */
static void measure(const float *x, int64_t n_rows, int64_t n_cols, int64_t n_tok,
                    const float *ref, const float *got, double *err_gpu, double *err_f32) {
    *err_gpu = 0.0;
    *err_f32 = 0.0;
    for (int64_t t = 0; t < n_tok; t++) {
        for (int64_t r = 0; r < n_rows; r++) {
            const float *w = dec + r * MAX_COLS, *xt = x + t * n_cols;
            double abs_sum = 0.0;
            float f32 = 0.0f;
            for (int64_t c = 0; c < n_cols; c++) {
                abs_sum += fabs((double)w[c] * xt[c]);
                f32 += w[c] * xt[c];
            }
            if (abs_sum == 0.0) abs_sum = DBL_MIN;
            const double rv = ref[t * n_rows + r];
            const double eg = fabs((double)got[t * n_rows + r] - rv) / abs_sum;
            const double ef = fabs((double)f32 - rv) / abs_sum;
            if (!(eg <= *err_gpu)) *err_gpu = isnan(eg) ? INFINITY : eg;
            if (ef > *err_f32) *err_f32 = ef;
        }
    }
}

static bool within(double err_gpu, double err_f32) {
    return err_gpu <= 2.0 * err_f32 + 4.0 * FLT_EPSILON;
}

/* Products that quantize x (see the top): the worst |got - ref| / bound over the
 * outputs (<= 1 passes), the worst bound / sum |w x| (*loose), and as measure() the
 * relative errors of the GPU and the f32 loop. */
static double measure_xq(const float *x, int64_t n_rows, int64_t n_cols, int64_t n_tok,
                         const float *ref, const float *got, double *loose, double *err_gpu,
                         double *err_f32) {
    measure(x, n_rows, n_cols, n_tok, ref, got, err_gpu, err_f32);
    *loose = 0.0;
    double worst = 0.0;
    for (int64_t t = 0; t < n_tok; t++) {
        const float *xt = x + t * n_cols;
        for (int64_t r = 0; r < n_rows; r++) {
            const float *w = dec + r * MAX_COLS, *wc = dec_code + r * MAX_COLS;
            double abs_sum = 0.0, abs_sum2 = 0.0, qsum = 0.0;
            for (int64_t b = 0; b < n_cols; b += 32) {
                float amax = 0.0f;
                for (int64_t c = b; c < b + 32; c++) amax = fmaxf(amax, fabsf(xt[c]));
                const double db = amax / 32639.0f;
                for (int64_t c = b; c < b + 32; c++) {
                    abs_sum += fabs((double)w[c] * xt[c]);
                    abs_sum2 += (fabs((double)wc[c]) + fabs((double)w[c] - wc[c])) * fabs(xt[c]);
                    qsum += fabs((double)wc[c]) * db;
                }
            }
            const double bound = 0.51 * qsum + (2.0 * *err_f32 + 4.0 * FLT_EPSILON) * abs_sum2;
            const double e = fabs((double)got[t * n_rows + r] - ref[t * n_rows + r]);
            const double ratio = bound > 0.0 ? e / bound : e > 0.0 ? INFINITY : 0.0;
            if (!(ratio <= worst)) worst = isnan(ratio) ? INFINITY : ratio;
            if (abs_sum > 0.0 && bound / abs_sum > *loose) *loose = bound / abs_sum;
        }
    }
    return worst;
}

int main(void) {
    rng_seed(0x9E3779B97F4A7C15ull);
    cuda_test_require_gpu();
    void *st = halo_cuda_stream_new();
    CHECK(st != NULL);

    float *src = malloc(sizeof(float) * MAX_ROWS * MAX_COLS);
    dec = malloc(sizeof(float) * MAX_ROWS * MAX_COLS);
    dec_code = malloc(sizeof(float) * MAX_ROWS * MAX_COLS);
    float *x = malloc(sizeof(float) * MAX_TOK * MAX_COLS);
    float *ref = malloc(sizeof(float) * MAX_TOK * MAX_ROWS);
    float *got = malloc(sizeof(float) * MAX_TOK * MAX_ROWS);
    for (int64_t r = 0; r < MAX_ROWS; r++) {
        const float row_scale = 0.05f + (float)urand(100) * 0.01f;
        for (int64_t c = 0; c < MAX_COLS; c++) src[r * MAX_COLS + c] = frand() * row_scale;
    }
    for (int64_t i = 0; i < (int64_t)MAX_TOK * MAX_COLS; i++) x[i] = frand();

    float *d_x = halo_cuda_malloc(sizeof(float) * MAX_TOK * MAX_COLS);
    float *d_y = halo_cuda_malloc(sizeof(float) * MAX_TOK * MAX_ROWS);
    int32_t *d_idx = halo_cuda_malloc(sizeof(int32_t) * 1024);
    void *d_ws = halo_cuda_malloc(WS_BYTES); /* zeroed, as halo_cuda_matmul_ws wants */
    CHECK(d_ws != NULL);
    CHECK(d_x && d_y && d_idx);
    CHECK(halo_cuda_memcpy(st, d_x, x, sizeof(float) * MAX_TOK * MAX_COLS) == 0);

    static const struct {
        int rows, cols, tok;
    } cases[] = {
        {1, 256, 1},    {37, 256, 2},    {1000, 256, 3},  {37, 768, 8},    {1000, 768, 9},
        {37, 4096, 64}, {1000, 4096, 1}, {37, 4096, 8},   {1000, 768, 300}, {1, 4096, 300},
        {1000, 4096, 5}, {37, 96, 300},  {1000, 96, 8},   {1, 96, 1},      {37, 96, 64},
        /* one token (gemv1): groups of 1..128 threads per row (short and long rows),
         * 1 row per group (< 512 rows) and several (>= 512) */
        {37, 4096, 1},  {600, 2048, 1},  {1000, 512, 1},  {37, 512, 1},    {513, 768, 1},
        {37, 2048, 1},  {700, 96, 1},
        /* prefill (int8 tensor cores for some types): a tile of 128 rows x 16, 32 or
         * 64 tokens (by the number of tokens), 128 columns a chunk; partial tiles of
         * rows, tokens and columns */
        {1000, 2048, 16}, {129, 768, 100}, {200, 1024, 65}, {37, 4096, 300}, {128, 256, 64},
        {300, 1024, 24},  {129, 768, 32},  {200, 2048, 40}, {37, 96, 17},
        /* few tiles, long rows: K split into parts with a workspace (2 to 8 parts) */
        {512, 2048, 64},  {200, 4096, 40},
    };

    int n_cases = 0, n_fail = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const int type = types[ti];
        const halo_type_traits *tr = halo_type_get(type);
        CHECK(halo_cuda_matmul_supported(type));
        const size_t rs = halo_type_row_size(type, MAX_COLS);
        char *wq = malloc(rs * MAX_ROWS);
        const bool has_min = type == HALO_TYPE_Q4_K || type == HALO_TYPE_Q5_K;
        char *wq_code = malloc(rs);
        for (int64_t r = 0; r < MAX_ROWS; r++) {
            tr->from_float_ref(src + r * MAX_COLS, wq + r * rs, MAX_COLS);
            tr->to_float(wq + r * rs, dec + r * MAX_COLS, MAX_COLS);
            memcpy(wq_code, wq + r * rs, rs);
            if (has_min) /* dmin (f16 at bytes 2..3 of each block) = 0 */
                for (size_t b = 0; b < rs; b += tr->type_size) wq_code[b + 2] = wq_code[b + 3] = 0;
            tr->to_float(wq_code, dec_code + r * MAX_COLS, MAX_COLS);
        }
        free(wq_code);
        char *d_w = halo_cuda_malloc(rs * MAX_ROWS);
        CHECK(d_w != NULL);
        CHECK(halo_cuda_memcpy(st, d_w, wq, rs * MAX_ROWS) == 0);

        /* get_rows: bit for bit, full rows and a prefix of the columns */
        {
            int32_t rows[9];
            for (int i = 0; i < 9; i++) rows[i] = (int32_t)urand(MAX_ROWS);
            rows[3] = rows[1];
            CHECK(halo_cuda_memcpy(st, d_idx, rows, sizeof rows) == 0);
            const int64_t cols_list[2] = {MAX_COLS, tr->block_size <= 32 ? 96 : 512};
            for (int k = 0; k < 2; k++) {
                const int64_t nc = cols_list[k];
                CHECK(halo_cuda_get_rows(st, type, d_w, rs, nc, d_idx, 9, d_y) == 0);
                CHECK(halo_cuda_memcpy(st, got, d_y, sizeof(float) * 9 * nc) == 0);
                CHECK(halo_cuda_stream_sync(st) == 0);
                int bad = 0;
                for (int i = 0; i < 9; i++)
                    bad += memcmp(got + i * nc, dec + (int64_t)rows[i] * MAX_COLS,
                                  sizeof(float) * nc) != 0;
                CHECK_MSG(bad == 0, "%s get_rows n_cols %lld: %d rows differ", tr->name,
                          (long long)nc, bad);
            }
        }

        printf("%-7s", tr->name);
        double worst = 0.0;
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            const int64_t nr = cases[ci].rows, nc = cases[ci].cols, nt = cases[ci].tok;
            if (nc % tr->block_size) {
                CHECK(halo_cuda_matmul(st, type, d_w, rs, nr, nc, d_x, nt, d_y) == -1);
                continue;
            }
            /* x rows are nc apart: pack the tokens densely */
            float *xc = malloc(sizeof(float) * nt * nc);
            for (int64_t t = 0; t < nt; t++) memcpy(xc + t * nc, x + t * MAX_COLS, sizeof(float) * nc);
            CHECK(halo_cuda_memcpy(st, d_x, xc, sizeof(float) * nt * nc) == 0);
            CHECK(halo_cuda_matmul(st, type, d_w, rs, nr, nc, d_x, nt, d_y) == 0);
            CHECK(halo_cuda_memcpy(st, got, d_y, sizeof(float) * nt * nr) == 0);
            CHECK(halo_cuda_stream_sync(st) == 0);
            halo_matmul_ref(type, wq, rs, nr, nc, xc, nt, ref);
            double eg, ef;
            n_cases++;
            if (halo_cuda_matmul_xq(type, nt)) {
                double loose;
                const double ratio = measure_xq(xc, nr, nc, nt, ref, got, &loose, &eg, &ef);
                const bool ok = ratio <= 1.0 && loose < 1e-3;
                if (!ok) n_fail++;
                CHECK_MSG(ok, "%s %lldx%lld x %lld tokens (int8): error %.3g of the bound "
                          "(bound %.3g of sum |w x|), gpu error %.3g, f32 loop %.3g",
                          tr->name, (long long)nr, (long long)nc, (long long)nt, ratio, loose, eg,
                          ef);
                printf(" %lldx%lldx%lld:%.1e/%.1e(q%.2f)", (long long)nr, (long long)nc,
                       (long long)nt, eg, ef, ratio);
                /* with a workspace (split K where the tiles are few): the same bound,
                 * and the same bits on a second run (parts added in a fixed order) */
                float *got2 = malloc(sizeof(float) * nt * nr), *got3 = malloc(sizeof(float) * nt * nr);
                CHECK(halo_cuda_matmul_ws(st, type, d_w, rs, nr, nc, d_x, nt, d_y, d_ws, WS_BYTES) == 0);
                CHECK(halo_cuda_memcpy(st, got2, d_y, sizeof(float) * nt * nr) == 0);
                CHECK(halo_cuda_matmul_ws(st, type, d_w, rs, nr, nc, d_x, nt, d_y, d_ws, WS_BYTES) == 0);
                CHECK(halo_cuda_memcpy(st, got3, d_y, sizeof(float) * nt * nr) == 0);
                CHECK(halo_cuda_stream_sync(st) == 0);
                double loose2, eg2, ef2;
                const double ratio2 = measure_xq(xc, nr, nc, nt, ref, got2, &loose2, &eg2, &ef2);
                const bool ok2 = ratio2 <= 1.0 && loose2 < 1e-3;
                if (!ok2) n_fail++;
                CHECK_MSG(ok2, "%s %lldx%lld x %lld tokens (int8, workspace): error %.3g of the "
                          "bound, gpu error %.3g", tr->name, (long long)nr, (long long)nc,
                          (long long)nt, ratio2, eg2);
                CHECK_MSG(memcmp(got2, got3, sizeof(float) * nt * nr) == 0,
                          "%s %lldx%lld x %lld tokens (workspace): two runs differ", tr->name,
                          (long long)nr, (long long)nc, (long long)nt);
                free(got2);
                free(got3);
            } else {
                measure(xc, nr, nc, nt, ref, got, &eg, &ef);
                if (!within(eg, ef)) {
                    n_fail++;
                    fprintf(stderr, "%s %lldx%lld x %lld tokens: gpu error %.3g, f32 loop %.3g\n",
                            tr->name, (long long)nr, (long long)nc, (long long)nt, eg, ef);
                }
                CHECK(within(eg, ef));
                printf(" %lldx%lldx%lld:%.1e/%.1e", (long long)nr, (long long)nc, (long long)nt,
                       eg, ef);
            }
            if (eg > worst) worst = eg;
            free(xc);
        }
        printf("\n  %s worst gpu error %.3g\n", tr->name, worst);

        /* matmul_id: experts of er rows (mat_stride er rows of the big matrix), n_exp
         * of them; short rows (few threads per row) and long rows (2048: a warp or
         * more); above 256 assignments the tiled path (int8 tensor cores for some
         * types), 512 assignments over 32 experts as a 64-token MoE prefill. The int8
         * products take a token tile from the average assignments per expert (16: up
         * to 12, 32: up to 40, else 64) and that many tiles' worth of blocks per
         * expert: few (64 experts), some (16), many per expert (3 experts; 1 expert:
         * 8 blocks of it), counts not multiples of the tile, skipped ids (< 0) */
        for (int ncase = 0; ncase < 2; ncase++) {
            const int64_t nc = ncase ? 2048 : tr->block_size <= 32 ? 96 : 256;
            const struct {
                int n_assign, x_div, n_exp, er;
            } idc[] = {{8, 8, 6, 100},   {8, 1, 6, 100},   {12, 4, 6, 100},   {64, 8, 6, 100},
                       {200, 1, 6, 100}, {320, 4, 6, 100}, {300, 1, 6, 100},  {512, 8, 32, 30},
                       {512, 1, 32, 30}, {512, 8, 6, 150}, {512, 8, 64, 15}, {400, 4, 16, 60},
                       {512, 1, 3, 100}, {512, 1, 1, 200}, {300, 1, 64, 15}};
            for (size_t k = 0; k < sizeof idc / sizeof idc[0]; k++) {
                const int na = idc[k].n_assign, xd = idc[k].x_div;
                const int64_t n_exp = idc[k].n_exp, er = idc[k].er;
                int32_t ids[512];
                for (int a = 0; a < na; a++) ids[a] = (int32_t)urand((uint32_t)n_exp + 1) - 1;
                if (xd > 1) /* distinct experts per token, as top-k routing gives */
                    for (int a = 0; a < na; a++) {
                        ids[a] = (int32_t)urand((uint32_t)n_exp);
                        for (int b = a - a % xd; b < a; b++)
                            if (ids[b] == ids[a]) ids[a] = -1;
                    }
                const int n_xrows = (na + xd - 1) / xd;
                /* distinct token rows: consecutive runs of the random x */
                const float *xc = x;
                CHECK((int64_t)n_xrows * nc <= (int64_t)MAX_TOK * MAX_COLS);
                for (int64_t i = 0; i < na * er; i++) got[i] = 12345.0f;
                CHECK(halo_cuda_memcpy(st, d_y, got, sizeof(float) * na * er) == 0);
                CHECK(halo_cuda_memcpy(st, d_x, xc, sizeof(float) * n_xrows * nc) == 0);
                CHECK(halo_cuda_memcpy(st, d_idx, ids, sizeof(int32_t) * na) == 0);
                CHECK(halo_cuda_matmul_id(st, type, d_w, rs, rs * er, er, nc, d_x, xd, d_idx, na,
                                          d_y, (int32_t)n_exp) == 0);
                CHECK(halo_cuda_memcpy(st, got, d_y, sizeof(float) * na * er) == 0);
                CHECK(halo_cuda_stream_sync(st) == 0);
                const bool xq = halo_cuda_matmul_id_xq(type, na);
                double worst_id = 0.0, worst_f32 = 0.0, worst_ratio = 0.0, worst_loose = 0.0;
                int untouched_bad = 0;
                for (int a = 0; a < na; a++) {
                    if (ids[a] < 0) {
                        for (int64_t r = 0; r < er; r++) untouched_bad += got[a * er + r] != 12345.0f;
                        continue;
                    }
                    const char *we = wq + (size_t)ids[a] * rs * er;
                    const float *xa = xc + (int64_t)(a / xd) * nc;
                    halo_matmul_ref(type, we, rs, er, nc, xa, 1, ref);
                    float *dsave = dec, *csave = dec_code;
                    dec = dsave + (int64_t)ids[a] * er * MAX_COLS;
                    dec_code = csave + (int64_t)ids[a] * er * MAX_COLS;
                    double eg, ef;
                    if (xq) {
                        double loose;
                        const double ratio =
                            measure_xq(xa, er, nc, 1, ref, got + a * er, &loose, &eg, &ef);
                        if (!(ratio <= worst_ratio)) worst_ratio = isnan(ratio) ? INFINITY : ratio;
                        if (loose > worst_loose) worst_loose = loose;
                    } else {
                        measure(xa, er, nc, 1, ref, got + a * er, &eg, &ef);
                    }
                    dec = dsave;
                    dec_code = csave;
                    if (eg > worst_id || isinf(eg)) worst_id = eg;
                    if (ef > worst_f32) worst_f32 = ef;
                }
                n_cases++;
                const bool ok = (xq ? worst_ratio <= 1.0 && worst_loose < 1e-3
                                    : within(worst_id, worst_f32)) &&
                                untouched_bad == 0;
                if (!ok) n_fail++;
                CHECK_MSG(ok, "%s matmul_id n_cols %lld n_assign %d x_div %d experts %lld%s: error "
                          "%.3g (f32 loop %.3g, of the int8 bound %.3g), %d skipped outputs written",
                          tr->name, (long long)nc, na, xd, (long long)n_exp, xq ? " (int8)" : "",
                          worst_id, worst_f32, worst_ratio, untouched_bad);
                printf("  id n_cols %lld n_assign %d x_div %d experts %lld: %.1e/%.1e", (long long)nc,
                       na, xd, (long long)n_exp, worst_id, worst_f32);
                if (xq) printf(" (int8: %.2f of the bound)", worst_ratio);
                printf("\n");
            }
        }
        halo_cuda_free(d_w);
        free(wq);
    }
    printf("matmul cases: %d, failed %d\n", n_cases, n_fail);

    /* unsupported: a type with no decoder, n_cols not a whole number of blocks */
    CHECK(!halo_cuda_matmul_supported(HALO_TYPE_IQ2_XXS));
    CHECK(halo_cuda_matmul(st, HALO_TYPE_IQ2_XXS, d_y, 66, 1, 256, d_x, 1, d_y) == -1);
    CHECK(halo_cuda_matmul(st, HALO_TYPE_Q4_0, d_y, 18, 1, 48, d_x, 1, d_y) == -1);
    CHECK(halo_cuda_matmul(st, HALO_TYPE_Q4_0, d_y, 18, 0, 32, d_x, 1, d_y) == 0);

    halo_cuda_free(d_x);
    halo_cuda_free(d_y);
    halo_cuda_free(d_idx);
    halo_cuda_free(d_ws);
    halo_cuda_stream_free(st);
    free(src);
    free(dec);
    free(dec_code);
    free(x);
    free(ref);
    free(got);
    return halo_test_finish("cuda_matmul");
}
#else
int main(void) {
    cuda_test_require_gpu(); /* without the CUDA backend: skipped, with the reason */
    return 77;
}
#endif
