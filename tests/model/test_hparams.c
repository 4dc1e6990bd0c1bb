/*
 * Hyper-parameters and weight statistics of every fixture model, checked
 * against their Hugging Face configs (fixtures hf/) and tensor tables; and
 * broken metadata (written with halo's GGUF writer) rejected with one message.
 */
#define _GNU_SOURCE
#include "format/gguf.h"
#include "harness.h"
#include "model/model.h"
#include "quant/quant.h"

#include <math.h>

static halo_gguf *open_model(const char *name) {
    halo_error err = {0};
    halo_gguf *g = NULL;
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", name);
    if (halo_gguf_open(halo_test_fixture_path(rel), NULL, &g, &err) != 0) {
        CHECK_MSG(0, "open %s: %s", name, err.msg);
        return NULL;
    }
    return g;
}

static bool load(const char *name, halo_hparams *hp, halo_model_stats *st) {
    halo_gguf *g = open_model(name);
    if (!g) return false;
    halo_error err = {0};
    int rc = halo_hparams_load(g, hp, &err);
    CHECK_MSG(rc == 0, "%s: %s", name, err.msg);
    if (rc == 0) {
        rc = halo_model_stats_compute(g, hp, st, &err);
        CHECK_MSG(rc == 0, "%s: %s", name, err.msg);
    }
    /* the layer kinds agree with the tensors of each layer */
    for (uint32_t i = 0; rc == 0 && i < hp->n_layer && halo_gguf_n_tensors(g) > 0; i++) {
        char q[64], conv[64];
        snprintf(q, sizeof q, "blk.%u.attn_q.weight", i);
        snprintf(conv, sizeof conv, "blk.%u.ssm_conv1d.weight", i);
        bool attn = halo_gguf_find_tensor(g, q) != NULL;
        bool delta = halo_gguf_find_tensor(g, conv) != NULL;
        CHECK_MSG(attn == (hp->layer_kind[i] == HALO_LAYER_ATTENTION), "%s layer %u", name, i);
        CHECK_MSG(delta == (hp->layer_kind[i] == HALO_LAYER_DELTANET), "%s layer %u", name, i);
    }
    halo_gguf_close(g);
    return rc == 0;
}

static void test_kdoc_moe(void) {
    halo_hparams hp;
    halo_model_stats st;
    if (!load("kdoc-moe-bf16.gguf", &hp, &st)) return;
    CHECK(hp.arch == HALO_ARCH_QWEN35MOE);
    CHECK(strcmp(hp.arch_name, "qwen35moe") == 0);
    CHECK(hp.n_layer == 8 && hp.n_nextn == 0);
    CHECK(hp.n_embd == 256 && hp.n_vocab == 8192);
    CHECK(hp.n_head == 2 && hp.n_head_kv[0] == 1 && hp.n_head_kv[7] == 1);
    CHECK(hp.head_dim_k == 256 && hp.head_dim_v == 256);
    CHECK(hp.n_expert == 8 && hp.n_expert_used == 2);
    CHECK(hp.n_ff_exp == 256 && hp.n_ff_shexp == 256);
    CHECK(hp.n_ctx_train == 32768);
    CHECK(hp.n_rot == 64); /* partial RoPE: 25 % of 256 */
    CHECK(hp.has_rope_sections && hp.rope_sections[0] == 11 && hp.rope_sections[1] == 11 &&
          hp.rope_sections[2] == 10 && hp.rope_sections[3] == 0);
    CHECK(fabsf(hp.rope_freq_base - 1e7f) < 1.0f);
    CHECK(fabsf(hp.rms_eps - 1e-6f) < 1e-9f);
    /* DeltaNet: 2 key heads and 4 value heads of dim 128, conv kernel 4 */
    CHECK(hp.ssm_conv_kernel == 4);
    CHECK(halo_hparams_deltanet_key_heads(&hp) == 2);
    CHECK(halo_hparams_deltanet_value_heads(&hp) == 4);
    CHECK(halo_hparams_deltanet_key_dim(&hp) == 128);
    CHECK(halo_hparams_deltanet_value_dim(&hp) == 128);
    CHECK(halo_hparams_deltanet_conv_channels(&hp) == 1024); /* blk.0.ssm_conv1d: [4, 1024] */
    CHECK(hp.full_attention_interval == 4);
    /* config.json layer_types: linear x3, full, linear x3, full */
    for (uint32_t i = 0; i < 8; i++)
        CHECK_MSG(hp.layer_kind[i] == (i == 3 || i == 7 ? HALO_LAYER_ATTENTION : HALO_LAYER_DELTANET),
                  "layer %u", i);
    CHECK(hp.n_attention_layers == 2 && hp.n_deltanet_layers == 6);

    CHECK(st.n_tensors == 148);
    /* "20.5 M parameters" (fixtures README) */
    CHECK_MSG(st.n_params > 20400000 && st.n_params < 20600000, "%llu",
              (unsigned long long)st.n_params);
    /* 8 layers x 3 expert tensors of 256 x 256 x 8 */
    CHECK(st.n_params_expert == 8ull * 3 * 256 * 256 * 8);
    CHECK(st.n_params_active == st.n_params - st.n_params_expert + st.n_params_expert / 4);
    CHECK(st.by_type[HALO_TYPE_BF16].n_tensors + st.by_type[HALO_TYPE_F32].n_tensors == 148);
    CHECK(st.by_type[HALO_TYPE_BF16].bytes == 2 * st.by_type[HALO_TYPE_BF16].n_elements);
    CHECK(st.by_type[HALO_TYPE_F32].bytes == 4 * st.by_type[HALO_TYPE_F32].n_elements);
    double bpw = halo_model_stats_bits_per_weight(&st);
    CHECK(bpw > 16.0 && bpw < 16.2);

    char buf[1024];
    halo_hparams_describe(&hp, buf, sizeof buf);
    CHECK_MSG(strstr(buf, "qwen35moe: 8 layers (6 Gated DeltaNet + 2 gated full attention, every "
                          "4th), hidden 256") == buf,
              "%s", buf);
    CHECK_MSG(strstr(buf, "8 experts (2 routed per token)") != NULL, "%s", buf);
}

static void test_tiny_llama(void) {
    halo_hparams hp;
    halo_model_stats st;
    if (!load("tiny-llama-f16.gguf", &hp, &st)) return;
    CHECK(hp.arch == HALO_ARCH_LLAMA);
    CHECK(hp.n_layer == 2 && hp.n_embd == 256 && hp.n_vocab == 1024);
    CHECK(hp.n_head == 4 && hp.n_head_kv[0] == 2 && hp.n_head_kv[1] == 2);
    CHECK(hp.head_dim_k == 64 && hp.n_ff == 512);
    CHECK(hp.n_attention_layers == 2 && hp.n_deltanet_layers == 0 && hp.n_expert == 0);
    /* embeddings, untied output, 2 layers, final norm: "1.7M" */
    CHECK(st.n_params == 2ull * 256 * 1024 + 2 * (256 + 3 * 256 * 512 + 256 + 2 * 256 * 128 +
                                                 2 * 256 * 256) + 256);
    CHECK(st.n_params_active == st.n_params);
    CHECK(st.by_type[HALO_TYPE_F16].n_tensors == 16);
    CHECK(st.by_type[HALO_TYPE_F32].n_tensors == 5);
}

static void test_tiny_qwen3(void) {
    halo_hparams hp;
    halo_model_stats st;
    if (!load("tiny-qwen3-f16.gguf", &hp, &st)) return;
    CHECK(hp.arch == HALO_ARCH_QWEN3);
    CHECK(hp.n_layer == 2 && hp.n_head == 4 && hp.n_head_kv[0] == 2 && hp.head_dim_k == 64);
    CHECK(hp.n_vocab == 1024 && hp.n_ff == 512);
    CHECK(fabsf(hp.rope_freq_base - 1e6f) < 1.0f);
    CHECK(st.n_tensors == 24);
}

static void test_tiny_qwen3moe(void) {
    halo_hparams hp;
    halo_model_stats st;
    if (!load("tiny-qwen3moe-f16.gguf", &hp, &st)) return;
    CHECK(hp.arch == HALO_ARCH_QWEN3MOE);
    CHECK(hp.n_layer == 2 && hp.n_head == 4 && hp.n_head_kv[0] == 2);
    CHECK(hp.n_expert == 4 && hp.n_expert_used == 2 && hp.n_ff_exp == 256 && hp.n_ff_shexp == 0);
    CHECK(st.n_params_expert == 2ull * 3 * 256 * 256 * 4);
    CHECK(st.n_params_active == st.n_params - st.n_params_expert / 2);
}

static void test_tiny_qwen35(void) {
    halo_hparams hp;
    halo_model_stats st;
    if (!load("tiny-qwen35-f16.gguf", &hp, &st)) return;
    CHECK(hp.arch == HALO_ARCH_QWEN35);
    CHECK(hp.n_layer == 4 && hp.n_ff == 512 && hp.n_expert == 0);
    CHECK(hp.layer_kind[0] == HALO_LAYER_DELTANET && hp.layer_kind[2] == HALO_LAYER_DELTANET);
    CHECK(hp.layer_kind[3] == HALO_LAYER_ATTENTION);
    CHECK(hp.n_head == 2 && hp.n_head_kv[3] == 1 && hp.head_dim_k == 256);
    CHECK(st.n_tensors == 55);
}

static void test_vocab_only(void) {
    halo_hparams hp;
    halo_model_stats st;
    if (load("qwen3-vocab.gguf", &hp, &st)) {
        CHECK(hp.arch == HALO_ARCH_QWEN3 && hp.n_layer == 28 && hp.n_vocab == 151936);
        CHECK(hp.n_head == 16 && hp.n_head_kv[27] == 8 && hp.head_dim_k == 128);
        CHECK(st.n_tensors == 0 && st.n_params == 0 && halo_model_stats_bits_per_weight(&st) == 0);
    }
    if (load("llama-spm-vocab.gguf", &hp, &st)) {
        CHECK(hp.arch == HALO_ARCH_LLAMA && hp.n_vocab == 32000);
        CHECK(hp.n_head == 32 && hp.n_head_kv[0] == 32); /* no head_count_kv: MHA */
        CHECK(hp.head_dim_k == 128 && hp.n_rot == 128);
    }
}

/* ---- broken and unknown metadata ------------------------------------------- */

/* Rewrite tiny-qwen3 (metadata only, no tensors) with one key changed, and load it. */
static int load_modified(const char *src, const char *key, halo_gguf_type type, const void *val,
                         halo_hparams *hp, halo_error *err) {
    halo_gguf *g = open_model(src);
    if (!g) return -100;
    char path[4096];
    snprintf(path, sizeof path, "%s/mod.gguf", halo_test_tmpdir());
    halo_gguf_writer *w = NULL;
    halo_error werr = {0};
    int rc = halo_gguf_writer_open(path, &w, &werr);
    if (rc == 0) rc = halo_gguf_writer_copy_kvs(w, g, &werr);
    if (rc == 0 && key) {
        if (type == HALO_GGUF_UINT32)
            rc = halo_gguf_writer_set_u32(w, key, *(const uint32_t *)val, &werr);
        else if (type == HALO_GGUF_STRING)
            rc = halo_gguf_writer_set_str(w, key, (const char *)val, &werr);
    }
    if (rc == 0) rc = halo_gguf_writer_close(w, &werr);
    halo_gguf_close(g);
    CHECK_MSG(rc == 0, "writing %s: %s", path, werr.msg);
    if (rc) return -100;
    halo_gguf *m = NULL;
    rc = halo_gguf_open(path, NULL, &m, err);
    if (rc) return rc;
    rc = halo_hparams_load(m, hp, err);
    halo_gguf_close(m);
    return rc;
}

static void test_broken(void) {
    halo_hparams hp;
    halo_error err = {0};
    uint32_t v;

    CHECK(load_modified("tiny-qwen3-f16.gguf", NULL, 0, NULL, &hp, &err) == 0);

    v = 3; /* 4 query heads, 3 KV heads */
    halo_error_clear(&err);
    CHECK(load_modified("tiny-qwen3-f16.gguf", "qwen3.attention.head_count_kv", HALO_GGUF_UINT32,
                        &v, &hp, &err) == HALO_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "multiple of its 3 KV heads") != NULL, "%s", err.msg);

    v = 0;
    halo_error_clear(&err);
    CHECK(load_modified("tiny-qwen3-f16.gguf", "qwen3.attention.head_count", HALO_GGUF_UINT32, &v,
                        &hp, &err) == HALO_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "head count") != NULL, "%s", err.msg);

    v = 1u << 30;
    halo_error_clear(&err);
    CHECK(load_modified("tiny-qwen3-f16.gguf", "qwen3.block_count", HALO_GGUF_UINT32, &v, &hp,
                        &err) == HALO_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "layer count") != NULL, "%s", err.msg);

    v = 2000000000u;
    halo_error_clear(&err);
    CHECK(load_modified("tiny-qwen3-f16.gguf", "qwen3.embedding_length", HALO_GGUF_UINT32, &v, &hp,
                        &err) == HALO_ERR_FORMAT);

    /* an interval that puts attention where the tensors say DeltaNet */
    v = 2;
    halo_error_clear(&err);
    halo_gguf *g = open_model("tiny-qwen35-f16.gguf");
    if (g) {
        /* keep the tensors: write a copy with the tensors and the bad interval */
        char path[4096];
        snprintf(path, sizeof path, "%s/interval.gguf", halo_test_tmpdir());
        halo_gguf_writer *w = NULL;
        halo_error werr = {0};
        int rc = halo_gguf_writer_open(path, &w, &werr);
        if (rc == 0) rc = halo_gguf_writer_copy_kvs(w, g, &werr);
        if (rc == 0) rc = halo_gguf_writer_set_u32(w, "qwen35.full_attention_interval", v, &werr);
        for (int64_t i = 0; rc == 0 && i < halo_gguf_n_tensors(g); i++) {
            const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
            rc = halo_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, &werr);
        }
        for (int64_t i = 0; rc == 0 && i < halo_gguf_n_tensors(g); i++) {
            const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
            rc = halo_gguf_writer_write_data(w, t->data, t->nbytes, &werr);
        }
        if (rc == 0) rc = halo_gguf_writer_close(w, &werr);
        CHECK_MSG(rc == 0, "%s", werr.msg);
        halo_gguf_close(g);
        halo_gguf *m = NULL;
        if (rc == 0 && halo_gguf_open(path, NULL, &m, &err) == 0) {
            CHECK(halo_hparams_load(m, &hp, &err) == HALO_ERR_FORMAT);
            CHECK_MSG(strstr(err.msg, "full_attention_interval=2") != NULL, "%s", err.msg);
            halo_gguf_close(m);
        }
    }

    /* an architecture halo does not know, with no keys of its own: unsupported,
     * not malformed */
    halo_error_clear(&err);
    CHECK(load_modified("tiny-qwen3-f16.gguf", "general.architecture", HALO_GGUF_STRING, "mystery",
                        &hp, &err) == HALO_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "mystery") != NULL, "%s", err.msg);
}

/* An unknown architecture with the usual keys is described generically. */
static void test_unknown_generic(void) {
    halo_gguf *g = open_model("tiny-qwen3-f16.gguf");
    if (!g) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/generic.gguf", halo_test_tmpdir());
    halo_gguf_writer *w = NULL;
    halo_error err = {0};
    int rc = halo_gguf_writer_open(path, &w, &err);
    if (rc == 0) rc = halo_gguf_writer_set_str(w, "general.architecture", "mystery", &err);
    if (rc == 0) rc = halo_gguf_writer_set_u32(w, "mystery.block_count", 3, &err);
    if (rc == 0) rc = halo_gguf_writer_set_u32(w, "mystery.embedding_length", 128, &err);
    if (rc == 0) rc = halo_gguf_writer_set_u32(w, "mystery.attention.head_count", 8, &err);
    if (rc == 0) rc = halo_gguf_writer_set_u32(w, "mystery.vocab_size", 500, &err);
    if (rc == 0) rc = halo_gguf_writer_close(w, &err);
    halo_gguf_close(g);
    CHECK_MSG(rc == 0, "%s", err.msg);
    halo_gguf *m = NULL;
    if (rc || halo_gguf_open(path, NULL, &m, &err) != 0) return;
    halo_hparams hp;
    CHECK_MSG(halo_hparams_load(m, &hp, &err) == 0, "%s", err.msg);
    CHECK(hp.arch == HALO_ARCH_UNKNOWN && strcmp(hp.arch_name, "mystery") == 0);
    CHECK(hp.n_layer == 3 && hp.n_vocab == 500 && hp.head_dim_k == 16 && hp.n_head_kv[2] == 8);
    halo_gguf_close(m);
}

int main(void) {
    halo_test_require_fixtures();
    test_kdoc_moe();
    test_tiny_llama();
    test_tiny_qwen3();
    test_tiny_qwen3moe();
    test_tiny_qwen35();
    test_vocab_only();
    test_broken();
    test_unknown_generic();
    return halo_test_finish("model/test_hparams");
}
