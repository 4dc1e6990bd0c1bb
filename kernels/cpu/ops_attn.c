/*
 * Attention of a block of query tokens (one sequence's consecutive positions,
 * all the query heads that share one KV head) over a paged KV cache.
 *
 * The cache keeps rows in their stored type (f16 by default, q8_0 / q4_0 / iq4_nl to
 * save memory). Each page's rows of this KV head are decoded once into f32
 * scratch and used by every query token of the block and every query head of
 * the group (GQA), so a prefill decodes the cache once per block of tokens, not
 * once per token. The softmax runs online over the pages (running max, running
 * sum, rescaled accumulator), so nothing proportional to the context length is
 * materialized; each token sees the positions up to its own (causal).
 *
 * A block of at least 16 (token, head) rows (a prefill) takes each page as two
 * small matrix products: the scores S^T = K_page (scale Q)^T against Q transposed
 * once per block, and acc += P V_page, the accumulators of 8 rows held in
 * registers while the page's rows stream past. Fewer rows (a decode step) take
 * one dot per (row, position).
 */
#include "kernels/cpu/exp_fast.h"
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

/* Per-thread scratch, in floats, with NH = HALO_ATTN_QBLOCK * n_q rows:
 *   kbuf [ps][dk], vbuf [ps][dv]   the page's rows in f32
 *   sT [ps][NH]                    scores (the one-row path: s [ps])
 *   p [NH][ps]                     probabilities
 *   qT [dk][NH]                    the block's scaled queries, transposed
 *   acc [NH][dv], m [NH], l [NH]   halo_attn_paged's running state */
typedef struct attn_scratch {
    float *kbuf, *vbuf, *sT, *p, *qT, *acc;
} attn_scratch;

static attn_scratch scratch_layout(float *base, int ps, int dk, int dv, int n_q) {
    const size_t nh = (size_t)HALO_ATTN_QBLOCK * (size_t)n_q;
    attn_scratch a;
    a.kbuf = base;
    a.vbuf = a.kbuf + (size_t)ps * dk;
    a.sT = a.vbuf + (size_t)ps * dv;
    a.p = a.sT + (size_t)ps * nh;
    a.qT = a.p + (size_t)ps * nh;
    a.acc = a.qT + (size_t)dk * nh;
    return a;
}

size_t halo_attn_scratch_floats(int page_size, int head_dim_k, int head_dim_v, int n_q) {
    const size_t nh = (size_t)HALO_ATTN_QBLOCK * (size_t)n_q;
    return (size_t)page_size * (size_t)(head_dim_k + head_dim_v) + 2 * (size_t)page_size * nh +
           (size_t)head_dim_k * nh + nh * (size_t)(head_dim_v + 2);
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

/* ---- the blocked page update (16 or more rows) ------------------------------------- */

typedef float v16 __attribute__((vector_size(64)));

/* y[r][0..nc) = (accum ? y[r][0..nc) : 0) + sum_{d < nk} a[r][d] B[d][0..nc), r < R;
 * R is a constant at each call, so its accumulators of 16 columns stay in registers. */
static inline __attribute__((always_inline)) void
prod_rows(const int R, const float *a, int as, int nk, const float *B, int bs, int nc,
          bool accum, float *y, int ys) {
    int j = 0;
    for (; j + 16 <= nc; j += 16) {
        v16 acc[8];
        for (int r = 0; r < R; r++) acc[r] = (v16){0};
        for (int d = 0; d < nk; d++) {
            v16 b;
            memcpy(&b, B + (size_t)d * bs + j, sizeof b);
            for (int r = 0; r < R; r++) acc[r] += a[(size_t)r * as + d] * b;
        }
        for (int r = 0; r < R; r++) {
            v16 o = acc[r];
            if (accum) {
                v16 old;
                memcpy(&old, y + (size_t)r * ys + j, sizeof old);
                o = old + acc[r];
            }
            memcpy(y + (size_t)r * ys + j, &o, sizeof o);
        }
    }
    for (; j < nc; j++)
        for (int r = 0; r < R; r++) {
            float sum = 0.0f;
            for (int d = 0; d < nk; d++) sum += a[(size_t)r * as + d] * B[(size_t)d * bs + j];
            y[(size_t)r * ys + j] = (accum ? y[(size_t)r * ys + j] : 0.0f) + sum;
        }
}

static inline __attribute__((always_inline)) void prod(int n, const float *a, int as, int nk,
                                                       const float *B, int bs, int nc, bool accum,
                                                       float *y, int ys) {
    int r = 0;
    for (; r + 8 <= n; r += 8)
        prod_rows(8, a + (size_t)r * as, as, nk, B, bs, nc, accum, y + (size_t)r * ys, ys);
    for (; r + 4 <= n; r += 4)
        prod_rows(4, a + (size_t)r * as, as, nk, B, bs, nc, accum, y + (size_t)r * ys, ys);
    for (; r < n; r++)
        prod_rows(1, a + (size_t)r * as, as, nk, B, bs, nc, accum, y + (size_t)r * ys, ys);
}

/* The nh = nt * n_q rows i = t * n_q + h (queries in w->qT, already scaled) over
 * the page's rows [0, n) in w->kbuf / w->vbuf; token t sees lim[t] of them. */
HOT static void page_block(const attn_scratch *w, int n, int ps, int dk, int dv, int nh,
                           int n_q, const int32_t *lim, float *acc, float *m, float *l) {
    const int nhp = HALO_ATTN_QBLOCK * n_q; /* the stride of sT and qT */
    float *sT = w->sT, *p = w->p;
    prod(n, w->kbuf, dk, dk, w->qT, nhp, nh, false, sT, nhp);
    for (int i = 0; i < nh; i++) {
        const int32_t li = lim[i / n_q];
        const int rows = li < n ? (int)li : n;
        float *pi = p + (size_t)i * ps;
        if (rows <= 0) {
            for (int r = 0; r < n; r++) pi[r] = 0.0f;
            continue;
        }
        float mx = -INFINITY;
        for (int r = 0; r < rows; r++) mx = sT[(size_t)r * nhp + i] > mx ? sT[(size_t)r * nhp + i] : mx;
        const float m_new = mx > m[i] ? mx : m[i];
        const float corr = expf(m[i] - m_new); /* 0 on the first page (m = -inf) */
        float lsum = l[i] * corr;
        if (corr != 1.0f)
            for (int d = 0; d < dv; d++) acc[(size_t)i * dv + d] *= corr;
        for (int r = 0; r < rows; r++) {
            const float e = halo_exp_fast(sT[(size_t)r * nhp + i] - m_new);
            pi[r] = e;
            lsum += e;
        }
        for (int r = rows; r < n; r++) pi[r] = 0.0f;
        l[i] = lsum;
        m[i] = m_new;
    }
    prod(nh, p, ps, n, w->vbuf, dv, dv, true, acc, dv);
}

/* Tokens [0, nt) (q + t * q_stride, n_kv[t] visible positions) over the
 * positions [p_begin, p_end) (p_begin a multiple of the page size): update the
 * running (m, l, acc) of each (token, head), i = t * n_q + h. */
static void attend_range(const halo_attn_kv *kv, const float *q, size_t q_stride, int nt,
                         const int32_t *n_kv, int n_q, int dk, int dv, float scale,
                         int32_t p_begin, int32_t p_end, float *acc, float *m, float *l,
                         const attn_scratch *w) {
    const int ps = kv->page_size, nh = nt * n_q;
    const bool blocked = nh >= 16;
    int32_t max_kv = 0;
    for (int t = 0; t < nt; t++) max_kv = n_kv[t] > max_kv ? n_kv[t] : max_kv;
    if (p_end > max_kv) p_end = max_kv;
    if (blocked) { /* the block's queries, scaled and transposed, once */
        const int nhp = HALO_ATTN_QBLOCK * n_q;
        for (int t = 0; t < nt; t++)
            for (int h = 0; h < n_q; h++) {
                const float *qh = q + (size_t)t * q_stride + (size_t)h * dk;
                for (int d = 0; d < dk; d++) w->qT[(size_t)d * nhp + t * n_q + h] = qh[d] * scale;
            }
    }
    for (int32_t p0 = p_begin; p0 < p_end; p0 += ps) {
        int n = p_end - p0 < ps ? (int)(p_end - p0) : ps;
        for (int r = 0; r < n; r++) {
            decode_row(kv->type_k, k_row(kv, p0 + r), w->kbuf + (size_t)r * dk, dk);
            decode_row(kv->type_v, v_row(kv, p0 + r), w->vbuf + (size_t)r * dv, dv);
        }
        if (blocked) {
            int32_t lim[HALO_ATTN_QBLOCK];
            for (int t = 0; t < nt; t++) lim[t] = n_kv[t] - p0; /* rows token t may see */
            page_block(w, n, ps, dk, dv, nh, n_q, lim, acc, m, l);
            continue;
        }
        for (int t = 0; t < nt; t++) {
            int32_t lim = n_kv[t] - p0; /* rows this token may see */
            if (lim <= 0) continue;
            int rows = lim < n ? (int)lim : n;
            for (int h = 0; h < n_q; h++) {
                int i = t * n_q + h;
                page_update(q + (size_t)t * q_stride + (size_t)h * dk, w->kbuf, w->vbuf, rows, dk,
                            dv, scale, w->sT, &m[i], &l[i], acc + (size_t)i * dv);
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
    const attn_scratch w = scratch_layout(scratch, ps, dk, dv, n_q);
    float *acc = w.acc;
    for (int t0 = 0; t0 < n_tok; t0 += HALO_ATTN_QBLOCK) {
        const int nt = n_tok - t0 < HALO_ATTN_QBLOCK ? n_tok - t0 : HALO_ATTN_QBLOCK;
        const int nh = nt * n_q;
        float *m = acc + (size_t)nh * dv, *l = m + nh;
        state_init(nh, dv, acc, m, l);
        attend_range(kv, q + (size_t)t0 * q_stride, q_stride, nt, n_kv + t0, n_q, dk, dv, scale, 0,
                     INT32_MAX, acc, m, l, &w);
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
    const attn_scratch w = scratch_layout(scratch, kv->page_size, head_dim_k, head_dim_v, n_q);
    attend_range(kv, q, 0, 1, &n_kv, n_q, head_dim_k, head_dim_v, scale, p_begin, p_end, acc, m,
                 l, &w);
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
