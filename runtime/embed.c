/*
 * Embeddings: the mode switch of a context (the forward passes' output op gives
 * the normed hidden states instead of running the head: runtime/context.c and the
 * backends), pooling a sequence's rows as they arrive, and llama.cpp's
 * normalizations of the result.
 */
#include "model/arch.h"
#include "runtime/runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const pooling_names[] = {"none", "mean", "cls", "last", "rank"};

halo_pooling halo_model_pooling(const halo_model *model) {
    return (halo_pooling)model->hp.pooling_type;
}

const char *halo_pooling_name(halo_pooling p) {
    return (unsigned)p < sizeof pooling_names / sizeof *pooling_names ? pooling_names[p] : "?";
}

int halo_pooling_from_name(const char *name) {
    for (int i = 0; i < (int)(sizeof pooling_names / sizeof *pooling_names); i++)
        if (name && !strcmp(name, pooling_names[i])) return i;
    return -1;
}

void halo_set_embeddings(halo_context *ctx, bool on) { ctx->embeddings = on; }

int halo_embd_pool_init(halo_embd_pool *p, halo_pooling pooling, int32_t n_embd, halo_error *err) {
    memset(p, 0, sizeof *p);
    if (pooling != HALO_POOLING_MEAN && pooling != HALO_POOLING_CLS &&
        pooling != HALO_POOLING_LAST)
        return halo_error_set(err, HALO_ERR_ARG, "pooling '%s' gives no single vector",
                              halo_pooling_name(pooling));
    p->pooling = pooling;
    p->n_embd = n_embd;
    p->acc = calloc(n_embd > 0 ? (size_t)n_embd : 1, sizeof(double));
    if (!p->acc) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory for an embedding");
    return 0;
}

void halo_embd_pool_add(halo_embd_pool *p, const float *row) {
    const bool first = p->n_rows++ == 0;
    switch (p->pooling) {
    case HALO_POOLING_MEAN:
        for (int32_t i = 0; i < p->n_embd; i++) p->acc[i] += row[i];
        break;
    case HALO_POOLING_CLS:
        if (first)
            for (int32_t i = 0; i < p->n_embd; i++) p->acc[i] = row[i];
        break;
    default: /* LAST */
        for (int32_t i = 0; i < p->n_embd; i++) p->acc[i] = row[i];
        break;
    }
}

void halo_embd_pool_result(const halo_embd_pool *p, float *out) {
    const double scale = p->pooling == HALO_POOLING_MEAN && p->n_rows ? 1.0 / (double)p->n_rows : 1.0;
    for (int32_t i = 0; i < p->n_embd; i++) out[i] = (float)(p->acc[i] * scale);
}

void halo_embd_pool_free(halo_embd_pool *p) {
    free(p->acc);
    p->acc = NULL;
}

void halo_embd_normalize(const float *in, float *out, int64_t n, int mode) {
    double norm = 1.0;
    if (mode == 0) { /* scaled so that the largest magnitude is 32760 */
        double m = 0;
        for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(in[i]));
        norm = m / 32760.0;
    } else if (mode == 2) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += (double)in[i] * in[i];
        norm = sqrt(s);
    } else if (mode > 0) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += pow(fabs(in[i]), mode);
        norm = pow(s, 1.0 / mode);
    }
    const double k = norm > 0 ? 1.0 / norm : 0.0;
    for (int64_t i = 0; i < n; i++) out[i] = (float)(in[i] * k);
}
