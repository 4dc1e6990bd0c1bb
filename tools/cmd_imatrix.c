/*
 * `halo imatrix`: an importance matrix of a model over a calibration text, by
 * llama-imatrix's protocol, written in its GGUF format (quant/imatrix.h) so that
 * the files go both ways:
 *   - the text is tokenized once (BOS if the model adds one, special tokens not
 *     parsed) and cut into consecutive chunks of -c tokens (the tail that does not
 *     fill one is dropped), each evaluated from an empty cache, its first token
 *     replaced by BOS when the model adds BOS;
 *   - every matrix product the forward pass computes is seen through the CPU
 *     backend's product observer (runtime/backend.h): for weight W, per input
 *     channel, the sum of the squares of the activations that multiplied it, and
 *     the number of activation rows; for 3-D expert weights each expert's own sums
 *     and rows (only the tokens routed to it);
 *   - as llama-imatrix, only the layers' weights ("blk.*") are recorded, and the
 *     output head only with --process-output (the token embedding, a lookup, never;
 *     a tied output head is the embedding tensor, so it is not recorded either).
 * No logits are computed (the statistics need none) but with --process-output: then
 * every token's, so that the output head sees every row.
 */
#include "model/arch.h"
#include "quant/imatrix.h"
#include "runtime/backend.h"
#include "tokenizer/tokenizer.h"
#include "tools.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo imatrix [-m MODEL] -f CALIB.txt [-o IMATRIX.gguf] [options]\n"
            "\n"
            "Importance matrix of a model over a calibration text, by llama-imatrix's protocol\n"
            "(chunks of -c tokens, each from an empty cache): per matrix and input channel, the\n"
            "sum of squared activations and the rows seen (per expert for MoE expert tensors),\n"
            "written in llama-imatrix's GGUF format (for halo's and llama.cpp's quantizers).\n"
            "\n"
            "  -m, --model FILE          GGUF model (default: %s)\n"
            "  -f, --file FILE           the calibration text\n"
            "  -o, --output FILE         the imatrix to write (default imatrix.gguf)\n"
            "  -c, --ctx-size N          chunk size in tokens (default 512)\n"
            "      --chunks N            evaluate only the first N chunks (default: all)\n"
            "  -b, --batch-size N        tokens per decode call (default 2048, at most -c)\n"
            "  -ub, --ubatch-size N      tokens per forward pass (default 512)\n"
            "  -t, --threads N           threads (default: the number of cores)\n"
            "      --process-output      also record the output head (output.weight)\n"
            "      --no-mmap             read the weights into memory instead of mapping them\n"
            "      --mlock               lock the weights in RAM\n"
            "  -h, --help                this help\n"
            "\n"
            "It runs on the CPU (the statistics are gathered by the CPU backend).\n",
            tools_default_model());
}

typedef struct im_args {
    const char *model, *file, *out;
    int64_t n_ctx, n_batch, n_ubatch, n_chunks, threads;
    bool process_output;
    halo_load_options load;
} im_args;

static int parse_args(int argc, char **argv, im_args *a) {
    memset(a, 0, sizeof *a);
    a->n_ctx = 512, a->n_batch = 2048, a->n_ubatch = 512, a->n_chunks = -1;
    a->out = "imatrix.gguf";
    for (int i = 1; i < argc;) {
        const char *arg = argv[i], *v;
        if (tools_is_help(arg)) {
            usage(stdout);
            return 0;
        }
        if (tools_parse_load_flag(argc, argv, &i, &a->load)) continue;
        if (!strcmp(arg, "--process-output")) {
            a->process_output = true;
            i++;
            continue;
        }
        if (!(v = tools_flag_value(argc, argv, &i))) return 2;
        bool ok = true;
        if (!strcmp(arg, "-m") || !strcmp(arg, "--model")) a->model = v;
        else if (!strcmp(arg, "-f") || !strcmp(arg, "--file")) a->file = v;
        else if (!strcmp(arg, "-o") || !strcmp(arg, "--output") || !strcmp(arg, "--output-file"))
            a->out = v;
        else if (!strcmp(arg, "-c") || !strcmp(arg, "--ctx-size"))
            ok = tools_parse_int(arg, v, 8, 1 << 20, &a->n_ctx);
        else if (!strcmp(arg, "-b") || !strcmp(arg, "--batch-size"))
            ok = tools_parse_int(arg, v, 1, 1 << 20, &a->n_batch);
        else if (!strcmp(arg, "-ub") || !strcmp(arg, "--ubatch-size"))
            ok = tools_parse_int(arg, v, 1, 1 << 20, &a->n_ubatch);
        else if (!strcmp(arg, "--chunks") || !strcmp(arg, "--chunk"))
            ok = tools_parse_int(arg, v, -1, INT32_MAX, &a->n_chunks);
        else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads"))
            ok = tools_parse_int(arg, v, 0, 1024, &a->threads);
        else {
            fprintf(stderr, "error: unknown option '%s' (halo imatrix --help lists them)\n", arg);
            return 2;
        }
        if (!ok) return 2;
    }
    if (!a->file) {
        fprintf(stderr, "error: no calibration text: give -f FILE\n");
        return 2;
    }
    if (!*a->out) {
        fprintf(stderr, "error: -o: empty output path\n");
        return 2;
    }
    if (a->n_chunks == 0) {
        fprintf(stderr, "error: --chunks: 0 chunks is nothing to evaluate\n");
        return 2;
    }
    if (a->load.n_gpu_layers != 0) {
        fprintf(stderr, "error: halo imatrix runs on the CPU only (drop -ngl)\n");
        return 2;
    }
    if (!a->model) a->model = tools_default_model();
    return -1;
}

/* ---- the statistics: one per tensor of the file that a product reads ------------- */

typedef struct im_stat {
    const halo_gguf_tensor *t;
    int64_t n_cols, n_mats;
    bool record; /* a tensor llama-imatrix records ("blk.*", output.weight on request) */
    double *sum2;  /* [n_mats][n_cols]; NULL until first seen */
    double *count; /* [n_mats] */
} im_stat;

typedef struct im_state {
    im_stat *stats; /* sorted by t->data */
    int64_t n;
    bool failed; /* out of memory, or a product that matches no tensor */
    const char *why;
} im_state;

static int cmp_stat(const void *a, const void *b) {
    const char *x = ((const im_stat *)a)->t->data, *y = ((const im_stat *)b)->t->data;
    return x < y ? -1 : x > y;
}

static bool state_init(im_state *s, const halo_model *m, bool process_output) {
    const int64_t nt = halo_gguf_n_tensors(m->gguf);
    s->stats = calloc((size_t)(nt > 0 ? nt : 1), sizeof *s->stats);
    if (!s->stats) return false;
    for (int64_t i = 0; i < nt; i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(m->gguf, i);
        if (!t->data || t->n_dims < 2) continue; /* vectors are never multiplied */
        im_stat *st = &s->stats[s->n++];
        st->t = t;
        st->n_cols = t->ne[0];
        st->n_mats = t->n_dims >= 3 ? t->ne[2] : 1;
        st->record = !strncmp(t->name, "blk.", 4) ||
                     (process_output && !strcmp(t->name, "output.weight"));
    }
    qsort(s->stats, (size_t)s->n, sizeof *s->stats, cmp_stat);
    return true;
}

static void state_free(im_state *s) {
    for (int64_t i = 0; i < s->n; i++) {
        free(s->stats[i].sum2);
        free(s->stats[i].count);
    }
    free(s->stats);
}

static im_stat *state_find(im_state *s, const void *data) {
    int64_t lo = 0, hi = s->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const char *d = s->stats[mid].t->data;
        if (d == (const char *)data) return &s->stats[mid];
        if (d < (const char *)data) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static void observe(void *user, const struct halo_weight *w, int64_t expert, const float *x,
                    int64_t n_rows) {
    im_state *s = user;
    if (s->failed || n_rows <= 0) return;
    im_stat *st = state_find(s, w->data);
    if (!st) {
        s->failed = true, s->why = "a product's weight is not a tensor of the file";
        return;
    }
    if (!st->record) return;
    if (w->n_cols != st->n_cols || expert < 0 || expert >= st->n_mats) {
        s->failed = true, s->why = "a product's shape differs from its tensor's";
        return;
    }
    const size_t nc = (size_t)st->n_cols;
    if (!st->sum2) { /* n_cols x n_mats doubles: the tensor itself is at least that big */
        st->sum2 = calloc(nc * (size_t)st->n_mats, sizeof *st->sum2);
        st->count = calloc((size_t)st->n_mats, sizeof *st->count);
        if (!st->sum2 || !st->count) {
            s->failed = true, s->why = "out of memory";
            return;
        }
    }
    double *sum = st->sum2 + (size_t)expert * nc;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *row = x + (size_t)r * nc;
        for (size_t i = 0; i < nc; i++) sum[i] += (double)row[i] * (double)row[i];
    }
    st->count[expert] += (double)n_rows;
}

static bool save(const im_state *s, const im_args *a, int64_t n_chunk, halo_error *err) {
    int64_t n = 0;
    for (int64_t i = 0; i < s->n; i++) n += s->stats[i].sum2 != NULL;
    halo_imatrix_entry *e = calloc((size_t)(n > 0 ? n : 1), sizeof *e);
    float **bufs = calloc((size_t)(n > 0 ? n : 1), sizeof *bufs);
    bool ok = e && bufs;
    int64_t k = 0;
    for (int64_t i = 0; ok && i < s->n; i++) {
        const im_stat *st = &s->stats[i];
        if (!st->sum2) continue;
        const size_t nv = (size_t)st->n_cols * (size_t)st->n_mats;
        float *b = bufs[k] = malloc((nv + (size_t)st->n_mats) * sizeof *b);
        if (!b) {
            ok = false;
            break;
        }
        for (size_t j = 0; j < nv; j++) b[j] = (float)st->sum2[j];
        for (int64_t m = 0; m < st->n_mats; m++) b[nv + (size_t)m] = (float)st->count[m];
        e[k] = (halo_imatrix_entry){st->t->name, st->n_cols, st->n_mats, st->t->n_dims >= 3, b,
                                    b + nv};
        k++;
    }
    int rc = 0;
    if (!ok) rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    else {
        const char *ds[1] = {a->file};
        rc = halo_imatrix_write(a->out, e, (size_t)k, ds, 1, (uint32_t)n_chunk,
                                (uint32_t)a->n_ctx, err);
    }
    for (int64_t i = 0; bufs && i < k; i++) free(bufs[i]);
    free(bufs);
    free(e);
    return rc == 0;
}

/* ---- the run ------------------------------------------------------------------------- */

int cmd_imatrix(int argc, char **argv) {
    im_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    rc = 1;

    halo_model *model = NULL;
    halo_context *ctx = NULL;
    int32_t *tokens = NULL, *btok = NULL, *bpos = NULL, *bseq = NULL;
    int8_t *blog = NULL;
    char *text = NULL;
    im_state st = {0};
    halo_error err = {0};
    double load_s = 0;
    size_t len;
    if (!(text = tools_read_file(a.file, &len))) goto out;
    if (!tools_load_model(a.model, &a.load, &model, &load_s)) goto out;
    const halo_tokenizer *tok = halo_model_tokenizer(model);
    const bool add_bos = halo_tok_add_bos(tok);
    const int32_t bos = halo_tok_bos(tok);
    if (add_bos && bos < 0) {
        fprintf(stderr, "error: %s: the model adds BOS but has no BOS token\n", a.model);
        goto out;
    }
    fprintf(stderr, "imatrix: tokenizing the input ..\n");
    double t0 = halo_time_seconds();
    size_t n_tokens = 0;
    if (halo_tok_encode(tok, text, len, HALO_TOK_ADD_SPECIAL, &tokens, &n_tokens, &err)) {
        fprintf(stderr, "error: %s: %s\n", a.file, err.msg);
        goto out;
    }
    fprintf(stderr, "imatrix: tokenization took %.3f ms\n", (halo_time_seconds() - t0) * 1e3);
    if (n_tokens < 2 * (size_t)a.n_ctx) {
        fprintf(stderr,
                "error: you need at least %lld tokens for a context of %lld tokens (the text "
                "has %zu)\n",
                2 * (long long)a.n_ctx, (long long)a.n_ctx, n_tokens);
        goto out;
    }
    const int64_t max_chunk = (int64_t)(n_tokens / (size_t)a.n_ctx);
    const int64_t n_chunk = a.n_chunks < 0 || a.n_chunks > max_chunk ? max_chunk : a.n_chunks;

    const int32_t n_ctx = (int32_t)a.n_ctx;
    const int32_t n_batch = (int32_t)(a.n_batch < a.n_ctx ? a.n_batch : a.n_ctx);
    halo_context_params cp;
    halo_context_default_params(&cp);
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_seq_max = 1;
    cp.n_batch = (uint32_t)n_batch;
    cp.n_ubatch = (uint32_t)(a.n_ubatch < n_batch ? a.n_ubatch : n_batch);
    cp.n_threads = (int)a.threads;
    if (halo_context_new(model, &cp, &ctx, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }
    if (ctx->be.ops != &halo_backend_cpu_ops) {
        fprintf(stderr, "error: halo imatrix needs the CPU backend\n");
        goto out;
    }
    if (!state_init(&st, model, a.process_output)) goto nomem;
    halo_context_set_mm_observer(ctx, observe, &st);

    btok = malloc((size_t)n_batch * sizeof *btok);
    bpos = malloc((size_t)n_batch * sizeof *bpos);
    bseq = calloc((size_t)n_batch, sizeof *bseq);
    blog = calloc((size_t)n_batch, 1);
    if (!btok || !bpos || !bseq || !blog) goto nomem;
    /* no logits, except for the output head's statistics (every token's, as llama-imatrix) */
    if (a.process_output) memset(blog, 1, (size_t)n_batch);

    fprintf(stderr, "imatrix: computing over %lld chunks, n_ctx=%d, batch_size=%d, n_seq=1\n",
            (long long)n_chunk, n_ctx, n_batch);
    const double t_start = halo_time_seconds();
    for (int64_t c = 0; c < n_chunk; c++) {
        const int32_t *ct = tokens + (size_t)c * (size_t)n_ctx;
        halo_seq_clear(ctx, 0);
        for (int32_t b0 = 0; b0 < n_ctx; b0 += n_batch) {
            const int32_t nb = n_ctx - b0 < n_batch ? n_ctx - b0 : n_batch;
            for (int32_t k = 0; k < nb; k++) {
                btok[k] = ct[b0 + k];
                bpos[k] = b0 + k;
            }
            if (add_bos && b0 == 0) btok[0] = bos;
            halo_batch batch = {nb, btok, bpos, bseq, blog};
            if (halo_decode(ctx, &batch, &err)) {
                fprintf(stderr, "error: chunk %lld: %s\n", (long long)c + 1, err.msg);
                goto out;
            }
            if (st.failed) {
                fprintf(stderr, "error: chunk %lld: %s\n", (long long)c + 1, st.why);
                goto out;
            }
        }
        const double el = halo_time_seconds() - t_start;
        const double tps = el > 0 ? (double)(c + 1) * n_ctx / el : 0.0;
        const double eta = el / (double)(c + 1) * (double)(n_chunk - c - 1);
        fprintf(stderr, "imatrix: chunk %lld/%lld, %.1f tokens/s, ETA %dm%02ds\n",
                (long long)c + 1, (long long)n_chunk, tps, (int)(eta / 60),
                (int)(eta - 60 * (int)(eta / 60)));
    }
    if (!save(&st, &a, n_chunk, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }
    int64_t n_rec = 0;
    for (int64_t i = 0; i < st.n; i++) n_rec += st.stats[i].sum2 != NULL;
    const double el = halo_time_seconds() - t_start;
    fprintf(stderr,
            "imatrix: wrote %s: %lld matrices, %lld chunks of %d tokens; load %.2f s, "
            "evaluation %.2f s (%.1f tokens/s)\n",
            a.out, (long long)n_rec, (long long)n_chunk, n_ctx, load_s, el,
            el > 0 ? (double)n_chunk * n_ctx / el : 0.0);
    rc = 0;
    goto out;
nomem:
    fprintf(stderr, "error: out of memory\n");
out:
    if (ctx) halo_context_set_mm_observer(ctx, NULL, NULL);
    state_free(&st);
    free(btok);
    free(bpos);
    free(bseq);
    free(blog);
    free(tokens);
    free(text);
    halo_context_free(ctx);
    halo_model_free(model);
    return rc;
}
