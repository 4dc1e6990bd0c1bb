/*
 * The vocabulary: reading tokenizer.ggml.* from a GGUF into a halo_tokenizer
 * (texts, types, scores, merges, special ids), the lookup maps, the decoded piece
 * of every token, and the accessors of tokenizer.h.
 *
 * Everything is copied out of the GGUF so the tokenizer outlives the file. Counts
 * and lengths come from the file and are checked before they size anything.
 */
#include "tokenizer/tok_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- GPT-2 byte-level alphabet -------------------------------------------
 * Printable Latin-1 bytes stand for themselves; the other 68 (controls, space,
 * DEL, NBSP, soft hyphen) are shifted to U+0100.. in byte order, so every byte
 * has a visible one-character spelling in the vocabulary. */

static bool byte_is_printable(unsigned b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

/* The shifted bytes, in order: 0..32, 127..160, 173 -> U+0100..U+0143. */
uint32_t tok_byte_to_cp(uint8_t b) {
    if (byte_is_printable(b)) return b;
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return 256u + 33 + (b - 127u);
    return 256u + 67; /* 173 */
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    uint32_t n = cp - 256;
    if (n < 33) return (int)n;
    if (n < 67) return (int)(127 + n - 33);
    return n == 67 ? 173 : -1;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

size_t tok_utf8_valid_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* Decode one valid sequence (caller checked) into a code point. */
static uint32_t utf8_cp(const unsigned char *s, size_t len) {
    if (len == 1) return s[0];
    uint32_t cp = s[0] & (0xFF >> (len + 1));
    for (size_t i = 1; i < len; i++) cp = cp << 6 | (s[i] & 0x3F);
    return cp;
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- id vector --------------------------------------------------------------- */

int tok_vec_reserve(tok_vec *v, size_t extra) {
    uint64_t need;
    if (halo_add_overflow(v->n, extra, &need) || need > SIZE_MAX / sizeof(int32_t) / 2)
        return HALO_ERR_NOMEM;
    if (need <= v->cap) return 0;
    size_t cap = v->cap ? v->cap : 64;
    while (cap < need) cap *= 2;
    int32_t *p = realloc(v->v, cap * sizeof *p);
    if (!p) return HALO_ERR_NOMEM;
    v->v = p;
    v->cap = cap;
    return 0;
}

/* ---- text -> id --------------------------------------------------------------- */

static uint64_t pow2_at_least(uint64_t x) {
    uint64_t p = 16;
    while (p < x) p <<= 1;
    return p;
}

int tok_strmap_build(halo_tokenizer *t, halo_error *err) {
    uint64_t cap = pow2_at_least((uint64_t)t->n_vocab * 2);
    t->map.slots = malloc(cap * sizeof(int32_t));
    if (!t->map.slots) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory for the vocabulary");
    memset(t->map.slots, 0xFF, cap * sizeof(int32_t));
    t->map.mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = t->text + t->off[id];
        size_t n = t->len[id];
        uint64_t h = tok_hash(s, n) & t->map.mask;
        for (;;) {
            int32_t cur = t->map.slots[h];
            if (cur < 0) {
                t->map.slots[h] = id;
                break;
            }
            if (t->len[cur] == n && !memcmp(t->text + t->off[cur], s, n)) {
                t->map.slots[h] = id; /* duplicate text: the later id wins */
                break;
            }
            h = (h + 1) & t->map.mask;
        }
    }
    return 0;
}

int32_t tok_strmap_find(const halo_tokenizer *t, const char *s, size_t n) {
    uint64_t h = tok_hash(s, n) & t->map.mask;
    for (;;) {
        int32_t cur = t->map.slots[h];
        if (cur < 0) return -1;
        if (t->len[cur] == n && !memcmp(t->text + t->off[cur], s, n)) return cur;
        h = (h + 1) & t->map.mask;
    }
}

/* ---- merges ----------------------------------------------------------------------- */

static int merges_build(halo_tokenizer *t, const halo_gguf_array *a, halo_error *err) {
    uint64_t cap = pow2_at_least(a->n * 2 + 16);
    if (cap > (UINT64_C(1) << 40) / sizeof(tok_merge_slot))
        return halo_error_set(err, HALO_ERR_FORMAT, "tokenizer.ggml.merges is too large");
    t->merges.slots = malloc(cap * sizeof(tok_merge_slot));
    if (!t->merges.slots) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory for the merges");
    for (uint64_t i = 0; i < cap; i++) t->merges.slots[i].key = UINT64_MAX;
    t->merges.mask = cap - 1;

    const halo_gguf_string *m = a->data;
    char *buf = NULL;
    size_t buf_cap = 0;
    uint64_t skipped = 0;
    for (uint64_t i = 0; i < a->n; i++) {
        const char *s = m[i].data;
        size_t n = m[i].len;
        /* "left right": the separator is the first space after the first byte (a
         * byte-level token never holds a raw space, but be lenient on position 0) */
        const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
        if (!sp) {
            skipped++;
            continue;
        }
        size_t ln = (size_t)(sp - s), rn = n - ln - 1;
        int32_t l = tok_strmap_find(t, s, ln), r = tok_strmap_find(t, sp + 1, rn);
        if (l < 0 || r < 0) {
            skipped++;
            continue;
        }
        if (ln + rn > buf_cap) {
            char *nb = realloc(buf, ln + rn);
            if (!nb) {
                free(buf);
                return halo_error_set(err, HALO_ERR_NOMEM, "out of memory for the merges");
            }
            buf = nb;
            buf_cap = ln + rn;
        }
        memcpy(buf, s, ln);
        memcpy(buf + ln, sp + 1, rn);
        int32_t res = tok_strmap_find(t, buf, ln + rn);
        if (res < 0) {
            skipped++;
            continue;
        }
        uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
        uint64_t h = tok_hash_u64(key) & t->merges.mask;
        while (t->merges.slots[h].key != UINT64_MAX && t->merges.slots[h].key != key)
            h = (h + 1) & t->merges.mask;
        if (t->merges.slots[h].key == key) continue; /* a repeated merge keeps its first rank */
        t->merges.slots[h].key = key;
        t->merges.slots[h].rank = (int32_t)i;
        t->merges.slots[h].result = res;
    }
    free(buf);
    if (skipped)
        halo_log(HALO_LOG_DEBUG, "tokenizer: %llu of %llu merges name tokens not in the vocabulary",
                 (unsigned long long)skipped, (unsigned long long)a->n);
    return 0;
}

bool tok_merge_find(const tok_mergemap *m, int32_t left, int32_t right, int32_t *rank,
                    int32_t *result) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint64_t h = tok_hash_u64(key) & m->mask;
    for (;;) {
        const tok_merge_slot *s = &m->slots[h];
        if (s->key == UINT64_MAX) return false;
        if (s->key == key) {
            *rank = s->rank;
            *result = s->result;
            return true;
        }
        h = (h + 1) & m->mask;
    }
}

/* ---- pieces ------------------------------------------------------------------------- */

/* "<0x41>" -> 0x41; -1 if the text is not a byte token's */
static int parse_byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                     : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Write token id's decoded bytes to out (room for at least len[id] bytes: no
 * decoding makes a piece longer than its text). Returns the length. */
static size_t make_piece(const halo_tokenizer *t, int32_t id, char *out) {
    const unsigned char *s = (const unsigned char *)t->text + t->off[id];
    size_t n = t->len[id];
    int type = t->type[id];
    if (type == HALO_TOK_TYPE_UNUSED) return 0;
    if (type == HALO_TOK_TYPE_CONTROL || type == HALO_TOK_TYPE_UNKNOWN ||
        type == HALO_TOK_TYPE_USER_DEFINED) {
        memcpy(out, s, n);
        return n;
    }
    if (type == HALO_TOK_TYPE_BYTE) {
        int b = parse_byte_token((const char *)s, n);
        if (b >= 0) {
            out[0] = (char)b;
            return 1;
        }
        memcpy(out, s, n);
        return n;
    }
    size_t o = 0;
    if (t->kind == HALO_TOK_KIND_SPM) {
        /* U+2581 (E2 96 81) stands for a space */
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
                out[o++] = ' ';
                i += 3;
            } else {
                out[o++] = (char)s[i++];
            }
        }
        return o;
    }
    /* byte-level: each character is one byte; characters outside the alphabet
     * (not produced by the converters) are kept as they are */
    for (size_t i = 0; i < n;) {
        size_t cl = tok_utf8_valid_len(s + i, n - i);
        if (cl == 0) {
            out[o++] = (char)s[i++];
            continue;
        }
        int b = tok_cp_to_byte(utf8_cp(s + i, cl));
        if (b >= 0) {
            out[o++] = (char)b;
        } else {
            memcpy(out + o, s + i, cl);
            o += cl;
        }
        i += cl;
    }
    return o;
}

/* ---- special tokens ------------------------------------------------------------- */

typedef struct special_key {
    uint32_t len;
    int32_t id;
    unsigned char first;
} special_key;

/* by first byte, then longest first, then lowest id */
static int cmp_special(const void *a, const void *b) {
    const special_key *x = a, *y = b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static bool is_special_type(int ty) {
    return ty == HALO_TOK_TYPE_CONTROL || ty == HALO_TOK_TYPE_USER_DEFINED || ty == HALO_TOK_TYPE_UNKNOWN;
}

static int specials_build(halo_tokenizer *t, halo_error *err) {
    uint32_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (is_special_type(t->type[id]) && t->len[id] > 0) n++;
    special_key *keys = malloc((n ? n : 1) * sizeof *keys);
    t->special = malloc((n ? n : 1) * sizeof(int32_t));
    if (!keys || !t->special) {
        free(keys);
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    }
    n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (is_special_type(t->type[id]) && t->len[id] > 0)
            keys[n++] = (special_key){t->len[id], id, (unsigned char)t->text[t->off[id]]};
    qsort(keys, n, sizeof *keys, cmp_special);
    memset(t->first, 0, sizeof t->first);
    for (uint32_t i = 0; i < n; i++) {
        t->special[i] = keys[i].id;
        t->first[keys[i].first + 1]++;
    }
    for (int b = 0; b < 256; b++) t->first[b + 1] += t->first[b];
    t->n_special = n;
    free(keys);
    return 0;
}

/* ---- end of generation ------------------------------------------------------------ */

/* Tokens that end generation, found by their text (files rarely list them all
 * in metadata). The llama.cpp tools also force these, and the fill-in-the-middle
 * markers, to be control tokens when a file types them otherwise (Qwen3's "</s>"
 * is a normal token in its GGUF): the type decides whether the text "</s>" in a
 * prompt is that token or plain text, so halo does the same to give the same ids. */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "</s>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", NULL,
};
static const char *const fim_texts[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\xE2\x96\x81<PRE>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "\xE2\x96\x81<SUF>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "\xE2\x96\x81<MID>",
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<|file_sep|>", NULL,
};

static void force_control(halo_tokenizer *t, const char *const *texts) {
    for (const char *const *e = texts; *e; e++) {
        int32_t id = tok_strmap_find(t, *e, strlen(*e));
        if (id < 0 || t->type[id] == HALO_TOK_TYPE_CONTROL) continue;
        halo_log(HALO_LOG_DEBUG, "tokenizer: token %d '%s' is typed %d; treated as a control token", id, *e,
                 t->type[id]);
        t->type[id] = HALO_TOK_TYPE_CONTROL;
    }
}

/* ---- metadata helpers ----------------------------------------------------------- */

static int32_t get_id(const halo_gguf *g, const char *key, int32_t def, int32_t n_vocab) {
    int64_t v;
    if (!halo_gguf_get_i64(g, key, &v)) return def;
    if (v < 0 || v >= n_vocab) {
        if (v != -1)
            halo_log(HALO_LOG_WARN, "tokenizer: %s = %lld is outside the vocabulary (%d tokens); ignored",
                     key, (long long)v, n_vocab);
        return -1;
    }
    return (int32_t)v;
}

static int load(const halo_gguf *g, const halo_tokenizer_options *opts, halo_tokenizer *t,
                halo_error *err) {
    const char *model = halo_gguf_get_str(g, "tokenizer.ggml.model");
    if (!model)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "the file has no tokenizer (tokenizer.ggml.model is missing)");
    if (!strcmp(model, "gpt2")) t->kind = HALO_TOK_KIND_BPE;
    else if (!strcmp(model, "llama")) t->kind = HALO_TOK_KIND_SPM;
    else
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "tokenizer model '%.64s' is not supported (halo handles 'gpt2' byte-level "
                              "BPE and 'llama' SentencePiece)", model);
    snprintf(t->model, sizeof t->model, "%s", model);

    const halo_gguf_array *toks = halo_gguf_get_arr(g, "tokenizer.ggml.tokens");
    if (!toks || toks->type != HALO_GGUF_STRING || toks->n == 0)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "tokenizer.ggml.tokens is missing, empty or not a list of strings");
    if (toks->n > INT32_MAX - 1)
        return halo_error_set(err, HALO_ERR_FORMAT, "tokenizer.ggml.tokens has %llu entries (too many)",
                              (unsigned long long)toks->n);
    t->n_vocab = (int32_t)toks->n;
    size_t nv = (size_t)toks->n;

    const halo_gguf_string *strs = toks->data;
    uint64_t total = 0;
    for (size_t i = 0; i < nv; i++) {
        if (strs[i].len > UINT32_MAX / 2 || halo_add_overflow(total, strs[i].len, &total))
            return halo_error_set(err, HALO_ERR_FORMAT, "token %zu is too long", i);
    }
    if (total > SIZE_MAX / 2) return halo_error_set(err, HALO_ERR_FORMAT, "the vocabulary is too large");
    t->text = malloc(total + 1);
    t->piece = malloc(total + 1);
    t->off = malloc(nv * sizeof *t->off);
    t->len = malloc(nv * sizeof *t->len);
    t->poff = malloc(nv * sizeof *t->poff);
    t->plen = malloc(nv * sizeof *t->plen);
    t->type = malloc(nv);
    t->eog = calloc(nv, 1);
    if (!t->text || !t->piece || !t->off || !t->len || !t->poff || !t->plen || !t->type || !t->eog)
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory for the vocabulary (%zu tokens)", nv);
    uint64_t o = 0;
    for (size_t i = 0; i < nv; i++) {
        if (strs[i].len) memcpy(t->text + o, strs[i].data, strs[i].len);
        t->off[i] = o;
        t->len[i] = (uint32_t)strs[i].len;
        o += strs[i].len;
    }

    const halo_gguf_array *types = halo_gguf_get_arr(g, "tokenizer.ggml.token_type");
    if (types && types->n != toks->n)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "tokenizer.ggml.token_type has %llu entries for %zu tokens",
                              (unsigned long long)types->n, nv);
    for (size_t i = 0; i < nv; i++) {
        int64_t ty = HALO_TOK_TYPE_NORMAL;
        if (types && !halo_gguf_arr_i64(types, i, &ty))
            return halo_error_set(err, HALO_ERR_FORMAT, "tokenizer.ggml.token_type is not numeric");
        if (ty < HALO_TOK_TYPE_NORMAL || ty > HALO_TOK_TYPE_BYTE) ty = HALO_TOK_TYPE_NORMAL;
        t->type[i] = (uint8_t)ty;
    }

    if (t->kind == HALO_TOK_KIND_SPM) {
        const halo_gguf_array *sc = halo_gguf_get_arr(g, "tokenizer.ggml.scores");
        if (sc && sc->n != toks->n)
            return halo_error_set(err, HALO_ERR_FORMAT, "tokenizer.ggml.scores has %llu entries for %zu tokens",
                                  (unsigned long long)sc->n, nv);
        t->score = malloc(nv * sizeof(float));
        if (!t->score) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < nv; i++) {
            double v = 0;
            if (sc && !halo_gguf_arr_f64(sc, i, &v))
                return halo_error_set(err, HALO_ERR_FORMAT, "tokenizer.ggml.scores is not numeric");
            t->score[i] = (float)v;
        }
    }

    int rc = tok_strmap_build(t, err);
    if (rc) return rc;
    force_control(t, eog_texts);
    force_control(t, fim_texts);

    /* pieces */
    o = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t n = make_piece(t, id, t->piece + o);
        t->poff[id] = o;
        t->plen[id] = (uint32_t)n;
        o += n;
    }

    bool default_add_bos = false;
    if (t->kind == HALO_TOK_KIND_BPE) {
        const halo_gguf_array *mg = halo_gguf_get_arr(g, "tokenizer.ggml.merges");
        if (!mg || mg->type != HALO_GGUF_STRING)
            return halo_error_set(err, HALO_ERR_FORMAT,
                                  "a BPE vocabulary needs tokenizer.ggml.merges (missing or not strings)");
        if ((rc = merges_build(t, mg, err))) return rc;
        for (int b = 0; b < 256; b++) {
            char u[4];
            size_t n = utf8_put(tok_byte_to_cp((uint8_t)b), u);
            t->byte_tok[b] = tok_strmap_find(t, u, n);
        }
        const char *pre = opts && opts->pre_override ? opts->pre_override
                                                     : halo_gguf_get_str(g, "tokenizer.ggml.pre");
        if (!pre) {
            halo_log(HALO_LOG_WARN, "tokenizer: tokenizer.ggml.pre is missing; using the 'default' "
                                    "pre-tokenizer, tokens may differ from the model's own");
            pre = "default";
        }
        if ((rc = tok_pretok_setup(t, pre, &default_add_bos, err))) return rc;
        snprintf(t->pre, sizeof t->pre, "%s", pre);
    } else {
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            t->byte_tok[b] = tok_strmap_find(t, name, 6);
        }
        default_add_bos = true;
        t->spm_newline_alone = true;
        for (int32_t id = 0; id < t->n_vocab && t->spm_newline_alone; id++)
            if (t->len[id] > 1 && memchr(t->text + t->off[id], '\n', t->len[id])) t->spm_newline_alone = false;
    }

    if ((rc = specials_build(t, err))) return rc;

    bool spm = t->kind == HALO_TOK_KIND_SPM;
    t->bos = get_id(g, "tokenizer.ggml.bos_token_id", spm && t->n_vocab > 1 ? 1 : -1, t->n_vocab);
    t->eos = get_id(g, "tokenizer.ggml.eos_token_id", spm && t->n_vocab > 2 ? 2 : -1, t->n_vocab);
    t->unk = get_id(g, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, t->n_vocab);
    t->pad = get_id(g, "tokenizer.ggml.padding_token_id", -1, t->n_vocab);
    t->eot = get_id(g, "tokenizer.ggml.eot_token_id", -1, t->n_vocab);
    t->eom = get_id(g, "tokenizer.ggml.eom_token_id", -1, t->n_vocab);
    bool b;
    t->add_bos = halo_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) ? b : default_add_bos;
    t->add_eos = halo_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b) ? b : false;
    t->add_space_prefix =
        spm && (halo_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b) ? b : true);
    if (t->add_bos && t->bos < 0) {
        halo_log(HALO_LOG_WARN, "tokenizer: the model asks for a BOS token but names none");
        t->add_bos = false;
    }
    if (t->add_eos && t->eos < 0) t->add_eos = false;

    /* end of generation */
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;
    for (const char *const *e = eog_texts; *e; e++) {
        int32_t id = tok_strmap_find(t, *e, strlen(*e));
        if (id < 0) continue;
        t->eog[id] = 1;
        if (t->eot < 0 && strcmp(*e, "<|endoftext|>") && strcmp(*e, "<|end_of_text|>") && strcmp(*e, "</s>"))
            t->eot = id;
    }
    return 0;
}

int halo_tokenizer_load_ex(const halo_gguf *g, const halo_tokenizer_options *opts,
                           halo_tokenizer **out, halo_error *err) {
    *out = NULL;
    halo_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    int rc = load(g, opts, t, err);
    if (rc) {
        halo_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int halo_tokenizer_load(const halo_gguf *g, halo_tokenizer **out, halo_error *err) {
    return halo_tokenizer_load_ex(g, NULL, out, err);
}

void halo_tokenizer_free(halo_tokenizer *t) {
    if (!t) return;
    tok_pretok_free(t);
    free(t->text);
    free(t->off);
    free(t->len);
    free(t->type);
    free(t->score);
    free(t->map.slots);
    free(t->piece);
    free(t->poff);
    free(t->plen);
    free(t->merges.slots);
    free(t->special);
    free(t->eog);
    free(t);
}

/* ---- accessors ------------------------------------------------------------------- */

halo_tok_kind halo_tok_kind_of(const halo_tokenizer *t) { return t->kind; }
const char *halo_tok_model_name(const halo_tokenizer *t) { return t->model; }
const char *halo_tok_pre_name(const halo_tokenizer *t) { return t->pre; }
int32_t halo_tok_n_vocab(const halo_tokenizer *t) { return t->n_vocab; }
int32_t halo_tok_bos(const halo_tokenizer *t) { return t->bos; }
int32_t halo_tok_eos(const halo_tokenizer *t) { return t->eos; }
int32_t halo_tok_eot(const halo_tokenizer *t) { return t->eot; }
int32_t halo_tok_unk(const halo_tokenizer *t) { return t->unk; }
int32_t halo_tok_pad(const halo_tokenizer *t) { return t->pad; }
bool halo_tok_add_bos(const halo_tokenizer *t) { return t->add_bos; }
bool halo_tok_add_eos(const halo_tokenizer *t) { return t->add_eos; }

bool halo_tok_is_eog(const halo_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

int halo_tok_type_of(const halo_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->type[id] : HALO_TOK_TYPE_UNDEFINED;
}

const char *halo_tok_text(const halo_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return NULL;
    }
    *len = t->len[id];
    return t->text + t->off[id];
}

const char *halo_tok_piece(const halo_tokenizer *t, int32_t id, bool special, size_t *len) {
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return NULL;
    }
    int ty = t->type[id];
    *len = (!special && (ty == HALO_TOK_TYPE_CONTROL || ty == HALO_TOK_TYPE_UNKNOWN)) ? 0 : t->plen[id];
    return t->piece + t->poff[id];
}

int32_t halo_tok_find(const halo_tokenizer *t, const char *text, size_t len) {
    return tok_strmap_find(t, text, len);
}
