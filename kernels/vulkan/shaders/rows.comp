#version 450
/*
 * Rows by index, row i = group y (+ i0), width floats each:
 *   gather (SCATTER false): dst[i] = src[idx[i]];  scatter: dst[idx[i]] = src[i].
 */
#define WG 256
#include "common.glsl"

layout(local_size_x = WG) in;
layout(constant_id = 0) const bool SCATTER = false;

layout(std430, binding = 0) writeonly buffer Dst { float dst[]; };
layout(std430, binding = 1) readonly buffer Src { float src[]; };
layout(std430, binding = 2) readonly buffer Idx { int idx[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint width, i0;
} pc;

void main() {
    uint c = gl_GlobalInvocationID.x, i = pc.i0 + gl_WorkGroupID.y;
    if (c >= pc.width) return;
    uint j = uint(idx[(pc.off[2] >> 2) + i]);
    uint d = SCATTER ? j : i, s = SCATTER ? i : j;
    dst[(pc.off[0] >> 2) + d * pc.width + c] = src[(pc.off[1] >> 2) + s * pc.width + c];
}
