/*
 * `halo perplexity`: perplexity of a text under a model, by llama-perplexity's
 * protocol, so that the figures compare with that tool's:
 *   - the whole text is tokenized once, with BOS if the model adds one, special
 *     tokens not parsed;
 *   - it is cut into consecutive windows of c tokens (the tail that does not fill
 *     one is dropped), each evaluated from an empty cache, its first token
 *     replaced by BOS when the model adds BOS;
 *   - only the second half of each window is scored: the predictions made at
 *     positions c/2 .. c-2 of the tokens at c/2+1 .. c-1, so every scored token
 *     has at least c/2 tokens of context;
 *   - the running estimate is printed after each window as "[i]ppl,", then
 *     "Final estimate: PPL = X +/- Y", where Y = PPL * sqrt(var(nll) / (N - 1))
 *     over the N scored tokens (llama.cpp's formula).
 *
 * KL divergence: --kld-base FILE also saves, for every scored position, the
 * model's log-probabilities over the vocabulary; --kld FILE evaluates the same
 * windows and compares. The file format (little-endian, version 1):
 *   header, 40 bytes: magic "HALOKLD\0", then uint32 version (1), n_ctx, n_vocab,
 *     n_chunk, first (the first scored position, c/2), row_bytes (16 + 2 n_vocab),
 *     and two reserved zeros;
 *   int32 tokens[n_chunk * n_ctx]: the evaluated tokens (before BOS replacement);
 *   then, window after window, n_ctx - 1 - first rows of row_bytes:
 *     int32 top (the most likely token), float32 lp_next (the exact log-probability
 *     of the token that came next), float32 lo, float32 step, and uint16 q[n_vocab]:
 *     log p(v) = lo + q[v] * step, over [max - 40, max] (lower ones clamped: they
 *     weigh < e^-40). Reading checks magic, version, vocabulary, row size and the
 *     file's length.
 * The comparison renormalizes the stored distribution before computing
 * KL(base || this), so the quantization of the file (steps of 6e-4 nats) costs
 * ~1e-8 of KLD, and a model against itself gives 0 to that precision.
 */
#include "tokenizer/tokenizer.h"
#include "tools.h"
#include "util/util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KLD_MAGIC "HALOKLD"
#define KLD_VERSION 1u
#define KLD_RANGE 40.0f
#define KLD_HEADER_BYTES 40

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo perplexity [-m MODEL] -f TEXT [options]\n"
            "\n"
            "Perplexity of a text, by llama-perplexity's protocol (windows of -c tokens, each from\n"
            "an empty cache, the second half of each scored), and KL divergence against a base.\n"
            "\n"
            "  -m, --model FILE          GGUF model (default: %s)\n"
            "  -f, --file FILE           the text\n"
            "  -c, --ctx-size N          window size in tokens (default 512)\n"
            "  -b, --batch-size N        tokens per decode call (default 2048, at most -c)\n"
            "  -ub, --ubatch-size N      tokens per forward pass (default 512)\n"
            "      --chunks N            evaluate only the first N windows (default: all)\n"
            "  -t, --threads N           threads (default: the number of cores)\n"
            "  -ctk, --cache-type-k T    K cache type: %s (default f16)\n"
            "  -ctv, --cache-type-v T    V cache type (default f16)\n"
            "      --kld-base FILE       also save this model's log-probabilities to FILE\n"
            "      --kld FILE            compare with a file saved by --kld-base: KL divergence,\n"
            "                            PPL ratio and difference, same top token (-f optional:\n"
            "                            the file holds the tokens; if given, they must match)\n"
            "      --kl-divergence-base FILE, --kl-divergence   llama-perplexity's spelling:\n"
            "                            the first alone saves, both together compare\n"
            "      --no-mmap             read the weights into memory instead of mapping them\n"
            TOOLS_GPU_FLAGS_HELP
            "      --mlock               lock the weights in RAM\n"
            "  -h, --help                this help\n",
            tools_default_model(), halo_kv_type_names());
}

typedef struct ppl_args {
    const char *model, *file, *kld_save, *kld_read;
    int64_t n_ctx, n_batch, n_ubatch, n_chunks, threads;
    bool ctx_given;
    int type_k, type_v;
    halo_load_options load;
} ppl_args;

static int parse_args(int argc, char **argv, ppl_args *a) {
    memset(a, 0, sizeof *a);
    a->n_ctx = 512, a->n_batch = 2048, a->n_ubatch = 512, a->n_chunks = -1;
    a->type_k = a->type_v = -1;
    const char *kl_base = NULL;
    bool kl_flag = false;
    halo_plan_options plan;
    halo_plan_options_default(&plan);
    for (int i = 1; i < argc;) {
        const char *arg = argv[i], *v;
        if (tools_is_help(arg)) {
            usage(stdout);
            return 0;
        }
        if (tools_parse_load_flag(argc, argv, &i, &a->load)) continue;
        int c = tools_parse_compat_flag(argc, argv, &i);
        if (c < 0) return 2;
        if (c > 0) continue;
        if (!strcmp(arg, "-ctk") || !strcmp(arg, "--cache-type-k") || !strcmp(arg, "-ctv") ||
            !strcmp(arg, "--cache-type-v")) {
            if (tools_parse_plan_flag(argc, argv, &i, &plan, NULL) < 0) return 2;
            continue;
        }
        if (!strcmp(arg, "--kl-divergence")) {
            kl_flag = true;
            i++;
            continue;
        }
        if (!(v = tools_flag_value(argc, argv, &i))) return 2;
        bool ok = true;
        if (!strcmp(arg, "-m") || !strcmp(arg, "--model")) a->model = v;
        else if (!strcmp(arg, "-f") || !strcmp(arg, "--file")) a->file = v;
        else if (!strcmp(arg, "--kld-base")) a->kld_save = v;
        else if (!strcmp(arg, "--kld")) a->kld_read = v;
        else if (!strcmp(arg, "--kl-divergence-base")) kl_base = v;
        else if (!strcmp(arg, "-c") || !strcmp(arg, "--ctx-size")) {
            ok = tools_parse_int(arg, v, 8, 1 << 20, &a->n_ctx);
            a->ctx_given = true;
        } else if (!strcmp(arg, "-b") || !strcmp(arg, "--batch-size"))
            ok = tools_parse_int(arg, v, 1, 1 << 20, &a->n_batch);
        else if (!strcmp(arg, "-ub") || !strcmp(arg, "--ubatch-size"))
            ok = tools_parse_int(arg, v, 1, 1 << 20, &a->n_ubatch);
        else if (!strcmp(arg, "--chunks")) ok = tools_parse_int(arg, v, -1, INT32_MAX, &a->n_chunks);
        else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads"))
            ok = tools_parse_int(arg, v, 0, 1024, &a->threads);
        else {
            fprintf(stderr, "error: unknown option '%s' (halo perplexity --help lists them)\n", arg);
            return 2;
        }
        if (!ok) return 2;
    }
    if (kl_base) {
        if (kl_flag) a->kld_read = kl_base;
        else a->kld_save = kl_base;
    } else if (kl_flag) {
        fprintf(stderr, "error: --kl-divergence needs --kl-divergence-base FILE\n");
        return 2;
    }
    if (a->kld_save && a->kld_read) {
        fprintf(stderr, "error: give --kld-base (save) or --kld (compare), not both\n");
        return 2;
    }
    if (!a->file && !a->kld_read) {
        fprintf(stderr, "error: no text: give -f FILE\n");
        usage(stderr);
        return 2;
    }
    if (a->n_chunks == 0) {
        fprintf(stderr, "error: --chunks: 0 windows is nothing to evaluate\n");
        return 2;
    }
    a->type_k = plan.type_k;
    a->type_v = plan.type_v;
    if (!a->model) a->model = tools_default_model();
    return -1;
}

/* ---- statistics ------------------------------------------------------------------ */

/* log-sum-exp of l[0..n) and the argmax */
static double row_lse(const float *l, int32_t n, int32_t *top) {
    int32_t best = 0;
    for (int32_t v = 1; v < n; v++)
        if (l[v] > l[best]) best = v;
    float mx = l[best];
    double sum = 0.0;
    for (int32_t v = 0; v < n; v++) sum += expf(l[v] - mx);
    if (top) *top = best;
    return (double)mx + log(sum);
}

typedef struct kld_stats {
    size_t n;
    double sa, sa2, sb, sb2, sab; /* nll of this model (a) and of the base (b) */
    double sdp, sdp2;             /* p(next) of this model minus the base's */
    size_t same_top;
    double sk, sk2; /* KLD */
    float *kld;     /* [n] */
    size_t kld_cap;
} kld_stats;

/* sqrt(var_pop / (n - 1)): llama.cpp's uncertainty of a mean */
static double mean_err(double s, double s2, size_t n) {
    if (n < 2) return 0.0;
    double m = s / (double)n, var = s2 / (double)n - m * m;
    return var > 0 ? sqrt(var / (double)(n - 1)) : 0.0;
}

/* ---- the KLD file ------------------------------------------------------------------ */

typedef struct kld_file {
    FILE *f;
    uint32_t n_ctx, n_vocab, n_chunk, first, row_bytes;
    uint8_t *rows; /* one window's rows */
} kld_file;

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static bool kld_write_header(kld_file *k, const int32_t *tokens, const char *path) {
    uint8_t h[KLD_HEADER_BYTES] = {0};
    memcpy(h, KLD_MAGIC, 8); /* with its NUL */
    put_u32(h + 8, KLD_VERSION);
    put_u32(h + 12, k->n_ctx);
    put_u32(h + 16, k->n_vocab);
    put_u32(h + 20, k->n_chunk);
    put_u32(h + 24, k->first);
    put_u32(h + 28, k->row_bytes);
    size_t nt = (size_t)k->n_chunk * k->n_ctx;
    if (fwrite(h, 1, sizeof h, k->f) != sizeof h || fwrite(tokens, 4, nt, k->f) != nt) {
        fprintf(stderr, "error: %s: write failed: %s\n", path, strerror(errno));
        return false;
    }
    return true;
}

/* Opens and checks a base file; reads its tokens into *tokens (malloc'd). */
static bool kld_open_read(kld_file *k, const char *path, int32_t n_vocab, int32_t **tokens) {
    k->f = fopen(path, "rb");
    if (!k->f) {
        fprintf(stderr, "error: cannot open %s: %s\n", path, strerror(errno));
        return false;
    }
    uint8_t h[KLD_HEADER_BYTES];
    if (fread(h, 1, sizeof h, k->f) != sizeof h || memcmp(h, KLD_MAGIC, 8)) {
        fprintf(stderr, "error: %s is not a halo KLD base file (made by --kld-base)\n", path);
        return false;
    }
    uint32_t version = get_u32(h + 8);
    k->n_ctx = get_u32(h + 12), k->n_vocab = get_u32(h + 16), k->n_chunk = get_u32(h + 20);
    k->first = get_u32(h + 24), k->row_bytes = get_u32(h + 28);
    if (version != KLD_VERSION) {
        fprintf(stderr, "error: %s: KLD file version %u, this halo reads version %u\n", path,
                version, KLD_VERSION);
        return false;
    }
    if ((int64_t)k->n_vocab != n_vocab) {
        fprintf(stderr, "error: %s was made with a vocabulary of %u tokens, this model has %d\n",
                path, k->n_vocab, n_vocab);
        return false;
    }
    uint64_t rows_per = k->n_ctx > k->first + 1 ? k->n_ctx - 1 - k->first : 0, nt, rb, total;
    if (k->n_ctx < 8 || k->first != k->n_ctx / 2 || k->n_chunk == 0 ||
        k->row_bytes != 16 + 2ull * k->n_vocab ||
        halo_mul_overflow(k->n_chunk, k->n_ctx, &nt) || halo_mul_overflow(nt, 4, &nt) ||
        halo_mul_overflow(rows_per, k->row_bytes, &rb) || halo_mul_overflow(rb, k->n_chunk, &total) ||
        halo_add_overflow(total, nt, &total) || halo_add_overflow(total, KLD_HEADER_BYTES, &total)) {
        fprintf(stderr, "error: %s: inconsistent KLD header\n", path);
        return false;
    }
    if (fseeko(k->f, 0, SEEK_END) || (uint64_t)ftello(k->f) != total ||
        fseeko(k->f, KLD_HEADER_BYTES, SEEK_SET)) {
        fprintf(stderr, "error: %s: truncated or oversized (expected %llu bytes)\n", path,
                (unsigned long long)total);
        return false;
    }
    size_t n_tok = (size_t)k->n_chunk * k->n_ctx;
    *tokens = malloc(n_tok * sizeof **tokens);
    k->rows = malloc((size_t)rb);
    if (!*tokens || !k->rows || fread(*tokens, 4, n_tok, k->f) != n_tok) {
        fprintf(stderr, "error: %s: cannot read its tokens\n", path);
        return false;
    }
    for (size_t i = 0; i < n_tok; i++)
        if ((*tokens)[i] < 0 || (*tokens)[i] >= n_vocab) {
            fprintf(stderr, "error: %s: token %d out of the vocabulary\n", path, (*tokens)[i]);
            return false;
        }
    return true;
}

/* One row: the log-probabilities of l (whose log-sum-exp is lse) quantized. */
static void kld_pack_row(uint8_t *rec, const float *l, int32_t n, double lse, int32_t top,
                         float lp_next) {
    float hi = (float)(l[top] - lse), lo = hi - KLD_RANGE, mn = hi;
    for (int32_t v = 0; v < n; v++) {
        float lp = (float)(l[v] - lse);
        if (lp < mn) mn = lp;
    }
    if (mn > lo) lo = mn;
    float step = (hi - lo) / 65535.0f;
    memcpy(rec, &top, 4);
    memcpy(rec + 4, &lp_next, 4);
    memcpy(rec + 8, &lo, 4);
    memcpy(rec + 12, &step, 4);
    uint16_t *q = (uint16_t *)(void *)(rec + 16); /* rec is 2-aligned: rows are 16 + 2n */
    for (int32_t v = 0; v < n; v++) {
        float lp = (float)(l[v] - lse);
        float x = step > 0 ? (lp - lo) / step : 0.0f;
        q[v] = !(x > 0) ? 0 : x >= 65535.0f ? 65535 : (uint16_t)lrintf(x); /* NaN: 0 */
    }
}

static void kld_compare_row(kld_stats *st, const uint8_t *rec, const float *l, int32_t n,
                            double lse, int32_t top, double nll) {
    int32_t top_b;
    float lp_next_b, lo, step;
    memcpy(&top_b, rec, 4);
    memcpy(&lp_next_b, rec + 4, 4);
    memcpy(&lo, rec + 8, 4);
    memcpy(&step, rec + 12, 4);
    const uint16_t *q = (const uint16_t *)(const void *)(rec + 16);
    double z = 0.0;
    for (int32_t v = 0; v < n; v++) z += exp((double)(lo + q[v] * step));
    double lz = log(z), kl = 0.0;
    for (int32_t v = 0; v < n; v++) {
        double lpb = (double)(lo + q[v] * step) - lz;
        kl += exp(lpb) * (lpb - ((double)l[v] - lse));
    }
    double a = nll, b = -(double)lp_next_b;
    st->sa += a, st->sa2 += a * a, st->sb += b, st->sb2 += b * b, st->sab += a * b;
    double dp = exp(-a) - exp(-b);
    st->sdp += dp, st->sdp2 += dp * dp;
    st->same_top += top == top_b;
    st->sk += kl, st->sk2 += kl * kl;
    st->kld[st->n++] = (float)kl;
}

/* the uncertainty of mean(a - b) */
static double diff_err(const kld_stats *st) {
    double dn = (double)st->n, ma = st->sa / dn, mb = st->sb / dn;
    double vd = (st->sa2 - 2 * st->sab + st->sb2) / dn - (ma - mb) * (ma - mb);
    return st->n > 1 && vd > 0 ? sqrt(vd / (dn - 1)) : 0.0;
}

static double percentile(const float *sorted, size_t n, double p) {
    size_t i = (size_t)llround(p * (double)(n - 1));
    return sorted[i < n ? i : n - 1];
}

static int cmp_float(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return a < b ? -1 : a > b;
}

static void kld_report(kld_stats *st) {
    size_t n = st->n;
    if (n < 2) return;
    double dn = (double)n, ma = st->sa / dn, mb = st->sb / dn;
    double va = st->sa2 / dn - ma * ma, vb = st->sb2 / dn - mb * mb, cov = st->sab / dn - ma * mb;
    double ea = mean_err(st->sa, st->sa2, n), eb = mean_err(st->sb, st->sb2, n);
    double ppl_a = exp(ma), ppl_b = exp(mb);
    double ed = diff_err(st);
    double cov_err = cov / (dn - 1);
    double vdiff = ppl_a * ppl_a * ea * ea + ppl_b * ppl_b * eb * eb - 2 * ppl_a * ppl_b * cov_err;
    printf("\n====== Perplexity statistics ======\n");
    printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", ppl_a, ppl_a * ea);
    printf("Mean PPL(base)                : %10.6f ± %10.6f\n", ppl_b, ppl_b * eb);
    printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n",
           va > 0 && vb > 0 ? 100.0 * cov / sqrt(va * vb) : 100.0);
    printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", ma - mb, ed);
    printf("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", exp(ma - mb), exp(ma - mb) * ed);
    printf("Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n", ppl_a - ppl_b,
           vdiff > 0 ? sqrt(vdiff) : 0.0);

    qsort(st->kld, n, sizeof *st->kld, cmp_float);
    printf("\n====== KL divergence statistics ======\n");
    printf("Mean    KLD: %10.6f ± %10.6f\n", st->sk / dn, mean_err(st->sk, st->sk2, n));
    printf("Maximum KLD: %10.6f\n", (double)st->kld[n - 1]);
    static const struct {
        const char *name;
        double p;
    } pct[] = {{"99.9%  ", 0.999}, {"99.0%  ", 0.99}, {"95.0%  ", 0.95}, {"90.0%  ", 0.90},
               {"Median ", 0.50},  {"10.0%  ", 0.10}, {" 5.0%  ", 0.05}, {" 1.0%  ", 0.01},
               {" 0.1%  ", 0.001}};
    for (size_t i = 0; i < sizeof pct / sizeof pct[0]; i++)
        printf("%s KLD: %10.6f\n", pct[i].name, percentile(st->kld, n, pct[i].p));
    printf("Minimum KLD: %10.6f\n", (double)st->kld[0]);

    double mdp = st->sdp / dn, rms = sqrt(st->sdp2 / dn);
    double p_same = (double)st->same_top / dn;
    printf("\n====== Token probability statistics ======\n");
    printf("Mean    Δp: %6.3f ± %5.3f %%\n", 100 * mdp, 100 * mean_err(st->sdp, st->sdp2, n));
    printf("RMS Δp    : %6.3f %%\n", 100 * rms);
    printf("Same top p: %6.3f ± %5.3f %%\n", 100 * p_same,
           100 * sqrt(p_same * (1 - p_same) / (dn - 1)));
}

/* ---- the evaluation ------------------------------------------------------------------ */

int cmd_perplexity(int argc, char **argv) {
    ppl_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    rc = 1;

    halo_model *model = NULL;
    halo_context *ctx = NULL;
    int32_t *tokens = NULL, *btok = NULL, *bpos = NULL, *bseq = NULL;
    int8_t *blog = NULL;
    char *text = NULL;
    uint8_t *row = NULL;
    kld_file kf = {0};
    kld_stats st = {0};
    halo_error err = {0};
    double load_s = 0;
    if (!tools_load_model(a.model, &a.load, &model, &load_s)) goto out;
    const halo_tokenizer *tok = halo_model_tokenizer(model);
    int32_t n_vocab = halo_model_n_vocab(model);
    bool add_bos = halo_tok_add_bos(tok);
    int32_t bos = halo_tok_bos(tok);
    if (add_bos && bos < 0) {
        fprintf(stderr, "error: %s: the model adds BOS but has no BOS token\n", a.model);
        goto out;
    }

    size_t n_tokens = 0;
    int64_t n_chunk = 0;
    if (a.kld_read) {
        if (!kld_open_read(&kf, a.kld_read, n_vocab, &tokens)) goto out;
        if (a.ctx_given && a.n_ctx != (int64_t)kf.n_ctx) {
            fprintf(stderr, "error: %s was made with -c %u, not %lld\n", a.kld_read, kf.n_ctx,
                    (long long)a.n_ctx);
            goto out;
        }
        a.n_ctx = kf.n_ctx;
        n_tokens = (size_t)kf.n_chunk * kf.n_ctx;
        n_chunk = a.n_chunks < 0 || a.n_chunks > (int64_t)kf.n_chunk ? kf.n_chunk : a.n_chunks;
    }
    if (a.file) {
        size_t len;
        if (!(text = tools_read_file(a.file, &len))) goto out;
        fprintf(stderr, "perplexity: tokenizing the input ..\n");
        double t0 = halo_time_seconds();
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (halo_tok_encode(tok, text, len, HALO_TOK_ADD_SPECIAL, &ids, &n_ids, &err)) {
            fprintf(stderr, "error: %s: %s\n", a.file, err.msg);
            goto out;
        }
        fprintf(stderr, "perplexity: tokenization took %.3f ms\n", (halo_time_seconds() - t0) * 1e3);
        if (a.kld_read) {
            /* the base's tokens must be this text's */
            bool same = n_ids >= n_tokens && !memcmp(ids, tokens, n_tokens * sizeof *ids);
            free(ids);
            if (!same) {
                fprintf(stderr, "error: %s was made from another text (or tokenizer) than %s\n",
                        a.kld_read, a.file);
                goto out;
            }
        } else {
            tokens = ids;
            n_tokens = n_ids;
        }
    }
    if (!a.kld_read) {
        if (n_tokens < 2 * (size_t)a.n_ctx) {
            fprintf(stderr,
                    "error: you need at least %lld tokens to evaluate perplexity with a context "
                    "of %lld (the text has %zu)\n",
                    2 * (long long)a.n_ctx, (long long)a.n_ctx, n_tokens);
            goto out;
        }
        int64_t max_chunk = (int64_t)(n_tokens / (size_t)a.n_ctx);
        n_chunk = a.n_chunks < 0 || a.n_chunks > max_chunk ? max_chunk : a.n_chunks;
    }

    const int32_t n_ctx = (int32_t)a.n_ctx, first = n_ctx / 2;
    const int32_t n_batch = (int32_t)(a.n_batch < a.n_ctx ? a.n_batch : a.n_ctx);
    halo_context_params cp;
    halo_context_default_params(&cp);
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_seq_max = 1;
    cp.n_batch = (uint32_t)n_batch;
    cp.n_ubatch = (uint32_t)(a.n_ubatch < n_batch ? a.n_ubatch : n_batch);
    if (a.type_k >= 0) cp.type_k = a.type_k;
    if (a.type_v >= 0) cp.type_v = a.type_v;
    cp.n_threads = (int)a.threads;
    if (halo_context_new(model, &cp, &ctx, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }

    size_t rows_per = (size_t)(n_ctx - 1 - first);
    size_t row_bytes = 16 + 2 * (size_t)n_vocab;
    if (a.kld_save) {
        kf.n_ctx = (uint32_t)n_ctx, kf.n_vocab = (uint32_t)n_vocab, kf.n_chunk = (uint32_t)n_chunk;
        kf.first = (uint32_t)first, kf.row_bytes = (uint32_t)row_bytes;
        if (!(kf.f = fopen(a.kld_save, "wb"))) {
            fprintf(stderr, "error: cannot create %s: %s\n", a.kld_save, strerror(errno));
            goto out;
        }
        if (!kld_write_header(&kf, tokens, a.kld_save)) goto out;
        row = malloc(row_bytes);
        if (!row) goto nomem;
    }
    if (a.kld_read) {
        st.kld_cap = (size_t)n_chunk * rows_per;
        if (!(st.kld = malloc(st.kld_cap * sizeof *st.kld))) goto nomem;
    }
    btok = malloc((size_t)n_batch * sizeof *btok);
    bpos = malloc((size_t)n_batch * sizeof *bpos);
    bseq = calloc((size_t)n_batch, sizeof *bseq);
    blog = malloc((size_t)n_batch);
    if (!btok || !bpos || !bseq || !blog) goto nomem;

    fprintf(stderr, "perplexity: calculating perplexity over %lld chunks, n_ctx=%d, batch_size=%d, n_seq=1\n",
            (long long)n_chunk, n_ctx, n_batch);
    if (a.kld_read)
        printf("chunk             PPL          ln(PPL(Q)/PPL(base))          KL Divergence          Same top p\n");
    double nll = 0.0, nll2 = 0.0;
    size_t count = 0;
    double t_start = halo_time_seconds();
    for (int64_t c = 0; c < n_chunk; c++) {
        const int32_t *ct = tokens + (size_t)c * (size_t)n_ctx;
        halo_seq_clear(ctx, 0);
        if (a.kld_read && fread(kf.rows, row_bytes, rows_per, kf.f) != rows_per) {
            fprintf(stderr, "error: %s: read failed\n", a.kld_read);
            goto out;
        }
        for (int32_t b0 = 0; b0 < n_ctx; b0 += n_batch) {
            int32_t nb = n_ctx - b0 < n_batch ? n_ctx - b0 : n_batch;
            for (int32_t k = 0; k < nb; k++) {
                int32_t pos = b0 + k;
                btok[k] = ct[pos];
                bpos[k] = pos;
                blog[k] = pos >= first && pos < n_ctx - 1;
            }
            if (add_bos && b0 == 0) btok[0] = bos;
            halo_batch batch = {nb, btok, bpos, bseq, blog};
            if (halo_decode(ctx, &batch, &err)) {
                fprintf(stderr, "error: window %lld: %s\n", (long long)c + 1, err.msg);
                goto out;
            }
            for (int32_t k = 0; k < nb; k++) {
                if (!blog[k]) continue;
                const float *l = halo_get_logits(ctx, k);
                if (!l) {
                    fprintf(stderr, "error: no logits for position %d\n", b0 + k);
                    goto out;
                }
                int32_t next = ct[b0 + k + 1], top;
                double lse = row_lse(l, n_vocab, &top);
                double lp = (double)l[next] - lse;
                nll -= lp;
                nll2 += lp * lp;
                count++;
                size_t r = (size_t)(b0 + k - first);
                if (a.kld_save) {
                    kld_pack_row(row, l, n_vocab, lse, top, (float)lp);
                    if (fwrite(row, 1, row_bytes, kf.f) != row_bytes) {
                        fprintf(stderr, "error: %s: write failed: %s\n", a.kld_save, strerror(errno));
                        goto out;
                    }
                }
                if (a.kld_read) {
                    kld_compare_row(&st, kf.rows + r * row_bytes, l, n_vocab, lse, top, -lp);
                }
            }
        }
        if (c == 0) {
            double per = halo_time_seconds() - t_start;
            fprintf(stderr, "perplexity: %.2f seconds per pass - ETA %.2f minutes\n", per,
                    per * (double)n_chunk / 60.0);
        }
        if (a.kld_read) {
            /* running figures over everything so far, as llama-perplexity prints them */
            double dn = (double)st.n, ma = st.sa / dn, mb = st.sb / dn, p_same = st.same_top / dn;
            printf("%4lld %10.4f %14.5f ± %10.5f %12.5f ± %10.5f %8.3f ± %5.3f %%\n",
                   (long long)c + 1, exp(ma), ma - mb, diff_err(&st), st.sk / dn,
                   mean_err(st.sk, st.sk2, st.n), 100 * p_same,
                   st.n > 1 ? 100 * sqrt(p_same * (1 - p_same) / (dn - 1)) : 0.0);
        } else {
            printf("[%lld]%.4f,", (long long)c + 1, exp(nll / (double)count));
        }
        fflush(stdout);
    }
    if (!a.kld_read) printf("\n");

    {
        double m = nll / (double)count, ppl = exp(m);
        double var = nll2 / (double)count - m * m;
        if (var > 0)
            printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, ppl * sqrt(var / (double)(count - 1)));
        else
            printf("Unexpected negative standard deviation of log(prob)\n");
    }
    if (a.kld_read) kld_report(&st);
    if (a.kld_save) {
        if (fclose(kf.f)) {
            kf.f = NULL;
            fprintf(stderr, "error: %s: write failed: %s\n", a.kld_save, strerror(errno));
            goto out;
        }
        kf.f = NULL;
        fprintf(stderr, "perplexity: saved the log-probabilities of %zu positions to %s\n", count,
                a.kld_save);
    }
    fprintf(stderr, "perplexity: load %.2f s, evaluation %.2f s (%.1f tokens/s)\n", load_s,
            halo_time_seconds() - t_start,
            (double)n_chunk * n_ctx / (halo_time_seconds() - t_start));
    rc = fflush(stdout) ? 1 : 0;
    goto out;
nomem:
    fprintf(stderr, "error: out of memory\n");
out:
    if (kf.f) {
        fclose(kf.f);
        if (a.kld_save && rc) unlink(a.kld_save); /* no half-written base files */
    }
    free(kf.rows);
    free(row);
    free(st.kld);
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
