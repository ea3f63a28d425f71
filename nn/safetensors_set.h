/*
 * safetensors_set.h - the tensors of a model saved as one safetensors file
 * or sharded across several, looked up by name as one collection.
 *
 * A set is opened from
 *   - a .safetensors file,
 *   - a sharded index, model.safetensors.index.json: {"metadata": {...},
 *     "weight_map": {"tensor name": "model-00001-of-00002.safetensors", ...}};
 *     the shards sit in the index's folder (a shard name holding '/' or
 *     naming "." or ".." is refused), every listed tensor must be in the
 *     shard the index names, and tensors a shard holds beyond the index are
 *     ignored;
 *   - a folder holding model.safetensors.index.json or else model.safetensors
 *     (a Hugging Face model folder).
 * Every shard is memory-mapped and checked as in safetensors.h.
 */
#ifndef DD_NN_SAFETENSORS_SET_H
#define DD_NN_SAFETENSORS_SET_H

#include "nn/safetensors.h"

enum { SAFETENSORS_MAX_SHARDS = 4096 };

/* One tensor of the set and the file it is in. */
typedef struct SafetensorsEntry {
    const SafetensorsTensor *tensor;
    const SafetensorsFile *file;
} SafetensorsEntry;

typedef struct SafetensorsSet {
    char path[TENSOR_FILE_PATH_MAX];   /* what was opened */
    SafetensorsFile *files;            /* [file_count] */
    int file_count;
    SafetensorsEntry *entries;         /* [count], sorted by name */
    int count;
} SafetensorsSet;

int safetensors_set_open(SafetensorsSet *set, const char *path, DdError *err);
void safetensors_set_close(SafetensorsSet *set);

/* The entry called name, or NULL. */
const SafetensorsEntry *safetensors_set_find(const SafetensorsSet *set, const char *name);

/* Reads tensor name into out[count of expected] after checking its shape;
 * a missing tensor is an error that names the set, the tensor and the shape
 * that was expected. */
int safetensors_set_read(const SafetensorsSet *set, const char *name, const TensorShape *expected, float *out,
                         DdError *err);

/* ---- the sharded index on its own (the fuzzer drives this) --------------------------- */

typedef struct SafetensorsIndexWeight {
    char *name;
    int shard;                         /* into SafetensorsIndex.shards */
} SafetensorsIndexWeight;

typedef struct SafetensorsIndex {
    char **shards;                     /* distinct shard file names, in order of first mention */
    int shard_count;
    SafetensorsIndexWeight *weights;   /* sorted by name */
    int weight_count;
} SafetensorsIndex;

/* Parses the text of an index (path names it in messages). */
int safetensors_index_parse(SafetensorsIndex *index, const char *text, size_t length, const char *path,
                            DdError *err);
void safetensors_index_free(SafetensorsIndex *index);

#endif
