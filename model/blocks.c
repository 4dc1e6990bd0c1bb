/*
 * The transformer pieces shared by the architectures: embedding, attention over
 * the paged KV cache, dense and MoE SwiGLU FFNs, the output head, and the
 * standard pre-norm decoder built from them (llama, qwen3, qwen3moe).
 *
 * Everything works on a ubatch of n tokens at once, so a prefill reads each
 * weight matrix once; matrix products go through halo_matmul on the context's
 * thread pool, and the buffers were sized when the context was made.
 */
#include "model/arch.h"
#include "quant/quant.h"
#include "runtime/runtime.h"

#include <math.h>
#include <string.h>

/* ---- embedding and products ------------------------------------------------------ */

void halo_blk_embed(halo_context *ctx, const halo_ubatch *ub, float *x) {
    const halo_weight *w = &ctx->model->tok_embd;
    const halo_type_traits *tr = halo_type_get(w->type);
    for (int32_t t = 0; t < ub->n; t++)
        tr->to_float((const char *)w->data + (size_t)ub->token[t] * w->row_stride,
                     x + (size_t)t * w->n_cols, w->n_cols);
}

void halo_blk_matmul(halo_context *ctx, const halo_weight *w, int64_t expert, const float *x,
                     int64_t n, float *y) {
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

static void matmul_multi(halo_context *ctx, const halo_mm *mm, int n_mm, int n_glu) {
    multi_job j = {mm, n_mm, n_glu};
    /* products too small to be worth a pool job run on the caller */
    int64_t work = 0;
    for (int i = 0; i < n_mm; i++) work += mm[i].w->n_rows * mm[i].w->n_cols;
    halo_threadpool_run(work < 8192 ? NULL : ctx->pool, multi_task, &j);
}

void halo_blk_matmul_multi(halo_context *ctx, const halo_mm *mm, int n_mm) {
    matmul_multi(ctx, mm, n_mm, 0);
}

void halo_blk_add(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* ---- attention --------------------------------------------------------------------- */

void halo_blk_attend(halo_context *ctx, uint32_t il, const halo_ubatch *ub, const float *q,
                     const float *k, const float *v, float *out) {
    halo_kv_store(ctx, il, ub, k, v);
    halo_kv_attend(ctx, il, ub, q, 1.0f / sqrtf((float)ctx->hp->head_dim_k), out);
}

void halo_blk_attention(halo_context *ctx, uint32_t il, const halo_ubatch *ub, const float *xn,
                        float *out) {
    const halo_hparams *hp = ctx->hp;
    const halo_layer *L = &ctx->model->layers[il];
    const int nq = (int)hp->n_head, nkv = (int)hp->n_head_kv[il];
    const int hk = (int)hp->head_dim_k;
    halo_buffers *b = &ctx->buf;
    int32_t n = ub->n;

    /* q, k, v projections */
    if (n == 1) {
        halo_mm mm[3] = {{&L->wq, 0, xn, b->q}, {&L->wk, 0, xn, b->k}, {&L->wv, 0, xn, b->v}};
        halo_blk_matmul_multi(ctx, mm, 3);
    } else {
        halo_blk_matmul(ctx, &L->wq, 0, xn, n, b->q);
        halo_blk_matmul(ctx, &L->wk, 0, xn, n, b->k);
        halo_blk_matmul(ctx, &L->wv, 0, xn, n, b->v);
    }

    /* per-head q/k RMS norms (qwen3), then RoPE */
    if (L->q_norm.data) halo_rms_norm(b->q, L->q_norm.data, b->q, (int64_t)n * nq, hk, hp->rms_eps);
    if (L->k_norm.data) halo_rms_norm(b->k, L->k_norm.data, b->k, (int64_t)n * nkv, hk, hp->rms_eps);
    for (int32_t t = 0; t < n; t++) {
        halo_rope(b->q + (size_t)t * nq * hk, nq, hk, (int)hp->n_rot, ctx->model->rope_mode,
                  (float)ub->pos[t], b->inv_freq);
        halo_rope(b->k + (size_t)t * nkv * hk, nkv, hk, (int)hp->n_rot, ctx->model->rope_mode,
                  (float)ub->pos[t], b->inv_freq);
    }

    /* attention over the cache, then the output projection */
    halo_blk_attend(ctx, il, ub, b->q, b->k, b->v, b->att);
    halo_blk_matmul(ctx, &L->wo, 0, b->att, n, out);
}

/* ---- FFNs ---------------------------------------------------------------------------- */

void halo_blk_ffn(halo_context *ctx, const halo_weight *gate, const halo_weight *up,
                  const halo_weight *down, const float *xn, int64_t n, float *out) {
    halo_buffers *b = &ctx->buf;
    if (n == 1) {
        halo_mm mm[2] = {{gate, 0, xn, b->ff_a}, {up, 0, xn, b->ff_b}};
        matmul_multi(ctx, mm, 2, 1); /* SwiGLU in the job (gate and up: same height) */
    } else {
        halo_blk_matmul(ctx, gate, 0, xn, n, b->ff_a);
        halo_blk_matmul(ctx, up, 0, xn, n, b->ff_b);
        halo_swiglu(b->ff_a, b->ff_b, n * gate->n_rows);
    }
    halo_blk_matmul(ctx, down, 0, b->ff_a, n, out);
}

/* One token: the router on the caller (a few rows), then one pool job for every
 * routed expert's gate and up (and the shared expert's, and its gate's one row),
 * SwiGLU included, and one for all the downs: two barriers per MoE layer. */
static void moe_one(halo_context *ctx, const halo_layer *L, bool shared, const float *xn,
                    float *out) {
    const halo_hparams *hp = ctx->hp;
    halo_buffers *b = &ctx->buf;
    const int n_exp = (int)hp->n_expert, k = (int)hp->n_expert_used;
    const int64_t e_dim = hp->n_embd, ff = L->ffn_gate_exps.n_rows;
    halo_blk_matmul(ctx, &L->ffn_gate_inp, 0, xn, 1, b->router);
    halo_topk_route(b->router, n_exp, k, ctx->model->expert_weights_norm, b->moe_ids, b->moe_w);
    halo_mm mm[2 * 17 + 1];
    float shg = 0;
    int n_mm = 0;
    for (int j = 0; j < k; j++) {
        mm[n_mm++] = (halo_mm){&L->ffn_gate_exps, b->moe_ids[j], xn, b->ff_a + j * ff};
        mm[n_mm++] = (halo_mm){&L->ffn_up_exps, b->moe_ids[j], xn, b->ff_b + j * ff};
    }
    if (shared) {
        mm[n_mm++] = (halo_mm){&L->ffn_gate_shexp, 0, xn, b->ff_a + k * ff};
        mm[n_mm++] = (halo_mm){&L->ffn_up_shexp, 0, xn, b->ff_b + k * ff};
        mm[n_mm++] = (halo_mm){&L->ffn_gate_inp_shexp, 0, xn, &shg};
    }
    matmul_multi(ctx, mm, n_mm, k + shared);
    n_mm = 0;
    for (int j = 0; j < k; j++)
        mm[n_mm++] = (halo_mm){&L->ffn_down_exps, b->moe_ids[j], b->ff_a + j * ff,
                               b->moe_y + j * e_dim};
    if (shared)
        mm[n_mm++] = (halo_mm){&L->ffn_down_shexp, 0, b->ff_a + k * ff, b->moe_y + k * e_dim};
    matmul_multi(ctx, mm, n_mm, 0);
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

void halo_blk_moe(halo_context *ctx, const halo_layer *L, const float *xn, int64_t n, float *out) {
    const halo_hparams *hp = ctx->hp;
    halo_buffers *b = &ctx->buf;
    const int n_exp = (int)hp->n_expert, k = (int)hp->n_expert_used;
    const int64_t e_dim = hp->n_embd, ff = L->ffn_gate_exps.n_rows;

    if (n == 1 && k <= 16 && (uint32_t)k + 1 <= ctx->params.n_ubatch) {
        moe_one(ctx, L, false, xn, out);
        return;
    }
    /* route: softmax over the experts, top-k, optionally renormalized */
    halo_blk_matmul(ctx, &L->ffn_gate_inp, 0, xn, n, b->router);
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

    /* one product per active expert over the tokens routed to it */
    memset(out, 0, sizeof(float) * (size_t)(n * e_dim));
    for (int e = 0; e < n_exp; e++) {
        int32_t c = b->moe_count[e];
        if (c == 0) continue;
        const int32_t *list = b->moe_tok + (int64_t)e * n;
        for (int32_t i = 0; i < c; i++)
            memcpy(b->moe_x + (size_t)i * e_dim, xn + (size_t)(list[i] / k) * e_dim,
                   sizeof(float) * (size_t)e_dim);
        halo_blk_matmul(ctx, &L->ffn_gate_exps, e, b->moe_x, c, b->ff_a);
        halo_blk_matmul(ctx, &L->ffn_up_exps, e, b->moe_x, c, b->ff_b);
        halo_swiglu(b->ff_a, b->ff_b, (int64_t)c * ff);
        halo_blk_matmul(ctx, &L->ffn_down_exps, e, b->ff_a, c, b->moe_y);
        for (int32_t i = 0; i < c; i++) {
            float w = b->moe_w[list[i]];
            float *o = out + (size_t)(list[i] / k) * e_dim;
            const float *y = b->moe_y + (size_t)i * e_dim;
            for (int64_t d = 0; d < e_dim; d++) o[d] += w * y[d];
        }
    }
}

void halo_blk_moe_shared(halo_context *ctx, const halo_layer *L, const float *xn, int64_t n,
                         float *out, float *sh, float *shg) {
    const int k = (int)ctx->hp->n_expert_used;
    if (n == 1 && k <= 16 && (uint32_t)k + 1 <= ctx->params.n_ubatch) {
        moe_one(ctx, L, true, xn, out);
        return;
    }
    const int64_t e = ctx->hp->n_embd;
    halo_blk_moe(ctx, L, xn, n, out);
    halo_blk_ffn(ctx, &L->ffn_gate_shexp, &L->ffn_up_shexp, &L->ffn_down_shexp, xn, n, sh);
    halo_blk_matmul(ctx, &L->ffn_gate_inp_shexp, 0, xn, n, shg);
    for (int64_t t = 0; t < n; t++) {
        const float g = 1.0f / (1.0f + expf(-shg[t]));
        for (int64_t i = 0; i < e; i++) out[t * e + i] += g * sh[t * e + i];
    }
}

/* ---- output head ------------------------------------------------------------------ */

void halo_blk_output(halo_context *ctx, const halo_ubatch *ub, const float *x) {
    if (ub->n_out == 0) return;
    const halo_model *m = ctx->model;
    const int64_t e = m->hp.n_embd, nv = m->hp.n_vocab;
    halo_buffers *b = &ctx->buf;
    /* the rows that asked for logits are consecutive rows of ctx->logits */
    int32_t first = -1, j = 0;
    for (int32_t t = 0; t < ub->n; t++) {
        if (ub->out[t] < 0) continue;
        if (first < 0) first = ub->out[t];
        halo_rms_norm(x + (size_t)t * e, m->output_norm.data, b->out_x + (size_t)j * e, 1, e,
                      m->hp.rms_eps);
        j++;
    }
    halo_blk_matmul(ctx, &m->output, 0, b->out_x, j, ctx->logits + (size_t)first * nv);
}

/* ---- the standard decoder ------------------------------------------------------------ */

void halo_forward_decoder(halo_context *ctx, const halo_ubatch *ub) {
    const halo_hparams *hp = ctx->hp;
    halo_buffers *b = &ctx->buf;
    const int64_t n = ub->n, e = hp->n_embd;

    halo_blk_embed(ctx, ub, b->x);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const halo_layer *L = &ctx->model->layers[il];
        /* attention with its residual */
        halo_rms_norm(b->x, L->attn_norm.data, b->xn, n, e, hp->rms_eps);
        halo_blk_attention(ctx, il, ub, b->xn, b->y);
        halo_blk_add(b->x, b->y, n * e);
        /* FFN (dense or routed experts) with its residual */
        halo_rms_norm(b->x, L->ffn_norm.data, b->xn, n, e, hp->rms_eps);
        if (L->ffn_gate_inp.data)
            halo_blk_moe(ctx, L, b->xn, n, b->y);
        else
            halo_blk_ffn(ctx, &L->ffn_gate, &L->ffn_up, &L->ffn_down, b->xn, n, b->y);
        halo_blk_add(b->x, b->y, n * e);
    }
    halo_blk_output(ctx, ub, b->x);
}
