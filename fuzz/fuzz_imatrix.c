/*
 * libFuzzer target for the importance-matrix reader (quant/imatrix.c): the input is
 * written to a file (the reader takes a path, as halo quantize --imatrix does), loaded,
 * and every entry is read back through the lookups a quantizer makes, so that a file the
 * reader accepts but describes wrongly (shapes, counts, sizes) shows up as an ASan/UBSan
 * report.
 *
 *   ./build-fuzz/fuzz_imatrix -rss_limit_mb=2048 -max_total_time=60 fuzz/seeds/fuzz_imatrix
 * The seed is a small imatrix written by `halo imatrix` on tiny-llama-f16.
 */
#include "quant/imatrix.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile double sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/halo-fuzz-imatrix-%d.gguf", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    if (size && fwrite(data, 1, size, f) != size) {
        fclose(f);
        return 0;
    }
    fclose(f);
    halo_imatrix *im = NULL;
    halo_error err = {0};
    if (halo_imatrix_load(path, &im, &err) == 0) {
        sink += halo_imatrix_chunks(im) + halo_imatrix_chunk_size(im);
        for (int64_t i = 0; i < halo_imatrix_n_entries(im); i++) {
            int64_t n_cols = 0, n_mats = 0;
            const char *name = halo_imatrix_entry_at(im, i, &n_cols, &n_mats);
            if (!name) continue;
            for (int64_t e = 0; e < n_mats && e < 4; e++) {
                const float *v = halo_imatrix_get(im, name, e, n_cols);
                if (v && n_cols > 0) sink += v[0] + v[n_cols - 1];
            }
            sink += halo_imatrix_get(im, name, n_mats, n_cols) != NULL; /* out of range */
            sink += halo_imatrix_get(im, name, 0, n_cols + 1) != NULL;  /* wrong width */
        }
        halo_imatrix_free(im);
    } else {
        sink += (double)strlen(err.msg);
    }
    return 0;
}
