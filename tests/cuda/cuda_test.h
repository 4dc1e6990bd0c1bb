/*
 * Shared by the CUDA tests: skip (exit 77, with the reason) where the CUDA
 * backend was not built or no GPU is visible; otherwise select GPU 0. dev_from and
 * to_host move a test's arrays to and from the GPU on a stream, CHECKing each step.
 */
#ifndef HALO_CUDA_TEST_H
#define HALO_CUDA_TEST_H

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef HALO_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
static inline void cuda_test_require_gpu(void) {
    if (halo_cuda_device_count() <= 0) {
        printf("skipped: no CUDA GPU visible (%s)\n", halo_cuda_last_error());
        exit(77);
    }
    char name[128];
    size_t total = 0, fr = 0;
    halo_cuda_set_device(0);
    halo_cuda_device_info(0, name, sizeof name, &total, &fr);
    printf("GPU 0: %s, %.1f GiB\n", name, (double)total / (1u << 30));
}

/* New device memory of `bytes` holding h's bytes (h NULL: left as allocated), copied on
 * stream. */
static inline void *dev_from(void *stream, const void *h, size_t bytes) {
    void *d = halo_cuda_malloc(bytes);
    CHECK(d != NULL);
    if (d && h) CHECK(halo_cuda_memcpy(stream, d, h, bytes) == 0);
    return d;
}
/* Copies d to h on stream and waits for it. */
static inline void to_host(void *stream, void *h, const void *d, size_t bytes) {
    CHECK(halo_cuda_memcpy(stream, h, d, bytes) == 0);
    CHECK(halo_cuda_stream_sync(stream) == 0);
}
#else
static inline void cuda_test_require_gpu(void) {
    printf("skipped: halo was built without the CUDA backend (no CUDA toolkit found)\n");
    exit(77);
}
#endif

#endif
