#version 450
/*
 * The KV store of a block type (TYPE: Q8_0, Q4_0, IQ4_NL), one side (K or V) a dispatch:
 * token t's (group y, + t0) row of n floats at src + t * stride into the cache at
 * (seq[t], pos[t]) (the layout of attn.comp), one invocation a block of 32 values,
 * encoded as halo_quant_encode_kv (quant/quant_simple.c) in the same arithmetic: double
 * where it uses double (the shader needs shaderFloat64), the same operations in the same
 * order (`precise`: no contraction), ties to even, so the bytes are the CPU's where the
 * driver's double division is IEEE's (Vulkan promises double operations only single
 * precision's accuracy; lavapipe's are IEEE: every byte measured equal). Blocks of
 * 18 or 34 bytes share words with their neighbours: partial words are written with
 * atomicAnd / atomicOr.
 * Bindings: cache, src, page table, seq, pos.
 */
#define WG 64
#include "common.glsl"
#include "fp16.glsl"

layout(local_size_x = WG) in;
layout(constant_id = 0) const uint TYPE = 8;

#define T_Q4_0 2u
#define T_Q8_0 8u
#define T_IQ4_NL 20u
#define IQ4_NL_KV_TRY 2 /* HALO_IQ4_NL_KV_TRY */

layout(std430, binding = 0) buffer Cache { uint cw[]; };
layout(std430, binding = 1) readonly buffer Src { float xs[]; };
layout(std430, binding = 2) readonly buffer Table { int table[]; };
layout(std430, binding = 3) readonly buffer Seq { int seqs[]; };
layout(std430, binding = 4) readonly buffer Pos { int poss[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n, stride; /* floats of a row (all heads), floats between tokens' rows */
    uint page_bytes, row_bytes, head_bytes, head_blocks;
    uint page_size, table_stride, t0;
} pc;

const int kv_iq4nl[16] = int[16](-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69,
                                 89, 113);

float x[32];
uint q[32];

/* halo_scale_fp16: finite, clamped to +-65504, NaN to 0, rounded to half */
uint scale_fp16(double d) {
    if (isnan(d)) return 0u;
    if (d > 65504.0lf) d = 65504.0lf;
    if (d < -65504.0lf) d = -65504.0lf;
    return to_f16(float(d));
}
double f16_value(uint h) { return double(unpackHalf2x16(h).x); }
double inv(double d) { return d != 0.0lf ? 1.0lf / d : 0.0lf; }

/* halo_qround: v clamped to lo .. hi, rounded to nearest even */
uint qround(double v, int lo, int hi) {
    if (!(v > double(lo))) return uint(lo);
    if (v >= double(hi)) return uint(hi);
    return uint(int(roundEven(v)));
}

/* halo_nearest16 over halo_iq4nl_mid: the number of midpoints below v */
uint iq4nl_nearest(double v) {
    return uint(v > -115.5lf) + uint(v > -93.5lf) + uint(v > -74.0lf) + uint(v > -57.0lf) +
           uint(v > -42.0lf) + uint(v > -28.5lf) + uint(v > -16.0lf) + uint(v > -4.5lf) +
           uint(v > 7.0lf) + uint(v > 19.0lf) + uint(v > 31.5lf) + uint(v > 45.5lf) +
           uint(v > 61.0lf) + uint(v > 79.0lf) + uint(v > 101.0lf);
}

/* signed_absmax: the value of largest magnitude, the first on ties */
float signed_absmax() {
    float amax = 0.0, mx = 0.0;
    for (int j = 0; j < 32; j++) {
        float a = abs(x[j]);
        if (a > amax) {
            amax = a;
            mx = x[j];
        }
    }
    return mx;
}

/* halo_iq4_best_scale_n with round_fp16 and the cache's n_try: the scale (not yet rounded
 * to half), q the grid indices */
double iq4nl_best_scale() {
    const double mx = double(signed_absmax());
    if (mx == 0.0lf) {
        for (int j = 0; j < 32; j++) q[j] = 8u; /* grid value 1 at scale 0 */
        return 0.0lf;
    }
    uint tq[32];
    double best_d = 0.0lf, best_err = 0.0lf;
    for (int t = -IQ4_NL_KV_TRY; t <= IQ4_NL_KV_TRY; t++) {
        precise double d = mx / (-127.0lf + 4.0lf * double(t));
        for (int pass = 0; pass < 2; pass++) {
            d = f16_value(scale_fp16(d));
            const double id = inv(d);
            precise double err = 0.0lf;
            for (int j = 0; j < 32; j++) {
                tq[j] = iq4nl_nearest(double(x[j]) * id);
                precise double e = double(x[j]) - d * double(kv_iq4nl[tq[j]]);
                err += e * e;
            }
            if (err < best_err || (t == -IQ4_NL_KV_TRY && pass == 0)) { /* first always */
                best_err = err;
                best_d = d;
                for (int j = 0; j < 32; j++) q[j] = tq[j];
            }
            precise double sxv = 0.0lf, svv = 0.0lf; /* least-squares scale for tq */
            for (int j = 0; j < 32; j++) {
                double v = double(kv_iq4nl[tq[j]]);
                sxv += double(x[j]) * v;
                svv += v * v;
            }
            d = sxv / svv;
        }
    }
    return best_d;
}

void main() {
    uint t = pc.t0 + gl_WorkGroupID.y, b = gl_GlobalInvocationID.x;
    if (b >= pc.n / 32u) return;
    uint src = (pc.off[1] >> 2) + t * pc.stride + 32u * b;
    for (int j = 0; j < 32; j++) x[j] = xs[src + uint(j)];

    /* the block's bytes, little-endian into words aligned as in the cache */
    uint s = uint(seqs[(pc.off[3] >> 2) + t]), p = uint(poss[(pc.off[4] >> 2) + t]);
    uint page = uint(table[(pc.off[2] >> 2) + s * pc.table_stride + p / pc.page_size]);
    uint bb = TYPE == T_Q8_0 ? 34u : 18u;
    uint at = pc.off[0] + page * pc.page_bytes + (p % pc.page_size) * pc.row_bytes +
              (b / pc.head_blocks) * pc.head_bytes + (b % pc.head_blocks) * bb;
    uint sh = at & 3u, w[10] = uint[10](0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    uint dh;
    if (TYPE == T_Q8_0) {
        float amax = 0.0;
        for (int j = 0; j < 32; j++) amax = abs(x[j]) > amax ? abs(x[j]) : amax; /* fmaxf */
        dh = scale_fp16(double(amax) / 127.0lf);
        const double id = inv(f16_value(dh));
        for (int j = 0; j < 32; j++) {
            precise double v = double(x[j]) * id;
            uint c = qround(v, -127, 127) & 0xFFu, o = sh + 2u + uint(j);
            w[o >> 2] |= c << ((o & 3u) * 8u);
        }
    } else {
        if (TYPE == T_IQ4_NL) {
            dh = scale_fp16(iq4nl_best_scale());
        } else {
            dh = scale_fp16(double(signed_absmax()) / -8.0lf);
            const double id = inv(f16_value(dh));
            for (int j = 0; j < 32; j++) {
                precise double v = double(x[j]) * id + 8.0lf;
                q[j] = qround(v, 0, 15);
            }
        }
        for (uint j = 0u; j < 16u; j++) {
            uint o = sh + 2u + j;
            w[o >> 2] |= (q[j] | q[j + 16u] << 4) << ((o & 3u) * 8u);
        }
    }
    w[sh >> 2] |= dh << (sh * 8u); /* sh is 0 or 2: the scale never straddles a word */

    uint first = at >> 2, n_words = (sh + bb + 3u) >> 2;
    for (uint k = 0u; k < n_words; k++) {
        uint lo = k == 0u ? sh : 0u, hi = min(sh + bb - 4u * k, 4u); /* bytes lo .. hi - 1 */
        uint mask = (hi == 4u ? 0xFFFFFFFFu : (1u << (hi * 8u)) - 1u) & ~((1u << (lo * 8u)) - 1u);
        if (mask == 0xFFFFFFFFu) {
            cw[first + k] = w[k];
        } else {
            atomicAnd(cw[first + k], ~mask);
            atomicOr(cw[first + k], w[k]);
        }
    }
}
