/*
 * runtime — running a model: the memory plan, and the context that
 * halo_decode runs in (runtime/context.c: buffers, batch validation, ubatches;
 * runtime/kv.c: the paged KV cache, recurrent-state slots, sequence operations;
 * runtime/sampling.c: choosing tokens from logits).
 *
 * The memory plan answers "does this fit?" before anything is allocated: the
 * weights, the KV cache for CTX tokens (the total over all slots, as llama.cpp's
 * -c), the Gated-DeltaNet recurrent state of every slot, and an estimate of the
 * compute buffers, against the machine's memory or a budget the user gives. Only
 * full-attention layers keep a KV cache; a hybrid model's DeltaNet layers keep a
 * fixed-size state per slot instead, which is why Qwen3.5 needs a quarter of the
 * KV cache of a dense model of the same attention shape.
 */
#ifndef HALO_RUNTIME_H
#define HALO_RUNTIME_H

#include "halo.h"
#include "kernels/kernels.h"
#include "model/model.h"

#include <stdbool.h>
#include <stdint.h>

/* KV cache element types: f32, f16, bf16, q8_0, q4_0 and iq4_nl (halo_type ids). */
bool halo_kv_type_supported(int type);
/* "q8_0", "F16", ... -> halo_type; -1 if not a supported cache type. */
int halo_kv_type_from_name(const char *name);
/* The supported names, for usage and error messages: "f32, f16, bf16, q8_0, q4_0, iq4_nl". */
const char *halo_kv_type_names(void);

#define HALO_PLAN_DEFAULT_CTX 4096
#define HALO_PLAN_DEFAULT_UBATCH 512

typedef struct halo_plan_options {
    uint64_t n_ctx;     /* KV cells over all slots (-c) */
    uint32_t n_slots;   /* parallel sequences (-np); each has its own recurrent state */
    int type_k, type_v; /* cache types (-ctk, -ctv) */
    uint32_t n_ubatch;  /* tokens per forward call, for the compute-buffer estimate */
    uint64_t mem_bytes; /* budget (--mem); 0: this machine's physical memory */
} halo_plan_options;

void halo_plan_options_default(halo_plan_options *o);

typedef struct halo_memory_plan {
    /* inputs, as used */
    uint64_t n_ctx;
    uint32_t n_slots;
    int type_k, type_v;
    uint32_t n_ubatch;

    uint64_t weights_bytes;

    /* KV cache: per token over all full-attention layers, then for n_ctx */
    uint64_t k_bytes_per_token, v_bytes_per_token, kv_bytes_per_token;
    uint64_t kv_bytes;

    /* recurrent state: per slot over all DeltaNet layers, then for n_slots */
    uint64_t conv_bytes_per_slot;  /* (conv_kernel - 1) x conv channels, f32 */
    uint64_t ssm_bytes_per_slot;   /* value heads x key dim x value dim, f32 */
    uint64_t recurrent_bytes;

    /* compute buffers (estimate): logits n_vocab x ubatch x 4 B, plus the f32
     * activations alive at once while one ubatch passes through a layer */
    uint64_t logits_bytes;
    uint64_t activation_bytes;
    uint64_t compute_bytes;

    uint64_t total_bytes;

    uint64_t mem_bytes;   /* the budget; 0 if unknown */
    bool mem_from_system; /* the budget is this machine's memory */
    bool fits;
    int64_t headroom_bytes; /* budget - total (negative: short by that much) */

    /* The largest -c that fits the budget with these types and slots, rounded
     * down to a multiple of 256 cells; max_ctx caps it at trained context x
     * slots (each slot is limited by the trained context). 0 if even no
     * context fits. UINT64_MAX (uncapped) for a model without a KV cache. */
    uint64_t max_ctx_fit;
    uint64_t max_ctx;
    bool max_ctx_capped_by_train;
} halo_memory_plan;

/* Bytes per token of the K and V caches summed over the full-attention layers.
 * HALO_ERR_ARG if a type is not a cache type or a quantized type does not
 * divide a layer's row (q8_0/q4_0 need KV heads x head dim to be a multiple of 32). */
int halo_plan_kv_bytes_per_token(const halo_hparams *hp, int type_k, int type_v, uint64_t *k_bytes,
                                 uint64_t *v_bytes, halo_error *err);

/* Bytes of recurrent state of one slot, summed over the DeltaNet layers. */
int halo_plan_recurrent_bytes_per_slot(const halo_hparams *hp, uint64_t *conv_bytes,
                                       uint64_t *ssm_bytes, halo_error *err);

/* The whole plan. weights_bytes: the tensor data of the file (all of it is in
 * memory once the model has run, whether mapped or read). */
int halo_plan_compute(const halo_hparams *hp, uint64_t weights_bytes, const halo_plan_options *o,
                      halo_memory_plan *plan, halo_error *err);


/* ---- the context (internal to the library) ------------------------------------
 * What halo_context holds, for the forward passes in model/.
 *
 * KV cache: paged. The n_ctx cells are pages of HALO_KV_PAGE positions, shared by
 * every attention layer (page p of layer il lives at k[il] + p * page bytes).
 * Each sequence has a page table: position p is row p % HALO_KV_PAGE of page
 * table[p / HALO_KV_PAGE]. Pages are refcounted: halo_seq_copy shares them, and a
 * sequence about to write into a page someone else also holds copies it first
 * (copy on write), so a system prompt computed once serves many slots.
 *
 * Recurrent state (hybrid models): per DeltaNet layer and sequence, a conv state
 * [(conv_kernel - 1) x conv_channels] and an SSM state [value_heads x key_dim x
 * value_dim], f32, reached through halo_rs_conv / halo_rs_ssm. */

#define HALO_KV_PAGE 32

typedef struct halo_kv_cache {
    int type_k, type_v;
    /* Walsh-Hadamard rotation before quantizing (halo_blk_attend): K (and q) in runs of
     * rot_k values, V (and the output, back) in runs of rot_v; 0: none */
    int rot_k, rot_v;
    int32_t n_pages;
    size_t *k_row_bytes, *v_row_bytes;   /* [n_layer] one position, all KV heads; 0: no cache */
    size_t *k_head_bytes, *v_head_bytes; /* [n_layer] one KV head's row */
    char **k, **v;                       /* [n_layer] page-major storage, NULL: no cache */
    int32_t *refcount;                   /* [n_pages] */
    int32_t *free_pages;                 /* stack of free page ids */
    int32_t n_free;
    int32_t *page_table; /* [n_seq_max][n_pages] */
    int32_t *n_seq_pages; /* [n_seq_max] pages in each table */
} halo_kv_cache;

typedef struct halo_recurrent {
    int32_t *slot;      /* [n_layer] index among the DeltaNet layers; -1 for others */
    uint32_t n_slots;   /* DeltaNet layers */
    size_t conv_floats; /* one layer, one sequence */
    size_t ssm_floats;
    float *conv, *ssm;  /* [n_slots][n_seq_max][...] */
} halo_recurrent;

/* A slice of a batch that one forward pass runs. Its tokens grouped by
 * sequence (for the recurrent layers, which run each sequence's tokens in
 * order): segment j is tokens perm[seg_off[j]] .. perm[seg_off[j+1]-1] of
 * sequence seg_seq[j]; perm is 0..n-1 (identity) for one sequence. */
struct halo_ubatch {
    int32_t n;
    const int32_t *token, *pos, *seq; /* [n] */
    const int32_t *out;               /* [n] row of ctx->logits to fill, -1: none */
    bool embd; /* the rows are the normed hidden states [n_embd], not logits (no head) */
    int32_t n_out;                    /* tokens with out >= 0 */
    int32_t n_seg;
    const int32_t *seg_off, *seg_seq, *perm; /* [n_seg + 1], [n_seg], [n] */
    bool identity;
    int32_t max_pos; /* the largest position of the ubatch */
};
typedef struct halo_ubatch halo_ubatch;

/* f32 work buffers, sized for n_ubatch tokens when the context is made. */
typedef struct halo_buffers {
    float *x, *xn, *y;    /* [n_ubatch][n_embd] residual stream, normed input, block output */
    float *q, *k, *v;     /* [n_ubatch][n_head * hd_k], [n_ubatch][n_kv_max * hd_k / hd_v] */
    float *att;           /* [n_ubatch][n_head * hd_v] */
    float *ff_a, *ff_b;   /* [n_ubatch][max FFN width] */
    float *router;        /* [n_ubatch][n_expert] */
    int32_t *moe_ids;     /* [n_ubatch][n_expert_used] */
    float *moe_w;         /* [n_ubatch][n_expert_used] */
    int32_t *moe_tok;     /* [n_expert][n_ubatch] (token << 8 | slot) grouped by expert */
    int32_t *moe_count;   /* [n_expert] */
    float *moe_x, *moe_y; /* [n_ubatch][n_embd] gathered inputs / expert outputs */
    float *out_x;         /* [n_ubatch][n_embd] rows that produce logits */
    float *inv_freq;      /* [n_rot / 2] RoPE frequencies */
    float *attn_scratch;  /* [n_threads][attn_scratch_floats] */
    size_t attn_scratch_floats;
    int32_t *attn_block;  /* [n_ubatch + 1] first token of each attention block */
    int32_t *attn_nkv;    /* [n_ubatch] positions each token attends to */
    float *attn_parts;    /* [n_threads][attn_part_floats] split decode partials */
    size_t attn_part_floats;
    float *extra;         /* [arch scratch_floats] for the architecture's own use */
} halo_buffers;

/* An observer of matrix products (halo imatrix): told, on the calling thread, of the
 * input of every product y = W x the CPU backend computes, before or as it runs:
 * weight w (matrix `expert` of a 3-D weight, 0 otherwise) and the n_rows rows of
 * w->n_cols activations x it multiplies (runtime/backend.h:
 * halo_context_set_mm_observer). */
struct halo_weight;
typedef void (*halo_mm_observer)(void *user, const struct halo_weight *w, int64_t expert,
                                 const float *x, int64_t n_rows);

/* The backend the forward passes run on: its op table and its own state
 * (runtime/backend.h). */
typedef struct halo_backend_ops halo_backend_ops;
typedef struct halo_backend {
    const halo_backend_ops *ops;
    void *impl;
} halo_backend;

struct halo_context {
    halo_model *model;
    halo_backend be;
    const halo_hparams *hp;
    halo_context_params params; /* as resolved: defaults filled, limits applied */
    halo_threadpool *pool;
    int n_threads;

    halo_kv_cache kv;
    halo_recurrent rs;
    int32_t *seq_len; /* [n_seq_max] */

    halo_buffers buf;
    /* the output rows of the last batch: logits [n_vocab] each, or in embeddings mode the
     * hidden states after the output norm [n_embd] each (halo_set_embeddings) */
    float *logits;          /* [rows][out_width] */
    size_t logits_cap;      /* floats allocated */
    int32_t *logits_row;    /* [n_batch] row of each token of the last batch, -1: none */
    int32_t last_n_tokens;  /* tokens in the last batch */
    bool embeddings;        /* the next batches give hidden states, not logits */
    bool out_embd;          /* the last batch gave hidden states */

    /* batch scratch [n_batch] / [n_seq_max] */
    int32_t *b_pos, *b_seq, *b_out;
    int32_t *ub_perm, *ub_seg_off, *ub_seg_seq; /* [n_ubatch], [n_ubatch + 1], [n_ubatch] */
    int32_t *seq_count;

    /* optional: told of every product's activations (NULL: none; CPU backend only) */
    halo_mm_observer mm_observer;
    void *mm_observer_user;
};

/* Recurrent state of DeltaNet layer il (a model layer index) for a sequence. */
float *halo_rs_conv(halo_context *ctx, uint32_t il, int32_t seq);
float *halo_rs_ssm(halo_context *ctx, uint32_t il, int32_t seq);

/* Make room for seq_count[s] more positions of every sequence s (fresh pages,
 * and a private copy of a shared partial last page). All or nothing:
 * HALO_ERR_RANGE when the cache is too full, and then nothing changed. */
int halo_kv_reserve(halo_context *ctx, const int32_t *seq_count, halo_error *err);

/* A GPU backend's bound on a ubatch's positions for attention (the shape of a recorded or
 * captured decode step: it picks attention's split): the next power of two above
 * max_pos, at least 256, within the cache (minus one), so that a decode step keeps its
 * recording for long runs. */
int32_t halo_kv_attn_bound(const halo_context *ctx, int32_t max_pos);


#endif /* HALO_RUNTIME_H */
