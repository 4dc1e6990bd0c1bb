/* The scalar reference matrix product: the oracle every fast path is tested against. */
#include "kernels/kernels.h"
#include "quant/quant.h"

#include <stdlib.h>

void halo_matmul_ref(int type, const void *w, size_t row_stride, int64_t n_rows, int64_t n_cols,
                     const float *x, int64_t n_tokens, float *y) {
    const halo_type_traits *tr = halo_type_get(type);
    float *row = malloc((size_t)n_cols * sizeof *row);
    if (!tr || !tr->to_float || !row) abort(); /* a caller bug: types are checked at load */
    for (int64_t r = 0; r < n_rows; r++) {
        tr->to_float((const char *)w + (size_t)r * row_stride, row, n_cols);
        for (int64_t t = 0; t < n_tokens; t++) {
            const float *xt = x + t * n_cols;
            double sum = 0;
            for (int64_t c = 0; c < n_cols; c++) sum += (double)row[c] * xt[c];
            y[t * n_rows + r] = (float)sum;
        }
    }
    free(row);
}
