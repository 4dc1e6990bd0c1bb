#version 450
/*
 * MoE routing, one workgroup a token (as halo_topk_route): p = softmax(logits[n_expert]);
 * the k largest logits (ties: the lower index first) go to ids[k] in decreasing order,
 * with weights p[id], divided by their sum when `normalize`. n_expert <= MAX_EXPERT,
 * k <= MAX_K (checked by the launcher).
 */
#define WG 64
#define WG_SUM WG
#define MAX_EXPERT 512
#define MAX_K 16
#include "common.glsl"

layout(local_size_x = WG) in;

layout(std430, binding = 0) readonly buffer Logits { float logits[]; };
layout(std430, binding = 1) writeonly buffer Ids { int ids[]; };
layout(std430, binding = 2) writeonly buffer Weights { float weights[]; };
layout(push_constant) uniform Push {
    uint off[8];
    uint n, n_expert, k, normalize;
} pc;

shared float lg[MAX_EXPERT];
shared bool taken[MAX_EXPERT];
shared float red_v[WG];
shared uint red_i[WG];
shared uint chosen[MAX_K];

/* The workgroup's largest of (v, i) pairs, ties to the lower i (i = 0xFFFFFFFF: none). */
uint wg_argmax(float v, uint i) {
    float m = subgroupMax(v);
    uint j = subgroupMin(v == m ? i : 0xFFFFFFFFu);
    if (subgroupElect()) {
        red_v[gl_SubgroupID] = m;
        red_i[gl_SubgroupID] = j;
    }
    barrier();
    float bv = red_v[0];
    uint bi = red_i[0];
    for (uint s = 1u; s < gl_NumSubgroups; s++)
        if (red_i[s] != 0xFFFFFFFFu && (bi == 0xFFFFFFFFu || red_v[s] > bv ||
                                         (red_v[s] == bv && red_i[s] < bi))) {
            bv = red_v[s];
            bi = red_i[s];
        }
    barrier();
    return bi;
}

void main() {
    uint t = group_index();
    if (t >= pc.n) return;
    uint l0 = (pc.off[0] >> 2) + t * pc.n_expert, me = gl_LocalInvocationID.x;
    float mx = -1.0 / 0.0;
    for (uint e = me; e < pc.n_expert; e += WG) {
        lg[e] = logits[l0 + e];
        taken[e] = false;
        mx = max(mx, lg[e]);
    }
    mx = subgroupMax(mx);
    if (subgroupElect()) red_v[gl_SubgroupID] = mx;
    barrier();
    for (uint s = 0u; s < gl_NumSubgroups; s++) mx = max(mx, red_v[s]);
    barrier();
    float part = 0.0;
    for (uint e = me; e < pc.n_expert; e += WG) part += exp_f32(lg[e] - mx);
    float sum = wg_sum(part);
    for (uint j = 0u; j < pc.k; j++) {
        float bv = -1.0 / 0.0;
        uint bi = 0xFFFFFFFFu;
        for (uint e = me; e < pc.n_expert; e += WG)
            if (!taken[e] && (bi == 0xFFFFFFFFu || lg[e] > bv)) {
                bv = lg[e];
                bi = e;
            }
        uint best = wg_argmax(bv, bi);
        if (me == 0u) {
            taken[best] = true;
            chosen[j] = best;
        }
        barrier();
    }
    if (me == 0u) {
        float p[MAX_K], wsum = 0.0;
        for (uint j = 0u; j < pc.k; j++) {
            p[j] = exp_f32(lg[chosen[j]] - mx) / sum;
            wsum += p[j];
        }
        uint o = t * pc.k;
        for (uint j = 0u; j < pc.k; j++) {
            ids[(pc.off[1] >> 2) + o + j] = int(chosen[j]);
            weights[(pc.off[2] >> 2) + o + j] = pc.normalize != 0u ? p[j] / wsum : p[j];
        }
    }
}
