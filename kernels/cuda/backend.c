/*
 * The CUDA backend: the ops of runtime/backend.h on the kernels of
 * kernels/cuda/cuda_ops.h.
 *
 * - Weights are copied to the GPU once per model (halo_cuda_model_upload), into
 *   one allocation; each halo_weight's `dev` points at its copy.
 * - A context's buffers (activations, KV pages, recurrent state) are device
 *   memory; the model code passes them to the ops as it does on the CPU.
 * - Every op is enqueued on the context's one stream. Within a ubatch nothing
 *   allocates and nothing waits for the GPU: `begin` copies the ubatch's tokens,
 *   positions, sequences, segments and page tables from pinned host memory, the
 *   ops follow, and `finish` copies the logits back and waits (the only sync).
 * - MoE routing is on the GPU: router product, top-k, and products by expert id
 *   that read the ids from device memory; the host never sees them.
 */
#include "kernels/cuda/cuda_ops.h"
#include "kernels/kernels.h"
#include "quant/quant.h"
#include "runtime/backend.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the model's weights on the GPU ------------------------------------------------ */

struct halo_gpu_weights {
    void *base;
    size_t bytes;
    int device;
};

static size_t weight_bytes(const halo_weight *w) {
    if (w->n_mats > 1) return (size_t)w->n_mats * w->mat_stride;
    return (size_t)w->n_rows * w->row_stride;
}

static int cmp_weight_data(const void *a, const void *b) {
    const halo_weight *x = *(halo_weight *const *)a, *y = *(halo_weight *const *)b;
    uintptr_t p = (uintptr_t)x->data, q = (uintptr_t)y->data;
    return p < q ? -1 : p > q;
}

void halo_cuda_model_release(halo_model *model) {
    if (!model || !model->gpu) return;
    halo_cuda_free(model->gpu->base);
    free(model->gpu);
    model->gpu = NULL;
    halo_weight *ws[4096];
    size_t n = halo_model_weights(model, ws, 4096);
    for (size_t i = 0; i < n && i < 4096; i++) ws[i]->dev = NULL;
}

int halo_cuda_model_upload(halo_model *model, int device, halo_error *err) {
    if (model->gpu) return 0;
    int n_dev = halo_cuda_device_count();
    if (n_dev <= 0)
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "-ngl: no CUDA GPU is visible (%s); run without -ngl for the CPU",
                              halo_cuda_last_error());
    if (device < 0 || device >= n_dev)
        return halo_error_set(err, HALO_ERR_ARG, "GPU %d does not exist (%d visible)", device,
                              n_dev);
    if (halo_cuda_set_device(device))
        return halo_error_set(err, HALO_ERR_IO, "cannot use GPU %d: %s", device,
                              halo_cuda_last_error());
    size_t n_all = halo_model_weights(model, NULL, 0);
    halo_weight **ws = malloc(sizeof *ws * (n_all ? n_all : 1));
    if (!ws) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    halo_model_weights(model, ws, n_all);
    /* the weights present, each type computable on the GPU */
    size_t n = 0;
    for (size_t i = 0; i < n_all; i++) {
        halo_weight *w = ws[i];
        if (!w->data || w->host) continue; /* absent, or kept on the CPU (--n-cpu-moe, -ot) */
        if (!halo_cuda_matmul_supported(w->type)) {
            free(ws);
            return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                                  "a %s weight cannot run on the GPU yet (run without -ngl)",
                                  halo_type_name(w->type));
        }
        ws[n++] = w;
    }
    /* one allocation; tensors that share their bytes (tied output) share the copy */
    qsort(ws, n, sizeof *ws, cmp_weight_data);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && ws[i]->data == ws[i - 1]->data) continue;
        total += ((uint64_t)weight_bytes(ws[i]) + 255) & ~(uint64_t)255;
    }
    char name[128] = "GPU";
    size_t dev_total = 0, dev_free = 0;
    halo_cuda_device_info(device, name, sizeof name, &dev_total, &dev_free);
    char need[32], have[32];
    halo_format_bytes(total, need, sizeof need);
    halo_format_bytes(dev_free, have, sizeof have);
    void *base = halo_cuda_malloc((size_t)total);
    if (!base) {
        free(ws);
        return halo_error_set(err, HALO_ERR_NOMEM,
                              "the weights need %s of GPU memory and %s has %s free: use fewer "
                              "GPU layers (-ngl) or keep experts on the CPU (--n-cpu-moe)",
                              need, name, have);
    }
    void *stream = halo_cuda_stream_new();
    halo_log(HALO_LOG_INFO, "uploading %s of weights to %s", need, name);
    uint64_t off = 0, done = 0, next_report = 1u << 30;
    double t0 = halo_time_seconds();
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        halo_weight *w = ws[i];
        if (i && w->data == ws[i - 1]->data) {
            w->dev = ws[i - 1]->dev;
            continue;
        }
        size_t bytes = weight_bytes(w);
        w->dev = (char *)base + off;
        /* in pieces, so a mapped file's pages stream in while the copy runs */
        for (size_t o = 0; o < bytes && !rc; o += (size_t)64 << 20) {
            size_t len = bytes - o < ((size_t)64 << 20) ? bytes - o : (size_t)64 << 20;
            rc = halo_cuda_memcpy(stream, (char *)base + off + o, (const char *)w->data + o, len);
            if (!rc) rc = halo_cuda_stream_sync(stream);
            done += len;
            if (done >= next_report) {
                char d[32];
                halo_format_bytes(done, d, sizeof d);
                halo_log(HALO_LOG_INFO, "  %s / %s (%.0f %%)", d, need, 100.0 * done / total);
                next_report += 1u << 30;
            }
        }
        off += ((uint64_t)bytes + 255) & ~(uint64_t)255;
    }
    halo_cuda_stream_free(stream);
    free(ws);
    if (rc) {
        halo_cuda_free(base);
        return halo_error_set(err, HALO_ERR_IO, "copying the weights to the GPU failed: %s",
                              halo_cuda_last_error());
    }
    model->gpu = calloc(1, sizeof *model->gpu);
    if (!model->gpu) {
        halo_cuda_free(base);
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    }
    model->gpu->base = base;
    model->gpu->bytes = (size_t)total;
    model->gpu->device = device;
    double dt = halo_time_seconds() - t0;
    halo_log(HALO_LOG_INFO, "weights on %s in %.2f s (%.1f GB/s)", name, dt,
             dt > 0 ? (double)total / dt / 1e9 : 0.0);
    return 0;
}

/* ---- a context's state ---------------------------------------------------------------- */

/* A ubatch's shape, as far as it reaches the launches (host-side sizes); every
 * other input (tokens, positions, sequences, page tables) is read by the kernels
 * from device buffers the ubatch fills before the graph runs. */
typedef struct graph_key {
    int32_t n, n_seg, n_out, attn_max_pos;
    bool identity, embd;
} graph_key;

typedef struct graph_entry {
    graph_key key;
    void *exec;     /* NULL: unused */
    uint64_t used;  /* for replacing the least recently used */
} graph_entry;

#define GRAPH_CACHE 24
#define BLAS_WORKSPACE (32u << 20) /* cuBLAS's scratch on Hopper, as its guide advises */
/* split-K parts of the int8 products of few tiles (halo_cuda_matmul_ws): 512 tokens x
 * 2048 rows in 2 parts, 64 tokens x 512 rows in 32 */
#define MM_WORKSPACE (16u << 20)
#define GRAPH_MAX_TOKENS 64 /* ubatches up to this size are captured (decode steps) */

typedef struct cuda_state {
    void *stream;
    int error;          /* a launch failed: the logits are not valid */
    char failed[96];    /* the first op that failed (function:line) */
    /* the ubatch: pinned host staging, and the device copies */
    int32_t *h_meta, *d_meta;
    size_t meta_ints;
    int32_t *d_token, *d_pos, *d_seq, *d_perm, *d_seg_off, *d_seg_seq, *d_out_idx, *d_table;
    int32_t *h_token, *h_pos, *h_seq, *h_perm, *h_seg_off, *h_seg_seq, *h_out_idx, *h_table;
    float *inv_freq;
    /* MoE */
    float *router, *moe_w, *moe_a, *moe_b, *moe_y, *sh, *sh_a, *sh_b, *shg;
    int32_t *moe_ids;
    bool fused_route;       /* top-k in the router product (HALO_CUDA_FUSED_ROUTE=1: on) */
    bool unfused_norm;      /* HALO_CUDA_FUSED_NORM=0: add and RMS norm as two launches */
    int32_t *route_counter; /* its count of finished blocks */
    /* experts kept in host memory (--n-cpu-moe, -ot): pinned staging, and the products'
     * list for one-token steps */
    bool host_experts;
    void *ev_routed; /* the routes and inputs are on the host */
    float *h_xn, *h_ffa, *h_ffb, *h_y, *h_x, *h_tmp;
    int32_t *h_ids, *h_list, *h_count;
    halo_mm *h_mm;
    /* attention */
    void *attn_work;
    /* output */
    float *out_x, *logits;
    int32_t out_first, out_n; /* rows of ctx->logits the ubatch fills */
    /* attention's bound on positions: ub->max_pos rounded up (a graph's shape) */
    int32_t attn_max_pos;
    int device;
    halo_cuda_blas *blas; /* NULL: no cuBLAS */
    void *blas_ws;
    void *mm_ws; /* halo_cuda_matmul_ws's (NULL: products unsplit) */
    /* CUDA graphs of small ubatches (decode steps), by shape */
    bool graphs;    /* capture and replay (HALO_CUDA_GRAPHS=0 turns it off) */
    bool capturing; /* the ops of this ubatch are being recorded */
    bool replay;    /* this ubatch replays a graph: the ops enqueue nothing */
    graph_entry graph[GRAPH_CACHE];
    int32_t graph_cur; /* the entry being recorded or replayed */
    uint64_t graph_clock;
} cuda_state;

static cuda_state *st(halo_context *ctx) { return ctx->be.impl; }

/* While a graph replays, the model code still walks its layers, but the ops
 * enqueue nothing: the graph holds them. */
#define SKIP_IF_REPLAY(ctx)                                                                        \
    do {                                                                                           \
        if (st(ctx)->replay) return;                                                               \
    } while (0)

static void check_at(halo_context *ctx, int rc, const char *fn, int line) {
    cuda_state *s = ctx->be.impl;
    if (!rc || s->error) return;
    s->error = 1;
    snprintf(s->failed, sizeof s->failed, "%s:%d", fn, line);
}
/* Record the first failing launch of a ubatch (an unsupported shape or a CUDA error). */
#define check(ctx, rc) check_at((ctx), (rc), __func__, __LINE__)

static const void *wdev(const halo_weight *w, int64_t expert) {
    return (const char *)w->dev + (size_t)expert * w->mat_stride;
}

/* ---- memory ----------------------------------------------------------------------------- */

static void *cu_alloc(halo_backend *be, size_t bytes) { return halo_cuda_malloc(bytes); }
static void cu_free(halo_backend *be, void *p) { halo_cuda_free(p); }

static void cu_to_host(halo_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_state *s = be->impl;
    if (halo_cuda_memcpy(s->stream, dst, src, bytes) || halo_cuda_stream_sync(s->stream))
        s->error = 1;
}

static void *cu_host_alloc(halo_backend *be, size_t bytes) {
    (void)be;
    return halo_cuda_host_alloc(bytes);
}

static void cu_host_free(halo_backend *be, void *p) {
    (void)be;
    halo_cuda_host_free(p);
}

static void cu_to_backend(halo_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_state *s = be->impl;
    /* synchronous: the caller may reuse its buffer at once */
    if (halo_cuda_memcpy(s->stream, dst, src, bytes) || halo_cuda_stream_sync(s->stream))
        s->error = 1;
}

static int64_t cu_mem_free(halo_backend *be) {
    cuda_state *s = be->impl;
    return halo_cuda_mem_free(s->device);
}

static void cu_copy(halo_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_state *s = be->impl;
    if (halo_cuda_memcpy(s->stream, dst, src, bytes)) s->error = 1;
}

static void cu_zero(halo_backend *be, void *dst, size_t bytes) {
    cuda_state *s = be->impl;
    if (halo_cuda_memset0(s->stream, dst, bytes)) s->error = 1;
}

static void cu_release(halo_backend *be) {
    cuda_state *s = be->impl;
    if (!s) return;
    if (s->stream) halo_cuda_stream_sync(s->stream);
    for (int i = 0; i < GRAPH_CACHE; i++) halo_cuda_graph_free(s->graph[i].exec);
    void *dev[] = {s->d_meta, s->inv_freq, s->router, s->moe_w, s->moe_a, s->moe_b, s->moe_y, s->route_counter,
                   s->sh,     s->sh_a,     s->sh_b,   s->shg,   s->moe_ids, s->attn_work,
                   s->out_x,  s->logits};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) halo_cuda_free(dev[i]);
    halo_cuda_host_free(s->h_meta);
    void *host[] = {s->h_xn, s->h_ffa, s->h_ffb, s->h_y, s->h_x, s->h_tmp, s->h_ids};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) halo_cuda_host_free(host[i]);
    free(s->h_list);
    free(s->h_count);
    free(s->h_mm);
    halo_cuda_event_free(s->ev_routed);
    halo_cuda_blas_free(s->blas);
    halo_cuda_free(s->blas_ws);
    halo_cuda_free(s->mm_ws);
    halo_cuda_stream_free(s->stream);
    free(s);
    be->impl = NULL;
}

/* ---- a ubatch ----------------------------------------------------------------------------- */

static bool key_eq(const graph_key *a, const graph_key *b) {
    return a->n == b->n && a->n_seg == b->n_seg && a->n_out == b->n_out &&
           a->attn_max_pos == b->attn_max_pos && a->identity == b->identity && a->embd == b->embd;
}


static void cu_begin(halo_context *ctx, const halo_ubatch *ub) {
    cuda_state *s = st(ctx);
    const int32_t n = ub->n;
    s->error = 0;
    s->failed[0] = 0;
    /* the current device is per thread: the server decodes on its scheduler thread */
    check(ctx, halo_cuda_set_device(ctx->model->gpu->device));
    /* programmatic dependent launch for decode steps (H100: tg128 295 -> 331 t/s), not
     * for prompts (pp512 4760 -> 4249) */
    halo_cuda_pdl_set(n <= GRAPH_MAX_TOKENS);
    s->replay = s->capturing = false;
    s->attn_max_pos = halo_kv_attn_bound(ctx, ub->max_pos);
    s->out_n = ub->n_out;
    s->out_first = -1;
    for (int32_t t = 0; t < n && s->out_first < 0; t++)
        if (ub->out[t] >= 0) s->out_first = ub->out[t];
    memcpy(s->h_token, ub->token, sizeof(int32_t) * (size_t)n);
    memcpy(s->h_pos, ub->pos, sizeof(int32_t) * (size_t)n);
    memcpy(s->h_seq, ub->seq, sizeof(int32_t) * (size_t)n);
    memcpy(s->h_perm, ub->perm, sizeof(int32_t) * (size_t)n);
    memcpy(s->h_seg_off, ub->seg_off, sizeof(int32_t) * (size_t)(ub->n_seg + 1));
    memcpy(s->h_seg_seq, ub->seg_seq, sizeof(int32_t) * (size_t)ub->n_seg);
    int32_t j = 0;
    for (int32_t t = 0; t < n; t++)
        if (ub->out[t] >= 0) s->h_out_idx[j++] = t;
    /* everything up to the page table in one copy, then the tables of the sequences in use */
    size_t head = (size_t)(s->h_table - s->h_meta);
    check(ctx, halo_cuda_memcpy(s->stream, s->d_meta, s->h_meta, sizeof(int32_t) * head));
    const int32_t np = ctx->kv.n_pages;
    if (np > 0) {
        for (int32_t k = 0; k < ub->n_seg; k++) {
            int32_t q = ub->seg_seq[k];
            size_t off = (size_t)q * (size_t)np;
            memcpy(s->h_table + off, ctx->kv.page_table + off,
                   sizeof(int32_t) * (size_t)ctx->kv.n_seq_pages[q]);
            check(ctx, halo_cuda_memcpy(s->stream, s->d_table + off, s->h_table + off,
                                        sizeof(int32_t) * (size_t)ctx->kv.n_seq_pages[q]));
        }
    }
    /* a decode-sized ubatch: replay its shape's graph, or record it */
    if (!s->graphs || n > GRAPH_MAX_TOKENS || s->error) return;
    graph_key key = {n, ub->n_seg, ub->n_out, s->attn_max_pos, ub->identity, ub->embd};
    int32_t lru = 0;
    for (int32_t i = 0; i < GRAPH_CACHE; i++) {
        graph_entry *g = &s->graph[i];
        if (g->exec && key_eq(&g->key, &key)) {
            g->used = ++s->graph_clock;
            s->graph_cur = i;
            s->replay = true;
            return;
        }
        if (!g->exec || (s->graph[lru].exec && g->used < s->graph[lru].used)) lru = i;
    }
    graph_entry *g = &s->graph[lru];
    halo_cuda_graph_free(g->exec);
    g->exec = NULL;
    g->key = key;
    s->graph_cur = lru;
    if (halo_cuda_capture_begin(s->stream) == 0) s->capturing = true;
    else s->graphs = false; /* capture unsupported here: run every ubatch directly */
}

/* 0: done; 1: run the ubatch again (a capture failed before anything ran, and
 * graphs are now off); -1: a kernel failed. */
static int cu_finish(halo_context *ctx, const halo_ubatch *ub) {
    cuda_state *s = st(ctx);
    if (s->capturing) {
        graph_entry *g = &s->graph[s->graph_cur];
        s->capturing = false;
        int rc = halo_cuda_capture_end(s->stream, &g->exec);
        if (rc || s->error) { /* nothing of this ubatch ran: again, without graphs */
            halo_cuda_graph_free(g->exec);
            g->exec = NULL;
            if (rc) {
                halo_log(HALO_LOG_WARN, "CUDA graphs unavailable (%s): running without them",
                         halo_cuda_last_error());
                s->graphs = false;
                return 1;
            }
        } else {
            g->used = ++s->graph_clock;
            s->replay = true;
        }
    }
    if (s->replay && !s->error) {
        if (halo_cuda_graph_launch(s->graph[s->graph_cur].exec, s->stream)) s->error = 1;
        s->replay = false;
    }
    if (s->out_n > 0 && !s->error) { /* logits, or the normed rows (embeddings) */
        const size_t w = ub->embd ? ctx->hp->n_embd : ctx->hp->n_vocab;
        check(ctx, halo_cuda_memcpy(s->stream, ctx->logits + (size_t)s->out_first * w,
                                    ub->embd ? s->out_x : s->logits,
                                    sizeof(float) * (size_t)s->out_n * w));
    }
    if (halo_cuda_stream_sync(s->stream)) s->error = 1;
    if (s->error)
        halo_log(HALO_LOG_ERROR, "CUDA: %s failed (%s)", s->failed[0] ? s->failed : "a kernel",
                 halo_cuda_last_error());
    return s->error ? -1 : 0;
}

/* ---- ops ------------------------------------------------------------------------------------- */

static void cu_embed(halo_context *ctx, const halo_ubatch *ub, float *x) {
    SKIP_IF_REPLAY(ctx);
    const halo_weight *w = &ctx->model->tok_embd;
    check(ctx, halo_cuda_get_rows(st(ctx)->stream, w->type, w->dev, w->row_stride, w->n_cols,
                                  st(ctx)->d_token, ub->n, x));
}

/* Decode products (up to MV_MAX_TOKENS tokens: a step of up to that many parallel
 * sequences) go through halo_cuda_mv_launch: several in one launch, activations
 * quantized to int16 (kernels/cuda/mmv.cu); a block per token and row block, the
 * blocks of one row block for all tokens together, so that the weights come from
 * HBM once and from L2 for the other tokens. Larger ubatches (prefill) take the
 * tensor-core tiles (mmq.cu). */
#define MV_MAX_TOKENS 32

/* MV_MAX_TOKENS, or HALO_CUDA_MV_MAX_TOKENS (1..64) to compare the two paths */
static int64_t mv_max_tokens(void) {
    static int64_t v = 0; /* a race only repeats the same read */
    if (!v) {
        const char *e = getenv("HALO_CUDA_MV_MAX_TOKENS");
        long x = e ? strtol(e, NULL, 10) : 0;
        v = x >= 1 && x <= 64 ? x : MV_MAX_TOKENS;
    }
    return v;
}

static halo_cuda_mv mv_dense(const halo_weight *w, int64_t expert, const float *x, int64_t n,
                             float *y) {
    return (halo_cuda_mv){
        .type = w->type,
        .w = wdev(w, expert),
        .row_stride = w->row_stride,
        .n_rows = w->n_rows,
        .n_cols = w->n_cols,
        .x = x,
        .n_x = (int32_t)n,
        .x_div = 1,
        .y = y,
    };
}

static halo_cuda_mv mv_id(const halo_weight *w, const float *x, int32_t x_div,
                          const int32_t *ids, int32_t n_assign, float *y) {
    return (halo_cuda_mv){
        .type = w->type,
        .w = w->dev,
        .row_stride = w->row_stride,
        .mat_stride = w->mat_stride,
        .n_rows = w->n_rows,
        .n_cols = w->n_cols,
        .x = x,
        .n_x = n_assign,
        .x_div = x_div,
        .ids = ids,
        .y = y,
    };
}

/* Make m a SwiGLU pair with up (same type and shape), if the kernel takes it. */
static bool mv_pair(halo_cuda_mv *m, const halo_weight *up, int64_t expert) {
    if (up->type != m->type || up->row_stride != m->row_stride || up->n_rows != m->n_rows ||
        up->n_cols != m->n_cols || (m->ids && up->mat_stride != m->mat_stride))
        return false;
    halo_cuda_mv t = *m;
    t.w2 = m->ids ? up->dev : wdev(up, expert);
    if (!halo_cuda_mv_supported(&t)) return false;
    *m = t;
    return true;
}

static void cu_matmul(halo_context *ctx, const halo_weight *w, int64_t expert, const float *x,
                      int64_t n, float *y) {
    SKIP_IF_REPLAY(ctx);
    if (n <= mv_max_tokens()) {
        const halo_cuda_mv m = mv_dense(w, expert, x, n, y);
        if (halo_cuda_mv_supported(&m)) {
            check(ctx, halo_cuda_mv_launch(st(ctx)->stream, &m, 1));
            return;
        }
    }
    cuda_state *s = st(ctx);
    /* f32 weights (MoE routers) times a prompt's tokens: cuBLAS, where it was found
     * (outside graph captures: prompts are never captured) */
    if (w->type == HALO_TYPE_F32 && s->blas && !s->capturing &&
        halo_cuda_blas_matmul_f32(s->blas, wdev(w, expert), w->row_stride, w->n_rows, w->n_cols,
                                  x, n, y) == 0)
        return;
    check(ctx, halo_cuda_matmul_ws(s->stream, w->type, wdev(w, expert), w->row_stride, w->n_rows,
                                   w->n_cols, x, n, y, s->mm_ws, s->mm_ws ? MM_WORKSPACE : 0));
}

/* One-token products in as few launches as the types allow; pairs (2i, 2i + 1),
 * i < n_glu, are SwiGLU gate / up pairs (silu(gate) * up into the gate's y). */
static void cu_matmul_multi(halo_context *ctx, const halo_mm *mm, int n_mm, int n_glu) {
    SKIP_IF_REPLAY(ctx);
    halo_cuda_mv list[HALO_CUDA_MV_MAX];
    int n_list = 0;
    for (int i = 0; i < n_mm; i++) {
        const bool pair = i < 2 * n_glu;
        halo_cuda_mv m = mv_dense(mm[i].w, mm[i].expert, mm[i].x, 1, mm[i].y);
        bool ok = halo_cuda_mv_supported(&m);
        if (ok && pair) ok = mm[i + 1].x == mm[i].x && mv_pair(&m, mm[i + 1].w, mm[i + 1].expert);
        if (!ok) { /* separately */
            cu_matmul(ctx, mm[i].w, mm[i].expert, mm[i].x, 1, mm[i].y);
            if (pair) {
                cu_matmul(ctx, mm[i + 1].w, mm[i + 1].expert, mm[i + 1].x, 1, mm[i + 1].y);
                check(ctx, halo_cuda_swiglu(st(ctx)->stream, mm[i].y, mm[i + 1].y, mm[i].w->n_rows));
            }
        } else {
            if (n_list == HALO_CUDA_MV_MAX) {
                check(ctx, halo_cuda_mv_launch(st(ctx)->stream, list, n_list));
                n_list = 0;
            }
            list[n_list++] = m;
        }
        if (pair) i++;
    }
    if (n_list) check(ctx, halo_cuda_mv_launch(st(ctx)->stream, list, n_list));
}

static void cu_rms_norm(halo_context *ctx, const float *x, const halo_weight *w, float *y,
                        int64_t n_rows, int64_t n, float eps) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_cuda_rms_norm(st(ctx)->stream, x, w ? w->dev : NULL, y, n_rows, n, eps));
}

static void cu_rope(halo_context *ctx, const halo_ubatch *ub, float *x, int n_heads,
                    int head_dim) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_cuda_rope(st(ctx)->stream, x, ub->n, n_heads, head_dim, (int)ctx->hp->n_rot,
                              ctx->model->rope_mode, st(ctx)->d_pos, st(ctx)->inv_freq));
}

static void cu_hadamard(halo_context *ctx, float *x, int64_t n_rows, int64_t n, int block) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_cuda_hadamard(st(ctx)->stream, x, n_rows, n, block));
}

static void cu_add(halo_context *ctx, float *x, const float *y, int64_t n) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_cuda_add(st(ctx)->stream, x, y, n));
}

static void cu_add_rms_norm(halo_context *ctx, float *x, const float *y, const halo_weight *w,
                            float *xn, int64_t n_rows, int64_t n, float eps) {
    SKIP_IF_REPLAY(ctx);
    cuda_state *s = st(ctx);
    if (s->unfused_norm) { /* HALO_CUDA_FUSED_NORM=0 (measurements) */
        check(ctx, halo_cuda_add(s->stream, x, y, n_rows * n));
        check(ctx, halo_cuda_rms_norm(s->stream, x, w ? w->dev : NULL, xn, n_rows, n, eps));
        return;
    }
    check(ctx, halo_cuda_add_rms_norm(s->stream, x, y, w ? w->dev : NULL, xn, n_rows, n, eps));
}

static void cu_swiglu(halo_context *ctx, float *g, const float *u, int64_t n) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_cuda_swiglu(st(ctx)->stream, g, u, n));
}

static void cu_sigmoid_gate(halo_context *ctx, float *x, const float *g, int64_t n) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_cuda_sigmoid_gate(st(ctx)->stream, x, g, n));
}

static void cu_copy2d(halo_context *ctx, float *dst, int64_t dst_stride, const float *src,
                      int64_t src_stride, int64_t rows, int64_t width) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_cuda_copy2d(st(ctx)->stream, dst, dst_stride, src, src_stride, rows, width));
}

static void cu_gather(halo_context *ctx, const halo_ubatch *ub, float *dst, const float *src,
                      int64_t width) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_cuda_gather_rows(st(ctx)->stream, dst, src, st(ctx)->d_perm, ub->n, width));
}

static void cu_scatter(halo_context *ctx, const halo_ubatch *ub, float *dst, const float *src,
                       int64_t width) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_cuda_scatter_rows(st(ctx)->stream, dst, src, st(ctx)->d_perm, ub->n, width));
}

static halo_cuda_kv layer_kv(halo_context *ctx, uint32_t il) {
    const halo_kv_cache *kv = &ctx->kv;
    return (halo_cuda_kv){
        .type_k = kv->type_k,
        .type_v = kv->type_v,
        .k = kv->k[il],
        .v = kv->v[il],
        .k_page_bytes = HALO_KV_PAGE * kv->k_row_bytes[il],
        .v_page_bytes = HALO_KV_PAGE * kv->v_row_bytes[il],
        .k_head_bytes = kv->k_head_bytes[il],
        .v_head_bytes = kv->v_head_bytes[il],
        .page_size = HALO_KV_PAGE,
        .page_table = st(ctx)->d_table,
        .table_stride = kv->n_pages,
    };
}

static void cu_attend(halo_context *ctx, uint32_t il, const halo_ubatch *ub, const float *q,
                      const float *k, const float *v, float *out) {
    SKIP_IF_REPLAY(ctx);
    cuda_state *s = st(ctx);
    const halo_hparams *hp = ctx->hp;
    const int nq = (int)hp->n_head, nkv = (int)hp->n_head_kv[il];
    const int hk = (int)hp->head_dim_k, hv = (int)hp->head_dim_v;
    halo_cuda_kv kv = layer_kv(ctx, il);
    check(ctx, halo_cuda_kv_store(s->stream, &kv, ub->n, s->d_seq, s->d_pos, nkv, hk, hv, k,
                                  (int64_t)nkv * hk, v, (int64_t)nkv * hv));
    check(ctx, halo_cuda_attn(s->stream, &kv, ub->n, s->d_seq, s->d_pos, s->attn_max_pos, nq, nkv,
                              hk, hv, 1.0f / sqrtf((float)hk), q, out, s->attn_work));
}

/* The MoE FFN of a decode step (n * k <= MV_MAX_ASSIGN: 64 sequences of top-8) in four launches:
 * router + shared expert's gate/up (SwiGLU) + its gate input; top-k; the experts'
 * gate/up (SwiGLU) by id; the experts' down by id + the shared expert's down. */
#define MV_MAX_ASSIGN 512

/* MV_MAX_ASSIGN, or HALO_CUDA_MV_MAX_ASSIGN (1..4096) to compare with the tiled
 * products by expert (halo_cuda_matmul_id: int8 tiles above 256 assignments) */
static int32_t mv_max_assign(void) {
    static int32_t v = 0; /* a race only repeats the same read */
    if (!v) {
        const char *e = getenv("HALO_CUDA_MV_MAX_ASSIGN");
        long x = e ? strtol(e, NULL, 10) : 0;
        v = x >= 1 && x <= 4096 ? (int32_t)x : MV_MAX_ASSIGN;
    }
    return v;
}

static bool moe_mv(halo_context *ctx, const halo_moe_weights *W, const float *xn, int64_t n,
                   float *out) {
    cuda_state *s = st(ctx);
    const int n_exp = (int)ctx->hp->n_expert, k = (int)ctx->hp->n_expert_used;
    const int64_t e = ctx->hp->n_embd;
    const int32_t na = (int32_t)(n * k);
    if (na > mv_max_assign()) return false;
    halo_cuda_mv a[4], b[1], c[2];
    int n_a = 0, n_c = 0;
    a[n_a++] = mv_dense(W->router, 0, xn, n, s->router);
    b[0] = mv_id(W->gate_exps, xn, k, s->moe_ids, na, s->moe_a);
    c[n_c++] = mv_id(W->down_exps, s->moe_a, 1, s->moe_ids, na, s->moe_y);
    if (s->fused_route) { /* top-k by the router product's last block: no launch */
        a[0].route_k = k;
        a[0].route_norm = ctx->model->expert_weights_norm;
        a[0].route_ids = s->moe_ids;
        a[0].route_w = s->moe_w;
        a[0].route_counter = s->route_counter;
    }
    bool ok = halo_cuda_mv_supported(&a[0]) && mv_pair(&b[0], W->up_exps, 0) &&
              halo_cuda_mv_supported(&c[0]);
    if (W->shexp_gate) {
        a[n_a] = mv_dense(W->shexp_gate, 0, xn, n, s->sh_a);
        ok = ok && halo_cuda_mv_supported(&a[n_a]) && mv_pair(&a[n_a], W->shexp_up, 0);
        n_a++;
        a[n_a] = mv_dense(W->shexp_gate_inp, 0, xn, n, s->shg);
        ok = ok && halo_cuda_mv_supported(&a[n_a]);
        n_a++;
        c[n_c] = mv_dense(W->shexp_down, 0, s->sh_a, n, s->sh);
        ok = ok && halo_cuda_mv_supported(&c[n_c]);
        n_c++;
    }
    if (!ok) return false;
    void *str = s->stream;
    check(ctx, halo_cuda_mv_launch(str, a, n_a));
    if (!a[0].route_k)
        check(ctx, halo_cuda_topk_route(str, s->router, (int32_t)n, n_exp, k,
                                        ctx->model->expert_weights_norm, s->moe_ids, s->moe_w));
    check(ctx, halo_cuda_mv_launch(str, b, 1));
    check(ctx, halo_cuda_mv_launch(str, c, n_c));
    check(ctx, halo_cuda_moe_combine(str, s->moe_y, s->moe_w, (int32_t)n, k, e,
                                     W->shexp_gate ? s->sh : NULL, W->shexp_gate ? s->shg : NULL,
                                     out));
    return true;
}

/* Routed experts in host memory: router, top-k and the shared expert on the GPU; the
 * tokens' inputs and routes to the host (the stream synchronized); the experts on the
 * CPU with the context's threads; their outputs back, combined on the GPU. A ubatch
 * with such a layer is never captured in a graph (host work in the middle). */
static void moe_host(halo_context *ctx, const halo_moe_weights *W, const float *xn, int64_t n,
                     float *out) {
    cuda_state *s = st(ctx);
    void *str = s->stream;
    const int n_exp = (int)ctx->hp->n_expert, k = (int)ctx->hp->n_expert_used;
    const int64_t e = ctx->hp->n_embd;
    const int32_t na = (int32_t)(n * k);
    cu_matmul(ctx, W->router, 0, xn, n, s->router);
    check(ctx, halo_cuda_topk_route(str, s->router, (int32_t)n, n_exp, k,
                                    ctx->model->expert_weights_norm, s->moe_ids, s->moe_w));
    check(ctx, halo_cuda_memcpy(str, s->h_xn, xn, sizeof(float) * (size_t)(n * e)));
    check(ctx, halo_cuda_memcpy(str, s->h_ids, s->moe_ids, sizeof(int32_t) * (size_t)na));
    check(ctx, halo_cuda_event_record(s->ev_routed, str));
    /* the shared expert runs on the GPU while the CPU works on the routed ones */
    if (W->shexp_gate) {
        if (n == 1) {
            halo_mm mm[3] = {{W->shexp_gate, 0, xn, s->sh_a}, {W->shexp_up, 0, xn, s->sh_b},
                             {W->shexp_gate_inp, 0, xn, s->shg}};
            cu_matmul_multi(ctx, mm, 3, 1);
        } else {
            const int64_t fs = W->shexp_gate->n_rows;
            cu_matmul(ctx, W->shexp_gate, 0, xn, n, s->sh_a);
            cu_matmul(ctx, W->shexp_up, 0, xn, n, s->sh_b);
            check(ctx, halo_cuda_swiglu(str, s->sh_a, s->sh_b, n * fs));
            cu_matmul(ctx, W->shexp_gate_inp, 0, xn, n, s->shg);
        }
        cu_matmul(ctx, W->shexp_down, 0, s->sh_a, n, s->sh);
    }
    if (halo_cuda_event_sync(s->ev_routed)) s->error = 1;
    if (s->error) return;
    /* the routed experts on the CPU */
    const halo_cpu_experts hx = {s->h_xn,  s->h_ids, s->h_y,    s->h_ffa,   s->h_ffb,
                                 s->h_x,   s->h_tmp, s->h_list, s->h_count, s->h_mm};
    halo_cpu_experts_run(ctx->pool, W, n_exp, k, e, n, &hx);
    check(ctx, halo_cuda_memcpy(str, s->moe_y, s->h_y, sizeof(float) * (size_t)na * e));
    check(ctx, halo_cuda_moe_combine(str, s->moe_y, s->moe_w, (int32_t)n, k, e,
                                     W->shexp_gate ? s->sh : NULL, W->shexp_gate ? s->shg : NULL,
                                     out));
}

static void cu_moe(halo_context *ctx, const halo_moe_weights *W, const float *xn, int64_t n,
                   float *out) {
    SKIP_IF_REPLAY(ctx);
    if (W->gate_exps->host || W->up_exps->host || W->down_exps->host) {
        moe_host(ctx, W, xn, n, out);
        return;
    }
    if (moe_mv(ctx, W, xn, n, out)) return;
    cuda_state *s = st(ctx);
    void *str = s->stream;
    const int n_exp = (int)ctx->hp->n_expert, k = (int)ctx->hp->n_expert_used;
    const int64_t e = ctx->hp->n_embd, ff = W->gate_exps->n_rows;
    const int32_t na = (int32_t)(n * k);
    check(ctx, halo_cuda_matmul(str, W->router->type, W->router->dev, W->router->row_stride,
                                W->router->n_rows, W->router->n_cols, xn, n, s->router));
    check(ctx, halo_cuda_topk_route(str, s->router, (int32_t)n, n_exp, k,
                                    ctx->model->expert_weights_norm, s->moe_ids, s->moe_w));
    const halo_weight *g = W->gate_exps, *u = W->up_exps, *d = W->down_exps;
    check(ctx, halo_cuda_matmul_id(str, g->type, g->dev, g->row_stride, g->mat_stride, g->n_rows,
                                   g->n_cols, xn, k, s->moe_ids, na, s->moe_a, (int32_t)g->n_mats));
    check(ctx, halo_cuda_matmul_id(str, u->type, u->dev, u->row_stride, u->mat_stride, u->n_rows,
                                   u->n_cols, xn, k, s->moe_ids, na, s->moe_b, (int32_t)u->n_mats));
    check(ctx, halo_cuda_swiglu(str, s->moe_a, s->moe_b, (int64_t)na * ff));
    check(ctx, halo_cuda_matmul_id(str, d->type, d->dev, d->row_stride, d->mat_stride, d->n_rows,
                                   d->n_cols, s->moe_a, 1, s->moe_ids, na, s->moe_y,
                                   (int32_t)d->n_mats));
    const float *sh = NULL, *shg = NULL;
    if (W->shexp_gate) {
        const int64_t fs = W->shexp_gate->n_rows;
        cu_matmul(ctx, W->shexp_gate, 0, xn, n, s->sh_a);
        cu_matmul(ctx, W->shexp_up, 0, xn, n, s->sh_b);
        check(ctx, halo_cuda_swiglu(str, s->sh_a, s->sh_b, n * fs));
        cu_matmul(ctx, W->shexp_down, 0, s->sh_a, n, s->sh);
        cu_matmul(ctx, W->shexp_gate_inp, 0, xn, n, s->shg);
        sh = s->sh;
        shg = s->shg;
    }
    check(ctx, halo_cuda_moe_combine(str, s->moe_y, s->moe_w, (int32_t)n, k, e, sh, shg, out));
}

static void cu_deltanet_conv(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                             const float *qkv, const float *alpha, const float *b, float *conv,
                             float *g, float *beta) {
    SKIP_IF_REPLAY(ctx);
    cuda_state *s = st(ctx);
    const halo_layer *L = &ctx->model->layers[il];
    const halo_deltanet_dims d = halo_hparams_deltanet_dims(ctx->hp);
    bool single = true; /* every segment one token: the conv state moves on in place */
    for (int32_t j = 0; j < ub->n_seg && single; j++) single = ub->seg_off[j + 1] - ub->seg_off[j] <= 1;
    if (single) {
        check(ctx, halo_cuda_deltanet_conv_step(
                       s->stream, qkv, ub->n, d.ch, (int)ctx->hp->ssm_conv_kernel, L->ssm_conv1d.dev,
                       halo_rs_conv(ctx, il, 0), (int64_t)ctx->rs.conv_floats, s->d_seg_off,
                       s->d_seg_seq, ub->n_seg, d.hk, d.dk, 1.0f / sqrtf((float)d.dk), conv, alpha,
                       b, L->ssm_a.dev, L->ssm_dt.dev, d.hv, g, beta));
        return;
    }
    check(ctx, halo_cuda_deltanet_conv(s->stream, qkv, ub->n, d.ch,
                                       (int)ctx->hp->ssm_conv_kernel, L->ssm_conv1d.dev,
                                       halo_rs_conv(ctx, il, 0), (int64_t)ctx->rs.conv_floats,
                                       s->d_seg_off, s->d_seg_seq, ub->n_seg, d.hk, d.dk,
                                       1.0f / sqrtf((float)d.dk), conv));
    check(ctx, halo_cuda_deltanet_gates(s->stream, alpha, b, L->ssm_a.dev, L->ssm_dt.dev, ub->n,
                                        d.hv, g, beta));
}

static void cu_deltanet_rule(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                             const float *conv, const float *g, const float *beta, const float *z,
                             float *o) {
    SKIP_IF_REPLAY(ctx);
    cuda_state *s = st(ctx);
    const halo_layer *L = &ctx->model->layers[il];
    const halo_deltanet_dims d = halo_hparams_deltanet_dims(ctx->hp);
    check(ctx, halo_cuda_deltanet_rule(s->stream, conv, d.ch, g, beta, z, L->ssm_norm.dev,
                                       ctx->hp->rms_eps, ub->n, d.hk, d.hv, d.dk, d.dv,
                                       halo_rs_ssm(ctx, il, 0), (int64_t)ctx->rs.ssm_floats,
                                       s->d_seg_off, s->d_seg_seq, ub->n_seg, o));
}

/* The final norm and the head into s->logits (embeddings: the normed rows in s->out_x
 * are the output); finish copies them to ctx->logits
 * (outside any graph: the host buffer may move between ubatches). */
static void cu_output(halo_context *ctx, const halo_ubatch *ub, const float *x) {
    SKIP_IF_REPLAY(ctx);
    cuda_state *s = st(ctx);
    const halo_model *m = ctx->model;
    const int64_t e = m->hp.n_embd;
    check(ctx, halo_cuda_gather_rows(s->stream, s->out_x, x, s->d_out_idx, ub->n_out, e));
    check(ctx, halo_cuda_rms_norm(s->stream, s->out_x, m->output_norm.dev, s->out_x, ub->n_out, e,
                                  m->hp.rms_eps));
    if (!ub->embd) cu_matmul(ctx, &m->output, 0, s->out_x, ub->n_out, s->logits);
}

const halo_backend_ops halo_backend_cuda_ops = {
    .name = "CUDA",
    .alloc = cu_alloc,
    .free = cu_free,
    .to_host = cu_to_host,
    .to_backend = cu_to_backend,
    .copy = cu_copy,
    .zero = cu_zero,
    .release = cu_release,
    .host_alloc = cu_host_alloc,
    .host_free = cu_host_free,
    .mem_free = cu_mem_free,
    .begin = cu_begin,
    .finish = cu_finish,
    .embed = cu_embed,
    .matmul = cu_matmul,
    .matmul_multi = cu_matmul_multi,
    .rms_norm = cu_rms_norm,
    .rope = cu_rope,
    .hadamard = cu_hadamard,
    .add = cu_add,
    .add_rms_norm = cu_add_rms_norm,
    .swiglu = cu_swiglu,
    .sigmoid_gate = cu_sigmoid_gate,
    .copy2d = cu_copy2d,
    .gather = cu_gather,
    .scatter = cu_scatter,
    .attend = cu_attend,
    .moe = cu_moe,
    .deltanet_conv = cu_deltanet_conv,
    .deltanet_rule = cu_deltanet_rule,
    .deltanet_rule_out = NULL,
    .output = cu_output,
};

/* ---- making the backend of a context -------------------------------------------------------- */

static void *dev_array(uint64_t n, uint64_t size, int *rc) {
    uint64_t bytes;
    if (*rc) return NULL;
    if (halo_mul_overflow(n ? n : 1, size, &bytes) || bytes > SIZE_MAX) {
        *rc = -1;
        return NULL;
    }
    void *p = halo_cuda_malloc((size_t)bytes);
    if (!p) *rc = -1;
    return p;
}

static uint64_t umax(uint64_t a, uint64_t b) { return a > b ? a : b; }

int halo_backend_cuda_init(halo_context *ctx, halo_backend *be, halo_error *err) {
    const halo_hparams *hp = ctx->hp;
    const halo_model *m = ctx->model;
    be->ops = &halo_backend_cuda_ops;
    cuda_state *s = calloc(1, sizeof *s);
    if (!s) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory making the context");
    be->impl = s;
    const char *gr = getenv("HALO_CUDA_GRAPHS"), *fn = getenv("HALO_CUDA_FUSED_NORM");
    s->graphs = !(gr && !strcmp(gr, "0"));
    s->unfused_norm = fn && !strcmp(fn, "0");
    s->device = m->gpu->device;
    if (halo_cuda_set_device(m->gpu->device) || !(s->stream = halo_cuda_stream_new()))
        return halo_error_set(err, HALO_ERR_IO, "CUDA: %s", halo_cuda_last_error());
    if ((s->blas_ws = halo_cuda_malloc(BLAS_WORKSPACE)) &&
        !(s->blas = halo_cuda_blas_new(s->stream, s->blas_ws, BLAS_WORKSPACE))) {
        halo_cuda_free(s->blas_ws); /* no cuBLAS: halo's own f32 kernel */
        s->blas_ws = NULL;
    }
    /* split K for products of few tiles (pp512 4760 -> 5236 t/s on an H100, tg128 the
     * same; test_cuda_matmul checks it, passed there); HALO_CUDA_SPLIT_K=0 turns it off */
    const char *sk = getenv("HALO_CUDA_SPLIT_K");
    if (!(sk && !strcmp(sk, "0"))) s->mm_ws = halo_cuda_malloc(MM_WORKSPACE); /* zeroed */
    const uint64_t u = ctx->params.n_ubatch, nseq = ctx->params.n_seq_max;
    const uint64_t n_pages = (uint64_t)((ctx->params.n_ctx + HALO_KV_PAGE - 1) / HALO_KV_PAGE);
    /* the ubatch's metadata: token, pos, seq, perm, seg_off, seg_seq, out_idx, page tables */
    s->meta_ints = 7 * u + 1 + (hp->n_attention_layers ? n_pages * nseq : 0);
    s->h_meta = halo_cuda_host_alloc(sizeof(int32_t) * s->meta_ints);
    int rc = s->h_meta ? 0 : -1;
    s->d_meta = dev_array(s->meta_ints, sizeof(int32_t), &rc);
    if (!rc) {
        int32_t *h = s->h_meta, *d = s->d_meta;
        size_t o = 0;
#define META(name, count)                                                                          \
    s->h_##name = h + o;                                                                           \
    s->d_##name = d + o;                                                                           \
    o += (count);
        META(token, u);
        META(pos, u);
        META(seq, u);
        META(perm, u);
        META(seg_off, u + 1);
        META(seg_seq, u);
        META(out_idx, u);
        META(table, 0);
#undef META
    }
    const uint64_t e = hp->n_embd, k = umax(hp->n_expert_used, 1);
    s->inv_freq = dev_array(umax(hp->n_rot / 2, 1), sizeof(float), &rc);
    if (hp->n_expert) {
        const uint64_t ff = umax(hp->n_ff_exp, 1), fs = umax(hp->n_ff_shexp, 1);
        s->router = dev_array(u * hp->n_expert, sizeof(float), &rc);
        s->moe_ids = dev_array(u * k, sizeof(int32_t), &rc);
        s->moe_w = dev_array(u * k, sizeof(float), &rc);
        s->moe_a = dev_array(u * k * ff, sizeof(float), &rc);
        s->moe_b = dev_array(u * k * ff, sizeof(float), &rc);
        s->moe_y = dev_array(u * k * e, sizeof(float), &rc);
        s->route_counter = dev_array(1, sizeof(int32_t), &rc);
        /* measured slower on the H200 (306.5 t/s tg128 without, 297.0 with: the last
         * block's fence and count cost more than the launch they save), so opt-in */
        const char *fr = getenv("HALO_CUDA_FUSED_ROUTE");
        s->fused_route = fr && !strcmp(fr, "1");
        if (hp->n_ff_shexp) {
            s->sh_a = dev_array(u * fs, sizeof(float), &rc);
            s->sh_b = dev_array(u * fs, sizeof(float), &rc);
            s->sh = dev_array(u * e, sizeof(float), &rc);
            s->shg = dev_array(u, sizeof(float), &rc);
        }
    }
    for (uint32_t il = 0; il < hp->n_layer && hp->n_expert; il++) {
        const halo_layer *L = &m->layers[il];
        s->host_experts |= L->ffn_gate_exps.host || L->ffn_up_exps.host || L->ffn_down_exps.host;
    }
    if (s->host_experts && !rc) {
        const uint64_t ff = umax(hp->n_ff_exp, 1), ne = hp->n_expert;
        s->graphs = false; /* the host computes in the middle of a ubatch */
        s->h_xn = halo_cuda_host_alloc(sizeof(float) * u * e);
        s->h_x = halo_cuda_host_alloc(sizeof(float) * u * e);
        s->h_tmp = halo_cuda_host_alloc(sizeof(float) * u * e);
        s->h_ffa = halo_cuda_host_alloc(sizeof(float) * u * k * ff);
        s->h_ffb = halo_cuda_host_alloc(sizeof(float) * u * k * ff);
        s->h_y = halo_cuda_host_alloc(sizeof(float) * u * k * e);
        s->h_ids = halo_cuda_host_alloc(sizeof(int32_t) * u * k);
        s->h_list = malloc(sizeof(int32_t) * ne * u);
        s->h_count = malloc(sizeof(int32_t) * ne);
        s->h_mm = malloc(sizeof(halo_mm) * 2 * HALO_CPU_EXPERTS_FEW);
        s->ev_routed = halo_cuda_event_new();
        if (!s->ev_routed || !s->h_xn || !s->h_x || !s->h_tmp || !s->h_ffa || !s->h_ffb || !s->h_y || !s->h_ids ||
            !s->h_list || !s->h_count || !s->h_mm)
            return halo_error_set(err, HALO_ERR_NOMEM,
                                  "out of (pinned) host memory for the CPU experts' buffers: lower "
                                  "-ub");
    }
    if (hp->n_attention_layers) {
        size_t wb = halo_cuda_attn_work_bytes((int32_t)u, (int)hp->n_head, (int)hp->head_dim_v,
                                              (int32_t)(n_pages * HALO_KV_PAGE));
        s->attn_work = dev_array(umax(wb, 1), 1, &rc);
    }
    s->out_x = dev_array(u * e, sizeof(float), &rc);
    s->logits = dev_array(u * hp->n_vocab, sizeof(float), &rc);
    if (rc)
        return halo_error_set(err, HALO_ERR_NOMEM,
                              "out of GPU memory for the context's buffers (%s): lower -c, -np "
                              "or -ub",
                              halo_cuda_last_error());
    if (hp->n_rot) { /* the CPU computed the frequencies: the same ones on the GPU */
        float *f = malloc(sizeof(float) * hp->n_rot / 2);
        if (!f) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        float base = hp->rope_freq_base > 0 ? hp->rope_freq_base : 10000.0f;
        halo_rope_inv_freq(base, (int)hp->n_rot, f);
        for (uint32_t i = 0; i < hp->n_rot / 2; i++)
            f[i] = f[i] * m->rope_freq_scale / (m->rope_freqs ? m->rope_freqs[i] : 1.0f);
        rc = halo_cuda_memcpy(s->stream, s->inv_freq, f, sizeof(float) * hp->n_rot / 2);
        if (!rc) rc = halo_cuda_stream_sync(s->stream);
        free(f);
        if (rc) return halo_error_set(err, HALO_ERR_IO, "CUDA: %s", halo_cuda_last_error());
    }
    return 0;
}
