/*
 * The streaming output parser: reasoning / content / tool calls for sample outputs,
 * each fed whole, byte by byte, cut in two at every point and in random chunks; all
 * must give the same events (adjacent runs of one kind joined).
 */
#include "harness.h"
#include "tokenizer/tokenizer.h"

#include <cJSON.h>

#include <stdint.h>

/* The events of one run, written as one string: R[text] C[text] T{name args} W! */
typedef struct trace {
    char *s;
    size_t len, cap;
    int last_kind;
    bool ids_ok;
} trace;

static void put(trace *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = realloc(t->s, t->cap);
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void puts_(trace *t, const char *s) { put(t, s, strlen(s)); }

static void on_event(void *user, const halo_chat_event *ev) {
    trace *t = user;
    switch (ev->kind) {
    case HALO_CHAT_EVENT_REASONING:
    case HALO_CHAT_EVENT_CONTENT:
        if (t->last_kind != (int)ev->kind) {
            if (t->last_kind == 0 || t->last_kind == 1) puts_(t, "]");
            puts_(t, ev->kind == HALO_CHAT_EVENT_REASONING ? "R[" : "C[");
        }
        put(t, ev->text, ev->len);
        t->last_kind = (int)ev->kind;
        return;
    case HALO_CHAT_EVENT_TOOL_CALL: {
        if (t->last_kind == 0 || t->last_kind == 1) puts_(t, "]");
        puts_(t, "T{");
        puts_(t, ev->name);
        puts_(t, " ");
        puts_(t, ev->arguments);
        puts_(t, "}");
        /* the object agrees with the fields; ids are call_ + 24 alphanumerics */
        cJSON *o = cJSON_Parse(ev->text);
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(o, "function");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        bool ok = cJSON_IsString(id) && !strcmp(id->valuestring, ev->id) &&
                  strlen(ev->id) == 29 && !strncmp(ev->id, "call_", 5) && cJSON_IsString(type) &&
                  !strcmp(type->valuestring, "function") && cJSON_IsString(name) &&
                  !strcmp(name->valuestring, ev->name) && cJSON_IsString(args) &&
                  !strcmp(args->valuestring, ev->arguments);
        for (int i = 5; ok && i < 29; i++)
            ok = (ev->id[i] >= 'a' && ev->id[i] <= 'z') || (ev->id[i] >= 'A' && ev->id[i] <= 'Z') ||
                 (ev->id[i] >= '0' && ev->id[i] <= '9');
        if (!ok) t->ids_ok = false;
        cJSON_Delete(o);
        break;
    }
    case HALO_CHAT_EVENT_WARNING:
        if (t->last_kind == 0 || t->last_kind == 1) puts_(t, "]");
        puts_(t, "W!");
        break;
    }
    t->last_kind = (int)ev->kind;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* cuts: NULL = whole; otherwise the sizes to feed, cycled (0 ends the list) */
static char *parse(const halo_chat_parse_options *o, const char *text, const size_t *cuts,
                   size_t n_cuts, char **calls_json) {
    trace t = {.last_kind = -1, .ids_ok = true};
    put(&t, "", 0);
    halo_chat_parser *p = NULL;
    halo_error err = {0};
    CHECK(halo_chat_parser_new(o, on_event, &t, &p, &err) == 0);
    if (!p) return t.s;
    size_t n = strlen(text), at = 0, k = 0;
    while (at < n) {
        size_t step = n_cuts ? cuts[k++ % n_cuts] : n;
        if (step > n - at) step = n - at;
        CHECK(halo_chat_parser_feed(p, text + at, step, &err) == 0);
        at += step;
    }
    CHECK(halo_chat_parser_finish(p, &err) == 0);
    if (t.last_kind == 0 || t.last_kind == 1) puts_(&t, "]");
    CHECK(t.ids_ok);
    /* the accumulated results agree with the events */
    size_t cl, rl;
    const char *c = halo_chat_parser_content(p, &cl);
    const char *r = halo_chat_parser_reasoning(p, &rl);
    CHECK(strlen(c) == cl && strlen(r) == rl);
    if (calls_json) *calls_json = halo_chat_parser_tool_calls_json(p);
    halo_chat_parser_free(p);
    return t.s;
}

typedef struct tcase {
    halo_chat_think think;
    bool tools;
    const char *text;
    const char *want;
} tcase;

static const char *weather_tools =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":"
    "\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"},"
    "\"code\":{\"type\":\"string\"},\"opts\":{\"type\":\"object\"},\"maybe\":{\"type\":[\"string\","
    "\"null\"]}}}}},"
    "{\"name\":\"flat\",\"parameters\":{\"properties\":{\"n\":{\"type\":\"number\"}}}}]";

static const tcase cases[] = {
    /* reasoning */
    {HALO_CHAT_THINK_AUTO, false, "<think>\nLet me think.\n</think>\n\nThe answer is 4.",
     "R[Let me think.]C[The answer is 4.]"},
    {HALO_CHAT_THINK_AUTO, false, "\n <think>a</think>b", "R[a]C[b]"},
    {HALO_CHAT_THINK_OPEN, false, "Let me think.\n</think>\n\nAnswer.", "R[Let me think.]C[Answer.]"},
    {HALO_CHAT_THINK_OPEN, false, "\n<think>\nabc</think>x", "R[abc]C[x]"},
    {HALO_CHAT_THINK_OPEN, false, "thinking forever\n", "R[thinking forever\n]"},
    {HALO_CHAT_THINK_OPEN, false, "a </thin", "R[a </thin]"},
    {HALO_CHAT_THINK_OPEN, false, "</think>only answer", "C[only answer]"},
    {HALO_CHAT_THINK_OPEN, false, "x</think>\n\n", "R[x]"},
    {HALO_CHAT_THINK_OPEN, false, "a < b <th </thinking> c</think>d </think> e",
     "R[a < b <th </thinking> c]C[d </think> e]"},
    {HALO_CHAT_THINK_NONE, false, "<think>hi</think> x", "C[<think>hi</think> x]"},
    {HALO_CHAT_THINK_NONE, true, "  x <tool_call>{\"name\":\"f\"}</tool_call> y",
     "C[  x]T{f {}}C[y]"},
    {HALO_CHAT_THINK_AUTO, false, "  Hello <thinking> world\n", "C[  Hello <thinking> world\n]"},
    {HALO_CHAT_THINK_AUTO, false, "  <thin", "C[  <thin]"},
    {HALO_CHAT_THINK_AUTO, false, "  <thinking>", "C[  <thinking>]"},
    {HALO_CHAT_THINK_AUTO, false, "", ""},
    {HALO_CHAT_THINK_AUTO, false, "\n\n", "C[\n\n]"},
    {HALO_CHAT_THINK_AUTO, false, "<think></think>", ""},
    {HALO_CHAT_THINK_AUTO, false, "a<think>b</think>", "C[a<think>b</think>]"},
    /* Hermes / Qwen3 tool calls */
    {HALO_CHAT_THINK_AUTO, true,
     "<think>\nok\n</think>\n\nLet me call.\n<tool_call>\n{\"name\": \"get_weather\", "
     "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
     "R[ok]C[Let me call.]T{get_weather {\"city\":\"Paris\"}}"},
    {HALO_CHAT_THINK_OPEN, true,
     "hm</think><tool_call>\n{\"name\":\"a\",\"arguments\":{\"x\":[1,2,{\"y\":null}]}}\n"
     "</tool_call>\n<tool_call>\n{\"name\":\"b\",\"arguments\":\"{\\\"z\\\": true}\"}\n"
     "</tool_call>\nDone.",
     "R[hm]T{a {\"x\":[1,2,{\"y\":null}]}}T{b {\"z\":true}}C[Done.]"},
    {HALO_CHAT_THINK_NONE, true,
     "<tool_call>[{\"name\":\"a\",\"arguments\":{}},{\"name\":\"b\",\"parameters\":{\"q\":1}}]"
     "</tool_call>",
     "T{a {}}T{b {\"q\":1}}"},
    {HALO_CHAT_THINK_NONE, true, "a <tool_ca", "C[a <tool_ca]"},
    {HALO_CHAT_THINK_NONE, true, "if a<b and c <tool_cal> d", "C[if a<b and c <tool_cal> d]"},
    {HALO_CHAT_THINK_NONE, false, "<tool_call>{\"name\":\"f\"}</tool_call>",
     "C[<tool_call>{\"name\":\"f\"}</tool_call>]"},
    /* Qwen3-Coder tool calls, typed by the schema */
    {HALO_CHAT_THINK_NONE, true,
     "I will check.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n"
     "</parameter>\n<parameter=days>\n3\n</parameter>\n<parameter=code>\n42\n</parameter>\n"
     "<parameter=opts>\n{\"a\": [1, 2]}\n</parameter>\n<parameter=maybe>\nnull\n</parameter>\n"
     "<parameter=extra>\ntrue\n</parameter>\n<parameter=note>\nline 1\nline 2\n</parameter>\n"
     "</function>\n</tool_call>",
     "C[I will check.]T{get_weather {\"city\":\"New York\",\"days\":3,\"code\":\"42\",\"opts\":"
     "{\"a\":[1,2]},\"maybe\":\"null\",\"extra\":true,\"note\":\"line 1\\nline 2\"}}"},
    {HALO_CHAT_THINK_OPEN, true,
     "x</think>\n<tool_call>\n<function=flat>\n<parameter=n>\n1.5\n</parameter>\n</function>\n"
     "<function=get_weather>\n<parameter=days>\nmany\n</parameter>\n</function>\n</tool_call>",
     "R[x]T{flat {\"n\":1.5}}T{get_weather {\"days\":\"many\"}}"},
    {HALO_CHAT_THINK_NONE, true,
     "<tool_call>\n<function=nothing>\n</function>\n</tool_call>\n\n",
     "T{nothing {}}"},
    /* malformed: reported, raw text kept as content */
    {HALO_CHAT_THINK_NONE, true, "text\n<tool_call>{bad json}</tool_call>\nafter",
     "C[text]W!C[\n<tool_call>{bad json}</tool_call>\nafter]"},
    {HALO_CHAT_THINK_NONE, true, "hi <tool_call>{\"name\":\"f\"",
     "C[hi]W!C[ <tool_call>{\"name\":\"f\"]"},
    {HALO_CHAT_THINK_NONE, true, "<tool_call>{\"arguments\":{}}</tool_call>",
     "W!C[<tool_call>{\"arguments\":{}}</tool_call>]"},
    {HALO_CHAT_THINK_NONE, true, "<tool_call>{\"name\":\"f\",\"arguments\":\"nope\"}</tool_call>",
     "W!C[<tool_call>{\"name\":\"f\",\"arguments\":\"nope\"}</tool_call>]"},
    {HALO_CHAT_THINK_NONE, true, "<tool_call>{\"name\":\"f\",\"arguments\":[1]}</tool_call>",
     "W!C[<tool_call>{\"name\":\"f\",\"arguments\":[1]}</tool_call>]"},
    {HALO_CHAT_THINK_NONE, true, "<tool_call>{\"name\":\"f\"} extra</tool_call>",
     "W!C[<tool_call>{\"name\":\"f\"} extra</tool_call>]"},
    {HALO_CHAT_THINK_NONE, true, "<tool_call>\n<function=f>\n<parameter=p>\nv\n</function>\n</tool_call>",
     "W!C[<tool_call>\n<function=f>\n<parameter=p>\nv\n</function>\n</tool_call>]"},
    {HALO_CHAT_THINK_NONE, true, "<tool_call>\n<function=f>\n</tool_call>",
     "W!C[<tool_call>\n<function=f>\n</tool_call>]"},
    {HALO_CHAT_THINK_NONE, true, "<tool_call>\n<function=>\n</function></tool_call>",
     "W!C[<tool_call>\n<function=>\n</function></tool_call>]"},
    {HALO_CHAT_THINK_NONE, true, "<tool_call>plain words</tool_call>",
     "W!C[<tool_call>plain words</tool_call>]"},
    {HALO_CHAT_THINK_NONE, true, "<tool_call></tool_call>", "W!C[<tool_call></tool_call>]"},
    {HALO_CHAT_THINK_OPEN, true, "r</think>\n<tool_call>\n<function=f>\n<parameter=p>",
     "R[r]W!C[<tool_call>\n<function=f>\n<parameter=p>]"},
};

static void check_case(const tcase *c, int idx) {
    halo_chat_parse_options o = {.think = c->think, .tool_calls = c->tools,
                                 .tools_json = weather_tools, .id_seed = 42};
    char *calls_whole = NULL;
    char *whole = parse(&o, c->text, NULL, 0, &calls_whole);
    CHECK_MSG(!strcmp(whole, c->want), "case %d: got '%s', want '%s'", idx, whole, c->want);
    size_t n = strlen(c->text);
    /* byte by byte */
    size_t one = 1;
    char *calls = NULL;
    char *got = parse(&o, c->text, &one, 1, &calls);
    CHECK_MSG(!strcmp(got, whole), "case %d byte by byte: got '%s'", idx, got);
    CHECK_MSG(calls && calls_whole && !strcmp(calls, calls_whole), "case %d: ids differ", idx);
    free(got);
    free(calls);
    /* cut in two at every point */
    for (size_t k = 1; k < n; k++) {
        size_t cuts[2] = {k, n};
        got = parse(&o, c->text, cuts, 2, NULL);
        CHECK_MSG(!strcmp(got, whole), "case %d cut at %zu: got '%s'", idx, k, got);
        free(got);
    }
    /* random chunks */
    for (int r = 0; r < 20; r++) {
        size_t cuts[16];
        for (int j = 0; j < 16; j++) cuts[j] = 1 + rnd() % 7;
        got = parse(&o, c->text, cuts, 16, NULL);
        CHECK_MSG(!strcmp(got, whole), "case %d random chunks: got '%s'", idx, got);
        free(got);
    }
    free(whole);
    free(calls_whole);
}

static int n_events;
static void count_event(void *user, const halo_chat_event *ev) {
    (void)ev;
    bool *in_reasoning = user;
    (void)in_reasoning;
    n_events++;
}

static void check_api(void) {
    halo_error err = {0};
    halo_chat_parser *p = NULL;
    /* bad tools */
    halo_chat_parse_options o = {.think = HALO_CHAT_THINK_OPEN, .tool_calls = true,
                                 .tools_json = "{\"not\":\"an array\"}"};
    CHECK(halo_chat_parser_new(&o, NULL, NULL, &p, &err) == HALO_ERR_ARG && !p);
    CHECK(strstr(err.msg, "array") != NULL);
    halo_error_clear(&err);
    o.tools_json = NULL;
    o.think = (halo_chat_think)7;
    CHECK(halo_chat_parser_new(&o, NULL, NULL, &p, &err) == HALO_ERR_ARG && !p);
    halo_error_clear(&err);

    /* in_reasoning follows the stream; results without a callback */
    o.think = HALO_CHAT_THINK_OPEN;
    CHECK(halo_chat_parser_new(&o, count_event, NULL, &p, &err) == 0);
    CHECK(halo_chat_parser_in_reasoning(p));
    CHECK(halo_chat_parser_feed(p, "abc </thi", 9, &err) == 0);
    CHECK(halo_chat_parser_in_reasoning(p));
    CHECK(halo_chat_parser_feed(p, "nk>\nans<tool_call>{\"name\":\"f\"}</tool_call>", 42, &err) == 0);
    CHECK(!halo_chat_parser_in_reasoning(p));
    CHECK(halo_chat_parser_finish(p, &err) == 0);
    CHECK(halo_chat_parser_feed(p, "x", 1, &err) == HALO_ERR_ARG);
    halo_error_clear(&err);
    size_t len;
    CHECK(!strcmp(halo_chat_parser_reasoning(p, &len), "abc") && len == 3);
    CHECK(!strcmp(halo_chat_parser_content(p, &len), "ans") && len == 3);
    CHECK(halo_chat_parser_n_tool_calls(p) == 1);
    CHECK(halo_chat_parser_n_warnings(p) == 0);
    char *json = halo_chat_parser_tool_calls_json(p);
    cJSON *arr = cJSON_Parse(json);
    CHECK(cJSON_IsArray(arr) && cJSON_GetArraySize(arr) == 1);
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(arr, 0), "function");
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fn, "arguments")));
    cJSON_Delete(arr);
    free(json);
    /* reset: a fresh output; ids keep counting (different id) */
    halo_chat_parser_reset(p);
    CHECK(halo_chat_parser_in_reasoning(p));
    CHECK(!strcmp(halo_chat_parser_content(p, &len), "") && len == 0);
    CHECK(halo_chat_parser_n_tool_calls(p) == 0);
    CHECK(halo_chat_parser_feed(p, "</think>x", 9, &err) == 0);
    CHECK(halo_chat_parser_finish(p, &err) == 0);
    CHECK(!strcmp(halo_chat_parser_content(p, &len), "x"));
    halo_chat_parser_free(p);
    CHECK(n_events > 0);

    /* the same seed gives the same ids, another seed others */
    char *a = NULL, *b = NULL, *c = NULL;
    o = (halo_chat_parse_options){.think = HALO_CHAT_THINK_NONE, .tool_calls = true, .id_seed = 7};
    const char *text = "<tool_call>{\"name\":\"f\"}</tool_call><tool_call>{\"name\":\"g\"}</tool_call>";
    free(parse(&o, text, NULL, 0, &a));
    free(parse(&o, text, NULL, 0, &b));
    o.id_seed = 8;
    free(parse(&o, text, NULL, 0, &c));
    CHECK(a && b && c && !strcmp(a, b) && strcmp(a, c));
    cJSON *ja = cJSON_Parse(a);
    const cJSON *id0 = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ja, 0), "id");
    const cJSON *id1 = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ja, 1), "id");
    CHECK(cJSON_IsString(id0) && cJSON_IsString(id1) && strcmp(id0->valuestring, id1->valuestring));
    cJSON_Delete(ja);
    free(a);
    free(b);
    free(c);

    /* a tool call longer than the bound is reported and kept */
    size_t big = (4u << 20) + 100;
    char *long_text = malloc(big + 64);
    strcpy(long_text, "<tool_call>");
    memset(long_text + 11, 'x', big);
    strcpy(long_text + 11 + big, "</tool_call>");
    CHECK(halo_chat_parser_new(&o, NULL, NULL, &p, &err) == 0);
    for (size_t at = 0, n = strlen(long_text); at < n; at += 65536)
        CHECK(halo_chat_parser_feed(p, long_text + at, n - at < 65536 ? n - at : 65536, &err) == 0);
    CHECK(halo_chat_parser_finish(p, &err) == 0);
    CHECK(halo_chat_parser_n_warnings(p) == 1 && halo_chat_parser_n_tool_calls(p) == 0);
    CHECK(halo_chat_parser_content(p, &len) && len == strlen(long_text));
    halo_chat_parser_free(p);
    free(long_text);
}

int main(void) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], (int)i);
    check_api();
    return halo_test_finish("chat_parse");
}
