/*
 * model/arch.h — a loaded model as the engine runs it (internal to the library).
 *
 * A weight is a view of a tensor where it lies in the file (mapped or read):
 * type, data pointer, shape and row stride; nothing is copied. Each
 * architecture is one file (model/<arch>.c) that provides a row of the arch
 * table: `bind` looks its tensors up by their GGUF names into the per-layer
 * structs, `forward` runs one ubatch. The transformer pieces that several
 * architectures share (embedding, attention over the KV cache, dense and MoE
 * FFNs, the output head) are in model/blocks.c, written so that an
 * architecture adds what is special to it around them (Qwen3.5's output gate,
 * its shared expert).
 */
#ifndef HALO_MODEL_ARCH_H
#define HALO_MODEL_ARCH_H

#include "halo.h"
#include "format/gguf.h"
#include "kernels/kernels.h"
#include "model/model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct halo_weight {
    int type;         /* halo_type */
    const void *data; /* NULL: the tensor is absent (optional weights) */
    int64_t n_cols;   /* ne[0]: values per row (the input width of a matrix) */
    int64_t n_rows;   /* ne[1]: rows (the output width); 1 for vectors */
    int64_t n_mats;   /* ne[2]: matrices (experts) of a 3-D tensor; 1 otherwise */
    size_t row_stride; /* bytes between rows */
    size_t mat_stride; /* bytes between matrices */
    const void *dev;   /* the same bytes in GPU memory (kernels/cuda/backend.c), or NULL */
    bool host;         /* kept in host memory with the model on the GPU (--n-cpu-moe, -ot) */
} halo_weight;

/* Every weight a layer of a supported architecture may have; an architecture
 * binds those it uses. Shapes as [rows x cols] in the math sense (y = W x). */
typedef struct halo_layer {
    halo_weight attn_norm;   /* [n_embd] f32 */
    halo_weight wq, wk, wv;  /* [n_head*hd_k x n_embd], [n_kv*hd_k x n_embd], [n_kv*hd_v x n_embd] */
    halo_weight wo;          /* [n_embd x n_head*hd_v] */
    halo_weight q_norm, k_norm; /* [hd_k] f32: per-head RMS norms (qwen3) */
    halo_weight ffn_norm;    /* [n_embd] f32 (qwen3.5: post_attention_norm) */
    halo_weight ffn_gate, ffn_up; /* [n_ff x n_embd] */
    halo_weight ffn_down;    /* [n_embd x n_ff] */
    halo_weight ffn_gate_inp; /* router [n_expert x n_embd] */
    halo_weight ffn_gate_exps, ffn_up_exps; /* [n_expert][n_ff_exp x n_embd] */
    halo_weight ffn_down_exps;              /* [n_expert][n_embd x n_ff_exp] */
    halo_weight ffn_gate_inp_shexp;         /* [1 x n_embd]: shared expert's sigmoid gate */
    halo_weight ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp; /* shared expert */
    /* Qwen3.5 (model/qwen35.c) */
    halo_weight attn_qkv, attn_gate;
    halo_weight ssm_a, ssm_conv1d, ssm_dt, ssm_alpha, ssm_beta, ssm_norm, ssm_out;
} halo_layer;

typedef struct halo_arch_ops halo_arch_ops;

struct halo_model {
    halo_gguf *gguf;
    halo_hparams hp;
    halo_tokenizer *tok;
    const halo_arch_ops *ops;
    halo_model_stats stats;
    char desc[192];

    halo_weight tok_embd;    /* [n_vocab x n_embd] */
    halo_weight output_norm; /* [n_embd] f32 */
    halo_weight output;      /* [n_vocab x n_embd]; token_embd when tied */
    halo_layer *layers;      /* [n_layer] */

    int rope_mode;            /* HALO_ROPE_NORM / HALO_ROPE_NEOX */
    float rope_freq_scale;    /* 1 / rope.scaling.factor for linear scaling, else 1 */
    const float *rope_freqs;  /* [n_rot / 2] rope_freqs.weight (Llama 3.1), or NULL */
    bool expert_weights_norm; /* renormalize the top-k router weights */

    struct halo_gpu_weights *gpu; /* the weights' GPU copy (kernels/cuda/backend.c), or NULL */
    struct halo_vk_weights *vk;   /* their Vulkan copy (kernels/vulkan/backend.c), or NULL */
};

/* Every weight slot of the model in a fixed order (absent ones too: data NULL) into
 * out[0 .. min(n, cap)); returns n. For backends that copy the weights to a device. */
size_t halo_model_weights(halo_model *m, halo_weight **out, size_t cap);

typedef struct halo_ubatch halo_ubatch; /* runtime/runtime.h */

struct halo_arch_ops {
    halo_arch arch;
    /* Bind the tensors (and arch-specific settings) into model->layers etc. */
    int (*bind)(halo_model *model, halo_error *err);
    /* Floats of arch-specific scratch for a ubatch of n tokens (may be NULL). */
    size_t (*scratch_floats)(const halo_model *model, uint32_t n_ubatch);
    /* Run one ubatch: write K/V and recurrent state, and the logits of the
     * tokens that asked for them (halo_blk_output). Cannot fail: the runtime
     * validated the batch and reserved the cache before. */
    void (*forward)(halo_context *ctx, const halo_ubatch *ub);
};

/* The arch table: model/llama.c, model/qwen3.c, model/qwen3moe.c, model/qwen35.c. */
extern const halo_arch_ops halo_arch_llama;
extern const halo_arch_ops halo_arch_qwen3;
extern const halo_arch_ops halo_arch_qwen3moe;
extern const halo_arch_ops halo_arch_qwen35;    /* model/qwen35.c */
extern const halo_arch_ops halo_arch_qwen35moe; /* model/qwen35.c */

/* ---- binding (model/load.c) --------------------------------------------------- */

enum {
    HALO_BIND_OPTIONAL = 1u << 0, /* absent is fine (data stays NULL) */
    HALO_BIND_F32 = 1u << 1,      /* must be F32 (norm vectors, small parameters) */
};

/* Bind tensor `name` (printf format; e.g. "blk.%u.attn_q.weight") expecting
 * ne = {n_cols, n_rows, n_mats} (n_rows/n_mats 1 for vectors/matrices; a
 * dimension of 0 is not checked). Absent, a wrong shape, or a type that cannot
 * be computed with give HALO_ERR_FORMAT / HALO_ERR_UNSUPPORTED naming the tensor. */
int halo_bind(const halo_model *m, halo_weight *w, unsigned flags, int64_t n_cols, int64_t n_rows,
              int64_t n_mats, halo_error *err, const char *name_fmt, ...)
    __attribute__((format(printf, 8, 9)));

/* Token embedding, output norm and output (tied to the embedding when absent),
 * and the RoPE frequency adjustments (linear scaling, rope_freqs.weight factors;
 * other scaling types give HALO_ERR_UNSUPPORTED). */
int halo_bind_common(halo_model *m, halo_error *err);
/* Standard attention weights of layer il: attn_norm, q/k/v/output, optional q/k norms. */
int halo_bind_attention(halo_model *m, uint32_t il, bool qk_norm, halo_error *err);
/* ffn_norm + dense gate/up/down. */
int halo_bind_ffn(halo_model *m, uint32_t il, halo_error *err);
/* ffn_norm + router + 3-D expert tensors. */
int halo_bind_moe(halo_model *m, uint32_t il, halo_error *err);

/* ---- shared blocks (model/blocks.c) ------------------------------------------
 * Activations are f32 rows: x[t * width + i], in the backend's buffers (host or
 * device memory); every block issues ops of the context's backend
 * (runtime/backend.h) and uses only buffers sized when the context was made. */

/* x[t] = embedding row of token t. */
void halo_blk_embed(halo_context *ctx, const halo_ubatch *ub, float *x);
/* y = W x for n tokens (x: n rows of W.n_cols; y: n rows of W.n_rows); matrix e of a 3-D weight. */
void halo_blk_matmul(halo_context *ctx, const halo_weight *w, int64_t expert, const float *x,
                     int64_t n, float *y);
/* Several one-token products run in one pool job (the rows of each split over
 * the threads): a decode step pays one barrier for q, k and v, or for every
 * expert's gate and up, instead of one per product. */
typedef struct halo_mm {
    const halo_weight *w;
    int64_t expert; /* matrix of a 3-D weight; 0 otherwise */
    const float *x; /* one row of w->n_cols */
    float *y;       /* w->n_rows */
} halo_mm;
void halo_blk_matmul_multi(halo_context *ctx, const halo_mm *mm, int n_mm);
/* Attention of layer il over the cache for a ubatch: q [n][n_head*hd_k] (already normed
 * and rotated), k [n][n_kv*hd_k], v [n][n_kv*hd_v] are stored into the cache at each
 * token's position, then out[t] = attention of q[t] over its sequence's positions <= pos.
 * A quantized cache's Walsh-Hadamard rotation (ctx->kv.rot_k, rot_v) turns q, k and v in
 * place (they hold the rotated values after) and turns out back. */
void halo_blk_attend(halo_context *ctx, uint32_t il, const halo_ubatch *ub, float *q, float *k,
                     float *v, float *out);
/* Standard pre-norm attention sub-block: out = Wo attend(rope(norm?(Wq xn)), ...). */
void halo_blk_attention(halo_context *ctx, uint32_t il, const halo_ubatch *ub, const float *xn,
                        float *out);
/* Dense SwiGLU FFN: out = down(silu(gate xn) * up xn). */
void halo_blk_ffn(halo_context *ctx, const halo_weight *gate, const halo_weight *up,
                  const halo_weight *down, const float *xn, int64_t n, float *out);
/* Routed experts (softmax router, top-k, renormalized if model->expert_weights_norm),
 * plus the shared expert scaled by sigmoid(ffn_gate_inp_shexp . x) when the layer
 * has one (qwen35moe). out is overwritten. */
void halo_blk_moe(halo_context *ctx, const halo_layer *L, const float *xn, int64_t n, float *out);
/* x += y over n floats. */
void halo_blk_add(halo_context *ctx, float *x, const float *y, int64_t n);
/* y = rmsnorm(x) * w over n_rows rows of n (eps from the model). */
/* x += y (the residual), then xn = rms_norm(x) * w: one op where the backend fuses them */
void halo_blk_add_rms_norm(halo_context *ctx, float *x, const float *y, const halo_weight *w,
                           float *xn, int64_t n_rows, int64_t n);
void halo_blk_rms_norm(halo_context *ctx, const float *x, const halo_weight *w, float *y,
                       int64_t n_rows, int64_t n);
/* Final norm and output head for the tokens that asked for logits. */
void halo_blk_output(halo_context *ctx, const halo_ubatch *ub, const float *x);

/* A standard pre-norm decoder (llama, qwen3, qwen3moe): per layer, attention then
 * FFN (dense or MoE, as the layer's weights say), each with a residual. */
void halo_forward_decoder(halo_context *ctx, const halo_ubatch *ub);

#endif /* HALO_MODEL_ARCH_H */
