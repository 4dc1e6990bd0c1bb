/*
 * The CPU backend: every op of runtime/backend.h on the CPU kernels
 * (kernels/cpu/) and the context's thread pool. Buffers are host memory, so
 * memory ops are calloc/memcpy. This is the code the model files called
 * directly before the backend interface; it is moved here unchanged in what it
 * computes and how it splits the work (same pool jobs, same barriers per token).
 */
#include "quant/quant.h"
#include "runtime/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- memory ------------------------------------------------------------------------ */

static void *cpu_alloc(halo_backend *be, size_t bytes) { return calloc(1, bytes ? bytes : 1); }
static void cpu_free(halo_backend *be, void *p) { free(p); }
static void cpu_memcpy(halo_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}
static void cpu_zero(halo_backend *be, void *dst, size_t bytes) {
    if (bytes) memset(dst, 0, bytes);
}

/* the CPU's own scratch: the chunked delta rule's work buffers, one per value head */
typedef struct cpu_state {
    float *deltanet_work;
    size_t deltanet_work_floats;
} cpu_state;

#define DELTANET_CHUNK_MIN 8 /* a sequence with this many tokens in a ubatch goes chunked */
#define DELTANET_CHUNK 32

static void cpu_release(halo_backend *be) {
    cpu_state *s = be->impl;
    if (!s) return;
    free(s->deltanet_work);
    free(s);
    be->impl = NULL;
}

int halo_backend_cpu_init(halo_context *ctx, halo_backend *be, halo_error *err) {
    be->ops = &halo_backend_cpu_ops;
    cpu_state *s = calloc(1, sizeof *s);
    if (!s) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory making the context");
    be->impl = s;
    const halo_hparams *hp = ctx->hp;
    const int64_t hv = halo_hparams_deltanet_value_heads(hp);
    if (hv > 0) {
        s->deltanet_work_floats = halo_deltanet_work_floats(
            DELTANET_CHUNK, halo_hparams_deltanet_key_dim(hp), halo_hparams_deltanet_value_dim(hp));
        s->deltanet_work_floats = (s->deltanet_work_floats + 15) & ~(size_t)15;
        s->deltanet_work = calloc((size_t)hv, sizeof(float) * s->deltanet_work_floats);
        if (!s->deltanet_work)
            return halo_error_set(err, HALO_ERR_NOMEM, "out of memory making the context");
    }
    return 0;
}

/* ---- a ubatch ---------------------------------------------------------------------- */

static void cpu_begin(halo_context *ctx, const halo_ubatch *ub) {}
static int cpu_finish(halo_context *ctx, const halo_ubatch *ub) { return 0; }

/* ---- embedding and products -------------------------------------------------------- */

static void cpu_embed(halo_context *ctx, const halo_ubatch *ub, float *x) {
    const halo_weight *w = &ctx->model->tok_embd;
    const halo_type_traits *tr = halo_type_get(w->type);
    for (int32_t t = 0; t < ub->n; t++)
        tr->to_float((const char *)w->data + (size_t)ub->token[t] * w->row_stride,
                     x + (size_t)t * w->n_cols, w->n_cols);
}

void halo_context_set_mm_observer(halo_context *ctx, halo_mm_observer fn, void *user) {
    ctx->mm_observer = fn;
    ctx->mm_observer_user = fn ? user : NULL;
}

static void cpu_matmul(halo_context *ctx, const halo_weight *w, int64_t expert, const float *x,
                       int64_t n, float *y) {
    if (ctx->mm_observer) ctx->mm_observer(ctx->mm_observer_user, w, expert, x, n);
    halo_matmul(ctx->pool, w->type, (const char *)w->data + (size_t)expert * w->mat_stride,
                w->row_stride, w->n_rows, w->n_cols, x, n, y);
}

typedef struct multi_job {
    const halo_mm *mm;
    int n;
    int n_glu; /* products (2i, 2i + 1), i < n_glu, are SwiGLU gate / up pairs */
} multi_job;

/* The rows of a product that thread ith of nth computes: chunks of 8 rows (32
 * bytes of y), the same split for every product of the same height. */
static void multi_rows(int64_t n_rows, int ith, int nth, int64_t *r0, int64_t *r1) {
    int64_t per = ((n_rows + nth - 1) / nth + 7) & ~(int64_t)7;
    *r0 = per * ith;
    *r1 = *r0 + per < n_rows ? *r0 + per : n_rows;
}

static void multi_task(void *arg, int ith, int nth) {
    const multi_job *j = arg;
    for (int i = 0; i < j->n; i++) {
        const halo_weight *w = j->mm[i].w;
        int64_t r0, r1;
        multi_rows(w->n_rows, ith, nth, &r0, &r1);
        if (r0 >= r1) continue;
        halo_matmul(NULL, w->type,
                    (const char *)w->data + (size_t)j->mm[i].expert * w->mat_stride +
                        (size_t)r0 * w->row_stride,
                    w->row_stride, r1 - r0, w->n_cols, j->mm[i].x, 1, j->mm[i].y + r0);
        /* a gate / up pair: this thread's rows of both are done (same height, same split) */
        if (i % 2 == 1 && i / 2 < j->n_glu)
            halo_swiglu(j->mm[i - 1].y + r0, j->mm[i].y + r0, r1 - r0);
    }
}

void halo_cpu_products(halo_threadpool *pool, const halo_mm *mm, int n_mm, int n_glu) {
    multi_job j = {mm, n_mm, n_glu};
    halo_threadpool_run(pool, multi_task, &j);
}

void halo_cpu_experts_run(halo_threadpool *pool, const halo_moe_weights *W, int n_expert, int k,
                          int64_t n_embd, int64_t n, const halo_cpu_experts *b) {
    const int64_t e = n_embd, ff = W->gate_exps->n_rows;
    const int32_t na = (int32_t)(n * k);
    const int32_t *ids = b->ids;
    const halo_weight *g = W->gate_exps, *u = W->up_exps, *d = W->down_exps;
    for (int32_t a = 0; a < na; a++)
        if (ids[a] < 0 || ids[a] >= n_expert) memset(b->y + (size_t)a * e, 0, sizeof(float) * e);
    if (na <= HALO_CPU_EXPERTS_FEW) { /* few tokens: one job of all products, twice */
        halo_mm *mm = b->mm;
        int m = 0;
        for (int32_t a = 0; a < na; a++) {
            if (ids[a] < 0 || ids[a] >= n_expert) continue;
            const float *x = b->xn + (size_t)(a / k) * e;
            mm[2 * m] = (halo_mm){g, ids[a], x, b->ffa + (size_t)a * ff};
            mm[2 * m + 1] = (halo_mm){u, ids[a], x, b->ffb + (size_t)a * ff};
            m++;
        }
        halo_cpu_products(pool, mm, 2 * m, m);
        m = 0;
        for (int32_t a = 0; a < na; a++)
            if (ids[a] >= 0 && ids[a] < n_expert)
                mm[m++] = (halo_mm){d, ids[a], b->ffa + (size_t)a * ff, b->y + (size_t)a * e};
        halo_cpu_products(pool, mm, m, 0);
        return;
    }
    /* prefill: each expert's tokens together, its weights read once */
    int32_t *count = b->count, *list = b->list;
    for (int x = 0; x < n_expert; x++)
        count[x] = 0;
    for (int32_t a = 0; a < na; a++)
        if (ids[a] >= 0 && ids[a] < n_expert) list[(int64_t)ids[a] * n + count[ids[a]]++] = a;
    for (int x = 0; x < n_expert; x++) {
        const int32_t c = count[x];
        if (!c) continue;
        const int32_t *lx = list + (int64_t)x * n;
        for (int32_t i = 0; i < c; i++)
            memcpy(b->x + (size_t)i * e, b->xn + (size_t)(lx[i] / k) * e, sizeof(float) * e);
        halo_matmul(pool, g->type, (const char *)g->data + (size_t)x * g->mat_stride,
                    g->row_stride, g->n_rows, g->n_cols, b->x, c, b->ffa);
        halo_matmul(pool, u->type, (const char *)u->data + (size_t)x * u->mat_stride,
                    u->row_stride, u->n_rows, u->n_cols, b->x, c, b->ffb);
        halo_swiglu(b->ffa, b->ffb, (int64_t)c * ff);
        halo_matmul(pool, d->type, (const char *)d->data + (size_t)x * d->mat_stride,
                    d->row_stride, d->n_rows, d->n_cols, b->ffa, c, b->tmp);
        for (int32_t i = 0; i < c; i++)
            memcpy(b->y + (size_t)lx[i] * e, b->tmp + (size_t)i * e, sizeof(float) * e);
    }
}

static void cpu_matmul_multi(halo_context *ctx, const halo_mm *mm, int n_mm, int n_glu) {
    multi_job j = {mm, n_mm, n_glu};
    if (ctx->mm_observer) /* inputs are ready: products of one call never feed each other */
        for (int i = 0; i < n_mm; i++)
            ctx->mm_observer(ctx->mm_observer_user, mm[i].w, mm[i].expert, mm[i].x, 1);
    /* products too small to be worth a pool job run on the caller */
    int64_t work = 0;
    for (int i = 0; i < n_mm; i++) work += mm[i].w->n_rows * mm[i].w->n_cols;
    halo_threadpool_run(work < 8192 ? NULL : ctx->pool, multi_task, &j);
}

/* ---- small ops ------------------------------------------------------------------------ */

static void cpu_rms_norm(halo_context *ctx, const float *x, const halo_weight *w, float *y,
                         int64_t n_rows, int64_t n, float eps) {
    halo_rms_norm(x, w ? w->data : NULL, y, n_rows, n, eps);
}

static void cpu_rope(halo_context *ctx, const halo_ubatch *ub, float *x, int n_heads,
                     int head_dim) {
    for (int32_t t = 0; t < ub->n; t++)
        halo_rope(x + (size_t)t * n_heads * head_dim, n_heads, head_dim, (int)ctx->hp->n_rot,
                  ctx->model->rope_mode, (float)ub->pos[t], ctx->buf.inv_freq);
}

typedef struct hadamard_job {
    float *x;
    int64_t n_rows, n;
    int block;
} hadamard_job;

static void hadamard_task(void *arg, int ith, int nth) {
    const hadamard_job *j = arg;
    const int64_t r0 = j->n_rows * ith / nth, r1 = j->n_rows * (ith + 1) / nth;
    halo_hadamard(j->x + r0 * j->n, r1 - r0, j->n, j->block);
}

/* A prefill's rows over the pool (a 512-token ubatch of kdoc-moe: ~1 ms a layer on
 * one core); a decode step's on the caller. */
static void cpu_hadamard(halo_context *ctx, float *x, int64_t n_rows, int64_t n, int block) {
    hadamard_job j = {x, n_rows, n, block};
    halo_threadpool_run(n_rows * n < 16384 ? NULL : ctx->pool, hadamard_task, &j);
}

static void cpu_add(halo_context *ctx, float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

static void cpu_swiglu(halo_context *ctx, float *g, const float *u, int64_t n) {
    halo_swiglu(g, u, n);
}

static void cpu_sigmoid_gate(halo_context *ctx, float *x, const float *g, int64_t n) {
    halo_sigmoid_gate(x, g, n);
}

static void cpu_copy2d(halo_context *ctx, float *dst, int64_t dst_stride, const float *src,
                       int64_t src_stride, int64_t rows, int64_t width) {
    for (int64_t r = 0; r < rows; r++)
        memcpy(dst + r * dst_stride, src + r * src_stride, sizeof(float) * (size_t)width);
}

static void cpu_gather(halo_context *ctx, const halo_ubatch *ub, float *dst, const float *src,
                       int64_t width) {
    for (int32_t i = 0; i < ub->n; i++)
        memcpy(dst + (size_t)i * width, src + (size_t)ub->perm[i] * width,
               sizeof(float) * (size_t)width);
}

static void cpu_scatter(halo_context *ctx, const halo_ubatch *ub, float *dst, const float *src,
                        int64_t width) {
    for (int32_t i = 0; i < ub->n; i++)
        memcpy(dst + (size_t)ub->perm[i] * width, src + (size_t)i * width,
               sizeof(float) * (size_t)width);
}

/* ---- attention over the paged cache ------------------------------------------------------ */

static const int32_t *seq_table(const halo_context *ctx, int32_t seq) {
    return ctx->kv.page_table + (size_t)seq * (size_t)ctx->kv.n_pages;
}

static void store_row(int type, const float *src, char *dst, int64_t n) {
    if (type == HALO_TYPE_F32) memcpy(dst, src, sizeof(float) * (size_t)n);
    else halo_quant_encode_kv(type, src, dst, n);
}

typedef struct store_job {
    halo_context *ctx;
    uint32_t il;
    const halo_ubatch *ub;
    const float *k, *v;
} store_job;

/* Tokens [n ith / nth, n (ith + 1) / nth): each writes its own cell. */
static void kv_store_task(void *arg, int ith, int nth) {
    const store_job *j = arg;
    halo_context *ctx = j->ctx;
    const halo_ubatch *ub = j->ub;
    const halo_hparams *hp = ctx->hp;
    const int64_t nk = (int64_t)hp->n_head_kv[j->il] * hp->head_dim_k;
    const int64_t nv = (int64_t)hp->n_head_kv[j->il] * hp->head_dim_v;
    const size_t kr = ctx->kv.k_row_bytes[j->il], vr = ctx->kv.v_row_bytes[j->il];
    const float *k = j->k, *v = j->v;
    const uint32_t il = j->il;
    const int32_t t0 = (int32_t)((int64_t)ub->n * ith / nth);
    const int32_t t1 = (int32_t)((int64_t)ub->n * (ith + 1) / nth);
    for (int32_t t = t0; t < t1; t++) {
        int32_t p = ub->pos[t];
        size_t cell = (size_t)seq_table(ctx, ub->seq[t])[p / HALO_KV_PAGE] * HALO_KV_PAGE +
                      (size_t)(p % HALO_KV_PAGE);
        store_row(ctx->kv.type_k, k + t * nk, ctx->kv.k[il] + cell * kr, nk);
        store_row(ctx->kv.type_v, v + t * nv, ctx->kv.v[il] + cell * vr, nv);
    }
}

/* A prefill's rows are encoded over the pool (iq4_nl's scale search: ~90 ns a value on
 * one core); a decode step's on the caller. */
static void kv_store(halo_context *ctx, uint32_t il, const halo_ubatch *ub, const float *k,
                     const float *v) {
    store_job j = {ctx, il, ub, k, v};
    const bool quant = halo_type_get(ctx->kv.type_k)->is_quantized ||
                       halo_type_get(ctx->kv.type_v)->is_quantized;
    halo_threadpool_run(quant && ub->n >= 8 ? ctx->pool : NULL, kv_store_task, &j);
}

typedef struct attend_job {
    halo_context *ctx;
    uint32_t il;
    const halo_ubatch *ub;
    const float *q;
    float scale;
    float *out;
    int32_t n_blocks;
    bool split; /* one token per block, fewer items than threads: split positions */
} attend_job;

static halo_attn_kv kv_view(const halo_context *ctx, uint32_t il, int g, int32_t seq) {
    return (halo_attn_kv){
        .type_k = ctx->kv.type_k,
        .type_v = ctx->kv.type_v,
        .k_base = ctx->kv.k[il],
        .v_base = ctx->kv.v[il],
        .k_page_bytes = HALO_KV_PAGE * ctx->kv.k_row_bytes[il],
        .v_page_bytes = HALO_KV_PAGE * ctx->kv.v_row_bytes[il],
        .k_row_bytes = ctx->kv.k_row_bytes[il],
        .v_row_bytes = ctx->kv.v_row_bytes[il],
        .k_head_offset = (size_t)g * ctx->kv.k_head_bytes[il],
        .v_head_offset = (size_t)g * ctx->kv.v_head_bytes[il],
        .page_size = HALO_KV_PAGE,
        .pages = seq_table(ctx, seq),
    };
}

/* Work items: (block of consecutive tokens of one sequence, KV head); in split
 * mode thread ith takes item ith % n_items and a share of its positions. */
static void attend_task(void *arg, int ith, int nth) {
    const attend_job *j = arg;
    halo_context *ctx = j->ctx;
    const halo_hparams *hp = ctx->hp;
    const int nq = (int)hp->n_head, nkv = (int)hp->n_head_kv[j->il];
    const int hk = (int)hp->head_dim_k, hv = (int)hp->head_dim_v, group = nq / nkv;
    const int32_t *start = ctx->buf.attn_block;
    float *scratch = ctx->buf.attn_scratch + (size_t)ith * ctx->buf.attn_scratch_floats;
    const int64_t n_items = (int64_t)j->n_blocks * nkv;
    if (j->split) {
        int64_t it = ith % n_items, n_parts = (nth - 1 - it) / n_items + 1, part = ith / n_items;
        int32_t t = start[it / nkv], g = (int)(it % nkv), n_kv = ctx->buf.attn_nkv[t];
        int64_t np = (n_kv + HALO_KV_PAGE - 1) / HALO_KV_PAGE;
        int32_t p0 = (int32_t)(part * np / n_parts * HALO_KV_PAGE);
        int32_t p1 = (int32_t)((part + 1) * np / n_parts * HALO_KV_PAGE);
        halo_attn_kv view = kv_view(ctx, j->il, g, j->ub->seq[t]);
        halo_attn_paged_part(&view, j->q + ((size_t)t * nq + (size_t)g * group) * hk, n_kv, group,
                             hk, hv, j->scale, p0, p1,
                             ctx->buf.attn_parts + (size_t)ith * ctx->buf.attn_part_floats, scratch);
        return;
    }
    for (int64_t it = ith; it < n_items; it += nth) {
        int32_t blk = (int32_t)(it / nkv), t0 = start[blk], nt = start[blk + 1] - t0;
        int g = (int)(it % nkv);
        halo_attn_kv view = kv_view(ctx, j->il, g, j->ub->seq[t0]);
        halo_attn_paged(&view, j->q + ((size_t)t0 * nq + (size_t)g * group) * hk, (size_t)nq * hk,
                        nt, ctx->buf.attn_nkv + t0, group, hk, hv, j->scale,
                        j->out + ((size_t)t0 * nq + (size_t)g * group) * hv, (size_t)nq * hv,
                        scratch);
    }
}

static void kv_attend(halo_context *ctx, uint32_t il, const halo_ubatch *ub, const float *q,
                      float scale, float *out) {
    /* blocks: runs of consecutive positions of one sequence, at most QBLOCK long */
    int32_t *start = ctx->buf.attn_block, nb = 0, max_kv = 0;
    for (int32_t t = 0; t < ub->n; t++) {
        ctx->buf.attn_nkv[t] = ub->pos[t] + 1;
        max_kv = ub->pos[t] + 1 > max_kv ? ub->pos[t] + 1 : max_kv;
        bool cont = t > 0 && ub->seq[t] == ub->seq[t - 1] && ub->pos[t] == ub->pos[t - 1] + 1 &&
                    t - start[nb - 1] < HALO_ATTN_QBLOCK;
        if (!cont) start[nb++] = t;
    }
    start[nb] = ub->n;
    const int nth = halo_threadpool_n_threads(ctx->pool);
    const int nkv = (int)ctx->hp->n_head_kv[il];
    const int64_t n_items = (int64_t)nb * nkv;
    /* decode steps (a token per block) with fewer items than threads and a long
     * enough context: each item's positions are shared out over several threads */
    attend_job j = {ctx, il, ub, q, scale, out, nb, false};
    j.split = nb == ub->n && n_items < nth && max_kv >= 4 * HALO_KV_PAGE;
    /* a single item (a short decode over one KV head) runs on the caller: no barrier */
    halo_threadpool_run(n_items == 1 && !j.split ? NULL : ctx->pool, attend_task, &j);
    if (!j.split) return;
    const int nq = (int)ctx->hp->n_head, group = nq / nkv, hv = (int)ctx->hp->head_dim_v;
    const size_t pf = ctx->buf.attn_part_floats;
    for (int64_t it = 0; it < n_items; it++) {
        int32_t t = start[it / nkv], g = (int)(it % nkv);
        int n_parts = (int)((nth - 1 - it) / n_items + 1);
        halo_attn_merge(ctx->buf.attn_parts + (size_t)it * pf, (size_t)n_items * pf, n_parts, group,
                        hv, out + ((size_t)t * nq + (size_t)g * group) * hv);
    }
}

static void cpu_attend(halo_context *ctx, uint32_t il, const halo_ubatch *ub, const float *q,
                       const float *k, const float *v, float *out) {
    kv_store(ctx, il, ub, k, v);
    kv_attend(ctx, il, ub, q, 1.0f / sqrtf((float)ctx->hp->head_dim_k), out);
}

/* ---- routed experts ------------------------------------------------------------------------ */

static void dense_ffn(halo_context *ctx, const halo_weight *gate, const halo_weight *up,
                      const halo_weight *down, const float *xn, int64_t n, float *out) {
    halo_buffers *b = &ctx->buf;
    cpu_matmul(ctx, gate, 0, xn, n, b->ff_a);
    cpu_matmul(ctx, up, 0, xn, n, b->ff_b);
    halo_swiglu(b->ff_a, b->ff_b, n * gate->n_rows);
    cpu_matmul(ctx, down, 0, b->ff_a, n, out);
}

/* One token: the router on the caller (a few rows), then one pool job for every
 * routed expert's gate and up (and the shared expert's, and its gate's one row),
 * SwiGLU included, and one for all the downs: two barriers per MoE layer. */
static void moe_one(halo_context *ctx, const halo_moe_weights *W, const float *xn, float *out) {
    const halo_hparams *hp = ctx->hp;
    halo_buffers *b = &ctx->buf;
    const bool shared = W->shexp_gate != NULL;
    const int n_exp = (int)hp->n_expert, k = (int)hp->n_expert_used;
    const int64_t e_dim = hp->n_embd, ff = W->gate_exps->n_rows;
    cpu_matmul(ctx, W->router, 0, xn, 1, b->router);
    halo_topk_route(b->router, n_exp, k, ctx->model->expert_weights_norm, b->moe_ids, b->moe_w);
    halo_mm mm[2 * 17 + 1];
    float shg = 0;
    int n_mm = 0;
    for (int j = 0; j < k; j++) {
        mm[n_mm++] = (halo_mm){W->gate_exps, b->moe_ids[j], xn, b->ff_a + j * ff};
        mm[n_mm++] = (halo_mm){W->up_exps, b->moe_ids[j], xn, b->ff_b + j * ff};
    }
    if (shared) {
        mm[n_mm++] = (halo_mm){W->shexp_gate, 0, xn, b->ff_a + k * ff};
        mm[n_mm++] = (halo_mm){W->shexp_up, 0, xn, b->ff_b + k * ff};
        mm[n_mm++] = (halo_mm){W->shexp_gate_inp, 0, xn, &shg};
    }
    cpu_matmul_multi(ctx, mm, n_mm, k + shared);
    n_mm = 0;
    for (int j = 0; j < k; j++)
        mm[n_mm++] = (halo_mm){W->down_exps, b->moe_ids[j], b->ff_a + j * ff, b->moe_y + j * e_dim};
    if (shared)
        mm[n_mm++] = (halo_mm){W->shexp_down, 0, b->ff_a + k * ff, b->moe_y + k * e_dim};
    cpu_matmul_multi(ctx, mm, n_mm, 0);
    for (int64_t d = 0; d < e_dim; d++) {
        float acc = 0;
        for (int j = 0; j < k; j++) acc += b->moe_w[j] * b->moe_y[j * e_dim + d];
        out[d] = acc;
    }
    if (shared) {
        const float g = 1.0f / (1.0f + expf(-shg));
        const float *sh = b->moe_y + k * e_dim;
        for (int64_t d = 0; d < e_dim; d++) out[d] += g * sh[d];
    }
}

/* Several tokens: route each, group the tokens by expert, one product per active
 * expert over its tokens, the results scattered back weighted. */
static void moe_routed(halo_context *ctx, const halo_moe_weights *W, const float *xn, int64_t n,
                       float *out) {
    const halo_hparams *hp = ctx->hp;
    halo_buffers *b = &ctx->buf;
    const int n_exp = (int)hp->n_expert, k = (int)hp->n_expert_used;
    const int64_t e_dim = hp->n_embd, ff = W->gate_exps->n_rows;
    cpu_matmul(ctx, W->router, 0, xn, n, b->router);
    for (int e = 0; e < n_exp; e++) b->moe_count[e] = 0;
    for (int64_t t = 0; t < n; t++) {
        int32_t *ids = b->moe_ids + t * k;
        halo_topk_route(b->router + t * n_exp, n_exp, k, ctx->model->expert_weights_norm, ids,
                        b->moe_w + t * k);
        for (int j = 0; j < k; j++) {
            int e = ids[j];
            b->moe_tok[(int64_t)e * n + b->moe_count[e]++] = (int32_t)(t * k + j);
        }
    }
    memset(out, 0, sizeof(float) * (size_t)(n * e_dim));
    for (int e = 0; e < n_exp; e++) {
        int32_t c = b->moe_count[e];
        if (c == 0) continue;
        const int32_t *list = b->moe_tok + (int64_t)e * n;
        for (int32_t i = 0; i < c; i++)
            memcpy(b->moe_x + (size_t)i * e_dim, xn + (size_t)(list[i] / k) * e_dim,
                   sizeof(float) * (size_t)e_dim);
        cpu_matmul(ctx, W->gate_exps, e, b->moe_x, c, b->ff_a);
        cpu_matmul(ctx, W->up_exps, e, b->moe_x, c, b->ff_b);
        halo_swiglu(b->ff_a, b->ff_b, (int64_t)c * ff);
        cpu_matmul(ctx, W->down_exps, e, b->ff_a, c, b->moe_y);
        for (int32_t i = 0; i < c; i++) {
            float w = b->moe_w[list[i]];
            float *o = out + (size_t)(list[i] / k) * e_dim;
            const float *y = b->moe_y + (size_t)i * e_dim;
            for (int64_t d = 0; d < e_dim; d++) o[d] += w * y[d];
        }
    }
}

static void cpu_moe(halo_context *ctx, const halo_moe_weights *W, const float *xn, int64_t n,
                    float *out) {
    const int k = (int)ctx->hp->n_expert_used;
    if (n == 1 && k <= 16 && (uint32_t)k + 1 <= ctx->params.n_ubatch) {
        moe_one(ctx, W, xn, out);
        return;
    }
    moe_routed(ctx, W, xn, n, out);
    if (!W->shexp_gate) return;
    /* the shared expert, scaled by sigmoid(gate_inp . x): its output in moe_y, its
     * gates in router (both free again once the routed experts are done) */
    const int64_t e = ctx->hp->n_embd;
    halo_buffers *b = &ctx->buf;
    float *sh = b->moe_y, *shg = b->router;
    dense_ffn(ctx, W->shexp_gate, W->shexp_up, W->shexp_down, xn, n, sh);
    cpu_matmul(ctx, W->shexp_gate_inp, 0, xn, n, shg);
    for (int64_t t = 0; t < n; t++) {
        const float g = 1.0f / (1.0f + expf(-shg[t]));
        for (int64_t i = 0; i < e; i++) out[t * e + i] += g * sh[t * e + i];
    }
}

/* ---- Gated DeltaNet ------------------------------------------------------------------------ */

typedef struct deltanet_task {
    halo_context *ctx;
    uint32_t il;
    const halo_layer *L;
    const halo_ubatch *ub;
    halo_deltanet_dims d;
    const float *qkv, *alpha, *b; /* conv phase inputs */
    const float *conv, *z;        /* rule phase inputs */
    float *out_conv, *g, *beta, *o;
    const float *g_in, *beta_in;
} deltanet_task;

/* Phase 1, items (segment, block): a block is one q head, one k head, or one v
 * head (whose gates come along). Conv over the segment's tokens, then the L2 norm. */
static void deltanet_conv_task(void *arg, int ith, int nth) {
    const deltanet_task *a = arg;
    const halo_deltanet_dims *d = &a->d;
    const halo_ubatch *ub = a->ub;
    const int64_t blocks = 2 * d->hk + d->hv, items = ub->n_seg * blocks;
    const int kw = (int)a->ctx->hp->ssm_conv_kernel;
    const float scale = 1.0f / sqrtf((float)d->dk);
    for (int64_t it = ith; it < items; it += nth) {
        const int32_t seg = (int32_t)(it / blocks);
        const int64_t b = it % blocks;
        const int32_t t0 = ub->seg_off[seg], nt = ub->seg_off[seg + 1] - t0;
        int64_t c0, width;
        if (b < 2 * d->hk) c0 = b * d->dk, width = d->dk;
        else c0 = 2 * d->hk * d->dk + (b - 2 * d->hk) * d->dv, width = d->dv;
        float *state = halo_rs_conv(a->ctx, a->il, ub->seg_seq[seg]);
        halo_deltanet_conv(a->qkv + (size_t)t0 * d->ch, d->ch, nt, d->ch, kw,
                           a->L->ssm_conv1d.data, state, a->out_conv + (size_t)t0 * d->ch, d->ch,
                           c0, c0 + width);
        for (int32_t t = t0; t < t0 + nt; t++) {
            float *row = a->out_conv + (size_t)t * d->ch;
            if (b < d->hk) halo_deltanet_l2_norm(row + c0, width, 1e-6f, scale);
            else if (b < 2 * d->hk) halo_deltanet_l2_norm(row + c0, width, 1e-6f, 1.0f);
        }
        if (b >= 2 * d->hk) { /* this value head's decay and beta */
            const int64_t h = b - 2 * d->hk;
            for (int32_t t = t0; t < t0 + nt; t++)
                halo_deltanet_gates(a->alpha + (size_t)t * d->hv + h, a->b + (size_t)t * d->hv + h,
                                    (const float *)a->L->ssm_a.data + h,
                                    (const float *)a->L->ssm_dt.data + h, 1,
                                    a->g + (size_t)t * d->hv + h, a->beta + (size_t)t * d->hv + h);
        }
    }
}

static void cpu_deltanet_conv(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                              const float *qkv, const float *alpha, const float *b, float *conv,
                              float *g, float *beta) {
    deltanet_task task = {.ctx = ctx, .il = il, .L = &ctx->model->layers[il], .ub = ub,
                          .d = halo_hparams_deltanet_dims(ctx->hp), .qkv = qkv, .alpha = alpha, .b = b,
                          .out_conv = conv, .g = g, .beta = beta};
    /* one token's conv is a few thousand flops: on the caller, no barrier */
    halo_threadpool_run(ub->n == 1 ? NULL : ctx->pool, deltanet_conv_task, &task);
}

/* Phase 2, items (value head, segment), a head's items all on one thread (the
 * chunked form's work buffer is per head): the delta rule (chunked for long
 * segments), then the gated RMS norm of that head's outputs. */
static void deltanet_rule_task(void *arg, int ith, int nth) {
    const deltanet_task *a = arg;
    const halo_deltanet_dims *d = &a->d;
    const halo_ubatch *ub = a->ub;
    const float eps = a->ctx->hp->rms_eps;
    cpu_state *cs = a->ctx->be.impl;
    for (int64_t it = 0; it < ub->n_seg * d->hv; it++) {
        const int h = (int)(it % d->hv);
        const int32_t seg = (int32_t)(it / d->hv);
        if (h % nth != ith) continue;
        const int32_t t0 = ub->seg_off[seg], nt = ub->seg_off[seg + 1] - t0;
        const float *conv = a->conv + (size_t)t0 * d->ch;
        halo_deltanet_args args = {
            .n_tokens = nt, .n_k_heads = d->hk, .n_v_heads = d->hv, .dk = d->dk, .dv = d->dv,
            .tiled = true,
            .q = conv, .k = conv + d->hk * d->dk, .qk_stride = d->ch,
            .v = conv + 2 * d->hk * d->dk, .v_stride = d->ch,
            .g = a->g_in + (size_t)t0 * d->hv, .beta = a->beta_in + (size_t)t0 * d->hv,
            .gb_stride = d->hv,
            .state = halo_rs_ssm(a->ctx, a->il, ub->seg_seq[seg]),
            .o = a->o + (size_t)t0 * d->vd, .o_stride = d->vd,
        };
        /* (ith, nth) = (h, hv) selects exactly head h */
        if (nt >= DELTANET_CHUNK_MIN)
            halo_deltanet_chunked(&args, DELTANET_CHUNK,
                                  cs->deltanet_work + (size_t)h * cs->deltanet_work_floats, h,
                                  (int)d->hv);
        else
            halo_deltanet_recurrent(&args, h, (int)d->hv);
        for (int32_t t = t0; t < t0 + nt; t++)
            halo_deltanet_norm_gated(a->o + (size_t)t * d->vd + h * d->dv,
                                     a->z + (size_t)t * d->vd + h * d->dv, a->L->ssm_norm.data,
                                     d->dv, eps);
    }
}

static void cpu_deltanet_rule(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                              const float *conv, const float *g, const float *beta,
                              const float *z, float *o) {
    deltanet_task task = {.ctx = ctx, .il = il, .L = &ctx->model->layers[il], .ub = ub,
                          .d = halo_hparams_deltanet_dims(ctx->hp), .conv = conv, .z = z, .g_in = g,
                          .beta_in = beta, .o = o};
    halo_threadpool_run(ctx->pool, deltanet_rule_task, &task);
}

/* One token: the delta rule and gated norm of this thread's value heads (as in
 * deltanet_rule_task), then their columns of ssm_out times their outputs, summed
 * into this thread's partial of the output (its attention scratch: unused here);
 * the caller adds the partials. Saves the barrier before the output projection. */
typedef struct rule_out_job {
    deltanet_task t;
    size_t col_bytes; /* bytes of dv columns of an ssm_out row */
} rule_out_job;

static float *rule_out_partial(halo_context *ctx, int ith) {
    return ctx->buf.attn_scratch + (size_t)ith * ctx->buf.attn_scratch_floats;
}

static void deltanet_rule_out_task(void *arg, int ith, int nth) {
    const rule_out_job *j = arg;
    const deltanet_task *a = &j->t;
    deltanet_rule_task((void *)a, ith, nth);
    const halo_deltanet_dims *d = &a->d;
    const halo_weight *w = &a->L->ssm_out;
    const int64_t e = a->ctx->hp->n_embd;
    float *part = rule_out_partial(a->ctx, ith), *tmp = part + e;
    bool first = true;
    for (int64_t h = ith; h < d->hv; h += nth) {
        halo_matmul(NULL, w->type, (const char *)w->data + (size_t)h * j->col_bytes, w->row_stride,
                    w->n_rows, d->dv, a->o + h * d->dv, 1, first ? part : tmp);
        if (!first)
            for (int64_t i = 0; i < e; i++) part[i] += tmp[i];
        first = false;
    }
}

static void cpu_deltanet_rule_out(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                                  const float *conv, const float *g, const float *beta,
                                  const float *z, float *o, float *out) {
    const halo_layer *L = &ctx->model->layers[il];
    const halo_deltanet_dims d = halo_hparams_deltanet_dims(ctx->hp);
    const int64_t e = ctx->hp->n_embd;
    const halo_type_traits *tr = halo_type_get(L->ssm_out.type);
    /* the product splits at head boundaries only when a head's columns are whole
     * blocks, and the partials need room; otherwise the plain two steps */
    if (ub->n != 1 || halo_threadpool_n_threads(ctx->pool) <= 1 || !tr ||
        d.dv % tr->block_size || L->ssm_out.n_rows != e ||
        ctx->buf.attn_scratch_floats < (size_t)(2 * e)) {
        cpu_deltanet_rule(ctx, il, ub, conv, g, beta, z, o);
        cpu_matmul(ctx, &L->ssm_out, 0, o, ub->n, out);
        return;
    }
    rule_out_job j = {{.ctx = ctx, .il = il, .L = L, .ub = ub, .d = d, .conv = conv, .z = z,
                       .g_in = g, .beta_in = beta, .o = o},
                      (size_t)(d.dv / tr->block_size) * tr->type_size};
    halo_threadpool_run(ctx->pool, deltanet_rule_out_task, &j);
    if (ctx->mm_observer) /* o is complete only now */
        ctx->mm_observer(ctx->mm_observer_user, &L->ssm_out, 0, o, 1);
    const int nth = halo_threadpool_n_threads(ctx->pool);
    const int used = d.hv < nth ? (int)d.hv : nth; /* threads that had a head */
    const float *p0 = rule_out_partial(ctx, 0);
    for (int64_t i = 0; i < e; i++) out[i] = p0[i];
    for (int t = 1; t < used; t++) {
        const float *pt = rule_out_partial(ctx, t);
        for (int64_t i = 0; i < e; i++) out[i] += pt[i];
    }
}

/* ---- output head ------------------------------------------------------------------------------ */

static void cpu_output(halo_context *ctx, const halo_ubatch *ub, const float *x) {
    if (ub->n_out == 0) return;
    const halo_model *m = ctx->model;
    const int64_t e = m->hp.n_embd, nv = m->hp.n_vocab;
    halo_buffers *b = &ctx->buf;
    /* the rows that asked for logits are consecutive rows of ctx->logits; embeddings
     * are the normed rows themselves, written there */
    int32_t first = -1, j = 0;
    for (int32_t t = 0; t < ub->n; t++) {
        if (ub->out[t] < 0) continue;
        if (first < 0) first = ub->out[t];
        float *dst = ub->embd ? ctx->logits + ((size_t)first + (size_t)j) * (size_t)e
                              : b->out_x + (size_t)j * e;
        halo_rms_norm(x + (size_t)t * e, m->output_norm.data, dst, 1, e, m->hp.rms_eps);
        j++;
    }
    if (!ub->embd) cpu_matmul(ctx, &m->output, 0, b->out_x, j, ctx->logits + (size_t)first * nv);
}

const halo_backend_ops halo_backend_cpu_ops = {
    .name = "CPU",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_host = cpu_memcpy,
    .to_backend = cpu_memcpy,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .release = cpu_release,
    .begin = cpu_begin,
    .finish = cpu_finish,
    .embed = cpu_embed,
    .matmul = cpu_matmul,
    .matmul_multi = cpu_matmul_multi,
    .rms_norm = cpu_rms_norm,
    .rope = cpu_rope,
    .hadamard = cpu_hadamard,
    .add = cpu_add,
    .swiglu = cpu_swiglu,
    .sigmoid_gate = cpu_sigmoid_gate,
    .copy2d = cpu_copy2d,
    .gather = cpu_gather,
    .scatter = cpu_scatter,
    .attend = cpu_attend,
    .moe = cpu_moe,
    .deltanet_conv = cpu_deltanet_conv,
    .deltanet_rule = cpu_deltanet_rule,
    .deltanet_rule_out = cpu_deltanet_rule_out,
    .output = cpu_output,
};
