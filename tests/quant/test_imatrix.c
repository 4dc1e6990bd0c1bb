/*
 * The imatrix reader and writer (quant/imatrix.h): a written file reads back
 * (names in order, shapes, means, per-expert counts, absent experts, the metadata);
 * the writer refuses bad entries; hostile files (wrong type, missing or mismatched
 * counts, negative or NaN statistics, no data, truncations and flipped bytes) give
 * an error, never a crash.
 *
 * Also a comparison tool for tests/tools/test_imatrix.sh:
 *   test_imatrix compare A.gguf B.gguf TOL_L1 TOL_COUNT
 * loads both (halo's or llama-imatrix's), requires the same entries and shapes,
 * equal counts for 2-D weights, per-expert counts within TOL_COUNT rows (routing
 * near-ties may go the other way) with equal totals, and, per
 * entry, the relative L1 difference of in_sum2 (sum |a - b| / sum |b| over all its
 * matrices and channels) at most TOL_L1; prints the figures, exits 0 when all hold.
 */
#include "harness.h"
#include "format/gguf.h"
#include "quant/imatrix.h"
#include "quant/quant.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>

/* ---- compare mode ---------------------------------------------------------------- */

static int compare(const char *pa, const char *pb, double tol_l1, double tol_count) {
    halo_imatrix *a = NULL, *b = NULL;
    halo_error err = {0};
    if (halo_imatrix_load(pa, &a, &err)) {
        fprintf(stderr, "compare: %s\n", err.msg);
        return 1;
    }
    if (halo_imatrix_load(pb, &b, &err)) {
        fprintf(stderr, "compare: %s\n", err.msg);
        halo_imatrix_free(a);
        return 1;
    }
    int bad = 0;
    double max_dense = 0, max_exp = 0, max_cdiff = 0;
    const char *worst_dense = "", *worst_exp = "";
    if (halo_imatrix_n_entries(a) != halo_imatrix_n_entries(b)) {
        fprintf(stderr, "compare: %lld entries against %lld\n",
                (long long)halo_imatrix_n_entries(a), (long long)halo_imatrix_n_entries(b));
        bad++;
    }
    for (int64_t i = 0; i < halo_imatrix_n_entries(a); i++) {
        int64_t nc, nm, nc_b = 0, nm_b = 0;
        const char *name = halo_imatrix_entry_at(a, i, &nc, &nm);
        bool found = false;
        for (int64_t j = 0; j < halo_imatrix_n_entries(b) && !found; j++)
            if (!strcmp(halo_imatrix_entry_at(b, j, &nc_b, &nm_b), name)) found = true;
        if (!found || nc != nc_b || nm != nm_b) {
            fprintf(stderr, "compare: %s: %s\n", name, found ? "shapes differ" : "absent from B");
            bad++;
            continue;
        }
        double diff = 0, ref = 0, ca_tot = 0, cb_tot = 0;
        for (int64_t e = 0; e < nm; e++) {
            const float *sa, *sb;
            float ca, cb;
            halo_imatrix_raw(a, name, e, &sa, &ca);
            halo_imatrix_raw(b, name, e, &sb, &cb);
            ca_tot += ca, cb_tot += cb;
            double cd = fabs((double)ca - (double)cb);
            if (cd > max_cdiff) max_cdiff = cd;
            if ((nm == 1 && ca != cb) || cd > tol_count) {
                fprintf(stderr, "compare: %s matrix %lld: counts %g and %g\n", name, (long long)e,
                        (double)ca, (double)cb);
                bad++;
            }
            for (int64_t k = 0; k < nc; k++) {
                diff += fabs((double)sa[k] - (double)sb[k]);
                ref += fabs((double)sb[k]);
            }
        }
        if (ca_tot != cb_tot) {
            fprintf(stderr, "compare: %s: total rows %g and %g\n", name, ca_tot, cb_tot);
            bad++;
        }
        double l1 = ref > 0 ? diff / ref : diff;
        if (nm == 1 && l1 > max_dense) max_dense = l1, worst_dense = name;
        if (nm > 1 && l1 > max_exp) max_exp = l1, worst_exp = name;
        if (!(l1 <= tol_l1)) {
            fprintf(stderr, "compare: %s: relative L1 difference %.3e > %.1e\n", name, l1, tol_l1);
            bad++;
        }
    }
    if (halo_imatrix_chunks(a) != halo_imatrix_chunks(b) ||
        halo_imatrix_chunk_size(a) != halo_imatrix_chunk_size(b)) {
        fprintf(stderr, "compare: chunks %d x %d against %d x %d\n", halo_imatrix_chunks(a),
                halo_imatrix_chunk_size(a), halo_imatrix_chunks(b), halo_imatrix_chunk_size(b));
        bad++;
    }
    printf("compare: %lld entries; max relative L1 difference: 2-D %.3e (%s), experts %.3e (%s); "
           "max count difference %g; %d problems\n",
           (long long)halo_imatrix_n_entries(a), max_dense, worst_dense, max_exp, worst_exp,
           max_cdiff, bad);
    halo_imatrix_free(a);
    halo_imatrix_free(b);
    return bad ? 1 : 0;
}

/* ---- unit tests -------------------------------------------------------------------- */

static char g_path[4096];

static const char *tmp_file(const char *name) {
    snprintf(g_path, sizeof g_path, "%s/%s", halo_test_tmpdir(), name);
    return g_path;
}

static void test_roundtrip(void) {
    /* a 2-D weight of 5 columns, a 3-D weight of 3 experts x 4 columns (expert 1 unseen) */
    float s2[5] = {1, 2, 3, 4, 5}, c2[1] = {2};
    float s3[12] = {4, 8, 12, 16, 0, 0, 0, 0, 3, 6, 9, 12}, c3[3] = {4, 0, 3};
    halo_imatrix_entry e[2] = {
        {"blk.1.ffn_up_exps.weight", 4, 3, true, s3, c3},
        {"blk.0.attn_q.weight", 5, 1, false, s2, c2},
    };
    const char *ds[2] = {"calib.txt", "more.txt"};
    halo_error err = {0};
    const char *path = tmp_file("rt.gguf");
    CHECK(halo_imatrix_write(path, e, 2, ds, 2, 7, 128, &err) == 0);

    /* the layout, as llama-imatrix writes it */
    halo_gguf *g = NULL;
    CHECK(halo_gguf_open(path, NULL, &g, &err) == 0);
    if (g) {
        CHECK(halo_gguf_get_str(g, "general.type") && !strcmp(halo_gguf_get_str(g, "general.type"), "imatrix"));
        const halo_gguf_array *arr = halo_gguf_get_arr(g, "imatrix.datasets");
        CHECK(arr && arr->type == HALO_GGUF_STRING && arr->n == 2);
        const halo_gguf_value *v = halo_gguf_get(g, "imatrix.chunk_count");
        CHECK(v && v->type == HALO_GGUF_UINT32 && v->u32 == 7);
        v = halo_gguf_get(g, "imatrix.chunk_size");
        CHECK(v && v->type == HALO_GGUF_UINT32 && v->u32 == 128);
        CHECK(halo_gguf_n_tensors(g) == 4);
        static const char *names[4] = {"blk.0.attn_q.weight.in_sum2", "blk.0.attn_q.weight.counts",
                                       "blk.1.ffn_up_exps.weight.in_sum2",
                                       "blk.1.ffn_up_exps.weight.counts"};
        for (int i = 0; i < 4 && i < halo_gguf_n_tensors(g); i++) {
            const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
            CHECK_MSG(!strcmp(t->name, names[i]), "tensor %d is %s", i, t->name);
            CHECK(t->type == HALO_TYPE_F32);
        }
        const halo_gguf_tensor *t = halo_gguf_find_tensor(g, "blk.0.attn_q.weight.in_sum2");
        CHECK(t && t->n_dims == 1 && t->ne[0] == 5);
        t = halo_gguf_find_tensor(g, "blk.0.attn_q.weight.counts");
        CHECK(t && t->n_dims == 1 && t->ne[0] == 1);
        t = halo_gguf_find_tensor(g, "blk.1.ffn_up_exps.weight.in_sum2");
        CHECK(t && t->n_dims == 2 && t->ne[0] == 4 && t->ne[1] == 3);
        t = halo_gguf_find_tensor(g, "blk.1.ffn_up_exps.weight.counts");
        CHECK(t && t->n_dims == 2 && t->ne[0] == 1 && t->ne[1] == 3);
        halo_gguf_close(g);
    }

    halo_imatrix *im = NULL;
    CHECK(halo_imatrix_load(path, &im, &err) == 0);
    if (!im) return;
    CHECK(halo_imatrix_chunks(im) == 7);
    CHECK(halo_imatrix_chunk_size(im) == 128);
    CHECK(halo_imatrix_n_entries(im) == 2);
    int64_t nc = 0, nm = 0;
    const char *n0 = halo_imatrix_entry_at(im, 0, &nc, &nm);
    CHECK(n0 && !strcmp(n0, "blk.0.attn_q.weight") && nc == 5 && nm == 1);
    CHECK(halo_imatrix_entry_at(im, 2, NULL, NULL) == NULL);
    const float *m = halo_imatrix_get(im, "blk.0.attn_q.weight", 0, 5);
    CHECK(m && m[0] == 0.5f && m[4] == 2.5f);
    CHECK(halo_imatrix_get(im, "blk.0.attn_q.weight", 0, 4) == NULL); /* shape differs */
    CHECK(halo_imatrix_get(im, "blk.0.attn_q.weight", 1, 5) == NULL); /* no such matrix */
    CHECK(halo_imatrix_get(im, "blk.0.attn_q.weight", -1, 5) == NULL);
    CHECK(halo_imatrix_get(im, "blk.0.attn_k.weight", 0, 5) == NULL); /* no entry */
    CHECK(halo_imatrix_get(im, NULL, 0, 5) == NULL);
    m = halo_imatrix_get(im, "blk.1.ffn_up_exps.weight", 0, 4);
    CHECK(m && m[0] == 1 && m[3] == 4);
    CHECK(halo_imatrix_get(im, "blk.1.ffn_up_exps.weight", 1, 4) == NULL); /* never routed to */
    m = halo_imatrix_get(im, "blk.1.ffn_up_exps.weight", 2, 4);
    CHECK(m && m[0] == 1 && m[1] == 2 && m[3] == 4);
    const float *raw;
    float cnt;
    CHECK(halo_imatrix_raw(im, "blk.1.ffn_up_exps.weight", 2, &raw, &cnt) && cnt == 3 && raw[2] == 9);
    halo_imatrix_free(im);
    halo_imatrix_free(NULL);

    /* the writer refuses nonsense */
    halo_imatrix_entry dup[2] = {e[1], e[1]};
    CHECK(halo_imatrix_write(tmp_file("dup.gguf"), dup, 2, ds, 1, 1, 1, &err) == HALO_ERR_ARG);
    halo_imatrix_entry lng = e[1];
    lng.name = "blk.0.a_very_long_tensor_name_that_cannot_take_a_suffix.weight";
    CHECK(halo_imatrix_write(tmp_file("long.gguf"), &lng, 1, ds, 1, 1, 1, &err) == HALO_ERR_ARG);
    halo_imatrix_entry flat = e[0];
    flat.per_expert = false;
    CHECK(halo_imatrix_write(tmp_file("flat.gguf"), &flat, 1, ds, 1, 1, 1, &err) == HALO_ERR_ARG);
    CHECK(halo_imatrix_write(tmp_file("none.gguf"), e, 0, ds, 1, 1, 1, &err) == HALO_ERR_ARG);
    CHECK(halo_imatrix_write("/nonexistent-dir/x.gguf", e, 2, ds, 1, 1, 1, &err) != 0);
}

/* A hand-made file: general.type, then tensors as given. */
typedef struct tdesc {
    const char *name;
    int type;
    uint32_t nd;
    int64_t ne0, ne1;
    float fill;
} tdesc;

static int write_custom(const char *path, const char *gtype, const tdesc *t, int n) {
    halo_gguf_writer *w = NULL;
    halo_error err = {0};
    if (halo_gguf_writer_open(path, &w, &err)) return -1;
    if (gtype) halo_gguf_writer_set_str(w, "general.type", gtype, &err);
    for (int i = 0; i < n; i++) {
        int64_t ne[2] = {t[i].ne0, t[i].ne1};
        if (halo_gguf_writer_add_tensor(w, t[i].name, t[i].type, t[i].nd, ne, &err)) {
            halo_gguf_writer_abort(w);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        size_t nel = (size_t)(t[i].ne0 * t[i].ne1);
        size_t bytes = t[i].type == HALO_TYPE_F32 ? nel * 4 : nel * 2;
        float *buf = calloc(nel, 4);
        for (size_t k = 0; k < nel; k++) buf[k] = t[i].fill;
        halo_gguf_writer_write_data(w, buf, bytes, &err);
        free(buf);
    }
    return halo_gguf_writer_close(w, &err);
}

static void expect_load_error(const char *what, const char *gtype, const tdesc *t, int n) {
    const char *path = tmp_file("bad.gguf");
    CHECK_MSG(write_custom(path, gtype, t, n) == 0, "%s: could not write the file", what);
    halo_imatrix *im = NULL;
    halo_error err = {0};
    int rc = halo_imatrix_load(path, &im, &err);
    CHECK_MSG(rc != 0 && im == NULL, "%s: loaded", what);
    CHECK_MSG(rc == 0 || err.msg[0], "%s: no message", what);
    halo_imatrix_free(im);
}

static void test_hostile(void) {
    const int F32 = HALO_TYPE_F32, F16 = HALO_TYPE_F16;
    tdesc ok[2] = {{"w.in_sum2", F32, 2, 4, 3, 1}, {"w.counts", F32, 2, 1, 3, 2}};
    /* the well-formed one loads */
    const char *path = tmp_file("ok.gguf");
    CHECK(write_custom(path, "imatrix", ok, 2) == 0);
    halo_imatrix *im = NULL;
    halo_error err = {0};
    CHECK(halo_imatrix_load(path, &im, &err) == 0);
    CHECK(im && halo_imatrix_get(im, "w", 2, 4) && halo_imatrix_get(im, "w", 2, 4)[3] == 0.5f);
    CHECK(im && halo_imatrix_chunks(im) == 0); /* not given */
    halo_imatrix_free(im);

    expect_load_error("general.type model", "model", ok, 2);
    expect_load_error("no counts", "imatrix", ok, 1);
    tdesc t[2];
    memcpy(t, ok, sizeof t);
    t[1].ne1 = 2;
    expect_load_error("counts for 2 of 3", "imatrix", t, 2);
    memcpy(t, ok, sizeof t);
    t[1].ne0 = 2;
    expect_load_error("counts 2 wide", "imatrix", t, 2);
    memcpy(t, ok, sizeof t);
    t[0].type = F16;
    expect_load_error("F16 sums", "imatrix", t, 2);
    memcpy(t, ok, sizeof t);
    t[1].fill = -1;
    expect_load_error("negative counts", "imatrix", t, 2);
    memcpy(t, ok, sizeof t);
    t[0].fill = NAN;
    expect_load_error("NaN sums", "imatrix", t, 2);
    memcpy(t, ok, sizeof t);
    t[0].fill = INFINITY;
    expect_load_error("infinite sums", "imatrix", t, 2);
    tdesc other[1] = {{"w.weight", F32, 2, 4, 3, 1}};
    expect_load_error("no imatrix tensors", NULL, other, 1);
    halo_imatrix *none = NULL;
    CHECK(halo_imatrix_load(tmp_file("does-not-exist.gguf"), &none, &err) != 0 && !none);

    /* truncations and flipped bytes of a real file: an error or a file, never a crash */
    size_t size = 0;
    unsigned char *img = halo_test_read_file(tmp_file("rt.gguf"), &size);
    CHECK(img && size > 64);
    if (!img) return;
    uint32_t seed = 12345;
    int loaded = 0, refused = 0;
    for (int it = 0; it < 400; it++) {
        unsigned char *cp = malloc(size);
        memcpy(cp, img, size);
        size_t n = size;
        if (it < 100) n = (size_t)it * size / 100; /* truncated */
        else
            for (int f = 0; f < 1 + it % 4; f++) {
                seed = seed * 1103515245u + 12345u;
                cp[(seed >> 8) % size] ^= (unsigned char)(1u << ((seed >> 4) % 8));
            }
        FILE *fp = fopen(tmp_file("fuzz.gguf"), "wb");
        if (fp) {
            fwrite(cp, 1, n, fp);
            fclose(fp);
        }
        halo_imatrix *x = NULL;
        if (halo_imatrix_load(tmp_file("fuzz.gguf"), &x, &err) == 0) {
            loaded++;
            for (int64_t i = 0; i < halo_imatrix_n_entries(x); i++) {
                int64_t nc, nm;
                const char *nm_ = halo_imatrix_entry_at(x, i, &nc, &nm);
                for (int64_t e = 0; e < nm; e++) {
                    const float *v = halo_imatrix_get(x, nm_, e, nc);
                    if (v) CHECK(v[nc - 1] >= 0 && isfinite(v[0]));
                }
            }
        } else {
            refused++;
        }
        halo_imatrix_free(x);
        free(cp);
    }
    CHECK(refused >= 100); /* every truncation */
    printf("hostile: %d damaged files refused, %d still loaded\n", refused, loaded);
    free(img);
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "compare"))
        return compare(argv[2], argv[3], atof(argv[4]), 0) == 0 ? 0 : 1;
    if (argc == 6 && !strcmp(argv[1], "compare"))
        return compare(argv[2], argv[3], atof(argv[4]), atof(argv[5]));
    test_roundtrip();
    test_hostile();
    return halo_test_finish("imatrix");
}
