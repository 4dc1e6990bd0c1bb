#version 450
/*
 * Gated DeltaNet, the delta rule (recurrent form, as halo_deltanet_recurrent) and the gated
 * RMS norm of value head h (group x) over segment j (group y), tokens in order: value head
 * h reads key head h % hk (the tiled order). Invocation i owns columns i, i + WG of the
 * head's state S [dk][dv] (loaded once, written back at the end); per token
 *     kv = S^T k, sq = S^T q, delta = (v - decay kv) beta,
 *     o = decay sq + (k.q) delta,  S = decay S + k delta^T,
 * then o = o / sqrt(mean(o^2) + eps) * norm_w * silu(z).
 * Bindings: conv rows [n][ch] (q, k, v), g, beta [n][hv], z [n][hv * dv], norm_w [dv],
 * SSM state, o [n][hv * dv], segs (seg_off then seg_seq).
 */
#define WG 128
#define WG_SUM WG
#define MAX_DK 256
#define COLS 2 /* dv <= WG * COLS */
#include "common.glsl"

layout(local_size_x = WG) in;

layout(std430, binding = 0) readonly buffer Conv { float cv[]; };
layout(std430, binding = 1) readonly buffer G { float gs[]; };
layout(std430, binding = 2) readonly buffer Beta { float bs[]; };
layout(std430, binding = 3) readonly buffer Z { float zs[]; };
layout(std430, binding = 4) readonly buffer NormW { float nw[]; };
layout(std430, binding = 5) buffer State { float st[]; };
layout(std430, binding = 6) writeonly buffer O { float os[]; };
layout(std430, binding = 7) readonly buffer Segs { int segs[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint ch, hk, hv, dk, dv, state_stride, seq_at;
    float eps;
} pc;

shared float q_sh[MAX_DK], k_sh[MAX_DK];

void main() {
    uint h = gl_WorkGroupID.x, j = gl_WorkGroupID.y, me = gl_LocalInvocationID.x;
    uint s0 = pc.off[7] >> 2;
    uint t0 = uint(segs[s0 + j]), t1 = uint(segs[s0 + j + 1u]), seq = uint(segs[s0 + pc.seq_at + j]);
    uint kh = h % pc.hk, dk = pc.dk, dv = pc.dv, vd = pc.hv * dv;
    uint sb = (pc.off[5] >> 2) + seq * pc.state_stride + h * dk * dv;
    float S[COLS][MAX_DK];
    for (uint c = 0u; c < COLS; c++) {
        uint col = c * WG + me;
        if (col < dv)
            for (uint d = 0u; d < dk; d++) S[c][d] = st[sb + d * dv + col];
    }
    for (uint t = t0; t < t1; t++) {
        uint row = (pc.off[0] >> 2) + t * pc.ch;
        for (uint d = me; d < dk; d += WG) {
            q_sh[d] = cv[row + kh * dk + d];
            k_sh[d] = cv[row + (pc.hk + kh) * dk + d];
        }
        barrier();
        float kq = 0.0;
        for (uint d = 0u; d < dk; d++) kq += k_sh[d] * q_sh[d];
        float decay = exp_f32(gs[(pc.off[1] >> 2) + t * pc.hv + h]);
        float beta = bs[(pc.off[2] >> 2) + t * pc.hv + h];
        float o[COLS], ss = 0.0;
        for (uint c = 0u; c < COLS; c++) {
            uint col = c * WG + me;
            o[c] = 0.0;
            if (col >= dv) continue;
            float kv = 0.0, sq = 0.0;
            for (uint d = 0u; d < dk; d++) {
                kv += S[c][d] * k_sh[d];
                sq += S[c][d] * q_sh[d];
            }
            float v = cv[row + 2u * pc.hk * dk + h * dv + col];
            float delta = (v - decay * kv) * beta;
            o[c] = decay * sq + kq * delta;
            for (uint d = 0u; d < dk; d++) S[c][d] = S[c][d] * decay + k_sh[d] * delta;
            ss += o[c] * o[c];
        }
        float f = 1.0 / sqrt(wg_sum(ss) / float(dv) + pc.eps);
        for (uint c = 0u; c < COLS; c++) {
            uint col = c * WG + me;
            if (col >= dv) continue;
            float z = zs[(pc.off[3] >> 2) + t * vd + h * dv + col];
            os[(pc.off[6] >> 2) + t * vd + h * dv + col] =
                o[c] * f * nw[(pc.off[4] >> 2) + col] * (z / (1.0 + exp_f32(-z)));
        }
    }
    for (uint c = 0u; c < COLS; c++) {
        uint col = c * WG + me;
        if (col < dv)
            for (uint d = 0u; d < dk; d++) st[sb + d * dv + col] = S[c][d];
    }
}
