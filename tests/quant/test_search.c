/*
 * Importance-weighted encoders (halo_quant_encode): for every type, on several
 * data distributions (gaussian, heavy-tailed, rows with all-zero blocks, tiny and
 * huge magnitudes) and importances (log-normal per channel, a few channels 100x
 * the rest, flat, 80% zero), the weighted error of decode(encode(x)) must not exceed the
 * reference encoder's on any row, and the searched types must beat it overall;
 * with imp = NULL the plain (unweighted) error must beat or equal the reference's
 * on average. Also: finite output at extreme magnitudes, all-zero rows, the
 * plain types, determinism, the API's errors. Prints the improvement and the
 * encode speed per type (measured, not asserted).
 *
 * HALO_TEST_QUICK=1 (the sanitizer build) runs one row per case instead of four.
 */
#include "harness.h"
#include "rng.h"
#include "quant/quant.h"
#include "util/util.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

#define ROW 4096 /* 16 super-blocks, 128 blocks of 32 */

static const int types[] = {HALO_TYPE_F32,  HALO_TYPE_F16,    HALO_TYPE_BF16,   HALO_TYPE_Q4_0,
                            HALO_TYPE_Q4_1, HALO_TYPE_Q5_0,   HALO_TYPE_Q5_1,   HALO_TYPE_Q8_0,
                            HALO_TYPE_Q2_K, HALO_TYPE_Q3_K,   HALO_TYPE_Q4_K,   HALO_TYPE_Q5_K,
                            HALO_TYPE_Q6_K, HALO_TYPE_IQ4_NL, HALO_TYPE_IQ4_XS, HALO_TYPE_MXFP4};
#define N_TYPES ((int)(sizeof types / sizeof types[0]))

enum { D_GAUSS, D_HEAVY, D_ZEROS, D_TINY, D_HUGE, D_COUNT };
static const char *const dist_names[D_COUNT] = {"gauss", "heavy", "zeros", "tiny", "huge"};
enum { I_LOGNORMAL, I_SKEWED, I_FLAT, I_SPARSE, I_COUNT };
static const char *const imp_names[I_COUNT] = {"lognormal", "skewed", "flat", "sparse"};

static void make_data(int kind, float *x, int n) {
    for (int i = 0; i < n; i++) {
        double v = rnd_gauss();
        switch (kind) {
        case D_HEAVY: /* Student-t-like tails, and 1% outliers 20-40x */
            v /= sqrt(0.05 + rnd_open01());
            if (rnd_open01() < 0.01) v *= 20.0 + 20.0 * rnd_open01();
            break;
        case D_ZEROS: /* every third super-block and every fifth block of 32 zero */
            if ((i / 256) % 3 == 1 || (i / 32) % 5 == 2) v = 0.0;
            break;
        case D_TINY: v *= 1e-5; break; /* half-precision scales go subnormal */
        case D_HUGE: v *= 3e5; break;  /* half-precision scales saturate */
        }
        x[i] = (float)v;
    }
}

/* per-channel importances, shared by every row of a case as an imatrix's are */
static void make_imp(int kind, float *imp, int n) {
    for (int i = 0; i < n; i++) {
        double v = 1.0;
        switch (kind) {
        case I_LOGNORMAL: v = exp(1.5 * rnd_gauss()); break;
        case I_SKEWED: v = (rnd_open01() < 0.03 ? 100.0 : 1.0) * (0.5 + rnd_open01()); break;
        case I_FLAT: v = 1.0; break;
        case I_SPARSE: v = rnd_open01() < 0.8 ? 0.0 : exp(rnd_gauss()); break; /* most unused */
        }
        imp[i] = (float)v;
    }
}

static double werr(const float *x, const float *y, const float *imp, int n) {
    double e = 0.0;
    for (int i = 0; i < n; i++) {
        const double r = (double)x[i] - y[i], wi = imp ? imp[i] : 1.0;
        if (wi != 0.0) e += wi * r * r; /* 0 * inf: an f16 overflow nobody weighs */
    }
    return e;
}

static int nonfinite(const float *y, int n) {
    int bad = 0;
    for (int i = 0; i < n; i++) bad += !isfinite(y[i]);
    return bad;
}

typedef struct {
    uint8_t *bs, *br; /* searched and reference blocks */
    float *ys, *yr;
} bufs;

/* Encode x both ways and decode; false on an API error. */
static bool both(int type, const float *x, const float *imp, bufs *b, int n) {
    halo_error err = {0};
    if (halo_quant_encode(type, x, b->bs, n, imp, &err) != 0 ||
        halo_quant_encode_ref(type, x, b->br, n, &err) != 0 ||
        halo_quant_decode(type, b->bs, b->ys, n, &err) != 0 ||
        halo_quant_decode(type, b->br, b->yr, n, &err) != 0) {
        CHECK_MSG(false, "%s: %s", halo_type_name(type), err.msg);
        return false;
    }
    return true;
}

static void test_type(int type, int rows, float *x, float *imp, bufs *b) {
    const char *name = halo_type_name(type);
    const bool plain = !halo_type_get(type)->is_quantized;
    const size_t bytes = halo_type_row_size(type, ROW);
    double ratio_sum[I_COUNT] = {0}, worst = 0.0, es_tot = 0.0, er_tot = 0.0;
    int ratio_n[I_COUNT] = {0}, ties = 0, cases = 0;
    for (int ik = 0; ik < I_COUNT; ik++)
        for (int d = 0; d < D_COUNT; d++) {
            rng_seed(0x9e3779b97f4a7c15ull + (uint64_t)(17 * ik + d));
            make_imp(ik, imp, ROW);
            for (int r = 0; r < rows; r++) {
                make_data(d, x, ROW);
                if (!both(type, x, imp, b, ROW)) return;
                const double es = werr(x, b->ys, imp, ROW), er = werr(x, b->yr, imp, ROW);
                CHECK_MSG(es <= er * (1.0 + 1e-6), "%s, %s data, %s importance, row %d: "
                          "weighted error %.6g > reference %.6g", name, dist_names[d],
                          imp_names[ik], r, es, er);
                const int bad = plain ? 0 : nonfinite(b->ys, ROW); /* f16 overflows on huge */
                CHECK_MSG(bad == 0, "%s, %s data: %d non-finite values", name, dist_names[d], bad);
                if (er == 0.0 && es == 0.0) ties++;
                if (er > 0.0 && isfinite(er)) {
                    const double q = es / er;
                    ratio_sum[ik] += q;
                    ratio_n[ik]++;
                    if (q > worst) worst = q;
                    ties += q == 1.0;
                    if (d != D_TINY && d != D_HUGE) { /* the scale would dominate the sums */
                        es_tot += es / er;
                        er_tot += 1.0;
                    }
                }
                cases++;
            }
        }
    /* imp = NULL: the default weighting, judged by plain squared error */
    double unw_sum = 0.0;
    int unw_n = 0;
    for (int d = 0; d < D_COUNT; d++) {
        rng_seed(0x51ed270b27a1f3d5ull + (uint64_t)d);
        for (int r = 0; r < rows; r++) {
            make_data(d, x, ROW);
            if (!both(type, x, NULL, b, ROW)) return;
            const double es = werr(x, b->ys, NULL, ROW), er = werr(x, b->yr, NULL, ROW);
            CHECK_MSG(plain || nonfinite(b->ys, ROW) == 0, "%s (imp NULL), %s: non-finite", name,
                      dist_names[d]);
            if (er > 0.0 && isfinite(er)) {
                unw_sum += es / er;
                unw_n++;
            }
        }
    }
    const double unw = unw_n ? unw_sum / unw_n : 1.0;
    CHECK_MSG(unw <= 1.0 + 1e-9, "%s with imp NULL: mean unweighted error %.4f x the reference's",
              name, unw);
    if (plain) {
        CHECK_MSG(ties == cases || worst <= 1.0, "%s: plain conversion differs", name);
    } else {
        CHECK_MSG(es_tot < er_tot, "%s: the search never beats the reference (%.6f)", name,
                  er_tot > 0 ? es_tot / er_tot : 1.0);
    }
    double pct[I_COUNT];
    for (int ik = 0; ik < I_COUNT; ik++)
        pct[ik] = ratio_n[ik] ? 100.0 * (ratio_sum[ik] / ratio_n[ik] - 1.0) : 0.0;
    printf("%-7s weighted error vs reference: lognormal %6.2f%%  skewed %6.2f%%  flat %6.2f%%  "
           "sparse %6.2f%%  (worst row %.4f, %d/%d rows tied)  imp NULL unweighted %6.2f%%\n",
           name, pct[0], pct[1], pct[2], pct[3], worst, ties, cases, 100.0 * (unw - 1.0));

    /* all zeros, with and without importances: zeros back */
    memset(x, 0, sizeof(float) * ROW);
    for (int k = 0; k < 2; k++) {
        if (!both(type, x, k ? imp : NULL, b, ROW)) return;
        int nz = 0;
        for (int i = 0; i < ROW; i++) nz += b->ys[i] != 0.0f;
        CHECK_MSG(nz == 0, "%s: %d values of an all-zero row decode non-zero", name, nz);
    }
    /* extreme magnitudes (and the float extremes): never NaN, block formats
     * finite, never worse than the reference */
    const double scales[] = {1e-30, 1e-7, 1e6, 1e30};
    for (size_t k = 0; k < sizeof scales / sizeof scales[0]; k++) {
        rng_seed(1234 + k);
        make_data(D_HEAVY, x, ROW);
        for (int i = 0; i < ROW; i++) x[i] = (float)(x[i] * scales[k]);
        if (k == 3)
            for (int i = 0; i < ROW; i += 37) x[i] = (i / 37) % 2 ? FLT_MAX : -FLT_MAX;
        make_imp(I_SKEWED, imp, ROW);
        if (!both(type, x, imp, b, ROW)) return;
        int nan = 0;
        for (int i = 0; i < ROW; i++) nan += isnan(b->ys[i]);
        CHECK_MSG(nan == 0, "%s at scale %g: %d NaN", name, scales[k], nan);
        if (!plain)
            CHECK_MSG(nonfinite(b->ys, ROW) == 0, "%s at scale %g: non-finite", name, scales[k]);
        const double es = werr(x, b->ys, imp, ROW), er = werr(x, b->yr, imp, ROW);
        CHECK_MSG(es <= er * (1.0 + 1e-6) || (isinf(er) && isinf(es)),
                  "%s at scale %g: weighted error %.6g > reference %.6g", name, scales[k], es, er);
    }
    /* deterministic: the same bytes twice; plain types convert exactly as the reference */
    rng_seed(77);
    make_data(D_GAUSS, x, ROW);
    make_imp(I_LOGNORMAL, imp, ROW);
    halo_error err = {0};
    CHECK(halo_quant_encode(type, x, b->bs, ROW, imp, &err) == 0);
    CHECK(halo_quant_encode(type, x, b->br, ROW, imp, &err) == 0);
    CHECK_MSG(memcmp(b->bs, b->br, bytes) == 0, "%s: encoding is not deterministic", name);
    if (plain) {
        CHECK(halo_quant_encode_ref(type, x, b->br, ROW, &err) == 0);
        CHECK_MSG(memcmp(b->bs, b->br, bytes) == 0, "%s: plain conversion differs", name);
    }
}

/* ms per million values, search and reference, gaussian data with importances */
static void timing(int type, int rows, float *x, float *imp, bufs *b) {
    rng_seed(4242);
    make_data(D_GAUSS, x, ROW);
    make_imp(I_LOGNORMAL, imp, ROW);
    halo_error err = {0};
    const int reps = rows;
    double t0 = halo_time_seconds();
    for (int r = 0; r < reps; r++) halo_quant_encode(type, x, b->bs, ROW, imp, &err);
    double t1 = halo_time_seconds();
    for (int r = 0; r < reps; r++) halo_quant_encode_ref(type, x, b->br, ROW, &err);
    double t2 = halo_time_seconds();
    const double mv = (double)reps * ROW / 1e6;
    printf("%-7s encode: search %8.1f ms per million values, reference %7.1f\n",
           halo_type_name(type), (t1 - t0) * 1e3 / mv, (t2 - t1) * 1e3 / mv);
}

static void test_api(void) {
    float x[512] = {0}, imp[512] = {0};
    _Alignas(8) uint8_t blocks[1024];
    halo_error err = {0};
    CHECK(halo_quant_encode(HALO_TYPE_Q4_0, x, blocks, 33, imp, &err) == HALO_ERR_ARG);
    halo_error_clear(&err);
    CHECK(halo_quant_encode(HALO_TYPE_Q4_K, x, blocks, 32, NULL, &err) == HALO_ERR_ARG);
    halo_error_clear(&err);
    CHECK(halo_quant_encode(HALO_TYPE_Q4_K, x, blocks, -256, NULL, &err) == HALO_ERR_ARG);
    halo_error_clear(&err);
    CHECK(halo_quant_encode(HALO_TYPE_IQ2_XXS, x, blocks, 256, NULL, &err) ==
          HALO_ERR_UNSUPPORTED);
    halo_error_clear(&err);
    CHECK(halo_quant_encode(4, x, blocks, 32, NULL, &err) == HALO_ERR_ARG);
    halo_error_clear(&err);
    CHECK(halo_quant_encode(HALO_TYPE_COUNT, x, blocks, 32, NULL, &err) == HALO_ERR_ARG);
    halo_error_clear(&err);
    CHECK(halo_quant_encode(HALO_TYPE_F32, x, blocks, INT64_C(1) << 62, NULL, &err) ==
          HALO_ERR_RANGE); /* 2^64 bytes */
    halo_error_clear(&err);
    CHECK(halo_quant_encode(HALO_TYPE_Q6_K, x, blocks, 0, NULL, &err) == 0);
    /* the types without a search are the reference encoder */
    for (int i = 0; i < 512; i++) {
        x[i] = (float)rnd_gauss();
        imp[i] = (float)rnd_open01();
    }
    const int refonly[] = {HALO_TYPE_Q8_1, HALO_TYPE_Q8_K};
    for (int k = 0; k < 2; k++) {
        _Alignas(8) uint8_t ref[1024];
        const size_t bytes = halo_type_row_size(refonly[k], 512);
        CHECK(bytes <= sizeof ref);
        CHECK(halo_quant_encode(refonly[k], x, blocks, 512, imp, &err) == 0);
        CHECK(halo_quant_encode_ref(refonly[k], x, ref, 512, &err) == 0);
        CHECK_MSG(memcmp(blocks, ref, bytes) == 0, "%s: not the reference encoder",
                  halo_type_name(refonly[k]));
    }
    /* importances that are all zero, negative or NaN are tolerated */
    for (int i = 0; i < 512; i++) imp[i] = i % 3 == 0 ? -1.0f : (i % 3 == 1 ? NAN : 0.0f);
    CHECK(halo_quant_encode(HALO_TYPE_Q4_K, x, blocks, 512, imp, &err) == 0);
    float y[512];
    CHECK(halo_quant_decode(HALO_TYPE_Q4_K, blocks, y, 512, &err) == 0);
    CHECK(nonfinite(y, 512) == 0);
}

int main(void) {
    rng_seed(1);
    const char *quick = getenv("HALO_TEST_QUICK");
    const int rows = quick && *quick && strcmp(quick, "0") != 0 ? 1 : 4;
    float *x = malloc(sizeof(float) * ROW), *imp = malloc(sizeof(float) * ROW);
    bufs b;
    size_t maxbytes = 0;
    for (int k = 0; k < N_TYPES; k++) {
        size_t s = halo_type_row_size(types[k], ROW);
        if (s > maxbytes) maxbytes = s;
    }
    b.bs = malloc(maxbytes);
    b.br = malloc(maxbytes);
    b.ys = malloc(sizeof(float) * ROW);
    b.yr = malloc(sizeof(float) * ROW);
    printf("percentages: mean per-row change of the weighted error against the reference "
           "encoder (negative = better)\n");
    for (int k = 0; k < N_TYPES; k++) test_type(types[k], rows, x, imp, &b);
    for (int k = 0; k < N_TYPES; k++) timing(types[k], rows * 4, x, imp, &b);
    test_api();
    free(x);
    free(imp);
    free(b.bs);
    free(b.br);
    free(b.ys);
    free(b.yr);
    return halo_test_finish("quant/search");
}
