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

/* What a random stream is for: every random choice of a run is a pure
 * function of (run seed, purpose, a, b, c), so any rank can recompute any
 * other rank's choices without messages. a, b, c are the purpose's own
 * coordinates (e.g. epoch, sample id, crop index; or iteration, 0, 0). */
typedef enum DdRandomPurpose {
    DD_RANDOM_INIT = 1,         /* parameter initialisation: (model index, tensor index, 0) */
    DD_RANDOM_SAMPLER = 2,      /* epoch permutation: (source index, epoch, 0) */
    DD_RANDOM_CROP = 3,         /* crop geometry and colour ops: (epoch, sample id, crop index) */
    DD_RANDOM_IBOT_MASK = 4,    /* iBOT mask of a sample: (epoch, sample id, 0) */
    DD_RANDOM_ROPE_RESCALE = 5, /* RoPE rescale of a forward: (iteration, crop size index, 0) */
    DD_RANDOM_SYNTHETIC = 6,    /* synthetic images: (source index, sample id, 0) */
    DD_RANDOM_SOURCE_MIX = 7,   /* which source a batch draws from: (iteration, 0, 0) */
} DdRandomPurpose;
DdRandom dd_random_keyed(uint64_t seed, DdRandomPurpose purpose, uint64_t a, uint64_t b, uint64_t c);
uint64_t dd_random_u64(DdRandom *r);
/* Uniform in [0, 1) with 53 bits. */
double dd_random_uniform(DdRandom *r);
/* Standard normal (Box-Muller). */
double dd_random_normal(DdRandom *r);
/* Normal(0, std) truncated to [-2 std, 2 std] by rejection. */
double dd_random_truncated_normal(DdRandom *r, double std);

#endif
