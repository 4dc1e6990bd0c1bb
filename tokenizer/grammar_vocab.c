/*
 * The vocabulary as a grammar sees it (include/halo.h, "grammars"): each token's
 * bytes in generated text, and which tokens end a generation.
 *
 * Control tokens write nothing into plain text, so they never match a grammar,
 * except, with `tags`, those that stand for a tag of the output formats rather than
 * for the chat's structure: `<tool_call>`, `</think>` and the like in vocabularies
 * that mark them as control tokens (kdoc-moe does). They are told apart by the `|`
 * that the structural ones carry (`<|im_start|>`, `<|endoftext|>`). Chat output is
 * decoded with control tokens' text, so there a grammar may spell `<tool_call>`
 * with the one token the model knows.
 */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

static bool is_tag_token(const halo_tokenizer *t, int32_t id) {
    size_t n = 0;
    const char *s = halo_tok_piece(t, id, true, &n);
    return s && n >= 3 && s[0] == '<' && s[n - 1] == '>' && !memchr(s, '|', n);
}

int halo_tok_grammar_vocab(const halo_tokenizer *t, bool tags, halo_grammar_vocab **out,
                           halo_error *err) {
    int32_t n = halo_tok_n_vocab(t);
    const char **bytes = calloc((size_t)n, sizeof *bytes);
    size_t *len = calloc((size_t)n, sizeof *len);
    bool *eog = calloc((size_t)n, sizeof *eog);
    int rc;
    if (!bytes || !len || !eog) {
        rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory (grammar vocabulary)");
    } else {
        for (int32_t id = 0; id < n; id++) {
            eog[id] = halo_tok_is_eog(t, id);
            bool special = tags && !eog[id] && halo_tok_type_of(t, id) == HALO_TOK_TYPE_CONTROL &&
                           is_tag_token(t, id);
            bytes[id] = halo_tok_piece(t, id, special, &len[id]);
            if (!bytes[id] || eog[id]) bytes[id] = "", len[id] = 0;
        }
        rc = halo_grammar_vocab_new(bytes, len, eog, n, out, err);
    }
    free(bytes);
    free(len);
    free(eog);
    return rc;
}
