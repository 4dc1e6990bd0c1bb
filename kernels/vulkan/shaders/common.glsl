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

/* e^x within ~2 ulp (Vulkan's exp may be off by 3 + 2|x| ulp, which softmax and the gates
 * feel): x = k ln2 + r by Cody-Waite (ln2 in two parts, k ln2_hi exact), |r| <= ln2/2, a
 * degree-7 Taylor polynomial (truncation 5e-9), then 2^k as two exact powers of two so that
 * k from -150 to 128 needs no special case. Results below 2^-126 may flush to zero. */
float exp_f32(float x) {
    if (isnan(x)) return x;
    if (x > 88.72284) return 1.0 / 0.0;
    if (x < -103.97208) return 0.0;
    precise float k = roundEven(x * 1.44269504088896341);
    precise float r = (x - k * 0.693359375) - k * -2.12194440e-4;
    precise float p =
        1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 +
                  r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    int ki = int(k), k1 = ki / 2, k2 = ki - k1;
    return p * uintBitsToFloat(uint(k1 + 127) << 23) * uintBitsToFloat(uint(k2 + 127) << 23);
}

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
