#define _GNU_SOURCE
#include "harness.h"
#include "rng.h"

#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

int halo_test_failures;
int halo_test_checks;
uint64_t halo_test_rng_state = 0x9E3779B97F4A7C15ull; /* the tests seed it (rng_seed) */

static bool is_dir(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *halo_test_fixtures(void) {
    const char *env = getenv("HALO_FIXTURES");
    if (env && *env) {
        if (is_dir(env)) return env;
        fprintf(stderr, "fixtures: HALO_FIXTURES=%s is not a directory\n", env);
        return NULL;
    }
    const char *def = getenv("HALO_FIXTURES_DEFAULT");
    if (def && is_dir(def)) return def;
    if (is_dir("../shared/fixtures")) return "../shared/fixtures";
    fprintf(stderr, "fixtures: not found (set HALO_FIXTURES or place ../shared/fixtures "
                    "beside the project root)\n");
    return NULL;
}

const char *halo_test_fixture_path(const char *rel) {
    static char bufs[4][4096];
    static int next;
    const char *root = halo_test_fixtures();
    char *b = bufs[next++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", root ? root : "(no fixtures)", rel);
    return b;
}

void halo_test_require_fixtures(void) {
    if (!halo_test_fixtures()) {
        printf("SKIPPED: ../shared/fixtures is absent (set HALO_FIXTURES)\n");
        exit(77);
    }
}

void *halo_test_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf && size) *size = (size_t)n;
    return buf;
}

static char tmpdir[256];

static void remove_tmpdir(void) {
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

const char *halo_test_tmpdir(void) {
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/halo-test-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

int halo_test_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, halo_test_checks, halo_test_failures);
    return halo_test_failures ? 1 : 0;
}
