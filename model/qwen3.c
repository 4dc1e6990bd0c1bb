/*
 * qwen3: the llama layout plus an RMS norm over each query and key head (with
 * its own weight) before RoPE; RoPE on halves (NEOX); tied output head in the
 * small models.
 */
#include "model/arch.h"

static int qwen3_bind(halo_model *m, halo_error *err) {
    int rc = halo_bind_common(m, err);
    m->rope_mode = HALO_ROPE_NEOX;
    for (uint32_t il = 0; il < m->hp.n_layer && !rc; il++) {
        if ((rc = halo_bind_attention(m, il, true, err))) break;
        rc = halo_bind_ffn(m, il, err);
    }
    return rc;
}

const halo_arch_ops halo_arch_qwen3 = {
    .arch = HALO_ARCH_QWEN3,
    .bind = qwen3_bind,
    .scratch_floats = NULL,
    .forward = halo_forward_decoder,
};
