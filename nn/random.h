/*
 * random.h - small, reproducible random numbers for initialisation and
 * tests: a SplitMix64 stream seeded from (seed, stream id), so the same
 * pair always yields the same numbers on every platform and backend.
 */
#ifndef DD_NN_RANDOM_H
#define DD_NN_RANDOM_H

#include <stdint.h>

typedef struct DdRandom {
    uint64_t state;
} DdRandom;

DdRandom dd_random_seed(uint64_t seed, uint64_t stream);
uint64_t dd_random_u64(DdRandom *r);
/* Uniform in [0, 1) with 53 bits. */
double dd_random_uniform(DdRandom *r);
/* Standard normal (Box-Muller). */
double dd_random_normal(DdRandom *r);
/* Normal(0, std) truncated to [-2 std, 2 std] by rejection. */
double dd_random_truncated_normal(DdRandom *r, double std);

#endif
