#version 450
/*
 * Elementwise ops on n floats, OP a specialization constant:
 *   0 add:          a += b
 *   1 swiglu:       a = silu(a) * b
 *   2 sigmoid gate: a *= sigmoid(b)
 */
#define WG 256
#include "common.glsl"

layout(local_size_x = WG) in;
layout(constant_id = 0) const uint OP = 0;

layout(std430, binding = 0) buffer A { float as_[]; };
layout(std430, binding = 1) readonly buffer B { float bs[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n;
} pc;

void main() {
    uint i = group_index() * WG + gl_LocalInvocationID.x;
    if (i >= pc.n) return;
    uint a = (pc.off[0] >> 2) + i;
    float b = bs[(pc.off[1] >> 2) + i];
    if (OP == 0u)
        as_[a] += b;
    else if (OP == 1u)
        as_[a] = as_[a] / (1.0 + exp_f32(-as_[a])) * b;
    else
        as_[a] = as_[a] / (1.0 + exp_f32(-b));
}
