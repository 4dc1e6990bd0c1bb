#version 450
/*
 * Gated DeltaNet, phase 2 in chunks (prompts): the delta rule over a segment's tokens C at
 * a time, then the gated RMS norm of each token's head output; the same bindings, push
 * constants and workgroups (value head h, segment j) as deltanet_rule.comp, which runs the
 * segments shorter than pc.chunk_from while this shader runs the others (each returns at
 * once for the segments of the other).
 *
 * A chunk of n <= C tokens, cumulative decays c_i = g_1 + ... + g_i, state S0 at its start
 * (kernels/cpu/deltanet.c, halo_deltanet_chunked, has the derivation): with
 *     A_im = -beta_i (k_i.k_m) e^{c_i - c_m} (m < i),  P_im = (q_i.k_m) e^{c_i - c_m} (m <= i),
 * the values the chunk writes come by forward substitution,
 *     v'_i = beta_i (v_i - e^{c_i} S0^T k_i) + sum_{m<i} A_im v'_m
 * (the WY form folded: (I - A) V' = diag(beta) (V - diag(e^c) K S0)), the outputs are
 *     o_i = e^{c_i} S0^T q_i + sum_{m<=i} P_im v'_m
 * and the state after the chunk is S = e^{c_n} S0 + sum_i e^{c_n - c_i} k_i v'_i^T.
 *
 * Invocation i of WG = dv / NC owns the columns i + WG c (c < NC) of the state, all DK
 * rows, in registers (NC, DK: specialization constants, DK = dk); column j of v', o and
 * S depends on column j of S0 and V only, so the substitution and the update need no
 * exchange. Shared memory holds the chunk's decays and betas and the matrices A (below
 * the diagonal of M), P (transposed above it; its diagonal in pd): C^2 + 6 C floats.
 * q and k are read from the conv buffer (every invocation the same address). The gated
 * norm reads the chunk's unnormalized outputs back from o after a buffer barrier: one
 * invocation a token sums the squares, then each invocation scales its columns.
 *
 * Every exponent is <= 0 (g <= 0); decays below e^-87 (~1.6e-38, the smallest normal
 * floats) are taken as 0, so no subnormal enters the products (kernels/cpu/deltanet.c
 * flushes them for speed; here it is also for CPU drivers such as lavapipe).
 */
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint DK = 128;
layout(constant_id = 2) const uint NC = 1;
layout(constant_id = 3) const uint C = 32;

layout(std430, binding = 0) readonly buffer Conv { float conv[]; };
layout(std430, binding = 1) readonly buffer G { float gs[]; };
layout(std430, binding = 2) readonly buffer Beta { float betas[]; };
layout(std430, binding = 3) readonly buffer Z { float zs[]; };
layout(std430, binding = 4) readonly buffer Wn { float ws[]; };
layout(std430, binding = 5) buffer State { float st[]; };
layout(std430, binding = 6) readonly buffer Seg { int seg[]; };
layout(std430, binding = 7) coherent buffer O { float os[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n_k_heads, n_v_heads, dk, dv, ch, ssm_stride, n_seg;
    float eps;
    uint chunk_from;
} pc;

shared float M[C * C];
shared float pd[C], cum[C], ec[C], en[C], bt[C], fn[C];

float decay(float x) { return x < -87.0 ? 0.0 : exp_f32(x); }

void main() {
    const uint WG = gl_WorkGroupSize.x, tid = gl_LocalInvocationID.x;
    const uint h = gl_WorkGroupID.x, j = gl_WorkGroupID.y, s0 = pc.off[6] >> 2;
    const uint first = uint(seg[s0 + j]), len = uint(seg[s0 + j + 1u]) - first;
    if (len == 0u || len < pc.chunk_from) return; /* uniform */
    const uint dv = pc.dv, kh = h % pc.n_k_heads, vd = pc.n_v_heads * dv, nvh = pc.n_v_heads;
    const uint st0 = (pc.off[5] >> 2) + uint(seg[s0 + pc.n_seg + 1u + j]) * pc.ssm_stride +
                     h * DK * dv;
    const uint cv = pc.off[0] >> 2, qo = kh * DK, ko = (pc.n_k_heads + kh) * DK,
               vo = 2u * pc.n_k_heads * DK + h * dv;
    const uint g0 = pc.off[1] >> 2, b0 = pc.off[2] >> 2, z0 = pc.off[3] >> 2;
    const uint w0 = pc.off[4] >> 2, o0 = (pc.off[7] >> 2) + h * dv;

    float S[DK * NC];
    for (uint c = 0u; c < NC; c++)
        for (uint d = 0u; d < DK; d++) S[c * DK + d] = st[st0 + d * dv + tid + c * WG];
    float vp[C * NC];

    for (uint t0 = 0u; t0 < len; t0 += C) {
        const uint n = min(C, len - t0), tb = first + t0;
        if (tid == 0u) {
            float run = 0.0;
            for (uint i = 0u; i < n; i++) {
                run += gs[g0 + (tb + i) * nvh + h];
                cum[i] = run;
                bt[i] = betas[b0 + (tb + i) * nvh + h];
            }
            for (uint i = 0u; i < n; i++) {
                ec[i] = decay(cum[i]);
                en[i] = decay(run - cum[i]);
            }
        }
        barrier();
        /* A and P: the pairs m <= i of the chunk */
        for (uint p = tid; p < n * n; p += WG) {
            const uint i = p / n, m = p % n;
            if (m > i) continue;
            const uint ri = cv + (tb + i) * pc.ch, rm = cv + (tb + m) * pc.ch + ko;
            float kk = 0.0, qk = 0.0;
            for (uint d = 0u; d < DK; d++) {
                const float km = conv[rm + d];
                kk += conv[ri + ko + d] * km;
                qk += conv[ri + qo + d] * km;
            }
            const float e = decay(cum[i] - cum[m]);
            if (m < i) {
                M[i * C + m] = -bt[i] * kk * e;
                M[m * C + i] = qk * e;
            } else
                pd[i] = qk;
        }
        barrier();
        for (uint c = 0u; c < NC; c++) {
            const uint col = tid + c * WG;
            for (uint i = 0u; i < n; i++) {
                const uint r = cv + (tb + i) * pc.ch;
                float kv = 0.0, sq = 0.0;
                for (uint d = 0u; d < DK; d++) {
                    kv += conv[r + ko + d] * S[c * DK + d];
                    sq += conv[r + qo + d] * S[c * DK + d];
                }
                float x = bt[i] * (conv[r + vo + col] - ec[i] * kv), o = ec[i] * sq;
                for (uint m = 0u; m < i; m++) {
                    x += M[i * C + m] * vp[c * C + m];
                    o += M[m * C + i] * vp[c * C + m];
                }
                vp[c * C + i] = x;
                os[o0 + (tb + i) * vd + col] = o + pd[i] * x;
            }
            const float el = ec[n - 1u];
            for (uint d = 0u; d < DK; d++) {
                float s = S[c * DK + d] * el;
                for (uint i = 0u; i < n; i++)
                    s += en[i] * conv[cv + (tb + i) * pc.ch + ko + d] * vp[c * C + i];
                S[c * DK + d] = s;
            }
        }
        /* the gated norm of the chunk's outputs */
        memoryBarrierBuffer();
        barrier();
        for (uint i = tid; i < n; i += WG) {
            const uint r = o0 + (tb + i) * vd;
            float ss = 0.0;
            for (uint k = 0u; k < dv; k++) ss += os[r + k] * os[r + k];
            fn[i] = 1.0 / sqrt(ss / float(dv) + pc.eps);
        }
        barrier();
        for (uint c = 0u; c < NC; c++) {
            const uint col = tid + c * WG;
            const float w = ws[w0 + col];
            for (uint i = 0u; i < n; i++) {
                const uint at = (tb + i) * vd + h * dv + col;
                const float z = zs[z0 + at];
                os[o0 + (tb + i) * vd + col] *= fn[i] * w * (z / (1.0 + exp_f32(-z)));
            }
        }
        /* the next chunk writes cum .. bt now that every invocation is past their last
         * read (the barrier above), M and pd after its first barrier, fn after its third */
    }
    for (uint c = 0u; c < NC; c++)
        for (uint d = 0u; d < DK; d++) st[st0 + d * dv + tid + c * WG] = S[c * DK + d];
}
