/* The forward-pass ops against their scalar references: RMS norm, RoPE (normal,
 * NEOX, partial), softmax, SwiGLU, top-k routing, and attention over a paged
 * cache in every cache type (pages out of order, a partial last page, GQA). */
#include "compare.h"
#include "harness.h"
#include "rng.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static void test_rms_norm(uint64_t *seed) {
    enum { R = 3, N = 77 };
    float x[R * N], w[N], y[R * N], yr[R * N];
    for (int i = 0; i < R * N; i++) x[i] = 3 * lcg_frand(seed);
    for (int i = 0; i < N; i++) w[i] = 1 + lcg_frand(seed);
    halo_rms_norm(x, w, y, R, N, 1e-6f);
    halo_rms_norm_ref(x, w, yr, R, N, 1e-6f);
    CHECK_MSG(rel_rms(y, yr, R * N) < 1e-6, "rms_norm %.3g", rel_rms(y, yr, R * N));
    halo_rms_norm(x, NULL, x, R, N, 1e-6f); /* in place, no weight */
    double ss = 0;
    for (int i = 0; i < N; i++) ss += (double)x[i] * x[i];
    CHECK(fabs(ss / N - 1) < 1e-4);
}

static void test_rope(uint64_t *seed) {
    enum { H = 3, D = 64 };
    float inv[D / 2];
    for (int mode = 0; mode <= 2; mode += 2)
        for (int n_rot = 16; n_rot <= D; n_rot += 48) {
            halo_rope_inv_freq(10000.0f, n_rot, inv);
            for (int pos = 0; pos < 300; pos += 37) {
                float x[H * D], xr[H * D], x0[H * D];
                for (int i = 0; i < H * D; i++) x0[i] = x[i] = xr[i] = lcg_frand(seed);
                halo_rope(x, H, D, n_rot, mode, (float)pos, inv);
                halo_rope_ref(xr, H, D, n_rot, mode, (float)pos, 10000.0f);
                /* float angles of up to 300 rad: ~3e-5 absolute */
                CHECK_MSG(rel_rms(x, xr, H * D) < 1e-4, "rope mode %d n_rot %d pos %d: %.3g",
                          mode, n_rot, pos, rel_rms(x, xr, H * D));
                for (int h = 0; h < H; h++)
                    for (int i = n_rot; i < D; i++) CHECK(x[h * D + i] == x0[h * D + i]);
            }
        }
    /* the two modes pair different dims: NORM (0,1), NEOX (0, n_rot/2) */
    float a[4] = {1, 0, 0, 0}, b[4] = {1, 0, 0, 0};
    halo_rope_inv_freq(10000.0f, 4, inv);
    halo_rope(a, 1, 4, 4, HALO_ROPE_NORM, 1.0f, inv);
    halo_rope(b, 1, 4, 4, HALO_ROPE_NEOX, 1.0f, inv);
    CHECK(fabsf(a[1] - sinf(1.0f)) < 1e-6f && a[2] == 0);
    CHECK(fabsf(b[2] - sinf(1.0f)) < 1e-6f && b[1] == 0);
}

static void test_softmax_swiglu(uint64_t *seed) {
    enum { N = 101 };
    float x[N], xr[N], g[N], gr[N], u[N];
    for (int i = 0; i < N; i++) {
        x[i] = xr[i] = 20 * lcg_frand(seed);
        g[i] = gr[i] = 6 * lcg_frand(seed);
        u[i] = lcg_frand(seed);
    }
    halo_softmax(x, N);
    halo_softmax_ref(xr, N);
    CHECK(rel_rms(x, xr, N) < 1e-5);
    halo_swiglu(g, u, N);
    halo_swiglu_ref(gr, u, N);
    CHECK(rel_rms(g, gr, N) < 1e-6);
    float xg[N], xgr[N], gate[N];
    for (int i = 0; i < N; i++) {
        gate[i] = 40 * lcg_frand(seed); /* saturated gates too */
        xg[i] = u[i];
        xgr[i] = (float)((double)u[i] / (1.0 + exp(-(double)gate[i])));
    }
    halo_sigmoid_gate(xg, gate, N);
    CHECK(rel_rms(xg, xgr, N) < 1e-6);
    float s[3] = {-1, 0, 2};
    halo_silu(s, 3);
    CHECK(fabsf(s[0] - (-1 / (1 + expf(1)))) < 1e-6f && s[1] == 0);
}

static void test_topk(uint64_t *seed) {
    enum { E = 37, K = 5 };
    for (int rep = 0; rep < 20; rep++) {
        float l[E];
        for (int i = 0; i < E; i++) l[i] = 4 * lcg_frand(seed);
        if (rep == 0) l[3] = l[7] = 10; /* a tie: the lower index first */
        int32_t id[K], idr[K];
        float w[K], wr[K];
        for (int norm = 0; norm < 2; norm++) {
            halo_topk_route(l, E, K, norm, id, w);
            halo_topk_route_ref(l, E, K, norm, idr, wr);
            for (int j = 0; j < K; j++) {
                CHECK(id[j] == idr[j]);
                CHECK(fabsf(w[j] - wr[j]) < 1e-6f);
                if (j) CHECK(l[id[j]] <= l[id[j - 1]]);
            }
            if (rep == 0) CHECK(id[0] == 3 && id[1] == 7);
            if (norm) CHECK(fabsf(w[0] + w[1] + w[2] + w[3] + w[4] - 1) < 1e-5f);
        }
    }
}

/* Paged attention in each cache type against the reference on the same
 * stored bytes (blocks of query tokens with causal limits, more tokens than a
 * block), and the f32/f16 cache against a direct dense computation. */
static void test_attention(uint64_t *seed) {
    enum { PS = 8, NP = 6, NKV = 2, GROUP = 3, DK = 64, DV = 32, NKVPOS = 43, NT = 21 };
    const int types[] = {HALO_TYPE_F32, HALO_TYPE_F16, HALO_TYPE_BF16, HALO_TYPE_Q8_0,
                         HALO_TYPE_Q4_0, HALO_TYPE_IQ4_NL};
    const size_t n_types = sizeof types / sizeof types[0];
    const int32_t pages[NP] = {4, 0, 5, 2, 1, 3}; /* out of order on purpose */
    static float kf[NKVPOS][NKV][DK], vf[NKVPOS][NKV][DV], q[NT][GROUP * DK + 5];
    for (int p = 0; p < NKVPOS; p++)
        for (int h = 0; h < NKV; h++) {
            for (int i = 0; i < DK; i++) kf[p][h][i] = lcg_frand(seed);
            for (int i = 0; i < DV; i++) vf[p][h][i] = lcg_frand(seed);
        }
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < GROUP * DK; i++) q[t][i] = 2 * lcg_frand(seed);
    const size_t q_stride = GROUP * DK + 5, o_stride = GROUP * DV + 3;
    float *scratch = malloc(sizeof(float) * halo_attn_scratch_floats(PS, DK, DV, GROUP));
    float *out = malloc(sizeof(float) * NT * o_stride), *ref = malloc(sizeof(float) * NT * o_stride);
    for (size_t ti = 0; ti < n_types; ti++) {
        int tk = types[ti], tv = types[(ti + 1) % n_types];
        size_t hk = halo_type_row_size(tk, DK), hv = halo_type_row_size(tv, DV);
        char *kb = calloc(NP * PS, hk * NKV), *vb = calloc(NP * PS, hv * NKV);
        for (int p = 0; p < NKVPOS; p++) {
            size_t cell = (size_t)pages[p / PS] * PS + p % PS;
            for (int h = 0; h < NKV; h++) {
                halo_error err = {0};
                if (tk == HALO_TYPE_F32) memcpy(kb + cell * hk * NKV + h * hk, kf[p][h], hk);
                else halo_quant_encode_ref(tk, kf[p][h], kb + cell * hk * NKV + h * hk, DK, &err);
                if (tv == HALO_TYPE_F32) memcpy(vb + cell * hv * NKV + h * hv, vf[p][h], hv);
                else halo_quant_encode_ref(tv, vf[p][h], vb + cell * hv * NKV + h * hv, DV, &err);
            }
        }
        for (int h = 0; h < NKV; h++)
            for (int n_tok = 1; n_tok <= NT; n_tok += 10)
                for (int first = 1; first + n_tok - 1 <= NKVPOS; first += 9) {
                    int32_t n_kv[NT];
                    for (int t = 0; t < n_tok; t++) n_kv[t] = first + t;
                    halo_attn_kv kv = {tk, tv, kb, vb, PS * hk * NKV, PS * hv * NKV, hk * NKV,
                                       hv * NKV, h * hk, h * hv, PS, pages};
                    halo_attn_paged(&kv, q[0], q_stride, n_tok, n_kv, GROUP, DK, DV, 0.125f, out,
                                    o_stride, scratch);
                    halo_attn_paged_ref(&kv, q[0], q_stride, n_tok, n_kv, GROUP, DK, DV, 0.125f,
                                        ref, o_stride);
                    double worst = 0;
                    for (int t = 0; t < n_tok; t++) {
                        double e = rel_rms(out + t * o_stride, ref + t * o_stride, GROUP * DV);
                        worst = e > worst ? e : worst;
                    }
                    CHECK_MSG(worst < 1e-5, "attn %s/%s n_tok %d first %d: %.3g",
                              halo_type_name(tk), halo_type_name(tv), n_tok, first, worst);
                    if (tk != HALO_TYPE_F32 || tv != HALO_TYPE_F16) continue;
                    /* dense reference on the unrounded values: only V's f16 rounding differs */
                    for (int t = 0; t < n_tok; t++) {
                        float dense[GROUP * DV];
                        for (int g = 0; g < GROUP; g++) {
                            double sc[NKVPOS], mx = -1e300, sum = 0;
                            for (int p = 0; p < n_kv[t]; p++) {
                                double d = 0;
                                for (int i = 0; i < DK; i++) d += (double)q[t][g * DK + i] * kf[p][h][i];
                                sc[p] = d * 0.125;
                                mx = sc[p] > mx ? sc[p] : mx;
                            }
                            for (int p = 0; p < n_kv[t]; p++) sum += exp(sc[p] - mx);
                            for (int i = 0; i < DV; i++) {
                                double o = 0;
                                for (int p = 0; p < n_kv[t]; p++)
                                    o += exp(sc[p] - mx) / sum * vf[p][h][i];
                                dense[g * DV + i] = (float)o;
                            }
                        }
                        CHECK_MSG(rel_rms(out + t * o_stride, dense, GROUP * DV) < 1e-3, "dense %.3g",
                                  rel_rms(out + t * o_stride, dense, GROUP * DV));
                    }
                }
        /* split decoding: a token's positions in 1..4 ranges, merged */
        for (int h = 0; h < NKV; h++)
            for (int n_parts = 1; n_parts <= 4; n_parts++)
                for (int32_t n_kv = 1; n_kv <= NKVPOS; n_kv += 6) {
                    halo_attn_kv kv = {tk, tv, kb, vb, PS * hk * NKV, PS * hv * NKV, hk * NKV,
                                       hv * NKV, h * hk, h * hv, PS, pages};
                    const size_t pf = HALO_ATTN_PART_FLOATS(GROUP, DV);
                    float parts[4 * HALO_ATTN_PART_FLOATS(GROUP, DV)];
                    int np = (n_kv + PS - 1) / PS;
                    for (int j = 0; j < n_parts; j++)
                        halo_attn_paged_part(&kv, q[0], n_kv, GROUP, DK, DV, 0.125f,
                                             j * np / n_parts * PS, (j + 1) * np / n_parts * PS,
                                             parts + j * pf, scratch);
                    halo_attn_merge(parts, pf, n_parts, GROUP, DV, out);
                    halo_attn_paged_ref(&kv, q[0], q_stride, 1, &n_kv, GROUP, DK, DV, 0.125f, ref,
                                        o_stride);
                    CHECK_MSG(rel_rms(out, ref, GROUP * DV) < 1e-5, "split %s/%s %d parts n_kv %d: %.3g",
                              halo_type_name(tk), halo_type_name(tv), n_parts, n_kv,
                              rel_rms(out, ref, GROUP * DV));
                }
        free(kb);
        free(vb);
    }
    free(scratch);
    free(out);
    free(ref);
}

/* The Walsh-Hadamard rotation against the matrix product, its own inverse, and what the
 * KV cache relies on: attention over rotated q, k, v (f32 cache), the output turned back,
 * equals attention over the plain ones. */
static void test_hadamard(uint64_t *seed) {
    enum { R = 3, N = 256 };
    static float x[R][N], y[R][N], z[R][N];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < N; i++) x[r][i] = 3 * lcg_frand(seed);
    x[1][17] = 40; /* an outlier channel */
    for (int block = 64; block <= N; block *= 2) {
        memcpy(y, x, sizeof x);
        memcpy(z, x, sizeof x);
        halo_hadamard(y[0], R, N, block);
        halo_hadamard_ref(z[0], R, N, block);
        CHECK_MSG(rel_rms(y[0], z[0], R * N) < 1e-6, "hadamard %d: %.3g", block,
                  rel_rms(y[0], z[0], R * N));
        double dot_x = 0, dot_y = 0, mx = 0;
        for (int i = 0; i < N; i++) {
            dot_x += (double)x[0][i] * x[1][i];
            dot_y += (double)y[0][i] * y[1][i];
            mx = fabs(y[1][i]) > mx ? fabs(y[1][i]) : mx;
        }
        CHECK(fabs(dot_x - dot_y) < 1e-4 * (fabs(dot_x) + 1));
        CHECK(mx < 40 / sqrt(block) + 12); /* the outlier spread over its run */
        halo_hadamard(y[0], R, N, block);
        CHECK(rel_rms(y[0], x[0], R * N) < 1e-6);
    }
    /* attention: one KV head, 2 query heads, 5 tokens over 11 positions, f32 cache */
    enum { PS = 4, NP = 3, G = 2, D = 128, NPOS = 11, NT = 5 };
    static float k[NPOS][D], v[NPOS][D], q[NT][G * D], o[NT][G * D], o_rot[NT][G * D];
    for (int p = 0; p < NPOS; p++)
        for (int i = 0; i < D; i++) {
            k[p][i] = lcg_frand(seed);
            v[p][i] = lcg_frand(seed);
        }
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < G * D; i++) q[t][i] = 2 * lcg_frand(seed);
    const int32_t pages[NP] = {2, 0, 1};
    int32_t n_kv[NT];
    for (int t = 0; t < NT; t++) n_kv[t] = NPOS - NT + 1 + t;
    float *scratch = malloc(sizeof(float) * halo_attn_scratch_floats(PS, D, D, G));
    static float kb[NP * PS][D], vb[NP * PS][D];
    for (int rot = 0; rot < 2; rot++) {
        for (int p = 0; p < NPOS; p++) {
            size_t cell = (size_t)pages[p / PS] * PS + p % PS;
            memcpy(kb[cell], k[p], sizeof k[p]);
            memcpy(vb[cell], v[p], sizeof v[p]);
            if (rot) {
                halo_hadamard(kb[cell], 1, D, 128);
                halo_hadamard(vb[cell], 1, D, 64);
            }
        }
        static float qr[NT][G * D];
        memcpy(qr, q, sizeof q);
        if (rot) halo_hadamard(qr[0], NT, G * D, 128);
        halo_attn_kv kv = {HALO_TYPE_F32, HALO_TYPE_F32, (const char *)kb, (const char *)vb,
                           PS * D * sizeof(float), PS * D * sizeof(float), D * sizeof(float),
                           D * sizeof(float), 0, 0, PS, pages};
        float *out = rot ? o_rot[0] : o[0];
        halo_attn_paged(&kv, qr[0], G * D, NT, n_kv, G, D, D, 0.088f, out, G * D, scratch);
        if (rot) halo_hadamard(out, NT, G * D, 64);
    }
    CHECK_MSG(rel_rms(o_rot[0], o[0], NT * G * D) < 1e-5, "rotated attention %.3g",
              rel_rms(o_rot[0], o[0], NT * G * D));
    free(scratch);
}

int main(void) {
    uint64_t seed = 7;
    test_hadamard(&seed);
    test_rms_norm(&seed);
    test_rope(&seed);
    test_softmax_swiglu(&seed);
    test_topk(&seed);
    test_attention(&seed);
    return halo_test_finish("kernels/ops");
}
