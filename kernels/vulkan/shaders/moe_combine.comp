#version 450
/*
 * The routed experts' weighted sum of token t (group y): out[t][d] = sum_j w[t*k + j] *
 * y[(t*k + j) * n_embd + d], in the order of j; then, with a shared expert,
 * out[t][d] += sigmoid(shg[t]) * sh[t * n_embd + d].
 * Bindings: y, w, sh, shg, out.
 */
#define WG 256
#include "common.glsl"

layout(local_size_x = WG) in;

layout(std430, binding = 0) readonly buffer Y { float ys[]; };
layout(std430, binding = 1) readonly buffer W { float ws[]; };
layout(std430, binding = 2) readonly buffer Sh { float sh[]; };
layout(std430, binding = 3) readonly buffer Shg { float shg[]; };
layout(std430, binding = 4) writeonly buffer Out { float outs[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint k, n_embd, shared_, t0;
} pc;

void main() {
    uint d = gl_GlobalInvocationID.x, t = pc.t0 + gl_WorkGroupID.y;
    if (d >= pc.n_embd) return;
    float acc = 0.0;
    for (uint j = 0u; j < pc.k; j++)
        acc += ws[(pc.off[1] >> 2) + t * pc.k + j] * ys[(pc.off[0] >> 2) + (t * pc.k + j) * pc.n_embd + d];
    if (pc.shared_ != 0u)
        acc += sh[(pc.off[2] >> 2) + t * pc.n_embd + d] / (1.0 + exp_f32(-shg[(pc.off[3] >> 2) + t]));
    outs[(pc.off[4] >> 2) + t * pc.n_embd + d] = acc;
}
