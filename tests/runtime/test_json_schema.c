/* JSON schema -> GBNF (runtime/json_schema.c): for a set of schemas, texts generated
 * at random under the grammar (a random walk over the token mask) parse as JSON and
 * validate against the schema; texts that break it are rejected; keywords halo does
 * not enforce are refused with their paths; forced tool calls come out in the
 * <tool_call> form with the right name and valid arguments. */
#include "harness.h"
#include "halo.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

/* ---- a small validator for the subset the converter supports ------------------------------ */

static const cJSON *resolve(const cJSON *root, const cJSON *s) {
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    if (!cJSON_IsString(ref)) return s;
    const char *r = ref->valuestring;
    if (!strncmp(r, "#/$defs/", 8))
        return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "$defs"),
                                                r + 8);
    if (!strncmp(r, "#/definitions/", 14))
        return cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(root, "definitions"), r + 14);
    return root;
}

static bool valid(const cJSON *root, const cJSON *s, const cJSON *v);

static bool type_ok(const char *t, const cJSON *v) {
    if (!strcmp(t, "object")) return cJSON_IsObject(v);
    if (!strcmp(t, "array")) return cJSON_IsArray(v);
    if (!strcmp(t, "string")) return cJSON_IsString(v);
    if (!strcmp(t, "number")) return cJSON_IsNumber(v);
    if (!strcmp(t, "integer")) return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    if (!strcmp(t, "boolean")) return cJSON_IsBool(v);
    if (!strcmp(t, "null")) return cJSON_IsNull(v);
    return false;
}

static bool any_valid(const cJSON *root, const cJSON *list, const cJSON *v) {
    const cJSON *x;
    cJSON_ArrayForEach(x, list) if (valid(root, x, v)) return true;
    return false;
}

static bool object_valid(const cJSON *root, const cJSON *s, const cJSON *v) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties"), *x;
    cJSON_ArrayForEach(x,
                       req) if (!cJSON_GetObjectItemCaseSensitive(v, x->valuestring)) return false;
    cJSON_ArrayForEach(x, v) {
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(props, x->string);
        if (ps && !valid(root, ps, x)) return false;
        if (!ps && cJSON_IsFalse(add)) return false;
        if (!ps && cJSON_IsObject(add) && !valid(root, add, x)) return false;
    }
    return true;
}

/* d: a digit, h: a hex digit, anything else itself; the text must start with the shape */
static bool shaped(const char *text, const char *shape) {
    for (; *shape; shape++, text++) {
        char c = *text;
        bool ok = *shape == 'd' ? c >= '0' && c <= '9'
                  : *shape == 'h'
                      ? (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
                      : c == *shape;
        if (!ok) return false;
    }
    return true;
}

static bool format_ok(const char *f, const char *v) {
    if (!strcmp(f, "date")) return strlen(v) == 10 && shaped(v, "dddd-dd-dd");
    if (!strcmp(f, "time")) return shaped(v, "dd:dd:dd");
    if (!strcmp(f, "date-time")) return shaped(v, "dddd-dd-ddTdd:dd:dd");
    if (!strcmp(f, "uuid"))
        return strlen(v) == 36 && shaped(v, "hhhhhhhh-hhhh-hhhh-hhhh-hhhhhhhhhhhh");
    return false;
}

static bool tuple_valid(const cJSON *root, const cJSON *s, const cJSON *v) {
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(s, "prefixItems");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, v) {
        const cJSON *ps = cJSON_GetArrayItem(prefix, i++);
        if (ps ? !valid(root, ps, x) : (cJSON_IsFalse(items) || (items && !valid(root, items, x))))
            return false;
    }
    return i >= cJSON_GetArraySize(prefix);
}

static bool valid(const cJSON *root, const cJSON *s, const cJSON *v) {
    s = resolve(root, s);
    if (!s || cJSON_IsTrue(s)) return s != NULL;
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "const"))) return cJSON_Compare(x, v, true);
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "enum"))) {
        const cJSON *e;
        cJSON_ArrayForEach(e, x) if (cJSON_Compare(e, v, true)) return true;
        return false;
    }
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "anyOf"))) return any_valid(root, x, v);
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "oneOf"))) return any_valid(root, x, v);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (cJSON_IsString(type) && !type_ok(type->valuestring, v)) return false;
    if (cJSON_IsArray(type)) {
        bool ok = false;
        cJSON_ArrayForEach(x, type) ok = ok || type_ok(x->valuestring, v);
        if (!ok) return false;
    }
    if (cJSON_IsObject(v) && !object_valid(root, s, v)) return false;
    if (cJSON_IsArray(v)) {
        int n = cJSON_GetArraySize(v);
        const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minItems");
        const cJSON *mx = cJSON_GetObjectItemCaseSensitive(s, "maxItems");
        if ((mn && n < mn->valueint) || (mx && n > mx->valueint)) return false;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
        if (cJSON_GetObjectItemCaseSensitive(s, "prefixItems")) return tuple_valid(root, s, v);
        if (items) cJSON_ArrayForEach(x, v) if (!valid(root, items, x)) return false;
    }
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(s, "format");
    if (cJSON_IsString(v) && format && !format_ok(format->valuestring, v->valuestring))
        return false;
    if (cJSON_IsString(v)) {
        int n = (int)strlen(v->valuestring); /* ASCII only in these tests */
        const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minLength");
        const cJSON *mx = cJSON_GetObjectItemCaseSensitive(s, "maxLength");
        if ((mn && n < mn->valueint) || (mx && n > mx->valueint)) return false;
    }
    return true;
}

/* ---- generation: a random walk over the mask ------------------------------------------------ */

enum { N_TOK = 98, EOG = 97 }; /* 0x20..0x7E, \n, \t, EOG */

static halo_grammar_vocab *ascii_vocab(void) {
    static char bytes[N_TOK];
    const char *p[N_TOK];
    size_t len[N_TOK];
    bool eog[N_TOK] = {0};
    for (int i = 0; i < 95; i++)
        bytes[i] = (char)(0x20 + i);
    bytes[95] = '\n', bytes[96] = '\t';
    for (int i = 0; i < N_TOK; i++)
        p[i] = &bytes[i], len[i] = i == EOG ? 0 : 1;
    eog[EOG] = true;
    halo_grammar_vocab *v = NULL;
    halo_error err = {0};
    CHECK(halo_grammar_vocab_new(p, len, eog, N_TOK, &v, &err) == 0);
    return v;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_rand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* Characters that end things, tried first half of the time so that walks finish. */
static int preference(int t) {
    static const char order[] = "\"}]0ft1n,";
    const char *q = t < 95 ? strchr(order, 0x20 + t) : NULL;
    return q ? (int)(q - order) : 100;
}

/* A random sentence of g (malloc'd), or NULL if the walk did not end in time. */
static char *generate(const halo_grammar *g, const halo_grammar_vocab *v) {
    halo_grammar_matcher *m = NULL;
    halo_error err = {0};
    if (halo_grammar_matcher_new(g, v, &m, &err)) return NULL;
    char *out = malloc(8192);
    size_t n = 0;
    uint8_t allowed[N_TOK];
    for (int step = 0; step < 8000 && n < 8000; step++) {
        int32_t count = halo_grammar_matcher_mask(m, allowed);
        CHECK(count > 0);
        if (count == 0) break;
        if (allowed[EOG]) {
            halo_grammar_matcher_free(m);
            out[n] = '\0';
            return out;
        }
        int pick = -1;
        if (next_rand() % 2) {
            for (int t = 0; t < EOG; t++)
                if (allowed[t] && preference(t) < 100 &&
                    (pick < 0 || preference(t) < preference(pick)))
                    pick = t;
        }
        if (pick < 0) {
            int k = (int)(next_rand() % (uint32_t)count);
            for (int t = 0; t < EOG; t++)
                if (allowed[t] && k-- == 0) pick = t;
        }
        CHECK(halo_grammar_matcher_accept(m, pick));
        out[n++] = pick < 95 ? (char)(0x20 + pick) : pick == 95 ? '\n' : '\t';
    }
    halo_grammar_matcher_free(m);
    free(out);
    return NULL;
}

static bool text_matches(const halo_grammar *g, const halo_grammar_vocab *v, const char *text) {
    halo_grammar_matcher *m = NULL;
    halo_error err = {0};
    if (halo_grammar_matcher_new(g, v, &m, &err)) return false;
    bool ok = (!*text || halo_grammar_matcher_accept_bytes(m, text, strlen(text))) &&
              halo_grammar_matcher_complete(m);
    halo_grammar_matcher_free(m);
    return ok;
}

static halo_grammar *compile_gbnf(const char *gbnf) {
    halo_grammar *g = NULL;
    halo_error err = {0};
    int rc = halo_grammar_compile(gbnf, strlen(gbnf), NULL, &g, &err);
    CHECK_MSG(rc == 0, "%s\n%s", err.msg, gbnf);
    return g;
}

/* n random outputs under schema parse and validate; the bad texts are rejected */
static void check_schema(const char *schema_text, int n, const char *const *good,
                         const char *const *bad) {
    cJSON *schema = cJSON_Parse(schema_text);
    CHECK(schema != NULL);
    char *gbnf = NULL;
    halo_error err = {0};
    int rc = halo_json_schema_to_gbnf(schema, &gbnf, &err);
    CHECK_MSG(rc == 0, "%s: %s", schema_text, err.msg);
    halo_grammar *g = gbnf ? compile_gbnf(gbnf) : NULL;
    halo_grammar_vocab *v = ascii_vocab();
    int done = 0;
    for (int i = 0; g && i < n; i++) {
        char *out = generate(g, v);
        if (!out) continue;
        done++;
        cJSON *val = cJSON_Parse(out);
        CHECK_MSG(val != NULL, "%s: not JSON: %s", schema_text, out);
        CHECK_MSG(val && valid(schema, schema, val), "%s: invalid: %s", schema_text, out);
        cJSON_Delete(val);
        free(out);
    }
    CHECK_MSG(!g || done >= n / 2, "%s: only %d of %d walks ended", schema_text, done, n);
    for (; g && good && *good; good++)
        CHECK_MSG(text_matches(g, v, *good), "%s rejects %s", schema_text, *good);
    for (; g && bad && *bad; bad++)
        CHECK_MSG(!text_matches(g, v, *bad), "%s accepts %s", schema_text, *bad);
    halo_grammar_free(g);
    halo_grammar_vocab_free(v);
    free(gbnf);
    cJSON_Delete(schema);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_schemas(void) {
    check_schema("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                 "\"age\":{\"type\":\"integer\"},\"ok\":{\"type\":\"boolean\"}},"
                 "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}",
                 30, L("{\"name\": \"x\", \"age\": 3}", "{\"name\":\"\",\"age\":-12,\"ok\":true}"),
                 L("{\"age\": 3}", "{\"name\": \"x\"}", "{\"name\": \"x\", \"age\": 1.5}",
                   "{\"name\": \"x\", \"age\": 3, \"z\": 1}", "{\"age\": 3, \"name\": \"x\"}"));
    /* all optional: any subset in order, none at all */
    check_schema("{\"properties\":{\"a\":{\"type\":\"null\"},\"b\":{\"type\":\"number\"},"
                 "\"c\":{\"enum\":[\"x\",1,null]}}}",
                 30, L("{}", "{\"b\": 2.5e3}", "{\"a\": null, \"c\": \"x\"}", "{\"c\": 1}"),
                 L("{,}", "{\"c\": \"y\"}", "{\"a\": null,}"));
    check_schema(
        "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":4}", 30,
        L("[1, 2]", "[1,2,3,4]"), L("[1]", "[1,2,3,4,5]", "[]", "[1,\"a\"]"));
    check_schema("{\"type\":\"array\",\"maxItems\":2}", 20, L("[]", "[{}, [1]]"), L("[1,2,3]"));
    check_schema("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", 20,
                 L("\"ab\"", "\"a\\nb\""), L("\"a\"", "\"abcd\""));
    check_schema("{\"const\":{\"k\":[1,true]}}", 5, L("{\"k\":[1,true]}"), L("{\"k\":[1,false]}"));
    check_schema("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"object\",\"properties\":"
                 "{\"n\":{\"type\":[\"integer\",\"null\"]}},\"required\":[\"n\"]}]}",
                 30, L("\"s\"", "{\"n\": null}", "{\"n\": 5}"), L("5", "{}"));
    /* recursion through $defs, and the older definitions */
    check_schema(
        "{\"$ref\":\"#/$defs/node\",\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":"
        "{\"v\":{\"type\":\"integer\"},\"kids\":{\"type\":\"array\",\"maxItems\":2,"
        "\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}}}",
        30, L("{\"v\": 1, \"kids\": [{\"v\": 2}, {\"v\": 3, \"kids\": []}]}"),
        L("{\"v\": 1, \"kids\": [{}]}"));
    check_schema("{\"type\":\"object\",\"properties\":{\"p\":{\"$ref\":\"#/definitions/pt\"}},"
                 "\"definitions\":{\"pt\":{\"type\":\"array\",\"items\":{\"type\":\"number\"}}},"
                 "\"title\":\"T\",\"description\":\"d\",\"$schema\":\"x\"}",
                 20, L("{\"p\": [1, 2.5]}"), L("{\"p\": [\"x\"]}"));
    check_schema("{\"type\":\"object\",\"additionalProperties\":{\"type\":\"boolean\"}}", 20,
                 L("{\"a\": true, \"b\": false}", "{}"), L("{\"a\": 1}"));
    check_schema("{}", 20, L("1", "[]", "{\"a\": [null]}"), L("{"));
    /* tuples, formats */
    check_schema("{\"type\":\"array\",\"prefixItems\":[{\"type\":\"integer\"},{\"type\":\"string\","
                 "\"maxLength\":3}],\"items\":false}",
                 20, L("[1, \"ab\"]"), L("[1]", "[\"ab\", 1]", "[1, \"ab\", 2]"));
    check_schema(
        "{\"prefixItems\":[{\"const\":\"x\"}],\"items\":{\"type\":\"boolean\"},\"maxItems\":3}", 20,
        L("[\"x\"]", "[\"x\", true, false]"), L("[\"x\", 1]", "[\"x\", true, true, true]"));
    check_schema(
        "{\"type\":\"object\",\"properties\":{\"d\":{\"type\":\"string\",\"format\":\"date\"},"
        "\"t\":{\"format\":\"date-time\"},\"u\":{\"type\":\"string\",\"format\":\"uuid\"},"
        "\"h\":{\"type\":\"string\",\"format\":\"time\"}},\"required\":[\"d\",\"t\",\"u\",\"h\"]}",
        20,
        L("{\"d\": \"2026-12-07\", \"t\": \"2026-12-07T13:30:00Z\", \"u\": "
          "\"123e4567-e89b-12d3-a456-426614174000\", \"h\": \"23:59:59.5+01:00\"}"),
        L("{\"d\": \"2026-13-07\", \"t\": \"2026-12-07T13:30:00Z\", \"u\": "
          "\"123e4567-e89b-12d3-a456-426614174000\", \"h\": \"23:59:59Z\"}"));
}

static void expect_refused(const char *schema_text, const char *needle);

/* Integer bounds: every value in a window (and some large ones) is accepted exactly when
 * it is in the range; no leading zeros, no "-0". */
static void check_integer_range(const char *bounds, long long lo, long long hi) {
    char schema_text[200];
    snprintf(schema_text, sizeof schema_text, "{\"type\":\"integer\"%s}", bounds);
    cJSON *schema = cJSON_Parse(schema_text);
    char *gbnf = NULL;
    halo_error err = {0};
    CHECK_MSG(halo_json_schema_to_gbnf(schema, &gbnf, &err) == 0, "%s: %s", schema_text, err.msg);
    halo_grammar *g = gbnf ? compile_gbnf(gbnf) : NULL;
    halo_grammar_vocab *v = ascii_vocab();
    static const long long big[] = {99999,
                                    100000,
                                    123456789012LL,
                                    -123456789012LL,
                                    999999999999999LL,
                                    -999999999999999LL,
                                    9007199254740991LL,
                                    -9007199254740991LL,
                                    9007199254740992LL,
                                    -9007199254740992LL};
    const long long n_big = (long long)(sizeof big / sizeof *big);
    for (long long x = -1500; g && x <= 1500 + n_big; x++) {
        long long val = x <= 1500 ? x : big[x - 1501];
        char num[32];
        snprintf(num, sizeof num, "%lld", val);
        bool in = val >= lo && val <= hi;
        CHECK_MSG(text_matches(g, v, num) == in, "%s: %s %s", schema_text, num,
                  in ? "rejected" : "accepted");
    }
    CHECK(!g ||
          (!text_matches(g, v, "007") && !text_matches(g, v, "-0") && !text_matches(g, v, "")));
    halo_grammar_free(g);
    halo_grammar_vocab_free(v);
    free(gbnf);
    cJSON_Delete(schema);
}

static void test_integer_ranges(void) {
    const long long inf = 1LL << 62;
    check_integer_range(",\"minimum\":0", 0, inf);
    check_integer_range(",\"exclusiveMinimum\":0", 1, inf);
    check_integer_range(",\"minimum\":1,\"maximum\":12", 1, 12);
    check_integer_range(",\"minimum\":-40,\"maximum\":125", -40, 125);
    check_integer_range(",\"minimum\":-1234,\"exclusiveMaximum\":-7", -1234, -8);
    check_integer_range(",\"maximum\":99", -inf, 99);
    check_integer_range(",\"maximum\":-100", -inf, -100);
    check_integer_range(",\"minimum\":137,\"maximum\":1089", 137, 1089);
    check_integer_range(",\"minimum\":10,\"maximum\":100000", 10, 100000);
    check_integer_range(",\"minimum\":0,\"maximum\":0", 0, 0);
    check_integer_range(",\"minimum\":-5.5,\"maximum\":5.5", -5, 5);
    /* zod's .int(): JavaScript's safe-integer bounds */
    check_integer_range(",\"minimum\":-9007199254740991,\"maximum\":9007199254740991",
                        -9007199254740991LL, 9007199254740991LL);
    check_integer_range(",\"minimum\":9007199254740000,\"maximum\":9007199254740991",
                        9007199254740000LL, 9007199254740991LL);
    expect_refused("{\"type\":\"integer\",\"maximum\":9007199254740992}", "maximum (at /)");
    expect_refused("{\"type\":\"number\",\"minimum\":1}", "minimum (at /)");
    expect_refused("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "no integer");
    expect_refused("{\"type\":\"integer\",\"minimum\":1e17}", "minimum (at /)");
    /* a count past long's range (the fuzzer's find): refused, not converted */
    expect_refused("{\"type\":\"array\",\"maxItems\":3.2e111}", "above");
    expect_refused("{\"type\":\"array\",\"minItems\":-1e300}", "non-negative integer");
}

static void expect_refused(const char *schema_text, const char *needle) {
    cJSON *schema = cJSON_Parse(schema_text);
    char *gbnf = NULL;
    halo_error err = {0};
    int rc = halo_json_schema_to_gbnf(schema, &gbnf, &err);
    CHECK_MSG(rc != 0 && !gbnf, "%s accepted", schema_text);
    CHECK_MSG(strstr(err.msg, needle), "%s: '%s' lacks '%s'", schema_text, err.msg, needle);
    free(gbnf);
    cJSON_Delete(schema);
}

static void test_refused(void) {
    expect_refused("{\"type\":\"string\",\"pattern\":\"^a\"}",
                   "unsupported keywords: pattern (at /)");
    expect_refused("{\"properties\":{\"a\":{\"type\":\"string\",\"format\":\"email\"},"
                   "\"b\":{\"minimum\":1}}}",
                   "format 'email' (at /properties/a; known: date, time, date-time, uuid), minimum "
                   "(at /properties/b)");
    expect_refused("{\"prefixItems\":[{},{}],\"maxItems\":1}", "maxItems below");
    expect_refused("{\"type\":\"thing\"}", "unknown type 'thing'");
    expect_refused("{\"$ref\":\"#/$defs/missing\"}", "names no definition");
    expect_refused("{\"$ref\":\"http://x/y\"}", "only references into");
    expect_refused("{\"type\":\"array\",\"minItems\":3,\"maxItems\":1}", "maxItems < minItems");
    expect_refused("{\"type\":\"array\",\"maxItems\":1e9}", "above 10000");
    expect_refused("{\"allOf\":[{},{}]}", "allOf");
    expect_refused("{\"properties\":{\"a\":{}},\"additionalProperties\":true}",
                   "additionalProperties");
    /* nesting deeper than the converter goes: an error, not a stack overflow */
    char deep[4096] = "";
    for (int i = 0; i < 100; i++)
        strcat(deep, "{\"items\":");
    strcat(deep, "{}");
    for (int i = 0; i < 100; i++)
        strcat(deep, "}");
    expect_refused(deep, "deeper");
}

static void test_json_object(void) {
    halo_grammar *g = compile_gbnf(halo_json_object_gbnf());
    halo_grammar_vocab *v = ascii_vocab();
    for (int i = 0; g && i < 20; i++) {
        char *out = generate(g, v);
        if (!out) continue;
        cJSON *val = cJSON_Parse(out);
        CHECK_MSG(cJSON_IsObject(val), "not an object: %s", out);
        cJSON_Delete(val);
        free(out);
    }
    CHECK(g && text_matches(g, v, "{\"a\": [1, {\"b\": null}], \"c\": \"\\u00e9\"}"));
    CHECK(g && !text_matches(g, v, "[1]"));
    halo_grammar_free(g);
    halo_grammar_vocab_free(v);
}

static const char tools_json[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":"
    "\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"unit\":{\"enum\":[\"c\",\"f\"]}},"
    "\"required\":[\"city\"]}}},{\"type\":\"function\",\"function\":{\"name\":\"ping\"}}]";

/* Each "<tool_call>\n{...}\n</tool_call>" block's JSON: the name is `only` (or any
 * tool), the arguments valid for that tool. */
static void check_calls(const cJSON *tools, const char *text, const char *only) {
    const char *p = text;
    int calls = 0;
    while (*p) {
        CHECK_MSG(!strncmp(p, "<tool_call>\n", 12), "no <tool_call>: %s", text);
        if (strncmp(p, "<tool_call>\n", 12)) return;
        const char *end = strstr(p, "\n</tool_call>");
        CHECK(end != NULL);
        if (!end) return;
        cJSON *call = cJSON_ParseWithLength(p + 12, (size_t)(end - p - 12));
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(call, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(call, "arguments");
        CHECK_MSG(cJSON_IsString(name) && cJSON_IsObject(args), "bad call: %s", text);
        if (only && cJSON_IsString(name)) CHECK(!strcmp(name->valuestring, only));
        const cJSON *t;
        cJSON_ArrayForEach(t, tools) {
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
            const cJSON *ps = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
            if (cJSON_IsString(name) && !strcmp(nm->valuestring, name->valuestring) && ps)
                CHECK_MSG(valid(ps, ps, args), "arguments break the schema: %s", text);
        }
        cJSON_Delete(call);
        calls++;
        p = end + 13;
        if (*p == '\n') p++;
    }
    CHECK(calls > 0);
}

static void test_tool_calls(void) {
    cJSON *tools = cJSON_Parse(tools_json);
    halo_grammar_vocab *v = ascii_vocab();
    const char *choices[] = {NULL, "get_weather", "ping"};
    for (int k = 0; k < 3; k++) {
        char *gbnf = NULL;
        halo_error err = {0};
        CHECK_MSG(halo_tool_call_gbnf(tools, choices[k], k != 2, &gbnf, &err) == 0, "%s", err.msg);
        halo_grammar *g = gbnf ? compile_gbnf(gbnf) : NULL;
        for (int i = 0; g && i < 20; i++) {
            char *out = generate(g, v);
            if (!out) continue;
            check_calls(tools, out, choices[k]);
            if (k == 2) CHECK(strstr(out, "</tool_call>\n") == NULL); /* one call only */
            free(out);
        }
        if (g && k == 1) {
            CHECK(text_matches(g, v,
                               "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                               "{\"city\": \"Paris\"}}\n</tool_call>"));
            CHECK(!text_matches(g, v,
                                "<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n"
                                "</tool_call>"));
            CHECK(!text_matches(g, v, "Sure! <tool_call>"));
        }
        halo_grammar_free(g);
        free(gbnf);
    }
    char *gbnf = NULL;
    halo_error err = {0};
    CHECK(halo_tool_call_gbnf(tools, "nope", true, &gbnf, &err) != 0 && !gbnf);
    CHECK(strstr(err.msg, "'nope'") != NULL);
    halo_grammar_vocab_free(v);
    cJSON_Delete(tools);
}

int main(void) {
    test_schemas();
    test_refused();
    test_integer_ranges();
    test_json_object();
    test_tool_calls();
    return halo_test_finish("runtime/test_json_schema");
}
