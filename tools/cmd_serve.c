/*
 * `halo serve`: the OpenAI-compatible server (server/server.h), with llama-server's
 * flags. -ngl puts the model on the GPU (the CUDA backend); -fa, which only
 * matters to the peer engine (halo's attention is always the flash form), is
 * accepted so that the same command lines run, and said to be ignored.
 */
#include "server/server.h"
#include "tools.h"
#include "util/util.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: halo serve [-m MODEL] [options]\n"
            "\n"
            "Serve a model over an OpenAI-compatible HTTP API: POST /v1/chat/completions,\n"
            "/v1/responses, /v1/completions, /tokenize, /detokenize, /v1/embeddings\n"
            "(--embeddings); GET /v1/models, /health, /metrics.\n"
            "\n"
            "  -m, --model FILE          GGUF model (default: %s)\n"
            "  -a, --alias NAME          the model id clients see (default: the file name)\n"
            "      --chat-template-file FILE  a Jinja chat template instead of the model's\n"
            "      --host ADDR           address to listen on (default 127.0.0.1): IPv4, or IPv6\n"
            "                            (::1; :: for every IPv4 and IPv6 address)\n"
            "      --port N              TCP port (default 8080; 0: any free port)\n"
            "      --api-key KEY         require 'Authorization: Bearer KEY'\n"
            "      --api-key-file FILE   the same, the key read from the first line of FILE\n"
            "  -c, --ctx-size N          KV cells over all slots (default 4096; 0: trained)\n"
            "  -np, --parallel N         parallel slots (default 1)\n"
            "      --kv-unified          a slot may use the whole context (default: c / np each)\n"
            "  -b, --batch-size N        most tokens one step decodes (default 2048)\n"
            "  -ub, --ubatch-size N      tokens per forward pass (default 512)\n"
            "  -ctk, --cache-type-k T    K cache type: f32, f16 (default), bf16, q8_0, q4_0, iq4_nl\n"
            "  -ctv, --cache-type-v T    V cache type\n"
            "  -t, --threads N           threads (default: all cores)\n"
            "  -tb, --threads-batch N    accepted; halo uses -t for prompts too\n"
            "      --no-mmap             read the weights into memory instead of mapping them\n"
            "      --mlock               lock the weights in memory\n"
            "  -n, --n-predict N         default max_tokens (-1: up to the context)\n"
            "      --reasoning on|off|auto  thinking (off: enable_thinking false, <think> kept in\n"
            "                            content; default auto)\n"
            "      --reasoning-budget N  force </think> after N thinking tokens (-1: no limit;\n"
            "                            0: thinking off)\n"
            "      --reasoning-format F  accepted (deepseek: reasoning in reasoning_content)\n"
            "      --cache-ram MiB       memory for prompt-cache checkpoints (default 8192;\n"
            "                            0: no checkpoints); with -ngl in GPU memory while\n"
            "                            1 GiB of it stays free, then in host memory\n"
            "      --checkpoint-every N  recurrent-state checkpoint every N prompt tokens\n"
            "                            (default 1024; 0: none), besides those at the start\n"
            "                            of every message and near the prompt's end\n"
            "      --slot-prompt-similarity F  reuse an idle slot's cache only when it covers\n"
            "                            this share of the prompt (default 0.1)\n"
            "      --cache-idle-slots    accepted (idle slots always keep their cache)\n"
            "      --queue N             requests that may wait for a slot before 503 (default 64)\n"
            "      --max-body MiB        largest request body (default 16)\n"
            "      --embeddings, --embedding  serve POST /v1/embeddings and /embedding (each\n"
            "                            input in a sequence of its own; completions still work)\n"
            "      --pooling P           none, mean, cls or last (default: the file's\n"
            "                            pooling_type; none for a decoder LLM, which\n"
            "                            /v1/embeddings refuses as llama-server does)\n"
            "      --embd-normalize N    pooled vectors' norm: -1 none, 0 int16 range, 1 taxicab,\n"
            "                            2 Euclidean (default), p the p-norm; a request's\n"
            "                            embd_normalize overrides it\n"
            TOOLS_GPU_FLAGS_HELP
            "  -fa, --flash-attn on|off  accepted and ignored\n"
            "      --metrics, --jinja    accepted (always on)\n"
            "      --log-disable         no per-request log lines\n",
            tools_default_model());
    tools_sampling_usage(out);
    fprintf(out, "  -h, --help                this help\n");
}

static bool read_key_file(const char *path, char *out, size_t size) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "error: --api-key-file: cannot open '%s'\n", path);
        return false;
    }
    bool ok = fgets(out, (int)size, f) != NULL;
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    if (!ok || !out[0]) {
        fprintf(stderr, "error: --api-key-file: '%s' has no key on its first line\n", path);
        return false;
    }
    return true;
}

int cmd_serve(int argc, char **argv) {
    halo_server_params p;
    halo_server_default_params(&p);
    tools_sampling s;
    tools_sampling_init(&s);
    halo_plan_options plan;
    halo_plan_options_default(&plan);
    plan.n_ctx = 4096;
    plan.n_slots = 1;
    plan.type_k = p.ctx.type_k;
    plan.type_v = p.ctx.type_v;
    static char key[1024];
    static char *template_text; /* static: still reachable on the early exits */
    int64_t n;
    double d;
    for (int i = 1; i < argc;) { /* the flag parsers advance i past what they read */
        const char *a = argv[i], *v;
        if (tools_is_help(a)) {
            usage(stdout);
            return 0;
        }
        if (tools_parse_load_flag(argc, argv, &i, &p.load)) continue;
        int c = tools_parse_compat_flag(argc, argv, &i);
        if (c < 0) return 2;
        if (c > 0) continue;
        int r = tools_parse_plan_flag(argc, argv, &i, &plan, NULL);
        if (r < 0) return 2;
        if (r > 0) continue;
        r = tools_parse_sampling_flag(argc, argv, &i, &s);
        if (r < 0) return 2;
        if (r > 0) continue;
#define VALUE()                                                                                    \
    do {                                                                                           \
        if (!(v = tools_flag_value(argc, argv, &i))) return 2;                                     \
    } while (0)
#define INT(lo, hi)                                                                                \
    do {                                                                                           \
        VALUE();                                                                                   \
        if (!tools_parse_int(a, v, lo, hi, &n)) return 2;                                          \
    } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            VALUE();
            p.model_path = v;
        } else if (!strcmp(a, "-a") || !strcmp(a, "--alias")) {
            VALUE();
            p.alias = v;
        } else if (!strcmp(a, "--chat-template-file")) {
            VALUE();
            size_t len = 0;
            char *t = tools_read_file(v, &len);
            if (!t) return 2; /* the reason is printed */
            free(template_text);
            template_text = t;
            p.chat_template = t;
        } else if (!strcmp(a, "--host")) {
            VALUE();
            p.host = v;
        } else if (!strcmp(a, "--port")) {
            INT(0, 65535);
            p.port = (int)n;
        } else if (!strcmp(a, "--api-key")) {
            VALUE();
            p.api_key = v;
        } else if (!strcmp(a, "--api-key-file")) {
            VALUE();
            if (!read_key_file(v, key, sizeof key)) return 2;
            p.api_key = key;
        } else if (!strcmp(a, "--kv-unified") || !strcmp(a, "-kvu")) {
            p.kv_unified = true;
            i++;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
            INT(1, 1 << 20);
            p.ctx.n_batch = (uint32_t)n;
        } else if (!strcmp(a, "-ub") || !strcmp(a, "--ubatch-size")) {
            INT(1, 1 << 20);
            p.ctx.n_ubatch = (uint32_t)n;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            INT(-1, 1024);
            p.ctx.n_threads = n < 0 ? 0 : (int)n;
        } else if (!strcmp(a, "-tb") || !strcmp(a, "--threads-batch")) {
            INT(-1, 1024);
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            INT(-1, 1 << 30);
            p.n_predict = (int32_t)n;
        } else if (!strcmp(a, "--reasoning")) {
            VALUE();
            if (!strcmp(v, "on")) p.reasoning = HALO_SERVER_REASONING_ON;
            else if (!strcmp(v, "off")) p.reasoning = HALO_SERVER_REASONING_OFF;
            else if (!strcmp(v, "auto")) p.reasoning = HALO_SERVER_REASONING_AUTO;
            else {
                fprintf(stderr, "error: --reasoning: '%s' is not on, off or auto\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--reasoning-budget")) {
            INT(-1, 1 << 30);
            p.reasoning_budget = (int32_t)n;
        } else if (!strcmp(a, "--reasoning-format")) {
            VALUE();
        } else if (!strcmp(a, "--cache-ram") || !strcmp(a, "-cram")) {
            INT(-1, 1 << 30);
            p.cache_ram = n < 0 ? UINT64_MAX : (uint64_t)n << 20;
        } else if (!strcmp(a, "--checkpoint-every")) {
            INT(0, 1 << 30);
            p.checkpoint_every = (int32_t)n;
        } else if (!strcmp(a, "--slot-prompt-similarity") || !strcmp(a, "-sps")) {
            VALUE();
            if (!tools_parse_float(a, v, 0, 1, &d)) return 2;
            p.slot_prompt_similarity = (float)d;
        } else if (!strcmp(a, "--queue")) {
            INT(0, 1 << 20);
            p.queue_max = (int32_t)n;
        } else if (!strcmp(a, "--max-body")) {
            INT(1, 1 << 14);
            p.max_body = (size_t)n << 20;
        } else if (!strcmp(a, "--cache-idle-slots")) {
            i++; /* accepted: halo always does this */
        } else if (!strcmp(a, "--embeddings") || !strcmp(a, "--embedding")) {
            p.embeddings = true;
            i++;
        } else if (!strcmp(a, "--pooling")) {
            VALUE();
            p.pooling = halo_pooling_from_name(v);
            if (p.pooling < 0) {
                fprintf(stderr, "error: --pooling: '%s' is not none, mean, cls, last or rank\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--embd-normalize")) {
            INT(-1, 64);
            p.embd_normalize = (int)n;
        } else if (!strcmp(a, "--log-disable")) {
            p.quiet = true;
            i++;
        } else {
            fprintf(stderr, "error: unknown option '%s' (halo serve --help lists them)\n", a);
            return 2;
        }
#undef INT
#undef VALUE
    }
    if (!p.model_path) p.model_path = tools_default_model();
    p.ctx.n_ctx = (uint32_t)(plan.n_ctx > UINT32_MAX ? UINT32_MAX : plan.n_ctx);
    p.ctx.n_seq_max = plan.n_slots;
    p.ctx.type_k = plan.type_k;
    p.ctx.type_v = plan.type_v;
    p.sampling = s.params;
    p.sampling.logit_bias = NULL;
    p.sampling.n_logit_bias = 0;
    if (s.params.n_logit_bias)
        fprintf(stderr, "note: --logit-bias is per request in the server (logit_bias field)\n");

    /* SIGINT / SIGTERM are taken by sigwait below: block them before any thread starts */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    halo_error err = {0};
    halo_server *srv;
    double t0 = halo_time_seconds();
    if (halo_server_start(&p, &srv, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        free(template_text);
        return 1;
    }
    const bool v6 = strchr(p.host, ':') != NULL; /* an IPv6 address goes in brackets */
    fprintf(stderr, "halo serve: %s loaded in %.2f s; listening on http://%s%s%s:%d (%u slot%s)\n",
            p.model_path, halo_time_seconds() - t0, v6 ? "[" : "", p.host, v6 ? "]" : "",
            halo_server_port(srv), p.ctx.n_seq_max, p.ctx.n_seq_max == 1 ? "" : "s");
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "halo serve: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    halo_server_stop(srv);
    free(template_text);
    return 0;
}
