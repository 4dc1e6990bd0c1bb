/*
 * tools/quant_mix.h — `halo quantize --target-size / --target-bpw`: mixed precision chosen
 * by measurement (tools/quant_mix.c), and the row encoder it shares with the quantizer.
 */
#ifndef HALO_TOOLS_QUANT_MIX_H
#define HALO_TOOLS_QUANT_MIX_H

#include "halo.h"
#include "format/gguf.h"
#include "kernels/kernels.h"
#include "quant/imatrix.h"
#include "tools/quant_awq.h"

#include <stdbool.h>
#include <stdint.h>

/* Encode rows [row0, row0 + n_rows) of src (any type halo decodes) as `type` into out
 * (n_rows rows of halo_type_row_size(type, ne0) bytes) on pool's threads, each row
 * weighted by its matrix's (expert's) importances from im (may be NULL), its values first
 * multiplied by sc's scales (may be NULL; --awq, the importances divided by the squared
 * column scales); scratch holds 2 ne0 floats per thread. */
int quant_encode_rows(halo_threadpool *pool, const halo_gguf_tensor *src, int type,
                      const halo_imatrix *im, const quant_scales *sc, int64_t row0,
                      int64_t n_rows, float *scratch, void *out, halo_error *err);

#define QUANT_MIX_MAX_TYPES 16

typedef struct quant_mix_tensor {
    const halo_gguf_tensor *src;
    bool free;     /* the search chooses its type; else it is fixed at `type` / `bytes` */
    int type;      /* fixed: its type; free: the type chosen */
    uint64_t bytes; /* fixed: its bytes in the output; free: those of the type chosen */
    int group;     /* free: index of its group (out) */
} quant_mix_tensor;

typedef struct quant_mix_options {
    const char *model;       /* the input file, loaded for the forward passes */
    const char *calib;       /* the calibration text */
    int64_t n_ctx, n_chunks; /* its windows: n_chunks of n_ctx tokens */
    int types[QUANT_MIX_MAX_TYPES]; /* candidate types */
    int n_types;
    uint64_t budget;         /* bytes of tensor data, all tensors (fixed ones included) */
    const char *table;       /* measurements reused from and saved to this file, or NULL */
    const halo_imatrix *im;  /* weighs the encoders' rounding as in the output; may be NULL */
    int threads;             /* 0: the number of cores */
} quant_mix_options;

typedef struct quant_mix_result {
    double kld;       /* predicted mean KLD: the chosen types' measured costs summed */
    uint64_t bytes;   /* tensor data, all tensors */
    int n_groups;
} quant_mix_result;

/* Group the free tensors (per layer and role), measure on the calibration text the KL
 * divergence each group adds at each candidate type (the rest of the model as it is in
 * the input), then choose one type per group minimising the summed divergence within the
 * budget. Prints progress on stderr and the chosen map on stdout. Fills t[i].type,
 * t[i].bytes and t[i].group of the free tensors. */
int quant_mix_choose(const quant_mix_options *o, quant_mix_tensor *t, int64_t n,
                     quant_mix_result *res, halo_error *err);

#endif /* HALO_TOOLS_QUANT_MIX_H */
