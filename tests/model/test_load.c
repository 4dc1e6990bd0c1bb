/* halo_model_load: the accessors and description in every load mode, and
 * clear errors for files whose tensors are missing, mis-shaped or of the wrong
 * type, or whose architecture halo does not run (made by rewriting a fixture
 * through the GGUF writer). */
#include "format/gguf.h"
#include "harness.h"
#include "halo.h"
#include "quant/quant.h"

#include <stdio.h>
#include <string.h>

typedef struct edit {
    const char *drop;       /* tensor left out */
    const char *reshape;    /* tensor whose ne[0] and ne[1] are swapped */
    const char *arch;       /* new general.architecture */
    const char *retype;     /* F32 vector written as F16 */
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
    for (int64_t i = 0; ok && i < halo_gguf_n_tensors(g); i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        if (e->drop && !strcmp(t->name, e->drop)) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        int type = t->type;
        if (e->reshape && !strcmp(t->name, e->reshape)) ne[0] = t->ne[1], ne[1] = t->ne[0];
        if (e->retype && !strcmp(t->name, e->retype)) type = HALO_TYPE_F16;
        ok = !halo_gguf_writer_add_tensor(w, t->name, type, t->n_dims, ne, &err);
    }
    for (int64_t i = 0; ok && i < halo_gguf_n_tensors(g); i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        if (e->drop && !strcmp(t->name, e->drop)) continue;
        size_t n = (size_t)t->nbytes;
        if (e->retype && !strcmp(t->name, e->retype)) n /= 2; /* first half: f16-sized */
        ok = !halo_gguf_writer_write_data(w, t->data, n, &err);
    }
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
    printf("  %-28s -> %s\n", e->drop ? e->drop : e->reshape ? e->reshape : e->retype ? e->retype : e->arch, err.msg);
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
