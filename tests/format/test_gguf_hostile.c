/*
 * Hostile and broken GGUF files: every one must be refused with HALO_ERR_FORMAT
 * and a one-line, non-empty message — never a crash, an out-of-bounds read (each
 * image sits in a heap block of exactly its size, so ASan sees any overread), a
 * hang or a huge allocation (outside ASan the test runs under a 1 GiB address
 * space limit, so an allocation sized from a hostile count fails loudly as
 * NOMEM instead of FORMAT). Each case prints its message so that a reader can
 * judge that it is clear. Fuzzer findings get a regression case here.
 */
#define _GNU_SOURCE
#include "format/gguf.h"
#include "harness.h"
#include "quant/quant.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* ---- a byte builder for hand-made files ----------------------------------------- */

typedef struct bb {
    uint8_t *p;
    size_t n, cap;
} bb;

static void put(bb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void u32(bb *b, uint32_t v) { put(b, &v, 4); }
static void u64(bb *b, uint64_t v) { put(b, &v, 8); }
static void u8(bb *b, uint8_t v) { put(b, &v, 1); }
static void str(bb *b, const char *s) {
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void header(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    u32(b, version);
    u64(b, n_tensors);
    u64(b, n_kv);
}
static void kv_u32(bb *b, const char *key, uint32_t v) {
    str(b, key);
    u32(b, HALO_GGUF_UINT32);
    u32(b, v);
}
static void tinfo(bb *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type,
                  uint64_t offset) {
    str(b, name);
    u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) u64(b, (uint64_t)ne[d]);
    u32(b, type);
    u64(b, offset);
}
static void pad_to(bb *b, size_t align) {
    while (b->n % align) u8(b, 0);
}
static void zeros(bb *b, size_t n) {
    for (size_t i = 0; i < n; i++) u8(b, 0);
}

/* ---- running a case ------------------------------------------------------------ */

static int n_cases;

/* Parse an exact-size heap copy; returns the status. */
static int parse(const uint8_t *p, size_t n, halo_error *err) {
    uint8_t *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, p, n);
    halo_gguf *g = NULL;
    int rc = halo_gguf_open_memory(copy, n, &g, err);
    if (g) {
        /* touch everything, as a caller would */
        for (int64_t i = 0; i < halo_gguf_n_tensors(g); i++) {
            const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
            volatile uint8_t sink = 0;
            for (uint64_t k = 0; k < t->nbytes; k++) sink ^= ((const uint8_t *)t->data)[k];
            (void)sink;
        }
    }
    halo_gguf_close(g);
    free(copy);
    return rc;
}

static void expect_fail(const char *name, bb *b, const char *must_contain) {
    halo_error err = {0};
    int rc = parse(b->p, b->n, &err);
    n_cases++;
    CHECK_MSG(rc == HALO_ERR_FORMAT, "%s: status %d (%s)", name, rc, err.msg);
    CHECK_MSG(err.msg[0] != '\0' && !strchr(err.msg, '\n'), "%s: message '%s'", name, err.msg);
    if (must_contain)
        CHECK_MSG(strstr(err.msg, must_contain) != NULL, "%s: '%s' not in '%s'", name,
                  must_contain, err.msg);
    printf("  %-28s %s\n", name, err.msg);
    free(b->p);
    *b = (bb){0};
}

static void expect_ok(const char *name, bb *b) {
    halo_error err = {0};
    int rc = parse(b->p, b->n, &err);
    CHECK_MSG(rc == 0, "%s: %s", name, err.msg);
    free(b->p);
    *b = (bb){0};
}

/* ---- the base file for truncations ------------------------------------------------ */

static uint8_t *make_base(size_t *size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/base.gguf", halo_test_tmpdir());
    halo_error err = {0};
    halo_gguf_writer *w;
    CHECK(halo_gguf_writer_open(path, &w, &err) == 0);
    halo_gguf_writer_set_str(w, "general.architecture", "llama", &err);
    halo_gguf_writer_set_u32(w, "llama.block_count", 2, &err);
    halo_gguf_writer_set_bool(w, "x.flag", true, &err);
    float fs[3] = {1, 2, 3};
    halo_gguf_writer_set_arr(w, "x.floats", HALO_GGUF_FLOAT32, fs, 3, &err);
    const char *toks[3] = {"a", "bc", ""};
    halo_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", toks, 3, &err);
    uint8_t one[2] = {1, 2}, two[1] = {3};
    halo_gguf_array sub[2] = {{.type = HALO_GGUF_UINT8, .n = 2, .data = one},
                              {.type = HALO_GGUF_UINT8, .n = 1, .data = two}};
    halo_gguf_value nested = {.type = HALO_GGUF_ARRAY};
    nested.arr.type = HALO_GGUF_ARRAY;
    nested.arr.n = 2;
    nested.arr.data = sub;
    halo_gguf_writer_set(w, "x.nested", &nested, &err);
    int64_t ne_b[1] = {32}, ne_a[2] = {4, 2};
    CHECK(halo_gguf_writer_add_tensor(w, "b", HALO_TYPE_Q8_0, 1, ne_b, &err) == 0);
    CHECK(halo_gguf_writer_add_tensor(w, "a", HALO_TYPE_F32, 2, ne_a, &err) == 0);
    uint8_t data[34 + 32];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)i;
    CHECK(halo_gguf_writer_write_data(w, data, sizeof data, &err) == 0);
    CHECK_MSG(halo_gguf_writer_close(w, &err) == 0, "%s", err.msg);
    return halo_test_read_file(path, size);
}

static void truncations(void) {
    size_t n;
    uint8_t *base = make_base(&n);
    if (!base) return;
    halo_error err = {0};
    CHECK_MSG(parse(base, n, &err) == 0, "base: %s", err.msg);
    /* the last tensor ends exactly at the end of the file, so every proper prefix
     * lacks something the header promises */
    int bad = 0;
    for (size_t len = 0; len < n; len++) {
        halo_error_clear(&err);
        int rc = parse(base, len, &err);
        if (rc != HALO_ERR_FORMAT || !err.msg[0]) {
            if (bad++ < 5) CHECK_MSG(0, "prefix %zu of %zu: status %d '%s'", len, n, rc, err.msg);
        }
    }
    CHECK(bad == 0);
    /* and through files, both loading modes (read mode reads the header in pieces) */
    char path[4096];
    snprintf(path, sizeof path, "%s/trunc.gguf", halo_test_tmpdir());
    for (size_t len = 0; len < n; len++) {
        FILE *f = fopen(path, "wb");
        fwrite(base, 1, len, f);
        fclose(f);
        for (int mode = 0; mode < 2; mode++) {
            halo_load_options o = {.mode = mode ? HALO_LOAD_READ : HALO_LOAD_MMAP};
            halo_gguf *g = NULL;
            halo_error_clear(&err);
            int rc = halo_gguf_open(path, &o, &g, &err);
            if (rc != HALO_ERR_FORMAT && bad++ < 5)
                CHECK_MSG(0, "file prefix %zu mode %d: status %d '%s'", len, mode, rc, err.msg);
            halo_gguf_close(g);
        }
    }
    CHECK(bad == 0);
    printf("  truncations: %zu prefixes x 3 ways refused; e.g. at %zu: ", n, n - 1);
    halo_error_clear(&err);
    parse(base, n - 1, &err);
    printf("%s\n", err.msg);
    /* every single-byte flip of the header either parses or is refused cleanly */
    for (size_t i = 0; i < n - 66; i++) {
        for (int bit = 0; bit < 8; bit++) {
            base[i] ^= (uint8_t)(1 << bit);
            halo_error_clear(&err);
            int rc = parse(base, n, &err);
            CHECK_MSG(rc == 0 || (rc == HALO_ERR_FORMAT && err.msg[0]), "flip %zu.%d: %d", i, bit,
                      rc);
            base[i] ^= (uint8_t)(1 << bit);
        }
    }
    free(base);
}

static void cases(void) {
    const uint64_t HUGE = 1ull << 62;
    bb b = {0};
    int64_t ne4[1] = {4};

    put(&b, "GGU", 3);
    expect_fail("3-byte file", &b, NULL);
    b = (bb){0};
    expect_fail("empty image", &b, NULL);
    put(&b, "GGUX", 4); u32(&b, 3); u64(&b, 0); u64(&b, 0);
    expect_fail("bad magic", &b, "not a GGUF file");
    put(&b, "tjgg", 4); u32(&b, 3); zeros(&b, 32);
    expect_fail("GGJT magic", &b, "GGJT");
    put(&b, "\x10\0\0\0\0\0\0\0{\"a\":1}", 15);
    expect_fail("safetensors", &b, "safetensors");
    header(&b, 1, 0, 0);
    expect_fail("version 1", &b, "version 1");
    header(&b, 99, 0, 0);
    expect_fail("version 99", &b, "version 99");
    put(&b, "GGUF", 4); u32(&b, 0x03000000u); u64(&b, 0); u64(&b, 0);
    expect_fail("big-endian", &b, "big-endian");
    header(&b, 3, HUGE, 0);
    expect_fail("n_tensors 2^62", &b, NULL);
    header(&b, 3, 10000000, 0); zeros(&b, 64);
    expect_fail("n_tensors 10^7", &b, NULL);
    header(&b, 3, 0, HUGE);
    expect_fail("n_kv 2^62", &b, NULL);
    header(&b, 3, 0, 1); u64(&b, HUGE); put(&b, "k", 1); zeros(&b, 32);
    expect_fail("key length 2^62", &b, "string length");
    header(&b, 3, 0, 1); str(&b, "k"); u32(&b, HALO_GGUF_STRING); u64(&b, HUGE);
    expect_fail("string value length 2^62", &b, "string length");
    header(&b, 3, 0, 1); str(&b, "k"); u32(&b, HALO_GGUF_ARRAY); u32(&b, HALO_GGUF_UINT8); u64(&b, HUGE);
    expect_fail("u8 array length 2^62", &b, "array");
    header(&b, 3, 0, 1); str(&b, "k"); u32(&b, HALO_GGUF_ARRAY); u32(&b, HALO_GGUF_UINT64); u64(&b, 1ull << 61);
    zeros(&b, 64);
    expect_fail("u64 array 2^61 (x8 wraps)", &b, "array");
    header(&b, 3, 0, 1); str(&b, "k"); u32(&b, HALO_GGUF_ARRAY); u32(&b, HALO_GGUF_STRING); u64(&b, HUGE);
    expect_fail("string array length 2^62", &b, "array");
    header(&b, 3, 0, 1); str(&b, "k"); u32(&b, HALO_GGUF_ARRAY); u32(&b, HALO_GGUF_ARRAY); u64(&b, HUGE);
    expect_fail("nested array length 2^62", &b, "array");
    header(&b, 3, 0, 1); str(&b, "k"); u32(&b, HALO_GGUF_ARRAY); u32(&b, HALO_GGUF_STRING); u64(&b, 1000);
    str(&b, "a");
    expect_fail("string array truncated", &b, NULL);
    header(&b, 3, 0, 1); str(&b, "k"); u32(&b, HALO_GGUF_ARRAY);
    for (int i = 0; i < 8; i++) { u32(&b, HALO_GGUF_ARRAY); u64(&b, 1); }
    u32(&b, HALO_GGUF_UINT8); u64(&b, 0);
    expect_fail("arrays nested 9 deep", &b, "nested");
    header(&b, 3, 0, 1); str(&b, "k"); u32(&b, HALO_GGUF_ARRAY);
    for (int i = 0; i < 7; i++) { u32(&b, HALO_GGUF_ARRAY); u64(&b, 1); }
    u32(&b, HALO_GGUF_UINT8); u64(&b, 0);
    expect_ok("arrays nested 8 deep", &b);
    header(&b, 3, 0, 1); str(&b, "k"); u32(&b, 13); u32(&b, 0);
    expect_fail("unknown value type 13", &b, "unknown metadata value type 13");
    header(&b, 3, 0, 1); str(&b, "k"); u32(&b, HALO_GGUF_ARRAY); u32(&b, 0xffffffffu); u64(&b, 0);
    expect_fail("unknown array type", &b, "unknown metadata value type");
    header(&b, 3, 0, 1); str(&b, "k"); u32(&b, HALO_GGUF_BOOL); u8(&b, 2);
    expect_fail("bool value 2", &b, "bool");
    header(&b, 3, 0, 1); u64(&b, 3); put(&b, "a\0b", 3); u32(&b, HALO_GGUF_UINT8); u8(&b, 0);
    expect_fail("NUL in key", &b, "NUL");
    header(&b, 3, 0, 2); kv_u32(&b, "dup", 1); kv_u32(&b, "dup", 2);
    expect_fail("duplicate key", &b, "twice");
    header(&b, 3, 0, 1); kv_u32(&b, "general.alignment", 0);
    expect_fail("alignment 0", &b, "alignment");
    header(&b, 3, 0, 1); kv_u32(&b, "general.alignment", 3);
    expect_fail("alignment 3", &b, "alignment");
    header(&b, 3, 0, 1); str(&b, "general.alignment"); u32(&b, HALO_GGUF_STRING); str(&b, "32");
    expect_fail("alignment as a string", &b, "alignment");

    header(&b, 3, 1, 0); tinfo(&b, "t", 1, ne4, 4, 0); pad_to(&b, 32); zeros(&b, 32);
    expect_fail("retired tensor type 4", &b, "unknown tensor type id 4");
    header(&b, 3, 1, 0); tinfo(&b, "t", 1, ne4, 999, 0); pad_to(&b, 32); zeros(&b, 32);
    expect_fail("tensor type 999", &b, "unknown tensor type");
    int64_t ne5[5] = {1, 1, 1, 1, 1};
    header(&b, 3, 1, 0); tinfo(&b, "t", 5, ne5, 0, 0); pad_to(&b, 32); zeros(&b, 32);
    expect_fail("n_dims 5", &b, "dimensions");
    int64_t neg[2] = {4, -1};
    header(&b, 3, 1, 0); tinfo(&b, "t", 2, neg, 0, 0); pad_to(&b, 32); zeros(&b, 32);
    expect_fail("negative dim", &b, "negative");
    int64_t big[3] = {1ll << 40, 1ll << 40, 1};
    header(&b, 3, 1, 0); tinfo(&b, "t", 3, big, 0, 0); pad_to(&b, 32); zeros(&b, 32);
    expect_fail("dims overflow", &b, "overflow");
    int64_t big0[3] = {1ll << 40, 1ll << 40, 0};
    header(&b, 3, 1, 0); tinfo(&b, "t", 3, big0, 0, 0); pad_to(&b, 32);
    expect_fail("dims overflow with a 0", &b, "overflow");
    int64_t nbig[1] = {1ll << 62};
    header(&b, 3, 1, 0); tinfo(&b, "t", 1, nbig, 0, 0); pad_to(&b, 32); zeros(&b, 32);
    expect_fail("nbytes overflow (f32 2^62)", &b, NULL);
    int64_t q33[1] = {33};
    header(&b, 3, 1, 0); tinfo(&b, "t", 1, q33, HALO_TYPE_Q8_0, 0); pad_to(&b, 32); zeros(&b, 64);
    expect_fail("row not whole blocks", &b, "block size");
    header(&b, 3, 1, 0); tinfo(&b, "blk.0.attn_q.weight", 1, ne4, 0, 32); pad_to(&b, 32); zeros(&b, 32);
    expect_fail("tensor past end", &b, "extends past the end");
    header(&b, 3, 1, 0); tinfo(&b, "t", 1, ne4, 0, 0xffffffffffffffe0ull); pad_to(&b, 32); zeros(&b, 32);
    expect_fail("offset near 2^64", &b, "extends past the end");
    header(&b, 3, 1, 0); tinfo(&b, "t", 1, ne4, 0, 8); pad_to(&b, 32); zeros(&b, 64);
    expect_fail("misaligned offset", &b, "alignment");
    int64_t ne16[1] = {16};
    header(&b, 3, 2, 0); tinfo(&b, "x", 1, ne16, 0, 0); tinfo(&b, "y", 1, ne4, 0, 32);
    pad_to(&b, 32); zeros(&b, 64);
    expect_fail("overlapping tensors", &b, "overlap");
    header(&b, 3, 2, 0); tinfo(&b, "x", 1, ne4, 0, 0); tinfo(&b, "x", 1, ne4, 0, 32);
    pad_to(&b, 32); zeros(&b, 64);
    expect_fail("duplicate tensor name", &b, "twice");
    header(&b, 3, 1, 0); u64(&b, 2); put(&b, "t\0", 2); u32(&b, 1); u64(&b, 4); u32(&b, 0); u64(&b, 0);
    pad_to(&b, 32); zeros(&b, 32);
    expect_fail("NUL in tensor name", &b, "NUL");
    header(&b, 3, 1, 0); tinfo(&b, "t", 1, ne4, 0, 0);
    expect_fail("no data section", &b, "extends past the end");
    /* names: 63 bytes is the limit (the reference engine's 64-byte buffers) */
    char n63[64], n64[65];
    memset(n63, 'a', 63), n63[63] = 0;
    memset(n64, 'a', 64), n64[64] = 0;
    header(&b, 3, 1, 0); tinfo(&b, n64, 1, ne4, 0, 0); pad_to(&b, 32); zeros(&b, 16);
    expect_fail("64-byte tensor name", &b, "at most 63");
    header(&b, 3, 1, 0); tinfo(&b, n63, 1, ne4, 0, 0); pad_to(&b, 32); zeros(&b, 16);
    expect_ok("63-byte tensor name", &b);

    /* things that are fine: v2, zero-sized tensors, 0 dims, tensors sharing an offset when empty */
    header(&b, 2, 1, 1); kv_u32(&b, "k", 1); tinfo(&b, "t", 1, ne4, 0, 0); pad_to(&b, 32); zeros(&b, 16);
    expect_ok("version 2", &b);
    int64_t nez[2] = {0, 7};
    header(&b, 3, 3, 0); tinfo(&b, "z", 2, nez, 0, 0); tinfo(&b, "s", 0, NULL, 0, 0);
    tinfo(&b, "z2", 2, nez, HALO_TYPE_Q4_K, 32);
    pad_to(&b, 32); zeros(&b, 32);
    expect_ok("empty and scalar tensors", &b);
    header(&b, 3, 0, 1); kv_u32(&b, "general.alignment", 1);
    expect_ok("alignment 1", &b);
}

/* A file through halo_gguf_open: messages carry the file name. */
static void file_cases(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/notgguf.bin", halo_test_tmpdir());
    FILE *f = fopen(path, "wb");
    fputs("hello world, this is not a model", f);
    fclose(f);
    halo_gguf *g = NULL;
    halo_error err = {0};
    CHECK(halo_gguf_open(path, NULL, &g, &err) == HALO_ERR_FORMAT);
    CHECK(strstr(err.msg, "notgguf.bin") != NULL);
    printf("  %-28s %s\n", "file: not GGUF", err.msg);
    halo_error_clear(&err);
    snprintf(path, sizeof path, "%s/empty.gguf", halo_test_tmpdir());
    fclose(fopen(path, "wb"));
    CHECK(halo_gguf_open(path, NULL, &g, &err) == HALO_ERR_FORMAT);
    printf("  %-28s %s\n", "file: empty", err.msg);
    halo_error_clear(&err);
    CHECK(halo_gguf_open("/nonexistent/model.gguf", NULL, &g, &err) == HALO_ERR_IO);
    printf("  %-28s %s\n", "file: missing", err.msg);
    halo_error_clear(&err);
    CHECK(halo_gguf_open(halo_test_tmpdir(), NULL, &g, &err) == HALO_ERR_IO);
    printf("  %-28s %s\n", "file: a directory", err.msg);
}

int main(void) {
#ifndef UNDER_ASAN
    /* no allocation sized by a hostile count may succeed quietly */
    struct rlimit rl = {1ull << 30, 1ull << 30};
    setrlimit(RLIMIT_AS, &rl);
#endif
    cases();
    file_cases();
    truncations();
    printf("%d hand-made hostile cases\n", n_cases);
    return halo_test_finish("test_gguf_hostile");
}
