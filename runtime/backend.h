/*
 * runtime/backend.h — the operations a forward pass issues, and the backends
 * that run them (internal to the library).
 *
 * Model code (the files of model/) never touches activations, caches or weights itself:
 * it issues the operations below through ctx->be, passing buffers that belong
 * to the backend (ctx->buf, the arch scratch: host memory on the CPU, device
 * memory on a GPU). So one model file serves every backend:
 *   - runtime/backend_cpu.c: today's CPU kernels on the context's thread pool;
 *   - kernels/cuda/backend.c: the CUDA kernels of kernels/cuda/cuda_ops.h, on one
 *     stream, with no allocation and no host synchronisation inside a ubatch.
 *
 * The granularity is what each backend needs to be fast, not one op per
 * arithmetic step: attention (store + paged attention) and the routed experts
 * (router, top-k, grouping by expert, the expert products, the weighted sum, the
 * shared expert) are one op each, because the CPU groups tokens by expert on the
 * host while a GPU does it on the device; DeltaNet is two (conv + norms + gates,
 * then the delta rule + gated norm), around products issued by the model.
 * Optional members (NULL) are ops a backend lacks; the caller then composes the
 * same result from required ones (matmul_multi -> matmul; deltanet_rule_out ->
 * deltanet_rule + matmul).
 *
 * Every op runs in the order issued (a CPU op has finished when it returns; a GPU
 * op is enqueued); `finish` makes the logits visible in ctx->logits, and reports
 * whether everything ran (a GPU kernel can fail where a CPU op cannot).
 */
#ifndef HALO_RUNTIME_BACKEND_H
#define HALO_RUNTIME_BACKEND_H

#include "model/arch.h"
#include "runtime/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The routed-expert weights of a layer (and its shared expert, when present). */
typedef struct halo_moe_weights {
    const halo_weight *router, *gate_exps, *up_exps, *down_exps;
    const halo_weight *shexp_gate_inp, *shexp_gate, *shexp_up, *shexp_down; /* NULL: none */
} halo_moe_weights;

typedef struct halo_backend_ops {
    const char *name; /* "CPU", "CUDA": the backend column of halo bench */

    /* ---- memory: buffers the ops work on ----------------------------------------- */
    void *(*alloc)(halo_backend *be, size_t bytes); /* zeroed; NULL on failure */
    void (*free)(halo_backend *be, void *p);
    void (*to_host)(halo_backend *be, void *dst, const void *src, size_t bytes); /* waits */
    void (*to_backend)(halo_backend *be, void *dst, const void *src, size_t bytes);
    void (*copy)(halo_backend *be, void *dst, const void *src, size_t bytes);
    void (*zero)(halo_backend *be, void *dst, size_t bytes);
    void (*release)(halo_backend *be); /* the backend's own state */
    /* optional: host memory the backend copies into fastest (pinned, for a GPU), for
     * the logits; NULL members: malloc / free */
    void *(*host_alloc)(halo_backend *be, size_t bytes);
    void (*host_free)(halo_backend *be, void *p);
    /* optional: bytes of the backend's memory still free (-1: unknown); NULL: no limit
     * beyond alloc failing */
    int64_t (*mem_free)(halo_backend *be);

    /* ---- a ubatch: begin (its tokens, positions, sequences and page tables reach
     *      the backend), the ops, finish (logits into ctx->logits) ------------------- */
    void (*begin)(halo_context *ctx, const halo_ubatch *ub);
    /* 0; -1: a kernel failed; 1: nothing of the ubatch ran (a GPU graph could not be
     * recorded), run it again (begin, the ops, finish) */
    int (*finish)(halo_context *ctx, const halo_ubatch *ub);

    /* ---- ops ----------------------------------------------------------------------- */
    /* x[t] = embedding row of ub->token[t] */
    void (*embed)(halo_context *ctx, const halo_ubatch *ub, float *x);
    /* y = W x for n rows of x; matrix `expert` of a 3-D weight */
    void (*matmul)(halo_context *ctx, const halo_weight *w, int64_t expert, const float *x,
                   int64_t n, float *y);
    /* optional: several one-token products at once; pairs (2i, 2i+1), i < n_glu, are
     * SwiGLU gate/up pairs (the gate's y becomes silu(gate) * up) */
    void (*matmul_multi)(halo_context *ctx, const halo_mm *mm, int n_mm, int n_glu);
    /* y[r] = x[r] / rms(x[r]) * w (w NULL: no scale), n_rows rows of n; y may be x */
    void (*rms_norm)(halo_context *ctx, const float *x, const halo_weight *w, float *y,
                     int64_t n_rows, int64_t n, float eps);
    /* RoPE in place: token t's n_heads heads of head_dim at x + t * n_heads * head_dim,
     * at position ub->pos[t], the model's mode, n_rot and frequencies */
    void (*rope)(halo_context *ctx, const halo_ubatch *ub, float *x, int n_heads, int head_dim);
    void (*add)(halo_context *ctx, float *x, const float *y, int64_t n);          /* x += y */
    /* optional: x += y, then xn = rms_norm(x) * w (n_rows rows of n; as add, then rms_norm) */
    void (*add_rms_norm)(halo_context *ctx, float *x, const float *y, const halo_weight *w,
                         float *xn, int64_t n_rows, int64_t n, float eps);
    void (*swiglu)(halo_context *ctx, float *g, const float *u, int64_t n);       /* g = silu(g) u */
    void (*sigmoid_gate)(halo_context *ctx, float *x, const float *g, int64_t n); /* x *= sig(g) */
    /* dst[r * dst_stride + i] = src[r * src_stride + i], i < width, r < rows */
    void (*copy2d)(halo_context *ctx, float *dst, int64_t dst_stride, const float *src,
                   int64_t src_stride, int64_t rows, int64_t width);
    /* rows in sequence order: gather dst[i] = src[ub->perm[i]], scatter dst[perm[i]] = src[i] */
    void (*gather)(halo_context *ctx, const halo_ubatch *ub, float *dst, const float *src,
                   int64_t width);
    void (*scatter)(halo_context *ctx, const halo_ubatch *ub, float *dst, const float *src,
                    int64_t width);
    /* in place: each run of `block` values of n_rows rows of n becomes its Walsh-Hadamard
     * rotation (halo_hadamard) */
    void (*hadamard)(halo_context *ctx, float *x, int64_t n_rows, int64_t n, int block);
    /* store k, v of layer il at each token's position, then out = attention of q over
     * each token's sequence up to its position (q normed and rotated) */
    void (*attend)(halo_context *ctx, uint32_t il, const halo_ubatch *ub, const float *q,
                   const float *k, const float *v, float *out);
    /* out = the routed experts (+ the gated shared expert) of xn, n tokens */
    void (*moe)(halo_context *ctx, const halo_moe_weights *w, const float *xn, int64_t n,
                float *out);
    /* DeltaNet, tokens in sequence order (segments of ub): conv + SiLU of qkv into conv
     * with each sequence's conv state, L2 norms of the q and k heads, and the gates
     * g, beta [n][hv] from alpha, b [n][hv] */
    void (*deltanet_conv)(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                          const float *qkv, const float *alpha, const float *b, float *conv,
                          float *g, float *beta);
    /* the delta rule with each sequence's SSM state, then the gated RMS norm with z:
     * o [n][hv * dv] */
    void (*deltanet_rule)(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                          const float *conv, const float *g, const float *beta, const float *z,
                          float *o);
    /* optional, one token: deltanet_rule, then out = ssm_out o */
    void (*deltanet_rule_out)(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                              const float *conv, const float *g, const float *beta,
                              const float *z, float *o, float *out);
    /* the final norm and output head of the tokens that asked for logits (x: all n) */
    void (*output)(halo_context *ctx, const halo_ubatch *ub, const float *x);
} halo_backend_ops;

/* The CPU backend (runtime/backend_cpu.c): buffers in host memory, ops on ctx->pool. */
extern const halo_backend_ops halo_backend_cpu_ops;
int halo_backend_cpu_init(halo_context *ctx, halo_backend *be, halo_error *err);
/* Set (fn NULL: clear) the context's product observer (runtime/runtime.h). Only the CPU
 * backend calls it: once per product (matmul, each product of matmul_multi, each
 * expert's product in moe, ssm_out in deltanet_rule_out), on the calling thread. */
void halo_context_set_mm_observer(halo_context *ctx, halo_mm_observer fn, void *user);

/* One-token products on host weights (w->data) with the pool's threads, as the CPU
 * backend's matmul_multi (pairs (2i, 2i+1), i < n_glu, SwiGLU'd into the gate's y):
 * for other backends that compute some weights on the CPU (experts kept in host
 * memory). */
void halo_cpu_products(halo_threadpool *pool, const halo_mm *mm, int n_mm, int n_glu);

/* Routed experts kept in host memory (--n-cpu-moe, -ot), computed on the CPU for a GPU
 * backend (CUDA, Vulkan) between its router and its weighted sum: the buffers, which the
 * backend allocates (pinned memory for CUDA), for ubatches of up to n_ubatch tokens. */
#define HALO_CPU_EXPERTS_FEW 64 /* assignments up to which one job runs all products */
typedef struct halo_cpu_experts {
    const float *xn;       /* [n_ubatch][n_embd]: the tokens' inputs */
    const int32_t *ids;    /* [n_ubatch * k]: their experts */
    float *y;              /* [n_ubatch * k][n_embd]: each assignment's output */
    float *ffa, *ffb;      /* [n_ubatch * k][n_ff_exp] */
    float *x, *tmp;        /* [n_ubatch][n_embd]: one expert's tokens, their outputs */
    int32_t *list, *count; /* [n_expert][n_ubatch], [n_expert] */
    halo_mm *mm;           /* [2 * HALO_CPU_EXPERTS_FEW] */
} halo_cpu_experts;
/* y of n tokens' k assignments from xn and ids with the pool's threads: up to
 * HALO_CPU_EXPERTS_FEW assignments one job of every gate/up product (SwiGLU'd), then one of
 * every down product (halo_cpu_products); more, expert by expert, its tokens together, so
 * its weights are read once (halo_matmul). An id outside [0, n_expert): a zero row. */
void halo_cpu_experts_run(halo_threadpool *pool, const halo_moe_weights *W, int n_expert, int k,
                          int64_t n_embd, int64_t n, const halo_cpu_experts *b);

#ifdef HALO_HAVE_CUDA
/* The CUDA backend (kernels/cuda/backend.c) for a context whose model's weights
 * are on the GPU (halo_cuda_model_upload). */
int halo_backend_cuda_init(halo_context *ctx, halo_backend *be, halo_error *err);
/* Copy the model's weights to the GPU once (progress through halo_log). */
int halo_cuda_model_upload(halo_model *model, int device, halo_error *err);
void halo_cuda_model_release(halo_model *model);
#endif

#ifdef HALO_HAVE_VULKAN
/* The Vulkan backend (kernels/vulkan/backend.c): its table has every required op (it writes
 * F32/F16/BF16 KV caches only); a context runs on it when its model's weights are on a
 * Vulkan device (halo_model_load with -dev Vulkan<i>; docs/DESIGN.md says what remains). */
typedef struct halo_vk halo_vk;
extern const halo_backend_ops halo_backend_vulkan_ops;
/* The backend of a context whose model's weights are on vk (halo_vk_model_upload). */
int halo_backend_vulkan_init(halo_context *ctx, halo_backend *be, halo_error *err);
/* Put the model's weights on vk (which the model then owns: released with it); each
 * weight's `dev` points at its bytes there. On a UMA device with
 * VK_EXT_external_memory_host the host memory holding them (the file's mapping, or the
 * --no-mmap buffer) is imported and used in place; elsewhere, with HALO_VK_IMPORT=0, or
 * where the import fails (logged, with the reason) they are copied into allocations of at
 * most the device's limit. */
int halo_vk_model_upload(halo_model *model, halo_vk *vk, halo_error *err);
void halo_vk_model_release(halo_model *model);
/* The device the model's weights are on (NULL if none): halo_vk_memory_use tells how many
 * bytes it allocated and imported. */
halo_vk *halo_vk_model_device(const halo_model *model);
#endif

#endif /* HALO_RUNTIME_BACKEND_H */
