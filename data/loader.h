/*
 * loader.h - loading threads that decode and augment batches ahead of
 * compute, into a bounded ring of `prefetch` preallocated batches.
 *
 * A loader serves one rank: every iteration it builds the slice [begin, end)
 * of the global batch (sampler.h), each sample's crops (augment.h), and, if
 * a mask hook is given, the batch's iBOT masks. Threads take samples one at
 * a time from the oldest unfinished batch, so a batch completes as soon as
 * possible and the order of batches is the order of iterations. Which thread
 * builds a sample changes nothing: its crops are a pure function of (seed,
 * epoch, sample id, crop index) and its pixels.
 *
 *     DataLoader *loader;
 *     data_loader_open(&loader, &options, &err);
 *     for (k = first; ...; k++) {
 *         const DataBatch *batch;
 *         if (data_loader_next(loader, &batch, &err)) ...;     // blocks until batch k is ready
 *         forward(batch->global_crops ...);
 *         data_loader_release(loader, batch);                  // its memory now builds batch k + prefetch
 *     }
 *     data_loader_close(loader);
 *
 * Memory: the ring and each thread's scratch are allocated at open; in the
 * steady state the threads allocate nothing beyond their decode buffers
 * growing to the largest image they meet.
 */
#ifndef DD_DATA_LOADER_H
#define DD_DATA_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "data/data_config.h"
#include "data/dataset.h"
#include "data/problems.h"
#include "data/sampler.h"
#include "nn/error.h"

typedef struct DataSampleInfo {
    uint64_t sample_id;     /* the sampler's choice (global id); keys its crops and its iBOT mask */
    uint64_t epoch;         /* of its source */
    uint64_t loaded_id;     /* whose pixels were used: sample_id unless that one was bad */
    int32_t label;
    int source;
} DataSampleInfo;

/* One rank's slice of one batch. Crops are crop-major: all samples' crop 0,
 * then all samples' crop 1 ..., so crops g of the batch are one
 * [count, 3, S, S] tensor, the [B, C, H, W] images of a ViT forward. */
typedef struct DataBatch {
    uint64_t iteration;
    int source;              /* the source every sample of the batch comes from */
    int first;               /* position of samples[0] in the global batch (the slice's begin) */
    int count;               /* samples in the slice */
    DataSampleInfo *samples; /* [count] */
    int global_count, global_size;
    int local_count, local_size;   /* local_count 0 for a teacher loader */
    float *global_crops;     /* [global_count, count, 3, global_size, global_size] */
    float *local_crops;      /* [local_count, count, 3, local_size, local_size], NULL without locals */
    void *masks;             /* mask_bytes for the mask hook to fill, NULL without a hook */
    size_t mask_bytes;
} DataBatch;

/* Fills batch->masks (batch->mask_bytes bytes) for the samples of the batch,
 * once per batch, on a loading thread, before the batch is handed out. The
 * masks must be a pure function of (seed, samples[i].epoch,
 * samples[i].sample_id): DD_RANDOM_IBOT_MASK. Returns 0, or -1 with err. */
typedef int (*DataMaskHook)(void *context, uint64_t seed, DataBatch *batch, DdError *err);

typedef struct DataLoaderOptions {
    const DataConfig *data;        /* sources, augmentation, threads, prefetch (copied at open) */
    const CropConfig *crops;       /* copied at open */
    uint64_t seed;                 /* the run seed */
    int global_batch;
    int begin, end;                /* this rank's slice of every global batch */
    int build_locals;              /* 1 for a student, 0 for the teacher (global crops only) */
    uint64_t first_iteration;      /* where to start (resume) */
    DataMaskHook mask_hook;        /* NULL: no masks */
    void *mask_context;
    size_t mask_bytes;             /* per batch */
    DataLogFunction log;           /* problem reports; NULL: stderr */
    void *log_context;
} DataLoaderOptions;

typedef struct DataLoader DataLoader;

int data_loader_open(DataLoader **loader, const DataLoaderOptions *options, DdError *err);
/* The next batch in iteration order; blocks until it is built. Fails when a
 * loading thread met an error it cannot step over (a source with no valid
 * sample left, out of memory, the mask hook failing). */
int data_loader_next(DataLoader *loader, const DataBatch **batch, DdError *err);
/* Hands the batch's memory back, to build a later batch. */
void data_loader_release(DataLoader *loader, const DataBatch *batch);
/* Stops the threads and frees everything; batches handed out become invalid. */
void data_loader_close(DataLoader *loader);

/* The loader's data set (its sources and problem counts). */
DataSet *data_loader_data_set(DataLoader *loader);

/* Builds one sample's crops outside a loader: loads sample_id (with
 * replacement), then crops first_crop .. first_crop + crop_count - 1 into
 * crops[k] (each [3, S, S] of its kind's size). For tests and benches. */
int data_build_sample(DataSet *set, const DataAugmentConfig *augment, const CropConfig *crops, uint64_t seed,
                      uint64_t epoch, uint64_t sample_id, int first_crop, int crop_count, float *const *outputs,
                      DataScratch *scratch, DataSample *sample, DdError *err);

#endif
