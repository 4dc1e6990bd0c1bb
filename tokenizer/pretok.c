/*
 * BPE pre-tokenizers: the regexes that cut text into words before the merges run,
 * one list per `tokenizer.ggml.pre` name. The lists are the models' own (their
 * Hugging Face tokenizer.json Split patterns), in the forms the llama.cpp tools use
 * so that halo produces the same ids for the same GGUF:
 *   - contractions spelled '[sS] rather than (?i:'s): with Unicode case folding
 *     (?i) would also match U+017F for s and U+212A for k;
 *   - \s means Unicode White_Space exactly (U+0085 included, which PCRE2's \s
 *     leaves out), by expanding it to an explicit class before compiling.
 *
 * The regexes of one list run one after the other: each cuts every piece that
 * the previous one made, and the text between two matches stays a piece of its
 * own (the "Isolated" split of tokenizer.json). Every regex sees one piece as its
 * whole subject, so lookaheads and $ stop at the piece's end.
 *
 * Invalid UTF-8 never reaches PCRE2: such bytes are cut out first and BPE'd as
 * bytes, which keeps byte-level vocabularies lossless on any input.
 */
#include "tokenizer/tok_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define GPT2_WORDS "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define CJK_DEEPSEEK "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"
/* deepseek-llm's letters: the cased letters (Lu, Ll, Lt) of its Unicode version */
#define DEEPSEEK_LETTERS                                                                            \
    "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"    \
    "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}"              \
    "\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}"     \
    "\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}"     \
    "\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"   \
    "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}"    \
    "\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"    \
    "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}"   \
    "\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}"     \
    "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}"             \
    "\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"             \
    "\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"    \
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}"   \
    "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"                 \
    "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"             \
    "\\x{1E900}-\\x{1E943}"
/* Upper-ish then lower-ish letter runs (gpt-4o, tekken). The tools that the GGUF
 * files come with lack \p{Lu}; they spell "an upper-case letter" as "a letter that
 * is not a-z" (and lower-case likewise), so a non-ASCII letter counts as both and
 * combining marks as neither. halo follows them: same file, same ids. */
#define UPPER_RUN "((?=[\\p{L}])([^a-z]))"
#define LOWER_RUN "((?=[\\p{L}])([^A-Z]))"

typedef struct pre_def {
    const char *names[12]; /* the tokenizer.ggml.pre values that select it */
    const char *re[TOK_MAX_REGEX];
    bool ignore_merges;
    bool add_bos;
} pre_def;

static const pre_def pre_defs[] = {
    {{"qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan", "megrez"},
     {CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                   "\\s+(?!\\S)|\\s+"},
     false, false},
    /* qwen35: combining marks join letter runs and stay out of punctuation runs */
    {{"qwen35"},
     {CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
                   "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     false, false},
    {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
     {CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                   "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     true, true},
    {{"dbrx", "smaug-bpe", "chatglm-bpe"},
     {CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                   "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     false, false},
    {{"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es", "jina-v2-de",
      "roberta-bpe", "mpt", "olmo", "jais"},
     {GPT2_WORDS},
     false, false},
    {{"deepseek-llm"},
     {"[\\r\\n]", "\\s?[" DEEPSEEK_LETTERS "]+",
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+", "\\s+$",
      CJK_DEEPSEEK, "\\p{N}+"},
     false, false},
    {{"deepseek-coder"},
     {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", CJK_DEEPSEEK, "\\p{N}"},
     false, false},
    {{"deepseek-v3"},
     {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
      " ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     false, false},
    {{"gpt-4o", "llama4"},
     {"[^\\r\\n\\p{L}\\p{N}]?" UPPER_RUN "*" LOWER_RUN "+" CONTRACTIONS "?|[^\\r\\n\\p{L}\\p{N}]?" UPPER_RUN
      "+" LOWER_RUN "*" CONTRACTIONS "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|"
      "\\s+(?!\\S)|\\s+"},
     false, false},
    {{"tekken"},
     {"[^\\r\\n\\p{L}\\p{N}]?" UPPER_RUN "*" LOWER_RUN "+|[^\\r\\n\\p{L}\\p{N}]?" UPPER_RUN "+" LOWER_RUN
      "*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     true, true},
    {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"},
     {"\\p{N}", GPT2_WORDS},
     false, false},
    {{"falcon"},
     {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_WORDS, "[0-9][0-9][0-9]"},
     false, false},
    {{"poro-chat", "bloom", "gpt3-finnish"},
     {" ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{0964}\\x{06D4}\\x{060C})]+"},
     false, false},
    {{"viking"},
     {" ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{0964}\\x{06D4}\\x{060C})]+", "\\p{N}"},
     false, false},
    /* what the tools use when the file names no pre-tokenizer */
    {{"default"},
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_WORDS, "\\p{N}+", "[0-9][0-9][0-9]"},
     false, false},
};

static const char *pre_names[128];
static pthread_once_t pre_names_once = PTHREAD_ONCE_INIT;

static void pre_names_init(void) {
    size_t k = 0;
    for (size_t d = 0; d < sizeof pre_defs / sizeof pre_defs[0]; d++)
        for (size_t i = 0; i < 12 && pre_defs[d].names[i] && k + 1 < 128; i++)
            pre_names[k++] = pre_defs[d].names[i];
    pre_names[k] = NULL;
}

const char *const *halo_tok_pre_names(void) {
    pthread_once(&pre_names_once, pre_names_init);
    return pre_names;
}

/* Unicode White_Space, as a class body */
#define WS_CLASS "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* Rewrite \s and \S into explicit classes. Returns malloc'd text or NULL. */
static char *expand_ws(const char *re) {
    size_t n = strlen(re), cap = n * 4 + sizeof WS_CLASS * 8 + 16;
    /* worst case: every \s expands; count them to size exactly */
    size_t count = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (re[i] == '\\') {
            if (re[i + 1] == 's' || re[i + 1] == 'S') count++;
            i++;
        }
    cap = n + count * (sizeof WS_CLASS + 4) + 1;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t o = 0;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = re[i];
        if (c == '\\' && i + 1 < n) {
            char d = re[i + 1];
            if (d == 's' || d == 'S') {
                if (!in_class) out[o++] = '[';
                if (d == 'S') out[o++] = '^'; /* \S only appears outside classes */
                memcpy(out + o, WS_CLASS, sizeof WS_CLASS - 1);
                o += sizeof WS_CLASS - 1;
                if (!in_class) out[o++] = ']';
            } else {
                out[o++] = c;
                out[o++] = d;
            }
            i++;
            continue;
        }
        if (c == '[' && !in_class) in_class = true;
        else if (c == ']' && in_class) in_class = false;
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

int tok_pretok_setup(halo_tokenizer *t, const char *name, bool *default_add_bos, halo_error *err) {
    const pre_def *def = NULL;
    for (size_t d = 0; d < sizeof pre_defs / sizeof pre_defs[0] && !def; d++)
        for (size_t i = 0; i < 12 && pre_defs[d].names[i]; i++)
            if (!strcmp(pre_defs[d].names[i], name)) {
                def = &pre_defs[d];
                break;
            }
    if (!def) {
        char list[400];
        size_t o = 0;
        for (const char *const *p = halo_tok_pre_names(); *p && o + 40 < sizeof list; p++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "", *p);
        return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                              "pre-tokenizer '%.64s' (tokenizer.ggml.pre) is not supported; halo knows: %s",
                              name, list);
    }
    for (int i = 0; i < TOK_MAX_REGEX && def->re[i]; i++) {
        char *pat = expand_ws(def->re[i]);
        if (!pat) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ec, &eo, NULL);
        free(pat);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return halo_error_set(err, HALO_ERR_UNSUPPORTED,
                                  "pre-tokenizer '%s': regex %d does not compile at %zu: %s", name, i,
                                  (size_t)eo, (const char *)msg);
        }
        /* JIT where the library has it; the interpreter is the fallback */
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        t->re[t->n_re++] = re;
    }
    t->ignore_merges = def->ignore_merges;
    *default_add_bos = def->add_bos;
    return 0;
}

void tok_pretok_free(halo_tokenizer *t) {
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    t->n_re = 0;
}

static int span_push(tok_spanvec *v, size_t off, size_t len, bool raw) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        if (cap > SIZE_MAX / sizeof(tok_span)) return HALO_ERR_NOMEM;
        tok_span *p = realloc(v->v, cap * sizeof *p);
        if (!p) return HALO_ERR_NOMEM;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = (tok_span){off, len, raw};
    return 0;
}

typedef struct match_env {
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
} match_env;

/* Cut text[s.off .. s.off+s.len) with one regex, appending to out. */
static int split_span(const pcre2_code *re, pcre2_match_data *md, match_env *env, const char *text,
                      tok_span s, tok_spanvec *out, halo_error *err) {
    const PCRE2_SPTR subj = (PCRE2_SPTR)(text + s.off);
    size_t pos = 0, start = 0;
    while (start < s.len) {
        int rc = pcre2_match(re, subj, s.len, start, PCRE2_NO_UTF_CHECK, md, env->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* deep backtracking: the interpreter keeps its frames on the heap */
            rc = pcre2_match(re, subj, s.len, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, env->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return halo_error_set(err, HALO_ERR_ARG, "pre-tokenizer failed on a %zu-byte piece: %s", s.len,
                                  (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* an empty match cuts nothing: step over one character */
            size_t cl = tok_utf8_valid_len(subj + ms, s.len - ms);
            start = ms + (cl ? cl : 1);
            continue;
        }
        if (ms > pos && span_push(out, s.off + pos, ms - pos, false)) goto nomem;
        if (span_push(out, s.off + ms, me - ms, false)) goto nomem;
        pos = start = me;
    }
    if (pos < s.len && span_push(out, s.off + pos, s.len - pos, false)) goto nomem;
    return 0;
nomem:
    return halo_error_set(err, HALO_ERR_NOMEM, "out of memory in the pre-tokenizer");
}

int tok_pretok_split(const halo_tokenizer *t, const char *text, size_t len, tok_spanvec *out,
                     halo_error *err) {
    out->n = 0;
    /* valid UTF-8 runs, and runs of bytes that are not */
    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        bool raw = tok_utf8_valid_len(u + i, len - i) == 0;
        while (j < len) {
            size_t cl = tok_utf8_valid_len(u + j, len - j);
            if ((cl == 0) != raw) break;
            j += cl ? cl : 1;
        }
        if (span_push(out, i, j - i, raw))
            return halo_error_set(err, HALO_ERR_NOMEM, "out of memory in the pre-tokenizer");
        i = j;
    }
    if (t->n_re == 0) return 0;

    int rc = 0;
    match_env env = {0};
    tok_spanvec tmp = {0};
    env.mctx = pcre2_match_context_create(NULL);
    env.jstack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
    if (!env.mctx || !env.jstack) {
        rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory in the pre-tokenizer");
        goto done;
    }
    pcre2_jit_stack_assign(env.mctx, NULL, env.jstack);
    for (int r = 0; r < t->n_re && !rc; r++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re[r], NULL);
        if (!md) {
            rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory in the pre-tokenizer");
            break;
        }
        tmp.n = 0;
        for (size_t k = 0; k < out->n && !rc; k++) {
            tok_span s = out->v[k];
            if (s.raw) {
                if (span_push(&tmp, s.off, s.len, true))
                    rc = halo_error_set(err, HALO_ERR_NOMEM, "out of memory in the pre-tokenizer");
            } else {
                rc = split_span(t->re[r], md, &env, text, s, &tmp, err);
            }
        }
        pcre2_match_data_free(md);
        tok_spanvec sw = *out;
        *out = tmp;
        tmp = sw;
    }
done:
    free(tmp.v);
    pcre2_jit_stack_free(env.jstack);
    pcre2_match_context_free(env.mctx);
    return rc;
}
