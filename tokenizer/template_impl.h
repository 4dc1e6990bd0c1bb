/*
 * Internals of the chat-template engine (tokenizer/template*.c): the arena, the
 * syntax tree the parser builds, and the value type the evaluator works on.
 *
 * template_parse.c: source text -> tokens -> syntax tree (owned by the template's
 *                   arena, read-only afterwards: one template may render on many
 *                   threads at once).
 * template_eval.c:  syntax tree + context -> text, with a fresh arena per render.
 * template_value.c: values: cJSON conversion, Python-style str()/repr(), json.dumps.
 */
#ifndef HALO_TEMPLATE_IMPL_H
#define HALO_TEMPLATE_IMPL_H

#include "halo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- arena: every allocation of a parse or a render, freed at once ---------- */

typedef struct tpl_chunk tpl_chunk;
typedef struct tpl_arena {
    tpl_chunk *head;
    size_t used;  /* bytes handed out so far, for the memory limit */
    size_t limit; /* 0: none */
    bool hit_limit; /* an allocation failed for the limit, not for malloc */
} tpl_arena;

/* NULL when out of memory or over the limit (an overflowing size included). */
void *tpl_alloc(tpl_arena *a, size_t size);
void *tpl_alloc_array(tpl_arena *a, size_t n, size_t size);
char *tpl_strdup(tpl_arena *a, const char *s, size_t n); /* NUL-terminated copy */
void tpl_arena_free(tpl_arena *a);

/* ---- growable byte buffer (malloc'd) --------------------------------------- */

typedef struct tpl_buf {
    char *p;
    size_t n, cap;
    size_t limit; /* 0: none; exceeding it fails */
    bool failed;  /* an append failed (out of memory or over the limit) */
} tpl_buf;

bool tpl_buf_add(tpl_buf *b, const char *s, size_t n);
bool tpl_buf_addc(tpl_buf *b, char c);
bool tpl_buf_addf(tpl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tpl_buf_free(tpl_buf *b);

/* ---- values ---------------------------------------------------------------- */

typedef enum tv_kind {
    TV_UNDEF = 0, /* jinja2's Undefined: falsy, prints as "" */
    TV_NONE,
    TV_BOOL,
    TV_INT,
    TV_FLOAT,
    TV_STR,
    TV_LIST,    /* list or tuple (list->tuple) */
    TV_DICT,    /* insertion-ordered */
    TV_NS,      /* namespace(): a dict whose attributes `set` may assign */
    TV_MACRO,   /* a macro, or a call block's caller() */
    TV_BUILTIN, /* a global function: range, namespace, raise_exception, ... */
    TV_METHOD,  /* a bound method of a str / dict / list ('abc'.upper) */
    TV_LOOP,    /* the `loop` object of a for loop */
} tv_kind;

typedef struct tv tv;
typedef struct tv_list tv_list;
typedef struct tv_dict tv_dict;

struct tv {
    uint32_t kind;
    uint32_t aux; /* TV_BUILTIN: which; TV_METHOD: which */
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *s; /* TV_STR text; TV_UNDEF: the name, for messages (may be NULL) */
            size_t n;
        } str;
        tv_list *list;
        tv_dict *dict;
        void *ptr; /* TV_MACRO, TV_METHOD, TV_LOOP */
    };
};

struct tv_list {
    size_t n;
    bool tuple;
    /* made by a filter that jinja2 implements as a generator (map, select, reject,
     * selectattr, rejectattr, unique, items, batch): always true, no length, not
     * reversible, not JSON; iterating it works */
    bool lazy;
    tv *items;
};

struct tv_dict {
    size_t n, cap;
    tv *keys;
    tv *vals;
};

static inline tv tv_undef(void) { return (tv){.kind = TV_UNDEF}; }
static inline tv tv_none(void) { return (tv){.kind = TV_NONE}; }
static inline tv tv_bool(bool b) { return (tv){.kind = TV_BOOL, .b = b}; }
static inline tv tv_int(int64_t i) { return (tv){.kind = TV_INT, .i = i}; }
static inline tv tv_float(double f) { return (tv){.kind = TV_FLOAT, .f = f}; }
static inline tv tv_str(const char *s, size_t n) { return (tv){.kind = TV_STR, .str = {s, n}}; }

bool tv_truthy(tv v);
bool tv_equal(tv a, tv b);
/* Lookup of a key in a dict, NULL if absent. */
tv *tv_dict_find(tv_dict *d, tv key);
tv *tv_dict_find_str(tv_dict *d, const char *s, size_t n);
/* Set (replace or append). false when out of memory. */
bool tv_dict_set(tpl_arena *a, tv_dict *d, tv key, tv val);
tv_dict *tv_dict_new(tpl_arena *a, size_t cap);
tv_list *tv_list_new(tpl_arena *a, size_t n);

/* From cJSON (numbers without fraction or exponent that fit 2^53 become ints). */
struct cJSON;
bool tv_from_json(tpl_arena *a, const struct cJSON *j, tv *out, int depth);

/* Python str() (as printed by {{ }}) and repr(). false when the buffer fails. */
bool tv_to_str(tpl_buf *b, tv v);
bool tv_repr(tpl_buf *b, tv v);
/* json.dumps(v, ensure_ascii, indent (<0: none), separators, sort_keys). Writes a
 * message into why (size 128) and returns false for a value JSON cannot hold. */
typedef struct tv_json_opts {
    bool ensure_ascii;
    int indent;         /* <0: single line */
    const char *indent_str; /* used instead of spaces when non-NULL */
    const char *item_sep, *key_sep;
    bool sort_keys;
} tv_json_opts;
bool tv_to_json(tpl_buf *b, tv v, const tv_json_opts *o, char *why, int depth);
/* Python float repr: shortest text that reads back as the same double. */
void tv_float_repr(double f, char *out, size_t size);
const char *tv_type_name(tv v); /* "str", "int", "dict", ... as Python names them */

/* ---- syntax tree ------------------------------------------------------------ */

typedef enum tnode_kind {
    /* expressions */
    N_LIT,     /* lit */
    N_NAME,    /* name */
    N_LIST,    /* v: items */
    N_TUPLE,   /* v: items */
    N_DICT,    /* v: keys, w: values */
    N_GETATTR, /* a.name */
    N_GETITEM, /* a[b] */
    N_SLICE,   /* a[b:c:d], any of b c d may be NULL */
    N_CALL,    /* a(v..., names[i]=w[i]...) */
    N_FILTER,  /* a | name(v..., names=w...); a NULL inside a filter block */
    N_TEST,    /* a is [not] name(v...); flag: negated */
    N_NEG,     /* -a */
    N_POS,     /* +a */
    N_NOT,     /* not a */
    N_BINARY,  /* a op b: op is one of the TOP_ */
    N_AND,
    N_OR,
    N_COMPARE, /* a op[0] v[0] op[1] v[1] ...: ops in ops[] */
    N_COND,    /* b if a else c (c may be NULL) */
    /* statements */
    N_TEXT,    /* lit (a string) */
    N_OUTPUT,  /* {{ a }} */
    N_IF,      /* if a: v else w */
    N_FOR,     /* for a in b [if c]: v else w; flag: recursive */
    N_SET,     /* set a = b, or block set a: v (b NULL) with filter c (or NULL) */
    N_MACRO,   /* macro name(names = w defaults): v */
    N_CALLBLOCK, /* call(names = w defaults) a: v */
    N_FILTERBLOCK, /* filter a (an N_FILTER chain on NULL): v */
    N_WITH,    /* with names = w: v */
    N_BREAK,
    N_CONTINUE,
} tnode_kind;

typedef enum top {
    TOP_ADD, TOP_SUB, TOP_MUL, TOP_DIV, TOP_FLOORDIV, TOP_MOD, TOP_POW, TOP_CONCAT,
    TOP_EQ, TOP_NE, TOP_LT, TOP_LE, TOP_GT, TOP_GE, TOP_IN, TOP_NOTIN,
} top;

typedef struct tnode tnode;
struct tnode {
    uint8_t kind;
    uint8_t op;
    uint8_t flag;
    int line, col;
    tnode *a, *b, *c, *d;
    tnode **v;
    int nv;
    tnode **w;
    int nw;
    const char **names; /* NUL-terminated strings */
    uint8_t *ops;       /* N_COMPARE */
    const char *name;   /* NUL-terminated */
    tv lit;
};

struct halo_template {
    tpl_arena arena;
    tnode **body;
    int n_body;
    /* Top-level variables that start out missing (jinja2's symbol analysis): names
     * whose first top-level use is an assignment outside any if. Until assigned,
     * loop, macro and with bodies see them undefined, not as the context's value
     * of the same name; other names start from the context. */
    const char **root_names;
    int n_root_names;
};

/* template_parse.c */
int tpl_parse(struct halo_template *t, const char *src, size_t len, halo_error *err);

#endif
