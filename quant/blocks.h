/*
 * blocks — the byte layouts of the GGUF block formats halo decodes.
 *
 * Each struct is one block exactly as it lies in a file (little-endian, no
 * padding): the static asserts tie the sizes to the traits table in quant.c, so
 * a struct that drifts from the on-disk layout fails to compile. Half-precision
 * fields are raw IEEE binary16 bits (uint16_t), converted with halo_fp16_to_fp32.
 *
 * Conventions shared by the 32-wide formats (Q4_0 .. Q5_1, IQ4_NL, MXFP4): byte
 * j of qs holds weight j in its low nibble and weight j+16 in its high nibble.
 * The 256-wide "K" formats are super-blocks whose sub-blocks carry small
 * quantized scales that are multiplied by the super-block's half-precision d.
 *
 * For kernels: in every format with a half-precision scale, each product in the
 * decoder is exact in f32 (an 11-bit significand times a sub-scale of at most 8
 * bits times a code of at most 7 bits stays within 24 bits; e.g. Q6_K's
 * d*sc*q is 11+7+5). So FMA, any order of the multiplies, or integer
 * accumulation of sc*q reproduces the reference bit for bit; only the add or
 * subtract of a min (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) rounds, once. Q8_K's f32 d is
 * the exception: d*q rounds.
 */
#ifndef HALO_QUANT_BLOCKS_H
#define HALO_QUANT_BLOCKS_H

#include <stdint.h>

#define HALO_QK 32   /* weights per block of the simple formats */
#define HALO_QK_K 256 /* weights per super-block of the K and IQ4_XS formats */

/* w = d * (q - 8), q in 0..15 */
typedef struct {
    uint16_t d;
    uint8_t qs[HALO_QK / 2];
} halo_block_q4_0;

/* w = d * q + m, q in 0..15 */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qs[HALO_QK / 2];
} halo_block_q4_1;

/* w = d * (q - 16), q in 0..31; bit 4 of weight j is bit j of qh (little-endian u32) */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[HALO_QK / 2];
} halo_block_q5_0;

/* w = d * q + m, q in 0..31 */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[HALO_QK / 2];
} halo_block_q5_1;

/* w = d * q */
typedef struct {
    uint16_t d;
    int8_t qs[HALO_QK];
} halo_block_q8_0;

/* Q8_0 plus s = d * sum(q): the activation format of integer dot products with
 * the "_1" formats, which need the sum to apply their offset m. */
typedef struct {
    uint16_t d;
    uint16_t s;
    int8_t qs[HALO_QK];
} halo_block_q8_1;

/* 16 sub-blocks of 16. scales[i]: low nibble scale, high nibble min (4 bits each).
 * w = d * sc * q - dmin * m, q in 0..3. qs: 2 bits a weight; byte l of each
 * 32-byte half holds weights l, l+32, l+64, l+96 of that 128-weight half
 * (shift 0, 2, 4, 6), and bytes 16..31 likewise for the second 16 of each group. */
typedef struct {
    uint8_t scales[HALO_QK_K / 16];
    uint8_t qs[HALO_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} halo_block_q2_k;

/* 16 sub-blocks of 16, signed 6-bit scales (stored + 32) packed in 12 bytes:
 * the low nibbles in bytes 0..7 (scale j < 8 low nibble of byte j, j >= 8 high
 * nibble of byte j-8), the two high bits in bytes 8..11 (scale j: bits
 * 2*(j/4)..+1 of byte 8 + j%4). w = d * (sc - 32) * (q - 4), q in 0..7: the low
 * 2 bits in qs as in Q2_K, the third bit in hmask (bit k of hmask[l] for the
 * k-th 32-weight group, l its position). */
typedef struct {
    uint8_t hmask[HALO_QK_K / 8];
    uint8_t qs[HALO_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} halo_block_q3_k;

/* 8 sub-blocks of 32 with 6-bit scale and 6-bit min packed in 12 bytes (see
 * halo_k4_scale_min in quant_k.c). w = d * sc * q - dmin * m, q in 0..15; each 64
 * weights share 32 bytes of qs, the first 32 in low nibbles, the next 32 high. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[HALO_QK_K / 2];
} halo_block_q4_k;

/* Q4_K plus a fifth bit: bit 2k (2k+1) of qh[l] for the low- (high-) nibble weight
 * l of the k-th 64-weight group. q in 0..31. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[HALO_QK_K / 8];
    uint8_t qs[HALO_QK_K / 2];
} halo_block_q5_k;

/* 16 sub-blocks of 16 with int8 scales. w = d * sc * (q - 32), q in 0..63: the
 * low 4 bits in ql, the high 2 in qh. Per 128 weights: 64 bytes of ql (weights
 * l and l+64 in byte l, l+32 and l+96 in byte l+32) and 32 of qh (bits 0-1, 2-3,
 * 4-5, 6-7 of byte l for weights l, l+32, l+64, l+96). */
typedef struct {
    uint8_t ql[HALO_QK_K / 2];
    uint8_t qh[HALO_QK_K / 4];
    int8_t scales[HALO_QK_K / 16];
    uint16_t d;
} halo_block_q6_k;

/* The activation format of K dot products: f32 scale, and the sums of each 16
 * quants so the min terms of Q2_K..Q5_K cost one multiply a sub-block. */
typedef struct {
    float d;
    int8_t qs[HALO_QK_K];
    int16_t bsums[HALO_QK_K / 16];
} halo_block_q8_k;

/* w = d * kvalues_iq4nl[q] (a fixed non-linear 16-entry grid) */
typedef struct {
    uint16_t d;
    uint8_t qs[HALO_QK / 2];
} halo_block_iq4_nl;

/* 8 sub-blocks of 32 on the IQ4_NL grid, each with a 6-bit scale (stored + 32):
 * low 4 bits in scales_l (sub-block i: nibble i%2 of byte i/2), high 2 bits in
 * scales_h (bits 2i..2i+1). w = d * (ls - 32) * kvalues_iq4nl[q]. */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[HALO_QK_K / 64];
    uint8_t qs[HALO_QK_K / 2];
} halo_block_iq4_xs;

/* OCP microscaling FP4: e is an E8M0 power-of-two scale 2^(e-127); each nibble an
 * e2m1 value (sign, 2-bit exponent, 1-bit mantissa: 0, .5, 1, 1.5, 2, 3, 4, 6). */
typedef struct {
    uint8_t e;
    uint8_t qs[HALO_QK / 2];
} halo_block_mxfp4;

_Static_assert(sizeof(halo_block_q4_0) == 18, "q4_0 block size");
_Static_assert(sizeof(halo_block_q4_1) == 20, "q4_1 block size");
_Static_assert(sizeof(halo_block_q5_0) == 22, "q5_0 block size");
_Static_assert(sizeof(halo_block_q5_1) == 24, "q5_1 block size");
_Static_assert(sizeof(halo_block_q8_0) == 34, "q8_0 block size");
_Static_assert(sizeof(halo_block_q8_1) == 36, "q8_1 block size");
_Static_assert(sizeof(halo_block_q2_k) == 84, "q2_K block size");
_Static_assert(sizeof(halo_block_q3_k) == 110, "q3_K block size");
_Static_assert(sizeof(halo_block_q4_k) == 144, "q4_K block size");
_Static_assert(sizeof(halo_block_q5_k) == 176, "q5_K block size");
_Static_assert(sizeof(halo_block_q6_k) == 210, "q6_K block size");
_Static_assert(sizeof(halo_block_q8_k) == 292, "q8_K block size");
_Static_assert(sizeof(halo_block_iq4_nl) == 18, "iq4_nl block size");
_Static_assert(sizeof(halo_block_iq4_xs) == 136, "iq4_xs block size");
_Static_assert(sizeof(halo_block_mxfp4) == 17, "mxfp4 block size");

/* The IQ4_NL/IQ4_XS value grid, shared with kernels. */
extern const int8_t halo_kvalues_iq4nl[16];
/* e2m1 values doubled (so they are integers); pair with halo_e8m0_to_fp32_half. */
extern const int8_t halo_kvalues_mxfp4[16];

/* 2^(e-128): half the E8M0 scale, to pair with the doubled e2m1 table. Exact for
 * every e (e = 0, 1 give subnormals). */
static inline float halo_e8m0_to_fp32_half(uint8_t e) {
    union {
        uint32_t u;
        float f;
    } v;
    v.u = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    return v.f;
}

/* Q4_K/Q5_K: the 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
 * Bytes 0..3 hold scales 0..3, bytes 4..7 mins 0..3 (low 6 bits each); sub-blocks
 * 4..7 keep their low 4 bits in the nibbles of bytes 8..11 and their top 2 bits in
 * the spare top bits of bytes 0..7. */
static inline void halo_k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

#endif /* HALO_QUANT_BLOCKS_H */
