/*
 * tools — the `halo` command. Each subcommand is a function `int cmd_NAME(int argc,
 * char **argv)` in tools/cmd_NAME.c that returns the process exit code (0 ok, 1
 * error, 2 usage error) and is listed in the table of tools/halo.c. argv[0] is the
 * subcommand's name. Subcommands print results to stdout and progress, timings
 * and errors to stderr.
 */
#ifndef HALO_TOOLS_H
#define HALO_TOOLS_H

#include "halo.h"
#include "runtime/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The model shipped in the repository, used when a command gets no -m. Resolved
 * relative to the executable (../models/ from build/), then the current directory. */
const char *tools_default_model(void);

/* The GPU placement flags' help lines (every command that loads a model), for usage texts
 * aligned at column 28. */
#define TOOLS_GPU_FLAGS_HELP \
    "  -ngl, --n-gpu-layers N    layers on the GPU: 0 (CPU, default) or all (99)\n" \
    "  -dev, --device DEV        the GPU: CUDA<I> or Vulkan<I> (default CUDA0 where a\n" \
    "                            CUDA device exists, else Vulkan0), none: the CPU\n" \
    "  --list-devices            list the GPUs -dev takes, and exit\n" \
    "  -mg, --main-gpu I         the GPU's index among its backend's (default 0)\n" \
    "  -ncmoe, --n-cpu-moe N     with -ngl: the routed experts of the first N layers\n" \
    "                            stay in host memory, computed by the CPU\n" \
    "  -cmoe, --cpu-moe          with -ngl: every layer's routed experts on the CPU\n" \
    "  -ot, --override-tensor PATTERN=DEVICE\n" \
    "                            tensors whose names match PATTERN (a regex) on\n" \
    "                            DEVICE: CPU, CUDA0 or Vulkan0 (with -ngl, only\n" \
    "                            ffn_*_exps on the CPU); comma-separated or repeated\n"

/* If argv[*i] is a model-loading flag (--no-mmap, --mmap, --mlock), apply it to
 * opts, advance *i past it, and return true. */
bool tools_parse_load_flag(int argc, char **argv, int *i, halo_load_options *opts);

/* Flags of llama-server / llama-cli with no meaning for halo (--no-context-shift,
 * --cache-reuse N, --threads-http N, --timeout N, --no-warmup, -v, --jinja, -fa X, ..):
 * accepted with a one-line note on stderr so that copied command lines start. Returns 1
 * when argv[*i] was one (and advances *i), 0 when not, -1 on a missing value. */
int tools_parse_compat_flag(int argc, char **argv, int *i);

/* The value after a flag at argv[*i]; prints a usage error and returns NULL if
 * missing. Advances *i. */
const char *tools_flag_value(int argc, char **argv, int *i);
/* Parse an integer / a float in [lo, hi]; prints "<flag>: ..." on error. */
bool tools_parse_int(const char *flag, const char *text, int64_t lo, int64_t hi, int64_t *out);
bool tools_parse_float(const char *flag, const char *text, double lo, double hi, double *out);

/* If argv[*i] is a memory-plan flag (-c/--ctx-size, -np/--parallel, -ctk/--cache-type-k,
 * -ctv/--cache-type-v, --mem), parse its value into plan and advance *i. Returns 1 if it
 * was one, 0 if not, -1 on a usage error (already printed). *ctx_given (may be NULL) is
 * set when -c was seen. */
int tools_parse_plan_flag(int argc, char **argv, int *i, halo_plan_options *plan,
                          bool *ctx_given);

/* Sampling flags, llama.cpp's names: --temp, --top-k, --top-p, --min-p,
 * --presence-penalty, --frequency-penalty, --repeat-penalty, --repeat-last-n,
 * -s/--seed, --sampling-preset/--preset NAME, -l/--logit-bias TOKEN(+|-)BIAS.
 * Applied in command-line order (a preset overrides the flags before it). */
#define TOOLS_MAX_LOGIT_BIAS 1024
typedef struct tools_sampling {
    halo_sampler_params params; /* params.logit_bias points at bias[] */
    halo_logit_bias bias[TOOLS_MAX_LOGIT_BIAS];
    bool repeat_last_n_ctx; /* --repeat-last-n -1: the context size */
    /* constrained decoding, for commands that set with_grammar before parsing:
     * --grammar GBNF, --grammar-file F, -j/--json-schema SCHEMA, -jf/--json-schema-file F */
    bool with_grammar;
    char *grammar;          /* the text given (malloc'd), NULL: none */
    bool grammar_is_schema; /* it is a JSON schema, not GBNF */
} tools_sampling;

void tools_sampling_init(tools_sampling *s);
/* Returns 1 if argv[*i] was a sampling flag (parsed, *i advanced), 0 if not, -1 on
 * a usage error (already printed). */
int tools_parse_sampling_flag(int argc, char **argv, int *i, tools_sampling *s);
/* Usage lines for the flags above, for --help. */
void tools_sampling_usage(FILE *out);
/* Add a logit bias (-inf bans a token, as --ignore-eos does); false when the list is full. */
bool tools_sampling_add_bias(tools_sampling *s, int32_t token, float bias);
/* The grammar the flags gave, compiled (*out NULL: none); false with the error printed. */
bool tools_sampling_grammar(const tools_sampling *s, halo_grammar **out);
void tools_sampling_free(tools_sampling *s);

/* A whole file ("-": standard input) into a malloc'd, NUL-terminated buffer; NULL with
 * a one-line error printed on failure. */
char *tools_read_file(const char *path, size_t *len);
/* Load a model; prints "error: PATH: why" and returns false on failure. The load's
 * wall time goes to *load_s (may be NULL). */
bool tools_load_model(const char *path, const halo_load_options *lo, halo_model **model,
                      double *load_s);

/* true if argv[i] is -h or --help */
bool tools_is_help(const char *arg);

/* Subcommands. */
int cmd_bench(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_embedding(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);

/* llama.cpp's escapes in prompt text, in place: \n \r \t \' \" \\ \xHH; unknown escapes
 * and a final lone backslash stay as they are. Returns the new length. */
size_t tools_process_escapes(char *s, size_t n);

#endif
