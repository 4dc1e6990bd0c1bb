/*
 * Chat templates, part 2: the evaluator. Walks the syntax tree with a context of
 * values and writes the text, following jinja2 semantics as the Hugging Face
 * tokenizers configure it (an immutable sandbox, loop controls, tojson keeping
 * non-ASCII text, raise_exception and strftime_now as globals).
 *
 * Every render gets its own arena (freed at the end) and runs under limits: the
 * arena's bytes, the output's bytes, the number of evaluation steps, and the
 * nesting of macro calls and syntax, so a hostile template ends with an error
 * message instead of a crash or a hang. Nothing reaches files or processes.
 */
#define _GNU_SOURCE /* memmem */
#include "template_impl.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

/* ---- render state --------------------------------------------------------------- */

typedef struct scope scope;
struct scope {
    scope *parent;
    tv_dict *vars;
    bool macro; /* the scope of a macro call */
};

typedef struct tmacro {
    const tnode *def; /* N_MACRO or N_CALLBLOCK */
    scope *closure;
    tv caller; /* TV_UNDEF if none */
} tmacro;

typedef struct tloop {
    tv_list *items;
    size_t index0;
    int depth0;
    const tnode *node; /* the for, for loop(...) of a recursive loop */
    scope *outer;
    tv changed_last; /* loop.changed(): the arguments of its last call */
    bool changed_set;
} tloop;

typedef struct tmethod {
    tv self;
    const char *name;
} tmethod;

enum { B_RANGE = 1, B_NAMESPACE, B_DICT, B_RAISE, B_STRFTIME };

typedef struct R {
    tpl_arena arena;
    halo_error *err;
    tv_dict *context;
    scope *globals;
    uint64_t steps, max_steps;
    size_t max_output;
    int depth, max_depth; /* macro calls and recursive loops */
    int nest;             /* C recursion of ev / exec */
    int64_t now;
    tv filter_input; /* the value a filter block or block set filters */
    const halo_template *tpl;
} R;

#define MAX_NEST_EVAL 1500

enum { X_OK = 0, X_ERR = -1, X_BREAK = 1, X_CONTINUE = 2 };

static int fail(R *r, const tnode *at, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(R *r, const tnode *at, int status, const char *fmt, ...) {
    if (r->err->status) return X_ERR;
    char msg[420];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at) halo_error_set(r->err, status, "template:%d:%d: %s", at->line, at->col, msg);
    else halo_error_set(r->err, status, "template: %s", msg);
    return X_ERR;
}

static int oom(R *r) {
    if (r->arena.hit_limit)
        return fail(r, NULL, HALO_ERR_RANGE, "memory exceeds %zu bytes", r->arena.limit);
    return fail(r, NULL, HALO_ERR_NOMEM, "out of memory");
}

static int buf_fail(R *r, tpl_buf *b) {
    if (b->limit && b->n + 4096 >= b->limit) return fail(r, NULL, HALO_ERR_RANGE, "output exceeds %zu bytes", b->limit);
    return fail(r, NULL, HALO_ERR_NOMEM, "out of memory");
}

static bool step(R *r, const tnode *at) {
    if (++r->steps > r->max_steps) {
        fail(r, at, HALO_ERR_RANGE, "more than %llu evaluation steps (a loop that does not end?)",
             (unsigned long long)r->max_steps);
        return false;
    }
    return true;
}

/* an Undefined carrying the message an operation on it will give */
static tv undef_msg(R *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static tv undef_msg(R *r, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
    tv u = tv_undef();
    u.str.s = tpl_strdup(&r->arena, msg, (size_t)n);
    u.str.n = u.str.s ? (size_t)n : 0;
    return u;
}

static int undef_fail(R *r, const tnode *at, tv u) {
    if (u.str.s) return fail(r, at, HALO_ERR_FORMAT, "%.*s", (int)u.str.n, u.str.s);
    return fail(r, at, HALO_ERR_FORMAT, "undefined value");
}

static tv mkstr(R *r, const char *s, size_t n) {
    /* callers check .str.s for NULL (out of memory) when n > 0 */
    char *p = tpl_strdup(&r->arena, s, n);
    return tv_str(p, p ? n : 0);
}
#define STR_OK(v) ((v).str.s != NULL)

static bool buf_to_str(R *r, tpl_buf *b, tv *out) {
    *out = mkstr(r, b->p ? b->p : "", b->n);
    return STR_OK(*out);
}

/* ---- UTF-8 helpers ------------------------------------------------------------------ */

static size_t u8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* byte offset of code point k (k <= count) */
static size_t u8_offset(const char *s, size_t n, size_t k) {
    if (k == 0) return 0;
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (c == k) return i;
            c++;
        }
    }
    return n;
}

/* decode one code point at s[i]; invalid bytes decode as themselves (one byte) */
static int32_t u8_next(const char *s, size_t n, size_t *i) {
    int32_t cp;
    utf8proc_ssize_t len = utf8proc_iterate((const utf8proc_uint8_t *)s + *i, (utf8proc_ssize_t)(n - *i), &cp);
    if (len <= 0) {
        cp = (unsigned char)s[*i];
        len = 1;
    }
    *i += (size_t)len;
    return cp;
}

static bool py_space(int32_t c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* strip: which 1 left, 2 right, 3 both; chars NULL: whitespace */
static tv str_strip(tv s, int which, const tv *chars) {
    const char *p = s.str.s;
    size_t a = 0, b = s.str.n;
    int32_t set[64];
    size_t nset = 0;
    if (chars && chars->kind == TV_STR) {
        size_t i = 0;
        while (i < chars->str.n && nset < 64) set[nset++] = u8_next(chars->str.s, chars->str.n, &i);
    }
    bool use_set = chars && chars->kind == TV_STR;
#define IN_SET(c) (use_set ? memchr_cp(set, nset, c) : py_space(c))
    if (which & 1) {
        while (a < b) {
            size_t i = a;
            int32_t c = u8_next(p, b, &i);
            bool hit = false;
            if (use_set) {
                for (size_t k = 0; k < nset; k++) hit |= set[k] == c;
            } else hit = py_space(c);
            if (!hit) break;
            a = i;
        }
    }
    if (which & 2) {
        while (b > a) {
            size_t start = b - 1;
            while (start > a && ((unsigned char)p[start] & 0xC0) == 0x80) start--;
            size_t i = start;
            int32_t c = u8_next(p, b, &i);
            if (i != b) { /* invalid sequence: treat the last byte alone */
                start = b - 1;
                c = (unsigned char)p[start];
            }
            bool hit = false;
            if (use_set) {
                for (size_t k = 0; k < nset; k++) hit |= set[k] == c;
            } else hit = py_space(c);
            if (!hit) break;
            b = start;
        }
    }
#undef IN_SET
    return tv_str(p + a, b - a);
}

/* case mapping: mode 0 lower, 1 upper, 2 title, 3 capitalize */
static bool str_case(R *r, tv s, int mode, tv *out) {
    tpl_buf b = {0};
    size_t i = 0;
    bool prev_cased = false, first = true;
    while (i < s.str.n) {
        size_t start = i;
        int32_t c = u8_next(s.str.s, s.str.n, &i), m;
        if (mode == 0) m = utf8proc_tolower(c);
        else if (mode == 1) m = utf8proc_toupper(c);
        else if (mode == 2) m = prev_cased ? utf8proc_tolower(c) : utf8proc_totitle(c);
        else m = first ? utf8proc_totitle(c) : utf8proc_tolower(c);
        first = false;
        const utf8proc_property_t *pr = utf8proc_get_property(c);
        prev_cased = pr->category == UTF8PROC_CATEGORY_LU || pr->category == UTF8PROC_CATEGORY_LL ||
                     pr->category == UTF8PROC_CATEGORY_LT;
        if (m == c) {
            tpl_buf_add(&b, s.str.s + start, i - start);
        } else {
            utf8proc_uint8_t enc[4];
            utf8proc_ssize_t k = utf8proc_encode_char(m, enc);
            tpl_buf_add(&b, (const char *)enc, (size_t)k);
        }
    }
    bool ok = !b.failed && buf_to_str(r, &b, out);
    tpl_buf_free(&b);
    return ok;
}

static const char *kind_name(tv v) {
    switch (v.kind) {
    case TV_DICT: return "dict object";
    case TV_LIST: return v.list->tuple ? "tuple object" : "list object";
    case TV_STR: return "str object";
    case TV_INT: return "int object";
    case TV_FLOAT: return "float object";
    case TV_BOOL: return "bool object";
    case TV_NONE: return "None";
    default: return "object";
    }
}

/* ---- scopes --------------------------------------------------------------------------- */

static scope *scope_new(R *r, scope *parent) {
    scope *s = tpl_alloc(&r->arena, sizeof *s);
    if (!s) return NULL;
    s->parent = parent;
    s->vars = tv_dict_new(&r->arena, 0);
    return s->vars ? s : NULL;
}

static bool scope_set(R *r, scope *s, const char *name, tv v) {
    return tv_dict_set(&r->arena, s->vars, tv_str(name, strlen(name)), v);
}

static bool lookup(R *r, scope *s, const char *name, tv *out) {
    size_t n = strlen(name);
    bool nested = s != r->globals; /* a loop, macro or with body */
    for (; s; s = s->parent) {
        tv *v = tv_dict_find_str(s->vars, name, n);
        if (v) {
            *out = *v;
            return true;
        }
    }
    if (nested) /* a top-level variable of the template, not assigned yet: undefined */
        for (int k = 0; k < r->tpl->n_root_names; k++)
            if (!strcmp(r->tpl->root_names[k], name)) return false;
    tv *v = tv_dict_find_str(r->context, name, n);
    if (v) {
        *out = *v;
        return true;
    }
    static const struct {
        const char *name;
        int id;
    } builtins[] = {{"range", B_RANGE},
                    {"namespace", B_NAMESPACE},
                    {"dict", B_DICT},
                    {"raise_exception", B_RAISE},
                    {"strftime_now", B_STRFTIME}};
    for (size_t k = 0; k < sizeof builtins / sizeof builtins[0]; k++) {
        if (!strcmp(name, builtins[k].name)) {
            *out = (tv){.kind = TV_BUILTIN, .aux = (uint32_t)builtins[k].id};
            return true;
        }
    }
    return false;
}

/* ---- forward declarations ------------------------------------------------------------- */

static int ev(R *r, scope *s, const tnode *n, tv *out);
static int exec_body(R *r, scope *s, tnode *const *body, int n, tpl_buf *out);
static int call_value(R *r, scope *s, const tnode *at, tv callee, tv *args, int nargs, const char **kwn, tv *kwv,
                      int nkw, tv caller, tv *out);
static int apply_filter(R *r, const tnode *at, const char *name, tv in, tv *args, int nargs, const char **kwn,
                        tv *kwv, int nkw, tv *out);
static int apply_test(R *r, const tnode *at, const char *name, tv in, tv *args, int nargs, bool *out);
static int getattr_v(R *r, const tnode *at, tv obj, const char *name, size_t n, tv *out);

/* ---- iteration, comparison -------------------------------------------------------------- */

/* the items a for loop / filter sees */
static int to_list(R *r, const tnode *at, tv v, tv_list **out) {
    switch (v.kind) {
    case TV_LIST: *out = v.list; return 0;
    case TV_UNDEF: *out = tv_list_new(&r->arena, 0); return *out ? 0 : oom(r);
    case TV_DICT: {
        tv_list *l = tv_list_new(&r->arena, v.dict->n);
        if (!l) return oom(r);
        for (size_t i = 0; i < v.dict->n; i++) l->items[i] = v.dict->keys[i];
        *out = l;
        return 0;
    }
    case TV_STR: {
        size_t n = u8_count(v.str.s, v.str.n), i = 0, k = 0;
        tv_list *l = tv_list_new(&r->arena, n);
        if (!l) return oom(r);
        while (i < v.str.n && k < n) {
            size_t start = i;
            u8_next(v.str.s, v.str.n, &i);
            /* an invalid byte counts as one character */
            if (i - start > 1 && u8_count(v.str.s + start, i - start) != 1) i = start + 1;
            l->items[k++] = tv_str(v.str.s + start, i - start);
        }
        l->n = k;
        *out = l;
        return 0;
    }
    default: return fail(r, at, HALO_ERR_FORMAT, "'%s' object is not iterable", tv_type_name(v));
    }
}

/* a < b: -1 / 0 / 1 in *cmp; error for unorderable kinds */
static int compare_d(R *r, const tnode *at, tv a, tv b, int *cmp, bool fold_case, int depth);

static int compare(R *r, const tnode *at, tv a, tv b, int *cmp, bool fold_case) {
    return compare_d(r, at, a, b, cmp, fold_case, 0);
}

static int compare_d(R *r, const tnode *at, tv a, tv b, int *cmp, bool fold_case, int depth) {
    if (depth > 200) return fail(r, at, HALO_ERR_RANGE, "values nested too deeply to compare");
    bool an = a.kind == TV_INT || a.kind == TV_FLOAT || a.kind == TV_BOOL;
    bool bn = b.kind == TV_INT || b.kind == TV_FLOAT || b.kind == TV_BOOL;
    if (an && bn) {
        if (a.kind != TV_FLOAT && b.kind != TV_FLOAT) {
            int64_t x = a.kind == TV_INT ? a.i : a.b, y = b.kind == TV_INT ? b.i : b.b;
            *cmp = (x > y) - (x < y);
        } else {
            double x = a.kind == TV_FLOAT ? a.f : a.kind == TV_INT ? (double)a.i : a.b;
            double y = b.kind == TV_FLOAT ? b.f : b.kind == TV_INT ? (double)b.i : b.b;
            *cmp = (x > y) - (x < y);
        }
        return 0;
    }
    if (a.kind == TV_STR && b.kind == TV_STR) {
        if (fold_case) {
            tv la, lb;
            if (!str_case(r, a, 0, &la) || !str_case(r, b, 0, &lb)) return oom(r);
            a = la;
            b = lb;
        }
        size_t n = a.str.n < b.str.n ? a.str.n : b.str.n;
        int c = n ? memcmp(a.str.s, b.str.s, n) : 0;
        *cmp = c ? (c > 0) - (c < 0) : (a.str.n > b.str.n) - (a.str.n < b.str.n);
        return 0;
    }
    if (a.kind == TV_LIST && b.kind == TV_LIST) {
        size_t n = a.list->n < b.list->n ? a.list->n : b.list->n;
        for (size_t i = 0; i < n; i++) {
            if (tv_equal(a.list->items[i], b.list->items[i])) continue;
            return compare_d(r, at, a.list->items[i], b.list->items[i], cmp, fold_case, depth + 1);
        }
        *cmp = (a.list->n > b.list->n) - (a.list->n < b.list->n);
        return 0;
    }
    if (a.kind == TV_UNDEF) return undef_fail(r, at, a);
    if (b.kind == TV_UNDEF) return undef_fail(r, at, b);
    return fail(r, at, HALO_ERR_FORMAT, "'<' not supported between instances of '%s' and '%s'", tv_type_name(a),
                tv_type_name(b));
}

static int contains(R *r, const tnode *at, tv hay, tv needle, bool *out) {
    switch (hay.kind) {
    case TV_STR:
        if (needle.kind != TV_STR)
            return fail(r, at, HALO_ERR_FORMAT, "'in <string>' requires string as left operand, not %s",
                        tv_type_name(needle));
        if (needle.str.n == 0) *out = true;
        else if (needle.str.n > hay.str.n) *out = false;
        else *out = memmem(hay.str.s, hay.str.n, needle.str.s, needle.str.n) != NULL;
        return 0;
    case TV_LIST:
        *out = false;
        for (size_t i = 0; i < hay.list->n && !*out; i++) *out = tv_equal(hay.list->items[i], needle);
        return 0;
    case TV_DICT:
    case TV_NS: *out = tv_dict_find(hay.dict, needle) != NULL; return 0;
    case TV_UNDEF: *out = false; return 0;
    default: return fail(r, at, HALO_ERR_FORMAT, "argument of type '%s' is not iterable", tv_type_name(hay));
    }
}

/* ---- arithmetic ------------------------------------------------------------------------- */

static bool as_num(tv v, double *d, int64_t *i, bool *is_int) {
    switch (v.kind) {
    case TV_INT: *i = v.i; *d = (double)v.i; *is_int = true; return true;
    case TV_BOOL: *i = v.b; *d = v.b; *is_int = true; return true;
    case TV_FLOAT: *d = v.f; *is_int = false; return true;
    default: return false;
    }
}

static int repeat(R *r, const tnode *at, tv seq, int64_t times, tv *out) {
    if (times < 0) times = 0;
    if (seq.kind == TV_STR) {
        uint64_t total;
        if (__builtin_mul_overflow((uint64_t)seq.str.n, (uint64_t)times, &total) || total > ((size_t)1 << 40)) {
            r->arena.hit_limit = true;
            return oom(r);
        }
        char *p = tpl_alloc(&r->arena, (size_t)total + 1);
        if (!p) return oom(r);
        for (int64_t k = 0; k < times && seq.str.n; k++) memcpy(p + (size_t)k * seq.str.n, seq.str.s, seq.str.n);
        *out = tv_str(p, (size_t)total);
        return 0;
    }
    uint64_t total;
    if (__builtin_mul_overflow((uint64_t)seq.list->n, (uint64_t)times, &total) || total > ((size_t)1 << 36)) {
        r->arena.hit_limit = true;
        return oom(r);
    }
    tv_list *l = tv_list_new(&r->arena, (size_t)total);
    if (!l) return oom(r);
    l->tuple = seq.list->tuple;
    for (int64_t k = 0; k < times && seq.list->n; k++)
        memcpy(l->items + (size_t)k * seq.list->n, seq.list->items, seq.list->n * sizeof(tv));
    *out = (tv){.kind = TV_LIST, .list = l};
    return 0;
}

/* ---- Python string formatting ('%' and str.format) --------------------------------- */

typedef struct fmt_spec {
    char fill, align;     /* align: '<' '>' '^' '=' or 0 */
    char sign;            /* '+' ' ' or 0 */
    bool alt, zero;
    int width, precision; /* -1: not given */
    char type;            /* s r d i f F e E g G x X o c % or 0 */
} fmt_spec;

static void pad_to(tpl_buf *b, const char *s, size_t n, const fmt_spec *f, char default_align) {
    size_t chars = u8_count(s, n);
    size_t w = f->width > 0 ? (size_t)f->width : 0;
    size_t padn = w > chars ? w - chars : 0;
    char align = f->align ? f->align : default_align;
    char fill = f->fill ? f->fill : ' ';
    size_t left = align == '>' || align == '=' ? padn : align == '^' ? padn / 2 : 0;
    if (align == '=' && padn && n && (s[0] == '-' || s[0] == '+' || s[0] == ' ')) { /* sign, then fill */
        tpl_buf_addc(b, s[0]);
        s++;
        n--;
    }
    for (size_t k = 0; k < left; k++) tpl_buf_addc(b, fill);
    tpl_buf_add(b, s, n);
    for (size_t k = left; k < padn; k++) tpl_buf_addc(b, fill);
}

/* one conversion of v into b */
static int format_one(R *r, const tnode *at, const fmt_spec *f, tv v, tpl_buf *b) {
    char t = f->type ? f->type : 's';
    if (f->width > 9999 || f->precision > 9999) return fail(r, at, HALO_ERR_RANGE, "format width or precision too big");
    if (t == 's' || t == 'r') {
        tpl_buf tmp = {0};
        if (t == 'r') tv_repr(&tmp, v);
        else tv_to_str(&tmp, v);
        if (tmp.failed) {
            tpl_buf_free(&tmp);
            return oom(r);
        }
        size_t n = tmp.n;
        if (f->precision >= 0) n = u8_offset(tmp.p ? tmp.p : "", tmp.n, (size_t)f->precision);
        pad_to(b, tmp.p ? tmp.p : "", n, f, '<');
        tpl_buf_free(&tmp);
        return 0;
    }
    char cfmt[32], out[400];
    size_t k = 0;
    cfmt[k++] = '%';
    if (f->sign) cfmt[k++] = f->sign;
    if (f->alt) cfmt[k++] = '#';
    int width = 0; /* padding is pad_to's, with the fill and alignment asked for */
    int prec = f->precision > 100 ? 100 : f->precision;
    if (t == 'c') {
        if (v.kind == TV_INT && v.i >= 0 && v.i <= 0x10FFFF) {
            char u[8];
            utf8proc_ssize_t n = utf8proc_encode_char((utf8proc_int32_t)v.i, (utf8proc_uint8_t *)u);
            pad_to(b, u, (size_t)(n > 0 ? n : 0), f, '<');
            return 0;
        }
        if (v.kind == TV_STR && u8_count(v.str.s, v.str.n) == 1) {
            pad_to(b, v.str.s, v.str.n, f, '<');
            return 0;
        }
        return fail(r, at, HALO_ERR_FORMAT, "%%c requires an int or a single character");
    }
    if (v.kind == TV_UNDEF) return undef_fail(r, at, v);
    bool is_int = v.kind == TV_INT || v.kind == TV_BOOL;
    if (!is_int && v.kind != TV_FLOAT)
        return fail(r, at, HALO_ERR_FORMAT, "%%%c format: a real number is required, not %s", t, tv_type_name(v));
    int64_t iv = v.kind == TV_INT ? v.i : v.kind == TV_BOOL ? v.b : 0;
    double dv = v.kind == TV_FLOAT ? v.f : (double)iv;
    int n;
    if (t == 'd' || t == 'i' || t == 'x' || t == 'X' || t == 'o') {
        if (!is_int) {
            if (t != 'd' && t != 'i') return fail(r, at, HALO_ERR_FORMAT, "%%%c format: an integer is required", t);
            if (!isfinite(dv) || fabs(dv) >= 9.2e18) return fail(r, at, HALO_ERR_RANGE, "cannot convert float to integer");
            iv = (int64_t)dv;
        }
        snprintf(cfmt + k, sizeof cfmt - k, "*ll%c", t == 'i' ? 'd' : t);
        if (t != 'd' && t != 'i' && iv < 0) { /* Python: -0x1f, not two's complement */
            char mag[64];
            snprintf(cfmt + k, sizeof cfmt - k, "ll%c", t);
            snprintf(mag, sizeof mag, cfmt, (unsigned long long)(iv == INT64_MIN ? (uint64_t)1 << 63 : (uint64_t)-iv));
            n = snprintf(out, sizeof out, "-%s", mag);
        } else {
            n = snprintf(out, sizeof out, cfmt, width, (long long)iv);
        }
    } else if (strchr("fFeEgG%", t)) {
        char ct = t == '%' ? 'f' : t;
        if (t == '%') dv *= 100;
        snprintf(cfmt + k, sizeof cfmt - k, "*.*%c", ct);
        n = snprintf(out, sizeof out, cfmt, t == '%' ? 0 : width, prec < 0 ? 6 : prec, dv);
        if (t == '%' && n > 0 && (size_t)n + 1 < sizeof out) out[n++] = '%', out[n] = '\0';
    } else {
        return fail(r, at, HALO_ERR_UNSUPPORTED, "unsupported format character '%c'", t);
    }
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof out) n = sizeof out - 1;
    pad_to(b, out, (size_t)n, f, '>');
    return 0;
}

/* fmt % args */
static int percent_format(R *r, const tnode *at, tv fmt, tv args, tv *out) {
    tv_list single = {.n = 1, .items = &args};
    tv_list *pos = args.kind == TV_LIST && args.list->tuple ? args.list : &single;
    tv_dict *map = args.kind == TV_DICT ? args.dict : NULL;
    size_t next_arg = 0;
    bool used_map = false;
    tpl_buf b = {.limit = r->max_output};
    const char *p = fmt.str.s, *end = p + fmt.str.n;
    while (p < end) {
        const char *pct = memchr(p, '%', (size_t)(end - p));
        if (!pct) pct = end;
        tpl_buf_add(&b, p, (size_t)(pct - p));
        if (pct == end) break;
        p = pct + 1;
        fmt_spec f = {.width = -1, .precision = -1};
        tv v = tv_undef();
        bool have = false;
        if (p < end && *p == '(') {
            const char *close = memchr(p, ')', (size_t)(end - p));
            if (!close || !map) {
                tpl_buf_free(&b);
                return fail(r, at, HALO_ERR_FORMAT, close ? "format requires a mapping" : "incomplete format key");
            }
            tv *hit = tv_dict_find_str(map, p + 1, (size_t)(close - p - 1));
            if (!hit) {
                tpl_buf_free(&b);
                return fail(r, at, HALO_ERR_FORMAT, "format key '%.*s' not found", (int)(close - p - 1), p + 1);
            }
            v = *hit;
            have = used_map = true;
            p = close + 1;
        }
        for (; p < end && strchr("-+ #0", *p); p++) {
            if (*p == '-') f.align = '<';
            else if (*p == '+' || (*p == ' ' && f.sign != '+')) f.sign = *p;
            else if (*p == '#') f.alt = true;
            else if (*p == '0') f.zero = true;
        }
        for (; p < end && *p >= '0' && *p <= '9'; p++) f.width = f.width > 9999 ? 99999 : (f.width < 0 ? 0 : f.width) * 10 + (*p - '0');
        if (p < end && *p == '.') {
            f.precision = 0;
            for (p++; p < end && *p >= '0' && *p <= '9'; p++) f.precision = f.precision > 9999 ? 99999 : f.precision * 10 + (*p - '0');
        }
        while (p < end && (*p == 'l' || *p == 'h' || *p == 'L')) p++;
        if (p >= end) {
            tpl_buf_free(&b);
            return fail(r, at, HALO_ERR_FORMAT, "incomplete format");
        }
        f.type = *p++;
        if (f.type == '%') {
            tpl_buf_addc(&b, '%');
            continue;
        }
        if (f.zero && f.align != '<') f.fill = '0', f.align = '=';
        if (f.width >= 0 && !f.align) f.align = strchr("sr", f.type) ? '>' : 0;
        if (!have) {
            if (map) v = args, used_map = true;
            else if (next_arg < pos->n) v = pos->items[next_arg++];
            else {
                tpl_buf_free(&b);
                return fail(r, at, HALO_ERR_FORMAT, "not enough arguments for format string");
            }
        }
        if (format_one(r, at, &f, v, &b)) {
            tpl_buf_free(&b);
            return X_ERR;
        }
    }
    if (!map && next_arg < pos->n && !(pos == &single && next_arg == 0 && (args.kind == TV_LIST))) {
        tpl_buf_free(&b);
        return fail(r, at, HALO_ERR_FORMAT, "not all arguments converted during string formatting");
    }
    (void)used_map;
    bool ok = !b.failed && buf_to_str(r, &b, out);
    if (!ok) b.failed ? buf_fail(r, &b) : oom(r);
    tpl_buf_free(&b);
    return ok ? 0 : X_ERR;
}

/* 'text {} {0} {name}'.format(...) with [[fill]align][sign][#][0][width][.precision][type] */
static int brace_format(R *r, const tnode *at, tv fmt, tv *pos, int npos, const char **kwn, tv *kwv, int nkw, tv *out) {
    tpl_buf b = {.limit = r->max_output};
    const char *p = fmt.str.s, *end = p + fmt.str.n;
    int auto_index = 0;
    int rc = 0;
    while (p < end && !rc) {
        char c = *p;
        if ((c == '{' || c == '}') && p + 1 < end && p[1] == c) {
            tpl_buf_addc(&b, c);
            p += 2;
            continue;
        }
        if (c == '}') {
            rc = fail(r, at, HALO_ERR_FORMAT, "single '}' encountered in format string");
            break;
        }
        if (c != '{') {
            tpl_buf_addc(&b, c);
            p++;
            continue;
        }
        const char *close = memchr(p, '}', (size_t)(end - p));
        if (!close) {
            rc = fail(r, at, HALO_ERR_FORMAT, "single '{' encountered in format string");
            break;
        }
        const char *field = p + 1, *colon = memchr(field, ':', (size_t)(close - field));
        const char *bang = memchr(field, '!', (size_t)((colon ? colon : close) - field));
        const char *name_end = bang ? bang : colon ? colon : close;
        tv v;
        size_t nl = (size_t)(name_end - field);
        if (nl == 0) {
            if (auto_index >= npos) {
                rc = fail(r, at, HALO_ERR_FORMAT, "Replacement index %d out of range", auto_index);
                break;
            }
            v = pos[auto_index++];
        } else if (field[0] >= '0' && field[0] <= '9') {
            int idx = 0;
            for (size_t k = 0; k < nl; k++) {
                if (field[k] < '0' || field[k] > '9' || idx > 100000) {
                    idx = INT32_MAX;
                    break;
                }
                idx = idx * 10 + (field[k] - '0');
            }
            if (idx == INT32_MAX) {
                rc = fail(r, at, HALO_ERR_FORMAT, "bad replacement field '%.*s'", (int)(nl < 40 ? nl : 40), field);
                break;
            }
            if (idx >= npos) {
                rc = fail(r, at, HALO_ERR_FORMAT, "Replacement index %d out of range", idx);
                break;
            }
            v = pos[idx];
        } else {
            int hit = -1;
            for (int k = 0; k < nkw; k++)
                if (strlen(kwn[k]) == nl && !memcmp(kwn[k], field, nl)) hit = k;
            if (hit < 0) {
                rc = fail(r, at, HALO_ERR_FORMAT, "format: missing argument '%.*s'", (int)nl, field);
                break;
            }
            v = kwv[hit];
        }
        fmt_spec f = {.width = -1, .precision = -1};
        if (bang && bang + 1 < close) f.type = bang[1] == 'r' ? 'r' : 's';
        if (colon) {
            const char *q = colon + 1;
            if (q + 1 < close && strchr("<>^=", q[1])) f.fill = *q, f.align = q[1], q += 2;
            else if (q < close && strchr("<>^=", *q)) f.align = *q++;
            if (q < close && (*q == '+' || *q == '-' || *q == ' ')) f.sign = *q == '-' ? 0 : *q, q++;
            if (q < close && *q == '#') f.alt = true, q++;
            if (q < close && *q == '0') {
                f.zero = true;
                if (!f.fill) f.fill = '0';
                if (!f.align) f.align = '=';
                q++;
            }
            for (; q < close && *q >= '0' && *q <= '9'; q++) f.width = f.width > 9999 ? 99999 : (f.width < 0 ? 0 : f.width) * 10 + (*q - '0');
            if (q < close && *q == '.') {
                f.precision = 0;
                for (q++; q < close && *q >= '0' && *q <= '9'; q++) f.precision = f.precision > 9999 ? 99999 : f.precision * 10 + (*q - '0');
            }
            if (q < close) f.type = *q++;
            if (q != close) {
                rc = fail(r, at, HALO_ERR_FORMAT, "invalid format specifier");
                break;
            }
        }
        if (!f.type && (v.kind == TV_INT || v.kind == TV_BOOL) && v.kind != TV_BOOL && (f.width >= 0 || f.sign)) f.type = 'd';
        if (!f.type && v.kind == TV_FLOAT && f.precision >= 0) f.type = 'g';
        f.zero = false; /* handled by fill/align above */
        rc = format_one(r, at, &f, v, &b);
        p = close + 1;
    }
    if (rc) {
        tpl_buf_free(&b);
        return X_ERR;
    }
    bool ok = !b.failed && buf_to_str(r, &b, out);
    if (!ok) b.failed ? buf_fail(r, &b) : oom(r);
    tpl_buf_free(&b);
    return ok ? 0 : X_ERR;
}

static int binary(R *r, const tnode *at, int op, tv a, tv b, tv *out) {
    static const char *const names[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
    if (op == TOP_CONCAT) {
        tpl_buf buf = {0};
        tv_to_str(&buf, a);
        tv_to_str(&buf, b);
        bool ok = !buf.failed && buf_to_str(r, &buf, out);
        tpl_buf_free(&buf);
        return ok ? 0 : oom(r);
    }
    if (a.kind == TV_UNDEF) return undef_fail(r, at, a);
    if (b.kind == TV_UNDEF) return undef_fail(r, at, b);
    double x = 0, y = 0;
    int64_t i = 0, j = 0;
    bool xi = false, yi = false;
    if (as_num(a, &x, &i, &xi) && as_num(b, &y, &j, &yi)) {
        bool ints = xi && yi;
        switch (op) {
        case TOP_ADD:
        case TOP_SUB:
        case TOP_MUL:
            if (ints) {
                int64_t res;
                bool ovf = op == TOP_ADD ? __builtin_add_overflow(i, j, &res)
                           : op == TOP_SUB ? __builtin_sub_overflow(i, j, &res)
                                           : __builtin_mul_overflow(i, j, &res);
                if (ovf) return fail(r, at, HALO_ERR_RANGE, "integer overflow in '%s'", names[op]);
                *out = tv_int(res);
            } else {
                *out = tv_float(op == TOP_ADD ? x + y : op == TOP_SUB ? x - y : x * y);
            }
            return 0;
        case TOP_DIV:
            if (y == 0) return fail(r, at, HALO_ERR_FORMAT, "division by zero");
            *out = tv_float(x / y);
            return 0;
        case TOP_FLOORDIV:
        case TOP_MOD:
            if (y == 0) return fail(r, at, HALO_ERR_FORMAT, "integer division or modulo by zero");
            if (ints) {
                if (i == INT64_MIN && j == -1) return fail(r, at, HALO_ERR_RANGE, "integer overflow");
                int64_t q = i / j, m = i % j;
                if (m != 0 && ((m < 0) != (j < 0))) {
                    q--;
                    m += j;
                }
                *out = tv_int(op == TOP_FLOORDIV ? q : m);
            } else {
                double m = fmod(x, y);
                if (m != 0 && ((m < 0) != (y < 0))) m += y;
                *out = tv_float(op == TOP_FLOORDIV ? floor(x / y) : m);
            }
            return 0;
        case TOP_POW:
            if (ints && j >= 0) {
                int64_t res = 1, base = i;
                for (int64_t e = j; e > 0; e >>= 1) {
                    if (e & 1 && __builtin_mul_overflow(res, base, &res))
                        return fail(r, at, HALO_ERR_RANGE, "integer overflow in '**'");
                    if (e > 1 && __builtin_mul_overflow(base, base, &base))
                        return fail(r, at, HALO_ERR_RANGE, "integer overflow in '**'");
                }
                *out = tv_int(res);
            } else {
                *out = tv_float(pow(x, y));
            }
            return 0;
        }
    }
    if (op == TOP_ADD && a.kind == TV_STR && b.kind == TV_STR) {
        uint64_t total;
        if (__builtin_add_overflow((uint64_t)a.str.n, (uint64_t)b.str.n, &total) || total >= SIZE_MAX) return oom(r);
        char *p = tpl_alloc(&r->arena, (size_t)total + 1);
        if (!p) return oom(r);
        memcpy(p, a.str.s, a.str.n);
        memcpy(p + a.str.n, b.str.s, b.str.n);
        *out = tv_str(p, (size_t)total);
        return 0;
    }
    if (op == TOP_ADD && a.kind == TV_LIST && b.kind == TV_LIST) {
        tv_list *l = tv_list_new(&r->arena, a.list->n + b.list->n);
        if (!l) return oom(r);
        if (a.list->n) memcpy(l->items, a.list->items, a.list->n * sizeof(tv));
        if (b.list->n) memcpy(l->items + a.list->n, b.list->items, b.list->n * sizeof(tv));
        l->tuple = a.list->tuple;
        *out = (tv){.kind = TV_LIST, .list = l};
        return 0;
    }
    if (op == TOP_MUL) {
        if ((a.kind == TV_STR || a.kind == TV_LIST) && (b.kind == TV_INT || b.kind == TV_BOOL))
            return repeat(r, at, a, b.kind == TV_INT ? b.i : b.b, out);
        if ((b.kind == TV_STR || b.kind == TV_LIST) && (a.kind == TV_INT || a.kind == TV_BOOL))
            return repeat(r, at, b, a.kind == TV_INT ? a.i : a.b, out);
    }
    if (op == TOP_MOD && a.kind == TV_STR) return percent_format(r, at, a, b, out);
    return fail(r, at, HALO_ERR_FORMAT, "unsupported operand type(s) for %s: '%s' and '%s'", names[op],
                tv_type_name(a), tv_type_name(b));
}

/* ---- attribute and item access ------------------------------------------------------------ */

static bool is_method(tv obj, const char *name) {
    static const char *const str_methods[] = {
        "startswith", "endswith", "split", "rsplit", "splitlines", "strip", "lstrip", "rstrip", "replace",
        "upper", "lower", "title", "capitalize", "find", "rfind", "count", "join", "isdigit", "isalpha",
        "isalnum", "isspace", "isupper", "islower", "format", "index", NULL};
    static const char *const dict_methods[] = {"items", "keys", "values", "get", "copy", "append", "pop",
                                               "update", "setdefault", "clear", "popitem", NULL};
    static const char *const list_methods[] = {"index", "count", "copy", "append", "pop", "extend", "insert",
                                               "remove", "reverse", "sort", "clear", NULL};
    const char *const *m = obj.kind == TV_STR ? str_methods : obj.kind == TV_DICT ? dict_methods
                           : obj.kind == TV_LIST                                  ? list_methods
                                                                                  : NULL;
    for (; m && *m; m++)
        if (!strcmp(*m, name)) return true;
    return false;
}

static int loop_attr(R *r, const tnode *at, tloop *L, const char *name, tv *out) {
    size_t len = L->items->n;
    if (!strcmp(name, "index")) *out = tv_int((int64_t)L->index0 + 1);
    else if (!strcmp(name, "index0")) *out = tv_int((int64_t)L->index0);
    else if (!strcmp(name, "revindex")) *out = tv_int((int64_t)(len - L->index0));
    else if (!strcmp(name, "revindex0")) *out = tv_int((int64_t)(len - L->index0 - 1));
    else if (!strcmp(name, "first")) *out = tv_bool(L->index0 == 0);
    else if (!strcmp(name, "last")) *out = tv_bool(L->index0 + 1 == len);
    else if (!strcmp(name, "length")) *out = tv_int((int64_t)len);
    else if (!strcmp(name, "depth")) *out = tv_int(L->depth0 + 1);
    else if (!strcmp(name, "depth0")) *out = tv_int(L->depth0);
    else if (!strcmp(name, "previtem"))
        *out = L->index0 > 0 ? L->items->items[L->index0 - 1] : undef_msg(r, "there is no previous item");
    else if (!strcmp(name, "nextitem"))
        *out = L->index0 + 1 < len ? L->items->items[L->index0 + 1] : undef_msg(r, "there is no next item");
    else if (!strcmp(name, "cycle") || !strcmp(name, "changed")) {
        tmethod *m = tpl_alloc(&r->arena, sizeof *m);
        if (!m) return oom(r);
        m->self = (tv){.kind = TV_LOOP, .ptr = L};
        m->name = name[1] == 'y' ? "cycle" : "changed";
        *out = (tv){.kind = TV_METHOD, .ptr = m};
    } else *out = undef_msg(r, "'LoopContext' object has no attribute '%s'", name);
    (void)at;
    return 0;
}

static int getattr_v(R *r, const tnode *at, tv obj, const char *name, size_t n, tv *out) {
    char nm[128];
    snprintf(nm, sizeof nm, "%.*s", (int)(n < 120 ? n : 120), name);
    switch (obj.kind) {
    case TV_UNDEF: return undef_fail(r, at, obj);
    case TV_LOOP: return loop_attr(r, at, obj.ptr, nm, out);
    case TV_NS: {
        tv *v = tv_dict_find_str(obj.dict, name, n);
        *out = v ? *v : undef_msg(r, "'Namespace' object has no attribute '%s'", nm);
        return 0;
    }
    case TV_DICT:
    case TV_STR:
    case TV_LIST:
        if (is_method(obj, nm)) {
            tmethod *m = tpl_alloc(&r->arena, sizeof *m);
            char *mn = tpl_strdup(&r->arena, nm, strlen(nm));
            if (!m || !mn) return oom(r);
            m->self = obj;
            m->name = mn;
            *out = (tv){.kind = TV_METHOD, .ptr = m};
            return 0;
        }
        if (obj.kind == TV_DICT) {
            tv *v = tv_dict_find_str(obj.dict, name, n);
            if (v) {
                *out = *v;
                return 0;
            }
        }
        /* fall through */
    default: *out = undef_msg(r, "'%s' has no attribute '%s'", kind_name(obj), nm); return 0;
    }
}

static int getitem_v(R *r, const tnode *at, tv obj, tv key, tv *out) {
    switch (obj.kind) {
    case TV_UNDEF: return undef_fail(r, at, obj);
    case TV_DICT:
    case TV_NS: {
        tv *v = tv_dict_find(obj.dict, key);
        if (v) {
            *out = *v;
            return 0;
        }
        if (key.kind == TV_STR && obj.kind == TV_DICT) return getattr_v(r, at, obj, key.str.s, key.str.n, out);
        tpl_buf b = {.limit = 100};
        tv_repr(&b, key);
        *out = undef_msg(r, "'%s' has no attribute %s", kind_name(obj), b.p ? b.p : "?");
        tpl_buf_free(&b);
        return 0;
    }
    case TV_LIST:
    case TV_STR: {
        if (key.kind == TV_STR) return getattr_v(r, at, obj, key.str.s, key.str.n, out);
        if (obj.kind == TV_LIST && obj.list->lazy) {
            *out = undef_msg(r, "'generator object' has no attribute %lld", (long long)(key.kind == TV_INT ? key.i : 0));
            return 0;
        }
        if (key.kind != TV_INT && key.kind != TV_BOOL)
            return fail(r, at, HALO_ERR_FORMAT, "%s indices must be integers, not %s", tv_type_name(obj),
                        tv_type_name(key));
        int64_t i = key.kind == TV_INT ? key.i : key.b;
        size_t n = obj.kind == TV_LIST ? obj.list->n : u8_count(obj.str.s, obj.str.n);
        if (i < 0) i += (int64_t)n;
        if (i < 0 || (uint64_t)i >= n) {
            *out = undef_msg(r, "%s index out of range", tv_type_name(obj));
            return 0;
        }
        if (obj.kind == TV_LIST) {
            *out = obj.list->items[i];
        } else {
            size_t a = u8_offset(obj.str.s, obj.str.n, (size_t)i), b = u8_offset(obj.str.s, obj.str.n, (size_t)i + 1);
            *out = tv_str(obj.str.s + a, b - a);
        }
        return 0;
    }
    case TV_LOOP:
        if (key.kind == TV_STR) return getattr_v(r, at, obj, key.str.s, key.str.n, out);
        /* fall through */
    default: *out = undef_msg(r, "'%s' is not subscriptable", kind_name(obj)); return 0;
    }
}

static int slice_index(R *r, const tnode *at, tv v, bool *given, int64_t *out) {
    *given = v.kind != TV_NONE && v.kind != TV_UNDEF;
    if (!*given) return 0;
    if (v.kind != TV_INT && v.kind != TV_BOOL)
        return fail(r, at, HALO_ERR_FORMAT, "slice indices must be integers or None");
    *out = v.kind == TV_INT ? v.i : v.b;
    return 0;
}

static int slice_v(R *r, const tnode *at, tv obj, tv start, tv stop, tv stepv, tv *out) {
    if (obj.kind == TV_UNDEF) return undef_fail(r, at, obj);
    if ((obj.kind != TV_LIST && obj.kind != TV_STR) || (obj.kind == TV_LIST && obj.list->lazy))
        return fail(r, at, HALO_ERR_FORMAT, "'%s' object is not subscriptable",
                    obj.kind == TV_LIST ? "generator" : tv_type_name(obj));
    bool hs, he, hp;
    int64_t a = 0, b = 0, st = 1;
    if (slice_index(r, at, start, &hs, &a) || slice_index(r, at, stop, &he, &b) || slice_index(r, at, stepv, &hp, &st))
        return X_ERR;
    if (st == 0) return fail(r, at, HALO_ERR_FORMAT, "slice step cannot be zero");
    bool ascii = obj.kind == TV_STR && u8_count(obj.str.s, obj.str.n) == obj.str.n;
    int64_t n = (int64_t)(obj.kind == TV_LIST ? obj.list->n : u8_count(obj.str.s, obj.str.n));
    /* Python's PySlice_AdjustIndices */
    if (!hs) a = st < 0 ? n - 1 : 0;
    else if (a < 0) {
        a += n;
        if (a < 0) a = st < 0 ? -1 : 0;
    } else if (a >= n) a = st < 0 ? n - 1 : n;
    if (!he) b = st < 0 ? -1 : n;
    else if (b < 0) {
        b += n;
        if (b < 0) b = st < 0 ? -1 : 0;
    } else if (b >= n) b = st < 0 ? n - 1 : n;
    int64_t count = 0;
    if (st > 0 && a < b) count = (b - a - 1) / st + 1;
    else if (st < 0 && b < a) count = (a - b - 1) / (-st) + 1;
    if (obj.kind == TV_LIST) {
        tv_list *l = tv_list_new(&r->arena, (size_t)count);
        if (!l) return oom(r);
        l->tuple = obj.list->tuple;
        for (int64_t k = 0; k < count; k++) l->items[k] = obj.list->items[a + k * st];
        *out = (tv){.kind = TV_LIST, .list = l};
        return 0;
    }
    if (ascii && st == 1) {
        *out = tv_str(obj.str.s + a, (size_t)count);
        return 0;
    }
    tpl_buf buf = {0};
    for (int64_t k = 0; k < count; k++) {
        int64_t idx = a + k * st;
        size_t x = ascii ? (size_t)idx : u8_offset(obj.str.s, obj.str.n, (size_t)idx);
        size_t y = ascii ? (size_t)idx + 1 : u8_offset(obj.str.s, obj.str.n, (size_t)idx + 1);
        tpl_buf_add(&buf, obj.str.s + x, y - x);
    }
    bool ok = !buf.failed && buf_to_str(r, &buf, out);
    tpl_buf_free(&buf);
    return ok ? 0 : oom(r);
}

/* ---- argument helpers ------------------------------------------------------------------------ */

typedef struct args {
    tv *pos;
    int npos;
    const char **kwn;
    tv *kwv;
    int nkw;
} args;

/* argument `name` at position `idx`, or NULL */
static tv *arg(args *a, int idx, const char *name) {
    for (int k = 0; k < a->nkw; k++)
        if (!strcmp(a->kwn[k], name)) return &a->kwv[k];
    return idx >= 0 && idx < a->npos ? &a->pos[idx] : NULL;
}

static int check_args(R *r, const tnode *at, const char *what, args *a, int max_pos, const char *const *kw) {
    if (a->npos > max_pos)
        return fail(r, at, HALO_ERR_FORMAT, "%s takes at most %d argument%s (%d given)", what, max_pos,
                    max_pos == 1 ? "" : "s", a->npos);
    for (int k = 0; k < a->nkw; k++) {
        bool ok = false;
        for (int j = 0; kw && kw[j]; j++) ok |= !strcmp(kw[j], a->kwn[k]);
        if (!ok) return fail(r, at, HALO_ERR_FORMAT, "%s got an unexpected keyword argument '%s'", what, a->kwn[k]);
    }
    return 0;
}

static int need_str(R *r, const tnode *at, const char *what, tv *v) {
    if (v && v->kind == TV_STR) return 0;
    if (v && v->kind == TV_UNDEF) return undef_fail(r, at, *v);
    return fail(r, at, HALO_ERR_FORMAT, "%s needs a string%s%s", what, v ? ", not " : "", v ? tv_type_name(*v) : "");
}

static int need_int(R *r, const tnode *at, const char *what, tv *v, int64_t *out) {
    if (v && (v->kind == TV_INT || v->kind == TV_BOOL)) {
        *out = v->kind == TV_INT ? v->i : v->b;
        return 0;
    }
    return fail(r, at, HALO_ERR_FORMAT, "%s needs an integer%s%s", what, v ? ", not " : "", v ? tv_type_name(*v) : "");
}

static int to_string_v(R *r, tv v, tv *out) {
    if (v.kind == TV_STR) {
        *out = v;
        return 0;
    }
    tpl_buf b = {0};
    tv_to_str(&b, v);
    bool ok = !b.failed && buf_to_str(r, &b, out);
    tpl_buf_free(&b);
    return ok ? 0 : oom(r);
}

/* ---- string methods ---------------------------------------------------------------------------- */

static int str_split(R *r, const tnode *at, tv s, tv *sep, int64_t maxsplit, bool from_right, tv *out) {
    tv parts[64];
    size_t np = 0, cap = 64;
    tv *items = parts;
    tv_list *l;
#define PUSH(v)                                                                                    \
    do {                                                                                           \
        if (np == cap) {                                                                           \
            tv *ni = tpl_alloc_array(&r->arena, cap * 2, sizeof(tv));                              \
            if (!ni) return oom(r);                                                                \
            memcpy(ni, items, np * sizeof(tv));                                                    \
            items = ni;                                                                            \
            cap *= 2;                                                                              \
        }                                                                                          \
        items[np++] = (v);                                                                         \
    } while (0)
    const char *p = s.str.s;
    size_t n = s.str.n;
    if (!sep || sep->kind == TV_NONE) {
        /* runs of whitespace, ends ignored */
        if (!from_right) {
            size_t i = 0;
            while (i < n) {
                size_t j = i;
                int32_t c = u8_next(p, n, &j);
                if (py_space(c)) {
                    i = j;
                    continue;
                }
                if (maxsplit >= 0 && (int64_t)np >= maxsplit) {
                    tv rest = str_strip(tv_str(p + i, n - i), 2, NULL);
                    PUSH(rest);
                    break;
                }
                size_t start = i;
                while (i < n) {
                    j = i;
                    c = u8_next(p, n, &j);
                    if (py_space(c)) break;
                    i = j;
                }
                PUSH(tv_str(p + start, i - start));
            }
        } else {
            /* rsplit without sep: split all, then rejoin the head if maxsplit */
            tv all;
            if (str_split(r, at, s, NULL, -1, false, &all)) return X_ERR;
            if (maxsplit < 0 || (int64_t)all.list->n <= maxsplit + 1) {
                *out = all;
                return 0;
            }
            size_t keep = (size_t)maxsplit;
            size_t head_end_idx = all.list->n - keep; /* items [0, head_end_idx) joined */
            tv last_head = all.list->items[head_end_idx - 1];
            size_t head_len = (size_t)(last_head.str.s + last_head.str.n - p);
            tv head = str_strip(tv_str(p, head_len), 1, NULL);
            PUSH(head);
            for (size_t k = head_end_idx; k < all.list->n; k++) PUSH(all.list->items[k]);
        }
    } else {
        if (sep->kind != TV_STR) return need_str(r, at, "split()", sep);
        if (sep->str.n == 0) return fail(r, at, HALO_ERR_FORMAT, "empty separator");
        size_t m = sep->str.n;
        if (!from_right) {
            size_t start = 0;
            for (size_t i = 0; i + m <= n;) {
                if ((maxsplit < 0 || (int64_t)np < maxsplit) && !memcmp(p + i, sep->str.s, m)) {
                    PUSH(tv_str(p + start, i - start));
                    i += m;
                    start = i;
                } else i++;
            }
            PUSH(tv_str(p + start, n - start));
        } else {
            size_t end = n;
            int64_t done = 0;
            tv rev[1];
            (void)rev;
            for (size_t i = n; i >= m && i - m + 1 > 0;) {
                size_t pos = i - m;
                if ((maxsplit < 0 || done < maxsplit) && !memcmp(p + pos, sep->str.s, m)) {
                    PUSH(tv_str(p + pos + m, end - pos - m));
                    done++;
                    end = pos;
                    i = pos;
                } else {
                    i--;
                }
                if (i < m) break;
            }
            PUSH(tv_str(p, end));
            for (size_t k = 0; k < np / 2; k++) {
                tv t = items[k];
                items[k] = items[np - 1 - k];
                items[np - 1 - k] = t;
            }
        }
    }
#undef PUSH
    l = tv_list_new(&r->arena, np);
    if (!l) return oom(r);
    if (np) memcpy(l->items, items, np * sizeof(tv));
    *out = (tv){.kind = TV_LIST, .list = l};
    return 0;
}

static int str_replace(R *r, tv s, tv old, tv new_, int64_t count, tv *out) {
    tpl_buf b = {0};
    size_t i = 0;
    int64_t done = 0;
    if (old.str.n == 0) {
        /* Python inserts the replacement between characters */
        while (count < 0 || done < count) {
            tpl_buf_add(&b, new_.str.s, new_.str.n);
            done++;
            if (i >= s.str.n) break;
            size_t j = i;
            u8_next(s.str.s, s.str.n, &j);
            tpl_buf_add(&b, s.str.s + i, j - i);
            i = j;
        }
        tpl_buf_add(&b, s.str.s + i, s.str.n - i);
    } else {
        while (i < s.str.n) {
            if ((count < 0 || done < count) && i + old.str.n <= s.str.n && !memcmp(s.str.s + i, old.str.s, old.str.n)) {
                tpl_buf_add(&b, new_.str.s, new_.str.n);
                i += old.str.n;
                done++;
            } else {
                tpl_buf_addc(&b, s.str.s[i++]);
            }
        }
    }
    bool ok = !b.failed && buf_to_str(r, &b, out);
    tpl_buf_free(&b);
    return ok ? 0 : oom(r);
}

static int join_v(R *r, const tnode *at, tv seq, tv sep, const tv *attribute, tv *out);

static bool affix_match(tv s, tv a, bool end) {
    if (a.str.n > s.str.n) return false;
    return !memcmp(s.str.s + (end ? s.str.n - a.str.n : 0), a.str.s, a.str.n);
}

static int call_str_method(R *r, const tnode *at, tv s, const char *name, args *a, tv *out) {
    char what[64];
    snprintf(what, sizeof what, "str.%s()", name);
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        bool end = name[0] == 'e';
        if (check_args(r, at, what, a, 1, NULL)) return X_ERR;
        tv *p = arg(a, 0, "");
        if (!p) return fail(r, at, HALO_ERR_FORMAT, "%s takes 1 argument", what);
        if (p->kind == TV_LIST) {
            bool hit = false;
            for (size_t k = 0; k < p->list->n; k++) {
                if (need_str(r, at, what, &p->list->items[k])) return X_ERR;
                hit |= affix_match(s, p->list->items[k], end);
            }
            *out = tv_bool(hit);
            return 0;
        }
        if (need_str(r, at, what, p)) return X_ERR;
        *out = tv_bool(affix_match(s, *p, end));
        return 0;
    }
    if (!strcmp(name, "split") || !strcmp(name, "rsplit")) {
        static const char *const kw[] = {"sep", "maxsplit", NULL};
        if (check_args(r, at, what, a, 2, kw)) return X_ERR;
        tv *sep = arg(a, 0, "sep"), *ms = arg(a, 1, "maxsplit");
        int64_t maxsplit = -1;
        if (ms && need_int(r, at, what, ms, &maxsplit)) return X_ERR;
        return str_split(r, at, s, sep, maxsplit, name[0] == 'r', out);
    }
    if (!strcmp(name, "splitlines")) {
        if (check_args(r, at, what, a, 0, NULL)) return X_ERR;
        tv_list *l = tv_list_new(&r->arena, 0);
        if (!l) return oom(r);
        size_t start = 0, cnt = 0, cap = 0;
        tv *items = NULL;
        for (size_t i = 0; i <= s.str.n; i++) {
            bool brk = i < s.str.n && (s.str.s[i] == '\n' || s.str.s[i] == '\r');
            if (!brk && i < s.str.n) continue;
            if (i == s.str.n && start == s.str.n) break;
            if (cnt == cap) {
                size_t nc = cap ? cap * 2 : 8;
                tv *ni = tpl_alloc_array(&r->arena, nc, sizeof(tv));
                if (!ni) return oom(r);
                if (cnt) memcpy(ni, items, cnt * sizeof(tv));
                items = ni;
                cap = nc;
            }
            items[cnt++] = tv_str(s.str.s + start, i - start);
            if (i < s.str.n && s.str.s[i] == '\r' && i + 1 < s.str.n && s.str.s[i + 1] == '\n') i++;
            start = i + 1;
        }
        l->items = items;
        l->n = cnt;
        *out = (tv){.kind = TV_LIST, .list = l};
        return 0;
    }
    if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
        static const char *const kw[] = {"chars", NULL};
        if (check_args(r, at, what, a, 1, kw)) return X_ERR;
        tv *chars = arg(a, 0, "chars");
        if (chars && chars->kind == TV_NONE) chars = NULL;
        if (chars && need_str(r, at, what, chars)) return X_ERR;
        *out = str_strip(s, name[0] == 'l' ? 1 : name[0] == 'r' ? 2 : 3, chars);
        return 0;
    }
    if (!strcmp(name, "replace")) {
        static const char *const kw[] = {"count", NULL};
        if (check_args(r, at, what, a, 3, kw)) return X_ERR;
        tv *o = arg(a, 0, "old"), *nw = arg(a, 1, "new"), *c = arg(a, 2, "count");
        int64_t count = -1;
        if (need_str(r, at, what, o) || need_str(r, at, what, nw)) return X_ERR;
        if (c && need_int(r, at, what, c, &count)) return X_ERR;
        return str_replace(r, s, *o, *nw, count, out);
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "title") || !strcmp(name, "capitalize")) {
        if (check_args(r, at, what, a, 0, NULL)) return X_ERR;
        int mode = name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 't' ? 2 : 3;
        return str_case(r, s, mode, out) ? 0 : oom(r);
    }
    if (!strcmp(name, "find") || !strcmp(name, "rfind") || !strcmp(name, "count") || !strcmp(name, "index")) {
        if (check_args(r, at, what, a, 1, NULL)) return X_ERR;
        tv *sub = arg(a, 0, "");
        if (need_str(r, at, what, sub)) return X_ERR;
        int64_t found = -1, count = 0;
        if (sub->str.n <= s.str.n) {
            for (size_t i = 0; i + sub->str.n <= s.str.n; i++) {
                if (!memcmp(s.str.s + i, sub->str.s, sub->str.n)) {
                    if (found < 0 || name[0] == 'r') found = (int64_t)i;
                    if (name[0] == 'f' || name[0] == 'i') break;
                    count++;
                    if (sub->str.n) i += sub->str.n - 1;
                }
            }
        }
        if (!strcmp(name, "count")) {
            if (sub->str.n == 0) count = (int64_t)u8_count(s.str.s, s.str.n) + 1;
            *out = tv_int(count);
            return 0;
        }
        if (found < 0 && name[0] == 'i') return fail(r, at, HALO_ERR_FORMAT, "substring not found");
        *out = tv_int(found < 0 ? -1 : (int64_t)u8_count(s.str.s, (size_t)found));
        return 0;
    }
    if (!strcmp(name, "join")) {
        if (check_args(r, at, what, a, 1, NULL)) return X_ERR;
        tv *seq = arg(a, 0, "");
        if (!seq) return fail(r, at, HALO_ERR_FORMAT, "%s takes 1 argument", what);
        return join_v(r, at, *seq, s, NULL, out);
    }
    if (!strncmp(name, "is", 2)) {
        if (check_args(r, at, what, a, 0, NULL)) return X_ERR;
        bool all = s.str.n > 0, any_cased = false;
        size_t i = 0;
        while (i < s.str.n) {
            int32_t c = u8_next(s.str.s, s.str.n, &i);
            const utf8proc_property_t *p = utf8proc_get_property(c);
            int cat = p->category;
            bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
            bool digit = cat == UTF8PROC_CATEGORY_ND;
            if (!strcmp(name, "isdigit")) all &= digit;
            else if (!strcmp(name, "isalpha")) all &= letter;
            else if (!strcmp(name, "isalnum")) all &= letter || digit || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
            else if (!strcmp(name, "isspace")) all &= py_space(c);
            else if (!strcmp(name, "isupper")) {
                if (cat == UTF8PROC_CATEGORY_LL) all = false;
                any_cased |= cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT;
            } else if (!strcmp(name, "islower")) {
                if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) all = false;
                any_cased |= cat == UTF8PROC_CATEGORY_LL;
            }
        }
        if (!strcmp(name, "isupper") || !strcmp(name, "islower")) all = all && any_cased;
        *out = tv_bool(all);
        return 0;
    }
    if (!strcmp(name, "format")) return brace_format(r, at, s, a->pos, a->npos, a->kwn, a->kwv, a->nkw, out);
    return fail(r, at, HALO_ERR_UNSUPPORTED, "str.%s() is not supported", name);
}

static int call_method(R *r, const tnode *at, tmethod *m, args *a, tv *out) {
    tv self = m->self;
    const char *name = m->name;
    if (self.kind == TV_STR) return call_str_method(r, at, self, name, a, out);
    if (self.kind == TV_LOOP && !strcmp(name, "changed")) { /* true when the arguments differ from last call's */
        tloop *L = self.ptr;
        tv_list *now = tv_list_new(&r->arena, (size_t)a->npos);
        if (!now) return oom(r);
        now->tuple = true;
        for (int k = 0; k < a->npos; k++) now->items[k] = a->pos[k];
        tv v = {.kind = TV_LIST, .list = now};
        bool changed = !L->changed_set || !tv_equal(L->changed_last, v);
        L->changed_last = v;
        L->changed_set = true;
        *out = tv_bool(changed);
        return 0;
    }
    if (self.kind == TV_LOOP) { /* loop.cycle(a, b, ...) */
        tloop *L = self.ptr;
        if (a->npos == 0) return fail(r, at, HALO_ERR_FORMAT, "loop.cycle() needs at least one value");
        *out = a->pos[L->index0 % (size_t)a->npos];
        return 0;
    }
    if (self.kind == TV_DICT) {
        tv_dict *d = self.dict;
        if (!strcmp(name, "items") || !strcmp(name, "keys") || !strcmp(name, "values")) {
            if (check_args(r, at, name, a, 0, NULL)) return X_ERR;
            tv_list *l = tv_list_new(&r->arena, d->n);
            if (!l) return oom(r);
            for (size_t i = 0; i < d->n; i++) {
                if (name[0] == 'k') l->items[i] = d->keys[i];
                else if (name[0] == 'v') l->items[i] = d->vals[i];
                else {
                    tv_list *pair = tv_list_new(&r->arena, 2);
                    if (!pair) return oom(r);
                    pair->tuple = true;
                    pair->items[0] = d->keys[i];
                    pair->items[1] = d->vals[i];
                    l->items[i] = (tv){.kind = TV_LIST, .list = pair};
                }
            }
            *out = (tv){.kind = TV_LIST, .list = l};
            return 0;
        }
        if (!strcmp(name, "get")) {
            if (check_args(r, at, "dict.get()", a, 2, NULL)) return X_ERR;
            if (a->npos < 1) return fail(r, at, HALO_ERR_FORMAT, "dict.get() needs a key");
            tv *v = tv_dict_find(d, a->pos[0]);
            *out = v ? *v : a->npos > 1 ? a->pos[1] : tv_none();
            return 0;
        }
        if (!strcmp(name, "copy")) {
            *out = self;
            return 0;
        }
    }
    if (self.kind == TV_LIST) {
        if (!strcmp(name, "index") || !strcmp(name, "count")) {
            if (a->npos != 1) return fail(r, at, HALO_ERR_FORMAT, "list.%s() takes 1 argument", name);
            int64_t first = -1, count = 0;
            for (size_t i = 0; i < self.list->n; i++) {
                if (tv_equal(self.list->items[i], a->pos[0])) {
                    if (first < 0) first = (int64_t)i;
                    count++;
                }
            }
            if (name[0] == 'i' && first < 0) return fail(r, at, HALO_ERR_FORMAT, "list.index(x): x not in list");
            *out = tv_int(name[0] == 'i' ? first : count);
            return 0;
        }
        if (!strcmp(name, "copy")) {
            *out = self;
            return 0;
        }
    }
    return fail(r, at, HALO_ERR_UNSUPPORTED, "access to attribute '%s' of '%s' object is unsafe (the sandbox is immutable)",
                name, tv_type_name(self));
}

/* ---- builtins ------------------------------------------------------------------------------- */

static int call_builtin(R *r, const tnode *at, int id, args *a, tv *out) {
    switch (id) {
    case B_RANGE: {
        if (a->nkw || a->npos < 1 || a->npos > 3) return fail(r, at, HALO_ERR_FORMAT, "range() takes 1 to 3 integers");
        int64_t v[3] = {0, 0, 1};
        for (int k = 0; k < a->npos; k++)
            if (need_int(r, at, "range()", &a->pos[k], &v[a->npos == 1 ? 1 : k])) return X_ERR;
        if (v[2] == 0) return fail(r, at, HALO_ERR_FORMAT, "range() arg 3 must not be zero");
        double cnt = v[2] > 0 ? ceil(((double)v[1] - (double)v[0]) / (double)v[2])
                              : ceil(((double)v[0] - (double)v[1]) / (double)-v[2]);
        if (cnt < 0) cnt = 0;
        if (cnt > 1e6) return fail(r, at, HALO_ERR_RANGE, "range() of more than 1000000 items");
        tv_list *l = tv_list_new(&r->arena, (size_t)cnt);
        if (!l) return oom(r);
        for (size_t k = 0; k < l->n; k++) l->items[k] = tv_int(v[0] + (int64_t)k * v[2]);
        *out = (tv){.kind = TV_LIST, .list = l};
        return 0;
    }
    case B_NAMESPACE:
    case B_DICT: {
        tv_dict *d = tv_dict_new(&r->arena, 0);
        if (!d) return oom(r);
        for (int k = 0; k < a->npos; k++) {
            if (a->pos[k].kind != TV_DICT && a->pos[k].kind != TV_NS)
                return fail(r, at, HALO_ERR_FORMAT, "%s() takes keyword arguments or a dict",
                            id == B_DICT ? "dict" : "namespace");
            for (size_t i = 0; i < a->pos[k].dict->n; i++)
                if (!tv_dict_set(&r->arena, d, a->pos[k].dict->keys[i], a->pos[k].dict->vals[i])) return oom(r);
        }
        for (int k = 0; k < a->nkw; k++)
            if (!tv_dict_set(&r->arena, d, tv_str(a->kwn[k], strlen(a->kwn[k])), a->kwv[k])) return oom(r);
        *out = (tv){.kind = id == B_DICT ? TV_DICT : TV_NS, .dict = d};
        return 0;
    }
    case B_RAISE: {
        tv msg = a->npos ? a->pos[0] : tv_str("", 0);
        tv s;
        if (to_string_v(r, msg, &s)) return X_ERR;
        return fail(r, at, HALO_ERR_ARG, "%.*s", (int)(s.str.n > 380 ? 380 : s.str.n), s.str.s);
    }
    case B_STRFTIME: {
        if (a->npos != 1 || need_str(r, at, "strftime_now()", &a->pos[0])) return X_ERR;
        time_t t = (time_t)r->now;
        struct tm tm;
        if (!localtime_r(&t, &tm)) return fail(r, at, HALO_ERR_FORMAT, "strftime_now(): bad time");
        char fmt[256], res[512];
        snprintf(fmt, sizeof fmt, "%.*s", (int)(a->pos[0].str.n < 255 ? a->pos[0].str.n : 255), a->pos[0].str.s);
        size_t n = fmt[0] ? strftime(res, sizeof res, fmt, &tm) : 0;
        *out = mkstr(r, res, n);
        return STR_OK(*out) ? 0 : oom(r);
    }
    }
    return fail(r, at, HALO_ERR_FORMAT, "unknown builtin");
}

/* ---- macros ---------------------------------------------------------------------------------- */

static int call_macro(R *r, const tnode *at, tmacro *m, args *a, tv caller, tv *out) {
    const tnode *def = m->def;
    if (++r->depth > r->max_depth) return fail(r, at, HALO_ERR_RANGE, "macro calls nested more than %d deep", r->max_depth);
    scope *s = scope_new(r, m->closure);
    if (!s) return oom(r);
    s->macro = true;
    int nparams = def->nw;
    tv_list *varargs = tv_list_new(&r->arena, a->npos > nparams ? (size_t)(a->npos - nparams) : 0);
    tv_dict *kwargs = tv_dict_new(&r->arena, 0);
    if (!varargs || !kwargs) return oom(r);
    varargs->tuple = true;
    for (int k = 0; k < a->npos; k++) {
        if (k < nparams) {
            if (!scope_set(r, s, def->names[k], a->pos[k])) return oom(r);
        } else varargs->items[k - nparams] = a->pos[k];
    }
    for (int k = 0; k < a->nkw; k++) {
        int p = -1;
        for (int j = 0; j < nparams; j++)
            if (!strcmp(def->names[j], a->kwn[k])) p = j;
        if (p >= 0 && p < a->npos)
            return fail(r, at, HALO_ERR_FORMAT, "macro got multiple values for argument '%s'", a->kwn[k]);
        if (p >= 0) {
            if (!scope_set(r, s, a->kwn[k], a->kwv[k])) return oom(r);
        } else if (!tv_dict_set(&r->arena, kwargs, tv_str(a->kwn[k], strlen(a->kwn[k])), a->kwv[k])) return oom(r);
    }
    /* defaults, evaluated in the macro's scope (they may use earlier parameters) */
    for (int j = 0; j < nparams; j++) {
        if (tv_dict_find_str(s->vars, def->names[j], strlen(def->names[j]))) continue;
        tv v = tv_undef();
        if (def->w[j]) {
            if (ev(r, s, def->w[j], &v)) return X_ERR;
        } else {
            v = undef_msg(r, "'%s' is undefined", def->names[j]);
        }
        if (!scope_set(r, s, def->names[j], v)) return oom(r);
    }
    if (!scope_set(r, s, "varargs", (tv){.kind = TV_LIST, .list = varargs}) ||
        !scope_set(r, s, "kwargs", (tv){.kind = TV_DICT, .dict = kwargs}))
        return oom(r);
    if (caller.kind != TV_UNDEF && !scope_set(r, s, "caller", caller)) return oom(r);
    tpl_buf b = {.limit = r->max_output};
    int rc = exec_body(r, s, def->v, def->nv, &b);
    if (rc == X_ERR) {
        tpl_buf_free(&b);
        return X_ERR;
    }
    if (b.failed) {
        buf_fail(r, &b);
        tpl_buf_free(&b);
        return X_ERR;
    }
    bool ok = buf_to_str(r, &b, out);
    tpl_buf_free(&b);
    r->depth--;
    return ok ? 0 : oom(r);
}

static int exec_for(R *r, scope *s, const tnode *n, tv iterable, int depth0, tpl_buf *out);

static int call_value(R *r, scope *s, const tnode *at, tv callee, tv *pos, int npos, const char **kwn, tv *kwv,
                      int nkw, tv caller, tv *out) {
    args a = {pos, npos, kwn, kwv, nkw};
    switch (callee.kind) {
    case TV_MACRO: return call_macro(r, at, callee.ptr, &a, caller, out);
    case TV_BUILTIN: return call_builtin(r, at, (int)callee.aux, &a, out);
    case TV_METHOD: return call_method(r, at, callee.ptr, &a, out);
    case TV_LOOP: {
        tloop *L = callee.ptr;
        if (!L->node->flag) return fail(r, at, HALO_ERR_FORMAT, "the loop is not recursive ('for ... recursive')");
        if (npos != 1) return fail(r, at, HALO_ERR_FORMAT, "loop() takes one iterable");
        if (++r->depth > r->max_depth)
            return fail(r, at, HALO_ERR_RANGE, "recursive loop nested more than %d deep", r->max_depth);
        tpl_buf b = {.limit = r->max_output};
        int rc = exec_for(r, L->outer, L->node, pos[0], L->depth0 + 1, &b);
        if (rc != X_ERR && b.failed) rc = buf_fail(r, &b);
        if (rc != X_ERR && !buf_to_str(r, &b, out)) rc = oom(r);
        tpl_buf_free(&b);
        r->depth--;
        return rc == X_ERR ? X_ERR : 0;
    }
    case TV_UNDEF: return undef_fail(r, at, callee);
    default: (void)s; return fail(r, at, HALO_ERR_FORMAT, "'%s' object is not callable", tv_type_name(callee));
    }
}

/* ---- filters and tests ------------------------------------------------------------------------ */

/* obj.attr.attr... for map / selectattr / sort(attribute=...) */
static int attr_path(R *r, const tnode *at, tv obj, tv path, tv *out) {
    if (path.kind == TV_INT) return getitem_v(r, at, obj, path, out);
    if (path.kind != TV_STR) return fail(r, at, HALO_ERR_FORMAT, "attribute must be a string");
    const char *p = path.str.s, *end = p + path.str.n;
    tv cur = obj;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        if (!dot) dot = end;
        size_t n = (size_t)(dot - p);
        bool numeric = n > 0;
        int64_t idx = 0;
        for (size_t k = 0; k < n; k++) {
            numeric &= p[k] >= '0' && p[k] <= '9';
            if (numeric && idx < 1000000000) idx = idx * 10 + (p[k] - '0');
        }
        tv key = numeric ? tv_int(idx) : tv_str(p, n);
        if (cur.kind == TV_UNDEF) return 0 * (int)(*out = cur, 0);
        if (getitem_v(r, at, cur, key, &cur)) return X_ERR;
        p = dot + 1;
    }
    *out = cur;
    return 0;
}

static int join_v(R *r, const tnode *at, tv seq, tv sep, const tv *attribute, tv *out) {
    tv_list *l;
    if (to_list(r, at, seq, &l)) return X_ERR;
    tpl_buf b = {.limit = r->max_output};
    for (size_t i = 0; i < l->n; i++) {
        if (i) tv_to_str(&b, sep);
        tv item = l->items[i];
        if (attribute && attr_path(r, at, item, *attribute, &item)) {
            tpl_buf_free(&b);
            return X_ERR;
        }
        tv_to_str(&b, item);
    }
    if (b.failed) {
        buf_fail(r, &b);
        tpl_buf_free(&b);
        return X_ERR;
    }
    bool ok = buf_to_str(r, &b, out);
    tpl_buf_free(&b);
    return ok ? 0 : oom(r);
}

static int tojson_v(R *r, const tnode *at, tv in, args *a, tv *out) {
    static const char *const kw[] = {"ensure_ascii", "indent", "separators", "sort_keys", NULL};
    if (check_args(r, at, "tojson", a, 4, kw)) return X_ERR;
    tv *ea = arg(a, 0, "ensure_ascii"), *ind = arg(a, 1, "indent"), *sep = arg(a, 2, "separators"),
       *sk = arg(a, 3, "sort_keys");
    tv_json_opts o = {.ensure_ascii = ea && tv_truthy(*ea), .indent = -1, .sort_keys = sk && tv_truthy(*sk)};
    char indent_buf[64];
    if (ind && ind->kind != TV_NONE) {
        if (ind->kind == TV_INT) {
            o.indent = ind->i < 0 ? 0 : ind->i > 32 ? 32 : (int)ind->i;
        } else if (ind->kind == TV_STR) {
            snprintf(indent_buf, sizeof indent_buf, "%.*s", (int)(ind->str.n < 60 ? ind->str.n : 60), ind->str.s);
            o.indent_str = indent_buf;
        } else return fail(r, at, HALO_ERR_FORMAT, "tojson: indent must be an integer or a string");
    }
    bool pretty = o.indent >= 0 || o.indent_str;
    o.item_sep = pretty ? "," : ", ";
    o.key_sep = ": ";
    char seps[2][32];
    if (sep && sep->kind != TV_NONE) {
        if (sep->kind != TV_LIST || sep->list->n != 2 || sep->list->items[0].kind != TV_STR ||
            sep->list->items[1].kind != TV_STR)
            return fail(r, at, HALO_ERR_FORMAT, "tojson: separators must be a pair of strings");
        for (int k = 0; k < 2; k++)
            snprintf(seps[k], sizeof seps[k], "%.*s", (int)(sep->list->items[k].str.n < 30 ? sep->list->items[k].str.n : 30),
                     sep->list->items[k].str.s);
        o.item_sep = seps[0];
        o.key_sep = seps[1];
    }
    tpl_buf b = {.limit = r->max_output};
    char why[128] = "";
    bool ok = tv_to_json(&b, in, &o, why, 0);
    if (!ok || b.failed) {
        if (why[0]) fail(r, at, HALO_ERR_FORMAT, "tojson: %s", why);
        else buf_fail(r, &b);
        tpl_buf_free(&b);
        return X_ERR;
    }
    ok = buf_to_str(r, &b, out);
    tpl_buf_free(&b);
    return ok ? 0 : oom(r);
}

/* stable merge sort of tvs with an error-capable comparison */
typedef struct sort_ctx {
    R *r;
    const tnode *at;
    bool fold;
    bool reverse;
    const tv *attribute;
    bool by_value; /* dictsort by value: items are pairs */
    int pair_index;
    int err;
} sort_ctx;

static int sort_key(sort_ctx *c, tv v, tv *k) {
    if (c->pair_index >= 0) v = v.list->items[c->pair_index];
    if (c->attribute) return attr_path(c->r, c->at, v, *c->attribute, k);
    *k = v;
    return 0;
}

static int sort_cmp(sort_ctx *c, tv a, tv b) {
    if (c->err) return 0;
    tv ka, kb;
    int cmp = 0;
    if (sort_key(c, a, &ka) || sort_key(c, b, &kb) || compare(c->r, c->at, ka, kb, &cmp, c->fold)) {
        c->err = 1;
        return 0;
    }
    return c->reverse ? -cmp : cmp;
}

static void merge_sort(sort_ctx *c, tv *v, tv *tmp, size_t n) {
    if (n < 2 || c->err) return;
    size_t h = n / 2;
    merge_sort(c, v, tmp, h);
    merge_sort(c, v + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = sort_cmp(c, v[j], v[i]) < 0 ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof(tv));
}

static int sorted_copy(R *r, const tnode *at, tv_list *in, sort_ctx *c, tv_list **out) {
    tv_list *l = tv_list_new(&r->arena, in->n);
    tv *tmp = tpl_alloc_array(&r->arena, in->n ? in->n : 1, sizeof(tv));
    if (!l || !tmp) return oom(r);
    if (in->n) memcpy(l->items, in->items, in->n * sizeof(tv));
    c->r = r;
    c->at = at;
    merge_sort(c, l->items, tmp, l->n);
    if (c->err) return X_ERR;
    *out = l;
    return 0;
}

static int select_items(R *r, const tnode *at, tv in, args *a, bool by_attr, bool keep_when, tv *out) {
    tv_list *l;
    if (to_list(r, at, in, &l)) return X_ERR;
    int first_test = by_attr ? 1 : 0;
    if (by_attr && a->npos < 1) return fail(r, at, HALO_ERR_FORMAT, "selectattr/rejectattr need an attribute name");
    tv_list *res = tv_list_new(&r->arena, l->n);
    if (!res) return oom(r);
    res->n = 0;
    for (size_t i = 0; i < l->n; i++) {
        tv v = l->items[i];
        if (by_attr && attr_path(r, at, v, a->pos[0], &v)) return X_ERR;
        bool t;
        if (a->npos > first_test) {
            if (need_str(r, at, "the test name", &a->pos[first_test])) return X_ERR;
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(a->pos[first_test].str.n < 60 ? a->pos[first_test].str.n : 60),
                     a->pos[first_test].str.s);
            if (apply_test(r, at, name, v, a->pos + first_test + 1, a->npos - first_test - 1, &t)) return X_ERR;
        } else {
            t = tv_truthy(v);
        }
        if (t == keep_when) res->items[res->n++] = l->items[i];
    }
    res->lazy = true;
    *out = (tv){.kind = TV_LIST, .list = res};
    return 0;
}

static int apply_filter(R *r, const tnode *at, const char *name, tv in, tv *pos, int npos, const char **kwn,
                        tv *kwv, int nkw, tv *out) {
    args a = {pos, npos, kwn, kwv, nkw};
    char what[80];
    snprintf(what, sizeof what, "filter '%s'", name);
#define IS(x) (!strcmp(name, x))
    if (IS("safe") || IS("string") || IS("e") || IS("escape") || IS("forceescape")) {
        tv s;
        if (to_string_v(r, in, &s)) return X_ERR;
        if (IS("string") || IS("safe")) { /* safe: Markup(str(value)), a string */
            *out = s;
            return 0;
        }
        tpl_buf b = {.limit = r->max_output};
        for (size_t i = 0; i < s.str.n; i++) {
            char c = s.str.s[i];
            if (c == '&') tpl_buf_add(&b, "&amp;", 5);
            else if (c == '<') tpl_buf_add(&b, "&lt;", 4);
            else if (c == '>') tpl_buf_add(&b, "&gt;", 4);
            else if (c == '"') tpl_buf_add(&b, "&#34;", 5);
            else if (c == '\'') tpl_buf_add(&b, "&#39;", 5);
            else tpl_buf_addc(&b, c);
        }
        bool ok = !b.failed && buf_to_str(r, &b, out);
        if (!ok) b.failed ? buf_fail(r, &b) : oom(r);
        tpl_buf_free(&b);
        return ok ? 0 : X_ERR;
    }
    if (IS("tojson")) return tojson_v(r, at, in, &a, out);
    if (IS("default") || IS("d")) {
        static const char *const kw[] = {"default_value", "boolean", NULL};
        if (check_args(r, at, what, &a, 2, kw)) return X_ERR;
        tv *dv = arg(&a, 0, "default_value"), *bo = arg(&a, 1, "boolean");
        bool use = in.kind == TV_UNDEF || (bo && tv_truthy(*bo) && !tv_truthy(in));
        *out = use ? (dv ? *dv : tv_str("", 0)) : in;
        return 0;
    }
    if (IS("length") || IS("count")) {
        if (check_args(r, at, what, &a, 0, NULL)) return X_ERR;
        switch (in.kind) {
        case TV_STR: *out = tv_int((int64_t)u8_count(in.str.s, in.str.n)); return 0;
        case TV_LIST:
            if (in.list->lazy) return fail(r, at, HALO_ERR_FORMAT, "object of type 'generator' has no len()");
            *out = tv_int((int64_t)in.list->n);
            return 0;
        case TV_DICT:
        case TV_NS: *out = tv_int((int64_t)in.dict->n); return 0;
        case TV_UNDEF: *out = tv_int(0); return 0;
        default: return fail(r, at, HALO_ERR_FORMAT, "object of type '%s' has no len()", tv_type_name(in));
        }
    }
    if (IS("trim")) {
        static const char *const kw[] = {"chars", NULL};
        if (check_args(r, at, what, &a, 1, kw)) return X_ERR;
        tv s, *chars = arg(&a, 0, "chars");
        if (chars && chars->kind == TV_NONE) chars = NULL;
        if (chars && need_str(r, at, what, chars)) return X_ERR;
        if (to_string_v(r, in, &s)) return X_ERR;
        *out = str_strip(s, 3, chars);
        return 0;
    }
    if (IS("title")) { /* jinja2's own rule: a word starts after - ( { [ < or whitespace */
        tv s;
        if (check_args(r, at, what, &a, 0, NULL) || to_string_v(r, in, &s)) return X_ERR;
        tpl_buf b = {.limit = r->max_output};
        size_t i = 0;
        bool start = true;
        while (i < s.str.n) {
            size_t from = i;
            int32_t c = u8_next(s.str.s, s.str.n, &i);
            bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_space(c);
            int32_t m = sep ? c : start ? utf8proc_toupper(c) : utf8proc_tolower(c);
            if (m == c) {
                tpl_buf_add(&b, s.str.s + from, i - from);
            } else {
                utf8proc_uint8_t enc[4];
                utf8proc_ssize_t k = utf8proc_encode_char(m, enc);
                tpl_buf_add(&b, (const char *)enc, (size_t)k);
            }
            start = sep;
        }
        bool ok = !b.failed && buf_to_str(r, &b, out);
        if (!ok) b.failed ? buf_fail(r, &b) : oom(r);
        tpl_buf_free(&b);
        return ok ? 0 : X_ERR;
    }
    if (IS("upper") || IS("lower") || IS("capitalize")) {
        tv s;
        if (check_args(r, at, what, &a, 0, NULL) || to_string_v(r, in, &s)) return X_ERR;
        return str_case(r, s, IS("lower") ? 0 : IS("upper") ? 1 : 3, out) ? 0 : oom(r);
    }
    if (IS("replace")) {
        static const char *const kw[] = {"old", "new", "count", NULL};
        if (check_args(r, at, what, &a, 3, kw)) return X_ERR;
        tv s, *o = arg(&a, 0, "old"), *nw = arg(&a, 1, "new"), *c = arg(&a, 2, "count");
        int64_t count = -1;
        if (to_string_v(r, in, &s)) return X_ERR;
        tv os, ns;
        if (!o || !nw) return fail(r, at, HALO_ERR_FORMAT, "filter 'replace' needs old and new");
        if (to_string_v(r, *o, &os) || to_string_v(r, *nw, &ns)) return X_ERR;
        if (c && c->kind != TV_NONE && need_int(r, at, what, c, &count)) return X_ERR;
        return str_replace(r, s, os, ns, count, out);
    }
    if (IS("join")) {
        static const char *const kw[] = {"d", "attribute", NULL};
        if (check_args(r, at, what, &a, 2, kw)) return X_ERR;
        tv *sep = arg(&a, 0, "d"), *attr = arg(&a, 1, "attribute");
        tv seps;
        if (to_string_v(r, sep ? *sep : tv_str("", 0), &seps)) return X_ERR;
        return join_v(r, at, in, seps, attr, out);
    }
    if (IS("items")) {
        if (in.kind == TV_UNDEF) {
            tv_list *l = tv_list_new(&r->arena, 0);
            if (!l) return oom(r);
            *out = (tv){.kind = TV_LIST, .list = l};
            return 0;
        }
        if (in.kind != TV_DICT && in.kind != TV_NS)
            return fail(r, at, HALO_ERR_FORMAT, "filter 'items' needs a mapping, not %s", tv_type_name(in));
        tmethod m = {.self = (tv){.kind = TV_DICT, .dict = in.dict}, .name = "items"};
        args none = {0};
        if (call_method(r, at, &m, &none, out)) return X_ERR;
        out->list->lazy = true;
        return 0;
    }
    if (IS("list")) {
        tv_list *l;
        if (to_list(r, at, in, &l)) return X_ERR;
        if (l->tuple || l->lazy) {
            tv_list *c = tv_list_new(&r->arena, l->n);
            if (!c) return oom(r);
            if (l->n) memcpy(c->items, l->items, l->n * sizeof(tv));
            l = c;
        }
        *out = (tv){.kind = TV_LIST, .list = l};
        return 0;
    }
    if (IS("first") || IS("last")) {
        tv_list *l;
        if (to_list(r, at, in, &l)) return X_ERR;
        if (l->lazy && IS("last")) return fail(r, at, HALO_ERR_FORMAT, "'generator' object is not reversible");
        *out = l->n ? l->items[IS("first") ? 0 : l->n - 1] : undef_msg(r, "no %s item, sequence was empty", name);
        return 0;
    }
    if (IS("reverse")) {
        if (in.kind == TV_STR) {
            tv neg = tv_int(-1);
            return slice_v(r, at, in, tv_none(), tv_none(), neg, out);
        }
        tv_list *l;
        if (to_list(r, at, in, &l)) return X_ERR;
        tv_list *c = tv_list_new(&r->arena, l->n);
        if (!c) return oom(r);
        for (size_t i = 0; i < l->n; i++) c->items[i] = l->items[l->n - 1 - i];
        *out = (tv){.kind = TV_LIST, .list = c};
        return 0;
    }
    if (IS("int") || IS("float")) {
        static const char *const kw[] = {"default", "base", NULL};
        if (check_args(r, at, what, &a, 2, kw)) return X_ERR;
        tv *dv = arg(&a, 0, "default");
        bool is_int = IS("int");
        tv def = dv ? *dv : is_int ? tv_int(0) : tv_float(0.0);
        if (in.kind == TV_UNDEF) return undef_fail(r, at, in);
        switch (in.kind) {
        case TV_INT:
        case TV_BOOL: {
            int64_t i = in.kind == TV_INT ? in.i : in.b;
            *out = is_int ? tv_int(i) : tv_float((double)i);
            return 0;
        }
        case TV_FLOAT:
            if (is_int) {
                if (!isfinite(in.f) || fabs(in.f) >= 9.2e18) *out = def;
                else *out = tv_int((int64_t)in.f);
            } else *out = in;
            return 0;
        case TV_STR: {
            char buf[64];
            if (in.str.n >= sizeof buf) {
                *out = def;
                return 0;
            }
            memcpy(buf, in.str.s, in.str.n);
            buf[in.str.n] = '\0';
            char *end;
            if (is_int) {
                long long v = strtoll(buf, &end, 10);
                while (*end == ' ' || *end == '\t' || *end == '\n') end++;
                if (*end || end == buf) {
                    double d = strtod(buf, &end);
                    while (*end == ' ' || *end == '\t' || *end == '\n') end++;
                    *out = (*end || end == buf || !isfinite(d) || fabs(d) >= 9.2e18) ? def : tv_int((int64_t)d);
                } else *out = tv_int(v);
            } else {
                double d = strtod(buf, &end);
                while (*end == ' ' || *end == '\t' || *end == '\n') end++;
                *out = (*end || end == buf) ? def : tv_float(d);
            }
            return 0;
        }
        default: *out = def; return 0;
        }
    }
    if (IS("abs")) {
        if (in.kind == TV_INT) *out = tv_int(in.i == INT64_MIN ? INT64_MAX : (in.i < 0 ? -in.i : in.i));
        else if (in.kind == TV_FLOAT) *out = tv_float(fabs(in.f));
        else if (in.kind == TV_BOOL) *out = tv_int(in.b);
        else return fail(r, at, HALO_ERR_FORMAT, "bad operand type for abs(): '%s'", tv_type_name(in));
        return 0;
    }
    if (IS("round")) {
        static const char *const kw[] = {"precision", "method", NULL};
        if (check_args(r, at, what, &a, 2, kw)) return X_ERR;
        tv *pr = arg(&a, 0, "precision"), *me = arg(&a, 1, "method");
        int64_t prec = 0;
        if (pr && need_int(r, at, what, pr, &prec)) return X_ERR;
        if (prec > 15) prec = 15;
        if (prec < -15) prec = -15;
        double x = in.kind == TV_FLOAT ? in.f : in.kind == TV_INT ? (double)in.i : in.kind == TV_BOOL ? in.b : NAN;
        if (isnan(x) && in.kind != TV_FLOAT) return fail(r, at, HALO_ERR_FORMAT, "filter 'round' needs a number");
        double m = pow(10.0, (double)prec), y = x * m;
        if (me && me->kind == TV_STR && me->str.n == 4 && !memcmp(me->str.s, "ceil", 4)) y = ceil(y);
        else if (me && me->kind == TV_STR && me->str.n == 5 && !memcmp(me->str.s, "floor", 5)) y = floor(y);
        else y = nearbyint(y); /* Python rounds half to even */
        /* Python's round() of an int stays an int */
        *out = (in.kind == TV_INT || in.kind == TV_BOOL) && prec >= 0 ? tv_int(in.kind == TV_INT ? in.i : in.b)
                                                                    : tv_float(y / m);
        return 0;
    }
    if (IS("batch")) {
        static const char *const kw[] = {"linecount", "fill_with", NULL};
        if (check_args(r, at, what, &a, 2, kw)) return X_ERR;
        tv *lc = arg(&a, 0, "linecount"), *fill = arg(&a, 1, "fill_with");
        int64_t size;
        if (need_int(r, at, what, lc, &size)) return X_ERR;
        if (size <= 0) return fail(r, at, HALO_ERR_FORMAT, "filter 'batch' needs a positive size");
        tv_list *l;
        if (to_list(r, at, in, &l)) return X_ERR;
        size_t nb = (l->n + (size_t)size - 1) / (size_t)size;
        tv_list *res = tv_list_new(&r->arena, nb);
        if (!res) return oom(r);
        for (size_t b = 0; b < nb; b++) {
            size_t from = b * (size_t)size, cnt = l->n - from < (size_t)size ? l->n - from : (size_t)size;
            size_t want = fill && fill->kind != TV_NONE ? (size_t)size : cnt;
            tv_list *part = tv_list_new(&r->arena, want);
            if (!part) return oom(r);
            for (size_t k = 0; k < want; k++) part->items[k] = k < cnt ? l->items[from + k] : *fill;
            res->items[b] = (tv){.kind = TV_LIST, .list = part};
        }
        res->lazy = true;
        *out = (tv){.kind = TV_LIST, .list = res};
        return 0;
    }
    if (IS("map")) {
        tv_list *l;
        if (to_list(r, at, in, &l)) return X_ERR;
        tv_list *res = tv_list_new(&r->arena, l->n);
        if (!res) return oom(r);
        tv *attr = NULL, *dflt = NULL;
        for (int k = 0; k < nkw; k++) {
            if (!strcmp(kwn[k], "attribute")) attr = &kwv[k];
            else if (!strcmp(kwn[k], "default")) dflt = &kwv[k];
        }
        if (!attr && (npos < 1 || pos[0].kind != TV_STR))
            return fail(r, at, HALO_ERR_FORMAT, "filter 'map' needs attribute= or a filter name");
        char fname[64] = "";
        if (!attr) snprintf(fname, sizeof fname, "%.*s", (int)(pos[0].str.n < 60 ? pos[0].str.n : 60), pos[0].str.s);
        for (size_t i = 0; i < l->n; i++) {
            if (attr) {
                if (attr_path(r, at, l->items[i], *attr, &res->items[i])) return X_ERR;
                if (res->items[i].kind == TV_UNDEF && dflt) res->items[i] = *dflt;
            } else if (apply_filter(r, at, fname, l->items[i], pos + 1, npos - 1, kwn, kwv, nkw, &res->items[i])) {
                return X_ERR;
            }
        }
        res->lazy = true;
        *out = (tv){.kind = TV_LIST, .list = res};
        return 0;
    }
    if (IS("select") || IS("reject")) return select_items(r, at, in, &a, false, IS("select"), out);
    if (IS("selectattr") || IS("rejectattr")) return select_items(r, at, in, &a, true, IS("selectattr"), out);
    if (IS("sort") || IS("dictsort")) {
        static const char *const kw[] = {"reverse", "case_sensitive", "attribute", "by", NULL};
        if (check_args(r, at, what, &a, 3, kw)) return X_ERR;
        sort_ctx c = {.pair_index = -1};
        tv_list *l;
        if (IS("sort")) {
            tv *rv = arg(&a, 0, "reverse"), *cs = arg(&a, 1, "case_sensitive"), *attr = arg(&a, 2, "attribute");
            c.reverse = rv && tv_truthy(*rv);
            c.fold = !(cs && tv_truthy(*cs));
            c.attribute = attr && attr->kind != TV_NONE ? attr : NULL;
            if (to_list(r, at, in, &l)) return X_ERR;
        } else {
            tv *cs = arg(&a, 0, "case_sensitive"), *by = arg(&a, 1, "by"), *rv = arg(&a, 2, "reverse");
            c.reverse = rv && tv_truthy(*rv);
            c.fold = !(cs && tv_truthy(*cs));
            c.pair_index = by && by->kind == TV_STR && by->str.n == 5 && !memcmp(by->str.s, "value", 5) ? 1 : 0;
            if (in.kind != TV_DICT) return fail(r, at, HALO_ERR_FORMAT, "filter 'dictsort' needs a dict");
            tmethod m = {.self = in, .name = "items"};
            args none = {0};
            tv items;
            if (call_method(r, at, &m, &none, &items)) return X_ERR;
            l = items.list;
        }
        tv_list *res = NULL;
        if (sorted_copy(r, at, l, &c, &res)) return X_ERR;
        *out = (tv){.kind = TV_LIST, .list = res};
        return 0;
    }
    if (IS("unique")) {
        tv_list *l;
        if (to_list(r, at, in, &l)) return X_ERR;
        tv_list *res = tv_list_new(&r->arena, l->n);
        if (!res) return oom(r);
        res->n = 0;
        for (size_t i = 0; i < l->n; i++) {
            bool seen = false;
            for (size_t j = 0; j < res->n && !seen; j++) seen = tv_equal(res->items[j], l->items[i]);
            if (!seen) res->items[res->n++] = l->items[i];
        }
        res->lazy = true;
        *out = (tv){.kind = TV_LIST, .list = res};
        return 0;
    }
    if (IS("min") || IS("max")) {
        static const char *const kw[] = {"case_sensitive", "attribute", NULL};
        if (check_args(r, at, what, &a, 2, kw)) return X_ERR;
        tv *cs = arg(&a, 0, "case_sensitive"), *attr = arg(&a, 1, "attribute");
        tv_list *l;
        if (to_list(r, at, in, &l)) return X_ERR;
        if (!l->n) {
            *out = undef_msg(r, "no %s item, sequence was empty", name);
            return 0;
        }
        sort_ctx c = {.r = r, .at = at, .fold = !(cs && tv_truthy(*cs)), .pair_index = -1, .attribute = attr};
        tv best = l->items[0];
        for (size_t i = 1; i < l->n; i++) {
            int cmp = sort_cmp(&c, l->items[i], best);
            if (c.err) return X_ERR;
            if (IS("min") ? cmp < 0 : cmp > 0) best = l->items[i];
        }
        *out = best;
        return 0;
    }
    if (IS("sum")) {
        static const char *const kw[] = {"attribute", "start", NULL};
        if (check_args(r, at, what, &a, 2, kw)) return X_ERR;
        tv *attr = arg(&a, 0, "attribute"), *start = arg(&a, 1, "start");
        tv_list *l;
        if (to_list(r, at, in, &l)) return X_ERR;
        tv acc = start ? *start : tv_int(0);
        for (size_t i = 0; i < l->n; i++) {
            tv v = l->items[i];
            if (attr && attr_path(r, at, v, *attr, &v)) return X_ERR;
            if (binary(r, at, TOP_ADD, acc, v, &acc)) return X_ERR;
        }
        *out = acc;
        return 0;
    }
    if (IS("attr")) {
        if (npos != 1 || need_str(r, at, what, &pos[0])) return X_ERR;
        /* attributes only: a dict's items are not its attributes */
        char an[64];
        snprintf(an, sizeof an, "%.*s", (int)(pos[0].str.n < 60 ? pos[0].str.n : 60), pos[0].str.s);
        if (in.kind == TV_DICT && !is_method(in, an)) {
            *out = undef_msg(r, "'dict object' has no attribute '%.*s'", (int)(pos[0].str.n < 100 ? pos[0].str.n : 100),
                             pos[0].str.s);
            return 0;
        }
        return getattr_v(r, at, in, pos[0].str.s, pos[0].str.n, out);
    }
    if (IS("wordcount")) {
        tv s, words;
        if (to_string_v(r, in, &s) || str_split(r, at, s, NULL, -1, false, &words)) return X_ERR;
        *out = tv_int((int64_t)words.list->n);
        return 0;
    }
    if (IS("indent")) {
        static const char *const kw[] = {"width", "first", "blank", NULL};
        if (check_args(r, at, what, &a, 3, kw)) return X_ERR;
        tv *w = arg(&a, 0, "width"), *fi = arg(&a, 1, "first"), *bl = arg(&a, 2, "blank");
        tv s, pad = tv_str("    ", 4);
        if (to_string_v(r, in, &s)) return X_ERR;
        if (w && w->kind == TV_STR) pad = *w;
        else if (w) {
            int64_t n;
            if (need_int(r, at, what, w, &n)) return X_ERR;
            if (repeat(r, at, tv_str(" ", 1), n > 256 ? 256 : n, &pad)) return X_ERR;
        }
        bool first = fi && tv_truthy(*fi), blank = bl && tv_truthy(*bl);
        tpl_buf b = {.limit = r->max_output};
        size_t start = 0;
        bool first_line = true;
        for (size_t i = 0; i <= s.str.n; i++) {
            if (i < s.str.n && s.str.s[i] != '\n') continue;
            size_t len = i - start;
            bool empty = len == 0;
            if (!first_line) tpl_buf_addc(&b, '\n');
            if ((first_line ? first : true) && (blank || !empty) && !(first_line && !first)) tpl_buf_add(&b, pad.str.s, pad.str.n);
            tpl_buf_add(&b, s.str.s + start, len);
            first_line = false;
            start = i + 1;
        }
        bool ok = !b.failed && buf_to_str(r, &b, out);
        if (!ok) b.failed ? buf_fail(r, &b) : oom(r);
        tpl_buf_free(&b);
        return ok ? 0 : X_ERR;
    }
#undef IS
    return fail(r, at, HALO_ERR_UNSUPPORTED, "unknown filter '%s'", name);
}

static int apply_test(R *r, const tnode *at, const char *name, tv in, tv *pos, int npos, bool *out) {
#define IS(x) (!strcmp(name, x))
    if (IS("defined")) *out = in.kind != TV_UNDEF;
    else if (IS("undefined")) *out = in.kind == TV_UNDEF;
    else if (IS("none")) *out = in.kind == TV_NONE;
    else if (IS("boolean")) *out = in.kind == TV_BOOL;
    else if (IS("true")) *out = in.kind == TV_BOOL && in.b;
    else if (IS("false")) *out = in.kind == TV_BOOL && !in.b;
    else if (IS("integer")) *out = in.kind == TV_INT;
    else if (IS("float")) *out = in.kind == TV_FLOAT;
    else if (IS("number")) *out = in.kind == TV_INT || in.kind == TV_FLOAT || in.kind == TV_BOOL;
    else if (IS("string")) *out = in.kind == TV_STR;
    else if (IS("mapping")) *out = in.kind == TV_DICT;
    else if (IS("iterable")) *out = in.kind == TV_LIST || in.kind == TV_DICT || in.kind == TV_STR || in.kind == TV_UNDEF;
    else if (IS("sequence")) *out = in.kind == TV_LIST || in.kind == TV_DICT || in.kind == TV_STR || in.kind == TV_UNDEF;
    else if (IS("callable")) *out = in.kind == TV_MACRO || in.kind == TV_BUILTIN || in.kind == TV_METHOD ||
                                    (in.kind == TV_LOOP && ((tloop *)in.ptr)->node->flag);
    else if (IS("escaped")) *out = false;
    else if (IS("lower") || IS("upper")) { /* str(value).islower() / isupper() */
        tv s, res;
        args none = {0};
        if (to_string_v(r, in, &s) || call_str_method(r, at, s, IS("lower") ? "islower" : "isupper", &none, &res))
            return X_ERR;
        *out = res.b;
    } else if (IS("odd") || IS("even") || IS("divisibleby")) {
        int64_t v, d = IS("divisibleby") ? 0 : 2;
        if (in.kind == TV_FLOAT || (npos == 1 && pos[0].kind == TV_FLOAT)) { /* Python: value % d */
            double x = in.kind == TV_FLOAT ? in.f : in.kind == TV_INT ? (double)in.i : in.kind == TV_BOOL ? in.b : NAN;
            double dd = !IS("divisibleby") ? 2.0
                        : npos != 1 ? NAN
                        : pos[0].kind == TV_FLOAT ? pos[0].f
                        : pos[0].kind == TV_INT ? (double)pos[0].i
                                                : NAN;
            if (isnan(x) || isnan(dd)) return fail(r, at, HALO_ERR_FORMAT, "test '%s' needs numbers", name);
            if (dd == 0) return fail(r, at, HALO_ERR_FORMAT, "float modulo");
            double m = fmod(x, dd);
            if (m != 0 && ((m < 0) != (dd < 0))) m += dd;
            *out = IS("odd") ? m == 1.0 : m == 0.0;
            return 0;
        }
        if (need_int(r, at, name, &in, &v)) return X_ERR;
        if (IS("divisibleby") && (npos != 1 || need_int(r, at, name, &pos[0], &d))) return X_ERR;
        if (d == 0) return fail(r, at, HALO_ERR_FORMAT, "division by zero");
        int64_t m = d == -1 ? 0 : v % d;
        *out = IS("odd") ? m != 0 : m == 0;
    } else if (IS("eq") || IS("equalto") || IS("==") || IS("ne") || IS("!=") || IS("sameas")) {
        if (npos != 1) return fail(r, at, HALO_ERR_FORMAT, "test '%s' takes one argument", name);
        bool eq = tv_equal(in, pos[0]);
        if (IS("sameas")) eq = eq && in.kind == pos[0].kind;
        *out = (IS("ne") || IS("!=")) ? !eq : eq;
    } else if (IS("lt") || IS("lessthan") || IS("<") || IS("le") || IS("<=") || IS("gt") || IS("greaterthan") ||
               IS(">") || IS("ge") || IS(">=")) {
        if (npos != 1) return fail(r, at, HALO_ERR_FORMAT, "test '%s' takes one argument", name);
        int c;
        if (compare(r, at, in, pos[0], &c, false)) return X_ERR;
        if (IS("lt") || IS("lessthan") || IS("<")) *out = c < 0;
        else if (IS("le") || IS("<=")) *out = c <= 0;
        else if (IS("gt") || IS("greaterthan") || IS(">")) *out = c > 0;
        else *out = c >= 0;
    } else if (IS("in")) {
        if (npos != 1) return fail(r, at, HALO_ERR_FORMAT, "test 'in' takes one argument");
        return contains(r, at, pos[0], in, out);
    } else {
        return fail(r, at, HALO_ERR_UNSUPPORTED, "unknown test '%s'", name);
    }
#undef IS
    return 0;
}

/* ---- expressions ---------------------------------------------------------------------------- */

static int eval_args(R *r, scope *s, const tnode *n, tv **pos, tv **kwv) {
    *pos = *kwv = NULL;
    if (n->nv) {
        *pos = tpl_alloc_array(&r->arena, (size_t)n->nv, sizeof(tv));
        if (!*pos) return oom(r);
        for (int k = 0; k < n->nv; k++)
            if (ev(r, s, n->v[k], &(*pos)[k])) return X_ERR;
    }
    if (n->nw) {
        *kwv = tpl_alloc_array(&r->arena, (size_t)n->nw, sizeof(tv));
        if (!*kwv) return oom(r);
        for (int k = 0; k < n->nw; k++)
            if (ev(r, s, n->w[k], &(*kwv)[k])) return X_ERR;
    }
    return 0;
}

static int eval_call(R *r, scope *s, const tnode *n, tv caller, tv *out) {
    tv callee, *pos, *kwv;
    if (ev(r, s, n->a, &callee)) return X_ERR;
    if (callee.kind == TV_UNDEF) {
        /* name the function that is missing */
        if (n->a->kind == N_NAME) return fail(r, n, HALO_ERR_FORMAT, "'%s' is undefined", n->a->name);
        return undef_fail(r, n, callee);
    }
    if (eval_args(r, s, n, &pos, &kwv)) return X_ERR;
    return call_value(r, s, n, callee, pos, n->nv, n->names, kwv, n->nw, caller, out);
}

static int ev_inner(R *r, scope *s, const tnode *n, tv *out) {
    switch (n->kind) {
    case N_LIT: *out = n->lit; return 0;
    case N_NAME:
        if (!lookup(r, s, n->name, out)) *out = undef_msg(r, "'%s' is undefined", n->name);
        return 0;
    case N_LIST:
    case N_TUPLE: {
        tv_list *l = tv_list_new(&r->arena, (size_t)n->nv);
        if (!l) return oom(r);
        l->tuple = n->kind == N_TUPLE;
        for (int k = 0; k < n->nv; k++)
            if (ev(r, s, n->v[k], &l->items[k])) return X_ERR;
        *out = (tv){.kind = TV_LIST, .list = l};
        return 0;
    }
    case N_DICT: {
        tv_dict *d = tv_dict_new(&r->arena, (size_t)n->nv);
        if (!d) return oom(r);
        for (int k = 0; k < n->nv; k++) {
            tv key, val;
            if (ev(r, s, n->v[k], &key) || ev(r, s, n->w[k], &val)) return X_ERR;
            if (key.kind == TV_LIST || key.kind == TV_DICT || key.kind == TV_NS)
                return fail(r, n->v[k], HALO_ERR_FORMAT, "unhashable type: '%s'", tv_type_name(key));
            if (!tv_dict_set(&r->arena, d, key, val)) return oom(r);
        }
        *out = (tv){.kind = TV_DICT, .dict = d};
        return 0;
    }
    case N_GETATTR: {
        tv obj;
        if (ev(r, s, n->a, &obj)) return X_ERR;
        return getattr_v(r, n, obj, n->name, strlen(n->name), out);
    }
    case N_GETITEM: {
        tv obj, key;
        if (ev(r, s, n->a, &obj) || ev(r, s, n->b, &key)) return X_ERR;
        return getitem_v(r, n, obj, key, out);
    }
    case N_SLICE: {
        tv obj, a = tv_none(), b = tv_none(), c = tv_none();
        if (ev(r, s, n->a, &obj) || (n->b && ev(r, s, n->b, &a)) || (n->c && ev(r, s, n->c, &b)) ||
            (n->d && ev(r, s, n->d, &c)))
            return X_ERR;
        return slice_v(r, n, obj, a, b, c, out);
    }
    case N_CALL: return eval_call(r, s, n, tv_undef(), out);
    case N_FILTER: {
        tv in, *pos, *kwv;
        if (n->a) {
            if (ev(r, s, n->a, &in)) return X_ERR;
        } else {
            in = r->filter_input;
        }
        if (eval_args(r, s, n, &pos, &kwv)) return X_ERR;
        return apply_filter(r, n, n->name, in, pos, n->nv, n->names, kwv, n->nw, out);
    }
    case N_TEST: {
        tv in, *pos, *kwv;
        bool res;
        if (ev(r, s, n->a, &in) || eval_args(r, s, n, &pos, &kwv)) return X_ERR;
        if (n->nw) return fail(r, n, HALO_ERR_FORMAT, "tests take no keyword arguments");
        if (apply_test(r, n, n->name, in, pos, n->nv, &res)) return X_ERR;
        *out = tv_bool(n->flag ? !res : res);
        return 0;
    }
    case N_NEG:
    case N_POS: {
        tv a;
        if (ev(r, s, n->a, &a)) return X_ERR;
        if (a.kind == TV_INT || a.kind == TV_BOOL) {
            int64_t i = a.kind == TV_INT ? a.i : a.b;
            if (n->kind == N_NEG && i == INT64_MIN) return fail(r, n, HALO_ERR_RANGE, "integer overflow");
            *out = tv_int(n->kind == N_NEG ? -i : i);
        } else if (a.kind == TV_FLOAT) {
            *out = tv_float(n->kind == N_NEG ? -a.f : a.f);
        } else if (a.kind == TV_UNDEF) {
            return undef_fail(r, n, a);
        } else {
            return fail(r, n, HALO_ERR_FORMAT, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+',
                        tv_type_name(a));
        }
        return 0;
    }
    case N_NOT: {
        tv a;
        if (ev(r, s, n->a, &a)) return X_ERR;
        *out = tv_bool(!tv_truthy(a));
        return 0;
    }
    case N_AND:
    case N_OR: {
        tv a;
        if (ev(r, s, n->a, &a)) return X_ERR;
        if (tv_truthy(a) == (n->kind == N_OR)) {
            *out = a;
            return 0;
        }
        return ev(r, s, n->b, out);
    }
    case N_BINARY: {
        tv a, b;
        if (ev(r, s, n->a, &a) || ev(r, s, n->b, &b)) return X_ERR;
        return binary(r, n, n->op, a, b, out);
    }
    case N_COMPARE: {
        tv left;
        if (ev(r, s, n->a, &left)) return X_ERR;
        for (int k = 0; k < n->nv; k++) {
            tv right;
            if (ev(r, s, n->v[k], &right)) return X_ERR;
            bool res;
            int op = n->ops[k];
            if (op == TOP_EQ || op == TOP_NE) {
                res = tv_equal(left, right) == (op == TOP_EQ);
            } else if (op == TOP_IN || op == TOP_NOTIN) {
                if (contains(r, n, right, left, &res)) return X_ERR;
                if (op == TOP_NOTIN) res = !res;
            } else {
                int c;
                if (compare(r, n, left, right, &c, false)) return X_ERR;
                res = op == TOP_LT ? c < 0 : op == TOP_LE ? c <= 0 : op == TOP_GT ? c > 0 : c >= 0;
            }
            if (!res) {
                *out = tv_bool(false);
                return 0;
            }
            left = right;
        }
        *out = tv_bool(true);
        return 0;
    }
    case N_COND: {
        tv c;
        if (ev(r, s, n->a, &c)) return X_ERR;
        if (tv_truthy(c)) return ev(r, s, n->b, out);
        if (n->c) return ev(r, s, n->c, out);
        *out = undef_msg(r, "the inline if-expression evaluated to false and no else section was defined");
        return 0;
    }
    default: return fail(r, n, HALO_ERR_FORMAT, "not an expression");
    }
}

static int ev(R *r, scope *s, const tnode *n, tv *out) {
    if (!step(r, n)) return X_ERR;
    if (++r->nest > MAX_NEST_EVAL) return fail(r, n, HALO_ERR_RANGE, "evaluation nested too deeply");
    int rc = ev_inner(r, s, n, out);
    r->nest--;
    return rc;
}

/* ---- statements ------------------------------------------------------------------------------ */

static int assign(R *r, scope *s, const tnode *target, tv v) {
    if (target->kind == N_NAME) return scope_set(r, s, target->name, v) ? 0 : oom(r);
    if (target->kind == N_GETATTR) {
        tv ns;
        if (!lookup(r, s, target->a->name, &ns) || ns.kind != TV_NS)
            return fail(r, target, HALO_ERR_FORMAT, "can only assign attributes of a namespace ('%s' is %s)",
                        target->a->name, ns.kind == TV_NS ? "one" : "not");
        return tv_dict_set(&r->arena, ns.dict, tv_str(target->name, strlen(target->name)), v) ? 0 : oom(r);
    }
    /* tuple unpacking */
    tv_list *l;
    if (v.kind == TV_LIST) l = v.list;
    else if (to_list(r, target, v, &l)) return X_ERR;
    if (l->n != (size_t)target->nv)
        return fail(r, target, HALO_ERR_FORMAT, "%s values to unpack (expected %d, got %zu)",
                    l->n > (size_t)target->nv ? "too many" : "not enough", target->nv, l->n);
    for (int k = 0; k < target->nv; k++)
        if (assign(r, s, target->v[k], l->items[k])) return X_ERR;
    return 0;
}

static int emit_value(R *r, tpl_buf *out, tv v) {
    if (v.kind == TV_STR) tpl_buf_add(out, v.str.s, v.str.n);
    else tv_to_str(out, v);
    return out->failed ? buf_fail(r, out) : 0;
}

static int exec_for(R *r, scope *s, const tnode *n, tv iterable, int depth0, tpl_buf *out) {
    tv_list *items;
    if (iterable.kind == TV_NS) return fail(r, n->b, HALO_ERR_FORMAT, "'Namespace' object is not iterable");
    if (to_list(r, n->b, iterable, &items)) return X_ERR;
    scope *ls = scope_new(r, s);
    tloop *L = tpl_alloc(&r->arena, sizeof *L);
    if (!ls || !L) return oom(r);
    if (n->c) { /* `for x in xs if cond`: filter first, loop.length counts what is left */
        tv_list *kept = tv_list_new(&r->arena, items->n);
        if (!kept) return oom(r);
        kept->n = 0;
        for (size_t i = 0; i < items->n; i++) {
            tv c;
            if (!step(r, n) || assign(r, ls, n->a, items->items[i]) || ev(r, ls, n->c, &c)) return X_ERR;
            if (tv_truthy(c)) kept->items[kept->n++] = items->items[i];
        }
        items = kept;
    }
    L->items = items;
    L->depth0 = depth0;
    L->node = n;
    L->outer = s;
    tv loopv = {.kind = TV_LOOP, .ptr = L};
    for (size_t i = 0; i < items->n; i++) {
        if (!step(r, n)) return X_ERR;
        L->index0 = i;
        ls->vars->n = 0; /* what the body sets lives for one iteration, as in jinja2 */
        if (assign(r, ls, n->a, items->items[i])) return X_ERR;
        if (!scope_set(r, ls, "loop", loopv)) return oom(r);
        int rc = exec_body(r, ls, n->v, n->nv, out);
        if (rc == X_ERR) return X_ERR;
        if (rc == X_BREAK) break;
    }
    if (items->n == 0 && n->nw) return exec_body(r, s, n->w, n->nw, out);
    return X_OK;
}

static int exec_node(R *r, scope *s, const tnode *n, tpl_buf *out) {
    if (!step(r, n)) return X_ERR;
    switch (n->kind) {
    case N_TEXT:
        tpl_buf_add(out, n->lit.str.s, n->lit.str.n);
        return out->failed ? buf_fail(r, out) : X_OK;
    case N_OUTPUT: {
        tv v;
        if (ev(r, s, n->a, &v)) return X_ERR;
        return emit_value(r, out, v);
    }
    case N_IF: {
        tv c;
        if (ev(r, s, n->a, &c)) return X_ERR;
        return tv_truthy(c) ? exec_body(r, s, n->v, n->nv, out) : exec_body(r, s, n->w, n->nw, out);
    }
    case N_FOR: {
        tv it;
        if (ev(r, s, n->b, &it)) return X_ERR;
        return exec_for(r, s, n, it, 0, out);
    }
    case N_SET: {
        tv v;
        if (n->b) {
            if (ev(r, s, n->b, &v)) return X_ERR;
        } else { /* block set: the body renders in a scope of its own */
            tpl_buf b = {.limit = r->max_output};
            scope *bs = scope_new(r, s);
            int rc = bs ? exec_body(r, bs, n->v, n->nv, &b) : oom(r);
            if (rc == X_BREAK || rc == X_CONTINUE) { /* leaves the loop before the assignment */
                tpl_buf_free(&b);
                return rc;
            }
            if (rc == X_ERR || (b.failed && buf_fail(r, &b)) || !buf_to_str(r, &b, &v)) {
                tpl_buf_free(&b);
                return r->err->status ? X_ERR : oom(r);
            }
            tpl_buf_free(&b);
            if (n->c) {
                r->filter_input = v;
                if (ev(r, s, n->c, &v)) return X_ERR;
            }
        }
        return assign(r, s, n->a, v);
    }
    case N_MACRO: {
        tmacro *m = tpl_alloc(&r->arena, sizeof *m);
        if (!m) return oom(r);
        m->def = n;
        m->closure = s;
        return scope_set(r, s, n->name, (tv){.kind = TV_MACRO, .ptr = m}) ? X_OK : oom(r);
    }
    case N_CALLBLOCK: {
        tmacro *m = tpl_alloc(&r->arena, sizeof *m);
        if (!m) return oom(r);
        m->def = n;
        m->closure = s;
        tv v;
        if (eval_call(r, s, n->a, (tv){.kind = TV_MACRO, .ptr = m}, &v)) return X_ERR;
        return emit_value(r, out, v);
    }
    case N_FILTERBLOCK: {
        tpl_buf b = {.limit = r->max_output};
        tv v;
        scope *fs = scope_new(r, s);
        int rc = fs ? exec_body(r, fs, n->v, n->nv, &b) : oom(r);
        if (rc == X_BREAK || rc == X_CONTINUE) {
            tpl_buf_free(&b);
            return rc;
        }
        if (rc == X_ERR || (b.failed && buf_fail(r, &b)) || !buf_to_str(r, &b, &v)) {
            tpl_buf_free(&b);
            return r->err->status ? X_ERR : oom(r);
        }
        tpl_buf_free(&b);
        r->filter_input = v;
        if (ev(r, s, n->a, &v)) return X_ERR;
        return emit_value(r, out, v);
    }
    case N_WITH: {
        scope *ws = scope_new(r, s);
        if (!ws) return oom(r);
        for (int k = 0; k < n->nw; k++) {
            tv v;
            if (ev(r, s, n->w[k], &v)) return X_ERR;
            if (!scope_set(r, ws, n->names[k], v)) return oom(r);
        }
        return exec_body(r, ws, n->v, n->nv, out);
    }
    case N_BREAK: return X_BREAK;
    case N_CONTINUE: return X_CONTINUE;
    default: return fail(r, n, HALO_ERR_FORMAT, "not a statement");
    }
}

static int exec_body(R *r, scope *s, tnode *const *body, int n, tpl_buf *out) {
    if (++r->nest > MAX_NEST_EVAL) return fail(r, n ? body[0] : NULL, HALO_ERR_RANGE, "evaluation nested too deeply");
    int rc = X_OK;
    for (int k = 0; k < n && rc == X_OK; k++) rc = exec_node(r, s, body[k], out);
    r->nest--;
    return rc;
}

/* ---- public API ------------------------------------------------------------------------------- */

int halo_template_compile(const char *src, size_t len, halo_template **out, halo_error *err) {
    *out = NULL;
    halo_template *t = calloc(1, sizeof *t);
    if (!t) return halo_error_set(err, HALO_ERR_NOMEM, "template: out of memory");
    int rc = tpl_parse(t, src, len, err);
    if (rc) {
        halo_template_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void halo_template_free(halo_template *t) {
    if (!t) return;
    tpl_arena_free(&t->arena);
    free(t);
}

int halo_template_render(const halo_template *t, const cJSON *context, const halo_template_options *opts,
                         char **out, size_t *out_len, halo_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    halo_template_options o = {0};
    if (opts) o = *opts;
    R r = {.err = err, .tpl = t};
    r.arena.limit = o.max_memory ? o.max_memory : HALO_TEMPLATE_DEFAULT_MAX_MEMORY;
    r.max_output = o.max_output ? o.max_output : HALO_TEMPLATE_DEFAULT_MAX_OUTPUT;
    r.max_steps = o.max_steps ? o.max_steps : HALO_TEMPLATE_DEFAULT_MAX_STEPS;
    r.max_depth = o.max_depth > 0 ? o.max_depth : HALO_TEMPLATE_DEFAULT_MAX_DEPTH;
    r.now = o.now ? o.now : (int64_t)time(NULL);
    int rc = 0;
    tv ctx;
    if (context && !cJSON_IsObject(context)) {
        rc = halo_error_set(err, HALO_ERR_ARG, "template: the context must be a JSON object");
        goto done;
    }
    if (context) {
        if (!tv_from_json(&r.arena, context, &ctx, 0)) {
            rc = r.arena.used + 65536 >= r.arena.limit
                     ? halo_error_set(err, HALO_ERR_RANGE, "template: the context exceeds %zu bytes of memory", r.arena.limit)
                     : halo_error_set(err, HALO_ERR_ARG, "template: the context is nested too deeply or out of memory");
            goto done;
        }
        r.context = ctx.dict;
    } else {
        r.context = tv_dict_new(&r.arena, 0);
    }
    r.globals = scope_new(&r, NULL);
    if (!r.context || !r.globals) {
        rc = halo_error_set(err, HALO_ERR_NOMEM, "template: out of memory");
        goto done;
    }
    tpl_buf b = {.limit = r.max_output};
    int x = exec_body(&r, r.globals, t->body, t->n_body, &b);
    if (x == X_ERR || b.failed) {
        if (!err->status) buf_fail(&r, &b);
        tpl_buf_free(&b);
        rc = err->status ? err->status : HALO_ERR_FORMAT;
        goto done;
    }
    if (!b.p) {
        b.p = malloc(1);
        if (!b.p) {
            rc = halo_error_set(err, HALO_ERR_NOMEM, "template: out of memory");
            goto done;
        }
        b.p[0] = '\0';
    }
    *out = b.p;
    if (out_len) *out_len = b.n;
done:
    tpl_arena_free(&r.arena);
    return rc;
}
