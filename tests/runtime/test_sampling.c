/*
 * Sampling: each filter against a brute-force reference (full sort, naive
 * penalties), the draw's distribution by a chi-square test with fixed seeds,
 * penalties and their window, logit bias, determinism, presets, and parameters
 * out of range. Also times a 151,936-token vocabulary (the Qwen size).
 */
#include "halo.h"
#include "harness.h"
#include "util/util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the reference: the whole chain done the slow, obvious way ------------- */

typedef struct rc {
    double logit;
    int32_t id;
} rc;

static int rc_cmp(const void *x, const void *y) {
    const rc *a = x, *b = y;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* prob[n]: the distribution halo_sampler_sample should draw from, given the
 * accepted history hist[0..nh) */
static void reference(const halo_sampler_params *p, const float *logits, int32_t n,
                      const int32_t *hist, int nh, double *prob) {
    rc *c = malloc((size_t)n * sizeof *c);
    for (int32_t i = 0; i < n; i++) c[i] = (rc){logits[i], i};
    for (int32_t b = 0; b < p->n_logit_bias; b++) c[p->logit_bias[b].token].logit += p->logit_bias[b].bias;
    int from = nh > p->repeat_last_n ? nh - p->repeat_last_n : 0;
    for (int32_t i = 0; i < n; i++) {
        int cnt = 0;
        for (int h = from; h < nh; h++) cnt += hist[h] == i;
        if (!cnt) continue;
        double l = c[i].logit;
        l = l <= 0 ? l * p->repeat_penalty : l / p->repeat_penalty;
        c[i].logit = l - cnt * p->frequency_penalty - p->presence_penalty;
    }
    qsort(c, (size_t)n, sizeof *c, rc_cmp);
    int32_t m = n;
    if (p->top_k > 0 && p->top_k < m) m = p->top_k;
    double lmax = c[0].logit;
    if (p->top_p < 1.0f) {
        double tot = 0, acc = 0;
        for (int32_t i = 0; i < m; i++) tot += exp(c[i].logit - lmax);
        int32_t k = 0;
        while (k < m) {
            acc += exp(c[k].logit - lmax);
            k++;
            if (acc >= p->top_p * tot) break;
        }
        m = k;
    }
    if (p->min_p > 0.0f) {
        int32_t k = 1;
        while (k < m && exp(c[k].logit - lmax) >= p->min_p) k++;
        m = k;
    }
    memset(prob, 0, (size_t)n * sizeof *prob);
    double tot = 0;
    for (int32_t i = 0; i < m; i++) tot += exp((c[i].logit - lmax) / p->temp);
    for (int32_t i = 0; i < m; i++) prob[c[i].id] = exp((c[i].logit - lmax) / p->temp) / tot;
    free(c);
}

/* Draw `draws` tokens (no accept between them) and compare with the reference:
 * nothing outside its support, and a chi-square statistic (bins of expected
 * count < 5 merged) below df + 6 sqrt(2 df), far out in the tail. */
static void check_distribution(const char *what, const halo_sampler_params *p, const float *logits,
                               int32_t n, const int32_t *hist, int nh, int draws) {
    halo_error err = {0};
    halo_sampler *s;
    CHECK(halo_sampler_new(p, n, &s, &err) == 0);
    if (!s) return;
    for (int h = 0; h < nh; h++) halo_sampler_accept(s, hist[h]);
    double *prob = malloc((size_t)n * sizeof *prob);
    long *obs = calloc((size_t)n, sizeof *obs);
    reference(p, logits, n, hist, nh, prob);
    int outside = 0;
    for (int d = 0; d < draws; d++) {
        int32_t t = halo_sampler_sample(s, logits);
        if (t < 0 || t >= n || prob[t] == 0) outside++;
        else obs[t]++;
    }
    CHECK_MSG(outside == 0, "%s: %d draws outside the reference's support", what, outside);
    double chi = 0, small_exp = 0, small_obs = 0;
    int bins = 0;
    for (int32_t i = 0; i < n; i++) {
        if (prob[i] == 0) continue;
        double e = prob[i] * draws;
        if (e < 5) {
            small_exp += e;
            small_obs += (double)obs[i];
            continue;
        }
        chi += (obs[i] - e) * (obs[i] - e) / e;
        bins++;
    }
    if (small_exp >= 5) {
        chi += (small_obs - small_exp) * (small_obs - small_exp) / small_exp;
        bins++;
    }
    int df = bins > 1 ? bins - 1 : 1;
    double limit = df + 6 * sqrt(2.0 * df);
    CHECK_MSG(chi < limit, "%s: chi-square %.1f over %d bins (limit %.1f)", what, chi, bins, limit);
    free(prob);
    free(obs);
    halo_sampler_free(s);
}

static uint64_t lcg = 12345;
static double urand(void) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg >> 11) * 0x1.0p-53;
}
static float nrand(void) { /* Box-Muller */
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static halo_sampler_params neutral(void) {
    halo_sampler_params p;
    halo_sampler_default_params(&p);
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 42;
    return p;
}

static void test_params(void) {
    halo_sampler_params d;
    halo_sampler_default_params(&d);
    CHECK(fabsf(d.temp - 0.8f) < 1e-6f && d.top_k == 40 && fabsf(d.top_p - 0.95f) < 1e-6f);
    CHECK(fabsf(d.min_p - 0.05f) < 1e-6f && d.repeat_penalty == 1.0f && d.repeat_last_n == 64);
    CHECK(d.seed == HALO_SEED_RANDOM && d.presence_penalty == 0 && d.frequency_penalty == 0);

    halo_error err = {0};
    halo_sampler_params p = d;
    CHECK(halo_sampler_preset("qwen-thinking", &p, &err) == 0);
    CHECK(p.temp == 1.0f && p.top_p == 0.95f && p.top_k == 20 && p.presence_penalty == 1.5f);
    CHECK(halo_sampler_preset("qwen-coding", &p, &err) == 0);
    CHECK(p.temp == 0.6f && p.top_p == 0.95f && p.top_k == 20 && p.presence_penalty == 0.0f);
    CHECK(halo_sampler_preset("qwen-instruct", &p, &err) == 0);
    CHECK(p.temp == 0.7f && p.top_p == 0.8f && p.top_k == 20 && p.presence_penalty == 1.5f);
    CHECK(halo_sampler_preset("greedy", &p, &err) == 0);
    CHECK(p.temp == 0.0f);
    CHECK(halo_sampler_preset("qwen-fast", &p, &err) == HALO_ERR_ARG);
    CHECK(strstr(err.msg, "qwen-instruct") != NULL);

    /* each out-of-range value is refused, naming what is wrong */
    halo_logit_bias bias_oob = {1000, 1.0f}, bias_nan = {3, NAN};
#define BAD(stmt, word)                                                                            \
    do {                                                                                           \
        halo_sampler_params q = neutral();                                                         \
        stmt;                                                                                      \
        halo_error e = {0};                                                                        \
        halo_sampler *s = NULL;                                                                    \
        CHECK_MSG(halo_sampler_new(&q, 1000, &s, &e) == HALO_ERR_ARG && !s, "%s", #stmt);          \
        CHECK_MSG(strstr(e.msg, word) != NULL, "%s: %s", #stmt, e.msg);                            \
    } while (0)
    BAD(q.temp = -0.5f, "temperature");
    BAD(q.temp = NAN, "temperature");
    BAD(q.temp = 1000.0f, "temperature");
    BAD(q.top_k = -1, "top-k");
    BAD(q.top_p = 1.5f, "top-p");
    BAD(q.top_p = -0.1f, "top-p");
    BAD(q.min_p = -0.01f, "min-p");
    BAD(q.min_p = NAN, "min-p");
    BAD(q.presence_penalty = 2.5f, "presence");
    BAD(q.frequency_penalty = -3.0f, "frequency");
    BAD(q.repeat_penalty = 0.0f, "repeat penalty");
    BAD(q.repeat_penalty = -1.0f, "repeat penalty");
    BAD(q.repeat_last_n = -1, "repeat-last-n");
    BAD((q.logit_bias = &bias_oob, q.n_logit_bias = 1), "outside the vocabulary");
    BAD((q.logit_bias = &bias_nan, q.n_logit_bias = 1), "logit bias");
#undef BAD
    halo_sampler_params q = neutral();
    halo_sampler *s = NULL;
    CHECK(halo_sampler_new(&q, 0, &s, &err) == HALO_ERR_ARG && !s);
    /* the edges themselves are fine */
    q.temp = 0.0f, q.top_p = 0.0f, q.min_p = 1.0f, q.presence_penalty = -2.0f, q.repeat_last_n = 0;
    CHECK(halo_sampler_new(&q, 10, &s, &err) == 0);
    halo_sampler_free(s);
}

static void test_greedy(void) {
    float l[8] = {0.1f, 2.0f, -1.0f, 3.0f, 3.0f, 0.0f, NAN, -INFINITY};
    halo_sampler_params p = neutral();
    p.temp = 0.0f;
    halo_error err = {0};
    halo_sampler *s;
    CHECK(halo_sampler_new(&p, 8, &s, &err) == 0);
    CHECK(halo_sampler_sample(s, l) == 3); /* a tie goes to the lower id; NaN never wins */
    halo_sampler_free(s);
    /* top-k 1 is greedy too, whatever the temperature */
    p = neutral();
    p.top_k = 1;
    CHECK(halo_sampler_new(&p, 8, &s, &err) == 0);
    for (int i = 0; i < 20; i++) CHECK(halo_sampler_sample(s, l) == 3);
    halo_sampler_free(s);
    /* a banned token (bias -inf) never comes, greedy or not */
    halo_logit_bias ban[2] = {{3, -INFINITY}, {4, -INFINITY}};
    p = neutral();
    p.temp = 0.0f;
    p.logit_bias = ban;
    p.n_logit_bias = 2;
    CHECK(halo_sampler_new(&p, 8, &s, &err) == 0);
    CHECK(halo_sampler_sample(s, l) == 1);
    halo_sampler_free(s);
    p.temp = 1.5f;
    CHECK(halo_sampler_new(&p, 8, &s, &err) == 0);
    for (int i = 0; i < 500; i++) {
        int32_t t = halo_sampler_sample(s, l);
        CHECK(t != 3 && t != 4 && t != 6 && t != 7);
    }
    halo_sampler_free(s);
    /* everything banned: no crash, some id in range */
    float all_inf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    p = neutral();
    CHECK(halo_sampler_new(&p, 4, &s, &err) == 0);
    int32_t t = halo_sampler_sample(s, all_inf);
    CHECK(t >= 0 && t < 4);
    halo_sampler_free(s);
}

/* every filter alone and in the usual combinations, against the reference */
static void test_filters(void) {
    enum { N = 64 };
    float l[N];
    for (int i = 0; i < N; i++) l[i] = 1.5f * nrand();
    l[10] = l[11]; /* a tie */
    struct {
        const char *name;
        float temp, top_p, min_p;
        int32_t top_k;
    } cases[] = {
        {"temperature 1", 1.0f, 1.0f, 0.0f, 0},   {"temperature 0.5", 0.5f, 1.0f, 0.0f, 0},
        {"temperature 2", 2.0f, 1.0f, 0.0f, 0},   {"top-k 5", 1.0f, 1.0f, 0.0f, 5},
        {"top-k 20", 0.7f, 1.0f, 0.0f, 20},       {"top-p 0.5", 1.0f, 0.5f, 0.0f, 0},
        {"top-p 0.9", 1.3f, 0.9f, 0.0f, 0},       {"top-p 0", 1.0f, 0.0f, 0.0f, 0},
        {"min-p 0.05", 1.0f, 1.0f, 0.05f, 0},     {"min-p 0.3", 0.8f, 1.0f, 0.3f, 0},
        {"top-k+top-p", 1.0f, 0.8f, 0.0f, 10},    {"top-k+top-p+min-p", 0.8f, 0.95f, 0.05f, 40},
        {"top-p+min-p", 1.0f, 0.9f, 0.1f, 0},     {"top-k > vocab", 1.0f, 1.0f, 0.0f, 1000},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        halo_sampler_params p = neutral();
        p.temp = cases[c].temp;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        p.top_k = cases[c].top_k;
        p.seed = 1000 + (uint32_t)c;
        check_distribution(cases[c].name, &p, l, N, NULL, 0, 20000);
    }
}

/* top-p without top-k over a flat row, where the kept prefix is thousands of
 * tokens spread over many buckets of the mass histogram */
static void test_top_p_wide(void) {
    enum { N = 3000 };
    int draws = getenv("HALO_TEST_QUICK") && !strcmp(getenv("HALO_TEST_QUICK"), "1") ? 1500 : 6000;
    float *l = malloc(N * sizeof *l);
    for (int i = 0; i < N; i++) l[i] = 1.0f * nrand();
    halo_sampler_params p = neutral();
    p.top_p = 0.6f;
    p.seed = 7;
    check_distribution("top-p 0.6 over a flat 3000-token row", &p, l, N, NULL, 0, draws);
    p.top_p = 0.999f;
    p.min_p = 0.2f;
    check_distribution("top-p 0.999 + min-p 0.2, flat row", &p, l, N, NULL, 0, draws);
    free(l);
}

static void test_penalties(void) {
    enum { N = 32 };
    float l[N];
    for (int i = 0; i < N; i++) l[i] = nrand();
    l[5] = 2.0f, l[6] = -1.0f, l[7] = 0.0f;
    int32_t hist[] = {5, 5, 6, 7, 9, 5, 20, 6, 31, 0, 5};
    int nh = (int)(sizeof hist / sizeof hist[0]);
    halo_sampler_params p = neutral();
    p.repeat_penalty = 1.3f;
    p.frequency_penalty = 0.2f;
    p.presence_penalty = 0.5f;
    p.seed = 3;
    check_distribution("all three penalties", &p, l, N, hist, nh, 20000);
    p.repeat_last_n = 4; /* only the last 4: 6 31 0 5 */
    check_distribution("penalties over a window of 4", &p, l, N, hist, nh, 20000);
    p.repeat_last_n = 0; /* off */
    check_distribution("window 0", &p, l, N, hist, nh, 20000);

    /* greedy: the window forgets what slid out of it */
    float g[4] = {1.0f, 0.0f, 0.9f, 0.0f};
    halo_sampler_params q = neutral();
    q.temp = 0.0f;
    q.presence_penalty = 0.5f;
    q.repeat_last_n = 3;
    halo_error err = {0};
    halo_sampler *s;
    CHECK(halo_sampler_new(&q, 4, &s, &err) == 0);
    CHECK(halo_sampler_sample(s, g) == 0);
    halo_sampler_accept(s, 0);
    CHECK(halo_sampler_sample(s, g) == 2);
    halo_sampler_accept(s, 1);
    halo_sampler_accept(s, 3);
    CHECK(halo_sampler_sample(s, g) == 2); /* 0 still in the window (0 1 3) */
    halo_sampler_accept(s, 1);
    CHECK(halo_sampler_sample(s, g) == 0); /* window 1 3 1 */
    halo_sampler_accept(s, -5);            /* ignored */
    halo_sampler_accept(s, 4);
    CHECK(halo_sampler_sample(s, g) == 0);
    halo_sampler_accept(s, 2);
    halo_sampler_accept(s, 2);
    halo_sampler_accept(s, 0);
    CHECK(halo_sampler_sample(s, g) == 0); /* 0 at 0.5 vs 2 at 0.4 */
    halo_sampler_reset(s);
    CHECK(halo_sampler_sample(s, g) == 0);
    halo_sampler_free(s);
    /* repeat penalty: positive logits divided, negative multiplied */
    float r[3] = {2.0f, 1.5f, -0.2f};
    q = neutral();
    q.temp = 0.0f;
    q.repeat_penalty = 1.5f;
    CHECK(halo_sampler_new(&q, 3, &s, &err) == 0);
    halo_sampler_accept(s, 0);
    CHECK(halo_sampler_sample(s, r) == 1); /* 2/1.5 = 1.33 < 1.5 */
    halo_sampler_free(s);
}

static void test_determinism(void) {
    enum { N = 1000, DRAWS = 500 };
    float *l = malloc(N * sizeof *l);
    for (int i = 0; i < N; i++) l[i] = 2.0f * nrand();
    halo_sampler_params p;
    halo_sampler_default_params(&p);
    p.seed = 1234;
    p.presence_penalty = 0.3f;
    halo_error err = {0};
    halo_sampler *a, *b, *c;
    CHECK(halo_sampler_new(&p, N, &a, &err) == 0);
    CHECK(halo_sampler_new(&p, N, &b, &err) == 0);
    p.seed = 1235;
    CHECK(halo_sampler_new(&p, N, &c, &err) == 0);
    int32_t first[DRAWS];
    int same_ab = 0, same_ac = 0;
    for (int d = 0; d < DRAWS; d++) {
        int32_t x = halo_sampler_sample(a, l), y = halo_sampler_sample(b, l),
                z = halo_sampler_sample(c, l);
        first[d] = x;
        same_ab += x == y;
        same_ac += x == z;
        halo_sampler_accept(a, x);
        halo_sampler_accept(b, y);
        halo_sampler_accept(c, z);
    }
    CHECK(same_ab == DRAWS);
    CHECK(same_ac < DRAWS);
    CHECK(halo_sampler_seed(a) == 1234);
    halo_sampler_reset(a); /* the same sequence again */
    int again = 0;
    for (int d = 0; d < DRAWS; d++) {
        int32_t x = halo_sampler_sample(a, l);
        again += x == first[d];
        halo_sampler_accept(a, x);
    }
    CHECK(again == DRAWS);
    halo_sampler_free(a);
    halo_sampler_free(b);
    halo_sampler_free(c);
    /* a random seed is drawn, reported, and never the "random" marker */
    p.seed = HALO_SEED_RANDOM;
    CHECK(halo_sampler_new(&p, N, &a, &err) == 0);
    CHECK(halo_sampler_seed(a) != HALO_SEED_RANDOM);
    halo_sampler_free(a);
    free(l);
}

/* Qwen-sized vocabulary: every preset keeps to its filters, and the cost per token */
static void test_large_vocab(void) {
    enum { N = 151936 };
    /* under the sanitizers (HALO_TEST_QUICK=1) fewer draws: the same paths, 10x cheaper */
    bool quick = getenv("HALO_TEST_QUICK") && !strcmp(getenv("HALO_TEST_QUICK"), "1");
    float *l = malloc(N * sizeof *l);
    double *prob = malloc(N * sizeof *prob);
    for (int i = 0; i < N; i++) l[i] = 3.0f * nrand();
    const char *names[] = {"qwen-thinking", "qwen-coding", "qwen-instruct", "greedy"};
    for (int k = 0; k < 4; k++) {
        halo_sampler_params p = neutral();
        halo_error err = {0};
        CHECK(halo_sampler_preset(names[k], &p, &err) == 0);
        halo_sampler *s;
        CHECK(halo_sampler_new(&p, N, &s, &err) == 0);
        if (p.temp > 0) reference(&p, l, N, NULL, 0, prob);
        int outside = 0, reps = quick ? 20 : 200;
        double t0 = halo_time_seconds();
        for (int d = 0; d < reps; d++) {
            int32_t t = halo_sampler_sample(s, l);
            if (p.temp > 0 && prob[t] == 0) outside++;
        }
        double us = (halo_time_seconds() - t0) / reps * 1e6;
        CHECK_MSG(outside == 0, "%s: %d draws outside", names[k], outside);
        fprintf(stderr, "  %-14s %d-token vocabulary: %.0f us/token\n", names[k], N, us);
        halo_sampler_free(s);
    }
    /* top-p alone (no top-k) over the big row: the mass histogram */
    halo_sampler_params p = neutral();
    p.top_p = 0.9f;
    halo_error err = {0};
    halo_sampler *s;
    CHECK(halo_sampler_new(&p, N, &s, &err) == 0);
    reference(&p, l, N, NULL, 0, prob);
    int outside = 0;
    double t0 = halo_time_seconds();
    int reps = quick ? 5 : 50;
    for (int d = 0; d < reps; d++) outside += prob[halo_sampler_sample(s, l)] == 0;
    fprintf(stderr, "  top-p 0.9 alone, %d-token vocabulary: %.0f us/token\n", N,
            (halo_time_seconds() - t0) / reps * 1e6);
    CHECK(outside == 0);
    halo_sampler_free(s);
    free(l);
    free(prob);
}

int main(void) {
    test_params();
    test_greedy();
    test_filters();
    test_top_p_wide();
    test_penalties();
    test_determinism();
    test_large_vocab();
    return halo_test_finish("sampling");
}
