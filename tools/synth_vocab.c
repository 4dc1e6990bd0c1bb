/*
 * synth_vocab — a byte-level BPE vocabulary of any size, laid out like the real one.
 *
 * Layout (as llama.cpp's converter writes Qwen and Llama 3 vocabularies): ids 0..255 are
 * the 256 byte symbols in GPT-2's byte-to-unicode order; then merged tokens, each the
 * concatenation of two earlier tokens with the merge rule "A B" at the same rank, so
 * every token is reachable and merge ranks respect creation order; then the family's
 * special tokens (control = 3, user-defined = 4); then "[PADn]" placeholders (unused = 5)
 * up to the embedding's row count.
 *
 * Merges are not learned from text (there is none to learn from) but drawn so the tokens
 * look like a real vocabulary's: lower-case word pieces, words with a leading space ("Ġ"),
 * capitalized words, runs of spaces and newlines, punctuation pairs, digit groups of up to
 * three, and UTF-8 characters (2-byte Latin/Cyrillic, 3-byte CJK) and words of them. Each
 * class only merges within itself, so no token crosses the pre-tokenizer's split points
 * (that would make it unreachable) and none can collide with a special token's text.
 * Deterministic: the vocabulary depends only on the family and the size.
 */
#include "synth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- GPT-2 byte-to-unicode ------------------------------------------------------ */

static bool byte_printable(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* code point of each byte, and the byte of each of the first 256 token ids */
static void byte_tables(uint32_t cp[256], uint8_t id_byte[256]) {
    int n = 0, extra = 0;
    for (int b = 0; b < 256; b++)
        if (byte_printable(b)) {
            cp[b] = (uint32_t)b;
            id_byte[n++] = (uint8_t)b;
        }
    for (int b = 0; b < 256; b++)
        if (!byte_printable(b)) {
            cp[b] = 256u + (uint32_t)extra++;
            id_byte[n++] = (uint8_t)b;
        }
}

/* ---- the generator ------------------------------------------------------------------ */

enum { POOL_LOWER, POOL_SWORD, POOL_CAP, POOL_WS, POOL_PUNCT, POOL_DIGIT, POOL_U8PART,
       POOL_U8CHAR, POOL_U8WORD, POOL_COUNT };

typedef struct pool {
    int32_t *id;
    int64_t n, cap;
} pool;

typedef struct gen {
    uint8_t *bytes; /* all tokens' raw bytes, back to back */
    size_t n_bytes, cap_bytes;
    uint64_t *off;  /* token i: bytes[off[i] .. off[i] + len[i]) */
    uint32_t *len;
    int64_t n, cap;
    int32_t *hash;  /* open addressing, -1 empty */
    uint64_t hash_mask;
    int32_t (*merge)[2];
    int64_t n_merge;
    pool pools[POOL_COUNT];
    int32_t byte_id[256];
    uint64_t rng;
    bool oom;
} gen;

static uint64_t gen_rand(gen *g) {
    uint64_t z = (g->rng += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}
static double gen_unit(gen *g) { return (double)(gen_rand(g) >> 11) * 0x1.0p-53; }

static uint64_t fnv(const uint8_t *p, size_t n) {
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    return h;
}

/* slot of bytes p[0..n) in the hash: either its token id or an empty slot */
static uint64_t hash_slot(const gen *g, const uint8_t *p, size_t n) {
    uint64_t s = fnv(p, n) & g->hash_mask;
    for (;;) {
        int32_t id = g->hash[s];
        if (id < 0) return s;
        if (g->len[id] == n && !memcmp(g->bytes + g->off[id], p, n)) return s;
        s = (s + 1) & g->hash_mask;
    }
}

static void pool_add(gen *g, int which, int32_t id) {
    pool *p = &g->pools[which];
    if (p->n == p->cap) {
        int64_t cap = p->cap ? p->cap * 2 : 1024;
        int32_t *x = realloc(p->id, (size_t)cap * sizeof *x);
        if (!x) {
            g->oom = true;
            return;
        }
        p->id = x;
        p->cap = cap;
    }
    p->id[p->n++] = id;
}

/* Add the token with bytes p[0..n); -1 if it exists already (or memory ran out). */
static int32_t gen_add(gen *g, const uint8_t *p, size_t n) {
    if (g->oom) return -1;
    uint64_t s = hash_slot(g, p, n);
    if (g->hash[s] >= 0) return -1;
    if (g->n_bytes + n > g->cap_bytes) {
        size_t cap = (g->cap_bytes + n) * 2;
        uint8_t *b = realloc(g->bytes, cap);
        if (!b) {
            g->oom = true;
            return -1;
        }
        g->bytes = b;
        g->cap_bytes = cap;
    }
    int32_t id = (int32_t)g->n;
    memcpy(g->bytes + g->n_bytes, p, n);
    g->off[id] = g->n_bytes;
    g->len[id] = (uint32_t)n;
    g->n_bytes += n;
    g->hash[s] = id;
    g->n++;
    return id;
}

/* Merge tokens a and b into a new token placed in pool `into`; false if it exists or
 * would be longer than max_len. */
static bool try_merge(gen *g, int32_t a, int32_t b, size_t max_len, int into) {
    uint8_t buf[64];
    size_t la = g->len[a], lb = g->len[b];
    if (la + lb > max_len || la + lb > sizeof buf) return false;
    memcpy(buf, g->bytes + g->off[a], la);
    memcpy(buf + la, g->bytes + g->off[b], lb);
    int32_t id = gen_add(g, buf, la + lb);
    if (id < 0) return false;
    g->merge[g->n_merge][0] = a;
    g->merge[g->n_merge][1] = b;
    g->n_merge++;
    pool_add(g, into, id);
    return true;
}

/* A pool member, biased towards early (short, "frequent") ones as in a real vocabulary. */
static int32_t pick(gen *g, int which) {
    const pool *p = &g->pools[which];
    if (p->n == 0) return -1;
    double u = gen_unit(g);
    return p->id[(int64_t)((double)p->n * u * u)];
}

/* A lower-case letter with English letter frequencies (per mille, approximately). */
static int32_t pick_letter(gen *g) {
    static const char letters[] = "etaoinshrdlcumwfgypbvkjxqz";
    static const int weight[] = {127, 91, 82, 75, 70, 67, 63, 61, 60, 43, 40, 28, 28,
                                 24,  24, 22, 20, 20, 19, 15, 10, 8,  2,  2,  1,  1};
    int r = (int)(gen_rand(g) % 1000), acc = 0;
    for (int i = 0; i < 26; i++) {
        acc += weight[i];
        if (r < acc) return g->byte_id[(uint8_t)letters[i]];
    }
    return g->byte_id['e'];
}

static int32_t short_lower(gen *g) {
    int32_t t = pick(g, POOL_LOWER);
    return (gen_rand(g) & 1) && t >= 0 && g->len[t] <= 3 ? t : pick_letter(g);
}

/* One attempt at a new merged token; false if it collided (the caller retries). */
static bool gen_step(gen *g) {
    uint64_t r = gen_rand(g) % 100;
    int32_t a, b;
    if (r < 35) { /* word pieces: "ing", "tion"; frequent letters start more of them */
        a = gen_rand(g) % 3 == 0 ? pick_letter(g) : pick(g, POOL_LOWER);
        return try_merge(g, a, short_lower(g), 12, POOL_LOWER);
    }
    if (r < 60) { /* words after a space: "Ġthe" */
        if (gen_rand(g) % 5 < 2 || g->pools[POOL_SWORD].n == 0)
            return try_merge(g, g->byte_id[' '], pick(g, POOL_LOWER), 13, POOL_SWORD);
        return try_merge(g, pick(g, POOL_SWORD), short_lower(g), 13, POOL_SWORD);
    }
    if (r < 67) { /* capitalized: "The", "ĠThe" */
        uint64_t k = gen_rand(g) % 4;
        int32_t upper = g->byte_id['A' + gen_rand(g) % 26];
        if (k < 2) return try_merge(g, upper, pick(g, POOL_LOWER), 12, POOL_CAP);
        if (k == 2 && g->pools[POOL_CAP].n)
            return try_merge(g, g->byte_id[' '], pick(g, POOL_CAP), 13, POOL_SWORD);
        return try_merge(g, g->byte_id[' '], upper, 2, POOL_SWORD);
    }
    if (r < 71) { /* whitespace runs: "ĠĠĠ", "ĊĊ", "ĉĉ" */
        a = pick(g, POOL_WS);
        b = pick(g, POOL_WS);
        return try_merge(g, a, b, 16, POOL_WS);
    }
    if (r < 77) { /* punctuation: "()", "->", ");" */
        a = pick(g, POOL_PUNCT);
        b = g->pools[POOL_PUNCT].id[gen_rand(g) % 32]; /* the 32 single punctuation bytes */
        return try_merge(g, a, b, 4, POOL_PUNCT);
    }
    if (r < 80) { /* digit groups of at most three, as the pre-tokenizers split numbers */
        a = pick(g, POOL_DIGIT);
        return try_merge(g, a, g->byte_id['0' + gen_rand(g) % 10], 3, POOL_DIGIT);
    }
    /* UTF-8: characters of 2 bytes (Latin, Greek, Cyrillic) or 3 bytes (CJK), then words */
    uint64_t k = gen_rand(g) % 10;
    if (k < 4 || g->pools[POOL_U8CHAR].n == 0) {
        uint8_t cont = (uint8_t)(0x80 + gen_rand(g) % 64);
        if (gen_rand(g) & 1) {
            uint8_t lead = (uint8_t)(0xC3 + gen_rand(g) % 18); /* U+00C0 .. U+04FF */
            return try_merge(g, g->byte_id[lead], g->byte_id[cont], 2, POOL_U8CHAR);
        }
        uint8_t lead = (uint8_t)(0xE4 + gen_rand(g) % 6); /* U+4000 .. U+9FFF */
        return try_merge(g, g->byte_id[lead], g->byte_id[cont], 2, POOL_U8PART);
    }
    if (k < 7 && g->pools[POOL_U8PART].n) {
        uint8_t cont = (uint8_t)(0x80 + gen_rand(g) % 64);
        return try_merge(g, pick(g, POOL_U8PART), g->byte_id[cont], 3, POOL_U8CHAR);
    }
    a = (gen_rand(g) & 1) && g->pools[POOL_U8WORD].n ? pick(g, POOL_U8WORD) : pick(g, POOL_U8CHAR);
    return try_merge(g, a, pick(g, POOL_U8CHAR), 12, POOL_U8WORD);
}

/* When the classes are crowded (tiny alphabets like digits fill up), two arbitrary
 * lower-case pieces: their concatenations are endless, so this always ends. */
static void gen_fallback(gen *g) {
    for (;;) {
        const pool *p = &g->pools[POOL_LOWER];
        int32_t a = p->id[gen_rand(g) % (uint64_t)p->n], b = p->id[gen_rand(g) % (uint64_t)p->n];
        if (try_merge(g, a, b, 48, POOL_LOWER) || g->oom) return;
    }
}

/* ---- special tokens ------------------------------------------------------------------- */

typedef struct special {
    const char *text;
    int32_t type;
} special;

/* Qwen2/3 order; Qwen3.5 has the same tokens from id 248044 (image_pad = 248056, as in its
 * config's image_token_id). <tool_call>, <think>, FIM and repo markers are not "special"
 * in the tokenizer config, so the converter marks them user-defined (4). */
static const special qwen_specials[] = {
    {"<|endoftext|>", 3},      {"<|im_start|>", 3},     {"<|im_end|>", 3},
    {"<|object_ref_start|>", 3}, {"<|object_ref_end|>", 3}, {"<|box_start|>", 3},
    {"<|box_end|>", 3},        {"<|quad_start|>", 3},   {"<|quad_end|>", 3},
    {"<|vision_start|>", 3},   {"<|vision_end|>", 3},   {"<|vision_pad|>", 3},
    {"<|image_pad|>", 3},      {"<|video_pad|>", 3},    {"<tool_call>", 4},
    {"</tool_call>", 4},       {"<|fim_prefix|>", 4},   {"<|fim_middle|>", 4},
    {"<|fim_suffix|>", 4},     {"<|fim_pad|>", 4},      {"<|repo_name|>", 4},
    {"<|file_sep|>", 4},       {"<tool_response>", 4},  {"</tool_response>", 4},
    {"<think>", 4},            {"</think>", 4},
};

/* Llama 3.1: 256 control tokens from 128000; those not named below are
 * <|reserved_special_token_N|>, numbered in id order. */
static const char *llama3_named(int i) {
    switch (i) {
    case 0: return "<|begin_of_text|>";
    case 1: return "<|end_of_text|>";
    case 4: return "<|finetune_right_pad_id|>";
    case 6: return "<|start_header_id|>";
    case 7: return "<|end_header_id|>";
    case 8: return "<|eom_id|>";
    case 9: return "<|eot_id|>";
    case 10: return "<|python_tag|>";
    default: return NULL;
    }
}

/* ---- building ------------------------------------------------------------------------------ */

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* GGUF text of raw bytes: each byte as its GPT-2 code point, UTF-8 encoded (<= 2 bytes). */
static char *map_bytes(const uint8_t *p, size_t n, const uint32_t cp[256]) {
    char *s = malloc(2 * n + 1), *o = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp[p[i]];
        if (c < 0x80) {
            *o++ = (char)c;
        } else {
            *o++ = (char)(0xC0 | (c >> 6));
            *o++ = (char)(0x80 | (c & 0x3F));
        }
    }
    *o = '\0';
    return s;
}

void synth_vocab_free(synth_vocab *v) {
    if (!v) return;
    if (v->tokens)
        for (int64_t i = 0; i < v->n_tokens; i++) free(v->tokens[i]);
    if (v->merges)
        for (int64_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->types);
    free(v->merges);
    memset(v, 0, sizeof *v);
}

static void gen_free(gen *g) {
    free(g->bytes);
    free(g->off);
    free(g->len);
    free(g->hash);
    free(g->merge);
    for (int i = 0; i < POOL_COUNT; i++) free(g->pools[i].id);
}

int synth_vocab_build(const synth_model *m, synth_vocab *v, halo_error *err) {
    memset(v, 0, sizeof *v);
    const bool llama3 = m->vocab_kind == SYNTH_VOCAB_LLAMA3;
    const int64_t n_special = llama3 ? 256 : (int64_t)(sizeof qwen_specials / sizeof qwen_specials[0]);
    if (m->n_vocab < 256 + n_special || m->n_vocab > INT32_MAX)
        return halo_error_set(err, HALO_ERR_ARG,
                              "a %s vocabulary needs between %lld and %d tokens (got %lld)",
                              llama3 ? "Llama 3" : "Qwen", (long long)(256 + n_special), INT32_MAX,
                              (long long)m->n_vocab);
    int64_t n_text = m->n_vocab - n_special;
    if (m->n_vocab_text > 0 && m->n_vocab_text < n_text) n_text = m->n_vocab_text;

    uint32_t cp[256];
    uint8_t id_byte[256];
    byte_tables(cp, id_byte);

    gen g = {0};
    g.cap = n_text;
    g.off = malloc((size_t)n_text * sizeof *g.off);
    g.len = malloc((size_t)n_text * sizeof *g.len);
    g.merge = malloc((size_t)n_text * sizeof *g.merge);
    uint64_t hcap = 1024;
    while (hcap < 2 * (uint64_t)n_text) hcap *= 2;
    g.hash = malloc(hcap * sizeof *g.hash);
    g.hash_mask = hcap - 1;
    g.rng = llama3 ? 0x11a3a3 : 0x0e3e3;
    if (!g.off || !g.len || !g.merge || !g.hash) goto oom;
    memset(g.hash, 0xff, hcap * sizeof *g.hash);

    for (int i = 0; i < 256; i++) {
        uint8_t b = id_byte[i];
        int32_t id = gen_add(&g, &b, 1);
        g.byte_id[b] = id;
        if (b >= 'a' && b <= 'z') pool_add(&g, POOL_LOWER, id);
        else if (b == ' ' || b == '\n' || b == '\t') pool_add(&g, POOL_WS, id);
        else if (b >= '0' && b <= '9') pool_add(&g, POOL_DIGIT, id);
    }
    /* the 32 ASCII punctuation bytes first in their pool: gen_step draws singles from them */
    for (int b = '!'; b <= '~'; b++)
        if (!((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9')))
            pool_add(&g, POOL_PUNCT, g.byte_id[b]);

    while (g.n < n_text && !g.oom) {
        bool ok = false;
        for (int tries = 0; tries < 64 && !ok && !g.oom; tries++) ok = gen_step(&g);
        if (!ok) gen_fallback(&g);
    }
    if (g.oom) goto oom;

    v->n_tokens = m->n_vocab;
    v->tokens = calloc((size_t)v->n_tokens, sizeof *v->tokens);
    v->types = malloc((size_t)v->n_tokens * sizeof *v->types);
    v->merges = calloc((size_t)g.n_merge, sizeof *v->merges);
    if (!v->tokens || !v->types || (g.n_merge && !v->merges)) goto oom;
    for (int64_t i = 0; i < n_text; i++) {
        v->tokens[i] = map_bytes(g.bytes + g.off[i], g.len[i], cp);
        v->types[i] = 1;
        if (!v->tokens[i]) goto oom;
    }
    v->n_merges = g.n_merge;
    for (int64_t i = 0; i < g.n_merge; i++) {
        char *a = v->tokens[g.merge[i][0]], *b = v->tokens[g.merge[i][1]];
        size_t la = strlen(a), lb = strlen(b);
        char *s = malloc(la + lb + 2);
        if (!s) goto oom;
        memcpy(s, a, la);
        s[la] = ' ';
        memcpy(s + la + 1, b, lb + 1);
        v->merges[i] = s;
    }
    char buf[64];
    for (int64_t i = 0; i < n_special; i++) {
        int64_t id = n_text + i;
        if (llama3) {
            const char *name = llama3_named((int)i);
            if (!name) {
                /* reserved tokens are numbered in id order, skipping the named ones */
                int k = 0;
                for (int j = 0; j < i; j++) k += llama3_named(j) == NULL;
                snprintf(buf, sizeof buf, "<|reserved_special_token_%d|>", k);
                name = buf;
            }
            v->tokens[id] = dup_str(name);
            v->types[id] = 3;
        } else {
            v->tokens[id] = dup_str(qwen_specials[i].text);
            v->types[id] = qwen_specials[i].type;
        }
        if (!v->tokens[id]) goto oom;
    }
    for (int64_t id = n_text + n_special; id < m->n_vocab; id++) {
        snprintf(buf, sizeof buf, "[PAD%lld]", (long long)id);
        v->tokens[id] = dup_str(buf);
        v->types[id] = 5;
        if (!v->tokens[id]) goto oom;
    }

    v->model = "gpt2";
    if (llama3) {
        v->pre = "llama-bpe";
        v->chat_template = synth_template_llama3;
        v->bos_id = n_text;     /* <|begin_of_text|> */
        v->eos_id = n_text + 9; /* <|eot_id|>: the instruct model's end of turn */
        v->pad_id = n_text + 4; /* <|finetune_right_pad_id|> */
        v->add_bos = true;
    } else {
        bool q35 = m->vocab_kind == SYNTH_VOCAB_QWEN35;
        v->pre = q35 ? "qwen35" : "qwen2";
        v->chat_template = q35 ? synth_template_qwen35 : synth_template_qwen3;
        v->bos_id = n_text;     /* <|endoftext|> */
        v->eos_id = n_text + 2; /* <|im_end|> */
        v->pad_id = n_text;
        v->add_bos = false;
    }
    gen_free(&g);
    return 0;

oom:
    gen_free(&g);
    synth_vocab_free(v);
    return halo_error_set(err, HALO_ERR_NOMEM, "out of memory building a %lld-token vocabulary",
                          (long long)m->n_vocab);
}
