/*
 * `halo quantize IN.gguf OUT.gguf TYPE|RECIPE`: rewrite a model's matrices in block
 * formats, as llama-quantize does and with its command line.
 *
 * - Which tensors: every matrix (2-D or 3-D `*.weight`) but the norms, the MoE routers
 *   (ffn_gate_inp), the DeltaNet conv and RoPE factors, which stay as they are; a row
 *   length that the chosen format's block does not divide falls back as llama-quantize
 *   does (q4_K -> q5_0, q6_K -> q8_0, ...).
 * - Which type: one for every matrix (`q4_K`), or a recipe with llama-quantize's names
 *   and rules (`Q4_K_M`: q6_K for the output, attn_v and ffn_down of the "more bits"
 *   layers, ...; the same rules `halo synth` writes, tools/synth_types.c), then
 *   --output-type, --token-embedding-type and --tensor-type REGEX=TYPE overrides.
 * - How: each row decoded to f32 and encoded by quant/'s importance-weighted search
 *   (halo_quant_encode), with the importance of each input channel from --imatrix
 *   (halo's or llama-imatrix's file; per expert for MoE tensors) or, without one, the
 *   encoder's default weighting.
 * - --awq (tools/quant_awq.c): per-input-channel scales folded into the norm before (or
 *   ffn_up's rows), applied to the decoded rows before encoding; the scaled norms and
 *   routers are written as F32.
 * - Streaming: a chunk of rows at a time (never a whole tensor), on -t threads; the
 *   output is written in tensor order with the writer's streaming API; progress on
 *   stderr; a summary by tensor class (size, bits per weight) at the end.
 */
#include "tools.h"
#include "synth.h"
#include "tools/quant_awq.h"
#include "tools/quant_mix.h"

#include "format/gguf.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "quant/imatrix.h"
#include "quant/quant.h"
#include "util/util.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_OVERRIDES 64

typedef struct override {
    char pattern[256];
    regex_t re;
    int type;
} override;

typedef struct quant_args {
    const char *in, *out;
    synth_type_spec spec;
    const char *imatrix;
    int output_type, embd_type; /* -1: the recipe's */
    override ov[MAX_OVERRIDES];
    int n_ov;
    int threads;
    bool allow_requantize, pure;
    bool awq;          /* --awq: salient-weight scales (tools/quant_awq.c) */
    double awq_alpha;  /* --awq-alpha, < 0: searched per group */
    /* mixed precision by measurement (tools/quant_mix.c) */
    const char *target_text;   /* --target-size / --target-bpw as given, NULL: none */
    double target_bpw;         /* > 0: --target-bpw */
    uint64_t target_size;      /* > 0: --target-size, bytes of the whole file */
    bool type_given;           /* TYPE was on the command line */
    quant_mix_options mix;
} quant_args;

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo quantize [options] IN.gguf OUT.gguf TYPE [THREADS]\n"
            "\n"
            "Write IN's matrices in block formats (llama-quantize's command line). TYPE is one of\n"
            "llama-quantize's file types, with its per-tensor rules (more bits for the output,\n"
            "attn_v, ffn_down of some layers, ...): %s.\n"
            "Norms, routers and other small tensors are copied as they are.\n"
            "\n"
            "options:\n"
            "  --imatrix FILE              importance matrix (halo imatrix or llama-imatrix):\n"
            "                              each input channel's mean square activation weighs\n"
            "                              the rounding error of the weights it multiplies\n"
            "  --output-type T             type of output.weight\n"
            "  --token-embedding-type T    type of token_embd.weight\n"
            "  --tensor-type REGEX=T       type of the tensors whose name matches REGEX (POSIX\n"
            "                              extended; repeatable, the first match wins)\n"
            "  --pure                      TYPE for every matrix, no per-tensor rules\n"
            "  --target-size SIZE          mixed precision chosen by measurement: the types that\n"
            "                              minimise the measured KL divergence with the output\n"
            "                              file at most SIZE (13.44MiB, 20GiB, 14GB; a bare number\n"
            "                              is GiB); --tensor-type, --output-type and\n"
            "                              --token-embedding-type fix tensors, the rest is chosen;\n"
            "                              TYPE is then optional (it only names the file type)\n"
            "  --target-bpw B              the same with at most B bits per weight (all tensors)\n"
            "  --calib FILE                calibration text for the measurement (needed by both)\n"
            "  --calib-chunks N            windows of it to evaluate (default 4)\n"
            "  --calib-ctx N               tokens per window (default 512)\n"
            "  --target-types LIST         candidate types, comma-separated (default\n"
            "                              q2_K,q3_K,iq4_xs,q4_K,q5_K,q6_K,q8_0)\n"
            "  --kld-table FILE            reuse the measurements saved there (same model, text\n"
            "                              and settings) and save new ones, for other budgets\n"
            "  --awq                       salient-weight protection (needs --imatrix): input\n"
            "                              channels scaled by rms(activation)^alpha, folded into\n"
            "                              the norm before (or ffn_up's rows), alpha searched\n"
            "                              per layer for the least weighted output error\n"
            "  --awq-alpha A               --awq with alpha fixed at A (0 to 1)\n"
            "  --allow-requantize          accept an input whose matrices are already quantized\n"
            "  -t, --threads N             threads (default: all cores)\n"
            "  -h, --help                  this help\n",
            synth_recipe_names());
}

static int parse_type(const char *flag, const char *v) {
    int t = halo_type_from_name(v);
    const halo_type_traits *tr = t >= 0 ? halo_type_get(t) : NULL;
    if (!tr || !tr->from_float_ref) {
        fprintf(stderr, "error: %s: '%s' is not a type halo can write (%s)\n", flag, v,
                synth_type_names());
        return -1;
    }
    return t;
}

/* -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, quant_args *a) {
    memset(a, 0, sizeof *a);
    a->output_type = a->embd_type = -1;
    a->awq_alpha = -1.0;
    a->mix.n_ctx = 512;
    a->mix.n_chunks = 4;
    const char *pos[4];
    int n_pos = 0;
    for (int i = 1; i < argc;) {
        const char *arg = argv[i], *v;
        if (tools_is_help(arg)) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(arg, "--imatrix")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            a->imatrix = v;
        } else if (!strcmp(arg, "--output-type") || !strcmp(arg, "--token-embedding-type")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            int t = parse_type(arg, v);
            if (t < 0) return 2;
            if (!strcmp(arg, "--output-type")) a->output_type = t;
            else a->embd_type = t;
        } else if (!strcmp(arg, "--tensor-type")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            const char *eq = strrchr(v, '=');
            if (!eq || eq == v || (size_t)(eq - v) >= sizeof a->ov[0].pattern) {
                fprintf(stderr, "error: --tensor-type: give REGEX=TYPE (got '%s')\n", v);
                return 2;
            }
            if (a->n_ov == MAX_OVERRIDES) {
                fprintf(stderr, "error: --tensor-type: at most %d of them\n", MAX_OVERRIDES);
                return 2;
            }
            override *o = &a->ov[a->n_ov];
            snprintf(o->pattern, sizeof o->pattern, "%.*s", (int)(eq - v), v);
            if ((o->type = parse_type(arg, eq + 1)) < 0) return 2;
            if (regcomp(&o->re, o->pattern, REG_EXTENDED | REG_NOSUB)) {
                fprintf(stderr, "error: --tensor-type: '%s' is not a valid regular expression\n",
                        o->pattern);
                return 2;
            }
            a->n_ov++;
        } else if (!strcmp(arg, "--target-size") || !strcmp(arg, "--target-bpw")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            a->target_text = v;
            if (!strcmp(arg, "--target-bpw")) {
                if (!tools_parse_float(arg, v, 1.0, 32.0, &a->target_bpw)) return 2;
                a->target_size = 0;
            } else {
                /* a bare number is GiB, as --mem's; "13.44MiB" as the hubs list sizes */
                if (!halo_parse_size(v, 1ull << 30, &a->target_size) || a->target_size == 0) {
                    fprintf(stderr, "error: --target-size: '%s' is not a size (e.g. 13.44MiB, "
                                    "20GiB, 14GB)\n", v);
                    return 2;
                }
                a->target_bpw = 0;
            }
        } else if (!strcmp(arg, "--calib")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            a->mix.calib = v;
        } else if (!strcmp(arg, "--kld-table")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            a->mix.table = v;
        } else if (!strcmp(arg, "--calib-chunks") || !strcmp(arg, "--calib-ctx")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            if (!strcmp(arg, "--calib-chunks")) {
                if (!tools_parse_int(arg, v, 1, 1 << 20, &a->mix.n_chunks)) return 2;
            } else if (!tools_parse_int(arg, v, 8, 1 << 16, &a->mix.n_ctx)) {
                return 2;
            }
        } else if (!strcmp(arg, "--target-types")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            char list[256];
            snprintf(list, sizeof list, "%s", v);
            a->mix.n_types = 0;
            for (char *sv = NULL, *tk = strtok_r(list, ",", &sv); tk; tk = strtok_r(NULL, ",", &sv)) {
                int t = parse_type(arg, tk);
                if (t < 0) return 2;
                if (a->mix.n_types == QUANT_MIX_MAX_TYPES) {
                    fprintf(stderr, "error: %s: at most %d types\n", arg, QUANT_MIX_MAX_TYPES);
                    return 2;
                }
                bool dup = false;
                for (int k = 0; k < a->mix.n_types; k++) dup |= a->mix.types[k] == t;
                if (!dup) a->mix.types[a->mix.n_types++] = t;
            }
            if (!a->mix.n_types) {
                fprintf(stderr, "error: %s: no types in '%s'\n", arg, v);
                return 2;
            }
        } else if (!strcmp(arg, "--awq")) {
            a->awq = true;
            i++;
        } else if (!strcmp(arg, "--awq-alpha")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            if (!tools_parse_float(arg, v, 0.0, 1.0, &a->awq_alpha)) return 2;
            a->awq = true;
        } else if (!strcmp(arg, "--allow-requantize")) {
            a->allow_requantize = true;
            i++;
        } else if (!strcmp(arg, "--pure")) {
            a->pure = true;
            i++;
        } else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            int64_t n;
            if (!tools_parse_int(arg, v, 1, 1024, &n)) return 2;
            a->threads = (int)n;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            fprintf(stderr, "error: unknown option '%s' (halo quantize --help lists them)\n", arg);
            return 2;
        } else {
            if (n_pos == 4) {
                fprintf(stderr, "error: too many arguments ('%s')\n", arg);
                return 2;
            }
            pos[n_pos++] = arg;
            i++;
        }
    }
    const bool target = a->target_text != NULL;
    if (n_pos < (target ? 2 : 3)) {
        fprintf(stderr, "error: give IN.gguf OUT.gguf TYPE (halo quantize --help)\n");
        return 2;
    }
    a->in = pos[0];
    a->out = pos[1];
    /* with a target TYPE may be left out (it only names the file type): then a third
     * positional that is a number is llama-quantize's thread count */
    a->type_given = n_pos >= 3 && !(target && n_pos == 3 && pos[2][0] >= '0' && pos[2][0] <= '9');
    if (!synth_recipe_parse(a->type_given ? pos[2] : "Q4_K_M", a->pure, &a->spec)) {
        fprintf(stderr, "error: unknown type '%s' (%s)\n", pos[2], synth_recipe_names());
        return 2;
    }
    a->spec.has_imatrix = a->imatrix != NULL;
    if (n_pos == 4 || (n_pos == 3 && !a->type_given)) { /* llama-quantize's thread count */
        int64_t n;
        if (!tools_parse_int("THREADS", pos[n_pos - 1], 1, 1024, &n)) return 2;
        a->threads = (int)n;
    }
    if (target && a->pure) {
        fprintf(stderr, "error: --pure gives every matrix one type; --target-size / --target-bpw "
                        "choose them (give one or the other)\n");
        return 2;
    }
    if (target && !a->mix.calib) {
        fprintf(stderr, "error: %s needs --calib FILE, the text to measure the types' effect on "
                        "(never the evaluation text)\n",
                a->target_bpw > 0 ? "--target-bpw" : "--target-size");
        return 2;
    }
    if (!target && (a->mix.calib || a->mix.table || a->mix.n_types)) {
        fprintf(stderr, "error: --calib, --kld-table and --target-types go with --target-size or "
                        "--target-bpw\n");
        return 2;
    }
    if (a->awq && !a->imatrix) {
        fprintf(stderr, "error: --awq needs --imatrix FILE: the scales come from the activations' "
                        "statistics (halo imatrix)\n");
        return 2;
    }
    if (a->awq && target) {
        fprintf(stderr, "error: --awq with --target-size / --target-bpw is not supported yet (the "
                        "measurement would not see the scales)\n");
        return 2;
    }
    if (!strcmp(a->in, a->out)) {
        fprintf(stderr, "error: the output would overwrite the input (%s)\n", a->in);
        return 2;
    }
    return -1;
}

/* ---- the plan: which tensors, which types -------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* llama-quantize's categories, from the tensor's name. */
static synth_category category_of(const char *name) {
    if (!strcmp(name, "token_embd.weight")) return SYNTH_CAT_TOKEN_EMBD;
    if (!strcmp(name, "output.weight")) return SYNTH_CAT_OUTPUT;
    static const struct {
        const char *suffix;
        synth_category cat;
    } map[] = {
        {".attn_q.weight", SYNTH_CAT_ATTN_Q},        {".attn_k.weight", SYNTH_CAT_ATTN_K},
        {".attn_v.weight", SYNTH_CAT_ATTN_V},        {".attn_qkv.weight", SYNTH_CAT_ATTN_QKV},
        {".attn_output.weight", SYNTH_CAT_ATTN_OUTPUT}, {".ffn_up.weight", SYNTH_CAT_FFN_UP},
        {".ffn_up_exps.weight", SYNTH_CAT_FFN_UP},   {".ffn_up_shexp.weight", SYNTH_CAT_FFN_UP},
        {".ffn_gate.weight", SYNTH_CAT_FFN_GATE},    {".ffn_gate_exps.weight", SYNTH_CAT_FFN_GATE},
        {".ffn_gate_shexp.weight", SYNTH_CAT_FFN_GATE}, {".ffn_down.weight", SYNTH_CAT_FFN_DOWN},
        {".ffn_down_exps.weight", SYNTH_CAT_FFN_DOWN}, {".ffn_down_shexp.weight", SYNTH_CAT_FFN_DOWN},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (ends_with(name, map[i].suffix)) return map[i].cat;
    return SYNTH_CAT_OTHER;
}

/* Whether llama-quantize would quantize this tensor. */
static bool is_matrix(const halo_gguf_tensor *t) {
    if (t->n_dims < 2 || !ends_with(t->name, ".weight")) return false;
    static const char *keep[] = {"_norm.weight", "ffn_gate_inp.weight", "ffn_gate_inp_shexp.weight",
                                 "ssm_conv1d.weight", "rope_freqs.weight", "pos_embd.weight"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (ends_with(t->name, keep[i])) return false;
    return t->ne[0] >= 32;
}

typedef struct qtensor {
    const halo_gguf_tensor *src;
    synth_tensor plan; /* name, dims, category, chosen type */
    bool quantize;
    bool fixed;        /* its type comes from --output-type, --token-embedding-type or
                          --tensor-type: a target search leaves it as it is */
    int64_t rows;      /* ne[1] * ne[2] * ne[3] */
    uint64_t out_bytes;
} qtensor;

/* Types for every tensor: the recipe (tools/synth_types.c), then the overrides. */
static int choose(const quant_args *a, const halo_hparams *hp, const halo_gguf *g, qtensor *q,
                  int64_t n, halo_error *err) {
    synth_model m = {0};
    m.n_layer = hp->n_layer;
    m.n_expert = hp->n_expert;
    m.n_head = hp->n_head;
    for (uint32_t il = 0; il < hp->n_layer && !m.n_head_kv; il++)
        if (hp->layer_kind[il] == HALO_LAYER_ATTENTION) m.n_head_kv = hp->n_head_kv[il];
    m.tied_embeddings = halo_gguf_find_tensor(g, "output.weight") == NULL;
    synth_tensor *st = calloc((size_t)(n ? n : 1), sizeof *st);
    if (!st) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        const halo_gguf_tensor *t = q[i].src;
        synth_tensor *x = &st[i];
        snprintf(x->name, sizeof x->name, "%s", t->name);
        x->n_dims = t->n_dims;
        for (int d = 0; d < 4; d++) x->ne[d] = d < HALO_GGUF_MAX_DIMS ? t->ne[d] : 1;
        x->matrix = q[i].quantize;
        x->category = category_of(t->name);
        x->layer = -1;
        if (!strncmp(t->name, "blk.", 4)) x->layer = atoi(t->name + 4);
    }
    int rc = synth_choose_types(&m, &a->spec, st, (size_t)n, err);
    for (int64_t i = 0; i < n && !rc; i++) {
        qtensor *x = &q[i];
        x->plan = st[i];
        if (!x->quantize) {
            x->plan.type = x->src->type; /* copied as it is */
            x->out_bytes = x->src->nbytes;
            continue;
        }
        int type = x->plan.type;
        if (x->plan.category == SYNTH_CAT_OUTPUT && a->output_type >= 0)
            type = a->output_type, x->fixed = true;
        if (x->plan.category == SYNTH_CAT_TOKEN_EMBD && a->embd_type >= 0)
            type = a->embd_type, x->fixed = true;
        for (int k = 0; k < a->n_ov; k++)
            if (regexec(&a->ov[k].re, x->src->name, 0, NULL, 0) == 0) {
                type = a->ov[k].type;
                x->fixed = true;
                break;
            }
        size_t row = halo_type_row_size(type, x->src->ne[0]);
        if (!row)
            rc = halo_error_set(err, HALO_ERR_ARG,
                                "%s: rows of %lld values do not divide into %s blocks of %lld",
                                x->src->name, (long long)x->src->ne[0], halo_type_name(type),
                                (long long)halo_type_get(type)->block_size);
        else if (halo_mul_overflow((uint64_t)row, (uint64_t)x->rows, &x->out_bytes))
            rc = halo_error_set(err, HALO_ERR_RANGE, "%s: too large", x->src->name);
        x->plan.type = type;
    }
    free(st);
    return rc;
}

/* ---- the summary by tensor class ------------------------------------------------------------ */

static const char *class_of(const qtensor *q) {
    const char *n = q->src->name;
    if (!q->quantize) return "other (copied)";
    if (q->plan.category == SYNTH_CAT_TOKEN_EMBD) return "token_embd";
    if (q->plan.category == SYNTH_CAT_OUTPUT) return "output";
    if (strstr(n, "_exps.")) return "routed experts";
    if (strstr(n, "_shexp.")) return "shared expert";
    if (strstr(n, ".ffn_")) return "ffn";
    if (strstr(n, ".attn_qkv.") || strstr(n, ".attn_gate.") || strstr(n, ".ssm_")) return "deltanet";
    if (strstr(n, ".attn_")) return "attention";
    return "other matrices";
}

static void summary(const qtensor *q, int64_t n, double secs, const char *out) {
    static const char *classes[] = {"token_embd", "output",         "attention", "deltanet",
                                    "ffn",        "routed experts", "shared expert",
                                    "other matrices", "other (copied)"};
    uint64_t tot_in = 0, tot_out = 0, tot_el = 0;
    fprintf(stderr, "%-16s %12s %12s %8s  types\n", "class", "in", "out", "bpw");
    for (size_t c = 0; c < sizeof classes / sizeof classes[0]; c++) {
        uint64_t in = 0, o = 0, el = 0;
        int types[HALO_TYPE_COUNT] = {0};
        for (int64_t i = 0; i < n; i++) {
            if (strcmp(class_of(&q[i]), classes[c])) continue;
            in += q[i].src->nbytes;
            o += q[i].out_bytes;
            el += (uint64_t)q[i].src->n_elements;
            if (q[i].plan.type >= 0 && q[i].plan.type < HALO_TYPE_COUNT) types[q[i].plan.type]++;
        }
        if (!el) continue;
        char a[32], b[32], t[256] = "";
        size_t tl = 0;
        for (int k = 0; k < HALO_TYPE_COUNT && tl < sizeof t - 24; k++)
            if (types[k]) tl += (size_t)snprintf(t + tl, sizeof t - tl, "%s%s x%d", tl ? ", " : "",
                                                 halo_type_name(k), types[k]);
        fprintf(stderr, "%-16s %12s %12s %8.2f  %s\n", classes[c],
                halo_format_bytes(in, a, sizeof a), halo_format_bytes(o, b, sizeof b),
                8.0 * (double)o / (double)el, t);
        tot_in += in;
        tot_out += o;
        tot_el += el;
    }
    char a[32], b[32];
    fprintf(stderr, "%-16s %12s %12s %8.2f\n", "total", halo_format_bytes(tot_in, a, sizeof a),
            halo_format_bytes(tot_out, b, sizeof b),
            tot_el ? 8.0 * (double)tot_out / (double)tot_el : 0.0);
    fprintf(stderr, "wrote %s in %.1f s\n", out, secs);
}

/* ---- --target-size / --target-bpw: the types chosen by measurement ------------------------- */

#define TYPE_MAP_KEY "halo.quantize.type_map"

/* Bytes of a string-array entry "NAME=TYPE" in the metadata, at most. */
static uint64_t map_entry_bytes(const qtensor *x) { return 8 + strlen(x->src->name) + 1 + 8; }

/* Replace the recipe's types of the tensors that no flag fixed by those measured to fit the
 * budget best (tools/quant_mix.c). */
static int target_choose(quant_args *a, const halo_hparams *hp, const halo_gguf *g, qtensor *q,
                         int64_t n, const halo_imatrix *im, double *kld, halo_error *err) {
    quant_mix_tensor *mt = calloc((size_t)(n ? n : 1), sizeof *mt);
    if (!mt) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    uint64_t params = 0, header = 0;
    for (int64_t i = 0; i < n; i++) {
        mt[i].src = q[i].src;
        mt[i].free = q[i].quantize && !q[i].fixed;
        mt[i].type = q[i].plan.type;
        mt[i].bytes = q[i].out_bytes;
        params += (uint64_t)q[i].src->n_elements;
        header += 32 /* alignment padding, at most */ + (q[i].quantize ? map_entry_bytes(&q[i]) : 0);
    }
    quant_mix_options *o = &a->mix;
    o->model = a->in;
    o->im = im;
    o->threads = a->threads;
    if (!o->n_types) {
        static const int def[] = {HALO_TYPE_Q2_K, HALO_TYPE_Q3_K, HALO_TYPE_IQ4_XS, HALO_TYPE_Q4_K,
                                  HALO_TYPE_Q5_K, HALO_TYPE_Q6_K, HALO_TYPE_Q8_0};
        o->n_types = (int)(sizeof def / sizeof def[0]);
        memcpy(o->types, def, sizeof def);
    }
    if (a->target_bpw > 0) {
        /* bits per weight as `halo info` counts them: all tensor data over all parameters */
        o->budget = (uint64_t)(a->target_bpw * (double)params / 8.0);
    } else {
        /* the whole file: the input's metadata, the keys added here, padding, tensor data */
        halo_gguf_load_stats ls;
        halo_gguf_get_load_stats(g, &ls);
        header += ls.file_bytes - ls.data_bytes + 4096;
        if (a->target_size <= header) {
            free(mt);
            char b[32];
            return halo_error_set(err, HALO_ERR_ARG,
                                  "--target-size %s: the metadata alone takes ~%s",
                                  a->target_text, halo_format_bytes(header, b, sizeof b));
        }
        o->budget = a->target_size - header;
    }
    quant_mix_result r;
    int rc = quant_mix_choose(o, mt, n, &r, err);
    for (int64_t i = 0; i < n && !rc; i++) {
        if (!mt[i].free) continue;
        q[i].plan.type = mt[i].type;
        q[i].out_bytes = mt[i].bytes;
    }
    *kld = r.kld;
    free(mt);
    if (rc || a->type_given) return rc;
    /* no TYPE given: general.file_type of the recipe whose file would be nearest in size
     * on this model (what llama.cpp shows as the file's type) */
    static const char *recipes[] = {"Q2_K", "Q3_K_M", "IQ4_XS", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"};
    qtensor *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    uint64_t best = UINT64_MAX;
    synth_type_spec chosen = a->spec;
    for (size_t k = 0; k < sizeof recipes / sizeof recipes[0] && !rc; k++) {
        quant_args ra = *a; /* its regexes are only read */
        memcpy(tmp, q, (size_t)n * sizeof *tmp);
        if (!synth_recipe_parse(recipes[k], false, &ra.spec)) continue;
        ra.spec.has_imatrix = im != NULL;
        if ((rc = choose(&ra, hp, g, tmp, n, err))) break;
        uint64_t size = 0;
        for (int64_t i = 0; i < n; i++) size += tmp[i].out_bytes;
        uint64_t d = size > r.bytes ? size - r.bytes : r.bytes - size;
        if (d < best) best = d, chosen = ra.spec;
    }
    free(tmp);
    a->spec = chosen;
    snprintf(a->spec.name, sizeof a->spec.name, "a measured mix");
    return rc;
}

/* The chosen map in the output's metadata: halo.quantize.type_map, one "NAME=TYPE" per
 * quantized tensor (each a valid --tensor-type argument, to quantize the same mix again
 * without measuring), halo.quantize.target (the budget as given) and
 * halo.quantize.kld_predicted (the measured costs summed). */
static int target_metadata(const quant_args *a, const qtensor *q, int64_t n, double kld,
                           halo_gguf_writer *w, halo_error *err) {
    char **s = calloc((size_t)(n ? n : 1), sizeof *s);
    int64_t k = 0;
    int rc = s ? 0 : halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n && !rc; i++) {
        if (!q[i].quantize) continue;
        size_t len = strlen(q[i].src->name) + 16;
        if (!(s[k] = malloc(len))) {
            rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(s[k++], len, "%s=%s", q[i].src->name, halo_type_name(q[i].plan.type));
    }
    char target[96];
    snprintf(target, sizeof target, "%s %s", a->target_bpw > 0 ? "bpw" : "size", a->target_text);
    if (!rc)
        rc = halo_gguf_writer_set_str_arr(w, TYPE_MAP_KEY, (const char *const *)s, (uint64_t)k,
                                          err) ||
             halo_gguf_writer_set_str(w, "halo.quantize.target", target, err) ||
             halo_gguf_writer_set_f32(w, "halo.quantize.kld_predicted", (float)kld, err);
    for (int64_t i = 0; s && i < k; i++) free(s[i]);
    free(s);
    return rc ? HALO_ERR_IO : 0;
}

/* ---- the command ------------------------------------------------------------------------------ */

int cmd_quantize(int argc, char **argv) {
    quant_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) {
        for (int k = 0; k < a.n_ov; k++) regfree(&a.ov[k].re);
        return rc;
    }
    halo_error err = {0};
    halo_gguf *g = NULL;
    halo_imatrix *im = NULL;
    halo_gguf_writer *w = NULL;
    qtensor *q = NULL;
    halo_threadpool *pool = NULL;
    quant_awq *awq = NULL;
    int *types = NULL;
    float *f32 = NULL;
    char *buf = NULL;
    rc = 1;
    halo_load_options lo = {.mode = HALO_LOAD_MMAP};
    if (halo_gguf_open(a.in, &lo, &g, &err)) goto fail;
    halo_hparams hp;
    if (halo_hparams_load(g, &hp, &err)) goto fail;
    if (a.imatrix && halo_imatrix_load(a.imatrix, &im, &err)) goto fail;

    const int64_t n = halo_gguf_n_tensors(g);
    q = calloc((size_t)(n ? n : 1), sizeof *q);
    if (!q) {
        halo_error_set(&err, HALO_ERR_NOMEM, "out of memory");
        goto fail;
    }
    uint64_t in_bytes = 0, out_bytes = 0;
    int64_t max_ne0 = 1, n_missing_im = 0;
    for (int64_t i = 0; i < n; i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        q[i].src = t;
        q[i].rows = t->ne[1] * t->ne[2] * t->ne[3];
        q[i].quantize = is_matrix(t);
        if (q[i].quantize && halo_type_get(t->type)->is_quantized && !a.allow_requantize) {
            halo_error_set(&err, HALO_ERR_ARG,
                           "%s is already %s: quantizing it again loses more accuracy than "
                           "quantizing the original (give --allow-requantize to do it anyway)",
                           t->name, halo_type_name(t->type));
            rc = 2;
            goto fail;
        }
        if (q[i].quantize && !halo_type_get(t->type)->to_float) {
            halo_error_set(&err, HALO_ERR_UNSUPPORTED, "%s: halo cannot decode %s", t->name,
                           halo_type_name(t->type));
            goto fail;
        }
        if (t->ne[0] > max_ne0) max_ne0 = t->ne[0];
        in_bytes += t->nbytes;
    }
    if (choose(&a, &hp, g, q, n, &err)) goto fail;
    double kld_predicted = 0.0;
    if (a.target_text && target_choose(&a, &hp, g, q, n, im, &kld_predicted, &err)) goto fail;
    int threads = a.threads;
    if (threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc > 0 ? (int)(nc < 256 ? nc : 256) : 1;
    }
    if (!(pool = halo_threadpool_new(threads))) {
        halo_error_set(&err, HALO_ERR_NOMEM, "out of memory (%d threads)", threads);
        goto fail;
    }
    if (a.awq) {
        if (!(types = malloc((size_t)(n ? n : 1) * sizeof *types))) {
            halo_error_set(&err, HALO_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int64_t i = 0; i < n; i++) types[i] = q[i].quantize ? q[i].plan.type : -1;
        if (quant_awq_plan(g, &hp, im, types, a.awq_alpha, pool, &awq, &err)) goto fail;
        /* copied tensors that take scales (norms, routers) are written as F32 */
        for (int64_t i = 0; i < n; i++) {
            if (q[i].quantize || !quant_awq_scales(awq, i)) continue;
            q[i].plan.type = HALO_TYPE_F32;
            if (halo_mul_overflow((uint64_t)q[i].src->n_elements, sizeof(float), &q[i].out_bytes)) {
                halo_error_set(&err, HALO_ERR_RANGE, "%s: too large", q[i].src->name);
                goto fail;
            }
        }
    }
    for (int64_t i = 0; i < n; i++) {
        out_bytes += q[i].out_bytes;
        if (im && q[i].quantize && q[i].plan.category != SYNTH_CAT_TOKEN_EMBD &&
            !halo_imatrix_get(im, q[i].src->name, 0, q[i].src->ne[0]))
            n_missing_im++;
    }
    if (im && n_missing_im)
        fprintf(stderr, "note: the importance matrix has nothing for %lld matrices (their "
                        "rounding is weighted by default)\n",
                (long long)n_missing_im);

    /* the output: the input's metadata (but splits), the file type, then the tensors */
    if (halo_gguf_writer_open(a.out, &w, &err)) goto fail;
    for (int64_t i = 0; i < halo_gguf_n_kv(g); i++) {
        const halo_gguf_kv *kv = halo_gguf_kv_at(g, i);
        if (!strncmp(kv->key, "split.", 6)) continue;
        if (halo_gguf_writer_set(w, kv->key, &kv->value, &err)) goto fail;
    }
    if (halo_gguf_writer_set_u32(w, "general.file_type", a.spec.file_type, &err) ||
        halo_gguf_writer_set_u32(w, "general.quantization_version", 2, &err))
        goto fail;
    if (a.target_text && target_metadata(&a, q, n, kld_predicted, w, &err)) goto fail;
    if (a.awq && halo_gguf_writer_set_bool(w, "halo.quantize.awq", true, &err)) goto fail;
    for (int64_t i = 0; i < n; i++)
        if (halo_gguf_writer_add_tensor(w, q[i].src->name, q[i].plan.type, q[i].src->n_dims,
                                        q[i].src->ne, &err))
            goto fail;

    const int64_t chunk_elems = (int64_t)1 << 22; /* ~16 MiB of f32 per chunk */
    f32 = malloc(sizeof(float) * 2 * (size_t)max_ne0 * (size_t)threads);
    size_t max_chunk = 1;
    for (int64_t i = 0; i < n; i++) {
        int64_t per = chunk_elems / q[i].src->ne[0];
        if (per < 1) per = 1;
        size_t row = halo_type_row_size(q[i].plan.type, q[i].src->ne[0]);
        const bool encoded = q[i].quantize || quant_awq_scales(awq, i);
        if (encoded && row * (size_t)per > max_chunk) max_chunk = row * (size_t)per;
    }
    buf = malloc(max_chunk);
    if (!f32 || !buf) {
        halo_error_set(&err, HALO_ERR_NOMEM, "out of memory (%d threads)", threads);
        goto fail;
    }
    char s_in[32], s_out[32];
    fprintf(stderr, "quantizing %s (%s) to %s as %s: %lld tensors, ~%s, %d threads%s%s\n", a.in,
            halo_format_bytes(in_bytes, s_in, sizeof s_in), a.out, a.spec.name, (long long)n,
            halo_format_bytes(out_bytes, s_out, sizeof s_out), threads,
            im ? ", importance matrix " : "", im ? a.imatrix : "");
    const bool tty = isatty(STDERR_FILENO);
    const double t0 = halo_time_seconds();
    double last = t0;
    uint64_t done = 0;
    for (int64_t i = 0; i < n; i++) {
        const qtensor *x = &q[i];
        const quant_scales *sc = quant_awq_scales(awq, i);
        if (!x->quantize && !sc) {
            if (halo_gguf_writer_write_data(w, x->src->data, (size_t)x->src->nbytes, &err))
                goto fail;
            done += x->out_bytes;
            continue;
        }
        int64_t per = chunk_elems / x->src->ne[0];
        if (per < 1) per = 1;
        const size_t out_row = halo_type_row_size(x->plan.type, x->src->ne[0]);
        for (int64_t r0 = 0; r0 < x->rows; r0 += per) {
            const int64_t nr = x->rows - r0 < per ? x->rows - r0 : per;
            if (quant_encode_rows(pool, x->src, x->plan.type, x->quantize ? im : NULL, sc, r0, nr,
                                  f32, buf, &err) ||
                halo_gguf_writer_write_data(w, buf, out_row * (size_t)nr, &err))
                goto fail;
            done += out_row * (size_t)nr;
            double now = halo_time_seconds();
            if (now - last >= (tty ? 0.25 : 10.0)) {
                char d[32], t[32];
                fprintf(stderr, "%s  %s / %s  %5.1f%%  %-40.40s%s", tty ? "\r" : "",
                        halo_format_bytes(done, d, sizeof d),
                        halo_format_bytes(out_bytes, t, sizeof t),
                        out_bytes ? 100.0 * (double)done / (double)out_bytes : 100.0,
                        x->src->name, tty ? "" : "\n");
                last = now;
            }
        }
    }
    if (tty) fprintf(stderr, "\r%-80s\r", "");
    rc = halo_gguf_writer_close(w, &err);
    w = NULL;
    if (rc) {
        rc = 1;
        goto fail;
    }
    summary(q, n, halo_time_seconds() - t0, a.out);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", err.msg[0] ? err.msg : "quantizing failed");
    if (w) halo_gguf_writer_abort(w);
    if (rc == 0) rc = 1;
done:
    for (int k = 0; k < a.n_ov; k++) regfree(&a.ov[k].re);
    if (pool) halo_threadpool_free(pool);
    free(f32);
    free(buf);
    free(q);
    free(types);
    quant_awq_free(awq);
    halo_imatrix_free(im);
    halo_gguf_close(g);
    return rc;
}
