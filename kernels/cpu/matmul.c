/*
 * halo_matmul: path selection (scalar / AVX2 / AVX-512, see kernels.h), the
 * split of rows across threads, and the scalar path.
 *
 * Threads take contiguous chunks of rows whose boundaries are multiples of 16,
 * so that no two threads write the same 64-byte line of y; one pool dispatch
 * per product, and no allocation on any path.
 *
 * The scalar path decodes each row in chunks of up to SCALAR_CHUNK values to a
 * stack buffer with the reference decoder and dots the chunk with every token.
 */
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- path selection --------------------------------------------------------- */

static const char *const path_names[HALO_CPU_PATH_COUNT] = {"scalar", "avx2", "avx512"};

const char *halo_cpu_path_name(int path) {
    return path >= 0 && path < HALO_CPU_PATH_COUNT ? path_names[path] : "unknown";
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* Features from cpuid, and whether the OS saves the registers (XCR0). */
static bool cpu_has(int path) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool fma = c >> 12 & 1, osxsave = c >> 27 & 1, avx = c >> 28 & 1, f16c = c >> 29 & 1;
    if (!(fma && osxsave && avx && f16c)) return false;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 0x6) != 0x6) return false; /* SSE and AVX state */
    if (__get_cpuid_max(0, NULL) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    const bool avx2 = b >> 5 & 1;
    if (path == HALO_CPU_AVX2) return avx2;
    const bool f = b >> 16 & 1, dq = b >> 17 & 1, bw = b >> 30 & 1, vl = b >> 31 & 1;
    return avx2 && f && dq && bw && vl && (xlo & 0xE0) == 0xE0; /* opmask and ZMM state */
}
#else
static bool cpu_has(int path) { return false; }
#endif

bool halo_cpu_path_supported(int path) {
    if (path == HALO_CPU_SCALAR) return true;
    if (path != HALO_CPU_AVX2 && path != HALO_CPU_AVX512) return false;
    static atomic_int cache[HALO_CPU_PATH_COUNT]; /* 0 unknown, 1 no, 2 yes */
    int v = atomic_load(&cache[path]);
    if (v == 0) atomic_store(&cache[path], v = cpu_has(path) ? 2 : 1);
    return v == 2;
}

static atomic_int chosen_path = -1;

static int best_path(void) {
    for (int p = HALO_CPU_PATH_COUNT - 1; p > 0; p--)
        if (halo_cpu_path_supported(p)) return p;
    return HALO_CPU_SCALAR;
}

int halo_cpu_path_get(void) {
    int p = atomic_load_explicit(&chosen_path, memory_order_acquire);
    if (p >= 0) return p;
    p = best_path();
    const char *env = getenv("HALO_CPU");
    if (env && *env) {
        int want = -1;
        for (int i = 0; i < HALO_CPU_PATH_COUNT; i++)
            if (strcmp(env, path_names[i]) == 0) want = i;
        if (want < 0)
            halo_log(HALO_LOG_WARN, "HALO_CPU=%s: unknown path (scalar, avx2, avx512); using %s",
                     env, path_names[p]);
        else if (!halo_cpu_path_supported(want))
            halo_log(HALO_LOG_WARN, "HALO_CPU=%s: this CPU lacks it; using %s", env, path_names[p]);
        else
            p = want;
    }
    /* several threads may get here at once: they all compute the same answer */
    atomic_store_explicit(&chosen_path, p, memory_order_release);
    return p;
}

int halo_cpu_path_set(int path) {
    if (!halo_cpu_path_supported(path)) return HALO_ERR_UNSUPPORTED;
    atomic_store_explicit(&chosen_path, path, memory_order_release);
    return 0;
}

/* ---- the scalar path ---------------------------------------------------------- */

#define SCALAR_CHUNK 1024 /* a multiple of every block size (32, 256) */

static float dot_f32(const float *a, const float *b, int64_t n) {
    /* 8 independent sums: lets the compiler vectorize without -ffast-math */
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    float sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

void halo_mm_rows_scalar(const halo_mm_args *a, int64_t r0, int64_t r1) {
    const halo_type_traits *tr = halo_type_get(a->type);
    float buf[SCALAR_CHUNK];
    const size_t chunk_bytes = (size_t)(SCALAR_CHUNK / tr->block_size) * tr->type_size;
    for (int64_t r = r0; r < r1; r++) {
        const char *row = a->w + (size_t)r * a->row_stride;
        for (int64_t c0 = 0; c0 < a->n_cols; c0 += SCALAR_CHUNK) {
            const int64_t n = a->n_cols - c0 < SCALAR_CHUNK ? a->n_cols - c0 : SCALAR_CHUNK;
            tr->to_float(row + (size_t)(c0 / SCALAR_CHUNK) * chunk_bytes, buf, n);
            for (int64_t t = 0; t < a->n_tokens; t++) {
                float d = dot_f32(buf, a->x + t * a->n_cols + c0, n);
                float *yt = a->y + t * a->n_rows + r;
                *yt = c0 == 0 ? d : *yt + d;
            }
        }
    }
}

/* ---- dispatch ----------------------------------------------------------------- */

typedef struct matmul_job {
    halo_mm_args args;
    halo_mm_rows_fn rows;
} matmul_job;

static void matmul_task(void *arg, int ith, int nth) {
    const matmul_job *j = arg;
    const int64_t n = j->args.n_rows;
    /* chunks of whole 16-row groups (64 bytes of y per token) */
    int64_t groups = (n + 15) / 16, per = (groups + nth - 1) / nth;
    int64_t r0 = per * 16 * ith, r1 = r0 + per * 16;
    if (r1 > n) r1 = n;
    if (r0 < r1) j->rows(&j->args, r0, r1);
}

void halo_matmul(halo_threadpool *pool, int type, const void *w, size_t row_stride,
                 int64_t n_rows, int64_t n_cols, const float *x, int64_t n_tokens, float *y) {
    const halo_type_traits *tr = halo_type_get(type);
    if (!tr || !tr->to_float || n_cols % tr->block_size) abort(); /* a caller bug */
    if (n_rows <= 0 || n_tokens <= 0) return;
    if (n_cols == 0) {
        for (int64_t i = 0; i < n_rows * n_tokens; i++) y[i] = 0.0f;
        return;
    }
    matmul_job j = {{type, w, row_stride, n_rows, n_cols, n_tokens, x, y}, halo_mm_rows_scalar};
    switch (halo_cpu_path_get()) {
    case HALO_CPU_AVX512:
        if (halo_mm_type_ok_avx512(type)) j.rows = halo_mm_rows_avx512;
        break;
    case HALO_CPU_AVX2:
        if (halo_mm_type_ok_avx2(type)) j.rows = halo_mm_rows_avx2;
        break;
    default: break;
    }
    /* one thread for products too small to be worth waking the others, and where
     * there is only one 16-row group to hand out */
    if (n_rows <= 16 || n_rows * n_cols * (n_tokens < 8 ? n_tokens : 8) < 4096) pool = NULL;
    halo_threadpool_run(pool, matmul_task, &j);
}
