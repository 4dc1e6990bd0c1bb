/* A Qwen3.5 file with an MTP (nextn) head layer loads, binds it, and skips it:
 * tiny-qwen35-f16 rewritten with one more block marked by nextn_predict_layers
 * (a copy of the attention layer's weights plus the nextn.* tensors) gives the
 * same logits as the original. A second file whose MTP block lacks its
 * attention weights loads too (they are optional there). */
#include "harness.h"
#include "format/gguf.h"
#include "halo.h"

#include <math.h>

static const char *const COPIED[] = {
    "attn_norm.weight", "post_attention_norm.weight", "attn_q.weight",  "attn_k.weight",
    "attn_v.weight",    "attn_output.weight",         "attn_q_norm.weight", "attn_k_norm.weight",
    "ffn_gate.weight",  "ffn_up.weight",              "ffn_down.weight",
};
#define N_COPIED (sizeof COPIED / sizeof COPIED[0])

/* The file of `g` plus block `mtp` (copies of block `src`'s tensors, from index
 * `first_copied` of COPIED, and four nextn tensors of f32 ones). */
static bool write_mtp(const halo_gguf *g, const char *path, uint32_t mtp, uint32_t src,
                      size_t first_copied) {
    halo_error err = {0};
    halo_gguf_writer *w = NULL;
    if (halo_gguf_writer_open(path, &w, &err)) return false;
    bool ok = !halo_gguf_writer_copy_kvs(w, g, &err) &&
              !halo_gguf_writer_set_u32(w, "qwen35.block_count", mtp + 1, &err) &&
              !halo_gguf_writer_set_u32(w, "qwen35.nextn_predict_layers", 1, &err);
    const int64_t n = halo_gguf_n_tensors(g);
    const halo_gguf_tensor *extra[N_COPIED];
    char name[128];
    for (int64_t i = 0; i < n && ok; i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        ok = !halo_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, &err);
    }
    size_t n_extra = 0;
    for (size_t c = first_copied; c < N_COPIED && ok; c++) {
        snprintf(name, sizeof name, "blk.%u.%s", src, COPIED[c]);
        const halo_gguf_tensor *t = halo_gguf_find_tensor(g, name);
        ok = t != NULL;
        if (!ok) break;
        snprintf(name, sizeof name, "blk.%u.%s", mtp, COPIED[c]);
        ok = !halo_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, &err);
        extra[n_extra++] = t;
    }
    /* the MTP-only tensors: eh_proj [2 n_embd -> n_embd] and three norms */
    const int64_t e = 256, eh[2] = {2 * e, e}, vec[2] = {e, 1};
    const char *nextn[4] = {"nextn.eh_proj.weight", "nextn.enorm.weight", "nextn.hnorm.weight",
                            "nextn.shared_head_norm.weight"};
    for (int k = 0; k < 4 && ok; k++) {
        snprintf(name, sizeof name, "blk.%u.%s", mtp, nextn[k]);
        ok = !halo_gguf_writer_add_tensor(w, name, 0 /* F32 */, k == 0 ? 2 : 1, k == 0 ? eh : vec,
                                          &err);
    }
    for (int64_t i = 0; i < n && ok; i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        ok = !halo_gguf_writer_write_data(w, t->data, t->nbytes, &err);
    }
    for (size_t i = 0; i < n_extra && ok; i++)
        ok = !halo_gguf_writer_write_data(w, extra[i]->data, extra[i]->nbytes, &err);
    float *ones = malloc(sizeof(float) * 2 * e * e);
    for (int64_t i = 0; i < 2 * e * e; i++) ones[i] = 1.0f;
    for (int k = 0; k < 4 && ok; k++)
        ok = !halo_gguf_writer_write_data(w, ones, sizeof(float) * (size_t)(k == 0 ? 2 * e * e : e),
                                          &err);
    free(ones);
    if (!ok) {
        fprintf(stderr, "writing %s: %s\n", path, err.msg);
        halo_gguf_writer_abort(w);
        return false;
    }
    return halo_gguf_writer_close(w, &err) == 0;
}

/* Logits of `n` tokens in one batch (f32 cache). */
static bool logits(halo_model *m, const int32_t *tok, int32_t n, float *out) {
    halo_context_params p;
    halo_context_default_params(&p);
    p.n_ctx = 64, p.n_seq_max = 1, p.n_threads = 1, p.type_k = p.type_v = 0;
    halo_context *ctx = NULL;
    halo_error err = {0};
    if (halo_context_new(m, &p, &ctx, &err)) return false;
    int8_t want[16];
    for (int i = 0; i < n; i++) want[i] = 1;
    halo_batch b = {.n_tokens = n, .token = tok, .logits = want};
    bool ok = halo_decode(ctx, &b, &err) == 0;
    const int32_t nv = halo_model_n_vocab(m);
    for (int32_t i = 0; i < n && ok; i++)
        memcpy(out + (size_t)i * nv, halo_get_logits(ctx, i), sizeof(float) * (size_t)nv);
    halo_context_free(ctx);
    return ok;
}

int main(void) {
    halo_test_require_fixtures();
    halo_log_set_level(HALO_LOG_WARN);
    const char *orig = halo_test_fixture_path("models/tiny-qwen35-f16.gguf");
    halo_gguf *g = NULL;
    halo_error err = {0};
    CHECK(halo_gguf_open(orig, NULL, &g, &err) == 0);
    if (!g) return halo_test_finish("qwen35_mtp");
    char with_attn[512], without_attn[512];
    snprintf(with_attn, sizeof with_attn, "%s/mtp.gguf", halo_test_tmpdir());
    snprintf(without_attn, sizeof without_attn, "%s/mtp-no-attn.gguf", halo_test_tmpdir());
    CHECK(write_mtp(g, with_attn, 4, 3, 0));
    CHECK(write_mtp(g, without_attn, 4, 3, 8)); /* only the FFN copied */
    halo_gguf_close(g);

    const int32_t tok[12] = {40, 95, 284, 282, 590, 18, 270, 510, 842, 719, 57, 69};
    halo_model *m0 = NULL;
    CHECK(halo_model_load(orig, NULL, &m0, &err) == 0);
    if (!m0) return halo_test_finish("qwen35_mtp");
    const int32_t nv = halo_model_n_vocab(m0);
    float *want = malloc(sizeof(float) * 12 * nv), *got = malloc(sizeof(float) * 12 * nv);
    CHECK(logits(m0, tok, 12, want));
    const char *files[2] = {with_attn, without_attn};
    for (int f = 0; f < 2; f++) {
        halo_model *m = NULL;
        halo_error e2 = {0};
        CHECK_MSG(halo_model_load(files[f], NULL, &m, &e2) == 0, "%s", e2.msg);
        if (!m) continue;
        CHECK(logits(m, tok, 12, got));
        double diff = 0;
        for (int64_t i = 0; i < 12 * nv; i++) diff = fmax(diff, fabs(got[i] - want[i]));
        printf("MTP file %d: max |logit difference| vs the file without it: %g\n", f, diff);
        CHECK(diff == 0);
        halo_model_free(m);
    }
    free(want), free(got);
    halo_model_free(m0);
    return halo_test_finish("qwen35_mtp");
}
