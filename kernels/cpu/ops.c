/*
 * The small operations of a forward pass (RMS norm, RoPE, softmax, SwiGLU, MoE
 * routing) and their scalar references. The fast versions are plain loops with
 * independent accumulators so that the compiler vectorizes them without
 * -ffast-math; they cost little beside the matrix products. The exp-heavy
 * loops are also compiled for AVX-512 and AVX2, the loader picking the widest
 * the CPU has (as in deltanet.c).
 */
#include "kernels/cpu/exp_fast.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__) && !defined(__clang__) && __GNUC__ >= 8
#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT
#endif

/* ---- RMS norm ----------------------------------------------------------- */

static float sum_squares(const float *x, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += x[i + k] * x[i + k];
    float sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) sum += x[i] * x[i];
    return sum;
}

void halo_rms_norm(const float *x, const float *w, float *y, int64_t n_rows, int64_t n, float eps) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float scale = 1.0f / sqrtf(sum_squares(xr, n) / (float)n + eps);
        if (w)
            for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * scale * w[i];
        else
            for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * scale;
    }
}

void halo_rms_norm_ref(const float *x, const float *w, float *y, int64_t n_rows, int64_t n,
                       float eps) {
    for (int64_t r = 0; r < n_rows; r++) {
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += (double)x[r * n + i] * x[r * n + i];
        double scale = 1.0 / sqrt(ss / (double)n + eps);
        for (int64_t i = 0; i < n; i++)
            y[r * n + i] = (float)(x[r * n + i] * scale * (w ? (double)w[i] : 1.0));
    }
}

/* ---- RoPE ----------------------------------------------------------------- */

void halo_rope_inv_freq(float base, int n_rot, float *inv_freq) {
    for (int i = 0; i < n_rot / 2; i++)
        inv_freq[i] = (float)(1.0 / pow((double)base, (double)(2 * i) / (double)n_rot));
}

void halo_rope(float *x, int n_heads, int head_dim, int n_rot, int mode, float pos,
               const float *inv_freq) {
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        /* the angle in float, as the reference implementations compute it */
        float theta = pos * inv_freq[i];
        float c = cosf(theta), s = sinf(theta);
        int i0 = mode == HALO_ROPE_NEOX ? i : 2 * i;
        int i1 = mode == HALO_ROPE_NEOX ? i + half : 2 * i + 1;
        for (int h = 0; h < n_heads; h++) {
            float *xh = x + (int64_t)h * head_dim;
            float a = xh[i0], b = xh[i1];
            xh[i0] = a * c - b * s;
            xh[i1] = a * s + b * c;
        }
    }
}

void halo_rope_ref(float *x, int n_heads, int head_dim, int n_rot, int mode, float pos,
                   float base) {
    int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *xh = x + (int64_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            double theta = (double)pos * pow((double)base, -(double)(2 * i) / (double)n_rot);
            int i0 = mode == HALO_ROPE_NEOX ? i : 2 * i;
            int i1 = mode == HALO_ROPE_NEOX ? i + half : 2 * i + 1;
            double a = xh[i0], b = xh[i1];
            xh[i0] = (float)(a * cos(theta) - b * sin(theta));
            xh[i1] = (float)(a * sin(theta) + b * cos(theta));
        }
    }
}

/* ---- softmax -------------------------------------------------------------- */

void halo_softmax(float *x, int64_t n) {
    if (n <= 0) return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void halo_softmax_ref(float *x, int64_t n) {
    if (n <= 0) return;
    double mx = x[0], sum = 0;
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int64_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(exp((double)x[i] - mx) / sum);
}

/* ---- SiLU / SwiGLU -------------------------------------------------------- */

/* exp by halo_exp_fast (about 2 ulp): the loops vectorize, where libm's expf
 * made SwiGLU ~7 % of a kdoc-moe prefill. */
HOT void halo_silu(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + halo_exp_fast(-x[i]));
}

HOT void halo_swiglu(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + halo_exp_fast(-g[i])) * u[i];
}

HOT void halo_sigmoid_gate(float *x, const float *g, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + halo_exp_fast(-g[i]));
}

void halo_swiglu_ref(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = (float)((double)g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
}

/* ---- Walsh-Hadamard rotation ------------------------------------------------ */

HOT void halo_hadamard(float *x, int64_t n_rows, int64_t n, int block) {
    const float norm = 1.0f / sqrtf((float)block);
    for (int64_t b = 0; b < n_rows * (n / block); b++) {
        float *r = x + b * block;
        for (int h = 1; h < block; h *= 2)
            for (int i = 0; i < block; i += 2 * h)
                for (int j = i; j < i + h; j++) {
                    const float a = r[j], c = r[j + h];
                    r[j] = a + c;
                    r[j + h] = a - c;
                }
        for (int i = 0; i < block; i++) r[i] *= norm;
    }
}

void halo_hadamard_ref(float *x, int64_t n_rows, int64_t n, int block) {
    double y[1024];
    if (block > 1024) return; /* rotations of head dimensions: 1024 is plenty */
    for (int64_t b = 0; b < n_rows * (n / block); b++) {
        float *r = x + b * block;
        for (int i = 0; i < block; i++) {
            double s = 0;
            for (int j = 0; j < block; j++)
                s += (__builtin_popcount((unsigned)(i & j)) & 1) ? -(double)r[j] : (double)r[j];
            y[i] = s / sqrt((double)block);
        }
        for (int i = 0; i < block; i++) r[i] = (float)y[i];
    }
}

/* ---- MoE routing ---------------------------------------------------------- */

/* The k largest logits by repeated selection (k is small: 2-10 of up to a few
 * hundred experts); selection by logit equals selection by probability. */
static void topk_select(const float *logits, int n, int k, int32_t *ids) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < n; e++) {
            bool taken = false;
            for (int q = 0; q < j; q++) taken |= ids[q] == e;
            if (taken) continue;
            if (best < 0 || logits[e] > logits[best]) best = e;
        }
        ids[j] = best;
    }
}

void halo_topk_route(const float *logits, int n_expert, int k, bool normalize, int32_t *ids,
                     float *weights) {
    float mx = logits[0];
    for (int e = 1; e < n_expert; e++) mx = logits[e] > mx ? logits[e] : mx;
    float sum = 0;
    for (int e = 0; e < n_expert; e++) sum += expf(logits[e] - mx);
    topk_select(logits, n_expert, k, ids);
    float wsum = 0;
    for (int j = 0; j < k; j++) {
        weights[j] = expf(logits[ids[j]] - mx) / sum;
        wsum += weights[j];
    }
    if (normalize)
        for (int j = 0; j < k; j++) weights[j] /= wsum;
}

void halo_topk_route_ref(const float *logits, int n_expert, int k, bool normalize, int32_t *ids,
                         float *weights) {
    double mx = logits[0], sum = 0;
    for (int e = 1; e < n_expert; e++) mx = logits[e] > mx ? logits[e] : mx;
    for (int e = 0; e < n_expert; e++) sum += exp((double)logits[e] - mx);
    /* selection sort over a flag array: independent of topk_select */
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < n_expert; e++) {
            int q = 0;
            while (q < j && ids[q] != e) q++;
            if (q < j) continue;
            if (best < 0 || logits[e] > logits[best]) best = e;
        }
        ids[j] = best;
    }
    double wsum = 0;
    for (int j = 0; j < k; j++) wsum += exp((double)logits[ids[j]] - mx) / sum;
    for (int j = 0; j < k; j++) {
        double p = exp((double)logits[ids[j]] - mx) / sum;
        weights[j] = (float)(normalize ? p / wsum : p);
    }
}
