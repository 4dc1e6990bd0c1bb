/*
 * llama: pre-norm decoder, RMS norms, grouped-query attention with RoPE on
 * adjacent pairs (llama.cpp's converter permutes the q/k rows from the Hugging
 * Face half-split layout to the pair layout, so GGUF llama files use NORM rope),
 * SwiGLU FFN, untied or tied output head.
 */
#include "model/arch.h"

static int llama_bind(halo_model *m, halo_error *err) {
    int rc = halo_bind_common(m, err);
    m->rope_mode = HALO_ROPE_NORM;
    for (uint32_t il = 0; il < m->hp.n_layer && !rc; il++) {
        if ((rc = halo_bind_attention(m, il, false, err))) break;
        rc = halo_bind_ffn(m, il, err);
    }
    return rc;
}

const halo_arch_ops halo_arch_llama = {
    .arch = HALO_ARCH_LLAMA,
    .bind = llama_bind,
    .scratch_floats = NULL,
    .forward = halo_forward_decoder,
};
