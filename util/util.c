/* Sizes, time and memory figures shared by every layer. */
#define _GNU_SOURCE
#include "util.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char *format_scaled(double v, double base, const char *const *units, int n_units,
                           char *buf, size_t size) {
    int u = 0;
    while (v >= base && u < n_units - 1) {
        v /= base;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%.0f %s", v, units[0]);
    else if (v < 10)
        snprintf(buf, size, "%.2f %s", v, units[u]);
    else if (v < 100)
        snprintf(buf, size, "%.1f %s", v, units[u]);
    else
        snprintf(buf, size, "%.0f %s", v, units[u]);
    return buf;
}

char *halo_format_bytes(uint64_t bytes, char *buf, size_t size) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    return format_scaled((double)bytes, 1024.0, units, 6, buf, size);
}

char *halo_format_bytes_si(uint64_t bytes, char *buf, size_t size) {
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    return format_scaled((double)bytes, 1000.0, units, 6, buf, size);
}

char *halo_format_count(uint64_t n, char *buf, size_t size) {
    static const char *const units[] = {"", "K", "M", "B", "T"};
    format_scaled((double)n, 1000.0, units, 5, buf, size);
    /* "123 " for plain counts: drop the trailing space */
    size_t len = strlen(buf);
    if (len && buf[len - 1] == ' ') buf[len - 1] = '\0';
    return buf;
}

double halo_time_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t halo_system_memory_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return 0;
    return (uint64_t)pages * (uint64_t)page;
}

static uint64_t read_kib_field(const char *path, const char *field) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    size_t flen = strlen(field);
    uint64_t kib = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, flen) == 0) {
            kib = strtoull(line + flen, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib * 1024;
}

uint64_t halo_system_available_bytes(void) {
    return read_kib_field("/proc/meminfo", "MemAvailable:");
}

uint64_t halo_process_resident_bytes(void) {
    return read_kib_field("/proc/self/status", "VmRSS:");
}

bool halo_parse_size(const char *text, uint64_t default_unit, uint64_t *out) {
    if (!text || !*text) return false;
    char *end;
    double v = strtod(text, &end);
    if (end == text || !isfinite(v) || v < 0) return false;
    while (*end == ' ') end++;
    /* "G" and "GiB" are binary; "GB" is decimal, as disk makers and hubs write it. */
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {
        {"B", 1.0},          {"K", 1024.0},        {"KIB", 1024.0},      {"KB", 1e3},
        {"M", 1048576.0},    {"MIB", 1048576.0},   {"MB", 1e6},          {"G", 1073741824.0},
        {"GIB", 1073741824.0}, {"GB", 1e9},        {"T", 1099511627776.0}, {"TIB", 1099511627776.0},
        {"TB", 1e12},
    };
    double mult = (double)default_unit;
    if (*end) {
        char up[16];
        size_t n = strlen(end);
        if (n >= sizeof up) return false;
        for (size_t i = 0; i <= n; i++) up[i] = (char)toupper((unsigned char)end[i]);
        size_t k = 0, n_units = sizeof units / sizeof units[0];
        while (k < n_units && strcmp(up, units[k].suffix) != 0) k++;
        if (k == n_units) return false;
        mult = units[k].mult;
    }
    double r = v * mult;
    if (r >= 18446744073709551615.0) return false;
    *out = (uint64_t)r;
    return true;
}
