/*
 * `halo embedding -p TEXT`: the embeddings of texts, as llama-embedding prints them.
 * Each line of the prompt is one input (llama-embedding's default separator), run in
 * its own sequence from an empty cache, in the context's embeddings mode (the hidden
 * states after the output norm), pooled as the file says or --pooling asks, normalized
 * (--embd-normalize, Euclidean by default). Pooling none prints every token's vector,
 * unnormalized, as llama-embedding does.
 */
#include "tools.h"
#include "tokenizer/tokenizer.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo embedding [-m MODEL] -p TEXT [options]\n"
            "\n"
            "Print the embedding of each line of TEXT (like llama-embedding).\n"
            "\n"
            "  -m, --model FILE          GGUF model (default: %s)\n"
            "  -p, --prompt TEXT         the inputs, one a line\n"
            "  -f, --file FILE           the inputs from a file, one a line\n"
            "      --pooling P           none, mean, cls or last (default: the file's\n"
            "                            pooling_type; none for a decoder LLM)\n"
            "      --embd-normalize N    -1 none, 0 int16 range, 1 taxicab, 2 Euclidean\n"
            "                            (default), p the p-norm\n"
            "      --embd-output-format F  json: OpenAI's list; default: one line a vector\n"
            "  -c, --ctx-size N          tokens an input may have (default 4096)\n"
            "  -b, --batch-size N        tokens per decode call (default 2048)\n"
            "  -t, --threads N           threads (default: all cores)\n"
            "      --no-mmap, --mlock    as for every command\n"
            TOOLS_GPU_FLAGS_HELP
            "  -h, --help                this help\n",
            tools_default_model());
}

/* One input's rows: pooled into out[n_embd], or (pooling none) every token's, printed. */
static int embed_one(halo_context *ctx, int pooling, const int32_t *tok, size_t n, float *out,
                     halo_error *err) {
    const int32_t e = halo_model_n_embd(halo_context_model(ctx));
    const uint32_t nb = halo_context_n_batch(ctx);
    int8_t *want = malloc(nb);
    halo_embd_pool pool = {0};
    int rc = want ? 0 : halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    if (!rc && pooling != HALO_POOLING_NONE)
        rc = halo_embd_pool_init(&pool, (halo_pooling)pooling, e, err);
    halo_seq_clear(ctx, 0);
    halo_set_embeddings(ctx, true);
    for (size_t i0 = 0; !rc && i0 < n; i0 += nb) {
        int32_t m = (int32_t)(n - i0 < nb ? n - i0 : nb);
        for (int32_t t = 0; t < m; t++)
            want[t] = pooling == HALO_POOLING_CLS    ? i0 + (size_t)t == 0
                      : pooling == HALO_POOLING_LAST ? i0 + (size_t)t + 1 == n
                                                     : 1;
        halo_batch b = {m, tok + i0, NULL, NULL, want};
        if ((rc = halo_decode(ctx, &b, err))) break;
        for (int32_t t = 0; t < m; t++) {
            if (!want[t]) continue;
            const float *r = halo_get_embeddings(ctx, t);
            if (pooling != HALO_POOLING_NONE) {
                halo_embd_pool_add(&pool, r);
                continue;
            }
            for (int32_t k = 0; k < e; k++) printf("%s%9.6f", k ? " " : "", (double)r[k]);
            printf("\n");
        }
    }
    if (!rc && pooling != HALO_POOLING_NONE) halo_embd_pool_result(&pool, out);
    halo_embd_pool_free(&pool);
    free(want);
    return rc;
}

int cmd_embedding(int argc, char **argv) {
    halo_load_options lo = {0};
    halo_context_params cp;
    halo_context_default_params(&cp);
    const char *model_path = NULL, *prompt = NULL, *file = NULL, *format = "";
    int pooling = -1, normalize = 2;
    int64_t n;
    for (int i = 1; i < argc;) {
        const char *a = argv[i], *v;
        if (tools_is_help(a)) {
            usage(stdout);
            return 0;
        }
        if (tools_parse_load_flag(argc, argv, &i, &lo)) continue;
#define VALUE()                                                                                    \
    do {                                                                                           \
        if (!(v = tools_flag_value(argc, argv, &i))) return 2;                                     \
    } while (0)
#define INT(lo_, hi_)                                                                              \
    do {                                                                                           \
        VALUE();                                                                                   \
        if (!tools_parse_int(a, v, lo_, hi_, &n)) return 2;                                        \
    } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            VALUE();
            model_path = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            VALUE();
            prompt = v;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            VALUE();
            file = v;
        } else if (!strcmp(a, "--pooling")) {
            VALUE();
            if ((pooling = halo_pooling_from_name(v)) < 0 || pooling == HALO_POOLING_RANK) {
                fprintf(stderr, "error: --pooling: '%s' is not none, mean, cls or last\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--embd-normalize")) {
            INT(-1, 64);
            normalize = (int)n;
        } else if (!strcmp(a, "--embd-output-format")) {
            VALUE();
            if (strcmp(v, "json") && strcmp(v, "")) {
                fprintf(stderr, "error: --embd-output-format: '%s' (give json, or leave it out)\n", v);
                return 2;
            }
            format = v;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            INT(1, 1 << 28);
            cp.n_ctx = (uint32_t)n;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
            INT(1, 1 << 20);
            cp.n_batch = (uint32_t)n;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            INT(-1, 1024);
            cp.n_threads = n < 0 ? 0 : (int)n;
        } else {
            fprintf(stderr, "error: unknown option '%s' (halo embedding --help lists them)\n", a);
            return 2;
        }
#undef INT
#undef VALUE
    }
    if (!prompt && !file) {
        fprintf(stderr, "error: give the text with -p TEXT or -f FILE\n");
        return 2;
    }
    char *text = file ? tools_read_file(file, NULL) : strdup(prompt);
    if (!text) return 1;
    halo_model *model = NULL;
    if (!tools_load_model(model_path ? model_path : tools_default_model(), &lo, &model, NULL)) {
        free(text);
        return 1;
    }
    if (pooling < 0) pooling = (int)halo_model_pooling(model);
    const bool json = !strcmp(format, "json");
    if (pooling == HALO_POOLING_RANK || (json && pooling == HALO_POOLING_NONE)) {
        fprintf(stderr, "error: %s: give --pooling mean, cls or last\n",
                pooling == HALO_POOLING_RANK ? "rank pooling (rerankers) is not supported"
                                             : "the json output needs one vector an input");
        halo_model_free(model);
        free(text);
        return 2;
    }
    halo_error err = {0};
    halo_context *ctx = NULL;
    int rc = halo_context_new(model, &cp, &ctx, &err);
    const int32_t e = halo_model_n_embd(model);
    float *v = malloc(sizeof(float) * (size_t)e);
    if (!rc && !v) rc = halo_error_set(&err, HALO_ERR_NOMEM, "out of memory");
    if (json && !rc) printf("{\"object\":\"list\",\"data\":[");
    int index = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); !rc && line; line = strtok_r(NULL, "\n", &save)) {
        int32_t *tok = NULL;
        size_t nt = 0;
        rc = halo_tok_encode(halo_model_tokenizer(model), line, strlen(line),
                             HALO_TOK_ADD_SPECIAL | HALO_TOK_PARSE_SPECIAL, &tok, &nt, &err);
        if (!rc && (nt == 0 || nt > halo_context_n_ctx(ctx)))
            rc = halo_error_set(&err, HALO_ERR_ARG,
                                "input %d has %zu tokens: 1 to %u (-c) are possible", index, nt,
                                halo_context_n_ctx(ctx));
        if (!rc && pooling == HALO_POOLING_NONE) printf("embedding %d:\n", index);
        if (!rc) rc = embed_one(ctx, pooling, tok, nt, v, &err);
        free(tok);
        if (rc || pooling == HALO_POOLING_NONE) {
            index++;
            continue;
        }
        halo_embd_normalize(v, v, e, normalize);
        if (json) printf("%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":[", index ? "," : "", index);
        else printf("embedding %d: ", index);
        for (int32_t k = 0; k < e; k++)
            printf(json ? "%s%.9g" : "%s%9.6f", k ? (json ? "," : " ") : "", (double)v[k]);
        printf(json ? "]}" : "\n");
        index++;
    }
    if (json && ctx && v) printf("]}\n");
    if (!rc && index == 0) rc = halo_error_set(&err, HALO_ERR_ARG, "the text has no input line");
    if (rc) fprintf(stderr, "error: %s\n", err.msg);
    free(v);
    free(text);
    halo_context_free(ctx);
    halo_model_free(model);
    return rc ? 1 : 0;
}
