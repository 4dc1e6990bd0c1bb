/*
 * libFuzzer target for grammars (runtime/grammar.c, runtime/json_schema.c). Byte 0
 * picks the input's kind: even, the rest is GBNF; odd, the rest is a JSON schema,
 * converted to GBNF first (its output must compile, unless the schema itself loops:
 * a left-recursive $ref, or is too large). A grammar that compiles is then walked:
 * at each step the mask over a small vocabulary (single bytes, words, multi-byte
 * characters whole and cut, EOG) must agree with the one-token check, the token
 * picked (by the input's bytes) among the allowed ones must be accepted, and EOG
 * must be allowed exactly when the grammar is complete. Errors must be messages,
 * never a crash, a leak or a hang.
 *
 * Seeds: fuzz/seeds/fuzz_grammar/. Run: ./fuzz_grammar -max_len=4096 corpus/
 * fuzz/seeds/fuzz_grammar
 */
#include "halo.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_WORDS = 12, N_TOKENS = 256 + N_WORDS + 1 };
static const char *const words[N_WORDS] = {"ab",   "true", "null",         "\"",
                                           "\": ", "{\"",  "12",           "\xc3\xa9",
                                           "\xc3", "\xa9", "\xe6\x97\xa5", "\n  "};
static halo_grammar_vocab *vocab;

static void make_vocab(void) {
    static char bytes[256];
    const char *p[N_TOKENS];
    size_t len[N_TOKENS];
    bool eog[N_TOKENS] = {0};
    for (int i = 0; i < 256; i++)
        bytes[i] = (char)i, p[i] = &bytes[i], len[i] = 1;
    for (int i = 0; i < N_WORDS; i++)
        p[256 + i] = words[i], len[256 + i] = strlen(words[i]);
    p[N_TOKENS - 1] = "", len[N_TOKENS - 1] = 0, eog[N_TOKENS - 1] = true;
    halo_error err = {0};
    if (halo_grammar_vocab_new(p, len, eog, N_TOKENS, &vocab, &err)) abort();
}

static void walk(const halo_grammar *g, const uint8_t *choice, size_t n_choice) {
    halo_grammar_matcher *m = NULL;
    halo_error err = {0};
    if (halo_grammar_matcher_new(g, vocab, &m, &err)) return;
    uint8_t allowed[N_TOKENS];
    for (int step = 0; step < 32; step++) {
        int32_t count = halo_grammar_matcher_mask(m, allowed);
        int32_t n = 0;
        for (int32_t t = 0; t < N_TOKENS; t++) {
            if ((allowed[t] != 0) != halo_grammar_matcher_allows(m, t)) abort();
            n += allowed[t];
        }
        if (n != count) abort();
        if (allowed[N_TOKENS - 1] != halo_grammar_matcher_complete(m)) abort();
        if (count == 0) break;
        int32_t k = (int32_t)(n_choice ? choice[step % n_choice] : 0) % count, pick = -1;
        for (int32_t t = 0; t < N_TOKENS && pick < 0; t++)
            if (allowed[t] && k-- == 0) pick = t;
        if (!halo_grammar_matcher_accept(m, pick)) abort();
        if (pick == N_TOKENS - 1) break;
    }
    halo_grammar_matcher_free(m);
}

static bool converter_may_fail(const char *msg) {
    return strstr(msg, "left-recursive") || strstr(msg, "too large") || strstr(msg, "too many");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!vocab) make_vocab();
    if (size < 1) return 0;
    const char *src = (const char *)data + 1;
    size_t len = size - 1;
    char *gbnf = NULL;
    halo_error err = {0};
    if (data[0] & 1) {
        cJSON *schema = cJSON_ParseWithLength(src, len);
        int rc = schema ? halo_json_schema_to_gbnf(schema, &gbnf, &err) : -1;
        cJSON_Delete(schema);
        if (rc) {
            if (schema && strncmp(err.msg, "json_schema: ", 13)) abort();
            return 0;
        }
        src = gbnf;
        len = strlen(gbnf);
    }
    halo_grammar *g = NULL;
    halo_error gerr = {0};
    if (halo_grammar_compile(src, len, NULL, &g, &gerr) == 0) {
        walk(g, data, size);
        halo_grammar_free(g);
    } else {
        if (strncmp(gerr.msg, "grammar", 7)) abort();
        if (gbnf && !converter_may_fail(gerr.msg)) {
            fprintf(stderr, "converter output does not compile: %s\n%s\n", gerr.msg, gbnf);
            abort();
        }
    }
    free(gbnf);
    return 0;
}
