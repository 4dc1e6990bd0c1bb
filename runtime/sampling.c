/*
 * Sampling: the next token from a row of logits (include/halo.h, "sampling").
 *
 * The chain is llama.cpp's: logit bias, penalties, top-k, top-p, min-p,
 * temperature, draw. Two ideas keep it cheap over 150 k-token vocabularies:
 *   - the penalty window is a ring of the last N accepted tokens plus a count per
 *     vocabulary entry kept up to date as tokens enter and leave it, so applying
 *     the penalties costs O(N), not O(vocabulary);
 *   - nothing sorts the whole row. top-k keeps a min-heap of k candidates (one
 *     pass); top-p without top-k histograms the probability mass by logit to
 *     find where the mass reaches p, and sorts only the tokens at that cut;
 *     min-p alone and the plain draw are single passes over the unsorted row.
 * Candidates are ordered by logit, then by id, so equal logits never make the
 * result depend on anything but the seed.
 *
 * A grammar (runtime/grammar.c) is applied as llama.cpp does: the chain runs on the
 * unmasked row and only its pick is checked; when the grammar rejects it, the chain
 * runs again on the row with the disallowed tokens at -inf, with the same random
 * number (so the pick is the one the masked row would have given from the start).
 * With top-k (or greedy) only the k best allowed tokens matter, and they are found
 * by checking candidates best first; without, the whole vocabulary is masked by a
 * walk of its trie. Most picks of a model that follows the format pass the first
 * check, so this is paid only where the model would have gone astray.
 */
#define _GNU_SOURCE
#include "halo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct cand {
    float logit;
    int32_t id;
} cand;

struct halo_sampler {
    halo_sampler_params p; /* p.logit_bias points at bias below */
    halo_logit_bias *bias;
    int32_t n_vocab;
    uint32_t seed;
    uint64_t rng[4];

    /* penalty window: ring of the last `cap` accepted tokens, counts per id */
    int32_t *ring;
    int32_t cap, len, head; /* head: the oldest entry */
    int32_t *counts;        /* [n_vocab] occurrences in the window */

    float *work; /* [n_vocab] logits after bias and penalties */
    cand *cands; /* [n_vocab] candidates, best first when sorted */

    halo_grammar_matcher *grammar; /* not owned; NULL: none */
    uint8_t *allowed;              /* [grammar vocabulary] its mask */
    int32_t n_allowed;             /* the mask's size */
    int32_t *keep;                 /* [n_keep] the best allowed tokens (top-k under a grammar) */
    int32_t n_keep;
};

/* ---- random numbers: xoshiro256** seeded through splitmix64 ------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* uniform in [0, 1) */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

static void rng_seed(uint64_t s[4], uint32_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&x);
}

/* ---- parameters ------------------------------------------------------------ */

void halo_sampler_default_params(halo_sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temp = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = HALO_SEED_RANDOM;
}

typedef struct preset {
    const char *name;
    float temp, top_p, min_p, presence;
    int32_t top_k;
} preset;

/* The vendors' recommended settings (Qwen3 / Qwen3.5 model cards). min-p 0 and the
 * other penalties off, as the cards say. */
static const preset presets[] = {
    {"greedy", 0.0f, 1.0f, 0.0f, 0.0f, 0},
    {"qwen-thinking", 1.0f, 0.95f, 0.0f, 1.5f, 20},
    {"qwen-coding", 0.6f, 0.95f, 0.0f, 0.0f, 20},
    {"qwen-instruct", 0.7f, 0.8f, 0.0f, 1.5f, 20},
};

const char *halo_sampler_preset_names(void) {
    return "greedy, qwen-thinking, qwen-coding, qwen-instruct";
}

int halo_sampler_preset(const char *name, halo_sampler_params *p, halo_error *err) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const preset *q = &presets[i];
        if (strcmp(q->name, name)) continue;
        p->temp = q->temp;
        p->top_k = q->top_k;
        p->top_p = q->top_p;
        p->min_p = q->min_p;
        p->presence_penalty = q->presence;
        p->frequency_penalty = 0.0f;
        p->repeat_penalty = 1.0f;
        return 0;
    }
    return halo_error_set(err, HALO_ERR_ARG, "unknown sampling preset '%s' (known: %s)", name,
                          halo_sampler_preset_names());
}

static bool in_range(float v, float lo, float hi) { return v >= lo && v <= hi; } /* NaN: false */

int halo_sampler_check_params(const halo_sampler_params *p, int32_t n_vocab, halo_error *err) {
    if (n_vocab <= 0)
        return halo_error_set(err, HALO_ERR_ARG, "sampler: vocabulary size %d", (int)n_vocab);
    if (!in_range(p->temp, 0.0f, 100.0f))
        return halo_error_set(err, HALO_ERR_ARG, "temperature %g is out of range [0, 100]",
                              (double)p->temp);
    if (p->top_k < 0)
        return halo_error_set(err, HALO_ERR_ARG, "top-k %d is negative (0 turns it off)",
                              (int)p->top_k);
    if (!in_range(p->top_p, 0.0f, 1.0f))
        return halo_error_set(err, HALO_ERR_ARG, "top-p %g is out of range [0, 1]",
                              (double)p->top_p);
    if (!in_range(p->min_p, 0.0f, 1.0f))
        return halo_error_set(err, HALO_ERR_ARG, "min-p %g is out of range [0, 1]",
                              (double)p->min_p);
    if (!in_range(p->presence_penalty, -2.0f, 2.0f))
        return halo_error_set(err, HALO_ERR_ARG, "presence penalty %g is out of range [-2, 2]",
                              (double)p->presence_penalty);
    if (!in_range(p->frequency_penalty, -2.0f, 2.0f))
        return halo_error_set(err, HALO_ERR_ARG, "frequency penalty %g is out of range [-2, 2]",
                              (double)p->frequency_penalty);
    if (!in_range(p->repeat_penalty, 0.0f, 10.0f) || p->repeat_penalty == 0.0f)
        return halo_error_set(err, HALO_ERR_ARG,
                              "repeat penalty %g is out of range (0, 10] (1 turns it off)",
                              (double)p->repeat_penalty);
    if (p->repeat_last_n < 0 || p->repeat_last_n > (1 << 20))
        return halo_error_set(err, HALO_ERR_ARG, "repeat-last-n %d is out of range [0, %d]",
                              (int)p->repeat_last_n, 1 << 20);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return halo_error_set(err, HALO_ERR_ARG, "sampler: bad logit-bias list");
    for (int32_t i = 0; i < p->n_logit_bias; i++) {
        const halo_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return halo_error_set(err, HALO_ERR_ARG,
                                  "logit bias: token %d is outside the vocabulary (0..%d)",
                                  (int)b->token, (int)n_vocab - 1);
        if (isnan(b->bias) || b->bias == INFINITY)
            return halo_error_set(err, HALO_ERR_ARG,
                                  "logit bias of token %d: %g (use a finite value or -inf)",
                                  (int)b->token, (double)b->bias);
    }
    return 0;
}

/* ---- life cycle ------------------------------------------------------------ */

int halo_sampler_new(const halo_sampler_params *p, int32_t n_vocab, halo_sampler **out,
                     halo_error *err) {
    *out = NULL;
    int rc = halo_sampler_check_params(p, n_vocab, err);
    if (rc) return rc;
    halo_sampler *s = calloc(1, sizeof *s);
    if (!s) return halo_error_set(err, HALO_ERR_NOMEM, "out of memory (sampler)");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cap = p->repeat_last_n;
    s->work = malloc((size_t)n_vocab * sizeof *s->work);
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->ring = s->cap ? malloc((size_t)s->cap * sizeof *s->ring) : NULL;
    s->bias = p->n_logit_bias ? malloc((size_t)p->n_logit_bias * sizeof *s->bias) : NULL;
    if (!s->work || !s->cands || !s->counts || (s->cap && !s->ring) ||
        (p->n_logit_bias && !s->bias)) {
        halo_sampler_free(s);
        return halo_error_set(err, HALO_ERR_NOMEM, "out of memory (sampler)");
    }
    if (p->n_logit_bias) memcpy(s->bias, p->logit_bias, (size_t)p->n_logit_bias * sizeof *s->bias);
    s->p.logit_bias = s->bias;
    s->seed = p->seed;
    if (s->seed == HALO_SEED_RANDOM) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^
                     ((uint64_t)getpid() << 32);
        do s->seed = (uint32_t)splitmix64(&x);
        while (s->seed == HALO_SEED_RANDOM);
    }
    rng_seed(s->rng, s->seed);
    *out = s;
    return 0;
}

void halo_sampler_free(halo_sampler *s) {
    if (!s) return;
    free(s->work);
    free(s->cands);
    free(s->counts);
    free(s->ring);
    free(s->bias);
    free(s->allowed);
    free(s->keep);
    free(s);
}

void halo_sampler_set_grammar(halo_sampler *s, halo_grammar_matcher *m) {
    s->grammar = m;
}

uint32_t halo_sampler_seed(const halo_sampler *s) { return s->seed; }

void halo_sampler_reset(halo_sampler *s) {
    for (int32_t j = 0; j < s->len; j++) s->counts[s->ring[(s->head + j) % s->cap]] = 0;
    s->len = s->head = 0;
    rng_seed(s->rng, s->seed);
}

static void accept_window(halo_sampler *s, int32_t token) {
    if (token < 0 || token >= s->n_vocab || s->cap == 0) return;
    if (s->len == s->cap) {
        s->counts[s->ring[s->head]]--;
        s->ring[s->head] = token;
        s->head = (s->head + 1) % s->cap;
    } else {
        s->ring[(s->head + s->len) % s->cap] = token;
        s->len++;
    }
    s->counts[token]++;
}

static void accept_grammar(halo_sampler *s, int32_t token) {
    if (s->grammar) halo_grammar_matcher_accept(s->grammar, token);
}

void halo_sampler_accept(halo_sampler *s, int32_t token) {
    accept_grammar(s, token);
    accept_window(s, token);
}

/* ---- the chain ------------------------------------------------------------- */

/* a ranks before b: higher logit, then lower id */
static inline bool before(cand a, cand b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

static int cmp_cand(const void *x, const void *y) {
    cand a = *(const cand *)x, b = *(const cand *)y;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* Offer c to a min-heap of at most k candidates (the worst of the kept at out[0]). */
static inline void heap_offer(cand *out, int32_t *m, int32_t k, cand c) {
    if (*m < k) {
        int32_t j = (*m)++; /* sift up */
        while (j > 0) {
            int32_t parent = (j - 1) / 2;
            if (!before(out[parent], c)) break;
            out[j] = out[parent];
            j = parent;
        }
        out[j] = c;
    } else if (before(c, out[0])) {
        int32_t j = 0; /* sift down from the root */
        for (;;) {
            int32_t l = 2 * j + 1, r = l + 1, w = j;
            cand wc = c;
            if (l < k && before(wc, out[l])) w = l, wc = out[l];
            if (r < k && before(wc, out[r])) w = r;
            if (w == j) break;
            out[j] = out[w];
            j = w;
        }
        out[j] = c;
    }
}

/* The best k of logits[0..n) into out[0..k), best first: a min-heap of k, then a
 * sort of those k. Once the heap is full, a block of 16 with nothing above the
 * worst kept logit is skipped whole (a compare the compiler vectorizes); ids only
 * grow along the scan, so a tie with the worst kept never displaces it. */
static void select_top(const float *logits, int32_t n, int32_t k, cand *out) {
    int32_t m = 0, i = 0;
    while (i < n) {
        if (m == k && i + 16 <= n) {
            float thr = out[0].logit;
            int any = 0;
            for (int j = 0; j < 16; j++) any |= logits[i + j] > thr;
            if (!any) {
                i += 16;
                continue;
            }
            for (int j = 0; j < 16; j++, i++) heap_offer(out, &m, k, (cand){logits[i], i});
            continue;
        }
        heap_offer(out, &m, k, (cand){logits[i], i});
        i++;
    }
    qsort(out, (size_t)m, sizeof *out, cmp_cand);
}

static void apply_penalties(halo_sampler *s) {
    const halo_sampler_params *p = &s->p;
    if (s->len == 0 ||
        (p->repeat_penalty == 1.0f && p->frequency_penalty == 0.0f && p->presence_penalty == 0.0f))
        return;
    /* each distinct token once: its count is negated while done, restored after */
    for (int32_t j = 0; j < s->len; j++) {
        int32_t t = s->ring[(s->head + j) % s->cap];
        int32_t c = s->counts[t];
        if (c <= 0) continue;
        float l = s->work[t];
        l = l <= 0.0f ? l * p->repeat_penalty : l / p->repeat_penalty;
        l -= (float)c * p->frequency_penalty + p->presence_penalty;
        s->work[t] = l;
        s->counts[t] = -c;
    }
    for (int32_t j = 0; j < s->len; j++) {
        int32_t t = s->ring[(s->head + j) % s->cap];
        if (s->counts[t] < 0) s->counts[t] = -s->counts[t];
    }
}

/* The largest value of l[0..n) (no NaN). 16 independent lanes make the loop an
 * element-wise select that the compiler vectorizes; a plain running max is a
 * dependency chain one compare long per element. */
static float row_max(const float *l, int32_t n) {
    float lane[16];
    for (int j = 0; j < 16; j++) lane[j] = -INFINITY;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) lane[j] = l[i + j] > lane[j] ? l[i + j] : lane[j];
    float m = -INFINITY;
    for (; i < n; i++) m = l[i] > m ? l[i] : m;
    for (int j = 0; j < 16; j++) m = lane[j] > m ? lane[j] : m;
    return m;
}

/* the first index of the largest value: ties go to the lower id */
static int32_t argmax(const float *l, int32_t n) {
    float m = row_max(l, n);
    for (int32_t i = 0; i < n; i++)
        if (l[i] == m) return i;
    return 0;
}

/* Draw from softmax(c.logit / temp) over c[0..n), whose best logit is lmax. */
static int32_t draw(halo_sampler *s, const cand *c, int32_t n, float lmax) {
    float inv_t = 1.0f / s->p.temp;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)((c[i].logit - lmax) * inv_t));
    double u = rng_uniform(s->rng) * sum, acc = 0.0;
    for (int32_t i = 0; i < n; i++) {
        acc += exp((double)((c[i].logit - lmax) * inv_t));
        if (u < acc) return c[i].id;
    }
    /* rounding left u at the very end: the last candidate with any mass */
    for (int32_t i = n - 1; i > 0; i--)
        if (c[i].logit != -INFINITY) return c[i].id;
    return c[0].id;
}

/* The same over the whole (unsorted) row. */
static int32_t draw_all(halo_sampler *s, float lmax) {
    const float *l = s->work;
    int32_t n = s->n_vocab;
    float inv_t = 1.0f / s->p.temp;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) sum += expf((l[i] - lmax) * inv_t);
    double u = rng_uniform(s->rng) * sum, acc = 0.0;
    for (int32_t i = 0; i < n; i++) {
        acc += expf((l[i] - lmax) * inv_t);
        if (u < acc) return i;
    }
    for (int32_t i = n - 1; i > 0; i--)
        if (l[i] != -INFINITY) return i;
    return argmax(l, n);
}

/* top-p over the whole row without sorting it: a histogram of the probability
 * mass by logit (buckets of 1/16 nat below the best, everything under 32 nats in
 * the last) finds the bucket where the cumulative mass reaches p. Every token in
 * the buckets above it is kept, in id order; only the tokens of that boundary
 * bucket are sorted, to make the exact cut among them. Fills s->cands; returns
 * how many are kept. */
static int32_t top_p_prefix(halo_sampler *s, float lmax, float top_p) {
    enum { NB = 512 };
    const float range = 32.0f, scale = NB / range;
    const float *w = s->work;
    int32_t n = s->n_vocab;
    double mass[NB] = {0}, total = 0.0;
    for (int32_t i = 0; i < n; i++) {
        float d = lmax - w[i];
        int b = d < range ? (int)(d * scale) : NB - 1;
        double e = expf(-d);
        mass[b] += e;
        total += e;
    }
    double target = (double)top_p * total, above = 0.0;
    int last = 0;
    while (last < NB - 1 && above + mass[last] < target) above += mass[last++];
    cand *c = s->cands;
    int32_t na = 0;
    for (int32_t i = 0; i < n; i++) { /* the buckets above the boundary */
        float d = lmax - w[i];
        int b = d < range ? (int)(d * scale) : NB - 1;
        if (b < last) c[na++] = (cand){w[i], i};
    }
    int32_t nc = na;
    for (int32_t i = 0; i < n; i++) { /* the boundary bucket */
        float d = lmax - w[i];
        int b = d < range ? (int)(d * scale) : NB - 1;
        if (b == last) c[nc++] = (cand){w[i], i};
    }
    qsort(c + na, (size_t)(nc - na), sizeof *c, cmp_cand);
    double acc = above;
    int32_t keep = na;
    while (keep < nc) {
        acc += expf(c[keep].logit - lmax);
        keep++;
        if (acc >= target) break;
    }
    return keep;
}

/* s->work = logits with bias and penalties */
static void prepare_row(halo_sampler *s, const float *logits) {
    const halo_sampler_params *p = &s->p;
    int32_t n = s->n_vocab;
    float *w = s->work;
    /* a NaN from the model must not poison the comparisons: it never wins */
    for (int32_t i = 0; i < n; i++) {
        float x = logits[i];
        w[i] = x == x ? x : -INFINITY;
    }
    for (int32_t i = 0; i < p->n_logit_bias; i++) w[p->logit_bias[i].token] += p->logit_bias[i].bias;
    apply_penalties(s);
}

/* top-k, top-p, min-p, temperature and the draw over s->work */
static int32_t run_chain(halo_sampler *s) {
    const halo_sampler_params *p = &s->p;
    int32_t n = s->n_vocab;
    float *w = s->work;

    if (p->temp <= 0.0f || p->top_k == 1) return argmax(w, n);
    float lmax = row_max(w, n);
    if (lmax == -INFINITY) return argmax(w, n); /* everything banned: nothing to draw from */

    cand *c = s->cands;
    int32_t nc = 0;     /* candidates in c; 0 with `all`: the whole row in w */
    bool all = true;    /* the candidates are the whole row, unsorted */
    if (p->top_k > 0 && p->top_k < n) {
        select_top(w, n, p->top_k, c);
        nc = p->top_k;
        all = false;
    }

    if (p->top_p < 1.0f) {
        if (all) {
            nc = top_p_prefix(s, lmax, p->top_p);
            all = false;
        } else {
            double total = 0.0, acc = 0.0;
            for (int32_t i = 0; i < nc; i++) total += exp((double)(c[i].logit - lmax));
            int32_t keep = 0;
            while (keep < nc) {
                acc += exp((double)(c[keep].logit - lmax));
                keep++;
                if (acc >= (double)p->top_p * total) break;
            }
            nc = keep;
        }
    }

    if (p->min_p > 0.0f) {
        /* p_i >= min_p * p_max  <=>  logit_i >= lmax + log(min_p); the best always stays */
        float thr = lmax + logf(p->min_p);
        if (all) {
            for (int32_t i = 0; i < n; i++)
                if (w[i] >= thr) c[nc++] = (cand){w[i], i};
            all = false;
        } else {
            int32_t keep = 0;
            for (int32_t i = 0; i < nc; i++)
                if (c[i].logit >= thr) c[keep++] = c[i]; /* the best always passes */
            nc = keep;
        }
        if (nc == 0) return argmax(w, n);
    }

    return all ? draw_all(s, lmax) : draw(s, c, nc, lmax);
}

/* Every token the grammar rejects to -inf in s->work (tokens past the grammar's
 * vocabulary too). Returns a token the grammar allows, -1 if there is none. */
static int32_t mask_row(halo_sampler *s) {
    int32_t nv = halo_grammar_matcher_vocab_size(s->grammar);
    if (nv != s->n_allowed) {
        uint8_t *a = realloc(s->allowed, (size_t)(nv > 0 ? nv : 1));
        if (!a) { /* no memory for the mask: only the tokens checked one by one */
            for (int32_t i = 0; i < s->n_vocab; i++)
                if (s->work[i] != -INFINITY && !halo_grammar_matcher_allows(s->grammar, i))
                    s->work[i] = -INFINITY;
            return -1;
        }
        s->allowed = a;
        s->n_allowed = nv;
    }
    halo_grammar_matcher_mask(s->grammar, s->allowed);
    int32_t any = -1;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        bool ok = i < nv && s->allowed[i];
        if (!ok)
            s->work[i] = -INFINITY;
        else if (any < 0)
            any = i;
    }
    return any;
}

/* With top-k (or greedy) only the k best allowed tokens can be drawn: find them by
 * checking candidates best first (checks of a microsecond, not a walk of the whole
 * vocabulary) and put every other token at -inf. Candidates come from the heap
 * selection in growing rounds, in the chain's order (logit, then id), so the result
 * is the one the full mask gives. The search also ends where min-p would cut
 * everything below (an allowed token that far under the best allowed one never
 * survives). False when it does not end within LAZY_MAX candidates (few tokens are
 * allowed: then the mask is the cheaper way) or finds nothing. */
#define LAZY_MAX 1024

static bool keep_best_allowed(halo_sampler *s, int32_t k) {
    int32_t n = s->n_vocab, found = 0, checked = 0, want = 64;
    if (k > LAZY_MAX) return false;
    if (s->n_keep < k) {
        int32_t *q = realloc(s->keep, sizeof *q * (size_t)k);
        if (!q) return false;
        s->keep = q;
        s->n_keep = k;
    }
    float floor = -INFINITY; /* min-p's cut below the best allowed logit */
    bool done = false;
    while (!done) {
        if (want > n) want = n;
        select_top(s->work, n, want, s->cands);
        for (int32_t i = checked; i < want && !done; i++) {
            cand c = s->cands[i];
            done = c.logit == -INFINITY || c.logit < floor; /* nothing below can be drawn */
            if (done || !halo_grammar_matcher_allows(s->grammar, c.id)) continue;
            if (found == 0 && s->p.min_p > 0.0f) floor = c.logit + logf(s->p.min_p);
            s->keep[found++] = c.id;
            done = found == k;
        }
        if (!done && (want == n || want >= LAZY_MAX)) {
            if (want < n) return false; /* not settled: mask instead */
            done = true;
        }
        checked = want;
        want *= 4;
    }
    if (found == 0) return false;
    for (int32_t i = 0; i < found; i++) s->cands[i] = (cand){s->work[s->keep[i]], s->keep[i]};
    for (int32_t i = 0; i < n; i++) s->work[i] = -INFINITY;
    for (int32_t i = 0; i < found; i++) s->work[s->cands[i].id] = s->cands[i].logit;
    return true;
}

int32_t halo_sampler_sample(halo_sampler *s, const float *logits) {
    prepare_row(s, logits);
    uint64_t rng[4]; /* a rejected pick gives its random number back */
    memcpy(rng, s->rng, sizeof rng);
    int32_t tok = run_chain(s);
    if (!s->grammar || halo_grammar_matcher_allows(s->grammar, tok)) return tok;
    memcpy(s->rng, rng, sizeof rng);
    const halo_sampler_params *p = &s->p;
    int32_t k = p->temp <= 0.0f || p->top_k == 1 ? 1 : p->top_k;
    int32_t any = -1;
    if (k > 0 && keep_best_allowed(s, k)) any = s->keep[0];
    else any = mask_row(s);
    tok = run_chain(s);
    /* everything allowed had -inf already (banned by bias): keep to the grammar; nothing
     * allowed at all (a text this vocabulary cannot continue): end it */
    if (s->work[tok] == -INFINITY) {
        int32_t eog = halo_grammar_matcher_eog(s->grammar);
        tok = any >= 0 ? any : eog >= 0 ? eog : tok;
    }
    return tok;
}
