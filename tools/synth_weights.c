/*
 * synth_weights — the values of a synthesized tensor, row by row.
 *
 * Each row has its own random stream, keyed by (seed, tensor index, row): any row can be
 * generated alone, by any thread, in any order, and the file is the same for every thread
 * count and chunk size. The stream is splitmix64 (one multiply-xorshift per 64 bits); a
 * normal value is the sum of four 16-bit uniforms (Irwin-Hall), which is bell-shaped,
 * bounded at 3.46 sigma (no outlier ever blows up a quantization block's scale) and about
 * ten times cheaper than Box-Muller. Speed matters: a 122B model is 1.2e11 values.
 */
#include "synth.h"

#include <math.h>

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

typedef struct rng {
    uint64_t state;
} rng;

static inline uint64_t rng_next(rng *r) {
    r->state += UINT64_C(0x9e3779b97f4a7c15);
    return mix64(r->state);
}

/* Standard normal approximation: (sum of 4 uniforms on [0, 65535]) centred and scaled to
 * unit variance. Each uniform has variance (65536^2 - 1) / 12. */
static inline float rng_normal(rng *r) {
    uint64_t x = rng_next(r);
    uint32_t s = (uint32_t)(x & 0xffff) + (uint32_t)((x >> 16) & 0xffff) +
                 (uint32_t)((x >> 32) & 0xffff) + (uint32_t)(x >> 48);
    return ((float)s - 131070.0f) * (1.0f / 37837.23f);
}

static inline double rng_uniform(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* Llama 3.1's rope scaling ("rope_type": "llama3": factor 8, low_freq_factor 1,
 * high_freq_factor 4, original context 8192): the converter stores, per frequency pair,
 * the factor by which llama.cpp divides that frequency. */
static float llama3_rope_factor(const synth_model *m, int64_t i) {
    const double factor = 8.0, low = 1.0, high = 4.0, old_ctx = 8192.0;
    double freq = pow(m->rope_theta, -2.0 * (double)i / (double)m->head_dim);
    double wavelen = 2.0 * M_PI / freq;
    if (wavelen < old_ctx / high) return 1.0f;
    if (wavelen > old_ctx / low) return (float)factor;
    double smooth = (old_ctx / wavelen - low) / (high - low);
    return (float)(1.0 / ((1.0 - smooth) / factor + smooth));
}

void synth_fill_rows(const synth_model *m, const synth_tensor *t, size_t tensor_index,
                     uint64_t seed, int64_t row0, int64_t n_rows, float *out) {
    const int64_t n = t->ne[0];
    for (int64_t r = 0; r < n_rows; r++) {
        float *o = out + r * n;
        rng g = {mix64(seed ^ mix64(((uint64_t)tensor_index << 40) ^ (uint64_t)(row0 + r)))};
        switch (t->init) {
        case SYNTH_INIT_NORMAL:
            for (int64_t i = 0; i < n; i++) o[i] = t->scale * rng_normal(&g);
            break;
        case SYNTH_INIT_NORM:
        case SYNTH_INIT_DT_BIAS:
            for (int64_t i = 0; i < n; i++) o[i] = 1.0f + t->scale * rng_normal(&g);
            break;
        case SYNTH_INIT_SSM_A:
            /* GGUF stores A = -exp(A_log); the reference initializes exp(A_log) uniform in
             * (0, 16). Starting at 1 keeps every head forgetting (decay exp(-A softplus(.)) < 1
             * clearly), so the recurrent state stays bounded. */
            for (int64_t i = 0; i < n; i++) o[i] = -(float)(1.0 + 15.0 * rng_uniform(&g));
            break;
        case SYNTH_INIT_ROPE_FREQS:
            for (int64_t i = 0; i < n; i++) o[i] = llama3_rope_factor(m, i);
            break;
        }
    }
}
