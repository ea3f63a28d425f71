/*
 * dataset.c - the sources of a config as one id space, and loading with
 * replacement of bad samples (see dataset.h).
 */
#include "data/dataset.h"

#include <stdlib.h>

int data_set_open(DataSet **out, const DataConfig *config, DataLogFunction log, void *log_context, DdError *err) {
    *out = NULL;
    DataSet *set = calloc(1, sizeof *set);
    if (!set) return dd_fail(err, "out of memory for a data set");
    data_problems_init(&set->problems, log, log_context);
    const DataSourceConfig *sources = NULL;
    int count = data_config_sources(config, &sources);
    for (int i = 0; i < count; i++) {
        if (data_source_open(&set->sources[i], &sources[i], i, &set->problems, err)) {
            data_set_close(set);
            return dd_fail_context(err, "data source %d", i);
        }
        set->source_count = i + 1;
        set->weights[i] = sources[i].weight;
        set->base[i + 1] = set->base[i] + set->sources[i]->count;
    }
    *out = set;
    return 0;
}

void data_set_close(DataSet *set) {
    if (!set) return;
    for (int i = 0; i < set->source_count; i++) data_source_close(set->sources[i]);
    data_problems_destroy(&set->problems);
    free(set);
}

uint64_t data_set_count(const DataSet *set) { return set->base[set->source_count]; }

int data_set_locate(const DataSet *set, uint64_t sample_id, uint64_t *local_id) {
    int s = 0;
    while (s + 1 < set->source_count && sample_id >= set->base[s + 1]) s++;
    *local_id = sample_id - set->base[s];
    return s;
}

int data_set_load(DataSet *set, uint64_t sample_id, DataScratch *scratch, DataSample *sample, DdError *err) {
    if (sample_id >= data_set_count(set))
        return dd_fail(err, "sample id %llu, expected fewer than %llu", (unsigned long long)sample_id,
                       (unsigned long long)data_set_count(set));
    uint64_t local = 0;
    const int s = data_set_locate(set, sample_id, &local);
    DataSource *source = set->sources[s];
    *sample = (DataSample){.sample_id = sample_id, .source = s};
    const uint64_t tries = source->count < DATA_MAX_REPLACEMENTS ? source->count : DATA_MAX_REPLACEMENTS;
    for (uint64_t attempt = 0; attempt < tries; attempt++) {
        DataProblemKind kind = DATA_PROBLEM_UNREADABLE;
        uint64_t next = local + 1;
        DdError why;
        if (source->ops->load(source, local, scratch, &scratch->image, &sample->label, &kind, &next, &why) == 0) {
            sample->loaded_id = set->base[s] + local;
            return 0;
        }
        if (next >= source->count) next = 0;
        data_problems_report(&set->problems, kind, "%s (sample id %llu); trying sample id %llu instead",
                             why.message, (unsigned long long)(set->base[s] + local),
                             (unsigned long long)(set->base[s] + next));
        local = next;
    }
    return dd_fail(err, "source %d (%s): no valid sample among the %llu from sample id %llu on", s, source->spec,
                   (unsigned long long)tries, (unsigned long long)sample_id);
}
