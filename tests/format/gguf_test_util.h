/*
 * Helpers shared by the format tests: deep comparison of metadata values and of
 * whole opened files, and copying an opened file through the writer.
 */
#ifndef HALO_GGUF_TEST_UTIL_H
#define HALO_GGUF_TEST_UTIL_H

#include "format/gguf.h"
#include "harness.h"

#include <string.h>

static inline bool gt_array_equal(const halo_gguf_array *a, const halo_gguf_array *b);

static inline bool gt_value_equal(const halo_gguf_value *a, const halo_gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case HALO_GGUF_STRING:
        return a->str.len == b->str.len && memcmp(a->str.data, b->str.data, a->str.len) == 0;
    case HALO_GGUF_ARRAY: return gt_array_equal(&a->arr, &b->arr);
    case HALO_GGUF_BOOL: return a->b == b->b;
    default: return memcmp(&a->u64, &b->u64, halo_gguf_type_size(a->type)) == 0;
    }
}

static inline bool gt_array_equal(const halo_gguf_array *a, const halo_gguf_array *b) {
    if (a->type != b->type || a->n != b->n) return false;
    if (a->n == 0) return true;
    size_t esz = halo_gguf_type_size(a->type);
    if (esz) return memcmp(a->data, b->data, a->n * esz) == 0;
    for (uint64_t i = 0; i < a->n; i++) {
        if (a->type == HALO_GGUF_STRING) {
            const halo_gguf_string *x = &((const halo_gguf_string *)a->data)[i];
            const halo_gguf_string *y = &((const halo_gguf_string *)b->data)[i];
            if (x->len != y->len || memcmp(x->data, y->data, x->len) != 0) return false;
        } else if (!gt_array_equal(&((const halo_gguf_array *)a->data)[i],
                                   &((const halo_gguf_array *)b->data)[i])) {
            return false;
        }
    }
    return true;
}

/* Keys in `skip` (NULL-terminated, may be NULL) are ignored on both sides. */
static inline bool gt_skipped(const char *key, const char *const *skip) {
    for (; skip && *skip; skip++)
        if (strcmp(key, *skip) == 0) return true;
    return false;
}

/* Same metadata (order, types, values) and same tensors (infos and bytes). */
static inline void gt_check_same_model(const halo_gguf *a, const halo_gguf *b,
                                       const char *const *skip_keys, const char *what) {
    int64_t ia = 0, ib = 0;
    for (;;) {
        while (ia < halo_gguf_n_kv(a) && gt_skipped(halo_gguf_kv_at(a, ia)->key, skip_keys)) ia++;
        while (ib < halo_gguf_n_kv(b) && gt_skipped(halo_gguf_kv_at(b, ib)->key, skip_keys)) ib++;
        if (ia >= halo_gguf_n_kv(a) || ib >= halo_gguf_n_kv(b)) break;
        const halo_gguf_kv *x = halo_gguf_kv_at(a, ia++), *y = halo_gguf_kv_at(b, ib++);
        CHECK_MSG(strcmp(x->key, y->key) == 0, "%s: key '%s' vs '%s'", what, x->key, y->key);
        CHECK_MSG(gt_value_equal(&x->value, &y->value), "%s: value of '%s' differs", what, x->key);
    }
    CHECK_MSG(ia == halo_gguf_n_kv(a) && ib == halo_gguf_n_kv(b), "%s: key counts differ", what);
    CHECK_MSG(halo_gguf_n_tensors(a) == halo_gguf_n_tensors(b), "%s: %lld vs %lld tensors", what,
              (long long)halo_gguf_n_tensors(a), (long long)halo_gguf_n_tensors(b));
    if (halo_gguf_n_tensors(a) != halo_gguf_n_tensors(b)) return;
    for (int64_t i = 0; i < halo_gguf_n_tensors(a); i++) {
        const halo_gguf_tensor *x = halo_gguf_tensor_at(a, i), *y = halo_gguf_tensor_at(b, i);
        bool same = strcmp(x->name, y->name) == 0 && x->type == y->type &&
                    x->n_dims == y->n_dims && x->nbytes == y->nbytes &&
                    x->n_elements == y->n_elements && memcmp(x->ne, y->ne, sizeof x->ne) == 0;
        CHECK_MSG(same, "%s: tensor %lld ('%s') info differs", what, (long long)i, x->name);
        if (same && x->nbytes)
            CHECK_MSG(memcmp(x->data, y->data, x->nbytes) == 0, "%s: data of '%s' differs", what,
                      x->name);
    }
}

/* Write tensors [from, to) of g (all keys first) to path; extra keys after. */
static inline int gt_write_copy(const halo_gguf *g, const char *path, int64_t from, int64_t to,
                                bool copy_kvs, halo_error *err) {
    halo_gguf_writer *w;
    int rc = halo_gguf_writer_open(path, &w, err);
    if (rc) return rc;
    if (copy_kvs && (rc = halo_gguf_writer_copy_kvs(w, g, err))) goto fail;
    for (int64_t i = from; i < to; i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        if ((rc = halo_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, err)))
            goto fail;
    }
    for (int64_t i = from; i < to; i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        /* stream in two pieces to exercise partial writes */
        size_t half = (size_t)t->nbytes / 2;
        if ((rc = halo_gguf_writer_write_data(w, t->data, half, err)) ||
            (rc = halo_gguf_writer_write_data(w, (const char *)t->data + half,
                                              (size_t)t->nbytes - half, err)))
            goto fail;
    }
    return halo_gguf_writer_close(w, err);
fail:
    halo_gguf_writer_abort(w);
    return rc;
}

#endif
