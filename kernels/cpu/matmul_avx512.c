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
static inline vf vf_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline vf vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf vf_set1(float f) { return _mm512_set1_ps(f); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline float vf_hsum(vf v) { return _mm512_reduce_add_ps(v); }
static inline vf vf_from_i8(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
static inline vf vf_from_f16(const void *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline vf vf_from_bf16(const void *p) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
#define MM_MR 4
#define MM_TN 4
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
