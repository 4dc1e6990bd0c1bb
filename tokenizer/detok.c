/*
 * Decoding: token ids back to bytes, whole (halo_tok_decode) or streamed one
 * token at a time (halo_detok_*).
 *
 * A character may be split across tokens (byte tokens <0xF0><0x9F><0x98><0x80> in
 * SentencePiece, byte-level BPE pieces that end mid-character), so the stream
 * holds back a trailing incomplete UTF-8 sequence until a later token completes
 * it. Only a true prefix of a valid sequence is held; bytes that can never start
 * or continue one pass through at once, which is what keeps the concatenation of
 * the stream equal to the whole decode.
 */
#include "tokenizer/tok_impl.h"

#include <stdlib.h>
#include <string.h>

static bool is_special_type(int ty) {
    return ty == HALO_TOK_TYPE_CONTROL || ty == HALO_TOK_TYPE_USER_DEFINED || ty == HALO_TOK_TYPE_UNKNOWN;
}

/* The piece of id as decode writes it, given the "strip the next leading space"
 * state (SentencePiece's prefix space), which it updates. */
static const char *piece_for(const halo_tokenizer *t, int32_t id, unsigned flags, bool strip,
                             bool *pending, size_t *len) {
    const char *p = halo_tok_piece(t, id, flags & HALO_TOK_DECODE_SPECIAL, len);
    if (is_special_type(t->type[id])) {
        *pending = strip;
        return p;
    }
    if (*pending && *len) {
        if (p[0] == ' ') p++, (*len)--;
        *pending = false;
    }
    return p;
}

static bool strip_wanted(const halo_tokenizer *t, unsigned flags) {
    return (flags & HALO_TOK_DECODE_STRIP_PREFIX) && t->kind == HALO_TOK_KIND_SPM && t->add_space_prefix;
}

int halo_tok_decode(const halo_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **out,
                    size_t *out_len, halo_error *err) {
    *out = NULL;
    *out_len = 0;
    bool strip = strip_wanted(t, flags), pending = strip;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return halo_error_set(err, HALO_ERR_ARG, "token id %d is outside the vocabulary (%d tokens)",
                                  (int)ids[i], (int)t->n_vocab);
        total += t->plen[ids[i]];
    }
    if (total >= SIZE_MAX) return halo_error_set(err, HALO_ERR_NOMEM, "decoded text too large");
    char *s = malloc(total + 1);
    if (!s) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory while decoding");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *p = piece_for(t, ids[i], flags, strip, &pending, &len);
        memcpy(s + o, p, len);
        o += len;
    }
    s[o] = '\0';
    *out = s;
    *out_len = o;
    return 0;
}

/* ---- streaming --------------------------------------------------------------- */

struct halo_detok {
    const halo_tokenizer *t;
    unsigned flags;
    bool strip, pending;
    unsigned char hold[4];
    size_t n_hold;
    char *buf;
    size_t cap;
};

int halo_detok_new(const halo_tokenizer *t, unsigned flags, halo_detok **out, halo_error *err) {
    halo_detok *d = calloc(1, sizeof *d);
    if (!d) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    d->t = t;
    d->flags = flags;
    d->strip = strip_wanted(t, flags);
    d->pending = d->strip;
    d->cap = 64;
    d->buf = malloc(d->cap);
    if (!d->buf) {
        free(d);
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    }
    *out = d;
    return 0;
}

void halo_detok_reset(halo_detok *d) {
    d->pending = d->strip;
    d->n_hold = 0;
}

void halo_detok_free(halo_detok *d) {
    if (!d) return;
    free(d->buf);
    free(d);
}

/* How many bytes at the end of s[0..n) are a proper prefix of a valid UTF-8
 * sequence (0-3): those wait for the next piece. */
static size_t incomplete_tail(const unsigned char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned c = s[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation: look further back */
        size_t need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (need <= k) return 0; /* complete, ASCII, or never valid */
        if (k >= 2) {
            /* the second byte's range depends on the lead (no overlongs, surrogates, > U+10FFFF) */
            unsigned c2 = s[n - k + 1];
            if ((c == 0xE0 && c2 < 0xA0) || (c == 0xED && c2 > 0x9F) || (c == 0xF0 && c2 < 0x90) ||
                (c == 0xF4 && c2 > 0x8F))
                return 0;
        }
        return k;
    }
    return 0;
}

int halo_detok_push(halo_detok *d, int32_t id, const char **out, size_t *len, halo_error *err) {
    *out = "";
    *len = 0;
    if (id < 0 || id >= d->t->n_vocab)
        return halo_error_set(err, HALO_ERR_ARG, "token id %d is outside the vocabulary (%d tokens)", (int)id,
                              (int)d->t->n_vocab);
    size_t plen;
    const char *p = piece_for(d->t, id, d->flags, d->strip, &d->pending, &plen);
    size_t total = d->n_hold + plen;
    if (total > d->cap) {
        size_t cap = d->cap ? d->cap : 64;
        while (cap < total) cap *= 2;
        char *nb = realloc(d->buf, cap);
        if (!nb) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory while decoding");
        d->buf = nb;
        d->cap = cap;
    }
    memcpy(d->buf, d->hold, d->n_hold);
    memcpy(d->buf + d->n_hold, p, plen);
    size_t keep = incomplete_tail((const unsigned char *)d->buf, total);
    memcpy(d->hold, d->buf + total - keep, keep);
    d->n_hold = keep;
    *out = d->buf;
    *len = total - keep;
    return 0;
}

void halo_detok_flush(halo_detok *d, const char **out, size_t *len) {
    /* the held bytes go where the caller looks (buf has room: cap >= 64) */
    if (d->n_hold) {
        memcpy(d->buf, d->hold, d->n_hold);
        *out = d->buf;
        *len = d->n_hold;
    } else {
        *out = "";
        *len = 0;
    }
    d->n_hold = 0;
    d->pending = d->strip;
}
