/*
 * Helpers for the model and runtime tests, generic over the model file: the
 * list of fixture models each architecture is checked on, evaluating token
 * sequences through the public API (whole, in chunks, several sequences in one
 * batch), and the comparisons the fixtures README defines (relative RMS error,
 * top-1 agreement over positions whose reference margin is >= 1e-2).
 *
 * To check another architecture, add its fixture to EVAL_MODELS.
 */
#ifndef HALO_TEST_MODEL_EVAL_H
#define HALO_TEST_MODEL_EVAL_H

#include "compare.h"
#include "harness.h"
#include "halo.h"

#include <cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct eval_model {
    const char *name;     /* models/NAME.gguf, refs/NAME.logits.{json,f32} */
    double ref_rel_rms;   /* bound against refs/ with the default (f16) KV cache */
    bool recurrent;       /* has recurrent state (hybrid) */
} eval_model;

static const eval_model EVAL_MODELS[] = {
    {"tiny-llama-f16", 2e-3, false},
    {"tiny-qwen3-f16", 2e-3, false},
    {"tiny-qwen3moe-f16", 2e-3, false},
    {"tiny-qwen35-f16", 2e-3, true},
    {"kdoc-moe-bf16", 5e-3, true},
};
#define EVAL_N_MODELS (sizeof EVAL_MODELS / sizeof EVAL_MODELS[0])

typedef struct eval_seqs {
    int n;
    int32_t *tokens[8];
    int32_t len[8];
} eval_seqs;

static inline void eval_seqs_free(eval_seqs *s) {
    for (int i = 0; i < s->n; i++) free(s->tokens[i]);
    s->n = 0;
}

/* refs/NAME.logits.json: sequences[i].tokens */
static inline bool eval_read_ref_tokens(const char *name, eval_seqs *out) {
    char rel[256];
    snprintf(rel, sizeof rel, "refs/%s.logits.json", name);
    size_t size;
    char *text = halo_test_read_file(halo_test_fixture_path(rel), &size);
    memset(out, 0, sizeof *out);
    if (!text) return false;
    cJSON *root = cJSON_ParseWithLength(text, size);
    free(text);
    const cJSON *seqs = cJSON_GetObjectItem(root, "sequences"), *s;
    cJSON_ArrayForEach(s, seqs) {
        if (out->n == 8) break;
        const cJSON *toks = cJSON_GetObjectItem(s, "tokens"), *t;
        int n = cJSON_GetArraySize(toks), i = 0;
        out->tokens[out->n] = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
        cJSON_ArrayForEach(t, toks) out->tokens[out->n][i++] = (int32_t)t->valuedouble;
        out->len[out->n++] = n;
    }
    cJSON_Delete(root);
    return out->n > 0;
}

/* One sequence a line of ids. */
static inline bool eval_read_token_lines(const char *path, eval_seqs *out) {
    size_t size;
    char *text = halo_test_read_file(path, &size);
    memset(out, 0, sizeof *out);
    if (!text) return false;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && out->n < 8;
         line = strtok_r(NULL, "\n", &save)) {
        int32_t buf[4096];
        int n = 0;
        char *p = line, *end;
        for (long v; n < 4096 && (v = strtol(p, &end, 10), end != p); p = end) buf[n++] = (int32_t)v;
        if (!n) continue;
        out->tokens[out->n] = malloc(sizeof(int32_t) * (size_t)n);
        memcpy(out->tokens[out->n], buf, sizeof(int32_t) * (size_t)n);
        out->len[out->n++] = n;
    }
    free(text);
    return out->n > 0;
}

static inline void eval_params(halo_context_params *p, int type_kv, uint32_t n_seq) {
    halo_context_default_params(p);
    p->n_ctx = 256;
    p->n_seq_max = n_seq;
    p->n_batch = 256;
    p->n_ubatch = 64;
    p->type_k = p->type_v = type_kv;
    p->n_threads = 2;
}

/* Evaluate one sequence from position 0 in sequence `seq` of ctx, chunk tokens
 * per decode call, logits of every position into out [len][n_vocab]. */
static inline bool eval_decode_seq(halo_context *ctx, int32_t seq, const int32_t *tok, int32_t len,
                            int32_t chunk, float *out) {
    const int32_t nv = halo_model_n_vocab(halo_context_model(ctx));
    int32_t pos[4096], sid[4096];
    int8_t want[4096];
    halo_error err = {0};
    halo_seq_clear(ctx, seq);
    for (int32_t i0 = 0; i0 < len; i0 += chunk) {
        int32_t n = len - i0 < chunk ? len - i0 : chunk;
        for (int32_t t = 0; t < n; t++) {
            pos[t] = i0 + t;
            sid[t] = seq;
            want[t] = 1;
        }
        halo_batch b = {n, tok + i0, pos, sid, want};
        if (halo_decode(ctx, &b, &err)) {
            fprintf(stderr, "decode: %s\n", err.msg);
            return false;
        }
        for (int32_t t = 0; t < n; t++)
            memcpy(out + (size_t)(i0 + t) * nv, halo_get_logits(ctx, t), sizeof(float) * nv);
    }
    return true;
}

/* Every sequence of s, one after another (each from an empty cache), into out. */
static inline bool eval_all(halo_model *m, int type_kv, const eval_seqs *s, int32_t chunk, float *out) {
    halo_context_params p;
    eval_params(&p, type_kv, 1);
    halo_context *ctx = NULL;
    halo_error err = {0};
    if (halo_context_new(m, &p, &ctx, &err)) {
        fprintf(stderr, "context: %s\n", err.msg);
        return false;
    }
    const int32_t nv = halo_model_n_vocab(m);
    size_t off = 0;
    bool ok = true;
    for (int i = 0; i < s->n && ok; i++) {
        ok = eval_decode_seq(ctx, 0, s->tokens[i], s->len[i], chunk, out + off);
        off += (size_t)s->len[i] * nv;
    }
    halo_context_free(ctx);
    return ok;
}

static inline size_t eval_total_tokens(const eval_seqs *s) {
    size_t n = 0;
    for (int i = 0; i < s->n; i++) n += (size_t)s->len[i];
    return n;
}

static inline int32_t eval_argmax(const float *x, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Top-1 agreement over positions whose reference margin is >= 1e-2. */
static inline double eval_top1(const float *got, const float *ref, size_t n_pos, int32_t nv,
                        int *counted) {
    int agree = 0, cnt = 0;
    for (size_t p = 0; p < n_pos; p++) {
        const float *r = ref + p * nv, *g = got + p * nv;
        int32_t best = eval_argmax(r, nv);
        float second = -INFINITY;
        for (int32_t i = 0; i < nv; i++)
            if (i != best && r[i] > second) second = r[i];
        if (r[best] - second < 1e-2f) continue;
        cnt++;
        agree += eval_argmax(g, nv) == best;
    }
    *counted = cnt;
    return cnt ? (double)agree / cnt : 1.0;
}

static inline halo_model *eval_load(const char *rel) {
    halo_model *m = NULL;
    halo_error err = {0};
    if (halo_model_load(halo_test_fixture_path(rel), NULL, &m, &err))
        fprintf(stderr, "%s: %s\n", rel, err.msg);
    return m;
}

#endif
