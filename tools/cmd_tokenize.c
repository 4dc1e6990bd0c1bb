/*
 * `halo tokenize`: the token ids of a text under a model's vocabulary, with
 * llama.cpp's llama-tokenize flags:
 *   default   one token a line: "%6d -> '<piece>'" (as llama-tokenize prints them)
 *   --ids     one line of ids separated by spaces: the input format of `halo logits -f`
 *   --ids-list  one line "[id, id, ...]", llama-tokenize's --ids format
 * An empty text gives no tokens at all (not even BOS): there is nothing to tokenize.
 * Like that tool it processes escapes (\n, \t, \\, \xHH, ...) in the text by
 * default, from -p and -f alike (--no-escape turns that off), recognises special
 * tokens written in the text (--no-parse-special turns that off), and adds BOS/EOS
 * as the model asks (--no-bos turns that off).
 */
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tools.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo tokenize [-m MODEL] (-p TEXT | -f FILE | --stdin) [options]\n"
            "\n"
            "Print the tokens of a text under the model's vocabulary.\n"
            "\n"
            "  -m, --model FILE      GGUF model (default: %s)\n"
            "  -p, --prompt TEXT     the text\n"
            "  -f, --file FILE       read the text from FILE (as it is, final newline included)\n"
            "      --stdin           read the text from standard input\n"
            "      --ids             print only the ids on one line, as 1 2 3\n"
            "      --ids-list        print only the ids as llama-tokenize --ids does: [1, 2, 3]\n"
            "      --no-bos          do not add the BOS/EOS tokens the model asks for\n"
            "      --no-parse-special  treat special-token text (<|im_end|>) as plain text\n"
            "  -e, --escape          process escapes (\\n, \\t, \\\\, \\xHH, ...) in the text (default)\n"
            "      --no-escape       take the text literally\n"
            "      --show-count      print the number of tokens at the end\n"
            "      --log-disable     accepted for llama-tokenize compatibility\n"
            "  -h, --help            this help\n",
            tools_default_model());
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *file = NULL;
    bool use_stdin = false, ids_only = false, ids_list = false, no_bos = false, parse_special = true, escape = true;
    bool show_count = false;
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        if (tools_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(file = tools_flag_value(argc, argv, &i))) return 2;
        } else {
            if (!strcmp(a, "--stdin")) use_stdin = true;
            else if (!strcmp(a, "--ids")) ids_only = true;
            else if (!strcmp(a, "--ids-list")) ids_only = ids_list = true;
            else if (!strcmp(a, "--no-bos")) no_bos = true;
            else if (!strcmp(a, "--no-parse-special")) parse_special = false;
            else if (!strcmp(a, "-e") || !strcmp(a, "--escape")) escape = true;
            else if (!strcmp(a, "--no-escape")) escape = false;
            else if (!strcmp(a, "--show-count")) show_count = true;
            else if (!strcmp(a, "--log-disable")) { /* halo's tokenize logs nothing on success */ }
            else {
                fprintf(stderr, "error: unknown option '%s' (halo tokenize --help lists them)\n", a);
                return 2;
            }
            i++;
        }
    }
    if ((prompt != NULL) + (file != NULL) + use_stdin != 1) {
        fprintf(stderr, "error: give exactly one of -p TEXT, -f FILE or --stdin\n");
        usage(stderr);
        return 2;
    }
    if (!model) model = tools_default_model();

    char *text = NULL;
    size_t len = 0;
    if (prompt) {
        len = strlen(prompt);
        text = malloc(len + 1);
        if (text) memcpy(text, prompt, len + 1);
    } else {
        /* the whole file, final newline included; an error says why itself */
        if (!(text = tools_read_file(use_stdin ? "-" : file, &len))) return 1;
    }
    if (!text) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    if (escape) len = tools_process_escapes(text, len);

    halo_error err = {0};
    halo_gguf *g = NULL;
    halo_tokenizer *t = NULL;
    if (halo_gguf_open(model, NULL, &g, &err) || halo_tokenizer_load(g, &t, &err)) {
        fprintf(stderr, "error: %s: %s\n", model, err.msg);
        halo_gguf_close(g);
        free(text);
        return 1;
    }
    halo_gguf_close(g);

    unsigned flags = (no_bos ? 0 : HALO_TOK_ADD_SPECIAL) | (parse_special ? HALO_TOK_PARSE_SPECIAL : 0);
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (len == 0) {
        n = 0; /* nothing to tokenize: no BOS either */
    } else if (halo_tok_encode(t, text, len, flags, &ids, &n, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        rc = 1;
    } else if (ids_list) {
        putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        puts("]");
    } else if (ids_only) {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t pl;
            const char *p = halo_tok_piece(t, ids[i], true, &pl);
            printf("%6d -> '", ids[i]);
            fwrite(p, 1, pl, stdout);
            puts("'");
        }
    }
    if (!rc && show_count) printf("Total number of tokens: %zu\n", n);
    if (fflush(stdout)) rc = 1;
    free(ids);
    free(text);
    halo_tokenizer_free(t);
    return rc;
}
