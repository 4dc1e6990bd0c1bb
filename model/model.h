/*
 * model — what a model is, read from its GGUF metadata: the architecture, its
 * hyper-parameters (layer count, widths, heads, experts, RoPE, the Gated-DeltaNet
 * state of the Qwen3.5 hybrids) and what its tensors weigh.
 *
 * Hyper-parameters come from the `<arch>.*` keys that llama.cpp's converter
 * writes, so a file downloaded from a model hub reads the same here as there.
 * Every value is range-checked when it is read: the memory plan (runtime/) and
 * the forward pass multiply these numbers together, and a hostile or broken file
 * must fail here with one clear message rather than later with a huge
 * allocation. Architectures halo does not know are still described generically
 * from the same key names.
 */
#ifndef HALO_MODEL_H
#define HALO_MODEL_H

#include "halo.h"
#include "format/gguf.h"
#include "quant/quant.h"

#include <stdbool.h>
#include <stdint.h>

/* More layers than any published model has (the largest have ~130); a per-layer
 * table of this size keeps the struct flat, copyable and free of frees. */
#define HALO_MAX_LAYERS 512

typedef enum halo_arch {
    HALO_ARCH_UNKNOWN = 0, /* some other `general.architecture`: described generically */
    HALO_ARCH_LLAMA,
    HALO_ARCH_QWEN3,
    HALO_ARCH_QWEN3MOE,
    HALO_ARCH_QWEN35,    /* hybrid: Gated DeltaNet + gated full attention, dense FFN */
    HALO_ARCH_QWEN35MOE, /* the same hybrid with routed + shared experts */
    HALO_ARCH_COUNT,
} halo_arch;

/* What a layer's token mixer is; it decides what the layer keeps per sequence. */
typedef enum halo_layer_kind {
    HALO_LAYER_ATTENTION = 0, /* (gated) full attention: a KV cache that grows with context */
    HALO_LAYER_DELTANET = 1,  /* Gated DeltaNet: a fixed-size recurrent state per sequence */
    HALO_LAYER_NEXTN = 2,     /* a multi-token-prediction (MTP / NextN) head layer */
} halo_layer_kind;

typedef struct halo_hparams {
    halo_arch arch;
    char arch_name[64]; /* general.architecture as written in the file */

    uint32_t n_layer;   /* <arch>.block_count: every blk.N, MTP layers included */
    uint32_t n_nextn;   /* <arch>.nextn_predict_layers: the last n_nextn blocks are MTP heads */
    uint32_t n_embd;    /* <arch>.embedding_length: the hidden size */
    uint32_t n_vocab;   /* token list length, else <arch>.vocab_size, else tensor shape */
    uint32_t n_head;    /* query heads (largest over layers if per-layer) */
    uint32_t n_head_kv[HALO_MAX_LAYERS]; /* KV heads per layer (the key may be a scalar) */
    uint32_t head_dim_k; /* attention.key_length, default n_embd / n_head */
    uint32_t head_dim_v; /* attention.value_length, default n_embd / n_head */
    uint32_t n_ff;       /* feed_forward_length of dense FFNs (0 if none; largest if per-layer) */

    uint32_t n_expert;      /* expert_count (0: dense) */
    uint32_t n_expert_used; /* expert_used_count: routed experts per token */
    uint32_t n_ff_exp;      /* expert_feed_forward_length */
    uint32_t n_ff_shexp;    /* expert_shared_feed_forward_length (0: no shared expert) */

    uint32_t n_ctx_train;  /* context_length (0 if the file does not say) */
    uint32_t pooling_type; /* pooling_type (halo_pooling: 0 none, 1 mean, 2 cls, 3 last, 4 rank);
                            * 0 if absent, as for every decoder LLM */
    float rope_freq_base;  /* rope.freq_base (0 if absent) */
    uint32_t n_rot;        /* rope.dimension_count: rotated dims per head (partial RoPE) */
    uint32_t rope_sections[4]; /* rope.dimension_sections (multi-section "mrope") */
    bool has_rope_sections;
    float rms_eps;         /* attention.layer_norm_rms_epsilon */

    /* Gated DeltaNet (Qwen3.5 ssm.* keys, named after llama.cpp's Mamba fields). */
    uint32_t ssm_conv_kernel; /* ssm.conv_kernel: causal conv width */
    uint32_t ssm_state_size;  /* ssm.state_size: key head dim */
    uint32_t ssm_group_count; /* ssm.group_count: key heads */
    uint32_t ssm_time_step_rank; /* ssm.time_step_rank: value heads */
    uint32_t ssm_inner_size;  /* ssm.inner_size: value heads x value head dim */
    uint32_t full_attention_interval; /* every interval-th layer is full attention */

    halo_layer_kind layer_kind[HALO_MAX_LAYERS];
    uint32_t n_attention_layers; /* HALO_LAYER_ATTENTION count */
    uint32_t n_deltanet_layers;  /* HALO_LAYER_DELTANET count */
} halo_hparams;

const char *halo_arch_name(halo_arch arch); /* "qwen35moe"; "unknown" */
halo_arch halo_arch_from_name(const char *name); /* HALO_ARCH_UNKNOWN if not known */
bool halo_arch_is_hybrid(halo_arch arch);   /* qwen35, qwen35moe */
const char *halo_layer_kind_name(halo_layer_kind kind); /* "attention", "deltanet", "nextn" */

/* Read the hyper-parameters of an opened file and validate them (finalize).
 * A key that is missing for a known architecture, or any value out of range,
 * gives HALO_ERR_FORMAT; a missing key for an unknown architecture gives
 * HALO_ERR_UNSUPPORTED (the file is fine, halo just cannot describe it). When
 * the file has tensors, the layer kinds are checked against their names. */
int halo_hparams_load(const halo_gguf *g, halo_hparams *hp, halo_error *err);

/* Derive what follows from the scalar fields (defaults for head dims, layer kinds
 * from full_attention_interval, n_head_kv copied to every layer if only
 * n_head_kv[0] is set) and check every range. Used by halo_hparams_load and by
 * callers that fill a struct by hand (tests, planning for a model not on disk). */
int halo_hparams_finalize(halo_hparams *hp, halo_error *err);

/* Gated-DeltaNet head shapes derived from the ssm.* keys. */
static inline uint32_t halo_hparams_deltanet_key_heads(const halo_hparams *hp) {
    return hp->ssm_group_count;
}
static inline uint32_t halo_hparams_deltanet_value_heads(const halo_hparams *hp) {
    return hp->ssm_time_step_rank;
}
static inline uint32_t halo_hparams_deltanet_key_dim(const halo_hparams *hp) {
    return hp->ssm_state_size;
}
static inline uint32_t halo_hparams_deltanet_value_dim(const halo_hparams *hp) {
    return hp->ssm_time_step_rank ? hp->ssm_inner_size / hp->ssm_time_step_rank : 0;
}
/* Channels of the causal conv: q and k (key heads x key dim each) and v. */
static inline uint64_t halo_hparams_deltanet_conv_channels(const halo_hparams *hp) {
    return 2ull * hp->ssm_group_count * hp->ssm_state_size + hp->ssm_inner_size;
}

/* A Gated-DeltaNet layer's shapes as the forward pass and every backend (CPU, CUDA,
 * Vulkan) compute with them: one place derives them from the hparams. */
typedef struct halo_deltanet_dims {
    int64_t hk, hv; /* key / value heads (value head h reads key head h % hk) */
    int64_t dk, dv; /* key / value head dims */
    int64_t ch;     /* a conv row: q and k (hk dk each), then v (hv dv) */
    int64_t vd;     /* a token's output: hv dv */
} halo_deltanet_dims;

static inline halo_deltanet_dims halo_hparams_deltanet_dims(const halo_hparams *hp) {
    halo_deltanet_dims d = {
        .hk = halo_hparams_deltanet_key_heads(hp),
        .hv = halo_hparams_deltanet_value_heads(hp),
        .dk = halo_hparams_deltanet_key_dim(hp),
        .dv = halo_hparams_deltanet_value_dim(hp),
    };
    d.ch = 2 * d.hk * d.dk + d.hv * d.dv;
    d.vd = d.hv * d.dv;
    return d;
}

/* One sentence on the architecture, e.g. "qwen35moe: 8 layers (6 Gated DeltaNet
 * + 2 gated full attention, every 4th), hidden 256, ...". Returns buf. */
char *halo_hparams_describe(const halo_hparams *hp, char *buf, size_t size);

/* ---- what the tensors weigh --------------------------------------------- */

typedef struct halo_type_stats {
    uint64_t n_tensors;
    uint64_t n_elements;
    uint64_t bytes;
} halo_type_stats;

typedef struct halo_model_stats {
    uint64_t n_tensors;
    uint64_t n_params;        /* every element of every tensor */
    uint64_t n_params_expert; /* of routed-expert tensors (*_exps) */
    uint64_t n_params_active; /* non-expert + expert x n_expert_used / n_expert */
    uint64_t n_params_nextn;  /* of MTP layers (included in n_params) */
    uint64_t bytes;           /* tensor data, all parts */
    halo_type_stats by_type[HALO_TYPE_COUNT];
} halo_model_stats;

/* Sum the tensor table. hp may be NULL (active = total then). */
int halo_model_stats_compute(const halo_gguf *g, const halo_hparams *hp, halo_model_stats *st,
                             halo_error *err);
/* 8 x bytes / params; 0 for a file without weights. */
double halo_model_stats_bits_per_weight(const halo_model_stats *st);

/* Which layers' routed experts (blk.N.ffn_{gate,up,down}_exps.weight) stay in host memory
 * with the model on a GPU, decided from the tensor names alone (model/load.c loads by it,
 * halo plan budgets by it): host[il] (il < hp->n_layer) for the first o->n_cpu_moe
 * layers, then by the -ot rules: for each tensor, the first rule whose pattern matches its
 * name decides (as llama.cpp's): =CPU keeps it in host memory (only routed-expert tensors
 * can: others are an error naming the rule), a GPU device (CUDA0, Vulkan0, ...) puts it
 * on the GPU, over --n-cpu-moe too. A layer's three go together (the CPU computes all or
 * none). *host_bytes (may be NULL): the bytes of the host layers' expert tensors. */
int halo_expert_placement(const halo_gguf *g, const halo_hparams *hp, const halo_load_options *o,
                          bool *host, uint64_t *host_bytes, halo_error *err);

#endif /* HALO_MODEL_H */
