/*
 * Prefill matrix products on the int8 tensor cores (mma.sync m16n8k32 / m16n8k16,
 * s8 x s8 -> s32), for the formats whose weights are small integer codes times
 * per-sub-block scales: Q4_0, Q8_0, IQ4_NL (32 columns a block), Q4_K, Q5_K, Q6_K,
 * IQ4_XS (256). matmul.cu sends dense products of MMQ_MIN_TOK tokens or more and MoE
 * products of more than GEMV_MAX_ASSIGN assignments here (matmul.cuh).
 *
 * Numerics (xq.cuh): each token's activations are quantized per 32 columns to int16
 * q (scale d_x) and split into signed bytes q = 256 hi + lo. Per 32 columns (16 for
 * Q6_K, whose scales cover 16) the products sum_c code_c hi_c and sum_c code_c lo_c
 * are exact int32 (MMAs into fresh accumulators), are combined as 256 hi + lo in f32
 * (one rounding), and scaled: acc += (wscale * d_x) * isum; the mins of Q4_K/Q5_K
 * come off as acc -= wmin * (f32 sum of the block's x, not quantized).
 *
 * Tile: a block of 8 warps computes MT = 128 weight rows x NT tokens (NT = 16, 32 or
 * 64: a template parameter), each warp 16 rows x NT tokens (NT / 8 MMA column tiles
 * of 8 tokens; those past the last token are skipped). Per chunk of KC = 128 columns
 * the block
 *   - decodes its rows' codes into shared memory as int8 (thread = row, 64 columns;
 *     Q6_K: a 16-byte group of each 32 columns, so the row's two threads read
 *     disjoint bytes), with the scales (d * sc, per 32 or 16 columns) and mins;
 *   - quantizes its tokens' activations (8 lanes per token and 32 columns: amax and
 *     sum by shuffles), hi and lo bytes, and (d_x, sum x) per token and 32 columns;
 *   - issues the next chunk's global loads (raw weight words and activations, into
 *     registers: NT <= 32; 64 tokens have no registers left for it and count on the
 *     second block of the SM), then runs the MMAs from shared memory, accumulating in
 *     f32 registers.
 * The token tile: dense, the number of tokens (16, 32, else 64); MoE, the average
 * assignments per expert (n_assign / n_mat: up to 12, 40, else 64), since an expert's
 * rows are decoded once per tile of its tokens.
 *
 * MoE grid: n_mat * split blocks per row tile, split = the average tiles per expert:
 * block x takes expert x / split and its tiles x % split, + split, ... Each block
 * ranks its expert's assignments itself (gather: every id read at once, ballots and
 * a scan), so no block exists for an assignment that is not the first of its expert
 * and no pass over the ids comes before the product (the grid is host-known).
 *
 * Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k32" .s8; g = lane / 4,
 * t = lane % 4): A (16 x 32, row-major) a0 = row g, columns 4t..4t+3; a1 = row g+8,
 * same columns; a2 = row g, columns 16+4t..; a3 = row g+8, columns 16+4t.. (bytes low
 * to high = increasing column). B (32 x 8, column-major) b0 = column g, rows (k)
 * 4t..4t+3; b1 = column g, rows 16+4t... C/D (16 x 8 s32) c0, c1 = row g, columns
 * 2t, 2t+1; c2, c3 = row g+8, columns 2t, 2t+1. m16n8k16 .s8: A a0 = row g, columns
 * 4t..4t+3, a1 = row g+8; B b0 = column g, rows 4t..4t+3; C as above. So the k16
 * halves of a k32 fragment are {a0, a1} / {b0} and {a2, a3} / {b1}.
 *
 * Shared layouts, chosen so that fragment loads are wide and conflict-free:
 *   weights: row r at r * WST bytes; each 32-column block stores its 8 words in the
 *     order 0 4 1 5 2 6 3 7, so lane t reads words t and t+4 (a0/a2 or a1/a3) as one
 *     8-byte load (WST = 32 mod 128: the 4 rows of a half-warp hit distinct banks);
 *   activations: token n at n * XST bytes, 64 bytes per 32-column block: four 16-byte
 *     groups, group t = hi word t, hi word t+4, lo word t, lo word t+4 (b0, b1 of hi,
 *     b0, b1 of lo in one 16-byte load; XST = 64 mod 128: a quarter-warp's two tokens
 *     cover the 32 banks).
 */
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/quant.cuh"
#include "kernels/cuda/xq.cuh"

#include <cuda_runtime.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

using namespace halo_q;

namespace halo_mm {
namespace {

constexpr int MT = 128;             /* weight rows per block, 16 per warp */
constexpr int KC = 128;             /* columns per chunk */
constexpr int NSB = KC / 32;        /* 32-column blocks per chunk */
constexpr int THREADS = 256;
constexpr int WST = KC + 32;        /* bytes per weight row in shared memory */
constexpr int XST = 2 * KC + 64;    /* bytes per token row (hi and lo) */

/* Per token tile NT (16, 32 or 64 tokens; a warp's MMA columns are NT / 8 tiles of 8):
 * activation pairs per thread per chunk (XIT), how many of them are loaded a chunk
 * ahead (XPF; 64 tokens: none, half before the decoding, half after: spills
 * otherwise; so too the weights: PFW), and the
 * shared memory: codes, activations, scales (up to 2 per 32 columns), mins, (d_x, sum) */
template <int NT> struct Tile {
    static constexpr int XIT = NT * NSB / (THREADS / 8);
    static constexpr int XPF = NT <= 32 ? XIT : 0;
    static constexpr bool PFW = NT <= 32; /* weights loaded a chunk ahead (64: spills) */
    static constexpr int SM_X = MT * WST;
    static constexpr int SM_SC = SM_X + NT * XST;
    static constexpr int SM_MN = SM_SC + 2 * NSB * MT * 4;
    static constexpr int SM_XD = SM_MN + NSB * MT * 4;
    static constexpr int SMEM = SM_XD + NSB * NT * 8;
};

static_assert(MT == 16 * (THREADS / 32), "a warp computes 16 rows");
static_assert(THREADS == 2 * MT && KC == 128, "a thread decodes 64 columns of one row");
static_assert(WST % 128 == 32 && XST % 128 == 64, "bank spread of the fragment loads");
static_assert(NSB == 4, "a warp's 4 activation pairs are one token's chunk");

/* ---- weight codes --------------------------------------------------------------------
 * Split in two so that a chunk's loads are in flight during the previous chunk's MMAs:
 * Mq<T>::load(row, c, nv, r) loads the raw words (NR of them) a thread needs for
 * columns c .. c+63 of a row (c a multiple of 64; of which the first nv, 32 or 64,
 * exist), Mq<T>::dec(r, c, q, sc, mn) turns them into q[16] = the int8 codes, sc =
 * the scales per 32 columns (S16: per 16, 4 of them), mn = the mins per 32 columns
 * (MIN formats). Weight = sc * code - mn.
 * Codes: word i = columns 4i..4i+3 of the 64 (SPLIT: the thread has 16-byte group du
 * (c / 64 % 2) of each of the chunk's four 32-column blocks, q[4s..4s+3] in shared
 * order; scales as the other formats: those of column group du). */

/* Formats whose blocks are only 2-aligned: the aligned words from p & ~3 (NW of them,
 * within the aligned words that hold bytes of the block: never a fault), and the 4
 * bytes at p + o (o even, a constant) from them, m = 8 (p & 2) (0 or 16).
 * __funnelshift_rc by 32 gives the high word. */
template <int NW> __device__ __forceinline__ void ldw_a2(const u8 *p, u32 *w) {
    const u32 *a = (const u32 *)((uintptr_t)p & ~(uintptr_t)3);
#pragma unroll
    for (int i = 0; i < NW; i++) w[i] = __ldg(a + i);
}
__device__ __forceinline__ u32 wat(const u32 *w, int o, u32 m) {
    return __funnelshift_rc(w[o / 4], w[o / 4 + 1], (u32)(o % 4) * 8 + m);
}
__device__ __forceinline__ u32 misal(const u8 *p) { return (u32)((uintptr_t)p & 2) * 8; }

/* IQ4_NL / IQ4_XS grid (halo_kvalues_iq4nl) as signed bytes, for 4 indices at once */
__device__ __forceinline__ u32 iq4_codes(u32 idx /* 4 bytes, each 0..15 */) {
    const u32 sel = (idx & 0x7u) | ((idx >> 4) & 0x70u) | ((idx >> 8) & 0x700u) | ((idx >> 12) & 0x7000u);
    const u32 lo = __byte_perm(0xBFAD9881u, 0xF6EADDCFu, sel); /* -127 -104 -83 -65 -49 -35 -22 -10 */
    const u32 hi = __byte_perm(0x26190D01u, 0x71594535u, sel); /* 1 13 25 38 53 69 89 113 */
    const u32 m = ((idx >> 3) & 0x01010101u) * 0xffu;
    return (hi & m) | (lo & ~m);
}

/* 32-column blocks (2-aligned): raw = the block's aligned words and m (last word) */
struct B8_0 { /* Q8_0: f16 d, 32 int8 */
    static constexpr int BS = 34, NR = 10;
    __device__ static void load(const u8 *b, u32 *r) {
        ldw_a2<9>(b, r);
        r[9] = misal(b);
    }
    __device__ static void dec(const u32 *r, u32 *q, float *sc) {
        *sc = h2f(wat(r, 0, r[9]) & 0xffff);
#pragma unroll
        for (int i = 0; i < 8; i++) q[i] = wat(r, 2 + 4 * i, r[9]);
    }
};
struct B4_0 { /* Q4_0: f16 d, 16 bytes: low nibbles columns 0..15, high 16..31; code q - 8 */
    static constexpr int BS = 18, NR = 6;
    __device__ static void load(const u8 *b, u32 *r) {
        ldw_a2<5>(b, r);
        r[5] = misal(b);
    }
    __device__ static void dec(const u32 *r, u32 *q, float *sc) {
        *sc = h2f(wat(r, 0, r[5]) & 0xffff);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const u32 v = wat(r, 2 + 4 * i, r[5]);
            q[i] = __vsub4(v & 0x0F0F0F0Fu, 0x08080808u);
            q[4 + i] = __vsub4((v >> 4) & 0x0F0F0F0Fu, 0x08080808u);
        }
    }
};
struct BIq4Nl { /* IQ4_NL: as Q4_0 with the grid */
    static constexpr int BS = 18, NR = 6;
    __device__ static void load(const u8 *b, u32 *r) { B4_0::load(b, r); }
    __device__ static void dec(const u32 *r, u32 *q, float *sc) {
        *sc = h2f(wat(r, 0, r[5]) & 0xffff);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const u32 v = wat(r, 2 + 4 * i, r[5]);
            q[i] = iq4_codes(v & 0x0F0F0F0Fu);
            q[4 + i] = iq4_codes((v >> 4) & 0x0F0F0F0Fu);
        }
    }
};

/* 32-column formats: two blocks, the second only where it exists (else zeros: scale 0) */
template <class B> struct Unit32 {
    static constexpr bool MIN = false, S16 = false, SPLIT = false;
    static constexpr int NR = 2 * B::NR;
    __device__ static void load(const u8 *row, int64_t c, int nv, u32 *r) {
#pragma unroll
        for (int k = 0; k < 2; k++) {
            if (32 * k < nv) {
                B::load(row + (c / 32 + k) * B::BS, r + B::NR * k);
            } else {
#pragma unroll
                for (int i = 0; i < B::NR; i++) r[B::NR * k + i] = 0;
            }
        }
    }
    __device__ static void dec(const u32 *r, int64_t, u32 *q, float *sc, float *) {
#pragma unroll
        for (int k = 0; k < 2; k++) B::dec(r + B::NR * k, q + 8 * k, sc + k);
    }
};

template <int T> struct Mq;
template <> struct Mq<HALO_TYPE_Q8_0> : Unit32<B8_0> {};
template <> struct Mq<HALO_TYPE_Q4_0> : Unit32<B4_0> {};
template <> struct Mq<HALO_TYPE_IQ4_NL> : Unit32<BIq4Nl> {};

/* Q4_K: 64 columns = 32 qs bytes at 16 + 32u (u = 64-column group of the block): low
 * nibbles sub-block 2u, high nibbles 2u+1; codes 0..15. raw: header, qs */
template <> struct Mq<HALO_TYPE_Q4_K> {
    static constexpr bool MIN = true, S16 = false, SPLIT = false;
    static constexpr int NR = 12;
    __device__ static void load(const u8 *row, int64_t c, int, u32 *r) {
        const u8 *b = row + (c / 256) * 144;
        const int u = (int)(c % 256) / 64;
        const uint4 hd = *(const uint4 *)b;
        const uint4 qa = *(const uint4 *)(b + 16 + 32 * u), qb = *(const uint4 *)(b + 32 + 32 * u);
        const u32 w[12] = {hd.x, hd.y, hd.z, hd.w, qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
#pragma unroll
        for (int i = 0; i < 12; i++) r[i] = w[i];
    }
    __device__ static void dec(const u32 *r, int64_t c, u32 *q, float *sc, float *mn) {
        const int u = (int)(c % 256) / 64;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            q[i] = r[4 + i] & 0x0F0F0F0Fu;
            q[8 + i] = (r[4 + i] >> 4) & 0x0F0F0F0Fu;
        }
        k4_pair(u, make_uint4(r[0], r[1], r[2], r[3]), &sc[0], &mn[0], &sc[1], &mn[1]);
    }
};

/* Q5_K: as Q4_K (qs at 48 + 32u), fifth bits in qh byte i: bit 2u (low), 2u+1 (high).
 * raw: header, qs, qh */
template <> struct Mq<HALO_TYPE_Q5_K> {
    static constexpr bool MIN = true, S16 = false, SPLIT = false;
    static constexpr int NR = 20;
    __device__ static void load(const u8 *row, int64_t c, int, u32 *r) {
        const u8 *b = row + (c / 256) * 176;
        const int u = (int)(c % 256) / 64;
        const uint4 hd = *(const uint4 *)b;
        const uint4 qa = *(const uint4 *)(b + 48 + 32 * u), qb = *(const uint4 *)(b + 64 + 32 * u);
        const uint4 ha = *(const uint4 *)(b + 16), hb = *(const uint4 *)(b + 32);
        const u32 w[20] = {hd.x, hd.y, hd.z, hd.w, qa.x, qa.y, qa.z, qa.w, qb.x, qb.y,
                           qb.z, qb.w, ha.x, ha.y, ha.z, ha.w, hb.x, hb.y, hb.z, hb.w};
#pragma unroll
        for (int i = 0; i < 20; i++) r[i] = w[i];
    }
    __device__ static void dec(const u32 *r, int64_t c, u32 *q, float *sc, float *mn) {
        const int u = (int)(c % 256) / 64;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const u32 w = r[4 + i], h = r[12 + i] >> (2 * u);
            q[i] = (w & 0x0F0F0F0Fu) | ((h << 4) & 0x10101010u);
            q[8 + i] = ((w >> 4) & 0x0F0F0F0Fu) | ((h << 3) & 0x10101010u);
        }
        k4_pair(u, make_uint4(r[0], r[1], r[2], r[3]), &sc[0], &mn[0], &sc[1], &mn[1]);
    }
};

/* Q6_K (SPLIT): the chunk is half h of the block (columns 128h ..); its 32-column block
 * s takes the low (s < 2) or high nibbles of ql[64h + 32 (s % 2) + l] and bits 2s..
 * of qh[32h + l], l < 32; codes q - 32; scales int8 per 16 columns, index 8h + 2s + k.
 * Thread du takes l in 8du .. 8du+7 and 16+8du .. 16+8du+7 of every s, i.e. words
 * 2du, 2du+1, 4+2du, 5+2du of each 32 columns: one 16-byte group of the shared
 * layout. So the two threads of a row read disjoint bytes: four 8-byte pieces of ql,
 * two of qh (3 aligned words each: the block is 2-aligned), 4 scale bytes (the
 * thread's column groups) and d. */
template <> struct Mq<HALO_TYPE_Q6_K> {
    static constexpr bool MIN = false, S16 = true, SPLIT = true;
    static constexpr int NR = 22;
    __device__ static void load(const u8 *row, int64_t c, int, u32 *r) {
        const u8 *b = row + (c / 256) * 210;
        const int h = (int)(c % 256) / 128, du = (int)(c % 128) / 64;
#pragma unroll
        for (int m = 0; m < 4; m++) ldw_a2<3>(b + 64 * h + 8 * du + 16 * m, r + 3 * m);
#pragma unroll
        for (int j = 0; j < 2; j++) ldw_a2<3>(b + 128 + 32 * h + 8 * du + 16 * j, r + 12 + 3 * j);
        ldw_a2<2>(b + 192 + 8 * h + 4 * du, r + 18);
        r[20] = ld16(b + 208);
        r[21] = misal(b); /* every piece is at an offset from b that is a multiple of 4 */
    }
    __device__ static void dec(const u32 *r, int64_t, u32 *q, float *sc, float *) {
        const u32 m = r[21];
#pragma unroll
        for (int s = 0; s < 4; s++) {
            const int pa = 2 * (s & 1), nib = 4 * (s >> 1);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                /* shared order: (a, lo), (b, lo), (a, hi), (b, hi); piece b = l + 16 */
                const int pc = pa + (i & 1), half = i >> 1;
                const u32 l = wat(r + 3 * pc, 4 * half, m), hb = wat(r + 12 + 3 * (i & 1), 4 * half, m);
                q[4 * s + i] = __vsub4(((l >> nib) & 0x0F0F0F0Fu) | (((hb >> (2 * s)) & 0x03030303u) << 4),
                                       0x20202020u);
            }
        }
        const u32 s4 = wat(r + 18, 0, m);
        const float d = h2f(r[20]);
#pragma unroll
        for (int k = 0; k < 4; k++) sc[k] = d * (float)(int8_t)((s4 >> (8 * k)) & 0xff);
    }
};

/* IQ4_XS: sub-blocks 2u, 2u+1 (16 qs bytes at 8 + 16s each: low nibbles columns 0..15,
 * high 16..31); scale d * (ls - 32), ls 6 bits from scales_l / scales_h. raw: header,
 * the 32 qs bytes at 8 + 32u */
template <> struct Mq<HALO_TYPE_IQ4_XS> {
    static constexpr bool MIN = false, S16 = false, SPLIT = false;
    static constexpr int NR = 10;
    __device__ static void load(const u8 *row, int64_t c, int, u32 *r) {
        const u8 *b = row + (c / 256) * 136;
        const int u = (int)(c % 256) / 64;
        const uint2 hd = *(const uint2 *)b;
        r[0] = hd.x;
        r[1] = hd.y;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint2 v = *(const uint2 *)(b + 8 + 32 * u + 8 * i);
            r[2 + 2 * i] = v.x;
            r[3 + 2 * i] = v.y;
        }
    }
    __device__ static void dec(const u32 *r, int64_t c, u32 *q, float *sc, float *) {
        const int u = (int)(c % 256) / 64;
        const float d = h2f(r[0] & 0xffff);
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const int s = 2 * u + k;
            const int ls = (int)(((r[1] >> (4 * s)) & 0xf) | ((r[0] >> (16 + 2 * s)) & 3) << 4);
            sc[k] = d * (float)(ls - 32);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const u32 w = r[2 + 4 * k + i];
                q[8 * k + i] = iq4_codes(w & 0x0F0F0F0Fu);
                q[8 * k + 4 + i] = iq4_codes((w >> 4) & 0x0F0F0F0Fu);
            }
        }
    }
};

/* ---- tensor-core products ----------------------------------------------------------- */

__device__ __forceinline__ void mma_k32(int *c, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%10, %10, %10, %10};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
}
__device__ __forceinline__ void mma_k16(int *c, u32 a0, u32 a1, u32 b0) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5}, {%6}, "
        "{%7, %7, %7, %7};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(0));
}

/* v (|v| < 2^22) as a float, exactly: v in the mantissa of 1.5 * 2^23 (cheaper than
 * I2F, a quarter-rate conversion). The sums of one MMA are below 32 * 128 * 128. */
__device__ __forceinline__ float small_i2f(int v) {
    return __int_as_float(0x4B400000 + v) - 12582912.0f;
}

/* acc (the C fragment's 4 outputs) += scale * (256 hi + lo); scale per row (g, g+8)
 * times d_x per token (2t, 2t+1) */
__device__ __forceinline__ void scale_add(float *acc, const int *ch, const int *cl, float s0, float s1,
                                          const float4 &dd) {
    acc[0] = __fmaf_rn(s0 * dd.x, __fmaf_rn(256.0f, small_i2f(ch[0]), small_i2f(cl[0])), acc[0]);
    acc[1] = __fmaf_rn(s0 * dd.z, __fmaf_rn(256.0f, small_i2f(ch[1]), small_i2f(cl[1])), acc[1]);
    acc[2] = __fmaf_rn(s1 * dd.x, __fmaf_rn(256.0f, small_i2f(ch[2]), small_i2f(cl[2])), acc[2]);
    acc[3] = __fmaf_rn(s1 * dd.z, __fmaf_rn(256.0f, small_i2f(ch[3]), small_i2f(cl[3])), acc[3]);
}

/* The tile rows row0.. x tokens (tok ? tok[0..nt) : tok0..tok0+nt) of matrix w.
 * Per chunk: decode the raw weights (loaded during the previous chunk) and quantize
 * the activations into shared memory, issue the next chunk's loads, barrier, MMAs,
 * barrier: the loads' latency is hidden behind the MMAs. */
template <int T, int NT>
__device__ __forceinline__ void mmq_tile(const Args &a, const char *__restrict__ w, int64_t row0,
                                         int nt, const int32_t *tok, int64_t tok0, u8 *sm,
                                         int64_t k_beg, int64_t k_end, float *yout) {
    typedef Mq<T> D;
    typedef Tile<NT> S;
    constexpr int NS = D::S16 ? 2 : 1; /* scales per 32 columns */
    constexpr int NJ = NT / 8;         /* MMA column tiles */
    constexpr int XIT = S::XIT, XPF = S::XPF;
    u8 *wsm = sm, *xsm = sm + S::SM_X;
    float *scs = (float *)(sm + S::SM_SC), *mns = (float *)(sm + S::SM_MN);
    float2 *xds = (float2 *)(sm + S::SM_XD);
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;

    float acc[NJ][4];
#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[j][i] = 0.0f;

    /* decoding: thread = row drow (clamped: rows past the end are computed, not
     * stored), 64 columns du */
    const int drow = tid >> 1, du = tid & 1;
    const int64_t wrow = row0 + drow < a.n_rows ? row0 + drow : a.n_rows - 1;
    const u8 *wr = (const u8 *)w + (size_t)wrow * a.row_stride;
    const int ql = lane & 7; /* quantization: lane of 8 per (token, 32 columns) */

    /* activations: pair p = (token n, 32-column block sb), 4 pairs per warp (one token:
     * n = 8 it + warp), XIT per thread; tokens past nt are skipped by whole warps */
    float4 xv[XIT];
    auto load_x = [&](int64_t k0, int it) {
        const int p = it * (THREADS / 8) + (tid >> 3), n = p / NSB, sb = p % NSB;
        xv[it] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (n < nt && k0 + 32 * sb < a.n_cols) {
            const int64_t xrow = tok ? (int64_t)(tok[n] / a.x_div) : tok0 + n;
            xv[it] = __ldg((const float4 *)(a.x + xrow * a.n_cols + k0 + 32 * sb) + ql);
        }
    };
    u32 raw[D::NR];
    auto load_w = [&](int64_t k0) {
        const int nv = (int)(a.n_cols - k0 < KC ? a.n_cols - k0 : KC) - 64 * du;
        if (nv > 0) {
            D::load(wr, k0 + 64 * du, nv, raw);
        } else {
#pragma unroll
            for (int i = 0; i < D::NR; i++) raw[i] = 0;
        }
    };
    if (S::PFW) load_w(k_beg);
#pragma unroll
    for (int it = 0; it < XPF; it++) load_x(k_beg, it);

    for (int64_t k0 = k_beg; k0 < k_end; k0 += KC) {
        const int kc = a.n_cols - k0 < KC ? (int)(a.n_cols - k0) : KC;
        /* 64 tokens: the weights and half the activations in flight together (all:
         * spills) */
        if (!S::PFW) load_w(k0);
#pragma unroll
        for (int it = XPF; it < XPF + (XIT - XPF) / 2; it++) load_x(k0, it);
        {
            u32 q[16];
            float sc[2 * NS], mn[2] = {0.0f, 0.0f};
            /* zero raw words (columns past the end) decode to scale 0 */
            D::dec(raw, k0 + 64 * du, q, sc, mn);
            if (D::SPLIT) {
                u8 *dst = wsm + drow * WST + 16 * du;
#pragma unroll
                for (int s = 0; s < NSB; s++)
                    *(uint4 *)(dst + 32 * s) = make_uint4(q[4 * s], q[4 * s + 1], q[4 * s + 2], q[4 * s + 3]);
            } else {
                u8 *dst = wsm + drow * WST + 64 * du;
#pragma unroll
                for (int k = 0; k < 2; k++) {
                    const u32 *qk = q + 8 * k;
                    *(uint4 *)(dst + 32 * k) = make_uint4(qk[0], qk[4], qk[1], qk[5]);
                    *(uint4 *)(dst + 32 * k + 16) = make_uint4(qk[2], qk[6], qk[3], qk[7]);
                }
            }
#pragma unroll
            for (int i = 0; i < 2 * NS; i++) scs[(2 * NS * du + i) * MT + drow] = sc[i];
            if (D::MIN) {
                mns[(2 * du) * MT + drow] = mn[0];
                mns[(2 * du + 1) * MT + drow] = mn[1];
            }
        }
#pragma unroll
        for (int it = XPF + (XIT - XPF) / 2; it < XIT; it++) load_x(k0, it);
        /* quantize: amax and sum over the 8 lanes of a pair by shuffles. Skipped
         * tokens' shared rows keep stale values, which reach only the MMA columns and
         * outputs of those tokens, never stored. */
#pragma unroll
        for (int it = 0; it < XIT; it++) {
            const int p = it * (THREADS / 8) + (tid >> 3), n = p / NSB, sb = p % NSB;
            if (n >= nt) continue;
            const float4 v = xv[it];
            float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
            float sum = (v.x + v.y) + (v.z + v.w);
#pragma unroll
            for (int o = 1; o < 8; o <<= 1) {
                amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
                sum += __shfl_xor_sync(0xffffffffu, sum, o);
            }
            float d, inv;
            halo_xq::scale(amax, &d, &inv);
            int h0, h1, h2, h3, l0, l1, l2, l3;
            halo_xq::split(halo_xq::quant(v.x, inv), &h0, &l0);
            halo_xq::split(halo_xq::quant(v.y, inv), &h1, &l1);
            halo_xq::split(halo_xq::quant(v.z, inv), &h2, &l2);
            halo_xq::split(halo_xq::quant(v.w, inv), &h3, &l3);
            const u32 hw = (u32)(h0 & 0xff) | (u32)(h1 & 0xff) << 8 | (u32)(h2 & 0xff) << 16 | (u32)h3 << 24;
            const u32 lw = (u32)(l0 & 0xff) | (u32)(l1 & 0xff) << 8 | (u32)(l2 & 0xff) << 16 | (u32)l3 << 24;
            u8 *dst = xsm + n * XST + 64 * sb + 16 * (ql & 3) + 4 * (ql >> 2);
            *(u32 *)dst = hw;
            *(u32 *)(dst + 8) = lw;
            if (ql == 0) xds[sb * NT + n] = make_float2(d, sum);
        }
        /* the next chunk's loads, in flight during this chunk's MMAs */
        if (k0 + KC < k_end) {
            if (S::PFW) load_w(k0 + KC);
#pragma unroll
            for (int it = 0; it < XPF; it++) load_x(k0 + KC, it);
        }
        __syncthreads();

        const int nsb = kc / 32;
#pragma unroll
        for (int s = 0; s < NSB; s++) {
            if (s >= nsb) break;
            const int r = 16 * warp + g;
            const u8 *wa = wsm + r * WST + 32 * s + 8 * t;
            const uint2 a02 = *(const uint2 *)wa, a13 = *(const uint2 *)(wa + 8 * WST);
            float s0[NS], s1[NS];
#pragma unroll
            for (int h = 0; h < NS; h++) {
                s0[h] = scs[(NS * s + h) * MT + r];
                s1[h] = scs[(NS * s + h) * MT + r + 8];
            }
            float m0 = 0.0f, m1 = 0.0f;
            if (D::MIN) {
                m0 = mns[s * MT + r];
                m1 = mns[s * MT + r + 8];
            }
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                if (8 * j >= nt) break;
                const uint4 b = *(const uint4 *)(xsm + (8 * j + g) * XST + 64 * s + 16 * t);
                const float4 dd = *(const float4 *)(xds + s * NT + 8 * j + 2 * t);
                int ch[4], cl[4];
                if (NS == 1) {
                    mma_k32(ch, a02.x, a13.x, a02.y, a13.y, b.x, b.y);
                    mma_k32(cl, a02.x, a13.x, a02.y, a13.y, b.z, b.w);
                    scale_add(acc[j], ch, cl, s0[0], s1[0], dd);
                } else {
                    mma_k16(ch, a02.x, a13.x, b.x);
                    mma_k16(cl, a02.x, a13.x, b.z);
                    scale_add(acc[j], ch, cl, s0[0], s1[0], dd);
                    mma_k16(ch, a02.y, a13.y, b.y);
                    mma_k16(cl, a02.y, a13.y, b.w);
                    scale_add(acc[j], ch, cl, s0[NS - 1], s1[NS - 1], dd);
                }
                if (D::MIN) {
                    acc[j][0] = __fmaf_rn(-m0, dd.y, acc[j][0]);
                    acc[j][1] = __fmaf_rn(-m0, dd.w, acc[j][1]);
                    acc[j][2] = __fmaf_rn(-m1, dd.y, acc[j][2]);
                    acc[j][3] = __fmaf_rn(-m1, dd.w, acc[j][3]);
                }
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int n = 8 * j + 2 * t + (i & 1);
            const int64_t row = row0 + 16 * warp + g + 8 * (i >> 1);
            if (n >= nt || row >= a.n_rows) continue;
            const int64_t yrow = tok ? (int64_t)tok[n] : tok0 + n;
            yout[yrow * a.n_rows + row] = acc[j][i];
        }
}

/* MoE: the assignments of expert e whose rank (in assignment order) is in lo .. lo+NT-1
 * go to list[rank - lo]; returns the expert's number of assignments. Windows of
 * 16 x THREADS ids, all loads in flight at once; ranks from ballots and a scan of the
 * (id slot k, warp) counts, so that every block of the expert sees the same order.
 * wc: shared, 16 * 8 + 1 ints. Starts with a barrier (list and wc may be in use). */
template <int NT>
__device__ int gather(const int32_t *__restrict__ ids, int64_t n, int32_t e, int lo, int32_t *list,
                      int *wc) {
    constexpr int NK = 16, NW = THREADS / 32;
    static_assert(NK * NW == 4 * 32, "the scan: 4 counts per lane of one warp");
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int count = 0;
    for (int64_t base = 0; base < n; base += NK * THREADS) {
        bool m[NK];
#pragma unroll
        for (int k = 0; k < NK; k++) {
            const int64_t i = base + k * THREADS + tid;
            m[k] = i < n && __ldg(ids + i) == e;
        }
        u32 bal[NK];
        int mine = 0;
#pragma unroll
        for (int k = 0; k < NK; k++) {
            bal[k] = __ballot_sync(0xffffffffu, m[k]);
            if (lane == k) mine = __popc(bal[k]);
        }
        __syncthreads(); /* wc, list free */
        if (lane < NK) wc[lane * NW + warp] = mine;
        __syncthreads();
        if (warp == 0) { /* exclusive scan of the NK * NW counts, 4 per lane */
            const int v0 = wc[4 * lane], v1 = wc[4 * lane + 1], v2 = wc[4 * lane + 2], v3 = wc[4 * lane + 3];
            const int s4 = v0 + v1 + v2 + v3;
            int inc = s4;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const int y = __shfl_up_sync(0xffffffffu, inc, o);
                if (lane >= o) inc += y;
            }
            const int ex = inc - s4;
            wc[4 * lane] = ex;
            wc[4 * lane + 1] = ex + v0;
            wc[4 * lane + 2] = ex + v0 + v1;
            wc[4 * lane + 3] = ex + v0 + v1 + v2;
            if (lane == 31) wc[NK * NW] = inc;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < NK; k++) {
            if (!m[k]) continue;
            const int rank = count + wc[k * NW + warp] + __popc(bal[k] & ((1u << lane) - 1u));
            if (rank >= lo && rank < lo + NT) list[rank - lo] = (int32_t)(base + k * THREADS + tid);
        }
        count += wc[NK * NW];
    }
    __syncthreads(); /* list complete */
    return count;
}

/* dense: grid x = row tiles, y = token tiles. id: grid x = n_mat * split (expert
 * x / split takes its token tiles x % split, x % split + split ..), y = row tiles. */
template <int T, int NT>
__global__ void __launch_bounds__(THREADS, 2) mmq_kernel(Args a, int split) {
    halo_pdl::begin();
    extern __shared__ uint4 mmq_smem[];
    u8 *sm = (u8 *)mmq_smem;
    if (!a.ids) {
        const int64_t row0 = (int64_t)blockIdx.x * MT, tok0 = (int64_t)blockIdx.y * NT;
        const int nt = a.n_tok - tok0 < NT ? (int)(a.n_tok - tok0) : NT;
        if (split == 1) {
            mmq_tile<T, NT>(a, a.w, row0, nt, nullptr, tok0, sm, 0, a.n_cols, a.y);
            return;
        }
        /* split K: part z of the chunks into its own slice of the workspace; the
         * tile's last part to finish adds the slices in order (deterministic) */
        const int z = (int)blockIdx.z;
        const int64_t chunks = (a.n_cols + KC - 1) / KC, per = (chunks + split - 1) / split;
        const int64_t kb = z * per * KC, ke = kb + per * KC < a.n_cols ? kb + per * KC : a.n_cols;
        const size_t slice = (size_t)a.n_tok * (size_t)a.n_rows;
        float *parts = a.ws + MMQ_WS_COUNTERS;
        if (kb < ke) mmq_tile<T, NT>(a, a.w, row0, nt, nullptr, tok0, sm, kb, ke, parts + z * slice);
        __shared__ int last;
        __threadfence(); /* this part's slice before its count */
        __syncthreads();
        int *count = (int *)a.ws + blockIdx.y * gridDim.x + blockIdx.x;
        if (threadIdx.x == 0) last = atomicAdd(count, 1) == split - 1;
        __syncthreads();
        if (!last) return;
        __threadfence();
        const int rows = a.n_rows - row0 < MT ? (int)(a.n_rows - row0) : MT;
        for (int e = (int)threadIdx.x; e < rows * nt; e += THREADS) {
            const int64_t off = (tok0 + e / rows) * a.n_rows + row0 + e % rows;
            float v = 0.0f;
            for (int p = 0; p < split; p++) {
                const int64_t kp = p * per * KC;
                if (kp < a.n_cols) v += __ldcg(parts + p * slice + off);
            }
            a.y[off] = v;
        }
        if (threadIdx.x == 0) *count = 0; /* for the next product */
        return;
    }
    __shared__ int32_t list[NT];
    __shared__ int wc[16 * (THREADS / 32) + 1];
    const int32_t e = (int32_t)(blockIdx.x / (unsigned)split);
    const int first = (int)(blockIdx.x % (unsigned)split);
    const int64_t row0 = (int64_t)blockIdx.y * MT;
    const char *w = a.w + (size_t)e * a.mat_stride;
    const int count = gather<NT>(a.ids, a.n_tok, e, first * NT, list, wc);
    for (int ti = first; ti * NT < count; ti += split) {
        if (ti != first) gather<NT>(a.ids, a.n_tok, e, ti * NT, list, wc);
        const int nt = count - ti * NT < NT ? count - ti * NT : NT;
        mmq_tile<T, NT>(a, w, row0, nt, list, 0, sm, 0, a.n_cols, a.y);
    }
}

/* Dense products: the parts K is split into (1: not split). A grid of fewer tiles than
 * two waves on the GPU leaves SMs idle while each block walks all of K (a 512-row
 * shared expert: 4 blocks for 132 SMs); parts of at least MIN_PART_CHUNKS chunks fill
 * them, where the workspace holds a slice per part and a count per tile. */
constexpr int64_t MIN_PART_CHUNKS = 4;
constexpr int MAX_SPLIT = 32;

int sm_count() {
    static int n = 0; /* a race only asks twice */
    if (!n) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && v > 0)
            n = v;
        else
            n = 1;
    }
    return n;
}

int split_k(const Args &a, int64_t tiles, int nt) {
    if (!a.ws || tiles <= 0 || tiles > MMQ_WS_COUNTERS) return 1;
    const int64_t want = 2 * (int64_t)sm_count();
    if (tiles >= want) return 1;
    const int64_t chunks = (a.n_cols + KC - 1) / KC;
    int64_t split = (want + tiles - 1) / tiles;
    if (split > chunks / MIN_PART_CHUNKS) split = chunks / MIN_PART_CHUNKS;
    if (split > MAX_SPLIT) split = MAX_SPLIT;
    const size_t slice = (size_t)a.n_tok * (size_t)a.n_rows * sizeof(float);
    const size_t room = a.ws_bytes > MMQ_WS_COUNTERS * sizeof(float)
                            ? a.ws_bytes - MMQ_WS_COUNTERS * sizeof(float) : 0;
    while (split > 1 && (size_t)split * slice > room) split--;
    (void)nt;
    return split < 1 ? 1 : (int)split;
}

template <int T, int NT> int launch_nt(const Args &a, cudaStream_t st) {
    static bool attr_set = false; /* idempotent: a race only repeats the call */
    if (!attr_set) {
        cudaFuncSetAttribute(mmq_kernel<T, NT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             Tile<NT>::SMEM);
        attr_set = true;
    }
    const unsigned row_tiles = (unsigned)((a.n_rows + MT - 1) / MT);
    int split = 1;
    dim3 grid(row_tiles, (unsigned)((a.n_tok + NT - 1) / NT));
    if (!a.ids) {
        split = split_k(a, (int64_t)grid.x * grid.y, NT);
        grid.z = (unsigned)split;
    }
    if (a.ids) {
        /* enough blocks per expert for its average number of tiles (more: serial) */
        const int64_t avg = (a.n_tok + a.n_mat - 1) / a.n_mat;
        split = (int)((avg + NT - 1) / NT);
        grid = dim3((unsigned)(a.n_mat * split), row_tiles);
    }
    halo_pdl::launch(mmq_kernel<T, NT>, grid, THREADS, Tile<NT>::SMEM, st, a, split);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}

/* The token tile: the tokens of a dense product, the average assignments per expert
 * of an MoE one (a tile decodes its rows' weights once for its tokens: the largest
 * tile that the tokens fill, most of the time) */
template <int T> int launch(const Args &a, cudaStream_t st) {
    /* MoE: the counts scatter around the average; a larger tile than it decodes the
     * weights once where a tight one would twice, at the cost of skipped MMA columns */
    const int64_t per = a.ids ? (a.n_tok + a.n_mat - 1) / a.n_mat : a.n_tok;
    const int64_t lim16 = a.ids ? 12 : 16, lim32 = a.ids ? 40 : 32;
    if (per <= lim16) return launch_nt<T, 16>(a, st);
    if (per <= lim32) return launch_nt<T, 32>(a, st);
    return launch_nt<T, 64>(a, st);
}

} /* namespace */

bool mmq_type(int type) {
    switch (type) {
    case HALO_TYPE_Q4_0:
    case HALO_TYPE_Q8_0:
    case HALO_TYPE_IQ4_NL:
    case HALO_TYPE_Q4_K:
    case HALO_TYPE_Q5_K:
    case HALO_TYPE_Q6_K:
    case HALO_TYPE_IQ4_XS: return true;
    default: return false;
    }
}

bool mmq_enabled() {
    static int on = -1; /* a race only reads the environment twice */
    if (on < 0) {
        const char *v = getenv("HALO_CUDA_MMQ");
        on = !(v && strcmp(v, "0") == 0);
    }
    return on != 0;
}

int mmq_launch(int type, const Args &a, cudaStream_t st) {
    switch (type) {
    case HALO_TYPE_Q4_0: return launch<HALO_TYPE_Q4_0>(a, st);
    case HALO_TYPE_Q8_0: return launch<HALO_TYPE_Q8_0>(a, st);
    case HALO_TYPE_IQ4_NL: return launch<HALO_TYPE_IQ4_NL>(a, st);
    case HALO_TYPE_Q4_K: return launch<HALO_TYPE_Q4_K>(a, st);
    case HALO_TYPE_Q5_K: return launch<HALO_TYPE_Q5_K>(a, st);
    case HALO_TYPE_Q6_K: return launch<HALO_TYPE_Q6_K>(a, st);
    case HALO_TYPE_IQ4_XS: return launch<HALO_TYPE_IQ4_XS>(a, st);
    default: return -1;
    }
}

} /* namespace halo_mm */
