/*
 * cuBLAS for the one product it wins here: f32 weights times many tokens (the MoE
 * routers of a prompt, 256 x 2048 and 1 x 2048 per layer), where halo's own f32
 * tile kernel leaves most multiprocessors idle. The library is loaded at run time
 * (dlopen), so that halo neither links it nor needs it: where it is absent, or
 * HALO_CUDA_BLAS=0, halo_cuda_blas_new returns NULL and the caller keeps its own
 * kernels. The products run in pedantic f32 (no TF32), as halo's kernels do.
 *
 * The few cuBLAS entry points are declared here with their C ABI (handles and
 * streams as pointers, enums as int), so no cuBLAS header is needed to build.
 */
#define _GNU_SOURCE
#include "kernels/cuda/cuda_ops.h"
#include "util/util.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum { BLAS_OP_N = 0, BLAS_OP_T = 1, BLAS_PEDANTIC_MATH = 2, BLAS_OK = 0 };

typedef int (*create_fn)(void **handle);
typedef int (*destroy_fn)(void *handle);
typedef int (*set_stream_fn)(void *handle, void *stream);
typedef int (*set_workspace_fn)(void *handle, void *ws, size_t bytes);
typedef int (*set_math_fn)(void *handle, int mode);
typedef int (*sgemm_fn)(void *handle, int ta, int tb, int m, int n, int k, const float *alpha,
                        const float *a, int lda, const float *b, int ldb, const float *beta,
                        float *c, int ldc);

struct halo_cuda_blas {
    void *lib, *handle;
    destroy_fn destroy;
    sgemm_fn sgemm;
};

static void *open_cublas(void) {
    static const char *const names[] = {
        "libcublas.so.13",
        "libcublas.so.12",
        "libcublas.so",
        "/usr/local/cuda/lib64/libcublas.so.13",
        "/usr/local/cuda/lib64/libcublas.so.12",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (lib) return lib;
    }
    return NULL;
}

halo_cuda_blas *halo_cuda_blas_new(void *stream, void *workspace, size_t ws_bytes) {
    const char *e = getenv("HALO_CUDA_BLAS");
    if (e && !strcmp(e, "0")) return NULL;
    void *lib = open_cublas();
    if (!lib) return NULL;
    create_fn create = (create_fn)dlsym(lib, "cublasCreate_v2");
    set_stream_fn set_stream = (set_stream_fn)dlsym(lib, "cublasSetStream_v2");
    set_workspace_fn set_ws = (set_workspace_fn)dlsym(lib, "cublasSetWorkspace_v2");
    set_math_fn set_math = (set_math_fn)dlsym(lib, "cublasSetMathMode");
    halo_cuda_blas *b = calloc(1, sizeof *b);
    if (!b || !create || !set_stream || !set_ws || !set_math) goto fail;
    b->lib = lib;
    b->destroy = (destroy_fn)dlsym(lib, "cublasDestroy_v2");
    b->sgemm = (sgemm_fn)dlsym(lib, "cublasSgemm_v2");
    if (!b->destroy || !b->sgemm || create(&b->handle) != BLAS_OK) goto fail;
    /* its own workspace, so that it never allocates while a step runs */
    if (set_stream(b->handle, stream) != BLAS_OK ||
        set_ws(b->handle, workspace, ws_bytes) != BLAS_OK ||
        set_math(b->handle, BLAS_PEDANTIC_MATH) != BLAS_OK) {
        b->destroy(b->handle);
        goto fail;
    }
    halo_log(HALO_LOG_DEBUG, "CUDA: cuBLAS loaded for f32 products");
    return b;
fail:
    free(b);
    dlclose(lib);
    return NULL;
}

void halo_cuda_blas_free(halo_cuda_blas *b) {
    if (!b) return;
    b->destroy(b->handle);
    dlclose(b->lib);
    free(b);
}

/* y[t][r] = sum_c w[r][c] x[t][c]: with w read as a column-major n_cols x n_rows
 * matrix (leading dimension row_stride / 4), y^T = w^T x^T in cuBLAS's terms. */
int halo_cuda_blas_matmul_f32(halo_cuda_blas *b, const float *w, size_t row_stride, int64_t n_rows,
                              int64_t n_cols, const float *x, int64_t n_tokens, float *y) {
    if (!b || row_stride % sizeof(float) || n_rows < 1 || n_cols < 1 || n_tokens < 1 ||
        n_rows > INT_MAX || n_cols > INT_MAX || n_tokens > INT_MAX ||
        row_stride / sizeof(float) > INT_MAX || row_stride / sizeof(float) < (size_t)n_cols)
        return -1;
    const float one = 1.0f, zero = 0.0f;
    int rc =
        b->sgemm(b->handle, BLAS_OP_T, BLAS_OP_N, (int)n_rows, (int)n_tokens, (int)n_cols, &one, w,
                 (int)(row_stride / sizeof(float)), x, (int)n_cols, &zero, y, (int)n_rows);
    return rc == BLAS_OK ? 0 : -1;
}
