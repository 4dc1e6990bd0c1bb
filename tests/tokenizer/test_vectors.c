/*
 * The public tokenizer vectors: every text of tokenizer/qwen2.inp and
 * llama-spm.inp must give exactly the ids of the .out files (no BOS, special
 * tokens not parsed), and every text of pretok/pretok.inp the ids of
 * pretok.NAME.out with the Qwen3 vocabulary under each pre-tokenizer NAME (the
 * name is overridden in memory: vocabulary and merges stay the same).
 *
 * The pretok expected ids are of the texts as they reached the reference tool:
 * read in text mode (CR LF and lone CR become LF) and passed through its
 * default escape processing (\\ -> \, \n, \t, ...). The test applies the same
 * two steps to pretok.inp; the other two files contain neither.
 */
#define _GNU_SOURCE
#include "format/gguf.h"
#include "harness.h"
#include "tokenizer/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEP "\n__ggml_vocab_test__\n"

typedef struct text {
    const char *s;
    size_t n;
} text;

/* Texts of an .inp file: each one ends with SEP. */
static size_t split_inp(char *buf, size_t size, text *out, size_t max) {
    size_t n = 0, pos = 0, sl = strlen(SEP);
    while (pos < size && n < max) {
        char *e = memmem(buf + pos, size - pos, SEP, sl);
        /* a text may be empty: then the separator's leading newline is the
         * previous separator's trailing one */
        if (!e) break;
        out[n++] = (text){buf + pos, (size_t)(e - (buf + pos))};
        pos = (size_t)(e - buf) + sl;
    }
    return n;
}

/* Text mode, then escapes, as described at the top. Writes to out (room for n). */
static size_t as_reference_saw(const char *s, size_t n, char *out) {
    char *tmp = malloc(n ? n : 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            tmp[m++] = '\n';
            if (i + 1 < n && s[i + 1] == '\n') i++;
        } else {
            tmp[m++] = s[i];
        }
    }
    size_t o = 0;
    for (size_t i = 0; i < m; i++) {
        if (tmp[i] == '\\' && i + 1 < m) {
            char c = tmp[i + 1], r = 0;
            switch (c) {
            case 'n': r = '\n'; break;
            case 'r': r = '\r'; break;
            case 't': r = '\t'; break;
            case '\'': r = '\''; break;
            case '"': r = '"'; break;
            case '\\': r = '\\'; break;
            }
            if (r) {
                out[o++] = r;
                i++;
                continue;
            }
        }
        out[o++] = tmp[i];
    }
    free(tmp);
    return o;
}

/* Parse one line of ids; returns the count. */
static size_t parse_ids(const char *line, size_t len, int32_t *ids, size_t max) {
    size_t n = 0;
    const char *p = line, *end = line + len;
    while (p < end && n < max) {
        while (p < end && *p == ' ') p++;
        if (p >= end) break;
        char *q;
        long v = strtol(p, &q, 10);
        if (q == p) break;
        ids[n++] = (int32_t)v;
        p = q;
    }
    return n;
}

static halo_tokenizer *load(const char *model, const char *pre) {
    halo_gguf *g = NULL;
    halo_error err = {0};
    if (halo_gguf_open(halo_test_fixture_path(model), NULL, &g, &err)) {
        fprintf(stderr, "%s: %s\n", model, err.msg);
        return NULL;
    }
    halo_tokenizer_options o = {.pre_override = pre};
    halo_tokenizer *t = NULL;
    if (halo_tokenizer_load_ex(g, &o, &t, &err)) fprintf(stderr, "%s (%s): %s\n", model, pre ? pre : "-", err.msg);
    halo_gguf_close(g);
    return t;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

/* Run one vector set; returns the number that pass. */
static int run_set(const char *label, halo_tokenizer *t, const char *inp, const char *outp, bool unescape,
                   int *total) {
    size_t isz = 0, osz = 0;
    char *ib = halo_test_read_file(halo_test_fixture_path(inp), &isz);
    char *ob = halo_test_read_file(halo_test_fixture_path(outp), &osz);
    CHECK_MSG(ib && ob, "%s: cannot read %s / %s", label, inp, outp);
    if (!ib || !ob) {
        free(ib);
        free(ob);
        return 0;
    }
    static text texts[256];
    size_t nt = split_inp(ib, isz, texts, 256);
    int pass = 0;
    const char *line = ob, *oend = ob + osz;
    for (size_t i = 0; i < nt; i++) {
        const char *nl = line < oend ? memchr(line, '\n', (size_t)(oend - line)) : NULL;
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(oend > line ? oend - line : 0);
        static int32_t want[4096];
        size_t nw = parse_ids(line, ll, want, 4096);
        line = nl ? nl + 1 : oend;

        int32_t *got = NULL;
        size_t ng = 0;
        halo_error err = {0};
        static char in[65536];
        size_t nin = texts[i].n < sizeof in ? texts[i].n : sizeof in;
        if (unescape) nin = as_reference_saw(texts[i].s, nin, in);
        else memcpy(in, texts[i].s, nin);
        int rc = halo_tok_encode(t, in, nin, 0, &got, &ng, &err);
        bool ok = rc == 0 && ng == nw && (nw == 0 || !memcmp(got, want, nw * sizeof(int32_t)));
        CHECK_MSG(ok, "%s: text %zu \"%.*s\"", label, i, (int)(texts[i].n > 80 ? 80 : texts[i].n), texts[i].s);
        if (!ok) {
            print_ids("want", want, nw);
            print_ids("got ", got, ng);
        }
        pass += ok;
        free(got);
    }
    printf("%-28s %d/%zu\n", label, pass, nt);
    *total = (int)nt;
    free(ib);
    free(ob);
    return pass;
}

int main(void) {
    halo_test_require_fixtures();
    int total;

    halo_tokenizer *t = load("models/qwen3-vocab.gguf", NULL);
    CHECK(t != NULL);
    if (t) {
        CHECK(!strcmp(halo_tok_pre_name(t), "qwen2"));
        int pass = run_set("qwen2 (qwen3-vocab)", t, "tokenizer/qwen2.inp", "tokenizer/qwen2.out", false, &total);
        CHECK(total == 46 && pass == 46);
        halo_tokenizer_free(t);
    }

    t = load("models/llama-spm-vocab.gguf", NULL);
    CHECK(t != NULL);
    if (t) {
        CHECK(halo_tok_kind_of(t) == HALO_TOK_KIND_SPM);
        int pass = run_set("llama-spm", t, "tokenizer/llama-spm.inp", "tokenizer/llama-spm.out", false, &total);
        CHECK(total == 46 && pass == 46);
        halo_tokenizer_free(t);
    }

    static const char *pres[] = {"qwen2",         "qwen35",         "llama-bpe",   "gpt-2", "deepseek-llm",
                                 "deepseek-coder", "deepseek-v3", "gpt-4o", "tekken"};
    for (size_t k = 0; k < sizeof pres / sizeof pres[0]; k++) {
        t = load("models/qwen3-vocab.gguf", pres[k]);
        CHECK_MSG(t != NULL, "pre-tokenizer %s", pres[k]);
        if (!t) continue;
        char label[64], outp[128];
        snprintf(label, sizeof label, "pretok %s", pres[k]);
        snprintf(outp, sizeof outp, "tokenizer/pretok/pretok.%s.out", pres[k]);
        int pass = run_set(label, t, "tokenizer/pretok/pretok.inp", outp, true, &total);
        CHECK_MSG(total == 24 && pass == 24, "%s: %d/%d", pres[k], pass, total);
        halo_tokenizer_free(t);
    }

    /* an unknown pre-tokenizer is a clear error that lists the known ones */
    {
        halo_gguf *g = NULL;
        halo_error err = {0};
        CHECK(halo_gguf_open(halo_test_fixture_path("models/qwen3-vocab.gguf"), NULL, &g, &err) == 0);
        halo_tokenizer_options o = {.pre_override = "no-such-pre"};
        t = NULL;
        CHECK(halo_tokenizer_load_ex(g, &o, &t, &err) == HALO_ERR_UNSUPPORTED);
        CHECK(t == NULL && strstr(err.msg, "no-such-pre") && strstr(err.msg, "qwen2"));
        halo_gguf_close(g);
    }
    return halo_test_finish("tokenizer/vectors");
}
