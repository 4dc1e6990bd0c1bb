/*
 * format/gguf_write.c — the GGUF writer (version 3).
 *
 * Metadata and tensor declarations are kept in memory until the first tensor
 * data arrives; then the header (keys in insertion order, tensor infos with
 * offsets laid out at the alignment) is written and the data streams through a
 * buffered FILE* with zero padding between tensors. The layout is the canonical
 * one of the GGUF ecosystem: every tensor starts at a multiple of the alignment
 * from the data section, and the data of every tensor, the last included, is
 * padded to the alignment. So rewriting a file with the same keys, tensors and
 * alignment reproduces it byte for byte.
 *
 * Values given to the writer are deep-copied (malloc; the writer owns them), so
 * the caller may free its own right after a set call, and keys of an opened file
 * can be copied and then edited before the reader is closed.
 */
#define _GNU_SOURCE
#include "format/gguf.h"

#include "quant/quant.h"
#include "util/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WRITER_MAX_NESTING 8 /* the reader's cap: never write what it would refuse */
#define WRITER_MAX_NAME HALO_GGUF_MAX_NAME
#define WRITE_BUFFER_BYTES (4u << 20)

typedef struct wtensor {
    char *name;
    int type;
    uint32_t n_dims;
    int64_t ne[HALO_GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset; /* in the data section, set when the header is laid out */
} wtensor;

struct halo_gguf_writer {
    char *path;
    FILE *f;
    char *iobuf;
    halo_gguf_kv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    int64_t *hash; /* tensor names: index+1, 0 = empty */
    size_t hash_cap;
    bool header_written;
    bool failed; /* a write failed: every later call fails */
    uint64_t alignment;
    size_t cur;          /* tensor receiving data */
    uint64_t cur_done;   /* bytes of it written */
    uint64_t data_pos;   /* bytes written into the data section */
};

/* ---- values: deep copy and free ------------------------------------------------ */

static void array_free(halo_gguf_array *a);

static void value_free(halo_gguf_value *v) {
    if (v->type == HALO_GGUF_STRING) free(v->str.data);
    if (v->type == HALO_GGUF_ARRAY) array_free(&v->arr);
}

static void array_free(halo_gguf_array *a) {
    if (a->type == HALO_GGUF_STRING) {
        halo_gguf_string *s = a->data;
        for (uint64_t i = 0; s && i < a->n; i++) free(s[i].data);
    } else if (a->type == HALO_GGUF_ARRAY) {
        halo_gguf_array *sub = a->data;
        for (uint64_t i = 0; sub && i < a->n; i++) array_free(&sub[i]);
    }
    free(a->data);
    a->data = NULL;
}

static int string_copy(halo_gguf_string *dst, const halo_gguf_string *src, halo_error *err) {
    if (!src->data && src->len)
        return halo_error_set(err, HALO_ERR_ARG, "a string value of length %llu has no data",
                              (unsigned long long)src->len);
    if (src->len >= SIZE_MAX) return halo_error_set(err, HALO_ERR_RANGE, "string too long");
    dst->data = malloc((size_t)src->len + 1);
    if (!dst->data) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    if (src->len) memcpy(dst->data, src->data, (size_t)src->len);
    dst->data[src->len] = '\0';
    dst->len = src->len;
    return 0;
}

static int array_copy(halo_gguf_array *dst, const halo_gguf_array *src, int depth,
                      halo_error *err) {
    memset(dst, 0, sizeof *dst);
    if ((unsigned)src->type >= HALO_GGUF_TYPE_COUNT)
        return halo_error_set(err, HALO_ERR_ARG, "unknown array element type %d", (int)src->type);
    if (src->type == HALO_GGUF_ARRAY && depth >= WRITER_MAX_NESTING)
        return halo_error_set(err, HALO_ERR_ARG, "arrays nested more than %d levels deep",
                              WRITER_MAX_NESTING);
    if (src->n && !src->data)
        return halo_error_set(err, HALO_ERR_ARG, "an array of %llu values has no data",
                              (unsigned long long)src->n);
    size_t esz = halo_gguf_type_size(src->type);
    size_t isz = esz ? esz
                 : src->type == HALO_GGUF_STRING ? sizeof(halo_gguf_string)
                                                 : sizeof(halo_gguf_array);
    uint64_t bytes;
    if (halo_mul_overflow(src->n, isz, &bytes) || bytes > SIZE_MAX)
        return halo_error_set(err, HALO_ERR_RANGE, "array of %llu values is too large",
                              (unsigned long long)src->n);
    dst->type = src->type;
    if (src->n == 0) return 0;
    if (esz) {
        dst->data = malloc((size_t)bytes);
        if (!dst->data) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        memcpy(dst->data, src->data, (size_t)bytes);
        dst->n = src->n;
        return 0;
    }
    dst->data = calloc((size_t)src->n, isz);
    if (!dst->data) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    dst->n = src->n; /* set first so that array_free frees what was copied so far */
    for (uint64_t i = 0; i < src->n; i++) {
        int rc = src->type == HALO_GGUF_STRING
                     ? string_copy(&((halo_gguf_string *)dst->data)[i],
                                   &((const halo_gguf_string *)src->data)[i], err)
                     : array_copy(&((halo_gguf_array *)dst->data)[i],
                                  &((const halo_gguf_array *)src->data)[i], depth + 1, err);
        if (rc) {
            array_free(dst);
            return rc;
        }
    }
    return 0;
}

static int value_copy(halo_gguf_value *dst, const halo_gguf_value *src, halo_error *err) {
    if ((unsigned)src->type >= HALO_GGUF_TYPE_COUNT)
        return halo_error_set(err, HALO_ERR_ARG, "unknown metadata type %d", (int)src->type);
    *dst = *src;
    if (src->type == HALO_GGUF_STRING) return string_copy(&dst->str, &src->str, err);
    if (src->type == HALO_GGUF_ARRAY) return array_copy(&dst->arr, &src->arr, 1, err);
    if (src->type == HALO_GGUF_BOOL) dst->b = src->b ? true : false;
    return 0;
}

/* ---- low-level output ------------------------------------------------------------ */

static int put(halo_gguf_writer *w, const void *p, size_t n, halo_error *err) {
    if (w->failed) return halo_error_set(err, HALO_ERR_IO, "%s: an earlier write failed", w->path);
    if (n && fwrite(p, 1, n, w->f) != n) {
        w->failed = true;
        return halo_error_set(err, HALO_ERR_IO, "cannot write %s: %s", w->path, strerror(errno));
    }
    return 0;
}

static int put_u32(halo_gguf_writer *w, uint32_t v, halo_error *err) { return put(w, &v, 4, err); }
static int put_u64(halo_gguf_writer *w, uint64_t v, halo_error *err) { return put(w, &v, 8, err); }

static int put_zeros(halo_gguf_writer *w, uint64_t n, halo_error *err) {
    static const uint8_t zeros[4096];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        int rc = put(w, zeros, k, err);
        if (rc) return rc;
        n -= k;
    }
    return 0;
}

static int put_str(halo_gguf_writer *w, const char *s, uint64_t len, halo_error *err) {
    int rc = put_u64(w, len, err);
    return rc ? rc : put(w, s, (size_t)len, err);
}

static int put_array(halo_gguf_writer *w, const halo_gguf_array *a, halo_error *err) {
    int rc;
    if ((rc = put_u32(w, (uint32_t)a->type, err)) || (rc = put_u64(w, a->n, err))) return rc;
    size_t esz = halo_gguf_type_size(a->type);
    if (esz) return put(w, a->data, (size_t)(a->n * esz), err);
    for (uint64_t i = 0; i < a->n; i++) {
        if (a->type == HALO_GGUF_STRING) {
            const halo_gguf_string *s = &((const halo_gguf_string *)a->data)[i];
            rc = put_str(w, s->data, s->len, err);
        } else {
            rc = put_array(w, &((const halo_gguf_array *)a->data)[i], err);
        }
        if (rc) return rc;
    }
    return 0;
}

static int put_value(halo_gguf_writer *w, const halo_gguf_value *v, halo_error *err) {
    int rc = put_u32(w, (uint32_t)v->type, err);
    if (rc) return rc;
    if (v->type == HALO_GGUF_STRING) return put_str(w, v->str.data, v->str.len, err);
    if (v->type == HALO_GGUF_ARRAY) return put_array(w, &v->arr, err);
    if (v->type == HALO_GGUF_BOOL) {
        uint8_t b = v->b ? 1 : 0;
        return put(w, &b, 1, err);
    }
    return put(w, &v->u64, halo_gguf_type_size(v->type), err);
}

/* ---- open / set ------------------------------------------------------------------ */

int halo_gguf_writer_open(const char *path, halo_gguf_writer **out, halo_error *err) {
    *out = NULL;
    if (!path || !*path) return halo_error_set(err, HALO_ERR_ARG, "no output path given");
    halo_gguf_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    }
    w->f = fopen(path, "wb");
    if (!w->f) {
        int rc = halo_error_set(err, HALO_ERR_IO, "cannot create %s: %s", path, strerror(errno));
        free(w->path);
        free(w);
        return rc;
    }
    /* large sequential writes: a big stdio buffer keeps the header's many small
     * fields from turning into syscalls */
    w->iobuf = malloc(WRITE_BUFFER_BYTES);
    if (w->iobuf) setvbuf(w->f, w->iobuf, _IOFBF, WRITE_BUFFER_BYTES);
    *out = w;
    return HALO_OK;
}

static int check_open_for_meta(halo_gguf_writer *w, const char *what, halo_error *err) {
    if (!w) return halo_error_set(err, HALO_ERR_ARG, "no writer");
    if (w->header_written)
        return halo_error_set(err, HALO_ERR_ARG,
                              "%s: %s must come before the first tensor data is written", w->path,
                              what);
    return 0;
}

int halo_gguf_writer_set(halo_gguf_writer *w, const char *key, const halo_gguf_value *v,
                         halo_error *err) {
    int rc = check_open_for_meta(w, "metadata", err);
    if (rc) return rc;
    if (!key || !*key) return halo_error_set(err, HALO_ERR_ARG, "empty metadata key");
    if (!v) return halo_error_set(err, HALO_ERR_ARG, "no value for key '%s'", key);
    halo_gguf_value copy;
    if ((rc = value_copy(&copy, v, err))) return rc;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) { /* replace in place: the order stays */
            value_free(&w->kvs[i].value);
            w->kvs[i].value = copy;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        halo_gguf_kv *n = realloc(w->kvs, cap * sizeof *n);
        if (!n) {
            value_free(&copy);
            return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        }
        w->kvs = n;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        value_free(&copy);
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    }
    w->kvs[w->n_kv].key = k;
    w->kvs[w->n_kv].value = copy;
    w->n_kv++;
    return 0;
}

#define SETTER(fn, ctype, gtype, member)                                                        \
    int fn(halo_gguf_writer *w, const char *key, ctype v, halo_error *err) {                    \
        halo_gguf_value val;                                                                    \
        memset(&val, 0, sizeof val);                                                            \
        val.type = gtype;                                                                       \
        val.member = v;                                                                         \
        return halo_gguf_writer_set(w, key, &val, err);                                         \
    }
SETTER(halo_gguf_writer_set_u32, uint32_t, HALO_GGUF_UINT32, u32)
SETTER(halo_gguf_writer_set_i32, int32_t, HALO_GGUF_INT32, i32)
SETTER(halo_gguf_writer_set_u64, uint64_t, HALO_GGUF_UINT64, u64)
SETTER(halo_gguf_writer_set_f32, float, HALO_GGUF_FLOAT32, f32)
SETTER(halo_gguf_writer_set_bool, bool, HALO_GGUF_BOOL, b)
#undef SETTER

int halo_gguf_writer_set_str(halo_gguf_writer *w, const char *key, const char *v,
                             halo_error *err) {
    if (!v) return halo_error_set(err, HALO_ERR_ARG, "NULL string for key '%s'", key ? key : "");
    halo_gguf_value val = {.type = HALO_GGUF_STRING};
    val.str.len = strlen(v);
    val.str.data = (char *)v; /* copied by set */
    return halo_gguf_writer_set(w, key, &val, err);
}

int halo_gguf_writer_set_arr(halo_gguf_writer *w, const char *key, halo_gguf_type type,
                             const void *data, uint64_t n, halo_error *err) {
    if (!halo_gguf_type_size(type))
        return halo_error_set(err, HALO_ERR_ARG,
                              "set_arr takes numeric or bool elements, not %s (key '%s')",
                              halo_gguf_type_name(type), key ? key : "");
    halo_gguf_value val = {.type = HALO_GGUF_ARRAY};
    val.arr.type = type;
    val.arr.n = n;
    val.arr.data = (void *)data;
    return halo_gguf_writer_set(w, key, &val, err);
}

int halo_gguf_writer_set_str_arr(halo_gguf_writer *w, const char *key, const char *const *strs,
                                 uint64_t n, halo_error *err) {
    if (n && !strs) return halo_error_set(err, HALO_ERR_ARG, "no strings for key '%s'", key);
    if (n > SIZE_MAX / sizeof(halo_gguf_string))
        return halo_error_set(err, HALO_ERR_RANGE, "too many strings");
    halo_gguf_string *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) {
            free(tmp);
            return halo_error_set(err, HALO_ERR_ARG, "string %llu of key '%s' is NULL",
                                  (unsigned long long)i, key ? key : "");
        }
        tmp[i].len = strlen(strs[i]);
        tmp[i].data = (char *)strs[i];
    }
    halo_gguf_value val = {.type = HALO_GGUF_ARRAY};
    val.arr.type = HALO_GGUF_STRING;
    val.arr.n = n;
    val.arr.data = tmp;
    int rc = halo_gguf_writer_set(w, key, &val, err);
    free(tmp);
    return rc;
}

int halo_gguf_writer_copy_kvs(halo_gguf_writer *w, const halo_gguf *g, halo_error *err) {
    for (int64_t i = 0; i < halo_gguf_n_kv(g); i++) {
        const halo_gguf_kv *kv = halo_gguf_kv_at(g, i);
        int rc = halo_gguf_writer_set(w, kv->key, &kv->value, err);
        if (rc) return rc;
    }
    return 0;
}

/* ---- tensors ------------------------------------------------------------------ */

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Index of the tensor named `name`, or -1; with insert_at >= 0, insert it when absent. */
static int64_t name_lookup(halo_gguf_writer *w, const char *name, int64_t insert_at) {
    size_t h = (size_t)hash_name(name) & (w->hash_cap - 1);
    while (w->hash[h]) {
        int64_t j = w->hash[h] - 1;
        if (strcmp(w->tensors[j].name, name) == 0) return j;
        h = (h + 1) & (w->hash_cap - 1);
    }
    if (insert_at >= 0) w->hash[h] = insert_at + 1;
    return -1;
}

static int grow_hash(halo_gguf_writer *w, halo_error *err) {
    if (w->hash_cap >= 2 * (w->n_tensors + 1)) return 0;
    size_t cap = w->hash_cap ? w->hash_cap * 2 : 64;
    int64_t *h = calloc(cap, sizeof *h);
    if (!h) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    free(w->hash);
    w->hash = h;
    w->hash_cap = cap;
    for (size_t i = 0; i < w->n_tensors; i++) name_lookup(w, w->tensors[i].name, (int64_t)i);
    return 0;
}

int halo_gguf_writer_add_tensor(halo_gguf_writer *w, const char *name, int type, uint32_t n_dims,
                                const int64_t *ne, halo_error *err) {
    int rc = check_open_for_meta(w, "add_tensor", err);
    if (rc) return rc;
    if (!name || !*name) return halo_error_set(err, HALO_ERR_ARG, "empty tensor name");
    if (strlen(name) > WRITER_MAX_NAME)
        return halo_error_set(err, HALO_ERR_ARG,
                              "tensor name '%s' is longer than %d bytes, which GGUF readers refuse",
                              name, WRITER_MAX_NAME);
    const halo_type_traits *tt = halo_type_get(type);
    if (!tt) return halo_error_set(err, HALO_ERR_ARG, "tensor '%s': unknown type %d", name, type);
    if (n_dims > HALO_GGUF_MAX_DIMS || (n_dims && !ne))
        return halo_error_set(err, HALO_ERR_ARG, "tensor '%s': %u dimensions (at most %d)", name,
                              n_dims, HALO_GGUF_MAX_DIMS);
    wtensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    uint64_t n = 1;
    bool zero = false;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0)
            return halo_error_set(err, HALO_ERR_ARG, "tensor '%s': dimension %u is negative",
                                  name, d);
        t.ne[d] = ne[d];
        if (ne[d] == 0) zero = true;
        else if (halo_mul_overflow(n, (uint64_t)ne[d], &n) || n > INT64_MAX)
            return halo_error_set(err, HALO_ERR_RANGE, "tensor '%s': too many elements", name);
    }
    if (zero) n = 0;
    if (t.ne[0] % tt->block_size)
        return halo_error_set(err, HALO_ERR_ARG,
                              "tensor '%s': row length %lld is not a multiple of the %s block "
                              "size %lld",
                              name, (long long)t.ne[0], tt->name, (long long)tt->block_size);
    if (halo_mul_overflow(n / (uint64_t)tt->block_size, tt->type_size, &t.nbytes))
        return halo_error_set(err, HALO_ERR_RANGE, "tensor '%s': size overflows", name);
    if ((rc = grow_hash(w, err))) return rc;
    if (name_lookup(w, name, -1) >= 0)
        return halo_error_set(err, HALO_ERR_ARG, "tensor '%s' is declared twice", name);
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *nt = realloc(w->tensors, cap * sizeof *nt);
        if (!nt) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        w->tensors = nt;
        w->cap_tensors = cap;
    }
    if (!(t.name = strdup(name))) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    w->tensors[w->n_tensors] = t;
    name_lookup(w, name, (int64_t)w->n_tensors);
    w->n_tensors++;
    return 0;
}

/* ---- header and data ------------------------------------------------------------ */

static int write_header(halo_gguf_writer *w, halo_error *err) {
    w->header_written = true;
    w->alignment = HALO_GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") != 0) continue;
        const halo_gguf_value *v = &w->kvs[i].value;
        uint64_t a = 0;
        switch (v->type) {
        case HALO_GGUF_UINT8: a = v->u8; break;
        case HALO_GGUF_UINT16: a = v->u16; break;
        case HALO_GGUF_UINT32: a = v->u32; break;
        case HALO_GGUF_UINT64: a = v->u64; break;
        case HALO_GGUF_INT32: a = v->i32 > 0 ? (uint64_t)v->i32 : 0; break;
        default: a = 0;
        }
        if (a == 0 || (a & (a - 1)) || a > (1u << 30)) {
            w->failed = true;
            return halo_error_set(err, HALO_ERR_ARG,
                                  "%s: general.alignment must be an unsigned power of two "
                                  "(1 to 2^30)",
                                  w->path);
        }
        w->alignment = a;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        off = halo_align_up(off, w->alignment);
        w->tensors[i].offset = off;
        if (halo_add_overflow(off, w->tensors[i].nbytes, &off)) {
            w->failed = true;
            return halo_error_set(err, HALO_ERR_RANGE, "%s: the tensor data is too large", w->path);
        }
    }
    int rc;
    if ((rc = put(w, HALO_GGUF_MAGIC, 4, err)) || (rc = put_u32(w, 3, err)) ||
        (rc = put_u64(w, w->n_tensors, err)) || (rc = put_u64(w, w->n_kv, err)))
        return rc;
    for (size_t i = 0; i < w->n_kv; i++) {
        if ((rc = put_str(w, w->kvs[i].key, strlen(w->kvs[i].key), err))) return rc;
        if ((rc = put_value(w, &w->kvs[i].value, err))) return rc;
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if ((rc = put_str(w, t->name, strlen(t->name), err))) return rc;
        if ((rc = put_u32(w, t->n_dims, err))) return rc;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if ((rc = put_u64(w, (uint64_t)t->ne[d], err))) return rc;
        if ((rc = put_u32(w, (uint32_t)t->type, err)) || (rc = put_u64(w, t->offset, err)))
            return rc;
    }
    /* the data section starts aligned; a file without tensors has none, and ends here */
    if (w->n_tensors) {
        long pos = ftell(w->f);
        if (pos < 0) {
            w->failed = true;
            return halo_error_set(err, HALO_ERR_IO, "%s: %s", w->path, strerror(errno));
        }
        if ((rc = put_zeros(w, halo_align_up((uint64_t)pos, w->alignment) - (uint64_t)pos, err)))
            return rc;
    }
    w->cur = 0;
    w->cur_done = 0;
    w->data_pos = 0;
    return 0;
}

/* Move to the next tensor that still wants bytes, writing the padding before it. */
static int advance(halo_gguf_writer *w, halo_error *err) {
    while (w->cur < w->n_tensors && w->cur_done == w->tensors[w->cur].nbytes) {
        w->cur++;
        w->cur_done = 0;
    }
    if (w->cur < w->n_tensors && w->data_pos < w->tensors[w->cur].offset) {
        int rc = put_zeros(w, w->tensors[w->cur].offset - w->data_pos, err);
        if (rc) return rc;
        w->data_pos = w->tensors[w->cur].offset;
    }
    return 0;
}

int halo_gguf_writer_write_data(halo_gguf_writer *w, const void *data, size_t n,
                                halo_error *err) {
    if (!w) return halo_error_set(err, HALO_ERR_ARG, "no writer");
    int rc;
    if (!w->header_written && (rc = write_header(w, err))) return rc;
    const uint8_t *p = data;
    while (n) {
        if ((rc = advance(w, err))) return rc;
        if (w->cur >= w->n_tensors)
            return halo_error_set(err, HALO_ERR_ARG,
                                  "%s: %zu bytes of data beyond the declared tensors", w->path, n);
        wtensor *t = &w->tensors[w->cur];
        uint64_t want = t->nbytes - w->cur_done;
        size_t k = want < n ? (size_t)want : n;
        if ((rc = put(w, p, k, err))) return rc;
        p += k;
        n -= k;
        w->cur_done += k;
        w->data_pos += k;
    }
    return 0;
}

static void writer_free(halo_gguf_writer *w) {
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        value_free(&w->kvs[i].value);
    }
    free(w->kvs);
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->hash);
    free(w->path);
    free(w);
}

int halo_gguf_writer_close(halo_gguf_writer *w, halo_error *err) {
    if (!w) return halo_error_set(err, HALO_ERR_ARG, "no writer");
    int rc = 0;
    if (!w->header_written) rc = write_header(w, err);
    if (!rc) rc = advance(w, err);
    if (!rc && w->cur < w->n_tensors) {
        const wtensor *t = &w->tensors[w->cur];
        rc = halo_error_set(err, HALO_ERR_ARG,
                            "%s: tensor '%s' got %llu of its %llu bytes (%zu more tensor(s) "
                            "declared after it): the file is incomplete",
                            w->path, t->name, (unsigned long long)w->cur_done,
                            (unsigned long long)t->nbytes, w->n_tensors - w->cur - 1);
    }
    if (!rc && w->n_tensors)
        rc = put_zeros(w, halo_align_up(w->data_pos, w->alignment) - w->data_pos, err);
    int closed = fclose(w->f);
    if (!rc && closed != 0)
        rc = halo_error_set(err, HALO_ERR_IO, "cannot write %s: %s", w->path, strerror(errno));
    free(w->iobuf);
    if (rc) remove(w->path); /* never leave a file that looks whole but is not */
    writer_free(w);
    return rc;
}

void halo_gguf_writer_abort(halo_gguf_writer *w) {
    if (!w) return;
    fclose(w->f);
    free(w->iobuf);
    remove(w->path);
    writer_free(w);
}
