/*
 * dataset.h - the sources of a data config, one id space over all of them
 * (source 0's samples first, then source 1's ...), and loading a sample with
 * the bad-input policy: a sample that cannot be read or decoded is
 * reported with its file and sample id, counted, and replaced by the next
 * valid sample of the same source (id + 1, + 2, ... wrapping; past a broken
 * shard at once). Every rank meets the same bad files, so every rank makes
 * the same replacement: the choice is deterministic, with no message.
 */
#ifndef DD_DATA_DATASET_H
#define DD_DATA_DATASET_H

#include <stdint.h>

#include "data/data_config.h"
#include "data/problems.h"
#include "data/source.h"
#include "nn/error.h"

enum { DATA_MAX_REPLACEMENTS = 1024 };   /* bad samples in a row before a load fails */

typedef struct DataSet {
    DataSource *sources[DATA_MAX_SOURCES];
    uint64_t base[DATA_MAX_SOURCES + 1];   /* global id of each source's first sample; base[n] = total */
    double weights[DATA_MAX_SOURCES];
    int source_count;
    DataProblems problems;
} DataSet;

/* What a load gave. */
typedef struct DataSample {
    uint64_t sample_id;     /* the id asked for (global) */
    uint64_t loaded_id;     /* the id whose pixels these are: sample_id unless it was replaced */
    int32_t label;
    int source;
} DataSample;

/* Opens every source of config (the synthetic default when it lists none).
 * log receives problem reports (NULL: stderr). */
int data_set_open(DataSet **set, const DataConfig *config, DataLogFunction log, void *log_context, DdError *err);
void data_set_close(DataSet *set);

uint64_t data_set_count(const DataSet *set);
/* The source holding global id (its index), and the id inside it. */
int data_set_locate(const DataSet *set, uint64_t sample_id, uint64_t *local_id);

/* Loads sample_id into scratch->image, replacing it when bad (see above).
 * Fails only when DATA_MAX_REPLACEMENTS samples in a row are bad. */
int data_set_load(DataSet *set, uint64_t sample_id, DataScratch *scratch, DataSample *sample, DdError *err);

#endif
