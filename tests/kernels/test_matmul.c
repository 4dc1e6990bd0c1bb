/*
 * halo_matmul against the scalar reference: every decodable type x every code path
 * this CPU has (scalar, AVX2, AVX-512) x shapes that end off the tiles (rows not a
 * multiple of the micro-kernel, 1..17 tokens, columns past a panel) x 1..3 threads.
 *
 * The fast paths decode weights bit-exactly and keep activations in f32, so the
 * only difference is float summation order. Each output is checked against the
 * double-precision reference relative to sum |w x| (the scale of the rounding
 * error of any order of summation): measured worst case 2.0e-7 over this test
 * (f32 epsilon 6e-8: a few roundings of partial sums), limit 1e-6. A decoding
 * bug (a wrong nibble, scale or min) gives errors of order 1e-2.
 */
#include "harness.h"
#include "rng.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define TOL 1e-6

static double worst = 0.0;

/* One product on the current path, checked output by output. */
static void check_one(halo_threadpool *pool, int type, const char *w, size_t stride,
                      const float *wdec, int64_t rows, int64_t cols, const float *x,
                      int64_t tokens, float *y, const char *what) {
    for (int64_t i = 0; i < rows * tokens; i++) y[i] = NAN;
    halo_matmul(pool, type, w, stride, rows, cols, x, tokens, y);
    int bad = 0;
    for (int64_t t = 0; t < tokens; t++) {
        for (int64_t r = 0; r < rows; r++) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                double p = (double)wdec[r * cols + c] * x[t * cols + c];
                ref += p;
                mag += fabs(p);
            }
            double err = fabs(y[t * rows + r] - ref), rel = mag > 0 ? err / mag : err;
            if (!(rel <= TOL)) bad++;
            if (rel > worst || rel != rel) worst = rel != rel ? INFINITY : rel;
        }
    }
    CHECK_MSG(bad == 0, "%s %s: %d of %lld outputs off (%lldx%lld, %lld tokens, %d threads)",
              halo_cpu_path_name(halo_cpu_path_get()), what, bad, (long long)(rows * tokens),
              (long long)rows, (long long)cols, (long long)tokens, halo_threadpool_n_threads(pool));
}

int main(void) {
    /* the environment variable picks the path at the first product */
    if (halo_cpu_path_supported(HALO_CPU_AVX2)) {
        setenv("HALO_CPU", "avx2", 1);
        CHECK(halo_cpu_path_get() == HALO_CPU_AVX2);
    }
    CHECK(halo_cpu_path_set(-1) == HALO_ERR_UNSUPPORTED);
    CHECK(strcmp(halo_cpu_path_name(HALO_CPU_AVX512), "avx512") == 0);

    const bool quick = getenv("HALO_TEST_QUICK") != NULL;
    const int64_t max_rows = 67, max_cols = 4352, max_tokens = 17;
    uint64_t seed = 42;
    float *wf = malloc(sizeof(float) * max_rows * max_cols);
    float *wdec = malloc(sizeof(float) * max_rows * max_cols);
    float *x = malloc(sizeof(float) * max_tokens * max_cols);
    float *y = malloc(sizeof(float) * max_tokens * max_rows);
    char *w = malloc(sizeof(float) * max_rows * max_cols);
    for (int64_t i = 0; i < max_rows * max_cols; i++) wf[i] = lcg_frand(&seed);
    for (int64_t i = 0; i < max_tokens * max_cols; i++) x[i] = lcg_frand(&seed) * 3.0f;
    halo_threadpool *pools[3] = {NULL, halo_threadpool_new(2), halo_threadpool_new(3)};

    int n_types = 0, n_paths = 0;
    for (int path = 0; path < HALO_CPU_PATH_COUNT; path++) {
        if (halo_cpu_path_set(path) != 0) {
            fprintf(stderr, "note: this CPU lacks the %s path; not tested\n", halo_cpu_path_name(path));
            continue;
        }
        n_paths++;
        n_types = 0;
        for (int type = 0; type < HALO_TYPE_COUNT; type++) {
            const halo_type_traits *tr = halo_type_get(type);
            if (!tr || !tr->to_float || !tr->from_float_ref) continue;
            n_types++;
            const int64_t bs = tr->block_size;
            /* columns: one block, a few, past one 1024-column panel, large */
            int64_t col_set[4] = {bs, bs == 1 ? 17 : 3 * bs, bs == 1 ? 1031 : 1024 + bs,
                                  bs == 256 ? 4352 : 4128};
            for (int ci = 0; ci < 4; ci++) {
                const int64_t cols = col_set[ci];
                const int64_t rows = ci == 3 ? 7 : max_rows;
                size_t stride = halo_type_row_size(type, cols);
                for (int64_t r = 0; r < rows; r++) {
                    tr->from_float_ref(wf + r * cols, w + r * stride, cols);
                    tr->to_float(w + r * stride, wdec + r * cols, cols);
                }
                char what[64];
                snprintf(what, sizeof what, "%s", tr->name);
                for (int64_t tokens = 1; tokens <= max_tokens; tokens++) {
                    if (ci == 3 && tokens % 4 != 1) continue; /* large: a few token counts */
                    /* sanitizer runs: the tile edges only (fused 1-4, panel 5, 12, 13, 17) */
                    if (quick && tokens > 5 && tokens != 12 && tokens != 13 && tokens != 17)
                        continue;
                    halo_threadpool *pool = pools[tokens % 3];
                    check_one(pool, type, w, stride, wdec, rows, cols, x, tokens, y, what);
                    if (tokens == 5) { /* every thread count on one shape, and 1..4 rows */
                        for (int p = 0; p < 3; p++)
                            check_one(pools[p], type, w, stride, wdec, rows, cols, x, tokens, y, what);
                        for (int64_t rr = 1; rr <= 4; rr++)
                            check_one(pools[2], type, w, stride, wdec, rr, cols, x, tokens, y, what);
                    }
                }
            }
        }
    }
    fprintf(stderr, "worst error / sum|w x| over %d paths x %d types: %.3g (limit %.0e)\n", n_paths,
            n_types, worst, TOL);
    CHECK(n_types >= 17);
    CHECK(n_paths >= 1);

    for (int p = 1; p < 3; p++) halo_threadpool_free(pools[p]);
    free(wf), free(wdec), free(x), free(y), free(w);
    return halo_test_finish("matmul");
}
