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
 * roundings). A wrong weight, index or scale gives errors of order 1e-2..1. */
#include "cuda_test.h"
#include "harness.h"

#include "kernels/kernels.h"
#include "quant/quant.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef HALO_HAVE_CUDA

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static uint32_t urand(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)((rng_state >> 33) % n);
}

enum { MAX_ROWS = 1000, MAX_COLS = 4096, MAX_TOK = 300 };

static const int types[] = {
    HALO_TYPE_F32,  HALO_TYPE_F16,  HALO_TYPE_BF16,   HALO_TYPE_Q4_0,   HALO_TYPE_Q4_1,
    HALO_TYPE_Q5_0, HALO_TYPE_Q5_1, HALO_TYPE_Q8_0,   HALO_TYPE_Q8_1,   HALO_TYPE_Q2_K,
    HALO_TYPE_Q3_K, HALO_TYPE_Q4_K, HALO_TYPE_Q5_K,   HALO_TYPE_Q6_K,   HALO_TYPE_Q8_K,
    HALO_TYPE_IQ4_NL, HALO_TYPE_IQ4_XS, HALO_TYPE_MXFP4,
};

/* decoded rows of the encoded matrix (the exact weights), MAX_ROWS x MAX_COLS */
static float *dec;

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

int main(void) {
    cuda_test_require_gpu();
    void *st = halo_cuda_stream_new();
    CHECK(st != NULL);

    float *src = malloc(sizeof(float) * MAX_ROWS * MAX_COLS);
    dec = malloc(sizeof(float) * MAX_ROWS * MAX_COLS);
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
    };

    int n_cases = 0, n_fail = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const int type = types[ti];
        const halo_type_traits *tr = halo_type_get(type);
        CHECK(halo_cuda_matmul_supported(type));
        const size_t rs = halo_type_row_size(type, MAX_COLS);
        char *wq = malloc(rs * MAX_ROWS);
        for (int64_t r = 0; r < MAX_ROWS; r++) {
            tr->from_float_ref(src + r * MAX_COLS, wq + r * rs, MAX_COLS);
            tr->to_float(wq + r * rs, dec + r * MAX_COLS, MAX_COLS);
        }
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
            measure(xc, nr, nc, nt, ref, got, &eg, &ef);
            n_cases++;
            if (!within(eg, ef)) {
                n_fail++;
                fprintf(stderr, "%s %lldx%lld x %lld tokens: gpu error %.3g, f32 loop %.3g\n",
                        tr->name, (long long)nr, (long long)nc, (long long)nt, eg, ef);
            }
            CHECK(within(eg, ef));
            printf(" %lldx%lldx%lld:%.1e/%.1e", (long long)nr, (long long)nc, (long long)nt, eg,
                   ef);
            if (eg > worst) worst = eg;
            free(xc);
        }
        printf("\n  %s worst gpu error %.3g\n", tr->name, worst);

        /* matmul_id: experts of 100 rows (mat_stride 100 rows of the big matrix) */
        /* short rows (few threads per row) and long rows (2048: a warp or more) */
        for (int ncase = 0; ncase < 2; ncase++) {
            const int64_t er = 100, n_exp = 6;
            const int64_t nc = ncase ? 2048 : tr->block_size <= 32 ? 96 : 256;
            const struct {
                int n_assign, x_div;
            } idc[] = {{8, 8}, {8, 1}, {12, 4}, {64, 8}, {200, 1}, {320, 4}, {300, 1}};
            for (size_t k = 0; k < sizeof idc / sizeof idc[0]; k++) {
                const int na = idc[k].n_assign, xd = idc[k].x_div;
                int32_t ids[320];
                for (int a = 0; a < na; a++) ids[a] = (int32_t)urand((uint32_t)n_exp + 1) - 1;
                if (xd > 1) /* distinct experts per token, as top-k routing gives */
                    for (int a = 0; a < na; a++) {
                        ids[a] = (int32_t)urand((uint32_t)n_exp);
                        for (int b = a - a % xd; b < a; b++)
                            if (ids[b] == ids[a]) ids[a] = -1;
                    }
                const int n_xrows = (na + xd - 1) / xd;
                float *xc = malloc(sizeof(float) * n_xrows * nc);
                for (int t = 0; t < n_xrows; t++)
                    memcpy(xc + t * nc, x + (int64_t)t * MAX_COLS, sizeof(float) * nc);
                for (int64_t i = 0; i < na * er; i++) got[i] = 12345.0f;
                CHECK(halo_cuda_memcpy(st, d_y, got, sizeof(float) * na * er) == 0);
                CHECK(halo_cuda_memcpy(st, d_x, xc, sizeof(float) * n_xrows * nc) == 0);
                CHECK(halo_cuda_memcpy(st, d_idx, ids, sizeof(int32_t) * na) == 0);
                CHECK(halo_cuda_matmul_id(st, type, d_w, rs, rs * er, er, nc, d_x, xd, d_idx, na,
                                          d_y) == 0);
                CHECK(halo_cuda_memcpy(st, got, d_y, sizeof(float) * na * er) == 0);
                CHECK(halo_cuda_stream_sync(st) == 0);
                double worst_id = 0.0, worst_f32 = 0.0;
                int untouched_bad = 0;
                for (int a = 0; a < na; a++) {
                    if (ids[a] < 0) {
                        for (int64_t r = 0; r < er; r++) untouched_bad += got[a * er + r] != 12345.0f;
                        continue;
                    }
                    const char *we = wq + (size_t)ids[a] * rs * er;
                    const float *xa = xc + (int64_t)(a / xd) * nc;
                    halo_matmul_ref(type, we, rs, er, nc, xa, 1, ref);
                    float *dsave = dec;
                    dec = dsave + (int64_t)ids[a] * er * MAX_COLS;
                    double eg, ef;
                    measure(xa, er, nc, 1, ref, got + a * er, &eg, &ef);
                    dec = dsave;
                    if (eg > worst_id || isinf(eg)) worst_id = eg;
                    if (ef > worst_f32) worst_f32 = ef;
                }
                n_cases++;
                const bool ok = within(worst_id, worst_f32) && untouched_bad == 0;
                if (!ok) n_fail++;
                CHECK_MSG(ok, "%s matmul_id n_cols %lld n_assign %d x_div %d: error %.3g (f32 loop "
                          "%.3g), %d skipped outputs written",
                          tr->name, (long long)nc, na, xd, worst_id, worst_f32, untouched_bad);
                printf("  id n_cols %lld n_assign %d x_div %d: %.1e/%.1e\n", (long long)nc, na, xd,
                       worst_id, worst_f32);
                free(xc);
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
    halo_cuda_stream_free(st);
    free(src);
    free(dec);
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
