/*
 * Byte-level BPE: pre-tokenize a fragment into words, then merge each word's
 * byte tokens pair by pair, always the pair of lowest merge rank first (the
 * leftmost among equals), until no pair of the word is a merge.
 *
 * Symbols carry token ids, so a merge lookup is one hash probe on the pair of
 * ids. Each word uses a min-heap of candidate pairs with lazy invalidation: a
 * popped pair is used only if both symbols still hold the ids it was made from
 * and are still neighbours. That keeps a long word (a run of 100k spaces or
 * digits) at O(n log n) instead of the O(n^2) of rescanning.
 *
 * Natural text repeats its words, so each encode call keeps a cache from word
 * bytes to their ids.
 */
#include "tokenizer/tok_impl.h"

#include <stdlib.h>
#include <string.h>

typedef struct bigram {
    int32_t rank;
    int32_t left, right; /* symbol indices */
    int32_t lid, rid;    /* their ids when the pair was made */
} bigram;

typedef struct cache_slot {
    const char *key; /* into the text being encoded; NULL = empty */
    size_t len;
    size_t start; /* into cache_ids */
    uint32_t count;
} cache_slot;

#define CACHE_MAX_ENTRIES (1u << 20)

struct tok_bpe_ctx {
    tok_spanvec words;
    cache_slot *slots;
    size_t cap, used;
    tok_vec cache_ids;
    int32_t *id, *prev, *next;
    size_t sym_cap;
    bigram *heap;
    size_t heap_n, heap_cap;
    char *enc;
    size_t enc_cap;
};

tok_bpe_ctx *tok_bpe_ctx_new(void) { return calloc(1, sizeof(tok_bpe_ctx)); }

void tok_bpe_ctx_free(tok_bpe_ctx *c) {
    if (!c) return;
    free(c->words.v);
    free(c->slots);
    free(c->cache_ids.v);
    free(c->id);
    free(c->prev);
    free(c->next);
    free(c->heap);
    free(c->enc);
    free(c);
}

/* ---- heap ------------------------------------------------------------------ */

static bool bigram_before(const bigram *a, const bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int heap_push(tok_bpe_ctx *c, bigram b) {
    if (c->heap_n == c->heap_cap) {
        size_t cap = c->heap_cap ? c->heap_cap * 2 : 64;
        if (cap > SIZE_MAX / sizeof(bigram)) return HALO_ERR_NOMEM;
        bigram *p = realloc(c->heap, cap * sizeof *p);
        if (!p) return HALO_ERR_NOMEM;
        c->heap = p;
        c->heap_cap = cap;
    }
    size_t i = c->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &c->heap[parent])) break;
        c->heap[i] = c->heap[parent];
        i = parent;
    }
    c->heap[i] = b;
    return 0;
}

static bigram heap_pop(tok_bpe_ctx *c) {
    bigram top = c->heap[0];
    bigram last = c->heap[--c->heap_n];
    size_t i = 0, n = c->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const bigram *best = &last;
        if (l < n && bigram_before(&c->heap[l], best)) m = l, best = &c->heap[l];
        if (r < n && bigram_before(&c->heap[r], best)) m = r;
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

static int try_pair(const halo_tokenizer *t, tok_bpe_ctx *c, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 0;
    int32_t lid = c->id[left], rid = c->id[right], rank, res;
    if (lid < 0 || rid < 0 || !tok_merge_find(&t->merges, lid, rid, &rank, &res)) return 0;
    return heap_push(c, (bigram){rank, left, right, lid, rid});
}

/* ---- one word ------------------------------------------------------------------ */

static int grow_syms(tok_bpe_ctx *c, size_t n) {
    if (n <= c->sym_cap) return 0;
    size_t cap = c->sym_cap ? c->sym_cap : 64;
    while (cap < n) cap *= 2;
    if (cap > INT32_MAX) return HALO_ERR_NOMEM;
    int32_t *a = realloc(c->id, cap * sizeof *a);
    if (a) c->id = a;
    int32_t *b = realloc(c->prev, cap * sizeof *b);
    if (b) c->prev = b;
    int32_t *d = realloc(c->next, cap * sizeof *d);
    if (d) c->next = d;
    if (!a || !b || !d) return HALO_ERR_NOMEM;
    c->sym_cap = cap;
    return 0;
}

static int push_or_unk(const halo_tokenizer *t, tok_vec *out, int32_t id) {
    if (id < 0) id = t->unk; /* a byte the vocabulary cannot spell */
    return id >= 0 ? tok_vec_push(out, id) : 0;
}

static int bpe_word(const halo_tokenizer *t, tok_bpe_ctx *c, const unsigned char *w, size_t n,
                    tok_vec *out) {
    if (t->ignore_merges) {
        /* the word's byte-level spelling, if it is a token, is taken whole */
        if (n > SIZE_MAX / 2 - 8) return HALO_ERR_NOMEM;
        if (2 * n > c->enc_cap) {
            char *p = realloc(c->enc, 2 * n);
            if (!p) return HALO_ERR_NOMEM;
            c->enc = p;
            c->enc_cap = 2 * n;
        }
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t cp = tok_byte_to_cp(w[i]);
            if (cp < 0x80) {
                c->enc[o++] = (char)cp;
            } else {
                c->enc[o++] = (char)(0xC0 | cp >> 6);
                c->enc[o++] = (char)(0x80 | (cp & 0x3F));
            }
        }
        int32_t whole = tok_strmap_find(t, c->enc, o);
        if (whole >= 0) return tok_vec_push(out, whole);
    }
    if (n == 1) return push_or_unk(t, out, t->byte_tok[w[0]]);
    if (n > INT32_MAX || grow_syms(c, n)) return HALO_ERR_NOMEM;
    int32_t sn = (int32_t)n;
    for (int32_t i = 0; i < sn; i++) {
        c->id[i] = t->byte_tok[w[i]];
        c->prev[i] = i - 1;
        c->next[i] = i + 1 < sn ? i + 1 : -1;
    }
    c->heap_n = 0;
    for (int32_t i = 0; i + 1 < sn; i++)
        if (try_pair(t, c, i, i + 1)) return HALO_ERR_NOMEM;
    while (c->heap_n) {
        bigram b = heap_pop(c);
        if (c->next[b.left] != b.right || c->id[b.left] != b.lid || c->id[b.right] != b.rid) continue;
        int32_t rank, res;
        tok_merge_find(&t->merges, b.lid, b.rid, &rank, &res);
        /* the right symbol folds into the left one */
        c->id[b.left] = res;
        c->id[b.right] = -2;
        int32_t nx = c->next[b.right];
        c->next[b.left] = nx;
        if (nx >= 0) c->prev[nx] = b.left;
        if (try_pair(t, c, c->prev[b.left], b.left) || try_pair(t, c, b.left, nx)) return HALO_ERR_NOMEM;
    }
    for (int32_t i = 0; i >= 0; i = c->next[i])
        if (push_or_unk(t, out, c->id[i])) return HALO_ERR_NOMEM;
    return 0;
}

/* ---- word cache -------------------------------------------------------------------- */

static cache_slot *cache_find(tok_bpe_ctx *c, const char *w, size_t n, uint64_t h) {
    if (!c->cap) return NULL;
    size_t mask = c->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        cache_slot *s = &c->slots[i];
        if (!s->key || (s->len == n && !memcmp(s->key, w, n))) return s;
    }
}

static int cache_grow(tok_bpe_ctx *c) {
    size_t cap = c->cap ? c->cap * 2 : 4096;
    cache_slot *ns = calloc(cap, sizeof *ns);
    if (!ns) return HALO_ERR_NOMEM;
    for (size_t i = 0; i < c->cap; i++) {
        cache_slot *s = &c->slots[i];
        if (!s->key) continue;
        size_t j = tok_hash(s->key, s->len) & (cap - 1);
        while (ns[j].key) j = (j + 1) & (cap - 1);
        ns[j] = *s;
    }
    free(c->slots);
    c->slots = ns;
    c->cap = cap;
    return 0;
}

int tok_bpe_encode(const halo_tokenizer *t, tok_bpe_ctx *c, const char *text, size_t len,
                   tok_vec *out, halo_error *err) {
    int rc = tok_pretok_split(t, text, len, &c->words, err);
    if (rc) return rc;
    for (size_t k = 0; k < c->words.n; k++) {
        const char *w = text + c->words.v[k].off;
        size_t n = c->words.v[k].len;
        if (n == 0) continue;
        uint64_t h = tok_hash(w, n);
        cache_slot *s = cache_find(c, w, n, h);
        if (s && s->key) {
            if (!s->count) continue;
            if (tok_vec_reserve(out, s->count)) goto nomem;
            memcpy(out->v + out->n, c->cache_ids.v + s->start, s->count * sizeof(int32_t));
            out->n += s->count;
            continue;
        }
        size_t before = out->n;
        if (bpe_word(t, c, (const unsigned char *)w, n, out)) goto nomem;
        if (c->used >= CACHE_MAX_ENTRIES) continue;
        if ((c->used + 1) * 2 > c->cap) {
            if (cache_grow(c)) goto nomem;
            s = cache_find(c, w, n, h);
        }
        size_t cnt = out->n - before;
        if (tok_vec_reserve(&c->cache_ids, cnt)) goto nomem;
        if (cnt) memcpy(c->cache_ids.v + c->cache_ids.n, out->v + before, cnt * sizeof(int32_t));
        *s = (cache_slot){w, n, c->cache_ids.n, (uint32_t)cnt};
        c->cache_ids.n += cnt;
        c->used++;
    }
    return 0;
nomem:
    return halo_error_set(err, HALO_ERR_NOMEM, "out of memory while tokenizing");
}
