/*
 * JSON schema -> GBNF (include/halo.h, "grammars"), for structured outputs and
 * forced tool calls.
 *
 * A schema becomes one rule per sub-schema, named after where it sits (the
 * property's name, "-item" for array items, the $defs name for references), on top
 * of a fixed block of JSON primitives (value, object, array, string, number, ...).
 * `space`, a little optional whitespace, may come around the punctuation inside
 * objects and arrays, as a model writes pretty-printed JSON, but not after the value:
 * the text ends where the JSON does (the end of the turn comes next).
 *
 * Before anything is generated, the whole schema is walked once for keywords halo
 * does not enforce; any found are refused together, with their paths, rather than
 * silently producing outputs that break the schema.
 */
#include "halo.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRIMITIVES                                                                                 \
    "value ::= object | array | string | number | boolean | null\n"                                \
    "object ::= \"{\" space ( string space \":\" space value "                                     \
    "( space \",\" space string space \":\" space value )* space )? \"}\"\n"                       \
    "array ::= \"[\" space ( value ( space \",\" space value )* space )? \"]\"\n"                  \
    "string ::= \"\\\"\" char* \"\\\"\"\n"                                                         \
    "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n"      \
    "integer ::= \"-\"? ([0-9] | [1-9] [0-9]{1,15})\n"                                             \
    "number ::= \"-\"? ([0-9] | [1-9] [0-9]{1,15}) (\".\" [0-9]{1,16})? ([eE] [-+]? "              \
    "[0-9]{1,3})?\n"                                                                               \
    "boolean ::= \"true\" | \"false\"\n"                                                           \
    "null ::= \"null\"\n"                                                                          \
    "space ::= \" \"? | \"\\n\" [ \\t]{0,20}\n"

static const char primitives[] = PRIMITIVES;

static const char *const primitive_names[] = {"value", "object",  "array",  "string",
                                              "char",  "integer", "number", "boolean",
                                              "null",  "space",   "root"};

const char *halo_json_object_gbnf(void) {
    return "root ::= object\n" PRIMITIVES;
}

/* ---- output text ----------------------------------------------------------------------- */

typedef struct text {
    char *s;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *s, size_t n) {
    if (t->failed) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *q = realloc(t->s, cap);
        if (!q) {
            t->failed = true;
            return;
        }
        t->s = q;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void puts_(text *t, const char *s) {
    put(t, s, strlen(s));
}

static void printf_(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void printf_(text *t, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) put(t, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* s as a GBNF string literal */
static void put_literal(text *t, const char *s) {
    puts_(t, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            put(t, e, 2);
        } else if (*p < 0x20 || *p == 0x7F) {
            printf_(t, "\\x%02X", *p);
        } else {
            put(t, (const char *)p, 1);
        }
    }
    puts_(t, "\"");
}

/* a JSON value's text as a GBNF literal */
static bool put_json_literal(text *t, const cJSON *v) {
    char *s = cJSON_PrintUnformatted(v);
    if (!s) return false;
    put_literal(t, s);
    free(s);
    return true;
}

/* ---- the converter --------------------------------------------------------------------- */

#define MAX_SCHEMA_DEPTH 64
#define MAX_RULE_NAMES 20000
#define MAX_COUNT 10000

typedef struct ref_rule {
    char *ref;  /* "#/$defs/X" */
    char *name; /* its rule */
} ref_rule;

typedef struct conv {
    const cJSON *root;
    text rules;
    char **names; /* every rule name taken */
    int n_names, cap_names;
    ref_rule *refs;
    int n_refs, cap_refs;
    int depth;
    halo_error *err;
    bool failed;
} conv;

static bool conv_fail(conv *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool conv_fail(conv *c, int status, const char *fmt, ...) {
    if (c->failed) return false;
    c->failed = true;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    halo_error_set(c->err, status, "json_schema: %s", msg);
    return false;
}

static bool name_taken(const conv *c, const char *name) {
    for (size_t i = 0; i < sizeof primitive_names / sizeof *primitive_names; i++)
        if (!strcmp(primitive_names[i], name)) return true;
    for (int i = 0; i < c->n_names; i++)
        if (!strcmp(c->names[i], name)) return true;
    return false;
}

/* A fresh rule name from a hint (letters, digits and '-' kept, the rest '-'). Valid
 * until the converter is freed; NULL when out of memory or names. */
static const char *new_name(conv *c, const char *hint) {
    char base[48], name[64];
    size_t n = 0;
    for (const char *p = hint; *p && n < sizeof base - 1; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        base[n++] = ok ? ch : '-';
    }
    base[n] = '\0';
    if (!n) snprintf(base, sizeof base, "r");
    snprintf(name, sizeof name, "%s", base);
    for (int k = 1; name_taken(c, name); k++)
        snprintf(name, sizeof name, "%s-%d", base, k);
    if (c->n_names >= MAX_RULE_NAMES) {
        conv_fail(c, HALO_ERR_UNSUPPORTED, "the schema is too large (more than %d rules)",
                  MAX_RULE_NAMES);
        return NULL;
    }
    if (c->n_names == c->cap_names) {
        int cap = c->cap_names ? 2 * c->cap_names : 64;
        char **q = realloc(c->names, sizeof *q * (size_t)cap);
        if (!q) return conv_fail(c, HALO_ERR_NOMEM, "out of memory"), NULL;
        c->names = q;
        c->cap_names = cap;
    }
    if (!(c->names[c->n_names] = strdup(name)))
        return conv_fail(c, HALO_ERR_NOMEM, "out of memory"), NULL;
    return c->names[c->n_names++];
}

/* ---- keywords halo enforces or may ignore ----------------------------------------------- */

static const char *const known_keywords[] = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems",
    "maxItems", "minLength", "maxLength", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
    "$defs", "definitions",
    /* annotations: no effect on what is valid */
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
    "readOnly", "writeOnly", "strict"};

/* String formats halo generates: the text between the quotes, as GBNF. */
#define FORMAT_DATE                                                                                \
    "[0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])"
#define FORMAT_TIME                                                                                \
    "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? "          \
    "(\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])"
#define HEX4 "[0-9a-fA-F]{4}"
static const struct {
    const char *name, *gbnf;
} formats[] = {
    {"date", FORMAT_DATE},
    {"time", FORMAT_TIME},
    {"date-time", FORMAT_DATE " \"T\" " FORMAT_TIME},
    {"uuid",
     HEX4 " " HEX4 " \"-\" " HEX4 " \"-\" " HEX4 " \"-\" " HEX4 " \"-\" " HEX4 " " HEX4 " " HEX4},
};

static const char *format_gbnf(const cJSON *f) {
    for (size_t i = 0; cJSON_IsString(f) && i < sizeof formats / sizeof *formats; i++)
        if (!strcmp(formats[i].name, f->valuestring)) return formats[i].gbnf;
    return NULL;
}

static bool is_known_keyword(const char *k) {
    for (size_t i = 0; i < sizeof known_keywords / sizeof *known_keywords; i++)
        if (!strcmp(known_keywords[i], k)) return true;
    return false;
}

/* minimum, maximum, exclusiveMinimum, exclusiveMaximum: enforced on integers (bounds up
 * to 2^53 - 1, the safe-integer bounds JavaScript schema builders such as zod write for
 * every integer), not on other numbers */
#define MAX_BOUND 9007199254740991.0

static bool is_bound_keyword(const char *k) {
    return !strcmp(k, "minimum") || !strcmp(k, "maximum") || !strcmp(k, "exclusiveMinimum") ||
           !strcmp(k, "exclusiveMaximum");
}

static bool is_integer_schema(const cJSON *s) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    return cJSON_IsString(t) && !strcmp(t->valuestring, "integer");
}

static bool bound_supported(const cJSON *s, const cJSON *k) {
    return is_bound_keyword(k->string) && is_integer_schema(s) && cJSON_IsNumber(k) &&
           k->valuedouble >= -MAX_BOUND && k->valuedouble <= MAX_BOUND;
}

static void collect_unsupported(const cJSON *s, const char *path, text *out, int depth);

static void collect_children(const cJSON *o, const char *path, const char *key, text *out,
                             int depth) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key), *x;
    char sub[200];
    if (!v) return;
    if (!strcmp(key, "properties") || !strcmp(key, "$defs") || !strcmp(key, "definitions")) {
        cJSON_ArrayForEach(x, v) {
            snprintf(sub, sizeof sub, "%s/%s/%s", path, key, x->string ? x->string : "");
            collect_unsupported(x, sub, out, depth + 1);
        }
    } else if (cJSON_IsArray(v)) {
        int i = 0;
        cJSON_ArrayForEach(x, v) {
            snprintf(sub, sizeof sub, "%s/%s/%d", path, key, i++);
            collect_unsupported(x, sub, out, depth + 1);
        }
    } else {
        snprintf(sub, sizeof sub, "%s/%s", path, key);
        collect_unsupported(v, sub, out, depth + 1);
    }
}

/* "kw (at /path), ..." for every keyword of s and its sub-schemas that halo does not
 * enforce. */
static void collect_unsupported(const cJSON *s, const char *path, text *out, int depth) {
    if (!cJSON_IsObject(s) || depth > MAX_SCHEMA_DEPTH) return;
    const cJSON *k;
    cJSON_ArrayForEach(k, s) {
        bool format = !strcmp(k->string, "format");
        if (is_known_keyword(k->string) || (format && format_gbnf(k)) || bound_supported(s, k))
            continue;
        if (out->len) puts_(out, ", ");
        if (format && cJSON_IsString(k))
            printf_(out, "format '%.40s' (at %.100s; known: date, time, date-time, uuid)",
                    k->valuestring, path[0] ? path : "/");
        else
            printf_(out, "%.60s (at %.100s)", k->string, path[0] ? path : "/");
    }
    static const char *const subs[] = {"properties", "$defs",       "definitions",
                                       "items",      "prefixItems", "additionalProperties",
                                       "anyOf",      "oneOf",       "allOf"};
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
        collect_children(s, path, subs[i], out, depth);
}

/* ---- schemas to rules ------------------------------------------------------------------- */

static const char *schema_rule(conv *c, const cJSON *s, const char *hint);

/* name ::= body, appended to the rules */
static void emit_rule(conv *c, const char *name, const text *body) {
    if (body->failed) {
        conv_fail(c, HALO_ERR_NOMEM, "out of memory");
        return;
    }
    printf_(&c->rules, "%s ::= ", name);
    put(&c->rules, body->s ? body->s : "", body->len);
    puts_(&c->rules, "\n");
}

static bool get_count(conv *c, const cJSON *s, const char *key, long *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
    if (!v) return true;
    /* the range first: converting a double beyond long's range is undefined */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble != floor(v->valuedouble))
        return conv_fail(c, HALO_ERR_ARG, "'%s' must be a non-negative integer", key);
    if (v->valuedouble > MAX_COUNT)
        return conv_fail(c, HALO_ERR_UNSUPPORTED, "'%s' %g is above %d", key, v->valuedouble,
                         MAX_COUNT);
    *out = (long)v->valuedouble;
    return true;
}

/* {m,n} after an element, or {m,} with max < 0 */
static void put_repeat(text *t, long min, long max) {
    if (max < 0)
        printf_(t, "{%ld,}", min);
    else
        printf_(t, "{%ld,%ld}", min, max);
}

static bool string_body(conv *c, const cJSON *s, text *b) {
    const char *format = format_gbnf(cJSON_GetObjectItemCaseSensitive(s, "format"));
    if (format) {
        printf_(b, "\"\\\"\" ");
        puts_(b, format);
        puts_(b, " \"\\\"\"");
        return true;
    }
    long min = 0, max = -1;
    if (!get_count(c, s, "minLength", &min) || !get_count(c, s, "maxLength", &max)) return false;
    if (max >= 0 && max < min) return conv_fail(c, HALO_ERR_ARG, "maxLength < minLength");
    if (min == 0 && max < 0) {
        puts_(b, "string");
        return true;
    }
    puts_(b, "\"\\\"\" char");
    put_repeat(b, min, max);
    puts_(b, " \"\\\"\"");
    return true;
}

/* A tuple: prefixItems in order, then more items as `items` allows (none when it is
 * false or absent and minItems does not ask for them). */
static bool tuple_body(conv *c, const cJSON *s, const cJSON *prefix, long min, long max,
                       const char *hint, text *b) {
    long np = cJSON_GetArraySize(prefix);
    if (max >= 0 && max < np)
        return conv_fail(c, HALO_ERR_UNSUPPORTED, "maxItems below the number of prefixItems");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items"), *x;
    long emin = min > np ? min - np : 0, emax = emin;
    if (cJSON_IsFalse(items) && emin > 0)
        return conv_fail(c, HALO_ERR_ARG, "minItems above prefixItems with items: false");
    puts_(b, "\"[\" space");
    long i = 0;
    cJSON_ArrayForEach(x, prefix) {
        char h[80];
        snprintf(h, sizeof h, "%s-%ld", hint, i);
        const char *r = schema_rule(c, x, h);
        if (!r) return false;
        printf_(b, "%s %s", i++ ? " space \",\" space" : "", r);
    }
    const char *extra = "value";
    if (items && !cJSON_IsFalse(items)) {
        char h[80];
        snprintf(h, sizeof h, "%s-item", hint);
        if (!(extra = schema_rule(c, items, h))) return false;
        emax = max < 0 ? -1 : max - np;
    }
    if (emax != 0) {
        printf_(b, " ( space \",\" space %s )", extra);
        put_repeat(b, emin, emax);
    }
    puts_(b, " space \"]\"");
    return true;
}

static bool array_body(conv *c, const cJSON *s, const char *hint, text *b) {
    long min = 0, max = -1;
    if (!get_count(c, s, "minItems", &min) || !get_count(c, s, "maxItems", &max)) return false;
    if (max >= 0 && max < min) return conv_fail(c, HALO_ERR_ARG, "maxItems < minItems");
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(s, "prefixItems");
    if (prefix && (!cJSON_IsArray(prefix)))
        return conv_fail(c, HALO_ERR_ARG, "'prefixItems' must be an array of schemas");
    if (cJSON_GetArraySize(prefix) > 0) return tuple_body(c, s, prefix, min, max, hint, b);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    char h[80];
    snprintf(h, sizeof h, "%s-item", hint);
    const char *item = items ? schema_rule(c, items, h) : "value";
    if (!item) return false;
    puts_(b, "\"[\" space ");
    if (max == 0) {
        puts_(b, "\"]\"");
        return true;
    }
    if (min == 0)
        printf_(b, "( %s ( space \",\" space %s )", item, item);
    else
        printf_(b, "%s ( space \",\" space %s )", item, item);
    put_repeat(b, min > 0 ? min - 1 : 0, max < 0 ? -1 : max - 1);
    puts_(b, min == 0 ? " space )? \"]\"" : " space \"]\"");
    return true;
}

typedef struct prop {
    const char *key;
    const cJSON *schema; /* NULL: any value */
    bool required;
} prop;

static bool in_required(const cJSON *req, const char *key) {
    const cJSON *r;
    cJSON_ArrayForEach(r, req) if (cJSON_IsString(r) && !strcmp(r->valuestring, key)) return true;
    return false;
}

/* The declared properties in order, then required names that are not declared. */
static prop *object_props(conv *c, const cJSON *s, int *n) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    if (props && !cJSON_IsObject(props))
        return conv_fail(c, HALO_ERR_ARG, "'properties' must be an object"), NULL;
    if (req && !cJSON_IsArray(req))
        return conv_fail(c, HALO_ERR_ARG, "'required' must be an array"), NULL;
    int cap = cJSON_GetArraySize(props) + cJSON_GetArraySize(req) + 1;
    prop *p = calloc((size_t)cap, sizeof *p);
    if (!p) return conv_fail(c, HALO_ERR_NOMEM, "out of memory"), NULL;
    *n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, props) p[(*n)++] = (prop){x->string, x, in_required(req, x->string)};
    cJSON_ArrayForEach(x, req) {
        if (!cJSON_IsString(x)) {
            free(p);
            return conv_fail(c, HALO_ERR_ARG, "'required' must list strings"), NULL;
        }
        if (!cJSON_GetObjectItemCaseSensitive(props, x->valuestring))
            p[(*n)++] = (prop){x->valuestring, NULL, true};
    }
    return p;
}

/* Rules "<name>-kv-<i>": one "key": value pair each. */
static bool pair_rules(conv *c, const char *name, const prop *p, int n, const char **kv) {
    for (int i = 0; i < n; i++) {
        char h[120];
        snprintf(h, sizeof h, "%s-%s", name, p[i].key);
        const char *val = p[i].schema ? schema_rule(c, p[i].schema, h) : "value";
        if (!val) return false;
        snprintf(h, sizeof h, "%s-%s-kv", name, p[i].key);
        if (!(kv[i] = new_name(c, h))) return false;
        text b = {0};
        cJSON *key = cJSON_CreateString(p[i].key);
        bool ok = key && put_json_literal(&b, key);
        cJSON_Delete(key);
        printf_(&b, " space \":\" space %s", val);
        if (ok) emit_rule(c, kv[i], &b);
        free(b.s);
        if (!ok) return conv_fail(c, HALO_ERR_NOMEM, "out of memory");
    }
    return true;
}

/* The pairs from i on, in order, optional ones skippable: rule rest[i][comma] where
 * comma says whether a pair came before (so the next needs ","). */
static bool rest_rules(conv *c, const char *name, const prop *p, int n, const char **kv,
                       const char **rest) {
    for (int i = n - 1; i >= 0; i--) {
        for (int comma = 0; comma < 2; comma++) {
            char h[120];
            snprintf(h, sizeof h, "%s-rest-%d%s", name, i, comma ? "c" : "");
            const char **r = &rest[2 * i + comma];
            if (!(*r = new_name(c, h))) return false;
            const char *after = i + 1 < n ? rest[2 * (i + 1) + 1] : NULL;
            const char *skip = i + 1 < n ? rest[2 * (i + 1) + comma] : NULL;
            text b = {0};
            printf_(&b, "%s%s%s%s", comma ? "space \",\" space " : "", kv[i], after ? " " : "",
                    after ? after : "");
            if (!p[i].required) printf_(&b, " | %s", skip ? skip : "");
            emit_rule(c, *r, &b);
            free(b.s);
        }
    }
    return !c->failed;
}

static bool object_body(conv *c, const cJSON *s, const char *name, text *b) {
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    bool extra = add && !cJSON_IsFalse(add);
    if (extra && cJSON_GetArraySize(props) > 0)
        return conv_fail(c, HALO_ERR_UNSUPPORTED,
                         "additionalProperties together with properties is not supported (give "
                         "additionalProperties: false, or no properties)");
    int n = 0;
    prop *p = object_props(c, s, &n);
    if (!p) return false;
    bool ok = true;
    if (n == 0 && extra && cJSON_IsObject(add)) { /* a map: string keys, values of one schema */
        char h[80];
        snprintf(h, sizeof h, "%s-value", name);
        const char *val = schema_rule(c, add, h);
        ok = val != NULL;
        if (ok)
            printf_(
                b,
                "\"{\" space ( string space \":\" space %s ( space \",\" space string space \":\" "
                "space %s )* space )? \"}\"",
                val, val);
    } else if (n == 0) {
        puts_(b, add ? (extra ? "object" : "\"{\" space \"}\"") : "object");
    } else {
        const char **kv = calloc((size_t)n, sizeof *kv),
                   **rest = calloc(2 * (size_t)n, sizeof *rest);
        ok = kv && rest && pair_rules(c, name, p, n, kv) && rest_rules(c, name, p, n, kv, rest);
        if (!kv || !rest) conv_fail(c, HALO_ERR_NOMEM, "out of memory");
        if (ok) printf_(b, "\"{\" space %s space \"}\"", rest[0]);
        free(kv);
        free(rest);
    }
    free(p);
    return ok;
}

/* alternatives: one rule per entry of an anyOf / oneOf / enum-like list */
static bool alternatives_body(conv *c, const cJSON *list, const char *key, const char *name,
                              text *b) {
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0)
        return conv_fail(c, HALO_ERR_ARG, "'%s' must be a non-empty array", key);
    const cJSON *x;
    int i = 0;
    cJSON_ArrayForEach(x, list) {
        char h[80];
        snprintf(h, sizeof h, "%s-%d", name, i);
        const char *r = schema_rule(c, x, h);
        if (!r) return false;
        printf_(b, "%s%s", i++ ? " | " : "", r);
    }
    return true;
}

static bool enum_body(conv *c, const cJSON *list, text *b) {
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0)
        return conv_fail(c, HALO_ERR_ARG, "'enum' must be a non-empty array");
    const cJSON *x;
    int i = 0;
    puts_(b, "(");
    cJSON_ArrayForEach(x, list) {
        if (i++) puts_(b, " | ");
        if (!put_json_literal(b, x)) return conv_fail(c, HALO_ERR_NOMEM, "out of memory");
    }
    puts_(b, ")");
    return true;
}

/* ---- integer ranges --------------------------------------------------------------------- */

static int64_t pow10_(int k) {
    int64_t p = 1;
    while (k-- > 0)
        p *= 10;
    return p;
}

static int n_digits(int64_t v) {
    int n = 1;
    while (v >= 10)
        v /= 10, n++;
    return n;
}

/* [a, b] (0 <= a <= b, the same number of digits) as alternatives, each a run of fixed
 * leading digits, one digit range, then any digits: the blocks that split the range at
 * powers of ten (a number never starts with 0 unless it is 0). */
static void digits_range(text *t, int64_t a, int64_t b, bool *first) {
    int64_t top = pow10_(n_digits(b) - 1); /* the leading digit's place */
    while (a <= b) {
        int64_t step = 1;
        while (step * 10 <= top && a % (step * 10) == 0 && a + step * 10 - 1 <= b)
            step *= 10;
        int64_t digit = (a / step) % 10, n = (b - a + 1) / step;
        if (n > 10 - digit) n = 10 - digit;
        int k = 0;
        for (int64_t q = step; q > 1; q /= 10)
            k++;
        printf_(t, "%s", *first ? "" : " | ");
        *first = false;
        int64_t prefix = a / (step * 10);
        if (prefix > 0) printf_(t, "\"%lld\" ", (long long)prefix);
        printf_(t, "[%lld-%lld]", (long long)digit, (long long)(digit + n - 1));
        if (k > 0) printf_(t, " [0-9]{%d}", k);
        a += n * step;
    }
}

/* Non-negative integers in [a, b] (b < 0: no upper bound) as GBNF alternatives. */
static void natural_range(text *t, int64_t a, int64_t b, bool *first) {
    int la = n_digits(a), lb = b < 0 ? la : n_digits(b);
    for (int len = la; len <= lb; len++) {
        int64_t lo = len == 1 ? 0 : pow10_(len - 1), hi = pow10_(len) - 1;
        if (lo < a) lo = a;
        if (b >= 0 && hi > b) hi = b;
        digits_range(t, lo, hi, first);
    }
    if (b < 0 && la < 16) { /* longer numbers, up to the integer rule's 16 digits */
        printf_(t, "%s[1-9] [0-9]{%d,15}", *first ? "" : " | ", la);
        *first = false;
    }
}

/* An integer schema with bounds: the values in [lo, hi] (unbounded ends as the
 * integer rule's 16 digits). */
static bool integer_body(conv *c, const cJSON *s, text *b) {
    double lo = -1e300, hi = 1e300;
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "minimum"))) lo = x->valuedouble;
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum")) && x->valuedouble >= lo)
        lo = x->valuedouble + 1;
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "maximum"))) hi = x->valuedouble;
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum")) && x->valuedouble <= hi)
        hi = x->valuedouble - 1;
    /* the integer rule has at most 16 digits: bounds beyond them bound nothing, and a range
     * wholly beyond them holds no integer it can write (also keeps the conversions below
     * within int64_t) */
    const double big = 9999999999999999.0;
    if (lo > big || hi < -big)
        return conv_fail(c, HALO_ERR_UNSUPPORTED, "integer bounds beyond 16 digits");
    if (lo < -big) lo = -1e300;
    if (hi > big) hi = 1e300;
    if (lo == -1e300 && hi == 1e300) {
        puts_(b, "integer");
        return true;
    }
    lo = lo == -1e300 ? lo : ceil(lo), hi = hi == 1e300 ? hi : floor(hi);
    if (lo > hi) return conv_fail(c, HALO_ERR_ARG, "no integer between the bounds");
    bool first = true;
    puts_(b, "(");
    if (lo < 0) { /* "-" then the absolute values in [max(1, -hi), -lo] */
        puts_(b, "\"-\" (");
        bool f2 = true;
        natural_range(b, hi < 0 ? (int64_t)-hi : 1, lo == -1e300 ? -1 : (int64_t)-lo, &f2);
        puts_(b, ")");
        first = false;
    }
    if (hi >= 0) {
        if (!first) puts_(b, " | ");
        first = true;
        natural_range(b, lo > 0 ? (int64_t)lo : 0, hi == 1e300 ? -1 : (int64_t)hi, &first);
    }
    puts_(b, ")");
    return true;
}

static bool type_body(conv *c, const cJSON *s, const char *type, const char *name, text *b) {
    if (!strcmp(type, "object")) return object_body(c, s, name, b);
    if (!strcmp(type, "array")) return array_body(c, s, name, b);
    if (!strcmp(type, "string")) return string_body(c, s, b);
    if (!strcmp(type, "integer")) return integer_body(c, s, b);
    if (!strcmp(type, "number") || !strcmp(type, "integer") || !strcmp(type, "boolean") ||
        !strcmp(type, "null")) {
        puts_(b, type);
        return true;
    }
    return conv_fail(c, HALO_ERR_ARG, "unknown type '%.40s'", type);
}

/* A schema with $ref: the rule of the referenced definition, made once. */
static const char *ref_rule_name(conv *c, const char *ref) {
    for (int i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].ref, ref)) return c->refs[i].name;
    const char *def = NULL;
    const cJSON *defs = NULL;
    if (!strncmp(ref, "#/$defs/", 8))
        def = ref + 8, defs = cJSON_GetObjectItemCaseSensitive(c->root, "$defs");
    else if (!strncmp(ref, "#/definitions/", 14))
        def = ref + 14, defs = cJSON_GetObjectItemCaseSensitive(c->root, "definitions");
    else if (!strcmp(ref, "#"))
        def = "", defs = NULL;
    else
        return conv_fail(c, HALO_ERR_UNSUPPORTED,
                         "$ref '%.80s': only references into #/$defs or #/definitions (or #) are "
                         "supported",
                         ref),
               NULL;
    const cJSON *target = def[0] ? cJSON_GetObjectItemCaseSensitive(defs, def) : c->root;
    if (!target) return conv_fail(c, HALO_ERR_ARG, "$ref '%.80s' names no definition", ref), NULL;
    if (c->n_refs == c->cap_refs) {
        int cap = c->cap_refs ? 2 * c->cap_refs : 16;
        ref_rule *q = realloc(c->refs, sizeof *q * (size_t)cap);
        if (!q) return conv_fail(c, HALO_ERR_NOMEM, "out of memory"), NULL;
        c->refs = q;
        c->cap_refs = cap;
    }
    const char *name = new_name(c, def[0] ? def : "root-ref");
    char *copy = strdup(ref);
    if (!name || !copy) {
        free(copy);
        return conv_fail(c, HALO_ERR_NOMEM, "out of memory"), NULL;
    }
    /* registered before its body, so a recursive reference finds it */
    c->refs[c->n_refs++] = (ref_rule){copy, (char *)name};
    text b = {0};
    const char *body = schema_rule(c, target, name);
    if (!body) return NULL;
    puts_(&b, body);
    emit_rule(c, name, &b);
    free(b.s);
    return c->failed ? NULL : name;
}

/* The body of schema s (a rule named name), into b. */
static bool schema_body(conv *c, const cJSON *s, const char *name, text *b) {
    if (cJSON_IsTrue(s)) {
        puts_(b, "value");
        return true;
    }
    if (!cJSON_IsObject(s))
        return conv_fail(c, cJSON_IsFalse(s) ? HALO_ERR_UNSUPPORTED : HALO_ERR_ARG,
                         "%s: a schema must be an object or true", name);
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "$ref"))) {
        if (!cJSON_IsString(x)) return conv_fail(c, HALO_ERR_ARG, "$ref must be a string");
        const char *r = ref_rule_name(c, x->valuestring);
        if (r) puts_(b, r);
        return r != NULL;
    }
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "const"))) {
        if (!put_json_literal(b, x)) return conv_fail(c, HALO_ERR_NOMEM, "out of memory");
        return true;
    }
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "enum"))) return enum_body(c, x, b);
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "anyOf")))
        return alternatives_body(c, x, "anyOf", name, b);
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "oneOf")))
        return alternatives_body(c, x, "oneOf", name, b);
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "allOf"))) {
        if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) != 1)
            return conv_fail(c, HALO_ERR_UNSUPPORTED, "allOf with more than one schema");
        return alternatives_body(c, x, "allOf", name, b);
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (cJSON_IsString(type)) return type_body(c, s, type->valuestring, name, b);
    if (cJSON_IsArray(type)) {
        int i = 0;
        cJSON_ArrayForEach(x, type) {
            if (!cJSON_IsString(x)) return conv_fail(c, HALO_ERR_ARG, "'type' lists strings");
            if (i++) puts_(b, " | ");
            text sub = {0};
            bool ok = type_body(c, s, x->valuestring, name, &sub);
            if (ok) {
                puts_(b, "( ");
                put(b, sub.s ? sub.s : "", sub.len);
                puts_(b, " )");
            }
            free(sub.s);
            if (!ok) return false;
        }
        if (i == 0) return conv_fail(c, HALO_ERR_ARG, "'type' is an empty list");
        return true;
    }
    if (type) return conv_fail(c, HALO_ERR_ARG, "'type' must be a string or a list of strings");
    if (cJSON_GetObjectItemCaseSensitive(s, "properties") ||
        cJSON_GetObjectItemCaseSensitive(s, "additionalProperties"))
        return object_body(c, s, name, b);
    if (cJSON_GetObjectItemCaseSensitive(s, "items") ||
        cJSON_GetObjectItemCaseSensitive(s, "prefixItems"))
        return array_body(c, s, name, b);
    if (cJSON_GetObjectItemCaseSensitive(s, "format")) return string_body(c, s, b);
    puts_(b, "value");
    return true;
}

/* The rule for schema s: a new rule named after hint (its name is returned). */
static const char *schema_rule(conv *c, const cJSON *s, const char *hint) {
    if (c->failed) return NULL;
    if (++c->depth > MAX_SCHEMA_DEPTH) {
        conv_fail(c, HALO_ERR_UNSUPPORTED, "the schema nests deeper than %d", MAX_SCHEMA_DEPTH);
        return NULL;
    }
    const char *name = new_name(c, hint);
    text b = {0};
    bool ok = name && schema_body(c, s, name, &b);
    if (ok) emit_rule(c, name, &b);
    free(b.s);
    c->depth--;
    return ok && !c->failed ? name : NULL;
}

static void conv_free(conv *c) {
    for (int i = 0; i < c->n_names; i++)
        free(c->names[i]);
    free(c->names);
    for (int i = 0; i < c->n_refs; i++)
        free(c->refs[i].ref);
    free(c->refs);
    free(c->rules.s);
}

static bool check_supported(conv *c, const cJSON *schema) {
    text bad = {0};
    collect_unsupported(schema, "", &bad, 0);
    bool ok = bad.len == 0;
    if (!ok) conv_fail(c, HALO_ERR_UNSUPPORTED, "unsupported keywords: %.300s", bad.s ? bad.s : "");
    free(bad.s);
    return ok;
}

/* The rules text with "root ::= <rule>" and the primitives, as *out. */
static int finish(conv *c, const char *top, char **out) {
    text t = {0};
    printf_(&t, "root ::= %s\n", top);
    put(&t, c->rules.s ? c->rules.s : "", c->rules.len);
    puts_(&t, primitives);
    if (t.failed) {
        free(t.s);
        return halo_error_set(c->err, HALO_ERR_NOMEM, "json_schema: out of memory");
    }
    *out = t.s;
    return 0;
}

int halo_json_schema_to_gbnf(const cJSON *schema, char **out, halo_error *err) {
    *out = NULL;
    conv c = {.root = schema, .err = err};
    int rc = HALO_ERR_ARG;
    if (check_supported(&c, schema)) {
        const char *top = schema_rule(&c, schema, "schema");
        if (top) rc = finish(&c, top, out);
    }
    if (c.failed && err) rc = err->status ? err->status : HALO_ERR_ARG;
    conv_free(&c);
    return rc;
}

/* ---- tool calls -------------------------------------------------------------------------------
 */

static const cJSON *tool_function(const cJSON *t) {
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
    return cJSON_IsObject(fn) ? fn : t;
}

/* One call of tool fn: "\"name\"" space "," space "\"arguments\"" space ":" space args */
static const char *tool_rule(conv *c, const cJSON *fn, const char *name) {
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    char h[80];
    snprintf(h, sizeof h, "%s-args", name);
    c->root = params; /* $refs inside a tool's parameters point into them */
    const char *args = params ? schema_rule(c, params, h) : "object";
    if (!args) return NULL;
    snprintf(h, sizeof h, "%s-call", name);
    const char *r = new_name(c, h);
    if (!r) return NULL;
    text b = {0};
    cJSON *nm = cJSON_CreateString(name);
    bool ok = nm && put_json_literal(&b, nm);
    cJSON_Delete(nm);
    printf_(&b, " space \",\" space \"\\\"arguments\\\"\" space \":\" space %s", args);
    if (ok)
        emit_rule(c, r, &b);
    else
        conv_fail(c, HALO_ERR_NOMEM, "out of memory");
    free(b.s);
    return c->failed ? NULL : r;
}

int halo_tool_call_gbnf(const cJSON *tools, const char *only, bool parallel, char **out,
                        halo_error *err) {
    *out = NULL;
    conv c = {.err = err};
    text calls = {0};
    int n = 0;
    const cJSON *t;
    if (!cJSON_IsArray(tools)) {
        conv_fail(&c, HALO_ERR_ARG, "tools must be an array");
    } else {
        cJSON_ArrayForEach(t, tools) {
            const cJSON *fn = tool_function(t);
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
            if (!cJSON_IsString(name)) {
                conv_fail(&c, HALO_ERR_ARG, "each tool needs a function name");
                break;
            }
            if (only && strcmp(only, name->valuestring)) continue;
            const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
            if (params && !check_supported(&c, params)) break;
            const char *r = tool_rule(&c, fn, name->valuestring);
            if (!r) break;
            printf_(&calls, "%s%s", n++ ? " | " : "", r);
        }
    }
    int rc = HALO_ERR_ARG;
    if (!c.failed && n == 0) {
        if (only)
            halo_error_set(err, HALO_ERR_ARG,
                           "tool_choice names '%.80s', which is not among the tools", only);
        else
            halo_error_set(err, HALO_ERR_ARG, "tool_choice needs tools");
    } else if (!c.failed) {
        text top = {0};
        const char *name = new_name(&c, "tool-call");
        if (name) {
            printf_(&top, "\"<tool_call>\\n{\" space \"\\\"name\\\"\" space \":\" space ( ");
            put(&top, calls.s, calls.len);
            puts_(&top, " ) space \"}\\n</tool_call>\"");
            emit_rule(&c, name, &top);
            free(top.s);
            char head[128];
            if (parallel)
                snprintf(head, sizeof head, "%s (\"\\n\" %s)*", name, name);
            else
                snprintf(head, sizeof head, "%s", name);
            rc = c.failed ? HALO_ERR_NOMEM : finish(&c, head, out);
        }
    }
    if (c.failed && err) rc = err->status ? err->status : HALO_ERR_ARG;
    free(calls.s);
    conv_free(&c);
    return rc;
}
