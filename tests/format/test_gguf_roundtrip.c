/*
 * Reader -> writer -> reader: every fixture copied through the writer reads back
 * with identical metadata (types and values) and tensors (infos and bytes), and
 * since the writer lays files out canonically, the copy is byte-identical to the
 * original. A synthetic file exercises every value type, nested arrays, empty
 * arrays and strings, replacement of a key in place, a non-default alignment and
 * odd tensor shapes.
 */
#define _GNU_SOURCE
#include "gguf_test_util.h"
#include "quant/quant.h"

#include <glob.h>
#include <stdio.h>

static bool files_identical(const char *a, const char *b, size_t *first_diff) {
    size_t na, nb;
    unsigned char *x = halo_test_read_file(a, &na), *y = halo_test_read_file(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    *first_diff = 0;
    if (x && y && !same) {
        size_t n = na < nb ? na : nb, i = 0;
        while (i < n && x[i] == y[i]) i++;
        *first_diff = i;
    }
    free(x);
    free(y);
    return same;
}

static void roundtrip_fixtures(void) {
    const char *patterns[] = {"models/*.gguf", "quant/*.gguf"};
    char out[4096];
    snprintf(out, sizeof out, "%s/copy.gguf", halo_test_tmpdir());
    int n_identical = 0, n_files = 0;
    for (int p = 0; p < 2; p++) {
        glob_t gl;
        if (glob(halo_test_fixture_path(patterns[p]), 0, NULL, &gl) != 0) continue;
        for (size_t i = 0; i < gl.gl_pathc; i++) {
            const char *path = gl.gl_pathv[i];
            halo_error err = {0};
            halo_gguf *g = NULL, *c = NULL;
            CHECK_MSG(halo_gguf_open(path, NULL, &g, &err) == 0, "%s: %s", path, err.msg);
            if (!g) continue;
            n_files++;
            int rc = gt_write_copy(g, out, 0, halo_gguf_n_tensors(g), true, &err);
            CHECK_MSG(rc == 0, "%s: write: %s", path, err.msg);
            rc = rc ? rc : halo_gguf_open(out, NULL, &c, &err);
            CHECK_MSG(rc == 0, "%s: reread: %s", path, err.msg);
            if (c) {
                gt_check_same_model(g, c, NULL, path);
                CHECK(halo_gguf_alignment(c) == halo_gguf_alignment(g));
            }
            size_t diff;
            bool same = files_identical(path, out, &diff);
            n_identical += same;
            if (!same)
                printf("  not byte-identical: %s (first difference at byte %zu)\n", path, diff);
            if (strstr(path, "kdoc-moe-bf16"))
                CHECK_MSG(same, "kdoc-moe copy differs from the original at byte %zu", diff);
            halo_gguf_close(c);
            halo_gguf_close(g);
        }
        globfree(&gl);
    }
    printf("fixtures: %d of %d copies byte-identical to the original\n", n_identical, n_files);
}

static void synthetic(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/synthetic.gguf", halo_test_tmpdir());
    halo_error err = {0};
    halo_gguf_writer *w;
    CHECK(halo_gguf_writer_open(path, &w, &err) == 0);
    /* every scalar type */
    halo_gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = HALO_GGUF_UINT8; v.u8 = 200;
    CHECK(halo_gguf_writer_set(w, "t.u8", &v, &err) == 0);
    v.type = HALO_GGUF_INT8; v.i8 = -100;
    CHECK(halo_gguf_writer_set(w, "t.i8", &v, &err) == 0);
    v.type = HALO_GGUF_UINT16; v.u16 = 60000;
    CHECK(halo_gguf_writer_set(w, "t.u16", &v, &err) == 0);
    v.type = HALO_GGUF_INT16; v.i16 = -30000;
    CHECK(halo_gguf_writer_set(w, "t.i16", &v, &err) == 0);
    CHECK(halo_gguf_writer_set_u32(w, "t.u32", 4000000000u, &err) == 0);
    CHECK(halo_gguf_writer_set_i32(w, "t.i32", -2000000000, &err) == 0);
    CHECK(halo_gguf_writer_set_f32(w, "t.f32", 1.5f, &err) == 0);
    CHECK(halo_gguf_writer_set_bool(w, "t.bool", true, &err) == 0);
    CHECK(halo_gguf_writer_set_str(w, "t.str", "héllo", &err) == 0);
    CHECK(halo_gguf_writer_set_u64(w, "t.u64", 0xfedcba9876543210ull, &err) == 0);
    v.type = HALO_GGUF_INT64; v.i64 = INT64_MIN;
    CHECK(halo_gguf_writer_set(w, "t.i64", &v, &err) == 0);
    v.type = HALO_GGUF_FLOAT64; v.f64 = -0.1;
    CHECK(halo_gguf_writer_set(w, "t.f64", &v, &err) == 0);
    /* a string with an embedded NUL and an empty one */
    v.type = HALO_GGUF_STRING; v.str.len = 3; v.str.data = "a\0b";
    CHECK(halo_gguf_writer_set(w, "t.nul", &v, &err) == 0);
    CHECK(halo_gguf_writer_set_str(w, "t.empty", "", &err) == 0);
    /* arrays of every numeric type */
    uint8_t bytes[1024];
    for (int i = 0; i < 1024; i++) bytes[i] = (uint8_t)(i * 7);
    for (int t = 0; t < HALO_GGUF_TYPE_COUNT; t++) {
        size_t esz = halo_gguf_type_size((halo_gguf_type)t);
        if (!esz) continue;
        char key[32];
        snprintf(key, sizeof key, "arr.%s", halo_gguf_type_name((halo_gguf_type)t));
        uint8_t buf[256];
        memcpy(buf, bytes, sizeof buf);
        if (t == HALO_GGUF_BOOL)
            for (size_t i = 0; i < sizeof buf; i++) buf[i] &= 1;
        CHECK(halo_gguf_writer_set_arr(w, key, (halo_gguf_type)t, buf, sizeof buf / esz, &err) == 0);
    }
    CHECK(halo_gguf_writer_set_arr(w, "arr.empty", HALO_GGUF_FLOAT32, NULL, 0, &err) == 0);
    const char *strs[] = {"alpha", "", "gamma δ", "<|im_start|>"};
    CHECK(halo_gguf_writer_set_str_arr(w, "arr.str", strs, 4, &err) == 0);
    /* nested: [[1,2,3], [], [["x","y"]] ] -> arrays of arrays of mixed element types */
    int32_t ints[3] = {1, 2, 3};
    halo_gguf_string xs[2] = {{1, "x"}, {1, "y"}};
    halo_gguf_array inner_str = {.type = HALO_GGUF_STRING, .n = 2, .data = xs};
    halo_gguf_array lvl2[3] = {
        {.type = HALO_GGUF_INT32, .n = 3, .data = ints},
        {.type = HALO_GGUF_UINT8, .n = 0, .data = NULL},
        {.type = HALO_GGUF_ARRAY, .n = 1, .data = &inner_str},
    };
    halo_gguf_value nested = {.type = HALO_GGUF_ARRAY};
    nested.arr.type = HALO_GGUF_ARRAY;
    nested.arr.n = 3;
    nested.arr.data = lvl2;
    /* lvl2[0..1] are arrays of scalars but element type must be uniform: GGUF
     * arrays hold one element type, here ARRAY, each sub-array its own type */
    CHECK(halo_gguf_writer_set(w, "arr.nested", &nested, &err) == 0);
    /* eight levels deep is the cap: accepted; nine is refused */
    halo_gguf_array chain[9];
    chain[8] = (halo_gguf_array){.type = HALO_GGUF_UINT8, .n = 3, .data = bytes};
    for (int i = 7; i >= 0; i--) chain[i] = (halo_gguf_array){.type = HALO_GGUF_ARRAY, .n = 1, .data = &chain[i + 1]};
    halo_gguf_value deep = {.type = HALO_GGUF_ARRAY};
    deep.arr = chain[1]; /* 8 levels of arrays: chain[1..8] */
    CHECK(halo_gguf_writer_set(w, "arr.deep8", &deep, &err) == 0);
    deep.arr = chain[0];
    halo_error e2 = {0};
    CHECK(halo_gguf_writer_set(w, "arr.deep9", &deep, &e2) == HALO_ERR_ARG);
    /* replacing keeps the position */
    CHECK(halo_gguf_writer_set_u32(w, "t.u8", 7, &err) == 0);
    CHECK(halo_gguf_writer_set_u32(w, "general.alignment", 64, &err) == 0);
    /* tensors: odd shapes, 0-sized, quantized */
    int64_t ne_a[2] = {3, 5};
    int64_t ne_b[1] = {0};
    int64_t ne_c[2] = {64, 2};
    int64_t ne_d[4] = {2, 1, 1, 3};
    CHECK(halo_gguf_writer_add_tensor(w, "a", HALO_TYPE_F32, 2, ne_a, &err) == 0);
    CHECK(halo_gguf_writer_add_tensor(w, "b.empty", HALO_TYPE_F16, 1, ne_b, &err) == 0);
    CHECK(halo_gguf_writer_add_tensor(w, "c.q8", HALO_TYPE_Q8_0, 2, ne_c, &err) == 0);
    CHECK(halo_gguf_writer_add_tensor(w, "d", HALO_TYPE_I8, 4, ne_d, &err) == 0);
    e2 = (halo_error){0};
    CHECK(halo_gguf_writer_add_tensor(w, "a", HALO_TYPE_F32, 2, ne_a, &e2) == HALO_ERR_ARG);
    e2 = (halo_error){0};
    int64_t bad[1] = {33};
    CHECK(halo_gguf_writer_add_tensor(w, "bad", HALO_TYPE_Q8_0, 1, bad, &e2) == HALO_ERR_ARG);
    uint8_t data[15 * 4 + 4 * 34 + 6];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i + 1);
    /* one call spanning all tensors, then too much */
    CHECK(halo_gguf_writer_write_data(w, data, sizeof data, &err) == 0);
    e2 = (halo_error){0};
    CHECK(halo_gguf_writer_write_data(w, data, 1, &e2) == HALO_ERR_ARG);
    e2 = (halo_error){0};
    CHECK(halo_gguf_writer_set_u32(w, "late", 1, &e2) == HALO_ERR_ARG);
    CHECK_MSG(halo_gguf_writer_close(w, &err) == 0, "%s", err.msg);

    halo_gguf *g = NULL;
    CHECK_MSG(halo_gguf_open(path, NULL, &g, &err) == 0, "%s", err.msg);
    if (!g) return;
    CHECK(halo_gguf_alignment(g) == 64);
    CHECK(halo_gguf_n_kv(g) == 30);
    CHECK(strcmp(halo_gguf_kv_at(g, 0)->key, "t.u8") == 0);
    CHECK(halo_gguf_kv_at(g, 0)->value.type == HALO_GGUF_UINT32);
    uint64_t u = 0;
    int64_t s = 0;
    CHECK(halo_gguf_get_u64(g, "t.u64", &u) && u == 0xfedcba9876543210ull);
    CHECK(!halo_gguf_get_i64(g, "t.u64", &s));
    CHECK(halo_gguf_get_i64(g, "t.i64", &s) && s == INT64_MIN);
    CHECK(!halo_gguf_get_u64(g, "t.i8", &u));
    CHECK(halo_gguf_get_i64(g, "t.i16", &s) && s == -30000);
    CHECK(halo_gguf_get_u32(g, "t.u16", (uint32_t *)&u) && (uint32_t)u == 60000);
    float f = 0;
    CHECK(halo_gguf_get_f32(g, "t.f64", &f) && f == -0.1f);
    CHECK(halo_gguf_get_f32(g, "t.i32", &f) && f == -2e9f);
    bool b = false;
    CHECK(halo_gguf_get_bool(g, "t.bool", &b) && b);
    CHECK(strcmp(halo_gguf_get_str(g, "t.str"), "héllo") == 0);
    const halo_gguf_value *nul = halo_gguf_get(g, "t.nul");
    CHECK(nul && nul->str.len == 3 && memcmp(nul->str.data, "a\0b", 4) == 0);
    CHECK(halo_gguf_get_str(g, "t.empty") && halo_gguf_get_str(g, "t.empty")[0] == 0);
    CHECK(gt_value_equal(halo_gguf_get(g, "arr.nested"), &nested));
    deep.arr = chain[1];
    CHECK(gt_value_equal(halo_gguf_get(g, "arr.deep8"), &deep));
    CHECK(halo_gguf_get(g, "arr.deep9") == NULL);
    const halo_gguf_array *as = halo_gguf_get_arr(g, "arr.str");
    CHECK(as && as->n == 4 && strcmp(((halo_gguf_string *)as->data)[2].data, "gamma δ") == 0);
    const halo_gguf_array *ai = halo_gguf_get_arr(g, "arr.i16");
    double d = 0;
    CHECK(ai && ai->n == 128 && halo_gguf_arr_i64(ai, 1, &s) && s == (int16_t)(14 | 21 << 8));
    CHECK(halo_gguf_arr_f64(ai, 1, &d) && d == (double)s);
    CHECK(!halo_gguf_arr_i64(ai, 128, &s));
    CHECK(!halo_gguf_arr_i64(as, 0, &s));
    const halo_gguf_array *ae = halo_gguf_get_arr(g, "arr.empty");
    CHECK(ae && ae->n == 0 && ae->type == HALO_GGUF_FLOAT32);
    CHECK(halo_gguf_n_tensors(g) == 4);
    const halo_gguf_tensor *t = halo_gguf_find_tensor(g, "c.q8");
    CHECK(t && t->nbytes == 136 && t->offset % 64 == 0 && t->n_elements == 128);
    CHECK(t && memcmp(t->data, data + 60, 136) == 0);
    t = halo_gguf_find_tensor(g, "b.empty");
    CHECK(t && t->nbytes == 0 && t->n_elements == 0);
    t = halo_gguf_find_tensor(g, "d");
    CHECK(t && t->n_dims == 4 && t->ne[3] == 3 && memcmp(t->data, data + 196, 6) == 0);

    /* and the synthetic file round-trips through copy_kvs byte for byte */
    char path2[4096];
    snprintf(path2, sizeof path2, "%s/synthetic2.gguf", halo_test_tmpdir());
    CHECK_MSG(gt_write_copy(g, path2, 0, halo_gguf_n_tensors(g), true, &err) == 0, "%s", err.msg);
    size_t diff;
    CHECK_MSG(files_identical(path, path2, &diff), "synthetic copy differs at %zu", diff);
    halo_gguf_close(g);

    /* a file with no tensors; a writer that gets too few bytes fails and removes its file */
    snprintf(path2, sizeof path2, "%s/empty.gguf", halo_test_tmpdir());
    CHECK(halo_gguf_writer_open(path2, &w, &err) == 0);
    CHECK(halo_gguf_writer_close(w, &err) == 0);
    CHECK(halo_gguf_open(path2, NULL, &g, &err) == 0);
    if (g) CHECK(halo_gguf_n_kv(g) == 0 && halo_gguf_n_tensors(g) == 0);
    halo_gguf_close(g);
    CHECK(halo_gguf_writer_open(path2, &w, &err) == 0);
    CHECK(halo_gguf_writer_add_tensor(w, "x", HALO_TYPE_F32, 1, ne_a, &err) == 0);
    CHECK(halo_gguf_writer_write_data(w, data, 5, &err) == 0);
    e2 = (halo_error){0};
    CHECK(halo_gguf_writer_close(w, &e2) == HALO_ERR_ARG);
    printf("short tensor: %s\n", e2.msg);
    FILE *fp = fopen(path2, "rb");
    CHECK(fp == NULL);
    if (fp) fclose(fp);
}

int main(void) {
    synthetic();
    if (halo_test_fixtures()) roundtrip_fixtures();
    return halo_test_finish("test_gguf_roundtrip");
}
