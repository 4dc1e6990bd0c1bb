/*
 * format — GGUF files: reading (versions 2 and 3, split files, lazy mmap or eager
 * read, mlock) and writing (streamed, tensor data written after the header).
 *
 * The reader trusts nothing in the file. Every count, length, size and offset is
 * checked against the bytes that remain and for overflow before anything is
 * allocated or read, so a truncated or hostile file yields one clear error
 * message and HALO_ERR_FORMAT — never a crash, a hang or a huge allocation.
 * Tensor data is never copied in mmap mode: halo_gguf_tensor.data points into the
 * mapping.
 */
#ifndef HALO_GGUF_H
#define HALO_GGUF_H

#include "halo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HALO_GGUF_MAGIC "GGUF"
#define HALO_GGUF_DEFAULT_ALIGNMENT 32
#define HALO_GGUF_MAX_DIMS 4
/* Tensor names have at most 63 bytes: the reference implementation keeps them in
 * 64-byte buffers (GGML_MAX_NAME), so its tools can neither write nor read longer ones. */
#define HALO_GGUF_MAX_NAME 63

typedef enum halo_gguf_type {
    HALO_GGUF_UINT8 = 0,
    HALO_GGUF_INT8 = 1,
    HALO_GGUF_UINT16 = 2,
    HALO_GGUF_INT16 = 3,
    HALO_GGUF_UINT32 = 4,
    HALO_GGUF_INT32 = 5,
    HALO_GGUF_FLOAT32 = 6,
    HALO_GGUF_BOOL = 7,
    HALO_GGUF_STRING = 8,
    HALO_GGUF_ARRAY = 9,
    HALO_GGUF_UINT64 = 10,
    HALO_GGUF_INT64 = 11,
    HALO_GGUF_FLOAT64 = 12,
    HALO_GGUF_TYPE_COUNT = 13,
} halo_gguf_type;

typedef struct halo_gguf_string {
    uint64_t len;
    char *data; /* NUL-terminated copy (the string may itself contain NULs) */
} halo_gguf_string;

typedef struct halo_gguf_array {
    halo_gguf_type type; /* element type */
    uint64_t n;
    /* numeric and bool elements: packed native values (uint8_t, int16_t, float, ...);
     * STRING: halo_gguf_string[n]; ARRAY: halo_gguf_array[n] (arrays of arrays). */
    void *data;
} halo_gguf_array;

typedef struct halo_gguf_value {
    halo_gguf_type type;
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        bool b;
        uint64_t u64;
        int64_t i64;
        double f64;
        halo_gguf_string str;
        halo_gguf_array arr;
    };
} halo_gguf_value;

typedef struct halo_gguf_kv {
    char *key;
    halo_gguf_value value;
} halo_gguf_kv;

typedef struct halo_gguf_tensor {
    char *name;
    uint32_t n_dims;
    int64_t ne[HALO_GGUF_MAX_DIMS]; /* ne[0] is the row length (fastest); unused dims are 1 */
    int type;                       /* halo_type (quant/quant.h) */
    uint64_t offset;                /* from the start of its file's data section */
    uint64_t nbytes;
    int64_t n_elements;
    uint32_t split;   /* index of the file that holds the data (0 for single files) */
    const void *data; /* into the mapping or the read buffer */
} halo_gguf_tensor;

typedef struct halo_gguf halo_gguf; /* an opened model: one file or all its splits */

/* Open a GGUF file. If it is the first part of a split model (split.count > 1),
 * the other parts NAME-0000k-of-0000N.gguf are opened from beside it and their
 * tensors joined. opts may be NULL (mmap, no mlock). */
int halo_gguf_open(const char *path, const halo_load_options *opts, halo_gguf **out,
                   halo_error *err);
/* Parse a GGUF image in memory (no splits); the buffer must outlive the result.
 * Used by the fuzzer and by tests. */
int halo_gguf_open_memory(const void *data, size_t size, halo_gguf **out, halo_error *err);
void halo_gguf_close(halo_gguf *g);

uint32_t halo_gguf_version(const halo_gguf *g);
uint64_t halo_gguf_alignment(const halo_gguf *g);
uint32_t halo_gguf_n_splits(const halo_gguf *g);

/* Metadata, in file order (of the first part). */
int64_t halo_gguf_n_kv(const halo_gguf *g);
const halo_gguf_kv *halo_gguf_kv_at(const halo_gguf *g, int64_t i);
const halo_gguf_value *halo_gguf_get(const halo_gguf *g, const char *key); /* NULL if absent */

/* Typed getters: false if absent or not convertible (integers convert between
 * widths when the value fits; floats accept any numeric type). */
bool halo_gguf_get_u64(const halo_gguf *g, const char *key, uint64_t *out);
bool halo_gguf_get_i64(const halo_gguf *g, const char *key, int64_t *out);
bool halo_gguf_get_u32(const halo_gguf *g, const char *key, uint32_t *out);
bool halo_gguf_get_f32(const halo_gguf *g, const char *key, float *out);
bool halo_gguf_get_bool(const halo_gguf *g, const char *key, bool *out);
const char *halo_gguf_get_str(const halo_gguf *g, const char *key); /* NULL if absent/not string */
const halo_gguf_array *halo_gguf_get_arr(const halo_gguf *g, const char *key);
/* Element i of a numeric array as int64/double; false if out of range or not numeric. */
bool halo_gguf_arr_i64(const halo_gguf_array *a, uint64_t i, int64_t *out);
bool halo_gguf_arr_f64(const halo_gguf_array *a, uint64_t i, double *out);

/* Tensors, in file order (split after split). */
int64_t halo_gguf_n_tensors(const halo_gguf *g);
const halo_gguf_tensor *halo_gguf_tensor_at(const halo_gguf *g, int64_t i);
const halo_gguf_tensor *halo_gguf_find_tensor(const halo_gguf *g, const char *name);

/* Load figures: seconds spent opening (and reading, for HALO_LOAD_READ), the
 * bytes of tensor data, and whether the memory is locked. */
typedef struct halo_gguf_load_stats {
    double seconds;
    uint64_t file_bytes;   /* all parts together */
    uint64_t data_bytes;   /* tensor data, all parts */
    uint64_t resident_bytes; /* of the tensor data now in RAM (mincore for mmap) */
    bool locked;
    halo_load_mode mode;
} halo_gguf_load_stats;
void halo_gguf_get_load_stats(const halo_gguf *g, halo_gguf_load_stats *out);

/* Name of a metadata type ("u32", "string", "array"). */
const char *halo_gguf_type_name(halo_gguf_type t);
/* Bytes of one value of a numeric or bool type; 0 for string, array and invalid ids. */
size_t halo_gguf_type_size(halo_gguf_type t);

/* ---- writing ------------------------------------------------------------
 * Usage: open; set metadata (kv_*); declare every tensor (add_tensor); then
 * write each tensor's bytes in declaration order (write_data may be called many
 * times per tensor, streaming); close. The header is written when the first data
 * arrives, so a whole model never has to be in memory. close fails if a tensor
 * got fewer or more bytes than declared. */
typedef struct halo_gguf_writer halo_gguf_writer;

int halo_gguf_writer_open(const char *path, halo_gguf_writer **out, halo_error *err);
/* Set (or replace) a key; the value is deep-copied. */
int halo_gguf_writer_set(halo_gguf_writer *w, const char *key, const halo_gguf_value *v,
                         halo_error *err);
int halo_gguf_writer_set_u32(halo_gguf_writer *w, const char *key, uint32_t v, halo_error *err);
int halo_gguf_writer_set_i32(halo_gguf_writer *w, const char *key, int32_t v, halo_error *err);
int halo_gguf_writer_set_u64(halo_gguf_writer *w, const char *key, uint64_t v, halo_error *err);
int halo_gguf_writer_set_f32(halo_gguf_writer *w, const char *key, float v, halo_error *err);
int halo_gguf_writer_set_bool(halo_gguf_writer *w, const char *key, bool v, halo_error *err);
int halo_gguf_writer_set_str(halo_gguf_writer *w, const char *key, const char *v, halo_error *err);
/* Numeric array from packed native values of `type`; strings from a char* array. */
int halo_gguf_writer_set_arr(halo_gguf_writer *w, const char *key, halo_gguf_type type,
                             const void *data, uint64_t n, halo_error *err);
int halo_gguf_writer_set_str_arr(halo_gguf_writer *w, const char *key, const char *const *strs,
                                 uint64_t n, halo_error *err);
/* Copy every key of an opened file (e.g. to rewrite one of them). */
int halo_gguf_writer_copy_kvs(halo_gguf_writer *w, const halo_gguf *g, halo_error *err);
int halo_gguf_writer_add_tensor(halo_gguf_writer *w, const char *name, int type, uint32_t n_dims,
                                const int64_t *ne, halo_error *err);
int halo_gguf_writer_write_data(halo_gguf_writer *w, const void *data, size_t n, halo_error *err);
/* Finish (padding, checks) and close; frees w even on error. */
int halo_gguf_writer_close(halo_gguf_writer *w, halo_error *err);
/* Abandon: close and remove the partial file. */
void halo_gguf_writer_abort(halo_gguf_writer *w);

#endif /* HALO_GGUF_H */
