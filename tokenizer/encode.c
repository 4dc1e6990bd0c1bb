/*
 * halo_tok_encode: cut special tokens out of the text, run the model (BPE or
 * SentencePiece) on the text between them, add BOS/EOS.
 *
 * Special tokens are matched the way the llama.cpp tools match them, so that a
 * prompt gives the same ids in both: the longest token first over the whole text,
 * then the next longest in what is left, and so on; an occurrence that overlaps
 * one already taken is skipped. Implemented as one scan that collects every
 * occurrence (candidates come from a table by first byte), then a pass over them
 * in that priority order.
 */
#include "tokenizer/tok_impl.h"

#include <stdlib.h>
#include <string.h>

typedef struct occ {
    size_t pos;
    uint32_t len;
    int32_t id;
} occ;

typedef struct frag {
    size_t off, len;
    int32_t id; /* >= 0: a special token; -1: raw text */
} frag;

static int cmp_priority(const void *a, const void *b) {
    const occ *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int cmp_pos(const void *a, const void *b) {
    const occ *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Fragments of text in order. *frags is malloc'd. */
static int partition(const halo_tokenizer *t, const char *text, size_t len, bool parse_special,
                     frag **frags, size_t *n_frags) {
    occ *oc = NULL;
    size_t n_oc = 0, cap_oc = 0;
    const unsigned char *u = (const unsigned char *)text;
    if (t->n_special) {
        for (size_t p = 0; p < len; p++) {
            uint32_t lo = t->first[u[p]], hi = t->first[u[p] + 1];
            for (uint32_t k = lo; k < hi; k++) {
                int32_t id = t->special[k];
                if (!parse_special && t->type[id] != HALO_TOK_TYPE_USER_DEFINED) continue;
                uint32_t n = t->len[id];
                if (n > len - p || memcmp(text + p, t->text + t->off[id], n)) continue;
                if (n_oc == cap_oc) {
                    size_t cap = cap_oc ? cap_oc * 2 : 16;
                    occ *q = realloc(oc, cap * sizeof *q);
                    if (!q) {
                        free(oc);
                        return HALO_ERR_NOMEM;
                    }
                    oc = q;
                    cap_oc = cap;
                }
                oc[n_oc++] = (occ){p, n, id};
            }
        }
    }
    size_t kept = 0;
    if (n_oc) {
        uint8_t *taken = calloc(len, 1);
        if (!taken) {
            free(oc);
            return HALO_ERR_NOMEM;
        }
        qsort(oc, n_oc, sizeof *oc, cmp_priority);
        for (size_t i = 0; i < n_oc; i++) {
            bool free_range = true;
            for (uint32_t k = 0; k < oc[i].len && free_range; k++) free_range = !taken[oc[i].pos + k];
            if (!free_range) continue;
            memset(taken + oc[i].pos, 1, oc[i].len);
            oc[kept++] = oc[i];
        }
        free(taken);
        qsort(oc, kept, sizeof *oc, cmp_pos);
    }
    frag *f = malloc((2 * kept + 1) * sizeof *f);
    if (!f) {
        free(oc);
        return HALO_ERR_NOMEM;
    }
    size_t nf = 0, pos = 0;
    for (size_t i = 0; i < kept; i++) {
        if (oc[i].pos > pos) f[nf++] = (frag){pos, oc[i].pos - pos, -1};
        f[nf++] = (frag){oc[i].pos, oc[i].len, oc[i].id};
        pos = oc[i].pos + oc[i].len;
    }
    if (pos < len) f[nf++] = (frag){pos, len - pos, -1};
    free(oc);
    *frags = f;
    *n_frags = nf;
    return 0;
}

int halo_tok_encode(const halo_tokenizer *t, const char *text, size_t len, unsigned flags,
                    int32_t **ids, size_t *n_ids, halo_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return halo_error_set(err, HALO_ERR_ARG, "tokenize: no text");
    tok_vec out = {0};
    frag *frags = NULL;
    size_t nf = 0;
    tok_bpe_ctx *bpe = NULL;
    int rc = 0;
    bool add = flags & HALO_TOK_ADD_SPECIAL;
    if (add && t->add_bos && tok_vec_push(&out, t->bos)) goto nomem;
    if (len && partition(t, text, len, flags & HALO_TOK_PARSE_SPECIAL, &frags, &nf)) goto nomem;
    if (t->kind == HALO_TOK_KIND_BPE && nf && !(bpe = tok_bpe_ctx_new())) goto nomem;
    /* SentencePiece puts a space in front of the text and after each special token */
    bool after_special = true;
    for (size_t i = 0; i < nf && !rc; i++) {
        if (frags[i].id >= 0) {
            if (tok_vec_push(&out, frags[i].id)) goto nomem;
            after_special = true;
            continue;
        }
        if (t->kind == HALO_TOK_KIND_BPE)
            rc = tok_bpe_encode(t, bpe, text + frags[i].off, frags[i].len, &out, err);
        else
            rc = tok_spm_encode(t, text + frags[i].off, frags[i].len, t->add_space_prefix && after_special,
                                &out, err);
        after_special = false;
    }
    if (!rc && add && t->add_eos && tok_vec_push(&out, t->eos)) goto nomem;
    goto done;
nomem:
    rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory while tokenizing %zu bytes", len);
done:
    tok_bpe_ctx_free(bpe);
    free(frags);
    if (rc) {
        free(out.v);
        return rc;
    }
    if (out.n == 0) {
        free(out.v);
        out.v = NULL;
    }
    *ids = out.v;
    *n_ids = out.n;
    return 0;
}
