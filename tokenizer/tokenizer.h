/*
 * tokenizer — text to token ids and back, from the vocabulary a GGUF file carries.
 *
 * Two model families, named by `tokenizer.ggml.model`:
 *   - "gpt2": byte-level BPE. The text is first cut into words by the pre-tokenizer
 *     that `tokenizer.ggml.pre` names (a list of regexes run through PCRE2 in
 *     Unicode mode), each word's bytes are mapped to GPT-2's printable alphabet and
 *     merged pair by pair in the order of `tokenizer.ggml.merges`.
 *   - "llama": SentencePiece BPE. Spaces become U+2581, a leading one is added
 *     (add_space_prefix), symbols are merged by token score, and characters that
 *     are not in the vocabulary fall back to byte tokens <0xXX>.
 *
 * Special tokens (control, user-defined, unknown) are cut out of the text before
 * either runs, longest first: user-defined tokens always, control and unknown ones
 * only with HALO_TOK_PARSE_SPECIAL — the same rule the llama.cpp tools apply, so the
 * same prompt gives the same ids.
 *
 * Text that is not valid UTF-8 is tokenized too: invalid bytes become byte tokens,
 * so decode(encode(x)) == x holds for any bytes a byte-level vocabulary can spell.
 *
 * Encoding and decoding take a const tokenizer and keep their scratch space per
 * call: one tokenizer may serve many threads at once.
 */
#ifndef HALO_TOKENIZER_H
#define HALO_TOKENIZER_H

#include "format/gguf.h"
#include "halo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct halo_tokenizer halo_tokenizer;

typedef enum halo_tok_kind {
    HALO_TOK_KIND_BPE = 0, /* tokenizer.ggml.model = gpt2 */
    HALO_TOK_KIND_SPM = 1, /* tokenizer.ggml.model = llama */
} halo_tok_kind;

/* tokenizer.ggml.token_type values */
typedef enum halo_tok_type {
    HALO_TOK_TYPE_UNDEFINED = 0,
    HALO_TOK_TYPE_NORMAL = 1,
    HALO_TOK_TYPE_UNKNOWN = 2,
    HALO_TOK_TYPE_CONTROL = 3,
    HALO_TOK_TYPE_USER_DEFINED = 4,
    HALO_TOK_TYPE_UNUSED = 5,
    HALO_TOK_TYPE_BYTE = 6,
} halo_tok_type;

typedef struct halo_tokenizer_options {
    /* Use this pre-tokenizer instead of the file's tokenizer.ggml.pre (NULL: the
     * file's). Lets tests and odd files try another splitting on the same vocab. */
    const char *pre_override;
} halo_tokenizer_options;

/* Build the tokenizer from an opened GGUF. Everything needed is copied: the file
 * may be closed afterwards. Fails with HALO_ERR_UNSUPPORTED for a tokenizer model
 * or pre-tokenizer halo does not know (the message lists the known ones), and
 * HALO_ERR_FORMAT for inconsistent metadata. */
int halo_tokenizer_load(const halo_gguf *g, halo_tokenizer **out, halo_error *err);
int halo_tokenizer_load_ex(const halo_gguf *g, const halo_tokenizer_options *opts,
                           halo_tokenizer **out, halo_error *err);
void halo_tokenizer_free(halo_tokenizer *t);

/* The pre-tokenizer names halo accepts, NULL-terminated (aliases included). */
const char *const *halo_tok_pre_names(void);

/* ---- vocabulary ---------------------------------------------------------- */

halo_tok_kind halo_tok_kind_of(const halo_tokenizer *t);
const char *halo_tok_model_name(const halo_tokenizer *t); /* "gpt2", "llama" */
const char *halo_tok_pre_name(const halo_tokenizer *t);   /* "qwen2", ...; "" for SPM */
int32_t halo_tok_n_vocab(const halo_tokenizer *t);

/* Special ids, -1 where the model has none. */
int32_t halo_tok_bos(const halo_tokenizer *t);
int32_t halo_tok_eos(const halo_tokenizer *t);
int32_t halo_tok_eot(const halo_tokenizer *t);
int32_t halo_tok_unk(const halo_tokenizer *t);
int32_t halo_tok_pad(const halo_tokenizer *t);
bool halo_tok_add_bos(const halo_tokenizer *t); /* BOS goes in front (HALO_TOK_ADD_SPECIAL) */
bool halo_tok_add_eos(const halo_tokenizer *t);
/* End of generation: EOS, EOT, EOM and the control tokens models end turns with
 * (<|im_end|>, <|eot_id|>, <end_of_turn>, <|endoftext|>, ...). */
bool halo_tok_is_eog(const halo_tokenizer *t, int32_t id);
/* halo_tok_type of a token; HALO_TOK_TYPE_UNDEFINED if id is out of range. */
int halo_tok_type_of(const halo_tokenizer *t, int32_t id);

/* The token's text as stored in the vocabulary (byte-level or U+2581-escaped),
 * not NUL-terminated; NULL if id is out of range. */
const char *halo_tok_text(const halo_tokenizer *t, int32_t id, size_t *len);
/* The bytes the token stands for in decoded text. Control and unknown tokens
 * give their text when `special`, nothing otherwise; unused tokens give nothing.
 * Not NUL-terminated; NULL if id is out of range. */
const char *halo_tok_piece(const halo_tokenizer *t, int32_t id, bool special, size_t *len);
/* The id whose vocabulary text is exactly text[0..len), -1 if none. */
int32_t halo_tok_find(const halo_tokenizer *t, const char *text, size_t len);

/* The vocabulary for grammars (tokenizer/grammar_vocab.c): every token's decoded
 * bytes, end-of-generation tokens marked. Control tokens match nothing, except with
 * `tags` those that are output-format tags (<tool_call>, </think>: no '|' in them),
 * as text decoded with HALO_TOK_DECODE_SPECIAL shows them. */
int halo_tok_grammar_vocab(const halo_tokenizer *t, bool tags, halo_grammar_vocab **out,
                           halo_error *err);

/* ---- encoding ------------------------------------------------------------ */

enum {
    HALO_TOK_ADD_SPECIAL = 1u << 0,   /* BOS/EOS as the model asks (add_bos_token...) */
    HALO_TOK_PARSE_SPECIAL = 1u << 1, /* recognise control tokens written in the text */
};

/* Tokenize text[0..len) (any bytes). *ids is malloc'd (free it; NULL when
 * *n_ids is 0). */
int halo_tok_encode(const halo_tokenizer *t, const char *text, size_t len, unsigned flags,
                    int32_t **ids, size_t *n_ids, halo_error *err);

/* ---- decoding ------------------------------------------------------------ */

enum {
    HALO_TOK_DECODE_SPECIAL = 1u << 0, /* write control tokens' text (<|im_end|>) */
    /* SentencePiece: drop the one space that add_space_prefix put in front of the
     * text and after each special token, so that decode(encode(x)) == x. No effect
     * on BPE vocabularies. */
    HALO_TOK_DECODE_STRIP_PREFIX = 1u << 1,
};

/* The bytes of ids[0..n) joined. *out is malloc'd and NUL-terminated (the text
 * may itself contain NULs); *out_len excludes the terminator. */
int halo_tok_decode(const halo_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                    char **out, size_t *out_len, halo_error *err);

/* Streaming decoder for generation: fed one token at a time, it hands out only
 * whole UTF-8 characters and holds back an incomplete one until the next token
 * completes it. The pieces it hands out (push after push, then flush) join to
 * exactly halo_tok_decode of the same tokens with the same flags; bytes that can
 * never become a valid character are passed through as they come. */
typedef struct halo_detok halo_detok;

int halo_detok_new(const halo_tokenizer *t, unsigned flags, halo_detok **out, halo_error *err);
/* Feed one token. *out and *len: the bytes ready now (possibly none), valid until the
 * next call on d. Fails (HALO_ERR_ARG) for an id out of range. */
int halo_detok_push(halo_detok *d, int32_t id, const char **out, size_t *len, halo_error *err);
/* End of stream: whatever was held back. */
void halo_detok_flush(halo_detok *d, const char **out, size_t *len);
/* Forget the state; start a new text. */
void halo_detok_reset(halo_detok *d);
void halo_detok_free(halo_detok *d);

/* ---- output parsing (tokenizer/chat_parse.c) ------------------------------
 * Generated text is cut, as it streams, into reasoning (inside <think>...</think>),
 * content (the answer) and tool calls, in the two styles Qwen models write:
 *   Hermes / Qwen3:  <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
 *   Qwen3-Coder:     <tool_call>\n<function=f>\n<parameter=p>\nvalue\n</parameter>\n
 *                    </function>\n</tool_call>
 * Each call becomes an OpenAI `tool_calls` entry whose function.arguments is a JSON
 * string. Coder-style parameter values are JSON when the tool's schema gives the
 * parameter a type other than "string" (or gives no schema) and the value parses,
 * strings otherwise.
 *
 * Text may come in pieces of any size, down to one byte: a possible tag prefix at the
 * end of a piece is held back until the next piece decides it, so a tag never leaks
 * out as content, and any way of cutting the same text gives the same events (up to
 * how runs of one kind are split). Whitespace next to a recognised tag is dropped
 * (the "\n\n" after </think>, the newline before <tool_call>); all other text is
 * passed through unchanged. A malformed call (bad JSON, no name, an unclosed tag at
 * the end) gives a WARNING event and then its raw text, whitespace included, as
 * CONTENT: nothing is dropped silently. */

typedef enum halo_chat_think {
    HALO_CHAT_THINK_NONE = 0, /* no reasoning: <think> is plain text (thinking disabled) */
    HALO_CHAT_THINK_AUTO = 1, /* the output may open with <think> (after whitespace) */
    HALO_CHAT_THINK_OPEN = 2, /* the prompt opened <think>: the output starts inside it */
} halo_chat_think;

typedef enum halo_chat_event_kind {
    HALO_CHAT_EVENT_REASONING = 0,
    HALO_CHAT_EVENT_CONTENT = 1,
    HALO_CHAT_EVENT_TOOL_CALL = 2,
    HALO_CHAT_EVENT_WARNING = 3,
} halo_chat_event_kind;

typedef struct halo_chat_event {
    halo_chat_event_kind kind;
    /* REASONING, CONTENT: the bytes (not NUL-terminated, may be any bytes).
     * TOOL_CALL: the OpenAI object {"id","type":"function","function":{"name",
     * "arguments"}} as JSON. WARNING: the message. Valid during the callback only. */
    const char *text;
    size_t len;
    /* TOOL_CALL only (NUL-terminated): its index among this output's calls, its id
     * ("call_" + 24 letters and digits), the function name, the arguments (a JSON
     * object as text). */
    int index;
    const char *id, *name, *arguments;
} halo_chat_event;

typedef void (*halo_chat_event_fn)(void *user, const halo_chat_event *ev);

typedef struct halo_chat_parse_options {
    halo_chat_think think;
    bool tool_calls; /* recognise <tool_call> blocks in the content */
    /* The request's tools as a JSON array (OpenAI format, {"type":"function",
     * "function":{"name","parameters"}} or the bare function objects); NULL: none.
     * Only used to type Coder-style parameter values. */
    const char *tools_json;
    /* Seed of the call ids; 0: from the clock. The same seed gives the same ids. */
    uint64_t id_seed;
} halo_chat_parse_options;

typedef struct halo_chat_parser halo_chat_parser;

/* fn may be NULL (then read the results at the end). Fails with HALO_ERR_ARG for
 * tools_json that is not a JSON array. */
int halo_chat_parser_new(const halo_chat_parse_options *opts, halo_chat_event_fn fn, void *user,
                         halo_chat_parser **out, halo_error *err);
/* Feed the next piece of generated text; events for what is decided come through fn
 * before it returns. Fails only when memory runs out. */
int halo_chat_parser_feed(halo_chat_parser *p, const char *text, size_t len, halo_error *err);
/* End of the output: decide what was held back (an unclosed <think> is reasoning; an
 * unclosed <tool_call> is reported and kept as content). Feeding after it is an error. */
int halo_chat_parser_finish(halo_chat_parser *p, halo_error *err);
/* True while the text fed so far ends inside the reasoning block (for budgets). */
bool halo_chat_parser_in_reasoning(const halo_chat_parser *p);
/* Everything emitted so far, joined (NUL-terminated; valid until the next feed). */
const char *halo_chat_parser_content(const halo_chat_parser *p, size_t *len);
const char *halo_chat_parser_reasoning(const halo_chat_parser *p, size_t *len);
int halo_chat_parser_n_tool_calls(const halo_chat_parser *p);
int halo_chat_parser_n_warnings(const halo_chat_parser *p);
/* The tool calls so far as a JSON array of OpenAI objects; malloc'd, NULL if out of
 * memory. */
char *halo_chat_parser_tool_calls_json(const halo_chat_parser *p);
/* Start a new output with the same options (ids keep counting). */
void halo_chat_parser_reset(halo_chat_parser *p);
void halo_chat_parser_free(halo_chat_parser *p);

/* ---- chat templates ---------------------------------------------------------
 *
 * A Jinja2-subset engine for the chat templates models carry in
 * `tokenizer.chat_template`, rendering them as the Hugging Face tokenizers do
 * (jinja2 sandbox, trim_blocks and lstrip_blocks on, loop controls, a tojson that
 * keeps non-ASCII text, raise_exception(msg) and strftime_now(fmt) as globals).
 *
 * Supported: {{ }}, {% %}, {# #}, whitespace control (-, +), raw; if/elif/else,
 * for (else, `if` filter, recursive, tuple unpacking, loop.index/index0/revindex/
 * revindex0/first/last/length/previtem/nextitem/depth/cycle), break/continue, set
 * (names, tuples, namespace attributes, block set), macro/call/caller, filter
 * and with blocks; literals, lists, dicts, tuples, arithmetic, ~, comparisons, in,
 * and/or/not, inline if, slicing with negative indices and steps, string, dict
 * and list methods, '%' and str.format() formatting, the common filters and tests,
 * namespace(), range(), dict(). Filters jinja2 implements as generators (map,
 * select, unique, ...) behave as there: always true, no length until |list.
 * Anything else is an error "template:LINE:COL: what" (HALO_ERR_UNSUPPORTED or
 * HALO_ERR_FORMAT), never a crash. Values are immutable except namespaces.
 *
 * Compile once, render many times: a compiled template is read-only, so renders
 * may run on several threads at once. */

struct cJSON;
typedef struct halo_template halo_template;

#define HALO_TEMPLATE_DEFAULT_MAX_OUTPUT ((size_t)16 << 20) /* bytes of text */
#define HALO_TEMPLATE_DEFAULT_MAX_MEMORY ((size_t)256 << 20) /* bytes of values */
#define HALO_TEMPLATE_DEFAULT_MAX_STEPS ((uint64_t)20000000)  /* evaluation steps */
#define HALO_TEMPLATE_DEFAULT_MAX_DEPTH 64                    /* nested macro calls */

/* Limits of one render, and the clock; zero fields take the defaults above. A
 * limit reached ends the render with HALO_ERR_RANGE and a message such as
 * "template: output exceeds 16777216 bytes". */
typedef struct halo_template_options {
    size_t max_output;
    size_t max_memory;
    uint64_t max_steps;
    int max_depth;
    int64_t now; /* strftime_now's time (seconds since the epoch, local time zone); 0: now */
} halo_template_options;

/* Parse template text src[0..len). Syntax errors: HALO_ERR_UNSUPPORTED or
 * HALO_ERR_FORMAT with "template:LINE:COL: ..." in err. */
int halo_template_compile(const char *src, size_t len, halo_template **out, halo_error *err);

/* Render with `context`, a JSON object whose members are the template's variables:
 * messages, tools, add_generation_prompt, bos_token, eos_token, enable_thinking and
 * any others (NULL: none). JSON numbers without a fractional part become integers.
 * *out is malloc'd and NUL-terminated (free it); *out_len (may be NULL) excludes the
 * NUL. A raise_exception(msg) in the template fails with HALO_ERR_ARG and
 * "template:LINE:COL: msg". opts may be NULL. */
int halo_template_render(const halo_template *t, const struct cJSON *context,
                         const halo_template_options *opts, char **out, size_t *out_len,
                         halo_error *err);

void halo_template_free(halo_template *t);

#endif /* HALO_TOKENIZER_H */
