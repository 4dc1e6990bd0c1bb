/*
 * Decoders against the reference: for every block format in the quant fixtures,
 * decode blk.0.attn_k.weight from the quantized GGUF and compare with the same
 * tensor decoded by the GGUF ecosystem's reference decoder, bit for bit.
 * A mismatch prints the type and the first differing index (with both values),
 * which for a layout bug points at the block and the position in it.
 *
 * Also: every tensor of every fixture file decodes to finite values, and halo's
 * reference encoders, run on the F16 original, come within 10% of the error of
 * the fixtures' own quantizer (llama-quantize) on the same tensors.
 */
#include "format/gguf.h"
#include "harness.h"
#include "quant/quant.h"

#include <math.h>
#include <stdint.h>

static const char *const types[] = {"q8_0", "q4_0", "q4_1",   "q5_0",   "q5_1",  "q2_k", "q3_k",
                                    "q4_k", "q5_k", "q6_k",   "iq4_nl", "iq4_xs", "mxfp4", "bf16"};

/* Every tensor in the file decodes, to finite values. */
static void check_all_tensors(const char *tname, const halo_gguf *g) {
    int decoded = 0;
    for (int64_t k = 0; k < halo_gguf_n_tensors(g); k++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, k);
        float *out = malloc((size_t)t->n_elements * sizeof(float));
        halo_error err = {0};
        int rc = halo_quant_decode(t->type, t->data, out, t->n_elements, &err);
        CHECK_MSG(rc == 0, "%s: %s: %s", tname, t->name, err.msg);
        int64_t bad = 0;
        for (int64_t i = 0; rc == 0 && i < t->n_elements; i++) bad += !isfinite(out[i]);
        CHECK_MSG(bad == 0, "%s: %s: %lld non-finite values", tname, t->name, (long long)bad);
        decoded += rc == 0;
        free(out);
    }
    CHECK(decoded > 0);
}

/* halo's encoder against the fixture's quantizer, both measured against the F16
 * original, over every matrix of the model. */
static void compare_encoder(const char *tname, const halo_gguf *g, const halo_gguf *orig) {
    double se_peer = 0.0, se_ours = 0.0, sx = 0.0;
    int type = halo_type_from_name(tname);
    for (int64_t k = 0; k < halo_gguf_n_tensors(orig); k++) {
        const halo_gguf_tensor *t0 = halo_gguf_tensor_at(orig, k);
        const halo_gguf_tensor *t = halo_gguf_find_tensor(g, t0->name);
        if (t0->n_dims < 2 || !t || t->type != type) continue;
        const int64_t n = t0->n_elements;
        float *x = malloc((size_t)n * sizeof(float)), *peer = malloc((size_t)n * sizeof(float)),
              *ours = malloc((size_t)n * sizeof(float));
        void *blocks = malloc(halo_type_row_size(type, n));
        halo_error err = {0};
        int rc = halo_quant_decode(t0->type, t0->data, x, n, &err);
        rc = rc ? rc : halo_quant_decode(type, t->data, peer, n, &err);
        rc = rc ? rc : halo_quant_encode_ref(type, x, blocks, n, &err);
        rc = rc ? rc : halo_quant_decode(type, blocks, ours, n, &err);
        CHECK_MSG(rc == 0, "%s: %s: %s", tname, t0->name, err.msg);
        for (int64_t i = 0; rc == 0 && i < n; i++) {
            double ep = (double)peer[i] - x[i], eo = (double)ours[i] - x[i];
            se_peer += ep * ep;
            se_ours += eo * eo;
            sx += (double)x[i] * x[i];
        }
        free(x);
        free(peer);
        free(ours);
        free(blocks);
    }
    CHECK_MSG(sx > 0.0, "%s: no matrices to compare", tname);
    if (sx == 0.0) return;
    double peer = sqrt(se_peer / sx), ours = sqrt(se_ours / sx);
    printf("%-7s encoder rel RMS error on the model: halo %.5f, fixture quantizer %.5f (x%.3f)\n",
           tname, ours, peer, ours / peer);
    CHECK_MSG(ours <= 1.10 * peer, "%s: halo's encoder error %.5f is > 1.1 x the reference's %.5f",
              tname, ours, peer);
}

static void check_type(const char *tname, const halo_gguf *orig) {
    char rel[256];
    snprintf(rel, sizeof rel, "quant/tiny-qwen3-%s.gguf", tname);
    const char *gguf_path = halo_test_fixture_path(rel);
    snprintf(rel, sizeof rel, "quant/tiny-qwen3-%s.blk.0.attn_k.weight.f32", tname);
    const char *ref_path = halo_test_fixture_path(rel);

    halo_error err = {0};
    halo_gguf *g = NULL;
    int rc = halo_gguf_open(gguf_path, NULL, &g, &err);
    CHECK_MSG(rc == 0, "%s: open %s: %s", tname, gguf_path, err.msg);
    if (rc) return;
    size_t ref_size = 0;
    float *ref = halo_test_read_file(ref_path, &ref_size);
    CHECK_MSG(ref != NULL, "%s: cannot read %s", tname, ref_path);
    const halo_gguf_tensor *t = halo_gguf_find_tensor(g, "blk.0.attn_k.weight");
    CHECK_MSG(t != NULL, "%s: no tensor blk.0.attn_k.weight", tname);
    check_all_tensors(tname, g);
    if (orig) compare_encoder(tname, g, orig);
    if (!t || !ref) goto done;

    CHECK_MSG(t->type == halo_type_from_name(tname), "%s: tensor type is %s", tname,
              halo_type_name(t->type));
    if (t->type != halo_type_from_name(tname)) goto done;
    CHECK_MSG((size_t)t->n_elements * sizeof(float) == ref_size,
              "%s: %lld elements, reference has %zu floats", tname, (long long)t->n_elements,
              ref_size / sizeof(float));
    CHECK_MSG(t->nbytes == halo_type_row_size(t->type, t->n_elements),
              "%s: %llu bytes for %lld elements", tname, (unsigned long long)t->nbytes,
              (long long)t->n_elements);
    if ((size_t)t->n_elements * sizeof(float) != ref_size) goto done;

    float *out = malloc(ref_size);
    rc = halo_quant_decode(t->type, t->data, out, t->n_elements, &err);
    CHECK_MSG(rc == 0, "%s: decode: %s", tname, err.msg);
    if (rc == 0) {
        int64_t bad = -1, nbad = 0;
        uint32_t bad_a = 0, bad_b = 0;
        for (int64_t i = 0; i < t->n_elements; i++) {
            uint32_t a, b;
            memcpy(&a, &out[i], 4);
            memcpy(&b, &ref[i], 4);
            if (a != b && nbad++ == 0) {
                bad = i;
                bad_a = a;
                bad_b = b;
            }
        }
        CHECK_MSG(bad < 0,
                  "%s: %lld of %lld values differ; first at index %lld (block %lld): "
                  "%.9g (0x%08x) vs reference %.9g (0x%08x)",
                  tname, (long long)nbad, (long long)t->n_elements, (long long)bad,
                  (long long)(bad / halo_type_get(t->type)->block_size), bad >= 0 ? out[bad] : 0.0f,
                  bad_a, bad >= 0 ? ref[bad] : 0.0f, bad_b);
        if (bad < 0) printf("%-7s %lld values bit-exact\n", tname, (long long)t->n_elements);
    }
    free(out);
done:
    free(ref);
    halo_gguf_close(g);
}

int main(void) {
    halo_test_require_fixtures();
    halo_error err = {0};
    halo_gguf *orig = NULL;
    const char *orig_path = halo_test_fixture_path("models/tiny-qwen3-f16.gguf");
    CHECK_MSG(halo_gguf_open(orig_path, NULL, &orig, &err) == 0, "%s: %s", orig_path, err.msg);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) check_type(types[i], orig);
    if (orig) halo_gguf_close(orig);
    return halo_test_finish("quant/decode_fixtures");
}
