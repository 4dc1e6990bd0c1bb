/*
 * SentencePiece BPE ("llama" vocabularies): spaces are written U+2581 (and one is
 * put in front when the model asks), the text starts as one symbol per UTF-8
 * character, and neighbouring symbols are merged while their concatenation is a
 * token, highest token score first (leftmost among equals). A final symbol that
 * is not a token (a character the vocabulary lacks) is spelled with byte tokens
 * <0xXX>. No pre-tokenizer: the whole fragment is one word, so the candidate
 * pairs live in a heap (O(n log n) even for a long text).
 */
#include "tokenizer/tok_impl.h"

#include <stdlib.h>
#include <string.h>

typedef struct spm_pair {
    float score;
    int32_t left, right;
    size_t size; /* bytes of both symbols when the pair was made */
} spm_pair;

typedef struct spm_state {
    const char *s;
    size_t *start, *n; /* symbol text: s + start[i], n[i] bytes (0 = merged away) */
    int32_t *prev, *next;
    spm_pair *heap;
    size_t heap_n, heap_cap;
} spm_state;

static bool pair_before(const spm_pair *a, const spm_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(spm_state *st, spm_pair p) {
    if (st->heap_n == st->heap_cap) {
        size_t cap = st->heap_cap ? st->heap_cap * 2 : 64;
        if (cap > SIZE_MAX / sizeof(spm_pair)) return HALO_ERR_NOMEM;
        spm_pair *q = realloc(st->heap, cap * sizeof *q);
        if (!q) return HALO_ERR_NOMEM;
        st->heap = q;
        st->heap_cap = cap;
    }
    size_t i = st->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &st->heap[parent])) break;
        st->heap[i] = st->heap[parent];
        i = parent;
    }
    st->heap[i] = p;
    return 0;
}

static spm_pair heap_pop(spm_state *st) {
    spm_pair top = st->heap[0];
    spm_pair last = st->heap[--st->heap_n];
    size_t i = 0, n = st->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const spm_pair *best = &last;
        if (l < n && pair_before(&st->heap[l], best)) m = l, best = &st->heap[l];
        if (r < n && pair_before(&st->heap[r], best)) m = r;
        if (m == i) break;
        st->heap[i] = st->heap[m];
        i = m;
    }
    if (n) st->heap[i] = last;
    return top;
}

static int try_pair(const halo_tokenizer *t, spm_state *st, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 0;
    size_t size = st->n[left] + st->n[right]; /* neighbours are contiguous in s */
    int32_t id = tok_strmap_find(t, st->s + st->start[left], size);
    if (id < 0) return 0;
    return heap_push(st, (spm_pair){t->score[id], left, right, size});
}

/* Merge and emit the symbols of s[a .. a+n). */
static int spm_piece(const halo_tokenizer *t, spm_state *st, size_t a, size_t n, tok_vec *out) {
    const char *s = st->s;
    /* one symbol per character; a byte that starts no valid character is its own */
    int32_t ns = 0;
    for (size_t i = a; i < a + n;) {
        size_t cl = tok_utf8_valid_len((const unsigned char *)s + i, a + n - i);
        if (!cl) cl = 1;
        st->start[ns] = i;
        st->n[ns] = cl;
        st->prev[ns] = ns - 1;
        st->next[ns] = -1;
        if (ns > 0) st->next[ns - 1] = ns;
        ns++;
        i += cl;
    }
    st->heap_n = 0;
    for (int32_t i = 0; i + 1 < ns; i++)
        if (try_pair(t, st, i, i + 1)) return HALO_ERR_NOMEM;
    while (st->heap_n) {
        spm_pair p = heap_pop(st);
        /* stale if either side changed since the pair was made */
        if (st->n[p.left] == 0 || st->n[p.right] == 0 || st->n[p.left] + st->n[p.right] != p.size) continue;
        st->n[p.left] += st->n[p.right];
        st->n[p.right] = 0;
        int32_t nx = st->next[p.right];
        st->next[p.left] = nx;
        if (nx >= 0) st->prev[nx] = p.left;
        if (try_pair(t, st, st->prev[p.left], p.left) || try_pair(t, st, p.left, nx)) return HALO_ERR_NOMEM;
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = st->next[i]) {
        int32_t id = tok_strmap_find(t, s + st->start[i], st->n[i]);
        if (id >= 0) {
            if (tok_vec_push(out, id)) return HALO_ERR_NOMEM;
            continue;
        }
        /* not in the vocabulary: its bytes */
        for (size_t k = 0; k < st->n[i]; k++) {
            int32_t b = t->byte_tok[(unsigned char)s[st->start[i] + k]];
            if (b < 0) b = t->unk;
            if (b >= 0 && tok_vec_push(out, b)) return HALO_ERR_NOMEM;
        }
    }
    return 0;
}

int tok_spm_encode(const halo_tokenizer *t, const char *text, size_t len, bool prefix_space,
                   tok_vec *out, halo_error *err) {
    /* escaped text: U+2581 for each space (3 bytes for 1) */
    size_t spaces = prefix_space ? 1 : 0;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    uint64_t elen;
    if (halo_mul_overflow(spaces, 2, &elen) || halo_add_overflow(elen, len + (prefix_space ? 1 : 0), &elen) ||
        elen > INT32_MAX)
        return halo_error_set(err, HALO_ERR_ARG, "text too large to tokenize in one piece (%zu bytes)", len);
    int rc = 0;
    spm_state st = {0};
    char *s = malloc(elen ? elen : 1);
    st.start = malloc((elen ? elen : 1) * sizeof(size_t));
    st.n = malloc((elen ? elen : 1) * sizeof(size_t));
    st.prev = malloc((elen ? elen : 1) * sizeof(int32_t));
    st.next = malloc((elen ? elen : 1) * sizeof(int32_t));
    if (!s || !st.start || !st.n || !st.prev || !st.next) goto nomem;
    size_t o = 0;
    if (prefix_space) memcpy(s + o, "\xE2\x96\x81", 3), o += 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') memcpy(s + o, "\xE2\x96\x81", 3), o += 3;
        else s[o++] = text[i];
    }
    st.s = s;

    /* Pieces that no merge can cross are encoded separately: a newline when no
     * longer token contains one (true of SentencePiece vocabularies, which spell
     * it <0x0A>). Same result, but small heaps instead of one as long as the text. */
    for (size_t a = 0; a < o;) {
        size_t b = a;
        if (t->spm_newline_alone) {
            const char *nl = memchr(s + a, '\n', o - a);
            b = nl ? (size_t)(nl - s) : o;
            if (b == a) b = a + 1; /* the newline itself */
        } else {
            b = o;
        }
        if (spm_piece(t, &st, a, b - a, out)) goto nomem;
        a = b;
    }
    goto done;
nomem:
    rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory while tokenizing");
done:
    free(s);
    free(st.start);
    free(st.n);
    free(st.prev);
    free(st.next);
    free(st.heap);
    return rc;
}
