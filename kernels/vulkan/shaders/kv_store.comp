#version 450
/*
 * The KV store: token t's (group y, + t0) k row (n_kv heads of hd_k floats at k + t *
 * k_stride) and v row into the cache at (seq[t], pos[t]) (the layout of attn.comp),
 * converted to the cache types (TYPE_K, TYPE_V: F32, F16, BF16) with the CPU's rounding
 * (quant/fp16.c, in integers: round to nearest even, NaN kept quiet), so the bytes are
 * the CPU's. One invocation a pair of values (a 32-bit word of a 16-bit row). A side of
 * a block type (Q8_0, Q4_0, IQ4_NL) is left to kv_store_q.comp.
 * Bindings: K cache, V cache, k, v, page table, seq, pos.
 */
#define WG 64
#include "common.glsl"
#include "fp16.glsl"

layout(local_size_x = WG) in;
layout(constant_id = 0) const uint TYPE_K = 1;
layout(constant_id = 1) const uint TYPE_V = 1;

#define IS_FLOAT(type) ((type) == 0u || (type) == 1u || (type) == 30u)

layout(std430, binding = 0) buffer K { uint kw[]; };
layout(std430, binding = 1) buffer V { uint vw[]; };
layout(std430, binding = 2) readonly buffer KIn { float ks[]; };
layout(std430, binding = 3) readonly buffer VIn { float vs[]; };
layout(std430, binding = 4) readonly buffer Table { int table[]; };
layout(std430, binding = 5) readonly buffer Seq { int seqs[]; };
layout(std430, binding = 6) readonly buffer Pos { int poss[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint nk, nv; /* floats of a k row, of a v row (all heads) */
    uint k_stride, v_stride;
    uint k_page_bytes, v_page_bytes, k_row_bytes, v_row_bytes;
    uint page_size, table_stride, t0;
} pc;

/* bfloat16 of x, as halo_fp32_to_bf16 */
uint to_bf16(float x) {
    uint b = floatBitsToUint(x);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) return (b >> 16) | 0x40u;
    b += 0x7FFFu + ((b >> 16) & 1u);
    return b >> 16;
}

uint half_word(uint type, float a, float b) {
    return type == 1u ? to_f16(a) | (to_f16(b) << 16) : to_bf16(a) | (to_bf16(b) << 16);
}

/* the cell's byte in a cache */
uint cell_byte(uint t, uint page_bytes, uint row_bytes) {
    uint s = uint(seqs[(pc.off[5] >> 2) + t]), p = uint(poss[(pc.off[6] >> 2) + t]);
    uint page = uint(table[(pc.off[4] >> 2) + s * pc.table_stride + p / pc.page_size]);
    return page * page_bytes + (p % pc.page_size) * row_bytes;
}

void main() {
    uint t = pc.t0 + gl_WorkGroupID.y, i = gl_GlobalInvocationID.x;
    uint k0 = (pc.off[2] >> 2) + t * pc.k_stride, v0 = (pc.off[3] >> 2) + t * pc.v_stride;
    /* K: values 2i, 2i+1 (F32: value i and i + nk / 2, one word each) */
    if (2u * i < pc.nk && IS_FLOAT(TYPE_K)) {
        uint kb = pc.off[0] + cell_byte(t, pc.k_page_bytes, pc.k_row_bytes);
        if (TYPE_K == 0u) {
            kw[(kb >> 2) + 2u * i] = floatBitsToUint(ks[k0 + 2u * i]);
            if (2u * i + 1u < pc.nk) kw[(kb >> 2) + 2u * i + 1u] = floatBitsToUint(ks[k0 + 2u * i + 1u]);
        } else {
            kw[(kb >> 2) + i] = half_word(TYPE_K, ks[k0 + 2u * i], ks[k0 + 2u * i + 1u]);
        }
    }
    if (2u * i < pc.nv && IS_FLOAT(TYPE_V)) {
        uint vb = pc.off[1] + cell_byte(t, pc.v_page_bytes, pc.v_row_bytes);
        if (TYPE_V == 0u) {
            vw[(vb >> 2) + 2u * i] = floatBitsToUint(vs[v0 + 2u * i]);
            if (2u * i + 1u < pc.nv) vw[(vb >> 2) + 2u * i + 1u] = floatBitsToUint(vs[v0 + 2u * i + 1u]);
        } else {
            vw[(vb >> 2) + i] = half_word(TYPE_V, vs[v0 + 2u * i], vs[v0 + 2u * i + 1u]);
        }
    }
}
