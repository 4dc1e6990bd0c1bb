/*
 * The CUDA device, memory and streams, behind the C interface of cuda_ops.h.
 */
#include "kernels/cuda/cuda_ops.h"

#include <cuda_runtime.h>

#include <stdio.h>
#include <string.h>

static __thread char last_error[256];

static int fail(cudaError_t e, const char *what) {
    snprintf(last_error, sizeof last_error, "%s: %s", what, cudaGetErrorString(e));
    return -1;
}

extern "C" const char *halo_cuda_last_error(void) { return last_error[0] ? last_error : "no error"; }

extern "C" int halo_cuda_device_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        fail(e, "cudaGetDeviceCount");
        cudaGetLastError(); /* clear the sticky "no driver" error */
        return 0;
    }
    return n;
}

extern "C" int64_t halo_cuda_mem_free(int dev) {
    size_t fr = 0, tot = 0;
    if (cudaSetDevice(dev) != cudaSuccess || cudaMemGetInfo(&fr, &tot) != cudaSuccess) return -1;
    return (int64_t)fr;
}

extern "C" int halo_cuda_device_info(int dev, char *name, size_t n, size_t *total_bytes,
                                     size_t *free_bytes) {
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, dev);
    if (e != cudaSuccess) return fail(e, "cudaGetDeviceProperties");
    if (name && n) snprintf(name, n, "%s", p.name);
    if (total_bytes) *total_bytes = p.totalGlobalMem;
    if (free_bytes) {
        int cur = 0;
        cudaGetDevice(&cur);
        size_t fr = 0, tot = 0;
        if (cur == dev && cudaMemGetInfo(&fr, &tot) == cudaSuccess) *free_bytes = fr;
        else *free_bytes = p.totalGlobalMem;
    }
    return 0;
}

extern "C" int halo_cuda_set_device(int dev) {
    cudaError_t e = cudaSetDevice(dev);
    return e == cudaSuccess ? 0 : fail(e, "cudaSetDevice");
}

/* per thread, as the current device: the server decodes on its scheduler thread */
static thread_local int pdl_on = 0;
extern "C" void halo_cuda_pdl_set(int on) { pdl_on = on != 0; }
extern "C" int halo_cuda_pdl_get(void) { return pdl_on; }

extern "C" void *halo_cuda_malloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        char what[64];
        snprintf(what, sizeof what, "cudaMalloc(%zu bytes)", bytes);
        fail(e, what);
        return NULL;
    }
    /* Zeroed before it is returned: cudaMemset runs on the legacy default stream, which
     * halo's streams (cudaStreamNonBlocking) do not wait for, so without the wait a copy
     * or kernel on such a stream could run first and be overwritten by the late memset
     * (seen on a busy GPU: test_cuda_deltanet's uploads zeroed). */
    if (cudaMemsetAsync(p, 0, bytes ? bytes : 1, cudaStreamLegacy) != cudaSuccess ||
        cudaStreamSynchronize(cudaStreamLegacy) != cudaSuccess) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

extern "C" void halo_cuda_free(void *p) {
    if (p) cudaFree(p);
}

extern "C" void *halo_cuda_host_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMallocHost(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        fail(e, "cudaMallocHost");
        return NULL;
    }
    memset(p, 0, bytes ? bytes : 1);
    return p;
}

extern "C" void halo_cuda_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

extern "C" void *halo_cuda_stream_new(void) {
    cudaStream_t s = NULL;
    cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        fail(e, "cudaStreamCreate");
        return NULL;
    }
    return (void *)s;
}

extern "C" void halo_cuda_stream_free(void *stream) {
    if (stream) cudaStreamDestroy((cudaStream_t)stream);
}

extern "C" int halo_cuda_stream_sync(void *stream) {
    cudaError_t e = cudaStreamSynchronize((cudaStream_t)stream);
    return e == cudaSuccess ? 0 : fail(e, "cudaStreamSynchronize");
}

extern "C" void *halo_cuda_event_new(void) {
    cudaEvent_t ev = NULL;
    cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (e != cudaSuccess) {
        fail(e, "cudaEventCreate");
        return NULL;
    }
    return ev;
}

extern "C" void halo_cuda_event_free(void *event) {
    if (event) cudaEventDestroy((cudaEvent_t)event);
}

extern "C" int halo_cuda_event_record(void *event, void *stream) {
    cudaError_t e = cudaEventRecord((cudaEvent_t)event, (cudaStream_t)stream);
    return e == cudaSuccess ? 0 : fail(e, "cudaEventRecord");
}

extern "C" int halo_cuda_event_sync(void *event) {
    cudaError_t e = cudaEventSynchronize((cudaEvent_t)event);
    return e == cudaSuccess ? 0 : fail(e, "cudaEventSynchronize");
}

extern "C" int halo_cuda_memcpy(void *stream, void *dst, const void *src, size_t bytes) {
    if (!bytes) return 0;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, (cudaStream_t)stream);
    return e == cudaSuccess ? 0 : fail(e, "cudaMemcpyAsync");
}

extern "C" int halo_cuda_memset0(void *stream, void *dst, size_t bytes) {
    if (!bytes) return 0;
    cudaError_t e = cudaMemsetAsync(dst, 0, bytes, (cudaStream_t)stream);
    return e == cudaSuccess ? 0 : fail(e, "cudaMemsetAsync");
}

/* ---- CUDA graphs ------------------------------------------------------------------------ */

extern "C" int halo_cuda_capture_begin(void *stream) {
    cudaError_t e = cudaStreamBeginCapture((cudaStream_t)stream, cudaStreamCaptureModeThreadLocal);
    return e == cudaSuccess ? 0 : fail(e, "cudaStreamBeginCapture");
}

extern "C" int halo_cuda_capture_end(void *stream, void **graph_exec) {
    cudaGraph_t g = NULL;
    *graph_exec = NULL;
    cudaError_t e = cudaStreamEndCapture((cudaStream_t)stream, &g);
    if (e != cudaSuccess) {
        if (g) cudaGraphDestroy(g);
        cudaGetLastError();
        return fail(e, "cudaStreamEndCapture");
    }
    cudaGraphExec_t x = NULL;
    e = cudaGraphInstantiate(&x, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return fail(e, "cudaGraphInstantiate");
    }
    *graph_exec = (void *)x;
    return 0;
}

extern "C" int halo_cuda_graph_launch(void *graph_exec, void *stream) {
    cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)graph_exec, (cudaStream_t)stream);
    return e == cudaSuccess ? 0 : fail(e, "cudaGraphLaunch");
}

extern "C" void halo_cuda_graph_free(void *graph_exec) {
    if (graph_exec) cudaGraphExecDestroy((cudaGraphExec_t)graph_exec);
}
