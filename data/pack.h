/*
 * pack.h - turning an image folder into HDF5 shards (`distill pack`).
 *
 * Shard i covers files [i * shard_size, (i + 1) * shard_size) of the
 * folder's sorted listing (the folder source's order and labels) and is
 * written as OUT/shard-NNNNN.h5 (format in shard.h), under a temporary name
 * renamed when complete. A file that cannot be read or decoded is reported
 * and skipped, never fatal. Running pack again keeps every shard that is
 * already complete for the same listing and removes temporaries a killed
 * run left behind, so an interrupted pack picks up where it stopped. (One
 * pack per output folder at a time.)
 */
#ifndef DD_DATA_PACK_H
#define DD_DATA_PACK_H

#include <stdint.h>

#include "nn/error.h"

typedef struct DataPackProgress {
    uint64_t files_done, files_total;
    uint64_t skipped;
    uint64_t bytes;             /* encoded bytes packed so far */
    int shard, shard_count;     /* the shard being written */
} DataPackProgress;

typedef struct DataPackOptions {
    const char *source;         /* the image folder */
    const char *out;            /* the shard folder (created if missing) */
    uint64_t shard_size;        /* files per shard */
    int verify;                 /* 1: decode every image; 0: read only its header */
    /* Called after every file; may be NULL. */
    void (*progress)(void *context, const DataPackProgress *progress);
    /* Receives a line per skipped file or kept shard; NULL: stderr. */
    void (*log)(void *context, const char *line);
    void *context;
} DataPackOptions;

typedef struct DataPackResult {
    uint64_t files, packed, skipped, bytes;
    int shards_written, shards_kept;
} DataPackResult;

int data_pack(const DataPackOptions *options, DataPackResult *result, DdError *err);

#endif
