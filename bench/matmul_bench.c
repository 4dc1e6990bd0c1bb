/*
 * matmul_bench — speed of halo_matmul per block type and code path, against the
 * machine's own limits measured here: streaming read bandwidth and FMA peak.
 * Not a test (timings are noisy on shared machines); figures go to docs/PERF.md.
 *
 *   build/matmul_bench [-t THREADS] [--path scalar|avx2|avx512] [--types t1,t2,..]
 *                      [--big MiB] [--reps N] [--cpu-time] [--no-machine]
 *
 * Decode: one token, shapes of the shipped model (256 x 256, 1024 x 256, 8192 x 256,
 * cache-resident) and a big matrix (--big MiB of weights, default 1024, past the
 * caches), as microseconds per call and GB/s of weights. Prefill: 512 tokens on
 * 1024 x 1024 and 256 tokens on 256 x 256, as GFLOP/s (2 flops a multiply-add).
 * Each figure is the best of --reps runs.
 */
#include "kernels/kernels.h"
#include "quant/quant.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static clockid_t product_clock = CLOCK_MONOTONIC;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* This thread's CPU time: the machine's peaks are measured on one thread, and on a
 * loaded machine wall time would measure the load. */
static double thread_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The clock products are timed with: wall time, or with --cpu-time this process's
 * CPU time (meaningful with -t 1 on a loaded machine: the time the kernel ran). */
static double product_now(void) {
    struct timespec ts;
    clock_gettime(product_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return ((float)(*s >> 40) / (float)(1ull << 24)) * 2.0f - 1.0f;
}

/* ---- machine limits ---------------------------------------------------------------- */

typedef struct stream_arg {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} stream_arg;

__attribute__((target("avx2"))) static void *stream_read(void *v) {
    stream_arg *a = v;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 16 <= a->n; i += 16) {
        s0 = _mm256_add_epi64(s0, _mm256_loadu_si256((const __m256i *)(a->p + i)));
        s1 = _mm256_add_epi64(s1, _mm256_loadu_si256((const __m256i *)(a->p + i + 4)));
        s2 = _mm256_add_epi64(s2, _mm256_loadu_si256((const __m256i *)(a->p + i + 8)));
        s3 = _mm256_add_epi64(s3, _mm256_loadu_si256((const __m256i *)(a->p + i + 12)));
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, s0);
    a->sum = out[0] + out[1] + out[2] + out[3];
    return NULL;
}

/* GB/s of a streaming read of `bytes` split over `threads` threads, best of reps. */
static double read_bandwidth(size_t bytes, int threads, int reps) {
    uint64_t *buf = malloc(bytes);
    if (!buf) return 0;
    memset(buf, 1, bytes);
    size_t n = bytes / 8 / (size_t)threads / 16 * 16;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        pthread_t th[16];
        stream_arg args[16];
        double t0 = now();
        for (int i = 0; i < threads; i++) {
            args[i] = (stream_arg){buf + (size_t)i * n, n, 0};
            pthread_create(&th[i], NULL, stream_read, &args[i]);
        }
        for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
        double gbs = (double)n * 8 * threads / (now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

typedef struct fma_arg {
    long iters;
    int wide;
    float out;
    double seconds; /* this thread's CPU time */
} fma_arg;

__attribute__((target("avx512f,avx2,fma"))) static void *fma_loop(void *v) {
    fma_arg *a = v;
    const double t0 = thread_now();
    if (a->wide) {
        __m512 acc[12], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
        for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i);
        for (long it = 0; it < a->iters; it++) {
            __asm__ volatile("" : "+v"(m));
            for (int i = 0; i < 12; i++) acc[i] = _mm512_fmadd_ps(acc[i], m, c);
        }
        float s = 0;
        for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(acc[i]);
        a->out = s;
    } else {
        __m256 acc[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
        for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps((float)i);
        for (long it = 0; it < a->iters; it++) {
            __asm__ volatile("" : "+v"(m));
            for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], m, c);
        }
        float s[8];
        __m256 t = acc[0];
        for (int i = 1; i < 12; i++) t = _mm256_add_ps(t, acc[i]);
        _mm256_storeu_ps(s, t);
        a->out = s[0];
    }
    a->seconds = thread_now() - t0;
    return NULL;
}

typedef struct dot_arg {
    long iters;
    int kind; /* 0 vdpbf16ps, 1 vpdpbusd */
    float out;
} dot_arg;

__attribute__((target("avx512f,avx512bf16,avx512vnni"))) static void *dot_loop(void *v) {
    dot_arg *a = v;
    if (a->kind == 0) {
        __m512 acc[12];
        __m512bh p = (__m512bh)_mm512_set1_epi16(0x3f80);
        const __m512bh q = (__m512bh)_mm512_set1_epi16(0x3380);
        for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i);
        for (long it = 0; it < a->iters; it++) {
            __asm__ volatile("" : "+v"(p)); /* opaque operands: nothing to fold */
            for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbf16_ps(acc[i], p, q);
        }
        float s = 0;
        for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(acc[i]);
        a->out = s;
    } else {
        __m512i acc[12];
        __m512i p = _mm512_set1_epi8(1);
        const __m512i q = _mm512_set1_epi8(2);
        for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_epi32(i);
        for (long it = 0; it < a->iters; it++) {
            __asm__ volatile("" : "+v"(p));
            for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], p, q);
        }
        int s = 0;
        for (int i = 0; i < 12; i++) s += _mm512_reduce_add_epi32(acc[i]);
        a->out = (float)s;
    }
    return NULL;
}

/* Giga multiply-adds a second of vdpbf16ps (kind 0: 32 a 512-bit instruction) or
 * vpdpbusd (kind 1: 64), one thread; 0 if the CPU lacks the instruction. */
static double dot_peak(int kind) {
    unsigned a, b, c, d;
    if (!halo_cpu_path_supported(HALO_CPU_AVX512) || __get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const bool vnni = c >> 11 & 1;
    __cpuid_count(7, 1, a, b, c, d);
    const bool bf16 = a >> 5 & 1;
    if (!(kind == 0 ? bf16 : vnni)) return 0;
    const long iters = 20000000;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        dot_arg arg = {iters, kind, 0};
        double t0 = thread_now();
        dot_loop(&arg);
        double g = (double)iters * 12 * (kind == 0 ? 32 : 64) / (thread_now() - t0) / 1e9;
        if (g > best) best = g;
    }
    return best;
}

/* ---- what lower-precision activations would cost in accuracy ------------------------
 * The products of bf16 weights with activations (a) in f32 as halo computes them,
 * (b) rounded to bf16 (what a vdpbf16ps kernel multiplies), (c) quantized to q8_0
 * per block of 32 (what an int8 VNNI kernel multiplies), as relRMS over the
 * outputs against the exact (double) product with f32 activations. Activations
 * are random with a few large outliers per row, as hidden states have. */
static void accuracy_report(halo_threadpool *pool) {
    const int64_t rows = 256, tokens = 16;
    const int64_t col_set[2] = {256, 4096};
    printf("\nactivation precision: relRMS of y = x W^T (bf16 W, %lld rows, %lld tokens) vs exact\n",
           (long long)rows, (long long)tokens);
    printf("%-7s %-12s %-12s %-12s\n", "n_cols", "f32 (halo)", "bf16 x", "q8_0 x");
    for (int ci = 0; ci < 2; ci++) {
        const int64_t cols = col_set[ci];
        uint64_t seed = 11;
        float *wf = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * tokens * cols);
        float *xb = malloc(sizeof(float) * tokens * cols), *xq = malloc(sizeof(float) * tokens * cols);
        float *y = malloc(sizeof(float) * tokens * rows);
        size_t stride = halo_type_row_size(HALO_TYPE_BF16, cols);
        char *w = malloc(stride * rows);
        void *qb = malloc(halo_type_row_size(HALO_TYPE_Q8_0, cols));
        for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand(&seed) * 0.05f;
        for (int64_t r = 0; r < rows; r++) {
            halo_type_get(HALO_TYPE_BF16)->from_float_ref(wf + r * cols, w + r * stride, cols);
            halo_type_get(HALO_TYPE_BF16)->to_float(w + r * stride, wf + r * cols, cols);
        }
        for (int64_t i = 0; i < tokens * cols; i++) {
            float g = frand(&seed) + frand(&seed) + frand(&seed);
            x[i] = (frand(&seed) > 0.99f) ? g * 20.0f : g;
            xb[i] = halo_bf16_to_fp32(halo_fp32_to_bf16(x[i]));
        }
        for (int64_t t = 0; t < tokens; t++) {
            halo_type_get(HALO_TYPE_Q8_0)->from_float_ref(x + t * cols, qb, cols);
            halo_type_get(HALO_TYPE_Q8_0)->to_float(qb, xq + t * cols, cols);
        }
        halo_matmul(pool, HALO_TYPE_BF16, w, stride, rows, cols, x, tokens, y);
        double num[3] = {0}, den = 0;
        for (int64_t t = 0; t < tokens; t++)
            for (int64_t r = 0; r < rows; r++) {
                double e = 0, eb = 0, eq = 0;
                for (int64_t c = 0; c < cols; c++) {
                    e += (double)wf[r * cols + c] * x[t * cols + c];
                    eb += (double)wf[r * cols + c] * xb[t * cols + c];
                    eq += (double)wf[r * cols + c] * xq[t * cols + c];
                }
                den += e * e;
                num[0] += (y[t * rows + r] - e) * (y[t * rows + r] - e);
                num[1] += (eb - e) * (eb - e);
                num[2] += (eq - e) * (eq - e);
            }
        printf("%-7lld %-12.2e %-12.2e %-12.2e\n", (long long)cols, sqrt(num[0] / den),
               sqrt(num[1] / den), sqrt(num[2] / den));
        free(wf), free(x), free(xb), free(xq), free(y), free(w), free(qb);
    }
}

/* GFLOP/s of independent FMAs (2 flops a lane) on `threads` threads, each timed by
 * its own CPU time (the peak of the cores, whatever else runs on them). */
static double fma_peak(int threads, int wide) {
    const long iters = 20000000;
    pthread_t th[16];
    fma_arg args[16];
    double best = 0;
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < threads; i++) {
            args[i] = (fma_arg){iters, wide, 0, 0};
            pthread_create(&th[i], NULL, fma_loop, &args[i]);
        }
        double g = 0;
        for (int i = 0; i < threads; i++) {
            pthread_join(th[i], NULL);
            g += (double)iters * 12 * (wide ? 16 : 8) * 2 / args[i].seconds / 1e9;
        }
        if (g > best) best = g;
    }
    return best;
}

/* ---- products ------------------------------------------------------------------------- */

/* Rows of one encoded random row, repeated (the speed does not depend on the values). */
static char *make_weights(int type, int64_t rows, int64_t cols, size_t *stride) {
    const halo_type_traits *tr = halo_type_get(type);
    *stride = halo_type_row_size(type, cols);
    char *w = malloc(*stride * (size_t)rows);
    float *row = malloc(sizeof(float) * (size_t)cols);
    if (!w || !row) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    uint64_t seed = 7;
    for (int64_t c = 0; c < cols; c++) row[c] = frand(&seed);
    tr->from_float_ref(row, w, cols);
    for (int64_t r = 1; r < rows; r++) memcpy(w + (size_t)r * *stride, w, *stride);
    free(row);
    return w;
}

/* Best seconds per call over reps batches (each long enough to time). */
static double time_matmul(halo_threadpool *pool, int type, const char *w, size_t stride,
                          int64_t rows, int64_t cols, const float *x, int64_t tokens, float *y,
                          int reps) {
    halo_matmul(pool, type, w, stride, rows, cols, x, tokens, y); /* warm up */
    double t1 = product_now();
    halo_matmul(pool, type, w, stride, rows, cols, x, tokens, y);
    double one = product_now() - t1;
    int calls = one > 0.02 ? 1 : (int)(0.02 / (one + 1e-9)) + 1;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = product_now();
        for (int c = 0; c < calls; c++) halo_matmul(pool, type, w, stride, rows, cols, x, tokens, y);
        double s = (product_now() - t0) / calls;
        if (s < best) best = s;
    }
    return best;
}

static int type_wanted(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

int main(int argc, char **argv) {
    int threads = 2, reps = 3, path = -1, machine = 1;
    long big_mib = 1024;
    const char *types = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--big") && i + 1 < argc) big_mib = atol(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--cpu-time")) product_clock = CLOCK_PROCESS_CPUTIME_ID;
        else if (!strcmp(argv[i], "--no-machine")) machine = 0;
        else if (!strcmp(argv[i], "--path") && i + 1 < argc) {
            const char *p = argv[++i];
            for (int k = 0; k < HALO_CPU_PATH_COUNT; k++)
                if (!strcmp(p, halo_cpu_path_name(k))) path = k;
            if (path < 0 || halo_cpu_path_set(path) != 0) {
                fprintf(stderr, "--path %s: unknown or not supported here\n", p);
                return 2;
            }
        } else {
            fprintf(stderr,
                    "usage: matmul_bench [-t THREADS] [--path scalar|avx2|avx512] "
                    "[--types f32,bf16,q4_K,..] [--big MiB] [--reps N] [--cpu-time] [--no-machine]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (threads < 1 || threads > 16 || reps < 1 || big_mib < 0) {
        fprintf(stderr, "bad -t, --reps or --big\n");
        return 2;
    }
    printf("path %s, %d threads, %s time\n", halo_cpu_path_name(halo_cpu_path_get()), threads,
           product_clock == CLOCK_MONOTONIC ? "wall" : "CPU");
    if (machine) {
    printf("machine: read bandwidth (2 GiB stream) 1 thread %.1f GB/s, %d threads %.1f GB/s\n",
           read_bandwidth((size_t)2 << 30, 1, reps), threads,
           read_bandwidth((size_t)2 << 30, threads, reps));
    printf("machine: FMA peak f32 AVX-512 1 thread %.0f GFLOP/s, %d threads %.0f; AVX2 1 thread %.0f\n",
           fma_peak(1, 1), threads, fma_peak(threads, 1), fma_peak(1, 0));
    printf("machine: 1 thread vdpbf16ps %.0f GMAC/s (%.0f GFLOP/s), vpdpbusd %.0f GMAC/s\n",
           dot_peak(0), 2 * dot_peak(0), dot_peak(1));
    }

    halo_threadpool *pool = halo_threadpool_new(threads);
    const int64_t max_tokens = 512, max_cols = 8192;
    float *x = malloc(sizeof(float) * max_tokens * 1024);
    float *y = malloc(sizeof(float) * max_tokens * 8192);
    float *xd = malloc(sizeof(float) * max_cols);
    uint64_t seed = 1;
    for (int64_t i = 0; i < max_tokens * 1024; i++) x[i] = frand(&seed);
    for (int64_t i = 0; i < max_cols; i++) xd[i] = frand(&seed);
    const int64_t dec_shapes[3][2] = {{256, 256}, {1024, 256}, {8192, 256}};

    printf("\n%-7s | decode 1 token: us/call (GB/s)                           | big decode      | "
           "prefill GFLOP/s\n",
           "type");
    printf("%-7s | %-17s %-17s %-17s | %-15s | %-9s %-9s\n", "", "256x256", "1024x256",
           "8192x256", "GB/s", "1024^2x512", "256^2x256");
    for (int type = 0; type < HALO_TYPE_COUNT; type++) {
        const halo_type_traits *tr = halo_type_get(type);
        if (!tr || !tr->to_float || !tr->from_float_ref || type == HALO_TYPE_Q8_K ||
            type == HALO_TYPE_Q8_1 || !type_wanted(types, tr->name))
            continue;
        printf("%-7s |", tr->name);
        fflush(stdout);
        for (int s = 0; s < 3; s++) {
            size_t stride;
            char *w = make_weights(type, dec_shapes[s][0], dec_shapes[s][1], &stride);
            double sec = time_matmul(pool, type, w, stride, dec_shapes[s][0], dec_shapes[s][1], xd,
                                     1, y, reps);
            printf(" %6.2f (%6.1f)  ", sec * 1e6, (double)stride * dec_shapes[s][0] / sec / 1e9);
            free(w);
        }
        if (big_mib > 0) {
            const int64_t cols = 8192;
            size_t stride = halo_type_row_size(type, cols);
            int64_t rows = (int64_t)(((size_t)big_mib << 20) / stride);
            char *w = make_weights(type, rows, cols, &stride);
            float *yb = malloc(sizeof(float) * (size_t)rows);
            double sec = time_matmul(pool, type, w, stride, rows, cols, xd, 1, yb, reps);
            printf("| %8.1f        ", (double)stride * rows / sec / 1e9);
            free(w), free(yb);
        } else {
            printf("| %8s        ", "-");
        }
        const int64_t pf[2][2] = {{1024, 512}, {256, 256}}; /* n x n, tokens */
        printf("|");
        for (int s = 0; s < 2; s++) {
            size_t stride;
            const int64_t n = pf[s][0], tok = pf[s][1];
            char *w = make_weights(type, n, n, &stride);
            double sec = time_matmul(pool, type, w, stride, n, n, x, tok, y, reps);
            printf(" %8.1f ", 2.0 * n * n * tok / sec / 1e9);
            free(w);
        }
        printf("\n");
    }
    accuracy_report(pool);
    halo_threadpool_free(pool);
    free(x), free(y), free(xd);
    return 0;
}
