/*
 * libFuzzer target for the streaming output parser (tokenizer/chat_parse.c).
 * Input: byte 0 picks the options (reasoning mode, tool calls on or off), bytes 1-4
 * seed the chunking, the rest is the generated text. The text is parsed whole and
 * in random chunks (sizes 1-16); both must give the same content, reasoning, tool
 * calls (ids included: the same id seed) and warning count, the events must join to
 * the accumulated results, and every tool call's arguments must be a JSON object.
 * Run: ./fuzz_chat_parse -max_len=4096 corpus/ ../fuzz/seeds/fuzz_chat_parse
 */
#include "tokenizer/tokenizer.h"

#include <cJSON.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *tools =
    "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"properties\":"
    "{\"s\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"}}}}}]";

typedef struct joined {
    char *text[2]; /* reasoning, content */
    size_t len[2];
} joined;

static void on_event(void *user, const halo_chat_event *ev) {
    joined *j = user;
    if (ev->kind == HALO_CHAT_EVENT_TOOL_CALL) {
        cJSON *a = cJSON_Parse(ev->arguments);
        if (!cJSON_IsObject(a) || strncmp(ev->id, "call_", 5) || !ev->name[0]) abort();
        cJSON_Delete(a);
        return;
    }
    if (ev->kind == HALO_CHAT_EVENT_WARNING) {
        if (!ev->len) abort();
        return;
    }
    int k = ev->kind == HALO_CHAT_EVENT_REASONING ? 0 : 1;
    if (ev->len == 0) abort(); /* empty runs are never emitted */
    char *t = realloc(j->text[k], j->len[k] + ev->len);
    if (!t) abort();
    memcpy(t + j->len[k], ev->text, ev->len);
    j->text[k] = t;
    j->len[k] += ev->len;
}

typedef struct result {
    char *content, *reasoning, *calls;
    size_t content_len, reasoning_len;
    int warnings;
} result;

static result run(const halo_chat_parse_options *o, const uint8_t *text, size_t n, uint32_t seed) {
    halo_error err = {0};
    halo_chat_parser *p = NULL;
    joined j = {0};
    if (halo_chat_parser_new(o, on_event, &j, &p, &err)) abort();
    size_t at = 0;
    while (at < n) {
        size_t step = n - at;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t s = 1 + (seed >> 16) % 16;
            if (s < step) step = s;
        }
        if (halo_chat_parser_feed(p, (const char *)text + at, step, &err)) abort();
        at += step;
    }
    if (halo_chat_parser_finish(p, &err)) abort();
    result r = {0};
    const char *c = halo_chat_parser_content(p, &r.content_len);
    const char *re = halo_chat_parser_reasoning(p, &r.reasoning_len);
    if (r.content_len != j.len[1] || (r.content_len && memcmp(c, j.text[1], r.content_len)))
        abort();
    if (r.reasoning_len != j.len[0] || (r.reasoning_len && memcmp(re, j.text[0], r.reasoning_len)))
        abort();
    r.content = malloc(r.content_len + 1);
    r.reasoning = malloc(r.reasoning_len + 1);
    memcpy(r.content, c, r.content_len + 1);
    memcpy(r.reasoning, re, r.reasoning_len + 1);
    r.calls = halo_chat_parser_tool_calls_json(p);
    r.warnings = halo_chat_parser_n_warnings(p);
    if (!r.calls) abort();
    halo_chat_parser_free(p);
    free(j.text[0]);
    free(j.text[1]);
    return r;
}

static void result_free(result *r) {
    free(r->content);
    free(r->reasoning);
    free(r->calls);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5) return 0;
    halo_chat_parse_options o = {.think = (halo_chat_think)(data[0] % 3),
                                 .tool_calls = (data[0] & 4) != 0,
                                 .tools_json = (data[0] & 8) ? tools : NULL,
                                 .id_seed = 1234};
    uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
                    (uint32_t)data[4] << 24;
    seed |= 1;
    result a = run(&o, data + 5, size - 5, 0);
    result b = run(&o, data + 5, size - 5, seed);
    if (a.content_len != b.content_len || memcmp(a.content, b.content, a.content_len)) abort();
    if (a.reasoning_len != b.reasoning_len || memcmp(a.reasoning, b.reasoning, a.reasoning_len))
        abort();
    if (strcmp(a.calls, b.calls) || a.warnings != b.warnings) abort();
    result_free(&a);
    result_free(&b);
    return 0;
}
