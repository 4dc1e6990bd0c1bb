/*
 * server — `halo serve`: an OpenAI-compatible HTTP server over one model.
 *
 * Two ideas carry it. First, one scheduler thread owns the engine: every step it
 * admits queued requests into free slots, then runs one halo_decode over the next
 * token of every generating slot plus a chunk of every slot still reading its
 * prompt (continuous batching), then samples and hands text to the waiting HTTP
 * threads. Second, a slot keeps its sequence after a request ends, with
 * recurrent-state checkpoints taken while the prompt was read, so that the next
 * request sharing a prefix (the next turn of a chat) restarts from the nearest
 * checkpoint at or before the point where the prompts diverge instead of reading
 * the whole conversation again.
 *
 * HTTP is libmicrohttpd (a thread per connection: a connection waits for its
 * request on a condition variable and watches its socket, so a client that goes
 * away cancels its generation at once); JSON is cJSON.
 */
#ifndef HALO_SERVER_H
#define HALO_SERVER_H

#include "halo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct halo_server halo_server;

typedef enum halo_server_reasoning {
    HALO_SERVER_REASONING_AUTO = 0, /* thinking on where the template has it */
    HALO_SERVER_REASONING_ON = 1,
    HALO_SERVER_REASONING_OFF = 2, /* enable_thinking false; <think> stays in content */
} halo_server_reasoning;

typedef struct halo_server_params {
    const char *model_path;
    const char *alias; /* the model id /v1/models reports; NULL: the file name */
    const char *host;  /* default 127.0.0.1 */
    int port;          /* 0: any free port (halo_server_port tells) */
    const char *api_key; /* NULL: no authentication */
    const char *chat_template; /* Jinja text; NULL: the model's, else ChatML */
    halo_load_options load;
    halo_context_params ctx; /* n_seq_max is the number of slots */
    bool kv_unified;         /* a slot may use the whole context (else n_ctx / slots) */
    halo_server_reasoning reasoning;
    int32_t reasoning_budget; /* tokens of thinking before </think> is forced; -1: none */
    halo_sampler_params sampling; /* defaults of requests (logit_bias ignored) */
    int32_t n_predict;            /* default max_tokens; -1: up to the context */
    int32_t queue_max;            /* requests waiting for a slot before 503 */
    size_t max_body;              /* bytes of a request body before 413 */
    int32_t checkpoint_every;     /* recurrent checkpoints every N prompt tokens (besides the
                                   * messages' starts and the prompt's end); 0: off */
    uint64_t cache_ram;           /* bytes of checkpoints kept (LRU); 0: none kept */
    float slot_prompt_similarity; /* reuse an idle slot only above this prefix share */
    bool quiet;                   /* no per-request log lines */
    bool embeddings;              /* POST /v1/embeddings, /embedding (--embeddings) */
    int pooling;                  /* halo_pooling (--pooling); -1: the file's */
    int embd_normalize;           /* of pooled vectors (halo_embd_normalize's mode; 2) */
} halo_server_params;

void halo_server_default_params(halo_server_params *p);

/* Load the model, make the context, start the scheduler and listen. */
int halo_server_start(const halo_server_params *p, halo_server **out, halo_error *err);
int halo_server_port(const halo_server *s);
/* Stop listening, cancel what runs, join every thread, free everything. */
void halo_server_stop(halo_server *s);

/* ---- request validation (server/api.c), exposed for tests and fuzzing ------- */

/* An OpenAI-style error: HTTP status, type and param (NULL: none). */
typedef struct halo_api_error {
    int status; /* 400, 401, 404, 413, 500, 503 ... */
    const char *type; /* "invalid_request_error", "authentication_error", ... */
    char param[64];
    char message[512];
} halo_api_error;

/* {"error":{"message","type","param","code"}} (malloc'd). */
char *halo_api_error_json(const halo_api_error *e);

/* Check a /v1/chat/completions or /v1/completions body for the types and ranges of
 * the fields halo reads (unknown fields are ignored, as OpenAI's own server does
 * for forward compatibility). Returns 0 or fills e (status 400). */
int halo_api_check_chat(const char *body, size_t len, halo_api_error *e);
int halo_api_check_completion(const char *body, size_t len, halo_api_error *e);
/* A /v1/responses body: the Responses fields, then the chat request they become. */
int halo_api_check_responses(const char *body, size_t len, halo_api_error *e);
/* The same for a /v1/embeddings (oai) or /embedding body, against a model of 1024 tokens
 * and 256 dimensions with 128 tokens of context a slot, pooling mean (oai) or none; texts
 * are not tokenized (one token each). */
int halo_api_check_embeddings(const char *body, size_t len, bool oai, halo_api_error *e);

#endif /* HALO_SERVER_H */
