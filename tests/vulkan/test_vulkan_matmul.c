/* The Vulkan matrix-vector products (kernels/vulkan/shaders/mul_mv*) against the
 * scalar reference halo_matmul_ref, for every weight type with a CPU decoder, at decode
 * (1 token) and small-batch (2..8 tokens, and 11: two passes) shapes, with row counts
 * and lengths that are multiples of nothing in the kernel (rows 1, 37, 129; columns
 * past one pass of the workgroup, with a tail for the float formats); 70000 rows for
 * the 2-D grid; products by expert id (MoE) for a type of each family. get_rows bit for
 * bit against the CPU decoder.
 *
 * Tolerance (as tests/cuda/test_cuda_matmul.c): the error of an output is measured
 * relative to sum_c |w_c x_c|, the scale that bounds any summation-order error. The
 * reference sums in double; a plain f32 loop over the same decoded weights (computed
 * here for every case) shows what f32 summation alone costs. The shader sums in
 * another order (per invocation, then a tree), so each case must stay within 2x the
 * f32 loop's worst error plus 4 ulps of the scale (the final roundings). The decoded
 * weights are exact (get_rows checks it), so a wrong weight, index or scale gives
 * errors of order 1e-2..1. Measured on lavapipe (Mesa 22.3, llvmpipe): every type's
 * worst error 0.2x-0.7x the f32 loop's, bounds ~1e-7..6e-7.
 *
 * The tiled kernel (shaders/mul_mm.glsl: 16 tokens and more; by expert id with 16
 * assignments and 4 an expert or more, grouped by expert first): every type at 67 rows x
 * 300 (float) / 288 (32-blocks: an odd count of groups) / 768 columns x 37 tokens, 5 rows x
 * 16 tokens, 130 x 2304 x 70 tokens; 512 x 2048 x 64 (q4_K) and a long row, 40 x 16384 x 20
 * (bf16); by id 20 to 400 assignments over 3 to 40 experts (experts of more than one tile).
 * It sums each slice of 64 columns, then the slices, so its error is at most the f32
 * loop's, which sums all columns in one chain: bound 1x the loop's plus 4 ulps. Measured:
 * 3.0e-8..9.8e-8, at most 0.49x the f32 loop's (0.14x on the row of 16384). */
#include "harness.h"
#include "rng.h"
#include "vulkan_test.h"

#include "kernels/kernels.h"
#include "quant/quant.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef HALO_HAVE_VULKAN

static const int types[] = {
    HALO_TYPE_F32,    HALO_TYPE_F16,    HALO_TYPE_BF16,  HALO_TYPE_Q4_0, HALO_TYPE_Q4_1,
    HALO_TYPE_Q5_0,   HALO_TYPE_Q5_1,   HALO_TYPE_Q8_0,  HALO_TYPE_Q8_1, HALO_TYPE_Q2_K,
    HALO_TYPE_Q3_K,   HALO_TYPE_Q4_K,   HALO_TYPE_Q5_K,  HALO_TYPE_Q6_K, HALO_TYPE_Q8_K,
    HALO_TYPE_IQ4_NL, HALO_TYPE_IQ4_XS, HALO_TYPE_MXFP4,
};

static halo_vk *V;

/* One output y = w . x (n values, w decoded) against the reference: its error and a plain
 * f32 loop's, relative to sum |w x| (the scale of the rounding of any summation order),
 * raise *err (a NaN sticks) and *err_f32. */
static void measure(const float *w, const float *x, int64_t n, double ref, float got, double *err,
                    double *err_f32) {
    double scale = 0;
    float f32 = 0;
    for (int64_t c = 0; c < n; c++) {
        scale += fabs((double)w[c] * x[c]);
        f32 += w[c] * x[c];
    }
    if (scale == 0) scale = 1e-30;
    double e = fabs(got - ref) / scale;
    if (!(e <= *err)) *err = e; /* NaN propagates */
    double e32 = fabs(f32 - ref) / scale;
    if (e32 > *err_f32) *err_f32 = e32;
}

/* One product: W (n_rows x n_cols of type, encoded from random values) times n_tok
 * random activation rows. Returns the case's error and bound through the report. */
static void test_product(int type, int64_t n_rows, int64_t n_cols, int64_t n_tok, double *worst,
                         double *worst_f32) {
    size_t row = halo_type_row_size(type, n_cols), nw = (size_t)(n_rows * n_cols);
    float *wf = malloc(sizeof(float) * nw), *dec = malloc(sizeof(float) * nw);
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_cols));
    float *ref = malloc(sizeof(float) * (size_t)(n_tok * n_rows));
    float *got = malloc(sizeof(float) * (size_t)(n_tok * n_rows));
    char *wq = malloc(row * (size_t)n_rows);
    for (size_t i = 0; i < nw; i++)
        wf[i] = frand();
    for (int64_t i = 0; i < n_tok * n_cols; i++)
        x[i] = frand();
    halo_error err = {0};
    for (int64_t r = 0; r < n_rows; r++) {
        CHECK(halo_quant_encode_ref(type, wf + r * n_cols, wq + (size_t)r * row, n_cols, &err) ==
              0);
        CHECK(halo_quant_decode(type, wq + (size_t)r * row, dec + r * n_cols, n_cols, &err) == 0);
    }
    halo_matmul_ref(type, wq, row, n_rows, n_cols, x, n_tok, ref);

    void *dw = dev_from(V, wq, row * (size_t)n_rows);
    float *dx = dev_from(V, x, sizeof(float) * (size_t)(n_tok * n_cols));
    float *dy = dev_from(V, NULL, sizeof(float) * (size_t)(n_tok * n_rows));
    int rc = halo_vk_matmul(V, type, dw, row, n_rows, n_cols, dx, n_tok, dy);
    CHECK_MSG(rc == HALO_OK, "%s", halo_vk_error(V)->msg);
    CHECK(halo_vk_download(V, got, dy, sizeof(float) * (size_t)(n_tok * n_rows)) == HALO_OK);

    double err_vk = 0, err_f32 = 0;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < n_rows; r++)
            measure(dec + r * n_cols, x + t * n_cols, n_cols, ref[t * n_rows + r],
                    got[t * n_rows + r], &err_vk, &err_f32);
    /* the tiled kernel (16 tokens and more: kernels/vulkan/ops.c MM_MIN_TOK) sums slices of
     * 64 columns, then the slices: within the f32 loop's error (see the top) */
    double bound = (n_tok >= 16 ? 1 : 2) * err_f32 + 4 * 0x1p-24;
    CHECK_MSG(err_vk <= bound, "%s %lld x %lld, %lld tok: error %.3g > bound %.3g",
              halo_type_name(type), (long long)n_rows, (long long)n_cols, (long long)n_tok, err_vk,
              bound);
    if (err_vk > *worst) *worst = err_vk;
    if (err_f32 > *worst_f32) *worst_f32 = err_f32;
    halo_vk_free(V, dw), halo_vk_free(V, dx), halo_vk_free(V, dy);
    free(wf), free(dec), free(x), free(ref), free(got), free(wq);
}

/* Products by expert id: n_mat matrices (experts) of n_rows x n_cols, n_assign assignments
 * (ids at random, one of them -1: skipped, its y row untouched) reading activation row
 * a / x_div; each assignment's outputs against its expert's reference product, with the
 * bound of test_product. */
static void test_product_id(int type, int32_t n_mat, int64_t n_rows, int64_t n_cols,
                            int32_t n_assign, int32_t x_div) {
    size_t row = halo_type_row_size(type, n_cols), mat = row * (size_t)n_rows;
    int64_t n_x = (n_assign - 1) / x_div + 1;
    float *wf = malloc(sizeof(float) * (size_t)n_cols),
          *dec = malloc(sizeof(float) * (size_t)(n_mat * n_rows * n_cols));
    float *x = malloc(sizeof(float) * (size_t)(n_x * n_cols));
    float *ref = malloc(sizeof(float) * (size_t)n_rows),
          *got = malloc(sizeof(float) * (size_t)(n_assign * n_rows));
    char *wq = malloc(mat * (size_t)n_mat);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n_assign);
    halo_error err = {0};
    for (int64_t r = 0; r < n_mat * n_rows; r++) {
        for (int64_t c = 0; c < n_cols; c++)
            wf[c] = frand();
        CHECK(halo_quant_encode_ref(type, wf, wq + (size_t)r * row, n_cols, &err) == 0);
        CHECK(halo_quant_decode(type, wq + (size_t)r * row, dec + r * n_cols, n_cols, &err) == 0);
    }
    for (int64_t i = 0; i < n_x * n_cols; i++)
        x[i] = frand();
    for (int32_t a = 0; a < n_assign; a++)
        ids[a] = a == 1 ? -1 : (int32_t)((uint32_t)((frand() + 1.0f) * 1e6f) % (uint32_t)n_mat);
    for (int64_t i = 0; i < n_assign * n_rows; i++)
        got[i] = -7.0f;
    void *dw = dev_from(V, wq, mat * (size_t)n_mat);
    float *dx = dev_from(V, x, sizeof(float) * (size_t)(n_x * n_cols));
    float *dy = dev_from(V, got, sizeof(float) * (size_t)(n_assign * n_rows));
    int32_t *di = dev_from(V, ids, sizeof(int32_t) * (size_t)n_assign);
    int rc = halo_vk_matmul_id(V, type, dw, row, mat, n_rows, n_cols, dx, x_div, di, n_assign, dy,
                               n_mat);
    CHECK_MSG(rc == HALO_OK, "%s", halo_vk_error(V)->msg);
    CHECK(halo_vk_download(V, got, dy, sizeof(float) * (size_t)(n_assign * n_rows)) == HALO_OK);
    double err_vk = 0, err_f32 = 0;
    for (int32_t a = 0; a < n_assign; a++) {
        const float *xa = x + (a / x_div) * n_cols;
        if (ids[a] < 0) {
            bool untouched = true;
            for (int64_t r = 0; r < n_rows; r++)
                untouched &= got[a * n_rows + r] == -7.0f;
            CHECK_MSG(untouched, "matmul_id %s: a skipped assignment's row was written",
                      halo_type_name(type));
            continue;
        }
        halo_matmul_ref(type, wq + (size_t)ids[a] * mat, row, n_rows, n_cols, xa, 1, ref);
        for (int64_t r = 0; r < n_rows; r++)
            measure(dec + ((int64_t)ids[a] * n_rows + r) * n_cols, xa, n_cols, ref[r],
                    got[a * n_rows + r], &err_vk, &err_f32);
    }
    /* as test_product; the tiled kernel: kernels/vulkan/ops.c (MM_MIN_PER_MAT) */
    bool tiled = n_assign >= 16 && n_assign >= 4 * n_mat;
    double bound = (tiled ? 1 : 2) * err_f32 + 4 * 0x1p-24;
    printf("  matmul_id %-7s %d experts, %d assignments / %d%s: %.3g (bound %.3g)\n",
           halo_type_name(type), n_mat, n_assign, x_div, tiled ? " (tiled)" : "", err_vk, bound);
    CHECK_MSG(err_vk <= bound, "matmul_id %s: error %.3g > bound %.3g", halo_type_name(type),
              err_vk, bound);
    halo_vk_free(V, dw), halo_vk_free(V, dx), halo_vk_free(V, dy), halo_vk_free(V, di);
    free(wf), free(dec), free(x), free(ref), free(got), free(wq), free(ids);
}

/* get_rows: n random rows (with repeats) of a matrix, bit for bit as the CPU decodes them. */
static void test_rows(int type, int64_t n_rows, int64_t n_cols, int32_t n) {
    size_t row = halo_type_row_size(type, n_cols);
    char *wq = malloc(row * (size_t)n_rows);
    float *v = malloc(sizeof(float) * (size_t)n_cols);
    float *ref = malloc(sizeof(float) * (size_t)(n * n_cols)),
          *got = malloc(sizeof(float) * (size_t)(n * n_cols));
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
    halo_error err = {0};
    for (int64_t r = 0; r < n_rows; r++) {
        for (int64_t c = 0; c < n_cols; c++)
            v[c] = frand();
        CHECK(halo_quant_encode_ref(type, v, wq + (size_t)r * row, n_cols, &err) == 0);
    }
    for (int32_t i = 0; i < n; i++) {
        idx[i] = (int32_t)((uint32_t)((frand() + 1.0f) * 1e6f) % (uint32_t)n_rows);
        CHECK(halo_quant_decode(type, wq + (size_t)idx[i] * row, ref + (size_t)i * n_cols, n_cols,
                                &err) == 0);
    }
    void *dw = dev_from(V, wq, row * (size_t)n_rows);
    int32_t *di = dev_from(V, idx, sizeof(int32_t) * (size_t)n);
    float *dy = dev_from(V, NULL, sizeof(float) * (size_t)(n * n_cols));
    int rc = halo_vk_get_rows(V, type, dw, row, n_cols, di, n, dy);
    CHECK_MSG(rc == HALO_OK, "%s", halo_vk_error(V)->msg);
    CHECK(halo_vk_download(V, got, dy, sizeof(float) * (size_t)(n * n_cols)) == HALO_OK);
    CHECK_MSG(memcmp(got, ref, sizeof(float) * (size_t)(n * n_cols)) == 0,
              "get_rows %s: not bit-exact", halo_type_name(type));
    halo_vk_free(V, dw), halo_vk_free(V, di), halo_vk_free(V, dy);
    free(wq), free(v), free(ref), free(got), free(idx);
}

static void test_refused(void) {
    float *d = halo_vk_alloc(V, 4096);
    /* IQ2_XXS has no decoder; 100 columns are not whole q4_0 blocks; an odd row stride */
    CHECK(halo_vk_matmul(V, HALO_TYPE_IQ2_XXS, d, 66, 1, 256, d, 1, d) == HALO_ERR_UNSUPPORTED);
    CHECK(!halo_vk_matmul_supported(HALO_TYPE_IQ2_XXS) && halo_vk_matmul_supported(HALO_TYPE_Q6_K));
    halo_vk_close(V);
}

#endif

/* SwiGLU pairs in one launch (halo_vk_matmul_glu): gate and up matrices in one buffer
 * (up first or gate first, a gap between), n_tok tokens: bit for bit halo_vk_matmul of
 * each then halo_vk_swiglu. */
static void test_glu(int type, int64_t n_rows, int64_t n_cols, int64_t n_tok, bool up_first) {
    const size_t row = halo_type_row_size(type, n_cols), mat = row * (size_t)n_rows;
    const size_t gap = 512, total = 2 * mat + gap;
    char *buf = calloc(1, total);
    float *wf = malloc(sizeof(float) * (size_t)n_cols);
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_cols));
    const size_t ny = (size_t)(n_tok * n_rows);
    float *fused = malloc(sizeof(float) * ny), *chain = malloc(sizeof(float) * ny);
    halo_error err = {0};
    for (size_t r = 0; r < 2 * (size_t)n_rows; r++) {
        for (int64_t c = 0; c < n_cols; c++)
            wf[c] = frand();
        size_t at = r < (size_t)n_rows ? r * row : mat + gap + (r - (size_t)n_rows) * row;
        CHECK(halo_quant_encode_ref(type, wf, buf + at, n_cols, &err) == 0);
    }
    for (int64_t i = 0; i < n_tok * n_cols; i++)
        x[i] = 2 * frand();
    char *dw = dev_from(V, buf, total);
    const char *gate = up_first ? dw + mat + gap : dw, *up = up_first ? dw : dw + mat + gap;
    float *dx = dev_from(V, x, sizeof(float) * (size_t)(n_tok * n_cols));
    float *dg = dev_from(V, NULL, sizeof(float) * ny), *du = dev_from(V, NULL, sizeof(float) * ny);
    float *dy = dev_from(V, NULL, sizeof(float) * ny);
    CHECK(halo_vk_matmul_glu_fits(V, type, gate, up, row, n_rows, n_tok));
    CHECK_MSG(halo_vk_matmul_glu(V, type, gate, up, row, n_rows, n_cols, dx, n_tok, dy) == HALO_OK,
              "%s", halo_vk_error(V)->msg);
    CHECK(halo_vk_matmul(V, type, gate, row, n_rows, n_cols, dx, n_tok, dg) == HALO_OK);
    CHECK(halo_vk_matmul(V, type, up, row, n_rows, n_cols, dx, n_tok, du) == HALO_OK);
    CHECK(halo_vk_swiglu(V, dg, du, (int64_t)ny) == HALO_OK);
    to_host(V, fused, dy, sizeof(float) * ny);
    to_host(V, chain, dg, sizeof(float) * ny);
    size_t differ = 0;
    for (size_t i = 0; i < ny; i++)
        differ += memcmp(&fused[i], &chain[i], sizeof(float)) != 0;
    printf("  glu %-7s %3lld x %4lld, %lld tok%s: %zu of %zu differ from the chain\n",
           halo_type_name(type), (long long)n_rows, (long long)n_cols, (long long)n_tok,
           up_first ? ", up first" : "", differ, ny);
    CHECK_MSG(differ == 0, "glu %s: %zu values differ from the unfused chain", halo_type_name(type),
              differ);
    halo_vk_free(V, dw), halo_vk_free(V, dx), halo_vk_free(V, dg), halo_vk_free(V, du);
    halo_vk_free(V, dy);
    free(buf), free(wf), free(x), free(fused), free(chain);
}

/* The same by expert id (halo_vk_matmul_id_glu): n_mat experts of gate then up (or up
 * first) in one buffer, n_assign assignments at random (one -1: skipped), x_div as for
 * the experts' gate / up (k): bit for bit two halo_vk_matmul_id and halo_vk_swiglu on
 * every assigned row. */
static void test_glu_id(int type, int32_t n_mat, int64_t n_rows, int64_t n_cols,
                        int32_t n_assign, int32_t x_div, bool up_first) {
    const size_t row = halo_type_row_size(type, n_cols), mat = row * (size_t)n_rows;
    const size_t tensor = mat * (size_t)n_mat, gap = 256, total = 2 * tensor + gap;
    char *buf = calloc(1, total);
    float *wf = malloc(sizeof(float) * (size_t)n_cols);
    const int64_t n_x = (n_assign - 1) / x_div + 1;
    float *x = malloc(sizeof(float) * (size_t)(n_x * n_cols));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n_assign);
    const size_t ny = (size_t)n_assign * (size_t)n_rows;
    float *fused = malloc(sizeof(float) * ny), *chain = malloc(sizeof(float) * ny);
    halo_error err = {0};
    for (size_t r = 0; r < 2 * (size_t)n_mat * (size_t)n_rows; r++) {
        for (int64_t c = 0; c < n_cols; c++)
            wf[c] = frand();
        size_t at = r < (size_t)n_mat * (size_t)n_rows
                        ? r * row
                        : tensor + gap + (r - (size_t)n_mat * (size_t)n_rows) * row;
        CHECK(halo_quant_encode_ref(type, wf, buf + at, n_cols, &err) == 0);
    }
    for (int64_t i = 0; i < n_x * n_cols; i++)
        x[i] = 2 * frand();
    for (int32_t a = 0; a < n_assign; a++)
        ids[a] = (int32_t)urand((uint32_t)n_mat);
    ids[n_assign / 2] = -1;
    char *dw = dev_from(V, buf, total);
    const char *gate = up_first ? dw + tensor + gap : dw, *up = up_first ? dw : dw + tensor + gap;
    float *dx = dev_from(V, x, sizeof(float) * (size_t)(n_x * n_cols));
    int32_t *di = dev_from(V, ids, sizeof(int32_t) * (size_t)n_assign);
    float *dg = dev_from(V, NULL, sizeof(float) * ny), *du = dev_from(V, NULL, sizeof(float) * ny);
    float *dy = dev_from(V, NULL, sizeof(float) * ny);
    CHECK(halo_vk_matmul_id_glu_fits(V, type, gate, up, row, mat, n_rows, n_assign, n_mat));
    CHECK_MSG(halo_vk_matmul_id_glu(V, type, gate, up, row, mat, n_rows, n_cols, dx, x_div, di,
                                    n_assign, dy, n_mat) == HALO_OK,
              "%s", halo_vk_error(V)->msg);
    CHECK(halo_vk_matmul_id(V, type, gate, row, mat, n_rows, n_cols, dx, x_div, di, n_assign, dg,
                            n_mat) == HALO_OK);
    CHECK(halo_vk_matmul_id(V, type, up, row, mat, n_rows, n_cols, dx, x_div, di, n_assign, du,
                            n_mat) == HALO_OK);
    CHECK(halo_vk_swiglu(V, dg, du, (int64_t)ny) == HALO_OK);
    to_host(V, fused, dy, sizeof(float) * ny);
    to_host(V, chain, dg, sizeof(float) * ny);
    size_t differ = 0;
    for (int32_t a = 0; a < n_assign; a++)
        for (int64_t r = 0; ids[a] >= 0 && r < n_rows; r++)
            differ += memcmp(&fused[(size_t)a * n_rows + r], &chain[(size_t)a * n_rows + r],
                             sizeof(float)) != 0;
    printf("  glu by id %-7s %d experts of %lld x %lld, %d assignments / %d%s: %zu differ\n",
           halo_type_name(type), n_mat, (long long)n_rows, (long long)n_cols, n_assign, x_div,
           up_first ? ", up first" : "", differ);
    CHECK_MSG(differ == 0, "glu by id %s: %zu values differ from the unfused chain",
              halo_type_name(type), differ);
    halo_vk_free(V, dw), halo_vk_free(V, dx), halo_vk_free(V, di), halo_vk_free(V, dg);
    halo_vk_free(V, du), halo_vk_free(V, dy);
    free(buf), free(wf), free(x), free(ids), free(fused), free(chain);
}

int main(void) {
    rng_seed(0x9E3779B97F4A7C15ull);
    int device = vk_test_device();
    (void)device; /* unused without the backend: vk_test_device skips then */
#ifdef HALO_HAVE_VULKAN
    V = vk_test_open(device, false);
    printf("%-8s %12s %12s %12s %12s  (worst error / sum |w x| over the shapes; the f32 "
           "loop's)\n",
           "type", "mat-vec", "f32 loop", "tiled", "f32 loop");
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        int type = types[i];
        bool flt = type == HALO_TYPE_F32 || type == HALO_TYPE_F16 || type == HALO_TYPE_BF16;
        int64_t bs = halo_type_get(type)->block_size;
        /* one pass of the workgroup covers 64 * 32 = 2048 columns: 2304 needs two */
        int64_t cols_long = flt ? 2309 : 2304, cols_short = flt ? 45 : bs == 256 ? 256 : 96;
        double worst = 0, worst_f32 = 0, worst_mm = 0, worst_mm_f32 = 0;
        test_product(type, 37, cols_long, 1, &worst, &worst_f32);
        test_product(type, 129, cols_short, 1, &worst, &worst_f32);
        for (int64_t nt = 2; nt <= 8; nt += 3)
            test_product(type, 37, cols_long, nt, &worst, &worst_f32);
        test_product(type, 1, cols_short, 11, &worst, &worst_f32);
        /* the tiled kernel (16 tokens and more): rows, tokens and columns past whole tiles
         * (64 x 64, slices of 64 columns: an odd count of groups for the 32-wide formats) */
        int64_t cols_mm = flt ? 300 : bs == 256 ? 768 : 288;
        test_product(type, 67, cols_mm, 37, &worst_mm, &worst_mm_f32);
        test_product(type, 5, cols_short, 16, &worst_mm, &worst_mm_f32);
        test_product(type, 130, cols_long, 70, &worst_mm, &worst_mm_f32);
        printf("%-8s %12.3g %12.3g %12.3g %12.3g\n", halo_type_name(type), worst, worst_f32,
               worst_mm, worst_mm_f32);
        test_rows(type, 19, cols_long, 7);
    }
    /* products by expert id: gate / up (every assignment of a token reads its row) and
     * down (each its own), one type of each family */
    test_product_id(HALO_TYPE_BF16, 8, 37, 96, 6, 2);
    test_product_id(HALO_TYPE_Q8_0, 4, 37, 96, 6, 1);
    test_product_id(HALO_TYPE_Q4_K, 5, 19, 512, 16, 8);
    /* 16 assignments and more, 4 or more an expert: grouped by expert, the tiled kernel
     * (experts of more than one tile of 64, rows and columns past whole tiles) */
    test_product_id(HALO_TYPE_Q4_K, 5, 19, 512, 20, 4);
    test_product_id(HALO_TYPE_BF16, 3, 70, 300, 400, 8);
    test_product_id(HALO_TYPE_Q8_0, 4, 67, 288, 300, 1);
    test_product_id(HALO_TYPE_MXFP4, 40, 33, 256, 200, 5);
    /* SwiGLU pairs in one launch, one format of each family, 1 to 8 tokens */
    test_glu(HALO_TYPE_BF16, 37, 2309, 1, false);
    test_glu(HALO_TYPE_Q8_0, 19, 96, 3, true);
    test_glu(HALO_TYPE_Q4_K, 64, 2304, 1, true);
    test_glu(HALO_TYPE_Q6_K, 5, 256, 8, false);
    test_glu(HALO_TYPE_MXFP4, 11, 64, 2, false);
    test_glu_id(HALO_TYPE_BF16, 8, 37, 96, 6, 2, false);
    test_glu_id(HALO_TYPE_Q4_K, 16, 19, 512, 8, 8, true);
    test_glu_id(HALO_TYPE_MXFP4, 5, 11, 64, 3, 1, false);
    {
        void *a = dev_from(V, NULL, 4096), *b = dev_from(V, NULL, 4096);
        CHECK(!halo_vk_matmul_glu_fits(V, HALO_TYPE_F32, a, b, 64, 8, 1)); /* two buffers */
        CHECK(!halo_vk_matmul_glu_fits(V, HALO_TYPE_F32, a, a, 64, 8, 9)); /* 9 tokens */
        halo_vk_free(V, a), halo_vk_free(V, b);
    }
    /* more rows than a grid dimension holds (65535) */
    double worst = 0, worst_f32 = 0;
    test_product(HALO_TYPE_F16, 70000, 32, 2, &worst, &worst_f32);
    printf("f16 70000 rows: %.3g (f32 loop %.3g)\n", worst, worst_f32);
    /* tiled: a prompt-sized product (whole tiles), a long row (many slices) */
    worst = worst_f32 = 0;
    test_product(HALO_TYPE_Q4_K, 512, 2048, 64, &worst, &worst_f32);
    test_product(HALO_TYPE_BF16, 40, 16384, 20, &worst, &worst_f32);
    printf("tiled 512 x 2048 x 64 q4_k, 40 x 16384 x 20 bf16: %.3g (f32 loop %.3g)\n", worst,
           worst_f32);
    vk_test_check_validation(V);
    test_refused();
#endif
    return halo_test_finish("vulkan_matmul");
}
