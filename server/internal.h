/*
 * server internals shared by api.c (requests and responses as JSON), sched.c (the
 * engine loop, slots, prompt cache), http.c (libmicrohttpd, routing, waiting) and
 * responses.c (POST /v1/responses as a view of the chat path).
 */
#ifndef HALO_SERVER_INTERNAL_H
#define HALO_SERVER_INTERNAL_H

#include "server/server.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>

/* ---- a growing byte buffer ------------------------------------------------ */

typedef struct srv_buf {
    char *data;
    size_t len, cap;
    bool failed; /* an append ran out of memory */
} srv_buf;

void srv_buf_append(srv_buf *b, const char *s, size_t n);
void srv_buf_puts(srv_buf *b, const char *s);
void srv_buf_free(srv_buf *b);

/* ---- requests --------------------------------------------------------------- */

/* chat and completions: the OpenAI API; native: llama-server's POST /completion (a completion
 * request, its own reply: content, stop, tokens_predicted, ..) */
/* SRV_INFILL is parsed as llama-server's /infill and then runs as SRV_NATIVE (infill set);
 * SRV_RESPONSES (POST /v1/responses) is parsed into a chat request and runs as SRV_CHAT,
 * its replies made by responses.c (responses set) */
typedef enum srv_kind {
    SRV_CHAT = 0,
    SRV_COMPLETION = 1,
    SRV_NATIVE = 2,
    SRV_INFILL = 3,
    SRV_RESPONSES = 4,
} srv_kind;

typedef struct srv_responses srv_responses; /* responses.c */

typedef struct srv_request {
    srv_kind kind;
    bool stream, include_usage;
    bool cache_prompt; /* llama-server's field: false reads the whole prompt again */
    bool ignore_eos;   /* llama-server's field: end-of-generation tokens are never sampled */
    /* log-probabilities of the generated tokens: chat `logprobs` + `top_logprobs` (0..20),
     * completions' legacy `logprobs` N (0..5: the top N too); -1: none asked for */
    int32_t logprobs;
    int32_t max_tokens; /* -1: not given; 0: nothing generated (the prompt alone, e.g. echo) */
    int32_t n;          /* choices (1..SRV_MAX_N), each in its own slot, sharing the prompt */
    bool echo;          /* /v1/completions: the prompt comes back before the text (and, with
                         * logprobs, the prompt tokens' log-probabilities) */
    int32_t id_slot;    /* llama-server's field: the slot to run in (its cache); -1: any */
    halo_sampler_params sp;
    halo_logit_bias *bias; /* [n_bias] */
    int32_t n_bias;
    char **stop; /* [n_stop] */
    int n_stop;
    /* chat */
    cJSON *messages; /* normalized: content is a string or null */
    cJSON *tools;    /* NULL: none (or tool_choice "none") */
    cJSON *kwargs;   /* chat_template_kwargs, NULL: none */
    /* constrained decoding: the grammar from `grammar`, `json_schema`, `response_format` or a
     * forced tool call (tool_choice "required" or a named function); NULL: none */
    halo_grammar *grammar;
    /* /infill (fill in the middle): the code before and after the gap, other files'
     * chunks [{filename, text}]; `prompt` is then the start of the middle */
    bool infill;
    char *input_prefix, *input_suffix;
    cJSON *input_extra;
    /* POST /v1/responses: what its replies need (settings to repeat, the output so far);
     * NULL for other requests */
    srv_responses *responses;
    /* completion: text or ids */
    char *prompt;
    int32_t *prompt_ids;
    size_t n_prompt_ids;
} srv_request;

#define SRV_MAX_N 16 /* most choices (n) in one request */
#define SRV_MAX_STOP 16
#define SRV_MAX_STOP_LEN 256

/* Parse and validate a body into r (defaults from sp). 0 or -1 with e filled. */
int srv_request_parse(srv_kind kind, const char *body, size_t len, const halo_sampler_params *sp,
                      int32_t n_vocab, srv_request *r, halo_api_error *e);
void srv_request_free(srv_request *r);

void srv_error(halo_api_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- jobs: one request between its HTTP thread and the scheduler ------------- */

typedef enum srv_job_state { SRV_QUEUED = 0, SRV_RUNNING = 1, SRV_DONE = 2 } srv_job_state;

typedef struct srv_job {
    srv_request req;
    int32_t *prompt; /* tokenized */
    size_t n_prompt;
    /* hybrid models: the positions where a message of the prompt begins (0 < pos < n_prompt,
     * ascending), where its read stops for a recurrent-state checkpoint; NULL: none */
    int32_t *turns;
    size_t n_turns;
    halo_chat_think think;
    char id[40];
    int64_t created;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_job_state state;
    atomic_bool cancelled; /* the client went away */
    int refs;              /* the HTTP thread and the scheduler */
    srv_buf out;           /* bytes ready for the client (SSE chunks, or the whole body) */
    size_t out_sent;
    int http_status; /* of a non-streamed reply */
    /* the choices (req.n slots; sched.c): how many still generate, the finished ones of a
     * non-streamed reply by index, their generated (and reasoning) tokens, the first
     * choice's figures and finish_reason (a static string; a Responses reply's status) */
    int32_t n_open;
    cJSON **choices; /* [req.n] */
    size_t n_gen_total, n_reason_total, n_cached;
    double t_start, t_first;
    const char *reason;
    struct srv_job *next; /* queue link */
} srv_job;

void srv_job_unref(srv_job *j);

/* ---- the server --------------------------------------------------------------- */

typedef struct srv_ckpt {
    int32_t pos;
    void *data;
    bool in_backend; /* data is a halo_state_buf_new buffer (GPU memory), else host memory */
    uint64_t used;   /* LRU stamp */
} srv_ckpt;

/* A conversation a slot gave up (its sequence overwritten, or dropped when the KV cache was
 * full), kept in host memory so that it can come back: its tokens, the KV rows of their
 * positions (halo_seq_kv_save) and, for hybrids, the recurrent-state checkpoints the slot
 * had past what it kept, plus one at the end. Bounded by cache_ram with the checkpoints. */
typedef struct srv_saved {
    int32_t *tokens; /* [n] */
    int32_t n;
    void *kv;
    size_t kv_bytes;
    srv_ckpt *ckpts; /* [n_ckpt] */
    int n_ckpt;
    uint64_t used; /* LRU stamp */
} srv_saved;

#define SRV_TURN_MARKS 4       /* turn-opening tokens the template may use */
#define SRV_SPARE_STATE_BUFS 4 /* backend checkpoint buffers kept for reuse, not freed */

typedef struct srv_slot srv_slot; /* sched.c */

typedef struct srv_slot_info {
    bool busy;
    char task[40];     /* the job's id while busy */
    uint64_t n_tokens; /* positions its sequence holds (its prompt cache) */
    int32_t n_gen, max_gen, n_ckpt;
    uint64_t ckpt_bytes; /* its checkpoints' memory */
} srv_slot_info;

/* grammars' vocabularies (sched.c), built on first use: [0] plain text, [1] with output
 * tags (chat) */
#define SRV_GRAMMAR_VOCABS 2

typedef struct srv_metrics {
    uint64_t requests, errors, cancelled, rejected;
    uint64_t prompt_tokens, cached_tokens, gen_tokens;
    double prompt_seconds, gen_seconds;
    /* the scheduler's steps: one halo_decode each, and where their time goes */
    uint64_t steps, step_tokens;
    double step_decode_seconds, step_sample_seconds, step_seconds;
    uint64_t ckpt_saves;
    double ckpt_seconds; /* saving checkpoints (copying recurrent state to host memory) */
} srv_metrics;

struct halo_server {
    halo_server_params p;
    char model_id[256];
    halo_model *model;
    halo_context *ctx;
    const halo_tokenizer *tok;
    halo_template *tmpl;
    char *template_src; /* its Jinja text (/props) */
    char *bos_text, *eos_text;
    int32_t n_vocab;
    /* fill-in-the-middle tokens (-1: the model has none): prefix, suffix, middle, repository
     * and file separator, from the file's metadata or found by their text */
    int32_t fim_pre, fim_suf, fim_mid, fim_rep, fim_sep;
    uint32_t n_ctx, n_ctx_slot, n_slots;
    size_t state_size;
    /* the tokens that open a turn of the chat template (<|im_start|>, <start_of_turn>, ..),
     * found by rendering probe conversations; a prompt's checkpoints go where they are */
    int32_t turn_marks[SRV_TURN_MARKS];
    int n_turn_marks;
    int64_t started;

    /* the scheduler */
    pthread_t thread;
    pthread_mutex_t mu; /* queue, metrics, stop flag */
    pthread_cond_t cv;
    srv_job *queue_head, *queue_tail;
    int32_t n_queued;
    bool stopping;
    srv_slot *slots;
    int32_t n_busy;
    /* sampling after a step: the slots to sample, and threads for them when the model
     * is on a GPU (the CPU is free then; NULL: one thread) */
    srv_slot **to_sample; /* [n_to_sample] this step's */
    uint32_t n_to_sample;
    struct halo_threadpool *sample_pool;
    uint64_t ckpt_bytes, ckpt_clock;
    srv_saved *saved; /* [n_saved] conversations in host memory */
    int n_saved, cap_saved;
    uint64_t saved_bytes; /* their KV rows and checkpoints */
    int n_saved_pub;      /* n_saved and saved_bytes as published with the slots (under mu) */
    uint64_t saved_bytes_pub;
    /* what GET /slots shows: the scheduler's copy of each slot after every step (under
     * mu), and the slots POST /slots/{id}?action=erase asked to forget */
    srv_slot_info *slot_info;
    bool *erase, erase_pending;
    void *spare_bufs[SRV_SPARE_STATE_BUFS]; /* freed backend checkpoint buffers */
    int n_spare_bufs;
    srv_metrics m;
    halo_grammar_vocab *gvocab[SRV_GRAMMAR_VOCABS];

    /* embeddings (embeddings.c): jobs waiting for the scheduler, the pooling in use, and
     * the context's sequences after the slots' that they run in (SRV_EMBD_SEQS; none
     * without --embeddings) */
    struct srv_embd_job *embd_head, *embd_tail;
    int32_t n_embd_queued;
    int pooling;
    int32_t embd_seq0, n_embd_seqs;

    struct MHD_Daemon *daemon;
    int port;
};

/* sched.c */
int srv_sched_init(halo_server *s, halo_error *err);
/* GET /slots: a JSON array of the slots (llama-server's shape, what halo knows) */
char *srv_slots_json(halo_server *s);
/* POST /slots/{id}?action=erase: forget an idle slot's cache; its cached tokens, or -1 (busy) */
int64_t srv_slot_erase(halo_server *s, uint32_t id);
void srv_sched_free(halo_server *s);
/* Tokenize the request's prompt (chat: through the template). 0 or -1 with e. */
int srv_job_prepare(halo_server *s, srv_job *j, halo_api_error *e);
/* The chat request's prompt through the template (malloc'd text); thinking: whether the
 * render asked for reasoning. 0 or -1 with e. */
int srv_render_chat(halo_server *s, const srv_request *r, char **text, size_t *len,
                    bool *thinking, halo_api_error *e);
/* Queue a prepared job; -1 with e (503) when the queue is full or stopping. */
int srv_submit(halo_server *s, srv_job *j, halo_api_error *e);
void srv_wake(halo_server *s);
/* Prometheus text (malloc'd). */
char *srv_metrics_text(halo_server *s);

/* An idle slot's cache dropped to free KV pages (the least recently used); false if none. */
bool srv_forget_idle_cache(halo_server *s);

/* embeddings.c: requests run by the scheduler between its steps, each input in a
 * sequence of its own (after the slots' ones), cleared afterwards */
#define SRV_EMBD_SEQS 4 /* inputs decoded together in one batch */
#define SRV_EMBD_MAX_INPUTS 2048 /* per request, OpenAI's limit */
/* Parse, queue and wait for a request: /v1/embeddings (oai) or llama-server's
 * /embedding. 0 with *reply (malloc'd JSON), or -1 with e. */
int srv_embeddings_request(halo_server *s, const char *body, size_t len, bool oai, char **reply,
                           halo_api_error *e);
/* The scheduler: run the first queued embedding job (one between two steps, so that a
 * stream of them does not stall generation); at shutdown, fail them with e. */
void srv_embd_run(halo_server *s);
void srv_embd_fail_all(halo_server *s, const halo_api_error *e);

/* api.c: responses */
cJSON *srv_usage_json(size_t prompt, size_t completion, size_t cached);

/* sched.c, for responses.c: bytes for the client (wakes its thread), a random id with a
 * prefix, a copy of text[0..n) made valid UTF-8 (malloc'd) */
void srv_job_send(srv_job *j, const char *s, size_t n);
void srv_random_id(char *out, size_t size, const char *prefix);
char *srv_utf8_dup(const char *text, size_t n);

/* ---- responses.c: POST /v1/responses on the chat path ------------------------------------ */

/* The Responses body as the chat request it means (r->responses set). 0 or -1 with e. */
int srv_responses_parse(const char *body, size_t len, const halo_sampler_params *sp,
                        int32_t n_vocab, srv_request *r, halo_api_error *e);
void srv_responses_free(srv_responses *x);
/* An error of the chat request (its param "messages", "max_tokens", ..) in the Responses words */
void srv_responses_fix_error(halo_api_error *e);
/* The scheduler's hooks: the job starts (streamed: response.created, response.in_progress);
 * a parser event (reasoning, content, tool call) becomes output items (streamed: events);
 * the end (the Response object, or the last events); an error event (streamed). */
void srv_responses_start(halo_server *s, srv_job *j);
void srv_responses_event(halo_server *s, srv_job *j, const halo_chat_event *ev);
void srv_responses_finish(halo_server *s, srv_job *j, bool length, size_t n_prompt, size_t n_gen,
                          size_t n_cached, size_t n_reasoning);
void srv_responses_fail(srv_job *j, const halo_api_error *e);

#endif
