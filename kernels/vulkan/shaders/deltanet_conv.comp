#version 450
/*
 * Gated DeltaNet, phase 1 (kernels/cpu/deltanet.c's conv and L2 norm, as model/qwen35.c
 * chains them), in two passes (STATE, a specialization constant):
 *
 * STATE false: the causal depthwise conv + SiLU of token t (group y, + t0) with its
 * sequence's conv state (rows [kernel - 1][n_ch], the oldest first). Group x < 2 n_k_heads
 * is one q or k head (dk channels), L2-normalized in the group (q also scaled by
 * q_scale); the later groups cover WG v channels each. Every token reads only inputs
 * (its segment's earlier rows, or the state), so the tokens run in parallel.
 * STATE true: segment j (group y) replaces its sequence's state by its last kernel - 1
 * inputs (group x: WG channels), after every token of the pass above read the old one.
 *
 * The segments (seg): offsets seg[0 .. n_seg] (segment j is tokens seg[j] .. seg[j+1]-1),
 * then the sequences seg[n_seg + 1 + j]; sequence s's state at state + s * conv_stride.
 * Bindings: x, w [n_ch][kernel], state, y, seg.
 */
#define WG 128
#define WG_SUM WG
#define MAX_PER 8 /* channels of a head per invocation: head dims up to 1024 */
#include "common.glsl"

layout(local_size_x = WG) in;
layout(constant_id = 0) const bool STATE = false;

layout(std430, binding = 0) readonly buffer X { float xs[]; };
layout(std430, binding = 1) readonly buffer W { float ws[]; };
layout(std430, binding = 2) buffer State { float st[]; };
layout(std430, binding = 3) writeonly buffer Y { float ys[]; };
layout(std430, binding = 4) readonly buffer Seg { int seg[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n_ch, kernel, conv_stride, n_seg, n_k_heads, dk, t0;
    float q_scale;
} pc;

float silu(float v) { return v / (1.0 + exp_f32(-v)); }

/* The segment holding token t: the last j with seg[j] <= t; n_seg when none does. */
uint find_segment(uint t) {
    uint s0 = pc.off[4] >> 2, lo = 0u, hi = pc.n_seg;
    while (hi - lo > 1u) {
        uint mid = (lo + hi) / 2u;
        if (uint(seg[s0 + mid]) <= t) lo = mid;
        else hi = mid;
    }
    return uint(seg[s0 + lo]) <= t && t < uint(seg[s0 + lo + 1u]) ? lo : pc.n_seg;
}

void conv_token() {
    const uint t = pc.t0 + gl_WorkGroupID.y, s0 = pc.off[4] >> 2;
    const uint j = find_segment(t);
    if (j == pc.n_seg) return; /* uniform: the whole group's token */
    const uint first = uint(seg[s0 + j]), p = t - first, hist = pc.kernel - 1u;
    const uint st0 = (pc.off[2] >> 2) + uint(seg[s0 + pc.n_seg + 1u + j]) * pc.conv_stride;
    const uint x0 = pc.off[0] >> 2, w0 = pc.off[1] >> 2, y0 = (pc.off[3] >> 2) + t * pc.n_ch;
    const uint nb = 2u * pc.n_k_heads, b = gl_WorkGroupID.x;
    const bool head = b < nb;
    const uint c0 = head ? b * pc.dk : nb * pc.dk + (b - nb) * WG;
    const uint c1 = head ? c0 + pc.dk : min(c0 + WG, pc.n_ch);
    float vals[MAX_PER];
    float ss = 0.0;
    uint n = 0u;
    for (uint c = c0 + gl_LocalInvocationID.x; c < c1; c += WG, n++) {
        float sum = 0.0;
        for (uint k = 0u; k < pc.kernel; k++) {
            int src = int(p) - int(hist) + int(k); /* < 0: from the state */
            float v = src >= 0 ? xs[x0 + (first + uint(src)) * pc.n_ch + c]
                               : st[st0 + uint(int(hist) + src) * pc.n_ch + c];
            sum += ws[w0 + c * pc.kernel + k] * v;
        }
        vals[n] = silu(sum);
        ss += vals[n] * vals[n];
    }
    if (head) { /* the head's L2 norm */
        const float f = (b < pc.n_k_heads ? pc.q_scale : 1.0) / sqrt(wg_sum(ss) + 1e-6);
        for (uint i = 0u; i < n; i++) vals[i] *= f;
    }
    n = 0u;
    for (uint c = c0 + gl_LocalInvocationID.x; c < c1; c += WG, n++) ys[y0 + c] = vals[n];
}

/* Row r of the new state takes input len - hist + r, or (a short segment) old row
 * r + len > r, not yet overwritten in this ascending loop. */
void conv_state() {
    const uint c = gl_WorkGroupID.x * WG + gl_LocalInvocationID.x;
    if (c >= pc.n_ch) return;
    const uint j = gl_WorkGroupID.y, s0 = pc.off[4] >> 2;
    const uint first = uint(seg[s0 + j]), len = uint(seg[s0 + j + 1u]) - first;
    const uint st0 = (pc.off[2] >> 2) + uint(seg[s0 + pc.n_seg + 1u + j]) * pc.conv_stride;
    const uint hist = pc.kernel - 1u, x0 = pc.off[0] >> 2;
    for (uint r = 0u; r < hist; r++) {
        int src = int(len) - int(hist) + int(r);
        st[st0 + r * pc.n_ch + c] = src >= 0 ? xs[x0 + (first + uint(src)) * pc.n_ch + c]
                                             : st[st0 + uint(int(hist) + src) * pc.n_ch + c];
    }
}

void main() {
    if (STATE) conv_state();
    else conv_token();
}
