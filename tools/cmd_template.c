/*
 * `halo template`: render a chat template with a JSON context and print the text
 * exactly (no newline added), as the Hugging Face tokenizers' apply_chat_template
 * would give it. The template comes from a model's tokenizer.chat_template (-m)
 * or from a file (--file); with -m, bos_token and eos_token default to the text of
 * the vocabulary's BOS and EOS tokens unless the context gives them.
 */
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tools.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo template (-m MODEL | --file T.jinja) [--context CTX.json] [options]\n"
            "\n"
            "Render a chat template with a context and print the text exactly (no newline\n"
            "added). The context is a JSON object: messages, tools, add_generation_prompt,\n"
            "enable_thinking, bos_token, eos_token and any other variable the template reads.\n"
            "\n"
            "  -m, --model FILE      take tokenizer.chat_template from this GGUF model, and\n"
            "                        bos_token / eos_token from its vocabulary unless the\n"
            "                        context gives them (default model: %s)\n"
            "      --file FILE       take the template from a file instead (Jinja2 text)\n"
            "      --context FILE    the context (a JSON object); '-' reads standard input;\n"
            "                        default: {}\n"
            "      --now SECONDS     the time strftime_now() formats (seconds since 1970;\n"
            "                        default: the current time)\n"
            "  -h, --help            this help\n",
            tools_default_model());
}

/* context[key] = the text of token id, unless the context has key */
static int add_token(cJSON *ctx, const char *key, const halo_tokenizer *t, int32_t id) {
    if (id < 0 || cJSON_GetObjectItemCaseSensitive(ctx, key)) return 0;
    size_t len;
    const char *p = halo_tok_piece(t, id, true, &len);
    if (!p) return 0;
    char *s = malloc(len + 1);
    if (!s) return -1;
    memcpy(s, p, len);
    s[len] = '\0';
    int rc = cJSON_AddStringToObject(ctx, key, s) ? 0 : -1;
    free(s);
    return rc;
}

int cmd_template(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *context = NULL;
    halo_template_options opts = {0};
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        if (tools_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--file")) {
            if (!(file = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--context")) {
            if (!(context = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--now")) {
            const char *v = tools_flag_value(argc, argv, &i);
            int64_t now;
            if (!v || !tools_parse_int("--now", v, 1, INT64_MAX / 2, &now)) return 2;
            opts.now = now;
        } else {
            fprintf(stderr, "error: unknown option '%s' (halo template --help lists them)\n", a);
            return 2;
        }
    }
    if (model && file) {
        fprintf(stderr, "error: give -m MODEL or --file T.jinja, not both\n");
        return 2;
    }
    if (!file && !model) model = tools_default_model();

    /* the context */
    cJSON *ctx = NULL;
    if (context) {
        size_t len;
        char *text = tools_read_file(context, &len); /* says why it failed */
        if (!text) return 1;
        const char *end = NULL;
        ctx = cJSON_ParseWithLengthOpts(text, len, &end, false);
        if (!ctx || !cJSON_IsObject(ctx)) {
            size_t at = ctx ? 0 : (size_t)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - text : 0);
            if (!ctx) fprintf(stderr, "error: %s: not valid JSON (near byte %zu)\n", context, at);
            else fprintf(stderr, "error: %s: the context must be a JSON object\n", context);
            cJSON_Delete(ctx);
            free(text);
            return 1;
        }
        free(text);
    } else {
        ctx = cJSON_CreateObject();
        if (!ctx) {
            fprintf(stderr, "error: out of memory\n");
            return 1;
        }
    }

    /* the template */
    char *src = NULL;
    size_t src_len = 0;
    const char *where = file ? file : model;
    halo_error err = {0};
    if (file) {
        src = tools_read_file(file, &src_len);
        if (!src) {
            cJSON_Delete(ctx);
            return 1;
        }
    } else {
        halo_gguf *g = NULL;
        halo_tokenizer *t = NULL;
        if (halo_gguf_open(model, NULL, &g, &err)) {
            fprintf(stderr, "error: %s: %s\n", model, err.msg);
            cJSON_Delete(ctx);
            return 1;
        }
        const char *tmpl = halo_gguf_get_str(g, "tokenizer.chat_template");
        if (!tmpl) {
            fprintf(stderr, "error: %s has no tokenizer.chat_template (use --file T.jinja)\n", model);
            halo_gguf_close(g);
            cJSON_Delete(ctx);
            return 1;
        }
        src_len = strlen(tmpl);
        src = malloc(src_len + 1);
        if (src) memcpy(src, tmpl, src_len + 1);
        int rc = halo_tokenizer_load(g, &t, &err);
        halo_gguf_close(g);
        if (rc) {
            fprintf(stderr, "error: %s: %s\n", model, err.msg);
            free(src);
            cJSON_Delete(ctx);
            return 1;
        }
        bool ok = src && !add_token(ctx, "bos_token", t, halo_tok_bos(t)) &&
                  !add_token(ctx, "eos_token", t, halo_tok_eos(t));
        halo_tokenizer_free(t);
        if (!ok) {
            fprintf(stderr, "error: out of memory\n");
            free(src);
            cJSON_Delete(ctx);
            return 1;
        }
    }

    halo_template *tpl = NULL;
    char *out = NULL;
    size_t out_len = 0;
    int rc = 0;
    if (halo_template_compile(src, src_len, &tpl, &err) ||
        halo_template_render(tpl, ctx, &opts, &out, &out_len, &err)) {
        fprintf(stderr, "error: %s: %s\n", where, err.msg);
        rc = 1;
    } else if (fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout)) {
        fprintf(stderr, "error: cannot write the output\n");
        rc = 1;
    }
    free(out);
    halo_template_free(tpl);
    free(src);
    cJSON_Delete(ctx);
    return rc;
}
