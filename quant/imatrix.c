/*
 * Importance matrices in llama-imatrix's GGUF layout (quant/imatrix.h): the
 * reader that the quantizer uses and the writer of `halo imatrix`.
 */
#include "quant/imatrix.h"

#include "format/gguf.h"
#include "quant/quant.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUFFIX_SUM2 ".in_sum2"
#define SUFFIX_COUNTS ".counts"
/* GGUF tensor names: at most 63 bytes, as the reference implementation's tools keep them */
#define IMATRIX_MAX_NAME 63

typedef struct im_entry {
    char *name;     /* the weight's name (without the suffix) */
    int64_t n_cols, n_mats;
    float *sum2;    /* [n_mats][n_cols] as in the file */
    float *mean;    /* [n_mats][n_cols] sum2 / count (0 where the count is 0) */
    float *counts;  /* [n_mats] */
} im_entry;

struct halo_imatrix {
    im_entry *e;      /* file order */
    int64_t n;
    const im_entry **sorted; /* e by name */
    int32_t chunks, chunk_size;
};

static int cmp_entry_ptr(const void *a, const void *b) {
    return strcmp((*(const im_entry *const *)a)->name, (*(const im_entry *const *)b)->name);
}

static bool ends_with(const char *s, const char *suffix, size_t *stem) {
    size_t n = strlen(s), m = strlen(suffix);
    if (n <= m || strcmp(s + n - m, suffix)) return false;
    *stem = n - m;
    return true;
}

void halo_imatrix_free(halo_imatrix *im) {
    if (!im) return;
    for (int64_t i = 0; i < im->n; i++) {
        free(im->e[i].name);
        free(im->e[i].sum2);
        free(im->e[i].mean);
        free(im->e[i].counts);
    }
    free(im->e);
    free(im->sorted);
    free(im);
}

static bool finite_nonneg(const float *v, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (!(v[i] >= 0.0f) || !isfinite(v[i])) return false;
    return true;
}

/* Shape [a, b] with any further dimensions 1. */
static bool shape2(const halo_gguf_tensor *t, int64_t *a, int64_t *b) {
    if (t->n_dims < 1 || t->n_dims > 2) return false;
    for (uint32_t d = 2; d < HALO_GGUF_MAX_DIMS; d++)
        if (t->ne[d] != 1) return false;
    *a = t->ne[0];
    *b = t->n_dims == 2 ? t->ne[1] : 1;
    return *a >= 1 && *b >= 1;
}

static int load_entry(halo_imatrix *im, const halo_gguf *g, const halo_gguf_tensor *ts,
                      size_t stem, const char *path, halo_error *err) {
    char cname[IMATRIX_MAX_NAME + 16];
    if (stem > IMATRIX_MAX_NAME) /* the reader would have refused it already */
        return halo_error_set(err, HALO_ERR_FORMAT, "%s: tensor name too long", path);
    memcpy(cname, ts->name, stem);
    strcpy(cname + stem, SUFFIX_COUNTS);
    const halo_gguf_tensor *tc = halo_gguf_find_tensor(g, cname);
    if (!tc) return halo_error_set(err, HALO_ERR_FORMAT, "%s: %s has no %s", path, ts->name, cname);
    int64_t n_cols, n_mats, one, n_mats_c;
    if (ts->type != HALO_TYPE_F32 || tc->type != HALO_TYPE_F32)
        return halo_error_set(err, HALO_ERR_FORMAT, "%s: %s / %s: not F32", path, ts->name, cname);
    if (!shape2(ts, &n_cols, &n_mats) || !shape2(tc, &one, &n_mats_c) || one != 1 ||
        n_mats_c != n_mats)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "%s: %s [%lld, %lld] and %s [%lld, %lld]: shapes do not match", path,
                              ts->name, (long long)ts->ne[0], (long long)ts->ne[1], cname,
                              (long long)tc->ne[0], (long long)tc->ne[1]);
    uint64_t n_el, bytes;
    if (halo_mul_overflow((uint64_t)n_cols, (uint64_t)n_mats, &n_el) ||
        halo_mul_overflow(n_el, sizeof(float), &bytes) || bytes > SIZE_MAX ||
        ts->nbytes != bytes || tc->nbytes != (uint64_t)n_mats * sizeof(float) || !ts->data ||
        !tc->data)
        return halo_error_set(err, HALO_ERR_FORMAT, "%s: %s: inconsistent size", path, ts->name);
    im_entry *e = &im->e[im->n];
    memset(e, 0, sizeof *e);
    e->name = malloc(stem + 1);
    e->sum2 = malloc((size_t)bytes);
    e->mean = malloc((size_t)bytes);
    e->counts = malloc((size_t)n_mats * sizeof(float));
    im->n++; /* freed with the rest from here on */
    if (!e->name || !e->sum2 || !e->mean || !e->counts)
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory reading %s", path);
    memcpy(e->name, ts->name, stem);
    e->name[stem] = 0;
    e->n_cols = n_cols, e->n_mats = n_mats;
    memcpy(e->sum2, ts->data, (size_t)bytes); /* memcpy: the data may be unaligned */
    memcpy(e->counts, tc->data, (size_t)n_mats * sizeof(float));
    if (!finite_nonneg(e->counts, (uint64_t)n_mats) || !finite_nonneg(e->sum2, n_el))
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "%s: %s: negative or non-finite statistics", path, e->name);
    for (int64_t m = 0; m < n_mats; m++) {
        const float c = e->counts[m];
        const float *s = e->sum2 + (size_t)m * (size_t)n_cols;
        float *o = e->mean + (size_t)m * (size_t)n_cols;
        for (int64_t i = 0; i < n_cols; i++) o[i] = c > 0 ? (float)((double)s[i] / c) : 0.0f;
    }
    return 0;
}

int halo_imatrix_load(const char *path, halo_imatrix **out, halo_error *err) {
    *out = NULL;
    halo_gguf *g = NULL;
    int rc = halo_gguf_open(path, NULL, &g, err);
    if (rc) return rc;
    halo_imatrix *im = calloc(1, sizeof *im);
    const int64_t nt = halo_gguf_n_tensors(g);
    if (!im || !(im->e = calloc((size_t)(nt > 0 ? nt : 1), sizeof *im->e))) {
        rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory reading %s", path);
        goto fail;
    }
    const halo_gguf_value *type = halo_gguf_get(g, "general.type");
    if (type && (type->type != HALO_GGUF_STRING || strcmp(type->str.data, "imatrix"))) {
        rc = halo_error_set(err, HALO_ERR_FORMAT, "%s: not an imatrix file (general.type is %s)",
                            path, type->type == HALO_GGUF_STRING ? type->str.data : "not a string");
        goto fail;
    }
    uint32_t u;
    im->chunks = halo_gguf_get_u32(g, "imatrix.chunk_count", &u) && u <= INT32_MAX ? (int32_t)u : 0;
    im->chunk_size = halo_gguf_get_u32(g, "imatrix.chunk_size", &u) && u <= INT32_MAX ? (int32_t)u : 0;
    for (int64_t i = 0; i < nt; i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        size_t stem;
        if (!ends_with(t->name, SUFFIX_SUM2, &stem)) continue;
        if ((rc = load_entry(im, g, t, stem, path, err))) goto fail;
    }
    if (im->n == 0) {
        rc = halo_error_set(err, HALO_ERR_FORMAT, "%s: no imatrix data (no *.in_sum2 tensors)", path);
        goto fail;
    }
    if (!(im->sorted = malloc((size_t)im->n * sizeof *im->sorted))) {
        rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory reading %s", path);
        goto fail;
    }
    for (int64_t i = 0; i < im->n; i++) im->sorted[i] = &im->e[i];
    qsort(im->sorted, (size_t)im->n, sizeof *im->sorted, cmp_entry_ptr);
    halo_gguf_close(g);
    *out = im;
    return 0;
fail:
    halo_imatrix_free(im);
    halo_gguf_close(g);
    return rc;
}

static const im_entry *find(const halo_imatrix *im, const char *name) {
    if (!im || !name) return NULL;
    int64_t lo = 0, hi = im->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const im_entry *e = im->sorted[mid];
        int c = strcmp(e->name, name);
        if (c == 0) return e;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const float *halo_imatrix_get(const halo_imatrix *im, const char *name, int64_t expert,
                              int64_t n_cols) {
    const im_entry *e = find(im, name);
    if (!e || expert < 0 || expert >= e->n_mats || n_cols != e->n_cols) return NULL;
    if (!(e->counts[expert] > 0)) return NULL;
    return e->mean + (size_t)expert * (size_t)e->n_cols;
}

bool halo_imatrix_raw(const halo_imatrix *im, const char *name, int64_t expert,
                      const float **in_sum2, float *count) {
    const im_entry *e = find(im, name);
    if (!e || expert < 0 || expert >= e->n_mats) return false;
    *in_sum2 = e->sum2 + (size_t)expert * (size_t)e->n_cols;
    *count = e->counts[expert];
    return true;
}

int32_t halo_imatrix_chunks(const halo_imatrix *im) { return im ? im->chunks : 0; }
int32_t halo_imatrix_chunk_size(const halo_imatrix *im) { return im ? im->chunk_size : 0; }
int64_t halo_imatrix_n_entries(const halo_imatrix *im) { return im ? im->n : 0; }

const char *halo_imatrix_entry_at(const halo_imatrix *im, int64_t i, int64_t *n_cols,
                                  int64_t *n_mats) {
    if (!im || i < 0 || i >= im->n) return NULL;
    if (n_cols) *n_cols = im->e[i].n_cols;
    if (n_mats) *n_mats = im->e[i].n_mats;
    return im->e[i].name;
}

/* ---- writing ------------------------------------------------------------------ */

static int cmp_entry(const void *a, const void *b) {
    const char *x = (*(const halo_imatrix_entry *const *)a)->name;
    const char *y = (*(const halo_imatrix_entry *const *)b)->name;
    return strcmp(x ? x : "", y ? y : "");
}

int halo_imatrix_write(const char *path, const halo_imatrix_entry *entries, size_t n_entries,
                       const char *const *datasets, size_t n_datasets, uint32_t chunk_count,
                       uint32_t chunk_size, halo_error *err) {
    if (n_entries == 0) return halo_error_set(err, HALO_ERR_ARG, "%s: no statistics to write", path);
    const halo_imatrix_entry **order = malloc(n_entries * sizeof *order);
    if (!order) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory writing %s", path);
    for (size_t i = 0; i < n_entries; i++) order[i] = &entries[i];
    qsort(order, n_entries, sizeof *order, cmp_entry);
    int rc = 0;
    for (size_t k = 0; k < n_entries; k++) {
        const halo_imatrix_entry *e = order[k];
        size_t len = e->name ? strlen(e->name) : 0;
        if (len == 0 || len + strlen(SUFFIX_SUM2) > IMATRIX_MAX_NAME)
            rc = halo_error_set(err, HALO_ERR_ARG, "%s: tensor name '%s' empty or too long", path,
                                e->name ? e->name : "");
        else if (e->n_cols < 1 || e->n_mats < 1 || (e->n_mats > 1 && !e->per_expert) ||
                 !e->in_sum2 || !e->counts)
            rc = halo_error_set(err, HALO_ERR_ARG, "%s: %s: bad shape", path, e->name);
        else if (k > 0 && !strcmp(e->name, order[k - 1]->name))
            rc = halo_error_set(err, HALO_ERR_ARG, "%s: %s given twice", path, e->name);
        if (rc) {
            free(order);
            return rc;
        }
    }
    halo_gguf_writer *w = NULL;
    if ((rc = halo_gguf_writer_open(path, &w, err))) {
        free(order);
        return rc;
    }
    if ((rc = halo_gguf_writer_set_str(w, "general.type", "imatrix", err)) ||
        (rc = halo_gguf_writer_set_str_arr(w, "imatrix.datasets", datasets, n_datasets, err)) ||
        (rc = halo_gguf_writer_set_u32(w, "imatrix.chunk_count", chunk_count, err)) ||
        (rc = halo_gguf_writer_set_u32(w, "imatrix.chunk_size", chunk_size, err)))
        goto fail;
    char name[IMATRIX_MAX_NAME + 16];
    for (size_t k = 0; k < n_entries; k++) {
        const halo_imatrix_entry *e = order[k];
        const uint32_t nd = e->per_expert ? 2 : 1;
        int64_t ne_s[2] = {e->n_cols, e->n_mats}, ne_c[2] = {1, e->n_mats};
        snprintf(name, sizeof name, "%s%s", e->name, SUFFIX_SUM2);
        if ((rc = halo_gguf_writer_add_tensor(w, name, HALO_TYPE_F32, nd, ne_s, err))) goto fail;
        snprintf(name, sizeof name, "%s%s", e->name, SUFFIX_COUNTS);
        if ((rc = halo_gguf_writer_add_tensor(w, name, HALO_TYPE_F32, nd, ne_c, err))) goto fail;
    }
    for (size_t k = 0; k < n_entries; k++) {
        const halo_imatrix_entry *e = order[k];
        size_t n = (size_t)e->n_cols * (size_t)e->n_mats; /* both held in memory: no overflow */
        if ((rc = halo_gguf_writer_write_data(w, e->in_sum2, n * sizeof(float), err)) ||
            (rc = halo_gguf_writer_write_data(w, e->counts, (size_t)e->n_mats * sizeof(float),
                                              err)))
            goto fail;
    }
    free(order);
    if ((rc = halo_gguf_writer_close(w, err))) remove(path);
    return rc;
fail:
    free(order);
    halo_gguf_writer_abort(w);
    return rc;
}
