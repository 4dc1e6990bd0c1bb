/* Logits of every fixture model against the original implementation's
 * (refs/): relative RMS error and top-1 agreement, default f16 KV cache. */
#include "model_eval.h"

int main(void) {
    halo_test_require_fixtures();
    for (size_t k = 0; k < EVAL_N_MODELS; k++) {
        const eval_model *em = &EVAL_MODELS[k];
        char rel[256];
        snprintf(rel, sizeof rel, "models/%s.gguf", em->name);
        halo_model *m = eval_load(rel);
        eval_seqs s;
        CHECK(m != NULL);
        CHECK(eval_read_ref_tokens(em->name, &s));
        if (!m || !s.n) continue;
        const int32_t nv = halo_model_n_vocab(m);
        size_t n = eval_total_tokens(&s), bytes;
        snprintf(rel, sizeof rel, "refs/%s.logits.f32", em->name);
        float *ref = halo_test_read_file(halo_test_fixture_path(rel), &bytes);
        float *got = malloc(sizeof(float) * n * nv);
        CHECK(ref && bytes == sizeof(float) * n * nv);
        if (ref && bytes == sizeof(float) * n * nv && eval_all(m, 1 /* f16 */, &s, 4096, got)) {
            int counted;
            double rr = rel_rms(got, ref, n * nv);
            double top1 = eval_top1(got, ref, n, nv, &counted);
            printf("%-20s relRMS %.3e (bound %.0e)  top-1 %.1f%% of %d positions\n", em->name, rr,
                   em->ref_rel_rms, 100 * top1, counted);
            CHECK_MSG(rr <= em->ref_rel_rms, "%s relRMS %.3e", em->name, rr);
            CHECK_MSG(top1 >= 0.99, "%s top-1 %.3f", em->name, top1);
        } else {
            CHECK(!"evaluation failed");
        }
        free(ref);
        free(got);
        eval_seqs_free(&s);
        halo_model_free(m);
    }
    return halo_test_finish("model/refs");
}
