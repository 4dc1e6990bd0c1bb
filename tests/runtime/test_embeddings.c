/* Embeddings mode: a batch's output rows are the hidden states after the output norm,
 * i.e. what the head multiplies, so head x embedding must give the logits of the same
 * tokens decoded normally; on every fixture architecture, the whole sequence in one
 * batch and in chunks (the recurrent state and the cache carry over), then logits again
 * after switching back. Pooling and normalization against direct sums. */
#include "../model/model_eval.h"
#include "kernels/kernels.h"
#include "model/arch.h"
#include "runtime/runtime.h"

static void check_model(const eval_model *em) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s.gguf", em->name);
    halo_model *m = eval_load(rel);
    CHECK(m != NULL);
    if (!m) return;
    eval_seqs seqs;
    CHECK(eval_read_ref_tokens(em->name, &seqs));
    const int32_t nv = halo_model_n_vocab(m), e = halo_model_n_embd(m);
    const int32_t len = seqs.len[0] < 64 ? seqs.len[0] : 64;
    const int32_t *tok = seqs.tokens[0];
    float *logits = malloc(sizeof(float) * (size_t)len * nv);
    float *emb = malloc(sizeof(float) * (size_t)len * e);
    float *head = malloc(sizeof(float) * (size_t)len * nv);
    halo_context_params p;
    eval_params(&p, 0 /* f32 cache */, 2);
    halo_context *ctx = NULL;
    halo_error err = {0};
    CHECK(halo_context_new(m, &p, &ctx, &err) == 0);
    if (!ctx || !logits || !emb || !head) goto done;
    CHECK(eval_decode_seq(ctx, 0, tok, len, len, logits));

    /* embeddings of every position, in chunks of 5, in sequence 1 */
    halo_set_embeddings(ctx, true);
    int32_t pos[64], sid[64];
    int8_t want[64];
    for (int32_t i0 = 0; i0 < len; i0 += 5) {
        int32_t n = len - i0 < 5 ? len - i0 : 5;
        for (int32_t t = 0; t < n; t++) pos[t] = i0 + t, sid[t] = 1, want[t] = 1;
        halo_batch b = {n, tok + i0, pos, sid, want};
        CHECK(halo_decode(ctx, &b, &err) == 0);
        CHECK(halo_get_logits(ctx, 0) == NULL); /* no logits in this mode */
        for (int32_t t = 0; t < n; t++) {
            const float *r = halo_get_embeddings(ctx, t);
            CHECK(r != NULL);
            if (r) memcpy(emb + (size_t)(i0 + t) * e, r, sizeof(float) * (size_t)e);
        }
    }
    /* the head applied to the embeddings gives the logits */
    const halo_weight *w = &m->output;
    halo_matmul_ref(w->type, w->data, w->row_stride, w->n_rows, w->n_cols, emb, len, head);
    double head_err = rel_rms(head, logits, (size_t)len * nv);
    printf("%-20s head(embeddings) vs logits relRMS %.2e\n", em->name, head_err);
    CHECK_MSG(head_err < 1e-5, "%s: %.3e", em->name, head_err);

    /* the last token only (the default output row), in one batch */
    halo_seq_clear(ctx, 1);
    int32_t s1[64];
    for (int32_t t = 0; t < len; t++) s1[t] = 1;
    halo_batch b = {len, tok, NULL, s1, NULL};
    CHECK(halo_decode(ctx, &b, &err) == 0);
    const float *last = halo_get_embeddings(ctx, len - 1);
    CHECK(last && rel_rms(last, emb + (size_t)(len - 1) * e, (size_t)e) < 1e-5);
    CHECK(halo_get_embeddings(ctx, 0) == NULL);

    /* back to logits: the next token of sequence 0 as a fresh evaluation gives it */
    halo_set_embeddings(ctx, false);
    float *again = malloc(sizeof(float) * (size_t)len * nv);
    CHECK(again && eval_decode_seq(ctx, 0, tok, len, 7, again));
    if (again) CHECK(rel_rms(again, logits, (size_t)len * nv) < 1e-5);
    CHECK(halo_get_embeddings(ctx, len - 1) == NULL);
    free(again);
done:
    halo_context_free(ctx);
    eval_seqs_free(&seqs);
    free(logits);
    free(emb);
    free(head);
    halo_model_free(m);
}

static void check_pooling(void) {
    const float rows[3][4] = {{1, 2, 3, 4}, {-1, 0, 1, 2}, {3, 3, -3, 0}};
    halo_error err = {0};
    halo_embd_pool p;
    float out[4];
    CHECK(halo_embd_pool_init(&p, HALO_POOLING_NONE, 4, &err) == HALO_ERR_ARG);
    const halo_pooling kinds[3] = {HALO_POOLING_MEAN, HALO_POOLING_CLS, HALO_POOLING_LAST};
    const float want[3][4] = {{1, 5.0f / 3, 1.0f / 3, 2}, {1, 2, 3, 4}, {3, 3, -3, 0}};
    for (int k = 0; k < 3; k++) {
        CHECK(halo_embd_pool_init(&p, kinds[k], 4, &err) == 0);
        for (int r = 0; r < 3; r++) halo_embd_pool_add(&p, rows[r]);
        halo_embd_pool_result(&p, out);
        for (int i = 0; i < 4; i++) CHECK(fabsf(out[i] - want[k][i]) < 1e-6f);
        halo_embd_pool_free(&p);
    }
    const float v[4] = {3, -4, 0, 0};
    halo_embd_normalize(v, out, 4, 2);
    CHECK(fabsf(out[0] - 0.6f) < 1e-6f && fabsf(out[1] + 0.8f) < 1e-6f);
    halo_embd_normalize(v, out, 4, 1);
    CHECK(fabsf(out[0] - 3.0f / 7) < 1e-6f);
    halo_embd_normalize(v, out, 4, 0);
    CHECK(fabsf(out[1] + 32760.0f) < 1e-2f);
    halo_embd_normalize(v, out, 4, -1);
    CHECK(out[0] == 3 && out[1] == -4);
    const float z[2] = {0, 0};
    halo_embd_normalize(z, out, 2, 2);
    CHECK(out[0] == 0 && out[1] == 0);
    CHECK(halo_pooling_from_name("last") == HALO_POOLING_LAST);
    CHECK(halo_pooling_from_name("x") == -1);
    CHECK(!strcmp(halo_pooling_name(HALO_POOLING_CLS), "cls"));
}

int main(void) {
    check_pooling();
    halo_test_require_fixtures();
    for (size_t i = 0; i < EVAL_N_MODELS; i++) check_model(&EVAL_MODELS[i]);
    return halo_test_finish("runtime/embeddings");
}
