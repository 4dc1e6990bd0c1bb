/*
 * y[t * n_rows + r] = sum_c W[r][c] * x[t * n_cols + c], t < n_tok <= MAX_TOK: the
 * matrix-vector product of decode and of small batches, from any weight format
 * (dequant.glsl; TYPE a specialization constant, FAMILY its format family: the
 * includer, mul_mv_<family>.comp, defines it). One workgroup a row: each
 * invocation decodes groups of 32 weights once and multiplies them with every
 * token's activations; the partial sums meet through subgroup sums.
 */
#define WG 64
#define WG_SUM WG
#define MAX_TOK 8
#include "common.glsl"

layout(local_size_x = WG) in;
layout(constant_id = 0) const uint TYPE = 0;
/* Products by expert id (MoE): assignment a (group z, + a0) multiplies matrix ids[a] (at
 * mat_stride bytes a matrix) with activation row a / x_div into y row a; ids < 0 are
 * skipped. One token a workgroup. */
layout(constant_id = 1) const bool BY_ID = false;
/* SwiGLU pairs: binding 0 holds the gate matrix gate_off bytes from off[0] and the up
 * matrix up_off bytes from it (either first); y = silu(W_gate x) * (W_up x), each product
 * summed as the plain one is, the SwiGLU as eltwise.comp's (so the result is the unfused
 * chain's, bit for bit). */
layout(constant_id = 2) const bool GLU = false;

layout(std430, binding = 0) readonly buffer Weights { uint wq[]; };
layout(std430, binding = 1) readonly buffer Acts { float xs[]; };
layout(std430, binding = 2) writeonly buffer Out { float ys[]; };
layout(std430, binding = 3) readonly buffer Ids { int ids[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n_rows, n_cols, row_stride, n_tok;
    uint mat_stride, x_div, a0; /* BY_ID */
    uint gate_off, up_off;      /* GLU */
} pc;

#define WQ wq
#include "dequant.glsl"

/* acc[t] += group g (32 weights of the row at byte rb) . token t's activations */
void dot_group(uint rb, uint g, uint x0, inout float acc[MAX_TOK]) {
    float w[32];
    dq_group(rb, g, pc.n_cols, w);
    uint c0 = g * 32u, nc = min(32u, pc.n_cols - c0);
    for (uint t = 0u; t < pc.n_tok; t++) {
        uint xb = x0 + t * pc.n_cols + c0;
        float s = 0.0;
        if (nc == 32u)
            for (uint i = 0u; i < 32u; i++) s += w[i] * xs[xb + i];
        else
            for (uint i = 0u; i < nc; i++) s += w[i] * xs[xb + i];
        acc[t] += s;
    }
}

void main() {
    uint row = group_index();
    if (row >= pc.n_rows) return; /* the whole workgroup: no barrier is skipped by half */
    uint rb = pc.off[0] + row * pc.row_stride, x0 = pc.off[1] >> 2, y0 = pc.off[2] >> 2;
    if (BY_ID) {
        uint a = pc.a0 + gl_WorkGroupID.z;
        int e = ids[(pc.off[3] >> 2) + a];
        if (e < 0) return; /* the whole workgroup */
        rb += uint(e) * pc.mat_stride;
        x0 += (a / pc.x_div) * pc.n_cols;
        y0 += a * pc.n_rows;
    }
    uint rb_up = rb + pc.up_off;
    if (GLU) rb += pc.gate_off;
    uint n_groups = (pc.n_cols + 31u) / 32u;
    float acc[MAX_TOK], acc_up[MAX_TOK];
    for (uint t = 0u; t < MAX_TOK; t++) acc[t] = 0.0, acc_up[t] = 0.0;
    for (uint g = gl_LocalInvocationID.x; g < n_groups; g += WG) {
        dot_group(rb, g, x0, acc);
        if (GLU) dot_group(rb_up, g, x0, acc_up);
    }
    for (uint t = 0u; t < pc.n_tok; t++) {
        float s = wg_sum(acc[t]);
        if (GLU) {
            float u = wg_sum(acc_up[t]);
            s = s / (1.0 + exp_f32(-s)) * u;
        }
        if (gl_LocalInvocationID.x == 0u) ys[y0 + t * pc.n_rows + row] = s;
    }
}
