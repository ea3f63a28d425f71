/*
 * bf16.c - float <-> bfloat16 conversion (see bf16.h).
 */
#include "comm/bf16.h"

#include <string.h>

void bf16_from_float(uint16_t *dst, const float *src, long n) {
    for (long i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &src[i], sizeof bits);
        if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu)) {
            dst[i] = (uint16_t)((bits >> 16) | 0x0040u);   /* NaN stays a (quiet) NaN */
            continue;
        }
        uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);  /* to nearest, ties to even */
        dst[i] = (uint16_t)((bits + rounding) >> 16);
    }
}

void bf16_to_float(float *dst, const uint16_t *src, long n) {
    for (long i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &bits, sizeof bits);
    }
}
