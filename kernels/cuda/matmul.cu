/*
 * Matrix products straight from the GGUF block formats (cuda_ops.h), with f32
 * activations and f32 accumulation; weights decoded bit-exactly (quant.cuh).
 *
 * One token (and MoE products with up to 64 assignments, one token each): gemv1_kernel,
 * row groups of 1..128 threads sized to the row, scales factored out of the inner
 * sums for Q4_K/Q5_K/Q6_K/Q8_0 (Dot in quant.cuh).
 *
 * Decode (2 to 8 tokens, or MoE products with 65..256 assignments): gemv_kernel. A
 * block of 4 warps owns R rows; its 128 threads walk the slices of those rows
 * (consecutive threads on consecutive slices: coalesced reads), each thread
 * decoding its slice of all R rows and multiplying it with the matching float4s of
 * the NT token rows (read once per slice, used for R rows). Weights are read once
 * for all tokens. The partial sums are reduced by warp shuffles, then across the
 * 4 warps in shared memory.
 *
 * Prefill of the types mmq.cu has (Q4_0, Q8_0, IQ4_NL, Q4_K, Q5_K, Q6_K, IQ4_XS), from
 * MMQ_MIN_TOK tokens or above GEMV_MAX_ASSIGN assignments: int8 tensor-core products
 * (mmq.cu; activations quantized as xq.cuh, halo_cuda_matmul_xq says when).
 *
 * Prefill otherwise (more tokens / assignments): gemm_kernel, a 64 rows x 64 tokens tile per
 * block: 128 columns at a time, the weights are decoded into shared memory
 * (column-major, as f32) and the activations staged beside them; each thread
 * accumulates 8 rows x 4 tokens with f32 FMA.
 *
 * MoE (matmul_id): the grid has one block (column) per assignment a. A block
 * carries on only when a is the first assignment of its expert (an earlier one
 * with the same id means another block does the work), then gathers every
 * assignment of that expert and computes them all, so each expert's matrix is
 * read once per row tile (decode: per group of NT). The host never reads ids, and
 * the grid is a function of n_assign and n_rows only.
 */
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/quant.cuh"

#include <cuda_runtime.h>

#include <stdint.h>

using namespace halo_q;
using namespace halo_mm;

namespace {

constexpr int GEMV_THREADS = 128;

/* rows per block: enough to reuse each activation float4 over several rows, few
 * enough to keep the decoded slices (R x NW floats) in registers */
template <int NT, int NW> struct GemvShape {
    static constexpr int R = NT <= 2 && NW <= 16 ? 4 : 2;
};

/* The product of rows row0..row0+R-1 of matrix w with nt (<= NT) token rows. */
template <int T, int NT>
__device__ __forceinline__ void gemv_rows(const Args &a, const char *__restrict__ w, int64_t row0,
                                          int nt, const float *const *xr, float *const *yr,
                                          float *red /* shared [4][R*NT] */) {
    typedef Dec<T> D;
    constexpr int R = GemvShape<NT, D::NW>::R, NW = D::NW, NG = NW / 4;
    const int64_t nsl = a.n_cols / D::QK * D::SPB;
    const char *rowp[R];
    for (int r = 0; r < R; r++) {
        int64_t row = row0 + r < a.n_rows ? row0 + r : a.n_rows - 1;
        rowp[r] = w + (size_t)row * a.row_stride;
    }
    const float *const *xp = xr; /* entries past nt repeat the last row */

    float acc[R][NT];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;

#pragma unroll 2
    for (int64_t i = threadIdx.x; i < nsl; i += GEMV_THREADS) {
        const int64_t blk = i / D::SPB;
        const int s = (int)(i % D::SPB);
        float wv[R][NW];
#pragma unroll
        for (int r = 0; r < R; r++)
            D::slice((const u8 *)rowp[r] + blk * D::BS, s, wv[r], a.vec);
#pragma unroll
        for (int g = 0; g < NG; g++) {
            const int64_t c = blk * D::QK + D::gcol(s, g);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const float4 xv = __ldg((const float4 *)(xp[t] + c));
#pragma unroll
                for (int r = 0; r < R; r++) {
                    float v = acc[r][t];
                    v = __fmaf_rn(wv[r][4 * g + 0], xv.x, v);
                    v = __fmaf_rn(wv[r][4 * g + 1], xv.y, v);
                    v = __fmaf_rn(wv[r][4 * g + 2], xv.z, v);
                    v = __fmaf_rn(wv[r][4 * g + 3], xv.w, v);
                    acc[r][t] = v;
                }
            }
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = acc[r][t];
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0) red[warp * R * NT + r * NT + t] = v;
        }
    __syncthreads();
    if (threadIdx.x < R * NT) {
        const int r = threadIdx.x / NT, t = threadIdx.x % NT;
        const float v = red[r * NT + t] + red[R * NT + r * NT + t] + red[2 * R * NT + r * NT + t] +
                        red[3 * R * NT + r * NT + t];
#pragma unroll
        for (int tt = 0; tt < NT; tt++) /* static indices keep yr in registers */
            if (tt == t && t < nt && row0 + r < a.n_rows) yr[tt][row0 + r] = v;
    }
    __syncthreads();
}

/* grid: x = row blocks of R rows; y = 1 (dense) or n_assign (id) */
template <int T, int NT>
__global__ void __launch_bounds__(GEMV_THREADS) gemv_kernel(Args a) {
    halo_pdl::begin();
    constexpr int R = GemvShape<NT, Dec<T>::NW>::R;
    __shared__ float red[4 * R * NT];
    const int64_t row0 = (int64_t)blockIdx.x * R;
    const float *xr[NT];
    float *yr[NT];
    if (!a.ids) {
        for (int t = 0; t < NT; t++) {
            const int64_t tt = t < a.n_tok ? t : a.n_tok - 1;
            xr[t] = a.x + tt * a.n_cols;
            yr[t] = a.y + tt * a.n_rows;
        }
        gemv_rows<T, NT>(a, a.w, row0, (int)a.n_tok, xr, yr, red);
        return;
    }
    __shared__ int32_t list[GEMV_MAX_ASSIGN];
    __shared__ int n_list;
    const int64_t as = blockIdx.y;
    const int32_t e = a.ids[as];
    if (e < 0 || !first_of_expert(a.ids, as, e)) return;
    if (threadIdx.x == 0) {
        int n = 0;
        for (int64_t i = as; i < a.n_tok; i++)
            if (a.ids[i] == e) list[n++] = (int32_t)i;
        n_list = n;
    }
    __syncthreads();
    const int n = n_list;
    const char *w = a.w + (size_t)e * a.mat_stride;
    for (int base = 0; base < n; base += NT) {
        const int nt = n - base < NT ? n - base : NT;
        for (int t = 0; t < NT; t++) {
            const int i = list[base + (t < nt ? t : nt - 1)];
            xr[t] = a.x + (int64_t)(i / a.x_div) * a.n_cols;
            yr[t] = a.y + (int64_t)i * a.n_rows;
        }
        gemv_rows<T, NT>(a, w, row0, nt, xr, yr, red);
    }
}

/* ---- one token: gemv1_kernel -------------------------------------------------------
 * Dot<T> units (quant.cuh: scales factored out of the inner sums for Q4_K, Q5_K, Q6_K,
 * Q8_0). A row group of G = 2^lg threads (G from the units per row, so that short
 * rows do not leave threads idle) owns R consecutive rows; a block of 128 threads
 * holds 128 / G groups. Each thread walks the units gl, gl + G, .. of its rows; the
 * activations of a unit are loaded once and shared by the R rows. Sums reduced by
 * shuffles within the group (G <= 32), then across its warps in shared memory. */
template <int U> struct Gemv1R {
    static constexpr int R = U <= 16 ? 4 : 2; /* rows per group on large matrices */
};

template <int T, int R>
__device__ __forceinline__ void gemv1_rows(const Args &a, const char *__restrict__ w,
                                           const float *__restrict__ x, float *__restrict__ y,
                                           int64_t row0, int lg, float *red /* shared [4*R] */) {
    typedef Dot<T> D;
    constexpr int NX = D::U / 4;
    const int G = 1 << lg, gl = (int)threadIdx.x & (G - 1);
    const int64_t nu = a.n_cols / D::QK * D::UPB;
    const u8 *rowp[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int64_t row = row0 + r < a.n_rows ? row0 + r : a.n_rows - 1;
        rowp[r] = (const u8 *)w + (size_t)row * a.row_stride;
    }
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;

#pragma unroll(D::U <= 16 ? 2 : 1) /* wide units: registers */
    for (int64_t i = gl; i < nu; i += G) {
        const int64_t blk = i / D::UPB;
        const int u = (int)(i % D::UPB);
        const float *xb = x + blk * D::QK;
        float4 xv[NX];
#pragma unroll
        for (int g = 0; g < NX; g++) xv[g] = __ldg((const float4 *)(xb + D::xcol(u, g)));
        float aux[D::NAUX];
        D::prep(xv, aux);
#pragma unroll
        for (int r = 0; r < R; r++) acc[r] += D::dot(rowp[r] + blk * D::BS, u, xv, aux, a.vec);
    }
    const int lane = (int)threadIdx.x & 31, warp = (int)threadIdx.x >> 5;
    const int gw = G < 32 ? G : 32;
#pragma unroll
    for (int r = 0; r < R; r++)
        for (int o = gw >> 1; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
    if (G <= 32) {
        if (gl == 0) {
#pragma unroll
            for (int r = 0; r < R; r++)
                if (row0 + r < a.n_rows) y[row0 + r] = acc[r];
        }
        return;
    }
    /* G = 64 or 128: the group's G / 32 warps through shared memory */
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < R; r++) red[warp * R + r] = acc[r];
    }
    __syncthreads();
    if (gl < R) { /* in the group's first warp */
        float v = 0.0f;
        for (int k = 0; k < (G >> 5); k++) v += red[(warp + k) * R + gl];
        if (row0 + gl < a.n_rows) y[row0 + gl] = v;
    }
    __syncthreads();
}

/* grid: x = row blocks of R * 128 / G rows; y = 1 (dense, one token) or n_assign (id) */
template <int T, int R>
__global__ void __launch_bounds__(GEMV_THREADS) gemv1_kernel(Args a, int lg) {
    halo_pdl::begin();
    __shared__ float red[4 * R];
    const int64_t row0 = (int64_t)blockIdx.x * ((int64_t)R << (7 - lg)) +
                         (int64_t)(threadIdx.x >> lg) * R;
    if (!a.ids) {
        gemv1_rows<T, R>(a, a.w, a.x, a.y, row0, lg, red);
        return;
    }
    __shared__ int32_t list[GEMV_MAX_ASSIGN];
    __shared__ int n_list;
    const int64_t as = blockIdx.y;
    const int32_t e = a.ids[as];
    if (e < 0 || !first_of_expert(a.ids, as, e)) return;
    if (threadIdx.x == 0) {
        int n = 0;
        for (int64_t i = as; i < a.n_tok; i++)
            if (a.ids[i] == e) list[n++] = (int32_t)i;
        n_list = n;
    }
    __syncthreads();
    const int n = n_list;
    const char *w = a.w + (size_t)e * a.mat_stride;
    for (int k = 0; k < n; k++) {
        const int64_t i = list[k];
        gemv1_rows<T, R>(a, w, a.x + (i / a.x_div) * a.n_cols, a.y + i * a.n_rows, row0, lg, red);
    }
}

/* ---- tiled product -------------------------------------------------------------- */

constexpr int TM = 64, TN = 64, TK = 128, GEMM_THREADS = 128, TPAD = 4;
constexpr size_t GEMM_SMEM = (size_t)2 * TK * (TM + TPAD) * sizeof(float);

/* The tile rows row0.. x tokens tok[0..nt) of matrix w. */
template <int T>
__device__ __forceinline__ void gemm_tile(const Args &a, const char *__restrict__ w, int64_t row0,
                                          int nt, const int32_t *tok, int64_t tok0, float *ws, float *xs) {
    typedef Dec<T> D;
    constexpr int NW = D::NW;
    /* chunk of TK columns: 256-wide formats decode half a block (its first or last
     * SPB/2 slices), the others TK/QK whole blocks */
    constexpr int SL_PER_CHUNK = D::QK >= TK ? D::SPB * TK / D::QK : (TK / D::QK) * D::SPB;
    const int tm = threadIdx.x % 8, tn = threadIdx.x / 8; /* 8 rows x 4 tokens each */
    float acc[8][4];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

    const int mrow = threadIdx.x % TM;
    const int64_t wrow = row0 + mrow < a.n_rows ? row0 + mrow : a.n_rows - 1;
    const u8 *wr = (const u8 *)w + (size_t)wrow * a.row_stride;

    for (int64_t k0 = 0; k0 < a.n_cols; k0 += TK) {
        const int kc = a.n_cols - k0 < TK ? (int)(a.n_cols - k0) : TK;
        /* decode: thread handles row mrow, slices j = threadIdx.x / TM, step 2 */
        const int nsl = D::QK >= TK ? SL_PER_CHUNK : kc / D::QK * D::SPB;
        for (int j = threadIdx.x / TM; j < nsl; j += GEMM_THREADS / TM) {
            int64_t blk;
            int s;
            if (D::QK >= TK) {
                blk = k0 / D::QK;
                s = (int)((k0 % D::QK) / TK) * SL_PER_CHUNK + j;
            } else {
                blk = k0 / D::QK + j / D::SPB;
                s = j % D::SPB;
            }
            float wv[NW];
            D::slice(wr + blk * D::BS, s, wv, a.vec);
            const int cbase = (int)(blk * D::QK - k0);
#pragma unroll
            for (int g = 0; g < NW / 4; g++) {
                const int c = cbase + D::gcol(s, g);
#pragma unroll
                for (int q = 0; q < 4; q++) ws[(c + q) * (TM + TPAD) + mrow] = wv[4 * g + q];
            }
        }
        /* activations: token n, 4 columns per step */
        for (int idx = threadIdx.x; idx < TN * (kc / 4); idx += GEMM_THREADS) {
            const int n = idx % TN, c4 = idx / TN; /* conflict-free transposed stores */
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            if (n < nt) {
                const int64_t xrow = tok ? (int64_t)(tok[n] / a.x_div) : tok0 + n;
                v = __ldg((const float4 *)(a.x + xrow * a.n_cols + k0) + c4);
            }
            float *d = xs + (4 * c4) * (TN + TPAD) + n;
            d[0] = v.x;
            d[TN + TPAD] = v.y;
            d[2 * (TN + TPAD)] = v.z;
            d[3 * (TN + TPAD)] = v.w;
        }
        __syncthreads();
#pragma unroll 4
        for (int k = 0; k < kc; k++) {
            const float4 w0 = *(const float4 *)(ws + k * (TM + TPAD) + 8 * tm);
            const float4 w1 = *(const float4 *)(ws + k * (TM + TPAD) + 8 * tm + 4);
            const float4 xv = *(const float4 *)(xs + k * (TN + TPAD) + 4 * tn);
            const float wr8[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
            const float xr4[4] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int jj = 0; jj < 4; jj++) acc[i][jj] = __fmaf_rn(wr8[i], xr4[jj], acc[i][jj]);
        }
        __syncthreads();
    }
    for (int jj = 0; jj < 4; jj++) {
        const int n = 4 * tn + jj;
        if (n >= nt) continue;
        const int64_t yrow = tok ? (int64_t)tok[n] : tok0 + n;
        float *yp = a.y + yrow * a.n_rows + row0 + 8 * tm;
        for (int i = 0; i < 8; i++)
            if (row0 + 8 * tm + i < a.n_rows) yp[i] = acc[i][jj];
    }
}

/* dense: grid x = row tiles, y = token tiles. id: grid x = n_assign, y = row tiles. */
template <int T>
__global__ void __launch_bounds__(GEMM_THREADS) gemm_kernel(Args a) {
    halo_pdl::begin();
    extern __shared__ float4 smem4[];
    float *ws = (float *)smem4, *xs = ws + TK * (TM + TPAD);
    if (!a.ids) {
        const int64_t row0 = (int64_t)blockIdx.x * TM, tok0 = (int64_t)blockIdx.y * TN;
        const int nt = a.n_tok - tok0 < TN ? (int)(a.n_tok - tok0) : TN;
        gemm_tile<T>(a, a.w, row0, nt, nullptr, tok0, ws, xs);
        return;
    }
    __shared__ int32_t list[2 * TN + GEMM_THREADS];
    __shared__ int n_list;
    const int64_t as = blockIdx.x, row0 = (int64_t)blockIdx.y * TM;
    const int32_t e = a.ids[as];
    if (e < 0 || !first_of_expert(a.ids, as, e)) return;
    const char *w = a.w + (size_t)e * a.mat_stride;
    expert_tiles<GEMM_THREADS, TN>(a.ids, a.n_tok, as, e, list, &n_list,
                                   [&](const int32_t *tok, int nt) {
                                       gemm_tile<T>(a, w, row0, nt, tok, 0, ws, xs);
                                   });
}

/* ---- embedding rows --------------------------------------------------------------- */

/* grid: x = row index i < n, y = slice groups */
template <int T>
__global__ void __launch_bounds__(128) get_rows_kernel(Args a, const int32_t *rows) {
    halo_pdl::begin();
    typedef Dec<T> D;
    const int64_t i = blockIdx.x;
    const int64_t sl = (int64_t)blockIdx.y * blockDim.x + threadIdx.x;
    if (sl >= a.n_cols / D::QK * D::SPB) return;
    const int64_t blk = sl / D::SPB;
    const int s = (int)(sl % D::SPB);
    float wv[D::NW];
    D::slice((const u8 *)a.w + (size_t)rows[i] * a.row_stride + blk * D::BS, s, wv, a.vec);
    float *yp = a.y + i * a.n_cols + blk * D::QK;
    for (int g = 0; g < D::NW / 4; g++)
        for (int q = 0; q < 4; q++) yp[D::gcol(s, g) + q] = wv[4 * g + q];
}

/* ---- host side ----------------------------------------------------------------------- */

struct TypeInfo {
    int qk, bs, align;
};

template <int T> TypeInfo info_of() { return {Dec<T>::QK, Dec<T>::BS, Dec<T>::ALIGN}; }

bool type_info(int type, TypeInfo *ti) {
    switch (type) {
#define X(t)                                                                                       \
    case t: *ti = info_of<t>(); return true;
        HALO_CUDA_FOR_TYPES(X)
#undef X
    default: return false;
    }
}

/* Checks shared by the launchers: the type, n_cols a whole number of blocks, block
 * alignment of the weights; returns the Args' vec flag through *vec. */
bool check(int type, const void *w, size_t row_stride, size_t mat_stride, int64_t n_cols,
           bool *vec) {
    TypeInfo ti;
    if (!type_info(type, &ti) || n_cols <= 0 || n_cols % ti.qk) return false;
    if ((uintptr_t)w % ti.align || row_stride % ti.align || mat_stride % ti.align) return false;
    if (row_stride < (size_t)(n_cols / ti.qk) * ti.bs) return false;
    *vec = ((uintptr_t)w | row_stride | mat_stride) % 16 == 0;
    return true;
}

template <int T, int NT> void launch_gemv(const Args &a, int64_t ny, cudaStream_t st) {
    constexpr int R = GemvShape<NT, Dec<T>::NW>::R;
    dim3 grid((unsigned)((a.n_rows + R - 1) / R), (unsigned)ny);
    halo_pdl::launch(gemv_kernel<T, NT>, grid, GEMV_THREADS, 0, st, a);
}

/* 2..8 tokens (one token: launch_gemv1) */
template <int T> void launch_gemv_nt(const Args &a, int nt, int64_t ny, cudaStream_t st) {
    if (nt <= 2) launch_gemv<T, 2>(a, ny, st);
    else if (nt <= 4) launch_gemv<T, 4>(a, ny, st);
    else launch_gemv<T, 8>(a, ny, st);
}

template <int T, int R> void launch_gemv1_r(const Args &a, int lg, int64_t ny, cudaStream_t st) {
    const int64_t rpb = (int64_t)R << (7 - lg);
    dim3 grid((unsigned)((a.n_rows + rpb - 1) / rpb), (unsigned)ny);
    halo_pdl::launch(gemv1_kernel<T, R>, grid, GEMV_THREADS, 0, st, a, lg);
}

/* One token (dense) or one token per assignment (id). G: the least power of 2 >= the
 * units per row, at most 128. R rows per group on large dense matrices (activations
 * reused over R rows); 1 otherwise, for more blocks (MoE experts, short matrices). */
template <int T> void launch_gemv1(const Args &a, int64_t ny, cudaStream_t st) {
    const int64_t nu = a.n_cols / Dot<T>::QK * Dot<T>::UPB;
    int lg = 0;
    while (lg < 7 && ((int64_t)1 << lg) < nu) lg++;
    if (!a.ids && a.n_rows >= 512) launch_gemv1_r<T, Gemv1R<Dot<T>::U>::R>(a, lg, ny, st);
    else launch_gemv1_r<T, 1>(a, lg, ny, st);
}

template <int T> void launch_gemm(const Args &a, dim3 grid, cudaStream_t st) {
    static bool attr_set = false; /* idempotent: a race only repeats the call */
    if (!attr_set) {
        cudaFuncSetAttribute(gemm_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)GEMM_SMEM);
        attr_set = true;
    }
    halo_pdl::launch(gemm_kernel<T>, grid, GEMM_THREADS, GEMM_SMEM, st, a);
}

enum Op { OP_DENSE, OP_ID, OP_ROWS };

template <int T>
void dispatch(Op op, const Args &a, const int32_t *rows, int32_t n_rows_get, cudaStream_t st) {
    if (op == OP_ROWS) {
        const int64_t nsl = a.n_cols / Dec<T>::QK * Dec<T>::SPB;
        dim3 grid((unsigned)n_rows_get, (unsigned)((nsl + 127) / 128));
        halo_pdl::launch(get_rows_kernel<T>, grid, 128, 0, st, a, rows);
    } else if (op == OP_DENSE) {
        if (a.n_tok == 1) launch_gemv1<T>(a, 1, st);
        else if (a.n_tok <= 8) launch_gemv_nt<T>(a, (int)a.n_tok, 1, st);
        else
            launch_gemm<T>(a, dim3((unsigned)((a.n_rows + TM - 1) / TM),
                                   (unsigned)((a.n_tok + TN - 1) / TN)),
                           st);
    } else {
        if (a.n_tok <= GEMV_MAX_ASSIGN) {
            /* few assignments: an expert's list is short (1 for one token), so one
             * assignment at a time (a repeated expert is re-read from L2) */
            if (a.n_tok <= 64) launch_gemv1<T>(a, a.n_tok, st);
            else launch_gemv_nt<T>(a, 4, a.n_tok, st);
        } else {
            launch_gemm<T>(a, dim3((unsigned)a.n_tok, (unsigned)((a.n_rows + TM - 1) / TM)), st);
        }
    }
}

int run(int type, Op op, const Args &a, const int32_t *rows, int32_t n, cudaStream_t st) {
    switch (type) {
#define X(t)                                                                                       \
    case t: dispatch<t>(op, a, rows, n, st); break;
        HALO_CUDA_FOR_TYPES(X)
#undef X
    default: return -1;
    }
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}

} /* namespace */

extern "C" bool halo_cuda_matmul_supported(int type) {
    TypeInfo ti;
    return type_info(type, &ti);
}

extern "C" bool halo_cuda_matmul_xq(int type, int64_t n_tok) {
    return n_tok >= MMQ_MIN_TOK && mmq_type(type) && mmq_enabled();
}

extern "C" bool halo_cuda_matmul_id_xq(int type, int32_t n_assign) {
    return n_assign > GEMV_MAX_ASSIGN && mmq_type(type) && mmq_enabled();
}

extern "C" int halo_cuda_matmul_ws(void *stream, int type, const void *w, size_t row_stride,
                                   int64_t n_rows, int64_t n_cols, const float *x,
                                   int64_t n_tokens, float *y, void *ws, size_t ws_bytes) {
    bool vec;
    if (!check(type, w, row_stride, 0, n_cols, &vec) || n_rows < 0 || n_tokens < 0) return -1;
    if ((uintptr_t)x % 16 || n_cols % 4) return -1; /* activations are read as float4 */
    if ((uintptr_t)ws % 16) return -1;
    if (n_rows == 0 || n_tokens == 0) return 0;
    if (n_rows > (int64_t)UINT32_MAX * 4 || n_tokens > (int64_t)65535 * TN) return -1;
    Args a = {(const char *)w, row_stride, 0, n_rows, n_cols, x, n_tokens, 1, nullptr, y, vec};
    a.ws = (float *)ws;
    a.ws_bytes = ws ? ws_bytes : 0;
    if (halo_cuda_matmul_xq(type, n_tokens)) return mmq_launch(type, a, (cudaStream_t)stream);
    return run(type, OP_DENSE, a, nullptr, 0, (cudaStream_t)stream);
}

extern "C" int halo_cuda_matmul(void *stream, int type, const void *w, size_t row_stride,
                                int64_t n_rows, int64_t n_cols, const float *x, int64_t n_tokens,
                                float *y) {
    return halo_cuda_matmul_ws(stream, type, w, row_stride, n_rows, n_cols, x, n_tokens, y,
                               nullptr, 0);
}

extern "C" int halo_cuda_matmul_id(void *stream, int type, const void *w, size_t row_stride,
                                   size_t mat_stride, int64_t n_rows, int64_t n_cols,
                                   const float *x, int32_t x_div, const int32_t *ids,
                                   int32_t n_assign, float *y, int32_t n_mat) {
    bool vec;
    if (!check(type, w, row_stride, mat_stride, n_cols, &vec) || n_rows < 0 || n_assign < 0 ||
        x_div < 1 || n_mat < 1)
        return -1;
    if ((uintptr_t)x % 16 || n_cols % 4) return -1;
    if (n_rows == 0 || n_assign == 0) return 0;
    if (n_rows > (int64_t)65535 * TM) return -1;
    Args a = {(const char *)w, row_stride, mat_stride, n_rows, n_cols, x, n_assign, x_div, ids, y,
              vec, n_mat};
    if (halo_cuda_matmul_id_xq(type, n_assign)) return mmq_launch(type, a, (cudaStream_t)stream);
    return run(type, OP_ID, a, nullptr, 0, (cudaStream_t)stream);
}

extern "C" int halo_cuda_get_rows(void *stream, int type, const void *w, size_t row_stride,
                                  int64_t n_cols, const int32_t *rows, int32_t n, float *y) {
    bool vec;
    if (!check(type, w, row_stride, 0, n_cols, &vec) || n < 0) return -1;
    if (n == 0) return 0;
    Args a = {(const char *)w, row_stride, 0, 1, n_cols, nullptr, 0, 1, nullptr, y, vec};
    return run(type, OP_ROWS, a, rows, n, (cudaStream_t)stream);
}
