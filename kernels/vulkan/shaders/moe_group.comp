#version 450
/*
 * The assignments of a product by expert id grouped by expert, for mul_mm.glsl's BY_ID
 * (MoE prompts): ids[a] (a < n_assign) the expert of assignment a, < 0 (or past n_mat:
 * never from halo's router) for none. Writes, from word 0 of its binding:
 *     [0]                          the count of tiles
 *     [tiles_at + 3 i + 0, 1, 2]   tile i: expert, first entry of the lists, count (<= BN)
 *     [lists_at + ...]             each expert's assignment indices, expert after expert
 * A list's order is that of the atomics (any): every output depends on its own assignment
 * only. One workgroup: a count per expert, the prefix sums and tiles by one invocation
 * (n_mat + tiles steps), then the scatter.
 */
#define WG 256
#define MAX_MAT 1024 /* experts a launch (kernels/vulkan/ops.c: MM_MAX_MAT) */
#include "common.glsl"

layout(local_size_x = WG) in;
layout(std430, binding = 0) readonly buffer Ids { int ids[]; };
layout(std430, binding = 1) writeonly buffer Groups { int grp[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n_assign, n_mat, tile, tiles_at, lists_at;
} pc;

shared uint cnt[MAX_MAT], base[MAX_MAT];

void main() {
    uint tid = gl_LocalInvocationID.x, i0 = pc.off[0] >> 2, g0 = pc.off[1] >> 2;
    for (uint e = tid; e < pc.n_mat; e += WG) cnt[e] = 0u;
    barrier();
    for (uint a = tid; a < pc.n_assign; a += WG) {
        int e = ids[i0 + a];
        if (e >= 0 && uint(e) < pc.n_mat) atomicAdd(cnt[e], 1u);
    }
    barrier();
    if (tid == 0u) {
        uint at = 0u, nt = 0u;
        for (uint e = 0u; e < pc.n_mat; e++) {
            uint c = cnt[e];
            base[e] = at;
            for (uint s = 0u; s < c; s += pc.tile, nt++) {
                uint t = g0 + pc.tiles_at + 3u * nt;
                grp[t] = int(e);
                grp[t + 1u] = int(at + s);
                grp[t + 2u] = int(min(pc.tile, c - s));
            }
            at += c;
            cnt[e] = 0u;
        }
        grp[g0] = int(nt);
    }
    barrier();
    for (uint a = tid; a < pc.n_assign; a += WG) {
        int e = ids[i0 + a];
        if (e >= 0 && uint(e) < pc.n_mat)
            grp[g0 + pc.lists_at + base[e] + atomicAdd(cnt[e], 1u)] = int(a);
    }
}
