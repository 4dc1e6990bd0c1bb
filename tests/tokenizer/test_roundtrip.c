/*
 * decode(encode(x)) == x: every line of text/test.txt, and the whole file at
 * once, with the kdoc-moe vocabulary (8192 BPE), the tiny models' 1024 BPE
 * vocabulary, the real Qwen3 vocabulary and the LLaMA SentencePiece one; plus
 * special tokens, invalid UTF-8 and a few edge texts. Also times encoding the
 * whole file (it must stay well under a second).
 */
#include "format/gguf.h"
#include "harness.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test.h"
#include "util/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* true if text round-trips under flags */
static bool roundtrip(const halo_tokenizer *t, const char *s, size_t n, unsigned enc, unsigned dec) {
    int32_t *ids = NULL;
    size_t ni = 0;
    char *out = NULL;
    size_t no = 0;
    halo_error err = {0};
    bool ok = halo_tok_encode(t, s, n, enc, &ids, &ni, &err) == 0 &&
              halo_tok_decode(t, ids, ni, dec, &out, &no, &err) == 0 && no == n && !memcmp(out, s, n);
    free(ids);
    free(out);
    return ok;
}

static void check_model(const char *model, const char *text, size_t size) {
    halo_tokenizer *t = tokenizer_test_load(model);
    CHECK_MSG(t != NULL, "%s", model);
    if (!t) return;
    const unsigned dec = HALO_TOK_DECODE_SPECIAL | HALO_TOK_DECODE_STRIP_PREFIX;

    /* whole file, timed */
    int32_t *ids = NULL;
    size_t n = 0;
    halo_error err = {0};
    double t0 = halo_time_seconds();
    int rc = halo_tok_encode(t, text, size, 0, &ids, &n, &err);
    double dt = halo_time_seconds() - t0;
    CHECK_MSG(rc == 0, "%s: %s", model, err.msg);
    printf("%-24s vocab %6d: test.txt (%zu bytes) -> %zu tokens in %.1f ms (%.1f MB/s)\n", model,
           halo_tok_n_vocab(t), size, n, dt * 1e3, size / dt / 1e6);
    CHECK_MSG(dt < 1.0, "%s: encoding test.txt took %.3f s", model, dt);
    char *back = NULL;
    size_t nb = 0;
    CHECK(halo_tok_decode(t, ids, n, dec, &back, &nb, &err) == 0);
    CHECK_MSG(nb == size && back && !memcmp(back, text, size), "%s: whole file does not round-trip", model);
    free(back);
    free(ids);

    /* line by line */
    size_t lines = 0, bad = 0;
    for (const char *p = text, *end = text + size; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lines++;
        if (!roundtrip(t, p, len, 0, dec)) {
            if (++bad <= 5) fprintf(stderr, "%s: line %zu does not round-trip: \"%.*s\"\n", model, lines, (int)len, p);
        }
        p = nl ? nl + 1 : end;
    }
    CHECK_MSG(bad == 0, "%s: %zu of %zu lines do not round-trip", model, bad, lines);

    /* edge texts; BOS/EOS and parsed specials come back with DECODE_SPECIAL */
    static const char *edge[] = {
        "", " ", "  ", "\n", "\n\n\n", "\t", " leading", "trailing ", "a  b   c", "<|im_start|>user\nhi<|im_end|>",
        "\xF0\x9F\x98\x80 \xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7", "\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96\xE7\x95\x8C",
        "e\xCC\x81 a\xCC\x80", "don't WE'LL 123456789", "x\r\ny\rz",
    };
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        CHECK_MSG(roundtrip(t, edge[i], strlen(edge[i]), 0, dec), "%s: edge text %zu", model, i);
        CHECK_MSG(roundtrip(t, edge[i], strlen(edge[i]), HALO_TOK_PARSE_SPECIAL, dec), "%s: edge text %zu (specials)",
                  model, i);
    }
    /* invalid UTF-8: byte-level BPE and SPM byte fallback keep every byte */
    static const char bad_utf8[] = "ok \xFF\xFE broken \xC3 end \xE2\x82 and \xED\xA0\x80 surrogate \xF4\x90\x80\x80";
    CHECK_MSG(roundtrip(t, bad_utf8, sizeof bad_utf8 - 1, 0, dec), "%s: invalid UTF-8", model);
    /* NUL bytes are text too */
    CHECK_MSG(roundtrip(t, "a\0b", 3, 0, dec), "%s: NUL", model);

    /* with BOS added, decoding with specials shows it; without, the text alone */
    if (halo_tok_add_bos(t)) {
        CHECK(halo_tok_encode(t, "hi", 2, HALO_TOK_ADD_SPECIAL, &ids, &n, &err) == 0);
        CHECK(n >= 1 && ids[0] == halo_tok_bos(t));
        CHECK(halo_tok_decode(t, ids, n, HALO_TOK_DECODE_STRIP_PREFIX, &back, &nb, &err) == 0);
        CHECK(nb == 2 && !memcmp(back, "hi", 2));
        free(back);
        free(ids);
    }
    halo_tokenizer_free(t);
}

int main(void) {
    halo_test_require_fixtures();
    size_t size = 0;
    char *text = halo_test_read_file(halo_test_fixture_path("text/test.txt"), &size);
    CHECK(text != NULL && size > 100000);
    if (!text) return halo_test_finish("tokenizer/roundtrip");
    check_model("models/kdoc-moe-bf16.gguf", text, size);
    check_model("models/tiny-qwen3-f16.gguf", text, size);
    check_model("models/qwen3-vocab.gguf", text, size);
    check_model("models/llama-spm-vocab.gguf", text, size);

    /* the special tokens of the ChatML vocabularies */
    halo_tokenizer *t = tokenizer_test_load("models/kdoc-moe-bf16.gguf");
    if (t) {
        int32_t *ids = NULL;
        size_t n = 0;
        halo_error err = {0};
        const char *s = "<|im_start|>user\nhi<|im_end|>";
        CHECK(halo_tok_encode(t, s, strlen(s), HALO_TOK_PARSE_SPECIAL, &ids, &n, &err) == 0);
        int32_t start = halo_tok_find(t, "<|im_start|>", 12), end = halo_tok_find(t, "<|im_end|>", 10);
        CHECK(start >= 0 && end >= 0 && n >= 3 && ids[0] == start && ids[n - 1] == end);
        CHECK(halo_tok_is_eog(t, end));
        CHECK(!halo_tok_is_eog(t, start));
        free(ids);
        /* not parsed: the same text as ordinary tokens */
        CHECK(halo_tok_encode(t, s, strlen(s), 0, &ids, &n, &err) == 0);
        bool any = false;
        for (size_t i = 0; i < n; i++) any |= ids[i] == start || ids[i] == end;
        CHECK(!any && n > 3);
        /* decoding without DECODE_SPECIAL hides control tokens */
        int32_t two[2] = {start, ids[0]};
        char *out = NULL;
        size_t no = 0;
        CHECK(halo_tok_decode(t, two, 2, 0, &out, &no, &err) == 0);
        size_t pl;
        halo_tok_piece(t, ids[0], false, &pl);
        CHECK(no == pl);
        free(out);
        free(ids);
        /* out-of-range ids are an error, not a crash */
        int32_t badid = halo_tok_n_vocab(t);
        CHECK(halo_tok_decode(t, &badid, 1, 0, &out, &no, &err) == HALO_ERR_ARG);
        halo_tokenizer_free(t);
    }
    free(text);
    return halo_test_finish("tokenizer/roundtrip");
}
