/*
 * sampler.c - seeded per-epoch permutations (a cycle-walked Feistel
 * network), batches mixed from several sources by weight, rank slices, and
 * the RoPE rescale of a step (see sampler.h).
 */
#include "data/sampler.h"

#include <math.h>
#include <string.h>

#include "nn/random.h"

enum { FEISTEL_ROUNDS = 6 };

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t data_permutation(uint64_t seed, int source, uint64_t epoch, uint64_t n, uint64_t position) {
    if (n <= 1) return 0;
    int bits = 64 - __builtin_clzll(n - 1);   /* n - 1 fits in `bits` bits */
    int half = (bits + 1) / 2;
    uint64_t mask = half >= 64 ? ~0ull : (1ull << half) - 1;
    uint64_t keys[FEISTEL_ROUNDS];
    DdRandom r = dd_random_keyed(seed, DD_RANDOM_SAMPLER, (uint64_t)source, epoch, 0);
    for (int i = 0; i < FEISTEL_ROUNDS; i++) keys[i] = dd_random_u64(&r);
    uint64_t x = position;
    do {   /* a bijection of [0, 4^half); walking its cycle from x lands back in [0, n) */
        uint64_t left = (x >> half) & mask, right = x & mask;
        for (int i = 0; i < FEISTEL_ROUNDS; i++) {
            uint64_t next = left ^ (mix64(right ^ keys[i]) & mask);
            left = right;
            right = next;
        }
        x = (left << half) | right;
    } while (x >= n);
    return x;
}

int data_sampler_init(DataSampler *s, uint64_t seed, int global_batch, const uint64_t *counts, const double *weights,
                      int source_count, DdError *err) {
    memset(s, 0, sizeof *s);
    if (source_count < 1 || source_count > DATA_MAX_SOURCES)
        return dd_fail(err, "sampler: %d sources, expected 1 to %d", source_count, DATA_MAX_SOURCES);
    if (global_batch < 1) return dd_fail(err, "sampler: global batch %d, expected at least 1", global_batch);
    s->seed = seed;
    s->global_batch = global_batch;
    s->source_count = source_count;
    double total = 0;
    for (int i = 0; i < source_count; i++) {
        if (counts[i] == 0) return dd_fail(err, "sampler: source %d has no samples", i);
        if (!(weights[i] > 0)) return dd_fail(err, "sampler: source %d has weight %g, expected > 0", i, weights[i]);
        s->counts[i] = counts[i];
        s->base[i] = i ? s->base[i - 1] + counts[i - 1] : 0;
        total += weights[i];
    }
    double running = 0;
    for (int i = 0; i < source_count; i++) {
        running += weights[i];
        s->cumulative[i] = running / total;
    }
    s->cumulative[source_count - 1] = 1.0;
    pthread_mutex_init(&s->lock, NULL);
    return 0;
}

void data_sampler_destroy(DataSampler *s) {
    if (s->source_count > 0) pthread_mutex_destroy(&s->lock);
    s->source_count = 0;
}

/* Which source serves batch `iteration` (no memo). */
static int draw_source(const DataSampler *s, uint64_t iteration) {
    if (s->source_count == 1) return 0;
    DdRandom r = dd_random_keyed(s->seed, DD_RANDOM_SOURCE_MIX, iteration, 0, 0);
    double u = dd_random_uniform(&r);
    int i = 0;
    while (i + 1 < s->source_count && u >= s->cumulative[i]) i++;
    return i;
}

int data_sampler_batch_source(DataSampler *s, uint64_t iteration, uint64_t *batch_in_source) {
    if (s->source_count == 1) {
        *batch_in_source = iteration;
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    if (iteration < s->memo_iteration) {
        s->memo_iteration = 0;
        memset(s->memo_batches, 0, sizeof s->memo_batches);
    }
    for (; s->memo_iteration < iteration; s->memo_iteration++) s->memo_batches[draw_source(s, s->memo_iteration)]++;
    int source = draw_source(s, iteration);
    *batch_in_source = s->memo_batches[source];
    pthread_mutex_unlock(&s->lock);
    return source;
}

void data_sampler_slice(DataSampler *s, uint64_t iteration, int begin, int end, DataSampleRef *out) {
    uint64_t batch = 0;
    int source = data_sampler_batch_source(s, iteration, &batch);
    const uint64_t n = s->counts[source];
    for (int i = begin; i < end; i++) {
        uint64_t position = batch * (uint64_t)s->global_batch + (uint64_t)i;
        uint64_t epoch = position / n;
        DataSampleRef *ref = &out[i - begin];
        memset(ref, 0, sizeof *ref);   /* padding too: slices compare with memcmp */
        ref->sample_id = s->base[source] + data_permutation(s->seed, source, epoch, n, position % n);
        ref->epoch = epoch;
        ref->source = source;
    }
}

float data_rope_rescale(uint64_t seed, uint64_t iteration, int crop_size_index, float min, float max) {
    if (!(max > min)) return min;
    DdRandom r = dd_random_keyed(seed, DD_RANDOM_ROPE_RESCALE, iteration, (uint64_t)crop_size_index, 0);
    double u = dd_random_uniform(&r);
    return (float)exp(log((double)min) + u * (log((double)max) - log((double)min)));
}
