/* The Vulkan backend's op table (kernels/vulkan/backend.c) against the CPU backend's, op
 * by op, on real model weights: the fixture models' weights uploaded with
 * halo_vk_model_upload (tiny-llama: F16, NORM RoPE, untied output; tiny-qwen3moe: F16
 * experts, normalized top-k; kdoc-moe: BF16, NEOX partial RoPE, 3-D expert tensors, a
 * shared expert, tied output), a ubatch of 5 tokens at scattered positions in a shuffled
 * order; the MoE op through the model's own block (halo_blk_moe); DeltaNet's two ops on
 * tiny-qwen35 and kdoc-moe, twice (the states carried), outputs and states compared. The Vulkan
 * context is the CPU context's mirror with the Vulkan backend (the table is not complete: no
 * context runs a model on it yet), so both see the same model, hyperparameters and ubatch.
 *
 * Bounds: embedding, add, copies, gather / scatter exact; the others as
 * tests/vulkan/test_vulkan_ops.c (max |vulkan - cpu| / max |cpu|), products 1e-5: the CPU
 * backend's products (AVX2, f32 sums in another order) and the shader's each stay within a
 * few 1e-7 of sum |w x| of the double reference, and sum |w x| is within ~30x of the largest
 * output for random activations; measured 3.5e-7 .. 7e-7 on lavapipe. DeltaNet: conv,
 * norms and gates within 1.9e-7, the rule's outputs 4.3e-7, the conv state exact, the SSM
 * state 3.3e-8. */
#include "compare.h"
#include "harness.h"
#include "rng.h"
#include "vulkan_test.h"

#include "kernels/kernels.h"
#include "model/arch.h"
#include "runtime/backend.h"
#include "runtime/runtime.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef HALO_HAVE_VULKAN

#define N_TOK 5
#define TOL_PRODUCT 1e-5
#define TOL_OP 1e-6

static halo_context *C, *V; /* the CPU context and its Vulkan mirror */
static halo_vk *VK;

static void report(const char *what, double err, double tol) {
    printf("  %-44s max rel err %.3g (bound %.0e)\n", what, err, tol);
    CHECK_MSG(err <= tol, "%s: %.3g > %.0e", what, err, tol);
}

/* Device memory holding h (n floats). */
static float *dev(const float *h, size_t n) {
    float *d = V->be.ops->alloc(&V->be, sizeof(float) * n);
    CHECK(d != NULL);
    if (d && h) V->be.ops->to_backend(&V->be, d, h, sizeof(float) * n);
    return d;
}
static void host(float *h, const float *d, size_t n) {
    V->be.ops->to_host(&V->be, h, d, sizeof(float) * n);
}
static void release(float *d) {
    V->be.ops->free(&V->be, d);
}

/* y = W x for N_TOK random rows on both backends (matrix `expert` of a 3-D weight). */
static void test_product(const char *name, const halo_weight *w, int64_t expert) {
    if (!w->data) return;
    size_t nx = (size_t)(N_TOK * w->n_cols), ny = (size_t)(N_TOK * w->n_rows);
    float *x = malloc(sizeof(float) * nx), *ref = malloc(sizeof(float) * ny);
    float *got = malloc(sizeof(float) * ny);
    for (size_t i = 0; i < nx; i++)
        x[i] = frand();
    C->be.ops->matmul(C, w, expert, x, N_TOK, ref);
    float *dx = dev(x, nx), *dy = dev(NULL, ny);
    V->be.ops->matmul(V, w, expert, dx, N_TOK, dy);
    host(got, dy, ny);
    char what[96];
    snprintf(what, sizeof what, "%s %s [%lld x %lld]%s", name, halo_type_name(w->type),
             (long long)w->n_rows, (long long)w->n_cols, expert ? " last expert" : "");
    report(what, max_rel(got, ref, ny), TOL_PRODUCT);
    release(dx), release(dy);
    free(x), free(ref), free(got);
}

/* deltanet_conv then deltanet_rule of the first DeltaNet layer on both backends, twice
 * (the second ubatch reads the states the first left), outputs and states compared. */
static void test_deltanet(const halo_ubatch *ub) {
    const halo_hparams *hp = C->hp;
    uint32_t il = 0;
    while (C->rs.slot[il] < 0)
        il++;
    const int64_t hk = halo_hparams_deltanet_key_heads(hp),
                  hv = halo_hparams_deltanet_value_heads(hp);
    const int64_t dk = halo_hparams_deltanet_key_dim(hp), dv = halo_hparams_deltanet_value_dim(hp);
    const int64_t ch = 2 * hk * dk + hv * dv, vd = hv * dv;
    const size_t per = (size_t)C->rs.n_slots * C->params.n_seq_max;
    const size_t nconv = per * C->rs.conv_floats, nssm = per * C->rs.ssm_floats;
    V->rs.conv = dev(NULL, nconv), V->rs.ssm = dev(NULL, nssm);
    const size_t nq = N_TOK * (size_t)ch, ng = N_TOK * (size_t)hv, no = N_TOK * (size_t)vd;
    float *qkv = malloc(sizeof(float) * nq), *al = malloc(sizeof(float) * ng);
    float *bb = malloc(sizeof(float) * ng), *z = malloc(sizeof(float) * no);
    float *conv = malloc(sizeof(float) * nq), *g = malloc(sizeof(float) * ng);
    float *beta = malloc(sizeof(float) * ng), *o = malloc(sizeof(float) * no);
    float *got = malloc(sizeof(float) * (nssm > nq ? nssm : nq));
    float *dqkv = dev(NULL, nq), *dal = dev(NULL, ng), *db = dev(NULL, ng), *dz = dev(NULL, no);
    float *dconv = dev(NULL, nq), *dg = dev(NULL, ng), *dbeta = dev(NULL, ng),
          *dout = dev(NULL, no);
    char what[96];
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < nq; i++)
            qkv[i] = 2 * frand();
        for (size_t i = 0; i < ng; i++)
            al[i] = 2 * frand(), bb[i] = 2 * frand();
        for (size_t i = 0; i < no; i++)
            z[i] = 2 * frand();
        V->be.ops->to_backend(&V->be, dqkv, qkv, sizeof(float) * nq);
        V->be.ops->to_backend(&V->be, dal, al, sizeof(float) * ng);
        V->be.ops->to_backend(&V->be, db, bb, sizeof(float) * ng);
        V->be.ops->to_backend(&V->be, dz, z, sizeof(float) * no);
        C->be.ops->deltanet_conv(C, il, ub, qkv, al, bb, conv, g, beta);
        V->be.ops->deltanet_conv(V, il, ub, dqkv, dal, db, dconv, dg, dbeta);
        host(got, dconv, nq);
        snprintf(what, sizeof what, "deltanet_conv (ubatch %d): conv, norms", pass + 1);
        report(what, max_rel(got, conv, nq), TOL_OP);
        host(got, dg, ng);
        report("  decay", max_rel(got, g, ng), TOL_OP);
        host(got, dbeta, ng);
        report("  beta", max_rel(got, beta, ng), TOL_OP);
        /* the rule from the same inputs on both */
        V->be.ops->to_backend(&V->be, dconv, conv, sizeof(float) * nq);
        V->be.ops->to_backend(&V->be, dg, g, sizeof(float) * ng);
        V->be.ops->to_backend(&V->be, dbeta, beta, sizeof(float) * ng);
        C->be.ops->deltanet_rule(C, il, ub, conv, g, beta, z, o);
        V->be.ops->deltanet_rule(V, il, ub, dconv, dg, dbeta, dz, dout);
        host(got, dout, no);
        snprintf(what, sizeof what, "deltanet_rule (ubatch %d)", pass + 1);
        report(what, max_rel(got, o, no), TOL_PRODUCT);
    }
    host(got, V->rs.conv, nconv);
    report("  conv states", max_rel(got, C->rs.conv, nconv), 0.0);
    host(got, V->rs.ssm, nssm);
    report("  SSM states", max_rel(got, C->rs.ssm, nssm), TOL_PRODUCT);
    float *d[] = {V->rs.conv, V->rs.ssm, dqkv, dal, db, dz, dconv, dg, dbeta, dout};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++)
        release(d[i]);
    V->rs = C->rs;
    free(qkv), free(al), free(bb), free(z), free(conv), free(g), free(beta), free(o), free(got);
}

static void test_model(const char *rel) {
    halo_model *m = NULL;
    halo_error err = {0};
    if (halo_model_load(halo_test_fixture_path(rel), NULL, &m, &err)) {
        CHECK_MSG(false, "%s: %s", rel, err.msg);
        return;
    }
    printf("%s\n", rel);
    halo_context_params p;
    halo_context_default_params(&p);
    p.n_ctx = 256;
    p.n_seq_max = 2;
    p.n_ubatch = 8;
    p.n_threads = 2;
    CHECK_MSG(halo_context_new(m, &p, &C, &err) == 0, "%s", err.msg);
    CHECK_MSG(halo_vk_model_upload(m, VK, &err) == 0, "%s", err.msg);
    V = malloc(sizeof *V);
    *V = *C;
    CHECK_MSG(halo_backend_vulkan_init(V, &V->be, &err) == 0, "%s", err.msg);
    const halo_hparams *hp = C->hp;

    /* a ubatch of two sequences' tokens, grouped by sequence through perm */
    int32_t token[N_TOK], pos[N_TOK] = {3, 0, 4, 1, 200}, seq[N_TOK] = {0, 1, 0, 1, 0};
    int32_t out[N_TOK] = {-1, -1, -1, -1, -1}, perm[N_TOK] = {0, 2, 4, 1, 3};
    int32_t seg_off[3] = {0, 3, 5}, seg_seq[2] = {0, 1};
    for (int t = 0; t < N_TOK; t++)
        token[t] = (int32_t)((t * 7919 + 13) % hp->n_vocab);
    halo_ubatch ub = {.n = N_TOK,
                      .token = token,
                      .pos = pos,
                      .seq = seq,
                      .out = out,
                      .n_seg = 2,
                      .seg_off = seg_off,
                      .seg_seq = seg_seq,
                      .perm = perm,
                      .max_pos = 200};
    C->be.ops->begin(C, &ub);
    V->be.ops->begin(V, &ub);

    const size_t ne = (size_t)hp->n_embd, nx = N_TOK * ne;
    float *a = malloc(sizeof(float) * nx), *b = malloc(sizeof(float) * nx);
    float *ref = malloc(sizeof(float) * nx), *got = malloc(sizeof(float) * nx);
    float *da = dev(NULL, nx), *db = dev(NULL, nx), *dc = dev(NULL, nx);

    /* embedding rows: bit for bit */
    C->be.ops->embed(C, &ub, ref);
    V->be.ops->embed(V, &ub, da);
    host(got, da, nx);
    report("embed", max_rel(got, ref, nx), 0.0);

    /* norms with the first layer's weights */
    const halo_layer *L = &m->layers[0];
    const halo_weight *norm_w = L->attn_norm.data ? &L->attn_norm : NULL;
    C->be.ops->rms_norm(C, ref, norm_w, b, N_TOK, (int64_t)ne, 1e-6f);
    V->be.ops->rms_norm(V, da, norm_w, db, N_TOK, (int64_t)ne, 1e-6f);
    host(got, db, nx);
    report("rms_norm (attn_norm)", max_rel(got, b, nx), TOL_OP);
    memcpy(a, ref, sizeof(float) * nx); /* a = embeddings, b = their norm, on both */
    V->be.ops->to_backend(&V->be, db, b, sizeof(float) * nx);
    const halo_weight *ffn_w = L->ffn_norm.data ? &L->ffn_norm : NULL;
    /* the CPU backend has no fused op: add, then rms_norm, as the interface defines it */
    C->be.ops->add(C, a, b, (int64_t)nx);
    C->be.ops->rms_norm(C, a, ffn_w, ref, N_TOK, (int64_t)ne, 1e-6f);
    V->be.ops->add_rms_norm(V, da, db, ffn_w, dc, N_TOK, (int64_t)ne, 1e-6f);
    host(got, da, nx);
    report("add_rms_norm: x + y", max_rel(got, a, nx), 0.0);
    host(got, dc, nx);
    report("add_rms_norm (ffn_norm)", max_rel(got, ref, nx), TOL_OP);

    /* elementwise and copies on random rows */
    for (size_t i = 0; i < nx; i++)
        a[i] = 4 * frand(), b[i] = 4 * frand();
    V->be.ops->to_backend(&V->be, da, a, sizeof(float) * nx);
    V->be.ops->to_backend(&V->be, db, b, sizeof(float) * nx);
    memcpy(ref, a, sizeof(float) * nx);
    C->be.ops->add(C, ref, b, (int64_t)nx);
    V->be.ops->add(V, da, db, (int64_t)nx);
    host(got, da, nx);
    report("add", max_rel(got, ref, nx), 0.0);
    C->be.ops->swiglu(C, ref, b, (int64_t)nx);
    V->be.ops->swiglu(V, da, db, (int64_t)nx);
    host(got, da, nx);
    report("swiglu", max_rel(got, ref, nx), 4e-6);
    C->be.ops->sigmoid_gate(C, ref, b, (int64_t)nx);
    V->be.ops->sigmoid_gate(V, da, db, (int64_t)nx);
    host(got, da, nx);
    report("sigmoid_gate", max_rel(got, ref, nx), 4e-6);
    /* the copies from the same values on both */
    V->be.ops->to_backend(&V->be, da, ref, sizeof(float) * nx);
    V->be.ops->to_backend(&V->be, db, b, sizeof(float) * nx);
    C->be.ops->gather(C, &ub, a, ref, (int64_t)ne);
    V->be.ops->gather(V, &ub, dc, da, (int64_t)ne);
    host(got, dc, nx);
    report("gather", max_rel(got, a, nx), 0.0);
    C->be.ops->scatter(C, &ub, ref, a, (int64_t)ne);
    V->be.ops->scatter(V, &ub, da, dc, (int64_t)ne);
    host(got, da, nx);
    report("scatter", max_rel(got, ref, nx), 0.0);
    const int64_t half = (int64_t)ne / 2;
    C->be.ops->copy2d(C, b, (int64_t)ne, ref + 1, (int64_t)ne, N_TOK, half);
    V->be.ops->copy2d(V, db, (int64_t)ne, da + 1, (int64_t)ne, N_TOK, half);
    host(got, db, nx);
    report("copy2d", max_rel(got, b, nx), 0.0);

    /* RoPE of the query heads at the ubatch's positions, the model's mode and n_rot */
    const int hd = (int)hp->head_dim_k, nh = (int)hp->n_head;
    const size_t nq = (size_t)N_TOK * (size_t)nh * (size_t)hd;
    float *q = malloc(sizeof(float) * nq), *qref = malloc(sizeof(float) * nq);
    float *qgot = malloc(sizeof(float) * nq), *dq = dev(NULL, nq);
    for (size_t i = 0; i < nq; i++)
        q[i] = frand();
    memcpy(qref, q, sizeof(float) * nq);
    V->be.ops->to_backend(&V->be, dq, q, sizeof(float) * nq);
    C->be.ops->rope(C, &ub, qref, nh, hd);
    V->be.ops->rope(V, &ub, dq, nh, hd);
    host(qgot, dq, nq);
    char what[96];
    snprintf(what, sizeof what, "rope %s, n_rot %u of %d", m->rope_mode ? "neox" : "norm",
             hp->n_rot, hd);
    report(what, max_rel(qgot, qref, nq), TOL_OP);

    /* every product of the first layer and the output head */
    const struct {
        const char *name;
        const halo_weight *w;
    } mats[] = {
        {"wq", &L->wq},
        {"wk", &L->wk},
        {"wv", &L->wv},
        {"wo", &L->wo},
        {"ffn_gate", &L->ffn_gate},
        {"ffn_up", &L->ffn_up},
        {"ffn_down", &L->ffn_down},
        {"ffn_gate_inp", &L->ffn_gate_inp},
        {"ffn_up_shexp", &L->ffn_up_shexp},
        {"ssm_out", &L->ssm_out},
        {"attn_qkv", &L->attn_qkv},
        {"output", &m->output},
    };
    for (size_t i = 0; i < sizeof mats / sizeof *mats; i++)
        test_product(mats[i].name, mats[i].w, 0);
    if (L->ffn_down_exps.data) {
        test_product("ffn_down_exps", &L->ffn_down_exps, L->ffn_down_exps.n_mats - 1);
        test_product("ffn_gate_exps", &L->ffn_gate_exps, 0);
    }

    /* Gated DeltaNet on the first DeltaNet layer, two ubatches (the states carried): the
     * mirror gets device copies of the (zero) recurrent state */
    if (hp->n_deltanet_layers) test_deltanet(&ub);

    /* the routed experts (and the shared one) of the first layer, through the model's block */
    if (hp->n_expert) {
        for (size_t i = 0; i < nx; i++)
            a[i] = frand();
        V->be.ops->to_backend(&V->be, da, a, sizeof(float) * nx);
        halo_blk_moe(C, L, a, N_TOK, ref);
        halo_blk_moe(V, L, da, N_TOK, dc);
        host(got, dc, nx);
        snprintf(what, sizeof what, "moe: %u of %u experts%s", hp->n_expert_used, hp->n_expert,
                 L->ffn_gate_shexp.data ? " + shared" : "");
        report(what, max_rel(got, ref, nx), TOL_PRODUCT);
    }

    /* the output head of the rows that ask for logits (tokens 1, 3, 4: rows 0..2), and the
     * embeddings mode's normed rows; finish copies them into ctx->logits */
    for (size_t i = 0; i < nx; i++)
        a[i] = frand();
    V->be.ops->to_backend(&V->be, da, a, sizeof(float) * nx);
    int32_t out_rows[N_TOK] = {-1, 0, -1, 1, 2};
    ub.out = out_rows;
    ub.n_out = 3;
    const size_t nl = 3 * (size_t)hp->n_vocab;
    float *lc = malloc(sizeof(float) * nl), *lv = malloc(sizeof(float) * nl);
    for (int embd = 0; embd < 2; embd++) {
        ub.embd = embd;
        const size_t n_got = embd ? 3 * ne : nl;
        C->logits = lc, V->logits = lv;
        C->be.ops->begin(C, &ub);
        V->be.ops->begin(V, &ub);
        C->be.ops->output(C, &ub, a);
        V->be.ops->output(V, &ub, da);
        CHECK_MSG(V->be.ops->finish(V, &ub) == 0, "%s", halo_vk_error(VK)->msg);
        snprintf(what, sizeof what, "output: %s of 3 rows", embd ? "embeddings" : "logits");
        report(what, max_rel(lv, lc, n_got), TOL_PRODUCT);
    }
    C->logits = V->logits = NULL;
    free(lc), free(lv);
    vk_test_check_validation(VK);
    release(da), release(db), release(dc), release(dq);
    free(a), free(b), free(ref), free(got), free(q), free(qref), free(qgot);
    V->be.ops->release(&V->be);
    free(V);
    halo_context_free(C);
    halo_model_free(m); /* and its device copy, and the device */
}

#endif

int main(void) {
    rng_seed(0x243F6A8885A308D3ull);
    int device = vk_test_device();
    (void)device; /* unused without the backend: vk_test_device skips then */
#ifdef HALO_HAVE_VULKAN
    halo_test_require_fixtures();
    /* each op's own launches, between a begin and downloads (not a whole step): recorded
     * steps are off here; test_vulkan_model checks them against the CPU */
    setenv("HALO_VK_GRAPHS", "0", 1);
    const char *models[] = {"models/tiny-llama-f16.gguf", "models/tiny-qwen3moe-f16.gguf",
                            "models/tiny-qwen35-f16.gguf", "models/kdoc-moe-bf16.gguf"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        VK = vk_test_open(device, false); /* the model owns it once uploaded */
        test_model(models[i]);
    }
    /* through the staging copies (a discrete GPU's path: the ubatch's arrays and the
     * logits through host memory, copied by the step's first and last commands) */
    printf("through the staging copies\n");
    VK = vk_test_open(device, true);
    test_model(models[0]);
#endif
    return halo_test_finish("vulkan_backend");
}
