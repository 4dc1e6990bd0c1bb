#version 450
/*
 * RoPE in place: token t (group y, + t0) has n_heads rows of head_dim floats; pair i
 * (< n_rot / 2) of each head turns by the f32 angle pos[t] * inv_freq[i], as halo_rope.
 * MODE 0 (NORM) pairs x[2i], x[2i+1]; 2 (NEOX) x[i], x[i + n_rot/2].
 * GLSL's sin and cos are only accurate near 0 (Vulkan: 2^-11 absolute error on
 * [-pi, pi], nothing promised past it) and angles reach 1e5 radians and more, so
 * sincos() below reduces the angle itself.
 */
#define WG 64
#include "common.glsl"

layout(local_size_x = WG) in;

layout(std430, binding = 0) buffer X { float xs[]; };
layout(std430, binding = 1) readonly buffer Pos { int pos[]; };
layout(std430, binding = 2) readonly buffer Freq { float inv_freq[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n_heads, head_dim, n_rot, mode, t0;
} pc;

/* sin and cos of a within a few ulps for |a| < 2^20 pi/2 (positions up to ~1.6M at
 * frequency 1): a - k pi/2 by Cody-Waite with pi/2 in four parts, the first three of 8
 * bits, and k split into a multiple of 4096 and the rest, so that every product k_i C_j
 * is exact and every subtraction but the last ones too (no fused multiply-add needed:
 * Vulkan does not promise one); then polynomials on [-pi/4, pi/4] (Cephes'
 * single-precision coefficients). */
void sincos(float a, out float s, out float c) {
    precise float k = roundEven(a * 0.63661977236758134);
    precise float kh = floor(k * (1.0 / 4096.0)) * 4096.0;
    precise float kl = k - kh;
    precise float r = a - kh * 1.5703125;
    r = r - kl * 1.5703125;
    r = r - kh * 4.84466552734375e-4;
    r = r - kl * 4.84466552734375e-4;
    r = r - kh * -6.407499313354492e-7;
    r = r - kl * -6.407499313354492e-7;
    r = r - k * 9.920935184482005e-10;
    precise float z = r * r;
    precise float ps = r + r * z * ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1);
    precise float pc_ = 1.0 - 0.5 * z +
                        z * z * ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z +
                                 4.166664568298827e-2);
    int q = int(k) & 3;
    s = q == 0 ? ps : q == 1 ? pc_ : q == 2 ? -ps : -pc_;
    c = q == 0 ? pc_ : q == 1 ? -ps : q == 2 ? -pc_ : ps;
}

void main() {
    uint half_ = pc.n_rot / 2u, p = gl_GlobalInvocationID.x, t = pc.t0 + gl_WorkGroupID.y;
    if (p >= pc.n_heads * half_) return;
    uint h = p / half_, i = p % half_;
    float theta = float(pos[(pc.off[1] >> 2) + t]) * inv_freq[(pc.off[2] >> 2) + i];
    float s, c;
    sincos(theta, s, c);
    uint base = (pc.off[0] >> 2) + (t * pc.n_heads + h) * pc.head_dim;
    uint i0 = base + (pc.mode == 2u ? i : 2u * i), i1 = base + (pc.mode == 2u ? i + half_ : 2u * i + 1u);
    float a = xs[i0], b = xs[i1];
    xs[i0] = a * c - b * s;
    xs[i1] = a * s + b * c;
}
