/*
 * Grammars for constrained decoding (include/halo.h, "grammars"): llama.cpp's GBNF
 * compiled to flat rules, a matcher that follows text through them, and the token
 * mask that the sampler applies.
 *
 * Compiled form: every rule is a list of alternatives; an alternative is a run of
 * elements ended by END; an element is a character class or a reference to a rule.
 * Groups and repetitions become generated rules (`x*` is `r ::= x r |`), so the
 * matcher knows only those three kinds.
 *
 * The matcher is a recursive descent run on all alternatives at once: its state is
 * a set of stacks, each a chain of positions (the element to match next, then where
 * to continue in the calling rule, and so on). Stacks are immutable nodes that point
 * to their parent, so advancing by one character makes a new top node and shares
 * the rest. A stack always has a character class on top (or is empty: the text may
 * end there). A call in tail position pushes no return position, which keeps `x*`
 * flat. Left recursion would expand forever; it is refused when compiling.
 *
 * The mask walks the vocabulary's prefix trie depth first, carrying the stack set
 * byte by byte: a node whose set is empty rejects every token below it without
 * looking at them. Nodes come from an arena with marks, released on the way back
 * up, so the walk allocates nothing that outlives it. Bytes are decoded to code
 * points on the way; inside a character, stacks whose class cannot match any
 * completion of the bytes seen so far are dropped early.
 */
#define _GNU_SOURCE
#include "halo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- compiled grammar ------------------------------------------------------------ */

enum { E_END = 0, E_CHAR = 1, E_RULE = 2 };

typedef struct elem {
    uint32_t kind;  /* E_END, E_CHAR, E_RULE */
    uint32_t value; /* class index (E_CHAR), rule index (E_RULE) */
} elem;

typedef struct crange {
    uint32_t lo, hi; /* code points, inclusive */
} crange;

typedef struct cclass {
    uint32_t first, n; /* ranges[first .. first+n) */
    bool negated;
    uint64_t ascii[2]; /* membership of code points 0..127, negation applied */
} cclass;

typedef struct rule {
    char *name;
    elem *body; /* alternatives, each ended by E_END */
    uint32_t n_body, cap_body;
    bool defined;
    bool nullable;
} rule;

struct halo_grammar {
    rule *rules;
    uint32_t n_rules, cap_rules;
    cclass *classes;
    uint32_t n_classes, cap_classes;
    crange *ranges;
    uint32_t n_ranges, cap_ranges;
    uint32_t start;
    uint32_t n_total; /* elements in all rule bodies */
    uint32_t *hslots; /* [hcap] user-named rules by name: index + 1, 0 empty */
    uint32_t hcap, hcount;
    /* flat form for the matcher */
    elem *elems; /* every rule's body, one after another */
    uint32_t n_elems;
    uint32_t *alt;      /* [n_alts] offsets into elems of each alternative */
    uint32_t *rule_alt; /* [n_rules + 1] rule r's alternatives: alt[rule_alt[r] .. rule_alt[r+1]) */
};

#define MAX_RULES 65536u
#define MAX_ELEMS (1u << 22)
#define MAX_RANGES (1u << 22)
#define MAX_REPEAT 10000u
#define MAX_NESTING 128

static bool grow(void **p, uint32_t *cap, uint32_t need, size_t size) {
    if (need <= *cap) return true;
    uint32_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static bool class_match(const halo_grammar *g, const cclass *c, uint32_t cp) {
    if (cp < 128) return (c->ascii[cp >> 6] >> (cp & 63)) & 1;
    bool in = false;
    for (uint32_t i = 0; i < c->n && !in; i++)
        in = cp >= g->ranges[c->first + i].lo && cp <= g->ranges[c->first + i].hi;
    return in != c->negated;
}

/* Whether some code point in [lo, hi] is in the class. */
static bool class_meets(const halo_grammar *g, const cclass *c, uint32_t lo, uint32_t hi) {
    if (c->negated) { /* some point of [lo, hi] outside every range */
        uint32_t at = lo;
        for (bool moved = true; moved && at <= hi;) {
            moved = false;
            for (uint32_t i = 0; i < c->n; i++) {
                const crange *r = &g->ranges[c->first + i];
                if (at >= r->lo && at <= r->hi) {
                    if (r->hi >= hi) return false;
                    at = r->hi + 1;
                    moved = true;
                }
            }
        }
        return at <= hi;
    }
    for (uint32_t i = 0; i < c->n; i++) {
        const crange *r = &g->ranges[c->first + i];
        if (r->lo <= hi && r->hi >= lo) return true;
    }
    return false;
}

/* ---- parsing ----------------------------------------------------------------------- */

typedef struct parser {
    halo_grammar *g;
    const char *src, *p, *end;
    int depth;
    halo_error *err;
    bool failed;
} parser;

static bool fail_at(parser *ps, const char *at, const char *what) {
    if (ps->failed) return false;
    int line = 1, col = 1;
    for (const char *q = ps->src; q < at && q < ps->end; q++) {
        if (*q == '\n')
            line++, col = 1;
        else
            col++;
    }
    halo_error_set(ps->err, HALO_ERR_ARG, "grammar:%d:%d: %s", line, col, what);
    ps->failed = true;
    return false;
}

static bool fail_nomem(parser *ps) {
    if (!ps->failed) halo_error_set(ps->err, HALO_ERR_NOMEM, "grammar: out of memory");
    ps->failed = true;
    return false;
}

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Whitespace, newlines and # comments. */
static void skip_space(parser *ps) {
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            ps->p++;
        } else if (c == '#') {
            while (ps->p < ps->end && *ps->p != '\n')
                ps->p++;
        } else {
            break;
        }
    }
}

static size_t name_length(const char *p, const char *end) {
    size_t n = 0;
    while (p + n < end && is_name_char(p[n]))
        n++;
    return n;
}

/* At `name ::=`: a new rule starts here, the current one ends. */
static bool at_rule_start(const parser *ps) {
    size_t n = name_length(ps->p, ps->end);
    if (n == 0) return false;
    const char *q = ps->p + n;
    while (q < ps->end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
        q++;
    return ps->end - q >= 3 && memcmp(q, "::=", 3) == 0;
}

static uint32_t name_hash(const char *name, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)name[i]) * 16777619u;
    return h;
}

static int32_t find_rule(const halo_grammar *g, const char *name, size_t n) {
    if (!g->hcap) return -1;
    for (uint32_t i = name_hash(name, n) & (g->hcap - 1);; i = (i + 1) & (g->hcap - 1)) {
        uint32_t r = g->hslots[i];
        if (!r) return -1;
        const char *rn = g->rules[r - 1].name;
        if (strlen(rn) == n && memcmp(rn, name, n) == 0) return (int32_t)(r - 1);
    }
}

static bool hash_insert(halo_grammar *g, uint32_t r) {
    if (2 * (g->hcount + 1) > g->hcap) { /* rebuild at half load */
        uint32_t cap = g->hcap ? 2 * g->hcap : 64;
        uint32_t *slots = calloc(cap, sizeof *slots);
        if (!slots) return false;
        for (uint32_t i = 0; i < g->hcap; i++) {
            uint32_t q = g->hslots[i];
            if (!q) continue;
            const char *nm = g->rules[q - 1].name;
            uint32_t k = name_hash(nm, strlen(nm)) & (cap - 1);
            while (slots[k])
                k = (k + 1) & (cap - 1);
            slots[k] = q;
        }
        free(g->hslots);
        g->hslots = slots;
        g->hcap = cap;
    }
    const char *nm = g->rules[r].name;
    uint32_t k = name_hash(nm, strlen(nm)) & (g->hcap - 1);
    while (g->hslots[k])
        k = (k + 1) & (g->hcap - 1);
    g->hslots[k] = r + 1;
    g->hcount++;
    return true;
}

static int32_t add_rule(parser *ps, const char *name, size_t n, bool named) {
    halo_grammar *g = ps->g;
    if (g->n_rules >= MAX_RULES) return fail_at(ps, ps->p, "too many rules"), -1;
    if (!grow((void **)&g->rules, &g->cap_rules, g->n_rules + 1, sizeof *g->rules))
        return fail_nomem(ps), -1;
    rule *r = &g->rules[g->n_rules];
    memset(r, 0, sizeof *r);
    if (!(r->name = malloc(n + 1))) return fail_nomem(ps), -1;
    memcpy(r->name, name, n);
    r->name[n] = '\0';
    g->n_rules++;
    if (named && !hash_insert(g, g->n_rules - 1)) return fail_nomem(ps), -1;
    return (int32_t)(g->n_rules - 1);
}

/* The rule named name[0..n), created (undefined) on first mention. */
static int32_t rule_ref(parser *ps, const char *name, size_t n) {
    int32_t r = find_rule(ps->g, name, n);
    return r >= 0 ? r : add_rule(ps, name, n, true);
}

/* A generated rule (a group or a repetition): "<parent>/<k>", a name no user can
 * write, so never looked up. */
static int32_t new_generated_rule(parser *ps, const char *parent) {
    char name[96];
    size_t plen = strcspn(parent, "/");
    snprintf(name, sizeof name, "%.*s/%u", (int)(plen < 60 ? plen : 60), parent, ps->g->n_rules);
    int32_t r = add_rule(ps, name, strlen(name), false);
    if (r >= 0) ps->g->rules[r].defined = true;
    return r;
}

/* An element sequence under construction (one alternative). */
typedef struct seq {
    elem *e;
    uint32_t n, cap;
} seq;

static bool seq_push(parser *ps, seq *s, uint32_t kind, uint32_t value) {
    if (s->n >= MAX_ELEMS) return fail_at(ps, ps->p, "the grammar is too large");
    if (!grow((void **)&s->e, &s->cap, s->n + 1, sizeof *s->e)) return fail_nomem(ps);
    s->e[s->n++] = (elem){kind, value};
    return true;
}

static bool rule_append(parser *ps, rule *r, const elem *e, uint32_t n) {
    if (ps->g->n_total + n + 1 > MAX_ELEMS) return fail_at(ps, ps->p, "the grammar is too large");
    ps->g->n_total += n;
    if (!grow((void **)&r->body, &r->cap_body, r->n_body + n + 1, sizeof *r->body))
        return fail_nomem(ps);
    if (n) memcpy(r->body + r->n_body, e, (size_t)n * sizeof *e);
    r->n_body += n;
    return true;
}

static bool rule_end_alt(parser *ps, uint32_t ri) {
    elem end = {E_END, 0};
    return rule_append(ps, &ps->g->rules[ri], &end, 1);
}

static int32_t add_class(parser *ps, bool negated, const crange *r, uint32_t n) {
    halo_grammar *g = ps->g;
    if (g->n_ranges + n > MAX_RANGES || g->n_classes >= MAX_ELEMS)
        return fail_at(ps, ps->p, "the grammar is too large"), -1;
    if (!grow((void **)&g->ranges, &g->cap_ranges, g->n_ranges + n, sizeof *g->ranges) ||
        !grow((void **)&g->classes, &g->cap_classes, g->n_classes + 1, sizeof *g->classes))
        return fail_nomem(ps), -1;
    cclass *c = &g->classes[g->n_classes];
    c->first = g->n_ranges;
    c->n = n;
    c->negated = negated;
    if (n) memcpy(g->ranges + g->n_ranges, r, (size_t)n * sizeof *r);
    g->n_ranges += n;
    c->ascii[0] = c->ascii[1] = 0;
    for (uint32_t cp = 0; cp < 128; cp++) {
        bool in = false;
        for (uint32_t i = 0; i < n && !in; i++)
            in = cp >= r[i].lo && cp <= r[i].hi;
        if (in != negated) c->ascii[cp >> 6] |= 1ull << (cp & 63);
    }
    return (int32_t)g->n_classes++;
}

/* One UTF-8 character of the source, as a code point (malformed bytes: themselves). */
static uint32_t read_utf8(parser *ps) {
    const unsigned char *p = (const unsigned char *)ps->p;
    size_t avail = (size_t)(ps->end - ps->p);
    uint32_t c = p[0];
    int n = c < 0x80 ? 0 : c >= 0xF0 && c <= 0xF4 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 ? 1 : -1;
    if (n <= 0 || (size_t)n >= avail) {
        ps->p++;
        return c;
    }
    uint32_t cp = c & (0x3Fu >> n);
    for (int i = 1; i <= n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            ps->p++;
            return c;
        }
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    ps->p += n + 1;
    return cp;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A character of a literal or class, escapes decoded; false at a bad escape. */
static bool read_char(parser *ps, uint32_t *out) {
    if (ps->p >= ps->end) return fail_at(ps, ps->p, "unexpected end of the grammar");
    if (*ps->p != '\\') {
        *out = read_utf8(ps);
        return true;
    }
    const char *at = ps->p++;
    if (ps->p >= ps->end) return fail_at(ps, at, "unfinished escape");
    char c = *ps->p++;
    int digits = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
    if (digits) {
        uint32_t v = 0;
        for (int i = 0; i < digits; i++) {
            int h = ps->p < ps->end ? hex_value(*ps->p) : -1;
            if (h < 0) return fail_at(ps, at, "bad hexadecimal escape");
            v = v * 16 + (uint32_t)h;
            ps->p++;
        }
        if (v > 0x10FFFF) return fail_at(ps, at, "escape beyond U+10FFFF");
        *out = v;
        return true;
    }
    switch (c) {
    case 'n':
        *out = '\n';
        return true;
    case 'r':
        *out = '\r';
        return true;
    case 't':
        *out = '\t';
        return true;
    case '0':
        *out = 0;
        return true;
    case '\\':
    case '"':
    case '\'':
    case '[':
    case ']':
    case '-':
    case '^':
    case '/':
        *out = (uint32_t)c;
        return true;
    default:
        return fail_at(ps, at,
                       "unknown escape (known: \\n \\r \\t \\0 \\\\ \\\" \\' \\[ "
                       "\\] \\- \\^ \\/ \\xHH \\uHHHH \\UHHHHHHHH)");
    }
}

/* "..." (or '...'): one single-character class per character. */
static bool parse_literal(parser *ps, seq *s) {
    char quote = *ps->p++;
    const char *start = ps->p - 1;
    while (ps->p < ps->end && *ps->p != quote) {
        uint32_t cp;
        if (!read_char(ps, &cp)) return false;
        crange r = {cp, cp};
        int32_t c = add_class(ps, false, &r, 1);
        if (c < 0 || !seq_push(ps, s, E_CHAR, (uint32_t)c)) return false;
    }
    if (ps->p >= ps->end) return fail_at(ps, start, "unterminated string literal");
    ps->p++;
    return true;
}

/* [a-z0-9_] or [^"\\] */
static bool parse_class(parser *ps, seq *s) {
    const char *start = ps->p++;
    bool negated = ps->p < ps->end && *ps->p == '^';
    if (negated) ps->p++;
    crange buf[64], *r = buf;
    uint32_t n = 0, cap = 64;
    bool ok = true;
    while (ok && ps->p < ps->end && *ps->p != ']') {
        uint32_t lo, hi;
        if (!(ok = read_char(ps, &lo))) break;
        hi = lo;
        if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
            ps->p++;
            if (!(ok = read_char(ps, &hi))) break;
            if (hi < lo) {
                ok = fail_at(ps, start, "character range out of order");
                break;
            }
        }
        if (n == cap) {
            if (cap >= (1u << 16)) {
                ok = fail_at(ps, start, "character class too large");
                break;
            }
            crange *q = malloc(sizeof *q * cap * 2);
            if (!q) {
                ok = fail_nomem(ps);
                break;
            }
            memcpy(q, r, sizeof *q * n);
            if (r != buf) free(r);
            r = q;
            cap *= 2;
        }
        r[n++] = (crange){lo, hi};
    }
    if (ok && ps->p >= ps->end) ok = fail_at(ps, start, "unterminated character class");
    int32_t c = -1;
    if (ok) {
        ps->p++;
        c = add_class(ps, negated, r, n);
    }
    if (r != buf) free(r);
    return c >= 0 && seq_push(ps, s, E_CHAR, (uint32_t)c);
}

static bool parse_alternatives(parser *ps, uint32_t ri, bool nested);

/* ( ... ): a generated rule, referenced once. */
static bool parse_group(parser *ps, seq *s, uint32_t parent) {
    const char *start = ps->p++;
    if (++ps->depth > MAX_NESTING) return fail_at(ps, start, "groups nested too deep");
    int32_t r = new_generated_rule(ps, ps->g->rules[parent].name);
    if (r < 0 || !parse_alternatives(ps, (uint32_t)r, true)) return false;
    skip_space(ps);
    if (ps->p >= ps->end || *ps->p != ')') return fail_at(ps, start, "unclosed '('");
    ps->p++;
    ps->depth--;
    return seq_push(ps, s, E_RULE, (uint32_t)r);
}

static bool read_count(parser *ps, uint32_t *out) {
    const char *at = ps->p;
    uint64_t v = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        v = v * 10 + (uint64_t)(*ps->p++ - '0');
        if (v > MAX_REPEAT) return fail_at(ps, at, "repetition count above 10000");
    }
    if (ps->p == at) return fail_at(ps, at, "expected a number");
    *out = (uint32_t)v;
    return true;
}

/* {m} {m,} {m,n}: *max = UINT32_MAX for no upper bound */
static bool parse_braces(parser *ps, uint32_t *min, uint32_t *max) {
    const char *start = ps->p++;
    skip_space(ps);
    if (!read_count(ps, min)) return false;
    skip_space(ps);
    *max = *min;
    if (ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        skip_space(ps);
        *max = UINT32_MAX;
        if (ps->p < ps->end && *ps->p != '}' && !read_count(ps, max)) return false;
        skip_space(ps);
    }
    if (ps->p >= ps->end || *ps->p != '}') return fail_at(ps, start, "expected '}'");
    ps->p++;
    if (*max < *min) return fail_at(ps, start, "repetition {m,n} with n < m");
    return true;
}

/* The atom s->e[from..n) as one element: itself when it is one, else a new rule. */
static bool atom_element(parser *ps, seq *s, uint32_t from, uint32_t parent, elem *out) {
    if (s->n - from == 1) {
        *out = s->e[from];
        return true;
    }
    int32_t r = new_generated_rule(ps, ps->g->rules[parent].name);
    if (r < 0 || !rule_append(ps, &ps->g->rules[r], s->e + from, s->n - from) ||
        !rule_end_alt(ps, (uint32_t)r))
        return false;
    *out = (elem){E_RULE, (uint32_t)r};
    return true;
}

/* x{min,max} in place of the atom at s->e[from..): min copies, then either `x*`
 * (no bound) or max-min nested optionals r_i ::= x r_(i+1) |. */
static bool apply_repeat(parser *ps, seq *s, uint32_t from, uint32_t parent, uint32_t min,
                         uint32_t max) {
    elem x;
    if (!atom_element(ps, s, from, parent, &x)) return false;
    s->n = from;
    for (uint32_t i = 0; i < min; i++)
        if (!seq_push(ps, s, x.kind, x.value)) return false;
    if (max == min) return true;
    const char *pname = ps->g->rules[parent].name;
    if (max == UINT32_MAX) {
        int32_t r = new_generated_rule(ps, pname);
        if (r < 0) return false;
        elem body[2] = {x, {E_RULE, (uint32_t)r}};
        return rule_append(ps, &ps->g->rules[r], body, 2) && rule_end_alt(ps, (uint32_t)r) &&
               rule_end_alt(ps, (uint32_t)r) && seq_push(ps, s, E_RULE, (uint32_t)r);
    }
    int32_t next = -1; /* built from the innermost out */
    for (uint32_t i = 0; i < max - min; i++) {
        int32_t r = new_generated_rule(ps, pname);
        if (r < 0) return false;
        elem body[2] = {x, {E_RULE, (uint32_t)next}};
        if (!rule_append(ps, &ps->g->rules[r], body, next < 0 ? 1 : 2) ||
            !rule_end_alt(ps, (uint32_t)r) || !rule_end_alt(ps, (uint32_t)r))
            return false;
        next = r;
    }
    return seq_push(ps, s, E_RULE, (uint32_t)next);
}

/* Postfix operators after the atom that starts at s->e[from]. */
static bool parse_postfix(parser *ps, seq *s, uint32_t from, uint32_t parent) {
    for (;;) {
        skip_space(ps);
        if (ps->p >= ps->end) return true;
        char c = *ps->p;
        uint32_t min, max;
        if (c == '*')
            min = 0, max = UINT32_MAX, ps->p++;
        else if (c == '+')
            min = 1, max = UINT32_MAX, ps->p++;
        else if (c == '?')
            min = 0, max = 1, ps->p++;
        else if (c == '{') {
            if (!parse_braces(ps, &min, &max)) return false;
        } else
            return true;
        if (!apply_repeat(ps, s, from, parent, min, max)) return false;
    }
}

/* A sequence: atoms with their postfix operators, up to '|', ')', the next rule or
 * the end. */
static bool parse_sequence(parser *ps, uint32_t ri, bool nested, seq *s) {
    for (;;) {
        skip_space(ps);
        if (ps->p >= ps->end) return true;
        char c = *ps->p;
        if (c == '|' || c == ')') return true;
        if (!nested && at_rule_start(ps)) return true;
        uint32_t from = s->n;
        const char *at = ps->p;
        if (c == '"' || c == '\'') {
            if (!parse_literal(ps, s)) return false;
            if (s->n == from) continue; /* "": nothing; a postfix after it is harmless */
        } else if (c == '[') {
            if (!parse_class(ps, s)) return false;
        } else if (c == '.') {
            ps->p++;
            int32_t k = add_class(ps, true, NULL, 0);
            if (k < 0 || !seq_push(ps, s, E_CHAR, (uint32_t)k)) return false;
        } else if (c == '(') {
            if (!parse_group(ps, s, ri)) return false;
        } else if (is_name_char(c)) {
            size_t n = name_length(ps->p, ps->end);
            int32_t r = rule_ref(ps, ps->p, n);
            if (r < 0) return false;
            ps->p += n;
            if (!seq_push(ps, s, E_RULE, (uint32_t)r)) return false;
        } else {
            char what[64];
            snprintf(what, sizeof what, "unexpected character '%c'", c >= 32 && c < 127 ? c : '?');
            return fail_at(ps, at, what);
        }
        if (!parse_postfix(ps, s, from, ri)) return false;
    }
}

static bool parse_alternatives(parser *ps, uint32_t ri, bool nested) {
    seq s = {0};
    bool ok = true;
    for (;;) {
        s.n = 0;
        if (!(ok = parse_sequence(ps, ri, nested, &s))) break;
        if (!(ok = rule_append(ps, &ps->g->rules[ri], s.e, s.n) && rule_end_alt(ps, ri))) break;
        skip_space(ps);
        if (ps->p < ps->end && *ps->p == '|') {
            ps->p++;
            continue;
        }
        break;
    }
    free(s.e);
    return ok;
}

static bool parse_rule(parser *ps) {
    const char *at = ps->p;
    size_t n = name_length(ps->p, ps->end);
    if (n == 0) return fail_at(ps, at, "expected a rule name");
    int32_t r = rule_ref(ps, ps->p, n);
    if (r < 0) return false;
    if (ps->g->rules[r].defined) return fail_at(ps, at, "rule defined twice");
    ps->g->rules[r].defined = true;
    ps->p += n;
    skip_space(ps);
    if (ps->end - ps->p < 3 || memcmp(ps->p, "::=", 3) != 0)
        return fail_at(ps, ps->p, "expected '::=' after the rule name");
    ps->p += 3;
    if (!parse_alternatives(ps, (uint32_t)r, false)) return false;
    skip_space(ps);
    if (ps->p < ps->end && !at_rule_start(ps))
        return fail_at(ps, ps->p, *ps->p == ')' ? "unmatched ')'" : "expected a rule");
    return true;
}

/* ---- checks and the flat form ---------------------------------------------------------- */

/* nullable: the rule can match the empty text (a fixpoint over all rules) */
static void compute_nullable(halo_grammar *g) {
    for (bool changed = true; changed;) {
        changed = false;
        for (uint32_t r = 0; r < g->n_rules; r++) {
            rule *ru = &g->rules[r];
            if (ru->nullable) continue;
            bool all = true, empty = false; /* this alternative so far; some alternative */
            for (uint32_t i = 0; i < ru->n_body && !empty; i++) {
                elem e = ru->body[i];
                if (e.kind == E_END) {
                    empty = all;
                    all = true;
                } else if (e.kind == E_CHAR || !g->rules[e.value].nullable) {
                    all = false;
                }
            }
            if (empty) ru->nullable = changed = true;
        }
    }
}

/* Depth-first search for a rule that calls itself at its left edge (through
 * nullable elements). state: 0 unvisited, 1 on the path, 2 done. */
static int32_t left_cycle(const halo_grammar *g, uint32_t r, uint8_t *state, uint32_t *stack) {
    uint32_t top = 0; /* an explicit stack of (rule, position in its body) */
    stack[top++] = r;
    state[r] = 1;
    uint32_t *idx = stack + MAX_RULES;
    idx[0] = 0;
    while (top) {
        uint32_t cur = stack[top - 1];
        const rule *ru = &g->rules[cur];
        bool pushed = false;
        while (idx[top - 1] < ru->n_body) {
            /* body[i] is at the left edge of its alternative: everything before it
             * in the alternative can be empty (past a non-nullable element, the rest
             * of the alternative is skipped) */
            uint32_t i = idx[top - 1]++;
            elem e = ru->body[i];
            if (e.kind == E_END) continue;
            if (e.kind == E_CHAR || !g->rules[e.value].nullable) {
                uint32_t j = i + 1;
                while (j < ru->n_body && ru->body[j].kind != E_END)
                    j++;
                idx[top - 1] = j;
            }
            if (e.kind != E_RULE) continue;
            if (state[e.value] == 1) return (int32_t)e.value;
            if (state[e.value] == 0) {
                state[e.value] = 1;
                stack[top] = e.value;
                idx[top] = 0;
                top++;
                pushed = true;
                break;
            }
        }
        if (!pushed) state[stack[--top]] = 2;
    }
    return -1;
}

/* The user-visible rule a generated one ("name/12") came from. */
static void base_name(const char *name, char *out, size_t size) {
    snprintf(out, size, "%.*s", (int)strcspn(name, "/"), name);
}

static int check_left_recursion(halo_grammar *g, halo_error *err) {
    uint8_t *state = calloc(g->n_rules, 1);
    uint32_t *stack = malloc(sizeof *stack * 2 * MAX_RULES);
    if (!state || !stack) {
        free(state);
        free(stack);
        return halo_error_set(err, HALO_ERR_NOMEM, "grammar: out of memory");
    }
    int32_t bad = -1;
    for (uint32_t r = 0; r < g->n_rules && bad < 0; r++)
        if (!state[r]) bad = left_cycle(g, r, state, stack);
    free(state);
    free(stack);
    if (bad < 0) return 0;
    char name[128];
    base_name(g->rules[bad].name, name, sizeof name);
    return halo_error_set(err, HALO_ERR_ARG,
                          "grammar: rule '%s' is left-recursive (it can reach itself before "
                          "matching a character, e.g. `a ::= a \"x\"` or a repetition of "
                          "something that can be empty); rewrite it with a repetition",
                          name);
}

static int flatten(halo_grammar *g, halo_error *err) {
    uint64_t n_elems = 0, n_alts = 0;
    for (uint32_t r = 0; r < g->n_rules; r++) {
        n_elems += g->rules[r].n_body;
        for (uint32_t i = 0; i < g->rules[r].n_body; i++)
            n_alts += g->rules[r].body[i].kind == E_END;
    }
    if (n_elems + 1 > MAX_ELEMS * 4ull)
        return halo_error_set(err, HALO_ERR_ARG, "grammar: too large (%llu elements)",
                              (unsigned long long)n_elems);
    g->elems = malloc(sizeof *g->elems * (size_t)(n_elems + 1));
    g->alt = malloc(sizeof *g->alt * (size_t)(n_alts + 1));
    g->rule_alt = malloc(sizeof *g->rule_alt * ((size_t)g->n_rules + 1));
    if (!g->elems || !g->alt || !g->rule_alt)
        return halo_error_set(err, HALO_ERR_NOMEM, "grammar: out of memory");
    uint32_t e = 0, a = 0;
    for (uint32_t r = 0; r < g->n_rules; r++) {
        g->rule_alt[r] = a;
        const rule *ru = &g->rules[r];
        bool start = true;
        for (uint32_t i = 0; i < ru->n_body; i++) {
            if (start) g->alt[a++] = e;
            g->elems[e++] = ru->body[i];
            start = ru->body[i].kind == E_END;
        }
    }
    g->rule_alt[g->n_rules] = a;
    g->elems[e] = (elem){E_END, 0};
    g->n_elems = e;
    return 0;
}

static int finish_grammar(halo_grammar *g, const char *start, halo_error *err) {
    for (uint32_t r = 0; r < g->n_rules; r++)
        if (!g->rules[r].defined)
            return halo_error_set(err, HALO_ERR_ARG,
                                  "grammar: rule '%.80s' is used but not defined",
                                  g->rules[r].name);
    int32_t s = find_rule(g, start, strlen(start));
    if (s < 0) return halo_error_set(err, HALO_ERR_ARG, "grammar: no start rule '%.80s'", start);
    g->start = (uint32_t)s;
    compute_nullable(g);
    int rc = check_left_recursion(g, err);
    return rc ? rc : flatten(g, err);
}

int halo_grammar_compile(const char *src, size_t len, const char *start, halo_grammar **out,
                         halo_error *err) {
    *out = NULL;
    if (!start) start = "root";
    if (len > HALO_GRAMMAR_MAX_SOURCE)
        return halo_error_set(err, HALO_ERR_ARG, "grammar: %zu bytes; at most %zu", len,
                              HALO_GRAMMAR_MAX_SOURCE);
    halo_grammar *g = calloc(1, sizeof *g);
    if (!g) return halo_error_set(err, HALO_ERR_NOMEM, "grammar: out of memory");
    parser ps = {.g = g, .src = src, .p = src, .end = src + len, .err = err};
    skip_space(&ps);
    while (ps.p < ps.end && parse_rule(&ps))
        skip_space(&ps);
    int rc = ps.failed ? (err && err->status ? err->status : HALO_ERR_ARG) : 0;
    if (!rc && g->n_rules == 0) rc = halo_error_set(err, HALO_ERR_ARG, "grammar: no rules");
    if (!rc) rc = finish_grammar(g, start, err);
    if (rc) {
        halo_grammar_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

void halo_grammar_free(halo_grammar *g) {
    if (!g) return;
    for (uint32_t r = 0; r < g->n_rules; r++) {
        free(g->rules[r].name);
        free(g->rules[r].body);
    }
    free(g->rules);
    free(g->classes);
    free(g->ranges);
    free(g->elems);
    free(g->alt);
    free(g->rule_alt);
    free(g->hslots);
    free(g);
}

int32_t halo_grammar_n_rules(const halo_grammar *g) {
    return (int32_t)g->n_rules;
}

/* ---- vocabulary trie --------------------------------------------------------------------- */

typedef struct tnode {
    uint32_t first_child, n_children; /* children are nodes[first_child ..), bytes ascending */
    uint32_t first_token, n_tokens;   /* tokens whose bytes end here: token_ids[first_token ..) */
    uint8_t byte;
} tnode;

struct halo_grammar_vocab {
    int32_t n_tokens;
    tnode *nodes;
    uint32_t n_nodes, cap_nodes;
    int32_t *token_ids; /* sorted by bytes */
    uint32_t n_in_trie;
    const uint8_t **bytes; /* [n_tokens] copies (into `store`) */
    uint32_t *len;
    char *store;
    int32_t *eog; /* [n_eog] */
    int32_t n_eog;
    uint8_t *is_eog; /* [n_tokens] */
};

#define MAX_TOKEN_BYTES 4096u

static int cmp_token_bytes(const void *x, const void *y, void *ctx) {
    const halo_grammar_vocab *v = ctx;
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    uint32_t la = v->len[a], lb = v->len[b];
    int c = memcmp(v->bytes[a], v->bytes[b], la < lb ? la : lb);
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return a < b ? -1 : a > b;
}

static bool trie_add_nodes(halo_grammar_vocab *v, uint32_t n) {
    return grow((void **)&v->nodes, &v->cap_nodes, v->n_nodes + n, sizeof *v->nodes);
}

/* Node `at` holds the sorted tokens [lo, hi) that share their first `depth` bytes. */
static bool trie_build(halo_grammar_vocab *v, uint32_t at, uint32_t lo, uint32_t hi,
                       uint32_t depth) {
    uint32_t i = lo;
    while (i < hi && v->len[v->token_ids[i]] == depth)
        i++;
    v->nodes[at].first_token = lo;
    v->nodes[at].n_tokens = i - lo;
    uint32_t groups = 0;
    for (uint32_t k = i; k < hi; k++)
        if (k == i || v->bytes[v->token_ids[k]][depth] != v->bytes[v->token_ids[k - 1]][depth])
            groups++;
    if (groups == 0) return true;
    if (!trie_add_nodes(v, groups)) return false;
    uint32_t first = v->n_nodes;
    v->n_nodes += groups;
    v->nodes[at].first_child = first;
    v->nodes[at].n_children = groups;
    uint32_t child = first, glo = i;
    for (uint32_t k = i + 1; k <= hi; k++) {
        if (k < hi && v->bytes[v->token_ids[k]][depth] == v->bytes[v->token_ids[glo]][depth])
            continue;
        memset(&v->nodes[child], 0, sizeof v->nodes[child]);
        v->nodes[child].byte = v->bytes[v->token_ids[glo]][depth];
        if (!trie_build(v, child, glo, k, depth + 1)) return false;
        child++;
        glo = k;
    }
    return true;
}

int halo_grammar_vocab_new(const char *const *bytes, const size_t *len, const bool *eog, int32_t n,
                           halo_grammar_vocab **out, halo_error *err) {
    *out = NULL;
    if (n <= 0) return halo_error_set(err, HALO_ERR_ARG, "grammar vocabulary: %d tokens", (int)n);
    halo_grammar_vocab *v = calloc(1, sizeof *v);
    size_t total = 0;
    for (int32_t i = 0; i < n; i++)
        if (len[i] <= MAX_TOKEN_BYTES) total += len[i];
    if (v) {
        v->n_tokens = n;
        v->bytes = calloc((size_t)n, sizeof *v->bytes);
        v->len = calloc((size_t)n, sizeof *v->len);
        v->store = malloc(total + 1);
        v->token_ids = malloc(sizeof *v->token_ids * (size_t)n);
        v->is_eog = calloc((size_t)n, 1);
        v->eog = malloc(sizeof *v->eog * (size_t)n);
    }
    if (!v || !v->bytes || !v->len || !v->store || !v->token_ids || !v->is_eog || !v->eog ||
        !trie_add_nodes(v, 1)) {
        halo_grammar_vocab_free(v);
        return halo_error_set(err, HALO_ERR_NOMEM, "grammar vocabulary: out of memory");
    }
    size_t at = 0;
    for (int32_t i = 0; i < n; i++) {
        /* longer tokens than any grammar walk needs are left out (never allowed) */
        uint32_t l = len[i] <= MAX_TOKEN_BYTES ? (uint32_t)len[i] : 0;
        memcpy(v->store + at, bytes[i], l);
        v->bytes[i] = (const uint8_t *)v->store + at;
        v->len[i] = l;
        at += l;
        if (eog && eog[i]) {
            v->is_eog[i] = 1;
            v->eog[v->n_eog++] = i;
        } else if (l > 0) {
            v->token_ids[v->n_in_trie++] = i;
        }
    }
    qsort_r(v->token_ids, v->n_in_trie, sizeof *v->token_ids, cmp_token_bytes, v);
    memset(&v->nodes[0], 0, sizeof v->nodes[0]);
    v->n_nodes = 1;
    if (!trie_build(v, 0, 0, v->n_in_trie, 0)) {
        halo_grammar_vocab_free(v);
        return halo_error_set(err, HALO_ERR_NOMEM, "grammar vocabulary: out of memory");
    }
    *out = v;
    return 0;
}

void halo_grammar_vocab_free(halo_grammar_vocab *v) {
    if (!v) return;
    free(v->nodes);
    free(v->token_ids);
    free(v->bytes);
    free(v->len);
    free(v->store);
    free(v->eog);
    free(v->is_eog);
    free(v);
}

int32_t halo_grammar_vocab_n_tokens(const halo_grammar_vocab *v) {
    return v->n_tokens;
}
size_t halo_grammar_vocab_n_nodes(const halo_grammar_vocab *v) {
    return v->n_nodes;
}

/* ---- stacks: immutable nodes in an arena with marks ---------------------------------------- */

typedef struct gnode {
    uint32_t pos;   /* index into elems: the next element to match */
    uint32_t depth; /* nodes below and this one */
    uint64_t hash;  /* of the whole chain */
    const struct gnode *parent;
} gnode;

#define ARENA_BLOCK 4096u
#define ARENA_MAX_BLOCKS 2048u   /* 8 M nodes, 256 MiB: a walk beyond it rejects */
#define MAX_DEPTH 4096u          /* a deeper stack is dropped */
#define MAX_STACKS 1024u         /* stacks per set; more are dropped (an ambiguous grammar) */
#define EXPAND_BUDGET (1u << 18) /* rule expansions per character */

typedef struct arena {
    gnode **blocks;
    uint32_t n_blocks, cur, used; /* allocation point: blocks[cur][used] */
} arena;

typedef struct mark {
    uint32_t cur, used;
} mark;

static gnode *arena_alloc(arena *a) {
    if (a->n_blocks == 0 || a->used == ARENA_BLOCK) {
        uint32_t next = a->n_blocks == 0 ? 0 : a->cur + 1;
        if (next >= ARENA_MAX_BLOCKS) return NULL;
        if (next >= a->n_blocks) {
            gnode **b = realloc(a->blocks, sizeof *b * (next + 1));
            if (!b) return NULL;
            a->blocks = b;
            if (!(b[next] = malloc(sizeof **b * ARENA_BLOCK))) return NULL;
            a->n_blocks = next + 1;
        }
        a->cur = next;
        a->used = 0;
    }
    return &a->blocks[a->cur][a->used++];
}

static mark arena_mark(const arena *a) {
    return (mark){a->cur, a->used};
}
static void arena_release(arena *a, mark m) {
    a->cur = m.cur, a->used = m.used;
}
static void arena_clear(arena *a) {
    a->cur = 0, a->used = 0;
}

static void arena_free(arena *a) {
    for (uint32_t i = 0; i < a->n_blocks; i++)
        free(a->blocks[i]);
    free(a->blocks);
    memset(a, 0, sizeof *a);
}

static uint64_t mix(uint64_t h, uint32_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static const gnode *node_new(arena *a, uint32_t pos, const gnode *parent) {
    if (parent && parent->depth >= MAX_DEPTH) return NULL;
    gnode *n = arena_alloc(a);
    if (!n) return NULL;
    n->pos = pos;
    n->parent = parent;
    n->depth = parent ? parent->depth + 1 : 1;
    n->hash = mix(parent ? parent->hash : 0x51ed27u, pos);
    return n;
}

static bool chains_equal(const gnode *a, const gnode *b) {
    while (a && b && a != b) {
        if (a->pos != b->pos || a->hash != b->hash) return false;
        a = a->parent, b = b->parent;
    }
    return a == b;
}

/* ---- matcher --------------------------------------------------------------------------- */

/* A stack set: the empty stack (the text may end) is the NULL entry. */
typedef struct stack_list {
    const gnode **s;
    uint32_t n, cap;
} stack_list;

typedef struct utf8_state {
    uint32_t value; /* bits of the character so far */
    uint8_t need;   /* continuation bytes still to come */
    uint8_t total;  /* continuation bytes of this character */
} utf8_state;

struct halo_grammar_matcher {
    const halo_grammar *g;
    const halo_grammar_vocab *v;
    arena live, spare; /* live: the state's nodes and scratch above a mark; spare: compaction */
    stack_list all;    /* every level's set, one after another (a stack of slices) */
    uint32_t cur_lo, cur_hi; /* the state: all.s[cur_lo .. cur_hi) */
    utf8_state u;
    bool ended;      /* an EOG was accepted */
    bool overflow;   /* a walk ran out of arena: results are conservative (rejections) */
    uint32_t budget; /* expansions left for the current byte (ambiguous grammars explode) */
    struct slice {
        uint32_t lo, hi;
        int32_t same; /* the slice equals the set whose cache holds it: 1, 0, -1 unknown */
    } * adv; /* the mask walk's per-level cache: each stack advanced by a character it takes */
    uint32_t n_adv, cap_adv;
};

static bool list_push(stack_list *l, const gnode *n) {
    if (!grow((void **)&l->s, &l->cap, l->n + 1, sizeof *l->s)) return false;
    l->s[l->n++] = n;
    return true;
}

/* Add a stack to the set all.s[lo ..) unless it is there already. */
static void set_add(halo_grammar_matcher *m, uint32_t lo, const gnode *n) {
    stack_list *l = &m->all;
    for (uint32_t i = lo; i < l->n; i++) {
        const gnode *o = l->s[i];
        if (o == n || (o && n && o->hash == n->hash && chains_equal(o, n))) return;
    }
    if (l->n - lo >= MAX_STACKS) return;
    if (!list_push(l, n)) m->overflow = true;
}

/* Expand n until a character class is on top, adding every resulting stack to the
 * set starting at lo: END returns to the caller, a rule reference becomes one stack
 * per alternative (with the return position pushed unless the call is the last
 * element of its alternative). */
static void normalize(halo_grammar_matcher *m, uint32_t lo, const gnode *n, int guard) {
    const halo_grammar *g = m->g;
    for (;;) {
        if (!n) {
            set_add(m, lo, NULL);
            return;
        }
        elem e = g->elems[n->pos];
        if (e.kind == E_CHAR) {
            set_add(m, lo, n);
            return;
        }
        if (e.kind == E_END) {
            n = n->parent;
            continue;
        }
        break;
    }
    if (guard > (int)MAX_DEPTH || m->budget == 0) {
        m->overflow = true;
        return;
    }
    m->budget--;
    elem e = g->elems[n->pos];
    const gnode *ret = n->parent;
    if (g->elems[n->pos + 1].kind != E_END) {
        ret = node_new(&m->live, n->pos + 1, n->parent);
        if (!ret) {
            m->overflow = true;
            return;
        }
    }
    for (uint32_t a = g->rule_alt[e.value]; a < g->rule_alt[e.value + 1]; a++) {
        const gnode *c = node_new(&m->live, g->alt[a], ret);
        if (!c) {
            m->overflow = true;
            return;
        }
        normalize(m, lo, c, guard + 1);
    }
}

enum { UTF8_BAD = -1, UTF8_PARTIAL = 0, UTF8_CHAR = 1 };

/* Feed byte b to the decoder state u: a whole character (UTF8_CHAR, *cp), the middle
 * of one (UTF8_PARTIAL) or bytes that are no UTF-8 (UTF8_BAD: overlong forms and
 * surrogates included). */
static int utf8_feed(utf8_state *u, uint8_t b, uint32_t *cp) {
    if (u->need == 0) {
        if (b < 0x80) {
            *cp = b;
            return UTF8_CHAR;
        }
        int k = b >= 0xC2 && b <= 0xDF   ? 1
                : b >= 0xE0 && b <= 0xEF ? 2
                : b >= 0xF0 && b <= 0xF4 ? 3
                                         : 0;
        if (!k) return UTF8_BAD;
        u->value = b & (0x3Fu >> k);
        u->need = u->total = (uint8_t)k;
        return UTF8_PARTIAL;
    }
    if ((b & 0xC0) != 0x80) return UTF8_BAD;
    u->value = (u->value << 6) | (b & 0x3F);
    if (--u->need) return UTF8_PARTIAL;
    static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
    *cp = u->value;
    bool ok = *cp >= min_cp[u->total] && *cp <= 0x10FFFF && !(*cp >= 0xD800 && *cp <= 0xDFFF);
    u->total = 0;
    return ok ? UTF8_CHAR : UTF8_BAD;
}

/* The stacks of all.s[lo, hi) whose class meets some completion of the character
 * begun in u, appended to `all` (the same nodes: nothing is matched yet). */
static void keep_partial(halo_grammar_matcher *m, uint32_t lo, uint32_t hi, const utf8_state *u) {
    const halo_grammar *g = m->g;
    uint32_t shift = 6u * u->need, lo_cp = u->value << shift;
    uint32_t hi_cp = lo_cp | ((1u << shift) - 1);
    /* only completions that are characters: no overlong form (F0 80 ..), nothing past
     * U+10FFFF (F4 90 ..), no surrogate (ED A0 ..); a prefix with none is rejected now,
     * not one token later with nothing left to allow */
    static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
    if (lo_cp < min_cp[u->total]) lo_cp = min_cp[u->total];
    if (hi_cp > 0x10FFFF) hi_cp = 0x10FFFF;
    if (lo_cp > hi_cp || (lo_cp >= 0xD800 && hi_cp <= 0xDFFF)) return;
    for (uint32_t i = lo; i < hi; i++) {
        const gnode *n = m->all.s[i];
        if (n && class_meets(g, &g->classes[g->elems[n->pos].value], lo_cp, hi_cp) &&
            !list_push(&m->all, n))
            m->overflow = true;
    }
}

/* The stacks of all.s[lo, hi) that take code point cp, advanced and normalized,
 * appended to `all`. */
static void advance_char(halo_grammar_matcher *m, uint32_t lo, uint32_t hi, uint32_t cp) {
    const halo_grammar *g = m->g;
    uint32_t out = m->all.n;
    m->budget = EXPAND_BUDGET;
    for (uint32_t i = lo; i < hi; i++) {
        const gnode *n = m->all.s[i];
        if (!n || !class_match(g, &g->classes[g->elems[n->pos].value], cp)) continue;
        const gnode *next = node_new(&m->live, n->pos + 1, n->parent);
        if (!next) {
            m->overflow = true;
            continue;
        }
        normalize(m, out, next, 0);
    }
}

/* The set all.s[lo, hi) advanced by byte b (state *u, updated): the new set is
 * appended to `all` (nothing appended: b is rejected). */
static void advance_byte(halo_grammar_matcher *m, uint32_t lo, uint32_t hi, utf8_state *u,
                         uint8_t b) {
    uint32_t cp = 0;
    int r = utf8_feed(u, b, &cp);
    if (r == UTF8_CHAR) advance_char(m, lo, hi, cp);
    else if (r == UTF8_PARTIAL) keep_partial(m, lo, hi, u);
}

static bool set_has_empty(const halo_grammar_matcher *m, uint32_t lo, uint32_t hi) {
    for (uint32_t i = lo; i < hi; i++)
        if (!m->all.s[i]) return true;
    return false;
}

/* Advance the state by s[0..n) into a new set appended to `all`: [*lo, *hi). */
static bool walk_bytes(halo_grammar_matcher *m, const uint8_t *s, size_t n, utf8_state *u,
                       uint32_t *lo, uint32_t *hi) {
    uint32_t a = m->cur_lo, b = m->cur_hi;
    for (size_t i = 0; i < n && a < b; i++) {
        uint32_t start = m->all.n;
        advance_byte(m, a, b, u, s[i]);
        a = start, b = m->all.n;
    }
    *lo = a, *hi = b;
    return a < b;
}

/* Make all.s[lo, hi) the state: its nodes copied into the spare arena (which becomes
 * the live one), everything else dropped. */
static void commit(halo_grammar_matcher *m, uint32_t lo, uint32_t hi) {
    arena_clear(&m->spare);
    uint32_t n = 0;
    for (uint32_t i = lo; i < hi; i++) {
        const gnode *src = m->all.s[i];
        /* copy the chain bottom-up: collect it, then rebuild */
        const gnode *chain[MAX_DEPTH + 1];
        uint32_t d = 0;
        for (const gnode *q = src; q && d <= MAX_DEPTH; q = q->parent)
            chain[d++] = q;
        const gnode *copy = NULL;
        bool ok = true;
        while (d-- > 0 && ok) {
            gnode *c = arena_alloc(&m->spare);
            if (!c) {
                ok = false;
                break;
            }
            *c = *chain[d];
            c->parent = copy;
            copy = c;
        }
        if (!ok) {
            m->overflow = true;
            continue;
        }
        m->all.s[n++] = copy;
    }
    arena tmp = m->live;
    m->live = m->spare;
    m->spare = tmp;
    m->all.n = n;
    m->cur_lo = 0;
    m->cur_hi = n;
}

void halo_grammar_matcher_reset(halo_grammar_matcher *m) {
    arena_clear(&m->live);
    m->all.n = 0;
    m->u = (utf8_state){0};
    m->ended = false;
    m->overflow = false;
    const halo_grammar *g = m->g;
    m->budget = EXPAND_BUDGET;
    for (uint32_t a = g->rule_alt[g->start]; a < g->rule_alt[g->start + 1]; a++) {
        const gnode *c = node_new(&m->live, g->alt[a], NULL);
        if (c) normalize(m, 0, c, 0);
    }
    commit(m, 0, m->all.n);
}

int halo_grammar_matcher_new(const halo_grammar *g, const halo_grammar_vocab *v,
                             halo_grammar_matcher **out, halo_error *err) {
    *out = NULL;
    halo_grammar_matcher *m = calloc(1, sizeof *m);
    if (!m) return halo_error_set(err, HALO_ERR_NOMEM, "grammar: out of memory");
    m->g = g;
    m->v = v;
    halo_grammar_matcher_reset(m);
    if (m->overflow) {
        halo_grammar_matcher_free(m);
        return halo_error_set(err, HALO_ERR_NOMEM, "grammar: out of memory");
    }
    *out = m;
    return 0;
}

void halo_grammar_matcher_free(halo_grammar_matcher *m) {
    if (!m) return;
    arena_free(&m->live);
    arena_free(&m->spare);
    free(m->all.s);
    free(m->adv);
    free(m);
}

int32_t halo_grammar_matcher_vocab_size(const halo_grammar_matcher *m) {
    return m->v->n_tokens;
}

int32_t halo_grammar_matcher_eog(const halo_grammar_matcher *m) {
    return m->v->n_eog ? m->v->eog[0] : -1;
}

bool halo_grammar_matcher_complete(const halo_grammar_matcher *m) {
    return m->ended || (m->u.need == 0 && set_has_empty(m, m->cur_lo, m->cur_hi));
}

bool halo_grammar_matcher_dead(const halo_grammar_matcher *m) {
    return !m->ended && m->cur_lo == m->cur_hi;
}

/* Try bytes; on success with `keep`, they become the state. */
static bool try_bytes(halo_grammar_matcher *m, const uint8_t *s, size_t n, bool keep) {
    if (m->ended) return false;
    mark mk = arena_mark(&m->live);
    uint32_t top = m->all.n, lo, hi;
    utf8_state u = m->u;
    bool ok = walk_bytes(m, s, n, &u, &lo, &hi);
    if (ok && keep) {
        m->u = u;
        /* move the new set to the front, then compact */
        commit(m, lo, hi);
        return true;
    }
    arena_release(&m->live, mk);
    m->all.n = top;
    return ok;
}

static bool token_bytes(const halo_grammar_matcher *m, int32_t token, const uint8_t **s,
                        uint32_t *n) {
    const halo_grammar_vocab *v = m->v;
    if (token < 0 || token >= v->n_tokens || v->len[token] == 0) return false;
    *s = v->bytes[token];
    *n = v->len[token];
    return true;
}

bool halo_grammar_matcher_allows(halo_grammar_matcher *m, int32_t token) {
    const halo_grammar_vocab *v = m->v;
    if (token >= 0 && token < v->n_tokens && v->is_eog[token])
        return halo_grammar_matcher_complete(m);
    const uint8_t *s;
    uint32_t n;
    return token_bytes(m, token, &s, &n) && try_bytes(m, s, n, false);
}

bool halo_grammar_matcher_accept(halo_grammar_matcher *m, int32_t token) {
    const halo_grammar_vocab *v = m->v;
    if (token >= 0 && token < v->n_tokens && v->is_eog[token]) {
        if (!halo_grammar_matcher_complete(m)) return false;
        m->ended = true;
        return true;
    }
    const uint8_t *s;
    uint32_t n;
    return token_bytes(m, token, &s, &n) && try_bytes(m, s, n, true);
}

bool halo_grammar_matcher_accept_bytes(halo_grammar_matcher *m, const char *s, size_t n) {
    if (n == 0) return !m->ended;
    return try_bytes(m, (const uint8_t *)s, n, true);
}

#define NOT_YET UINT32_MAX

/* A set at a character boundary of the walk, and its cache (adv[base ..), one entry
 * per stack: the stack advanced past its top class and normalized, what every
 * character the class takes leads to; NOT_YET until a child needs it). */
typedef struct ref_set {
    uint32_t lo, hi, base;
} ref_set;

/* Set up the cache of all.s[lo, hi): empty, or a copy of the parent's when the set
 * is the parent's own (inherit: the parent's cache). */
static bool cache_new(halo_grammar_matcher *m, uint32_t lo, uint32_t hi, uint32_t inherit,
                      uint32_t *base) {
    if (!grow((void **)&m->adv, &m->cap_adv, m->n_adv + (hi - lo), sizeof *m->adv)) return false;
    *base = m->n_adv;
    m->n_adv += hi - lo;
    for (uint32_t i = 0; i < hi - lo; i++)
        m->adv[*base + i] = inherit != NOT_YET ? m->adv[inherit + i] : (struct slice){NOT_YET, 0, -1};
    return true;
}

/* Whether all.s[a, b) and all.s[lo, hi) hold the same stacks (neither has duplicates). */
static bool sets_equal(const halo_grammar_matcher *m, uint32_t a, uint32_t b, uint32_t lo,
                       uint32_t hi) {
    if (b - a != hi - lo) return false;
    for (uint32_t i = a; i < b; i++) {
        const gnode *x = m->all.s[i];
        bool found = false;
        for (uint32_t k = lo; k < hi && !found; k++) {
            const gnode *y = m->all.s[k];
            found = x == y || (x && y && x->hash == y->hash && chains_equal(x, y));
        }
        if (!found) return false;
    }
    return true;
}

/* Fill r's cache for its stacks that take ASCII byte b. Called at r's own level before
 * a child's mark, so the slices live until the walk leaves r's trie node. */
static void cache_fill(halo_grammar_matcher *m, ref_set r, uint8_t b) {
    const halo_grammar *g = m->g;
    for (uint32_t i = r.lo; i < r.hi; i++) {
        const gnode *n = m->all.s[i];
        struct slice *a = &m->adv[r.base + (i - r.lo)];
        if (!n || a->lo != NOT_YET || !class_match(g, &g->classes[g->elems[n->pos].value], b))
            continue;
        uint32_t start = m->all.n;
        m->budget = EXPAND_BUDGET;
        const gnode *next = node_new(&m->live, n->pos + 1, n->parent);
        if (next) normalize(m, start, next, 0);
        else m->overflow = true;
        *a = (struct slice){start, m->all.n, -1};
    }
}

/* Where in r stack n is (the candidates of a step are r's stacks, or some of them). */
static uint32_t index_in(const halo_grammar_matcher *m, ref_set r, const gnode *n) {
    for (uint32_t k = r.lo; k < r.hi; k++)
        if (m->all.s[k] == n) return k - r.lo;
    return NOT_YET;
}

/* Stack n of r advanced by a character its class takes: from r's cache, else computed
 * now (appended to `all`, not cached: this level's allocations end with it). */
static struct slice advanced(halo_grammar_matcher *m, ref_set r, const gnode *n, uint32_t k) {
    struct slice *a = k != NOT_YET ? &m->adv[r.base + k] : NULL;
    if (a && a->lo != NOT_YET) {
        if (a->same < 0) a->same = sets_equal(m, a->lo, a->hi, r.lo, r.hi);
        return *a;
    }
    uint32_t start = m->all.n;
    m->budget = EXPAND_BUDGET;
    const gnode *next = node_new(&m->live, n->pos + 1, n->parent);
    if (next) normalize(m, start, next, 0);
    else m->overflow = true;
    return (struct slice){start, m->all.n, sets_equal(m, start, m->all.n, r.lo, r.hi)};
}

/* The set after code point cp from the candidates all.s[lo, hi) (r's stacks, or those
 * of them still alive inside a multi-byte character): the one matching stack's
 * advanced slice as it is, or the union of several appended; r's own slice when the
 * step leads back to r's stacks (the next character of a string, a digit run), so
 * that the walk below reuses r's cache and allocates nothing. */
static struct slice step_cached(halo_grammar_matcher *m, ref_set r, uint32_t lo, uint32_t hi,
                                uint32_t cp) {
    const halo_grammar *g = m->g;
    struct slice out = {0, 0, 0};
    int matches = 0;
    bool whole = lo == r.lo && hi == r.hi;
    for (uint32_t i = lo; i < hi; i++) {
        const gnode *n = m->all.s[i];
        if (!n || !class_match(g, &g->classes[g->elems[n->pos].value], cp)) continue;
        struct slice a = advanced(m, r, n, whole ? i - lo : index_in(m, r, n));
        if (matches++ == 0) {
            out = a;
            continue;
        }
        if (matches == 2) { /* start a union with the first slice */
            uint32_t u = m->all.n;
            for (uint32_t k = out.lo; k < out.hi; k++) set_add(m, u, m->all.s[k]);
            out = (struct slice){u, m->all.n, -1};
        }
        for (uint32_t k = a.lo; k < a.hi; k++) set_add(m, out.lo, m->all.s[k]);
        out.hi = m->all.n;
    }
    if (matches > 1) out.same = sets_equal(m, out.lo, out.hi, r.lo, r.hi);
    if (out.same == 1) out = (struct slice){r.lo, r.hi, 1};
    return out;
}

/* Depth-first over the trie below node `at`, the state there being all.s[lo, hi)
 * with UTF-8 state u: every token whose bytes keep some stack alive is allowed. At
 * a character boundary the set gets a cache (inherited when it is the parent's set);
 * inside a character, r is the set where the character began. */
static int32_t mask_walk(halo_grammar_matcher *m, uint32_t at, uint32_t lo, uint32_t hi,
                         utf8_state u, uint32_t inherit, ref_set r, uint8_t *allowed) {
    const halo_grammar_vocab *v = m->v;
    const tnode *t = &v->nodes[at];
    int32_t count = 0;
    uint32_t adv_top = m->n_adv;
    bool boundary = u.need == 0;
    if (boundary) {
        r = (ref_set){lo, hi, 0};
        if (!cache_new(m, lo, hi, inherit, &r.base)) {
            m->overflow = true;
            return 0;
        }
    }
    for (uint32_t c = t->first_child; c < t->first_child + t->n_children; c++) {
        const tnode *child = &v->nodes[c];
        if (boundary && child->byte < 0x80) cache_fill(m, r, child->byte);
        mark mk = arena_mark(&m->live);
        uint32_t top = m->all.n;
        utf8_state cu = u;
        uint32_t cp = 0;
        int kind = utf8_feed(&cu, child->byte, &cp);
        struct slice next = {top, top, 0};
        if (kind == UTF8_CHAR) {
            next = step_cached(m, r, lo, hi, cp);
        } else if (kind == UTF8_PARTIAL) {
            keep_partial(m, lo, hi, &cu);
            next.hi = m->all.n;
        }
        if (next.hi > next.lo) {
            for (uint32_t k = 0; k < child->n_tokens; k++)
                allowed[v->token_ids[child->first_token + k]] = 1;
            count += (int32_t)child->n_tokens;
            bool same = next.same == 1; /* next is r's own set */
            if (child->n_children)
                count += mask_walk(m, c, next.lo, next.hi, cu, same ? r.base : NOT_YET, r,
                                   allowed);
        }
        arena_release(&m->live, mk);
        m->all.n = top;
    }
    m->n_adv = adv_top;
    return count;
}

int32_t halo_grammar_matcher_mask(halo_grammar_matcher *m, uint8_t *allowed) {
    const halo_grammar_vocab *v = m->v;
    memset(allowed, 0, (size_t)v->n_tokens);
    int32_t count = 0;
    if (!m->ended && m->cur_lo < m->cur_hi)
        count = mask_walk(m, 0, m->cur_lo, m->cur_hi, m->u, NOT_YET, (ref_set){0, 0, NOT_YET},
                          allowed);
    if (halo_grammar_matcher_complete(m)) {
        for (int32_t i = 0; i < v->n_eog; i++)
            allowed[v->eog[i]] = 1;
        count += v->n_eog;
    }
    return count;
}
