/*
 * halo synth — write a GGUF model with random but well-behaved weights at the real shapes
 * of a known model, for benchmarks and tests that need a big file without downloading one.
 *
 * The file is structurally what llama.cpp's converter and llama-quantize write for the
 * real model (names, shapes, per-tensor types, metadata, tokenizer, chat template; see
 * synth.h), so any engine loads and runs it. Generation streams: tensors are produced in
 * chunks of rows by a pool of threads (generate + encode), and the main thread writes the
 * chunks in order through the GGUF writer, so memory stays at a few chunks per thread
 * whatever the model's size.
 */
#define _GNU_SOURCE
#include "synth.h"
#include "tools.h"

#include "format/gguf.h"
#include "quant/quant.h"
#include "util/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo synth --preset NAME [options]\n"
            "       halo synth --list\n"
            "\n"
            "Write a GGUF model with random weights at the real shapes of a known model:\n"
            "same tensors, block types, metadata, tokenizer and chat template as the files\n"
            "llama.cpp's tools write, so engines load and run it (the output is noise).\n"
            "\n"
            "options:\n"
            "  --preset NAME    the model to imitate (--list shows them)\n"
            "  --type T         block types (default Q4_K_M):\n"
            "                     a mix as llama-quantize makes it: Q4_K_M, Q4_K_S, Q5_K_M,\n"
            "                     Q5_K_S, Q3_K_M, Q3_K_S, Q3_K_L, MXFP4_MOE;\n"
            "                     or one type for every matrix (like --pure): f32, f16, bf16,\n"
            "                     q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K,\n"
            "                     iq4_nl, iq4_xs, mxfp4\n"
            "  --layers N       number of layers (default: the model's)\n"
            "  --ctx N          context_length written in the file (default: the model's)\n"
            "  --seed S         random seed (default 1); same seed, same file\n"
            "  -o, --output F   output file (default: PRESET-TYPE.gguf)\n"
            "  -t, --threads N  threads for generation and encoding (default: all cores)\n"
            "  --dry-run        print the tensors, types and sizes; write nothing\n"
            "  --list           list the presets with their parameter counts\n"
            "\n"
            "overrides for small files of the same structure (tests):\n"
            "  --vocab N        vocabulary size (rows of token_embd/output)\n"
            "  --experts N      number of routed experts (MoE presets; top-k is capped at N)\n"
            "  --ff N           width of every FFN (dense, routed experts, shared expert)\n");
}

/* ---- presets listing --------------------------------------------------------------------- */

static void list_presets(void) {
    printf("%-22s %-10s %6s %10s %10s  %s\n", "preset", "arch", "layers", "params", "active",
           "model");
    static const char *arch_names[] = {"llama", "qwen3", "qwen3moe", "qwen35", "qwen35moe"};
    for (size_t i = 0; i < synth_n_presets; i++) {
        const synth_model *m = &synth_presets[i];
        uint64_t total = 0, active = 0;
        char a[32], b[32];
        synth_count_params(m, &total, &active);
        halo_format_count(total, a, sizeof a);
        halo_format_count(active, b, sizeof b);
        printf("%-22s %-10s %6lld %10s %10s  %s\n", m->preset, arch_names[m->arch],
               (long long)m->n_layer, a, m->n_expert ? b : "", m->model_name);
    }
}

static const char *arch_name(synth_arch a) {
    switch (a) {
    case SYNTH_ARCH_LLAMA: return "llama";
    case SYNTH_ARCH_QWEN3: return "qwen3";
    case SYNTH_ARCH_QWEN3MOE: return "qwen3moe";
    case SYNTH_ARCH_QWEN35: return "qwen35";
    case SYNTH_ARCH_QWEN35MOE: return "qwen35moe";
    }
    return "?";
}

/* ---- metadata ------------------------------------------------------------------------------ */

typedef struct kv_writer {
    halo_gguf_writer *w;
    const char *arch;
    halo_error *err;
    int rc;
} kv_writer;

static void kv_u32(kv_writer *k, const char *key, uint64_t v) {
    if (k->rc) return;
    if (v > UINT32_MAX) {
        k->rc = halo_error_set(k->err, HALO_ERR_RANGE, "%s: %llu does not fit in u32", key,
                               (unsigned long long)v);
        return;
    }
    k->rc = halo_gguf_writer_set_u32(k->w, key, (uint32_t)v, k->err);
}
static void kv_f32(kv_writer *k, const char *key, double v) {
    if (!k->rc) k->rc = halo_gguf_writer_set_f32(k->w, key, (float)v, k->err);
}
static void kv_str(kv_writer *k, const char *key, const char *v) {
    if (!k->rc) k->rc = halo_gguf_writer_set_str(k->w, key, v, k->err);
}
static void kv_bool(kv_writer *k, const char *key, bool v) {
    if (!k->rc) k->rc = halo_gguf_writer_set_bool(k->w, key, v, k->err);
}
/* "<arch>.<suffix>" */
static const char *ak(kv_writer *k, const char *suffix) {
    static char buf[128];
    snprintf(buf, sizeof buf, "%s.%s", k->arch, suffix);
    return buf;
}

static void size_label(const synth_model *m, bool as_published, char *out, size_t size) {
    if (as_published) {
        snprintf(out, size, "%s", m->size_label);
        return;
    }
    /* a smaller variant: its own counts, "1.2B" or "1.2B-A0.3B", without the spaces */
    uint64_t total = 0, active = 0;
    char a[32], b[32];
    synth_count_params(m, &total, &active);
    halo_format_count(total, a, sizeof a);
    halo_format_count(active, b, sizeof b);
    char *p, *q;
    for (p = q = a; *p; p++)
        if (*p != ' ') *q++ = *p;
    *q = '\0';
    for (p = q = b; *p; p++)
        if (*p != ' ') *q++ = *p;
    *q = '\0';
    if (m->n_expert) snprintf(out, size, "%s-A%s", a, b);
    else snprintf(out, size, "%s", a);
}

static int write_metadata(halo_gguf_writer *w, const synth_model *m, bool as_published,
                          const synth_type_spec *spec, uint64_t seed, const synth_vocab *v,
                          halo_error *err) {
    kv_writer k = {.w = w, .arch = arch_name(m->arch), .err = err};
    const bool qwen35 = m->arch == SYNTH_ARCH_QWEN35 || m->arch == SYNTH_ARCH_QWEN35MOE;
    const bool moe = m->n_expert > 0;
    char buf[256], label[80];

    size_label(m, as_published, label, sizeof label);
    kv_str(&k, "general.architecture", k.arch);
    kv_str(&k, "general.type", "model");
    snprintf(buf, sizeof buf, "%s (synthetic)", m->model_name);
    kv_str(&k, "general.name", buf);
    kv_str(&k, "general.basename", m->basename);
    kv_str(&k, "general.size_label", label);
    snprintf(buf, sizeof buf,
             "Random weights at the shapes of %s, written by halo synth (preset %s, seed %llu). "
             "Not a trained model: its output is noise.",
             m->model_name, m->preset, (unsigned long long)seed);
    kv_str(&k, "general.description", buf);

    /* hyper-parameters, in the order the converter writes them */
    kv_u32(&k, ak(&k, "block_count"), (uint64_t)m->n_layer);
    kv_u32(&k, ak(&k, "context_length"), (uint64_t)m->n_ctx);
    kv_u32(&k, ak(&k, "embedding_length"), (uint64_t)m->n_embd);
    if (m->n_ff > 0 && m->arch != SYNTH_ARCH_QWEN35MOE)
        kv_u32(&k, ak(&k, "feed_forward_length"), (uint64_t)m->n_ff);
    kv_u32(&k, ak(&k, "attention.head_count"), (uint64_t)m->n_head);
    kv_u32(&k, ak(&k, "attention.head_count_kv"), (uint64_t)m->n_head_kv);
    if (qwen35 && !k.rc)
        k.rc = halo_gguf_writer_set_arr(w, ak(&k, "rope.dimension_sections"), HALO_GGUF_INT32,
                                        m->rope_sections, 4, err);
    kv_f32(&k, ak(&k, "rope.freq_base"), m->rope_theta);
    kv_f32(&k, ak(&k, "attention.layer_norm_rms_epsilon"), m->rms_eps);
    if (moe) {
        kv_u32(&k, ak(&k, "expert_count"), (uint64_t)m->n_expert);
        kv_u32(&k, ak(&k, "expert_used_count"), (uint64_t)m->n_expert_used);
    }
    kv_u32(&k, ak(&k, "attention.key_length"), (uint64_t)m->head_dim);
    kv_u32(&k, ak(&k, "attention.value_length"), (uint64_t)m->head_dim);
    kv_u32(&k, "general.file_type", spec->file_type);
    if (moe) kv_u32(&k, ak(&k, "expert_feed_forward_length"), (uint64_t)m->n_ff_exp);
    if (moe && m->n_ff_shexp > 0)
        kv_u32(&k, ak(&k, "expert_shared_feed_forward_length"), (uint64_t)m->n_ff_shexp);
    if (qwen35) {
        kv_u32(&k, ak(&k, "ssm.conv_kernel"), (uint64_t)m->ssm_d_conv);
        kv_u32(&k, ak(&k, "ssm.state_size"), (uint64_t)m->ssm_head_k_dim);
        kv_u32(&k, ak(&k, "ssm.group_count"), (uint64_t)m->ssm_n_k_heads);
        kv_u32(&k, ak(&k, "ssm.time_step_rank"), (uint64_t)m->ssm_n_v_heads);
        kv_u32(&k, ak(&k, "ssm.inner_size"), (uint64_t)(m->ssm_n_v_heads * m->ssm_head_v_dim));
        kv_u32(&k, ak(&k, "full_attention_interval"), (uint64_t)m->full_attn_interval);
        kv_u32(&k, ak(&k, "rope.dimension_count"), (uint64_t)m->rope_dim);
    }
    if (m->arch == SYNTH_ARCH_LLAMA) {
        kv_u32(&k, ak(&k, "vocab_size"), (uint64_t)m->n_vocab);
        kv_u32(&k, ak(&k, "rope.dimension_count"), (uint64_t)m->rope_dim);
    }
    kv_u32(&k, "general.quantization_version", 2);

    /* tokenizer */
    kv_str(&k, "tokenizer.ggml.model", v->model);
    kv_str(&k, "tokenizer.ggml.pre", v->pre);
    if (!k.rc)
        k.rc = halo_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens,
                                            (uint64_t)v->n_tokens, err);
    if (!k.rc)
        k.rc = halo_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", HALO_GGUF_INT32, v->types,
                                        (uint64_t)v->n_tokens, err);
    if (!k.rc)
        k.rc = halo_gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", (const char *const *)v->merges,
                                            (uint64_t)v->n_merges, err);
    if (v->bos_id >= 0) kv_u32(&k, "tokenizer.ggml.bos_token_id", (uint64_t)v->bos_id);
    if (v->eos_id >= 0) kv_u32(&k, "tokenizer.ggml.eos_token_id", (uint64_t)v->eos_id);
    if (v->pad_id >= 0) kv_u32(&k, "tokenizer.ggml.padding_token_id", (uint64_t)v->pad_id);
    kv_bool(&k, "tokenizer.ggml.add_bos_token", v->add_bos);
    kv_str(&k, "tokenizer.chat_template", v->chat_template);
    return k.rc;
}

/* ---- the generation pipeline ------------------------------------------------------------------ */

typedef struct chunk {
    uint32_t tensor;
    int64_t row0, n_rows;
} chunk;

typedef struct pipeline {
    const synth_model *m;
    const synth_tensor *t;
    const chunk *chunks;
    size_t n_chunks;
    uint64_t seed;
    size_t n_slots;
    uint8_t **slot;      /* n_slots output buffers */
    size_t *slot_bytes;  /* bytes in each */
    size_t *slot_chunk;  /* which chunk a slot holds when done (SIZE_MAX: not done) */
    size_t max_elems;    /* floats per chunk, at most */

    pthread_mutex_t mu;
    pthread_cond_t work; /* a slot was freed (or stop) */
    pthread_cond_t done; /* a chunk was finished */
    size_t next;         /* next chunk to claim */
    size_t written;      /* chunks written: slots of chunks < written + n_slots are free */
    bool stop;
    halo_error err;
    int rc;
} pipeline;

static int encode(int type, const float *in, void *out, int64_t n, halo_error *err) {
    switch (type) {
    case HALO_TYPE_F32: memcpy(out, in, (size_t)n * sizeof(float)); return 0;
    case HALO_TYPE_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = halo_fp32_to_fp16(in[i]);
        return 0;
    case HALO_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = halo_fp32_to_bf16(in[i]);
        return 0;
    default: return halo_quant_encode_ref(type, in, out, n, err);
    }
}

static void *worker(void *arg) {
    pipeline *p = arg;
    float *f = malloc(p->max_elems * sizeof *f);
    pthread_mutex_lock(&p->mu);
    if (!f && !p->rc) {
        p->rc = halo_error_set(&p->err, HALO_ERR_NOMEM, "out of memory (generation buffer)");
        p->stop = true;
        pthread_cond_broadcast(&p->done);
    }
    for (;;) {
        while (!p->stop && p->next < p->n_chunks && p->next >= p->written + p->n_slots)
            pthread_cond_wait(&p->work, &p->mu);
        if (p->stop || p->next >= p->n_chunks) break;
        size_t c = p->next++;
        pthread_mutex_unlock(&p->mu);

        const chunk *ch = &p->chunks[c];
        const synth_tensor *t = &p->t[ch->tensor];
        size_t s = c % p->n_slots;
        int64_t n = ch->n_rows * t->ne[0];
        halo_error e = {0};
        synth_fill_rows(p->m, t, ch->tensor, p->seed, ch->row0, ch->n_rows, f);
        int rc = encode(t->type, f, p->slot[s], n, &e);

        pthread_mutex_lock(&p->mu);
        if (rc) {
            if (!p->rc) {
                p->rc = rc;
                halo_error_set(&p->err, rc, "%s (%s): %s", t->name, halo_type_name(t->type), e.msg);
            }
            p->stop = true;
        } else {
            p->slot_bytes[s] = halo_type_row_size(t->type, t->ne[0]) * (size_t)ch->n_rows;
            p->slot_chunk[s] = c;
        }
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    free(f);
    return NULL;
}

/* ---- progress ------------------------------------------------------------------------------------ */

static void fmt_duration(double s, char *out, size_t size) {
    if (s < 0 || s > 1e7) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, size, "%ld:%02ld", t / 60, t % 60);
}

static void progress(uint64_t done, uint64_t total, double elapsed, const char *name, bool tty,
                     bool final) {
    char a[32], b[32], r[32], eta[32];
    double rate = elapsed > 0 ? (double)done / elapsed : 0;
    halo_format_bytes(done, a, sizeof a);
    halo_format_bytes(total, b, sizeof b);
    halo_format_bytes((uint64_t)rate, r, sizeof r);
    fmt_duration(rate > 0 ? (double)(total - done) / rate : 0, eta, sizeof eta);
    fprintf(stderr, "%s  %s / %s  %5.1f%%  %s/s  ETA %s  %-32.32s%s", tty ? "\r" : "", a, b,
            total ? 100.0 * (double)done / (double)total : 100.0, r, eta, final ? "" : name,
            tty && !final ? "" : "\n");
    fflush(stderr);
}

/* ---- the command ---------------------------------------------------------------------------------- */

static int check_space(const char *path, uint64_t need) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    struct statvfs st;
    int rc = 0;
    if (statvfs(dir, &st) == 0) {
        uint64_t avail = (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
        if (avail < need) {
            char a[32], b[32];
            fprintf(stderr, "error: %s needs %s but only %s is free there\n", path,
                    halo_format_bytes(need, a, sizeof a), halo_format_bytes(avail, b, sizeof b));
            rc = 1;
        }
    }
    return rc;
}

int cmd_synth(int argc, char **argv) {
    const char *preset = NULL, *type_name = "Q4_K_M", *out_path = NULL;
    int64_t layers = -1, ctx = -1, vocab = -1, experts = -1, ff = -1, threads = -1;
    int64_t seed = 1;
    bool list = false, dry_run = false;

    for (int i = 1; i < argc;) {
        const char *a = argv[i], *v;
        if (tools_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--list")) {
            list = true;
            i++;
        } else if (!strcmp(a, "--dry-run")) {
            dry_run = true;
            i++;
        } else if (!strcmp(a, "--preset")) {
            if (!(preset = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--type")) {
            if (!(type_name = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(out_path = tools_flag_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--layers")) {
            if (!(v = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, v, 1, 4096, &layers))
                return 2;
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, v, 1, UINT32_MAX, &ctx))
                return 2;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, v, 0, INT64_MAX, &seed))
                return 2;
        } else if (!strcmp(a, "--vocab")) {
            if (!(v = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, v, 1, INT32_MAX, &vocab))
                return 2;
        } else if (!strcmp(a, "--experts")) {
            if (!(v = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, v, 1, 65536, &experts))
                return 2;
        } else if (!strcmp(a, "--ff")) {
            if (!(v = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, v, 1, 1 << 20, &ff))
                return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = tools_flag_value(argc, argv, &i)) || !tools_parse_int(a, v, 1, 1024, &threads))
                return 2;
        } else {
            fprintf(stderr, "error: unknown option '%s' (halo synth --help lists them)\n", a);
            return 2;
        }
    }
    if (list) {
        list_presets();
        return 0;
    }
    if (!preset) {
        fprintf(stderr, "error: --preset is required (halo synth --list shows the presets)\n");
        return 2;
    }
    const synth_model *base = synth_preset_find(preset);
    if (!base) {
        fprintf(stderr, "error: unknown preset '%s'; presets:", preset);
        for (size_t i = 0; i < synth_n_presets; i++) fprintf(stderr, " %s", synth_presets[i].preset);
        fprintf(stderr, "\n");
        return 2;
    }
    synth_type_spec spec;
    if (!synth_type_parse(type_name, &spec)) {
        fprintf(stderr, "error: unknown --type '%s'; %s\n", type_name, synth_type_names());
        return 2;
    }

    /* the model with its overrides */
    synth_model m = *base;
    bool as_published = true;
    if (layers > 0 && layers != m.n_layer) m.n_layer = layers, as_published = false;
    if (ctx > 0) m.n_ctx = ctx;
    if (vocab > 0 && vocab != m.n_vocab) m.n_vocab = vocab, as_published = false;
    if (experts > 0) {
        if (m.n_expert == 0) {
            fprintf(stderr, "error: --experts: preset %s is not a mixture of experts\n", m.preset);
            return 2;
        }
        if (experts != m.n_expert) as_published = false;
        m.n_expert = experts;
        if (m.n_expert_used > experts) m.n_expert_used = experts;
    }
    if (ff > 0) {
        if (m.n_ff) m.n_ff = ff;
        if (m.n_ff_exp) m.n_ff_exp = ff;
        if (m.n_ff_shexp) m.n_ff_shexp = ff;
        as_published = false;
    }

    /* llama.cpp cannot run a hybrid model without any attention layer (its KV cache would
     * be empty), and no real Qwen3.5 model is one */
    if (m.full_attn_interval > 0 && m.n_layer < m.full_attn_interval) {
        fprintf(stderr,
                "error: --layers: %s needs at least %lld layers (every %lldth layer is full "
                "attention, the others Gated DeltaNet)\n",
                m.preset, (long long)m.full_attn_interval, (long long)m.full_attn_interval);
        return 2;
    }

    halo_error err = {0};
    synth_tensor *t = NULL;
    size_t n_tensors = 0;
    if (synth_plan_build(&m, &t, &n_tensors, &err) || synth_choose_types(&m, &spec, t, n_tensors, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        free(t);
        return err.status == HALO_ERR_ARG ? 2 : 1;
    }
    uint64_t data_bytes = 0, total_params = 0, active_params = 0;
    for (size_t i = 0; i < n_tensors; i++) {
        if (halo_add_overflow(data_bytes, halo_align_up(t[i].nbytes, HALO_GGUF_DEFAULT_ALIGNMENT),
                              &data_bytes)) {
            fprintf(stderr, "error: model size out of range\n");
            free(t);
            return 1;
        }
    }
    synth_count_params(&m, &total_params, &active_params);

    /* every type must be encodable before anything is written */
    for (size_t i = 0; i < n_tensors; i++) {
        int ty = t[i].type;
        const halo_type_traits *tt = halo_type_get(ty);
        if (ty != HALO_TYPE_F32 && ty != HALO_TYPE_F16 && ty != HALO_TYPE_BF16 &&
            (!tt || !tt->from_float_ref)) {
            fprintf(stderr, "error: --type %s: halo has no encoder for %s yet (tensor %s)\n",
                    spec.name, halo_type_name(ty), t[i].name);
            free(t);
            return 1;
        }
    }

    if (dry_run) {
        uint64_t per_type[HALO_TYPE_COUNT] = {0};
        for (size_t i = 0; i < n_tensors; i++) {
            printf("%-34s %-8s [%lld", t[i].name, halo_type_name(t[i].type), (long long)t[i].ne[0]);
            for (uint32_t d = 1; d < t[i].n_dims; d++) printf(", %lld", (long long)t[i].ne[d]);
            char b[32];
            printf("] %s\n", halo_format_bytes(t[i].nbytes, b, sizeof b));
            per_type[t[i].type] += t[i].nbytes;
        }
        char a[32], b[32], c[32];
        printf("\n%s, %s: %zu tensors, %s params", m.model_name, spec.name, n_tensors,
               halo_format_count(total_params, a, sizeof a));
        if (m.n_expert) printf(" (%s active)", halo_format_count(active_params, a, sizeof a));
        printf(", tensor data %s (%s)\n", halo_format_bytes_si(data_bytes, b, sizeof b),
               halo_format_bytes(data_bytes, c, sizeof c));
        for (int ty = 0; ty < HALO_TYPE_COUNT; ty++)
            if (per_type[ty]) printf("  %-8s %s\n", halo_type_name(ty), halo_format_bytes(per_type[ty], a, sizeof a));
        free(t);
        return 0;
    }

    char default_out[256];
    if (!out_path) {
        snprintf(default_out, sizeof default_out, "%s-%s.gguf", m.preset, spec.name);
        out_path = default_out;
    }
    if (check_space(out_path, data_bytes)) {
        free(t);
        return 1;
    }

    double t0 = halo_time_seconds();
    synth_vocab vocab_data;
    if (synth_vocab_build(&m, &vocab_data, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        free(t);
        return err.status == HALO_ERR_ARG ? 2 : 1;
    }

    halo_gguf_writer *w = NULL;
    if (halo_gguf_writer_open(out_path, &w, &err) ||
        write_metadata(w, &m, as_published, &spec, (uint64_t)seed, &vocab_data, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        if (w) halo_gguf_writer_abort(w);
        synth_vocab_free(&vocab_data);
        free(t);
        return 1;
    }
    synth_vocab_free(&vocab_data);
    for (size_t i = 0; i < n_tensors; i++) {
        if (halo_gguf_writer_add_tensor(w, t[i].name, t[i].type, t[i].n_dims, t[i].ne, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            halo_gguf_writer_abort(w);
            free(t);
            return 1;
        }
    }

    /* chunks: about 1M values each (4 MiB of floats), whole rows */
    const int64_t chunk_elems = 1 << 20;
    size_t n_chunks = 0, max_elems = 1, max_bytes = 1;
    for (size_t i = 0; i < n_tensors; i++) {
        int64_t rows = t[i].ne[1] * t[i].ne[2] * t[i].ne[3];
        int64_t per = chunk_elems / t[i].ne[0];
        if (per < 1) per = 1;
        n_chunks += (size_t)((rows + per - 1) / per);
        if ((size_t)(per * t[i].ne[0]) > max_elems) max_elems = (size_t)(per * t[i].ne[0]);
        size_t bytes = halo_type_row_size(t[i].type, t[i].ne[0]) * (size_t)per;
        if (bytes > max_bytes) max_bytes = bytes;
    }
    chunk *chunks = malloc(n_chunks * sizeof *chunks);
    if (threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc > 0 ? nc : 1;
    }
    pipeline p = {.m = &m, .t = t, .seed = (uint64_t)seed, .max_elems = max_elems};
    p.n_slots = (size_t)threads * 2 + 2;
    p.slot = calloc(p.n_slots, sizeof *p.slot);
    p.slot_bytes = calloc(p.n_slots, sizeof *p.slot_bytes);
    p.slot_chunk = malloc(p.n_slots * sizeof *p.slot_chunk);
    bool oom = !chunks || !p.slot || !p.slot_bytes || !p.slot_chunk;
    for (size_t s = 0; !oom && s < p.n_slots; s++) {
        p.slot[s] = malloc(max_bytes);
        p.slot_chunk[s] = SIZE_MAX;
        oom = !p.slot[s];
    }
    if (!oom) {
        size_t c = 0;
        for (size_t i = 0; i < n_tensors; i++) {
            int64_t rows = t[i].ne[1] * t[i].ne[2] * t[i].ne[3];
            int64_t per = chunk_elems / t[i].ne[0];
            if (per < 1) per = 1;
            for (int64_t r = 0; r < rows; r += per)
                chunks[c++] = (chunk){(uint32_t)i, r, rows - r < per ? rows - r : per};
        }
    }
    p.chunks = chunks;
    p.n_chunks = n_chunks;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.work, NULL);
    pthread_cond_init(&p.done, NULL);

    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    int64_t started = 0;
    if (oom || !tid) {
        p.rc = halo_error_set(&p.err, HALO_ERR_NOMEM, "out of memory (generation buffers)");
    } else {
        for (; started < threads; started++)
            if (pthread_create(&tid[started], NULL, worker, &p)) break;
        if (started == 0) p.rc = halo_error_set(&p.err, HALO_ERR_NOMEM, "cannot start threads");
    }

    /* write the chunks in order as they are finished */
    const bool tty = isatty(STDERR_FILENO);
    const double every = tty ? 0.25 : 10.0;
    double last = halo_time_seconds();
    uint64_t written = 0;
    for (size_t c = 0; c < n_chunks && !p.rc; c++) {
        size_t s = c % p.n_slots;
        pthread_mutex_lock(&p.mu);
        while (p.slot_chunk[s] != c && !p.rc) pthread_cond_wait(&p.done, &p.mu);
        pthread_mutex_unlock(&p.mu);
        if (p.rc) break;
        const synth_tensor *x = &t[chunks[c].tensor];
        if (halo_gguf_writer_write_data(w, p.slot[s], p.slot_bytes[s], &err)) {
            pthread_mutex_lock(&p.mu);
            p.rc = err.status ? err.status : HALO_ERR_IO;
            p.err = err;
            p.stop = true;
            pthread_cond_broadcast(&p.work);
            pthread_mutex_unlock(&p.mu);
            break;
        }
        written += p.slot_bytes[s];
        pthread_mutex_lock(&p.mu);
        p.slot_chunk[s] = SIZE_MAX;
        p.written = c + 1;
        pthread_cond_broadcast(&p.work);
        pthread_mutex_unlock(&p.mu);
        double now = halo_time_seconds();
        if (now - last >= every) {
            progress(written, data_bytes, now - t0, x->name, tty, false);
            last = now;
        }
    }
    pthread_mutex_lock(&p.mu);
    p.stop = true;
    pthread_cond_broadcast(&p.work);
    pthread_mutex_unlock(&p.mu);
    for (int64_t i = 0; i < started; i++) pthread_join(tid[i], NULL);

    int rc = p.rc;
    if (rc) {
        fprintf(stderr, "%serror: %s\n", tty ? "\n" : "", p.err.msg);
        halo_gguf_writer_abort(w);
    } else if (halo_gguf_writer_close(w, &err)) {
        fprintf(stderr, "%serror: %s\n", tty ? "\n" : "", err.msg);
        rc = err.status ? err.status : 1;
    }
    for (size_t s = 0; p.slot && s < p.n_slots; s++) free(p.slot[s]);
    free(p.slot);
    free(p.slot_bytes);
    free(p.slot_chunk);
    free(chunks);
    free(tid);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.work);
    pthread_cond_destroy(&p.done);
    if (rc) {
        free(t);
        return 1;
    }

    double secs = halo_time_seconds() - t0;
    progress(written, data_bytes, secs, "", tty, true);
    struct stat st;
    uint64_t file_bytes = stat(out_path, &st) == 0 ? (uint64_t)st.st_size : data_bytes;
    char a[32], b[32], c[32], d[32];
    printf("wrote %s: %s (%s), %s, %s params", out_path, halo_format_bytes_si(file_bytes, a, sizeof a),
           halo_format_bytes(file_bytes, b, sizeof b), spec.name,
           halo_format_count(total_params, c, sizeof c));
    if (m.n_expert) printf(" (%s active)", halo_format_count(active_params, d, sizeof d));
    printf(", %zu tensors, %.1f s\n", n_tensors, secs);
    free(t);
    return 0;
}
