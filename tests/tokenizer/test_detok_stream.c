/*
 * The streaming detokenizer, fed one token at a time: its pieces join to exactly
 * the whole decode, and no piece ends inside a UTF-8 character (a character split
 * across tokens — SentencePiece byte fallback, byte-level BPE pieces — comes out
 * whole with the token that completes it). Texts with emoji, ZWJ sequences, CJK,
 * combining marks, invalid bytes, lines of test.txt, and random token sequences
 * (arbitrary bytes: the join must still be exact).
 */
#include "format/gguf.h"
#include "harness.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of a valid UTF-8 sequence at s (1-4), 0 if none starts there. */
static size_t valid_len(const unsigned char *s, size_t n) {
    if (!n) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len || n < len) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return len;
}

static int split_chars; /* stream pieces that cut a character, over the whole run */

/* Stream ids and compare with the whole decode. Returns the number of pushes
 * that emitted nothing (held bytes back or had an empty piece). */
static size_t stream_check(const halo_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                           const char *what) {
    halo_error err = {0};
    char *whole = NULL;
    size_t nw = 0;
    CHECK(halo_tok_decode(t, ids, n, flags, &whole, &nw, &err) == 0);
    halo_detok *d = NULL;
    CHECK(halo_detok_new(t, flags, &d, &err) == 0);
    char *joined = malloc(nw + 16);
    size_t nj = 0, quiet = 0;
    /* the character boundaries of the whole decode (invalid bytes: one each) */
    unsigned char *boundary = calloc(nw + 1, 1);
    for (size_t i = 0; i < nw;) {
        boundary[i] = 1;
        size_t l = valid_len((const unsigned char *)whole + i, nw - i);
        i += l ? l : 1;
    }
    boundary[nw] = 1;
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t len;
        CHECK(halo_detok_push(d, ids[i], &p, &len, &err) == 0);
        if (nj + len > nw) {
            CHECK_MSG(false, "%s: stream longer than the decode", what);
            break;
        }
        memcpy(joined + nj, p, len);
        nj += len;
        if (!len) quiet++;
        else if (!boundary[nj]) split_chars++;
    }
    const char *p;
    size_t len;
    halo_detok_flush(d, &p, &len);
    if (nj + len <= nw) {
        memcpy(joined + nj, p, len);
        nj += len;
    }
    CHECK_MSG(nj == nw && !memcmp(joined, whole, nw), "%s: stream joins to %zu bytes, decode is %zu", what, nj, nw);
    halo_detok_free(d);
    free(boundary);
    free(joined);
    free(whole);
    return quiet;
}

static void check_texts(const char *model, const char *const *texts, size_t nt, const char *file, size_t fsize) {
    halo_tokenizer *t = tokenizer_test_load(model);
    CHECK_MSG(t != NULL, "%s", model);
    if (!t) return;
    halo_error err = {0};
    const unsigned flags = HALO_TOK_DECODE_SPECIAL | HALO_TOK_DECODE_STRIP_PREFIX;
    for (size_t i = 0; i < nt; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(halo_tok_encode(t, texts[i], strlen(texts[i]), HALO_TOK_ADD_SPECIAL | HALO_TOK_PARSE_SPECIAL, &ids, &n,
                              &err) == 0);
        char what[128];
        snprintf(what, sizeof what, "%s text %zu", model, i);
        stream_check(t, ids, n, flags, what);
        stream_check(t, ids, n, 0, what);
        free(ids);
    }
    /* the first 300 lines of test.txt, as one stream each */
    size_t line = 0;
    for (const char *p = file, *end = file + fsize; p < end && line < 300; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl + 1 - p) : (size_t)(end - p);
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(halo_tok_encode(t, p, len, 0, &ids, &n, &err) == 0);
        stream_check(t, ids, n, flags, "test.txt line");
        free(ids);
        p += len;
    }
    /* random token sequences: arbitrary bytes, the join must still be exact */
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int r = 0; r < 200; r++) {
        int32_t ids[64];
        for (int i = 0; i < 64; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((rng >> 33) % (uint64_t)halo_tok_n_vocab(t));
        }
        stream_check(t, ids, 64, flags, "random ids");
        stream_check(t, ids, 64, 0, "random ids");
    }
    halo_tokenizer_free(t);
}

int main(void) {
    halo_test_require_fixtures();
    size_t fsize = 0;
    char *file = halo_test_read_file(halo_test_fixture_path("text/test.txt"), &fsize);
    CHECK(file != NULL);
    if (!file) return halo_test_finish("tokenizer/detok_stream");
    static const char *const texts[] = {
        "Hello world",
        "\xF0\x9F\x98\x80 grinning, \xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 family, "
        "\xF0\x9F\x8F\xB3\xEF\xB8\x8F\xE2\x80\x8D\xF0\x9F\x8C\x88 flag",
        "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C\xEF\xBC\x81 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E "
        "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
        "Decomposed e\xCC\x81 a\xCC\x80 and \xF0\x9D\x94\x98\xF0\x9D\x94\xAB math",
        "<|im_start|>user\n\xF0\x9F\xA6\x99 llama?<|im_end|>\n<|im_start|>assistant\n",
        "\xE0\xB8\xAA\xE0\xB8\xA7\xE0\xB8\xB1\xE0\xB8\xAA\xE0\xB8\x94\xE0\xB8\xB5 \xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8"
        "\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87",
        "invalid \xFF\xFE bytes \xC3 and \xE2\x82 cut \xF0\x9F\x98",
    };
    size_t nt = sizeof texts / sizeof texts[0];
    check_texts("models/kdoc-moe-bf16.gguf", texts, nt, file, fsize);
    check_texts("models/qwen3-vocab.gguf", texts, nt, file, fsize);
    check_texts("models/llama-spm-vocab.gguf", texts, nt, file, fsize);
    CHECK_MSG(split_chars == 0, "%d stream pieces ended inside a UTF-8 character", split_chars);

    /* byte fallback: an emoji the LLaMA vocabulary lacks is 4 byte tokens; the
     * stream emits nothing for the first three and the whole emoji with the last */
    halo_tokenizer *t = tokenizer_test_load("models/llama-spm-vocab.gguf");
    if (t) {
        halo_error err = {0};
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(halo_tok_encode(t, "\xF0\x9F\x98\x80", 4, 0, &ids, &n, &err) == 0);
        /* "▁" then <0xF0> <0x9F> <0x98> <0x80> */
        CHECK(n == 5);
        if (n == 5) {
            halo_detok *d = NULL;
            CHECK(halo_detok_new(t, HALO_TOK_DECODE_STRIP_PREFIX, &d, &err) == 0);
            const char *p;
            size_t len;
            CHECK(halo_detok_push(d, ids[0], &p, &len, &err) == 0 && len == 0); /* the stripped prefix space */
            for (int i = 1; i < 4; i++) CHECK(halo_detok_push(d, ids[i], &p, &len, &err) == 0 && len == 0);
            CHECK(halo_detok_push(d, ids[4], &p, &len, &err) == 0 && len == 4 && !memcmp(p, "\xF0\x9F\x98\x80", 4));
            /* an id out of range is an error */
            CHECK(halo_detok_push(d, -1, &p, &len, &err) == HALO_ERR_ARG);
            CHECK(halo_detok_push(d, halo_tok_n_vocab(t), &p, &len, &err) == HALO_ERR_ARG);
            /* a cut character is flushed as it is at the end */
            halo_detok_reset(d);
            CHECK(halo_detok_push(d, ids[1], &p, &len, &err) == 0 && len == 0);
            halo_detok_flush(d, &p, &len);
            CHECK(len == 1 && (unsigned char)p[0] == 0xF0);
            /* a lead byte followed by a non-continuation passes through at once */
            int32_t a = halo_tok_find(t, "a", 1);
            CHECK(halo_detok_push(d, ids[1], &p, &len, &err) == 0 && len == 0);
            CHECK(a >= 0 && halo_detok_push(d, a, &p, &len, &err) == 0 && len == 2);
            halo_detok_free(d);
        }
        free(ids);
        halo_tokenizer_free(t);
    }
    free(file);
    return halo_test_finish("tokenizer/detok_stream");
}
