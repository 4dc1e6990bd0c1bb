/* Argument helpers shared by the subcommands. */
#define _GNU_SOURCE
#include "tools.h"

#include "util/util.h"

#include <errno.h>
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

bool tools_parse_load_flag(int argc, char **argv, int *i, halo_load_options *opts) {
    (void)argc;
    const char *a = argv[*i];
    if (!strcmp(a, "--no-mmap")) opts->mode = HALO_LOAD_READ;
    else if (!strcmp(a, "--mmap")) opts->mode = HALO_LOAD_MMAP;
    else if (!strcmp(a, "--mlock")) opts->mlock = true;
    else return false;
    (*i)++;
    return true;
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
