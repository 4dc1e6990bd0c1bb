/*
 * KV store and paged flash attention on the GPU (kernels/cuda/attn.cu) against the
 * CPU: halo_cuda_kv_store must write the bytes of the CPU encoders (halo_quant_encode_kv:
 * the reference encoders, IQ4_NL's narrower scale search) into a paged cache with a
 * shuffled page table, and halo_cuda_attn must agree with halo_attn_paged_ref (double precision, plain
 * softmax) for every K/V type pair, head dims 64/128/256, GQA groups 1..16, decode
 * and prefill shapes, several sequences in one ubatch. GQA groups of 8 and 16 with up
 * to 64 tokens take the tiled decode kernel (deep contexts up to 32768, one and
 * many sequences, pages of 16 and 32, every type); the other shapes the warp
 * kernels.
 *
 * Tolerance. The GPU keeps everything in f32: q is pre-scaled by scale * log2(e)
 * (one rounding), each score is a 64..256-term f32 dot product (relative error
 * ~ sqrt(d) * 2^-24 ~ 1e-6 of |q||k|), exp2f is within 2 ulp, and the weighted
 * sums of V run over up to 9000 positions in f32 across warps and splits (a few
 * 1e-7 each, growing like sqrt(n)). Relative to the largest |output| of the
 * (token, head) row that is a few 1e-6 at most; ATTN_TOL is set at a small
 * multiple of the largest error measured on an H200 over all cases (printed per
 * case), so a real bug (a wrong position, a missed page, a bad merge: errors of
 * 1e-2 and up) cannot pass.
 */
#include "cuda_test.h"
#include "harness.h"
#include "rng.h"

#include "kernels/kernels.h"
#include "quant/quant.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define ATTN_TOL 2e-5

#ifdef HALO_HAVE_CUDA

/* The stream of rng.h, read through bits 16..47 of its state (the inputs the bound was
 * measured on): draw_u32, and draw_unit uniform in [-1, 1). */
static uint32_t draw_u32(void) { return (uint32_t)(rng_next() >> 16); }
static float draw_unit(void) {
    return (float)(draw_u32() & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

static size_t row_size(int type, int n) { return halo_type_row_size(type, n); }

/* A paged cache of one layer on the host and the device. */
typedef struct cache {
    int tk, tv, n_kv, dk, dv, ps;
    size_t khb, vhb, kpb, vpb;
    int32_t n_pages, table_stride, n_seq;
    int32_t *table; /* host [n_seq][table_stride] */
    char *k, *v;    /* host image (CPU encoders) */
    halo_cuda_kv dev;
} cache;

static void cache_init(cache *c, int tk, int tv, int n_kv, int dk, int dv, int ps, int n_seq,
                       const int32_t *ctx) {
    memset(c, 0, sizeof *c);
    c->tk = tk;
    c->tv = tv;
    c->n_kv = n_kv;
    c->dk = dk;
    c->dv = dv;
    c->ps = ps;
    c->n_seq = n_seq;
    c->khb = row_size(tk, dk);
    c->vhb = row_size(tv, dv);
    c->kpb = (size_t)ps * n_kv * c->khb;
    c->vpb = (size_t)ps * n_kv * c->vhb;
    int32_t maxp = 1;
    for (int s = 0; s < n_seq; s++) {
        int32_t np = (ctx[s] + ps - 1) / ps;
        c->n_pages += np;
        if (np > maxp) maxp = np;
    }
    c->n_pages += 3; /* spare pages nobody owns */
    c->table_stride = maxp + 1;
    /* a shuffled assignment of pages */
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)c->n_pages);
    for (int32_t i = 0; i < c->n_pages; i++) perm[i] = i;
    for (int32_t i = c->n_pages - 1; i > 0; i--) {
        int32_t j = (int32_t)(draw_u32() % (uint32_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    c->table = calloc((size_t)n_seq * c->table_stride, sizeof(int32_t));
    int32_t next = 0;
    for (int s = 0; s < n_seq; s++) {
        int32_t np = (ctx[s] + ps - 1) / ps;
        for (int32_t i = 0; i < np; i++) c->table[s * c->table_stride + i] = perm[next++];
        for (int32_t i = np; i < c->table_stride; i++) c->table[s * c->table_stride + i] = -1;
    }
    free(perm);
    c->k = calloc(c->n_pages, c->kpb);
    c->v = calloc(c->n_pages, c->vpb);
    c->dev.type_k = tk;
    c->dev.type_v = tv;
    c->dev.k = halo_cuda_malloc(c->n_pages * c->kpb);
    c->dev.v = halo_cuda_malloc(c->n_pages * c->vpb);
    c->dev.k_page_bytes = c->kpb;
    c->dev.v_page_bytes = c->vpb;
    c->dev.k_head_bytes = c->khb;
    c->dev.v_head_bytes = c->vhb;
    c->dev.page_size = ps;
    int32_t *tbl = halo_cuda_malloc(sizeof(int32_t) * (size_t)n_seq * c->table_stride);
    halo_cuda_memcpy(NULL, tbl, c->table, sizeof(int32_t) * (size_t)n_seq * c->table_stride);
    c->dev.page_table = tbl;
    c->dev.table_stride = c->table_stride;
    if (!c->k || !c->v || !c->dev.k || !c->dev.v || !tbl) abort();
}

static void cache_free(cache *c) {
    halo_cuda_free(c->dev.k);
    halo_cuda_free(c->dev.v);
    halo_cuda_free((void *)c->dev.page_table);
    free(c->table);
    free(c->k);
    free(c->v);
}

static char *k_head(const cache *c, char *base, int32_t s, int32_t p, int h) {
    int32_t page = c->table[s * c->table_stride + p / c->ps];
    return base + (size_t)page * c->kpb + ((size_t)(p % c->ps) * c->n_kv + h) * c->khb;
}
static char *v_head(const cache *c, char *base, int32_t s, int32_t p, int h) {
    int32_t page = c->table[s * c->table_stride + p / c->ps];
    return base + (size_t)page * c->vpb + ((size_t)(p % c->ps) * c->n_kv + h) * c->vhb;
}

/* Fill positions 0..ctx[s]-1 of every sequence: K/V values from gen (or random),
 * encoded on the host and stored on the device in one ubatch (tokens shuffled).
 * Checks the device bytes equal the host's. Returns the number of mismatched bytes. */
static size_t cache_fill(cache *c, const int32_t *ctx, const float *specials, int n_specials) {
    int32_t n = 0;
    for (int s = 0; s < c->n_seq; s++) n += ctx[s];
    const int64_t ks = (int64_t)c->n_kv * c->dk + 3, vs = (int64_t)c->n_kv * c->dv + 5;
    float *kf = malloc(sizeof(float) * (size_t)n * ks), *vf = malloc(sizeof(float) * (size_t)n * vs);
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)n), *pos = malloc(sizeof(int32_t) * (size_t)n);
    int32_t i = 0;
    for (int s = 0; s < c->n_seq; s++)
        for (int32_t p = 0; p < ctx[s]; p++, i++) {
            seq[i] = s;
            pos[i] = p;
        }
    for (i = n - 1; i > 0; i--) { /* any order: the cache position comes from (seq, pos) */
        int32_t j = (int32_t)(draw_u32() % (uint32_t)(i + 1)), t;
        t = seq[i], seq[i] = seq[j], seq[j] = t;
        t = pos[i], pos[i] = pos[j], pos[j] = t;
    }
    int si = 0;
    for (i = 0; i < n; i++) {
        for (int64_t e = 0; e < ks; e++)
            kf[i * ks + e] =
                n_specials && draw_u32() % 4 == 0 ? specials[si++ % n_specials] : draw_unit();
        for (int64_t e = 0; e < vs; e++)
            vf[i * vs + e] =
                n_specials && draw_u32() % 4 == 0 ? specials[si++ % n_specials] : draw_unit();
        /* a block of zeros now and then (scale 0) */
        if (draw_u32() % 8 == 0) memset(kf + i * ks, 0, sizeof(float) * 32);
        for (int h = 0; h < c->n_kv; h++) {
            halo_quant_encode_kv(c->tk, kf + i * ks + (size_t)h * c->dk,
                                 k_head(c, c->k, seq[i], pos[i], h), c->dk);
            halo_quant_encode_kv(c->tv, vf + i * vs + (size_t)h * c->dv,
                                 v_head(c, c->v, seq[i], pos[i], h), c->dv);
        }
    }
    float *dk = halo_cuda_malloc(sizeof(float) * (size_t)n * ks);
    float *dv = halo_cuda_malloc(sizeof(float) * (size_t)n * vs);
    int32_t *dseq = halo_cuda_malloc(sizeof(int32_t) * (size_t)n);
    int32_t *dpos = halo_cuda_malloc(sizeof(int32_t) * (size_t)n);
    halo_cuda_memcpy(NULL, dk, kf, sizeof(float) * (size_t)n * ks);
    halo_cuda_memcpy(NULL, dv, vf, sizeof(float) * (size_t)n * vs);
    halo_cuda_memcpy(NULL, dseq, seq, sizeof(int32_t) * (size_t)n);
    halo_cuda_memcpy(NULL, dpos, pos, sizeof(int32_t) * (size_t)n);
    CHECK(halo_cuda_kv_store(NULL, &c->dev, n, dseq, dpos, c->n_kv, c->dk, c->dv, dk, ks, dv,
                             vs) == 0);
    char *bk = malloc(c->n_pages * c->kpb), *bv = malloc(c->n_pages * c->vpb);
    halo_cuda_memcpy(NULL, bk, c->dev.k, c->n_pages * c->kpb);
    halo_cuda_memcpy(NULL, bv, c->dev.v, c->n_pages * c->vpb);
    CHECK(halo_cuda_stream_sync(NULL) == 0);
    size_t bad = 0;
    for (size_t b = 0; b < c->n_pages * c->kpb; b++) bad += bk[b] != c->k[b];
    for (size_t b = 0; b < c->n_pages * c->vpb; b++) bad += bv[b] != c->v[b];
    free(bk);
    free(bv);
    halo_cuda_free(dk);
    halo_cuda_free(dv);
    halo_cuda_free(dseq);
    halo_cuda_free(dpos);
    free(kf);
    free(vf);
    free(seq);
    free(pos);
    return bad;
}

static double worst_err = 0;
static int n_cases = 0, n_failed = 0;

/* One attention case: the ubatch's tokens (seq[t], pos[t]) over a cache filled to
 * ctx[s] positions per sequence; max_pos passed as given (>= every pos). */
static void attn_case(const char *what, int tk, int tv, int d, int n_head, int n_kv, int n_seq,
                      const int32_t *ctx, int32_t n_tok, const int32_t *seq, const int32_t *pos,
                      int32_t max_pos, int ps) {
    cache c;
    cache_init(&c, tk, tv, n_kv, d, d, ps, n_seq, ctx);
    size_t bad = cache_fill(&c, ctx, NULL, 0);
    CHECK_MSG(bad == 0, "%s: %zu cache bytes differ from the CPU encoders", what, bad);
    const size_t qn = (size_t)n_tok * n_head * d;
    float *q = malloc(sizeof(float) * qn), *out = malloc(sizeof(float) * qn);
    float *ref = malloc(sizeof(float) * qn);
    for (size_t i = 0; i < qn; i++) q[i] = 2.0f * draw_unit();
    float *dq = halo_cuda_malloc(sizeof(float) * qn), *dout = halo_cuda_malloc(sizeof(float) * qn);
    int32_t *dseq = halo_cuda_malloc(sizeof(int32_t) * (size_t)n_tok);
    int32_t *dpos = halo_cuda_malloc(sizeof(int32_t) * (size_t)n_tok);
    size_t wb = halo_cuda_attn_work_bytes(n_tok, n_head, d, max_pos);
    void *work = wb ? halo_cuda_malloc(wb) : NULL;
    halo_cuda_memcpy(NULL, dq, q, sizeof(float) * qn);
    halo_cuda_memcpy(NULL, dseq, seq, sizeof(int32_t) * (size_t)n_tok);
    halo_cuda_memcpy(NULL, dpos, pos, sizeof(int32_t) * (size_t)n_tok);
    /* NaN in the output buffer: every value must be written */
    for (size_t i = 0; i < qn; i++) out[i] = NAN;
    halo_cuda_memcpy(NULL, dout, out, sizeof(float) * qn);
    const float scale = 1.0f / sqrtf((float)d);
    CHECK(halo_cuda_attn(NULL, &c.dev, n_tok, dseq, dpos, max_pos, n_head, n_kv, d, d, scale, dq,
                         dout, work) == 0);
    halo_cuda_memcpy(NULL, out, dout, sizeof(float) * qn);
    CHECK(halo_cuda_stream_sync(NULL) == 0);
    /* the reference, per token and KV head, over the CPU-encoded cache */
    const int group = n_head / n_kv;
    for (int32_t t = 0; t < n_tok; t++)
        for (int g = 0; g < n_kv; g++) {
            halo_attn_kv view = {
                .type_k = tk,
                .type_v = tv,
                .k_base = c.k,
                .v_base = c.v,
                .k_page_bytes = c.kpb,
                .v_page_bytes = c.vpb,
                .k_row_bytes = (size_t)n_kv * c.khb,
                .v_row_bytes = (size_t)n_kv * c.vhb,
                .k_head_offset = (size_t)g * c.khb,
                .v_head_offset = (size_t)g * c.vhb,
                .page_size = ps,
                .pages = c.table + (size_t)seq[t] * c.table_stride,
            };
            const int32_t nkv = pos[t] + 1;
            halo_attn_paged_ref(&view, q + ((size_t)t * n_head + (size_t)g * group) * d, 0, 1,
                                &nkv, group, d, d, scale,
                                ref + ((size_t)t * n_head + (size_t)g * group) * d, 0);
        }
    double err = 0;
    for (size_t r = 0; r < (size_t)n_tok * n_head; r++) {
        double mx = 1e-6;
        for (int i = 0; i < d; i++) mx = fmax(mx, fabs(ref[r * d + i]));
        for (int i = 0; i < d; i++) {
            double e = fabs((double)out[r * d + i] - ref[r * d + i]) / mx;
            if (!(e <= err)) err = isnan(e) ? INFINITY : e;
        }
    }
    n_cases++;
    if (err > worst_err) worst_err = err;
    const bool ok = err <= ATTN_TOL;
    if (!ok) n_failed++;
    printf("%-5s %-5s d=%3d heads %2d/%d tok %3d split-work %8zu B  %-34s max rel err %.3g%s\n",
           halo_type_name(tk), halo_type_name(tv), d, n_head, n_kv, n_tok, wb, what, err,
           ok ? "" : "  FAIL");
    CHECK_MSG(ok, "%s %s/%s d=%d: max rel err %g", what, halo_type_name(tk), halo_type_name(tv),
              d, err);
    free(q);
    free(out);
    free(ref);
    halo_cuda_free(dq);
    halo_cuda_free(dout);
    halo_cuda_free(dseq);
    halo_cuda_free(dpos);
    if (work) halo_cuda_free(work);
    cache_free(&c);
}

/* one token of one sequence at context n, pages of ps rows */
static void decode1_ps(int tk, int tv, int d, int n_head, int n_kv, int32_t n, int ps) {
    int32_t ctx = n, seq = 0, pos = n - 1;
    char what[64];
    snprintf(what, sizeof what, "decode ctx %d%s", n, ps != 32 ? " (page 16)" : "");
    attn_case(what, tk, tv, d, n_head, n_kv, 1, &ctx, 1, &seq, &pos, pos, ps);
}
static void decode1(int tk, int tv, int d, int n_head, int n_kv, int32_t n) {
    decode1_ps(tk, tv, d, n_head, n_kv, n, 32);
}

/* n_seq sequences, one token each, contexts of different lengths (base + 1 .. base +
 * 1500), tokens out of order */
static void decode_many_from(int tk, int tv, int d, int n_head, int n_kv, int n_seq,
                             int32_t base) {
    int32_t ctx[64], seq[64], pos[64], max_pos = 0;
    for (int s = 0; s < n_seq; s++) ctx[s] = base + 1 + (int32_t)((s * 997 + 13) % 1500);
    for (int t = 0; t < n_seq; t++) {
        seq[t] = (t * 7 + 3) % n_seq; /* a permutation for n_seq = 16 */
        pos[t] = ctx[seq[t]] - 1;
        if (pos[t] > max_pos) max_pos = pos[t];
    }
    char what[64];
    snprintf(what, sizeof what, "decode %d sequences%s", n_seq, base ? " (long)" : "");
    attn_case(what, tk, tv, d, n_head, n_kv, n_seq, ctx, n_seq, seq, pos, max_pos, 32);
}
static void decode_many(int tk, int tv, int d, int n_head, int n_kv, int n_seq) {
    decode_many_from(tk, tv, d, n_head, n_kv, n_seq, 0);
}

/* n tokens of one sequence at positions p0 .. p0 + n - 1 */
static void prefill(int tk, int tv, int d, int n_head, int n_kv, int32_t n, int32_t p0, int ps) {
    int32_t ctx = p0 + n, *seq = malloc(sizeof(int32_t) * (size_t)n),
            *pos = malloc(sizeof(int32_t) * (size_t)n);
    for (int32_t t = 0; t < n; t++) {
        seq[t] = 0;
        pos[t] = p0 + t;
    }
    char what[64];
    snprintf(what, sizeof what, "prefill %d from %d%s", n, p0, ps != 32 ? " (page 16)" : "");
    attn_case(what, tk, tv, d, n_head, n_kv, 1, &ctx, n, seq, pos, p0 + n - 1, ps);
    free(seq);
    free(pos);
}

/* two sequences in one ubatch: 40 tokens of sequence 1 from position 700 interleaved
 * with 24 of sequence 0 from 0, then a run of sequence 1 alone; max_pos generous */
static void mixed(int tk, int tv, int d, int n_head, int n_kv) {
    int32_t ctx[2] = {24, 740 + 9}, seq[73], pos[73], n = 0, a = 0, b = 0;
    while (a < 24 || b < 40) {
        if (b < 40) seq[n] = 1, pos[n++] = 700 + b++;
        if (a < 24) seq[n] = 0, pos[n++] = a++;
    }
    for (int32_t i = 0; i < 9; i++) seq[n] = 1, pos[n++] = 740 + i;
    attn_case("two sequences mixed", tk, tv, d, n_head, n_kv, 2, ctx, n, seq, pos, 3000, 32);
}

/* store-only: special values (zeros, ties, huge, tiny, inf, nan) give the CPU's bytes */
static void store_specials(int tk, int tv, int d) {
    static const float sp[] = {0.0f,   -0.0f,   1e-8f,   -3.5f, 3.5f,    7e4f,     -1e5f,
                               0.5f,   6.1e-5f, 1e-30f,  100.25f, 127.0f, -127.0f, 2.5f,
                               1.5f,   -8.0f,   8.0f,    65504.0f, 65520.0f, 3e38f, -3e38f,
                               INFINITY, -INFINITY, NAN, 5.96e-8f, 2.98e-8f, 1e-45f};
    int32_t ctx[2] = {70, 33};
    cache c;
    cache_init(&c, tk, tv, 2, d, d, 32, 2, ctx);
    size_t bad = cache_fill(&c, ctx, sp, (int)(sizeof sp / sizeof sp[0]));
    printf("store %-5s %-5s d=%3d specials: %zu bytes differ\n", halo_type_name(tk),
           halo_type_name(tv), d, bad);
    CHECK_MSG(bad == 0, "store specials %s/%s: %zu bytes differ", halo_type_name(tk),
              halo_type_name(tv), bad);
    cache_free(&c);
}

#endif

int main(void) {
    rng_seed(0x9e3779b97f4a7c15ull);
    cuda_test_require_gpu();
#ifdef HALO_HAVE_CUDA
    const int F32 = HALO_TYPE_F32, F16 = HALO_TYPE_F16, BF16 = HALO_TYPE_BF16,
              Q8 = HALO_TYPE_Q8_0, Q4 = HALO_TYPE_Q4_0, NL = HALO_TYPE_IQ4_NL;
    const int pairs[][2] = {{F16, F16}, {Q8, Q8}, {Q4, Q4}, {F32, F32}, {BF16, BF16},
                            {F16, Q8},  {Q8, F16}, {Q4, BF16}, {NL, NL}, {Q8, NL}};
    const int n_pairs = (int)(sizeof pairs / sizeof pairs[0]);

    /* the store, bit for bit, with hostile values */
    for (int i = 0; i < n_pairs; i++) store_specials(pairs[i][0], pairs[i][1], 128);
    store_specials(F16, BF16, 64);
    store_specials(F32, Q4, 256);
    store_specials(NL, F32, 256);

    for (int i = 0; i < n_pairs; i++) {
        const int tk = pairs[i][0], tv = pairs[i][1];
        /* Qwen3.5's attention: head_dim 256, 16 query heads, 2 KV heads (group 8) */
        decode1(tk, tv, 256, 16, 2, 1);
        decode1(tk, tv, 256, 16, 2, 33);
        decode1(tk, tv, 256, 16, 2, 1000);
        decode1(tk, tv, 256, 16, 2, 9000);
        decode1(tk, tv, 256, 16, 2, 4096);
        decode_many(tk, tv, 256, 16, 2, 16);
        decode_many_from(tk, tv, 256, 16, 2, 16, 2500);
        prefill(tk, tv, 256, 16, 2, 64, 0, 32);
        prefill(tk, tv, 256, 16, 2, 300, 500, 32);
        mixed(tk, tv, 256, 16, 2);
        /* llama-style: 128 and 64, groups 1 and 2 */
        decode1(tk, tv, 128, 8, 4, 1000);
        decode1(tk, tv, 64, 4, 4, 1000);
        decode_many(tk, tv, 128, 8, 8, 16);
        prefill(tk, tv, 64, 4, 2, 64, 500, 32);
    }
    /* the rest of the shapes on f16 and q8_0 */
    for (int i = 0; i < 2; i++) {
        const int t = pairs[i][0];
        const int dims[3] = {64, 128, 256};
        for (int j = 0; j < 3; j++) {
            const int d = dims[j];
            decode1(t, t, d, 2, 2, 33);      /* group 1 */
            decode1(t, t, d, 4, 2, 9000);    /* group 2 */
            decode1(t, t, d, 16, 2, 9000);   /* group 8 */
            decode_many(t, t, d, 4, 2, 16);  /* group 2 */
            prefill(t, t, d, 2, 2, 64, 0, 32);    /* group 1 */
            prefill(t, t, d, 4, 2, 300, 0, 32);   /* group 2 */
            if (d != 256) prefill(t, t, d, 16, 2, 300, 500, 32); /* group 8 (256: above) */
            prefill(t, t, d, 16, 2, 64, 500, 32);
            mixed(t, t, d, 2, 2);
            mixed(t, t, d, 4, 2);
        }
        /* the test model: head_dim 256, 2 query heads, 1 KV head */
        decode1(t, t, 256, 2, 1, 1000);
        prefill(t, t, 256, 2, 1, 300, 500, 32);
        mixed(t, t, 256, 2, 1);
        /* groups of 16 (two row groups per KV head), 3 (rows left over), 1 KV head of 8 */
        decode1(t, t, 128, 32, 2, 1000);
        prefill(t, t, 128, 32, 2, 64, 500, 32);
        decode1(t, t, 128, 6, 2, 1000);
        prefill(t, t, 128, 6, 2, 64, 500, 32);
        decode_many(t, t, 128, 6, 2, 16);
        /* another page size */
        prefill(t, t, 128, 8, 2, 64, 500, 16);
        /* a 64-sequence decode */
        decode_many(t, t, 256, 16, 2, 64);
        /* deep decode: one sequence at 32768 (the tiled kernel's many splits), a few
         * sequences near 9000, pages of 16, group 16 deep */
        decode1(t, t, 256, 16, 2, 32768);
        decode_many_from(t, t, 256, 16, 2, 4, 8000);
        decode_many_from(t, t, 128, 16, 2, 16, 2500);
        decode1_ps(t, t, 256, 16, 2, 4099, 16);
        decode1(t, t, 128, 32, 2, 9000);
        prefill(t, t, 256, 16, 2, 40, 4000, 32); /* several tokens of one sequence */
    }
    /* the other cache types deep */
    decode1(Q4, Q4, 256, 16, 2, 32768);
    decode1(NL, NL, 256, 16, 2, 32768);
    decode1(BF16, BF16, 256, 16, 2, 32768);
    decode1(F32, F32, 64, 16, 2, 32768);
    decode1(F16, Q8, 256, 16, 2, 32768);

    /* shapes the kernels refuse, before enqueuing anything */
    {
        int32_t ctx = 4;
        cache c;
        cache_init(&c, F16, F16, 2, 128, 128, 32, 1, &ctx);
        CHECK(halo_cuda_attn(NULL, &c.dev, 1, NULL, NULL, 3, 4, 2, 96, 96, 1.0f, NULL, NULL,
                             NULL) == -1); /* head dim 96 */
        CHECK(halo_cuda_attn(NULL, &c.dev, 1, NULL, NULL, 3, 3, 2, 128, 128, 1.0f, NULL, NULL,
                             NULL) == -1); /* 3 heads over 2 KV heads */
        halo_cuda_kv bad = c.dev;
        bad.type_k = HALO_TYPE_Q4_1;
        CHECK(halo_cuda_attn(NULL, &bad, 1, NULL, NULL, 3, 4, 2, 128, 128, 1.0f, NULL, NULL,
                             NULL) == -1);
        CHECK(halo_cuda_kv_store(NULL, &bad, 1, NULL, NULL, 2, 128, 128, NULL, 0, NULL, 0) == -1);
        bad = c.dev;
        bad.type_k = Q8;
        CHECK(halo_cuda_kv_store(NULL, &bad, 1, NULL, NULL, 2, 100, 128, NULL, 0, NULL, 0) == -1);
        /* zero tokens: nothing to do */
        CHECK(halo_cuda_attn(NULL, &c.dev, 0, NULL, NULL, 0, 4, 2, 128, 128, 1.0f, NULL, NULL,
                             NULL) == 0);
        CHECK(halo_cuda_kv_store(NULL, &c.dev, 0, NULL, NULL, 2, 128, 128, NULL, 0, NULL, 0) == 0);
        cache_free(&c);
    }
    printf("attention: %d cases, %d over the bound %.1e; worst max rel err %.3g\n", n_cases,
           n_failed, ATTN_TOL, worst_err);
#endif
    return halo_test_finish("cuda_attn");
}
