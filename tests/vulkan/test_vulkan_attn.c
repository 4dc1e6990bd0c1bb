/*
 * Paged attention on Vulkan (kernels/vulkan/shaders/attn.comp) against the CPU's reference
 * halo_attn_paged_ref (double precision, plain softmax): every K/V type (F32, F16, BF16,
 * Q8_0, Q4_0, IQ4_NL, and mixed), head dims 64/128/256, GQA groups 1, 4 and 8, two
 * sequences with shuffled page tables, positions past several blocks of 64 with a tail,
 * pages of 16 and 32; split over several workgroups and merged (flash decoding: long
 * contexts, and forced splits with empty parts). The KV store (every type) against the CPU's encoders
 * (halo_quant_encode_kv), byte for byte.
 *
 * Tolerance: the shader keeps everything in f32: each score is a 64..256-term dot product
 * (relative error ~ sqrt(d) * 2^-24 ~ 1e-6 of |q||k|), exp within a few ulp, the weighted
 * sums of V over up to 200 positions in f32, rescaled once per block. Relative to the
 * largest |output| of the (token, head) row, measured on lavapipe: at most 6e-7;
 * ATTN_TOL 1e-5 leaves a margin while a wrong position, page or head (errors of 1e-2 and
 * up) cannot pass.
 */
#include "compare.h"
#include "harness.h"
#include "rng.h"
#include "vulkan_test.h"

#include "kernels/kernels.h"
#include "quant/quant.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef HALO_HAVE_VULKAN

#define ATTN_TOL 1e-5

static halo_vk *V;

/* The device's view of a paged cache: pages of page_size cells, each n_kv heads of hd
 * values (type_k / type_v rows), at dk / dv, page table dt (per_seq entries a sequence). */
static halo_vk_kv device_cache(int type_k, int type_v, int n_kv, int hd, int page_size, void *dk,
                               void *dv, int32_t *dt, int per_seq) {
    const size_t khb = halo_type_row_size(type_k, hd), vhb = halo_type_row_size(type_v, hd);
    return (halo_vk_kv){.type_k = type_k,
                        .type_v = type_v,
                        .k = dk,
                        .v = dv,
                        .k_page_bytes = (size_t)page_size * (size_t)n_kv * khb,
                        .v_page_bytes = (size_t)page_size * (size_t)n_kv * vhb,
                        .k_head_bytes = khb,
                        .v_head_bytes = vhb,
                        .page_size = page_size,
                        .page_table = dt,
                        .table_stride = per_seq};
}

/* A cache of n_pages pages of `type` rows (n_kv heads of hd), every row random. */
static char *make_cache(int type, int n_pages, int page_size, int n_kv, int hd,
                        size_t *head_bytes) {
    *head_bytes = halo_type_row_size(type, hd);
    size_t rows = (size_t)n_pages * (size_t)page_size * (size_t)n_kv;
    char *c = malloc(rows * *head_bytes);
    float v[256];
    halo_error err = {0};
    for (size_t r = 0; r < rows; r++) {
        for (int d = 0; d < hd; d++)
            v[d] = frand();
        CHECK(halo_quant_encode_ref(type, v, c + r * *head_bytes, hd, &err) == 0);
    }
    return c;
}

/* parts: 0, the launcher's own split from the bound on the positions; n, forced to n
 * (HALO_VK_ATTN_SPLIT), so that parts with no position and parts of one block are met. */
static void test_attn_split(int type_k, int type_v, int hd, int n_head, int n_kv, int page_size,
                            int n_tok, int max_pos, int parts) {
    const int n_seq = 2, per_seq = (max_pos + page_size - 1) / page_size + 1;
    const int n_pages = n_seq * per_seq + 3;
    size_t khb, vhb;
    char *kc = make_cache(type_k, n_pages, page_size, n_kv, hd, &khb);
    char *vc = make_cache(type_v, n_pages, page_size, n_kv, hd, &vhb);
    const size_t krow = (size_t)n_kv * khb, vrow = (size_t)n_kv * vhb;
    int32_t *table = malloc(sizeof(int32_t) * (size_t)(n_seq * per_seq));
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n_pages);
    for (int i = 0; i < n_pages; i++)
        perm[i] = i;
    for (int i = n_pages - 1; i > 0; i--) {
        int j = (int)urand((uint32_t)i + 1), x = perm[i];
        perm[i] = perm[j], perm[j] = x;
    }
    memcpy(table, perm, sizeof(int32_t) * (size_t)(n_seq * per_seq));
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)n_tok),
            *pos = malloc(sizeof(int32_t) * (size_t)n_tok);
    for (int t = 0; t < n_tok; t++) {
        seq[t] = (int32_t)urand((uint32_t)n_seq);
        pos[t] = t == 0 ? max_pos - 1 : (int32_t)urand((uint32_t)max_pos);
    }
    const size_t nq = (size_t)n_tok * (size_t)n_head * (size_t)hd;
    float *q = malloc(sizeof(float) * nq), *ref = malloc(sizeof(float) * nq);
    float *got = malloc(sizeof(float) * nq);
    for (size_t i = 0; i < nq; i++)
        q[i] = frand();
    const float scale = 1.0f / sqrtf((float)hd);
    const int grp = n_head / n_kv;
    for (int t = 0; t < n_tok; t++)
        for (int g = 0; g < n_kv; g++) {
            halo_attn_kv kv = {.type_k = type_k,
                               .type_v = type_v,
                               .k_base = kc,
                               .v_base = vc,
                               .k_page_bytes = (size_t)page_size * krow,
                               .v_page_bytes = (size_t)page_size * vrow,
                               .k_row_bytes = krow,
                               .v_row_bytes = vrow,
                               .k_head_offset = (size_t)g * khb,
                               .v_head_offset = (size_t)g * vhb,
                               .page_size = page_size,
                               .pages = table + seq[t] * per_seq};
            int32_t n_kv_t = pos[t] + 1;
            size_t o = ((size_t)t * (size_t)n_head + (size_t)g * (size_t)grp) * (size_t)hd;
            halo_attn_paged_ref(&kv, q + o, (size_t)hd, 1, &n_kv_t, grp, hd, hd, scale, ref + o,
                                (size_t)hd);
        }

    void *dk = dev_from(V, kc, (size_t)n_pages * page_size * krow);
    void *dv = dev_from(V, vc, (size_t)n_pages * page_size * vrow);
    int32_t *dt = dev_from(V, table, sizeof(int32_t) * (size_t)(n_seq * per_seq));
    int32_t *ds = dev_from(V, seq, sizeof(int32_t) * (size_t)n_tok);
    int32_t *dp = dev_from(V, pos, sizeof(int32_t) * (size_t)n_tok);
    float *dq = dev_from(V, q, sizeof(float) * nq), *dout = dev_from(V, NULL, sizeof(float) * nq);
    const halo_vk_kv kv = device_cache(type_k, type_v, n_kv, hd, page_size, dk, dv, dt, per_seq);
    char forced[16];
    snprintf(forced, sizeof forced, "%d", parts);
    if (parts) setenv("HALO_VK_ATTN_SPLIT", forced, 1);
    int rc = halo_vk_attn(V, &kv, n_tok, ds, dp, max_pos - 1, n_head, n_kv, hd, hd, scale, dq,
                          dout);
    unsetenv("HALO_VK_ATTN_SPLIT");
    CHECK_MSG(rc == HALO_OK, "%s", halo_vk_error(V)->msg);
    CHECK(halo_vk_download(V, got, dout, sizeof(float) * nq) == HALO_OK);
    double worst = 0;
    for (size_t r = 0; r < nq / (size_t)hd; r++) { /* per (token, head) row */
        double rel = max_rel(got + r * hd, ref + r * hd, (size_t)hd);
        if (!(rel <= worst)) worst = rel;
    }
    printf("  K %-6s V %-6s hd %3d, %2d heads / %d, pages of %d, %2d tokens, pos < %4d%s%s: "
           "%.3g\n",
           halo_type_name(type_k), halo_type_name(type_v), hd, n_head, n_kv, page_size, n_tok,
           max_pos, parts ? ", parts " : "", parts ? forced : "", worst);
    CHECK_MSG(worst <= ATTN_TOL, "attention error %.3g > %.0e", worst, ATTN_TOL);
    void *d[] = {dk, dv, dt, ds, dp, dq, dout};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++)
        halo_vk_free(V, d[i]);
    free(kc), free(vc), free(table), free(perm), free(seq), free(pos), free(q), free(ref);
    free(got);
}

static void test_attn(int type_k, int type_v, int hd, int n_head, int n_kv, int page_size,
                      int n_tok, int max_pos) {
    test_attn_split(type_k, type_v, hd, n_head, n_kv, page_size, n_tok, max_pos, 0);
}

/* Hostile blocks for the block encoders (random values otherwise, scaled by 3): 0 all
 * zeros, 1 one huge outlier (1e30: the scale clamps to 65504), 2 a negative maximum of
 * magnitude tied with a positive one (the first wins), 3 float subnormals only, 4 float
 * subnormals and half subnormals mixed with one ordinary value, 5 tiny values (the scale a
 * half subnormal), 6 Q4_0's ties (the maximum -8: scale 1, halves to round to even), 7
 * Q8_0's (the maximum 127: scale 1), 8 and 9 as drawn. */
static void hostile_block(float *x, int kind) {
    switch (kind) {
    case 0:
        for (int j = 0; j < 32; j++)
            x[j] = 0.0f;
        break;
    case 1:
        x[urand(32)] = 1e30f;
        break;
    case 2:
        x[5] = -7.5f, x[20] = 7.5f;
        for (int j = 0; j < 32; j++)
            if (j != 5 && j != 20) x[j] *= 2.0f;
        break;
    case 3:
        for (int j = 0; j < 32; j++)
            x[j] = frand() * 0x1p-127f;
        break;
    case 4:
        for (int j = 0; j < 32; j++)
            x[j] = j % 2 ? frand() * 0x1p-130f : frand() * 0x1p-20f;
        x[urand(32)] = -1.25f;
        break;
    case 5:
        for (int j = 0; j < 32; j++)
            x[j] *= 1e-6f;
        break;
    case 6:
        for (int j = 0; j < 32; j++)
            x[j] = (float)((int)urand(15) - 7) + 0.5f;
        x[urand(32)] = -8.0f;
        break;
    case 7:
        for (int j = 0; j < 32; j++)
            x[j] = (float)((int)urand(253) - 126) + 0.5f;
        x[urand(32)] = 127.0f;
        break;
    default:
        break;
    }
}

/* The KV store against the CPU's encoders, byte for byte: n_tok tokens of two sequences
 * at distinct positions, rows of random values with the conversions' edge cases mixed in
 * (half subnormals, ties, values past the half range, NaN, infinities, signed zeros);
 * the block types' rows (halo_quant_encode_kv) of hostile blocks instead (no NaN). */
static void test_kv_store(int type_k, int type_v, int n_kv, int hd, int page_size, int n_tok) {
    const int n_seq = 2, per_seq = (n_tok + page_size - 1) / page_size + 1;
    const int n_pages = n_seq * per_seq;
    const size_t khb = halo_type_row_size(type_k, hd), vhb = halo_type_row_size(type_v, hd);
    const size_t krow = (size_t)n_kv * khb, vrow = (size_t)n_kv * vhb;
    const size_t kbytes = (size_t)n_pages * page_size * krow,
                 vbytes = (size_t)n_pages * page_size * vrow;
    char *kc = calloc(kbytes, 1), *vc = calloc(vbytes, 1), *kg = malloc(kbytes),
         *vg = malloc(vbytes);
    int32_t *table = malloc(sizeof(int32_t) * (size_t)n_pages);
    for (int i = 0; i < n_pages; i++)
        table[i] = n_pages - 1 - i;
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)n_tok),
            *pos = malloc(sizeof(int32_t) * (size_t)n_tok);
    for (int t = 0; t < n_tok; t++)
        seq[t] = t % 2, pos[t] = t / 2;
    const int64_t nk = (int64_t)n_kv * hd, stride = nk + 6; /* rows with a gap */
    float *k = malloc(sizeof(float) * (size_t)(n_tok * stride)),
          *v = malloc(sizeof(float) * (size_t)(n_tok * stride));
    static const float special[] = {0x1p-20f,       -0x1p-24f, 0x1.8p-25f, 0x1p-26f,
                                    65504.0f,       65520.0f,  -70000.0f,  1.0f + 0x1p-11f,
                                    1.0f + 0x1p-8f, -0.0f,     5.96e-8f,   0x1.ffep-15f};
    for (int64_t i = 0; i < n_tok * stride; i++) {
        uint32_t r = urand(16);
        k[i] = r < 12 ? special[r] : 3.0f * frand();
        v[i] = r == 0 ? NAN : r == 1 ? -INFINITY : 3.0f * frand();
    }
    for (int64_t b = 0; b < n_tok * stride / 32; b++) { /* a block type's hostile blocks */
        if (halo_type_get(type_k)->is_quantized) hostile_block(k + 32 * b, (int)(b % 10));
        if (halo_type_get(type_v)->is_quantized) hostile_block(v + 32 * b, (int)((b + 3) % 10));
    }
    for (int t = 0; t < n_tok; t++) {
        size_t cell = (size_t)table[seq[t] * per_seq + pos[t] / page_size] * page_size +
                      (size_t)(pos[t] % page_size);
        halo_quant_encode_kv(type_k, k + t * stride, kc + cell * krow, nk);
        halo_quant_encode_kv(type_v, v + t * stride, vc + cell * vrow, nk);
    }
    void *dk = dev_from(V, NULL, kbytes), *dv = dev_from(V, NULL, vbytes);
    int32_t *dt = dev_from(V, table, sizeof(int32_t) * (size_t)n_pages);
    int32_t *ds = dev_from(V, seq, sizeof(int32_t) * (size_t)n_tok),
            *dp = dev_from(V, pos, sizeof(int32_t) * (size_t)n_tok);
    float *dkin = dev_from(V, k, sizeof(float) * (size_t)(n_tok * stride));
    float *dvin = dev_from(V, v, sizeof(float) * (size_t)(n_tok * stride));
    const halo_vk_kv kv = device_cache(type_k, type_v, n_kv, hd, page_size, dk, dv, dt, per_seq);
    int rc = halo_vk_kv_store(V, &kv, n_tok, ds, dp, n_kv, hd, hd, dkin, stride, dvin, stride);
    CHECK_MSG(rc == HALO_OK, "%s", halo_vk_error(V)->msg);
    CHECK(halo_vk_download(V, kg, dk, kbytes) == HALO_OK);
    CHECK(halo_vk_download(V, vg, dv, vbytes) == HALO_OK);
    size_t differ = 0;
    for (size_t i = 0; i < kbytes; i++)
        differ += kg[i] != kc[i];
    for (size_t i = 0; i < vbytes; i++)
        differ += vg[i] != vc[i];
    printf("  kv_store K %-6s V %-6s %d heads of %3d, %2d tokens: %s (%zu of %zu bytes differ)\n",
           halo_type_name(type_k), halo_type_name(type_v), n_kv, hd, n_tok,
           differ ? "DIFFERS" : "the CPU's bytes", differ, kbytes + vbytes);
    CHECK(differ == 0);
    void *d[] = {dk, dv, dt, ds, dp, dkin, dvin};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++)
        halo_vk_free(V, d[i]);
    free(kc), free(vc), free(kg), free(vg), free(table), free(seq), free(pos), free(k), free(v);
}

#endif

int main(void) {
    rng_seed(0x13198A2E03707344ull);
    int device = vk_test_device();
    (void)device; /* unused without the backend: vk_test_device skips then */
#ifdef HALO_HAVE_VULKAN
    V = vk_test_open(device, false);
    const int types[] = {HALO_TYPE_F32,  HALO_TYPE_F16,  HALO_TYPE_BF16,
                         HALO_TYPE_Q8_0, HALO_TYPE_Q4_0, HALO_TYPE_IQ4_NL};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        test_attn(types[i], types[i], 128, 8, 2, 16, 5, 150);
    test_attn(HALO_TYPE_F16, HALO_TYPE_Q8_0, 64, 4, 4, 32, 3, 70);   /* no GQA, mixed types */
    test_attn(HALO_TYPE_Q8_0, HALO_TYPE_F16, 256, 8, 1, 16, 4, 200); /* kdoc-moe's shape */
    test_attn(HALO_TYPE_Q4_0, HALO_TYPE_BF16, 64, 8, 2, 32, 9, 65);
    test_attn(HALO_TYPE_IQ4_NL, HALO_TYPE_Q8_0, 128, 4, 1, 16, 3, 90);
    test_attn(HALO_TYPE_F16, HALO_TYPE_F16, 64, 2, 2, 16, 1, 1); /* one position */
    /* split over several workgroups (flash decoding): the launcher's own choice at long
     * contexts (2 and 6 parts), forced splits with parts of no position or one block */
    test_attn(HALO_TYPE_F16, HALO_TYPE_F16, 256, 16, 2, 256, 1, 1200);
    test_attn(HALO_TYPE_Q8_0, HALO_TYPE_Q8_0, 128, 8, 2, 32, 2, 3100);
    test_attn_split(HALO_TYPE_F16, HALO_TYPE_Q4_0, 64, 4, 2, 16, 5, 150, 7);
    test_attn_split(HALO_TYPE_BF16, HALO_TYPE_F16, 128, 2, 1, 16, 3, 40, 5);
    test_attn_split(HALO_TYPE_F32, HALO_TYPE_F32, 64, 2, 2, 16, 1, 1, 3); /* one position */
    test_kv_store(HALO_TYPE_F16, HALO_TYPE_F16, 2, 64, 16, 40);
    test_kv_store(HALO_TYPE_F32, HALO_TYPE_BF16, 1, 256, 32, 7);
    test_kv_store(HALO_TYPE_BF16, HALO_TYPE_F32, 4, 128, 16, 3);
    if (halo_vk_info(V)->float64) {
        test_kv_store(HALO_TYPE_Q8_0, HALO_TYPE_Q4_0, 2, 64, 16, 40);
        test_kv_store(HALO_TYPE_IQ4_NL, HALO_TYPE_Q8_0, 1, 256, 32, 7);
        test_kv_store(HALO_TYPE_Q4_0, HALO_TYPE_IQ4_NL, 4, 128, 16, 9);
        test_kv_store(HALO_TYPE_F16, HALO_TYPE_IQ4_NL, 3, 32, 16, 5); /* 18-byte rows */
        test_kv_store(HALO_TYPE_Q8_0, HALO_TYPE_BF16, 1, 32, 16, 6);  /* 34-byte rows */
    } else {
        printf("  no shaderFloat64: the block types' stores are refused\n");
    }
    /* a type without a store: refused with the reason, nothing written */
    halo_vk *vk = vk_test_open(device, false);
    halo_vk_kv q5 = {.type_k = HALO_TYPE_Q5_0, .type_v = HALO_TYPE_F16};
    CHECK(halo_vk_kv_store(vk, &q5, 1, NULL, NULL, 1, 64, 64, NULL, 64, NULL, 64) ==
          HALO_ERR_UNSUPPORTED);
    printf("  refused: %s\n", halo_vk_error(vk)->msg);
    halo_vk_close(vk);
    vk_test_check_validation(V);
    halo_vk_close(V);
#endif
    return halo_test_finish("vulkan_attn");
}
