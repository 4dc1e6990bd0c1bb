/*
 * Embedding rows: y[i * n_cols + c] = decoded W[rows[i]][c] for the n rows of this
 * dispatch (y row i = group y), any weight format (dequant.glsl; TYPE a
 * specialization constant, FAMILY defined by the includer, get_rows_<family>.comp),
 * bit-exact with the CPU's decoders. Each invocation writes one group of 32 values.
 */
#define WG 64
#include "common.glsl"

layout(local_size_x = WG) in;
layout(constant_id = 0) const uint TYPE = 0;

layout(std430, binding = 0) readonly buffer Weights { uint wq[]; };
layout(std430, binding = 1) readonly buffer Rows { int rows[]; };
layout(std430, binding = 2) writeonly buffer Out { float ys[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n_cols, row_stride;
} pc;

#define WQ wq
#include "dequant.glsl"

void main() {
    uint i = gl_WorkGroupID.y, g = gl_GlobalInvocationID.x;
    uint n_groups = (pc.n_cols + 31u) / 32u;
    if (g >= n_groups) return;
    uint r = uint(rows[(pc.off[1] >> 2) + i]);
    float w[32];
    dq_group(pc.off[0] + r * pc.row_stride, g, pc.n_cols, w);
    uint y0 = (pc.off[2] >> 2) + i * pc.n_cols + g * 32u, nc = min(32u, pc.n_cols - g * 32u);
    for (uint l = 0u; l < nc; l++) ys[y0 + l] = w[l];
}
