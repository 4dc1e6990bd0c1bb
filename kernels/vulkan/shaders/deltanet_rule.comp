#version 450
/*
 * Gated DeltaNet, phase 2: the delta rule over a segment's tokens, in order, with its
 * sequence's state, then the gated RMS norm of each token's head output (kernels/cpu:
 * halo_deltanet_recurrent, tiled, and halo_deltanet_norm_gated). One workgroup a (value
 * head h, segment j) = (group x, group y); value head h reads key head h % n_k_heads.
 *
 * The head's state S [dk][dv] stays in registers for the whole segment: invocation i
 * holds R rows of C columns, rows part * R .. + R (part = i / NCG) of columns
 * i % NCG + NCG * c (c < C), NCG = WG / P column groups, P = dk / R parts of a column
 * (WG, R, C: specialization constants; the host picks them so that NCG * C = dv). A token:
 *     kv = S^T k, sq = S^T q (each part's partial sums through shared memory, summed by
 *     every part of the column), kq = k.q;  delta = beta (v - decay kv);
 *     o = decay sq + kq delta (= S'^T q);  S' = decay S + k delta^T
 * with decay = e^g, as the CPU's recurrent form (the state is read once a token).
 * Then o = o / sqrt(mean(o^2) + eps) * w * silu(z) over the head's dv values.
 *
 * The segments (seg): offsets seg[0 .. n_seg], then the sequences seg[n_seg + 1 + j];
 * sequence s's state at state + s * ssm_stride, head h's at + h * dk * dv.
 * Bindings: conv (rows [n][ch]: q heads, k heads, v heads), g, beta [n][n_v_heads],
 * z [n][n_v_heads * dv], w [dv], state, seg, o [n][n_v_heads * dv].
 */
#define MAX_WG 512
#define MAX_DK 1024
#define WG_SUM MAX_WG
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint R = 32;
layout(constant_id = 2) const uint C = 1;

layout(std430, binding = 0) readonly buffer Conv { float conv[]; };
layout(std430, binding = 1) readonly buffer G { float gs[]; };
layout(std430, binding = 2) readonly buffer Beta { float betas[]; };
layout(std430, binding = 3) readonly buffer Z { float zs[]; };
layout(std430, binding = 4) readonly buffer Wn { float ws[]; };
layout(std430, binding = 5) buffer State { float st[]; };
layout(std430, binding = 6) readonly buffer Seg { int seg[]; };
layout(std430, binding = 7) writeonly buffer O { float os[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n_k_heads, n_v_heads, dk, dv, ch, ssm_stride, n_seg;
    float eps;
    uint chunk_from; /* segments this long and longer are deltanet_chunk.comp's */
} pc;

shared float q_sh[MAX_DK], k_sh[MAX_DK];
shared float red_kv[gl_WorkGroupSize.x * C], red_sq[gl_WorkGroupSize.x * C];
shared float red_kq[gl_WorkGroupSize.x];

void main() {
    const uint WG = gl_WorkGroupSize.x, tid = gl_LocalInvocationID.x;
    const uint h = gl_WorkGroupID.x, j = gl_WorkGroupID.y, s0 = pc.off[6] >> 2;
    const uint first = uint(seg[s0 + j]), len = uint(seg[s0 + j + 1u]) - first;
    if (len == 0u || len >= pc.chunk_from) return; /* uniform */
    const uint dk = pc.dk, dv = pc.dv, P = dk / R, ncg = WG / P;
    const uint part = tid / ncg, cg = tid % ncg, r0 = part * R;
    const uint kh = h % pc.n_k_heads, vd = pc.n_v_heads * dv;
    const uint st0 = (pc.off[5] >> 2) + uint(seg[s0 + pc.n_seg + 1u + j]) * pc.ssm_stride +
                     h * dk * dv;

    float S[R * C];
    for (uint c = 0u; c < C; c++)
        for (uint r = 0u; r < R; r++) S[c * R + r] = st[st0 + (r0 + r) * dv + cg + c * ncg];

    float oj[C];
    for (uint it = 0u; it < len; it++) {
        const uint t = first + it;
        const uint q0 = (pc.off[0] >> 2) + t * pc.ch + kh * dk;
        for (uint i = tid; i < dk; i += WG) {
            q_sh[i] = conv[q0 + i];
            k_sh[i] = conv[q0 + pc.n_k_heads * dk + i];
        }
        barrier();
        /* this invocation's partial sums over its rows */
        for (uint c = 0u; c < C; c++) {
            float kv = 0.0, sq = 0.0;
            for (uint r = 0u; r < R; r++) {
                kv += S[c * R + r] * k_sh[r0 + r];
                sq += S[c * R + r] * q_sh[r0 + r];
            }
            red_kv[part * dv + cg + c * ncg] = kv;
            red_sq[part * dv + cg + c * ncg] = sq;
        }
        if (cg == 0u) {
            float kq = 0.0;
            for (uint r = 0u; r < R; r++) kq += k_sh[r0 + r] * q_sh[r0 + r];
            red_kq[part] = kq;
        }
        barrier();
        const float decay = exp_f32(gs[(pc.off[1] >> 2) + t * pc.n_v_heads + h]);
        const float bt = betas[(pc.off[2] >> 2) + t * pc.n_v_heads + h];
        const uint v0 = (pc.off[0] >> 2) + t * pc.ch + 2u * pc.n_k_heads * dk + h * dv;
        float kq = 0.0;
        for (uint p = 0u; p < P; p++) kq += red_kq[p];
        float ss = 0.0;
        for (uint c = 0u; c < C; c++) {
            const uint col = cg + c * ncg;
            float kv = 0.0, sq = 0.0;
            for (uint p = 0u; p < P; p++) {
                kv += red_kv[p * dv + col];
                sq += red_sq[p * dv + col];
            }
            const float delta = (conv[v0 + col] - decay * kv) * bt;
            oj[c] = decay * sq + kq * delta;
            for (uint r = 0u; r < R; r++)
                S[c * R + r] = S[c * R + r] * decay + k_sh[r0 + r] * delta;
            if (part == 0u) ss += oj[c] * oj[c];
        }
        /* the gated norm; wg_sum's barriers also end this token's use of shared memory */
        const float f = 1.0 / sqrt(wg_sum(ss) / float(dv) + pc.eps);
        if (part == 0u) {
            const uint o0 = t * vd + h * dv;
            for (uint c = 0u; c < C; c++) {
                const uint col = cg + c * ncg;
                const float z = zs[(pc.off[3] >> 2) + o0 + col];
                os[(pc.off[7] >> 2) + o0 + col] =
                    oj[c] * f * ws[(pc.off[4] >> 2) + col] * (z / (1.0 + exp_f32(-z)));
            }
        }
    }
    for (uint c = 0u; c < C; c++)
        for (uint r = 0u; r < R; r++) st[st0 + (r0 + r) * dv + cg + c * ncg] = S[c * R + r];
}
