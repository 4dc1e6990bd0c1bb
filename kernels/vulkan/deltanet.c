/*
 * The Gated DeltaNet launchers of kernels/vulkan/vk_ops.h: argument checks on the host,
 * then the dispatches of shaders/deltanet_conv.comp (the conv of every token, then the
 * new conv states), deltanet_gates.comp and deltanet_rule.comp.
 *
 * The rule's workgroup shape. A value head's state (dk x dv floats, 64 KiB at 128 x 128)
 * stays in registers: each of WG invocations holds R rows of C columns. R is the largest
 * power of two up to 32 dividing dk (P = dk / R parts of a column), C the fewest columns
 * that keep WG = P dv / C within the device's workgroup limit (at most 512). Fixture and
 * Qwen3.5 heads (dk = dv = 128): WG 512, R 32, C 1.
 *
 * Segments of CHUNK_FROM tokens and more run the chunked form instead
 * (shaders/deltanet_chunk.comp: chunks of C tokens, C the most up to CHUNK_MAX whose
 * matrices fit shared memory: 16 in lavapipe's 32 KiB at dk = dv = 128). The segment
 * lengths are on the device, so both shaders are dispatched over every segment, each
 * returning at once for the other's; the host skips the one that cannot have work.
 * Measured on lavapipe (tests/vulkan/test_vulkan_deltanet.c, the fixtures' heads, CPU
 * time): 1 token 1.6 vs 1.8 ms recurrent, 2 tokens 1.6 vs 2.9, 16 tokens 3.9 vs 18, 256
 * tokens 53 vs 257; hence CHUNK_FROM 2, decode staying recurrent. HALO_VK_DN_CHUNK=0
 * or 1 forces one form (1: every segment chunked) where the chunked one can run.
 */
#include "kernels/vulkan/vk_impl.h"

#include "util/util.h"

#include <math.h>
#include <stdlib.h>

#define MAX_GROUPS 65535u
#define CONV_WG 128     /* shaders/deltanet_conv.comp's WG */
#define GATES_WG 256    /* shaders/deltanet_gates.comp's WG */
#define RULE_MAX_WG 512 /* shaders/deltanet_rule.comp's MAX_WG */
#define RULE_MAX_DK 1024
#define RULE_MAX_REGS 128 /* state floats an invocation may hold (R * C) */
#define CHUNK_MAX 32      /* tokens a chunk at most (shaders/deltanet_chunk.comp's C) */
#define CHUNK_FROM 2      /* segments this long and longer go chunked (measured: lavapipe) */
#define CHUNK_WG 128      /* the chunked form's workgroup (every device has 128 invocations) */

/* The bytes of an allocation from p on (states reached through sequence ids read on the
 * device); 0 with the error set when p is not device memory. */
static size_t rest_of(halo_vk *vk, const void *p, const char *what) {
    VkDeviceSize off;
    vk_alloc *a = halo_vk_range(vk, p, 1, what, &off);
    return a ? (size_t)(a->size - off) : 0;
}

/* The shape checks both phases share; the channels of a row in *ch. */
static int check_dims(halo_vk *vk, const char *what, const halo_vk_deltanet *d, int32_t n_tok,
                      int32_t n_seg, int64_t *ch) {
    if (d->n_k_heads <= 0 || d->n_v_heads <= 0 || d->dk <= 0 || d->dk > RULE_MAX_DK || d->dv <= 0 ||
        d->dv > RULE_MAX_DK || d->kernel < 1 || d->kernel > 16 || n_tok < 0 || n_seg < 0 ||
        n_seg > (int32_t)MAX_GROUPS || d->n_v_heads > (int)MAX_GROUPS)
        return halo_vk_fail(vk, HALO_ERR_ARG,
                            "%s: %d key heads of %d, %d value heads of %d, conv %d, %d tokens in "
                            "%d segments",
                            what, d->n_k_heads, d->dk, d->n_v_heads, d->dv, d->kernel, n_tok,
                            n_seg);
    *ch = 2 * (int64_t)d->n_k_heads * d->dk + (int64_t)d->n_v_heads * d->dv;
    if (!fits_u32(*ch * 16))
        return halo_vk_fail(vk, HALO_ERR_ARG, "%s: rows of %lld channels", what, (long long)*ch);
    return HALO_OK;
}

/* ---- phase 1: conv, norms, gates --------------------------------------------------------- */

int halo_vk_deltanet_conv(halo_vk *vk, const halo_vk_deltanet *d, int32_t n_tok, const int32_t *seg,
                          int32_t n_seg, const float *qkv, const float *w, float *conv_state,
                          int64_t conv_stride, const float *alpha, const float *b, const float *a,
                          const float *dt_bias, float *y, float *g, float *beta) {
    int64_t ch = 0;
    int rc = check_dims(vk, "deltanet_conv", d, n_tok, n_seg, &ch);
    if (rc) return rc;
    const int64_t hist = d->kernel - 1;
    if (conv_stride < hist * ch || !fits_u32(conv_stride))
        return halo_vk_fail(vk, HALO_ERR_ARG, "deltanet_conv: conv states %lld floats apart",
                            (long long)conv_stride);
    if (n_tok == 0 || n_seg == 0) return vk->err.status;
    const int64_t v_blocks = ((int64_t)d->n_v_heads * d->dv + CONV_WG - 1) / CONV_WG;
    const int64_t blocks = 2 * (int64_t)d->n_k_heads + v_blocks;
    if (blocks > MAX_GROUPS)
        return halo_vk_fail(vk, HALO_ERR_ARG, "deltanet_conv: %lld channel blocks",
                            (long long)blocks);
    size_t sb = rest_of(vk, conv_state, "deltanet_conv (state)");
    if (!sb) return vk->err.status;
    vk_arg args[5] = {{qkv, bytes3(n_tok, ch, 4), VK_R},
                      {w, bytes3(ch, d->kernel, 4), VK_R},
                      {conv_state, sb, VK_RW},
                      {y, bytes3(n_tok, ch, 4), VK_W},
                      {seg, bytes3(2 * (int64_t)n_seg + 1, 4, 1), VK_R}};
    struct {
        uint32_t n_ch, kernel, conv_stride, n_seg, n_k_heads, dk, t0;
        float q_scale;
    } p = {(uint32_t)ch,
           (uint32_t)d->kernel,
           (uint32_t)conv_stride,
           (uint32_t)n_seg,
           (uint32_t)d->n_k_heads,
           (uint32_t)d->dk,
           0,
           1.0f / sqrtf((float)d->dk)}; /* the CPU's scale */
    uint32_t state = 0;
    /* every token reads the old states, ... */
    for (int32_t t0 = 0; t0 < n_tok && !rc; t0 += (int32_t)MAX_GROUPS) {
        int32_t nt = n_tok - t0 < (int32_t)MAX_GROUPS ? n_tok - t0 : (int32_t)MAX_GROUPS;
        p.t0 = (uint32_t)t0;
        rc = halo_vk_dispatch(vk, "deltanet_conv", &state, 1, args, 5, &p, sizeof p,
                              (uint32_t)blocks, (uint32_t)nt, 1);
    }
    /* ... then each sequence's state moves on (the dispatches are ordered by a barrier) */
    state = 1;
    if (!rc && hist > 0)
        rc = halo_vk_dispatch(vk, "deltanet_conv", &state, 1, args, 5, &p, sizeof p,
                              (uint32_t)((ch + CONV_WG - 1) / CONV_WG), (uint32_t)n_seg, 1);
    if (rc) return rc;
    const int64_t n = (int64_t)n_tok * d->n_v_heads;
    const size_t gb = bytes3(n, 4, 1), hb = bytes3(d->n_v_heads, 4, 1);
    vk_arg gargs[6] = {{alpha, gb, VK_R},   {b, gb, VK_R}, {a, hb, VK_R},
                       {dt_bias, hb, VK_R}, {g, gb, VK_W}, {beta, gb, VK_W}};
    uint32_t gp[2] = {(uint32_t)n, (uint32_t)d->n_v_heads};
    uint64_t groups = ((uint64_t)n + GATES_WG - 1) / GATES_WG;
    uint32_t gx = groups < MAX_GROUPS ? (uint32_t)groups : MAX_GROUPS;
    return halo_vk_dispatch(vk, "deltanet_gates", NULL, 0, gargs, 6, gp, sizeof gp, gx,
                            (uint32_t)((groups + gx - 1) / gx), 1);
}

/* ---- phase 2: the delta rule and the gated norm ------------------------------------------ */

/* The chunked form's tokens a chunk (shaders/deltanet_chunk.comp's C): the most, up to
 * CHUNK_MAX, whose matrices fit the device's shared memory; 0 for heads it cannot run
 * (its products take 8 columns or rows at a time). */
static uint32_t chunk_size(const halo_vk_deltanet *d, const VkPhysicalDeviceLimits *lim) {
    if (d->dk % 8 || d->dv % 8) return 0;
    for (uint32_t c = CHUNK_MAX; c >= 8; c /= 2)
        if (sizeof(float) *
                ((size_t)c * c + (size_t)c * (size_t)(d->dv + 2 * d->dk) + 6 * (size_t)c) <=
            lim->maxComputeSharedMemorySize)
            return c;
    return 0;
}

/* The shortest segment the chunked form runs (UINT32_MAX: none): CHUNK_FROM, or what
 * HALO_VK_DN_CHUNK forces (0: never, 1: every segment); the recurrent form runs the
 * heads the chunked one cannot. */
static uint32_t chunk_from(const halo_vk_deltanet *d, const VkPhysicalDeviceLimits *lim) {
    const char *env = getenv("HALO_VK_DN_CHUNK");
    uint32_t from = CHUNK_FROM;
    if (env && env[0] == '0' && !env[1]) from = UINT32_MAX;
    if (env && env[0] == '1' && !env[1]) from = 1;
    return chunk_size(d, lim) ? from : UINT32_MAX;
}

int halo_vk_deltanet_rule(halo_vk *vk, const halo_vk_deltanet *d, int32_t n_tok, const int32_t *seg,
                          int32_t n_seg, int32_t max_seg, const float *conv, const float *g, const float *beta,
                          const float *z, const float *norm_w, float eps, float *ssm_state,
                          int64_t ssm_stride, float *o) {
    int64_t ch = 0;
    int rc = check_dims(vk, "deltanet_rule", d, n_tok, n_seg, &ch);
    if (rc) return rc;
    const int64_t head = (int64_t)d->dk * d->dv, vd = (int64_t)d->n_v_heads * d->dv;
    if (ssm_stride < d->n_v_heads * head || !fits_u32(ssm_stride))
        return halo_vk_fail(vk, HALO_ERR_ARG, "deltanet_rule: SSM states %lld floats apart",
                            (long long)ssm_stride);
    /* the workgroup: R rows of C columns an invocation, WG = P dv / C invocations */
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(vk->phys, &props);
    const VkPhysicalDeviceLimits *lim = &props.limits;
    uint32_t max_wg = lim->maxComputeWorkGroupInvocations;
    if (max_wg > lim->maxComputeWorkGroupSize[0]) max_wg = lim->maxComputeWorkGroupSize[0];
    if (max_wg > RULE_MAX_WG) max_wg = RULE_MAX_WG;
    uint32_t r = 32, c = 1;
    while (d->dk % (int)r)
        r /= 2;
    const uint32_t parts = (uint32_t)d->dk / r;
    while (c <= (uint32_t)d->dv && ((uint32_t)d->dv % c || parts * (uint32_t)d->dv / c > max_wg))
        c++;
    const uint32_t wg = c <= (uint32_t)d->dv ? parts * (uint32_t)d->dv / c : 0;
    /* shared memory: q, k; the partial sums kv, sq (WG C each), kq (WG); wg_sum's */
    const size_t shared =
        sizeof(float) * (2 * RULE_MAX_DK + (2 * (size_t)c + 1) * wg + RULE_MAX_WG);
    if (wg == 0 || r * c > RULE_MAX_REGS || shared > lim->maxComputeSharedMemorySize)
        return halo_vk_fail(vk, HALO_ERR_UNSUPPORTED,
                            "deltanet_rule: no workgroup shape for heads of %d x %d (%u "
                            "invocations, %u bytes of shared memory at most)",
                            d->dk, d->dv, max_wg, lim->maxComputeSharedMemorySize);
    if (n_tok == 0 || n_seg == 0) return vk->err.status;
    size_t sb = rest_of(vk, ssm_state, "deltanet_rule (state)");
    if (!sb) return vk->err.status;
    const size_t gb = bytes3(n_tok, d->n_v_heads, 4), ob = bytes3(n_tok, vd, 4);
    vk_arg args[8] = {{conv, bytes3(n_tok, ch, 4), VK_R},
                      {g, gb, VK_R},
                      {beta, gb, VK_R},
                      {z, ob, VK_R},
                      {norm_w, bytes3(d->dv, 4, 1), VK_R},
                      {ssm_state, sb, VK_RW},
                      {seg, bytes3(2 * (int64_t)n_seg + 1, 4, 1), VK_R},
                      {o, ob, VK_W}};
    struct {
        uint32_t n_k_heads, n_v_heads, dk, dv, ch, ssm_stride, n_seg;
        float eps;
        uint32_t chunk_from;
    } p = {(uint32_t)d->n_k_heads, (uint32_t)d->n_v_heads, (uint32_t)d->dk, (uint32_t)d->dv,
           (uint32_t)ch,           (uint32_t)ssm_stride,   (uint32_t)n_seg, eps,
           chunk_from(d, lim)};
    /* the segments are on the device: each shader returns at once for the other's; the
     * recurrent one is skipped when no segment can be short, the chunked one when none
     * can be long (max_seg below its length: batched decode) */
    if (max_seg <= 0 || max_seg > n_tok) max_seg = n_tok;
    const bool chunked = p.chunk_from != UINT32_MAX && max_seg >= (int32_t)p.chunk_from;
    const bool recurrent = p.chunk_from > 1 && !(n_seg == 1 && chunked);
    if (recurrent) {
        uint32_t spec[3] = {wg, r, c};
        rc = halo_vk_dispatch(vk, "deltanet_rule", spec, 3, args, 8, &p, sizeof p,
                              (uint32_t)d->n_v_heads, (uint32_t)n_seg, 1);
    }
    if (!rc && chunked) {
        uint32_t spec[4] = {CHUNK_WG, (uint32_t)d->dk, (uint32_t)d->dv, chunk_size(d, lim)};
        rc = halo_vk_dispatch(vk, "deltanet_chunk", spec, 4, args, 8, &p, sizeof p,
                              (uint32_t)d->n_v_heads, (uint32_t)n_seg, 1);
    }
    return rc;
}
