/*
 * cpu_math.h - exp and erf written so that loops calling them vectorise
 * (glibc's expf and erff are scalar calls unless -ffast-math is on, and
 * they dominated GELU, SwiGLU and softmax).
 *
 * cpu_expf: Cody-Waite range reduction to [-ln2/2, ln2/2] and the Cephes
 * degree-6 polynomial; relative error under 2e-7 on [-87, 88], inputs
 * below -87.3 give 0 (as the float result would underflow anyway).
 * cpu_erff: Abramowitz & Stegun 7.1.26; absolute error under 2e-7.
 */
#ifndef DD_NN_CPU_MATH_H
#define DD_NN_CPU_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float cpu_expf(float x) {
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    x = x < -87.3f ? -87.3f : x > 88.3f ? 88.3f : x;
    /* k = round(x / ln2) by the 1.5 * 2^23 trick: floorf() would stop GCC
     * from vectorising the loops that call this */
    float k = (x * log2e + 12582912.0f) - 12582912.0f;
    k = k == k ? k : 0.0f;   /* NaN in, NaN out (through r), without a NaN-to-int conversion */
    float r = x - k * ln2_hi - k * ln2_lo;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)k + 127) << 23;   /* 2^k */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x <= -87.3f ? 0.0f : p * scale;
}

static inline float cpu_erff(float x) {
    float ax = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t
                  + 0.254829592f) * t;
    float y = 1.0f - poly * cpu_expf(-ax * ax);
    return copysignf(y, x);
}

#endif
