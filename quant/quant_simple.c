/*
 * The plain and 32-wide block formats: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0, Q8_1, IQ4_NL and MXFP4 — scalar reference decoders (bit-exact with the
 * GGUF ecosystem's) and round-to-nearest reference encoders.
 *
 * Decoders evaluate each weight with the same float operations in the same order
 * as the reference (e.g. (q - 8) * d, q * d + m). The products are exact (see
 * blocks.h), so what must not change is where the one rounding add of a min
 * happens: keep it last.
 */
#include "quant_impl.h"

#include <string.h>

const int8_t halo_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                       1,    13,   25,  38,  53,  69,  89,  113};
const float halo_iq4nl_mid[15] = {-115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
                                  7.0f,    19.0f,  31.5f, 45.5f,  61.0f,  79.0f,  101.0f};
const int8_t halo_kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* ---- F32 / F16 / BF16 ---------------------------------------------------- */

void halo_to_float_f32(const void *blocks, float *out, int64_t n) {
    memcpy(out, blocks, (size_t)n * sizeof(float));
}
void halo_from_float_f32(const float *in, void *blocks, int64_t n) {
    memcpy(blocks, in, (size_t)n * sizeof(float));
}

/* Tensor data need not be 2-byte aligned in every caller's buffer: go through memcpy. */
void halo_to_float_f16(const void *blocks, float *out, int64_t n) {
    const uint8_t *p = blocks;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        out[i] = halo_fp16_to_fp32(h);
    }
}
void halo_from_float_f16(const float *in, void *blocks, int64_t n) {
    uint8_t *p = blocks;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = halo_fp32_to_fp16(in[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

void halo_to_float_bf16(const void *blocks, float *out, int64_t n) {
    const uint8_t *p = blocks;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        out[i] = halo_bf16_to_fp32(h);
    }
}
void halo_from_float_bf16(const float *in, void *blocks, int64_t n) {
    uint8_t *p = blocks;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = halo_fp32_to_bf16(in[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

/* ---- helpers for the encoders --------------------------------------------- */

/* The value of largest magnitude (keeping its sign; the first on ties). */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        float a = fabsf(x[j]);
        if (a > amax) {
            amax = a;
            max = x[j];
        }
    }
    return max;
}

static void minmax(const float *x, int n, float *mn, float *mx) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

/* ---- Q4_0 / Q4_1 ------------------------------------------------------------ */

void halo_to_float_q4_0(const void *blocks, float *out, int64_t n) {
    const halo_block_q4_0 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, out += HALO_QK) {
        const float d = halo_fp16_to_fp32(b[i].d);
        for (int j = 0; j < HALO_QK / 2; j++) {
            out[j] = (float)((b[i].qs[j] & 0xF) - 8) * d;
            out[j + 16] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* The extreme value maps to code 0 (-8), which gives the full 16 levels to the
 * side that needs them. */
void halo_from_float_q4_0(const float *in, void *blocks, int64_t n) {
    halo_block_q4_0 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, in += HALO_QK) {
        b[i].d = halo_scale_fp16((double)signed_absmax(in, HALO_QK) / -8.0);
        const double id = halo_inv(halo_fp16_to_fp32(b[i].d));
        for (int j = 0; j < HALO_QK / 2; j++) {
            int q0 = halo_qround(in[j] * id + 8.0, 0, 15);
            int q1 = halo_qround(in[j + 16] * id + 8.0, 0, 15);
            b[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

void halo_to_float_q4_1(const void *blocks, float *out, int64_t n) {
    const halo_block_q4_1 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, out += HALO_QK) {
        const float d = halo_fp16_to_fp32(b[i].d), m = halo_fp16_to_fp32(b[i].m);
        for (int j = 0; j < HALO_QK / 2; j++) {
            out[j] = (float)(b[i].qs[j] & 0xF) * d + m;
            out[j + 16] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

void halo_from_float_q4_1(const float *in, void *blocks, int64_t n) {
    halo_block_q4_1 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, in += HALO_QK) {
        float lo, hi;
        minmax(in, HALO_QK, &lo, &hi);
        b[i].d = halo_scale_fp16(((double)hi - lo) / 15.0);
        b[i].m = halo_scale_fp16(lo);
        const double id = halo_inv(halo_fp16_to_fp32(b[i].d)), m = halo_fp16_to_fp32(b[i].m);
        for (int j = 0; j < HALO_QK / 2; j++) {
            int q0 = halo_qround((in[j] - m) * id, 0, 15);
            int q1 = halo_qround((in[j + 16] - m) * id, 0, 15);
            b[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* ---- Q5_0 / Q5_1 ------------------------------------------------------------ */

static inline uint32_t load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void store_u32le(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void halo_to_float_q5_0(const void *blocks, float *out, int64_t n) {
    const halo_block_q5_0 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, out += HALO_QK) {
        const float d = halo_fp16_to_fp32(b[i].d);
        const uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < HALO_QK / 2; j++) {
            int q0 = (b[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int q1 = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            out[j] = (float)(q0 - 16) * d;
            out[j + 16] = (float)(q1 - 16) * d;
        }
    }
}

void halo_from_float_q5_0(const float *in, void *blocks, int64_t n) {
    halo_block_q5_0 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, in += HALO_QK) {
        b[i].d = halo_scale_fp16((double)signed_absmax(in, HALO_QK) / -16.0);
        const double id = halo_inv(halo_fp16_to_fp32(b[i].d));
        uint32_t qh = 0;
        for (int j = 0; j < HALO_QK / 2; j++) {
            int q0 = halo_qround(in[j] * id + 16.0, 0, 31);
            int q1 = halo_qround(in[j + 16] * id + 16.0, 0, 31);
            b[i].qs[j] = (uint8_t)((q0 & 0xF) | (q1 & 0xF) << 4);
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        store_u32le(b[i].qh, qh);
    }
}

void halo_to_float_q5_1(const void *blocks, float *out, int64_t n) {
    const halo_block_q5_1 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, out += HALO_QK) {
        const float d = halo_fp16_to_fp32(b[i].d), m = halo_fp16_to_fp32(b[i].m);
        const uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < HALO_QK / 2; j++) {
            int q0 = (b[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int q1 = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            out[j] = (float)q0 * d + m;
            out[j + 16] = (float)q1 * d + m;
        }
    }
}

void halo_from_float_q5_1(const float *in, void *blocks, int64_t n) {
    halo_block_q5_1 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, in += HALO_QK) {
        float lo, hi;
        minmax(in, HALO_QK, &lo, &hi);
        b[i].d = halo_scale_fp16(((double)hi - lo) / 31.0);
        b[i].m = halo_scale_fp16(lo);
        const double id = halo_inv(halo_fp16_to_fp32(b[i].d)), m = halo_fp16_to_fp32(b[i].m);
        uint32_t qh = 0;
        for (int j = 0; j < HALO_QK / 2; j++) {
            int q0 = halo_qround((in[j] - m) * id, 0, 31);
            int q1 = halo_qround((in[j + 16] - m) * id, 0, 31);
            b[i].qs[j] = (uint8_t)((q0 & 0xF) | (q1 & 0xF) << 4);
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        store_u32le(b[i].qh, qh);
    }
}

/* ---- Q8_0 / Q8_1 ------------------------------------------------------------ */

void halo_to_float_q8_0(const void *blocks, float *out, int64_t n) {
    const halo_block_q8_0 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, out += HALO_QK) {
        const float d = halo_fp16_to_fp32(b[i].d);
        for (int j = 0; j < HALO_QK; j++) out[j] = (float)b[i].qs[j] * d;
    }
}

/* Symmetric, -127..127: keeping -128 out makes negation exact, which integer dot
 * products rely on. */
static void quantize_q8(const float *in, uint16_t *dh, int8_t *qs) {
    float amax = 0.0f;
    for (int j = 0; j < HALO_QK; j++) amax = fmaxf(amax, fabsf(in[j]));
    *dh = halo_scale_fp16((double)amax / 127.0);
    const double id = halo_inv(halo_fp16_to_fp32(*dh));
    for (int j = 0; j < HALO_QK; j++) qs[j] = (int8_t)halo_qround(in[j] * id, -127, 127);
}

void halo_from_float_q8_0(const float *in, void *blocks, int64_t n) {
    halo_block_q8_0 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, in += HALO_QK) quantize_q8(in, &b[i].d, b[i].qs);
}

void halo_to_float_q8_1(const void *blocks, float *out, int64_t n) {
    const halo_block_q8_1 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, out += HALO_QK) {
        const float d = halo_fp16_to_fp32(b[i].d);
        for (int j = 0; j < HALO_QK; j++) out[j] = (float)b[i].qs[j] * d;
    }
}

void halo_from_float_q8_1(const float *in, void *blocks, int64_t n) {
    halo_block_q8_1 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, in += HALO_QK) {
        quantize_q8(in, &b[i].d, b[i].qs);
        int sum = 0;
        for (int j = 0; j < HALO_QK; j++) sum += b[i].qs[j];
        b[i].s = halo_scale_fp16((double)halo_fp16_to_fp32(b[i].d) * sum);
    }
}

/* ---- IQ4_NL ----------------------------------------------------------------- */

void halo_to_float_iq4_nl(const void *blocks, float *out, int64_t n) {
    const halo_block_iq4_nl *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, out += HALO_QK) {
        const float d = halo_fp16_to_fp32(b[i].d);
        for (int j = 0; j < HALO_QK / 2; j++) {
            out[j] = d * (float)halo_kvalues_iq4nl[b[i].qs[j] & 0xF];
            out[j + 16] = d * (float)halo_kvalues_iq4nl[b[i].qs[j] >> 4];
        }
    }
}

/* Squared error of x against scale d on the grid, with the indices chosen. */
static double iq4_fit(const float *x, int n, double d, uint8_t *q) {
    const double id = halo_inv(d);
    double err = 0.0;
    for (int j = 0; j < n; j++) {
        q[j] = (uint8_t)halo_nearest16(halo_iq4nl_mid, x[j] * id);
        double e = x[j] - d * halo_kvalues_iq4nl[q[j]];
        err += e * e;
    }
    return err;
}

/* The grid is asymmetric (-127..113), so the natural first guess maps the value
 * of largest magnitude to -127; a handful of nearby scales, each followed by one
 * least-squares refit of the scale to the chosen indices, usually does better.
 * With round_fp16 every candidate is judged at the half-precision value the
 * decoder will see. */
double halo_iq4_best_scale(const float *x, int n, uint8_t *q, bool round_fp16) {
    return halo_iq4_best_scale_n(x, n, q, round_fp16, 8);
}

double halo_iq4_best_scale_n(const float *x, int n, uint8_t *q, bool round_fp16, int n_try) {
    const double max = signed_absmax(x, n);
    if (max == 0.0) {
        memset(q, 8, (size_t)n); /* grid value 1 at scale 0: decodes to zero */
        return 0.0;
    }
    uint8_t tq[HALO_QK];
    double best_d = 0.0, best_err = INFINITY;
    for (int t = -n_try; t <= n_try; t++) {
        double d = max / (-127.0 + 4.0 * t);
        for (int pass = 0; pass < 2; pass++) {
            if (round_fp16) d = halo_fp16_to_fp32(halo_scale_fp16(d));
            double err = iq4_fit(x, n, d, tq);
            if (err < best_err || (t == -n_try && pass == 0)) { /* first always: inf/NaN input */
                best_err = err;
                best_d = d;
                memcpy(q, tq, (size_t)n);
            }
            /* least-squares scale for these indices */
            double sxv = 0.0, svv = 0.0;
            for (int j = 0; j < n; j++) {
                double v = halo_kvalues_iq4nl[tq[j]];
                sxv += x[j] * v;
                svv += v * v;
            }
            d = sxv / svv;
        }
    }
    return best_d;
}

static void iq4_nl_encode(const float *in, void *blocks, int64_t n, int n_try) {
    halo_block_iq4_nl *b = blocks;
    uint8_t q[HALO_QK];
    for (int64_t i = 0; i < n / HALO_QK; i++, in += HALO_QK) {
        b[i].d = halo_scale_fp16(halo_iq4_best_scale_n(in, HALO_QK, q, true, n_try));
        for (int j = 0; j < HALO_QK / 2; j++) b[i].qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
    }
}

void halo_from_float_iq4_nl(const float *in, void *blocks, int64_t n) { iq4_nl_encode(in, blocks, n, 8); }

/* The KV cache's: 5 candidate scales instead of 17 (kdoc-moe, rotated K/V rows, all of
 * test.txt: KL divergence 1.89e-3 against 1.91e-3 with 17, 1.95e-3 with 3; the store
 * 3.4x cheaper). */
void halo_from_float_iq4_nl_kv(const float *in, void *blocks, int64_t n) {
    iq4_nl_encode(in, blocks, n, HALO_IQ4_NL_KV_TRY);
}

/* ---- MXFP4 ------------------------------------------------------------------ */

void halo_to_float_mxfp4(const void *blocks, float *out, int64_t n) {
    const halo_block_mxfp4 *b = blocks;
    for (int64_t i = 0; i < n / HALO_QK; i++, out += HALO_QK) {
        const float d = halo_e8m0_to_fp32_half(b[i].e);
        for (int j = 0; j < HALO_QK / 2; j++) {
            out[j] = (float)halo_kvalues_mxfp4[b[i].qs[j] & 0xF] * d;
            out[j + 16] = (float)halo_kvalues_mxfp4[b[i].qs[j] >> 4] * d;
        }
    }
}

/* Nearest e2m1 code to v (in units of the doubled table: magnitudes 0..12). */
static int mxfp4_code(double v) {
    static const int8_t mag[8] = {0, 1, 2, 3, 4, 6, 8, 12};
    double a = fabs(v);
    int k = 0;
    while (k < 7 && a > 0.5 * (mag[k] + mag[k + 1])) k++;
    return k == 0 ? 0 : (v < 0 ? k | 8 : k);
}

static double mxfp4_fit(const float *x, uint8_t e, uint8_t *codes) {
    const double d = halo_e8m0_to_fp32_half(e), id = 1.0 / d;
    double err = 0.0;
    for (int j = 0; j < HALO_QK; j++) {
        codes[j] = (uint8_t)mxfp4_code(x[j] * id);
        double r = x[j] - d * halo_kvalues_mxfp4[codes[j]];
        err += r * r;
    }
    return err;
}

/* The OCP recipe takes the exponent that puts the largest value at 1.5..3 x the
 * top code's binade (clipping the very largest); one exponent more never clips.
 * Keep whichever fits the block better. Above e = 252 the top codes decode to
 * infinity (12 * 2^125 overflows), so saturate there. */
#define MXFP4_MAX_E 252
void halo_from_float_mxfp4(const float *in, void *blocks, int64_t n) {
    halo_block_mxfp4 *b = blocks;
    uint8_t c0[HALO_QK], c1[HALO_QK];
    for (int64_t i = 0; i < n / HALO_QK; i++, in += HALO_QK) {
        float amax = 0.0f;
        for (int j = 0; j < HALO_QK; j++) amax = fmaxf(amax, fabsf(in[j]));
        int e = 0;
        if (amax > 0.0f && isfinite(amax)) {
            int ex;
            frexpf(amax, &ex); /* amax = m * 2^ex, m in [0.5, 1) */
            e = ex - 1 - 2 + 127;
        } else if (amax > 0.0f) {
            e = 254;
        }
        if (e < 0) e = 0;
        if (e > MXFP4_MAX_E) e = MXFP4_MAX_E;
        const int e1 = e < MXFP4_MAX_E ? e + 1 : e;
        double err0 = mxfp4_fit(in, (uint8_t)e, c0), err1 = mxfp4_fit(in, (uint8_t)e1, c1);
        const uint8_t *c = err1 < err0 ? c1 : c0;
        b[i].e = (uint8_t)(err1 < err0 ? e1 : e);
        for (int j = 0; j < HALO_QK / 2; j++) b[i].qs[j] = (uint8_t)(c[j] | c[j + 16] << 4);
    }
}
