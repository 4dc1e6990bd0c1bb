/*
 * `halo logits`: the logits of every position of token sequences, for comparing
 * the engine with reference outputs. TOKENS.txt holds one sequence a line (ids
 * separated by spaces or commas); each is evaluated from position 0 with an
 * empty cache and its logits written as float32 [n_tokens][n_vocab], sequence
 * after sequence (the layout of the reference files in ../shared/fixtures/refs).
 * --chunk N feeds N tokens per halo_decode call (1: token by token), which is
 * how the cache and state are checked against one whole-sequence batch.
 */
#include "halo.h"
#include "runtime/runtime.h"
#include "tools.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo logits -m MODEL -f TOKENS.txt -o OUT.f32 [options]\n"
            "\n"
            "Evaluate token sequences (one a line, ids separated by spaces) each from\n"
            "position 0 with an empty cache and write the logits of every position as\n"
            "float32 [n_tokens][n_vocab], sequence after sequence.\n"
            "\n"
            "  -m, --model FILE         GGUF model (default: %s)\n"
            "  -f, --file FILE          the token sequences\n"
            "  -o, --output FILE        where to write the logits\n"
            "  -t, --threads N          threads (default: all cores)\n"
            "  -ctk, --cache-type-k T   K cache type: %s (default f16)\n"
            "  -ctv, --cache-type-v T   V cache type (default f16)\n"
            "  -b, --batch-size N       most tokens per decode call (default 2048)\n"
            "  -ub, --ubatch-size N     tokens per forward pass (default 512)\n"
            "  --chunk N                feed N tokens per decode call (default: the whole\n"
            "                           sequence, up to -b)\n"
            "  --no-mmap                read the weights into memory instead of mapping them\n"
            "  -ngl, --n-gpu-layers N   layers on the GPU: 0 (CPU, default) or all (99)\n"
            "  -mg, --main-gpu I        the GPU to use (default 0); -dev CUDA<I> or\n"
            "                           Vulkan<I> as well\n"
            "  -ncmoe, --n-cpu-moe N    with -ngl: the routed experts of the first N layers\n"
            "                           stay in host memory, computed by the CPU\n"
            "  -cmoe, --cpu-moe         with -ngl: every layer's routed experts on the CPU\n"
            "  -ot, --override-tensor PATTERN=DEVICE\n"
            "                           tensors whose names match PATTERN (a regex) on\n"
            "                           DEVICE: CPU, CUDA0 or Vulkan0 (with -ngl, only\n"
            "                           ffn_*_exps on the CPU); comma-separated or repeated\n"
            "  --mlock                  lock the weights in RAM\n"
            "  -h, --help               this help\n",
            tools_default_model(), halo_kv_type_names());
}

/* One line of ids; returns the count (0 for a blank line), -1 on a bad line. */
static int64_t parse_line(const char *line, int32_t **ids, size_t *cap) {
    int64_t n = 0;
    const char *p = line;
    for (;;) {
        while (*p && (isspace((unsigned char)*p) || *p == ',')) p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) return -1;
        if ((size_t)n == *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            int32_t *ni = realloc(*ids, nc * sizeof *ni);
            if (!ni) return -1;
            *ids = ni;
            *cap = nc;
        }
        (*ids)[n++] = (int32_t)v;
        p = end;
    }
    return n;
}

int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *in_path = NULL, *out_path = NULL;
    halo_load_options lopts = {0};
    halo_context_params cp;
    halo_context_default_params(&cp);
    int64_t chunk = 0, v;
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        const char *val;
        int compat;
        if (tools_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (tools_parse_load_flag(argc, argv, &i, &lopts)) {
            continue;
        } else if ((compat = tools_parse_compat_flag(argc, argv, &i)) != 0) {
            if (compat < 0) return 2;
            continue;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(in_path = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(out_path = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(val = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, val, 1, 512, &v))
                return 2;
            cp.n_threads = (int)v;
        } else if (!strcmp(a, "-ctk") || !strcmp(a, "--cache-type-k") || !strcmp(a, "-ctv") ||
                   !strcmp(a, "--cache-type-v")) {
            if (!(val = tools_flag_value(argc, argv, &i))) return 2;
            int t = halo_kv_type_from_name(val);
            if (t < 0) {
                fprintf(stderr, "error: %s: unknown cache type '%s' (use one of %s)\n", a, val,
                        halo_kv_type_names());
                return 2;
            }
            if (!strcmp(a, "-ctk") || !strcmp(a, "--cache-type-k")) cp.type_k = t;
            else cp.type_v = t;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
            if (!(val = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, val, 1, 1 << 20, &v))
                return 2;
            cp.n_batch = (uint32_t)v;
        } else if (!strcmp(a, "-ub") || !strcmp(a, "--ubatch-size")) {
            if (!(val = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, val, 1, 1 << 20, &v))
                return 2;
            cp.n_ubatch = (uint32_t)v;
        } else if (!strcmp(a, "--chunk")) {
            if (!(val = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, val, 1, 1 << 20, &chunk))
                return 2;
        } else {
            fprintf(stderr, "error: unknown option '%s' (halo logits --help lists them)\n", a);
            return 2;
        }
    }
    if (!in_path || !out_path) {
        fprintf(stderr, "error: halo logits needs -f TOKENS.txt and -o OUT.f32\n");
        usage(stderr);
        return 2;
    }
    if (!model_path) model_path = tools_default_model();

    /* read every sequence first: the context is sized for the longest */
    FILE *in = fopen(in_path, "r");
    if (!in) {
        fprintf(stderr, "error: cannot open %s: %s\n", in_path, strerror(errno));
        return 1;
    }
    int32_t *ids = NULL, **seqs = NULL;
    int64_t *lens = NULL, n_seqs = 0, max_len = 0;
    size_t cap = 0;
    char *line = NULL;
    size_t line_cap = 0;
    int rc = 0;
    for (int64_t lineno = 1; getline(&line, &line_cap, in) >= 0; lineno++) {
        int64_t n = parse_line(line, &ids, &cap);
        if (n < 0) {
            fprintf(stderr, "error: %s:%lld: not a list of token ids\n", in_path, (long long)lineno);
            rc = 1;
            break;
        }
        if (n == 0) continue;
        int32_t **ns = realloc(seqs, sizeof *ns * (size_t)(n_seqs + 1));
        int64_t *nl = realloc(lens, sizeof *nl * (size_t)(n_seqs + 1));
        if (ns) seqs = ns;
        if (nl) lens = nl;
        int32_t *copy = malloc(sizeof *copy * (size_t)n);
        if (!ns || !nl || !copy) {
            free(copy);
            fprintf(stderr, "error: out of memory\n");
            rc = 1;
            break;
        }
        memcpy(copy, ids, sizeof *copy * (size_t)n);
        seqs[n_seqs] = copy;
        lens[n_seqs++] = n;
        if (n > max_len) max_len = n;
    }
    fclose(in);
    free(line);
    free(ids);
    if (!rc && n_seqs == 0) {
        fprintf(stderr, "error: %s holds no token sequence\n", in_path);
        rc = 1;
    }

    halo_error err = {0};
    halo_model *model = NULL;
    halo_context *ctx = NULL;
    FILE *out = NULL;
    int8_t *want = NULL;
    int32_t *pos = NULL;
    if (!rc && halo_model_load(model_path, &lopts, &model, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        rc = 1;
    }
    if (!rc) {
        cp.n_ctx = (uint32_t)(max_len > 0 ? max_len : 1);
        if (chunk == 0 || chunk > cp.n_batch) chunk = cp.n_batch;
        if (halo_context_new(model, &cp, &ctx, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            rc = 1;
        }
    }
    if (!rc && !(out = fopen(out_path, "wb"))) {
        fprintf(stderr, "error: cannot write %s: %s\n", out_path, strerror(errno));
        rc = 1;
    }
    if (!rc) {
        want = malloc((size_t)chunk);
        pos = malloc(sizeof *pos * (size_t)chunk);
        if (!want || !pos) {
            fprintf(stderr, "error: out of memory\n");
            rc = 1;
        } else {
            memset(want, 1, (size_t)chunk);
        }
    }
    const int32_t n_vocab = model ? halo_model_n_vocab(model) : 0;
    for (int64_t s = 0; !rc && s < n_seqs; s++) {
        halo_seq_clear(ctx, 0);
        for (int64_t i0 = 0; !rc && i0 < lens[s]; i0 += chunk) {
            int32_t n = (int32_t)(lens[s] - i0 < chunk ? lens[s] - i0 : chunk);
            for (int32_t t = 0; t < n; t++) pos[t] = (int32_t)(i0 + t);
            halo_batch b = {.n_tokens = n, .token = seqs[s] + i0, .pos = pos, .logits = want};
            if (halo_decode(ctx, &b, &err)) {
                fprintf(stderr, "error: sequence %lld: %s\n", (long long)s + 1, err.msg);
                rc = 1;
                break;
            }
            for (int32_t t = 0; t < n; t++) {
                const float *lg = halo_get_logits(ctx, t);
                if (fwrite(lg, sizeof(float), (size_t)n_vocab, out) != (size_t)n_vocab) {
                    fprintf(stderr, "error: writing %s: %s\n", out_path, strerror(errno));
                    rc = 1;
                    break;
                }
            }
        }
    }
    if (out && fclose(out) && !rc) {
        fprintf(stderr, "error: writing %s: %s\n", out_path, strerror(errno));
        rc = 1;
    }
    free(want);
    free(pos);
    for (int64_t s = 0; s < n_seqs; s++) free(seqs[s]);
    free(seqs);
    free(lens);
    halo_context_free(ctx);
    halo_model_free(model);
    return rc;
}
