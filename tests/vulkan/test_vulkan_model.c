/*
 * Whole models on the Vulkan backend (the weights uploaded by the test with
 * halo_vk_model_upload, on the device the tests pick), against the CPU engine and the
 * original implementation's logits (refs/): every fixture architecture, llama, qwen3,
 * qwen3moe, qwen35 (DeltaNet hybrid) and qwen35moe (kdoc-moe: hybrid + MoE with a shared
 * expert, BF16). For each, both reference sequences:
 *   - the whole prompt in chunks of 32 tokens (prefill: the tiled products, the MoE
 *     experts' grouped by expert (8 and 16 assignments an expert), attention blocks,
 *     DeltaNet state carried across chunks) and, for the first 12 tokens, one at a time
 *     (the decode path: matrix-vector products);
 *   - logits against the CPU's (relRMS), Vulkan's chunks against the CPU's chunks and
 *     its tokens against the CPU's tokens: the random tiny models amplify f32 rounding, so
 *     that the CPU's own two paths differ by 3.2e-6 (kdoc-moe) to 1.1e-4 (tiny-qwen3);
 *     the bound is twice the CPU's own spread plus 1e-5 (a wrong op gives 1e-3 and more).
 *     Measured on lavapipe: chunks 1.0x-1.3x the CPU's spread, tokens 2e-6 to 2.3e-5
 *     (kdoc-moe 8.6e-6), against the CPU's 8e-5..4e-4 distance to the references;
 *   - against refs/ with the CPU's bounds (model_eval.h), and top-1 agreement;
 *   - quantized KV caches (rotated by the Hadamard op), the prompt in chunks against the
 *     CPU's with the same cache: tiny-llama q8_0, tiny-qwen3 iq4_nl, tiny-qwen3moe q4_0,
 *     bounded as above by the CPU's own chunks vs tokens with that cache. Measured on
 *     lavapipe: 7.7e-7 to 9.4e-7, the CPU's own spread 7.5e-7 to 9.3e-7 (~5 s in all);
 *   - the MoE models with their routed experts in host memory (--n-cpu-moe, -ot), computed
 *     by the CPU between the device's router and combine (test_host_experts);
 *   - three sequences decoded side by side with recorded, replayed steps, against the
 *     same steps without recordings and through the staging copies (bit for bit) and the
 *     CPU (test_recorded_steps).
 * HALO_TEST_QUICK (the sanitizer stage): the first sequence only.
 */
#include "../model/model_eval.h"
#include "vulkan_test.h"

#include "model/arch.h"
#include "runtime/backend.h"
#include "util/util.h"

#ifdef HALO_HAVE_VULKAN

static halo_model *load(const char *name) {
    char rel[128];
    snprintf(rel, sizeof rel, "models/%s.gguf", name);
    return eval_load(rel);
}

/* Routed experts kept in host memory (halo_weight.host, as --n-cpu-moe and -ot set it),
 * computed on the CPU between the device's router and combine: every layer's but the
 * last (which stays on the device), then every layer's through the staging copies (a
 * discrete GPU's path). A 48-token prompt (the reference sequences joined) in chunks of
 * 36, ubatches of 36 and 12 tokens (72 and 24 assignments at k = 2: the CPU's products
 * grouped by expert, then one job of all products), then its first 4 tokens one at a
 * time; against the CPU's chunks and tokens, bounded by the CPU's own spread as above.
 * Measured on lavapipe (both placements alike): chunks 5.5e-6 and tokens 7.9e-7 on
 * kdoc-moe (the CPU's own 3.2e-6, bound 1.6e-5), 3.5e-5 and 9.2e-6 on tiny-qwen3moe (the
 * CPU's own 3.6e-5, bound 8.2e-5); ~19 s more of the test's CPU time. */
static void test_host_experts(int device, const eval_model *em, halo_model *cpu,
                              const eval_seqs *s) {
    int32_t tok[48], len = 0;
    for (int i = 0; len < 48; i = (i + 1) % s->n)
        for (int32_t t = 0; t < s->len[i] && len < 48; t++)
            tok[len++] = s->tokens[i][t];
    const eval_seqs one = {.n = 1, .tokens = {tok}, .len = {len}};
    const eval_seqs first = {.n = 1, .tokens = {tok}, .len = {4}};
    const int32_t nv = halo_model_n_vocab(cpu);
    const size_t n = (size_t)len * (size_t)nv, n8 = 4 * (size_t)nv;
    float *lc = malloc(sizeof(float) * n), *c1 = malloc(sizeof(float) * n);
    float *lg = malloc(sizeof(float) * n), *g1 = malloc(sizeof(float) * n8);
    CHECK(eval_all(cpu, HALO_TYPE_F16, &one, 36, lc));
    CHECK(eval_all(cpu, HALO_TYPE_F16, &one, 1, c1));
    const double self = rel_rms(c1, lc, n), bound = 2 * self + 1e-5;
    const uint32_t n_layer = cpu->hp.n_layer, host_layers[2] = {n_layer - 1, n_layer};
    for (int v = 0; v < 2; v++) {
        const double t0 = halo_time_seconds();
        halo_model *gpu = load(em->name);
        CHECK(gpu != NULL);
        if (!gpu) continue;
        for (uint32_t il = 0; il < host_layers[v]; il++) {
            halo_layer *L = &gpu->layers[il];
            L->ffn_gate_exps.host = L->ffn_up_exps.host = L->ffn_down_exps.host = true;
        }
        halo_vk *vk = vk_test_open(device, v == 1);
        halo_error err = {0};
        CHECK_MSG(halo_vk_model_upload(gpu, vk, &err) == 0, "%s", err.msg);
        CHECK(eval_all(gpu, HALO_TYPE_F16, &one, 36, lg));
        CHECK(eval_all(gpu, HALO_TYPE_F16, &first, 1, g1));
        const double chunks = rel_rms(lg, lc, n), steps = rel_rms(g1, c1, n8);
        printf("  %-18s experts of %u of %u layers in host memory%s: %d tokens vs CPU %.2e, "
               "4 one at a time %.2e (bound %.2e: the CPU's own %.2e), %.1f s\n",
               em->name, host_layers[v], n_layer, v == 1 ? " (staging copies)" : "", len, chunks,
               steps, bound, self, halo_time_seconds() - t0);
        CHECK_MSG(chunks <= bound && steps <= bound, "%s, experts of %u layers on the CPU: %.3g / "
                  "%.3g against the CPU", em->name, host_layers[v], chunks, steps);
        CHECK_MSG(halo_vk_validation_errors(vk) == 0, "%d validation errors",
                  halo_vk_validation_errors(vk));
        halo_model_free(gpu); /* and its device */
    }
    free(lc), free(c1), free(lg), free(g1);
}

/* Three sequences decoded side by side (prompts of 5, 8 and 3 tokens, then 8 steps: a
 * token of each sequence, or 3 tokens the runtime must permute into sequence order, or 2
 * tokens): ubatches of up to 64 tokens are recorded once per shape and replayed
 * (halo_vk_record_begin). Every step's logits: bit for bit those without recordings
 * (HALO_VK_GRAPHS=0: the same launches), and against the CPU's within the bound of the
 * CPU's own spread. Mid-way an allocation is freed, which makes the recordings stale:
 * they are recorded again. Writes the logits into out (steps x 3 rows) and the
 * recordings kept and submitted into *kept, *runs. */
#define STEPS 8
static void decode_side_by_side(halo_model *m, const eval_seqs *s, bool graphs, float *out,
                                uint64_t *kept, uint64_t *runs) {
    if (graphs) unsetenv("HALO_VK_GRAPHS");
    else setenv("HALO_VK_GRAPHS", "0", 1);
    halo_context_params p;
    eval_params(&p, HALO_TYPE_F16, 3);
    halo_context *ctx = NULL;
    halo_error err = {0};
    CHECK_MSG(halo_context_new(m, &p, &ctx, &err) == 0, "%s", err.msg);
    unsetenv("HALO_VK_GRAPHS");
    *kept = *runs = 0;
    if (!ctx) return;
    halo_vk *vk = halo_vk_model_device(m);
    uint64_t kept0 = 0, runs0 = 0, cmd0 = 0, bar0 = 0;
    if (vk) halo_vk_recording_stats(vk, &kept0, &runs0);
    if (vk) halo_vk_barrier_stats(vk, &cmd0, &bar0);
    const int32_t nv = halo_model_n_vocab(m);
    int32_t pool[64], np = 0; /* tokens: the reference sequences' */
    for (int i = 0; np < 64; i = (i + 1) % s->n)
        for (int32_t t = 0; t < s->len[i] && np < 64; t++)
            pool[np++] = s->tokens[i][t];
    const int32_t plen[3] = {5, 8, 3};
    int32_t next = 0, len[3] = {0};
    for (int32_t q = 0; q < 3; q++) {
        int32_t pos[8], sid[8];
        for (int32_t t = 0; t < plen[q]; t++)
            pos[t] = t, sid[t] = q;
        halo_batch b = {plen[q], pool + next, pos, sid, NULL};
        CHECK_MSG(halo_decode(ctx, &b, &err) == 0, "%s", err.msg);
        next += plen[q];
        len[q] = plen[q];
    }
    size_t row = 0;
    for (int step = 0; step < STEPS; step++) {
        /* a token of each sequence; two of sequence 2 around one of 0 (a permuted
         * ubatch, a segment of 2 tokens); one of 1 and one of 0 */
        static const int32_t orders[3][3] = {{0, 1, 2}, {2, 0, 2}, {1, 0}};
        const int32_t n = step == 5 ? 2 : 3, *order = orders[step == 5 ? 2 : step % 2];
        int32_t tok[3], pos[3], sid[3];
        int8_t want[3] = {1, 1, 1};
        for (int32_t t = 0; t < n; t++) {
            sid[t] = order[t];
            pos[t] = len[sid[t]]++;
            tok[t] = pool[next++ % np];
        }
        halo_batch b = {n, tok, pos, sid, want};
        CHECK_MSG(halo_decode(ctx, &b, &err) == 0, "%s", err.msg);
        for (int32_t t = 0; t < n; t++)
            memcpy(out + row++ * (size_t)nv, halo_get_logits(ctx, t), sizeof(float) * nv);
        if (step == 3 && vk) halo_vk_free(vk, halo_vk_alloc(vk, 256)); /* recordings stale */
    }
    if (vk) halo_vk_recording_stats(vk, kept, runs);
    *kept -= kept0;
    *runs -= runs0;
    uint64_t cmd = 0, bar = 0;
    if (vk) halo_vk_barrier_stats(vk, &cmd, &bar);
    if (vk && graphs)
        printf("  %-18s side by side: %llu commands recorded, %llu barriers between them\n",
               halo_model_arch_name(m), (unsigned long long)(cmd - cmd0),
               (unsigned long long)(bar - bar0));
    halo_context_free(ctx);
}

static void test_recorded_steps(int device, const eval_model *em, halo_model *cpu,
                                halo_model *gpu, const eval_seqs *s, double bound) {
    const int32_t nv = halo_model_n_vocab(cpu);
    const size_t rows = 3 * STEPS - 1, n = rows * (size_t)nv;
    float *lc = malloc(sizeof(float) * n), *on = malloc(sizeof(float) * n);
    float *off = malloc(sizeof(float) * n);
    uint64_t kept, runs, kept_off, runs_off;
    decode_side_by_side(cpu, s, true, lc, &kept, &runs);
    decode_side_by_side(gpu, s, true, on, &kept, &runs);
    decode_side_by_side(gpu, s, false, off, &kept_off, &runs_off);
    /* attention split over 3 workgroups a row (flash decoding; in use from 1024 positions),
     * recorded: against the CPU as well; and through the staging copies (a discrete GPU's
     * path: the ubatch's arrays and logits through host memory, moved by the step's first
     * and last commands, recorded with it). These two on tiny-llama (plain attention) and
     * kdoc-moe (hybrid, MoE) only, the split on tiny-llama: the paths do not depend on the
     * architecture (CI time) */
    const bool more = !strcmp(em->name, "tiny-llama-f16") || !strcmp(em->name, "kdoc-moe-bf16");
    float *split = malloc(sizeof(float) * n);
    uint64_t kept_split, runs_split;
    double vs_cpu_split = 0;
    const bool split_too = !strcmp(em->name, "tiny-llama-f16"); /* kdoc-moe: the same launches */
    if (split_too) {
        setenv("HALO_VK_ATTN_SPLIT", "3", 1);
        decode_side_by_side(gpu, s, true, split, &kept_split, &runs_split);
        unsetenv("HALO_VK_ATTN_SPLIT");
        vs_cpu_split = rel_rms(split, lc, n);
    }
    halo_model *gs = more ? load(em->name) : NULL;
    halo_vk *vs = more ? vk_test_open(device, true) : NULL;
    halo_error err = {0};
    CHECK_MSG(!more || (gs && halo_vk_model_upload(gs, vs, &err) == 0), "%s", err.msg);
    uint64_t kept_st = 8, runs_st = 11;
    size_t differ_st = more ? n : 0;
    if (gs) {
        decode_side_by_side(gs, s, true, split, &kept_st, &runs_st);
        differ_st = 0;
        for (size_t i = 0; i < n; i++)
            differ_st += memcmp(&on[i], &split[i], sizeof(float)) != 0;
        vk_test_check_validation(vs);
        halo_model_free(gs); /* and vs */
    }
    free(split);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++)
        differ += memcmp(&on[i], &off[i], sizeof(float)) != 0;
    const double vs_cpu = rel_rms(on, lc, n);
    printf("  %-18s 3 sequences side by side, %d steps: %llu recordings run %llu times; vs "
           "without recordings %zu of %zu logits differ; vs CPU %.2e (bound %.2e)\n",
           em->name, STEPS, (unsigned long long)kept, (unsigned long long)runs, differ, n,
           vs_cpu, bound);
    /* 3 prompts and 8 steps, every one recorded (up to 64 tokens); the steps' shapes: a
     * token a sequence A (steps 0, 2, 4, 6), permuted B (1, 3, 7), 2 tokens C (5); the
     * free after step 3 makes A and B stale: kept 3 + A, B, A, C, B, run 11 times */
    CHECK_MSG(kept == 8 && runs == 11 && kept_off == 0 && runs_off == 0,
              "%s: recordings kept %llu, run %llu (expected 8, 11); without: %llu, %llu",
              em->name, (unsigned long long)kept, (unsigned long long)runs,
              (unsigned long long)kept_off, (unsigned long long)runs_off);
    CHECK_MSG(differ == 0, "%s: %zu logits differ from the steps without recordings", em->name,
              differ);
    CHECK_MSG(vs_cpu <= bound, "%s: side by side %.3g against the CPU", em->name, vs_cpu);
    if (more)
        printf("  %-18s through staging copies: %llu recordings run %llu times, %zu logits "
               "differ\n",
               em->name, (unsigned long long)kept_st, (unsigned long long)runs_st, differ_st);
    CHECK_MSG(differ_st == 0 && kept_st == 8 && runs_st == 11,
              "%s, staging copies: %zu logits differ, recordings %llu run %llu", em->name,
              differ_st, (unsigned long long)kept_st, (unsigned long long)runs_st);
    if (split_too) {
        printf("  %-18s attention in 3 parts a row: vs CPU %.2e\n", em->name, vs_cpu_split);
        CHECK_MSG(vs_cpu_split <= bound, "%s: attention in parts %.3g against the CPU", em->name,
                  vs_cpu_split);
    }
    free(lc), free(on), free(off);
}

static void test_model(int device, const eval_model *em) {
    eval_seqs s;
    halo_model *cpu = load(em->name), *gpu = load(em->name);
    CHECK(cpu && gpu);
    CHECK(eval_read_ref_tokens(em->name, &s));
    if (!cpu || !gpu || !s.n) {
        halo_model_free(cpu), halo_model_free(gpu);
        eval_seqs_free(&s);
        return;
    }
    /* the sanitizer stage (HALO_TEST_QUICK): the first sequence only */
    if (getenv("HALO_TEST_QUICK"))
        while (s.n > 1)
            free(s.tokens[--s.n]);
    halo_vk *vk = vk_test_open(device, false);
    halo_error err = {0};
    CHECK_MSG(halo_vk_model_upload(gpu, vk, &err) == 0, "%s", err.msg);
    const int32_t nv = halo_model_n_vocab(cpu);
    const size_t n_tok = eval_total_tokens(&s), n = n_tok * (size_t)nv;
    float *lc = malloc(sizeof(float) * n), *lg = malloc(sizeof(float) * n);
    float *l1 = malloc(sizeof(float) * 12 * (size_t)nv);
    CHECK(eval_all(cpu, HALO_TYPE_F16, &s, 32, lc));
    CHECK(eval_all(gpu, HALO_TYPE_F16, &s, 32, lg));
    /* token by token (a submit each: slow on lavapipe), the first 12 tokens */
    eval_seqs first = {.n = 1, .tokens = {s.tokens[0]}, .len = {s.len[0] < 12 ? s.len[0] : 12}};
    const size_t n1 = (size_t)first.len[0] * (size_t)nv;
    CHECK(eval_all(gpu, HALO_TYPE_F16, &first, 1, l1));
    /* the CPU's own spread: its chunks against its tokens, every sequence (fast) */
    float *c1 = malloc(sizeof(float) * n);
    CHECK(eval_all(cpu, HALO_TYPE_F16, &s, 1, c1));
    const double cpu_self = rel_rms(c1, lc, n), bound = 2 * cpu_self + 1e-5;
    /* Vulkan's chunks against the CPU's, Vulkan's tokens against the CPU's */
    const double vs_cpu = rel_rms(lg, lc, n), step = rel_rms(l1, c1, n1);
    free(c1);
    size_t ref_bytes = 0;
    char rel[128];
    snprintf(rel, sizeof rel, "refs/%s.logits.f32", em->name);
    float *ref = halo_test_read_file(halo_test_fixture_path(rel), &ref_bytes);
    double vs_ref = -1, top1 = -1;
    int counted = 0;
    if (ref && ref_bytes >= n * sizeof(float)) { /* the first n values: the sequences in order */
        vs_ref = rel_rms(lg, ref, n);
        top1 = eval_top1(lg, ref, n_tok, nv, &counted);
    }
    printf("  %-18s vs CPU: chunks %.2e, tokens %.2e (bound %.2e: the CPU's own chunks vs tokens "
           "%.2e); vs refs %.2e (bound %.0e), top-1 %.1f %% of %d\n",
           em->name, vs_cpu, step, bound, cpu_self, vs_ref, em->ref_rel_rms, 100 * top1, counted);
    CHECK_MSG(vs_cpu <= bound && step <= bound, "%s: %.3g / %.3g against the CPU", em->name, vs_cpu,
              step);
    CHECK_MSG(vs_ref >= 0 && vs_ref <= em->ref_rel_rms, "%s: %.3g against refs", em->name, vs_ref);
    CHECK(top1 == 1.0);
    /* a quantized KV cache (rotated: the models' head dims are multiples of 64): Vulkan's
     * chunks against the CPU's with the same cache type, bounded as above by the CPU's own
     * chunks against its tokens with that cache */
    const int kv_type = em == &EVAL_MODELS[0]   ? HALO_TYPE_Q8_0
                        : em == &EVAL_MODELS[1] ? HALO_TYPE_IQ4_NL
                        : em == &EVAL_MODELS[2] ? HALO_TYPE_Q4_0
                                                : -1;
    if (kv_type >= 0) {
        const double t0 = halo_time_seconds();
        float *q1 = malloc(sizeof(float) * n);
        CHECK(eval_all(cpu, kv_type, &s, 32, lc));
        CHECK(eval_all(cpu, kv_type, &s, 1, q1));
        CHECK(eval_all(gpu, kv_type, &s, 32, lg));
        const double self = rel_rms(q1, lc, n), qb = 2 * self + 1e-5;
        const double q = rel_rms(lg, lc, n);
        printf("  %-18s %s KV cache (head dim %u) vs CPU: chunks %.2e (bound %.2e: the CPU's "
               "own %.2e), %.1f s\n",
               em->name, halo_type_name(kv_type), gpu->hp.head_dim_k, q, qb, self,
               halo_time_seconds() - t0);
        CHECK_MSG(q <= qb, "%s, %s KV cache: %.3g against the CPU", em->name,
                  halo_type_name(kv_type), q);
        free(q1);
    }
    /* the sanitizer stage (HALO_TEST_QUICK): the recorded steps of the hybrid model only */
    if (!getenv("HALO_TEST_QUICK") || strcmp(em->name, "tiny-qwen35-f16") == 0)
        test_recorded_steps(device, em, cpu, gpu, &s, bound);
    vk_test_check_validation(vk);
    free(lc), free(lg), free(l1), free(ref);
    /* the sanitizer stage (HALO_TEST_QUICK): the host experts of the tiny MoE model only
     * (kdoc-moe's take the same paths, ~60 s there) */
    const bool quick = getenv("HALO_TEST_QUICK") != NULL;
    if (cpu->hp.n_expert && !(quick && strcmp(em->name, "kdoc-moe-bf16") == 0))
        test_host_experts(device, em, cpu, &s);
    eval_seqs_free(&s);
    halo_model_free(cpu);
    halo_model_free(gpu); /* and its device */
}

#endif

int main(void) {
    int device = vk_test_device();
    (void)device; /* unused without the backend: vk_test_device skips then */
#ifdef HALO_HAVE_VULKAN
    halo_test_require_fixtures();
    for (size_t i = 0; i < EVAL_N_MODELS; i++)
        test_model(device, &EVAL_MODELS[i]);
#endif
    return halo_test_finish("vulkan_model");
}
