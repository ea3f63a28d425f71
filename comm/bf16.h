/*
 * bf16.h - bfloat16, the wire format of teacher outputs: the top 16 bits of
 * an IEEE float, rounded to nearest even. Halves the bytes sent; the
 * targets it carries are L2-normalised bottleneck features, for which 8
 * significant bits (relative error <= 2^-8 after rounding) are plenty.
 */
#ifndef DD_COMM_BF16_H
#define DD_COMM_BF16_H

#include <stdint.h>

void bf16_from_float(uint16_t *dst, const float *src, long n);
void bf16_to_float(float *dst, const uint16_t *src, long n);

#endif
