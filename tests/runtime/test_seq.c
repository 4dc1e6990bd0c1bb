/* Sequence semantics of a context: seq_copy shares pages and copies on write,
 * truncate and checkpoint-restore roll back, clear frees, bad batches are
 * rejected without changing anything, and which logits a batch returns. Every
 * result is compared with the same tokens evaluated fresh (f32 cache). */
#include "../model/model_eval.h"
#include "runtime/runtime.h"

#define NV_MAX 1024

static halo_model *model;
static int32_t nv;

static halo_context *new_ctx(uint32_t n_ctx, uint32_t n_seq) {
    halo_context_params p;
    eval_params(&p, 0 /* f32 */, n_seq);
    p.n_ctx = n_ctx;
    halo_context *ctx = NULL;
    halo_error err = {0};
    if (halo_context_new(model, &p, &ctx, &err)) fprintf(stderr, "context: %s\n", err.msg);
    return ctx;
}

/* Feed tokens to a sequence (continuing it); logits of the last into out. */
static int feed(halo_context *ctx, int32_t seq, const int32_t *tok, int32_t n, float *out) {
    int32_t pos[256], sid[256];
    for (int32_t i = 0; i < n; i++) {
        pos[i] = halo_seq_length(ctx, seq) + i;
        sid[i] = seq;
    }
    halo_batch b = {n, tok, pos, sid, NULL};
    halo_error err = {0};
    int rc = halo_decode(ctx, &b, &err);
    if (rc) return rc;
    if (out) memcpy(out, halo_get_logits(ctx, n - 1), sizeof(float) * nv);
    return 0;
}

/* Logits of the last of tok[0..n) evaluated from scratch. */
static void fresh(const int32_t *tok, int32_t n, float *out) {
    halo_context *ctx = new_ctx(256, 1);
    CHECK(ctx && feed(ctx, 0, tok, n, out) == 0);
    halo_context_free(ctx);
}

static bool same(const float *a, const float *b) { return rel_rms(a, b, (size_t)nv) < 1e-5; }

int main(void) {
    halo_test_require_fixtures();
    model = eval_load("models/tiny-llama-f16.gguf");
    CHECK(model != NULL);
    if (!model) return halo_test_finish("runtime/seq");
    nv = halo_model_n_vocab(model);
    int32_t tok[120];
    for (int i = 0; i < 120; i++) tok[i] = (i * 37 + 11) % nv;
    int32_t alt[120];
    for (int i = 0; i < 120; i++) alt[i] = (i * 53 + 5) % nv;
    float got[NV_MAX], want[NV_MAX];
    halo_error err = {0};

    /* ---- copy: a 40-token prompt (one full page, one partial) shared by seq 1 */
    halo_context *ctx = new_ctx(256, 3);
    CHECK(ctx != NULL);
    if (!ctx) return halo_test_finish("runtime/seq");
    CHECK(feed(ctx, 0, tok, 40, NULL) == 0);
    int32_t free_before = ctx->kv.n_free;
    CHECK(halo_seq_copy(ctx, 0, 1, &err) == 0);
    CHECK(halo_seq_length(ctx, 1) == 40);
    CHECK(ctx->kv.n_free == free_before); /* shared, nothing copied yet */
    /* seq 1 continues differently: its write copies the partial page only */
    CHECK(feed(ctx, 1, alt, 5, got) == 0);
    CHECK(ctx->kv.n_free == free_before - 1);
    int32_t ref_seq[80];
    memcpy(ref_seq, tok, sizeof(int32_t) * 40);
    memcpy(ref_seq + 40, alt, sizeof(int32_t) * 5);
    fresh(ref_seq, 45, want);
    CHECK_MSG(same(got, want), "copied sequence continues as a fresh one");
    /* seq 0 continues with its own tokens, unaffected by seq 1's writes */
    CHECK(feed(ctx, 0, tok + 40, 30, got) == 0);
    fresh(tok, 70, want);
    CHECK_MSG(same(got, want), "source sequence unaffected by the copy's writes");
    /* copy onto a non-empty sequence clears it first; copy onto itself is a no-op */
    CHECK(halo_seq_copy(ctx, 0, 1, &err) == 0 && halo_seq_length(ctx, 1) == 70);
    CHECK(halo_seq_copy(ctx, 1, 1, &err) == 0 && halo_seq_length(ctx, 1) == 70);
    CHECK(halo_seq_copy(ctx, 0, 3, &err) == HALO_ERR_ARG);
    CHECK(halo_seq_copy(ctx, -1, 0, &err) == HALO_ERR_ARG);

    /* ---- truncate: drop 30 positions of seq 1 (and share-break on rewrite) */
    CHECK(halo_seq_truncate(ctx, 1, 40, &err) == 0 && halo_seq_length(ctx, 1) == 40);
    CHECK(feed(ctx, 1, alt, 5, got) == 0);
    fresh(ref_seq, 45, want);
    CHECK_MSG(same(got, want), "truncated sequence continues as a fresh one");
    CHECK(feed(ctx, 0, tok + 70, 1, got) == 0); /* seq 0 still intact */
    fresh(tok, 71, want);
    CHECK(same(got, want));
    CHECK(halo_seq_truncate(ctx, 1, 46, &err) == HALO_ERR_ARG);
    CHECK(halo_seq_truncate(ctx, 1, -1, &err) == HALO_ERR_ARG);
    CHECK(halo_seq_truncate(ctx, 1, 45, &err) == 0); /* no-op */
    CHECK(halo_seq_truncate(ctx, 1, 0, &err) == 0 && halo_seq_length(ctx, 1) == 0);

    /* ---- checkpoints: no recurrent state here; load restores the position */
    CHECK(halo_seq_state_size(ctx) == 0);
    CHECK(halo_seq_state_save(ctx, 0, NULL, &err) == 0);
    CHECK(halo_seq_state_load(ctx, 0, NULL, 20, &err) == 0 && halo_seq_length(ctx, 0) == 20);
    CHECK(feed(ctx, 0, alt, 3, got) == 0);
    memcpy(ref_seq, tok, sizeof(int32_t) * 20);
    memcpy(ref_seq + 20, alt, sizeof(int32_t) * 3);
    fresh(ref_seq, 23, want);
    CHECK(same(got, want));
    CHECK(halo_seq_state_load(ctx, 0, NULL, 24, &err) == HALO_ERR_ARG);

    /* ---- KV in host memory: seq 0's 23 positions saved; 20 of them loaded into seq 2, all
     * into seq 1; each continues as a fresh sequence would */
    CHECK(halo_seq_kv_size(ctx, 0) == 0 && halo_seq_kv_size(ctx, 23) > 0);
    size_t kvb = halo_seq_kv_size(ctx, 23);
    char *kvbuf = malloc(kvb);
    CHECK(kvbuf && halo_seq_kv_save(ctx, 0, 23, kvbuf, &err) == 0);
    CHECK(halo_seq_kv_save(ctx, 0, 24, kvbuf, &err) == HALO_ERR_ARG);
    CHECK(halo_seq_kv_load(ctx, 2, kvbuf, 23, 24, &err) == HALO_ERR_ARG);
    CHECK(halo_seq_kv_load(ctx, 2, kvbuf, 23, 20, &err) == 0 && halo_seq_length(ctx, 2) == 20);
    CHECK(feed(ctx, 2, alt + 10, 4, got) == 0);
    int32_t ref_kv[40];
    memcpy(ref_kv, ref_seq, sizeof(int32_t) * 20);
    memcpy(ref_kv + 20, alt + 10, sizeof(int32_t) * 4);
    fresh(ref_kv, 24, want);
    CHECK_MSG(same(got, want), "KV loaded from host memory (a prefix) continues as a fresh one");
    CHECK(halo_seq_kv_load(ctx, 1, kvbuf, 23, 23, &err) == 0 && halo_seq_length(ctx, 1) == 23);
    CHECK(feed(ctx, 1, tok + 50, 2, got) == 0);
    memcpy(ref_kv, ref_seq, sizeof(int32_t) * 23);
    memcpy(ref_kv + 23, tok + 50, sizeof(int32_t) * 2);
    fresh(ref_kv, 25, want);
    CHECK_MSG(same(got, want), "KV loaded from host memory continues as a fresh one");

    /* ---- clear gives every page back */
    halo_seq_clear(ctx, 0);
    halo_seq_clear(ctx, 1);
    halo_seq_clear(ctx, 2);
    halo_seq_clear(ctx, 7); /* out of range: ignored */
    CHECK(ctx->kv.n_free == ctx->kv.n_pages);
    CHECK(halo_seq_length(ctx, 0) == 0 && halo_seq_length(ctx, 9) == -1);

    /* ---- bad batches change nothing */
    CHECK(feed(ctx, 0, tok, 10, want) == 0);
    const float *last = halo_get_logits(ctx, -1);
    CHECK(last != NULL && same(last, want));
    free_before = ctx->kv.n_free;
    {
        int32_t t2[3] = {1, 2, 3}, p2[3] = {10, 11, 12}, s2[3] = {0, 0, 0};
        halo_batch b = {3, t2, p2, s2, NULL};
        t2[1] = nv; /* token out of range */
        CHECK(halo_decode(ctx, &b, &err) == HALO_ERR_ARG);
        t2[1] = 2;
        s2[2] = 3; /* sequence out of range */
        CHECK(halo_decode(ctx, &b, &err) == HALO_ERR_ARG);
        s2[2] = 0;
        p2[2] = 13; /* a gap */
        CHECK(halo_decode(ctx, &b, &err) == HALO_ERR_ARG);
        p2[2] = 11; /* a repeat */
        CHECK(halo_decode(ctx, &b, &err) == HALO_ERR_ARG);
        p2[0] = 9; /* does not continue the sequence */
        p2[2] = 11;
        CHECK(halo_decode(ctx, &b, &err) == HALO_ERR_ARG);
        b.n_tokens = 0;
        CHECK(halo_decode(ctx, &b, &err) == HALO_ERR_ARG);
        b.n_tokens = 257; /* over n_batch */
        CHECK(halo_decode(ctx, &b, &err) == HALO_ERR_ARG);
        CHECK(halo_decode(ctx, NULL, &err) == HALO_ERR_ARG);
    }
    CHECK(halo_seq_length(ctx, 0) == 10 && ctx->kv.n_free == free_before);
    CHECK(halo_get_logits(ctx, -1) != NULL && same(halo_get_logits(ctx, -1), want));
    CHECK(feed(ctx, 0, tok + 10, 5, got) == 0);
    fresh(tok, 15, want);
    CHECK_MSG(same(got, want), "rejected batches left the sequence as it was");

    /* ---- a full cache: rejected, nothing changed */
    halo_context *small = new_ctx(64, 2); /* 2 pages */
    CHECK(small && feed(small, 0, tok, 40, NULL) == 0);
    CHECK(feed(small, 1, tok, 30, NULL) == HALO_ERR_RANGE);
    CHECK(halo_seq_length(small, 1) == 0 && small->kv.n_free == 0);
    CHECK(feed(small, 0, tok + 40, 24, got) == 0); /* fills the 2 pages exactly */
    CHECK(feed(small, 0, tok + 64, 1, NULL) == HALO_ERR_RANGE);
    fresh(tok, 64, want);
    CHECK(same(got, want));
    CHECK(halo_seq_kv_load(small, 1, kvbuf, 23, 23, &err) == HALO_ERR_RANGE); /* no free page */
    CHECK(halo_seq_length(small, 1) == 0 && small->kv.n_free == 0);
    free(kvbuf);
    halo_context_free(small);

    /* ---- which logits: NULL flags = the last token only; NULL pos/seq continue seq 0 */
    halo_seq_clear(ctx, 0);
    halo_batch b = {4, tok, NULL, NULL, NULL};
    CHECK(halo_decode(ctx, &b, &err) == 0 && halo_seq_length(ctx, 0) == 4);
    CHECK(halo_get_logits(ctx, 0) == NULL && halo_get_logits(ctx, 3) != NULL);
    CHECK(halo_get_logits(ctx, 4) == NULL && halo_get_logits(ctx, -5) == NULL);
    fresh(tok, 4, want);
    CHECK(same(halo_get_logits(ctx, 3), want));
    int8_t flags[4] = {0, 1, 0, 0};
    b = (halo_batch){4, tok + 4, NULL, NULL, flags};
    CHECK(halo_decode(ctx, &b, &err) == 0);
    CHECK(halo_get_logits(ctx, 3) == NULL && halo_get_logits(ctx, 1) != NULL);
    fresh(tok, 6, want);
    CHECK(same(halo_get_logits(ctx, 1), want));
    halo_context_free(ctx);

    /* ---- a quantized cache's rotation: on by default (head dim 64: runs of 64 for K and
     * V), off for float caches and with HALO_ATTN_ROT_DISABLE=1; a prompt fed whole or in
     * pieces gives the same logits (each row turned once, before it is stored) */
    const int kv_types[3] = {HALO_TYPE_Q4_0, HALO_TYPE_IQ4_NL, HALO_TYPE_F16};
    for (int i = 0; i < 3; i++)
        for (int off = 0; off < 2; off++) {
            if (off) setenv("HALO_ATTN_ROT_DISABLE", "1", 1);
            halo_context_params p;
            eval_params(&p, kv_types[i], 1);
            halo_context *q = NULL;
            CHECK(halo_context_new(model, &p, &q, &err) == 0);
            unsetenv("HALO_ATTN_ROT_DISABLE");
            if (!q) continue;
            const int want_rot = off || kv_types[i] == HALO_TYPE_F16 ? 0 : 64;
            CHECK(q->kv.rot_k == want_rot && q->kv.rot_v == want_rot);
            CHECK(feed(q, 0, tok, 30, want) == 0);
            halo_seq_clear(q, 0);
            CHECK(feed(q, 0, tok, 17, NULL) == 0 && feed(q, 0, tok + 17, 13, got) == 0);
            CHECK_MSG(same(got, want), "%s cache, rotation %s: a prompt in two pieces",
                      halo_type_name(kv_types[i]), off ? "off" : "on");
            halo_context_free(q);
        }

    halo_model_free(model);
    return halo_test_finish("runtime/seq");
}
