/*
 * Every GGUF file among the fixtures (models/ and quant/, *.gguf) opens in the
 * three loading modes — mmap, eager read, mmap + mlock — with the same tensor
 * bytes in each, and known values of the real files read back as expected.
 */
#define _GNU_SOURCE
#include "format/gguf.h"
#include "harness.h"
#include "quant/quant.h"
#include "util/util.h"

#include <glob.h>
#include <math.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static char last_warning[1024];
static void capture(halo_log_level level, const char *msg, void *user) {
    if (level == HALO_LOG_WARN) snprintf(last_warning, sizeof last_warning, "%s", msg);
}

/* mlock that cannot succeed (limit lowered; as root, in a child that drops to
 * an unprivileged uid, since root may lock regardless) warns through halo_log
 * with the RLIMIT_MEMLOCK hint, and the model still opens, unlocked. */
static int mlock_failure_child(void) {
    struct rlimit low = {0, 0};
    if (setrlimit(RLIMIT_MEMLOCK, &low) != 0) return 2;
    if (geteuid() == 0 && setuid(65534) != 0) return 3;
    halo_log_set_sink(capture, NULL);
    halo_load_options o = {.mode = HALO_LOAD_READ, .mlock = true};
    halo_gguf *g = NULL;
    halo_error err = {0};
    if (halo_gguf_open(halo_test_fixture_path("models/tiny-llama-f16.gguf"), &o, &g, &err) != 0) {
        printf("open failed: %s\n", err.msg);
        return 4;
    }
    halo_gguf_load_stats st;
    halo_gguf_get_load_stats(g, &st);
    halo_gguf_close(g);
    printf("mlock failure warning (locked=%d): %s\n", st.locked, last_warning);
    if (st.locked) return 6; /* the environment let it lock anyway (seen under ASan) */
    return strstr(last_warning, "RLIMIT_MEMLOCK") ? 0 : 5;
}

static void mlock_failure(void) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = mlock_failure_child();
        fflush(stdout);
        _exit(rc);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    /* 3: no uid to drop to, 4: fixtures not readable unprivileged, 6: mlock
     * succeeded regardless — not our subject */
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 99;
    if (code == 3 || code == 4 || code == 6)
        printf("mlock failure path not exercised (child status %d)\n", code);
    else
        CHECK_MSG(code == 0, "mlock failure child exited with %d", code);
}

static void check_same(const halo_gguf *a, const halo_gguf *b, const char *what) {
    CHECK_MSG(halo_gguf_n_kv(a) == halo_gguf_n_kv(b), "%s", what);
    CHECK_MSG(halo_gguf_n_tensors(a) == halo_gguf_n_tensors(b), "%s", what);
    if (halo_gguf_n_tensors(a) != halo_gguf_n_tensors(b)) return;
    for (int64_t i = 0; i < halo_gguf_n_tensors(a); i++) {
        const halo_gguf_tensor *x = halo_gguf_tensor_at(a, i), *y = halo_gguf_tensor_at(b, i);
        CHECK_MSG(strcmp(x->name, y->name) == 0 && x->type == y->type && x->nbytes == y->nbytes &&
                      x->offset == y->offset,
                  "%s: tensor %lld", what, (long long)i);
        CHECK_MSG(x->nbytes == 0 || memcmp(x->data, y->data, x->nbytes) == 0,
                  "%s: data of tensor '%s' differs", what, x->name);
    }
}

/* Sanity of one opened file: every tensor inside the data, names findable. */
static void check_file(const halo_gguf *g, const char *path) {
    CHECK_MSG(halo_gguf_version(g) == 3, "%s: version %u", path, halo_gguf_version(g));
    CHECK(halo_gguf_alignment(g) == 32);
    CHECK(halo_gguf_get_str(g, "general.architecture") != NULL);
    for (int64_t i = 0; i < halo_gguf_n_tensors(g); i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        CHECK(halo_gguf_find_tensor(g, t->name) == t);
        CHECK(t->n_dims >= 1 && t->n_dims <= 4);
        CHECK(t->nbytes == halo_type_row_size(t->type, t->ne[0]) * (uint64_t)(t->n_elements / t->ne[0]));
        CHECK(t->data != NULL);
    }
    CHECK(halo_gguf_find_tensor(g, "no.such.tensor") == NULL);
}

static void spot_check_kdoc(const halo_gguf *g) {
    CHECK(strcmp(halo_gguf_get_str(g, "general.architecture"), "qwen35moe") == 0);
    uint32_t u = 0;
    CHECK(halo_gguf_get_u32(g, "qwen35moe.block_count", &u) && u == 8);
    CHECK(halo_gguf_n_tensors(g) == 148);
    CHECK(halo_gguf_n_kv(g) == 36);
    const halo_gguf_array *a = halo_gguf_get_arr(g, "qwen35moe.rope.dimension_sections");
    CHECK(a && a->n == 4);
    int64_t want[4] = {11, 11, 10, 0};
    for (int i = 0; a && i < 4; i++) {
        int64_t v = -1;
        CHECK(halo_gguf_arr_i64(a, (uint64_t)i, &v) && v == want[i]);
    }
    const halo_gguf_array *tok = halo_gguf_get_arr(g, "tokenizer.ggml.tokens");
    CHECK(tok && tok->type == HALO_GGUF_STRING && tok->n == 8192);
    float theta = 0;
    CHECK(halo_gguf_get_f32(g, "qwen35moe.rope.freq_base", &theta) && fabsf(theta - 1e7f) < 1);
    const halo_gguf_tensor *t = halo_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->type == HALO_TYPE_BF16 && t->ne[1] == 8192);
}

int main(void) {
    halo_test_require_fixtures();
    const char *patterns[] = {"models/*.gguf", "quant/*.gguf"};
    int n_files = 0;
    for (int p = 0; p < 2; p++) {
        glob_t gl;
        if (glob(halo_test_fixture_path(patterns[p]), 0, NULL, &gl) != 0) continue;
        for (size_t i = 0; i < gl.gl_pathc; i++) {
            const char *path = gl.gl_pathv[i];
            n_files++;
            halo_error err = {0};
            halo_gguf *gm = NULL, *gr = NULL, *gl2 = NULL;
            halo_load_options om = {.mode = HALO_LOAD_MMAP};
            halo_load_options or = {.mode = HALO_LOAD_READ, .progress = true};
            halo_load_options ol = {.mode = HALO_LOAD_MMAP, .mlock = true};
            double t0 = halo_time_seconds();
            int rc = halo_gguf_open(path, &om, &gm, &err);
            double t1 = halo_time_seconds();
            CHECK_MSG(rc == 0, "%s (mmap): %s", path, err.msg);
            halo_error_clear(&err);
            rc = halo_gguf_open(path, &or, &gr, &err);
            CHECK_MSG(rc == 0, "%s (read): %s", path, err.msg);
            halo_error_clear(&err);
            rc = halo_gguf_open(path, &ol, &gl2, &err);
            CHECK_MSG(rc == 0, "%s (mlock): %s", path, err.msg);
            if (gm && gr && gl2) {
                check_file(gm, path);
                check_same(gm, gr, path);
                check_same(gm, gl2, path);
                halo_gguf_load_stats st;
                halo_gguf_get_load_stats(gr, &st);
                CHECK(st.mode == HALO_LOAD_READ && st.resident_bytes == st.data_bytes);
                halo_gguf_get_load_stats(gm, &st);
                CHECK(st.mode == HALO_LOAD_MMAP && st.resident_bytes <= st.data_bytes);
                CHECK(st.file_bytes > st.data_bytes || st.data_bytes == 0);
                halo_gguf_get_load_stats(gl2, &st);
                printf("%-40s v%u %3lld kv %4lld tensors  data %10llu B  open %.1f ms  locked %d\n",
                       strrchr(path, '/') + 1, halo_gguf_version(gm), (long long)halo_gguf_n_kv(gm),
                       (long long)halo_gguf_n_tensors(gm), (unsigned long long)st.data_bytes,
                       (t1 - t0) * 1e3, st.locked);
                if (st.locked) CHECK(st.resident_bytes == st.data_bytes);
                if (strstr(path, "kdoc-moe-bf16")) spot_check_kdoc(gm);
                if (strstr(path, "qwen3-vocab")) {
                    const halo_gguf_array *tok = halo_gguf_get_arr(gm, "tokenizer.ggml.tokens");
                    CHECK(tok && tok->n > 151000 && tok->n < 152000);
                    CHECK(halo_gguf_n_tensors(gm) == 0);
                    const halo_gguf_array *merges = halo_gguf_get_arr(gm, "tokenizer.ggml.merges");
                    CHECK(merges && merges->n > 100000);
                    CHECK_MSG(t1 - t0 < 0.5, "qwen3-vocab took %.3f s to open", t1 - t0);
                }
            }
            halo_gguf_close(gm);
            halo_gguf_close(gr);
            halo_gguf_close(gl2);
        }
        globfree(&gl);
    }
    CHECK_MSG(n_files >= 20, "found only %d fixture files", n_files);
    mlock_failure();
    return halo_test_finish("test_gguf_fixtures");
}
