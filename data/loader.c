/*
 * loader.c - the loading threads and their bounded ring of batches (see
 * loader.h).
 *
 * The ring has prefetch + 1 slots; slot k % depth holds iteration k. A slot
 * is FILLING (threads claim its samples one by one), READY (every sample
 * built, masks made), or HANDED_OUT (the caller is using it). Releasing a
 * slot reassigns it to iteration k + depth. One mutex guards the ring; the
 * work done under it is a few comparisons per sample, against milliseconds
 * of decoding and cropping outside it.
 */
#include "data/loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum SlotState { SLOT_FILLING, SLOT_READY, SLOT_HANDED_OUT };

typedef struct Slot {
    DataBatch batch;             /* first: a DataBatch pointer is its slot's pointer */
    DataSampleRef *refs;         /* [count]: the sampler's choices for this iteration */
    int state;
    int next_sample;             /* first sample no thread has claimed */
    int done;                    /* samples finished */
} Slot;

typedef struct Worker {
    DataLoader *loader;
    DataScratch scratch;
    pthread_t thread;
    int started;
} Worker;

struct DataLoader {
    DataConfig data;
    CropConfig crops;
    DataLoaderOptions options;   /* data and crops point at the copies above */
    DataSet *set;
    DataSampler sampler;
    int sampler_ready;
    Slot *slots;
    int depth;
    Worker *workers;
    int worker_count;
    float *crop_memory;          /* every slot's crops, one allocation */
    pthread_mutex_t lock;
    pthread_cond_t work, ready;
    uint64_t next_iteration;     /* the next to hand out */
    int stopping;
    int failed;
    DdError failure;
};

int data_build_sample(DataSet *set, const DataAugmentConfig *augment, const CropConfig *crops, uint64_t seed,
                      uint64_t epoch, uint64_t sample_id, int first_crop, int crop_count, float *const *outputs,
                      DataScratch *scratch, DataSample *sample, DdError *err) {
    if (data_set_load(set, sample_id, scratch, sample, err)) return -1;
    for (int k = 0; k < crop_count; k++)
        if (data_build_crop(augment, crops, seed, epoch, sample_id, first_crop + k, &scratch->image, outputs[k],
                            &scratch->crop, err))
            return dd_fail_context(err, "sample id %llu, crop %d", (unsigned long long)sample_id, first_crop + k);
    return 0;
}

/* Points slot at iteration (lock held). */
static void assign(DataLoader *l, Slot *slot, uint64_t iteration) {
    slot->batch.iteration = iteration;
    slot->next_sample = 0;
    slot->done = 0;
    if (slot->batch.count == 0) {
        slot->batch.source = data_sampler_batch_source(&l->sampler, iteration, &(uint64_t){0});
        slot->state = SLOT_READY;
        return;
    }
    data_sampler_slice(&l->sampler, iteration, l->options.begin, l->options.end, slot->refs);
    slot->batch.source = slot->refs[0].source;
    slot->state = SLOT_FILLING;
}

/* Builds sample i of slot (no lock held). */
static int build(DataLoader *l, Worker *w, Slot *slot, int i, DdError *err) {
    DataBatch *b = &slot->batch;
    const DataSampleRef *ref = &slot->refs[i];
    float *outputs[128];
    const size_t global_floats = (size_t)3 * b->global_size * b->global_size;
    const size_t local_floats = (size_t)3 * b->local_size * b->local_size;
    for (int g = 0; g < b->global_count; g++) outputs[g] = b->global_crops + ((size_t)g * b->count + i) * global_floats;
    for (int c = 0; c < b->local_count; c++)
        outputs[b->global_count + c] = b->local_crops + ((size_t)c * b->count + i) * local_floats;
    DataSample sample;
    if (data_build_sample(l->set, &l->data.augment, &l->crops, l->options.seed, ref->epoch, ref->sample_id, 0,
                          b->global_count + b->local_count, outputs, &w->scratch, &sample, err))
        return dd_fail_context(err, "iteration %llu", (unsigned long long)b->iteration);
    b->samples[i] = (DataSampleInfo){.sample_id = ref->sample_id, .epoch = ref->epoch, .loaded_id = sample.loaded_id,
                                     .label = sample.label, .source = ref->source};
    return 0;
}

/* The filling slot with the lowest iteration that has an unclaimed sample. */
static Slot *find_work(DataLoader *l) {
    Slot *best = NULL;
    for (int s = 0; s < l->depth; s++) {
        Slot *slot = &l->slots[s];
        if (slot->state == SLOT_FILLING && slot->next_sample < slot->batch.count &&
            (!best || slot->batch.iteration < best->batch.iteration))
            best = slot;
    }
    return best;
}

static void fail_locked(DataLoader *l, const DdError *err) {
    if (!l->failed) l->failure = *err;
    l->failed = 1;
    pthread_cond_broadcast(&l->ready);
}

static void *work(void *argument) {
    Worker *w = argument;
    DataLoader *l = w->loader;
    pthread_mutex_lock(&l->lock);
    while (!l->stopping) {
        Slot *slot = l->failed ? NULL : find_work(l);
        if (!slot) {
            pthread_cond_wait(&l->work, &l->lock);
            continue;
        }
        int i = slot->next_sample++;
        pthread_mutex_unlock(&l->lock);
        DdError err;
        int status = build(l, w, slot, i, &err);
        pthread_mutex_lock(&l->lock);
        if (status) {
            fail_locked(l, &err);
            continue;
        }
        if (++slot->done < slot->batch.count) continue;
        if (l->options.mask_hook) {
            pthread_mutex_unlock(&l->lock);
            status = l->options.mask_hook(l->options.mask_context, l->options.seed, &slot->batch, &err);
            pthread_mutex_lock(&l->lock);
            if (status) {
                dd_fail_context(&err, "mask hook, iteration %llu", (unsigned long long)slot->batch.iteration);
                fail_locked(l, &err);
                continue;
            }
        }
        slot->state = SLOT_READY;
        pthread_cond_broadcast(&l->ready);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

static int check_options(const DataLoaderOptions *o, DdError *err) {
    if (!o->data || !o->crops) return dd_fail(err, "data loader: data and crops configs are required");
    if (o->global_batch < 1 || o->begin < 0 || o->begin > o->end || o->end > o->global_batch)
        return dd_fail(err, "data loader: slice [%d, %d) of a global batch of %d, expected 0 <= begin <= end <= batch",
                       o->begin, o->end, o->global_batch);
    if (o->crops->global_count + o->crops->local_count > 128)
        return dd_fail(err, "data loader: %d crops per sample, expected at most 128",
                       o->crops->global_count + o->crops->local_count);
    return 0;
}

/* The ring: slots, their sample tables and one block of crops. */
static int allocate_ring(DataLoader *l, DdError *err) {
    const int count = l->options.end - l->options.begin;
    const int G = l->crops.global_count, L = l->options.build_locals ? l->crops.local_count : 0;
    const size_t global_floats = (size_t)G * count * 3 * l->crops.global_size * l->crops.global_size;
    const size_t local_floats = (size_t)L * count * 3 * l->crops.local_size * l->crops.local_size;
    l->depth = l->data.loader.prefetch + 1;
    l->slots = calloc((size_t)l->depth, sizeof *l->slots);
    l->crop_memory = malloc(((global_floats + local_floats) * l->depth + 1) * sizeof(float));
    if (!l->slots || !l->crop_memory)
        return dd_fail(err, "data loader: out of memory for %d batches of %zu floats", l->depth,
                       global_floats + local_floats);
    for (int s = 0; s < l->depth; s++) {
        Slot *slot = &l->slots[s];
        DataBatch *b = &slot->batch;
        *b = (DataBatch){.first = l->options.begin, .count = count, .global_count = G,
                         .global_size = l->crops.global_size, .local_count = L, .local_size = l->crops.local_size,
                         .mask_bytes = l->options.mask_hook ? l->options.mask_bytes : 0};
        b->global_crops = l->crop_memory + (global_floats + local_floats) * s;
        b->local_crops = L ? b->global_crops + global_floats : NULL;
        b->samples = calloc((size_t)count + 1, sizeof *b->samples);
        slot->refs = calloc((size_t)count + 1, sizeof *slot->refs);
        if (b->mask_bytes) b->masks = calloc(1, b->mask_bytes);
        if (!b->samples || !slot->refs || (b->mask_bytes && !b->masks))
            return dd_fail(err, "data loader: out of memory for the sample tables");
    }
    return 0;
}

int data_loader_open(DataLoader **out, const DataLoaderOptions *options, DdError *err) {
    *out = NULL;
    if (check_options(options, err)) return -1;
    DataLoader *l = calloc(1, sizeof *l);
    if (!l) return dd_fail(err, "data loader: out of memory");
    l->data = *options->data;
    l->crops = *options->crops;
    l->options = *options;
    l->options.data = &l->data;
    l->options.crops = &l->crops;
    l->next_iteration = options->first_iteration;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->ready, NULL);
    if (data_set_open(&l->set, &l->data, options->log, options->log_context, err)) goto fail;
    uint64_t counts[DATA_MAX_SOURCES];
    for (int i = 0; i < l->set->source_count; i++) counts[i] = l->set->sources[i]->count;
    if (data_sampler_init(&l->sampler, options->seed, options->global_batch, counts, l->set->weights,
                          l->set->source_count, err))
        goto fail;
    l->sampler_ready = 1;
    if (allocate_ring(l, err)) goto fail;
    for (int s = 0; s < l->depth; s++) {   /* iteration k lives in slot k % depth */
        uint64_t iteration = l->next_iteration + (uint64_t)s;
        assign(l, &l->slots[iteration % (uint64_t)l->depth], iteration);
    }
    l->worker_count = l->data.loader.threads;
    l->workers = calloc((size_t)l->worker_count, sizeof *l->workers);
    if (!l->workers) {
        dd_fail(err, "data loader: out of memory");
        goto fail;
    }
    for (int t = 0; t < l->worker_count; t++) {
        Worker *w = &l->workers[t];
        w->loader = l;
        if (data_scratch_init(&w->scratch, err)) goto fail;
        if (pthread_create(&w->thread, NULL, work, w) != 0) {
            dd_fail(err, "data loader: cannot start loading thread %d", t);
            goto fail;
        }
        w->started = 1;
    }
    *out = l;
    return 0;
fail:
    data_loader_close(l);
    return -1;
}

int data_loader_next(DataLoader *l, const DataBatch **batch, DdError *err) {
    pthread_mutex_lock(&l->lock);
    Slot *slot = &l->slots[l->next_iteration % (uint64_t)l->depth];
    while (slot->state != SLOT_READY && !l->failed) pthread_cond_wait(&l->ready, &l->lock);
    if (slot->state != SLOT_READY) {
        if (err) *err = l->failure;
        pthread_mutex_unlock(&l->lock);
        return -1;
    }
    slot->state = SLOT_HANDED_OUT;
    l->next_iteration++;
    pthread_mutex_unlock(&l->lock);
    *batch = &slot->batch;
    return 0;
}

void data_loader_release(DataLoader *l, const DataBatch *batch) {
    Slot *slot = (Slot *)batch;   /* the batch is its slot's first member */
    pthread_mutex_lock(&l->lock);
    if (slot->state == SLOT_HANDED_OUT) {
        assign(l, slot, slot->batch.iteration + (uint64_t)l->depth);
        pthread_cond_broadcast(&l->work);
    }
    pthread_mutex_unlock(&l->lock);
}

void data_loader_close(DataLoader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->lock);
    l->stopping = 1;
    pthread_cond_broadcast(&l->work);
    pthread_cond_broadcast(&l->ready);
    pthread_mutex_unlock(&l->lock);
    for (int t = 0; t < l->worker_count && l->workers; t++) {
        if (l->workers[t].started) pthread_join(l->workers[t].thread, NULL);
        data_scratch_free(&l->workers[t].scratch);
    }
    free(l->workers);
    for (int s = 0; l->slots && s < l->depth; s++) {
        free(l->slots[s].batch.samples);
        free(l->slots[s].batch.masks);
        free(l->slots[s].refs);
    }
    free(l->slots);
    free(l->crop_memory);
    if (l->sampler_ready) data_sampler_destroy(&l->sampler);
    data_set_close(l->set);
    pthread_cond_destroy(&l->work);
    pthread_cond_destroy(&l->ready);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

DataSet *data_loader_data_set(DataLoader *l) { return l->set; }
