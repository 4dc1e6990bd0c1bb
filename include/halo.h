/*
 * halo — an LLM inference engine. This is the one public header.
 *
 * Conventions: functions that can fail return 0 on success and a negative
 * halo_status on failure, and fill a halo_error with a message written for the
 * user (what went wrong and, where possible, what to do). Library code never
 * exits and never prints except through halo_log().
 */
#ifndef HALO_H
#define HALO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HALO_VERSION_STRING "0.1.0"

/* ---- status and errors ------------------------------------------------- */

typedef enum halo_status {
    HALO_OK = 0,
    HALO_ERR_IO = -1,        /* open/read/write/mmap failed */
    HALO_ERR_FORMAT = -2,    /* the file is malformed, truncated or hostile */
    HALO_ERR_UNSUPPORTED = -3, /* well-formed, but something halo does not handle */
    HALO_ERR_NOMEM = -4,     /* allocation failed */
    HALO_ERR_ARG = -5,       /* a bad parameter from the caller or the user */
    HALO_ERR_RANGE = -6,     /* a size computation would overflow */
} halo_status;

/* A message for the user. Zero-initialize before use; the first error set wins
 * unless the caller clears it. */
typedef struct halo_error {
    int status;
    char msg[512];
} halo_error;

/* printf-style; returns the status so that `return halo_error_set(...)` reads well. */
int halo_error_set(halo_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void halo_error_clear(halo_error *err);

/* ---- logging ----------------------------------------------------------- */

typedef enum halo_log_level {
    HALO_LOG_ERROR = 0,
    HALO_LOG_WARN = 1,
    HALO_LOG_INFO = 2,
    HALO_LOG_DEBUG = 3,
} halo_log_level;

typedef void (*halo_log_fn)(halo_log_level level, const char *msg, void *user);

/* Messages above `level` are dropped. The default sink writes to stderr at INFO. */
void halo_log_set_level(halo_log_level level);
void halo_log_set_sink(halo_log_fn fn, void *user);
void halo_log(halo_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- loading ----------------------------------------------------------- */

typedef enum halo_load_mode {
    HALO_LOAD_MMAP = 0, /* lazy: map the file, pages come in on first touch (default) */
    HALO_LOAD_READ = 1, /* eager: read the whole data section into aligned memory (--no-mmap) */
} halo_load_mode;

/* The GPU backend that -ngl puts the model on (-dev CUDA<n> / Vulkan<n>). */
typedef enum halo_gpu_backend {
    HALO_GPU_AUTO = 0, /* CUDA where built with it and a CUDA device exists, else Vulkan where
                        * built with it and a Vulkan device exists (halo_gpu_backend_of) */
    HALO_GPU_CUDA = 1,
    HALO_GPU_VULKAN = 2,
} halo_gpu_backend;

typedef struct halo_load_options {
    halo_load_mode mode;
    bool mlock;    /* lock the weights in RAM (--mlock) */
    bool progress; /* report progress through halo_log while reading */
    /* Layers whose weights go to the GPU (-ngl, as llama.cpp): 0 keeps the model on
     * the CPU; the layer count or more (or -1: all) puts every layer and the output
     * head on the GPU. A partial offload is not supported yet (an error says so).
     * Needs a build with the CUDA or Vulkan backend and a visible GPU. */
    int n_gpu_layers;
    int main_gpu; /* the GPU, an index among gpu_backend's devices (-mg / -dev CUDAn, Vulkann) */
    halo_gpu_backend gpu_backend; /* -dev CUDAn: CUDA, -dev Vulkann: Vulkan; 0: AUTO */
    /* With the model on the GPU: the routed experts (ffn_{gate,up,down}_exps) of the first
     * n_cpu_moe layers stay in host memory and are computed by the CPU (--n-cpu-moe N,
     * --cpu-moe: all), the rest of each layer on the GPU. */
    int n_cpu_moe;
    /* -ot / --override-tensor: "REGEX=DEVICE" rules, first match wins, searched in each
     * tensor's name; DEVICE is CPU (host memory, computed by the CPU) or CUDA<n> / Vulkan<n>
     * (the GPU). With the CUDA backend only routed-expert tensors can be kept on the CPU; the
     * Vulkan backend keeps none there yet (loading says so). */
    const char *const *tensor_overrides;
    int n_tensor_overrides;
} halo_load_options;

/* The backend opts->n_gpu_layers != 0 loads onto: opts->gpu_backend, AUTO resolved (CUDA
 * where neither backend was built or no device exists, so that loading names what is missing).
 * Enumerates the devices when AUTO. */
halo_gpu_backend halo_gpu_backend_of(const halo_load_options *opts);
/* "CUDA", "Vulkan" (llama.cpp's backend names). */
const char *halo_gpu_backend_name(halo_gpu_backend b);

/* ---- models and contexts (implemented by runtime/ and model/) ----------------
 * The flow, as in llama.cpp: load a model; make a context (KV cache, recurrent
 * state, buffers) for n_ctx tokens over n_seq_max parallel sequences; feed
 * batches of tokens with halo_decode; read the logits it asked for; sample.
 * A batch may hold tokens of several sequences, each with its own positions:
 * decoding N parallel requests is one call, not N. Within a batch, the tokens of
 * one sequence must be in order and continue that sequence (pos = its current
 * length), since recurrent (DeltaNet) state only moves forward. */

typedef struct halo_model halo_model;
typedef struct halo_context halo_context;
typedef struct halo_tokenizer halo_tokenizer; /* tokenizer/tokenizer.h */

int halo_model_load(const char *path, const halo_load_options *opts, halo_model **out,
                    halo_error *err);
void halo_model_free(halo_model *model);
const char *halo_model_arch_name(const halo_model *model); /* "qwen35moe" */
/* "qwen35moe 35B.A3B Q4_K - Medium"-style description for bench tables */
const char *halo_model_desc(const halo_model *model);
int32_t halo_model_n_vocab(const halo_model *model);
uint32_t halo_model_n_ctx_train(const halo_model *model);
uint64_t halo_model_n_params(const halo_model *model);
uint64_t halo_model_size_bytes(const halo_model *model); /* tensor data */
const halo_tokenizer *halo_model_tokenizer(const halo_model *model);

typedef struct halo_context_params {
    uint32_t n_ctx;     /* KV cells over all sequences; 0: the trained context */
    uint32_t n_seq_max; /* parallel sequences (slots), each with its own recurrent state */
    uint32_t n_batch;   /* most tokens one halo_decode call takes */
    uint32_t n_ubatch;  /* tokens per forward pass: larger batches are split */
    int type_k, type_v; /* cache types (halo_type): F32, F16 (default), BF16, Q8_0, Q4_0, IQ4_NL */
    int n_threads;      /* 0: the number of cores */
} halo_context_params;

void halo_context_default_params(halo_context_params *p);
int halo_context_new(halo_model *model, const halo_context_params *p, halo_context **out,
                     halo_error *err);
void halo_context_free(halo_context *ctx);
uint32_t halo_context_n_ctx(const halo_context *ctx);

typedef struct halo_batch {
    int32_t n_tokens;
    const int32_t *token;  /* [n_tokens] */
    const int32_t *pos;    /* [n_tokens] position in its sequence; NULL: each continues its sequence */
    const int32_t *seq_id; /* [n_tokens] 0 .. n_seq_max-1; NULL: all sequence 0 */
    const int8_t *logits;  /* [n_tokens] non-zero: compute its logits; NULL: the last token only */
} halo_batch;

/* Run the model over a batch. On error, the cache and state are as before the call. */
int halo_decode(halo_context *ctx, const halo_batch *batch, halo_error *err);
/* Logits [n_vocab] of token i of the last batch (which must have asked for them);
 * NULL otherwise. Valid until the next halo_decode. */
const float *halo_get_logits(halo_context *ctx, int32_t i);

/* Sequences: forget one; its length (the next position); copy one into another
 * (the destination is cleared first; a prompt computed once, shared by slots). */
void halo_seq_clear(halo_context *ctx, int32_t seq);
int32_t halo_seq_length(const halo_context *ctx, int32_t seq);
int halo_seq_copy(halo_context *ctx, int32_t src, int32_t dst, halo_error *err);
/* Drop the positions >= n_keep of a sequence (0 <= n_keep <= its length). A
 * hybrid model (recurrent DeltaNet state) cannot roll back: there it fails with
 * HALO_ERR_UNSUPPORTED unless n_keep == the length; restore a checkpoint instead. */
int halo_seq_truncate(halo_context *ctx, int32_t seq, int32_t n_keep, halo_error *err);

/* Recurrent-state checkpoints (for a prompt cache): the bytes of one sequence's
 * recurrent state (0 for a model without recurrent layers); save it into buf;
 * load it back as the state after the first n_pos positions, which keeps the
 * cache's positions < n_pos (n_pos <= the sequence's length) and drops the rest. */
size_t halo_seq_state_size(const halo_context *ctx);
int halo_seq_state_save(const halo_context *ctx, int32_t seq, void *buf, halo_error *err);
int halo_seq_state_load(halo_context *ctx, int32_t seq, const void *buf, int32_t n_pos,
                        halo_error *err);
/* The same, with the state kept in the backend's own memory (GPU memory with -ngl:
 * saving and loading are device copies in the decode stream, with no host round
 * trip). halo_state_buf_new gives a buffer of halo_seq_state_size bytes, NULL when
 * that memory is short (the GPU keeps 1 GiB free) or the model has no recurrent state. */
void *halo_state_buf_new(halo_context *ctx);
void halo_state_buf_free(halo_context *ctx, void *buf);
int halo_seq_state_save_buf(halo_context *ctx, int32_t seq, void *buf, halo_error *err);
int halo_seq_state_load_buf(halo_context *ctx, int32_t seq, const void *buf, int32_t n_pos,
                            halo_error *err);

/* A sequence's KV cache in host memory (a prompt cache that outlives the context's
 * cells): the bytes of n_pos positions (every attention layer's K and V rows; 0 for a
 * model without attention, SIZE_MAX past what size_t holds); copy the first n_pos
 * positions of seq into buf; make seq hold the first n_pos of n_stored positions saved
 * in buf (n_pos <= n_stored; seq is cleared first and takes new pages: HALO_ERR_RANGE,
 * seq left empty, when too few are free). The recurrent state is not part of it: after
 * a load it is zero; load the checkpoint for position n_pos. */
size_t halo_seq_kv_size(const halo_context *ctx, int32_t n_pos);
int halo_seq_kv_save(const halo_context *ctx, int32_t seq, int32_t n_pos, void *buf,
                     halo_error *err);
int halo_seq_kv_load(halo_context *ctx, int32_t seq, const void *buf, int32_t n_stored,
                     int32_t n_pos, halo_error *err);

/* The context's limits as created (after defaults and clamping). */
uint32_t halo_context_n_seq_max(const halo_context *ctx);
uint32_t halo_context_n_batch(const halo_context *ctx);
uint32_t halo_context_n_ubatch(const halo_context *ctx);
int halo_context_n_threads(const halo_context *ctx);
const halo_model *halo_context_model(const halo_context *ctx);
/* Hidden size (embedding length) of a model. */
int32_t halo_model_n_embd(const halo_model *model);


/* ---- embeddings (runtime/embed.c) ------------------------------------------
 * In embeddings mode a batch's output rows are the model's last hidden states
 * after the output norm (what the output head would multiply), [n_embd] each,
 * instead of logits; the head is not run. Pooling over a sequence and
 * normalization are the caller's (halo_embd_pool, halo_embd_normalize), as
 * llama.cpp's server does them. The mode may change between batches, so one
 * context serves generation and embeddings. */

typedef enum halo_pooling {
    HALO_POOLING_NONE = 0, /* one vector per token */
    HALO_POOLING_MEAN = 1, /* the mean over the sequence's tokens */
    HALO_POOLING_CLS = 2,  /* the first token's */
    HALO_POOLING_LAST = 3, /* the last token's */
    HALO_POOLING_RANK = 4, /* rerankers' classification head: not supported */
} halo_pooling;

/* The file's <arch>.pooling_type; HALO_POOLING_NONE where absent (decoder LLMs). */
halo_pooling halo_model_pooling(const halo_model *model);
const char *halo_pooling_name(halo_pooling p); /* "none", "mean", "cls", "last", "rank" */
int halo_pooling_from_name(const char *name);  /* a halo_pooling, -1 if unknown */

/* Embeddings mode on or off for the next halo_decode calls (off when a context is made). */
void halo_set_embeddings(halo_context *ctx, bool on);
/* Hidden state [n_embd] of token i of the last batch (decoded in embeddings mode, and
 * which asked for an output row); NULL otherwise. Valid until the next halo_decode. */
const float *halo_get_embeddings(halo_context *ctx, int32_t i);

/* acc[n_embd] += row, counted: pooling as a sequence's rows arrive (chunks). */
typedef struct halo_embd_pool {
    halo_pooling pooling; /* MEAN, CLS or LAST */
    int32_t n_embd;
    int64_t n_rows;
    double *acc; /* [n_embd] */
} halo_embd_pool;
int halo_embd_pool_init(halo_embd_pool *p, halo_pooling pooling, int32_t n_embd, halo_error *err);
void halo_embd_pool_add(halo_embd_pool *p, const float *row);
/* The pooled vector into out[n_embd] (zeros before any row). */
void halo_embd_pool_result(const halo_embd_pool *p, float *out);
void halo_embd_pool_free(halo_embd_pool *p);

/* llama.cpp's embd_normalize: out = in / norm with norm, by mode: -1 none (1), 0 the
 * largest |x| / 32760 (int16 range), 2 Euclidean, p > 0 otherwise the p-norm (1: sum of
 * |x|). A zero norm gives zeros. out may be in. */
void halo_embd_normalize(const float *in, float *out, int64_t n, int mode);

/* ---- sampling (runtime/sampling.c) ---------------------------------------
 * Picks the next token from a row of logits, with llama.cpp's semantics and
 * order: logit bias, penalties (over the last repeat_last_n accepted tokens),
 * top-k, top-p, min-p, temperature, then a draw from the remaining
 * distribution. top-k / top-p / min-p work on the probabilities at temperature
 * 1, as llama.cpp's do. temp 0 is greedy (argmax after bias and penalties).
 * Over a large vocabulary nothing sorts the whole row: top-k keeps a heap of k,
 * top-p without top-k sorts only the tokens at its cut. The same seed and the same
 * logits give the same tokens. */

typedef struct halo_sampler halo_sampler;

typedef struct halo_logit_bias {
    int32_t token;
    float bias; /* added to the logit; -INFINITY bans the token */
} halo_logit_bias;

#define HALO_SEED_RANDOM 0xFFFFFFFFu /* seed: pick one from the clock (halo_sampler_seed tells) */

typedef struct halo_sampler_params {
    float temp;              /* [0, 100]; 0: greedy */
    int32_t top_k;           /* >= 0; 0: off */
    float top_p;             /* [0, 1]; 1: off */
    float min_p;             /* [0, 1]; 0: off */
    float presence_penalty;  /* [-2, 2]; 0: off (subtracted once from a token seen in the window) */
    float frequency_penalty; /* [-2, 2]; 0: off (subtracted per occurrence in the window) */
    float repeat_penalty;    /* (0, 10]; 1: off (positive logits divided, negative multiplied) */
    int32_t repeat_last_n;   /* the penalty window in tokens, [0, 1<<20]; 0: penalties off */
    uint32_t seed;           /* HALO_SEED_RANDOM: from the clock */
    const halo_logit_bias *logit_bias; /* [n_logit_bias], copied by halo_sampler_new */
    int32_t n_logit_bias;
} halo_sampler_params;

/* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05, penalties off,
 * repeat_last_n 64, random seed. */
void halo_sampler_default_params(halo_sampler_params *p);
/* Overwrite the sampling fields of p with a named preset (seed, bias and window
 * are kept): "greedy", "qwen-thinking" (T 1.0, top-p 0.95, top-k 20, presence 1.5),
 * "qwen-coding" (T 0.6, top-p 0.95, top-k 20), "qwen-instruct" (T 0.7, top-p 0.8,
 * top-k 20, presence 1.5). HALO_ERR_ARG for an unknown name (the message lists them). */
int halo_sampler_preset(const char *name, halo_sampler_params *p, halo_error *err);
/* "greedy, qwen-thinking, qwen-coding, qwen-instruct" */
const char *halo_sampler_preset_names(void);
/* HALO_ERR_ARG (naming the field) for a value out of range or NaN. */
int halo_sampler_check_params(const halo_sampler_params *p, int32_t n_vocab, halo_error *err);

int halo_sampler_new(const halo_sampler_params *p, int32_t n_vocab, halo_sampler **out,
                     halo_error *err);
void halo_sampler_free(halo_sampler *s);
/* The next token for logits[n_vocab] (not modified). Does not accept it. */
int32_t halo_sampler_sample(halo_sampler *s, const float *logits);
/* Record a token in the penalty window (prompt tokens too, as llama.cpp does).
 * Ids outside the vocabulary are ignored. */
void halo_sampler_accept(halo_sampler *s, int32_t token);
/* Empty the penalty window and restart the random sequence from the seed. */
void halo_sampler_reset(halo_sampler *s);
/* The seed in use (the drawn one when the params asked for HALO_SEED_RANDOM). */
uint32_t halo_sampler_seed(const halo_sampler *s);

/* Constrained decoding (runtime/grammar.c): with a grammar attached, the sampler only
 * picks tokens whose bytes continue a text the grammar accepts, and an end-of-generation
 * token only where the text so far is a whole sentence of it. As llama.cpp, the first
 * pick is drawn from the unmasked row and checked alone; only when it is rejected is it
 * drawn again (same random number) from the row with the disallowed tokens at -inf:
 * with top-k (or greedy) the best allowed candidates are found by checking them, without
 * it the whole vocabulary is masked. Where no token is allowed at all (a text the
 * vocabulary cannot continue) it returns an end-of-generation token. The matcher is not
 * owned: it must outlive the sampler or be detached (NULL) first. From then on
 * halo_sampler_accept also advances the matcher, so attach it after the prompt's tokens
 * have been accepted; halo_sampler_reset leaves it (halo_grammar_matcher_reset). */
typedef struct halo_grammar_matcher halo_grammar_matcher;
void halo_sampler_set_grammar(halo_sampler *s, halo_grammar_matcher *m);

/* ---- grammars (runtime/grammar.c, runtime/json_schema.c) ----------------------
 * llama.cpp's GBNF: rules `name ::= ...` with alternatives `|`, sequences, groups
 * `( )`, repetitions `* + ? {m} {m,} {m,n}`, string literals "..." with C escapes
 * (\n \t \xHH \uHHHH ...), character classes `[a-z]`, negated `[^"]`, `.` for any
 * character, `#` comments. Rules may span lines; a rule ends where the next
 * `name ::=` begins. Matching works on Unicode code points of UTF-8 text, as a
 * nondeterministic recursive descent: a set of stacks of positions in the rules.
 * Left-recursive rules are refused (`a ::= a "x" | "y"` loops a descent parser;
 * write `a ::= "y" "x"*`).
 *
 * A grammar is compiled once and read-only afterwards; a vocabulary (every token's
 * bytes in a prefix trie) is built once per model; a matcher is one generation's
 * state over both (it keeps pointers to them: they must outlive it). */

typedef struct halo_grammar halo_grammar;
typedef struct halo_grammar_vocab halo_grammar_vocab;

#define HALO_GRAMMAR_MAX_SOURCE ((size_t)1 << 20) /* bytes of GBNF text */

/* Compile src[0..len) with `start` as the start rule (NULL: "root"). Errors are
 * HALO_ERR_ARG with "grammar:LINE:COL: what" (syntax) or "grammar: what"
 * (undefined rule, left recursion, too large). */
int halo_grammar_compile(const char *src, size_t len, const char *start, halo_grammar **out,
                         halo_error *err);
void halo_grammar_free(halo_grammar *g);
int32_t halo_grammar_n_rules(const halo_grammar *g);

/* A vocabulary of n tokens: token i stands for bytes[i][0..len[i]) in generated text
 * (len 0: a token that never matches text, e.g. a control token); eog[i] marks the
 * end-of-generation tokens, allowed only where the grammar can end. */
int halo_grammar_vocab_new(const char *const *bytes, const size_t *len, const bool *eog, int32_t n,
                           halo_grammar_vocab **out, halo_error *err);
void halo_grammar_vocab_free(halo_grammar_vocab *v);
int32_t halo_grammar_vocab_n_tokens(const halo_grammar_vocab *v);
size_t halo_grammar_vocab_n_nodes(const halo_grammar_vocab *v); /* trie nodes */

int halo_grammar_matcher_new(const halo_grammar *g, const halo_grammar_vocab *v,
                             halo_grammar_matcher **out, halo_error *err);
void halo_grammar_matcher_free(halo_grammar_matcher *m);
int32_t halo_grammar_matcher_vocab_size(const halo_grammar_matcher *m);
/* An end-of-generation token of the vocabulary, -1 if none. */
int32_t halo_grammar_matcher_eog(const halo_grammar_matcher *m);
/* Back to the start of the grammar. */
void halo_grammar_matcher_reset(halo_grammar_matcher *m);
/* Whether the token may come next (EOG: whether the text so far is complete). */
bool halo_grammar_matcher_allows(halo_grammar_matcher *m, int32_t token);
/* allowed[0..n_tokens) = 1 for every token that may come next, 0 otherwise; walks
 * the trie, so a rejected prefix rejects every token under it at once. Returns how
 * many are allowed. */
int32_t halo_grammar_matcher_mask(halo_grammar_matcher *m, uint8_t *allowed);
/* Advance over a token (false, state unchanged, if the grammar rejects it; an
 * accepted EOG ends the text: nothing but EOG is allowed after it). */
bool halo_grammar_matcher_accept(halo_grammar_matcher *m, int32_t token);
/* Advance over text bytes (they may end inside a UTF-8 character); false, state
 * unchanged, if rejected. */
bool halo_grammar_matcher_accept_bytes(halo_grammar_matcher *m, const char *s, size_t n);
/* The text so far is a whole sentence of the grammar. */
bool halo_grammar_matcher_complete(const halo_grammar_matcher *m);
/* Nothing can follow any more (no stack left): only a rejected advance leads here. */
bool halo_grammar_matcher_dead(const halo_grammar_matcher *m);

/* JSON schema -> GBNF (runtime/json_schema.c). Objects (properties, required,
 * additionalProperties), arrays (items, prefixItems, minItems, maxItems), strings
 * (minLength, maxLength; format date, time, date-time, uuid), number, integer (minimum,
 * maximum, exclusiveMinimum, exclusiveMaximum), boolean, null, enum, const, anyOf/oneOf,
 * type lists, $ref into #/$defs or #/definitions (recursion allowed); annotations
 * (title, description, default, examples, $schema, $id, $comment) are ignored. Declared
 * properties come in their order, optional ones may be left out; an object with
 * properties generates no others unless additionalProperties says so. Anything else
 * (pattern, bounds on non-integer numbers, other formats, ...) is refused with HALO_ERR_UNSUPPORTED listing the
 * keywords and where they are. *out: malloc'd GBNF with start rule "root". */
struct cJSON;
int halo_json_schema_to_gbnf(const struct cJSON *schema, char **out, halo_error *err);
/* GBNF for any JSON object (response_format json_object). */
const char *halo_json_object_gbnf(void);
/* GBNF for a tool call in the Hermes / Qwen form
 * `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>` (with `parallel`,
 * one or more separated by newlines), with arguments following each tool's
 * `parameters` schema. tools: OpenAI's array ({"type":"function","function":{...}}
 * or bare function objects); only: the one function allowed (NULL: any of them;
 * HALO_ERR_ARG if no tool has that name). */
int halo_tool_call_gbnf(const struct cJSON *tools, const char *only, bool parallel, char **out,
                        halo_error *err);

#ifdef __cplusplus
}
#endif
#endif /* HALO_H */
