/*
 * halo_matmul's AVX-512 path (F, BW, VL, DQ; with AVX2, FMA, F16C): 16 float
 * lanes. Compiled with a function-level target so the binary still runs on CPUs
 * without AVX-512; matmul.c calls in only after checking cpuid.
 */
#include "kernels/cpu/simd.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#endif

#define VL 16
typedef __m512 vf;
typedef __m512i vi;
static inline vi vi_from_u8(const uint8_t *p) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}
static inline vi vi_and15(vi v) { return _mm512_and_si512(v, _mm512_set1_epi32(15)); }
static inline vi vi_srl4(vi v) { return _mm512_srli_epi32(v, 4); }
static inline vf vf_from_vi(vi v) { return _mm512_cvtepi32_ps(v); }
static inline vf vf_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline vf vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf vf_set1(float f) { return _mm512_set1_ps(f); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline float vf_hsum(vf v) { return _mm512_reduce_add_ps(v); }
static inline vf vf_from_i8(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
/* lanes: the 16 uint8 of q (part 0), to float */
static inline vf vf_from_u8x(__m128i q, int part) {
    (void)part;
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q));
}
/* (a & m) | b, one vpternlogd */
static inline __m128i or_and(__m128i a, __m128i b, __m128i m) {
    return _mm_ternarylogic_epi32(a, b, m, 0xEC);
}
static inline vf vf_from_f16(const void *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline vf vf_from_bf16(const void *p) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
/* lane i = table[idx[i] & 15] */
#define MM_PERM16 1
static inline vf vf_perm16(vi idx, vf table) { return _mm512_permutexvar_ps(idx, table); }
static inline void vf_transpose(vf r[16]) {
    /* 4x4 transposes inside each 128-bit lane, then of the 128-bit lanes */
    __m512 s[16];
    for (int g = 0; g < 4; g++) {
        const __m512 t0 = _mm512_unpacklo_ps(r[4 * g], r[4 * g + 1]);
        const __m512 t1 = _mm512_unpackhi_ps(r[4 * g], r[4 * g + 1]);
        const __m512 t2 = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
        const __m512 t3 = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
        s[4 * g + 0] = _mm512_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * g + 1] = _mm512_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
        s[4 * g + 2] = _mm512_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * g + 3] = _mm512_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    }
    /* s[4g + c] lane L: rows 4g..4g+3 of column 4L + c */
    for (int c = 0; c < 4; c++) {
        const __m512 u0 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0x44);
        const __m512 u1 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0xEE);
        const __m512 u2 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0x44);
        const __m512 u3 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
}
/* 32 registers: 2 x 12 accumulators, 2 weight vectors, broadcasts */
#define MM_NACC 4 /* accumulators per token in the fused kernels */
#define MM_TN 12
#define MM_MICRO_LIST(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12)
#define MM_NAME(x) x##_avx512

#include "kernels/cpu/simd_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else /* not x86-64: the path does not exist */
bool halo_mm_type_ok_avx512(int type) { return false; }
void halo_mm_rows_avx512(const halo_mm_args *a, int64_t r0, int64_t r1) {}
#endif
