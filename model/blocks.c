/*
 * The transformer pieces shared by the architectures: embedding, attention over
 * the paged KV cache, dense and MoE SwiGLU FFNs, the output head, and the
 * standard pre-norm decoder built from them (llama, qwen3, qwen3moe).
 *
 * Everything works on a ubatch of n tokens at once, so a prefill reads each
 * weight matrix once. Nothing here computes: every step is an op of the
 * context's backend (runtime/backend.h), on buffers that belong to it, so the
 * same code runs on the CPU and on a GPU.
 */
#include "model/arch.h"
#include "runtime/backend.h"
#include "runtime/runtime.h"

/* ---- embedding and products ------------------------------------------------------ */

void halo_blk_embed(halo_context *ctx, const halo_ubatch *ub, float *x) {
    ctx->be.ops->embed(ctx, ub, x);
}

void halo_blk_matmul(halo_context *ctx, const halo_weight *w, int64_t expert, const float *x,
                     int64_t n, float *y) {
    ctx->be.ops->matmul(ctx, w, expert, x, n, y);
}

/* One-token products; pairs (2i, 2i + 1), i < n_glu, are SwiGLU gate / up pairs. */
static void matmul_multi(halo_context *ctx, const halo_mm *mm, int n_mm, int n_glu) {
    const halo_backend_ops *be = ctx->be.ops;
    if (be->matmul_multi) {
        be->matmul_multi(ctx, mm, n_mm, n_glu);
        return;
    }
    for (int i = 0; i < n_mm; i++) be->matmul(ctx, mm[i].w, mm[i].expert, mm[i].x, 1, mm[i].y);
    for (int i = 0; i < n_glu; i++)
        be->swiglu(ctx, mm[2 * i].y, mm[2 * i + 1].y, mm[2 * i].w->n_rows);
}

void halo_blk_matmul_multi(halo_context *ctx, const halo_mm *mm, int n_mm) {
    matmul_multi(ctx, mm, n_mm, 0);
}

void halo_blk_add(halo_context *ctx, float *x, const float *y, int64_t n) {
    ctx->be.ops->add(ctx, x, y, n);
}

void halo_blk_add_rms_norm(halo_context *ctx, float *x, const float *y, const halo_weight *w,
                           float *xn, int64_t n_rows, int64_t n) {
    const halo_backend_ops *be = ctx->be.ops;
    const halo_weight *wn = w && w->data ? w : NULL;
    if (be->add_rms_norm) {
        be->add_rms_norm(ctx, x, y, wn, xn, n_rows, n, ctx->hp->rms_eps);
        return;
    }
    be->add(ctx, x, y, n_rows * n);
    be->rms_norm(ctx, x, wn, xn, n_rows, n, ctx->hp->rms_eps);
}

void halo_blk_rms_norm(halo_context *ctx, const float *x, const halo_weight *w, float *y,
                       int64_t n_rows, int64_t n) {
    ctx->be.ops->rms_norm(ctx, x, w && w->data ? w : NULL, y, n_rows, n, ctx->hp->rms_eps);
}

/* ---- attention --------------------------------------------------------------------- */

void halo_blk_attend(halo_context *ctx, uint32_t il, const halo_ubatch *ub, float *q, float *k,
                     float *v, float *out) {
    const halo_backend_ops *be = ctx->be.ops;
    const halo_hparams *hp = ctx->hp;
    const int64_t n = ub->n, nq = hp->n_head, nkv = hp->n_head_kv[il];
    const int rk = ctx->kv.rot_k, rv = ctx->kv.rot_v;
    if (rk) {
        be->hadamard(ctx, q, n, nq * hp->head_dim_k, rk);
        be->hadamard(ctx, k, n, nkv * hp->head_dim_k, rk);
    }
    if (rv) be->hadamard(ctx, v, n, nkv * hp->head_dim_v, rv);
    be->attend(ctx, il, ub, q, k, v, out);
    if (rv) be->hadamard(ctx, out, n, nq * hp->head_dim_v, rv);
}

void halo_blk_attention(halo_context *ctx, uint32_t il, const halo_ubatch *ub, const float *xn,
                        float *out) {
    const halo_hparams *hp = ctx->hp;
    const halo_layer *L = &ctx->model->layers[il];
    const halo_backend_ops *be = ctx->be.ops;
    const int nq = (int)hp->n_head, nkv = (int)hp->n_head_kv[il];
    const int hk = (int)hp->head_dim_k;
    halo_buffers *b = &ctx->buf;
    int32_t n = ub->n;

    /* q, k, v projections */
    if (n == 1) {
        halo_mm mm[3] = {{&L->wq, 0, xn, b->q}, {&L->wk, 0, xn, b->k}, {&L->wv, 0, xn, b->v}};
        halo_blk_matmul_multi(ctx, mm, 3);
    } else {
        be->matmul(ctx, &L->wq, 0, xn, n, b->q);
        be->matmul(ctx, &L->wk, 0, xn, n, b->k);
        be->matmul(ctx, &L->wv, 0, xn, n, b->v);
    }

    /* per-head q/k RMS norms (qwen3), then RoPE */
    if (L->q_norm.data) halo_blk_rms_norm(ctx, b->q, &L->q_norm, b->q, (int64_t)n * nq, hk);
    if (L->k_norm.data) halo_blk_rms_norm(ctx, b->k, &L->k_norm, b->k, (int64_t)n * nkv, hk);
    be->rope(ctx, ub, b->q, nq, hk);
    be->rope(ctx, ub, b->k, nkv, hk);

    /* attention over the cache, then the output projection */
    halo_blk_attend(ctx, il, ub, b->q, b->k, b->v, b->att);
    be->matmul(ctx, &L->wo, 0, b->att, n, out);
}

/* ---- FFNs ---------------------------------------------------------------------------- */

void halo_blk_ffn(halo_context *ctx, const halo_weight *gate, const halo_weight *up,
                  const halo_weight *down, const float *xn, int64_t n, float *out) {
    const halo_backend_ops *be = ctx->be.ops;
    halo_buffers *b = &ctx->buf;
    if (n == 1) {
        halo_mm mm[2] = {{gate, 0, xn, b->ff_a}, {up, 0, xn, b->ff_b}};
        matmul_multi(ctx, mm, 2, 1); /* SwiGLU in the job (gate and up: same height) */
    } else {
        be->matmul(ctx, gate, 0, xn, n, b->ff_a);
        be->matmul(ctx, up, 0, xn, n, b->ff_b);
        be->swiglu(ctx, b->ff_a, b->ff_b, n * gate->n_rows);
    }
    be->matmul(ctx, down, 0, b->ff_a, n, out);
}

void halo_blk_moe(halo_context *ctx, const halo_layer *L, const float *xn, int64_t n, float *out) {
    const bool shared = L->ffn_gate_shexp.data != NULL;
    halo_moe_weights w = {
        .router = &L->ffn_gate_inp,
        .gate_exps = &L->ffn_gate_exps,
        .up_exps = &L->ffn_up_exps,
        .down_exps = &L->ffn_down_exps,
        .shexp_gate_inp = shared ? &L->ffn_gate_inp_shexp : NULL,
        .shexp_gate = shared ? &L->ffn_gate_shexp : NULL,
        .shexp_up = shared ? &L->ffn_up_shexp : NULL,
        .shexp_down = shared ? &L->ffn_down_shexp : NULL,
    };
    ctx->be.ops->moe(ctx, &w, xn, n, out);
}

/* ---- output head ------------------------------------------------------------------ */

void halo_blk_output(halo_context *ctx, const halo_ubatch *ub, const float *x) {
    if (ub->n_out == 0) return;
    ctx->be.ops->output(ctx, ub, x);
}

/* ---- the standard decoder ------------------------------------------------------------ */

void halo_forward_decoder(halo_context *ctx, const halo_ubatch *ub) {
    const halo_hparams *hp = ctx->hp;
    halo_buffers *b = &ctx->buf;
    const int64_t n = ub->n, e = hp->n_embd;

    halo_blk_embed(ctx, ub, b->x);
    if (hp->n_layer > 0) halo_blk_rms_norm(ctx, b->x, &ctx->model->layers[0].attn_norm, b->xn, n, e);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const halo_layer *L = &ctx->model->layers[il];
        /* attention (its input normed at the end of the layer before), the residual and
         * the FFN's norm */
        halo_blk_attention(ctx, il, ub, b->xn, b->y);
        halo_blk_add_rms_norm(ctx, b->x, b->y, &L->ffn_norm, b->xn, n, e);
        /* FFN (dense or routed experts), its residual and the next layer's norm */
        if (L->ffn_gate_inp.data)
            halo_blk_moe(ctx, L, b->xn, n, b->y);
        else
            halo_blk_ffn(ctx, &L->ffn_gate, &L->ffn_up, &L->ffn_down, b->xn, n, b->y);
        if (il + 1 < hp->n_layer)
            halo_blk_add_rms_norm(ctx, b->x, b->y, &ctx->model->layers[il + 1].attn_norm, b->xn,
                                  n, e);
        else
            halo_blk_add(ctx, b->x, b->y, n * e);
    }
    halo_blk_output(ctx, ub, b->x);
}
