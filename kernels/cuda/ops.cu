/*
 * The small operations of a forward pass on the GPU (RMS norm, RoPE, elementwise
 * gates, row copies, MoE routing and combination), with the semantics of
 * kernels/cpu/ops.c. Every launcher checks its shape on the host, enqueues one
 * kernel and returns; grids come from the arguments only (CUDA-graph safe).
 */
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/route.cuh"

#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>

#define FULL_MASK 0xffffffffu

static inline int launched(void) { return cudaGetLastError() == cudaSuccess ? 0 : -1; }

static inline unsigned grid_1d(int64_t n, int threads, int64_t cap) {
    int64_t b = (n + threads - 1) / threads;
    if (b > cap) b = cap;
    if (b < 1) b = 1;
    return (unsigned)b;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }

/* ---- RMS norm ------------------------------------------------------------------------
 * Rows of up to 1024 values: a warp per row (per-head q/k norms: many short rows);
 * longer rows: a block of 512 threads per row. y may equal x: every element is
 * read for the sum before any is written, and each thread writes only what it read. */

__global__ void rms_norm_warp_kernel(const float *__restrict__ x, const float *__restrict__ w,
                                     float *y, int64_t n_rows, int n, float eps) {
    halo_pdl::begin();
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (row >= n_rows) return;
    const float *xr = x + row * n;
    float *yr = y + row * n;
    float ss = 0.0f;
    for (int i = lane; i < n; i += 32) ss += xr[i] * xr[i];
    ss = warp_sum(ss);
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = lane; i < n; i += 32) yr[i] = w ? xr[i] * scale * w[i] : xr[i] * scale;
}

__global__ void rms_norm_block_kernel(const float *__restrict__ x, const float *__restrict__ w,
                                      float *y, int64_t n, float eps) {
    halo_pdl::begin();
    __shared__ float part[32];
    const float *xr = x + (int64_t)blockIdx.x * n;
    float *yr = y + (int64_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x / 32] = ss;
    __syncthreads();
    float tot = 0.0f;
    for (unsigned i = 0; i < blockDim.x / 32; i++) tot += part[i];
    const float scale = 1.0f / sqrtf(tot / (float)n + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        yr[i] = w ? xr[i] * scale * w[i] : xr[i] * scale;
}

extern "C" int halo_cuda_rms_norm(void *stream, const float *x, const float *w, float *y,
                                  int64_t n_rows, int64_t n, float eps) {
    if (n_rows < 0 || n < 0) return -1;
    if (n_rows == 0 || n == 0) return 0;
    cudaStream_t s = (cudaStream_t)stream;
    if (n <= 1024) {
        const int warps = 8;
        const int64_t blocks = (n_rows + warps - 1) / warps;
        if (blocks > INT32_MAX) return -1;
        halo_pdl::launch(rms_norm_warp_kernel, (unsigned)blocks, warps * 32, 0, s, x, w, y, n_rows, (int)n,
                                                                       eps);
    } else {
        if (n_rows > INT32_MAX) return -1;
        halo_pdl::launch(rms_norm_block_kernel, (unsigned)n_rows, 512, 0, s, x, w, y, n, eps);
    }
    return launched();
}

/* x[r] += y[r], then xn[r] = rms_norm(x[r]) * w: a block of 512 threads per row. A decode
 * step runs it 80 times on one 2048-wide row: it is latency-bound, so each thread keeps its
 * (up to ADD_NORM_KEEP) sums in registers, the norm weights are loaded before the
 * reduction, and the 16 warp sums are added by one warp's shuffles. */
#define ADD_NORM_KEEP 8
__global__ void __launch_bounds__(512) add_rms_norm_kernel(float *x, const float *__restrict__ y,
                                                           const float *__restrict__ w,
                                                           float *__restrict__ xn, int64_t n,
                                                           float eps) {
    halo_pdl::begin();
    __shared__ float part[32];
    __shared__ float total;
    float *xr = x + (int64_t)blockIdx.x * n;
    const float *yr = y + (int64_t)blockIdx.x * n;
    float *zr = xn + (int64_t)blockIdx.x * n;
    float v[ADD_NORM_KEEP], wv[ADD_NORM_KEEP];
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < ADD_NORM_KEEP; j++) {
        const int64_t i = threadIdx.x + (int64_t)j * blockDim.x;
        v[j] = 0.0f;
        wv[j] = 1.0f;
        if (i < n) {
            v[j] = xr[i] + yr[i];
            if (w) wv[j] = __ldg(w + i);
        }
    }
#pragma unroll
    for (int j = 0; j < ADD_NORM_KEEP; j++) {
        const int64_t i = threadIdx.x + (int64_t)j * blockDim.x;
        if (i < n) {
            xr[i] = v[j];
            ss += v[j] * v[j];
        }
    }
    /* rows longer than the registers hold: the rest through memory */
    for (int64_t i = threadIdx.x + (int64_t)ADD_NORM_KEEP * blockDim.x; i < n; i += blockDim.x) {
        const float t = xr[i] + yr[i];
        xr[i] = t;
        ss += t * t;
    }
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x / 32] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float t = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
        t = warp_sum(t);
        if (threadIdx.x == 0) total = t;
    }
    __syncthreads();
    const float scale = 1.0f / sqrtf(total / (float)n + eps);
#pragma unroll
    for (int j = 0; j < ADD_NORM_KEEP; j++) {
        const int64_t i = threadIdx.x + (int64_t)j * blockDim.x;
        if (i < n) zr[i] = v[j] * scale * wv[j];
    }
    for (int64_t i = threadIdx.x + (int64_t)ADD_NORM_KEEP * blockDim.x; i < n; i += blockDim.x)
        zr[i] = w ? xr[i] * scale * w[i] : xr[i] * scale; /* its own writes: no barrier */
}

extern "C" int halo_cuda_add_rms_norm(void *stream, float *x, const float *y, const float *w,
                                      float *xn, int64_t n_rows, int64_t n, float eps) {
    if (n_rows < 0 || n < 0 || n_rows > INT32_MAX) return -1;
    if (n_rows == 0 || n == 0) return 0;
    halo_pdl::launch(add_rms_norm_kernel, (unsigned)n_rows, 512, 0, (cudaStream_t)stream, x, y, w, xn, n, eps);
    return launched();
}

/* ---- RoPE: a thread per rotated pair ---------------------------------------------------- */

__global__ void rope_kernel(float *x, int64_t total, int n_heads, int head_dim, int half,
                            int neox, const int32_t *__restrict__ pos,
                            const float *__restrict__ inv_freq) {
    halo_pdl::begin();
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)(e % half);
        const int64_t th = e / half; /* token * n_heads + head */
        const int64_t t = th / n_heads;
        /* the angle in float, as halo_rope computes it */
        const float theta = (float)pos[t] * inv_freq[i];
        float sn, cs;
        sincosf(theta, &sn, &cs);
        float *xh = x + th * head_dim;
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        const float a = xh[i0], b = xh[i1];
        xh[i0] = a * cs - b * sn;
        xh[i1] = a * sn + b * cs;
    }
}

extern "C" int halo_cuda_rope(void *stream, float *x, int32_t n_tok, int n_heads, int head_dim,
                              int n_rot, int mode, const int32_t *pos, const float *inv_freq) {
    if (n_tok < 0 || n_heads < 0 || head_dim < 0 || n_rot < 0 || n_rot > head_dim ||
        (n_rot & 1) || (mode != 0 && mode != 2))
        return -1;
    const int half = n_rot / 2;
    const int64_t total = (int64_t)n_tok * n_heads * half;
    if (total == 0) return 0;
    halo_pdl::launch(rope_kernel, grid_1d(total, 256, 1 << 20), 256, 0, (cudaStream_t)stream,
        x, total, n_heads, head_dim, half, mode == 2, pos, inv_freq);
    return launched();
}

/* ---- elementwise ------------------------------------------------------------------------ */

__global__ void add_kernel(float *x, const float *__restrict__ y, int64_t n) {
    halo_pdl::begin();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}

__global__ void swiglu_kernel(float *g, const float *__restrict__ u, int64_t n) {
    halo_pdl::begin();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        g[i] = silu_f(g[i]) * u[i];
}

__global__ void sigmoid_gate_kernel(float *x, const float *__restrict__ g, int64_t n) {
    halo_pdl::begin();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] = x[i] / (1.0f + expf(-g[i]));
}

/* One run of `block` values per thread block of block / 2 threads: the butterflies of
 * halo_hadamard in shared memory, stage by stage (the same sums, so the same bits). */
__global__ void hadamard_kernel(float *x, int block, float norm) {
    halo_pdl::begin();
    extern __shared__ float s[];
    float *r = x + (size_t)blockIdx.x * block;
    const int t = threadIdx.x, half = block / 2;
    s[t] = r[t];
    s[t + half] = r[t + half];
    __syncthreads();
    for (int h = 1; h < block; h *= 2) {
        const int i = (t / h) * 2 * h + t % h;
        const float a = s[i], c = s[i + h];
        s[i] = a + c;
        s[i + h] = a - c;
        __syncthreads();
    }
    r[t] = s[t] * norm;
    r[t + half] = s[t + half] * norm;
}

extern "C" int halo_cuda_hadamard(void *stream, float *x, int64_t n_rows, int64_t n, int block) {
    if (n_rows < 0 || block < 64 || block > 1024 || (block & (block - 1)) || n % block) return -1;
    const int64_t runs = n_rows * (n / block);
    if (runs == 0) return 0;
    if (runs > 0x7fffffff) return -1;
    halo_pdl::launch(hadamard_kernel, (unsigned)runs, block / 2, sizeof(float) * (size_t)block,
                     (cudaStream_t)stream, x, block, 1.0f / sqrtf((float)block));
    return launched();
}

extern "C" int halo_cuda_add(void *stream, float *x, const float *y, int64_t n) {
    if (n < 0) return -1;
    if (n == 0) return 0;
    halo_pdl::launch(add_kernel, grid_1d(n, 256, 8192), 256, 0, (cudaStream_t)stream, x, y, n);
    return launched();
}

extern "C" int halo_cuda_swiglu(void *stream, float *g, const float *u, int64_t n) {
    if (n < 0) return -1;
    if (n == 0) return 0;
    halo_pdl::launch(swiglu_kernel, grid_1d(n, 256, 8192), 256, 0, (cudaStream_t)stream, g, u, n);
    return launched();
}

extern "C" int halo_cuda_sigmoid_gate(void *stream, float *x, const float *g, int64_t n) {
    if (n < 0) return -1;
    if (n == 0) return 0;
    halo_pdl::launch(sigmoid_gate_kernel, grid_1d(n, 256, 8192), 256, 0, (cudaStream_t)stream, x, g, n);
    return launched();
}

/* ---- row copies: blocks over (column chunk, row); rows past the grid loop ---------------- */

#define ROWS_GRID_Y 65535

__global__ void copy2d_kernel(float *dst, int64_t dst_stride, const float *__restrict__ src,
                              int64_t src_stride, int64_t rows, int64_t width) {
    halo_pdl::begin();
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < width;
             i += (int64_t)gridDim.x * blockDim.x)
            dst[r * dst_stride + i] = src[r * src_stride + i];
}

/* scatter: dst[idx[r]] = src[r]; gather: dst[r] = src[idx[r]]. Negative indices skip. */
__global__ void rows_by_index_kernel(float *dst, const float *__restrict__ src,
                                     const int32_t *__restrict__ idx, int32_t n, int64_t width,
                                     int scatter) {
    halo_pdl::begin();
    for (int64_t r = blockIdx.y; r < n; r += gridDim.y) {
        const int32_t j = idx[r];
        if (j < 0) continue;
        float *d = dst + (scatter ? (int64_t)j : r) * width;
        const float *s = src + (scatter ? r : (int64_t)j) * width;
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < width;
             i += (int64_t)gridDim.x * blockDim.x)
            d[i] = s[i];
    }
}

static dim3 rows_grid(int64_t rows, int64_t width) {
    return dim3(grid_1d(width, 256, 256), (unsigned)(rows < ROWS_GRID_Y ? rows : ROWS_GRID_Y));
}

extern "C" int halo_cuda_copy2d(void *stream, float *dst, int64_t dst_stride, const float *src,
                                int64_t src_stride, int64_t rows, int64_t width) {
    if (rows < 0 || width < 0) return -1;
    if (rows == 0 || width == 0) return 0;
    halo_pdl::launch(copy2d_kernel, rows_grid(rows, width), 256, 0, (cudaStream_t)stream,
        dst, dst_stride, src, src_stride, rows, width);
    return launched();
}

extern "C" int halo_cuda_gather_rows(void *stream, float *dst, const float *src,
                                     const int32_t *idx, int32_t n, int64_t width) {
    if (n < 0 || width < 0) return -1;
    if (n == 0 || width == 0) return 0;
    halo_pdl::launch(rows_by_index_kernel, rows_grid(n, width), 256, 0, (cudaStream_t)stream, dst, src, idx, n,
                                                                                 width, 0);
    return launched();
}

extern "C" int halo_cuda_scatter_rows(void *stream, float *dst, const float *src,
                                      const int32_t *idx, int32_t n, int64_t width) {
    if (n < 0 || width < 0) return -1;
    if (n == 0 || width == 0) return 0;
    halo_pdl::launch(rows_by_index_kernel, rows_grid(n, width), 256, 0, (cudaStream_t)stream, dst, src, idx, n,
                                                                                 width, 1);
    return launched();
}

/* ---- MoE routing: a warp per token (route.cuh) ---------------------------------------- */

__global__ void topk_route_kernel(const float *__restrict__ logits, int32_t n, int n_expert,
                                  int k, int normalize, int32_t *ids, float *weights) {
    halo_pdl::begin();
    const int64_t t = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (t >= n) return;
    halo_route::topk_warp(logits + t * n_expert, n_expert, k, normalize != 0, ids + t * k,
                          weights + t * k);
}

extern "C" int halo_cuda_topk_route(void *stream, const float *logits, int32_t n, int n_expert,
                                    int k, bool normalize, int32_t *ids, float *weights) {
    if (n < 0 || n_expert < 1 || n_expert > halo_route::MAX_EXPERT || k < 1 || k > halo_route::MAX_K ||
        k > n_expert)
        return -1;
    if (n == 0) return 0;
    const int warps = 4;
    halo_pdl::launch(topk_route_kernel, (unsigned)((n + warps - 1) / warps), warps * 32, 0,
                        (cudaStream_t)stream, logits, n, n_expert, k, normalize ? 1 : 0, ids,
                                                weights);
    return launched();
}

/* ---- MoE combination: blocks over (column chunk, token) ---------------------------------- */

__global__ void moe_combine_kernel(const float *__restrict__ y, const float *__restrict__ w,
                                   int32_t n, int k, int64_t n_embd, const float *__restrict__ sh,
                                   const float *__restrict__ shg, float *out) {
    halo_pdl::begin();
    for (int64_t t = blockIdx.y; t < n; t += gridDim.y) {
        const float gate = sh ? 1.0f / (1.0f + expf(-shg[t])) : 0.0f;
        for (int64_t d = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; d < n_embd;
             d += (int64_t)gridDim.x * blockDim.x) {
            float acc = 0.0f;
            for (int j = 0; j < k; j++) acc += w[t * k + j] * y[(t * k + j) * n_embd + d];
            if (sh) acc += gate * sh[t * n_embd + d];
            out[t * n_embd + d] = acc;
        }
    }
}

extern "C" int halo_cuda_moe_combine(void *stream, const float *y, const float *w, int32_t n,
                                     int k, int64_t n_embd, const float *sh, const float *shg,
                                     float *out) {
    if (n < 0 || k < 0 || n_embd < 0 || (sh && !shg)) return -1;
    if (n == 0 || n_embd == 0) return 0;
    halo_pdl::launch(moe_combine_kernel, rows_grid(n, n_embd), 256, 0, (cudaStream_t)stream, y, w, n, k, n_embd,
                                                                               sh, shg, out);
    return launched();
}
