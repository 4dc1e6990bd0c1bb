/*
 * Loading a model: open the GGUF (any load mode), read the hyper-parameters and
 * the tokenizer, then let the architecture bind its weights by tensor name.
 * Weights stay where the file put them (a mapping or the read buffer); a weight
 * is a typed view with its shape and row stride. Every tensor an architecture
 * needs is checked for presence, shape and a type the engine can compute with,
 * so a broken file fails here with the tensor's name rather than in a forward
 * pass.
 */
#include "model/arch.h"
#include "runtime/backend.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"
#include "util/util.h"
#ifdef HALO_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif
#ifdef HALO_HAVE_VULKAN
#include "kernels/vulkan/vk_ops.h"
#endif

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <strings.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const halo_arch_ops *const arch_table[] = {
    &halo_arch_llama,
    &halo_arch_qwen3,
    &halo_arch_qwen3moe,
    &halo_arch_qwen35,
    &halo_arch_qwen35moe,
};

static const halo_arch_ops *find_arch(halo_arch arch) {
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (arch_table[i]->arch == arch) return arch_table[i];
    return NULL;
}

/* ---- binding ------------------------------------------------------------------- */

int halo_bind(const halo_model *m, halo_weight *w, unsigned flags, int64_t n_cols, int64_t n_rows,
              int64_t n_mats, halo_error *err, const char *name_fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, name_fmt);
    vsnprintf(name, sizeof name, name_fmt, ap);
    va_end(ap);
    memset(w, 0, sizeof *w);
    const halo_gguf_tensor *t = halo_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (flags & HALO_BIND_OPTIONAL) return 0;
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "tensor '%s' is missing: this %s model file is incomplete", name,
                              m->hp.arch_name);
    }
    int64_t want[3] = {n_cols, n_rows, n_mats};
    bool ok = t->n_dims >= 1 && t->n_dims <= 3;
    for (int d = 0; d < 3 && ok; d++)
        if (want[d] != 0 && t->ne[d] != want[d]) ok = false;
    if (!ok)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld, "
                              "%lld] for this model's hyper-parameters",
                              name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                              (long long)n_cols, (long long)n_rows, (long long)n_mats);
    const halo_type_traits *tr = halo_type_get(t->type);
    if ((flags & HALO_BIND_F32) && t->type != HALO_TYPE_F32)
        return halo_error_set(err, HALO_ERR_UNSUPPORTED, "tensor '%s' is %s; halo expects f32 here",
                              name, halo_type_name(t->type));
    if (!tr || !tr->to_float)
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "tensor '%s' is of type %s, which halo cannot compute with yet",
                              name, halo_type_name(t->type));
    size_t row = halo_type_row_size(t->type, t->ne[0]);
    if (row == 0)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "tensor '%s': row of %lld values is not a whole number of %s blocks",
                              name, (long long)t->ne[0], tr->name);
    w->type = t->type;
    w->data = t->data;
    w->n_cols = t->ne[0];
    w->n_rows = t->ne[1];
    w->n_mats = t->ne[2];
    w->row_stride = row;
    w->mat_stride = row * (size_t)t->ne[1];
    return 0;
}

int halo_bind_common(halo_model *m, halo_error *err) {
    const halo_hparams *hp = &m->hp;
    int rc;
    if ((rc = halo_bind(m, &m->tok_embd, 0, hp->n_embd, hp->n_vocab, 1, err, "token_embd.weight")) ||
        (rc = halo_bind(m, &m->output_norm, HALO_BIND_F32, hp->n_embd, 1, 1, err,
                        "output_norm.weight")) ||
        (rc = halo_bind(m, &m->output, HALO_BIND_OPTIONAL, hp->n_embd, hp->n_vocab, 1, err,
                        "output.weight")))
        return rc;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */

    /* RoPE adjustments: linear scaling divides every frequency by the factor;
     * Llama 3.1 files carry per-pair divisors in rope_freqs.weight */
    char key[128];
    m->rope_freq_scale = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", hp->arch_name);
    const char *type = halo_gguf_get_str(m->gguf, key);
    float factor = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.factor", hp->arch_name);
    bool has_factor = halo_gguf_get_f32(m->gguf, key, &factor);
    if (!type && !has_factor) {
        snprintf(key, sizeof key, "%s.rope.scale_linear", hp->arch_name); /* older files */
        if (halo_gguf_get_f32(m->gguf, key, &factor)) type = "linear";
    }
    if (!(factor > 0 && factor < 1e6))
        return halo_error_set(err, HALO_ERR_FORMAT, "rope scaling factor %g is out of range",
                              (double)factor);
    if (type && !strcmp(type, "linear")) m->rope_freq_scale = 1.0f / factor;
    else if (type && strcmp(type, "none") && factor != 1.0f)
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "RoPE scaling '%s' (factor %g) is not supported by halo yet", type,
                              (double)factor);
    halo_weight rf;
    if (hp->n_rot >= 2 &&
        (rc = halo_bind(m, &rf, HALO_BIND_OPTIONAL | HALO_BIND_F32, hp->n_rot / 2, 1, 1, err,
                        "rope_freqs.weight")))
        return rc;
    m->rope_freqs = hp->n_rot >= 2 && rf.data ? rf.data : NULL;
    if (m->rope_freqs)
        for (uint32_t i = 0; i < hp->n_rot / 2; i++)
            if (!(m->rope_freqs[i] > 0 && isfinite(m->rope_freqs[i])))
                return halo_error_set(err, HALO_ERR_FORMAT,
                                      "rope_freqs.weight[%u] = %g: factors must be positive", i,
                                      (double)m->rope_freqs[i]);
    return 0;
}

int halo_bind_attention(halo_model *m, uint32_t il, bool qk_norm, halo_error *err) {
    const halo_hparams *hp = &m->hp;
    halo_layer *L = &m->layers[il];
    int64_t e = hp->n_embd, hk = hp->head_dim_k, hv = hp->head_dim_v;
    int64_t nq = hp->n_head, nkv = hp->n_head_kv[il];
    int rc;
    if (nkv == 0 || nq % nkv)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "layer %u: %lld query heads cannot be grouped over %lld KV heads", il,
                              (long long)nq, (long long)nkv);
    if ((rc = halo_bind(m, &L->attn_norm, HALO_BIND_F32, e, 1, 1, err, "blk.%u.attn_norm.weight", il)) ||
        (rc = halo_bind(m, &L->wq, 0, e, nq * hk, 1, err, "blk.%u.attn_q.weight", il)) ||
        (rc = halo_bind(m, &L->wk, 0, e, nkv * hk, 1, err, "blk.%u.attn_k.weight", il)) ||
        (rc = halo_bind(m, &L->wv, 0, e, nkv * hv, 1, err, "blk.%u.attn_v.weight", il)) ||
        (rc = halo_bind(m, &L->wo, 0, nq * hv, e, 1, err, "blk.%u.attn_output.weight", il)))
        return rc;
    if (qk_norm &&
        ((rc = halo_bind(m, &L->q_norm, HALO_BIND_F32, hk, 1, 1, err, "blk.%u.attn_q_norm.weight", il)) ||
         (rc = halo_bind(m, &L->k_norm, HALO_BIND_F32, hk, 1, 1, err, "blk.%u.attn_k_norm.weight", il))))
        return rc;
    return 0;
}

int halo_bind_ffn(halo_model *m, uint32_t il, halo_error *err) {
    const halo_hparams *hp = &m->hp;
    halo_layer *L = &m->layers[il];
    int64_t e = hp->n_embd, f = hp->n_ff;
    int rc;
    if (f == 0)
        return halo_error_set(err, HALO_ERR_FORMAT, "%s.feed_forward_length is missing or 0",
                              hp->arch_name);
    if ((rc = halo_bind(m, &L->ffn_norm, HALO_BIND_F32, e, 1, 1, err, "blk.%u.ffn_norm.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_gate, 0, e, f, 1, err, "blk.%u.ffn_gate.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_up, 0, e, f, 1, err, "blk.%u.ffn_up.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_down, 0, f, e, 1, err, "blk.%u.ffn_down.weight", il)))
        return rc;
    return 0;
}

int halo_bind_moe(halo_model *m, uint32_t il, halo_error *err) {
    const halo_hparams *hp = &m->hp;
    halo_layer *L = &m->layers[il];
    int64_t e = hp->n_embd, f = hp->n_ff_exp, x = hp->n_expert;
    int rc;
    if (x == 0 || hp->n_expert_used == 0 || hp->n_expert_used > hp->n_expert || f == 0)
        return halo_error_set(err, HALO_ERR_FORMAT,
                              "%s: expert_count %u, expert_used_count %u, expert width %u: a MoE "
                              "model needs 1 <= used <= count and a width",
                              hp->arch_name, hp->n_expert, hp->n_expert_used, hp->n_ff_exp);
    if ((rc = halo_bind(m, &L->ffn_norm, HALO_BIND_F32, e, 1, 1, err, "blk.%u.ffn_norm.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_gate_inp, 0, e, x, 1, err, "blk.%u.ffn_gate_inp.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_gate_exps, 0, e, f, x, err, "blk.%u.ffn_gate_exps.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_up_exps, 0, e, f, x, err, "blk.%u.ffn_up_exps.weight", il)) ||
        (rc = halo_bind(m, &L->ffn_down_exps, 0, f, e, x, err, "blk.%u.ffn_down_exps.weight", il)))
        return rc;
    return 0;
}

/* ---- description -------------------------------------------------------------- */

/* llama.cpp's names of general.file_type (llama_ftype), as its tools print them. */
static const char *file_type_name(uint32_t ft) {
    switch (ft) {
    case 0: return "all F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K - Medium";
    case 11: return "Q3_K - Small";
    case 12: return "Q3_K - Medium";
    case 13: return "Q3_K - Large";
    case 14: return "Q4_K - Small";
    case 15: return "Q4_K - Medium";
    case 16: return "Q5_K - Small";
    case 17: return "Q5_K - Medium";
    case 18: return "Q6_K";
    case 19: return "IQ2_XXS - 2.0625 bpw";
    case 20: return "IQ2_XS - 2.3125 bpw";
    case 21: return "Q2_K - Small";
    case 22: return "IQ3_XS - 3.3 bpw";
    case 23: return "IQ3_XXS - 3.0625 bpw";
    case 24: return "IQ1_S - 1.5625 bpw";
    case 25: return "IQ4_NL - 4.5 bpw";
    case 26: return "IQ3_S - 3.4375 bpw";
    case 27: return "IQ3_S mix - 3.66 bpw";
    case 28: return "IQ2_S - 2.5 bpw";
    case 29: return "IQ2_M - 2.7 bpw";
    case 30: return "IQ4_XS - 4.25 bpw";
    case 31: return "IQ1_M - 1.75 bpw";
    case 32: return "BF16";
    case 36: return "TQ1_0 - 1.69 bpw ternary";
    case 37: return "TQ2_0 - 2.06 bpw ternary";
    case 38: return "MXFP4 MoE";
    default: return NULL;
    }
}

/* 30.5e9 -> "30B", 3.3e9 -> "3.3B", 1.71e6 -> "1.7M" */
static void size_label(uint64_t n, char *out, size_t size) {
    const char *unit = "";
    double v = (double)n;
    if (v >= 1e12) v /= 1e12, unit = "T";
    else if (v >= 1e9) v /= 1e9, unit = "B";
    else if (v >= 1e6) v /= 1e6, unit = "M";
    else if (v >= 1e3) v /= 1e3, unit = "K";
    if (v >= 10) snprintf(out, size, "%.0f%s", (double)(uint64_t)v, unit);
    else {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%.1f", (double)(uint64_t)(v * 10) / 10);
        size_t l = strlen(tmp);
        if (l > 2 && !strcmp(tmp + l - 2, ".0")) tmp[l - 2] = 0;
        snprintf(out, size, "%s%s", tmp, unit);
    }
}

/* ---- placement with the model on the GPU: experts kept on the CPU ------------------------ */

/* The routed-expert weight a tensor name denotes ("blk.N.ffn_{gate,up,down}_exps.weight"),
 * or NULL. */
/* Routed-expert tensor names: blk.N.ffn_{gate,up,down}_exps.weight, N < n_layer; the
 * layer and which of the three (0 gate, 1 up, 2 down), else false. */
static bool expert_tensor(const char *name, uint32_t n_layer, uint32_t *il, int *which) {
    unsigned l;
    char w[8];
    int end = 0;
    if (sscanf(name, "blk.%u.ffn_%7[a-z]_exps.weight%n", &l, w, &end) != 2 || name[end] != '\0' ||
        l >= n_layer)
        return false;
    *which = !strcmp(w, "gate") ? 0 : !strcmp(w, "up") ? 1 : !strcmp(w, "down") ? 2 : -1;
    *il = l;
    return *which >= 0;
}

/* CUDA<n> or Vulkan<n>: a GPU's name, as -dev and -ot take them. */
static bool gpu_device_name(const char *dev) {
    const char *n = !strncmp(dev, "CUDA", 4)     ? dev + 4
                    : !strncmp(dev, "Vulkan", 6) ? dev + 6
                                                 : NULL;
    char *end = NULL;
    if (!n || !*n) return false;
    strtol(n, &end, 10);
    return *end == 0;
}

int halo_expert_placement(const halo_gguf *g, const halo_hparams *hp, const halo_load_options *o,
                          bool *host, uint64_t *host_bytes, halo_error *err) {
    const uint32_t n_layer = hp->n_layer;
    for (uint32_t il = 0; il < n_layer; il++)
        host[il] = (int64_t)il < (int64_t)o->n_cpu_moe;
    if (host_bytes) *host_bytes = 0;
    int n = o->n_tensor_overrides > 0 ? o->n_tensor_overrides : 0, rc = 0;
    pcre2_code **re = calloc((size_t)n + 1, sizeof *re);
    bool *cpu = calloc((size_t)n + 1, sizeof *cpu);
    /* per layer and tensor: 1 host, 0 GPU, -1 as --n-cpu-moe says */
    int8_t *by_rule = malloc(3 * (size_t)(n_layer ? n_layer : 1));
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    if (!re || !cpu || !by_rule || !md) {
        rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        goto done;
    }
    memset(by_rule, -1, 3 * (size_t)n_layer);
    for (int i = 0; i < n && !rc; i++) {
        const char *rule = o->tensor_overrides[i], *eq = strrchr(rule, '=');
        if (!eq || eq == rule || !eq[1]) {
            rc = halo_error_set(err, HALO_ERR_ARG,
                                "-ot %s: expected PATTERN=DEVICE, e.g. \"\\.ffn_.*_exps\\.=CPU\"",
                                rule);
            break;
        }
        const char *dev = eq + 1;
        if (!strcasecmp(dev, "CPU")) cpu[i] = true;
        else if (!gpu_device_name(dev))
            rc = halo_error_set(err, HALO_ERR_ARG,
                                "-ot %s: unknown device %s (CPU, CUDA0, Vulkan0, ...)", rule, dev);
        if (rc) break;
        int ec;
        PCRE2_SIZE eo;
        re[i] = pcre2_compile((PCRE2_SPTR)rule, (PCRE2_SIZE)(eq - rule), PCRE2_UTF, &ec, &eo,
                              NULL);
        if (!re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            rc = halo_error_set(err, HALO_ERR_ARG, "-ot %s: bad pattern at offset %zu: %s", rule,
                                (size_t)eo, (const char *)msg);
        }
    }
    for (int64_t t = 0; t < halo_gguf_n_tensors(g) && !rc && n > 0; t++) {
        const char *name = halo_gguf_tensor_at(g, t)->name;
        uint32_t il;
        int which;
        const bool expert = expert_tensor(name, n_layer, &il, &which);
        for (int i = 0; i < n; i++) {
            if (pcre2_match(re[i], (PCRE2_SPTR)name, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) < 0)
                continue;
            if (cpu[i] && !expert)
                rc = halo_error_set(err, HALO_ERR_UNSUPPORTED,
                                    "-ot %s: %s would stay on the CPU, but with the model on "
                                    "the GPU only routed-expert tensors (ffn_*_exps) can; "
                                    "narrow the pattern (e.g. \"\\.ffn_.*_exps\\.=CPU\")",
                                    o->tensor_overrides[i], name);
            else if (expert)
                by_rule[3 * il + (uint32_t)which] = cpu[i]; /* over --n-cpu-moe too */
            break;
        }
    }
    /* a layer's experts go together: the CPU computes all three or none */
    for (uint32_t il = 0; il < n_layer && !rc; il++) {
        bool any = false;
        for (int j = 0; j < 3; j++)
            any |= by_rule[3 * il + (uint32_t)j] < 0 ? host[il] : by_rule[3 * il + (uint32_t)j] == 1;
        host[il] = any;
    }
    for (int64_t t = 0; t < halo_gguf_n_tensors(g) && !rc && host_bytes; t++) {
        const halo_gguf_tensor *ti = halo_gguf_tensor_at(g, t);
        uint32_t il;
        int which;
        if (expert_tensor(ti->name, n_layer, &il, &which) && host[il]) *host_bytes += ti->nbytes;
    }
done:
    for (int i = 0; re && i < n; i++) pcre2_code_free(re[i]);
    free(re);
    free(cpu);
    free(by_rule);
    pcre2_match_data_free(md);
    return rc;
}

/* Mark the weights that stay in host memory (halo_weight.host), as halo_expert_placement
 * decides. */
static int place_host_weights(halo_model *m, const halo_load_options *o, halo_error *err) {
    bool *host = calloc(m->hp.n_layer ? m->hp.n_layer : 1, sizeof *host);
    if (!host) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    uint64_t host_bytes = 0;
    int rc = halo_expert_placement(m->gguf, &m->hp, o, host, &host_bytes, err);
    uint32_t n_host = 0;
    for (uint32_t il = 0; il < m->hp.n_layer && !rc; il++) {
        halo_layer *L = &m->layers[il];
        halo_weight *ws[3] = {&L->ffn_gate_exps, &L->ffn_up_exps, &L->ffn_down_exps};
        bool any = false;
        for (int j = 0; j < 3; j++) {
            ws[j]->host = host[il] && ws[j]->data != NULL;
            any |= ws[j]->host;
        }
        n_host += any;
    }
    free(host);
    if (!rc && n_host) {
        char b[32];
        halo_format_bytes(host_bytes, b, sizeof b);
        halo_log(HALO_LOG_INFO, "routed experts of %u of %u layers stay in host memory (%s), "
                 "computed by the CPU", n_host, m->hp.n_layer, b);
    }
    return rc;
}

static void describe(halo_model *m) {
    char total[24], active[24], typebuf[24];
    size_label(m->stats.n_params, total, sizeof total);
    uint32_t ft;
    const char *tn = NULL;
    if (halo_gguf_get_u32(m->gguf, "general.file_type", &ft)) tn = file_type_name(ft);
    if (!tn) {
        /* no file type: name the type holding most of the bytes */
        int best = 0;
        for (int t = 0; t < HALO_TYPE_COUNT; t++)
            if (m->stats.by_type[t].bytes > m->stats.by_type[best].bytes) best = t;
        snprintf(typebuf, sizeof typebuf, "%s", halo_type_name(best));
        for (char *c = typebuf; *c; c++)
            if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
        tn = typebuf;
    }
    if (m->hp.n_expert > 0 && m->stats.n_params_active < m->stats.n_params) {
        size_label(m->stats.n_params_active, active, sizeof active);
        snprintf(m->desc, sizeof m->desc, "%s %s.A%s %s", m->hp.arch_name, total, active, tn);
    } else {
        snprintf(m->desc, sizeof m->desc, "%s %s %s", m->hp.arch_name, total, tn);
    }
}

/* ---- the GPU backends ------------------------------------------------------------ */

halo_gpu_backend halo_gpu_backend_of(const halo_load_options *opts) {
    if (opts->gpu_backend != HALO_GPU_AUTO) return opts->gpu_backend;
#ifdef HALO_HAVE_CUDA
    if (halo_cuda_device_count() > 0) return HALO_GPU_CUDA;
#endif
#ifdef HALO_HAVE_VULKAN
    /* a Vulkan GPU (discrete, integrated or virtual) at -mg's index; a CPU driver (Mesa's
     * lavapipe) only when -dev names it: the CPU engine is faster than a CPU behind Vulkan */
    halo_error e = {0};
    halo_vk_device_info info[16];
    const int n = halo_vk_devices(info, 16, &e);
    const int i = opts->main_gpu; /* -mg: among this backend's devices */
    if (i >= 0 && i < n && i < 16 && info[i].usable && strcmp(info[i].type, "cpu") != 0)
        return HALO_GPU_VULKAN;
#endif
    return HALO_GPU_CUDA;
}

const char *halo_gpu_backend_name(halo_gpu_backend b) {
    return b == HALO_GPU_VULKAN ? "Vulkan" : "CUDA";
}

/* The weights onto the GPU of opts (-ngl with -dev / -mg). */
static int gpu_upload(halo_model *m, const halo_load_options *opts, halo_error *err) {
    halo_gpu_backend be = halo_gpu_backend_of(opts);
    if (be == HALO_GPU_VULKAN) {
#ifdef HALO_HAVE_VULKAN
        halo_vk *vk = halo_vk_open(opts->main_gpu, NULL, err);
        if (!vk) return err && err->status ? err->status : HALO_ERR_IO;
        int rc = halo_vk_model_upload(m, vk, err);
        if (rc) halo_vk_close(vk);
        else
            halo_log(HALO_LOG_INFO, "the model on Vulkan%d: %s", opts->main_gpu,
                     halo_vk_info(vk)->name);
        return rc;
#else
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "-dev Vulkan%d: this halo was built without the Vulkan backend (no "
                              "Vulkan headers or glslc at build time)",
                              opts->main_gpu);
#endif
    }
#ifdef HALO_HAVE_CUDA
    return halo_cuda_model_upload(m, opts->main_gpu, err);
#else
    return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                          "-ngl %d: this halo was built without the CUDA backend (no CUDA toolkit "
                          "at build time) %s; use -ngl 0",
                          opts->n_gpu_layers,
#ifdef HALO_HAVE_VULKAN
                          "and sees no Vulkan device"
#else
                          "or the Vulkan one"
#endif
    );
#endif
}

/* ---- the public API ------------------------------------------------------------ */

int halo_model_load(const char *path, const halo_load_options *opts, halo_model **out,
                    halo_error *err) {
    *out = NULL;
    halo_model *m = calloc(1, sizeof *m);
    if (!m) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory loading %s", path);
    int rc = halo_gguf_open(path, opts, &m->gguf, err);
    if (rc) goto fail;
    if ((rc = halo_hparams_load(m->gguf, &m->hp, err))) goto fail;
    m->ops = find_arch(m->hp.arch);
    if (!m->ops) {
        rc = halo_error_set(err, HALO_ERR_UNSUPPORTED,
                            "%s: architecture '%s' cannot be run by halo yet (it runs llama, "
                            "qwen3, qwen3moe, qwen35, qwen35moe)",
                            path, m->hp.arch_name);
        goto fail;
    }
    if ((rc = halo_model_stats_compute(m->gguf, &m->hp, &m->stats, err))) goto fail;
    if ((rc = halo_tokenizer_load(m->gguf, &m->tok, err))) goto fail;
    m->layers = calloc(m->hp.n_layer ? m->hp.n_layer : 1, sizeof *m->layers);
    if (!m->layers) {
        rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory loading %s", path);
        goto fail;
    }
    m->rope_mode = HALO_ROPE_NEOX;
    if ((rc = m->ops->bind(m, err))) goto fail;
    describe(m);
    if (opts && opts->n_gpu_layers == 0 && opts->gpu_backend != HALO_GPU_AUTO)
        halo_log(HALO_LOG_WARN, "-dev %s%d picks the GPU, but -ngl is 0: the model runs on the CPU "
                 "(-ngl 99 puts it on the GPU)",
                 halo_gpu_backend_name(opts->gpu_backend), opts->main_gpu);
    if (opts && opts->n_gpu_layers != 0) {
        const int all = (int)m->hp.n_layer;
        if (opts->n_gpu_layers > 0 && opts->n_gpu_layers < all) {
            rc = halo_error_set(err, HALO_ERR_UNSUPPORTED,
                                "-ngl %d: offloading only some of the %d layers is not supported "
                                "yet; use -ngl %d (or 99) for the whole model on the GPU, or 0",
                                opts->n_gpu_layers, all, all);
            goto fail;
        }
        if ((rc = place_host_weights(m, opts, err))) goto fail;
        if ((rc = gpu_upload(m, opts, err))) goto fail;
    }
    *out = m;
    return 0;
fail:
    halo_model_free(m);
    return rc;
}

size_t halo_model_weights(halo_model *m, halo_weight **out, size_t cap) {
    size_t n = 0;
#define ADD(w)                                                                                     \
    do {                                                                                           \
        if (n < cap) out[n] = &(w);                                                                \
        n++;                                                                                       \
    } while (0)
    ADD(m->tok_embd);
    ADD(m->output_norm);
    ADD(m->output);
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        halo_layer *L = &m->layers[il];
        halo_weight *all[] = {
            &L->attn_norm,     &L->wq,           &L->wk,           &L->wv,
            &L->wo,            &L->q_norm,       &L->k_norm,       &L->ffn_norm,
            &L->ffn_gate,      &L->ffn_up,       &L->ffn_down,     &L->ffn_gate_inp,
            &L->ffn_gate_exps, &L->ffn_up_exps,  &L->ffn_down_exps, &L->ffn_gate_inp_shexp,
            &L->ffn_gate_shexp, &L->ffn_up_shexp, &L->ffn_down_shexp, &L->attn_qkv,
            &L->attn_gate,     &L->ssm_a,        &L->ssm_conv1d,   &L->ssm_dt,
            &L->ssm_alpha,     &L->ssm_beta,     &L->ssm_norm,     &L->ssm_out,
        };
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ADD(*all[i]);
    }
#undef ADD
    return n;
}

void halo_model_free(halo_model *m) {
    if (!m) return;
#ifdef HALO_HAVE_CUDA
    halo_cuda_model_release(m);
#endif
#ifdef HALO_HAVE_VULKAN
    halo_vk_model_release(m);
#endif
    if (m->tok) halo_tokenizer_free(m->tok);
    if (m->gguf) halo_gguf_close(m->gguf);
    free(m->layers);
    free(m);
}

const char *halo_model_arch_name(const halo_model *m) { return m->hp.arch_name; }
const char *halo_model_desc(const halo_model *m) { return m->desc; }
int32_t halo_model_n_vocab(const halo_model *m) { return (int32_t)m->hp.n_vocab; }
int32_t halo_model_n_embd(const halo_model *m) { return (int32_t)m->hp.n_embd; }
uint32_t halo_model_n_ctx_train(const halo_model *m) { return m->hp.n_ctx_train; }
uint64_t halo_model_n_params(const halo_model *m) { return m->stats.n_params; }
uint64_t halo_model_size_bytes(const halo_model *m) { return m->stats.bytes; }
const halo_tokenizer *halo_model_tokenizer(const halo_model *m) { return m->tok; }
