/*
 * Attention over the paged KV cache on the GPU: storing K/V rows in the cache
 * type, and flash-attention (online softmax in f32) with split-K over positions.
 *
 * KV store: one warp per 32 values of one head's row (a Q8_0 / Q4_0 / IQ4_NL block),
 * the encoders of quant/ redone in the same arithmetic (double where they use double,
 * ties to even, IQ4_NL's sums in the same order), so the cache bytes equal
 * halo_quant_encode_kv's.
 *
 * Attention: the work unit of a warp is a set of R <= 8 "rows" (token, query
 * head) that read one KV head of one sequence: the query heads of a GQA group
 * (up to 8) times as many tokens of the tile as fit. Each lane owns NE = D / 32
 * consecutive values of the head dimension: it holds its slice of the R queries
 * (pre-scaled by scale * log2 e, the softmax runs in base 2) and of the R
 * accumulators in registers, and decodes its slice of each K/V row straight
 * from global memory (the warp reads whole rows, coalesced). Positions go
 * NP = 32 / R at a time: the R * NP partial dot products of a lane are summed
 * over the warp by a transposing butterfly (31 shuffles for 32 sums), which
 * leaves score (position l / R, row l % R) in lane l; the online softmax update
 * runs once per NP positions, then acc += p V.
 *
 * Two launch shapes:
 * - one token (decode of one sequence): the 4 warps of a block share the rows
 *   and split the block's positions; their states merge through shared memory.
 * - several tokens (prefill, or decode of many sequences): the 4 warps of a block
 *   take 4 consecutive groups of rows (tokens) and walk the same positions, so
 *   every K/V row a warp misses in L1 serves the other three (the K/V tile is
 *   shared by 4 * 8 rows: every query head of the group and several tokens).
 *   A warp whose tokens belong to different sequences walks them one sequence
 *   at a time.
 * - decode of GQA groups of 8 or 16 (up to TILE_MAX_TOK tokens, any sequences):
 *   attn_tile_kernel (below) streams K/V tiles through shared memory with cp.async
 *   instead; the two shapes above take the rest (groups below 8, prefill).
 * Long contexts split the positions over blockIdx.z (flash-decoding): each split
 * leaves (acc, max, sum) per (token, head) in `work`, and a merge kernel
 * combines them. The split count depends only on the host arguments (n_tok,
 * n_head, max_pos), so the work size and the grid are fixed for a CUDA graph.
 */
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define FULL_MASK 0xffffffffu

/* halo_type ids (quant/quant.h) */
enum { T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q8_0 = 8, T_IQ4_NL = 20, T_BF16 = 30 };

static bool type_ok(int t) {
    return t == T_F32 || t == T_F16 || t == T_BF16 || t == T_Q8_0 || t == T_Q4_0 ||
           t == T_IQ4_NL;
}
static bool type_quant(int t) { return t == T_Q8_0 || t == T_Q4_0 || t == T_IQ4_NL; }
/* bytes of n values (n a multiple of 32 for the block types) */
static size_t type_bytes(int t, int64_t n) {
    switch (t) {
    case T_F32: return (size_t)n * 4;
    case T_F16:
    case T_BF16: return (size_t)n * 2;
    case T_Q8_0: return (size_t)(n / 32) * 34;
    default: return (size_t)(n / 32) * 18;
    }
}

/* ---- f32 -> f16 / bf16, bit for bit as quant/fp16.c ------------------------------- */

__device__ __forceinline__ uint16_t f32_to_f16(float f) {
    uint32_t x = __float_as_uint(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)
        return sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0);
    if (ax >= 0x477ff000u) return sign | 0x7c00;
    if (ax < 0x38800000u) {
        float v = __uint_as_float(ax) * 0x1p24f; /* exact: a power of two */
        return sign | (uint16_t)__float2int_rn(v);
    }
    uint32_t mant_odd = (ax >> 13) & 1;
    ax += 0x0fffu + mant_odd;
    return sign | (uint16_t)((ax - 0x38000000u) >> 13);
}

__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
    uint32_t x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

__device__ __forceinline__ float f16_to_f32(uint16_t h) {
    return __half2float(__ushort_as_half(h)); /* exact (normals, subnormals, inf) */
}

/* halo_scale_fp16: clamp to +-65504 (NaN to 0), through float, to half */
__device__ __forceinline__ uint16_t scale_fp16(double d) {
    if (!(d == d)) return 0;
    if (d > 65504.0) d = 65504.0;
    if (d < -65504.0) d = -65504.0;
    return f32_to_f16(__double2float_rn(d));
}

/* halo_qround: ties to even, NaN to lo */
__device__ __forceinline__ int qround(double v, int lo, int hi) {
    if (!(v > (double)lo)) return lo;
    if (v >= (double)hi) return hi;
    return (int)rint(v);
}

/* ---- IQ4_NL's grid ------------------------------------------------------------------- */

/* halo_kvalues_iq4nl[i] (i < 16): the 16 signed bytes packed in four words, one picked by
 * a byte permute (no table in memory for the lanes to diverge on). */
__device__ __forceinline__ int iq4nl_value(int i) {
    const unsigned b = i < 8 ? __byte_perm(0xbfad9881u, 0xf6eaddcfu, (unsigned)i)
                             : __byte_perm(0x26190d01u, 0x71594535u, (unsigned)(i - 8));
    return (int)(int8_t)(b & 0xff);
}

/* halo_nearest16 over halo_iq4nl_mid: the number of midpoints below v */
__device__ __forceinline__ int iq4nl_nearest(double v) {
    return (v > -115.5) + (v > -93.5) + (v > -74.0) + (v > -57.0) + (v > -42.0) + (v > -28.5) +
           (v > -16.0) + (v > -4.5) + (v > 7.0) + (v > 19.0) + (v > 31.5) + (v > 45.5) +
           (v > 61.0) + (v > 79.0) + (v > 101.0);
}

/* The sum over the warp of lane j's v, added in the order j = 0 .. 31 as the CPU's loop
 * does (every lane gets the same bits). */
__device__ __forceinline__ double warp_sum_ordered(double v) {
    double s = 0.0;
#pragma unroll
    for (int j = 0; j < 32; j++) s = __dadd_rn(s, __shfl_sync(FULL_MASK, v, j));
    return s;
}

/* halo_iq4_best_scale_n with round_fp16 and the KV cache's n_try (HALO_IQ4_NL_KV_TRY,
 * as halo_quant_encode_kv), lane j holding x[j]: the scale (not yet rounded to half) and
 * this lane's grid index. max is the block's signed absmax. */
#define IQ4_NL_KV_TRY 2
__device__ double iq4nl_best_scale(float x, float max, int *q_out) {
    if ((double)max == 0.0) {
        *q_out = 8; /* grid value 1 at scale 0 */
        return 0.0;
    }
    double best_d = 0.0, best_err = __longlong_as_double(0x7ff0000000000000ll); /* inf */
    int best_q = 0;
    for (int t = -IQ4_NL_KV_TRY; t <= IQ4_NL_KV_TRY; t++) {
        double d = __ddiv_rn((double)max, -127.0 + 4.0 * t);
        for (int pass = 0; pass < 2; pass++) {
            d = (double)f16_to_f32(scale_fp16(d));
            const double id = d != 0.0 ? __ddiv_rn(1.0, d) : 0.0;
            const int q = iq4nl_nearest(__dmul_rn((double)x, id));
            const double v = (double)iq4nl_value(q);
            const double e = __dsub_rn((double)x, __dmul_rn(d, v));
            const double err = warp_sum_ordered(__dmul_rn(e, e));
            if (err < best_err || (t == -IQ4_NL_KV_TRY && pass == 0)) {
                best_err = err;
                best_d = d;
                best_q = q;
            }
            const double sxv = warp_sum_ordered(__dmul_rn((double)x, v));
            const double svv = warp_sum_ordered(__dmul_rn(v, v));
            d = __ddiv_rn(sxv, svv);
        }
    }
    *q_out = best_q;
    return best_d;
}

/* ---- KV store ---------------------------------------------------------------------- */

/* The 32 values x (lane j has value j of the block, or 0 past the row's end for
 * the float types) of one chunk of a head row, written at dst in type `type`.
 * Chunk c covers values 32c .. 32c + 31. */
__device__ __forceinline__ void store_chunk(int type, char *head, int c, int n, int lane,
                                            float x) {
    const int i = c * 32 + lane;
    switch (type) {
    case T_F32:
        if (i < n) ((float *)head)[i] = x;
        return;
    case T_F16:
        if (i < n) ((uint16_t *)head)[i] = f32_to_f16(x);
        return;
    case T_BF16:
        if (i < n) ((uint16_t *)head)[i] = f32_to_bf16(x);
        return;
    case T_Q8_0: {
        float amax = fabsf(x);
#pragma unroll
        for (int o = 16; o; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(FULL_MASK, amax, o));
        const uint16_t dh = scale_fp16(__ddiv_rn((double)amax, 127.0));
        const double d = (double)f16_to_f32(dh);
        const double id = d != 0.0 ? __ddiv_rn(1.0, d) : 0.0;
        char *blk = head + (size_t)c * 34;
        if (lane == 0) *(uint16_t *)blk = dh;
        blk[2 + lane] = (char)(int8_t)qround(__dmul_rn((double)x, id), -127, 127);
        return;
    }
    case T_Q4_0:
    case T_IQ4_NL: {
        /* the value of largest magnitude, the first on ties (signed_absmax) */
        float a = fabsf(x);
        if (!(a > 0.0f)) a = -1.0f; /* zero and NaN never win over amax = 0 */
        int idx = lane;
#pragma unroll
        for (int o = 16; o; o >>= 1) {
            float oa = __shfl_xor_sync(FULL_MASK, a, o);
            int oi = __shfl_xor_sync(FULL_MASK, idx, o);
            if (oa > a || (oa == a && oi < idx)) {
                a = oa;
                idx = oi;
            }
        }
        float xm = __shfl_sync(FULL_MASK, x, idx);
        const float mx = a > 0.0f ? xm : 0.0f;
        char *blk = head + (size_t)c * 18;
        if (type == T_IQ4_NL) {
            int q;
            const uint16_t dh = scale_fp16(iq4nl_best_scale(x, mx, &q));
            const int q_hi = __shfl_down_sync(FULL_MASK, q, 16);
            if (lane == 0) *(uint16_t *)blk = dh;
            if (lane < 16) blk[2 + lane] = (char)(uint8_t)(q | q_hi << 4);
            return;
        }
        const uint16_t dh = scale_fp16(__ddiv_rn((double)mx, -8.0));
        const double d = (double)f16_to_f32(dh);
        const double id = d != 0.0 ? __ddiv_rn(1.0, d) : 0.0;
        const int q = qround(__dadd_rn(__dmul_rn((double)x, id), 8.0), 0, 15);
        const int q_hi = __shfl_down_sync(FULL_MASK, q, 16);
        if (lane == 0) *(uint16_t *)blk = dh;
        if (lane < 16) blk[2 + lane] = (char)(uint8_t)(q | q_hi << 4);
        return;
    }
    default: return;
    }
}

__global__ void __launch_bounds__(128) kv_store_kernel(halo_cuda_kv kv, const int32_t *seq,
                                                        const int32_t *pos, int n_kv, int dk,
                                                        int dv, const float *k, int64_t k_stride,
                                                        const float *v, int64_t v_stride) {
    halo_pdl::begin();
    const int t = blockIdx.x, h = blockIdx.y, is_v = blockIdx.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int32_t s = seq[t], p = pos[t];
    const int32_t page = kv.page_table[(size_t)s * kv.table_stride + p / kv.page_size];
    const int32_t row = p % kv.page_size;
    const int n = is_v ? dv : dk;
    const int type = is_v ? kv.type_v : kv.type_k;
    const size_t head_bytes = is_v ? kv.v_head_bytes : kv.k_head_bytes;
    char *head = (is_v ? kv.v : kv.k) + (size_t)page * (is_v ? kv.v_page_bytes : kv.k_page_bytes) +
                 ((size_t)row * n_kv + h) * head_bytes;
    const float *src = (is_v ? v + (size_t)t * v_stride : k + (size_t)t * k_stride) + (size_t)h * n;
    const int n_chunks = (n + 31) / 32;
    for (int c = warp; c < n_chunks; c += nw) {
        const int i = c * 32 + lane;
        const float x = i < n ? src[i] : 0.0f;
        store_chunk(type, head, c, n, lane, x);
    }
}

extern "C" int halo_cuda_kv_store(void *stream, const halo_cuda_kv *kv, int32_t n_tok,
                                  const int32_t *seq, const int32_t *pos, int n_kv, int head_dim_k,
                                  int head_dim_v, const float *k, int64_t k_stride, const float *v,
                                  int64_t v_stride) {
    if (!kv || n_tok < 0 || n_kv <= 0 || head_dim_k <= 0 || head_dim_v <= 0) return -1;
    if (!type_ok(kv->type_k) || !type_ok(kv->type_v)) return -1;
    if (type_quant(kv->type_k) && head_dim_k % 32) return -1;
    if (type_quant(kv->type_v) && head_dim_v % 32) return -1;
    if (kv->k_head_bytes < type_bytes(kv->type_k, head_dim_k) ||
        kv->v_head_bytes < type_bytes(kv->type_v, head_dim_v) || kv->page_size <= 0)
        return -1;
    if (n_tok == 0) return 0;
    if (n_kv > 65535) return -1;
    halo_pdl::launch(kv_store_kernel, dim3((unsigned)n_tok, (unsigned)n_kv, 2), 128, 0, (cudaStream_t)stream,
        *kv, seq, pos, n_kv, head_dim_k, head_dim_v, k, k_stride, v, v_stride);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}

/* ---- decoding a lane's slice of a cache row ------------------------------------------ */

/* values e0 .. e0 + NE - 1 of the head row at `head` (e0 = lane * NE) */
template <int NE>
__device__ __forceinline__ void load_slice(int type, const char *__restrict__ head, int e0,
                                           float (&x)[NE]) {
    switch (type) {
    case T_F32: {
        const float *p = (const float *)head + e0;
        if constexpr (NE % 4 == 0) {
#pragma unroll
            for (int i = 0; i < NE / 4; i++) {
                float4 f = __ldg((const float4 *)p + i);
                x[4 * i] = f.x;
                x[4 * i + 1] = f.y;
                x[4 * i + 2] = f.z;
                x[4 * i + 3] = f.w;
            }
        } else {
#pragma unroll
            for (int i = 0; i < NE / 2; i++) {
                float2 f = __ldg((const float2 *)p + i);
                x[2 * i] = f.x;
                x[2 * i + 1] = f.y;
            }
        }
        return;
    }
    case T_F16:
    case T_BF16: {
        uint32_t w[NE / 2];
        const uint16_t *p = (const uint16_t *)head + e0;
        if constexpr (NE == 8) {
            uint4 u = __ldg((const uint4 *)p);
            w[0] = u.x;
            w[1] = u.y;
            w[2] = u.z;
            w[3] = u.w;
        } else if constexpr (NE == 4) {
            uint2 u = __ldg((const uint2 *)p);
            w[0] = u.x;
            w[1] = u.y;
        } else {
            w[0] = __ldg((const unsigned int *)p);
        }
        if (type == T_F16) {
#pragma unroll
            for (int i = 0; i < NE / 2; i++) {
                x[2 * i] = f16_to_f32((uint16_t)(w[i] & 0xffff));
                x[2 * i + 1] = f16_to_f32((uint16_t)(w[i] >> 16));
            }
        } else {
#pragma unroll
            for (int i = 0; i < NE / 2; i++) {
                x[2 * i] = __uint_as_float(w[i] << 16);
                x[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
            }
        }
        return;
    }
    case T_Q8_0: {
        const char *blk = head + (size_t)(e0 >> 5) * 34;
        const int j0 = e0 & 31;
        const float d = f16_to_f32(__ldg((const unsigned short *)blk));
        const unsigned short *q = (const unsigned short *)(blk + 2 + j0); /* 2-byte aligned */
#pragma unroll
        for (int i = 0; i < NE / 2; i++) {
            const unsigned short u = __ldg(q + i);
            x[2 * i] = (float)(int8_t)(u & 0xff) * d;
            x[2 * i + 1] = (float)(int8_t)(u >> 8) * d;
        }
        return;
    }
    case T_Q4_0:
    case T_IQ4_NL: {
        const char *blk = head + (size_t)(e0 >> 5) * 18;
        const int j0 = e0 & 31, sh = j0 >= 16 ? 4 : 0;
        const float d = f16_to_f32(__ldg((const unsigned short *)blk));
        const unsigned short *q = (const unsigned short *)(blk + 2 + (j0 & 15));
        const bool nl = type == T_IQ4_NL;
#pragma unroll
        for (int i = 0; i < NE / 2; i++) {
            const unsigned short u = __ldg(q + i);
            const int c0 = (u >> sh) & 15, c1 = (u >> (8 + sh)) & 15;
            x[2 * i] = (float)(nl ? iq4nl_value(c0) : c0 - 8) * d;
            x[2 * i + 1] = (float)(nl ? iq4nl_value(c1) : c1 - 8) * d;
        }
        return;
    }
    default:
#pragma unroll
        for (int i = 0; i < NE; i++) x[i] = 0.0f;
        return;
    }
}

/* ---- the flash-attention kernel ------------------------------------------------------- */

#define ATTN_WARPS 4
#define ATTN_MAX_SPLIT 256
#define ATTN_SPLIT_MIN_POS 64

struct attn_args {
    halo_cuda_kv kv;
    size_t k_row_bytes, v_row_bytes;
    const int32_t *seq, *pos;
    int32_t n_tok;
    int n_head, n_kv, group; /* group = n_head / n_kv */
    int gr;                  /* query heads per row group: min(group, 8) */
    int n_hg;                /* row groups per KV head: ceil(group / 8) */
    int tw;                  /* tokens per warp: 8 / gr (1 for the one-token shape) */
    int n_split;
    int32_t chunk;           /* positions per split */
    float qscale;            /* scale * log2(e) */
    const float *q;
    float *out, *work;
};

/* c ? a : b on values (a plain ?: on array elements becomes a select of addresses,
 * which sends the array to local memory) */
__device__ __forceinline__ float sel(bool c, float a, float b) {
    float r;
    asm("{\n\t.reg .pred p;\n\tsetp.ne.u32 p, %3, 0;\n\tselp.f32 %0, %1, %2, p;\n\t}"
        : "=f"(r)
        : "f"(a), "f"(b), "r"((unsigned)c));
    return r;
}

__device__ __forceinline__ void prefetch_l1(const void *p) {
    asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
}
__device__ __forceinline__ void prefetch_l2(const void *p) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

/* One level of the transposing sum: lanes with bit N keep the upper N values. */
template <int N>
__device__ __forceinline__ void transpose_step(float (&v)[32], int lane) {
    const bool hi = (lane & N) != 0;
#pragma unroll
    for (int i = 0; i < N; i++) {
        const float lo_v = v[i], hi_v = v[i + N];
        const float send = sel(hi, lo_v, hi_v);
        const float keep = sel(hi, hi_v, lo_v);
        v[i] = keep + __shfl_xor_sync(FULL_MASK, send, N);
    }
}

/* Sum v[0..31] over the warp, leaving the total of v[l] in lane l. */
__device__ __forceinline__ float transpose_sum(float (&v)[32], int lane) {
    transpose_step<16>(v, lane);
    transpose_step<8>(v, lane);
    transpose_step<4>(v, lane);
    transpose_step<2>(v, lane);
    transpose_step<1>(v, lane);
    return v[0];
}

/* One warp's online softmax over positions [p_first + k * p_step, ... < p_end) in
 * groups of NP = 32 / R (p_step a multiple of NP): rows r < R with query slices
 * q[r], visible positions below the lane's lim (the limit of row lane % R).
 * State: acc[r][NE] per lane; m, l of row lane % R in the lane. */
template <int R, int NE>
__device__ __forceinline__ void flash_range(const attn_args &a, const int32_t *__restrict__ tbl,
                                            const char *__restrict__ kbase,
                                            const char *__restrict__ vbase, int32_t p_first,
                                            int32_t p_step, int32_t p_end, int32_t lim,
                                            const float (&q)[R][NE], float (&acc)[R][NE],
                                            float &m, float &l, int lane) {
    constexpr int NP = 32 / R;
    const int32_t ps = a.kv.page_size;
    const int e0 = lane * NE;
    const int my_pi = lane / R;
    /* each lane touches 1/32 of a head row: together the whole row */
    const size_t k_off = (size_t)lane * a.kv.k_head_bytes / 32;
    const size_t v_off = (size_t)lane * a.kv.v_head_bytes / 32;
    for (int32_t p0 = p_first; p0 < p_end; p0 += p_step) {
        /* V of this step into L1 (read after the scores), K and V of the next step
         * into L2: the loads below then wait on one DRAM round trip, not three */
#pragma unroll
        for (int pi = 0; pi < NP; pi++) {
            const int32_t p = p0 + pi, pn = p + p_step;
            if (p < p_end) {
                const int32_t page = __ldg(tbl + p / ps);
                prefetch_l1(vbase + (size_t)page * a.kv.v_page_bytes +
                            (size_t)(p % ps) * a.v_row_bytes + v_off);
            }
            if (pn < p_end) {
                const int32_t page = __ldg(tbl + pn / ps);
                prefetch_l2(kbase + (size_t)page * a.kv.k_page_bytes +
                            (size_t)(pn % ps) * a.k_row_bytes + k_off);
                prefetch_l2(vbase + (size_t)page * a.kv.v_page_bytes +
                            (size_t)(pn % ps) * a.v_row_bytes + v_off);
            }
        }
        float vals[32];
#pragma unroll
        for (int pi = 0; pi < NP; pi++) {
            const int32_t p = p0 + pi;
            float kk[NE];
            if (p < p_end) {
                const int32_t page = __ldg(tbl + p / ps);
                load_slice<NE>(a.kv.type_k,
                               kbase + (size_t)page * a.kv.k_page_bytes +
                                   (size_t)(p % ps) * a.k_row_bytes,
                               e0, kk);
            } else {
#pragma unroll
                for (int e = 0; e < NE; e++) kk[e] = 0.0f;
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                float s = 0.0f;
#pragma unroll
                for (int e = 0; e < NE; e++) s = fmaf(q[r][e], kk[e], s);
                vals[pi * R + r] = s;
            }
        }
        float s = transpose_sum(vals, lane);
        const bool ok = p0 + my_pi < p_end && p0 + my_pi < lim;
        s = ok ? s : -INFINITY;
        float mx = s;
#pragma unroll
        for (int o = R; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, o));
        const float m_new = fmaxf(m, mx);
        const float pe = ok ? exp2f(s - m_new) : 0.0f;
        /* corr: 1 while the row has seen nothing, 0 on its first positions */
        const float corr = m == m_new ? 1.0f : exp2f(m - m_new);
        float sum = pe;
#pragma unroll
        for (int o = R; o < 32; o <<= 1) sum += __shfl_xor_sync(FULL_MASK, sum, o);
        l = l * corr + sum;
        m = m_new;
        if (__any_sync(FULL_MASK, corr != 1.0f)) {
#pragma unroll
            for (int r = 0; r < R; r++) {
                const float c = __shfl_sync(FULL_MASK, corr, r);
#pragma unroll
                for (int e = 0; e < NE; e++) acc[r][e] *= c;
            }
        }
#pragma unroll
        for (int pi = 0; pi < NP; pi++) {
            const int32_t p = p0 + pi;
            if (p < p_end) {
                const int32_t page = __ldg(tbl + p / ps);
                float vv[NE];
                load_slice<NE>(a.kv.type_v,
                               vbase + (size_t)page * a.kv.v_page_bytes +
                                   (size_t)(p % ps) * a.v_row_bytes,
                               e0, vv);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const float pr = __shfl_sync(FULL_MASK, pe, pi * R + r);
#pragma unroll
                    for (int e = 0; e < NE; e++) acc[r][e] = fmaf(pr, vv[e], acc[r][e]);
                }
            }
        }
    }
}

/* The rows of a warp: row i < R is token t0 + i / gr, query head
 * kvh * group + hg * 8 + i % gr; it exists when i < tw * gr, the token < n_tok and
 * the head is in the group. */
struct row_info {
    int32_t tok;
    int head;
    bool valid;
};

__device__ __forceinline__ row_info row_of(const attn_args &a, int32_t t0, int kvh, int hg,
                                           int i) {
    row_info ri;
    const int ti = i / a.gr, hh = hg * 8 + i % a.gr;
    ri.tok = t0 + ti;
    ri.head = kvh * a.group + hh;
    ri.valid = ti < a.tw && ri.tok < a.n_tok && hh < a.group;
    return ri;
}

/* Write row r's result: the normalized output (one split) or the partial state. */
template <int NE>
__device__ __forceinline__ void write_row(const attn_args &a, int32_t tok, int head, int split,
                                          const float (&acc)[NE], float m, float l, int lane) {
    const int dv = 32 * NE;
    if (a.n_split == 1) {
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        float *o = a.out + ((size_t)tok * a.n_head + head) * dv + lane * NE;
#pragma unroll
        for (int e = 0; e < NE; e++) o[e] = acc[e] * inv;
    } else {
        float *w = a.work + (((size_t)tok * a.n_head + head) * a.n_split + split) * (dv + 2);
#pragma unroll
        for (int e = 0; e < NE; e++) w[lane * NE + e] = acc[e];
        if (lane == 0) {
            w[dv] = m;
            w[dv + 1] = l;
        }
    }
}

template <int R, int NE>
__device__ __forceinline__ void load_q(const attn_args &a, int32_t t0, int kvh, int hg,
                                       unsigned active, float (&q)[R][NE], int lane) {
    const int dk = 32 * NE;
#pragma unroll
    for (int r = 0; r < R; r++) {
        const row_info ri = row_of(a, t0, kvh, hg, r);
        const bool on = ri.valid && (active >> (r / a.gr) & 1u);
        if (on) {
            const float *src = a.q + ((size_t)ri.tok * a.n_head + ri.head) * dk + lane * NE;
#pragma unroll
            for (int e = 0; e < NE; e++) q[r][e] = src[e] * a.qscale;
        } else {
#pragma unroll
            for (int e = 0; e < NE; e++) q[r][e] = 0.0f;
        }
    }
}

/* Several tokens: warp w of block (tile, kvh * n_hg + hg, split) takes tokens
 * tile * 4 * tw + w * tw .. + tw - 1, all walking the split's positions. */
template <int NE>
__global__ void __launch_bounds__(ATTN_WARPS * 32) attn_rows_kernel(attn_args a) {
    halo_pdl::begin();
    constexpr int R = 8;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int kvh = blockIdx.y / a.n_hg, hg = blockIdx.y % a.n_hg, split = blockIdx.z;
    const int32_t t0 = ((int32_t)blockIdx.x * ATTN_WARPS + warp) * a.tw;
    if (t0 >= a.n_tok) return;
    const int ntw = min(a.tw, a.n_tok - t0);
    unsigned done = 0;
    const unsigned all = (1u << ntw) - 1;
    const char *kbase = a.kv.k + (size_t)kvh * a.kv.k_head_bytes;
    const char *vbase = a.kv.v + (size_t)kvh * a.kv.v_head_bytes;
    while (done != all) {
        /* the sequence of the first token not done, and its tokens of this warp */
        int first = __ffs(~done & all) - 1;
        const int32_t s = a.seq[t0 + first];
        unsigned active = 0;
        for (int i = 0; i < ntw; i++)
            if (!(done >> i & 1u) && a.seq[t0 + i] == s) active |= 1u << i;
        int32_t maxlim = 0, lim = 0;
        for (int i = 0; i < ntw; i++) {
            if (!(active >> i & 1u)) continue;
            const int32_t li = a.pos[t0 + i] + 1;
            maxlim = max(maxlim, li);
        }
        {
            const int r = lane % R;
            const row_info ri = row_of(a, t0, kvh, hg, r);
            const int ti = r / a.gr;
            if (ri.valid && (active >> ti & 1u)) lim = a.pos[ri.tok] + 1;
        }
        float q[R][NE], acc[R][NE];
        load_q<R, NE>(a, t0, kvh, hg, active, q, lane);
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int e = 0; e < NE; e++) acc[r][e] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        const int32_t p_begin = split * a.chunk;
        const int32_t p_end = min(p_begin + a.chunk, maxlim);
        const int32_t *tbl = a.kv.page_table + (size_t)s * a.kv.table_stride;
        flash_range<R, NE>(a, tbl, kbase, vbase, p_begin, 32 / R, p_end, lim, q, acc, m, l,
                           lane);
#pragma unroll
        for (int r = 0; r < R; r++) {
            const row_info ri = row_of(a, t0, kvh, hg, r);
            const float mr = __shfl_sync(FULL_MASK, m, r), lr = __shfl_sync(FULL_MASK, l, r);
            if (ri.valid && (active >> (r / a.gr) & 1u))
                write_row<NE>(a, ri.tok, ri.head, split, acc[r], mr, lr, lane);
        }
        done |= active;
    }
}

/* One token: the 4 warps of block (0, kvh * n_hg + hg, split) share its rows and
 * take every 4th group of NP positions; the states merge in shared memory. */
template <int R, int NE>
__global__ void __launch_bounds__(ATTN_WARPS * 32) attn_one_kernel(attn_args a) {
    halo_pdl::begin();
    constexpr int NP = 32 / R, D = 32 * NE;
    __shared__ float sm_acc[ATTN_WARPS][R][D];
    __shared__ float sm_m[ATTN_WARPS][R], sm_l[ATTN_WARPS][R];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int kvh = blockIdx.y / a.n_hg, hg = blockIdx.y % a.n_hg, split = blockIdx.z;
    const int32_t s = a.seq[0];
    const int32_t maxlim = a.pos[0] + 1;
    int32_t lim = 0;
    {
        const row_info ri = row_of(a, 0, kvh, hg, lane % R);
        if (ri.valid) lim = maxlim;
    }
    float q[R][NE], acc[R][NE];
    load_q<R, NE>(a, 0, kvh, hg, 1u, q, lane);
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int e = 0; e < NE; e++) acc[r][e] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int32_t p_begin = split * a.chunk;
    const int32_t p_end = min(p_begin + a.chunk, maxlim);
    const int32_t *tbl = a.kv.page_table + (size_t)s * a.kv.table_stride;
    flash_range<R, NE>(a, tbl, a.kv.k + (size_t)kvh * a.kv.k_head_bytes,
                       a.kv.v + (size_t)kvh * a.kv.v_head_bytes, p_begin + warp * NP,
                       ATTN_WARPS * NP, p_end, lim, q, acc, m, l, lane);
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int e = 0; e < NE; e++) sm_acc[warp][r][lane * NE + e] = acc[r][e];
    if (lane < R) {
        sm_m[warp][lane] = m;
        sm_l[warp][lane] = l;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < R * D; idx += blockDim.x) {
        const int r = idx / D, d = idx % D;
        const row_info ri = row_of(a, 0, kvh, hg, r);
        if (!ri.valid) continue;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < ATTN_WARPS; w++) mx = fmaxf(mx, sm_m[w][r]);
        float A = 0.0f, L = 0.0f;
        if (mx != -INFINITY) {
#pragma unroll
            for (int w = 0; w < ATTN_WARPS; w++) {
                const float f = exp2f(sm_m[w][r] - mx); /* 0 for a warp that saw nothing */
                A = fmaf(sm_acc[w][r][d], f, A);
                L = fmaf(sm_l[w][r], f, L);
            }
        }
        if (a.n_split == 1) {
            a.out[((size_t)ri.tok * a.n_head + ri.head) * D + d] = L > 0.0f ? A / L : 0.0f;
        } else {
            float *w = a.work + (((size_t)ri.tok * a.n_head + ri.head) * a.n_split + split) * (D + 2);
            w[d] = A;
            if (d == 0) {
                w[D] = mx;
                w[D + 1] = L;
            }
        }
    }
}

/* ---- the tiled decode kernel ----------------------------------------------------------
 * Decode (one token per block, any number of tokens) for GQA groups that fill R = 8
 * rows: block (token, kvh * n_hg + hg, split) of 4 warps streams its split's K/V rows
 * of one KV head through shared memory in tiles of TP = 32 positions, TILE_STAGES
 * deep (cp.async, the next tiles' loads in flight while one is computed: the bytes
 * of a block arrive at the rate of the memory, not of a warp's dependent loads).
 * The rows are copied raw (cache type) and decoded from shared memory, in f32:
 * - scores: lane l of warp w takes position l of the tile and the dims
 *   w * D/4 .. (w+1) * D/4 - 1 for all 8 rows (the q slices are broadcast reads of
 *   the same address over the warp, each K value serves 8 FMAs); the 4 warps'
 *   partial dot products sum through shared memory.
 * - online softmax: warp w takes rows 2w, 2w+1 (lane = position), leaves the
 *   tile's p = 2^(s - m) and the rows' rescale factors in shared memory.
 * - P V: thread j of a group of D/4 threads owns dims 4j .. 4j+3 of all 8 rows
 *   (32 accumulators), the 128 / (D/4) groups take every G-th position of the
 *   tile; the groups' sums meet in shared memory after the last tile.
 * Shared rows are padded to an odd number of load units (16 bytes for the float
 * types, 4 for the block types) so the 32 lanes' reads of 32 rows at one offset
 * spread over the banks. The result (normalized, or the split's state) goes out
 * as attn_one_kernel's, so the merge is shared. */

#define TILE_P 32
#define TILE_STAGES 3
#define TILE_R 8
#define TILE_THREADS (ATTN_WARPS * 32)
/* blocks to aim for: two per SM on a 132-SM H200 (the shared memory of f16 d 256
 * tiles lets two blocks share an SM) */
#define TILE_TARGET_BLOCKS 264
/* more tokens than this go to attn_rows_kernel, whose blocks share K/V rows between
 * tokens (prefill): the tiled kernel reads a sequence's rows once per token */
#define TILE_MAX_TOK 64

struct tile_args {
    halo_cuda_kv kv;
    size_t k_row_bytes, v_row_bytes;
    const int32_t *seq, *pos;
    int n_head, group, n_hg, n_split;
    int32_t chunk;
    int k_copy, v_copy;     /* bytes of one head row that are copied (type_bytes) */
    int k_unit, v_unit;     /* cp.async size: 16 or 4 */
    int k_stride, v_stride; /* shared bytes per row */
    int stage_bytes;        /* TILE_P * (k_stride + v_stride) */
    int region_bytes;       /* max(stages, the P V groups' reduction) */
    float qscale;
    const float *q;
    float *out, *work;
};

__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src));
}
__device__ __forceinline__ void cp_async4(void *dst, const void *src) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(d), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* N (4 or 8) values e0 .. e0 + N - 1 of a shared row in the cache type (e0 a multiple
 * of N); the arithmetic of load_slice, so the values are the same. */
template <int N>
__device__ __forceinline__ void dec_smem(int type, const char *row, int e0, float (&x)[N]) {
    switch (type) {
    case T_F32: {
        const float4 *p = (const float4 *)((const float *)row + e0);
#pragma unroll
        for (int i = 0; i < N / 4; i++) {
            const float4 f = p[i];
            x[4 * i] = f.x;
            x[4 * i + 1] = f.y;
            x[4 * i + 2] = f.z;
            x[4 * i + 3] = f.w;
        }
        return;
    }
    case T_F16:
    case T_BF16: {
        uint32_t w[N / 2];
        if constexpr (N == 8) {
            const uint4 u = *(const uint4 *)((const uint16_t *)row + e0);
            w[0] = u.x;
            w[1] = u.y;
            w[2] = u.z;
            w[3] = u.w;
        } else {
            const uint2 u = *(const uint2 *)((const uint16_t *)row + e0);
            w[0] = u.x;
            w[1] = u.y;
        }
        if (type == T_F16) {
#pragma unroll
            for (int i = 0; i < N / 2; i++) {
                const float2 f = __half22float2(*(const __half2 *)&w[i]);
                x[2 * i] = f.x;
                x[2 * i + 1] = f.y;
            }
        } else {
#pragma unroll
            for (int i = 0; i < N / 2; i++) {
                x[2 * i] = __uint_as_float(w[i] << 16);
                x[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
            }
        }
        return;
    }
    case T_Q8_0: {
        const char *blk = row + (e0 >> 5) * 34;
        const float d = f16_to_f32(*(const uint16_t *)blk);
        const uint16_t *q = (const uint16_t *)(blk + 2 + (e0 & 31));
#pragma unroll
        for (int i = 0; i < N / 2; i++) {
            const uint16_t u = q[i];
            x[2 * i] = (float)(int8_t)(u & 0xff) * d;
            x[2 * i + 1] = (float)(int8_t)(u >> 8) * d;
        }
        return;
    }
    case T_Q4_0:
    case T_IQ4_NL: {
        const char *blk = row + (e0 >> 5) * 18;
        const int j0 = e0 & 31, sh = j0 >= 16 ? 4 : 0;
        const float d = f16_to_f32(*(const uint16_t *)blk);
        const uint16_t *q = (const uint16_t *)(blk + 2 + (j0 & 15));
        const bool nl = type == T_IQ4_NL;
#pragma unroll
        for (int i = 0; i < N / 2; i++) {
            const uint16_t u = q[i];
            const int c0 = (u >> sh) & 15, c1 = (u >> (8 + sh)) & 15;
            x[2 * i] = (float)(nl ? iq4nl_value(c0) : c0 - 8) * d;
            x[2 * i + 1] = (float)(nl ? iq4nl_value(c1) : c1 - 8) * d;
        }
        return;
    }
    default:
#pragma unroll
        for (int i = 0; i < N; i++) x[i] = 0.0f;
        return;
    }
}

/* Copy `n` units of `unit` bytes (16 or 4) from src to dst, lanes interleaved. */
__device__ __forceinline__ void row_copy(char *dst, const char *src, int copy, int unit,
                                         int lane) {
    if (unit == 16) {
        for (int c = lane * 16; c < copy; c += 32 * 16) cp_async16(dst + c, src + c);
    } else {
        for (int c = lane * 4; c < copy; c += 32 * 4) cp_async4(dst + c, src + c);
    }
}

/* Copy the K and V rows of positions [p0, p0 + n) of one KV head (kbase/vbase = the
 * head's bytes in page 0) into the stage: warp w takes rows w, w + 4, ... (one page
 * lookup and division per row for both), its lanes the rows' units. */
__device__ __forceinline__ void tile_copy(const tile_args &a, const char *__restrict__ kbase,
                                          const char *__restrict__ vbase,
                                          const int32_t *__restrict__ tbl, int32_t p0, int n,
                                          char *stage, int warp, int lane) {
    const int32_t ps = a.kv.page_size;
    char *vdst = stage + TILE_P * a.k_stride;
    for (int i = warp; i < n; i += ATTN_WARPS) {
        const int32_t p = p0 + i;
        const int32_t page = __ldg(tbl + p / ps), row = p % ps;
        row_copy(stage + i * a.k_stride,
                 kbase + (size_t)page * a.kv.k_page_bytes + (size_t)row * a.k_row_bytes, a.k_copy,
                 a.k_unit, lane);
        row_copy(vdst + i * a.v_stride,
                 vbase + (size_t)page * a.kv.v_page_bytes + (size_t)row * a.v_row_bytes, a.v_copy,
                 a.v_unit, lane);
    }
}

template <int D>
__global__ void __launch_bounds__(TILE_THREADS, 2) attn_tile_kernel(tile_args a) {
    halo_pdl::begin();
    constexpr int R = TILE_R, DW = D / ATTN_WARPS; /* dims per warp in the scores */
    constexpr int TPG = D / 4, G = TILE_THREADS / TPG; /* P V: threads per group, groups */
    extern __shared__ __align__(16) char smem[];
    char *region = smem; /* stages, then the P V reduction */
    float *sq = (float *)(smem + a.region_bytes);       /* [R][D] pre-scaled q */
    float *sred = sq + R * D;                           /* [warps][R][TILE_P] partial scores */
    float *sp = sred + ATTN_WARPS * R * TILE_P;         /* [TILE_P][R] probabilities */
    float *scorr = sp + TILE_P * R;                     /* [R] rescale factors */
    float *sml = scorr + R;                             /* [R][2] final m, l */

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int32_t tok = blockIdx.x;
    const int kvh = blockIdx.y / a.n_hg, hg = blockIdx.y % a.n_hg, split = blockIdx.z;
    const int32_t s = a.seq[tok];
    const int32_t lim = a.pos[tok] + 1;
    const int32_t p_begin = split * a.chunk;
    const int32_t p_end = min(p_begin + a.chunk, lim);
    const int32_t n_pos = max(p_end - p_begin, 0);
    const int n_tiles = (n_pos + TILE_P - 1) / TILE_P;
    const int32_t *tbl = a.kv.page_table + (size_t)s * a.kv.table_stride;
    const char *kbase = a.kv.k + (size_t)kvh * a.kv.k_head_bytes;
    const char *vbase = a.kv.v + (size_t)kvh * a.kv.v_head_bytes;

    /* the first tiles' loads go out before anything else */
#pragma unroll
    for (int st = 0; st < TILE_STAGES - 1; st++) {
        if (st < n_tiles) {
            const int32_t p0 = p_begin + st * TILE_P;
            const int n = min(TILE_P, p_end - p0);
            tile_copy(a, kbase, vbase, tbl, p0, n, region + st * a.stage_bytes, warp, lane);
        }
        cp_async_commit();
    }

    /* q of the rows (zero for rows past the group) */
    for (int i = tid; i < R * D; i += TILE_THREADS) {
        const int r = i / D, e = i % D, hh = hg * R + r;
        float x = 0.0f;
        if (hh < a.group) x = a.q[((size_t)tok * a.n_head + kvh * a.group + hh) * D + e] * a.qscale;
        sq[i] = x;
    }

    float acc[R][4];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[r][i] = 0.0f;
    /* the softmax state of rows 2 * warp + {0, 1}, in every lane of the warp */
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    const int pj = tid % TPG, pg = tid / TPG;

    for (int t = 0; t < n_tiles; t++) {
        cp_async_wait<TILE_STAGES - 2>();
        __syncthreads(); /* tile t is in; everyone is done with tile t - 1's stage */
        {
            const int tn = t + TILE_STAGES - 1;
            if (tn < n_tiles) {
                const int32_t p0 = p_begin + tn * TILE_P;
                const int n = min(TILE_P, p_end - p0);
                tile_copy(a, kbase, vbase, tbl, p0, n, region + (tn % TILE_STAGES) * a.stage_bytes,
                          warp, lane);
            }
            cp_async_commit();
        }
        const char *ks = region + (t % TILE_STAGES) * a.stage_bytes;
        const char *vs = ks + TILE_P * a.k_stride;
        const int32_t p0 = p_begin + t * TILE_P;
        const int nv = min(TILE_P, p_end - p0);

        /* partial scores: position lane, dims warp * DW .. + DW - 1, all rows (a row
         * past nv holds stale bytes: its score is dropped below) */
        {
            float sc[R];
#pragma unroll
            for (int r = 0; r < R; r++) sc[r] = 0.0f;
            const char *krow = ks + lane * a.k_stride;
#pragma unroll 2
            for (int e0 = warp * DW; e0 < (warp + 1) * DW; e0 += 8) {
                float kk[8];
                dec_smem<8>(a.kv.type_k, krow, e0, kk);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const float4 qa = *(const float4 *)(sq + r * D + e0);
                    const float4 qb = *(const float4 *)(sq + r * D + e0 + 4);
                    float x = sc[r];
                    x = fmaf(qa.x, kk[0], x);
                    x = fmaf(qa.y, kk[1], x);
                    x = fmaf(qa.z, kk[2], x);
                    x = fmaf(qa.w, kk[3], x);
                    x = fmaf(qb.x, kk[4], x);
                    x = fmaf(qb.y, kk[5], x);
                    x = fmaf(qb.z, kk[6], x);
                    x = fmaf(qb.w, kk[7], x);
                    sc[r] = x;
                }
            }
#pragma unroll
            for (int r = 0; r < R; r++) sred[(warp * R + r) * TILE_P + lane] = sc[r];
        }
        __syncthreads();
        /* online softmax of rows 2 * warp + h over the tile */
        {
            const bool ok = lane < nv;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = 2 * warp + h;
                float x = 0.0f;
#pragma unroll
                for (int w = 0; w < ATTN_WARPS; w++) x += sred[(w * R + r) * TILE_P + lane];
                x = ok ? x : -INFINITY;
                float mx = x;
#pragma unroll
                for (int o = 16; o; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, o));
                const float m = h ? m1 : m0;
                const float m_new = fmaxf(m, mx);
                const float pe = ok ? exp2f(x - m_new) : 0.0f;
                const float corr = m == m_new ? 1.0f : exp2f(m - m_new);
                float sum = pe;
#pragma unroll
                for (int o = 16; o; o >>= 1) sum += __shfl_xor_sync(FULL_MASK, sum, o);
                if (h) {
                    l1 = l1 * corr + sum;
                    m1 = m_new;
                } else {
                    l0 = l0 * corr + sum;
                    m0 = m_new;
                }
                sp[lane * R + r] = pe;
                if (lane == 0) scorr[r] = corr;
            }
        }
        __syncthreads();
        /* acc = acc * corr + P V over the group's positions of the tile */
        {
            const float4 ca = *(const float4 *)scorr, cb = *(const float4 *)(scorr + 4);
            const float c[R] = {ca.x, ca.y, ca.z, ca.w, cb.x, cb.y, cb.z, cb.w};
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int i = 0; i < 4; i++) acc[r][i] *= c[r];
#pragma unroll 2
            for (int p = pg; p < nv; p += G) {
                float vv[4];
                dec_smem<4>(a.kv.type_v, vs + p * a.v_stride, pj * 4, vv);
                const float4 pa = *(const float4 *)(sp + p * R), pb = *(const float4 *)(sp + p * R + 4);
                const float pr[R] = {pa.x, pa.y, pa.z, pa.w, pb.x, pb.y, pb.z, pb.w};
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int i = 0; i < 4; i++) acc[r][i] = fmaf(pr[r], vv[i], acc[r][i]);
            }
        }
    }
    cp_async_wait<0>();
    __syncthreads(); /* the stages are free for the groups' sums */
    float *sacc = (float *)region; /* [G][R][D] */
#pragma unroll
    for (int r = 0; r < R; r++)
        *(float4 *)(sacc + (pg * R + r) * D + pj * 4) =
            make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    if (lane == 0) {
        sml[(2 * warp) * 2] = m0;
        sml[(2 * warp) * 2 + 1] = l0;
        sml[(2 * warp + 1) * 2] = m1;
        sml[(2 * warp + 1) * 2 + 1] = l1;
    }
    __syncthreads();
    for (int i = tid; i < R * D; i += TILE_THREADS) {
        const int r = i / D, d = i % D, hh = hg * R + r;
        if (hh >= a.group) continue;
        float A = 0.0f;
#pragma unroll
        for (int g = 0; g < G; g++) A += sacc[(g * R + r) * D + d];
        const float m = sml[2 * r], l = sml[2 * r + 1];
        const int head = kvh * a.group + hh;
        if (a.n_split == 1) {
            a.out[((size_t)tok * a.n_head + head) * D + d] = l > 0.0f ? A / l : 0.0f;
        } else {
            float *w = a.work + (((size_t)tok * a.n_head + head) * a.n_split + split) * (D + 2);
            w[d] = A;
            if (d == 0) {
                w[D] = m;
                w[D + 1] = l;
            }
        }
    }
}

/* Split partials of (token, head) blockIdx.x -> out, columns 32 * blockIdx.y + lane:
 * the 8 warps take every 8th split (loads of 32 columns, coalesced, many in flight),
 * then sum through shared memory. Every block recomputes the splits' weights. */
#define MERGE_WARPS 8
__global__ void __launch_bounds__(MERGE_WARPS * 32) attn_merge_kernel(
    const float *__restrict__ work, int n_split, int dv, float *out) {
    halo_pdl::begin();
    __shared__ float wt[ATTN_MAX_SPLIT];
    __shared__ float red[MERGE_WARPS][32];
    __shared__ float s_max, s_sum;
    const float *base = work + (size_t)blockIdx.x * n_split * (dv + 2);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float mj = tid < n_split ? base[(size_t)tid * (dv + 2) + dv] : -INFINITY;
    float mx = mj;
    for (int o = 16; o; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, o));
    if (lane == 0) red[warp][0] = mx;
    __syncthreads();
    if (tid == 0) {
        float x = red[0][0];
        for (int w = 1; w < MERGE_WARPS; w++) x = fmaxf(x, red[w][0]);
        s_max = x;
    }
    __syncthreads();
    const float M = s_max;
    const float f = (tid < n_split && M != -INFINITY && mj != -INFINITY) ? exp2f(mj - M) : 0.0f;
    if (tid < n_split) wt[tid] = f;
    float lw = tid < n_split ? base[(size_t)tid * (dv + 2) + dv + 1] * f : 0.0f;
    for (int o = 16; o; o >>= 1) lw += __shfl_xor_sync(FULL_MASK, lw, o);
    __syncthreads(); /* red[] reused */
    if (lane == 0) red[warp][0] = lw;
    __syncthreads();
    if (tid == 0) {
        float x = 0.0f;
        for (int w = 0; w < MERGE_WARPS; w++) x += red[w][0];
        s_sum = x;
    }
    __syncthreads();
    const int d = blockIdx.y * 32 + lane;
    float A = 0.0f;
    if (d < dv) {
#pragma unroll 8
        for (int j = warp; j < n_split; j += MERGE_WARPS)
            A = fmaf(base[(size_t)j * (dv + 2) + d], wt[j], A);
    }
    red[warp][lane] = A;
    __syncthreads();
    if (warp == 0 && d < dv) {
        float sum = 0.0f;
        for (int w = 0; w < MERGE_WARPS; w++) sum += red[w][lane];
        const float L = s_sum;
        out[(size_t)blockIdx.x * dv + d] = L > 0.0f ? sum / L : 0.0f;
    }
}

/* ---- host side --------------------------------------------------------------------- */

/* Splits of the positions: enough (token, 8-head row group, split) units to fill
 * the GPU (~2048 warps of work), at least ATTN_SPLIT_MIN_POS positions each, at
 * most ATTN_MAX_SPLIT. From host arguments only, shared with the work size. */
static int attn_splits(int32_t n_tok, int n_head, int32_t max_pos) {
    if (n_tok <= 0 || n_head <= 0 || max_pos < 0) return 1;
    const int64_t units = (int64_t)n_tok * ((n_head + 7) / 8);
    int64_t want = (2048 + units - 1) / units;
    const int64_t cap = ((int64_t)max_pos + ATTN_SPLIT_MIN_POS) / ATTN_SPLIT_MIN_POS;
    if (want > cap) want = cap;
    if (want > ATTN_MAX_SPLIT) want = ATTN_MAX_SPLIT;
    return want < 1 ? 1 : (int)want;
}

/* Splits for the tiled kernel: as many as keep the (token, 8-head row group, split)
 * blocks within one wave of TILE_TARGET_BLOCKS (a second, partial wave would cost
 * as much as the first), at least ATTN_SPLIT_MIN_POS positions each. */
static int tile_splits(int32_t n_tok, int n_head, int32_t max_pos) {
    if (n_tok <= 0 || n_head <= 0 || max_pos < 0) return 1;
    const int64_t units = (int64_t)n_tok * ((n_head + 7) / 8);
    int64_t want = TILE_TARGET_BLOCKS / units;
    const int64_t cap = ((int64_t)max_pos + ATTN_SPLIT_MIN_POS) / ATTN_SPLIT_MIN_POS;
    if (want > cap) want = cap;
    if (want > ATTN_MAX_SPLIT) want = ATTN_MAX_SPLIT;
    return want < 1 ? 1 : (int)want;
}

/* Work for any launch of up to n_tok tokens: fewer tokens get more splits, so the
 * largest need is not at n_tok itself (n_tok * splits peaks where the split count
 * stops being capped). Either kernel may run (the tiled one up to TILE_MAX_TOK
 * tokens), so the need is the larger of the two. */
extern "C" size_t halo_cuda_attn_work_bytes(int32_t n_tok, int n_head, int head_dim_v,
                                            int32_t max_pos) {
    if (n_tok <= 0 || n_head <= 0 || head_dim_v <= 0) return 0;
    size_t most = 0;
    for (int32_t n = 1; n <= n_tok; n++) {
        int ns = attn_splits(n, n_head, max_pos);
        if (n <= TILE_MAX_TOK) {
            const int nt = tile_splits(n, n_head, max_pos);
            if (nt > ns) ns = nt;
        }
        if (ns <= 1) continue;
        size_t b = (size_t)n * (size_t)n_head * (size_t)ns * ((size_t)head_dim_v + 2) * sizeof(float);
        if (b > most) most = b;
    }
    return most;
}

template <int NE>
static void launch_one(const attn_args &a, int r, dim3 grid, cudaStream_t st) {
    switch (r) {
    case 1: halo_pdl::launch(attn_one_kernel<1, NE>, grid, ATTN_WARPS * 32, 0, st, a); break;
    case 2: halo_pdl::launch(attn_one_kernel<2, NE>, grid, ATTN_WARPS * 32, 0, st, a); break;
    case 4: halo_pdl::launch(attn_one_kernel<4, NE>, grid, ATTN_WARPS * 32, 0, st, a); break;
    default: halo_pdl::launch(attn_one_kernel<8, NE>, grid, ATTN_WARPS * 32, 0, st, a); break;
    }
}

static bool aligned(const void *p, size_t n, size_t page_bytes, size_t head_bytes) {
    return (uintptr_t)p % n == 0 && page_bytes % n == 0 && head_bytes % n == 0;
}

/* The tiled kernel's launch, or false (nothing enqueued) where it does not apply:
 * row groups of 8 query heads, cp.async-able rows (16-byte units for the float
 * types, 4-byte for the block types), shared memory within the SM's. */
static bool tile_units(int type, const char *base, size_t page_bytes, size_t head_bytes,
                       int copy, int *unit, int *stride) {
    const int u = type_quant(type) ? 4 : 16;
    if ((uintptr_t)base % u || page_bytes % u || head_bytes % u || copy % u) return false;
    int st = copy;
    if ((st / u) % 2 == 0) st += u; /* an odd number of units: lanes' rows spread over banks */
    *unit = u;
    *stride = st;
    return true;
}

template <int D>
static bool tile_launch(const tile_args &a, dim3 grid, size_t smem, cudaStream_t st) {
    /* the opt-in to > 48 KiB of shared memory, once per device (not a stream
     * operation: allowed while a graph is captured) */
    static unsigned attr_set = 0;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    const unsigned bit = dev < 32 ? 1u << dev : 0u;
    if (!(attr_set & bit)) {
        if (cudaFuncSetAttribute(attn_tile_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 227 * 1024) != cudaSuccess)
            return false;
        attr_set |= bit;
    }
    halo_pdl::launch(attn_tile_kernel<D>, grid, TILE_THREADS, smem, st, a);
    return true;
}

/* HALO_CUDA_ATTN_TILE=0: the tiled decode kernel off (measurements); read once */
static bool tile_on(void) {
    static int on = -1; /* a race only reads it twice */
    if (on < 0) {
        const char *e = getenv("HALO_CUDA_ATTN_TILE");
        on = !(e && e[0] == '0');
    }
    return on == 1;
}

static bool attn_tile(const halo_cuda_kv *kv, int32_t n_tok, const int32_t *seq,
                      const int32_t *pos, int32_t max_pos, int n_head, int n_kv, int d,
                      float scale, const float *q, float *out, void *work, cudaStream_t st) {
    const int group = n_head / n_kv;
    if (group % TILE_R || n_tok > TILE_MAX_TOK || !tile_on()) return false;
    tile_args a;
    a.kv = *kv;
    a.k_row_bytes = (size_t)n_kv * kv->k_head_bytes;
    a.v_row_bytes = (size_t)n_kv * kv->v_head_bytes;
    a.seq = seq;
    a.pos = pos;
    a.n_head = n_head;
    a.group = group;
    a.n_hg = group / TILE_R;
    a.k_copy = (int)type_bytes(kv->type_k, d);
    a.v_copy = (int)type_bytes(kv->type_v, d);
    if (!tile_units(kv->type_k, kv->k, kv->k_page_bytes, kv->k_head_bytes, a.k_copy, &a.k_unit,
                    &a.k_stride) ||
        !tile_units(kv->type_v, kv->v, kv->v_page_bytes, kv->v_head_bytes, a.v_copy, &a.v_unit,
                    &a.v_stride))
        return false;
    a.stage_bytes = TILE_P * (a.k_stride + a.v_stride);
    const int red_bytes = (TILE_THREADS / (d / 4)) * TILE_R * d * 4; /* groups' P V sums */
    a.region_bytes = TILE_STAGES * a.stage_bytes;
    if (a.region_bytes < red_bytes) a.region_bytes = red_bytes;
    a.region_bytes = (a.region_bytes + 15) / 16 * 16;
    const size_t smem = (size_t)a.region_bytes +
                        sizeof(float) * ((size_t)TILE_R * d + ATTN_WARPS * TILE_R * TILE_P +
                                         TILE_P * TILE_R + TILE_R + 2 * TILE_R);
    if (smem > 227 * 1024) return false;
    if ((int64_t)n_kv * a.n_hg > 65535) return false;
    a.n_split = tile_splits(n_tok, n_head, max_pos);
    if (a.n_split > 1 && !work) return false;
    {
        const int64_t n_pos = (int64_t)max_pos + 1;
        int64_t chunk = (n_pos + a.n_split - 1) / a.n_split;
        chunk = (chunk + TILE_P - 1) / TILE_P * TILE_P;
        a.chunk = (int32_t)chunk;
    }
    a.qscale = scale * 1.4426950408889634f;
    a.q = q;
    a.out = out;
    a.work = (float *)work;
    const dim3 grid((unsigned)n_tok, (unsigned)(n_kv * a.n_hg), (unsigned)a.n_split);
    bool ok;
    if (d == 64) ok = tile_launch<64>(a, grid, smem, st);
    else if (d == 128) ok = tile_launch<128>(a, grid, smem, st);
    else ok = tile_launch<256>(a, grid, smem, st);
    if (!ok) return false;
    if (a.n_split > 1)
        halo_pdl::launch(attn_merge_kernel, dim3((unsigned)(n_tok * n_head), (unsigned)((d + 31) / 32)),
                            MERGE_WARPS * 32, 0, st, a.work, a.n_split, d, out);
    return true;
}

extern "C" int halo_cuda_attn(void *stream, const halo_cuda_kv *kv, int32_t n_tok,
                              const int32_t *seq, const int32_t *pos, int32_t max_pos, int n_head,
                              int n_kv, int head_dim_k, int head_dim_v, float scale,
                              const float *q, float *out, void *work) {
    if (!kv || n_tok < 0 || n_head <= 0 || n_kv <= 0 || n_head % n_kv || max_pos < 0) return -1;
    if (!type_ok(kv->type_k) || !type_ok(kv->type_v) || kv->page_size <= 0) return -1;
    if (head_dim_k != head_dim_v ||
        (head_dim_k != 64 && head_dim_k != 128 && head_dim_k != 256))
        return -1;
    if (kv->k_head_bytes < type_bytes(kv->type_k, head_dim_k) ||
        kv->v_head_bytes < type_bytes(kv->type_v, head_dim_v))
        return -1;
    /* vector loads: 16 bytes for the float types' slices, 2 for the block types */
    const size_t ak = type_quant(kv->type_k) ? 2 : 16, av = type_quant(kv->type_v) ? 2 : 16;
    if (!aligned(kv->k, ak, kv->k_page_bytes, kv->k_head_bytes) ||
        !aligned(kv->v, av, kv->v_page_bytes, kv->v_head_bytes))
        return -1;
    if (n_tok == 0) return 0;
    if (attn_tile(kv, n_tok, seq, pos, max_pos, n_head, n_kv, head_dim_k, scale, q, out, work,
                  (cudaStream_t)stream))
        return cudaGetLastError() == cudaSuccess ? 0 : -1;
    attn_args a;
    a.kv = *kv;
    a.k_row_bytes = (size_t)n_kv * kv->k_head_bytes;
    a.v_row_bytes = (size_t)n_kv * kv->v_head_bytes;
    a.seq = seq;
    a.pos = pos;
    a.n_tok = n_tok;
    a.n_head = n_head;
    a.n_kv = n_kv;
    a.group = n_head / n_kv;
    a.gr = a.group < 8 ? a.group : 8;
    a.n_hg = (a.group + 7) / 8;
    a.n_split = attn_splits(n_tok, n_head, max_pos);
    if (a.n_split > 1 && !work) return -1;
    {
        const int64_t n_pos = (int64_t)max_pos + 1;
        int64_t chunk = (n_pos + a.n_split - 1) / a.n_split;
        chunk = (chunk + 31) / 32 * 32;
        a.chunk = (int32_t)chunk;
    }
    a.qscale = scale * 1.4426950408889634f;
    a.q = q;
    a.out = out;
    a.work = (float *)work;
    if ((int64_t)n_kv * a.n_hg > 65535) return -1;
    cudaStream_t st = (cudaStream_t)stream;
    const int ne = head_dim_k / 32;
    if (n_tok == 1) {
        a.tw = 1;
        const int r = a.gr <= 1 ? 1 : a.gr <= 2 ? 2 : a.gr <= 4 ? 4 : 8;
        const dim3 grid(1, (unsigned)(n_kv * a.n_hg), (unsigned)a.n_split);
        if (ne == 2) launch_one<2>(a, r, grid, st);
        else if (ne == 4) launch_one<4>(a, r, grid, st);
        else launch_one<8>(a, r, grid, st);
    } else {
        a.tw = 8 / a.gr;
        const int32_t per_block = ATTN_WARPS * a.tw;
        const dim3 grid((unsigned)((n_tok + per_block - 1) / per_block),
                        (unsigned)(n_kv * a.n_hg), (unsigned)a.n_split);
        if (ne == 2) halo_pdl::launch(attn_rows_kernel<2>, grid, ATTN_WARPS * 32, 0, st, a);
        else if (ne == 4) halo_pdl::launch(attn_rows_kernel<4>, grid, ATTN_WARPS * 32, 0, st, a);
        else halo_pdl::launch(attn_rows_kernel<8>, grid, ATTN_WARPS * 32, 0, st, a);
    }
    if (a.n_split > 1)
        halo_pdl::launch(attn_merge_kernel, dim3((unsigned)(n_tok * n_head), (unsigned)((head_dim_v + 31) / 32)),
                            MERGE_WARPS * 32, 0, st, a.work, a.n_split, head_dim_v, out);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
