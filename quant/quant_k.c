/*
 * The 256-wide super-block formats: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K and IQ4_XS
 * — scalar reference decoders (bit-exact with the GGUF ecosystem's) and plain
 * round-to-nearest reference encoders.
 *
 * The encoders are deliberately simple: each sub-block's scale (and min) comes
 * from its data range, refined by a few rounds of least squares to the rounded
 * codes; the sub-block scales are then quantized against one half-precision
 * super-block scale, and the weights rounded against the scales exactly as the
 * decoder will reconstruct them. No importance weights and no search: on real
 * weights (the fixture model) they land within ~4% of llama-quantize's error for
 * Q4_K/Q5_K/Q6_K and below it for Q2_K/Q3_K (tests/quant/test_decode_fixtures.c).
 *
 * As in quant_simple.c, the decoders keep the reference's float operation order.
 */
#include "quant_impl.h"

#include <string.h>

#define QK_K HALO_QK_K

/* ---- shared encoder pieces --------------------------------------------------- */

/* Quantize sz values against the decoder's float scale dl and min ml (w = dl*q - ml);
 * returns the squared error of the reconstruction. */
static double affine_fit(const float *x, int sz, int qmax, float dl, float ml, uint8_t *q) {
    const double idl = halo_inv(dl);
    double err = 0.0;
    for (int j = 0; j < sz; j++) {
        q[j] = (uint8_t)halo_qround(((double)x[j] + ml) * idl, 0, qmax);
        const double e = (double)(dl * (float)q[j] - ml) - x[j];
        err += e * e;
    }
    return err;
}

/* Range-based scale and min of one sub-block, improved by a few rounds of
 * least squares: quantize, fit w = a*q - b to those codes (b >= 0), keep the fit
 * while the error drops. Plain, deterministic, and most of what a search buys. */
static void affine_refine(const float *x, int sz, int qmax, double *sc, double *mn) {
    double a = *sc, b = *mn, best = INFINITY;
    uint8_t q[32];
    for (int it = 0; it < 4 && a > 0.0; it++) {
        const double ia = 1.0 / a;
        double err = 0.0, sq = 0.0, sqq = 0.0, sx = 0.0, sqx = 0.0;
        for (int j = 0; j < sz; j++) {
            q[j] = (uint8_t)halo_qround((x[j] + b) * ia, 0, qmax);
            const double e = a * q[j] - b - x[j];
            err += e * e;
            sq += q[j];
            sqq += (double)q[j] * q[j];
            sx += x[j];
            sqx += q[j] * (double)x[j];
        }
        if (!(err < best)) break;
        best = err;
        *sc = a;
        *mn = b;
        const double det = sqq * sz - sq * sq;
        if (!(det > 0.0)) break;
        a = (sz * sqx - sq * sx) / det;
        b = (sq * sqx - sqq * sx) / det;
        if (b < 0.0) {
            b = 0.0;
            a = sqx / sqq;
        }
    }
}

/* Affine sub-blocks (Q2_K, Q4_K, Q5_K): w = d*ls * q - dmin*lm, q in 0..qmax,
 * ls and lm in 0..lmax. The min is clamped to <= 0 so lm is never negative, as
 * the format requires. Writes d, dmin, ls[nsub], lm[nsub] and q[nsub*sz]. */
static void kquant_affine(const float *x, int nsub, int sz, int qmax, int lmax, uint16_t *dh,
                          uint16_t *dminh, uint8_t *ls, uint8_t *lm, uint8_t *q) {
    double sc[16], mn[16], max_sc = 0.0, max_mn = 0.0;
    for (int s = 0; s < nsub; s++) {
        const float *xs = x + s * sz;
        double lo = 0.0, hi = xs[0];
        for (int j = 0; j < sz; j++) {
            if (xs[j] < lo) lo = xs[j];
            if (xs[j] > hi) hi = xs[j];
        }
        if (!(hi > lo)) hi = lo; /* NaN-proof; all-zero sub-blocks get scale 0 */
        sc[s] = (hi - lo) / qmax;
        mn[s] = -lo;
        affine_refine(xs, sz, qmax, &sc[s], &mn[s]);
        if (sc[s] > max_sc) max_sc = sc[s];
        if (mn[s] > max_mn) max_mn = mn[s];
    }
    *dh = halo_scale_fp16(max_sc / lmax);
    *dminh = halo_scale_fp16(max_mn / lmax);
    const double d = halo_fp16_to_fp32(*dh), dmin = halo_fp16_to_fp32(*dminh);
    const double id = halo_inv(d), idmin = halo_inv(dmin);
    for (int s = 0; s < nsub; s++) {
        const float *xs = x + s * sz;
        uint8_t *qs = q + s * sz;
        ls[s] = (uint8_t)halo_qround(sc[s] * id, 0, lmax);
        lm[s] = (uint8_t)halo_qround(mn[s] * idmin, 0, lmax);
        double err = affine_fit(xs, sz, qmax, (float)d * ls[s], (float)dmin * lm[s], qs);
        /* When the half-precision super-block scales are coarse next to this
         * sub-block (tiny data, or a sub-block far smaller than its neighbours),
         * the rounded scale can vanish while the min does not, and the sub-block
         * would decode worse than zeros. Fall back to the best constant (its
         * mean, as far as the min can express it) or to zero. */
        if (err > 0.0) {
            double mean = 0.0, zero_err = 0.0;
            for (int j = 0; j < sz; j++) {
                mean += xs[j];
                zero_err += (double)xs[j] * xs[j];
            }
            const uint8_t lm_mean = (uint8_t)halo_qround(-mean / sz * idmin, 0, lmax);
            uint8_t tq[32];
            double mean_err = affine_fit(xs, sz, qmax, 0.0f, (float)dmin * lm_mean, tq);
            if (mean_err < err && mean_err <= zero_err) {
                ls[s] = 0;
                lm[s] = lm_mean;
                memset(qs, 0, (size_t)sz);
            } else if (zero_err < err) {
                ls[s] = 0;
                lm[s] = 0;
                memset(qs, 0, (size_t)sz);
            }
        }
    }
}

/* The symmetric counterpart: from max/-qneg, refit the scale by least squares to
 * the codes while the error drops. */
static double symmetric_refine(const float *x, int sz, int qneg, double sc) {
    double a = sc, best = INFINITY, best_a = sc;
    for (int it = 0; it < 4 && a != 0.0; it++) {
        const double ia = 1.0 / a;
        double err = 0.0, sqq = 0.0, sqx = 0.0;
        for (int j = 0; j < sz; j++) {
            const int q = halo_qround(x[j] * ia, -qneg, qneg - 1);
            const double e = a * q - x[j];
            err += e * e;
            sqq += (double)q * q;
            sqx += q * (double)x[j];
        }
        if (!(err < best)) break;
        best = err;
        best_a = a;
        if (!(sqq > 0.0)) break;
        a = sqx / sqq;
    }
    return best_a;
}

/* Symmetric sub-blocks (Q3_K, Q6_K): w = d*l * q, q in -qneg..qneg-1, l in
 * -lneg..lneg-1. As in Q4_0 the extreme value of each sub-block maps to -qneg,
 * and the extreme sub-block scale to -lneg. Writes l[nsub] and q[nsub*sz]. */
static void kquant_symmetric(const float *x, int nsub, int sz, int qneg, int lneg, uint16_t *dh,
                             int8_t *l, int8_t *q) {
    double sc[16], max_sc = 0.0;
    for (int s = 0; s < nsub; s++) {
        double amax = 0.0, max = 0.0;
        for (int j = 0; j < sz; j++) {
            double v = x[s * sz + j];
            if (fabs(v) > amax) {
                amax = fabs(v);
                max = v;
            }
        }
        sc[s] = symmetric_refine(x + s * sz, sz, qneg, max / -qneg);
        if (fabs(sc[s]) > fabs(max_sc)) max_sc = sc[s];
    }
    *dh = halo_scale_fp16(max_sc / -lneg);
    const double d = halo_fp16_to_fp32(*dh), id = halo_inv(d);
    for (int s = 0; s < nsub; s++) {
        l[s] = (int8_t)halo_qround(sc[s] * id, -lneg, lneg - 1);
        const float dl = (float)d * l[s];
        const double idl = halo_inv(dl);
        for (int j = 0; j < sz; j++)
            q[s * sz + j] = (int8_t)halo_qround(x[s * sz + j] * idl, -qneg, qneg - 1);
    }
}

/* Q4_K/Q5_K: pack eight 6-bit scales and mins into 12 bytes (see halo_k4_scale_min). */
static void pack_k4_scales(const uint8_t *ls, const uint8_t *lm, uint8_t *out) {
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)(ls[j] | (ls[j + 4] >> 4) << 6);
        out[j + 4] = (uint8_t)(lm[j] | (lm[j + 4] >> 4) << 6);
        out[j + 8] = (uint8_t)((ls[j + 4] & 0xF) | (lm[j + 4] & 0xF) << 4);
    }
}

/* Q2_K/Q3_K: the 2-bit field of weight i (0..255) lives in byte (i/128)*32 + i%32,
 * at bit 2*((i%128)/32). */
static void pack_2bit(const uint8_t *v, uint8_t *qs) {
    memset(qs, 0, QK_K / 4);
    for (int i = 0; i < QK_K; i++)
        qs[(i / 128) * 32 + i % 32] |= (uint8_t)((v[i] & 3) << (2 * ((i % 128) / 32)));
}

/* ---- Q2_K -------------------------------------------------------------------- */

void halo_to_float_q2_k(const void *blocks, float *out, int64_t n) {
    const halo_block_q2_k *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = halo_fp16_to_fp32(b[i].d), dmin = halo_fp16_to_fp32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int k = 0; k < 2; k++) {
                    const uint8_t sc = b[i].scales[is++];
                    const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++)
                        *out++ = dl * (float)((q[16 * k + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

void halo_from_float_q2_k(const float *in, void *blocks, int64_t n) {
    halo_block_q2_k *b = blocks;
    uint8_t ls[16], lm[16], q[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, in += QK_K) {
        kquant_affine(in, 16, 16, 3, 15, &b[i].d, &b[i].dmin, ls, lm, q);
        for (int s = 0; s < 16; s++) b[i].scales[s] = (uint8_t)(ls[s] | lm[s] << 4);
        pack_2bit(q, b[i].qs);
    }
}

/* ---- Q3_K -------------------------------------------------------------------- */

/* The 6-bit scale j (0..15) of a Q3_K block, still biased by 32. */
static inline int q3k_scale(const uint8_t *s, int j) {
    int low = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return low | high << 4;
}

void halo_to_float_q3_k(const void *blocks, float *out, int64_t n) {
    const halo_block_q3_k *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = halo_fp16_to_fp32(b[i].d);
        const uint8_t *q = b[i].qs, *hm = b[i].hmask;
        int is = 0;
        uint8_t m = 1;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1)) {
                for (int k = 0; k < 2; k++) {
                    const float dl = d * (float)(q3k_scale(b[i].scales, is++) - 32);
                    for (int l = 0; l < 16; l++) {
                        int v = ((q[16 * k + l] >> shift) & 3) - ((hm[16 * k + l] & m) ? 0 : 4);
                        *out++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

void halo_from_float_q3_k(const float *in, void *blocks, int64_t n) {
    halo_block_q3_k *b = blocks;
    int8_t l[16], q[QK_K];
    uint8_t v[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, in += QK_K) {
        kquant_symmetric(in, 16, 16, 4, 32, &b[i].d, l, q);
        memset(b[i].scales, 0, sizeof b[i].scales);
        for (int j = 0; j < 16; j++) {
            int s = l[j] + 32;
            if (j < 8)
                b[i].scales[j] |= (uint8_t)(s & 0xF);
            else
                b[i].scales[j - 8] |= (uint8_t)((s & 0xF) << 4);
            b[i].scales[8 + j % 4] |= (uint8_t)((s >> 4) << (2 * (j / 4)));
        }
        memset(b[i].hmask, 0, sizeof b[i].hmask);
        for (int k = 0; k < QK_K; k++) {
            v[k] = (uint8_t)(q[k] + 4);
            if (v[k] & 4) b[i].hmask[k % 32] |= (uint8_t)(1u << (k / 32));
        }
        pack_2bit(v, b[i].qs);
    }
}

/* ---- Q4_K -------------------------------------------------------------------- */

void halo_to_float_q4_k(const void *blocks, float *out, int64_t n) {
    const halo_block_q4_k *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = halo_fp16_to_fp32(b[i].d), dmin = halo_fp16_to_fp32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int is = 0; is < 8; is += 2, q += 32) {
            uint8_t sc, m;
            halo_k4_scale_min(is, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            halo_k4_scale_min(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *out++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *out++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void halo_from_float_q4_k(const float *in, void *blocks, int64_t n) {
    halo_block_q4_k *b = blocks;
    uint8_t ls[8], lm[8], q[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, in += QK_K) {
        kquant_affine(in, 8, 32, 15, 63, &b[i].d, &b[i].dmin, ls, lm, q);
        pack_k4_scales(ls, lm, b[i].scales);
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * g + l] = (uint8_t)(q[64 * g + l] | q[64 * g + 32 + l] << 4);
    }
}

/* ---- Q5_K -------------------------------------------------------------------- */

void halo_to_float_q5_k(const void *blocks, float *out, int64_t n) {
    const halo_block_q5_k *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = halo_fp16_to_fp32(b[i].d), dmin = halo_fp16_to_fp32(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2, ql += 32) {
            uint8_t sc, m;
            halo_k4_scale_min(is, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            halo_k4_scale_min(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *out++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *out++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

void halo_from_float_q5_k(const float *in, void *blocks, int64_t n) {
    halo_block_q5_k *b = blocks;
    uint8_t ls[8], lm[8], q[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, in += QK_K) {
        kquant_affine(in, 8, 32, 31, 63, &b[i].d, &b[i].dmin, ls, lm, q);
        pack_k4_scales(ls, lm, b[i].scales);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int g = 0; g < 4; g++) {
            for (int l = 0; l < 32; l++) {
                uint8_t lo = q[64 * g + l], hi = q[64 * g + 32 + l];
                b[i].qs[32 * g + l] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
                b[i].qh[l] |= (uint8_t)((lo >> 4) << (2 * g) | (hi >> 4) << (2 * g + 1));
            }
        }
    }
}

/* ---- Q6_K -------------------------------------------------------------------- */

void halo_to_float_q6_k(const void *blocks, float *out, int64_t n) {
    const halo_block_q6_k *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = halo_fp16_to_fp32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int half = 0; half < 2; half++, out += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                out[l] = d * (float)sc[is] * (float)q1;
                out[l + 32] = d * (float)sc[is + 2] * (float)q2;
                out[l + 64] = d * (float)sc[is + 4] * (float)q3;
                out[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

void halo_from_float_q6_k(const float *in, void *blocks, int64_t n) {
    halo_block_q6_k *b = blocks;
    int8_t l[16], q[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, in += QK_K) {
        kquant_symmetric(in, 16, 16, 32, 128, &b[i].d, l, q);
        memcpy(b[i].scales, l, sizeof b[i].scales);
        memset(b[i].ql, 0, sizeof b[i].ql);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int k = 0; k < QK_K; k++) {
            const int v = q[k] + 32, half = k / 128, quad = (k % 128) / 32, pos = k % 32;
            b[i].ql[64 * half + 32 * (quad & 1) + pos] |= (uint8_t)((v & 0xF) << (4 * (quad >> 1)));
            b[i].qh[32 * half + pos] |= (uint8_t)((v >> 4) << (2 * quad));
        }
    }
}

/* ---- Q8_K -------------------------------------------------------------------- */

void halo_to_float_q8_k(const void *blocks, float *out, int64_t n) {
    const halo_block_q8_k *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++, out += QK_K) {
        float d;
        memcpy(&d, &b[i].d, sizeof d);
        for (int j = 0; j < QK_K; j++) out[j] = d * (float)b[i].qs[j];
    }
}

void halo_from_float_q8_k(const float *in, void *blocks, int64_t n) {
    halo_block_q8_k *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++, in += QK_K) {
        float amax = 0.0f;
        for (int j = 0; j < QK_K; j++) amax = fmaxf(amax, fabsf(in[j]));
        float d = isfinite(amax) ? amax / 127.0f : 0.0f;
        while (isinf(d * 127.0f)) d = nextafterf(d, 0.0f); /* 127*d must stay finite */
        const double id = halo_inv(d);
        b[i].d = d;
        for (int j = 0; j < QK_K; j++) b[i].qs[j] = (int8_t)halo_qround(in[j] * id, -127, 127);
        for (int s = 0; s < QK_K / 16; s++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += b[i].qs[16 * s + j];
            b[i].bsums[s] = (int16_t)sum;
        }
    }
}

/* ---- IQ4_XS ------------------------------------------------------------------ */

void halo_to_float_iq4_xs(const void *blocks, float *out, int64_t n) {
    const halo_block_iq4_xs *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = halo_fp16_to_fp32(b[i].d);
        const uint8_t *qs = b[i].qs;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 16, out += 32) {
            const int ls = ((b[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) |
                           ((b[i].scales_h >> 2 * ib) & 3) << 4;
            const float dl = d * (float)(ls - 32);
            for (int j = 0; j < 16; j++) {
                out[j] = dl * (float)halo_kvalues_iq4nl[qs[j] & 0xF];
                out[j + 16] = dl * (float)halo_kvalues_iq4nl[qs[j] >> 4];
            }
        }
    }
}

/* Each sub-block's best IQ4_NL scale, quantized to 6 signed bits against the
 * super-block scale; then the indices again against the scale the decoder sees. */
void halo_from_float_iq4_xs(const float *in, void *blocks, int64_t n) {
    halo_block_iq4_xs *b = blocks;
    uint8_t q[32];
    double s[QK_K / 32];
    for (int64_t i = 0; i < n / QK_K; i++, in += QK_K) {
        double max_s = 0.0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            s[ib] = halo_iq4_best_scale(in + 32 * ib, 32, q, false);
            if (fabs(s[ib]) > fabs(max_s)) max_s = s[ib];
        }
        b[i].d = halo_scale_fp16(max_s / -32.0);
        const double d = halo_fp16_to_fp32(b[i].d), id = halo_inv(d);
        b[i].scales_h = 0;
        memset(b[i].scales_l, 0, sizeof b[i].scales_l);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const int l = halo_qround(s[ib] * id, -32, 31), ls = l + 32;
            b[i].scales_l[ib / 2] |= (uint8_t)((ls & 0xF) << 4 * (ib % 2));
            b[i].scales_h |= (uint16_t)((ls >> 4) << 2 * ib);
            const float dl = (float)d * (float)l;
            const double idl = halo_inv(dl);
            const float *x = in + 32 * ib;
            for (int j = 0; j < 16; j++) {
                int q0 = halo_nearest16(halo_iq4nl_mid, x[j] * idl);
                int q1 = halo_nearest16(halo_iq4nl_mid, x[j + 16] * idl);
                b[i].qs[16 * ib + j] = (uint8_t)(q0 | q1 << 4);
            }
        }
    }
}
