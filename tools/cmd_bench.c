/*
 * `halo bench`: llama-bench's tests, flags and output formats, so that scripts
 * written for one read the other.
 *
 * Every flag takes a comma-separated list (or is repeated; ranges first-last,
 * first-last+step and first-last*mult as in llama-bench), and the benchmark runs
 * the cross product: for each model, n_batch, n_ubatch, type_k, type_v, threads
 * and depth, the tests pp<P> for each -p, tg<N> for each -n and pp<P>+tg<N> for
 * each -pg (a value of 0 skips that kind). Each test gets a fresh context of
 * P + N + depth cells, a warm-up run (pp P, tg 1) unless --no-warmup, then
 * -r repetitions, each from an empty cache: the depth's tokens are processed
 * untimed, then the timed part: P random tokens in batches of n_batch, then N
 * single-token decodes. Tokens are random (BOS first if the model adds one),
 * as llama-bench's are. t/s = (P + N) / time, reported as the mean and standard
 * deviation over the repetitions.
 *
 * Outputs: md (the table; type_k / type_v / n_batch / n_ubatch / lm columns
 * appear only when set to a non-default value or a list, as in llama-bench),
 * csv, json and jsonl with llama-bench's field names and order. Fields that
 * describe llama.cpp's GPU machinery get the values that say "not used".
 */
#define _GNU_SOURCE
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"
#include "tools.h"
#ifdef HALO_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif
#ifdef HALO_HAVE_VULKAN
#include "kernels/vulkan/vk_ops.h"
#endif
#include "util/util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef HALO_BUILD_COMMIT
#define HALO_BUILD_COMMIT "unknown"
#endif
#ifndef HALO_BUILD_NUMBER
#define HALO_BUILD_NUMBER 0
#endif

#define MAX_LIST 64

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo bench [-m MODEL] [options]\n"
            "\n"
            "Prompt-processing and generation speed, as llama-bench measures and prints it. Each\n"
            "value may be a comma-separated list (or a range first-last[+step|*mult]); the\n"
            "benchmark runs every combination.\n"
            "\n"
            "  -m, --model FILE          GGUF model(s) (default: %s)\n"
            "  -p, --n-prompt N          prompt tokens: test ppN (default 512; 0 skips)\n"
            "  -n, --n-gen N             generated tokens: test tgN (default 128; 0 skips)\n"
            "  -pg P,N                   prompt then generation: test ppP+tgN (repeatable)\n"
            "  -d, --n-depth N           tokens already in the cache, untimed (default 0)\n"
            "  -b, --batch-size N        tokens per decode call (default 2048)\n"
            "  -ub, --ubatch-size N      tokens per forward pass (default 512)\n"
            "  -ctk, --cache-type-k T    K cache type: %s (default f16)\n"
            "  -ctv, --cache-type-v T    V cache type (default f16)\n"
            "  -t, --threads N           threads (default: the number of cores)\n"
            "  -r, --repetitions N       repetitions of each test (default 5)\n"
            "  -o, --output FMT          md, csv, json or jsonl (default md)\n"
            "      --no-warmup           skip the warm-up run\n"
            "      --no-mmap             read the weights into memory (lm = none)\n"
            "      --mlock               lock the weights in RAM\n"
            "  -mmp, --mmap 0|1          llama-bench's spelling of --no-mmap / mmap\n"
            "  -fa, --flash-attn X       accepted for llama-bench compatibility (halo's attention\n"
            "                            always runs as online softmax over the cache)\n"
            TOOLS_GPU_FLAGS_HELP
            "      --progress            print each test as it starts (stderr)\n"
            "  -h, --help                this help\n",
            tools_default_model(), halo_kv_type_names());
}

/* ---- lists ----------------------------------------------------------------------- */

typedef struct int_list {
    int64_t v[MAX_LIST];
    int n;
    bool given;
} int_list;

static bool list_push(const char *flag, int_list *l, int64_t x) {
    if (l->n >= MAX_LIST) {
        fprintf(stderr, "error: %s: more than %d values\n", flag, MAX_LIST);
        return false;
    }
    l->v[l->n++] = x;
    return true;
}

/* "1,2,4", "1-8*2", "128-512+128"; each item in [lo, hi]. The first use of a flag
 * replaces the default; later uses add to it. */
static bool parse_int_list(const char *flag, const char *text, int64_t lo, int64_t hi,
                           int_list *l) {
    if (!l->given) l->n = 0;
    l->given = true;
    char buf[256];
    const char *p = text;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof buf) {
            fprintf(stderr, "error: %s: bad list '%s'\n", flag, text);
            return false;
        }
        memcpy(buf, p, len);
        buf[len] = '\0';
        p += len + (comma ? 1 : 0);
        char *dash = strchr(buf + 1, '-'); /* a range, not a negative number */
        if (!dash) {
            int64_t x;
            if (!tools_parse_int(flag, buf, lo, hi, &x) || !list_push(flag, l, x)) return false;
            continue;
        }
        *dash = '\0';
        char *last = dash + 1, *op = strpbrk(last, "+*");
        char kind = op ? *op : '+';
        if (op) *op = '\0';
        int64_t a, b, step = 1;
        if (!tools_parse_int(flag, buf, lo, hi, &a) || !tools_parse_int(flag, last, lo, hi, &b) ||
            (op && !tools_parse_int(flag, op + 1, kind == '*' ? 2 : 1, hi > 1 ? hi : 2, &step)))
            return false;
        if (a > b || (kind == '*' && a <= 0)) {
            fprintf(stderr, "error: %s: bad range in '%s'\n", flag, text);
            return false;
        }
        for (int64_t x = a; x <= b; x = kind == '*' ? x * step : x + step)
            if (!list_push(flag, l, x)) return false;
    }
    if (l->n == 0) {
        fprintf(stderr, "error: %s: empty list\n", flag);
        return false;
    }
    return true;
}

typedef struct str_list {
    const char *v[MAX_LIST];
    int n;
    bool given;
} str_list;

/* comma-separated strings; the text is split in place */
static bool parse_str_list(const char *flag, char *text, str_list *l) {
    if (!l->given) l->n = 0;
    l->given = true;
    for (char *save = NULL, *t = strtok_r(text, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (l->n >= MAX_LIST) {
            fprintf(stderr, "error: %s: more than %d values\n", flag, MAX_LIST);
            return false;
        }
        l->v[l->n++] = t;
    }
    if (l->n == 0) {
        fprintf(stderr, "error: %s: empty list\n", flag);
        return false;
    }
    return true;
}

typedef enum { OUT_MD, OUT_CSV, OUT_JSON, OUT_JSONL } out_fmt;

typedef struct bench_args {
    str_list models;
    int_list n_prompt, n_gen, n_depth, n_batch, n_ubatch, threads;
    int_list pg_p, pg_n; /* pairs */
    int type_k[MAX_LIST], type_v[MAX_LIST];
    int n_type_k, n_type_v;
    bool type_k_given, type_v_given;
    int64_t reps;
    out_fmt fmt;
    bool no_warmup, progress;
    halo_load_options load;
} bench_args;

static bool parse_types(const char *flag, char *text, int *types, int *n) {
    str_list l = {0};
    if (!parse_str_list(flag, text, &l)) return false;
    for (int i = 0; i < l.n; i++) {
        int t = halo_kv_type_from_name(l.v[i]);
        if (t < 0) {
            fprintf(stderr, "error: %s: '%s' is not a KV cache type (use one of %s)\n", flag,
                    l.v[i], halo_kv_type_names());
            return false;
        }
        types[i] = t;
    }
    *n = l.n;
    return true;
}

static int parse_args(int argc, char **argv, bench_args *a) {
    memset(a, 0, sizeof *a);
    a->n_prompt = (int_list){{512}, 1, false};
    a->n_gen = (int_list){{128}, 1, false};
    a->n_depth = (int_list){{0}, 1, false};
    a->n_batch = (int_list){{2048}, 1, false};
    a->n_ubatch = (int_list){{512}, 1, false};
    a->threads = (int_list){{0}, 1, false};
    a->type_k[0] = a->type_v[0] = HALO_TYPE_F16;
    a->n_type_k = a->n_type_v = 1;
    a->reps = 5;
    for (int i = 1; i < argc;) {
        char *arg = argv[i];
        const char *v;
        if (tools_is_help(arg)) {
            usage(stdout);
            return 0;
        }
        if (tools_parse_load_flag(argc, argv, &i, &a->load)) continue;
        if (!strcmp(arg, "--no-warmup") || !strcmp(arg, "--progress") || !strcmp(arg, "-v") ||
            !strcmp(arg, "--verbose")) {
            if (!strcmp(arg, "--no-warmup")) a->no_warmup = true;
            if (!strcmp(arg, "--progress")) a->progress = true;
            i++;
            continue;
        }
        if (!(v = tools_flag_value(argc, argv, &i))) return 2;
        char *val = argv[i - 1]; /* the same string, writable for in-place splitting */
        bool ok = true;
        if (!strcmp(arg, "-m") || !strcmp(arg, "--model")) ok = parse_str_list(arg, val, &a->models);
        else if (!strcmp(arg, "-p") || !strcmp(arg, "--n-prompt"))
            ok = parse_int_list(arg, v, 0, 1 << 20, &a->n_prompt);
        else if (!strcmp(arg, "-n") || !strcmp(arg, "--n-gen"))
            ok = parse_int_list(arg, v, 0, 1 << 20, &a->n_gen);
        else if (!strcmp(arg, "-d") || !strcmp(arg, "--n-depth"))
            ok = parse_int_list(arg, v, 0, 1 << 24, &a->n_depth);
        else if (!strcmp(arg, "-b") || !strcmp(arg, "--batch-size"))
            ok = parse_int_list(arg, v, 1, 1 << 20, &a->n_batch);
        else if (!strcmp(arg, "-ub") || !strcmp(arg, "--ubatch-size"))
            ok = parse_int_list(arg, v, 1, 1 << 20, &a->n_ubatch);
        else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads"))
            ok = parse_int_list(arg, v, 1, 1024, &a->threads);
        else if (!strcmp(arg, "-r") || !strcmp(arg, "--repetitions"))
            ok = tools_parse_int(arg, v, 1, 100000, &a->reps);
        else if (!strcmp(arg, "-ctk") || !strcmp(arg, "--cache-type-k")) {
            ok = parse_types(arg, val, a->type_k, &a->n_type_k);
            a->type_k_given = true;
        } else if (!strcmp(arg, "-ctv") || !strcmp(arg, "--cache-type-v")) {
            ok = parse_types(arg, val, a->type_v, &a->n_type_v);
            a->type_v_given = true;
        } else if (!strcmp(arg, "-pg")) {
            int_list pair = {0};
            ok = parse_int_list(arg, v, 0, 1 << 20, &pair);
            if (ok && pair.n != 2) {
                fprintf(stderr, "error: -pg: give two numbers, P,N (e.g. -pg 512,128)\n");
                ok = false;
            }
            ok = ok && list_push(arg, &a->pg_p, pair.v[0]) && list_push(arg, &a->pg_n, pair.v[1]);
        } else if (!strcmp(arg, "-o") || !strcmp(arg, "--output")) {
            if (!strcmp(v, "md")) a->fmt = OUT_MD;
            else if (!strcmp(v, "csv")) a->fmt = OUT_CSV;
            else if (!strcmp(v, "json")) a->fmt = OUT_JSON;
            else if (!strcmp(v, "jsonl")) a->fmt = OUT_JSONL;
            else {
                fprintf(stderr, "error: %s: '%s' is not an output format (md, csv, json, jsonl)\n",
                        arg, v);
                ok = false;
            }
        } else if (!strcmp(arg, "-mmp") || !strcmp(arg, "--mmap")) {
            if (!strcmp(v, "0")) a->load.mode = HALO_LOAD_READ;
            else if (!strcmp(v, "1")) a->load.mode = HALO_LOAD_MMAP;
            else {
                fprintf(stderr, "error: %s: give 0 or 1\n", arg);
                ok = false;
            }
        } else if (!strcmp(arg, "-fa") || !strcmp(arg, "--flash-attn")) {
            /* accepted so that llama-bench command lines run unchanged */
        } else {
            fprintf(stderr, "error: unknown option '%s' (halo bench --help lists them)\n", arg);
            return 2;
        }
        if (!ok) return 2;
    }
    if (a->models.n == 0) {
        a->models.v[0] = tools_default_model();
        a->models.n = 1;
    }
    return -1;
}

/* ---- running ----------------------------------------------------------------------- */

typedef struct rng32 {
    uint64_t s;
} rng32;

static int32_t rand_token(rng32 *r, int32_t n_vocab) {
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return (int32_t)((r->s >> 33) % (uint64_t)n_vocab);
}

typedef struct runner {
    halo_context *ctx;
    int32_t n_vocab, bos;
    bool add_bos;
    int32_t *tok, *pos, *seq;
    rng32 rng;
} runner;

/* n tokens in batches of n_batch, continuing sequence 0 */
static bool run_prompt(runner *r, int32_t n, int32_t n_batch, halo_error *err) {
    for (int32_t done = 0; done < n;) {
        int32_t nb = n - done < n_batch ? n - done : n_batch;
        int32_t at = halo_seq_length(r->ctx, 0);
        for (int32_t k = 0; k < nb; k++) {
            r->tok[k] = at + k == 0 && r->add_bos ? r->bos : rand_token(&r->rng, r->n_vocab);
            r->pos[k] = at + k;
        }
        halo_batch b = {nb, r->tok, r->pos, r->seq, NULL};
        if (halo_decode(r->ctx, &b, err)) return false;
        done += nb;
    }
    return true;
}

static bool run_gen(runner *r, int32_t n, halo_error *err) {
    int32_t t = r->add_bos ? r->bos : rand_token(&r->rng, r->n_vocab);
    for (int32_t i = 0; i < n; i++) {
        int32_t pos = halo_seq_length(r->ctx, 0), seq = 0;
        halo_batch b = {1, &t, &pos, &seq, NULL};
        if (halo_decode(r->ctx, &b, err) || !halo_get_logits(r->ctx, 0)) {
            if (!err->msg[0]) halo_error_set(err, HALO_ERR_ARG, "no logits after a decode");
            return false;
        }
        t = rand_token(&r->rng, r->n_vocab);
    }
    return true;
}

typedef struct result {
    const char *model_path, *model_type;
    uint64_t model_size, n_params;
    int64_t n_batch, n_ubatch, threads, n_prompt, n_gen, n_depth;
    int type_k, type_v;
    char test_time[32];
    int n;
    double *ns; /* [reps] */
} result;

static double mean_of(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    return n ? s / n : 0;
}
static double sd_of(const double *x, int n) {
    if (n < 2) return 0;
    double m = mean_of(x, n), s = 0;
    for (int i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return sqrt(s / (n - 1));
}

/* ---- output ------------------------------------------------------------------------ */

static char cpu_info[256] = "";

static void read_cpu_info(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10)) continue;
        char *c = strchr(line, ':');
        if (!c) continue;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = '\0';
        snprintf(cpu_info, sizeof cpu_info, "%s", c);
        break;
    }
    fclose(f);
}

static const char *type_name(int t, char *buf, size_t size) {
    snprintf(buf, size, "%s", halo_type_name(t));
    for (char *p = buf; *p; p++) *p = (char)tolower((unsigned char)*p);
    return buf;
}

/* The backend a run uses, llama-bench's names: "CPU", or "CUDA" / "Vulkan" with -ngl (the
 * backend resolved once, after parsing). */
static bool on_gpu(const halo_load_options *lo) { return lo->n_gpu_layers != 0; }
static const char *backend_name(const halo_load_options *lo) {
    return on_gpu(lo) ? halo_gpu_backend_name(lo->gpu_backend) : "CPU";
}

static const char *gpu_name(const halo_load_options *lo) {
    static char name[256];
    name[0] = 0;
    if (!on_gpu(lo)) return name;
#ifdef HALO_HAVE_CUDA
    if (lo->gpu_backend == HALO_GPU_CUDA)
        halo_cuda_device_info(lo->main_gpu, name, sizeof name, NULL, NULL);
#endif
#ifdef HALO_HAVE_VULKAN
    halo_vk_device_info info[16];
    halo_error err = {0};
    if (lo->gpu_backend == HALO_GPU_VULKAN && lo->main_gpu < halo_vk_devices(info, 16, &err) &&
        lo->main_gpu < 16)
        snprintf(name, sizeof name, "%s", info[lo->main_gpu].name);
#endif
    return name;
}

static const char *load_mode_name(const halo_load_options *lo) {
    if (lo->mode == HALO_LOAD_READ) return lo->mlock ? "mlock" : "none";
    return lo->mlock ? "mmap+mlock" : "mmap";
}

typedef enum { F_STR, F_INT, F_BOOL } field_kind;
typedef struct field {
    const char *name;
    field_kind kind;
    char text[512];
} field;

/* llama-bench's fields, in its order */
static int result_fields(const result *r, const halo_load_options *lo, field *f) {
    int n = 0;
    char tk[16], tv[16];
#define FS(nm, ...) (f[n].name = nm, f[n].kind = F_STR, snprintf(f[n].text, sizeof f[n].text, __VA_ARGS__), n++)
#define FI(nm, ...) (f[n].name = nm, f[n].kind = F_INT, snprintf(f[n].text, sizeof f[n].text, __VA_ARGS__), n++)
#define FB(nm, v) (f[n].name = nm, f[n].kind = F_BOOL, snprintf(f[n].text, sizeof f[n].text, "%s", (v) ? "true" : "false"), n++)
    double ts[r->n];
    for (int i = 0; i < r->n; i++) ts[i] = (double)(r->n_prompt + r->n_gen) * 1e9 / r->ns[i];
    FS("build_commit", "%s", HALO_BUILD_COMMIT);
    FI("build_number", "%d", HALO_BUILD_NUMBER);
    FS("cpu_info", "%s", cpu_info);
    FS("gpu_info", "%s", gpu_name(lo));
    FS("backends", "%s", backend_name(lo));
    FS("model_filename", "%s", r->model_path);
    FS("model_type", "%s", r->model_type);
    FI("model_size", "%llu", (unsigned long long)r->model_size);
    FI("model_n_params", "%llu", (unsigned long long)r->n_params);
    FI("n_batch", "%lld", (long long)r->n_batch);
    FI("n_ubatch", "%lld", (long long)r->n_ubatch);
    FI("n_threads", "%lld", (long long)r->threads);
    FS("cpu_mask", "%s", "0x0");
    FB("cpu_strict", false);
    FI("poll", "%d", 0);
    FS("type_k", "%s", type_name(r->type_k, tk, sizeof tk));
    FS("type_v", "%s", type_name(r->type_v, tv, sizeof tv));
    FI("n_gpu_layers", "%d", lo->n_gpu_layers < 0 ? 99 : lo->n_gpu_layers);
    FI("n_cpu_moe", "%d", lo->n_gpu_layers != 0 ? lo->n_cpu_moe : 0);
    FS("split_mode", "%s", "none");
    FI("main_gpu", "%d", lo->main_gpu);
    FB("no_kv_offload", false);
    FI("flash_attn", "%d", 1);
    if (on_gpu(lo)) FS("devices", "%s%d", backend_name(lo), lo->main_gpu);
    else FS("devices", "%s", "CPU");
    FS("tensor_split", "%s", "0.00");
    FS("tensor_buft_overrides", "%s", "none");
    FS("load_mode", "%s", load_mode_name(lo));
    FB("embeddings", false);
    FI("no_op_offload", "%d", 0);
    FB("no_host", false);
    FI("fit_target", "%d", 0);
    FI("fit_min_ctx", "%d", 0);
    FI("n_prompt", "%lld", (long long)r->n_prompt);
    FI("n_gen", "%lld", (long long)r->n_gen);
    FI("n_depth", "%lld", (long long)r->n_depth);
    FS("test_time", "%s", r->test_time);
    FI("avg_ns", "%.0f", mean_of(r->ns, r->n));
    FI("stddev_ns", "%.0f", sd_of(r->ns, r->n));
    FI("avg_ts", "%.6f", mean_of(ts, r->n));
    FI("stddev_ts", "%.6f", sd_of(ts, r->n));
#undef FS
#undef FI
#undef FB
    return n;
}

static void print_csv_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"') putchar('"');
        putchar(*s);
    }
    putchar('"');
}

static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void print_json_samples(const result *r, const char *sep) {
    printf("\"samples_ns\": [ ");
    for (int i = 0; i < r->n; i++) printf(i ? ", %.0f" : "%.0f", r->ns[i]);
    printf(" ],%s\"samples_ts\": [ ", sep);
    for (int i = 0; i < r->n; i++)
        printf(i ? ", %g" : "%g", (double)(r->n_prompt + r->n_gen) * 1e9 / r->ns[i]);
    printf(" ]");
}

static void print_json(const result *r, const halo_load_options *lo, bool first, bool lines) {
    field f[64];
    int n = result_fields(r, lo, f);
    if (!lines) printf(first ? "[\n  {\n" : ",\n  {\n");
    else putchar('{');
    for (int i = 0; i < n; i++) {
        if (!lines) printf("    ");
        printf("\"%s\": ", f[i].name);
        if (f[i].kind == F_STR) print_json_string(f[i].text);
        else printf("%s", f[i].text);
        printf(lines ? ", " : ",\n");
    }
    if (!lines) printf("    ");
    print_json_samples(r, lines ? "" : "\n    ");
    printf(lines ? "}\n" : "\n  }");
}

static void print_csv(const result *r, const halo_load_options *lo, bool first) {
    field f[64];
    int n = result_fields(r, lo, f);
    if (first)
        for (int i = 0; i < n; i++) printf(i ? ",%s" : "%s", f[i].name);
    if (first) putchar('\n');
    for (int i = 0; i < n; i++) {
        if (i) putchar(',');
        print_csv_string(f[i].kind == F_BOOL ? (!strcmp(f[i].text, "true") ? "1" : "0") : f[i].text);
    }
    putchar('\n');
}

/* markdown: the columns llama-bench shows */
typedef struct md_col {
    const char *title;
    int width; /* negative: left-aligned */
} md_col;

static size_t utf8_len(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void md_cell(const char *text, int width) {
    int w = width < 0 ? -width : width, pad = w - (int)utf8_len(text);
    if (pad < 0) pad = 0;
    printf(" ");
    if (width > 0) printf("%*s", pad, "");
    printf("%s", text);
    if (width < 0) printf("%*s", pad, "");
    printf(" |");
}

typedef struct md_cols {
    bool n_batch, n_ubatch, type_k, type_v, lm;
    bool gpu; /* llama-bench: an ngl column instead of threads for a GPU backend */
    bool n_cpu_moe; /* experts kept on the CPU (--n-cpu-moe): its column, as llama-bench's */
} md_cols;

static void md_header(const md_cols *c) {
    md_col cols[16];
    int n = 0;
    cols[n++] = (md_col){"model", -30};
    cols[n++] = (md_col){"size", 10};
    cols[n++] = (md_col){"params", 10};
    cols[n++] = (md_col){"backend", -10};
    if (c->gpu) cols[n++] = (md_col){"ngl", 3};
    else cols[n++] = (md_col){"threads", 7};
    if (c->n_cpu_moe) cols[n++] = (md_col){"n_cpu_moe", 10};
    if (c->n_batch) cols[n++] = (md_col){"n_batch", 7};
    if (c->n_ubatch) cols[n++] = (md_col){"n_ubatch", 8};
    if (c->type_k) cols[n++] = (md_col){"type_k", 6};
    if (c->type_v) cols[n++] = (md_col){"type_v", 6};
    if (c->lm) cols[n++] = (md_col){"lm", 10};
    cols[n++] = (md_col){"test", 15};
    cols[n++] = (md_col){"t/s", 20};
    printf("|");
    for (int i = 0; i < n; i++) md_cell(cols[i].title, cols[i].width);
    printf("\n|");
    for (int i = 0; i < n; i++) {
        int w = cols[i].width < 0 ? -cols[i].width : cols[i].width;
        printf(" ");
        for (int k = 0; k < w - (cols[i].width > 0); k++) putchar('-');
        printf("%s |", cols[i].width > 0 ? ":" : "");
    }
    printf("\n");
}

static void md_row(const result *r, const md_cols *c, const halo_load_options *lo) {
    char buf[128];
    printf("|");
    md_cell(r->model_type, -30);
    double sz = (double)r->model_size;
    if (sz < 1024.0 * 1024 * 1024) snprintf(buf, sizeof buf, "%.2f MiB", sz / (1024.0 * 1024));
    else snprintf(buf, sizeof buf, "%.2f GiB", sz / (1024.0 * 1024 * 1024));
    md_cell(buf, 10);
    double np = (double)r->n_params;
    if (np < 1e9) snprintf(buf, sizeof buf, "%.2f M", np / 1e6);
    else snprintf(buf, sizeof buf, "%.2f B", np / 1e9);
    md_cell(buf, 10);
    md_cell(backend_name(lo), -10);
    if (c->gpu) {
        snprintf(buf, sizeof buf, "%d", lo->n_gpu_layers < 0 ? 99 : lo->n_gpu_layers);
        md_cell(buf, 3);
    } else {
        snprintf(buf, sizeof buf, "%lld", (long long)r->threads);
        md_cell(buf, 7);
    }
    if (c->n_cpu_moe) snprintf(buf, sizeof buf, "%d", lo->n_cpu_moe), md_cell(buf, 10);
    if (c->n_batch) snprintf(buf, sizeof buf, "%lld", (long long)r->n_batch), md_cell(buf, 7);
    if (c->n_ubatch) snprintf(buf, sizeof buf, "%lld", (long long)r->n_ubatch), md_cell(buf, 8);
    if (c->type_k) md_cell(type_name(r->type_k, buf, sizeof buf), 6);
    if (c->type_v) md_cell(type_name(r->type_v, buf, sizeof buf), 6);
    if (c->lm) md_cell(load_mode_name(lo), 10);
    int o = 0;
    if (r->n_prompt > 0 && r->n_gen == 0) o = snprintf(buf, sizeof buf, "pp%lld", (long long)r->n_prompt);
    else if (r->n_gen > 0 && r->n_prompt == 0) o = snprintf(buf, sizeof buf, "tg%lld", (long long)r->n_gen);
    else o = snprintf(buf, sizeof buf, "pp%lld+tg%lld", (long long)r->n_prompt, (long long)r->n_gen);
    if (r->n_depth > 0) snprintf(buf + o, sizeof buf - (size_t)o, " @ d%lld", (long long)r->n_depth);
    md_cell(buf, 15);
    double ts[r->n];
    for (int i = 0; i < r->n; i++) ts[i] = (double)(r->n_prompt + r->n_gen) * 1e9 / r->ns[i];
    snprintf(buf, sizeof buf, "%.2f ± %.2f", mean_of(ts, r->n), sd_of(ts, r->n));
    md_cell(buf, 20);
    printf("\n");
}

/* ---- the benchmark ------------------------------------------------------------------- */

typedef struct test_spec {
    int64_t n_prompt, n_gen;
} test_spec;

int cmd_bench(int argc, char **argv) {
    bench_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    read_cpu_info();

    test_spec tests[3 * MAX_LIST];
    int n_tests = 0;
    for (int i = 0; i < a.n_prompt.n; i++)
        if (a.n_prompt.v[i] > 0) tests[n_tests++] = (test_spec){a.n_prompt.v[i], 0};
    for (int i = 0; i < a.n_gen.n; i++)
        if (a.n_gen.v[i] > 0) tests[n_tests++] = (test_spec){0, a.n_gen.v[i]};
    for (int i = 0; i < a.pg_p.n; i++)
        if (a.pg_p.v[i] > 0 || a.pg_n.v[i] > 0) tests[n_tests++] = (test_spec){a.pg_p.v[i], a.pg_n.v[i]};
    if (n_tests == 0) {
        fprintf(stderr, "error: nothing to run (every -p, -n and -pg is 0)\n");
        return 2;
    }
    if (on_gpu(&a.load)) a.load.gpu_backend = halo_gpu_backend_of(&a.load);
    md_cols cols = {
        .n_batch = a.n_batch.n > 1 || a.n_batch.v[0] != 2048,
        .n_ubatch = a.n_ubatch.n > 1 || a.n_ubatch.v[0] != 512,
        .type_k = a.n_type_k > 1 || a.type_k[0] != HALO_TYPE_F16,
        .type_v = a.n_type_v > 1 || a.type_v[0] != HALO_TYPE_F16,
        .lm = a.load.mode != HALO_LOAD_MMAP || a.load.mlock,
        .gpu = on_gpu(&a.load),
        .n_cpu_moe = on_gpu(&a.load) && a.load.n_cpu_moe > 0,
    };

    long n_cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (n_cores < 1) n_cores = 1;
    double *ns = malloc((size_t)a.reps * sizeof *ns);
    if (!ns) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    bool first = true;
    rc = 0;
    if (a.fmt == OUT_MD) md_header(&cols);
    fflush(stdout);
    for (int mi = 0; mi < a.models.n && !rc; mi++) {
        halo_model *model = NULL;
        if (!tools_load_model(a.models.v[mi], &a.load, &model, NULL)) {
            rc = 1;
            break;
        }
        const halo_tokenizer *tok = halo_model_tokenizer(model);
        runner r = {0};
        r.n_vocab = halo_model_n_vocab(model);
        r.add_bos = halo_tok_add_bos(tok) && halo_tok_bos(tok) >= 0;
        r.bos = halo_tok_bos(tok);
        r.rng.s = 1234;
        for (int bi = 0; bi < a.n_batch.n && !rc; bi++)
        for (int ui = 0; ui < a.n_ubatch.n && !rc; ui++)
        for (int ki = 0; ki < a.n_type_k && !rc; ki++)
        for (int vi = 0; vi < a.n_type_v && !rc; vi++)
        for (int ti = 0; ti < a.threads.n && !rc; ti++)
        for (int di = 0; di < a.n_depth.n && !rc; di++)
        for (int te = 0; te < n_tests && !rc; te++) {
            result res = {0};
            res.model_path = a.models.v[mi];
            res.model_type = halo_model_desc(model);
            res.model_size = halo_model_size_bytes(model);
            res.n_params = halo_model_n_params(model);
            res.n_batch = a.n_batch.v[bi];
            res.n_ubatch = a.n_ubatch.v[ui];
            res.type_k = a.type_k[ki];
            res.type_v = a.type_v[vi];
            res.threads = a.threads.v[ti] ? a.threads.v[ti] : n_cores;
            res.n_depth = a.n_depth.v[di];
            res.n_prompt = tests[te].n_prompt;
            res.n_gen = tests[te].n_gen;
            res.ns = ns;
            time_t now = time(NULL);
            struct tm tm;
            gmtime_r(&now, &tm);
            strftime(res.test_time, sizeof res.test_time, "%Y-%m-%dT%H:%M:%SZ", &tm);
            if (a.progress)
                fprintf(stderr, "bench: %s: pp %lld tg %lld depth %lld, %lld threads\n",
                        res.model_path, (long long)res.n_prompt, (long long)res.n_gen,
                        (long long)res.n_depth, (long long)res.threads);

            halo_context_params cp;
            halo_context_default_params(&cp);
            uint64_t cells = (uint64_t)res.n_prompt + (uint64_t)res.n_gen + (uint64_t)res.n_depth;
            cp.n_ctx = (uint32_t)(cells > 0 ? cells : 1);
            cp.n_seq_max = 1;
            cp.n_batch = (uint32_t)res.n_batch;
            cp.n_ubatch = (uint32_t)(res.n_ubatch < res.n_batch ? res.n_ubatch : res.n_batch);
            cp.type_k = res.type_k;
            cp.type_v = res.type_v;
            cp.n_threads = (int)res.threads;
            halo_error err = {0};
            if (halo_context_new(model, &cp, &r.ctx, &err)) {
                fprintf(stderr, "error: %s\n", err.msg);
                rc = 1;
                break;
            }
            int32_t nb = (int32_t)cp.n_batch;
            r.tok = malloc((size_t)nb * sizeof *r.tok);
            r.pos = malloc((size_t)nb * sizeof *r.pos);
            r.seq = calloc((size_t)nb, sizeof *r.seq);
            bool ok = r.tok && r.pos && r.seq;
            if (!ok) halo_error_set(&err, HALO_ERR_NOMEM, "out of memory");
            if (ok && !a.no_warmup) {
                if (res.n_prompt > 0) ok = run_prompt(&r, (int32_t)res.n_prompt, nb, &err);
                if (ok && res.n_gen > 0) ok = run_gen(&r, 1, &err);
            }
            for (int rep = 0; ok && rep < a.reps; rep++) {
                halo_seq_clear(r.ctx, 0);
                if (res.n_depth > 0) ok = run_prompt(&r, (int32_t)res.n_depth, nb, &err);
                double t0 = halo_time_seconds();
                if (ok && res.n_prompt > 0) ok = run_prompt(&r, (int32_t)res.n_prompt, nb, &err);
                if (ok && res.n_gen > 0) ok = run_gen(&r, (int32_t)res.n_gen, &err);
                ns[rep] = (halo_time_seconds() - t0) * 1e9;
                if (ns[rep] < 1) ns[rep] = 1;
                res.n = rep + 1;
            }
            free(r.tok), free(r.pos), free(r.seq);
            halo_context_free(r.ctx);
            r.ctx = NULL;
            if (!ok) {
                fprintf(stderr, "error: %s\n", err.msg);
                rc = 1;
                break;
            }
            switch (a.fmt) {
            case OUT_MD: md_row(&res, &cols, &a.load); break;
            case OUT_CSV: print_csv(&res, &a.load, first); break;
            case OUT_JSON: print_json(&res, &a.load, first, false); break;
            case OUT_JSONL: print_json(&res, &a.load, first, true); break;
            }
            first = false;
            fflush(stdout);
        }
        halo_model_free(model);
    }
    if (a.fmt == OUT_JSON) printf(first ? "[\n]\n" : "\n]\n");
    if (a.fmt == OUT_MD) printf("\nbuild: %s (%d)\n", HALO_BUILD_COMMIT, HALO_BUILD_NUMBER);
    if (fflush(stdout)) rc = 1;
    free(ns);
    return rc;
}
