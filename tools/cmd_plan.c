/*
 * `halo plan`: the plain answer to "how much context fits?". Given a model and a
 * memory budget (--mem, default this machine's memory), it prints the largest
 * context (-c, over all -np slots) that fits with the chosen cache types, what
 * that needs item by item, and a table over the common KV cache types so the
 * trade-off between cache precision and context is visible at a glance.
 *
 * Only the metadata and tensor table are read; the weights are not touched.
 */
#include "tools.h"

#include "format/gguf.h"
#include "model/model.h"
#include "quant/quant.h"
#include "runtime/runtime.h"
#include "util/util.h"
#ifdef HALO_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif
#ifdef HALO_HAVE_VULKAN
#include "kernels/vulkan/vk_ops.h"
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct plan_args {
    const char *model;
    halo_load_options load;
    halo_plan_options plan;
    bool ctx_given;
    uint64_t vram; /* --vram: the GPU's memory, when -ngl puts the model there */
    char budget_name[160];
    char weights_note[256]; /* a UMA Vulkan device: whether the weights are shared or copied */
} plan_args;

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo plan [-m] MODEL.gguf [--mem SIZE] [options]\n"
            "\n"
            "The largest context that fits a memory budget, what it needs, and the same for\n"
            "each common KV cache type. Without a model, the repository's default model.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE          the model (or give it as the first argument)\n"
            "  --mem SIZE                memory budget: 64GiB, 48G, 60GB; a bare number is GiB\n"
            "                            (default: this machine's memory)\n"
            "  -np, --parallel N         parallel slots (default 1); the context is shared\n"
            "  -ctk, --cache-type-k T    K cache type: %s (default f16)\n"
            "  -ctv, --cache-type-v T    V cache type (default f16)\n"
            "  -c, --ctx-size N          also say whether this context fits (0: the trained one)\n"
            "  -ngl, --n-gpu-layers N    plan for the GPU (all layers there): the budget is the\n"
            "                            GPU's memory (-mg/-dev picks the GPU: CUDA0, Vulkan0)\n"
            "                            or --vram\n"
            "  --vram SIZE               the GPU memory to plan for (default: the GPU's own)\n"
            "  -ncmoe, --n-cpu-moe N     with -ngl: the routed experts of the first N layers in\n"
            "                            host memory (--cpu-moe: all), not in the GPU's\n"
            "  -ot, --override-tensor P=DEV  with -ngl: tensors whose names match P kept in host\n"
            "                            memory (DEV CPU: routed experts only, e.g.\n"
            "                            \"blk\\.(2[0-9])\\.ffn_.*_exps\\.=CPU\") or on the GPU\n"
            "  --no-mmap, --mlock        accepted, as for every command that loads a model\n"
            "  -h, --help                this help\n",
            halo_kv_type_names());
}

/* -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, plan_args *a) {
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
        int plan_flag = tools_parse_plan_flag(argc, argv, &i, &a->plan, &a->ctx_given);
        if (plan_flag < 0) return 2;
        if (plan_flag > 0) continue;
        if (!strcmp(arg, "-m") || !strcmp(arg, "--model")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            a->model = v;
        } else if (!strcmp(arg, "--vram")) {
            if (!(v = tools_flag_value(argc, argv, &i))) return 2;
            if (!halo_parse_size(v, 1ull << 30, &a->vram) || a->vram == 0) {
                fprintf(stderr, "error: --vram: '%s' is not a size (e.g. 24GiB, 80G)\n", v);
                return 2;
            }
        } else if (arg[0] == '-' && arg[1] != '\0') {
            fprintf(stderr, "error: unknown option '%s' (halo plan --help lists them)\n", arg);
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
    if (a->ctx_given && a->plan.n_ctx != 0 && a->plan.n_ctx < a->plan.n_slots) {
        fprintf(stderr, "error: -c %" PRIu64 " is less than one token per slot (-np %u)\n",
                a->plan.n_ctx, a->plan.n_slots);
        return 2;
    }
    if (!a->model) a->model = tools_default_model();
    /* on the GPU: the budget is its memory */
    if (a->vram && !a->load.n_gpu_layers) a->load.n_gpu_layers = -1;
    if (a->load.n_gpu_layers != 0) {
        if (a->plan.mem_bytes) {
            fprintf(stderr, "error: --mem is the host budget; with -ngl the plan is for the GPU "
                            "(give --vram SIZE)\n");
            return 2;
        }
        if (a->vram) {
            a->plan.mem_bytes = a->vram;
            snprintf(a->budget_name, sizeof a->budget_name, "--vram, GPU");
        } else {
            halo_gpu_backend be = halo_gpu_backend_of(&a->load);
            (void)be; /* used by neither backend in a build of neither */
#ifdef HALO_HAVE_VULKAN
            /* a UMA device's memory is the host's, shared: its heap is the budget all the same */
            halo_vk_device_info info[16];
            halo_error err = {0};
            int n = be == HALO_GPU_VULKAN ? halo_vk_devices(info, 16, &err) : 0;
            if (a->load.main_gpu < n && a->load.main_gpu < 16) {
                const halo_vk_device_info *v = &info[a->load.main_gpu];
                a->plan.mem_bytes = v->memory_bytes;
                snprintf(a->budget_name, sizeof a->budget_name, "Vulkan%d: %.100s%s",
                         a->load.main_gpu, v->name, v->uma ? ", UMA: shared with the host" : "");
                /* the weights in that memory once (used in place) or twice (copied) */
                const char *env = getenv("HALO_VK_IMPORT");
                const bool off = env && !strcmp(env, "0");
                if (v->uma && v->host_import && !off)
                    snprintf(a->weights_note, sizeof a->weights_note,
                             "shared, counted once: the device reads them in place from the "
                             "model's %s (VK_EXT_external_memory_host), no copy",
                             a->load.mode == HALO_LOAD_READ ? "buffer (--no-mmap)" : "mapping");
                else if (v->uma)
                    snprintf(a->weights_note, sizeof a->weights_note,
                             "copied into the device's memory (%s): %s",
                             off ? "HALO_VK_IMPORT=0" : "no VK_EXT_external_memory_host",
                             a->load.mode == HALO_LOAD_READ
                                 ? "the --no-mmap buffer holds them a second time, not planned here"
                                 : "the file's pages in the page cache come on top (reclaimable)");
            }
#endif
#ifdef HALO_HAVE_CUDA
            char name[128];
            size_t total = 0;
            if (be == HALO_GPU_CUDA && halo_cuda_device_count() > a->load.main_gpu &&
                halo_cuda_device_info(a->load.main_gpu, name, sizeof name, &total, NULL) == 0) {
                a->plan.mem_bytes = total;
                snprintf(a->budget_name, sizeof a->budget_name, "GPU %d: %s", a->load.main_gpu,
                         name);
            }
#endif
            if (!a->plan.mem_bytes) {
                fprintf(stderr, "error: -ngl: no GPU is visible to measure; give its memory "
                                "with --vram SIZE\n");
                return 2;
            }
        }
    }
    return -1;
}

/* The plan at the largest context that fits (or at 1 token if none does). */
static int plan_at_max(const halo_hparams *hp, uint64_t weights, const halo_plan_options *base,
                       int type_k, int type_v, halo_memory_plan *out, halo_error *err) {
    halo_plan_options o = *base;
    o.type_k = type_k;
    o.type_v = type_v;
    o.n_ctx = o.n_slots;
    int rc = halo_plan_compute(hp, weights, &o, out, err);
    if (rc || out->mem_bytes == 0) return rc;
    uint64_t best = out->max_ctx;
    if (best == UINT64_MAX || best == 0) return 0;
    o.n_ctx = best;
    return halo_plan_compute(hp, weights, &o, out, err);
}

int cmd_plan(int argc, char **argv) {
    plan_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;

    halo_error err = {0};
    halo_gguf *g = NULL;
    if (halo_gguf_open(a.model, &a.load, &g, &err) != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    halo_hparams hp;
    halo_model_stats st;
    halo_memory_plan best, at_c;
    rc = halo_hparams_load(g, &hp, &err);
    if (rc == 0) rc = halo_model_stats_compute(g, &hp, &st, &err);
    if (rc) {
        fprintf(stderr, "error: %s: cannot plan: %s\n", a.model, err.msg);
        halo_gguf_close(g);
        return 1;
    }
    /* experts kept in host memory (--n-cpu-moe, -ot ...=CPU): not in the GPU's budget;
     * the loader's own rule (halo_expert_placement) */
    uint64_t host_experts = 0;
    uint32_t host_layers = 0;
    if (a.load.n_gpu_layers != 0 && (a.load.n_cpu_moe > 0 || a.load.n_tensor_overrides > 0)) {
        bool *host = calloc(hp.n_layer ? hp.n_layer : 1, sizeof *host);
        rc = host ? halo_expert_placement(g, &hp, &a.load, host, &host_experts, &err)
                  : halo_error_set(&err, HALO_ERR_NOMEM, "out of memory");
        for (uint32_t il = 0; host && il < hp.n_layer; il++)
            host_layers += host[il] && hp.n_expert > 0;
        free(host);
        if (rc) {
            fprintf(stderr, "error: %s\n", err.msg);
            halo_gguf_close(g);
            return rc == HALO_ERR_ARG || rc == HALO_ERR_UNSUPPORTED ? 2 : 1;
        }
        st.bytes = st.bytes > host_experts ? st.bytes - host_experts : 0;
    }
    if (a.plan.n_ctx == 0) /* -c 0: the trained context */
        a.plan.n_ctx = hp.n_ctx_train ? hp.n_ctx_train : HALO_PLAN_DEFAULT_CTX;
    if (a.plan.n_ctx < a.plan.n_slots) a.plan.n_ctx = a.plan.n_slots;
    rc = plan_at_max(&hp, st.bytes, &a.plan, a.plan.type_k, a.plan.type_v, &best, &err);
    if (rc == 0 && a.ctx_given) rc = halo_plan_compute(&hp, st.bytes, &a.plan, &at_c, &err);
    if (rc) {
        fprintf(stderr, "error: %s\n", err.msg);
        halo_gguf_close(g);
        return rc == HALO_ERR_ARG ? 2 : 1;
    }
    if (best.mem_bytes == 0) {
        fprintf(stderr, "error: this machine's memory is unknown; give --mem SIZE\n");
        halo_gguf_close(g);
        return 1;
    }

    char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
    const char *base = strrchr(a.model, '/');
    base = base ? base + 1 : a.model;
    printf("model            %s: %s, %s parameters", base, hp.arch_name,
           halo_format_count(st.n_params, b1, sizeof b1));
    if (st.n_params_active != st.n_params)
        printf(" (%s active)", halo_format_count(st.n_params_active, b2, sizeof b2));
    printf(", %s of weights, trained context %u\n",
           halo_format_bytes_si(st.bytes + host_experts, b3, sizeof b3),
           hp.n_ctx_train);
    if (a.weights_note[0]) printf("weights          %s\n", a.weights_note);
    if (host_experts)
        printf("experts on CPU   %s of %u layers in host memory (%s), not planned here\n",
               halo_format_bytes_si(host_experts, b1, sizeof b1), host_layers,
               a.load.n_tensor_overrides > 0 ? "-ot" : "--n-cpu-moe");
    printf("memory           %s (%s), %u slot%s, K %s / V %s\n",
           halo_format_bytes(best.mem_bytes, b1, sizeof b1),
           a.budget_name[0]         ? a.budget_name
           : best.mem_from_system ? "this machine"
                                  : "--mem",
           a.plan.n_slots,
           a.plan.n_slots == 1 ? "" : "s", halo_type_name(a.plan.type_k),
           halo_type_name(a.plan.type_v));

    uint64_t fixed = best.weights_bytes + best.recurrent_bytes + best.compute_bytes;
    if (best.max_ctx == 0) {
        printf("largest context  none: weights %s + recurrent state %s + compute buffers %s "
               "(estimate) = %s exceed the budget by %s\n",
               halo_format_bytes(best.weights_bytes, b1, sizeof b1),
               halo_format_bytes(best.recurrent_bytes, b2, sizeof b2),
               halo_format_bytes(best.compute_bytes, b3, sizeof b3),
               halo_format_bytes(fixed, b4, sizeof b4),
               halo_format_bytes(fixed - best.mem_bytes, b5, sizeof b5));
    } else {
        printf("largest context  -c %" PRIu64, best.n_ctx);
        if (best.max_ctx_fit == UINT64_MAX)
            printf(" (no KV cache: the trained context%s)\n", a.plan.n_slots > 1 ? " x slots" : "");
        else if (best.max_ctx_capped_by_train)
            printf(" (the trained context%s; the memory would hold %s)\n",
                   a.plan.n_slots > 1 ? " x slots" : "",
                   halo_format_count(best.max_ctx_fit, b1, sizeof b1));
        else
            printf(" (limited by memory)\n");
        printf("  needs          weights %s + KV cache %s + recurrent state %s + compute %s "
               "(estimate) = %s, %s left\n",
               halo_format_bytes(best.weights_bytes, b1, sizeof b1),
               halo_format_bytes(best.kv_bytes, b2, sizeof b2),
               halo_format_bytes(best.recurrent_bytes, b3, sizeof b3),
               halo_format_bytes(best.compute_bytes, b4, sizeof b4),
               halo_format_bytes(best.total_bytes, b5, sizeof b5),
               halo_format_bytes((uint64_t)best.headroom_bytes, b6, sizeof b6));
    }
    printf("  KV cache       %s per token (%u full-attention layer%s)",
           halo_format_bytes(best.kv_bytes_per_token, b1, sizeof b1), hp.n_attention_layers,
           hp.n_attention_layers == 1 ? "" : "s");
    if (hp.n_deltanet_layers)
        printf("; recurrent state %s per slot (%u DeltaNet layers)",
               halo_format_bytes(best.conv_bytes_per_slot + best.ssm_bytes_per_slot, b2, sizeof b2),
               hp.n_deltanet_layers);
    printf("\n  compute        estimated as logits n_vocab x %u x 4 B + f32 activations of a "
           "%u-token ubatch\n",
           best.n_ubatch, best.n_ubatch);
    if (a.ctx_given)
        printf("at -c %-10" PRIu64 " %s in all: %s\n", at_c.n_ctx,
               halo_format_bytes(at_c.total_bytes, b1, sizeof b1),
               at_c.fits ? "fits" : "does NOT fit");

    /* The trade-off table: the same budget, each common cache type for K and V. */
    static const int types[] = {HALO_TYPE_F32, HALO_TYPE_F16, HALO_TYPE_BF16, HALO_TYPE_Q8_0,
                                HALO_TYPE_Q4_0, HALO_TYPE_IQ4_NL};
    printf("\n%-13s %12s %14s %14s %12s\n", "KV type", "per token", "largest -c", "memory holds",
           "total");
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        halo_memory_plan p;
        halo_error e = {0};
        char label[32];
        snprintf(label, sizeof label, "%s/%s", halo_type_name(types[k]), halo_type_name(types[k]));
        if (plan_at_max(&hp, st.bytes, &a.plan, types[k], types[k], &p, &e) != 0) {
            printf("%-13s %12s   (%s)\n", label, "-", e.msg);
            continue;
        }
        char ctx[32], holds[32];
        if (p.max_ctx == 0) snprintf(ctx, sizeof ctx, "none");
        else snprintf(ctx, sizeof ctx, "%" PRIu64, p.max_ctx);
        if (p.max_ctx_fit == UINT64_MAX) snprintf(holds, sizeof holds, "any");
        else halo_format_count(p.max_ctx_fit, holds, sizeof holds);
        printf("%-13s %12s %14s %14s %12s\n", label,
               halo_format_bytes(p.kv_bytes_per_token, b1, sizeof b1), ctx, holds,
               p.max_ctx ? halo_format_bytes(p.total_bytes, b2, sizeof b2) : "-");
    }
    printf("(largest -c is capped at the trained context x slots; \"memory holds\" is what the "
           "budget alone allows)\n");
    halo_gguf_close(g);
    return 0;
}
