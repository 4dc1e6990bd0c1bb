/*
 * libFuzzer target for the tokenizer: arbitrary bytes are tokenized with the
 * kdoc-moe vocabulary (byte-level BPE, Qwen2 pre-tokenizer, ChatML specials), and
 *   - encoding never fails and gives ids inside the vocabulary;
 *   - decode(encode(x)) == x, specials parsed or not (a byte-level vocabulary
 *     spells every byte, so this holds for invalid UTF-8 too, not only valid);
 *   - the streaming detokenizer joins to the same bytes.
 *
 * The model: $HALO_FUZZ_MODEL, else models/kdoc-moe-bf16.gguf of the source tree
 * this file was compiled from, else of the current directory or its parent.
 * Run: ./fuzz_tokenizer -max_len=4096 corpus/
 */
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static halo_tokenizer *tok;

static bool try_load(const char *path) {
    if (!path || access(path, R_OK) != 0) return false;
    halo_gguf *g = NULL;
    halo_error err = {0};
    if (halo_gguf_open(path, NULL, &g, &err) || halo_tokenizer_load(g, &tok, &err)) {
        fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path, err.msg);
        halo_gguf_close(g);
        abort();
    }
    halo_gguf_close(g);
    fprintf(stderr, "fuzz_tokenizer: vocabulary of %s (%d tokens)\n", path, halo_tok_n_vocab(tok));
    return true;
}

static void load_model(void) {
    static const char rel[] = "models/kdoc-moe-bf16.gguf";
    char path[4096];
    if (try_load(getenv("HALO_FUZZ_MODEL"))) return;
    /* __FILE__ is <repo>/fuzz/fuzz_tokenizer.c in a CMake build */
    snprintf(path, sizeof path, "%s", __FILE__);
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(path, '/');
        if (slash) *slash = '\0';
        else path[0] = '\0';
    }
    size_t n = strlen(path);
    snprintf(path + n, sizeof path - n, "%s%s", n ? "/" : "", rel);
    if (try_load(path)) return;
    if (try_load(rel)) return;
    snprintf(path, sizeof path, "../%s", rel);
    if (try_load(path)) return;
    fprintf(stderr, "fuzz_tokenizer: cannot find %s; set HALO_FUZZ_MODEL\n", rel);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    halo_log_set_level(HALO_LOG_ERROR);
    load_model();
    return 0;
}

static void check_roundtrip(const uint8_t *data, size_t size, unsigned flags) {
    halo_error err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (halo_tok_encode(tok, (const char *)data, size, flags, &ids, &n, &err) != 0) {
        fprintf(stderr, "encode failed: %s\n", err.msg);
        abort();
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= halo_tok_n_vocab(tok)) abort();

    const unsigned dflags = HALO_TOK_DECODE_SPECIAL | HALO_TOK_DECODE_STRIP_PREFIX;
    char *out = NULL;
    size_t no = 0;
    if (halo_tok_decode(tok, ids, n, dflags, &out, &no, &err) != 0) abort();
    if (no != size || memcmp(out, data, size) != 0) {
        fprintf(stderr, "round trip failed: %zu bytes in, %zu out\n", size, no);
        abort();
    }

    halo_detok *d = NULL;
    if (halo_detok_new(tok, dflags, &d, &err) != 0) abort();
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t len;
        if (halo_detok_push(d, ids[i], &p, &len, &err) != 0) abort();
        if (pos + len > no || memcmp(out + pos, p, len) != 0) abort();
        pos += len;
    }
    const char *p;
    size_t len;
    halo_detok_flush(d, &p, &len);
    if (pos + len != no || memcmp(out + pos, p, len) != 0) abort();
    halo_detok_free(d);
    free(out);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) load_model();
    check_roundtrip(data, size, 0);
    check_roundtrip(data, size, HALO_TOK_PARSE_SPECIAL);
    return 0;
}
