/*
 * The scheduler: one thread owns the context. Each step it admits queued jobs into
 * free slots, builds one batch from the next token of every generating slot and a
 * chunk of every slot still reading its prompt (decode tokens first, then prompt
 * chunks up to n_batch tokens in all, one ubatch's worth while others generate),
 * runs halo_decode once, and turns the logits into tokens, text and OpenAI chunks.
 *
 * The prompt cache. A slot keeps its sequence (tokens and KV pages) when its job
 * ends. A new job goes to the free slot whose sequence shares the longest prefix
 * with its prompt, or borrows a longer prefix from another slot (halo_seq_copy
 * shares the KV pages). Attention-only models just truncate the KV cache to the
 * common prefix. Hybrid models cannot roll their recurrent state back, so while a
 * prompt is read the slot saves checkpoints of that state (at the start of every
 * message, where conversations diverge; every checkpoint_every tokens; 4 and 1 tokens
 * before the prompt's end, and at its end); a later prompt that diverges at position d
 * restarts from the checkpoint nearest at or before d, in whichever slot holds the
 * latest. Checkpoints are bounded by cache_ram over all slots, least recently used out.
 */
#define _GNU_SOURCE
#include "format/gguf.h"
#include "kernels/kernels.h"
#include "server/internal.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* echo with logprobs: the most bytes of logits one step asks for (the prompt's chunks are
 * cut to fit; 67 rows of a 248k vocabulary) */
#define SRV_ECHO_LOGITS_BYTES ((size_t)64 << 20)

/* A generated token's log-probability and its top alternatives (log-softmax of the
 * model's logits, before temperature and penalties: what the model assigned). */
#define SRV_MAX_TOP_LP 20
typedef struct srv_lp {
    int32_t token;
    float logprob;
    int n_top;
    int32_t top[SRV_MAX_TOP_LP];
    float top_lp[SRV_MAX_TOP_LP];
} srv_lp;

struct srv_slot {
    halo_server *server;
    int32_t id; /* its sequence */
    srv_job *job;
    int32_t choice;    /* the job's choice this slot generates (its index in the reply) */
    bool await_prompt; /* a choice > 0: waits for choice 0's prompt, then shares its pages */
    int32_t *tokens; /* [n_tokens] what the sequence holds */
    size_t n_tokens, cap;
    srv_ckpt *ckpts;
    int n_ckpt, cap_ckpt;
    uint64_t used; /* LRU stamp of the slot's cache */

    /* the job in progress */
    size_t n_cached;
    int32_t pending; /* sampled, not yet decoded */
    bool has_pending;
    int32_t n_gen, n_reason, max_gen;
    int32_t *forced; /* tokens to feed instead of sampling (the forced </think>) */
    size_t n_forced, i_forced;
    bool budget_done, stopped;
    int stop_index; /* the stop string that matched, -1: none */
    halo_sampler *smp;
    halo_grammar_matcher *grammar; /* the request's constraint; NULL: none */
    bool grammar_pending;          /* attached to smp when the reasoning block ends */
    halo_detok *detok;
    halo_chat_parser *parser;
    srv_buf hold; /* text held back while it may start a stop string */
    srv_buf text; /* /v1/completions: the whole text */
    int32_t batch_index; /* of its logits in the current batch, -1: none */
    const float *step_logits; /* after a step: its logits row, and the token sampled */
    int32_t step_token;
    double t_start, t_first;
    /* log-probabilities of the generated tokens (req.logprobs >= 0): all of them, and how
     * many a stream has sent */
    srv_lp *lp;
    size_t n_lp, cap_lp, lp_sent, lp_offset;
};

static const char *const chatml_template =
    "{%- for m in messages -%}"
    "{{- '<|im_start|>' + m.role + '\\n' + (m.content or '') + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

/* A copy of text[0..n) that is valid UTF-8: each byte that does not start a
 * well-formed character becomes U+FFFD, so that replies are always valid JSON text. */
static char *utf8_dup(const char *text, size_t n) {
    if (n > (SIZE_MAX - 1) / 3) return NULL;
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out) return NULL;
    const unsigned char *t = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        unsigned c = t[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n && !(len == 2 && c < 0xC2);
        for (size_t k = 1; ok && k < len; k++) ok = (t[i + k] & 0xC0) == 0x80;
        if (ok && len == 3) {
            unsigned cp = (c & 0x0F) << 12 | (t[i + 1] & 0x3Fu) << 6 | (t[i + 2] & 0x3Fu);
            ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
        }
        if (ok && len == 4) {
            unsigned cp = (c & 0x07) << 18 | (t[i + 1] & 0x3Fu) << 12 | (t[i + 2] & 0x3Fu) << 6;
            ok = cp >= 0x10000 && cp <= 0x10FFFF;
        }
        if (ok && c != 0) {
            memcpy(o, t + i, len);
            o += len;
            i += len;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    *o = '\0';
    return out;
}

/* ---- jobs ------------------------------------------------------------------------- */

void srv_job_unref(srv_job *j) {
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    for (int32_t i = 0; j->choices && i < j->req.n; i++) cJSON_Delete(j->choices[i]);
    free(j->choices);
    srv_request_free(&j->req);
    free(j->prompt);
    free(j->turns);
    srv_buf_free(&j->out);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* Append bytes for the client and wake its thread. */
/* The log-probabilities of token tok under logits (n_vocab), with the top n_top. */
static void lp_compute(const float *logits, int32_t n_vocab, int32_t tok, int n_top, srv_lp *out) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++)
        if (logits[i] > mx) mx = logits[i]; /* NaN never wins */
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++)
        if (logits[i] == logits[i]) sum += exp((double)(logits[i] - mx));
    const double lse = (double)mx + log(sum);
    out->token = tok;
    out->logprob = logits[tok] == logits[tok] ? (float)((double)logits[tok] - lse) : -INFINITY;
    if (n_top > SRV_MAX_TOP_LP) n_top = SRV_MAX_TOP_LP;
    int k = 0; /* a sorted insertion over the row: n_top <= 20 */
    for (int32_t i = 0; i < n_vocab && n_top > 0; i++) {
        const float v = logits[i];
        if (!(v == v) || (k == n_top && v <= logits[out->top[k - 1]])) continue;
        int at = k < n_top ? k++ : n_top - 1;
        while (at > 0 && logits[out->top[at - 1]] < v) {
            out->top[at] = out->top[at - 1];
            at--;
        }
        out->top[at] = i;
    }
    out->n_top = k;
    for (int i = 0; i < k; i++) out->top_lp[i] = (float)((double)logits[out->top[i]] - lse);
}

static cJSON *lp_bytes(const char *t, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)t[i]));
    return a;
}

/* A token's text for log-probability output (invalid UTF-8 replaced, as in the text) */
static char *lp_text(const halo_server *s, int32_t id, size_t *n_raw, const char **raw) {
    size_t n = 0;
    const char *p = id >= 0 ? halo_tok_piece(s->tok, id, false, &n) : NULL;
    *raw = p ? p : "";
    *n_raw = p ? n : 0;
    return utf8_dup(*raw, *n_raw);
}

/* {("id",) "token", "logprob", "bytes"} of token id: an entry of chat's logprobs and of
 * llama-server's completion_probabilities (with_id) */
static cJSON *lp_entry(const halo_server *s, int32_t id, float logprob, bool with_id) {
    const char *raw;
    size_t nr;
    cJSON *e = cJSON_CreateObject();
    char *t = lp_text(s, id, &nr, &raw);
    if (with_id) cJSON_AddNumberToObject(e, "id", id);
    cJSON_AddStringToObject(e, "token", t ? t : "");
    free(t);
    cJSON_AddNumberToObject(e, "logprob", logprob);
    cJSON_AddItemToObject(e, "bytes", lp_bytes(raw, nr));
    return e;
}

/* The entries [from, to) with their top alternatives: chat's logprobs.content, or llama-
 * server's completion_probabilities (with_id) */
static cJSON *lp_entries(const halo_server *s, const srv_job *j, const srv_lp *lp, size_t from,
                         size_t to, bool with_id) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = from; i < to; i++) {
        cJSON *e = lp_entry(s, lp[i].token, lp[i].logprob, with_id);
        cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int k = 0; k < lp[i].n_top && k < j->req.logprobs; k++)
            cJSON_AddItemToArray(top, lp_entry(s, lp[i].top[k], lp[i].top_lp[k], with_id));
        cJSON_AddItemToArray(a, e);
    }
    return a;
}

/* The logprobs object of entries [from, to): chat {"content": [...]} or the legacy
 * completions {tokens, token_logprobs, top_logprobs, text_offset}. */
static cJSON *lp_json(const halo_server *s, const srv_job *j, const srv_lp *lp, size_t from,
                      size_t to, size_t *offset) {
    cJSON *o = cJSON_CreateObject();
    const char *raw;
    size_t nr;
    if (j->req.kind == SRV_CHAT) {
        cJSON_AddItemToObject(o, "content", lp_entries(s, j, lp, from, to, false));
        return o;
    }
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens"), *tlp = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs"), *off = cJSON_AddArrayToObject(o, "text_offset");
    for (size_t i = from; i < to; i++) {
        char *t = lp_text(s, lp[i].token, &nr, &raw);
        cJSON_AddItemToArray(toks, cJSON_CreateString(t ? t : ""));
        free(t);
        /* echo: the prompt's first token has no log-probability (nothing before it) */
        const bool none = isnan(lp[i].logprob);
        cJSON_AddItemToArray(tlp, none ? cJSON_CreateNull() : cJSON_CreateNumber(lp[i].logprob));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)*offset));
        *offset += nr;
        if (none) {
            cJSON_AddItemToArray(top, cJSON_CreateNull());
            continue;
        }
        cJSON *m = cJSON_CreateObject();
        for (int k = 0; k < lp[i].n_top && k < j->req.logprobs; k++) {
            char *tt = lp_text(s, lp[i].top[k], &nr, &raw);
            if (tt && !cJSON_GetObjectItemCaseSensitive(m, tt))
                cJSON_AddNumberToObject(m, tt, lp[i].top_lp[k]);
            free(tt);
        }
        cJSON_AddItemToArray(top, m);
    }
    return o;
}

static void job_send(srv_job *j, const char *s, size_t n) {
    pthread_mutex_lock(&j->mu);
    srv_buf_append(&j->out, s, n);
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void job_send_sse(srv_job *j, cJSON *chunk) {
    char *text = cJSON_PrintUnformatted(chunk);
    cJSON_Delete(chunk);
    if (!text) return;
    srv_buf b = {0};
    srv_buf_puts(&b, "data: ");
    srv_buf_puts(&b, text);
    srv_buf_puts(&b, "\n\n");
    free(text);
    if (!b.failed) job_send(j, b.data, b.len);
    srv_buf_free(&b);
}

static void job_done(srv_job *j, int status) {
    pthread_mutex_lock(&j->mu);
    j->http_status = status;
    j->state = SRV_DONE;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* End a job with an error: a JSON error body, or an SSE error event then [DONE]. */
static void job_fail(srv_job *j, const halo_api_error *e) {
    if (j->req.responses && j->req.stream) { /* Responses: an `error` event, no [DONE] */
        srv_responses_fail(j, e);
        job_done(j, e->status);
        return;
    }
    char *text = halo_api_error_json(e);
    if (j->req.stream) {
        srv_buf b = {0};
        srv_buf_puts(&b, "data: ");
        srv_buf_puts(&b, text ? text : "{}");
        srv_buf_puts(&b, "\n\ndata: [DONE]\n\n");
        if (!b.failed) job_send(j, b.data, b.len);
        srv_buf_free(&b);
    } else if (text) {
        job_send(j, text, strlen(text));
    }
    free(text);
    job_done(j, e->status);
}

static cJSON *chunk_new(halo_server *s, srv_job *j) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "id", j->id);
    cJSON_AddStringToObject(c, "object",
                            j->req.kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(c, "created", (double)j->created);
    cJSON_AddStringToObject(c, "model", s->model_id);
    return c;
}

/* A streamed chunk with one choice: delta (chat) or text (completion); with log-
 * probabilities asked for, those of the tokens generated since the last chunk. */
static void send_choice(halo_server *s, srv_slot *sl, cJSON *delta, const char *text,
                        const char *finish) {
    srv_job *j = sl->job;
    if (j->req.kind == SRV_NATIVE) { /* {"content", "stop": false, ..}; the end: finish */
        if (finish) return;
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", 0);
        cJSON_AddStringToObject(c, "content", text ? text : "");
        cJSON_AddBoolToObject(c, "stop", 0);
        cJSON_AddNumberToObject(c, "id_slot", sl->id);
        if (j->req.logprobs > 0) {
            cJSON_AddItemToObject(c, "completion_probabilities",
                                  lp_entries(s, j, sl->lp, sl->lp_sent, sl->n_lp, true));
            sl->lp_sent = sl->n_lp;
        }
        job_send_sse(j, c);
        return;
    }
    cJSON *c = chunk_new(s, j), *choices = cJSON_AddArrayToObject(c, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddNumberToObject(ch, "index", sl->choice);
    if (j->req.kind == SRV_CHAT)
        cJSON_AddItemToObject(ch, "delta", delta ? delta : cJSON_CreateObject());
    else
        cJSON_AddStringToObject(ch, "text", text ? text : "");
    if (j->req.logprobs >= 0) {
        size_t off = sl->lp_offset;
        cJSON_AddItemToObject(ch, "logprobs", lp_json(s, j, sl->lp, sl->lp_sent, sl->n_lp, &off));
        sl->lp_offset = off;
        sl->lp_sent = sl->n_lp;
    } else if (j->req.kind != SRV_CHAT) {
        cJSON_AddNullToObject(ch, "logprobs");
    }
    if (finish)
        cJSON_AddStringToObject(ch, "finish_reason", finish);
    else
        cJSON_AddNullToObject(ch, "finish_reason");
    job_send_sse(j, c);
}

/* ---- preparing a job (on the HTTP thread) ---------------------------------------------- */

static void random_id(char *out, size_t size, const char *prefix) {
    static const char digits[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static atomic_uint_fast64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^
                 (atomic_fetch_add(&counter, 1) + 1) * 0xBF58476D1CE4E5B9ull;
    size_t n = (size_t)snprintf(out, size, "%s", prefix);
    for (; n + 1 < size && n < strlen(prefix) + 24; n++) {
        x ^= x >> 31;
        x *= 0x94D049BB133111EBull;
        x ^= x >> 29;
        out[n] = digits[x % (sizeof digits - 1)];
    }
    out[n] = '\0';
}

static bool ends_with_tag(const char *text, size_t len, const char *tag) {
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ' || text[len - 1] == '\r'))
        len--;
    size_t n = strlen(tag);
    return len >= n && memcmp(text + len - n, tag, n) == 0;
}

int srv_render_chat(halo_server *s, const srv_request *r, char **text, size_t *len,
                    bool *thinking, halo_api_error *e) {
    halo_error err = {0};
    cJSON *ctx = cJSON_CreateObject();
    cJSON_AddItemReferenceToObject(ctx, "messages", r->messages);
    if (r->tools) cJSON_AddItemReferenceToObject(ctx, "tools", r->tools);
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", 1);
    cJSON_AddStringToObject(ctx, "bos_token", s->bos_text);
    cJSON_AddStringToObject(ctx, "eos_token", s->eos_text);
    bool think = s->p.reasoning != HALO_SERVER_REASONING_OFF && s->p.reasoning_budget != 0;
    cJSON_AddBoolToObject(ctx, "enable_thinking", think);
    const cJSON *kw;
    if (r->kwargs) cJSON_ArrayForEach(kw, r->kwargs) {
            cJSON_DeleteItemFromObjectCaseSensitive(ctx, kw->string);
            cJSON_AddItemToObject(ctx, kw->string, cJSON_Duplicate(kw, true));
        }
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(ctx, "enable_thinking");
    if (cJSON_IsBool(et)) think = cJSON_IsTrue(et);
    int rc = halo_template_render(s->tmpl, ctx, NULL, text, len, &err);
    cJSON_Delete(ctx);
    if (rc) {
        srv_error(e, rc == HALO_ERR_NOMEM ? 500 : 400, "messages", "the chat template failed: %s",
                  err.msg);
        return -1;
    }
    if (thinking) *thinking = think;
    return 0;
}

/* ---- where a prompt's turns begin (checkpoints for hybrid models) ------------------------ */

/* Conversations diverge at a message: the shared system prompt ends where the user's first
 * message begins, an edited message changes from its start, a new turn follows the last.
 * A hybrid model can restart only where a checkpoint of its recurrent state was saved, so
 * the prompt stops for one at the start of every message. Those starts are found in the
 * token sequence: chat templates open each turn with a control token (<|im_start|>,
 * <start_of_turn>, <|start_header_id|>, [INST]), the same token whatever the message and
 * wherever it is in the conversation, and a control token is never merged with the text
 * around it, so its position is exact. Rendering the messages prefix by prefix would also
 * find the starts, but costs a render and a tokenization per message, and templates that
 * render a message according to what follows it (Qwen3.5 drops the reasoning of assistant
 * turns before the last user message) make a prefix's render differ from the whole's. The
 * tokens are learnt once, at start, from what the template adds to a probe conversation
 * for one more message (after a user, an assistant and a system message, and for the
 * generation prompt): the first token of that text that is not white space, if it is a
 * control token. A template that opens turns with plain text has none, and its prompts
 * fall back on --checkpoint-every. */

static int render_probe(halo_server *s, const char *messages, bool gen, char **out, size_t *len) {
    halo_error err = {0};
    cJSON *ctx = cJSON_CreateObject(), *m = cJSON_Parse(messages);
    if (!ctx || !m) {
        cJSON_Delete(ctx);
        cJSON_Delete(m);
        return -1;
    }
    cJSON_AddItemToObject(ctx, "messages", m);
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", gen);
    cJSON_AddStringToObject(ctx, "bos_token", s->bos_text);
    cJSON_AddStringToObject(ctx, "eos_token", s->eos_text);
    cJSON_AddBoolToObject(ctx, "enable_thinking",
                          s->p.reasoning != HALO_SERVER_REASONING_OFF && s->p.reasoning_budget != 0);
    int rc = halo_template_render(s->tmpl, ctx, NULL, out, len, &err);
    cJSON_Delete(ctx);
    return rc;
}

static bool is_space_piece(const halo_tokenizer *t, int32_t id) {
    size_t n = 0;
    const char *p = halo_tok_piece(t, id, true, &n);
    if (!p || n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\n' && p[i] != '\r' && p[i] != '\t') return false;
    return true;
}

static void find_turn_marks(halo_server *s) {
#define PROBE_U "{\"role\":\"user\",\"content\":\"Hello.\"}"
#define PROBE_A "{\"role\":\"assistant\",\"content\":\"Hi.\"}"
#define PROBE_S "{\"role\":\"system\",\"content\":\"Be brief.\"}"
    static const struct {
        const char *before, *after;
        bool gen;
    } probes[] = {
        {"[" PROBE_U "]", "[" PROBE_U "," PROBE_A "]", false},
        {"[" PROBE_U "," PROBE_A "]", "[" PROBE_U "," PROBE_A "," PROBE_U "]", false},
        {"[" PROBE_S "]", "[" PROBE_S "," PROBE_U "]", false},
        {"[" PROBE_U "]", "[" PROBE_U "]", true},
    };
#undef PROBE_U
#undef PROBE_A
#undef PROBE_S
    s->n_turn_marks = 0;
    for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
        char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        int32_t *ids = NULL;
        size_t n = 0;
        halo_error err = {0};
        /* a template that refuses a probe (a system message, an assistant last) says
         * nothing about its turns */
        if (!render_probe(s, probes[k].before, false, &a, &la) &&
            !render_probe(s, probes[k].after, probes[k].gen, &b, &lb) && lb > la &&
            memcmp(a, b, la) == 0 &&
            !halo_tok_encode(s->tok, b + la, lb - la, HALO_TOK_PARSE_SPECIAL, &ids, &n, &err)) {
            size_t i = 0;
            while (i < n && is_space_piece(s->tok, ids[i])) i++;
            int32_t id = i < n ? ids[i] : -1;
            bool known = false;
            for (int m = 0; m < s->n_turn_marks; m++) known |= s->turn_marks[m] == id;
            if (id >= 0 && !known && halo_tok_type_of(s->tok, id) == HALO_TOK_TYPE_CONTROL &&
                id != halo_tok_bos(s->tok) && !halo_tok_is_eog(s->tok, id) &&
                s->n_turn_marks < SRV_TURN_MARKS)
                s->turn_marks[s->n_turn_marks++] = id;
        }
        free(ids);
        free(a);
        free(b);
    }
}

/* The positions of the job's prompt where a turn begins (none for a model without
 * recurrent state: it truncates its cache anywhere). Out of memory: no turns. */
static void find_turns(halo_server *s, srv_job *j) {
    j->turns = NULL;
    j->n_turns = 0;
    if (s->state_size == 0 || s->n_turn_marks == 0 || j->n_prompt < 2) return;
    size_t n = 0;
    for (size_t p = 1; p < j->n_prompt; p++)
        for (int m = 0; m < s->n_turn_marks; m++)
            if (j->prompt[p] == s->turn_marks[m]) {
                n++;
                break;
            }
    if (n == 0 || !(j->turns = malloc(sizeof *j->turns * n))) return;
    for (size_t p = 1; p < j->n_prompt; p++)
        for (int m = 0; m < s->n_turn_marks; m++)
            if (j->prompt[p] == s->turn_marks[m]) {
                j->turns[j->n_turns++] = (int32_t)p;
                break;
            }
}

static int infill_prompt(halo_server *s, srv_job *j, halo_api_error *e);

int srv_job_prepare(halo_server *s, srv_job *j, halo_api_error *e) {
    srv_request *r = &j->req;
    if (r->id_slot >= (int32_t)s->n_slots) {
        srv_error(e, 400, "id_slot", "'id_slot' %d: the server has %u slots (0 to %u; -1: any)",
                  r->id_slot, s->n_slots, s->n_slots - 1);
        return -1;
    }
    if (r->n > (int32_t)s->n_slots) {
        srv_error(e, 400, "n",
                  "'n' is %d but the server has %u slot%s (-np): each choice needs its own slot",
                  r->n, s->n_slots, s->n_slots == 1 ? "" : "s");
        return -1;
    }
    random_id(j->id, sizeof j->id,
              r->responses ? "resp_" : r->kind == SRV_CHAT ? "chatcmpl-" : "cmpl-");
    j->created = (int64_t)time(NULL);
    j->think = HALO_CHAT_THINK_NONE;
    halo_error err = {0};
    if (r->infill) {
        if (infill_prompt(s, j, e)) return -1;
    } else if (r->kind != SRV_CHAT && r->prompt_ids) {
        j->prompt = r->prompt_ids;
        j->n_prompt = r->n_prompt_ids;
        r->prompt_ids = NULL;
    } else {
        char *text = NULL;
        size_t len = 0;
        bool own = false;
        if (r->kind == SRV_CHAT) {
            bool thinking = false;
            if (srv_render_chat(s, r, &text, &len, &thinking, e)) return -1;
            own = true;
            if (s->p.reasoning == HALO_SERVER_REASONING_OFF)
                j->think = HALO_CHAT_THINK_NONE;
            else if (ends_with_tag(text, len, "<think>"))
                j->think = HALO_CHAT_THINK_OPEN;
            else if (!thinking && ends_with_tag(text, len, "</think>"))
                j->think = HALO_CHAT_THINK_NONE;
            else
                j->think = HALO_CHAT_THINK_AUTO;
        } else {
            text = r->prompt;
            len = strlen(text);
        }
        unsigned flags = HALO_TOK_PARSE_SPECIAL;
        int32_t bos = halo_tok_bos(s->tok);
        if (halo_tok_add_bos(s->tok) && bos >= 0) {
            size_t bl = strlen(s->bos_text);
            if (!(bl && len >= bl && memcmp(text, s->bos_text, bl) == 0)) flags |= HALO_TOK_ADD_SPECIAL;
        }
        int rc = halo_tok_encode(s->tok, text, len, flags, &j->prompt, &j->n_prompt, &err);
        if (own) free(text);
        if (rc) {
            srv_error(e, 500, NULL, "tokenizing the prompt failed: %s", err.msg);
            return -1;
        }
    }
    if (j->n_prompt == 0) {
        srv_error(e, 400, r->kind == SRV_CHAT ? "messages" : "prompt", "the prompt is empty");
        return -1;
    }
    if (j->n_prompt >= s->n_ctx_slot) {
        srv_error(e, 400, r->kind == SRV_CHAT ? "messages" : "prompt",
                  "the prompt has %zu tokens, more than the %u a slot's context holds (raise -c)",
                  j->n_prompt, s->n_ctx_slot - 1);
        return -1;
    }
    find_turns(s, j);
    /* max_tokens beyond what the slot's context holds: generation stops there ("length"),
     * as the widely used engine does, rather than a 400 */
    int rc = halo_sampler_check_params(&r->sp, s->n_vocab, &err);
    if (rc) {
        srv_error(e, 400, NULL, "%s", err.msg);
        return -1;
    }
    return 0;
}

int srv_submit(halo_server *s, srv_job *j, halo_api_error *e) {
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        srv_error(e, 503, NULL, "the server is shutting down");
        return -1;
    }
    /* jobs beyond the free slots wait; past queue_max of those, 503 */
    if (s->n_queued - ((int32_t)s->n_slots - s->n_busy) >= s->p.queue_max) {
        s->m.rejected++;
        pthread_mutex_unlock(&s->mu);
        srv_error(e, 503, NULL,
                  "the server is busy: all %u slots are in use and %d requests wait; retry later",
                  s->n_slots, s->n_queued);
        return -1;
    }
    j->refs++; /* the scheduler's */
    j->next = NULL;
    if (s->queue_tail)
        s->queue_tail->next = j;
    else
        s->queue_head = j;
    s->queue_tail = j;
    s->n_queued++;
    s->m.requests++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void srv_wake(halo_server *s) {
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- checkpoints ------------------------------------------------------------------------ */

/* Checkpoint memory: GPU memory where the backend has it (a device copy each way, in
 * the decode stream), else host memory; freed backend buffers are kept for the next
 * checkpoint (allocating and freeing GPU memory waits for the device). */
static void *ckpt_alloc(halo_server *s, bool *in_backend) {
    *in_backend = true;
    if (s->n_spare_bufs > 0) return s->spare_bufs[--s->n_spare_bufs];
    void *p = halo_state_buf_new(s->ctx);
    if (p) return p;
    *in_backend = false;
    return malloc(s->state_size);
}

static void ckpt_release(halo_server *s, void *data, bool in_backend) {
    if (!in_backend) free(data);
    else if (s->n_spare_bufs < SRV_SPARE_STATE_BUFS) s->spare_bufs[s->n_spare_bufs++] = data;
    else halo_state_buf_free(s->ctx, data);
}

static void ckpt_drop(halo_server *s, srv_slot *sl, int i) {
    ckpt_release(s, sl->ckpts[i].data, sl->ckpts[i].in_backend);
    s->ckpt_bytes -= s->state_size;
    sl->ckpts[i] = sl->ckpts[--sl->n_ckpt];
}

/* Keep only the checkpoints at positions <= n. */
static void ckpt_trim(halo_server *s, srv_slot *sl, size_t n) {
    for (int i = sl->n_ckpt - 1; i >= 0; i--)
        if ((size_t)sl->ckpts[i].pos > n) ckpt_drop(s, sl, i);
}

static uint64_t saved_size(const halo_server *s, const srv_saved *e) {
    return (uint64_t)e->kv_bytes + (uint64_t)e->n_ckpt * s->state_size;
}

/* Forget conversation i of those in host memory. */
static void saved_drop(halo_server *s, int i) {
    srv_saved *e = &s->saved[i];
    s->saved_bytes -= saved_size(s, e);
    for (int c = 0; c < e->n_ckpt; c++) ckpt_release(s, e->ckpts[c].data, e->ckpts[c].in_backend);
    free(e->ckpts);
    free(e->kv);
    free(e->tokens);
    s->saved[i] = s->saved[--s->n_saved];
}

/* Evict least recently used checkpoints and saved conversations until `need` more bytes
 * fit in cache_ram. */
static bool ckpt_make_room(halo_server *s, uint64_t need) {
    if (need > s->p.cache_ram) return false;
    while (s->ckpt_bytes + s->saved_bytes + need > s->p.cache_ram) {
        srv_slot *best = NULL;
        int bi = -1, si = -1;
        uint64_t oldest = UINT64_MAX;
        for (uint32_t k = 0; k < s->n_slots; k++)
            for (int i = 0; i < s->slots[k].n_ckpt; i++)
                if (s->slots[k].ckpts[i].used < oldest) {
                    oldest = s->slots[k].ckpts[i].used;
                    best = &s->slots[k];
                    bi = i;
                }
        for (int i = 0; i < s->n_saved; i++)
            if (s->saved[i].used < oldest) {
                oldest = s->saved[i].used;
                si = i;
            }
        if (si >= 0) saved_drop(s, si);
        else if (best) ckpt_drop(s, best, bi);
        else return false;
    }
    return true;
}

static void ckpt_save(halo_server *s, srv_slot *sl) {
    int32_t pos = (int32_t)sl->n_tokens;
    for (int i = 0; i < sl->n_ckpt; i++)
        if (sl->ckpts[i].pos == pos) return;
    if (s->state_size == 0 || s->state_size > s->p.cache_ram) return;
    if (!ckpt_make_room(s, s->state_size)) return;
    if (sl->n_ckpt == sl->cap_ckpt) {
        int cap = sl->cap_ckpt ? sl->cap_ckpt * 2 : 8;
        srv_ckpt *c = realloc(sl->ckpts, sizeof *c * (size_t)cap);
        if (!c) return;
        sl->ckpts = c;
        sl->cap_ckpt = cap;
    }
    double t0 = halo_time_seconds();
    bool in_backend;
    void *data = ckpt_alloc(s, &in_backend);
    halo_error err = {0};
    if (!data) return;
    if (in_backend ? halo_seq_state_save_buf(s->ctx, sl->id, data, &err)
                   : halo_seq_state_save(s->ctx, sl->id, data, &err)) {
        ckpt_release(s, data, in_backend);
        return;
    }
    double dt = halo_time_seconds() - t0;
    pthread_mutex_lock(&s->mu);
    s->m.ckpt_saves++;
    s->m.ckpt_seconds += dt;
    pthread_mutex_unlock(&s->mu);
    sl->ckpts[sl->n_ckpt++] = (srv_ckpt){pos, data, in_backend, ++s->ckpt_clock};
    s->ckpt_bytes += s->state_size;
}

/* ---- slots -------------------------------------------------------------------------------- */

/* a conversation goes to host memory when its slot gives up at least this many of its
 * tokens, and comes back when that gives this many more than the slots */
#define SRV_SAVE_MIN 64

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* How much of slot sl's sequence a prompt can keep, and the checkpoint to restore
 * for it (NULL: the live state serves, or the model has none). */
static size_t reuse_point(halo_server *s, srv_slot *sl, const int32_t *prompt, size_t n,
                          srv_ckpt **ck) {
    *ck = NULL;
    size_t l = common_prefix(sl->tokens, sl->n_tokens, prompt, n);
    if (l > n - 1) l = n - 1; /* one token must run to give logits */
    if (s->state_size == 0 || l == sl->n_tokens) return l;
    srv_ckpt *best = NULL;
    for (int i = 0; i < sl->n_ckpt; i++)
        if ((size_t)sl->ckpts[i].pos <= l && (!best || sl->ckpts[i].pos > best->pos))
            best = &sl->ckpts[i];
    *ck = best;
    return best ? (size_t)best->pos : 0;
}

static bool slot_reserve(srv_slot *sl, size_t n) {
    if (n <= sl->cap) return true;
    size_t cap = sl->cap ? sl->cap : 256;
    while (cap < n) cap *= 2;
    int32_t *t = realloc(sl->tokens, sizeof *t * cap);
    if (!t) return false;
    sl->tokens = t;
    sl->cap = cap;
    return true;
}

static void slot_forget(halo_server *s, srv_slot *sl) {
    halo_seq_clear(s->ctx, sl->id);
    sl->n_tokens = 0;
    ckpt_trim(s, sl, 0);
}

/* ---- conversations in host memory ---------------------------------------------------------- */

/* Slot sl is about to keep only its first `keep` tokens (0: it takes another sequence): when
 * that loses a good part of its conversation, keep a copy of the whole in host memory, with
 * the checkpoints past `keep` (the slot would drop them) and the state at its end. */
static void slot_save(halo_server *s, srv_slot *sl, size_t keep) {
    const size_t n = sl->n_tokens, lost = n > keep ? n - keep : 0;
    if (lost < SRV_SAVE_MIN || n > INT32_MAX) return;
    const size_t kvb = halo_seq_kv_size(s->ctx, (int32_t)n);
    bool has_end = s->state_size == 0;
    int moved = 0;
    for (int i = 0; i < sl->n_ckpt; i++) {
        has_end |= (size_t)sl->ckpts[i].pos == n;
        moved += (size_t)sl->ckpts[i].pos > keep;
    }
    if (kvb == SIZE_MAX || (uint64_t)kvb > s->p.cache_ram) return;
    const uint64_t need = (uint64_t)kvb + (has_end ? 0 : s->state_size);
    if (s->n_saved == s->cap_saved) {
        int cap = s->cap_saved ? s->cap_saved * 2 : 4;
        srv_saved *a = realloc(s->saved, sizeof *a * (size_t)cap);
        if (!a) return;
        s->saved = a;
        s->cap_saved = cap;
    }
    /* room from older copies only: the slots' checkpoints (the ones this very request may
     * restore among them) are worth more than a copy */
    while (s->n_saved > 0 && s->ckpt_bytes + s->saved_bytes + need > s->p.cache_ram) {
        int oldest = 0;
        for (int i = 1; i < s->n_saved; i++)
            if (s->saved[i].used < s->saved[oldest].used) oldest = i;
        saved_drop(s, oldest);
    }
    if (s->ckpt_bytes + s->saved_bytes + need > s->p.cache_ram) return;
    srv_saved e = {0};
    e.n = (int32_t)n;
    e.kv_bytes = kvb;
    e.tokens = malloc(sizeof *e.tokens * (n ? n : 1));
    e.kv = kvb ? malloc(kvb) : NULL;
    e.ckpts = malloc(sizeof *e.ckpts * (size_t)(moved + 1));
    halo_error err = {0};
    bool ok = e.tokens && (e.kv || !kvb) && e.ckpts &&
              !halo_seq_kv_save(s->ctx, sl->id, (int32_t)n, e.kv, &err);
    if (ok && !has_end) { /* the live state: the end of its sequence */
        bool in_backend;
        void *data = ckpt_alloc(s, &in_backend);
        ok = data && !(in_backend ? halo_seq_state_save_buf(s->ctx, sl->id, data, &err)
                                  : halo_seq_state_save(s->ctx, sl->id, data, &err));
        if (ok) e.ckpts[e.n_ckpt++] = (srv_ckpt){(int32_t)n, data, in_backend, ++s->ckpt_clock};
        else if (data) ckpt_release(s, data, in_backend);
    }
    if (!ok) {
        for (int c = 0; c < e.n_ckpt; c++) ckpt_release(s, e.ckpts[c].data, e.ckpts[c].in_backend);
        free(e.tokens), free(e.kv), free(e.ckpts);
        return;
    }
    memcpy(e.tokens, sl->tokens, sizeof *e.tokens * n);
    for (int i = sl->n_ckpt - 1; i >= 0; i--) /* the slot's checkpoints past keep move over */
        if ((size_t)sl->ckpts[i].pos > keep) {
            e.ckpts[e.n_ckpt++] = sl->ckpts[i];
            sl->ckpts[i] = sl->ckpts[--sl->n_ckpt];
            s->ckpt_bytes -= s->state_size;
        }
    e.used = ++s->ckpt_clock;
    s->saved[s->n_saved++] = e;
    s->saved_bytes += saved_size(s, &e);
}

/* The saved conversation that gives the most of a prompt: its index (-1: none) and how
 * many tokens (a checkpoint's position for hybrids, where *ck is that checkpoint). */
static int saved_best(halo_server *s, const int32_t *prompt, size_t n, size_t *keep, int *ck) {
    int best = -1;
    *keep = 0;
    *ck = -1;
    for (int i = 0; i < s->n_saved; i++) {
        const srv_saved *e = &s->saved[i];
        size_t l = common_prefix(e->tokens, (size_t)e->n, prompt, n), p = l;
        int c = -1;
        if (l > n - 1) l = n - 1;
        if (s->state_size > 0) {
            p = 0;
            for (int k = 0; k < e->n_ckpt; k++)
                if ((size_t)e->ckpts[k].pos <= l && (size_t)e->ckpts[k].pos > p)
                    p = (size_t)e->ckpts[k].pos, c = k;
        } else {
            p = l;
        }
        if (p > *keep) best = i, *keep = p, *ck = c;
    }
    return best;
}

/* Slot sl takes the first `keep` tokens of saved conversation i, which leaves host memory
 * (its checkpoints up to keep go to the slot). -1 (the slot then empty) on failure. */
static int slot_restore(halo_server *s, srv_slot *sl, int i, size_t keep, int ck) {
    srv_saved *e = &s->saved[i];
    halo_error err = {0};
    ckpt_trim(s, sl, 0);
    if (!slot_reserve(sl, keep + 16) ||
        halo_seq_kv_load(s->ctx, sl->id, e->kv, e->n, (int32_t)keep, &err))
        return -1;
    if (ck >= 0) {
        const srv_ckpt *c = &e->ckpts[ck];
        if (c->in_backend ? halo_seq_state_load_buf(s->ctx, sl->id, c->data, (int32_t)keep, &err)
                          : halo_seq_state_load(s->ctx, sl->id, c->data, (int32_t)keep, &err))
            return -1;
    }
    memcpy(sl->tokens, e->tokens, sizeof(int32_t) * keep);
    sl->n_tokens = keep;
    if (sl->cap_ckpt < e->n_ckpt) {
        srv_ckpt *c = realloc(sl->ckpts, sizeof *c * (size_t)e->n_ckpt);
        if (c) sl->ckpts = c, sl->cap_ckpt = e->n_ckpt;
    }
    for (int k = e->n_ckpt - 1; k >= 0; k--) {
        if ((size_t)e->ckpts[k].pos > keep || sl->n_ckpt == sl->cap_ckpt) continue;
        sl->ckpts[sl->n_ckpt] = e->ckpts[k];
        sl->ckpts[sl->n_ckpt++].used = ++s->ckpt_clock;
        e->ckpts[k] = e->ckpts[--e->n_ckpt];
        s->saved_bytes -= s->state_size;
        s->ckpt_bytes += s->state_size;
    }
    saved_drop(s, i);
    return 0;
}

/* Set sl's sequence to the first n_keep tokens of src's (src may be sl). */
static int slot_reuse(halo_server *s, srv_slot *sl, srv_slot *src, size_t n_keep, srv_ckpt *ck) {
    halo_error err = {0};
    if (src != sl) {
        if (halo_seq_copy(s->ctx, src->id, sl->id, &err)) return -1;
        ckpt_trim(s, sl, 0);
        if (!slot_reserve(sl, src->n_tokens)) return -1;
        memcpy(sl->tokens, src->tokens, sizeof(int32_t) * src->n_tokens);
        sl->n_tokens = src->n_tokens;
        src->used = ++s->ckpt_clock; /* its prefix served: it stays longer */
    }
    if (n_keep == 0) {
        slot_forget(s, sl);
        return 0;
    }
    if (ck) {
        ck->used = ++s->ckpt_clock;
        if (ck->in_backend
                ? halo_seq_state_load_buf(s->ctx, sl->id, ck->data, (int32_t)n_keep, &err)
                : halo_seq_state_load(s->ctx, sl->id, ck->data, (int32_t)n_keep, &err))
            return -1;
    } else if (n_keep < sl->n_tokens) {
        if (halo_seq_truncate(s->ctx, sl->id, (int32_t)n_keep, &err)) return -1;
    }
    sl->n_tokens = n_keep;
    ckpt_trim(s, sl, n_keep);
    return 0;
}

static void parser_event(void *user, const halo_chat_event *ev);

static void slot_end_job(srv_slot *sl) {
    halo_sampler_free(sl->smp);
    halo_grammar_matcher_free(sl->grammar);
    sl->grammar = NULL;
    sl->grammar_pending = false;
    halo_detok_free(sl->detok);
    halo_chat_parser_free(sl->parser);
    free(sl->forced);
    srv_buf_free(&sl->hold);
    srv_buf_free(&sl->text);
    sl->smp = NULL;
    sl->detok = NULL;
    sl->parser = NULL;
    sl->forced = NULL;
    sl->n_forced = sl->i_forced = 0;
    free(sl->lp);
    sl->lp = NULL;
    sl->n_lp = sl->cap_lp = sl->lp_sent = sl->lp_offset = 0;
    sl->job = NULL;
    sl->choice = 0;
    sl->await_prompt = false;
}

/* End every slot of job j (its choices), without a reply. */
static void job_release_slots(halo_server *s, srv_job *j) {
    for (uint32_t k = 0; k < s->n_slots; k++)
        if (s->slots[k].job == j) {
            slot_end_job(&s->slots[k]);
            s->n_busy--;
        }
}

/* echo with logprobs: the prompt tokens' log-probabilities are part of the reply */
static bool wants_prompt_lp(const srv_job *j) { return j->req.echo && j->req.logprobs >= 0; }

/* The grammars' vocabulary for a job (chat output keeps its tags' text), built on first use. */
static halo_grammar_vocab *grammar_vocab(halo_server *s, const srv_job *j, halo_error *err) {
    int k = j->req.kind == SRV_CHAT ? 1 : 0;
    if (!s->gvocab[k]) {
        double t0 = halo_time_seconds();
        if (halo_tok_grammar_vocab(s->tok, k == 1, &s->gvocab[k], err)) return NULL;
        halo_log(HALO_LOG_INFO, "server: grammar vocabulary of %d tokens built in %.1f ms",
                 (int)halo_grammar_vocab_n_tokens(s->gvocab[k]), 1e3 * (halo_time_seconds() - t0));
    }
    return s->gvocab[k];
}

/* The job's grammar on the slot's sampler, after the prompt: from the first token, or,
 * when the prompt opened a reasoning block, from the token after it closes (the grammar
 * constrains the answer, not the thinking). */
static int slot_grammar(halo_server *s, srv_slot *sl, srv_job *j, halo_api_error *e) {
    halo_error err = {0};
    halo_grammar_vocab *v = grammar_vocab(s, j, &err);
    if (!v || halo_grammar_matcher_new(j->req.grammar, v, &sl->grammar, &err)) {
        srv_error(e, 500, NULL, "%s", err.msg);
        return -1;
    }
    sl->grammar_pending = j->think == HALO_CHAT_THINK_OPEN;
    if (!sl->grammar_pending) halo_sampler_set_grammar(sl->smp, sl->grammar);
    return 0;
}

static bool ignore_eog(halo_server *s, srv_request *r);

/* Choice `choice` of job j in slot sl: its sampler (choices > 0 draw from their own random
 * stream, derived from choice 0's seed so that a fixed seed reproduces every choice),
 * detokenizer, chat parser and grammar. The slot is busy from here on: on failure the
 * caller releases every slot of the job. */
static int slot_setup(halo_server *s, srv_slot *sl, srv_job *j, int32_t choice, uint32_t seed0,
                      halo_api_error *e) {
    sl->job = j;
    sl->choice = choice;
    s->n_busy++;
    halo_error err = {0};
    if (j->req.ignore_eos && !ignore_eog(s, &j->req)) {
        srv_error(e, 500, NULL, "out of memory");
        return -1;
    }
    halo_sampler_params sp = j->req.sp;
    if (choice > 0) {
        sp.seed = seed0 + (uint32_t)choice * 0x9E3779B9u;
        if (sp.seed == HALO_SEED_RANDOM) sp.seed--;
    }
    if (halo_sampler_new(&sp, s->n_vocab, &sl->smp, &err) ||
        /* chat output keeps control tokens' text: the parser needs the tags
         * (<think>, <tool_call>) that some vocabularies mark as control tokens */
        halo_detok_new(s->tok, j->req.kind == SRV_CHAT ? HALO_TOK_DECODE_SPECIAL : 0, &sl->detok,
                       &err)) {
        srv_error(e, 500, NULL, "%s", err.msg);
        return -1;
    }
    if (j->req.kind == SRV_CHAT) {
        halo_chat_parse_options po = {0};
        po.think = j->think;
        po.tool_calls = j->req.tools != NULL;
        char *tools_json = j->req.tools ? cJSON_PrintUnformatted(j->req.tools) : NULL;
        po.tools_json = tools_json;
        int rc = halo_chat_parser_new(&po, parser_event, sl, &sl->parser, &err);
        free(tools_json);
        if (rc) {
            srv_error(e, 500, NULL, "%s", err.msg);
            return -1;
        }
    }
    for (size_t i = 0; i < j->n_prompt; i++) halo_sampler_accept(sl->smp, j->prompt[i]);
    if (j->req.grammar && slot_grammar(s, sl, j, e)) return -1;
    if (wants_prompt_lp(j)) { /* entry i: prompt token i given the ones before; 0 has none */
        size_t cap = j->n_prompt + 64;
        if (cap > SIZE_MAX / sizeof *sl->lp || !(sl->lp = malloc(sizeof *sl->lp * cap))) {
            srv_error(e, 500, NULL, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < j->n_prompt; i++)
            sl->lp[i] = (srv_lp){.token = j->prompt[i], .logprob = NAN};
        sl->cap_lp = cap;
        sl->n_lp = j->n_prompt;
    }
    int32_t room = (int32_t)(s->n_ctx_slot - j->n_prompt);
    int32_t want = j->req.max_tokens >= 0 ? j->req.max_tokens : s->p.n_predict;
    sl->max_gen = want < 0 || want > room ? room : want;
    sl->has_pending = false;
    sl->n_gen = sl->n_reason = 0;
    sl->budget_done = sl->stopped = false;
    sl->stop_index = -1;
    sl->t_start = halo_time_seconds();
    sl->t_first = 0;
    sl->used = ++s->ckpt_clock;
    sl->await_prompt = choice > 0;
    if (j->req.stream && j->req.kind == SRV_CHAT && !j->req.responses) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "role", "assistant");
        cJSON_AddStringToObject(d, "content", "");
        send_choice(s, sl, d, NULL, NULL);
    }
    return 0;
}

/* Give job j its slots: choice 0 in the free slot that reuses the most of its prompt,
 * choices 1..n-1 in the least recently used other free slots (admit saw that there are
 * enough), which wait for choice 0's prompt and then share its pages. */
static int slot_start(halo_server *s, srv_job *j, halo_api_error *e) {
    srv_slot *best = NULL, *lru = NULL, *src = NULL;
    size_t best_keep = 0, src_keep = 0;
    srv_ckpt *best_ck = NULL, *src_ck = NULL;
    for (uint32_t k = 0; k < s->n_slots; k++) {
        srv_slot *sl = &s->slots[k];
        srv_ckpt *ck;
        size_t keep = sl->n_tokens ? reuse_point(s, sl, j->prompt, j->n_prompt, &ck) : 0;
        if (!sl->job) {
            if (!lru || sl->used < lru->used) lru = sl;
            if (!best || keep > best_keep) best = sl, best_keep = keep, best_ck = keep ? ck : NULL;
        }
        if (keep > src_keep) src = sl, src_keep = keep, src_ck = ck;
    }
    if (j->req.id_slot >= 0) { /* the slot asked for (admit waited for it to be free) */
        srv_slot *want = &s->slots[j->req.id_slot];
        srv_ckpt *ck = NULL;
        size_t keep = want->n_tokens ? reuse_point(s, want, j->prompt, j->n_prompt, &ck) : 0;
        best = lru = want, best_keep = keep, best_ck = keep ? ck : NULL;
    }
    if (!best || best->job) {
        srv_error(e, 503, NULL, "no free slot");
        return -1;
    }
    /* Reuse a free slot's own cache only when it is a fair share of the prompt;
     * otherwise take the least recently used slot and leave the others' caches. The
     * prompt's log-probabilities (echo) need the logits of every position: no reuse. */
    srv_slot *sl = best;
    const bool reuse = j->req.cache_prompt && !wants_prompt_lp(j);
    if (!reuse)
        src = NULL, src_keep = 0;
    if (!reuse || best_keep == 0 ||
        (j->req.id_slot < 0 &&
         (float)best_keep < s->p.slot_prompt_similarity * (float)j->n_prompt)) {
        sl = lru;
        best_keep = 0;
        best_ck = NULL;
    }
    /* A branch: the prompt leaves the free slot's conversation before its end (another
     * conversation under the same system prompt, an edited earlier message). Read in place,
     * it throws away the rest of that conversation, which may come back for its next turn;
     * read in the least recently used free slot from a copy of the shared prefix (pages
     * shared, not copied), it throws away that slot's cache, less what it shares with the
     * conversation kept. The prompt goes where fewer tokens are lost (a prefix under 16
     * tokens is not worth a copy, as below). */
    if (sl == best && best_keep >= 16 && best_keep < best->n_tokens && lru != best &&
        j->req.id_slot < 0 &&
        lru->n_tokens - common_prefix(lru->tokens, lru->n_tokens, best->tokens, best->n_tokens) <
            best->n_tokens - best_keep) {
        sl = lru;
        best_keep = 0;
        best_ck = NULL;
    }
    int rc;
    const bool from_src = src && src != sl && src_keep > best_keep && src_keep >= 16;
    const size_t slot_keep = from_src ? src_keep : sl == best ? best_keep : 0;
    /* a conversation in host memory that gives clearly more comes back, into the least
     * recently used free slot; whatever a slot gives up goes there first (slot_save) */
    size_t host_keep = 0;
    int host_ck = -1, host = reuse ? saved_best(s, j->prompt, j->n_prompt, &host_keep, &host_ck) : -1;
    if (host >= 0 && host_keep >= slot_keep + SRV_SAVE_MIN) {
        sl = lru;
        /* saving the slot may evict copies (the chosen one last) and moves them around:
         * the chosen one is found again by its stamp, which no other copy has */
        const uint64_t key = s->saved[host].used = ++s->ckpt_clock;
        slot_save(s, sl, 0);
        host = -1;
        for (int i = 0; i < s->n_saved; i++)
            if (s->saved[i].used == key) host = i;
        rc = host >= 0 ? slot_restore(s, sl, host, host_keep, host_ck) : slot_reuse(s, sl, sl, 0, NULL);
    } else if (from_src) { /* share another slot's prefix */
        slot_save(s, sl, 0);
        src_keep = reuse_point(s, src, j->prompt, j->n_prompt, &src_ck); /* saving may evict */
        rc = slot_reuse(s, sl, src, src_keep, src_ck);
    } else if (sl == best && best_keep > 0) {
        slot_save(s, sl, best_keep);
        best_keep = reuse_point(s, sl, j->prompt, j->n_prompt, &best_ck);
        rc = slot_reuse(s, sl, sl, best_keep, best_keep ? best_ck : NULL);
    } else {
        slot_save(s, sl, 0);
        rc = slot_reuse(s, sl, sl, 0, NULL);
    }
    if (rc) {
        slot_forget(s, sl);
        halo_log(HALO_LOG_WARN, "server: slot %d: prompt cache not reused", sl->id);
    }
    sl->n_cached = sl->n_tokens;
    if (!slot_reserve(sl, j->n_prompt + 16)) {
        srv_error(e, 500, NULL, "out of memory");
        return -1;
    }
    if (slot_setup(s, sl, j, 0, 0, e)) goto fail;
    const uint32_t seed0 = halo_sampler_seed(sl->smp);
    for (int32_t c = 1; c < j->req.n; c++) {
        srv_slot *f = NULL;
        for (uint32_t k = 0; k < s->n_slots; k++)
            if (!s->slots[k].job && (!f || s->slots[k].used < f->used)) f = &s->slots[k];
        if (!f) {
            srv_error(e, 503, "n", "fewer than %d free slots", j->req.n);
            goto fail;
        }
        slot_forget(s, f); /* its sequence becomes choice 0's prompt */
        f->n_cached = 0;
        if (!slot_reserve(f, j->n_prompt + 16)) {
            srv_error(e, 500, NULL, "out of memory");
            goto fail;
        }
        if (slot_setup(s, f, j, c, seed0, e)) goto fail;
    }
    j->n_open = j->req.n;
    if (!j->req.stream && j->req.kind != SRV_NATIVE && !j->req.responses &&
        !(j->choices = calloc((size_t)j->req.n, sizeof *j->choices))) {
        srv_error(e, 500, NULL, "out of memory");
        goto fail;
    }
    pthread_mutex_lock(&j->mu);
    j->state = SRV_RUNNING;
    pthread_mutex_unlock(&j->mu);
    /* Responses (always n = 1): response.created and response.in_progress, once per job */
    if (j->req.responses) srv_responses_start(s, j);
    return 0;
fail:
    job_release_slots(s, j);
    return -1;
}

/* ---- output ------------------------------------------------------------------------------ */

static void parser_event(void *user, const halo_chat_event *ev) {
    srv_slot *sl = user;
    srv_job *j = sl->job;
    halo_server *s = sl->server;
    if (ev->kind == HALO_CHAT_EVENT_WARNING) {
        halo_log(HALO_LOG_WARN, "server: %s: %.*s", j->id, (int)ev->len, ev->text);
        return;
    }
    if (j->req.responses) { /* output items, streamed or not */
        srv_responses_event(s, j, ev);
        return;
    }
    if (!j->req.stream) return;
    cJSON *d = cJSON_CreateObject();
    if (ev->kind == HALO_CHAT_EVENT_TOOL_CALL) {
        cJSON *calls = cJSON_AddArrayToObject(d, "tool_calls"), *c = cJSON_CreateObject();
        cJSON_AddItemToArray(calls, c);
        cJSON_AddNumberToObject(c, "index", ev->index);
        cJSON_AddStringToObject(c, "id", ev->id);
        cJSON_AddStringToObject(c, "type", "function");
        cJSON *fn = cJSON_AddObjectToObject(c, "function");
        cJSON_AddStringToObject(fn, "name", ev->name);
        cJSON_AddStringToObject(fn, "arguments", ev->arguments);
    } else {
        char *t = utf8_dup(ev->text, ev->len);
        cJSON_AddStringToObject(d, ev->kind == HALO_CHAT_EVENT_REASONING ? "reasoning_content"
                                                                          : "content",
                                t ? t : "");
        free(t);
    }
    send_choice(s, sl, d, NULL, NULL);
}

/* Text past the stop-string check: to the parser (chat) or the client (completion). */
static void emit_text(halo_server *s, srv_slot *sl, const char *text, size_t len) {
    if (!len) return;
    srv_job *j = sl->job;
    if (sl->parser) {
        halo_error err = {0};
        halo_chat_parser_feed(sl->parser, text, len, &err);
        return;
    }
    srv_buf_append(&sl->text, text, len);
    if (j->req.stream) {
        char *t = utf8_dup(text, len);
        send_choice(s, sl, NULL, t, NULL);
        free(t);
    }
}

/* New generated text: hold back what may begin a stop string; true when one matched. */
static bool push_text(halo_server *s, srv_slot *sl, const char *text, size_t len) {
    srv_job *j = sl->job;
    if (j->req.n_stop == 0) {
        emit_text(s, sl, text, len);
        return false;
    }
    srv_buf_append(&sl->hold, text, len);
    const char *h = sl->hold.data ? sl->hold.data : "";
    size_t hl = sl->hold.len, cut = hl;
    for (int i = 0; i < j->req.n_stop; i++) {
        const char *m = memmem(h, hl, j->req.stop[i], strlen(j->req.stop[i]));
        if (m && (size_t)(m - h) < cut) cut = (size_t)(m - h);
    }
    if (cut < hl) {
        for (int i = 0; i < j->req.n_stop; i++) {
            const char *m = memmem(h, hl, j->req.stop[i], strlen(j->req.stop[i]));
            if (m && (size_t)(m - h) == cut) {
                sl->stop_index = i;
                break;
            }
        }
        emit_text(s, sl, h, cut);
        sl->hold.len = 0;
        return true;
    }
    size_t keep = 0;
    for (int i = 0; i < j->req.n_stop; i++) {
        size_t sn = strlen(j->req.stop[i]);
        for (size_t k = sn - 1 < hl ? sn - 1 : hl; k > keep; k--)
            if (memcmp(h + hl - k, j->req.stop[i], k) == 0) {
                keep = k;
                break;
            }
    }
    emit_text(s, sl, h, hl - keep);
    if (keep) memmove(sl->hold.data, h + hl - keep, keep);
    sl->hold.len = keep;
    return false;
}

/* A finished choice of a non-streamed reply: its message (chat) or text, its
 * log-probabilities, why it ended. */
static cJSON *choice_json(halo_server *s, srv_slot *sl, const char *reason) {
    srv_job *j = sl->job;
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", sl->choice);
    if (sl->parser) {
        cJSON *m = cJSON_AddObjectToObject(ch, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        size_t cl, rl;
        const char *content = halo_chat_parser_content(sl->parser, &cl);
        const char *reasoning = halo_chat_parser_reasoning(sl->parser, &rl);
        int n_calls = halo_chat_parser_n_tool_calls(sl->parser);
        char *ct = utf8_dup(content ? content : "", content ? cl : 0);
        char *rt = utf8_dup(reasoning ? reasoning : "", reasoning ? rl : 0);
        if (cl || !n_calls)
            cJSON_AddStringToObject(m, "content", ct ? ct : "");
        else
            cJSON_AddNullToObject(m, "content");
        if (rl) cJSON_AddStringToObject(m, "reasoning_content", rt ? rt : "");
        free(ct);
        free(rt);
        if (n_calls) {
            char *calls = halo_chat_parser_tool_calls_json(sl->parser);
            cJSON *arr = calls ? cJSON_Parse(calls) : NULL;
            free(calls);
            if (arr) cJSON_AddItemToObject(m, "tool_calls", arr);
        }
    } else {
        char *tt = utf8_dup(sl->text.data ? sl->text.data : "", sl->text.len);
        cJSON_AddStringToObject(ch, "text", tt ? tt : "");
        free(tt);
        if (j->req.logprobs < 0) cJSON_AddNullToObject(ch, "logprobs");
    }
    if (j->req.logprobs >= 0) {
        size_t off = 0;
        cJSON_AddItemToObject(ch, "logprobs", lp_json(s, j, sl->lp, 0, sl->n_lp, &off));
    }
    cJSON_AddStringToObject(ch, "finish_reason", reason);
    return ch;
}

/* The job's last choice has finished: the reply (non-streamed: every choice, by index),
 * or the stream's usage chunk and end; usage counts the prompt once and every choice's
 * tokens. */
static void job_complete(halo_server *s, srv_job *j) {
    double now = halo_time_seconds();
    cJSON *usage = srv_usage_json(j->n_prompt, j->n_gen_total, j->n_cached);
    if (j->req.kind == SRV_NATIVE) {
        /* finish replied */
    } else if (j->req.responses) { /* n = 1: its choice's reply, the usage of the job */
        srv_responses_finish(s, j, j->reason && !strcmp(j->reason, "length"), j->n_prompt,
                             j->n_gen_total, j->n_cached, j->n_reason_total);
    } else if (j->req.stream) {
        if (j->req.include_usage) {
            cJSON *c = chunk_new(s, j);
            cJSON_AddArrayToObject(c, "choices");
            cJSON_AddItemToObject(c, "usage", usage);
            usage = NULL;
            job_send_sse(j, c);
        }
        static const char done[] = "data: [DONE]\n\n";
        job_send(j, done, sizeof done - 1);
    } else {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "id", j->id);
        cJSON_AddStringToObject(c, "object",
                                j->req.kind == SRV_CHAT ? "chat.completion" : "text_completion");
        cJSON_AddNumberToObject(c, "created", (double)j->created);
        cJSON_AddStringToObject(c, "model", s->model_id);
        cJSON *choices = cJSON_AddArrayToObject(c, "choices");
        for (int32_t i = 0; i < j->req.n; i++)
            if (j->choices[i]) {
                cJSON_AddItemToArray(choices, j->choices[i]);
                j->choices[i] = NULL;
            }
        cJSON_AddItemToObject(c, "usage", usage);
        usage = NULL;
        cJSON *tm = cJSON_AddObjectToObject(c, "timings");
        cJSON_AddNumberToObject(tm, "prompt_ms", (j->t_first - j->t_start) * 1e3);
        cJSON_AddNumberToObject(tm, "predicted_ms", (now - j->t_first) * 1e3);
        cJSON_AddNumberToObject(tm, "predicted_n", (double)j->n_gen_total);
        cJSON_AddNumberToObject(tm, "predicted_per_second",
                                now > j->t_first ? (double)j->n_gen_total / (now - j->t_first) : 0.0);
        char *text = cJSON_PrintUnformatted(c);
        cJSON_Delete(c);
        if (text) job_send(j, text, strlen(text));
        free(text);
    }
    cJSON_Delete(usage);
    pthread_mutex_lock(&s->mu);
    s->m.prompt_tokens += j->n_prompt;
    s->m.cached_tokens += j->n_cached;
    s->m.gen_tokens += (uint64_t)j->n_gen_total;
    s->m.prompt_seconds += j->t_first - j->t_start;
    s->m.gen_seconds += now - j->t_first;
    pthread_mutex_unlock(&s->mu);
    job_done(j, 200);
    srv_job_unref(j);
}

/* A choice ends: its last text, its final chunk or its object in the reply; the job
 * completes with its last choice. */
static void finish(halo_server *s, srv_slot *sl, const char *reason) {
    srv_job *j = sl->job;
    if (!sl->stopped) {
        const char *t;
        size_t n;
        halo_detok_flush(sl->detok, &t, &n);
        if (!push_text(s, sl, t, n)) emit_text(s, sl, sl->hold.data, sl->hold.len);
        else reason = "stop";
    }
    halo_error err = {0};
    if (sl->parser) {
        halo_chat_parser_finish(sl->parser, &err);
        if (!strcmp(reason, "stop") && halo_chat_parser_n_tool_calls(sl->parser) > 0)
            reason = "tool_calls";
    }
    double now = halo_time_seconds();
    if (sl->choice == 0) { /* the prompt was read for this one */
        j->n_cached = sl->n_cached;
        j->t_start = sl->t_start;
        j->t_first = sl->t_first;
        j->reason = reason;
    }
    j->n_gen_total += (size_t)sl->n_gen;
    j->n_reason_total += (size_t)sl->n_reason;
    if (j->req.kind == SRV_NATIVE) { /* llama-server's reply (streamed: its last event) */
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", 0);
        if (j->req.stream) {
            cJSON_AddStringToObject(c, "content", "");
        } else {
            char *tt = utf8_dup(sl->text.data ? sl->text.data : "", sl->text.len);
            cJSON_AddStringToObject(c, "content", tt ? tt : "");
            free(tt);
        }
        cJSON_AddNumberToObject(c, "id_slot", sl->id);
        cJSON_AddBoolToObject(c, "stop", 1);
        cJSON_AddStringToObject(c, "model", s->model_id);
        cJSON_AddNumberToObject(c, "tokens_predicted", sl->n_gen);
        cJSON_AddNumberToObject(c, "tokens_evaluated", (double)j->n_prompt);
        cJSON_AddNumberToObject(c, "tokens_cached", (double)sl->n_cached);
        cJSON_AddBoolToObject(c, "truncated", 0);
        const bool word = sl->stop_index >= 0;
        cJSON_AddStringToObject(c, "stop_type", !strcmp(reason, "length") ? "limit" : word ? "word" : "eos");
        cJSON_AddStringToObject(c, "stopping_word", word ? j->req.stop[sl->stop_index] : "");
        if (j->req.logprobs > 0)
            cJSON_AddItemToObject(c, "completion_probabilities",
                                  lp_entries(s, j, sl->lp, j->req.stream ? sl->lp_sent : 0, sl->n_lp, true));
        cJSON *tm = cJSON_AddObjectToObject(c, "timings");
        cJSON_AddNumberToObject(tm, "prompt_n", (double)(j->n_prompt - sl->n_cached));
        cJSON_AddNumberToObject(tm, "prompt_ms", (sl->t_first - sl->t_start) * 1e3);
        cJSON_AddNumberToObject(tm, "predicted_n", sl->n_gen);
        cJSON_AddNumberToObject(tm, "predicted_ms", (now - sl->t_first) * 1e3);
        cJSON_AddNumberToObject(tm, "predicted_per_second",
                                now > sl->t_first ? sl->n_gen / (now - sl->t_first) : 0.0);
        if (j->req.stream) {
            job_send_sse(j, c);
        } else {
            char *text = cJSON_PrintUnformatted(c);
            cJSON_Delete(c);
            if (text) job_send(j, text, strlen(text));
            free(text);
        }
    } else if (j->req.responses) {
        /* its one choice: job_complete replies (the Response object, or the last events) */
    } else if (j->req.stream) {
        send_choice(s, sl, NULL, NULL, reason);
    } else if (j->choices) {
        j->choices[sl->choice] = choice_json(s, sl, reason);
    }
    char which[24] = "";
    if (j->req.n > 1) snprintf(which, sizeof which, " choice %d", sl->choice);
    if (!s->p.quiet)
        halo_log(HALO_LOG_INFO,
                 "server: slot %d: %s%s: prompt %zu tokens (%zu cached) in %.1f ms, %d "
                 "generated at %.1f tokens/s, %s",
                 sl->id, j->id, which, j->n_prompt, sl->n_cached, (sl->t_first - sl->t_start) * 1e3, sl->n_gen,
                 sl->n_gen > 1 ? (sl->n_gen - 1) / (now - sl->t_first) : 0.0, reason);
    slot_end_job(sl);
    s->n_busy--;
    if (--j->n_open == 0) job_complete(s, j);
}

/* End a job with an error (or a cancellation: no output wanted), with all its slots. */
static void abort_job(halo_server *s, srv_job *j, const halo_api_error *e) {
    pthread_mutex_lock(&s->mu);
    if (e)
        s->m.errors++;
    else
        s->m.cancelled++;
    pthread_mutex_unlock(&s->mu);
    if (e)
        job_fail(j, e);
    else
        job_done(j, 499);
    job_release_slots(s, j);
    srv_job_unref(j);
}

/* The forced end of thinking when the reasoning budget runs out. */
static void force_think_end(halo_server *s, srv_slot *sl) {
    static const char text[] = "\n</think>\n\n";
    int32_t *ids = NULL;
    size_t n = 0;
    halo_error err = {0};
    sl->budget_done = true;
    if (halo_tok_encode(s->tok, text, sizeof text - 1, HALO_TOK_PARSE_SPECIAL, &ids, &n, &err))
        return;
    sl->forced = ids;
    sl->n_forced = n;
    sl->i_forced = 0;
}

/* ignore_eos: every end-of-generation token banned through the request's logit bias
 * (so it is never sampled, as llama-server does), after the request's own entries. */
static bool ignore_eog(halo_server *s, srv_request *r) {
    int32_t n_eog = 0;
    for (int32_t id = 0; id < s->n_vocab; id++) n_eog += halo_tok_is_eog(s->tok, id);
    halo_logit_bias *b = realloc(r->bias, sizeof *b * ((size_t)r->n_bias + (size_t)n_eog + 1));
    if (!b) return false;
    r->bias = b;
    for (int32_t id = 0; id < s->n_vocab; id++)
        if (halo_tok_is_eog(s->tok, id)) b[r->n_bias++] = (halo_logit_bias){id, -INFINITY};
    r->sp.logit_bias = r->bias;
    r->sp.n_logit_bias = r->n_bias;
    r->ignore_eos = false; /* done once, should the job be started again */
    return true;
}

/* A token came out of the model for slot sl (logits: the row it came from, or NULL). */
static void on_token(halo_server *s, srv_slot *sl, int32_t tok, const float *logits) {
    if (sl->n_gen == 0 && sl->t_first == 0) sl->t_first = halo_time_seconds();
    sl->n_gen++;
    halo_sampler_accept(sl->smp, tok);
    /* an end-of-generation token has no text and no entry, except after an echoed prompt:
     * lm-eval drops the entry after the prompt's (max_tokens 1), whatever it is */
    const bool eog = halo_tok_is_eog(s->tok, tok);
    if (eog && !wants_prompt_lp(sl->job)) {
        finish(s, sl, "stop");
        return;
    }
    if (sl->job->req.logprobs >= 0 && logits) {
        if (sl->n_lp == sl->cap_lp) {
            size_t cap = sl->cap_lp ? 2 * sl->cap_lp : 64;
            srv_lp *p = realloc(sl->lp, sizeof *p * cap);
            if (p) sl->lp = p, sl->cap_lp = cap;
        }
        if (sl->n_lp < sl->cap_lp)
            lp_compute(logits, s->n_vocab, tok, sl->job->req.logprobs, &sl->lp[sl->n_lp++]);
    }
    if (eog) {
        finish(s, sl, "stop");
        return;
    }
    const char *t;
    size_t n;
    halo_error err = {0};
    if (halo_detok_push(sl->detok, tok, &t, &n, &err) == 0 && push_text(s, sl, t, n)) {
        sl->stopped = true;
        finish(s, sl, "stop");
        return;
    }
    if (sl->grammar_pending && !halo_chat_parser_in_reasoning(sl->parser)) {
        halo_sampler_set_grammar(sl->smp, sl->grammar);
        sl->grammar_pending = false;
    }
    if (sl->parser && halo_chat_parser_in_reasoning(sl->parser)) {
        sl->n_reason++;
        if (s->p.reasoning_budget > 0 && !sl->budget_done && sl->n_reason >= s->p.reasoning_budget)
            force_think_end(s, sl);
    }
    if (sl->n_gen >= sl->max_gen || sl->n_tokens + 1 >= s->n_ctx_slot ||
        !slot_reserve(sl, sl->n_tokens + 1)) {
        finish(s, sl, "length");
        return;
    }
    sl->pending = tok;
    sl->has_pending = true;
}

/* ---- the loop -------------------------------------------------------------------------- */

typedef struct batch_buf {
    int32_t *tok, *pos, *seq;
    int8_t *logits;
    srv_slot **owner;
    int32_t n;
} batch_buf;

/* The first turn start of job j after position `at`; SIZE_MAX if none. */
static size_t next_turn(const srv_job *j, size_t at) {
    size_t lo = 0, hi = j->n_turns; /* the first turn > at: binary search */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((size_t)j->turns[mid] <= at) lo = mid + 1;
        else hi = mid;
    }
    return lo < j->n_turns ? (size_t)j->turns[lo] : SIZE_MAX;
}

/* The next checkpoint position after `at` for job j's prompt of n tokens; n if none
 * before: the start of a turn, every checkpoint_every tokens (long messages), 4 and 1
 * tokens before the end (a template that re-renders the generation prompt or the last
 * turn differently next time diverges there). */
static size_t next_stop(const halo_server *s, const srv_job *j, size_t at, size_t n) {
    size_t stop = n;
    if (s->state_size == 0 || s->p.cache_ram == 0) return stop;
    size_t every = (size_t)(s->p.checkpoint_every > 0 ? s->p.checkpoint_every : 0);
    if (every) {
        size_t k = (at / every + 1) * every;
        if (k < stop) stop = k;
    }
    size_t turn = next_turn(j, at);
    if (turn < stop) stop = turn;
    const size_t before[2] = {4, 1};
    for (int i = 0; i < 2; i++)
        if (n > before[i] && n - before[i] > at && n - before[i] < stop) stop = n - before[i];
    return stop;
}

static bool is_ckpt_pos(const halo_server *s, const srv_job *j, size_t pos, size_t n) {
    if (s->state_size == 0 || s->p.cache_ram == 0) return false;
    if (pos == n || pos + 4 == n || pos + 1 == n) return true;
    if (pos > 0 && next_turn(j, pos - 1) == pos) return true;
    return s->p.checkpoint_every > 0 && pos % (size_t)s->p.checkpoint_every == 0;
}

static void admit(halo_server *s) {
    for (;;) {
        pthread_mutex_lock(&s->mu);
        srv_job *j = NULL, *prev = NULL;
        /* the first job in the queue that can start: n free slots (its choices), or the
         * free slot it asked for (id_slot); a job waiting for a busy slot lets the others
         * pass, but one waiting for n > 1 slots holds the jobs behind it, else a stream of
         * one-slot requests could keep it waiting for ever */
        const int32_t n_free = (int32_t)s->n_slots - s->n_busy;
        for (j = s->queue_head; j; prev = j, j = j->next) {
            if (atomic_load(&j->cancelled)) break; /* out of the queue at once */
            if (j->req.id_slot >= 0 ? !s->slots[j->req.id_slot].job : n_free >= j->req.n) break;
            if (j->req.n > 1) {
                j = NULL;
                break;
            }
        }
        if (j) {
            if (prev) prev->next = j->next;
            else s->queue_head = j->next;
            if (s->queue_tail == j) s->queue_tail = prev;
            s->n_queued--;
        }
        pthread_mutex_unlock(&s->mu);
        if (!j) return;
        halo_api_error e;
        if (atomic_load(&j->cancelled)) {
            pthread_mutex_lock(&s->mu);
            s->m.cancelled++;
            pthread_mutex_unlock(&s->mu);
            job_done(j, 499);
            srv_job_unref(j);
        } else if (slot_start(s, j, &e)) {
            pthread_mutex_lock(&s->mu);
            s->m.errors++;
            pthread_mutex_unlock(&s->mu);
            job_fail(j, &e);
            srv_job_unref(j);
        }
    }
}

static void build_batch(halo_server *s, batch_buf *b, uint32_t *rr) {
    b->n = 0;
    uint32_t budget = halo_context_n_batch(s->ctx);
    for (uint32_t k = 0; k < s->n_slots; k++) {
        srv_slot *sl = &s->slots[k];
        sl->batch_index = -1;
        if (!sl->job || !sl->has_pending || b->n >= (int32_t)budget) continue;
        b->tok[b->n] = sl->pending;
        b->pos[b->n] = (int32_t)sl->n_tokens;
        b->seq[b->n] = sl->id;
        b->logits[b->n] = 1;
        b->owner[b->n] = sl;
        sl->batch_index = b->n++;
    }
    /* prompt chunks, round robin so that one long prompt does not always go first;
     * while others generate, one ubatch of prompt per step, so that their next token
     * waits for one forward pass at most, not for a whole n_batch of prompt */
    if (b->n > 0) {
        uint32_t cap = (uint32_t)b->n + halo_context_n_ubatch(s->ctx);
        if (cap < budget) budget = cap;
    }
    for (uint32_t i = 0; i < s->n_slots; i++) {
        srv_slot *sl = &s->slots[(*rr + i) % s->n_slots];
        if (!sl->job || sl->await_prompt || sl->has_pending || sl->batch_index >= 0) continue;
        size_t n = sl->job->n_prompt, at = sl->n_tokens;
        if (at >= n || b->n >= (int32_t)budget) continue;
        size_t end = next_stop(s, sl->job, at, n);
        if (end - at > budget - (uint32_t)b->n) end = at + (budget - (uint32_t)b->n);
        const bool all_logits = wants_prompt_lp(sl->job);
        if (all_logits) { /* a row of logits per token: chunks that keep their buffer bounded */
            size_t rows = SRV_ECHO_LOGITS_BYTES / (sizeof(float) * (size_t)s->n_vocab);
            if (rows < 1) rows = 1;
            if (end - at > rows) end = at + rows;
        }
        for (size_t p = at; p < end; p++) {
            b->tok[b->n] = sl->job->prompt[p];
            b->pos[b->n] = (int32_t)p;
            b->seq[b->n] = sl->id;
            b->logits[b->n] = all_logits || p == n - 1;
            b->owner[b->n] = sl;
            if (p == n - 1) sl->batch_index = b->n;
            b->n++;
        }
    }
    *rr = (*rr + 1) % s->n_slots;
}

static void sample_task(void *arg, int ith, int nth) {
    halo_server *s = arg;
    for (uint32_t i = (uint32_t)ith; i < s->n_to_sample; i += (uint32_t)nth) {
        srv_slot *sl = s->to_sample[i];
        sl->step_token = halo_sampler_sample(sl->smp, sl->step_logits);
    }
}

/* The next token of every slot that has logits in this step: each slot's sampler is
 * its own, so they run in parallel (64 slots x a 248 k vocabulary is ~13 ms on one
 * thread). Forced tokens are not sampled. */
static void sample_slots(halo_server *s) {
    uint32_t n = 0;
    for (uint32_t k = 0; k < s->n_slots; k++) {
        srv_slot *sl = &s->slots[k];
        sl->step_logits = NULL;
        if (!sl->job || sl->batch_index < 0 || sl->i_forced < sl->n_forced) continue;
        sl->step_logits = halo_get_logits(s->ctx, sl->batch_index);
        if (sl->step_logits) s->to_sample[n++] = sl;
    }
    s->n_to_sample = n;
    if (n > 1 && s->sample_pool) halo_threadpool_run(s->sample_pool, sample_task, s);
    else if (n > 0) sample_task(s, 0, 1);
}

/* echo: the prompt's text first (the text prompt as given; token ids as they decode) */
static void emit_echo(halo_server *s, srv_slot *sl) {
    const srv_job *j = sl->job;
    if (j->req.prompt) {
        emit_text(s, sl, j->req.prompt, strlen(j->req.prompt));
        return;
    }
    char *text = NULL;
    size_t len = 0;
    halo_error err = {0};
    if (halo_tok_decode(s->tok, j->prompt, j->n_prompt, 0, &text, &len, &err) == 0)
        emit_text(s, sl, text, len);
    free(text);
}

/* Choice 0 of a job has read the prompt, and this step's batch has the logits of its last
 * token. The other choices take its sequence (halo_seq_copy: the KV pages shared, copied
 * on the first write into a shared page; the recurrent state copied) and will sample from
 * the same logits with their own samplers. Then echo sends the prompt, and max_tokens 0
 * ends every choice here. */
static void prompt_done(halo_server *s, srv_slot *lead) {
    srv_job *j = lead->job;
    for (uint32_t k = 0; k < s->n_slots; k++) {
        srv_slot *f = &s->slots[k];
        if (f->job != j || !f->await_prompt) continue;
        halo_error err = {0};
        if (!slot_reserve(f, lead->n_tokens + 1) ||
            halo_seq_copy(s->ctx, lead->id, f->id, &err)) {
            halo_api_error e;
            srv_error(&e, 500, NULL, "sharing the prompt between choices failed: %s",
                      err.msg[0] ? err.msg : "out of memory");
            abort_job(s, j, &e);
            return;
        }
        memcpy(f->tokens, lead->tokens, sizeof(int32_t) * lead->n_tokens);
        f->n_tokens = lead->n_tokens;
        if (wants_prompt_lp(j)) memcpy(f->lp, lead->lp, sizeof *f->lp * j->n_prompt);
        f->await_prompt = false;
        f->batch_index = lead->batch_index;
        f->t_start = lead->t_start;
    }
    const double now = halo_time_seconds();
    int32_t left = j->req.n; /* finish may end the job (and free it) with its last choice */
    for (uint32_t k = 0; k < s->n_slots && left > 0; k++) {
        srv_slot *c = &s->slots[k];
        if (c->job != j) continue;
        left--;
        c->t_first = now;
        if (j->req.echo) emit_echo(s, c);
        if (c->max_gen == 0) finish(s, c, "length");
    }
}

/* After a decode: record the tokens each slot now holds, checkpoints, sampling. */
static void after_decode(halo_server *s, batch_buf *b) {
    for (int32_t i = 0; i < b->n; i++) {
        srv_slot *sl = b->owner[i];
        sl->tokens[sl->n_tokens++] = b->tok[i];
        if (sl->has_pending) {
            sl->has_pending = false;
            continue;
        }
        const srv_job *j = sl->job;
        if (wants_prompt_lp(j) && sl->n_tokens < j->n_prompt) {
            /* echo: this position's logits score the prompt's next token */
            const float *lg = halo_get_logits(s->ctx, i);
            if (lg)
                lp_compute(lg, s->n_vocab, j->prompt[sl->n_tokens], j->req.logprobs,
                           &sl->lp[sl->n_tokens]);
        }
        if (i + 1 == b->n || b->owner[i + 1] != sl) {
            /* the end of this slot's prompt chunk */
            if (is_ckpt_pos(s, j, sl->n_tokens, j->n_prompt)) ckpt_save(s, sl);
        }
    }
    /* a slot with logits that has generated nothing has just read its prompt */
    for (uint32_t k = 0; k < s->n_slots; k++) {
        srv_slot *sl = &s->slots[k];
        if (sl->job && sl->batch_index >= 0 && sl->n_gen == 0 && sl->choice == 0)
            prompt_done(s, sl);
    }
    sample_slots(s);
    for (uint32_t k = 0; k < s->n_slots; k++) {
        srv_slot *sl = &s->slots[k];
        if (!sl->job || sl->batch_index < 0) continue;
        int32_t tok;
        const float *logits = NULL;
        if (sl->i_forced < sl->n_forced) {
            tok = sl->forced[sl->i_forced++];
        } else {
            logits = sl->step_logits;
            if (!logits) {
                halo_api_error e;
                srv_error(&e, 500, NULL, "the engine gave no logits");
                abort_job(s, sl->job, &e);
                continue;
            }
            tok = sl->step_token;
        }
        on_token(s, sl, tok, logits);
    }
}

bool srv_forget_idle_cache(halo_server *s) {
    srv_slot *idle = NULL;
    for (uint32_t k = 0; k < s->n_slots; k++) {
        srv_slot *sl = &s->slots[k];
        if (!sl->job && sl->n_tokens && (!idle || sl->used < idle->used)) idle = sl;
    }
    if (idle) {
        slot_save(s, idle, 0); /* its conversation may come back */
        slot_forget(s, idle);
    }
    return idle != NULL;
}

/* The KV cache is full: drop idle caches first, then fail the biggest job. */
static void relieve_kv(halo_server *s) {
    srv_slot *big = NULL;
    for (uint32_t k = 0; k < s->n_slots; k++) {
        srv_slot *sl = &s->slots[k];
        if (sl->job && (!big || sl->n_tokens > big->n_tokens)) big = sl;
    }
    if (srv_forget_idle_cache(s)) return;
    if (big) {
        halo_api_error e;
        srv_error(&e, 503, NULL,
                  "the KV cache is full with %u parallel requests; retry later or raise -c",
                  s->n_busy);
        abort_job(s, big->job, &e);
        slot_forget(s, big);
    }
}

/* The slots as GET /slots shows them; called with mu held. */
static void publish_slots(halo_server *s) {
    for (uint32_t k = 0; k < s->n_slots; k++) {
        const srv_slot *sl = &s->slots[k];
        srv_slot_info *in = &s->slot_info[k];
        in->busy = sl->job != NULL;
        snprintf(in->task, sizeof in->task, "%s", sl->job ? sl->job->id : "");
        in->n_tokens = sl->n_tokens;
        in->n_gen = sl->job ? sl->n_gen : 0;
        in->max_gen = sl->job ? sl->max_gen : 0;
        in->n_ckpt = sl->n_ckpt;
        in->ckpt_bytes = (uint64_t)sl->n_ckpt * s->state_size;
    }
    s->n_saved_pub = s->n_saved;
    s->saved_bytes_pub = s->saved_bytes;
}

/* The erasures POST /slots/{id}?action=erase asked for, on idle slots. */
static void erase_slots(halo_server *s) {
    for (uint32_t k = 0; k < s->n_slots; k++) {
        pthread_mutex_lock(&s->mu);
        bool want = s->erase[k];
        s->erase[k] = false;
        pthread_mutex_unlock(&s->mu);
        if (want && !s->slots[k].job) slot_forget(s, &s->slots[k]);
    }
}

int64_t srv_slot_erase(halo_server *s, uint32_t id) {
    pthread_mutex_lock(&s->mu);
    int64_t n = -1;
    if (!s->slot_info[id].busy) {
        n = (int64_t)s->slot_info[id].n_tokens;
        s->slot_info[id].n_tokens = 0;
        s->erase[id] = s->erase_pending = true;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

char *srv_slots_json(halo_server *s) {
    cJSON *a = cJSON_CreateArray();
    if (!a) return NULL;
    pthread_mutex_lock(&s->mu);
    for (uint32_t k = 0; k < s->n_slots; k++) {
        const srv_slot_info *in = &s->slot_info[k];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddItemToArray(a, o);
        cJSON_AddNumberToObject(o, "id", k);
        cJSON_AddNumberToObject(o, "n_ctx", s->n_ctx_slot);
        cJSON_AddBoolToObject(o, "is_processing", in->busy);
        if (in->busy) cJSON_AddStringToObject(o, "id_task", in->task);
        cJSON_AddNumberToObject(o, "n_tokens", (double)in->n_tokens);
        cJSON_AddNumberToObject(o, "n_checkpoints", in->n_ckpt);
        cJSON_AddNumberToObject(o, "checkpoint_bytes", (double)in->ckpt_bytes);
        cJSON *nt = cJSON_AddObjectToObject(o, "next_token");
        if (nt) {
            cJSON_AddBoolToObject(nt, "has_next_token", in->busy);
            cJSON_AddNumberToObject(nt, "n_remain", in->busy ? in->max_gen - in->n_gen : -1);
            cJSON_AddNumberToObject(nt, "n_decoded", in->n_gen);
        }
    }
    pthread_mutex_unlock(&s->mu);
    char *t = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return t;
}

static void *sched_main(void *arg) {
    halo_server *s = arg;
    uint32_t nb = halo_context_n_batch(s->ctx);
    batch_buf b = {0};
    b.tok = malloc(sizeof(int32_t) * nb);
    b.pos = malloc(sizeof(int32_t) * nb);
    b.seq = malloc(sizeof(int32_t) * nb);
    b.logits = malloc(nb);
    b.owner = malloc(sizeof(srv_slot *) * nb);
    uint32_t rr = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        publish_slots(s);
        while (!s->stopping && !s->queue_head && s->n_busy == 0 && !s->erase_pending &&
               !s->embd_head)
            pthread_cond_wait(&s->cv, &s->mu);
        bool stop = s->stopping, erase = s->erase_pending;
        s->erase_pending = false;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        if (erase) erase_slots(s);
        srv_embd_run(s);
        admit(s);
        for (uint32_t k = 0; k < s->n_slots; k++)
            if (s->slots[k].job && atomic_load(&s->slots[k].job->cancelled))
                abort_job(s, s->slots[k].job, NULL);
        if (s->n_busy == 0) continue;
        double t0 = halo_time_seconds();
        build_batch(s, &b, &rr);
        if (b.n == 0) continue;
        halo_batch batch = {b.n, b.tok, b.pos, b.seq, b.logits};
        halo_error err = {0};
        double t1 = halo_time_seconds();
        int rc = halo_decode(s->ctx, &batch, &err);
        double t2 = halo_time_seconds();
        if (rc == HALO_ERR_RANGE) {
            relieve_kv(s);
            continue;
        }
        if (rc) {
            halo_log(HALO_LOG_ERROR, "server: decode failed: %s", err.msg);
            halo_api_error e;
            srv_error(&e, 500, NULL, "the engine failed: %s", err.msg);
            for (uint32_t k = 0; k < s->n_slots; k++)
                if (s->slots[k].job) slot_forget(s, &s->slots[k]);
            for (uint32_t k = 0; k < s->n_slots; k++)
                if (s->slots[k].job) abort_job(s, s->slots[k].job, &e);
            continue;
        }
        after_decode(s, &b);
        double t3 = halo_time_seconds();
        pthread_mutex_lock(&s->mu);
        publish_slots(s);
        s->m.steps++;
        s->m.step_tokens += (uint64_t)b.n;
        s->m.step_decode_seconds += t2 - t1;
        s->m.step_sample_seconds += t3 - t2;
        s->m.step_seconds += t3 - t0;
        pthread_mutex_unlock(&s->mu);
    }
    /* shutting down: end what runs and what waits */
    halo_api_error e;
    srv_error(&e, 503, NULL, "the server is shutting down");
    for (uint32_t k = 0; k < s->n_slots; k++)
        if (s->slots[k].job) abort_job(s, s->slots[k].job, &e);
    pthread_mutex_lock(&s->mu);
    srv_job *j = s->queue_head;
    s->queue_head = s->queue_tail = NULL;
    s->n_queued = 0;
    pthread_mutex_unlock(&s->mu);
    while (j) {
        srv_job *next = j->next;
        job_fail(j, &e);
        srv_job_unref(j);
        j = next;
    }
    srv_embd_fail_all(s, &e);
    free(b.tok);
    free(b.pos);
    free(b.seq);
    free(b.logits);
    free(b.owner);
    return NULL;
}

/* ---- setup --------------------------------------------------------------------------------- */

/* The fill-in-the-middle tokens: the file's tokenizer.ggml.fim_*_token_id, else the
 * vocabulary entries with the usual texts (Qwen's, StarCoder's, CodeLlama's). */
static void find_fim_tokens(halo_server *s, const halo_gguf *g) {
    static const struct {
        const char *key;
        const char *texts[4];
    } fim[5] = {
        {"tokenizer.ggml.fim_pre_token_id", {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>"}},
        {"tokenizer.ggml.fim_suf_token_id", {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>"}},
        {"tokenizer.ggml.fim_mid_token_id", {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>"}},
        {"tokenizer.ggml.fim_rep_token_id", {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", NULL}},
        {"tokenizer.ggml.fim_sep_token_id", {"<|file_sep|>", "<file_sep>", NULL, NULL}},
    };
    int32_t *out[5] = {&s->fim_pre, &s->fim_suf, &s->fim_mid, &s->fim_rep, &s->fim_sep};
    for (int i = 0; i < 5; i++) {
        uint32_t id;
        *out[i] = -1;
        if (halo_gguf_get_u32(g, fim[i].key, &id) && id < (uint32_t)s->n_vocab) {
            *out[i] = (int32_t)id;
            continue;
        }
        for (int k = 0; k < 4 && fim[i].texts[k] && *out[i] < 0; k++)
            *out[i] = halo_tok_find(s->tok, fim[i].texts[k], strlen(fim[i].texts[k]));
    }
}

/* A growing list of token ids. */
typedef struct tok_list {
    int32_t *v;
    size_t n, cap;
} tok_list;

/* Append ids[0..m); 0, or -1 with e. */
static int list_add(tok_list *l, const int32_t *ids, size_t m, halo_api_error *e) {
    if (l->n + m > l->cap) {
        size_t c = (l->n + m) * 2 + 16;
        int32_t *p = realloc(l->v, sizeof(int32_t) * c);
        if (!p) {
            srv_error(e, 500, NULL, "out of memory");
            return -1;
        }
        l->v = p, l->cap = c;
    }
    if (m) memcpy(l->v + l->n, ids, sizeof(int32_t) * m);
    l->n += m;
    return 0;
}

static int list_token(tok_list *l, int32_t tok, halo_api_error *e) { return list_add(l, &tok, 1, e); }

/* Append the last k ids of src. */
static int list_tail(tok_list *l, const tok_list *src, size_t k, halo_api_error *e) {
    return k ? list_add(l, src->v + (src->n - k), k, e) : 0;
}

/* Append text's tokens (no BOS, control-token texts kept as text). */
static int list_text(halo_server *s, tok_list *l, const char *text, halo_api_error *e) {
    int32_t *ids = NULL;
    size_t m = 0;
    halo_error err = {0};
    if (*text && halo_tok_encode(s->tok, text, strlen(text), 0, &ids, &m, &err)) {
        srv_error(e, 500, NULL, "tokenizing failed: %s", err.msg);
        return -1;
    }
    int rc = list_add(l, ids, m, e);
    free(ids);
    return rc;
}

static size_t min_size(size_t a, int64_t b) { return b <= 0 ? 0 : a < (size_t)b ? a : (size_t)b; }

/* llama-server's /infill prompt: other files' chunks (after the repository marker, each
 * behind a file separator and its name, or a "--- snip ---" line where the model has no
 * separator), then [BOS] <prefix> PREFIX PROMPT <suffix> SUFFIX <middle>; the prefix keeps
 * its last 3/4 of a batch, the suffix its first quarter less the prompt, the chunks what
 * is left of the slot's context beyond a batch and twice the tokens to generate. */
static int infill_prompt(halo_server *s, srv_job *j, halo_api_error *e) {
    const srv_request *r = &j->req;
    if (s->fim_pre < 0 || s->fim_suf < 0 || s->fim_mid < 0) {
        srv_error(e, 501, NULL,
                  "the model has no fill-in-the-middle tokens (<|fim_prefix|>, <|fim_suffix|>, "
                  "<|fim_middle|>): /infill needs a code model trained for it");
        return -1;
    }
    tok_list pre = {0}, suf = {0}, mid = {0}, extra = {0}, all = {0};
    int rc = -1;
    if (list_text(s, &pre, r->input_prefix, e) || list_text(s, &suf, r->input_suffix, e) ||
        list_text(s, &mid, r->prompt, e))
        goto done;
    if (s->fim_rep >= 0 &&
        (list_token(&extra, s->fim_rep, e) || list_text(s, &extra, "myproject\n", e)))
        goto done;
    const cJSON *ch;
    cJSON_ArrayForEach(ch, r->input_extra) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(ch, "text");
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(ch, "filename");
        char name[300];
        snprintf(name, sizeof name, "%.255s\n", cJSON_IsString(f) ? f->valuestring : "tmp");
        if (s->fim_sep >= 0 ? list_token(&extra, s->fim_sep, e) || list_text(s, &extra, name, e)
                            : list_text(s, &extra, "\n\n--- snip ---\n\n", e))
            goto done;
        if (cJSON_IsString(t) && list_text(s, &extra, t->valuestring, e)) goto done;
    }
    if (s->fim_sep >= 0 &&
        (list_token(&extra, s->fim_sep, e) || list_text(s, &extra, "filename\n", e)))
        goto done;
    const int64_t batch = halo_context_n_batch(s->ctx);
    const int64_t n_gen = r->max_tokens > 0 ? r->max_tokens : 0;
    size_t take_pre = min_size(pre.n, 3 * (batch / 4));
    size_t take_suf = min_size(suf.n, batch / 4 - (2 + (int64_t)mid.n));
    size_t take_x = min_size(extra.n, (int64_t)s->n_ctx_slot - batch - 2 * n_gen);
    int32_t bos = halo_tok_bos(s->tok);
    if (list_tail(&all, &extra, take_x, e) ||
        (halo_tok_add_bos(s->tok) && bos >= 0 && list_token(&all, bos, e)) ||
        list_token(&all, s->fim_pre, e) || list_tail(&all, &pre, take_pre, e) ||
        list_add(&all, mid.v, mid.n, e) || list_token(&all, s->fim_suf, e) ||
        list_add(&all, suf.v, take_suf, e) || list_token(&all, s->fim_mid, e))
        goto done;
    j->prompt = all.v, j->n_prompt = all.n, all.v = NULL;
    rc = 0;
done:
    free(pre.v), free(suf.v), free(mid.v), free(extra.v), free(all.v);
    return rc;
}

static char *piece_text(const halo_tokenizer *t, int32_t id) {
    size_t n = 0;
    const char *p = id >= 0 ? halo_tok_piece(t, id, true, &n) : NULL;
    return p ? strndup(p, n) : strdup("");
}

int srv_sched_init(halo_server *s, halo_error *err) {
    halo_load_options lo = s->p.load;
    int rc = halo_model_load(s->p.model_path, &lo, &s->model, err);
    if (rc) return rc;
    s->tok = halo_model_tokenizer(s->model);
    s->n_vocab = halo_model_n_vocab(s->model);
    s->bos_text = piece_text(s->tok, halo_tok_bos(s->tok));
    s->eos_text = piece_text(s->tok, halo_tok_eos(s->tok));
    if (!s->bos_text || !s->eos_text) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");

    /* the chat template from the file, else ChatML */
    halo_gguf *g = NULL;
    halo_load_options mo = {0};
    if ((rc = halo_gguf_open(s->p.model_path, &mo, &g, err))) return rc;
    const char *src = s->p.chat_template ? s->p.chat_template
                                         : halo_gguf_get_str(g, "tokenizer.chat_template");
    if (!src) {
        halo_log(HALO_LOG_WARN, "server: the model has no chat template; using ChatML");
        src = chatml_template;
    }
    find_fim_tokens(s, g);
    rc = halo_template_compile(src, strlen(src), &s->tmpl, err);
    if (!rc && !(s->template_src = strdup(src))) rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    halo_gguf_close(g);
    if (rc) return rc;

    halo_context_params cp = s->p.ctx;
    if (cp.n_seq_max == 0) cp.n_seq_max = 1;
    /* embeddings run in sequences of their own after the slots' */
    s->embd_seq0 = (int32_t)cp.n_seq_max;
    s->n_embd_seqs = s->p.embeddings ? SRV_EMBD_SEQS : 0;
    s->pooling = s->p.pooling >= 0 ? s->p.pooling : (int)halo_model_pooling(s->model);
    if (s->p.embeddings && s->pooling == HALO_POOLING_RANK)
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "rank pooling (rerankers' classification head) is not supported: "
                              "serve embeddings with --pooling none, mean, cls or last");
    cp.n_seq_max += (uint32_t)s->n_embd_seqs;
    if (cp.n_batch < cp.n_seq_max) cp.n_batch = cp.n_seq_max;
    if ((rc = halo_context_new(s->model, &cp, &s->ctx, err))) return rc;
    s->n_slots = halo_context_n_seq_max(s->ctx) - (uint32_t)s->n_embd_seqs;
    s->n_ctx = halo_context_n_ctx(s->ctx);
    s->n_ctx_slot = s->p.kv_unified ? s->n_ctx : s->n_ctx / s->n_slots;
    if (s->n_ctx_slot < 2)
        return halo_error_set(err, HALO_ERR_ARG,
                              "a context of %u tokens over %u slots leaves no room (raise -c)",
                              s->n_ctx, s->n_slots);
    s->state_size = halo_seq_state_size(s->ctx);
    if (s->state_size > 0) {
        find_turn_marks(s);
        char names[256] = "";
        size_t used = 0;
        for (int m = 0; m < s->n_turn_marks && used < sizeof names; m++) {
            size_t n = 0;
            const char *p = halo_tok_piece(s->tok, s->turn_marks[m], true, &n);
            int w = snprintf(names + used, sizeof names - used, "%s%.*s", m ? " " : "",
                             (int)(n > 64 ? 64 : n), p ? p : "");
            if (w > 0) used += (size_t)w;
        }
        halo_log(HALO_LOG_INFO, "server: recurrent-state checkpoints at the turns (%s), %s",
                 s->n_turn_marks ? names : "no turn token found in the chat template",
                 "every --checkpoint-every tokens and at the prompt's end");
    }
    s->slots = calloc(s->n_slots, sizeof *s->slots);
    if (!s->slots) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    for (uint32_t k = 0; k < s->n_slots; k++) {
        s->slots[k].id = (int32_t)k;
        s->slots[k].server = s;
    }
    if (!(s->to_sample = calloc(s->n_slots, sizeof *s->to_sample)) ||
        !(s->slot_info = calloc(s->n_slots, sizeof *s->slot_info)) ||
        !(s->erase = calloc(s->n_slots, sizeof *s->erase)))
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    /* on a GPU the cores wait for it during a step, so the slots sample in parallel
     * after it; on the CPU the decode's own threads would meet spinning ones
     * (HALO_SERVE_SAMPLE_THREADS=N, 2..16, asks for N anyway: the tests use it) */
    const char *ev = getenv("HALO_SERVE_SAMPLE_THREADS");
    long forced = ev ? strtol(ev, NULL, 10) : 0;
    if ((s->p.load.n_gpu_layers != 0 || forced > 1) && s->n_slots > 1) {
        long cores = forced > 1 ? forced : sysconf(_SC_NPROCESSORS_ONLN);
        int nt = (int)(cores < 1 ? 1 : cores > 16 ? 16 : cores);
        if ((uint32_t)nt > s->n_slots) nt = (int)s->n_slots;
        if (nt > 1 && !(s->sample_pool = halo_threadpool_new(nt)))
            return halo_error_set(err, HALO_ERR_NOMEM, "cannot start %d sampling threads", nt);
    }
    if (pthread_create(&s->thread, NULL, sched_main, s))
        return halo_error_set(err, HALO_ERR_NOMEM, "cannot start the scheduler thread");
    return 0;
}

void srv_sched_free(halo_server *s) {
    if (s->slots) {
        for (uint32_t k = 0; k < s->n_slots; k++) {
            srv_slot *sl = &s->slots[k];
            ckpt_trim(s, sl, 0);
            free(sl->ckpts);
            free(sl->tokens);
        }
        free(s->slots);
    }
    while (s->n_saved > 0) saved_drop(s, s->n_saved - 1);
    free(s->saved);
    for (int k = 0; k < SRV_GRAMMAR_VOCABS; k++)
        halo_grammar_vocab_free(s->gvocab[k]);
    while (s->n_spare_bufs > 0) halo_state_buf_free(s->ctx, s->spare_bufs[--s->n_spare_bufs]);
    if (s->sample_pool) halo_threadpool_free(s->sample_pool);
    free(s->to_sample);
    free(s->slot_info);
    free(s->erase);
    if (s->ctx) halo_context_free(s->ctx);
    if (s->tmpl) halo_template_free(s->tmpl);
    if (s->model) halo_model_free(s->model);
    free(s->bos_text);
    free(s->eos_text);
    free(s->template_src);
}

/* ---- metrics ------------------------------------------------------------------------------ */

char *srv_metrics_text(halo_server *s) {
    pthread_mutex_lock(&s->mu);
    srv_metrics m = s->m;
    int32_t busy = s->n_busy, queued = s->n_queued;
    /* the checkpoints as the scheduler published them after its last step (its own
     * counters change without the lock) */
    uint64_t ckb = 0, ckn = 0, svb = s->saved_bytes_pub;
    int svn = s->n_saved_pub;
    for (uint32_t k = 0; k < s->n_slots; k++) {
        ckb += s->slot_info[k].ckpt_bytes;
        ckn += (uint64_t)s->slot_info[k].n_ckpt;
    }
    pthread_mutex_unlock(&s->mu);
    /* n_tokens of slots is read without the scheduler's lock: a gauge, good to a step */
    uint64_t kv = 0;
    for (uint32_t k = 0; k < s->n_slots; k++) kv += s->slots[k].n_tokens;
    srv_buf b = {0};
    char line[256];
#define METRIC(name, type, help, fmt, value)                                                       \
    do {                                                                                           \
        snprintf(line, sizeof line, "# HELP halo_%s %s\n# TYPE halo_%s %s\nhalo_%s " fmt "\n",   \
                 name, help, name, type, name, value);                                             \
        srv_buf_puts(&b, line);                                                                    \
    } while (0)
    METRIC("requests_total", "counter", "Requests accepted for generation.", "%llu",
           (unsigned long long)m.requests);
    METRIC("requests_errors_total", "counter", "Accepted requests that ended in an error.", "%llu",
           (unsigned long long)m.errors);
    METRIC("requests_cancelled_total", "counter", "Requests whose client went away.", "%llu",
           (unsigned long long)m.cancelled);
    METRIC("requests_rejected_total", "counter", "Requests refused with 503 (queue full).", "%llu",
           (unsigned long long)m.rejected);
    METRIC("prompt_tokens_total", "counter", "Prompt tokens of finished requests.", "%llu",
           (unsigned long long)m.prompt_tokens);
    METRIC("prompt_tokens_cached_total", "counter", "Prompt tokens reused from the prompt cache.",
           "%llu", (unsigned long long)m.cached_tokens);
    METRIC("tokens_predicted_total", "counter", "Generated tokens.", "%llu",
           (unsigned long long)m.gen_tokens);
    METRIC("prompt_seconds_total", "counter", "Time to first token, summed over requests.", "%.6f",
           m.prompt_seconds);
    METRIC("tokens_predicted_seconds_total", "counter", "Generation time, summed over requests.",
           "%.6f", m.gen_seconds);
    METRIC("prompt_tokens_per_second", "gauge", "Average prompt throughput of a request.", "%.3f",
           m.prompt_seconds > 0 ? (double)(m.prompt_tokens - m.cached_tokens) / m.prompt_seconds
                                : 0.0);
    METRIC("predicted_tokens_per_second", "gauge", "Average generation speed of a request.",
           "%.3f", m.gen_seconds > 0 ? (double)m.gen_tokens / m.gen_seconds : 0.0);
    METRIC("steps_total", "counter", "Scheduler steps (one forward pass over all busy slots each).",
           "%llu", (unsigned long long)m.steps);
    METRIC("step_tokens_total", "counter", "Tokens of all steps (prompt and generated).", "%llu",
           (unsigned long long)m.step_tokens);
    METRIC("step_seconds_total", "counter", "Time in steps: batching, forward passes, sampling.",
           "%.6f", m.step_seconds);
    METRIC("step_decode_seconds_total", "counter", "Time in the steps' forward passes.", "%.6f",
           m.step_decode_seconds);
    METRIC("step_sample_seconds_total", "counter",
           "Time after the steps' forward passes: sampling, detokenizing, replies.", "%.6f",
           m.step_sample_seconds);
    METRIC("prompt_cache_checkpoint_saves_total", "counter", "Recurrent-state checkpoints saved.",
           "%llu", (unsigned long long)m.ckpt_saves);
    METRIC("prompt_cache_checkpoint_seconds_total", "counter",
           "Time saving recurrent-state checkpoints (in the steps' sampling time).", "%.6f",
           m.ckpt_seconds);
    METRIC("slots_busy", "gauge", "Slots generating or reading a prompt.", "%d", busy);
    METRIC("slots_total", "gauge", "Parallel slots (-np).", "%u", s->n_slots);
    METRIC("requests_queued", "gauge", "Requests waiting for a slot.", "%d", queued);
    METRIC("kv_cache_tokens", "gauge", "Tokens held by the slots' sequences (shared prefixes "
           "counted per slot).", "%llu", (unsigned long long)kv);
    METRIC("kv_cache_usage_ratio", "gauge", "kv_cache_tokens over the context size.", "%.6f",
           s->n_ctx ? (double)kv / s->n_ctx : 0.0);
    METRIC("prompt_cache_checkpoint_bytes", "gauge", "Memory of recurrent-state checkpoints (GPU memory with -ngl while it lasts).",
           "%llu", (unsigned long long)ckb);
    METRIC("prompt_cache_checkpoints", "gauge",
           "Recurrent-state checkpoints kept, all slots (bounded by --cache-ram, least recently used out).",
           "%llu", (unsigned long long)ckn);
    METRIC("prompt_cache_checkpoints_bytes", "gauge",
           "Memory of the checkpoints kept (the same as prompt_cache_checkpoint_bytes).", "%llu",
           (unsigned long long)ckb);
    METRIC("prompt_cache_saved_prompts", "gauge",
           "Conversations slots gave up, kept in host memory (KV rows and checkpoints) to come back.",
           "%d", svn);
    METRIC("prompt_cache_saved_bytes", "gauge",
           "Memory of those conversations (within --cache-ram, with the checkpoints).", "%llu",
           (unsigned long long)svb);
#undef METRIC
    if (b.failed) {
        srv_buf_free(&b);
        return NULL;
    }
    return b.data;
}

/* ---- for responses.c ------------------------------------------------------------------------ */

void srv_job_send(srv_job *j, const char *s, size_t n) { job_send(j, s, n); }
void srv_random_id(char *out, size_t size, const char *prefix) { random_id(out, size, prefix); }
char *srv_utf8_dup(const char *text, size_t n) { return utf8_dup(text, n); }
