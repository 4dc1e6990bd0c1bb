/*
 * Chat templates, part 3: the value type. Conversion from cJSON, and the three
 * ways Python writes a value that templates rely on byte for byte: str() (what
 * {{ x }} prints), repr() (items inside a printed list or dict) and json.dumps
 * (the tojson filter, as transformers defines it: ensure_ascii off, separators
 * ", " and ": " on one line and "," and ": " with indent, keys in insertion order).
 */
#include "template_impl.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tv_dict *tv_dict_new(tpl_arena *a, size_t cap) {
    tv_dict *d = tpl_alloc(a, sizeof *d);
    if (!d) return NULL;
    if (cap) {
        d->keys = tpl_alloc_array(a, cap, sizeof(tv));
        d->vals = tpl_alloc_array(a, cap, sizeof(tv));
        if (!d->keys || !d->vals) return NULL;
        d->cap = cap;
    }
    return d;
}

tv_list *tv_list_new(tpl_arena *a, size_t n) {
    tv_list *l = tpl_alloc(a, sizeof *l);
    if (!l) return NULL;
    l->n = n;
    if (n) {
        l->items = tpl_alloc_array(a, n, sizeof(tv));
        if (!l->items) return NULL;
    }
    return l;
}

tv *tv_dict_find(tv_dict *d, tv key) {
    if (!d) return NULL;
    for (size_t i = 0; i < d->n; i++)
        if (tv_equal(d->keys[i], key)) return &d->vals[i];
    return NULL;
}

tv *tv_dict_find_str(tv_dict *d, const char *s, size_t n) {
    if (!d) return NULL;
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i].kind == TV_STR && d->keys[i].str.n == n && !memcmp(d->keys[i].str.s, s, n)) return &d->vals[i];
    return NULL;
}

bool tv_dict_set(tpl_arena *a, tv_dict *d, tv key, tv val) {
    tv *old = tv_dict_find(d, key);
    if (old) {
        *old = val;
        return true;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        tv *k = tpl_alloc_array(a, cap, sizeof(tv)), *v = tpl_alloc_array(a, cap, sizeof(tv));
        if (!k || !v) return false;
        if (d->n) {
            memcpy(k, d->keys, d->n * sizeof(tv));
            memcpy(v, d->vals, d->n * sizeof(tv));
        }
        d->keys = k;
        d->vals = v;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
    return true;
}

bool tv_truthy(tv v) {
    switch (v.kind) {
    case TV_UNDEF:
    case TV_NONE: return false;
    case TV_BOOL: return v.b;
    case TV_INT: return v.i != 0;
    case TV_FLOAT: return v.f != 0.0;
    case TV_STR: return v.str.n != 0;
    case TV_LIST: return v.list->lazy || v.list->n != 0;
    case TV_DICT: return v.dict->n != 0;
    default: return true;
    }
}

static bool is_num(tv v) { return v.kind == TV_INT || v.kind == TV_FLOAT || v.kind == TV_BOOL; }
static double num_of(tv v) { return v.kind == TV_FLOAT ? v.f : v.kind == TV_INT ? (double)v.i : (double)v.b; }

/* Values a template builds can nest without bound ({% set ns.x = [ns.x] %} in a
 * loop): past this depth, equality answers false instead of exhausting the stack. */
#define TV_MAX_DEPTH 200

static bool equal_d(tv a, tv b, int depth);

bool tv_equal(tv a, tv b) { return equal_d(a, b, 0); }

static bool equal_d(tv a, tv b, int depth) {
    /* the same list or dict: equal, as Python's identity shortcut has it */
    if (a.kind == b.kind && (a.kind == TV_LIST || a.kind == TV_DICT || a.kind == TV_NS) && a.ptr == b.ptr) return true;
    if (depth > TV_MAX_DEPTH) return false;
    if (is_num(a) && is_num(b)) {
        if (a.kind != TV_FLOAT && b.kind != TV_FLOAT) {
            int64_t x = a.kind == TV_INT ? a.i : a.b, y = b.kind == TV_INT ? b.i : b.b;
            return x == y;
        }
        return num_of(a) == num_of(b);
    }
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case TV_UNDEF:
    case TV_NONE: return true;
    case TV_STR: return a.str.n == b.str.n && (a.str.n == 0 || !memcmp(a.str.s, b.str.s, a.str.n));
    case TV_LIST:
        if (a.list->n != b.list->n) return false;
        for (size_t i = 0; i < a.list->n; i++)
            if (!equal_d(a.list->items[i], b.list->items[i], depth + 1)) return false;
        return true;
    case TV_DICT:
        if (a.dict->n != b.dict->n) return false;
        for (size_t i = 0; i < a.dict->n; i++) {
            tv *o = tv_dict_find(b.dict, a.dict->keys[i]);
            if (!o || !equal_d(a.dict->vals[i], *o, depth + 1)) return false;
        }
        return true;
    default: return a.ptr == b.ptr && a.aux == b.aux;
    }
}

bool tv_from_json(tpl_arena *a, const cJSON *j, tv *out, int depth) {
    if (depth > 200) return false;
    if (cJSON_IsNull(j)) {
        *out = tv_none();
    } else if (cJSON_IsBool(j)) {
        *out = tv_bool(cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        /* cJSON keeps no trace of "1" vs "1.0": integral values within 2^53 are ints */
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) *out = tv_int((int64_t)d);
        else *out = tv_float(d);
    } else if (cJSON_IsString(j)) {
        const char *s = j->valuestring ? j->valuestring : "";
        *out = tv_str(s, strlen(s));
    } else if (cJSON_IsArray(j)) {
        size_t n = 0;
        for (const cJSON *c = j->child; c; c = c->next) n++;
        tv_list *l = tv_list_new(a, n);
        if (!l) return false;
        size_t i = 0;
        for (const cJSON *c = j->child; c; c = c->next)
            if (!tv_from_json(a, c, &l->items[i++], depth + 1)) return false;
        *out = (tv){.kind = TV_LIST, .list = l};
    } else if (cJSON_IsObject(j)) {
        size_t n = 0;
        for (const cJSON *c = j->child; c; c = c->next) n++;
        tv_dict *d = tv_dict_new(a, n);
        if (!d) return false;
        for (const cJSON *c = j->child; c; c = c->next) {
            tv v;
            if (!tv_from_json(a, c, &v, depth + 1)) return false;
            const char *k = c->string ? c->string : "";
            /* a repeated key: the last one wins, as in Python's json.loads */
            if (!tv_dict_set(a, d, tv_str(k, strlen(k)), v)) return false;
        }
        *out = (tv){.kind = TV_DICT, .dict = d};
    } else {
        *out = tv_none();
    }
    return true;
}

const char *tv_type_name(tv v) {
    switch (v.kind) {
    case TV_UNDEF: return "undefined";
    case TV_NONE: return "NoneType";
    case TV_BOOL: return "bool";
    case TV_INT: return "int";
    case TV_FLOAT: return "float";
    case TV_STR: return "str";
    case TV_LIST: return v.list->lazy ? "generator" : v.list->tuple ? "tuple" : "list";
    case TV_DICT: return "dict";
    case TV_NS: return "Namespace";
    case TV_MACRO: return "Macro";
    case TV_LOOP: return "LoopContext";
    default: return "builtin_function_or_method";
    }
}

/* Python's repr(float): the shortest digits that read back, exponent form
 * outside 1e-4 <= |x| < 1e16. */
void tv_float_repr(double f, char *out, size_t size) {
    if (isnan(f)) {
        snprintf(out, size, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(out, size, f < 0 ? "-inf" : "inf");
        return;
    }
    char buf[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f) break;
    }
    /* buf: [-]d.ddde[+-]XX */
    char digits[32];
    int nd = 0, exp10;
    const char *p = buf;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    char *o = out;
    size_t left = size;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w = snprintf(o, left, __VA_ARGS__);                                                    \
        if (w < 0 || (size_t)w >= left) return;                                                    \
        o += w;                                                                                    \
        left -= (size_t)w;                                                                         \
    } while (0)
    if (neg) PUT("-");
    if (exp10 >= 16 || exp10 < -4) {
        PUT("%c", digits[0]);
        if (nd > 1) PUT(".%s", digits + 1);
        PUT("e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    } else if (exp10 < 0) {
        PUT("0.");
        for (int k = 0; k < -exp10 - 1; k++) PUT("0");
        PUT("%s", digits);
    } else {
        for (int k = 0; k <= exp10; k++) PUT("%c", k < nd ? digits[k] : '0');
        PUT(".");
        if (nd > exp10 + 1) PUT("%s", digits + exp10 + 1);
        else PUT("0");
    }
#undef PUT
}

static bool repr_str(tpl_buf *b, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    tpl_buf_addc(b, q);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == (unsigned char)q || c == '\\') {
            tpl_buf_addc(b, '\\');
            tpl_buf_addc(b, (char)c);
        } else if (c == '\n') tpl_buf_add(b, "\\n", 2);
        else if (c == '\r') tpl_buf_add(b, "\\r", 2);
        else if (c == '\t') tpl_buf_add(b, "\\t", 2);
        else if (c < 0x20 || c == 0x7f) tpl_buf_addf(b, "\\x%02x", c);
        else tpl_buf_addc(b, (char)c);
    }
    return tpl_buf_addc(b, q);
}

static bool write_repr(tpl_buf *b, tv v, int depth);

static bool write_str(tpl_buf *b, tv v, int depth) {
    char tmp[64];
    if (depth > 100) return tpl_buf_add(b, "...", 3);
    switch (v.kind) {
    case TV_UNDEF: return true;
    case TV_NONE: return tpl_buf_add(b, "None", 4);
    case TV_BOOL: return v.b ? tpl_buf_add(b, "True", 4) : tpl_buf_add(b, "False", 5);
    case TV_INT: return tpl_buf_addf(b, "%lld", (long long)v.i);
    case TV_FLOAT: tv_float_repr(v.f, tmp, sizeof tmp); return tpl_buf_add(b, tmp, strlen(tmp));
    case TV_STR: return tpl_buf_add(b, v.str.s, v.str.n);
    case TV_LIST:
        if (v.list->lazy) return tpl_buf_add(b, "<generator object>", 18);
        tpl_buf_addc(b, v.list->tuple ? '(' : '[');
        for (size_t i = 0; i < v.list->n; i++) {
            if (i) tpl_buf_add(b, ", ", 2);
            write_repr(b, v.list->items[i], depth + 1);
        }
        if (v.list->tuple && v.list->n == 1) tpl_buf_addc(b, ',');
        return tpl_buf_addc(b, v.list->tuple ? ')' : ']');
    case TV_DICT:
        tpl_buf_addc(b, '{');
        for (size_t i = 0; i < v.dict->n; i++) {
            if (i) tpl_buf_add(b, ", ", 2);
            write_repr(b, v.dict->keys[i], depth + 1);
            tpl_buf_add(b, ": ", 2);
            write_repr(b, v.dict->vals[i], depth + 1);
        }
        return tpl_buf_addc(b, '}');
    case TV_NS:
        tpl_buf_add(b, "<Namespace {", 12);
        for (size_t i = 0; i < v.dict->n; i++) {
            if (i) tpl_buf_add(b, ", ", 2);
            write_repr(b, v.dict->keys[i], depth + 1);
            tpl_buf_add(b, ": ", 2);
            write_repr(b, v.dict->vals[i], depth + 1);
        }
        return tpl_buf_add(b, "}>", 2);
    case TV_MACRO: return tpl_buf_add(b, "<Macro>", 7);
    case TV_LOOP: return tpl_buf_add(b, "<LoopContext>", 13);
    default: return tpl_buf_add(b, "<built-in function>", 19);
    }
}

static bool write_repr(tpl_buf *b, tv v, int depth) {
    if (v.kind == TV_STR) return repr_str(b, v.str.s, v.str.n);
    return write_str(b, v, depth);
}

bool tv_to_str(tpl_buf *b, tv v) { return write_str(b, v, 0) && !b->failed; }
bool tv_repr(tpl_buf *b, tv v) { return write_repr(b, v, 0) && !b->failed; }

/* ---- json.dumps ------------------------------------------------------------------ */

static bool json_str(tpl_buf *b, const char *s, size_t n, bool ensure_ascii) {
    tpl_buf_addc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': tpl_buf_add(b, "\\\"", 2); continue;
        case '\\': tpl_buf_add(b, "\\\\", 2); continue;
        case '\n': tpl_buf_add(b, "\\n", 2); continue;
        case '\r': tpl_buf_add(b, "\\r", 2); continue;
        case '\t': tpl_buf_add(b, "\\t", 2); continue;
        case '\b': tpl_buf_add(b, "\\b", 2); continue;
        case '\f': tpl_buf_add(b, "\\f", 2); continue;
        default: break;
        }
        if (c < 0x20 || (ensure_ascii && c == 0x7f)) {
            tpl_buf_addf(b, "\\u%04x", c);
        } else if (c < 0x80 || !ensure_ascii) {
            tpl_buf_addc(b, (char)c);
        } else {
            /* decode one UTF-8 sequence; invalid bytes are written as U+FFFD */
            uint32_t cp = 0xFFFD;
            int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
            if (len > 1 && i + (size_t)len <= n) {
                uint32_t x = c & (0x7F >> len);
                bool ok = true;
                for (int k = 1; k < len; k++) {
                    unsigned char d = (unsigned char)s[i + (size_t)k];
                    if ((d & 0xC0) != 0x80) ok = false;
                    x = (x << 6) | (d & 0x3F);
                }
                if (ok) {
                    cp = x;
                    i += (size_t)len - 1;
                }
            }
            if (cp >= 0x10000) {
                cp -= 0x10000;
                tpl_buf_addf(b, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                tpl_buf_addf(b, "\\u%04x", cp);
            }
        }
    }
    return tpl_buf_addc(b, '"');
}

static void json_newline(tpl_buf *b, const tv_json_opts *o, int level) {
    if (o->indent < 0 && !o->indent_str) return;
    tpl_buf_addc(b, '\n');
    for (int l = 0; l < level; l++) {
        if (o->indent_str) tpl_buf_add(b, o->indent_str, strlen(o->indent_str));
        else
            for (int k = 0; k < o->indent; k++) tpl_buf_addc(b, ' ');
    }
}

static int cmp_key(const void *x, const void *y) {
    const tv *a = *(const tv *const *)x, *b = *(const tv *const *)y;
    size_t n = a->str.n < b->str.n ? a->str.n : b->str.n;
    int c = n ? memcmp(a->str.s, b->str.s, n) : 0;
    return c ? c : (a->str.n > b->str.n) - (a->str.n < b->str.n);
}

bool tv_to_json(tpl_buf *b, tv v, const tv_json_opts *o, char *why, int depth) {
    char tmp[64];
    if (depth > 100) {
        snprintf(why, 128, "value nested too deeply for tojson");
        return false;
    }
    switch (v.kind) {
    case TV_NONE: return tpl_buf_add(b, "null", 4);
    case TV_BOOL: return v.b ? tpl_buf_add(b, "true", 4) : tpl_buf_add(b, "false", 5);
    case TV_INT: return tpl_buf_addf(b, "%lld", (long long)v.i);
    case TV_FLOAT:
        if (isnan(v.f)) return tpl_buf_add(b, "NaN", 3);
        if (isinf(v.f)) return v.f < 0 ? tpl_buf_add(b, "-Infinity", 9) : tpl_buf_add(b, "Infinity", 8);
        tv_float_repr(v.f, tmp, sizeof tmp);
        return tpl_buf_add(b, tmp, strlen(tmp));
    case TV_STR: return json_str(b, v.str.s, v.str.n, o->ensure_ascii);
    case TV_LIST:
        if (v.list->lazy) {
            snprintf(why, 128, "Object of type generator is not JSON serializable");
            return false;
        }
        if (!v.list->n) return tpl_buf_add(b, "[]", 2);
        tpl_buf_addc(b, '[');
        for (size_t i = 0; i < v.list->n; i++) {
            if (i) tpl_buf_add(b, o->item_sep, strlen(o->item_sep));
            json_newline(b, o, depth + 1);
            if (!tv_to_json(b, v.list->items[i], o, why, depth + 1)) return false;
        }
        json_newline(b, o, depth);
        return tpl_buf_addc(b, ']');
    case TV_DICT:
    case TV_NS: {
        tv_dict *d = v.dict;
        if (!d->n) return tpl_buf_add(b, "{}", 2);
        const tv **order = NULL;
        if (o->sort_keys) {
            for (size_t i = 0; i < d->n; i++)
                if (d->keys[i].kind != TV_STR) {
                    snprintf(why, 128, "tojson(sort_keys=true) needs string keys");
                    return false;
                }
            order = malloc(d->n * sizeof *order);
            if (!order) {
                b->failed = true;
                return false;
            }
            for (size_t i = 0; i < d->n; i++) order[i] = &d->keys[i];
            qsort(order, d->n, sizeof *order, cmp_key);
        }
        tpl_buf_addc(b, '{');
        bool ok = true;
        for (size_t i = 0; i < d->n && ok; i++) {
            size_t k = order ? (size_t)(order[i] - d->keys) : i;
            if (i) tpl_buf_add(b, o->item_sep, strlen(o->item_sep));
            json_newline(b, o, depth + 1);
            tv key = d->keys[k];
            if (key.kind == TV_STR) {
                json_str(b, key.str.s, key.str.n, o->ensure_ascii);
            } else if (key.kind == TV_INT || key.kind == TV_FLOAT || key.kind == TV_BOOL || key.kind == TV_NONE) {
                tpl_buf_addc(b, '"');
                tv_to_json(b, key, o, why, depth + 1);
                tpl_buf_addc(b, '"');
            } else {
                snprintf(why, 128, "keys must be str, int, float, bool or None, not %s", tv_type_name(key));
                ok = false;
                break;
            }
            tpl_buf_add(b, o->key_sep, strlen(o->key_sep));
            ok = tv_to_json(b, d->vals[k], o, why, depth + 1);
        }
        free(order);
        if (!ok) return false;
        json_newline(b, o, depth);
        return tpl_buf_addc(b, '}');
    }
    default:
        snprintf(why, 128, "Object of type %s is not JSON serializable", tv_type_name(v));
        return false;
    }
}
