/* Gated DeltaNet kernels: the causal conv with its carried state, the gates, the
 * recurrent step (decode) and the chunked form (prefill), the gated RMS norm.
 *
 * The chunked form. Within a chunk of C tokens with cumulative decays
 * c_i = g_1 + ... + g_i, the delta rule's updates can be written with the
 * "WY" representation: the new values the chunk writes are
 *     v'_i = u_i - w_i^T S0,
 *     u_i = beta_i v_i       + sum_{m<i} A_im u_m,
 *     w_i = beta_i e^{c_i} k_i + sum_{m<i} A_im w_m,   A_im = -beta_i (k_i.k_m) e^{c_i - c_m}
 * (forward substitution, the triangular solve of (I - A)), the outputs are
 *     o_i = e^{c_i} S0^T q_i + sum_{m<=i} (q_i.k_m) e^{c_i - c_m} v'_m
 * and the state carried to the next chunk is
 *     S = e^{c_C} S0 + sum_i e^{c_C - c_i} k_i v'_i^T.
 * Every exponent is <= 0 (g <= 0), so nothing overflows. */
#include "kernels/cpu/exp_fast.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The hot loops are compiled for AVX-512, AVX2 and the baseline, the loader
 * picking the widest the CPU has (GNU ifunc); the loops are written so that the
 * compiler vectorizes them (independent partial sums, no aliasing). GCC only:
 * clang 14 does not emit the clones of functions that are only defined here. */
#if defined(__x86_64__) && defined(__linux__) && !defined(__clang__) && __GNUC__ >= 8
#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT
#endif

#define exp_fast halo_exp_fast

static inline float silu(float x) { return x / (1.0f + exp_fast(-x)); }

/* Decays multiply into numbers below the smallest normal float (a fast-decaying
 * head over a chunk: e^{c_i} ~ 1e-40), and x86 handles those subnormals in
 * microcode, ~100x slower: on kdoc-moe the chunked form ran 3x slower than with
 * them flushed. The two forms of the delta rule flush them to zero while they
 * run (FTZ and DAZ in this thread's MXCSR, restored on return); nothing else
 * sees the change, and values below 1e-38 are far under the tolerances. */
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
typedef unsigned int fp_mode;
static inline fp_mode flush_denormals(void) {
    const fp_mode old = _mm_getcsr();
    _mm_setcsr(old | 0x8040); /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
}
static inline void restore_fp_mode(fp_mode old) { _mm_setcsr(old); }
#else
typedef int fp_mode;
static inline fp_mode flush_denormals(void) { return 0; }
static inline void restore_fp_mode(fp_mode old) { (void)old; }
#endif

static void split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t per = (n + nth - 1) / nth;
    *lo = per * ith < n ? per * ith : n;
    *hi = *lo + per < n ? *lo + per : n;
}

/* ---- conv ------------------------------------------------------------------ */

HOT void halo_deltanet_conv(const float *x, int64_t x_stride, int64_t n_tokens, int64_t n_ch,
                            int kernel, const float *w, float *state, float *y, int64_t y_stride,
                            int64_t c0, int64_t c1) {
    if (c0 >= c1) return;
    const int64_t hist = kernel - 1;
    const float *in[HALO_DELTANET_MAX_CONV];
    /* the taps transposed ([tap][channel]) for a range of up to a head's width:
     * the weights' [channel][tap] order made the loop gather with stride 4 */
    const int64_t nc = c1 - c0;
    const bool wt_ok = kernel == 4 && nc <= HALO_DELTANET_MAX_DIM;
    float wt[4][HALO_DELTANET_MAX_DIM];
    if (wt_ok)
        for (int64_t c = 0; c < nc; c++)
            for (int j = 0; j < 4; j++) wt[j][c] = w[(c0 + c) * 4 + j];
    for (int64_t t = 0; t < n_tokens; t++) {
        float *restrict yt = y + t * y_stride;
        for (int j = 0; j < kernel; j++) {
            int64_t src = t - hist + j;
            in[j] = src >= 0 ? x + src * x_stride : state + (hist + src) * n_ch;
        }
        if (kernel == 4 && wt_ok) { /* Qwen3.5's width: unrolled, unit strides, vectorizes */
            const float *restrict i0 = in[0] + c0, *restrict i1 = in[1] + c0,
                                  *restrict i2 = in[2] + c0, *restrict i3 = in[3] + c0;
            float *restrict yc = yt + c0;
            for (int64_t c = 0; c < nc; c++)
                yc[c] = silu(wt[0][c] * i0[c] + wt[1][c] * i1[c] + wt[2][c] * i2[c] +
                             wt[3][c] * i3[c]);
        } else {
            for (int64_t c = c0; c < c1; c++) {
                float sum = 0.0f;
                for (int j = 0; j < kernel; j++) sum += w[c * kernel + j] * in[j][c];
                yt[c] = silu(sum);
            }
        }
    }
    /* keep the last kernel-1 inputs: shift the old state down when the batch is short */
    for (int64_t j = 0; j < hist; j++) {
        int64_t src = n_tokens - hist + j;
        float *dst = state + j * n_ch;
        if (src >= 0)
            memcpy(dst + c0, x + src * x_stride + c0, (size_t)(c1 - c0) * sizeof(float));
        else /* src + hist > j: reads a row not yet overwritten */
            memmove(dst + c0, state + (hist + src) * n_ch + c0, (size_t)(c1 - c0) * sizeof(float));
    }
}

/* ---- small per-token operations ------------------------------------------- */

/* 16 independent partial sums: vectorizes without reassociation flags */
static inline float dot(const float *restrict a, const float *restrict b, int64_t n) {
    float s[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) s[l] += a[i + l] * b[i + l];
    for (int l = 0; l < 8; l++) s[l] += s[l + 8];
    float sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static inline void axpy(float *restrict y, float a, const float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

HOT void halo_deltanet_l2_norm(float *x, int64_t n, float eps, float scale) {
    const float f = scale / sqrtf(dot(x, x, n) + eps);
    for (int64_t i = 0; i < n; i++) x[i] *= f;
}

void halo_deltanet_gates(const float *alpha, const float *b, const float *a,
                         const float *dt_bias, int64_t n_heads, float *g, float *beta) {
    for (int64_t h = 0; h < n_heads; h++) {
        const float s = alpha[h] + dt_bias[h];
        const float softplus = s > 20.0f ? s : log1pf(expf(s)); /* torch's threshold */
        g[h] = a[h] * softplus;
        beta[h] = 1.0f / (1.0f + expf(-b[h]));
    }
}

HOT void halo_deltanet_norm_gated(float *restrict x, const float *restrict z,
                                  const float *restrict w, int64_t n, float eps) {
    const float f = 1.0f / sqrtf(dot(x, x, n) / (float)n + eps);
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * f * w[i] * silu(z[i]);
}

/* ---- products on row pointers ------------------------------------------------ */

/* A small product on row pointers, the building block of both forms:
 *     y[r][0..nc) = beta * y[r][0..nc) + sum_{d < nk} a[r][d] * B[d][0..nc)
 * for r < R (R is a constant at each call, so the R accumulators of 16 columns
 * live in registers while B's rows stream past). beta == 0 never reads y. */
typedef float v16 __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) void
gemm_rows(const int R, const float *const *a, int64_t nk, const float *B, int64_t b_stride,
          int64_t nc, float beta, float *const *y) {
    int64_t j = 0;
    for (; j + 16 <= nc; j += 16) {
        v16 acc[8];
        for (int r = 0; r < R; r++) acc[r] = (v16){0};
        for (int64_t d = 0; d < nk; d++) {
            v16 b;
            memcpy(&b, B + d * b_stride + j, sizeof b);
            for (int r = 0; r < R; r++) acc[r] += a[r][d] * b;
        }
        for (int r = 0; r < R; r++) {
            v16 old = (v16){0};
            if (beta != 0.0f) memcpy(&old, y[r] + j, sizeof old);
            old = beta * old + acc[r];
            memcpy(y[r] + j, &old, sizeof old);
        }
    }
    for (; j < nc; j++)
        for (int r = 0; r < R; r++) {
            float sum = 0.0f;
            for (int64_t d = 0; d < nk; d++) sum += a[r][d] * B[d * b_stride + j];
            y[r][j] = (beta != 0.0f ? beta * y[r][j] : 0.0f) + sum;
        }
}

/* y rows = rows(a) x B for n rows (pointer arrays), in blocks of 8 then singles. */
static inline __attribute__((always_inline)) void
gemm(int64_t n, const float *const *a, int64_t nk, const float *B, int64_t b_stride, int64_t nc,
     float beta, float *const *y) {
    int64_t r = 0;
    for (; r + 8 <= n; r += 8) gemm_rows(8, a + r, nk, B, b_stride, nc, beta, y + r);
    for (; r < n; r++) gemm_rows(1, a + r, nk, B, b_stride, nc, beta, y + r);
}

/* ---- recurrent form ------------------------------------------------------- */

static inline int64_t key_head(const halo_deltanet_args *a, int64_t h) {
    return a->tiled ? h % a->n_k_heads : h / (a->n_v_heads / a->n_k_heads);
}

HOT void halo_deltanet_recurrent(const halo_deltanet_args *a, int ith, int nth) {
    const int64_t dk = a->dk, dv = a->dv;
    int64_t h0, h1;
    split(a->n_v_heads, ith, nth, &h0, &h1);
    float kv[HALO_DELTANET_MAX_DIM], sq[HALO_DELTANET_MAX_DIM];
    const fp_mode mode = flush_denormals();
    for (int64_t h = h0; h < h1; h++) {
        const int64_t kh = key_head(a, h);
        float *S = a->state + h * dk * dv;
        for (int64_t t = 0; t < a->n_tokens; t++) {
            const float *restrict q = a->q + t * a->qk_stride + kh * dk;
            const float *restrict k = a->k + t * a->qk_stride + kh * dk;
            const float *restrict v = a->v + t * a->v_stride + h * dv;
            float *restrict o = a->o + t * a->o_stride + h * dv;
            const float decay = expf(a->g[t * a->gb_stride + h]);
            const float beta = a->beta[t * a->gb_stride + h];
            /* pass 1 reads S once for S^T k and S^T q. Since the new state is
             * S' = decay S + k delta^T, its output is
             *     S'^T q = decay S^T q + (k.q) delta
             * and pass 2 only writes S'. */
            const float *rows[2] = {k, q};
            float *outs[2] = {kv, sq};
            gemm_rows(2, rows, dk, S, dv, dv, 0.0f, outs);
            const float kq = dot(k, q, dk);
            for (int64_t j = 0; j < dv; j++) {
                kv[j] = (v[j] - decay * kv[j]) * beta; /* delta */
                o[j] = decay * sq[j] + kq * kv[j];
            }
            for (int64_t d = 0; d < dk; d++) {
                const float kd = k[d];
                float *restrict Sd = S + d * dv;
                for (int64_t j = 0; j < dv; j++) Sd[j] = Sd[j] * decay + kd * kv[j];
            }
        }
    }
    restore_fp_mode(mode);
}

/* ---- chunked form ----------------------------------------------------------- */

size_t halo_deltanet_work_floats(int64_t chunk, int64_t dk, int64_t dv) {
    /* c, e, e' [C]; Qe [C][dk], Wn [C][dk], U [C][dv], A, P [C][C], KtT [dk][C],
     * and row-pointer tables (as floats' worth of pointers: 8 tables of C or dk) */
    const int64_t ptr = (int64_t)(sizeof(void *) / sizeof(float));
    const int64_t rows = chunk > dk ? chunk : dk;
    return (size_t)(3 * chunk + 2 * chunk * dk + chunk * dv + 2 * chunk * chunk + dk * chunk +
                    8 * rows * ptr + 16);
}

HOT void halo_deltanet_chunked(const halo_deltanet_args *a, int64_t chunk, float *work, int ith,
                               int nth) {
    const int64_t dk = a->dk, dv = a->dv, C = chunk;
    const int64_t rows = C > dk ? C : dk;
    int64_t h0, h1;
    split(a->n_v_heads, ith, nth, &h0, &h1);
    float *c = work, *e = c + C, *e2 = e + C, *Qe = e2 + C, *Wn = Qe + C * dk, *U = Wn + C * dk;
    float *A = U + C * dv, *P = A + C * C, *KtT = P + C * C;
    /* row-pointer tables, pointer-aligned */
    uintptr_t pbase = ((uintptr_t)(KtT + dk * C) + 15) & ~(uintptr_t)15;
    const float **pa = (const float **)pbase, **pb = pa + rows;
    float **py = (float **)(pb + rows), **pz = py + rows;
    const fp_mode mode = flush_denormals();
    for (int64_t h = h0; h < h1; h++) {
        const int64_t kh = key_head(a, h);
        float *S = a->state + h * dk * dv;
        for (int64_t t0 = 0; t0 < a->n_tokens; t0 += C) {
            const int64_t n = a->n_tokens - t0 < C ? a->n_tokens - t0 : C;
#define Q(i) (a->q + (t0 + (i)) * a->qk_stride + kh * dk)
#define K(i) (a->k + (t0 + (i)) * a->qk_stride + kh * dk)
#define V(i) (a->v + (t0 + (i)) * a->v_stride + h * dv)
#define O(i) (a->o + (t0 + (i)) * a->o_stride + h * dv)
#define G(i) (a->g[(t0 + (i)) * a->gb_stride + h])
#define B(i) (a->beta[(t0 + (i)) * a->gb_stride + h])
            float run = 0.0f;
            for (int64_t i = 0; i < n; i++) c[i] = run += G(i);
            for (int64_t i = 0; i < n; i++) e[i] = expf(c[i]), e2[i] = expf(c[n - 1] - c[i]);
            /* K K^T and Q K^T by products against K transposed (in KtT for now),
             * then masked and decayed into A (strictly lower) and P (lower with
             * the diagonal) */
            for (int64_t i = 0; i < n; i++) {
                const float *ki = K(i);
                for (int64_t d = 0; d < dk; d++) KtT[d * C + i] = ki[d];
                pb[i] = ki, pa[i] = Q(i), py[i] = A + i * C, pz[i] = P + i * C;
            }
            gemm(n, pb, dk, KtT, C, n, 0.0f, py);
            gemm(n, pa, dk, KtT, C, n, 0.0f, pz);
            for (int64_t i = 0; i < n; i++) {
                const float bi = B(i), ci = c[i];
                float *Ai = A + i * C, *Pi = P + i * C;
                for (int64_t m = 0; m < n; m++) {
                    const float decay = m <= i ? exp_fast(ci - c[m]) : 0.0f;
                    Ai[m] = m < i ? -bi * Ai[m] * decay : 0.0f;
                    Pi[m] *= decay;
                }
                const float *ki = K(i), *qi = Q(i), *vi = V(i);
                float *qe = Qe + i * dk, *wn = Wn + i * dk, *u = U + i * dv;
                for (int64_t d = 0; d < dk; d++) qe[d] = e[i] * qi[d], wn[d] = -bi * e[i] * ki[d];
                for (int64_t j = 0; j < dv; j++) u[j] = bi * vi[j];
            }
            /* U = (I - A)^-1 U and Wn = (I - A)^-1 Wn, in blocks of 8 rows: the rows
             * above a block by a product, the triangle inside it by substitution */
            for (int64_t i0 = 0; i0 < n; i0 += 8) {
                const int64_t R = n - i0 < 8 ? n - i0 : 8;
                for (int64_t r = 0; r < R; r++) {
                    pa[r] = A + (i0 + r) * C;
                    py[r] = U + (i0 + r) * dv;
                    pz[r] = Wn + (i0 + r) * dk;
                }
                if (i0 > 0) {
                    gemm(R, pa, i0, U, dv, dv, 1.0f, py);
                    gemm(R, pa, i0, Wn, dk, dk, 1.0f, pz);
                }
                for (int64_t i = i0 + 1; i < i0 + R; i++)
                    for (int64_t m = i0; m < i; m++) {
                        axpy(U + i * dv, A[i * C + m], U + m * dv, dv);
                        axpy(Wn + i * dk, A[i * C + m], Wn + m * dk, dk);
                    }
            }
            /* v' = u - W S0 (into U); o = (e q) S0 + P v' */
            for (int64_t i = 0; i < n; i++) {
                pa[i] = Wn + i * dk, py[i] = U + i * dv;
                pb[i] = Qe + i * dk, pz[i] = O(i);
            }
            gemm(n, pa, dk, S, dv, dv, 1.0f, py);
            gemm(n, pb, dk, S, dv, dv, 0.0f, pz);
            for (int64_t i = 0; i < n; i++) pa[i] = P + i * C;
            for (int64_t i0 = 0; i0 < n; i0 += 8) { /* P is lower triangular */
                const int64_t R = n - i0 < 8 ? n - i0 : 8;
                gemm(R, pa + i0, i0 + R, U, dv, dv, 1.0f, pz + i0);
            }
            /* S = e^{c_n} S0 + sum_i e^{c_n - c_i} k_i v'_i^T */
            for (int64_t i = 0; i < n; i++) {
                const float *ki = K(i);
                for (int64_t d = 0; d < dk; d++) KtT[d * C + i] = e2[i] * ki[d];
            }
            for (int64_t d = 0; d < dk; d++) pa[d] = KtT + d * C, py[d] = S + d * dv;
            gemm(dk, pa, n, U, dv, dv, e[n - 1], py);
#undef Q
#undef K
#undef V
#undef O
#undef G
#undef B
        }
    }
    restore_fp_mode(mode);
}
