/*
 * The traits table: one row per GGUF type id. Sizes are those of the GGUF
 * ecosystem's block layouts (quant/blocks.h holds the structs for the formats
 * halo decodes, with static asserts tying them to this table).
 */
#include "quant.h"
#include "quant_impl.h"

#include "util/util.h"

#include <ctype.h>
#include <string.h>

#define QK_K HALO_QK_K

static const halo_type_traits type_traits[HALO_TYPE_COUNT] = {
    [HALO_TYPE_F32] = {"f32", 1, 4, false, halo_to_float_f32, halo_from_float_f32},
    [HALO_TYPE_F16] = {"f16", 1, 2, false, halo_to_float_f16, halo_from_float_f16},
    [HALO_TYPE_Q4_0] = {"q4_0", 32, 18, true, halo_to_float_q4_0, halo_from_float_q4_0},
    [HALO_TYPE_Q4_1] = {"q4_1", 32, 20, true, halo_to_float_q4_1, halo_from_float_q4_1},
    [HALO_TYPE_Q5_0] = {"q5_0", 32, 22, true, halo_to_float_q5_0, halo_from_float_q5_0},
    [HALO_TYPE_Q5_1] = {"q5_1", 32, 24, true, halo_to_float_q5_1, halo_from_float_q5_1},
    [HALO_TYPE_Q8_0] = {"q8_0", 32, 34, true, halo_to_float_q8_0, halo_from_float_q8_0},
    [HALO_TYPE_Q8_1] = {"q8_1", 32, 36, true, halo_to_float_q8_1, halo_from_float_q8_1},
    [HALO_TYPE_Q2_K] = {"q2_K", QK_K, 84, true, halo_to_float_q2_k, halo_from_float_q2_k},
    [HALO_TYPE_Q3_K] = {"q3_K", QK_K, 110, true, halo_to_float_q3_k, halo_from_float_q3_k},
    [HALO_TYPE_Q4_K] = {"q4_K", QK_K, 144, true, halo_to_float_q4_k, halo_from_float_q4_k},
    [HALO_TYPE_Q5_K] = {"q5_K", QK_K, 176, true, halo_to_float_q5_k, halo_from_float_q5_k},
    [HALO_TYPE_Q6_K] = {"q6_K", QK_K, 210, true, halo_to_float_q6_k, halo_from_float_q6_k},
    [HALO_TYPE_Q8_K] = {"q8_K", QK_K, 292, true, halo_to_float_q8_k, halo_from_float_q8_k},
    [HALO_TYPE_IQ2_XXS] = {"iq2_xxs", QK_K, 66, true, NULL, NULL},
    [HALO_TYPE_IQ2_XS] = {"iq2_xs", QK_K, 74, true, NULL, NULL},
    [HALO_TYPE_IQ3_XXS] = {"iq3_xxs", QK_K, 98, true, NULL, NULL},
    [HALO_TYPE_IQ1_S] = {"iq1_s", QK_K, 50, true, NULL, NULL},
    [HALO_TYPE_IQ4_NL] = {"iq4_nl", 32, 18, true, halo_to_float_iq4_nl, halo_from_float_iq4_nl},
    [HALO_TYPE_IQ3_S] = {"iq3_s", QK_K, 110, true, NULL, NULL},
    [HALO_TYPE_IQ2_S] = {"iq2_s", QK_K, 82, true, NULL, NULL},
    [HALO_TYPE_IQ4_XS] = {"iq4_xs", QK_K, 136, true, halo_to_float_iq4_xs, halo_from_float_iq4_xs},
    [HALO_TYPE_I8] = {"i8", 1, 1, false, NULL, NULL},
    [HALO_TYPE_I16] = {"i16", 1, 2, false, NULL, NULL},
    [HALO_TYPE_I32] = {"i32", 1, 4, false, NULL, NULL},
    [HALO_TYPE_I64] = {"i64", 1, 8, false, NULL, NULL},
    [HALO_TYPE_F64] = {"f64", 1, 8, false, NULL, NULL},
    [HALO_TYPE_IQ1_M] = {"iq1_m", QK_K, 56, true, NULL, NULL},
    [HALO_TYPE_BF16] = {"bf16", 1, 2, false, halo_to_float_bf16, halo_from_float_bf16},
    [HALO_TYPE_TQ1_0] = {"tq1_0", QK_K, 54, true, NULL, NULL},
    [HALO_TYPE_TQ2_0] = {"tq2_0", QK_K, 66, true, NULL, NULL},
    [HALO_TYPE_MXFP4] = {"mxfp4", 32, 17, true, halo_to_float_mxfp4, halo_from_float_mxfp4},
};

const halo_type_traits *halo_type_get(int type) {
    if (type < 0 || type >= HALO_TYPE_COUNT || !type_traits[type].name) return NULL;
    return &type_traits[type];
}

const char *halo_type_name(int type) {
    const halo_type_traits *t = halo_type_get(type);
    return t ? t->name : "unknown";
}

int halo_type_from_name(const char *name) {
    for (int t = 0; t < HALO_TYPE_COUNT; t++) {
        if (!type_traits[t].name) continue;
        if (strcasecmp(type_traits[t].name, name) == 0) return t;
    }
    return -1;
}

double halo_type_bits_per_weight(int type) {
    const halo_type_traits *t = halo_type_get(type);
    return t ? 8.0 * (double)t->type_size / (double)t->block_size : 0.0;
}

size_t halo_type_row_size(int type, int64_t n) {
    const halo_type_traits *t = halo_type_get(type);
    if (!t || n < 0 || n % t->block_size) return 0;
    uint64_t bytes;
    if (halo_mul_overflow((uint64_t)(n / t->block_size), t->type_size, &bytes)) return 0;
    if (bytes > SIZE_MAX) return 0;
    return (size_t)bytes;
}

int halo_quant_decode(int type, const void *blocks, float *out, int64_t n, halo_error *err) {
    const halo_type_traits *t = halo_type_get(type);
    if (!t) return halo_error_set(err, HALO_ERR_ARG, "unknown tensor type %d", type);
    if (!t->to_float)
        return halo_error_set(err, HALO_ERR_UNSUPPORTED, "halo cannot decode %s tensors yet",
                              t->name);
    if (n < 0 || n % t->block_size)
        return halo_error_set(err, HALO_ERR_ARG, "%lld values is not a whole number of %s blocks",
                              (long long)n, t->name);
    t->to_float(blocks, out, n);
    return HALO_OK;
}

int halo_quant_encode_check(int type, int64_t n, const halo_type_traits **out, halo_error *err) {
    const halo_type_traits *t = halo_type_get(type);
    if (!t) return halo_error_set(err, HALO_ERR_ARG, "unknown tensor type %d", type);
    if (!t->from_float_ref)
        return halo_error_set(err, HALO_ERR_UNSUPPORTED, "halo cannot encode %s tensors yet",
                              t->name);
    if (n < 0 || n % t->block_size)
        return halo_error_set(err, HALO_ERR_ARG, "%lld values is not a whole number of %s blocks",
                              (long long)n, t->name);
    *out = t;
    return HALO_OK;
}

void halo_quant_encode_kv(int type, const float *in, void *blocks, int64_t n) {
    if (type == HALO_TYPE_IQ4_NL) halo_from_float_iq4_nl_kv(in, blocks, n);
    else halo_type_get(type)->from_float_ref(in, blocks, n);
}

int halo_quant_encode_ref(int type, const float *in, void *blocks, int64_t n, halo_error *err) {
    const halo_type_traits *t = NULL;
    int rc = halo_quant_encode_check(type, n, &t, err);
    if (rc) return rc;
    t->from_float_ref(in, blocks, n);
    return HALO_OK;
}
