/* The CUDA decode products (kernels/cuda/mmv.cu, halo_cuda_mv_launch) against a
 * double-precision reference over the decoded weights: every supported type, dense
 * with 1..8 activation rows, by expert id (skipped ids left untouched), SwiGLU
 * pairs, and several products of mixed types in one launch.
 *
 * Error bound, per output, derived rather than fitted. Integer formats quantize
 * each 32-column block b of x to int16 with step d_b = max|x_b| / 32639 (xq.cuh),
 * so |x_c - x^_c| <= d_b / 2 and the product moves by at most
 *     Q = sum_c |w_c| d_b(c) / 2;
 * the sums over codes are exact (int32); what remains is f32 rounding of the scaled
 * partial sums, bounded like any f32 summation: 2x the error of a plain f32 loop
 * over the same weights (measured here per case) plus 8 ulps of sum_c |w_c x_c|.
 * Float formats have no Q. A wrong code, scale, column or row gives errors of the
 * order of the outputs themselves. */
#include "cuda_test.h"
#include "harness.h"
#include "rng.h"

#include "kernels/kernels.h"
#include "quant/quant.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef HALO_HAVE_CUDA

enum { MAX_ROWS = 1024, MAX_COLS = 4096, MAX_X = 64, N_EXP = 5, EXP_ROWS = 96 };

static const int types[] = {HALO_TYPE_Q4_K, HALO_TYPE_Q5_K, HALO_TYPE_Q6_K, HALO_TYPE_Q8_0,
                            HALO_TYPE_F32,  HALO_TYPE_F16,  HALO_TYPE_BF16};

static bool quantizes(int type) {
    return type != HALO_TYPE_F32 && type != HALO_TYPE_F16 && type != HALO_TYPE_BF16;
}

typedef struct matrix {
    int type;
    size_t rs;     /* row stride (bytes) at MAX_COLS columns */
    char *host;    /* encoded, MAX_ROWS rows */
    float *dec;    /* decoded */
    void *dev;
} matrix;

static void matrix_make(matrix *m, int type, void *st) {
    const halo_type_traits *tr = halo_type_get(type);
    m->type = type;
    m->rs = halo_type_row_size(type, MAX_COLS);
    m->host = malloc(m->rs * MAX_ROWS);
    m->dec = malloc(sizeof(float) * MAX_ROWS * MAX_COLS);
    float *src = malloc(sizeof(float) * MAX_COLS);
    for (int64_t r = 0; r < MAX_ROWS; r++) {
        const float row_scale = 0.05f + (float)urand(100) * 0.01f;
        for (int64_t c = 0; c < MAX_COLS; c++) src[c] = frand() * row_scale;
        tr->from_float_ref(src, m->host + r * m->rs, MAX_COLS);
        tr->to_float(m->host + r * m->rs, m->dec + r * MAX_COLS, MAX_COLS);
    }
    free(src);
    m->dev = halo_cuda_malloc(m->rs * MAX_ROWS);
    CHECK(m->dev != NULL);
    CHECK(halo_cuda_memcpy(st, m->dev, m->host, m->rs * MAX_ROWS) == 0);
}

static void matrix_free(matrix *m) {
    free(m->host);
    free(m->dec);
    halo_cuda_free(m->dev);
}

/* One output's reference, the error of a plain f32 loop, and its bound's parts.
 * Row r of the matrix starting at row `row0` (expert offset), n columns. */
typedef struct expect {
    double ref, f32_err, abs_sum, qterm;
} expect;

static expect expect_row(const matrix *m, int64_t row, int64_t n, const float *x) {
    const float *w = m->dec + row * MAX_COLS;
    expect e = {0};
    float f = 0.0f;
    for (int64_t b = 0; b < n; b += 32) {
        float amax = 0.0f;
        for (int64_t c = b; c < b + 32 && c < n; c++) amax = fmaxf(amax, fabsf(x[c]));
        const double step = (double)(amax / 32639.0f);
        for (int64_t c = b; c < b + 32 && c < n; c++) {
            e.ref += (double)w[c] * x[c];
            e.abs_sum += fabs((double)w[c] * x[c]);
            e.qterm += fabs((double)w[c]) * step * 0.5;
            f += w[c] * x[c];
        }
    }
    e.f32_err = fabs((double)f - e.ref);
    if (!quantizes(m->type)) e.qterm = 0.0;
    e.qterm *= 1.0 + 1e-6; /* the step's own f32 rounding */
    return e;
}

static double silu(double v) { return v / (1.0 + exp(-v)); }

/* Worst (error / bound) over a checked output; > 1 fails. */
static double ratio(double got, const expect *e) {
    const double bound = e->qterm + 2.0 * e->f32_err + 8.0 * FLT_EPSILON * e->abs_sum;
    const double err = fabs(got - e->ref);
    if (isnan(got)) return INFINITY;
    return bound > 0.0 ? err / bound : (err == 0.0 ? 0.0 : INFINITY);
}

/* For a SwiGLU output: the bound of silu(g) * u from the bounds of g and u. */
static double ratio_glu(double got, const expect *g, const expect *u) {
    const double bg = g->qterm + 2.0 * g->f32_err + 8.0 * FLT_EPSILON * g->abs_sum;
    const double bu = u->qterm + 2.0 * u->f32_err + 8.0 * FLT_EPSILON * u->abs_sum;
    const double ref = silu(g->ref) * u->ref;
    /* |silu'| <= 1.1; f32 evaluation of silu and the product: a few ulps */
    const double bound = 1.1 * bg * (fabs(u->ref) + bu) + fabs(silu(g->ref)) * bu +
                         8.0 * FLT_EPSILON * fabs(ref) + 1e-30;
    if (isnan(got)) return INFINITY;
    return fabs(got - ref) / bound;
}

static float *h_x, *h_y;
static float *d_x, *d_y, *d_y2;
static int32_t *d_ids;

int main(void) {
    rng_seed(0x2545F4914F6CDD1Dull);
    cuda_test_require_gpu();
    void *st = halo_cuda_stream_new();
    CHECK(st != NULL);
    h_x = malloc(sizeof(float) * MAX_X * MAX_COLS);
    h_y = malloc(sizeof(float) * MAX_X * MAX_ROWS * 2);
    /* activations: mostly unit scale, some blocks with an outlier, some tiny blocks,
     * one all-zero block (d_b = 0) */
    for (int64_t i = 0; i < (int64_t)MAX_X * MAX_COLS; i++) {
        const int64_t blk = i / 32;
        float v = frand();
        if (blk % 7 == 3 && i % 32 == 5) v *= 40.0f;
        if (blk % 11 == 4) v *= 1e-3f;
        if (blk % 13 == 6) v = 0.0f;
        h_x[i] = v;
    }
    d_x = halo_cuda_malloc(sizeof(float) * MAX_X * MAX_COLS);
    d_y = halo_cuda_malloc(sizeof(float) * MAX_X * MAX_ROWS * 2);
    d_y2 = halo_cuda_malloc(sizeof(float) * MAX_X * MAX_ROWS * 2);
    d_ids = halo_cuda_malloc(sizeof(int32_t) * MAX_X);
    CHECK(d_x && d_y && d_y2 && d_ids);

    matrix mats[sizeof types / sizeof types[0]];
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) matrix_make(&mats[ti], types[ti], st);

    int n_cases = 0;
    double worst_all = 0.0;
    static const struct {
        int rows, cols, nx;
    } dense[] = {{1, 256, 1},    {37, 768, 1},   {1000, 2048, 1}, {513, 4096, 1}, {37, 512, 1},
                 {1024, 256, 1}, {100, 2048, 3}, {300, 1024, 8},  {5, 4096, 2},   {1000, 512, 1}};

    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const matrix *m = &mats[ti];
        const char *name = halo_type_get(m->type)->name;
        double worst = 0.0;

        /* dense */
        for (size_t ci = 0; ci < sizeof dense / sizeof dense[0]; ci++) {
            const int64_t nr = dense[ci].rows, nc = dense[ci].cols, nx = dense[ci].nx;
            /* x rows nc apart */
            for (int64_t t = 0; t < nx; t++)
                CHECK(halo_cuda_memcpy(st, d_x + t * nc, h_x + t * MAX_COLS, sizeof(float) * nc) == 0);
            halo_cuda_mv mv = {.type = m->type, .w = m->dev, .row_stride = m->rs, .n_rows = nr,
                               .n_cols = nc, .x = d_x, .n_x = (int32_t)nx, .x_div = 1, .y = d_y};
            CHECK(halo_cuda_mv_supported(&mv));
            CHECK(halo_cuda_mv_launch(st, &mv, 1) == 0);
            CHECK(halo_cuda_memcpy(st, h_y, d_y, sizeof(float) * nx * nr) == 0);
            CHECK(halo_cuda_stream_sync(st) == 0);
            double w = 0.0;
            for (int64_t t = 0; t < nx; t++)
                for (int64_t r = 0; r < nr; r++) {
                    const expect e = expect_row(m, r, nc, h_x + t * MAX_COLS);
                    const double q = ratio(h_y[t * nr + r], &e);
                    if (!(q <= w)) w = isnan(q) ? INFINITY : q;
                }
            n_cases++;
            CHECK_MSG(w <= 1.0, "%s dense %lldx%lld x %lld: error / bound %.3g", name,
                      (long long)nr, (long long)nc, (long long)nx, w);
            if (w > worst) worst = w;
        }

        /* SwiGLU pair, dense: gate rows 0.., up rows 512.. of the same matrix */
        {
            const int64_t nr = 300, nc = 2048;
            CHECK(halo_cuda_memcpy(st, d_x, h_x, sizeof(float) * nc) == 0);
            halo_cuda_mv mv = {.type = m->type, .w = m->dev, .w2 = (char *)m->dev + 512 * m->rs,
                               .row_stride = m->rs, .n_rows = nr, .n_cols = nc, .x = d_x,
                               .n_x = 1, .x_div = 1, .y = d_y};
            CHECK(halo_cuda_mv_supported(&mv));
            CHECK(halo_cuda_mv_launch(st, &mv, 1) == 0);
            CHECK(halo_cuda_memcpy(st, h_y, d_y, sizeof(float) * nr) == 0);
            CHECK(halo_cuda_stream_sync(st) == 0);
            double w = 0.0;
            for (int64_t r = 0; r < nr; r++) {
                const expect g = expect_row(m, r, nc, h_x), u = expect_row(m, 512 + r, nc, h_x);
                const double q = ratio_glu(h_y[r], &g, &u);
                if (!(q <= w)) w = isnan(q) ? INFINITY : q;
            }
            n_cases++;
            CHECK_MSG(w <= 1.0, "%s SwiGLU pair: error / bound %.3g", name, w);
            if (w > worst) worst = w;
        }

        /* by id: experts of EXP_ROWS rows (mat_stride EXP_ROWS rows), with and without
         * SwiGLU (up = the next expert's matrix) */
        static const struct {
            int na, x_div, cols;
            bool glu;
        } idc[] = {{8, 8, 2048, false}, {8, 8, 2048, true}, {24, 8, 512, false},
                   {16, 1, 1024, false}, {64, 8, 256, true}, {5, 1, 4096, false}};
        for (size_t k = 0; k < sizeof idc / sizeof idc[0]; k++) {
            const int na = idc[k].na, xd = idc[k].x_div;
            const int64_t nc = idc[k].cols, er = EXP_ROWS;
            const bool glu = idc[k].glu;
            int32_t ids[MAX_X];
            for (int a = 0; a < na; a++) {
                ids[a] = (int32_t)urand(N_EXP);
                for (int b = a - a % xd; b < a && xd > 1; b++)
                    if (ids[b] == ids[a]) ids[a] = -1; /* distinct per token, as top-k */
            }
            ids[na / 2] = -1;
            const int nxr = (na + xd - 1) / xd;
            for (int t = 0; t < nxr; t++)
                CHECK(halo_cuda_memcpy(st, d_x + t * nc, h_x + (int64_t)t * MAX_COLS, sizeof(float) * nc) == 0);
            for (int64_t i = 0; i < na * er; i++) h_y[i] = 12345.0f;
            CHECK(halo_cuda_memcpy(st, d_y, h_y, sizeof(float) * na * er) == 0);
            CHECK(halo_cuda_memcpy(st, d_ids, ids, sizeof(int32_t) * na) == 0);
            const size_t ms = m->rs * er;
            halo_cuda_mv mv = {.type = m->type, .w = m->dev, .w2 = glu ? (char *)m->dev + ms * N_EXP : NULL,
                               .row_stride = m->rs, .mat_stride = ms, .n_rows = er, .n_cols = nc,
                               .x = d_x, .n_x = na, .x_div = xd, .ids = d_ids, .y = d_y};
            CHECK(halo_cuda_mv_supported(&mv));
            CHECK(halo_cuda_mv_launch(st, &mv, 1) == 0);
            CHECK(halo_cuda_memcpy(st, h_y, d_y, sizeof(float) * na * er) == 0);
            CHECK(halo_cuda_stream_sync(st) == 0);
            double w = 0.0;
            int untouched_bad = 0;
            for (int a = 0; a < na; a++) {
                if (ids[a] < 0) {
                    for (int64_t r = 0; r < er; r++) untouched_bad += h_y[a * er + r] != 12345.0f;
                    continue;
                }
                const float *xa = h_x + (int64_t)(a / xd) * MAX_COLS;
                for (int64_t r = 0; r < er; r++) {
                    const int64_t row = (int64_t)ids[a] * er + r;
                    const expect g = expect_row(m, row, nc, xa);
                    double q;
                    if (glu) {
                        const expect u = expect_row(m, (int64_t)N_EXP * er + row, nc, xa);
                        q = ratio_glu(h_y[a * er + r], &g, &u);
                    } else {
                        q = ratio(h_y[a * er + r], &g);
                    }
                    if (!(q <= w)) w = isnan(q) ? INFINITY : q;
                }
            }
            n_cases++;
            CHECK_MSG(w <= 1.0 && untouched_bad == 0,
                      "%s by id n_assign %d x_div %d cols %lld glu %d: error / bound %.3g, %d "
                      "skipped outputs written",
                      name, na, xd, (long long)nc, glu, w, untouched_bad);
            if (w > worst) worst = w;
        }
        printf("%-6s worst error / bound %.3f\n", name, worst);
        if (worst > worst_all) worst_all = worst;
    }

    /* several products of mixed types in one launch, each with its own x and y */
    {
        halo_cuda_mv list[HALO_CUDA_MV_MAX];
        const int n = (int)(sizeof types / sizeof types[0]);
        const int64_t nc = 2048;
        for (int i = 0; i < n; i++) {
            CHECK(halo_cuda_memcpy(st, d_x + i * nc, h_x + (int64_t)i * MAX_COLS, sizeof(float) * nc) == 0);
            list[i] = (halo_cuda_mv){.type = mats[i].type, .w = mats[i].dev,
                                     .w2 = i == 2 ? (char *)mats[i].dev + 512 * mats[i].rs : NULL,
                                     .row_stride = mats[i].rs, .n_rows = 37 + 100 * i, .n_cols = nc,
                                     .x = d_x + i * nc, .n_x = 1, .x_div = 1,
                                     .y = d_y + (int64_t)i * MAX_ROWS};
        }
        CHECK(halo_cuda_mv_launch(st, list, n) == 0);
        CHECK(halo_cuda_memcpy(st, h_y, d_y, sizeof(float) * n * MAX_ROWS) == 0);
        CHECK(halo_cuda_stream_sync(st) == 0);
        double w = 0.0;
        for (int i = 0; i < n; i++)
            for (int64_t r = 0; r < list[i].n_rows; r++) {
                const float *xi = h_x + (int64_t)i * MAX_COLS;
                const expect g = expect_row(&mats[i], r, nc, xi);
                double q;
                if (i == 2) {
                    const expect u = expect_row(&mats[i], 512 + r, nc, xi);
                    q = ratio_glu(h_y[i * MAX_ROWS + r], &g, &u);
                } else {
                    q = ratio(h_y[i * MAX_ROWS + r], &g);
                }
                if (!(q <= w)) w = isnan(q) ? INFINITY : q;
            }
        n_cases++;
        CHECK_MSG(w <= 1.0, "mixed launch of %d products: error / bound %.3g", n, w);
        printf("mixed launch of %d products: worst error / bound %.3f\n", n, w);
        /* more than HALO_CUDA_MV_MAX, or an unsupported type: refused */
        CHECK(halo_cuda_mv_launch(st, list, HALO_CUDA_MV_MAX + 1) == -1);
        halo_cuda_mv bad = list[0];
        bad.type = HALO_TYPE_Q2_K;
        CHECK(!halo_cuda_mv_supported(&bad));
        bad = list[0];
        bad.n_cols = 100; /* not a whole block */
        CHECK(!halo_cuda_mv_supported(&bad));
    }

    /* routing by the router product's last block: 256 f32 rows (experts), 3 tokens, top-8,
     * twice (the block counter goes back to 0), against halo_topk_route on the same logits */
    {
        const int k = 8, nx = 3, ne = 256;
        const int64_t nc = 2048;
        int32_t *d_rids = halo_cuda_malloc(sizeof(int32_t) * nx * k + sizeof(int32_t));
        float *d_rw = halo_cuda_malloc(sizeof(float) * nx * k);
        int32_t *d_cnt = d_rids + nx * k;
        CHECK(d_rids && d_rw);
        for (int t = 0; t < nx; t++)
            CHECK(halo_cuda_memcpy(st, d_x + t * nc, h_x + (int64_t)t * MAX_COLS, sizeof(float) * nc) == 0);
        for (int rep = 0; rep < 2; rep++) {
            halo_cuda_mv mv = {.type = HALO_TYPE_F32, .w = mats[4].dev, .row_stride = mats[4].rs,
                               .n_rows = ne, .n_cols = nc, .x = d_x, .n_x = nx, .x_div = 1,
                               .y = d_y, .route_k = k, .route_norm = rep == 1,
                               .route_ids = d_rids, .route_w = d_rw, .route_counter = d_cnt};
            CHECK(mats[4].type == HALO_TYPE_F32 && halo_cuda_mv_supported(&mv));
            CHECK(halo_cuda_mv_launch(st, &mv, 1) == 0);
            int32_t ids[3 * 8 + 1], ref_ids[8];
            float wts[3 * 8], ref_w[8];
            CHECK(halo_cuda_memcpy(st, h_y, d_y, sizeof(float) * nx * ne) == 0);
            CHECK(halo_cuda_memcpy(st, ids, d_rids, sizeof(int32_t) * (nx * k + 1)) == 0);
            CHECK(halo_cuda_memcpy(st, wts, d_rw, sizeof(float) * nx * k) == 0);
            CHECK(halo_cuda_stream_sync(st) == 0);
            int bad = 0;
            for (int t = 0; t < nx; t++) {
                halo_topk_route(h_y + t * ne, ne, k, rep == 1, ref_ids, ref_w);
                for (int j = 0; j < k; j++)
                    bad += ids[t * k + j] != ref_ids[j] ||
                           fabsf(wts[t * k + j] - ref_w[j]) > 1e-6f * fmaxf(1.0f, ref_w[j]);
            }
            CHECK_MSG(bad == 0, "routing by the last block (normalize %d): %d of %d differ", rep,
                      bad, nx * k);
            CHECK_MSG(ids[nx * k] == 0, "the block counter is %d after the launch", ids[nx * k]);
        }
        halo_cuda_mv bad_route = {.type = HALO_TYPE_F32, .w = mats[4].dev, .row_stride = mats[4].rs,
                                  .n_rows = 600, .n_cols = nc, .x = d_x, .n_x = 1, .x_div = 1,
                                  .y = d_y, .route_k = 8, .route_ids = d_rids, .route_w = d_rw,
                                  .route_counter = d_cnt};
        CHECK(!halo_cuda_mv_supported(&bad_route)); /* more than 512 experts */
        halo_cuda_free(d_rids);
        halo_cuda_free(d_rw);
        printf("routing by the router product's last block: checked\n");
    }

    printf("%d cases, worst error / bound %.3f\n", n_cases, worst_all);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) matrix_free(&mats[ti]);
    halo_cuda_free(d_x);
    halo_cuda_free(d_y);
    halo_cuda_free(d_y2);
    halo_cuda_free(d_ids);
    halo_cuda_stream_free(st);
    free(h_x);
    free(h_y);
    return halo_test_finish("cuda_mv");
}

#else
int main(void) {
    cuda_test_require_gpu(); /* without the CUDA backend: skipped, with the reason */
    return 77;
}
#endif
