/*
 * cuda_deltanet_bench — speed of the Gated DeltaNet delta rule on the GPU
 * (halo_cuda_deltanet_rule, recurrent form + gated norm) for the Qwen3.5-35B shape
 * (16 key heads, 32 value heads, dk = dv = 128, conv channels 8192):
 *   decode:  64 segments of 1 token (64 sequences' states)
 *   prefill: 1 segment of 512 tokens
 * Time per call over many launches (clock_gettime around them + one stream sync),
 * and GB/s of SSM state read + written (each touched state once each way per call).
 * The conv (+ L2 norms) launch is timed too, for scale. Not a test; prints and exits 0
 * where CUDA or a GPU is missing.
 *
 *   build/cuda_deltanet_bench [iterations-scale]
 */
#include <stdio.h>
#include <stdlib.h>

#ifdef HALO_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"

#include <math.h>
#include <stdint.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x853c49e6748fea9bull;
static float rnd(float lo, float hi) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return lo + (hi - lo) * (float)(rng >> 40) / 16777216.0f;
}

static float *dev_random(void *s, size_t n, float lo, float hi) {
    float *h = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) h[i] = rnd(lo, hi);
    float *d = halo_cuda_malloc(sizeof(float) * n);
    if (!d || halo_cuda_memcpy(s, d, h, sizeof(float) * n) != 0 || halo_cuda_stream_sync(s) != 0) {
        fprintf(stderr, "device allocation/copy failed: %s\n", halo_cuda_last_error());
        exit(1);
    }
    free(h);
    return d;
}

enum { HK = 16, HV = 32, DK = 128, DV = 128, KW = 4 };
#define CH (2 * HK * DK + HV * DV)

static void bench(void *s, const char *name, int32_t n_seg, int32_t per_seg, int iters) {
    const int32_t n_tok = n_seg * per_seg;
    const int64_t ssm_floats = (int64_t)HV * DK * DV, conv_floats = (int64_t)(KW - 1) * CH;
    float *x = dev_random(s, (size_t)n_tok * CH, -1.0f, 1.0f);
    float *w = dev_random(s, (size_t)CH * KW, -0.5f, 0.5f);
    float *alpha = dev_random(s, (size_t)n_tok * HV, -6.0f, 2.0f);
    float *b = dev_random(s, (size_t)n_tok * HV, -3.0f, 3.0f);
    float *a = dev_random(s, HV, -8.0f, -0.2f);
    float *dt = dev_random(s, HV, -1.0f, 1.0f);
    float *z = dev_random(s, (size_t)n_tok * HV * DV, -3.0f, 3.0f);
    float *nw = dev_random(s, DV, 0.5f, 1.5f);
    float *cs = dev_random(s, (size_t)(n_seg * conv_floats), -1.0f, 1.0f);
    float *ss = dev_random(s, (size_t)(n_seg * ssm_floats), -0.3f, 0.3f);
    float *y = halo_cuda_malloc(sizeof(float) * (size_t)n_tok * CH);
    float *g = halo_cuda_malloc(sizeof(float) * (size_t)n_tok * HV);
    float *beta = halo_cuda_malloc(sizeof(float) * (size_t)n_tok * HV);
    float *o = halo_cuda_malloc(sizeof(float) * (size_t)n_tok * HV * DV);
    int32_t *off = malloc(sizeof(int32_t) * (size_t)(n_seg + 1)), *seq = malloc(sizeof(int32_t) * (size_t)n_seg);
    for (int32_t j = 0; j <= n_seg; j++) off[j] = j * per_seg;
    for (int32_t j = 0; j < n_seg; j++) seq[j] = j;
    int32_t *doff = halo_cuda_malloc(sizeof(int32_t) * (size_t)(n_seg + 1));
    int32_t *dseq = halo_cuda_malloc(sizeof(int32_t) * (size_t)n_seg);
    if (!y || !g || !beta || !o || !doff || !dseq) {
        fprintf(stderr, "device allocation failed: %s\n", halo_cuda_last_error());
        exit(1);
    }
    halo_cuda_memcpy(s, doff, off, sizeof(int32_t) * (size_t)(n_seg + 1));
    halo_cuda_memcpy(s, dseq, seq, sizeof(int32_t) * (size_t)n_seg);
    const float q_scale = 1.0f / sqrtf((float)DK);
    /* realistic inputs: normalized q and k from the conv, real gates */
    int rc = halo_cuda_deltanet_conv(s, x, n_tok, CH, KW, w, cs, conv_floats, doff, dseq, n_seg, HK,
                                     DK, q_scale, y);
    rc |= halo_cuda_deltanet_gates(s, alpha, b, a, dt, n_tok, HV, g, beta);
    if (rc != 0 || halo_cuda_stream_sync(s) != 0) {
        fprintf(stderr, "%s: setup failed: %s\n", name, halo_cuda_last_error());
        exit(1);
    }

    /* the rule: warm up, then many launches */
    for (int i = 0; i < 3; i++)
        rc |= halo_cuda_deltanet_rule(s, y, CH, g, beta, z, nw, 1e-6f, n_tok, HK, HV, DK, DV, ss,
                                      ssm_floats, doff, dseq, n_seg, o);
    halo_cuda_stream_sync(s);
    double t0 = now();
    for (int i = 0; i < iters; i++)
        rc |= halo_cuda_deltanet_rule(s, y, CH, g, beta, z, nw, 1e-6f, n_tok, HK, HV, DK, DV, ss,
                                      ssm_floats, doff, dseq, n_seg, o);
    int sync = halo_cuda_stream_sync(s);
    double per = (now() - t0) / iters;
    if (rc != 0 || sync != 0) {
        fprintf(stderr, "%s: rule failed: %s\n", name, halo_cuda_last_error());
        exit(1);
    }
    const double bytes = 2.0 * (double)n_seg * (double)ssm_floats * sizeof(float);
    printf("%-8s rule: %3d segments x %3d tokens: %9.2f us/call, %7.1f GB/s of state, "
           "%8.2f us/token/segment\n",
           name, n_seg, per_seg, per * 1e6, bytes / per * 1e-9, per * 1e6 / per_seg);

    /* the conv + norms, for scale (its state carried as in a real run) */
    for (int i = 0; i < 3; i++)
        rc |= halo_cuda_deltanet_conv(s, x, n_tok, CH, KW, w, cs, conv_floats, doff, dseq, n_seg,
                                      HK, DK, q_scale, y);
    halo_cuda_stream_sync(s);
    t0 = now();
    for (int i = 0; i < iters; i++)
        rc |= halo_cuda_deltanet_conv(s, x, n_tok, CH, KW, w, cs, conv_floats, doff, dseq, n_seg,
                                      HK, DK, q_scale, y);
    sync = halo_cuda_stream_sync(s);
    per = (now() - t0) / iters;
    if (rc != 0 || sync != 0) {
        fprintf(stderr, "%s: conv failed: %s\n", name, halo_cuda_last_error());
        exit(1);
    }
    printf("%-8s conv: %3d segments x %3d tokens: %9.2f us/call\n", name, n_seg, per_seg, per * 1e6);

    halo_cuda_free(x), halo_cuda_free(w), halo_cuda_free(alpha), halo_cuda_free(b);
    halo_cuda_free(a), halo_cuda_free(dt), halo_cuda_free(z), halo_cuda_free(nw);
    halo_cuda_free(cs), halo_cuda_free(ss), halo_cuda_free(y), halo_cuda_free(g);
    halo_cuda_free(beta), halo_cuda_free(o), halo_cuda_free(doff), halo_cuda_free(dseq);
    free(off), free(seq);
}
#endif

int main(int argc, char **argv) {
#ifdef HALO_HAVE_CUDA
    const int scale = argc > 1 ? atoi(argv[1]) : 1;
    if (halo_cuda_device_count() <= 0) {
        printf("cuda_deltanet_bench: no CUDA GPU visible (%s)\n", halo_cuda_last_error());
        return 0;
    }
    halo_cuda_set_device(0);
    char dev[128];
    size_t total = 0, fr = 0;
    halo_cuda_device_info(0, dev, sizeof dev, &total, &fr);
    printf("GPU 0: %s; Qwen3.5-35B DeltaNet shape: %d key heads, %d value heads, dk %d, dv %d\n",
           dev, HK, HV, DK, DV);
    void *s = halo_cuda_stream_new();
    if (!s) {
        fprintf(stderr, "no stream: %s\n", halo_cuda_last_error());
        return 1;
    }
    bench(s, "decode", 64, 1, 500 * (scale > 0 ? scale : 1));
    bench(s, "prefill", 1, 512, 50 * (scale > 0 ? scale : 1));
    halo_cuda_stream_free(s);
#else
    (void)argc, (void)argv;
    printf("cuda_deltanet_bench: halo was built without the CUDA backend\n");
#endif
    return 0;
}
