/*
 * bf16.c - arrays of float <-> bfloat16 for the wire (see bf16.h), on the
 * scalar conversions of nn/half_float.h.
 */
#include "comm/bf16.h"

#include "nn/half_float.h"

void bf16_from_float(uint16_t *dst, const float *src, long n) {
    for (long i = 0; i < n; i++) dst[i] = float_to_bfloat16(src[i]);
}

void bf16_to_float(float *dst, const uint16_t *src, long n) {
    for (long i = 0; i < n; i++) dst[i] = bfloat16_to_float(src[i]);
}
