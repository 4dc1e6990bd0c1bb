#version 450
/*
 * RMS norm of each row (one workgroup a row): y = x / sqrt(mean(x^2) + eps) * w (no w:
 * no scale); y may be x. With ADD (a specialization constant) the residual first:
 * x += r (written back), then y = rms_norm(x) * w.
 * Bindings: x, w, y, r.
 */
#define WG 128
#define WG_SUM WG
#include "common.glsl"

layout(local_size_x = WG) in;
layout(constant_id = 0) const bool ADD = false;

layout(std430, binding = 0) buffer X { float xs[]; };
layout(std430, binding = 1) readonly buffer W { float ws[]; };
layout(std430, binding = 2) writeonly buffer Y { float ys[]; };
layout(std430, binding = 3) readonly buffer R { float rs[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n_rows, n, has_w;
    float eps;
} pc;

void main() {
    uint row = group_index();
    if (row >= pc.n_rows) return;
    uint x0 = (pc.off[0] >> 2) + row * pc.n, w0 = pc.off[1] >> 2;
    uint y0 = (pc.off[2] >> 2) + row * pc.n, r0 = (pc.off[3] >> 2) + row * pc.n;
    float ss = 0.0;
    for (uint i = gl_LocalInvocationID.x; i < pc.n; i += WG) {
        float v = xs[x0 + i];
        if (ADD) {
            v += rs[r0 + i];
            xs[x0 + i] = v;
        }
        ss += v * v;
    }
    float scale = 1.0 / sqrt(wg_sum(ss) / float(pc.n) + pc.eps);
    for (uint i = gl_LocalInvocationID.x; i < pc.n; i += WG) {
        float v = xs[x0 + i] * scale;
        if (pc.has_w != 0u) v *= ws[w0 + i];
        ys[y0 + i] = v;
    }
}
