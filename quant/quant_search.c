/*
 * quant_search — importance-weighted encoders (halo_quant_encode, quant.h).
 *
 * Each block's scales (and mins) are searched to minimise the weighted squared
 * error sum_i w[i] * (x[i] - decoded[i])^2, where w is the caller's importance
 * (an imatrix column's mean squared activation) or, without one, a default of
 * |x| plus the block's RMS (importance growing with magnitude, but gently
 * enough that the plain squared error drops too; uniform for MXFP4). Given the
 * scales, the best code of every weight is simply its nearest one (each
 * weight's error depends on its own code only), so all the work is in
 * the scales:
 *
 * - one scale per 32 (Q8_0, Q4_0, Q5_0, IQ4_NL): candidate scales max/(E*(1+f))
 *   for E either end of the code range (the sign choice: the extreme value maps
 *   to the most negative or the most positive code) and f over a range; for each,
 *   the nearest codes, then the weighted least-squares scale for those codes, and
 *   once more. Every scale is judged at its half-precision value. The best scale
 *   wins, and the codes are rounded against it.
 * - scale + min (Q4_1, Q5_1): from several starts (the data range divided into
 *   qmax+delta steps, anchored at either end or the middle), alternate nearest
 *   codes and the weighted 2x2 least-squares fit of (scale, min), with both
 *   rounded to half precision, a few times; keep the best.
 * - K super-blocks (Q2_K..Q6_K, IQ4_XS): each sub-block's continuous best scale
 *   (and min) as above; then the super-block scale(s) by a search whose every
 *   candidate is judged by the true error of the whole super-block (sub-block
 *   scales rounded against it, every code re-rounded against the scales as
 *   stored); candidates also come from the weighted least-squares fit of the
 *   sub-block scales, weighted by their sensitivity (sum w q^2 for a scale,
 *   sum w — the sub-block's total importance — for a min). Then two rounds of
 *   polish: each sub-block's integer scale (and min) one step either way, and a
 *   least-squares refit of the super-block scale(s) with everything else fixed.
 * - MXFP4: the shared exponent: amax's (the reference's first choice), one
 *   below, one and two above, judged by the weighted error.
 * - Data so small that the half-precision super-block scale would underflow
 *   also try the smallest subnormal scale with small sub-block integers.
 *
 * Last, every block is compared with the reference encoder's block (decoded by
 * the real decoder, same weights) and the better one is written, so the result
 * is never worse than halo_quant_encode_ref under the weights used; on random
 * data the search wins almost every block (tests/quant/test_search.c).
 *
 * Scratch lives on the stack (a few KiB); no state: thread-safe, deterministic.
 */
#include "quant_impl.h"

#include "util/util.h"

#include <string.h>

#define QK HALO_QK
#define QK_K HALO_QK_K

/* A scale as the decoder will see it (half precision, saturated). */
static inline double h16(double d) { return halo_fp16_to_fp32(halo_scale_fp16(d)); }

/* The smallest positive half (a subnormal): the super-block scale of data so
 * small that max/levels underflows, with small integer sub-block scales. */
#define HALO_FP16_TINY 0x1p-24

/* The codes of a format: integers lo..hi that are their own value, or indices
 * 0..15 into the IQ4_NL grid. */
typedef struct {
    int lo, hi;
    const int8_t *grid;
} levels;

static inline double lv_value(const levels *L, int c) { return L->grid ? L->grid[c] : c; }

/* ---- one group, one scale: x ~ d * v(q) ------------------------------------- */

/* Nearest codes at scale d: the weighted sums sum w x v and sum w v^2. */
static void sym_sums(const float *x, const double *w, int n, double d, const levels *L,
                     double *sxv, double *svv) {
    const double id = halo_inv(d);
    double a = 0.0, b = 0.0;
    if (L->grid) {
        for (int j = 0; j < n; j++) {
            const double v = L->grid[halo_nearest16(halo_iq4nl_mid, x[j] * id)];
            a += w[j] * x[j] * v;
            b += w[j] * v * v;
        }
    } else {
        for (int j = 0; j < n; j++) {
            const double v = halo_qround(x[j] * id, L->lo, L->hi);
            a += w[j] * x[j] * v;
            b += w[j] * v * v;
        }
    }
    *sxv = a;
    *svv = b;
}

/* Nearest codes at scale d (into q, if given) and the weighted error. */
static double sym_fit(const float *x, const double *w, int n, double d, const levels *L, int *q) {
    const double id = halo_inv(d);
    double err = 0.0;
    for (int j = 0; j < n; j++) {
        const int c = L->grid ? halo_nearest16(halo_iq4nl_mid, x[j] * id)
                              : halo_qround(x[j] * id, L->lo, L->hi);
        const double e = x[j] - d * lv_value(L, c);
        err += w[j] * e * e;
        if (q) q[j] = c;
    }
    return err;
}

/* Relative offsets of the candidate denominators from the end of the code range. */
static const double sym_f[] = {-0.35, -0.30, -0.26, -0.22, -0.19, -0.16, -0.13, -0.10, -0.08,
                               -0.06, -0.04, -0.02, 0.0,   0.02,  0.04,  0.06,  0.09,  0.12,
                               0.16,  0.20,  0.25};
#define N_SYM_F ((int)(sizeof sym_f / sizeof sym_f[0]))

/* The scale d minimising sum w (x - d v(q))^2 with q nearest at d; with fp16, d
 * is a half-precision value. Returns the weighted error (an upper bound: the
 * codes rounded at the returned d can only do better). */
static double sym_search(const float *x, const double *w, int n, const levels *L, bool fp16,
                         double *d_out) {
    double sxx = 0.0, amax = 0.0, max = 0.0;
    for (int j = 0; j < n; j++) {
        sxx += w[j] * x[j] * x[j];
        if (fabs(x[j]) > amax) {
            amax = fabs(x[j]);
            max = x[j];
        }
    }
    double best_d = 0.0, best = sxx; /* d = 0: everything decodes to zero */
    if (!(amax > 0.0) || !isfinite(sxx)) {
        *d_out = 0.0;
        return best;
    }
    const double vlo = lv_value(L, L->lo), vhi = lv_value(L, L->hi);
    const bool symmetric = vlo == -vhi;
    for (int end = 0; end < (symmetric ? 1 : 2); end++) {
        const double E = symmetric ? vhi : (end ? vhi : vlo), m = symmetric ? amax : max;
        for (int t = 0; t < N_SYM_F; t++) {
            double d = m / (E * (1.0 + sym_f[t]));
            for (int it = 0; it < 2; it++) {
                if (fp16) d = h16(d);
                double sxv, svv;
                sym_sums(x, w, n, d, L, &sxv, &svv);
                double e = sxx - 2.0 * d * sxv + d * d * svv;
                if (e < best) {
                    best = e;
                    best_d = d;
                }
                if (!(svv > 0.0)) break;
                double d1 = sxv / svv; /* least squares for these codes */
                if (fp16) d1 = h16(d1);
                if (!isfinite(d1) || d1 == d) break;
                e = sxx - 2.0 * d1 * sxv + d1 * d1 * svv;
                if (e < best) {
                    best = e;
                    best_d = d1;
                }
                d = d1;
            }
        }
    }
    *d_out = best_d;
    return best < 0.0 ? 0.0 : best;
}

/* ---- one group, scale and min: x ~ d * q + m, q in 0..qmax ----------------- */

/* Weighted least squares (d, m) for the codes; with m_nonpos, m <= 0 (the K
 * formats subtract a non-negative min). false if degenerate. */
static bool affine_ls(double sw, double sq, double sqq, double sx, double sqx, bool m_nonpos,
                      double *d, double *m) {
    const double det = sw * sqq - sq * sq;
    if (!(det > 0.0)) return false;
    double dd = (sw * sqx - sq * sx) / det, mm = (sqq * sx - sq * sqx) / det;
    if (m_nonpos && mm > 0.0) {
        mm = 0.0;
        dd = sqx / sqq;
    }
    if (!(dd > 0.0) || !isfinite(dd) || !isfinite(mm)) return false;
    *d = dd;
    *m = mm;
    return true;
}

/* The (d, m) minimising sum w (x - d q - m)^2, q nearest; with fp16 both are
 * half-precision values. Returns the weighted error (an upper bound, as above). */
static double affine_search(const float *x, const double *w, int n, int qmax, bool fp16,
                            bool m_nonpos, double *d_out, double *m_out) {
    double lo = x[0], hi = x[0], sw = 0.0, sx = 0.0, sxx = 0.0;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
        sw += w[j];
        sx += w[j] * x[j];
        sxx += w[j] * x[j] * x[j];
    }
    if (m_nonpos && lo > 0.0) lo = 0.0;
    /* a constant: the weighted mean (or zero) */
    double m0 = sw > 0.0 ? sx / sw : 0.0;
    if (m_nonpos && m0 > 0.0) m0 = 0.0;
    if (fp16) m0 = h16(m0);
    double best = sxx - 2.0 * m0 * sx + m0 * m0 * sw, best_d = 0.0, best_m = m0;
    if (!isfinite(best)) best = INFINITY;
    if (!(hi > lo) || !isfinite(hi - lo)) {
        *d_out = 0.0;
        *m_out = m0;
        return best;
    }
    static const double deltas[] = {-0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0};
    const int nd = (int)(sizeof deltas / sizeof deltas[0]);
    for (int k = 0; k < 3 * nd; k++) {
        const int anchor = k / nd; /* 0: at lo, 1: at hi, 2: centred */
        const double delta = deltas[k % nd];
        if (anchor > 0 && delta <= 0.0) continue;
        double d = (hi - lo) / (qmax + delta), m = lo;
        if (anchor == 1) m = hi - qmax * d;
        if (anchor == 2) m = 0.5 * (lo + hi - qmax * d);
        if (m_nonpos && m > 0.0) m = 0.0;
        for (int it = 0; it < 4; it++) {
            if (fp16) {
                d = h16(d);
                m = h16(m);
            }
            const double id = halo_inv(d);
            double sq = 0.0, sqq = 0.0, sqx = 0.0;
            for (int j = 0; j < n; j++) {
                const double q = halo_qround((x[j] - m) * id, 0, qmax);
                sq += w[j] * q;
                sqq += w[j] * q * q;
                sqx += w[j] * q * x[j];
            }
            double e = sxx + d * d * sqq + m * m * sw - 2.0 * d * sqx - 2.0 * m * sx +
                       2.0 * d * m * sq;
            if (e < best) {
                best = e;
                best_d = d;
                best_m = m;
            }
            double d1, m1;
            if (!affine_ls(sw, sq, sqq, sx, sqx, m_nonpos, &d1, &m1)) break;
            if (fp16) {
                d1 = h16(d1);
                m1 = h16(m1);
            }
            if (d1 == d && m1 == m) break;
            e = sxx + d1 * d1 * sqq + m1 * m1 * sw - 2.0 * d1 * sqx - 2.0 * m1 * sx +
                2.0 * d1 * m1 * sq;
            if (e < best) {
                best = e;
                best_d = d1;
                best_m = m1;
            }
            d = d1;
            m = m1;
        }
    }
    *d_out = best_d;
    *m_out = best_m;
    return best < 0.0 ? 0.0 : best;
}

/* ---- K super-blocks, symmetric: x ~ d * l_s * v(q) -------------------------- */

typedef struct {
    int nsub, sz;
    levels L;     /* the codes */
    int slo, shi; /* the integer sub-block scales */
} ksym_fmt;

/* The super-block's error at super scale d: the sub-block scales l nearest to
 * a/d (or as given, with fixl), every code nearest against d*l as stored. */
static double ksym_eval(const ksym_fmt *F, const float *x, const double *w, const double *a,
                        double d, bool fixl, int *l, int *q) {
    const double id = halo_inv(d);
    double err = 0.0;
    for (int s = 0; s < F->nsub; s++) {
        if (!fixl) l[s] = halo_qround(a[s] * id, F->slo, F->shi);
        const float dl = (float)d * (float)l[s];
        err += sym_fit(x + s * F->sz, w + s * F->sz, F->sz, dl, &F->L, q + s * F->sz);
    }
    return err;
}

static const double k_f[] = {-0.15, -0.10, -0.07, -0.05, -0.03, -0.015, 0.0,
                              0.015, 0.03,  0.05,  0.08,  0.12};
#define N_K_F ((int)(sizeof k_f / sizeof k_f[0]))

static void ksym_encode(const ksym_fmt *F, const float *x, const double *w, uint16_t *dh, int *l,
                        int *q) {
    double a[16] = {0}, W[16] = {0}, amax = 0.0, smax = 0.0;
    const int nsub = F->nsub, sz = F->sz;
    for (int s = 0; s < nsub; s++) {
        double sxv, svv;
        sym_search(x + s * sz, w + s * sz, sz, &F->L, false, &a[s]);
        sym_sums(x + s * sz, w + s * sz, sz, a[s], &F->L, &sxv, &svv);
        W[s] = svv; /* the error grows by W (scale - a)^2 */
        if (fabs(a[s]) > amax) {
            amax = fabs(a[s]);
            smax = a[s];
        }
    }
    int tl[16], tq[QK_K];
    double best_d = 0.0, best = ksym_eval(F, x, w, a, 0.0, false, l, q);
    if (amax > 0.0 && isfinite(amax)) {
        for (int end = 0; end < 2; end++) {
            const double E = end ? F->shi : F->slo;
            for (int t = 0; t < N_K_F; t++) {
                double d = h16(smax / (E * (1.0 + k_f[t])));
                if (d == 0.0) d = copysign(HALO_FP16_TINY, smax / E); /* tiny data */
                for (int it = 0; it < 2; it++) {
                    const double e = ksym_eval(F, x, w, a, d, false, tl, tq);
                    if (e < best) {
                        best = e;
                        best_d = d;
                        memcpy(l, tl, sizeof(int) * (size_t)nsub);
                        memcpy(q, tq, sizeof(int) * (size_t)(nsub * sz));
                    }
                    double num = 0.0, den = 0.0;
                    for (int s = 0; s < nsub; s++) {
                        num += W[s] * a[s] * tl[s];
                        den += W[s] * (double)tl[s] * tl[s];
                    }
                    if (!(den > 0.0)) break;
                    const double d1 = h16(num / den);
                    if (d1 == d) break;
                    d = d1;
                }
            }
        }
    }
    /* polish: each sub-block scale a step either way; then d refit to everything */
    for (int round = 0; round < 2 && best_d != 0.0; round++) {
        for (int s = 0; s < nsub; s++) {
            const float *xs = x + s * sz;
            const double *ws = w + s * sz;
            double cur = sym_fit(xs, ws, sz, (float)best_d * (float)l[s], &F->L, NULL);
            for (int step = -1; step <= 1; step += 2) {
                const int ls = l[s] + step;
                if (ls < F->slo || ls > F->shi) continue;
                const double e = sym_fit(xs, ws, sz, (float)best_d * (float)ls, &F->L, tq);
                if (e < cur) {
                    cur = e;
                    l[s] = ls;
                    memcpy(q + s * sz, tq, sizeof(int) * (size_t)sz);
                }
            }
        }
        double num = 0.0, den = 0.0;
        for (int s = 0; s < nsub; s++)
            for (int j = 0; j < sz; j++) {
                const double u = l[s] * lv_value(&F->L, q[s * sz + j]);
                num += w[s * sz + j] * x[s * sz + j] * u;
                den += w[s * sz + j] * u * u;
            }
        best = ksym_eval(F, x, w, a, best_d, true, l, q);
        if (den > 0.0) {
            const double d1 = h16(num / den);
            memcpy(tl, l, sizeof(int) * (size_t)nsub);
            const double e = ksym_eval(F, x, w, a, d1, true, tl, tq);
            if (e < best) {
                best = e;
                best_d = d1;
                memcpy(q, tq, sizeof(int) * (size_t)(nsub * sz));
            }
        }
    }
    *dh = halo_scale_fp16(best_d);
}

/* ---- K super-blocks, affine: x ~ d * sc_s * q - dmin * m_s ------------------- */

typedef struct {
    int nsub, sz, qmax, lmax;
} kaff_fmt;

/* Nearest codes against the decoder's dl and ml (w = dl*q - ml, in float as it
 * computes it) and the weighted error. */
static double aff_fit(const float *x, const double *w, int n, int qmax, float dl, float ml,
                      int *q) {
    const double idl = halo_inv(dl);
    double err = 0.0;
    for (int j = 0; j < n; j++) {
        const int c = halo_qround(((double)x[j] + ml) * idl, 0, qmax);
        const double e = x[j] - (double)(dl * (float)c - ml);
        err += w[j] * e * e;
        if (q) q[j] = c;
    }
    return err;
}

static double kaff_eval(const kaff_fmt *F, const float *x, const double *w, const double *a,
                        const double *b, double d, double dmin, bool fix, int *sc, int *mn,
                        int *q) {
    const double id = halo_inv(d), idm = halo_inv(dmin);
    double err = 0.0;
    for (int s = 0; s < F->nsub; s++) {
        if (!fix) {
            sc[s] = halo_qround(a[s] * id, 0, F->lmax);
            mn[s] = halo_qround(b[s] * idm, 0, F->lmax);
        }
        err += aff_fit(x + s * F->sz, w + s * F->sz, F->sz, F->qmax, (float)d * (float)sc[s],
                       (float)dmin * (float)mn[s], q + s * F->sz);
    }
    return err;
}

typedef struct {
    double d, dmin, err;
    int sc[16], mn[16], q[QK_K];
} kaff_state;

/* Try super scales (d, dmin): keep them in *best if the super-block does better. */
static void kaff_try(const kaff_fmt *F, const float *x, const double *w, const double *a,
                     const double *b, double d, double dmin, kaff_state *best, kaff_state *tmp) {
    tmp->err = kaff_eval(F, x, w, a, b, d, dmin, false, tmp->sc, tmp->mn, tmp->q);
    if (tmp->err < best->err) {
        tmp->d = d;
        tmp->dmin = dmin;
        *best = *tmp;
    }
}

/* Candidates for one of the two super scales (which: 0 d, 1 dmin) with the other
 * fixed at best's: scaled maxima, each followed by the sensitivity-weighted least
 * squares fit of the sub-block values to their rounded integers. */
static void kaff_scan(const kaff_fmt *F, const float *x, const double *w, const double *a,
                      const double *b, const double *W, int which, kaff_state *best,
                      kaff_state *tmp) {
    const double *v = which ? b : a;
    double vmax = 0.0;
    for (int s = 0; s < F->nsub; s++)
        if (v[s] > vmax) vmax = v[s];
    if (!(vmax > 0.0) || !isfinite(vmax)) return;
    const double other = which ? best->d : best->dmin;
    for (int t = 0; t < N_K_F; t++) {
        double c = h16(vmax / (F->lmax * (1.0 + k_f[t])));
        if (c == 0.0) c = HALO_FP16_TINY;
        for (int it = 0; it < 2 && c > 0.0; it++) {
            kaff_try(F, x, w, a, b, which ? other : c, which ? c : other, best, tmp);
            const double ic = 1.0 / c;
            double num = 0.0, den = 0.0;
            for (int s = 0; s < F->nsub; s++) {
                const int k = halo_qround(v[s] * ic, 0, F->lmax);
                num += W[s] * v[s] * k;
                den += W[s] * (double)k * k;
            }
            if (!(den > 0.0)) break;
            const double c1 = h16(num / den);
            if (c1 == c) break;
            c = c1;
        }
    }
}

static void kaff_encode(const kaff_fmt *F, const float *x, const double *w, uint16_t *dh,
                        uint16_t *dminh, int *sc, int *mn, int *q) {
    const int nsub = F->nsub, sz = F->sz;
    double a[16], b[16], Wa[16], Wb[16], amax = 0.0, bmax = 0.0;
    for (int s = 0; s < nsub; s++) {
        const float *xs = x + s * sz;
        const double *ws = w + s * sz;
        double m;
        affine_search(xs, ws, sz, F->qmax, false, true, &a[s], &m);
        b[s] = -m;
        const double ia = halo_inv(a[s]);
        Wa[s] = Wb[s] = 0.0;
        for (int j = 0; j < sz; j++) {
            const double c = halo_qround((xs[j] - m) * ia, 0, F->qmax);
            Wa[s] += ws[j] * c * c;
            Wb[s] += ws[j];
        }
        if (a[s] > amax) amax = a[s];
        if (b[s] > bmax) bmax = b[s];
    }
    kaff_state best, tmp;
    best.d = h16(amax / F->lmax);
    best.dmin = h16(bmax / F->lmax);
    best.err = kaff_eval(F, x, w, a, b, best.d, best.dmin, false, best.sc, best.mn, best.q);
    kaff_try(F, x, w, a, b, 0.0, 0.0, &best, &tmp);
    kaff_scan(F, x, w, a, b, Wb, 1, &best, &tmp);
    kaff_scan(F, x, w, a, b, Wa, 0, &best, &tmp);
    kaff_scan(F, x, w, a, b, Wb, 1, &best, &tmp);
    /* polish: each sub-block's scale and min a step either way; then (d, dmin)
     * refit by least squares to everything else */
    for (int round = 0; round < 2; round++) {
        const float d = (float)best.d, dmin = (float)best.dmin;
        for (int s = 0; s < nsub; s++) {
            const float *xs = x + s * sz;
            const double *ws = w + s * sz;
            double cur = aff_fit(xs, ws, sz, F->qmax, d * (float)best.sc[s],
                                 dmin * (float)best.mn[s], NULL);
            const int sc0 = best.sc[s], mn0 = best.mn[s];
            for (int ds = -1; ds <= 1; ds++)
                for (int dm = -1; dm <= 1; dm++) {
                    const int ls = sc0 + ds, lm = mn0 + dm;
                    if ((ds == 0 && dm == 0) || ls < 0 || ls > F->lmax || lm < 0 || lm > F->lmax)
                        continue;
                    const double e =
                        aff_fit(xs, ws, sz, F->qmax, d * (float)ls, dmin * (float)lm, tmp.q);
                    if (e < cur) {
                        cur = e;
                        best.sc[s] = ls;
                        best.mn[s] = lm;
                        memcpy(best.q + s * sz, tmp.q, sizeof(int) * (size_t)sz);
                    }
                }
        }
        best.err = kaff_eval(F, x, w, a, b, best.d, best.dmin, true, best.sc, best.mn, best.q);
        /* x ~ d * u - dmin * mn: 2x2 normal equations */
        double suu = 0.0, suy = 0.0, syy = 0.0, sxu = 0.0, sxy = 0.0;
        for (int s = 0; s < nsub; s++)
            for (int j = 0; j < sz; j++) {
                const double ww = w[s * sz + j], xx = x[s * sz + j];
                const double u = (double)best.sc[s] * best.q[s * sz + j], y = -best.mn[s];
                suu += ww * u * u;
                suy += ww * u * y;
                syy += ww * y * y;
                sxu += ww * xx * u;
                sxy += ww * xx * y;
            }
        const double det = suu * syy - suy * suy;
        double d1 = best.d, dm1 = best.dmin;
        if (det > 0.0) {
            d1 = (sxu * syy - sxy * suy) / det;
            dm1 = (sxy * suu - sxu * suy) / det;
        } else if (suu > 0.0) {
            d1 = sxu / suu;
        }
        if (d1 >= 0.0 && dm1 >= 0.0 && isfinite(d1) && isfinite(dm1)) {
            d1 = h16(d1);
            dm1 = h16(dm1);
            memcpy(tmp.sc, best.sc, sizeof best.sc);
            memcpy(tmp.mn, best.mn, sizeof best.mn);
            tmp.err = kaff_eval(F, x, w, a, b, d1, dm1, true, tmp.sc, tmp.mn, tmp.q);
            if (tmp.err < best.err) {
                tmp.d = d1;
                tmp.dmin = dm1;
                best = tmp;
            }
        }
    }
    *dh = halo_scale_fp16(best.d);
    *dminh = halo_scale_fp16(best.dmin);
    memcpy(sc, best.sc, sizeof(int) * (size_t)nsub);
    memcpy(mn, best.mn, sizeof(int) * (size_t)nsub);
    memcpy(q, best.q, sizeof(int) * (size_t)(nsub * sz));
}

/* ---- the formats -------------------------------------------------------------- */

static void store_u32le(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Q8_0, Q4_0, Q5_0, IQ4_NL: one half-precision scale; codes (offset by bias). */
static double search_sym32(const float *x, const double *w, const levels *L, int bias, int *c) {
    double d;
    sym_search(x, w, QK, L, true, &d);
    sym_fit(x, w, QK, d, L, c);
    for (int j = 0; j < QK; j++) c[j] += bias;
    return d;
}

static void search_q8_0(const float *x, const double *w, void *blk) {
    static const levels L = {-127, 127, NULL};
    halo_block_q8_0 *b = blk;
    int c[QK];
    b->d = halo_scale_fp16(search_sym32(x, w, &L, 0, c));
    for (int j = 0; j < QK; j++) b->qs[j] = (int8_t)c[j];
}

static void search_q4_0(const float *x, const double *w, void *blk) {
    static const levels L = {-8, 7, NULL};
    halo_block_q4_0 *b = blk;
    int c[QK];
    b->d = halo_scale_fp16(search_sym32(x, w, &L, 8, c));
    for (int j = 0; j < QK / 2; j++) b->qs[j] = (uint8_t)(c[j] | c[j + 16] << 4);
}

static void pack_q5(const int *c, uint8_t *qs, uint8_t *qh) {
    uint32_t h = 0;
    for (int j = 0; j < QK / 2; j++) {
        qs[j] = (uint8_t)((c[j] & 0xF) | (c[j + 16] & 0xF) << 4);
        h |= (uint32_t)(c[j] >> 4) << j | (uint32_t)(c[j + 16] >> 4) << (j + 16);
    }
    store_u32le(qh, h);
}

static void search_q5_0(const float *x, const double *w, void *blk) {
    static const levels L = {-16, 15, NULL};
    halo_block_q5_0 *b = blk;
    int c[QK];
    b->d = halo_scale_fp16(search_sym32(x, w, &L, 16, c));
    pack_q5(c, b->qs, b->qh);
}

static void search_iq4_nl(const float *x, const double *w, void *blk) {
    static const levels L = {0, 15, halo_kvalues_iq4nl};
    halo_block_iq4_nl *b = blk;
    int c[QK];
    b->d = halo_scale_fp16(search_sym32(x, w, &L, 0, c));
    for (int j = 0; j < QK / 2; j++) b->qs[j] = (uint8_t)(c[j] | c[j + 16] << 4);
}

/* Q4_1, Q5_1: half-precision d and m, w = q*d + m. */
static void search_affine32(const float *x, const double *w, int qmax, uint16_t *dh, uint16_t *mh,
                            int *c) {
    double d, m;
    affine_search(x, w, QK, qmax, true, false, &d, &m);
    *dh = halo_scale_fp16(d);
    *mh = halo_scale_fp16(m);
    const float df = halo_fp16_to_fp32(*dh), mf = halo_fp16_to_fp32(*mh);
    const double id = halo_inv(df);
    for (int j = 0; j < QK; j++) c[j] = halo_qround(((double)x[j] - mf) * id, 0, qmax);
}

static void search_q4_1(const float *x, const double *w, void *blk) {
    halo_block_q4_1 *b = blk;
    int c[QK];
    search_affine32(x, w, 15, &b->d, &b->m, c);
    for (int j = 0; j < QK / 2; j++) b->qs[j] = (uint8_t)(c[j] | c[j + 16] << 4);
}

static void search_q5_1(const float *x, const double *w, void *blk) {
    halo_block_q5_1 *b = blk;
    int c[QK];
    search_affine32(x, w, 31, &b->d, &b->m, c);
    pack_q5(c, b->qs, b->qh);
}

/* Q2_K/Q3_K: the 2-bit field of weight i lives in byte (i/128)*32 + i%32, at bit
 * 2*((i%128)/32). */
static void pack_2bit(const int *v, uint8_t *qs) {
    memset(qs, 0, QK_K / 4);
    for (int i = 0; i < QK_K; i++)
        qs[(i / 128) * 32 + i % 32] |= (uint8_t)((v[i] & 3) << (2 * ((i % 128) / 32)));
}

static void search_q2_k(const float *x, const double *w, void *blk) {
    static const kaff_fmt F = {16, 16, 3, 15};
    halo_block_q2_k *b = blk;
    int sc[16], mn[16], q[QK_K];
    kaff_encode(&F, x, w, &b->d, &b->dmin, sc, mn, q);
    for (int s = 0; s < 16; s++) b->scales[s] = (uint8_t)(sc[s] | mn[s] << 4);
    pack_2bit(q, b->qs);
}

static void search_q3_k(const float *x, const double *w, void *blk) {
    static const ksym_fmt F = {16, 16, {-4, 3, NULL}, -32, 31};
    halo_block_q3_k *b = blk;
    int l[16], q[QK_K];
    ksym_encode(&F, x, w, &b->d, l, q);
    memset(b->scales, 0, sizeof b->scales);
    for (int j = 0; j < 16; j++) {
        const int s = l[j] + 32;
        b->scales[j % 8] |= (uint8_t)((s & 0xF) << (j < 8 ? 0 : 4));
        b->scales[8 + j % 4] |= (uint8_t)((s >> 4) << (2 * (j / 4)));
    }
    memset(b->hmask, 0, sizeof b->hmask);
    for (int k = 0; k < QK_K; k++) {
        q[k] += 4; /* 0..7: bit 2 in hmask, the low two in qs */
        if (q[k] & 4) b->hmask[k % 32] |= (uint8_t)(1u << (k / 32));
    }
    pack_2bit(q, b->qs);
}

/* Q4_K/Q5_K: eight 6-bit scales and mins in 12 bytes (halo_k4_scale_min). */
static void pack_k4_scales(const int *ls, const int *lm, uint8_t *out) {
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)(ls[j] | (ls[j + 4] >> 4) << 6);
        out[j + 4] = (uint8_t)(lm[j] | (lm[j + 4] >> 4) << 6);
        out[j + 8] = (uint8_t)((ls[j + 4] & 0xF) | (lm[j + 4] & 0xF) << 4);
    }
}

static void search_q4_k(const float *x, const double *w, void *blk) {
    static const kaff_fmt F = {8, 32, 15, 63};
    halo_block_q4_k *b = blk;
    int sc[8], mn[8], q[QK_K];
    kaff_encode(&F, x, w, &b->d, &b->dmin, sc, mn, q);
    pack_k4_scales(sc, mn, b->scales);
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++)
            b->qs[32 * g + l] = (uint8_t)(q[64 * g + l] | q[64 * g + 32 + l] << 4);
}

static void search_q5_k(const float *x, const double *w, void *blk) {
    static const kaff_fmt F = {8, 32, 31, 63};
    halo_block_q5_k *b = blk;
    int sc[8], mn[8], q[QK_K];
    kaff_encode(&F, x, w, &b->d, &b->dmin, sc, mn, q);
    pack_k4_scales(sc, mn, b->scales);
    memset(b->qh, 0, sizeof b->qh);
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) {
            const int lo = q[64 * g + l], hi = q[64 * g + 32 + l];
            b->qs[32 * g + l] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
            b->qh[l] |= (uint8_t)((lo >> 4) << (2 * g) | (hi >> 4) << (2 * g + 1));
        }
}

static void search_q6_k(const float *x, const double *w, void *blk) {
    static const ksym_fmt F = {16, 16, {-32, 31, NULL}, -128, 127};
    halo_block_q6_k *b = blk;
    int l[16], q[QK_K];
    ksym_encode(&F, x, w, &b->d, l, q);
    for (int s = 0; s < 16; s++) b->scales[s] = (int8_t)l[s];
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int k = 0; k < QK_K; k++) {
        const int v = q[k] + 32, half = k / 128, quad = (k % 128) / 32, pos = k % 32;
        b->ql[64 * half + 32 * (quad & 1) + pos] |= (uint8_t)((v & 0xF) << (4 * (quad >> 1)));
        b->qh[32 * half + pos] |= (uint8_t)((v >> 4) << (2 * quad));
    }
}

static void search_iq4_xs(const float *x, const double *w, void *blk) {
    static const ksym_fmt F = {8, 32, {0, 15, halo_kvalues_iq4nl}, -32, 31};
    halo_block_iq4_xs *b = blk;
    int l[8], q[QK_K];
    ksym_encode(&F, x, w, &b->d, l, q);
    b->scales_h = 0;
    memset(b->scales_l, 0, sizeof b->scales_l);
    for (int ib = 0; ib < 8; ib++) {
        const int ls = l[ib] + 32;
        b->scales_l[ib / 2] |= (uint8_t)((ls & 0xF) << 4 * (ib % 2));
        b->scales_h |= (uint16_t)((ls >> 4) << 2 * ib);
        for (int j = 0; j < 16; j++)
            b->qs[16 * ib + j] = (uint8_t)(q[32 * ib + j] | q[32 * ib + j + 16] << 4);
    }
}

/* MXFP4: nearest e2m1 code of v (doubled units, magnitudes 0..12; lower on ties). */
static int mxfp4_nearest(double v) {
    static const double mid[7] = {0.5, 1.5, 2.5, 3.5, 5.0, 7.0, 10.0};
    const double a = fabs(v);
    int k = 0;
    while (k < 7 && a > mid[k]) k++;
    return k == 0 ? 0 : (v < 0 ? k | 8 : k);
}

#define MXFP4_MAX_E 252 /* above, the top codes decode to infinity */
static void search_mxfp4(const float *x, const double *w, void *blk) {
    halo_block_mxfp4 *b = blk;
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    int e0 = 0;
    if (amax > 0.0f && isfinite(amax)) {
        int ex;
        frexpf(amax, &ex);
        e0 = ex - 3 + 127; /* amax in [4, 8) * 2^(e0-128): the top code's binade */
    } else if (amax > 0.0f) {
        e0 = MXFP4_MAX_E;
    }
    double best = INFINITY;
    int best_e = -1;
    for (int e = e0 - 1; e <= e0 + 2; e++) {
        if (e < 0 || e > MXFP4_MAX_E) continue;
        const double d = halo_e8m0_to_fp32_half((uint8_t)e), id = 1.0 / d;
        double err = 0.0;
        for (int j = 0; j < QK; j++) {
            const double r = x[j] - d * halo_kvalues_mxfp4[mxfp4_nearest(x[j] * id)];
            err += w[j] * r * r;
        }
        if (best_e < 0 || err < best) {
            best = err;
            best_e = e;
        }
    }
    if (best_e < 0) best_e = e0 < 0 ? 0 : MXFP4_MAX_E;
    b->e = (uint8_t)best_e;
    const double id = 1.0 / halo_e8m0_to_fp32_half(b->e);
    for (int j = 0; j < QK / 2; j++)
        b->qs[j] = (uint8_t)(mxfp4_nearest(x[j] * id) | mxfp4_nearest(x[j + 16] * id) << 4);
}

/* ---- the driver ---------------------------------------------------------------- */

typedef void (*search_fn)(const float *x, const double *w, void *blk);

static search_fn search_for(int type) {
    switch (type) {
    case HALO_TYPE_Q8_0: return search_q8_0;
    case HALO_TYPE_Q4_0: return search_q4_0;
    case HALO_TYPE_Q4_1: return search_q4_1;
    case HALO_TYPE_Q5_0: return search_q5_0;
    case HALO_TYPE_Q5_1: return search_q5_1;
    case HALO_TYPE_IQ4_NL: return search_iq4_nl;
    case HALO_TYPE_Q2_K: return search_q2_k;
    case HALO_TYPE_Q3_K: return search_q3_k;
    case HALO_TYPE_Q4_K: return search_q4_k;
    case HALO_TYPE_Q5_K: return search_q5_k;
    case HALO_TYPE_Q6_K: return search_q6_k;
    case HALO_TYPE_IQ4_XS: return search_iq4_xs;
    case HALO_TYPE_MXFP4: return search_mxfp4;
    default: return NULL;
    }
}

/* The weights of one block: the importances (negative, NaN or infinite ones
 * count as 0); where there are none (or all are 0), |x| plus the block's RMS
 * (importance growing with magnitude, as x^2 + small would, but gently enough
 * that the plain squared error improves too), or with plain_default all 1 —
 * for MXFP4, whose one choice, the exponent, any magnitude weighting biases
 * towards never clipping. All-zero blocks get 1. */
static void block_weights(const float *x, const float *imp, int n, bool plain_default, double *w) {
    if (imp) {
        double tot = 0.0;
        for (int j = 0; j < n; j++) {
            const double v = imp[j];
            w[j] = v > 0.0 && v < INFINITY ? v : 0.0;
            tot += w[j];
        }
        if (tot > 0.0 && isfinite(tot)) return;
    }
    double ms = 0.0;
    for (int j = 0; j < n; j++) ms += (double)x[j] * x[j];
    ms /= n;
    if (plain_default || !(ms > 0.0) || !isfinite(ms)) {
        for (int j = 0; j < n; j++) w[j] = 1.0;
        return;
    }
    const double rms = sqrt(ms);
    for (int j = 0; j < n; j++) w[j] = fabs((double)x[j]) + rms;
}

static double weighted_error(const float *x, const float *y, const double *w, int n) {
    double err = 0.0;
    for (int j = 0; j < n; j++) {
        const double e = (double)x[j] - y[j];
        err += w[j] * e * e;
    }
    return err;
}

int halo_quant_encode(int type, const float *in, void *blocks, int64_t n, const float *imp,
                      halo_error *err) {
    const halo_type_traits *t = NULL;
    int rc = halo_quant_encode_check(type, n, &t, err);
    if (rc) return rc;
    if (n > 0 && halo_type_row_size(type, n) == 0)
        return halo_error_set(err, HALO_ERR_RANGE, "%lld %s values do not fit in memory",
                              (long long)n, t->name);
    const search_fn search = search_for(type);
    if (!search || n == 0) { /* plain types and those without a search */
        t->from_float_ref(in, blocks, n);
        return HALO_OK;
    }
    const int bs = (int)t->block_size;
    const size_t tsz = t->type_size;
    /* scratch blocks, aligned for any block struct */
    union {
        uint8_t b[sizeof(halo_block_q8_k)];
        double align;
    } cand, ref;
    _Static_assert(sizeof(halo_block_q8_k) >= sizeof(halo_block_q6_k), "scratch block size");
    double w[QK_K];
    float y[QK_K];
    const int64_t nb = n / bs;
    uint8_t *out = blocks;
    for (int64_t i = 0; i < nb; i++) {
        const float *x = in + i * bs;
        block_weights(x, imp ? imp + i * bs : NULL, bs, type == HALO_TYPE_MXFP4, w);
        memset(cand.b, 0, tsz);
        search(x, w, cand.b);
        t->to_float(cand.b, y, bs);
        const double es = weighted_error(x, y, w, bs);
        t->from_float_ref(x, ref.b, bs);
        t->to_float(ref.b, y, bs);
        const double er = weighted_error(x, y, w, bs);
        memcpy(out + (size_t)i * tsz, es <= er ? cand.b : ref.b, tsz);
    }
    return HALO_OK;
}
