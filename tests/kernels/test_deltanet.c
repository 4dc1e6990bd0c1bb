/* Gated DeltaNet kernels against their scalar references: the conv with its
 * carried state (whole batch == pieces), the recurrent and chunked forms of the
 * delta rule (several chunk sizes, partial chunks, a carried state, tiled and
 * grouped heads, split over threads), the gates and the norms. */
#include "compare.h"
#include "harness.h"
#include "rng.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdint.h>

static uint64_t seed = 7;
static void fill_scaled(float *x, int64_t n, float scale) { /* uniform in [-scale, scale) */
    for (int64_t i = 0; i < n; i++) x[i] = lcg_frand(&seed) * scale;
}

static void test_conv(void) {
    enum { T = 11, CH = 37, KW = 4, STRIDE = 41 };
    float x[T * STRIDE], w[CH * KW], st0[(KW - 1) * CH];
    float y_ref[T * CH], y[T * CH], st_ref[(KW - 1) * CH], st[(KW - 1) * CH];
    fill_scaled(x, T * STRIDE, 2.0f), fill_scaled(w, CH * KW, 1.0f);
    fill_scaled(st0, (KW - 1) * CH, 2.0f);
    memcpy(st_ref, st0, sizeof st0);
    halo_deltanet_conv_ref(x, STRIDE, T, CH, KW, w, st_ref, y_ref, CH);
    /* whole batch, split over 1 and 3 "threads" */
    for (int nth = 1; nth <= 3; nth += 2) {
        memcpy(st, st0, sizeof st0);
        const int64_t per = (CH + nth - 1) / nth;
        for (int ith = 0; ith < nth; ith++) {
            int64_t c0 = per * ith, c1 = c0 + per < CH ? c0 + per : CH;
            halo_deltanet_conv(x, STRIDE, T, CH, KW, w, st, y, CH, c0, c1);
        }
        CHECK_MSG(rel_rms(y, y_ref, T * CH) < 1e-6, "conv nth %d: %.3g", nth,
                  rel_rms(y, y_ref, T * CH));
        CHECK(rel_rms(st, st_ref, (KW - 1) * CH) == 0);
    }
    /* pieces of 1, 2 and 3 tokens carry the state exactly */
    for (int piece = 1; piece <= 3; piece++) {
        memcpy(st, st0, sizeof st0);
        for (int t = 0; t < T; t += piece) {
            int n = T - t < piece ? T - t : piece;
            halo_deltanet_conv(x + t * STRIDE, STRIDE, n, CH, KW, w, st, y + t * CH, CH, 0, CH);
        }
        CHECK_MSG(rel_rms(y, y_ref, T * CH) < 1e-6, "conv pieces of %d: %.3g", piece,
                  rel_rms(y, y_ref, T * CH));
        CHECK(rel_rms(st, st_ref, (KW - 1) * CH) == 0);
    }
}

/* random normalized q, k; decays g in [-3, 0); beta in (0, 1) */
typedef struct case_data {
    float *q, *k, *v, *g, *beta, *state0;
} case_data;

static void make_case(case_data *c, int64_t T, int64_t HK, int64_t HV, int64_t DK, int64_t DV) {
    c->q = malloc(sizeof(float) * T * HK * DK), c->k = malloc(sizeof(float) * T * HK * DK);
    c->v = malloc(sizeof(float) * T * HV * DV);
    c->g = malloc(sizeof(float) * T * HV), c->beta = malloc(sizeof(float) * T * HV);
    c->state0 = malloc(sizeof(float) * HV * DK * DV);
    fill_scaled(c->q, T * HK * DK, 1.0f), fill_scaled(c->k, T * HK * DK, 1.0f);
    fill_scaled(c->v, T * HV * DV, 1.0f);
    for (int64_t i = 0; i < T * HK; i++) {
        halo_deltanet_l2_norm(c->q + i * DK, DK, 1e-6f, 1.0f / sqrtf((float)DK));
        halo_deltanet_l2_norm(c->k + i * DK, DK, 1e-6f, 1.0f);
    }
    for (int64_t i = 0; i < T * HV; i++) {
        c->g[i] = -1.5f * (lcg_frand(&seed) + 1.0f);
        c->beta[i] = 0.5f + 0.49f * lcg_frand(&seed);
    }
    fill_scaled(c->state0, HV * DK * DV, 0.5f);
}

static halo_deltanet_args args_for(const case_data *c, int64_t t0, int64_t n, int64_t HK,
                                   int64_t HV, int64_t DK, int64_t DV, bool tiled, float *state,
                                   float *o) {
    halo_deltanet_args a = {
        .n_tokens = n, .n_k_heads = HK, .n_v_heads = HV, .dk = DK, .dv = DV, .tiled = tiled,
        .q = c->q + t0 * HK * DK, .k = c->k + t0 * HK * DK, .qk_stride = HK * DK,
        .v = c->v + t0 * HV * DV, .v_stride = HV * DV,
        .g = c->g + t0 * HV, .beta = c->beta + t0 * HV, .gb_stride = HV,
        .state = state, .o = o + t0 * HV * DV, .o_stride = HV * DV,
    };
    return a;
}

static void test_rule(int64_t T, int64_t HK, int64_t HV, int64_t DK, int64_t DV, bool tiled) {
    case_data c;
    make_case(&c, T, HK, HV, DK, DV);
    const int64_t ns = HV * DK * DV, no = T * HV * DV;
    float *s_ref = malloc(sizeof(float) * ns), *s = malloc(sizeof(float) * ns);
    float *o_ref = malloc(sizeof(float) * no), *o = malloc(sizeof(float) * no);
    memcpy(s_ref, c.state0, sizeof(float) * ns);
    halo_deltanet_args a = args_for(&c, 0, T, HK, HV, DK, DV, tiled, s_ref, o_ref);
    halo_deltanet_ref(&a);

    /* recurrent, whole sequence, split over 2 threads */
    memcpy(s, c.state0, sizeof(float) * ns);
    a = args_for(&c, 0, T, HK, HV, DK, DV, tiled, s, o);
    for (int ith = 0; ith < 2; ith++) halo_deltanet_recurrent(&a, ith, 2);
    double eo = rel_rms(o, o_ref, no), es = rel_rms(s, s_ref, ns);
    printf("recurrent T=%lld %s: out %.2e state %.2e\n", (long long)T, tiled ? "tiled" : "grouped",
           eo, es);
    CHECK_MSG(eo < 1e-5 && es < 1e-5, "recurrent: out %.3g state %.3g", eo, es);

    /* chunked, several chunk sizes (with a partial last chunk), then a recurrent tail */
    const int64_t chunks[] = {1, 5, 16, 64, HALO_DELTANET_MAX_CHUNK};
    for (size_t ci = 0; ci < sizeof chunks / sizeof chunks[0]; ci++) {
        const int64_t C = chunks[ci], tail = 3;
        float *work = malloc(sizeof(float) * halo_deltanet_work_floats(C, DK, DV));
        memcpy(s, c.state0, sizeof(float) * ns);
        a = args_for(&c, 0, T - tail, HK, HV, DK, DV, tiled, s, o);
        halo_deltanet_chunked(&a, C, work, 0, 1);
        a = args_for(&c, T - tail, tail, HK, HV, DK, DV, tiled, s, o);
        halo_deltanet_recurrent(&a, 0, 1);
        eo = rel_rms(o, o_ref, no), es = rel_rms(s, s_ref, ns);
        printf("chunked C=%lld T=%lld %s: out %.2e state %.2e\n", (long long)C, (long long)T,
               tiled ? "tiled" : "grouped", eo, es);
        CHECK_MSG(eo < 1e-5 && es < 1e-5, "chunked %lld: out %.3g state %.3g", (long long)C,
                  eo, es);
        free(work);
    }
    free(c.q), free(c.k), free(c.v), free(c.g), free(c.beta), free(c.state0);
    free(s_ref), free(s), free(o_ref), free(o);
}

static void test_small_ops(void) {
    float a[3] = {-2.0f, -0.5f, -7.0f}, alpha[3] = {0.3f, 25.0f, -4.0f}, dt[3] = {0.1f, 0.2f, 1.0f};
    float b[3] = {0.0f, 3.0f, -2.0f}, g[3], beta[3];
    halo_deltanet_gates(alpha, b, a, dt, 3, g, beta);
    for (int h = 0; h < 3; h++) {
        double s = (double)alpha[h] + dt[h];
        double want_g = a[h] * log1p(exp(s)), want_b = 1.0 / (1.0 + exp(-(double)b[h]));
        CHECK_MSG(fabs(g[h] - want_g) < 1e-5 * fabs(want_g) + 1e-6, "g[%d] %g vs %g", h, g[h],
                  want_g);
        CHECK(fabs(beta[h] - want_b) < 1e-6);
    }
    float x[96], z[96], w[96], x0[96];
    fill_scaled(x0, 96, 3.0f), fill_scaled(z, 96, 2.0f), fill_scaled(w, 96, 1.5f);
    memcpy(x, x0, sizeof x);
    halo_deltanet_norm_gated(x, z, w, 96, 1e-6f);
    double ss = 0;
    for (int i = 0; i < 96; i++) ss += (double)x0[i] * x0[i];
    double err = 0;
    for (int i = 0; i < 96; i++) {
        double want = x0[i] / sqrt(ss / 96 + 1e-6) * w[i] * (z[i] / (1.0 + exp(-(double)z[i])));
        err = fmax(err, fabs(x[i] - want));
    }
    CHECK_MSG(err < 1e-5, "norm_gated max err %g", err);
    memcpy(x, x0, sizeof x);
    halo_deltanet_l2_norm(x, 96, 1e-6f, 0.25f);
    double n2 = 0;
    for (int i = 0; i < 96; i++) n2 += (double)x[i] * x[i];
    CHECK(fabs(sqrt(n2) - 0.25) < 1e-6);
}

int main(void) {
    test_conv();
    test_small_ops();
    test_rule(37, 2, 4, 16, 24, true);
    test_rule(37, 2, 4, 16, 24, false);
    test_rule(150, 1, 2, 128, 128, true); /* Qwen3.5 head dims, several chunks */
    return halo_test_finish("deltanet");
}
