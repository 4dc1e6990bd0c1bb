#version 450
/* mul_mm.glsl for F32, F16, BF16 */
#define FAMILY FAMILY_FLOAT
#include "mul_mm.glsl"
