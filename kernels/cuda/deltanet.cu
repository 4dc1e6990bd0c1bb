/*
 * Gated DeltaNet (Qwen3.5 linear-attention layers) on the GPU: the causal conv with
 * its carried state and the L2 norms of q and k, the gates, and the recurrent delta
 * rule with the gated RMS norm of its output. Semantics of kernels/cpu/deltanet.c as
 * model/qwen35.c chains them; segments as in cuda_ops.h.
 *
 * The delta rule. Column j of a value head's state (S[:, j], dk values) evolves on
 * its own given the token's k, q, decay, beta and v_j:
 *     kv = S_j.k, sq = S_j.q;  delta = beta (v_j - decay kv);
 *     o_j = decay sq + (k.q) delta;  S_j = decay S_j + k delta
 * (o_j = S_j'.q written from the dot products of the old column, so the column is
 * read once and written once per token, as the CPU's recurrent form). A column is
 * split over P = dk / 32 neighbouring lanes of a warp, 32 state values each, in
 * registers; the P partial dot products meet by butterfly shuffles. A block holds
 * NC columns of one value head of one segment (NC * P threads) and walks the
 * segment's tokens once, their q, k, v, g, beta (and z) copied asynchronously into
 * a ring of shared-memory buffers RING - 1 tokens ahead of the one computed (one
 * barrier per token). The state is read at the segment's start and written at its end.
 *
 * The gated norm needs the head's dv outputs: when one block holds a whole head
 * (many segments: decode) it is done in the block; otherwise the rule writes the raw
 * outputs and a second kernel (a warp per token and head) normalizes them in place.
 */
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"

#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define FULL_MASK 0xffffffffu
#define MAX_CONV 16   /* conv kernel widths, as HALO_DELTANET_MAX_CONV */
#define MAX_DIM 1024  /* head dims, as HALO_DELTANET_MAX_DIM */
#define SLICE 32      /* state values of a column per thread */
#define SLICE_PAD 36  /* a slice's stride in shared memory: the P slices read by one
                       * quarter-warp's 16-byte loads land on distinct banks */
#define STAGE_SLOTS 4 /* staged values per thread and token (checked on the host) */

static inline int launched(void) { return cudaGetLastError() == cudaSuccess ? 0 : -1; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }

/* The segment holding token t: the last j with seg_off[j] <= t (segments may be empty);
 * -1 when t is in none. */
__device__ __forceinline__ int find_segment(const int32_t *__restrict__ seg_off, int32_t n_seg,
                                            int32_t t) {
    int lo = 0, hi = n_seg;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (seg_off[mid] <= t) lo = mid;
        else hi = mid;
    }
    return seg_off[lo] <= t && t < seg_off[lo + 1] ? lo : -1;
}

/* ---- conv + SiLU + L2 norms ----------------------------------------------------------
 * Blocks over (channel block, CONV_TOK consecutive tokens): channel blocks 0 ..
 * 2*n_k_heads-1 are the q and k heads (dk channels each, normalized in the block), the
 * rest cover the v channels. Every token's conv reads only inputs (the segment's earlier
 * rows or its sequence's state), so tokens run in parallel; the state is replaced
 * afterwards by conv_state_kernel. CONV_TOK 8 measured no faster than 1 on an H200
 * (prefill 48 us vs 44, decode slower: a segment search per token), so 1. */

#define CONV_TOK 1

/* The gates of n_v_heads values from i0 (threads of the block, grid-stride `step`). */
struct gates_args {
    const float *alpha, *b, *a, *dt_bias;
    float *g, *beta;
    int n_v_heads;
};
__device__ __forceinline__ void gates_at(const gates_args &ga, int64_t i) {
    const int h = (int)(i % ga.n_v_heads);
    const float s = ga.alpha[i] + ga.dt_bias[h];
    const float softplus = s > 20.0f ? s : log1pf(expf(s)); /* torch's threshold */
    const float bi = ga.b[i];
    ga.g[i] = ga.a[h] * softplus;
    ga.beta[i] = 1.0f / (1.0f + expf(-bi));
}

/* step: every segment holds one token (decode), so the thread of a channel also moves
 * its sequence's conv state on (read before written, no other token of that sequence
 * in the ubatch), and the last column of blocks computes the token's gates (ga) */
__global__ void conv_kernel(const float *__restrict__ x, int32_t n_tok, int64_t n_ch, int kernel,
                            const float *__restrict__ w, float *conv_state,
                            int64_t conv_stride, const int32_t *__restrict__ seg_off,
                            const int32_t *__restrict__ seg_seq, int32_t n_seg, int n_k_heads,
                            int dk, float q_scale, float *__restrict__ y, int step,
                            gates_args ga) {
    halo_pdl::begin();
    __shared__ float part[CONV_TOK][32];
    if (step && blockIdx.x == gridDim.x - 1) {
        const int64_t t = blockIdx.y;
        for (int i = threadIdx.x; i < ga.n_v_heads; i += blockDim.x)
            gates_at(ga, t * ga.n_v_heads + i);
        return;
    }
    const int nb = 2 * n_k_heads;
    const bool head = (int)blockIdx.x < nb;
    const int64_t c = head ? (int64_t)blockIdx.x * dk + threadIdx.x
                           : (int64_t)nb * dk + (int64_t)(blockIdx.x - nb) * blockDim.x +
                                 threadIdx.x;
    const bool live = head ? (int)threadIdx.x < dk : c < n_ch;
    float out[CONV_TOK];
    bool have[CONV_TOK];
#pragma unroll
    for (int u = 0; u < CONV_TOK; u++) {
        const int32_t t = (int32_t)blockIdx.y * CONV_TOK + u;
        const int seg = t < n_tok ? find_segment(seg_off, n_seg, t) : -1;
        have[u] = seg >= 0; /* block-uniform */
        out[u] = 0.0f;
        if (have[u] && live) {
            const int32_t t0 = seg_off[seg], p = t - t0;
            float *state = conv_state + (int64_t)seg_seq[seg] * conv_stride;
            float sum = 0.0f;
            for (int j = 0; j < kernel; j++) {
                const int src = p - (kernel - 1) + j; /* < 0: from the state */
                const float in = src >= 0 ? x[(int64_t)(t0 + src) * n_ch + c]
                                          : state[(int64_t)(kernel - 1 + src) * n_ch + c];
                sum += w[c * kernel + j] * in;
                /* step: state row j - 1 takes input j (rows 1.., then x) */
                if (step && j > 0) state[(int64_t)(j - 1) * n_ch + c] = in;
            }
            out[u] = silu_f(sum);
        }
    }
    if (head) { /* the L2 norms of the block's tokens, one barrier for all */
#pragma unroll
        for (int u = 0; u < CONV_TOK; u++) {
            const float ss = warp_sum(out[u] * out[u]);
            if ((threadIdx.x & 31) == 0) part[u][threadIdx.x / 32] = ss;
        }
        __syncthreads();
        const float scale = (int)blockIdx.x < n_k_heads ? q_scale : 1.0f;
#pragma unroll
        for (int u = 0; u < CONV_TOK; u++) {
            float tot = 0.0f;
            for (unsigned i = 0; i < blockDim.x / 32; i++) tot += part[u][i];
            out[u] *= scale / sqrtf(tot + 1e-6f);
        }
    }
    if (live)
#pragma unroll
        for (int u = 0; u < CONV_TOK; u++)
            if (have[u]) y[(int64_t)((int32_t)blockIdx.y * CONV_TOK + u) * n_ch + c] = out[u];
}

/* The new conv state of each segment's sequence: its last kernel-1 inputs, reaching
 * into the old state when the segment is shorter (row j then reads row j + len > j,
 * not yet overwritten in this ascending loop). */
__global__ void conv_state_kernel(const float *__restrict__ x, int64_t n_ch, int kernel,
                                  float *conv_state, int64_t conv_stride,
                                  const int32_t *__restrict__ seg_off,
                                  const int32_t *__restrict__ seg_seq) {
    halo_pdl::begin();
    const int seg = blockIdx.y;
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= n_ch) return;
    const int32_t t0 = seg_off[seg], len = seg_off[seg + 1] - t0;
    float *state = conv_state + (int64_t)seg_seq[seg] * conv_stride;
    const int hist = kernel - 1;
    for (int j = 0; j < hist; j++) {
        const int64_t src = (int64_t)len - hist + j;
        state[(int64_t)j * n_ch + c] =
            src >= 0 ? x[(t0 + src) * n_ch + c] : state[(hist + src) * n_ch + c];
    }
}

extern "C" int halo_cuda_deltanet_conv(void *stream, const float *x, int32_t n_tok, int64_t n_ch,
                                       int kernel, const float *w, float *conv_state,
                                       int64_t conv_stride, const int32_t *seg_off,
                                       const int32_t *seg_seq, int32_t n_seg, int n_k_heads,
                                       int dk, float q_scale, float *y) {
    if (n_tok < 0 || n_ch < 0 || kernel < 1 || kernel > MAX_CONV || n_seg < 0 ||
        n_k_heads < 0 || (n_k_heads > 0 && (dk < 1 || dk > MAX_DIM)) ||
        (int64_t)2 * n_k_heads * dk > n_ch || n_tok > 65535 || n_seg > 65535)
        return -1;
    if (n_tok == 0 || n_ch == 0 || n_seg == 0) return 0;
    cudaStream_t s = (cudaStream_t)stream;
    const int threads = n_k_heads > 0 ? (dk + 31) / 32 * 32 < 128 ? 128 : (dk + 31) / 32 * 32
                                      : 128;
    const int64_t v_ch = n_ch - (int64_t)2 * n_k_heads * dk;
    const int64_t blocks = 2 * (int64_t)n_k_heads + (v_ch + threads - 1) / threads;
    if (blocks > INT32_MAX) return -1;
    const dim3 grid((unsigned)blocks, (unsigned)((n_tok + CONV_TOK - 1) / CONV_TOK));
    halo_pdl::launch(conv_kernel, grid, threads, 0, s, x, n_tok, n_ch, kernel, w, conv_state, conv_stride,
                                         seg_off, seg_seq, n_seg, n_k_heads, dk, q_scale, y, 0,
                                         gates_args{});
    if (kernel > 1) {
        const int64_t cb = (n_ch + 255) / 256;
        if (cb > INT32_MAX) return -1;
        halo_pdl::launch(conv_state_kernel, dim3((unsigned)cb, (unsigned)n_seg), 256, 0, s,
            x, n_ch, kernel, conv_state, conv_stride, seg_off, seg_seq);
    }
    return launched();
}

extern "C" int halo_cuda_deltanet_conv_step(void *stream, const float *x, int32_t n_tok,
                                            int64_t n_ch, int kernel, const float *w,
                                            float *conv_state, int64_t conv_stride,
                                            const int32_t *seg_off, const int32_t *seg_seq,
                                            int32_t n_seg, int n_k_heads, int dk, float q_scale,
                                            float *y, const float *alpha, const float *b,
                                            const float *a, const float *dt_bias, int n_v_heads,
                                            float *g, float *beta) {
    if (n_tok < 0 || n_ch < 0 || kernel < 1 || kernel > MAX_CONV || n_seg < 0 ||
        n_k_heads < 0 || (n_k_heads > 0 && (dk < 1 || dk > MAX_DIM)) ||
        (int64_t)2 * n_k_heads * dk > n_ch || n_tok > 65535 || n_seg > 65535 || n_v_heads < 0)
        return -1;
    if (n_tok == 0 || n_ch == 0 || n_seg == 0) return 0;
    const int threads = n_k_heads > 0 ? (dk + 31) / 32 * 32 < 128 ? 128 : (dk + 31) / 32 * 32
                                      : 128;
    const int64_t v_ch = n_ch - (int64_t)2 * n_k_heads * dk;
    const int64_t blocks = 2 * (int64_t)n_k_heads + (v_ch + threads - 1) / threads + 1;
    if (blocks > INT32_MAX) return -1;
    const gates_args ga = {alpha, b, a, dt_bias, g, beta, n_v_heads};
    halo_pdl::launch(conv_kernel, dim3((unsigned)blocks, (unsigned)n_tok), threads, 0, (cudaStream_t)stream,
        x, n_tok, n_ch, kernel, w, conv_state, conv_stride, seg_off, seg_seq, n_seg, n_k_heads,
        dk, q_scale, y, 1, ga);
    return launched();
}

/* ---- gates -------------------------------------------------------------------------------- */

/* alpha, b may be g, beta (in place, as on the CPU): no __restrict__ on those four */
__global__ void gates_kernel(const float *alpha, const float *b,
                             const float *__restrict__ a, const float *__restrict__ dt_bias,
                             int64_t total, int n_v_heads, float *g, float *beta) {
    halo_pdl::begin();
    const gates_args ga = {alpha, b, a, dt_bias, g, beta, n_v_heads};
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        gates_at(ga, i);
}

extern "C" int halo_cuda_deltanet_gates(void *stream, const float *alpha, const float *b,
                                        const float *a, const float *dt_bias, int32_t n_tok,
                                        int n_v_heads, float *g, float *beta) {
    if (n_tok < 0 || n_v_heads < 0) return -1;
    const int64_t total = (int64_t)n_tok * n_v_heads;
    if (total == 0) return 0;
    int64_t blocks = (total + 255) / 256;
    if (blocks > 4096) blocks = 4096;
    halo_pdl::launch(gates_kernel, (unsigned)blocks, 256, 0, (cudaStream_t)stream, alpha, b, a, dt_bias, total,
                                                                      n_v_heads, g, beta);
    return launched();
}

/* ---- the delta rule ----------------------------------------------------------------------- */

/* Tokens in flight: a ring of RING staging buffers in shared memory, filled by
 * asynchronous copies (cp.async) RING - 1 tokens ahead of the one computed, so that a
 * long segment is not paced by the memory latency of each token's q, k, v. */
#define RING 8

/* floats of one staging buffer: q [P][SLICE_PAD], k [P][SLICE_PAD], v [nc], z [nc]
 * (the fused norm's gates), g, beta; a multiple of 4 (16-byte loads) */
__host__ __device__ constexpr int buf_size(int p, int nc) {
    return (2 * p * SLICE_PAD + 2 * nc + 2 + 3) / 4 * 4;
}

template <int P>
__global__ void __launch_bounds__(512)
rule_kernel(const float *__restrict__ conv, int64_t ch, const float *__restrict__ g,
            const float *__restrict__ beta, const float *__restrict__ z,
            const float *__restrict__ norm_w, float eps, int n_k_heads, int n_v_heads, int dv,
            int nc, float *__restrict__ ssm_state, int64_t ssm_stride,
            const int32_t *__restrict__ seg_off, const int32_t *__restrict__ seg_seq,
            float *__restrict__ o) {
    halo_pdl::begin();
    constexpr int DK = P * SLICE;
    constexpr int QO = 0, KO = P * SLICE_PAD, VO = 2 * P * SLICE_PAD; /* buffer offsets */
    extern __shared__ float smem[];
    const int buf_floats = buf_size(P, nc);
    const int ZO = VO + nc, GO = VO + 2 * nc, BO = GO + 1;
    float *red = smem + RING * buf_floats; /* 32 partial sums for the fused norm */

    const int h = blockIdx.y, seg = blockIdx.z;
    const int32_t t0 = seg_off[seg], len = seg_off[seg + 1] - t0;
    const int64_t seq = seg_seq[seg];
    if (len <= 0) return; /* block-uniform */
    const int tid = threadIdx.x, part = tid % P, col = tid / P;
    const int j0 = blockIdx.x * nc, j = j0 + col;
    const int kh = h % n_k_heads; /* tiled */
    const bool fused = nc == dv;
    const int64_t o_stride = (int64_t)n_v_heads * dv;

    /* this thread's staging slots, the same for every token: q, k, v, (z), g, beta;
     * src: 0 the conv row, 1 the z row, 2 g, 3 beta */
    const int n_stage = 2 * DK + (fused ? 2 : 1) * nc + 2, nth = blockDim.x;
    int64_t s_off[STAGE_SLOTS];
    int s_dst[STAGE_SLOTS], s_src[STAGE_SLOTS];
#pragma unroll
    for (int i = 0; i < STAGE_SLOTS; i++) {
        int e = tid + i * nth;
        int64_t off = 0;
        int dst = -1, src = 0;
        if (e < n_stage) {
            if (e < DK) {
                off = (int64_t)kh * DK + e;
                dst = QO + (e / SLICE) * SLICE_PAD + e % SLICE;
            } else if ((e -= DK) < DK) {
                off = (int64_t)n_k_heads * DK + (int64_t)kh * DK + e;
                dst = KO + (e / SLICE) * SLICE_PAD + e % SLICE;
            } else if ((e -= DK) < nc) {
                off = (int64_t)2 * n_k_heads * DK + (int64_t)h * dv + j0 + e;
                dst = VO + e;
            } else if (fused && (e -= nc) < nc) {
                off = (int64_t)h * dv + j0 + e, src = 1;
                dst = ZO + e;
            } else { /* e: nc + 0 (g) or nc + 1 (beta) past the last v (or z) */
                off = h, src = e - nc == 0 ? 2 : 3;
                dst = e - nc == 0 ? GO : BO;
            }
        }
        s_off[i] = off, s_dst[i] = dst, s_src[i] = src;
    }
    /* token it of the segment into its ring buffer; always one commit per call */
    auto issue = [&](int32_t it) {
        if (it < len) {
            float *buf = smem + (it % RING) * buf_floats;
            const int64_t t = t0 + it;
#pragma unroll
            for (int i = 0; i < STAGE_SLOTS; i++) {
                if (s_dst[i] < 0) continue;
                const float *src = s_src[i] == 0   ? conv + t * ch
                                   : s_src[i] == 1 ? z + t * o_stride
                                   : s_src[i] == 2 ? g + t * n_v_heads
                                                   : beta + t * n_v_heads;
                __pipeline_memcpy_async(buf + s_dst[i], src + s_off[i], sizeof(float));
            }
        }
        __pipeline_commit();
    };
#pragma unroll 1
    for (int d = 0; d < RING - 1; d++) issue(d);

    /* the state slice: rows part*SLICE .. +SLICE of column j */
    float *st = ssm_state + seq * ssm_stride + (int64_t)h * DK * dv + (int64_t)part * SLICE * dv + j;
    float S[SLICE];
#pragma unroll
    for (int i = 0; i < SLICE; i++) S[i] = st[(int64_t)i * dv];
    const float wj = fused ? norm_w[j] : 0.0f;

    for (int32_t it = 0; it < len; it++) {
        /* token it landed (this thread's copies, then everyone's); its buffer's previous
         * token (it - 1) is done with, so the copies for it + RING - 1 go there */
        __pipeline_wait_prior(RING - 2);
        __syncthreads();
        issue(it + RING - 1);
        const int32_t t = t0 + it;
        const float *buf = smem + (it % RING) * buf_floats;
        const float4 *q4 = (const float4 *)(buf + QO + part * SLICE_PAD);
        const float4 *k4 = (const float4 *)(buf + KO + part * SLICE_PAD);
        /* partial dot products, two accumulators each */
        float kv0 = 0.f, kv1 = 0.f, sq0 = 0.f, sq1 = 0.f, kq0 = 0.f, kq1 = 0.f;
#pragma unroll
        for (int i = 0; i < SLICE / 4; i += 2) {
            const float4 ka = k4[i], qa = q4[i], kb = k4[i + 1], qb = q4[i + 1];
            kv0 = fmaf(S[4 * i + 0], ka.x, kv0);
            kv0 = fmaf(S[4 * i + 1], ka.y, kv0);
            kv0 = fmaf(S[4 * i + 2], ka.z, kv0);
            kv0 = fmaf(S[4 * i + 3], ka.w, kv0);
            kv1 = fmaf(S[4 * i + 4], kb.x, kv1);
            kv1 = fmaf(S[4 * i + 5], kb.y, kv1);
            kv1 = fmaf(S[4 * i + 6], kb.z, kv1);
            kv1 = fmaf(S[4 * i + 7], kb.w, kv1);
            sq0 = fmaf(S[4 * i + 0], qa.x, sq0);
            sq0 = fmaf(S[4 * i + 1], qa.y, sq0);
            sq0 = fmaf(S[4 * i + 2], qa.z, sq0);
            sq0 = fmaf(S[4 * i + 3], qa.w, sq0);
            sq1 = fmaf(S[4 * i + 4], qb.x, sq1);
            sq1 = fmaf(S[4 * i + 5], qb.y, sq1);
            sq1 = fmaf(S[4 * i + 6], qb.z, sq1);
            sq1 = fmaf(S[4 * i + 7], qb.w, sq1);
            kq0 = fmaf(ka.x, qa.x, kq0);
            kq0 = fmaf(ka.y, qa.y, kq0);
            kq0 = fmaf(ka.z, qa.z, kq0);
            kq0 = fmaf(ka.w, qa.w, kq0);
            kq1 = fmaf(kb.x, qb.x, kq1);
            kq1 = fmaf(kb.y, qb.y, kq1);
            kq1 = fmaf(kb.z, qb.z, kq1);
            kq1 = fmaf(kb.w, qb.w, kq1);
        }
        float kv = kv0 + kv1, sq = sq0 + sq1, kq = kq0 + kq1;
#pragma unroll
        for (int m = 1; m < P; m <<= 1) { /* the column's P lanes are neighbours */
            kv += __shfl_xor_sync(FULL_MASK, kv, m);
            sq += __shfl_xor_sync(FULL_MASK, sq, m);
            kq += __shfl_xor_sync(FULL_MASK, kq, m);
        }
        const float decay = expf(buf[GO]), bt = buf[BO];
        const float delta = (buf[VO + col] - decay * kv) * bt;
        const float oj = decay * sq + kq * delta;
#pragma unroll
        for (int i = 0; i < SLICE / 4; i++) {
            const float4 kk = k4[i];
            S[4 * i + 0] = fmaf(S[4 * i + 0], decay, kk.x * delta);
            S[4 * i + 1] = fmaf(S[4 * i + 1], decay, kk.y * delta);
            S[4 * i + 2] = fmaf(S[4 * i + 2], decay, kk.z * delta);
            S[4 * i + 3] = fmaf(S[4 * i + 3], decay, kk.w * delta);
        }
        float *ot = o + (int64_t)t * o_stride + (int64_t)h * dv;
        if (fused) { /* the gated RMS norm over the block's (the head's) columns */
            const float ss = warp_sum(part == 0 ? oj * oj : 0.0f);
            if ((tid & 31) == 0) red[tid / 32] = ss;
            __syncthreads();
            float tot = 0.0f;
            for (int i = 0; i < nth / 32; i++) tot += red[i];
            const float f = 1.0f / sqrtf(tot / (float)dv + eps);
            if (part == 0) ot[j] = oj * f * wj * silu_f(buf[ZO + col]);
        } else if (part == 0) {
            ot[j] = oj;
        }
    }
    __pipeline_wait_prior(0); /* no copy outlives the block */
#pragma unroll
    for (int i = 0; i < SLICE; i++) st[(int64_t)i * dv] = S[i];
}

/* o = rmsnorm(o) * w * silu(z) per (token, head) of dv values: a warp each. */
__global__ void norm_gated_kernel(float *o, const float *__restrict__ z,
                                  const float *__restrict__ w, int64_t rows, int dv, float eps) {
    halo_pdl::begin();
    const int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (r >= rows) return;
    float *x = o + r * dv;
    const float *zr = z + r * dv;
    float ss = 0.0f;
    for (int i = lane; i < dv; i += 32) ss += x[i] * x[i];
    ss = warp_sum(ss);
    const float f = 1.0f / sqrtf(ss / (float)dv + eps);
    for (int i = lane; i < dv; i += 32) x[i] = x[i] * f * w[i] * silu_f(zr[i]);
}

/* Value heads x single-token segments from which a block takes a whole head (the gated
 * norm in the block, one launch; fewer, larger blocks). HALO_CUDA_DN_FUSE=0: 256, the
 * earlier choice (for measurements). */
static int rule_fuse_min(void) {
    static int v = -1; /* read once; a race only reads it twice */
    if (v < 0) {
        const char *e = getenv("HALO_CUDA_DN_FUSE");
        v = e && e[0] == '0' ? 256 : 32;
    }
    return v;
}

template <int P>
static int launch_rule(cudaStream_t s, const float *conv, int64_t ch, const float *g,
                       const float *beta, const float *z, const float *norm_w, float eps,
                       int32_t n_tok, int n_k_heads, int n_v_heads, int dv, float *ssm_state,
                       int64_t ssm_stride, const int32_t *seg_off, const int32_t *seg_seq,
                       int32_t n_seg, float *o) {
    constexpr int DK = P * SLICE;
    /* a block per whole head (the norm in the block) when the segments alone give the
     * GPU enough blocks (decode); else groups of 32 columns and the norm after */
    /* one token per segment (decode): a block per head even for few segments (the norm in
     * the block, one launch less); longer segments keep 4x the blocks unless there are
     * many segments (a prompt's scan over 32 heads in 32 blocks measured 823 us a layer
     * for 512 tokens, against 282 us in 128 blocks + the separate norm) */
    const int64_t fuse_min = n_tok == n_seg ? rule_fuse_min() : 256;
    int nc = 32;
    if ((int64_t)n_seg * n_v_heads >= fuse_min && dv * P <= 512) nc = dv;
    const int threads = nc * P;
    const int n_stage = 2 * DK + (nc == dv ? 2 : 1) * nc + 2; /* as in rule_kernel */
    if (n_stage > STAGE_SLOTS * threads) return -1;
    const size_t shmem = sizeof(float) * (size_t)(RING * buf_size(P, nc) + 32);
    if (shmem > 48 * 1024) return -1;
    halo_pdl::launch(rule_kernel<P>, dim3((unsigned)(dv / nc), (unsigned)n_v_heads, (unsigned)n_seg), threads,
                     shmem, s, conv, ch, g, beta, z, norm_w, eps, n_k_heads, n_v_heads, dv, nc,
                                 ssm_state, ssm_stride, seg_off, seg_seq, o);
    if (nc != dv) {
        const int64_t rows = (int64_t)n_tok * n_v_heads;
        const int warps = 8;
        const int64_t blocks = (rows + warps - 1) / warps;
        if (blocks > INT32_MAX) return -1;
        halo_pdl::launch(norm_gated_kernel, (unsigned)blocks, warps * 32, 0, s, o, z, norm_w, rows, dv, eps);
    }
    return launched();
}

extern "C" int halo_cuda_deltanet_rule(void *stream, const float *conv, int64_t ch, const float *g,
                                       const float *beta, const float *z, const float *norm_w,
                                       float eps, int32_t n_tok, int n_k_heads, int n_v_heads,
                                       int dk, int dv, float *ssm_state, int64_t ssm_stride,
                                       const int32_t *seg_off, const int32_t *seg_seq,
                                       int32_t n_seg, float *o) {
    if (n_tok < 0 || n_seg < 0 || n_k_heads < 1 || n_v_heads < 1 || n_v_heads > 65535 ||
        n_seg > 65535 || dv < 32 || dv > MAX_DIM || dv % 32 != 0 ||
        ch < (int64_t)2 * n_k_heads * dk + (int64_t)n_v_heads * dv)
        return -1;
    if (dk != 32 && dk != 64 && dk != 128 && dk != 256) return -1;
    if (n_tok == 0 || n_seg == 0) return 0;
    cudaStream_t s = (cudaStream_t)stream;
    switch (dk) {
    case 32:
        return launch_rule<1>(s, conv, ch, g, beta, z, norm_w, eps, n_tok, n_k_heads, n_v_heads,
                              dv, ssm_state, ssm_stride, seg_off, seg_seq, n_seg, o);
    case 64:
        return launch_rule<2>(s, conv, ch, g, beta, z, norm_w, eps, n_tok, n_k_heads, n_v_heads,
                              dv, ssm_state, ssm_stride, seg_off, seg_seq, n_seg, o);
    case 128:
        return launch_rule<4>(s, conv, ch, g, beta, z, norm_w, eps, n_tok, n_k_heads, n_v_heads,
                              dv, ssm_state, ssm_stride, seg_off, seg_seq, n_seg, o);
    default:
        return launch_rule<8>(s, conv, ch, g, beta, z, norm_w, eps, n_tok, n_k_heads, n_v_heads,
                              dv, ssm_state, ssm_stride, seg_off, seg_seq, n_seg, o);
    }
}
