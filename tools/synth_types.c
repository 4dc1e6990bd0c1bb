/*
 * synth_types — which block type each tensor of a synthesized file gets.
 *
 * Two kinds of --type: a block type name (q4_K, q8_0, bf16, ...) puts every quantizable
 * matrix, token embedding and output included, in that one type (what `llama-quantize
 * --pure` does); a mix name (Q4_K_M, Q4_K_S, Q5_K_M, Q3_K_M, MXFP4_MOE, ...) follows
 * llama-quantize's per-tensor rules for that file type, simplified to what the
 * architectures here contain:
 *
 *   - output.weight (or the token embedding when tied): Q6_K (Q8_0 for MXFP4_MOE, or when
 *     the row length is not a multiple of the mix's block size).
 *   - attn_v and attn_qkv (the mix counts both as "attn_v"; one per layer): Q4_K_M and
 *     Q5_K_M use Q6_K on the layers where use_more_bits(i, n) holds, i.e. the first and
 *     last eighth of the layers and every third layer between; Q4_K_S uses Q5_K on the
 *     first 4; Q3_K_M Q5_K on the first 2 then Q4_K; Q3_K_L Q5_K.
 *   - ffn_down* (routed and shared experts alike, by layer): Q4_K_M/Q5_K_M Q6_K where
 *     use_more_bits(layer, n_layer); Q4_K_S Q5_K on the first eighth; Q3_K_M Q5_K on the
 *     first sixteenth then Q4_K; Q3_K_L Q5_K.
 *   - attn_output: Q3_K_M Q4_K, Q3_K_L Q5_K; with exactly 8 experts the K mixes use Q5_K.
 *   - with exactly 8 experts, attn_v and attn_k become Q8_0.
 *   - MXFP4_MOE: routed-expert tensors MXFP4, every other matrix Q8_0.
 *   - everything else: the mix's base type (Q3_K, Q4_K, Q5_K).
 * Then, as llama-quantize does, a row length that is not a multiple of the chosen type's
 * block size falls back: Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
 * IQ4_XS -> IQ4_NL, and to F16 if even 32 does not divide it.
 *
 * Not quantized, ever (they stay F32 as the converter writes them): 1-D tensors, norms,
 * the router ffn_gate_inp, the shared-expert gate, ssm_conv1d, ssm_a, ssm_dt.bias,
 * rope_freqs.
 */
#include "synth.h"

#include "quant/quant.h"
#include "util/util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct pure_name {
    const char *name;
    int type;
    uint32_t file_type; /* llama_ftype: the "mostly" type that names the file */
} pure_name;

/* llama_ftype has no "mostly Q4_K" without a mix; a pure K type names its _S mix, the
 * closest one (llama-quantize --pure writes whatever ftype it was given). */
static const pure_name pure_names[] = {
    {"f32", HALO_TYPE_F32, 0},       {"f16", HALO_TYPE_F16, 1},
    {"bf16", HALO_TYPE_BF16, 32},    {"q8_0", HALO_TYPE_Q8_0, 7},
    {"q4_0", HALO_TYPE_Q4_0, 2},     {"q4_1", HALO_TYPE_Q4_1, 3},
    {"q5_0", HALO_TYPE_Q5_0, 8},     {"q5_1", HALO_TYPE_Q5_1, 9},
    {"q2_K", HALO_TYPE_Q2_K, 10},    {"q3_K", HALO_TYPE_Q3_K, 11},
    {"q4_K", HALO_TYPE_Q4_K, 14},    {"q5_K", HALO_TYPE_Q5_K, 16},
    {"q6_K", HALO_TYPE_Q6_K, 18},    {"iq4_nl", HALO_TYPE_IQ4_NL, 25},
    {"iq4_xs", HALO_TYPE_IQ4_XS, 30}, {"mxfp4", HALO_TYPE_MXFP4, 38},
};

typedef struct mix_name {
    const char *name;
    int mix;
    int base;
    uint32_t file_type;
} mix_name;

static const mix_name mix_names[] = {
    {"Q3_K_S", SYNTH_MIX_Q3_K_S, HALO_TYPE_Q3_K, 11},
    {"Q3_K_M", SYNTH_MIX_Q3_K_M, HALO_TYPE_Q3_K, 12},
    {"Q3_K_L", SYNTH_MIX_Q3_K_L, HALO_TYPE_Q3_K, 13},
    {"Q4_K_S", SYNTH_MIX_Q4_K_S, HALO_TYPE_Q4_K, 14},
    {"Q4_K_M", SYNTH_MIX_Q4_K_M, HALO_TYPE_Q4_K, 15},
    {"Q5_K_S", SYNTH_MIX_Q5_K_S, HALO_TYPE_Q5_K, 16},
    {"Q5_K_M", SYNTH_MIX_Q5_K_M, HALO_TYPE_Q5_K, 17},
    {"MXFP4_MOE", SYNTH_MIX_MXFP4_MOE, HALO_TYPE_MXFP4, 38},
    /* the file types named after one type (halo quantize; synth writes those pure) */
    {"Q2_K", SYNTH_MIX_Q2_K, HALO_TYPE_Q2_K, 10},
    {"Q4_0", SYNTH_MIX_Q4_0, HALO_TYPE_Q4_0, 2},
    {"Q4_1", SYNTH_MIX_Q4_1, HALO_TYPE_Q4_1, 3},
    {"Q5_0", SYNTH_MIX_Q5_0, HALO_TYPE_Q5_0, 8},
    {"Q5_1", SYNTH_MIX_Q5_1, HALO_TYPE_Q5_1, 9},
    {"Q6_K", SYNTH_MIX_Q6_K, HALO_TYPE_Q6_K, 18},
    {"Q8_0", SYNTH_MIX_Q8_0, HALO_TYPE_Q8_0, 7},
    {"IQ4_NL", SYNTH_MIX_IQ4_NL, HALO_TYPE_IQ4_NL, 25},
    {"IQ4_XS", SYNTH_MIX_IQ4_XS, HALO_TYPE_IQ4_XS, 30},
};

/* synth's --type: the K mixes and MXFP4_MOE are mixes, a single type is pure */
static bool synth_mix(int mix) { return mix <= SYNTH_MIX_MXFP4_MOE; }

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

bool synth_type_parse(const char *text, synth_type_spec *out) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < COUNT(mix_names); i++) {
        if (synth_mix(mix_names[i].mix) && !strcasecmp(text, mix_names[i].name)) {
            snprintf(out->name, sizeof out->name, "%s", mix_names[i].name);
            out->pure_type = -1;
            out->mix = mix_names[i].mix;
            out->file_type = mix_names[i].file_type;
            return true;
        }
    }
    for (size_t i = 0; i < COUNT(pure_names); i++) {
        if (!strcasecmp(text, pure_names[i].name)) {
            snprintf(out->name, sizeof out->name, "%s", pure_names[i].name);
            out->pure_type = pure_names[i].type;
            out->mix = -1;
            out->file_type = pure_names[i].file_type;
            return true;
        }
    }
    return false;
}

bool synth_recipe_parse(const char *text, bool pure, synth_type_spec *out) {
    static const struct {
        const char *alias, *name;
    } aliases[] = {{"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}, {"Q3_K", "Q3_K_M"}};
    if (!pure) {
        for (size_t i = 0; i < COUNT(aliases); i++)
            if (!strcasecmp(text, aliases[i].alias)) text = aliases[i].name;
        for (size_t i = 0; i < COUNT(mix_names); i++) {
            if (strcasecmp(text, mix_names[i].name)) continue;
            memset(out, 0, sizeof *out);
            snprintf(out->name, sizeof out->name, "%s", mix_names[i].name);
            out->pure_type = -1;
            out->mix = mix_names[i].mix;
            out->file_type = mix_names[i].file_type;
            return true;
        }
    }
    /* every matrix in one type: the plain types always, any type with --pure (the K
     * mixes then name their base type) */
    for (size_t i = 0; pure && i < COUNT(mix_names); i++)
        if (!strcasecmp(text, mix_names[i].name)) {
            memset(out, 0, sizeof *out);
            snprintf(out->name, sizeof out->name, "%s", mix_names[i].name);
            out->pure_type = mix_names[i].base;
            out->mix = -1;
            out->file_type = mix_names[i].file_type;
            return true;
        }
    if (!synth_type_parse(text, out)) return false;
    if (!pure && out->pure_type >= 0 && out->pure_type != HALO_TYPE_F32 &&
        out->pure_type != HALO_TYPE_F16 && out->pure_type != HALO_TYPE_BF16 &&
        out->pure_type != HALO_TYPE_Q8_0 && out->pure_type != HALO_TYPE_MXFP4) {
        /* q3_K, q4_K, q5_K: llama-quantize has no such file type; q2_K etc. were
         * caught above as recipes */
        if (out->pure_type == HALO_TYPE_Q3_K || out->pure_type == HALO_TYPE_Q4_K ||
            out->pure_type == HALO_TYPE_Q5_K)
            return false;
    }
    return true;
}

const char *synth_recipe_names(void) {
    return "Q8_0 Q6_K Q5_K_M Q5_K_S Q5_0 Q5_1 Q4_K_M Q4_K_S Q4_0 Q4_1 IQ4_XS IQ4_NL Q3_K_L Q3_K_M "
           "Q3_K_S Q2_K MXFP4_MOE F16 BF16 F32; with --pure any of f32 f16 bf16 q8_0 q4_0 q4_1 "
           "q5_0 q5_1 q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs mxfp4";
}

const char *synth_type_names(void) {
    return "mixes Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M MXFP4_MOE; one type for all "
           "matrices: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_K q3_K q4_K q5_K q6_K iq4_nl "
           "iq4_xs mxfp4";
}

static int mix_base(int mix) {
    for (size_t i = 0; i < COUNT(mix_names); i++)
        if (mix_names[i].mix == mix) return mix_names[i].base;
    return HALO_TYPE_Q4_K;
}

static int64_t block_size(int type) {
    const halo_type_traits *tt = halo_type_get(type);
    return tt ? tt->block_size : 1;
}

/* llama-quantize's "more bits here": the first and last eighth of the layers and every
 * third layer in between. */
static bool use_more_bits(int64_t i, int64_t n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static int mix_type(const synth_model *m, const synth_type_spec *spec, const synth_tensor *t,
                    int64_t i_attn_v, int64_t n_attn_v) {
    const int mix = spec->mix;
    const int base = mix_base(mix);
    const int64_t n_layer = m->n_layer;
    const bool eight_experts = m->n_expert == 8;
    const bool q4km_q5km = mix == SYNTH_MIX_Q4_K_M || mix == SYNTH_MIX_Q5_K_M;
    const bool iq4 = mix == SYNTH_MIX_IQ4_NL || mix == SYNTH_MIX_IQ4_XS;
    const bool gqa4 = m->n_head_kv > 0 && m->n_head / m->n_head_kv >= 4;
    const bool tied_embd = m->tied_embeddings && t->category == SYNTH_CAT_TOKEN_EMBD;

    if (t->category == SYNTH_CAT_OUTPUT || tied_embd) {
        if (mix == SYNTH_MIX_MXFP4_MOE) return HALO_TYPE_Q8_0;
        if (t->ne[0] % block_size(base) != 0) return HALO_TYPE_Q8_0;
        return base == HALO_TYPE_Q8_0 ? HALO_TYPE_Q8_0 : HALO_TYPE_Q6_K;
    }
    if (mix == SYNTH_MIX_MXFP4_MOE) return t->ne[2] > 1 ? HALO_TYPE_MXFP4 : HALO_TYPE_Q8_0;

    switch (t->category) {
    case SYNTH_CAT_ATTN_V:
    case SYNTH_CAT_ATTN_QKV: {
        int type = base;
        if (mix == SYNTH_MIX_Q2_K) type = gqa4 ? HALO_TYPE_Q4_K : HALO_TYPE_Q3_K;
        else if (mix == SYNTH_MIX_Q3_K_M) type = i_attn_v < 2 ? HALO_TYPE_Q5_K : HALO_TYPE_Q4_K;
        else if (mix == SYNTH_MIX_Q3_K_L) type = HALO_TYPE_Q5_K;
        else if (iq4 && gqa4) type = HALO_TYPE_Q5_K;
        else if (q4km_q5km && use_more_bits(i_attn_v, n_attn_v)) type = HALO_TYPE_Q6_K;
        else if (mix == SYNTH_MIX_Q4_K_S && i_attn_v < 4) type = HALO_TYPE_Q5_K;
        if (eight_experts) type = HALO_TYPE_Q8_0;
        return type;
    }
    case SYNTH_CAT_ATTN_K:
        return eight_experts ? HALO_TYPE_Q8_0 : base;
    case SYNTH_CAT_FFN_DOWN: {
        int64_t i = t->layer;
        if (mix == SYNTH_MIX_Q2_K) return HALO_TYPE_Q3_K;
        if (mix == SYNTH_MIX_Q3_K_M) return i < n_layer / 16 ? HALO_TYPE_Q5_K : HALO_TYPE_Q4_K;
        if (mix == SYNTH_MIX_Q3_K_L) return HALO_TYPE_Q5_K;
        if (mix == SYNTH_MIX_Q4_K_M && use_more_bits(i, n_layer)) return HALO_TYPE_Q6_K;
        if (iq4 && !spec->has_imatrix && i < n_layer / 8) return HALO_TYPE_Q5_K;
        if (mix == SYNTH_MIX_Q5_K_M && use_more_bits(i, n_layer)) return HALO_TYPE_Q6_K;
        if (mix == SYNTH_MIX_Q4_K_S && i < n_layer / 8) return HALO_TYPE_Q5_K;
        if ((mix == SYNTH_MIX_Q4_0 || mix == SYNTH_MIX_Q5_0) && spec->has_imatrix && i < n_layer / 8)
            return mix == SYNTH_MIX_Q4_0 ? HALO_TYPE_Q4_1 : HALO_TYPE_Q5_1;
        return base;
    }
    case SYNTH_CAT_ATTN_OUTPUT:
        if (eight_experts) {
            if (mix == SYNTH_MIX_Q2_K || mix == SYNTH_MIX_Q3_K_S || mix == SYNTH_MIX_Q3_K_M ||
                mix == SYNTH_MIX_Q4_K_S || mix == SYNTH_MIX_Q4_K_M || iq4)
                return HALO_TYPE_Q5_K;
            return base;
        }
        if (mix == SYNTH_MIX_Q2_K) return HALO_TYPE_Q3_K;
        if (mix == SYNTH_MIX_Q3_K_M) return HALO_TYPE_Q4_K;
        if (mix == SYNTH_MIX_Q3_K_L) return HALO_TYPE_Q5_K;
        return base;
    default:
        return base;
    }
}

/* A type whose block size divides the row length, as llama-quantize falls back. */
static int fallback(int type, int64_t ncols) {
    if (ncols % block_size(type) == 0) return type;
    int r;
    switch (type) {
    case HALO_TYPE_IQ4_XS: r = HALO_TYPE_IQ4_NL; break;
    case HALO_TYPE_Q2_K:
    case HALO_TYPE_Q3_K: r = HALO_TYPE_Q4_0; break;
    case HALO_TYPE_Q4_K: r = HALO_TYPE_Q5_0; break;
    case HALO_TYPE_Q5_K: r = HALO_TYPE_Q5_1; break;
    case HALO_TYPE_Q6_K: r = HALO_TYPE_Q8_0; break;
    default: r = HALO_TYPE_Q8_0; break; /* llama-quantize has no rule: the safest 32-block */
    }
    return ncols % block_size(r) == 0 ? r : HALO_TYPE_F16;
}

int synth_choose_types(const synth_model *m, const synth_type_spec *spec, synth_tensor *t,
                       size_t n, halo_error *err) {
    int64_t n_attn_v = 0, i_attn_v = 0;
    for (size_t i = 0; i < n; i++)
        if (t[i].matrix && (t[i].category == SYNTH_CAT_ATTN_V || t[i].category == SYNTH_CAT_ATTN_QKV))
            n_attn_v++;

    for (size_t i = 0; i < n; i++) {
        synth_tensor *x = &t[i];
        int type = HALO_TYPE_F32;
        if (x->matrix) {
            if (spec->pure_type >= 0) {
                type = spec->pure_type;
            } else {
                type = mix_type(m, spec, x, i_attn_v, n_attn_v);
            }
            if (x->category == SYNTH_CAT_ATTN_V || x->category == SYNTH_CAT_ATTN_QKV) i_attn_v++;
            type = fallback(type, x->ne[0]);
        }
        x->type = type;
        size_t row = halo_type_row_size(type, x->ne[0]);
        uint64_t rows = (uint64_t)x->ne[1] * (uint64_t)x->ne[2] * (uint64_t)x->ne[3];
        if (row == 0 || halo_mul_overflow(row, rows, &x->nbytes))
            return halo_error_set(err, HALO_ERR_RANGE, "tensor %s: size of %s data out of range",
                                  x->name, halo_type_name(type));
    }
    return 0;
}
