/*
 * halo_matmul: the generic path. Rows are split across threads in contiguous
 * chunks (each thread writes its own rows of y for every token); each row is
 * decoded once into a per-thread f32 buffer and dotted with every token, so a
 * prefill batch reads the weights once. Fast per-type paths replace the decode
 * step where they exist.
 */
#include "kernels/kernels.h"
#include "quant/quant.h"

#include <stdlib.h>

typedef struct matmul_job {
    const halo_type_traits *traits;
    const char *w;
    size_t row_stride;
    int64_t n_rows, n_cols, n_tokens;
    const float *x;
    float *y;
} matmul_job;

static float dot_f32(const float *a, const float *b, int64_t n) {
    /* 8 independent sums: lets the compiler vectorize without -ffast-math */
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    float sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static void matmul_task(void *arg, int ith, int nth) {
    const matmul_job *j = arg;
    int64_t per = (j->n_rows + nth - 1) / nth;
    int64_t r0 = per * ith, r1 = r0 + per < j->n_rows ? r0 + per : j->n_rows;
    if (r0 >= r1) return;
    float *row = NULL;
    if (j->traits->to_float != NULL && (row = malloc((size_t)j->n_cols * sizeof *row)) == NULL)
        abort();
    for (int64_t r = r0; r < r1; r++) {
        j->traits->to_float(j->w + (size_t)r * j->row_stride, row, j->n_cols);
        for (int64_t t = 0; t < j->n_tokens; t++)
            j->y[t * j->n_rows + r] = dot_f32(row, j->x + t * j->n_cols, j->n_cols);
    }
    free(row);
}

void halo_matmul(halo_threadpool *pool, int type, const void *w, size_t row_stride,
                 int64_t n_rows, int64_t n_cols, const float *x, int64_t n_tokens, float *y) {
    const halo_type_traits *tr = halo_type_get(type);
    if (!tr || !tr->to_float) abort(); /* a caller bug: types are checked at load */
    matmul_job j = {tr, w, row_stride, n_rows, n_cols, n_tokens, x, y};
    halo_threadpool_run(pool, matmul_task, &j);
}
