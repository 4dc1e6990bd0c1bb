/*
 * format/gguf.c — the GGUF reader (versions 2 and 3, split models, mmap or eager
 * read, mlock).
 *
 * Layout of a GGUF file (all little-endian):
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x   { string key | u32 value type | value }
 *   n_tensors x { string name | u32 n_dims | i64 ne[n_dims] | u32 type | u64 offset }
 *   padding to the alignment (general.alignment, default 32)
 *   data section: each tensor at data_start + offset
 * where string = u64 length + bytes, and an array value = u32 element type +
 * u64 count + elements.
 *
 * Trust nothing: a cursor (struct rd) hands out bytes only after checking that
 * they exist in the file, and every count read from the file is compared with
 * the bytes that remain (each element takes at least a known number of bytes)
 * before anything is allocated. So the memory a file can make us allocate is a
 * small multiple of its own size, and no loop runs longer than the file allows.
 *
 * Everything parsed (keys, strings, arrays, tensor names) lives in one arena
 * owned by the halo_gguf: a 151k-token vocabulary costs one bump allocation per
 * string and no malloc.
 */
#define _GNU_SOURCE
#include "format/gguf.h"

#include "quant/quant.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

/* Arrays of arrays deeper than this are refused: no real file nests more than
 * two levels, and the cap bounds the recursion. */
#define GGUF_MAX_NESTING 8
/* Smallest encodings, used to bound counts by the bytes that remain. */
#define MIN_KV_BYTES 13     /* u64 key length + u32 type + 1-byte value */
#define MIN_TENSOR_BYTES 24 /* u64 name length + u32 n_dims + u32 type + u64 offset */
#define MIN_ARRAY_BYTES 12  /* u32 element type + u64 count */
#define MIN_STRING_BYTES 8  /* u64 length */

/* ---- arena ----------------------------------------------------------------- */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
} arena_chunk;
#define CHUNK_HDR 32 /* keeps the payload 16-byte aligned */
#define ARENA_CHUNK_BYTES (1u << 20)

typedef struct arena {
    arena_chunk *head;
} arena;

static void *arena_alloc(arena *a, size_t size, size_t align) {
    arena_chunk *c = a->head;
    if (c) {
        size_t off = (c->used + align - 1) & ~(align - 1);
        if (off <= c->cap && size <= c->cap - off) {
            c->used = off + size;
            return (char *)c + CHUNK_HDR + off;
        }
    }
    size_t cap = size > ARENA_CHUNK_BYTES ? size : ARENA_CHUNK_BYTES;
    if (cap > SIZE_MAX - CHUNK_HDR) return NULL;
    arena_chunk *n = malloc(CHUNK_HDR + cap);
    if (!n) return NULL;
    n->cap = cap;
    n->used = size;
    if (c && size > ARENA_CHUNK_BYTES / 2) {
        /* a big block gets its own chunk; keep filling the current one */
        n->next = c->next;
        c->next = n;
    } else {
        n->next = c;
        a->head = n;
    }
    return (char *)n + CHUNK_HDR;
}

static void arena_free(arena *a) {
    arena_chunk *c = a->head;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ---- the opened model ---------------------------------------------------------- */

typedef struct gguf_part {
    char *path;            /* NULL for memory images */
    const uint8_t *base;   /* the whole file (mmap) or NULL (read mode) */
    size_t map_size;       /* of the mapping, 0 if none */
    uint8_t *buf;          /* read mode: the data section, page-aligned */
    size_t buf_size;
    const uint8_t *data;   /* start of the data section in memory */
    uint64_t file_size;
    uint64_t data_start;   /* file offset of the data section */
    uint64_t data_extent;  /* bytes from data_start to the end of the last tensor */
    bool locked;
} gguf_part;

/* One file's parse result. */
typedef struct gguf_file {
    uint32_t version;
    uint64_t alignment;
    halo_gguf_kv *kvs;
    uint64_t n_kv;
    int64_t *kv_hash; /* open addressing: index+1, 0 = empty */
    uint64_t kv_hash_cap;
    halo_gguf_tensor *tensors;
    uint64_t n_tensors;
    uint64_t data_start;
    uint64_t data_extent;
} gguf_file;

struct halo_gguf {
    arena arena;
    gguf_file first; /* metadata of the first part */
    halo_gguf_tensor *tensors;
    int64_t n_tensors;
    int64_t *tensor_hash;
    uint64_t tensor_hash_cap;
    gguf_part *parts;
    uint32_t n_parts;
    double seconds;
    halo_load_mode mode;
};

/* ---- messages -------------------------------------------------------------- */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static char *fmt_bytes(uint64_t n, char *buf, size_t size) {
    return halo_format_bytes(n, buf, size);
}

/* ---- the cursor ------------------------------------------------------------ */

typedef struct rd {
    const uint8_t *buf; /* bytes [0, avail) of the file */
    uint64_t avail;
    uint64_t size; /* the whole file */
    uint64_t pos;
    int fd;        /* >= 0: read more on demand (read mode) */
    uint8_t *own;  /* the growing buffer when reading from fd */
    uint64_t cap;
    const char *name; /* file name for messages, "" for memory images */
    halo_error *err;
} rd;

static int fail(rd *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(rd *r, int status, const char *fmt, ...) {
    char msg[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->name && r->name[0]) return halo_error_set(r->err, status, "%s: %s", r->name, msg);
    return halo_error_set(r->err, status, "%s", msg);
}

static uint64_t remaining(const rd *r) { return r->size - r->pos; }

/* Make n bytes at pos available (reading them in read mode), or fail with a
 * message about `what`. */
static int need(rd *r, uint64_t n, const char *what) {
    if (n > remaining(r)) {
        char fs[32];
        return fail(r, HALO_ERR_FORMAT,
                    "%s at offset %llu needs %llu bytes but the file ends at %llu (%s): the file "
                    "is truncated — download it again",
                    what, (unsigned long long)r->pos, (unsigned long long)n,
                    (unsigned long long)r->size, fmt_bytes(r->size, fs, sizeof fs));
    }
    if (r->pos + n <= r->avail) return 0;
    /* read mode: grow the header buffer geometrically and read what is missing */
    uint64_t want = r->pos + n;
    uint64_t cap = r->cap ? r->cap : (1u << 20);
    while (cap < want) cap *= 2;
    if (cap > r->size) cap = r->size;
    uint8_t *nb = realloc(r->own, (size_t)cap);
    if (!nb) return fail(r, HALO_ERR_NOMEM, "out of memory reading the header");
    r->own = nb;
    r->cap = cap;
    r->buf = nb;
    while (r->avail < cap) {
        ssize_t got = pread(r->fd, nb + r->avail, (size_t)(cap - r->avail), (off_t)r->avail);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return fail(r, HALO_ERR_IO, "read failed: %s", strerror(errno));
        if (got == 0)
            return fail(r, HALO_ERR_IO, "the file shrank while being read (now %llu bytes)",
                        (unsigned long long)r->avail);
        r->avail += (uint64_t)got;
    }
    return 0;
}

static int rd_u32(rd *r, uint32_t *v, const char *what) {
    int rc = need(r, 4, what);
    if (rc) return rc;
    memcpy(v, r->buf + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(rd *r, uint64_t *v, const char *what) {
    int rc = need(r, 8, what);
    if (rc) return rc;
    memcpy(v, r->buf + r->pos, 8);
    r->pos += 8;
    return 0;
}

/* A string into the arena, NUL-terminated. */
static int rd_string(rd *r, arena *a, halo_gguf_string *s, const char *what) {
    uint64_t len;
    int rc = rd_u64(r, &len, what);
    if (rc) return rc;
    if (len > remaining(r))
        return fail(r, HALO_ERR_FORMAT,
                    "%s: string length %llu at offset %llu exceeds the %llu bytes left in the "
                    "file: the file is truncated or corrupt",
                    what, (unsigned long long)len, (unsigned long long)(r->pos - 8),
                    (unsigned long long)remaining(r));
    if ((rc = need(r, len, what))) return rc;
    char *d = arena_alloc(a, (size_t)len + 1, 1);
    if (!d) return fail(r, HALO_ERR_NOMEM, "out of memory reading %s", what);
    memcpy(d, r->buf + r->pos, (size_t)len);
    d[len] = '\0';
    r->pos += len;
    s->len = len;
    s->data = d;
    return 0;
}

/* ---- metadata values ------------------------------------------------------------ */

size_t halo_gguf_type_size(halo_gguf_type t) {
    switch (t) {
    case HALO_GGUF_UINT8: case HALO_GGUF_INT8: case HALO_GGUF_BOOL: return 1;
    case HALO_GGUF_UINT16: case HALO_GGUF_INT16: return 2;
    case HALO_GGUF_UINT32: case HALO_GGUF_INT32: case HALO_GGUF_FLOAT32: return 4;
    case HALO_GGUF_UINT64: case HALO_GGUF_INT64: case HALO_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *halo_gguf_type_name(halo_gguf_type t) {
    static const char *const names[HALO_GGUF_TYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64",
        "f64"};
    if ((unsigned)t >= HALO_GGUF_TYPE_COUNT) return "unknown";
    return names[t];
}

static int rd_array(rd *r, arena *a, halo_gguf_array *arr, int depth, const char *what);

/* A scalar or string value of type t (t already validated). */
static int rd_scalar(rd *r, arena *a, halo_gguf_type t, halo_gguf_value *v, const char *what) {
    v->type = t;
    if (t == HALO_GGUF_STRING) return rd_string(r, a, &v->str, what);
    size_t sz = halo_gguf_type_size(t);
    int rc = need(r, sz, what);
    if (rc) return rc;
    const uint8_t *p = r->buf + r->pos;
    if (t == HALO_GGUF_BOOL) {
        if (p[0] > 1)
            return fail(r, HALO_ERR_FORMAT, "%s: bool value %u at offset %llu is not 0 or 1", what,
                        p[0], (unsigned long long)r->pos);
        v->b = p[0] != 0;
    } else {
        memcpy(&v->u64, p, sz); /* the union's members share their first bytes */
    }
    r->pos += sz;
    return 0;
}

static int check_type(rd *r, uint32_t t, const char *what) {
    if (t >= HALO_GGUF_TYPE_COUNT)
        return fail(r, HALO_ERR_FORMAT,
                    "%s: unknown metadata value type %u at offset %llu (known types are 0-12): the "
                    "file is corrupt or from a newer GGUF version",
                    what, t, (unsigned long long)(r->pos - 4));
    return 0;
}

static int rd_array(rd *r, arena *a, halo_gguf_array *arr, int depth, const char *what) {
    uint32_t et;
    uint64_t n;
    int rc;
    if ((rc = rd_u32(r, &et, what))) return rc;
    if ((rc = check_type(r, et, what))) return rc;
    if (et == HALO_GGUF_ARRAY && depth >= GGUF_MAX_NESTING)
        return fail(r, HALO_ERR_FORMAT,
                    "%s: arrays nested more than %d levels deep at offset %llu: the file is "
                    "corrupt or hostile",
                    what, GGUF_MAX_NESTING, (unsigned long long)(r->pos - 4));
    if ((rc = rd_u64(r, &n, what))) return rc;
    size_t esz = halo_gguf_type_size((halo_gguf_type)et);
    uint64_t min = esz ? esz : et == HALO_GGUF_STRING ? MIN_STRING_BYTES : MIN_ARRAY_BYTES;
    if (n > remaining(r) / min)
        return fail(r, HALO_ERR_FORMAT,
                    "%s: array of %llu %s values at offset %llu cannot fit in the %llu bytes left "
                    "in the file: the file is truncated or corrupt",
                    what, (unsigned long long)n, halo_gguf_type_name((halo_gguf_type)et),
                    (unsigned long long)(r->pos - 8), (unsigned long long)remaining(r));
    arr->type = (halo_gguf_type)et;
    arr->n = n;
    arr->data = NULL;
    if (n == 0) return 0;
    if (esz) {
        uint64_t bytes = n * esz; /* n <= remaining / esz: no overflow */
        if ((rc = need(r, bytes, what))) return rc;
        uint8_t *d = arena_alloc(a, (size_t)bytes, 8);
        if (!d) return fail(r, HALO_ERR_NOMEM, "out of memory reading %s", what);
        memcpy(d, r->buf + r->pos, (size_t)bytes);
        if (et == HALO_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (d[i] > 1)
                    return fail(r, HALO_ERR_FORMAT,
                                "%s: bool element %llu has value %u, not 0 or 1", what,
                                (unsigned long long)i, d[i]);
        }
        r->pos += bytes;
        arr->data = d;
        return 0;
    }
    if (et == HALO_GGUF_STRING) {
        halo_gguf_string *s = arena_alloc(a, (size_t)n * sizeof *s, 8);
        if (!s) return fail(r, HALO_ERR_NOMEM, "out of memory reading %s", what);
        for (uint64_t i = 0; i < n; i++)
            if ((rc = rd_string(r, a, &s[i], what))) return rc;
        arr->data = s;
        return 0;
    }
    halo_gguf_array *sub = arena_alloc(a, (size_t)n * sizeof *sub, 8);
    if (!sub) return fail(r, HALO_ERR_NOMEM, "out of memory reading %s", what);
    for (uint64_t i = 0; i < n; i++)
        if ((rc = rd_array(r, a, &sub[i], depth + 1, what))) return rc;
    arr->data = sub;
    return 0;
}

/* ---- name tables ----------------------------------------------------------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static uint64_t hash_cap_for(uint64_t n) {
    uint64_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

typedef const char *(*name_of_fn)(const void *items, int64_t i);

static const char *kv_name(const void *items, int64_t i) {
    return ((const halo_gguf_kv *)items)[i].key;
}
static const char *tensor_name(const void *items, int64_t i) {
    return ((const halo_gguf_tensor *)items)[i].name;
}

/* Insert item i; returns the index of an existing item with the same name, or -1. */
static int64_t hash_insert(int64_t *table, uint64_t cap, const void *items, name_of_fn name_of,
                           int64_t i) {
    const char *name = name_of(items, i);
    uint64_t h = hash_str(name) & (cap - 1);
    while (table[h]) {
        int64_t j = table[h] - 1;
        if (strcmp(name_of(items, j), name) == 0) return j;
        h = (h + 1) & (cap - 1);
    }
    table[h] = i + 1;
    return -1;
}

static int64_t hash_find(const int64_t *table, uint64_t cap, const void *items, name_of_fn name_of,
                         const char *name) {
    if (!table || !name) return -1;
    uint64_t h = hash_str(name) & (cap - 1);
    while (table[h]) {
        int64_t j = table[h] - 1;
        if (strcmp(name_of(items, j), name) == 0) return j;
        h = (h + 1) & (cap - 1);
    }
    return -1;
}

/* ---- value conversions ------------------------------------------------------------ */

/* Integer value as a signed 128-bit-free pair: *neg set when negative. */
static bool value_int(halo_gguf_type t, const void *p, int64_t *si, uint64_t *ui, bool *neg) {
    int64_t s = 0;
    uint64_t u = 0;
    bool is_signed = false;
    switch (t) {
    case HALO_GGUF_UINT8: u = *(const uint8_t *)p; break;
    case HALO_GGUF_UINT16: u = *(const uint16_t *)p; break;
    case HALO_GGUF_UINT32: u = *(const uint32_t *)p; break;
    case HALO_GGUF_UINT64: u = *(const uint64_t *)p; break;
    case HALO_GGUF_INT8: s = *(const int8_t *)p; is_signed = true; break;
    case HALO_GGUF_INT16: s = *(const int16_t *)p; is_signed = true; break;
    case HALO_GGUF_INT32: s = *(const int32_t *)p; is_signed = true; break;
    case HALO_GGUF_INT64: s = *(const int64_t *)p; is_signed = true; break;
    default: return false;
    }
    if (is_signed) {
        *neg = s < 0;
        *si = s;
        *ui = s < 0 ? 0 : (uint64_t)s;
    } else {
        *neg = false;
        *ui = u;
        *si = u > INT64_MAX ? INT64_MAX : (int64_t)u;
    }
    return true;
}

static bool value_f64(halo_gguf_type t, const void *p, double *out) {
    int64_t s;
    uint64_t u;
    bool neg;
    if (t == HALO_GGUF_FLOAT32) {
        *out = *(const float *)p;
        return true;
    }
    if (t == HALO_GGUF_FLOAT64) {
        *out = *(const double *)p;
        return true;
    }
    if (t == HALO_GGUF_BOOL) {
        *out = *(const bool *)p ? 1.0 : 0.0;
        return true;
    }
    if (!value_int(t, p, &s, &u, &neg)) return false;
    *out = neg ? (double)s : (double)u;
    return true;
}

static bool scalar_u64(const halo_gguf_value *v, uint64_t *out) {
    int64_t s;
    uint64_t u;
    bool neg;
    if (!v || !value_int(v->type, &v->u64, &s, &u, &neg) || neg) return false;
    *out = u;
    return true;
}

/* ---- parsing one file ---------------------------------------------------------------- */

static int check_magic(rd *r) {
    int rc = need(r, 4, "the GGUF magic");
    if (rc) {
        halo_error_clear(r->err);
        return fail(r, HALO_ERR_FORMAT,
                    "not a GGUF file: it is only %llu bytes long (a GGUF file starts with the "
                    "4-byte magic \"GGUF\")",
                    (unsigned long long)r->size);
    }
    const uint8_t *m = r->buf;
    if (memcmp(m, "GGUF", 4) == 0) return 0;
    const char *hint = "";
    static const char *const old[] = {"ggml", "ggmf", "ggjt", "ggla", "lmgg", "fmgg", "tjgg",
                                      "algg"};
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++)
        if (memcmp(m, old[i], 4) == 0)
            hint = ": this is a pre-GGUF GGML/GGJT model, which halo does not read — download or "
                   "convert a GGUF version of the model";
    if (memcmp(m, "FUGG", 4) == 0)
        hint = ": the magic is byte-swapped, so this is a big-endian GGUF file — halo reads "
               "little-endian files only";
    if (!hint[0] && r->size >= 9) {
        int rc2 = need(r, 9, "the header");
        if (rc2 == 0 && r->buf[8] == '{')
            hint = ": it looks like a safetensors file — convert it to GGUF first";
        halo_error_clear(r->err);
    }
    char shown[5];
    for (int i = 0; i < 4; i++) shown[i] = (m[i] >= 32 && m[i] < 127) ? (char)m[i] : '.';
    shown[4] = '\0';
    return fail(r, HALO_ERR_FORMAT,
                "not a GGUF file: it starts with %02x %02x %02x %02x (\"%s\"), not \"GGUF\"%s",
                m[0], m[1], m[2], m[3], shown, hint);
}

static uint32_t bswap32(uint32_t v) { return __builtin_bswap32(v); }

static int parse_file(rd *r, arena *a, gguf_file *f) {
    int rc;
    char what[160];
    memset(f, 0, sizeof *f);
    if ((rc = check_magic(r))) return rc;
    r->pos = 4;
    uint32_t version;
    if ((rc = rd_u32(r, &version, "the GGUF version"))) return rc;
    if (version == 1)
        return fail(r, HALO_ERR_FORMAT,
                    "GGUF version 1 (from 2023) is obsolete and not supported: download a "
                    "current version of the model or convert it again");
    if (version != 2 && version != 3) {
        uint32_t sw = bswap32(version);
        if (sw >= 1 && sw <= 3)
            return fail(r, HALO_ERR_FORMAT,
                        "this is a big-endian GGUF file (version %u, byte-swapped): halo reads "
                        "little-endian files only — download or convert a little-endian version",
                        sw);
        return fail(r, HALO_ERR_FORMAT,
                    "GGUF version %u is not supported (halo reads versions 2 and 3): the file is "
                    "corrupt or from a newer tool",
                    version);
    }
    f->version = version;
    uint64_t n_tensors, n_kv;
    if ((rc = rd_u64(r, &n_tensors, "the tensor count"))) return rc;
    if ((rc = rd_u64(r, &n_kv, "the metadata count"))) return rc;
    if (n_tensors > remaining(r) / MIN_TENSOR_BYTES)
        return fail(r, HALO_ERR_FORMAT,
                    "the header declares %llu tensors, which cannot fit in the %llu bytes of the "
                    "file: the file is corrupt or hostile",
                    (unsigned long long)n_tensors, (unsigned long long)r->size);
    if (n_kv > remaining(r) / MIN_KV_BYTES)
        return fail(r, HALO_ERR_FORMAT,
                    "the header declares %llu metadata keys, which cannot fit in the %llu bytes "
                    "of the file: the file is corrupt or hostile",
                    (unsigned long long)n_kv, (unsigned long long)r->size);

    /* metadata */
    f->n_kv = n_kv;
    f->kvs = arena_alloc(a, (size_t)(n_kv ? n_kv : 1) * sizeof *f->kvs, 8);
    f->kv_hash_cap = hash_cap_for(n_kv);
    f->kv_hash = arena_alloc(a, (size_t)f->kv_hash_cap * sizeof *f->kv_hash, 8);
    if (!f->kvs || !f->kv_hash) return fail(r, HALO_ERR_NOMEM, "out of memory for the metadata");
    memset(f->kv_hash, 0, (size_t)f->kv_hash_cap * sizeof *f->kv_hash);
    /* zeroed so that a narrow scalar leaves no stale bytes in the value union */
    memset(f->kvs, 0, (size_t)(n_kv ? n_kv : 1) * sizeof *f->kvs);
    for (uint64_t i = 0; i < n_kv; i++) {
        halo_gguf_kv *kv = &f->kvs[i];
        halo_gguf_string key;
        snprintf(what, sizeof what, "metadata key #%llu", (unsigned long long)i);
        if ((rc = rd_string(r, a, &key, what))) return rc;
        if (strlen(key.data) != key.len)
            return fail(r, HALO_ERR_FORMAT, "%s contains a NUL byte: the file is corrupt", what);
        kv->key = key.data;
        snprintf(what, sizeof what, "metadata key '%.100s'", key.data);
        uint32_t t;
        if ((rc = rd_u32(r, &t, what))) return rc;
        if ((rc = check_type(r, t, what))) return rc;
        if (t == HALO_GGUF_ARRAY) {
            kv->value.type = HALO_GGUF_ARRAY;
            if ((rc = rd_array(r, a, &kv->value.arr, 1, what))) return rc;
        } else if ((rc = rd_scalar(r, a, (halo_gguf_type)t, &kv->value, what))) {
            return rc;
        }
        if (hash_insert(f->kv_hash, f->kv_hash_cap, f->kvs, kv_name, (int64_t)i) >= 0)
            return fail(r, HALO_ERR_FORMAT, "metadata key '%.100s' appears twice: the file is corrupt",
                        kv->key);
    }

    /* alignment */
    f->alignment = HALO_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = hash_find(f->kv_hash, f->kv_hash_cap, f->kvs, kv_name, "general.alignment");
    if (ai >= 0) {
        const halo_gguf_value *v = &f->kvs[ai].value;
        uint64_t al;
        if (!scalar_u64(v, &al))
            return fail(r, HALO_ERR_FORMAT,
                        "general.alignment has type %s; it must be an unsigned integer",
                        halo_gguf_type_name(v->type));
        if (al == 0 || (al & (al - 1)) || al > (1u << 30))
            return fail(r, HALO_ERR_FORMAT,
                        "general.alignment is %llu; it must be a power of two (1 to 2^30): the "
                        "file is corrupt",
                        (unsigned long long)al);
        f->alignment = al;
    }

    /* tensor infos */
    f->n_tensors = n_tensors;
    f->tensors = arena_alloc(a, (size_t)(n_tensors ? n_tensors : 1) * sizeof *f->tensors, 8);
    if (!f->tensors) return fail(r, HALO_ERR_NOMEM, "out of memory for the tensor table");
    memset(f->tensors, 0, (size_t)(n_tensors ? n_tensors : 1) * sizeof *f->tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        halo_gguf_tensor *t = &f->tensors[i];
        halo_gguf_string name;
        snprintf(what, sizeof what, "tensor #%llu", (unsigned long long)i);
        if ((rc = rd_string(r, a, &name, what))) return rc;
        if (strlen(name.data) != name.len)
            return fail(r, HALO_ERR_FORMAT, "the name of %s contains a NUL byte: the file is corrupt",
                        what);
        if (name.len > HALO_GGUF_MAX_NAME)
            return fail(r, HALO_ERR_FORMAT,
                        "the name of %s is %llu bytes long ('%.40s...'); GGUF tensor names have "
                        "at most %d",
                        what, (unsigned long long)name.len, name.data, HALO_GGUF_MAX_NAME);
        t->name = name.data;
        snprintf(what, sizeof what, "tensor '%.100s'", name.data);
        uint32_t n_dims;
        if ((rc = rd_u32(r, &n_dims, what))) return rc;
        if (n_dims > HALO_GGUF_MAX_DIMS)
            return fail(r, HALO_ERR_FORMAT, "%s has %u dimensions; GGUF tensors have at most %d",
                        what, n_dims, HALO_GGUF_MAX_DIMS);
        t->n_dims = n_dims;
        for (int d = 0; d < HALO_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t u;
            if ((rc = rd_u64(r, &u, what))) return rc;
            int64_t ne = (int64_t)u;
            if (ne < 0)
                return fail(r, HALO_ERR_FORMAT,
                            "%s: dimension %u is negative (%lld): the file is corrupt", what, d,
                            (long long)ne);
            t->ne[d] = ne;
        }
        uint32_t type;
        if ((rc = rd_u32(r, &type, what))) return rc;
        const halo_type_traits *tt = halo_type_get((int)type);
        if (!tt)
            return fail(r, HALO_ERR_FORMAT,
                        "%s has unknown tensor type id %u: the file is corrupt or uses a type "
                        "newer than halo",
                        what, type);
        t->type = (int)type;
        if ((rc = rd_u64(r, &t->offset, what))) return rc;
        /* element count: the product of the non-zero dims must fit, even when
         * another dim is 0, so that absurd shapes are refused outright */
        int64_t n = 1;
        bool zero = false;
        for (int d = 0; d < HALO_GGUF_MAX_DIMS; d++) {
            if (t->ne[d] == 0) {
                zero = true;
                continue;
            }
            if (__builtin_mul_overflow(n, t->ne[d], &n))
                return fail(r, HALO_ERR_FORMAT,
                            "%s: shape [%lld, %lld, %lld, %lld] has too many elements to count "
                            "(overflow): the file is corrupt",
                            what, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                            (long long)t->ne[3]);
        }
        if (zero) n = 0;
        if (t->ne[0] % tt->block_size)
            return fail(r, HALO_ERR_FORMAT,
                        "%s: row length %lld is not a multiple of the %s block size %lld: the "
                        "file is corrupt",
                        what, (long long)t->ne[0], tt->name, (long long)tt->block_size);
        t->n_elements = n;
        if (halo_mul_overflow((uint64_t)n / (uint64_t)tt->block_size, tt->type_size, &t->nbytes))
            return fail(r, HALO_ERR_FORMAT, "%s: its size in bytes overflows: the file is corrupt",
                        what);
        if (t->offset % f->alignment)
            return fail(r, HALO_ERR_FORMAT,
                        "%s: data offset %llu is not a multiple of the alignment %llu: the file is "
                        "corrupt",
                        what, (unsigned long long)t->offset, (unsigned long long)f->alignment);
    }
    /* data section: aligned start; a file with no tensor may end before the padding */
    f->data_start = halo_align_up(r->pos, f->alignment);
    uint64_t avail = r->size > f->data_start ? r->size - f->data_start : 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        const halo_gguf_tensor *t = &f->tensors[i];
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            char sz[32], fs[32];
            return fail(r, HALO_ERR_FORMAT,
                        "tensor '%.100s' (offset %llu, %s) extends past the end of the file (file "
                        "is %s): the file is truncated — download it again",
                        t->name, (unsigned long long)t->offset, fmt_bytes(t->nbytes, sz, sizeof sz),
                        fmt_bytes(r->size, fs, sizeof fs));
        }
        if (t->offset + t->nbytes > f->data_extent) f->data_extent = t->offset + t->nbytes;
    }
    return 0;
}

/* Overlap check over a joined table: sort by offset within each split. */
/* qsort has no context argument in C11: the table being sorted is passed in a
 * thread-local, so concurrent opens on different threads stay independent. */
static __thread const halo_gguf_tensor *sort_base;
static int cmp_tensor_pos(const void *pa, const void *pb) {
    const halo_gguf_tensor *a = &sort_base[*(const int64_t *)pa];
    const halo_gguf_tensor *b = &sort_base[*(const int64_t *)pb];
    if (a->split != b->split) return a->split < b->split ? -1 : 1;
    if (a->offset != b->offset) return a->offset < b->offset ? -1 : 1;
    return a->nbytes < b->nbytes ? -1 : a->nbytes > b->nbytes;
}

/* Index the tensors by name (refusing duplicates) and refuse overlaps. */
static int index_tensors(halo_gguf *g, rd *r) {
    int64_t n = g->n_tensors;
    g->tensor_hash_cap = hash_cap_for((uint64_t)n);
    g->tensor_hash = arena_alloc(&g->arena, (size_t)g->tensor_hash_cap * sizeof(int64_t), 8);
    if (!g->tensor_hash) return fail(r, HALO_ERR_NOMEM, "out of memory indexing the tensors");
    memset(g->tensor_hash, 0, (size_t)g->tensor_hash_cap * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) {
        if (hash_insert(g->tensor_hash, g->tensor_hash_cap, g->tensors, tensor_name, i) >= 0)
            return fail(r, HALO_ERR_FORMAT, "tensor '%.100s' appears twice: the file is corrupt",
                        g->tensors[i].name);
    }
    if (n < 2) return 0;
    int64_t *order = malloc((size_t)n * sizeof *order);
    if (!order) return fail(r, HALO_ERR_NOMEM, "out of memory checking the tensors");
    for (int64_t i = 0; i < n; i++) order[i] = i;
    sort_base = g->tensors;
    qsort(order, (size_t)n, sizeof *order, cmp_tensor_pos);
    int rc = 0;
    const halo_gguf_tensor *prev = NULL;
    uint64_t prev_end = 0;
    for (int64_t k = 0; k < n; k++) {
        const halo_gguf_tensor *t = &g->tensors[order[k]];
        if (t->nbytes == 0) continue;
        if (prev && prev->split == t->split && t->offset < prev_end) {
            rc = fail(r, HALO_ERR_FORMAT,
                      "tensors '%.100s' (offset %llu, %llu bytes) and '%.100s' (offset %llu) "
                      "overlap: the file is corrupt",
                      prev->name, (unsigned long long)prev->offset,
                      (unsigned long long)prev->nbytes, t->name, (unsigned long long)t->offset);
            break;
        }
        if (!prev || prev->split != t->split || t->offset + t->nbytes > prev_end) {
            prev = t;
            prev_end = t->offset + t->nbytes;
        }
    }
    free(order);
    return rc;
}

/* ---- opening files ------------------------------------------------------------ */

static void mlock_part(gguf_part *p) {
    if (!p->data_extent) {
        p->locked = true;
        return;
    }
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)p->data & ~(uintptr_t)(page - 1);
    size_t len = (size_t)((uintptr_t)p->data + p->data_extent - start);
    if (mlock((void *)start, len) == 0) {
        p->locked = true;
        return;
    }
    int e = errno;
    struct rlimit rl;
    char want[32], lim[32];
    fmt_bytes(len, want, sizeof want);
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        fmt_bytes((uint64_t)rl.rlim_cur, lim, sizeof lim);
    else
        snprintf(lim, sizeof lim, "unlimited");
    halo_log(HALO_LOG_WARN,
             "warning: could not lock %s of model data in RAM (%s); the memory-lock limit "
             "(RLIMIT_MEMLOCK, ulimit -l) is %s — raise it with 'ulimit -l unlimited' or "
             "LimitMEMLOCK= in systemd; continuing without --mlock",
             want, strerror(e), lim);
}

/* Read the data section of a part into a page-aligned buffer. */
static int read_data(gguf_part *p, int fd, const halo_load_options *opts, rd *r) {
    if (!p->data_extent) {
        p->data = NULL;
        return 0;
    }
    if (p->data_extent > SIZE_MAX / 2)
        return fail(r, HALO_ERR_NOMEM, "the data section is too large for this machine");
    long page = sysconf(_SC_PAGESIZE);
    size_t size = (size_t)halo_align_up(p->data_extent, (uint64_t)page);
    void *buf = NULL;
    if (posix_memalign(&buf, (size_t)page, size) != 0 || !buf) {
        char sz[32];
        return fail(r, HALO_ERR_NOMEM, "out of memory: cannot allocate %s for the model data",
                    fmt_bytes(size, sz, sizeof sz));
    }
    p->buf = buf;
    p->buf_size = size;
    p->data = buf;
    /* big sequential reads; with progress, small enough for a line every ~10% */
    bool progress = opts && opts->progress && p->data_extent >= (32ull << 20);
    uint64_t chunk = 64ull << 20;
    if (progress && chunk > p->data_extent / 20) chunk = p->data_extent / 20;
    int last_decile = 0;
    uint64_t done = 0;
    while (done < p->data_extent) {
        uint64_t want = p->data_extent - done;
        if (want > chunk) want = chunk;
        ssize_t got = pread(fd, p->buf + done, (size_t)want, (off_t)(p->data_start + done));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return fail(r, HALO_ERR_IO, "read failed: %s", strerror(errno));
        if (got == 0)
            return fail(r, HALO_ERR_IO, "the file ended early while reading the tensor data");
        done += (uint64_t)got;
        if (progress) {
            int decile = (int)(done * 10 / p->data_extent);
            if (decile > last_decile) {
                last_decile = decile;
                char a[32], b[32];
                halo_log(HALO_LOG_INFO, "loading %s: %d%% (%s of %s)", r->name, decile * 10,
                         fmt_bytes(done, a, sizeof a), fmt_bytes(p->data_extent, b, sizeof b));
            }
        }
    }
    return 0;
}

/* Open, parse and load one file as part `idx` of g. */
static int open_part(halo_gguf *g, uint32_t idx, const char *path, const halo_load_options *opts,
                     gguf_file *f, halo_error *err) {
    gguf_part *p = &g->parts[idx];
    p->path = strdup(path);
    if (!p->path) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    rd r = {.fd = -1, .name = base_name(path), .err = err};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return halo_error_set(err, HALO_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    int rc = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = halo_error_set(err, HALO_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = halo_error_set(err, HALO_ERR_IO, "%s is not a regular file", path);
        goto done;
    }
    p->file_size = r.size = (uint64_t)st.st_size;
    if (r.size == 0) {
        rc = fail(&r, HALO_ERR_FORMAT, "the file is empty (0 bytes): download it again");
        goto done;
    }
    bool use_mmap = !opts || opts->mode == HALO_LOAD_MMAP;
    if (use_mmap) {
        void *m = mmap(NULL, (size_t)r.size, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            rc = halo_error_set(err, HALO_ERR_IO, "cannot map %s: %s (try --no-mmap)", path,
                                strerror(errno));
            goto done;
        }
        p->base = m;
        p->map_size = (size_t)r.size;
        r.buf = m;
        r.avail = r.size;
    } else {
        r.fd = fd;
    }
    if ((rc = parse_file(&r, &g->arena, f))) goto done;
    p->data_start = f->data_start;
    p->data_extent = f->data_extent;
    if (use_mmap) {
        p->data = p->base + (f->data_start < r.size ? f->data_start : r.size);
    } else {
        free(r.own); /* the header buffer: everything needed is in the arena */
        r.own = NULL;
        if ((rc = read_data(p, fd, opts, &r))) goto done;
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        f->tensors[i].split = idx;
        f->tensors[i].data = p->data ? p->data + f->tensors[i].offset : NULL;
    }
    if (opts && opts->mlock) mlock_part(p);
done:
    free(r.own);
    close(fd);
    return rc;
}

/* "DIR/NAME-00001-of-00003.gguf" -> prefix "DIR/NAME"; false if the name does not
 * follow the split naming. */
static bool split_prefix(const char *path, char *prefix, size_t size) {
    size_t n = strlen(path);
    const char *suffix = ".gguf";
    if (n < 5 || strcmp(path + n - 5, suffix) != 0) return false;
    const char *of = NULL;
    for (const char *s = strstr(path, "-of-"); s; s = strstr(s + 1, "-of-")) of = s;
    if (!of) return false;
    const char *dash = of;
    while (dash > path && dash[-1] >= '0' && dash[-1] <= '9') dash--;
    if (dash == of || dash == path || dash[-1] != '-') return false;
    size_t len = (size_t)(dash - 1 - path);
    if (len + 1 > size) return false;
    memcpy(prefix, path, len);
    prefix[len] = '\0';
    return true;
}

static const halo_gguf_value *file_get(const gguf_file *f, const char *key) {
    int64_t i = hash_find(f->kv_hash, f->kv_hash_cap, f->kvs, kv_name, key);
    return i >= 0 ? &f->kvs[i].value : NULL;
}

static int open_splits(halo_gguf *g, const char *path, const halo_load_options *opts,
                       halo_error *err) {
    gguf_file first;
    g->n_parts = 1;
    g->parts = calloc(1, sizeof *g->parts);
    if (!g->parts) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    int rc = open_part(g, 0, path, opts, &first, err);
    if (rc) return rc;
    g->first = first;
    const char *name = base_name(path);
    rd r = {.name = name, .err = err};

    uint64_t count = 1, no = 0;
    const halo_gguf_value *vc = file_get(&first, "split.count");
    const halo_gguf_value *vn = file_get(&first, "split.no");
    if (vc && !scalar_u64(vc, &count))
        return fail(&r, HALO_ERR_FORMAT, "split.count has type %s; it must be an unsigned integer",
                    halo_gguf_type_name(vc->type));
    if (vn && !scalar_u64(vn, &no))
        return fail(&r, HALO_ERR_FORMAT, "split.no has type %s; it must be an unsigned integer",
                    halo_gguf_type_name(vn->type));
    if (count == 0 || count > 65535 || no >= count)
        return fail(&r, HALO_ERR_FORMAT,
                    "split.no %llu and split.count %llu are inconsistent (split.no counts from 0 "
                    "and must be below split.count, at most 65535): the file is corrupt",
                    (unsigned long long)no, (unsigned long long)count);
    char prefix[4096];
    bool named = split_prefix(path, prefix, sizeof prefix);
    if (no != 0) {
        if (named)
            return fail(&r, HALO_ERR_FORMAT,
                        "this is part %llu of a %llu-part split model: open the first part, "
                        "%s-%05d-of-%05llu.gguf, instead",
                        (unsigned long long)no + 1, (unsigned long long)count,
                        base_name(prefix), 1, (unsigned long long)count);
        return fail(&r, HALO_ERR_FORMAT,
                    "this is part %llu of a %llu-part split model: open the first part (the "
                    "file whose split.no is 0) instead",
                    (unsigned long long)no + 1, (unsigned long long)count);
    }

    gguf_file *files = calloc((size_t)count, sizeof *files);
    if (!files) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    files[0] = first;
    if (count > 1) {
        if (!named) {
            free(files);
            return fail(&r, HALO_ERR_FORMAT,
                        "this is the first part of a %llu-part split model, but its name does "
                        "not follow NAME-00001-of-%05llu.gguf, so the other parts cannot be "
                        "found: rename the parts as the split tool named them",
                        (unsigned long long)count, (unsigned long long)count);
        }
        gguf_part *np = realloc(g->parts, (size_t)count * sizeof *np);
        if (!np) {
            free(files);
            return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        }
        g->parts = np;
        memset(&g->parts[1], 0, (size_t)(count - 1) * sizeof *np);
        for (uint64_t k = 1; k < count; k++) {
            char part_path[4200];
            snprintf(part_path, sizeof part_path, "%s-%05llu-of-%05llu.gguf", prefix,
                     (unsigned long long)k + 1, (unsigned long long)count);
            g->n_parts = (uint32_t)k + 1;
            if (access(part_path, F_OK) != 0) {
                free(files);
                return halo_error_set(err, HALO_ERR_IO,
                                      "%s: part %llu of this %llu-part split model, %s, is "
                                      "missing: download it into the same folder",
                                      name, (unsigned long long)k + 1, (unsigned long long)count,
                                      base_name(part_path));
            }
            if ((rc = open_part(g, (uint32_t)k, part_path, opts, &files[k], err))) {
                free(files);
                return rc;
            }
            uint64_t kc = 0, kn = 0;
            rd rk = {.name = base_name(part_path), .err = err};
            if (!scalar_u64(file_get(&files[k], "split.count"), &kc) ||
                !scalar_u64(file_get(&files[k], "split.no"), &kn) || kc != count || kn != k) {
                free(files);
                return fail(&rk, HALO_ERR_FORMAT,
                            "expected part %llu of %llu (split.no %llu, split.count %llu) but the "
                            "file says split.no %llu, split.count %llu: the parts do not belong "
                            "together",
                            (unsigned long long)k + 1, (unsigned long long)count,
                            (unsigned long long)k, (unsigned long long)count,
                            (unsigned long long)kn, (unsigned long long)kc);
            }
        }
    }
    /* join the tensor tables */
    uint64_t total = 0;
    for (uint64_t k = 0; k < count; k++) total += files[k].n_tensors;
    if (count > 1) {
        uint64_t declared;
        const halo_gguf_value *vt = file_get(&first, "split.tensors.count");
        if (!scalar_u64(vt, &declared) || declared != total) {
            free(files);
            return fail(&r, HALO_ERR_FORMAT,
                        "split.tensors.count is %s%llu but the %llu parts hold %llu tensors: the "
                        "parts do not belong together",
                        vt ? "" : "missing, ", vt && scalar_u64(vt, &declared) ? (unsigned long long)declared : 0ull,
                        (unsigned long long)count, (unsigned long long)total);
        }
        g->tensors = arena_alloc(&g->arena, (size_t)(total ? total : 1) * sizeof *g->tensors, 8);
        if (!g->tensors) {
            free(files);
            return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        }
        uint64_t at = 0;
        for (uint64_t k = 0; k < count; k++) {
            if (files[k].n_tensors)
                memcpy(&g->tensors[at], files[k].tensors, files[k].n_tensors * sizeof *g->tensors);
            at += files[k].n_tensors;
        }
    } else {
        g->tensors = first.tensors;
    }
    g->n_tensors = (int64_t)total;
    free(files);
    return index_tensors(g, &r);
}

int halo_gguf_open(const char *path, const halo_load_options *opts, halo_gguf **out,
                   halo_error *err) {
    *out = NULL;
    if (!path) return halo_error_set(err, HALO_ERR_ARG, "no model path given");
    double t0 = halo_time_seconds();
    halo_gguf *g = calloc(1, sizeof *g);
    if (!g) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    g->mode = opts ? opts->mode : HALO_LOAD_MMAP;
    int rc = open_splits(g, path, opts, err);
    if (rc) {
        halo_gguf_close(g);
        return rc;
    }
    g->seconds = halo_time_seconds() - t0;
    halo_log(HALO_LOG_DEBUG, "opened %s: GGUF v%u, %lld keys, %lld tensors, %u part(s), %.3f s",
             path, g->first.version, (long long)g->first.n_kv, (long long)g->n_tensors,
             g->n_parts, g->seconds);
    *out = g;
    return HALO_OK;
}

int halo_gguf_open_memory(const void *data, size_t size, halo_gguf **out, halo_error *err) {
    *out = NULL;
    if (!data && size) return halo_error_set(err, HALO_ERR_ARG, "no data");
    double t0 = halo_time_seconds();
    halo_gguf *g = calloc(1, sizeof *g);
    if (!g) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    g->parts = calloc(1, sizeof *g->parts);
    if (!g->parts) {
        free(g);
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    }
    g->n_parts = 1;
    g->mode = HALO_LOAD_MMAP;
    rd r = {.buf = data, .avail = size, .size = size, .fd = -1, .name = "", .err = err};
    int rc = parse_file(&r, &g->arena, &g->first);
    if (!rc) {
        gguf_part *p = &g->parts[0];
        p->file_size = size;
        p->data_start = g->first.data_start;
        p->data_extent = g->first.data_extent;
        p->data = (const uint8_t *)data + (g->first.data_start < size ? g->first.data_start : size);
        g->tensors = g->first.tensors;
        g->n_tensors = (int64_t)g->first.n_tensors;
        for (int64_t i = 0; i < g->n_tensors; i++) g->tensors[i].data = p->data + g->tensors[i].offset;
        rc = index_tensors(g, &r);
    }
    if (rc) {
        halo_gguf_close(g);
        return rc;
    }
    g->seconds = halo_time_seconds() - t0;
    *out = g;
    return HALO_OK;
}

void halo_gguf_close(halo_gguf *g) {
    if (!g) return;
    for (uint32_t k = 0; k < g->n_parts && g->parts; k++) {
        gguf_part *p = &g->parts[k];
        if (p->locked && p->data && p->data_extent) {
            long page = sysconf(_SC_PAGESIZE);
            uintptr_t start = (uintptr_t)p->data & ~(uintptr_t)(page - 1);
            munlock((void *)start, (size_t)((uintptr_t)p->data + p->data_extent - start));
        }
        if (p->map_size) munmap((void *)p->base, p->map_size);
        free(p->buf);
        free(p->path);
    }
    free(g->parts);
    arena_free(&g->arena);
    free(g);
}

/* ---- queries ------------------------------------------------------------------- */

uint32_t halo_gguf_version(const halo_gguf *g) { return g->first.version; }
uint64_t halo_gguf_alignment(const halo_gguf *g) { return g->first.alignment; }
uint32_t halo_gguf_n_splits(const halo_gguf *g) { return g->n_parts; }
int64_t halo_gguf_n_kv(const halo_gguf *g) { return (int64_t)g->first.n_kv; }

const halo_gguf_kv *halo_gguf_kv_at(const halo_gguf *g, int64_t i) {
    if (i < 0 || (uint64_t)i >= g->first.n_kv) return NULL;
    return &g->first.kvs[i];
}

const halo_gguf_value *halo_gguf_get(const halo_gguf *g, const char *key) {
    return file_get(&g->first, key);
}

bool halo_gguf_get_u64(const halo_gguf *g, const char *key, uint64_t *out) {
    return scalar_u64(halo_gguf_get(g, key), out);
}

bool halo_gguf_get_i64(const halo_gguf *g, const char *key, int64_t *out) {
    const halo_gguf_value *v = halo_gguf_get(g, key);
    int64_t s;
    uint64_t u;
    bool neg;
    if (!v || !value_int(v->type, &v->u64, &s, &u, &neg)) return false;
    if (!neg && u > INT64_MAX) return false;
    *out = neg ? s : (int64_t)u;
    return true;
}

bool halo_gguf_get_u32(const halo_gguf *g, const char *key, uint32_t *out) {
    uint64_t u;
    if (!halo_gguf_get_u64(g, key, &u) || u > UINT32_MAX) return false;
    *out = (uint32_t)u;
    return true;
}

bool halo_gguf_get_f32(const halo_gguf *g, const char *key, float *out) {
    const halo_gguf_value *v = halo_gguf_get(g, key);
    double d;
    if (!v || v->type == HALO_GGUF_BOOL || !value_f64(v->type, &v->u64, &d)) return false;
    *out = (float)d;
    return true;
}

bool halo_gguf_get_bool(const halo_gguf *g, const char *key, bool *out) {
    const halo_gguf_value *v = halo_gguf_get(g, key);
    if (!v || v->type != HALO_GGUF_BOOL) return false;
    *out = v->b;
    return true;
}

const char *halo_gguf_get_str(const halo_gguf *g, const char *key) {
    const halo_gguf_value *v = halo_gguf_get(g, key);
    return v && v->type == HALO_GGUF_STRING ? v->str.data : NULL;
}

const halo_gguf_array *halo_gguf_get_arr(const halo_gguf *g, const char *key) {
    const halo_gguf_value *v = halo_gguf_get(g, key);
    return v && v->type == HALO_GGUF_ARRAY ? &v->arr : NULL;
}

bool halo_gguf_arr_i64(const halo_gguf_array *a, uint64_t i, int64_t *out) {
    if (!a || i >= a->n) return false;
    size_t sz = halo_gguf_type_size(a->type);
    if (!sz) return false;
    const void *p = (const uint8_t *)a->data + i * sz;
    if (a->type == HALO_GGUF_BOOL) {
        *out = *(const bool *)p;
        return true;
    }
    int64_t s;
    uint64_t u;
    bool neg;
    if (!value_int(a->type, p, &s, &u, &neg)) return false;
    if (!neg && u > INT64_MAX) return false;
    *out = neg ? s : (int64_t)u;
    return true;
}

bool halo_gguf_arr_f64(const halo_gguf_array *a, uint64_t i, double *out) {
    if (!a || i >= a->n) return false;
    size_t sz = halo_gguf_type_size(a->type);
    if (!sz) return false;
    return value_f64(a->type, (const uint8_t *)a->data + i * sz, out);
}

int64_t halo_gguf_n_tensors(const halo_gguf *g) { return g->n_tensors; }

const halo_gguf_tensor *halo_gguf_tensor_at(const halo_gguf *g, int64_t i) {
    if (i < 0 || i >= g->n_tensors) return NULL;
    return &g->tensors[i];
}

const halo_gguf_tensor *halo_gguf_find_tensor(const halo_gguf *g, const char *name) {
    int64_t i = hash_find(g->tensor_hash, g->tensor_hash_cap, g->tensors, tensor_name, name);
    return i >= 0 ? &g->tensors[i] : NULL;
}

/* Bytes of [p, p+n) resident in RAM, by mincore over the pages that hold them. */
static uint64_t resident_bytes(const uint8_t *p, uint64_t n) {
    if (!p || !n) return 0;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)p & ~(uintptr_t)(page - 1);
    uintptr_t end = (uintptr_t)p + n;
    uint64_t pages = (end - start + (uintptr_t)page - 1) / (uintptr_t)page;
    enum { BATCH = 65536 };
    unsigned char *vec = malloc(BATCH);
    if (!vec) return 0;
    uint64_t resident = 0;
    for (uint64_t at = 0; at < pages; at += BATCH) {
        uint64_t cnt = pages - at < BATCH ? pages - at : BATCH;
        if (mincore((void *)(start + at * (uintptr_t)page), cnt * (uint64_t)page, vec) != 0) break;
        for (uint64_t i = 0; i < cnt; i++) resident += vec[i] & 1;
    }
    free(vec);
    uint64_t bytes = resident * (uint64_t)page;
    return bytes > n ? n : bytes;
}

void halo_gguf_get_load_stats(const halo_gguf *g, halo_gguf_load_stats *out) {
    memset(out, 0, sizeof *out);
    out->seconds = g->seconds;
    out->mode = g->mode;
    out->locked = g->n_parts > 0;
    for (uint32_t k = 0; k < g->n_parts; k++) {
        const gguf_part *p = &g->parts[k];
        out->file_bytes += p->file_size;
        out->data_bytes += p->data_extent;
        if (p->map_size)
            out->resident_bytes += resident_bytes(p->data, p->data_extent);
        else
            out->resident_bytes += p->data_extent;
        if (!p->locked) out->locked = false;
    }
}
