/*
 * quant.cuh — device-side decoders of the GGUF block formats (kernels/cuda/matmul.cu).
 *
 * Each format is cut into "slices": a slice is the weights one thread decodes at
 * once, NW (8 or 16) of them, as NW/4 groups of 4 consecutive columns (group g
 * starting at column gcol(s, g) of the block). The grouping follows the byte
 * layout (quant/blocks.h), so that a slice reads a few whole 16- or 32-bit words
 * of its block and a warp's lanes read neighbouring words (coalesced), and so that
 * the activations matching a group are one float4.
 *
 * Values are bit-identical to quant/'s to_float: every weight is computed with the
 * same float operations (the products are exact, see blocks.h, so contracting the
 * one add of a min into an FMA does not change the result). Small integers go to
 * float through the exponent trick (2^23 + v has v in its low mantissa bits), exact
 * and cheaper than I2F.
 *
 * Loads use the alignment each format guarantees given a block-aligned pointer
 * (align below); the launcher checks the pointer and strides against it.
 */
#ifndef HALO_CUDA_QUANT_CUH
#define HALO_CUDA_QUANT_CUH

#include "quant/quant.h"

#include <stdint.h>

namespace halo_q {

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;

/* v (0 <= v < 2^23) minus bias, exactly, without an int-to-float conversion */
__device__ __forceinline__ float ubias(u32 v, float bias) {
    return __int_as_float(0x4B000000u | v) - (8388608.0f + bias);
}

__device__ __forceinline__ u32 ld8(const u8 *p) { return *p; }
__device__ __forceinline__ u32 ld16(const u8 *p) { return *(const u16 *)p; }
__device__ __forceinline__ u32 ld32(const u8 *p) { return *(const u32 *)p; }
/* 4 bytes at a 2-aligned address */
__device__ __forceinline__ u32 ld32a2(const u8 *p) { return ld16(p) | ld16(p + 2) << 16; }
/* 4 bytes at any address */
__device__ __forceinline__ u32 ld32a1(const u8 *p) {
    return ld8(p) | ld8(p + 1) << 8 | ld8(p + 2) << 16 | ld8(p + 3) << 24;
}

/* IEEE half bits to float, bit for bit as halo_fp16_to_fp32 (subnormals exact:
 * the f32 subnormal bits times 2^112 are exact with denormals on; inf/NaN kept). */
__device__ __forceinline__ float h2f(u32 h) {
    const u32 sign = (h & 0x8000u) << 16, em = h & 0x7fffu;
    float v = __int_as_float((int)(em << 13)) * 0x1p112f;
    if (em >= 0x7c00u) v = __int_as_float((int)(0x7f800000u | ((em & 0x3ffu) << 13)));
    return __int_as_float((int)(__float_as_uint(v) | sign));
}
__device__ __forceinline__ float bf2f(u32 h) { return __int_as_float((int)((h & 0xffffu) << 16)); }

/* A 16-entry table of bytes (entry + 128) in 4 words: the entry for index q as float. */
__device__ __forceinline__ float tab16(u32 q, u32 t0, u32 t1, u32 t2, u32 t3) {
    const u32 lo = __byte_perm(t0, t1, q & 7), hi = __byte_perm(t2, t3, q & 7);
    return ubias(((q & 8) ? hi : lo) & 0xffu, 128.0f);
}
/* halo_kvalues_iq4nl + 128 */
__device__ __forceinline__ float iq4nl_val(u32 q) {
    return tab16(q, 0x3F2D1801u, 0x766A5D4Fu, 0xA6998D81u, 0xF1D9C5B5u);
}
/* halo_kvalues_mxfp4 + 128 */
__device__ __forceinline__ float mxfp4_val(u32 q) {
    return tab16(q, 0x83828180u, 0x8C888684u, 0x7D7E7F80u, 0x74787A7Cu);
}
__device__ __forceinline__ float e8m0_half(u32 e) {
    return __int_as_float((int)(e < 2 ? 0x00200000u << e : (e - 1) << 23));
}

/* Q4_K / Q5_K: 6-bit scale and min of sub-block j from the 12 packed bytes, given as
 * 3 little-endian words. */
__device__ __forceinline__ void k4_scale_min(int j, u32 s0, u32 s1, u32 s2, u32 *sc, u32 *m) {
    const int k = 8 * (j & 3); /* branch-free: lanes of a warp hold different j */
    const u32 b0 = (s0 >> k) & 0xff, b1 = (s1 >> k) & 0xff, b2 = (s2 >> k) & 0xff;
    *sc = j < 4 ? b0 & 63 : (b2 & 0xf) | (b0 >> 6) << 4;
    *m = j < 4 ? b1 & 63 : (b2 >> 4) | (b1 >> 6) << 4;
}

template <int T> struct Dec;

/* ---- plain types: a "block" of 8 values; vec = 16-byte aligned rows ---------------- */

template <> struct Dec<HALO_TYPE_F32> {
    static constexpr int QK = 8, BS = 32, SPB = 1, NW = 8, ALIGN = 4;
    __device__ static int gcol(int, int g) { return 4 * g; }
    __device__ static void slice(const u8 *b, int, float *w, bool vec) {
        if (vec) {
            const float4 a = ((const float4 *)b)[0], c = ((const float4 *)b)[1];
            w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w;
            w[4] = c.x, w[5] = c.y, w[6] = c.z, w[7] = c.w;
        } else {
            for (int j = 0; j < 8; j++) w[j] = ((const float *)b)[j];
        }
    }
};

template <> struct Dec<HALO_TYPE_F16> {
    static constexpr int QK = 8, BS = 16, SPB = 1, NW = 8, ALIGN = 2;
    __device__ static int gcol(int, int g) { return 4 * g; }
    __device__ static void slice(const u8 *b, int, float *w, bool vec) {
        u32 v[4];
        if (vec) {
            const uint4 a = *(const uint4 *)b;
            v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
        } else {
            for (int j = 0; j < 4; j++) v[j] = ld32a2(b + 4 * j);
        }
        for (int j = 0; j < 4; j++) {
            w[2 * j] = h2f(v[j] & 0xffff);
            w[2 * j + 1] = h2f(v[j] >> 16);
        }
    }
};

template <> struct Dec<HALO_TYPE_BF16> {
    static constexpr int QK = 8, BS = 16, SPB = 1, NW = 8, ALIGN = 2;
    __device__ static int gcol(int, int g) { return 4 * g; }
    __device__ static void slice(const u8 *b, int, float *w, bool vec) {
        u32 v[4];
        if (vec) {
            const uint4 a = *(const uint4 *)b;
            v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
        } else {
            for (int j = 0; j < 4; j++) v[j] = ld32a2(b + 4 * j);
        }
        for (int j = 0; j < 4; j++) {
            w[2 * j] = __int_as_float((int)(v[j] << 16));
            w[2 * j + 1] = __int_as_float((int)(v[j] & 0xffff0000u));
        }
    }
};

/* ---- 32-wide formats: slice s (0..3) = qs bytes 4s..4s+3, columns 4s.. and 16+4s.. -- */

#define HALO_Q32_COMMON(bs, align)                                                          \
    static constexpr int QK = 32, BS = bs, SPB = 4, NW = 8, ALIGN = align;                   \
    __device__ static int gcol(int s, int g) { return 4 * s + 16 * g; }

template <> struct Dec<HALO_TYPE_Q4_0> {
    HALO_Q32_COMMON(18, 2)
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const float d = h2f(ld16(b));
        const u32 q = ld32a2(b + 2 + 4 * s);
        for (int j = 0; j < 4; j++) {
            w[j] = ubias((q >> (8 * j)) & 0xf, 8.0f) * d;
            w[4 + j] = ubias((q >> (8 * j + 4)) & 0xf, 8.0f) * d;
        }
    }
};

template <> struct Dec<HALO_TYPE_Q4_1> {
    HALO_Q32_COMMON(20, 4)
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const u32 dm = ld32(b);
        const float d = h2f(dm & 0xffff), m = h2f(dm >> 16);
        const u32 q = ld32(b + 4 + 4 * s);
        for (int j = 0; j < 4; j++) {
            w[j] = __fmaf_rn(ubias((q >> (8 * j)) & 0xf, 0.0f), d, m);
            w[4 + j] = __fmaf_rn(ubias((q >> (8 * j + 4)) & 0xf, 0.0f), d, m);
        }
    }
};

template <> struct Dec<HALO_TYPE_Q5_0> {
    HALO_Q32_COMMON(22, 2)
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const float d = h2f(ld16(b));
        const u32 qh = ld32a2(b + 2);
        const u32 q = ld32a2(b + 6 + 4 * s);
        for (int j = 0; j < 4; j++) {
            const u32 q0 = ((q >> (8 * j)) & 0xf) | ((qh >> (4 * s + j)) & 1) << 4;
            const u32 q1 = ((q >> (8 * j + 4)) & 0xf) | ((qh >> (16 + 4 * s + j)) & 1) << 4;
            w[j] = ubias(q0, 16.0f) * d;
            w[4 + j] = ubias(q1, 16.0f) * d;
        }
    }
};

template <> struct Dec<HALO_TYPE_Q5_1> {
    HALO_Q32_COMMON(24, 4)
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const u32 dm = ld32(b);
        const float d = h2f(dm & 0xffff), m = h2f(dm >> 16);
        const u32 qh = ld32(b + 4);
        const u32 q = ld32(b + 8 + 4 * s);
        for (int j = 0; j < 4; j++) {
            const u32 q0 = ((q >> (8 * j)) & 0xf) | ((qh >> (4 * s + j)) & 1) << 4;
            const u32 q1 = ((q >> (8 * j + 4)) & 0xf) | ((qh >> (16 + 4 * s + j)) & 1) << 4;
            w[j] = __fmaf_rn(ubias(q0, 0.0f), d, m);
            w[4 + j] = __fmaf_rn(ubias(q1, 0.0f), d, m);
        }
    }
};

template <> struct Dec<HALO_TYPE_IQ4_NL> {
    HALO_Q32_COMMON(18, 2)
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const float d = h2f(ld16(b));
        const u32 q = ld32a2(b + 2 + 4 * s);
        for (int j = 0; j < 4; j++) {
            w[j] = d * iq4nl_val((q >> (8 * j)) & 0xf);
            w[4 + j] = d * iq4nl_val((q >> (8 * j + 4)) & 0xf);
        }
    }
};

template <> struct Dec<HALO_TYPE_MXFP4> {
    HALO_Q32_COMMON(17, 1)
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const float d = e8m0_half(ld8(b));
        const u32 q = ld32a1(b + 1 + 4 * s);
        for (int j = 0; j < 4; j++) {
            w[j] = mxfp4_val((q >> (8 * j)) & 0xf) * d;
            w[4 + j] = mxfp4_val((q >> (8 * j + 4)) & 0xf) * d;
        }
    }
};
#undef HALO_Q32_COMMON

/* Q8_0 / Q8_1: slice s = 8 consecutive int8 at 8s */
template <> struct Dec<HALO_TYPE_Q8_0> {
    static constexpr int QK = 32, BS = 34, SPB = 4, NW = 8, ALIGN = 2;
    __device__ static int gcol(int s, int g) { return 8 * s + 4 * g; }
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const float d = h2f(ld16(b));
        const u32 q[2] = {ld32a2(b + 2 + 8 * s), ld32a2(b + 6 + 8 * s)};
        for (int j = 0; j < 8; j++)
            w[j] = ubias(((q[j / 4] >> (8 * (j % 4))) & 0xff) ^ 0x80, 128.0f) * d;
    }
};

template <> struct Dec<HALO_TYPE_Q8_1> {
    static constexpr int QK = 32, BS = 36, SPB = 4, NW = 8, ALIGN = 4;
    __device__ static int gcol(int s, int g) { return 8 * s + 4 * g; }
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const float d = h2f(ld16(b));
        const u32 q[2] = {ld32(b + 4 + 8 * s), ld32(b + 8 + 8 * s)};
        for (int j = 0; j < 8; j++)
            w[j] = ubias(((q[j / 4] >> (8 * (j % 4))) & 0xff) ^ 0x80, 128.0f) * d;
    }
};

/* ---- 256-wide formats. Slices s < SPB/2 cover columns 0..127, the rest 128..255. ---- */

/* Q2_K: slice s = qs bytes 4*(s%8).. of half s/8; group g = shift 2g, columns
 * 128h + 32g + b0. */
template <> struct Dec<HALO_TYPE_Q2_K> {
    static constexpr int QK = 256, BS = 84, SPB = 16, NW = 16, ALIGN = 4;
    __device__ static int gcol(int s, int g) { return 128 * (s / 8) + 32 * g + 4 * (s % 8); }
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const int h = s / 8, b0 = 4 * (s % 8), k = b0 >= 16;
        const u32 dd = ld32(b + 80);
        const float d = h2f(dd & 0xffff), dmin = h2f(dd >> 16);
        const u32 sw[2] = {ld32(b + 8 * h), ld32(b + 8 * h + 4)};
        const u32 q = ld32(b + 16 + 32 * h + b0);
        for (int g = 0; g < 4; g++) {
            const int si = 2 * g + k; /* sub-block within the half */
            const u32 sc = (sw[si / 4] >> (8 * (si % 4))) & 0xff;
            const float dl = d * ubias(sc & 0xf, 0.0f), ml = dmin * ubias(sc >> 4, 0.0f);
            for (int j = 0; j < 4; j++)
                w[4 * g + j] = __fmaf_rn(dl, ubias((q >> (8 * j + 2 * g)) & 3, 0.0f), -ml);
        }
    }
};

/* Q3_K: as Q2_K, with the third bit in hmask bit 4h+g of byte b0+j */
template <> struct Dec<HALO_TYPE_Q3_K> {
    static constexpr int QK = 256, BS = 110, SPB = 16, NW = 16, ALIGN = 2;
    __device__ static int gcol(int s, int g) { return 128 * (s / 8) + 32 * g + 4 * (s % 8); }
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const int h = s / 8, b0 = 4 * (s % 8), k = b0 >= 16;
        const float d = h2f(ld16(b + 108));
        const u32 s0 = ld32a2(b + 96), s1 = ld32a2(b + 100), s2 = ld32a2(b + 104);
        const u32 q = ld32a2(b + 32 + 32 * h + b0);
        const u32 hm = ld32a2(b + b0);
        for (int g = 0; g < 4; g++) {
            const int j16 = 8 * h + 2 * g + k; /* scale index 0..15 */
            const u32 lw = (((j16 % 8) < 4 ? s0 : s1) >> (8 * (j16 % 4) + 4 * (j16 / 8))) & 0xf;
            const u32 hi = (s2 >> (8 * (j16 % 4) + 2 * (j16 / 4))) & 3;
            const float dl = d * ubias(lw | hi << 4, 32.0f);
            for (int j = 0; j < 4; j++) {
                const u32 v = ((q >> (8 * j + 2 * g)) & 3) | ((hm >> (8 * j + 4 * h + g)) & 1) << 2;
                w[4 * g + j] = dl * ubias(v, 4.0f);
            }
        }
    }
};

/* Q4_K: slice s = 16 qs bytes (16k.. of the 32 of 64-column group g = s/2, k = s%2):
 * 32 weights, low nibbles at columns 64g + 16k + i (sub-block 2g), high nibbles 32
 * further (sub-block 2g+1). Wide slices spread the scale decoding over 32 weights. */
__device__ __forceinline__ void k4_pair(int g, const uint4 &hd, float *d1, float *m1, float *d2,
                                        float *m2) {
    const float d = h2f(hd.x & 0xffff), dmin = h2f(hd.x >> 16);
    u32 sc, m;
    k4_scale_min(2 * g, hd.y, hd.z, hd.w, &sc, &m);
    *d1 = d * ubias(sc, 0.0f), *m1 = dmin * ubias(m, 0.0f);
    k4_scale_min(2 * g + 1, hd.y, hd.z, hd.w, &sc, &m);
    *d2 = d * ubias(sc, 0.0f), *m2 = dmin * ubias(m, 0.0f);
}

template <> struct Dec<HALO_TYPE_Q4_K> {
    static constexpr int QK = 256, BS = 144, SPB = 8, NW = 32, ALIGN = 16;
    __device__ static int gcol(int s, int g) {
        return 64 * (s / 2) + 16 * (s % 2) + 32 * (g / 4) + 4 * (g % 4);
    }
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const int gg = s / 2;
        const uint4 hd = *(const uint4 *)b;
        const uint4 qv = *(const uint4 *)(b + 16 + 16 * s);
        float d1, m1, d2, m2;
        k4_pair(gg, hd, &d1, &m1, &d2, &m2);
        const u32 q[4] = {qv.x, qv.y, qv.z, qv.w};
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const u32 v = q[i / 4] >> (8 * (i % 4));
            w[i] = __fmaf_rn(d1, ubias(v & 0xf, 0.0f), -m1);
            w[16 + i] = __fmaf_rn(d2, ubias((v >> 4) & 0xf, 0.0f), -m2);
        }
    }
};

template <> struct Dec<HALO_TYPE_Q5_K> {
    static constexpr int QK = 256, BS = 176, SPB = 8, NW = 32, ALIGN = 16;
    __device__ static int gcol(int s, int g) {
        return 64 * (s / 2) + 16 * (s % 2) + 32 * (g / 4) + 4 * (g % 4);
    }
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const int gg = s / 2, k = s % 2;
        const uint4 hd = *(const uint4 *)b;
        const uint4 qv = *(const uint4 *)(b + 48 + 16 * s);
        const uint4 hv = *(const uint4 *)(b + 16 + 16 * k);
        float d1, m1, d2, m2;
        k4_pair(gg, hd, &d1, &m1, &d2, &m2);
        const u32 q[4] = {qv.x, qv.y, qv.z, qv.w}, qh[4] = {hv.x, hv.y, hv.z, hv.w};
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const u32 v = q[i / 4] >> (8 * (i % 4)), h = qh[i / 4] >> (8 * (i % 4) + 2 * gg);
            w[i] = __fmaf_rn(d1, ubias((v & 0xf) | (h & 1) << 4, 0.0f), -m1);
            w[16 + i] = __fmaf_rn(d2, ubias(((v >> 4) & 0xf) | (h & 2) << 3, 0.0f), -m2);
        }
    }
};

/* Q6_K: slice s = positions l0 = 4*(s%8).. of half s/8; group g at column
 * 128h + l0 + 32g. */
template <> struct Dec<HALO_TYPE_Q6_K> {
    static constexpr int QK = 256, BS = 210, SPB = 16, NW = 16, ALIGN = 2;
    __device__ static int gcol(int s, int g) { return 128 * (s / 8) + 32 * g + 4 * (s % 8); }
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const int h = s / 8, l0 = 4 * (s % 8), is = l0 / 16;
        const float d = h2f(ld16(b + 208));
        const u32 qa = ld32a2(b + 64 * h + l0), qb = ld32a2(b + 64 * h + 32 + l0);
        const u32 qh = ld32a2(b + 128 + 32 * h + l0);
        const u32 sw[2] = {ld32a2(b + 192 + 8 * h), ld32a2(b + 196 + 8 * h)};
        for (int g = 0; g < 4; g++) {
            const int si = is + 2 * g;
            const int sc = (int)(int8_t)((sw[si / 4] >> (8 * (si % 4))) & 0xff);
            const float ds = d * (float)sc; /* exact: sc is a small integer */
            const u32 ql = (g & 1) ? qb : qa;
            for (int j = 0; j < 4; j++) {
                const u32 v = ((ql >> (8 * j + 4 * (g >> 1))) & 0xf) | ((qh >> (8 * j + 2 * g)) & 3) << 4;
                w[4 * g + j] = ds * ubias(v, 32.0f);
            }
        }
    }
};

/* Q8_K: f32 scale; slice s = 16 consecutive int8 at 16s */
template <> struct Dec<HALO_TYPE_Q8_K> {
    static constexpr int QK = 256, BS = 292, SPB = 16, NW = 16, ALIGN = 4;
    __device__ static int gcol(int s, int g) { return 16 * s + 4 * g; }
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const float d = *(const float *)b;
        for (int g = 0; g < 4; g++) {
            const u32 q = ld32(b + 4 + 16 * s + 4 * g);
            for (int j = 0; j < 4; j++)
                w[4 * g + j] = d * ubias(((q >> (8 * j)) & 0xff) ^ 0x80, 128.0f);
        }
    }
};

/* IQ4_XS: slice s = sub-block s (32 columns, 16 qs bytes) */
template <> struct Dec<HALO_TYPE_IQ4_XS> {
    static constexpr int QK = 256, BS = 136, SPB = 8, NW = 32, ALIGN = 8;
    __device__ static int gcol(int s, int g) { return 32 * s + 16 * (g / 4) + 4 * (g % 4); }
    __device__ static void slice(const u8 *b, int s, float *w, bool) {
        const uint2 hd = *(const uint2 *)b;
        const float d = h2f(hd.x & 0xffff);
        const u32 ls = ((hd.y >> (4 * s)) & 0xf) | ((hd.x >> (16 + 2 * s)) & 3) << 4;
        const float dl = d * ubias(ls, 32.0f);
        const uint2 qa = *(const uint2 *)(b + 8 + 16 * s), qb = *(const uint2 *)(b + 16 + 16 * s);
        const u32 q[4] = {qa.x, qa.y, qb.x, qb.y};
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const u32 v = q[i / 4] >> (8 * (i % 4));
            w[i] = dl * iq4nl_val(v & 0xf);
            w[16 + i] = dl * iq4nl_val((v >> 4) & 0xf);
        }
    }
};

/* ---- dot products for one token (matmul.cu's gemv1) ----------------------------------
 * Dot<T>: sum w * x over a "unit" of U weights of a block (unit u < UPB), with the
 * block and sub-block scales factored out of the inner sums where the format allows:
 * the quantized integers, as exact floats, times the activations, summed per
 * sub-block, then scaled once (for a min: minus min times the sum of the activations).
 * Equal to the sum over the decoded weights in exact arithmetic; only the f32
 * rounding order differs. xv: the unit's activations, U/4 float4s, float4 g at block
 * column xcol(u, g). prep: sums of the activations (NAUX of them) that several rows
 * share. The generic Dot decodes Dec's slices and sums w * x. */

/* byte j of v (a value < 256) as a float, minus bias; exact */
__device__ __forceinline__ float bytef(u32 v, int j, float bias) {
    return __int_as_float((int)__byte_perm(v, 0x4B000000u, 0x7440u | (u32)j)) - (8388608.0f + bias);
}
__device__ __forceinline__ float f4c(const float4 &v, int j) {
    return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
}

template <int T> struct Dot {
    typedef Dec<T> D;
    static constexpr int QK = D::QK, BS = D::BS, U = D::NW, UPB = D::SPB, NAUX = 1;
    __device__ static int xcol(int u, int g) { return D::gcol(u, g); }
    __device__ static void prep(const float4 *, float *aux) { aux[0] = 0.0f; }
    __device__ static float dot(const u8 *b, int u, const float4 *xv, const float *, bool vec) {
        float w[U];
        D::slice(b, u, w, vec);
        float s = 0.0f;
#pragma unroll
        for (int g = 0; g < U / 4; g++) {
            s = __fmaf_rn(w[4 * g + 0], xv[g].x, s);
            s = __fmaf_rn(w[4 * g + 1], xv[g].y, s);
            s = __fmaf_rn(w[4 * g + 2], xv[g].z, s);
            s = __fmaf_rn(w[4 * g + 3], xv[g].w, s);
        }
        return s;
    }
};

/* Q4_K / Q5_K: unit u = the 64 columns 64u.. (qs bytes 32u..32u+31: low nibbles
 * sub-block 2u at columns 64u + i, high nibbles sub-block 2u+1 at 64u + 32 + i);
 * aux = the sums of the activations of the two sub-blocks. */
__device__ __forceinline__ void k4_prep(const float4 *xv, float *aux) {
    float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
    for (int g = 0; g < 8; g++) {
        s0 += (xv[g].x + xv[g].y) + (xv[g].z + xv[g].w);
        s1 += (xv[8 + g].x + xv[8 + g].y) + (xv[8 + g].z + xv[8 + g].w);
    }
    aux[0] = s0, aux[1] = s1;
}
/* d * (sc1 * s1 + sc2 * s2) - dmin * (m1 * X1 + m2 * X2) for sub-blocks j, j+1 */
__device__ __forceinline__ float k4_combine(int j, const uint4 &hd, float s1, float s2,
                                            const float *aux) {
    const float d = h2f(hd.x & 0xffff), dmin = h2f(hd.x >> 16);
    u32 sc1, m1, sc2, m2;
    k4_scale_min(j, hd.y, hd.z, hd.w, &sc1, &m1);
    k4_scale_min(j + 1, hd.y, hd.z, hd.w, &sc2, &m2);
    const float sq = __fmaf_rn(ubias(sc1, 0.0f), s1, ubias(sc2, 0.0f) * s2);
    const float sm = __fmaf_rn(ubias(m1, 0.0f), aux[0], ubias(m2, 0.0f) * aux[1]);
    return __fmaf_rn(d, sq, -(dmin * sm));
}

template <> struct Dot<HALO_TYPE_Q4_K> {
    static constexpr int QK = 256, BS = 144, U = 64, UPB = 4, NAUX = 2;
    __device__ static int xcol(int u, int g) { return 64 * u + 4 * g; }
    __device__ static void prep(const float4 *xv, float *aux) { k4_prep(xv, aux); }
    __device__ static float dot(const u8 *b, int u, const float4 *xv, const float *aux, bool) {
        const uint4 hd = *(const uint4 *)b;
        const uint4 qa = *(const uint4 *)(b + 16 + 32 * u), qb = *(const uint4 *)(b + 32 + 32 * u);
        const u32 q[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
        float s1[2] = {0.0f, 0.0f}, s2[2] = {0.0f, 0.0f};
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const u32 lo = q[k] & 0x0F0F0F0Fu, hi = (q[k] >> 4) & 0x0F0F0F0Fu;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                s1[k & 1] = __fmaf_rn(bytef(lo, j, 0.0f), f4c(xv[k], j), s1[k & 1]);
                s2[k & 1] = __fmaf_rn(bytef(hi, j, 0.0f), f4c(xv[8 + k], j), s2[k & 1]);
            }
        }
        return k4_combine(2 * u, hd, s1[0] + s1[1], s2[0] + s2[1], aux);
    }
};

/* Q5_K: as Q4_K, the fifth bits in qh byte i: bit 2u (low nibble), 2u+1 (high) */
template <> struct Dot<HALO_TYPE_Q5_K> {
    static constexpr int QK = 256, BS = 176, U = 64, UPB = 4, NAUX = 2;
    __device__ static int xcol(int u, int g) { return 64 * u + 4 * g; }
    __device__ static void prep(const float4 *xv, float *aux) { k4_prep(xv, aux); }
    __device__ static float dot(const u8 *b, int u, const float4 *xv, const float *aux, bool) {
        const uint4 hd = *(const uint4 *)b;
        const uint4 qa = *(const uint4 *)(b + 48 + 32 * u), qb = *(const uint4 *)(b + 64 + 32 * u);
        const uint4 ha = *(const uint4 *)(b + 16), hb = *(const uint4 *)(b + 32);
        const u32 q[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
        const u32 qh[8] = {ha.x, ha.y, ha.z, ha.w, hb.x, hb.y, hb.z, hb.w};
        float s1[2] = {0.0f, 0.0f}, s2[2] = {0.0f, 0.0f};
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const u32 h = qh[k] >> (2 * u); /* bit 0 of each byte: low nibble's, bit 1: high */
            const u32 lo = (q[k] & 0x0F0F0F0Fu) | ((h << 4) & 0x10101010u);
            const u32 hi = ((q[k] >> 4) & 0x0F0F0F0Fu) | ((h << 3) & 0x10101010u);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                s1[k & 1] = __fmaf_rn(bytef(lo, j, 0.0f), f4c(xv[k], j), s1[k & 1]);
                s2[k & 1] = __fmaf_rn(bytef(hi, j, 0.0f), f4c(xv[8 + k], j), s2[k & 1]);
            }
        }
        return k4_combine(2 * u, hd, s1[0] + s1[1], s2[0] + s2[1], aux);
    }
};

/* Q6_K: unit = Dec's slice (4 groups of 4 weights, each group its own scale) */
template <> struct Dot<HALO_TYPE_Q6_K> {
    typedef Dec<HALO_TYPE_Q6_K> D;
    static constexpr int QK = 256, BS = 210, U = 16, UPB = 16, NAUX = 1;
    __device__ static int xcol(int u, int g) { return D::gcol(u, g); }
    __device__ static void prep(const float4 *, float *aux) { aux[0] = 0.0f; }
    __device__ static float dot(const u8 *b, int s, const float4 *xv, const float *, bool) {
        const int h = s / 8, l0 = 4 * (s % 8), is = l0 / 16;
        const float d = h2f(ld16(b + 208));
        const u32 qa = ld32a2(b + 64 * h + l0), qb = ld32a2(b + 64 * h + 32 + l0);
        const u32 qh = ld32a2(b + 128 + 32 * h + l0);
        const u32 sw0 = ld32a2(b + 192 + 8 * h), sw1 = ld32a2(b + 196 + 8 * h);
        float acc = 0.0f;
#pragma unroll
        for (int g = 0; g < 4; g++) {
            const u32 ql = (g & 1) ? qb : qa;
            const u32 v = ((ql >> (4 * (g >> 1))) & 0x0F0F0F0Fu) | (((qh >> (2 * g)) & 0x03030303u) << 4);
            float sg = bytef(v, 0, 32.0f) * xv[g].x;
            sg = __fmaf_rn(bytef(v, 1, 32.0f), xv[g].y, sg);
            sg = __fmaf_rn(bytef(v, 2, 32.0f), xv[g].z, sg);
            sg = __fmaf_rn(bytef(v, 3, 32.0f), xv[g].w, sg);
            /* scale index is + 2g: word g / 2, byte is + 2 (g % 2) */
            const u32 scb = (((g < 2 ? sw0 : sw1) >> (8 * is + 16 * (g & 1))) & 0xffu) ^ 0x80u;
            acc = __fmaf_rn(ubias(scb, 128.0f), sg, acc);
        }
        return d * acc;
    }
};

/* Q8_0: unit = Dec's slice (8 consecutive int8) */
template <> struct Dot<HALO_TYPE_Q8_0> {
    static constexpr int QK = 32, BS = 34, U = 8, UPB = 4, NAUX = 1;
    __device__ static int xcol(int s, int g) { return 8 * s + 4 * g; }
    __device__ static void prep(const float4 *, float *aux) { aux[0] = 0.0f; }
    __device__ static float dot(const u8 *b, int s, const float4 *xv, const float *, bool) {
        const float d = h2f(ld16(b));
        const u32 q0 = ld32a2(b + 2 + 8 * s) ^ 0x80808080u, q1 = ld32a2(b + 6 + 8 * s) ^ 0x80808080u;
        float a0 = bytef(q0, 0, 128.0f) * xv[0].x, a1 = bytef(q1, 0, 128.0f) * xv[1].x;
        a0 = __fmaf_rn(bytef(q0, 1, 128.0f), xv[0].y, a0);
        a1 = __fmaf_rn(bytef(q1, 1, 128.0f), xv[1].y, a1);
        a0 = __fmaf_rn(bytef(q0, 2, 128.0f), xv[0].z, a0);
        a1 = __fmaf_rn(bytef(q1, 2, 128.0f), xv[1].z, a1);
        a0 = __fmaf_rn(bytef(q0, 3, 128.0f), xv[0].w, a0);
        a1 = __fmaf_rn(bytef(q1, 3, 128.0f), xv[1].w, a1);
        return d * (a0 + a1);
    }
};

} /* namespace halo_q */

/* X(type) for every type with a device decoder */
#define HALO_CUDA_FOR_TYPES(X)                                                               \
    X(HALO_TYPE_F32) X(HALO_TYPE_F16) X(HALO_TYPE_BF16) X(HALO_TYPE_Q4_0) X(HALO_TYPE_Q4_1)  \
    X(HALO_TYPE_Q5_0) X(HALO_TYPE_Q5_1) X(HALO_TYPE_Q8_0) X(HALO_TYPE_Q8_1) X(HALO_TYPE_Q2_K) \
    X(HALO_TYPE_Q3_K) X(HALO_TYPE_Q4_K) X(HALO_TYPE_Q5_K) X(HALO_TYPE_Q6_K) X(HALO_TYPE_Q8_K) \
    X(HALO_TYPE_IQ4_NL) X(HALO_TYPE_IQ4_XS) X(HALO_TYPE_MXFP4)

#endif /* HALO_CUDA_QUANT_CUH */
