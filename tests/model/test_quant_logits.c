/* Every block format: tiny-qwen3-TYPE.gguf on quant/tokens.txt against the
 * exact logits of those quantized weights; the engine's error must stay below
 * the peer engine's own error for that type (quant/peer-error.txt). */
#include "model_eval.h"

int main(void) {
    halo_test_require_fixtures();
    size_t size;
    char *table = halo_test_read_file(halo_test_fixture_path("quant/peer-error.txt"), &size);
    CHECK(table != NULL);
    eval_seqs s;
    CHECK(eval_read_token_lines(halo_test_fixture_path("quant/tokens.txt"), &s));
    int n_types = 0;
    char *save = NULL;
    for (char *line = table ? strtok_r(table, "\n", &save) : NULL; line && s.n;
         line = strtok_r(NULL, "\n", &save)) {
        char type[32];
        double peer;
        if (line[0] == '#' || sscanf(line, "%31s %lf", type, &peer) != 2) continue;
        char rel[256];
        snprintf(rel, sizeof rel, "quant/tiny-qwen3-%s.gguf", type);
        halo_model *m = eval_load(rel);
        CHECK_MSG(m != NULL, "%s", rel);
        if (!m) continue;
        const int32_t nv = halo_model_n_vocab(m);
        size_t n = eval_total_tokens(&s), bytes;
        snprintf(rel, sizeof rel, "quant/tiny-qwen3-%s.exact-logits.f32", type);
        float *ref = halo_test_read_file(halo_test_fixture_path(rel), &bytes);
        float *got = malloc(sizeof(float) * n * nv);
        CHECK(ref && bytes == sizeof(float) * n * nv);
        if (ref && bytes == sizeof(float) * n * nv && eval_all(m, 1, &s, 4096, got)) {
            double rr = rel_rms(got, ref, n * nv);
            printf("%-7s relRMS %.3e vs exact (peer %.3e)\n", type, rr, peer);
            CHECK_MSG(rr < peer, "%s relRMS %.3e >= peer %.3e", type, rr, peer);
            n_types++;
        }
        free(ref);
        free(got);
        halo_model_free(m);
    }
    CHECK(n_types >= 14);
    eval_seqs_free(&s);
    free(table);
    return halo_test_finish("model/quant_logits");
}
