/*
 * The memory plan's arithmetic against published figures:
 * - Qwen3.5-35B-A3B: 10 full-attention layers x 2 KV heads x 256 dims x (K+V) x
 *   2 bytes = 20 KiB of f16 KV cache per token; 30 Gated-DeltaNet layers of 32
 *   value heads with 128 x 128 f32 states (60 MiB) plus the conv tails
 *   (3 x 8192 channels x 4 B x 30 layers = 2.8125 MiB) per slot.
 * - Qwen3.5-9B: llama.cpp logs "RS buffer size = 50.25 MiB (1 cells, 32 layers,
 *   1 seqs), R (f32): 2.25 MiB, S (f32): 48.00 MiB".
 * and the validation of hand-made hyper-parameters.
 */
#include "harness.h"

#include "model/model.h"
#include "quant/quant.h"
#include "runtime/runtime.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define GIB (1024ull * 1024 * 1024)

/* Qwen3.5-35B-A3B's text model as in its config.json. */
static void qwen35_35b_a3b(halo_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    hp->arch = HALO_ARCH_QWEN35MOE;
    snprintf(hp->arch_name, sizeof hp->arch_name, "qwen35moe");
    hp->n_layer = 40;
    hp->n_embd = 2048;
    hp->n_vocab = 248320;
    hp->n_head = 16;
    hp->n_head_kv[0] = 2;
    hp->head_dim_k = hp->head_dim_v = 256;
    hp->n_expert = 256;
    hp->n_expert_used = 8;
    hp->n_ff_exp = 512;
    hp->n_ff_shexp = 512;
    hp->n_ctx_train = 262144;
    hp->rope_freq_base = 1e7f;
    hp->n_rot = 64;
    hp->rms_eps = 1e-6f;
    hp->ssm_conv_kernel = 4;
    hp->ssm_state_size = 128;   /* key head dim */
    hp->ssm_group_count = 16;   /* key heads */
    hp->ssm_time_step_rank = 32; /* value heads */
    hp->ssm_inner_size = 32 * 128;
    hp->full_attention_interval = 4;
}

static void test_35b_a3b(void) {
    halo_hparams hp;
    halo_error err = {0};
    qwen35_35b_a3b(&hp);
    CHECK_MSG(halo_hparams_finalize(&hp, &err) == 0, "%s", err.msg);
    CHECK(hp.n_attention_layers == 10);
    CHECK(hp.n_deltanet_layers == 30);
    CHECK(hp.layer_kind[3] == HALO_LAYER_ATTENTION);
    CHECK(hp.layer_kind[39] == HALO_LAYER_ATTENTION);
    CHECK(hp.layer_kind[0] == HALO_LAYER_DELTANET);
    CHECK(hp.layer_kind[38] == HALO_LAYER_DELTANET);
    CHECK(hp.n_head_kv[39] == 2);
    CHECK(halo_hparams_deltanet_conv_channels(&hp) == 8192);
    CHECK(halo_hparams_deltanet_value_dim(&hp) == 128);

    uint64_t k, v;
    CHECK(halo_plan_kv_bytes_per_token(&hp, HALO_TYPE_F16, HALO_TYPE_F16, &k, &v, &err) == 0);
    CHECK(k + v == 20 * KIB);
    CHECK(k == 10 * KIB && v == 10 * KIB);
    /* q8_0: 512 values a row = 16 blocks of 34 bytes = 544 B, x 10 layers, x (K+V) */
    CHECK(halo_plan_kv_bytes_per_token(&hp, HALO_TYPE_Q8_0, HALO_TYPE_Q8_0, &k, &v, &err) == 0);
    CHECK(k + v == 10880);
    /* q4_0: 16 blocks of 18 bytes = 288 B a row */
    CHECK(halo_plan_kv_bytes_per_token(&hp, HALO_TYPE_Q4_0, HALO_TYPE_Q4_0, &k, &v, &err) == 0);
    CHECK(k + v == 5760);
    /* iq4_nl: the same 18-byte blocks */
    CHECK(halo_plan_kv_bytes_per_token(&hp, HALO_TYPE_IQ4_NL, HALO_TYPE_IQ4_NL, &k, &v, &err) == 0);
    CHECK(k + v == 5760);
    CHECK(halo_plan_kv_bytes_per_token(&hp, HALO_TYPE_Q8_0, HALO_TYPE_F16, &k, &v, &err) == 0);
    CHECK(k == 5440 && v == 10240);
    CHECK(halo_plan_kv_bytes_per_token(&hp, HALO_TYPE_F32, HALO_TYPE_BF16, &k, &v, &err) == 0);
    CHECK(k == 20 * KIB && v == 10 * KIB);

    uint64_t conv, ssm;
    CHECK(halo_plan_recurrent_bytes_per_slot(&hp, &conv, &ssm, &err) == 0);
    CHECK(ssm == 60 * MIB);
    CHECK(conv == 2949120); /* 2.8125 MiB */
    CHECK(conv + ssm == 65863680); /* 62.8125 MiB */

    /* The whole plan at the trained context: 5 GiB of f16 KV cache. */
    halo_plan_options o;
    halo_plan_options_default(&o);
    CHECK(o.n_ctx == 4096 && o.n_slots == 1 && o.type_k == HALO_TYPE_F16);
    o.n_ctx = 262144;
    o.n_slots = 3;
    o.mem_bytes = 64 * GIB;
    halo_memory_plan p;
    uint64_t weights = 22000000000ull; /* Q4_K_M, 22.0 GB */
    CHECK_MSG(halo_plan_compute(&hp, weights, &o, &p, &err) == 0, "%s", err.msg);
    CHECK(p.kv_bytes == 5 * GIB);
    CHECK(p.recurrent_bytes == 3 * 65863680ull);
    CHECK(p.logits_bytes == 248320ull * 512 * 4);
    CHECK(p.compute_bytes > p.logits_bytes);
    CHECK(p.total_bytes == weights + p.kv_bytes + p.recurrent_bytes + p.compute_bytes);
    CHECK(p.fits);
    CHECK(p.headroom_bytes == (int64_t)(64 * GIB - p.total_bytes));
    CHECK(!p.mem_from_system);
    /* largest context: what is left after everything else, in 256-cell steps */
    uint64_t fixed = weights + p.recurrent_bytes + p.compute_bytes;
    uint64_t expect = (64 * GIB - fixed) / (20 * KIB) / 256 * 256;
    CHECK(p.max_ctx_fit == expect);
    CHECK(p.max_ctx_fit > 3 * 262144ull);        /* ~2.1 M cells fit in 64 GiB */
    CHECK(p.max_ctx == 3 * 262144ull);           /* capped at 3 slots x trained context */
    CHECK(p.max_ctx_capped_by_train);

    /* q8_0 halves... nearly: 34/64 of f16 */
    o.type_k = o.type_v = HALO_TYPE_Q8_0;
    CHECK(halo_plan_compute(&hp, weights, &o, &p, &err) == 0);
    CHECK(p.kv_bytes == 10880ull * 262144);

    /* does not fit: 48.7 GB of weights in 32 GiB */
    o.mem_bytes = 32 * GIB;
    CHECK(halo_plan_compute(&hp, 48700000000ull, &o, &p, &err) == 0);
    CHECK(!p.fits);
    CHECK(p.headroom_bytes < 0);
    CHECK(p.max_ctx == 0 && p.max_ctx_fit == 0);

    /* slots and ubatch must be positive */
    o.n_slots = 0;
    CHECK(halo_plan_compute(&hp, weights, &o, &p, &err) == HALO_ERR_ARG);
}

static void test_9b_recurrent(void) {
    halo_hparams hp;
    halo_error err = {0};
    memset(&hp, 0, sizeof hp);
    hp.arch = HALO_ARCH_QWEN35;
    hp.n_layer = 32;
    hp.n_embd = 4096;
    hp.n_vocab = 248320;
    hp.n_head = 16;
    hp.n_head_kv[0] = 4;
    hp.head_dim_k = hp.head_dim_v = 256;
    hp.n_ff = 12288;
    hp.n_rot = 64;
    hp.rms_eps = 1e-6f;
    hp.ssm_conv_kernel = 4;
    hp.ssm_state_size = 128;
    hp.ssm_group_count = 16;
    hp.ssm_time_step_rank = 32;
    hp.ssm_inner_size = 4096;
    hp.full_attention_interval = 4;
    CHECK_MSG(halo_hparams_finalize(&hp, &err) == 0, "%s", err.msg);
    CHECK(hp.n_deltanet_layers == 24 && hp.n_attention_layers == 8);
    uint64_t conv, ssm, k, v;
    CHECK(halo_plan_recurrent_bytes_per_slot(&hp, &conv, &ssm, &err) == 0);
    CHECK(conv == 2 * MIB + MIB / 4); /* R (f32): 2.25 MiB */
    CHECK(ssm == 48 * MIB);           /* S (f32): 48.00 MiB */
    CHECK(halo_plan_kv_bytes_per_token(&hp, HALO_TYPE_F16, HALO_TYPE_F16, &k, &v, &err) == 0);
    CHECK(k + v == 32 * KIB); /* 8 layers x 4 heads x 256 x 2 x 2 B */
}

static void test_dense(void) {
    /* tiny-llama: 2 layers, 2 KV heads of 64: 2 x 2 x 64 x 2 x 2 B = 1 KiB a token */
    halo_hparams hp;
    halo_error err = {0};
    memset(&hp, 0, sizeof hp);
    hp.arch = HALO_ARCH_LLAMA;
    hp.n_layer = 2;
    hp.n_embd = 256;
    hp.n_vocab = 1024;
    hp.n_head = 4;
    hp.n_head_kv[0] = 2;
    hp.n_ff = 512;
    hp.rms_eps = 1e-6f;
    CHECK_MSG(halo_hparams_finalize(&hp, &err) == 0, "%s", err.msg);
    CHECK(hp.head_dim_k == 64 && hp.head_dim_v == 64 && hp.n_rot == 64);
    CHECK(hp.n_attention_layers == 2 && hp.n_deltanet_layers == 0);
    uint64_t k, v, conv, ssm;
    CHECK(halo_plan_kv_bytes_per_token(&hp, HALO_TYPE_F16, HALO_TYPE_F16, &k, &v, &err) == 0);
    CHECK(k + v == 1024);
    CHECK(halo_plan_kv_bytes_per_token(&hp, HALO_TYPE_F32, HALO_TYPE_F32, &k, &v, &err) == 0);
    CHECK(k + v == 2048);
    CHECK(halo_plan_recurrent_bytes_per_slot(&hp, &conv, &ssm, &err) == 0);
    CHECK(conv == 0 && ssm == 0);

    /* a KV row of 2 x 24 = 48 values is not a whole number of 32-value blocks */
    hp.n_head = 4;
    hp.head_dim_k = hp.head_dim_v = 24;
    hp.n_rot = 24;
    CHECK(halo_hparams_finalize(&hp, &err) == 0);
    halo_error_clear(&err);
    CHECK(halo_plan_kv_bytes_per_token(&hp, HALO_TYPE_Q4_0, HALO_TYPE_F16, &k, &v, &err) ==
          HALO_ERR_ARG);
    CHECK(strstr(err.msg, "q4_0") != NULL);
    halo_error_clear(&err);
    CHECK(halo_plan_kv_bytes_per_token(&hp, HALO_TYPE_Q4_K, HALO_TYPE_F16, &k, &v, &err) ==
          HALO_ERR_ARG);
}

static void test_kv_types(void) {
    CHECK(halo_kv_type_from_name("f16") == HALO_TYPE_F16);
    CHECK(halo_kv_type_from_name("F32") == HALO_TYPE_F32);
    CHECK(halo_kv_type_from_name("bf16") == HALO_TYPE_BF16);
    CHECK(halo_kv_type_from_name("q8_0") == HALO_TYPE_Q8_0);
    CHECK(halo_kv_type_from_name("Q4_0") == HALO_TYPE_Q4_0);
    CHECK(halo_kv_type_from_name("iq4_nl") == HALO_TYPE_IQ4_NL);
    CHECK(strstr(halo_kv_type_names(), "iq4_nl") != NULL);
    CHECK(halo_kv_type_from_name("q4_K") == -1);
    CHECK(halo_kv_type_from_name("nonsense") == -1);
    CHECK(halo_kv_type_from_name(NULL) == -1);
}

/* Broken hyper-parameters give one clear error each, never a plan. */
static void test_validation(void) {
    halo_hparams hp;
    halo_error err = {0};

    qwen35_35b_a3b(&hp);
    hp.n_head_kv[0] = 3; /* 16 % 3 */
    CHECK(halo_hparams_finalize(&hp, &err) == HALO_ERR_FORMAT);
    CHECK(strstr(err.msg, "multiple") != NULL);

    halo_error_clear(&err);
    qwen35_35b_a3b(&hp);
    hp.n_head = 0;
    CHECK(halo_hparams_finalize(&hp, &err) == HALO_ERR_FORMAT);

    halo_error_clear(&err);
    qwen35_35b_a3b(&hp);
    hp.n_head_kv[0] = 0;
    CHECK(halo_hparams_finalize(&hp, &err) == HALO_ERR_FORMAT);

    halo_error_clear(&err);
    qwen35_35b_a3b(&hp);
    hp.n_layer = 100000;
    CHECK(halo_hparams_finalize(&hp, &err) == HALO_ERR_FORMAT);

    halo_error_clear(&err);
    qwen35_35b_a3b(&hp);
    hp.ssm_time_step_rank = 24; /* not a multiple of 16 key heads */
    hp.ssm_inner_size = 24 * 128;
    CHECK(halo_hparams_finalize(&hp, &err) == HALO_ERR_FORMAT);

    halo_error_clear(&err);
    qwen35_35b_a3b(&hp);
    hp.n_expert_used = 300; /* more than 256 experts */
    CHECK(halo_hparams_finalize(&hp, &err) == HALO_ERR_FORMAT);

    halo_error_clear(&err);
    qwen35_35b_a3b(&hp);
    hp.n_embd = 4000000000u;
    CHECK(halo_hparams_finalize(&hp, &err) == HALO_ERR_FORMAT);

    halo_error_clear(&err);
    qwen35_35b_a3b(&hp);
    hp.full_attention_interval = 41;
    CHECK(halo_hparams_finalize(&hp, &err) == HALO_ERR_FORMAT);

    halo_error_clear(&err);
    qwen35_35b_a3b(&hp);
    hp.n_nextn = 40;
    CHECK(halo_hparams_finalize(&hp, &err) == HALO_ERR_FORMAT);

    halo_error_clear(&err);
    qwen35_35b_a3b(&hp);
    hp.rms_eps = 2.0f;
    CHECK(halo_hparams_finalize(&hp, &err) == HALO_ERR_FORMAT);

    /* an MTP layer after 40 main layers: not a KV layer of the plan */
    halo_error_clear(&err);
    qwen35_35b_a3b(&hp);
    hp.n_layer = 41;
    hp.n_nextn = 1;
    CHECK_MSG(halo_hparams_finalize(&hp, &err) == 0, "%s", err.msg);
    CHECK(hp.layer_kind[40] == HALO_LAYER_NEXTN);
    CHECK(hp.n_attention_layers == 10 && hp.n_deltanet_layers == 30);
    uint64_t k, v;
    CHECK(halo_plan_kv_bytes_per_token(&hp, HALO_TYPE_F16, HALO_TYPE_F16, &k, &v, &err) == 0);
    CHECK(k + v == 20 * KIB);
}

int main(void) {
    test_35b_a3b();
    test_9b_recurrent();
    test_dense();
    test_kv_types();
    test_validation();
    return halo_test_finish("runtime/test_plan");
}
