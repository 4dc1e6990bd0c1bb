/*
 * `halo info`: what a GGUF model is and what it needs — the architecture in
 * words, parameters, file and tensor sizes by block type, tokenizer, how it
 * loaded, and the memory plan for a context (-c) over slots (-np) with the
 * cache types the user would run (-ctk/-ctv), flags spelled as llama.cpp's.
 *
 * Everything is computed before anything is printed, so that an error (a broken
 * file, a cache type the model's head size does not allow) is one line on
 * stderr and nothing half-printed on stdout.
 */
#include "tools.h"

#include "format/gguf.h"
#include "model/model.h"
#include "quant/quant.h"
#include "runtime/runtime.h"
#include "util/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define GIB (1024.0 * 1024.0 * 1024.0)

typedef struct info_args {
    const char *model;
    halo_load_options load;
    halo_plan_options plan;
    bool json;
} info_args;

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo info [-m] MODEL.gguf [options]\n"
            "\n"
            "Describe a GGUF model (architecture, parameters, tensors, tokenizer, load) and\n"
            "plan its memory for a context. Without a model, the repository's default model.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE          the model (or give it as the first argument)\n"
            "  -c, --ctx-size N          context tokens over all slots, as llama.cpp's -c\n"
            "                            (default %d; 32k ok; 0 = the trained context)\n"
            "  -np, --parallel N         parallel slots (default 1)\n"
            "  -ctk, --cache-type-k T    K cache type: %s (default f16)\n"
            "  -ctv, --cache-type-v T    V cache type (default f16)\n"
            "  --mem SIZE                memory budget: 64GiB, 48G, 60GB (default: this machine's)\n"
            "  --no-mmap                 read the weights into memory instead of mapping them\n"
            TOOLS_GPU_FLAGS_HELP
            "  --mlock                   lock the weights in RAM\n"
            "  --json                    print one JSON object instead of text\n"
            "  -h, --help                this help\n",
            HALO_PLAN_DEFAULT_CTX, halo_kv_type_names());
}

/* Returns -1 to go on, or the exit code (0 after --help, 2 on a usage error). */
static int parse_args(int argc, char **argv, info_args *a) {
    memset(a, 0, sizeof *a);
    halo_plan_options_default(&a->plan);
    for (int i = 1; i < argc;) {
        const char *arg = argv[i];
        const char *v;
        if (tools_is_help(arg)) {
            usage(stdout);
            return 0;
        }
        if (tools_parse_load_flag(argc, argv, &i, &a->load)) continue;
        int plan_flag = tools_parse_plan_flag(argc, argv, &i, &a->plan, NULL);
        if (plan_flag < 0) return 2;
        if (plan_flag > 0) continue;
        if (!strcmp(arg, "-m") || !strcmp(arg, "--model")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            a->model = v;
        } else if (!strcmp(arg, "--json")) {
            a->json = true;
            i++;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            fprintf(stderr, "error: unknown option '%s' (halo info --help lists them)\n", arg);
            return 2;
        } else {
            if (a->model) {
                fprintf(stderr, "error: more than one model given ('%s' and '%s')\n", a->model,
                        arg);
                return 2;
            }
            a->model = arg;
            i++;
        }
    }
    if (a->plan.n_ctx != 0 && a->plan.n_ctx < a->plan.n_slots) {
        fprintf(stderr, "error: -c %" PRIu64 " is less than one token per slot (-np %u)\n",
                a->plan.n_ctx, a->plan.n_slots);
        return 2;
    }
    if (!a->model) a->model = tools_default_model();
    return -1;
}

/* ---- gathering ------------------------------------------------------------------- */

typedef struct info {
    halo_gguf *g;
    halo_gguf_load_stats load;
    bool have_hparams;
    halo_error hparams_err; /* why not, for an architecture halo does not know */
    halo_hparams hp;
    halo_model_stats st;
    bool have_plan;
    halo_memory_plan plan;
} info;

/* Exit code on failure, 0 on success. */
static int gather(const info_args *a, info *in) {
    halo_error err = {0};
    memset(in, 0, sizeof *in);
    if (halo_gguf_open(a->model, &a->load, &in->g, &err) != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    halo_gguf_get_load_stats(in->g, &in->load);
    int rc = halo_hparams_load(in->g, &in->hp, &in->hparams_err);
    if (rc == HALO_ERR_UNSUPPORTED) {
        /* a well-formed file of an architecture halo does not know: describe the
         * file, skip what needs the hyper-parameters */
    } else if (rc != 0) {
        fprintf(stderr, "error: %s: %s\n", a->model, in->hparams_err.msg);
        return 1;
    } else {
        in->have_hparams = true;
    }
    if (halo_model_stats_compute(in->g, in->have_hparams ? &in->hp : NULL, &in->st, &err) != 0) {
        fprintf(stderr, "error: %s: %s\n", a->model, err.msg);
        return 1;
    }
    if (in->have_hparams) {
        halo_plan_options o = a->plan;
        if (o.n_ctx == 0) /* -c 0: the trained context */
            o.n_ctx = in->hp.n_ctx_train ? in->hp.n_ctx_train : HALO_PLAN_DEFAULT_CTX;
        if (o.n_ctx < o.n_slots) o.n_ctx = o.n_slots;
        rc = halo_plan_compute(&in->hp, in->st.bytes, &o, &in->plan, &err);
        if (rc == HALO_ERR_ARG) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 2;
        }
        if (rc != 0) {
            fprintf(stderr, "error: %s: %s\n", a->model, err.msg);
            return 1;
        }
        in->have_plan = true;
    }
    return 0;
}

/* ---- text output ----------------------------------------------------------------- */

static const char *mib(uint64_t b, char *buf) { return halo_format_bytes(b, buf, 32); }
static const char *gb(uint64_t b, char *buf) { return halo_format_bytes_si(b, buf, 32); }
static const char *cnt(uint64_t n, char *buf) { return halo_format_count(n, buf, 32); }

/* "label         text", the text broken after commas so that lines stay under
 * ~96 columns, continuation lines indented under the first. */
static void print_wrapped(const char *label, const char *text) {
    const int indent = 14, width = 96;
    printf("%-14s", label);
    int col = indent;
    const char *p = text;
    while (*p) {
        const char *comma = strstr(p, ", ");
        size_t len = comma ? (size_t)(comma - p) + 1 : strlen(p); /* keep the comma */
        if (col > indent && col + 1 + (int)len > width) {
            printf("\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            putchar(' ');
            col++;
        }
        fwrite(p, 1, len, stdout);
        col += (int)len;
        p += len;
        if (*p == ' ') p++;
    }
    putchar('\n');
}

/* "DDDA DDDA": the layer kinds, grouped by the attention interval. */
static void print_layer_map(const halo_hparams *hp) {
    printf("%-14s", "layer map");
    uint32_t group = hp->full_attention_interval ? hp->full_attention_interval : 4;
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        if (i && i % group == 0) putchar(' ');
        putchar(hp->layer_kind[i] == HALO_LAYER_ATTENTION ? 'A'
                : hp->layer_kind[i] == HALO_LAYER_DELTANET ? 'D'
                                                           : 'M');
    }
    printf("   (A full attention, D Gated DeltaNet%s)\n", hp->n_nextn ? ", M MTP" : "");
}

static void print_plan_text(const halo_hparams *hp, const halo_memory_plan *p) {
    char b1[32], b2[32], b3[32];
    printf("\nmemory plan   %" PRIu64 " tokens over %u slot%s (%" PRIu64 " each), K %s / V %s\n",
           p->n_ctx, p->n_slots, p->n_slots == 1 ? "" : "s", p->n_ctx / p->n_slots,
           halo_type_name(p->type_k), halo_type_name(p->type_v));
    printf("  %-20s %10s\n", "weights", mib(p->weights_bytes, b1));
    uint32_t kv0 = 0;
    for (uint32_t i = 0; i < hp->n_layer; i++)
        if (hp->layer_kind[i] == HALO_LAYER_ATTENTION) {
            kv0 = hp->n_head_kv[i];
            break;
        }
    printf("  %-20s %10s   %s per token: %u attention layer%s x %u KV head%s x %u dims, K+V\n",
           "KV cache", mib(p->kv_bytes, b1), mib(p->kv_bytes_per_token, b2),
           hp->n_attention_layers, hp->n_attention_layers == 1 ? "" : "s", kv0,
           kv0 == 1 ? "" : "s", hp->head_dim_k);
    if (hp->n_deltanet_layers)
        printf("  %-20s %10s   per slot: %u DeltaNet layers, conv %s + state %s\n",
               "recurrent state", mib(p->recurrent_bytes, b1), hp->n_deltanet_layers,
               mib(p->conv_bytes_per_slot, b2), mib(p->ssm_bytes_per_slot, b3));
    printf("  %-20s %10s   estimate: logits %u x %u x 4 B (%s) + f32 activations of a "
           "%u-token ubatch (%s)\n",
           "compute buffers", mib(p->compute_bytes, b1), hp->n_vocab, p->n_ubatch,
           mib(p->logits_bytes, b2), p->n_ubatch, mib(p->activation_bytes, b3));
    printf("  %-20s %10s\n", "total", mib(p->total_bytes, b1));
    if (!p->mem_bytes) {
        printf("  %-20s unknown (give --mem)\n", "memory");
        return;
    }
    uint64_t avail = p->mem_from_system ? halo_system_available_bytes() : 0;
    if (p->fits && avail)
        printf("  %-20s %10s   this machine: fits, %s headroom (%s available now)\n", "memory",
               mib(p->mem_bytes, b1), mib((uint64_t)p->headroom_bytes, b2), mib(avail, b3));
    else if (p->fits)
        printf("  %-20s %10s   %s: fits, %s headroom\n", "memory", mib(p->mem_bytes, b1),
               p->mem_from_system ? "this machine" : "--mem", mib((uint64_t)p->headroom_bytes, b2));
    else
        printf("  %-20s %10s   %s: does NOT fit, short by %s\n", "memory", mib(p->mem_bytes, b1),
               p->mem_from_system ? "this machine" : "--mem",
               mib((uint64_t)(-p->headroom_bytes), b2));
    char n1[32];
    if (p->max_ctx == 0)
        printf("  %-20s %10s   the weights, state and buffers alone exceed the memory\n",
               "largest context", "none");
    else if (p->max_ctx_fit == UINT64_MAX)
        printf("  %-20s %10" PRIu64 "   no KV cache: bounded only by the trained context\n",
               "largest context", p->max_ctx);
    else if (p->max_ctx_capped_by_train)
        printf("  %-20s %10" PRIu64 "   trained context%s (the memory would hold %s)\n",
               "largest context", p->max_ctx, p->n_slots > 1 ? " x slots" : "",
               cnt(p->max_ctx_fit, n1));
    else
        printf("  %-20s %10" PRIu64 "   limited by memory (trained context %s%s)\n",
               "largest context", p->max_ctx, hp->n_ctx_train ? (snprintf(n1, sizeof n1, "%u", hp->n_ctx_train), n1) : "unknown",
               p->n_slots > 1 ? " per slot" : "");
}

static void print_text(const info_args *a, const info *in) {
    const halo_gguf *g = in->g;
    const halo_hparams *hp = &in->hp;
    const halo_model_stats *st = &in->st;
    char b1[32], b2[32], b3[32];
    printf("%-14s%s\n", "model", a->model);
    const char *name = halo_gguf_get_str(g, "general.name");
    const char *size_label = halo_gguf_get_str(g, "general.size_label");
    if (name) printf("%-14s%s%s%s%s\n", "name", name, size_label ? " (" : "",
                     size_label ? size_label : "", size_label ? ")" : "");
    if (in->have_hparams) {
        char desc[1024];
        print_wrapped("architecture", halo_hparams_describe(hp, desc, sizeof desc));
        if (halo_arch_is_hybrid(hp->arch) || hp->n_nextn) print_layer_map(hp);
        if (hp->arch == HALO_ARCH_UNKNOWN)
            printf("%-14sarchitecture '%s' is not one halo runs; described from its metadata\n",
                   "note", hp->arch_name);
    } else {
        const char *arch = halo_gguf_get_str(g, "general.architecture");
        printf("%-14s%s (not known to halo: %s)\n", "architecture", arch ? arch : "?",
               in->hparams_err.msg);
    }
    if (in->have_hparams && hp->n_nextn)
        printf("%-14s%u (blk.%u%s): multi-token prediction heads for speculative decoding\n",
               "MTP layers", hp->n_nextn, hp->n_layer - hp->n_nextn,
               hp->n_nextn > 1 ? "..." : "");
    if (st->n_params == 0) {
        printf("%-14snone (vocabulary only)\n", "parameters");
    } else if (st->n_params_active != st->n_params) {
        printf("%-14s%s total, %s active per token (%u of %u experts)\n", "parameters",
               cnt(st->n_params, b1), cnt(st->n_params_active, b2), hp->n_expert_used,
               hp->n_expert);
    } else {
        printf("%-14s%s\n", "parameters", cnt(st->n_params, b1));
    }
    uint32_t parts = halo_gguf_n_splits(g);
    printf("%-14s%s, GGUF v%u, %u part%s, %" PRId64 " tensors, %" PRId64 " metadata keys\n", "file",
           gb(in->load.file_bytes, b1), halo_gguf_version(g), parts, parts == 1 ? "" : "s",
           halo_gguf_n_tensors(g), halo_gguf_n_kv(g));
    if (st->n_params) {
        printf("%-14s%s in %" PRIu64 " tensors, %.2f bits per weight\n", "weights",
               gb(st->bytes, b1), st->n_tensors, halo_model_stats_bits_per_weight(st));
        for (int t = 0; t < HALO_TYPE_COUNT; t++) {
            const halo_type_stats *ts = &st->by_type[t];
            if (!ts->n_tensors) continue;
            printf("  %-8s %5" PRIu64 " tensors %10s %9s params %5.1f%%\n", halo_type_name(t),
                   ts->n_tensors, gb(ts->bytes, b1), cnt(ts->n_elements, b2),
                   100.0 * (double)ts->bytes / (double)(st->bytes ? st->bytes : 1));
        }
    }
    const char *tok_model = halo_gguf_get_str(g, "tokenizer.ggml.model");
    const char *tok_pre = halo_gguf_get_str(g, "tokenizer.ggml.pre");
    const halo_gguf_array *tokens = halo_gguf_get_arr(g, "tokenizer.ggml.tokens");
    const halo_gguf_array *merges = halo_gguf_get_arr(g, "tokenizer.ggml.merges");
    if (tok_model) {
        printf("%-14s%s", "tokenizer", tok_model);
        if (tok_pre) printf(" (pre-tokenizer %s)", tok_pre);
        if (tokens) printf(", %" PRIu64 " tokens", tokens->n);
        if (merges) printf(", %" PRIu64 " merges", merges->n);
        printf("\n");
    } else {
        printf("%-14snone in the file\n", "tokenizer");
    }
    const char *tmpl = halo_gguf_get_str(g, "tokenizer.chat_template");
    if (tmpl)
        printf("%-14syes (%zu bytes)\n", "chat template", strlen(tmpl));
    else
        printf("%-14sno\n", "chat template");
    printf("%-14s%s%s, %.1f ms, %s of %s resident%s\n", "load",
           in->load.mode == HALO_LOAD_READ ? "read (--no-mmap)" : "mmap",
           a->load.mlock ? " + mlock" : "", in->load.seconds * 1e3,
           mib(in->load.resident_bytes, b1), mib(in->load.data_bytes, b2),
           a->load.mlock ? (in->load.locked ? ", locked" : ", NOT locked (see warning)") : "");
    (void)b3;
    if (in->have_plan) print_plan_text(hp, &in->plan);
    else printf("\nmemory plan   unavailable without the model's hyper-parameters\n");
}

/* ---- JSON output ----------------------------------------------------------------- */

static void json_str(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

static void print_json(const info_args *a, const info *in) {
    const halo_gguf *g = in->g;
    const halo_hparams *hp = &in->hp;
    const halo_model_stats *st = &in->st;
    printf("{\"model\": ");
    json_str(a->model);
    printf(", \"architecture\": ");
    json_str(halo_gguf_get_str(g, "general.architecture"));
    printf(", \"name\": ");
    json_str(halo_gguf_get_str(g, "general.name"));
    printf(", \"known\": %s", in->have_hparams && hp->arch != HALO_ARCH_UNKNOWN ? "true" : "false");
    if (in->have_hparams) {
        printf(", \"n_layer\": %u, \"n_attention_layers\": %u, \"n_deltanet_layers\": %u, "
               "\"n_nextn\": %u, \"n_embd\": %u, \"n_vocab\": %u, \"n_head\": %u, "
               "\"n_head_kv\": %u, \"head_dim_k\": %u, \"head_dim_v\": %u, \"n_ff\": %u, "
               "\"n_expert\": %u, \"n_expert_used\": %u, \"n_ctx_train\": %u",
               hp->n_layer, hp->n_attention_layers, hp->n_deltanet_layers, hp->n_nextn, hp->n_embd,
               hp->n_vocab, hp->n_head, hp->n_head_kv[hp->n_layer - 1], hp->head_dim_k,
               hp->head_dim_v, hp->n_ff, hp->n_expert, hp->n_expert_used, hp->n_ctx_train);
        printf(", \"layer_kinds\": \"");
        for (uint32_t i = 0; i < hp->n_layer; i++)
            putchar(hp->layer_kind[i] == HALO_LAYER_ATTENTION ? 'A'
                    : hp->layer_kind[i] == HALO_LAYER_DELTANET ? 'D'
                                                               : 'M');
        printf("\"");
    }
    printf(", \"params\": %" PRIu64 ", \"params_active\": %" PRIu64 ", \"file_bytes\": %" PRIu64
           ", \"weight_bytes\": %" PRIu64 ", \"n_tensors\": %" PRIu64
           ", \"bits_per_weight\": %.4f, \"splits\": %u",
           st->n_params, st->n_params_active, in->load.file_bytes, st->bytes, st->n_tensors,
           halo_model_stats_bits_per_weight(st), halo_gguf_n_splits(g));
    printf(", \"types\": {");
    bool first = true;
    for (int t = 0; t < HALO_TYPE_COUNT; t++) {
        const halo_type_stats *ts = &st->by_type[t];
        if (!ts->n_tensors) continue;
        printf("%s\"%s\": {\"tensors\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"params\": %" PRIu64
               "}",
               first ? "" : ", ", halo_type_name(t), ts->n_tensors, ts->bytes, ts->n_elements);
        first = false;
    }
    const halo_gguf_array *tokens = halo_gguf_get_arr(g, "tokenizer.ggml.tokens");
    printf("}, \"tokenizer\": ");
    json_str(halo_gguf_get_str(g, "tokenizer.ggml.model"));
    printf(", \"pre_tokenizer\": ");
    json_str(halo_gguf_get_str(g, "tokenizer.ggml.pre"));
    printf(", \"n_tokens\": %" PRIu64 ", \"chat_template\": %s", tokens ? tokens->n : 0,
           halo_gguf_get_str(g, "tokenizer.chat_template") ? "true" : "false");
    printf(", \"load\": {\"mode\": \"%s\", \"mlock\": %s, \"locked\": %s, \"seconds\": %.6f, "
           "\"resident_bytes\": %" PRIu64 "}",
           in->load.mode == HALO_LOAD_READ ? "read" : "mmap", a->load.mlock ? "true" : "false",
           in->load.locked ? "true" : "false", in->load.seconds, in->load.resident_bytes);
    if (in->have_plan) {
        const halo_memory_plan *p = &in->plan;
        printf(", \"plan\": {\"n_ctx\": %" PRIu64 ", \"n_slots\": %u, \"type_k\": \"%s\", "
               "\"type_v\": \"%s\", \"weights_bytes\": %" PRIu64 ", \"kv_bytes_per_token\": %" PRIu64
               ", \"kv_bytes\": %" PRIu64 ", \"recurrent_bytes\": %" PRIu64
               ", \"compute_bytes\": %" PRIu64 ", \"total_bytes\": %" PRIu64
               ", \"mem_bytes\": %" PRIu64 ", \"fits\": %s, \"headroom_bytes\": %" PRId64
               ", \"max_ctx\": %" PRIu64 "}",
               p->n_ctx, p->n_slots, halo_type_name(p->type_k), halo_type_name(p->type_v),
               p->weights_bytes, p->kv_bytes_per_token, p->kv_bytes, p->recurrent_bytes,
               p->compute_bytes, p->total_bytes, p->mem_bytes, p->fits ? "true" : "false",
               p->headroom_bytes, p->max_ctx == UINT64_MAX ? 0 : p->max_ctx);
    }
    printf("}\n");
}

int cmd_info(int argc, char **argv) {
    info_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    info in;
    rc = gather(&a, &in);
    if (rc == 0) {
        if (a.json) print_json(&a, &in);
        else print_text(&a, &in);
    }
    if (in.g) halo_gguf_close(in.g);
    return rc;
}
