/*
 * The two relative errors the tests measure an output by, against a reference, in double:
 * - max_rel: max |got - ref| / max |ref| (the max norm), for kernels checked element by
 *   element against a bound set from the op's rounding (a NaN in got fails any bound);
 * - rel_rms: sqrt(sum (got - ref)^2 / sum ref^2) (the 2-norm), for whole vectors such as
 *   logits and hidden states, where a few outliers may sit among many exact values.
 */
#ifndef HALO_TEST_COMPARE_H
#define HALO_TEST_COMPARE_H

#include <math.h>
#include <stddef.h>

/* ref all zero: the largest |got - ref| over 1e-30 (any difference fails). */
static inline double max_rel(const float *got, const float *ref, size_t n) {
    double diff = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (!(d <= diff)) diff = d; /* NaN propagates */
        if (fabs((double)ref[i]) > mag) mag = fabs((double)ref[i]);
    }
    return diff / (mag > 0 ? mag : 1e-30);
}

/* ref all zero: the absolute RMS difference sqrt(sum got^2). */
static inline double rel_rms(const float *got, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif
