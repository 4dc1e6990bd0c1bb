/*
 * Float to IEEE half as halo_fp32_to_fp16 (quant/fp16.c), in integers: round to nearest
 * even, subnormals exact, NaN kept quiet. Shared by the KV stores (kv_store*.comp).
 */
uint to_f16(float x) {
    uint b = floatBitsToUint(x), sign = (b >> 16) & 0x8000u, ax = b & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) return sign | 0x7C00u | (ax > 0x7F800000u ? 0x200u | ((ax >> 13) & 0x3FFu) : 0u);
    if (ax >= 0x477FF000u) return sign | 0x7C00u;
    if (ax < 0x38800000u) { /* subnormal or zero: ax * 2^24 rounded to an integer, ties even */
        uint e = ax >> 23, m = (ax & 0x7FFFFFu) | (e != 0u ? 0x800000u : 0u);
        /* value = m * 2^(e - 150) (e >= 1), * 2^24 = m * 2^(e - 126); shift right by 126 - e */
        uint sh = e != 0u ? 126u - e : 125u;
        if (sh >= 32u) return sign;
        uint q = m >> sh, rem = m & ((1u << sh) - 1u), half_ = 1u << (sh - 1u);
        if (rem > half_ || (rem == half_ && (q & 1u) != 0u)) q++;
        return sign | q;
    }
    ax += 0x0FFFu + ((ax >> 13) & 1u);
    return sign | ((ax - 0x38000000u) >> 13);
}
