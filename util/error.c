/* Error messages and the one logging function (see include/halo.h). */
#include "util.h"

#include <stdio.h>
#include <string.h>

int halo_error_set(halo_error *err, int status, const char *fmt, ...) {
    if (err && err->status == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

void halo_error_clear(halo_error *err) {
    if (err) {
        err->status = 0;
        err->msg[0] = '\0';
    }
}

static halo_log_level log_level = HALO_LOG_INFO;
static halo_log_fn log_sink;
static void *log_user;

void halo_log_set_level(halo_log_level level) { log_level = level; }

void halo_log_set_sink(halo_log_fn fn, void *user) {
    log_sink = fn;
    log_user = user;
}

void halo_log(halo_log_level level, const char *fmt, ...) {
    if (level > log_level) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_sink) {
        log_sink(level, msg, log_user);
        return;
    }
    size_t n = strlen(msg);
    fprintf(stderr, "%s%s", msg, (n && msg[n - 1] == '\n') ? "" : "\n");
}
