/*
 * Contexts and halo_decode.
 *
 * Everything a forward pass needs is allocated when the context is made: the
 * KV pages, the recurrent state, the f32 work buffers for n_ubatch tokens and
 * the attention scratch of each thread. halo_decode validates the whole batch
 * and reserves its cache pages before any state changes, so a rejected batch
 * leaves the context exactly as it was; the forward passes themselves cannot
 * fail. The logits buffer grows to the largest number of rows a batch has asked
 * for and then stays.
 */
#include "model/arch.h"
#include "quant/quant.h"
#include "runtime/backend.h"
#include "runtime/runtime.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void halo_context_default_params(halo_context_params *p) {
    memset(p, 0, sizeof *p);
    p->n_ctx = HALO_PLAN_DEFAULT_CTX;
    p->n_seq_max = 1;
    p->n_batch = 2048;
    p->n_ubatch = HALO_PLAN_DEFAULT_UBATCH;
    p->type_k = HALO_TYPE_F16;
    p->type_v = HALO_TYPE_F16;
    p->n_threads = 0;
}

/* calloc of n * size bytes, overflow-checked; records the failure in err. */
static void *alloc_array(uint64_t n, uint64_t size, halo_error *err, int *rc) {
    uint64_t bytes;
    if (*rc) return NULL;
    if (halo_mul_overflow(n ? n : 1, size, &bytes) || bytes > SIZE_MAX) {
        *rc = halo_error_set(err, HALO_ERR_RANGE, "context buffers too large (%llu x %llu bytes)",
                             (unsigned long long)n, (unsigned long long)size);
        return NULL;
    }
    void *p = calloc(1, (size_t)bytes);
    if (!p)
        *rc = halo_error_set(err, HALO_ERR_NOMEM,
                             "out of memory making the context (%llu bytes): lower -c, -b or -ub",
                             (unsigned long long)bytes);
    return p;
}

/* alloc_array in the backend's memory (the buffers ops read and write). */
static void *be_array(halo_context *ctx, uint64_t n, uint64_t size, halo_error *err, int *rc) {
    uint64_t bytes;
    if (*rc) return NULL;
    if (halo_mul_overflow(n ? n : 1, size, &bytes) || bytes > SIZE_MAX) {
        *rc = halo_error_set(err, HALO_ERR_RANGE, "context buffers too large (%llu x %llu bytes)",
                             (unsigned long long)n, (unsigned long long)size);
        return NULL;
    }
    void *p = ctx->be.ops->alloc(&ctx->be, (size_t)bytes);
    if (!p)
        *rc = halo_error_set(err, HALO_ERR_NOMEM,
                             "out of %s memory making the context (%llu bytes): lower -c, -np, "
                             "-b or -ub",
                             ctx->be.ops->name, (unsigned long long)bytes);
    return p;
}

static uint64_t umax(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* A quantized cache stores its rows rotated by a Walsh-Hadamard matrix: the rotation
 * spreads an outlier channel over the block's 32 values, so one value no longer sets
 * the block's scale for all (kdoc-moe, q4_0 K and V: KL divergence 3.0e-3 without,
 * 2.4e-3 with; docs/QUANT.md). q.k is unchanged when q turns too, and the weighted sum
 * of rotated V rows is the rotated output, turned back after. K turns in runs of the
 * largest power of two dividing the head dimension, V in runs of 64 (the two choices
 * of the peer engine, whose KV caches this matches by default). Head dimensions that
 * are not a multiple of 64 are not rotated; HALO_ATTN_ROT_DISABLE=1 turns it off. */
static void kv_rotation(const halo_hparams *hp, halo_kv_cache *kv) {
    const char *off = getenv("HALO_ATTN_ROT_DISABLE");
    kv->rot_k = kv->rot_v = 0;
    if (off && atoi(off)) return;
    if (halo_type_get(kv->type_k)->is_quantized && hp->head_dim_k % 64 == 0) {
        int b = 64;
        while (hp->head_dim_k % (2 * b) == 0 && 2 * b <= 1024) b *= 2;
        kv->rot_k = b;
    }
    if (halo_type_get(kv->type_v)->is_quantized && hp->head_dim_v % 64 == 0) kv->rot_v = 64;
}

static int kv_init(halo_context *ctx, halo_error *err) {
    const halo_hparams *hp = ctx->hp;
    halo_kv_cache *kv = &ctx->kv;
    int rc = 0;
    kv->type_k = ctx->params.type_k;
    kv->type_v = ctx->params.type_v;
    kv_rotation(hp, kv);
    kv->k_row_bytes = alloc_array(hp->n_layer, sizeof(size_t), err, &rc);
    kv->v_row_bytes = alloc_array(hp->n_layer, sizeof(size_t), err, &rc);
    kv->k_head_bytes = alloc_array(hp->n_layer, sizeof(size_t), err, &rc);
    kv->v_head_bytes = alloc_array(hp->n_layer, sizeof(size_t), err, &rc);
    kv->k = alloc_array(hp->n_layer, sizeof(char *), err, &rc);
    kv->v = alloc_array(hp->n_layer, sizeof(char *), err, &rc);
    if (rc) return rc;
    if (hp->n_attention_layers == 0) return 0; /* n_pages stays 0: no KV cache */
    kv->n_pages = (int32_t)((ctx->params.n_ctx + HALO_KV_PAGE - 1) / HALO_KV_PAGE);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        if (hp->layer_kind[il] != HALO_LAYER_ATTENTION) continue;
        kv->k_head_bytes[il] = halo_type_row_size(kv->type_k, hp->head_dim_k);
        kv->v_head_bytes[il] = halo_type_row_size(kv->type_v, hp->head_dim_v);
        if (!kv->k_head_bytes[il] || !kv->v_head_bytes[il])
            return halo_error_set(err, HALO_ERR_ARG,
                                  "KV cache types %s/%s need head dims that are a multiple of "
                                  "their block size; this model's are %u/%u (use f16 or f32)",
                                  halo_type_name(kv->type_k), halo_type_name(kv->type_v),
                                  hp->head_dim_k, hp->head_dim_v);
        kv->k_row_bytes[il] = kv->k_head_bytes[il] * hp->n_head_kv[il];
        kv->v_row_bytes[il] = kv->v_head_bytes[il] * hp->n_head_kv[il];
        uint64_t cells = (uint64_t)kv->n_pages * HALO_KV_PAGE;
        kv->k[il] = be_array(ctx, cells, kv->k_row_bytes[il], err, &rc);
        kv->v[il] = be_array(ctx, cells, kv->v_row_bytes[il], err, &rc);
        if (rc) return rc;
    }
    kv->refcount = alloc_array((uint64_t)kv->n_pages, sizeof(int32_t), err, &rc);
    kv->free_pages = alloc_array((uint64_t)kv->n_pages, sizeof(int32_t), err, &rc);
    kv->page_table = alloc_array((uint64_t)kv->n_pages * ctx->params.n_seq_max, sizeof(int32_t),
                                 err, &rc);
    kv->n_seq_pages = alloc_array(ctx->params.n_seq_max, sizeof(int32_t), err, &rc);
    if (rc) return rc;
    /* the stack pops low page ids first */
    for (int32_t i = 0; i < kv->n_pages; i++) kv->free_pages[i] = kv->n_pages - 1 - i;
    kv->n_free = kv->n_pages;
    return 0;
}

static int rs_init(halo_context *ctx, halo_error *err) {
    const halo_hparams *hp = ctx->hp;
    halo_recurrent *rs = &ctx->rs;
    int rc = 0;
    rs->slot = alloc_array(hp->n_layer, sizeof(int32_t), err, &rc);
    if (rc) return rc;
    for (uint32_t il = 0; il < hp->n_layer; il++)
        rs->slot[il] = hp->layer_kind[il] == HALO_LAYER_DELTANET ? (int32_t)rs->n_slots++ : -1;
    if (rs->n_slots == 0) return 0;
    uint64_t conv = (uint64_t)(hp->ssm_conv_kernel ? hp->ssm_conv_kernel - 1 : 0) *
                    halo_hparams_deltanet_conv_channels(hp);
    uint64_t ssm = (uint64_t)halo_hparams_deltanet_value_heads(hp) *
                   halo_hparams_deltanet_key_dim(hp) * halo_hparams_deltanet_value_dim(hp);
    rs->conv_floats = (size_t)conv;
    rs->ssm_floats = (size_t)ssm;
    uint64_t per = (uint64_t)rs->n_slots * ctx->params.n_seq_max;
    rs->conv = be_array(ctx, per, umax(conv, 1) * sizeof(float), err, &rc);
    rs->ssm = be_array(ctx, per, umax(ssm, 1) * sizeof(float), err, &rc);
    return rc;
}

static int buffers_init(halo_context *ctx, halo_error *err) {
    const halo_hparams *hp = ctx->hp;
    halo_buffers *b = &ctx->buf;
    const uint64_t u = ctx->params.n_ubatch, e = hp->n_embd;
    uint32_t kv_max = 1, kv_min = hp->n_head ? hp->n_head : 1;
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        if (hp->layer_kind[il] != HALO_LAYER_ATTENTION) continue;
        kv_max = hp->n_head_kv[il] > kv_max ? hp->n_head_kv[il] : kv_max;
        if (hp->n_head_kv[il] && hp->n_head_kv[il] < kv_min) kv_min = hp->n_head_kv[il];
    }
    const uint64_t ff = umax(umax(hp->n_ff, hp->n_ff_exp), umax(hp->n_ff_shexp, 1));
    const uint64_t n_exp = umax(hp->n_expert, 1), k = umax(hp->n_expert_used, 1);
    int rc = 0;
    b->x = be_array(ctx, u * e, sizeof(float), err, &rc);
    b->xn = be_array(ctx, u * e, sizeof(float), err, &rc);
    b->y = be_array(ctx, u * e, sizeof(float), err, &rc);
    b->q = be_array(ctx, u * hp->n_head * hp->head_dim_k, sizeof(float), err, &rc);
    b->k = be_array(ctx, u * kv_max * hp->head_dim_k, sizeof(float), err, &rc);
    b->v = be_array(ctx, u * kv_max * hp->head_dim_v, sizeof(float), err, &rc);
    b->att = be_array(ctx, u * hp->n_head * hp->head_dim_v, sizeof(float), err, &rc);
    b->ff_a = be_array(ctx, u * ff, sizeof(float), err, &rc);
    b->ff_b = be_array(ctx, u * ff, sizeof(float), err, &rc);
    b->router = alloc_array(u * n_exp, sizeof(float), err, &rc);
    b->moe_ids = alloc_array(u * k, sizeof(int32_t), err, &rc);
    b->moe_w = alloc_array(u * k, sizeof(float), err, &rc);
    b->moe_tok = alloc_array(n_exp * u, sizeof(int32_t), err, &rc);
    b->moe_count = alloc_array(n_exp, sizeof(int32_t), err, &rc);
    b->moe_x = alloc_array(u * e, sizeof(float), err, &rc);
    b->moe_y = alloc_array(u * e, sizeof(float), err, &rc);
    b->out_x = alloc_array(u * e, sizeof(float), err, &rc);
    b->inv_freq = alloc_array(umax(hp->n_rot / 2, 1), sizeof(float), err, &rc);
    int group = (int)(hp->n_head / kv_min);
    b->attn_scratch_floats = halo_attn_scratch_floats(HALO_KV_PAGE, (int)hp->head_dim_k,
                                                      (int)hp->head_dim_v, group ? group : 1);
    b->attn_scratch_floats = (b->attn_scratch_floats + 15) & ~(size_t)15; /* 64-byte apart */
    b->attn_scratch = alloc_array((uint64_t)ctx->n_threads * b->attn_scratch_floats, sizeof(float),
                                  err, &rc);
    b->attn_block = alloc_array(u + 1, sizeof(int32_t), err, &rc);
    b->attn_nkv = alloc_array(u, sizeof(int32_t), err, &rc);
    b->attn_part_floats = HALO_ATTN_PART_FLOATS(group ? group : 1, hp->head_dim_v);
    b->attn_parts = alloc_array((uint64_t)ctx->n_threads * b->attn_part_floats, sizeof(float), err,
                                &rc);
    size_t extra = ctx->model->ops->scratch_floats
                       ? ctx->model->ops->scratch_floats(ctx->model, ctx->params.n_ubatch)
                       : 0;
    b->extra = be_array(ctx, umax(extra, 1), sizeof(float), err, &rc);
    if (rc) return rc;
    if (hp->n_rot) {
        float base = hp->rope_freq_base > 0 ? hp->rope_freq_base : 10000.0f;
        halo_rope_inv_freq(base, (int)hp->n_rot, b->inv_freq);
        const halo_model *m = ctx->model;
        for (uint32_t i = 0; i < hp->n_rot / 2; i++)
            b->inv_freq[i] = b->inv_freq[i] * m->rope_freq_scale /
                             (m->rope_freqs ? m->rope_freqs[i] : 1.0f);
    }
    return 0;
}

int halo_context_new(halo_model *model, const halo_context_params *params, halo_context **out,
                     halo_error *err) {
    *out = NULL;
    halo_context_params p;
    if (params) p = *params;
    else halo_context_default_params(&p);
    const halo_hparams *hp = &model->hp;
    if (p.n_ctx == 0) p.n_ctx = hp->n_ctx_train ? hp->n_ctx_train : HALO_PLAN_DEFAULT_CTX;
    if (p.n_seq_max == 0) p.n_seq_max = 1;
    if (p.n_batch == 0) p.n_batch = 2048;
    if (p.n_ubatch == 0) p.n_ubatch = HALO_PLAN_DEFAULT_UBATCH;
    if (p.n_ubatch > p.n_batch) p.n_ubatch = p.n_batch;
    if (p.n_ctx > (1u << 28) || p.n_seq_max > 4096 || p.n_batch > (1u << 20))
        return halo_error_set(err, HALO_ERR_ARG,
                              "context parameters out of range: n_ctx %u (max 2^28), sequences %u "
                              "(max 4096), batch %u (max 2^20)",
                              p.n_ctx, p.n_seq_max, p.n_batch);
    if (!halo_kv_type_supported(p.type_k) || !halo_kv_type_supported(p.type_v))
        return halo_error_set(err, HALO_ERR_ARG, "KV cache type %s is not supported (use one of %s)",
                              halo_type_name(halo_kv_type_supported(p.type_k) ? p.type_v : p.type_k),
                              halo_kv_type_names());
    if (p.n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = n > 0 ? (int)(n < 512 ? n : 512) : 1;
    }
    halo_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory making the context");
    ctx->model = model;
    ctx->hp = hp;
    ctx->params = p;
    ctx->n_threads = p.n_threads;
    int rc = 0;
    ctx->pool = halo_threadpool_new(p.n_threads);
    if (!ctx->pool) rc = halo_error_set(err, HALO_ERR_NOMEM, "cannot start %d threads", p.n_threads);
    ctx->seq_len = alloc_array(p.n_seq_max, sizeof(int32_t), err, &rc);
    ctx->seq_count = alloc_array(p.n_seq_max, sizeof(int32_t), err, &rc);
    ctx->b_pos = alloc_array(p.n_batch, sizeof(int32_t), err, &rc);
    ctx->b_seq = alloc_array(p.n_batch, sizeof(int32_t), err, &rc);
    ctx->b_out = alloc_array(p.n_batch, sizeof(int32_t), err, &rc);
    ctx->logits_row = alloc_array(p.n_batch, sizeof(int32_t), err, &rc);
    ctx->ub_perm = alloc_array(p.n_ubatch, sizeof(int32_t), err, &rc);
    ctx->ub_seg_off = alloc_array((uint64_t)p.n_ubatch + 1, sizeof(int32_t), err, &rc);
    ctx->ub_seg_seq = alloc_array(p.n_ubatch, sizeof(int32_t), err, &rc);
    /* the backend: CUDA (Vulkan) when the model's weights are on that GPU, else the CPU */
    if (!rc) {
#ifdef HALO_HAVE_CUDA
        if (model->gpu) rc = halo_backend_cuda_init(ctx, &ctx->be, err);
        else
#endif
#ifdef HALO_HAVE_VULKAN
        /* -dev Vulkan<i> (model/load.c) or a test put the weights there */
        if (model->vk) rc = halo_backend_vulkan_init(ctx, &ctx->be, err);
        else
#endif
            rc = halo_backend_cpu_init(ctx, &ctx->be, err);
    }
    if (!rc) rc = kv_init(ctx, err);
    if (!rc) rc = rs_init(ctx, err);
    if (!rc) rc = buffers_init(ctx, err);
    if (rc) {
        halo_context_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

/* The logits buffer: in the backend's host memory where it has its own (pinned
 * memory, which a GPU copies into several times faster than into pageable). */
static float *logits_alloc(halo_context *ctx, size_t bytes) {
    const halo_backend_ops *o = ctx->be.ops;
    return o && o->host_alloc && o->host_free ? o->host_alloc(&ctx->be, bytes) : malloc(bytes);
}

static void logits_free(halo_context *ctx, float *p) {
    const halo_backend_ops *o = ctx->be.ops;
    if (!p) return;
    if (o && o->host_alloc && o->host_free) o->host_free(&ctx->be, p);
    else free(p);
}

void halo_context_free(halo_context *ctx) {
    if (!ctx) return;
    if (ctx->pool) halo_threadpool_free(ctx->pool);
    const uint32_t nl = ctx->hp->n_layer;
    halo_kv_cache *kv = &ctx->kv;
    halo_buffers *b = &ctx->buf;
    logits_free(ctx, ctx->logits);
    if (ctx->be.ops) { /* the backend's buffers, then the backend */
        halo_backend *be = &ctx->be;
        for (uint32_t il = 0; il < nl && kv->k; il++) {
            if (kv->k[il]) be->ops->free(be, kv->k[il]);
            if (kv->v[il]) be->ops->free(be, kv->v[il]);
        }
        void *bbufs[] = {ctx->rs.conv, ctx->rs.ssm, b->x,    b->xn,   b->y,    b->q,
                         b->k,         b->v,        b->att, b->ff_a, b->ff_b, b->extra};
        for (size_t i = 0; i < sizeof bbufs / sizeof bbufs[0]; i++)
            if (bbufs[i]) be->ops->free(be, bbufs[i]);
        if (be->ops->release) be->ops->release(be);
    }
    free(kv->k);
    free(kv->v);
    free(kv->k_row_bytes);
    free(kv->v_row_bytes);
    free(kv->k_head_bytes);
    free(kv->v_head_bytes);
    free(kv->refcount);
    free(kv->free_pages);
    free(kv->page_table);
    free(kv->n_seq_pages);
    free(ctx->rs.slot);
    void *bufs[] = {b->router,   b->moe_ids,  b->moe_w,      b->moe_tok,    b->moe_count,
                    b->moe_x,    b->moe_y,    b->out_x,      b->inv_freq,   b->attn_scratch,
                    b->attn_block, b->attn_nkv, b->attn_parts, ctx->logits_row,
                    ctx->b_pos,  ctx->b_seq,  ctx->b_out,    ctx->seq_len,  ctx->seq_count,
                    ctx->ub_perm, ctx->ub_seg_off, ctx->ub_seg_seq};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(ctx);
}

uint32_t halo_context_n_ctx(const halo_context *ctx) {
    return ctx->kv.n_pages ? (uint32_t)ctx->kv.n_pages * HALO_KV_PAGE : ctx->params.n_ctx;
}
uint32_t halo_context_n_seq_max(const halo_context *ctx) { return ctx->params.n_seq_max; }
uint32_t halo_context_n_batch(const halo_context *ctx) { return ctx->params.n_batch; }
uint32_t halo_context_n_ubatch(const halo_context *ctx) { return ctx->params.n_ubatch; }
int halo_context_n_threads(const halo_context *ctx) { return ctx->n_threads; }
const halo_model *halo_context_model(const halo_context *ctx) { return ctx->model; }

/* ---- decode ---------------------------------------------------------------------- */

/* Group a ubatch's tokens by sequence, each sequence's tokens in batch order
 * (which is their position order): perm lists token indices segment after
 * segment, segments in order of first appearance. */
static void plan_segments(halo_context *ctx, halo_ubatch *ub) {
    int32_t *perm = ctx->ub_perm, *off = ctx->ub_seg_off, *sq = ctx->ub_seg_seq;
    int32_t n_seg = 0, k = 0;
    for (int32_t t = 0; t < ub->n; t++) {
        bool seen = false;
        for (int32_t j = 0; j < n_seg && !seen; j++) seen = sq[j] == ub->seq[t];
        if (!seen) sq[n_seg++] = ub->seq[t];
    }
    for (int32_t j = 0; j < n_seg; j++) {
        off[j] = k;
        for (int32_t t = 0; t < ub->n; t++)
            if (ub->seq[t] == sq[j]) perm[k++] = t;
    }
    off[n_seg] = k;
    ub->identity = true;
    for (int32_t t = 0; t < ub->n && ub->identity; t++) ub->identity = perm[t] == t;
    ub->n_seg = n_seg;
    ub->perm = perm;
    ub->seg_off = off;
    ub->seg_seq = sq;
}

int halo_decode(halo_context *ctx, const halo_batch *batch, halo_error *err) {
    const halo_hparams *hp = ctx->hp;
    const int32_t n = batch ? batch->n_tokens : 0;
    if (n <= 0 || (uint32_t)n > ctx->params.n_batch || !batch->token)
        return halo_error_set(err, HALO_ERR_ARG,
                              "a batch needs 1 to %u tokens (n_batch) and a token array; got %d",
                              ctx->params.n_batch, n);
    /* validate everything before anything changes */
    const uint32_t n_seq = ctx->params.n_seq_max;
    memset(ctx->seq_count, 0, sizeof(int32_t) * n_seq);
    int32_t n_out = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t tok = batch->token[i];
        if (tok < 0 || (uint32_t)tok >= hp->n_vocab)
            return halo_error_set(err, HALO_ERR_ARG,
                                  "batch token %d: id %d is outside the vocabulary (0..%u)", i, tok,
                                  hp->n_vocab - 1);
        int32_t s = batch->seq_id ? batch->seq_id[i] : 0;
        if (s < 0 || (uint32_t)s >= n_seq)
            return halo_error_set(err, HALO_ERR_ARG,
                                  "batch token %d: sequence id %d is out of range (the context "
                                  "has %u sequences)",
                                  i, s, n_seq);
        int64_t expect = (int64_t)ctx->seq_len[s] + ctx->seq_count[s];
        if (batch->pos && batch->pos[i] != expect)
            return halo_error_set(err, HALO_ERR_ARG,
                                  "batch token %d: position %d in sequence %d, expected %lld "
                                  "(a sequence's tokens must continue it in order)",
                                  i, batch->pos[i], s, (long long)expect);
        if (expect >= INT32_MAX)
            return halo_error_set(err, HALO_ERR_RANGE, "sequence %d is too long", s);
        ctx->b_pos[i] = (int32_t)expect;
        ctx->b_seq[i] = s;
        ctx->seq_count[s]++;
        bool want = batch->logits ? batch->logits[i] != 0 : i == n - 1;
        ctx->b_out[i] = want ? n_out++ : -1;
    }
    /* output rows: logits, or in embeddings mode the normed hidden states */
    const bool embd = ctx->embeddings;
    const uint64_t width = embd ? hp->n_embd : hp->n_vocab, floats = (uint64_t)n_out * width;
    if (floats > ctx->logits_cap) {
        uint64_t bytes;
        if (halo_mul_overflow(floats, sizeof(float), &bytes) || bytes > SIZE_MAX)
            return halo_error_set(err, HALO_ERR_RANGE, "logits buffer too large");
        /* a new buffer, not realloc: the logits of the last batch are not kept */
        float *nl = logits_alloc(ctx, (size_t)bytes);
        if (!nl)
            return halo_error_set(err, HALO_ERR_NOMEM,
                                  "out of memory for the %s of %d tokens",
                                  embd ? "embeddings" : "logits", n_out);
        logits_free(ctx, ctx->logits);
        ctx->logits = nl;
        ctx->logits_cap = (size_t)floats;
    }
    int rc = halo_kv_reserve(ctx, ctx->seq_count, err);
    if (rc) return rc;

    /* run, n_ubatch tokens at a time */
    const int32_t u = (int32_t)ctx->params.n_ubatch;
    for (int32_t i0 = 0; i0 < n; i0 += u) {
        halo_ubatch ub = {
            .n = n - i0 < u ? n - i0 : u,
            .token = batch->token + i0,
            .pos = ctx->b_pos + i0,
            .seq = ctx->b_seq + i0,
            .out = ctx->b_out + i0,
            .embd = embd,
        };
        for (int32_t t = 0; t < ub.n; t++) {
            ub.n_out += ub.out[t] >= 0;
            if (ub.pos[t] > ub.max_pos) ub.max_pos = ub.pos[t];
        }
        plan_segments(ctx, &ub);
        int done;
        for (int attempt = 0;; attempt++) {
            ctx->be.ops->begin(ctx, &ub);
            ctx->model->ops->forward(ctx, &ub);
            done = ctx->be.ops->finish(ctx, &ub);
            if (done != 1 || attempt == 1) break; /* 1: nothing ran, run it again */
        }
        if (done)
            return halo_error_set(err, HALO_ERR_IO,
                                  "the %s backend failed running this batch; the context's "
                                  "state is no longer valid",
                                  ctx->be.ops->name);
    }
    for (uint32_t s = 0; s < n_seq; s++) ctx->seq_len[s] += ctx->seq_count[s];
    memcpy(ctx->logits_row, ctx->b_out, sizeof(int32_t) * (size_t)n);
    ctx->last_n_tokens = n;
    ctx->out_embd = embd;
    return 0;
}

/* Row i of the last batch's output, when it holds what the caller asks for. */
static const float *out_row(halo_context *ctx, int32_t i, bool embd) {
    if (i < 0) i += ctx->last_n_tokens;
    if (i < 0 || i >= ctx->last_n_tokens || ctx->logits_row[i] < 0 || ctx->out_embd != embd)
        return NULL;
    return ctx->logits + (size_t)ctx->logits_row[i] * (embd ? ctx->hp->n_embd : ctx->hp->n_vocab);
}

const float *halo_get_logits(halo_context *ctx, int32_t i) { return out_row(ctx, i, false); }
const float *halo_get_embeddings(halo_context *ctx, int32_t i) { return out_row(ctx, i, true); }
