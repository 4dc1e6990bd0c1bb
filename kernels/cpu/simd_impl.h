/*
 * simd_impl — the body of one vector path of halo_matmul, written once over a
 * small vector vocabulary and included by matmul_avx2.c (8 lanes) and
 * matmul_avx512.c (16 lanes), each of which defines, inside its target region:
 *   VL                      lanes of a vf (8 or 16; 16 % VL == 0)
 *   vf                      the float vector type
 *   vf_load(p), vf_store(p, v), vf_zero(), vf_set1(f), vf_fma(a, b, c) = a*b+c,
 *   vf_hsum(v), vf_from_i8(p) (VL int8 to float), vf_from_f16(p), vf_from_bf16(p)
 *   vi                      the matching int32 vector type; vi_from_u8(p) (VL bytes,
 *                           zero-extended), vi_and15(v), vi_srl4(v), vf_from_vi(v)
 *   vf_transpose(v)         transpose VL vectors in place (v[i] lane j <-> v[j] lane i)
 *   vf_from_u8x(q, e)       lanes e*VL .. of the 16 bytes q (zero-extended), to float
 *   or_and(a, b, m)         (a & m) | b on 16 bytes
 *   MM_PERM16, vf_perm16    (AVX-512 only) lane i = table[idx[i] & 15]
 *   MM_TN, MM_MICRO_LIST(X) the prefill micro-kernel's tokens (rows: 2 vectors), and
 *                           X(1) .. X(MM_TN)
 *   MM_NAME(x)              x with the path's suffix
 * See simd.h for the two strategies.
 */
#include "kernels/cpu/simd.h"
#include "kernels/cpu/simd_unpack.h"
#include "quant/quant.h"

#define ALWAYS_INLINE __attribute__((always_inline)) inline
/* Fully unroll the short loops over tokens and accumulators, so that the vector
 * arrays they index become registers. */
#define UNROLL _Pragma("GCC unroll 16")

/* ---- direct loads for the plain float formats ---------------------------------- */

typedef enum { PLAIN_F32, PLAIN_F16, PLAIN_BF16 } plain_kind;

static ALWAYS_INLINE vf plain_load(plain_kind k, const char *row, int64_t i) {
    switch (k) {
    case PLAIN_F16: return vf_from_f16(row + 2 * i);
    case PLAIN_BF16: return vf_from_bf16(row + 2 * i);
    default: return vf_load((const float *)(const void *)(row + 4 * i));
    }
}

static ALWAYS_INLINE float plain_scalar(plain_kind k, const char *row, int64_t i) {
    uint16_t h;
    float f;
    switch (k) {
    case PLAIN_F16: memcpy(&h, row + 2 * i, 2); return halo_fp16_to_fp32(h);
    case PLAIN_BF16: memcpy(&h, row + 2 * i, 2); return halo_bf16_to_fp32(h);
    default: memcpy(&f, row + 4 * i, 4); return f;
    }
}

/* ---- fused strategy: one row, tn (1..HALO_MM_FUSED_MAX) tokens ----------------- */

#define FT HALO_MM_FUSED_MAX

/* NACC accumulators per token (vector j of a row goes to accumulator j % NACC)
 * break the FMA dependency chain; MM_NACC (2 or 4) per path. */
#define NACC MM_NACC

/* Software prefetch PREFETCH_AHEAD bytes ahead of the n bytes at p (into the next
 * rows past a row's end: rows are contiguous; a prefetch never faults). The
 * hardware streamer alone left the quantized decode of a matrix from DRAM at
 * half the bandwidth that the same kernels reach from L2. */
#define PREFETCH_AHEAD 2048
static ALWAYS_INLINE void prefetch_ahead(const void *p, size_t n) {
    const char *c = (const char *)p + PREFETCH_AHEAD;
    for (size_t o = 0; o < n; o += 64) _mm_prefetch(c + o, _MM_HINT_T0);
}


static ALWAYS_INLINE void fused_plain(plain_kind k, const char *row, int64_t n, const float *const *x,
                                      int tn, float *out) {
    vf acc[FT][NACC];
    UNROLL
    for (int t = 0; t < tn; t++)
        UNROLL
        for (int q = 0; q < NACC; q++) acc[t][q] = vf_zero();
    int64_t i = 0;
    for (; i + NACC * VL <= n; i += NACC * VL) {
        vf w[NACC];
        UNROLL
        for (int q = 0; q < NACC; q++) w[q] = plain_load(k, row, i + q * VL);
        UNROLL
        for (int t = 0; t < tn; t++)
            UNROLL
            for (int q = 0; q < NACC; q++)
                acc[t][q] = vf_fma(w[q], vf_load(x[t] + i + q * VL), acc[t][q]);
    }
    for (; i + VL <= n; i += VL) {
        const vf w0 = plain_load(k, row, i);
        UNROLL
        for (int t = 0; t < tn; t++) acc[t][0] = vf_fma(w0, vf_load(x[t] + i), acc[t][0]);
    }
    UNROLL
    for (int t = 0; t < tn; t++) {
        UNROLL
        for (int q = 1; q < NACC; q++) acc[t][0] = acc[t][0] + acc[t][q];
        float s = vf_hsum(acc[t][0]);
        for (int64_t c = i; c < n; c++) s += plain_scalar(k, row, c) * x[t][c];
        out[t] = s;
    }
}

/* Vector j (VL weights from j * VL) of an unpacked chunk, decoded to f32. */
static ALWAYS_INLINE vf unpacked_vec(const unpacked *u, int j) {
    const int g = j * VL / 16;
    return vf_fma(vf_from_i8(u->q + j * VL), vf_set1(u->sc[g]), vf_set1(u->add[g]));
}

static ALWAYS_INLINE void fused_quant(unpack_fn unpack, size_t chunk_bytes, const char *row,
                                      int64_t n, const float *const *x, int tn, float *out) {
    vf acc[FT][NACC];
    unpacked u;
    UNROLL
    for (int t = 0; t < tn; t++)
        UNROLL
        for (int q = 0; q < NACC; q++) acc[t][q] = vf_zero();
    for (int64_t c0 = 0; c0 < n; c0 += UNPACK_CHUNK, row += chunk_bytes) {
        const int m = n - c0 < UNPACK_CHUNK ? (int)(n - c0) : UNPACK_CHUNK, nv = m / VL;
        prefetch_ahead(row, chunk_bytes);
        unpack((const uint8_t *)row, m, &u);
        int j = 0;
        for (; j + NACC <= nv; j += NACC) {
            vf w[NACC];
            UNROLL
            for (int q = 0; q < NACC; q++) w[q] = unpacked_vec(&u, j + q);
            UNROLL
            for (int t = 0; t < tn; t++)
                UNROLL
                for (int q = 0; q < NACC; q++)
                    acc[t][q] = vf_fma(w[q], vf_load(x[t] + c0 + (j + q) * VL), acc[t][q]);
        }
        for (; j < nv; j++) {
            const vf w0 = unpacked_vec(&u, j);
            UNROLL
            for (int t = 0; t < tn; t++) acc[t][0] = vf_fma(w0, vf_load(x[t] + c0 + j * VL), acc[t][0]);
        }
    }
    UNROLL
    for (int t = 0; t < tn; t++) {
        UNROLL
        for (int q = 1; q < NACC; q++) acc[t][0] = acc[t][0] + acc[t][q];
        out[t] = vf_hsum(acc[t][0]);
    }
}

/* A direct decoder for q4_K: codes go from the block straight into registers (no
 * int8 staging), 10 % faster than the staged path; the same products and
 * rounding. (For q8_0 the staged path measured as fast.) */
static ALWAYS_INLINE void fused_q4_k(const char *row, int64_t n, const float *const *x, int tn,
                                     float *out) {
    vf acc[FT][NACC];
    UNROLL for (int t = 0; t < tn; t++)
        UNROLL for (int q = 0; q < NACC; q++) acc[t][q] = vf_zero();
    const halo_block_q4_k *b = (const halo_block_q4_k *)(const void *)row;
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        UNROLL for (int j = 0; j < 4; j++) {
            uint8_t sc, m;
            halo_k4_scale_min(2 * j, b[i].scales, &sc, &m);
            const vf s1 = vf_set1(d * (float)sc), a1 = vf_set1(-(dmin * (float)m));
            halo_k4_scale_min(2 * j + 1, b[i].scales, &sc, &m);
            const vf s2 = vf_set1(d * (float)sc), a2 = vf_set1(-(dmin * (float)m));
            UNROLL for (int p = 0; p < 32 / VL; p++) {
                const vi v = vi_from_u8(b[i].qs + 32 * j + VL * p);
                const vf wl = vf_fma(vf_from_vi(vi_and15(v)), s1, a1);
                const vf wh = vf_fma(vf_from_vi(vi_srl4(v)), s2, a2);
                const int ql = (2 * p) % NACC, qh = (2 * p + 1) % NACC;
                const int64_t c = 256 * i + 64 * j + VL * p;
                UNROLL for (int t = 0; t < tn; t++) {
                    acc[t][ql] = vf_fma(wl, vf_load(x[t] + c), acc[t][ql]);
                    acc[t][qh] = vf_fma(wh, vf_load(x[t] + c + 32), acc[t][qh]);
                }
            }
        }
    }
    UNROLL for (int t = 0; t < tn; t++) {
        UNROLL for (int q = 1; q < NACC; q++) acc[t][0] = acc[t][0] + acc[t][q];
        out[t] = vf_hsum(acc[t][0]);
    }
}

/* q8_0 straight from the block: VL int8 codes widened and converted in registers,
 * times d (an exact product, as the reference's), into the dot FMA: no staging. */
static ALWAYS_INLINE void fused_q8_0(const char *row, int64_t n, const float *const *x, int tn,
                                     float *out) {
    vf acc[FT][NACC];
    UNROLL for (int t = 0; t < tn; t++)
        UNROLL for (int q = 0; q < NACC; q++) acc[t][q] = vf_zero();
    const halo_block_q8_0 *b = (const halo_block_q8_0 *)(const void *)row;
    const int64_t nb = n / 32;
    int64_t i = 0;
    /* two blocks an iteration: 64 weights, 64 / VL vectors over NACC accumulators */
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(b + i, 2 * sizeof *b);
        UNROLL for (int k = 0; k < 2; k++) {
            const vf d = vf_set1(h2f(b[i + k].d));
            UNROLL for (int p = 0; p < 32 / VL; p++) {
                const vf w = vf_from_i8(b[i + k].qs + VL * p) * d;
                const int q = (k * (32 / VL) + p) % NACC;
                const int64_t c = 32 * (i + k) + VL * p;
                UNROLL for (int t = 0; t < tn; t++) acc[t][q] = vf_fma(w, vf_load(x[t] + c), acc[t][q]);
            }
        }
    }
    for (; i < nb; i++) {
        const vf d = vf_set1(h2f(b[i].d));
        UNROLL for (int p = 0; p < 32 / VL; p++) {
            const vf w = vf_from_i8(b[i].qs + VL * p) * d;
            UNROLL for (int t = 0; t < tn; t++)
                acc[t][p % NACC] = vf_fma(w, vf_load(x[t] + 32 * i + VL * p), acc[t][p % NACC]);
        }
    }
    UNROLL for (int t = 0; t < tn; t++) {
        UNROLL for (int q = 1; q < NACC; q++) acc[t][0] = acc[t][0] + acc[t][q];
        out[t] = vf_hsum(acc[t][0]);
    }
}

/* q6_K straight from the block: the 6-bit codes are built 16 at a time in 128-bit
 * registers, widened and converted in registers, and (q - 32) * d * sc is one FMA
 * (q * ds - 32 * ds, exact before its one rounding, so equal to the reference's
 * product): no stores of codes; the scales are broadcast from memory (no vector port). */
static ALWAYS_INLINE void fused_q6_k(const char *row, int64_t n, const float *const *x, int tn,
                                     float *out) {
    vf acc[FT][NACC];
    UNROLL for (int t = 0; t < tn; t++)
        UNROLL for (int q = 0; q < NACC; q++) acc[t][q] = vf_zero();
    const halo_block_q6_k *b = (const halo_block_q6_k *)(const void *)row;
    const __m128i m4 = _mm_set1_epi8(0x0F), m2 = _mm_set1_epi8(0x30);
    for (int64_t i = 0; i < n / 256; i++) {
        prefetch_ahead(b + i, sizeof *b);
        /* ds[g] = d * sc[g] and ds[16 + g] = -32 * ds[g] (exact: a power of two) */
        float ds[32] __attribute__((aligned(64)));
        scales16((const uint8_t *)b[i].scales, 0, -1, true, h2f(b[i].d), ds);
        scales16((const uint8_t *)b[i].scales, 0, -1, true, -32.0f * h2f(b[i].d), ds + 16);
        __asm__ volatile("" : : "r"(ds) : "memory");
        UNROLL for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            UNROLL for (int p = 0; p < 2; p++) {
                const __m128i l0 = ld128(ql + 16 * p), l1 = ld128(ql + 32 + 16 * p);
                const __m128i hb = ld128(qh + 16 * p);
                /* unsigned codes 0..63: low 4 bits from ql, bits 4-5 from qh */
                __m128i q8[4];
                q8[0] = or_and(l0, _mm_and_si128(_mm_slli_epi16(hb, 4), m2), m4);
                q8[1] = or_and(l1, _mm_and_si128(_mm_slli_epi16(hb, 2), m2), m4);
                q8[2] = or_and(_mm_srli_epi16(l0, 4), _mm_and_si128(hb, m2), m4);
                q8[3] = or_and(_mm_srli_epi16(l1, 4), _mm_and_si128(_mm_srli_epi16(hb, 2), m2), m4);
                UNROLL for (int k = 0; k < 4; k++) {
                    const int64_t c = 256 * i + 128 * h + 32 * k + 16 * p;
                    const int g = 8 * h + 2 * k + p;
                    UNROLL for (int e = 0; e < 16 / VL; e++) {
                        /* (q - 32) * ds in one rounding, as the reference's product */
                        const vf w = vf_fma(vf_from_u8x(q8[k], e), vf_set1(ds[g]), vf_set1(ds[16 + g]));
                        const int q = k % NACC;
                        UNROLL for (int t = 0; t < tn; t++)
                            acc[t][q] = vf_fma(w, vf_load(x[t] + c + VL * e), acc[t][q]);
                    }
                }
            }
        }
    }
    UNROLL for (int t = 0; t < tn; t++) {
        UNROLL for (int q = 1; q < NACC; q++) acc[t][0] = acc[t][0] + acc[t][q];
        out[t] = vf_hsum(acc[t][0]);
    }
}

#if defined(MM_PERM16)
/* 4-bit codes through a 16-entry f32 table (vf_perm16 reads the low 4 bits of each
 * 32-bit lane): the table holds the 16 decoded values of the block or sub-block,
 * computed with the reference's operations, so the weights are bit-exact. A lane's
 * code needs no mask (the low nibble is the lane's low bits) and the high nibble
 * one shift: widen, [shift], permute, FMA for 16 weights, against widen, mask,
 * convert, scale FMA, FMA staged. */
static ALWAYS_INLINE vf iota16(void) {
    return vf_from_vi(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

static ALWAYS_INLINE void fused_q4_k_perm(const char *row, int64_t n, const float *const *x, int tn,
                                          float *out) {
    vf acc[FT][NACC];
    UNROLL for (int t = 0; t < tn; t++)
        UNROLL for (int q = 0; q < NACC; q++) acc[t][q] = vf_zero();
    const vf io = iota16();
    const halo_block_q4_k *b = (const halo_block_q4_k *)(const void *)row;
    for (int64_t i = 0; i < n / 256; i++) {
        prefetch_ahead(b + i, sizeof *b);
        /* the 8 scales and mins in one pass (d * sc, -(dmin * m): the reference's
         * products), kept in memory so that the broadcasts below are loads */
        const uint32_t u0 = ld_u32(b[i].scales), u1 = ld_u32(b[i].scales + 4),
                       u2 = ld_u32(b[i].scales + 8);
        /* bytes: sc 0..3, sc 4..7, m 0..3, m 4..7 (halo_k4_scale_min's bit layout) */
        const __m128i scm = _mm_setr_epi32(
            (int)(u0 & 0x3F3F3F3Fu), (int)((u2 & 0x0F0F0F0Fu) | ((u0 >> 2) & 0x30303030u)),
            (int)(u1 & 0x3F3F3F3Fu), (int)(((u2 >> 4) & 0x0F0F0F0Fu) | ((u1 >> 2) & 0x30303030u)));
        float sm[16] __attribute__((aligned(64)));
        const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(scm));
        const __m512 dd = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(h2f(b[i].d)),
                                               _mm512_set1_ps(-h2f(b[i].dmin)));
        _mm512_store_ps(sm, f * dd);
        /* reload them from memory: broadcasts from memory use no vector port, where
         * the compiler's in-register broadcasts (vpermd) would compete with vpermps */
        __asm__ volatile("" : : "r"(sm) : "memory");
        UNROLL for (int j = 0; j < 4; j++) {
            const vf tl = vf_fma(io, vf_set1(sm[2 * j]), vf_set1(sm[8 + 2 * j]));
            const vf th = vf_fma(io, vf_set1(sm[2 * j + 1]), vf_set1(sm[8 + 2 * j + 1]));
            UNROLL for (int p = 0; p < 2; p++) {
                const vi v = vi_from_u8(b[i].qs + 32 * j + 16 * p);
                const vf wl = vf_perm16(v, tl), wh = vf_perm16(vi_srl4(v), th);
                const int ql = (2 * p) % NACC, qh = (2 * p + 1) % NACC;
                const int64_t c = 256 * i + 64 * j + 16 * p;
                UNROLL for (int t = 0; t < tn; t++) {
                    acc[t][ql] = vf_fma(wl, vf_load(x[t] + c), acc[t][ql]);
                    acc[t][qh] = vf_fma(wh, vf_load(x[t] + c + 32), acc[t][qh]);
                }
            }
        }
    }
    UNROLL for (int t = 0; t < tn; t++) {
        UNROLL for (int q = 1; q < NACC; q++) acc[t][0] = acc[t][0] + acc[t][q];
        out[t] = vf_hsum(acc[t][0]);
    }
}

/* q4_0 (table (k - 8) * d) and iq4_nl (table d * kvalues[k]): 32-weight blocks of
 * 16 bytes, low nibbles first. */
static ALWAYS_INLINE void fused_nib32_perm(bool nl, const char *row, int64_t n,
                                           const float *const *x, int tn, float *out) {
    vf acc[FT][NACC];
    UNROLL for (int t = 0; t < tn; t++)
        UNROLL for (int q = 0; q < NACC; q++) acc[t][q] = vf_zero();
    vf base = iota16() - vf_set1(8.0f);
    if (nl) base = vf_from_vi(_mm512_cvtepi8_epi32(ld128(halo_kvalues_iq4nl)));
    const size_t bsz = nl ? sizeof(halo_block_iq4_nl) : sizeof(halo_block_q4_0);
    const int64_t nb = n / 32;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead((const uint8_t *)row + (size_t)i * bsz, 2 * bsz);
        UNROLL for (int k = 0; k < 2; k++) {
            const uint8_t *blk = (const uint8_t *)row + (size_t)(i + k) * bsz;
            uint16_t dh;
            memcpy(&dh, blk, 2);
            const vf tab = base * vf_set1(h2f(dh));
            const vi v = vi_from_u8(blk + 2);
            const vf wl = vf_perm16(v, tab), wh = vf_perm16(vi_srl4(v), tab);
            const int64_t c = 32 * (i + k);
            UNROLL for (int t = 0; t < tn; t++) {
                acc[t][2 * k] = vf_fma(wl, vf_load(x[t] + c), acc[t][2 * k]);
                acc[t][2 * k + 1] = vf_fma(wh, vf_load(x[t] + c + 16), acc[t][2 * k + 1]);
            }
        }
    }
    for (; i < nb; i++) {
        const uint8_t *blk = (const uint8_t *)row + (size_t)i * bsz;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        const vf tab = base * vf_set1(h2f(dh));
        const vi v = vi_from_u8(blk + 2);
        const vf wl = vf_perm16(v, tab), wh = vf_perm16(vi_srl4(v), tab);
        UNROLL for (int t = 0; t < tn; t++) {
            acc[t][0] = vf_fma(wl, vf_load(x[t] + 32 * i), acc[t][0]);
            acc[t][1] = vf_fma(wh, vf_load(x[t] + 32 * i + 16), acc[t][1]);
        }
    }
    UNROLL for (int t = 0; t < tn; t++) {
        UNROLL for (int q = 1; q < NACC; q++) acc[t][0] = acc[t][0] + acc[t][q];
        out[t] = vf_hsum(acc[t][0]);
    }
}
#endif

/* Instantiate per token count so the token loops unroll. */
#if defined(MM_PERM16)
#define FUSED_PERM_CASES(tn)                                                                         \
    case HALO_TYPE_Q4_K: fused_q4_k_perm(row, a->n_cols, x, tn, out); break;                       \
    case HALO_TYPE_Q4_0: fused_nib32_perm(false, row, a->n_cols, x, tn, out); break;               \
    case HALO_TYPE_IQ4_NL: fused_nib32_perm(true, row, a->n_cols, x, tn, out); break;
#else
#define FUSED_PERM_CASES(tn) case HALO_TYPE_Q4_K: fused_q4_k(row, a->n_cols, x, tn, out); break;
#endif
#define FUSED_TN(tn)                                                                               \
    static void MM_NAME(fused_rows_##tn)(const halo_mm_args *a, int64_t r0, int64_t r1, int64_t t0) { \
        const halo_type_traits *tr = halo_type_get(a->type);                                       \
        const float *x[FT];                                                                        \
        for (int t = 0; t < tn; t++) x[t] = a->x + (t0 + t) * a->n_cols;                           \
        const unpack_fn unpack = unpacker(a->type);                                                \
        const size_t chunk_bytes = (size_t)(UNPACK_CHUNK / tr->block_size) * tr->type_size;        \
        float out[FT];                                                                             \
        for (int64_t r = r0; r < r1; r++) {                                                        \
            const char *row = a->w + (size_t)r * a->row_stride;                                    \
            switch (a->type) {                                                                     \
            case HALO_TYPE_F32: fused_plain(PLAIN_F32, row, a->n_cols, x, tn, out); break;         \
            case HALO_TYPE_F16: fused_plain(PLAIN_F16, row, a->n_cols, x, tn, out); break;         \
            case HALO_TYPE_BF16: fused_plain(PLAIN_BF16, row, a->n_cols, x, tn, out); break;       \
            case HALO_TYPE_Q8_0: fused_q8_0(row, a->n_cols, x, tn, out); break;                    \
            case HALO_TYPE_Q6_K: fused_q6_k(row, a->n_cols, x, tn, out); break;                    \
            FUSED_PERM_CASES(tn)                                                                   \
            default: fused_quant(unpack, chunk_bytes, row, a->n_cols, x, tn, out); break;          \
            }                                                                                      \
            for (int t = 0; t < tn; t++) a->y[(t0 + t) * a->n_rows + r] = out[t];                  \
        }                                                                                          \
    }
FUSED_TN(1)
FUSED_TN(2)
FUSED_TN(3)
FUSED_TN(4)
#undef FUSED_TN

static void MM_NAME(fused_rows)(const halo_mm_args *a, int64_t r0, int64_t r1) {
    for (int64_t t0 = 0; t0 < a->n_tokens; t0 += FT) {
        switch (a->n_tokens - t0 < FT ? a->n_tokens - t0 : FT) {
        case 1: MM_NAME(fused_rows_1)(a, r0, r1, t0); break;
        case 2: MM_NAME(fused_rows_2)(a, r0, r1, t0); break;
        case 3: MM_NAME(fused_rows_3)(a, r0, r1, t0); break;
        default: MM_NAME(fused_rows_4)(a, r0, r1, t0); break;
        }
    }
}

/* ---- panel strategy ------------------------------------------------------------- */

#define KC 256       /* columns per panel: a multiple of 256 (every block size divides it) */
#define MR (2 * VL)  /* rows per panel: two vectors */

/* Columns [c0, c0 + n) of one row to f32. */
static void decode_chunk(const halo_mm_args *a, const halo_type_traits *tr, unpack_fn unpack,
                         const char *row, int64_t c0, int64_t n, float *dst) {
    int64_t i = 0;
    switch (a->type) {
    case HALO_TYPE_F32:
        memcpy(dst, row + 4 * c0, (size_t)n * 4);
        return;
    case HALO_TYPE_F16:
        for (; i + VL <= n; i += VL) vf_store(dst + i, plain_load(PLAIN_F16, row, c0 + i));
        for (; i < n; i++) dst[i] = plain_scalar(PLAIN_F16, row, c0 + i);
        return;
    case HALO_TYPE_BF16:
        for (; i + VL <= n; i += VL) vf_store(dst + i, plain_load(PLAIN_BF16, row, c0 + i));
        for (; i < n; i++) dst[i] = plain_scalar(PLAIN_BF16, row, c0 + i);
        return;
    default: break;
    }
    unpacked u;
    for (; i < n; i += UNPACK_CHUNK) {
        const int m = n - i < UNPACK_CHUNK ? (int)(n - i) : UNPACK_CHUNK;
        unpack((const uint8_t *)row + (size_t)((c0 + i) / tr->block_size) * tr->type_size, m, &u);
        for (int j = 0; j < m / VL; j++) vf_store(dst + i + j * VL, unpacked_vec(&u, j));
    }
}

/* The panel: rows [rb, rb + mr) x columns [c0, c0 + kc) decoded and transposed to
 * panel[k * MR + r] (rows past mr and columns past kc, up to a multiple of VL, are
 * zero), so the micro-kernel loads the MR rows of one column as two vectors. */
static void build_panel(const halo_mm_args *a, const halo_type_traits *tr, unpack_fn unpack,
                        int64_t rb, int mr, int64_t c0, int64_t kc, float *panel) {
    float tmp[VL][KC] __attribute__((aligned(64)));
    const int64_t kpad = (kc + VL - 1) / VL * VL;
    for (int v = 0; v < MR / VL; v++) {
        for (int i = 0; i < VL; i++) {
            const int r = v * VL + i;
            int64_t k = 0;
            if (r < mr) {
                decode_chunk(a, tr, unpack, a->w + (size_t)(rb + r) * a->row_stride, c0, kc, tmp[i]);
                k = kc;
            }
            for (; k < kpad; k++) tmp[i][k] = 0.0f;
        }
        for (int64_t k0 = 0; k0 < kpad; k0 += VL) {
            vf blk[VL];
            for (int i = 0; i < VL; i++) blk[i] = vf_load(tmp[i] + k0);
            vf_transpose(blk);
            for (int j = 0; j < VL; j++) vf_store(panel + (k0 + j) * MR + v * VL, blk[j]);
        }
    }
}

/* y rows [rb, rb + mr) of tokens t0 .. t0 + tn over the panel's kc columns:
 * acc[v][t] (rows v*VL.., token t) += panel column k times x[t][k]. */
static ALWAYS_INLINE void micro(const halo_mm_args *a, const float *panel, int64_t kc,
                                int64_t c0, int64_t rb, int mr, int64_t t0, int tn) {
    vf acc[2][MM_TN];
    const float *x[MM_TN];
    UNROLL
    for (int t = 0; t < tn; t++) {
        acc[0][t] = acc[1][t] = vf_zero();
        x[t] = a->x + (t0 + t) * a->n_cols + c0;
    }
    for (int64_t k = 0; k < kc; k++) {
        const vf w0 = vf_load(panel + k * MR), w1 = vf_load(panel + k * MR + VL);
        UNROLL
        for (int t = 0; t < tn; t++) {
            const vf xb = vf_set1(x[t][k]);
            acc[0][t] = vf_fma(w0, xb, acc[0][t]);
            acc[1][t] = vf_fma(w1, xb, acc[1][t]);
        }
    }
    UNROLL
    for (int t = 0; t < tn; t++) {
        float *yt = a->y + (t0 + t) * a->n_rows + rb;
        if (mr == MR) {
            UNROLL
            for (int v = 0; v < 2; v++) {
                vf r = acc[v][t];
                if (c0 > 0) r = r + vf_load(yt + v * VL);
                vf_store(yt + v * VL, r);
            }
        } else {
            float out[MR];
            vf_store(out, acc[0][t]);
            vf_store(out + VL, acc[1][t]);
            for (int r = 0; r < mr; r++) yt[r] = c0 > 0 ? yt[r] + out[r] : out[r];
        }
    }
}

#define MICRO_TN(tn)                                                                               \
    static void MM_NAME(micro_##tn)(const halo_mm_args *a, const float *panel, int64_t kc,         \
                                    int64_t c0, int64_t rb, int mr, int64_t t0) {                  \
        micro(a, panel, kc, c0, rb, mr, t0, tn);                                                   \
    }
MM_MICRO_LIST(MICRO_TN)
#undef MICRO_TN

typedef void (*micro_fn)(const halo_mm_args *a, const float *panel, int64_t kc, int64_t c0,
                         int64_t rb, int mr, int64_t t0);

static void MM_NAME(panel_rows)(const halo_mm_args *a, int64_t r0, int64_t r1) {
#define MICRO_PTR(tn) MM_NAME(micro_##tn),
    static const micro_fn micros[MM_TN] = {MM_MICRO_LIST(MICRO_PTR)};
#undef MICRO_PTR
    const halo_type_traits *tr = halo_type_get(a->type);
    const unpack_fn unpack = unpacker(a->type);
    float panel[KC * MR] __attribute__((aligned(64)));
    for (int64_t rb = r0; rb < r1; rb += MR) {
        const int mr = r1 - rb < MR ? (int)(r1 - rb) : MR;
        for (int64_t c0 = 0; c0 < a->n_cols; c0 += KC) {
            const int64_t kc = a->n_cols - c0 < KC ? a->n_cols - c0 : KC;
            build_panel(a, tr, unpack, rb, mr, c0, kc, panel);
            for (int64_t t0 = 0; t0 < a->n_tokens; t0 += MM_TN) {
                const int tn = a->n_tokens - t0 < MM_TN ? (int)(a->n_tokens - t0) : MM_TN;
                micros[tn - 1](a, panel, kc, c0, rb, mr, t0);
            }
        }
    }
}

/* ---- entry points ------------------------------------------------------------------ */

bool MM_NAME(halo_mm_type_ok)(int type) {
    return type == HALO_TYPE_F32 || type == HALO_TYPE_F16 || type == HALO_TYPE_BF16 ||
           unpacker(type) != NULL;
}

void MM_NAME(halo_mm_rows)(const halo_mm_args *a, int64_t r0, int64_t r1) {
    if (a->n_tokens <= HALO_MM_FUSED_MAX) MM_NAME(fused_rows)(a, r0, r1);
    else MM_NAME(panel_rows)(a, r0, r1);
}
