/*
 * tokenizer internals shared by the files of tokenizer/: the tokenizer struct,
 * the hash maps, the growable id vector and UTF-8 helpers. Not part of the API;
 * other layers include tokenizer/tokenizer.h only.
 */
#ifndef HALO_TOK_IMPL_H
#define HALO_TOK_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/tokenizer.h"
#include "util/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOK_MAX_REGEX 8

/* ---- hash maps ------------------------------------------------------------ */

/* 64-bit FNV-1a: short keys (tokens, words) dominate, and it has no alignment needs. */
static inline uint64_t tok_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}
static inline uint64_t tok_hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Vocabulary text -> id. Open addressing over ids; keys live in the tokenizer's
 * text arena, so a slot is just an int32 (-1 = empty). */
typedef struct tok_strmap {
    int32_t *slots;
    uint64_t mask;
} tok_strmap;

/* (left id, right id) -> merge rank and merged id. */
typedef struct tok_merge_slot {
    uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
    int32_t rank;
    int32_t result;
} tok_merge_slot;
typedef struct tok_mergemap {
    tok_merge_slot *slots;
    uint64_t mask;
} tok_mergemap;

/* ---- the tokenizer ------------------------------------------------------- */

struct halo_tokenizer {
    halo_tok_kind kind;
    char model[16];
    char pre[48];
    int32_t n_vocab;

    /* vocabulary texts: token i is text + off[i], len[i] bytes */
    char *text;
    uint64_t *off;
    uint32_t *len;
    uint8_t *type;  /* halo_tok_type */
    float *score;   /* SPM merge priority; NULL for BPE */
    tok_strmap map; /* text -> id (the later id wins on duplicates) */

    /* decoded pieces (special rendering), same layout */
    char *piece;
    uint64_t *poff;
    uint32_t *plen;

    /* BPE: the token of each byte's byte-level character; SPM: <0xXX> tokens */
    int32_t byte_tok[256];
    tok_mergemap merges;
    bool ignore_merges; /* a word that is a token is taken whole (llama3, tekken) */

    /* pre-tokenizer regexes, applied one after the other */
    pcre2_code *re[TOK_MAX_REGEX];
    int n_re;

    /* special tokens for partitioning, by first byte then longest first:
     * special[first[b] .. first[b+1]) start with byte b */
    int32_t *special;
    uint32_t n_special;
    uint32_t first[257];

    int32_t bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos, add_space_prefix;
    bool spm_newline_alone; /* SPM: no token longer than one byte contains '\n' */
    uint8_t *eog; /* per token: 1 if it ends generation */
};

int tok_strmap_build(halo_tokenizer *t, halo_error *err);
int32_t tok_strmap_find(const halo_tokenizer *t, const char *s, size_t n);

/* false if the pair is no merge */
bool tok_merge_find(const tok_mergemap *m, int32_t left, int32_t right, int32_t *rank,
                    int32_t *result);

/* ---- growable id vector -------------------------------------------------- */

typedef struct tok_vec {
    int32_t *v;
    size_t n, cap;
} tok_vec;

int tok_vec_reserve(tok_vec *v, size_t extra);
static inline int tok_vec_push(tok_vec *v, int32_t id) {
    if (v->n == v->cap && tok_vec_reserve(v, 1)) return HALO_ERR_NOMEM;
    v->v[v->n++] = id;
    return 0;
}

/* ---- UTF-8 --------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 if the bytes there
 * do not start one (bad lead, bad continuation, overlong, surrogate, > U+10FFFF,
 * truncated). */
size_t tok_utf8_valid_len(const unsigned char *s, size_t n);

/* ---- pre-tokenizer (pretok.c) ---------------------------------------------- */

typedef struct tok_span {
    size_t off, len;
    bool raw; /* invalid UTF-8 bytes: kept out of the regexes, BPE'd as bytes */
} tok_span;

typedef struct tok_spanvec {
    tok_span *v;
    size_t n, cap;
} tok_spanvec;

/* Compile the regex list of a pre-tokenizer name into t (re, n_re, ignore_merges and
 * the default add_bos). HALO_ERR_UNSUPPORTED for an unknown name. */
int tok_pretok_setup(halo_tokenizer *t, const char *name, bool *default_add_bos, halo_error *err);
void tok_pretok_free(halo_tokenizer *t);
/* Cut text[0..len) into words: out gets spans relative to text. */
int tok_pretok_split(const halo_tokenizer *t, const char *text, size_t len, tok_spanvec *out,
                     halo_error *err);

/* ---- models ---------------------------------------------------------------- */

/* Per-call BPE state (word cache, scratch); created by encode. */
typedef struct tok_bpe_ctx tok_bpe_ctx;
tok_bpe_ctx *tok_bpe_ctx_new(void);
void tok_bpe_ctx_free(tok_bpe_ctx *c);
/* Encode one raw-text fragment (no special tokens in it) with byte-level BPE. */
int tok_bpe_encode(const halo_tokenizer *t, tok_bpe_ctx *c, const char *text, size_t len,
                   tok_vec *out, halo_error *err);
/* Encode one raw-text fragment with SentencePiece; `prefix_space` adds the U+2581. */
int tok_spm_encode(const halo_tokenizer *t, const char *text, size_t len, bool prefix_space,
                   tok_vec *out, halo_error *err);

/* GPT-2 byte-level alphabet: byte -> code point, and back (-1 if not in it). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);

#endif /* HALO_TOK_IMPL_H */
