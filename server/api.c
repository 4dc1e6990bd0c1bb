/*
 * The OpenAI request format: a body is parsed by cJSON, then every field halo
 * reads is checked for its type and range and copied into an srv_request. A wrong
 * type or value is a 400 naming the field (param), as OpenAI's server answers.
 */
#include "server/internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffers ------------------------------------------------------------------ */

void srv_buf_append(srv_buf *b, const char *s, size_t n) {
    if (b->failed || n == 0) return;
    if (n > SIZE_MAX - b->len - 1) {
        b->failed = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap = cap > SIZE_MAX / 2 ? b->len + n + 1 : cap * 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->failed = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void srv_buf_puts(srv_buf *b, const char *s) { srv_buf_append(b, s, strlen(s)); }

void srv_buf_free(srv_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- errors -------------------------------------------------------------------- */

void srv_error(halo_api_error *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = status == 401   ? "authentication_error"
              : status == 404 ? "not_found_error"
              : status == 503 ? "unavailable_error"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

char *halo_api_error_json(const halo_api_error *e) {
    cJSON *root = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON_AddStringToObject(o, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0])
        cJSON_AddStringToObject(o, "param", e->param);
    else
        cJSON_AddNullToObject(o, "param");
    cJSON_AddNullToObject(o, "code");
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* ---- field readers: absent is fine, a wrong type is an error -------------------- */

static bool get_bool(const cJSON *o, const char *name, bool *out, halo_api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsBool(v)) {
        srv_error(e, 400, name, "'%s' must be a boolean", name);
        return false;
    }
    *out = cJSON_IsTrue(v);
    return true;
}

static bool get_num(const cJSON *o, const char *name, double lo, double hi, double *out,
                    halo_api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
        srv_error(e, 400, name, "'%s' must be a number", name);
        return false;
    }
    if (v->valuedouble < lo || v->valuedouble > hi) {
        srv_error(e, 400, name, "'%s' is %g, outside [%g, %g]", name, v->valuedouble, lo, hi);
        return false;
    }
    *out = v->valuedouble;
    return true;
}

static bool get_int(const cJSON *o, const char *name, double lo, double hi, int64_t *out,
                    halo_api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return true;
    double d = 0;
    if (!get_num(o, name, lo, hi, &d, e)) return false;
    if (d != floor(d)) {
        srv_error(e, 400, name, "'%s' must be an integer", name);
        return false;
    }
    *out = (int64_t)d;
    return true;
}

static bool get_float(const cJSON *o, const char *name, double lo, double hi, float *out,
                      halo_api_error *e) {
    double d = *out;
    if (!get_num(o, name, lo, hi, &d, e)) return false;
    *out = (float)d;
    return true;
}

/* A content field: a string, null, or an array of parts {"type":"text","text":...}
 * joined. Returns a new string item (or null), NULL with e on error. */
static cJSON *flatten_content(const cJSON *c, const char *param, halo_api_error *e) {
    /* null (an assistant turn of only tool calls) is "" for templates, which test
     * `'</think>' in content` and the like */
    if (!c || cJSON_IsNull(c)) return cJSON_CreateString("");
    if (cJSON_IsString(c)) return cJSON_CreateString(c->valuestring);
    if (!cJSON_IsArray(c)) {
        srv_error(e, 400, param, "'%s' must be a string or an array of content parts", param);
        return NULL;
    }
    srv_buf b = {0};
    srv_buf_append(&b, "", 0);
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type)) {
            srv_error(e, 400, param, "each part of '%s' must be an object with a string 'type'",
                      param);
            srv_buf_free(&b);
            return NULL;
        }
        if (strcmp(type->valuestring, "text") != 0) {
            srv_error(e, 400, param,
                      "content part type '%.40s' is not supported (this model reads text only)",
                      type->valuestring);
            srv_buf_free(&b);
            return NULL;
        }
        if (!cJSON_IsString(text)) {
            srv_error(e, 400, param, "a text part of '%s' needs a string 'text'", param);
            srv_buf_free(&b);
            return NULL;
        }
        srv_buf_puts(&b, text->valuestring);
    }
    cJSON *out = b.failed ? NULL : cJSON_CreateString(b.data ? b.data : "");
    srv_buf_free(&b);
    if (!out) srv_error(e, 500, NULL, "out of memory");
    return out;
}

/* messages -> a normalized copy: role, content (string or null), name,
 * tool_call_id, tool_calls (arguments parsed to objects where they are JSON, which
 * templates iterate), reasoning_content. */
static cJSON *parse_messages(const cJSON *msgs, halo_api_error *e) {
    if (!msgs) {
        srv_error(e, 400, "messages", "'messages' is required");
        return NULL;
    }
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        srv_error(e, 400, "messages", "'messages' must be a non-empty array");
        return NULL;
    }
    cJSON *out = cJSON_CreateArray();
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        char param[64];
        snprintf(param, sizeof param, "messages[%d]", i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            srv_error(e, 400, param, "%s must be an object with a string 'role'", param);
            goto fail;
        }
        const char *r = role->valuestring;
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") &&
            strcmp(r, "tool") && strcmp(r, "developer")) {
            srv_error(e, 400, param,
                      "%s: role '%.40s' is not one of system, developer, user, assistant, tool",
                      param, r);
            goto fail;
        }
        cJSON *nm = cJSON_CreateObject();
        cJSON_AddItemToArray(out, nm);
        cJSON_AddStringToObject(nm, "role", strcmp(r, "developer") ? r : "system");
        char cparam[80];
        snprintf(cparam, sizeof cparam, "%s.content", param);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        if (!content && !(strcmp(r, "assistant") == 0 && calls)) {
            srv_error(e, 400, cparam, "%s needs 'content'", param);
            goto fail;
        }
        cJSON *fc = flatten_content(content, cparam, e);
        if (!fc) goto fail;
        cJSON_AddItemToObject(nm, "content", fc);
        static const char *const strs[] = {"name", "tool_call_id", "reasoning_content"};
        for (size_t k = 0; k < sizeof strs / sizeof *strs; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, strs[k]);
            if (!v || cJSON_IsNull(v)) continue;
            if (!cJSON_IsString(v)) {
                srv_error(e, 400, param, "%s.%s must be a string", param, strs[k]);
                goto fail;
            }
            cJSON_AddStringToObject(nm, strs[k], v->valuestring);
        }
        if (calls && !cJSON_IsNull(calls)) {
            if (!cJSON_IsArray(calls)) {
                srv_error(e, 400, param, "%s.tool_calls must be an array", param);
                goto fail;
            }
            cJSON *nc = cJSON_AddArrayToObject(nm, "tool_calls");
            const cJSON *c;
            cJSON_ArrayForEach(c, calls) {
                const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
                const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
                if (!cJSON_IsObject(c) || !cJSON_IsObject(fn) || !cJSON_IsString(name)) {
                    srv_error(e, 400, param,
                              "%s.tool_calls: each call needs function.name (a string)", param);
                    goto fail;
                }
                cJSON *call = cJSON_Duplicate(c, true);
                cJSON *nfn = cJSON_GetObjectItemCaseSensitive(call, "function");
                if (cJSON_IsString(args)) {
                    cJSON *parsed = cJSON_Parse(args->valuestring);
                    if (cJSON_IsObject(parsed))
                        cJSON_ReplaceItemInObjectCaseSensitive(nfn, "arguments", parsed);
                    else
                        cJSON_Delete(parsed);
                } else if (args && !cJSON_IsObject(args)) {
                    cJSON_Delete(call);
                    srv_error(e, 400, param,
                              "%s.tool_calls: function.arguments must be a string or object", param);
                    goto fail;
                }
                cJSON_AddItemToArray(nc, call);
            }
        }
        i++;
    }
    return out;
fail:
    cJSON_Delete(out);
    return NULL;
}

static bool parse_stop(const cJSON *o, srv_request *r, halo_api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "stop");
    if (!v || cJSON_IsNull(v)) return true;
    int n = cJSON_IsString(v) ? 1 : cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n < 0) {
        srv_error(e, 400, "stop", "'stop' must be a string or an array of strings");
        return false;
    }
    if (n > SRV_MAX_STOP) {
        srv_error(e, 400, "stop", "'stop' has %d strings; at most %d", n, SRV_MAX_STOP);
        return false;
    }
    r->stop = calloc((size_t)n + 1, sizeof *r->stop);
    if (!r->stop) {
        srv_error(e, 500, NULL, "out of memory");
        return false;
    }
    const cJSON *s = cJSON_IsString(v) ? v : v->child;
    for (int i = 0; i < n; i++, s = s->next) {
        if (!cJSON_IsString(s) || !s->valuestring[0] ||
            strlen(s->valuestring) > SRV_MAX_STOP_LEN) {
            srv_error(e, 400, "stop", "each stop sequence must be a string of 1 to %d bytes",
                      SRV_MAX_STOP_LEN);
            return false;
        }
        if (!(r->stop[r->n_stop++] = strdup(s->valuestring))) {
            srv_error(e, 500, NULL, "out of memory");
            return false;
        }
    }
    return true;
}

static bool parse_bias(const cJSON *o, int32_t n_vocab, srv_request *r, halo_api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "logit_bias");
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsObject(v)) {
        srv_error(e, 400, "logit_bias", "'logit_bias' must be an object {\"token id\": bias}");
        return false;
    }
    int n = cJSON_GetArraySize(v);
    if (n > 4096) {
        srv_error(e, 400, "logit_bias", "'logit_bias' has %d entries; at most 4096", n);
        return false;
    }
    r->bias = calloc((size_t)n + 1, sizeof *r->bias);
    if (!r->bias) {
        srv_error(e, 500, NULL, "out of memory");
        return false;
    }
    const cJSON *b;
    cJSON_ArrayForEach(b, v) {
        char *end;
        long id = strtol(b->string, &end, 10);
        if (end == b->string || *end || id < 0 || id >= n_vocab) {
            srv_error(e, 400, "logit_bias", "logit_bias key '%.40s' is not a token id (0..%d)",
                      b->string, n_vocab - 1);
            return false;
        }
        if (!cJSON_IsNumber(b) || isnan(b->valuedouble) || b->valuedouble < -100 ||
            b->valuedouble > 100) {
            srv_error(e, 400, "logit_bias", "logit_bias values must be numbers in [-100, 100]");
            return false;
        }
        /* OpenAI: -100 bans the token in practice */
        r->bias[r->n_bias].token = (int32_t)id;
        r->bias[r->n_bias].bias = b->valuedouble <= -100 ? -INFINITY : (float)b->valuedouble;
        r->n_bias++;
    }
    r->sp.logit_bias = r->bias;
    r->sp.n_logit_bias = r->n_bias;
    return true;
}

/* tool_choice: *forced true for "required" or a named function (*name, else NULL);
 * *none for "none". */
static bool parse_tool_choice(const cJSON *choice, bool *forced, const char **name, bool *none,
                              halo_api_error *e) {
    *forced = *none = false;
    *name = NULL;
    if (!choice || cJSON_IsNull(choice)) return true;
    if (cJSON_IsString(choice)) {
        const char *c = choice->valuestring;
        if (strcmp(c, "none") && strcmp(c, "auto") && strcmp(c, "required")) {
            srv_error(e, 400, "tool_choice",
                      "'tool_choice' must be none, auto, required or an object");
            return false;
        }
        *none = !strcmp(c, "none");
        *forced = !strcmp(c, "required");
        return true;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(choice, "type");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(choice, "function");
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
    if (!cJSON_IsObject(choice) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") ||
        !cJSON_IsString(nm)) {
        srv_error(e, 400, "tool_choice",
                  "'tool_choice' must be none, auto, required or {\"type\":\"function\","
                  "\"function\":{\"name\":...}}");
        return false;
    }
    *forced = true;
    *name = nm->valuestring;
    return true;
}

/* A forced tool call: the grammar of the tools' calls (of the named one only); several
 * calls unless parallel_tool_calls is false. */
static bool tool_call_grammar(const cJSON *o, srv_request *r, const char *name, char **gbnf,
                              halo_api_error *e) {
    if (!r->tools) {
        srv_error(e, 400, "tool_choice",
                  "'tool_choice' forces a tool call, but there are no 'tools'");
        return false;
    }
    bool parallel = true;
    if (!get_bool(o, "parallel_tool_calls", &parallel, e)) return false;
    halo_error err = {0};
    if (halo_tool_call_gbnf(r->tools, name, parallel, gbnf, &err)) {
        srv_error(e, err.status == HALO_ERR_NOMEM ? 500 : 400, name ? "tool_choice" : "tools", "%s",
                  err.msg);
        return false;
    }
    return true;
}

static bool parse_tools(const cJSON *o, srv_request *r, char **gbnf, halo_api_error *e) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(o, "tools");
    bool forced, none;
    const char *forced_name;
    if (!parse_tool_choice(cJSON_GetObjectItemCaseSensitive(o, "tool_choice"), &forced,
                           &forced_name, &none, e))
        return false;
    if (none) return true; /* the model sees no tools */
    if (forced && *gbnf) {
        srv_error(e, 400, "tool_choice",
                  "a forced 'tool_choice' cannot be combined with 'grammar', 'json_schema' or "
                  "'response_format'");
        return false;
    }
    if (!tools || cJSON_IsNull(tools))
        return !forced || tool_call_grammar(o, r, forced_name, gbnf, e);
    if (!cJSON_IsArray(tools)) {
        srv_error(e, 400, "tools", "'tools' must be an array");
        return false;
    }
    const cJSON *t;
    int i = 0;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        if (!cJSON_IsObject(t) || !cJSON_IsObject(fn) || !cJSON_IsString(name) ||
            (params && !cJSON_IsObject(params))) {
            srv_error(e, 400, "tools",
                      "tools[%d] must be {\"type\":\"function\",\"function\":{\"name\":..., "
                      "\"parameters\":{...}}}",
                      i);
            return false;
        }
        i++;
    }
    if (i > 0 && !(r->tools = cJSON_Duplicate(tools, true))) {
        srv_error(e, 500, NULL, "out of memory");
        return false;
    }
    return !forced || tool_call_grammar(o, r, forced_name, gbnf, e);
}

/* ---- constrained decoding -------------------------------------------------------------- */

/* One more source of a grammar: a second one is a 400. */
static bool take_grammar(char **gbnf, const char **from, char *text, const char *field,
                         halo_api_error *e) {
    if (!text) {
        srv_error(e, 500, NULL, "out of memory");
        return false;
    }
    if (*gbnf) {
        free(text);
        srv_error(e, 400, field, "'%s' conflicts with '%s': give one constraint", field,
                  *from ? *from : "another field");
        return false;
    }
    *gbnf = text;
    *from = field;
    return true;
}

static bool schema_grammar(const cJSON *schema, const char *field, char **gbnf, const char **from,
                           halo_api_error *e) {
    if (!cJSON_IsObject(schema) && !cJSON_IsBool(schema)) {
        srv_error(e, 400, field, "'%s' must be a JSON schema (an object)", field);
        return false;
    }
    char *text = NULL;
    halo_error err = {0};
    if (halo_json_schema_to_gbnf(schema, &text, &err)) {
        srv_error(e, err.status == HALO_ERR_NOMEM ? 500 : 400, field, "%s", err.msg);
        return false;
    }
    return take_grammar(gbnf, from, text, field, e);
}

/* response_format: text (nothing), json_object, json_schema {name, schema, strict} */
static bool parse_response_format(const cJSON *rf, char **gbnf, const char **from,
                                  halo_api_error *e) {
    if (!rf || cJSON_IsNull(rf)) return true;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsObject(rf) || !cJSON_IsString(t)) {
        srv_error(e, 400, "response_format", "'response_format' must be {\"type\": ...}");
        return false;
    }
    const char *type = t->valuestring;
    if (!strcmp(type, "text")) return true;
    if (!strcmp(type, "json_object")) {
        /* llama-server's form may carry a schema too */
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(rf, "schema");
        if (schema) return schema_grammar(schema, "response_format", gbnf, from, e);
        return take_grammar(gbnf, from, strdup(halo_json_object_gbnf()), "response_format", e);
    }
    if (!strcmp(type, "json_schema")) {
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
        if (!cJSON_IsObject(js) || !schema) {
            srv_error(e, 400, "response_format",
                      "response_format json_schema needs {\"json_schema\": {\"name\": ..., "
                      "\"schema\": {...}}}");
            return false;
        }
        return schema_grammar(schema, "response_format", gbnf, from, e);
    }
    srv_error(e, 400, "response_format",
              "response_format type '%.40s' is not one of text, json_object, json_schema", type);
    return false;
}

/* grammar, json_schema, response_format: at most one, as GBNF text in *gbnf */
static bool parse_constraints(const cJSON *o, char **gbnf, const char **from, halo_api_error *e) {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(o, "grammar");
    if (g && !cJSON_IsNull(g)) {
        if (!cJSON_IsString(g)) {
            srv_error(e, 400, "grammar", "'grammar' must be a string (GBNF)");
            return false;
        }
        if (g->valuestring[0] && !take_grammar(gbnf, from, strdup(g->valuestring), "grammar", e))
            return false;
    }
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(o, "json_schema");
    if (js && !cJSON_IsNull(js) && !schema_grammar(js, "json_schema", gbnf, from, e)) return false;
    return parse_response_format(cJSON_GetObjectItemCaseSensitive(o, "response_format"), gbnf, from,
                                 e);
}

static bool compile_grammar(const char *gbnf, const char *from, srv_request *r, halo_api_error *e) {
    halo_error err = {0};
    if (halo_grammar_compile(gbnf, strlen(gbnf), NULL, &r->grammar, &err)) {
        srv_error(e, err.status == HALO_ERR_NOMEM ? 500 : 400, from, "%s", err.msg);
        return false;
    }
    return true;
}

static bool opt_string(const cJSON *o, const char *name, char **out, halo_api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (v && !cJSON_IsNull(v) && !cJSON_IsString(v)) {
        srv_error(e, 400, name, "'%s' must be a string", name);
        return false;
    }
    if (!(*out = strdup(v && cJSON_IsString(v) ? v->valuestring : ""))) {
        srv_error(e, 500, NULL, "out of memory");
        return false;
    }
    return true;
}

/* /infill: input_prefix, input_suffix, input_extra [{filename, text}], prompt (all optional) */
static bool parse_infill(const cJSON *o, srv_request *r, halo_api_error *e) {
    if (!opt_string(o, "input_prefix", &r->input_prefix, e) ||
        !opt_string(o, "input_suffix", &r->input_suffix, e) || !opt_string(o, "prompt", &r->prompt, e))
        return false;
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, "input_extra");
    if (!x || cJSON_IsNull(x)) return true;
    if (!cJSON_IsArray(x)) {
        srv_error(e, 400, "input_extra", "'input_extra' must be an array of {\"filename\", \"text\"}");
        return false;
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, x) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "text");
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "filename");
        if (!cJSON_IsObject(c) || (t && !cJSON_IsString(t)) || (f && !cJSON_IsString(f))) {
            srv_error(e, 400, "input_extra",
                      "each 'input_extra' chunk must be {\"filename\": string, \"text\": string}");
            return false;
        }
    }
    if (!(r->input_extra = cJSON_Duplicate(x, true))) {
        srv_error(e, 500, NULL, "out of memory");
        return false;
    }
    return true;
}

static bool parse_prompt(const cJSON *o, int32_t n_vocab, srv_request *r, halo_api_error *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    if (!p) {
        srv_error(e, 400, "prompt", "'prompt' is required");
        return false;
    }
    /* ["text"] and [[ids]] are the one-prompt forms of the list of prompts (lm-eval's
     * local-completions sends [[ids]]) */
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 &&
        (cJSON_IsString(p->child) || cJSON_IsArray(p->child)))
        p = p->child;
    if (cJSON_IsString(p)) {
        if (!(r->prompt = strdup(p->valuestring))) {
            srv_error(e, 500, NULL, "out of memory");
            return false;
        }
        return true;
    }
    int n = cJSON_IsArray(p) ? cJSON_GetArraySize(p) : -1;
    if (n <= 0) {
        srv_error(e, 400, "prompt", "'prompt' must be a string or a non-empty array of token ids");
        return false;
    }
    r->prompt_ids = malloc(sizeof(int32_t) * (size_t)n);
    if (!r->prompt_ids) {
        srv_error(e, 500, NULL, "out of memory");
        return false;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, p) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
            t->valuedouble >= n_vocab) {
            srv_error(e, 400, "prompt",
                      "'prompt' arrays must hold token ids 0..%d (several prompts in one "
                      "request are not supported)",
                      n_vocab - 1);
            return false;
        }
        r->prompt_ids[r->n_prompt_ids++] = (int32_t)t->valuedouble;
    }
    return true;
}

/* Every top-level field is one halo implements, one that changes nothing for halo, or one
 * given at the value that turns it off; anything else is a 400 naming it (never silently
 * ignored: a request relying on it would get something else than it asked for). */
static bool fields_known(const cJSON *o, halo_api_error *e) {
    static const char *const used[] = {
        "model",
        "messages",
        "prompt",
        "stream",
        "stream_options",
        "cache_prompt",
        "ignore_eos",
        "logprobs",
        "top_logprobs",
        "n_probs",
        "echo",
        "max_tokens",
        "max_completion_tokens",
        "n_predict",
        "n",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repeat_penalty",
        "repeat_last_n",
        "seed",
        "stop",
        "logit_bias",
        "response_format",
        "tools",
        "tool_choice",
        "chat_template_kwargs",
        "grammar",
        "json_schema",
        "parallel_tool_calls",
        "id_slot",
        "input_prefix",
        "input_suffix",
        "input_extra",
    };
    /* no effect on what halo generates: bookkeeping of other services, or halo's behaviour
     * anyway (several tool calls in one turn are allowed) */
    static const char *const inert[] = {
        "user",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "timings_per_token",
        "return_progress",
        "t_max_predict_ms",
        /* settings of samplers whose switch (below) must be off: no effect then */
        "xtc_threshold",
        "dry_base",
        "dry_allowed_length",
        "dry_penalty_last_n",
        "dry_sequence_breakers",
        "dynatemp_exponent",
        "mirostat_tau",
        "mirostat_eta",
        /* llama-server's sampler order: halo's chain is fixed (penalties, top-k, top-p,
         * min-p, temperature), the order llama.cpp's default lists them in */
        "samplers",
    };
    /* llama-server's samplers, accepted at the value that disables them */
    static const struct {
        const char *name;
        double off;
    } off_at[] = {
        {"typical_p", 1.0},     {"tfs_z", 1.0},          {"mirostat", 0.0},
        {"dynatemp_range", 0.0}, {"xtc_probability", 0.0}, {"dry_multiplier", 0.0},
        {"top_n_sigma", -1.0},  {"n_keep", 0.0},         {"n_discard", 0.0},
    };
    const cJSON *f;
    cJSON_ArrayForEach(f, o) {
        const char *k = f->string;
        bool ok = cJSON_IsNull(f);
        for (size_t i = 0; !ok && i < sizeof used / sizeof used[0]; i++) ok = !strcmp(k, used[i]);
        for (size_t i = 0; !ok && i < sizeof inert / sizeof inert[0]; i++) ok = !strcmp(k, inert[i]);
        for (size_t i = 0; !ok && i < sizeof off_at / sizeof off_at[0]; i++)
            ok = !strcmp(k, off_at[i].name) && cJSON_IsNumber(f) && f->valuedouble == off_at[i].off;
        if (!ok && !strcmp(k, "post_sampling_probs")) ok = cJSON_IsFalse(f);
        if (!ok) {
            srv_error(e, 400, k,
                      "'%.60s' is not supported by halo (leave it out, or give the value that "
                      "turns it off)",
                      k);
            return false;
        }
    }
    return true;
}

int srv_request_parse(srv_kind kind, const char *body, size_t len, const halo_sampler_params *sp,
                      int32_t n_vocab, srv_request *r, halo_api_error *e) {
    if (kind == SRV_RESPONSES) return srv_responses_parse(body, len, sp, n_vocab, r, e);
    memset(r, 0, sizeof *r);
    r->id_slot = -1;
    r->n = 1;
    r->kind = kind;
    r->sp = *sp;
    r->sp.logit_bias = NULL;
    r->sp.n_logit_bias = 0;
    r->max_tokens = -1;
    cJSON *o = cJSON_ParseWithLength(body, len);
    if (!o) {
        srv_error(e, 400, NULL, "the body is not valid JSON");
        return -1;
    }
    int rc = -1;
    char *gbnf = NULL;            /* the request's constraint as GBNF */
    const char *gbnf_from = NULL; /* the field it came from */
    if (!cJSON_IsObject(o)) {
        srv_error(e, 400, NULL, "the body must be a JSON object");
        goto done;
    }
    if (!fields_known(o, e)) goto done;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    if (model && !cJSON_IsNull(model) && !cJSON_IsString(model)) {
        srv_error(e, 400, "model", "'model' must be a string");
        goto done;
    }
    r->cache_prompt = true;
    if (!get_bool(o, "stream", &r->stream, e) || !get_bool(o, "cache_prompt", &r->cache_prompt, e) ||
        !get_bool(o, "ignore_eos", &r->ignore_eos, e))
        goto done;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(o, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) {
            srv_error(e, 400, "stream_options", "'stream_options' must be an object");
            goto done;
        }
        if (!get_bool(so, "include_usage", &r->include_usage, e)) goto done;
    }
    /* log-probabilities: chat `logprobs` true (+ `top_logprobs`), completions `logprobs` N */
    r->logprobs = -1;
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(o, "logprobs");
    if (kind == SRV_CHAT) {
        bool want = false;
        int64_t top = 0;
        if (!get_bool(o, "logprobs", &want, e) || !get_int(o, "top_logprobs", 0, 20, &top, e))
            goto done;
        const cJSON *tl = cJSON_GetObjectItemCaseSensitive(o, "top_logprobs");
        if (tl && !cJSON_IsNull(tl) && !want) {
            srv_error(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            goto done;
        }
        if (want) r->logprobs = (int32_t)top;
    } else if (kind == SRV_NATIVE || kind == SRV_INFILL) {
        int64_t n = 0; /* llama-server's n_probs: the top n of each token */
        if (!get_int(o, "n_probs", 0, 20, &n, e)) goto done;
        if (n > 0) r->logprobs = (int32_t)n;
    } else if (lp && !cJSON_IsNull(lp)) {
        int64_t n = 0;
        if (!get_int(o, "logprobs", 0, 5, &n, e)) goto done;
        r->logprobs = (int32_t)n;
    }
    if (!get_bool(o, "echo", &r->echo, e)) goto done;
    if (r->echo && kind != SRV_COMPLETION) {
        srv_error(e, 400, "echo", "'echo' is a field of /v1/completions");
        goto done;
    }
    int64_t v = -1;
    if (!get_int(o, "max_tokens", -1, 1 << 30, &v, e)) goto done;
    if (!get_int(o, "max_completion_tokens", -1, 1 << 30, &v, e)) goto done;
    if (!get_int(o, "n_predict", -1, 1 << 30, &v, e)) goto done;
    r->max_tokens = (int32_t)v;
    int64_t slot = -1;
    if (!get_int(o, "id_slot", -1, 1 << 20, &slot, e)) goto done;
    r->id_slot = (int32_t)slot;
    int64_t n = 1;
    if (!get_int(o, "n", 1, SRV_MAX_N, &n, e)) goto done;
    if (n > 1 && kind != SRV_CHAT && kind != SRV_COMPLETION) {
        srv_error(e, 400, "n", "'n' > 1 is a field of /v1/chat/completions and /v1/completions");
        goto done;
    }
    if (n > 1 && r->id_slot >= 0) {
        srv_error(e, 400, "id_slot", "'id_slot' names one slot; 'n' > 1 needs %d", (int)n);
        goto done;
    }
    r->n = (int32_t)n;
    halo_sampler_params *s = &r->sp;
    int64_t k = s->top_k, seed = -1, last_n = s->repeat_last_n;
    if (!get_float(o, "temperature", 0, 100, &s->temp, e) ||
        !get_float(o, "top_p", 0, 1, &s->top_p, e) ||
        !get_int(o, "top_k", 0, 1 << 30, &k, e) || !get_float(o, "min_p", 0, 1, &s->min_p, e) ||
        !get_float(o, "presence_penalty", -2, 2, &s->presence_penalty, e) ||
        !get_float(o, "frequency_penalty", -2, 2, &s->frequency_penalty, e) ||
        !get_float(o, "repeat_penalty", 1e-6, 10, &s->repeat_penalty, e) ||
        !get_int(o, "repeat_last_n", 0, 1 << 20, &last_n, e) ||
        !get_int(o, "seed", -9.2e18, 9.2e18, &seed, e))
        goto done;
    s->top_k = (int32_t)k;
    s->repeat_last_n = (int32_t)last_n;
    if (seed != -1) { /* -1: random, as llama.cpp */
        s->seed = (uint32_t)seed;
        if (s->seed == HALO_SEED_RANDOM) s->seed--; /* a fixed seed, not the marker */
    }
    if (!parse_stop(o, r, e) || !parse_bias(o, n_vocab, r, e)) goto done;
    if (!parse_constraints(o, &gbnf, &gbnf_from, e)) goto done;
    if (kind == SRV_CHAT) {
        if (!(r->messages = parse_messages(cJSON_GetObjectItemCaseSensitive(o, "messages"), e)))
            goto done;
        if (!parse_tools(o, r, &gbnf, e)) goto done;
        if (!gbnf_from && gbnf) gbnf_from = "tool_choice";
        const cJSON *kw = cJSON_GetObjectItemCaseSensitive(o, "chat_template_kwargs");
        if (kw && !cJSON_IsNull(kw)) {
            if (!cJSON_IsObject(kw)) {
                srv_error(e, 400, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
                goto done;
            }
            r->kwargs = cJSON_Duplicate(kw, true);
        }
    } else if (kind == SRV_INFILL) {
        if (!parse_infill(o, r, e)) goto done;
        r->kind = SRV_NATIVE; /* replies as /completion does */
        r->infill = true;
    } else {
        if (!parse_prompt(o, n_vocab, r, e)) goto done;
    }
    if (kind != SRV_INFILL) { /* the fill-in-the-middle fields belong to /infill alone */
        static const char *const fim_only[] = {"input_prefix", "input_suffix", "input_extra"};
        for (size_t i = 0; i < sizeof fim_only / sizeof *fim_only; i++)
            if (cJSON_GetObjectItemCaseSensitive(o, fim_only[i])) {
                srv_error(e, 400, fim_only[i], "'%s' is a field of POST /infill", fim_only[i]);
                goto done;
            }
    }
    if (gbnf && !compile_grammar(gbnf, gbnf_from, r, e)) goto done;
    rc = 0;
done:
    free(gbnf);
    cJSON_Delete(o);
    if (rc) srv_request_free(r);
    return rc;
}

void srv_request_free(srv_request *r) {
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->bias);
    cJSON_Delete(r->messages);
    cJSON_Delete(r->tools);
    cJSON_Delete(r->kwargs);
    free(r->prompt);
    free(r->prompt_ids);
    free(r->input_prefix);
    free(r->input_suffix);
    cJSON_Delete(r->input_extra);
    halo_grammar_free(r->grammar);
    srv_responses_free(r->responses);
    memset(r, 0, sizeof *r);
}

static int check(srv_kind kind, const char *body, size_t len, halo_api_error *e) {
    halo_sampler_params sp;
    halo_sampler_default_params(&sp);
    srv_request r;
    if (srv_request_parse(kind, body, len, &sp, 1 << 20, &r, e)) return -1;
    srv_request_free(&r);
    return 0;
}

int halo_api_check_chat(const char *body, size_t len, halo_api_error *e) {
    return check(SRV_CHAT, body, len, e);
}

int halo_api_check_completion(const char *body, size_t len, halo_api_error *e) {
    return check(SRV_COMPLETION, body, len, e);
}

int halo_api_check_responses(const char *body, size_t len, halo_api_error *e) {
    return check(SRV_RESPONSES, body, len, e);
}

cJSON *srv_usage_json(size_t prompt, size_t completion, size_t cached) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)completion);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(prompt + completion));
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", (double)cached);
    return u;
}
