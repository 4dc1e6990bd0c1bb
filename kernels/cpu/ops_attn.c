/*
 * Attention of one token's query heads (those sharing one KV head) over a paged
 * KV cache. The cache keeps rows in their stored type (f16 by default, q8_0 /
 * q4_0 to save memory); each page's rows of this head are decoded once into
 * f32 scratch and used by every query head of the group (GQA), and the softmax
 * runs online over the pages (running max, running sum, rescaled accumulator),
 * so nothing proportional to the context length is ever materialized.
 */
#include "kernels/kernels.h"
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t halo_attn_scratch_floats(int page_size, int head_dim_k, int head_dim_v, int n_q) {
    return (size_t)page_size * (size_t)(head_dim_k + head_dim_v + 1) +
           (size_t)n_q * (size_t)(head_dim_v + 2);
}

static void decode_row(int type, const char *src, float *dst, int n) {
    if (type == 0 /* HALO_TYPE_F32 */) {
        memcpy(dst, src, (size_t)n * sizeof *dst);
        return;
    }
    halo_type_get(type)->to_float(src, dst, n);
}

static float dot(const float *a, const float *b, int n) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    float sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static const char *k_row(const halo_attn_kv *kv, int32_t p) {
    return kv->k_base + (size_t)kv->pages[p / kv->page_size] * kv->k_page_bytes +
           (size_t)(p % kv->page_size) * kv->k_row_bytes + kv->k_head_offset;
}
static const char *v_row(const halo_attn_kv *kv, int32_t p) {
    return kv->v_base + (size_t)kv->pages[p / kv->page_size] * kv->v_page_bytes +
           (size_t)(p % kv->page_size) * kv->v_row_bytes + kv->v_head_offset;
}

void halo_attn_paged(const halo_attn_kv *kv, const float *q, int n_q, int head_dim_k,
                     int head_dim_v, int32_t n_kv, float scale, float *out, float *scratch) {
    const int ps = kv->page_size, dk = head_dim_k, dv = head_dim_v;
    float *kbuf = scratch, *vbuf = kbuf + (size_t)ps * dk, *s = vbuf + (size_t)ps * dv;
    float *acc = s + ps, *m = acc + (size_t)n_q * dv, *l = m + n_q;
    for (int h = 0; h < n_q; h++) {
        m[h] = -INFINITY;
        l[h] = 0;
    }
    memset(acc, 0, (size_t)n_q * dv * sizeof *acc);
    for (int32_t p0 = 0; p0 < n_kv; p0 += ps) {
        int n = n_kv - p0 < ps ? (int)(n_kv - p0) : ps;
        for (int r = 0; r < n; r++) {
            decode_row(kv->type_k, k_row(kv, p0 + r), kbuf + (size_t)r * dk, dk);
            decode_row(kv->type_v, v_row(kv, p0 + r), vbuf + (size_t)r * dv, dv);
        }
        for (int h = 0; h < n_q; h++) {
            const float *qh = q + (size_t)h * dk;
            float mx = -INFINITY;
            for (int r = 0; r < n; r++) {
                s[r] = dot(qh, kbuf + (size_t)r * dk, dk) * scale;
                mx = s[r] > mx ? s[r] : mx;
            }
            float m_new = mx > m[h] ? mx : m[h];
            float corr = expf(m[h] - m_new); /* 0 on the first page (m = -inf) */
            float *ah = acc + (size_t)h * dv;
            float lsum = l[h] * corr;
            for (int d = 0; d < dv; d++) ah[d] *= corr;
            for (int r = 0; r < n; r++) {
                float pr = expf(s[r] - m_new);
                lsum += pr;
                const float *vr = vbuf + (size_t)r * dv;
                for (int d = 0; d < dv; d++) ah[d] += pr * vr[d];
            }
            l[h] = lsum;
            m[h] = m_new;
        }
    }
    for (int h = 0; h < n_q; h++) {
        float inv = l[h] > 0 ? 1.0f / l[h] : 0.0f;
        for (int d = 0; d < dv; d++) out[(size_t)h * dv + d] = acc[(size_t)h * dv + d] * inv;
    }
}

void halo_attn_paged_ref(const halo_attn_kv *kv, const float *q, int n_q, int head_dim_k,
                         int head_dim_v, int32_t n_kv, float scale, float *out) {
    float *krow = malloc(sizeof(float) * (size_t)head_dim_k);
    float *vrow = malloc(sizeof(float) * (size_t)head_dim_v);
    double *sc = malloc(sizeof(double) * (size_t)(n_kv > 0 ? n_kv : 1));
    double *o = malloc(sizeof(double) * (size_t)head_dim_v);
    if (!krow || !vrow || !sc || !o) abort();
    for (int h = 0; h < n_q; h++) {
        double mx = -INFINITY, sum = 0;
        for (int32_t p = 0; p < n_kv; p++) {
            decode_row(kv->type_k, k_row(kv, p), krow, head_dim_k);
            double d = 0;
            for (int i = 0; i < head_dim_k; i++) d += (double)q[(size_t)h * head_dim_k + i] * krow[i];
            sc[p] = d * scale;
            if (sc[p] > mx) mx = sc[p];
        }
        for (int i = 0; i < head_dim_v; i++) o[i] = 0;
        for (int32_t p = 0; p < n_kv; p++) {
            double w = exp(sc[p] - mx);
            sum += w;
            decode_row(kv->type_v, v_row(kv, p), vrow, head_dim_v);
            for (int i = 0; i < head_dim_v; i++) o[i] += w * vrow[i];
        }
        for (int i = 0; i < head_dim_v; i++)
            out[(size_t)h * head_dim_v + i] = (float)(sum > 0 ? o[i] / sum : 0);
    }
    free(krow);
    free(vrow);
    free(sc);
    free(o);
}
