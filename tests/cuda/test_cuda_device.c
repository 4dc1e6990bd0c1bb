/* The device layer: allocation, copies both ways, streams. */
#include "cuda_test.h"
#include "harness.h"

#include <string.h>

int main(void) {
    cuda_test_require_gpu();
#ifdef HALO_HAVE_CUDA
    enum { N = 1 << 20 };
    float *h = malloc(sizeof(float) * N), *back = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) h[i] = (float)i * 0.5f;
    void *s = halo_cuda_stream_new();
    CHECK(s != NULL);
    float *d = halo_cuda_malloc(sizeof(float) * N);
    float *d2 = halo_cuda_malloc(sizeof(float) * N);
    CHECK(d && d2);
    CHECK(halo_cuda_memcpy(s, d, h, sizeof(float) * N) == 0);
    CHECK(halo_cuda_memcpy(s, d2, d, sizeof(float) * N) == 0);
    CHECK(halo_cuda_memcpy(s, back, d2, sizeof(float) * N) == 0);
    CHECK(halo_cuda_stream_sync(s) == 0);
    CHECK(memcmp(h, back, sizeof(float) * N) == 0);
    CHECK(halo_cuda_memset0(s, d2, sizeof(float) * N) == 0);
    CHECK(halo_cuda_memcpy(s, back, d2, sizeof(float) * N) == 0);
    CHECK(halo_cuda_stream_sync(s) == 0);
    CHECK(back[N - 1] == 0.0f && back[0] == 0.0f);
    /* an impossible allocation fails cleanly, with a message */
    void *huge = halo_cuda_malloc((size_t)1 << 50);
    CHECK(huge == NULL);
    printf("huge allocation: %s\n", halo_cuda_last_error());
    halo_cuda_free(d);
    halo_cuda_free(d2);
    halo_cuda_stream_free(s);
    free(h);
    free(back);
#endif
    return halo_test_finish("cuda_device");
}
