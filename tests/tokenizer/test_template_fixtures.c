/*
 * Every (template, case) of fixtures/templates/expected.json rendered byte for
 * byte as Python's jinja2 renders it (with the Hugging Face settings); cases that
 * hold an `error` must fail with a message containing it. Each template is also
 * rendered twice from one compile (a compiled template is reusable).
 */
#include "harness.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>

static void show_diff(const char *want, const char *got) {
    size_t i = 0;
    while (want[i] && want[i] == got[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "  first difference at byte %zu\n  want: %.80s\n  got:  %.80s\n", i, want + from, got + from);
}

int main(void) {
    halo_test_require_fixtures();
    size_t size;
    char *json = halo_test_read_file(halo_test_fixture_path("templates/expected.json"), &size);
    CHECK(json != NULL);
    if (!json) return halo_test_finish("tokenizer/template_fixtures");
    cJSON *root = cJSON_ParseWithLength(json, size);
    CHECK(cJSON_IsArray(root));
    int n_cases = 0, n_pass = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        const char *file = cJSON_GetStringValue(cJSON_GetObjectItem(e, "template"));
        const char *cname = cJSON_GetStringValue(cJSON_GetObjectItem(e, "case"));
        const cJSON *ctx = cJSON_GetObjectItem(e, "context");
        const char *want = cJSON_GetStringValue(cJSON_GetObjectItem(e, "expected"));
        const char *want_err = cJSON_GetStringValue(cJSON_GetObjectItem(e, "error"));
        char rel[512];
        snprintf(rel, sizeof rel, "templates/%s", file ? file : "?");
        size_t tlen;
        char *src = halo_test_read_file(halo_test_fixture_path(rel), &tlen);
        CHECK_MSG(src != NULL, "%s", rel);
        if (!src) continue;
        n_cases++;
        halo_error err = {0};
        halo_template *t = NULL;
        int rc = halo_template_compile(src, tlen, &t, &err);
        CHECK_MSG(rc == 0, "%s: %s", file, err.msg);
        if (rc) {
            free(src);
            continue;
        }
        halo_template_options opts = {.now = 1795348800}; /* 2026-11-22 08:00 UTC */
        for (int round = 0; round < 2; round++) {
            char *out = NULL;
            size_t out_len = 0;
            halo_error_clear(&err);
            rc = halo_template_render(t, ctx, &opts, &out, &out_len, &err);
            if (want_err) {
                CHECK_MSG(rc != 0 && strstr(err.msg, want_err), "%s / %s: want error '%s', got rc %d '%s'", file,
                          cname, want_err, rc, err.msg);
                if (rc != 0 && strstr(err.msg, want_err) && round == 0) n_pass++;
            } else {
                bool ok = rc == 0 && want && out_len == strlen(want) && !memcmp(out, want, out_len);
                CHECK_MSG(ok, "%s / %s: %s", file, cname, rc ? err.msg : "output differs");
                if (!ok && rc == 0 && want) show_diff(want, out);
                if (ok && round == 0) n_pass++;
            }
            free(out);
        }
        halo_template_free(t);
        free(src);
    }
    printf("template fixtures: %d/%d cases byte-identical\n", n_pass, n_cases);
    CHECK(n_cases >= 48);
    cJSON_Delete(root);
    free(json);
    return halo_test_finish("tokenizer/template_fixtures");
}
