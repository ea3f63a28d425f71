/*
 * cpu_bf16_rows.c - the teacher's rows to and from the bf16 wire format on
 * the CPU (semantics: nn/backend.h): feature rows scattered to, or gathered
 * from, value offsets of a flat bf16 array. The conversions are those of
 * nn/half_float.h, so the bits are comm/bf16.h's.
 */
#include "nn/cpu/cpu_ops.h"
#include "nn/half_float.h"

void cpu_scatter_rows_to_bf16(uint16_t *out, const float *inp, const int64_t *starts, int N, int C) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        uint16_t *dst = out + starts[n];
        const float *src = inp + (long)n * C;
        for (int c = 0; c < C; c++) dst[c] = float_to_bfloat16(src[c]);
    }
}

void cpu_gather_rows_from_bf16(float *out, const uint16_t *inp, const int64_t *starts, int N, int C) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const uint16_t *src = inp + starts[n];
        float *dst = out + (long)n * C;
        for (int c = 0; c < C; c++) dst[c] = bfloat16_to_float(src[c]);
    }
}
