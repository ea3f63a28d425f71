/*
 * random.c - SplitMix64 streams (see random.h).
 */
#include "nn/random.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

DdRandom dd_random_seed(uint64_t seed, uint64_t stream) {
    uint64_t mix = seed ^ (stream * 0xD1B54A32D192ED03ull);
    DdRandom r = {splitmix64(&mix)};
    return r;
}

DdRandom dd_random_keyed(uint64_t seed, DdRandomPurpose purpose, uint64_t a, uint64_t b, uint64_t c) {
    /* each coordinate passes through the mixer, so nearby keys give unrelated streams */
    uint64_t key = seed;
    const uint64_t parts[4] = {(uint64_t)purpose, a, b, c};
    for (int i = 0; i < 4; i++) {
        key ^= parts[i] + 0x9E3779B97F4A7C15ull + (key << 6) + (key >> 2);
        key = splitmix64(&key);
    }
    DdRandom r = {key};
    return r;
}

uint64_t dd_random_u64(DdRandom *r) { return splitmix64(&r->state); }

double dd_random_uniform(DdRandom *r) { return (double)(dd_random_u64(r) >> 11) * 0x1.0p-53; }

double dd_random_normal(DdRandom *r) {
    double u1 = dd_random_uniform(r), u2 = dd_random_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double dd_random_truncated_normal(DdRandom *r, double std) {
    for (;;) {
        double z = dd_random_normal(r);
        if (fabs(z) <= 2.0) return z * std;
    }
}
