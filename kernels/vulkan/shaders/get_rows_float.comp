#version 450
/* get_rows.glsl for F32, F16, BF16 */
#define FAMILY FAMILY_FLOAT
#include "get_rows.glsl"
