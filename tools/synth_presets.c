/*
 * synth_presets — the models `halo synth` imitates, and the tensor list each implies.
 *
 * Shapes are those of the published Hugging Face config.json of each model (cited per
 * preset). Tensor names, shapes, order and which tensors stay F32 follow what llama.cpp's
 * converter writes for the architecture, as seen in the fixtures
 * (../shared/fixtures/models: kdoc-moe-bf16 = qwen35moe, tiny-qwen35 = qwen35,
 * tiny-qwen3moe, tiny-qwen3, tiny-llama).
 *
 * Initialization scales (why they are what they are): every input projection has std
 * 1/sqrt(fan_in), so that an RMS-normalized input (RMS 1) gives outputs of RMS ~1; every
 * projection that writes into the residual stream (attn_output, ssm_out, ffn_down*) is
 * scaled down further by 1/sqrt(2 n_layer), so the 2 n_layer additions to the residual
 * stream add up to a variance of about one embedding and activations do not grow with
 * depth. The router is 100x smaller than a normal projection, so its logits are ~0.01 and
 * routing is near-uniform, yet still different per token.
 */
#include "synth.h"

#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the presets ------------------------------------------------------------ */

const synth_model synth_presets[] = {
    {
        .preset = "qwen35moe-35b-a3b",
        .model_name = "Qwen3.5-35B-A3B",
        .basename = "Qwen3.5",
        .size_label = "35B-A3B",
        .source = "huggingface.co/Qwen/Qwen3.5-35B-A3B config.json (same shapes: Qwen3.6-35B-A3B)",
        .arch = SYNTH_ARCH_QWEN35MOE,
        .vocab_kind = SYNTH_VOCAB_QWEN35,
        .n_layer = 40, .n_embd = 2048, .n_ff = 0,
        .n_head = 16, .n_head_kv = 2, .head_dim = 256,
        .n_vocab = 248320, .n_vocab_text = 248044, .n_ctx = 262144,
        .rope_theta = 1e7, .rms_eps = 1e-6, .rope_dim = 64, .rope_sections = {11, 11, 10, 0},
        .n_expert = 256, .n_expert_used = 8, .n_ff_exp = 512, .n_ff_shexp = 512,
        .full_attn_interval = 4, .ssm_d_conv = 4, .ssm_n_k_heads = 16, .ssm_n_v_heads = 32,
        .ssm_head_k_dim = 128, .ssm_head_v_dim = 128,
    },
    {
        .preset = "qwen35moe-122b-a10b",
        .model_name = "Qwen3.5-122B-A10B",
        .basename = "Qwen3.5",
        .size_label = "122B-A10B",
        .source = "huggingface.co/Qwen/Qwen3.5-122B-A10B config.json",
        .arch = SYNTH_ARCH_QWEN35MOE,
        .vocab_kind = SYNTH_VOCAB_QWEN35,
        .n_layer = 48, .n_embd = 3072, .n_ff = 0,
        .n_head = 32, .n_head_kv = 2, .head_dim = 256,
        .n_vocab = 248320, .n_vocab_text = 248044, .n_ctx = 262144,
        .rope_theta = 1e7, .rms_eps = 1e-6, .rope_dim = 64, .rope_sections = {11, 11, 10, 0},
        .n_expert = 256, .n_expert_used = 8, .n_ff_exp = 1024, .n_ff_shexp = 1024,
        .full_attn_interval = 4, .ssm_d_conv = 4, .ssm_n_k_heads = 16, .ssm_n_v_heads = 64,
        .ssm_head_k_dim = 128, .ssm_head_v_dim = 128,
    },
    {
        .preset = "qwen35-27b",
        .model_name = "Qwen3.5-27B",
        .basename = "Qwen3.5",
        .size_label = "27B",
        .source = "huggingface.co/Qwen/Qwen3.5-27B config.json (same shapes: Qwen3.6-27B)",
        .arch = SYNTH_ARCH_QWEN35,
        .vocab_kind = SYNTH_VOCAB_QWEN35,
        .n_layer = 64, .n_embd = 5120, .n_ff = 17408,
        .n_head = 24, .n_head_kv = 4, .head_dim = 256,
        .n_vocab = 248320, .n_vocab_text = 248044, .n_ctx = 262144,
        .rope_theta = 1e7, .rms_eps = 1e-6, .rope_dim = 64, .rope_sections = {11, 11, 10, 0},
        .full_attn_interval = 4, .ssm_d_conv = 4, .ssm_n_k_heads = 16, .ssm_n_v_heads = 48,
        .ssm_head_k_dim = 128, .ssm_head_v_dim = 128,
    },
    {
        .preset = "qwen3moe-30b-a3b",
        .model_name = "Qwen3-30B-A3B",
        .basename = "Qwen3",
        .size_label = "30B-A3B",
        .source = "huggingface.co/Qwen/Qwen3-30B-A3B config.json",
        .arch = SYNTH_ARCH_QWEN3MOE,
        .vocab_kind = SYNTH_VOCAB_QWEN3,
        .n_layer = 48, .n_embd = 2048, .n_ff = 6144,
        .n_head = 32, .n_head_kv = 4, .head_dim = 128,
        .n_vocab = 151936, .n_vocab_text = 151643, .n_ctx = 40960,
        .rope_theta = 1e6, .rms_eps = 1e-6, .rope_dim = 128,
        .n_expert = 128, .n_expert_used = 8, .n_ff_exp = 768,
    },
    {
        .preset = "qwen3-8b",
        .model_name = "Qwen3-8B",
        .basename = "Qwen3",
        .size_label = "8B",
        .source = "huggingface.co/Qwen/Qwen3-8B config.json",
        .arch = SYNTH_ARCH_QWEN3,
        .vocab_kind = SYNTH_VOCAB_QWEN3,
        .n_layer = 36, .n_embd = 4096, .n_ff = 12288,
        .n_head = 32, .n_head_kv = 8, .head_dim = 128,
        .n_vocab = 151936, .n_vocab_text = 151643, .n_ctx = 40960,
        .rope_theta = 1e6, .rms_eps = 1e-6, .rope_dim = 128,
    },
    {
        .preset = "llama-8b",
        .model_name = "Llama-3.1-8B-Instruct",
        .basename = "Llama-3.1",
        .size_label = "8B",
        .source = "huggingface.co/meta-llama/Llama-3.1-8B-Instruct config.json",
        .arch = SYNTH_ARCH_LLAMA,
        .vocab_kind = SYNTH_VOCAB_LLAMA3,
        .n_layer = 32, .n_embd = 4096, .n_ff = 14336,
        .n_head = 32, .n_head_kv = 8, .head_dim = 128,
        .n_vocab = 128256, .n_vocab_text = 128000, .n_ctx = 131072,
        .rope_theta = 500000.0, .rms_eps = 1e-5, .rope_dim = 128,
        .llama3_rope = true,
    },
};
const size_t synth_n_presets = sizeof synth_presets / sizeof synth_presets[0];

const synth_model *synth_preset_find(const char *name) {
    for (size_t i = 0; i < synth_n_presets; i++)
        if (!strcasecmp(synth_presets[i].preset, name)) return &synth_presets[i];
    return NULL;
}

bool synth_layer_is_attention(const synth_model *m, int64_t layer) {
    if (m->arch != SYNTH_ARCH_QWEN35 && m->arch != SYNTH_ARCH_QWEN35MOE) return true;
    /* Qwen3.5's layer_types: linear, linear, linear, full, ... (full when (i+1) % 4 == 0) */
    return m->full_attn_interval > 0 && (layer + 1) % m->full_attn_interval == 0;
}

/* ---- the tensor plan -------------------------------------------------------- */

typedef struct plan {
    synth_tensor *t;
    size_t n, cap;
    bool failed;
} plan;

static synth_tensor *add(plan *p, int layer, const char *suffix, uint32_t n_dims, int64_t ne0,
                         int64_t ne1, int64_t ne2) {
    if (p->failed) return NULL;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        synth_tensor *t = realloc(p->t, cap * sizeof *t);
        if (!t) {
            p->failed = true;
            return NULL;
        }
        p->t = t;
        p->cap = cap;
    }
    synth_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    if (layer >= 0) snprintf(t->name, sizeof t->name, "blk.%d.%s", layer, suffix);
    else snprintf(t->name, sizeof t->name, "%s", suffix);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = n_dims > 1 ? ne1 : 1;
    t->ne[2] = n_dims > 2 ? ne2 : 1;
    t->ne[3] = 1;
    t->layer = layer;
    t->init = SYNTH_INIT_NORMAL;
    t->category = SYNTH_CAT_OTHER;
    return t;
}

/* A weight matrix [rows = out_features][ne0 = in_features] (x n_expert). `residual`: it
 * writes into the residual stream and gets the depth scaling. */
static void matrix(plan *p, const synth_model *m, int layer, const char *suffix, int64_t in,
                   int64_t out, int64_t n_expert, synth_category cat, bool residual) {
    synth_tensor *t = add(p, layer, suffix, n_expert > 1 ? 3 : 2, in, out, n_expert);
    if (!t) return;
    t->matrix = true;
    t->category = cat;
    float s = 1.0f / sqrtf((float)in);
    if (residual) s /= sqrtf(2.0f * (float)m->n_layer);
    t->scale = s;
}

static void vector(plan *p, int layer, const char *suffix, int64_t n, synth_init init, float scale) {
    synth_tensor *t = add(p, layer, suffix, 1, n, 1, 1);
    if (!t) return;
    t->init = init;
    t->scale = scale;
}

static void norm(plan *p, int layer, const char *suffix, int64_t n) {
    vector(p, layer, suffix, n, SYNTH_INIT_NORM, 0.02f);
}

/* q/k/v/o of a full-attention layer; Qwen3.5's attn_q also holds the output gate
 * (per head: head_dim query values then head_dim gate values). */
static void attention(plan *p, const synth_model *m, int l) {
    bool qk_norm = m->arch != SYNTH_ARCH_LLAMA;
    bool gated = m->arch == SYNTH_ARCH_QWEN35 || m->arch == SYNTH_ARCH_QWEN35MOE;
    int64_t q = m->n_head * m->head_dim, kv = m->n_head_kv * m->head_dim;
    if (qk_norm) norm(p, l, "attn_k_norm.weight", m->head_dim);
    matrix(p, m, l, "attn_k.weight", m->n_embd, kv, 1, SYNTH_CAT_ATTN_K, false);
    matrix(p, m, l, "attn_output.weight", q, m->n_embd, 1, SYNTH_CAT_ATTN_OUTPUT, true);
    if (qk_norm) norm(p, l, "attn_q_norm.weight", m->head_dim);
    matrix(p, m, l, "attn_q.weight", m->n_embd, gated ? 2 * q : q, 1, SYNTH_CAT_ATTN_Q, false);
    matrix(p, m, l, "attn_v.weight", m->n_embd, kv, 1, SYNTH_CAT_ATTN_V, false);
}

/* Gated DeltaNet: in-projections (qkv, z gate, alpha, beta), the causal conv over q|k|v,
 * A and dt bias per value head, the gated RMS norm over each value head, out-projection. */
static void deltanet(plan *p, const synth_model *m, int l) {
    int64_t nk = m->ssm_n_k_heads, nv = m->ssm_n_v_heads;
    int64_t conv_dim = 2 * nk * m->ssm_head_k_dim + nv * m->ssm_head_v_dim;
    int64_t inner = nv * m->ssm_head_v_dim;
    vector(p, l, "ssm_a", nv, SYNTH_INIT_SSM_A, 0);
    synth_tensor *conv = add(p, l, "ssm_conv1d.weight", 2, m->ssm_d_conv, conv_dim, 1);
    if (conv) conv->scale = 1.0f / sqrtf((float)m->ssm_d_conv); /* depthwise: fan_in = kernel */
    vector(p, l, "ssm_dt.bias", nv, SYNTH_INIT_DT_BIAS, 0.02f);
    matrix(p, m, l, "ssm_alpha.weight", m->n_embd, nv, 1, SYNTH_CAT_OTHER, false);
    matrix(p, m, l, "ssm_beta.weight", m->n_embd, nv, 1, SYNTH_CAT_OTHER, false);
    matrix(p, m, l, "attn_qkv.weight", m->n_embd, conv_dim, 1, SYNTH_CAT_ATTN_QKV, false);
    matrix(p, m, l, "attn_gate.weight", m->n_embd, inner, 1, SYNTH_CAT_OTHER, false);
    norm(p, l, "ssm_norm.weight", m->ssm_head_v_dim);
    matrix(p, m, l, "ssm_out.weight", inner, m->n_embd, 1, SYNTH_CAT_OTHER, true);
}

static void ffn(plan *p, const synth_model *m, int l) {
    if (m->n_expert > 0) {
        matrix(p, m, l, "ffn_down_exps.weight", m->n_ff_exp, m->n_embd, m->n_expert,
               SYNTH_CAT_FFN_DOWN, true);
        matrix(p, m, l, "ffn_gate_exps.weight", m->n_embd, m->n_ff_exp, m->n_expert,
               SYNTH_CAT_FFN_GATE, false);
        matrix(p, m, l, "ffn_up_exps.weight", m->n_embd, m->n_ff_exp, m->n_expert,
               SYNTH_CAT_FFN_UP, false);
        /* the router stays F32 (llama-quantize never quantizes ffn_gate_inp) */
        synth_tensor *r = add(p, l, "ffn_gate_inp.weight", 2, m->n_embd, m->n_expert, 1);
        if (r) r->scale = 0.01f / sqrtf((float)m->n_embd);
        if (m->n_ff_shexp > 0) {
            matrix(p, m, l, "ffn_down_shexp.weight", m->n_ff_shexp, m->n_embd, 1,
                   SYNTH_CAT_FFN_DOWN, true);
            matrix(p, m, l, "ffn_gate_shexp.weight", m->n_embd, m->n_ff_shexp, 1,
                   SYNTH_CAT_FFN_GATE, false);
            matrix(p, m, l, "ffn_up_shexp.weight", m->n_embd, m->n_ff_shexp, 1,
                   SYNTH_CAT_FFN_UP, false);
            /* the shared expert's sigmoid gate: [n_embd, 1], F32 like the converter writes it */
            synth_tensor *g = add(p, l, "ffn_gate_inp_shexp.weight", 2, m->n_embd, 1, 1);
            if (g) g->scale = 1.0f / sqrtf((float)m->n_embd);
        }
    } else {
        matrix(p, m, l, "ffn_down.weight", m->n_ff, m->n_embd, 1, SYNTH_CAT_FFN_DOWN, true);
        matrix(p, m, l, "ffn_gate.weight", m->n_embd, m->n_ff, 1, SYNTH_CAT_FFN_GATE, false);
        matrix(p, m, l, "ffn_up.weight", m->n_embd, m->n_ff, 1, SYNTH_CAT_FFN_UP, false);
    }
}

int synth_plan_build(const synth_model *m, synth_tensor **out, size_t *n_out, halo_error *err) {
    plan p = {0};
    bool qwen35 = m->arch == SYNTH_ARCH_QWEN35 || m->arch == SYNTH_ARCH_QWEN35MOE;

    if (m->llama3_rope) vector(&p, -1, "rope_freqs.weight", m->head_dim / 2, SYNTH_INIT_ROPE_FREQS, 0);
    if (!m->tied_embeddings) {
        matrix(&p, m, -1, "output.weight", m->n_embd, m->n_vocab, 1, SYNTH_CAT_OUTPUT, false);
    }
    /* Embeddings of std 1: the residual stream starts at RMS 1 and the layers add about
     * as much again (see the top comment). */
    matrix(&p, m, -1, "token_embd.weight", m->n_embd, m->n_vocab, 1, SYNTH_CAT_TOKEN_EMBD, false);
    if (p.n && !p.failed) p.t[p.n - 1].scale = 1.0f;

    for (int l = 0; l < (int)m->n_layer; l++) {
        norm(&p, l, "attn_norm.weight", m->n_embd);
        if (qwen35) {
            bool full = synth_layer_is_attention(m, l);
            if (!full) deltanet(&p, m, l);
            ffn(&p, m, l);
            norm(&p, l, "post_attention_norm.weight", m->n_embd);
            if (full) attention(&p, m, l);
        } else {
            ffn(&p, m, l);
            norm(&p, l, "ffn_norm.weight", m->n_embd);
            attention(&p, m, l);
        }
    }
    norm(&p, -1, "output_norm.weight", m->n_embd);

    if (p.failed) {
        free(p.t);
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory building the tensor list");
    }
    /* every element count must fit comfortably: checked once here for all later products */
    for (size_t i = 0; i < p.n; i++) {
        uint64_t n = 1;
        for (int d = 0; d < 4; d++) {
            if (p.t[i].ne[d] <= 0 || halo_mul_overflow(n, (uint64_t)p.t[i].ne[d], &n)) {
                free(p.t);
                return halo_error_set(err, HALO_ERR_RANGE, "tensor %s: shape out of range",
                                      p.t[i].name);
            }
        }
        if (n > (UINT64_C(1) << 50)) {
            free(p.t);
            return halo_error_set(err, HALO_ERR_RANGE, "tensor %s: too many elements", p.t[i].name);
        }
    }
    *out = p.t;
    *n_out = p.n;
    return 0;
}

bool synth_count_params(const synth_model *m, uint64_t *total, uint64_t *active) {
    synth_tensor *t;
    size_t n;
    halo_error err = {0};
    if (synth_plan_build(m, &t, &n, &err)) return false;
    uint64_t tot = 0, act = 0;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        uint64_t e = (uint64_t)t[i].ne[0] * (uint64_t)t[i].ne[1] * (uint64_t)t[i].ne[2];
        /* a token reads n_used of the n_expert experts of a routed-expert tensor */
        uint64_t a = e;
        if (t[i].ne[2] > 1 && m->n_expert > 0) a = e / (uint64_t)m->n_expert * (uint64_t)m->n_expert_used;
        ok = !halo_add_overflow(tot, e, &tot) && !halo_add_overflow(act, a, &act);
    }
    free(t);
    *total = tot;
    *active = act;
    return ok;
}
