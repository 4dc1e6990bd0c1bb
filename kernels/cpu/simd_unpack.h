/*
 * simd_unpack — block formats to int8 codes and per-16 scales, with SSE4.1/SSSE3
 * integer operations. Included by the AVX2 and AVX-512 kernel files (inside
 * their target region), never compiled on its own.
 *
 * A chunk of up to 256 weights becomes q[i] (int8) and, for each group g of 16
 * weights, sc[g] and add[g] with weight i = q[i] * sc[i/16] + add[i/16]. Each
 * q * sc is exact in f32 and equals the reference decoder's product (blocks.h),
 * and the reference adds or subtracts its min last, in one rounding; a fused
 * q * sc + add rounds the same exact sum the same way (x - m == x + (-m)), so
 * the decoded weights are bit-exact.
 */
#ifndef HALO_KERNELS_SIMD_UNPACK_H
#define HALO_KERNELS_SIMD_UNPACK_H

#include "quant/blocks.h"
#include "quant/quant.h"

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define UNPACK_CHUNK 256

typedef struct unpacked {
    int8_t q[UNPACK_CHUNK];
    float sc[UNPACK_CHUNK / 16];
    float add[UNPACK_CHUNK / 16];
} unpacked;

/* Unpack n weights (a multiple of the block size, at most UNPACK_CHUNK). */
typedef void (*unpack_fn)(const uint8_t *src, int n, unpacked *u);

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

static inline __m128i ld128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }
static inline void st128(void *p, __m128i v) { _mm_storeu_si128((__m128i *)p, v); }

/* The low and high nibbles of 16 bytes. */
static inline void nibbles(const uint8_t *p, __m128i *lo, __m128i *hi) {
    const __m128i v = ld128(p), m = _mm_set1_epi8(0x0F);
    *lo = _mm_and_si128(v, m);
    *hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
}

/* Byte j = val where bit j of bits (16 bits) is set, else 0. */
static inline __m128i bits_to_bytes(uint32_t bits, int8_t val) {
    __m128i v = _mm_set1_epi16((short)(bits & 0xFFFF));
    v = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    const __m128i m = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
    v = _mm_cmpeq_epi8(_mm_and_si128(v, m), m);
    return _mm_and_si128(v, _mm_set1_epi8(val));
}

static inline uint32_t ld_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline void set_group2(unpacked *u, int g, float sc, float add) {
    u->sc[g] = u->sc[g + 1] = sc;
    u->add[g] = u->add[g + 1] = add;
}

/* out[g] = d * ((s[g] >> shift) & mask) for 16 bytes s (unsigned), or d * s[g]
 * (signed, shift 0 and mask -1): exact products, as the scalar code's. */
static inline void scales16(const uint8_t *s, int shift, int mask, bool is_signed, float d,
                            float *out) {
    const __m128 vd = _mm_set1_ps(d);
    const __m128i m = _mm_set1_epi32(mask);
    for (int k = 0; k < 4; k++) {
        int32_t w;
        memcpy(&w, s + 4 * k, 4);
        const __m128i b = _mm_cvtsi32_si128(w);
        __m128i v = is_signed ? _mm_cvtepi8_epi32(b) : _mm_cvtepu8_epi32(b);
        v = _mm_and_si128(_mm_srl_epi32(v, _mm_cvtsi32_si128(shift)), m);
        _mm_storeu_ps(out + 4 * k, _mm_mul_ps(_mm_cvtepi32_ps(v), vd));
    }
}

/* ---- 32-weight formats -------------------------------------------------------- */

static void unpack_q4_0(const uint8_t *src, int n, unpacked *u) {
    const halo_block_q4_0 *b = (const halo_block_q4_0 *)src;
    const __m128i off = _mm_set1_epi8(8);
    for (int i = 0; i < n / 32; i++) {
        __m128i lo, hi;
        nibbles(b[i].qs, &lo, &hi);
        st128(u->q + 32 * i, _mm_sub_epi8(lo, off));
        st128(u->q + 32 * i + 16, _mm_sub_epi8(hi, off));
        set_group2(u, 2 * i, h2f(b[i].d), 0.0f);
    }
}

static void unpack_q4_1(const uint8_t *src, int n, unpacked *u) {
    const halo_block_q4_1 *b = (const halo_block_q4_1 *)src;
    for (int i = 0; i < n / 32; i++) {
        __m128i lo, hi;
        nibbles(b[i].qs, &lo, &hi);
        st128(u->q + 32 * i, lo);
        st128(u->q + 32 * i + 16, hi);
        set_group2(u, 2 * i, h2f(b[i].d), h2f(b[i].m));
    }
}

static void unpack_q5_0(const uint8_t *src, int n, unpacked *u) {
    const halo_block_q5_0 *b = (const halo_block_q5_0 *)src;
    const __m128i off = _mm_set1_epi8(16);
    for (int i = 0; i < n / 32; i++) {
        __m128i lo, hi;
        nibbles(b[i].qs, &lo, &hi);
        const uint32_t qh = ld_u32(b[i].qh);
        lo = _mm_or_si128(lo, bits_to_bytes(qh, 16));
        hi = _mm_or_si128(hi, bits_to_bytes(qh >> 16, 16));
        st128(u->q + 32 * i, _mm_sub_epi8(lo, off));
        st128(u->q + 32 * i + 16, _mm_sub_epi8(hi, off));
        set_group2(u, 2 * i, h2f(b[i].d), 0.0f);
    }
}

static void unpack_q5_1(const uint8_t *src, int n, unpacked *u) {
    const halo_block_q5_1 *b = (const halo_block_q5_1 *)src;
    for (int i = 0; i < n / 32; i++) {
        __m128i lo, hi;
        nibbles(b[i].qs, &lo, &hi);
        const uint32_t qh = ld_u32(b[i].qh);
        st128(u->q + 32 * i, _mm_or_si128(lo, bits_to_bytes(qh, 16)));
        st128(u->q + 32 * i + 16, _mm_or_si128(hi, bits_to_bytes(qh >> 16, 16)));
        set_group2(u, 2 * i, h2f(b[i].d), h2f(b[i].m));
    }
}

static void unpack_q8_0(const uint8_t *src, int n, unpacked *u) {
    const halo_block_q8_0 *b = (const halo_block_q8_0 *)src;
    for (int i = 0; i < n / 32; i++) {
        st128(u->q + 32 * i, ld128(b[i].qs));
        st128(u->q + 32 * i + 16, ld128(b[i].qs + 16));
        set_group2(u, 2 * i, h2f(b[i].d), 0.0f);
    }
}

static void unpack_iq4_nl(const uint8_t *src, int n, unpacked *u) {
    const halo_block_iq4_nl *b = (const halo_block_iq4_nl *)src;
    const __m128i grid = ld128(halo_kvalues_iq4nl);
    for (int i = 0; i < n / 32; i++) {
        __m128i lo, hi;
        nibbles(b[i].qs, &lo, &hi);
        st128(u->q + 32 * i, _mm_shuffle_epi8(grid, lo));
        st128(u->q + 32 * i + 16, _mm_shuffle_epi8(grid, hi));
        set_group2(u, 2 * i, h2f(b[i].d), 0.0f);
    }
}

static void unpack_mxfp4(const uint8_t *src, int n, unpacked *u) {
    const halo_block_mxfp4 *b = (const halo_block_mxfp4 *)src;
    const __m128i grid = ld128(halo_kvalues_mxfp4);
    for (int i = 0; i < n / 32; i++) {
        __m128i lo, hi;
        nibbles(b[i].qs, &lo, &hi);
        st128(u->q + 32 * i, _mm_shuffle_epi8(grid, lo));
        st128(u->q + 32 * i + 16, _mm_shuffle_epi8(grid, hi));
        set_group2(u, 2 * i, halo_e8m0_to_fp32_half(b[i].e), 0.0f);
    }
}

/* ---- 256-weight formats (n is always 256) ---------------------------------------- */

static void unpack_q2_k(const uint8_t *src, int n, unpacked *u) {
    const halo_block_q2_k *b = (const halo_block_q2_k *)src;
    const float d = h2f(b->d), dmin = h2f(b->dmin);
    const __m128i three = _mm_set1_epi8(3);
    _Pragma("GCC unroll 16")
    for (int g = 0; g < 16; g++) {
        const int half = g / 8, shift = 2 * ((g % 8) / 2), k = g % 2;
        __m128i v = ld128(b->qs + 32 * half + 16 * k);
        v = _mm_and_si128(_mm_srl_epi16(v, _mm_cvtsi32_si128(shift)), three);
        st128(u->q + 16 * g, v);
    }
    scales16(b->scales, 0, 0xF, false, d, u->sc);
    scales16(b->scales, 4, 0xF, false, -dmin, u->add); /* -(dmin * m), exactly */
}

/* The 6-bit scale j (0..15) of a Q3_K block, still biased by 32. */
static inline int q3k_scale(const uint8_t *s, int j) {
    int low = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return low | high << 4;
}

static void unpack_q3_k(const uint8_t *src, int n, unpacked *u) {
    const halo_block_q3_k *b = (const halo_block_q3_k *)src;
    const float d = h2f(b->d);
    const __m128i three = _mm_set1_epi8(3), four = _mm_set1_epi8(4), zero = _mm_setzero_si128();
    _Pragma("GCC unroll 16")
    for (int g = 0; g < 16; g++) {
        const int half = g / 8, s = (g % 8) / 2, k = g % 2;
        __m128i v = ld128(b->qs + 32 * half + 16 * k);
        v = _mm_and_si128(_mm_srl_epi16(v, _mm_cvtsi32_si128(2 * s)), three);
        const __m128i m = _mm_set1_epi8((char)(1 << (4 * half + s)));
        const __m128i h = _mm_cmpeq_epi8(_mm_and_si128(ld128(b->hmask + 16 * k), m), zero);
        st128(u->q + 16 * g, _mm_sub_epi8(v, _mm_and_si128(h, four)));
        u->sc[g] = d * (float)(q3k_scale(b->scales, g) - 32);
        u->add[g] = 0.0f;
    }
}

static void unpack_q4_k(const uint8_t *src, int n, unpacked *u) {
    const halo_block_q4_k *b = (const halo_block_q4_k *)src;
    const float d = h2f(b->d), dmin = h2f(b->dmin);
    _Pragma("GCC unroll 4")
    for (int j = 0; j < 4; j++) {
        for (int p = 0; p < 2; p++) {
            __m128i lo, hi;
            nibbles(b->qs + 32 * j + 16 * p, &lo, &hi);
            st128(u->q + 64 * j + 16 * p, lo);
            st128(u->q + 64 * j + 32 + 16 * p, hi);
        }
        uint8_t sc, m;
        halo_k4_scale_min(2 * j, b->scales, &sc, &m);
        set_group2(u, 4 * j, d * (float)sc, -(dmin * (float)m));
        halo_k4_scale_min(2 * j + 1, b->scales, &sc, &m);
        set_group2(u, 4 * j + 2, d * (float)sc, -(dmin * (float)m));
    }
}

static void unpack_q5_k(const uint8_t *src, int n, unpacked *u) {
    const halo_block_q5_k *b = (const halo_block_q5_k *)src;
    const float d = h2f(b->d), dmin = h2f(b->dmin);
    const __m128i sixteen = _mm_set1_epi8(16);
    _Pragma("GCC unroll 4")
    for (int j = 0; j < 4; j++) {
        const __m128i m1 = _mm_set1_epi8((char)(1 << (2 * j))), m2 = _mm_set1_epi8((char)(2 << (2 * j)));
        for (int p = 0; p < 2; p++) {
            __m128i lo, hi;
            nibbles(b->qs + 32 * j + 16 * p, &lo, &hi);
            const __m128i h = ld128(b->qh + 16 * p);
            lo = _mm_or_si128(lo, _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(h, m1), m1), sixteen));
            hi = _mm_or_si128(hi, _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(h, m2), m2), sixteen));
            st128(u->q + 64 * j + 16 * p, lo);
            st128(u->q + 64 * j + 32 + 16 * p, hi);
        }
        uint8_t sc, m;
        halo_k4_scale_min(2 * j, b->scales, &sc, &m);
        set_group2(u, 4 * j, d * (float)sc, -(dmin * (float)m));
        halo_k4_scale_min(2 * j + 1, b->scales, &sc, &m);
        set_group2(u, 4 * j + 2, d * (float)sc, -(dmin * (float)m));
    }
}

static void unpack_q6_k(const uint8_t *src, int n, unpacked *u) {
    const halo_block_q6_k *b = (const halo_block_q6_k *)src;
    const float d = h2f(b->d);
    const __m128i m4 = _mm_set1_epi8(0x0F), m2 = _mm_set1_epi8(3), off = _mm_set1_epi8(32);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        for (int p = 0; p < 2; p++) {
            const __m128i l0 = ld128(ql + 16 * p), l1 = ld128(ql + 32 + 16 * p);
            const __m128i hb = ld128(qh + 16 * p);
            const __m128i h0 = _mm_slli_epi16(_mm_and_si128(hb, m2), 4);
            const __m128i h1 = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hb, 2), m2), 4);
            const __m128i h2 = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hb, 4), m2), 4);
            const __m128i h3 = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hb, 6), m2), 4);
            int8_t *q = u->q + 128 * h + 16 * p;
            st128(q, _mm_sub_epi8(_mm_or_si128(_mm_and_si128(l0, m4), h0), off));
            st128(q + 32, _mm_sub_epi8(_mm_or_si128(_mm_and_si128(l1, m4), h1), off));
            st128(q + 64, _mm_sub_epi8(_mm_or_si128(_mm_and_si128(_mm_srli_epi16(l0, 4), m4), h2), off));
            st128(q + 96, _mm_sub_epi8(_mm_or_si128(_mm_and_si128(_mm_srli_epi16(l1, 4), m4), h3), off));
        }
    }
    scales16((const uint8_t *)b->scales, 0, -1, true, d, u->sc);
    memset(u->add, 0, sizeof u->add);
}

static void unpack_iq4_xs(const uint8_t *src, int n, unpacked *u) {
    const halo_block_iq4_xs *b = (const halo_block_iq4_xs *)src;
    const float d = h2f(b->d);
    const __m128i grid = ld128(halo_kvalues_iq4nl);
    for (int ib = 0; ib < 8; ib++) {
        __m128i lo, hi;
        nibbles(b->qs + 16 * ib, &lo, &hi);
        st128(u->q + 32 * ib, _mm_shuffle_epi8(grid, lo));
        st128(u->q + 32 * ib + 16, _mm_shuffle_epi8(grid, hi));
        const int ls = ((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | ((b->scales_h >> 2 * ib) & 3) << 4;
        set_group2(u, 2 * ib, d * (float)(ls - 32), 0.0f);
    }
}

static unpack_fn unpacker(int type) {
    switch (type) {
    case HALO_TYPE_Q4_0: return unpack_q4_0;
    case HALO_TYPE_Q4_1: return unpack_q4_1;
    case HALO_TYPE_Q5_0: return unpack_q5_0;
    case HALO_TYPE_Q5_1: return unpack_q5_1;
    case HALO_TYPE_Q8_0: return unpack_q8_0;
    case HALO_TYPE_IQ4_NL: return unpack_iq4_nl;
    case HALO_TYPE_MXFP4: return unpack_mxfp4;
    case HALO_TYPE_Q2_K: return unpack_q2_k;
    case HALO_TYPE_Q3_K: return unpack_q3_k;
    case HALO_TYPE_Q4_K: return unpack_q4_k;
    case HALO_TYPE_Q5_K: return unpack_q5_k;
    case HALO_TYPE_Q6_K: return unpack_q6_k;
    case HALO_TYPE_IQ4_XS: return unpack_iq4_xs;
    default: return NULL;
    }
}

#endif /* HALO_KERNELS_SIMD_UNPACK_H */
