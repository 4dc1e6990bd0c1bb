#version 450
/* mul_mv.glsl for F32, F16, BF16 */
#define FAMILY FAMILY_FLOAT
#include "mul_mv.glsl"
