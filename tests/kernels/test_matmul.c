/* halo_matmul against the scalar reference, every decodable type, with and without threads. */
#include "harness.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

#include <math.h>
#include <stdint.h>

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return ((float)(*s >> 40) / (float)(1ull << 24)) * 2.0f - 1.0f;
}

int main(void) {
    const int64_t rows = 67, cols = 512, tokens = 5;
    uint64_t seed = 42;
    float *wf = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * tokens * cols);
    float *y = malloc(sizeof(float) * tokens * rows), *yr = malloc(sizeof(float) * tokens * rows);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand(&seed);
    for (int64_t i = 0; i < tokens * cols; i++) x[i] = frand(&seed);
    halo_threadpool *pools[2] = {NULL, halo_threadpool_new(3)};
    int n_types = 0;
    for (int type = 0; type < HALO_TYPE_COUNT; type++) {
        const halo_type_traits *tr = halo_type_get(type);
        if (!tr || !tr->to_float || !tr->from_float_ref || cols % tr->block_size) continue;
        size_t stride = halo_type_row_size(type, cols);
        char *w = malloc(stride * rows);
        for (int64_t r = 0; r < rows; r++) tr->from_float_ref(wf + r * cols, w + r * stride, cols);
        halo_matmul_ref(type, w, stride, rows, cols, x, tokens, yr);
        for (int p = 0; p < 2; p++) {
            halo_matmul(pools[p], type, w, stride, rows, cols, x, tokens, y);
            double num = 0, den = 0;
            for (int64_t i = 0; i < rows * tokens; i++) {
                num += (double)(y[i] - yr[i]) * (y[i] - yr[i]);
                den += (double)yr[i] * yr[i];
            }
            /* f32 sums of 512 products against a double sum: ~1e-7 relative */
            CHECK_MSG(sqrt(num / den) < 1e-5, "%s: relRMS %.3g (pool %d)", tr->name,
                      sqrt(num / den), p);
        }
        free(w);
        n_types++;
    }
    CHECK(n_types >= 15);
    halo_threadpool_free(pools[1]);
    free(wf), free(x), free(y), free(yr);
    return halo_test_finish("matmul");
}
