/*
 * halo — an LLM inference engine. This is the one public header.
 *
 * Conventions: functions that can fail return 0 on success and a negative
 * halo_status on failure, and fill a halo_error with a message written for the
 * user (what went wrong and, where possible, what to do). Library code never
 * exits and never prints except through halo_log().
 */
#ifndef HALO_H
#define HALO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HALO_VERSION_STRING "0.1.0"

/* ---- status and errors ------------------------------------------------- */

typedef enum halo_status {
    HALO_OK = 0,
    HALO_ERR_IO = -1,        /* open/read/write/mmap failed */
    HALO_ERR_FORMAT = -2,    /* the file is malformed, truncated or hostile */
    HALO_ERR_UNSUPPORTED = -3, /* well-formed, but something halo does not handle */
    HALO_ERR_NOMEM = -4,     /* allocation failed */
    HALO_ERR_ARG = -5,       /* a bad parameter from the caller or the user */
    HALO_ERR_RANGE = -6,     /* a size computation would overflow */
} halo_status;

/* A message for the user. Zero-initialize before use; the first error set wins
 * unless the caller clears it. */
typedef struct halo_error {
    int status;
    char msg[512];
} halo_error;

/* printf-style; returns the status so that `return halo_error_set(...)` reads well. */
int halo_error_set(halo_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void halo_error_clear(halo_error *err);

/* ---- logging ----------------------------------------------------------- */

typedef enum halo_log_level {
    HALO_LOG_ERROR = 0,
    HALO_LOG_WARN = 1,
    HALO_LOG_INFO = 2,
    HALO_LOG_DEBUG = 3,
} halo_log_level;

typedef void (*halo_log_fn)(halo_log_level level, const char *msg, void *user);

/* Messages above `level` are dropped. The default sink writes to stderr at INFO. */
void halo_log_set_level(halo_log_level level);
void halo_log_set_sink(halo_log_fn fn, void *user);
void halo_log(halo_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- loading ----------------------------------------------------------- */

typedef enum halo_load_mode {
    HALO_LOAD_MMAP = 0, /* lazy: map the file, pages come in on first touch (default) */
    HALO_LOAD_READ = 1, /* eager: read the whole data section into aligned memory (--no-mmap) */
} halo_load_mode;

typedef struct halo_load_options {
    halo_load_mode mode;
    bool mlock;    /* lock the weights in RAM (--mlock) */
    bool progress; /* report progress through halo_log while reading */
} halo_load_options;

#ifdef __cplusplus
}
#endif
#endif /* HALO_H */
