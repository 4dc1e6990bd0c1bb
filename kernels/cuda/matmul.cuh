/*
 * matmul.cuh — what the matrix product kernels share (kernels/cuda/matmul.cu: f32
 * products; kernels/cuda/mmq.cu: int8 tensor-core products): the launch arguments,
 * the grouping of MoE assignments by expert, and the entry points of mmq.cu.
 */
#ifndef HALO_CUDA_MATMUL_CUH
#define HALO_CUDA_MATMUL_CUH

#include <cuda_runtime.h>

#include <stddef.h>
#include <stdint.h>

namespace halo_mm {

struct Args {
    const char *w;
    size_t row_stride, mat_stride;
    int64_t n_rows, n_cols;
    const float *x;
    int64_t n_tok;        /* dense: tokens; id: assignments */
    int32_t x_div;        /* id only */
    const int32_t *ids;   /* NULL: dense product */
    float *y;
    bool vec;             /* plain types: 16-byte aligned rows */
    int32_t n_mat;        /* id only: matrices (experts); ids >= n_mat are not computed */
    float *ws;            /* dense mmq: workspace for split K (NULL: none), zeroed once */
    size_t ws_bytes;
};

/* The workspace's first MMQ_WS_COUNTERS ints count the finished parts of each tile
 * (back to zero after every product); the parts' partial sums follow. */
constexpr int64_t MMQ_WS_COUNTERS = 4096;

constexpr int GEMV_MAX_ASSIGN = 256; /* matmul_id takes the gemv path up to this */

/* Whether assignment a is the first with its expert e; the whole block decides. */
__device__ __forceinline__ bool first_of_expert(const int32_t *ids, int64_t a, int32_t e) {
    for (int64_t base = 0; base < a; base += blockDim.x) {
        const int64_t i = base + threadIdx.x;
        if (__syncthreads_or(i < a && ids[i] == e)) return false;
    }
    return true;
}

/* The tiled MoE products: the block of assignment as, the first of its expert e,
 * gathers every assignment of e (in order) into list and calls tile(list, nt) for
 * each run of TILE of them (the last one shorter). NTHREADS = blockDim.x. list:
 * shared, 2 * TILE + NTHREADS entries; n_list: shared. tile may read list until it
 * returns (the next change to list comes after a barrier). */
template <int NTHREADS, int TILE, class F>
__device__ __forceinline__ void expert_tiles(const int32_t *ids, int64_t n_assign, int64_t as,
                                             int32_t e, int32_t *list, int *n_list, F &&tile) {
    if (threadIdx.x == 0) *n_list = 0;
    __syncthreads();
    for (int64_t base = as; base < n_assign; base += NTHREADS) {
        const int64_t i = base + threadIdx.x;
        if (i < n_assign && ids[i] == e) list[atomicAdd(n_list, 1)] = (int32_t)i;
        __syncthreads();
        int n = *n_list;
        __syncthreads(); /* everyone has read n_list before it changes */
        const bool last = base + NTHREADS >= n_assign;
        while (n >= TILE || (last && n > 0)) {
            const int nt = n < TILE ? n : TILE;
            tile(list, nt);
            /* move the rest to the front (keep < NTHREADS: n < TILE + NTHREADS) */
            int keep = n - nt, v = 0;
            if (threadIdx.x < keep) v = list[nt + threadIdx.x];
            __syncthreads();
            if (threadIdx.x < keep) list[threadIdx.x] = v;
            if (threadIdx.x == 0) *n_list = keep;
            __syncthreads();
            n = keep;
        }
    }
}

/* ---- mmq.cu: int8 tensor-core products (activations quantized as xq.cuh) ---------- */

/* Dense products with at least this many tokens go to mmq (fewer: the f32 kernels) */
constexpr int64_t MMQ_MIN_TOK = 16;

/* mmq has a kernel for the type */
bool mmq_type(int type);
/* mmq is on: HALO_CUDA_MMQ unset or not "0" (read once) */
bool mmq_enabled();
/* Enqueue the product a (dense: a.ids NULL; id: grouped by expert as expert_tiles);
 * the launcher's checks are done. 0, or -1 if the launch failed. */
int mmq_launch(int type, const Args &a, cudaStream_t st);

} /* namespace halo_mm */

#endif /* HALO_CUDA_MATMUL_CUH */
