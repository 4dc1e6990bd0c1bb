#version 450
/*
 * Gated DeltaNet, phase 2 in chunks (prompts): the delta rule over a segment's tokens C at
 * a time, then the gated RMS norm of each token's head output; the same bindings, push
 * constants and workgroups (value head h, segment j) as deltanet_rule.comp, which runs the
 * segments shorter than pc.chunk_from while this shader runs the others (each returns at
 * once for the segments of the other).
 *
 * A chunk of n <= C tokens, cumulative decays c_i = g_1 + ... + g_i, state S0 at its start
 * (kernels/cpu/deltanet.c, halo_deltanet_chunked, has the derivation): with
 *     A_im = -beta_i (k_i.k_m) e^{c_i - c_m} (m < i),  P_im = (q_i.k_m) e^{c_i - c_m} (m <= i),
 * the values the chunk writes come by forward substitution,
 *     v'_i = beta_i (v_i - e^{c_i} S0^T k_i) + sum_{m<i} A_im v'_m
 * (the WY form folded: (I - A) V' = diag(beta) (V - diag(e^c) K S0)), the outputs are
 *     o_i = e^{c_i} S0^T q_i + sum_{m<=i} P_im v'_m
 * and the state after the chunk is S = e^{c_n} S0 + sum_i e^{c_n - c_i} k_i v'_i^T.
 *
 * The state stays in its buffer, updated in place (the workgroup owns its head's); per
 * chunk, in shared memory: its q and k rows [C][DK], the decays and betas, A (below the
 * diagonal of M) and P (transposed above it, its diagonal in pd), v' [C][DV]: C^2 +
 * C (DV + 2 DK) + 6 C floats (the host picks C, DK = dk, DV = dv: specialization
 * constants). Each product runs on register tiles, an invocation a tile: the pairs of A
 * and P 4 x 4, K S0 and Q S0 4 tokens x 8 columns, the new state 8 rows x 8 columns
 * (lavapipe, where every load from memory is a loop over the SIMD lanes, ran 4x faster
 * than untiled). The substitution runs a column an invocation; the gated norm reads the
 * chunk's unnormalized outputs back from o after a buffer barrier, one invocation a token
 * summing the squares, then scales them. WG (any; the host gives 128) needs DK and DV
 * multiples of 8.
 *
 * Every exponent is <= 0 (g <= 0); decays below e^-87 (~1.6e-38, the smallest normal
 * floats) are taken as 0, so no subnormal enters the products (kernels/cpu/deltanet.c
 * flushes them for speed; here it is also for CPU drivers such as lavapipe).
 */
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint DK = 128;
layout(constant_id = 2) const uint DV = 128;
layout(constant_id = 3) const uint C = 32;

layout(std430, binding = 0) readonly buffer Conv { float conv[]; };
layout(std430, binding = 1) readonly buffer G { float gs[]; };
layout(std430, binding = 2) readonly buffer Beta { float betas[]; };
layout(std430, binding = 3) readonly buffer Z { float zs[]; };
layout(std430, binding = 4) readonly buffer Wn { float ws[]; };
layout(std430, binding = 5) coherent buffer State { float st[]; };
layout(std430, binding = 6) readonly buffer Seg { int seg[]; };
layout(std430, binding = 7) coherent buffer O { float os[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n_k_heads, n_v_heads, dk, dv, ch, ssm_stride, n_seg;
    float eps;
    uint chunk_from;
} pc;

shared float M[C * C], vp[C * DV], ksh[C * DK], qsh[C * DK];
shared float pd[C], cum[C], ec[C], en[C], bt[C], fn[C];

float decay(float x) { return x < -87.0 ? 0.0 : exp_f32(x); }

void main() {
    const uint WG = gl_WorkGroupSize.x, tid = gl_LocalInvocationID.x;
    const uint h = gl_WorkGroupID.x, j = gl_WorkGroupID.y, s0 = pc.off[6] >> 2;
    const uint first = uint(seg[s0 + j]), len = uint(seg[s0 + j + 1u]) - first;
    if (len == 0u || len < pc.chunk_from) return; /* uniform */
    const uint kh = h % pc.n_k_heads, vd = pc.n_v_heads * DV, nvh = pc.n_v_heads, c4 = DV / 4u, c8 = DV / 8u;
    const uint st0 = (pc.off[5] >> 2) + uint(seg[s0 + pc.n_seg + 1u + j]) * pc.ssm_stride +
                     h * DK * DV;
    const uint cv = pc.off[0] >> 2, qo = kh * DK, ko = (pc.n_k_heads + kh) * DK,
               vo = 2u * pc.n_k_heads * DK + h * DV;
    const uint g0 = pc.off[1] >> 2, b0 = pc.off[2] >> 2, z0 = pc.off[3] >> 2;
    const uint w0 = pc.off[4] >> 2, o0 = (pc.off[7] >> 2) + h * DV;

    for (uint t0 = 0u; t0 < len; t0 += C) {
        const uint n = min(C, len - t0), tb = first + t0;
        if (tid == 0u) {
            float run = 0.0;
            for (uint i = 0u; i < n; i++) {
                run += gs[g0 + (tb + i) * nvh + h];
                cum[i] = run;
                bt[i] = betas[b0 + (tb + i) * nvh + h];
            }
            for (uint i = 0u; i < n; i++) {
                ec[i] = decay(cum[i]);
                en[i] = decay(run - cum[i]);
            }
        }
        /* the chunk's q and k rows (the rows past it repeat its last) */
        for (uint e = tid; e < C * DK; e += WG) {
            const uint r = cv + (tb + min(e / DK, n - 1u)) * pc.ch + e % DK;
            ksh[e] = conv[r + ko];
            qsh[e] = conv[r + qo];
        }
        barrier();
        /* A and P: blocks of 4 x 4 pairs (i, m), those with m <= i stored */
        const uint nb = (n + 3u) / 4u;
        for (uint p = tid; p < nb * nb; p += WG) {
            const uint ib = p / nb, mb = p % nb;
            if (mb > ib) continue;
            uint ri[4], rm[4];
            for (uint t = 0u; t < 4u; t++) ri[t] = (4u * ib + t) * DK, rm[t] = (4u * mb + t) * DK;
            vec4 kk[4], qk[4]; /* [i][m] */
            for (uint t = 0u; t < 4u; t++) kk[t] = vec4(0.0), qk[t] = vec4(0.0);
            for (uint d = 0u; d < DK; d++) {
                const vec4 km = vec4(ksh[rm[0] + d], ksh[rm[1] + d], ksh[rm[2] + d],
                                     ksh[rm[3] + d]);
                for (uint t = 0u; t < 4u; t++) {
                    kk[t] += ksh[ri[t] + d] * km;
                    qk[t] += qsh[ri[t] + d] * km;
                }
            }
            for (uint t = 0u; t < 4u; t++)
                for (uint u = 0u; u < 4u; u++) {
                    const uint i = 4u * ib + t, m = 4u * mb + u;
                    if (i >= n || m > i) continue;
                    const float e = decay(cum[i] - cum[m]);
                    if (m < i) {
                        M[i * C + m] = -bt[i] * kk[t][u] * e;
                        M[m * C + i] = qk[t][u] * e;
                    } else
                        pd[i] = qk[t][u];
                }
        }
        /* K S0 and Q S0, 4 tokens x 8 columns an invocation: x = beta (v - e^c K S0)
         * into vp, e^c Q S0 into o */
        for (uint p = tid; p < (n + 3u) / 4u * c8; p += WG) {
            const uint i0 = p / c8 * 4u, j0 = p % c8 * 8u;
            uint r[4];
            for (uint t = 0u; t < 4u; t++) r[t] = cv + (tb + min(i0 + t, n - 1u)) * pc.ch;
            vec4 x[8], y[8]; /* [token][column half] */
            for (uint t = 0u; t < 8u; t++) x[t] = vec4(0.0), y[t] = vec4(0.0);
            for (uint d = 0u; d < DK; d++) {
                const uint sd = st0 + d * DV + j0;
                const vec4 sa = vec4(st[sd], st[sd + 1u], st[sd + 2u], st[sd + 3u]);
                const vec4 sb = vec4(st[sd + 4u], st[sd + 5u], st[sd + 6u], st[sd + 7u]);
                for (uint t = 0u; t < 4u; t++) {
                    const float k = ksh[(i0 + t) * DK + d], q = qsh[(i0 + t) * DK + d];
                    x[2u * t] += k * sa;
                    x[2u * t + 1u] += k * sb;
                    y[2u * t] += q * sa;
                    y[2u * t + 1u] += q * sb;
                }
            }
            for (uint t = 0u; t < 4u; t++) {
                const uint i = i0 + t;
                if (i >= n) break;
                for (uint c = 0u; c < 8u; c++) {
                    const float xv = x[2u * t + c / 4u][c % 4u], yv = y[2u * t + c / 4u][c % 4u];
                    vp[i * DV + j0 + c] = bt[i] * (conv[r[t] + vo + j0 + c] - ec[i] * xv);
                    os[o0 + (tb + i) * vd + j0 + c] = ec[i] * yv;
                }
            }
        }
        memoryBarrierBuffer();
        barrier();
        /* v' by forward substitution, a column an invocation */
        for (uint col = tid; col < DV; col += WG)
            for (uint i = 1u; i < n; i++) {
                float x = vp[i * DV + col];
                for (uint m = 0u; m < i; m++) x += M[i * C + m] * vp[m * DV + col];
                vp[i * DV + col] = x;
            }
        barrier();
        /* o += P v', 2 tokens x 4 columns an invocation */
        for (uint p = tid; p < (n + 1u) / 2u * c4; p += WG) {
            const uint i0 = p / c4 * 2u, j0 = p % c4 * 4u, i1 = min(i0 + 1u, n - 1u);
            vec4 a0 = vec4(0.0), a1 = vec4(0.0);
            for (uint m = 0u; m <= i1; m++) {
                const vec4 v = vec4(vp[m * DV + j0], vp[m * DV + j0 + 1u], vp[m * DV + j0 + 2u],
                                    vp[m * DV + j0 + 3u]);
                const float p0 = m < i0 ? M[m * C + i0] : (m == i0 ? pd[i0] : 0.0);
                const float p1 = m < i1 ? M[m * C + i1] : pd[i1];
                a0 += p0 * v;
                a1 += p1 * v;
            }
            for (uint c = 0u; c < 4u; c++) os[o0 + (tb + i0) * vd + j0 + c] += a0[c];
            if (i0 + 1u < n)
                for (uint c = 0u; c < 4u; c++) os[o0 + (tb + i1) * vd + j0 + c] += a1[c];
        }
        /* S = e^{c_n} S0 + sum_i e^{c_n - c_i} k_i v'_i^T, 8 rows x 8 columns an invocation
         * (every read of S0 was before the barrier above) */
        const float el = ec[n - 1u];
        for (uint p = tid; p < DK / 8u * c8; p += WG) {
            const uint d0 = p / c8 * 8u, j0 = p % c8 * 8u;
            vec4 sv[16]; /* [row][column half] */
            for (uint r = 0u; r < 8u; r++) {
                const uint sd = st0 + (d0 + r) * DV + j0;
                sv[2u * r] = el * vec4(st[sd], st[sd + 1u], st[sd + 2u], st[sd + 3u]);
                sv[2u * r + 1u] = el * vec4(st[sd + 4u], st[sd + 5u], st[sd + 6u], st[sd + 7u]);
            }
            for (uint i = 0u; i < n; i++) {
                const uint vi = i * DV + j0, rk = i * DK + d0;
                const vec4 va = en[i] * vec4(vp[vi], vp[vi + 1u], vp[vi + 2u], vp[vi + 3u]);
                const vec4 vb = en[i] * vec4(vp[vi + 4u], vp[vi + 5u], vp[vi + 6u], vp[vi + 7u]);
                for (uint r = 0u; r < 8u; r++) {
                    const float k = ksh[rk + r];
                    sv[2u * r] += k * va;
                    sv[2u * r + 1u] += k * vb;
                }
            }
            for (uint r = 0u; r < 8u; r++) {
                const uint sd = st0 + (d0 + r) * DV + j0;
                for (uint c = 0u; c < 4u; c++) {
                    st[sd + c] = sv[2u * r][c];
                    st[sd + 4u + c] = sv[2u * r + 1u][c];
                }
            }
        }
        /* the gated norm of the chunk's outputs */
        memoryBarrierBuffer();
        barrier();
        for (uint i = tid; i < n; i += WG) {
            const uint r = o0 + (tb + i) * vd;
            float ss = 0.0;
            for (uint k = 0u; k < DV; k++) ss += os[r + k] * os[r + k];
            fn[i] = 1.0 / sqrt(ss / float(DV) + pc.eps);
        }
        barrier();
        for (uint col = tid; col < DV; col += WG) {
            const float w = ws[w0 + col];
            for (uint i = 0u; i < n; i++) {
                const uint at = (tb + i) * vd + h * DV + col;
                const float z = zs[z0 + at];
                os[o0 + (tb + i) * vd + col] *= fn[i] * w * (z / (1.0 + exp_f32(-z)));
            }
        }
        /* the next chunk writes cum .. bt, ksh and qsh now that every invocation is past
         * their last reads (the barriers above), M, pd and vp after its first barrier, fn
         * after its third; it reads the state written above after the buffer barrier */
    }
}
