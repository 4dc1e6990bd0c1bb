/*
 * synth — the parts of `halo synth` (tools/cmd_synth.c): model presets with the published
 * shapes of real models, the tensor plan an architecture implies, the choice of block type
 * per tensor (one type, or a llama-quantize style mix), a byte-level BPE vocabulary of any
 * size, and the random weights.
 *
 * Two ideas carry it. First, a synthesized file must be indistinguishable in structure
 * from one that llama.cpp's converter and quantizer write for the real model: same tensor
 * names, shapes, types, metadata keys and tokenizer layout, so that engines (halo and the
 * peer) take the same code paths as on downloaded files. Second, every value is a pure
 * function of (seed, tensor, row), so generation parallelizes over rows and streams: no
 * tensor is ever held whole, and the output does not depend on the thread count.
 */
#ifndef HALO_SYNTH_H
#define HALO_SYNTH_H

#include "halo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- presets ------------------------------------------------------------ */

typedef enum synth_arch {
    SYNTH_ARCH_LLAMA,
    SYNTH_ARCH_QWEN3,
    SYNTH_ARCH_QWEN3MOE,
    SYNTH_ARCH_QWEN35,
    SYNTH_ARCH_QWEN35MOE,
} synth_arch;

/* Which tokenizer family the vocabulary imitates (special tokens, pre-tokenizer, template). */
typedef enum synth_vocab_kind {
    SYNTH_VOCAB_QWEN3,  /* ChatML specials, pre "qwen2", Qwen3 template */
    SYNTH_VOCAB_QWEN35, /* same specials at Qwen3.5's ids, pre "qwen35", Qwen3.5 template */
    SYNTH_VOCAB_LLAMA3, /* <|begin_of_text|> ... 256 specials, pre "llama-bpe", Llama 3.1 template */
} synth_vocab_kind;

typedef struct synth_model {
    const char *preset;     /* "qwen35moe-35b-a3b" */
    const char *model_name; /* "Qwen3.5-35B-A3B" (the model imitated) */
    const char *basename;   /* general.basename: "Qwen3.5" */
    const char *size_label; /* general.size_label of the real model: "35B-A3B" */
    const char *source;     /* where the shapes were checked */
    synth_arch arch;
    synth_vocab_kind vocab_kind;

    int64_t n_layer;
    int64_t n_embd;
    int64_t n_ff;        /* dense FFN width (0 where every layer is MoE and the file has no key) */
    int64_t n_head;
    int64_t n_head_kv;
    int64_t head_dim;    /* key_length = value_length */
    int64_t n_vocab;     /* rows of token_embd (padded vocabulary) */
    int64_t n_vocab_text; /* ids before the special tokens (BPE tokens incl. the 256 bytes) */
    int64_t n_ctx;       /* context_length */
    double rope_theta;
    double rms_eps;
    int64_t rope_dim;    /* rotary dimensions per head (partial rotary for Qwen3.5) */
    int32_t rope_sections[4]; /* Qwen3.5 mrope sections; all 0 otherwise */
    bool tied_embeddings;
    bool llama3_rope;    /* Llama 3.1 rope scaling: writes rope_freqs.weight */

    /* MoE (0 experts: dense) */
    int64_t n_expert;
    int64_t n_expert_used;
    int64_t n_ff_exp;
    int64_t n_ff_shexp;  /* shared expert width, 0 if none */

    /* Gated DeltaNet (Qwen3.5): every full_attn_interval-th layer is full attention */
    int64_t full_attn_interval;
    int64_t ssm_d_conv;
    int64_t ssm_n_k_heads; /* ssm.group_count */
    int64_t ssm_n_v_heads; /* ssm.time_step_rank */
    int64_t ssm_head_k_dim; /* ssm.state_size */
    int64_t ssm_head_v_dim; /* ssm.inner_size / time_step_rank */
} synth_model;

extern const synth_model synth_presets[];
extern const size_t synth_n_presets;
const synth_model *synth_preset_find(const char *name);

/* The layer is a full-attention layer (always true outside Qwen3.5). */
bool synth_layer_is_attention(const synth_model *m, int64_t layer);
/* Parameter counts: all weights, and those one token reads (routed experts: n_used of
 * n_expert). Returns false on overflow. */
bool synth_count_params(const synth_model *m, uint64_t *total, uint64_t *active);

/* ---- the tensor plan ---------------------------------------------------- */

/* How a tensor's values are drawn. */
typedef enum synth_init {
    SYNTH_INIT_NORMAL,     /* N(0, scale^2), bell-shaped, bounded at 3.5 sigma */
    SYNTH_INIT_NORM,       /* RMS norm weights: 1 + N(0, scale^2) */
    SYNTH_INIT_SSM_A,      /* -A with A uniform in [1, 16] (GGUF stores -exp(A_log)) */
    SYNTH_INIT_DT_BIAS,    /* 1 + N(0, scale^2), as the reference initializes dt_bias */
    SYNTH_INIT_ROPE_FREQS, /* Llama 3.1 rope scaling factors, computed, not random */
} synth_init;

/* llama-quantize's broad tensor categories, which its mix rules key on. */
typedef enum synth_category {
    SYNTH_CAT_OTHER,
    SYNTH_CAT_TOKEN_EMBD,
    SYNTH_CAT_OUTPUT,
    SYNTH_CAT_ATTN_Q,
    SYNTH_CAT_ATTN_K,
    SYNTH_CAT_ATTN_V,   /* attn_v, and attn_qkv (which the mix treats as attn_v) */
    SYNTH_CAT_ATTN_QKV,
    SYNTH_CAT_ATTN_OUTPUT,
    SYNTH_CAT_FFN_UP,
    SYNTH_CAT_FFN_GATE,
    SYNTH_CAT_FFN_DOWN,
} synth_category;

typedef struct synth_tensor {
    char name[64];
    uint32_t n_dims;
    int64_t ne[4];    /* ne[0] = row length; unused dims 1 */
    bool matrix;      /* quantizable (2-D/3-D weight), else kept F32 */
    synth_init init;
    float scale;
    int layer;        /* -1 for global tensors */
    synth_category category;
    int type;         /* halo_type, chosen by synth_choose_types */
    uint64_t nbytes;  /* of the chosen type */
} synth_tensor;

/* Build the tensor list of a model in the converter's order. Returns 0 or an error. */
int synth_plan_build(const synth_model *m, synth_tensor **out, size_t *n_out, halo_error *err);

/* ---- types and mixes ---------------------------------------------------- */

typedef struct synth_type_spec {
    char name[16];   /* as the user wrote it, canonical case: "Q4_K_M", "q8_0" */
    int pure_type;   /* one block type for every matrix, or -1 for a mix */
    int mix;         /* SYNTH_MIX_*, when pure_type < 0 */
    uint32_t file_type; /* general.file_type (llama_ftype) */
    bool has_imatrix;   /* llama-quantize's rules differ with an importance matrix */
} synth_type_spec;

enum {
    SYNTH_MIX_Q3_K_S,
    SYNTH_MIX_Q3_K_M,
    SYNTH_MIX_Q3_K_L,
    SYNTH_MIX_Q4_K_S,
    SYNTH_MIX_Q4_K_M,
    SYNTH_MIX_Q5_K_S,
    SYNTH_MIX_Q5_K_M,
    SYNTH_MIX_MXFP4_MOE,
    /* llama-quantize's file types named after one block type: that type, with its rules
     * for the output, attn_v/k, ffn_down and attn_output (halo quantize) */
    SYNTH_MIX_Q2_K,
    SYNTH_MIX_Q4_0,
    SYNTH_MIX_Q4_1,
    SYNTH_MIX_Q5_0,
    SYNTH_MIX_Q5_1,
    SYNTH_MIX_Q6_K,
    SYNTH_MIX_Q8_0,
    SYNTH_MIX_IQ4_NL,
    SYNTH_MIX_IQ4_XS,
    SYNTH_MIX_COUNT,
};

/* Parse a --type argument. false if unknown (or a type halo cannot encode). */
bool synth_type_parse(const char *text, synth_type_spec *out);
/* Parse llama-quantize's TYPE argument (halo quantize): every file-type name is a recipe
 * with its per-tensor rules (Q8_0, Q6_K, Q4_K_M, Q2_K, IQ4_XS, ...; Q4_K, Q5_K, Q3_K are
 * its aliases of the _M recipes), F32/F16/BF16 and, with pure, any type for every matrix. */
bool synth_recipe_parse(const char *text, bool pure, synth_type_spec *out);
const char *synth_recipe_names(void);
/* A one-line list of accepted names, for messages. */
const char *synth_type_names(void);
/* Pick each tensor's type and byte size. Returns 0, or an error (overflow). */
int synth_choose_types(const synth_model *m, const synth_type_spec *spec, synth_tensor *t,
                       size_t n, halo_error *err);

/* ---- vocabulary ----------------------------------------------------------- */

typedef struct synth_vocab {
    char **tokens;       /* n_tokens NUL-terminated strings (GPT-2 byte-to-unicode text) */
    int32_t *types;      /* token_type per token: 1 normal, 3 control, 4 user-defined, 5 unused */
    int64_t n_tokens;
    char **merges;       /* "A B" */
    int64_t n_merges;
    const char *model;   /* tokenizer.ggml.model */
    const char *pre;     /* tokenizer.ggml.pre */
    const char *chat_template;
    int64_t bos_id, eos_id, pad_id; /* -1 where the family has none */
    bool add_bos;
} synth_vocab;

/* A vocabulary of m->n_vocab tokens for m->vocab_kind. Deterministic (no seed). */
int synth_vocab_build(const synth_model *m, synth_vocab *out, halo_error *err);
void synth_vocab_free(synth_vocab *v);

/* ---- weights -------------------------------------------------------------- */

/* Values of rows [row0, row0 + n_rows) of tensor t (row length t->ne[0]) into out. */
void synth_fill_rows(const synth_model *m, const synth_tensor *t, size_t tensor_index,
                     uint64_t seed, int64_t row0, int64_t n_rows, float *out);

/* ---- embedded chat templates (synth_templates.c) --------------------------- */
extern const char synth_template_qwen35[];
extern const char synth_template_qwen3[];
extern const char synth_template_llama3[];

#endif /* HALO_SYNTH_H */
