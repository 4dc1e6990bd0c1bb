/*
 * Half and bfloat16 conversions against independent references: every one of the
 * 65536 halves (and bfloat16s) decoded and compared with an ldexp-based value;
 * encoding checked at every representable value, at every midpoint between
 * neighbours (ties to even) and just either side of it, at overflow, subnormals,
 * signed zeros and NaN; and a few million random floats against a double-based
 * round-to-nearest-even reference.
 */
#include "harness.h"
#include "quant/quant.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The value of half h, by its definition (NaN for NaNs). */
static double ref_half_value(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    double v;
    if (exp == 0x1f)
        v = man ? NAN : INFINITY;
    else if (exp == 0)
        v = ldexp(man, -24);
    else
        v = ldexp(1024 + man, exp - 25);
    return sign ? -v : v;
}

/* Round-to-nearest-even to half, computed in double (exact for every float). */
static uint16_t ref_to_half(float f) {
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    if (isnan(f)) return 0x7e00; /* checked separately: any NaN will do */
    if (a >= 65520.0) return sign | 0x7c00;
    if (a < ldexp(1.0, -14)) return sign | (uint16_t)rint(ldexp(a, 24)); /* may carry into 0x400: fine */
    int e;
    frexp(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    double mant = rint(ldexp(a, 11 - e)); /* 1024..2048 */
    int exp = e - 1 + 15;
    if (mant == 2048.0) {
        mant = 1024.0;
        exp++;
    }
    if (exp >= 31) return sign | 0x7c00;
    return sign | (uint16_t)(exp << 10 | ((int)mant - 1024));
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void test_fp16_decode_exhaustive(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = halo_fp16_to_fp32((uint16_t)h);
        double want = ref_half_value((uint16_t)h);
        bool ok;
        if (isnan(want))
            ok = isnan(got) && (signbit(got) != 0) == ((h & 0x8000) != 0);
        else
            ok = (double)got == want && (signbit(got) != 0) == ((h & 0x8000) != 0);
        if (!ok && bad++ < 5) fprintf(stderr, "fp16 0x%04x -> %.9g, want %.9g\n", h, got, want);
    }
    CHECK_MSG(bad == 0, "%d halves decode wrongly", bad);
}

static void test_fp16_encode(void) {
    int bad = 0;
    /* every finite half survives a round trip; each midpoint to its successor rounds
     * to the even one of the two, and just either side to the nearer one */
    for (uint32_t s = 0; s < 2; s++) {
        for (uint32_t m = 0; m < 0x7c00; m++) {
            uint16_t h = (uint16_t)(s << 15 | m), h1 = (uint16_t)(h + 1);
            float v = halo_fp16_to_fp32(h);
            if (halo_fp32_to_fp16(v) != h && bad++ < 5) fprintf(stderr, "fp16 round trip 0x%04x\n", h);
            /* successor (0x7c00 is inf: the midpoint 65520 must round to inf) */
            double v1 = (m + 1 == 0x7c00) ? (s ? -65536.0 : 65536.0) : halo_fp16_to_fp32(h1);
            float mid = (float)(((double)v + v1) / 2); /* exact: one bit more than a half */
            uint16_t even = (h & 1) ? h1 : h;
            uint16_t got = halo_fp32_to_fp16(mid);
            if (got != even && bad++ < 5)
                fprintf(stderr, "fp16 tie %.9g -> 0x%04x, want 0x%04x\n", mid, got, even);
            float below = nextafterf(mid, v), above = nextafterf(mid, (float)v1);
            if (halo_fp32_to_fp16(below) != h && bad++ < 5)
                fprintf(stderr, "fp16 below tie %.9g -> 0x%04x\n", below, halo_fp32_to_fp16(below));
            if (halo_fp32_to_fp16(above) != h1 && bad++ < 5)
                fprintf(stderr, "fp16 above tie %.9g -> 0x%04x\n", above, halo_fp32_to_fp16(above));
        }
    }
    CHECK_MSG(bad == 0, "%d fp16 rounding failures", bad);

    CHECK(halo_fp32_to_fp16(0.0f) == 0x0000);
    CHECK(halo_fp32_to_fp16(-0.0f) == 0x8000);
    CHECK(halo_fp32_to_fp16(65504.0f) == 0x7bff);
    CHECK(halo_fp32_to_fp16(65519.99f) == 0x7bff);
    CHECK(halo_fp32_to_fp16(65520.0f) == 0x7c00);
    CHECK(halo_fp32_to_fp16(-1e10f) == 0xfc00);
    CHECK(halo_fp32_to_fp16(FLT_MAX) == 0x7c00);
    CHECK(halo_fp32_to_fp16(INFINITY) == 0x7c00);
    CHECK(halo_fp32_to_fp16(-INFINITY) == 0xfc00);
    CHECK(halo_fp32_to_fp16(0x1p-24f) == 0x0001);     /* smallest subnormal */
    CHECK(halo_fp32_to_fp16(0x1p-25f) == 0x0000);     /* half of it: tie to even (zero) */
    CHECK(halo_fp32_to_fp16(0x1.8p-24f) == 0x0002);   /* 1.5 ulp: tie to even (2) */
    CHECK(halo_fp32_to_fp16(0x1.000002p-25f) == 0x0001);
    CHECK(halo_fp32_to_fp16(-0x1p-26f) == 0x8000);
    CHECK(halo_fp32_to_fp16(0x1.ff8p-15f) == 0x03ff); /* largest subnormal */
    CHECK(halo_fp32_to_fp16(0x1.ffcp-15f) == 0x0400); /* it + half an ulp: tie, up to even 0x400 */
    CHECK(halo_fp32_to_fp16(FLT_MIN) == 0x0000);
    CHECK(halo_fp32_to_fp16(1.0f) == 0x3c00);
    CHECK(halo_fp32_to_fp16(1.0f + 0x1p-11f) == 0x3c00);              /* tie, down to even */
    CHECK(halo_fp32_to_fp16(1.0f + 0x1p-11f + 0x1p-23f) == 0x3c01);
    CHECK(halo_fp32_to_fp16(1.0f + 3 * 0x1p-11f) == 0x3c02);          /* tie, up to even */
    for (uint32_t nan_bits = 0x7f800001u; nan_bits < 0x80000000u; nan_bits += 0x00123457u) {
        uint16_t h = halo_fp32_to_fp16(u2f(nan_bits));
        CHECK_MSG((h & 0x7c00) == 0x7c00 && (h & 0x3ff), "NaN 0x%08x -> 0x%04x", nan_bits, h);
        h = halo_fp32_to_fp16(u2f(nan_bits | 0x80000000u));
        CHECK_MSG((h & 0xfc00) == 0xfc00 && (h & 0x3ff), "-NaN 0x%08x -> 0x%04x", nan_bits, h);
    }

    /* random floats, weighted towards the half range */
    bad = 0;
    for (int i = 0; i < 4000000; i++) {
        uint32_t u = rng();
        if (i & 1) u = (u & 0x807fffffu) | ((uint32_t)(100 + rng() % 60) << 23); /* 2^-27 .. 2^32 */
        float f = u2f(u);
        if (isnan(f)) continue;
        uint16_t got = halo_fp32_to_fp16(f), want = ref_to_half(f);
        if (got != want && bad++ < 5)
            fprintf(stderr, "fp16 random %.9g (0x%08x) -> 0x%04x, want 0x%04x\n", f, u, got, want);
    }
    CHECK_MSG(bad == 0, "%d random floats round to the wrong half", bad);
}

static void test_bf16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = halo_bf16_to_fp32((uint16_t)h);
        int sign = h >> 15, exp = (h >> 7) & 0xff, man = h & 0x7f;
        double want = exp == 0xff ? (man ? NAN : INFINITY)
                    : exp == 0    ? ldexp(man, -133)
                                  : ldexp(128 + man, exp - 134);
        if (sign) want = -want;
        bool ok = isnan(want) ? isnan(got) : (double)got == want;
        ok = ok && (signbit(got) != 0) == (sign != 0);
        if (!ok && bad++ < 5) fprintf(stderr, "bf16 0x%04x -> %.9g, want %.9g\n", h, got, want);

        if (exp == 0xff) continue;
        /* round trip, and ties to even at the midpoint to the successor */
        if (halo_fp32_to_bf16(got) != h && bad++ < 5) fprintf(stderr, "bf16 round trip 0x%04x\n", h);
        uint32_t mid = h << 16 | 0x8000u;
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        if (halo_fp32_to_bf16(u2f(mid)) != even && bad++ < 5) fprintf(stderr, "bf16 tie 0x%08x\n", mid);
        if (halo_fp32_to_bf16(u2f(mid - 1)) != h && bad++ < 5) fprintf(stderr, "bf16 below 0x%08x\n", mid);
        if (halo_fp32_to_bf16(u2f(mid + 1)) != (uint16_t)(h + 1) && bad++ < 5)
            fprintf(stderr, "bf16 above 0x%08x\n", mid);
    }
    CHECK_MSG(bad == 0, "%d bf16 failures", bad);
    CHECK(halo_fp32_to_bf16(FLT_MAX) == 0x7f80); /* rounds up past the largest bf16 */
    CHECK(halo_fp32_to_bf16(-INFINITY) == 0xff80);
    CHECK(halo_fp32_to_bf16(-0.0f) == 0x8000);
    CHECK(halo_fp32_to_bf16(u2f(0x00000001u)) == 0x0000); /* smallest float subnormal */
    CHECK(halo_fp32_to_bf16(u2f(0x00008000u)) == 0x0000); /* tie to even */
    CHECK(halo_fp32_to_bf16(u2f(0x00018000u)) == 0x0002);
    /* NaNs stay NaN (a signalling NaN whose payload sits in the dropped bits must
     * not turn into infinity) and keep their sign */
    const uint32_t nans[] = {0x7f800001u, 0x7fc00000u, 0x7fffffffu, 0xff800001u, 0xffc12345u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = halo_fp32_to_bf16(u2f(nans[i]));
        CHECK_MSG(isnan(halo_bf16_to_fp32(h)) && (h >> 15) == (nans[i] >> 31),
                  "NaN 0x%08x -> 0x%04x", nans[i], h);
    }
}

int main(void) {
    test_fp16_decode_exhaustive();
    test_fp16_encode();
    test_bf16();
    return halo_test_finish("quant/fp16");
}
