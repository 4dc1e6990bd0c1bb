/*
 * kernels/vulkan — the Vulkan kernels of a forward pass, for GPUs of any vendor and
 * APUs: compute shaders in GLSL (kernels/vulkan/shaders/, a .comp each) compiled to SPIR-V
 * by glslc at build time and embedded in the library. Built when the Vulkan loader,
 * its headers and glslc are found (CMake: HALO_VULKAN); HALO_HAVE_VULKAN is then
 * defined. The backend table (kernels/vulkan/backend.c) has every required op; -ngl with
 * -dev Vulkan<i> selects it (docs/DESIGN.md, "The Vulkan backend", says what exists and
 * what remains).
 *
 * The ideas it rests on:
 * - One halo_vk per device: an instance, one logical device with one compute queue,
 *   one command buffer that records work until halo_vk_sync submits it and waits (as
 *   a CUDA stream: launchers enqueue and return; sync makes results visible).
 * - Memory is addressed by pointers, as on the CPU and in CUDA: halo_vk_alloc
 *   returns an address of its own range (not host memory: never dereference it),
 *   and pointer arithmetic inside an allocation works. Each launch binds the whole
 *   buffers its pointers fall in and passes their byte offsets to the shader, so
 *   model code can pass x + t * n_embd as it does to the other backends.
 * - On a UMA device (an APU, a CPU driver) buffers are device-local memory the host
 *   can map, written directly; on a discrete GPU, through a staging buffer.
 * - Pipelines (a shader with its specialization constants, e.g. the weight type
 *   of a product) are created at first use and cached.
 * - A halo_vk is used by one thread at a time (as a context is).
 *
 * Conventions, as kernels/cuda/cuda_ops.h:
 * - Every pointer is device memory (from halo_vk_alloc) unless it says "host".
 * - Activations are f32 rows; weights are in their GGUF block format (halo_type),
 *   row r of a matrix at (const char *)w + r * row_stride; float pointers are
 *   4-byte aligned, weight rows 2-byte aligned (4 for F32 and Q8_K, 1 for MXFP4).
 * - Launchers record work and return at once; a launch with a zero size does
 *   nothing. They return HALO_OK, or an error status with the message kept in
 *   halo_vk_error (the first error wins): HALO_ERR_UNSUPPORTED or HALO_ERR_ARG for a
 *   type, shape or pointer not supported (checked before anything is recorded), an
 *   I/O error for a Vulkan failure.
 * - Limits: an allocation holds at most 4 GiB - 1 bytes (shaders address bytes with
 *   32 bits) and no more than the device's storage-buffer range.
 */
#ifndef HALO_VK_OPS_H
#define HALO_VK_OPS_H

#include "halo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct halo_vk halo_vk;

/* ---- devices (kernels/vulkan/device.c) -------------------------------------------------- */

typedef struct halo_vk_device_info {
    char name[256];            /* "llvmpipe (LLVM 15.0.6, 256 bits)", "AMD Radeon 780M" ... */
    const char *type;          /* "discrete", "integrated", "virtual", "cpu", "other" */
    uint32_t api_version;      /* VK_MAKE_API_VERSION of the driver */
    uint64_t memory_bytes;     /* the largest device-local heap */
    uint64_t max_buffer_bytes; /* the largest allocation halo_vk_alloc makes (set by open) */
    uint32_t subgroup_size;    /* threads of a subgroup (wave, warp) */
    bool uma;                  /* device-local memory is host-visible: no copies needed */
    bool cooperative_matrix;   /* VK_KHR_cooperative_matrix (not used yet) */
    bool float64;              /* shaderFloat64: the quantized KV caches' store needs it */
    /* VK_EXT_external_memory_host: host memory (the model file's mapping) can be imported
     * as device memory, at addresses and sizes multiples of import_align */
    bool host_import;
    uint64_t import_align;
    bool usable;               /* has what halo needs; else why_not says what is missing */
    char why_not[160];
} halo_vk_device_info;

/* The Vulkan devices, into info[0 .. min(count, max)) (info may be NULL with max 0);
 * returns their count: 0 with err saying why where there is no driver or device. */
int halo_vk_devices(halo_vk_device_info *info, int max, halo_error *err);

typedef struct halo_vk_options {
    /* enable the Khronos validation layer where it is installed (tests); its errors
     * are logged and counted (halo_vk_validation_errors) */
    bool validation;
    /* copy through the staging buffer even on a UMA device (tests: that path) */
    bool force_staging;
    /* a lower largest allocation than the device's (0: the device's; tests: the weights
     * cut into more imported ranges or copied chunks) */
    uint64_t max_alloc_bytes;
    /* tests: halo_vk_import refuses every import after the first N (0: none refused), as
     * a driver that refuses the memory would (the fallback after partial imports) */
    int refuse_imports_after;
} halo_vk_options;

/* Open device `device` (an index of halo_vk_devices); opt may be NULL (defaults). NULL
 * with err set when it does not exist, is not usable or fails to start. */
halo_vk *halo_vk_open(int device, const halo_vk_options *opt, halo_error *err);
void halo_vk_close(halo_vk *vk);
const halo_vk_device_info *halo_vk_info(const halo_vk *vk);
/* The first error of a launcher, allocation or sync (status 0: none). */
const halo_error *halo_vk_error(const halo_vk *vk);
/* Messages of severity "error" from the validation layer so far (0 without it). */
int halo_vk_validation_errors(const halo_vk *vk);
/* Whether the validation layer was found and enabled. */
bool halo_vk_validation_enabled(const halo_vk *vk);

/* ---- memory ----------------------------------------------------------------------------- */

/* Zeroed device memory of `bytes` (> 0); NULL on failure (the reason in halo_vk_error). */
void *halo_vk_alloc(halo_vk *vk, size_t bytes);
void halo_vk_free(halo_vk *vk, void *p); /* p from halo_vk_alloc, or NULL; waits for the work */
/* Host memory used by the device in place (VK_EXT_external_memory_host, on a device with
 * info.host_import): the range of whole import_align blocks enclosing
 * [host, host + bytes) becomes one allocation, and the address of `host` in it is
 * returned (offsets inside work as for halo_vk_alloc's). The memory stays the host's:
 * the caller keeps it mapped until halo_vk_free (of the returned address) or
 * halo_vk_close, and the device only reads it (uploads, copies and zeroing into it are
 * refused). Returns NULL with the reason in why[why_size] where the device or driver
 * refuses (no extension, a range over the device's allocation limit, a driver that
 * cannot import such memory, e.g. a file mapping on some kernels): a fallback, not an
 * error, so halo_vk_error is left as it was. */
void *halo_vk_import(halo_vk *vk, const void *host, size_t bytes, char *why, size_t why_size);
/* Host-visible memory of `bytes` (the staging memory type: on a discrete GPU, system
 * memory the device reads over the bus), zeroed, for inputs the host rewrites before each
 * step and a recorded halo_vk_copy moves into device memory; its mapping:
 * halo_vk_host_pointer. Freed with halo_vk_free. */
void *halo_vk_alloc_host(halo_vk *vk, size_t bytes);
/* Where the host writes the memory at p directly: the mapping of a halo_vk_alloc_host
 * allocation, or of device memory on a UMA device (not with force_staging); NULL where
 * it must be uploaded. The caller writes only while no recorded or running work uses it. */
void *halo_vk_host_pointer(halo_vk *vk, const void *p);
/* Bytes of device memory now held by halo_vk_alloc allocations, and of host memory
 * imported by halo_vk_import (each NULL to skip). */
void halo_vk_memory_use(const halo_vk *vk, uint64_t *allocated, uint64_t *imported);
/* Host <-> device copies: wait for the work recorded so far, then copy (synchronous). */
int halo_vk_upload(halo_vk *vk, void *dst, const void *src_host, size_t bytes);
int halo_vk_download(halo_vk *vk, void *dst_host, const void *src, size_t bytes);
/* Device copies, recorded in order with the launches (zero: offset and size multiples of 4). */
int halo_vk_copy(halo_vk *vk, void *dst, const void *src, size_t bytes);
int halo_vk_zero(halo_vk *vk, void *dst, size_t bytes);
/* Submit what was recorded and wait for it; the first failure is returned again by
 * every later call (a lost device stays lost). */
int halo_vk_sync(halo_vk *vk);
/* Submit what was recorded and return at once, so the host can work meanwhile (the CPU's
 * experts while the shared expert runs on the device). The next sync, copy, or launch
 * waits for it first (one command buffer: nothing is recorded while it runs). */
int halo_vk_submit(halo_vk *vk);

/* ---- kept recordings: a decode step recorded once per shape, then resubmitted ------------
 * As a CUDA graph: between halo_vk_record_begin and halo_vk_record_end the launches are
 * recorded into a command buffer that is kept instead of run; halo_vk_replay submits it
 * (as halo_vk_submit: the next sync waits), as often as wanted. What a replay reads is
 * what the launches were given: the buffers and offsets (so the caller passes the same
 * pointers and sizes each time, and the data that changes, such as positions and page
 * tables, is in device memory it rewrites before the replay) and the shapes.
 * A sync, upload, download, free or submit while recording runs what was recorded so far
 * (the work stays correct, in order) and the recording is not kept: record_end then gives
 * NULL. Freeing any allocation makes every recording stale (it may bind the buffer):
 * halo_vk_recording_valid tells, and the caller records again. */
typedef struct halo_vk_recording halo_vk_recording;
/* Wait for the work so far, then record the launches that follow (none open already). */
int halo_vk_record_begin(halo_vk *vk);
/* End it: *rec the recording (not run yet), or NULL where it was not kept (above) or a
 * launch failed (the status returned). */
int halo_vk_record_end(halo_vk *vk, halo_vk_recording **rec);
bool halo_vk_recording_valid(const halo_vk *vk, const halo_vk_recording *rec);
int halo_vk_recording_commands(const halo_vk_recording *rec); /* dispatches and copies */
/* Submit rec after the work recorded before it; returns at once (sync waits). */
int halo_vk_replay(halo_vk *vk, halo_vk_recording *rec);
void halo_vk_recording_free(halo_vk *vk, halo_vk_recording *rec); /* waits if it runs */
/* Recordings kept and replays submitted on this device so far (each NULL to skip). */
void halo_vk_recording_stats(const halo_vk *vk, uint64_t *kept, uint64_t *replays);
/* Commands (dispatches, copies, fills) and barriers between them recorded so far: a
 * barrier goes only where a command reads or writes what one since the last barrier wrote,
 * or writes what one read (HALO_VK_BARRIERS=all: after every command). */
void halo_vk_barrier_stats(const halo_vk *vk, uint64_t *commands, uint64_t *barriers);
/* HALO_VK_PROFILE=1 (read at open): every command timed by the GPU's timestamps, one at a
 * time, and a table per shader printed on stderr at close; the backend then records no
 * steps for replay. Whether it is on for vk. */
bool halo_vk_profiling(const halo_vk *vk);

/* ---- matrix products and embedding rows (kernels/vulkan/ops.c, shaders/mul_mv.glsl,
 * shaders/mul_mm.glsl) -------------------------------------------------------------------
 * Types: every halo_type with a CPU decoder (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS, MXFP4), decoded bit-exactly
 * as quant/ does (shaders/dequant.glsl); activations stay f32. n_cols a multiple of the
 * type's block size (any for F32/F16/BF16). */
bool halo_vk_matmul_supported(int type);

/* y[t * n_rows + r] = sum_c W[r][c] * x[t * n_cols + c] for t < n_tokens. Under 16 tokens
 * (HALO_VK_MM=n: n; =0: always) the matrix-vector kernel, one workgroup a row, up to 8
 * tokens a pass over the weights; from 16 the tiled kernel, tiles of 64 rows x 64 tokens
 * that decode each weight once a tile into shared memory. */
int halo_vk_matmul(halo_vk *vk, int type, const void *w, size_t row_stride, int64_t n_rows,
                   int64_t n_cols, const float *x, int64_t n_tokens, float *y);
/* SwiGLU pairs of few tokens (a dense FFN's or a shared expert's gate and up, decode):
 * y[t * n_rows + r] = silu(W_gate[r] . x[t]) * (W_up[r] . x[t]), one launch, bit for bit
 * halo_vk_matmul of each then halo_vk_swiglu. The two matrices (same type and shape) must
 * lie in one allocation (a model's weights: one imported range or copied chunk mostly),
 * n_tokens <= 8: halo_vk_matmul_glu_fits says whether they do. */
bool halo_vk_matmul_glu_fits(halo_vk *vk, int type, const void *w_gate, const void *w_up,
                             size_t row_stride, int64_t n_rows, int64_t n_tokens);
int halo_vk_matmul_glu(halo_vk *vk, int type, const void *w_gate, const void *w_up,
                       size_t row_stride, int64_t n_rows, int64_t n_cols, const float *x,
                       int64_t n_tokens, float *y);
/* The same by expert id (MoE decode: the experts' gate and up, ids on the device, as
 * halo_vk_matmul_id): y[a] = silu(W_gate[ids[a]] . x[a / x_div]) * (W_up[ids[a]] . x), one
 * launch, bit for bit the two products and halo_vk_swiglu on each assignment's row (rows
 * of ids < 0 untouched). Both tensors in one allocation, and few enough assignments that
 * halo_vk_matmul_id would not group them (halo_vk_matmul_id_glu_fits). */
bool halo_vk_matmul_id_glu_fits(halo_vk *vk, int type, const void *w_gate, const void *w_up,
                                size_t row_stride, size_t mat_stride, int64_t n_rows,
                                int32_t n_assign, int32_t n_mat);
int halo_vk_matmul_id_glu(halo_vk *vk, int type, const void *w_gate, const void *w_up,
                          size_t row_stride, size_t mat_stride, int64_t n_rows, int64_t n_cols,
                          const float *x, int32_t x_div, const int32_t *ids, int32_t n_assign,
                          float *y, int32_t n_mat);
/* Products by expert id (MoE): for assignment a < n_assign, with e = ids[a] (read on the
 * device; e < n_mat), matrix e at (const char *)w + e * mat_stride:
 *     y[a * n_rows + r] = sum_c W_e[r][c] * x[(a / x_div) * n_cols + c]
 * x_div = k (experts per token) when every assignment of token t reads row t, 1 when
 * assignment a reads its own row a. ids < 0 are skipped (y rows untouched). With 16
 * assignments or more and 4 or more an expert on average (and the tiled kernel on, as
 * above) the assignments are grouped by expert on the device (shaders/moe_group.comp,
 * into a scratch buffer of the halo_vk) and each expert's tiles of up to 64 go through the
 * tiled kernel; else one workgroup a row and assignment. */
int halo_vk_matmul_id(halo_vk *vk, int type, const void *w, size_t row_stride, size_t mat_stride,
                      int64_t n_rows, int64_t n_cols, const float *x, int32_t x_div,
                      const int32_t *ids, int32_t n_assign, float *y, int32_t n_mat);
/* Embedding: y[i * n_cols + c] = decoded W[rows[i]][c], i < n (rows on the device). */
int halo_vk_get_rows(halo_vk *vk, int type, const void *w, size_t row_stride, int64_t n_cols,
                     const int32_t *rows, int32_t n, float *y);

/* ---- small ops (kernels/vulkan/ops.c) ---------------------------------------------------
 * The semantics of kernels/cuda/cuda_ops.h's ops of the same names. */

/* y[t][i] = x[t][i] / sqrt(mean(x[t]^2) + eps) * (w ? w[i] : 1); y may equal x. */
int halo_vk_rms_norm(halo_vk *vk, const float *x, const float *w, float *y, int64_t n_rows,
                     int64_t n, float eps);
/* x[t][i] += y[t][i], then xn[t] = rms_norm(x[t]) * w; xn must not overlap x or y. */
int halo_vk_add_rms_norm(halo_vk *vk, float *x, const float *y, const float *w, float *xn,
                         int64_t n_rows, int64_t n, float eps);
/* RoPE in place on n_tok tokens, token t's n_heads rows of head_dim at
 * x + t * n_heads * head_dim, angle pos[t] * inv_freq[i] (in f32, as halo_rope); mode
 * 0 adjacent pairs (NORM), 2 halves (NEOX); the dims past n_rot untouched. */
int halo_vk_rope(halo_vk *vk, float *x, int32_t n_tok, int n_heads, int head_dim, int n_rot,
                 int mode, const int32_t *pos, const float *inv_freq);
int halo_vk_add(halo_vk *vk, float *x, const float *y, int64_t n);          /* x += y */
int halo_vk_swiglu(halo_vk *vk, float *g, const float *u, int64_t n);       /* g = silu(g) u */
int halo_vk_sigmoid_gate(halo_vk *vk, float *x, const float *g, int64_t n); /* x *= sig(g) */
/* dst[r * dst_stride + i] = src[r * src_stride + i], i < width, r < rows (floats). */
int halo_vk_copy2d(halo_vk *vk, float *dst, int64_t dst_stride, const float *src,
                   int64_t src_stride, int64_t rows, int64_t width);
/* In place: each run of `block` values (a power of two <= 1024) of n_rows rows of n becomes
 * its Walsh-Hadamard rotation, bit for bit as halo_hadamard (shaders/hadamard.comp). */
int halo_vk_hadamard(halo_vk *vk, float *x, int64_t n_rows, int64_t n, int block);
/* Rows by index: gather dst[i] = src[idx[i]]; scatter dst[idx[i]] = src[i]; i < n. */
int halo_vk_gather_rows(halo_vk *vk, float *dst, const float *src, const int32_t *idx, int32_t n,
                        int64_t width);
int halo_vk_scatter_rows(halo_vk *vk, float *dst, const float *src, const int32_t *idx, int32_t n,
                         int64_t width);

/* ---- MoE (kernels/vulkan/ops.c, shaders/topk.comp, moe_combine.comp) -------------------- */

/* Routing of n tokens, as halo_topk_route per token: logits [n][n_expert] -> ids [n][k]
 * (decreasing probability, ties to the lower index) and weights [n][k]; n_expert <= 512,
 * k <= min(16, n_expert). */
int halo_vk_topk_route(halo_vk *vk, const float *logits, int32_t n, int n_expert, int k,
                       bool normalize, int32_t *ids, float *weights);
/* out[t][d] = sum_j w[t * k + j] * y[(t * k + j) * n_embd + d], t < n; then, when sh is not
 * NULL, out[t][d] += sigmoid(shg[t]) * sh[t * n_embd + d]. */
int halo_vk_moe_combine(halo_vk *vk, const float *y, const float *w, int32_t n, int k,
                        int64_t n_embd, const float *sh, const float *shg, float *out);

/* ---- attention over a paged KV cache (kernels/vulkan/ops.c, shaders/attn.comp) ----------
 * The cache of one layer, as kernels/cuda/cuda_ops.h's halo_cuda_kv: position p of
 * sequence s is row p % page_size of page page_table[s * table_stride + p / page_size];
 * a row holds all n_kv heads, head h at byte h * head_bytes of the row; a page holds
 * page_size rows (page_bytes apart). Types: F32, F16, BF16, Q8_0, Q4_0, IQ4_NL, for K and
 * V independently. */
typedef struct halo_vk_kv {
    int type_k, type_v;
    const void *k, *v; /* the layer's page-major storage */
    size_t k_page_bytes, v_page_bytes;
    size_t k_head_bytes, v_head_bytes;
    int32_t page_size;
    const int32_t *page_table;
    int32_t table_stride; /* entries per sequence */
} halo_vk_kv;

/* Store token t's k (n_kv * head_dim_k floats at k + t * k_stride) and v rows into the
 * cache at (seq[t], pos[t]), converted to the cache types with the CPU's rounding (the
 * bytes are the CPU's: halo_quant_encode_kv for Q8_0, Q4_0, IQ4_NL, whose store needs
 * shaderFloat64, else HALO_ERR_UNSUPPORTED). seq, pos on the device. */
int halo_vk_kv_store(halo_vk *vk, const halo_vk_kv *kv, int32_t n_tok, const int32_t *seq,
                     const int32_t *pos, int n_kv, int head_dim_k, int head_dim_v, const float *k,
                     int64_t k_stride, const float *v, int64_t v_stride);

/* out[t][h * head_dim_v ...] = softmax(scale * q_h . K[0..pos[t]]) V for token t's query
 * heads h < n_head (q at q + t * n_head * head_dim_k), query head h reading KV head
 * h / (n_head / n_kv), over the positions 0..pos[t] of sequence seq[t] (seq, pos on the
 * device). Online softmax in f32. Head dims up to 256 (multiples of 32 for the block types).
 * max_pos: a bound on the positions the host knows (-1: none); few (head, token) rows
 * with long contexts split each row's positions over several workgroups, merged after
 * (flash decoding). The result is right whatever the bound; it picks the split. */
int halo_vk_attn(halo_vk *vk, const halo_vk_kv *kv, int32_t n_tok, const int32_t *seq,
                 const int32_t *pos, int32_t max_pos, int n_head, int n_kv, int head_dim_k,
                 int head_dim_v, float scale, const float *q, float *out);

/* ---- Gated DeltaNet (kernels/vulkan/deltanet.c, shaders/deltanet_*.comp) ----------------
 * The two phases of a DeltaNet layer as model/qwen35.c chains kernels/cpu/deltanet.c, for
 * the tokens of a ubatch grouped by sequence. The segments are one device array `seg`
 * [2 n_seg + 1]: offsets seg[0 .. n_seg] (segment j is tokens seg[j] .. seg[j+1] - 1, in
 * sequence order; empty segments allowed) then the sequences seg[n_seg + 1 + j] (each at
 * most once). Sequence s's conv state is at conv_state + s * conv_stride ([kernel - 1]
 * rows of n_ch, the oldest first), its SSM state at ssm_state + s * ssm_stride
 * ([n_v_heads][dk][dv]); both are read and updated. Head dims up to 1024, conv kernel
 * widths up to 16 (HALO_DELTANET_MAX_DIM, _MAX_CONV). */
typedef struct halo_vk_deltanet {
    int n_k_heads, n_v_heads; /* value head h reads key head h % n_k_heads (tiled) */
    int dk, dv;               /* channels of a row: 2 n_k_heads dk (q, k) + n_v_heads dv (v) */
    int kernel;               /* conv width */
} halo_vk_deltanet;

/* Phase 1: y = the causal conv of qkv [n_tok][ch] with w [ch][kernel] and each
 * sequence's conv state (updated to its last kernel - 1 inputs), SiLU, then the L2 norm
 * of each q head (scaled by 1/sqrt(dk)) and k head (eps 1e-6); and the gates per token
 * and value head: g = a[h] * softplus(alpha + dt_bias[h]), beta = sigmoid(b)
 * (alpha, b, g, beta [n_tok][n_v_heads]; a = ssm_a, dt_bias [n_v_heads]). */
int halo_vk_deltanet_conv(halo_vk *vk, const halo_vk_deltanet *d, int32_t n_tok,
                          const int32_t *seg, int32_t n_seg, const float *qkv, const float *w,
                          float *conv_state, int64_t conv_stride, const float *alpha,
                          const float *b, const float *a, const float *dt_bias, float *y,
                          float *g, float *beta);
/* Phase 2: the delta rule over each segment's tokens in order with its sequence's SSM
 * state, from conv (phase 1's y), g and beta; then o = rms_norm(o) * norm_w * silu(z)
 * per token and value head (eps; z, o [n_tok][n_v_heads * dv], norm_w [dv]). One
 * workgroup a (value head, segment): token by token with the head's state in registers
 * for short segments, in chunks for longer ones (kernels/vulkan/deltanet.c). max_seg
 * bounds the longest segment's tokens (the host's plan knows it; n_tok where unknown):
 * below the chunked form's length that form is not dispatched (batched decode). */
int halo_vk_deltanet_rule(halo_vk *vk, const halo_vk_deltanet *d, int32_t n_tok,
                          const int32_t *seg, int32_t n_seg, int32_t max_seg,
                          const float *conv, const float *g,
                          const float *beta, const float *z, const float *norm_w, float eps,
                          float *ssm_state, int64_t ssm_stride, float *o);

#endif /* HALO_VK_OPS_H */
