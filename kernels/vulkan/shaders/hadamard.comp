#version 450
/*
 * The Walsh-Hadamard rotation in place, one workgroup a run of `block` values (a power of
 * two <= 1024; run g of the grid at x + g * block): halo_hadamard's butterflies stage by
 * stage in shared memory, the same sums in the same order, then the CPU's scale (norm,
 * 1 / sqrtf(block) computed on the host: Vulkan's division and square root are not
 * correctly rounded). Adds, subtractions and products are (`precise`: no contraction),
 * so the bits are the CPU's.
 * Bindings: x.
 */
#define WG 256
#define MAX_BLOCK 1024
#include "common.glsl"

layout(local_size_x = WG) in;

layout(std430, binding = 0) buffer X { float xs[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint block, n_runs;
    float norm;
} pc;

shared float r[MAX_BLOCK];

void main() {
    uint g = group_index();
    if (g >= pc.n_runs) return; /* uniform over the workgroup */
    uint base = (pc.off[0] >> 2) + g * pc.block, tid = gl_LocalInvocationID.x;
    for (uint i = tid; i < pc.block; i += WG) r[i] = xs[base + i];
    barrier();
    for (uint h = 1u; h < pc.block; h *= 2u) {
        /* butterfly k of block / 2: j = (k / h) * 2h + k % h pairs with j + h */
        for (uint k = tid; k < pc.block / 2u; k += WG) {
            uint j = (k / h) * 2u * h + k % h;
            float a = r[j], c = r[j + h];
            precise float s = a + c, d = a - c;
            r[j] = s;
            r[j + h] = d;
        }
        barrier();
    }
    for (uint i = tid; i < pc.block; i += WG) {
        precise float y = r[i] * pc.norm;
        xs[base + i] = y;
    }
}
