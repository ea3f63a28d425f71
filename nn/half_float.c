/*
 * half_float.c - bit-level fp32 <-> F16 / BF16 conversion (see half_float.h).
 */
#include "nn/half_float.h"

#include <string.h>

static uint32_t float_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static float bits_float(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

float bfloat16_to_float(uint16_t bits) {
    return bits_float((uint32_t)bits << 16);
}

uint16_t float_to_bfloat16(float value) {
    uint32_t bits = float_bits(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x0040u);   /* quiet NaN */
    uint32_t round = 0x7fffu + ((bits >> 16) & 1u);                                      /* ties to even */
    return (uint16_t)((bits + round) >> 16);
}

float half_to_float(uint16_t bits) {
    uint32_t sign = (uint32_t)(bits & 0x8000u) << 16;
    uint32_t exponent = (bits >> 10) & 0x1fu;
    uint32_t mantissa = bits & 0x3ffu;
    if (exponent == 0x1f)                                   /* infinity, NaN */
        return bits_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) {                                    /* zero, subnormal: mantissa * 2^-24 */
        float magnitude = (float)mantissa * 0x1p-24f;
        return sign ? -magnitude : magnitude;
    }
    return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

uint16_t float_to_half(float value) {
    uint32_t bits = float_bits(value);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));   /* NaN */
    if (magnitude >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);   /* rounds to >= 65520: infinity */
    if (magnitude < 0x38800000u) {                                      /* below 2^-14: subnormal or zero */
        /* Scale so that one unit of the half subnormal (2^-24) is 1.0; the
         * float addition of 0.5-ulp-exact magic rounds to nearest even. */
        float scaled = bits_float(magnitude) * 0x1p24f;
        float rounded = scaled + 0x1p23f - 0x1p23f;   /* ties to even in fp32 arithmetic */
        return (uint16_t)(sign | (uint16_t)rounded);
    }
    uint32_t round = 0xfffu + ((magnitude >> 13) & 1u);                /* ties to even at bit 13 */
    magnitude += round;
    return (uint16_t)(sign | (uint16_t)(((magnitude >> 13) - (112u << 10)) & 0xffffu));
}
