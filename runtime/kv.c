/*
 * The paged KV cache, the recurrent-state slots, and the sequence operations
 * on them (clear, copy, truncate, checkpoints).
 *
 * Invariant: a sequence of length L holds exactly ceil(L / HALO_KV_PAGE) pages
 * in its table. Pages are refcounted; a page held by more than one sequence is
 * never written: halo_kv_reserve gives the writer its own copy first.
 */
#include "model/arch.h"
#include "quant/quant.h"
#include "runtime/backend.h"
#include "runtime/runtime.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

static int32_t *seq_table(const halo_context *ctx, int32_t seq) {
    return ctx->kv.page_table + (size_t)seq * (size_t)ctx->kv.n_pages;
}

static bool has_kv(const halo_context *ctx) { return ctx->kv.n_pages > 0; }

static void page_release(halo_context *ctx, int32_t page) {
    if (--ctx->kv.refcount[page] == 0) ctx->kv.free_pages[ctx->kv.n_free++] = page;
}

static int32_t page_take(halo_context *ctx) {
    int32_t p = ctx->kv.free_pages[--ctx->kv.n_free];
    ctx->kv.refcount[p] = 1;
    return p;
}

/* Keep the first n_pages pages of a sequence's table. */
static void seq_shrink(halo_context *ctx, int32_t seq, int32_t n_pages) {
    int32_t *t = seq_table(ctx, seq);
    while (ctx->kv.n_seq_pages[seq] > n_pages) page_release(ctx, t[--ctx->kv.n_seq_pages[seq]]);
}

static int32_t pages_for(int64_t len) { return (int32_t)((len + HALO_KV_PAGE - 1) / HALO_KV_PAGE); }

/* ---- reservation (before a batch runs) ---------------------------------------- */

int32_t halo_kv_attn_bound(const halo_context *ctx, int32_t max_pos) {
    int64_t b = 256;
    while (b <= max_pos) b *= 2;
    int64_t cells = (int64_t)ctx->kv.n_pages * HALO_KV_PAGE;
    if (cells > 0 && b > cells) b = cells;
    if (b <= max_pos) b = max_pos + 1;
    return (int32_t)(b - 1);
}

int halo_kv_reserve(halo_context *ctx, const int32_t *seq_count, halo_error *err) {
    if (!has_kv(ctx)) return 0;
    const uint32_t n_seq = ctx->params.n_seq_max;
    int64_t need = 0;
    for (uint32_t s = 0; s < n_seq; s++) {
        if (!seq_count[s]) continue;
        int64_t len = ctx->seq_len[s];
        int32_t have = ctx->kv.n_seq_pages[s];
        int32_t want = pages_for(len + seq_count[s]);
        if (want > ctx->kv.n_pages)
            return halo_error_set(err, HALO_ERR_RANGE,
                                  "sequence %u would reach %lld tokens, more than the context's "
                                  "%lld cells (raise -c)",
                                  s, (long long)(len + seq_count[s]),
                                  (long long)ctx->kv.n_pages * HALO_KV_PAGE);
        need += want - have;
        if (len % HALO_KV_PAGE && ctx->kv.refcount[seq_table(ctx, (int32_t)s)[have - 1]] > 1)
            need++; /* copy on write of the shared partial page */
    }
    if (need > ctx->kv.n_free)
        return halo_error_set(err, HALO_ERR_RANGE,
                              "the KV cache is full: this batch needs %lld more pages of %d cells, "
                              "%d are free (raise -c or clear sequences)",
                              (long long)need, HALO_KV_PAGE, ctx->kv.n_free);
    const halo_hparams *hp = ctx->hp;
    for (uint32_t s = 0; s < n_seq; s++) {
        if (!seq_count[s]) continue;
        int32_t *t = seq_table(ctx, (int32_t)s);
        int32_t have = ctx->kv.n_seq_pages[s];
        if (ctx->seq_len[s] % HALO_KV_PAGE && ctx->kv.refcount[t[have - 1]] > 1) {
            int32_t old = t[have - 1], np = page_take(ctx);
            for (uint32_t il = 0; il < hp->n_layer; il++) {
                if (!ctx->kv.k[il]) continue;
                size_t kb = HALO_KV_PAGE * ctx->kv.k_row_bytes[il];
                size_t vb = HALO_KV_PAGE * ctx->kv.v_row_bytes[il];
                ctx->be.ops->copy(&ctx->be, ctx->kv.k[il] + (size_t)np * kb,
                                  ctx->kv.k[il] + (size_t)old * kb, kb);
                ctx->be.ops->copy(&ctx->be, ctx->kv.v[il] + (size_t)np * vb,
                                  ctx->kv.v[il] + (size_t)old * vb, vb);
            }
            page_release(ctx, old);
            t[have - 1] = np;
        }
        int32_t want = pages_for((int64_t)ctx->seq_len[s] + seq_count[s]);
        while (ctx->kv.n_seq_pages[s] < want) t[ctx->kv.n_seq_pages[s]++] = page_take(ctx);
    }
    return 0;
}

/* ---- recurrent state ------------------------------------------------------------------ */

float *halo_rs_conv(halo_context *ctx, uint32_t il, int32_t seq) {
    int32_t s = ctx->rs.slot[il];
    return ctx->rs.conv + ((size_t)s * ctx->params.n_seq_max + (size_t)seq) * ctx->rs.conv_floats;
}

float *halo_rs_ssm(halo_context *ctx, uint32_t il, int32_t seq) {
    int32_t s = ctx->rs.slot[il];
    return ctx->rs.ssm + ((size_t)s * ctx->params.n_seq_max + (size_t)seq) * ctx->rs.ssm_floats;
}

/* Visit each DeltaNet layer's conv and ssm state of a sequence. */
static void rs_zero(halo_context *ctx, int32_t seq) {
    for (uint32_t il = 0; il < ctx->hp->n_layer; il++) {
        if (ctx->rs.slot[il] < 0) continue;
        ctx->be.ops->zero(&ctx->be, halo_rs_conv(ctx, il, seq), sizeof(float) * ctx->rs.conv_floats);
        ctx->be.ops->zero(&ctx->be, halo_rs_ssm(ctx, il, seq), sizeof(float) * ctx->rs.ssm_floats);
    }
}

static void rs_copy(halo_context *ctx, int32_t src, int32_t dst) {
    for (uint32_t il = 0; il < ctx->hp->n_layer; il++) {
        if (ctx->rs.slot[il] < 0) continue;
        ctx->be.ops->copy(&ctx->be, halo_rs_conv(ctx, il, dst), halo_rs_conv(ctx, il, src),
                          sizeof(float) * ctx->rs.conv_floats);
        ctx->be.ops->copy(&ctx->be, halo_rs_ssm(ctx, il, dst), halo_rs_ssm(ctx, il, src),
                          sizeof(float) * ctx->rs.ssm_floats);
    }
}

/* ---- sequences -------------------------------------------------------------------- */

static bool seq_ok(const halo_context *ctx, int32_t seq) {
    return ctx && seq >= 0 && (uint32_t)seq < ctx->params.n_seq_max;
}

static int bad_seq(const halo_context *ctx, int32_t seq, halo_error *err) {
    return halo_error_set(err, HALO_ERR_ARG, "sequence id %d is out of range (this context has %u)",
                          seq, ctx ? ctx->params.n_seq_max : 0);
}

void halo_seq_clear(halo_context *ctx, int32_t seq) {
    if (!seq_ok(ctx, seq)) return;
    if (has_kv(ctx)) seq_shrink(ctx, seq, 0);
    rs_zero(ctx, seq);
    ctx->seq_len[seq] = 0;
}

int32_t halo_seq_length(const halo_context *ctx, int32_t seq) {
    return seq_ok(ctx, seq) ? ctx->seq_len[seq] : -1;
}

int halo_seq_copy(halo_context *ctx, int32_t src, int32_t dst, halo_error *err) {
    if (!seq_ok(ctx, src)) return bad_seq(ctx, src, err);
    if (!seq_ok(ctx, dst)) return bad_seq(ctx, dst, err);
    if (src == dst) return 0;
    halo_seq_clear(ctx, dst);
    if (has_kv(ctx)) {
        const int32_t *ts = seq_table(ctx, src);
        int32_t *td = seq_table(ctx, dst);
        for (int32_t i = 0; i < ctx->kv.n_seq_pages[src]; i++) {
            td[i] = ts[i];
            ctx->kv.refcount[ts[i]]++;
        }
        ctx->kv.n_seq_pages[dst] = ctx->kv.n_seq_pages[src];
    }
    rs_copy(ctx, src, dst);
    ctx->seq_len[dst] = ctx->seq_len[src];
    return 0;
}

int halo_seq_truncate(halo_context *ctx, int32_t seq, int32_t n_keep, halo_error *err) {
    if (!seq_ok(ctx, seq)) return bad_seq(ctx, seq, err);
    int32_t len = ctx->seq_len[seq];
    if (n_keep < 0 || n_keep > len)
        return halo_error_set(err, HALO_ERR_ARG,
                              "cannot truncate sequence %d to %d positions: it has %d", seq,
                              n_keep, len);
    if (n_keep == len) return 0;
    if (ctx->rs.n_slots > 0)
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "%s keeps a recurrent state that cannot be rolled back: truncating "
                              "sequence %d from %d to %d positions needs a saved checkpoint "
                              "(halo_seq_state_load) or a fresh start",
                              ctx->hp->arch_name, seq, len, n_keep);
    if (has_kv(ctx)) seq_shrink(ctx, seq, pages_for(n_keep));
    ctx->seq_len[seq] = n_keep;
    return 0;
}

size_t halo_seq_state_size(const halo_context *ctx) {
    return (size_t)ctx->rs.n_slots * (ctx->rs.conv_floats + ctx->rs.ssm_floats) * sizeof(float);
}

/* One sequence's recurrent state, layer after layer (conv then ssm), between the
 * context's state and buf: through the host, or within the backend's memory. */
typedef enum { STATE_TO_HOST, STATE_FROM_HOST, STATE_TO_BUF, STATE_FROM_BUF } state_dir;

static void state_move(halo_context *ctx, int32_t seq, void *buf, state_dir dir) {
    halo_backend *be = &ctx->be;
    void (*move)(halo_backend *, void *, const void *, size_t) =
        dir == STATE_TO_HOST ? be->ops->to_host : dir == STATE_FROM_HOST ? be->ops->to_backend
                                                                         : be->ops->copy;
    const bool out = dir == STATE_TO_HOST || dir == STATE_TO_BUF; /* state into buf */
    char *o = buf;
    const size_t cb = sizeof(float) * ctx->rs.conv_floats, sb = sizeof(float) * ctx->rs.ssm_floats;
    for (uint32_t il = 0; il < ctx->hp->n_layer; il++) {
        if (ctx->rs.slot[il] < 0) continue;
        float *conv = halo_rs_conv(ctx, il, seq), *ssm = halo_rs_ssm(ctx, il, seq);
        if (out) {
            move(be, o, conv, cb);
            move(be, o + cb, ssm, sb);
        } else {
            move(be, conv, o, cb);
            move(be, ssm, o + cb, sb);
        }
        o += cb + sb;
    }
}

/* Before a load: the sequence keeps its cache's positions < n_pos. */
static int state_rewind(halo_context *ctx, int32_t seq, int32_t n_pos, halo_error *err) {
    if (!seq_ok(ctx, seq)) return bad_seq(ctx, seq, err);
    int32_t len = ctx->seq_len[seq];
    if (n_pos < 0 || n_pos > len)
        return halo_error_set(err, HALO_ERR_ARG,
                              "cannot restore sequence %d at position %d: the cache holds %d "
                              "positions of it",
                              seq, n_pos, len);
    if (has_kv(ctx)) seq_shrink(ctx, seq, pages_for(n_pos));
    ctx->seq_len[seq] = n_pos;
    return 0;
}

int halo_seq_state_save(const halo_context *ctx, int32_t seq, void *buf, halo_error *err) {
    if (!seq_ok(ctx, seq)) return bad_seq(ctx, seq, err);
    state_move((halo_context *)ctx, seq, buf, STATE_TO_HOST);
    return 0;
}

int halo_seq_state_load(halo_context *ctx, int32_t seq, const void *buf, int32_t n_pos,
                        halo_error *err) {
    int rc = state_rewind(ctx, seq, n_pos, err);
    if (!rc) state_move(ctx, seq, (void *)buf, STATE_FROM_HOST);
    return rc;
}

/* Checkpoint buffers in the backend's memory. On a GPU a buffer is taken only while
 * STATE_RESERVE bytes stay free after it, so that checkpoints never starve the device
 * of the memory its graphs and libraries allocate later. */
#define STATE_RESERVE ((uint64_t)1 << 30)

void *halo_state_buf_new(halo_context *ctx) {
    const size_t bytes = halo_seq_state_size(ctx);
    const halo_backend_ops *o = ctx->be.ops;
    if (bytes == 0 || !o) return NULL;
    if (o->mem_free) {
        int64_t avail = o->mem_free(&ctx->be);
        if (avail < 0 || (uint64_t)avail < bytes + STATE_RESERVE) return NULL;
    }
    return o->alloc(&ctx->be, bytes);
}

void halo_state_buf_free(halo_context *ctx, void *buf) {
    if (buf && ctx->be.ops) ctx->be.ops->free(&ctx->be, buf);
}

int halo_seq_state_save_buf(halo_context *ctx, int32_t seq, void *buf, halo_error *err) {
    if (!seq_ok(ctx, seq)) return bad_seq(ctx, seq, err);
    state_move(ctx, seq, buf, STATE_TO_BUF);
    return 0;
}

int halo_seq_state_load_buf(halo_context *ctx, int32_t seq, const void *buf, int32_t n_pos,
                            halo_error *err) {
    int rc = state_rewind(ctx, seq, n_pos, err);
    if (!rc) state_move(ctx, seq, (void *)buf, STATE_FROM_BUF);
    return rc;
}

/* ---- a sequence's KV rows in host memory ---------------------------------------------- */

/* Layout: for each attention layer, its K rows of the n_stored positions, then its V rows. */
size_t halo_seq_kv_size(const halo_context *ctx, int32_t n_pos) {
    if (!ctx || n_pos <= 0 || !has_kv(ctx)) return 0;
    size_t row = 0;
    for (uint32_t il = 0; il < ctx->hp->n_layer; il++)
        if (ctx->kv.k[il]) row += ctx->kv.k_row_bytes[il] + ctx->kv.v_row_bytes[il];
    if (row > SIZE_MAX / (size_t)n_pos) return SIZE_MAX;
    return row * (size_t)n_pos;
}

/* Rows [0, n) of one layer's K or V (row bytes rb) between a sequence's pages and buf. */
static void kv_rows_move(halo_context *ctx, int32_t seq, char *store, size_t rb, char *buf,
                         int32_t n, bool out) {
    const int32_t *t = seq_table(ctx, seq);
    for (int32_t p = 0; p * HALO_KV_PAGE < n; p++) {
        int32_t rows = n - p * HALO_KV_PAGE < HALO_KV_PAGE ? n - p * HALO_KV_PAGE : HALO_KV_PAGE;
        char *page = store + (size_t)t[p] * HALO_KV_PAGE * rb;
        char *host = buf + (size_t)p * HALO_KV_PAGE * rb;
        if (out) ctx->be.ops->to_host(&ctx->be, host, page, (size_t)rows * rb);
        else ctx->be.ops->to_backend(&ctx->be, page, host, (size_t)rows * rb);
    }
}

int halo_seq_kv_save(const halo_context *ctx, int32_t seq, int32_t n_pos, void *buf,
                     halo_error *err) {
    if (!seq_ok(ctx, seq)) return bad_seq(ctx, seq, err);
    if (n_pos < 0 || n_pos > ctx->seq_len[seq])
        return halo_error_set(err, HALO_ERR_ARG,
                              "cannot save %d positions of sequence %d: it has %d", n_pos, seq,
                              ctx->seq_len[seq]);
    if (!has_kv(ctx) || n_pos == 0) return 0;
    halo_context *c = (halo_context *)ctx;
    char *o = buf;
    for (uint32_t il = 0; il < ctx->hp->n_layer; il++) {
        if (!ctx->kv.k[il]) continue;
        kv_rows_move(c, seq, ctx->kv.k[il], ctx->kv.k_row_bytes[il], o, n_pos, true);
        o += (size_t)n_pos * ctx->kv.k_row_bytes[il];
        kv_rows_move(c, seq, ctx->kv.v[il], ctx->kv.v_row_bytes[il], o, n_pos, true);
        o += (size_t)n_pos * ctx->kv.v_row_bytes[il];
    }
    return 0;
}

int halo_seq_kv_load(halo_context *ctx, int32_t seq, const void *buf, int32_t n_stored,
                     int32_t n_pos, halo_error *err) {
    if (!seq_ok(ctx, seq)) return bad_seq(ctx, seq, err);
    if (n_pos < 0 || n_pos > n_stored)
        return halo_error_set(err, HALO_ERR_ARG, "cannot load %d of %d saved positions", n_pos,
                              n_stored);
    halo_seq_clear(ctx, seq);
    if (has_kv(ctx)) {
        int32_t want = pages_for(n_pos);
        if (want > ctx->kv.n_free)
            return halo_error_set(err, HALO_ERR_RANGE,
                                  "the KV cache is full: %d saved positions need %d pages, %d "
                                  "are free",
                                  n_pos, want, ctx->kv.n_free);
        int32_t *t = seq_table(ctx, seq);
        while (ctx->kv.n_seq_pages[seq] < want) t[ctx->kv.n_seq_pages[seq]++] = page_take(ctx);
        const char *o = buf;
        for (uint32_t il = 0; il < ctx->hp->n_layer; il++) {
            if (!ctx->kv.k[il]) continue;
            kv_rows_move(ctx, seq, ctx->kv.k[il], ctx->kv.k_row_bytes[il], (char *)o, n_pos, false);
            o += (size_t)n_stored * ctx->kv.k_row_bytes[il];
            kv_rows_move(ctx, seq, ctx->kv.v[il], ctx->kv.v_row_bytes[il], (char *)o, n_pos, false);
            o += (size_t)n_stored * ctx->kv.v_row_bytes[il];
        }
    }
    ctx->seq_len[seq] = n_pos;
    return 0;
}
