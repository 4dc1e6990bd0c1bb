#version 450
/* mul_mm.glsl for the 256-weight super-blocks: Q2_K .. Q8_K, IQ4_XS */
#define FAMILY FAMILY_K
#include "mul_mm.glsl"
