#version 450
/*
 * Gated DeltaNet after the conv, token t (group y): GATES false: the L2 norms of the
 * first 2 * hk heads of dk values of the conv row (head b = group x; q heads scaled by
 * q_scale), x = x * scale / sqrt(sum x^2 + eps), as halo_deltanet_l2_norm. GATES true:
 * the decay and beta of value head h (invocation x), as halo_deltanet_gates:
 * g = a[h] * softplus(alpha + dt_bias[h]), beta = sigmoid(b).
 * Bindings: GATES false: conv rows [n][ch]; true: alpha, b, a, dt_bias, g, beta
 * ([n][hv] each but a, dt_bias [hv]).
 */
#define WG 64
#define WG_SUM WG
#include "common.glsl"

layout(local_size_x = WG) in;
layout(constant_id = 0) const bool GATES = false;

layout(std430, binding = 0) buffer B0 { float b0[]; };
layout(std430, binding = 1) readonly buffer B1 { float b1[]; };
layout(std430, binding = 2) readonly buffer B2 { float b2[]; };
layout(std430, binding = 3) readonly buffer B3 { float b3[]; };
layout(std430, binding = 4) writeonly buffer B4 { float b4[]; };
layout(std430, binding = 5) writeonly buffer B5 { float b5[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint ch, hk, dk, hv;
    float q_scale, eps;
} pc;

void main() {
    uint t = gl_WorkGroupID.y;
    if (GATES) {
        uint h = gl_GlobalInvocationID.x;
        if (h >= pc.hv) return;
        uint i = t * pc.hv + h;
        float s = b0[(pc.off[0] >> 2) + i] + b3[(pc.off[3] >> 2) + h];
        float softplus = s > 20.0 ? s : log(1.0 + exp_f32(s));
        b4[(pc.off[4] >> 2) + i] = b2[(pc.off[2] >> 2) + h] * softplus;
        b5[(pc.off[5] >> 2) + i] = 1.0 / (1.0 + exp_f32(-b1[(pc.off[1] >> 2) + i]));
        return;
    }
    uint b = gl_WorkGroupID.x, r = (pc.off[0] >> 2) + t * pc.ch + b * pc.dk;
    float ss = 0.0;
    for (uint d = gl_LocalInvocationID.x; d < pc.dk; d += WG) ss += b0[r + d] * b0[r + d];
    float f = (b < pc.hk ? pc.q_scale : 1.0) / sqrt(wg_sum(ss) + pc.eps);
    for (uint d = gl_LocalInvocationID.x; d < pc.dk; d += WG) b0[r + d] *= f;
}
