#version 450
/* dst[r * dst_stride + i] = src[r * src_stride + i], i < width (x), r < rows (y). */
#define WG 256
#include "common.glsl"

layout(local_size_x = WG) in;

layout(std430, binding = 0) writeonly buffer Dst { float dst[]; };
layout(std430, binding = 1) readonly buffer Src { float src[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint dst_stride, src_stride, width, row0;
} pc;

void main() {
    uint i = gl_GlobalInvocationID.x, r = pc.row0 + gl_WorkGroupID.y;
    if (i >= pc.width) return;
    dst[(pc.off[0] >> 2) + r * pc.dst_stride + i] = src[(pc.off[1] >> 2) + r * pc.src_stride + i];
}
