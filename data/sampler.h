/*
 * sampler.h - which samples batch k holds, as a pure function of (run
 * seed, k): any rank computes its slice of any batch, no messages.
 *
 * Each source is walked through a seeded permutation per epoch
 * (dd_random_keyed(seed, DD_RANDOM_SAMPLER, source, epoch, 0)): a Feistel
 * network over the next power of four, cycle-walked into [0, count), so
 * position p of epoch e maps to its sample in O(1) without storing the
 * permutation. With several sources, batch k draws all its samples from one
 * source, chosen by weight from dd_random_keyed(seed, DD_RANDOM_SOURCE_MIX,
 * k, 0, 0) (the paper draws 10% of its batches from ImageNet-1k alone); a
 * source's stream advances only on the batches it serves, so every source
 * still visits each of its samples once per epoch.
 *
 * The global batch's stream position of sample i of batch k in source s is
 * (batches source s served before k) * global_batch + i; its epoch is that
 * position / count, its place in the epoch's permutation the remainder.
 */
#ifndef DD_DATA_SAMPLER_H
#define DD_DATA_SAMPLER_H

#include <pthread.h>
#include <stdint.h>

#include "data/data_config.h"
#include "nn/error.h"

typedef struct DataSampleRef {
    uint64_t sample_id;     /* global id (the data set's id space) */
    uint64_t epoch;         /* of its source */
    int source;
} DataSampleRef;

typedef struct DataSampler {
    uint64_t seed;
    int global_batch;
    int source_count;
    uint64_t counts[DATA_MAX_SOURCES];
    uint64_t base[DATA_MAX_SOURCES];          /* global id of each source's sample 0 */
    double cumulative[DATA_MAX_SOURCES];      /* normalised running sum of the weights */
    /* Batches each source served before iteration memo_iteration: a cache
     * that makes walking forward O(1) per batch (random access restarts
     * from 0, which costs a few ms per million iterations). */
    pthread_mutex_t lock;
    uint64_t memo_iteration;
    uint64_t memo_batches[DATA_MAX_SOURCES];
} DataSampler;

int data_sampler_init(DataSampler *sampler, uint64_t seed, int global_batch, const uint64_t *counts,
                      const double *weights, int source_count, DdError *err);
void data_sampler_destroy(DataSampler *sampler);

/* The source batch `iteration` draws from, and how many batches it served before. */
int data_sampler_batch_source(DataSampler *sampler, uint64_t iteration, uint64_t *batch_in_source);

/* Samples begin .. end-1 of batch `iteration` (0 <= begin <= end <= global_batch) into out[end - begin]. */
void data_sampler_slice(DataSampler *sampler, uint64_t iteration, int begin, int end, DataSampleRef *out);

/* Position `position` (< n) of epoch `epoch`'s permutation of source `source`'s n samples. */
uint64_t data_permutation(uint64_t seed, int source, uint64_t epoch, uint64_t n, uint64_t position);

/* The RoPE rescale factor of the forwards of step `iteration` at crop size
 * crop_size_index (0 global, 1 local): log-uniform in [min, max], from
 * dd_random_keyed(seed, DD_RANDOM_ROPE_RESCALE, iteration, crop_size_index, 0). */
float data_rope_rescale(uint64_t seed, uint64_t iteration, int crop_size_index, float min, float max);

#endif
