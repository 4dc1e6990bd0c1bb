/*
 * Reference encoders: encode, decode, and measure the error relative to the
 * data (RMS of the error over RMS of the data) on Gaussian, uniform, outlier and
 * positive-only data, against per-type bounds set from measurement. Also: all-zero
 * and constant blocks, tiny and huge magnitudes (never NaN; finite for the block
 * formats), stability of a second round trip where the format guarantees it,
 * exact round trips of F16/BF16-representable values, and the API's errors.
 * The measured figures are printed so a change in the encoders shows up in the log.
 */
#include "compare.h"
#include "harness.h"
#include "rng.h"
#include "quant/blocks.h"
#include "quant/quant.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

#define N 8192 /* 32 super-blocks, 256 simple blocks */

enum { D_GAUSS, D_UNIFORM, D_OUTLIER, D_POSITIVE, D_COUNT };
static const char *const dataset_names[D_COUNT] = {"gauss", "uniform", "outlier", "positive"};

typedef struct {
    int type;
    double bound[D_COUNT]; /* max relative RMS error per data set */
    double const_bound;    /* max relative RMS error on constant rows */
    bool stable;           /* a second round trip must reproduce the first exactly */
} type_case;

/* Bounds are 20% above the figures measured (gcc 12 and clang 14, x86-64; the data
 * are deterministic), which the comment above each row gives: relative RMS error on
 * gauss / uniform / outlier / positive data; constant rows. */
static const type_case cases[] = {
    /* 0 0 0 0; 0 */
    {HALO_TYPE_F32, {0, 0, 0, 0}, 0, true},
    /* 0.0002093 0.0001828 0.0001824 0.0002138; 0.0003167 */
    {HALO_TYPE_F16, {0.00026, 0.00022, 0.00022, 0.00026}, 0.00039, true},
    /* 0.001648 0.001462 0.001472 0.001644; 0.002323 */
    {HALO_TYPE_BF16, {0.002, 0.0018, 0.0018, 0.002}, 0.0028, true},
    /* 0.08675 0.06521 0.146 0.08418; 0.0003167 */
    {HALO_TYPE_Q4_0, {0.11, 0.079, 0.18, 0.11}, 0.00039, true},
    /* 0.07888 0.06132 0.1132 0.04321; 0.0003167 */
    {HALO_TYPE_Q4_1, {0.095, 0.074, 0.14, 0.052}, 0.00039, false},
    /* 0.04315 0.03127 0.09335 0.04172; 0.0003167 */
    {HALO_TYPE_Q5_0, {0.052, 0.038, 0.12, 0.051}, 0.00039, true},
    /* 0.03816 0.0294 0.05352 0.02102; 0.0003167 */
    {HALO_TYPE_Q5_1, {0.046, 0.036, 0.065, 0.026}, 0.00039, false},
    /* 0.005453 0.00376 0.01206 0.005243; 0.0002967 */
    {HALO_TYPE_Q8_0, {0.0066, 0.0046, 0.015, 0.0063}, 0.00036, true},
    /* 0.005453 0.00376 0.01206 0.005243; 0.0002967 */
    {HALO_TYPE_Q8_1, {0.0066, 0.0046, 0.015, 0.0063}, 0.00036, true},
    /* 0.2754 0.2264 0.1889 0.1808; 0.0002755 */
    {HALO_TYPE_Q2_K, {0.34, 0.28, 0.23, 0.22}, 0.00034, false},
    /* 0.1492 0.1251 0.1332 0.1375; 0.0003167 */
    {HALO_TYPE_Q3_K, {0.18, 0.16, 0.16, 0.17}, 0.00039, false},
    /* 0.0742 0.05723 0.1066 0.0433; 0.0003711 */
    {HALO_TYPE_Q4_K, {0.09, 0.069, 0.13, 0.052}, 0.00045, false},
    /* 0.03711 0.02816 0.05285 0.02107; 0.0003403 */
    {HALO_TYPE_Q5_K, {0.045, 0.034, 0.064, 0.026}, 0.00041, false},
    /* 0.01807 0.01392 0.0346 0.01791; 0.0003167 */
    {HALO_TYPE_Q6_K, {0.022, 0.017, 0.042, 0.022}, 0.00039, false},
    /* 0.007118 0.00395 0.02659 0.006721; 0 */
    {HALO_TYPE_Q8_K, {0.0086, 0.0048, 0.032, 0.0081}, 1e-7, true},
    /* 0.07475 0.06277 0.1244 0.07268; 0.0001369 */
    {HALO_TYPE_IQ4_NL, {0.09, 0.076, 0.15, 0.088}, 0.00017, false},
    /* 0.07556 0.06344 0.1259 0.07339; 0.0002967 */
    {HALO_TYPE_IQ4_XS, {0.091, 0.077, 0.16, 0.089}, 0.00036, false},
    /* 0.1123 0.09757 0.1658 0.1114; 0.2 (2.5 falls between e2m1's 2 and 3 at any scale) */
    {HALO_TYPE_MXFP4, {0.14, 0.12, 0.2, 0.14}, 0.24, true},
};

static void make_data(int kind, float *x, double scale) {
    for (int i = 0; i < N; i++) {
        double v = 0.0;
        switch (kind) {
        case D_GAUSS: v = rnd_gauss(); break;
        case D_UNIFORM: v = 2.0 * rnd_open01() - 1.0; break;
        case D_OUTLIER: v = rnd_gauss() * (i % 61 == 7 ? 25.0 : 1.0); break;
        case D_POSITIVE: v = fabs(rnd_gauss()); break;
        }
        x[i] = (float)(v * scale);
    }
}

/* encode + decode through the public API, into buffers of exactly the row size
 * (so the sanitizer build catches any overrun) */
static void roundtrip(int type, const float *x, float *y, int n) {
    size_t bytes = halo_type_row_size(type, n);
    void *blocks = malloc(bytes);
    halo_error err = {0};
    CHECK_MSG(halo_quant_encode_ref(type, x, blocks, n, &err) == 0, "%s encode: %s",
              halo_type_name(type), err.msg);
    CHECK_MSG(halo_quant_decode(type, blocks, y, n, &err) == 0, "%s decode: %s",
              halo_type_name(type), err.msg);
    free(blocks);
}

static int count_nonfinite(const float *y, int n, bool allow_inf) {
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (isnan(y[i]) || (!allow_inf && isinf(y[i]))) bad++;
    return bad;
}

static void test_type(const type_case *c, float *x, float *y, float *y2) {
    const char *name = halo_type_name(c->type);
    const bool plain = !halo_type_get(c->type)->is_quantized;
    double measured[D_COUNT];
    bool stable = true;
    for (int d = 0; d < D_COUNT; d++) {
        rng_seed(0x243f6a8885a308d3ull + (uint64_t)d); /* same data for every type */
        make_data(d, x, 1.0);
        roundtrip(c->type, x, y, N);
        measured[d] = rel_rms(y, x, N);
        CHECK_MSG(measured[d] <= c->bound[d], "%s on %s data: relative RMS error %.4g > bound %.4g",
                  name, dataset_names[d], measured[d], c->bound[d]);
        roundtrip(c->type, y, y2, N);
        if (memcmp(y, y2, sizeof(float) * N) != 0) stable = false;
        /* a second round trip may move values, but must not add much error */
        double again = rel_rms(y2, y, N);
        CHECK_MSG(again <= measured[d] + 1e-12, "%s on %s: second round trip error %.4g > first %.4g",
                  name, dataset_names[d], again, measured[d]);
    }
    printf("%-7s rel RMS  gauss %.4g  uniform %.4g  outlier %.4g  positive %.4g  %s\n", name,
           measured[0], measured[1], measured[2], measured[3],
           stable ? "stable" : "(second round trip moves values)");
    if (c->stable) CHECK_MSG(stable, "%s: decode(encode(y)) != y for y = decode(encode(x))", name);

    /* all zeros: exactly zero back, positive zero or negative zero */
    memset(x, 0, sizeof(float) * N);
    roundtrip(c->type, x, y, N);
    int nonzero = 0;
    for (int i = 0; i < N; i++) nonzero += y[i] != 0.0f;
    CHECK_MSG(nonzero == 0, "%s: %d values of an all-zero row decode non-zero", name, nonzero);

    /* constant rows (positive and negative): a block format must reproduce a
     * constant closely; zero-point formats near exactly */
    const float consts[] = {0.37f, -2.5f, 1000.0f};
    double worst_const = 0.0;
    for (size_t k = 0; k < sizeof consts / sizeof consts[0]; k++) {
        for (int i = 0; i < N; i++) x[i] = consts[k];
        roundtrip(c->type, x, y, N);
        double e = rel_rms(y, x, N);
        if (e > worst_const) worst_const = e;
        CHECK_MSG(e <= c->const_bound, "%s: constant %g comes back with error %.4g", name,
                  consts[k], e);
    }

    /* tiny and huge magnitudes: no NaN ever; block formats stay finite (their
     * scales saturate), and tiny data may flush to zero but never grows */
    const double scales[] = {1e-30, 1e-7, 1e-3, 1e6, 1e30};
    for (size_t k = 0; k < sizeof scales / sizeof scales[0]; k++) {
        rng_seed(7 + k);
        make_data(D_OUTLIER, x, scales[k]);
        roundtrip(c->type, x, y, N);
        int bad = count_nonfinite(y, N, plain);
        CHECK_MSG(bad == 0, "%s at scale %g: %d non-finite values", name, scales[k], bad);
        if (scales[k] < 1.0 && !plain) {
            double e = rel_rms(y, x, N);
            CHECK_MSG(e <= 1.0 + 1e-6, "%s at scale %g: error %.4g exceeds the data", name,
                      scales[k], e);
        }
    }
    /* the float extremes, mixed with ordinary values in the same blocks */
    for (int i = 0; i < N; i++) x[i] = (float)rnd_gauss();
    for (int i = 0; i < N; i += 37) x[i] = (i / 37) % 2 ? FLT_MAX : -FLT_MAX;
    for (int i = 5; i < N; i += 41) x[i] = FLT_MIN / 3.0f; /* subnormal */
    roundtrip(c->type, x, y, N);
    int bad = count_nonfinite(y, N, plain);
    CHECK_MSG(bad == 0, "%s with +-FLT_MAX: %d non-finite values", name, bad);
    printf("%-7s constant rows: worst rel RMS %.4g\n", name, worst_const);
}

/* Values an F16/BF16 holds exactly come back bit for bit. */
static void test_exact_halves(float *x, float *y) {
    for (int i = 0; i < N; i++) {
        uint16_t h;
        do {
            h = (uint16_t)(rnd_open01() * 65536.0);
        } while ((h & 0x7c00) == 0x7c00);
        x[i] = halo_fp16_to_fp32(h);
    }
    roundtrip(HALO_TYPE_F16, x, y, N);
    CHECK_MSG(memcmp(x, y, sizeof(float) * N) == 0, "f16-representable values do not round-trip");
    roundtrip(HALO_TYPE_F32, x, y, N);
    CHECK(memcmp(x, y, sizeof(float) * N) == 0);
    for (int i = 0; i < N; i++) {
        uint16_t h;
        do {
            h = (uint16_t)(rnd_open01() * 65536.0);
        } while ((h & 0x7f80) == 0x7f80);
        x[i] = halo_bf16_to_fp32(h);
    }
    roundtrip(HALO_TYPE_BF16, x, y, N);
    CHECK_MSG(memcmp(x, y, sizeof(float) * N) == 0, "bf16-representable values do not round-trip");
    /* NaN stays NaN, infinities stay infinite */
    const float special[2] = {NAN, -INFINITY};
    float out[2];
    roundtrip(HALO_TYPE_F16, special, out, 2);
    CHECK(isnan(out[0]) && isinf(out[1]) && out[1] < 0);
    roundtrip(HALO_TYPE_BF16, special, out, 2);
    CHECK(isnan(out[0]) && isinf(out[1]) && out[1] < 0);
}

/* Side fields that integer dot products rely on: Q8_1's s and Q8_K's bsums. */
static void test_sums(float *x) {
    rng_seed(99);
    make_data(D_GAUSS, x, 3.0);
    halo_block_q8_1 b1[N / HALO_QK];
    halo_error err = {0};
    CHECK(halo_quant_encode_ref(HALO_TYPE_Q8_1, x, b1, N, &err) == 0);
    for (int i = 0; i < N / HALO_QK; i++) {
        int sum = 0;
        for (int j = 0; j < HALO_QK; j++) sum += b1[i].qs[j];
        float want = halo_fp16_to_fp32(halo_fp32_to_fp16(halo_fp16_to_fp32(b1[i].d) * sum));
        CHECK_MSG(halo_fp16_to_fp32(b1[i].s) == want, "q8_1 block %d: s %g, want %g", i,
                  halo_fp16_to_fp32(b1[i].s), want);
    }
    static halo_block_q8_k bk[N / HALO_QK_K];
    CHECK(halo_quant_encode_ref(HALO_TYPE_Q8_K, x, bk, N, &err) == 0);
    for (int i = 0; i < N / HALO_QK_K; i++)
        for (int s = 0; s < HALO_QK_K / 16; s++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += bk[i].qs[16 * s + j];
            CHECK(bk[i].bsums[s] == sum);
        }
}

/* Any bytes decode without reading or writing outside the exact-size buffers
 * (the sanitizer build checks), for every type with a decoder. */
static void test_random_bytes(void) {
    for (int t = 0; t < HALO_TYPE_COUNT; t++) {
        const halo_type_traits *tr = halo_type_get(t);
        if (!tr || !tr->to_float) continue;
        const int64_t n = 2 * HALO_QK_K;
        const size_t bytes = halo_type_row_size(t, n);
        uint8_t *blocks = malloc(bytes);
        float *out = malloc((size_t)n * sizeof(float));
        for (size_t i = 0; i < bytes; i++) blocks[i] = (uint8_t)(rnd_open01() * 256.0);
        halo_error err = {0};
        CHECK_MSG(halo_quant_decode(t, blocks, out, n, &err) == 0, "%s: %s", tr->name, err.msg);
        free(blocks);
        free(out);
    }
}

/* The KV cache's encoder: the reference's bytes for every cache type but IQ4_NL, whose
 * narrower scale search (5 candidates of 17) costs at most a few percent of error. */
static void test_kv_encoder(float *x, float *y) {
    const int types[] = {HALO_TYPE_F32, HALO_TYPE_F16, HALO_TYPE_BF16, HALO_TYPE_Q8_0,
                         HALO_TYPE_Q4_0, HALO_TYPE_IQ4_NL};
    const size_t bytes = halo_type_row_size(HALO_TYPE_F32, N);
    char *a = malloc(bytes), *b = malloc(bytes);
    halo_error err = {0};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int d = 0; d < D_COUNT; d++) {
            const int t = types[ti];
            const size_t rb = halo_type_row_size(t, N);
            rng_seed(0x243f6a8885a308d3ull + (uint64_t)d);
            make_data(d, x, 1.0);
            CHECK(halo_quant_encode_ref(t, x, a, N, &err) == 0);
            halo_quant_encode_kv(t, x, b, N);
            if (t != HALO_TYPE_IQ4_NL) {
                CHECK_MSG(memcmp(a, b, rb) == 0, "kv encoder %s differs from the reference",
                          halo_type_name(t));
                continue;
            }
            CHECK(halo_quant_decode(t, a, y, N, &err) == 0);
            const double e_ref = rel_rms(y, x, N);
            CHECK(halo_quant_decode(t, b, y, N, &err) == 0);
            const double e_kv = rel_rms(y, x, N);
            printf("iq4_nl kv encoder on %s data: relative RMS error %.4g (reference %.4g)\n",
                   dataset_names[d], e_kv, e_ref);
            CHECK_MSG(e_kv <= 1.05 * e_ref, "iq4_nl kv encoder on %s: %.4g vs %.4g",
                      dataset_names[d], e_kv, e_ref);
        }
    /* zeros, huge values, NaN: finite scales, as the reference */
    for (int i = 0; i < 64; i++) x[i] = i < 32 ? 0.0f : (i == 40 ? NAN : (i % 2 ? 3e38f : -1e-30f));
    halo_quant_encode_kv(HALO_TYPE_IQ4_NL, x, b, 64);
    CHECK(halo_quant_decode(HALO_TYPE_IQ4_NL, b, y, 64, &err) == 0);
    CHECK(count_nonfinite(y, 64, false) == 0);
    for (int i = 0; i < 32; i++) CHECK(y[i] == 0.0f);
    free(a);
    free(b);
}

static void test_api_errors(void) {
    float x[64] = {0}, y[64];
    uint8_t blocks[256];
    halo_error err = {0};
    CHECK(halo_quant_encode_ref(HALO_TYPE_Q4_0, x, blocks, 33, &err) == HALO_ERR_ARG);
    halo_error_clear(&err);
    CHECK(halo_quant_decode(HALO_TYPE_Q4_K, blocks, y, 64, &err) == HALO_ERR_ARG);
    halo_error_clear(&err);
    CHECK(halo_quant_decode(HALO_TYPE_IQ2_XXS, blocks, y, 256, &err) == HALO_ERR_UNSUPPORTED);
    halo_error_clear(&err);
    CHECK(halo_quant_encode_ref(HALO_TYPE_I32, x, blocks, 4, &err) == HALO_ERR_UNSUPPORTED);
    halo_error_clear(&err);
    CHECK(halo_quant_decode(4, blocks, y, 32, &err) == HALO_ERR_ARG);
    halo_error_clear(&err);
    CHECK(halo_quant_decode(HALO_TYPE_COUNT, blocks, y, 32, &err) == HALO_ERR_ARG);
    /* every type with an encoder has a decoder */
    for (int t = 0; t < HALO_TYPE_COUNT; t++) {
        const halo_type_traits *tr = halo_type_get(t);
        if (tr && tr->from_float_ref) CHECK_MSG(tr->to_float != NULL, "%s: encoder without decoder", tr->name);
    }
}

int main(void) {
    rng_seed(0x243f6a8885a308d3ull);
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N),
          *y2 = malloc(sizeof(float) * N);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_type(&cases[i], x, y, y2);
    test_exact_halves(x, y);
    test_sums(x);
    test_random_bytes();
    test_kv_encoder(x, y);
    test_api_errors();
    free(x);
    free(y);
    free(y2);
    return halo_test_finish("quant/roundtrip");
}
