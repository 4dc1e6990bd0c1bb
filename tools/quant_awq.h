/*
 * tools/quant_awq.h — `halo quantize --awq`: salient-weight protection by per-input-channel
 * scales folded into the operation before each matrix (tools/quant_awq.c).
 */
#ifndef HALO_TOOLS_QUANT_AWQ_H
#define HALO_TOOLS_QUANT_AWQ_H

#include "halo.h"
#include "format/gguf.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "quant/imatrix.h"

#include <stdbool.h>
#include <stdint.h>

/* What the quantizer multiplies a tensor's decoded values by before encoding them:
 * value (mat, row r, column j) becomes value * col[mat * ne0 + j] * row[mat * ne1 + r]
 * (either may be NULL: all ones). An input channel multiplied by c also divides its
 * importance by c^2 (the activation it meets is divided by c). */
typedef struct quant_scales {
    const float *col; /* [n_mats][ne0] */
    const float *row; /* [n_mats][ne1] */
} quant_scales;

typedef struct quant_awq quant_awq;

/* Plan the scales for the file g: types[i] is the type tensor i will be written in, or
 * -1 for one copied as it is (a copied tensor that gets scales is written as F32).
 * alpha >= 0 fixes the exponent for every group; alpha < 0 searches it per group on the
 * grid 0, 0.1, .., 1 for the least importance-weighted output error of the group's
 * matrices in their types. Prints one line per group on stderr. im must be given. */
int quant_awq_plan(const halo_gguf *g, const halo_hparams *hp, const halo_imatrix *im,
                   const int *types, double alpha, halo_threadpool *pool, quant_awq **out,
                   halo_error *err);
/* Tensor i's scales, or NULL where it is unchanged. */
const quant_scales *quant_awq_scales(const quant_awq *a, int64_t i);
void quant_awq_free(quant_awq *a);

#endif /* HALO_TOOLS_QUANT_AWQ_H */
