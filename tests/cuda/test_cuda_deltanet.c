/* The Gated DeltaNet kernels on the GPU (kernels/cuda/deltanet.cu) against the CPU
 * chain of model/qwen35.c: halo_deltanet_conv_ref + the L2 norms of the q heads (scale
 * 1/sqrt(dk)) and k heads, halo_deltanet_gates, halo_deltanet_ref (tiled) and
 * halo_deltanet_norm_gated per token and value head.
 *
 * Each case runs several sequences through two calls (a ubatch regrouped by sequence:
 * one segment per sequence, in a shuffled order, states at shuffled slots), the second
 * continuing the states the first left; the CPU runs each sequence's tokens in one
 * piece. Checked: the conv outputs (after the L2 norms), g and beta, the outputs after
 * the gated norm (both calls), the final conv and SSM states, and that the padding
 * between the states' strides is untouched.
 *
 * Errors are max |gpu - ref| / max |ref| over each array, printed per case; the bounds
 * are small multiples of f32 rounding (u = 2^-24 = 6e-8), see below. */
#include "compare.h"
#include "cuda_test.h"
#include "harness.h"
#include "rng.h"

#include "kernels/kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef HALO_HAVE_CUDA

/* Measured on an H200 (max over the cases): conv 1.9e-7, g / beta 2.0e-7, SSM state
 * 4.4e-7, outputs 5.4e-7, i.e. a few u. Bounds at ~5-10x that:
 * conv: 4 products summed in f32 (the reference in double), SiLU (expf, <= 2 ulp), an
 * L2 norm over dk values: ~10 roundings, bound 1e-6 (~16 u). */
#define TOL_CONV 1e-6
/* gates: softplus (expf, log1pf) times a, and sigmoid: a few ulp, bound 1e-6. */
#define TOL_GATES 1e-6
/* the SSM state after up to ~340 recurrent steps: each step rounds a dk-long dot
 * product and the update (~1e-7 of the state's scale), the decays damping old errors;
 * the reference itself stores f32 every step. Bound 4e-6 (~64 u). */
#define TOL_STATE 4e-6
/* outputs after the gated norm: the state's error through one more dot product and a
 * per-head RMS norm. Bound 4e-6. */
#define TOL_OUT 4e-6

static void *S;

static void report(const char *name, const char *what, double err, double tol) {
    printf("    %-10s max rel err %.3g (bound %.0e)\n", what, err, tol);
    CHECK_MSG(err <= tol, "%s: %s %.3g > %.0e", name, what, err, tol);
}

typedef struct dn_case {
    const char *name;
    int hk, hv, dk, dv, kernel;
    int n_seq;
    const int *len[2]; /* tokens of each sequence in call 0 and call 1 (0 allowed) */
} dn_case;

typedef struct seq_data {
    int n; /* tokens over both calls */
    float *x, *alpha, *b, *z;   /* inputs [n][ch], [n][hv], [n][hv], [n][hv*dv] */
    float *y, *g, *beta, *o;    /* CPU results */
    float *conv0, *ssm0;        /* initial states */
    float *conv, *ssm;          /* CPU states after both calls */
} seq_data;

static void run_case(const dn_case *c) {
    const int hk = c->hk, hv = c->hv, dk = c->dk, dv = c->dv, K = c->kernel, n_seq = c->n_seq;
    const int64_t ch = 2 * (int64_t)hk * dk + (int64_t)hv * dv, vd = (int64_t)hv * dv;
    const int64_t conv_floats = (K - 1) * ch, ssm_floats = (int64_t)hv * dk * dv;
    const int64_t conv_stride = conv_floats + 8, ssm_stride = ssm_floats + 64; /* padded */
    const float eps = 1e-6f, q_scale = 1.0f / sqrtf((float)dk), pad = -123.0f;
    printf("  %s: %d key heads, %d value heads, dk %d, dv %d, conv %d, %d sequences\n", c->name,
           hk, hv, dk, dv, K, n_seq);

    /* weights */
    float *w = malloc(sizeof(float) * (size_t)(ch * K)), *a = malloc(sizeof(float) * (size_t)hv);
    float *dt = malloc(sizeof(float) * (size_t)hv), *nw = malloc(sizeof(float) * (size_t)dv);
    fill(w, (size_t)(ch * K), -0.5f, 0.5f);
    for (int h = 0; h < hv; h++) a[h] = -expf(rnd(-2.0f, 1.0f)); /* ssm_a = -exp(A_log) */
    fill(dt, (size_t)hv, -1.0f, 1.0f);
    fill(nw, (size_t)dv, 0.5f, 1.5f);

    /* sequences: inputs, initial states, the CPU chain in one piece */
    seq_data *sq = calloc((size_t)n_seq, sizeof *sq);
    for (int s = 0; s < n_seq; s++) {
        seq_data *d = &sq[s];
        const int n = d->n = c->len[0][s] + c->len[1][s];
        const size_t nn = n > 0 ? (size_t)n : 1;
        d->x = malloc(sizeof(float) * nn * (size_t)ch);
        d->alpha = malloc(sizeof(float) * nn * (size_t)hv);
        d->b = malloc(sizeof(float) * nn * (size_t)hv);
        d->z = malloc(sizeof(float) * nn * (size_t)vd);
        d->y = malloc(sizeof(float) * nn * (size_t)ch);
        d->g = malloc(sizeof(float) * nn * (size_t)hv);
        d->beta = malloc(sizeof(float) * nn * (size_t)hv);
        d->o = malloc(sizeof(float) * nn * (size_t)vd);
        d->conv0 = malloc(sizeof(float) * (size_t)conv_floats + 1);
        d->ssm0 = malloc(sizeof(float) * (size_t)ssm_floats);
        d->conv = malloc(sizeof(float) * (size_t)conv_floats + 1);
        d->ssm = malloc(sizeof(float) * (size_t)ssm_floats);
        fill(d->x, (size_t)n * (size_t)ch, -1.0f, 1.0f);
        fill(d->alpha, (size_t)n * (size_t)hv, -6.0f, 2.0f);
        fill(d->b, (size_t)n * (size_t)hv, -3.0f, 3.0f);
        fill(d->z, (size_t)n * (size_t)vd, -3.0f, 3.0f);
        fill(d->conv0, (size_t)conv_floats, -1.0f, 1.0f);
        fill(d->ssm0, (size_t)ssm_floats, -0.3f, 0.3f);
        memcpy(d->conv, d->conv0, sizeof(float) * (size_t)conv_floats);
        memcpy(d->ssm, d->ssm0, sizeof(float) * (size_t)ssm_floats);
        if (n == 0) continue;
        halo_deltanet_conv_ref(d->x, ch, n, ch, K, w, d->conv, d->y, ch);
        for (int t = 0; t < n; t++) {
            float *row = d->y + (size_t)t * (size_t)ch;
            for (int h = 0; h < 2 * hk; h++)
                halo_deltanet_l2_norm(row + (size_t)h * (size_t)dk, dk, 1e-6f, h < hk ? q_scale : 1.0f);
            halo_deltanet_gates(d->alpha + (size_t)t * hv, d->b + (size_t)t * hv, a, dt, hv,
                                d->g + (size_t)t * hv, d->beta + (size_t)t * hv);
        }
        halo_deltanet_args args = {
            .n_tokens = n, .n_k_heads = hk, .n_v_heads = hv, .dk = dk, .dv = dv, .tiled = true,
            .q = d->y, .k = d->y + (size_t)hk * dk, .qk_stride = ch,
            .v = d->y + 2 * (size_t)hk * dk, .v_stride = ch,
            .g = d->g, .beta = d->beta, .gb_stride = hv,
            .state = d->ssm, .o = d->o, .o_stride = vd,
        };
        halo_deltanet_ref(&args);
        for (int t = 0; t < n; t++)
            for (int h = 0; h < hv; h++)
                halo_deltanet_norm_gated(d->o + (size_t)t * vd + (size_t)h * dv,
                                         d->z + (size_t)t * vd + (size_t)h * dv, nw, dv, eps);
    }

    /* device states: sequence s at slot n_seq - 1 - s, padding set to a sentinel */
    size_t cs_n = (size_t)(n_seq * conv_stride), ss_n = (size_t)(n_seq * ssm_stride);
    float *hcs = malloc(sizeof(float) * cs_n), *hss = malloc(sizeof(float) * ss_n);
    for (size_t i = 0; i < cs_n; i++) hcs[i] = pad;
    for (size_t i = 0; i < ss_n; i++) hss[i] = pad;
    for (int s = 0; s < n_seq; s++) {
        const int slot = n_seq - 1 - s;
        memcpy(hcs + (size_t)slot * conv_stride, sq[s].conv0, sizeof(float) * (size_t)conv_floats);
        memcpy(hss + (size_t)slot * ssm_stride, sq[s].ssm0, sizeof(float) * (size_t)ssm_floats);
    }
    float *dcs = dev_from(S, hcs, sizeof(float) * cs_n),
          *dss = dev_from(S, hss, sizeof(float) * ss_n);
    float *dw = dev_from(S, w, sizeof(float) * (size_t)(ch * K)),
          *da = dev_from(S, a, sizeof(float) * (size_t)hv);
    float *ddt = dev_from(S, dt, sizeof(float) * (size_t)hv),
          *dnw = dev_from(S, nw, sizeof(float) * (size_t)dv);

    int *order = malloc(sizeof(int) * (size_t)n_seq);
    for (int call = 0; call < 2; call++) {
        /* segments in a shuffled order */
        for (int s = 0; s < n_seq; s++) order[s] = s;
        for (int s = n_seq - 1; s > 0; s--) {
            int j = (int)(rnd_u32() % (uint32_t)(s + 1)), t = order[s];
            order[s] = order[j], order[j] = t;
        }
        int32_t n_tok = 0;
        for (int s = 0; s < n_seq; s++) n_tok += c->len[call][s];
        const size_t nt = n_tok > 0 ? (size_t)n_tok : 1;
        float *x = malloc(sizeof(float) * nt * (size_t)ch), *al = malloc(sizeof(float) * nt * (size_t)hv);
        float *bb = malloc(sizeof(float) * nt * (size_t)hv), *z = malloc(sizeof(float) * nt * (size_t)vd);
        float *ey = malloc(sizeof(float) * nt * (size_t)ch), *eg = malloc(sizeof(float) * nt * (size_t)hv);
        float *eb = malloc(sizeof(float) * nt * (size_t)hv), *eo = malloc(sizeof(float) * nt * (size_t)vd);
        int32_t *seg_off = malloc(sizeof(int32_t) * (size_t)(n_seq + 1));
        int32_t *seg_seq = malloc(sizeof(int32_t) * (size_t)n_seq);
        int32_t t = 0;
        for (int j = 0; j < n_seq; j++) {
            const int s = order[j], len = c->len[call][s], first = call ? c->len[0][s] : 0;
            seg_off[j] = t;
            seg_seq[j] = n_seq - 1 - s;
            const seq_data *d = &sq[s];
#define CP(dst, src, w_)                                                                          \
    memcpy(dst + (size_t)t * (size_t)(w_), src + (size_t)first * (size_t)(w_),                    \
           sizeof(float) * (size_t)len * (size_t)(w_))
            CP(x, d->x, ch);
            CP(al, d->alpha, hv);
            CP(bb, d->b, hv);
            CP(z, d->z, vd);
            CP(ey, d->y, ch);
            CP(eg, d->g, hv);
            CP(eb, d->beta, hv);
            CP(eo, d->o, vd);
#undef CP
            t += len;
        }
        seg_off[n_seq] = t;
        float *dx = dev_from(S, x, sizeof(float) * nt * (size_t)ch);
        float *dal = dev_from(S, al, sizeof(float) * nt * (size_t)hv);
        float *dbb = dev_from(S, bb, sizeof(float) * nt * (size_t)hv);
        float *dz = dev_from(S, z, sizeof(float) * nt * (size_t)vd);
        float *dy = dev_from(S, NULL, sizeof(float) * nt * (size_t)ch);
        float *dg = dev_from(S, NULL, sizeof(float) * nt * (size_t)hv);
        float *dbeta = dev_from(S, NULL, sizeof(float) * nt * (size_t)hv);
        float *dout = dev_from(S, NULL, sizeof(float) * nt * (size_t)vd);
        int32_t *doff = dev_from(S, seg_off, sizeof(int32_t) * (size_t)(n_seq + 1));
        int32_t *dseq = dev_from(S, seg_seq, sizeof(int32_t) * (size_t)n_seq);

        /* segments of at most one token: the second call takes the decode launcher (conv,
         * state and gates in one kernel), the first the general ones */
        bool single = true;
        for (int s = 0; s < n_seq; s++) single = single && c->len[call][s] <= 1;
        if (single && call == 1) {
            CHECK(halo_cuda_deltanet_conv_step(S, dx, n_tok, ch, K, dw, dcs, conv_stride, doff,
                                               dseq, n_seq, hk, dk, q_scale, dy, dal, dbb, da,
                                               ddt, hv, dg, dbeta) == 0);
        } else {
            CHECK(halo_cuda_deltanet_conv(S, dx, n_tok, ch, K, dw, dcs, conv_stride, doff, dseq,
                                          n_seq, hk, dk, q_scale, dy) == 0);
            CHECK(halo_cuda_deltanet_gates(S, dal, dbb, da, ddt, n_tok, hv, dg, dbeta) == 0);
        }
        CHECK(halo_cuda_deltanet_rule(S, dy, ch, dg, dbeta, dz, dnw, eps, n_tok, hk, hv, dk, dv, dss,
                                      ssm_stride, doff, dseq, n_seq, dout) == 0);
        CHECK(halo_cuda_stream_sync(S) == 0);
        float *gy = malloc(sizeof(float) * nt * (size_t)ch), *gg = malloc(sizeof(float) * nt * (size_t)hv);
        float *gb = malloc(sizeof(float) * nt * (size_t)hv), *go = malloc(sizeof(float) * nt * (size_t)vd);
        to_host(S, gy, dy, sizeof(float) * (size_t)n_tok * (size_t)ch);
        to_host(S, gg, dg, sizeof(float) * (size_t)n_tok * (size_t)hv);
        to_host(S, gb, dbeta, sizeof(float) * (size_t)n_tok * (size_t)hv);
        to_host(S, go, dout, sizeof(float) * (size_t)n_tok * (size_t)vd);
        printf("   call %d: %d tokens in %d segments%s\n", call, n_tok, n_seq,
               single && call == 1 ? " (decode launcher)" : "");
        report(c->name, "conv", max_rel(gy, ey, (size_t)n_tok * (size_t)ch), TOL_CONV);
        report(c->name, "g", max_rel(gg, eg, (size_t)n_tok * (size_t)hv), TOL_GATES);
        report(c->name, "beta", max_rel(gb, eb, (size_t)n_tok * (size_t)hv), TOL_GATES);
        report(c->name, "output", max_rel(go, eo, (size_t)n_tok * (size_t)vd), TOL_OUT);
        halo_cuda_free(dx), halo_cuda_free(dal), halo_cuda_free(dbb), halo_cuda_free(dz);
        halo_cuda_free(dy), halo_cuda_free(dg), halo_cuda_free(dbeta), halo_cuda_free(dout);
        halo_cuda_free(doff), halo_cuda_free(dseq);
        free(x), free(al), free(bb), free(z), free(ey), free(eg), free(eb), free(eo);
        free(gy), free(gg), free(gb), free(go), free(seg_off), free(seg_seq);
    }

    /* final states, and the padding between them */
    to_host(S, hcs, dcs, sizeof(float) * cs_n);
    to_host(S, hss, dss, sizeof(float) * ss_n);
    double conv_err = 0, ssm_err = 0;
    bool pad_ok = true;
    for (int s = 0; s < n_seq; s++) {
        const int slot = n_seq - 1 - s;
        const float *gc = hcs + (size_t)slot * conv_stride, *gs = hss + (size_t)slot * ssm_stride;
        double e1 = max_rel(gc, sq[s].conv, (size_t)conv_floats);
        double e2 = max_rel(gs, sq[s].ssm, (size_t)ssm_floats);
        conv_err = e1 > conv_err || e1 != e1 ? e1 : conv_err;
        ssm_err = e2 > ssm_err || e2 != e2 ? e2 : ssm_err;
        for (int64_t i = conv_floats; i < conv_stride; i++) pad_ok &= gc[i] == pad;
        for (int64_t i = ssm_floats; i < ssm_stride; i++) pad_ok &= gs[i] == pad;
    }
    /* the conv state holds inputs: copied, so exact */
    report(c->name, "conv state", conv_err, 0.0);
    report(c->name, "ssm state", ssm_err, TOL_STATE);
    CHECK_MSG(pad_ok, "%s: the padding between states was written", c->name);

    halo_cuda_free(dcs), halo_cuda_free(dss), halo_cuda_free(dw), halo_cuda_free(da);
    halo_cuda_free(ddt), halo_cuda_free(dnw);
    for (int s = 0; s < n_seq; s++) {
        seq_data *d = &sq[s];
        free(d->x), free(d->alpha), free(d->b), free(d->z), free(d->y), free(d->g);
        free(d->beta), free(d->o), free(d->conv0), free(d->ssm0), free(d->conv), free(d->ssm);
    }
    free(sq), free(hcs), free(hss), free(order), free(w), free(a), free(dt), free(nw);
}

static void test_refused(void) {
    float *d = halo_cuda_malloc(sizeof(float) * 4096);
    int32_t *di = halo_cuda_malloc(sizeof(int32_t) * 64);
    /* dk 96: no rule kernel; dv 48: not a multiple of 32; conv kernel 17 */
    CHECK(halo_cuda_deltanet_rule(S, d, 2 * 96 + 128, d, d, d, d, 1e-6f, 1, 1, 1, 96, 128, d, 1, di,
                                  di, 1, d) == -1);
    CHECK(halo_cuda_deltanet_rule(S, d, 2 * 128 + 48, d, d, d, d, 1e-6f, 1, 1, 1, 128, 48, d, 1, di,
                                  di, 1, d) == -1);
    CHECK(halo_cuda_deltanet_conv(S, d, 1, 512, 17, d, d, 1, di, di, 1, 1, 128, 1.0f, d) == -1);
    /* channels too few for the heads */
    CHECK(halo_cuda_deltanet_conv(S, d, 1, 200, 4, d, d, 1, di, di, 1, 1, 128, 1.0f, d) == -1);
    /* nothing to do */
    CHECK(halo_cuda_deltanet_conv(S, d, 0, 512, 4, d, d, 1, di, di, 1, 1, 128, 1.0f, d) == 0);
    CHECK(halo_cuda_deltanet_gates(S, d, d, d, d, 0, 4, d, d) == 0);
    CHECK(halo_cuda_deltanet_rule(S, d, 512, d, d, d, d, 1e-6f, 0, 1, 2, 128, 128, d, 1, di, di, 0,
                                  d) == 0);
    CHECK(halo_cuda_stream_sync(S) == 0);
    halo_cuda_free(d), halo_cuda_free(di);
}

#endif

int main(void) {
    rng_seed(0x2545f4914f6cdd1dull);
    cuda_test_require_gpu();
#ifdef HALO_HAVE_CUDA
    S = halo_cuda_stream_new();
    CHECK(S != NULL);

    /* segments of 1, 2, 7, 64 and 300 tokens, then a second call continuing them */
    static const int mix_a[] = {1, 2, 7, 64, 300}, mix_b[] = {1, 3, 9, 30, 1};
    static const int mix_c[] = {3, 1, 1, 2, 20};
    /* a whole block per head (many segments), one of them empty in the first call */
    static const int fused_a[] = {1, 2, 7, 64, 3, 0, 5, 1}, fused_b[] = {2, 1, 1, 1, 1, 4, 1, 1};
    static int ones[64];
    for (int i = 0; i < 64; i++) ones[i] = 1;
    static const int small_a[] = {5, 1, 40}, small_b[] = {1, 17, 2};
    static const int one_empty[] = {1, 0, 1, 1};

    const dn_case cases[] = {
        {"kdoc", 2, 4, 128, 128, 4, 5, {mix_a, mix_b}},
        {"dk64-dv128", 2, 4, 64, 128, 4, 5, {mix_a, mix_b}},
        {"dk256-dv256", 2, 4, 256, 256, 4, 5, {mix_a, mix_c}},
        {"35B-fused-mixed", 16, 32, 128, 128, 4, 8, {fused_a, fused_b}},
        {"35B-decode", 16, 32, 128, 128, 4, 64, {ones, ones}},
        {"35B-decode-1", 16, 32, 128, 128, 4, 1, {ones, ones}},
        {"35B-decode-4-empty", 16, 32, 128, 128, 4, 4, {ones, one_empty}},
        {"dk32-dv64-conv3", 1, 2, 32, 64, 3, 3, {small_a, small_b}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    test_refused();
    halo_cuda_stream_free(S);
#endif
    return halo_test_finish("cuda_deltanet");
}
