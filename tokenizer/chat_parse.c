/*
 * Streaming parser of generated text: reasoning, content and tool calls.
 *
 * The parser keeps one buffer of undecided bytes (`pend`) and a state. Each feed
 * appends to it and then emits whatever no later byte can change: text that cannot
 * be the start of the tag the state looks for, and that is not whitespace which a
 * following tag would drop. What is held back is at most a tag's length plus a run
 * of whitespace, except inside a tool call, whose body is kept whole until its
 * closing tag (bounded by MAX_CALL_BYTES). Decisions depend only on the bytes, never
 * on where a piece ended, which is what makes every chunking give the same events.
 */
#define _GNU_SOURCE
#include "tokenizer/tokenizer.h"

#include <cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TAG_THINK "<think>"
#define TAG_THINK_END "</think>"
#define TAG_CALL "<tool_call>"
#define TAG_CALL_END "</tool_call>"
#define MAX_CALL_BYTES ((size_t)1 << 22) /* a longer tool call is reported as malformed */

typedef struct strbuf {
    char *data;
    size_t len, cap;
} strbuf;

static bool sb_reserve(strbuf *b, size_t extra) {
    if (extra > SIZE_MAX - 1 - b->len) return false;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *d = realloc(b->data, cap);
    if (!d) return false;
    b->data = d;
    b->cap = cap;
    return true;
}

static bool sb_append(strbuf *b, const char *s, size_t n) {
    if (!sb_reserve(b, n)) return false;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

/* drop the first n bytes */
static void sb_consume(strbuf *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data) b->data[b->len] = '\0';
}

static void sb_clear(strbuf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

static void sb_free(strbuf *b) {
    free(b->data);
    *b = (strbuf){0};
}

typedef enum state {
    ST_START,         /* AUTO: is there a <think> after leading whitespace? */
    ST_REASON_START,  /* inside reasoning: drop whitespace, and one repeated <think> */
    ST_REASON,        /* reasoning text until </think> */
    ST_CONTENT_START, /* after a tag: drop whitespace */
    ST_CONTENT,       /* content until <tool_call> (when tools are parsed) */
    ST_CALL,          /* a tool call's body until </tool_call> */
    ST_DONE,          /* finished */
} state;

struct halo_chat_parser {
    halo_chat_parse_options opts;
    cJSON *tools; /* parsed opts.tools_json, or NULL */
    halo_chat_event_fn fn;
    void *user;
    state st;
    bool saw_open;   /* ST_REASON_START: the <think> was already consumed */
    strbuf pend;     /* undecided bytes */
    size_t call_scan; /* ST_CALL: where to resume looking for </tool_call> in pend */
    strbuf call_ws;  /* whitespace dropped before the current <tool_call> */
    strbuf content, reasoning;
    cJSON *calls; /* array of OpenAI tool call objects */
    int n_warnings;
    uint64_t rng;
    bool oom;
};

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static size_t skip_ws(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && is_ws(s[i])) i++;
    return i;
}

static size_t rtrim_len(const char *s, size_t n) {
    while (n > 0 && is_ws(s[n - 1])) n--;
    return n;
}

/* Does s[0..n) start with tag? 1: yes; 0: no; -1: s is a proper prefix of tag (undecided). */
static int starts_with_tag(const char *s, size_t n, const char *tag) {
    size_t t = strlen(tag);
    if (n >= t) return memcmp(s, tag, t) == 0;
    return memcmp(s, tag, n) == 0 ? -1 : 0;
}

/* The length of the longest proper suffix of s[0..n) that is a prefix of tag. */
static size_t partial_tag_suffix(const char *s, size_t n, const char *tag) {
    size_t t = strlen(tag);
    size_t k = n < t - 1 ? n : t - 1;
    for (; k > 0; k--)
        if (memcmp(s + n - k, tag, k) == 0) return k;
    return 0;
}

/* ---- events ----------------------------------------------------------------- */

static void emit_text(halo_chat_parser *p, halo_chat_event_kind kind, const char *s, size_t n) {
    if (n == 0) return;
    strbuf *acc = kind == HALO_CHAT_EVENT_REASONING ? &p->reasoning : &p->content;
    if (!sb_append(acc, s, n)) p->oom = true;
    if (p->fn) {
        halo_chat_event ev = {.kind = kind, .text = s, .len = n, .index = -1};
        p->fn(p->user, &ev);
    }
}

static void emit_warning(halo_chat_parser *p, const char *msg) {
    p->n_warnings++;
    if (p->fn) {
        halo_chat_event ev = {.kind = HALO_CHAT_EVENT_WARNING, .text = msg, .len = strlen(msg),
                              .index = -1};
        p->fn(p->user, &ev);
    }
}

static void make_id(halo_chat_parser *p, char id[32]) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    memcpy(id, "call_", 5);
    for (int i = 0; i < 24; i++) {
        /* splitmix64 */
        uint64_t z = (p->rng += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        id[5 + i] = alphabet[z % (sizeof alphabet - 1)];
    }
    id[29] = '\0';
}

/* ---- tool calls ---------------------------------------------------------------- */

typedef struct parsed_call {
    char *name;
    cJSON *args; /* object */
} parsed_call;

typedef struct call_list {
    parsed_call *v;
    size_t n, cap;
} call_list;

static void calls_free(call_list *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        cJSON_Delete(l->v[i].args);
    }
    free(l->v);
    *l = (call_list){0};
}

/* Takes ownership of args. */
static bool calls_push(call_list *l, const char *name, size_t name_len, cJSON *args) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        parsed_call *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            cJSON_Delete(args);
            return false;
        }
        l->v = v;
        l->cap = cap;
    }
    char *nm = strndup(name, name_len);
    if (!nm) {
        cJSON_Delete(args);
        return false;
    }
    l->v[l->n++] = (parsed_call){nm, args};
    return true;
}

/* Parse s[0..n) as exactly one JSON value (whitespace around it allowed). */
static cJSON *parse_json_exact(const char *s, size_t n) {
    if (n == 0) return NULL;
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (!v) return NULL;
    size_t used = (size_t)(end - s);
    if (used > n || skip_ws(end, n - used) != n - used) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

/* {"name": ..., "arguments": {...} | "<json object>"} into l; false with msg on error. */
static bool hermes_one(const cJSON *obj, call_list *l, char *msg, size_t msg_size) {
    if (!cJSON_IsObject(obj)) {
        snprintf(msg, msg_size, "a tool call is not a JSON object");
        return false;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");
    if (!cJSON_IsString(name) || !name->valuestring[0]) {
        snprintf(msg, msg_size, "a tool call has no \"name\" string");
        return false;
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, "arguments");
    if (!a) a = cJSON_GetObjectItemCaseSensitive(obj, "parameters");
    cJSON *args;
    if (!a || cJSON_IsNull(a)) {
        args = cJSON_CreateObject();
    } else if (cJSON_IsObject(a)) {
        args = cJSON_Duplicate(a, 1);
    } else if (cJSON_IsString(a)) {
        args = parse_json_exact(a->valuestring, strlen(a->valuestring));
        if (!args || !cJSON_IsObject(args)) {
            cJSON_Delete(args);
            snprintf(msg, msg_size, "tool call '%.64s': \"arguments\" is a string but not a JSON object",
                     name->valuestring);
            return false;
        }
    } else {
        snprintf(msg, msg_size, "tool call '%.64s': \"arguments\" is not an object",
                 name->valuestring);
        return false;
    }
    if (!args || !calls_push(l, name->valuestring, strlen(name->valuestring), args)) {
        snprintf(msg, msg_size, "out of memory parsing a tool call");
        return false;
    }
    return true;
}

static bool parse_hermes(const char *s, size_t n, call_list *l, char *msg, size_t msg_size) {
    cJSON *v = parse_json_exact(s, n);
    if (!v) {
        snprintf(msg, msg_size, "a tool call is not valid JSON");
        return false;
    }
    bool ok = true;
    if (cJSON_IsArray(v)) {
        if (!cJSON_GetArraySize(v)) {
            snprintf(msg, msg_size, "a tool call is an empty JSON array");
            ok = false;
        }
        for (const cJSON *e = v->child; ok && e; e = e->next) ok = hermes_one(e, l, msg, msg_size);
    } else {
        ok = hermes_one(v, l, msg, msg_size);
    }
    cJSON_Delete(v);
    return ok;
}

/* The JSON-schema "type" of parameter `param` of tool `name`: NULL if unknown. */
static const cJSON *param_type(const halo_chat_parser *p, const char *name, const char *param) {
    if (!p->tools) return NULL;
    const cJSON *t;
    cJSON_ArrayForEach(t, p->tools) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!cJSON_IsObject(fn)) fn = t;
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsString(nm) || strcmp(nm->valuestring, name)) continue;
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(fn, "parameters"), "properties");
        const cJSON *prop = cJSON_GetObjectItemCaseSensitive(props, param);
        return cJSON_GetObjectItemCaseSensitive(prop, "type");
    }
    return NULL;
}

static bool type_is_string_only(const cJSON *type) {
    if (cJSON_IsString(type)) return !strcmp(type->valuestring, "string");
    if (!cJSON_IsArray(type)) return false;
    const cJSON *e;
    cJSON_ArrayForEach(e, type) {
        if (!cJSON_IsString(e)) return false;
        if (strcmp(e->valuestring, "string") && strcmp(e->valuestring, "null")) return false;
    }
    return true;
}

static cJSON *coder_value(const halo_chat_parser *p, const char *fname, const char *pname,
                          const char *v, size_t n) {
    const cJSON *type = param_type(p, fname, pname);
    if (!type_is_string_only(type)) {
        cJSON *j = parse_json_exact(v, n);
        if (j) return j;
    }
    char *s = strndup(v, n);
    if (!s) return NULL;
    cJSON *j = cJSON_CreateString(s);
    free(s);
    return j;
}

static const char *find_bytes(const char *s, size_t n, const char *needle) {
    return memmem(s, n, needle, strlen(needle));
}

/* <function=NAME>\n(<parameter=P>\nVALUE\n</parameter>\n)*</function>, one or more. */
static bool parse_coder(const halo_chat_parser *p, const char *s, size_t n, call_list *l, char *msg,
                        size_t msg_size) {
    size_t i = skip_ws(s, n);
    if (i == n) {
        snprintf(msg, msg_size, "a tool call has no <function=...>");
        return false;
    }
    while (i < n) {
        if (starts_with_tag(s + i, n - i, "<function=") != 1) {
            snprintf(msg, msg_size, "unexpected text in a tool call (expected <function=NAME>)");
            return false;
        }
        i += strlen("<function=");
        const char *gt = memchr(s + i, '>', n - i);
        size_t name_len = gt ? (size_t)(gt - (s + i)) : 0;
        char fname[256];
        if (!gt || name_len == 0 || name_len >= sizeof fname || memchr(s + i, '\n', name_len) ||
            memchr(s + i, '\0', name_len)) {
            snprintf(msg, msg_size, "a tool call has a bad <function=NAME> tag");
            return false;
        }
        memcpy(fname, s + i, name_len);
        fname[name_len] = '\0';
        i += name_len + 1;
        cJSON *args = cJSON_CreateObject();
        if (!args) goto oom;
        for (;;) {
            i += skip_ws(s + i, n - i);
            if (starts_with_tag(s + i, n - i, "</function>") == 1) {
                i += strlen("</function>");
                break;
            }
            if (starts_with_tag(s + i, n - i, "<parameter=") != 1) {
                snprintf(msg, msg_size, "tool call '%.64s': expected <parameter=NAME> or </function>",
                         fname);
                cJSON_Delete(args);
                return false;
            }
            i += strlen("<parameter=");
            gt = memchr(s + i, '>', n - i);
            size_t plen = gt ? (size_t)(gt - (s + i)) : 0;
            char pname[256];
            if (!gt || plen == 0 || plen >= sizeof pname || memchr(s + i, '\n', plen) ||
                memchr(s + i, '\0', plen)) {
                snprintf(msg, msg_size, "tool call '%.64s': a bad <parameter=NAME> tag", fname);
                cJSON_Delete(args);
                return false;
            }
            memcpy(pname, s + i, plen);
            pname[plen] = '\0';
            i += plen + 1;
            const char *end = find_bytes(s + i, n - i, "</parameter>");
            if (!end) {
                snprintf(msg, msg_size, "tool call '%.64s': parameter '%.64s' is not closed", fname,
                         pname);
                cJSON_Delete(args);
                return false;
            }
            /* the value sits between one newline after the tag and one before the close */
            size_t vb = i, ve = (size_t)(end - s);
            if (vb < ve && s[vb] == '\n') vb++;
            if (ve > vb && s[ve - 1] == '\n') ve--;
            if (ve > vb && s[ve - 1] == '\r') ve--;
            cJSON *val = coder_value(p, fname, pname, s + vb, ve - vb);
            if (!val) {
                cJSON_Delete(args);
                goto oom;
            }
            cJSON_DeleteItemFromObjectCaseSensitive(args, pname); /* a repeated one: last wins */
            if (!cJSON_AddItemToObject(args, pname, val)) {
                cJSON_Delete(val);
                cJSON_Delete(args);
                goto oom;
            }
            i = (size_t)(end - s) + strlen("</parameter>");
        }
        if (!calls_push(l, fname, name_len, args)) goto oom;
        i += skip_ws(s + i, n - i);
    }
    return true;
oom:
    snprintf(msg, msg_size, "out of memory parsing a tool call");
    return false;
}

/* Add the calls to p->calls and emit them. */
static void emit_calls(halo_chat_parser *p, call_list *l) {
    for (size_t k = 0; k < l->n; k++) {
        char *args = cJSON_PrintUnformatted(l->v[k].args);
        cJSON *obj = cJSON_CreateObject(), *fn = cJSON_CreateObject();
        char id[32];
        make_id(p, id);
        bool ok = args && obj && fn && cJSON_AddStringToObject(obj, "id", id) &&
                  cJSON_AddStringToObject(obj, "type", "function") &&
                  cJSON_AddStringToObject(fn, "name", l->v[k].name) &&
                  cJSON_AddStringToObject(fn, "arguments", args);
        if (ok) ok = cJSON_AddItemToObject(obj, "function", fn);
        else cJSON_Delete(fn);
        char *json = ok ? cJSON_PrintUnformatted(obj) : NULL;
        if (!json || !cJSON_AddItemToArray(p->calls, obj)) {
            cJSON_Delete(obj);
            free(json);
            free(args);
            p->oom = true;
            return;
        }
        if (p->fn) {
            halo_chat_event ev = {.kind = HALO_CHAT_EVENT_TOOL_CALL,
                                  .text = json,
                                  .len = strlen(json),
                                  .index = cJSON_GetArraySize(p->calls) - 1,
                                  .id = id,
                                  .name = l->v[k].name,
                                  .arguments = args};
            p->fn(p->user, &ev);
        }
        free(json);
        free(args);
    }
}

/* The raw text of a call that failed: the whitespace before it, the tags, the body. */
static void emit_raw_call(halo_chat_parser *p, const char *body, size_t n, bool closed) {
    emit_text(p, HALO_CHAT_EVENT_CONTENT, p->call_ws.data, p->call_ws.len);
    emit_text(p, HALO_CHAT_EVENT_CONTENT, TAG_CALL, strlen(TAG_CALL));
    emit_text(p, HALO_CHAT_EVENT_CONTENT, body, n);
    if (closed) emit_text(p, HALO_CHAT_EVENT_CONTENT, TAG_CALL_END, strlen(TAG_CALL_END));
    sb_clear(&p->call_ws);
}

/* A complete <tool_call> body. Returns true if it became calls. */
static bool finish_call(halo_chat_parser *p, const char *body, size_t n) {
    call_list l = {0};
    char msg[400];
    size_t i = skip_ws(body, n);
    bool ok;
    if (i < n && (body[i] == '{' || body[i] == '[')) {
        ok = parse_hermes(body, n, &l, msg, sizeof msg);
    } else {
        ok = parse_coder(p, body, n, &l, msg, sizeof msg);
    }
    if (ok) {
        emit_calls(p, &l);
        sb_clear(&p->call_ws);
    } else {
        char full[600];
        snprintf(full, sizeof full, "malformed tool call kept as text: %s", msg);
        emit_warning(p, full);
        emit_raw_call(p, body, n, true);
    }
    calls_free(&l);
    return ok;
}

/* ---- the state machine ------------------------------------------------------- */

/* Scan pend for `tag` in a text state: emit the text before it (whitespace next to the
 * tag dropped), or, without it, all text that cannot start the tag or be whitespace
 * before it. Returns true when the tag was consumed (*dropped_ws: the whitespace). */
static bool scan_text(halo_chat_parser *p, const char *tag, halo_chat_event_kind kind, bool final,
                      size_t *dropped_ws) {
    strbuf *b = &p->pend;
    const char *hit = tag ? find_bytes(b->data, b->len, tag) : NULL;
    if (hit) {
        size_t at = (size_t)(hit - b->data);
        size_t keep = rtrim_len(b->data, at);
        emit_text(p, kind, b->data, keep);
        if (dropped_ws) *dropped_ws = at - keep;
        if (dropped_ws && at > keep && !sb_append(&p->call_ws, b->data + keep, at - keep))
            p->oom = true;
        sb_consume(b, at + strlen(tag));
        return true;
    }
    size_t upto = b->len;
    if (!final && tag) {
        upto -= partial_tag_suffix(b->data, b->len, tag);
        upto = rtrim_len(b->data, upto);
    }
    emit_text(p, kind, b->data, upto);
    sb_consume(b, upto);
    return false;
}

static void run(halo_chat_parser *p, bool final) {
    for (;;) {
        strbuf *b = &p->pend;
        switch (p->st) {
        case ST_START: {
            size_t ws = skip_ws(b->data, b->len);
            int m = starts_with_tag(b->data + ws, b->len - ws, TAG_THINK);
            if (m == 1) {
                sb_consume(b, ws + strlen(TAG_THINK));
                p->saw_open = true;
                p->st = ST_REASON_START;
                continue;
            }
            if (m == -1 && !final) return; /* undecided (this includes nothing but whitespace) */
            p->st = ST_CONTENT;
            continue;
        }
        case ST_REASON_START: {
            sb_consume(b, skip_ws(b->data, b->len));
            if (!p->saw_open) {
                int m = starts_with_tag(b->data, b->len, TAG_THINK);
                if (m == 1) {
                    sb_consume(b, strlen(TAG_THINK));
                    p->saw_open = true;
                    continue;
                }
                if (m == -1 && !final) return;
            }
            if (b->len == 0 && !final) return;
            p->st = ST_REASON;
            continue;
        }
        case ST_REASON:
            if (scan_text(p, TAG_THINK_END, HALO_CHAT_EVENT_REASONING, final, NULL)) {
                p->st = ST_CONTENT_START;
                continue;
            }
            return;
        case ST_CONTENT_START:
            sb_consume(b, skip_ws(b->data, b->len));
            if (b->len == 0) return;
            p->st = ST_CONTENT;
            continue;
        case ST_CONTENT: {
            size_t ws = 0;
            sb_clear(&p->call_ws);
            if (scan_text(p, p->opts.tool_calls ? TAG_CALL : NULL, HALO_CHAT_EVENT_CONTENT, final,
                          &ws)) {
                p->st = ST_CALL;
                p->call_scan = 0;
                continue;
            }
            return;
        }
        case ST_CALL: {
            size_t tl = strlen(TAG_CALL_END);
            const char *hit = find_bytes(b->data + p->call_scan, b->len - p->call_scan, TAG_CALL_END);
            size_t at = hit ? (size_t)(hit - b->data) : b->len;
            if (hit && at <= MAX_CALL_BYTES) {
                bool ok = finish_call(p, b->data, at);
                sb_consume(b, at + tl);
                p->st = ok ? ST_CONTENT_START : ST_CONTENT;
                continue;
            }
            if (b->len > MAX_CALL_BYTES) {
                /* cut at the same byte whatever the chunking: the rest is content again */
                emit_warning(p, "malformed tool call kept as text: longer than 4 MiB");
                emit_raw_call(p, b->data, MAX_CALL_BYTES + 1, false);
                sb_consume(b, MAX_CALL_BYTES + 1);
                p->st = ST_CONTENT;
                continue;
            }
            if (final) {
                emit_warning(p, "malformed tool call kept as text: <tool_call> is not closed");
                emit_raw_call(p, b->data, b->len, false);
                sb_consume(b, b->len);
                p->st = ST_CONTENT;
                continue;
            }
            p->call_scan = b->len >= tl ? b->len - tl + 1 : 0;
            return;
        }
        case ST_DONE:
            return;
        }
    }
}

/* ---- the API ------------------------------------------------------------------ */

static state initial_state(const halo_chat_parse_options *o) {
    switch (o->think) {
    case HALO_CHAT_THINK_AUTO: return ST_START;
    case HALO_CHAT_THINK_OPEN: return ST_REASON_START;
    default: return ST_CONTENT;
    }
}

int halo_chat_parser_new(const halo_chat_parse_options *opts, halo_chat_event_fn fn, void *user,
                         halo_chat_parser **out, halo_error *err) {
    *out = NULL;
    halo_chat_parse_options o = opts ? *opts : (halo_chat_parse_options){0};
    if (o.think != HALO_CHAT_THINK_NONE && o.think != HALO_CHAT_THINK_AUTO &&
        o.think != HALO_CHAT_THINK_OPEN)
        return halo_error_set(err, HALO_ERR_ARG, "chat parser: unknown reasoning mode %d",
                              (int)o.think);
    cJSON *tools = NULL;
    if (o.tools_json) {
        tools = cJSON_Parse(o.tools_json);
        if (!cJSON_IsArray(tools)) {
            cJSON_Delete(tools);
            return halo_error_set(err, HALO_ERR_ARG, "chat parser: the tools are not a JSON array");
        }
    }
    halo_chat_parser *p = calloc(1, sizeof *p);
    cJSON *calls = cJSON_CreateArray();
    /* the buffers always exist (never NULL, so never memcmp/memmem on NULL) */
    if (!p || !calls || !sb_append(&p->pend, "", 0) || !sb_append(&p->call_ws, "", 0) ||
        !sb_append(&p->content, "", 0) || !sb_append(&p->reasoning, "", 0)) {
        if (p) {
            sb_free(&p->pend);
            sb_free(&p->call_ws);
            sb_free(&p->content);
        }
        free(p);
        cJSON_Delete(calls);
        cJSON_Delete(tools);
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory creating the chat parser");
    }
    o.tools_json = NULL; /* not kept: the caller's string may go away */
    p->opts = o;
    p->tools = tools;
    p->calls = calls;
    p->fn = fn;
    p->user = user;
    p->rng = o.id_seed ? o.id_seed
                       : ((uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull) ^ (uint64_t)(uintptr_t)p ^
                             (uint64_t)clock();
    p->st = initial_state(&o);
    *out = p;
    return 0;
}

int halo_chat_parser_feed(halo_chat_parser *p, const char *text, size_t len, halo_error *err) {
    if (p->st == ST_DONE)
        return halo_error_set(err, HALO_ERR_ARG, "chat parser: fed after the end of the output");
    if (!sb_append(&p->pend, text, len)) p->oom = true;
    else run(p, false);
    if (p->oom) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory parsing the output");
    return 0;
}

int halo_chat_parser_finish(halo_chat_parser *p, halo_error *err) {
    if (p->st == ST_DONE) return 0;
    run(p, true);
    p->st = ST_DONE;
    if (p->oom) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory parsing the output");
    return 0;
}

bool halo_chat_parser_in_reasoning(const halo_chat_parser *p) {
    return p->st == ST_REASON || p->st == ST_REASON_START;
}

const char *halo_chat_parser_content(const halo_chat_parser *p, size_t *len) {
    if (len) *len = p->content.len;
    return p->content.data ? p->content.data : "";
}

const char *halo_chat_parser_reasoning(const halo_chat_parser *p, size_t *len) {
    if (len) *len = p->reasoning.len;
    return p->reasoning.data ? p->reasoning.data : "";
}

int halo_chat_parser_n_tool_calls(const halo_chat_parser *p) { return cJSON_GetArraySize(p->calls); }

int halo_chat_parser_n_warnings(const halo_chat_parser *p) { return p->n_warnings; }

char *halo_chat_parser_tool_calls_json(const halo_chat_parser *p) {
    return cJSON_PrintUnformatted(p->calls);
}

void halo_chat_parser_reset(halo_chat_parser *p) {
    p->st = initial_state(&p->opts);
    p->saw_open = false;
    sb_clear(&p->pend);
    sb_clear(&p->content);
    sb_clear(&p->reasoning);
    sb_clear(&p->call_ws);
    p->call_scan = 0;
    p->n_warnings = 0;
    p->oom = false;
    while (cJSON_GetArraySize(p->calls) > 0) cJSON_DeleteItemFromArray(p->calls, 0);
}

void halo_chat_parser_free(halo_chat_parser *p) {
    if (!p) return;
    sb_free(&p->pend);
    sb_free(&p->call_ws);
    sb_free(&p->content);
    sb_free(&p->reasoning);
    cJSON_Delete(p->calls);
    cJSON_Delete(p->tools);
    free(p);
}
