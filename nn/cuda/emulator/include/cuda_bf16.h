/*
 * cuda_bf16.h (CUDA emulator) - the bf16 type of CUDA and the conversions
 * the backend uses, on the host: __nv_bfloat16 holds the 16 bits; float ->
 * bf16 rounds to nearest, ties to even, and makes every NaN the canonical
 * quiet NaN 0x7fff, as CUDA's __float2bfloat16_rn does; bf16 -> float is
 * exact.
 */
#ifndef DD_CUDA_EMULATOR_CUDA_BF16_H
#define DD_CUDA_EMULATOR_CUDA_BF16_H

#include <stdint.h>
#include <string.h>

struct __nv_bfloat16 {
    uint16_t __x;
};

static inline __nv_bfloat16 __float2bfloat16_rn(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    __nv_bfloat16 result;
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        result.__x = 0x7fffu;
    } else {
        result.__x = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    }
    return result;
}

static inline __nv_bfloat16 __float2bfloat16(float value) { return __float2bfloat16_rn(value); }

static inline float __bfloat162float(__nv_bfloat16 value) {
    const uint32_t bits = (uint32_t)value.__x << 16;
    float result;
    memcpy(&result, &bits, sizeof result);
    return result;
}

#endif /* DD_CUDA_EMULATOR_CUDA_BF16_H */
