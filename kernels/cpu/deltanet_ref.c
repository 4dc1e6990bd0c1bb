/* Scalar references of the Gated DeltaNet kernels: the math written as in the
 * original implementation (one token, one head at a time, double accumulators),
 * the oracle that the recurrent and chunked forms are tested against. */
#include "kernels/kernels.h"

#include <math.h>

void halo_deltanet_conv_ref(const float *x, int64_t x_stride, int64_t n_tokens, int64_t n_ch,
                            int kernel, const float *w, float *state, float *y,
                            int64_t y_stride) {
    for (int64_t c = 0; c < n_ch; c++) {
        for (int64_t t = 0; t < n_tokens; t++) {
            double sum = 0;
            for (int j = 0; j < kernel; j++) {
                int64_t src = t - (kernel - 1) + j; /* < 0: from the state */
                float in = src >= 0 ? x[src * x_stride + c] : state[(kernel - 1 + src) * n_ch + c];
                sum += (double)w[c * kernel + j] * in;
            }
            y[t * y_stride + c] = (float)(sum / (1.0 + exp(-sum)));
        }
        /* the new state: the last kernel-1 inputs (reaching into the old state
         * when the batch is shorter than that) */
        float last[HALO_DELTANET_MAX_CONV];
        for (int j = 0; j < kernel - 1; j++) {
            int64_t src = n_tokens - (kernel - 1) + j;
            last[j] = src >= 0 ? x[src * x_stride + c] : state[(kernel - 1 + src) * n_ch + c];
        }
        for (int j = 0; j < kernel - 1; j++) state[j * n_ch + c] = last[j];
    }
}

void halo_deltanet_ref(const halo_deltanet_args *a) {
    const int64_t dk = a->dk, dv = a->dv, group = a->n_v_heads / a->n_k_heads;
    double kv[HALO_DELTANET_MAX_DIM];
    for (int64_t h = 0; h < a->n_v_heads; h++) {
        const int64_t kh = a->tiled ? h % a->n_k_heads : h / group;
        float *S = a->state + h * dk * dv;
        for (int64_t t = 0; t < a->n_tokens; t++) {
            const float *q = a->q + t * a->qk_stride + kh * dk;
            const float *k = a->k + t * a->qk_stride + kh * dk;
            const float *v = a->v + t * a->v_stride + h * dv;
            const double decay = exp((double)a->g[t * a->gb_stride + h]);
            const double beta = a->beta[t * a->gb_stride + h];
            for (int64_t i = 0; i < dk * dv; i++) S[i] = (float)(S[i] * decay);
            for (int64_t j = 0; j < dv; j++) {
                double sum = 0;
                for (int64_t d = 0; d < dk; d++) sum += (double)S[d * dv + j] * k[d];
                kv[j] = (v[j] - sum) * beta; /* delta */
            }
            for (int64_t d = 0; d < dk; d++)
                for (int64_t j = 0; j < dv; j++) S[d * dv + j] = (float)(S[d * dv + j] + k[d] * kv[j]);
            float *o = a->o + t * a->o_stride + h * dv;
            for (int64_t j = 0; j < dv; j++) {
                double sum = 0;
                for (int64_t d = 0; d < dk; d++) sum += (double)S[d * dv + j] * q[d];
                o[j] = (float)sum;
            }
        }
    }
}
