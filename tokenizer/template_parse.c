/*
 * Chat templates, part 1: the lexer and the parser (Jinja2 syntax -> syntax tree).
 *
 * The lexer cuts the source into text and tags the way jinja2 does with
 * trim_blocks and lstrip_blocks on (the Hugging Face settings): a block or comment
 * tag eats the spaces before it on its line and the newline after it; `-` eats
 * all whitespace on its side, `+` keeps it. Newlines are normalized to \n and one
 * final newline of the source is dropped (jinja2's keep_trailing_newline=False).
 *
 * The parser follows jinja2's grammar and precedence (filters and tests bind
 * tighter than arithmetic, `not` looser than comparisons). Anything outside the
 * supported subset is an error naming the line and column; nesting is bounded so
 * that hostile input cannot exhaust the stack.
 */
#include "template_impl.h"
#include "util/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena and buffer ---------------------------------------------------------- */

struct tpl_chunk {
    tpl_chunk *next;
    size_t size, used;
    max_align_t data[];
};

void *tpl_alloc(tpl_arena *a, size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    if (a->limit && (size > a->limit || a->used > a->limit - size)) {
        a->hit_limit = true;
        return NULL;
    }
    tpl_chunk *c = a->head;
    if (!c || c->size - c->used < size) {
        size_t want = size > (1u << 16) ? size : (1u << 16);
        if (want > SIZE_MAX - sizeof(tpl_chunk)) return NULL;
        c = malloc(sizeof(tpl_chunk) + want);
        if (!c) return NULL;
        c->size = want;
        c->used = 0;
        /* a large one-off block goes behind the current chunk, which keeps its room */
        if (a->head && size > (1u << 15)) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = (char *)c->data + c->used;
    c->used += size;
    a->used += size;
    memset(p, 0, size);
    return p;
}

void *tpl_alloc_array(tpl_arena *a, size_t n, size_t size) {
    uint64_t total;
    if (halo_mul_overflow(n, size, &total) || total > SIZE_MAX) {
        a->hit_limit = true;
        return NULL;
    }
    return tpl_alloc(a, (size_t)total);
}

char *tpl_strdup(tpl_arena *a, const char *s, size_t n) {
    if (n == SIZE_MAX) return NULL;
    char *p = tpl_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void tpl_arena_free(tpl_arena *a) {
    tpl_chunk *c = a->head;
    while (c) {
        tpl_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}

bool tpl_buf_add(tpl_buf *b, const char *s, size_t n) {
    if (b->failed) return false;
    if (n == 0) return true;
    if (n > SIZE_MAX - b->n - 1 || (b->limit && b->n + n > b->limit)) {
        b->failed = true;
        return false;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) {
            if (cap > SIZE_MAX / 2) {
                cap = b->n + n + 1;
                break;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return false;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

bool tpl_buf_addc(tpl_buf *b, char c) { return tpl_buf_add(b, &c, 1); }

bool tpl_buf_addf(tpl_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->failed = true;
        return false;
    }
    return tpl_buf_add(b, tmp, (size_t)n);
}

void tpl_buf_free(tpl_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- lexer ------------------------------------------------------------------------ */

typedef enum tok_kind {
    T_EOF,
    T_TEXT,        /* s, n: literal text (already whitespace-controlled) */
    T_VAR_BEGIN,   /* {{ */
    T_VAR_END,     /* }} */
    T_BLOCK_BEGIN, /* {% */
    T_BLOCK_END,   /* %} */
    T_NAME,
    T_STRING, /* s, n: the unescaped value */
    T_INT,
    T_FLOAT,
    T_OP, /* s, n: the operator */
} tok_kind;

typedef struct tok {
    tok_kind kind;
    int line, col;
    const char *s;
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct lexer {
    const char *src; /* normalized source */
    size_t len, pos;
    int line, col; /* of pos */
    tok *toks;
    size_t n, cap;
    tpl_arena *arena;
    halo_error *err;
} lexer;

#define MAX_TOKENS ((size_t)1 << 24)
#define MAX_NEST 200 /* nested expressions / blocks */

static int lex_fail(lexer *L, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int lex_fail(lexer *L, int line, int col, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return halo_error_set(L->err, HALO_ERR_FORMAT, "template:%d:%d: %s", line, col, msg);
}

/* advance pos to `to`, keeping line and column */
static void lex_advance(lexer *L, size_t to) {
    for (; L->pos < to; L->pos++) {
        if (L->src[L->pos] == '\n') {
            L->line++;
            L->col = 1;
        } else if (((unsigned char)L->src[L->pos] & 0xC0) != 0x80) {
            L->col++;
        }
    }
}

static tok *lex_push(lexer *L, tok_kind kind, int line, int col) {
    if (L->n == L->cap) {
        if (L->cap >= MAX_TOKENS) {
            lex_fail(L, line, col, "the template is too long (more than %zu tokens)", MAX_TOKENS);
            return NULL;
        }
        size_t cap = L->cap ? L->cap * 2 : 256;
        tok *t = realloc(L->toks, cap * sizeof *t);
        if (!t) {
            halo_error_set(L->err, HALO_ERR_NOMEM, "template: out of memory");
            return NULL;
        }
        L->toks = t;
        L->cap = cap;
    }
    tok *t = &L->toks[L->n++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->line = line;
    t->col = col;
    return t;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

static int hexdig(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static size_t utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string literal at pos (the quote); Python escapes as jinja2 decodes them. */
static int lex_string(lexer *L) {
    const char *s = L->src;
    size_t i = L->pos + 1;
    char q = s[L->pos];
    int line = L->line, col = L->col;
    size_t end = i;
    while (end < L->len && s[end] != q) {
        if (s[end] == '\\' && end + 1 < L->len) end++;
        end++;
    }
    if (end >= L->len) return lex_fail(L, line, col, "unterminated string");
    char *out = tpl_alloc(L->arena, end - i + 1);
    if (!out) return halo_error_set(L->err, HALO_ERR_NOMEM, "template: out of memory");
    size_t o = 0;
    while (i < end) {
        char c = s[i];
        if (c != '\\') {
            out[o++] = c;
            i++;
            continue;
        }
        char e = s[i + 1];
        i += 2;
        switch (e) {
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'r': out[o++] = '\r'; break;
        case '\\': out[o++] = '\\'; break;
        case '\'': out[o++] = '\''; break;
        case '"': out[o++] = '"'; break;
        case 'a': out[o++] = '\a'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'v': out[o++] = '\v'; break;
        case '\n': break; /* line continuation */
        case 'x':
        case 'u':
        case 'U': {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < nd; k++) {
                int h = i + (size_t)k < end ? hexdig(s[i + k]) : -1;
                if (h < 0) return lex_fail(L, line, col, "bad \\%c escape in a string", e);
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10FFFF) return lex_fail(L, line, col, "bad \\%c escape in a string", e);
            i += (size_t)nd;
            /* the escape text is at least as long as its UTF-8 (\xNN: 4 >= 2) */
            o += utf8_put(out + o, cp);
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < end && s[i] >= '0' && s[i] <= '7'; k++) cp = cp * 8 + (uint32_t)(s[i++] - '0');
                o += utf8_put(out + o, cp);
            } else { /* unknown escape: kept as written */
                out[o++] = '\\';
                out[o++] = e;
            }
        }
    }
    out[o] = '\0';
    tok *t = lex_push(L, T_STRING, line, col);
    if (!t) return -1;
    t->s = out;
    t->n = o;
    lex_advance(L, end + 1);
    return 0;
}

static int lex_number(lexer *L) {
    const char *s = L->src;
    size_t i = L->pos;
    int line = L->line, col = L->col;
    char digits[128];
    size_t nd = 0;
    bool is_float = false;
    while (i < L->len && (is_digit(s[i]) || s[i] == '_')) {
        if (s[i] != '_' && nd < sizeof digits - 8) digits[nd++] = s[i];
        i++;
    }
    if (i + 1 < L->len && s[i] == '.' && is_digit(s[i + 1])) {
        is_float = true;
        digits[nd++] = s[i++];
        while (i < L->len && (is_digit(s[i]) || s[i] == '_')) {
            if (s[i] != '_' && nd < sizeof digits - 8) digits[nd++] = s[i];
            i++;
        }
    }
    if (i < L->len && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < L->len && (s[j] == '+' || s[j] == '-')) j++;
        if (j < L->len && is_digit(s[j])) {
            is_float = true;
            digits[nd++] = 'e';
            if (s[i + 1] == '-' || s[i + 1] == '+') digits[nd++] = s[i + 1];
            i = j;
            while (i < L->len && is_digit(s[i])) {
                if (nd < sizeof digits - 1) digits[nd++] = s[i];
                i++;
            }
        }
    }
    digits[nd] = '\0';
    tok *t = lex_push(L, is_float ? T_FLOAT : T_INT, line, col);
    if (!t) return -1;
    errno = 0;
    if (is_float) {
        t->f = strtod(digits, NULL);
    } else {
        t->i = strtoll(digits, NULL, 10);
        if (errno == ERANGE) return lex_fail(L, line, col, "integer %s is too large", digits);
    }
    lex_advance(L, i);
    return 0;
}

static const char *const OPS2[] = {"//", "**", "==", "!=", "<=", ">=", NULL};
static const char OPS1[] = "+-*/%~<>=()[]{},.:|";

/* The tokens of a tag's inside, up to its end marker. end: "}}" or "%}". Returns
 * the position after the end marker; *strip_after: the end had '-'. */
static int lex_tag(lexer *L, const char *end, bool *strip_after, bool *keep_after) {
    int depth = 0;
    for (;;) {
        const char *s = L->src;
        while (L->pos < L->len && is_space(s[L->pos])) lex_advance(L, L->pos + 1);
        if (L->pos >= L->len) return lex_fail(L, L->line, L->col, "missing '%s' before the end of the template", end);
        size_t p = L->pos;
        if (depth == 0) {
            if ((s[p] == '-' || s[p] == '+') && p + 2 < L->len + 0 && !strncmp(s + p + 1, end, 2)) {
                *strip_after = s[p] == '-';
                *keep_after = s[p] == '+';
                tok *t = lex_push(L, end[0] == '}' ? T_VAR_END : T_BLOCK_END, L->line, L->col);
                if (!t) return -1;
                lex_advance(L, p + 3);
                return 0;
            }
            if (p + 1 < L->len && !strncmp(s + p, end, 2)) {
                *strip_after = false;
                *keep_after = false;
                tok *t = lex_push(L, end[0] == '}' ? T_VAR_END : T_BLOCK_END, L->line, L->col);
                if (!t) return -1;
                lex_advance(L, p + 2);
                return 0;
            }
        }
        char c = s[p];
        if (c == '\'' || c == '"') {
            if (lex_string(L)) return -1;
        } else if (is_digit(c)) {
            if (lex_number(L)) return -1;
        } else if (is_name_start(c)) {
            size_t e = p;
            while (e < L->len && is_name_char(s[e])) e++;
            tok *t = lex_push(L, T_NAME, L->line, L->col);
            if (!t) return -1;
            t->s = s + p;
            t->n = e - p;
            lex_advance(L, e);
        } else {
            size_t n = 0;
            for (int k = 0; OPS2[k]; k++)
                if (p + 1 < L->len && !strncmp(s + p, OPS2[k], 2)) n = 2;
            if (!n && c && strchr(OPS1, c)) n = 1;
            if (!n) {
                if (c == '#' || c == '%' || c == '}')
                    return lex_fail(L, L->line, L->col, "unexpected '%c' (missing '%s'?)", c, end);
                return lex_fail(L, L->line, L->col, "unexpected character '%c'", c);
            }
            if (n == 1 && (c == '(' || c == '[' || c == '{')) {
                if (++depth > MAX_NEST) return lex_fail(L, L->line, L->col, "brackets nested too deeply");
            }
            if (n == 1 && (c == ')' || c == ']' || c == '}')) {
                if (depth == 0) return lex_fail(L, L->line, L->col, "unexpected '%c'", c);
                depth--;
            }
            tok *t = lex_push(L, T_OP, L->line, L->col);
            if (!t) return -1;
            t->s = s + p;
            t->n = n;
            lex_advance(L, p + n);
        }
    }
}

/* Whitespace as Python's str.isspace() and re's \s see it (jinja2 strips with
 * them): ASCII whitespace, \x1c-\x1f and the Unicode spaces. Returns the
 * length of the whitespace character at s[i] (forward) or ending at s[i] (back),
 * 0 if there is none. */
static size_t space_fwd(const char *s, size_t n, size_t i) {
    unsigned char c = (unsigned char)s[i];
    if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
    if (c < 0xC2) return 0;
    uint32_t cp;
    size_t len;
    if (c < 0xE0 && i + 1 < n) cp = ((c & 0x1Fu) << 6) | ((unsigned char)s[i + 1] & 0x3Fu), len = 2;
    else if (c >= 0xE0 && c < 0xF0 && i + 2 < n)
        cp = ((c & 0x0Fu) << 12) | (((unsigned char)s[i + 1] & 0x3Fu) << 6) | ((unsigned char)s[i + 2] & 0x3Fu), len = 3;
    else return 0;
    for (size_t k = 1; k < len; k++)
        if (((unsigned char)s[i + k] & 0xC0) != 0x80) return 0;
    bool sp = cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
              cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
    return sp ? len : 0;
}

static size_t space_back(const char *s, size_t start, size_t end) { /* a space ending at end? */
    for (size_t len = 1; len <= 3 && len <= end - start; len++) {
        size_t at = end - len;
        if (((unsigned char)s[at] & 0xC0) == 0x80) continue; /* inside a character: look further back */
        return space_fwd(s, end, at) == len ? len : 0;
    }
    return 0;
}

/* Is text[from..to) only whitespace other than newlines? */
static bool only_blanks(const char *s, size_t from, size_t to) {
    for (size_t i = from; i < to;) {
        size_t k = s[i] == '\n' ? 0 : space_fwd(s, to, i);
        if (!k) return false;
        i += k;
    }
    return true;
}

/* Push the text [start, end), trimmed per the tag that follows it. */
static int lex_text(lexer *L, size_t start, size_t end, int line, int col, bool strip_before,
                    bool lstrip, bool line_starting) {
    const char *s = L->src;
    if (strip_before) {
        size_t k;
        while (end > start && (k = space_back(s, start, end))) end -= k;
    } else if (lstrip) {
        size_t nl = end;
        while (nl > start && s[nl - 1] != '\n') nl--;
        if ((nl > start || line_starting) && only_blanks(s, nl, end)) end = nl;
    }
    if (end > start) {
        tok *t = lex_push(L, T_TEXT, line, col);
        if (!t) return -1;
        t->s = s + start;
        t->n = end - start;
    }
    return 0;
}

/* "{%" [-+] ws NAME ws [-+] "%}" at p? Returns the end position or 0. */
static size_t match_simple_block(const char *s, size_t len, size_t p, const char *name, char *lsign, char *rsign) {
    if (p + 2 > len || s[p] != '{' || s[p + 1] != '%') return 0;
    size_t i = p + 2;
    *lsign = 0;
    if (i < len && (s[i] == '-' || s[i] == '+')) *lsign = s[i++];
    while (i < len && is_space(s[i])) i++;
    size_t n = strlen(name);
    if (i + n > len || strncmp(s + i, name, n)) return 0;
    i += n;
    if (i < len && is_name_char(s[i])) return 0;
    while (i < len && is_space(s[i])) i++;
    *rsign = 0;
    if (i < len && (s[i] == '-' || s[i] == '+')) *rsign = s[i++];
    if (i + 2 > len || s[i] != '%' || s[i + 1] != '}') return 0;
    return i + 2;
}

static int lex_all(lexer *L) {
    const char *s = L->src;
    bool strip_next = false;   /* the previous tag ended with '-' */
    bool line_starting = true; /* the previous tag's end was followed by a consumed newline */
    for (;;) {
        size_t start = L->pos;
        int line = L->line, col = L->col;
        if (strip_next) {
            size_t k;
            while (L->pos < L->len && (k = space_fwd(s, L->len, L->pos))) lex_advance(L, L->pos + k);
            start = L->pos;
            line = L->line;
            col = L->col;
            strip_next = false;
        }
        /* find the next tag opening */
        size_t p = start;
        while (p + 1 < L->len && !(s[p] == '{' && (s[p + 1] == '{' || s[p + 1] == '%' || s[p + 1] == '#'))) p++;
        if (p + 1 >= L->len) {
            if (lex_text(L, start, L->len, line, col, false, false, false)) return -1;
            lex_advance(L, L->len);
            break;
        }
        char kind = s[p + 1];
        char sign = p + 2 < L->len ? s[p + 2] : 0;
        bool strip_before = sign == '-';
        bool lstrip = kind != '{' && sign != '+';
        if (lex_text(L, start, p, line, col, strip_before, lstrip, line_starting)) return -1;
        lex_advance(L, p);
        int tline = L->line, tcol = L->col;
        bool strip_after = false, keep_after = false;
        char ls, rs;
        size_t raw_end = match_simple_block(s, L->len, p, "raw", &ls, &rs);
        if (kind == '#') {
            size_t e = p + 2;
            while (e + 1 < L->len && !(s[e] == '#' && s[e + 1] == '}')) e++;
            if (e + 1 >= L->len) return lex_fail(L, tline, tcol, "unterminated comment");
            strip_after = e > p + 2 && s[e - 1] == '-';
            keep_after = e > p + 2 && s[e - 1] == '+';
            lex_advance(L, e + 2);
        } else if (raw_end) {
            lex_advance(L, raw_end);
            size_t cstart = L->pos;
            int cline = L->line, ccol = L->col;
            if (rs == '-') {
                while (cstart < L->len && is_space(s[cstart])) cstart++;
            }
            size_t q = cstart, end_end = 0;
            char els = 0, ers = 0;
            for (; q + 1 < L->len; q++) {
                if (s[q] == '{' && s[q + 1] == '%' && (end_end = match_simple_block(s, L->len, q, "endraw", &els, &ers))) break;
            }
            if (!end_end) return lex_fail(L, tline, tcol, "missing {%% endraw %%}");
            lex_advance(L, cstart);
            if (lex_text(L, cstart, q, cline, ccol, els == '-', els != '+', false)) return -1;
            lex_advance(L, end_end);
            strip_after = ers == '-';
            keep_after = ers == '+';
        } else {
            bool var = kind == '{';
            tok *t = lex_push(L, var ? T_VAR_BEGIN : T_BLOCK_BEGIN, tline, tcol);
            if (!t) return -1;
            lex_advance(L, p + 2 + ((sign == '-' || sign == '+') ? 1 : 0));
            if (lex_tag(L, var ? "}}" : "%}", &strip_after, &keep_after)) return -1;
            if (var) keep_after = true; /* trim_blocks does not apply to {{ }} */
        }
        line_starting = false;
        if (strip_after) {
            strip_next = true;
        } else if (!keep_after && L->pos < L->len && s[L->pos] == '\n') {
            lex_advance(L, L->pos + 1); /* trim_blocks */
            line_starting = true;
        }
    }
    return lex_push(L, T_EOF, L->line, L->col) ? 0 : -1;
}

/* ---- parser ------------------------------------------------------------------------ */

typedef struct parser {
    tok *toks;
    size_t n, pos;
    tpl_arena *arena;
    halo_error *err;
    int depth;
    int loops; /* for bodies around the current position (inside the current macro) */
} parser;

static int pfail(parser *P, const tok *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pfail(parser *P, const tok *t, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return halo_error_set(P->err, HALO_ERR_UNSUPPORTED, "template:%d:%d: %s", t->line, t->col, msg);
}

static tok *peek(parser *P) { return &P->toks[P->pos]; }
static tok *peek2(parser *P) { return &P->toks[P->pos + 1 < P->n ? P->pos + 1 : P->pos]; }
static tok *next(parser *P) {
    tok *t = &P->toks[P->pos];
    if (P->pos + 1 < P->n) P->pos++;
    return t;
}
static bool is_op(const tok *t, const char *op) { return t->kind == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n); }
static bool is_name(const tok *t, const char *name) { return t->kind == T_NAME && t->n == strlen(name) && !memcmp(t->s, name, t->n); }
static bool skip_op(parser *P, const char *op) {
    if (!is_op(peek(P), op)) return false;
    next(P);
    return true;
}
static bool skip_name(parser *P, const char *name) {
    if (!is_name(peek(P), name)) return false;
    next(P);
    return true;
}

static const char *tok_desc(const tok *t, char *buf, size_t size) {
    switch (t->kind) {
    case T_EOF: return "end of template";
    case T_TEXT: return "text";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "'%}'";
    case T_STRING: return "a string";
    case T_INT:
    case T_FLOAT: return "a number";
    default: snprintf(buf, size, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s); return buf;
    }
}

static int expect_op(parser *P, const char *op) {
    if (skip_op(P, op)) return 0;
    char b[64];
    return pfail(P, peek(P), "expected '%s', got %s", op, tok_desc(peek(P), b, sizeof b));
}

static tnode *mk(parser *P, tnode_kind kind, const tok *at) {
    tnode *n = tpl_alloc(P->arena, sizeof *n);
    if (!n) {
        halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory");
        return NULL;
    }
    n->kind = (uint8_t)kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

static const char *tok_name(parser *P, const tok *t) { return tpl_strdup(P->arena, t->s, t->n); }

/* a growable list of nodes / names during parsing */
typedef struct nvec {
    tnode **v;
    const char **names;
    int n, cap;
} nvec;

static bool nvec_push(nvec *v, tnode *node, const char *name) {
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 8;
        if (cap > (1 << 24)) return false;
        tnode **nv = realloc(v->v, (size_t)cap * sizeof *nv);
        if (!nv) return false;
        v->v = nv;
        const char **nn = realloc(v->names, (size_t)cap * sizeof *nn);
        if (!nn) return false;
        v->names = nn;
        v->cap = cap;
    }
    v->v[v->n] = node;
    v->names[v->n] = name;
    v->n++;
    return true;
}

static void nvec_free(nvec *v) {
    free(v->v);
    free(v->names);
}

/* copy to the arena */
static tnode **nvec_nodes(parser *P, nvec *v) {
    if (!v->n) return NULL;
    tnode **o = tpl_alloc_array(P->arena, (size_t)v->n, sizeof *o);
    if (o) memcpy(o, v->v, (size_t)v->n * sizeof *o);
    return o;
}
static const char **nvec_names(parser *P, nvec *v) {
    if (!v->n) return NULL;
    const char **o = tpl_alloc_array(P->arena, (size_t)v->n, sizeof *o);
    if (o) memcpy(o, v->names, (size_t)v->n * sizeof *o);
    return o;
}

static tnode *parse_expr(parser *P);
static tnode *parse_or(parser *P);
static tnode *parse_unary(parser *P, bool with_filter);
static tnode *parse_primary(parser *P);

static bool enter(parser *P) {
    if (++P->depth > MAX_NEST) {
        pfail(P, peek(P), "expression nested too deeply");
        return false;
    }
    return true;
}

/* (args, name=value...) after the '(' was consumed */
static int parse_call_args(parser *P, tnode *n) {
    nvec pos = {0}, kw = {0};
    int rc = -1;
    if (!skip_op(P, ")")) {
        for (;;) {
            tok *t = peek(P);
            if (t->kind == T_NAME && is_op(peek2(P), "=")) {
                next(P);
                next(P);
                tnode *val = parse_expr(P);
                if (!val) goto out;
                const char *name = tok_name(P, t);
                if (!name || !nvec_push(&kw, val, name)) goto oom;
            } else {
                if (is_op(t, "*")) {
                    pfail(P, t, "*args in calls is not supported");
                    goto out;
                }
                if (kw.n) {
                    pfail(P, t, "positional argument after a keyword argument");
                    goto out;
                }
                tnode *val = parse_expr(P);
                if (!val) goto out;
                if (!nvec_push(&pos, val, NULL)) goto oom;
            }
            if (skip_op(P, ")")) break;
            if (expect_op(P, ",")) goto out;
            if (skip_op(P, ")")) break; /* trailing comma */
        }
    }
    n->v = nvec_nodes(P, &pos);
    n->nv = pos.n;
    n->w = nvec_nodes(P, &kw);
    n->names = nvec_names(P, &kw);
    n->nw = kw.n;
    if ((pos.n && !n->v) || (kw.n && (!n->w || !n->names))) goto oom;
    rc = 0;
    goto out;
oom:
    halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory");
out:
    nvec_free(&pos);
    nvec_free(&kw);
    return rc;
}

/* a dotted name for filters and tests */
static const char *parse_dotted(parser *P) {
    tok *t = peek(P);
    char b[64];
    if (t->kind != T_NAME) {
        pfail(P, t, "expected a name, got %s", tok_desc(t, b, sizeof b));
        return NULL;
    }
    next(P);
    if (!is_op(peek(P), ".") || peek2(P)->kind != T_NAME) return tok_name(P, t);
    /* a dotted name (jinja2 accepts them; no filter or test halo knows has one) */
    tpl_buf nb = {0};
    tpl_buf_add(&nb, t->s, t->n);
    while (is_op(peek(P), ".") && peek2(P)->kind == T_NAME) {
        next(P);
        tok *u = next(P);
        tpl_buf_addc(&nb, '.');
        tpl_buf_add(&nb, u->s, u->n);
    }
    const char *name = nb.failed ? NULL : tpl_strdup(P->arena, nb.p, nb.n);
    tpl_buf_free(&nb);
    if (!name) halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory");
    return name;
}

static tnode *parse_filter(parser *P, tnode *operand) {
    /* '|' already consumed */
    tok *at = peek(P);
    const char *name = parse_dotted(P);
    if (!name) return NULL;
    tnode *f = mk(P, N_FILTER, at);
    if (!f) return NULL;
    f->a = operand;
    f->name = name;
    if (skip_op(P, "(") && parse_call_args(P, f)) return NULL;
    return f;
}

static tnode *parse_postfix(parser *P, tnode *node);

static tnode *parse_filter_expr(parser *P, tnode *node) {
    for (;;) {
        tok *t = peek(P);
        if (is_op(t, "|")) {
            next(P);
            node = parse_filter(P, node);
            if (!node) return NULL;
        } else if (is_name(t, "is")) {
            next(P);
            bool neg = skip_name(P, "not");
            tok *at = peek(P);
            const char *name = parse_dotted(P);
            if (!name) return NULL;
            tnode *n = mk(P, N_TEST, at);
            if (!n) return NULL;
            n->a = node;
            n->name = name;
            n->flag = neg;
            tok *u = peek(P);
            if (is_op(u, "(")) {
                next(P);
                if (parse_call_args(P, n)) return NULL;
            } else if ((u->kind == T_NAME && !is_name(u, "else") && !is_name(u, "or") && !is_name(u, "and") &&
                        !is_name(u, "if") && !is_name(u, "in") && !is_name(u, "is") && !is_name(u, "not") &&
                        !is_name(u, "recursive")) ||
                       u->kind == T_STRING || u->kind == T_INT || u->kind == T_FLOAT || is_op(u, "[") || is_op(u, "{")) {
                /* a single argument without parentheses: `is divisibleby 3` */
                tnode *arg = parse_primary(P);
                if (!arg) return NULL;
                arg = parse_postfix(P, arg);
                if (!arg) return NULL;
                n->v = tpl_alloc(P->arena, sizeof *n->v);
                if (!n->v) {
                    halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory");
                    return NULL;
                }
                n->v[0] = arg;
                n->nv = 1;
            }
            node = n;
        } else if (is_op(t, "(")) { /* a call, as in jinja2; no [ ] or . after a filter */
            next(P);
            tnode *n = mk(P, N_CALL, t);
            if (!n) return NULL;
            n->line = node->line;
            n->col = node->col;
            n->a = node;
            if (parse_call_args(P, n)) return NULL;
            node = n;
        } else {
            return node;
        }
    }
}

static tnode *parse_subscript(parser *P, tnode *obj, tok *at) {
    /* '[' consumed */
    tnode *parts[3] = {NULL, NULL, NULL};
    int np = 0;
    bool slice = false;
    for (;;) {
        if (is_op(peek(P), ":")) {
            next(P);
            slice = true;
            np++;
            if (np > 2) return pfail(P, at, "too many ':' in a slice"), NULL;
            continue;
        }
        if (is_op(peek(P), "]")) break;
        if (parts[np]) return pfail(P, peek(P), "expected ']'"), NULL;
        parts[np] = parse_expr(P);
        if (!parts[np]) return NULL;
        if (!slice && !is_op(peek(P), ":")) break;
    }
    if (expect_op(P, "]")) return NULL;
    tnode *n = mk(P, slice ? N_SLICE : N_GETITEM, at);
    if (!n) return NULL;
    n->a = obj;
    n->b = parts[0];
    if (slice) {
        n->c = parts[1];
        n->d = parts[2];
    } else if (!parts[0]) {
        return pfail(P, at, "empty subscript"), NULL;
    }
    return n;
}

static tnode *parse_postfix(parser *P, tnode *node) {
    for (;;) {
        tok *t = peek(P);
        if (is_op(t, ".")) {
            next(P);
            tok *u = next(P);
            if (u->kind == T_NAME) {
                tnode *n = mk(P, N_GETATTR, t);
                if (!n || !(n->name = tok_name(P, u))) return NULL;
                n->a = node;
                node = n;
            } else if (u->kind == T_INT) {
                tnode *n = mk(P, N_GETITEM, t), *k = mk(P, N_LIT, u);
                if (!n || !k) return NULL;
                k->lit = tv_int(u->i);
                n->a = node;
                n->b = k;
                node = n;
            } else {
                char b[64];
                return pfail(P, u, "expected an attribute name after '.', got %s", tok_desc(u, b, sizeof b)), NULL;
            }
        } else if (is_op(t, "[")) {
            next(P);
            node = parse_subscript(P, node, t);
            if (!node) return NULL;
        } else if (is_op(t, "(")) {
            next(P);
            tnode *n = mk(P, N_CALL, t);
            if (!n) return NULL;
            n->line = node->line; /* errors point at the function, not at '(' */
            n->col = node->col;
            n->a = node;
            if (parse_call_args(P, n)) return NULL;
            node = n;
        } else {
            return node;
        }
    }
}

/* comma-separated expressions up to `close` (consumed); for lists, tuples */
static int parse_items(parser *P, const char *close, nvec *out, bool *had_comma) {
    *had_comma = false;
    while (!skip_op(P, close)) {
        tnode *e = parse_expr(P);
        if (!e) return -1;
        if (!nvec_push(out, e, NULL)) return halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory");
        if (skip_op(P, close)) break;
        if (expect_op(P, ",")) return -1;
        *had_comma = true;
    }
    return 0;
}

static tnode *parse_primary(parser *P) {
    tok *t = peek(P);
    char b[64];
    switch (t->kind) {
    case T_NAME: {
        next(P);
        tnode *n = mk(P, N_LIT, t);
        if (!n) return NULL;
        if (is_name(t, "true") || is_name(t, "True")) n->lit = tv_bool(true);
        else if (is_name(t, "false") || is_name(t, "False")) n->lit = tv_bool(false);
        else if (is_name(t, "none") || is_name(t, "None")) n->lit = tv_none();
        else {
            n->kind = N_NAME;
            if (!(n->name = tok_name(P, t))) return NULL;
        }
        return n;
    }
    case T_STRING: {
        /* adjacent literals join: 'a' 'b' */
        tpl_buf buf = {0};
        tok *first = t;
        while (peek(P)->kind == T_STRING) {
            tok *u = next(P);
            tpl_buf_add(&buf, u->s, u->n);
        }
        if (buf.failed) {
            tpl_buf_free(&buf);
            return halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory"), NULL;
        }
        tnode *n = mk(P, N_LIT, first);
        const char *s = n ? tpl_strdup(P->arena, buf.p ? buf.p : "", buf.n) : NULL;
        size_t len = buf.n;
        tpl_buf_free(&buf);
        if (!s) return halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory"), NULL;
        n->lit = tv_str(s, len);
        return n;
    }
    case T_INT:
    case T_FLOAT: {
        next(P);
        tnode *n = mk(P, N_LIT, t);
        if (!n) return NULL;
        n->lit = t->kind == T_INT ? tv_int(t->i) : tv_float(t->f);
        return n;
    }
    case T_OP:
        if (is_op(t, "(")) {
            next(P);
            nvec items = {0};
            bool comma;
            if (parse_items(P, ")", &items, &comma)) {
                nvec_free(&items);
                return NULL;
            }
            tnode *n;
            if (items.n == 1 && !comma) {
                n = items.v[0];
            } else {
                n = mk(P, N_TUPLE, t);
                if (n) {
                    n->v = nvec_nodes(P, &items);
                    n->nv = items.n;
                }
            }
            nvec_free(&items);
            return n;
        }
        if (is_op(t, "[")) {
            next(P);
            nvec items = {0};
            bool comma;
            if (parse_items(P, "]", &items, &comma)) {
                nvec_free(&items);
                return NULL;
            }
            tnode *n = mk(P, N_LIST, t);
            if (n) {
                n->v = nvec_nodes(P, &items);
                n->nv = items.n;
            }
            nvec_free(&items);
            return n;
        }
        if (is_op(t, "{")) {
            next(P);
            nvec keys = {0}, vals = {0};
            tnode *n = NULL;
            while (!skip_op(P, "}")) {
                tnode *k = parse_expr(P);
                if (!k || expect_op(P, ":")) goto dict_out;
                tnode *v = parse_expr(P);
                if (!v) goto dict_out;
                if (!nvec_push(&keys, k, NULL) || !nvec_push(&vals, v, NULL)) {
                    halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory");
                    goto dict_out;
                }
                if (skip_op(P, "}")) break;
                if (expect_op(P, ",")) goto dict_out;
            }
            n = mk(P, N_DICT, t);
            if (n) {
                n->v = nvec_nodes(P, &keys);
                n->nv = keys.n;
                n->w = nvec_nodes(P, &vals);
                n->nw = vals.n;
            }
        dict_out:
            nvec_free(&keys);
            nvec_free(&vals);
            return n;
        }
        break;
    default: break;
    }
    pfail(P, t, "unexpected %s", tok_desc(t, b, sizeof b));
    return NULL;
}

static tnode *parse_unary(parser *P, bool with_filter) {
    if (!enter(P)) return NULL;
    tok *t = peek(P);
    tnode *node;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(P);
        tnode *a = parse_unary(P, false);
        if (!a) return NULL;
        node = mk(P, is_op(t, "-") ? N_NEG : N_POS, t);
        if (!node) return NULL;
        node->a = a;
    } else {
        node = parse_primary(P);
        if (!node) return NULL;
    }
    node = parse_postfix(P, node);
    if (node && with_filter) node = parse_filter_expr(P, node);
    P->depth--;
    return node;
}

static tnode *mk_bin(parser *P, tnode_kind kind, top op, tok *at, tnode *a, tnode *b) {
    tnode *n = mk(P, kind, at);
    if (!n) return NULL;
    n->op = (uint8_t)op;
    n->a = a;
    n->b = b;
    return n;
}

static tnode *parse_pow(parser *P) {
    tnode *l = parse_unary(P, true);
    while (l && is_op(peek(P), "**")) {
        tok *t = next(P);
        tnode *r = parse_unary(P, true);
        if (!r) return NULL;
        l = mk_bin(P, N_BINARY, TOP_POW, t, l, r);
    }
    return l;
}

static tnode *parse_math2(parser *P) {
    tnode *l = parse_pow(P);
    for (;;) {
        if (!l) return NULL;
        tok *t = peek(P);
        top op;
        if (is_op(t, "*")) op = TOP_MUL;
        else if (is_op(t, "/")) op = TOP_DIV;
        else if (is_op(t, "//")) op = TOP_FLOORDIV;
        else if (is_op(t, "%")) op = TOP_MOD;
        else return l;
        next(P);
        tnode *r = parse_pow(P);
        if (!r) return NULL;
        l = mk_bin(P, N_BINARY, op, t, l, r);
    }
}

static tnode *parse_concat(parser *P) {
    tnode *l = parse_math2(P);
    while (l && is_op(peek(P), "~")) {
        tok *t = next(P);
        tnode *r = parse_math2(P);
        if (!r) return NULL;
        l = mk_bin(P, N_BINARY, TOP_CONCAT, t, l, r);
    }
    return l;
}

static tnode *parse_math1(parser *P) {
    tnode *l = parse_concat(P);
    for (;;) {
        if (!l) return NULL;
        tok *t = peek(P);
        top op;
        if (is_op(t, "+")) op = TOP_ADD;
        else if (is_op(t, "-")) op = TOP_SUB;
        else return l;
        next(P);
        tnode *r = parse_concat(P);
        if (!r) return NULL;
        l = mk_bin(P, N_BINARY, op, t, l, r);
    }
}

static tnode *parse_compare(parser *P) {
    tok *at = peek(P);
    tnode *l = parse_math1(P);
    if (!l) return NULL;
    nvec rhs = {0};
    uint8_t ops[64];
    int nops = 0;
    for (;;) {
        tok *t = peek(P);
        int op = -1;
        if (is_op(t, "==")) op = TOP_EQ;
        else if (is_op(t, "!=")) op = TOP_NE;
        else if (is_op(t, "<")) op = TOP_LT;
        else if (is_op(t, "<=")) op = TOP_LE;
        else if (is_op(t, ">")) op = TOP_GT;
        else if (is_op(t, ">=")) op = TOP_GE;
        else if (is_name(t, "in")) op = TOP_IN;
        else if (is_name(t, "not") && is_name(peek2(P), "in")) op = TOP_NOTIN;
        if (op < 0) break;
        next(P);
        if (op == TOP_NOTIN) next(P);
        tnode *r = parse_math1(P);
        if (!r) {
            nvec_free(&rhs);
            return NULL;
        }
        if (nops == (int)sizeof ops) {
            nvec_free(&rhs);
            return pfail(P, t, "too many chained comparisons"), NULL;
        }
        ops[nops++] = (uint8_t)op;
        if (!nvec_push(&rhs, r, NULL)) {
            nvec_free(&rhs);
            return halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory"), NULL;
        }
    }
    if (!nops) {
        nvec_free(&rhs);
        return l;
    }
    tnode *n = mk(P, N_COMPARE, at);
    if (n) {
        n->a = l;
        n->v = nvec_nodes(P, &rhs);
        n->nv = rhs.n;
        n->ops = tpl_alloc(P->arena, (size_t)nops);
        if (!n->ops || !n->v) n = NULL, halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory");
        else memcpy(n->ops, ops, (size_t)nops);
    }
    nvec_free(&rhs);
    return n;
}

static tnode *parse_not(parser *P) {
    tok *t = peek(P);
    if (is_name(t, "not")) {
        next(P);
        if (!enter(P)) return NULL;
        tnode *a = parse_not(P);
        P->depth--;
        if (!a) return NULL;
        tnode *n = mk(P, N_NOT, t);
        if (n) n->a = a;
        return n;
    }
    return parse_compare(P);
}

static tnode *parse_and(parser *P) {
    tnode *l = parse_not(P);
    while (l && is_name(peek(P), "and")) {
        tok *t = next(P);
        tnode *r = parse_not(P);
        if (!r) return NULL;
        l = mk_bin(P, N_AND, 0, t, l, r);
    }
    return l;
}

static tnode *parse_or(parser *P) {
    tnode *l = parse_and(P);
    while (l && is_name(peek(P), "or")) {
        tok *t = next(P);
        tnode *r = parse_and(P);
        if (!r) return NULL;
        l = mk_bin(P, N_OR, 0, t, l, r);
    }
    return l;
}

/* condexpr: a if cond else b */
static tnode *parse_expr(parser *P) {
    if (!enter(P)) return NULL;
    tnode *l = parse_or(P);
    while (l && is_name(peek(P), "if")) {
        tok *t = next(P);
        tnode *cond = parse_or(P);
        if (!cond) return NULL;
        tnode *other = NULL;
        if (skip_name(P, "else")) {
            other = parse_expr(P);
            if (!other) return NULL;
        }
        tnode *n = mk(P, N_COND, t);
        if (!n) return NULL;
        n->a = cond;
        n->b = l;
        n->c = other;
        l = n;
    }
    P->depth--;
    return l;
}

/* an expression, or a tuple of them without parentheses (a, b) */
static tnode *parse_tuple(parser *P) {
    tok *at = peek(P);
    tnode *first = parse_expr(P);
    if (!first || !is_op(peek(P), ",")) return first;
    nvec items = {0};
    tnode *n = NULL;
    if (!nvec_push(&items, first, NULL)) goto oom;
    while (skip_op(P, ",")) {
        tok *u = peek(P);
        if (u->kind == T_BLOCK_END || u->kind == T_VAR_END || is_op(u, "=")) break;
        tnode *e = parse_expr(P);
        if (!e) goto out;
        if (!nvec_push(&items, e, NULL)) goto oom;
    }
    n = mk(P, N_TUPLE, at);
    if (n) {
        n->v = nvec_nodes(P, &items);
        n->nv = items.n;
    }
    goto out;
oom:
    halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory");
out:
    nvec_free(&items);
    return n;
}

/* assignment targets: name, name.attr, or names separated by commas */
static tnode *parse_target(parser *P, bool allow_attr) {
    tok *at = peek(P);
    nvec names = {0};
    tnode *result = NULL;
    bool paren = skip_op(P, "(");
    for (;;) {
        tok *t = peek(P);
        char b[64];
        if (t->kind != T_NAME) {
            pfail(P, t, "expected a variable name, got %s", tok_desc(t, b, sizeof b));
            goto out;
        }
        next(P);
        tnode *n = mk(P, N_NAME, t);
        if (!n || !(n->name = tok_name(P, t))) goto out;
        if (allow_attr && !paren && names.n == 0 && is_op(peek(P), ".")) {
            next(P);
            tok *u = next(P);
            if (u->kind != T_NAME) {
                pfail(P, u, "expected an attribute name");
                goto out;
            }
            tnode *g = mk(P, N_GETATTR, u);
            if (!g || !(g->name = tok_name(P, u))) goto out;
            g->a = n;
            result = g;
            goto out;
        }
        if (!nvec_push(&names, n, NULL)) {
            halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory");
            goto out;
        }
        if (!skip_op(P, ",")) break;
    }
    if (paren && expect_op(P, ")")) goto out;
    if (names.n == 1 && !paren) {
        result = names.v[0];
    } else {
        result = mk(P, N_TUPLE, at);
        if (result) {
            result->v = nvec_nodes(P, &names);
            result->nv = names.n;
        }
    }
out:
    nvec_free(&names);
    return result;
}

static int expect_block_end(parser *P) {
    tok *t = peek(P);
    if (t->kind == T_BLOCK_END) {
        next(P);
        return 0;
    }
    char b[64];
    return pfail(P, t, "expected '%%}', got %s", tok_desc(t, b, sizeof b));
}

/* Statements until one of the end tags (a NULL-terminated list) opens a block;
 * *which: its index. The end tag's name is consumed, not the rest of its block. */
static int parse_body(parser *P, const char *const *ends, nvec *out, int *which, const tok *opener);

static int parse_params(parser *P, tnode *n) {
    /* '(' consumed: name [= default], ... ')' */
    nvec params = {0};
    int rc = -1;
    while (!skip_op(P, ")")) {
        tok *t = peek(P);
        if (t->kind != T_NAME) {
            char b[64];
            pfail(P, t, "expected a parameter name, got %s", tok_desc(t, b, sizeof b));
            goto out;
        }
        next(P);
        tnode *def = NULL;
        if (skip_op(P, "=")) {
            def = parse_expr(P);
            if (!def) goto out;
        }
        const char *name = tok_name(P, t);
        if (!name || !nvec_push(&params, def, name)) {
            halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory");
            goto out;
        }
        if (skip_op(P, ")")) break;
        if (expect_op(P, ",")) goto out;
    }
    n->names = nvec_names(P, &params);
    n->w = nvec_nodes(P, &params);
    n->nw = params.n;
    rc = 0;
out:
    nvec_free(&params);
    return rc;
}

static int body_into(parser *P, tnode *n, const char *const *ends, int *which, const tok *opener, bool into_w) {
    nvec body = {0};
    int rc = parse_body(P, ends, &body, which, opener);
    if (!rc) {
        if (into_w) {
            n->w = nvec_nodes(P, &body);
            n->nw = body.n;
        } else {
            n->v = nvec_nodes(P, &body);
            n->nv = body.n;
        }
    }
    nvec_free(&body);
    return rc;
}

static tnode *parse_statement(parser *P) {
    tok *open = peek(P); /* the name after {% */
    char b[64];
    if (open->kind != T_NAME) return pfail(P, open, "expected a tag name, got %s", tok_desc(open, b, sizeof b)), NULL;
    if (++P->depth > MAX_NEST) return pfail(P, open, "blocks nested too deeply"), NULL;
    tnode *n = NULL;
    next(P);
    int which;
    if (is_name(open, "if") || is_name(open, "elif")) {
        n = mk(P, N_IF, open);
        if (!n || !(n->a = parse_tuple(P)) || expect_block_end(P)) return NULL;
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        if (body_into(P, n, ends, &which, open, false)) return NULL;
        if (which == 0) { /* elif: a nested if as the else branch; it consumes endif */
            P->pos--;     /* back to the name 'elif' */
            tnode *e = parse_statement(P);
            if (!e) return NULL;
            n->w = tpl_alloc(P->arena, sizeof *n->w);
            if (!n->w) return halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory"), NULL;
            n->w[0] = e;
            n->nw = 1;
            P->depth--;
            return n; /* the nested if consumed the endif block end */
        }
        if (which == 1) {
            static const char *const ends2[] = {"endif", NULL};
            if (expect_block_end(P) || body_into(P, n, ends2, &which, open, true)) return NULL;
        }
    } else if (is_name(open, "for")) {
        n = mk(P, N_FOR, open);
        if (!n || !(n->a = parse_target(P, false))) return NULL;
        if (!skip_name(P, "in")) return pfail(P, peek(P), "expected 'in' in the for tag"), NULL;
        /* the iterable: no inline if-expression here, `if` filters the loop */
        if (!(n->b = parse_or(P))) return NULL;
        if (is_op(peek(P), ",")) return pfail(P, peek(P), "a tuple as the loop's iterable is not supported"), NULL;
        if (skip_name(P, "if") && !(n->c = parse_expr(P))) return NULL;
        if (skip_name(P, "recursive")) n->flag = 1;
        if (expect_block_end(P)) return NULL;
        static const char *const ends[] = {"else", "endfor", NULL};
        P->loops++;
        int rc = body_into(P, n, ends, &which, open, false);
        P->loops--;
        if (rc) return NULL;
        if (which == 0) {
            static const char *const ends2[] = {"endfor", NULL};
            if (expect_block_end(P) || body_into(P, n, ends2, &which, open, true)) return NULL;
        }
    } else if (is_name(open, "set")) {
        n = mk(P, N_SET, open);
        if (!n || !(n->a = parse_target(P, true))) return NULL;
        if (skip_op(P, "=")) {
            if (!(n->b = parse_tuple(P)) || expect_block_end(P)) return NULL;
            P->depth--;
            return n;
        }
        if (n->a->kind != N_NAME) return pfail(P, open, "a block set assigns one name"), NULL;
        if (is_op(peek(P), "|")) {
            next(P);
            if (!(n->c = parse_filter(P, NULL))) return NULL;
            while (skip_op(P, "|"))
                if (!(n->c = parse_filter(P, n->c))) return NULL;
        }
        if (expect_block_end(P)) return NULL;
        static const char *const ends[] = {"endset", NULL};
        if (body_into(P, n, ends, &which, open, false)) return NULL;
    } else if (is_name(open, "macro")) {
        n = mk(P, N_MACRO, open);
        tok *t = peek(P);
        if (!n) return NULL;
        if (t->kind != T_NAME) return pfail(P, t, "expected the macro's name"), NULL;
        next(P);
        if (!(n->name = tok_name(P, t))) return NULL;
        if (expect_op(P, "(") || parse_params(P, n) || expect_block_end(P)) return NULL;
        static const char *const ends[] = {"endmacro", NULL};
        int outer_loops = P->loops;
        P->loops = 0; /* a macro body is a function of its own: no loop to break out of */
        int rc = body_into(P, n, ends, &which, open, false);
        P->loops = outer_loops;
        if (rc) return NULL;
        if (peek(P)->kind == T_NAME) next(P); /* {% endmacro name %} */
    } else if (is_name(open, "call")) {
        n = mk(P, N_CALLBLOCK, open);
        if (!n) return NULL;
        if (skip_op(P, "(") && parse_params(P, n)) return NULL;
        if (!(n->a = parse_expr(P))) return NULL;
        if (n->a->kind != N_CALL) return pfail(P, open, "the call tag needs a macro call"), NULL;
        if (expect_block_end(P)) return NULL;
        static const char *const ends[] = {"endcall", NULL};
        int outer_loops = P->loops;
        P->loops = 0;
        int rc = body_into(P, n, ends, &which, open, false);
        P->loops = outer_loops;
        if (rc) return NULL;
    } else if (is_name(open, "filter")) {
        n = mk(P, N_FILTERBLOCK, open);
        if (!n || !(n->a = parse_filter(P, NULL))) return NULL;
        while (skip_op(P, "|"))
            if (!(n->a = parse_filter(P, n->a))) return NULL;
        if (expect_block_end(P)) return NULL;
        static const char *const ends[] = {"endfilter", NULL};
        if (body_into(P, n, ends, &which, open, false)) return NULL;
    } else if (is_name(open, "with")) {
        n = mk(P, N_WITH, open);
        if (!n) return NULL;
        nvec assigns = {0};
        while (peek(P)->kind == T_NAME) {
            tok *t = next(P);
            const char *name = tok_name(P, t);
            tnode *val;
            if (!name || expect_op(P, "=") || !(val = parse_expr(P)) || !nvec_push(&assigns, val, name)) {
                nvec_free(&assigns);
                if (!P->err->status) halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory");
                return NULL;
            }
            if (!skip_op(P, ",")) break;
        }
        n->names = nvec_names(P, &assigns);
        n->w = nvec_nodes(P, &assigns);
        n->nw = assigns.n;
        nvec_free(&assigns);
        if (expect_block_end(P)) return NULL;
        static const char *const ends[] = {"endwith", NULL};
        if (body_into(P, n, ends, &which, open, false)) return NULL;
    } else if (is_name(open, "generation")) {
        /* transformers' assistant-mask marker: renders its body as it is */
        n = mk(P, N_WITH, open);
        if (!n || expect_block_end(P)) return NULL;
        static const char *const ends[] = {"endgeneration", NULL};
        if (body_into(P, n, ends, &which, open, false)) return NULL;
    } else if (is_name(open, "break") || is_name(open, "continue")) {
        if (!P->loops)
            return pfail(P, open, "'%s' outside a loop", is_name(open, "break") ? "break" : "continue"), NULL;
        n = mk(P, is_name(open, "break") ? N_BREAK : N_CONTINUE, open);
        if (!n) return NULL;
    } else {
        return pfail(P, open, "unsupported tag '%.*s'", (int)(open->n > 40 ? 40 : open->n), open->s), NULL;
    }
    if (expect_block_end(P)) return NULL;
    P->depth--;
    return n;
}

static int parse_body(parser *P, const char *const *ends, nvec *out, int *which, const tok *opener) {
    for (;;) {
        tok *t = peek(P);
        tnode *n = NULL;
        switch (t->kind) {
        case T_EOF:
            if (!ends) return 0;
            return pfail(P, opener, "'%.*s' is never closed (missing {%% %s %%})", (int)opener->n, opener->s,
                         ends[0] && !ends[1] ? ends[0] : ends[1] && !ends[2] ? ends[1] : ends[2] ? ends[2] : ends[0]);
        case T_TEXT:
            next(P);
            n = mk(P, N_TEXT, t);
            if (!n) return -1;
            n->lit = tv_str(t->s, t->n);
            break;
        case T_VAR_BEGIN: {
            next(P);
            n = mk(P, N_OUTPUT, t);
            if (!n || !(n->a = parse_tuple(P))) return -1;
            tok *e = next(P);
            char b[64];
            if (e->kind != T_VAR_END) return pfail(P, e, "expected '}}', got %s", tok_desc(e, b, sizeof b));
            break;
        }
        case T_BLOCK_BEGIN: {
            tok *name = peek2(P);
            if (ends && name->kind == T_NAME) {
                for (int k = 0; ends[k]; k++) {
                    if (is_name(name, ends[k])) {
                        next(P);
                        next(P);
                        *which = k;
                        return 0;
                    }
                }
            }
            static const char *const closers[] = {"endif", "endfor", "endset", "endmacro", "endcall", "endfilter",
                                                  "endwith", "endgeneration", "elif", "else", NULL};
            for (int k = 0; closers[k]; k++)
                if (is_name(name, closers[k]))
                    return pfail(P, name, "unexpected '%s'%s", closers[k],
                                 ends ? " (blocks closed in the wrong order?)" : " (no block is open)");
            next(P);
            n = parse_statement(P);
            if (!n) return -1;
            break;
        }
        default: {
            char b[64];
            return pfail(P, t, "unexpected %s", tok_desc(t, b, sizeof b));
        }
        }
        if (!nvec_push(out, n, NULL)) return halo_error_set(P->err, HALO_ERR_NOMEM, "template: out of memory");
    }
}

/* ---- which top-level names start out missing ------------------------------------
 * A small replica of jinja2's idtracking for the template's top frame: walking the
 * top-level statements in order, the first use of each name decides. A read (in
 * an expression evaluated at the top level) makes it start from the context; an
 * assignment makes it start missing, unless it happens inside an if (any branch),
 * which again makes it start from the context. */

typedef struct name_set {
    const char **v;
    int n, cap;
} name_set;

static bool ns_has(const name_set *s, const char *name) {
    for (int k = 0; k < s->n; k++)
        if (!strcmp(s->v[k], name)) return true;
    return false;
}

static bool ns_add(name_set *s, const char *name) {
    if (ns_has(s, name)) return true;
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        const char **v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = name;
    return true;
}

typedef struct frame_state {
    name_set seen;    /* names with a decided start */
    name_set missing; /* of those, the ones that start missing */
} frame_state;

static bool fs_copy(frame_state *dst, const frame_state *src) {
    memset(dst, 0, sizeof *dst);
    for (int k = 0; k < src->seen.n; k++)
        if (!ns_add(&dst->seen, src->seen.v[k])) return false;
    for (int k = 0; k < src->missing.n; k++)
        if (!ns_add(&dst->missing, src->missing.v[k])) return false;
    return true;
}

static void fs_free(frame_state *f) {
    free(f->seen.v);
    free(f->missing.v);
}

/* reads of names in an expression evaluated in this frame */
static bool an_loads(frame_state *f, const tnode *e) {
    if (!e) return true;
    if (e->kind == N_NAME) return ns_has(&f->seen, e->name) || ns_add(&f->seen, e->name);
    if (!an_loads(f, e->a) || !an_loads(f, e->b) || !an_loads(f, e->c) || !an_loads(f, e->d)) return false;
    for (int k = 0; k < e->nv; k++)
        if (!an_loads(f, e->v[k])) return false;
    if (e->kind != N_MACRO && e->kind != N_CALLBLOCK)
        for (int k = 0; k < e->nw; k++)
            if (!an_loads(f, e->w[k])) return false;
    return true;
}

static bool an_store(frame_state *f, const char *name) {
    if (ns_has(&f->seen, name)) return true;
    return ns_add(&f->seen, name) && ns_add(&f->missing, name);
}

static bool an_body(frame_state *f, tnode *const *body, int n);

static bool an_stmt(frame_state *f, const tnode *s) {
    switch (s->kind) {
    case N_OUTPUT: return an_loads(f, s->a);
    case N_SET: /* a block set's body is a frame of its own */
        if (s->b && !an_loads(f, s->b)) return false;
        if (s->a->kind == N_NAME) return an_store(f, s->a->name);
        if (s->a->kind == N_GETATTR) return an_loads(f, s->a->a);
        for (int k = 0; k < s->a->nv; k++)
            if (!an_store(f, s->a->v[k]->name)) return false;
        return true;
    case N_IF: {
        /* a name first used inside a branch (assigned or read) starts from the
         * context: jinja2's branch_update resolves every name a branch stores */
        if (!an_loads(f, s->a)) return false;
        frame_state br[2];
        bool ok = fs_copy(&br[0], f) && fs_copy(&br[1], f);
        ok = ok && an_body(&br[0], s->v, s->nv) && an_body(&br[1], s->w, s->nw);
        for (int b = 0; ok && b < 2; b++)
            for (int k = 0; ok && k < br[b].seen.n; k++)
                if (!ns_has(&f->seen, br[b].seen.v[k])) ok = ns_add(&f->seen, br[b].seen.v[k]);
        for (int b = 0; b < 2; b++) fs_free(&br[b]);
        return ok;
    }
    case N_FOR: return an_loads(f, s->b);
    case N_MACRO: return an_store(f, s->name);
    case N_CALLBLOCK: return an_loads(f, s->a);
    case N_WITH:
        for (int k = 0; k < s->nw; k++)
            if (!an_loads(f, s->w[k])) return false;
        return true;
    case N_FILTERBLOCK: return an_loads(f, s->a); /* the body is a frame of its own */
    default: return true;
    }
}

static bool an_body(frame_state *f, tnode *const *body, int n) {
    for (int k = 0; k < n; k++)
        if (!an_stmt(f, body[k])) return false;
    return true;
}

int tpl_parse(struct halo_template *t, const char *src, size_t len, halo_error *err) {
    /* normalize newlines (\r\n and \r -> \n), drop one trailing newline */
    char *norm = tpl_alloc(&t->arena, len + 1);
    if (!norm) return halo_error_set(err, HALO_ERR_NOMEM, "template: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            norm[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            norm[n++] = src[i];
        }
    }
    if (n && norm[n - 1] == '\n') n--;
    norm[n] = '\0';

    lexer L = {.src = norm, .len = n, .line = 1, .col = 1, .arena = &t->arena, .err = err};
    if (lex_all(&L)) {
        free(L.toks);
        return err->status ? err->status : HALO_ERR_FORMAT;
    }
    parser P = {.toks = L.toks, .n = L.n, .arena = &t->arena, .err = err};
    nvec body = {0};
    int which, rc = parse_body(&P, NULL, &body, &which, NULL);
    if (!rc) {
        t->body = nvec_nodes(&P, &body);
        t->n_body = body.n;
        if (body.n && !t->body) rc = halo_error_set(err, HALO_ERR_NOMEM, "template: out of memory");
        frame_state f = {0};
        if (!rc && !an_body(&f, t->body, t->n_body)) rc = halo_error_set(err, HALO_ERR_NOMEM, "template: out of memory");
        if (!rc && f.missing.n) {
            t->root_names = tpl_alloc_array(&t->arena, (size_t)f.missing.n, sizeof *t->root_names);
            if (!t->root_names) rc = halo_error_set(err, HALO_ERR_NOMEM, "template: out of memory");
            else memcpy(t->root_names, f.missing.v, (size_t)f.missing.n * sizeof *t->root_names);
            t->n_root_names = f.missing.n;
        }
        fs_free(&f);
    }
    nvec_free(&body);
    free(L.toks);
    return rc ? (err->status ? err->status : HALO_ERR_FORMAT) : 0;
}
