/*
 * qwen35 and qwen35moe: the Qwen3.5 hybrids. Three of every four layers mix tokens
 * with a Gated DeltaNet (linear attention with a fixed-size recurrent state per
 * sequence), the fourth with gated full attention over the KV cache; every layer
 * then has a SwiGLU FFN (qwen35) or routed experts plus a gated shared expert
 * (qwen35moe).
 *
 * What the GGUF files hold, checked against the original implementation's
 * logits (tests/model/test_qwen35.c):
 * - The RMS norms' weights already include the original's "1 +" (the converter
 *   adds it); the DeltaNet output norm never had it.
 * - ssm_a is A = -exp(A_log); the decay is g = A * softplus(alpha + ssm_dt.bias).
 * - attn_qkv is the conv's input: q (key heads x dk), k (same), v (value heads x
 *   dv); attn_gate is z. The value heads are stored in the order where value head
 *   h reads key head h % key_heads ("tiled"; the converter reorders them from the
 *   original's repeat_interleave grouping).
 * - attn_q holds per head [q (head_dim), output gate (head_dim)].
 * - RoPE: NEOX halves over the first n_rot dims; the interleaved multi-section
 *   layout ([11, 11, 10]) gives every section the same position for text, which
 *   makes it ordinary RoPE.
 * - Routing: softmax over the experts, top-k, renormalized; the shared expert is
 *   scaled by sigmoid(ffn_gate_inp_shexp . x).
 * MTP (nextn) layers at the end of a file are bound when present and skipped.
 */
#include "format/gguf.h"
#include "model/arch.h"
#include "quant/quant.h"
#include "runtime/backend.h"
#include "runtime/runtime.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- shapes -------------------------------------------------------------------- */

typedef struct dims {
    int64_t n_embd;
    halo_deltanet_dims dn; /* DeltaNet heads, head dims, conv channels */
    int64_t nq, hd;        /* attention query heads, head dim */
} dims;

static dims get_dims(const halo_hparams *hp) {
    return (dims){
        .n_embd = hp->n_embd,
        .dn = halo_hparams_deltanet_dims(hp),
        .nq = hp->n_head,
        .hd = hp->head_dim_k,
    };
}

/* ---- binding -------------------------------------------------------------------- */

static int bind_deltanet(halo_model *m, uint32_t il, const dims *d, halo_error *err) {
    halo_layer *L = &m->layers[il];
    const int kw = (int)m->hp.ssm_conv_kernel;
    const halo_deltanet_dims *dn = &d->dn;
    int rc;
    if ((rc = halo_bind(m, &L->attn_qkv, 0, d->n_embd, dn->ch, 1, err, "blk.%u.attn_qkv.weight", il)) ||
        (rc = halo_bind(m, &L->attn_gate, 0, d->n_embd, dn->vd, 1, err, "blk.%u.attn_gate.weight", il)) ||
        (rc = halo_bind(m, &L->ssm_alpha, 0, d->n_embd, dn->hv, 1, err, "blk.%u.ssm_alpha.weight", il)) ||
        (rc = halo_bind(m, &L->ssm_beta, 0, d->n_embd, dn->hv, 1, err, "blk.%u.ssm_beta.weight", il)) ||
        (rc = halo_bind(m, &L->ssm_a, HALO_BIND_F32, dn->hv, 1, 1, err, "blk.%u.ssm_a", il)) ||
        (rc = halo_bind(m, &L->ssm_dt, HALO_BIND_F32, dn->hv, 1, 1, err, "blk.%u.ssm_dt.bias", il)) ||
        (rc = halo_bind(m, &L->ssm_conv1d, HALO_BIND_F32, kw, dn->ch, 1, err,
                        "blk.%u.ssm_conv1d.weight", il)) ||
        (rc = halo_bind(m, &L->ssm_norm, HALO_BIND_F32, dn->dv, 1, 1, err, "blk.%u.ssm_norm.weight", il)) ||
        (rc = halo_bind(m, &L->ssm_out, 0, dn->vd, d->n_embd, 1, err, "blk.%u.ssm_out.weight", il)))
        return rc;
    return 0;
}

/* Gated attention; flags OPTIONAL for MTP layers. */
static int bind_attention(halo_model *m, uint32_t il, const dims *d, unsigned flags,
                          halo_error *err) {
    halo_layer *L = &m->layers[il];
    const int64_t nkv = m->hp.n_head_kv[il], hdv = m->hp.head_dim_v;
    int rc;
    if ((rc = halo_bind(m, &L->wq, flags, d->n_embd, 2 * d->nq * d->hd, 1, err, "blk.%u.attn_q.weight", il)) ||
        (rc = halo_bind(m, &L->wk, flags, d->n_embd, nkv * d->hd, 1, err, "blk.%u.attn_k.weight", il)) ||
        (rc = halo_bind(m, &L->wv, flags, d->n_embd, nkv * hdv, 1, err, "blk.%u.attn_v.weight", il)) ||
        (rc = halo_bind(m, &L->wo, flags, d->nq * hdv, d->n_embd, 1, err, "blk.%u.attn_output.weight", il)) ||
        (rc = halo_bind(m, &L->q_norm, flags | HALO_BIND_F32, d->hd, 1, 1, err,
                        "blk.%u.attn_q_norm.weight", il)) ||
        (rc = halo_bind(m, &L->k_norm, flags | HALO_BIND_F32, d->hd, 1, 1, err,
                        "blk.%u.attn_k_norm.weight", il)))
        return rc;
    return 0;
}

static int bind_ffn(halo_model *m, uint32_t il, const dims *d, unsigned flags, halo_error *err) {
    halo_layer *L = &m->layers[il];
    const halo_hparams *hp = &m->hp;
    const int64_t e = d->n_embd;
    int rc;
    if (hp->arch == HALO_ARCH_QWEN35)
        return (rc = halo_bind(m, &L->ffn_gate, flags, e, hp->n_ff, 1, err, "blk.%u.ffn_gate.weight", il)) ||
                       (rc = halo_bind(m, &L->ffn_up, flags, e, hp->n_ff, 1, err, "blk.%u.ffn_up.weight", il)) ||
                       (rc = halo_bind(m, &L->ffn_down, flags, hp->n_ff, e, 1, err,
                                       "blk.%u.ffn_down.weight", il))
                   ? rc
                   : 0;
    const int64_t ne = hp->n_expert, ff = hp->n_ff_exp, fs = hp->n_ff_shexp;
    if ((rc = halo_bind(m, &L->ffn_gate_inp, flags, e, ne, 1, err, "blk.%u.ffn_gate_inp.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_gate_exps, flags, e, ff, ne, err, "blk.%u.ffn_gate_exps.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_up_exps, flags, e, ff, ne, err, "blk.%u.ffn_up_exps.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_down_exps, flags, ff, e, ne, err, "blk.%u.ffn_down_exps.weight", il)))
        return rc;
    if (fs == 0) return 0;
    if ((rc = halo_bind(m, &L->ffn_gate_inp_shexp, flags, e, 1, 1, err,
                        "blk.%u.ffn_gate_inp_shexp.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_gate_shexp, flags, e, fs, 1, err, "blk.%u.ffn_gate_shexp.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_up_shexp, flags, e, fs, 1, err, "blk.%u.ffn_up_shexp.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_down_shexp, flags, fs, e, 1, err, "blk.%u.ffn_down_shexp.weight", il)))
        return rc;
    return 0;
}

static int qwen35_bind(halo_model *m, halo_error *err) {
    const halo_hparams *hp = &m->hp;
    const dims d = get_dims(hp);
    const halo_deltanet_dims *dn = &d.dn;
    if (dn->hk == 0 || dn->hv % dn->hk || dn->dk == 0 || dn->dv == 0 ||
        dn->dk > HALO_DELTANET_MAX_DIM || dn->dv > HALO_DELTANET_MAX_DIM ||
        hp->ssm_conv_kernel < 1 || hp->ssm_conv_kernel > HALO_DELTANET_MAX_CONV)
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "%s: Gated DeltaNet shape not supported (key heads %lld, value "
                              "heads %lld, head dims %lld/%lld, conv %u)",
                              hp->arch_name, (long long)dn->hk, (long long)dn->hv,
                              (long long)dn->dk, (long long)dn->dv, hp->ssm_conv_kernel);
    if (hp->n_rot % 2 || hp->n_rot > hp->head_dim_k || hp->head_dim_k != hp->head_dim_v)
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "%s: attention shape not supported (rotary dims %u, head dims %u/%u)",
                              hp->arch_name, hp->n_rot, hp->head_dim_k, hp->head_dim_v);
    int rc = halo_bind_common(m, err);
    m->rope_mode = HALO_ROPE_NEOX;
    m->expert_weights_norm = true;
    for (uint32_t il = 0; il < hp->n_layer && !rc; il++) {
        const halo_layer_kind kind = hp->layer_kind[il];
        const unsigned opt = kind == HALO_LAYER_NEXTN ? HALO_BIND_OPTIONAL : 0;
        halo_layer *L = &m->layers[il];
        if ((rc = halo_bind(m, &L->attn_norm, opt | HALO_BIND_F32, d.n_embd, 1, 1, err,
                            "blk.%u.attn_norm.weight", il)) ||
            (rc = halo_bind(m, &L->ffn_norm, opt | HALO_BIND_F32, d.n_embd, 1, 1, err,
                            "blk.%u.post_attention_norm.weight", il)))
            break;
        rc = kind == HALO_LAYER_DELTANET ? bind_deltanet(m, il, &d, err)
                                         : bind_attention(m, il, &d, opt, err);
        if (!rc) rc = bind_ffn(m, il, &d, opt, err);
    }
    return rc;
}

/* ---- scratch ------------------------------------------------------------------------ */

/* The arch scratch (ctx->buf.extra, the backend's memory), in floats, for a ubatch
 * of n tokens:
 *   xs [n][n_embd]   normed inputs gathered in sequence order (several sequences)
 *   qkv [n][ch]      projections, then conv [n][ch] (q, k normalized; v)
 *   z [n][vd], o [n][vd], hs [n][n_embd]
 *   alpha, b, g, beta [n][hv]
 *   qg [n][2 nq hd] and gate [n][nq hd] (attention layers) */
typedef struct scratch {
    float *xs, *qkv, *conv, *z, *o, *hs, *alpha, *b, *g, *beta, *qg, *gate;
} scratch;

/* Lays the regions out from base (NULL: only counts); returns the floats used. */
static size_t layout(const halo_model *m, int64_t n, float *base, scratch *s) {
    const dims d = get_dims(&m->hp);
    size_t off = 0;
#define REGION(name, count)                                                                        \
    do {                                                                                           \
        if (base) s->name = (void *)(base + off);                                                  \
        off += (size_t)(count);                                                                    \
        off = (off + 15) & ~(size_t)15; /* 64-byte aligned regions */                             \
    } while (0)
    REGION(xs, n * d.n_embd);
    REGION(qkv, n * d.dn.ch);
    REGION(conv, n * d.dn.ch);
    REGION(z, n * d.dn.vd);
    REGION(o, n * d.dn.vd);
    REGION(hs, n * d.n_embd);
    REGION(alpha, n * d.dn.hv);
    REGION(b, n * d.dn.hv);
    REGION(g, n * d.dn.hv);
    REGION(beta, n * d.dn.hv);
    REGION(qg, n * 2 * d.nq * d.hd);
    REGION(gate, n * d.nq * d.hd);
#undef REGION
    return off;
}

static size_t qwen35_scratch_floats(const halo_model *m, uint32_t n_ubatch) {
    return layout(m, n_ubatch, NULL, NULL);
}

/* ---- Gated DeltaNet layer ----------------------------------------------------------------- */

/* out[t] = the DeltaNet mixer of layer il on xn[t]. The ubatch's tokens run in
 * sequence order (ub's segments): gathered in, scattered back. */
static void deltanet_layer(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                           const scratch *s, const float *xn, float *out) {
    const halo_layer *L = &ctx->model->layers[il];
    const halo_backend_ops *be = ctx->be.ops;
    const dims d = get_dims(ctx->hp);
    const int32_t n = ub->n;
    /* inputs in sequence order */
    const float *xi = xn;
    if (!ub->identity) {
        be->gather(ctx, ub, s->xs, xn, d.n_embd);
        xi = s->xs;
    }
    /* projections: conv input, z, alpha, b (one job when decoding one token) */
    if (n == 1) {
        halo_mm mm[4] = {{&L->attn_qkv, 0, xi, s->qkv}, {&L->attn_gate, 0, xi, s->z},
                         {&L->ssm_alpha, 0, xi, s->alpha}, {&L->ssm_beta, 0, xi, s->b}};
        halo_blk_matmul_multi(ctx, mm, 4);
    } else {
        be->matmul(ctx, &L->attn_qkv, 0, xi, n, s->qkv);
        be->matmul(ctx, &L->attn_gate, 0, xi, n, s->z);
        be->matmul(ctx, &L->ssm_alpha, 0, xi, n, s->alpha);
        be->matmul(ctx, &L->ssm_beta, 0, xi, n, s->b);
    }
    /* conv + norms + gates, then the delta rule + gated norm */
    be->deltanet_conv(ctx, il, ub, s->qkv, s->alpha, s->b, s->conv, s->g, s->beta);
    if (n == 1 && be->deltanet_rule_out) { /* with the output projection, one token */
        be->deltanet_rule_out(ctx, il, ub, s->conv, s->g, s->beta, s->z, s->o, out);
        return;
    }
    be->deltanet_rule(ctx, il, ub, s->conv, s->g, s->beta, s->z, s->o);
    /* output projection, back in batch order */
    if (ub->identity) {
        be->matmul(ctx, &L->ssm_out, 0, s->o, n, out);
        return;
    }
    be->matmul(ctx, &L->ssm_out, 0, s->o, n, s->hs);
    be->scatter(ctx, ub, out, s->hs, d.n_embd);
}

/* ---- gated full attention -------------------------------------------------------------------- */

static void attention_layer(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                            const scratch *s, const float *xn, float *out) {
    const halo_hparams *hp = ctx->hp;
    const halo_layer *L = &ctx->model->layers[il];
    const halo_backend_ops *be = ctx->be.ops;
    halo_buffers *b = &ctx->buf;
    const dims d = get_dims(hp);
    const int nq = (int)d.nq, nkv = (int)hp->n_head_kv[il], hd = (int)d.hd;
    const int32_t n = ub->n;
    if (n == 1) {
        halo_mm mm[3] = {{&L->wq, 0, xn, s->qg}, {&L->wk, 0, xn, b->k}, {&L->wv, 0, xn, b->v}};
        halo_blk_matmul_multi(ctx, mm, 3);
    } else {
        be->matmul(ctx, &L->wq, 0, xn, n, s->qg);
        be->matmul(ctx, &L->wk, 0, xn, n, b->k);
        be->matmul(ctx, &L->wv, 0, xn, n, b->v);
    }
    /* per head: [q | gate] */
    be->copy2d(ctx, b->q, hd, s->qg, 2 * hd, (int64_t)n * nq, hd);
    be->copy2d(ctx, s->gate, hd, s->qg + hd, 2 * hd, (int64_t)n * nq, hd);
    halo_blk_rms_norm(ctx, b->q, &L->q_norm, b->q, (int64_t)n * nq, hd);
    halo_blk_rms_norm(ctx, b->k, &L->k_norm, b->k, (int64_t)n * nkv, hd);
    be->rope(ctx, ub, b->q, nq, hd);
    be->rope(ctx, ub, b->k, nkv, hd);
    halo_blk_attend(ctx, il, ub, b->q, b->k, b->v, b->att);
    be->sigmoid_gate(ctx, b->att, s->gate, (int64_t)n * nq * hd);
    be->matmul(ctx, &L->wo, 0, b->att, n, out);
}

/* ---- FFN ----------------------------------------------------------------------------------- */

static void ffn_layer(halo_context *ctx, const halo_layer *L, const float *xn, int64_t n,
                      float *out) {
    if (!L->ffn_gate_inp.data) halo_blk_ffn(ctx, &L->ffn_gate, &L->ffn_up, &L->ffn_down, xn, n, out);
    else halo_blk_moe(ctx, L, xn, n, out);
}

/* ---- the forward pass ------------------------------------------------------------------------ */

/* The first layer from il on that runs (MTP heads do not), -1 if none. */
static int32_t next_layer(const halo_hparams *hp, uint32_t il) {
    for (; il < hp->n_layer; il++)
        if (hp->layer_kind[il] != HALO_LAYER_NEXTN) return (int32_t)il;
    return -1;
}

static void qwen35_forward(halo_context *ctx, const halo_ubatch *ub) {
    const halo_hparams *hp = ctx->hp;
    halo_buffers *b = &ctx->buf;
    const int64_t n = ub->n, e = hp->n_embd;
    scratch s = {0};
    layout(ctx->model, ctx->params.n_ubatch, b->extra, &s);

    halo_blk_embed(ctx, ub, b->x);
    int32_t il = next_layer(hp, 0);
    if (il >= 0) halo_blk_rms_norm(ctx, b->x, &ctx->model->layers[il].attn_norm, b->xn, n, e);
    while (il >= 0) {
        const halo_layer *L = &ctx->model->layers[il];
        /* token mixer (its input normed at the end of the layer before), the residual
         * and the FFN's norm */
        if (hp->layer_kind[il] == HALO_LAYER_DELTANET)
            deltanet_layer(ctx, (uint32_t)il, ub, &s, b->xn, b->y);
        else
            attention_layer(ctx, (uint32_t)il, ub, &s, b->xn, b->y);
        halo_blk_add_rms_norm(ctx, b->x, b->y, &L->ffn_norm, b->xn, n, e);
        /* FFN, its residual and the next layer's norm */
        ffn_layer(ctx, L, b->xn, n, b->y);
        const int32_t next = next_layer(hp, (uint32_t)il + 1);
        if (next >= 0)
            halo_blk_add_rms_norm(ctx, b->x, b->y, &ctx->model->layers[next].attn_norm, b->xn,
                                  n, e);
        else
            halo_blk_add(ctx, b->x, b->y, n * e);
        il = next;
    }
    halo_blk_output(ctx, ub, b->x);
}

const halo_arch_ops halo_arch_qwen35 = {
    .arch = HALO_ARCH_QWEN35,
    .bind = qwen35_bind,
    .scratch_floats = qwen35_scratch_floats,
    .forward = qwen35_forward,
};

const halo_arch_ops halo_arch_qwen35moe = {
    .arch = HALO_ARCH_QWEN35MOE,
    .bind = qwen35_bind,
    .scratch_floats = qwen35_scratch_floats,
    .forward = qwen35_forward,
};
