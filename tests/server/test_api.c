/* Request validation without a model: every field's type and range errors are
 * 400s that name the field, valid bodies pass, and the error JSON has OpenAI's
 * shape. Also a crowd of malformed bodies that must fail cleanly, never crash. */
#include "harness.h"
#include "server/server.h"

#include <cjson/cJSON.h>
#include <string.h>

static void expect_ok(int chat, const char *body) {
    halo_api_error e = {0};
    int rc = chat ? halo_api_check_chat(body, strlen(body), &e)
                  : halo_api_check_completion(body, strlen(body), &e);
    CHECK_MSG(rc == 0, "%s -> %s", body, e.message);
}

static void expect_err(int chat, const char *body, const char *param) {
    halo_api_error e = {0};
    int rc = chat ? halo_api_check_chat(body, strlen(body), &e)
                  : halo_api_check_completion(body, strlen(body), &e);
    CHECK_MSG(rc != 0 && e.status == 400, "%s accepted", body);
    if (param) CHECK_MSG(!strcmp(e.param, param), "%s: param '%s', want '%s'", body, e.param, param);
    CHECK(e.message[0] != '\0');
}

int main(void) {
    const char *user = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char b[1024];
#define BODY(...) (snprintf(b, sizeof b, __VA_ARGS__), b)
    expect_ok(1, BODY("{%s}", user));
    expect_ok(1, BODY("{%s,\"model\":\"x\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                      "\"max_tokens\":5,\"temperature\":0,\"top_p\":0.9,\"top_k\":20,\"min_p\":0.1,"
                      "\"presence_penalty\":1.5,\"frequency_penalty\":-1,\"repeat_penalty\":1.1,"
                      "\"seed\":42,\"stop\":[\"a\",\"b\"],\"logit_bias\":{\"5\":-100},"
                      "\"response_format\":{\"type\":\"text\"},\"user\":\"u\",\"n\":1,"
                      "\"chat_template_kwargs\":{\"enable_thinking\":false}}",
                      user));
    /* fields halo does not implement: a 400 naming them, unless inert or off */
    expect_err(1, BODY("{%s,\"typical_p\":0.9}", user), "typical_p");
    expect_err(1, BODY("{%s,\"grammar\":\"root ::= x\"}", user), "grammar");
    expect_err(0, "{\"prompt\":\"x\",\"mirostat\":2}", "mirostat");
    expect_err(0, "{\"prompt\":\"x\",\"post_sampling_probs\":true}", "post_sampling_probs");
    expect_ok(1, BODY("{%s,\"typical_p\":1,\"mirostat\":0,\"dry_multiplier\":0,\"dry_base\":1.75,"
                      "\"xtc_probability\":0,\"xtc_threshold\":0.1,\"top_n_sigma\":-1,"
                      "\"samplers\":[\"top_k\",\"min_p\"],\"metadata\":{\"a\":1},\"store\":false,"
                      "\"parallel_tool_calls\":true,\"grammar\":null,\"post_sampling_probs\":false}",
                      user));
    expect_ok(1, "{\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                 "{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"user\",\"content\":\"q\"},"
                 "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":"
                 "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}}]},"
                 "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"42\"}],"
                 "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                 "{\"type\":\"object\"}}}],\"tool_choice\":\"auto\"}");
    expect_ok(1, BODY("{%s,\"stop\":\"x\",\"max_completion_tokens\":3,\"seed\":-1}", user));
    expect_ok(0, "{\"prompt\":\"The\"}");
    expect_ok(0, "{\"prompt\":[\"The\"]}");
    expect_ok(0, "{\"prompt\":[1,2,3],\"max_tokens\":0}");

    expect_err(1, "", NULL);
    expect_err(1, "{", NULL);
    expect_err(1, "[]", NULL);
    expect_err(1, "{}", "messages");
    expect_err(1, "{\"messages\":[]}", "messages");
    expect_err(1, "{\"messages\":\"hi\"}", "messages");
    expect_err(1, "{\"messages\":[{\"content\":\"hi\"}]}", "messages[0]");
    expect_err(1, "{\"messages\":[{\"role\":\"king\",\"content\":\"hi\"}]}", "messages[0]");
    expect_err(1, "{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content");
    expect_err(1, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content");
    expect_err(1, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
               "messages[0].content");
    expect_err(1, BODY("{%s,\"temperature\":\"hot\"}", user), "temperature");
    expect_err(1, BODY("{%s,\"temperature\":-1}", user), "temperature");
    expect_err(1, BODY("{%s,\"top_p\":2}", user), "top_p");
    expect_err(1, BODY("{%s,\"top_k\":1.5}", user), "top_k");
    expect_err(1, BODY("{%s,\"max_tokens\":\"5\"}", user), "max_tokens");
    expect_err(1, BODY("{%s,\"max_tokens\":1e12}", user), "max_tokens");
    expect_err(1, BODY("{%s,\"max_tokens\":-5}", user), "max_tokens");
    expect_err(1, BODY("{%s,\"stream\":\"yes\"}", user), "stream");
    expect_err(1, BODY("{%s,\"stream_options\":5}", user), "stream_options");
    expect_err(1, BODY("{%s,\"stop\":5}", user), "stop");
    expect_err(1, BODY("{%s,\"stop\":[\"\"]}", user), "stop");
    expect_err(1, BODY("{%s,\"stop\":[1]}", user), "stop");
    /* n: 1..16 choices on the OpenAI endpoints (the slots are checked when it runs) */
    expect_ok(1, BODY("{%s,\"n\":2}", user));
    expect_ok(0, "{\"prompt\":\"x\",\"n\":16}");
    expect_err(1, BODY("{%s,\"n\":0}", user), "n");
    expect_err(1, BODY("{%s,\"n\":17}", user), "n");
    expect_err(1, BODY("{%s,\"n\":1e300}", user), "n");
    expect_err(1, BODY("{%s,\"n\":2.5}", user), "n");
    expect_err(1, BODY("{%s,\"n\":\"2\"}", user), "n");
    expect_err(1, BODY("{%s,\"n\":2,\"id_slot\":0}", user), "id_slot");
    /* echo: /v1/completions only, a boolean */
    expect_ok(0, "{\"prompt\":\"x\",\"echo\":true,\"logprobs\":1,\"max_tokens\":0}");
    expect_ok(0, "{\"prompt\":[1,2,3],\"echo\":false}");
    expect_ok(0, "{\"prompt\":[[1,2,3]],\"echo\":true,\"logprobs\":1,\"max_tokens\":1}");
    expect_err(0, "{\"prompt\":[[1,2],[3]]}", "prompt");
    expect_err(0, "{\"prompt\":[[]]}", "prompt");
    expect_err(0, "{\"prompt\":\"x\",\"echo\":1}", "echo");
    expect_err(1, BODY("{%s,\"echo\":true}", user), "echo");
    expect_err(1, BODY("{%s,\"cache_prompt\":1}", user), "cache_prompt");
    expect_err(1, BODY("{%s,\"seed\":\"x\"}", user), "seed");
    expect_err(1, BODY("{%s,\"logit_bias\":{\"abc\":1}}", user), "logit_bias");
    expect_err(1, BODY("{%s,\"logit_bias\":{\"5\":\"x\"}}", user), "logit_bias");
    expect_err(1, BODY("{%s,\"logit_bias\":[1]}", user), "logit_bias");
    expect_err(1, BODY("{%s,\"tools\":{}}", user), "tools");
    expect_err(1, BODY("{%s,\"tools\":[{\"type\":\"function\"}]}", user), "tools");
    expect_err(1, BODY("{%s,\"tool_choice\":\"maybe\"}", user), "tool_choice");
    expect_err(1, BODY("{%s,\"response_format\":{\"type\":\"json_schema\"}}", user), "response_format");
    expect_err(1, BODY("{%s,\"chat_template_kwargs\":[]}", user), "chat_template_kwargs");

    /* constrained decoding: grammar, json_schema, response_format, forced tool calls */
    const char *schema = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
                         "\"required\":[\"a\"],\"additionalProperties\":false}";
    const char *tool = "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
                       "\"parameters\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":"
                       "\"string\"}}}}}]";
    expect_ok(1, BODY("{%s,\"grammar\":\"root ::= [a-z]+\"}", user));
    expect_ok(0, "{\"prompt\":\"x\",\"grammar\":\"root ::= \\\"yes\\\" | \\\"no\\\"\"}");
    expect_ok(1, BODY("{%s,\"json_schema\":%s}", user, schema));
    expect_ok(0, BODY("{\"prompt\":\"x\",\"json_schema\":%s}", schema));
    expect_ok(1, BODY("{%s,\"response_format\":{\"type\":\"json_object\"}}", user));
    expect_ok(1, BODY("{%s,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                      "{\"name\":\"n\",\"strict\":true,\"schema\":%s}}}",
                      user, schema));
    expect_ok(1, BODY("{%s,%s,\"tool_choice\":\"required\"}", user, tool));
    expect_ok(1, BODY("{%s,%s,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":"
                      "\"f\"}},\"parallel_tool_calls\":false}",
                      user, tool));
    expect_err(1, BODY("{%s,\"grammar\":\"root ::= (\"}", user), "grammar");
    expect_err(1, BODY("{%s,\"grammar\":5}", user), "grammar");
    expect_err(1, BODY("{%s,\"grammar\":\"root ::= [a-z]\",\"json_schema\":%s}", user, schema),
               "json_schema");
    expect_err(1,
               BODY("{%s,\"json_schema\":%s,\"response_format\":{\"type\":\"json_object\"}}", user,
                    schema),
               "response_format");
    expect_err(1, BODY("{%s,\"json_schema\":{\"type\":\"string\",\"pattern\":\"a+\"}}", user),
               "json_schema");
    expect_err(1, BODY("{%s,\"json_schema\":\"x\"}", user), "json_schema");
    expect_err(1, BODY("{%s,\"response_format\":{\"type\":\"yaml\"}}", user), "response_format");
    expect_err(1, BODY("{%s,\"tool_choice\":\"required\"}", user), "tool_choice");
    expect_err(1,
               BODY("{%s,%s,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":"
                    "\"g\"}}}",
                    user, tool),
               "tool_choice");
    expect_err(1, BODY("{%s,%s,\"tool_choice\":{\"type\":\"function\"}}", user, tool),
               "tool_choice");
    expect_err(1,
               BODY("{%s,%s,\"tool_choice\":\"required\",\"json_schema\":%s}", user, tool, schema),
               "tool_choice");
    {
        halo_api_error pe = {0};
        const char *bad = "{\"prompt\":\"x\",\"json_schema\":{\"properties\":{\"d\":"
                          "{\"format\":\"email\"}}}}";
        CHECK(halo_api_check_completion(bad, strlen(bad), &pe) != 0);
        CHECK_MSG(strstr(pe.message, "format 'email' (at /properties/d") != NULL, "%s", pe.message);
    }
    expect_err(1, BODY("{%s,\"model\":5}", user), "model");
    expect_err(0, "{}", "prompt");
    expect_err(0, "{\"prompt\":5}", "prompt");
    expect_err(0, "{\"prompt\":[]}", "prompt");
    expect_err(0, "{\"prompt\":[1,-2]}", "prompt");
    expect_err(0, "{\"prompt\":[\"a\",\"b\"]}", "prompt");

    /* the error object */
    halo_api_error e = {0};
    halo_api_check_chat("{}", 2, &e);
    char *json = halo_api_error_json(&e);
    cJSON *o = cJSON_Parse(json), *err = cJSON_GetObjectItem(o, "error");
    CHECK(cJSON_IsObject(err));
    CHECK(cJSON_IsString(cJSON_GetObjectItem(err, "message")));
    CHECK(!strcmp(cJSON_GetObjectItem(err, "type")->valuestring, "invalid_request_error"));
    CHECK(!strcmp(cJSON_GetObjectItem(err, "param")->valuestring, "messages"));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(err, "code")));
    cJSON_Delete(o);
    free(json);

    /* every prefix of a valid body is rejected cleanly (or accepted), never a crash */
    const char *full = "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
                       "\"hi\"}]}],\"stop\":[\"x\"],\"logit_bias\":{\"3\":1},\"tools\":[{\"type\":"
                       "\"function\",\"function\":{\"name\":\"f\"}}]}";
    for (size_t n = 0; n <= strlen(full); n++) {
        halo_api_error pe = {0};
        int rc = halo_api_check_chat(full, n, &pe);
        CHECK(rc == 0 ? n == strlen(full) : pe.status == 400);
    }
    return halo_test_finish("server/api");
}
