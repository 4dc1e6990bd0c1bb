/*
 * runtime — running a model: the memory plan (this header, for now), and later
 * the KV cache, recurrent-state slots, batches, the scheduler and sampling.
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
#include "model/model.h"

#include <stdbool.h>
#include <stdint.h>

/* KV cache element types: f32, f16, bf16, q8_0 and q4_0 (halo_type ids). */
bool halo_kv_type_supported(int type);
/* "q8_0", "F16", ... -> halo_type; -1 if not a supported cache type. */
int halo_kv_type_from_name(const char *name);
/* The supported names, for usage and error messages: "f32, f16, bf16, q8_0, q4_0". */
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

#endif /* HALO_RUNTIME_H */
