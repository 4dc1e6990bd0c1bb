/*
 * Matrix-vector products for decode (cuda_ops.h: halo_cuda_mv), several in one launch.
 *
 * Why: a decode step is ~40 layers x a dozen products of 0.5-13 MB. At that size a
 * product is bound by latency and by instructions, not by bytes: the f32-activation
 * kernels of matmul.cu spend ~4 instructions a weight (decode a code to float, FMA
 * with an f32 activation loaded from L1) and one launch per product. Here:
 * - Activations are quantized in the block's shared memory to int16 per 32 columns
 *   (xq.cuh), so a weight costs a fraction of a dp2a (2 codes x 2 int16 -> int32)
 *   plus a byte mask for 2-4 codes: ~1.5 instructions a weight for Q4_K.
 * - One launch runs up to HALO_CUDA_MV_MAX products (q, k, v; the router with the
 *   shared expert; a layer's projections) of any supported types; a SwiGLU pair
 *   (gate and up) is computed by the same threads and written as silu(g) * u.
 * - Products by expert id (MoE) read the expert from device memory (graph-safe).
 *
 * Layout of the work: a product's rows are cut into row blocks of 256 threads. A
 * row is shared by G = 2^lg threads (G = the chunks of a row rounded up to a power
 * of two, at most 32), each owning chunks gl, gl + G, .. of two rows (or of the gate
 * and up row of a pair); a chunk is the codes one thread decodes at once (32 for
 * the k-quants, 16 for Q8_0, 8 for float types) and whose activations are
 * consecutive int16s in shared memory. Partial sums are reduced by shuffles in the
 * G lanes.
 *
 * Float weights (F32, F16, BF16) are multiplied with the f32 activations as they
 * are (read through L1), nothing quantized.
 */
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/quant.cuh"
#include "kernels/cuda/route.cuh"
#include "kernels/cuda/xq.cuh"

#include <cuda_runtime.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

using namespace halo_q;
using namespace halo_xq;

namespace {

constexpr int MV_THREADS = 256, MV_WARPS = MV_THREADS / 32;
constexpr int64_t MV_MAX_COLS = 65536; /* staged activations: 2.875 bytes a column */

struct Prod {
    const u8 *w, *w2;
    size_t row_stride, mat_stride;
    int64_t n_rows, n_cols;
    const float *x;
    const int32_t *ids;
    float *y;
    int32_t *route_ids, *route_counter; /* routing by the last block (router products) */
    float *route_w;
    int32_t route_k, route_norm;
    int64_t first;   /* first block of this product in the grid */
    int64_t rblocks; /* row blocks per activation row */
    int32_t n_x, x_div, type, lg, rows_pb, prefetch;
};

struct MvArgs {
    Prod p[HALO_CUDA_MV_MAX];
    int n;
};

/* The staged activations of the block's row. */
struct Xs {
    const int16_t *q; /* [n_cols] codes */
    const float *d;   /* [n_cols / 32] scales */
    const float *s16; /* [n_cols / 16] exact sums of x over 16 columns */
    const int *i8;    /* [n_cols / 8] sums of the codes over 8 columns */
    const float *xf;  /* the f32 row (float weight types) */
};

__host__ __device__ constexpr size_t stage_bytes(int64_t n) {
    return (size_t)n * 2 + (size_t)n / 32 * 4 + (size_t)n / 16 * 4 + (size_t)n / 8 * 4;
}

/* Quantize x[0..n) (n a multiple of 32, x 16-byte aligned) into shared memory, all
 * threads of the block: 8 lanes per block of 32 columns, 4 columns a lane. */
__device__ __forceinline__ void stage(const float *__restrict__ x, int64_t n, u8 *sm, Xs *xs) {
    int16_t *q = (int16_t *)sm;
    float *d = (float *)(sm + 2 * n);
    float *s16 = d + n / 32;
    int *i8 = (int *)(s16 + n / 16);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, sub = lane & 7;
    const int64_t nb = n / 32;
    for (int64_t b0 = (int64_t)warp * 4; b0 < nb; b0 += MV_WARPS * 4) { /* uniform per warp */
        const int64_t b = b0 + (lane >> 3);
        const bool ok = b < nb;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (ok) v = __ldg((const float4 *)(x + b * 32) + sub);
        float am = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
        am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, 1));
        am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, 2));
        am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, 4));
        float sd, inv;
        scale(am, &sd, &inv);
        const int q0 = quant(v.x, inv), q1 = quant(v.y, inv), q2 = quant(v.z, inv),
                  q3 = quant(v.w, inv);
        float s = (v.x + v.y) + (v.z + v.w);
        s += __shfl_xor_sync(0xffffffffu, s, 1);
        s += __shfl_xor_sync(0xffffffffu, s, 2);
        int is = (q0 + q1) + (q2 + q3);
        is += __shfl_xor_sync(0xffffffffu, is, 1);
        if (ok) {
            *(uint2 *)(q + b * 32 + 4 * sub) = make_uint2(pack2(q0, q1), pack2(q2, q3));
            if (sub == 0) d[b] = sd;
            if ((sub & 3) == 0) s16[b * 2 + (sub >> 2)] = s;
            if ((sub & 1) == 0) i8[b * 4 + (sub >> 1)] = is;
        }
    }
    xs->q = q;
    xs->d = d;
    xs->s16 = s16;
    xs->i8 = i8;
    xs->xf = x;
}

/* 8 bytes at a 2-aligned address, from 3 aligned words (branch-free). The caller
 * guarantees the third word is inside the block. */
__device__ __forceinline__ uint2 ld64a2(const u8 *p) {
    const u32 *a = (const u32 *)((uintptr_t)p & ~(uintptr_t)3);
    const u32 s = (u32)((uintptr_t)p & 2) * 8;
    const u32 w0 = __ldg(a), w1 = __ldg(a + 1), w2 = __ldg(a + 2);
    return make_uint2(__funnelshift_r(w0, w1, s), __funnelshift_r(w1, w2, s));
}

/* int16 activations of 8 columns against 8 code bytes (2 words) */
__device__ __forceinline__ int dot8u(const uint4 &xw, u32 v0, u32 v1, int acc) {
    acc = dp2a_lo_u(xw.x, v0, acc);
    acc = dp2a_hi_u(xw.y, v0, acc);
    acc = dp2a_lo_u(xw.z, v1, acc);
    return dp2a_hi_u(xw.w, v1, acc);
}
__device__ __forceinline__ int dot8s(const uint4 &xw, u32 v0, u32 v1, int acc) {
    acc = dp2a_lo_s(xw.x, v0, acc);
    acc = dp2a_hi_s(xw.y, v0, acc);
    acc = dp2a_lo_s(xw.z, v1, acc);
    return dp2a_hi_s(xw.w, v1, acc);
}

template <int T> struct MV;

/* Q4_K / Q5_K: a chunk's value from its two code sums (sub-blocks 2j and 2j + 1, columns
 * from clo and chi): d (sc1 dx_lo slo + sc2 dx_hi shi) - dmin (m1 X_lo + m2 X_hi) */
__device__ __forceinline__ float k4_chunk(const uint4 &hd, int j, int64_t clo, int64_t chi,
                                          int slo, int shi, const Xs &xs) {
    u32 sc1, m1, sc2, m2;
    k4_scale_min(2 * j, hd.y, hd.z, hd.w, &sc1, &m1);
    k4_scale_min(2 * j + 1, hd.y, hd.z, hd.w, &sc2, &m2);
    const float d = h2f(hd.x & 0xffff), dmin = h2f(hd.x >> 16);
    const float sq = __fmaf_rn(ubias(sc1, 0.0f) * xs.d[clo >> 5], (float)slo,
                               ubias(sc2, 0.0f) * xs.d[chi >> 5] * (float)shi);
    const float sm = __fmaf_rn(ubias(m1, 0.0f), xs.s16[clo >> 4], ubias(m2, 0.0f) * xs.s16[chi >> 4]);
    return __fmaf_rn(d, sq, -(dmin * sm));
}

/* Q4_K: chunk c (0..7) of a 256-block = 16 qs bytes at 16 + 32j + 16h (j = c / 2,
 * h = c % 2): low nibbles are columns 64j + 16h + i of sub-block 2j, high nibbles
 * 64j + 32 + 16h + i of sub-block 2j + 1, i < 16. */
template <> struct MV<HALO_TYPE_Q4_K> {
    static constexpr int QK = 256, BS = 144, CPB = 8, ALIGN = 16;
    static constexpr bool XQ = true;
    __device__ static float dot(const u8 *b, int c, int64_t col0, const Xs &xs) {
        const int j = c >> 1, h = c & 1;
        const uint4 hd = __ldg((const uint4 *)b);
        const uint4 qs = __ldg((const uint4 *)(b + 16 + 32 * j + 16 * h));
        const int64_t clo = col0 + 64 * j + 16 * h, chi = clo + 32;
        const uint4 *xl = (const uint4 *)(xs.q + clo), *xh = (const uint4 *)(xs.q + chi);
        const u32 q[4] = {qs.x, qs.y, qs.z, qs.w};
        int slo = 0, shi = 0;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const uint4 a = xl[k], e = xh[k];
            const u32 l0 = q[2 * k] & 0x0F0F0F0Fu, l1 = q[2 * k + 1] & 0x0F0F0F0Fu;
            const u32 h0 = (q[2 * k] >> 4) & 0x0F0F0F0Fu, h1 = (q[2 * k + 1] >> 4) & 0x0F0F0F0Fu;
            slo = dot8u(a, l0, l1, slo);
            shi = dot8u(e, h0, h1, shi);
        }
        return k4_chunk(hd, j, clo, chi, slo, shi, xs);
    }
};

/* Q5_K: as Q4_K; the fifth bits of qs byte 32j + i are bits 2j (low nibble) and
 * 2j + 1 (high) of qh byte i (i < 32), qh at 16, qs at 48. */
template <> struct MV<HALO_TYPE_Q5_K> {
    static constexpr int QK = 256, BS = 176, CPB = 8, ALIGN = 16;
    static constexpr bool XQ = true;
    __device__ static float dot(const u8 *b, int c, int64_t col0, const Xs &xs) {
        const int j = c >> 1, h = c & 1;
        const uint4 hd = __ldg((const uint4 *)b);
        const uint4 qs = __ldg((const uint4 *)(b + 48 + 32 * j + 16 * h));
        const uint4 qhv = __ldg((const uint4 *)(b + 16 + 16 * h));
        const int64_t clo = col0 + 64 * j + 16 * h, chi = clo + 32;
        const uint4 *xl = (const uint4 *)(xs.q + clo), *xh = (const uint4 *)(xs.q + chi);
        const u32 q[4] = {qs.x, qs.y, qs.z, qs.w}, qh[4] = {qhv.x, qhv.y, qhv.z, qhv.w};
        int slo = 0, shi = 0;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const uint4 a = xl[k], e = xh[k];
            u32 lo[2], hi[2];
#pragma unroll
            for (int m = 0; m < 2; m++) {
                const u32 qq = q[2 * k + m], hb = qh[2 * k + m] >> (2 * j);
                lo[m] = (qq & 0x0F0F0F0Fu) | ((hb << 4) & 0x10101010u);
                hi[m] = ((qq >> 4) & 0x0F0F0F0Fu) | ((hb << 3) & 0x10101010u);
            }
            slo = dot8u(a, lo[0], lo[1], slo);
            shi = dot8u(e, hi[0], hi[1], shi);
        }
        return k4_chunk(hd, j, clo, chi, slo, shi, xs);
    }
};

/* Q6_K: chunk c (0..7) = half hh = c / 4 of the block, l in l0 .. l0 + 7 (l0 = 8 (c % 4)):
 * ql bytes 64hh + l (low nibble: column 128hh + l, high: + 64) and 64hh + 32 + l
 * (low: + 32, high: + 96), qh byte 128 + 32hh + l (2 bits for each of the four);
 * group g (columns 128hh + 32g + l0 ..) has scale sc[8hh + l0 / 16 + 2g]. w = d sc (q - 32). */
template <> struct MV<HALO_TYPE_Q6_K> {
    static constexpr int QK = 256, BS = 210, CPB = 8, ALIGN = 2;
    static constexpr bool XQ = true;
    __device__ static float dot(const u8 *b, int c, int64_t col0, const Xs &xs) {
        const int hh = c >> 2, l0 = 8 * (c & 3), is = l0 >> 4;
        const uint2 qa = ld64a2(b + 64 * hh + l0), qb = ld64a2(b + 64 * hh + 32 + l0);
        const uint2 qh = ld64a2(b + 128 + 32 * hh + l0);
        const u32 sw0 = ld32a2(b + 192 + 8 * hh), sw1 = ld32a2(b + 196 + 8 * hh);
        const float d = h2f(ld16(b + 208));
        const int64_t cb = col0 + 128 * hh + l0;
        float acc = 0.0f;
#pragma unroll
        for (int g = 0; g < 4; g++) {
            const uint2 ql = (g & 1) ? qb : qa;
            const int sh = 4 * (g >> 1);
            const u32 v0 = ((ql.x >> sh) & 0x0F0F0F0Fu) | (((qh.x >> (2 * g)) & 0x03030303u) << 4);
            const u32 v1 = ((ql.y >> sh) & 0x0F0F0F0Fu) | (((qh.y >> (2 * g)) & 0x03030303u) << 4);
            const int64_t col = cb + 32 * g;
            const uint4 xw = *(const uint4 *)(xs.q + col);
            const int s = dot8u(xw, v0, v1, 0) - 32 * xs.i8[col >> 3];
            const u32 scb = (((g < 2 ? sw0 : sw1) >> (8 * is + 16 * (g & 1))) & 0xffu) ^ 0x80u;
            acc = __fmaf_rn(ubias(scb, 128.0f) * xs.d[col >> 5], (float)s, acc);
        }
        return d * acc;
    }
};

/* Q8_0: chunk c (0..1) = the 16 bytes at 2 + 16c of a 34-byte block. */
template <> struct MV<HALO_TYPE_Q8_0> {
    static constexpr int QK = 32, BS = 34, CPB = 2, ALIGN = 2;
    static constexpr bool XQ = true;
    __device__ static float dot(const u8 *b, int c, int64_t col0, const Xs &xs) {
        const float d = h2f(ld16(b));
        const u8 *p = b + 2 + 16 * c;
        const u32 *a = (const u32 *)((uintptr_t)p & ~(uintptr_t)3);
        const u32 s = (u32)((uintptr_t)p & 2) * 8;
        u32 w[5];
#pragma unroll
        for (int k = 0; k < 4; k++) w[k] = __ldg(a + k);
        w[4] = s ? ld16((const u8 *)(a + 4)) : 0u; /* its low half ends the block */
        const int64_t col = col0 + 16 * c;
        const uint4 *xw = (const uint4 *)(xs.q + col);
        int acc = dot8s(xw[0], __funnelshift_r(w[0], w[1], s), __funnelshift_r(w[1], w[2], s), 0);
        acc = dot8s(xw[1], __funnelshift_r(w[2], w[3], s), __funnelshift_r(w[3], w[4], s), acc);
        return d * xs.d[col >> 5] * (float)acc;
    }
};

/* float types: chunk = 8 columns (16-byte aligned rows, checked on the host) */
__device__ __forceinline__ float dot8f(const float *w, const float *x) {
    const float4 xa = __ldg((const float4 *)x), xb = __ldg((const float4 *)x + 1);
    float s = w[0] * xa.x;
    s = __fmaf_rn(w[1], xa.y, s);
    s = __fmaf_rn(w[2], xa.z, s);
    s = __fmaf_rn(w[3], xa.w, s);
    float t = w[4] * xb.x;
    t = __fmaf_rn(w[5], xb.y, t);
    t = __fmaf_rn(w[6], xb.z, t);
    t = __fmaf_rn(w[7], xb.w, t);
    return s + t;
}

template <> struct MV<HALO_TYPE_F32> {
    static constexpr int QK = 8, BS = 32, CPB = 1, ALIGN = 16;
    static constexpr bool XQ = false;
    __device__ static float dot(const u8 *b, int, int64_t col0, const Xs &xs) {
        const float4 a = __ldg((const float4 *)b), e = __ldg((const float4 *)b + 1);
        const float w[8] = {a.x, a.y, a.z, a.w, e.x, e.y, e.z, e.w};
        return dot8f(w, xs.xf + col0);
    }
};
template <> struct MV<HALO_TYPE_F16> {
    static constexpr int QK = 8, BS = 16, CPB = 1, ALIGN = 16;
    static constexpr bool XQ = false;
    __device__ static float dot(const u8 *b, int, int64_t col0, const Xs &xs) {
        const uint4 v = __ldg((const uint4 *)b);
        const float w[8] = {h2f(v.x & 0xffff), h2f(v.x >> 16), h2f(v.y & 0xffff), h2f(v.y >> 16),
                            h2f(v.z & 0xffff), h2f(v.z >> 16), h2f(v.w & 0xffff), h2f(v.w >> 16)};
        return dot8f(w, xs.xf + col0);
    }
};
template <> struct MV<HALO_TYPE_BF16> {
    static constexpr int QK = 8, BS = 16, CPB = 1, ALIGN = 16;
    static constexpr bool XQ = false;
    __device__ static float dot(const u8 *b, int, int64_t col0, const Xs &xs) {
        const uint4 v = __ldg((const uint4 *)b);
        const float w[8] = {bf2f(v.x), bf2f(v.x >> 16), bf2f(v.y), bf2f(v.y >> 16),
                            bf2f(v.z), bf2f(v.z >> 16), bf2f(v.w), bf2f(v.w >> 16)};
        return dot8f(w, xs.xf + col0);
    }
};

#define HALO_MV_TYPES(X)                                                                           \
    X(HALO_TYPE_Q4_K) X(HALO_TYPE_Q5_K) X(HALO_TYPE_Q6_K) X(HALO_TYPE_Q8_0) X(HALO_TYPE_F32)       \
    X(HALO_TYPE_F16) X(HALO_TYPE_BF16)

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }

/* One row block of product p for activation row x, output row y. */
/* The rows of thread group (threadIdx.x >> lg) in row block rb: rp0 and rp1 (the second
 * row, or the up row of a SwiGLU pair), r0 the first row's index. */
template <int T>
__device__ __forceinline__ int64_t mv_rows(const Prod &p, const u8 *w, const u8 *w2, int64_t rb,
                                           const u8 **rp0, const u8 **rp1) {
    const bool glu = w2 != nullptr;
    const int64_t r0 = rb * p.rows_pb + (int64_t)(threadIdx.x >> p.lg) * (glu ? 1 : 2);
    const int64_t last = p.n_rows - 1;
    *rp0 = w + (size_t)(r0 < last ? r0 : last) * p.row_stride;
    *rp1 = glu ? w2 + (size_t)(r0 < last ? r0 : last) * p.row_stride
               : w + (size_t)(r0 + 1 < last ? r0 + 1 : last) * p.row_stride;
    return r0;
}

/* Start streaming row block rb's rows into L2: the group's lanes touch every 128-byte
 * line of both rows once. Weights only: allowed before halo_pdl::wait. */
template <int T>
__device__ __forceinline__ void mv_prefetch(const Prod &p, const u8 *w, const u8 *w2, int64_t rb) {
    typedef MV<T> M;
    const int G = 1 << p.lg, gl = (int)threadIdx.x & (G - 1);
    const u8 *rp0, *rp1;
    mv_rows<T>(p, w, w2, rb, &rp0, &rp1);
    const int64_t row_bytes = p.n_cols / M::QK * M::BS;
    for (int64_t off = (int64_t)gl * 128; off < row_bytes; off += (int64_t)G * 128) {
        asm volatile("prefetch.global.L2 [%0];" ::"l"(rp0 + off));
        asm volatile("prefetch.global.L2 [%0];" ::"l"(rp1 + off));
    }
}

/* One row block of product p for activation row x, output row y (pf: prefetch the
 * rows while the activations are staged; not done already). */
template <int T>
__device__ __forceinline__ void mv_block(const Prod &p, const u8 *w, const u8 *w2,
                                         const float *__restrict__ x, float *__restrict__ y,
                                         int64_t rb, u8 *sm, bool pf) {
    typedef MV<T> M;
    const int lg = p.lg, G = 1 << lg, gl = (int)threadIdx.x & (G - 1);
    const bool glu = w2 != nullptr;
    const u8 *rp0, *rp1;
    const int64_t r0 = mv_rows<T>(p, w, w2, rb, &rp0, &rp1);
    const int64_t last = p.n_rows - 1;
    const int64_t nch = p.n_cols / M::QK * M::CPB;
    Xs xs;
    if (M::XQ) {
        if (pf) mv_prefetch<T>(p, w, w2, rb);
        stage(x, p.n_cols, sm, &xs);
        __syncthreads();
    } else {
        xs.xf = x;
    }
    float acc0 = 0.0f, acc1 = 0.0f;
#pragma unroll 2
    for (int64_t c = gl; c < nch; c += G) {
        const int64_t blk = c / M::CPB;
        const int cc = (int)(c % M::CPB);
        const int64_t col0 = blk * M::QK;
        acc0 += M::dot(rp0 + blk * M::BS, cc, col0, xs);
        acc1 += M::dot(rp1 + blk * M::BS, cc, col0, xs);
    }
    for (int o = G >> 1; o > 0; o >>= 1) { /* G is uniform: every lane takes part */
        acc0 += __shfl_xor_sync(0xffffffffu, acc0, o);
        acc1 += __shfl_xor_sync(0xffffffffu, acc1, o);
    }
    if (gl == 0 && r0 <= last) {
        if (glu) {
            y[r0] = silu_f(acc0) * acc1;
        } else {
            y[r0] = acc0;
            if (r0 + 1 <= last) y[r0 + 1] = acc1;
        }
    }
}

__global__ void __launch_bounds__(MV_THREADS) mv_kernel(const __grid_constant__ MvArgs A) {
    extern __shared__ uint4 mv_smem[];
    int i = 0;
    while (i + 1 < A.n && (int64_t)blockIdx.x >= A.p[i + 1].first) i++;
    const Prod &p = A.p[i];
    const int64_t bi = (int64_t)blockIdx.x - p.first;
    /* activation rows minor: the blocks of one row block for several tokens run
     * together and share its weights through L2 */
    const int64_t rb = bi / p.n_x, a = bi % p.n_x;
    /* a dense product's rows are known before the previous kernel ends: they stream
     * into L2 while it runs (an expert's, once the routing that picks it is visible) */
    const bool early = !p.ids && p.prefetch;
    if (early) {
        switch (p.type) {
#define X(t)                                                                                       \
    case t:                                                                                        \
        if (MV<t>::XQ) mv_prefetch<t>(p, p.w, p.w2, rb);                                           \
        break;
            HALO_MV_TYPES(X)
#undef X
        default: break;
        }
    }
    halo_pdl::begin();
    const u8 *w = p.w, *w2 = p.w2;
    if (p.ids) {
        const int32_t e = p.ids[a];
        if (e < 0) return; /* the whole block */
        w += (size_t)e * p.mat_stride;
        if (w2) w2 += (size_t)e * p.mat_stride;
    }
    const float *x = p.x + (a / p.x_div) * p.n_cols;
    float *y = p.y + a * p.n_rows;
    switch (p.type) {
#define X(t)                                                                                       \
    case t: mv_block<t>(p, w, w2, x, y, rb, (u8 *)mv_smem, p.prefetch && !early); break;
        HALO_MV_TYPES(X)
#undef X
    default: break;
    }
    if (p.route_k) { /* the product's last block routes its rows (no launch of its own) */
        __shared__ int last;
        __threadfence(); /* this block's outputs before its count */
        __syncthreads();
        if (threadIdx.x == 0)
            last = atomicAdd(p.route_counter, 1) == (int)(p.rblocks * p.n_x) - 1;
        __syncthreads();
        if (!last) return;
        __threadfence();
        const int warp = (int)threadIdx.x >> 5;
        for (int64_t t = warp; t < p.n_x; t += MV_WARPS)
            halo_route::topk_warp(p.y + t * p.n_rows, (int)p.n_rows, p.route_k, p.route_norm != 0,
                                  p.route_ids + t * p.route_k, p.route_w + t * p.route_k);
        if (threadIdx.x == 0) *p.route_counter = 0;
    }
}

/* ---- host side ----------------------------------------------------------------------- */

struct MvInfo {
    int qk, bs, cpb, align;
    bool xq;
};

bool mv_info(int type, MvInfo *mi) {
    switch (type) {
#define X(t)                                                                                       \
    case t: *mi = {MV<t>::QK, MV<t>::BS, MV<t>::CPB, MV<t>::ALIGN, MV<t>::XQ}; return true;
        HALO_MV_TYPES(X)
#undef X
    default: return false;
    }
}

/* HALO_CUDA_MV=0: off (the f32-activation kernels of matmul.cu); =noprefetch: on,
 * without the L2 prefetch of the rows (for measurements). Read once. */
int mv_mode(void) {
    static int mode = -1; /* a race only reads it twice */
    if (mode < 0) {
        const char *e = getenv("HALO_CUDA_MV");
        mode = !e ? 1 : e[0] == '0' ? 0 : strcmp(e, "noprefetch") == 0 ? 2 : 1;
    }
    return mode;
}
bool mv_off(void) { return mv_mode() == 0; }

} /* namespace */

extern "C" bool halo_cuda_mv_supported(const halo_cuda_mv *m) {
    MvInfo mi;
    if (mv_off() || !m || !mv_info(m->type, &mi)) return false;
    if (m->n_rows < 0 || m->n_cols <= 0 || m->n_cols % mi.qk || m->n_x < 0) return false;
    if (mi.xq ? m->n_cols % QB != 0 || m->n_cols > MV_MAX_COLS : m->n_cols % 8 != 0) return false;
    if (m->row_stride < (size_t)(m->n_cols / mi.qk) * mi.bs) return false;
    const uintptr_t al = (uintptr_t)m->w | (uintptr_t)m->w2 | m->row_stride | m->mat_stride;
    if (al % (uintptr_t)mi.align || (uintptr_t)m->x % 16) return false;
    if (m->ids ? m->x_div < 1 : m->x_div != 1) return false;
    if (m->n_rows > (int64_t)1 << 31 || m->n_x > 4096) return false;
    if (m->route_k && (m->ids || m->w2 || m->route_k < 0 || m->route_k > halo_route::MAX_K ||
                       m->route_k > m->n_rows || m->n_rows > halo_route::MAX_EXPERT ||
                       !m->route_ids || !m->route_w || !m->route_counter))
        return false;
    return true;
}

extern "C" int halo_cuda_mv_launch(void *stream, const halo_cuda_mv *m, int n) {
    if (n < 0 || n > HALO_CUDA_MV_MAX) return -1;
    MvArgs A;
    A.n = 0;
    int64_t blocks = 0;
    size_t smem = 0;
    for (int i = 0; i < n; i++) {
        if (!halo_cuda_mv_supported(&m[i])) return -1;
        if (m[i].n_rows == 0 || m[i].n_x == 0) continue;
        MvInfo mi;
        mv_info(m[i].type, &mi);
        const int64_t nch = m[i].n_cols / mi.qk * mi.cpb;
        int lg = 0;
        while (lg < 5 && ((int64_t)1 << lg) < nch) lg++;
        Prod &p = A.p[A.n++];
        p.w = (const u8 *)m[i].w;
        p.w2 = (const u8 *)m[i].w2;
        p.row_stride = m[i].row_stride;
        p.mat_stride = m[i].mat_stride;
        p.n_rows = m[i].n_rows;
        p.n_cols = m[i].n_cols;
        p.x = m[i].x;
        p.ids = m[i].ids;
        p.y = m[i].y;
        p.x_div = m[i].x_div;
        p.n_x = m[i].n_x;
        p.route_k = m[i].route_k;
        p.route_norm = m[i].route_norm;
        p.route_ids = m[i].route_ids;
        p.route_w = m[i].route_w;
        p.route_counter = m[i].route_counter;
        p.prefetch = mv_mode() != 2;
        p.type = m[i].type;
        p.lg = lg;
        p.rows_pb = (MV_THREADS >> lg) * (m[i].w2 ? 1 : 2);
        p.rblocks = (p.n_rows + p.rows_pb - 1) / p.rows_pb;
        p.first = blocks;
        blocks += p.rblocks * m[i].n_x;
        if (mi.xq && stage_bytes(p.n_cols) > smem) smem = stage_bytes(p.n_cols);
    }
    if (A.n == 0) return 0;
    if (blocks > INT32_MAX) return -1;
    if (smem > 48 * 1024) {
        static size_t attr = 0; /* idempotent: a race only repeats the call */
        if (smem > attr) {
            if (cudaFuncSetAttribute(mv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)stage_bytes(MV_MAX_COLS)) != cudaSuccess)
                return -1;
            attr = stage_bytes(MV_MAX_COLS);
        }
    }
    halo_pdl::launch(mv_kernel, (unsigned)blocks, MV_THREADS, smem, (cudaStream_t)stream, A);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
