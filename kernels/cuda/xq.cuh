/*
 * xq.cuh — the activations of integer products (kernels/cuda/mmv.cu for decode,
 * kernels/cuda/mmq.cu for prefill): f32 activations quantized to int16 per block of
 * 32 columns, one spec for every kernel so that decode and prefill give the same
 * numbers (up to the order of float sums).
 *
 * For block b (columns 32b .. 32b+31 of an activation row):
 *     amax = max |x_c|;  d_b = amax / QMAX;  q_c = rint(x_c * (QMAX / amax))
 *     (amax = 0: d_b = 0, q_c = 0), QMAX = 32639 = 127 * 256 + 127, so |q_c| <= QMAX
 *     and x_c ~ d_b * q_c with |x_c - d_b q_c| <= d_b / 2 (+ f32 rounding of the
 *     scale): a relative error of 1.5e-5 of the block's largest value (int8, the
 *     widely used engine's choice, has 256x that).
 * The weights' integer codes (q4_K nibbles, q6_K 6-bit codes, q8_0 bytes ..) multiply
 * q_c in exact int32 sums over at most one sub-block of the weight format (<= 32
 * columns: |sum| <= 32 * 255 * 32767 < 2^31), which are then scaled in f32 by the
 * weight's scale and d_b. Terms that do not depend on the codes (the mins of
 * Q4_K/Q5_K) use the exact f32 sums of x, not the quantized ones.
 *
 * Prefill kernels split q into signed int8 halves for int8 tensor-core products:
 *     lo = (int8_t)(q & 0xff) (-128..127), hi = (q - lo) / 256 (-128..127: QMAX
 *     keeps hi <= 127), q = 256 hi + lo (split below).
 */
#ifndef HALO_CUDA_XQ_CUH
#define HALO_CUDA_XQ_CUH

#include <stdint.h>

namespace halo_xq {

constexpr int QB = 32;          /* columns per activation block */
constexpr float QMAX = 32639.0f; /* 127 * 256 + 127 */

/* The scale and the multiplier of a block with largest magnitude amax. */
__device__ __forceinline__ void scale(float amax, float *d, float *inv) {
    *d = amax / QMAX;
    *inv = amax > 0.0f ? QMAX / amax : 0.0f;
}

/* q = 256 * hi + lo, both signed bytes */
__device__ __forceinline__ void split(int q, int *hi, int *lo) {
    *lo = (int)(int8_t)(q & 0xff);
    *hi = (q - *lo) >> 8;
}

__device__ __forceinline__ int quant(float x, float inv) { return __float2int_rn(x * inv); }

/* two int16 in one word (little-endian: a low), for dp2a */
__device__ __forceinline__ uint32_t pack2(int a, int b) {
    return (uint32_t)(a & 0xffff) | ((uint32_t)b << 16);
}

/* sum_i (int16 pair of xw)[i] * (byte i (lo) / 2 + i (hi) of w); w's bytes unsigned
 * (u) or signed (s) */
__device__ __forceinline__ int dp2a_lo_u(uint32_t xw, uint32_t w, int c) {
    int d;
    asm("dp2a.lo.s32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(xw), "r"(w), "r"(c));
    return d;
}
__device__ __forceinline__ int dp2a_hi_u(uint32_t xw, uint32_t w, int c) {
    int d;
    asm("dp2a.hi.s32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(xw), "r"(w), "r"(c));
    return d;
}
__device__ __forceinline__ int dp2a_lo_s(uint32_t xw, uint32_t w, int c) {
    int d;
    asm("dp2a.lo.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(xw), "r"(w), "r"(c));
    return d;
}
__device__ __forceinline__ int dp2a_hi_s(uint32_t xw, uint32_t w, int c) {
    int d;
    asm("dp2a.hi.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(xw), "r"(w), "r"(c));
    return d;
}

} /* namespace halo_xq */

#endif /* HALO_CUDA_XQ_CUH */
