/*
 * libFuzzer target for the chat-template engine: arbitrary bytes are compiled as
 * a template and, when that succeeds, rendered with a fixed context that has what
 * real templates read (messages of every role with tool calls and reasoning,
 * tools with nested schemas, the special tokens, flags). Either step may fail,
 * but only with an error message that starts with "template", never a crash, a
 * leak or a hang: the render runs under small limits (steps, output, memory,
 * macro depth), so every input finishes quickly.
 *
 * Seeds: fuzz/seeds/fuzz_template/ (the fixture templates and small feature
 * samples). Run: ./fuzz_template -max_len=8192 corpus/ fuzz/seeds/fuzz_template
 */
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *context;

static const char context_json[] =
    "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_generation_prompt\": true,"
    " \"enable_thinking\": false, \"n\": 3, \"f\": 0.5, \"none\": null,"
    " \"messages\": ["
    "  {\"role\": \"system\", \"content\": \"Be brief. \\u00e9\\u4e2d\"},"
    "  {\"role\": \"user\", \"content\": \"<tool_response>x</tool_response>\"},"
    "  {\"role\": \"assistant\", \"content\": \"<think>\\nr\\n</think>\\n\\nok\", \"reasoning_content\": \"r\","
    "   \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\", \"function\": {\"name\": \"f\","
    "    \"arguments\": {\"a\": 1, \"b\": [true, null, 2.5], \"c\": {\"d\": \"e\"}}}}]},"
    "  {\"role\": \"tool\", \"content\": \"{\\\"t\\\": 1}\", \"tool_call_id\": \"c1\"},"
    "  {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"hi\"}, {\"type\": \"image\"}]}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"d\","
    "   \"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"},"
    "   \"b\": {\"type\": [\"string\", \"null\"], \"enum\": [\"x\"]}}, \"required\": [\"a\"]}}}]}";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    context = cJSON_Parse(context_json);
    if (!context) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!context) LLVMFuzzerInitialize(NULL, NULL);
    halo_error err = {0};
    halo_template *t = NULL;
    if (halo_template_compile((const char *)data, size, &t, &err) != 0) {
        if (t || strncmp(err.msg, "template", 8) != 0) abort();
        return 0;
    }
    halo_template_options opts = {
        .max_output = 1 << 20, .max_memory = 32 << 20, .max_steps = 100000, .max_depth = 16, .now = 1795348800};
    char *out = NULL;
    size_t len = 0;
    int rc = halo_template_render(t, context, &opts, &out, &len, &err);
    if (rc == 0) {
        if (!out || strlen(out) > len || len > opts.max_output) abort();
    } else if (out || strncmp(err.msg, "template", 8) != 0) {
        abort();
    }
    free(out);
    halo_template_free(t);
    return 0;
}
