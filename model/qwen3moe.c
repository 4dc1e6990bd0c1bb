/*
 * qwen3moe: qwen3's attention (per-head q/k norms, NEOX RoPE) with a routed
 * mixture of SwiGLU experts in every layer: router softmax over all experts,
 * the top k per token, their weights renormalized to sum to one
 * (norm_topk_prob; `<arch>.expert_weights_norm` may say otherwise), no shared
 * expert.
 */
#include "format/gguf.h"
#include "model/arch.h"

#include <stdio.h>

static int qwen3moe_bind(halo_model *m, halo_error *err) {
    int rc = halo_bind_common(m, err);
    m->rope_mode = HALO_ROPE_NEOX;
    char key[96];
    snprintf(key, sizeof key, "%s.expert_weights_norm", m->hp.arch_name);
    bool norm = true;
    halo_gguf_get_bool(m->gguf, key, &norm);
    m->expert_weights_norm = norm;
    for (uint32_t il = 0; il < m->hp.n_layer && !rc; il++) {
        if ((rc = halo_bind_attention(m, il, true, err))) break;
        rc = halo_bind_moe(m, il, err);
    }
    return rc;
}

const halo_arch_ops halo_arch_qwen3moe = {
    .arch = HALO_ARCH_QWEN3MOE,
    .bind = qwen3moe_bind,
    .scratch_floats = NULL,
    .forward = halo_forward_decoder,
};
