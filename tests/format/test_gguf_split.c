/*
 * Split models: a fixture written by the writer as three parts named as the
 * split tool names them (NAME-0000k-of-00003.gguf, metadata in the first part,
 * split.no / split.count / split.tensors.count in every part) opens from its
 * first part, in every loading mode, as the same model as the unsplit file.
 * A missing part, opening a later part directly, a part that does not belong,
 * and a wrong tensor total each give a clear error.
 */
#define _GNU_SOURCE
#include "gguf_test_util.h"

#include <stdio.h>
#include <unistd.h>

static const char *const split_keys[] = {"split.no", "split.count", "split.tensors.count", NULL};

static int write_part(const halo_gguf *g, const char *path, int part, int n_parts, int64_t from,
                      int64_t to, int64_t total, halo_error *err) {
    halo_gguf_writer *w;
    int rc = halo_gguf_writer_open(path, &w, err);
    if (rc) return rc;
    halo_gguf_value v = {.type = HALO_GGUF_UINT16};
    if (part == 0 && (rc = halo_gguf_writer_copy_kvs(w, g, err))) goto fail;
    v.u16 = (uint16_t)part;
    if ((rc = halo_gguf_writer_set(w, "split.no", &v, err))) goto fail;
    v.u16 = (uint16_t)n_parts;
    if ((rc = halo_gguf_writer_set(w, "split.count", &v, err))) goto fail;
    if ((rc = halo_gguf_writer_set_i32(w, "split.tensors.count", (int32_t)total, err))) goto fail;
    for (int64_t i = from; i < to; i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        if ((rc = halo_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, err)))
            goto fail;
    }
    for (int64_t i = from; i < to; i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        if ((rc = halo_gguf_writer_write_data(w, t->data, (size_t)t->nbytes, err))) goto fail;
    }
    return halo_gguf_writer_close(w, err);
fail:
    halo_gguf_writer_abort(w);
    return rc;
}

static void part_path(char *buf, size_t size, const char *dir, const char *name, int k, int n) {
    snprintf(buf, size, "%s/%s-%05d-of-%05d.gguf", dir, name, k, n);
}

int main(void) {
    halo_test_require_fixtures();
    const char *src = halo_test_fixture_path("models/kdoc-moe-bf16.gguf");
    halo_error err = {0};
    halo_gguf *g = NULL;
    CHECK_MSG(halo_gguf_open(src, NULL, &g, &err) == 0, "%s", err.msg);
    if (!g) return halo_test_finish("test_gguf_split");
    const char *dir = halo_test_tmpdir();
    int64_t n = halo_gguf_n_tensors(g);
    int64_t cut[4] = {0, n / 3, n / 3 + n / 4, n};
    char p1[4096], p2[4096], p3[4096];
    part_path(p1, sizeof p1, dir, "kdoc", 1, 3);
    part_path(p2, sizeof p2, dir, "kdoc", 2, 3);
    part_path(p3, sizeof p3, dir, "kdoc", 3, 3);
    const char *paths[3] = {p1, p2, p3};
    for (int k = 0; k < 3; k++)
        CHECK_MSG(write_part(g, paths[k], k, 3, cut[k], cut[k + 1], n, &err) == 0, "%s", err.msg);

    halo_load_options modes[3] = {{.mode = HALO_LOAD_MMAP},
                                  {.mode = HALO_LOAD_READ},
                                  {.mode = HALO_LOAD_MMAP, .mlock = true}};
    for (int m = 0; m < 3; m++) {
        halo_gguf *s = NULL;
        halo_error_clear(&err);
        CHECK_MSG(halo_gguf_open(p1, &modes[m], &s, &err) == 0, "mode %d: %s", m, err.msg);
        if (!s) continue;
        CHECK(halo_gguf_n_splits(s) == 3);
        gt_check_same_model(g, s, split_keys, "split");
        for (int64_t i = 0; i < n; i++) {
            const halo_gguf_tensor *t = halo_gguf_tensor_at(s, i);
            uint32_t want = i < cut[1] ? 0 : i < cut[2] ? 1 : 2;
            CHECK(t->split == want);
        }
        CHECK(halo_gguf_find_tensor(s, halo_gguf_tensor_at(g, n - 1)->name) ==
              halo_gguf_tensor_at(s, n - 1));
        halo_gguf_load_stats st, st0;
        halo_gguf_get_load_stats(s, &st);
        halo_gguf_get_load_stats(g, &st0);
        CHECK(st.data_bytes >= st0.data_bytes && st.file_bytes > st0.file_bytes);
        halo_gguf_close(s);
    }

    /* opening part 2 directly names part 1 */
    halo_gguf *s = NULL;
    halo_error_clear(&err);
    CHECK(halo_gguf_open(p2, NULL, &s, &err) == HALO_ERR_FORMAT);
    printf("open part 2: %s\n", err.msg);
    CHECK(strstr(err.msg, "kdoc-00001-of-00003.gguf") != NULL);

    /* a part that does not belong: part 3 written claiming to be part 2 */
    char p3b[4200];
    snprintf(p3b, sizeof p3b, "%s.orig", p3);
    CHECK(rename(p3, p3b) == 0);
    CHECK(write_part(g, p3, 1, 3, cut[2], cut[3], n, &err) == 0);
    halo_error_clear(&err);
    CHECK(halo_gguf_open(p1, NULL, &s, &err) == HALO_ERR_FORMAT);
    printf("wrong part: %s\n", err.msg);

    /* wrong total */
    CHECK(write_part(g, p3, 2, 3, cut[2], cut[3] - 1, n, &err) == 0);
    halo_error_clear(&err);
    CHECK(halo_gguf_open(p1, NULL, &s, &err) == HALO_ERR_FORMAT);
    printf("wrong total: %s\n", err.msg);

    /* a missing part is named */
    CHECK(unlink(p3) == 0);
    halo_error_clear(&err);
    CHECK(halo_gguf_open(p1, NULL, &s, &err) != 0 && s == NULL);
    printf("missing part: %s\n", err.msg);
    CHECK(strstr(err.msg, "kdoc-00003-of-00003.gguf") != NULL);
    CHECK(rename(p3b, p3) == 0);

    /* a first part whose name does not follow the pattern */
    char odd[4096];
    snprintf(odd, sizeof odd, "%s/renamed.gguf", dir);
    CHECK(link(p1, odd) == 0);
    halo_error_clear(&err);
    CHECK(halo_gguf_open(odd, NULL, &s, &err) == HALO_ERR_FORMAT);
    printf("renamed first part: %s\n", err.msg);

    /* the split still opens after all that */
    halo_error_clear(&err);
    CHECK_MSG(halo_gguf_open(p1, NULL, &s, &err) == 0, "%s", err.msg);
    halo_gguf_close(s);
    halo_gguf_close(g);
    return halo_test_finish("test_gguf_split");
}
