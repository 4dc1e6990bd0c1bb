/* The small CUDA ops (kernels/cuda/ops.cu) against the CPU: RMS norm, RoPE (NORM and
 * NEOX, partial rotary), the Walsh-Hadamard rotation (bit for bit), add, SwiGLU, sigmoid gate, 2-D copy, row gather / scatter,
 * MoE routing (exact ids, ties to the lower index) and combination.
 *
 * Errors are max |gpu - ref| / max |ref| over each output (the max norm), printed per
 * case. f32 carries a unit roundoff u = 2^-24 = 6e-8; each bound is set at a small
 * multiple of the rounding the op does (see the constants below), so an indexing or
 * semantic bug (errors ~1) can never pass, and the printed errors show the margin.
 * Measured on an H200 (max over the cases): rms 1.9e-7, rope 1.7e-7, swiglu 1.1e-7,
 * sigmoid gate 1.6e-7, routing weights 1.7e-7, combine 2.0e-7; add, copies, ids exact. */
#include "compare.h"
#include "cuda_test.h"
#include "harness.h"
#include "rng.h"

#include "kernels/kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef HALO_HAVE_CUDA

/* An RMS norm is a sum of up to 8192 squares (ordered differently on the GPU: a tree
 * over threads of per-thread sequential sums, ~25 roundings deep) then a few roundings:
 * a few 1e-7 measured; bound 1e-6 (~16 u). */
#define TOL_RMS 1e-6
/* RoPE: sincosf (<= 2 ulp on both sides) on the same float angle, then a*c - b*s
 * (possibly fused on the GPU): ~1e-7 of the row's largest value; bound 1e-6. */
#define TOL_ROPE 1e-6
/* SwiGLU / sigmoid gate: expf (<= 2 ulp), a division and a product: bound 1e-6. */
#define TOL_GATE 1e-6
/* Routing weights: a sum of up to 512 exponentials in another order, a division,
 * a renormalization: bound 1e-6. */
#define TOL_ROUTE 1e-6
/* MoE combination: up to 17 products summed in the same order as the double
 * reference, so a few roundings: bound 1e-6. */
#define TOL_COMBINE 1e-6

static void *S; /* the stream */

static void report(const char *what, double err, double tol) {
    printf("  %-48s max rel err %.3g (bound %.0e)\n", what, err, tol);
    CHECK_MSG(err <= tol, "%s: %.3g > %.0e", what, err, tol);
}

/* ---- RMS norm -------------------------------------------------------------------------- */

static void test_rms_norm(int64_t rows, int64_t n, bool weight, bool in_place) {
    size_t total = (size_t)(rows * n);
    float *x = malloc(sizeof(float) * total), *w = malloc(sizeof(float) * (size_t)n);
    float *ref = malloc(sizeof(float) * total), *got = malloc(sizeof(float) * total);
    fill(x, total, -3.0f, 3.0f);
    fill(w, (size_t)n, 0.5f, 1.5f);
    halo_rms_norm_ref(x, weight ? w : NULL, ref, rows, n, 1e-6f);
    float *dx = dev_from(S, x, sizeof(float) * total),
          *dw = dev_from(S, w, sizeof(float) * (size_t)n);
    float *dy = in_place ? dx : dev_from(S, NULL, sizeof(float) * total);
    CHECK(halo_cuda_rms_norm(S, dx, weight ? dw : NULL, dy, rows, n, 1e-6f) == 0);
    to_host(S, got, dy, sizeof(float) * total);
    char what[96];
    snprintf(what, sizeof what, "rms_norm %lld x %lld%s%s", (long long)rows, (long long)n,
             weight ? " w" : "", in_place ? " in place" : "");
    report(what, max_rel(got, ref, total), TOL_RMS);
    halo_cuda_free(dx);
    halo_cuda_free(dw);
    if (!in_place) halo_cuda_free(dy);
    free(x), free(w), free(ref), free(got);
}

/* The residual add and the next norm in one launch: x must be x + y exactly (one f32 add),
 * xn within the norm's tolerance. Rows of 2048 (registers), 6000 (past them), 100. */
static void test_add_rms_norm(int64_t rows, int64_t n, bool weight) {
    size_t total = (size_t)(rows * n);
    float *x = malloc(sizeof(float) * total), *y = malloc(sizeof(float) * total);
    float *w = malloc(sizeof(float) * (size_t)n), *sum = malloc(sizeof(float) * total);
    float *ref = malloc(sizeof(float) * total), *got = malloc(sizeof(float) * total);
    fill(x, total, -3.0f, 3.0f);
    fill(y, total, -3.0f, 3.0f);
    fill(w, (size_t)n, 0.5f, 1.5f);
    for (size_t i = 0; i < total; i++) sum[i] = x[i] + y[i];
    halo_rms_norm_ref(sum, weight ? w : NULL, ref, rows, n, 1e-6f);
    float *dx = dev_from(S, x, sizeof(float) * total), *dy = dev_from(S, y, sizeof(float) * total);
    float *dw = dev_from(S, w, sizeof(float) * (size_t)n);
    float *dn = dev_from(S, NULL, sizeof(float) * total);
    CHECK(halo_cuda_add_rms_norm(S, dx, dy, weight ? dw : NULL, dn, rows, n, 1e-6f) == 0);
    to_host(S, got, dx, sizeof(float) * total);
    CHECK_MSG(memcmp(got, sum, sizeof(float) * total) == 0, "add_rms_norm %lld x %lld: x != x + y",
              (long long)rows, (long long)n);
    to_host(S, got, dn, sizeof(float) * total);
    char what[96];
    snprintf(what, sizeof what, "add_rms_norm %lld x %lld%s", (long long)rows, (long long)n,
             weight ? " w" : "");
    report(what, max_rel(got, ref, total), TOL_RMS);
    halo_cuda_free(dx), halo_cuda_free(dy), halo_cuda_free(dw), halo_cuda_free(dn);
    free(x), free(y), free(w), free(sum), free(ref), free(got);
}

/* ---- RoPE (against halo_rope: the same float angle pos * inv_freq) ------------------------ */

static void test_rope(int n_tok, int n_heads, int head_dim, int n_rot, int mode, int max_pos) {
    size_t row = (size_t)n_heads * head_dim, total = row * (size_t)n_tok;
    float *x = malloc(sizeof(float) * total), *ref = malloc(sizeof(float) * total);
    float *got = malloc(sizeof(float) * total), *inv = malloc(sizeof(float) * (size_t)(n_rot / 2 + 1));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n_tok);
    fill(x, total, -2.0f, 2.0f);
    memcpy(ref, x, sizeof(float) * total);
    halo_rope_inv_freq(1e6f, n_rot, inv);
    for (int t = 0; t < n_tok; t++) pos[t] = (int32_t)(rnd_u32() % (uint32_t)max_pos);
    for (int t = 0; t < n_tok; t++)
        halo_rope(ref + (size_t)t * row, n_heads, head_dim, n_rot, mode, (float)pos[t], inv);
    float *dx = dev_from(S, x, sizeof(float) * total);
    float *dinv = dev_from(S, inv, sizeof(float) * (size_t)(n_rot / 2 + 1));
    int32_t *dpos = dev_from(S, pos, sizeof(int32_t) * (size_t)n_tok);
    CHECK(halo_cuda_rope(S, dx, n_tok, n_heads, head_dim, n_rot, mode, dpos, dinv) == 0);
    to_host(S, got, dx, sizeof(float) * total);
    char what[96];
    snprintf(what, sizeof what, "rope %s %d tok x %d heads x %d, n_rot %d",
             mode == HALO_ROPE_NEOX ? "neox" : "norm", n_tok, n_heads, head_dim, n_rot);
    report(what, max_rel(got, ref, total), TOL_ROPE);
    /* the dims past n_rot are untouched, bit for bit */
    bool same = true;
    for (size_t r = 0; r < total / (size_t)head_dim; r++)
        for (int i = n_rot; i < head_dim; i++)
            same &= got[r * (size_t)head_dim + (size_t)i] == x[r * (size_t)head_dim + (size_t)i];
    CHECK(same);
    halo_cuda_free(dx), halo_cuda_free(dinv), halo_cuda_free(dpos);
    free(x), free(ref), free(got), free(inv), free(pos);
}

/* ---- elementwise ---------------------------------------------------------------------- */

/* ---- Walsh-Hadamard rotation (the same butterflies as halo_hadamard: equal bits) ---------- */

static void test_hadamard(int64_t rows, int64_t n, int block) {
    const size_t total = (size_t)rows * (size_t)n;
    float *x = malloc(sizeof(float) * total), *ref = malloc(sizeof(float) * total);
    float *got = malloc(sizeof(float) * total);
    fill(x, total, -3.0f, 3.0f);
    memcpy(ref, x, sizeof(float) * total);
    halo_hadamard(ref, rows, n, block);
    float *dx = dev_from(S, x, sizeof(float) * total);
    CHECK(halo_cuda_hadamard(S, dx, rows, n, block) == 0);
    to_host(S, got, dx, sizeof(float) * total);
    size_t differ = 0;
    for (size_t i = 0; i < total; i++) differ += memcmp(&got[i], &ref[i], sizeof(float)) != 0;
    printf("  hadamard %lld rows x %lld, runs of %d: %zu values differ\n", (long long)rows,
           (long long)n, block, differ);
    CHECK_MSG(differ == 0, "hadamard %lld x %lld / %d: %zu values differ", (long long)rows,
              (long long)n, block, differ);
    halo_cuda_free(dx);
    free(x), free(ref), free(got);
}

static void test_elementwise(int64_t n) {
    size_t sz = sizeof(float) * (size_t)n;
    float *a = malloc(sz), *b = malloc(sz), *ref = malloc(sz), *got = malloc(sz);
    fill(a, (size_t)n, -12.0f, 12.0f);
    fill(b, (size_t)n, -3.0f, 3.0f);
    float *da = dev_from(S, a, sz), *db = dev_from(S, b, sz);
    char what[96];

    /* add: one rounding each, the same on both: exact */
    for (int64_t i = 0; i < n; i++) ref[i] = a[i] + b[i];
    CHECK(halo_cuda_add(S, da, db, n) == 0);
    to_host(S, got, da, sz);
    snprintf(what, sizeof what, "add n %lld", (long long)n);
    report(what, max_rel(got, ref, (size_t)n), 0.0);

    memcpy(ref, a, sz);
    halo_swiglu_ref(ref, b, n);
    CHECK(halo_cuda_memcpy(S, da, a, sz) == 0);
    CHECK(halo_cuda_swiglu(S, da, db, n) == 0);
    to_host(S, got, da, sz);
    snprintf(what, sizeof what, "swiglu n %lld", (long long)n);
    report(what, max_rel(got, ref, (size_t)n), TOL_GATE);

    memcpy(ref, b, sz);
    halo_sigmoid_gate(ref, a, n);
    CHECK(halo_cuda_memcpy(S, db, b, sz) == 0);
    CHECK(halo_cuda_memcpy(S, da, a, sz) == 0);
    CHECK(halo_cuda_sigmoid_gate(S, db, da, n) == 0);
    to_host(S, got, db, sz);
    snprintf(what, sizeof what, "sigmoid_gate n %lld", (long long)n);
    report(what, max_rel(got, ref, (size_t)n), TOL_GATE);

    halo_cuda_free(da), halo_cuda_free(db);
    free(a), free(b), free(ref), free(got);
}

/* ---- copies (exact) --------------------------------------------------------------------- */

static void test_copies(int64_t rows, int64_t width) {
    const int64_t ss = width + 13, ds = width + 5;
    size_t sn = (size_t)(rows * ss), dn = (size_t)(rows * ds);
    float *src = malloc(sizeof(float) * sn), *dst = malloc(sizeof(float) * dn);
    float *got = malloc(sizeof(float) * dn);
    fill(src, sn, -1.0f, 1.0f);
    for (size_t i = 0; i < dn; i++) dst[i] = -7.0f;
    float *dsrc = dev_from(S, src, sizeof(float) * sn),
          *ddst = dev_from(S, dst, sizeof(float) * dn);
    CHECK(halo_cuda_copy2d(S, ddst, ds, dsrc, ss, rows, width) == 0);
    to_host(S, got, ddst, sizeof(float) * dn);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < width; i++) dst[r * ds + i] = src[r * ss + i];
    CHECK(memcmp(got, dst, sizeof(float) * dn) == 0); /* the padding untouched too */
    printf("  copy2d %lld x %lld: %s\n", (long long)rows, (long long)width,
           memcmp(got, dst, sizeof(float) * dn) == 0 ? "exact" : "DIFFERS");

    /* gather with repeats, then scatter back through a permutation */
    const int32_t n = (int32_t)rows;
    size_t rn = (size_t)rows * (size_t)width;
    float *a = malloc(sizeof(float) * rn), *ref = malloc(sizeof(float) * rn);
    float *out = malloc(sizeof(float) * rn);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n), *perm = malloc(sizeof(int32_t) * (size_t)n);
    fill(a, rn, -1.0f, 1.0f);
    for (int32_t i = 0; i < n; i++) idx[i] = (int32_t)(rnd_u32() % (uint32_t)n), perm[i] = i;
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t j = (int32_t)(rnd_u32() % (uint32_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    float *da = dev_from(S, a, sizeof(float) * rn), *dout = dev_from(S, NULL, sizeof(float) * rn);
    int32_t *didx = dev_from(S, idx, sizeof(int32_t) * (size_t)n);
    int32_t *dperm = dev_from(S, perm, sizeof(int32_t) * (size_t)n);
    CHECK(halo_cuda_gather_rows(S, dout, da, didx, n, width) == 0);
    to_host(S, out, dout, sizeof(float) * rn);
    for (int32_t i = 0; i < n; i++)
        memcpy(ref + (size_t)i * (size_t)width, a + (size_t)idx[i] * (size_t)width,
               sizeof(float) * (size_t)width);
    CHECK(memcmp(out, ref, sizeof(float) * rn) == 0);
    CHECK(halo_cuda_scatter_rows(S, dout, da, dperm, n, width) == 0);
    to_host(S, out, dout, sizeof(float) * rn);
    for (int32_t i = 0; i < n; i++)
        memcpy(ref + (size_t)perm[i] * (size_t)width, a + (size_t)i * (size_t)width,
               sizeof(float) * (size_t)width);
    CHECK(memcmp(out, ref, sizeof(float) * rn) == 0);
    printf("  gather / scatter %d rows x %lld: %s\n", n, (long long)width,
           memcmp(out, ref, sizeof(float) * rn) == 0 ? "exact" : "DIFFERS");
    halo_cuda_free(dsrc), halo_cuda_free(ddst), halo_cuda_free(da), halo_cuda_free(dout);
    halo_cuda_free(didx), halo_cuda_free(dperm);
    free(src), free(dst), free(got), free(a), free(ref), free(out), free(idx), free(perm);
}

/* ---- MoE routing ---------------------------------------------------------------------------
 * ties: 0 = distinct logits, spaced 8 / n_expert apart (no near-ties: the order is the
 * same in any rounding); 1 = logits on 3 levels (exact ties everywhere). */

static void test_topk(int32_t n, int n_expert, int k, bool normalize, int ties) {
    size_t nl = (size_t)n * (size_t)n_expert, nk = (size_t)n * (size_t)k;
    float *lg = malloc(sizeof(float) * nl), *w_ref = malloc(sizeof(float) * nk);
    float *w_got = malloc(sizeof(float) * nk);
    int32_t *id_ref = malloc(sizeof(int32_t) * nk), *id_got = malloc(sizeof(int32_t) * nk);
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n_expert);
    for (int32_t t = 0; t < n; t++) {
        for (int e = 0; e < n_expert; e++) perm[e] = e;
        for (int e = n_expert - 1; e > 0; e--) {
            int j = (int)(rnd_u32() % (uint32_t)(e + 1)), x = perm[e];
            perm[e] = perm[j], perm[j] = x;
        }
        for (int e = 0; e < n_expert; e++)
            lg[(size_t)t * n_expert + e] = ties ? (float)(rnd_u32() % 3) - 1.0f
                                                : (float)perm[e] * 8.0f / (float)n_expert - 4.0f;
        halo_topk_route_ref(lg + (size_t)t * n_expert, n_expert, k, normalize, id_ref + (size_t)t * k,
                            w_ref + (size_t)t * k);
    }
    float *dl = dev_from(S, lg, sizeof(float) * nl), *dw = dev_from(S, NULL, sizeof(float) * nk);
    int32_t *di = dev_from(S, NULL, sizeof(int32_t) * nk);
    CHECK(halo_cuda_topk_route(S, dl, n, n_expert, k, normalize, di, dw) == 0);
    to_host(S, w_got, dw, sizeof(float) * nk);
    to_host(S, id_got, di, sizeof(int32_t) * nk);
    int bad = 0;
    for (size_t i = 0; i < nk; i++) bad += id_got[i] != id_ref[i];
    char what[96];
    snprintf(what, sizeof what, "topk %d tok, %d experts, k %d%s%s: ids %s", n, n_expert, k,
             normalize ? " norm" : "", ties ? " ties" : "", bad ? "DIFFER" : "exact");
    CHECK_MSG(bad == 0, "%s: %d ids differ", what, bad);
    report(what, max_rel(w_got, w_ref, nk), TOL_ROUTE);
    halo_cuda_free(dl), halo_cuda_free(dw), halo_cuda_free(di);
    free(lg), free(w_ref), free(w_got), free(id_ref), free(id_got), free(perm);
}

/* ---- MoE combination (reference in double, summed in the kernel's order) --------------- */

static void test_moe_combine(int32_t n, int k, int64_t n_embd, bool shared) {
    size_t ny = (size_t)n * (size_t)k * (size_t)n_embd, no = (size_t)n * (size_t)n_embd;
    float *y = malloc(sizeof(float) * ny), *w = malloc(sizeof(float) * (size_t)(n * k));
    float *sh = malloc(sizeof(float) * no), *shg = malloc(sizeof(float) * (size_t)n);
    float *ref = malloc(sizeof(float) * no), *got = malloc(sizeof(float) * no);
    fill(y, ny, -2.0f, 2.0f);
    fill(w, (size_t)(n * k), 0.0f, 0.5f);
    fill(sh, no, -2.0f, 2.0f);
    fill(shg, (size_t)n, -4.0f, 4.0f);
    for (int32_t t = 0; t < n; t++)
        for (int64_t d = 0; d < n_embd; d++) {
            double acc = 0;
            for (int j = 0; j < k; j++)
                acc += (double)w[t * k + j] * y[((size_t)t * k + (size_t)j) * (size_t)n_embd + (size_t)d];
            if (shared) acc += sh[(size_t)t * n_embd + d] / (1.0 + exp(-(double)shg[t]));
            ref[(size_t)t * n_embd + d] = (float)acc;
        }
    float *dy = dev_from(S, y, sizeof(float) * ny),
          *dw = dev_from(S, w, sizeof(float) * (size_t)(n * k));
    float *dsh = dev_from(S, sh, sizeof(float) * no),
          *dshg = dev_from(S, shg, sizeof(float) * (size_t)n);
    float *dout = dev_from(S, NULL, sizeof(float) * no);
    CHECK(halo_cuda_moe_combine(S, dy, dw, n, k, n_embd, shared ? dsh : NULL, shared ? dshg : NULL,
                                dout) == 0);
    to_host(S, got, dout, sizeof(float) * no);
    char what[96];
    snprintf(what, sizeof what, "moe_combine %d tok, k %d, %lld%s", n, k, (long long)n_embd,
             shared ? " + shared" : "");
    report(what, max_rel(got, ref, no), TOL_COMBINE);
    halo_cuda_free(dy), halo_cuda_free(dw), halo_cuda_free(dsh), halo_cuda_free(dshg);
    halo_cuda_free(dout);
    free(y), free(w), free(sh), free(shg), free(ref), free(got);
}

static void test_shapes_refused(void) {
    float *d = halo_cuda_malloc(sizeof(float) * 1024);
    int32_t *di = halo_cuda_malloc(sizeof(int32_t) * 1024);
    CHECK(halo_cuda_topk_route(S, d, 1, 513, 2, true, di, d) == -1);
    CHECK(halo_cuda_topk_route(S, d, 1, 64, 17, true, di, d) == -1);
    CHECK(halo_cuda_topk_route(S, d, 1, 8, 9, true, di, d) == -1);
    CHECK(halo_cuda_rope(S, d, 1, 1, 64, 63, 2, di, d) == -1);  /* odd n_rot */
    CHECK(halo_cuda_rope(S, d, 1, 1, 64, 128, 2, di, d) == -1); /* n_rot > head_dim */
    CHECK(halo_cuda_rope(S, d, 1, 1, 64, 64, 1, di, d) == -1);  /* no such mode */
    CHECK(halo_cuda_hadamard(S, d, 1, 96, 96) == -1);  /* not a power of two */
    CHECK(halo_cuda_hadamard(S, d, 1, 192, 128) == -1); /* does not divide the row */
    CHECK(halo_cuda_hadamard(S, d, 1, 64, 32) == -1);   /* below 64 */
    CHECK(halo_cuda_hadamard(S, d, 0, 256, 256) == 0);
    /* zero sizes: nothing to do */
    CHECK(halo_cuda_rms_norm(S, d, NULL, d, 0, 64, 1e-6f) == 0);
    CHECK(halo_cuda_rope(S, d, 0, 4, 64, 64, 2, di, d) == 0);
    CHECK(halo_cuda_add(S, d, d, 0) == 0);
    CHECK(halo_cuda_topk_route(S, d, 0, 64, 8, true, di, d) == 0);
    CHECK(halo_cuda_copy2d(S, d, 4, d, 4, 0, 4) == 0);
    CHECK(halo_cuda_gather_rows(S, d, d, di, 0, 4) == 0);
    CHECK(halo_cuda_moe_combine(S, d, d, 0, 8, 64, NULL, NULL, d) == 0);
    CHECK(halo_cuda_stream_sync(S) == 0);
    halo_cuda_free(d), halo_cuda_free(di);
}

#endif

int main(void) {
    rng_seed(0x9e3779b97f4a7c15ull);
    cuda_test_require_gpu();
#ifdef HALO_HAVE_CUDA
    S = halo_cuda_stream_new();
    CHECK(S != NULL);

    printf("rms norm\n");
    test_rms_norm(1, 128, true, false);
    test_rms_norm(32768, 128, true, true); /* per-head norms: 512 tokens x 64 heads */
    test_rms_norm(7, 1000, false, false);
    test_rms_norm(5, 1024, true, false);
    test_rms_norm(3, 1025, true, true);
    test_add_rms_norm(1, 2048, true);
    test_add_rms_norm(5, 6000, true);
    test_add_rms_norm(3, 100, false);
    test_rms_norm(64, 4096, true, false);
    test_rms_norm(9, 8192, false, true);

    printf("rope\n");
    test_rope(1, 8, 128, 128, HALO_ROPE_NEOX, 100);
    test_rope(7, 4, 64, 64, HALO_ROPE_NORM, 4096);
    test_rope(33, 16, 128, 64, HALO_ROPE_NEOX, 40000); /* partial rotary */
    test_rope(5, 2, 256, 128, HALO_ROPE_NORM, 40000);  /* partial, adjacent pairs */
    test_rope(512, 64, 128, 128, HALO_ROPE_NEOX, 40000);

    printf("hadamard\n");
    test_hadamard(1, 256, 256);
    test_hadamard(512, 2 * 256, 256); /* q of a kdoc-moe prefill: 512 tokens x 2 heads */
    test_hadamard(33, 4 * 128, 64);
    test_hadamard(7, 1024, 1024);

    printf("elementwise\n");
    test_elementwise(1);
    test_elementwise(1000);
    test_elementwise((1 << 20) + 3);

    printf("copies\n");
    test_copies(1, 7);
    test_copies(37, 300);
    test_copies(512, 4096);

    printf("topk route\n");
    test_topk(1, 8, 2, true, 0);
    test_topk(17, 64, 8, false, 0);
    test_topk(33, 100, 10, true, 0);
    test_topk(64, 128, 8, true, 0);
    test_topk(64, 256, 8, true, 0);
    test_topk(9, 512, 16, false, 0);
    test_topk(5, 512, 1, true, 0);
    test_topk(7, 16, 16, true, 0); /* k = n_expert */
    test_topk(32, 128, 16, true, 1);
    test_topk(32, 512, 16, false, 1);
    test_topk(16, 40, 8, true, 1);

    printf("moe combine\n");
    test_moe_combine(1, 1, 64, false);
    test_moe_combine(13, 8, 2048, true);
    test_moe_combine(64, 16, 1000, false);

    test_shapes_refused();
    halo_cuda_stream_free(S);
#endif
    return halo_test_finish("cuda_ops");
}
