/*
 * quant — the block formats of GGUF tensors.
 *
 * A type is a row in one traits table (quant.c), indexed by halo_type, whose
 * numbering is the GGUF/ggml type id stored in files. Every type that can
 * appear in a file has its block size and bytes per block here, so that a file
 * holding a format halo cannot decode yet still loads and is described; the
 * formats halo computes with also have a decoder to f32 and a plain
 * round-to-nearest reference encoder (`*_ref`, the oracle for faster ones).
 *
 * Decoders match the reference decoder of the GGUF ecosystem bit for bit
 * (checked against ../shared/fixtures/quant). Layouts: quant/blocks.h.
 *
 * Encoders are deterministic (the same input gives the same bytes), never
 * produce NaN or infinite block scales from finite input (scales saturate at the
 * format's largest finite value, so huge inputs clip and tiny ones may flush to
 * zero), and round every weight against the scales as the decoder will see them.
 * Reference figures per type: tests/quant/test_roundtrip.c.
 *
 * Block pointers must be aligned as the block struct requires (2 bytes; 4 for
 * Q8_K; F16/BF16/F32 data may be unaligned), which GGUF's 32-byte tensor
 * alignment always gives. Decoders and encoders are pure functions of their
 * arguments and safe to call from many threads.
 */
#ifndef HALO_QUANT_H
#define HALO_QUANT_H

#include "halo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum halo_type {
    HALO_TYPE_F32 = 0,
    HALO_TYPE_F16 = 1,
    HALO_TYPE_Q4_0 = 2,
    HALO_TYPE_Q4_1 = 3,
    /* 4, 5: retired (Q4_2, Q4_3) */
    HALO_TYPE_Q5_0 = 6,
    HALO_TYPE_Q5_1 = 7,
    HALO_TYPE_Q8_0 = 8,
    HALO_TYPE_Q8_1 = 9,
    HALO_TYPE_Q2_K = 10,
    HALO_TYPE_Q3_K = 11,
    HALO_TYPE_Q4_K = 12,
    HALO_TYPE_Q5_K = 13,
    HALO_TYPE_Q6_K = 14,
    HALO_TYPE_Q8_K = 15,
    HALO_TYPE_IQ2_XXS = 16,
    HALO_TYPE_IQ2_XS = 17,
    HALO_TYPE_IQ3_XXS = 18,
    HALO_TYPE_IQ1_S = 19,
    HALO_TYPE_IQ4_NL = 20,
    HALO_TYPE_IQ3_S = 21,
    HALO_TYPE_IQ2_S = 22,
    HALO_TYPE_IQ4_XS = 23,
    HALO_TYPE_I8 = 24,
    HALO_TYPE_I16 = 25,
    HALO_TYPE_I32 = 26,
    HALO_TYPE_I64 = 27,
    HALO_TYPE_F64 = 28,
    HALO_TYPE_IQ1_M = 29,
    HALO_TYPE_BF16 = 30,
    /* 31-33: retired (Q4_0_4_4, Q4_0_4_8, Q4_0_8_8) */
    HALO_TYPE_TQ1_0 = 34,
    HALO_TYPE_TQ2_0 = 35,
    /* 36-38: retired (IQ4_NL_4_4, IQ4_NL_4_8, IQ4_NL_8_8) */
    HALO_TYPE_MXFP4 = 39,
    HALO_TYPE_COUNT = 40,
} halo_type;

/* Decode n values (n a multiple of block_size) from blocks to f32. */
typedef void (*halo_to_float_fn)(const void *blocks, float *out, int64_t n);
/* Encode n values (n a multiple of block_size) to blocks, round to nearest. */
typedef void (*halo_from_float_fn)(const float *in, void *blocks, int64_t n);

typedef struct halo_type_traits {
    const char *name;        /* as llama.cpp prints it: "q4_K", "f16", "iq4_xs" */
    int64_t block_size;      /* weights per block (1 for plain types) */
    size_t type_size;        /* bytes per block */
    bool is_quantized;
    halo_to_float_fn to_float;          /* NULL where halo cannot decode the type */
    halo_from_float_fn from_float_ref;  /* NULL where halo has no encoder */
} halo_type_traits;

/* NULL for ids that are not (or no longer) a type. */
const halo_type_traits *halo_type_get(int type);
/* Name, or "unknown" for an invalid id. */
const char *halo_type_name(int type);
/* Case-insensitive lookup by name ("Q4_K", "q4_k", "bf16"); -1 if none. */
int halo_type_from_name(const char *name);
/* Bits per weight of a format: 8 * type_size / block_size (4.5 for q4_K). */
double halo_type_bits_per_weight(int type);

/* Bytes of a row of n values; 0 if n is not a multiple of the block size or on overflow. */
size_t halo_type_row_size(int type, int64_t n);

/* Scalar conversions (IEEE half with round-to-nearest-even; bf16 rounds to nearest
 * even, NaN kept quiet). */
float halo_fp16_to_fp32(uint16_t h);
uint16_t halo_fp32_to_fp16(float f);
float halo_bf16_to_fp32(uint16_t h);
uint16_t halo_fp32_to_bf16(float f);

/* Decode/encode whole rows through the traits table. Return HALO_ERR_UNSUPPORTED
 * when the type has no decoder/encoder and HALO_ERR_ARG when n is not a multiple
 * of the block size. */
int halo_quant_decode(int type, const void *blocks, float *out, int64_t n, halo_error *err);
int halo_quant_encode_ref(int type, const float *in, void *blocks, int64_t n, halo_error *err);

/* Encode n values of a KV cache row (a type the cache supports, n a multiple of its block
 * size): the reference encoder, except for IQ4_NL, whose scale search tries the
 * HALO_IQ4_NL_KV_TRY * 2 + 1 scales max / (-127 + 4t), |t| <= HALO_IQ4_NL_KV_TRY, each
 * refit once by least squares (the reference: 17), a third of the work for a cache
 * that encodes every token's rows and no worse a KL divergence (docs/QUANT.md). The GPU's
 * store (kernels/cuda/attn.cu) writes the same bytes. */
#define HALO_IQ4_NL_KV_TRY 2
void halo_quant_encode_kv(int type, const float *in, void *blocks, int64_t n);

/* ---- importance-weighted encoders (quant/quant_search.c) -------------------
 *
 * Encode n values (a multiple of the block size) choosing each block's scales (and
 * mins) to minimise sum_i imp[i] * (x[i] - decoded[i])^2, imp[n] the importance of
 * each value (e.g. the mean square of the activation that multiplies it, from an
 * importance matrix) or NULL (then a default weighting such as x^2 + small, the
 * usual choice without an imatrix). Types without a search use the reference
 * encoder. Thread-safe, no allocation beyond the stack.
 *
 * Searched: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
 * IQ4_XS, MXFP4 (F32/F16/BF16 convert; Q8_1/Q8_K use the reference encoder). The
 * default weights are |x| plus the block's RMS of x (uniform for MXFP4, whose only
 * choice is the exponent). Importances that are negative, NaN or infinite count
 * as 0; a block whose importances are all 0 gets the default weights. Every block
 * is also encoded by the reference encoder and the better of the two under the
 * weights is kept, so the weighted error is never above halo_quant_encode_ref's.
 * Deterministic; the same guarantees on scales, saturation and rounding as the
 * reference encoders; the output decodes with halo_quant_decode. Errors as
 * halo_quant_encode_ref, and HALO_ERR_RANGE if the row's size overflows. The
 * search costs ~0.1-0.7 s per million values on one core (figures per type:
 * tests/quant/test_search.c). */
int halo_quant_encode(int type, const float *in, void *blocks, int64_t n, const float *imp,
                      halo_error *err);

#endif /* HALO_QUANT_H */
