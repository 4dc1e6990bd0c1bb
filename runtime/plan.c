/*
 * The memory plan: what a model needs for a context of CTX tokens over N slots,
 * and the largest context that fits a memory budget.
 *
 * Sizes follow how the cache will be laid out: per full-attention layer, one
 * row of KV heads x head dim per token for K and one for V, stored in the cache
 * type's blocks (q8_0: 34 bytes per 32 values, q4_0: 18 per 32), so the figures
 * match llama.cpp's "llama_kv_cache: size = ..." line for the same -c and types.
 * The recurrent state matches its "RS buffer size" line: per Gated-DeltaNet layer
 * and slot, the causal-conv tail (conv_kernel - 1 columns of every conv channel)
 * and the k x v state matrix of every value head, both f32.
 *
 * Everything but the compute buffers is exact. Those are estimated (a real
 * figure needs the backend's buffer planner): the logits of a full ubatch
 * (n_vocab x ubatch x 4 bytes) plus the f32 activations alive at once while one
 * ubatch goes through a layer: the residual stream and its normed copy, and the
 * widest of the attention, DeltaNet and FFN/MoE intermediates. Attention scores
 * are not counted: attention is computed in tiles (online softmax), whose
 * scratch does not grow with the ubatch or the context.
 */
#include "runtime/runtime.h"

#include "quant/quant.h"
#include "util/util.h"

#include <string.h>

static const int kv_types[] = {HALO_TYPE_F32, HALO_TYPE_F16, HALO_TYPE_BF16, HALO_TYPE_Q8_0,
                               HALO_TYPE_Q4_0, HALO_TYPE_IQ4_NL};

bool halo_kv_type_supported(int type) {
    for (size_t i = 0; i < sizeof kv_types / sizeof kv_types[0]; i++)
        if (kv_types[i] == type) return true;
    return false;
}

int halo_kv_type_from_name(const char *name) {
    if (!name) return -1;
    int t = halo_type_from_name(name);
    return halo_kv_type_supported(t) ? t : -1;
}

const char *halo_kv_type_names(void) { return "f32, f16, bf16, q8_0, q4_0, iq4_nl"; }

void halo_plan_options_default(halo_plan_options *o) {
    memset(o, 0, sizeof *o);
    o->n_ctx = HALO_PLAN_DEFAULT_CTX;
    o->n_slots = 1;
    o->type_k = HALO_TYPE_F16;
    o->type_v = HALO_TYPE_F16;
    o->n_ubatch = HALO_PLAN_DEFAULT_UBATCH;
}

/* Bytes of one layer's cache row (KV heads x head dim values) in `type`. */
static int row_bytes(int type, uint32_t n_head_kv, uint32_t head_dim, const char *which,
                     uint32_t layer, uint64_t *out, halo_error *err) {
    uint64_t n;
    if (halo_mul_overflow(n_head_kv, head_dim, &n) || n > INT64_MAX)
        return halo_error_set(err, HALO_ERR_RANGE, "KV row size overflows");
    size_t b = halo_type_row_size(type, (int64_t)n);
    if (b == 0) {
        const halo_type_traits *tr = halo_type_get(type);
        return halo_error_set(err, HALO_ERR_ARG,
                              "%s cache type %s stores blocks of %lld values, which do not divide "
                              "layer %u's %llu values per token; use f16 or bf16",
                              which, halo_type_name(type), tr ? (long long)tr->block_size : 0LL,
                              layer, (unsigned long long)n);
    }
    *out = b;
    return 0;
}

int halo_plan_kv_bytes_per_token(const halo_hparams *hp, int type_k, int type_v, uint64_t *k_bytes,
                                 uint64_t *v_bytes, halo_error *err) {
    if (!halo_kv_type_supported(type_k) || !halo_kv_type_supported(type_v))
        return halo_error_set(err, HALO_ERR_ARG, "KV cache type %s is not supported (use one of %s)",
                              halo_type_name(halo_kv_type_supported(type_k) ? type_v : type_k),
                              halo_kv_type_names());
    uint64_t k = 0, v = 0;
    for (uint32_t i = 0; i < hp->n_layer && i < HALO_MAX_LAYERS; i++) {
        if (hp->layer_kind[i] != HALO_LAYER_ATTENTION) continue;
        uint64_t kb = 0, vb = 0;
        int rc = row_bytes(type_k, hp->n_head_kv[i], hp->head_dim_k, "K", i, &kb, err);
        if (rc) return rc;
        rc = row_bytes(type_v, hp->n_head_kv[i], hp->head_dim_v, "V", i, &vb, err);
        if (rc) return rc;
        if (halo_add_overflow(k, kb, &k) || halo_add_overflow(v, vb, &v))
            return halo_error_set(err, HALO_ERR_RANGE, "KV bytes per token overflow");
    }
    *k_bytes = k;
    *v_bytes = v;
    return 0;
}

int halo_plan_recurrent_bytes_per_slot(const halo_hparams *hp, uint64_t *conv_bytes,
                                       uint64_t *ssm_bytes, halo_error *err) {
    *conv_bytes = *ssm_bytes = 0;
    if (hp->n_deltanet_layers == 0) return 0;
    if (hp->ssm_conv_kernel < 1)
        return halo_error_set(err, HALO_ERR_ARG, "DeltaNet conv kernel is 0");
    /* All inputs were bounded by halo_hparams_finalize (each below 2^16, the
     * channel count below 2^18), but check anyway: a struct may come by hand. */
    uint64_t conv, ssm, t;
    if (halo_mul_overflow(hp->ssm_conv_kernel - 1, halo_hparams_deltanet_conv_channels(hp), &conv) ||
        halo_mul_overflow(conv, sizeof(float), &conv) ||
        halo_mul_overflow(halo_hparams_deltanet_value_heads(hp), halo_hparams_deltanet_key_dim(hp),
                          &t) ||
        halo_mul_overflow(t, halo_hparams_deltanet_value_dim(hp), &t) ||
        halo_mul_overflow(t, sizeof(float), &ssm) ||
        halo_mul_overflow(conv, hp->n_deltanet_layers, conv_bytes) ||
        halo_mul_overflow(ssm, hp->n_deltanet_layers, ssm_bytes))
        return halo_error_set(err, HALO_ERR_RANGE, "recurrent state size overflows");
    return 0;
}

static uint64_t max3(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t m = a > b ? a : b;
    return m > c ? m : c;
}

/* f32 values per token alive at the widest point of a layer (see top comment). */
static uint64_t activation_values_per_token(const halo_hparams *hp) {
    uint64_t kv_max = 0;
    for (uint32_t i = 0; i < hp->n_layer && i < HALO_MAX_LAYERS; i++)
        if (hp->n_head_kv[i] > kv_max) kv_max = hp->n_head_kv[i];
    uint64_t q = (uint64_t)hp->n_head * hp->head_dim_k;
    if (halo_arch_is_hybrid(hp->arch)) q *= 2; /* the output gate is projected with Q */
    uint64_t attn = q + kv_max * (hp->head_dim_k + hp->head_dim_v) +
                    (uint64_t)hp->n_head * hp->head_dim_v;
    uint64_t delta = 0;
    if (hp->n_deltanet_layers)
        delta = halo_hparams_deltanet_conv_channels(hp) * 2 /* before and after the conv */ +
                2ull * hp->ssm_inner_size /* z gate and output */ +
                2ull * hp->ssm_time_step_rank /* beta, alpha */;
    uint64_t ff = hp->n_ff;
    uint64_t moe = (uint64_t)hp->n_expert_used * hp->n_ff_exp + hp->n_ff_shexp;
    if (moe > ff) ff = moe;
    uint64_t ffn = 2 * ff + hp->n_expert; /* gate and up, router logits */
    return 2ull * hp->n_embd + max3(attn, delta, ffn);
}

int halo_plan_compute(const halo_hparams *hp, uint64_t weights_bytes, const halo_plan_options *o,
                      halo_memory_plan *p, halo_error *err) {
    memset(p, 0, sizeof *p);
    if (o->n_slots == 0)
        return halo_error_set(err, HALO_ERR_ARG, "the number of slots (-np) must be at least 1");
    if (o->n_ubatch == 0)
        return halo_error_set(err, HALO_ERR_ARG, "the ubatch size must be at least 1");
    p->n_ctx = o->n_ctx;
    p->n_slots = o->n_slots;
    p->type_k = o->type_k;
    p->type_v = o->type_v;
    p->n_ubatch = o->n_ubatch;
    p->weights_bytes = weights_bytes;

    int rc = halo_plan_kv_bytes_per_token(hp, o->type_k, o->type_v, &p->k_bytes_per_token,
                                          &p->v_bytes_per_token, err);
    if (rc) return rc;
    p->kv_bytes_per_token = p->k_bytes_per_token + p->v_bytes_per_token;
    if (halo_mul_overflow(p->kv_bytes_per_token, o->n_ctx, &p->kv_bytes))
        return halo_error_set(err, HALO_ERR_RANGE,
                              "a KV cache of %llu tokens does not fit in 64 bits of bytes",
                              (unsigned long long)o->n_ctx);

    rc = halo_plan_recurrent_bytes_per_slot(hp, &p->conv_bytes_per_slot, &p->ssm_bytes_per_slot,
                                            err);
    if (rc) return rc;
    if (halo_mul_overflow(p->conv_bytes_per_slot + p->ssm_bytes_per_slot, o->n_slots,
                          &p->recurrent_bytes))
        return halo_error_set(err, HALO_ERR_RANGE, "recurrent state size overflows");

    /* Compute buffers: bounded inputs (vocab < 2^24, ubatch < 2^32, widths < 2^26). */
    uint64_t t;
    if (halo_mul_overflow(hp->n_vocab, o->n_ubatch, &t) ||
        halo_mul_overflow(t, sizeof(float), &p->logits_bytes) ||
        halo_mul_overflow(activation_values_per_token(hp), o->n_ubatch, &t) ||
        halo_mul_overflow(t, sizeof(float), &p->activation_bytes))
        return halo_error_set(err, HALO_ERR_RANGE, "compute buffer size overflows");
    p->compute_bytes = p->logits_bytes + p->activation_bytes;

    uint64_t fixed = 0;
    if (halo_add_overflow(weights_bytes, p->recurrent_bytes, &fixed) ||
        halo_add_overflow(fixed, p->compute_bytes, &fixed) ||
        halo_add_overflow(fixed, p->kv_bytes, &p->total_bytes))
        return halo_error_set(err, HALO_ERR_RANGE, "memory plan total overflows");

    p->mem_bytes = o->mem_bytes;
    if (p->mem_bytes == 0) {
        p->mem_bytes = halo_system_memory_bytes();
        p->mem_from_system = true;
    }
    if (p->mem_bytes == 0) return 0; /* unknown budget: sizes only */

    p->fits = p->total_bytes <= p->mem_bytes;
    p->headroom_bytes = p->fits ? (int64_t)(p->mem_bytes - p->total_bytes > INT64_MAX
                                                ? INT64_MAX
                                                : p->mem_bytes - p->total_bytes)
                                : -(int64_t)(p->total_bytes - p->mem_bytes > INT64_MAX
                                                 ? INT64_MAX
                                                 : p->total_bytes - p->mem_bytes);

    /* Largest context: everything but the KV cache is independent of -c, so it
     * is (budget - the rest) / bytes per token, in whole 256-cell steps. */
    if (fixed > p->mem_bytes) {
        p->max_ctx_fit = 0;
    } else if (p->kv_bytes_per_token == 0) {
        p->max_ctx_fit = UINT64_MAX;
    } else {
        p->max_ctx_fit = (p->mem_bytes - fixed) / p->kv_bytes_per_token / 256 * 256;
    }
    p->max_ctx = p->max_ctx_fit;
    uint64_t train_total = (uint64_t)hp->n_ctx_train * o->n_slots;
    if (hp->n_ctx_train && p->max_ctx > train_total) {
        p->max_ctx = train_total;
        p->max_ctx_capped_by_train = true;
    }
    return 0;
}
