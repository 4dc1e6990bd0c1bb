/*
 * kernels/cuda — the CUDA kernels of a forward pass, as host functions callable
 * from C (the .cu files define them extern "C"). Built when the CUDA toolkit is
 * found (CMake: HALO_CUDA); the CUDA backend (kernels/cuda/backend.c) calls them.
 *
 * Conventions, the same as kernels/kernels.h on the CPU:
 * - Every pointer is device memory unless it says "host".
 * - `stream` is a cudaStream_t passed as void * (so C callers need no CUDA header).
 * - Activations are f32 rows; weights are in their GGUF block format (halo_type),
 *   row r of a matrix at (const char *)w + r * row_stride.
 * - Launchers enqueue work and return at once: no allocation, no host
 *   synchronisation (so that a decode step can be captured in a CUDA graph).
 *   Every launcher takes its sizes from arguments (never from device memory),
 *   except where it says so; a launch with a zero size does nothing.
 * - Launchers return 0, or -1 when the type or shape is not supported (checked
 *   on the host before anything is enqueued).
 */
#ifndef HALO_CUDA_OPS_H
#define HALO_CUDA_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- device, memory, streams (kernels/cuda/device.cu) ---------------------------- */

/* GPUs visible (0 with no driver or no device; never fails). */
int halo_cuda_device_count(void);
/* "NVIDIA H200" and its memory, into name (size n); -1 if no such device. */
int halo_cuda_device_info(int dev, char *name, size_t n, size_t *total_bytes, size_t *free_bytes);
/* Free bytes of device dev's memory (and makes dev current); -1 on failure. */
int64_t halo_cuda_mem_free(int dev);
/* Make dev current for the calling thread. */
int halo_cuda_set_device(int dev);
/* cudaMalloc / cudaFree; NULL on failure. Memory is zeroed. */
void *halo_cuda_malloc(size_t bytes);
void halo_cuda_free(void *p);
/* Pinned host memory (cudaMallocHost), NULL on failure. */
void *halo_cuda_host_alloc(size_t bytes);
void halo_cuda_host_free(void *p);
void *halo_cuda_stream_new(void);
void halo_cuda_stream_free(void *stream);
int halo_cuda_stream_sync(void *stream);
/* cuBLAS loaded at run time (kernels/cuda/blas.c) for f32 weights times many tokens:
 * NULL where the library is absent or HALO_CUDA_BLAS=0. Products run on `stream` with
 * `workspace` (device memory, ws_bytes) as cuBLAS's scratch, in f32 (no TF32). */
typedef struct halo_cuda_blas halo_cuda_blas;
halo_cuda_blas *halo_cuda_blas_new(void *stream, void *workspace, size_t ws_bytes);
void halo_cuda_blas_free(halo_cuda_blas *b);
/* y[t * n_rows + r] = sum_c w[r][c] x[t * n_cols + c] (as halo_cuda_matmul for f32); 0 or -1 */
int halo_cuda_blas_matmul_f32(halo_cuda_blas *b, const float *w, size_t row_stride, int64_t n_rows,
                              int64_t n_cols, const float *x, int64_t n_tokens, float *y);
/* Events: record marks the point of the stream's work so far; sync waits (host) until
 * the stream has reached it, not for what was enqueued after. */
void *halo_cuda_event_new(void);
void halo_cuda_event_free(void *event);
int halo_cuda_event_record(void *event, void *stream);
int halo_cuda_event_sync(void *event);
/* Asynchronous copies on the stream (kind inferred: cudaMemcpyDefault). */
int halo_cuda_memcpy(void *stream, void *dst, const void *src, size_t bytes);
int halo_cuda_memset0(void *stream, void *dst, size_t bytes);
/* Last error text, for messages ("out of memory" ...). */
const char *halo_cuda_last_error(void);
/* CUDA graphs: record what is enqueued on a stream from capture_begin to
 * capture_end (nothing runs meanwhile) into an executable graph, replayed by
 * graph_launch with the same kernels, arguments and addresses. */
int halo_cuda_capture_begin(void *stream);
int halo_cuda_capture_end(void *stream, void **graph_exec);
int halo_cuda_graph_launch(void *graph_exec, void *stream);
void halo_cuda_graph_free(void *graph_exec);

/* ---- matrix products (kernels/cuda/matmul.cu) -------------------------------------
 * Types: every halo_type with a CPU decoder (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS, MXFP4), decoded
 * bit-exactly as quant/ does; activations stay f32. */
bool halo_cuda_matmul_supported(int type);

/* Whether the launches that follow, from this thread, are a decode step's: then they
 * carry programmatic dependent launch (kernels/cuda/pdl.cuh; HALO_CUDA_PDL=0/1 overrides). */
void halo_cuda_pdl_set(int on);
int halo_cuda_pdl_get(void);

/* y[t * n_rows + r] = sum_c W[r][c] * x[t * n_cols + c] for t < n_tokens. */
int halo_cuda_matmul(void *stream, int type, const void *w, size_t row_stride, int64_t n_rows,
                     int64_t n_cols, const float *x, int64_t n_tokens, float *y);
/* The same with a workspace (device memory, 16-byte aligned, zeroed when allocated and
 * left so by every product; NULL: none): where the int8 prefill products would fill
 * few of the GPU's SMs (few rows and tokens, long rows), K is split into parts whose
 * partial sums go there and are added in a fixed order (the result does not depend
 * on timing). One workspace per stream: products on other streams need their own. */
int halo_cuda_matmul_ws(void *stream, int type, const void *w, size_t row_stride, int64_t n_rows,
                        int64_t n_cols, const float *x, int64_t n_tokens, float *y, void *ws,
                        size_t ws_bytes);

/* Whether halo_cuda_matmul of n_tokens tokens quantizes the activations (int8
 * tensor-core prefill products, kernels/cuda/xq.cuh: each block of 32 activations
 * x_c replaced by d_b q_c with |x_c - d_b q_c| <= d_b / 2, d_b = max|x| / 32639), so
 * that callers and tests know the error to expect. HALO_CUDA_MMQ=0 in the
 * environment (read once) turns those kernels off (f32 products everywhere). */
bool halo_cuda_matmul_xq(int type, int64_t n_tokens);
/* The same for halo_cuda_matmul_id with n_assign assignments. */
bool halo_cuda_matmul_id_xq(int type, int32_t n_assign);

/* Products by expert id (MoE): for assignment a < n_assign, with e = ids[a]
 * (read on the device), matrix e at (const char *)w + e * mat_stride:
 *     y[a * n_rows + r] = sum_c W_e[r][c] * x[(a / x_div) * n_cols + c]
 * x_div = k (experts per token) when every assignment of token t reads row t,
 * 1 when assignment a reads its own row a. ids < 0 are skipped (y rows untouched).
 * n_mat: the number of matrices (experts, >= 1); every id must be below it (the
 * int8 prefill products give each expert its own blocks, so the grid depends on it). */
int halo_cuda_matmul_id(void *stream, int type, const void *w, size_t row_stride,
                        size_t mat_stride, int64_t n_rows, int64_t n_cols, const float *x,
                        int32_t x_div, const int32_t *ids, int32_t n_assign, float *y,
                        int32_t n_mat);

/* Decode products (kernels/cuda/mmv.cu), up to HALO_CUDA_MV_MAX in one launch, each
 *     dense (ids NULL): y[a * n_rows + r] = sum_c W[r][c] * x[a * n_cols + c], a < n_x
 *     by id: as halo_cuda_matmul_id with n_x assignments (ids < 0 skipped)
 * and with w2 (a matrix of the same type and shape: the up half of a SwiGLU pair),
 * y = silu(W x) * (W2 x). Activations are quantized to int16 per 32 columns for the
 * integer formats (xq.cuh: error <= half a step of 1/32639 of the block's largest
 * |x| per column); float formats use them as they are. Types: Q4_K, Q5_K, Q6_K,
 * Q8_0, F32, F16, BF16 (halo_cuda_mv_supported says, for a product's type,
 * alignment and sizes; HALO_CUDA_MV=0 in the environment turns it off). */
#define HALO_CUDA_MV_MAX 8
typedef struct halo_cuda_mv {
    int type;
    const void *w, *w2;
    size_t row_stride, mat_stride;
    int64_t n_rows, n_cols;
    const float *x;
    int32_t n_x;   /* dense: activation rows (tokens); by id: assignments */
    int32_t x_div; /* by id: assignment a reads x row a / x_div; dense: 1 */
    const int32_t *ids;
    float *y;
    /* optional, dense products only (a MoE router): once every block of this product is
     * done, the last one routes each activation row's n_rows outputs to their top route_k
     * (<= 16 of <= 512) into route_ids / route_w [n_x][route_k], as halo_cuda_topk_route
     * (route_norm: renormalized); route_counter: a device int, 0 between launches (the
     * last block sets it back) */
    int32_t route_k;
    bool route_norm;
    int32_t *route_ids;
    float *route_w;
    int32_t *route_counter;
} halo_cuda_mv;
bool halo_cuda_mv_supported(const halo_cuda_mv *m);
int halo_cuda_mv_launch(void *stream, const halo_cuda_mv *m, int n);

/* Embedding: y[i * n_cols + c] = decoded W[rows[i]][c], i < n (rows on the device). */
int halo_cuda_get_rows(void *stream, int type, const void *w, size_t row_stride, int64_t n_cols,
                       const int32_t *rows, int32_t n, float *y);

/* ---- small ops (kernels/cuda/ops.cu) ------------------------------------------------ */

/* y[t][i] = x[t][i] / sqrt(mean(x[t]^2) + eps) * (w ? w[i] : 1); y may equal x. */
int halo_cuda_rms_norm(void *stream, const float *x, const float *w, float *y, int64_t n_rows,
                       int64_t n, float eps);
/* x[t][i] += y[t][i], then xn[t] = rms_norm(x[t]) * w as halo_cuda_rms_norm (up to the
 * order of the sum of squares); xn must not overlap x or y. */
int halo_cuda_add_rms_norm(void *stream, float *x, const float *y, const float *w, float *xn,
                           int64_t n_rows, int64_t n, float eps);
/* RoPE in place on n_tok tokens, token t's n_heads rows of head_dim at
 * x + t * n_heads * head_dim, angle pos[t] * inv_freq[i] (pos, inv_freq on the
 * device); mode 0 adjacent pairs (NORM), 2 halves (NEOX), as halo_rope. */
int halo_cuda_rope(void *stream, float *x, int32_t n_tok, int n_heads, int head_dim, int n_rot,
                   int mode, const int32_t *pos, const float *inv_freq);
/* In place: each run of `block` values (a power of two, 64 .. 1024, dividing n) of n_rows
 * rows of n becomes its Walsh-Hadamard rotation, bit for bit as halo_hadamard. */
int halo_cuda_hadamard(void *stream, float *x, int64_t n_rows, int64_t n, int block);
/* x[i] += y[i] */
int halo_cuda_add(void *stream, float *x, const float *y, int64_t n);
/* g[i] = silu(g[i]) * u[i] */
int halo_cuda_swiglu(void *stream, float *g, const float *u, int64_t n);
/* x[i] *= sigmoid(g[i]) */
int halo_cuda_sigmoid_gate(void *stream, float *x, const float *g, int64_t n);
/* dst[r * dst_stride + i] = src[r * src_stride + i], i < width, r < rows (floats). */
int halo_cuda_copy2d(void *stream, float *dst, int64_t dst_stride, const float *src,
                     int64_t src_stride, int64_t rows, int64_t width);
/* Rows by index: gather dst[i] = src[idx[i]]; scatter dst[idx[i]] = src[i]; i < n. */
int halo_cuda_gather_rows(void *stream, float *dst, const float *src, const int32_t *idx,
                          int32_t n, int64_t width);
int halo_cuda_scatter_rows(void *stream, float *dst, const float *src, const int32_t *idx,
                           int32_t n, int64_t width);
/* MoE routing of n tokens, as halo_topk_route per token: logits [n][n_expert] ->
 * ids [n][k] (decreasing probability, ties to the lower index) and weights [n][k]. */
int halo_cuda_topk_route(void *stream, const float *logits, int32_t n, int n_expert, int k,
                         bool normalize, int32_t *ids, float *weights);
/* out[t][d] = sum_j w[t * k + j] * y[(t * k + j) * n_embd + d], t < n; then, when sh is not
 * NULL, out[t][d] += sigmoid(shg[t]) * sh[t * n_embd + d]. */
int halo_cuda_moe_combine(void *stream, const float *y, const float *w, int32_t n, int k,
                          int64_t n_embd, const float *sh, const float *shg, float *out);

/* ---- attention over a paged KV cache (kernels/cuda/attn.cu) -----------------------------
 * The cache of one layer: position p of sequence s is row p % page_size of page
 * page_table[s * table_stride + p / page_size]; a row holds all n_kv heads, head h at
 * byte h * head_bytes of the row; a page holds page_size rows (page_bytes apart).
 * Types: F32, F16, BF16, Q8_0, Q4_0, IQ4_NL (halo_type), for K and V independently. */
typedef struct halo_cuda_kv {
    int type_k, type_v;
    char *k, *v;                 /* the layer's page-major storage */
    size_t k_page_bytes, v_page_bytes;
    size_t k_head_bytes, v_head_bytes; /* one head's row: row bytes = n_kv * head bytes */
    int32_t page_size;
    const int32_t *page_table;   /* device */
    int32_t table_stride;        /* entries per sequence */
} halo_cuda_kv;

/* Store token t's k (n_kv * head_dim_k floats at k + t * k_stride) and v rows into
 * the cache at (seq[t], pos[t]), converted to the cache types (round to nearest, as
 * quant/'s encoders). seq, pos on the device. */
int halo_cuda_kv_store(void *stream, const halo_cuda_kv *kv, int32_t n_tok, const int32_t *seq,
                       const int32_t *pos, int n_kv, int head_dim_k, int head_dim_v,
                       const float *k, int64_t k_stride, const float *v, int64_t v_stride);

/* out[t][h * head_dim_v ...] = softmax(scale * q_h . K[0..pos[t]]) V for token t's query
 * heads h < n_head (q at q + t * n_head * head_dim_k), query head h reading KV head
 * h / (n_head / n_kv), over the positions 0..pos[t] of sequence seq[t]. Flash-style
 * online softmax in f32; long contexts split over the positions (split-K) into the
 * work buffer, merged after. seq, pos on the device; max_pos (host) bounds pos[t]
 * for the launch shape. halo_cuda_attn_work_bytes(n_tok, ...) is the work any launch
 * of up to n_tok tokens and positions up to max_pos needs (fewer tokens split more,
 * so it is the largest over those sizes). Head dims: k = v = 64, 128 or 256. */
size_t halo_cuda_attn_work_bytes(int32_t n_tok, int n_head, int head_dim_v, int32_t max_pos);
int halo_cuda_attn(void *stream, const halo_cuda_kv *kv, int32_t n_tok, const int32_t *seq,
                   const int32_t *pos, int32_t max_pos, int n_head, int n_kv, int head_dim_k,
                   int head_dim_v, float scale, const float *q, float *out, void *work);

/* ---- Gated DeltaNet (kernels/cuda/deltanet.cu) ----------------------------------------
 * A ubatch's tokens grouped by sequence: segment j is tokens seg_off[j] ..
 * seg_off[j+1]-1 (in order) of sequence seg_seq[j] (device arrays, n_seg segments).
 * Recurrent state of sequence s: conv at conv_state + s * conv_stride floats
 * ([kernel-1][n_ch], oldest first), SSM at ssm_state + s * ssm_stride floats
 * ([n_v_heads][dk][dv]). Semantics as kernels/kernels.h (halo_deltanet_*). */

/* Causal depthwise conv + SiLU of x [n_tok][n_ch] into y (same layout), w [n_ch][kernel],
 * each segment with its sequence's conv state (read, then replaced by its last
 * kernel-1 inputs); then per token the L2 norms of the first 2 * n_k_heads heads of
 * dk values of y (q heads scaled by q_scale, k heads by 1), eps 1e-6. */
int halo_cuda_deltanet_conv(void *stream, const float *x, int32_t n_tok, int64_t n_ch,
                            int kernel, const float *w, float *conv_state, int64_t conv_stride,
                            const int32_t *seg_off, const int32_t *seg_seq, int32_t n_seg,
                            int n_k_heads, int dk, float q_scale, float *y);
/* The same, and the gates below, in one launch, for ubatches whose segments hold one
 * token each (decode steps: the caller knows its segments). */
int halo_cuda_deltanet_conv_step(void *stream, const float *x, int32_t n_tok, int64_t n_ch,
                                 int kernel, const float *w, float *conv_state,
                                 int64_t conv_stride, const int32_t *seg_off,
                                 const int32_t *seg_seq, int32_t n_seg, int n_k_heads, int dk,
                                 float q_scale, float *y, const float *alpha, const float *b,
                                 const float *a, const float *dt_bias, int n_v_heads, float *g,
                                 float *beta);
/* g[t][h] = a[h] * softplus(alpha[t][h] + dt_bias[h]); beta[t][h] = sigmoid(b[t][h]);
 * alpha, b, g, beta: [n_tok][n_v_heads]. */
int halo_cuda_deltanet_gates(void *stream, const float *alpha, const float *b, const float *a,
                             const float *dt_bias, int32_t n_tok, int n_v_heads, float *g,
                             float *beta);
/* The delta rule over each segment (value head h reading key head h % n_k_heads:
 * the tiled order), then the gated RMS norm of each head's output:
 *     o = rmsnorm(o) * norm_w * silu(z)   (eps)
 * conv: [n_tok][ch] rows holding q (n_k_heads * dk), k (same), v (n_v_heads * dv);
 * g, beta [n_tok][n_v_heads]; z, o [n_tok][n_v_heads * dv]. */
int halo_cuda_deltanet_rule(void *stream, const float *conv, int64_t ch, const float *g,
                            const float *beta, const float *z, const float *norm_w, float eps,
                            int32_t n_tok, int n_k_heads, int n_v_heads, int dk, int dv,
                            float *ssm_state, int64_t ssm_stride, const int32_t *seg_off,
                            const int32_t *seg_seq, int32_t n_seg, float *o);

#ifdef __cplusplus
}
#endif

#endif /* HALO_CUDA_OPS_H */
