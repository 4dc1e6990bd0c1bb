/*
 * Salient-weight protection (AWQ): `halo quantize --awq`.
 *
 * A matrix W (out x in) that reads x through an RMS norm with weights g computes
 * W (g * n(x)) = (W diag(s)) ((g / s) * n(x)) for any positive s: multiplying input channel j
 * of every matrix that reads the norm by s_j and dividing g_j by s_j leaves the model as it
 * was in real arithmetic. Quantized, it does not: in a block format the weights of a block
 * share one scale, so a channel multiplied by s_j > 1 is rounded finer relative to its
 * weights, at the cost of its block's other channels. With s_j = rms(x_j)^alpha the channels
 * that meet large activations (the salient weights) are rounded finer; alpha = 0 is the plain
 * quantizer.
 *
 * Where the scales are folded (only where the fold is exact):
 *   - the norm before a layer's token mixer (attn_norm): attn_q, attn_k, attn_v, or a
 *     DeltaNet layer's attn_qkv, attn_gate, ssm_alpha, ssm_beta;
 *   - the norm before the FFN (ffn_norm; post_attention_norm in the Qwen3.5 hybrids): ffn_gate
 *     and ffn_up, or the router, every routed expert's gate and up, the shared expert's gate,
 *     up and sigmoid gate (ffn_gate_inp_shexp);
 *   - output_norm before an untied output.weight (not with tied embeddings: token_embd is
 *     also the embedding, which the norm does not precede);
 *   - the down projections (ffn_down, each expert's ffn_down_exps, ffn_down_shexp): their input
 *     is silu(gate x) * (up x), linear in up's rows, so up's row j is divided by s_j.
 * Not folded: attn_output (its input is softmax-weighted sums of v, per head: v's rows could
 * take 1/s, but the scales would have to agree across the query heads of a KV group and the
 * KV cache would store the scaled values) and ssm_out (its input is a gated RMS norm of the
 * DeltaNet output whose weights are shared by all value heads: the scales would have to be
 * equal across heads). Both are left as they are.
 *
 * The search (alpha on 0, 0.1, .., 1 per group): the group's matrices are encoded in their
 * output types with the scales, decoded and unscaled, and their error is weighted by each
 * input channel's summed square activation from the importance matrix (llama-imatrix's
 * in_sum2): sum_ij sum2_j (W_ij - Q(W diag(s))_ij / s_j)^2, the expected squared output error
 * with the channels taken as uncorrelated (the diagonal of E[x x^T], all an importance matrix
 * holds). The experts' sums count only the tokens routed to each, so every matrix weighs by
 * how often it runs. A group is one norm's readers (one s), or one layer's down projections
 * (one alpha, each expert its own s from its own statistics). At most AWQ_SAMPLE_ROWS rows per
 * matrix (per expert) are encoded for the search, evenly spread; the output encodes them all.
 * The importance each encoder gets is the imatrix's divided by s_j^2 (the activation it meets
 * is x_j / s_j). The scaled norms, routers and other copied tensors are written as F32.
 */
#include "tools/quant_awq.h"

#include "quant/quant.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AWQ_SAMPLE_ROWS 128
#define AWQ_GRID 10 /* alpha = k / AWQ_GRID, k = 0 .. AWQ_GRID */
#define AWQ_MAX_MEMBERS 12

struct quant_awq {
    int64_t n;
    quant_scales *sc;   /* [n] */
    float **col, **row; /* [n] owned arrays behind sc (NULL: ones) */
};

typedef struct awq_member {
    int64_t t;   /* tensor index */
    int64_t mat; /* its matrix (expert), -1: all of them */
} awq_member;

/* Readers of one activation vector sharing one s. */
typedef struct awq_set {
    awq_member m[AWQ_MAX_MEMBERS];
    int n_m;
    int64_t fold;     /* the norm (its values divided by s) or the up tensor (rows divided) */
    int64_t fold_mat; /* the up tensor's matrix; -1: a norm */
    float *rms;       /* [n] rms of each input channel, NULL: no statistics (left as it is) */
    float *s, *best;  /* [n] the scales tried, the best so far */
} awq_set;

typedef struct awq_group {
    char label[64];
    awq_set *sets;
    int n_sets;
    int64_t n; /* input channels */
} awq_group;

/* One row of one matrix encoded in the search. */
typedef struct awq_item {
    int set;
    int64_t t, mat, row; /* row within the matrix */
    int type;
    double factor;     /* rows of the matrix / rows sampled */
    const float *sum2; /* [n] the error's weights */
    const float *mean; /* [n] the encoder's importances (before / s^2) */
} awq_item;

typedef struct awq_job {
    const halo_gguf *g;
    const awq_group *grp;
    const awq_item *items;
    int64_t n_items;
    float *scratch; /* [nth][5 n] */
    double *acc;    /* [nth] */
    int rc;
    halo_error err;
} awq_job;

/* ---- the tensors ----------------------------------------------------------------------------- */

static int64_t find(const halo_gguf *g, const char *name) {
    const int64_t n = halo_gguf_n_tensors(g);
    for (int64_t i = 0; i < n; i++)
        if (!strcmp(halo_gguf_tensor_at(g, i)->name, name)) return i;
    return -1;
}

static int64_t n_mats(const halo_gguf_tensor *t) {
    return t->ne[2] * t->ne[3];
}

static int64_t find_layer(const halo_gguf *g, uint32_t il, const char *role) {
    char name[96];
    snprintf(name, sizeof name, "blk.%u.%s.weight", il, role);
    return find(g, name);
}

/* A tensor [n, rows, mats] that halo can decode, reading n channels. */
static bool reads(const halo_gguf *g, int64_t t, int64_t n) {
    if (t < 0) return false;
    const halo_gguf_tensor *x = halo_gguf_tensor_at(g, t);
    return x->ne[0] == n && halo_type_get(x->type)->to_float;
}

static float *ones(int64_t n) {
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    for (int64_t i = 0; v && i < n; i++)
        v[i] = 1.0f;
    return v;
}

/* ---- statistics ------------------------------------------------------------------------------ */

/* The rms of each input channel over the set's readers (summed squares over counts), or
 * NULL where the importance matrix has nothing for them. */
static float *set_rms(const halo_gguf *g, const halo_imatrix *im, const awq_set *s, int64_t n) {
    double *sum = calloc((size_t)n, sizeof *sum);
    double cnt = 0.0;
    for (int k = 0; sum && k < s->n_m; k++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, s->m[k].t);
        const int64_t m0 = s->m[k].mat < 0 ? 0 : s->m[k].mat;
        const int64_t m1 = s->m[k].mat < 0 ? n_mats(t) : s->m[k].mat + 1;
        for (int64_t m = m0; m < m1; m++) {
            const float *s2;
            float c;
            if (!halo_imatrix_get(im, t->name, m, n) || !halo_imatrix_raw(im, t->name, m, &s2, &c))
                continue;
            for (int64_t j = 0; j < n; j++)
                sum[j] += s2[j];
            cnt += c;
        }
    }
    float *rms = NULL;
    if (sum && cnt > 0 && (rms = malloc((size_t)n * sizeof *rms))) {
        double lo = INFINITY;
        for (int64_t j = 0; j < n; j++) {
            rms[j] = (float)sqrt(sum[j] / cnt);
            if (rms[j] > 0 && rms[j] < lo) lo = rms[j];
        }
        if (!isfinite(lo)) { /* all zero: nothing to go by */
            free(rms);
            rms = NULL;
        } else {
            for (int64_t j = 0; j < n; j++)
                if (!(rms[j] > 0)) rms[j] = (float)lo; /* a dead channel: the smallest scale */
        }
    }
    free(sum);
    return rms;
}

/* s_j = rms_j^alpha, normalised so that max * min = 1. */
static void make_scales(const float *rms, int64_t n, double alpha, float *s) {
    double lo = INFINITY, hi = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double v = pow((double)rms[j], alpha);
        s[j] = (float)v;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    const double norm = 1.0 / sqrt(lo * hi);
    for (int64_t j = 0; j < n; j++)
        s[j] = (float)(s[j] * norm);
}

/* ---- the search ------------------------------------------------------------------------------ */

static void awq_task(void *arg, int ith, int nth) {
    awq_job *j = arg;
    const int64_t n = j->grp->n;
    float *f = j->scratch + (size_t)ith * 5 * (size_t)n, *x = f + n, *imp = x + n, *dq = imp + n;
    char *blk = (char *)(dq + n); /* n more floats: any type's row fits */
    double acc = 0.0;
    halo_error e = {0};
    for (int64_t i = ith; i < j->n_items && !j->rc; i += nth) {
        const awq_item *it = &j->items[i];
        const halo_gguf_tensor *t = halo_gguf_tensor_at(j->g, it->t);
        const float *s = j->grp->sets[it->set].s;
        const size_t in_row = halo_type_row_size(t->type, n);
        const int64_t row = it->mat * t->ne[1] + it->row;
        if (halo_quant_decode(t->type, (const char *)t->data + (size_t)row * in_row, f, n, &e))
            goto fail;
        for (int64_t c = 0; c < n; c++) {
            x[c] = f[c] * s[c];
            imp[c] = it->mean[c] / (s[c] * s[c]);
        }
        if (halo_quant_encode(it->type, x, blk, n, imp, &e) ||
            halo_quant_decode(it->type, blk, dq, n, &e))
            goto fail;
        double r = 0.0;
        for (int64_t c = 0; c < n; c++) {
            const double d = (double)f[c] - (double)dq[c] / s[c];
            r += (double)it->sum2[c] * d * d;
        }
        acc += r * it->factor;
    }
    j->acc[ith] = acc;
    return;
fail:
    if (!j->rc) { /* first failure wins; a race here only loses a duplicate */
        j->rc = e.status ? e.status : HALO_ERR_FORMAT;
        j->err = e;
    }
}

static double group_error(awq_job *j, halo_threadpool *pool) {
    const int nth = halo_threadpool_n_threads(pool);
    for (int k = 0; k < nth; k++)
        j->acc[k] = 0.0;
    halo_threadpool_run(pool, awq_task, j);
    double e = 0.0;
    for (int k = 0; k < nth; k++)
        e += j->acc[k];
    return e;
}

/* The items of a group: sampled rows of its quantized readers with statistics. */
static int64_t group_items(const halo_gguf *g, const halo_imatrix *im, const int *types,
                           const awq_group *grp, awq_item *items) {
    int64_t k = 0;
    for (int si = 0; si < grp->n_sets; si++) {
        const awq_set *s = &grp->sets[si];
        if (!s->rms) continue;
        for (int mi = 0; mi < s->n_m; mi++) {
            const int64_t ti = s->m[mi].t;
            const halo_gguf_tensor *t = halo_gguf_tensor_at(g, ti);
            if (types[ti] < 0 || !halo_type_get(types[ti])->is_quantized) continue;
            const int64_t m0 = s->m[mi].mat < 0 ? 0 : s->m[mi].mat;
            const int64_t m1 = s->m[mi].mat < 0 ? n_mats(t) : s->m[mi].mat + 1;
            for (int64_t m = m0; m < m1; m++) {
                const float *mean = halo_imatrix_get(im, t->name, m, grp->n), *sum2;
                float c;
                if (!mean || !halo_imatrix_raw(im, t->name, m, &sum2, &c)) continue;
                const int64_t rows = t->ne[1];
                const int64_t ns = rows < AWQ_SAMPLE_ROWS ? rows : AWQ_SAMPLE_ROWS;
                for (int64_t r = 0; r < ns; r++) {
                    if (items)
                        items[k] = (awq_item){.set = si,
                                              .t = ti,
                                              .mat = m,
                                              .row = r * rows / ns,
                                              .type = types[ti],
                                              .factor = (double)rows / (double)ns,
                                              .sum2 = sum2,
                                              .mean = mean};
                    k++;
                }
            }
        }
    }
    return k;
}

/* Choose the group's alpha (or take the fixed one) and apply its scales to a. */
static int search_group(quant_awq *a, const halo_gguf *g, const halo_imatrix *im, const int *types,
                        double alpha_fixed, halo_threadpool *pool, awq_group *grp, double *tot0,
                        double *tot1, halo_error *err) {
    const int64_t n = grp->n;
    const int nth = halo_threadpool_n_threads(pool);
    int n_live = 0;
    for (int si = 0; si < grp->n_sets; si++) {
        awq_set *s = &grp->sets[si];
        s->rms = set_rms(g, im, s, n);
        s->s = malloc((size_t)n * sizeof *s->s);
        s->best = malloc((size_t)n * sizeof *s->best);
        if (!s->s || !s->best) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        n_live += s->rms != NULL;
    }
    if (!n_live) {
        fprintf(stderr, "awq: %-28s no statistics in the importance matrix: left as it is\n",
                grp->label);
        return 0;
    }
    const int64_t n_items = group_items(g, im, types, grp, NULL);
    awq_job j = {.g = g, .grp = grp, .n_items = n_items};
    j.items = malloc((size_t)(n_items ? n_items : 1) * sizeof *j.items);
    j.scratch = malloc((size_t)nth * 5 * (size_t)n * sizeof(float));
    j.acc = malloc((size_t)nth * sizeof *j.acc);
    int rc = 0;
    if (!j.items || !j.scratch || !j.acc) {
        rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        goto done;
    }
    group_items(g, im, types, grp, (awq_item *)j.items);
    /* the grid, or 0 (the error to compare with) and the fixed alpha */
    double grid[AWQ_GRID + 1];
    int n_grid = 0;
    if (alpha_fixed >= 0)
        grid[n_grid++] = 0.0, grid[n_grid++] = alpha_fixed;
    else
        for (int k = 0; k <= AWQ_GRID; k++)
            grid[n_grid++] = (double)k / AWQ_GRID;
    double e0 = 0.0, best_e = INFINITY, best_alpha = 0.0;
    for (int k = 0; k < n_grid; k++) {
        for (int si = 0; si < grp->n_sets; si++)
            if (grp->sets[si].rms) make_scales(grp->sets[si].rms, n, grid[k], grp->sets[si].s);
        const double e = n_items ? group_error(&j, pool) : 0.0;
        if (j.rc) {
            *err = j.err;
            rc = halo_error_set(err, j.rc, "awq: %s: encoding failed: %s", grp->label, j.err.msg);
            goto done;
        }
        if (k == 0) e0 = e;
        /* alpha 0 unless another is strictly better; a fixed alpha as it is */
        if (k == 0 || (alpha_fixed >= 0) || e < best_e) {
            best_e = e, best_alpha = grid[k];
            for (int si = 0; si < grp->n_sets; si++)
                if (grp->sets[si].rms)
                    memcpy(grp->sets[si].best, grp->sets[si].s, (size_t)n * sizeof(float));
        }
    }
    *tot0 += e0;
    *tot1 += best_e;
    char red[32] = "no quantized readers";
    if (e0 > 0) snprintf(red, sizeof red, "%+.1f %%", 100.0 * (best_e / e0 - 1.0));
    fprintf(stderr, "awq: %-28s alpha %.2f  weighted error %s\n", grp->label, best_alpha, red);
    if (best_alpha == 0.0) goto done; /* s = 1 */

    /* apply: readers' columns times s, the norm / up rows divided by s */
    for (int si = 0; si < grp->n_sets; si++) {
        const awq_set *s = &grp->sets[si];
        if (!s->rms) continue;
        for (int mi = 0; mi < s->n_m; mi++) {
            const int64_t ti = s->m[mi].t;
            const halo_gguf_tensor *t = halo_gguf_tensor_at(g, ti);
            if (!a->col[ti] && !(a->col[ti] = ones(n * n_mats(t)))) goto nomem;
            const int64_t m0 = s->m[mi].mat < 0 ? 0 : s->m[mi].mat;
            const int64_t m1 = s->m[mi].mat < 0 ? n_mats(t) : s->m[mi].mat + 1;
            for (int64_t m = m0; m < m1; m++)
                for (int64_t c = 0; c < n; c++)
                    a->col[ti][m * n + c] *= s->best[c];
        }
        const int64_t f = s->fold;
        const halo_gguf_tensor *ft = halo_gguf_tensor_at(g, f);
        if (s->fold_mat < 0) {
            if (!a->col[f] && !(a->col[f] = ones(n))) goto nomem;
            for (int64_t c = 0; c < n; c++)
                a->col[f][c] /= s->best[c];
        } else {
            if (!a->row[f] && !(a->row[f] = ones(ft->ne[1] * n_mats(ft)))) goto nomem;
            for (int64_t r = 0; r < n; r++)
                a->row[f][s->fold_mat * ft->ne[1] + r] /= s->best[r];
        }
    }
    goto done;
nomem:
    rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
done:
    free((void *)j.items);
    free(j.scratch);
    free(j.acc);
    return rc;
}

/* ---- the groups ------------------------------------------------------------------------------ */

static void free_group(awq_group *grp) {
    for (int si = 0; grp->sets && si < grp->n_sets; si++) {
        free(grp->sets[si].rms);
        free(grp->sets[si].s);
        free(grp->sets[si].best);
    }
    free(grp->sets);
    memset(grp, 0, sizeof *grp);
}

/* A norm and the matrices that read it (those present). */
static int run_norm_group(quant_awq *a, const halo_gguf *g, const halo_imatrix *im,
                          const int *types, double alpha, halo_threadpool *pool, int64_t norm,
                          const int64_t *readers, int n_readers, double *e0, double *e1,
                          halo_error *err) {
    if (norm < 0) return 0;
    const halo_gguf_tensor *nt = halo_gguf_tensor_at(g, norm);
    if (nt->n_dims != 1 || !halo_type_get(nt->type)->to_float) return 0;
    awq_group grp = {.n = nt->ne[0], .n_sets = 1};
    snprintf(grp.label, sizeof grp.label, "%.*s", (int)(strlen(nt->name) - 7), nt->name);
    if (!(grp.sets = calloc(1, sizeof *grp.sets)))
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    awq_set *s = &grp.sets[0];
    s->fold = norm, s->fold_mat = -1;
    /* every reader scaled or none: one left out would see x / s */
    bool ok = true;
    for (int k = 0; k < n_readers && ok; k++) {
        if (readers[k] < 0) continue;
        ok = reads(g, readers[k], grp.n) && s->n_m < AWQ_MAX_MEMBERS;
        if (ok) s->m[s->n_m++] = (awq_member){readers[k], -1};
    }
    if (!ok)
        fprintf(stderr, "awq: %-28s a reader of another shape or type: left as it is\n", grp.label);
    int rc = ok && s->n_m ? search_group(a, g, im, types, alpha, pool, &grp, e0, e1, err) : 0;
    free_group(&grp);
    return rc;
}

/* A layer's down projection(s), folded into up's rows: one set per expert. */
static int run_down_group(quant_awq *a, const halo_gguf *g, const halo_imatrix *im,
                          const int *types, double alpha, halo_threadpool *pool, uint32_t il,
                          const char *down_role, const char *up_role, double *e0, double *e1,
                          halo_error *err) {
    const int64_t down = find_layer(g, il, down_role), up = find_layer(g, il, up_role);
    if (down < 0 || up < 0) return 0;
    const halo_gguf_tensor *dt = halo_gguf_tensor_at(g, down), *ut = halo_gguf_tensor_at(g, up);
    const int64_t nm = n_mats(dt);
    if (!reads(g, down, dt->ne[0]) || !reads(g, up, ut->ne[0]) || ut->ne[1] != dt->ne[0] ||
        n_mats(ut) != nm || nm > INT32_MAX)
        return 0;
    awq_group grp = {.n = dt->ne[0], .n_sets = (int)nm};
    snprintf(grp.label, sizeof grp.label, "blk.%u.%s", il, down_role);
    if (!(grp.sets = calloc((size_t)nm, sizeof *grp.sets)))
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    for (int64_t m = 0; m < nm; m++) {
        awq_set *s = &grp.sets[m];
        s->m[0] = (awq_member){down, m};
        s->n_m = 1;
        s->fold = up, s->fold_mat = m;
    }
    int rc = search_group(a, g, im, types, alpha, pool, &grp, e0, e1, err);
    free_group(&grp);
    return rc;
}

int quant_awq_plan(const halo_gguf *g, const halo_hparams *hp, const halo_imatrix *im,
                   const int *types, double alpha, halo_threadpool *pool, quant_awq **out,
                   halo_error *err) {
    *out = NULL;
    const char *ffn_norm;
    switch (hp->arch) {
    case HALO_ARCH_LLAMA:
    case HALO_ARCH_QWEN3:
    case HALO_ARCH_QWEN3MOE:
        ffn_norm = "ffn_norm";
        break;
    case HALO_ARCH_QWEN35:
    case HALO_ARCH_QWEN35MOE:
        ffn_norm = "post_attention_norm";
        break;
    default:
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "--awq: where the scales can be folded is known for llama, qwen3, "
                              "qwen3moe, qwen35 and qwen35moe, not for %s",
                              hp->arch_name);
    }
    if (!im) return halo_error_set(err, HALO_ERR_ARG, "--awq needs an importance matrix");
    quant_awq *a = calloc(1, sizeof *a);
    const int64_t n = halo_gguf_n_tensors(g);
    if (!a || !(a->sc = calloc((size_t)(n ? n : 1), sizeof *a->sc)) ||
        !(a->col = calloc((size_t)(n ? n : 1), sizeof *a->col)) ||
        !(a->row = calloc((size_t)(n ? n : 1), sizeof *a->row))) {
        quant_awq_free(a);
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    }
    a->n = n;
    static const char *mixer_in[] = {"attn_q",    "attn_k",    "attn_v",  "attn_qkv",
                                     "attn_gate", "ssm_alpha", "ssm_beta"};
    static const char *ffn_in[] = {
        "ffn_gate",       "ffn_up",       "ffn_gate_exps", "ffn_up_exps",
        "ffn_gate_shexp", "ffn_up_shexp", "ffn_gate_inp",  "ffn_gate_inp_shexp"};
    int64_t r[16];
    double e0 = 0.0, e1 = 0.0;
    bool nextn = false;
    int rc = 0;
    for (uint32_t il = 0; il < hp->n_layer && !rc; il++) {
        if (hp->layer_kind[il] == HALO_LAYER_NEXTN) { /* MTP heads: halo does not run them */
            nextn = true;
            continue;
        }
        int k = 0;
        for (size_t i = 0; i < sizeof mixer_in / sizeof *mixer_in; i++)
            r[k++] = find_layer(g, il, mixer_in[i]);
        rc = run_norm_group(a, g, im, types, alpha, pool, find_layer(g, il, "attn_norm"), r, k, &e0,
                            &e1, err);
        k = 0;
        for (size_t i = 0; i < sizeof ffn_in / sizeof *ffn_in; i++)
            r[k++] = find_layer(g, il, ffn_in[i]);
        if (!rc)
            rc = run_norm_group(a, g, im, types, alpha, pool, find_layer(g, il, ffn_norm), r, k,
                                &e0, &e1, err);
        if (!rc)
            rc = run_down_group(a, g, im, types, alpha, pool, il, "ffn_down", "ffn_up", &e0, &e1,
                                err);
        if (!rc)
            rc = run_down_group(a, g, im, types, alpha, pool, il, "ffn_down_exps", "ffn_up_exps",
                                &e0, &e1, err);
        if (!rc)
            rc = run_down_group(a, g, im, types, alpha, pool, il, "ffn_down_shexp", "ffn_up_shexp",
                                &e0, &e1, err);
    }
    r[0] = find(g, "output.weight");
    if (!rc && !nextn && r[0] >= 0)
        rc = run_norm_group(a, g, im, types, alpha, pool, find(g, "output_norm.weight"), r, 1, &e0,
                            &e1, err);
    if (rc) {
        quant_awq_free(a);
        return rc;
    }
    if (e0 > 0)
        fprintf(stderr, "awq: weighted error of the scaled groups %+.1f %% in all\n",
                100.0 * (e1 / e0 - 1.0));
    for (int64_t i = 0; i < n; i++)
        a->sc[i] = (quant_scales){a->col[i], a->row[i]};
    *out = a;
    return 0;
}

const quant_scales *quant_awq_scales(const quant_awq *a, int64_t i) {
    if (!a || i < 0 || i >= a->n || (!a->col[i] && !a->row[i])) return NULL;
    return &a->sc[i];
}

void quant_awq_free(quant_awq *a) {
    if (!a) return;
    for (int64_t i = 0; i < a->n; i++) {
        if (a->col) free(a->col[i]);
        if (a->row) free(a->row[i]);
    }
    free(a->col);
    free(a->row);
    free(a->sc);
    free(a);
}
