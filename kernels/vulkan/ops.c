/*
 * The launchers of kernels/vulkan/vk_ops.h: argument checks on the host (types, shapes,
 * every pointer's range inside its allocation), then one or more dispatches of the
 * shaders of kernels/vulkan/shaders (a dispatch's grid is limited to 65535 groups a
 * dimension, so long launches are split).
 */
#include "kernels/vulkan/vk_impl.h"

#include "quant/quant.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>

#define MAX_GROUPS 65535u
#define MV_MAX_TOK 8 /* tokens a pass of shaders/mul_mv.glsl (its MAX_TOK) */
#define MM_BM 64      /* rows of a workgroup of shaders/mul_mm.glsl (its BM) */
#define MM_BN 64      /* tokens of a workgroup (its BN) */
/* products by expert id take it (the products of vk->mm_min_tok tokens and more do) with
 * that many assignments and MM_MIN_PER_MAT or more an expert on average, up to MM_MAX_MAT
 * experts (shaders/moe_group.comp's MAX_MAT) */
#define MM_MIN_PER_MAT 4
#define MM_MAX_MAT 1024

/* The groups of a 1-D launch of `groups` workgroups on a 2-D grid (shaders: group_index()). */
static void grid(uint64_t groups, uint32_t *gx, uint32_t *gy) {
    *gx = groups < MAX_GROUPS ? (uint32_t)groups : MAX_GROUPS;
    *gy = *gx ? (uint32_t)((groups + *gx - 1) / *gx) : 0;
}

/* A scratch buffer of the halo_vk (p, of *have bytes) of at least `need` bytes: p where it
 * is large enough, else a new one (the old freed after the work recorded with it, which the
 * free waits for); NULL on failure. */
static void *grow_scratch(halo_vk *vk, void *p, size_t *have, size_t need) {
    if (*have >= need) return p;
    halo_vk_free(vk, p);
    *have = 0;
    void *q = halo_vk_alloc(vk, need);
    if (q) *have = need;
    return q;
}

/* ---- products and rows ------------------------------------------------------------------ */

bool halo_vk_matmul_supported(int type) {
    switch (type) {
    case HALO_TYPE_F32:
    case HALO_TYPE_F16:
    case HALO_TYPE_BF16:
    case HALO_TYPE_Q4_0:
    case HALO_TYPE_Q4_1:
    case HALO_TYPE_Q5_0:
    case HALO_TYPE_Q5_1:
    case HALO_TYPE_Q8_0:
    case HALO_TYPE_Q8_1:
    case HALO_TYPE_Q2_K:
    case HALO_TYPE_Q3_K:
    case HALO_TYPE_Q4_K:
    case HALO_TYPE_Q5_K:
    case HALO_TYPE_Q6_K:
    case HALO_TYPE_Q8_K:
    case HALO_TYPE_IQ4_NL:
    case HALO_TYPE_IQ4_XS:
    case HALO_TYPE_MXFP4:
        return true;
    default:
        return false;
    }
}

enum { OP_MV, OP_ROWS, OP_MM };

/* The shader of an op (matrix-vector product, embedding rows, tiled product) for a weight
 * type: one per format family (shaders/<op>_float|q|k.comp), the type a specialization
 * constant. */
static const char *shader(int op, int type) {
    static const char *const names[3][3] = {{"mul_mv_float", "mul_mv_q", "mul_mv_k"},
                                            {"get_rows_float", "get_rows_q", "get_rows_k"},
                                            {"mul_mm_float", "mul_mm_q", "mul_mm_k"}};
    const halo_type_traits *t = halo_type_get(type);
    return names[op][!t->is_quantized ? 0 : t->block_size == 32 ? 1 : 2];
}

/* The weight arguments shared by products and rows: type, whole blocks, alignment; the
 * bytes of n_rows rows. */
static int check_weights(halo_vk *vk, const char *what, int type, const void *w, size_t row_stride,
                         int64_t n_rows, int64_t n_cols, size_t *bytes) {
    if (!halo_vk_matmul_supported(type))
        return halo_vk_fail(vk, HALO_ERR_UNSUPPORTED, "%s: no kernel for %s weights", what,
                            halo_type_name(type));
    size_t row = halo_type_row_size(type, n_cols);
    if (row == 0 || !fits_u32(n_cols))
        return halo_vk_fail(vk, HALO_ERR_ARG, "%s: %lld columns are not whole %s blocks", what,
                            (long long)n_cols, halo_type_name(type));
    /* the shaders read f32 and Q8_K's scale as words, halves at even offsets; MXFP4
     * (17-byte blocks, rows at any byte) reads bytes only */
    size_t align = type == HALO_TYPE_F32 || type == HALO_TYPE_Q8_K ? 4
                   : type == HALO_TYPE_MXFP4                       ? 1
                                                                   : 2;
    if (row_stride < row || row_stride % align || (uintptr_t)w % align)
        return halo_vk_fail(vk, HALO_ERR_ARG,
                            "%s: %s rows of stride %zu at %p (row %zu bytes, "
                            "alignment %zu)",
                            what, halo_type_name(type), row_stride, w, row, align);
    *bytes = n_rows > 0 ? bytes3(n_rows - 1, (int64_t)row_stride, 1) : 0;
    if (*bytes != SIZE_MAX) *bytes += row;
    return HALO_OK;
}

int halo_vk_matmul(halo_vk *vk, int type, const void *w, size_t row_stride, int64_t n_rows,
                   int64_t n_cols, const float *x, int64_t n_tokens, float *y) {
    if (n_rows == 0 || n_tokens == 0) return vk->err.status;
    size_t wb;
    int rc = check_weights(vk, "matmul", type, w, row_stride, n_rows, n_cols, &wb);
    if (rc) return rc;
    if (!fits_u32(n_rows) || !fits_u32(n_tokens) || row_stride > UINT32_MAX)
        return halo_vk_fail(vk, HALO_ERR_ARG, "matmul: %lld rows x %lld tokens is too large",
                            (long long)n_rows, (long long)n_tokens);
    uint32_t gx, gy;
    if (vk->mm_min_tok && n_tokens >= vk->mm_min_tok) {
        /* tiles of rows on the x-y grid, of tokens along z (passes of up to 65535) */
        grid(((uint64_t)n_rows + MM_BM - 1) / MM_BM, &gx, &gy);
        const int64_t pass = (int64_t)MAX_GROUPS * MM_BN;
        for (int64_t t0 = 0; t0 < n_tokens && !rc; t0 += pass) {
            int64_t nt = n_tokens - t0 < pass ? n_tokens - t0 : pass;
            vk_arg args[3] = {{w, wb, VK_R},
                              {x + t0 * n_cols, bytes3(nt, n_cols, 4), VK_R},
                              {y + t0 * n_rows, bytes3(nt, n_rows, 4), VK_W}};
            uint32_t p[4] = {(uint32_t)n_rows, (uint32_t)n_cols, (uint32_t)row_stride,
                             (uint32_t)nt};
            uint32_t spec[2] = {(uint32_t)type, 0};
            rc = halo_vk_dispatch(vk, shader(OP_MM, type), spec, 2, args, 3, p, sizeof p, gx, gy,
                                  (uint32_t)((nt + MM_BN - 1) / MM_BN));
        }
        return rc;
    }
    grid((uint64_t)n_rows, &gx, &gy);
    for (int64_t t0 = 0; t0 < n_tokens && !rc; t0 += MV_MAX_TOK) {
        int64_t nt = n_tokens - t0 < MV_MAX_TOK ? n_tokens - t0 : MV_MAX_TOK;
        vk_arg args[3] = {{w, wb, VK_R},
                          {x + t0 * n_cols, bytes3(nt, n_cols, 4), VK_R},
                          {y + t0 * n_rows, bytes3(nt, n_rows, 4), VK_W}};
        uint32_t p[4] = {(uint32_t)n_rows, (uint32_t)n_cols, (uint32_t)row_stride, (uint32_t)nt};
        uint32_t spec = (uint32_t)type;
        rc = halo_vk_dispatch(vk, shader(OP_MV, type), &spec, 1, args, 3, p, sizeof p, gx, gy, 1);
    }
    return rc;
}

/* Whether products by id of n_assign assignments over n_mat matrices are grouped by
 * expert and tiled (else one workgroup a row and assignment). */
static bool id_grouped(const halo_vk *vk, int32_t n_assign, int32_t n_mat) {
    int64_t max_tiles = n_assign / MM_BN + (n_mat < n_assign ? n_mat : n_assign);
    return vk->mm_min_tok && (uint32_t)n_assign >= vk->mm_min_tok &&
           n_assign >= MM_MIN_PER_MAT * n_mat && n_mat <= MM_MAX_MAT && max_tiles <= MAX_GROUPS;
}

/* The matrix-vector kernel by expert id (shaders/mul_mv.glsl BY_ID), one workgroup a row
 * and assignment, args {weights, x, y, ids}; with glu, gate and up pairs (gate_off, up_off
 * from the weights' pointer: halo_vk_matmul_id_glu). */
static int mv_by_id(halo_vk *vk, int type, const vk_arg *args, bool glu, uint32_t gate_off,
                    uint32_t up_off, int64_t n_rows, int64_t n_cols, size_t row_stride,
                    size_t mat_stride, int32_t x_div, int32_t n_assign) {
    uint32_t gx, gy, spec[3] = {(uint32_t)type, 1, 1};
    int rc = HALO_OK;
    grid((uint64_t)n_rows, &gx, &gy);
    for (int32_t a0 = 0; a0 < n_assign && !rc; a0 += (int32_t)MAX_GROUPS) {
        int32_t na = n_assign - a0 < (int32_t)MAX_GROUPS ? n_assign - a0 : (int32_t)MAX_GROUPS;
        uint32_t p[9] = {(uint32_t)n_rows,     (uint32_t)n_cols, (uint32_t)row_stride, 1,
                         (uint32_t)mat_stride, (uint32_t)x_div,  (uint32_t)a0,         gate_off,
                         up_off};
        rc = halo_vk_dispatch(vk, shader(OP_MV, type), spec, glu ? 3 : 2, args, 4, p, sizeof p,
                              gx, gy, (uint32_t)na);
    }
    return rc;
}

int halo_vk_matmul_id(halo_vk *vk, int type, const void *w, size_t row_stride, size_t mat_stride,
                      int64_t n_rows, int64_t n_cols, const float *x, int32_t x_div,
                      const int32_t *ids, int32_t n_assign, float *y, int32_t n_mat) {
    if (n_rows == 0 || n_assign == 0) return vk->err.status;
    size_t wb = 0;
    int rc = check_weights(vk, "matmul_id", type, w, row_stride, n_rows, n_cols, &wb);
    if (rc) return rc;
    if (!fits_u32(n_rows) || n_assign < 0 || x_div <= 0 || n_mat <= 0 || row_stride > UINT32_MAX ||
        mat_stride > UINT32_MAX || (n_mat > 1 && mat_stride < wb))
        return halo_vk_fail(vk, HALO_ERR_ARG,
                            "matmul_id: %lld rows, %d assignments / %d, %d matrices of stride %zu",
                            (long long)n_rows, n_assign, x_div, n_mat, mat_stride);
    /* the ids are read on the device: every matrix is bound */
    vk_arg args[4] = {{w, bytes3(n_mat - 1, (int64_t)mat_stride, 1) + wb, VK_R},
                      {x, bytes3((n_assign - 1) / x_div + 1, n_cols, 4), VK_R},
                      {y, bytes3(n_assign, n_rows, 4), VK_W},
                      {ids, bytes3(n_assign, 4, 1), VK_R}};
    uint32_t gx, gy, spec[2] = {(uint32_t)type, 1};
    /* many assignments: grouped by expert (shaders/moe_group.comp), then each expert's
     * tiles of up to 64 of them through the tiled kernel, its weights read once a tile */
    int64_t max_tiles = n_assign / MM_BN + (n_mat < n_assign ? n_mat : n_assign);
    if (id_grouped(vk, n_assign, n_mat)) {
        uint32_t tiles_at = 1, lists_at = tiles_at + 3 * (uint32_t)max_tiles;
        size_t gb = bytes3((int64_t)lists_at + n_assign, 4, 1);
        vk->mm_groups = grow_scratch(vk, vk->mm_groups, &vk->mm_groups_bytes, gb);
        if (!vk->mm_groups) return vk->err.status ? vk->err.status : HALO_ERR_NOMEM;
        vk_arg ga[2] = {{ids, bytes3(n_assign, 4, 1), VK_R}, {vk->mm_groups, gb, VK_W}};
        uint32_t gp[5] = {(uint32_t)n_assign, (uint32_t)n_mat, MM_BN, tiles_at, lists_at};
        rc = halo_vk_dispatch(vk, "moe_group", NULL, 0, ga, 2, gp, sizeof gp, 1, 1, 1);
        if (rc) return rc;
        args[3] = (vk_arg){vk->mm_groups, gb, VK_R};
        uint32_t p[9] = {(uint32_t)n_rows,       (uint32_t)n_cols, (uint32_t)row_stride, 0,
                         (uint32_t)mat_stride,   (uint32_t)x_div,  0,
                         tiles_at,               lists_at};
        grid(((uint64_t)n_rows + MM_BM - 1) / MM_BM, &gx, &gy);
        return halo_vk_dispatch(vk, shader(OP_MM, type), spec, 2, args, 4, p, sizeof p, gx, gy,
                                (uint32_t)max_tiles);
    }
    return mv_by_id(vk, type, args, false, 0, 0, n_rows, n_cols, row_stride, mat_stride, x_div,
                    n_assign);
}

/* The span of one allocation holding both matrices of a SwiGLU pair: its first byte (the
 * lower of the two) and length; false where they are not in one allocation or the span
 * passes what the shaders address. */
static bool glu_span(halo_vk *vk, const void *w_gate, const void *w_up, size_t wb,
                     const char **lo, size_t *span) {
    vk_alloc *a = halo_vk_find(vk, w_gate), *b = halo_vk_find(vk, w_up);
    if (!a || a != b) return false;
    const char *g = w_gate, *u = w_up;
    *lo = g < u ? g : u;
    const char *hi = (g > u ? g : u) + wb;
    *span = (size_t)(hi - *lo);
    return (uintptr_t)hi <= a->addr + a->size && *span <= UINT32_MAX;
}

bool halo_vk_matmul_glu_fits(halo_vk *vk, int type, const void *w_gate, const void *w_up,
                             size_t row_stride, int64_t n_rows, int64_t n_tokens) {
    const char *lo;
    size_t span;
    if (n_tokens < 1 || n_tokens > MV_MAX_TOK || n_rows <= 0 || !halo_vk_matmul_supported(type))
        return false;
    return glu_span(vk, w_gate, w_up, bytes3(n_rows, (int64_t)row_stride, 1), &lo, &span);
}

int halo_vk_matmul_glu(halo_vk *vk, int type, const void *w_gate, const void *w_up,
                       size_t row_stride, int64_t n_rows, int64_t n_cols, const float *x,
                       int64_t n_tokens, float *y) {
    if (n_rows == 0 || n_tokens == 0) return vk->err.status;
    size_t wb = 0;
    int rc = check_weights(vk, "matmul_glu", type, w_gate, row_stride, n_rows, n_cols, &wb);
    if (rc) return rc;
    const char *lo;
    size_t span;
    if (n_tokens < 0 || n_tokens > MV_MAX_TOK || !fits_u32(n_rows) || row_stride > UINT32_MAX ||
        !glu_span(vk, w_gate, w_up, wb, &lo, &span))
        return halo_vk_fail(vk, HALO_ERR_ARG,
                            "matmul_glu: %lld tokens (1 to %d), the gate and up matrices in one "
                            "allocation",
                            (long long)n_tokens, MV_MAX_TOK);
    vk_arg args[3] = {{lo, span, VK_R},
                      {x, bytes3(n_tokens, n_cols, 4), VK_R},
                      {y, bytes3(n_tokens, n_rows, 4), VK_W}};
    uint32_t gx, gy, spec[3] = {(uint32_t)type, 0, 1};
    uint32_t p[9] = {(uint32_t)n_rows, (uint32_t)n_cols, (uint32_t)row_stride, (uint32_t)n_tokens,
                     0, 0, 0, (uint32_t)((const char *)w_gate - lo),
                     (uint32_t)((const char *)w_up - lo)};
    grid((uint64_t)n_rows, &gx, &gy);
    return halo_vk_dispatch(vk, shader(OP_MV, type), spec, 3, args, 3, p, sizeof p, gx, gy, 1);
}

bool halo_vk_matmul_id_glu_fits(halo_vk *vk, int type, const void *w_gate, const void *w_up,
                                size_t row_stride, size_t mat_stride, int64_t n_rows,
                                int32_t n_assign, int32_t n_mat) {
    const char *lo;
    size_t span;
    if (n_assign < 1 || n_mat < 1 || n_rows <= 0 || !halo_vk_matmul_supported(type) ||
        id_grouped(vk, n_assign, n_mat))
        return false;
    size_t wb = bytes3(n_rows, (int64_t)row_stride, 1);
    return glu_span(vk, w_gate, w_up, bytes3(n_mat - 1, (int64_t)mat_stride, 1) + wb, &lo, &span);
}

int halo_vk_matmul_id_glu(halo_vk *vk, int type, const void *w_gate, const void *w_up,
                          size_t row_stride, size_t mat_stride, int64_t n_rows, int64_t n_cols,
                          const float *x, int32_t x_div, const int32_t *ids, int32_t n_assign,
                          float *y, int32_t n_mat) {
    if (n_rows == 0 || n_assign == 0) return vk->err.status;
    size_t wb = 0;
    int rc = check_weights(vk, "matmul_id_glu", type, w_gate, row_stride, n_rows, n_cols, &wb);
    if (rc) return rc;
    const char *lo;
    size_t span;
    if (!fits_u32(n_rows) || n_assign < 0 || x_div <= 0 || n_mat <= 0 ||
        row_stride > UINT32_MAX || mat_stride > UINT32_MAX || (n_mat > 1 && mat_stride < wb) ||
        id_grouped(vk, n_assign, n_mat) ||
        !glu_span(vk, w_gate, w_up, bytes3(n_mat - 1, (int64_t)mat_stride, 1) + wb, &lo, &span))
        return halo_vk_fail(vk, HALO_ERR_ARG,
                            "matmul_id_glu: %lld rows, %d assignments / %d, %d matrices of "
                            "stride %zu, gate and up in one allocation, not grouped",
                            (long long)n_rows, n_assign, x_div, n_mat, mat_stride);
    const vk_arg args[4] = {{lo, span, VK_R},
                            {x, bytes3((n_assign - 1) / x_div + 1, n_cols, 4), VK_R},
                            {y, bytes3(n_assign, n_rows, 4), VK_W},
                            {ids, bytes3(n_assign, 4, 1), VK_R}};
    return mv_by_id(vk, type, args, true, (uint32_t)((const char *)w_gate - lo),
                    (uint32_t)((const char *)w_up - lo), n_rows, n_cols, row_stride, mat_stride,
                    x_div, n_assign);
}

int halo_vk_get_rows(halo_vk *vk, int type, const void *w, size_t row_stride, int64_t n_cols,
                     const int32_t *rows, int32_t n, float *y) {
    if (n <= 0)
        return n < 0 ? halo_vk_fail(vk, HALO_ERR_ARG, "get_rows: %d rows", n) : vk->err.status;
    size_t row;
    int rc = check_weights(vk, "get_rows", type, w, row_stride, 1, n_cols, &row);
    if (rc) return rc;
    /* the row indices are read on the device: the whole allocation from w on is bound */
    VkDeviceSize off;
    vk_alloc *a = halo_vk_range(vk, w, row, "get_rows", &off);
    if (!a) return vk->err.status;
    uint32_t groups = (uint32_t)((n_cols + 31) / 32), gx = (groups + 63) / 64;
    for (int32_t i0 = 0; i0 < n && !rc; i0 += (int32_t)MAX_GROUPS) {
        int32_t ni = n - i0 < (int32_t)MAX_GROUPS ? n - i0 : (int32_t)MAX_GROUPS;
        vk_arg args[3] = {{w, (size_t)(a->size - off), VK_R},
                          {rows + i0, bytes3(ni, 4, 1), VK_R},
                          {y + (int64_t)i0 * n_cols, bytes3(ni, n_cols, 4), VK_W}};
        uint32_t p[2] = {(uint32_t)n_cols, (uint32_t)row_stride};
        uint32_t spec = (uint32_t)type;
        rc = halo_vk_dispatch(vk, shader(OP_ROWS, type), &spec, 1, args, 3, p, sizeof p, gx,
                              (uint32_t)ni, 1);
    }
    return rc;
}

/* ---- small ops -------------------------------------------------------------------------- */


static int norm(halo_vk *vk, bool add, float *x, const float *r, const float *w, float *y,
                int64_t n_rows, int64_t n, float eps) {
    if (n_rows == 0) return vk->err.status;
    if (!fits_u32(n_rows) || n <= 0 || !fits_u32(n))
        return halo_vk_fail(vk, HALO_ERR_ARG, "rms_norm: %lld rows of %lld", (long long)n_rows,
                            (long long)n);
    size_t all = bytes3(n_rows, n, 4);
    /* x is read (and with add, written); y may be x */
    vk_arg args[4] = {{x, all, add ? VK_RW : VK_R},
                      {w, bytes3(n, 4, 1), VK_R},
                      {y, all, VK_W},
                      {r, add ? all : 0, VK_R}};
    struct {
        uint32_t n_rows, n, has_w;
        float eps;
    } p = {(uint32_t)n_rows, (uint32_t)n, w != NULL, eps};
    uint32_t gx, gy, spec = add;
    grid((uint64_t)n_rows, &gx, &gy);
    return halo_vk_dispatch(vk, "rms_norm", &spec, 1, args, 4, &p, sizeof p, gx, gy, 1);
}

int halo_vk_rms_norm(halo_vk *vk, const float *x, const float *w, float *y, int64_t n_rows,
                     int64_t n, float eps) {
    return norm(vk, false, (float *)x, NULL, w, y, n_rows, n, eps);
}

int halo_vk_add_rms_norm(halo_vk *vk, float *x, const float *y, const float *w, float *xn,
                         int64_t n_rows, int64_t n, float eps) {
    return norm(vk, true, x, y, w, xn, n_rows, n, eps);
}

int halo_vk_rope(halo_vk *vk, float *x, int32_t n_tok, int n_heads, int head_dim, int n_rot,
                 int mode, const int32_t *pos, const float *inv_freq) {
    if (n_rot <= 0 || n_rot % 2 || n_rot > head_dim || n_heads <= 0 || (mode != 0 && mode != 2))
        return halo_vk_fail(vk, HALO_ERR_ARG, "rope: n_rot %d of head_dim %d, %d heads, mode %d",
                            n_rot, head_dim, n_heads, mode);
    if (n_tok <= 0)
        return n_tok < 0 ? halo_vk_fail(vk, HALO_ERR_ARG, "rope: %d tokens", n_tok)
                         : vk->err.status;
    uint32_t gx = (uint32_t)(((int64_t)n_heads * (n_rot / 2) + 63) / 64);
    int rc = HALO_OK;
    for (int32_t t0 = 0; t0 < n_tok && !rc; t0 += (int32_t)MAX_GROUPS) {
        int32_t nt = n_tok - t0 < (int32_t)MAX_GROUPS ? n_tok - t0 : (int32_t)MAX_GROUPS;
        /* the shader indexes from the launch's first token: pass pointers to it */
        vk_arg args[3] = {
            {x + (int64_t)t0 * n_heads * head_dim, bytes3(nt, (int64_t)n_heads * head_dim, 4),
             VK_RW},
            {pos + t0, bytes3(nt, 4, 1), VK_R},
            {inv_freq, bytes3(n_rot / 2, 4, 1), VK_R}};
        uint32_t p[5] = {(uint32_t)n_heads, (uint32_t)head_dim, (uint32_t)n_rot, (uint32_t)mode, 0};
        rc = halo_vk_dispatch(vk, "rope", NULL, 0, args, 3, p, sizeof p, gx, (uint32_t)nt, 1);
    }
    return rc;
}

static int eltwise(halo_vk *vk, uint32_t op, float *a, const float *b, int64_t n) {
    if (n == 0) return vk->err.status;
    if (!fits_u32(n)) return halo_vk_fail(vk, HALO_ERR_ARG, "elementwise op of %lld", (long long)n);
    vk_arg args[2] = {{a, bytes3(n, 4, 1), VK_RW}, {b, bytes3(n, 4, 1), VK_R}};
    uint32_t p = (uint32_t)n, gx, gy;
    grid(((uint64_t)n + 255) / 256, &gx, &gy);
    return halo_vk_dispatch(vk, "eltwise", &op, 1, args, 2, &p, sizeof p, gx, gy, 1);
}

int halo_vk_add(halo_vk *vk, float *x, const float *y, int64_t n) {
    return eltwise(vk, 0, x, y, n);
}
int halo_vk_swiglu(halo_vk *vk, float *g, const float *u, int64_t n) {
    return eltwise(vk, 1, g, u, n);
}
int halo_vk_sigmoid_gate(halo_vk *vk, float *x, const float *g, int64_t n) {
    return eltwise(vk, 2, x, g, n);
}

int halo_vk_copy2d(halo_vk *vk, float *dst, int64_t dst_stride, const float *src,
                   int64_t src_stride, int64_t rows, int64_t width) {
    if (rows == 0 || width == 0) return vk->err.status;
    if (!fits_u32(rows) || !fits_u32(width) || !fits_u32(dst_stride) || !fits_u32(src_stride) ||
        dst_stride < width || src_stride < width)
        return halo_vk_fail(vk, HALO_ERR_ARG, "copy2d: %lld rows of %lld, strides %lld and %lld",
                            (long long)rows, (long long)width, (long long)dst_stride,
                            (long long)src_stride);
    vk_arg args[2] = {{dst, bytes3(rows - 1, dst_stride, 4) + 4 * (size_t)width, VK_W},
                      {src, bytes3(rows - 1, src_stride, 4) + 4 * (size_t)width, VK_R}};
    uint32_t gx = (uint32_t)((width + 255) / 256);
    int rc = HALO_OK;
    for (int64_t r0 = 0; r0 < rows && !rc; r0 += MAX_GROUPS) {
        int64_t nr = rows - r0 < MAX_GROUPS ? rows - r0 : MAX_GROUPS;
        uint32_t p[4] = {(uint32_t)dst_stride, (uint32_t)src_stride, (uint32_t)width, (uint32_t)r0};
        rc = halo_vk_dispatch(vk, "copy2d", NULL, 0, args, 2, p, sizeof p, gx, (uint32_t)nr, 1);
    }
    return rc;
}

int halo_vk_hadamard(halo_vk *vk, float *x, int64_t n_rows, int64_t n, int block) {
    if (n_rows == 0 || n == 0) return vk->err.status;
    if (block <= 0 || block > 1024 || (block & (block - 1)) || n_rows < 0 || n < 0 || n % block ||
        !fits_u32(n_rows * (n / block)))
        return halo_vk_fail(vk, HALO_ERR_ARG, "hadamard: %lld rows of %lld in runs of %d",
                            (long long)n_rows, (long long)n, block);
    const int64_t runs = n_rows * (n / block);
    vk_arg args[1] = {{x, bytes3(n_rows, n, 4), VK_RW}};
    struct {
        uint32_t block, n_runs;
        float norm;
    } p = {(uint32_t)block, (uint32_t)runs, 1.0f / sqrtf((float)block)};
    uint32_t gx, gy;
    grid((uint64_t)runs, &gx, &gy);
    return halo_vk_dispatch(vk, "hadamard", NULL, 0, args, 1, &p, sizeof p, gx, gy, 1);
}

/* The index rows are read on the device, so the rows they name are not checked here:
 * the whole allocations of src (gather) or dst (scatter) are bound. */
static int rows_op(halo_vk *vk, bool scatter, float *dst, const float *src, const int32_t *idx,
                   int32_t n, int64_t width) {
    if (n == 0 || width == 0) return vk->err.status;
    if (n < 0 || !fits_u32(width))
        return halo_vk_fail(vk, HALO_ERR_ARG, "%s: %d rows of %lld", scatter ? "scatter" : "gather",
                            n, (long long)width);
    VkDeviceSize off;
    const void *indexed = scatter ? (const void *)dst : (const void *)src;
    vk_alloc *a = halo_vk_range(vk, indexed, 4, scatter ? "scatter" : "gather", &off);
    if (!a) return vk->err.status;
    size_t whole = (size_t)(a->size - off), mine = bytes3(n, width, 4);
    vk_arg args[3] = {{dst, scatter ? whole : mine, VK_W},
                      {src, scatter ? mine : whole, VK_R},
                      {idx, bytes3(n, 4, 1), VK_R}};
    uint32_t gx = (uint32_t)((width + 255) / 256), spec = scatter;
    int rc = HALO_OK;
    for (int32_t i0 = 0; i0 < n && !rc; i0 += (int32_t)MAX_GROUPS) {
        int32_t ni = n - i0 < (int32_t)MAX_GROUPS ? n - i0 : (int32_t)MAX_GROUPS;
        uint32_t p[2] = {(uint32_t)width, (uint32_t)i0};
        rc = halo_vk_dispatch(vk, "rows", &spec, 1, args, 3, p, sizeof p, gx, (uint32_t)ni, 1);
    }
    return rc;
}

int halo_vk_gather_rows(halo_vk *vk, float *dst, const float *src, const int32_t *idx, int32_t n,
                        int64_t width) {
    return rows_op(vk, false, dst, src, idx, n, width);
}

int halo_vk_scatter_rows(halo_vk *vk, float *dst, const float *src, const int32_t *idx, int32_t n,
                         int64_t width) {
    return rows_op(vk, true, dst, src, idx, n, width);
}

/* ---- MoE -------------------------------------------------------------------------------- */

int halo_vk_topk_route(halo_vk *vk, const float *logits, int32_t n, int n_expert, int k,
                       bool normalize, int32_t *ids, float *weights) {
    if (n_expert <= 0 || n_expert > 512 || k <= 0 || k > 16 || k > n_expert || n < 0)
        return halo_vk_fail(vk, HALO_ERR_ARG,
                            "topk_route: %d of %d experts (at most 16 of 512), %d tokens", k,
                            n_expert, n);
    if (n == 0) return vk->err.status;
    vk_arg args[3] = {{logits, bytes3(n, n_expert, 4), VK_R},
                      {ids, bytes3(n, k, 4), VK_W},
                      {weights, bytes3(n, k, 4), VK_W}};
    uint32_t p[4] = {(uint32_t)n, (uint32_t)n_expert, (uint32_t)k, normalize}, gx, gy;
    grid((uint64_t)n, &gx, &gy);
    return halo_vk_dispatch(vk, "topk", NULL, 0, args, 3, p, sizeof p, gx, gy, 1);
}

int halo_vk_moe_combine(halo_vk *vk, const float *y, const float *w, int32_t n, int k,
                        int64_t n_embd, const float *sh, const float *shg, float *out) {
    if (n < 0 || k <= 0 || n_embd <= 0 || !fits_u32(n_embd) || (sh && !shg))
        return halo_vk_fail(vk, HALO_ERR_ARG, "moe_combine: %d tokens, k %d, %lld wide", n, k,
                            (long long)n_embd);
    if (n == 0) return vk->err.status;
    vk_arg args[5] = {{y, bytes3((int64_t)n * k, n_embd, 4), VK_R},
                      {w, bytes3(n, k, 4), VK_R},
                      {sh, sh ? bytes3(n, n_embd, 4) : 0, VK_R},
                      {shg, sh ? bytes3(n, 4, 1) : 0, VK_R},
                      {out, bytes3(n, n_embd, 4), VK_W}};
    uint32_t gx = (uint32_t)((n_embd + 255) / 256);
    int rc = HALO_OK;
    for (int32_t t0 = 0; t0 < n && !rc; t0 += (int32_t)MAX_GROUPS) {
        int32_t nt = n - t0 < (int32_t)MAX_GROUPS ? n - t0 : (int32_t)MAX_GROUPS;
        uint32_t p[4] = {(uint32_t)k, (uint32_t)n_embd, sh != NULL, (uint32_t)t0};
        rc =
            halo_vk_dispatch(vk, "moe_combine", NULL, 0, args, 5, p, sizeof p, gx, (uint32_t)nt, 1);
    }
    return rc;
}

/* ---- attention -------------------------------------------------------------------------- */

static bool kv_type_ok(int type, int head_dim) {
    switch (type) {
    case HALO_TYPE_F32:
    case HALO_TYPE_F16:
    case HALO_TYPE_BF16:
        return true;
    case HALO_TYPE_Q8_0:
    case HALO_TYPE_Q4_0:
    case HALO_TYPE_IQ4_NL:
        return head_dim % 32 == 0;
    default:
        return false;
    }
}

/* The bytes of an allocation from p on (the rows the device reads by index). */
static size_t rest_of(halo_vk *vk, const void *p, const char *what) {
    VkDeviceSize off;
    vk_alloc *a = halo_vk_range(vk, p, 1, what, &off);
    return a ? (size_t)(a->size - off) : 0;
}

/* Split attention (flash decoding): where the (head, token) rows are few, each row's
 * positions go to up to ATTN_MAX_SPLIT workgroups of about ATTN_SPLIT_POS positions or more
 * (from the host's bound on the positions), merged by attn_combine.comp;
 * HALO_VK_ATTN_SPLIT=n forces n parts (tests), 1 none. */
#define ATTN_SPLIT_POS 512
#define ATTN_MAX_SPLIT 32
#define ATTN_SPLIT_ROWS 256 /* (head, token) rows from which one workgroup a row is enough */

static uint32_t attn_parts(int32_t n_tok, int n_head, int32_t max_pos) {
    const char *env = getenv("HALO_VK_ATTN_SPLIT");
    if (env && *env) {
        long v = strtol(env, NULL, 10);
        return v >= 1 && v <= 256 ? (uint32_t)v : 1;
    }
    if (max_pos < 0 || (int64_t)n_tok * n_head >= ATTN_SPLIT_ROWS) return 1;
    int64_t parts = ((int64_t)max_pos + 1) / ATTN_SPLIT_POS;
    return parts < 1 ? 1 : parts > ATTN_MAX_SPLIT ? ATTN_MAX_SPLIT : (uint32_t)parts;
}

int halo_vk_attn(halo_vk *vk, const halo_vk_kv *kv, int32_t n_tok, const int32_t *seq,
                 const int32_t *pos, int32_t max_pos, int n_head, int n_kv, int head_dim_k,
                 int head_dim_v, float scale, const float *q, float *out) {
    if (n_head <= 0 || n_kv <= 0 || n_head % n_kv || head_dim_k <= 0 || head_dim_k > 256 ||
        head_dim_v <= 0 || head_dim_v > 256 || kv->page_size <= 0 || kv->table_stride < 0 ||
        n_tok < 0 || !kv_type_ok(kv->type_k, head_dim_k) || !kv_type_ok(kv->type_v, head_dim_v))
        return halo_vk_fail(vk, HALO_ERR_ARG,
                            "attn: %d heads / %d KV heads of %d / %d, K %s, V %s, pages of %d",
                            n_head, n_kv, head_dim_k, head_dim_v, halo_type_name(kv->type_k),
                            halo_type_name(kv->type_v), kv->page_size);
    if (kv->k_page_bytes > UINT32_MAX || kv->v_page_bytes > UINT32_MAX ||
        kv->k_head_bytes > UINT32_MAX || kv->v_head_bytes > UINT32_MAX)
        return halo_vk_fail(vk, HALO_ERR_ARG, "attn: pages of more than 4 GiB");
    if (n_tok == 0) return vk->err.status;
    size_t kb = rest_of(vk, kv->k, "attn (K)"), vb = kb ? rest_of(vk, kv->v, "attn (V)") : 0;
    size_t tb = vb ? rest_of(vk, kv->page_table, "attn (page table)") : 0;
    if (!tb) return vk->err.status;
    const size_t ob = bytes3(n_tok, (int64_t)n_head * head_dim_v, 4);
    vk_arg args[7] = {{kv->k, kb, VK_R},
                      {kv->v, vb, VK_R},
                      {q, bytes3(n_tok, (int64_t)n_head * head_dim_k, 4), VK_R},
                      {out, ob, VK_W},
                      {kv->page_table, tb, VK_R},
                      {seq, bytes3(n_tok, 4, 1), VK_R},
                      {pos, bytes3(n_tok, 4, 1), VK_R}};
    const uint32_t parts = attn_parts(n_tok, n_head, max_pos);
    uint32_t spec[3] = {(uint32_t)kv->type_k, (uint32_t)kv->type_v, parts > 1};
    if (parts > 1) { /* the parts into the workspace, [m, l, acc[hd_v]] each */
        size_t pb = bytes3((int64_t)n_tok * n_head, (int64_t)parts * (head_dim_v + 2), 4);
        if (pb == SIZE_MAX || pb > vk->max_alloc)
            return halo_vk_fail(vk, HALO_ERR_ARG, "attn: %d tokens x %d heads in %u parts",
                                n_tok, n_head, parts);
        vk->attn_parts = grow_scratch(vk, vk->attn_parts, &vk->attn_parts_bytes, pb);
        if (!vk->attn_parts) return vk->err.status ? vk->err.status : HALO_ERR_NOMEM;
        args[3] = (vk_arg){vk->attn_parts, pb, VK_W};
    }
    int rc = HALO_OK;
    for (int32_t t0 = 0; t0 < n_tok && !rc; t0 += (int32_t)MAX_GROUPS) {
        int32_t nt = n_tok - t0 < (int32_t)MAX_GROUPS ? n_tok - t0 : (int32_t)MAX_GROUPS;
        struct {
            uint32_t n_head, n_kv, hd_k, hd_v;
            uint32_t k_page_bytes, v_page_bytes, k_head_bytes, v_head_bytes;
            uint32_t page_size, table_stride, t0;
            float scale;
            uint32_t n_split;
        } p = {(uint32_t)n_head,
               (uint32_t)n_kv,
               (uint32_t)head_dim_k,
               (uint32_t)head_dim_v,
               (uint32_t)kv->k_page_bytes,
               (uint32_t)kv->v_page_bytes,
               (uint32_t)kv->k_head_bytes,
               (uint32_t)kv->v_head_bytes,
               (uint32_t)kv->page_size,
               (uint32_t)kv->table_stride,
               (uint32_t)t0,
               scale,
               parts};
        rc = halo_vk_dispatch(vk, "attn", spec, 3, args, 7, &p, sizeof p, (uint32_t)n_head,
                              (uint32_t)nt, parts);
        if (!rc && parts > 1) {
            vk_arg cargs[2] = {{vk->attn_parts, args[3].bytes, VK_R}, {out, ob, VK_W}};
            uint32_t cp[4] = {(uint32_t)n_head, (uint32_t)head_dim_v, parts, (uint32_t)t0};
            rc = halo_vk_dispatch(vk, "attn_combine", NULL, 0, cargs, 2, cp, sizeof cp,
                                  (uint32_t)n_head, (uint32_t)nt, 1);
        }
    }
    return rc;
}

static bool kv_float(int type) {
    return type == HALO_TYPE_F32 || type == HALO_TYPE_F16 || type == HALO_TYPE_BF16;
}
static bool kv_block(int type) {
    return type == HALO_TYPE_Q8_0 || type == HALO_TYPE_Q4_0 || type == HALO_TYPE_IQ4_NL;
}

/* One side (K or V) of a block-type cache: shaders/kv_store_q.comp. */
static int kv_store_blocks(halo_vk *vk, int type, const void *cache, size_t cache_bytes,
                           size_t page_bytes, size_t head_bytes, const halo_vk_kv *kv,
                           int32_t n_tok, const int32_t *seq, const int32_t *pos, int n_kv,
                           int head_dim, const float *x, int64_t stride, size_t table_bytes) {
    const int64_t n = (int64_t)n_kv * head_dim;
    vk_arg args[5] = {{cache, cache_bytes, VK_RW}, /* partial words: atomics */
                      {x, bytes3(n_tok - 1, stride, 4) + 4 * (size_t)n, VK_R},
                      {kv->page_table, table_bytes, VK_R},
                      {seq, bytes3(n_tok, 4, 1), VK_R},
                      {pos, bytes3(n_tok, 4, 1), VK_R}};
    uint32_t spec = (uint32_t)type, gx = (uint32_t)((n / 32 + 63) / 64);
    int rc = HALO_OK;
    for (int32_t t0 = 0; t0 < n_tok && !rc; t0 += (int32_t)MAX_GROUPS) {
        int32_t nt = n_tok - t0 < (int32_t)MAX_GROUPS ? n_tok - t0 : (int32_t)MAX_GROUPS;
        uint32_t p[9] = {(uint32_t)n,
                         (uint32_t)stride,
                         (uint32_t)page_bytes,
                         (uint32_t)(head_bytes * (size_t)n_kv),
                         (uint32_t)head_bytes,
                         (uint32_t)(head_dim / 32),
                         (uint32_t)kv->page_size,
                         (uint32_t)kv->table_stride,
                         (uint32_t)t0};
        rc =
            halo_vk_dispatch(vk, "kv_store_q", &spec, 1, args, 5, p, sizeof p, gx, (uint32_t)nt, 1);
    }
    return rc;
}

int halo_vk_kv_store(halo_vk *vk, const halo_vk_kv *kv, int32_t n_tok, const int32_t *seq,
                     const int32_t *pos, int n_kv, int head_dim_k, int head_dim_v, const float *k,
                     int64_t k_stride, const float *v, int64_t v_stride) {
    const int tk = kv->type_k, tv = kv->type_v;
    if (!(kv_float(tk) || kv_block(tk)) || !(kv_float(tv) || kv_block(tv)))
        return halo_vk_fail(vk, HALO_ERR_UNSUPPORTED,
                            "kv_store: a %s/%s cache cannot be written on Vulkan (F32, F16, "
                            "BF16, Q8_0, Q4_0, IQ4_NL can)",
                            halo_type_name(tk), halo_type_name(tv));
    if ((kv_block(tk) || kv_block(tv)) && !vk->info.float64)
        return halo_vk_fail(vk, HALO_ERR_UNSUPPORTED,
                            "kv_store: a %s/%s cache needs shaderFloat64 (the CPU's encoders "
                            "compute in double), which this device lacks",
                            halo_type_name(tk), halo_type_name(tv));
    const int64_t nk = (int64_t)n_kv * head_dim_k, nv = (int64_t)n_kv * head_dim_v;
    if (n_kv <= 0 || head_dim_k <= 0 || head_dim_v <= 0 || nk % 2 || nv % 2 || n_tok < 0 ||
        k_stride < nk || v_stride < nv || !fits_u32(k_stride) || !fits_u32(v_stride) ||
        kv->page_size <= 0 || kv->k_page_bytes > UINT32_MAX || kv->v_page_bytes > UINT32_MAX ||
        (size_t)kv->k_head_bytes * (size_t)n_kv > UINT32_MAX ||
        (size_t)kv->v_head_bytes * (size_t)n_kv > UINT32_MAX ||
        (kv_block(tk) &&
         (head_dim_k % 32 || kv->k_head_bytes < halo_type_row_size(tk, head_dim_k))) ||
        (kv_block(tv) &&
         (head_dim_v % 32 || kv->v_head_bytes < halo_type_row_size(tv, head_dim_v))))
        return halo_vk_fail(vk, HALO_ERR_ARG,
                            "kv_store: %d KV heads of %d / %d, strides %lld / %lld", n_kv,
                            head_dim_k, head_dim_v, (long long)k_stride, (long long)v_stride);
    if (n_tok == 0) return vk->err.status;
    size_t kb = rest_of(vk, kv->k, "kv_store (K)"),
           vb = kb ? rest_of(vk, kv->v, "kv_store (V)") : 0;
    size_t tb = vb ? rest_of(vk, kv->page_table, "kv_store (page table)") : 0;
    if (!tb) return vk->err.status;
    int rc = HALO_OK;
    if (kv_block(tk))
        rc = kv_store_blocks(vk, tk, kv->k, kb, kv->k_page_bytes, kv->k_head_bytes, kv, n_tok, seq,
                             pos, n_kv, head_dim_k, k, k_stride, tb);
    if (!rc && kv_block(tv))
        rc = kv_store_blocks(vk, tv, kv->v, vb, kv->v_page_bytes, kv->v_head_bytes, kv, n_tok, seq,
                             pos, n_kv, head_dim_v, v, v_stride, tb);
    if (rc || (kv_block(tk) && kv_block(tv))) return rc;
    vk_arg args[7] = {{kv->k, kb, VK_RW}, /* 16-bit halves of words */
                      {kv->v, vb, VK_RW},
                      {k, bytes3(n_tok - 1, k_stride, 4) + 4 * (size_t)nk, VK_R},
                      {v, bytes3(n_tok - 1, v_stride, 4) + 4 * (size_t)nv, VK_R},
                      {kv->page_table, tb, VK_R},
                      {seq, bytes3(n_tok, 4, 1), VK_R},
                      {pos, bytes3(n_tok, 4, 1), VK_R}};
    uint32_t spec[2] = {(uint32_t)tk, (uint32_t)tv};
    const int64_t pairs = (nk > nv ? nk : nv) / 2;
    uint32_t gx = (uint32_t)((pairs + 63) / 64);
    for (int32_t t0 = 0; t0 < n_tok && !rc; t0 += (int32_t)MAX_GROUPS) {
        int32_t nt = n_tok - t0 < (int32_t)MAX_GROUPS ? n_tok - t0 : (int32_t)MAX_GROUPS;
        uint32_t p[11] = {(uint32_t)nk,
                          (uint32_t)nv,
                          (uint32_t)k_stride,
                          (uint32_t)v_stride,
                          (uint32_t)kv->k_page_bytes,
                          (uint32_t)kv->v_page_bytes,
                          (uint32_t)(kv->k_head_bytes * (size_t)n_kv),
                          (uint32_t)(kv->v_head_bytes * (size_t)n_kv),
                          (uint32_t)kv->page_size,
                          (uint32_t)kv->table_stride,
                          (uint32_t)t0};
        rc = halo_vk_dispatch(vk, "kv_store", spec, 2, args, 7, p, sizeof p, gx, (uint32_t)nt, 1);
    }
    return rc;
}
