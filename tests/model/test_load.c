/* halo_model_load: the accessors and description in every load mode, and
 * clear errors for files whose tensors are missing, mis-shaped or of the wrong
 * type, or whose architecture halo does not run (made by rewriting a fixture
 * through the GGUF writer). */
#include "format/gguf.h"
#include "harness.h"
#include "halo.h"
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct edit {
    const char *drop;       /* tensor left out */
    const char *reshape;    /* tensor whose ne[0] and ne[1] are swapped */
    const char *arch;       /* new general.architecture */
    const char *retype;     /* F32 vector written as F16 */
    const char *scaling;    /* llama.rope.scaling.type, with `factor` */
    float factor;
    bool rope_freqs;        /* add rope_freqs.weight, every factor 2 */
} edit;

/* Copy src to path with one edit. */
static bool rewrite(const char *src, const char *path, const edit *e) {
    halo_error err = {0};
    halo_gguf *g = NULL;
    halo_gguf_writer *w = NULL;
    if (halo_gguf_open(src, NULL, &g, &err) || halo_gguf_writer_open(path, &w, &err) ||
        halo_gguf_writer_copy_kvs(w, g, &err)) {
        fprintf(stderr, "rewrite: %s\n", err.msg);
        halo_gguf_close(g);
        if (w) halo_gguf_writer_abort(w);
        return false;
    }
    bool ok = true;
    if (e->arch) ok = !halo_gguf_writer_set_str(w, "general.architecture", e->arch, &err);
    if (ok && e->scaling)
        ok = !halo_gguf_writer_set_str(w, "llama.rope.scaling.type", e->scaling, &err) &&
             !halo_gguf_writer_set_f32(w, "llama.rope.scaling.factor", e->factor, &err);
    float twos[32];
    for (int i = 0; i < 32; i++) twos[i] = 2.0f;

    for (int64_t i = 0; ok && i < halo_gguf_n_tensors(g); i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        if (e->drop && !strcmp(t->name, e->drop)) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        int type = t->type;
        if (e->reshape && !strcmp(t->name, e->reshape)) ne[0] = t->ne[1], ne[1] = t->ne[0];
        if (e->retype && !strcmp(t->name, e->retype)) type = HALO_TYPE_F16;
        ok = !halo_gguf_writer_add_tensor(w, t->name, type, t->n_dims, ne, &err);
    }
    if (ok && e->rope_freqs) /* declared last, written last */
        ok = !halo_gguf_writer_add_tensor(w, "rope_freqs.weight", HALO_TYPE_F32, 1,
                                          (int64_t[4]){32, 1, 1, 1}, &err);
    for (int64_t i = 0; ok && i < halo_gguf_n_tensors(g); i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        if (e->drop && !strcmp(t->name, e->drop)) continue;
        size_t n = (size_t)t->nbytes;
        if (e->retype && !strcmp(t->name, e->retype)) n /= 2; /* first half: f16-sized */
        ok = !halo_gguf_writer_write_data(w, t->data, n, &err);
    }
    if (ok && e->rope_freqs) ok = !halo_gguf_writer_write_data(w, twos, sizeof twos, &err);
    halo_gguf_close(g);
    if (!ok) {
        fprintf(stderr, "rewrite: %s\n", err.msg);
        halo_gguf_writer_abort(w);
        return false;
    }
    return !halo_gguf_writer_close(w, &err);
}

static void expect_error(const char *src, const edit *e, int status, const char *needle) {
    char path[512];
    snprintf(path, sizeof path, "%s/broken.gguf", halo_test_tmpdir());
    CHECK(rewrite(src, path, e));
    halo_model *m = NULL;
    halo_error err = {0};
    int rc = halo_model_load(path, NULL, &m, &err);
    CHECK_MSG(rc == status, "rc %d, expected %d (%s)", rc, status, err.msg);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    CHECK(m == NULL);
    printf("  %-28s -> %s\n",
           e->drop      ? e->drop
           : e->reshape ? e->reshape
           : e->retype  ? e->retype
           : e->arch    ? e->arch
                        : e->scaling,
           err.msg);
}

int main(void) {
    halo_test_require_fixtures();
    struct {
        const char *file, *arch, *desc;
        int32_t n_vocab;
    } cases[] = {
        {"models/tiny-llama-f16.gguf", "llama", "llama 1.7M F16", 1024},
        {"models/tiny-qwen3-f16.gguf", "qwen3", "qwen3 1.4M F16", 1024},
        {"models/tiny-qwen3moe-f16.gguf", "qwen3moe", "qwen3moe 2.4M.A1.7M F16", 1024},
        {"quant/tiny-qwen3-q4_k.gguf", "qwen3", "qwen3 1.4M Q4_K - Medium", 1024},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int mode = 0; mode < 3; mode++) {
            halo_load_options o = {.mode = mode == 1 ? HALO_LOAD_READ : HALO_LOAD_MMAP,
                                   .mlock = mode == 2};
            halo_model *m = NULL;
            halo_error err = {0};
            int rc = halo_model_load(halo_test_fixture_path(cases[c].file), &o, &m, &err);
            CHECK_MSG(rc == 0, "%s: %s", cases[c].file, err.msg);
            if (rc) continue;
            CHECK(!strcmp(halo_model_arch_name(m), cases[c].arch));
            CHECK_MSG(!strcmp(halo_model_desc(m), cases[c].desc), "desc '%s'", halo_model_desc(m));
            CHECK(halo_model_n_vocab(m) == cases[c].n_vocab);
            CHECK(halo_model_n_embd(m) == 256);
            CHECK(halo_model_n_ctx_train(m) == 4096);
            CHECK(halo_model_n_params(m) > 1000000 && halo_model_size_bytes(m) > 100000);
            CHECK(halo_model_tokenizer(m) != NULL);
            if (mode == 0) printf("%s: %s\n", cases[c].file, halo_model_desc(m));
            halo_model_free(m);
        }

    const char *llama = halo_test_fixture_path("models/tiny-llama-f16.gguf");
    expect_error(llama, &(edit){.drop = "blk.1.ffn_up.weight"}, HALO_ERR_FORMAT,
                 "'blk.1.ffn_up.weight' is missing");
    expect_error(llama, &(edit){.drop = "output_norm.weight"}, HALO_ERR_FORMAT, "output_norm");
    expect_error(llama, &(edit){.reshape = "blk.0.attn_k.weight"}, HALO_ERR_FORMAT,
                 "'blk.0.attn_k.weight' has shape [128, 256");
    expect_error(llama, &(edit){.retype = "blk.0.attn_norm.weight"}, HALO_ERR_UNSUPPORTED,
                 "expects f32");
    expect_error(llama, &(edit){.arch = "gpt2"}, HALO_ERR_UNSUPPORTED, "gpt2");
    const char *qwen3 = halo_test_fixture_path("models/tiny-qwen3-f16.gguf");
    expect_error(qwen3, &(edit){.drop = "blk.0.attn_q_norm.weight"}, HALO_ERR_FORMAT,
                 "attn_q_norm");
    expect_error(llama, &(edit){.scaling = "yarn", .factor = 4}, HALO_ERR_UNSUPPORTED, "yarn");

    /* RoPE adjustments: linear scaling by 2 and rope_freqs factors of 2 both halve
     * every frequency, so they give the same logits, unlike the plain file */
    float plain[1024], linear[1024], freqs[1024];
    const edit rope_edits[3] = {{.scaling = "none", .factor = 1},
                                {.scaling = "linear", .factor = 2},
                                {.rope_freqs = true}};
    float *outs[3] = {plain, linear, freqs};
    for (int r = 0; r < 3; r++) {
        char rp[512];
        snprintf(rp, sizeof rp, "%s/rope%d.gguf", halo_test_tmpdir(), r);
        CHECK(rewrite(llama, rp, &rope_edits[r]));
        halo_model *rm = NULL;
        halo_context *ctx = NULL;
        halo_error e2 = {0};
        int32_t tok[40];
        for (int i = 0; i < 40; i++) tok[i] = (i * 29 + 3) % 1024;
        halo_context_params cp;
        halo_context_default_params(&cp);
        cp.n_ctx = 64;
        cp.n_threads = 1;
        cp.type_k = cp.type_v = HALO_TYPE_F32;
        halo_batch b = {40, tok, NULL, NULL, NULL};
        bool ok = !halo_model_load(rp, NULL, &rm, &e2) && !halo_context_new(rm, &cp, &ctx, &e2) &&
                  !halo_decode(ctx, &b, &e2);
        CHECK_MSG(ok, "rope edit %d: %s", r, e2.msg);
        if (ok) memcpy(outs[r], halo_get_logits(ctx, -1), sizeof plain);
        halo_context_free(ctx);
        halo_model_free(rm);
    }
    double d_lf = 0, d_pl = 0;
    for (int i = 0; i < 1024; i++) {
        d_lf = fmax(d_lf, fabs((double)linear[i] - freqs[i]));
        d_pl = fmax(d_pl, fabs((double)linear[i] - plain[i]));
    }
    printf("  rope: linear x2 vs rope_freqs 2: max diff %.3g; vs plain: %.3g\n", d_lf, d_pl);
    CHECK(d_lf < 1e-5);
    CHECK(d_pl > 1e-3);

    /* a tied model loads without output.weight; llama without it ties too */
    char path[512];
    snprintf(path, sizeof path, "%s/tied.gguf", halo_test_tmpdir());
    CHECK(rewrite(llama, path, &(edit){.drop = "output.weight"}));
    halo_model *m = NULL;
    halo_error err = {0};
    CHECK(halo_model_load(path, NULL, &m, &err) == 0);
    halo_model_free(m);
    CHECK(halo_model_load("/nonexistent/model.gguf", NULL, &m, &err) == HALO_ERR_IO && m == NULL);
    return halo_test_finish("model/load");
}
