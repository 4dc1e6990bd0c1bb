/*
 * e^x without a library call, so that loops of it vectorize (the element-wise
 * ops, the delta rule's decays, SiLU gates).
 */
#ifndef HALO_KERNELS_CPU_EXP_FAST_H
#define HALO_KERNELS_CPU_EXP_FAST_H

#include <stdint.h>

/* x = n ln2 + r, |r| <= ln2/2, e^r by its degree-6 Taylor polynomial (relative
 * error < 2e-7, about 2 ulp), 2^n built in the exponent bits; x is clamped to
 * [-87, 88]. */
static inline float halo_exp_fast(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    /* round to nearest by the 1.5 * 2^23 trick: no libm call, so it vectorizes */
    const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    const float r = x - n * 0.693145752f - n * 1.42860677e-6f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        uint32_t u;
        float f;
    } scale = {.u = (uint32_t)((int32_t)n + 127) << 23};
    return p * scale.f;
}

#endif
