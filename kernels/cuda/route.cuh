/*
 * route.cuh — MoE top-k routing of one token by one warp (kernels/cuda/ops.cu's routing
 * launch, and mmv.cu, where the last block of a router product routes its tokens).
 *
 * Lane l holds experts l, l + 32, ... (up to 16 each: 512 experts) in registers. Each of
 * the k rounds takes the warp's largest remaining logit, ties to the lower index (as the
 * CPU's selection, halo_topk_route); lane j keeps round j's id and softmax probability;
 * with normalize the k probabilities are divided by their sum.
 */
#ifndef HALO_CUDA_ROUTE_CUH
#define HALO_CUDA_ROUTE_CUH

#include <math.h>
#include <stdint.h>

namespace halo_route {

constexpr int MAX_EXPERT = 512, MAX_K = 16, SLOTS = MAX_EXPERT / 32;

/* The whole warp calls it (every lane, converged). */
__device__ __forceinline__ void topk_warp(const float *__restrict__ lt, int n_expert, int k,
                                          bool normalize, int32_t *ids, float *weights) {
    const unsigned full = 0xffffffffu;
    const int lane = threadIdx.x & 31;
    float v[SLOTS];
    float mx = -INFINITY;
#pragma unroll
    for (int s = 0; s < SLOTS; s++) {
        const int e = s * 32 + lane;
        v[s] = e < n_expert ? __ldcg(lt + e) : -INFINITY; /* L2: written by other blocks */
        if (e < n_expert) mx = fmaxf(mx, v[s]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(full, mx, o));
    float sum = 0.0f;
#pragma unroll
    for (int s = 0; s < SLOTS; s++)
        if (s * 32 + lane < n_expert) sum += expf(v[s] - mx);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(full, sum, o);

    uint32_t taken = 0;
    int my_id = -1;
    float my_p = 0.0f;
    for (int j = 0; j < k; j++) {
        /* this lane's best: ascending experts, strict > keeps the lower index */
        float bv = -INFINITY;
        int bi = INT32_MAX;
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            const int e = s * 32 + lane;
            if (e < n_expert && !((taken >> s) & 1u) && (bi == INT32_MAX || v[s] > bv))
                bv = v[s], bi = e;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(full, bv, o);
            const int oi = __shfl_xor_sync(full, bi, o);
            if (oi != INT32_MAX && (bi == INT32_MAX || ov > bv || (ov == bv && oi < bi)))
                bv = ov, bi = oi;
        }
        if (bi % 32 == lane) taken |= 1u << (bi / 32);
        if (lane == j) {
            my_id = bi;
            my_p = expf(bv - mx) / sum;
        }
    }
    float wsum = lane < k ? my_p : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) wsum += __shfl_xor_sync(full, wsum, o);
    if (lane < k) {
        ids[lane] = my_id;
        weights[lane] = normalize ? my_p / wsum : my_p;
    }
}

} /* namespace halo_route */

#endif /* HALO_CUDA_ROUTE_CUH */
