/* The `halo` command: dispatch to a subcommand. */
#include "tools.h"

#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    /* subcommands, in the order `halo --help` lists them */
    {"bench", cmd_bench, "prompt and generation speed (like llama-bench: same tests and output)"},
    {"chat", cmd_chat, "chat with a model (its chat template, streaming, reasoning)"},
    {"embedding", cmd_embedding, "print the embeddings of texts (like llama-embedding)"},
    {"info", cmd_info, "describe a model and plan its memory"},
    {"imatrix", cmd_imatrix, "importance matrix over a calibration text (like llama-imatrix)"},
    {"logits", cmd_logits, "write the logits of token sequences (for comparing with references)"},
    {"perplexity", cmd_perplexity, "perplexity and KL divergence of a text (like llama-perplexity)"},
    {"plan", cmd_plan, "the largest context that fits a memory budget"},
    {"quantize", cmd_quantize, "write a model's matrices in block formats (like llama-quantize)"},
    {"run", cmd_run, "continue a prompt: stream generated text (sampling flags as llama.cpp's)"},
    {"serve", cmd_serve, "serve a model over an OpenAI-compatible HTTP API"},
    {"synth", cmd_synth, "write a random-weight GGUF model at the real shapes of a known model"},
    {"tokenize", cmd_tokenize, "print the tokens of a text (like llama-tokenize)"},
    {"template", cmd_template, "render a chat template with a JSON context"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out) {
    fprintf(out, "halo %s — LLM inference engine\n\n"
                 "usage: halo COMMAND [options]    (halo COMMAND --help for its options)\n\n"
                 "commands:\n",
            HALO_VERSION_STRING);
    for (const command *c = commands; c->name; c++) fprintf(out, "  %-12s %s\n", c->name, c->summary);
    fprintf(out, "  %-12s %s\n", "version", "print the version");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (tools_is_help(name) || !strcmp(name, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "version") || !strcmp(name, "--version")) {
        printf("halo %s\n", HALO_VERSION_STRING);
        return 0;
    }
    for (const command *c = commands; c->name; c++)
        if (!strcmp(c->name, name)) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "error: unknown command '%s' (halo --help lists them)\n", name);
    return 2;
}
