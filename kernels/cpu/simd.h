/*
 * simd — the per-path matrix-product kernels behind halo_matmul (matmul.c picks
 * one at run time). Internal to kernels/cpu.
 *
 * Each path computes rows [r0, r1) of y for every token. Two strategies:
 *  - few tokens (decode, n_tokens <= HALO_MM_FUSED_MAX): memory-bound, so each
 *    chunk of weights is decoded in registers (quant types: unpacked to int8
 *    codes and per-16 scales in L1, then scaled to f32) and multiplied into the
 *    tokens at once: the weights are read from memory once;
 *  - many tokens (prefill): compute-bound, so a panel of rows x KC columns is
 *    decoded to f32 once into a stack buffer and reused by a register-blocked
 *    micro-kernel over every tile of tokens.
 * Decoded weights are bit-exact with the reference decoders (see quant/blocks.h:
 * every product is exact, and the one rounding add of a min is done the same
 * way), so a path differs from halo_matmul_ref only in float summation order.
 */
#ifndef HALO_KERNELS_SIMD_H
#define HALO_KERNELS_SIMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Up to this many tokens a product takes the fused (decode) strategy. */
#define HALO_MM_FUSED_MAX 4

typedef struct halo_mm_args {
    int type;
    const char *w;
    size_t row_stride;
    int64_t n_rows, n_cols, n_tokens;
    const float *x;
    float *y;
} halo_mm_args;

typedef void (*halo_mm_rows_fn)(const halo_mm_args *a, int64_t r0, int64_t r1);

/* Whether the path has kernels for `type` (halo_matmul falls back to scalar if not). */
bool halo_mm_type_ok_avx2(int type);
bool halo_mm_type_ok_avx512(int type);

void halo_mm_rows_scalar(const halo_mm_args *a, int64_t r0, int64_t r1);
void halo_mm_rows_avx2(const halo_mm_args *a, int64_t r0, int64_t r1);
void halo_mm_rows_avx512(const halo_mm_args *a, int64_t r0, int64_t r1);

#endif /* HALO_KERNELS_SIMD_H */
