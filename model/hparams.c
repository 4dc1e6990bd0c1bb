/*
 * Hyper-parameters from GGUF metadata, their validation, and the weight
 * statistics of a tensor table.
 *
 * Key names follow llama.cpp's converter (`<arch>.block_count`,
 * `<arch>.attention.head_count_kv`, `<arch>.ssm.*`, ...). Values that can be a
 * scalar or a per-layer array (head_count, head_count_kv, feed_forward_length)
 * are accepted in both forms. Every value is bounded here, once, so that the
 * code which multiplies them (KV cache sizes, buffer shapes) can rely on
 * products of a few of them fitting in 64 bits.
 */
#include "model/model.h"

#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds well past every published model, far below anything that overflows. */
#define MAX_EMBD (1u << 20)
#define MAX_HEADS (1u << 14)
#define MAX_HEAD_DIM (1u << 14)
#define MAX_FF (1u << 24)
#define MAX_VOCAB (1u << 24)
#define MAX_EXPERTS (1u << 14)
#define MAX_CTX (1u << 28)
#define MAX_SSM_DIM (1u << 14)

static const char *const arch_names[HALO_ARCH_COUNT] = {
    [HALO_ARCH_UNKNOWN] = "unknown",     [HALO_ARCH_LLAMA] = "llama",
    [HALO_ARCH_QWEN3] = "qwen3",         [HALO_ARCH_QWEN3MOE] = "qwen3moe",
    [HALO_ARCH_QWEN35] = "qwen35",       [HALO_ARCH_QWEN35MOE] = "qwen35moe",
};

const char *halo_arch_name(halo_arch arch) {
    return (arch >= 0 && arch < HALO_ARCH_COUNT) ? arch_names[arch] : "unknown";
}

halo_arch halo_arch_from_name(const char *name) {
    if (!name) return HALO_ARCH_UNKNOWN;
    for (int a = 1; a < HALO_ARCH_COUNT; a++)
        if (!strcmp(name, arch_names[a])) return (halo_arch)a;
    return HALO_ARCH_UNKNOWN;
}

bool halo_arch_is_hybrid(halo_arch arch) {
    return arch == HALO_ARCH_QWEN35 || arch == HALO_ARCH_QWEN35MOE;
}

static bool arch_is_moe(halo_arch arch) {
    return arch == HALO_ARCH_QWEN3MOE || arch == HALO_ARCH_QWEN35MOE;
}

const char *halo_layer_kind_name(halo_layer_kind kind) {
    switch (kind) {
    case HALO_LAYER_ATTENTION: return "attention";
    case HALO_LAYER_DELTANET: return "deltanet";
    case HALO_LAYER_NEXTN: return "nextn";
    }
    return "unknown";
}

/* ---- reading keys ----------------------------------------------------------- */

typedef struct reader {
    const halo_gguf *g;
    const char *arch;
    bool known; /* missing required keys: FORMAT for a known arch, UNSUPPORTED otherwise */
    halo_error *err;
    char key[160];
} reader;

static const char *arch_key(reader *r, const char *suffix) {
    snprintf(r->key, sizeof r->key, "%s.%s", r->arch, suffix);
    return r->key;
}

static int missing(reader *r, const char *suffix) {
    if (r->known)
        return halo_error_set(r->err, HALO_ERR_FORMAT, "model metadata lacks %s.%s", r->arch,
                              suffix);
    return halo_error_set(r->err, HALO_ERR_UNSUPPORTED,
                          "architecture '%s' is not known to halo and its metadata lacks %s.%s",
                          r->arch, r->arch, suffix);
}

/* A u32 key: 0 and *present=false if absent; an error if present but not an
 * integer that fits. */
static int read_u32(reader *r, const char *suffix, bool required, uint32_t *out, bool *present) {
    const char *key = arch_key(r, suffix);
    if (present) *present = false;
    if (!halo_gguf_get(r->g, key)) {
        *out = 0;
        return required ? missing(r, suffix) : 0;
    }
    uint32_t v;
    if (!halo_gguf_get_u32(r->g, key, &v))
        return halo_error_set(r->err, HALO_ERR_FORMAT,
                              "model metadata %s is not an unsigned 32-bit integer", key);
    *out = v;
    if (present) *present = true;
    return 0;
}

static int read_f32(reader *r, const char *suffix, bool required, float *out) {
    const char *key = arch_key(r, suffix);
    if (!halo_gguf_get(r->g, key)) {
        *out = 0;
        return required ? missing(r, suffix) : 0;
    }
    float v;
    if (!halo_gguf_get_f32(r->g, key, &v) || !isfinite(v))
        return halo_error_set(r->err, HALO_ERR_FORMAT, "model metadata %s is not a finite number",
                              key);
    *out = v;
    return 0;
}

/* A key that is a scalar or a per-layer array of n_layer integers. Fills
 * per_layer (when given) and returns the largest value in *max. */
static int read_per_layer(reader *r, const char *suffix, bool required, uint32_t n_layer,
                          uint32_t *per_layer, uint32_t *max, bool *present) {
    const char *key = arch_key(r, suffix);
    const halo_gguf_value *v = halo_gguf_get(r->g, key);
    *max = 0;
    if (present) *present = v != NULL;
    if (!v) return required ? missing(r, suffix) : 0;
    if (v->type != HALO_GGUF_ARRAY) {
        uint32_t x;
        if (!halo_gguf_get_u32(r->g, key, &x))
            return halo_error_set(r->err, HALO_ERR_FORMAT,
                                  "model metadata %s is not an unsigned 32-bit integer", key);
        if (per_layer)
            for (uint32_t i = 0; i < n_layer; i++) per_layer[i] = x;
        *max = x;
        return 0;
    }
    const halo_gguf_array *a = &v->arr;
    if (a->n != n_layer)
        return halo_error_set(r->err, HALO_ERR_FORMAT,
                              "model metadata %s has %llu entries for %u layers", key,
                              (unsigned long long)a->n, n_layer);
    for (uint32_t i = 0; i < n_layer; i++) {
        int64_t x;
        if (!halo_gguf_arr_i64(a, i, &x) || x < 0 || x > (int64_t)UINT32_MAX)
            return halo_error_set(r->err, HALO_ERR_FORMAT,
                                  "model metadata %s[%u] is not an unsigned 32-bit integer", key,
                                  i);
        if (per_layer) per_layer[i] = (uint32_t)x;
        if ((uint32_t)x > *max) *max = (uint32_t)x;
    }
    return 0;
}

/* ---- validation ----------------------------------------------------------------- */

static int out_of_range(halo_error *err, const char *what, uint64_t v, uint64_t lo, uint64_t hi) {
    return halo_error_set(err, HALO_ERR_FORMAT,
                          "model %s = %llu is out of range [%llu, %llu]; the file is broken or "
                          "not a model",
                          what, (unsigned long long)v, (unsigned long long)lo,
                          (unsigned long long)hi);
}

#define CHECK_RANGE(err, what, v, lo, hi)                                                          \
    do {                                                                                           \
        if ((uint64_t)(v) < (uint64_t)(lo) || (uint64_t)(v) > (uint64_t)(hi))                      \
            return out_of_range(err, what, (uint64_t)(v), (uint64_t)(lo), (uint64_t)(hi));        \
    } while (0)

/* broadcast_kv: copy n_head_kv[0] to every layer when the rest are 0 (a struct
 * filled by hand); a file's per-layer array is taken as written. */
static int finalize(halo_hparams *hp, bool broadcast_kv, halo_error *err) {
    CHECK_RANGE(err, "layer count", hp->n_layer, 1, HALO_MAX_LAYERS);
    if (hp->n_nextn >= hp->n_layer)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "model has %u MTP (nextn) layers out of %u layers in all",
                              hp->n_nextn, hp->n_layer);
    CHECK_RANGE(err, "hidden size", hp->n_embd, 1, MAX_EMBD);
    CHECK_RANGE(err, "vocabulary size", hp->n_vocab, 1, MAX_VOCAB);
    CHECK_RANGE(err, "attention head count", hp->n_head, 1, MAX_HEADS);
    if (hp->head_dim_k == 0 && hp->head_dim_v == 0 && hp->n_embd % hp->n_head != 0)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "model hidden size %u is not a multiple of its %u attention heads",
                              hp->n_embd, hp->n_head);
    if (hp->head_dim_k == 0) hp->head_dim_k = hp->n_embd / hp->n_head;
    if (hp->head_dim_v == 0) hp->head_dim_v = hp->n_embd / hp->n_head;
    CHECK_RANGE(err, "key head dimension", hp->head_dim_k, 1, MAX_HEAD_DIM);
    CHECK_RANGE(err, "value head dimension", hp->head_dim_v, 1, MAX_HEAD_DIM);
    CHECK_RANGE(err, "feed-forward width", hp->n_ff, 0, MAX_FF);
    CHECK_RANGE(err, "trained context length", hp->n_ctx_train, 0, MAX_CTX);

    /* One KV head count for every layer if the caller set only the first. */
    bool only_first = broadcast_kv && hp->n_head_kv[0] != 0;
    for (uint32_t i = 1; i < hp->n_layer && only_first; i++)
        if (hp->n_head_kv[i] != 0) only_first = false;
    if (only_first)
        for (uint32_t i = 1; i < hp->n_layer; i++) hp->n_head_kv[i] = hp->n_head_kv[0];

    /* Experts. */
    CHECK_RANGE(err, "expert count", hp->n_expert, 0, MAX_EXPERTS);
    if (hp->n_expert > 0) {
        CHECK_RANGE(err, "experts used per token", hp->n_expert_used, 1, hp->n_expert);
        if (hp->n_ff_exp == 0) hp->n_ff_exp = hp->n_ff;
        CHECK_RANGE(err, "expert feed-forward width", hp->n_ff_exp, 1, MAX_FF);
    } else if (hp->n_expert_used != 0) {
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "model uses %u experts per token but has no experts",
                              hp->n_expert_used);
    }
    CHECK_RANGE(err, "shared expert width", hp->n_ff_shexp, 0, MAX_FF);

    /* RoPE and norms. */
    if (!isfinite(hp->rope_freq_base) || hp->rope_freq_base < 0)
        return halo_error_set(err, HALO_ERR_FORMAT, "model rope.freq_base %g is not a positive number",
                              (double)hp->rope_freq_base);
    if (hp->n_rot == 0) hp->n_rot = hp->head_dim_k;
    if (hp->n_rot > hp->head_dim_k || hp->n_rot % 2)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "model rotates %u dimensions of heads of %u (must be even and no "
                              "more than the head)",
                              hp->n_rot, hp->head_dim_k);
    if (hp->has_rope_sections) {
        uint64_t sum = 0;
        for (int s = 0; s < 4; s++) sum += hp->rope_sections[s];
        if (sum == 0 || 2 * sum > hp->n_rot)
            return halo_error_set(err, HALO_ERR_FORMAT,
                                  "model rope.dimension_sections sum to %llu pairs, not within the "
                                  "%u rotated dimensions",
                                  (unsigned long long)sum, hp->n_rot);
    }
    if (!isfinite(hp->rms_eps) || hp->rms_eps < 0 || hp->rms_eps >= 1)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "model RMS norm epsilon %g is out of range [0, 1)",
                              (double)hp->rms_eps);

    /* Layer kinds: the hybrids put full attention on every interval-th layer
     * (1-based: layers interval-1, 2*interval-1, ...; Qwen3.5's layer_types), the
     * rest are Gated DeltaNet; the trailing n_nextn blocks are MTP heads. */
    uint32_t n_main = hp->n_layer - hp->n_nextn;
    bool hybrid = halo_arch_is_hybrid(hp->arch);
    if (hybrid) {
        if (hp->full_attention_interval == 0) hp->full_attention_interval = 4;
        CHECK_RANGE(err, "full_attention_interval", hp->full_attention_interval, 1, n_main);
        CHECK_RANGE(err, "ssm.conv_kernel", hp->ssm_conv_kernel, 2, 64);
        CHECK_RANGE(err, "ssm.state_size (DeltaNet key head dim)", hp->ssm_state_size, 1,
                    MAX_SSM_DIM);
        CHECK_RANGE(err, "ssm.group_count (DeltaNet key heads)", hp->ssm_group_count, 1, MAX_HEADS);
        CHECK_RANGE(err, "ssm.time_step_rank (DeltaNet value heads)", hp->ssm_time_step_rank, 1,
                    MAX_HEADS);
        if (hp->ssm_time_step_rank % hp->ssm_group_count)
            return halo_error_set(err, HALO_ERR_FORMAT,
                                  "model DeltaNet value heads (%u) are not a multiple of its key "
                                  "heads (%u)",
                                  hp->ssm_time_step_rank, hp->ssm_group_count);
        if (hp->ssm_inner_size == 0 || hp->ssm_inner_size % hp->ssm_time_step_rank)
            return halo_error_set(err, HALO_ERR_FORMAT,
                                  "model ssm.inner_size %u is not a multiple of its %u DeltaNet "
                                  "value heads",
                                  hp->ssm_inner_size, hp->ssm_time_step_rank);
        CHECK_RANGE(err, "DeltaNet value head dim", halo_hparams_deltanet_value_dim(hp), 1,
                    MAX_SSM_DIM);
    }
    hp->n_attention_layers = hp->n_deltanet_layers = 0;
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        halo_layer_kind k = HALO_LAYER_ATTENTION;
        if (i >= n_main) k = HALO_LAYER_NEXTN;
        else if (hybrid && (i + 1) % hp->full_attention_interval != 0) k = HALO_LAYER_DELTANET;
        hp->layer_kind[i] = k;
        if (k == HALO_LAYER_ATTENTION) hp->n_attention_layers++;
        if (k == HALO_LAYER_DELTANET) hp->n_deltanet_layers++;
    }

    /* Heads: every attention layer needs KV heads that divide its query heads. */
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        uint32_t kv = hp->n_head_kv[i];
        if (hp->layer_kind[i] == HALO_LAYER_DELTANET) {
            if (kv > hp->n_head) return out_of_range(err, "KV head count", kv, 0, hp->n_head);
            continue;
        }
        if (kv == 0 || kv > hp->n_head)
            return halo_error_set(err, HALO_ERR_FORMAT,
                                  "model layer %u has %u KV heads for %u query heads", i, kv,
                                  hp->n_head);
        if (hp->n_head % kv)
            return halo_error_set(err, HALO_ERR_FORMAT,
                                  "model layer %u: %u query heads are not a multiple of its %u KV "
                                  "heads",
                                  i, hp->n_head, kv);
    }
    return 0;
}

int halo_hparams_finalize(halo_hparams *hp, halo_error *err) { return finalize(hp, true, err); }

/* ---- loading ---------------------------------------------------------------------- */

static bool has_tensor(const halo_gguf *g, uint32_t layer, const char *name) {
    char buf[96];
    snprintf(buf, sizeof buf, "blk.%u.%s", layer, name);
    return halo_gguf_find_tensor(g, buf) != NULL;
}

/* The interval rule is a convention; the tensors are the truth. Where a layer
 * has the tensors of the other kind, say so rather than run the wrong mixer. */
static int check_layer_kinds(const halo_gguf *g, const halo_hparams *hp, halo_error *err) {
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        bool attn = has_tensor(g, i, "attn_q.weight");
        bool delta = has_tensor(g, i, "ssm_conv1d.weight");
        halo_layer_kind k = hp->layer_kind[i];
        if ((k == HALO_LAYER_ATTENTION && delta && !attn) ||
            (k == HALO_LAYER_DELTANET && attn && !delta))
            return halo_error_set(err, HALO_ERR_FORMAT,
                                  "model layer %u should be %s by full_attention_interval=%u, but "
                                  "its tensors are those of %s",
                                  i, k == HALO_LAYER_ATTENTION ? "full attention" : "Gated DeltaNet",
                                  hp->full_attention_interval,
                                  delta ? "Gated DeltaNet" : "full attention");
    }
    return 0;
}

static int read_vocab(reader *r, halo_hparams *hp) {
    const halo_gguf_array *tokens = halo_gguf_get_arr(r->g, "tokenizer.ggml.tokens");
    if (tokens) {
        if (tokens->n == 0 || tokens->n > MAX_VOCAB)
            return out_of_range(r->err, "token list length", tokens->n, 1, MAX_VOCAB);
        hp->n_vocab = (uint32_t)tokens->n;
        return 0;
    }
    bool present;
    int rc = read_u32(r, "vocab_size", false, &hp->n_vocab, &present);
    if (rc || present) return rc;
    const char *names[] = {"token_embd.weight", "output.weight"};
    for (int k = 0; k < 2; k++) {
        const halo_gguf_tensor *t = halo_gguf_find_tensor(r->g, names[k]);
        if (t && t->n_dims >= 2) {
            if (t->ne[1] <= 0 || t->ne[1] > (int64_t)MAX_VOCAB)
                return out_of_range(r->err, "vocabulary size", (uint64_t)t->ne[1], 1, MAX_VOCAB);
            hp->n_vocab = (uint32_t)t->ne[1];
            return 0;
        }
    }
    if (r->known)
        return halo_error_set(r->err, HALO_ERR_FORMAT,
                              "model has no token list, no %s.vocab_size and no embedding tensor: "
                              "its vocabulary size is unknown",
                              r->arch);
    return halo_error_set(r->err, HALO_ERR_UNSUPPORTED,
                          "architecture '%s' is not known to halo and its vocabulary size is "
                          "unknown",
                          r->arch);
}

int halo_hparams_load(const halo_gguf *g, halo_hparams *hp, halo_error *err) {
    memset(hp, 0, sizeof *hp);
    const char *arch = halo_gguf_get_str(g, "general.architecture");
    if (!arch || !*arch)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "file has no general.architecture: it is not a model");
    if (strlen(arch) >= sizeof hp->arch_name)
        return halo_error_set(err, HALO_ERR_FORMAT, "general.architecture is %zu bytes long",
                              strlen(arch));
    snprintf(hp->arch_name, sizeof hp->arch_name, "%s", arch);
    hp->arch = halo_arch_from_name(arch);
    reader r = {.g = g, .arch = hp->arch_name, .known = hp->arch != HALO_ARCH_UNKNOWN, .err = err};
    int rc;
    bool present;

    if ((rc = read_u32(&r, "block_count", true, &hp->n_layer, NULL))) return rc;
    CHECK_RANGE(err, "layer count", hp->n_layer, 1, HALO_MAX_LAYERS);
    if ((rc = read_u32(&r, "nextn_predict_layers", false, &hp->n_nextn, NULL))) return rc;
    if ((rc = read_u32(&r, "embedding_length", true, &hp->n_embd, NULL))) return rc;
    if ((rc = read_vocab(&r, hp))) return rc;
    if ((rc = read_per_layer(&r, "attention.head_count", true, hp->n_layer, NULL, &hp->n_head,
                             NULL)))
        return rc;
    uint32_t kv_max;
    if ((rc = read_per_layer(&r, "attention.head_count_kv", false, hp->n_layer, hp->n_head_kv,
                             &kv_max, &present)))
        return rc;
    if (!present) /* no key: multi-head attention, as many KV heads as query heads */
        for (uint32_t i = 0; i < hp->n_layer; i++) hp->n_head_kv[i] = hp->n_head;
    if ((rc = read_u32(&r, "attention.key_length", false, &hp->head_dim_k, NULL))) return rc;
    if ((rc = read_u32(&r, "attention.value_length", false, &hp->head_dim_v, NULL))) return rc;

    bool moe = arch_is_moe(hp->arch);
    bool need_ff = r.known && !moe;
    if ((rc = read_per_layer(&r, "feed_forward_length", need_ff, hp->n_layer, NULL, &hp->n_ff,
                             NULL)))
        return rc;
    if ((rc = read_u32(&r, "expert_count", moe, &hp->n_expert, NULL))) return rc;
    if ((rc = read_u32(&r, "expert_used_count", moe, &hp->n_expert_used, NULL))) return rc;
    if ((rc = read_u32(&r, "expert_feed_forward_length", moe, &hp->n_ff_exp, NULL))) return rc;
    if ((rc = read_u32(&r, "expert_shared_feed_forward_length", false, &hp->n_ff_shexp, NULL)))
        return rc;

    if ((rc = read_u32(&r, "context_length", false, &hp->n_ctx_train, NULL))) return rc;
    if ((rc = read_u32(&r, "pooling_type", false, &hp->pooling_type, NULL))) return rc;
    if (hp->pooling_type > HALO_POOLING_RANK) {
        halo_log(HALO_LOG_WARN, "model metadata %s.pooling_type is %u, not a pooling halo knows "
                 "(0..4): taken as none", r.arch, hp->pooling_type);
        hp->pooling_type = HALO_POOLING_NONE;
    }
    if ((rc = read_f32(&r, "rope.freq_base", false, &hp->rope_freq_base))) return rc;
    if ((rc = read_u32(&r, "rope.dimension_count", false, &hp->n_rot, NULL))) return rc;
    const halo_gguf_array *sections = halo_gguf_get_arr(g, arch_key(&r, "rope.dimension_sections"));
    if (sections) {
        if (sections->n > 4)
            return halo_error_set(err, HALO_ERR_FORMAT, "model %s has %llu entries (at most 4)",
                                  r.key, (unsigned long long)sections->n);
        for (uint64_t s = 0; s < sections->n; s++) {
            int64_t x;
            if (!halo_gguf_arr_i64(sections, s, &x) || x < 0 || x > (int64_t)MAX_HEAD_DIM)
                return halo_error_set(err, HALO_ERR_FORMAT, "model %s[%llu] is out of range",
                                      r.key, (unsigned long long)s);
            hp->rope_sections[s] = (uint32_t)x;
        }
        hp->has_rope_sections = true;
    }
    if ((rc = read_f32(&r, "attention.layer_norm_rms_epsilon", r.known, &hp->rms_eps))) return rc;

    if (halo_arch_is_hybrid(hp->arch)) {
        if ((rc = read_u32(&r, "ssm.conv_kernel", true, &hp->ssm_conv_kernel, NULL)) ||
            (rc = read_u32(&r, "ssm.state_size", true, &hp->ssm_state_size, NULL)) ||
            (rc = read_u32(&r, "ssm.group_count", true, &hp->ssm_group_count, NULL)) ||
            (rc = read_u32(&r, "ssm.time_step_rank", true, &hp->ssm_time_step_rank, NULL)) ||
            (rc = read_u32(&r, "ssm.inner_size", true, &hp->ssm_inner_size, NULL)) ||
            (rc = read_u32(&r, "full_attention_interval", false, &hp->full_attention_interval,
                           NULL)))
            return rc;
    }

    if ((rc = finalize(hp, false, err))) return rc;
    if (halo_arch_is_hybrid(hp->arch) && halo_gguf_n_tensors(g) > 0)
        return check_layer_kinds(g, hp, err);
    return 0;
}

/* ---- description ------------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t size, len;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->len >= b->size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->size - b->len, fmt, ap);
    va_end(ap);
    if (n > 0) b->len += (size_t)n;
    if (b->len >= b->size) b->len = b->size - 1;
}

static const char *ordinal_suffix(uint32_t n) {
    if (n % 100 >= 11 && n % 100 <= 13) return "th";
    switch (n % 10) {
    case 1: return "st";
    case 2: return "nd";
    case 3: return "rd";
    default: return "th";
    }
}

char *halo_hparams_describe(const halo_hparams *hp, char *buf, size_t size) {
    if (!size) return buf;
    buf[0] = '\0';
    sbuf b = {buf, size, 0};
    bool hybrid = halo_arch_is_hybrid(hp->arch);
    uint32_t n_main = hp->n_layer - hp->n_nextn;
    sb_printf(&b, "%s: %u layers", hp->arch_name, n_main);
    if (hybrid)
        sb_printf(&b, " (%u Gated DeltaNet + %u gated full attention, every %u%s)",
                  hp->n_deltanet_layers, hp->n_attention_layers, hp->full_attention_interval,
                  ordinal_suffix(hp->full_attention_interval));
    if (hp->n_nextn) sb_printf(&b, " + %u MTP", hp->n_nextn);
    sb_printf(&b, ", hidden %u, vocab %u", hp->n_embd, hp->n_vocab);

    uint32_t kv_min = UINT32_MAX, kv_max = 0;
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        if (hp->layer_kind[i] != HALO_LAYER_ATTENTION) continue;
        if (hp->n_head_kv[i] < kv_min) kv_min = hp->n_head_kv[i];
        if (hp->n_head_kv[i] > kv_max) kv_max = hp->n_head_kv[i];
    }
    sb_printf(&b, ", attention %u query / ", hp->n_head);
    if (kv_min == kv_max) sb_printf(&b, "%u KV", kv_max);
    else sb_printf(&b, "%u-%u KV", kv_min == UINT32_MAX ? 0 : kv_min, kv_max);
    if (hp->head_dim_k == hp->head_dim_v)
        sb_printf(&b, " heads of dim %u", hp->head_dim_k);
    else
        sb_printf(&b, " heads of dim %u (K) / %u (V)", hp->head_dim_k, hp->head_dim_v);
    if (hybrid)
    {
        sb_printf(&b, ", DeltaNet %u key / %u value heads of dim %u",
                  halo_hparams_deltanet_key_heads(hp), halo_hparams_deltanet_value_heads(hp),
                  halo_hparams_deltanet_key_dim(hp));
        if (halo_hparams_deltanet_value_dim(hp) != halo_hparams_deltanet_key_dim(hp))
            sb_printf(&b, " (K) / %u (V)", halo_hparams_deltanet_value_dim(hp));
        sb_printf(&b, " (conv %u)", hp->ssm_conv_kernel);
    }
    if (hp->n_expert) {
        sb_printf(&b, ", %u experts (%u routed per token) of width %u", hp->n_expert,
                  hp->n_expert_used, hp->n_ff_exp);
        if (hp->n_ff_shexp) sb_printf(&b, " + 1 shared expert of width %u", hp->n_ff_shexp);
    } else if (hp->n_ff) {
        sb_printf(&b, ", FFN %u", hp->n_ff);
    }
    if (hp->n_rot < hp->head_dim_k)
        sb_printf(&b, ", RoPE on %u of %u dims", hp->n_rot, hp->head_dim_k);
    else
        sb_printf(&b, ", RoPE");
    if (hp->rope_freq_base > 0) sb_printf(&b, " (base %g", (double)hp->rope_freq_base);
    if (hp->has_rope_sections)
        sb_printf(&b, "%ssections %u/%u/%u/%u", hp->rope_freq_base > 0 ? ", " : " (",
                  hp->rope_sections[0], hp->rope_sections[1], hp->rope_sections[2],
                  hp->rope_sections[3]);
    if (hp->rope_freq_base > 0 || hp->has_rope_sections) sb_printf(&b, ")");
    if (hp->rms_eps > 0) sb_printf(&b, ", RMS eps %g", (double)hp->rms_eps);
    if (hp->n_ctx_train) sb_printf(&b, ", trained context %u", hp->n_ctx_train);
    return buf;
}

/* ---- tensor statistics ------------------------------------------------------------- */

/* blk.N. prefix -> N, or -1. */
static long block_index(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    char *end;
    long n = strtol(name + 4, &end, 10);
    if (end == name + 4 || *end != '.' || n < 0) return -1;
    return n;
}

int halo_model_stats_compute(const halo_gguf *g, const halo_hparams *hp, halo_model_stats *st,
                             halo_error *err) {
    memset(st, 0, sizeof *st);
    int64_t n = halo_gguf_n_tensors(g);
    uint32_t first_nextn = hp ? hp->n_layer - hp->n_nextn : UINT32_MAX;
    for (int64_t i = 0; i < n; i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        if (!t || t->n_elements < 0)
            return halo_error_set(err, HALO_ERR_FORMAT, "tensor %lld is malformed", (long long)i);
        uint64_t ne = (uint64_t)t->n_elements;
        if (halo_add_overflow(st->n_params, ne, &st->n_params) ||
            halo_add_overflow(st->bytes, t->nbytes, &st->bytes))
            return halo_error_set(err, HALO_ERR_RANGE, "tensor sizes overflow 64 bits");
        st->n_tensors++;
        if (strstr(t->name, "_exps")) st->n_params_expert += ne;
        long blk = block_index(t->name);
        if (blk >= 0 && (uint64_t)blk >= first_nextn) st->n_params_nextn += ne;
        if (t->type >= 0 && t->type < HALO_TYPE_COUNT) {
            halo_type_stats *ts = &st->by_type[t->type];
            ts->n_tensors++;
            ts->n_elements += ne;
            ts->bytes += t->nbytes;
        }
    }
    /* Active parameters: what one token touches. Shared experts and the router
     * are always active; of the routed experts, n_expert_used of n_expert. */
    st->n_params_active = st->n_params;
    if (hp && hp->n_expert > 0 && st->n_params_expert > 0) {
        uint64_t used;
        if (halo_mul_overflow(st->n_params_expert, hp->n_expert_used, &used))
            used = st->n_params_expert / hp->n_expert * hp->n_expert_used;
        else
            used /= hp->n_expert;
        st->n_params_active = st->n_params - st->n_params_expert + used;
    }
    return 0;
}

double halo_model_stats_bits_per_weight(const halo_model_stats *st) {
    return st->n_params ? 8.0 * (double)st->bytes / (double)st->n_params : 0.0;
}
