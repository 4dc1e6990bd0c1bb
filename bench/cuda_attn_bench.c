/*
 * cuda_attn_bench — decode attention on the GPU (halo_cuda_attn) over a paged KV
 * cache: head_dim 256, 16 query heads, 2 KV heads (Qwen3.5's attention layers),
 * f16 and q8_0 caches, contexts 4096 and 32768, 1 and 16 sequences (and 64 at 4096,
 * a server's decode step). Prints the
 * time per call (launch + split merge, averaged over many launches between two
 * stream syncs) and the achieved bandwidth in GB/s of K/V bytes read (every
 * visible position's K and V rows of every KV head of every sequence, once).
 * Not a test; without the CUDA backend it says so and exits 0.
 *
 *   build/cuda_attn_bench [reps]
 */
#include <stdio.h>
#include <stdlib.h>

#ifdef HALO_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#include "quant/quant.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

/* one configuration; returns 0 or -1 */
static int bench(void *st, int type, int32_t ctx, int n_seq, int reps) {
    const int d = 256, n_head = 16, n_kv = 2, ps = 32;
    const size_t hb = halo_type_row_size(type, d);
    const size_t pb = (size_t)ps * n_kv * hb;
    const int32_t pages_per_seq = (ctx + ps - 1) / ps, n_pages = pages_per_seq * n_seq;
    halo_cuda_kv kv;
    memset(&kv, 0, sizeof kv);
    kv.type_k = kv.type_v = type;
    kv.k = halo_cuda_malloc((size_t)n_pages * pb);
    kv.v = halo_cuda_malloc((size_t)n_pages * pb);
    kv.k_page_bytes = kv.v_page_bytes = pb;
    kv.k_head_bytes = kv.v_head_bytes = hb;
    kv.page_size = ps;
    kv.table_stride = pages_per_seq;
    /* pages spread over the pool: sequence s's page i is page i * n_seq + s, reversed */
    int32_t *table = malloc(sizeof(int32_t) * (size_t)n_pages);
    for (int s = 0; s < n_seq; s++)
        for (int32_t i = 0; i < pages_per_seq; i++)
            table[s * pages_per_seq + i] = (pages_per_seq - 1 - i) * n_seq + s;
    int32_t *dtable = halo_cuda_malloc(sizeof(int32_t) * (size_t)n_pages);
    kv.page_table = dtable;
    /* fill the cache through kv_store: a ubatch of up to 4096 positions at a time */
    const int32_t chunk = 4096;
    const size_t rowf = (size_t)n_kv * d;
    float *hk = malloc(sizeof(float) * chunk * rowf);
    for (size_t i = 0; i < chunk * rowf; i++) hk[i] = frand();
    float *dk = halo_cuda_malloc(sizeof(float) * chunk * rowf);
    int32_t *hseq = malloc(sizeof(int32_t) * chunk), *hpos = malloc(sizeof(int32_t) * chunk);
    int32_t *dseq = halo_cuda_malloc(sizeof(int32_t) * chunk), *dpos = halo_cuda_malloc(sizeof(int32_t) * chunk);
    const size_t nq = (size_t)n_seq * n_head * d;
    float *hq = malloc(sizeof(float) * nq);
    for (size_t i = 0; i < nq; i++) hq[i] = frand();
    float *dq = halo_cuda_malloc(sizeof(float) * nq), *dout = halo_cuda_malloc(sizeof(float) * nq);
    const int32_t max_pos = ctx - 1;
    const size_t wb = halo_cuda_attn_work_bytes(n_seq, n_head, d, max_pos);
    void *work = wb ? halo_cuda_malloc(wb) : NULL;
    if (!kv.k || !kv.v || !dtable || !dk || !dseq || !dpos || !dq || !dout || (wb && !work)) {
        fprintf(stderr, "allocation failed: %s\n", halo_cuda_last_error());
        return -1;
    }
    halo_cuda_memcpy(st, dtable, table, sizeof(int32_t) * (size_t)n_pages);
    halo_cuda_memcpy(st, dk, hk, sizeof(float) * chunk * rowf);
    halo_cuda_memcpy(st, dq, hq, sizeof(float) * nq);
    int rc = 0;
    for (int s = 0; s < n_seq && !rc; s++)
        for (int32_t p0 = 0; p0 < ctx && !rc; p0 += chunk) {
            const int32_t n = ctx - p0 < chunk ? ctx - p0 : chunk;
            for (int32_t i = 0; i < n; i++) {
                hseq[i] = s;
                hpos[i] = p0 + i;
            }
            halo_cuda_memcpy(st, dseq, hseq, sizeof(int32_t) * (size_t)n);
            halo_cuda_memcpy(st, dpos, hpos, sizeof(int32_t) * (size_t)n);
            rc = halo_cuda_kv_store(st, &kv, n, dseq, dpos, n_kv, d, d, dk, (int64_t)rowf, dk,
                                    (int64_t)rowf);
            halo_cuda_stream_sync(st); /* hseq/hpos are reused */
        }
    /* the decode ubatch: token s of sequence s at its last position */
    for (int s = 0; s < n_seq; s++) {
        hseq[s] = s;
        hpos[s] = ctx - 1;
    }
    halo_cuda_memcpy(st, dseq, hseq, sizeof(int32_t) * (size_t)n_seq);
    halo_cuda_memcpy(st, dpos, hpos, sizeof(int32_t) * (size_t)n_seq);
    const float scale = 1.0f / 16.0f;
    for (int i = 0; i < 3 && !rc; i++) /* warm up */
        rc = halo_cuda_attn(st, &kv, n_seq, dseq, dpos, max_pos, n_head, n_kv, d, d, scale, dq,
                            dout, work);
    if (!rc) rc = halo_cuda_stream_sync(st);
    double best = 1e30;
    for (int round = 0; round < 3 && !rc; round++) {
        const double t0 = now();
        for (int i = 0; i < reps && !rc; i++)
            rc = halo_cuda_attn(st, &kv, n_seq, dseq, dpos, max_pos, n_head, n_kv, d, d, scale,
                                dq, dout, work);
        if (!rc) rc = halo_cuda_stream_sync(st);
        const double dt = (now() - t0) / reps;
        if (dt < best) best = dt;
    }
    if (rc) {
        fprintf(stderr, "%s ctx %d x%d: failed: %s\n", halo_type_name(type), ctx, n_seq,
                halo_cuda_last_error());
    } else {
        float o[4];
        halo_cuda_memcpy(st, o, dout, sizeof o);
        halo_cuda_stream_sync(st);
        const double bytes = 2.0 * (double)n_seq * (double)ctx * (double)n_kv * (double)hb;
        printf("%-5s ctx %6d seqs %2d: %8.2f us/call  %7.1f GB/s of K/V  (%.1f MiB read, work "
               "%zu B, out[0] %.4f)\n",
               halo_type_name(type), ctx, n_seq, best * 1e6, bytes / best * 1e-9,
               bytes / (1 << 20), wb, (double)o[0]);
    }
    halo_cuda_free(kv.k);
    halo_cuda_free(kv.v);
    halo_cuda_free(dtable);
    halo_cuda_free(dk);
    halo_cuda_free(dseq);
    halo_cuda_free(dpos);
    halo_cuda_free(dq);
    halo_cuda_free(dout);
    if (work) halo_cuda_free(work);
    free(table);
    free(hk);
    free(hseq);
    free(hpos);
    free(hq);
    return rc;
}

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 200;
    if (halo_cuda_device_count() <= 0) {
        printf("cuda_attn_bench: no CUDA GPU visible (%s)\n", halo_cuda_last_error());
        return 0;
    }
    halo_cuda_set_device(0);
    char name[128];
    size_t total = 0, fr = 0;
    halo_cuda_device_info(0, name, sizeof name, &total, &fr);
    printf("GPU 0: %s; decode attention, head_dim 256, 16 q heads, 2 KV heads, pages of 32, "
           "%d calls per timing (best of 3)\n",
           name, reps);
    void *st = halo_cuda_stream_new();
    const int types[2] = {HALO_TYPE_F16, HALO_TYPE_Q8_0};
    const int32_t ctxs[2] = {4096, 32768};
    const int seqs[3] = {1, 16, 64};
    int rc = 0;
    for (int ti = 0; ti < 2; ti++)
        for (int ci = 0; ci < 2; ci++)
            for (int si = 0; si < 3; si++) {
                if (seqs[si] == 64 && ctxs[ci] > 4096) continue; /* server decode: 64 x 4096 */
                rc |= bench(st, types[ti], ctxs[ci], seqs[si], reps);
            }
    halo_cuda_stream_free(st);
    return rc ? 1 : 0;
}
#else
int main(void) {
    printf("cuda_attn_bench: halo was built without the CUDA backend\n");
    return 0;
}
#endif
