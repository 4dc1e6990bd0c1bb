/* POST /v1/responses without a model: a Responses body becomes the chat request it means
 * (instructions and input items as messages, the calls of one turn on one assistant message,
 * reasoning passed back as reasoning_content, flat tools nested, tool_choice, text.format as
 * a grammar, max_output_tokens, reasoning effort none as enable_thinking false), and what
 * halo does not implement is a 400 naming the field. */
#include "harness.h"
#include "server/internal.h"

#include <cjson/cJSON.h>
#include <string.h>

static int parse(const char *body, srv_request *r, halo_api_error *e) {
    halo_sampler_params sp;
    halo_sampler_default_params(&sp);
    memset(e, 0, sizeof *e);
    return srv_request_parse(SRV_RESPONSES, body, strlen(body), &sp, 1 << 20, r, e);
}

static void expect_err(const char *body, const char *param) {
    halo_api_error e;
    srv_request r;
    int rc = parse(body, &r, &e);
    CHECK_MSG(rc != 0 && e.status == 400, "%s accepted", body);
    if (rc == 0) srv_request_free(&r);
    if (param)
        CHECK_MSG(!strcmp(e.param, param), "%s: param '%s', want '%s'", body, e.param, param);
    CHECK(e.message[0] != '\0');
}

static const char *str(const cJSON *o, const char *path) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *v = o;
    for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, "."))
        v = tok[0] >= '0' && tok[0] <= '9' ? cJSON_GetArrayItem(v, atoi(tok))
                                           : cJSON_GetObjectItemCaseSensitive(v, tok);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool eq(const cJSON *o, const char *path, const char *want) {
    const char *got = str(o, path);
    if (got && !strcmp(got, want)) return true;
    fprintf(stderr, "  %s is '%s', want '%s'\n", path, got ? got : "(none)", want);
    return false;
}

int main(void) {
    srv_request r;
    halo_api_error e;

    /* a string input: one user message; instructions: a system message before it */
    CHECK(
        parse(
            "{\"model\":\"m\",\"input\":\"hi\",\"instructions\":\"Be brief.\","
            "\"max_output_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"stream\":true,"
            "\"store\":true,\"metadata\":{\"k\":\"v\"},\"user\":\"u\",\"parallel_tool_calls\":"
            "false,"
            "\"reasoning\":{\"effort\":\"high\",\"summary\":\"auto\"},\"truncation\":\"disabled\","
            "\"include\":[\"reasoning.encrypted_content\"],\"service_tier\":\"auto\"}",
            &r, &e) == 0);
    CHECK(r.kind == SRV_CHAT && r.responses && r.stream && r.max_tokens == 7);
    CHECK(r.n == 1 && !r.echo); /* one choice, no echoed prompt: Responses has neither */
    CHECK(r.sp.temp == 0.5f && r.sp.top_p == 0.9f);
    CHECK(cJSON_GetArraySize(r.messages) == 2);
    CHECK(eq(r.messages, "0.role", "system") && eq(r.messages, "0.content", "Be brief."));
    CHECK(eq(r.messages, "1.role", "user") && eq(r.messages, "1.content", "hi"));
    CHECK(!r.kwargs && !r.grammar && !r.tools);
    srv_request_free(&r);

    /* items: developer -> system, parts joined, a reasoning item onto the next assistant turn,
     * an assistant message and its calls in one message, then the calls' outputs as tool
     * messages */
    CHECK(
        parse("{\"input\":["
              "{\"role\":\"developer\",\"content\":\"Rules.\"},"
              "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
              "\"text\":\"a\"},{\"type\":\"input_text\",\"text\":\"b\"}]},"
              "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[],\"content\":"
              "[{\"type\":\"reasoning_text\",\"text\":\"think\"}]},"
              "{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"completed\",\"role\":"
              "\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Let me look.\","
              "\"annotations\":[]}]},"
              "{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"c1\",\"name\":\"f\","
              "\"arguments\":\"{\\\"x\\\":1}\",\"status\":\"completed\"},"
              "{\"type\":\"function_call\",\"call_id\":\"c2\",\"name\":\"g\",\"arguments\":\"{}\"},"
              "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"42\"},"
              "{\"type\":\"function_call_output\",\"call_id\":\"c2\",\"output\":[{\"type\":"
              "\"input_text\",\"text\":\"ok\"}]},"
              "{\"type\":\"function_call\",\"call_id\":\"c3\",\"name\":\"f\",\"arguments\":\"{}\"}"
              "],\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"description\":\"F.\","
              "\"parameters\":{\"type\":\"object\"},\"strict\":true},{\"type\":\"function\","
              "\"name\":\"g\"}],\"tool_choice\":\"auto\"}",
              &r, &e) == 0);
    CHECK_MSG(cJSON_GetArraySize(r.messages) == 6, "%d messages", cJSON_GetArraySize(r.messages));
    CHECK(eq(r.messages, "0.role", "system") && eq(r.messages, "0.content", "Rules."));
    CHECK(eq(r.messages, "1.content", "ab"));
    CHECK(eq(r.messages, "2.role", "assistant") && eq(r.messages, "2.content", "Let me look."));
    CHECK(eq(r.messages, "2.reasoning_content", "think"));
    CHECK(eq(r.messages, "2.tool_calls.0.id", "c1") &&
          eq(r.messages, "2.tool_calls.0.function.name", "f"));
    CHECK(eq(r.messages, "2.tool_calls.1.id", "c2") &&
          eq(r.messages, "2.tool_calls.1.function.name", "g"));
    CHECK(eq(r.messages, "3.role", "tool") && eq(r.messages, "3.tool_call_id", "c1") &&
          eq(r.messages, "3.content", "42"));
    CHECK(eq(r.messages, "4.tool_call_id", "c2") && eq(r.messages, "4.content", "ok"));
    /* a call after a tool message starts a new assistant turn */
    CHECK(eq(r.messages, "5.role", "assistant") && eq(r.messages, "5.tool_calls.0.id", "c3"));
    CHECK(r.tools && cJSON_GetArraySize(r.tools) == 2);
    CHECK(eq(r.tools, "0.type", "function") && eq(r.tools, "0.function.name", "f") &&
          eq(r.tools, "0.function.description", "F.") && eq(r.tools, "1.function.name", "g"));
    CHECK(!r.grammar);
    srv_request_free(&r);

    /* a forced call and text.format are grammars; effort none turns thinking off */
    CHECK(parse("{\"input\":\"w\",\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"parameters\":"
                "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}}}],"
                "\"tool_choice\":{\"type\":\"function\",\"name\":\"f\"}}",
                &r, &e) == 0);
    CHECK(r.grammar != NULL);
    srv_request_free(&r);
    CHECK(parse("{\"input\":\"w\",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"p\","
                "\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":"
                "\"integer\"}},\"required\":[\"a\"]}},\"verbosity\":\"low\"},"
                "\"reasoning\":{\"effort\":\"none\"}}",
                &r, &e) == 0);
    CHECK(r.grammar != NULL);
    CHECK(r.kwargs && cJSON_IsFalse(cJSON_GetObjectItem(r.kwargs, "enable_thinking")));
    srv_request_free(&r);
    CHECK(parse("{\"input\":\"w\",\"text\":{\"format\":{\"type\":\"json_object\"}}}", &r, &e) == 0);
    CHECK(r.grammar != NULL);
    srv_request_free(&r);
    CHECK(
        parse("{\"input\":\"w\",\"text\":{\"format\":{\"type\":\"text\"}},\"tool_choice\":\"none\","
              "\"previous_response_id\":null}",
              &r, &e) == 0);
    CHECK(!r.grammar);
    srv_request_free(&r);

    /* refusals name the field */
    expect_err("{\"input\":\"x\",\"bogus\":1}", "bogus");
    expect_err("{\"input\":\"x\",\"previous_response_id\":\"resp_1\"}", "previous_response_id");
    expect_err("{\"input\":\"x\",\"conversation\":\"conv_1\"}", "conversation");
    expect_err("{\"input\":\"x\",\"messages\":[]}", "messages");
    expect_err("{\"input\":\"x\",\"max_tokens\":3}", "max_tokens");
    expect_err("{\"input\":\"x\",\"n\":2}", "n");
    expect_err("{\"input\":\"x\",\"n\":1}", "n");
    expect_err("{\"input\":\"x\",\"echo\":true}", "echo");
    expect_err("{}", "input");
    expect_err("{\"input\":7}", "input");
    expect_err("{\"input\":[]}", "input");
    expect_err("{\"input\":[3]}", "input[0]");
    expect_err("{\"input\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "input[0]");
    expect_err("{\"input\":[{\"role\":\"user\"}]}", "input[0]");
    expect_err("{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\"}]}]}",
               "input[0].content");
    expect_err("{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\"}]}]}",
               "input[0].content");
    expect_err("{\"input\":[{\"type\":\"function_call\",\"name\":\"f\"}]}", "input[0]");
    expect_err("{\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\"}]}", "input[0]");
    expect_err("{\"input\":[{\"type\":\"item_reference\",\"id\":\"x\"}]}", "input[0]");
    expect_err("{\"input\":[{\"type\":\"web_search_call\"}]}", "input[0]");
    expect_err("{\"input\":[{\"type\":\"reasoning\",\"content\":3}]}", "input[0]");
    expect_err("{\"input\":\"x\",\"instructions\":3}", "instructions");
    expect_err("{\"input\":\"x\",\"tools\":{}}", "tools");
    expect_err("{\"input\":\"x\",\"tools\":[{\"type\":\"web_search\"}]}", "tools");
    expect_err(
        "{\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}",
        "tools");
    expect_err("{\"input\":\"x\",\"tool_choice\":\"any\"}", "tool_choice");
    expect_err("{\"input\":\"x\",\"tool_choice\":\"required\"}", "tool_choice");
    expect_err(
        "{\"input\":\"x\",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}}",
        "tool_choice");
    expect_err("{\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],"
               "\"tool_choice\":{\"type\":\"function\",\"name\":\"g\"}}",
               "tool_choice");
    expect_err("{\"input\":\"x\",\"max_output_tokens\":0}", "max_output_tokens");
    expect_err("{\"input\":\"x\",\"max_output_tokens\":\"5\"}", "max_output_tokens");
    expect_err("{\"input\":\"x\",\"temperature\":\"hot\"}", "temperature");
    expect_err("{\"input\":\"x\",\"top_p\":2}", "top_p");
    expect_err("{\"input\":\"x\",\"stream\":1}", "stream");
    expect_err("{\"input\":\"x\",\"text\":3}", "text");
    expect_err("{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"yaml\"}}}", "text.format");
    expect_err("{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\",\"schema\":{}}}}",
               "text.format");
    expect_err("{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"n\","
               "\"schema\":{\"type\":\"string\",\"pattern\":\"a+\"}}}}",
               "text.format");
    expect_err("{\"input\":\"x\",\"text\":{\"verbosity\":\"loud\"}}", "text.verbosity");
    expect_err("{\"input\":\"x\",\"text\":{\"colour\":\"red\"}}", "text");
    expect_err("{\"input\":\"x\",\"reasoning\":{\"effort\":\"max\"}}", "reasoning");
    expect_err("{\"input\":\"x\",\"reasoning\":{\"budget\":3}}", "reasoning");
    expect_err("{\"input\":\"x\",\"store\":\"no\"}", "store");
    expect_err("{\"input\":\"x\",\"metadata\":{\"a\":1}}", "metadata");
    expect_err("{\"input\":\"x\",\"background\":true}", "background");
    expect_err("{\"input\":\"x\",\"truncation\":\"auto\"}", "truncation");
    expect_err("{\"input\":\"x\",\"top_logprobs\":3}", "top_logprobs");
    expect_err("{\"input\":\"x\",\"include\":[\"message.output_text.logprobs\"]}", "include");
    expect_err("{\"input\":\"x\",\"stream_options\":{\"include_usage\":true}}", "stream_options");
    expect_err("[]", NULL);
    expect_err("{\"input\":", NULL);

    /* every prefix of a valid body is rejected cleanly (or accepted), never a crash */
    const char *full =
        "{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"hi\"}]},"
        "{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\",\"arguments\":\"{}\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":\"x\"}],\"tools\":"
        "[{\"type\":\"function\",\"name\":\"f\"}],\"text\":{\"format\":{\"type\":\"json_object\"}}"
        "}";
    for (size_t n = 0; n <= strlen(full); n++) {
        halo_api_error pe = {0};
        int rc = halo_api_check_responses(full, n, &pe);
        CHECK(rc == 0 ? n == strlen(full) : pe.status == 400);
    }
    return halo_test_finish("server/api_responses");
}
