#version 450
/* mul_mm.glsl for the 32-weight blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, IQ4_NL, MXFP4 */
#define FAMILY FAMILY_Q
#include "mul_mm.glsl"
