/*
 * y[t * n_rows + r] = sum_c W[r][c] * x[t * n_cols + c] for many tokens (prompts): the
 * tiled matrix-matrix product, from any weight format (dequant.glsl; TYPE a
 * specialization constant, FAMILY its format family: the includer, mul_mm_<family>.comp,
 * defines it). Where mul_mv.glsl re-reads and re-decodes every weight for each 8 tokens,
 * a workgroup here computes a tile of BM rows x BN tokens: for each slice of BK columns
 * it decodes the tile's weights once into shared memory (one group of 32 an invocation)
 * and loads the tokens' activations beside them, then each invocation multiplies a
 * register block of TM rows x TN tokens out of the two. Every weight is read n_tok / BN
 * times instead of n_tok / 8.
 *
 * Accuracy: each output sums its slice's BK products in f32 (in column order), then adds
 * that partial to its total: rounding grows with BK + n_cols / BK terms rather than with
 * n_cols, so the error stays below a plain f32 loop's (tests/vulkan/test_vulkan_matmul.c).
 *
 * Products by expert id (BY_ID, MoE prompts): binding 3 holds the assignments grouped by
 * expert (moe_group.comp): the lists of each expert's assignment indices, one after
 * another, and a table of tiles of at most BN of them, each (expert, first entry, count).
 * Group z is tile z of that table (past the table's count: nothing to do); assignment a
 * reads activation row a / x_div and writes y row a.
 */
#define BM 64 /* rows a workgroup */
#define BN 64 /* tokens a workgroup */
#define BK 64 /* columns a slice: BM * BK / 32 == WG groups of 32 weights, one an invocation */
#define TM 4  /* an invocation's rows: tr + RT m, m < TM */
#define TN 8  /* its tokens: tc + CT n, n < TN */
#define RT (BM / TM)
#define CT (BN / TN)
#define WG (RT * CT)
#if BM * BK / 32 != WG
#error "a slice's groups of 32 weights must be one an invocation"
#endif
#include "common.glsl"

layout(local_size_x = WG) in;
layout(constant_id = 0) const uint TYPE = 0;
layout(constant_id = 1) const bool BY_ID = false;

layout(std430, binding = 0) readonly buffer Weights { uint wq[]; };
layout(std430, binding = 1) readonly buffer Acts { float xs[]; };
layout(std430, binding = 2) writeonly buffer Out { float ys[]; };
layout(std430, binding = 3) readonly buffer Groups { int grp[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n_rows, n_cols, row_stride, n_tok;
    /* BY_ID: the matrices' stride, x_div, and where in grp the parts start (in words): the
     * tile count, the tiles (triples), the lists */
    uint mat_stride, x_div, n_tiles_at, tiles_at, lists_at;
} pc;

#define WQ wq
#include "dequant.glsl"

/* the slice's weights, [column][row], and activations, [column][token]: an invocation's
 * reads of a column are consecutive rows (or a token broadcast). The activations are
 * written a column after another (consecutive invocations, consecutive columns of a
 * token): token t of column k sits at t ^ (k % 32), so that those writes fall in
 * distinct banks (no padding: the two tiles fill the 32 KiB that devices commonly have) */
shared float w_sh[BK * BM];
shared float x_sh[BK * BN];
uint xi(uint k, uint t) { return k * BN + (t ^ (k & 31u)); }

void main() {
    uint r0 = group_index() * BM;
    if (r0 >= pc.n_rows) return; /* the whole workgroup */
    uint tid = gl_LocalInvocationID.x, tr = tid % RT, tc = tid / RT;
    uint rb = pc.off[0], x0 = pc.off[1] >> 2, y0 = pc.off[2] >> 2, g0 = pc.off[3] >> 2;
    /* the tokens of this tile: t0 .. t0 + nt of the launch (BY_ID: entries of a list) */
    uint t0 = gl_WorkGroupID.z * BN, nt = pc.n_tok - min(t0, pc.n_tok), lst = 0u;
    if (BY_ID) {
        if (gl_WorkGroupID.z >= uint(grp[g0 + pc.n_tiles_at])) return; /* the whole workgroup */
        uint tile = g0 + pc.tiles_at + 3u * gl_WorkGroupID.z;
        rb += uint(grp[tile]) * pc.mat_stride;
        lst = g0 + pc.lists_at + uint(grp[tile + 1u]);
        nt = uint(grp[tile + 2u]);
        t0 = 0u;
    }
    nt = min(nt, uint(BN));

    /* the loader's group: row lr of the tile, group lg of the slice */
    uint lr = tid % BM, lg = tid / BM;
    bool row_ok = r0 + lr < pc.n_rows;
    uint rbl = rb + (r0 + lr) * pc.row_stride;
    uint n_groups = (pc.n_cols + 31u) / 32u;

    float acc[TM * TN];
    for (uint i = 0u; i < TM * TN; i++) acc[i] = 0.0;
    float w[32];
    for (uint k0 = 0u; k0 < pc.n_cols; k0 += BK) {
        uint g = k0 / 32u + lg;
        if (row_ok && g < n_groups)
            dq_group(rbl, g, pc.n_cols, w);
        else
            for (uint i = 0u; i < 32u; i++) w[i] = 0.0;
        for (uint i = 0u; i < 32u; i++) w_sh[(lg * 32u + i) * BM + lr] = w[i];
        /* BN x BK activations, consecutive invocations along a row (coalesced) */
        for (uint i = tid; i < BN * BK; i += WG) {
            uint t = i / BK, k = i % BK, c = k0 + k;
            float v = 0.0;
            if (t < nt && c < pc.n_cols) {
                uint row = t0 + t;
                if (BY_ID) row = uint(grp[lst + t]) / pc.x_div;
                v = xs[x0 + row * pc.n_cols + c];
            }
            x_sh[xi(k, t)] = v;
        }
        barrier();
        float part[TM * TN];
        for (uint i = 0u; i < TM * TN; i++) part[i] = 0.0;
        for (uint k = 0u; k < BK; k++) {
            float a[TM], b[TN];
            for (uint m = 0u; m < TM; m++) a[m] = w_sh[k * BM + tr + RT * m];
            for (uint n = 0u; n < TN; n++) b[n] = x_sh[xi(k, tc + CT * n)];
            /* token blocks past the tile's tokens are skipped (a short tile: the last of a
             * prompt, an expert's few tokens) */
            for (uint n = 0u; n < TN; n++)
                if (tc + CT * n < nt)
                    for (uint m = 0u; m < TM; m++)
                        part[m * TN + n] = fma(a[m], b[n], part[m * TN + n]);
        }
        for (uint i = 0u; i < TM * TN; i++) acc[i] += part[i];
        barrier();
    }
    for (uint n = 0u; n < TN; n++) {
        uint t = tc + CT * n;
        if (t >= nt) continue;
        uint yrow = BY_ID ? uint(grp[lst + t]) : t0 + t;
        for (uint m = 0u; m < TM; m++) {
            uint r = r0 + tr + RT * m;
            if (r < pc.n_rows) ys[y0 + yrow * pc.n_rows + r] = acc[m * TN + n];
        }
    }
}
