/*
 * Decoding the GGUF block formats (quant/blocks.h) from a buffer of 32-bit words:
 * the includer defines WQ as the name of its `uint` array. Every decoder matches the
 * CPU's (quant/) bit for bit: the products of a scale and a code are exact in f32
 * (quant/blocks.h says why) and are written in the CPU's order; only the add of a min
 * rounds, once, as on the CPU.
 *
 * dq_group(rb, g, n_cols, w) decodes the 32 weights g*32 .. g*32+31 of the row starting
 * at byte rb, for the format TYPE (a specialization constant, so each pipeline keeps
 * only its own case) of the includer's format family FAMILY: FAMILY_FLOAT (F32, F16,
 * BF16), FAMILY_Q (the 32-weight blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, IQ4_NL,
 * MXFP4) or FAMILY_K (the 256-weight super-blocks: Q2_K .. Q8_K, IQ4_XS). Float formats read any n_cols (weights past it are 0); block
 * formats need whole blocks. Row starts are 2-byte aligned (4 for F32 and Q8_K, any
 * byte for MXFP4, whose 17-byte blocks are read a byte at a time).
 */

#define FAMILY_FLOAT 1
#define FAMILY_Q 2
#define FAMILY_K 3

/* halo_type ids */
#define T_F32 0u
#define T_F16 1u
#define T_Q4_0 2u
#define T_Q4_1 3u
#define T_Q5_0 6u
#define T_Q5_1 7u
#define T_Q8_0 8u
#define T_Q8_1 9u
#define T_Q2_K 10u
#define T_Q3_K 11u
#define T_Q4_K 12u
#define T_Q5_K 13u
#define T_Q6_K 14u
#define T_Q8_K 15u
#define T_IQ4_NL 20u
#define T_IQ4_XS 23u
#define T_BF16 30u
#define T_MXFP4 39u

const int kv_iq4nl[16] = int[16](-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69,
                                 89, 113);
const int kv_mxfp4[16] = int[16](0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);

uint rd8(uint b) { return (WQ[b >> 2] >> ((b & 3u) << 3)) & 0xFFu; }
uint rd16(uint b) { return (WQ[b >> 2] >> ((b & 2u) << 3)) & 0xFFFFu; } /* b even */
uint rd32(uint b) {                                                      /* b even */
    uint i = b >> 2, s = (b & 3u) << 3, lo = WQ[i];
    return s == 0u ? lo : (lo >> s) | (WQ[i + 1u] << (32u - s));
}
float rdh(uint b) { return unpackHalf2x16(rd16(b)).x; }
int sx8(uint v) { return int(v << 24) >> 24; } /* the low byte of v, sign-extended */

/* 2^(e-128), half the E8M0 scale (pairs with the doubled e2m1 table), as the CPU */
float e8m0_half(uint e) { return uintBitsToFloat(e < 2u ? 0x00200000u << e : (e - 1u) << 23); }

/* Q4_K / Q5_K: the 6-bit scale and min of sub-block j from the 12 bytes at s */
void k4_scale_min(uint s, uint j, out float sc, out float m) {
    if (j < 4u) {
        sc = float(rd8(s + j) & 63u);
        m = float(rd8(s + j + 4u) & 63u);
    } else {
        sc = float((rd8(s + j + 4u) & 15u) | ((rd8(s + j - 4u) >> 6) << 4));
        m = float((rd8(s + j + 4u) >> 4) | ((rd8(s + j) >> 6) << 4));
    }
}

/* Q3_K: the 6-bit scale j (0..15), less its bias of 32, from the 12 bytes at s */
int q3k_scale(uint s, uint j) {
    uint low = j < 8u ? rd8(s + j) & 15u : rd8(s + j - 8u) >> 4;
    uint high = (rd8(s + 8u + (j & 3u)) >> (2u * (j >> 2))) & 3u;
    return int(low | (high << 4)) - 32;
}

#if FAMILY == FAMILY_FLOAT
void dq_group(uint rb, uint g, uint n_cols, out float w[32]) {
    for (uint i = 0u; i < 32u; i++) {
        uint c = g * 32u + i;
        float v = 0.0;
        if (c < n_cols) {
            if (TYPE == T_F32)
                v = uintBitsToFloat(WQ[(rb >> 2) + c]);
            else if (TYPE == T_F16)
                v = rdh(rb + 2u * c);
            else
                v = uintBitsToFloat(rd16(rb + 2u * c) << 16);
        }
        w[i] = v;
    }
}
#elif FAMILY == FAMILY_Q
/* The 32-wide formats share a layout: byte j of the 16 at q holds weight j in its low
 * nibble and weight j + 16 in its high one. */
void dq_group(uint rb, uint g, uint n_cols, out float w[32]) {
    if (TYPE == T_Q4_0 || TYPE == T_Q4_1 || TYPE == T_IQ4_NL || TYPE == T_MXFP4) {
        uint bb = rb + g * (TYPE == T_Q4_0 || TYPE == T_IQ4_NL ? 18u : TYPE == T_Q4_1 ? 20u : 17u);
        float d = TYPE == T_MXFP4 ? e8m0_half(rd8(bb)) : rdh(bb);
        float m = TYPE == T_Q4_1 ? rdh(bb + 2u) : 0.0;
        uint q = bb + (TYPE == T_Q4_1 ? 4u : TYPE == T_MXFP4 ? 1u : 2u);
        for (uint j = 0u; j < 16u; j++) {
            uint v = rd8(q + j), lo = v & 15u, hi = v >> 4;
            if (TYPE == T_Q4_0) {
                w[j] = float(int(lo) - 8) * d;
                w[j + 16u] = float(int(hi) - 8) * d;
            } else if (TYPE == T_Q4_1) {
                w[j] = float(lo) * d + m;
                w[j + 16u] = float(hi) * d + m;
            } else if (TYPE == T_IQ4_NL) {
                w[j] = d * float(kv_iq4nl[lo]);
                w[j + 16u] = d * float(kv_iq4nl[hi]);
            } else {
                w[j] = float(kv_mxfp4[lo]) * d;
                w[j + 16u] = float(kv_mxfp4[hi]) * d;
            }
        }
    } else if (TYPE == T_Q5_0 || TYPE == T_Q5_1) {
        uint bb = rb + g * (TYPE == T_Q5_0 ? 22u : 24u);
        float d = rdh(bb);
        float m = TYPE == T_Q5_1 ? rdh(bb + 2u) : 0.0;
        uint hb = bb + (TYPE == T_Q5_0 ? 2u : 4u);
        uint qh = rd32(hb), q = hb + 4u;
        for (uint j = 0u; j < 16u; j++) {
            uint v = rd8(q + j);
            uint q0 = (v & 15u) | (((qh >> j) & 1u) << 4);
            uint q1 = (v >> 4) | (((qh >> (j + 16u)) & 1u) << 4);
            if (TYPE == T_Q5_0) {
                w[j] = float(int(q0) - 16) * d;
                w[j + 16u] = float(int(q1) - 16) * d;
            } else {
                w[j] = float(q0) * d + m;
                w[j + 16u] = float(q1) * d + m;
            }
        }
    } else if (TYPE == T_Q8_0 || TYPE == T_Q8_1) {
        uint bb = rb + g * (TYPE == T_Q8_0 ? 34u : 36u);
        float d = rdh(bb);
        uint q = bb + (TYPE == T_Q8_0 ? 2u : 4u);
        for (uint j = 0u; j < 32u; j += 4u) {
            uint v = rd32(q + j);
            for (uint k = 0u; k < 4u; k++) w[j + k] = float(sx8(v >> (8u * k))) * d;
        }
    }
}
#elif FAMILY == FAMILY_K
void dq_group(uint rb, uint g, uint n_cols, out float w[32]) {
    if (TYPE == T_Q2_K) {
        uint bb = rb + (g >> 3) * 84u, j = g & 7u, half_ = j >> 2, shift = 2u * (j & 3u);
        float d = rdh(bb + 80u), dmin = rdh(bb + 82u);
        for (uint k = 0u; k < 2u; k++) {
            uint sc = rd8(bb + half_ * 8u + (j & 3u) * 2u + k);
            float dl = d * float(sc & 15u), ml = dmin * float(sc >> 4);
            for (uint l = 0u; l < 16u; l++) {
                uint q = (rd8(bb + 16u + half_ * 32u + 16u * k + l) >> shift) & 3u;
                w[16u * k + l] = dl * float(q) - ml;
            }
        }
    } else if (TYPE == T_Q3_K) {
        uint bb = rb + (g >> 3) * 110u, j = g & 7u, half_ = j >> 2, shift = 2u * (j & 3u);
        float d = rdh(bb + 108u);
        for (uint k = 0u; k < 2u; k++) {
            float dl = d * float(q3k_scale(bb + 96u, half_ * 8u + (j & 3u) * 2u + k));
            for (uint l = 0u; l < 16u; l++) {
                uint ll = 16u * k + l;
                int q = int((rd8(bb + 32u + half_ * 32u + ll) >> shift) & 3u);
                bool high = ((rd8(bb + ll) >> j) & 1u) != 0u;
                w[ll] = dl * float(q - (high ? 0 : 4));
            }
        }
    } else if (TYPE == T_Q4_K || TYPE == T_Q5_K) {
        uint bb = rb + (g >> 3) * (TYPE == T_Q4_K ? 144u : 176u), j = g & 7u;
        float d = rdh(bb), dmin = rdh(bb + 2u), sc, mn;
        k4_scale_min(bb + 4u, j, sc, mn);
        float d1 = d * sc, m1 = dmin * mn;
        uint q = bb + (TYPE == T_Q4_K ? 16u : 48u) + 32u * (j >> 1), shift = 4u * (j & 1u);
        for (uint l = 0u; l < 32u; l++) {
            uint v = (rd8(q + l) >> shift) & 15u;
            if (TYPE == T_Q5_K) v += ((rd8(bb + 16u + l) >> j) & 1u) << 4;
            w[l] = d1 * float(v) - m1;
        }
    } else if (TYPE == T_Q6_K) {
        uint bb = rb + (g >> 3) * 210u, j = g & 7u, half_ = j >> 2, quad = j & 3u;
        float d = rdh(bb + 208u);
        for (uint l = 0u; l < 32u; l++) {
            uint lo = (rd8(bb + 64u * half_ + 32u * (quad & 1u) + l) >> (4u * (quad >> 1))) & 15u;
            uint hi = (rd8(bb + 128u + 32u * half_ + l) >> (2u * quad)) & 3u;
            int sc = sx8(rd8(bb + 192u + 8u * half_ + (l >> 4) + 2u * quad));
            w[l] = d * float(sc) * float(int(lo | (hi << 4)) - 32);
        }
    } else if (TYPE == T_Q8_K) {
        uint bb = rb + (g >> 3) * 292u, j = g & 7u;
        float d = uintBitsToFloat(rd32(bb));
        for (uint l = 0u; l < 32u; l += 4u) {
            uint v = rd32(bb + 4u + 32u * j + l);
            for (uint k = 0u; k < 4u; k++) w[l + k] = d * float(sx8(v >> (8u * k)));
        }
    } else if (TYPE == T_IQ4_XS) {
        uint bb = rb + (g >> 3) * 136u, j = g & 7u;
        uint ls = ((rd8(bb + 4u + (j >> 1)) >> (4u * (j & 1u))) & 15u) |
                  (((rd16(bb + 2u) >> (2u * j)) & 3u) << 4);
        float dl = rdh(bb) * float(int(ls) - 32);
        uint q = bb + 8u + 16u * j;
        for (uint l = 0u; l < 16u; l++) {
            uint v = rd8(q + l);
            w[l] = dl * float(kv_iq4nl[v & 15u]);
            w[l + 16u] = dl * float(kv_iq4nl[v >> 4]);
        }
    }
}
#endif
