/*
 * vulkan_matmul_bench — the Vulkan products (kernels/vulkan/ops.c) in GFLOP/s
 * (2 * rows * cols * tokens a product), the matrix-vector path (shaders/mul_mv.glsl, as
 * HALO_VK_MM=0) against the tiled one (shaders/mul_mm.glsl, forced from 2 tokens: as
 * HALO_VK_MM=2) on the same device, for token counts around the default switch
 * (HALO_VK_MM_MIN_TOK) and prompt sizes, and the MoE products by expert id (8 of 64
 * experts a token, grouped by expert on the tiled path where there are 4 tokens or more
 * an expert on average: kernels/vulkan/ops.c MM_MIN_PER_MAT).
 *
 *   build/vulkan_matmul_bench [device] [rows cols [prompt]]   (default 0, 1024 x 1024)
 *
 * `prompt`: bf16 and q4_K at 64 and 256 tokens only (to compare tile shapes).
 *
 * Times are wall clock over a few products, synchronized at the end; on a CPU device
 * (lavapipe) the process's CPU time (GFLOP per CPU second). Not a test: figures go to
 * docs/PERF.md.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HALO_HAVE_VULKAN
#include "kernels/vulkan/vk_ops.h"
#include "quant/quant.h"

/* on a CPU device (lavapipe) the process's CPU time: its threads are the device, and the
 * wall clock of a shared machine says more about the other processes */
static bool cpu_device;

static double now(void) {
    struct timespec ts;
    clock_gettime(cpu_device ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static halo_vk *open_vk(int device, const char *mm) {
    setenv("HALO_VK_MM", mm, 1); /* read by halo_vk_open */
    halo_error err = {0};
    halo_vk *vk = halo_vk_open(device, NULL, &err);
    if (!vk) fprintf(stderr, "vulkan_matmul_bench: %s\n", err.msg);
    return vk;
}

/* n_mat matrices of n_rows x n_cols of type (one random row repeated: decoding costs the
 * same whatever the values) and room for n_tok tokens in and out */
typedef struct {
    void *w;
    float *x, *y;
    size_t rs;
} bufs;

static int make(halo_vk *vk, int type, int64_t n_mat, int64_t n_rows, int64_t n_cols,
                int64_t n_tok, bufs *b) {
    b->rs = halo_type_row_size(type, n_cols);
    float *row = malloc(sizeof(float) * (size_t)n_cols);
    char *host = malloc(b->rs * (size_t)(n_mat * n_rows));
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_cols));
    halo_error err = {0};
    for (int64_t c = 0; c < n_cols; c++)
        row[c] = (float)((c * 7919) % 2001 - 1000) * 1e-3f;
    halo_quant_encode_ref(type, row, host, n_cols, &err);
    for (int64_t r = 1; r < n_mat * n_rows; r++)
        memcpy(host + r * b->rs, host, b->rs);
    for (int64_t i = 0; i < n_tok * n_cols; i++)
        x[i] = (float)(i % 17) * 0.1f - 0.8f;
    b->w = halo_vk_alloc(vk, b->rs * (size_t)(n_mat * n_rows));
    b->x = halo_vk_alloc(vk, sizeof(float) * (size_t)(n_tok * n_cols));
    b->y = halo_vk_alloc(vk, sizeof(float) * (size_t)(n_tok * n_rows * 8));
    int rc = !b->w || !b->x || !b->y ||
             halo_vk_upload(vk, b->w, host, b->rs * (size_t)(n_mat * n_rows)) ||
             halo_vk_upload(vk, b->x, x, sizeof(float) * (size_t)(n_tok * n_cols));
    free(row), free(host), free(x);
    return rc;
}

static void drop(halo_vk *vk, bufs *b) {
    halo_vk_free(vk, b->w), halo_vk_free(vk, b->x), halo_vk_free(vk, b->y);
}

/* seconds a product of n_tok tokens (reps of them, after one to build the pipeline) */
static double time_dense(halo_vk *vk, int type, int64_t n_rows, int64_t n_cols, int64_t n_tok) {
    bufs b;
    if (make(vk, type, 1, n_rows, n_cols, n_tok, &b)) return -1;
    halo_vk_matmul(vk, type, b.w, b.rs, n_rows, n_cols, b.x, n_tok, b.y);
    halo_vk_sync(vk);
    int reps = n_tok >= 64 ? 2 : 4;
    double t0 = now();
    for (int i = 0; i < reps; i++)
        halo_vk_matmul(vk, type, b.w, b.rs, n_rows, n_cols, b.x, n_tok, b.y);
    int rc = halo_vk_sync(vk);
    double dt = (now() - t0) / reps;
    drop(vk, &b);
    return rc ? -1 : dt;
}

static double time_moe(halo_vk *vk, int type, int64_t n_rows, int64_t n_cols, int32_t n_tok) {
    enum { N_EXP = 64, K = 8 };
    bufs b;
    if (make(vk, type, N_EXP, n_rows, n_cols, n_tok, &b)) return -1;
    int32_t n = n_tok * K, *ids = malloc(sizeof(int32_t) * (size_t)n);
    uint32_t s = 12345;
    for (int32_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        ids[i] = (int32_t)((i / K * 37 + (i % K) * 7 + (s >> 29)) % N_EXP);
    }
    int32_t *d_ids = halo_vk_alloc(vk, sizeof(int32_t) * (size_t)n);
    halo_vk_upload(vk, d_ids, ids, sizeof(int32_t) * (size_t)n);
    halo_vk_matmul_id(vk, type, b.w, b.rs, b.rs * (size_t)n_rows, n_rows, n_cols, b.x, K, d_ids,
                      n, b.y, N_EXP);
    halo_vk_sync(vk);
    double t0 = now();
    halo_vk_matmul_id(vk, type, b.w, b.rs, b.rs * (size_t)n_rows, n_rows, n_cols, b.x, K, d_ids,
                      n, b.y, N_EXP);
    int rc = halo_vk_sync(vk);
    double dt = now() - t0;
    halo_vk_free(vk, d_ids), drop(vk, &b), free(ids);
    return rc ? -1 : dt;
}
#endif

int main(int argc, char **argv) {
#ifdef HALO_HAVE_VULKAN
    int device = argc > 1 ? atoi(argv[1]) : 0;
    int64_t n_rows = argc > 3 ? atoll(argv[2]) : 1024, n_cols = argc > 3 ? atoll(argv[3]) : 1024;
    halo_vk *mv = open_vk(device, "0"), *mm = open_vk(device, "2"); /* tiled from 2 tokens */
    if (!mv || !mm) return 1;
    cpu_device = strcmp(halo_vk_info(mm)->type, "cpu") == 0;
    printf("%s: %lld x %lld, GFLOP/s (2 rows cols tokens a product)%s\n",
           halo_vk_info(mm)->name, (long long)n_rows, (long long)n_cols,
           cpu_device ? " per CPU second" : "");
    printf("%-6s %5s %10s %10s\n", "type", "tok", "mat-vec", "tiled");
    const int types[] = {HALO_TYPE_BF16, HALO_TYPE_Q4_K, HALO_TYPE_F16, HALO_TYPE_Q8_0};
    const int64_t toks[] = {64, 256, 4, 8, 12, 16, 32};
    const bool prompt = argc > 4 && strcmp(argv[4], "prompt") == 0;
    for (size_t i = 0; i < (prompt ? 2 : sizeof types / sizeof *types); i++)
        for (size_t j = 0; j < (prompt ? 2 : sizeof toks / sizeof *toks); j++) {
            double f = 2.0 * (double)(n_rows * n_cols * toks[j]) * 1e-9;
            double a = time_dense(mv, types[i], n_rows, n_cols, toks[j]);
            double b = time_dense(mm, types[i], n_rows, n_cols, toks[j]);
            printf("%-6s %5lld %10.2f %10.2f\n", halo_type_name(types[i]), (long long)toks[j],
                   f / a, f / b);
        }
    if (prompt) goto done;
    printf("by expert id, 8 of 64 experts of %lld x %lld a token:\n", (long long)(n_rows / 2),
           (long long)n_cols);
    const int32_t mtoks[] = {4, 16, 32, 64, 256};
    for (size_t j = 0; j < sizeof mtoks / sizeof *mtoks; j++) {
        double f = 2.0 * (double)(n_rows / 2 * n_cols) * mtoks[j] * 8 * 1e-9;
        double a = time_moe(mv, HALO_TYPE_BF16, n_rows / 2, n_cols, mtoks[j]);
        double b = time_moe(mm, HALO_TYPE_BF16, n_rows / 2, n_cols, mtoks[j]);
        printf("%-6s %5d %10.2f %10.2f\n", "bf16", mtoks[j], f / a, f / b);
    }
done:
    halo_vk_close(mv), halo_vk_close(mm);
    return 0;
#else
    (void)argc, (void)argv;
    printf("vulkan_matmul_bench: built without Vulkan\n");
    return 0;
#endif
}
