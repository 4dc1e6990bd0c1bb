/*
 * The tests' random numbers, one definition of each generator the kernel tests draw from,
 * so that their inputs (and so the errors they measured and their bounds rest on) stay
 * the same sequences wherever a test runs.
 *
 * - The stream: xorshift64 (Marsaglia's 13, 7, 17) on one state per test program, which
 *   the test seeds (rng_seed) before its first draw. Each of rnd_u32 (the state's high
 *   32 bits), rnd / fill (uniform in [lo, hi), 24 bits), frand (uniform in [-1, 1), 24
 *   bits), urand (in [0, n)) and rnd_open01 (uniform in (0, 1), 53 bits) takes one step
 *   a value, rnd_gauss (a standard normal, Box-Muller) two; rng_next gives the raw state
 *   to a test that reads other bits of it.
 * - lcg_frand: a 64-bit LCG (Knuth's MMIX constants) on a state the caller owns, uniform
 *   in [-1, 1), as the CPU kernel tests draw their inputs.
 */
#ifndef HALO_TEST_RNG_H
#define HALO_TEST_RNG_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

extern uint64_t halo_test_rng_state; /* harness.c; never 0 */

static inline void rng_seed(uint64_t seed) {
    halo_test_rng_state = seed;
}

/* One xorshift64 step; returns the new state. */
static inline uint64_t rng_next(void) {
    uint64_t s = halo_test_rng_state;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return halo_test_rng_state = s;
}

static inline uint32_t rnd_u32(void) {
    return (uint32_t)(rng_next() >> 32);
}
/* uniform in [lo, hi) */
static inline float rnd(float lo, float hi) {
    return lo + (hi - lo) * (float)(rnd_u32() >> 8) / 16777216.0f;
}
static inline void fill(float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++)
        x[i] = rnd(lo, hi);
}
/* uniform in [-1, 1) */
static inline float frand(void) {
    return (float)((rng_next() >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
/* uniform in [0, n), n > 0 */
static inline uint32_t urand(uint32_t n) {
    return (uint32_t)((rng_next() >> 33) % n);
}

/* uniform in (0, 1) */
static inline double rnd_open01(void) {
    return ((rng_next() >> 11) + 0.5) * 0x1p-53;
}
/* a standard normal: the radius's draw first, then the angle's */
static inline double rnd_gauss(void) {
    const double r = sqrt(-2.0 * log(rnd_open01()));
    return r * cos(2.0 * M_PI * rnd_open01());
}

/* uniform in [-1, 1) from the LCG state *s */
static inline float lcg_frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return ((float)(*s >> 40) / (float)(1ull << 24)) * 2.0f - 1.0f;
}

#endif
