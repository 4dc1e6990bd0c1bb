/*
 * quant/imatrix.h — importance matrices: the per-input-channel activation
 * statistics of a model's matrices, gathered over a calibration text (`halo
 * imatrix`), that quantization weighs its rounding errors with.
 *
 * The file is the GGUF imatrix format that llama.cpp's llama-imatrix writes and
 * reads, so files go both ways:
 *   - metadata: general.type = "imatrix" (string), imatrix.datasets (array of
 *     strings: the calibration files), imatrix.chunk_count and imatrix.chunk_size
 *     (u32: chunks evaluated, tokens per chunk);
 *   - per weight W (its GGUF name, e.g. "blk.0.ffn_up_exps.weight"), two F32
 *     tensors: "W.in_sum2", the sum over every activation row x that multiplied W
 *     of x[i]^2, per input channel i, shape [n_cols] (2-D weights) or
 *     [n_cols, n_expert] (3-D expert weights: each expert's own sums); and
 *     "W.counts", the number of rows summed, shape [1] or [1, n_expert];
 *   - tensors in name order (strcmp), as llama-imatrix writes them.
 * The importance of channel i of matrix e is in_sum2[e][i] / counts[e].
 */
#ifndef HALO_QUANT_IMATRIX_H
#define HALO_QUANT_IMATRIX_H

#include "halo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- reading ---------------------------------------------------------------- */

typedef struct halo_imatrix halo_imatrix;

/* Load an imatrix GGUF (halo's or llama-imatrix's). Every pair of tensors is
 * checked (types, shapes, sizes, finite non-negative values); a file that is not an
 * imatrix, or is inconsistent, gives HALO_ERR_FORMAT naming the tensor. */
int halo_imatrix_load(const char *path, halo_imatrix **out, halo_error *err);
void halo_imatrix_free(halo_imatrix *im);

/* The importance of the n_cols input channels of matrix `expert` (0 for 2-D weights)
 * of tensor `name` (its GGUF name, e.g. "blk.0.ffn_up_exps.weight"): the mean square
 * activation (in_sum2 / count); NULL when the file has nothing for it (no entry, or
 * that expert saw no rows) or the shape differs. Valid until halo_imatrix_free. */
const float *halo_imatrix_get(const halo_imatrix *im, const char *name, int64_t expert,
                              int64_t n_cols);
/* imatrix.chunk_count (0 when the file does not say). */
int32_t halo_imatrix_chunks(const halo_imatrix *im);
/* imatrix.chunk_size (0 when the file does not say). */
int32_t halo_imatrix_chunk_size(const halo_imatrix *im);

/* The entries, in file order: name, input channels, matrices (1 for 2-D weights). */
int64_t halo_imatrix_n_entries(const halo_imatrix *im);
const char *halo_imatrix_entry_at(const halo_imatrix *im, int64_t i, int64_t *n_cols,
                                  int64_t *n_mats);
/* The raw statistics of matrix `expert` of `name`: in_sum2 [n_cols] and the row
 * count; false when absent. */
bool halo_imatrix_raw(const halo_imatrix *im, const char *name, int64_t expert,
                      const float **in_sum2, float *count);

/* ---- writing ---------------------------------------------------------------- */

typedef struct halo_imatrix_entry {
    const char *name;     /* the weight's GGUF name */
    int64_t n_cols;       /* input channels (the weight's ne[0]) */
    int64_t n_mats;       /* matrices: experts of a 3-D weight, 1 otherwise */
    bool per_expert;      /* a 3-D weight: shapes [n_cols, n_mats] and [1, n_mats] */
    const float *in_sum2; /* [n_mats][n_cols] */
    const float *counts;  /* [n_mats] */
} halo_imatrix_entry;

/* Write an imatrix GGUF: the entries (sorted by name here), the datasets (file
 * names), chunks evaluated and tokens per chunk. On failure the partial file is
 * removed. */
int halo_imatrix_write(const char *path, const halo_imatrix_entry *entries, size_t n_entries,
                       const char *const *datasets, size_t n_datasets, uint32_t chunk_count,
                       uint32_t chunk_size, halo_error *err);

#endif /* HALO_QUANT_IMATRIX_H */
