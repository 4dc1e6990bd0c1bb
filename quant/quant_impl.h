/*
 * quant_impl — what the traits table (quant.c) needs from the per-format files:
 * the scalar reference decoders and encoders, and small helpers the encoders
 * share. Internal to quant/; everything else goes through quant.h.
 */
#ifndef HALO_QUANT_IMPL_H
#define HALO_QUANT_IMPL_H

#include "blocks.h"
#include "quant.h"

#include <math.h>
#include <stdint.h>

#define HALO_QUANT_FORMAT(name)                                                                    \
    void halo_to_float_##name(const void *blocks, float *out, int64_t n);                          \
    void halo_from_float_##name(const float *in, void *blocks, int64_t n);

HALO_QUANT_FORMAT(f32)
HALO_QUANT_FORMAT(f16)
HALO_QUANT_FORMAT(bf16)
HALO_QUANT_FORMAT(q4_0)
HALO_QUANT_FORMAT(q4_1)
HALO_QUANT_FORMAT(q5_0)
HALO_QUANT_FORMAT(q5_1)
HALO_QUANT_FORMAT(q8_0)
HALO_QUANT_FORMAT(q8_1)
HALO_QUANT_FORMAT(q2_k)
HALO_QUANT_FORMAT(q3_k)
HALO_QUANT_FORMAT(q4_k)
HALO_QUANT_FORMAT(q5_k)
HALO_QUANT_FORMAT(q6_k)
HALO_QUANT_FORMAT(q8_k)
HALO_QUANT_FORMAT(iq4_nl)
HALO_QUANT_FORMAT(iq4_xs)
HALO_QUANT_FORMAT(mxfp4)

#undef HALO_QUANT_FORMAT

/* IQ4_NL with the KV cache's narrower scale search (halo_quant_encode_kv) */
void halo_from_float_iq4_nl_kv(const float *in, void *blocks, int64_t n);

/* Round v to the nearest integer (ties to even) and clamp to [lo, hi]. NaN goes to
 * lo, so a hostile input never turns into an out-of-range code. Encoders do
 * their arithmetic in double so that huge inputs cannot overflow on the way. */
/* The checks every encoder makes (quant/quant.c): the type exists and halo can
 * encode it, n is a whole number of blocks; *t set on success. */
int halo_quant_encode_check(int type, int64_t n, const halo_type_traits **t, halo_error *err);

static inline int halo_qround(double v, int lo, int hi) {
    if (!(v > (double)lo)) return lo;
    if (v >= (double)hi) return hi;
    return (int)lrint(v);
}

/* A half-precision scale for d: finite (clamped to +-65504, NaN to 0), rounded to
 * nearest. Encoders then quantize against the value the decoder will see. */
static inline uint16_t halo_scale_fp16(double d) {
    if (!(d == d)) return 0;
    if (d > 65504.0) d = 65504.0;
    if (d < -65504.0) d = -65504.0;
    return halo_fp32_to_fp16((float)d);
}

/* 1/d, or 0 for d == 0 (every quant then codes zero). */
static inline double halo_inv(double d) { return d != 0.0 ? 1.0 / d : 0.0; }

/* Index of the entry of a sorted 16-entry grid nearest to v (the lower on ties),
 * given the 15 midpoints between neighbours: the number of midpoints below v,
 * found by a branch-free binary search (encoders call this for every weight of
 * every candidate scale, and the branches would mispredict half the time). */
static inline int halo_nearest16(const float *mid, double v) {
    int lo = 0;
    lo += (v > (double)mid[lo + 7]) * 8;
    lo += (v > (double)mid[lo + 3]) * 4;
    lo += (v > (double)mid[lo + 1]) * 2;
    lo += (v > (double)mid[lo]) * 1;
    return lo;
}
/* Midpoints of halo_kvalues_iq4nl, for halo_nearest16. */
extern const float halo_iq4nl_mid[15];

/* IQ4_NL's search for one group of 32: the scale that best fits x to the grid
 * (least squares over a few candidates). Returns the float scale (not rounded
 * to half); q gets the grid indices. Deterministic. */
double halo_iq4_best_scale(const float *x, int n, uint8_t *q, bool round_fp16);
/* The same over the candidates t = -n_try .. n_try (halo_iq4_best_scale: 8). */
double halo_iq4_best_scale_n(const float *x, int n, uint8_t *q, bool round_fp16, int n_try);

#endif /* HALO_QUANT_IMPL_H */
