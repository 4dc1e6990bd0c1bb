/*
 * kernels — the math of a forward pass on the CPU (kernels/cpu/) and, later, CUDA
 * (kernels/cuda/): products of f32 activations with weights in any block format,
 * and the small operations around them. Kernels know nothing of GGUF or of
 * architectures: they see pointers, shapes and a halo_type.
 *
 * Every kernel has a scalar reference (`*_ref`) beside it; the fast paths (AVX2,
 * AVX-512, chosen at run time) are tested against the reference.
 *
 * Threads: a persistent pool (halo_threadpool) runs one function on every thread,
 * the caller being thread 0; kernels split their work by (ith, nth). A NULL pool
 * means "run on the calling thread only".
 */
#ifndef HALO_KERNELS_H
#define HALO_KERNELS_H

#include "halo.h"

#include <stddef.h>
#include <stdint.h>

/* ---- thread pool ---------------------------------------------------------- */

typedef struct halo_threadpool halo_threadpool;

/* n_threads counts the caller; n_threads <= 1 gives a pool that runs inline.
 * Returns NULL on allocation failure. */
halo_threadpool *halo_threadpool_new(int n_threads);
void halo_threadpool_free(halo_threadpool *pool);
int halo_threadpool_n_threads(const halo_threadpool *pool); /* 1 for NULL */

typedef void (*halo_task_fn)(void *arg, int ith, int nth);
/* Run fn(arg, ith, nth) on every thread of the pool (ith 0 on the caller) and
 * return when all have finished. Not reentrant: fn must not call run again. */
void halo_threadpool_run(halo_threadpool *pool, halo_task_fn fn, void *arg);

/* ---- matrix products -------------------------------------------------------
 * W holds n_rows rows of n_cols values of `type` (halo_type), row r starting at
 * (const char *)w + r * row_stride. x holds n_tokens activation rows of n_cols
 * floats (x + t * n_cols). The product is
 *     y[t * n_rows + r] = sum_c W[r][c] * x[t][c]
 * i.e. y = x W^T, each output row contiguous per token, as a linear layer. */
void halo_matmul(halo_threadpool *pool, int type, const void *w, size_t row_stride,
                 int64_t n_rows, int64_t n_cols, const float *x, int64_t n_tokens, float *y);
/* The scalar reference: each row decoded to f32 and summed in double, then
 * rounded to float. Single-threaded; slow; the oracle for halo_matmul. */
void halo_matmul_ref(int type, const void *w, size_t row_stride, int64_t n_rows, int64_t n_cols,
                     const float *x, int64_t n_tokens, float *y);

#endif /* HALO_KERNELS_H */
