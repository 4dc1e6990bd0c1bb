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
#include "runtime/runtime.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A sequence with at least this many tokens in a ubatch uses the chunked form. */
#define QWEN35_CHUNK_MIN 8
#define QWEN35_CHUNK 32

/* ---- shapes -------------------------------------------------------------------- */

typedef struct dims {
    int64_t n_embd;
    int64_t hk, hv, dk, dv; /* DeltaNet key / value heads and head dims */
    int64_t ch;             /* conv channels: 2 hk dk + hv dv */
    int64_t vd;             /* hv dv */
    int64_t nq, hd;         /* attention query heads, head dim */
} dims;

static dims get_dims(const halo_hparams *hp) {
    dims d = {
        .n_embd = hp->n_embd,
        .hk = halo_hparams_deltanet_key_heads(hp),
        .hv = halo_hparams_deltanet_value_heads(hp),
        .dk = halo_hparams_deltanet_key_dim(hp),
        .dv = halo_hparams_deltanet_value_dim(hp),
        .nq = hp->n_head,
        .hd = hp->head_dim_k,
    };
    d.ch = 2 * d.hk * d.dk + d.hv * d.dv;
    d.vd = d.hv * d.dv;
    return d;
}

/* ---- binding -------------------------------------------------------------------- */

static int bind_deltanet(halo_model *m, uint32_t il, const dims *d, halo_error *err) {
    halo_layer *L = &m->layers[il];
    const int kw = (int)m->hp.ssm_conv_kernel;
    int rc;
    if ((rc = halo_bind(m, &L->attn_qkv, 0, d->n_embd, d->ch, 1, err, "blk.%u.attn_qkv.weight", il)) ||
        (rc = halo_bind(m, &L->attn_gate, 0, d->n_embd, d->vd, 1, err, "blk.%u.attn_gate.weight", il)) ||
        (rc = halo_bind(m, &L->ssm_alpha, 0, d->n_embd, d->hv, 1, err, "blk.%u.ssm_alpha.weight", il)) ||
        (rc = halo_bind(m, &L->ssm_beta, 0, d->n_embd, d->hv, 1, err, "blk.%u.ssm_beta.weight", il)) ||
        (rc = halo_bind(m, &L->ssm_a, HALO_BIND_F32, d->hv, 1, 1, err, "blk.%u.ssm_a", il)) ||
        (rc = halo_bind(m, &L->ssm_dt, HALO_BIND_F32, d->hv, 1, 1, err, "blk.%u.ssm_dt.bias", il)) ||
        (rc = halo_bind(m, &L->ssm_conv1d, HALO_BIND_F32, kw, d->ch, 1, err,
                        "blk.%u.ssm_conv1d.weight", il)) ||
        (rc = halo_bind(m, &L->ssm_norm, HALO_BIND_F32, d->dv, 1, 1, err, "blk.%u.ssm_norm.weight", il)) ||
        (rc = halo_bind(m, &L->ssm_out, 0, d->vd, d->n_embd, 1, err, "blk.%u.ssm_out.weight", il)))
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
    if (d.hk == 0 || d.hv % d.hk || d.dk == 0 || d.dv == 0 || d.dk > HALO_DELTANET_MAX_DIM ||
        d.dv > HALO_DELTANET_MAX_DIM || hp->ssm_conv_kernel < 1 ||
        hp->ssm_conv_kernel > HALO_DELTANET_MAX_CONV)
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "%s: Gated DeltaNet shape not supported (key heads %lld, value "
                              "heads %lld, head dims %lld/%lld, conv %u)",
                              hp->arch_name, (long long)d.hk, (long long)d.hv, (long long)d.dk,
                              (long long)d.dv, hp->ssm_conv_kernel);
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

/* The arch scratch (ctx->buf.extra), in floats, for a ubatch of n tokens:
 *   xs [n][n_embd]   normed inputs gathered in sequence order (several sequences)
 *   qkv [n][ch]      projections, then conv [n][ch] (q, k normalized; v)
 *   z [n][vd], o [n][vd], hs [n][n_embd]
 *   ab [n][2 hv] (alpha, b), gb [n][2 hv] (g, beta)
 *   qg [n][2 nq hd] and gate [n][nq hd] (attention layers)
 *   sh [n][n_embd], shg [n] (shared expert)
 *   work [hv][deltanet work] (one per value head: a head's items run on one thread)
 *   ints: perm [n], seg_off [n + 1], seg_seq [n]  */
typedef struct scratch {
    float *xs, *qkv, *conv, *z, *o, *hs, *ab, *gb, *qg, *gate, *sh, *shg, *work;
    size_t work_floats;
    int32_t *perm, *seg_off, *seg_seq;
} scratch;

static size_t work_floats(const dims *d) {
    return halo_deltanet_work_floats(QWEN35_CHUNK, d->dk, d->dv);
}

/* Lays the regions out from base (NULL: only counts); returns the floats used. */
static size_t layout(const halo_model *m, int64_t n, float *base, scratch *s) {
    const dims d = get_dims(&m->hp);
    const int64_t ff_sh = m->hp.n_ff_shexp;
    size_t off = 0;
#define REGION(name, count)                                                                        \
    do {                                                                                           \
        if (base) s->name = (void *)(base + off);                                                  \
        off += (size_t)(count);                                                                    \
        off = (off + 15) & ~(size_t)15; /* 64-byte aligned regions */                             \
    } while (0)
    REGION(xs, n * d.n_embd);
    REGION(qkv, n * d.ch);
    REGION(conv, n * d.ch);
    REGION(z, n * d.vd);
    REGION(o, n * d.vd);
    REGION(hs, n * d.n_embd);
    REGION(ab, n * 2 * d.hv);
    REGION(gb, n * 2 * d.hv);
    REGION(qg, n * 2 * d.nq * d.hd);
    REGION(gate, n * d.nq * d.hd);
    REGION(sh, ff_sh ? n * d.n_embd : 0);
    REGION(shg, ff_sh ? n : 0);
    REGION(work, (size_t)d.hv * work_floats(&d));
    REGION(perm, n);
    REGION(seg_off, n + 1);
    REGION(seg_seq, n);
#undef REGION
    if (base) s->work_floats = work_floats(&d);
    return off;
}

static size_t qwen35_scratch_floats(const halo_model *m, uint32_t n_ubatch) {
    return layout(m, n_ubatch, NULL, NULL);
}

/* ---- the ubatch's sequences ------------------------------------------------------------ */

/* Group the tokens by sequence, each sequence's tokens in batch order (which is
 * their position order): perm lists token indices segment after segment. Returns
 * the segment count; *identity when perm is 0..n-1. */
static int32_t plan_segments(const halo_ubatch *ub, scratch *s, bool *identity) {
    int32_t n_seg = 0, k = 0;
    for (int32_t t = 0; t < ub->n; t++) {
        bool seen = false;
        for (int32_t j = 0; j < n_seg && !seen; j++) seen = s->seg_seq[j] == ub->seq[t];
        if (!seen) s->seg_seq[n_seg++] = ub->seq[t];
    }
    for (int32_t j = 0; j < n_seg; j++) {
        s->seg_off[j] = k;
        for (int32_t t = 0; t < ub->n; t++)
            if (ub->seq[t] == s->seg_seq[j]) s->perm[k++] = t;
    }
    s->seg_off[n_seg] = k;
    *identity = true;
    for (int32_t t = 0; t < ub->n && *identity; t++) *identity = s->perm[t] == t;
    return n_seg;
}

/* ---- Gated DeltaNet layer ----------------------------------------------------------------- */

typedef struct deltanet_task {
    halo_context *ctx;
    uint32_t il;
    const halo_layer *L;
    const scratch *s;
    dims d;
    int32_t n_seg;
} deltanet_task;

/* Phase 1, items (segment, block): a block is one q head, one k head, or one v
 * head (whose gates come along). Conv over the segment's tokens, then the L2 norm. */
static void deltanet_conv_task(void *arg, int ith, int nth) {
    const deltanet_task *a = arg;
    const dims *d = &a->d;
    const scratch *s = a->s;
    const int64_t blocks = 2 * d->hk + d->hv, items = a->n_seg * blocks;
    const int kw = (int)a->ctx->hp->ssm_conv_kernel;
    const float scale = 1.0f / sqrtf((float)d->dk);
    for (int64_t it = ith; it < items; it += nth) {
        const int32_t seg = (int32_t)(it / blocks);
        const int64_t b = it % blocks;
        const int32_t t0 = s->seg_off[seg], nt = s->seg_off[seg + 1] - t0;
        int64_t c0, width;
        if (b < 2 * d->hk) c0 = b * d->dk, width = d->dk;
        else c0 = 2 * d->hk * d->dk + (b - 2 * d->hk) * d->dv, width = d->dv;
        float *state = halo_rs_conv(a->ctx, a->il, s->seg_seq[seg]);
        halo_deltanet_conv(s->qkv + (size_t)t0 * d->ch, d->ch, nt, d->ch, kw,
                           a->L->ssm_conv1d.data, state, s->conv + (size_t)t0 * d->ch, d->ch, c0,
                           c0 + width);
        for (int32_t t = t0; t < t0 + nt; t++) {
            float *row = s->conv + (size_t)t * d->ch;
            if (b < d->hk) halo_deltanet_l2_norm(row + c0, width, 1e-6f, scale);
            else if (b < 2 * d->hk) halo_deltanet_l2_norm(row + c0, width, 1e-6f, 1.0f);
        }
        if (b >= 2 * d->hk) { /* this value head's decay and beta */
            const int64_t h = b - 2 * d->hk;
            for (int32_t t = t0; t < t0 + nt; t++) {
                const float *ab = s->ab + (size_t)t * 2 * d->hv;
                float *gb = s->gb + (size_t)t * 2 * d->hv;
                halo_deltanet_gates(ab + h, ab + d->hv + h, (const float *)a->L->ssm_a.data + h,
                                    (const float *)a->L->ssm_dt.data + h, 1, gb + h,
                                    gb + d->hv + h);
            }
        }
    }
}

/* Phase 2, items (value head, segment), a head's items all on one thread (the
 * chunked form's work buffer is per head): the delta rule (chunked for long
 * segments), then the gated RMS norm of that head's outputs. */
static void deltanet_rule_task(void *arg, int ith, int nth) {
    const deltanet_task *a = arg;
    const dims *d = &a->d;
    const scratch *s = a->s;
    const float eps = a->ctx->hp->rms_eps;
    for (int64_t it = 0; it < a->n_seg * d->hv; it++) {
        const int h = (int)(it % d->hv);
        const int32_t seg = (int32_t)(it / d->hv);
        if (h % nth != ith) continue;
        const int32_t t0 = s->seg_off[seg], nt = s->seg_off[seg + 1] - t0;
        const float *conv = s->conv + (size_t)t0 * d->ch;
        halo_deltanet_args args = {
            .n_tokens = nt, .n_k_heads = d->hk, .n_v_heads = d->hv, .dk = d->dk, .dv = d->dv,
            .tiled = true,
            .q = conv, .k = conv + d->hk * d->dk, .qk_stride = d->ch,
            .v = conv + 2 * d->hk * d->dk, .v_stride = d->ch,
            .g = s->gb + (size_t)t0 * 2 * d->hv, .beta = s->gb + (size_t)t0 * 2 * d->hv + d->hv,
            .gb_stride = 2 * d->hv,
            .state = halo_rs_ssm(a->ctx, a->il, s->seg_seq[seg]),
            .o = s->o + (size_t)t0 * d->vd, .o_stride = d->vd,
        };
        /* (ith, nth) = (h, hv) selects exactly head h */
        if (nt >= QWEN35_CHUNK_MIN)
            halo_deltanet_chunked(&args, QWEN35_CHUNK, s->work + (size_t)h * s->work_floats, h,
                                  (int)d->hv);
        else
            halo_deltanet_recurrent(&args, h, (int)d->hv);
        for (int32_t t = t0; t < t0 + nt; t++)
            halo_deltanet_norm_gated(s->o + (size_t)t * d->vd + h * d->dv,
                                     s->z + (size_t)t * d->vd + h * d->dv, a->L->ssm_norm.data,
                                     d->dv, eps);
    }
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
    const dims *d = &a->d;
    const halo_weight *w = &a->L->ssm_out;
    float *part = rule_out_partial(a->ctx, ith), *tmp = part + d->n_embd;
    bool first = true;
    for (int64_t h = ith; h < d->hv; h += nth) {
        halo_matmul(NULL, w->type, (const char *)w->data + (size_t)h * j->col_bytes, w->row_stride,
                    w->n_rows, d->dv, a->s->o + h * d->dv, 1, first ? part : tmp);
        if (!first)
            for (int64_t i = 0; i < d->n_embd; i++) part[i] += tmp[i];
        first = false;
    }
}

/* Whether one token's output projection can join the delta-rule job: ssm_out's
 * columns split at head boundaries (whole blocks) and room for the partials. */
static bool rule_out_ok(const halo_context *ctx, const halo_layer *L, const dims *d) {
    const halo_type_traits *tr = halo_type_get(L->ssm_out.type);
    return tr && d->dv % tr->block_size == 0 && L->ssm_out.n_rows == d->n_embd &&
           ctx->buf.attn_scratch_floats >= (size_t)(2 * d->n_embd);
}

/* out[t] = the DeltaNet mixer of layer il on xn[t]. */
static void deltanet_layer(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                           const scratch *s, int32_t n_seg, bool identity, const float *xn,
                           float *out) {
    const halo_layer *L = &ctx->model->layers[il];
    const dims d = get_dims(ctx->hp);
    const int32_t n = ub->n;
    /* inputs in sequence order */
    const float *xi = xn;
    if (!identity) {
        for (int32_t i = 0; i < n; i++)
            memcpy(s->xs + (size_t)i * d.n_embd, xn + (size_t)s->perm[i] * d.n_embd,
                   sizeof(float) * (size_t)d.n_embd);
        xi = s->xs;
    }
    /* projections: conv input, z, alpha, b (one pool job when decoding one token) */
    if (n == 1) {
        halo_mm mm[4] = {{&L->attn_qkv, 0, xi, s->qkv}, {&L->attn_gate, 0, xi, s->z},
                         {&L->ssm_alpha, 0, xi, s->hs}, {&L->ssm_beta, 0, xi, s->hs + d.hv}};
        halo_blk_matmul_multi(ctx, mm, 4);
    } else {
        halo_blk_matmul(ctx, &L->attn_qkv, 0, xi, n, s->qkv);
        halo_blk_matmul(ctx, &L->attn_gate, 0, xi, n, s->z);
        halo_blk_matmul(ctx, &L->ssm_alpha, 0, xi, n, s->hs);
        halo_blk_matmul(ctx, &L->ssm_beta, 0, xi, n, s->hs + (size_t)n * d.hv);
    }
    for (int32_t t = 0; t < n; t++) { /* interleave per token: [alpha | b] */
        memcpy(s->ab + (size_t)t * 2 * d.hv, s->hs + (size_t)t * d.hv, sizeof(float) * (size_t)d.hv);
        memcpy(s->ab + (size_t)t * 2 * d.hv + d.hv, s->hs + (size_t)(n + t) * d.hv,
               sizeof(float) * (size_t)d.hv);
    }
    /* conv + norms + gates, then the delta rule + gated norm */
    deltanet_task task = {.ctx = ctx, .il = il, .L = L, .s = s, .d = d, .n_seg = n_seg};
    /* one token's conv is a few thousand flops: on the caller, no barrier */
    halo_threadpool_run(n == 1 ? NULL : ctx->pool, deltanet_conv_task, &task);
    if (n == 1 && halo_threadpool_n_threads(ctx->pool) > 1 && rule_out_ok(ctx, L, &d)) {
        const halo_type_traits *tr = halo_type_get(L->ssm_out.type);
        rule_out_job j = {task, (size_t)(d.dv / tr->block_size) * tr->type_size};
        halo_threadpool_run(ctx->pool, deltanet_rule_out_task, &j);
        const int nth = halo_threadpool_n_threads(ctx->pool);
        const int used = d.hv < nth ? (int)d.hv : nth; /* threads that had a head */
        const float *p0 = rule_out_partial(ctx, 0);
        for (int64_t i = 0; i < d.n_embd; i++) out[i] = p0[i];
        for (int t = 1; t < used; t++) {
            const float *pt = rule_out_partial(ctx, t);
            for (int64_t i = 0; i < d.n_embd; i++) out[i] += pt[i];
        }
        return;
    }
    halo_threadpool_run(ctx->pool, deltanet_rule_task, &task);
    /* output projection, back in batch order */
    if (identity) {
        halo_blk_matmul(ctx, &L->ssm_out, 0, s->o, n, out);
        return;
    }
    halo_blk_matmul(ctx, &L->ssm_out, 0, s->o, n, s->hs);
    for (int32_t i = 0; i < n; i++)
        memcpy(out + (size_t)s->perm[i] * d.n_embd, s->hs + (size_t)i * d.n_embd,
               sizeof(float) * (size_t)d.n_embd);
}

/* ---- gated full attention -------------------------------------------------------------------- */

static void attention_layer(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                            const scratch *s, const float *xn, float *out) {
    const halo_hparams *hp = ctx->hp;
    const halo_layer *L = &ctx->model->layers[il];
    halo_buffers *b = &ctx->buf;
    const dims d = get_dims(hp);
    const int nq = (int)d.nq, nkv = (int)hp->n_head_kv[il], hd = (int)d.hd;
    const int32_t n = ub->n;
    if (n == 1) {
        halo_mm mm[3] = {{&L->wq, 0, xn, s->qg}, {&L->wk, 0, xn, b->k}, {&L->wv, 0, xn, b->v}};
        halo_blk_matmul_multi(ctx, mm, 3);
    } else {
        halo_blk_matmul(ctx, &L->wq, 0, xn, n, s->qg);
        halo_blk_matmul(ctx, &L->wk, 0, xn, n, b->k);
        halo_blk_matmul(ctx, &L->wv, 0, xn, n, b->v);
    }
    for (int32_t t = 0; t < n; t++) {
        float *q = b->q + (size_t)t * nq * hd, *gate = s->gate + (size_t)t * nq * hd;
        float *k = b->k + (size_t)t * nkv * hd;
        for (int h = 0; h < nq; h++) { /* per head: [q | gate] */
            const float *src = s->qg + ((size_t)t * nq + h) * 2 * hd;
            memcpy(q + (size_t)h * hd, src, sizeof(float) * (size_t)hd);
            memcpy(gate + (size_t)h * hd, src + hd, sizeof(float) * (size_t)hd);
        }
        halo_rms_norm(q, L->q_norm.data, q, nq, hd, hp->rms_eps);
        halo_rms_norm(k, L->k_norm.data, k, nkv, hd, hp->rms_eps);
        halo_rope(q, nq, hd, (int)hp->n_rot, HALO_ROPE_NEOX, (float)ub->pos[t], b->inv_freq);
        halo_rope(k, nkv, hd, (int)hp->n_rot, HALO_ROPE_NEOX, (float)ub->pos[t], b->inv_freq);
    }
    halo_blk_attend(ctx, il, ub, b->q, b->k, b->v, b->att);
    halo_sigmoid_gate(b->att, s->gate, (int64_t)n * nq * hd);
    halo_blk_matmul(ctx, &L->wo, 0, b->att, n, out);
}

/* ---- FFN ----------------------------------------------------------------------------------- */

static void ffn_layer(halo_context *ctx, const halo_layer *L, const scratch *s, const float *xn,
                      int64_t n, float *out) {
    if (!L->ffn_gate_inp.data) {
        halo_blk_ffn(ctx, &L->ffn_gate, &L->ffn_up, &L->ffn_down, xn, n, out);
        return;
    }
    if (L->ffn_gate_shexp.data) halo_blk_moe_shared(ctx, L, xn, n, out, s->sh, s->shg);
    else halo_blk_moe(ctx, L, xn, n, out);
}

/* ---- the forward pass ------------------------------------------------------------------------ */

static void qwen35_forward(halo_context *ctx, const halo_ubatch *ub) {
    const halo_hparams *hp = ctx->hp;
    halo_buffers *b = &ctx->buf;
    const int64_t n = ub->n, e = hp->n_embd;
    scratch s;
    layout(ctx->model, ctx->params.n_ubatch, b->extra, &s);
    bool identity;
    const int32_t n_seg = plan_segments(ub, &s, &identity);

    halo_blk_embed(ctx, ub, b->x);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const halo_layer *L = &ctx->model->layers[il];
        if (hp->layer_kind[il] == HALO_LAYER_NEXTN) continue; /* MTP heads: not run */
        /* token mixer */
        halo_rms_norm(b->x, L->attn_norm.data, b->xn, n, e, hp->rms_eps);
        if (hp->layer_kind[il] == HALO_LAYER_DELTANET)
            deltanet_layer(ctx, il, ub, &s, n_seg, identity, b->xn, b->y);
        else
            attention_layer(ctx, il, ub, &s, b->xn, b->y);
        halo_blk_add(b->x, b->y, n * e);
        /* FFN */
        halo_rms_norm(b->x, L->ffn_norm.data, b->xn, n, e, hp->rms_eps);
        ffn_layer(ctx, L, &s, b->xn, n, b->y);
        halo_blk_add(b->x, b->y, n * e);
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
