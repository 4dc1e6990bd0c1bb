/* The Vulkan device layer and small ops (kernels/vulkan/device.c, ops.c) against the CPU:
 * memory (uploads and downloads direct and through the staging buffer, device copies,
 * zeroing, pointer arithmetic inside allocations, refused pointers), RMS norm (with and
 * without weight, in place), add + RMS norm, RoPE (NORM and NEOX, partial rotary),
 * add, SwiGLU, sigmoid gate, 2-D copy, row gather / scatter, the Walsh-Hadamard rotation
 * (the CPU's bits), MoE routing (exact ids, ties to the lower index) and combination.
 *
 * Errors are max |vulkan - ref| / max |ref| over each output (the max norm), printed
 * per case. Bounds are a small multiple of the rounding each op does and of what was
 * measured on lavapipe (Mesa 22.3, llvmpipe, AVX2; worst over the cases below): rms
 * 1.8e-7, add + rms 1.4e-7, rope 1.7e-7 (angles up to 1e6), swiglu 1.1e-7, sigmoid
 * gate 1.5e-7, routing weights 2.4e-7, combination 1.7e-7; add, copies, gather / scatter,
 * routing ids exact. An indexing or semantic bug gives errors ~1. */
#include "compare.h"
#include "harness.h"
#include "rng.h"
#include "vulkan_test.h"

#include "kernels/kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef HALO_HAVE_VULKAN

/* An RMS norm: a sum of up to 8192 squares in another order (per invocation, then
 * subgroups, then shared memory), a division and a square root (Vulkan: 2.5 and 3 ulp):
 * bound 1e-6 (~16 u). */
#define TOL_RMS 1e-6
/* RoPE: sin / cos of the same f32 angle, the shader's own (range reduction + polynomial,
 * a few ulps) against the C library's, then a*c - b*s: bound 1e-6. */
#define TOL_ROPE 1e-6
/* SwiGLU / sigmoid gate: exp (Vulkan allows 3 + 2|x| ulp: ~27 ulp at |x| = 12), a
 * division (2.5 ulp) and a product: bound 4e-6. */
#define TOL_GATE 4e-6

/* Routing weights: a sum of up to 512 exponentials (3 + 2|x| ulp each) in another order, a
 * division, a renormalization: bound 4e-6. */
#define TOL_ROUTE 4e-6
/* MoE combination: up to 17 products summed in the order of the double reference, and
 * a sigmoid: bound 4e-6. */
#define TOL_COMBINE 4e-6

static halo_vk *V;

static void report(const char *what, double err, double tol) {
    printf("  %-52s max rel err %.3g (bound %.0e)\n", what, err, tol);
    CHECK_MSG(err <= tol, "%s: %.3g > %.0e", what, err, tol);
}

/* ---- memory ----------------------------------------------------------------------------- */

/* Uploads and downloads of whole buffers and of ranges inside them, device copies and
 * zeroing, sizes past the staging buffer (16 MiB) and not multiples of 4. */
static void test_memory(void) {
    const size_t n = (size_t)20 << 20; /* bytes: two staging chunks */
    unsigned char *a = malloc(n), *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        a[i] = (unsigned char)rnd_u32();
    unsigned char *d = dev_from(V, NULL, n);
    CHECK(d != NULL);
    to_host(V, b, d, n);
    bool zero = true;
    for (size_t i = 0; i < n; i++)
        zero &= b[i] == 0;
    CHECK_MSG(zero, "a new allocation is not zeroed");
    CHECK(halo_vk_upload(V, d, a, n) == HALO_OK);
    memset(b, 0, n);
    to_host(V, b, d, n);
    CHECK_MSG(memcmp(a, b, n) == 0, "upload + download of %zu bytes differ", n);
    /* ranges at odd offsets */
    CHECK(halo_vk_upload(V, d + 13, a + 1000, 4097) == HALO_OK);
    to_host(V, b, d + 13, 4097);
    CHECK(memcmp(b, a + 1000, 4097) == 0);
    /* a device copy between allocations, then zeroing a range of it */
    unsigned char *e = dev_from(V, NULL, 8192);
    CHECK(halo_vk_copy(V, e + 5, d + 100, 7000) == HALO_OK);
    CHECK(halo_vk_zero(V, e + 1024, 2048) == HALO_OK);
    to_host(V, b, e, 8192);
    unsigned char *want = calloc(8192, 1);
    to_host(V, want + 5, d + 100, 7000);
    memset(want + 1024, 0, 2048);
    CHECK_MSG(memcmp(b, want, 8192) == 0, "device copy / zero differ");
    halo_vk_free(V, e);
    halo_vk_free(V, d);
    free(a), free(b), free(want);
}

/* Pointers the layer must refuse, each on a fresh device (errors are sticky), with a
 * message. */
static void test_refusals(int device) {
    halo_vk *vk = vk_test_open(device, false);
    float host[4] = {0};
    CHECK(halo_vk_upload(vk, host, host, sizeof host) == HALO_ERR_ARG);
    printf("  refused: %s\n", halo_vk_error(vk)->msg);
    CHECK(strstr(halo_vk_error(vk)->msg, "not Vulkan device memory") != NULL);
    halo_vk_close(vk);

    vk = vk_test_open(device, false);
    float *d = halo_vk_alloc(vk, 64);
    CHECK(halo_vk_add(vk, d + 8, d, 9) == HALO_ERR_ARG); /* 9 floats from d + 8 overrun 16 */
    printf("  refused: %s\n", halo_vk_error(vk)->msg);
    CHECK(halo_vk_sync(vk) == HALO_ERR_ARG); /* sticky */
    halo_vk_close(vk);

    vk = vk_test_open(device, false);
    d = halo_vk_alloc(vk, 64);
    CHECK(halo_vk_rope(vk, d, 1, 1, 8, 7, 2, (int32_t *)d, d) == HALO_ERR_ARG); /* odd n_rot */
    halo_vk_close(vk);
    vk = vk_test_open(device, false);
    d = halo_vk_alloc(vk, 64);
    CHECK(halo_vk_rope(vk, d, 1, 1, 8, 8, 1, (int32_t *)d, d) == HALO_ERR_ARG); /* no mode 1 */
    halo_vk_close(vk);

    vk = vk_test_open(device, false);
    d = halo_vk_alloc(vk, 64);
    CHECK(halo_vk_topk_route(vk, d, 1, 513, 2, true, (int32_t *)d, d) == HALO_ERR_ARG);
    halo_vk_close(vk);
    vk = vk_test_open(device, false);
    d = halo_vk_alloc(vk, 64);
    CHECK(halo_vk_topk_route(vk, d, 1, 8, 9, true, (int32_t *)d, d) == HALO_ERR_ARG);
    halo_vk_close(vk);

    vk = vk_test_open(device, false);
    CHECK(halo_vk_alloc(vk, 0) == NULL);
    CHECK(halo_vk_error(vk)->status == HALO_ERR_ARG);
    halo_vk_close(vk);

    halo_error err = {0};
    CHECK(halo_vk_open(1000, NULL, &err) == NULL);
    printf("  refused: %s\n", err.msg);
    CHECK(err.status == HALO_ERR_ARG);
}

/* ---- RMS norm --------------------------------------------------------------------------- */

static void test_rms_norm(int64_t rows, int64_t n, bool weight, bool in_place) {
    size_t total = (size_t)(rows * n);
    float *x = malloc(sizeof(float) * total), *w = malloc(sizeof(float) * (size_t)n);
    float *ref = malloc(sizeof(float) * total), *got = malloc(sizeof(float) * total);
    fill(x, total, -3.0f, 3.0f);
    fill(w, (size_t)n, 0.5f, 1.5f);
    halo_rms_norm_ref(x, weight ? w : NULL, ref, rows, n, 1e-6f);
    float *dx = dev_from(V, x, sizeof(float) * total),
          *dw = dev_from(V, w, sizeof(float) * (size_t)n);
    float *dy = in_place ? dx : dev_from(V, NULL, sizeof(float) * total);
    CHECK(halo_vk_rms_norm(V, dx, weight ? dw : NULL, dy, rows, n, 1e-6f) == HALO_OK);
    to_host(V, got, dy, sizeof(float) * total);
    char what[96];
    snprintf(what, sizeof what, "rms_norm %lld x %lld%s%s", (long long)rows, (long long)n,
             weight ? " w" : "", in_place ? " in place" : "");
    report(what, max_rel(got, ref, total), TOL_RMS);
    halo_vk_free(V, dx);
    halo_vk_free(V, dw);
    if (!in_place) halo_vk_free(V, dy);
    free(x), free(w), free(ref), free(got);
}

/* The residual add and the next norm in one launch: x must be x + y exactly (one f32
 * add), xn within the norm's tolerance. */
static void test_add_rms_norm(int64_t rows, int64_t n, bool weight) {
    size_t total = (size_t)(rows * n);
    float *x = malloc(sizeof(float) * total), *y = malloc(sizeof(float) * total);
    float *w = malloc(sizeof(float) * (size_t)n), *sum = malloc(sizeof(float) * total);
    float *ref = malloc(sizeof(float) * total), *got = malloc(sizeof(float) * total);
    fill(x, total, -3.0f, 3.0f);
    fill(y, total, -3.0f, 3.0f);
    fill(w, (size_t)n, 0.5f, 1.5f);
    for (size_t i = 0; i < total; i++)
        sum[i] = x[i] + y[i];
    halo_rms_norm_ref(sum, weight ? w : NULL, ref, rows, n, 1e-6f);
    float *dx = dev_from(V, x, sizeof(float) * total), *dy = dev_from(V, y, sizeof(float) * total);
    float *dw = dev_from(V, w, sizeof(float) * (size_t)n);
    float *dn = dev_from(V, NULL, sizeof(float) * total);
    CHECK(halo_vk_add_rms_norm(V, dx, dy, weight ? dw : NULL, dn, rows, n, 1e-6f) == HALO_OK);
    to_host(V, got, dx, sizeof(float) * total);
    CHECK_MSG(memcmp(got, sum, sizeof(float) * total) == 0, "add_rms_norm %lld x %lld: x != x + y",
              (long long)rows, (long long)n);
    to_host(V, got, dn, sizeof(float) * total);
    char what[96];
    snprintf(what, sizeof what, "add_rms_norm %lld x %lld%s", (long long)rows, (long long)n,
             weight ? " w" : "");
    report(what, max_rel(got, ref, total), TOL_RMS);
    halo_vk_free(V, dx), halo_vk_free(V, dy), halo_vk_free(V, dw), halo_vk_free(V, dn);
    free(x), free(y), free(w), free(sum), free(ref), free(got);
}

/* ---- RoPE (against halo_rope: the same float angle pos * inv_freq) ---------------------- */

static void test_rope(int n_tok, int n_heads, int head_dim, int n_rot, int mode, int max_pos) {
    size_t row = (size_t)n_heads * head_dim, total = row * (size_t)n_tok;
    float *x = malloc(sizeof(float) * total), *ref = malloc(sizeof(float) * total);
    float *got = malloc(sizeof(float) * total),
          *inv = malloc(sizeof(float) * (size_t)(n_rot / 2 + 1));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n_tok);
    fill(x, total, -2.0f, 2.0f);
    memcpy(ref, x, sizeof(float) * total);
    halo_rope_inv_freq(1e6f, n_rot, inv);
    for (int t = 0; t < n_tok; t++)
        pos[t] = (int32_t)(rnd_u32() % (uint32_t)max_pos);
    for (int t = 0; t < n_tok; t++)
        halo_rope(ref + (size_t)t * row, n_heads, head_dim, n_rot, mode, (float)pos[t], inv);
    float *dx = dev_from(V, x, sizeof(float) * total);
    float *dinv = dev_from(V, inv, sizeof(float) * (size_t)(n_rot / 2 + 1));
    int32_t *dpos = dev_from(V, pos, sizeof(int32_t) * (size_t)n_tok);
    CHECK(halo_vk_rope(V, dx, n_tok, n_heads, head_dim, n_rot, mode, dpos, dinv) == HALO_OK);
    to_host(V, got, dx, sizeof(float) * total);
    char what[96];
    snprintf(what, sizeof what, "rope %s %d tok x %d heads x %d, n_rot %d, pos < %d",
             mode == HALO_ROPE_NEOX ? "neox" : "norm", n_tok, n_heads, head_dim, n_rot, max_pos);
    report(what, max_rel(got, ref, total), TOL_ROPE);
    /* the dims past n_rot are untouched, bit for bit */
    bool same = true;
    for (size_t r = 0; r < total / (size_t)head_dim; r++)
        for (int i = n_rot; i < head_dim; i++)
            same &= got[r * (size_t)head_dim + (size_t)i] == x[r * (size_t)head_dim + (size_t)i];
    CHECK(same);
    halo_vk_free(V, dx), halo_vk_free(V, dinv), halo_vk_free(V, dpos);
    free(x), free(ref), free(got), free(inv), free(pos);
}

/* ---- elementwise ------------------------------------------------------------------------ */

static void test_elementwise(int64_t n) {
    size_t sz = sizeof(float) * (size_t)n;
    float *a = malloc(sz), *b = malloc(sz), *ref = malloc(sz), *got = malloc(sz);
    fill(a, (size_t)n, -12.0f, 12.0f);
    fill(b, (size_t)n, -3.0f, 3.0f);
    float *da = dev_from(V, a, sz), *db = dev_from(V, b, sz);
    char what[96];

    /* add: one rounding each, the same on both: exact */
    for (int64_t i = 0; i < n; i++)
        ref[i] = a[i] + b[i];
    CHECK(halo_vk_add(V, da, db, n) == HALO_OK);
    to_host(V, got, da, sz);
    snprintf(what, sizeof what, "add n %lld", (long long)n);
    report(what, max_rel(got, ref, (size_t)n), 0.0);

    memcpy(ref, a, sz);
    halo_swiglu_ref(ref, b, n);
    CHECK(halo_vk_upload(V, da, a, sz) == HALO_OK);
    CHECK(halo_vk_swiglu(V, da, db, n) == HALO_OK);
    to_host(V, got, da, sz);
    snprintf(what, sizeof what, "swiglu n %lld", (long long)n);
    report(what, max_rel(got, ref, (size_t)n), TOL_GATE);

    /* sigmoid gate against double */
    for (int64_t i = 0; i < n; i++)
        ref[i] = (float)((double)b[i] / (1.0 + exp(-(double)a[i])));
    CHECK(halo_vk_upload(V, db, b, sz) == HALO_OK);
    CHECK(halo_vk_upload(V, da, a, sz) == HALO_OK);
    CHECK(halo_vk_sigmoid_gate(V, db, da, n) == HALO_OK);
    to_host(V, got, db, sz);
    snprintf(what, sizeof what, "sigmoid_gate n %lld", (long long)n);
    report(what, max_rel(got, ref, (size_t)n), TOL_GATE);

    halo_vk_free(V, da), halo_vk_free(V, db);
    free(a), free(b), free(ref), free(got);
}

/* ---- copies (exact) --------------------------------------------------------------------- */

static void test_copies(int64_t rows, int64_t width) {
    const int64_t ss = width + 13, ds = width + 5;
    size_t sn = (size_t)(rows * ss), dn = (size_t)(rows * ds);
    float *src = malloc(sizeof(float) * sn), *dst = malloc(sizeof(float) * dn);
    float *got = malloc(sizeof(float) * dn);
    fill(src, sn, -1.0f, 1.0f);
    for (size_t i = 0; i < dn; i++)
        dst[i] = -7.0f;
    float *dsrc = dev_from(V, src, sizeof(float) * sn),
          *ddst = dev_from(V, dst, sizeof(float) * dn);
    CHECK(halo_vk_copy2d(V, ddst, ds, dsrc, ss, rows, width) == HALO_OK);
    to_host(V, got, ddst, sizeof(float) * dn);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < width; i++)
            dst[r * ds + i] = src[r * ss + i];
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
    for (int32_t i = 0; i < n; i++)
        idx[i] = (int32_t)(rnd_u32() % (uint32_t)n), perm[i] = i;
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t j = (int32_t)(rnd_u32() % (uint32_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    float *da = dev_from(V, a, sizeof(float) * rn), *dout = dev_from(V, NULL, sizeof(float) * rn);
    int32_t *didx = dev_from(V, idx, sizeof(int32_t) * (size_t)n);
    int32_t *dperm = dev_from(V, perm, sizeof(int32_t) * (size_t)n);
    CHECK(halo_vk_gather_rows(V, dout, da, didx, n, width) == HALO_OK);
    to_host(V, out, dout, sizeof(float) * rn);
    for (int32_t i = 0; i < n; i++)
        memcpy(ref + (size_t)i * (size_t)width, a + (size_t)idx[i] * (size_t)width,
               sizeof(float) * (size_t)width);
    CHECK(memcmp(out, ref, sizeof(float) * rn) == 0);
    CHECK(halo_vk_scatter_rows(V, dout, da, dperm, n, width) == HALO_OK);
    to_host(V, out, dout, sizeof(float) * rn);
    for (int32_t i = 0; i < n; i++)
        memcpy(ref + (size_t)perm[i] * (size_t)width, a + (size_t)i * (size_t)width,
               sizeof(float) * (size_t)width);
    CHECK(memcmp(out, ref, sizeof(float) * rn) == 0);
    printf("  gather / scatter %d rows x %lld: %s\n", n, (long long)width,
           memcmp(out, ref, sizeof(float) * rn) == 0 ? "exact" : "DIFFERS");
    halo_vk_free(V, dsrc), halo_vk_free(V, ddst), halo_vk_free(V, da), halo_vk_free(V, dout);
    halo_vk_free(V, didx), halo_vk_free(V, dperm);
    free(src), free(dst), free(got), free(a), free(ref), free(out), free(idx), free(perm);
}

/* ---- Walsh-Hadamard rotation --------------------------------------------------------------
 * The CPU's butterflies in the same order and its scale: the bits are halo_hadamard's
 * (measured: exact, 0 ulp, on every case). Values from -1e4 to 1e4 and some of 1e-30 (their
 * sums round). */
static void test_hadamard(int64_t rows, int64_t n, int block) {
    size_t total = (size_t)(rows * n);
    float *x = malloc(sizeof(float) * total), *got = malloc(sizeof(float) * total);
    fill(x, total, -1.0f, 1.0f);
    for (size_t i = 0; i < total; i++)
        x[i] *= i % 7 == 0 ? 1e4f : i % 11 == 0 ? 1e-30f : 1.0f;
    float *dx = dev_from(V, x, sizeof(float) * total);
    CHECK(halo_vk_hadamard(V, dx, rows, n, block) == HALO_OK);
    to_host(V, got, dx, sizeof(float) * total);
    halo_hadamard(x, rows, n, block);
    size_t differ = 0;
    for (size_t i = 0; i < total; i++)
        differ += memcmp(&got[i], &x[i], sizeof(float)) != 0;
    printf("  hadamard %lld x %lld, runs of %d: %zu of %zu values differ from the CPU's bits\n",
           (long long)rows, (long long)n, block, differ, total);
    CHECK(differ == 0);
    halo_vk_free(V, dx);
    free(x), free(got);
}

/* ---- MoE routing ------------------------------------------------------------------------
 * ties: 0 = distinct logits, spaced 8 / n_expert apart (no near-ties: the order is the
 * same in any rounding); 1 = logits on 3 levels (exact ties everywhere). */

static void test_topk(int32_t n, int n_expert, int k, bool normalize, int ties) {
    size_t nl = (size_t)n * (size_t)n_expert, nk = (size_t)n * (size_t)k;
    float *lg = malloc(sizeof(float) * nl), *w_ref = malloc(sizeof(float) * nk);
    float *w_got = malloc(sizeof(float) * nk);
    int32_t *id_ref = malloc(sizeof(int32_t) * nk), *id_got = malloc(sizeof(int32_t) * nk);
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n_expert);
    for (int32_t t = 0; t < n; t++) {
        for (int e = 0; e < n_expert; e++)
            perm[e] = e;
        for (int e = n_expert - 1; e > 0; e--) {
            int j = (int)(rnd_u32() % (uint32_t)(e + 1)), x = perm[e];
            perm[e] = perm[j], perm[j] = x;
        }
        for (int e = 0; e < n_expert; e++)
            lg[(size_t)t * n_expert + e] = ties ? (float)(rnd_u32() % 3) - 1.0f
                                                : (float)perm[e] * 8.0f / (float)n_expert - 4.0f;
        halo_topk_route_ref(lg + (size_t)t * n_expert, n_expert, k, normalize,
                            id_ref + (size_t)t * k, w_ref + (size_t)t * k);
    }
    float *dl = dev_from(V, lg, sizeof(float) * nl), *dw = dev_from(V, NULL, sizeof(float) * nk);
    int32_t *di = dev_from(V, NULL, sizeof(int32_t) * nk);
    CHECK(halo_vk_topk_route(V, dl, n, n_expert, k, normalize, di, dw) == HALO_OK);
    to_host(V, w_got, dw, sizeof(float) * nk);
    to_host(V, id_got, di, sizeof(int32_t) * nk);
    int bad = 0;
    for (size_t i = 0; i < nk; i++)
        bad += id_got[i] != id_ref[i];
    char what[96];
    snprintf(what, sizeof what, "topk %d tok, %d experts, k %d%s%s: ids %s", n, n_expert, k,
             normalize ? " norm" : "", ties ? " ties" : "", bad ? "DIFFER" : "exact");
    CHECK_MSG(bad == 0, "%s: %d ids differ", what, bad);
    report(what, max_rel(w_got, w_ref, nk), TOL_ROUTE);
    halo_vk_free(V, dl), halo_vk_free(V, dw), halo_vk_free(V, di);
    free(lg), free(w_ref), free(w_got), free(id_ref), free(id_got), free(perm);
}

/* ---- MoE combination (reference in double, summed in the shader's order) ---------------- */

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
                acc += (double)w[t * k + j] *
                       y[((size_t)t * k + (size_t)j) * (size_t)n_embd + (size_t)d];
            if (shared) acc += sh[(size_t)t * n_embd + d] / (1.0 + exp(-(double)shg[t]));
            ref[(size_t)t * n_embd + d] = (float)acc;
        }
    float *dy = dev_from(V, y, sizeof(float) * ny),
          *dw = dev_from(V, w, sizeof(float) * (size_t)(n * k));
    float *dsh = dev_from(V, sh, sizeof(float) * no),
          *dshg = dev_from(V, shg, sizeof(float) * (size_t)n);
    float *dout = dev_from(V, NULL, sizeof(float) * no);
    CHECK(halo_vk_moe_combine(V, dy, dw, n, k, n_embd, shared ? dsh : NULL, shared ? dshg : NULL,
                              dout) == HALO_OK);
    to_host(V, got, dout, sizeof(float) * no);
    char what[96];
    snprintf(what, sizeof what, "moe_combine %d tok, k %d, %lld%s", n, k, (long long)n_embd,
             shared ? " + shared" : "");
    report(what, max_rel(got, ref, no), TOL_COMBINE);
    halo_vk_free(V, dy), halo_vk_free(V, dw), halo_vk_free(V, dsh), halo_vk_free(V, dshg);
    halo_vk_free(V, dout);
    free(y), free(w), free(sh), free(shg), free(ref), free(got);
}

/* Every op once more with pointers inside allocations (x + row offsets), as model code
 * passes them: a product of rows 3.. of a matrix into the middle of an output. */
static void test_offsets(void) {
    const int64_t rows = 10, cols = 64;
    float *w = malloc(sizeof(float) * (size_t)(rows * cols)), *x = malloc(sizeof(float) * 2 * cols);
    float ref[7], got[7];
    fill(w, (size_t)(rows * cols), -1.0f, 1.0f);
    fill(x, (size_t)(2 * cols), -1.0f, 1.0f);
    halo_matmul_ref(0, w + 3 * cols, sizeof(float) * cols, 7, cols, x + cols, 1, ref);
    float *dw = dev_from(V, w, sizeof(float) * (size_t)(rows * cols));
    float *dx = dev_from(V, x, sizeof(float) * 2 * cols),
          *dy = dev_from(V, NULL, sizeof(float) * 20);
    CHECK(halo_vk_matmul(V, 0, dw + 3 * cols, sizeof(float) * cols, 7, cols, dx + cols, 1,
                         dy + 5) == HALO_OK);
    to_host(V, got, dy + 5, sizeof got);
    report("matmul at offsets", max_rel(got, ref, 7), 1e-6);
    halo_vk_free(V, dw), halo_vk_free(V, dx), halo_vk_free(V, dy);
    free(w), free(x);
}

/* ---- kept recordings --------------------------------------------------------------------- */

/* Launches recorded once and replayed with new inputs (x += y twice, then a copy: the
 * replay reads what the buffers hold when it runs); a download in the middle of a
 * recording runs its first part and keeps nothing, the work staying correct; a free
 * makes a recording stale; an empty recording replays as nothing. */
static void test_recordings(int64_t n) {
    float *hx = malloc(sizeof(float) * (size_t)n), *hy = malloc(sizeof(float) * (size_t)n);
    float *got = malloc(sizeof(float) * (size_t)n);
    const size_t b = sizeof(float) * (size_t)n;
    float *x = dev_from(V, NULL, b), *y = dev_from(V, NULL, b), *z = dev_from(V, NULL, b);
    halo_vk_recording *rec = NULL;
    CHECK(halo_vk_record_begin(V) == HALO_OK);
    CHECK(halo_vk_add(V, x, y, n) == HALO_OK);
    CHECK(halo_vk_add(V, x, y, n) == HALO_OK);
    CHECK(halo_vk_copy(V, z, x, b) == HALO_OK);
    CHECK_MSG(halo_vk_record_end(V, &rec) == HALO_OK, "%s", halo_vk_error(V)->msg);
    CHECK(rec != NULL && halo_vk_recording_valid(V, rec));
    CHECK(halo_vk_recording_commands(rec) == 3);
    int bad = 0;
    for (int round = 0; round < 3 && rec; round++) { /* nothing ran while recording */
        for (int64_t i = 0; i < n; i++)
            hx[i] = (float)(i % 97) - 40.0f * (float)round, hy[i] = 0.25f * (float)(round + 1);
        CHECK(halo_vk_upload(V, x, hx, b) == HALO_OK && halo_vk_upload(V, y, hy, b) == HALO_OK);
        CHECK(halo_vk_replay(V, rec) == HALO_OK);
        to_host(V, got, z, b); /* waits for the replay */
        for (int64_t i = 0; i < n; i++)
            bad += got[i] != hx[i] + hy[i] + hy[i]; /* exact: small multiples of 1/4 */
    }
    CHECK_MSG(bad == 0, "recordings: %d of %lld values wrong after replays", bad, (long long)n);
    /* broken by a download: the add before it ran, the one after is recorded as usual */
    halo_vk_recording *broken = rec;
    CHECK(halo_vk_upload(V, x, hx, b) == HALO_OK);
    CHECK(halo_vk_record_begin(V) == HALO_OK);
    CHECK(halo_vk_add(V, x, y, n) == HALO_OK);
    to_host(V, got, x, b);
    CHECK(halo_vk_add(V, x, y, n) == HALO_OK);
    CHECK(halo_vk_record_end(V, &broken) == HALO_OK && broken == NULL);
    to_host(V, got, x, b);
    bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += got[i] != hx[i] + hy[i] + hy[i];
    CHECK_MSG(bad == 0, "a broken recording: %d of %lld values wrong", bad, (long long)n);
    /* empty: replays as nothing */
    halo_vk_recording *empty = NULL;
    CHECK(halo_vk_record_begin(V) == HALO_OK && halo_vk_record_end(V, &empty) == HALO_OK);
    CHECK(empty != NULL && halo_vk_recording_commands(empty) == 0);
    CHECK(halo_vk_replay(V, empty) == HALO_OK && halo_vk_sync(V) == HALO_OK);
    /* stale after a free (the caller records again) */
    halo_vk_free(V, z);
    CHECK(!halo_vk_recording_valid(V, rec) && !halo_vk_recording_valid(V, empty));
    halo_vk_recording_free(V, rec);
    halo_vk_recording_free(V, empty);
    CHECK_MSG(halo_vk_error(V)->status == HALO_OK, "%s", halo_vk_error(V)->msg);
    printf("  %-52s %s\n", "recorded, replayed 3 times, broken, stale", bad ? "wrong" : "ok");
    halo_vk_free(V, x);
    halo_vk_free(V, y);
    free(hx), free(hy), free(got);
}

static void run_all(void) {
    printf("memory\n");
    test_memory();
    test_offsets();

    printf("recordings\n");
    test_recordings(5000);

    printf("rms norm\n");
    test_rms_norm(1, 128, true, false);
    test_rms_norm(4096, 128, true, true); /* per-head norms: 64 tokens x 64 heads */
    test_rms_norm(7, 1000, false, false);
    test_rms_norm(3, 1025, true, true);
    test_rms_norm(2, 8192, false, true);
    test_add_rms_norm(1, 2048, true);
    test_add_rms_norm(5, 6000, true);
    test_add_rms_norm(3, 100, false);

    printf("rope\n");
    test_rope(1, 8, 128, 128, HALO_ROPE_NEOX, 100);
    test_rope(7, 4, 64, 64, HALO_ROPE_NORM, 4096);
    test_rope(33, 16, 128, 64, HALO_ROPE_NEOX, 40000); /* partial rotary */
    test_rope(5, 2, 256, 128, HALO_ROPE_NORM, 40000);  /* partial, adjacent pairs */
    test_rope(3, 2, 64, 64, HALO_ROPE_NEOX, 100000);   /* angles past 1e5 */
    test_rope(4, 2, 64, 64, HALO_ROPE_NORM, 1000000);  /* and past 2^16 pi/2 */

    printf("elementwise\n");
    test_elementwise(1);
    test_elementwise(1000);
    test_elementwise((1 << 20) + 3); /* the 2-D grid past 65535 groups: test_vulkan_matmul */

    printf("copies\n");
    test_copies(1, 7);
    test_copies(37, 300);
    test_copies(256, 1024);
    printf("hadamard\n");
    test_hadamard(3, 256, 64);
    test_hadamard(5, 4 * 128, 128);
    test_hadamard(2, 1024, 1024);
    test_hadamard(1, 64, 2);

    printf("topk route\n");
    test_topk(1, 8, 2, true, 0);
    test_topk(17, 64, 8, false, 0);
    test_topk(33, 100, 10, true, 0);
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
}

#endif

int main(void) {
    rng_seed(0x9e3779b97f4a7c15ull);
    int device = vk_test_device();
    (void)device; /* unused without the backend: vk_test_device skips then */
#ifdef HALO_HAVE_VULKAN
    V = vk_test_open(device, false);
    printf("validation layer: %s\n", halo_vk_validation_enabled(V) ? "on" : "not installed");
    run_all();
    vk_test_check_validation(V);
    halo_vk_close(V);

    /* the same through the staging buffer (a discrete GPU's path) */
    printf("through the staging buffer\n");
    V = vk_test_open(device, true);
    test_memory();
    test_offsets();
    test_copies(37, 300);
    test_recordings(5000);
    vk_test_check_validation(V);
    halo_vk_close(V);

    printf("refusals\n");
    test_refusals(device);
#endif
    return halo_test_finish("vulkan_ops");
}
