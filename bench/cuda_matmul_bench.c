/*
 * cuda_matmul_bench — decode speed of the CUDA matrix products (kernels/cuda/matmul.cu)
 * as GB/s of weight bytes read, against the GPU's copy bandwidth measured here.
 *
 *   build/cuda_matmul_bench
 *
 * One token on 14336 x 4096 and 4096 x 14336 matrices, and MoE decode: matmul_id with
 * 8 of 256 experts of 512 x 2048 (and 2048 x 512). Several copies of each matrix are
 * cycled so the weights come from HBM, not the 50 MB L2. Times are wall clock over
 * many launches, the stream synchronized once at the end.
 *
 * Prefill (TFLOP/s, 2 * rows * cols * tokens per product): 512 tokens on 4096 x 4096
 * and the Qwen3.5-35B-A3B shapes (8192 x 2048, 2048 x 4096), and the MoE prefill:
 * matmul_id of 512 tokens x 8 of 256 experts (4096 assignments) on 512 x 2048 and
 * 2048 x 512 experts. Each line says whether the product ran on the int8 tensor cores
 * ([int8], kernels/cuda/mmq.cu) or in f32 ([f32]); after the full run the bench runs
 * itself again with HALO_CUDA_MMQ=0 for the prefill part (`cuda_matmul_bench prefill`
 * runs only that part, in the current environment). Not a test: figures go to
 * docs/PERF.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef HALO_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#include "quant/quant.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Random blocks: encode one random row and repeat it (with the scales perturbed by
 * nothing: decoding cost does not depend on the values). */
static void *upload_matrix(void *st, int type, int64_t n_rows, int64_t n_cols, size_t *row_size) {
    const halo_type_traits *tr = halo_type_get(type);
    const size_t rs = halo_type_row_size(type, n_cols);
    float *row = malloc(sizeof(float) * n_cols);
    for (int64_t c = 0; c < n_cols; c++) row[c] = (float)((c * 7919) % 2001 - 1000) * 1e-3f;
    char *enc = malloc(rs);
    tr->from_float_ref(row, enc, n_cols);
    const int64_t chunk_rows = 256;
    char *host = malloc(rs * chunk_rows);
    for (int64_t r = 0; r < chunk_rows; r++) memcpy(host + r * rs, enc, rs);
    char *d = halo_cuda_malloc(rs * n_rows);
    if (d)
        for (int64_t r = 0; r < n_rows; r += chunk_rows) {
            const int64_t n = n_rows - r < chunk_rows ? n_rows - r : chunk_rows;
            halo_cuda_memcpy(st, d + r * rs, host, rs * n);
        }
    halo_cuda_stream_sync(st);
    free(row);
    free(enc);
    free(host);
    *row_size = rs;
    return d;
}

enum { COPIES = 8 };

static void bench_dense(void *st, int type, int64_t n_rows, int64_t n_cols, int64_t n_tok,
                        float *d_x, float *d_y) {
    size_t rs;
    /* COPIES matrices in one allocation: more than the L2 holds */
    void *d_w = upload_matrix(st, type, n_rows * COPIES, n_cols, &rs);
    if (!d_w) {
        printf("  %s: out of memory\n", halo_type_name(type));
        return;
    }
    const size_t mat = rs * n_rows;
    int reps = 200;
    for (int i = 0; i < 10; i++)
        halo_cuda_matmul(st, type, (char *)d_w + (i % COPIES) * mat, rs, n_rows, n_cols, d_x,
                         n_tok, d_y);
    halo_cuda_stream_sync(st);
    double t0 = now();
    int rc = 0;
    for (int i = 0; i < reps; i++)
        rc |= halo_cuda_matmul(st, type, (char *)d_w + (i % COPIES) * mat, rs, n_rows, n_cols,
                               d_x, n_tok, d_y);
    halo_cuda_stream_sync(st);
    const double dt = (now() - t0) / reps;
    if (n_tok <= 8)
        printf("  %-6s %6lld x %5lld  %3lld tok: %8.2f us  %7.1f GB/s%s\n", halo_type_name(type),
               (long long)n_rows, (long long)n_cols, (long long)n_tok, dt * 1e6,
               (double)mat / dt * 1e-9, rc ? "  (launch failed)" : "");
    else
        printf("  %-6s %6lld x %5lld  %3lld tok: %8.2f us  %7.2f TFLOP/s %s%s\n",
               halo_type_name(type), (long long)n_rows, (long long)n_cols, (long long)n_tok,
               dt * 1e6, 2.0 * n_rows * n_cols * n_tok / dt * 1e-12,
               halo_cuda_matmul_xq(type, n_tok) ? "[int8]" : "[f32]", rc ? "  (launch failed)" : "");
    halo_cuda_free(d_w);
}

static void bench_moe(void *st, int type, int64_t n_rows, int64_t n_cols, float *d_x, float *d_y,
                      int32_t *d_ids) {
    enum { N_EXP = 256, K = 8 };
    size_t rs;
    void *d_w = upload_matrix(st, type, n_rows * N_EXP, n_cols, &rs);
    if (!d_w) {
        printf("  %s: out of memory\n", halo_type_name(type));
        return;
    }
    const size_t mat = rs * n_rows;
    /* 32 routings of 8 distinct experts, cycled */
    int32_t ids[32 * K];
    uint32_t s = 12345;
    for (int i = 0; i < 32; i++)
        for (int j = 0; j < K; j++) {
            s = s * 1664525u + 1013904223u;
            ids[i * K + j] = (int32_t)((i * 37 + j * 31 + (s >> 28)) % N_EXP);
            for (int b = 0; b < j; b++)
                if (ids[i * K + b] == ids[i * K + j]) ids[i * K + j] = (ids[i * K + j] + 1) % N_EXP;
        }
    halo_cuda_memcpy(st, d_ids, ids, sizeof ids);
    const int reps = 500;
    for (int i = 0; i < 10; i++)
        halo_cuda_matmul_id(st, type, d_w, rs, mat, n_rows, n_cols, d_x, K, d_ids + (i % 32) * K,
                            K, d_y, N_EXP);
    halo_cuda_stream_sync(st);
    double t0 = now();
    int rc = 0;
    for (int i = 0; i < reps; i++)
        rc |= halo_cuda_matmul_id(st, type, d_w, rs, mat, n_rows, n_cols, d_x, K,
                                  d_ids + (i % 32) * K, K, d_y, N_EXP);
    halo_cuda_stream_sync(st);
    const double dt = (now() - t0) / reps;
    printf("  %-6s %d x (%5lld x %5lld) of %d experts: %8.2f us  %7.1f GB/s%s\n",
           halo_type_name(type), K, (long long)n_rows, (long long)n_cols, N_EXP, dt * 1e6,
           (double)K * mat / dt * 1e-9, rc ? "  (launch failed)" : "");
    halo_cuda_free(d_w);
}

/* MoE prefill: n_tok tokens, K = 8 distinct of 256 experts each (random routing) */
static void bench_moe_prefill(void *st, int type, int64_t n_rows, int64_t n_cols, int32_t n_tok,
                              float *d_x, float *d_y, int32_t *d_ids) {
    enum { N_EXP = 256, K = 8 };
    size_t rs;
    void *d_w = upload_matrix(st, type, n_rows * N_EXP, n_cols, &rs);
    if (!d_w) {
        printf("  %s: out of memory\n", halo_type_name(type));
        return;
    }
    const size_t mat = rs * n_rows;
    const int32_t na = n_tok * K;
    int32_t *ids = malloc(sizeof(int32_t) * na);
    uint32_t s = 777;
    for (int32_t a = 0; a < na; a++) {
        int32_t e;
        bool dup;
        do {
            s = s * 1664525u + 1013904223u;
            e = (int32_t)((s >> 8) % N_EXP);
            dup = false;
            for (int32_t b = a - a % K; b < a; b++) dup |= ids[b] == e;
        } while (dup);
        ids[a] = e;
    }
    halo_cuda_memcpy(st, d_ids, ids, sizeof(int32_t) * na);
    const int reps = 100;
    for (int i = 0; i < 5; i++)
        halo_cuda_matmul_id(st, type, d_w, rs, mat, n_rows, n_cols, d_x, K, d_ids, na, d_y, N_EXP);
    halo_cuda_stream_sync(st);
    double t0 = now();
    int rc = 0;
    for (int i = 0; i < reps; i++)
        rc |= halo_cuda_matmul_id(st, type, d_w, rs, mat, n_rows, n_cols, d_x, K, d_ids, na, d_y, N_EXP);
    halo_cuda_stream_sync(st);
    const double dt = (now() - t0) / reps;
    printf("  %-6s %d tok x %d of %d experts (%5lld x %5lld): %8.2f us  %7.2f TFLOP/s %s%s\n",
           halo_type_name(type), n_tok, K, N_EXP, (long long)n_rows, (long long)n_cols, dt * 1e6,
           2.0 * na * n_rows * n_cols / dt * 1e-12,
           halo_cuda_matmul_id_xq(type, na) ? "[int8]" : "[f32]", rc ? "  (launch failed)" : "");
    free(ids);
    halo_cuda_free(d_w);
}

static void bench_prefill(void *st, float *d_x, float *d_y, int32_t *d_ids) {
    static const int types[] = {HALO_TYPE_Q4_K, HALO_TYPE_Q5_K, HALO_TYPE_Q6_K, HALO_TYPE_Q8_0,
                                HALO_TYPE_IQ4_XS, HALO_TYPE_BF16};
    const char *mmq = getenv("HALO_CUDA_MMQ");
    printf("prefill, 512 tokens (HALO_CUDA_MMQ=%s):\n", mmq ? mmq : "(unset)");
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        bench_dense(st, types[i], 4096, 4096, 512, d_x, d_y);
    printf("Qwen3.5-35B-A3B prefill shapes, 512 tokens:\n");
    static const int a3b[] = {HALO_TYPE_Q4_K, HALO_TYPE_Q6_K};
    for (int i = 0; i < 2; i++) {
        bench_dense(st, a3b[i], 8192, 2048, 512, d_x, d_y);
        bench_dense(st, a3b[i], 2048, 4096, 512, d_x, d_y);
    }
    printf("MoE prefill (matmul_id, 512 tokens x 8 of 256 experts):\n");
    for (int i = 0; i < 2; i++) {
        bench_moe_prefill(st, a3b[i], 512, 2048, 512, d_x, d_y, d_ids);
        bench_moe_prefill(st, a3b[i], 2048, 512, 512, d_x, d_y, d_ids);
    }
    /* other prompt lengths: 4, 8 and 64 assignments per expert (token tiles 16, 16, 64) */
    printf("MoE prefill, other prompt lengths:\n");
    bench_moe_prefill(st, HALO_TYPE_Q4_K, 512, 2048, 128, d_x, d_y, d_ids);
    bench_moe_prefill(st, HALO_TYPE_Q4_K, 512, 2048, 256, d_x, d_y, d_ids);
    bench_moe_prefill(st, HALO_TYPE_Q4_K, 512, 2048, 2048, d_x, d_y, d_ids);
}

/* Decode products of mmv.cu (halo_cuda_mv_launch): one dense product, or a layer's
 * worth of products in one launch (list), weights cycled over COPIES as above. */
static double time_mv(void *st, halo_cuda_mv *list, int n, size_t stride, int copies) {
    const void *base[HALO_CUDA_MV_MAX], *base2[HALO_CUDA_MV_MAX];
    for (int j = 0; j < n; j++) base[j] = list[j].w, base2[j] = list[j].w2;
    const int reps = 300;
    int rc = 0;
    double t0 = 0.0;
    for (int i = -10; i < reps; i++) {
        if (i == 0) {
            halo_cuda_stream_sync(st);
            t0 = now();
        }
        for (int j = 0; j < n; j++) {
            const size_t off = (size_t)((i + 10) % copies) * stride;
            list[j].w = (const char *)base[j] + off;
            if (base2[j]) list[j].w2 = (const char *)base2[j] + off;
        }
        rc |= halo_cuda_mv_launch(st, list, n);
    }
    halo_cuda_stream_sync(st);
    for (int j = 0; j < n; j++) list[j].w = base[j], list[j].w2 = base2[j];
    return rc ? -1.0 : (now() - t0) / reps;
}

static void bench_mv_dense(void *st, int type, int64_t n_rows, int64_t n_cols, float *d_x,
                           float *d_y) {
    size_t rs;
    void *d_w = upload_matrix(st, type, n_rows * COPIES, n_cols, &rs);
    if (!d_w) {
        printf("  %s: out of memory\n", halo_type_name(type));
        return;
    }
    halo_cuda_mv m = {.type = type, .w = d_w, .row_stride = rs, .n_rows = n_rows,
                      .n_cols = n_cols, .x = d_x, .n_x = 1, .x_div = 1, .y = d_y};
    const double dt = time_mv(st, &m, 1, rs * n_rows, COPIES);
    printf("  %-6s %6lld x %5lld: %8.2f us  %7.1f GB/s%s\n", halo_type_name(type),
           (long long)n_rows, (long long)n_cols, dt * 1e6, (double)rs * n_rows / dt * 1e-9,
           dt < 0 ? "  (launch failed)" : "");
    halo_cuda_free(d_w);
}

/* The MoE of one token of Qwen3.5-35B-A3B Q4_K_M: 8 of 256 experts, gate/up q4_K
 * 512 x 2048 as a SwiGLU pair (one launch), down q6_K 2048 x 512 (another). */
static void bench_mv_moe(void *st, float *d_x, float *d_y, int32_t *d_ids) {
    enum { N_EXP = 256, K = 8 };
    size_t rg, rd;
    void *g = upload_matrix(st, HALO_TYPE_Q4_K, 512 * N_EXP * 2, 2048, &rg);
    void *d = upload_matrix(st, HALO_TYPE_Q6_K, 2048 * N_EXP, 512, &rd);
    if (!g || !d) {
        printf("  out of memory\n");
        halo_cuda_free(g);
        halo_cuda_free(d);
        return;
    }
    int32_t ids[K];
    for (int j = 0; j < K; j++) ids[j] = (j * 37 + 11) % 48; /* + cycled offsets < 256 */
    halo_cuda_memcpy(st, d_ids, ids, sizeof ids);
    const size_t mg = rg * 512, md = rd * 2048;
    halo_cuda_mv gu = {.type = HALO_TYPE_Q4_K, .w = g, .w2 = (char *)g + mg * N_EXP,
                       .row_stride = rg, .mat_stride = mg, .n_rows = 512, .n_cols = 2048,
                       .x = d_x, .n_x = K, .x_div = K, .ids = d_ids, .y = d_y};
    halo_cuda_mv dn = {.type = HALO_TYPE_Q6_K, .w = d, .row_stride = rd, .mat_stride = md,
                       .n_rows = 2048, .n_cols = 512, .x = d_x, .n_x = K, .x_div = 1,
                       .ids = d_ids, .y = d_y + 8192};
    /* the routed experts change each step: cycle the base over 16 expert offsets */
    double t = time_mv(st, &gu, 1, mg * 12, 16);
    printf("  q4_K   8 x (512 x 2048) gate+up SwiGLU: %8.2f us  %7.1f GB/s\n", t * 1e6,
           2.0 * K * mg / t * 1e-9);
    t = time_mv(st, &dn, 1, md * 12, 16);
    printf("  q6_K   8 x (2048 x 512) down:           %8.2f us  %7.1f GB/s\n", t * 1e6,
           (double)K * md / t * 1e-9);
    halo_cuda_free(g);
    halo_cuda_free(d);
}

/* The 4 projections of a DeltaNet layer in one launch (q6_K 8192 x 2048, q4_K
 * 4096 x 2048, 2 x q4_K 32 x 2048). */
static void bench_mv_layer(void *st, float *d_x, float *d_y) {
    size_t r6, r4;
    void *a = upload_matrix(st, HALO_TYPE_Q6_K, 8192 * COPIES, 2048, &r6);
    void *b = upload_matrix(st, HALO_TYPE_Q4_K, 4160 * COPIES, 2048, &r4);
    if (a && b) {
        halo_cuda_mv l[4] = {
            {.type = HALO_TYPE_Q6_K, .w = a, .row_stride = r6, .n_rows = 8192, .n_cols = 2048,
             .x = d_x, .n_x = 1, .x_div = 1, .y = d_y},
            {.type = HALO_TYPE_Q4_K, .w = b, .row_stride = r4, .n_rows = 4096, .n_cols = 2048,
             .x = d_x, .n_x = 1, .x_div = 1, .y = d_y + 8192},
            {.type = HALO_TYPE_Q4_K, .w = (char *)b + r4 * 4096, .row_stride = r4, .n_rows = 32,
             .n_cols = 2048, .x = d_x, .n_x = 1, .x_div = 1, .y = d_y + 12288},
            {.type = HALO_TYPE_Q4_K, .w = (char *)b + r4 * 4128, .row_stride = r4, .n_rows = 32,
             .n_cols = 2048, .x = d_x, .n_x = 1, .x_div = 1, .y = d_y + 12320},
        };
        /* cycle both matrices together: their copies are 8192 and 4160 rows apart */
        const double t = time_mv(st, l, 1, r6 * 8192, COPIES);
        const double t4 = time_mv(st, l, 4, 0, 1);
        printf("  DeltaNet projections, 4 products in one launch: %8.2f us (%.1f GB/s; the "
               "q6_K one alone %.2f us)\n", t4 * 1e6, (double)(r6 * 8192 + r4 * 4160) / t4 * 1e-9,
               t * 1e6);
    }
    halo_cuda_free(a);
    halo_cuda_free(b);
}

int main(int argc, char **argv) {
    const bool prefill_only = argc > 1 && strcmp(argv[1], "prefill") == 0;
    if (halo_cuda_device_count() <= 0) {
        printf("cuda_matmul_bench: no CUDA GPU visible (%s)\n", halo_cuda_last_error());
        return 0;
    }
    halo_cuda_set_device(0);
    char name[128];
    size_t total = 0, fr = 0;
    halo_cuda_device_info(0, name, sizeof name, &total, &fr);
    printf("GPU 0: %s, %.1f GiB\n", name, (double)total / (1u << 30));
    void *st = halo_cuda_stream_new();

    /* copy bandwidth: 1 GiB device to device, read + write counted */
    const size_t cb = (size_t)1 << 30;
    void *a = halo_cuda_malloc(cb), *b = halo_cuda_malloc(cb);
    if (a && b) {
        halo_cuda_memcpy(st, b, a, cb);
        halo_cuda_stream_sync(st);
        double t0 = now();
        for (int i = 0; i < 10; i++) halo_cuda_memcpy(st, b, a, cb);
        halo_cuda_stream_sync(st);
        const double dt = (now() - t0) / 10;
        printf("copy bandwidth: %.1f GB/s (read + write)\n", 2.0 * cb / dt * 1e-9);
    }
    halo_cuda_free(a);
    halo_cuda_free(b);

    const int64_t max_cols = 14336, max_tok = 512;
    float *hx = malloc(sizeof(float) * max_cols * max_tok);
    for (int64_t i = 0; i < max_cols * max_tok; i++) hx[i] = (float)(i % 17) * 0.01f - 0.08f;
    float *d_x = halo_cuda_malloc(sizeof(float) * max_cols * max_tok);
    /* >= 248320 rows x 1 token, 14336 rows x 512 tokens, 4096 assignments x 2048 rows */
    float *d_y = halo_cuda_malloc(sizeof(float) * 4096 * 2048);
    int32_t *d_ids = halo_cuda_malloc(sizeof(int32_t) * 16384); /* MoE: 2048 tokens x 8 */
    halo_cuda_memcpy(st, d_x, hx, sizeof(float) * max_cols * max_tok);
    halo_cuda_stream_sync(st);

    if (prefill_only) {
        bench_prefill(st, d_x, d_y, d_ids);
    } else {
        static const int types[] = {HALO_TYPE_Q4_K, HALO_TYPE_Q5_K, HALO_TYPE_Q6_K, HALO_TYPE_Q8_0,
                                    HALO_TYPE_BF16};
        enum { N_TYPES = sizeof types / sizeof types[0] };
        printf("decode (weights read once per product):\n");
        for (int i = 0; i < N_TYPES; i++) {
            bench_dense(st, types[i], 14336, 4096, 1, d_x, d_y);
            bench_dense(st, types[i], 4096, 14336, 1, d_x, d_y);
        }
        for (int i = 0; i < N_TYPES; i++) bench_dense(st, types[i], 14336, 4096, 8, d_x, d_y);
        printf("Qwen3.5-35B-A3B decode shapes (one token):\n");
        for (int i = 0; i < N_TYPES - 1; i++) {
            bench_dense(st, types[i], 8192, 2048, 1, d_x, d_y);
            bench_dense(st, types[i], 4096, 2048, 1, d_x, d_y);
            bench_dense(st, types[i], 2048, 4096, 1, d_x, d_y);
        }
        bench_dense(st, HALO_TYPE_Q6_K, 248320, 2048, 1, d_x, d_y); /* output head */
        printf("MoE decode (matmul_id, k = 8 of 256 experts, one token):\n");
        for (int i = 0; i < N_TYPES; i++) {
            bench_moe(st, types[i], 512, 2048, d_x, d_y, d_ids);
            bench_moe(st, types[i], 2048, 512, d_x, d_y, d_ids);
        }
        printf("decode products of mmv.cu (int16 activations, one launch):\n");
        for (int i = 0; i < N_TYPES; i++) {
            bench_mv_dense(st, types[i], 8192, 2048, d_x, d_y);
            bench_mv_dense(st, types[i], 4096, 2048, d_x, d_y);
            bench_mv_dense(st, types[i], 2048, 4096, d_x, d_y);
            bench_mv_dense(st, types[i], 14336, 4096, d_x, d_y);
        }
        bench_mv_dense(st, HALO_TYPE_F32, 256, 2048, d_x, d_y); /* router */
        bench_mv_dense(st, HALO_TYPE_Q6_K, 248320, 2048, d_x, d_y); /* output head */
        bench_mv_moe(st, d_x, d_y, d_ids);
        bench_mv_layer(st, d_x, d_y);

        bench_prefill(st, d_x, d_y, d_ids);
        if (!getenv("HALO_CUDA_MMQ")) { /* the same with the f32 kernels (read at start) */
            fflush(stdout);
            const pid_t pid = fork();
            if (pid == 0) {
                setenv("HALO_CUDA_MMQ", "0", 1);
                execl("/proc/self/exe", argv[0], "prefill", (char *)NULL);
                _exit(127);
            }
            if (pid > 0) waitpid(pid, NULL, 0);
        }
    }
    halo_cuda_free(d_x);
    halo_cuda_free(d_y);
    halo_cuda_free(d_ids);
    halo_cuda_stream_free(st);
    free(hx);
    return 0;
}
#else
int main(void) {
    printf("cuda_matmul_bench: halo was built without the CUDA backend\n");
    return 0;
}
#endif
