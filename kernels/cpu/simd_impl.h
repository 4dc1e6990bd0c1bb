/*
 * simd_impl — the body of one vector path of halo_matmul, written once over a
 * small vector vocabulary and included by matmul_avx2.c (8 lanes) and
 * matmul_avx512.c (16 lanes), each of which defines, inside its target region:
 *   VL                      lanes of a vf (8 or 16; 16 % VL == 0)
 *   vf                      the float vector type
 *   vf_load(p), vf_store(p, v), vf_zero(), vf_set1(f), vf_fma(a, b, c) = a*b+c,
 *   vf_hsum(v), vf_from_i8(p) (VL int8 to float), vf_from_f16(p), vf_from_bf16(p)
 *   MM_MR, MM_TN            the prefill micro-kernel's rows x tokens
 *   MM_NAME(x)              x with the path's suffix
 * See simd.h for the two strategies.
 */
#include "kernels/cpu/simd.h"
#include "kernels/cpu/simd_unpack.h"
#include "quant/quant.h"

#define ALWAYS_INLINE __attribute__((always_inline)) inline

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

/* Two accumulators per token break the FMA dependency chain. */
static ALWAYS_INLINE void fused_plain(plain_kind k, const char *row, int64_t n, const float *const *x,
                                      int tn, float *out) {
    vf acc[FT][2];
    for (int t = 0; t < tn; t++) acc[t][0] = acc[t][1] = vf_zero();
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        const vf w0 = plain_load(k, row, i), w1 = plain_load(k, row, i + VL);
        for (int t = 0; t < tn; t++) {
            acc[t][0] = vf_fma(w0, vf_load(x[t] + i), acc[t][0]);
            acc[t][1] = vf_fma(w1, vf_load(x[t] + i + VL), acc[t][1]);
        }
    }
    for (; i + VL <= n; i += VL) {
        const vf w0 = plain_load(k, row, i);
        for (int t = 0; t < tn; t++) acc[t][0] = vf_fma(w0, vf_load(x[t] + i), acc[t][0]);
    }
    for (int t = 0; t < tn; t++) {
        float s = vf_hsum(acc[t][0]) + vf_hsum(acc[t][1]);
        for (int64_t c = i; c < n; c++) s += plain_scalar(k, row, c) * x[t][c];
        out[t] = s;
    }
}

static ALWAYS_INLINE void fused_quant(unpack_fn unpack, size_t chunk_bytes, const char *row,
                                      int64_t n, const float *const *x, int tn, float *out) {
    vf acc[FT][2];
    unpacked u;
    for (int t = 0; t < tn; t++) acc[t][0] = acc[t][1] = vf_zero();
    for (int64_t c0 = 0; c0 < n; c0 += UNPACK_CHUNK, row += chunk_bytes) {
        const int m = n - c0 < UNPACK_CHUNK ? (int)(n - c0) : UNPACK_CHUNK;
        unpack((const uint8_t *)row, m, &u);
        for (int g = 0; g < m / 16; g++) {
            const vf s = vf_set1(u.sc[g]), nm = vf_set1(-u.mn[g]);
            for (int v = 0; v < 16 / VL; v++) {
                const int off = 16 * g + VL * v, a = (g * (16 / VL) + v) & 1;
                const vf w = vf_fma(vf_from_i8(u.q + off), s, nm);
                for (int t = 0; t < tn; t++) acc[t][a] = vf_fma(w, vf_load(x[t] + c0 + off), acc[t][a]);
            }
        }
    }
    for (int t = 0; t < tn; t++) out[t] = vf_hsum(acc[t][0]) + vf_hsum(acc[t][1]);
}

/* Instantiate per token count so the token loops unroll. */
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

#define KC 1024 /* columns per panel: a multiple of 256 */

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
    const size_t block_bytes = tr->type_size;
    unpacked u;
    for (; i < n; i += UNPACK_CHUNK) {
        const int m = n - i < UNPACK_CHUNK ? (int)(n - i) : UNPACK_CHUNK;
        unpack((const uint8_t *)row + (size_t)((c0 + i) / tr->block_size) * block_bytes, m, &u);
        for (int g = 0; g < m / 16; g++) {
            const vf s = vf_set1(u.sc[g]), nm = vf_set1(-u.mn[g]);
            for (int v = 0; v < 16 / VL; v++) {
                const int off = 16 * g + VL * v;
                vf_store(dst + i + off, vf_fma(vf_from_i8(u.q + off), s, nm));
            }
        }
    }
}

/* out[r][t] = w[r] . x[t] over n values (w and x f32). */
static void MM_NAME(micro)(const float *const *w, const float *const *x, int64_t n,
                           float out[MM_MR][MM_TN]) {
    vf acc[MM_MR][MM_TN];
    for (int r = 0; r < MM_MR; r++)
        for (int t = 0; t < MM_TN; t++) acc[r][t] = vf_zero();
    int64_t i = 0;
    for (; i + VL <= n; i += VL) {
        vf wv[MM_MR];
        for (int r = 0; r < MM_MR; r++) wv[r] = vf_load(w[r] + i);
        for (int t = 0; t < MM_TN; t++) {
            const vf xv = vf_load(x[t] + i);
            for (int r = 0; r < MM_MR; r++) acc[r][t] = vf_fma(wv[r], xv, acc[r][t]);
        }
    }
    for (int r = 0; r < MM_MR; r++)
        for (int t = 0; t < MM_TN; t++) {
            float s = vf_hsum(acc[r][t]);
            for (int64_t c = i; c < n; c++) s += w[r][c] * x[t][c];
            out[r][t] = s;
        }
}

static void MM_NAME(panel_rows)(const halo_mm_args *a, int64_t r0, int64_t r1) {
    const halo_type_traits *tr = halo_type_get(a->type);
    const unpack_fn unpack = unpacker(a->type);
    float buf[MM_MR][KC] __attribute__((aligned(64)));
    for (int64_t rb = r0; rb < r1; rb += MM_MR) {
        const int mr = r1 - rb < MM_MR ? (int)(r1 - rb) : MM_MR;
        for (int64_t c0 = 0; c0 < a->n_cols; c0 += KC) {
            const int64_t kc = a->n_cols - c0 < KC ? a->n_cols - c0 : KC;
            const float *w[MM_MR];
            for (int r = 0; r < MM_MR; r++) {
                if (r < mr) {
                    decode_chunk(a, tr, unpack, a->w + (size_t)(rb + r) * a->row_stride, c0, kc,
                                 buf[r]);
                    w[r] = buf[r];
                } else {
                    w[r] = buf[0]; /* padding: computed, not stored */
                }
            }
            for (int64_t t0 = 0; t0 < a->n_tokens; t0 += MM_TN) {
                const int tn = a->n_tokens - t0 < MM_TN ? (int)(a->n_tokens - t0) : MM_TN;
                const float *x[MM_TN];
                for (int t = 0; t < MM_TN; t++) x[t] = a->x + (t0 + (t < tn ? t : 0)) * a->n_cols + c0;
                float out[MM_MR][MM_TN];
                MM_NAME(micro)(w, x, kc, out);
                for (int t = 0; t < tn; t++) {
                    float *yt = a->y + (t0 + t) * a->n_rows + rb;
                    for (int r = 0; r < mr; r++) yt[r] = c0 == 0 ? out[r][t] : yt[r] + out[r][t];
                }
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
