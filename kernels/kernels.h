/*
 * kernels — the math of a forward pass on the CPU (kernels/cpu/) and, later, CUDA
 * (kernels/cuda/): products of f32 activations with weights in any block format,
 * and the small operations around them. Kernels know nothing of GGUF or of
 * architectures: they see pointers, shapes and a halo_type.
 *
 * Every kernel has a scalar reference (`*_ref`) beside it; the fast paths (AVX2,
 * AVX-512, chosen at run time) are tested against the reference.
 *
 * Threads: a persistent pool (halo_threadpool) runs one function on every thread,
 * the caller being thread 0; kernels split their work by (ith, nth). A NULL pool
 * means "run on the calling thread only".
 */
#ifndef HALO_KERNELS_H
#define HALO_KERNELS_H

#include "halo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- thread pool ---------------------------------------------------------- */

typedef struct halo_threadpool halo_threadpool;

/* n_threads counts the caller; n_threads <= 1 gives a pool that runs inline.
 * Returns NULL on allocation failure. */
halo_threadpool *halo_threadpool_new(int n_threads);
void halo_threadpool_free(halo_threadpool *pool);
int halo_threadpool_n_threads(const halo_threadpool *pool); /* 1 for NULL */

typedef void (*halo_task_fn)(void *arg, int ith, int nth);
/* Run fn(arg, ith, nth) on every thread of the pool (ith 0 on the caller) and
 * return when all have finished. Not reentrant: fn must not call run again. */
void halo_threadpool_run(halo_threadpool *pool, halo_task_fn fn, void *arg);

/* ---- matrix products -------------------------------------------------------
 * W holds n_rows rows of n_cols values of `type` (halo_type), row r starting at
 * (const char *)w + r * row_stride. x holds n_tokens activation rows of n_cols
 * floats (x + t * n_cols). The product is
 *     y[t * n_rows + r] = sum_c W[r][c] * x[t][c]
 * i.e. y = x W^T, each output row contiguous per token, as a linear layer. */
void halo_matmul(halo_threadpool *pool, int type, const void *w, size_t row_stride,
                 int64_t n_rows, int64_t n_cols, const float *x, int64_t n_tokens, float *y);
/* The scalar reference: each row decoded to f32 and summed in double, then
 * rounded to float. Single-threaded; slow; the oracle for halo_matmul. */
void halo_matmul_ref(int type, const void *w, size_t row_stride, int64_t n_rows, int64_t n_cols,
                     const float *x, int64_t n_tokens, float *y);

/* ---- which code path runs halo_matmul ---------------------------------------
 * Chosen once, at the first product, from the CPU's features (cpuid): the widest
 * of AVX-512 (F, BW, VL, DQ), AVX2 + FMA + F16C, and the portable scalar code.
 * The environment variable HALO_CPU=scalar|avx2|avx512 forces one (a path the
 * CPU lacks, or an unknown name, gives a warning and the best supported path).
 * All paths compute the same products up to float summation order: decoded
 * weights are bit-exact and activations stay f32. */
typedef enum halo_cpu_path {
    HALO_CPU_SCALAR = 0,
    HALO_CPU_AVX2 = 1,
    HALO_CPU_AVX512 = 2,
    HALO_CPU_PATH_COUNT = 3,
} halo_cpu_path;

const char *halo_cpu_path_name(int path); /* "scalar", "avx2", "avx512"; "unknown" */
bool halo_cpu_path_supported(int path);    /* whether this CPU can run it */
int halo_cpu_path_get(void);               /* the path halo_matmul uses */
/* Use `path` from now on (tests, benchmarks); not while a product runs.
 * Returns HALO_ERR_UNSUPPORTED (and changes nothing) if the CPU lacks it. */
int halo_cpu_path_set(int path);

/* ---- Gated DeltaNet (Qwen3.5 linear-attention layers) ----------------------
 * Owned by the hybrid models (model/qwen35.c). A layer projects each token to
 * q, k (key heads x dk) and v (value heads x dv), runs them through a causal
 * depthwise conv + SiLU, L2-normalizes q and k per head (q also scaled by
 * 1/sqrt(dk)), and keeps per value head a state S [dk][dv] updated by the gated
 * delta rule:
 *     S = exp(g) S;  delta = beta (v - S^T k);  S += k delta^T;  o = S^T q
 * with decay g = A * softplus(alpha + dt_bias) (A = ssm_a = -exp(A_log) < 0)
 * and beta = sigmoid(b). Prefill uses the chunked form (the same recurrence
 * rewritten as products inside chunks of tokens plus one state carry per chunk),
 * decode the recurrent step; both are tested against the scalar reference.
 * The (ith, nth) arguments split the work when called from a pool task. */

/* Causal depthwise conv1d over the n_tokens rows of x (row t at x + t * x_stride,
 * n_ch channels) followed by SiLU:
 *     y[t][c] = silu(sum_j w[c * kernel + j] * in[t - kernel + 1 + j][c])
 * where inputs before token 0 come from state ([kernel-1][n_ch], oldest first),
 * which is then replaced by the last kernel-1 inputs. w is the GGUF ssm_conv1d
 * layout ([n_ch][kernel]). y may not alias x. Only channels [c0, c1) are
 * computed and their state updated, so threads can take disjoint ranges (a head's
 * channels, then its L2 norm, on one thread). */
#define HALO_DELTANET_MAX_CONV 16  /* conv kernel width limit (Qwen3.5: 4) */
#define HALO_DELTANET_MAX_DIM 1024 /* head dim limit (Qwen3.5: 128) */
void halo_deltanet_conv(const float *x, int64_t x_stride, int64_t n_tokens, int64_t n_ch,
                        int kernel, const float *w, float *state, float *y, int64_t y_stride,
                        int64_t c0, int64_t c1);
void halo_deltanet_conv_ref(const float *x, int64_t x_stride, int64_t n_tokens, int64_t n_ch,
                            int kernel, const float *w, float *state, float *y,
                            int64_t y_stride);

/* x[0..n) = x * scale / sqrt(sum x^2 + eps) (eps 1e-6 as in the original). */
void halo_deltanet_l2_norm(float *x, int64_t n, float eps, float scale);

/* Per value head h of one token: g[h] = a[h] * softplus(alpha[h] + dt_bias[h]),
 * beta[h] = sigmoid(b[h]) (in place in alpha and b allowed). */
void halo_deltanet_gates(const float *alpha, const float *b, const float *a,
                         const float *dt_bias, int64_t n_heads, float *g, float *beta);

/* One sequence's tokens, in order, through the gated delta rule. Pointers are to
 * token 0; q and k are already normalized and q scaled. Value head h reads key
 * head h % n_k_heads when tiled (the order llama.cpp's converter writes), else
 * h / (n_v_heads / n_k_heads) (the original implementation's repeat_interleave). */
typedef struct halo_deltanet_args {
    int64_t n_tokens, n_k_heads, n_v_heads, dk, dv;
    bool tiled;
    const float *q, *k; /* q + t * qk_stride + kh * dk */
    int64_t qk_stride;
    const float *v;     /* v + t * v_stride + h * dv */
    int64_t v_stride;
    const float *g, *beta; /* g + t * gb_stride + h */
    int64_t gb_stride;
    float *state;       /* [n_v_heads][dk][dv], read and updated */
    float *o;           /* o + t * o_stride + h * dv */
    int64_t o_stride;
} halo_deltanet_args;

/* The recurrent form, token by token; threads split the value heads. */
void halo_deltanet_recurrent(const halo_deltanet_args *a, int ith, int nth);
/* The scalar reference (double accumulators, single thread). */
void halo_deltanet_ref(const halo_deltanet_args *a);
/* The chunked form: chunks of `chunk` tokens (<= HALO_DELTANET_MAX_CHUNK), threads
 * split the value heads; work holds halo_deltanet_work_floats() floats per thread
 * (this thread's). */
#define HALO_DELTANET_MAX_CHUNK 128
size_t halo_deltanet_work_floats(int64_t chunk, int64_t dk, int64_t dv);
void halo_deltanet_chunked(const halo_deltanet_args *a, int64_t chunk, float *work, int ith,
                           int nth);

/* The gated RMS norm of the DeltaNet output, one head of n values:
 *     x = x / sqrt(mean(x^2) + eps) * w * silu(z) */
void halo_deltanet_norm_gated(float *x, const float *z, const float *w, int64_t n, float eps);

/* ---- ops: the small operations of a forward pass ---------------------------
 * All in f32 on contiguous rows. Each has a scalar reference (`*_ref`, plain
 * loops in double where it matters) that tests compare against. The fast
 * versions here are still portable C written so that the compiler vectorizes
 * them; they are cheap beside the matrix products. */

/* y[t][i] = x[t][i] / rms(x[t]) * w[i] (w may be NULL: no scale); y may equal x. */
void halo_rms_norm(const float *x, const float *w, float *y, int64_t n_rows, int64_t n, float eps);
void halo_rms_norm_ref(const float *x, const float *w, float *y, int64_t n_rows, int64_t n,
                       float eps);

/* Rotary position embedding of one token's heads, in place: x holds n_heads rows of
 * head_dim values; the first n_rot dims of each are rotated, the rest untouched.
 * NORM rotates adjacent pairs (x[2i], x[2i+1]) (llama, whose converter permutes
 * q/k to that layout); NEOX rotates halves (x[i], x[i + n_rot/2]) (Qwen family).
 * inv_freq[i] = base^(-2i/n_rot) for i < n_rot/2 (halo_rope_inv_freq); the angle
 * of pair i is pos * inv_freq[i]. */
typedef enum halo_rope_mode { HALO_ROPE_NORM = 0, HALO_ROPE_NEOX = 2 } halo_rope_mode;
void halo_rope_inv_freq(float base, int n_rot, float *inv_freq);
void halo_rope(float *x, int n_heads, int head_dim, int n_rot, int mode, float pos,
               const float *inv_freq);
void halo_rope_ref(float *x, int n_heads, int head_dim, int n_rot, int mode, float pos,
                   float base);

/* In-place softmax of n values (max-subtracted). */
void halo_softmax(float *x, int64_t n);
void halo_softmax_ref(float *x, int64_t n);

/* silu(x) = x / (1 + e^-x); swiglu: g[i] = silu(g[i]) * u[i] (the gated FFN). */
void halo_silu(float *x, int64_t n);
void halo_swiglu(float *g, const float *u, int64_t n);
void halo_swiglu_ref(float *g, const float *u, int64_t n);
/* x[i] *= sigmoid(g[i]) (output gates) */
void halo_sigmoid_gate(float *x, const float *g, int64_t n);

/* The Walsh-Hadamard rotation, in place: each run of `block` consecutive values
 * (block a power of two dividing n) of each of the n_rows rows of n values becomes
 * H x / sqrt(block), H the Sylvester Hadamard matrix (H[i][j] = (-1)^popcount(i & j)).
 * It is orthogonal and its own inverse, so rotating q and k leaves q.k unchanged,
 * and rotating v rotates the attention's output, which a second call undoes. The
 * fast version is the butterfly (block log2(block) additions a run); the reference
 * multiplies by the matrix in double. */
void halo_hadamard(float *x, int64_t n_rows, int64_t n, int block);
void halo_hadamard_ref(float *x, int64_t n_rows, int64_t n, int block);

/* MoE routing of one token: probabilities p = softmax(logits[n_expert]); the k
 * largest (ties: the lower index first) go to ids[k] in decreasing order with
 * weights p[id], divided by their sum when `normalize`. */
void halo_topk_route(const float *logits, int n_expert, int k, bool normalize, int32_t *ids,
                     float *weights);
void halo_topk_route_ref(const float *logits, int n_expert, int k, bool normalize, int32_t *ids,
                         float *weights);

/* ---- attention over a paged cache -------------------------------------------
 * n_tok query tokens of one sequence (token t's n_q query heads, head_dim_k each,
 * at q + t * q_stride), all the query heads sharing one KV head, against the
 * sequence's positions 0 .. n_kv[t]-1 (causal: n_kv[t] = its position + 1).
 * K/V rows live in pages of page_size positions: position p is row
 * p % page_size of page pages[p / page_size], at
 *     base + page * page_bytes + (p % page_size) * row_bytes + head_offset,
 * stored in type_k / type_v (f32, f16, bf16, q8_0, q4_0, iq4_nl), head_dim values each.
 * Online softmax over the pages (flash-attention style, in f32), each page
 * decoded once per block of HALO_ATTN_QBLOCK tokens; out + t * out_stride gets
 * the n_q heads' softmax(scale * q.K)-weighted sums of V (head_dim_v each). */
typedef struct halo_attn_kv {
    int type_k, type_v;
    const char *k_base, *v_base;
    size_t k_page_bytes, v_page_bytes;
    size_t k_row_bytes, v_row_bytes;
    size_t k_head_offset, v_head_offset;
    int32_t page_size;
    const int32_t *pages;
} halo_attn_kv;

#define HALO_ATTN_QBLOCK 16

/* Floats of scratch halo_attn_paged needs (per calling thread). */
size_t halo_attn_scratch_floats(int page_size, int head_dim_k, int head_dim_v, int n_q);
void halo_attn_paged(const halo_attn_kv *kv, const float *q, size_t q_stride, int n_tok,
                     const int32_t *n_kv, int n_q, int head_dim_k, int head_dim_v, float scale,
                     float *out, size_t out_stride, float *scratch);
/* Decoding one token at a long context on many threads (flash-decoding): each
 * thread takes a range [p_begin, p_end) of positions (p_begin a multiple of the
 * page size; the range is clipped to n_kv) and leaves its partial state in part
 * ([n_q * head_dim_v] unnormalized sums, [n_q] running max, [n_q] running sum:
 * HALO_ATTN_PART_FLOATS); halo_attn_merge combines n_parts of them (part j at
 * parts + j * part_stride) into out [n_q * head_dim_v]. scratch as above. */
#define HALO_ATTN_PART_FLOATS(n_q, head_dim_v) ((size_t)(n_q) * ((size_t)(head_dim_v) + 2))
void halo_attn_paged_part(const halo_attn_kv *kv, const float *q, int32_t n_kv, int n_q,
                          int head_dim_k, int head_dim_v, float scale, int32_t p_begin,
                          int32_t p_end, float *part, float *scratch);
void halo_attn_merge(const float *parts, size_t part_stride, int n_parts, int n_q, int head_dim_v,
                     float *out);
/* Reference: every K/V row decoded by the type's decoder, scores and weights in
 * double, a plain softmax per token and head. */
void halo_attn_paged_ref(const halo_attn_kv *kv, const float *q, size_t q_stride, int n_tok,
                         const int32_t *n_kv, int n_q, int head_dim_k, int head_dim_v, float scale,
                         float *out, size_t out_stride);

#endif /* HALO_KERNELS_H */
