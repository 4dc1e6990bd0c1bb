/*
 * Embeddings: POST /v1/embeddings (OpenAI's) and POST /embedding (llama-server's
 * native form), with `halo serve --embeddings`.
 *
 * A request is parsed and tokenized on its HTTP thread, then queued for the
 * scheduler, which alone touches the context: between two steps it runs the next
 * queued request in the context's embeddings mode (runtime/embed.c: the output rows are
 * the hidden states after the output norm), each input in a sequence of its own
 * after the slots' (so no slot's prompt cache is disturbed and no slot need be
 * free), up to SRV_EMBD_SEQS inputs in one batch, a long input in chunks of -b
 * tokens; the sequences are cleared afterwards. Rows are pooled as they arrive
 * (mean, cls, last; none keeps every token's) and the pooled vector is normalized
 * as llama-server does (Euclidean unless `embd_normalize` says otherwise).
 *
 * What llama-server does, and halo with it: a model without pooling metadata (a
 * decoder LLM) has pooling none, which /v1/embeddings refuses (400) and /embedding
 * answers with every token's unnormalized vector; --pooling overrides the file.
 */
#include "server/internal.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct srv_embd_job {
    int32_t **input; /* [n_input] token ids */
    size_t *n_tok;   /* [n_input] */
    int n_input;
    size_t n_tokens; /* over all inputs */
    int normalize;   /* embd_normalize */
    /* results: pooled, one row per input; pooling none, one row per token */
    float *out;
    size_t n_rows;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    halo_api_error err; /* err.status 0: success */
    struct srv_embd_job *next;
} srv_embd_job;

static void job_free(srv_embd_job *j) {
    if (!j) return;
    for (int i = 0; i < j->n_input; i++) free(j->input[i]);
    free(j->input);
    free(j->n_tok);
    free(j->out);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* ---- the request ---------------------------------------------------------------- */

/* What a request is checked against: the server's model and settings (or, for
 * halo_api_check_embeddings, fixed ones and no tokenizer: a text is one token) */
typedef struct embd_limits {
    const halo_tokenizer *tok; /* NULL: texts are not tokenized */
    int32_t n_vocab, n_embd;
    int pooling;
    uint32_t n_ctx_slot;
    int normalize; /* the default embd_normalize */
} embd_limits;

/* One input's token ids from an array of numbers; false with e. */
static bool ids_input(const embd_limits *s, const cJSON *a, int index, srv_embd_job *j,
                      halo_api_error *e) {
    int n = cJSON_GetArraySize(a);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!ids) {
        srv_error(e, 500, NULL, "out of memory");
        return false;
    }
    int k = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, a) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
            t->valuedouble >= s->n_vocab) {
            free(ids);
            srv_error(e, 400, "input", "input %d: token ids must be integers 0..%d", index,
                      s->n_vocab - 1);
            return false;
        }
        ids[k++] = (int32_t)t->valuedouble;
    }
    j->input[index] = ids;
    j->n_tok[index] = (size_t)k;
    return true;
}

/* One input's tokens from text, with the model's special tokens (BOS / EOS as its
 * metadata asks) and special-token text parsed, as llama-server tokenizes them. */
static bool text_input(const embd_limits *s, const char *text, int index, srv_embd_job *j,
                       halo_api_error *e) {
    halo_error err = {0};
    if (!s->tok) { /* checking only: a text is one token, none if empty */
        j->n_tok[index] = text[0] != '\0';
        j->input[index] = calloc(1, sizeof(int32_t));
        if (!j->input[index]) srv_error(e, 500, NULL, "out of memory");
        return j->input[index] != NULL;
    }
    if (halo_tok_encode(s->tok, text, strlen(text), HALO_TOK_ADD_SPECIAL | HALO_TOK_PARSE_SPECIAL,
                        &j->input[index], &j->n_tok[index], &err)) {
        srv_error(e, 500, NULL, "tokenizing input %d failed: %s", index, err.msg);
        return false;
    }
    return true;
}

static bool all_of(const cJSON *a, cJSON_bool (*is)(const cJSON *)) {
    const cJSON *x;
    cJSON_ArrayForEach(x, a) if (!is(x)) return false;
    return true;
}

/* `input`: a string, an array of strings, an array of token ids (one input), or an
 * array of arrays of token ids. */
static bool parse_input(const embd_limits *s, const cJSON *in, const char *field, srv_embd_job *j,
                        halo_api_error *e) {
    const bool one = cJSON_IsString(in) || (cJSON_IsArray(in) && cJSON_GetArraySize(in) > 0 &&
                                            all_of(in, cJSON_IsNumber));
    int n = one ? 1 : cJSON_IsArray(in) ? cJSON_GetArraySize(in) : -1;
    if (n < 0) {
        srv_error(e, 400, field,
                  "'%s' must be a string, an array of strings, an array of token ids or an "
                  "array of arrays of token ids",
                  field);
        return false;
    }
    if (n == 0) {
        srv_error(e, 400, field, "'%s' is empty", field);
        return false;
    }
    if (n > SRV_EMBD_MAX_INPUTS) {
        srv_error(e, 400, field, "'%s' has %d inputs; at most %d in one request", field, n,
                  SRV_EMBD_MAX_INPUTS);
        return false;
    }
    if (!one && !all_of(in, cJSON_IsString) && !all_of(in, cJSON_IsArray)) {
        srv_error(e, 400, field,
                  "'%s' must be an array of strings or an array of arrays of token ids, not "
                  "a mix",
                  field);
        return false;
    }
    j->input = calloc((size_t)n, sizeof *j->input);
    j->n_tok = calloc((size_t)n, sizeof *j->n_tok);
    if (!j->input || !j->n_tok) {
        srv_error(e, 500, NULL, "out of memory");
        return false;
    }
    j->n_input = n;
    if (one) return cJSON_IsString(in) ? text_input(s, in->valuestring, 0, j, e)
                                       : ids_input(s, in, 0, j, e);
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, in) {
        if (cJSON_IsString(x) ? !text_input(s, x->valuestring, i, j, e)
                              : !ids_input(s, x, i, j, e))
            return false;
        i++;
    }
    return true;
}

/* The fields, their types, and the inputs against the context; 0 or -1 with e. */
static int parse(const embd_limits *s, const cJSON *o, bool *oai, bool *base64, srv_embd_job *j,
                 halo_api_error *e) {
    static const char *const known[] = {"input",      "content", "model", "encoding_format",
                                        "dimensions", "user",    "embd_normalize"};
    const cJSON *f;
    cJSON_ArrayForEach(f, o) {
        bool ok = cJSON_IsNull(f);
        for (size_t i = 0; !ok && i < sizeof known / sizeof *known; i++) ok = !strcmp(f->string, known[i]);
        if (!ok) {
            srv_error(e, 400, f->string, "'%.60s' is not supported by halo's embeddings (leave it out)",
                      f->string);
            return -1;
        }
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "input");
    const char *field = "input";
    if (!in || cJSON_IsNull(in)) { /* llama-server's `content`, which answers in its own form */
        in = cJSON_GetObjectItemCaseSensitive(o, "content");
        field = "content";
        *oai = false;
    }
    if (!in || cJSON_IsNull(in)) {
        srv_error(e, 400, "input", "'input' is required");
        return -1;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    if (model && !cJSON_IsNull(model) && !cJSON_IsString(model)) {
        srv_error(e, 400, "model", "'model' must be a string");
        return -1;
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "encoding_format");
    if (fmt && !cJSON_IsNull(fmt)) {
        if (!cJSON_IsString(fmt) ||
            (strcmp(fmt->valuestring, "float") && strcmp(fmt->valuestring, "base64"))) {
            srv_error(e, 400, "encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
            return -1;
        }
        *base64 = !strcmp(fmt->valuestring, "base64");
    }
    const int32_t n_embd = s->n_embd;
    const cJSON *dim = cJSON_GetObjectItemCaseSensitive(o, "dimensions");
    if (dim && !cJSON_IsNull(dim)) {
        if (!cJSON_IsNumber(dim) || dim->valuedouble != floor(dim->valuedouble) || dim->valuedouble < 1) {
            srv_error(e, 400, "dimensions", "'dimensions' must be a positive integer");
            return -1;
        }
        if (dim->valuedouble != n_embd) {
            srv_error(e, 400, "dimensions",
                      "'dimensions' %.0f: this model's embeddings have %d dimensions, and halo "
                      "does not shorten them",
                      dim->valuedouble, n_embd);
            return -1;
        }
    }
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(o, "embd_normalize");
    j->normalize = s->normalize;
    if (norm && !cJSON_IsNull(norm)) {
        if (!cJSON_IsNumber(norm) || norm->valuedouble != floor(norm->valuedouble) ||
            norm->valuedouble < -1 || norm->valuedouble > 64) {
            srv_error(e, 400, "embd_normalize",
                      "'embd_normalize' must be an integer: -1 none, 0 int16 range, 1 taxicab, "
                      "2 Euclidean (default), p > 2 the p-norm (up to 64)");
            return -1;
        }
        j->normalize = (int)norm->valuedouble;
    }
    if (*oai && s->pooling == HALO_POOLING_NONE) {
        srv_error(e, 400, NULL,
                  "Pooling type 'none' is not OAI compatible. Please use a different pooling "
                  "type (the model has no pooling metadata: start the server with --pooling "
                  "mean, cls or last)");
        return -1;
    }
    if (!parse_input(s, in, field, j, e)) return -1;
    for (int i = 0; i < j->n_input; i++) {
        if (j->n_tok[i] == 0) {
            srv_error(e, 400, field, "input %d is empty", i);
            return -1;
        }
        if (j->n_tok[i] > s->n_ctx_slot) {
            srv_error(e, 400, field,
                      "input %d has %zu tokens, more than the %u a slot's context holds (raise "
                      "-c, or shorten it)",
                      i, j->n_tok[i], s->n_ctx_slot);
            return -1;
        }
        j->n_tokens += j->n_tok[i];
    }
    /* the result's size: one vector per input, or per token without pooling */
    j->n_rows = s->pooling == HALO_POOLING_NONE ? j->n_tokens : (size_t)j->n_input;
    if (j->n_rows > ((size_t)1 << 28) / (size_t)n_embd) {
        srv_error(e, 400, field,
                  "the reply would hold %zu vectors of %d values: ask for fewer tokens at once",
                  j->n_rows, n_embd);
        return -1;
    }
    if (!(j->out = malloc(sizeof(float) * j->n_rows * (size_t)n_embd))) {
        srv_error(e, 500, NULL, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- the reply -------------------------------------------------------------------- */

/* Little-endian float32 bytes of v[0..n), base64 (RFC 4648, padded). */
static char *base64_floats(const float *v, size_t n) {
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const size_t bytes = n * 4;
    char *out = malloc((bytes + 2) / 3 * 4 + 1);
    unsigned char *b = malloc(bytes ? bytes : 1);
    if (!out || !b) {
        free(out);
        free(b);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++) b[4 * i + (size_t)k] = (unsigned char)(u >> (8 * k));
    }
    char *o = out;
    for (size_t i = 0; i < bytes; i += 3) {
        uint32_t w = (uint32_t)b[i] << 16;
        if (i + 1 < bytes) w |= (uint32_t)b[i + 1] << 8;
        if (i + 2 < bytes) w |= b[i + 2];
        *o++ = digits[w >> 18 & 63];
        *o++ = digits[w >> 12 & 63];
        *o++ = i + 1 < bytes ? digits[w >> 6 & 63] : '=';
        *o++ = i + 2 < bytes ? digits[w & 63] : '=';
    }
    *o = '\0';
    free(b);
    return out;
}

static cJSON *float_array(const float *v, int32_t n) {
    cJSON *a = cJSON_CreateArray();
    for (int32_t i = 0; a && i < n; i++) {
        cJSON *x = cJSON_CreateNumber((double)v[i]);
        if (!x) {
            cJSON_Delete(a);
            return NULL;
        }
        cJSON_AddItemToArray(a, x);
    }
    return a;
}

/* OpenAI's list, or llama-server's [{index, embedding: [[...], ...]}]; NULL: out of memory. */
static char *reply_json(halo_server *s, const srv_embd_job *j, bool oai, bool base64) {
    const int32_t n_embd = halo_model_n_embd(s->model);
    const bool pooled = s->pooling != HALO_POOLING_NONE;
    cJSON *root = oai ? cJSON_CreateObject() : cJSON_CreateArray();
    cJSON *data = oai ? cJSON_AddArrayToObject(root, "data") : root;
    if (oai) {
        cJSON_AddStringToObject(root, "object", "list");
        cJSON_AddStringToObject(root, "model", s->model_id);
        cJSON *u = cJSON_AddObjectToObject(root, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", (double)j->n_tokens);
        cJSON_AddNumberToObject(u, "total_tokens", (double)j->n_tokens);
    }
    bool ok = root && data;
    size_t row = 0;
    for (int i = 0; ok && i < j->n_input; i++) {
        cJSON *it = cJSON_CreateObject();
        ok = it != NULL;
        if (!ok) break;
        cJSON_AddItemToArray(data, it);
        if (oai) cJSON_AddStringToObject(it, "object", "embedding");
        cJSON_AddNumberToObject(it, "index", i);
        const size_t rows = pooled ? 1 : j->n_tok[i];
        const float *v = j->out + row * (size_t)n_embd;
        row += rows;
        if (oai && base64) {
            char *t = base64_floats(v, (size_t)n_embd);
            ok = t && cJSON_AddStringToObject(it, "embedding", t);
            free(t);
        } else if (oai) {
            cJSON *a = float_array(v, n_embd);
            ok = a != NULL;
            if (ok) cJSON_AddItemToObject(it, "embedding", a);
        } else {
            cJSON *outer = cJSON_AddArrayToObject(it, "embedding");
            ok = outer != NULL;
            for (size_t r = 0; ok && r < rows; r++) {
                cJSON *a = float_array(v + r * (size_t)n_embd, n_embd);
                ok = a != NULL;
                if (ok) cJSON_AddItemToArray(outer, a);
            }
        }
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

/* ---- queueing and waiting ------------------------------------------------------------ */

/* The request's body parsed (*o, an object) and an empty job for it; NULL (e set, *o
 * freed) when the body is not a JSON object or memory is short. */
static srv_embd_job *embd_job_new(const char *body, size_t len, cJSON **o, halo_api_error *e) {
    *o = body ? cJSON_ParseWithLength(body, len) : NULL;
    if (!cJSON_IsObject(*o)) {
        cJSON_Delete(*o);
        *o = NULL;
        srv_error(e, 400, NULL, "the body must be a JSON object");
        return NULL;
    }
    srv_embd_job *j = calloc(1, sizeof *j);
    if (!j) {
        cJSON_Delete(*o);
        *o = NULL;
        srv_error(e, 500, NULL, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    return j;
}

int srv_embeddings_request(halo_server *s, const char *body, size_t len, bool oai, char **reply,
                           halo_api_error *e) {
    *reply = NULL;
    if (!s->p.embeddings) {
        srv_error(e, 501, NULL,
                  "This server does not support embeddings. Start it with `--embeddings`");
        e->type = "not_supported_error";
        return -1;
    }
    cJSON *o;
    srv_embd_job *j = embd_job_new(body, len, &o, e);
    if (!j) return -1;
    bool base64 = false;
    const embd_limits lim = {s->tok, s->n_vocab, halo_model_n_embd(s->model), s->pooling,
                             s->n_ctx_slot, s->p.embd_normalize};
    int rc = parse(&lim, o, &oai, &base64, j, e);
    cJSON_Delete(o);
    if (rc) {
        job_free(j);
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->n_embd_queued > s->p.queue_max) {
        const bool stopping = s->stopping;
        const int32_t waiting = s->n_embd_queued;
        if (!stopping) s->m.rejected++;
        pthread_mutex_unlock(&s->mu);
        if (stopping) srv_error(e, 503, NULL, "the server is shutting down");
        else srv_error(e, 503, NULL, "the server is busy: %d embedding requests wait; retry later", waiting);
        job_free(j);
        return -1;
    }
    if (s->embd_tail) s->embd_tail->next = j;
    else s->embd_head = j;
    s->embd_tail = j;
    s->n_embd_queued++;
    s->m.requests++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);

    /* the scheduler always ends a queued job (done, failed, or failed at shutdown) */
    pthread_mutex_lock(&j->mu);
    while (!j->done) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    if (j->err.status) {
        *e = j->err;
        job_free(j);
        return -1;
    }
    *reply = reply_json(s, j, oai, base64);
    job_free(j);
    if (!*reply) {
        srv_error(e, 500, NULL, "out of memory");
        return -1;
    }
    return 0;
}

int halo_api_check_embeddings(const char *body, size_t len, bool oai, halo_api_error *e) {
    cJSON *o;
    srv_embd_job *j = embd_job_new(body, len, &o, e);
    if (!j) return -1;
    bool base64 = false;
    const embd_limits lim = {NULL, 1024, 256, oai ? HALO_POOLING_MEAN : HALO_POOLING_NONE, 128, 2};
    int rc = parse(&lim, o, &oai, &base64, j, e);
    cJSON_Delete(o);
    job_free(j);
    return rc;
}

static void job_finish(srv_embd_job *j, const halo_api_error *e) {
    pthread_mutex_lock(&j->mu);
    if (e) j->err = *e;
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static srv_embd_job *pop(halo_server *s) {
    pthread_mutex_lock(&s->mu);
    srv_embd_job *j = s->embd_head;
    if (j) {
        s->embd_head = j->next;
        if (!s->embd_head) s->embd_tail = NULL;
        s->n_embd_queued--;
    }
    pthread_mutex_unlock(&s->mu);
    return j;
}

void srv_embd_fail_all(halo_server *s, const halo_api_error *e) {
    for (srv_embd_job *j; (j = pop(s));) job_finish(j, e);
}

/* ---- running a job (the scheduler thread) ---------------------------------------------- */

/* Inputs first .. first + count - 1, input first + k in sequence embd_seq0 + k: their
 * tokens in batches of up to n_batch (one long input: chunks of it), pooled into
 * j->out. 0, or -1 with e. */
static int run_group(halo_server *s, srv_embd_job *j, int first, int count, size_t *row,
                     halo_api_error *e) {
    const int32_t n_embd = halo_model_n_embd(s->model);
    const uint32_t nb = halo_context_n_batch(s->ctx);
    const bool pooled = s->pooling != HALO_POOLING_NONE;
    int32_t *tok = malloc(sizeof(int32_t) * nb), *seq = malloc(sizeof(int32_t) * nb);
    int8_t *want = malloc(nb);
    halo_embd_pool pool[SRV_EMBD_SEQS] = {{0}};
    int rc = 0;
    halo_error err = {0};
    if (!tok || !seq || !want) rc = -1;
    for (int k = 0; k < count && !rc && pooled; k++)
        rc = halo_embd_pool_init(&pool[k], (halo_pooling)s->pooling, n_embd, &err) ? -1 : 0;
    if (rc) srv_error(e, 500, NULL, "out of memory");
    for (int k = 0; k < count; k++) halo_seq_clear(s->ctx, s->embd_seq0 + k);
    /* the group's tokens, input after input, batch after batch */
    int k = 0;
    size_t p = 0;
    while (!rc && k < count) {
        int32_t n = 0;
        for (; k < count && n < (int32_t)nb; k++, p = 0) {
            const int32_t *in = j->input[first + k];
            const size_t len = j->n_tok[first + k];
            for (; p < len && n < (int32_t)nb; p++, n++) {
                tok[n] = in[p];
                seq[n] = s->embd_seq0 + k;
                want[n] = s->pooling == HALO_POOLING_CLS    ? p == 0
                          : s->pooling == HALO_POOLING_LAST ? p + 1 == len
                                                            : 1;
            }
            if (p < len) break; /* the batch is full inside this input */
        }
        halo_batch b = {n, tok, NULL, seq, want};
        halo_set_embeddings(s->ctx, true);
        int drc;
        while ((drc = halo_decode(s->ctx, &b, &err)) == HALO_ERR_RANGE && srv_forget_idle_cache(s))
            halo_error_clear(&err);
        halo_set_embeddings(s->ctx, false);
        if (drc) {
            if (drc == HALO_ERR_RANGE)
                srv_error(e, 503, NULL,
                          "the KV cache is full with the running requests; retry later or raise -c");
            else srv_error(e, 500, NULL, "the engine failed: %s", err.msg);
            rc = -1;
            break;
        }
        for (int32_t t = 0; t < n; t++) {
            if (!want[t]) continue;
            const float *r = halo_get_embeddings(s->ctx, t);
            if (!r) {
                srv_error(e, 500, NULL, "the engine gave no embeddings");
                rc = -1;
                break;
            }
            if (pooled) halo_embd_pool_add(&pool[seq[t] - s->embd_seq0], r);
            else memcpy(j->out + (*row)++ * (size_t)n_embd, r, sizeof(float) * (size_t)n_embd);
        }
    }
    for (int q = 0; q < count; q++) {
        halo_seq_clear(s->ctx, s->embd_seq0 + q);
        if (!pooled) continue;
        if (!rc) {
            float *v = j->out + (*row)++ * (size_t)n_embd;
            halo_embd_pool_result(&pool[q], v);
            halo_embd_normalize(v, v, n_embd, j->normalize);
        }
        halo_embd_pool_free(&pool[q]);
    }
    free(tok);
    free(seq);
    free(want);
    return rc;
}

void srv_embd_run(halo_server *s) {
    const uint32_t nb = halo_context_n_batch(s->ctx);
    srv_embd_job *j = pop(s);
    if (j) {
        double t0 = halo_time_seconds();
        halo_api_error e;
        size_t row = 0;
        int rc = 0;
        /* groups of up to SRV_EMBD_SEQS inputs that fit one batch; a longer input alone */
        for (int i = 0; i < j->n_input && !rc;) {
            int count = 1;
            size_t total = j->n_tok[i];
            while (i + count < j->n_input && count < s->n_embd_seqs &&
                   total + j->n_tok[i + count] <= nb)
                total += j->n_tok[i + count++];
            rc = run_group(s, j, i, count, &row, &e);
            i += count;
        }
        pthread_mutex_lock(&s->mu);
        if (rc) s->m.errors++;
        else s->m.prompt_tokens += j->n_tokens, s->m.prompt_seconds += halo_time_seconds() - t0;
        pthread_mutex_unlock(&s->mu);
        if (!s->p.quiet)
            halo_log(HALO_LOG_INFO, "server: embeddings: %d inputs, %zu tokens, %.1f ms%s",
                     j->n_input, j->n_tokens, (halo_time_seconds() - t0) * 1e3,
                     rc ? " (failed)" : "");
        job_finish(j, rc ? &e : NULL);
    }
}
