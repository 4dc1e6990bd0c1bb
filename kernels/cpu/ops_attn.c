/*
 * Attention of a block of query tokens (one sequence's consecutive positions,
 * all the query heads that share one KV head) over a paged KV cache.
 *
 * The cache keeps rows in their stored type (f16 by default, q8_0 / q4_0 to
 * save memory). Each page's rows of this KV head are decoded once into f32
 * scratch and used by every query token of the block and every query head of
 * the group (GQA), so a prefill decodes the cache once per block of tokens, not
 * once per token. The softmax runs online over the pages (running max, running
 * sum, rescaled accumulator), so nothing proportional to the context length is
 * materialized; each token sees the positions up to its own (causal).
 */
#include "kernels/kernels.h"
#include "quant/quant.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* The loops below are written to vectorize; GCC compiles them for AVX-512,
 * AVX2 and the baseline and the loader picks (as in deltanet.c). */
#if defined(__x86_64__) && defined(__linux__) && !defined(__clang__) && __GNUC__ >= 8
#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT
#endif

size_t halo_attn_scratch_floats(int page_size, int head_dim_k, int head_dim_v, int n_q) {
    return (size_t)page_size * (size_t)(head_dim_k + head_dim_v + 1) +
           (size_t)HALO_ATTN_QBLOCK * (size_t)n_q * (size_t)(head_dim_v + 2);
}

/* ---- decoding cache rows --------------------------------------------------------- */

#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) static void f16_row_f16c(const uint16_t *src, float *dst,
                                                               int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = halo_fp16_to_fp32(src[i]);
}

/* F16C comes with halo's AVX2 path (halo_cpu_path_supported checks it), and
 * HALO_CPU=scalar turns it off with the rest. */
static bool have_f16c(void) { return halo_cpu_path_get() >= HALO_CPU_AVX2; }
#endif

HOT static void bf16_row(const uint16_t *src, float *dst, int n) {
    for (int i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(dst + i, &u, 4);
    }
}

static void decode_row(int type, const char *src, float *dst, int n) {
    switch (type) {
    case HALO_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof *dst); return;
    case HALO_TYPE_F16:
#if defined(__x86_64__)
        if (have_f16c()) {
            f16_row_f16c((const uint16_t *)(const void *)src, dst, n);
            return;
        }
#endif
        break;
    case HALO_TYPE_BF16: bf16_row((const uint16_t *)(const void *)src, dst, n); return;
    default: break;
    }
    halo_type_get(type)->to_float(src, dst, n);
}

static const char *k_row(const halo_attn_kv *kv, int32_t p) {
    return kv->k_base + (size_t)kv->pages[p / kv->page_size] * kv->k_page_bytes +
           (size_t)(p % kv->page_size) * kv->k_row_bytes + kv->k_head_offset;
}
static const char *v_row(const halo_attn_kv *kv, int32_t p) {
    return kv->v_base + (size_t)kv->pages[p / kv->page_size] * kv->v_page_bytes +
           (size_t)(p % kv->page_size) * kv->v_row_bytes + kv->v_head_offset;
}

/* ---- the online-softmax update of one (token, head) over one page ------------------ */

HOT static float dot(const float *a, const float *b, int n) {
    float s[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) s[k] += a[i + k] * b[i + k];
    float sum = 0;
    for (int k = 0; k < 16; k++) sum += s[k];
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* rows [0, n) of kbuf/vbuf against query qh: update (m, l, acc) */
HOT static void page_update(const float *qh, const float *kbuf, const float *vbuf, int n, int dk,
                            int dv, float scale, float *s, float *m, float *l, float *acc) {
    float mx = -INFINITY;
    for (int r = 0; r < n; r++) {
        s[r] = dot(qh, kbuf + (size_t)r * dk, dk) * scale;
        mx = s[r] > mx ? s[r] : mx;
    }
    float m_new = mx > *m ? mx : *m;
    float corr = expf(*m - m_new); /* 0 on the first page (m = -inf) */
    float lsum = *l * corr;
    if (corr != 1.0f)
        for (int d = 0; d < dv; d++) acc[d] *= corr;
    for (int r = 0; r < n; r++) {
        float pr = expf(s[r] - m_new);
        lsum += pr;
        const float *vr = vbuf + (size_t)r * dv;
        for (int d = 0; d < dv; d++) acc[d] += pr * vr[d];
    }
    *l = lsum;
    *m = m_new;
}

/* Tokens [0, nt) (q + t * q_stride, n_kv[t] visible positions) over the
 * positions [p_begin, p_end) (p_begin a multiple of the page size): update the
 * running (m, l, acc) of each (token, head), i = t * n_q + h. */
static void attend_range(const halo_attn_kv *kv, const float *q, size_t q_stride, int nt,
                         const int32_t *n_kv, int n_q, int dk, int dv, float scale,
                         int32_t p_begin, int32_t p_end, float *acc, float *m, float *l,
                         float *scratch) {
    const int ps = kv->page_size;
    float *kbuf = scratch, *vbuf = kbuf + (size_t)ps * dk, *s = vbuf + (size_t)ps * dv;
    int32_t max_kv = 0;
    for (int t = 0; t < nt; t++) max_kv = n_kv[t] > max_kv ? n_kv[t] : max_kv;
    if (p_end > max_kv) p_end = max_kv;
    for (int32_t p0 = p_begin; p0 < p_end; p0 += ps) {
        int n = p_end - p0 < ps ? (int)(p_end - p0) : ps;
        for (int r = 0; r < n; r++) {
            decode_row(kv->type_k, k_row(kv, p0 + r), kbuf + (size_t)r * dk, dk);
            decode_row(kv->type_v, v_row(kv, p0 + r), vbuf + (size_t)r * dv, dv);
        }
        for (int t = 0; t < nt; t++) {
            int32_t lim = n_kv[t] - p0; /* rows this token may see */
            if (lim <= 0) continue;
            int rows = lim < n ? (int)lim : n;
            for (int h = 0; h < n_q; h++) {
                int i = t * n_q + h;
                page_update(q + (size_t)t * q_stride + (size_t)h * dk, kbuf, vbuf, rows, dk, dv,
                            scale, s, &m[i], &l[i], acc + (size_t)i * dv);
            }
        }
    }
}

static void state_init(int nh, int dv, float *acc, float *m, float *l) {
    for (int i = 0; i < nh; i++) {
        m[i] = -INFINITY;
        l[i] = 0;
    }
    memset(acc, 0, (size_t)nh * dv * sizeof *acc);
}

void halo_attn_paged(const halo_attn_kv *kv, const float *q, size_t q_stride, int n_tok,
                     const int32_t *n_kv, int n_q, int head_dim_k, int head_dim_v, float scale,
                     float *out, size_t out_stride, float *scratch) {
    const int ps = kv->page_size, dk = head_dim_k, dv = head_dim_v;
    float *acc = scratch + (size_t)ps * (dk + dv + 1);
    for (int t0 = 0; t0 < n_tok; t0 += HALO_ATTN_QBLOCK) {
        const int nt = n_tok - t0 < HALO_ATTN_QBLOCK ? n_tok - t0 : HALO_ATTN_QBLOCK;
        const int nh = nt * n_q;
        float *m = acc + (size_t)nh * dv, *l = m + nh;
        state_init(nh, dv, acc, m, l);
        attend_range(kv, q + (size_t)t0 * q_stride, q_stride, nt, n_kv + t0, n_q, dk, dv, scale, 0,
                     INT32_MAX, acc, m, l, scratch);
        for (int t = 0; t < nt; t++)
            for (int h = 0; h < n_q; h++) {
                int i = t * n_q + h;
                float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
                float *o = out + (size_t)(t0 + t) * out_stride + (size_t)h * dv;
                for (int d = 0; d < dv; d++) o[d] = acc[(size_t)i * dv + d] * inv;
            }
    }
}

void halo_attn_paged_part(const halo_attn_kv *kv, const float *q, int32_t n_kv, int n_q,
                          int head_dim_k, int head_dim_v, float scale, int32_t p_begin,
                          int32_t p_end, float *part, float *scratch) {
    float *acc = part, *m = acc + (size_t)n_q * head_dim_v, *l = m + n_q;
    state_init(n_q, head_dim_v, acc, m, l);
    attend_range(kv, q, 0, 1, &n_kv, n_q, head_dim_k, head_dim_v, scale, p_begin, p_end, acc, m,
                 l, scratch);
}

void halo_attn_merge(const float *parts, size_t part_stride, int n_parts, int n_q, int head_dim_v,
                     float *out) {
    const int dv = head_dim_v;
    for (int h = 0; h < n_q; h++) {
        float mx = -INFINITY, lsum = 0;
        for (int j = 0; j < n_parts; j++) {
            float mj = parts[j * part_stride + (size_t)n_q * dv + h];
            mx = mj > mx ? mj : mx;
        }
        float *o = out + (size_t)h * dv;
        for (int d = 0; d < dv; d++) o[d] = 0;
        if (mx == -INFINITY) continue; /* no position seen */
        for (int j = 0; j < n_parts; j++) {
            const float *pj = parts + j * part_stride;
            float w = expf(pj[(size_t)n_q * dv + h] - mx); /* 0 for an empty part */
            lsum += pj[(size_t)n_q * dv + n_q + h] * w;
            for (int d = 0; d < dv; d++) o[d] += pj[(size_t)h * dv + d] * w;
        }
        float inv = lsum > 0 ? 1.0f / lsum : 0.0f;
        for (int d = 0; d < dv; d++) o[d] *= inv;
    }
}

void halo_attn_paged_ref(const halo_attn_kv *kv, const float *q, size_t q_stride, int n_tok,
                         const int32_t *n_kv, int n_q, int head_dim_k, int head_dim_v, float scale,
                         float *out, size_t out_stride) {
    float *krow = malloc(sizeof(float) * (size_t)head_dim_k);
    float *vrow = malloc(sizeof(float) * (size_t)head_dim_v);
    int32_t max_kv = 1;
    for (int t = 0; t < n_tok; t++) max_kv = n_kv[t] > max_kv ? n_kv[t] : max_kv;
    double *sc = malloc(sizeof(double) * (size_t)max_kv);
    double *o = malloc(sizeof(double) * (size_t)head_dim_v);
    if (!krow || !vrow || !sc || !o) abort();
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_q; h++) {
            const float *qh = q + (size_t)t * q_stride + (size_t)h * head_dim_k;
            double mx = -INFINITY, sum = 0;
            for (int32_t p = 0; p < n_kv[t]; p++) {
                halo_type_get(kv->type_k)->to_float(k_row(kv, p), krow, head_dim_k);
                double d = 0;
                for (int i = 0; i < head_dim_k; i++) d += (double)qh[i] * krow[i];
                sc[p] = d * scale;
                if (sc[p] > mx) mx = sc[p];
            }
            for (int i = 0; i < head_dim_v; i++) o[i] = 0;
            for (int32_t p = 0; p < n_kv[t]; p++) {
                double w = exp(sc[p] - mx);
                sum += w;
                halo_type_get(kv->type_v)->to_float(v_row(kv, p), vrow, head_dim_v);
                for (int i = 0; i < head_dim_v; i++) o[i] += w * vrow[i];
            }
            float *oh = out + (size_t)t * out_stride + (size_t)h * head_dim_v;
            for (int i = 0; i < head_dim_v; i++) oh[i] = (float)(sum > 0 ? o[i] / sum : 0);
        }
    free(krow);
    free(vrow);
    free(sc);
    free(o);
}
