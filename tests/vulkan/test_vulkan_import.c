/*
 * Weights used in place on a UMA device (VK_EXT_external_memory_host; Mesa's lavapipe has
 * it): host memory imported as device memory instead of copied.
 *   - halo_vk_import: a matrix product reading imported host memory (at an offset inside
 *     a page, the range rounded to the import alignment) gives the bits of the same
 *     product on an uploaded copy; downloads read it; writes into it (upload, copy, zero)
 *     are refused; a range over the device's largest allocation is refused without
 *     failing the device; the memory counters follow.
 *   - Whole models (kdoc-moe, BF16 hybrid MoE; tiny-qwen3moe, F16), mapped and read
 *     (--no-mmap): with import on, no byte of device memory holds a weight (the device's
 *     allocations are 0 bytes after the upload) and the imported bytes cover the
 *     weights; with HALO_VK_IMPORT=0 they are copied (nothing imported); the logits of
 *     the four loads (a prompt in chunks, then token by token) are the same bits (the
 *     same kernels read the same bytes). Two more loads with the device's largest
 *     allocation lowered (halo_vk_options.max_alloc_bytes) to the largest span one weight
 *     needs, so that the weights are cut into several imported ranges: used in place, and
 *     with the third import refused (refuse_imports_after, as a driver that refuses the
 *     memory): the two ranges imported before are released and the weights copied (the
 *     fallback). Same bits.
 * Skipped where the device is not UMA or has no VK_EXT_external_memory_host.
 * The cut and fallback loads on tiny-qwen3moe (kdoc-moe's take ~20 s more on lavapipe);
 * HALO_TEST_QUICK (the sanitizer stage): tiny-qwen3moe only.
 */
#include "../model/model_eval.h"
#include "rng.h"
#include "vulkan_test.h"

#include "model/arch.h"
#include "runtime/backend.h"
#include "util/util.h"

#include <unistd.h>

#ifdef HALO_HAVE_VULKAN

static void test_import_device(int device) {
    halo_vk *vk = vk_test_open(device, false);
    const halo_vk_device_info *info = halo_vk_info(vk);
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t align = info->import_align > page ? (size_t)info->import_align : page;
    /* a 37 x 64 f32 matrix at 4 KiB + 4 bytes into a buffer of whole import blocks */
    enum { ROWS = 37, COLS = 64, TOK = 3 };
    const size_t lead = 4096 + 4, wbytes = sizeof(float) * ROWS * COLS;
    const size_t size = (lead + wbytes + align - 1) / align * align;
    char *host = NULL;
    CHECK(posix_memalign((void **)&host, align, size) == 0 && host);
    if (!host) return;
    memset(host, 0, size);
    float *w = (float *)(host + lead), x[TOK * COLS];
    rng_seed(0x9e3779b97f4a7c15ull);
    fill(w, ROWS * COLS, -1, 1);
    fill(x, TOK * COLS, -1, 1);

    uint64_t alloc0 = 0, imp0 = 0, alloc1 = 0, imp1 = 0;
    halo_vk_memory_use(vk, &alloc0, &imp0);
    char why[256];
    float *dw = halo_vk_import(vk, w, wbytes, why, sizeof why);
    CHECK_MSG(dw != NULL, "import: %s", why);
    halo_vk_memory_use(vk, &alloc1, &imp1);
    CHECK(alloc1 == alloc0);
    CHECK_MSG(imp1 - imp0 == size - 4096, "imported %llu bytes, expected the enclosing blocks",
              (unsigned long long)(imp1 - imp0));
    float *dc = dev_from(vk, w, wbytes), *dx = dev_from(vk, x, sizeof x);
    float *y1 = halo_vk_alloc(vk, sizeof(float) * ROWS * TOK);
    float *y2 = halo_vk_alloc(vk, sizeof(float) * ROWS * TOK);
    CHECK(dw && dc && dx && y1 && y2);
    if (dw && dc && dx && y1 && y2) {
        CHECK(halo_vk_matmul(vk, HALO_TYPE_F32, dw, sizeof(float) * COLS, ROWS, COLS, dx, TOK,
                             y1) == HALO_OK);
        CHECK(halo_vk_matmul(vk, HALO_TYPE_F32, dc, sizeof(float) * COLS, ROWS, COLS, dx, TOK,
                             y2) == HALO_OK);
        CHECK(halo_vk_sync(vk) == HALO_OK);
        float a[ROWS * TOK], b[ROWS * TOK], back[ROWS * COLS];
        CHECK(halo_vk_download(vk, a, y1, sizeof a) == HALO_OK);
        CHECK(halo_vk_download(vk, b, y2, sizeof b) == HALO_OK);
        CHECK_MSG(memcmp(a, b, sizeof a) == 0, "the product on imported memory differs");
        CHECK(halo_vk_download(vk, back, dw, sizeof back) == HALO_OK);
        CHECK(memcmp(back, w, sizeof back) == 0);
        /* the host's later writes are the device's: the memory is shared, not copied */
        w[0] += 1.0f;
        CHECK(halo_vk_download(vk, back, dw, sizeof(float)) == HALO_OK);
        CHECK(back[0] == w[0]);
    }
    /* over the device's largest allocation: refused with the reason, the device fine */
    if (info->max_buffer_bytes < (uint64_t)1 << 40) {
        why[0] = '\0';
        CHECK(halo_vk_import(vk, host, (size_t)info->max_buffer_bytes + 1, why, sizeof why) ==
              NULL);
        CHECK_MSG(strstr(why, "largest allocation") != NULL, "why: %s", why);
        CHECK(halo_vk_error(vk)->status == 0);
    }
    halo_vk_free(vk, dw);
    halo_vk_memory_use(vk, NULL, &imp1);
    CHECK(imp1 == imp0);
    CHECK(halo_vk_error(vk)->status == 0);
    /* writes into imported memory are refused (the first error stays: the last check) */
    dw = halo_vk_import(vk, w, wbytes, why, sizeof why);
    CHECK(dw != NULL);
    if (dw) {
        CHECK(halo_vk_zero(vk, dw, 64) == HALO_ERR_ARG);
        CHECK_MSG(strstr(halo_vk_error(vk)->msg, "imported") != NULL, "%s", halo_vk_error(vk)->msg);
    }
    vk_test_check_validation(vk);
    halo_vk_close(vk);
    free(host);
}

/* The prompt: the reference's first sequence, its first 12 tokens in chunks of 8, then
 * its first 3 one at a time. */
#define N_TOK 12
#define N_ONE 3

/* The device's largest allocation lowered (cut) to the largest span of import blocks one
 * weight needs: the weights are then cut into several imported ranges. */
static size_t weight_bytes(const halo_weight *w) {
    return w->n_mats > 1 ? (size_t)w->n_mats * w->mat_stride : (size_t)w->n_rows * w->row_stride;
}

static uint64_t cut_cap(halo_model *m, uint64_t align) {
    const size_t n = halo_model_weights(m, NULL, 0);
    halo_weight **ws = malloc(sizeof *ws * (n ? n : 1));
    if (!ws) return 0;
    halo_model_weights(m, ws, n);
    uint64_t span = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ws[i]->data) continue;
        const uint64_t lo = (uintptr_t)ws[i]->data & ~(align - 1);
        const uint64_t hi =
            ((uintptr_t)ws[i]->data + weight_bytes(ws[i]) + align - 1) & ~(align - 1);
        if (hi - lo > span) span = hi - lo;
    }
    free(ws);
    return span;
}

/* Load NAME (mapped or read), put it on the device with import on or off (cut: into
 * ranges, refuse: imports after the first `refuse` refused), evaluate the prompt; *out:
 * the logits (malloc'd, *n floats); *cap: the largest allocation (0: the device's). */
static bool load_and_eval(int device, const char *name, bool mmap, bool import, bool cut,
                          int refuse, float **out, size_t *n, uint64_t *allocated,
                          uint64_t *imported, uint64_t *weights, uint64_t *cap) {
    char rel[128];
    snprintf(rel, sizeof rel, "models/%s.gguf", name);
    halo_load_options o = {.mode = mmap ? HALO_LOAD_MMAP : HALO_LOAD_READ};
    halo_model *m = NULL;
    halo_error err = {0};
    *cap = 0;
    if (halo_model_load(halo_test_fixture_path(rel), &o, &m, &err)) {
        printf("FAILED: %s: %s\n", rel, err.msg);
        return false;
    }
    if (cut) {
        halo_vk_device_info info[16];
        halo_vk_devices(info, 16, &err);
        *cap = cut_cap(m, info[device].import_align);
        CHECK(*cap > 0);
    }
    if (import)
        unsetenv("HALO_VK_IMPORT");
    else
        setenv("HALO_VK_IMPORT", "0", 1);
    halo_error e2 = {0};
    halo_vk_options opt = {
        .validation = true, .max_alloc_bytes = *cap, .refuse_imports_after = refuse};
    halo_vk *vk = halo_vk_open(device, &opt, &e2);
    CHECK_MSG(vk != NULL, "%s", e2.msg);
    int rc = vk ? halo_vk_model_upload(m, vk, &err) : HALO_ERR_IO;
    unsetenv("HALO_VK_IMPORT");
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) {
        halo_vk_close(vk);
        halo_model_free(m);
        return false;
    }
    CHECK(halo_vk_model_device(m) == vk);
    halo_vk_memory_use(vk, allocated, imported);
    *weights = halo_model_size_bytes(m);
    eval_seqs s;
    bool ok = eval_read_ref_tokens(name, &s) && s.len[0] >= N_TOK;
    CHECK_MSG(ok, "%s: no reference tokens", name);
    const size_t nv = (size_t)halo_model_n_vocab(m);
    *n = (N_TOK + N_ONE) * nv;
    *out = malloc(sizeof(float) * *n);
    ok = ok && *out;
    if (ok) {
        eval_seqs one = {.n = 1, .tokens = {s.tokens[0]}, .len = {N_TOK}};
        ok = eval_all(m, HALO_TYPE_F16, &one, 8, *out);
        one.len[0] = N_ONE;
        ok = ok && eval_all(m, HALO_TYPE_F16, &one, 1, *out + N_TOK * nv);
        CHECK(ok);
    }
    eval_seqs_free(&s);
    vk_test_check_validation(vk);
    halo_model_free(m); /* and vk */
    return ok;
}

#define N_CASES 6

static void test_model(int device, const char *name, int n_cases) {
    static const struct {
        bool mmap, import, cut;
        int refuse;
        const char *what;
    } cases[N_CASES] = {
        {true, true, false, 0, "mmap, imported"},
        {true, false, false, 0, "mmap, copied"},
        {false, true, false, 0, "--no-mmap, imported"},
        {false, false, false, 0, "--no-mmap, copied"},
        {true, true, true, 0, "mmap, imported, cut"},
        {true, true, true, 2, "mmap, 3rd import fails"},
    };
    float *l[N_CASES] = {NULL};
    size_t n[N_CASES] = {0};
    bool done[N_CASES] = {false};
    for (int k = 0; k < n_cases; k++) {
        uint64_t allocated = 0, imported = 0, weights = 0, cap = 0;
        const double t0 = halo_time_seconds();
        done[k] =
            load_and_eval(device, name, cases[k].mmap, cases[k].import, cases[k].cut,
                          cases[k].refuse, &l[k], &n[k], &allocated, &imported, &weights, &cap);
        printf("  %-17s %-22s device memory %9llu B, imported %9llu B (weights %llu B, largest "
               "allocation %llu B), %.1f s\n",
               name, cases[k].what, (unsigned long long)allocated, (unsigned long long)imported,
               (unsigned long long)weights, (unsigned long long)cap, halo_time_seconds() - t0);
        CHECK_MSG(done[k], "%s, %s failed", name, cases[k].what);
        if (!done[k]) continue;
        if (cases[k].import && !cases[k].refuse) {
            CHECK_MSG(allocated == 0, "%s, %s: %llu bytes of device memory allocated", name,
                      cases[k].what, (unsigned long long)allocated);
            CHECK_MSG(imported >= weights, "%s, %s: %llu bytes imported for %llu of weights", name,
                      cases[k].what, (unsigned long long)imported, (unsigned long long)weights);
        } else { /* copied; with imports refused, the ranges imported before released */
            CHECK_MSG(imported == 0 && allocated >= weights,
                      "%s, %s: %llu allocated, %llu imported for %llu of weights", name,
                      cases[k].what, (unsigned long long)allocated, (unsigned long long)imported,
                      (unsigned long long)weights);
        }
        if (cases[k].cut) /* more than 3 ranges: the refusal comes after imports */
            CHECK_MSG(cap > 0 && 4 * cap < weights, "%s: a largest allocation of %llu B for %llu B",
                      name, (unsigned long long)cap, (unsigned long long)weights);
    }
    for (int k = 1; k < n_cases; k++)
        if (done[0] && done[k])
            CHECK_MSG(n[k] == n[0] && memcmp(l[0], l[k], sizeof(float) * n[0]) == 0,
                      "%s: the logits of %s differ from %s's", name, cases[k].what, cases[0].what);
    for (int k = 0; k < N_CASES; k++)
        free(l[k]);
}

int main(void) {
    halo_test_require_fixtures();
    halo_log_set_level(HALO_LOG_WARN);
    const int device = vk_test_device();
    halo_vk_device_info info[16];
    halo_error err = {0};
    halo_vk_devices(info, 16, &err);
    if (!info[device].uma || !info[device].host_import) {
        printf("skipped: Vulkan device %d is %s\n", device,
               !info[device].uma ? "not UMA (weights are copied there)"
                                 : "without VK_EXT_external_memory_host");
        return 77;
    }
    printf("Vulkan device %d: import alignment %llu bytes\n", device,
           (unsigned long long)info[device].import_align);
    test_import_device(device);
    test_model(device, "tiny-qwen3moe-f16", N_CASES);
    if (!getenv("HALO_TEST_QUICK")) /* the sanitizer stage: the tiny model only */
        test_model(device, "kdoc-moe-bf16", 4);
    return halo_test_finish("vulkan_import");
}

#else
int main(void) {
    return vk_test_device();
}
#endif
