#version 450
/*
 * Attention over a paged KV cache, one workgroup a (query head, token): token t (group
 * y, + t0) of sequence seq[t] attends to its positions 0 .. pos[t]; query head h reads
 * KV head h / (n_head / n_kv). Position p is row p % page_size of page
 * table[seq * table_stride + p / page_size]; a row holds the n_kv heads, head g at byte
 * g * head_bytes. K and V types (TYPE_K, TYPE_V: F32, F16, BF16, Q8_0, Q4_0, IQ4_NL) are
 * specialization constants.
 *
 * Flash-style: blocks of WG positions, one a invocation for its score (a dot product
 * with q from shared memory), the block's max and sum through the workgroup, the running
 * max, sum and output rescaled; each invocation owns head_dim_v / WG output dims and
 * adds the block's weighted V rows to them. All in f32.
 * SPLIT (constant 2): 0, the workgroup covers every position and writes the output; 1,
 * workgroup z of n_split covers its share of the positions (whole blocks of WG, from the
 * token's own count, so any n_split is right) and writes its running max, sum and
 * unnormalized output [m, l, acc[hd_v]] at ((t n_head + h) n_split + z) (hd_v + 2) of
 * binding 3 (a workspace), which attn_combine.comp merges (long contexts: flash decoding).
 * Bindings: K, V, q, out (or the workspace), page table, seq, pos.
 */
#define WG 64
#define WG_SUM WG
#define MAX_HEAD_DIM 256
#include "common.glsl"

layout(local_size_x = WG) in;
layout(constant_id = 0) const uint TYPE_K = 1;
layout(constant_id = 1) const uint TYPE_V = 1;
layout(constant_id = 2) const uint SPLIT = 0;

layout(std430, binding = 0) readonly buffer K { uint kw[]; };
layout(std430, binding = 1) readonly buffer V { uint vw[]; };
layout(std430, binding = 2) readonly buffer Q { float qs[]; };
layout(std430, binding = 3) writeonly buffer Out { float outs[]; };
layout(std430, binding = 4) readonly buffer Table { int table[]; };
layout(std430, binding = 5) readonly buffer Seq { int seqs[]; };
layout(std430, binding = 6) readonly buffer Pos { int poss[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n_head, n_kv, hd_k, hd_v;
    uint k_page_bytes, v_page_bytes, k_head_bytes, v_head_bytes;
    uint page_size, table_stride, t0;
    float scale;
    uint n_split;
} pc;

shared float q_sh[MAX_HEAD_DIM];
shared float w_sh[WG];
shared float red[WG];

/* value d of the head row at byte rb of K or V, by type (halo_type ids) */
uint k8(uint b) { return (kw[b >> 2] >> ((b & 3u) << 3)) & 0xFFu; }
uint k16(uint b) { return (kw[b >> 2] >> ((b & 2u) << 3)) & 0xFFFFu; }
uint v8(uint b) { return (vw[b >> 2] >> ((b & 3u) << 3)) & 0xFFu; }
uint v16(uint b) { return (vw[b >> 2] >> ((b & 2u) << 3)) & 0xFFFFu; }
int sx8(uint v) { return int(v << 24) >> 24; }
const int kv_iq4nl[16] = int[16](-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69,
                                 89, 113);

float k_at(uint rb, uint d) {
    if (TYPE_K == 0u) return uintBitsToFloat(kw[(rb >> 2) + d]);
    if (TYPE_K == 1u) return unpackHalf2x16(k16(rb + 2u * d)).x;
    if (TYPE_K == 30u) return uintBitsToFloat(k16(rb + 2u * d) << 16);
    uint j = d & 31u;
    if (TYPE_K == 8u) {
        uint bb = rb + 34u * (d >> 5);
        return float(sx8(k8(bb + 2u + j))) * unpackHalf2x16(k16(bb)).x;
    }
    uint bb = rb + 18u * (d >> 5), v = k8(bb + 2u + (j & 15u)), c = j < 16u ? v & 15u : v >> 4;
    if (TYPE_K == 20u) return float(kv_iq4nl[c]) * unpackHalf2x16(k16(bb)).x;
    return float(int(c) - 8) * unpackHalf2x16(k16(bb)).x;
}

float v_at(uint rb, uint d) {
    if (TYPE_V == 0u) return uintBitsToFloat(vw[(rb >> 2) + d]);
    if (TYPE_V == 1u) return unpackHalf2x16(v16(rb + 2u * d)).x;
    if (TYPE_V == 30u) return uintBitsToFloat(v16(rb + 2u * d) << 16);
    uint j = d & 31u;
    if (TYPE_V == 8u) {
        uint bb = rb + 34u * (d >> 5);
        return float(sx8(v8(bb + 2u + j))) * unpackHalf2x16(v16(bb)).x;
    }
    uint bb = rb + 18u * (d >> 5), v = v8(bb + 2u + (j & 15u)), c = j < 16u ? v & 15u : v >> 4;
    if (TYPE_V == 20u) return float(kv_iq4nl[c]) * unpackHalf2x16(v16(bb)).x;
    return float(int(c) - 8) * unpackHalf2x16(v16(bb)).x;
}

float wg_max(float v) {
    v = subgroupMax(v);
    if (subgroupElect()) red[gl_SubgroupID] = v;
    barrier();
    float m = red[0];
    for (uint i = 1u; i < gl_NumSubgroups; i++) m = max(m, red[i]);
    barrier();
    return m;
}

/* byte of head g of position p of sequence s in a cache */
uint row_byte(uint s, uint p, uint g, uint page_bytes, uint head_bytes) {
    uint page = uint(table[(pc.off[4] >> 2) + s * pc.table_stride + p / pc.page_size]);
    return page * page_bytes + (p % pc.page_size) * pc.n_kv * head_bytes + g * head_bytes;
}

void main() {
    uint h = gl_WorkGroupID.x, t = pc.t0 + gl_WorkGroupID.y, me = gl_LocalInvocationID.x;
    uint g = h / (pc.n_head / pc.n_kv);
    uint s = uint(seqs[(pc.off[5] >> 2) + t]), n_pos = uint(poss[(pc.off[6] >> 2) + t]) + 1u;
    uint q0 = (pc.off[2] >> 2) + (t * pc.n_head + h) * pc.hd_k;
    for (uint d = me; d < pc.hd_k; d += WG) q_sh[d] = qs[q0 + d];
    barrier();
    const float neg_inf = -1.0 / 0.0;
    float m = neg_inf, l = 0.0, acc[MAX_HEAD_DIM / WG];
    for (uint i = 0u; i < MAX_HEAD_DIM / WG; i++) acc[i] = 0.0;
    /* the positions [first, end) of this workgroup: all, or its share in whole blocks */
    uint first = 0u, end = n_pos;
    if (SPLIT != 0u) {
        uint share = ((n_pos + pc.n_split - 1u) / pc.n_split + WG - 1u) / WG * WG;
        first = min(n_pos, gl_WorkGroupID.z * share);
        end = min(n_pos, first + share);
    }
    for (uint b0 = first; b0 < end; b0 += WG) {
        uint p = b0 + me;
        float score = neg_inf;
        if (p < end) {
            uint kb = pc.off[0] + row_byte(s, p, g, pc.k_page_bytes, pc.k_head_bytes);
            float dot = 0.0;
            for (uint d = 0u; d < pc.hd_k; d++) dot += q_sh[d] * k_at(kb, d);
            score = dot * pc.scale;
        }
        float m_new = max(m, wg_max(score));
        float w = p < end ? exp_f32(score - m_new) : 0.0;
        float corr = exp_f32(m - m_new); /* 0 for the first block (m = -inf) */
        l = l * corr + wg_sum(w);
        w_sh[me] = w;
        barrier();
        uint nb = min(uint(WG), end - b0);
        for (uint i = 0u; i * WG + me < pc.hd_v; i++) {
            uint d = i * WG + me;
            float a = acc[i] * corr;
            for (uint j = 0u; j < nb; j++)
                a += w_sh[j] * v_at(pc.off[1] + row_byte(s, b0 + j, g, pc.v_page_bytes, pc.v_head_bytes), d);
            acc[i] = a;
        }
        barrier();
        m = m_new;
    }
    if (SPLIT != 0u) { /* the part: its max (-inf where it has no position), sum, output */
        uint w0 = (pc.off[3] >> 2) + ((t * pc.n_head + h) * pc.n_split + gl_WorkGroupID.z) *
                                         (pc.hd_v + 2u);
        if (me == 0u) {
            outs[w0] = m;
            outs[w0 + 1u] = l;
        }
        for (uint i = 0u; i * WG + me < pc.hd_v; i++) outs[w0 + 2u + i * WG + me] = acc[i];
        return;
    }
    uint o0 = (pc.off[3] >> 2) + (t * pc.n_head + h) * pc.hd_v;
    for (uint i = 0u; i * WG + me < pc.hd_v; i++) outs[o0 + i * WG + me] = acc[i] / l;
}
