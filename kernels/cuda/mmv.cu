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
 * That is the direct path. Q4_K, Q5_K, Q6_K and Q8_0 (rows of >= 8 chunks a span)
 * take the tiled path instead (mv_block_tw, comment there): weights copied to shared
 * memory in coalesced 16-byte vectors, double-buffered per warp; HALO_CUDA_MV=direct
 * turns it off for comparisons.
 *
 * Float weights (F32, F16, BF16) are multiplied with the f32 activations as they
 * are (read through L1), nothing quantized.
 */
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/quant.cuh"
#include "kernels/cuda/xq.cuh"

#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

using namespace halo_q;
using namespace halo_xq;

namespace {

constexpr int MV_THREADS = 256, MV_WARPS = MV_THREADS / 32;
constexpr int64_t MV_MAX_COLS = 32768; /* staged activations: 3.125 bytes a column */
/* The tiled path: per warp, 2 stages of TW_BUF bytes of weights; per block, up to
 * TW_PART partial sums (a row's span) in shared memory. */
constexpr int TW_BUF = 3584, TW_PART = 1024;
constexpr size_t TW_SMEM = (size_t)MV_WARPS * 2 * TW_BUF + TW_PART * 4 + 16; /* + 16: over-reads */

struct Prod {
    const u8 *w, *w2;
    size_t row_stride, mat_stride;
    int64_t n_rows, n_cols;
    const float *x;
    const int32_t *ids;
    float *y;
    int64_t first;   /* first block of this product in the grid */
    int64_t rblocks; /* row blocks per activation row */
    int32_t n_x, x_div, type, lg, rows_pb, prefetch;
    /* the tiled path (tw != 0; see mv_block_tw) */
    int64_t vrows, ngroups; /* virtual rows (a pair's gate and up rows interleaved), groups of R */
    int32_t tw, cps_lg, r_lg, nspan, span_bytes, span_cols, pitch, rgb;
    uint32_t tw_off; /* shared-memory offset of the weight buffers */
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
    const int *i16;   /* [n_cols / 16] sums of the codes over 16 columns */
    const float *xf;  /* the f32 row (float weight types) */
};

__host__ __device__ constexpr size_t stage_bytes(int64_t n) {
    return (size_t)n * 2 + (size_t)n / 32 * 4 + (size_t)n / 16 * 8 + (size_t)n / 8 * 4;
}

/* The tiled path (below) reads the int16 activations 16 bytes (8 columns, a "unit")
 * at a time, 8 lanes of a warp per shared-memory wavefront; its lanes read columns
 * 128 or 256 bytes apart (same banks), so units are stored swizzled: bits 3 and 4 of
 * the unit index are xored into bits 2 and 0. The 8 lanes of a Q4_K/Q5_K load (sub-
 * blocks j = 0..3, halves h) or of a Q6_K load (halves, 16-column groups) then hit 8
 * distinct 16-byte bank groups (conflict-free instead of 4- and 2-way). */
__host__ __device__ constexpr int64_t swz(int64_t u) {
    return u ^ ((u >> 4) & 1) ^ (((u >> 3) & 1) << 2);
}

/* Quantize x[0..n) (n a multiple of 32, x 16-byte aligned) into shared memory, all
 * threads of the block: 8 lanes per block of 32 columns, 4 columns a lane; sw: the
 * codes' units swizzled (swz). */
__device__ __forceinline__ void stage(const float *__restrict__ x, int64_t n, u8 *sm, Xs *xs,
                                      bool sw) {
    int16_t *q = (int16_t *)sm;
    float *d = (float *)(sm + 2 * n);
    float *s16 = d + n / 32;
    int *i8 = (int *)(s16 + n / 16);
    int *i16 = i8 + n / 8;
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
        const int is2 = is + __shfl_xor_sync(0xffffffffu, is, 2);
        if (ok) {
            const int64_t u = b * 4 + (sub >> 1); /* the unit of these 4 columns */
            *(uint2 *)(q + (sw ? swz(u) : u) * 8 + 4 * (sub & 1)) =
                make_uint2(pack2(q0, q1), pack2(q2, q3));
            if (sub == 0) d[b] = sd;
            if ((sub & 3) == 0) s16[b * 2 + (sub >> 2)] = s;
            if ((sub & 1) == 0) i8[b * 4 + (sub >> 1)] = is;
            if ((sub & 3) == 0) i16[b * 2 + (sub >> 2)] = is2;
        }
    }
    xs->q = q;
    xs->d = d;
    xs->s16 = s16;
    xs->i8 = i8;
    xs->i16 = i16;
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
        u32 sc1, m1, sc2, m2;
        k4_scale_min(2 * j, hd.y, hd.z, hd.w, &sc1, &m1);
        k4_scale_min(2 * j + 1, hd.y, hd.z, hd.w, &sc2, &m2);
        const float d = h2f(hd.x & 0xffff), dmin = h2f(hd.x >> 16);
        const float sq = __fmaf_rn(ubias(sc1, 0.0f) * xs.d[clo >> 5], (float)slo,
                                   ubias(sc2, 0.0f) * xs.d[chi >> 5] * (float)shi);
        const float sm = __fmaf_rn(ubias(m1, 0.0f), xs.s16[clo >> 4], ubias(m2, 0.0f) * xs.s16[chi >> 4]);
        return __fmaf_rn(d, sq, -(dmin * sm));
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
        u32 sc1, m1, sc2, m2;
        k4_scale_min(2 * j, hd.y, hd.z, hd.w, &sc1, &m1);
        k4_scale_min(2 * j + 1, hd.y, hd.z, hd.w, &sc2, &m2);
        const float d = h2f(hd.x & 0xffff), dmin = h2f(hd.x >> 16);
        const float sq = __fmaf_rn(ubias(sc1, 0.0f) * xs.d[clo >> 5], (float)slo,
                                   ubias(sc2, 0.0f) * xs.d[chi >> 5] * (float)shi);
        const float sm = __fmaf_rn(ubias(m1, 0.0f), xs.s16[clo >> 4], ubias(m2, 0.0f) * xs.s16[chi >> 4]);
        return __fmaf_rn(d, sq, -(dmin * sm));
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
#define HALO_MV_TW_TYPES(X) X(HALO_TYPE_Q4_K) X(HALO_TYPE_Q5_K) X(HALO_TYPE_Q6_K) X(HALO_TYPE_Q8_0)
#define HALO_MV_FLOAT_TYPES(X) X(HALO_TYPE_F32) X(HALO_TYPE_F16) X(HALO_TYPE_BF16)

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }

/* One row block of product p for activation row x, output row y. */
template <int T>
__device__ __forceinline__ void mv_block(const Prod &p, const u8 *w, const u8 *w2,
                                         const float *__restrict__ x, float *__restrict__ y,
                                         int64_t rb, u8 *sm) {
    typedef MV<T> M;
    const int lg = p.lg, G = 1 << lg, gl = (int)threadIdx.x & (G - 1);
    const bool glu = w2 != nullptr;
    const int64_t r0 = rb * p.rows_pb + (int64_t)(threadIdx.x >> lg) * (glu ? 1 : 2);
    const int64_t last = p.n_rows - 1;
    const u8 *rp0 = w + (size_t)(r0 < last ? r0 : last) * p.row_stride;
    const u8 *rp1 = glu ? w2 + (size_t)(r0 < last ? r0 : last) * p.row_stride
                        : w + (size_t)(r0 + 1 < last ? r0 + 1 : last) * p.row_stride;
    const int64_t nch = p.n_cols / M::QK * M::CPB;
    Xs xs;
    if (M::XQ) {
        if (p.prefetch) {
        /* the rows start streaming into L2 while the activations are staged: the
         * group's lanes touch every 128-byte line of both rows once */
        const int64_t row_bytes = nch / M::CPB * M::BS;
        for (int64_t off = (int64_t)gl * 128; off < row_bytes; off += (int64_t)G * 128) {
            asm volatile("prefetch.global.L2 [%0];" ::"l"(rp0 + off));
            asm volatile("prefetch.global.L2 [%0];" ::"l"(rp1 + off));
        }
        }
        stage(x, p.n_cols, sm, &xs, false);
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

/* ---- the tiled path (Q4_K, Q5_K, Q6_K, Q8_0) -------------------------------------------
 *
 * Why: reading the weights straight from global memory as above costs one load
 * instruction per 4-16 bytes, and Q6_K's 210-byte blocks are only 2-byte aligned, so
 * its lanes issue ~15 loads of 2-4 bytes per 32 weights, each touching ~7 lines;
 * the kernels were bound by load instructions and latency well below the bandwidth.
 * Here the weights travel from global to shared memory by cp.async in aligned
 * 16-byte vectors, consecutive lanes taking consecutive vectors of a row, and are
 * decoded from shared memory, where 2-byte alignment costs a funnel shift.
 *
 * Work: a row is cut into spans of equal width (a power-of-two number of blocks,
 * up to 8 super-blocks or 32 Q8_0 blocks); an item is one span of R rows, 32 x CPL
 * chunks (CPL per lane; cps = chunks per span of a row, R = 32 CPL / cps). A row
 * block is a run of row groups (R rows each) x all spans; each warp takes the items
 * warp, warp + 8, .. of its block and streams them through 2 buffers: the copy of
 * item k + 1 is in flight (and item k + 2 prefetched to L2) while item k is decoded.
 * The first copy is issued before the activations are staged, so a block waits for
 * max(weights, activations), not their sum. A copy covers the aligned 16-byte
 * vectors holding the span (rows of any even stride: the span's offset in its first
 * vector, delta, goes with the item). Each lane decodes its chunks in pairs that
 * share columns (two rows), reading the activations once per pair. Partial sums per
 * (row, span) go to shared memory and are added in span order at the end (results
 * do not depend on the schedule). SwiGLU pairs are virtual rows 2r (gate) and 2r + 1
 * (up). */

__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait1() { asm volatile("cp.async.wait_group 1;" ::: "memory"); }

/* 16 bytes at 2-aligned offset o of shared memory sm, as 4 words (reads 20 bytes) */
__device__ __forceinline__ void lds16a2(const u8 *sm, uint32_t o, u32 v[4]) {
    const u32 *a = (const u32 *)sm + (o >> 2);
    const u32 sh = (o & 2) * 8;
    u32 w[5];
#pragma unroll
    for (int k = 0; k < 5; k++) w[k] = a[k];
#pragma unroll
    for (int k = 0; k < 4; k++) v[k] = __funnelshift_r(w[k], w[k + 1], sh);
}

/* the 2 units (16 columns) of int16 activations at column col (a multiple of 16) */
__device__ __forceinline__ void xld16(const Xs &xs, int64_t col, uint4 *a, uint4 *b) {
    const uint4 *q = (const uint4 *)xs.q;
    const int64_t u = col >> 3;
    *a = q[swz(u)];
    *b = q[swz(u + 1)];
}

template <int T> struct TW;

/* Q4_K from shared memory: chunk cc (0..7) of a block as MV<Q4_K> (qs at 16 + 16 cc);
 * dot2 decodes the chunk of two rows (blocks at oa, ob, 16-aligned) against the same
 * activations. */
template <> struct TW<HALO_TYPE_Q4_K> {
    static constexpr int QK = 256, BS = 144, CPB = 8, CPL = 4, SPAN = 8, DELTA = 0;
    __device__ static float one(const uint4 &hd, const uint4 &qs, const uint4 xl[2],
                                const uint4 xh[2], int j, const Xs &xs, int64_t clo) {
        const u32 q[4] = {qs.x, qs.y, qs.z, qs.w};
        int slo = 0, shi = 0;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const u32 l0 = q[2 * k] & 0x0F0F0F0Fu, l1 = q[2 * k + 1] & 0x0F0F0F0Fu;
            const u32 h0 = (q[2 * k] >> 4) & 0x0F0F0F0Fu, h1 = (q[2 * k + 1] >> 4) & 0x0F0F0F0Fu;
            slo = dot8u(xl[k], l0, l1, slo);
            shi = dot8u(xh[k], h0, h1, shi);
        }
        u32 sc1, m1, sc2, m2;
        k4_scale_min(2 * j, hd.y, hd.z, hd.w, &sc1, &m1);
        k4_scale_min(2 * j + 1, hd.y, hd.z, hd.w, &sc2, &m2);
        const float d = h2f(hd.x & 0xffff), dmin = h2f(hd.x >> 16);
        const int64_t chi = clo + 32;
        const float sq = __fmaf_rn(ubias(sc1, 0.0f) * xs.d[clo >> 5], (float)slo,
                                   ubias(sc2, 0.0f) * xs.d[chi >> 5] * (float)shi);
        const float sm = __fmaf_rn(ubias(m1, 0.0f), xs.s16[clo >> 4], ubias(m2, 0.0f) * xs.s16[chi >> 4]);
        return __fmaf_rn(d, sq, -(dmin * sm));
    }
    __device__ static void dot2(const u8 *sm, uint32_t oa, uint32_t ob, int cc, int64_t col0,
                                const Xs &xs, float *ra, float *rb) {
        const int j = cc >> 1, h = cc & 1;
        const int64_t clo = col0 + 64 * j + 16 * h;
        uint4 xl[2], xh[2];
        xld16(xs, clo, &xl[0], &xl[1]);
        xld16(xs, clo + 32, &xh[0], &xh[1]);
        const uint4 *A = (const uint4 *)(sm + oa), *B = (const uint4 *)(sm + ob);
        *ra = one(A[0], A[1 + cc], xl, xh, j, xs, clo);
        *rb = one(B[0], B[1 + cc], xl, xh, j, xs, clo);
    }
};

/* Q5_K: as Q4_K, qh (16 bytes) at 16 + 16h, qs at 48 + 16 cc. */
template <> struct TW<HALO_TYPE_Q5_K> {
    static constexpr int QK = 256, BS = 176, CPB = 8, CPL = 4, SPAN = 8, DELTA = 0;
    __device__ static float one(const uint4 &hd, const uint4 &qs, const uint4 &qhv,
                                const uint4 xl[2], const uint4 xh[2], int j, const Xs &xs,
                                int64_t clo) {
        const u32 q[4] = {qs.x, qs.y, qs.z, qs.w}, qh[4] = {qhv.x, qhv.y, qhv.z, qhv.w};
        int slo = 0, shi = 0;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            u32 lo[2], hi[2];
#pragma unroll
            for (int m = 0; m < 2; m++) {
                const u32 qq = q[2 * k + m], hb = qh[2 * k + m] >> (2 * j);
                lo[m] = (qq & 0x0F0F0F0Fu) | ((hb << 4) & 0x10101010u);
                hi[m] = ((qq >> 4) & 0x0F0F0F0Fu) | ((hb << 3) & 0x10101010u);
            }
            slo = dot8u(xl[k], lo[0], lo[1], slo);
            shi = dot8u(xh[k], hi[0], hi[1], shi);
        }
        u32 sc1, m1, sc2, m2;
        k4_scale_min(2 * j, hd.y, hd.z, hd.w, &sc1, &m1);
        k4_scale_min(2 * j + 1, hd.y, hd.z, hd.w, &sc2, &m2);
        const float d = h2f(hd.x & 0xffff), dmin = h2f(hd.x >> 16);
        const int64_t chi = clo + 32;
        const float sq = __fmaf_rn(ubias(sc1, 0.0f) * xs.d[clo >> 5], (float)slo,
                                   ubias(sc2, 0.0f) * xs.d[chi >> 5] * (float)shi);
        const float sm = __fmaf_rn(ubias(m1, 0.0f), xs.s16[clo >> 4], ubias(m2, 0.0f) * xs.s16[chi >> 4]);
        return __fmaf_rn(d, sq, -(dmin * sm));
    }
    __device__ static void dot2(const u8 *sm, uint32_t oa, uint32_t ob, int cc, int64_t col0,
                                const Xs &xs, float *ra, float *rb) {
        const int j = cc >> 1, h = cc & 1;
        const int64_t clo = col0 + 64 * j + 16 * h;
        uint4 xl[2], xh[2];
        xld16(xs, clo, &xl[0], &xl[1]);
        xld16(xs, clo + 32, &xh[0], &xh[1]);
        const uint4 *A = (const uint4 *)(sm + oa), *B = (const uint4 *)(sm + ob);
        *ra = one(A[0], A[3 + cc], A[1 + h], xl, xh, j, xs, clo);
        *rb = one(B[0], B[3 + cc], B[1 + h], xl, xh, j, xs, clo);
    }
};

/* Q6_K: chunk cc = 4 hh + 2 p + i (0..7): the 16 ql bytes at 16 cc = 64 hh + 32 p + 16 i;
 * their low nibbles are group g = p (columns 128 hh + 32 p + 16 i + t, t < 16), their
 * high nibbles group g = p + 2 (64 columns further); the high 2 bits are bits 2g of
 * the qh bytes at 128 + 32 hh + 16 i; scale sc[8 hh + i + 2g] (sub-block of 16). The
 * block is 2-byte aligned in shared memory. Sums of 16 codes minus 32 x the codes'
 * sum: |s| <= 16 * 32 * 32639 < 2^24, exact in f32. */
template <> struct TW<HALO_TYPE_Q6_K> {
    static constexpr int QK = 256, BS = 210, CPB = 8, CPL = 4, SPAN = 8, DELTA = 14;
    __device__ static float one(const u8 *sm, uint32_t o, int cc, const uint4 xl[2],
                                const uint4 xh[2], const Xs &xs, int64_t cl) {
        const int hh = cc >> 2, p = (cc >> 1) & 1, i = cc & 1;
        u32 ql[4], qh[4];
        lds16a2(sm, o + 16 * cc, ql);
        lds16a2(sm, o + 128 + 32 * hh + 16 * i, qh);
        const int sl = (int)(int8_t)sm[o + 192 + 8 * hh + i + 2 * p];
        const int sh = (int)(int8_t)sm[o + 196 + 8 * hh + i + 2 * p];
        const float d = h2f(ld16(sm + o + 208));
        const int shl = 4 - 2 * p, shr = 2 * p;
        int slo = 0, shi = 0;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            u32 lo[2], hi[2];
#pragma unroll
            for (int m = 0; m < 2; m++) {
                const u32 a = ql[2 * k + m], b = qh[2 * k + m];
                lo[m] = (a & 0x0F0F0F0Fu) | ((b << shl) & 0x30303030u);
                hi[m] = ((a >> 4) & 0x0F0F0F0Fu) | ((b >> shr) & 0x30303030u);
            }
            slo = dot8u(xl[k], lo[0], lo[1], slo);
            shi = dot8u(xh[k], hi[0], hi[1], shi);
        }
        const int64_t ch = cl + 64;
        slo -= 32 * xs.i16[cl >> 4];
        shi -= 32 * xs.i16[ch >> 4];
        const float f = __fmaf_rn((float)sl * xs.d[cl >> 5], (float)slo,
                                  (float)sh * xs.d[ch >> 5] * (float)shi);
        return d * f;
    }
    __device__ static void dot2(const u8 *sm, uint32_t oa, uint32_t ob, int cc, int64_t col0,
                                const Xs &xs, float *ra, float *rb) {
        const int64_t cl = col0 + 128 * (cc >> 2) + 32 * ((cc >> 1) & 1) + 16 * (cc & 1);
        uint4 xl[2], xh[2];
        xld16(xs, cl, &xl[0], &xl[1]);
        xld16(xs, cl + 64, &xh[0], &xh[1]);
        *ra = one(sm, oa, cc, xl, xh, xs, cl);
        *rb = one(sm, ob, cc, xl, xh, xs, cl);
    }
};

/* Q8_0: a chunk is a block (32 codes at 2, 2-byte aligned in shared memory) */
template <> struct TW<HALO_TYPE_Q8_0> {
    static constexpr int QK = 32, BS = 34, CPB = 1, CPL = 2, SPAN = 32, DELTA = 14;
    __device__ static float one(const u8 *sm, uint32_t o, const uint4 x[4], const Xs &xs,
                                int64_t col) {
        u32 lo[4], hi[4];
        lds16a2(sm, o + 2, lo);
        lds16a2(sm, o + 18, hi);
        int acc = dot8s(x[0], lo[0], lo[1], 0);
        acc = dot8s(x[1], lo[2], lo[3], acc);
        acc = dot8s(x[2], hi[0], hi[1], acc);
        acc = dot8s(x[3], hi[2], hi[3], acc);
        return h2f(ld16(sm + o)) * xs.d[col >> 5] * (float)acc;
    }
    __device__ static void dot2(const u8 *sm, uint32_t oa, uint32_t ob, int, int64_t col0,
                                const Xs &xs, float *ra, float *rb) {
        uint4 x[4];
        xld16(xs, col0, &x[0], &x[1]);
        xld16(xs, col0 + 16, &x[2], &x[3]);
        *ra = one(sm, oa, x, xs, col0);
        *rb = one(sm, ob, x, xs, col0);
    }
};

/* One row block of product p (tiled), activation row x, output row y. */
template <int T>
__device__ __forceinline__ void mv_block_tw(const Prod &p, const u8 *w, const u8 *w2,
                                            const float *__restrict__ x, float *__restrict__ y,
                                            int64_t rb, u8 *sm) {
    typedef TW<T> M;
    const int lane = (int)threadIdx.x & 31, warp = (int)threadIdx.x >> 5;
    const bool glu = w2 != nullptr;
    const int r_lg = p.r_lg, lpr_lg = 5 - r_lg, cps_lg = p.cps_lg, nsp = p.nspan;
    const int sbytes = p.span_bytes, pitch = p.pitch;
    const int64_t g0 = rb * p.rgb, g1 = min(g0 + (int64_t)p.rgb, p.ngroups);
    const int n_items = (int)(g1 - g0) * nsp;
    const int64_t vlast = p.vrows - 1;
    const size_t rs = p.row_stride;
    const uint32_t wbuf = p.tw_off + (uint32_t)warp * 2 * TW_BUF; /* this warp's 2 buffers */
    float *part = (float *)(sm + p.tw_off + MV_WARPS * 2 * TW_BUF);
    const uint32_t sm_base = (uint32_t)__cvta_generic_to_shared(sm);
    /* copy role: lanes cr * LPR .. cr * LPR + LPR - 1 copy row cr of an item */
    const int cr = lane >> lpr_lg, csub = lane & ((1 << lpr_lg) - 1);

    /* the first byte of item it's span of row cr */
    auto span_src = [&](int it) -> const u8 * {
        const int gl = it / nsp, s = it - gl * nsp;
        int64_t vr = (g0 + gl) * ((int64_t)1 << r_lg) + cr;
        vr = vr < vlast ? vr : vlast; /* rows past the end: a copy of the last, unused */
        const u8 *row = glu ? ((vr & 1) ? w2 : w) + (size_t)(vr >> 1) * rs : w + (size_t)vr * rs;
        return row + (size_t)s * sbytes;
    };
    /* copy item it into buffer b; returns the span's offset in its first vector */
    auto issue = [&](int it, int b) -> int {
        const u8 *src = span_src(it);
        const int delta = (int)((uintptr_t)src & 15);
        const u8 *a = src - delta;
        const int nv = (delta + sbytes + 15) >> 4;
        const uint32_t dst = sm_base + wbuf + (uint32_t)b * TW_BUF + (uint32_t)(cr * pitch);
        for (int v = csub; v < nv; v += 1 << lpr_lg) cp_async16(dst + 16 * v, a + 16 * v);
        return delta;
    };
    auto prefetch = [&](int it) {
        const u8 *src = span_src(it);
        const uintptr_t l0 = (uintptr_t)src & ~(uintptr_t)127, end = (uintptr_t)src + sbytes;
        for (uintptr_t l = l0 + ((uintptr_t)csub << 7); l < end; l += (uintptr_t)128 << lpr_lg)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(l));
    };

    int it = warp, k = 0, dcur = 0;
    if (it < n_items) dcur = issue(it, 0);
    cp_async_commit();
    if (p.prefetch && it + MV_WARPS < n_items) prefetch(it + MV_WARPS);
    Xs xs;
    stage(x, p.n_cols, sm, &xs, true);
    __syncthreads();

    const bool js2 = M::CPL == 4 && cps_lg == 6; /* chunks j, j + 2 share columns */
    for (; it < n_items; it += MV_WARPS, k ^= 1) {
        const int nxt = it + MV_WARPS;
        int dnext = 0;
        if (nxt < n_items) dnext = issue(nxt, k ^ 1);
        cp_async_commit();
        if (p.prefetch && nxt + MV_WARPS < n_items) prefetch(nxt + MV_WARPS);
        cp_async_wait1();
        __syncwarp();

        const int gl = it / nsp, s = it - gl * nsp;
        const uint32_t so = wbuf + (uint32_t)k * TW_BUF;
        const int64_t colb = (int64_t)s * p.span_cols;
        /* per (row, span) sums over the lanes: js2, rows 0 and 1 over all lanes; else
         * chunk j's row (lane + 32 j) >> cps_lg over cps lanes */
        float *pr = part + (int64_t)gl * ((int64_t)nsp << r_lg) + s;
        float s0 = 0.0f, s1 = 0.0f;
#pragma unroll 1 /* one pair at a time: within the register budget of 3 blocks an SM */
        for (int pi = 0; pi < M::CPL / 2; pi++) {
            const int ja = js2 ? pi : 2 * pi, jb = ja + (js2 ? 2 : 1);
            const int qa = lane + 32 * ja, ra = qa >> cps_lg, rbw = (lane + 32 * jb) >> cps_lg;
            const int c = qa & ((1 << cps_lg) - 1), sb = c / M::CPB, cc = c % M::CPB;
            const int da = __shfl_sync(0xffffffffu, dcur, ra << lpr_lg);
            const int db = __shfl_sync(0xffffffffu, dcur, rbw << lpr_lg);
            float va, vb;
            M::dot2(sm, so + ra * pitch + da + sb * M::BS, so + rbw * pitch + db + sb * M::BS, cc,
                    colb + (int64_t)sb * M::QK, xs, &va, &vb);
            if (js2) {
                s0 += va;
                s1 += vb;
            } else {
                for (int o = 1 << (cps_lg - 1); o > 0; o >>= 1) {
                    va += __shfl_xor_sync(0xffffffffu, va, o);
                    vb += __shfl_xor_sync(0xffffffffu, vb, o);
                }
                if ((lane & ((1 << cps_lg) - 1)) == 0) {
                    pr[ra * nsp] = va;
                    pr[rbw * nsp] = vb;
                }
            }
        }
        if (js2) {
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                s0 += __shfl_xor_sync(0xffffffffu, s0, o);
                s1 += __shfl_xor_sync(0xffffffffu, s1, o);
            }
            if (lane == 0) {
                pr[0] = s0;
                pr[nsp] = s1;
            }
        }
        dcur = dnext;
        __syncwarp(); /* every lane is done with buffer k before it is refilled */
    }
    __syncthreads();

    /* outputs: the spans' sums in order; a pair's gate and up rows are 2t, 2t + 1 */
    const int64_t nvr = (g1 - g0) << r_lg, vr0 = g0 << r_lg;
    for (int64_t t = threadIdx.x; t < (glu ? nvr / 2 : nvr); t += MV_THREADS) {
        const int64_t v = glu ? 2 * t : t;
        if (vr0 + v > vlast) break;
        float a = 0.0f, b = 0.0f;
        for (int s = 0; s < nsp; s++) a += part[v * nsp + s];
        if (glu) {
            for (int s = 0; s < nsp; s++) b += part[(v + 1) * nsp + s];
            y[(vr0 + v) >> 1] = silu_f(a) * b;
        } else {
            y[vr0 + v] = a;
        }
    }
}

__global__ void __launch_bounds__(MV_THREADS, 3) mv_kernel(const __grid_constant__ MvArgs A) {
    extern __shared__ uint4 mv_smem[];
    int i = 0;
    while (i + 1 < A.n && (int64_t)blockIdx.x >= A.p[i + 1].first) i++;
    const Prod &p = A.p[i];
    const int64_t bi = (int64_t)blockIdx.x - p.first;
    /* activation rows minor: the blocks of one row block for several tokens run
     * together and share its weights through L2 */
    const int64_t rb = bi / p.n_x, a = bi % p.n_x;
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
    case t: mv_block<t>(p, w, w2, x, y, rb, (u8 *)mv_smem); break;
        HALO_MV_FLOAT_TYPES(X)
#undef X
#define X(t)                                                                                       \
    case t:                                                                                        \
        if (p.tw)                                                                                  \
            mv_block_tw<t>(p, w, w2, x, y, rb, (u8 *)mv_smem);                                     \
        else                                                                                       \
            mv_block<t>(p, w, w2, x, y, rb, (u8 *)mv_smem);                                        \
        break;
        HALO_MV_TW_TYPES(X)
#undef X
    default: break;
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
 * without the L2 prefetch of the rows (for measurements); =direct: without the tiled
 * path (every type read straight from global memory, for comparisons). Read once. */
int mv_mode(void) {
    static int mode = -1; /* a race only reads it twice */
    if (mode < 0) {
        const char *e = getenv("HALO_CUDA_MV");
        mode = !e                              ? 1
               : e[0] == '0'                   ? 0
               : strcmp(e, "noprefetch") == 0 ? 2
               : strcmp(e, "direct") == 0     ? 3
                                               : 1;
    }
    return mode;
}
bool mv_off(void) { return mv_mode() == 0; }

struct TwInfo {
    int qk, bs, cpb, cpl, span, delta;
};
bool tw_info(int type, TwInfo *ti) {
    switch (type) {
#define X(t)                                                                                       \
    case t: *ti = {TW<t>::QK, TW<t>::BS, TW<t>::CPB, TW<t>::CPL, TW<t>::SPAN, TW<t>::DELTA}; return true;
        HALO_MV_TW_TYPES(X)
#undef X
    default: return false;
    }
}

int ilog2(int64_t v) {
    int l = 0;
    while (((int64_t)1 << (l + 1)) <= v) l++;
    return l;
}

/* The tiled path's plan of product m (all but rgb) into p; false: the direct path.
 * Spans: the largest power-of-two number of blocks that divides the row, at most
 * TW::SPAN; at least 8 chunks a row span. */
bool tw_plan(const halo_cuda_mv &m, Prod *p) {
    TwInfo ti;
    p->tw = 0;
    if (mv_mode() == 3 || !tw_info(m.type, &ti)) return false;
    const int64_t nb = m.n_cols / ti.qk;
    const int64_t spb = (nb & -nb) < ti.span ? (nb & -nb) : ti.span;
    const int64_t cps = spb * ti.cpb;
    if (cps < 8) return false;
    const int64_t r = 32 * ti.cpl / cps;
    const int64_t sbytes = spb * ti.bs, pitch = (sbytes + ti.delta + 15) & ~(int64_t)15;
    const int64_t nspan = nb / spb;
    if (r * pitch > TW_BUF || r * nspan > TW_PART) return false;
    p->tw = 1;
    p->cps_lg = ilog2(cps);
    p->r_lg = ilog2(r);
    p->nspan = (int32_t)nspan;
    p->span_bytes = (int32_t)sbytes;
    p->span_cols = (int32_t)(spb * ti.qk);
    p->pitch = (int32_t)pitch;
    p->vrows = m.n_rows * (m.w2 ? 2 : 1);
    p->ngroups = (p->vrows + r - 1) / r;
    p->tw_off = (uint32_t)((stage_bytes(m.n_cols) + 15) & ~(size_t)15);
    return true;
}

/* Blocks of the kernel resident per SM with smem bytes of dynamic shared memory, and
 * the SMs (the current device's; read once). */
void mv_occupancy(size_t smem, int *per_sm, int *n_sm) {
    static int sms = 0, smem_sm = 0, regs = 0; /* a race only repeats the queries */
    if (sms <= 0) {
        int dev = 0, a = 0, b = 0;
        cudaFuncAttributes fa;
        cudaGetDevice(&dev);
        if (cudaDeviceGetAttribute(&a, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) a = 1;
        if (cudaDeviceGetAttribute(&b, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess)
            b = 0;
        regs = cudaFuncGetAttributes(&fa, mv_kernel) == cudaSuccess ? fa.numRegs : 64;
        smem_sm = b;
        sms = a > 0 ? a : 1;
    }
    int n = 2048 / MV_THREADS;
    const int by_smem = smem_sm > 0 ? (int)(smem_sm / (smem + 1024)) : 1;
    const int warp_regs = (regs * 32 + 255) / 256 * 256;
    const int by_regs = warp_regs > 0 ? 65536 / (warp_regs * MV_WARPS) : n;
    n = n < by_smem ? n : by_smem;
    n = n < by_regs ? n : by_regs;
    *per_sm = n > 0 ? n : 1;
    *n_sm = sms;
}

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
    return true;
}

extern "C" int halo_cuda_mv_launch(void *stream, const halo_cuda_mv *m, int n) {
    if (n < 0 || n > HALO_CUDA_MV_MAX) return -1;
    MvArgs A;
    A.n = 0;
    size_t smem = 0;
    double tw_bytes = 0.0; /* weights read by the tiled products */
    int64_t tw_x = 0;      /* their activation rows (blocks at least) */
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
        p.prefetch = mv_mode() != 2;
        p.type = m[i].type;
        p.lg = lg;
        p.rows_pb = (MV_THREADS >> lg) * (m[i].w2 ? 1 : 2);
        p.rblocks = (p.n_rows + p.rows_pb - 1) / p.rows_pb;
        size_t sb = mi.xq ? stage_bytes(p.n_cols) : 0;
        if (tw_plan(m[i], &p)) {
            sb = p.tw_off + TW_SMEM;
            tw_bytes += (double)p.ngroups * ((double)p.nspan * p.span_bytes * (1 << p.r_lg)) * p.n_x;
            tw_x += p.n_x;
        }
        if (sb > smem) smem = sb;
    }
    if (A.n == 0) return 0;
    /* Tiled products: row blocks sized so that the launch is one wave of resident
     * blocks of about equal bytes (a block stages the activations once for all its
     * items; a second, partial wave would double the time of a large product), at
     * least one item per warp, partial sums within TW_PART. */
    int per_sm = 1, n_sm = 1;
    if (tw_x > 0) mv_occupancy(smem, &per_sm, &n_sm);
    int64_t slots = (int64_t)per_sm * n_sm;
    slots = slots - tw_x >= slots / 2 ? slots - tw_x : slots;
    const double bpb = tw_bytes / (double)(slots > 0 ? slots : 1); /* bytes a block */
    int64_t blocks = 0;
    for (int i = 0; i < A.n; i++) {
        Prod &p = A.p[i];
        if (p.tw) {
            const int64_t r = 1 << p.r_lg;
            const double gb = (double)p.nspan * p.span_bytes * r; /* bytes a row group */
            int64_t bx = (int64_t)ceil((double)p.ngroups * gb / (bpb > 1.0 ? bpb : 1.0));
            bx = bx < 1 ? 1 : bx > p.ngroups ? p.ngroups : bx;
            int64_t rgb = (p.ngroups + bx - 1) / bx;
            const int64_t lo = (MV_WARPS + p.nspan - 1) / p.nspan, hi = TW_PART / (r * p.nspan);
            rgb = rgb < lo ? lo : rgb;
            rgb = rgb > hi ? hi : rgb;
            p.rgb = (int32_t)rgb;
            p.rblocks = (p.ngroups + rgb - 1) / rgb;
        }
        p.first = blocks;
        blocks += p.rblocks * p.n_x;
    }
    if (blocks > INT32_MAX) return -1;
    if (smem > 48 * 1024) {
        static bool attr = false; /* idempotent: a race only repeats the call */
        if (!attr) {
            const size_t most = ((stage_bytes(MV_MAX_COLS) + 15) & ~(size_t)15) + TW_SMEM;
            if (cudaFuncSetAttribute(mv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)most) != cudaSuccess)
                return -1;
            attr = true;
        }
    }
    mv_kernel<<<(unsigned)blocks, MV_THREADS, smem, (cudaStream_t)stream>>>(A);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
