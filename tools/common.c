/* Argument helpers shared by the subcommands. */
#define _GNU_SOURCE
#include "tools.h"

#include "util/util.h"
#ifdef HALO_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif
#ifdef HALO_HAVE_VULKAN
#include "kernels/vulkan/vk_ops.h"
#endif

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool file_exists(const char *p) { return access(p, R_OK) == 0; }

const char *tools_default_model(void) {
    static char path[PATH_MAX + 64];
    static const char *name = "models/kdoc-moe-bf16.gguf";
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        /* build/halo -> ../models; installed bin/halo -> ../share/halo/models */
        const char *rel[] = {"/../", "/../share/halo/", "/"};
        for (size_t k = 0; k < sizeof rel / sizeof rel[0]; k++) {
            snprintf(path, sizeof path, "%s%s%s", exe, rel[k], name);
            if (file_exists(path)) return path;
        }
    }
    snprintf(path, sizeof path, "%s", name);
    return path;
}

bool tools_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

/* The value of a loading flag that takes one; exits with usage status 2 when missing
 * or malformed (the flag parsers return bool, and such a command line cannot run). */
static int64_t load_flag_int(int argc, char **argv, int *i, int64_t lo, int64_t hi) {
    const char *flag = argv[*i];
    if (*i + 1 >= argc) {
        fprintf(stderr, "error: %s needs a value\n", flag);
        exit(2);
    }
    int64_t v;
    if (!tools_parse_int(flag, argv[*i + 1], lo, hi, &v)) exit(2);
    *i += 2;
    return v;
}

/* CUDA<n> / Vulkan<n> into opts (the backend and main_gpu); false if v is neither. */
static bool device_name(const char *v, halo_load_options *opts) {
    static const struct {
        const char *prefix;
        halo_gpu_backend backend;
    } kinds[] = {{"CUDA", HALO_GPU_CUDA}, {"Vulkan", HALO_GPU_VULKAN}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t n = strlen(kinds[k].prefix);
        char *end = NULL;
        if (strncmp(v, kinds[k].prefix, n) || !v[n] || v[n] < '0' || v[n] > '9') continue;
        long d = strtol(v + n, &end, 10);
        if (*end || d > 1023) return false;
        opts->gpu_backend = kinds[k].backend;
        opts->main_gpu = (int)d;
        return true;
    }
    return false;
}

/* --list-devices: llama.cpp's list, the devices -dev takes, on stdout. */
static void list_devices(void) {
    printf("Available devices:\n");
#ifdef HALO_HAVE_CUDA
    for (int d = 0; d < halo_cuda_device_count(); d++) {
        char name[128] = "";
        size_t total = 0, avail = 0;
        if (halo_cuda_device_info(d, name, sizeof name, &total, &avail)) continue;
        printf("  CUDA%d: %s (%zu MiB, %zu MiB free)\n", d, name, total >> 20, avail >> 20);
    }
#endif
#ifdef HALO_HAVE_VULKAN
    halo_error err = {0};
    halo_vk_device_info info[16];
    int n = halo_vk_devices(info, 16, &err);
    for (int d = 0; d < n && d < 16; d++) {
        const halo_vk_device_info *v = &info[d];
        printf("  Vulkan%d: %s (%" PRIu64 " MiB, %s%s%s)", d, v->name, v->memory_bytes >> 20,
               v->type, v->uma ? ", UMA: memory shared with the host" : "",
               v->uma && v->host_import ? ", weights used in place" : "");
        if (!v->usable) printf(" not usable: %s", v->why_not);
        printf("\n");
    }
#endif
}

bool tools_parse_load_flag(int argc, char **argv, int *i, halo_load_options *opts) {
    const char *a = argv[*i];
    if (!strcmp(a, "--no-mmap")) opts->mode = HALO_LOAD_READ;
    else if (!strcmp(a, "--mmap")) opts->mode = HALO_LOAD_MMAP;
    else if (!strcmp(a, "--mlock")) opts->mlock = true;
    else if (!strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers") || !strcmp(a, "--gpu-layers")) {
        /* llama.cpp's: a layer count, 99 or more meaning all; -1 and "all" as well */
        if (*i + 1 < argc && !strcmp(argv[*i + 1], "all")) {
            opts->n_gpu_layers = -1;
            *i += 2;
        } else {
            opts->n_gpu_layers = (int)load_flag_int(argc, argv, i, -1, 1 << 20);
        }
        return true;
    } else if (!strcmp(a, "-ncmoe") || !strcmp(a, "--n-cpu-moe")) {
        opts->n_cpu_moe = (int)load_flag_int(argc, argv, i, 0, 1 << 20);
        return true;
    } else if (!strcmp(a, "-cmoe") || !strcmp(a, "--cpu-moe")) {
        opts->n_cpu_moe = 1 << 20;
    } else if (!strcmp(a, "-ot") || !strcmp(a, "--override-tensor")) {
        /* PATTERN=DEVICE, several comma-separated or repeated flags, as llama.cpp's */
        static const char *rules[64];
        static int n_rules;
        if (*i + 1 >= argc) {
            fprintf(stderr, "error: %s needs PATTERN=DEVICE (e.g. \"\\.ffn_.*_exps\\.=CPU\")\n", a);
            exit(2);
        }
        char *list = strdup(argv[*i + 1]);
        if (!list) exit(2);
        for (char *save = NULL, *r = strtok_r(list, ",", &save); r; r = strtok_r(NULL, ",", &save)) {
            if (n_rules == 64) {
                fprintf(stderr, "error: %s: at most 64 rules\n", a);
                exit(2);
            }
            rules[n_rules++] = r; /* list lives as long as the process */
        }
        opts->tensor_overrides = rules;
        opts->n_tensor_overrides = n_rules;
        *i += 2;
        return true;
    } else if (!strcmp(a, "-mg") || !strcmp(a, "--main-gpu")) {
        opts->main_gpu = (int)load_flag_int(argc, argv, i, 0, 1023);
        return true;
    } else if (!strcmp(a, "-dev") || !strcmp(a, "--device")) {
        /* llama.cpp's device names: CUDA0, CUDA1, ..., Vulkan0, ... or none (CPU only) */
        if (*i + 1 >= argc) {
            fprintf(stderr, "error: %s needs a value (CUDA0, Vulkan0, ... or none; "
                            "--list-devices lists them)\n", a);
            exit(2);
        }
        const char *v = argv[*i + 1];
        if (!strcmp(v, "none")) {
            opts->n_gpu_layers = 0;
        } else if (!device_name(v, opts)) {
            fprintf(stderr, "error: %s %s: unknown device (CUDA0, Vulkan0, ... or none; "
                            "--list-devices lists them)\n", a, v);
            exit(2);
        }
        *i += 2;
        return true;
    } else if (!strcmp(a, "--list-devices")) {
        list_devices();
        exit(0);
    } else return false;
    (*i)++;
    return true;
}

int tools_parse_compat_flag(int argc, char **argv, int *i) {
    static const struct {
        const char *a, *b;
        bool value;
        const char *why;
    } flags[] = {
        {"--no-context-shift", "--context-shift", false, "halo never shifts a context: a full one ends the request"},
        {"--cache-reuse", NULL, true, "halo reuses cached prefixes (and hybrid checkpoints) by itself"},
        {"--threads-http", NULL, true, "the HTTP server sizes its own threads"},
        {"--timeout", "-to", true, "halo's server keeps connections open while requests run"},
        {"--no-warmup", NULL, false, "halo does no warm-up pass"},
        {"-v", "--verbose", false, "halo logs what its commands do; --log-disable quiets the server"},
        {"--jinja", NULL, false, "halo always renders the model's chat template"},
        {"-fa", "--flash-attn", true, "halo's attention is always flash attention"},
        {"--no-webui", NULL, false, "halo serves no web UI"},
        {"--metrics", NULL, false, "halo always serves /metrics"},
        {"--cont-batching", "-cb", false, "halo always batches continuously"},
        {"--no-perf", NULL, false, "halo prints timings on stderr only"},
        {"--log-colors", NULL, true, "halo does not color its log"},
        {"--numa", NULL, true, "halo's threads are not NUMA-pinned"},
        {"-nkvo", "--no-kv-offload", false, "the KV cache is where the model runs"},
        {"--swa-full", NULL, false, "halo's supported models have no sliding-window attention"},
    };
    const char *a = argv[*i];
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) {
        if (strcmp(a, flags[k].a) != 0 && !(flags[k].b && !strcmp(a, flags[k].b))) continue;
        if (flags[k].value && *i + 1 >= argc) {
            fprintf(stderr, "error: %s needs a value\n", a);
            return -1;
        }
        if (flags[k].value)
            fprintf(stderr, "note: %s %s is accepted and ignored (%s)\n", a, argv[*i + 1], flags[k].why);
        else
            fprintf(stderr, "note: %s is accepted and ignored (%s)\n", a, flags[k].why);
        *i += flags[k].value ? 2 : 1;
        return 1;
    }
    return 0;
}

const char *tools_flag_value(int argc, char **argv, int *i) {
    const char *flag = argv[*i];
    if (*i + 1 >= argc) {
        fprintf(stderr, "error: %s needs a value\n", flag);
        return NULL;
    }
    *i += 2;
    return argv[*i - 1];
}

bool tools_parse_int(const char *flag, const char *text, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    /* accept a k/K suffix for token counts: -c 32k */
    if (end != text && (*end == 'k' || *end == 'K') && end[1] == '\0') {
        if (v > LLONG_MAX / 1024 || v < LLONG_MIN / 1024) errno = ERANGE;
        v *= 1024;
        end++;
    }
    if (end == text || *end || errno) {
        fprintf(stderr, "error: %s: '%s' is not an integer\n", flag, text);
        return false;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "error: %s: %lld is out of range [%lld, %lld]\n", flag, v, (long long)lo,
                (long long)hi);
        return false;
    }
    *out = v;
    return true;
}

bool tools_parse_float(const char *flag, const char *text, double lo, double hi, double *out) {
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !isfinite(v)) {
        fprintf(stderr, "error: %s: '%s' is not a number\n", flag, text);
        return false;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "error: %s: %g is out of range [%g, %g]\n", flag, v, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_kv_type(const char *flag, const char *text, int *out) {
    int t = halo_kv_type_from_name(text);
    if (t < 0) {
        fprintf(stderr, "error: %s: '%s' is not a KV cache type (use one of %s)\n", flag, text,
                halo_kv_type_names());
        return false;
    }
    *out = t;
    return true;
}

static bool parse_mem(const char *flag, const char *text, uint64_t *out) {
    /* a bare number is GiB: "--mem 64" means what the user thinks it means */
    if (!halo_parse_size(text, 1ull << 30, out) || *out == 0) {
        fprintf(stderr, "error: %s: '%s' is not a memory size (e.g. 64GiB, 48G, 60GB)\n", flag,
                text);
        return false;
    }
    return true;
}

int tools_parse_plan_flag(int argc, char **argv, int *i, halo_plan_options *plan,
                          bool *ctx_given) {
    const char *arg = argv[*i], *v;
    int64_t n;
    bool ok;
    if (!strcmp(arg, "-c") || !strcmp(arg, "--ctx-size")) {
        /* 0: the trained context, as in llama.cpp */
        ok = (v = tools_flag_value(argc, argv, i)) && tools_parse_int(arg, v, 0, 1ll << 30, &n);
        if (ok) plan->n_ctx = (uint64_t)n;
        if (ok && ctx_given) *ctx_given = true;
    } else if (!strcmp(arg, "-np") || !strcmp(arg, "--parallel")) {
        ok = (v = tools_flag_value(argc, argv, i)) && tools_parse_int(arg, v, 1, 1024, &n);
        if (ok) plan->n_slots = (uint32_t)n;
    } else if (!strcmp(arg, "-ctk") || !strcmp(arg, "--cache-type-k")) {
        ok = (v = tools_flag_value(argc, argv, i)) && parse_kv_type(arg, v, &plan->type_k);
    } else if (!strcmp(arg, "-ctv") || !strcmp(arg, "--cache-type-v")) {
        ok = (v = tools_flag_value(argc, argv, i)) && parse_kv_type(arg, v, &plan->type_v);
    } else if (!strcmp(arg, "--mem")) {
        ok = (v = tools_flag_value(argc, argv, i)) && parse_mem(arg, v, &plan->mem_bytes);
    } else {
        return 0;
    }
    return ok ? 1 : -1;
}

/* ---- sampling flags ---------------------------------------------------------- */

void tools_sampling_init(tools_sampling *s) {
    memset(s, 0, sizeof *s);
    halo_sampler_default_params(&s->params);
    s->params.logit_bias = s->bias;
}

bool tools_sampling_add_bias(tools_sampling *s, int32_t token, float bias) {
    if (s->params.n_logit_bias >= TOOLS_MAX_LOGIT_BIAS) return false;
    s->bias[s->params.n_logit_bias++] = (halo_logit_bias){token, bias};
    s->params.logit_bias = s->bias;
    return true;
}

/* TOKEN(+|-)BIAS, as llama.cpp's --logit-bias: "15043+1", "15043-inf" */
static bool parse_logit_bias(const char *flag, const char *text, tools_sampling *s) {
    char *end;
    errno = 0;
    long tok = strtol(text, &end, 10);
    if (end == text || errno || tok < 0 || tok > INT32_MAX || (*end != '+' && *end != '-')) {
        fprintf(stderr, "error: %s: '%s' is not TOKEN+BIAS or TOKEN-BIAS (e.g. 15043+1, 2-inf)\n",
                flag, text);
        return false;
    }
    const char *b = end;
    double bias;
    if (!strcmp(b, "-inf")) bias = -INFINITY;
    else {
        bias = strtod(b, &end);
        if (end == b || *end || !isfinite(bias) || fabs(bias) > 1e6) {
            fprintf(stderr, "error: %s: '%s': the bias must be a number or -inf\n", flag, text);
            return false;
        }
    }
    if (!tools_sampling_add_bias(s, (int32_t)tok, (float)bias)) {
        fprintf(stderr, "error: %s: more than %d logit biases\n", flag, TOOLS_MAX_LOGIT_BIAS);
        return false;
    }
    return true;
}

static bool is_grammar_flag(const char *a) {
    return !strcmp(a, "--grammar") || !strcmp(a, "--grammar-file") || !strcmp(a, "-j") ||
           !strcmp(a, "--json-schema") || !strcmp(a, "-jf") || !strcmp(a, "--json-schema-file");
}

/* --grammar TEXT, --grammar-file F, -j/--json-schema TEXT, -jf/--json-schema-file F: one of them */
static bool parse_grammar_flag(int argc, char **argv, int *i, tools_sampling *s) {
    const char *a = argv[*i], *v = tools_flag_value(argc, argv, i);
    if (!v) return false;
    if (s->grammar) {
        fprintf(stderr, "error: %s: a grammar or JSON schema was given already\n", a);
        return false;
    }
    bool file = strstr(a, "file") || !strcmp(a, "-jf");
    size_t len = 0;
    s->grammar = file ? tools_read_file(v, &len) : strdup(v);
    s->grammar_is_schema = a[1] == 'j' || strstr(a, "json");
    return s->grammar != NULL;
}

bool tools_sampling_grammar(const tools_sampling *s, halo_grammar **out) {
    *out = NULL;
    if (!s->grammar) return true;
    halo_error err = {0};
    char *gbnf = NULL;
    if (s->grammar_is_schema) {
        cJSON *schema = cJSON_Parse(s->grammar);
        if (!schema) {
            fprintf(stderr, "error: --json-schema: not valid JSON\n");
            return false;
        }
        int rc = halo_json_schema_to_gbnf(schema, &gbnf, &err);
        cJSON_Delete(schema);
        if (rc) {
            fprintf(stderr, "error: --json-schema: %s\n", err.msg);
            return false;
        }
    }
    const char *src = gbnf ? gbnf : s->grammar;
    int rc = halo_grammar_compile(src, strlen(src), NULL, out, &err);
    free(gbnf);
    if (rc)
        fprintf(stderr, "error: %s: %s\n", s->grammar_is_schema ? "--json-schema" : "--grammar",
                err.msg);
    return rc == 0;
}

void tools_sampling_free(tools_sampling *s) {
    free(s->grammar);
    s->grammar = NULL;
}

int tools_parse_sampling_flag(int argc, char **argv, int *i, tools_sampling *s) {
    const char *a = argv[*i], *v;
    halo_sampler_params *p = &s->params;
    double d;
    int64_t n;
    bool ok;
#define FLOAT_FLAG(name, field, lo, hi)                                                            \
    if (!strcmp(a, name)) {                                                                        \
        ok = (v = tools_flag_value(argc, argv, i)) && tools_parse_float(a, v, lo, hi, &d);         \
        if (ok) p->field = (float)d;                                                               \
        return ok ? 1 : -1;                                                                        \
    }
    FLOAT_FLAG("--temp", temp, 0.0, 100.0)
    FLOAT_FLAG("--top-p", top_p, 0.0, 1.0)
    FLOAT_FLAG("--min-p", min_p, 0.0, 1.0)
    FLOAT_FLAG("--presence-penalty", presence_penalty, -2.0, 2.0)
    FLOAT_FLAG("--frequency-penalty", frequency_penalty, -2.0, 2.0)
#undef FLOAT_FLAG
    if (!strcmp(a, "--repeat-penalty")) {
        ok = (v = tools_flag_value(argc, argv, i)) && tools_parse_float(a, v, 0.0, 10.0, &d);
        if (ok && d <= 0.0) {
            fprintf(stderr, "error: %s: must be > 0 (1 turns it off)\n", a);
            ok = false;
        }
        if (ok) p->repeat_penalty = (float)d;
    } else if (!strcmp(a, "--top-k")) {
        ok = (v = tools_flag_value(argc, argv, i)) && tools_parse_int(a, v, 0, INT32_MAX, &n);
        if (ok) p->top_k = (int32_t)n;
    } else if (!strcmp(a, "--repeat-last-n")) {
        /* -1: the context size, as in llama.cpp */
        ok = (v = tools_flag_value(argc, argv, i)) && tools_parse_int(a, v, -1, 1 << 20, &n);
        if (ok) {
            s->repeat_last_n_ctx = n == -1;
            p->repeat_last_n = n == -1 ? 0 : (int32_t)n;
        }
    } else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) {
        /* -1 (and 4294967295): a random seed, as in llama.cpp */
        ok = (v = tools_flag_value(argc, argv, i)) &&
             tools_parse_int(a, v, -1, (int64_t)UINT32_MAX, &n);
        if (ok) p->seed = n == -1 ? HALO_SEED_RANDOM : (uint32_t)n;
    } else if (!strcmp(a, "--sampling-preset") || !strcmp(a, "--preset")) {
        halo_error err = {0};
        ok = (v = tools_flag_value(argc, argv, i)) != NULL;
        if (ok && halo_sampler_preset(v, p, &err)) {
            fprintf(stderr, "error: %s: %s\n", a, err.msg);
            ok = false;
        }
    } else if (!strcmp(a, "-l") || !strcmp(a, "--logit-bias")) {
        ok = (v = tools_flag_value(argc, argv, i)) && parse_logit_bias(a, v, s);
    } else if (s->with_grammar && is_grammar_flag(a)) {
        ok = parse_grammar_flag(argc, argv, i, s);
    } else {
        return 0;
    }
    return ok ? 1 : -1;
}

void tools_sampling_usage(FILE *out) {
    fprintf(out,
            "sampling (llama.cpp's chain: bias, penalties, top-k, top-p, min-p, temperature):\n"
            "      --temp T              temperature, 0 = greedy (default 0.8)\n"
            "      --top-k N             keep the N most likely tokens, 0 = off (default 40)\n"
            "      --top-p P             keep the smallest set with mass >= P, 1 = off (default 0.95)\n"
            "      --min-p P             drop tokens below P x the best one's probability, 0 = off\n"
            "                            (default 0.05)\n"
            "      --presence-penalty X  subtract X from tokens seen in the window (default 0)\n"
            "      --frequency-penalty X subtract X per occurrence in the window (default 0)\n"
            "      --repeat-penalty X    divide seen tokens' logits by X, 1 = off (default 1)\n"
            "      --repeat-last-n N     the penalty window, 0 = off, -1 = context (default 64)\n"
            "  -s, --seed N              random seed, -1 = random (default -1)\n"
            "      --sampling-preset NAME  %s\n"
            "                            (qwen-thinking: T 1.0 top-p 0.95 top-k 20 presence 1.5;\n"
            "                            qwen-coding: T 0.6 top-p 0.95 top-k 20; qwen-instruct:\n"
            "                            T 0.7 top-p 0.8 top-k 20 presence 1.5); --preset is the same\n"
            "  -l, --logit-bias T+B      add B to token T's logit (T-B subtracts, T-inf bans it)\n",
            halo_sampler_preset_names());
}

/* ---- files and models ------------------------------------------------------------ */

char *tools_read_file(const char *path, size_t *len) {
    bool is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "error: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    bool bad = ferror(f);
    if (!is_stdin) fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "error: cannot read %s: %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

bool tools_load_model(const char *path, const halo_load_options *lo, halo_model **model,
                      double *load_s) {
    halo_error err = {0};
    double t0 = halo_time_seconds();
    if (halo_model_load(path, lo, model, &err)) {
        if (strstr(err.msg, path)) fprintf(stderr, "error: %s\n", err.msg); /* named already */
        else fprintf(stderr, "error: %s: %s\n", path, err.msg);
        *model = NULL;
        return false;
    }
    if (load_s) *load_s = halo_time_seconds() - t0;
    return true;
}

/* ---- escapes in prompt text -------------------------------------------------- */

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

size_t tools_process_escapes(char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            s[o++] = s[i];
            continue;
        }
        char c = s[i + 1], r = 0;
        switch (c) {
        case 'n': r = '\n'; break;
        case 'r': r = '\r'; break;
        case 't': r = '\t'; break;
        case '\'': r = '\''; break;
        case '"': r = '"'; break;
        case '\\': r = '\\'; break;
        case 'x':
            if (i + 3 < n && hexval(s[i + 2]) >= 0 && hexval(s[i + 3]) >= 0) {
                s[o++] = (char)(hexval(s[i + 2]) * 16 + hexval(s[i + 3]));
                i += 3;
                continue;
            }
            break;
        }
        if (r) {
            s[o++] = r;
            i++;
        } else {
            s[o++] = s[i];
        }
    }
    return o;
}
