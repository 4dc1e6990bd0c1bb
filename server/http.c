/*
 * HTTP: libmicrohttpd with a thread per connection. A request's body is gathered
 * (up to max_body, else 413), its route and key checked, then generation requests
 * become jobs for the scheduler: the connection thread waits on the job's
 * condition variable, and every 50 ms looks at its socket, so a client that hung
 * up cancels its job within one scheduler step. Streamed replies are chunked
 * `text/event-stream` bodies fed by a content-reader callback that blocks the same
 * way.
 */
#define _GNU_SOURCE
#include "server/internal.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

typedef struct conn_state {
    srv_buf body;
    bool too_big;
} conn_state;

void halo_server_default_params(halo_server_params *p) {
    memset(p, 0, sizeof *p);
    p->host = "127.0.0.1";
    p->port = 8080;
    p->load.mode = HALO_LOAD_MMAP;
    halo_context_default_params(&p->ctx);
    p->ctx.n_ctx = 4096;
    p->ctx.n_seq_max = 1;
    p->reasoning = HALO_SERVER_REASONING_AUTO;
    p->reasoning_budget = -1;
    halo_sampler_default_params(&p->sampling);
    p->n_predict = -1;
    p->queue_max = 64;
    p->max_body = (size_t)16 << 20;
    p->checkpoint_every = 1024;
    p->cache_ram = (uint64_t)8192 << 20;
    p->slot_prompt_similarity = 0.1f;
    p->pooling = -1;
    p->embd_normalize = 2;
}

/* ---- responses --------------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, int status, const char *type,
                             const char *body, size_t len) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    /* busy (queue full, no slot) or shutting down: clients back off and retry */
    if (status == 503) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, int status, cJSON *o) {
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) return reply(c, 500, "text/plain", "out of memory\n", 14);
    enum MHD_Result r = reply(c, status, "application/json", text, strlen(text));
    free(text);
    return r;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, const halo_api_error *e) {
    char *text = halo_api_error_json(e);
    if (!text) return reply(c, 500, "text/plain", "out of memory\n", 14);
    enum MHD_Result r = reply(c, e->status, "application/json", text, strlen(text));
    free(text);
    return r;
}

static enum MHD_Result fail(struct MHD_Connection *c, int status, const char *param,
                            const char *msg) {
    halo_api_error e;
    srv_error(&e, status, param, "%s", msg);
    return reply_error(c, &e);
}

/* ---- waiting for a job ------------------------------------------------------------------ */

static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static void wait_a_little(srv_job *j) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&j->cv, &j->mu, &ts);
}

typedef struct stream_state {
    halo_server *s;
    srv_job *job;
    int fd;
} stream_state;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_state *st = cls;
    srv_job *j = st->job;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        if (j->out_sent < j->out.len) {
            size_t n = j->out.len - j->out_sent;
            if (n > max) n = max;
            memcpy(buf, j->out.data + j->out_sent, n);
            j->out_sent += n;
            pthread_mutex_unlock(&j->mu);
            return (ssize_t)n;
        }
        if (j->state == SRV_DONE) {
            pthread_mutex_unlock(&j->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        wait_a_little(j);
        if (client_gone(st->fd)) {
            atomic_store(&j->cancelled, true);
            pthread_mutex_unlock(&j->mu);
            srv_wake(st->s);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls) {
    stream_state *st = cls;
    atomic_store(&st->job->cancelled, true); /* harmless when it already ended */
    srv_wake(st->s);
    srv_job_unref(st->job);
    free(st);
}

/* ---- endpoints ------------------------------------------------------------------------- */

static enum MHD_Result do_generate(halo_server *s, struct MHD_Connection *c, srv_kind kind,
                                   const conn_state *cs) {
    srv_job *j = calloc(1, sizeof *j);
    if (!j) return fail(c, 500, NULL, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    halo_api_error e;
    const char *body = cs->body.data ? cs->body.data : "";
    int rc = srv_request_parse(kind, body, cs->body.len, &s->p.sampling, s->n_vocab, &j->req, &e);
    if (!rc && (srv_job_prepare(s, j, &e) || srv_submit(s, j, &e))) {
        rc = -1;
        if (kind == SRV_RESPONSES) srv_responses_fix_error(&e); /* "messages": the input */
    }
    if (rc) {
        srv_job_unref(j);
        return reply_error(c, &e);
    }
    int fd = conn_fd(c);
    if (j->req.stream) {
        stream_state *st = malloc(sizeof *st);
        if (!st) {
            atomic_store(&j->cancelled, true);
            srv_job_unref(j);
            return fail(c, 500, NULL, "out of memory");
        }
        *st = (stream_state){s, j, fd};
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
        if (!r) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    pthread_mutex_lock(&j->mu);
    while (j->state != SRV_DONE) {
        wait_a_little(j);
        if (!atomic_load(&j->cancelled) && client_gone(fd)) {
            atomic_store(&j->cancelled, true);
            pthread_mutex_unlock(&j->mu);
            srv_wake(s);
            pthread_mutex_lock(&j->mu);
        }
    }
    pthread_mutex_unlock(&j->mu);
    enum MHD_Result ret;
    if (j->http_status == 499 || !j->out.data)
        ret = MHD_NO; /* cancelled: nobody to answer */
    else
        ret = reply(c, j->http_status, "application/json", j->out.data, j->out.len);
    srv_job_unref(j);
    return ret;
}

static cJSON *parse_body(const conn_state *cs, struct MHD_Connection *c, enum MHD_Result *ret) {
    cJSON *o = cs->body.data ? cJSON_ParseWithLength(cs->body.data, cs->body.len) : NULL;
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        *ret = fail(c, 400, NULL, "the body must be a JSON object");
        return NULL;
    }
    return o;
}

static enum MHD_Result do_tokenize(halo_server *s, struct MHD_Connection *c, const conn_state *cs) {
    enum MHD_Result ret;
    cJSON *o = parse_body(cs, c, &ret);
    if (!o) return ret;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(o, "content");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(o, "add_special");
    const cJSON *parse = cJSON_GetObjectItemCaseSensitive(o, "parse_special");
    const cJSON *pieces = cJSON_GetObjectItemCaseSensitive(o, "with_pieces");
    if (!cJSON_IsString(content)) {
        cJSON_Delete(o);
        return fail(c, 400, "content", "'content' must be a string");
    }
    if ((add && !cJSON_IsBool(add)) || (parse && !cJSON_IsBool(parse)) ||
        (pieces && !cJSON_IsBool(pieces))) {
        cJSON_Delete(o);
        return fail(c, 400, NULL, "add_special, parse_special and with_pieces must be booleans");
    }
    unsigned flags = (cJSON_IsTrue(add) ? HALO_TOK_ADD_SPECIAL : 0) |
                     (!parse || cJSON_IsTrue(parse) ? HALO_TOK_PARSE_SPECIAL : 0);
    int32_t *ids = NULL;
    size_t n = 0;
    halo_error err = {0};
    int rc = halo_tok_encode(s->tok, content->valuestring, strlen(content->valuestring), flags, &ids,
                             &n, &err);
    bool with_pieces = cJSON_IsTrue(pieces);
    cJSON_Delete(o);
    if (rc) return fail(c, 500, NULL, err.msg);
    cJSON *r = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(r, "tokens");
    for (size_t i = 0; i < n; i++) {
        if (!with_pieces) {
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
            continue;
        }
        size_t pl = 0;
        const char *p = halo_tok_piece(s->tok, ids[i], true, &pl);
        char *t = strndup(p ? p : "", pl);
        cJSON *it = cJSON_CreateObject();
        cJSON_AddNumberToObject(it, "id", ids[i]);
        cJSON_AddStringToObject(it, "piece", t ? t : "");
        free(t);
        cJSON_AddItemToArray(arr, it);
    }
    free(ids);
    return reply_json(c, 200, r);
}

static enum MHD_Result do_detokenize(halo_server *s, struct MHD_Connection *c,
                                     const conn_state *cs) {
    enum MHD_Result ret;
    cJSON *o = parse_body(cs, c, &ret);
    if (!o) return ret;
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(o, "tokens");
    int n = cJSON_IsArray(toks) ? cJSON_GetArraySize(toks) : -1;
    if (n < 0) {
        cJSON_Delete(o);
        return fail(c, 400, "tokens", "'tokens' must be an array of token ids");
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n + 1));
    if (!ids) {
        cJSON_Delete(o);
        return fail(c, 500, NULL, "out of memory");
    }
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, toks) {
        if (!cJSON_IsNumber(t) || t->valuedouble != (double)(int32_t)t->valuedouble ||
            t->valuedouble < 0 || t->valuedouble >= s->n_vocab) {
            free(ids);
            cJSON_Delete(o);
            char msg[96];
            snprintf(msg, sizeof msg, "'tokens' must hold token ids 0..%d", s->n_vocab - 1);
            return fail(c, 400, "tokens", msg);
        }
        ids[i++] = (int32_t)t->valuedouble;
    }
    cJSON_Delete(o);
    char *text = NULL;
    size_t len = 0;
    halo_error err = {0};
    int rc = halo_tok_decode(s->tok, ids, (size_t)n, HALO_TOK_DECODE_SPECIAL, &text, &len, &err);
    free(ids);
    if (rc) return fail(c, 500, NULL, err.msg);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "content", text);
    free(text);
    return reply_json(c, 200, r);
}

/* The served model's object (OpenAI's model, with llama-server's meta). */
static cJSON *model_json(halo_server *s) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", s->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)s->started);
    cJSON_AddStringToObject(m, "owned_by", "halo");
    cJSON *meta = cJSON_AddObjectToObject(m, "meta");
    cJSON_AddStringToObject(meta, "arch", halo_model_arch_name(s->model));
    cJSON_AddStringToObject(meta, "desc", halo_model_desc(s->model));
    cJSON_AddNumberToObject(meta, "n_vocab", s->n_vocab);
    cJSON_AddNumberToObject(meta, "n_ctx_train", halo_model_n_ctx_train(s->model));
    cJSON_AddNumberToObject(meta, "n_ctx", s->n_ctx);
    cJSON_AddNumberToObject(meta, "n_ctx_slot", s->n_ctx_slot);
    cJSON_AddNumberToObject(meta, "n_slots", s->n_slots);
    cJSON_AddNumberToObject(meta, "n_params", (double)halo_model_n_params(s->model));
    cJSON_AddNumberToObject(meta, "size", (double)halo_model_size_bytes(s->model));
    return m;
}

static enum MHD_Result do_models(halo_server *s, struct MHD_Connection *c) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(r, "data");
    cJSON_AddItemToArray(data, model_json(s));
    return reply_json(c, 200, r);
}

/* A float setting as the shortest decimal that reads back as it (0.8, not 0.800000011920929) */
static double short_float(float f) {
    char b[32];
    snprintf(b, sizeof b, "%.9g", (double)f);
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, (double)f);
        if (strtof(b, NULL) == f) break;
    }
    return strtod(b, NULL);
}

/* GET /props (llama-server's): the defaults of a request, the slots, the template */
static enum MHD_Result do_props(halo_server *s, struct MHD_Connection *c) {
    cJSON *r = cJSON_CreateObject();
    cJSON *dg = cJSON_AddObjectToObject(r, "default_generation_settings");
    cJSON_AddNumberToObject(dg, "n_ctx", s->n_ctx_slot);
    cJSON *pa = cJSON_AddObjectToObject(dg, "params");
    const halo_sampler_params *sp = &s->p.sampling;
    cJSON_AddNumberToObject(pa, "temperature", short_float(sp->temp));
    cJSON_AddNumberToObject(pa, "top_k", sp->top_k);
    cJSON_AddNumberToObject(pa, "top_p", short_float(sp->top_p));
    cJSON_AddNumberToObject(pa, "min_p", short_float(sp->min_p));
    cJSON_AddNumberToObject(pa, "presence_penalty", short_float(sp->presence_penalty));
    cJSON_AddNumberToObject(pa, "frequency_penalty", short_float(sp->frequency_penalty));
    cJSON_AddNumberToObject(pa, "repeat_penalty", short_float(sp->repeat_penalty));
    cJSON_AddNumberToObject(pa, "repeat_last_n", sp->repeat_last_n);
    cJSON_AddNumberToObject(pa, "n_predict", s->p.n_predict);
    cJSON_AddNumberToObject(r, "total_slots", s->n_slots);
    cJSON_AddStringToObject(r, "model_path", s->p.model_path);
    cJSON_AddStringToObject(r, "model_alias", s->model_id);
    cJSON_AddStringToObject(r, "chat_template", s->template_src ? s->template_src : "");
    cJSON *mo = cJSON_AddObjectToObject(r, "modalities");
    cJSON_AddBoolToObject(mo, "vision", 0);
    cJSON_AddBoolToObject(mo, "audio", 0);
    cJSON_AddStringToObject(r, "build_info", "halo");
    return reply_json(c, 200, r);
}

/* GET /slots (llama-server's): every slot, busy or not, with its cache; with
 * ?fail_on_no_slot=1 a 503 when none is free */
static enum MHD_Result do_slots(halo_server *s, struct MHD_Connection *c) {
    char *t = srv_slots_json(s);
    if (!t) return fail(c, 500, NULL, "out of memory");
    const char *f = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fail_on_no_slot");
    if (f && strcmp(f, "0") && strcmp(f, "false")) {
        cJSON *a = cJSON_Parse(t);
        bool any = false;
        const cJSON *o;
        cJSON_ArrayForEach(o, a) any |= cJSON_IsFalse(cJSON_GetObjectItem(o, "is_processing"));
        cJSON_Delete(a);
        if (!any) {
            free(t);
            return fail(c, 503, NULL, "no slot available");
        }
    }
    enum MHD_Result r = reply(c, 200, "application/json", t, strlen(t));
    free(t);
    return r;
}

/* POST /slots/{id}?action=erase: forget an idle slot's cache (llama-server's; its save and
 * restore actions write files under --slot-save-path, which halo does not take) */
static enum MHD_Result do_slot_action(halo_server *s, struct MHD_Connection *c, const char *id) {
    char *end;
    long k = strtol(id, &end, 10);
    if (end == id || *end || k < 0 || k >= (long)s->n_slots) {
        char msg[96];
        snprintf(msg, sizeof msg, "no slot '%.20s' (the server has %u)", id, s->n_slots);
        return fail(c, 404, NULL, msg);
    }
    const char *action = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "action");
    if (!action) return fail(c, 400, "action", "give ?action=erase");
    if (strcmp(action, "erase"))
        return fail(c, 400, "action",
                    !strcmp(action, "save") || !strcmp(action, "restore")
                        ? "slot save and restore (llama-server's --slot-save-path) are not "
                          "supported: halo keeps slot caches in memory; use action=erase"
                        : "unknown action: use action=erase");
    int64_t n = srv_slot_erase(s, (uint32_t)k);
    if (n < 0) return fail(c, 409, NULL, "the slot is processing a request; erase it when idle");
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "id_slot", (double)k);
    cJSON_AddNumberToObject(r, "n_erased", (double)n);
    return reply_json(c, 200, r);
}

/* POST /apply-template (llama-server's): a chat request's prompt as the template renders it */
static enum MHD_Result do_apply_template(halo_server *s, struct MHD_Connection *c,
                                         const conn_state *cs) {
    srv_request r;
    halo_api_error e;
    const char *body = cs->body.data ? cs->body.data : "";
    if (srv_request_parse(SRV_CHAT, body, cs->body.len, &s->p.sampling, s->n_vocab, &r, &e))
        return reply_error(c, &e);
    char *text = NULL;
    size_t len = 0;
    int rc = srv_render_chat(s, &r, &text, &len, NULL, &e);
    srv_request_free(&r);
    if (rc) return reply_error(c, &e);
    cJSON *o = cJSON_CreateObject();
    char *t = strndup(text, len);
    cJSON_AddStringToObject(o, "prompt", t ? t : "");
    free(t);
    free(text);
    return reply_json(c, 200, o);
}

/* GET /v1/models/{id}: the model, or 404 naming what is served */
static enum MHD_Result do_model(halo_server *s, struct MHD_Connection *c, const char *id) {
    if (strcmp(id, s->model_id) != 0) {
        char msg[384];
        snprintf(msg, sizeof msg, "no model '%.120s' (this server serves '%.120s')", id,
                 s->model_id);
        halo_api_error e;
        srv_error(&e, 404, "model", "%s", msg);
        return reply_error(c, &e);
    }
    return reply_json(c, 200, model_json(s));
}

/* POST /v1/embeddings (oai), /embedding and /embeddings (llama-server's form): embeddings.c */
static enum MHD_Result do_embeddings(halo_server *s, struct MHD_Connection *c,
                                     const conn_state *cs, bool oai) {
    char *text = NULL;
    halo_api_error e;
    if (srv_embeddings_request(s, cs->body.data, cs->body.len, oai, &text, &e))
        return reply_error(c, &e);
    enum MHD_Result r = reply(c, 200, "application/json", text, strlen(text));
    free(text);
    return r;
}

/* Constant-time: the time depends on the lengths only, never on where bytes differ. */
static bool key_matches(const char *given, const char *key) {
    size_t gl = strlen(given), kl = strlen(key);
    unsigned char diff = (unsigned char)(gl != kl);
    for (size_t i = 0; i < kl; i++) diff |= (unsigned char)(key[i] ^ (i < gl ? given[i] : 0));
    return diff == 0;
}

static bool authorized(halo_server *s, struct MHD_Connection *c) {
    if (!s->p.api_key || !s->p.api_key[0]) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    while (*h == ' ') h++;
    return key_matches(h, s->p.api_key);
}

static bool is(const char *url, const char *a, const char *b) {
    return !strcmp(url, a) || (b && !strcmp(url, b));
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_size, void **con_cls) {
    halo_server *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        if (!(cs = calloc(1, sizeof *cs))) return MHD_NO;
        *con_cls = cs;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->p.max_body) cs->too_big = true;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cs->too_big && cs->body.len + *upload_size > s->p.max_body) {
            cs->too_big = true;
            srv_buf_free(&cs->body);
        }
        if (!cs->too_big) srv_buf_append(&cs->body, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (!strcmp(method, "OPTIONS")) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        enum MHD_Result ret = MHD_queue_response(c, 204, r);
        MHD_destroy_response(r);
        return ret;
    }
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (is(url, "/health", "/v1/health")) {
        if (!get) return fail(c, 405, NULL, "use GET for /health");
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "status", "ok");
        return reply_json(c, 200, r);
    }
    if (cs->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", s->p.max_body);
        return fail(c, 413, NULL, msg);
    }
    if (cs->body.failed) return fail(c, 500, NULL, "out of memory reading the body");
    if (!authorized(s, c))
        return fail(c, 401, NULL, "invalid API key: send 'Authorization: Bearer KEY'");
    static const struct route {
        const char *a, *b;
        bool post;
        int what;
    } routes[] = {
        {"/v1/chat/completions", "/chat/completions", true, 0},
        {"/v1/completions", "/completions", true, 1},
        {"/v1/models", "/models", false, 2},
        {"/metrics", NULL, false, 3},
        {"/tokenize", NULL, true, 4},
        {"/detokenize", NULL, true, 5},
        {"/props", NULL, false, 6},
        {"/apply-template", NULL, true, 7},
        {"/completion", NULL, true, 8},
        {"/infill", NULL, true, 9},
        {"/v1/responses", "/responses", true, 10},
        {"/v1/embeddings", NULL, true, 11},
        {"/embedding", "/embeddings", true, 12},
    };
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        if (!is(url, routes[i].a, routes[i].b)) continue;
        if (routes[i].post ? !post : !get) {
            char msg[96];
            snprintf(msg, sizeof msg, "use %s for %s", routes[i].post ? "POST" : "GET", url);
            return fail(c, 405, NULL, msg);
        }
        switch (routes[i].what) {
        case 0: return do_generate(s, c, SRV_CHAT, cs);
        case 1: return do_generate(s, c, SRV_COMPLETION, cs);
        case 2: return do_models(s, c);
        case 3: {
            char *t = srv_metrics_text(s);
            if (!t) return fail(c, 500, NULL, "out of memory");
            enum MHD_Result r = reply(c, 200, "text/plain; version=0.0.4", t, strlen(t));
            free(t);
            return r;
        }
        case 4: return do_tokenize(s, c, cs);
        case 5: return do_detokenize(s, c, cs);
        case 6: return do_props(s, c);
        case 7: return do_apply_template(s, c, cs);
        case 8: return do_generate(s, c, SRV_NATIVE, cs);
        case 9: return do_generate(s, c, SRV_INFILL, cs);
        case 10: return do_generate(s, c, SRV_RESPONSES, cs);
        case 11: return do_embeddings(s, c, cs, true);
        default: return do_embeddings(s, c, cs, false);
        }
    }
    if (!strcmp(url, "/slots")) {
        if (!get) return fail(c, 405, NULL, "use GET for /slots");
        return do_slots(s, c);
    }
    if (!strncmp(url, "/slots/", 7)) {
        if (!post) return fail(c, 405, NULL, "use POST for /slots/{id}?action=erase");
        return do_slot_action(s, c, url + 7);
    }
    const char *mid = !strncmp(url, "/v1/models/", 11) ? url + 11
                      : !strncmp(url, "/models/", 8)  ? url + 8
                                                      : NULL;
    if (mid && *mid) {
        if (!get) return fail(c, 405, NULL, "use GET for /v1/models/{id}");
        return do_model(s, c, mid);
    }
    char msg[128];
    snprintf(msg, sizeof msg, "no endpoint %.80s", url);
    return fail(c, 404, NULL, msg);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    conn_state *cs = *con_cls;
    if (!cs) return;
    srv_buf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n') buf[--n] = '\0';
    halo_log(HALO_LOG_DEBUG, "server: http: %s", buf);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

int halo_server_start(const halo_server_params *p, halo_server **out, halo_error *err) {
    *out = NULL;
    if (!p->model_path) return halo_error_set(err, HALO_ERR_ARG, "no model to serve (-m FILE)");
    if (p->port < 0 || p->port > 65535)
        return halo_error_set(err, HALO_ERR_ARG, "--port %d is not a TCP port", p->port);
    halo_server *s = calloc(1, sizeof *s);
    if (!s) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    s->p = *p;
    if (s->p.queue_max < 0) s->p.queue_max = 0;
    s->started = (int64_t)time(NULL);
    const char *base = strrchr(p->model_path, '/');
    snprintf(s->model_id, sizeof s->model_id, "%s",
             p->alias && p->alias[0] ? p->alias : base ? base + 1 : p->model_path);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc = srv_sched_init(s, err);
    if (rc) { /* the scheduler thread is the last thing it starts: none runs */
        srv_sched_free(s);
        free(s);
        return rc;
    }

    /* IPv4 (127.0.0.1, 0.0.0.0) or IPv6 (::1; :: listens on both, dual stack) */
    struct sockaddr_in addr = {0};
    struct sockaddr_in6 addr6 = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)p->port);
    addr6.sin6_family = AF_INET6;
    addr6.sin6_port = htons((uint16_t)p->port);
    const char *host = p->host && p->host[0] ? p->host : "127.0.0.1";
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    const bool v6 = strchr(host, ':') != NULL;
    if (v6 ? inet_pton(AF_INET6, host, &addr6.sin6_addr) != 1
           : inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        rc = halo_error_set(err, HALO_ERR_ARG,
                            "--host '%s' is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1, ::)",
                            host);
    } else {
        const bool any6 = v6 && IN6_IS_ADDR_UNSPECIFIED(&addr6.sin6_addr);
        s->daemon = MHD_start_daemon(
            MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                MHD_USE_ERROR_LOG | (any6 ? MHD_USE_DUAL_STACK : v6 ? MHD_USE_IPv6 : 0),
            (uint16_t)p->port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR,
            v6 ? (struct sockaddr *)&addr6 : (struct sockaddr *)&addr,
            MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_CONNECTION_LIMIT, 1024u,
            MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
            MHD_OPTION_END);
        if (!s->daemon)
            rc = halo_error_set(err, HALO_ERR_IO, "cannot listen on %s:%d (%s)", host, p->port,
                                errno ? strerror(errno) : "port in use?");
    }
    if (rc) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        srv_sched_free(s);
        free(s);
        return rc;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : p->port;
    *out = s;
    return 0;
}

int halo_server_port(const halo_server *s) { return s->port; }

void halo_server_stop(halo_server *s) {
    if (!s) return;
    MHD_socket ls = MHD_quiesce_daemon(s->daemon); /* no new connections */
    if (ls != MHD_INVALID_SOCKET) close(ls);
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL); /* every job ends: the waiting connections return */
    MHD_stop_daemon(s->daemon);
    srv_sched_free(s);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
