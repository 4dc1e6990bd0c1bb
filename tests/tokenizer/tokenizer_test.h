/*
 * Shared by the tokenizer tests: a fixture model's vocabulary, loaded on its own.
 */
#ifndef HALO_TOKENIZER_TEST_H
#define HALO_TOKENIZER_TEST_H

#include "format/gguf.h"
#include "harness.h"
#include "tokenizer/tokenizer.h"

/* The tokenizer of fixture file `model` (a path under the fixtures); NULL, with the reason on
 * stderr, where it does not load. */
static inline halo_tokenizer *tokenizer_test_load(const char *model) {
    halo_gguf *g = NULL;
    halo_error err = {0};
    if (halo_gguf_open(halo_test_fixture_path(model), NULL, &g, &err)) {
        fprintf(stderr, "%s: %s\n", model, err.msg);
        return NULL;
    }
    halo_tokenizer *t = NULL;
    if (halo_tokenizer_load(g, &t, &err)) fprintf(stderr, "%s: %s\n", model, err.msg);
    halo_gguf_close(g);
    return t;
}

#endif
