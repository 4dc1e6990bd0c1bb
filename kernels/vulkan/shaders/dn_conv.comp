#version 450
/*
 * Gated DeltaNet, the causal depthwise conv + SiLU of each segment's tokens (as
 * halo_deltanet_conv): one invocation a (channel c, segment j = group y), the tokens in
 * order, the window of the last kernel-1 inputs starting from the sequence's conv state
 * ([kernel-1][ch], oldest first) and written back to it at the end.
 * Bindings: x [n][ch], w [ch][kernel], conv state, y [n][ch], segs (seg_off[n_seg + 1]
 * then seg_seq[n_seg]).
 */
#define WG 64
#define MAX_CONV 16
#include "common.glsl"

layout(local_size_x = WG) in;

layout(std430, binding = 0) readonly buffer X { float xs[]; };
layout(std430, binding = 1) readonly buffer W { float ws[]; };
layout(std430, binding = 2) buffer State { float st[]; };
layout(std430, binding = 3) writeonly buffer Y { float ys[]; };
layout(std430, binding = 4) readonly buffer Segs { int segs[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint ch, kernel, state_stride, seq_at; /* seq_at: where seg_seq starts in segs */
} pc;

void main() {
    uint c = gl_GlobalInvocationID.x, j = gl_WorkGroupID.y;
    if (c >= pc.ch) return;
    uint s0 = pc.off[4] >> 2;
    uint t0 = uint(segs[s0 + j]), t1 = uint(segs[s0 + j + 1u]), seq = uint(segs[s0 + pc.seq_at + j]);
    uint hist = pc.kernel - 1u, sb = (pc.off[2] >> 2) + seq * pc.state_stride;
    uint w0 = (pc.off[1] >> 2) + c * pc.kernel;
    float win[MAX_CONV];
    for (uint i = 0u; i < hist; i++) win[i] = st[sb + i * pc.ch + c];
    for (uint t = t0; t < t1; t++) {
        float cur = xs[(pc.off[0] >> 2) + t * pc.ch + c], sum = 0.0;
        for (uint i = 0u; i < hist; i++) sum += ws[w0 + i] * win[i];
        sum += ws[w0 + hist] * cur;
        ys[(pc.off[3] >> 2) + t * pc.ch + c] = sum / (1.0 + exp_f32(-sum));
        for (uint i = 0u; i + 1u < hist; i++) win[i] = win[i + 1u];
        if (hist > 0u) win[hist - 1u] = cur;
    }
    for (uint i = 0u; i < hist; i++) st[sb + i * pc.ch + c] = win[i];
}
