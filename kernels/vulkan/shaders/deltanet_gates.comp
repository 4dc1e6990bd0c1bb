#version 450
/*
 * The Gated DeltaNet gates of n tokens x n_v_heads (halo_deltanet_gates): for entry i of
 * value head h = i % n_v_heads,
 *     g[i] = a[h] * softplus(alpha[i] + dt_bias[h]),   beta[i] = sigmoid(b[i])
 * with torch's threshold (softplus(s) = s past 20). alpha, b may be g, beta.
 * Bindings: alpha, b, a, dt_bias, g, beta.
 */
#define WG 256
#include "common.glsl"

layout(local_size_x = WG) in;

layout(std430, binding = 0) readonly buffer Alpha { float alphas[]; };
layout(std430, binding = 1) readonly buffer B { float bs[]; };
layout(std430, binding = 2) readonly buffer A { float as_[]; };
layout(std430, binding = 3) readonly buffer Dt { float dts[]; };
layout(std430, binding = 4) writeonly buffer G { float gs[]; };
layout(std430, binding = 5) writeonly buffer Beta { float betas[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n, n_v_heads;
} pc;

/* log(1 + e) for e in [0, 1], within a few ulp (Vulkan's log may be off by 2^-21
 * absolute near 1, which is all of a small result): 2 atanh(r), r = e / (2 + e) <= 1/3,
 * by its odd series to r^15 (the next term is below 1e-9 of the result). */
float log1p_01(float e) {
    precise float r = e / (2.0 + e), r2 = r * r;
    precise float s = 2.0 / 13.0 + r2 * (2.0 / 15.0);
    s = 2.0 / 11.0 + r2 * s;
    s = 2.0 / 9.0 + r2 * s;
    s = 2.0 / 7.0 + r2 * s;
    s = 2.0 / 5.0 + r2 * s;
    s = 2.0 / 3.0 + r2 * s;
    s = 2.0 + r2 * s;
    return r * s;
}

void main() {
    uint i = group_index() * WG + gl_LocalInvocationID.x;
    if (i >= pc.n) return;
    uint h = i % pc.n_v_heads;
    float s = alphas[(pc.off[0] >> 2) + i] + dts[(pc.off[3] >> 2) + h];
    float b = bs[(pc.off[1] >> 2) + i];
    /* log(1 + e^s) = max(s, 0) + log(1 + e^-|s|) */
    float softplus = s > 20.0 ? s : max(s, 0.0) + log1p_01(exp_f32(-abs(s)));
    gs[(pc.off[4] >> 2) + i] = as_[(pc.off[2] >> 2) + h] * softplus;
    betas[(pc.off[5] >> 2) + i] = 1.0 / (1.0 + exp_f32(-b));
}
