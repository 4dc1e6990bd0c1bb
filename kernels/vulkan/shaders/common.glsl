/*
 * Shared by every shader of kernels/vulkan: the extensions, the 2-D grid of
 * workgroups (a dispatch is limited to 65535 groups a dimension, so long row counts
 * spread over y), and the workgroup sum (subgroup sums, then one value a subgroup
 * through shared memory).
 *
 * Push constants: every shader's block starts with `uint off[8]`, the byte offsets of
 * its eight bindings' pointers in their buffers (kernels/vulkan/vk_impl.h), then its
 * own parameters.
 */
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

/* The index of this workgroup in a grid of gx x gy groups, row-major. */
uint group_index() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

#ifdef WG_SUM
/* Sum of v over the workgroup (WG_SUM: its size), returned to every invocation; to be
 * called in uniform control flow. */
shared float wg_partial[WG_SUM];
float wg_sum(float v) {
    v = subgroupAdd(v);
    if (subgroupElect()) wg_partial[gl_SubgroupID] = v;
    barrier();
    float s = 0.0;
    for (uint i = 0; i < gl_NumSubgroups; i++) s += wg_partial[i];
    barrier();
    return s;
}
#endif
