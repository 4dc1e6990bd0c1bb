/*
 * `halo run`: continue a prompt. The prompt is tokenized (BOS as the model asks,
 * special tokens written in it recognised), processed in batches of -b tokens,
 * then tokens are sampled one at a time and streamed to stdout through the
 * streaming detokenizer, which holds back a partial UTF-8 character until the
 * next token completes it. Generation stops at an end-of-generation token (EOS,
 * <|im_end|>, ...: not printed), after -n tokens, or when the context is full.
 * Prompt tokens enter the sampler's penalty window, as in llama.cpp.
 * Load time and prompt / generation speed go to stderr.
 */
#include "tokenizer/tokenizer.h"
#include "tools.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo run [-m MODEL] (-p TEXT | -f FILE) [options]\n"
            "\n"
            "Continue a text: stream the generated tokens to stdout, speed to stderr.\n"
            "\n"
            "  -m, --model FILE          GGUF model (default: %s)\n"
            "  -p, --prompt TEXT         the prompt\n"
            "  -f, --file FILE           read the prompt from FILE\n"
            "  -n, --n-predict N         tokens to generate, -1 = until end of generation or a\n"
            "                            full context (default -1)\n"
            "  -c, --ctx-size N          context size in tokens (default 4096; 0 = trained)\n"
            "  -b, --batch-size N        prompt tokens per decode call (default 2048)\n"
            "  -ub, --ubatch-size N      tokens per forward pass (default 512)\n"
            "  -t, --threads N           threads (default: the number of cores)\n"
            "  -ctk, --cache-type-k T    K cache type: %s (default f16)\n"
            "  -ctv, --cache-type-v T    V cache type (default f16)\n"
            "      --ignore-eos          never end at an end-of-generation token (they are banned)\n"
            "      --no-display-prompt   print only the continuation, not the prompt\n"
            "  -e, --escape              process \\n, \\t, \\\\ ... in the prompt (default)\n"
            "      --no-escape           take the prompt literally\n"
            "      --special             print special tokens' text (<|im_end|>)\n"
            "      --no-mmap             read the weights into memory instead of mapping them\n"
            TOOLS_GPU_FLAGS_HELP
            "      --mlock               lock the weights in RAM\n"
            "  -h, --help                this help\n"
            "\n",
            tools_default_model(), halo_kv_type_names());
    tools_sampling_usage(out);
    fprintf(out,
            "      --grammar GBNF        constrain the output to a grammar (llama.cpp's GBNF)\n"
            "      --grammar-file F      the same, from a file\n"
            "  -j, --json-schema S       constrain the output to a JSON schema\n"
            "  -jf, --json-schema-file F the same, from a file\n");
}

typedef struct run_args {
    const char *model, *prompt, *file;
    int64_t n_predict, n_ctx, n_batch, n_ubatch, threads;
    bool ignore_eos, display_prompt, escape, special;
    halo_plan_options plan;
    halo_load_options load;
    tools_sampling sampling;
} run_args;

static int parse_args(int argc, char **argv, run_args *a) {
    memset(a, 0, sizeof *a);
    a->n_predict = -1, a->n_ctx = 4096, a->n_batch = 2048, a->n_ubatch = 512;
    a->display_prompt = a->escape = true;
    halo_plan_options_default(&a->plan);
    tools_sampling_init(&a->sampling);
    a->sampling.with_grammar = true;
    for (int i = 1; i < argc;) {
        const char *arg = argv[i], *v;
        if (tools_is_help(arg)) {
            usage(stdout);
            return 0;
        }
        if (tools_parse_load_flag(argc, argv, &i, &a->load)) continue;
        int c = tools_parse_compat_flag(argc, argv, &i);
        if (c < 0) return 2;
        if (c > 0) continue;
        int r = tools_parse_sampling_flag(argc, argv, &i, &a->sampling);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(arg, "-ctk") || !strcmp(arg, "--cache-type-k") || !strcmp(arg, "-ctv") ||
            !strcmp(arg, "--cache-type-v")) {
            if (tools_parse_plan_flag(argc, argv, &i, &a->plan, NULL) < 0) return 2;
            continue;
        }
        bool is_switch = true;
        if (!strcmp(arg, "--ignore-eos")) a->ignore_eos = true;
        else if (!strcmp(arg, "--no-display-prompt")) a->display_prompt = false;
        else if (!strcmp(arg, "-e") || !strcmp(arg, "--escape")) a->escape = true;
        else if (!strcmp(arg, "--no-escape")) a->escape = false;
        else if (!strcmp(arg, "--special")) a->special = true;
        else is_switch = false;
        if (is_switch) {
            i++;
            continue;
        }
        bool known = true, ok = true;
        if (!strcmp(arg, "-m") || !strcmp(arg, "--model")) {
            ok = (a->model = tools_flag_value(argc, argv, &i)) != NULL;
        } else if (!strcmp(arg, "-p") || !strcmp(arg, "--prompt")) {
            ok = (a->prompt = tools_flag_value(argc, argv, &i)) != NULL;
        } else if (!strcmp(arg, "-f") || !strcmp(arg, "--file")) {
            ok = (a->file = tools_flag_value(argc, argv, &i)) != NULL;
        } else if (!strcmp(arg, "-n") || !strcmp(arg, "--n-predict")) {
            ok = (v = tools_flag_value(argc, argv, &i)) &&
                 tools_parse_int(arg, v, -1, INT32_MAX, &a->n_predict);
        } else if (!strcmp(arg, "-c") || !strcmp(arg, "--ctx-size")) {
            ok = (v = tools_flag_value(argc, argv, &i)) && tools_parse_int(arg, v, 0, 1 << 30, &a->n_ctx);
        } else if (!strcmp(arg, "-b") || !strcmp(arg, "--batch-size")) {
            ok = (v = tools_flag_value(argc, argv, &i)) && tools_parse_int(arg, v, 1, 1 << 20, &a->n_batch);
        } else if (!strcmp(arg, "-ub") || !strcmp(arg, "--ubatch-size")) {
            ok = (v = tools_flag_value(argc, argv, &i)) && tools_parse_int(arg, v, 1, 1 << 20, &a->n_ubatch);
        } else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads")) {
            ok = (v = tools_flag_value(argc, argv, &i)) && tools_parse_int(arg, v, 0, 1024, &a->threads);
        } else {
            known = false;
        }
        if (!known) {
            fprintf(stderr, "error: unknown option '%s' (halo run --help lists them)\n", arg);
            return 2;
        }
        if (!ok) return 2;
    }
    if ((a->prompt != NULL) == (a->file != NULL)) {
        fprintf(stderr, "error: give the prompt with -p TEXT or -f FILE (one of them)\n");
        usage(stderr);
        return 2;
    }
    if (!a->model) a->model = tools_default_model();
    return -1;
}

static bool write_out(const char *s, size_t n) {
    if (n && fwrite(s, 1, n, stdout) != n) return false;
    return fflush(stdout) == 0;
}

/* The run itself, on parsed arguments (the caller frees them). */
static int generate(const run_args *args) {
    run_args a = *args;
    a.sampling.params.logit_bias = a.sampling.bias; /* into the copy */
    int rc = 1;

    char *text = NULL;
    size_t len = 0;
    if (a.file) {
        if (!(text = tools_read_file(a.file, &len))) return 1;
    } else {
        len = strlen(a.prompt);
        if (!(text = malloc(len + 1))) return 1;
        memcpy(text, a.prompt, len + 1);
    }
    if (a.escape) len = tools_process_escapes(text, len);

    halo_model *model = NULL;
    halo_context *ctx = NULL;
    halo_sampler *smp = NULL;
    halo_grammar *grammar = NULL;
    halo_grammar_vocab *gvocab = NULL;
    halo_grammar_matcher *gm = NULL;
    halo_detok *dt = NULL;
    int32_t *ids = NULL, *pos = NULL, *seq = NULL;
    halo_error err = {0};
    double load_s = 0;
    if (!tools_sampling_grammar(&a.sampling, &grammar)) goto out; /* before the model loads */
    if (!tools_load_model(a.model, &a.load, &model, &load_s)) goto out;
    const halo_tokenizer *tok = halo_model_tokenizer(model);
    int32_t n_vocab = halo_model_n_vocab(model);

    size_t n_ids = 0;
    if (len && halo_tok_encode(tok, text, len, HALO_TOK_ADD_SPECIAL | HALO_TOK_PARSE_SPECIAL,
                               &ids, &n_ids, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }
    if (n_ids == 0) {
        /* an empty prompt starts from BOS, if the model has one */
        int32_t bos = halo_tok_bos(tok);
        if (bos < 0) {
            fprintf(stderr, "error: the prompt is empty and the model has no BOS token\n");
            goto out;
        }
        free(ids);
        if (!(ids = malloc(sizeof *ids))) goto out;
        ids[0] = bos;
        n_ids = 1;
    }

    halo_context_params cp;
    halo_context_default_params(&cp);
    cp.n_ctx = (uint32_t)a.n_ctx; /* 0: the trained context */
    cp.n_seq_max = 1;
    cp.n_batch = (uint32_t)a.n_batch;
    cp.n_ubatch = (uint32_t)(a.n_ubatch < a.n_batch ? a.n_ubatch : a.n_batch);
    cp.type_k = a.plan.type_k;
    cp.type_v = a.plan.type_v;
    cp.n_threads = (int)a.threads;
    if (halo_context_new(model, &cp, &ctx, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }
    uint32_t n_ctx = halo_context_n_ctx(ctx);
    if (n_ids >= n_ctx) {
        fprintf(stderr, "error: the prompt is %zu tokens, the context %u: give a larger -c\n",
                n_ids, n_ctx);
        goto out;
    }

    tools_sampling *ts = &a.sampling;
    if (ts->repeat_last_n_ctx) ts->params.repeat_last_n = (int32_t)(n_ctx < (1u << 20) ? n_ctx : 1u << 20);
    if (a.ignore_eos)
        for (int32_t t = 0; t < n_vocab; t++)
            if (halo_tok_is_eog(tok, t) && !tools_sampling_add_bias(ts, t, -INFINITY)) {
                fprintf(stderr, "error: too many end-of-generation tokens to ban\n");
                goto out;
            }
    if (halo_sampler_new(&ts->params, n_vocab, &smp, &err) ||
        halo_detok_new(tok, a.special ? HALO_TOK_DECODE_SPECIAL : 0, &dt, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }
    if (ts->params.temp > 0)
        fprintf(stderr, "run: sampling seed %u\n", halo_sampler_seed(smp));

    if (a.display_prompt && !write_out(text, len)) goto write_failed;

    /* the prompt, in batches; logits of its last token only */
    int32_t nb_max = (int32_t)cp.n_batch;
    pos = malloc((size_t)nb_max * sizeof *pos);
    seq = calloc((size_t)nb_max, sizeof *seq);
    if (!pos || !seq) goto out;
    double t0 = halo_time_seconds();
    int32_t last_i = 0;
    for (size_t done = 0; done < n_ids;) {
        int32_t nb = n_ids - done < (size_t)nb_max ? (int32_t)(n_ids - done) : nb_max;
        for (int32_t k = 0; k < nb; k++) pos[k] = (int32_t)done + k;
        halo_batch b = {nb, ids + done, pos, seq, NULL};
        if (halo_decode(ctx, &b, &err)) {
            fprintf(stderr, "\nerror: %s\n", err.msg);
            goto out;
        }
        last_i = nb - 1;
        done += (size_t)nb;
    }
    for (size_t i = 0; i < n_ids; i++) halo_sampler_accept(smp, ids[i]);
    if (grammar) { /* from here on, tokens follow the grammar */
        if (halo_tok_grammar_vocab(tok, a.special, &gvocab, &err) ||
            halo_grammar_matcher_new(grammar, gvocab, &gm, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            goto out;
        }
        halo_sampler_set_grammar(smp, gm);
    }
    double t_prompt = halo_time_seconds() - t0;

    /* generation */
    t0 = halo_time_seconds();
    int64_t n_gen = 0;
    int32_t cur = (int32_t)n_ids;
    const char *stop = "the context is full";
    for (;;) {
        if (a.n_predict >= 0 && n_gen >= a.n_predict) {
            stop = NULL;
            break;
        }
        const float *logits = halo_get_logits(ctx, last_i);
        if (!logits) {
            fprintf(stderr, "\nerror: no logits from the last decode\n");
            goto out;
        }
        int32_t t = halo_sampler_sample(smp, logits);
        halo_sampler_accept(smp, t);
        if (!a.ignore_eos && halo_tok_is_eog(tok, t)) {
            stop = "end of generation";
            break;
        }
        const char *piece;
        size_t plen;
        if (halo_detok_push(dt, t, &piece, &plen, &err)) {
            fprintf(stderr, "\nerror: %s\n", err.msg);
            goto out;
        }
        if (!write_out(piece, plen)) goto write_failed;
        n_gen++;
        if ((uint32_t)cur + 1 > n_ctx || (a.n_predict >= 0 && n_gen >= a.n_predict)) {
            stop = (uint32_t)cur + 1 > n_ctx ? "the context is full" : NULL;
            break;
        }
        int32_t p = cur, s0 = 0;
        halo_batch b = {1, &t, &p, &s0, NULL};
        if (halo_decode(ctx, &b, &err)) {
            fprintf(stderr, "\nerror: %s\n", err.msg);
            goto out;
        }
        last_i = 0;
        cur++;
    }
    double t_gen = halo_time_seconds() - t0;
    {
        const char *piece;
        size_t plen;
        halo_detok_flush(dt, &piece, &plen);
        if (!write_out(piece, plen)) goto write_failed;
    }
    fprintf(stderr, "\n\nrun: %s\n", stop ? stop : "generated the tokens asked for (-n)");
    fprintf(stderr, "run: load time   = %10.2f ms\n", load_s * 1e3);
    fprintf(stderr, "run: prompt eval = %10.2f ms / %5zu tokens (%8.2f tokens per second)\n",
            t_prompt * 1e3, n_ids, t_prompt > 0 ? (double)n_ids / t_prompt : 0.0);
    fprintf(stderr, "run: generation  = %10.2f ms / %5lld tokens (%8.2f tokens per second)\n",
            t_gen * 1e3, (long long)n_gen, t_gen > 0 ? (double)n_gen / t_gen : 0.0);
    rc = 0;
    goto out;
write_failed:
    fprintf(stderr, "error: writing to standard output failed\n");
out:
    free(ids);
    free(pos);
    free(seq);
    free(text);
    halo_detok_free(dt);
    halo_sampler_free(smp);
    halo_grammar_matcher_free(gm);
    halo_grammar_vocab_free(gvocab);
    halo_grammar_free(grammar);
    halo_context_free(ctx);
    halo_model_free(model);
    return rc;
}

int cmd_run(int argc, char **argv) {
    run_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc < 0) rc = generate(&a);
    tools_sampling_free(&a.sampling);
    return rc;
}
