/*
 * `halo chat`: interactive multi-turn chat with the model's chat template.
 *
 * Each turn renders the whole conversation with the template, tokenizes it, and
 * decodes only what differs from the tokens already in the context: the common
 * prefix stays. Attention-only models cut their KV cache back to that prefix. A
 * hybrid model's recurrent (DeltaNet) state cannot be cut back, so after every
 * prompt and every reply the state is saved as a checkpoint at that position, and
 * the next turn restarts from the latest checkpoint inside the common prefix (in
 * practice the end of the previous prompt: templates that strip old reasoning
 * change the history right after it). With no usable checkpoint the conversation
 * is decoded again from the start.
 *
 * The reply streams through the output parser (tokenizer/chat_parse.c): reasoning
 * is shown dimmed on a terminal, between <think> lines otherwise, or hidden. With
 * --reasoning-budget N, after N tokens of reasoning "</think>" is decoded into the
 * context as if the model had written it, and the answer follows.
 *
 * Input: one user message a line (from a terminal or a pipe); /reset, /exit, /help.
 */
#define _GNU_SOURCE
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tools.h"
#include "util/util.h"

#include <cJSON.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CHECKPOINTS 6 /* three a turn: before the generation prompt, after it, after the reply */

typedef enum reasoning_mode { REASONING_ON, REASONING_OFF, REASONING_HIDE } reasoning_mode;

typedef struct checkpoint {
    int32_t n_pos; /* the state after this many tokens */
    void *state;
} checkpoint;

typedef struct chat {
    /* options */
    reasoning_mode reasoning;
    int64_t budget;    /* reasoning tokens before </think> is forced; -1: no limit */
    int64_t n_predict; /* most tokens a reply; -1: until the end of turn or a full context */
    bool verbose;
    bool no_reuse; /* decode the whole conversation every turn (for comparison) */
    bool color;   /* ANSI on stdout */
    bool prompts; /* "> " before each input line */
    char *system;

    halo_model *model;
    halo_context *ctx;
    const halo_tokenizer *tok;
    halo_template *tmpl;
    halo_sampler *sampler;
    halo_detok *detok;
    cJSON *messages;
    int32_t n_ctx, n_batch;
    int32_t last_batch; /* tokens in the last halo_decode: its last one has logits */

    int32_t *cache; /* the tokens in sequence 0, in order */
    int32_t n_cache, cap_cache;
    size_t state_size; /* recurrent state bytes; 0: the KV cache can be cut back */
    checkpoint ckpt[MAX_CHECKPOINTS];
    int n_ckpt;

    /* display of the current reply */
    int shown; /* -1 nothing yet, else the halo_chat_event_kind last printed */

    /* figures */
    int turns;
    int64_t n_prompt_total, n_decoded_total, n_generated_total;
    double t_prompt, t_gen;
} chat;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo chat [-m MODEL] [options]\n"
            "\n"
            "Chat with a model: one message a line (typed, or piped in). Commands: /reset\n"
            "(forget the conversation), /exit, /help. A turn that fails (a full context) is\n"
            "reported and the chat goes on; the exit code is then 1.\n"
            "\n"
            "  -m, --model FILE          GGUF model (default: %s)\n"
            "      --system TEXT         a system message at the start of the conversation\n"
            "      --reasoning MODE      on: show the model's reasoning (dimmed on a terminal);\n"
            "                            hide: let it reason but show only the answer; off: ask\n"
            "                            the template for no reasoning (enable_thinking=false)\n"
            "                            (default on)\n"
            "      --reasoning-budget N  after N reasoning tokens, end the thought and answer;\n"
            "                            -1 = no limit (default -1)\n"
            "      --chat-template-file FILE  use this Jinja template, not the model's\n"
            "  -n, --n-predict N         most tokens a reply, -1 = until the turn ends (default -1)\n"
            "  -c, --ctx-size N          context size in tokens, 0 = the model's (default 4096)\n"
            "  -b, --batch-size N        most prompt tokens one decode takes (default 2048)\n"
            "  -t, --threads N           threads (default: the number of cores)\n"
            "      --no-mmap             read the whole model into memory\n"
            TOOLS_GPU_FLAGS_HELP
            "      --mlock               lock the model in memory\n"
            "  -v, --verbose             per-turn figures on stderr (tokens reused, decoded, speed)\n"
            "      --no-context-reuse    decode the whole conversation every turn (to compare)\n"
            "  -h, --help                this help\n"
            "\n",
            tools_default_model());
    tools_sampling_usage(out);
}

static void help_commands(FILE *out) {
    fprintf(out, "commands: /reset forget the conversation; /exit (or end of input) quit; /help this\n");
}

/* ---- the context: decode, cut back, checkpoints ---------------------------------- */

static void drop_checkpoints_after(chat *c, int32_t n_pos) {
    int k = 0;
    for (int i = 0; i < c->n_ckpt; i++) {
        if (c->ckpt[i].n_pos <= n_pos) c->ckpt[k++] = c->ckpt[i];
        else free(c->ckpt[i].state);
    }
    c->n_ckpt = k;
}

static void forget_context(chat *c) {
    halo_seq_clear(c->ctx, 0);
    c->n_cache = 0;
    drop_checkpoints_after(c, -1);
}

/* Save the recurrent state at the current length (hybrid models only). */
static void save_checkpoint(chat *c) {
    if (c->state_size == 0 || c->n_cache == 0) return;
    if (c->n_ckpt && c->ckpt[c->n_ckpt - 1].n_pos == c->n_cache) return;
    void *buf = malloc(c->state_size);
    halo_error err = {0};
    if (!buf || halo_seq_state_save(c->ctx, 0, buf, &err)) {
        /* without it the next turn decodes more; not worth stopping the chat */
        if (c->verbose) fprintf(stderr, "chat: no checkpoint: %s\n", buf ? err.msg : "out of memory");
        free(buf);
        return;
    }
    if (c->n_ckpt == MAX_CHECKPOINTS) {
        free(c->ckpt[0].state);
        memmove(c->ckpt, c->ckpt + 1, (MAX_CHECKPOINTS - 1) * sizeof c->ckpt[0]);
        c->n_ckpt--;
    }
    c->ckpt[c->n_ckpt++] = (checkpoint){c->n_cache, buf};
}

/* Make the context hold exactly cache[0..keep) or a shorter prefix of it. */
static void cut_back(chat *c, int32_t keep) {
    if (keep >= c->n_cache) return;
    halo_error err = {0};
    if (c->state_size == 0) {
        if (halo_seq_truncate(c->ctx, 0, keep, &err) == 0) {
            c->n_cache = keep;
            return;
        }
        forget_context(c);
        return;
    }
    for (int i = c->n_ckpt - 1; i >= 0; i--) {
        if (c->ckpt[i].n_pos > keep) continue;
        if (halo_seq_state_load(c->ctx, 0, c->ckpt[i].state, c->ckpt[i].n_pos, &err) == 0) {
            c->n_cache = c->ckpt[i].n_pos;
            drop_checkpoints_after(c, c->n_cache);
            return;
        }
        break;
    }
    forget_context(c);
}

static bool cache_push(chat *c, const int32_t *ids, int32_t n) {
    if (c->n_cache + n > c->cap_cache) {
        int32_t cap = c->cap_cache ? c->cap_cache : 1024;
        while (cap < c->n_cache + n) cap *= 2;
        int32_t *nc = realloc(c->cache, (size_t)cap * sizeof *nc);
        if (!nc) return false;
        c->cache = nc;
        c->cap_cache = cap;
    }
    memcpy(c->cache + c->n_cache, ids, (size_t)n * sizeof *ids);
    c->n_cache += n;
    return true;
}

/* Decode ids after what is in the context, n_batch at a time; the logits of the last
 * one are then ready. */
static int decode_more(chat *c, const int32_t *ids, int32_t n, halo_error *err) {
    if (n > c->n_ctx - c->n_cache)
        return halo_error_set(err, HALO_ERR_RANGE,
                              "the context is full (%d tokens): /reset to start again, or "
                              "a larger -c",
                              (int)c->n_ctx);
    for (int32_t at = 0; at < n;) {
        int32_t k = n - at < c->n_batch ? n - at : c->n_batch;
        int32_t pos[k > 0 ? k : 1], seq[k > 0 ? k : 1];
        for (int32_t i = 0; i < k; i++) {
            pos[i] = c->n_cache + i;
            seq[i] = 0;
        }
        halo_batch b = {.n_tokens = k, .token = ids + at, .pos = pos, .seq_id = seq};
        int rc = halo_decode(c->ctx, &b, err);
        if (rc) return rc;
        c->last_batch = k;
        if (!cache_push(c, ids + at, k))
            return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        at += k;
    }
    return 0;
}

/* Bring the context to prompt[0..n): keep the common prefix, decode the rest (at
 * least one token, for the logits). prompt[0..split) is the conversation before the
 * generation prompt: a hybrid model checkpoints there too, since the next turn's
 * history usually changes right after it (the template drops "<think>" from it).
 * Returns the number of tokens decoded in *decoded. */
static int sync_prompt(chat *c, const int32_t *prompt, int32_t n, int32_t split,
                       int32_t *decoded, halo_error *err) {
    int32_t common = 0;
    while (!c->no_reuse && common < n && common < c->n_cache && c->cache[common] == prompt[common])
        common++;
    if (common >= n) common = n - 1;
    cut_back(c, common);
    *decoded = n - c->n_cache;
    for (int32_t i = c->n_cache; i < n; i++) halo_sampler_accept(c->sampler, prompt[i]);
    if (c->state_size && split > c->n_cache && split < n) {
        int rc = decode_more(c, prompt + c->n_cache, split - c->n_cache, err);
        if (rc) return rc;
        save_checkpoint(c);
    }
    return decode_more(c, prompt + c->n_cache, n - c->n_cache, err);
}

/* ---- rendering ------------------------------------------------------------------- */

static int render(chat *c, bool add_generation_prompt, char **out, halo_error *err) {
    cJSON *vars = cJSON_CreateObject();
    if (!vars) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    size_t len;
    const char *bos = "", *eos = "";
    int32_t id = halo_tok_bos(c->tok);
    if (id >= 0 && (bos = halo_tok_text(c->tok, id, &len)) == NULL) bos = "";
    char *bos_s = strndup(bos, id >= 0 ? len : 0);
    id = halo_tok_eos(c->tok);
    if (id >= 0 && (eos = halo_tok_text(c->tok, id, &len)) == NULL) eos = "";
    char *eos_s = strndup(eos, id >= 0 ? len : 0);
    bool ok = bos_s && eos_s && cJSON_AddItemReferenceToObject(vars, "messages", c->messages) &&
              cJSON_AddBoolToObject(vars, "add_generation_prompt", add_generation_prompt) &&
              cJSON_AddBoolToObject(vars, "enable_thinking", c->reasoning != REASONING_OFF) &&
              cJSON_AddStringToObject(vars, "bos_token", bos_s) &&
              cJSON_AddStringToObject(vars, "eos_token", eos_s);
    free(bos_s);
    free(eos_s);
    int rc;
    if (!ok) {
        rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    } else {
        rc = halo_template_render(c->tmpl, vars, NULL, out, NULL, err);
    }
    cJSON_Delete(vars);
    return rc;
}

/* The tokens of the rendered conversation: special tokens parsed, BOS as the model
 * asks unless the template wrote it. */
static int tokenize_prompt(chat *c, const char *text, int32_t **ids, int32_t *n,
                           halo_error *err) {
    size_t count = 0;
    int32_t *v = NULL;
    int rc = halo_tok_encode(c->tok, text, strlen(text), HALO_TOK_PARSE_SPECIAL, &v, &count, err);
    if (rc) return rc;
    int32_t bos = halo_tok_bos(c->tok);
    if (halo_tok_add_bos(c->tok) && bos >= 0 && (count == 0 || v[0] != bos)) {
        int32_t *nv = malloc((count + 1) * sizeof *nv);
        if (!nv) {
            free(v);
            return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        }
        nv[0] = bos;
        if (count) memcpy(nv + 1, v, count * sizeof *v);
        free(v);
        v = nv;
        count++;
    }
    if (count == 0 || count > INT32_MAX / 2) {
        free(v);
        return halo_error_set(err, HALO_ERR_ARG, "the rendered conversation has %zu tokens", count);
    }
    *ids = v;
    *n = (int32_t)count;
    return 0;
}

/* How many tokens of prompt[0..n) the conversation has without the generation
 * prompt, if they are a prefix of it (0 otherwise, or if the template fails). */
static int32_t history_length(chat *c, const int32_t *prompt, int32_t n) {
    halo_error err = {0};
    char *text = NULL;
    int32_t *ids = NULL, k = 0, split = 0;
    if (render(c, false, &text, &err) == 0 && tokenize_prompt(c, text, &ids, &k, &err) == 0 &&
        k < n && !memcmp(ids, prompt, (size_t)k * sizeof *ids))
        split = k;
    free(text);
    free(ids);
    return split;
}

/* ---- the reply ------------------------------------------------------------------- */

static void show_close_reasoning(chat *c) {
    if (c->shown != HALO_CHAT_EVENT_REASONING) return;
    if (c->reasoning == REASONING_HIDE) {
        if (c->color) fputs("\r\033[K", stdout); /* erase "(thinking)" */
        return;
    }
    if (c->color) fputs("\033[0m\n\n", stdout);
    else fputs("\n</think>\n\n", stdout);
}

static void on_event(void *user, const halo_chat_event *ev) {
    chat *c = user;
    switch (ev->kind) {
    case HALO_CHAT_EVENT_REASONING:
        if (c->reasoning == REASONING_HIDE) {
            /* on a terminal, say why nothing shows yet */
            if (c->color && c->shown != HALO_CHAT_EVENT_REASONING) fputs("\033[2m(thinking)\033[0m", stdout);
            break;
        }
        if (c->shown != HALO_CHAT_EVENT_REASONING) {
            if (c->color) fputs("\033[2m", stdout);
            else fputs("<think>\n", stdout);
        }
        fwrite(ev->text, 1, ev->len, stdout);
        break;
    case HALO_CHAT_EVENT_CONTENT:
        show_close_reasoning(c);
        fwrite(ev->text, 1, ev->len, stdout);
        break;
    case HALO_CHAT_EVENT_TOOL_CALL:
        show_close_reasoning(c);
        fprintf(stdout, "[tool call] %s\n", ev->text);
        break;
    case HALO_CHAT_EVENT_WARNING:
        fflush(stdout);
        fprintf(stderr, "warning: %s\n", ev->text);
        return;
    }
    c->shown = ev->kind;
    fflush(stdout);
}

static int feed_text(halo_chat_parser *p, const char *s, size_t n, halo_error *err) {
    return n ? halo_chat_parser_feed(p, s, n, err) : 0;
}

/* End the thought: "</think>" into the context and the parser. */
static int force_end_of_thought(chat *c, halo_chat_parser *p, int64_t *n_gen, halo_error *err) {
    static const char text[] = "\n</think>\n\n";
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = halo_tok_encode(c->tok, text, strlen(text), HALO_TOK_PARSE_SPECIAL, &ids, &n, err);
    if (rc) return rc;
    const char *held;
    size_t held_len;
    halo_detok_flush(c->detok, &held, &held_len);
    rc = feed_text(p, held, held_len, err);
    if (!rc) rc = decode_more(c, ids, (int32_t)n, err);
    for (size_t i = 0; !rc && i < n; i++) halo_sampler_accept(c->sampler, ids[i]);
    if (!rc) rc = feed_text(p, text, strlen(text), err);
    *n_gen += (int64_t)n;
    free(ids);
    return rc;
}

static int reply(chat *c, const char *prompt_text, halo_error *err) {
    int32_t *prompt = NULL, n_prompt = 0, decoded = 0;
    int rc = tokenize_prompt(c, prompt_text, &prompt, &n_prompt, err);
    if (rc) return rc;
    if (n_prompt >= c->n_ctx) {
        free(prompt);
        return halo_error_set(err, HALO_ERR_RANGE,
                              "the conversation (%d tokens) does not fit the context (%d): /reset "
                              "to start again, or a larger -c",
                              (int)n_prompt, (int)c->n_ctx);
    }
    int32_t split = c->state_size ? history_length(c, prompt, n_prompt) : 0;
    double t0 = halo_time_seconds();
    rc = sync_prompt(c, prompt, n_prompt, split, &decoded, err);
    free(prompt);
    if (rc) {
        forget_context(c); /* the cache no longer matches c->cache */
        return rc;
    }
    save_checkpoint(c);
    double t1 = halo_time_seconds();

    /* Where does the output start? A prompt that ends inside <think> (the template
     * opened it) starts in reasoning; otherwise the model may open it itself. */
    size_t pl = strlen(prompt_text);
    while (pl && (prompt_text[pl - 1] == '\n' || prompt_text[pl - 1] == ' ')) pl--;
    bool opened = pl >= 7 && !memcmp(prompt_text + pl - 7, "<think>", 7);
    halo_chat_parse_options po = {.think = opened ? HALO_CHAT_THINK_OPEN : HALO_CHAT_THINK_AUTO};
    halo_chat_parser *p = NULL;
    rc = halo_chat_parser_new(&po, on_event, c, &p, err);
    if (rc) return rc;
    halo_detok_reset(c->detok);
    c->shown = -1;

    int64_t n_gen = 0, n_think = 0;
    bool stopped_by_limit = false;
    interrupted = 0;
    const int32_t n_vocab = halo_model_n_vocab(c->model);
    while (!rc) {
        if (interrupted) break;
        if (c->n_predict >= 0 && n_gen >= c->n_predict) {
            stopped_by_limit = true;
            break;
        }
        if (c->budget >= 0 && halo_chat_parser_in_reasoning(p) && n_think >= c->budget) {
            rc = force_end_of_thought(c, p, &n_gen, err);
            n_think = 0;
            if (rc) break;
            continue;
        }
        const float *logits = halo_get_logits(c->ctx, c->last_batch - 1);
        if (!logits) {
            rc = halo_error_set(err, HALO_ERR_ARG, "no logits after decoding");
            break;
        }
        int32_t id = halo_sampler_sample(c->sampler, logits);
        if (id < 0 || id >= n_vocab) {
            rc = halo_error_set(err, HALO_ERR_ARG, "the sampler gave token %d", (int)id);
            break;
        }
        halo_sampler_accept(c->sampler, id);
        bool in_reasoning = halo_chat_parser_in_reasoning(p);
        if (c->n_cache >= c->n_ctx) {
            fflush(stdout);
            fprintf(stderr, "\nwarning: the context is full (%d tokens); /reset to start again\n",
                    (int)c->n_ctx);
            break;
        }
        /* the end-of-turn token goes into the context too: the template writes it in
         * the history, so the next turn's prefix runs through it */
        rc = decode_more(c, &id, 1, err);
        if (rc) break;
        n_gen++;
        if (halo_tok_is_eog(c->tok, id)) break;
        const char *piece;
        size_t piece_len;
        rc = halo_detok_push(c->detok, id, &piece, &piece_len, err);
        if (!rc) rc = feed_text(p, piece, piece_len, err);
        if (in_reasoning && halo_chat_parser_in_reasoning(p)) n_think++;
    }
    if (!rc) {
        const char *held;
        size_t held_len;
        halo_detok_flush(c->detok, &held, &held_len);
        rc = feed_text(p, held, held_len, err);
    }
    if (!rc) rc = halo_chat_parser_finish(p, err);
    show_close_reasoning(c);
    fputc('\n', stdout);
    fflush(stdout);
    if (interrupted) fprintf(stderr, "(interrupted)\n");
    if (stopped_by_limit && c->verbose) fprintf(stderr, "(stopped at -n %lld)\n", (long long)c->n_predict);
    double t2 = halo_time_seconds();

    if (!rc) {
        /* the reply joins the history: the template decides what of it to show again */
        size_t cl, rl;
        const char *content = halo_chat_parser_content(p, &cl);
        const char *reasoning = halo_chat_parser_reasoning(p, &rl);
        cJSON *m = cJSON_CreateObject();
        char *cs = strndup(content, cl), *rs = strndup(reasoning, rl);
        bool ok = m && cs && rs && cJSON_AddStringToObject(m, "role", "assistant") &&
                  cJSON_AddStringToObject(m, "content", cs) &&
                  (rl == 0 || cJSON_AddStringToObject(m, "reasoning_content", rs)) &&
                  cJSON_AddItemToArray(c->messages, m);
        free(cs);
        free(rs);
        if (!ok) {
            cJSON_Delete(m);
            rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        }
        save_checkpoint(c);
    } else {
        forget_context(c);
    }
    halo_chat_parser_free(p);

    c->turns++;
    c->n_prompt_total += n_prompt;
    c->n_decoded_total += decoded;
    c->n_generated_total += n_gen;
    c->t_prompt += t1 - t0;
    c->t_gen += t2 - t1;
    if (c->verbose)
        fprintf(stderr,
                "[turn %d: prompt %d tokens, %d reused, %d decoded (%.1f tok/s); %lld generated "
                "(%.1f tok/s)]\n",
                c->turns, (int)n_prompt, (int)(n_prompt - decoded), (int)decoded,
                t1 > t0 ? decoded / (t1 - t0) : 0.0, (long long)n_gen,
                t2 > t1 ? n_gen / (t2 - t1) : 0.0);
    return rc;
}

/* ---- the conversation ------------------------------------------------------------ */

static bool add_message(cJSON *messages, const char *role, const char *text) {
    cJSON *m = cJSON_CreateObject();
    if (m && cJSON_AddStringToObject(m, "role", role) && cJSON_AddStringToObject(m, "content", text) &&
        cJSON_AddItemToArray(messages, m))
        return true;
    cJSON_Delete(m);
    return false;
}

static bool reset_conversation(chat *c) {
    cJSON_Delete(c->messages);
    c->messages = cJSON_CreateArray();
    if (!c->messages) return false;
    if (c->system && !add_message(c->messages, "system", c->system)) return false;
    halo_sampler_reset(c->sampler);
    /* the context stays: the next prompt keeps whatever prefix still matches */
    return true;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

static int loop(chat *c) {
    char *line = NULL;
    size_t cap = 0;
    int status = 0;
    for (;;) {
        if (c->prompts) {
            fputs(c->color ? "\033[1m> \033[0m" : "> ", stdout);
            fflush(stdout);
        }
        errno = 0;
        interrupted = 0;
        ssize_t got = getline(&line, &cap, stdin);
        if (got < 0) {
            if (c->prompts) fputc('\n', stdout);
            break; /* end of input, or Ctrl-C at the prompt */
        }
        char *text = trim(line);
        if (!*text) continue;
        if (!strcmp(text, "/exit") || !strcmp(text, "/quit")) break;
        if (!strcmp(text, "/help")) {
            help_commands(stdout);
            continue;
        }
        if (!strcmp(text, "/reset")) {
            if (!reset_conversation(c)) {
                fprintf(stderr, "error: out of memory\n");
                status = 1;
                break;
            }
            if (c->prompts) fputs("(conversation reset)\n", stdout);
            continue;
        }
        if (text[0] == '/' && text[1] && !strchr(text, ' ')) {
            fprintf(stderr, "unknown command '%s' (/help lists them)\n", text);
            continue;
        }
        if (!add_message(c->messages, "user", text)) {
            fprintf(stderr, "error: out of memory\n");
            status = 1;
            break;
        }
        halo_error err = {0};
        char *prompt = NULL;
        int rc = render(c, true, &prompt, &err);
        if (!rc) rc = reply(c, prompt, &err);
        free(prompt);
        if (rc) {
            fflush(stdout);
            fprintf(stderr, "error: %s\n", err.msg);
            /* the message that failed leaves the history; a full context is not fatal */
            int n = cJSON_GetArraySize(c->messages);
            cJSON *last = cJSON_GetArrayItem(c->messages, n - 1);
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(last, "role");
            if (cJSON_IsString(role) && !strcmp(role->valuestring, "user"))
                cJSON_DeleteItemFromArray(c->messages, n - 1);
            /* the chat goes on (a full context, a template that refuses this
             * conversation); the exit code still says that a turn failed */
            status = 1;
            if (rc == HALO_ERR_NOMEM) break;
        }
    }
    free(line);
    return status;
}

/* ---- the command ----------------------------------------------------------------- */

static char *read_file(const char *path, halo_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        halo_error_set(err, HALO_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = cap > (1u << 24) ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                halo_error_set(err, HALO_ERR_ARG, "%s: too large for a template", path);
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) {
            buf[n] = '\0';
            break;
        }
    }
    if (buf && ferror(f)) {
        halo_error_set(err, HALO_ERR_IO, "%s: read error", path);
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* The template text: the file given, else the model's tokenizer.chat_template. */
static char *template_source(const char *model_path, const char *file, halo_error *err) {
    if (file) return read_file(file, err);
    halo_gguf *g = NULL;
    if (halo_gguf_open(model_path, NULL, &g, err)) return NULL;
    const char *t = halo_gguf_get_str(g, "tokenizer.chat_template");
    char *s = t ? strdup(t) : NULL;
    if (!t)
        halo_error_set(err, HALO_ERR_UNSUPPORTED,
                       "%s has no chat template (tokenizer.chat_template); give one with "
                       "--chat-template-file",
                       model_path);
    halo_gguf_close(g);
    return s;
}

static void chat_free(chat *c) {
    drop_checkpoints_after(c, -1);
    free(c->cache);
    cJSON_Delete(c->messages);
    halo_detok_free(c->detok);
    halo_sampler_free(c->sampler);
    halo_template_free(c->tmpl);
    halo_context_free(c->ctx);
    halo_model_free(c->model);
}

int cmd_chat(int argc, char **argv) {
    const char *model_path = NULL, *template_file = NULL;
    halo_load_options load = {0};
    tools_sampling sampling;
    tools_sampling_init(&sampling);
    chat c = {.reasoning = REASONING_ON, .budget = -1, .n_predict = -1, .shown = -1};
    int64_t n_ctx = 4096, n_batch = 2048, n_threads = 0;
    for (int i = 1; i < argc;) {
        const char *a = argv[i], *v;
        int r;
        if (tools_is_help(a)) {
            usage(stdout);
            return 0;
        }
        if (tools_parse_load_flag(argc, argv, &i, &load)) continue;
        if ((r = tools_parse_sampling_flag(argc, argv, &i, &sampling)) != 0) {
            if (r < 0) return 2;
            continue;
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--system") || !strcmp(a, "-sys") || !strcmp(a, "--system-prompt")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            c.system = (char *)v;
        } else if (!strcmp(a, "--chat-template-file")) {
            if (!(template_file = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--reasoning")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            if (!strcmp(v, "on")) c.reasoning = REASONING_ON;
            else if (!strcmp(v, "off")) c.reasoning = REASONING_OFF;
            else if (!strcmp(v, "hide")) c.reasoning = REASONING_HIDE;
            else {
                fprintf(stderr, "error: --reasoning: '%s' is not on, off or hide\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--reasoning-budget")) {
            if (!(v = tools_flag_value(argc, argv, &i)) ||
                !tools_parse_int(a, v, -1, INT32_MAX, &c.budget))
                return 2;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (!(v = tools_flag_value(argc, argv, &i)) ||
                !tools_parse_int(a, v, -1, INT32_MAX, &c.n_predict))
                return 2;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            if (!(v = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, v, 0, 1 << 30, &n_ctx))
                return 2;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
            if (!(v = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, v, 1, 1 << 20, &n_batch))
                return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, v, 1, 4096, &n_threads))
                return 2;
        } else if (!strcmp(a, "--no-context-reuse")) {
            c.no_reuse = true;
            i++;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            c.verbose = true;
            i++;
        } else if ((r = tools_parse_compat_flag(argc, argv, &i)) != 0) {
            if (r < 0) return 2;
        } else {
            fprintf(stderr, "error: unknown option '%s' (halo chat --help lists them)\n", a);
            return 2;
        }
    }
    if (!model_path) model_path = tools_default_model();
    c.color = isatty(STDOUT_FILENO);
    c.prompts = isatty(STDIN_FILENO) && c.color;

    halo_error err = {0};
    int status = 1;
    char *tsrc = template_source(model_path, template_file, &err);
    if (!tsrc || halo_template_compile(tsrc, strlen(tsrc), &c.tmpl, &err)) goto fail;
    if (halo_model_load(model_path, &load, &c.model, &err)) goto fail;
    c.tok = halo_model_tokenizer(c.model);
    if (!c.tok) {
        halo_error_set(&err, HALO_ERR_UNSUPPORTED, "%s has no tokenizer", model_path);
        goto fail;
    }
    halo_context_params cp;
    halo_context_default_params(&cp);
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_seq_max = 1;
    cp.n_batch = (uint32_t)n_batch;
    cp.n_threads = (int)n_threads;
    if (cp.n_ubatch > cp.n_batch) cp.n_ubatch = cp.n_batch;
    if (halo_context_new(c.model, &cp, &c.ctx, &err)) goto fail;
    c.n_ctx = (int32_t)halo_context_n_ctx(c.ctx);
    c.n_batch = (int32_t)halo_context_n_batch(c.ctx);
    c.state_size = halo_seq_state_size(c.ctx);
    if (sampling.repeat_last_n_ctx) sampling.params.repeat_last_n = c.n_ctx;
    if (halo_sampler_new(&sampling.params, halo_model_n_vocab(c.model), &c.sampler, &err)) goto fail;
    if (halo_detok_new(c.tok, 0, &c.detok, &err)) goto fail;
    if (!reset_conversation(&c)) {
        halo_error_set(&err, HALO_ERR_NOMEM, "out of memory");
        goto fail;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_sigint; /* no SA_RESTART: Ctrl-C at the prompt ends getline */
    sigemptyset(&sa.sa_mask);
    if (c.prompts) sigaction(SIGINT, &sa, NULL);
    if (c.prompts) {
        fprintf(stderr, "halo chat: %s, context %d tokens. ", halo_model_desc(c.model), (int)c.n_ctx);
        help_commands(stderr);
    }
    status = loop(&c);
    if (c.verbose || c.prompts)
        fprintf(stderr,
                "chat: %d turns; prompts %lld tokens, %lld decoded (%.1f tok/s); %lld generated "
                "(%.1f tok/s)\n",
                c.turns, (long long)c.n_prompt_total, (long long)c.n_decoded_total,
                c.t_prompt > 0 ? c.n_decoded_total / c.t_prompt : 0.0,
                (long long)c.n_generated_total, c.t_gen > 0 ? c.n_generated_total / c.t_gen : 0.0);
    free(tsrc);
    chat_free(&c);
    return status;
fail:
    fprintf(stderr, "error: %s\n", err.msg);
    free(tsrc);
    chat_free(&c);
    return 1;
}
