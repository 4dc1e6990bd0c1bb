#version 450
/*
 * The parts of a split attention (attn.comp with SPLIT 1) merged, one workgroup a (query
 * head, token): part z of (t, h) holds its running max m_z (-inf where it had no
 * position), sum l_z and unnormalized output acc_z at ((t n_head + h) n_split + z)
 * (hd_v + 2) of the workspace; with M = max m_z,
 *     out[d] = sum_z exp(m_z - M) acc_z[d] / sum_z exp(m_z - M) l_z.
 * All in f32. Bindings: the workspace, out.
 */
#define WG 64
#include "common.glsl"

layout(local_size_x = WG) in;

layout(std430, binding = 0) readonly buffer Work { float ws[]; };
layout(std430, binding = 1) writeonly buffer Out { float outs[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n_head, hd_v, n_split, t0;
} pc;

void main() {
    uint h = gl_WorkGroupID.x, t = pc.t0 + gl_WorkGroupID.y, me = gl_LocalInvocationID.x;
    uint stride = pc.hd_v + 2u;
    uint w0 = (pc.off[0] >> 2) + (t * pc.n_head + h) * pc.n_split * stride;
    float big = -1.0 / 0.0;
    for (uint z = 0u; z < pc.n_split; z++) big = max(big, ws[w0 + z * stride]);
    float l = 0.0;
    for (uint z = 0u; z < pc.n_split; z++)
        l += exp_f32(ws[w0 + z * stride] - big) * ws[w0 + z * stride + 1u];
    uint o0 = (pc.off[1] >> 2) + (t * pc.n_head + h) * pc.hd_v;
    for (uint d = me; d < pc.hd_v; d += WG) {
        float a = 0.0;
        for (uint z = 0u; z < pc.n_split; z++)
            a += exp_f32(ws[w0 + z * stride] - big) * ws[w0 + z * stride + 2u + d];
        outs[o0 + d] = a / l;
    }
}
