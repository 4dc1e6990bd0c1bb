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

/* e^x for x <= 88 without a library call, so loops of it vectorize: x = n ln2 + r,
 * |r| <= ln2/2, e^r by its degree-6 Taylor polynomial (relative error < 2e-7,
 * about 2 ulp), 2^n built in the exponent bits; x is clamped to [-87, 88]. */
static inline float exp_fast(float x) {
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
    union { uint32_t u; float f; } scale = {.u = (uint32_t)((int32_t)n + 127) << 23};
    return p * scale.f;
}

static inline float silu(float x) { return x / (1.0f + exp_fast(-x)); }

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
    for (int64_t t = 0; t < n_tokens; t++) {
        float *restrict yt = y + t * y_stride;
        for (int j = 0; j < kernel; j++) {
            int64_t src = t - hist + j;
            in[j] = src >= 0 ? x + src * x_stride : state + (hist + src) * n_ch;
        }
        if (kernel == 4) { /* Qwen3.5's width, unrolled so the channel loop vectorizes */
            const float *restrict i0 = in[0], *restrict i1 = in[1], *restrict i2 = in[2],
                                  *restrict i3 = in[3];
            for (int64_t c = c0; c < c1; c++)
                yt[c] = silu(w[c * 4] * i0[c] + w[c * 4 + 1] * i1[c] + w[c * 4 + 2] * i2[c] +
                             w[c * 4 + 3] * i3[c]);
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

/* ---- recurrent form ------------------------------------------------------- */

static inline int64_t key_head(const halo_deltanet_args *a, int64_t h) {
    return a->tiled ? h % a->n_k_heads : h / (a->n_v_heads / a->n_k_heads);
}

HOT void halo_deltanet_recurrent(const halo_deltanet_args *a, int ith, int nth) {
    const int64_t dk = a->dk, dv = a->dv;
    int64_t h0, h1;
    split(a->n_v_heads, ith, nth, &h0, &h1);
    float delta[HALO_DELTANET_MAX_DIM] __attribute__((aligned(64)));
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
            /* pass 1: (decayed S)^T k = decay * S^T k */
            for (int64_t j = 0; j < dv; j++) delta[j] = 0.0f;
            for (int64_t d = 0; d < dk; d++) {
                const float kd = k[d];
                axpy(delta, kd, S + d * dv, dv);
            }
            for (int64_t j = 0; j < dv; j++) delta[j] = (v[j] - decay * delta[j]) * beta;
            /* pass 2: S = decay S + k delta^T, o = S^T q */
            for (int64_t j = 0; j < dv; j++) o[j] = 0.0f;
            for (int64_t d = 0; d < dk; d++) {
                const float kd = k[d], qd = q[d];
                float *restrict Sd = S + d * dv;
                for (int64_t j = 0; j < dv; j++) {
                    const float sj = Sd[j] * decay + kd * delta[j];
                    Sd[j] = sj;
                    o[j] += sj * qd;
                }
            }
        }
    }
}

/* ---- chunked form ----------------------------------------------------------- */

size_t halo_deltanet_work_floats(int64_t chunk, int64_t dk, int64_t dv) {
    /* c[C], e[C], W[C][dk], U[C][dv] */
    return (size_t)(2 * chunk + chunk * dk + chunk * dv);
}

HOT void halo_deltanet_chunked(const halo_deltanet_args *a, int64_t chunk, float *work, int ith,
                               int nth) {
    const int64_t dk = a->dk, dv = a->dv;
    int64_t h0, h1;
    split(a->n_v_heads, ith, nth, &h0, &h1);
    float *c = work, *e = c + chunk, *W = e + chunk, *U = W + chunk * dk;
    for (int64_t h = h0; h < h1; h++) {
        const int64_t kh = key_head(a, h);
        float *S = a->state + h * dk * dv;
        for (int64_t t0 = 0; t0 < a->n_tokens; t0 += chunk) {
            const int64_t n = a->n_tokens - t0 < chunk ? a->n_tokens - t0 : chunk;
#define Q(i) (a->q + (t0 + (i)) * a->qk_stride + kh * dk)
#define K(i) (a->k + (t0 + (i)) * a->qk_stride + kh * dk)
#define V(i) (a->v + (t0 + (i)) * a->v_stride + h * dv)
#define G(i) (a->g[(t0 + (i)) * a->gb_stride + h])
#define B(i) (a->beta[(t0 + (i)) * a->gb_stride + h])
            float run = 0.0f;
            for (int64_t i = 0; i < n; i++) c[i] = run += G(i);
            /* u and w by forward substitution; A_im kept for the rows below */
            for (int64_t i = 0; i < n; i++) {
                const float bi = B(i), ei = expf(c[i]);
                float *Ui = U + i * dv, *Wi = W + i * dk;
                const float *vi = V(i), *ki = K(i);
                for (int64_t j = 0; j < dv; j++) Ui[j] = bi * vi[j];
                for (int64_t d = 0; d < dk; d++) Wi[d] = bi * ei * ki[d];
                for (int64_t m = 0; m < i; m++) {
                    const float aim = -bi * dot(ki, K(m), dk) * expf(c[i] - c[m]);
                    axpy(Ui, aim, U + m * dv, dv);
                    axpy(Wi, aim, W + m * dk, dk);
                }
            }
            /* v' = u - W S0 (in U) */
            for (int64_t i = 0; i < n; i++) {
                float *Ui = U + i * dv;
                const float *Wi = W + i * dk;
                for (int64_t d = 0; d < dk; d++) axpy(Ui, -Wi[d], S + d * dv, dv);
            }
            /* o_i = e^{c_i} S0^T q_i + sum_{m<=i} (q_i.k_m) e^{c_i - c_m} v'_m */
            for (int64_t i = 0; i < n; i++) {
                float *o = a->o + (t0 + i) * a->o_stride + h * dv;
                const float *qi = Q(i);
                for (int64_t j = 0; j < dv; j++) o[j] = 0.0f;
                for (int64_t d = 0; d < dk; d++) axpy(o, qi[d], S + d * dv, dv);
                const float ei = expf(c[i]);
                for (int64_t j = 0; j < dv; j++) o[j] *= ei;
                for (int64_t m = 0; m <= i; m++)
                    axpy(o, dot(qi, K(m), dk) * expf(c[i] - c[m]), U + m * dv, dv);
            }
            /* S = e^{c_n} S0 + sum_i e^{c_n - c_i} k_i v'_i^T */
            const float en = expf(c[n - 1]);
            for (int64_t i = 0; i < n; i++) e[i] = expf(c[n - 1] - c[i]);
            for (int64_t d = 0; d < dk; d++) {
                float *Sd = S + d * dv;
                for (int64_t j = 0; j < dv; j++) Sd[j] *= en;
                for (int64_t i = 0; i < n; i++) axpy(Sd, e[i] * K(i)[d], U + i * dv, dv);
            }
#undef Q
#undef K
#undef V
#undef G
#undef B
        }
    }
}
