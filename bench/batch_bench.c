/*
 * batch_bench — decode steps of N parallel sequences, as the server runs them
 * (llama-batched-bench's S_TG): each sequence gets a prompt of PP tokens (one
 * decode call for all of them), then TG steps of one token per sequence. Prints,
 * per N, the prompt time, the time per step in halo_decode, the time per step
 * to sample every sequence's next token greedily on the host (what the server
 * does after each step), and the aggregate generation speed. A second row per
 * N asks for the logits of one sequence only, so that the difference is what
 * copying N rows of logits back costs.
 *
 *   build/batch_bench -m MODEL [-ngl 99] [-npl 1,4,16,64] [-npp 100] [-ntg 64]
 */
#include "halo.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static int argmax(const float *x, int32_t n) {
    int best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* One N: returns 0, or -1 with the error printed. */
static int run(halo_model *m, int n_seq, int npp, int ntg, bool all_logits) {
    halo_context_params cp;
    halo_context_default_params(&cp);
    cp.n_seq_max = (uint32_t)n_seq;
    /* each sequence takes whole KV pages (32 cells): room rounded up to 256 a sequence, so
     * the pages of every sequence fit (n_seq * (npp + ntg) alone fell 2 pages short at
     * 16 x 108: no row printed) */
    cp.n_ctx = (uint32_t)(n_seq * ((npp + ntg + 16 + 255) / 256 * 256));
    cp.n_batch = (uint32_t)(n_seq * npp > 512 ? n_seq * npp : 512);
    halo_context *ctx;
    halo_error err = {0};
    if (halo_context_new(m, &cp, &ctx, &err)) {
        fprintf(stderr, "batch_bench: %s\n", err.msg);
        return -1;
    }
    const int32_t nv = halo_model_n_vocab(m);
    size_t cap = (size_t)n_seq * (size_t)npp;
    int32_t *tok = malloc(sizeof(int32_t) * cap), *pos = malloc(sizeof(int32_t) * cap);
    int32_t *seq = malloc(sizeof(int32_t) * cap), *next = malloc(sizeof(int32_t) * (size_t)n_seq);
    int8_t *lg = malloc(cap);
    int rc = 0;
    if (!tok || !pos || !seq || !next || !lg) {
        fprintf(stderr, "batch_bench: out of memory\n");
        rc = -1;
        goto done;
    }
    int32_t n = 0;
    for (int s = 0; s < n_seq; s++)
        for (int p = 0; p < npp; p++) {
            tok[n] = 100 + (s * 7919 + p * 104729) % (nv - 200);
            pos[n] = p;
            seq[n] = s;
            lg[n] = p == npp - 1;
            n++;
        }
    double t0 = halo_time_seconds();
    halo_batch b = {n, tok, pos, seq, lg};
    if (halo_decode(ctx, &b, &err)) {
        fprintf(stderr, "batch_bench: %s\n", err.msg);
        rc = -1;
        goto done;
    }
    double t_pp = halo_time_seconds() - t0;
    for (int s = 0; s < n_seq; s++)
        next[s] = argmax(halo_get_logits(ctx, (s + 1) * npp - 1), nv);
    double t_dec = 0.0, t_smp = 0.0;
    for (int g = 0; g < ntg; g++) {
        for (int s = 0; s < n_seq; s++) {
            tok[s] = next[s];
            pos[s] = npp + g;
            seq[s] = s;
            lg[s] = all_logits || s == 0;
        }
        halo_batch bt = {n_seq, tok, pos, seq, lg};
        double a = halo_time_seconds();
        if (halo_decode(ctx, &bt, &err)) {
            fprintf(stderr, "batch_bench: %s\n", err.msg);
            rc = -1;
            goto done;
        }
        double c = halo_time_seconds();
        for (int s = 0; s < n_seq; s++) {
            const float *l = halo_get_logits(ctx, lg[s] ? s : 0);
            next[s] = argmax(l, nv);
        }
        double d = halo_time_seconds();
        if (g > 0) { /* the first step records the step's CUDA graph */
            t_dec += c - a;
            t_smp += d - c;
        }
    }
    int steps = ntg - 1;
    printf("| %4d | %-4s | %8.2f | %9.3f | %9.3f | %9.1f |\n", n_seq, all_logits ? "all" : "one",
           1e3 * t_pp, 1e3 * t_dec / steps, 1e3 * t_smp / steps,
           (double)n_seq * steps / (t_dec + t_smp));
done:
    free(tok);
    free(pos);
    free(seq);
    free(next);
    free(lg);
    halo_context_free(ctx);
    return rc;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int npl[16] = {1, 4, 16, 64}, n_npl = 4, npp = 100, ntg = 64, ngl = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: %s -m MODEL [-ngl N] [-npl 1,4,16,64] [-npp 100] [-ntg 64]\n", argv[0]);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "batch_bench: %s needs a value (see --help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "-m"))
            path = v;
        else if (!strcmp(a, "-ngl"))
            ngl = atoi(v);
        else if (!strcmp(a, "-npp"))
            npp = atoi(v);
        else if (!strcmp(a, "-ntg"))
            ntg = atoi(v);
        else if (!strcmp(a, "-npl")) {
            if ((n_npl = parse_list(v, npl, 16)) <= 0) {
                fprintf(stderr, "batch_bench: -npl takes a list like 1,4,16,64\n");
                return 2;
            }
        } else {
            fprintf(stderr, "batch_bench: unknown option %s (see --help)\n", a);
            return 2;
        }
    }
    if (!path || npp < 1 || ntg < 2) {
        fprintf(stderr, "batch_bench: -m MODEL is required; -npp >= 1, -ntg >= 2\n");
        return 2;
    }
    halo_load_options lo = {0};
    lo.n_gpu_layers = ngl;
    halo_model *m;
    halo_error err = {0};
    if (halo_model_load(path, &lo, &m, &err)) {
        fprintf(stderr, "batch_bench: %s\n", err.msg);
        return 1;
    }
    printf("| npl  | logits | prompt ms | decode ms/step | sample ms/step | t/s |\n");
    printf("| ---: | ---- | ---: | ---: | ---: | ---: |\n");
    int rc = 0;
    for (int i = 0; i < n_npl && !rc; i++) {
        rc = run(m, npl[i], npp, ntg, true);
        if (!rc) rc = run(m, npl[i], npp, ntg, false);
    }
    halo_model_free(m);
    return rc ? 1 : 0;
}
