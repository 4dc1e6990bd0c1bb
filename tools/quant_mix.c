/*
 * Mixed precision chosen by measurement: `halo quantize --target-size S` / `--target-bpw B`.
 *
 * What hub publishers tune by hand per model (which tensors get more bits), chosen from
 * measurements on calibration text:
 *   1. Groups. The free matrices are grouped per layer and role: the token mixer's inputs
 *      (attn_q/k/v, or a DeltaNet layer's attn_qkv, attn_gate, ssm_alpha, ssm_beta), its
 *      output (attn_output / ssm_out), each routed-expert tensor (gate, up, down), the
 *      shared expert, each dense FFN matrix, token_embd, output. A few dozen groups for
 *      kdoc-moe, a few hundred for a 35B model: the measurement count stays groups x types.
 *   2. Costs. For each group and candidate type, the group alone is encoded in that type
 *      (the encoder and importance matrix the output will use), swapped into the loaded
 *      model in place of its weights, and the calibration windows are evaluated: the cost
 *      is the mean KL divergence of the next-token distributions from the unmodified
 *      model's (halo perplexity's protocol: windows of n_ctx tokens from an empty cache,
 *      the second half scored). Everything else stays as in the input, so one forward
 *      pass per (group, type); the base distributions are kept in memory
 *      (chunks x n_ctx/2 x n_vocab floats).
 *   3. The choice. Assuming the costs add up (they nearly do at small divergences, where
 *      the errors of different matrices are independent perturbations of the logits), one
 *      type per group minimising the summed cost under the byte budget is a
 *      multiple-choice knapsack, solved exactly by dynamic programming over sizes in
 *      units of budget / 65536 (each option's size rounded up, so the result never
 *      exceeds the budget and gives away at most groups / 65536 of it). A Lagrangian
 *      search would only reach the mixes on the lower convex hull of (size, cost) and
 *      may leave a good part of the budget unused between two hull points; the DP costs
 *      groups x types x 65536 steps, well under a second even for a few hundred groups.
 * The measurements can be kept (--kld-table FILE) so that other budgets reuse them.
 */
#include "tools/quant_mix.h"

#include "model/arch.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"
#include "tools.h"
#include "util/util.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- encoding rows on the pool -------------------------------------------------------- */

typedef struct enc_job {
    const halo_gguf_tensor *src;
    int type;
    const halo_imatrix *im;
    const quant_scales *sc;
    int64_t row0, n_rows;
    float *f32; /* [threads][2 ne0] */
    char *out;
    int rc;
    halo_error err;
} enc_job;

static void enc_task(void *arg, int ith, int nth) {
    enc_job *j = arg;
    const halo_gguf_tensor *s = j->src;
    const int64_t ne0 = s->ne[0], rows_per_mat = s->ne[1];
    const size_t in_row = halo_type_row_size(s->type, ne0);
    const size_t out_row = halo_type_row_size(j->type, ne0);
    float *f = j->f32 + (size_t)ith * 2 * (size_t)ne0, *imp_scaled = f + ne0;
    halo_error e = {0};
    for (int64_t r = ith; r < j->n_rows; r += nth) {
        const int64_t row = j->row0 + r, mat = row / rows_per_mat;
        const float *imp = j->im ? halo_imatrix_get(j->im, s->name, mat, ne0) : NULL;
        if (halo_quant_decode(s->type, (const char *)s->data + (size_t)row * in_row, f, ne0, &e))
            goto fail;
        if (j->sc && j->sc->row) {
            const float k = j->sc->row[row];
            for (int64_t c = 0; c < ne0; c++) f[c] *= k;
        }
        if (j->sc && j->sc->col) {
            const float *col = j->sc->col + (size_t)mat * (size_t)ne0;
            for (int64_t c = 0; c < ne0; c++) f[c] *= col[c];
            if (imp) {
                for (int64_t c = 0; c < ne0; c++) imp_scaled[c] = imp[c] / (col[c] * col[c]);
                imp = imp_scaled;
            }
        }
        if (halo_quant_encode(j->type, f, j->out + (size_t)r * out_row, ne0, imp, &e)) goto fail;
    }
    return;
fail:
    if (!j->rc) { /* first failure wins; a race here only loses a duplicate */
        j->rc = e.status ? e.status : HALO_ERR_FORMAT;
        j->err = e;
    }
}

int quant_encode_rows(halo_threadpool *pool, const halo_gguf_tensor *src, int type,
                      const halo_imatrix *im, const quant_scales *sc, int64_t row0,
                      int64_t n_rows, float *scratch, void *out, halo_error *err) {
    enc_job j = {.src = src, .type = type, .im = im, .sc = sc, .row0 = row0, .n_rows = n_rows,
                 .f32 = scratch, .out = out};
    halo_threadpool_run(pool, enc_task, &j);
    if (j.rc) {
        *err = j.err;
        return halo_error_set(err, j.rc, "%s: encoding as %s failed: %s", src->name,
                              halo_type_name(type), j.err.msg);
    }
    return 0;
}

/* ---- groups ----------------------------------------------------------------------------- */

typedef struct mix_group {
    char label[64];
    int64_t n_tensors;
    uint64_t n_params;
    uint64_t bytes[QUANT_MIX_MAX_TYPES]; /* 0: a row of some member is no whole block */
    double kld[QUANT_MIX_MAX_TYPES];     /* NAN until measured */
    double cost[QUANT_MIX_MAX_TYPES];    /* kld made non-increasing in size (make_monotone) */
    int choice;
} mix_group;

/* "blk.3.mixer_in", "token_embd", ... from a tensor's name. */
static void group_label(const char *name, char *out, size_t size) {
    static const struct {
        const char *role, *group;
    } roles[] = {
        {"attn_q", "mixer_in"},          {"attn_k", "mixer_in"},
        {"attn_v", "mixer_in"},          {"attn_qkv", "mixer_in"},
        {"attn_gate", "mixer_in"},       {"ssm_alpha", "mixer_in"},
        {"ssm_beta", "mixer_in"},        {"ssm_ba", "mixer_in"},
        {"ssm_in", "mixer_in"},          {"attn_output", "mixer_out"},
        {"ssm_out", "mixer_out"},        {"ffn_gate_shexp", "ffn_shexp"},
        {"ffn_up_shexp", "ffn_shexp"},   {"ffn_down_shexp", "ffn_shexp"},
    };
    unsigned il;
    int end = 0;
    if (sscanf(name, "blk.%u.%n", &il, &end) != 1 || end == 0) {
        size_t n = strlen(name);
        if (n > 7 && !strcmp(name + n - 7, ".weight")) n -= 7;
        snprintf(out, size, "%.*s", (int)n, name);
        return;
    }
    char role[48];
    const char *r = name + end, *dot = strchr(r, '.');
    size_t rn = dot ? (size_t)(dot - r) : strlen(r);
    snprintf(role, sizeof role, "%.*s", (int)rn, r);
    const char *g = role;
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (!strcmp(role, roles[i].role)) g = roles[i].group;
    snprintf(out, size, "blk.%u.%s", il, g);
}

/* ---- the model's weight slots --------------------------------------------------------- */

/* halo_layer is a struct of halo_weight only: its slots are an array of them (asserted,
 * so that a field of another kind added there fails to compile here). */
_Static_assert(sizeof(halo_layer) % sizeof(halo_weight) == 0, "halo_layer holds halo_weight only");
enum { SLOTS_PER_LAYER = sizeof(halo_layer) / sizeof(halo_weight), MAX_SLOTS = 8 };

/* Every weight slot of m viewing the bytes of the tensor named as src (a tied output is
 * the embedding twice). */
static int slots_of(halo_model *m, const halo_gguf_tensor *t, halo_weight **out) {
    int n = 0;
    const halo_gguf_tensor *src = halo_gguf_find_tensor(m->gguf, t->name);
    if (!src) return 0;
    if (m->tok_embd.data == src->data) out[n++] = &m->tok_embd;
    if (m->output.data == src->data) out[n++] = &m->output;
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        halo_weight *w = (halo_weight *)(void *)&m->layers[il];
        for (int k = 0; k < SLOTS_PER_LAYER && n < MAX_SLOTS; k++)
            if (w[k].data == src->data) out[n++] = &w[k];
    }
    return n;
}

/* ---- the measurement ------------------------------------------------------------------ */

typedef struct mix_eval {
    halo_model *model;
    halo_context *ctx;
    int32_t *tokens;
    int64_t n_chunks;
    int32_t n_ctx, first, n_vocab;
    bool add_bos;
    int32_t bos;
    float *base; /* [n_chunks][n_ctx - 1 - first][n_vocab] log-probabilities */
    int32_t *btok, *bpos, *bseq;
    int8_t *blog;
} mix_eval;

/* One pass over the windows: saves the base log-probabilities (save) or returns the mean
 * KL divergence from them. */
static int eval_pass(mix_eval *e, bool save, double *kld, halo_error *err) {
    const int32_t n_ctx = e->n_ctx, first = e->first, nv = e->n_vocab;
    const size_t rows_per = (size_t)(n_ctx - 1 - first);
    double sum = 0.0;
    size_t count = 0;
    for (int64_t c = 0; c < e->n_chunks; c++) {
        const int32_t *ct = e->tokens + (size_t)c * (size_t)n_ctx;
        halo_seq_clear(e->ctx, 0);
        for (int32_t k = 0; k < n_ctx; k++) {
            e->btok[k] = ct[k];
            e->bpos[k] = k;
            e->blog[k] = k >= first && k < n_ctx - 1;
        }
        if (e->add_bos) e->btok[0] = e->bos;
        halo_batch batch = {n_ctx, e->btok, e->bpos, e->bseq, e->blog};
        if (halo_decode(e->ctx, &batch, err)) return err->status ? err->status : HALO_ERR_FORMAT;
        for (int32_t k = first; k < n_ctx - 1; k++) {
            const float *l = halo_get_logits(e->ctx, k);
            float mx = l[0];
            for (int32_t v = 1; v < nv; v++) mx = l[v] > mx ? l[v] : mx;
            double s = 0.0;
            for (int32_t v = 0; v < nv; v++) s += exp((double)(l[v] - mx));
            const double lse = (double)mx + log(s);
            float *b = e->base + ((size_t)c * rows_per + (size_t)(k - first)) * (size_t)nv;
            if (save) {
                for (int32_t v = 0; v < nv; v++) b[v] = (float)((double)l[v] - lse);
            } else {
                double kl = 0.0;
                for (int32_t v = 0; v < nv; v++)
                    kl += exp((double)b[v]) * ((double)b[v] - ((double)l[v] - lse));
                sum += kl;
                count++;
            }
        }
    }
    if (kld) *kld = count ? sum / (double)count : 0.0;
    return 0;
}

static int eval_open(const quant_mix_options *o, mix_eval *e, halo_error *err) {
    halo_load_options lo = {.mode = HALO_LOAD_MMAP};
    int rc;
    if ((rc = halo_model_load(o->model, &lo, &e->model, err))) return rc;
    const halo_tokenizer *tok = halo_model_tokenizer(e->model);
    e->n_vocab = halo_model_n_vocab(e->model);
    e->add_bos = halo_tok_add_bos(tok);
    e->bos = halo_tok_bos(tok);
    size_t len;
    char *text = tools_read_file(o->calib, &len);
    if (!text) return halo_error_set(err, HALO_ERR_IO, "cannot read the calibration text");
    size_t n_ids = 0;
    rc = halo_tok_encode(tok, text, len, HALO_TOK_ADD_SPECIAL, &e->tokens, &n_ids, err);
    free(text);
    if (rc) return rc;
    e->n_ctx = (int32_t)o->n_ctx;
    e->first = e->n_ctx / 2;
    int64_t max_chunks = (int64_t)(n_ids / (size_t)e->n_ctx);
    if (max_chunks < 1)
        return halo_error_set(err, HALO_ERR_ARG,
                              "%s: %zu tokens, less than one window of %d (--calib-ctx)",
                              o->calib, n_ids, e->n_ctx);
    e->n_chunks = o->n_chunks < max_chunks ? o->n_chunks : max_chunks;
    halo_context_params cp;
    halo_context_default_params(&cp);
    cp.n_ctx = cp.n_batch = cp.n_ubatch = (uint32_t)e->n_ctx;
    if (cp.n_ubatch > 512) cp.n_ubatch = 512;
    cp.n_seq_max = 1;
    cp.n_threads = o->threads;
    if ((rc = halo_context_new(e->model, &cp, &e->ctx, err))) return rc;
    uint64_t rows = (uint64_t)e->n_chunks * (uint64_t)(e->n_ctx - 1 - e->first), cells;
    if (halo_mul_overflow(rows, (uint64_t)e->n_vocab, &cells) || cells > SIZE_MAX / sizeof(float) ||
        !(e->base = malloc(cells * sizeof *e->base)))
        return halo_error_set(err, HALO_ERR_NOMEM,
                              "out of memory for the base distributions (%llu positions x %d; "
                              "fewer --calib-chunks)",
                              (unsigned long long)rows, e->n_vocab);
    e->btok = malloc((size_t)e->n_ctx * sizeof *e->btok);
    e->bpos = malloc((size_t)e->n_ctx * sizeof *e->bpos);
    e->bseq = calloc((size_t)e->n_ctx, sizeof *e->bseq);
    e->blog = malloc((size_t)e->n_ctx);
    if (!e->btok || !e->bpos || !e->bseq || !e->blog)
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    return 0;
}

static void eval_close(mix_eval *e) {
    free(e->base);
    free(e->btok);
    free(e->bpos);
    free(e->bseq);
    free(e->blog);
    free(e->tokens);
    halo_context_free(e->ctx);
    halo_model_free(e->model);
}

/* ---- the measurements file -------------------------------------------------------------- */

/* One line per measurement, "LABEL TYPE KLD", after a header naming what they were measured
 * on; a file whose header differs is not reused (and is rewritten). */
static void table_header(const quant_mix_options *o, const mix_eval *e, char *buf, size_t size) {
    snprintf(buf, size, "# halo quantize measurements v1: %s, %lld windows of %d tokens of %s, "
             "imatrix %s\n",
             o->model, (long long)e->n_chunks, e->n_ctx, o->calib, o->im ? "yes" : "no");
}

static void table_read(const quant_mix_options *o, const mix_eval *e, mix_group *g, int ng) {
    FILE *f = fopen(o->table, "r");
    if (!f) return;
    char want[1024], line[1024];
    table_header(o, e, want, sizeof want);
    if (!fgets(line, sizeof line, f) || strcmp(line, want)) {
        fprintf(stderr, "note: %s holds other measurements (model, text or settings differ); "
                        "measuring again\n", o->table);
        fclose(f);
        return;
    }
    int reused = 0;
    while (fgets(line, sizeof line, f)) {
        char label[64], type[16];
        double k;
        if (sscanf(line, "%63s %15s %lf", label, type, &k) != 3 || !(k >= 0)) continue;
        int t = halo_type_from_name(type);
        for (int i = 0; i < ng; i++) {
            if (strcmp(g[i].label, label)) continue;
            for (int j = 0; j < o->n_types; j++)
                if (o->types[j] == t && g[i].bytes[j] && isnan(g[i].kld[j])) {
                    g[i].kld[j] = k;
                    reused++;
                }
        }
    }
    fclose(f);
    fprintf(stderr, "measure: %d measurements reused from %s\n", reused, o->table);
}

static void table_write(const quant_mix_options *o, const mix_eval *e, const mix_group *g,
                        int ng) {
    FILE *f = fopen(o->table, "w");
    if (!f) {
        fprintf(stderr, "warning: cannot write %s\n", o->table);
        return;
    }
    char h[1024];
    table_header(o, e, h, sizeof h);
    fputs(h, f);
    for (int i = 0; i < ng; i++)
        for (int j = 0; j < o->n_types; j++)
            if (!isnan(g[i].kld[j]))
                fprintf(f, "%s %s %.9g\n", g[i].label, halo_type_name(o->types[j]), g[i].kld[j]);
    if (fclose(f)) fprintf(stderr, "warning: writing %s failed\n", o->table);
}

/* ---- measuring one group at one type ----------------------------------------------------- */

static int measure(const quant_mix_options *o, mix_eval *e, quant_mix_tensor *t, int64_t n,
                   int gi, int type, double *kld, halo_error *err) {
    /* encode the group's tensors, swap them in, evaluate, swap back */
    enum { MAX_MEMBERS = 16 };
    halo_weight *slot[MAX_MEMBERS * MAX_SLOTS];
    halo_weight saved[MAX_MEMBERS * MAX_SLOTS];
    void *bufs[MAX_MEMBERS] = {0};
    int n_slots = 0, n_bufs = 0, rc = 0;
    int64_t max_ne0 = 1;
    for (int64_t i = 0; i < n; i++)
        if (t[i].free && t[i].group == gi && t[i].src->ne[0] > max_ne0) max_ne0 = t[i].src->ne[0];
    int nth = halo_threadpool_n_threads(e->ctx->pool);
    float *scratch = malloc(sizeof(float) * 2 * (size_t)max_ne0 * (size_t)nth);
    if (!scratch) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n && !rc; i++) {
        if (!t[i].free || t[i].group != gi) continue;
        const halo_gguf_tensor *s = t[i].src;
        if (n_bufs == MAX_MEMBERS) {
            rc = halo_error_set(err, HALO_ERR_UNSUPPORTED, "group of %s: more than %d tensors",
                                s->name, MAX_MEMBERS);
            break;
        }
        const int64_t rows = s->ne[1] * s->ne[2] * s->ne[3];
        const size_t row = halo_type_row_size(type, s->ne[0]);
        void *b = bufs[n_bufs++] = malloc(row * (size_t)rows);
        if (!b) {
            rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory encoding %s", s->name);
            break;
        }
        if ((rc = quant_encode_rows(e->ctx->pool, s, type, o->im, NULL, 0, rows, scratch, b,
                                    err)))
            break;
        halo_weight *ws[MAX_SLOTS];
        int k = slots_of(e->model, s, ws);
        for (int j = 0; j < k; j++) {
            slot[n_slots] = ws[j];
            saved[n_slots++] = *ws[j];
            ws[j]->type = type;
            ws[j]->data = b;
            ws[j]->row_stride = row;
            ws[j]->mat_stride = row * (size_t)ws[j]->n_rows;
        }
    }
    if (!rc) rc = eval_pass(e, false, kld, err);
    for (int j = 0; j < n_slots; j++) *slot[j] = saved[j];
    for (int j = 0; j < n_bufs; j++) free(bufs[j]);
    free(scratch);
    return rc;
}

/* ---- the choice -------------------------------------------------------------------------- */

/* A group's costs made non-increasing in size (isotonic regression, pool adjacent
 * violators): more bits never cost more divergence, but a measurement over a few windows
 * can say otherwise where a near-tied expert route flips (q6_K above q5_K by a few 1e-4 in
 * an early layer), and the knapsack would exploit that noise. Violating neighbours are
 * replaced by their mean. */
static void make_monotone(const quant_mix_options *o, const mix_group *g, double *cost) {
    int idx[QUANT_MIX_MAX_TYPES], n = 0;
    for (int j = 0; j < o->n_types; j++)
        if (g->bytes[j] && !isnan(g->kld[j])) idx[n++] = j;
    for (int a = 1; a < n; a++) /* by size, smallest first */
        for (int b = a; b > 0 && g->bytes[idx[b]] < g->bytes[idx[b - 1]]; b--) {
            int x = idx[b];
            idx[b] = idx[b - 1], idx[b - 1] = x;
        }
    double val[QUANT_MIX_MAX_TYPES];
    int len[QUANT_MIX_MAX_TYPES], nb = 0;
    for (int k = 0; k < n; k++) {
        val[nb] = g->kld[idx[k]], len[nb++] = 1;
        while (nb > 1 && val[nb - 2] < val[nb - 1]) { /* must not rise with size */
            val[nb - 2] = (val[nb - 2] * len[nb - 2] + val[nb - 1] * len[nb - 1]) /
                          (len[nb - 2] + len[nb - 1]);
            len[nb - 2] += len[nb - 1];
            nb--;
        }
    }
    for (int j = 0; j < o->n_types; j++) cost[j] = g->kld[j];
    for (int bl = 0, k = 0; bl < nb; bl++)
        for (int r = 0; r < len[bl]; r++) cost[idx[k++]] = val[bl];
}

#define DP_CELLS 65536

/* Exact multiple-choice knapsack over sizes in units of budget / DP_CELLS (rounded up):
 * sets g[i].choice; false if even the smallest types do not fit. */
static bool knapsack(const quant_mix_options *o, mix_group *g, int ng, uint64_t budget) {
    const uint64_t unit = budget / DP_CELLS + 1;
    const size_t cap = (size_t)(budget / unit);
    double *best = malloc((cap + 1) * sizeof *best), *next = malloc((cap + 1) * sizeof *next);
    uint8_t *pick = malloc((size_t)ng * (cap + 1));
    bool ok = best && next && pick;
    for (size_t c = 0; ok && c <= cap; c++) best[c] = 0.0; /* no group: nothing spent, no cost */
    for (int i = 0; ok && i < ng; i++) {
        uint64_t w[QUANT_MIX_MAX_TYPES];
        for (int j = 0; j < o->n_types; j++) w[j] = (g[i].bytes[j] + unit - 1) / unit;
        uint8_t *p = pick + (size_t)i * (cap + 1);
        for (size_t c = 0; c <= cap; c++) {
            double b = INFINITY;
            int bj = -1;
            for (int j = 0; j < o->n_types; j++) {
                if (!g[i].bytes[j] || w[j] > c || isnan(g[i].cost[j])) continue;
                double v = best[c - w[j]] + g[i].cost[j];
                if (v < b) b = v, bj = j;
            }
            next[c] = b;
            p[c] = (uint8_t)(bj < 0 ? 255 : bj);
        }
        double *tmp = best;
        best = next;
        next = tmp;
    }
    ok = ok && isfinite(best[cap]);
    for (int i = ng - 1, c = (int)cap; ok && i >= 0; i--) {
        int j = pick[(size_t)i * (cap + 1) + (size_t)c];
        g[i].choice = j;
        c -= (int)((g[i].bytes[j] + unit - 1) / unit);
    }
    free(best);
    free(next);
    free(pick);
    return ok;
}

static void print_map(const quant_mix_options *o, const mix_group *g, int ng, uint64_t fixed,
                      uint64_t fixed_params) {
    char b[32];
    printf("%-22s %7s %9s  %-7s %11s %6s %10s\n", "group", "tensors", "params", "type", "size",
           "bpw", "KLD");
    uint64_t tot = 0, par = 0;
    double kl = 0.0;
    for (int i = 0; i < ng; i++) {
        int j = g[i].choice;
        printf("%-22s %7lld %8.3fM  %-7s %11s %6.2f %10.6f\n", g[i].label,
               (long long)g[i].n_tensors, (double)g[i].n_params / 1e6,
               halo_type_name(o->types[j]), halo_format_bytes(g[i].bytes[j], b, sizeof b),
               8.0 * (double)g[i].bytes[j] / (double)g[i].n_params, g[i].cost[j]);
        tot += g[i].bytes[j];
        par += g[i].n_params;
        kl += g[i].cost[j];
    }
    printf("%-22s %7s %8.3fM  %-7s %11s %6.2f\n", "fixed (other tensors)", "",
           (double)fixed_params / 1e6, "", halo_format_bytes(fixed, b, sizeof b),
           fixed_params ? 8.0 * (double)fixed / (double)fixed_params : 0.0);
    printf("%-22s %7s %8.3fM  %-7s %11s %6.2f %10.6f  (predicted: the costs summed)\n",
           "total (tensor data)",
           "", (double)(par + fixed_params) / 1e6, "",
           halo_format_bytes(tot + fixed, b, sizeof b),
           8.0 * (double)(tot + fixed) / (double)(par + fixed_params), kl);
    fflush(stdout); /* before the quantizer's progress on stderr */
}

int quant_mix_choose(const quant_mix_options *o, quant_mix_tensor *t, int64_t n,
                     quant_mix_result *res, halo_error *err) {
    memset(res, 0, sizeof *res);
    mix_group *g = calloc((size_t)(n ? n : 1), sizeof *g);
    mix_eval e = {0};
    int ng = 0, rc = 0;
    uint64_t fixed = 0, fixed_params = 0;
    if (!g) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (!t[i].free) {
            fixed += t[i].bytes;
            fixed_params += (uint64_t)t[i].src->n_elements;
            continue;
        }
        char label[64];
        group_label(t[i].src->name, label, sizeof label);
        int k = 0;
        while (k < ng && strcmp(g[k].label, label)) k++;
        if (k == ng) {
            snprintf(g[ng].label, sizeof g[ng].label, "%s", label);
            for (int j = 0; j < o->n_types; j++) g[ng].kld[j] = NAN;
            ng++;
        }
        t[i].group = k;
        mix_group *x = &g[k];
        const int64_t rows = t[i].src->ne[1] * t[i].src->ne[2] * t[i].src->ne[3];
        for (int j = 0; j < o->n_types; j++) {
            size_t row = halo_type_row_size(o->types[j], t[i].src->ne[0]);
            bool usable = row && (x->n_tensors == 0 || x->bytes[j]);
            x->bytes[j] = usable ? x->bytes[j] + row * (uint64_t)rows : 0;
        }
        x->n_tensors++;
        x->n_params += (uint64_t)t[i].src->n_elements;
    }
    res->n_groups = ng;
    char b1[32], b2[32];
    if (fixed >= o->budget) {
        rc = halo_error_set(err, HALO_ERR_ARG,
                            "the budget (%s of tensor data) does not even hold the tensors "
                            "whose type is fixed (%s)",
                            halo_format_bytes(o->budget, b1, sizeof b1),
                            halo_format_bytes(fixed, b2, sizeof b2));
        goto out;
    }
    uint64_t least = 0;
    for (int i = 0; i < ng; i++) {
        uint64_t m = UINT64_MAX;
        for (int j = 0; j < o->n_types; j++)
            if (g[i].bytes[j] && g[i].bytes[j] < m) m = g[i].bytes[j];
        if (m == UINT64_MAX) {
            rc = halo_error_set(err, HALO_ERR_ARG,
                                "%s: no candidate type divides its rows (--target-types)",
                                g[i].label);
            goto out;
        }
        least += m;
    }
    if (fixed + least > o->budget) {
        rc = halo_error_set(err, HALO_ERR_ARG,
                            "the budget (%s of tensor data) is below the smallest mix of the "
                            "candidate types (%s)",
                            halo_format_bytes(o->budget, b1, sizeof b1),
                            halo_format_bytes(fixed + least, b2, sizeof b2));
        goto out;
    }

    /* a slot for every free tensor, or the measurement would be of nothing */
    if ((rc = eval_open(o, &e, err))) goto out;
    for (int64_t i = 0; i < n; i++) {
        halo_weight *ws[MAX_SLOTS];
        if (t[i].free && slots_of(e.model, t[i].src, ws) == 0) {
            rc = halo_error_set(err, HALO_ERR_UNSUPPORTED,
                                "%s is not used by halo's forward pass for this architecture, so "
                                "its effect cannot be measured (fix its type with --tensor-type)",
                                t[i].src->name);
            goto out;
        }
    }
    if (o->table) table_read(o, &e, g, ng);
    int todo = 0;
    for (int i = 0; i < ng; i++)
        for (int j = 0; j < o->n_types; j++) todo += g[i].bytes[j] && isnan(g[i].kld[j]);
    double t0 = halo_time_seconds();
    if (todo) {
        fprintf(stderr, "measure: %d groups x %d types (%d passes) over %lld windows of %d "
                        "tokens of %s\n",
                ng, o->n_types, todo, (long long)e.n_chunks, e.n_ctx, o->calib);
        if ((rc = eval_pass(&e, true, NULL, err))) goto out;
    }
    int done = 0;
    for (int i = 0; i < ng && todo; i++) {
        char line[512];
        size_t ll = 0;
        bool any = false;
        for (int j = 0; j < o->n_types && !rc; j++) {
            if (!g[i].bytes[j]) continue;
            if (isnan(g[i].kld[j])) {
                rc = measure(o, &e, t, n, i, o->types[j], &g[i].kld[j], err);
                done++;
                any = true;
            }
            if (ll < sizeof line - 32)
                ll += (size_t)snprintf(line + ll, sizeof line - ll, " %s %.2e",
                                       halo_type_name(o->types[j]), g[i].kld[j]);
        }
        if (rc) goto out;
        if (!any) continue;
        double el = halo_time_seconds() - t0, eta = el / done * (todo - done);
        fprintf(stderr, "measure: [%d/%d] %-20s%s  (%.0f s, ETA %.0f s)\n", i + 1, ng,
                g[i].label, line, el, eta);
    }
    if (o->table && todo) table_write(o, &e, g, ng);

    for (int i = 0; i < ng; i++) make_monotone(o, &g[i], g[i].cost);
    if (!knapsack(o, g, ng, o->budget - fixed)) {
        rc = halo_error_set(err, HALO_ERR_ARG, "no mix of the candidate types fits the budget");
        goto out;
    }
    print_map(o, g, ng, fixed, fixed_params);
    res->bytes = fixed;
    for (int i = 0; i < ng; i++) {
        res->bytes += g[i].bytes[g[i].choice];
        res->kld += g[i].cost[g[i].choice];
    }
    for (int64_t i = 0; i < n; i++) {
        if (!t[i].free) continue;
        t[i].type = o->types[g[t[i].group].choice];
        const int64_t rows = t[i].src->ne[1] * t[i].src->ne[2] * t[i].src->ne[3];
        t[i].bytes = halo_type_row_size(t[i].type, t[i].src->ne[0]) * (uint64_t)rows;
    }
out:
    eval_close(&e);
    free(g);
    return rc;
}
