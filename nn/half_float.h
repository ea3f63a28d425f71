/*
 * half_float.h - conversions between fp32 and the two 16-bit float formats
 * of weight files: IEEE binary16 ("F16") and bfloat16 ("BF16", the upper
 * half of an fp32).
 *
 * To fp32 is exact for both. From fp32 rounds to nearest, ties to even;
 * values beyond the format's range become infinities, NaN stays NaN (quiet).
 */
#ifndef DD_NN_HALF_FLOAT_H
#define DD_NN_HALF_FLOAT_H

#include <stdint.h>

float half_to_float(uint16_t bits);
float bfloat16_to_float(uint16_t bits);
uint16_t float_to_half(float value);
uint16_t float_to_bfloat16(float value);

#endif
