/*
 * util — small helpers every layer shares: error messages and logging (declared
 * in include/halo.h), overflow-checked size arithmetic, human-readable sizes,
 * monotonic time and the machine's memory.
 *
 * Everything that multiplies or adds counts read from a file or a request goes
 * through halo_mul_overflow / halo_add_overflow: a hostile file must never turn
 * into a short allocation or an out-of-range read.
 */
#ifndef HALO_UTIL_H
#define HALO_UTIL_H

#include "halo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* true if a*b (a+b) does not fit; *out is set only when it fits. */
static inline bool halo_mul_overflow(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline bool halo_add_overflow(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}
static inline uint64_t halo_align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* "1.23 GiB", "512 B": binary units, 3 significant digits. Returns buf. */
char *halo_format_bytes(uint64_t bytes, char *buf, size_t size);
/* "22.0 GB": decimal units, as model hubs print file sizes. Returns buf. */
char *halo_format_bytes_si(uint64_t bytes, char *buf, size_t size);
/* "35.1 B", "20.5 M": a count with a decimal suffix (K, M, B, T). Returns buf. */
char *halo_format_count(uint64_t n, char *buf, size_t size);

/* Seconds from an arbitrary fixed point (CLOCK_MONOTONIC). */
double halo_time_seconds(void);

/* Total physical memory of this machine in bytes (0 if unknown). */
uint64_t halo_system_memory_bytes(void);
/* Memory available for new allocations (MemAvailable), 0 if unknown. */
uint64_t halo_system_available_bytes(void);
/* Resident set size of this process in bytes (0 if unknown). */
uint64_t halo_process_resident_bytes(void);

/* Parse a size with an optional unit suffix as users type it on the command line:
 * "24", "24G", "24GiB", "1.5GB", "512M". With no unit, `default_unit` multiplies.
 * Returns false on syntax errors or overflow. */
bool halo_parse_size(const char *text, uint64_t default_unit, uint64_t *out);

#endif /* HALO_UTIL_H */
