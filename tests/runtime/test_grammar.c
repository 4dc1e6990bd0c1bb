/* Grammars (runtime/grammar.c): GBNF errors are messages, never crashes; texts are
 * accepted or rejected as the grammar says; the trie mask equals a token-by-token
 * check (brute force) over a vocabulary with multi-byte characters cut across
 * tokens; the sampler with a grammar only produces sentences of it. */
#include "harness.h"
#include "halo.h"

#include <string.h>

static halo_grammar *compile(const char *src) {
    halo_grammar *g = NULL;
    halo_error err = {0};
    int rc = halo_grammar_compile(src, strlen(src), NULL, &g, &err);
    CHECK_MSG(rc == 0, "%s: %s", src, err.msg);
    return g;
}

static void expect_error(const char *src, const char *needle) {
    halo_grammar *g = NULL;
    halo_error err = {0};
    int rc = halo_grammar_compile(src, strlen(src), NULL, &g, &err);
    CHECK_MSG(rc != 0 && !g, "accepted: %s", src);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", src, err.msg, needle);
    halo_grammar_free(g);
}

/* a vocabulary of the 256 single bytes, plus token 256 = EOG */
static halo_grammar_vocab *byte_vocab(void) {
    char bytes[256];
    const char *p[257];
    size_t len[257];
    bool eog[257] = {0};
    for (int i = 0; i < 256; i++)
        bytes[i] = (char)i, p[i] = &bytes[i], len[i] = 1;
    p[256] = "", len[256] = 0, eog[256] = true;
    halo_grammar_vocab *v = NULL;
    halo_error err = {0};
    CHECK(halo_grammar_vocab_new(p, len, eog, 257, &v, &err) == 0);
    return v;
}

/* Whether the whole text is a sentence of the grammar. */
static bool matches(const halo_grammar *g, const halo_grammar_vocab *v, const char *text) {
    halo_grammar_matcher *m = NULL;
    halo_error err = {0};
    if (halo_grammar_matcher_new(g, v, &m, &err)) return false;
    bool ok = halo_grammar_matcher_accept_bytes(m, text, strlen(text)) &&
              halo_grammar_matcher_complete(m);
    if (!*text) ok = halo_grammar_matcher_complete(m);
    halo_grammar_matcher_free(m);
    return ok;
}

static void expect_match(const char *src, const char *const *yes, const char *const *no) {
    halo_grammar *g = compile(src);
    halo_grammar_vocab *v = byte_vocab();
    if (!g || !v) return;
    for (; yes && *yes; yes++)
        CHECK_MSG(matches(g, v, *yes), "%s rejects '%s'", src, *yes);
    for (; no && *no; no++)
        CHECK_MSG(!matches(g, v, *no), "%s accepts '%s'", src, *no);
    halo_grammar_free(g);
    halo_grammar_vocab_free(v);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_errors(void) {
    expect_error("", "no rules");
    expect_error("root ::= \"abc", "unterminated string");
    expect_error("root ::= [a-", "unterminated character class");
    expect_error("root ::= [z-a]", "out of order");
    expect_error("root ::= foo", "'foo' is used but not defined");
    expect_error("start ::= \"x\"", "no start rule 'root'");
    expect_error("root ::= (\"x\"", "unclosed '('");
    expect_error("root ::= \"x\")", "unmatched ')'");
    expect_error("root ::= \"x\" ::=", "unexpected character ':'");
    expect_error("root ::= \"\\q\"", "unknown escape");
    expect_error("root ::= \"\\x4\"", "bad hexadecimal escape");
    expect_error("root ::= \"a\"{3,2}", "n < m");
    expect_error("root ::= \"a\"{99999}", "above 10000");
    expect_error("root ::= \"a\"\nroot ::= \"b\"", "defined twice");
    expect_error("root ::= root \"x\" | \"y\"", "'root' is left-recursive");
    expect_error("root ::= a\na ::= b \"x\"\nb ::= \"\" | a", "left-recursive");
    expect_error("root ::= (\"a\"?)*", "left-recursive");
    expect_error("root ::= @", "unexpected character '@'");
    expect_error("root ::= \"a\"{0,10000} \"b\"{0,10000} \"c\"{0,10000} \"d\"{0,10000} "
                 "\"e\"{0,10000} \"f\"{0,10000} \"g\"{0,10000}",
                 "too many rules");
    /* deep nesting is an error, not a stack overflow */
    char deep[1200];
    size_t n = (size_t)snprintf(deep, sizeof deep, "root ::= ");
    for (int i = 0; i < 500; i++)
        deep[n++] = '(';
    deep[n] = '\0';
    expect_error(deep, "nested too deep");
    /* the line and column of a syntax error */
    expect_error("root ::= \"a\"\nx ::= [", "grammar:2:7:");
}

static void test_matching(void) {
    expect_match("root ::= \"abc\"", L("abc"), L("ab", "abcd", "", "abd"));
    expect_match("root ::= \"a\" | \"bc\" | \"\"", L("a", "bc", ""), L("b", "abc"));
    expect_match("root ::= [a-c]+ [0-9]*", L("a", "abc9", "cc0123"), L("", "9", "ad"));
    expect_match("root ::= [^\"\\\\]*", L("", "abc", "é"), L("\"", "a\\b"));
    expect_match("root ::= \"x\"{2,4}", L("xx", "xxx", "xxxx"), L("x", "xxxxx"));
    expect_match("root ::= \"x\"{3}", L("xxx"), L("xx", "xxxx"));
    expect_match("root ::= \"x\"{2,}", L("xx", "xxxxxxxxxx"), L("x"));
    expect_match("root ::= (\"ab\" | \"c\")? \"d\"", L("abd", "cd", "d"), L("abcd", "ab"));
    expect_match("root ::= . . .", L("abc", "日本語", "a\nb"), L("ab", "abcd"));
    expect_match("root ::= [α-ω]+", L("αβγ", "ω"), L("a", "αa"));
    expect_match("root ::= \"\\u00e9\\x41\\n\"", L("éA\n"), L("eA\n"));
    /* prefixes of no character are rejected at once: overlong, past U+10FFFF, surrogate */
    halo_grammar *any = compile("root ::= .*");
    halo_grammar_vocab *bv = byte_vocab();
    static const char *const bad_prefix[] = {"\xf0\x80", "\xe0\x9f", "\xf4\x90",
                                             "\xed\xa0", "\xc1",     "\x80"};
    static const char *const good_prefix[] = {"\xf0\x90", "\xe0\xa0", "\xf4\x8f", "\xed\x9f",
                                              "\xc2"};
    for (size_t i = 0; any && bv && i < sizeof bad_prefix / sizeof *bad_prefix; i++) {
        halo_grammar_matcher *m = NULL;
        halo_error err = {0};
        CHECK(halo_grammar_matcher_new(any, bv, &m, &err) == 0);
        CHECK_MSG(!halo_grammar_matcher_accept_bytes(m, bad_prefix[i], strlen(bad_prefix[i])),
                  "bad prefix %zu accepted", i);
        if (i < sizeof good_prefix / sizeof *good_prefix)
            CHECK_MSG(halo_grammar_matcher_accept_bytes(m, good_prefix[i], strlen(good_prefix[i])),
                      "good prefix %zu rejected", i);
        halo_grammar_matcher_free(m);
    }
    halo_grammar_vocab_free(bv);
    halo_grammar_free(any);
    /* comments, rules over several lines, rules used before they are defined */
    expect_match("# a list\nroot ::= item\n  (\",\" item)*  # more\nitem ::=\n  [0-9]+\n",
                 L("1", "1,22,333"), L("1,", ",1"));
    /* right recursion (nesting) is fine */
    expect_match("root ::= \"(\" root \")\" | \"x\"", L("x", "(x)", "(((x)))"), L("((x)", "()"));
    /* ambiguity: both alternatives alive until the text decides */
    expect_match("root ::= \"ab\" \"c\" | \"a\" \"bd\"", L("abc", "abd"), L("ab", "abe"));
    expect_match("root ::= [a-z]* \"z\"", L("z", "abz", "zzz"), L("", "ab"));
    /* a JSON-ish grammar */
    const char *json =
        "root ::= value\n"
        "value ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"
        "object ::= \"{\" ws (member (\",\" ws member)*)? \"}\" ws\n"
        "member ::= string \":\" ws value\n"
        "array ::= \"[\" ws (value (\",\" ws value)*)? \"]\" ws\n"
        "string ::= \"\\\"\" ([^\"\\\\] | \"\\\\\" [\"\\\\nt])* \"\\\"\" ws\n"
        "number ::= \"-\"? [0-9]+ ws\n"
        "ws ::= [ \\t\\n]*\n";
    expect_match(json, L("{}", "{\"a\": [1, -2, \"x\\n\"], \"b\": {\"c\": null}}", "[true,false]"),
                 L("{", "{\"a\" 1}", "[1,]", "\"\\q\""));
}

/* ---- masking against brute force -------------------------------------------------------- */

typedef struct vocab_fixture {
    char text[64][8];
    const char *p[64];
    size_t len[64];
    bool eog[64];
    int n;
} vocab_fixture;

static void add_token(vocab_fixture *f, const char *bytes, size_t n) {
    memcpy(f->text[f->n], bytes, n);
    f->p[f->n] = f->text[f->n];
    f->len[f->n] = n;
    f->n++;
}

/* tokens with shared prefixes, whole and cut multi-byte characters, an empty
 * (control-like) token and two EOGs */
static void make_vocab(vocab_fixture *f) {
    memset(f, 0, sizeof *f);
    static const char *const words[] = {
        "a",  "ab", "abc", "b",  "ba",   "c",  "{",  "}",    "\"", "\":", ",",    " ",   "\n", "1",
        "12", "-",  "x",   "xy", "true", "tr", "ue", "null", "é",  "日",  "ab\"", "\"a", "[",  "]"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        add_token(f, words[i], strlen(words[i]));
    add_token(f, "\xc3", 1);     /* the first byte of é */
    add_token(f, "\xa9", 1);     /* its second */
    add_token(f, "\xe6\x97", 2); /* two of 日's three */
    add_token(f, "\xa5x", 2);    /* 日's last byte then x */
    add_token(f, "\xf0\x80", 2); /* an overlong form's start: no character */
    add_token(f, "\xff", 1);     /* never UTF-8 */
    add_token(f, "", 0);         /* a control token */
    add_token(f, "", 0), f->eog[f->n - 1] = true;
    add_token(f, "", 0), f->eog[f->n - 1] = true;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t next_rand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* Walk a random path through the grammar: at every step the mask must be the
 * brute-force check of every token (a fresh matcher fed the text so far and the
 * token). */
static void check_mask_walk(const char *src, int steps) {
    vocab_fixture f;
    make_vocab(&f);
    halo_grammar *g = compile(src);
    halo_grammar_vocab *v = NULL;
    halo_error err = {0};
    CHECK(halo_grammar_vocab_new(f.p, f.len, f.eog, f.n, &v, &err) == 0);
    halo_grammar_matcher *m = NULL;
    if (!g || !v || halo_grammar_matcher_new(g, v, &m, &err)) return;
    char text[512] = "";
    size_t tlen = 0;
    uint8_t allowed[64];
    for (int step = 0; step < steps; step++) {
        int32_t count = halo_grammar_matcher_mask(m, allowed);
        int32_t brute = 0, pick[64], n_pick = 0;
        for (int t = 0; t < f.n; t++) {
            bool ok;
            if (f.eog[t]) {
                ok = halo_grammar_matcher_complete(m);
            } else {
                halo_grammar_matcher *b = NULL;
                CHECK(halo_grammar_matcher_new(g, v, &b, &err) == 0);
                ok = f.len[t] > 0 &&
                     (tlen == 0 || halo_grammar_matcher_accept_bytes(b, text, tlen)) &&
                     halo_grammar_matcher_accept_bytes(b, f.p[t], f.len[t]);
                halo_grammar_matcher_free(b);
            }
            CHECK_MSG(ok == (allowed[t] != 0),
                      "grammar %.30s after '%.*s': token %d '%.*s' mask %d, "
                      "brute force %d",
                      src, (int)tlen, text, t, (int)f.len[t], f.p[t], allowed[t], ok);
            CHECK(ok == halo_grammar_matcher_allows(m, t));
            brute += ok;
            if (ok && !f.eog[t]) pick[n_pick++] = t;
        }
        CHECK(count == brute);
        if (n_pick == 0 || tlen + 8 >= sizeof text) break;
        int32_t t = pick[next_rand() % (uint32_t)n_pick];
        CHECK(halo_grammar_matcher_accept(m, t));
        memcpy(text + tlen, f.p[t], f.len[t]);
        tlen += f.len[t];
    }
    halo_grammar_matcher_free(m);
    halo_grammar_vocab_free(v);
    halo_grammar_free(g);
}

static void test_mask(void) {
    const char *grammars[] = {
        "root ::= [a-c]+ (\",\" [a-c]+)*",
        "root ::= \"{\" (\"\\\"\" [^\"]* \"\\\":\" \" \"? (\"true\" | \"null\" | \"-\"? [0-9]+))? "
        "\"}\"",
        "root ::= ([éa] | \"日\" \"x\"?)+",
        "root ::= \"[\" (item (\",\" \" \"? item)*)? \"]\"\nitem ::= \"1\" | \"12\" | \"\\\"\" . "
        "\"\\\"\" | root",
        "root ::= .*",
        "root ::= [^a]{0,5}",
    };
    for (size_t i = 0; i < sizeof grammars / sizeof grammars[0]; i++)
        for (int rep = 0; rep < 6; rep++)
            check_mask_walk(grammars[i], 24);
}

/* After an accepted EOG nothing but EOG passes; a rejected token leaves the state. */
static void test_accept(void) {
    vocab_fixture f;
    make_vocab(&f);
    halo_grammar *g = compile("root ::= \"ab\" \"c\"?");
    halo_grammar_vocab *v = NULL;
    halo_grammar_matcher *m = NULL;
    halo_error err = {0};
    CHECK(halo_grammar_vocab_new(f.p, f.len, f.eog, f.n, &v, &err) == 0);
    CHECK(halo_grammar_matcher_new(g, v, &m, &err) == 0);
    int32_t eog = f.n - 1;
    CHECK(!halo_grammar_matcher_allows(m, eog));
    CHECK(!halo_grammar_matcher_accept(m, 3)); /* "b" */
    CHECK(halo_grammar_matcher_accept(m, 1));  /* "ab" */
    CHECK(halo_grammar_matcher_complete(m));
    CHECK(halo_grammar_matcher_allows(m, 5)); /* "c" */
    CHECK(halo_grammar_matcher_accept(m, eog));
    CHECK(!halo_grammar_matcher_allows(m, 5));
    CHECK(halo_grammar_matcher_allows(m, eog));
    halo_grammar_matcher_reset(m);
    CHECK(!halo_grammar_matcher_complete(m) && !halo_grammar_matcher_dead(m));
    CHECK(halo_grammar_matcher_accept(m, 0) && halo_grammar_matcher_accept(m, 3)); /* a, b */
    halo_grammar_matcher_free(m);
    halo_grammar_vocab_free(v);
    halo_grammar_free(g);
}

/* The sampler with a grammar: random logits, any temperature, only sentences. */
static void test_sampler(void) {
    vocab_fixture f;
    make_vocab(&f);
    halo_grammar *g = compile("root ::= \"[\" (n (\",\" n)*)? \"]\"\nn ::= \"-\"? [12]{1,3}");
    halo_grammar_vocab *v = NULL;
    halo_error err = {0};
    CHECK(halo_grammar_vocab_new(f.p, f.len, f.eog, f.n, &v, &err) == 0);
    for (int trial = 0; trial < 40; trial++) {
        halo_sampler_params sp;
        halo_sampler_default_params(&sp);
        sp.seed = (uint32_t)trial;
        sp.temp = trial % 4 == 0 ? 0.0f : 1.5f;
        sp.top_k = trial % 3 == 0 ? 0 : 5;
        halo_sampler *s = NULL;
        halo_grammar_matcher *m = NULL;
        CHECK(halo_sampler_new(&sp, f.n + 3, &s, &err) == 0); /* a padded model vocabulary */
        CHECK(halo_grammar_matcher_new(g, v, &m, &err) == 0);
        halo_sampler_set_grammar(s, m);
        char text[256];
        size_t n = 0;
        bool ended = false;
        for (int step = 0; step < 60 && !ended; step++) {
            float logits[67];
            for (int i = 0; i < f.n + 3; i++)
                logits[i] = (float)(next_rand() % 1000) / 100.0f;
            if (step > 20) logits[f.n - 1] += 20.0f; /* end it */
            int32_t t = halo_sampler_sample(s, logits);
            CHECK(t >= 0 && t < f.n);
            if (t < 0 || t >= f.n) break;
            if (f.eog[t])
                ended = true;
            else if (n + f.len[t] < sizeof text)
                memcpy(text + n, f.p[t], f.len[t]), n += f.len[t];
            halo_sampler_accept(s, t);
            CHECK(!halo_grammar_matcher_dead(m));
        }
        text[n] = '\0';
        halo_grammar_vocab *bv = byte_vocab();
        CHECK_MSG(!ended || matches(g, bv, text), "sampled '%s'", text);
        halo_grammar_vocab_free(bv);
        halo_sampler_free(s);
        halo_grammar_matcher_free(m);
    }
    halo_grammar_vocab_free(v);
    halo_grammar_free(g);
}

/* Greedy under a grammar is the argmax of the masked row, whichever way the sampler
 * finds it (the best allowed candidates for top-k, the full mask without top-k). */
static void test_sampler_greedy_exact(void) {
    vocab_fixture f;
    make_vocab(&f);
    halo_grammar *g =
        compile("root ::= \"{\" (\"\\\"\" [a-c]* \"\\\":\" \" \"? (\"true\" | [0-9]+))? \"}\"");
    halo_grammar_vocab *v = NULL;
    halo_error err = {0};
    CHECK(halo_grammar_vocab_new(f.p, f.len, f.eog, f.n, &v, &err) == 0);
    const int32_t top_ks[] = {0, 1, 5, 40};
    for (int trial = 0; trial < 24; trial++) {
        halo_sampler_params sp;
        halo_sampler_default_params(&sp);
        sp.temp = 0.0f;
        sp.top_k = top_ks[trial % 4];
        halo_sampler *s = NULL;
        halo_grammar_matcher *m = NULL, *ref = NULL;
        CHECK(halo_sampler_new(&sp, f.n + 3, &s, &err) == 0);
        CHECK(halo_grammar_matcher_new(g, v, &m, &err) == 0);
        CHECK(halo_grammar_matcher_new(g, v, &ref, &err) == 0);
        halo_sampler_set_grammar(s, m);
        for (int step = 0; step < 30; step++) {
            float logits[67];
            uint8_t allowed[64];
            for (int i = 0; i < f.n + 3; i++)
                logits[i] = (float)(next_rand() % 500) / 50.0f;
            halo_grammar_matcher_mask(ref, allowed);
            int32_t best = -1;
            for (int i = 0; i < f.n; i++)
                if (allowed[i] && (best < 0 || logits[i] > logits[best])) best = i;
            if (best < 0) break; /* a dead end of this small vocabulary */
            int32_t t = halo_sampler_sample(s, logits);
            CHECK_MSG(t == best, "top-k %d step %d: %d '%.*s', the masked argmax %d", (int)sp.top_k,
                      step, (int)t, (int)f.len[t], f.p[t], (int)best);
            if (t != best) break;
            halo_sampler_accept(s, t);
            CHECK(halo_grammar_matcher_accept(ref, t));
            if (f.eog[t]) break;
        }
        halo_sampler_free(s);
        halo_grammar_matcher_free(m);
        halo_grammar_matcher_free(ref);
    }
    halo_grammar_vocab_free(v);
    halo_grammar_free(g);
}

int main(void) {
    test_errors();
    test_matching();
    test_mask();
    test_accept();
    test_sampler();
    test_sampler_greedy_exact();
    return halo_test_finish("runtime/test_grammar");
}
