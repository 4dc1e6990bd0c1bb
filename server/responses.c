/*
 * POST /v1/responses (OpenAI's Responses API) on the chat-completions path. Two ideas carry it.
 * A Responses request is rewritten into the chat request it means (instructions and input items
 * become messages, flat function tools become chat tools, text.format becomes response_format,
 * max_output_tokens becomes max_tokens) and then parsed, rendered, scheduled, constrained and
 * parsed for reasoning and tool calls exactly as a chat request is. On the way out, the chat
 * parser's events (reasoning, content, tool calls) drive one small state machine that builds the
 * `output` items, and, when streamed, says each step as the Responses events (item added,
 * content part added, deltas, done events), so a streamed and a plain reply hold the same items.
 *
 * Nothing is stored: `store` is accepted (the reply says false) and `previous_response_id` /
 * `conversation` are 400s that say to send the whole conversation in `input`.
 */
#include "server/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum resp_open { OPEN_NONE = 0, OPEN_REASONING = 1, OPEN_MESSAGE = 2 } resp_open;

struct srv_responses {
    cJSON *echo; /* the request's settings the Response object repeats (instructions, tools, ..) */
    cJSON *output;  /* the finished output items */
    int64_t seq;    /* the next event's sequence_number */
    resp_open open; /* the item receiving text, if any */
    char item_id[48];
    srv_buf text; /* its text so far */
};

void srv_responses_free(srv_responses *x) {
    if (!x) return;
    cJSON_Delete(x->echo);
    cJSON_Delete(x->output);
    srv_buf_free(&x->text);
    free(x);
}

/* ---- the request: Responses fields -> a chat request --------------------------------- */

static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNull(v) ? NULL : v;
}

/* Text parts joined: a string, or an array of {type: input_text | output_text, text}. */
static char *parts_text(const cJSON *c, const char *param, halo_api_error *e) {
    if (cJSON_IsString(c)) return strdup(c->valuestring);
    if (!cJSON_IsArray(c)) {
        srv_error(e, 400, param, "%s must be a string or an array of content parts", param);
        return NULL;
    }
    srv_buf b = {0};
    int k = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, c) {
        const cJSON *type = field(p, "type"), *text = field(p, "text");
        const char *t = cJSON_IsString(type) ? type->valuestring : NULL;
        if (!cJSON_IsObject(p) || !t) {
            srv_error(e, 400, param, "%s[%d] must be an object with a string 'type'", param, k);
            goto fail;
        }
        if (strcmp(t, "input_text") && strcmp(t, "output_text")) {
            srv_error(e, 400, param,
                      "%s[%d]: content part type '%.40s' is not supported (this model reads text "
                      "only: input_text, output_text)",
                      param, k, t);
            goto fail;
        }
        if (!cJSON_IsString(text)) {
            srv_error(e, 400, param, "%s[%d] needs a string 'text'", param, k);
            goto fail;
        }
        srv_buf_puts(&b, text->valuestring);
        k++;
    }
    if (b.failed) {
        srv_error(e, 500, NULL, "out of memory");
        goto fail;
    }
    return b.data ? b.data : strdup("");
fail:
    srv_buf_free(&b);
    return NULL;
}

/* The text of a reasoning item passed back: its reasoning_text content, else its summary. */
static bool reasoning_text(const cJSON *it, const char *param, srv_buf *out, halo_api_error *e) {
    const char *keys[] = {"content", "summary"};
    for (int k = 0; k < 2; k++) {
        const cJSON *a = field(it, keys[k]);
        if (!a) continue;
        if (!cJSON_IsArray(a)) {
            srv_error(e, 400, param, "%s.%s must be an array", param, keys[k]);
            return false;
        }
        if (cJSON_GetArraySize(a) == 0) continue;
        const cJSON *p;
        cJSON_ArrayForEach(p, a) {
            const cJSON *text = field(p, "text");
            if (!cJSON_IsObject(p) || !cJSON_IsString(text)) {
                srv_error(e, 400, param, "%s.%s: each part needs a string 'text'", param, keys[k]);
                return false;
            }
            srv_buf_puts(out, text->valuestring);
        }
        return true;
    }
    return true;
}

static cJSON *last_message(cJSON *msgs) {
    int n = cJSON_GetArraySize(msgs);
    return n ? cJSON_GetArrayItem(msgs, n - 1) : NULL;
}

static bool is_role(const cJSON *m, const char *role) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
    return cJSON_IsString(r) && !strcmp(r->valuestring, role);
}

/* A new message {role, content} at the end of msgs; an assistant one takes the reasoning
 * passed back just before it. */
static cJSON *add_message(cJSON *msgs, const char *role, char *content, srv_buf *reasoning) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToArray(msgs, m);
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content ? content : "");
    free(content);
    if (!strcmp(role, "assistant") && reasoning->len)
        cJSON_AddStringToObject(m, "reasoning_content", reasoning->data);
    reasoning->len = 0;
    return m;
}

/* input (a string, or items) and instructions -> chat messages */
static cJSON *input_messages(const cJSON *o, halo_api_error *e) {
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "input");
    const cJSON *ins = field(o, "instructions");
    if (ins && !cJSON_IsString(ins)) {
        srv_error(e, 400, "instructions", "'instructions' must be a string");
        return NULL;
    }
    if (!in || cJSON_IsNull(in)) {
        srv_error(e, 400, "input", "'input' is required");
        return NULL;
    }
    if (!cJSON_IsString(in) && !cJSON_IsArray(in)) {
        srv_error(e, 400, "input", "'input' must be a string or an array of input items");
        return NULL;
    }
    cJSON *msgs = cJSON_CreateArray();
    srv_buf reasoning = {0};
    if (ins) add_message(msgs, "system", strdup(ins->valuestring), &reasoning);
    if (cJSON_IsString(in)) {
        add_message(msgs, "user", strdup(in->valuestring), &reasoning);
        srv_buf_free(&reasoning);
        return msgs;
    }
    bool prev_assistant = false; /* the item before was an assistant message or call */
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, in) {
        char param[48];
        snprintf(param, sizeof param, "input[%d]", i++);
        const cJSON *type = field(it, "type");
        if (!cJSON_IsObject(it) || (type && !cJSON_IsString(type))) {
            srv_error(e, 400, param, "%s must be an object with a string 'type'", param);
            goto fail;
        }
        const char *t = type ? type->valuestring : "message";
        bool assistant = false;
        if (!strcmp(t, "message")) {
            const cJSON *role = field(it, "role");
            const char *r = cJSON_IsString(role) ? role->valuestring : "";
            if (strcmp(r, "user") && strcmp(r, "system") && strcmp(r, "developer") &&
                strcmp(r, "assistant")) {
                srv_error(e, 400, param,
                          "%s: a message's 'role' must be user, system, developer or assistant",
                          param);
                goto fail;
            }
            char cparam[64];
            snprintf(cparam, sizeof cparam, "%s.content", param);
            const cJSON *content = field(it, "content");
            if (!content) {
                srv_error(e, 400, param, "%s needs 'content'", param);
                goto fail;
            }
            char *text = parts_text(content, cparam, e);
            if (!text) goto fail;
            assistant = !strcmp(r, "assistant");
            add_message(msgs, !strcmp(r, "developer") ? "system" : r, text, &reasoning);
        } else if (!strcmp(t, "function_call")) {
            const cJSON *id = field(it, "call_id"), *name = field(it, "name");
            const cJSON *args = field(it, "arguments");
            if (!cJSON_IsString(id) || !cJSON_IsString(name) || !cJSON_IsString(args)) {
                srv_error(e, 400, param,
                          "%s: a function_call needs string 'call_id', 'name' and 'arguments'",
                          param);
                goto fail;
            }
            /* the calls of one turn are one assistant message with its text, as chat has it */
            cJSON *m = last_message(msgs);
            if (!prev_assistant || !is_role(m, "assistant"))
                m = add_message(msgs, "assistant", NULL, &reasoning);
            cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
            if (!calls) calls = cJSON_AddArrayToObject(m, "tool_calls");
            cJSON *c = cJSON_CreateObject(), *fn;
            cJSON_AddItemToArray(calls, c);
            cJSON_AddStringToObject(c, "id", id->valuestring);
            cJSON_AddStringToObject(c, "type", "function");
            fn = cJSON_AddObjectToObject(c, "function");
            cJSON_AddStringToObject(fn, "name", name->valuestring);
            cJSON_AddStringToObject(fn, "arguments", args->valuestring);
            assistant = true;
        } else if (!strcmp(t, "function_call_output")) {
            const cJSON *id = field(it, "call_id"), *out = field(it, "output");
            if (!cJSON_IsString(id) || !out) {
                srv_error(e, 400, param,
                          "%s: a function_call_output needs a string 'call_id' and 'output'",
                          param);
                goto fail;
            }
            char oparam[64];
            snprintf(oparam, sizeof oparam, "%s.output", param);
            char *text = parts_text(out, oparam, e);
            if (!text) goto fail;
            cJSON *m = add_message(msgs, "tool", text, &reasoning);
            cJSON_AddStringToObject(m, "tool_call_id", id->valuestring);
        } else if (!strcmp(t, "reasoning")) {
            /* an earlier turn's thinking: the next assistant message's reasoning_content, which
             * templates render (or drop) as they do for chat */
            reasoning.len = 0;
            if (!reasoning_text(it, param, &reasoning, e)) goto fail;
            continue; /* the next item still follows the assistant's turn */
        } else if (!strcmp(t, "item_reference")) {
            srv_error(e, 400, param,
                      "%s: item_reference needs stored responses; halo stores none (send the "
                      "items themselves)",
                      param);
            goto fail;
        } else {
            srv_error(e, 400, param,
                      "%s: input item type '%.40s' is not supported (message, function_call, "
                      "function_call_output, reasoning)",
                      param, t);
            goto fail;
        }
        prev_assistant = assistant;
    }
    if (reasoning.failed) {
        srv_error(e, 500, NULL, "out of memory");
        goto fail;
    }
    srv_buf_free(&reasoning);
    if (cJSON_GetArraySize(msgs) == 0) {
        srv_error(e, 400, "input", "'input' has no items");
        cJSON_Delete(msgs);
        return NULL;
    }
    return msgs;
fail:
    srv_buf_free(&reasoning);
    cJSON_Delete(msgs);
    return NULL;
}

/* tools: [{type:"function", name, description, parameters, strict}] -> chat's nested form */
static bool convert_tools(const cJSON *tools, cJSON *chat, halo_api_error *e) {
    if (!tools) return true;
    if (!cJSON_IsArray(tools)) {
        srv_error(e, 400, "tools", "'tools' must be an array");
        return false;
    }
    cJSON *out = cJSON_AddArrayToObject(chat, "tools");
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *type = field(t, "type"), *name = field(t, "name");
        const cJSON *desc = field(t, "description"), *params = field(t, "parameters");
        const cJSON *strict = field(t, "strict");
        if (!cJSON_IsObject(t) || !cJSON_IsString(type)) {
            srv_error(e, 400, "tools", "tools[%d] must be an object with a string 'type'", i);
            return false;
        }
        if (strcmp(type->valuestring, "function")) {
            srv_error(e, 400, "tools",
                      "tools[%d]: tool type '%.40s' is not supported (halo calls function tools "
                      "only)",
                      i, type->valuestring);
            return false;
        }
        if (!cJSON_IsString(name) || (desc && !cJSON_IsString(desc)) ||
            (params && !cJSON_IsObject(params)) || (strict && !cJSON_IsBool(strict))) {
            srv_error(e, 400, "tools",
                      "tools[%d] must be {\"type\":\"function\",\"name\":..., \"description\":..., "
                      "\"parameters\":{...}, \"strict\":bool}",
                      i);
            return false;
        }
        cJSON *w = cJSON_CreateObject(), *fn;
        cJSON_AddItemToArray(out, w);
        cJSON_AddStringToObject(w, "type", "function");
        fn = cJSON_AddObjectToObject(w, "function");
        cJSON_AddStringToObject(fn, "name", name->valuestring);
        if (desc) cJSON_AddStringToObject(fn, "description", desc->valuestring);
        if (params) cJSON_AddItemToObject(fn, "parameters", cJSON_Duplicate(params, true));
        if (strict) cJSON_AddBoolToObject(fn, "strict", cJSON_IsTrue(strict));
        i++;
    }
    return true;
}

/* tool_choice: "auto" | "none" | "required" | {type:"function", name} */
static bool convert_tool_choice(const cJSON *c, cJSON *chat, halo_api_error *e) {
    if (!c) return true;
    if (cJSON_IsString(c)) {
        cJSON_AddStringToObject(chat, "tool_choice", c->valuestring); /* chat checks the word */
        return true;
    }
    const cJSON *type = field(c, "type"), *name = field(c, "name");
    if (!cJSON_IsObject(c) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") ||
        !cJSON_IsString(name)) {
        srv_error(e, 400, "tool_choice",
                  "'tool_choice' must be none, auto, required or {\"type\":\"function\","
                  "\"name\":...}");
        return false;
    }
    cJSON *w = cJSON_AddObjectToObject(chat, "tool_choice");
    cJSON_AddStringToObject(w, "type", "function");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(w, "function"), "name", name->valuestring);
    return true;
}

/* text: {format: {type: text | json_object | json_schema, name, schema, strict}, verbosity} */
static bool convert_text(const cJSON *text, cJSON *chat, cJSON *echo, halo_api_error *e) {
    cJSON *out = cJSON_AddObjectToObject(echo, "text");
    if (!text) {
        cJSON_AddStringToObject(cJSON_AddObjectToObject(out, "format"), "type", "text");
        return true;
    }
    if (!cJSON_IsObject(text)) {
        srv_error(e, 400, "text", "'text' must be an object ({\"format\": {...}})");
        return false;
    }
    const cJSON *k;
    cJSON_ArrayForEach(k, text) {
        if (strcmp(k->string, "format") && strcmp(k->string, "verbosity") && !cJSON_IsNull(k)) {
            srv_error(e, 400, "text", "'text.%.40s' is not supported by halo", k->string);
            return false;
        }
    }
    const cJSON *verb = field(text, "verbosity");
    if (verb && (!cJSON_IsString(verb) ||
                 (strcmp(verb->valuestring, "low") && strcmp(verb->valuestring, "medium") &&
                  strcmp(verb->valuestring, "high")))) {
        srv_error(e, 400, "text.verbosity", "'text.verbosity' must be low, medium or high");
        return false;
    }
    const cJSON *f = field(text, "format");
    const cJSON *type = field(f, "type");
    if (f && (!cJSON_IsObject(f) || !cJSON_IsString(type))) {
        srv_error(e, 400, "text.format", "'text.format' must be {\"type\": ...}");
        return false;
    }
    const char *t = f ? type->valuestring : "text";
    if (!strcmp(t, "json_schema")) {
        const cJSON *name = field(f, "name"), *schema = field(f, "schema");
        const cJSON *strict = field(f, "strict"), *desc = field(f, "description");
        if (!cJSON_IsString(name) || !cJSON_IsObject(schema) || (strict && !cJSON_IsBool(strict)) ||
            (desc && !cJSON_IsString(desc))) {
            srv_error(e, 400, "text.format",
                      "text.format json_schema needs {\"type\":\"json_schema\",\"name\":..., "
                      "\"schema\":{...}, \"strict\": bool}");
            return false;
        }
        cJSON *rf = cJSON_AddObjectToObject(chat, "response_format"), *js;
        cJSON_AddStringToObject(rf, "type", "json_schema");
        js = cJSON_AddObjectToObject(rf, "json_schema");
        cJSON_AddStringToObject(js, "name", name->valuestring);
        cJSON_AddItemToObject(js, "schema", cJSON_Duplicate(schema, true));
        if (strict) cJSON_AddBoolToObject(js, "strict", cJSON_IsTrue(strict));
    } else if (!strcmp(t, "json_object")) {
        cJSON_AddStringToObject(cJSON_AddObjectToObject(chat, "response_format"), "type",
                                "json_object");
    } else if (strcmp(t, "text")) {
        srv_error(e, 400, "text.format",
                  "text.format type '%.40s' is not one of text, json_object, json_schema", t);
        return false;
    }
    if (f)
        cJSON_AddItemToObject(out, "format", cJSON_Duplicate(f, true));
    else
        cJSON_AddStringToObject(cJSON_AddObjectToObject(out, "format"), "type", "text");
    if (verb) cJSON_AddStringToObject(out, "verbosity", verb->valuestring);
    return true;
}

/* reasoning: {effort, summary}; effort "none" turns the template's thinking off */
static bool convert_reasoning(const cJSON *r, cJSON *chat, cJSON *echo, halo_api_error *e) {
    cJSON *out = cJSON_AddObjectToObject(echo, "reasoning");
    if (!r) {
        cJSON_AddNullToObject(out, "effort");
        cJSON_AddNullToObject(out, "summary");
        return true;
    }
    static const char *const efforts[] = {"none", "minimal", "low", "medium", "high", "xhigh"};
    static const char *const summaries[] = {"auto", "concise", "detailed"};
    const cJSON *effort = field(r, "effort"), *summary = field(r, "summary");
    const cJSON *gen = field(r, "generate_summary"); /* the old name of summary */
    bool ok = cJSON_IsObject(r);
    const cJSON *k;
    if (ok) cJSON_ArrayForEach(k, r) {
            if (strcmp(k->string, "effort") && strcmp(k->string, "summary") &&
                strcmp(k->string, "generate_summary") && !cJSON_IsNull(k))
                ok = false;
        }
    bool e_ok = !effort, s_ok = !summary && !gen;
    for (size_t i = 0; effort && i < sizeof efforts / sizeof *efforts; i++)
        e_ok |= cJSON_IsString(effort) && !strcmp(effort->valuestring, efforts[i]);
    const cJSON *sm = summary ? summary : gen;
    for (size_t i = 0; sm && i < sizeof summaries / sizeof *summaries; i++)
        s_ok |= cJSON_IsString(sm) && !strcmp(sm->valuestring, summaries[i]);
    if (!ok || !e_ok || !s_ok) {
        srv_error(e, 400, "reasoning",
                  "'reasoning' must be {\"effort\": none|minimal|low|medium|high|xhigh, "
                  "\"summary\": auto|concise|detailed}");
        return false;
    }
    if (effort && !strcmp(effort->valuestring, "none"))
        cJSON_AddBoolToObject(cJSON_AddObjectToObject(chat, "chat_template_kwargs"),
                              "enable_thinking", 0);
    if (effort)
        cJSON_AddStringToObject(out, "effort", effort->valuestring);
    else
        cJSON_AddNullToObject(out, "effort");
    if (sm)
        cJSON_AddStringToObject(out, "summary", sm->valuestring);
    else
        cJSON_AddNullToObject(out, "summary");
    return true;
}

/* A float setting for the reply: the shortest decimal that reads back as it */
static double short_float(float f) {
    char b[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, (double)f);
        if (strtof(b, NULL) == f) break;
    }
    return strtod(b, NULL);
}

/* Every top-level field: one converted, one of no effect for halo (bookkeeping of a service
 * that stores or bills), or a 400 naming it. */
static bool fields_known(const cJSON *o, halo_api_error *e) {
    static const char *const known[] = {"model",
                                        "input",
                                        "instructions",
                                        "tools",
                                        "tool_choice",
                                        "max_output_tokens",
                                        "temperature",
                                        "top_p",
                                        "stream",
                                        "text",
                                        "reasoning",
                                        "parallel_tool_calls",
                                        "store",
                                        "metadata",
                                        "user",
                                        "include",
                                        "stream_options",
                                        "truncation",
                                        "background",
                                        "service_tier",
                                        "prompt_cache_key",
                                        "safety_identifier",
                                        "top_logprobs"};
    const cJSON *f;
    cJSON_ArrayForEach(f, o) {
        bool ok = cJSON_IsNull(f);
        for (size_t i = 0; !ok && i < sizeof known / sizeof *known; i++)
            ok = !strcmp(f->string, known[i]);
        if (ok) continue;
        if (!strcmp(f->string, "previous_response_id") || !strcmp(f->string, "conversation"))
            srv_error(e, 400, f->string,
                      "'%s' is not supported: halo stores no responses or conversations; send "
                      "the whole conversation in 'input'",
                      f->string);
        else
            srv_error(e, 400, f->string, "'%.60s' is not supported by halo (leave it out)",
                      f->string);
        return false;
    }
    return true;
}

/* The fields that change nothing or are only accepted at their off value. */
static bool check_inert(const cJSON *o, halo_api_error *e) {
    static const char *const strings[] = {"user", "service_tier", "prompt_cache_key",
                                          "safety_identifier"};
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++) {
        const cJSON *v = field(o, strings[i]);
        if (v && !cJSON_IsString(v)) {
            srv_error(e, 400, strings[i], "'%s' must be a string", strings[i]);
            return false;
        }
    }
    const cJSON *v = field(o, "store");
    if (v && !cJSON_IsBool(v)) {
        srv_error(e, 400, "store", "'store' must be a boolean");
        return false;
    }
    if ((v = field(o, "metadata"))) {
        bool ok = cJSON_IsObject(v);
        const cJSON *m;
        if (ok) cJSON_ArrayForEach(m, v) ok &= cJSON_IsString(m);
        if (!ok) {
            srv_error(e, 400, "metadata", "'metadata' must be an object of strings");
            return false;
        }
    }
    if ((v = field(o, "background")) && !cJSON_IsFalse(v)) {
        srv_error(e, 400, "background",
                  "'background' responses are not supported (halo stores no responses)");
        return false;
    }
    if ((v = field(o, "truncation")) &&
        !(cJSON_IsString(v) && !strcmp(v->valuestring, "disabled"))) {
        srv_error(e, 400, "truncation",
                  "'truncation' must be \"disabled\" (an input longer than the context is a 400)");
        return false;
    }
    if ((v = field(o, "top_logprobs")) && !(cJSON_IsNumber(v) && v->valuedouble == 0)) {
        srv_error(e, 400, "top_logprobs",
                  "'top_logprobs' is not supported on /v1/responses (use /v1/chat/completions)");
        return false;
    }
    if ((v = field(o, "stream_options"))) {
        const cJSON *ob = field(v, "include_obfuscation"), *k;
        bool ok = cJSON_IsObject(v) && (!ob || cJSON_IsBool(ob));
        if (ok) cJSON_ArrayForEach(k, v) ok &= !strcmp(k->string, "include_obfuscation");
        if (!ok) {
            srv_error(e, 400, "stream_options",
                      "'stream_options' must be {\"include_obfuscation\": bool}");
            return false;
        }
    }
    if ((v = field(o, "include"))) {
        /* halo's reasoning comes back in the clear (content of the reasoning item), so there
         * is nothing to encrypt; anything else asks for output halo does not make */
        bool ok = cJSON_IsArray(v);
        const cJSON *k;
        if (ok) cJSON_ArrayForEach(k, v) {
                ok &= cJSON_IsString(k) && !strcmp(k->valuestring, "reasoning.encrypted_content");
            }
        if (!ok) {
            srv_error(e, 400, "include",
                      "'include' may only list \"reasoning.encrypted_content\" (the reasoning "
                      "comes back in the clear)");
            return false;
        }
    }
    return true;
}

/* The chat body the Responses body means, and the settings the reply repeats. */
static cJSON *to_chat(const cJSON *o, cJSON *echo, halo_api_error *e) {
    if (!fields_known(o, e) || !check_inert(o, e)) return NULL;
    cJSON *chat = cJSON_CreateObject();
    const cJSON *v;
    cJSON *msgs = input_messages(o, e);
    if (!msgs) goto fail;
    cJSON_AddItemToObject(chat, "messages", msgs);
    /* fields of the same name and meaning: chat checks them */
    static const char *const same[] = {"model", "stream", "temperature", "top_p",
                                       "parallel_tool_calls"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        if ((v = field(o, same[i]))) cJSON_AddItemToObject(chat, same[i], cJSON_Duplicate(v, true));
    if ((v = field(o, "max_output_tokens"))) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
            v->valuedouble > (1 << 30)) {
            srv_error(e, 400, "max_output_tokens",
                      "'max_output_tokens' must be an integer from 1 to 2^30");
            goto fail;
        }
        cJSON_AddNumberToObject(chat, "max_tokens", v->valuedouble);
    }
    if (!convert_tools(field(o, "tools"), chat, e) ||
        !convert_tool_choice(field(o, "tool_choice"), chat, e) ||
        !convert_text(field(o, "text"), chat, echo, e) ||
        !convert_reasoning(field(o, "reasoning"), chat, echo, e))
        goto fail;
    /* what the reply repeats as given */
    static const char *const repeat[] = {"instructions", "max_output_tokens"};
    for (size_t i = 0; i < sizeof repeat / sizeof *repeat; i++) {
        v = field(o, repeat[i]);
        cJSON_AddItemToObject(echo, repeat[i], v ? cJSON_Duplicate(v, true) : cJSON_CreateNull());
    }
    if ((v = field(o, "user"))) cJSON_AddItemToObject(echo, "user", cJSON_Duplicate(v, true));
    v = field(o, "metadata");
    cJSON_AddItemToObject(echo, "metadata", v ? cJSON_Duplicate(v, true) : cJSON_CreateObject());
    v = field(o, "tools");
    cJSON_AddItemToObject(echo, "tools", v ? cJSON_Duplicate(v, true) : cJSON_CreateArray());
    v = field(o, "tool_choice");
    cJSON_AddItemToObject(echo, "tool_choice",
                          v ? cJSON_Duplicate(v, true) : cJSON_CreateString("auto"));
    v = field(o, "parallel_tool_calls");
    cJSON_AddBoolToObject(echo, "parallel_tool_calls", !cJSON_IsFalse(v));
    return chat;
fail:
    cJSON_Delete(chat);
    return NULL;
}

/* Errors of the chat request, said in the Responses request's words. */
void srv_responses_fix_error(halo_api_error *e) {
    static const struct {
        const char *chat, *resp;
    } names[] = {
        {"messages", "input"},
        {"response_format", "text.format"},
        {"max_tokens", "max_output_tokens"},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        size_t n = strlen(names[i].chat);
        if (strncmp(e->param, names[i].chat, n) == 0) {
            snprintf(e->param, sizeof e->param, "%s", names[i].resp);
            break;
        }
    }
}

int srv_responses_parse(const char *body, size_t len, const halo_sampler_params *sp,
                        int32_t n_vocab, srv_request *r, halo_api_error *e) {
    memset(r, 0, sizeof *r);
    cJSON *o = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(o)) {
        srv_error(e, 400, NULL,
                  o ? "the body must be a JSON object" : "the body is not valid JSON");
        cJSON_Delete(o);
        return -1;
    }
    srv_responses *x = calloc(1, sizeof *x);
    cJSON *echo = cJSON_CreateObject();
    cJSON *chat = x && echo ? to_chat(o, echo, e) : NULL;
    if (!x || !echo) srv_error(e, 500, NULL, "out of memory");
    char *text = chat ? cJSON_PrintUnformatted(chat) : NULL;
    if (chat && !text) srv_error(e, 500, NULL, "out of memory");
    int rc = -1;
    if (text) {
        rc = srv_request_parse(SRV_CHAT, text, strlen(text), sp, n_vocab, r, e);
        if (rc) srv_responses_fix_error(e);
    }
    free(text);
    cJSON_Delete(chat);
    if (rc == 0) {
        /* the sampling settings in effect, as the reply states them */
        cJSON_AddNumberToObject(echo, "temperature", short_float(r->sp.temp));
        cJSON_AddNumberToObject(echo, "top_p", short_float(r->sp.top_p));
        x->echo = echo;
        x->output = cJSON_CreateArray();
        r->responses = x;
    } else {
        cJSON_Delete(echo);
        free(x);
    }
    cJSON_Delete(o);
    return rc;
}

/* ---- the reply: the Response object and its events ------------------------------------ */

/* The Response object: status in_progress (output so far, no usage), completed or incomplete. */
static cJSON *response_object(halo_server *s, srv_job *j, const char *status, cJSON *usage) {
    srv_responses *x = j->req.responses;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", j->id);
    cJSON_AddStringToObject(r, "object", "response");
    cJSON_AddNumberToObject(r, "created_at", (double)j->created);
    cJSON_AddStringToObject(r, "status", status);
    cJSON_AddNullToObject(r, "error");
    if (!strcmp(status, "incomplete"))
        cJSON_AddStringToObject(cJSON_AddObjectToObject(r, "incomplete_details"), "reason",
                                "max_output_tokens");
    else
        cJSON_AddNullToObject(r, "incomplete_details");
    cJSON_AddStringToObject(r, "model", s->model_id);
    cJSON_AddItemToObject(r, "output", cJSON_Duplicate(x->output, true));
    cJSON_AddNullToObject(r, "previous_response_id");
    cJSON_AddFalseToObject(r, "store"); /* nothing is kept */
    cJSON_AddFalseToObject(r, "background");
    cJSON_AddStringToObject(r, "truncation", "disabled");
    const cJSON *k;
    cJSON_ArrayForEach(k, x->echo) cJSON_AddItemToObject(r, k->string, cJSON_Duplicate(k, true));
    if (usage)
        cJSON_AddItemToObject(r, "usage", usage);
    else
        cJSON_AddNullToObject(r, "usage");
    return r;
}

static cJSON *event_new(const char *type) {
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", type);
    return ev;
}

/* Send an event (streamed replies; a plain reply only builds its output): `event:` names
 * the type, as OpenAI's server writes them; sequence_number counts from 0. */
static void event_send(srv_job *j, cJSON *ev) {
    srv_responses *x = j->req.responses;
    if (!j->req.stream) {
        cJSON_Delete(ev);
        return;
    }
    cJSON_AddNumberToObject(ev, "sequence_number", (double)x->seq++);
    char *text = cJSON_PrintUnformatted(ev);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    srv_buf b = {0};
    srv_buf_puts(&b, "event: ");
    srv_buf_puts(&b, type->valuestring);
    srv_buf_puts(&b, "\ndata: ");
    srv_buf_puts(&b, text ? text : "{}");
    srv_buf_puts(&b, "\n\n");
    if (!b.failed) srv_job_send(j, b.data, b.len);
    srv_buf_free(&b);
    free(text);
    cJSON_Delete(ev);
}

static void event_item(cJSON *ev, srv_responses *x) {
    cJSON_AddStringToObject(ev, "item_id", x->item_id);
    cJSON_AddNumberToObject(ev, "output_index", cJSON_GetArraySize(x->output));
}

/* The open item as an object: in_progress (no text yet) or with its text and final status. */
static cJSON *open_item(srv_responses *x, const char *status, bool with_text) {
    cJSON *it = cJSON_CreateObject();
    cJSON_AddStringToObject(it, "id", x->item_id);
    const char *text = with_text && x->text.data ? x->text.data : "";
    cJSON *content;
    if (x->open == OPEN_REASONING) {
        cJSON_AddStringToObject(it, "type", "reasoning");
        cJSON_AddArrayToObject(it, "summary");
        content = cJSON_AddArrayToObject(it, "content");
        if (with_text) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "type", "reasoning_text");
            cJSON_AddStringToObject(p, "text", text);
            cJSON_AddItemToArray(content, p);
        }
    } else {
        cJSON_AddStringToObject(it, "type", "message");
        cJSON_AddStringToObject(it, "role", "assistant");
        content = cJSON_AddArrayToObject(it, "content");
        if (with_text) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "type", "output_text");
            cJSON_AddStringToObject(p, "text", text);
            cJSON_AddArrayToObject(p, "annotations");
            cJSON_AddItemToArray(content, p);
        }
    }
    cJSON_AddStringToObject(it, "status", status);
    return it;
}

static cJSON *part_new(resp_open kind, const char *text) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", kind == OPEN_REASONING ? "reasoning_text" : "output_text");
    cJSON_AddStringToObject(p, "text", text);
    if (kind == OPEN_MESSAGE) cJSON_AddArrayToObject(p, "annotations");
    return p;
}

static void item_close(srv_job *j, const char *status) {
    srv_responses *x = j->req.responses;
    if (x->open == OPEN_NONE) return;
    const char *text = x->text.data ? x->text.data : "";
    bool reasoning = x->open == OPEN_REASONING;
    cJSON *ev = event_new(reasoning ? "response.reasoning_text.done" : "response.output_text.done");
    event_item(ev, x);
    cJSON_AddNumberToObject(ev, "content_index", 0);
    cJSON_AddStringToObject(ev, "text", text);
    if (!reasoning) cJSON_AddArrayToObject(ev, "logprobs");
    event_send(j, ev);
    ev = event_new("response.content_part.done");
    event_item(ev, x);
    cJSON_AddNumberToObject(ev, "content_index", 0);
    cJSON_AddItemToObject(ev, "part", part_new(x->open, text));
    event_send(j, ev);
    cJSON *item = open_item(x, status, true);
    ev = event_new("response.output_item.done");
    cJSON_AddNumberToObject(ev, "output_index", cJSON_GetArraySize(x->output));
    cJSON_AddItemToObject(ev, "item", cJSON_Duplicate(item, true));
    event_send(j, ev);
    cJSON_AddItemToArray(x->output, item);
    x->open = OPEN_NONE;
    x->text.len = 0;
}

static void item_open(srv_job *j, resp_open kind) {
    srv_responses *x = j->req.responses;
    item_close(j, "completed");
    x->open = kind;
    srv_random_id(x->item_id, sizeof x->item_id, kind == OPEN_REASONING ? "rs_" : "msg_");
    x->text.len = 0;
    cJSON *ev = event_new("response.output_item.added");
    cJSON_AddNumberToObject(ev, "output_index", cJSON_GetArraySize(x->output));
    cJSON_AddItemToObject(ev, "item", open_item(x, "in_progress", false));
    event_send(j, ev);
    ev = event_new("response.content_part.added");
    event_item(ev, x);
    cJSON_AddNumberToObject(ev, "content_index", 0);
    cJSON_AddItemToObject(ev, "part", part_new(kind, ""));
    event_send(j, ev);
}

static void text_delta(srv_job *j, resp_open kind, const char *text, size_t len) {
    srv_responses *x = j->req.responses;
    if (x->open != kind) item_open(j, kind);
    char *t = srv_utf8_dup(text, len);
    if (!t) return;
    srv_buf_puts(&x->text, t);
    cJSON *ev = event_new(kind == OPEN_REASONING ? "response.reasoning_text.delta"
                                                 : "response.output_text.delta");
    event_item(ev, x);
    cJSON_AddNumberToObject(ev, "content_index", 0);
    cJSON_AddStringToObject(ev, "delta", t);
    if (kind == OPEN_MESSAGE) cJSON_AddArrayToObject(ev, "logprobs");
    event_send(j, ev);
    free(t);
}

/* A tool call from the parser: a complete function_call item (the parser gives calls whole, so
 * one arguments delta carries them all). */
static void function_call(srv_job *j, const halo_chat_event *ev) {
    srv_responses *x = j->req.responses;
    item_close(j, "completed");
    srv_random_id(x->item_id, sizeof x->item_id, "fc_");
    cJSON *it = cJSON_CreateObject();
    cJSON_AddStringToObject(it, "id", x->item_id);
    cJSON_AddStringToObject(it, "type", "function_call");
    cJSON_AddStringToObject(it, "status", "in_progress");
    cJSON_AddStringToObject(it, "arguments", "");
    cJSON_AddStringToObject(it, "call_id", ev->id);
    cJSON_AddStringToObject(it, "name", ev->name);
    cJSON *e = event_new("response.output_item.added");
    cJSON_AddNumberToObject(e, "output_index", cJSON_GetArraySize(x->output));
    cJSON_AddItemToObject(e, "item", cJSON_Duplicate(it, true));
    event_send(j, e);
    e = event_new("response.function_call_arguments.delta");
    event_item(e, x);
    cJSON_AddStringToObject(e, "delta", ev->arguments);
    event_send(j, e);
    e = event_new("response.function_call_arguments.done");
    event_item(e, x);
    cJSON_AddStringToObject(e, "name", ev->name);
    cJSON_AddStringToObject(e, "arguments", ev->arguments);
    event_send(j, e);
    cJSON_ReplaceItemInObjectCaseSensitive(it, "status", cJSON_CreateString("completed"));
    cJSON_ReplaceItemInObjectCaseSensitive(it, "arguments", cJSON_CreateString(ev->arguments));
    e = event_new("response.output_item.done");
    cJSON_AddNumberToObject(e, "output_index", cJSON_GetArraySize(x->output));
    cJSON_AddItemToObject(e, "item", cJSON_Duplicate(it, true));
    event_send(j, e);
    cJSON_AddItemToArray(x->output, it);
}

void srv_responses_start(halo_server *s, srv_job *j) {
    static const char *const types[] = {"response.created", "response.in_progress"};
    for (int i = 0; i < 2 && j->req.stream; i++) {
        cJSON *ev = event_new(types[i]);
        cJSON_AddItemToObject(ev, "response", response_object(s, j, "in_progress", NULL));
        event_send(j, ev);
    }
}

void srv_responses_event(halo_server *s, srv_job *j, const halo_chat_event *ev) {
    (void)s;
    if (ev->kind == HALO_CHAT_EVENT_TOOL_CALL)
        function_call(j, ev);
    else if (ev->kind == HALO_CHAT_EVENT_REASONING || ev->kind == HALO_CHAT_EVENT_CONTENT)
        text_delta(j, ev->kind == HALO_CHAT_EVENT_REASONING ? OPEN_REASONING : OPEN_MESSAGE,
                   ev->text, ev->len);
}

void srv_responses_finish(halo_server *s, srv_job *j, bool length, size_t n_prompt, size_t n_gen,
                          size_t n_cached, size_t n_reasoning) {
    srv_responses *x = j->req.responses;
    const char *status = length ? "incomplete" : "completed";
    /* an answer of nothing is still a message: clients read its text */
    if (x->open == OPEN_NONE && cJSON_GetArraySize(x->output) == 0) item_open(j, OPEN_MESSAGE);
    item_close(j, status);
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "input_tokens", (double)n_prompt);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "input_tokens_details"), "cached_tokens",
                            (double)n_cached);
    cJSON_AddNumberToObject(u, "output_tokens", (double)n_gen);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "output_tokens_details"), "reasoning_tokens",
                            (double)n_reasoning);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(n_prompt + n_gen));
    cJSON *r = response_object(s, j, status, u);
    if (!length) cJSON_AddNumberToObject(r, "completed_at", (double)time(NULL));
    if (j->req.stream) {
        cJSON *ev = event_new(length ? "response.incomplete" : "response.completed");
        cJSON_AddItemToObject(ev, "response", r);
        event_send(j, ev);
        return;
    }
    char *text = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    if (text) srv_job_send(j, text, strlen(text));
    free(text);
}

void srv_responses_fail(srv_job *j, const halo_api_error *e) {
    cJSON *ev = event_new("error");
    cJSON_AddNullToObject(ev, "code");
    cJSON_AddStringToObject(ev, "message", e->message);
    if (e->param[0])
        cJSON_AddStringToObject(ev, "param", e->param);
    else
        cJSON_AddNullToObject(ev, "param");
    event_send(j, ev);
}
