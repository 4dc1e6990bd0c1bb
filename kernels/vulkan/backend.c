/*
 * The Vulkan backend: the ops of runtime/backend.h on the launchers of
 * kernels/vulkan/vk_ops.h. Every required op exists (quantized KV caches need shaderFloat64),
 * and the optional matmul_multi (SwiGLU pairs in one launch); deltanet_rule_out is composed
 * by the caller. A
 * context runs on it when its model's weights are on a Vulkan device: halo_model_load with
 * -ngl and -dev Vulkan<i> (model/load.c), or a test calling halo_vk_model_upload.
 *
 * - Weights go to the device once per model (halo_vk_model_upload): on a UMA device with
 *   VK_EXT_external_memory_host the memory holding them (the file's mapping, or with
 *   --no-mmap the buffer it was read into) is imported and used in place, never copied;
 *   elsewhere (or HALO_VK_IMPORT=0, or where the import fails: a log line says why) they
 *   are copied, packed into as few allocations as the device's limit allows. Each
 *   halo_weight's `dev` points at its bytes on the device, and the model owns the device
 *   (halo_vk) they live on. Routed experts kept
 *   in host memory (halo_weight.host: --n-cpu-moe, -ot) stay there: the MoE op computes
 *   them on the CPU (moe_host).
 * - A context's buffers are device memory; the model code passes them to the ops as it
 *   does on the CPU. Every op records into the device's command buffer; `begin` writes
 *   the ubatch's tokens, positions, permutation, sequences, segments, page tables and rows
 *   with logits (in place on UMA, else through host memory and one copy), `finish` submits,
 *   waits and copies the logits into ctx->logits.
 * - Decode steps (up to 64 tokens) are recorded once per shape and replayed (start_step,
 *   end_step; HALO_VK_GRAPHS=0 off): during a replay the ops record nothing.
 */
#include "kernels/kernels.h"
#include "kernels/vulkan/vk_ops.h"
#include "quant/quant.h"
#include "runtime/backend.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the model's weights on the device -------------------------------------------------- */

struct halo_vk_weights {
    halo_vk *vk;
    void **chunks; /* the allocations holding the weights (imported or copies) */
    int n_chunks;
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

/* Every weight's dev pointer back to NULL. */
static void clear_dev(halo_model *model) {
    size_t n = halo_model_weights(model, NULL, 0);
    halo_weight **ws = malloc(sizeof *ws * (n ? n : 1));
    if (!ws) return;
    halo_model_weights(model, ws, n);
    for (size_t i = 0; i < n; i++)
        ws[i]->dev = NULL;
    free(ws);
}

halo_vk *halo_vk_model_device(const halo_model *model) {
    return model && model->vk ? model->vk->vk : NULL;
}

void halo_vk_model_release(halo_model *model) {
    if (!model || !model->vk) return;
    struct halo_vk_weights *g = model->vk;
    clear_dev(model);
    halo_vk_close(g->vk); /* and the chunks with it */
    free(g->chunks);
    free(g);
    model->vk = NULL;
}

/* Weights go in address order (tied tensors, which share their bytes, share the copy),
 * each at a 256-byte boundary, into chunks of at most the device's largest allocation. */
static int upload(halo_model *model, halo_vk *vk, halo_weight **ws, size_t n,
                  struct halo_vk_weights *g, halo_error *err) {
    const uint64_t limit = halo_vk_info(vk)->max_buffer_bytes;
    for (size_t i = 0; i < n;) {
        uint64_t used = 0; /* the chunk: weights i .. j-1 */
        size_t j = i;
        for (; j < n; j++) {
            if (j > i && ws[j]->data == ws[j - 1]->data) continue;
            uint64_t start = (used + 255) & ~(uint64_t)255, end = start + weight_bytes(ws[j]);
            if (j > i && end > limit) break;
            used = end;
        }
        void **grown = realloc(g->chunks, sizeof *grown * (size_t)(g->n_chunks + 1));
        if (!grown) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        g->chunks = grown;
        char *chunk = halo_vk_alloc(vk, (size_t)used);
        if (!chunk) {
            char need[32];
            halo_format_bytes(used, need, sizeof need);
            return halo_error_set(err, HALO_ERR_NOMEM, "%s of weights do not fit: %s", need,
                                  halo_vk_error(vk)->msg);
        }
        g->chunks[g->n_chunks++] = chunk;
        uint64_t o = 0;
        for (size_t k = i; k < j; k++) {
            if (k > i && ws[k]->data == ws[k - 1]->data) {
                ws[k]->dev = ws[k - 1]->dev;
                continue;
            }
            o = (o + 255) & ~(uint64_t)255;
            ws[k]->dev = chunk + o;
            if (halo_vk_upload(vk, chunk + o, ws[k]->data, weight_bytes(ws[k])))
                return halo_error_set(err, HALO_ERR_IO, "%s", halo_vk_error(vk)->msg);
            o += weight_bytes(ws[k]);
        }
        i = j;
    }
    return HALO_OK;
}

/* Release the chunks made so far (the caller keeps vk) and clear the weights' dev. */
static void drop_chunks(halo_model *model, halo_vk *vk, struct halo_vk_weights *g) {
    for (int i = 0; i < g->n_chunks; i++)
        halo_vk_free(vk, g->chunks[i]);
    g->n_chunks = 0;
    clear_dev(model);
}

/* The weights used in place: runs of weights (in address order) whose bytes follow one
 * another, but for the file's alignment padding, are imported as one range (the enclosing
 * blocks of the device's import alignment), cut where a range would pass the device's
 * largest allocation. A weight inside a range is at its offset from the range's start.
 * Returns false with the reason in why (nothing imported stays) where a range cannot be
 * imported or a weight is not where the shaders can read it. */
static bool import_weights(halo_model *model, halo_vk *vk, halo_weight **ws, size_t n,
                           struct halo_vk_weights *g, char *why, size_t why_size) {
    const double t0 = halo_time_seconds();
    const halo_vk_device_info *info = halo_vk_info(vk);
    const uint64_t align = info->import_align, limit = info->max_buffer_bytes & ~(align - 1);
    uint64_t pad = halo_gguf_alignment(model->gguf);
    if (pad < 32) pad = 32;
    uint64_t total = 0;
    for (size_t i = 0; i < n;) {
        /* the range: weights i .. j-1, host bytes [lo, hi) */
        const uintptr_t lo = (uintptr_t)ws[i]->data;
        uintptr_t hi = lo + weight_bytes(ws[i]);
        size_t j = i + 1;
        for (; j < n; j++) {
            const uintptr_t a = (uintptr_t)ws[j]->data, b = a + weight_bytes(ws[j]);
            if (a > hi && a - hi >= pad) break; /* not the next tensor of this memory */
            const uintptr_t top = b > hi ? b : hi;
            if (((top + align - 1) & ~(uintptr_t)(align - 1)) - (lo & ~(uintptr_t)(align - 1)) >
                limit)
                break;
            hi = top;
        }
        void **grown = realloc(g->chunks, sizeof *grown * (size_t)(g->n_chunks + 1));
        if (!grown) {
            snprintf(why, why_size, "out of memory");
            goto fail;
        }
        g->chunks = grown;
        char reason[256];
        char *dev = halo_vk_import(vk, (const void *)lo, hi - lo, reason, sizeof reason);
        if (!dev) {
            /* the driver refused the memory itself (not a size or a limit) */
            const bool refused =
                !strncmp(reason, "importing", 9) || !strncmp(reason, "vkGetMemoryHostPointer", 22);
            halo_gguf_load_stats ls;
            halo_gguf_get_load_stats(model->gguf, &ls);
            snprintf(why, why_size, "%s%s", reason,
                     refused && ls.mode == HALO_LOAD_MMAP
                         ? " (some drivers, RADV among them, import only anonymous memory, not "
                           "a file's mapping: --no-mmap reads the model into such memory)"
                         : "");
            goto fail;
        }
        g->chunks[g->n_chunks++] = dev;
        total += hi - lo;
        for (size_t k = i; k < j; k++) {
            const uintptr_t at = (uintptr_t)ws[k]->data;
            /* the shaders read rows at 4-byte offsets (F32, Q8_K) or 2 (the rest): the
             * copy path places each weight at 256 bytes, a file may be less aligned */
            if (at % 4) {
                snprintf(why, why_size, "a %s weight at a host address not a multiple of 4",
                         halo_type_name(ws[k]->type));
                goto fail;
            }
            ws[k]->dev = dev + (at - lo);
        }
        i = j;
    }
    char b[32];
    halo_format_bytes(total, b, sizeof b);
    halo_log(HALO_LOG_INFO,
             "Vulkan: %s of weights used in place from host memory (%d imported range%s, "
             "none copied, %.1f ms)",
             b, g->n_chunks, g->n_chunks == 1 ? "" : "s", (halo_time_seconds() - t0) * 1e3);
    return true;
fail:
    drop_chunks(model, vk, g);
    return false;
}

int halo_vk_model_upload(halo_model *model, halo_vk *vk, halo_error *err) {
    if (model->vk || model->gpu)
        return halo_error_set(err, HALO_ERR_ARG, "the model's weights are already on a device");
    size_t n_all = halo_model_weights(model, NULL, 0), n = 0;
    halo_weight **ws = malloc(sizeof *ws * (n_all ? n_all : 1));
    struct halo_vk_weights *g = calloc(1, sizeof *g);
    if (!ws || !g) {
        free(ws), free(g);
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    }
    halo_model_weights(model, ws, n_all);
    int rc = HALO_OK;
    for (size_t i = 0; i < n_all && !rc; i++) {
        halo_weight *w = ws[i];
        if (!w->data || w->host) continue; /* absent, or kept on the CPU (--n-cpu-moe, -ot) */
        if (!halo_vk_matmul_supported(w->type))
            rc = halo_error_set(err, HALO_ERR_UNSUPPORTED, "a %s weight cannot run on Vulkan yet",
                                halo_type_name(w->type));
        ws[n++] = w;
    }
    if (!rc) {
        qsort(ws, n, sizeof *ws, cmp_weight_data);
        /* in place where the device shares the host's memory and can import it; else
         * (or HALO_VK_IMPORT=0, to compare) copied */
        const halo_vk_device_info *info = halo_vk_info(vk);
        const char *env = getenv("HALO_VK_IMPORT");
        char why[384] = "";
        bool imported = false;
        if (env && strcmp(env, "0") == 0)
            snprintf(why, sizeof why, "HALO_VK_IMPORT=0");
        else if (!info->uma)
            snprintf(why, sizeof why, "not a UMA device");
        else if (!info->host_import)
            snprintf(why, sizeof why, "the device has no VK_EXT_external_memory_host");
        else if (n)
            imported = import_weights(model, vk, ws, n, g, why, sizeof why);
        if (!imported) {
            const halo_log_level level = info->uma ? HALO_LOG_INFO : HALO_LOG_DEBUG;
            halo_log(level,
                     "Vulkan: the weights are copied into device memory, not used in "
                     "place: %s",
                     n ? why : "no weights");
            const double t0 = halo_time_seconds();
            uint64_t before = 0, after = 0;
            halo_vk_memory_use(vk, &before, NULL);
            rc = upload(model, vk, ws, n, g, err);
            halo_vk_memory_use(vk, &after, NULL);
            char b[32];
            halo_format_bytes(after - before, b, sizeof b);
            if (!rc)
                halo_log(level, "Vulkan: %s of weights copied in %d allocation%s, %.1f ms", b,
                         g->n_chunks, g->n_chunks == 1 ? "" : "s",
                         (halo_time_seconds() - t0) * 1e3);
        }
    }
    free(ws);
    if (rc) { /* the caller keeps vk: release what was made on it, not the device */
        drop_chunks(model, vk, g);
        free(g->chunks);
        free(g);
        return rc;
    }
    g->vk = vk;
    model->vk = g;
    return HALO_OK;
}

/* ---- the backend's state of a context --------------------------------------------------- */

/* A ubatch's shape, as far as it reaches the launches: its size, sequences, rows with
 * logits, whether it is in sequence order already, whether it asks for embeddings, and
 * whether a segment is long enough for the chunked DeltaNet form. Everything else
 * (tokens, positions, sequences, page tables, segments) is in device buffers `begin`
 * rewrites. */
typedef struct step_key {
    int32_t n, n_seg, n_out, max_seg, attn_max_pos;
    bool identity, embd;
} step_key;

typedef struct step_entry {
    step_key key;
    halo_vk_recording *rec; /* NULL: unused */
    uint64_t used;          /* for replacing the least recently used */
} step_entry;

static bool key_eq(const step_key *a, const step_key *b) {
    return a->n == b->n && a->n_seg == b->n_seg && a->n_out == b->n_out &&
           a->max_seg == b->max_seg && a->attn_max_pos == b->attn_max_pos &&
           a->identity == b->identity && a->embd == b->embd;
}


#define STEP_CACHE 24
#define STEP_MAX_TOKENS 64 /* ubatches up to this size are recorded (decode steps) */
#define STEP_MAX_BROKEN 4  /* recordings in a row not kept: stop recording */

typedef struct vk_state {
    halo_vk *vk;
    /* the ubatch's arrays, one device allocation d_in (d_token .. d_table point into it):
     * written by the host in place where it can (h_in: a UMA device's mapping), else into
     * host memory in_staging (h_in its mapping) that one copy, the step's first command
     * (recorded with it), moves to d_in */
    int32_t *d_in, *in_staging, *h_in;
    size_t in_ints, table_ints; /* d_in's size, the page tables' (n_seq_max x table_stride) */
    int32_t table_stride;
    int32_t *d_token, *d_pos, *d_perm; /* [n_ubatch] the ubatch's, on the device */
    float *inv_freq;                   /* [n_rot / 2] */
    /* MoE: routing, the experts' activations and outputs, the shared expert */
    float *router, *moe_w; /* [n_ubatch][n_expert], [n_ubatch][k] */
    int32_t *moe_ids;      /* [n_ubatch][k] */
    float *moe_a, *moe_b;  /* [n_ubatch * k][n_ff_exp] */
    float *moe_y;          /* [n_ubatch * k][n_embd] */
    float *sh_a, *sh_b;    /* [n_ubatch][n_ff_shexp] */
    float *sh, *shg;       /* [n_ubatch][n_embd], [n_ubatch] */
    /* routed experts kept in host memory (--n-cpu-moe, -ot): the tokens' inputs and
     * routes, the products' rows, one expert's tokens, and its work lists */
    float *h_xn, *h_x, *h_tmp; /* [n_ubatch][n_embd] */
    float *h_ffa, *h_ffb;      /* [n_ubatch * k][n_ff_exp] */
    float *h_y;                /* [n_ubatch * k][n_embd] */
    int32_t *h_ids;            /* [n_ubatch * k] */
    int32_t *h_list, *h_count; /* [n_expert][n_ubatch], [n_expert] */
    halo_mm *h_mm;             /* [2 * HALO_CPU_EXPERTS_FEW] */
    /* output: the ubatch's rows with logits, their normed states, their logits */
    int32_t *d_out_idx;             /* [n_ubatch] */
    float *out_x, *logits;          /* [n_ubatch][n_embd], [n_ubatch][n_vocab] */
    /* where the device's memory is not the host's: host memory the step's last command
     * copies its rows with logits into (up to out_staging_rows of them; more: a download) */
    float *out_staging, *out_host;
    int32_t out_staging_rows;
    bool out_via_staging; /* this ubatch's rows go that way */
    int32_t out_first, out_n;       /* rows of ctx->logits the ubatch fills */
    bool out_embd;
    /* attention: the ubatch's sequences, the page tables of the sequences it touches */
    int32_t *d_seq;   /* [n_ubatch] */
    int32_t *d_table; /* [n_seq_max][n_pages] */
    int32_t *d_seg;   /* [2 n_ubatch + 1] DeltaNet: seg_off, then seg_seq */
    bool error;
    /* decode steps recorded once per shape and resubmitted (halo_vk_record_begin), as the
     * CUDA backend's graphs: HALO_VK_GRAPHS=0 turns it off; off where the experts are in
     * host memory (the host computes in the middle of a step) */
    bool graphs;
    bool capturing;     /* this ubatch's launches are being recorded */
    bool replay;        /* this ubatch replays a recording: the ops record nothing */
    int broken;         /* recordings in a row that could not be kept */
    step_entry step[STEP_CACHE];
    int32_t step_cur;   /* the entry being recorded or replayed */
    uint64_t step_clock;
    int32_t max_seg;    /* the ubatch's longest segment (DeltaNet) */
    int32_t attn_max_pos; /* attn_bound of the ubatch's positions */
} vk_state;

static vk_state *st(halo_context *ctx) {
    return ctx->be.impl;
}

/* While a recording replays, the model code still walks its layers, but the ops
 * record nothing: the recording holds them. */
#define SKIP_IF_REPLAY(ctx)                                                                        \
    do {                                                                                           \
        if (st(ctx)->replay) return;                                                               \
    } while (0)

/* Note a failed op; the first error stays in halo_vk_error and fails the ubatch. */
static void check(halo_context *ctx, int rc) {
    if (rc) st(ctx)->error = true;
}

static const void *wdev(const halo_weight *w, int64_t expert) {
    return (const char *)w->dev + (size_t)expert * w->mat_stride;
}

/* ---- memory ----------------------------------------------------------------------------- */

static void *vk_alloc(halo_backend *be, size_t bytes) {
    vk_state *s = be->impl;
    return halo_vk_alloc(s->vk, bytes);
}
static void vk_free(halo_backend *be, void *p) {
    vk_state *s = be->impl;
    halo_vk_free(s->vk, p);
}
static void vk_to_host(halo_backend *be, void *dst, const void *src, size_t bytes) {
    vk_state *s = be->impl;
    if (halo_vk_download(s->vk, dst, src, bytes)) s->error = true;
}
static void vk_to_backend(halo_backend *be, void *dst, const void *src, size_t bytes) {
    vk_state *s = be->impl;
    if (halo_vk_upload(s->vk, dst, src, bytes)) s->error = true;
}
static void vk_copy(halo_backend *be, void *dst, const void *src, size_t bytes) {
    vk_state *s = be->impl;
    if (halo_vk_copy(s->vk, dst, src, bytes)) s->error = true;
}
static void vk_zero(halo_backend *be, void *dst, size_t bytes) {
    vk_state *s = be->impl;
    if (halo_vk_zero(s->vk, dst, bytes)) s->error = true;
}

static void vk_release(halo_backend *be) {
    vk_state *s = be->impl;
    if (!s) return;
    halo_vk_sync(s->vk);
    for (int i = 0; i < STEP_CACHE; i++)
        halo_vk_recording_free(s->vk, s->step[i].rec);
    void *dev[] = {s->d_in,  s->in_staging, s->out_staging, s->inv_freq, s->router, s->moe_w, s->moe_ids,
                   s->moe_a, s->moe_b,      s->moe_y,    s->sh_a,   s->sh_b,  s->sh,
                   s->shg,   s->out_x,      s->logits};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        halo_vk_free(s->vk, dev[i]);
    void *host[] = {s->h_xn, s->h_x,   s->h_tmp,  s->h_ffa,   s->h_ffb,
                    s->h_y,  s->h_ids, s->h_list, s->h_count, s->h_mm};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
    free(s);
    be->impl = NULL;
}

/* ---- a ubatch --------------------------------------------------------------------------- */

static void start_step(halo_context *ctx, const halo_ubatch *ub);

static void vk_begin(halo_context *ctx, const halo_ubatch *ub) {
    vk_state *s = st(ctx);
    if (s->capturing) { /* a begin without its finish: that recording is not kept */
        halo_vk_recording *rec = NULL;
        halo_vk_record_end(s->vk, &rec);
        halo_vk_recording_free(s->vk, rec);
        s->capturing = false;
    }
    s->error = false;
    /* the host writes the inputs while no work uses them (idle after the last finish) */
    check(ctx, halo_vk_sync(s->vk));
    int32_t *h = s->h_in;
    const size_t b = sizeof(int32_t) * (size_t)ub->n;
    memcpy(h + (s->d_token - s->d_in), ub->token, b);
    memcpy(h + (s->d_pos - s->d_in), ub->pos, b);
    memcpy(h + (s->d_perm - s->d_in), ub->perm, b);
    /* attention: the sequences, and the page tables of those in the ubatch */
    memcpy(h + (s->d_seq - s->d_in), ub->seq, b);
    const int32_t np = ctx->kv.n_pages;
    if (np > s->table_stride) {
        halo_log(HALO_LOG_ERROR, "Vulkan: the cache has %d pages a sequence, the backend room "
                 "for %d", np, s->table_stride);
        s->error = true;
    }
    for (int32_t j = 0; np > 0 && np <= s->table_stride && j < ub->n_seg; j++) {
        const size_t at = (size_t)ub->seg_seq[j] * (size_t)np;
        memcpy(h + (s->d_table - s->d_in) + at, ctx->kv.page_table + at,
               sizeof(int32_t) * (size_t)ctx->kv.n_seq_pages[ub->seg_seq[j]]);
    }
    /* DeltaNet: the segments (halo_vk_deltanet_conv's seg) */
    memcpy(h + (s->d_seg - s->d_in), ub->seg_off, sizeof(int32_t) * (size_t)(ub->n_seg + 1));
    memcpy(h + (s->d_seg - s->d_in) + ub->n_seg + 1, ub->seg_seq,
           sizeof(int32_t) * (size_t)ub->n_seg);
    /* the rows with logits, which fill consecutive rows of ctx->logits from out_first */
    s->out_n = 0;
    s->out_first = -1;
    s->out_embd = ub->embd;
    int32_t *out_idx = h + (s->d_out_idx - s->d_in);
    for (int32_t t = 0; t < ub->n; t++) {
        if (ub->out[t] < 0) continue;
        if (s->out_first < 0) s->out_first = ub->out[t];
        out_idx[s->out_n++] = t;
    }
    s->out_via_staging = s->out_staging && s->out_n > 0 && s->out_n <= s->out_staging_rows;
    s->max_seg = 0;
    for (int32_t j = 0; j < ub->n_seg; j++)
        if (ub->seg_off[j + 1] - ub->seg_off[j] > s->max_seg)
            s->max_seg = ub->seg_off[j + 1] - ub->seg_off[j];
    s->attn_max_pos = halo_kv_attn_bound(ctx, ub->max_pos);
    start_step(ctx, ub);
    /* the inputs into device memory: the step's first command (a replay holds it) */
    if (s->in_staging && !s->replay)
        check(ctx, halo_vk_copy(s->vk, s->d_in, s->in_staging, sizeof(int32_t) * s->in_ints));
}

/* A decode-sized ubatch: replay its shape's recording, or record it. */
static void start_step(halo_context *ctx, const halo_ubatch *ub) {
    vk_state *s = st(ctx);
    s->replay = s->capturing = false;
    if (!s->graphs || ub->n > STEP_MAX_TOKENS || s->error) return;
    const step_key key = {ub->n,         ub->n_seg,    ub->n_out, s->max_seg,
                          s->attn_max_pos, ub->identity, ub->embd};
    int32_t lru = 0;
    for (int32_t i = 0; i < STEP_CACHE; i++) {
        step_entry *e = &s->step[i];
        if (e->rec && key_eq(&e->key, &key)) {
            if (!halo_vk_recording_valid(s->vk, e->rec)) { /* a buffer was freed: again */
                halo_vk_recording_free(s->vk, e->rec);
                e->rec = NULL;
                lru = i;
                break;
            }
            e->used = ++s->step_clock;
            s->step_cur = i;
            s->replay = true;
            return;
        }
        if (s->step[lru].rec && (!e->rec || e->used < s->step[lru].used)) lru = i;
    }
    step_entry *e = &s->step[lru];
    halo_vk_recording_free(s->vk, e->rec);
    e->rec = NULL;
    e->key = key;
    s->step_cur = lru;
    if (halo_vk_record_begin(s->vk) == HALO_OK) s->capturing = true;
    else s->error = true;
}

/* The recording of this ubatch kept (and replayed), or, where it could not be kept (a
 * sync came in between: it ran part-way, the rest is recorded), the work submitted. */
static void end_step(halo_context *ctx) {
    vk_state *s = st(ctx);
    if (s->capturing) {
        step_entry *e = &s->step[s->step_cur];
        s->capturing = false;
        if (halo_vk_record_end(s->vk, &e->rec)) s->error = true;
        if (e->rec) {
            e->used = ++s->step_clock;
            s->replay = true;
            s->broken = 0;
        } else if (!s->error && ++s->broken == STEP_MAX_BROKEN) {
            halo_log(HALO_LOG_WARN, "Vulkan: decode steps could not be recorded %d times in a "
                     "row: running them without recordings", STEP_MAX_BROKEN);
            s->graphs = false;
        }
    }
    if (s->replay && !s->error && halo_vk_replay(s->vk, s->step[s->step_cur].rec))
        s->error = true;
    s->replay = false;
}

static int vk_finish(halo_context *ctx, const halo_ubatch *ub) {
    vk_state *s = st(ctx);
    end_step(ctx);
    if (halo_vk_sync(s->vk)) s->error = true;
    if (s->out_n > 0 && !s->error) { /* logits, or the normed rows (embeddings) */
        const size_t w = s->out_embd ? ctx->hp->n_embd : ctx->hp->n_vocab;
        float *dst = ctx->logits + (size_t)s->out_first * w;
        if (s->out_via_staging) /* copied there by the step's last command */
            memcpy(dst, s->out_host, sizeof(float) * (size_t)s->out_n * w);
        else if (halo_vk_download(s->vk, dst, s->out_embd ? s->out_x : s->logits,
                                  sizeof(float) * (size_t)s->out_n * w))
            s->error = true;
    }
    if (s->error) halo_log(HALO_LOG_ERROR, "%s", halo_vk_error(s->vk)->msg);
    return s->error ? -1 : 0;
}

/* ---- ops -------------------------------------------------------------------------------- */

static void vk_embed(halo_context *ctx, const halo_ubatch *ub, float *x) {
    SKIP_IF_REPLAY(ctx);
    const halo_weight *w = &ctx->model->tok_embd;
    check(ctx, halo_vk_get_rows(st(ctx)->vk, w->type, w->dev, w->row_stride, w->n_cols,
                                st(ctx)->d_token, ub->n, x));
}

static void vk_matmul(halo_context *ctx, const halo_weight *w, int64_t expert, const float *x,
                      int64_t n, float *y) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_vk_matmul(st(ctx)->vk, w->type, wdev(w, expert), w->row_stride, w->n_rows,
                              w->n_cols, x, n, y));
}

/* A SwiGLU pair of n tokens in one launch where it can be (gate and up of one type and
 * shape, in one allocation, n <= 8): y = silu(gate x) * (up x) into g_y; else the two
 * products (up's into u_y) and the SwiGLU. Either way g_y ends the same, bit for bit. */
/* Gate and up of one type and shape (the fused SwiGLU launches read both alike). */
static bool pair_alike(const halo_weight *g, const halo_weight *u) {
    return g->type == u->type && g->row_stride == u->row_stride && g->n_rows == u->n_rows &&
           g->n_cols == u->n_cols && g->n_mats == u->n_mats && g->mat_stride == u->mat_stride;
}

static void glu_pair(halo_context *ctx, const halo_weight *g, const halo_weight *u,
                     const float *x, int64_t n, float *g_y, float *u_y) {
    vk_state *s = st(ctx);
    if (pair_alike(g, u) &&
        halo_vk_matmul_glu_fits(s->vk, g->type, g->dev, u->dev, g->row_stride, g->n_rows, n)) {
        check(ctx, halo_vk_matmul_glu(s->vk, g->type, g->dev, u->dev, g->row_stride, g->n_rows,
                                      g->n_cols, x, n, g_y));
        return;
    }
    vk_matmul(ctx, g, 0, x, n, g_y);
    vk_matmul(ctx, u, 0, x, n, u_y);
    check(ctx, halo_vk_swiglu(s->vk, g_y, u_y, n * g->n_rows));
}

/* One-token products (pairs 2i, 2i + 1 for i < n_glu are SwiGLU gate / up pairs): the
 * pairs in one launch each (glu_pair), the rest one each; no barrier between them (they
 * write different buffers). */
static void vk_matmul_multi(halo_context *ctx, const halo_mm *mm, int n_mm, int n_glu) {
    SKIP_IF_REPLAY(ctx);
    for (int i = 0; i < n_glu; i++) {
        const halo_mm *g = &mm[2 * i], *u = &mm[2 * i + 1];
        if (g->expert || u->expert || g->x != u->x) { /* not a plain pair: as composed */
            vk_matmul(ctx, g->w, g->expert, g->x, 1, g->y);
            vk_matmul(ctx, u->w, u->expert, u->x, 1, u->y);
            check(ctx, halo_vk_swiglu(st(ctx)->vk, g->y, u->y, g->w->n_rows));
            continue;
        }
        glu_pair(ctx, g->w, u->w, g->x, 1, g->y, u->y);
    }
    for (int i = 2 * n_glu; i < n_mm; i++)
        vk_matmul(ctx, mm[i].w, mm[i].expert, mm[i].x, 1, mm[i].y);
}

static void vk_rms_norm(halo_context *ctx, const float *x, const halo_weight *w, float *y,
                        int64_t n_rows, int64_t n, float eps) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_vk_rms_norm(st(ctx)->vk, x, w ? w->dev : NULL, y, n_rows, n, eps));
}

static void vk_rope(halo_context *ctx, const halo_ubatch *ub, float *x, int n_heads, int head_dim) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_vk_rope(st(ctx)->vk, x, ub->n, n_heads, head_dim, (int)ctx->hp->n_rot,
                            ctx->model->rope_mode, st(ctx)->d_pos, st(ctx)->inv_freq));
}

static void vk_add(halo_context *ctx, float *x, const float *y, int64_t n) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_vk_add(st(ctx)->vk, x, y, n));
}

static void vk_add_rms_norm(halo_context *ctx, float *x, const float *y, const halo_weight *w,
                            float *xn, int64_t n_rows, int64_t n, float eps) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_vk_add_rms_norm(st(ctx)->vk, x, y, w ? w->dev : NULL, xn, n_rows, n, eps));
}

static void vk_swiglu(halo_context *ctx, float *g, const float *u, int64_t n) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_vk_swiglu(st(ctx)->vk, g, u, n));
}

static void vk_sigmoid_gate(halo_context *ctx, float *x, const float *g, int64_t n) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_vk_sigmoid_gate(st(ctx)->vk, x, g, n));
}

static void vk_copy2d(halo_context *ctx, float *dst, int64_t dst_stride, const float *src,
                      int64_t src_stride, int64_t rows, int64_t width) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_vk_copy2d(st(ctx)->vk, dst, dst_stride, src, src_stride, rows, width));
}

static void vk_gather(halo_context *ctx, const halo_ubatch *ub, float *dst, const float *src,
                      int64_t width) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_vk_gather_rows(st(ctx)->vk, dst, src, st(ctx)->d_perm, ub->n, width));
}

static void vk_scatter(halo_context *ctx, const halo_ubatch *ub, float *dst, const float *src,
                       int64_t width) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_vk_scatter_rows(st(ctx)->vk, dst, src, st(ctx)->d_perm, ub->n, width));
}

static void vk_hadamard(halo_context *ctx, float *x, int64_t n_rows, int64_t n, int block) {
    SKIP_IF_REPLAY(ctx);
    check(ctx, halo_vk_hadamard(st(ctx)->vk, x, n_rows, n, block));
}

/* Store k and v of layer il at each token's (sequence, position), then attention of q
 * over each token's sequence up to its position. */
static void vk_attend(halo_context *ctx, uint32_t il, const halo_ubatch *ub, const float *q,
                      const float *k, const float *v, float *out) {
    SKIP_IF_REPLAY(ctx);
    vk_state *s = st(ctx);
    const halo_hparams *hp = ctx->hp;
    const halo_kv_cache *c = &ctx->kv;
    const int nq = (int)hp->n_head, nkv = (int)hp->n_head_kv[il];
    const int hk = (int)hp->head_dim_k, hv = (int)hp->head_dim_v;
    const halo_vk_kv kv = {
        .type_k = c->type_k,
        .type_v = c->type_v,
        .k = c->k[il],
        .v = c->v[il],
        .k_page_bytes = HALO_KV_PAGE * c->k_row_bytes[il],
        .v_page_bytes = HALO_KV_PAGE * c->v_row_bytes[il],
        .k_head_bytes = c->k_head_bytes[il],
        .v_head_bytes = c->v_head_bytes[il],
        .page_size = HALO_KV_PAGE,
        .page_table = s->d_table,
        .table_stride = c->n_pages,
    };
    check(ctx, halo_vk_kv_store(s->vk, &kv, ub->n, s->d_seq, s->d_pos, nkv, hk, hv, k,
                                (int64_t)nkv * hk, v, (int64_t)nkv * hv));
    check(ctx, halo_vk_attn(s->vk, &kv, ub->n, s->d_seq, s->d_pos, s->attn_max_pos, nq, nkv, hk, hv,
                            1.0f / sqrtf((float)hk), q, out));
}

/* Gated DeltaNet on each sequence's recurrent state (kernels/vulkan/deltanet.c). */
static halo_vk_deltanet dn_dims(const halo_hparams *hp) {
    const halo_deltanet_dims d = halo_hparams_deltanet_dims(hp);
    return (halo_vk_deltanet){(int)d.hk, (int)d.hv, (int)d.dk, (int)d.dv, (int)hp->ssm_conv_kernel};
}

static void vk_deltanet_conv(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                             const float *qkv, const float *alpha, const float *b, float *conv,
                             float *g, float *beta) {
    SKIP_IF_REPLAY(ctx);
    const halo_layer *L = &ctx->model->layers[il];
    const halo_vk_deltanet d = dn_dims(ctx->hp);
    check(ctx, halo_vk_deltanet_conv(st(ctx)->vk, &d, ub->n, st(ctx)->d_seg, ub->n_seg, qkv,
                                     L->ssm_conv1d.dev, halo_rs_conv(ctx, il, 0),
                                     (int64_t)ctx->rs.conv_floats, alpha, b, L->ssm_a.dev,
                                     L->ssm_dt.dev, conv, g, beta));
}

static void vk_deltanet_rule(halo_context *ctx, uint32_t il, const halo_ubatch *ub,
                             const float *conv, const float *g, const float *beta, const float *z,
                             float *o) {
    SKIP_IF_REPLAY(ctx);
    const halo_layer *L = &ctx->model->layers[il];
    const halo_vk_deltanet d = dn_dims(ctx->hp);
    check(ctx, halo_vk_deltanet_rule(st(ctx)->vk, &d, ub->n, st(ctx)->d_seg, ub->n_seg,
                                     st(ctx)->max_seg, conv, g, beta, z, L->ssm_norm.dev, ctx->hp->rms_eps,
                                     halo_rs_ssm(ctx, il, 0), (int64_t)ctx->rs.ssm_floats, o));
}

/* The shared expert of xn (n tokens) into s->sh, its gate into s->shg: recorded. */
static void shared_expert(halo_context *ctx, const halo_moe_weights *W, const float *xn,
                          int64_t n) {
    vk_state *s = st(ctx);
    const int64_t fs = W->shexp_gate->n_rows;
    vk_matmul(ctx, W->shexp_gate, 0, xn, n, s->sh_a);
    vk_matmul(ctx, W->shexp_up, 0, xn, n, s->sh_b);
    check(ctx, halo_vk_swiglu(s->vk, s->sh_a, s->sh_b, n * fs));
    vk_matmul(ctx, W->shexp_down, 0, s->sh_a, n, s->sh);
    vk_matmul(ctx, W->shexp_gate_inp, 0, xn, n, s->shg);
}

/* Routed experts in host memory (as the CUDA backend's): router and top-k on the
 * device; the work so far submitted and waited for, the tokens' inputs and routes
 * copied to the host; the shared expert recorded and submitted without waiting, so the
 * device computes it while the CPU computes the routed experts with the context's
 * threads; their outputs copied back (after the device's work ends) and combined with
 * the shared expert on the device. */
static void moe_host(halo_context *ctx, const halo_moe_weights *W, const float *xn, int64_t n,
                     float *out) {
    vk_state *s = st(ctx);
    halo_vk *vk = s->vk;
    const int n_exp = (int)ctx->hp->n_expert, k = (int)ctx->hp->n_expert_used;
    const int64_t e = ctx->hp->n_embd;
    const int32_t na = (int32_t)(n * k);
    vk_matmul(ctx, W->router, 0, xn, n, s->router);
    check(ctx, halo_vk_topk_route(vk, s->router, (int32_t)n, n_exp, k,
                                  ctx->model->expert_weights_norm, s->moe_ids, s->moe_w));
    /* each download waits for the work recorded so far */
    check(ctx, halo_vk_download(vk, s->h_xn, xn, sizeof(float) * (size_t)(n * e)));
    check(ctx, halo_vk_download(vk, s->h_ids, s->moe_ids, sizeof(int32_t) * (size_t)na));
    if (W->shexp_gate) {
        shared_expert(ctx, W, xn, n);
        check(ctx, halo_vk_submit(vk));
    }
    if (s->error) return;
    const halo_cpu_experts hx = {s->h_xn,  s->h_ids, s->h_y,    s->h_ffa,   s->h_ffb,
                                 s->h_x,   s->h_tmp, s->h_list, s->h_count, s->h_mm};
    halo_cpu_experts_run(ctx->pool, W, n_exp, k, e, n, &hx);
    check(ctx, halo_vk_upload(vk, s->moe_y, s->h_y, sizeof(float) * (size_t)na * e));
    check(ctx, halo_vk_moe_combine(vk, s->moe_y, s->moe_w, (int32_t)n, k, e,
                                   W->shexp_gate ? s->sh : NULL, W->shexp_gate ? s->shg : NULL,
                                   out));
}

/* The routed experts on the device (as the CUDA backend): router product, top-k, gate and
 * up products by expert id with SwiGLU, down by expert id, then the weighted sum with the
 * gated shared expert. The host never sees the expert choice. Experts kept in host
 * memory: moe_host. */
static void vk_moe(halo_context *ctx, const halo_moe_weights *W, const float *xn, int64_t n,
                   float *out) {
    SKIP_IF_REPLAY(ctx);
    if (W->gate_exps->host || W->up_exps->host || W->down_exps->host) {
        moe_host(ctx, W, xn, n, out);
        return;
    }
    vk_state *s = st(ctx);
    halo_vk *vk = s->vk;
    const int n_exp = (int)ctx->hp->n_expert, k = (int)ctx->hp->n_expert_used;
    const int64_t e = ctx->hp->n_embd, ff = W->gate_exps->n_rows;
    const int32_t na = (int32_t)(n * k);
    /* the shared expert's launches interleaved with the routed ones': launches with no
     * dependency between them share a barrier (router, shared gate, up and gate input;
     * top-k and the shared SwiGLU; the experts' gate and up and the shared down) */
    const bool shared = W->shexp_gate != NULL;
    vk_matmul(ctx, W->router, 0, xn, n, s->router);
    if (shared) { /* gate and up in one launch where they can be (few tokens) */
        glu_pair(ctx, W->shexp_gate, W->shexp_up, xn, n, s->sh_a, s->sh_b);
        vk_matmul(ctx, W->shexp_gate_inp, 0, xn, n, s->shg);
    }
    check(ctx, halo_vk_topk_route(vk, s->router, (int32_t)n, n_exp, k,
                                  ctx->model->expert_weights_norm, s->moe_ids, s->moe_w));
    const halo_weight *g = W->gate_exps, *u = W->up_exps, *d = W->down_exps;
    if (pair_alike(g, u) &&
        halo_vk_matmul_id_glu_fits(vk, g->type, g->dev, u->dev, g->row_stride, g->mat_stride,
                                   g->n_rows, na, (int32_t)g->n_mats)) {
        /* decode: the experts' gate and up with the SwiGLU in one launch */
        check(ctx, halo_vk_matmul_id_glu(vk, g->type, g->dev, u->dev, g->row_stride,
                                         g->mat_stride, g->n_rows, g->n_cols, xn, k, s->moe_ids,
                                         na, s->moe_a, (int32_t)g->n_mats));
        if (shared) vk_matmul(ctx, W->shexp_down, 0, s->sh_a, n, s->sh);
    } else {
        check(ctx, halo_vk_matmul_id(vk, g->type, g->dev, g->row_stride, g->mat_stride, g->n_rows,
                                     g->n_cols, xn, k, s->moe_ids, na, s->moe_a,
                                     (int32_t)g->n_mats));
        check(ctx, halo_vk_matmul_id(vk, u->type, u->dev, u->row_stride, u->mat_stride, u->n_rows,
                                     u->n_cols, xn, k, s->moe_ids, na, s->moe_b,
                                     (int32_t)u->n_mats));
        if (shared) vk_matmul(ctx, W->shexp_down, 0, s->sh_a, n, s->sh);
        check(ctx, halo_vk_swiglu(vk, s->moe_a, s->moe_b, (int64_t)na * ff));
    }
    check(ctx,
          halo_vk_matmul_id(vk, d->type, d->dev, d->row_stride, d->mat_stride, d->n_rows, d->n_cols,
                            s->moe_a, 1, s->moe_ids, na, s->moe_y, (int32_t)d->n_mats));
    check(ctx, halo_vk_moe_combine(vk, s->moe_y, s->moe_w, (int32_t)n, k, e,
                                   shared ? s->sh : NULL, shared ? s->shg : NULL, out));
}

/* The final norm and output head of the rows that asked for logits (the embeddings mode:
 * the normed rows themselves); `finish` copies them into ctx->logits. */
static void vk_output(halo_context *ctx, const halo_ubatch *ub, const float *x) {
    SKIP_IF_REPLAY(ctx);
    vk_state *s = st(ctx);
    const halo_model *m = ctx->model;
    const int64_t e = m->hp.n_embd;
    check(ctx, halo_vk_gather_rows(s->vk, s->out_x, x, s->d_out_idx, s->out_n, e));
    check(ctx, halo_vk_rms_norm(s->vk, s->out_x, m->output_norm.dev, s->out_x, s->out_n, e,
                                m->hp.rms_eps));
    if (!ub->embd) vk_matmul(ctx, &m->output, 0, s->out_x, s->out_n, s->logits);
    if (s->out_via_staging) {
        const size_t w = ub->embd ? (size_t)e : (size_t)m->hp.n_vocab;
        check(ctx, halo_vk_copy(s->vk, s->out_staging, ub->embd ? s->out_x : s->logits,
                                sizeof(float) * (size_t)s->out_n * w));
    }
}

const halo_backend_ops halo_backend_vulkan_ops = {
    .name = "Vulkan",
    .alloc = vk_alloc,
    .free = vk_free,
    .to_host = vk_to_host,
    .to_backend = vk_to_backend,
    .copy = vk_copy,
    .zero = vk_zero,
    .release = vk_release,
    .begin = vk_begin,
    .finish = vk_finish,
    .embed = vk_embed,
    .matmul = vk_matmul,
    .matmul_multi = vk_matmul_multi,
    .rms_norm = vk_rms_norm,
    .rope = vk_rope,
    .add = vk_add,
    .add_rms_norm = vk_add_rms_norm,
    .swiglu = vk_swiglu,
    .sigmoid_gate = vk_sigmoid_gate,
    .copy2d = vk_copy2d,
    .gather = vk_gather,
    .scatter = vk_scatter,
    .hadamard = vk_hadamard,
    .attend = vk_attend,
    .moe = vk_moe,
    .deltanet_conv = vk_deltanet_conv,
    .deltanet_rule = vk_deltanet_rule,
    .output = vk_output,
};

/* The KV cache types the store and attention take: the float ones, and the block types
 * whose store needs shaderFloat64 */
static bool kv_block(int type) {
    return type == HALO_TYPE_Q8_0 || type == HALO_TYPE_Q4_0 || type == HALO_TYPE_IQ4_NL;
}
static bool kv_type_ok(int type) {
    return type == HALO_TYPE_F32 || type == HALO_TYPE_F16 || type == HALO_TYPE_BF16 ||
           kv_block(type);
}

int halo_backend_vulkan_init(halo_context *ctx, halo_backend *be, halo_error *err) {
    const halo_model *m = ctx->model;
    const halo_hparams *hp = ctx->hp;
    if (!m->vk)
        return halo_error_set(err, HALO_ERR_ARG, "the model's weights are not on a Vulkan device");
    const int tk = ctx->params.type_k, tv = ctx->params.type_v;
    if (hp->n_attention_layers && (!kv_type_ok(tk) || !kv_type_ok(tv)))
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "a %s/%s KV cache cannot be written by the Vulkan backend yet "
                              "(f32, f16, bf16, q8_0, q4_0, iq4_nl can)",
                              halo_type_name(tk), halo_type_name(tv));
    if (hp->n_attention_layers && (kv_block(tk) || kv_block(tv)) &&
        !halo_vk_info(m->vk->vk)->float64)
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "a %s/%s KV cache needs shaderFloat64 on Vulkan (its store "
                              "reproduces the CPU's encoders, which compute in double); %s "
                              "lacks it: use an f16 cache",
                              halo_type_name(tk), halo_type_name(tv),
                              halo_vk_info(m->vk->vk)->name);
    vk_state *s = calloc(1, sizeof *s);
    if (!s) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    s->vk = m->vk->vk;
    be->ops = &halo_backend_vulkan_ops;
    be->impl = s;
    const char *gr = getenv("HALO_VK_GRAPHS");
    /* the profile names each command as it is recorded: every step recorded */
    s->graphs = !(gr && !strcmp(gr, "0")) && !halo_vk_profiling(s->vk);
    const size_t u = ctx->params.n_ubatch ? ctx->params.n_ubatch : 1;
    s->inv_freq = halo_vk_alloc(s->vk, sizeof(float) * (hp->n_rot / 2 ? hp->n_rot / 2 : 1));
    /* the ubatch's arrays: tokens, positions, permutation, sequences, rows with logits
     * [n_ubatch] each, DeltaNet's segments [2 n_ubatch + 1], page tables [n_seq][n_pages] */
    const size_t n_pages = (ctx->params.n_ctx + HALO_KV_PAGE - 1) / HALO_KV_PAGE;
    const size_t n_seq = ctx->params.n_seq_max ? ctx->params.n_seq_max : 1;
    s->table_stride = (int32_t)n_pages;
    s->table_ints = (n_pages ? n_pages : 1) * n_seq;
    s->in_ints = 7 * u + 1 + s->table_ints;
    s->d_in = halo_vk_alloc(s->vk, sizeof(int32_t) * s->in_ints);
    if (s->d_in) {
        s->d_token = s->d_in;
        s->d_pos = s->d_in + u;
        s->d_perm = s->d_in + 2 * u;
        s->d_seq = s->d_in + 3 * u;
        s->d_out_idx = s->d_in + 4 * u;
        s->d_seg = s->d_in + 5 * u;
        s->d_table = s->d_in + 7 * u + 1;
        s->h_in = halo_vk_host_pointer(s->vk, s->d_in);
        if (!s->h_in) { /* a discrete GPU: written into host memory, copied each step */
            s->in_staging = halo_vk_alloc_host(s->vk, sizeof(int32_t) * s->in_ints);
            s->h_in = s->in_staging ? halo_vk_host_pointer(s->vk, s->in_staging) : NULL;
        }
    }
    s->out_x = halo_vk_alloc(s->vk, sizeof(float) * u * hp->n_embd);
    s->logits = halo_vk_alloc(s->vk, sizeof(float) * u * hp->n_vocab);
    if (s->logits && !halo_vk_host_pointer(s->vk, s->logits)) {
        /* decode steps' rows with logits through host memory, copied by the step itself */
        s->out_staging_rows = (int32_t)(u < STEP_MAX_TOKENS ? u : STEP_MAX_TOKENS);
        const size_t w = hp->n_vocab > hp->n_embd ? hp->n_vocab : hp->n_embd;
        s->out_staging = halo_vk_alloc_host(s->vk, sizeof(float) * (size_t)s->out_staging_rows * w);
        s->out_host = s->out_staging ? halo_vk_host_pointer(s->vk, s->out_staging) : NULL;
        if (!s->out_host) s->out_staging_rows = 0; /* downloads, then */
    }
    int rc = s->d_in && s->h_in && s->inv_freq && s->out_x && s->logits ? 0 : HALO_ERR_NOMEM;
    if (!rc && hp->n_expert) {
        const size_t k = hp->n_expert_used, ff = hp->n_ff_exp ? hp->n_ff_exp : 1;
        const size_t fs = hp->n_ff_shexp ? hp->n_ff_shexp : 1, e = hp->n_embd;
        s->router = halo_vk_alloc(s->vk, sizeof(float) * u * hp->n_expert);
        s->moe_w = halo_vk_alloc(s->vk, sizeof(float) * u * k);
        s->moe_ids = halo_vk_alloc(s->vk, sizeof(int32_t) * u * k);
        s->moe_a = halo_vk_alloc(s->vk, sizeof(float) * u * k * ff);
        s->moe_b = halo_vk_alloc(s->vk, sizeof(float) * u * k * ff);
        s->moe_y = halo_vk_alloc(s->vk, sizeof(float) * u * k * e);
        s->sh_a = halo_vk_alloc(s->vk, sizeof(float) * u * fs);
        s->sh_b = halo_vk_alloc(s->vk, sizeof(float) * u * fs);
        s->sh = halo_vk_alloc(s->vk, sizeof(float) * u * e);
        s->shg = halo_vk_alloc(s->vk, sizeof(float) * u);
        if (!s->router || !s->moe_w || !s->moe_ids || !s->moe_a || !s->moe_b || !s->moe_y ||
            !s->sh_a || !s->sh_b || !s->sh || !s->shg)
            rc = HALO_ERR_NOMEM;
        bool host = false; /* a layer's routed experts in host memory: the CPU's buffers */
        for (uint32_t il = 0; il < hp->n_layer; il++) {
            const halo_layer *L = &m->layers[il];
            host |= L->ffn_gate_exps.host || L->ffn_up_exps.host || L->ffn_down_exps.host;
        }
        if (host) s->graphs = false; /* the host computes in the middle of a step */
        if (!rc && host) {
            s->h_xn = malloc(sizeof(float) * u * e);
            s->h_x = malloc(sizeof(float) * u * e);
            s->h_tmp = malloc(sizeof(float) * u * e);
            s->h_ffa = malloc(sizeof(float) * u * k * ff);
            s->h_ffb = malloc(sizeof(float) * u * k * ff);
            s->h_y = malloc(sizeof(float) * u * k * e);
            s->h_ids = malloc(sizeof(int32_t) * u * k);
            s->h_list = malloc(sizeof(int32_t) * hp->n_expert * u);
            s->h_count = malloc(sizeof(int32_t) * hp->n_expert);
            s->h_mm = malloc(sizeof(halo_mm) * 2 * HALO_CPU_EXPERTS_FEW);
            if (!s->h_xn || !s->h_x || !s->h_tmp || !s->h_ffa || !s->h_ffb || !s->h_y ||
                !s->h_ids || !s->h_list || !s->h_count || !s->h_mm) {
                halo_error_set(err, HALO_ERR_NOMEM,
                               "out of host memory for the CPU experts' buffers: lower -ub");
                vk_release(be);
                be->ops = NULL;
                return HALO_ERR_NOMEM;
            }
        }
    }
    if (!rc && hp->n_rot) { /* the CPU's frequencies (runtime/context.c), on the device */
        float *f = malloc(sizeof(float) * hp->n_rot / 2);
        if (!f) rc = HALO_ERR_NOMEM;
        if (f) {
            float base = hp->rope_freq_base > 0 ? hp->rope_freq_base : 10000.0f;
            halo_rope_inv_freq(base, (int)hp->n_rot, f);
            for (uint32_t i = 0; i < hp->n_rot / 2; i++)
                f[i] = f[i] * m->rope_freq_scale / (m->rope_freqs ? m->rope_freqs[i] : 1.0f);
            rc = halo_vk_upload(s->vk, s->inv_freq, f, sizeof(float) * hp->n_rot / 2);
            free(f);
        }
    }
    if (rc) {
        halo_error_set(err, rc, "Vulkan: the context's buffers: %s", halo_vk_error(s->vk)->msg);
        vk_release(be);
        be->ops = NULL;
    }
    return rc;
}
