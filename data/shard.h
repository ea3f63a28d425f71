/*
 * shard.h - the HDF5 shard format of `distill pack`, and its writer.
 *
 * A shard holds the encoded bytes of up to --shard-size images of an image
 * folder, unchanged (no re-encoding), and the index to find them:
 *
 *     images        uint8  [total bytes]  chunked (64 KiB), the files one after another
 *     offsets       uint64 [n + 1]        image i is images[offsets[i] : offsets[i + 1]]
 *     labels        int32  [n]            class index (position of CLASS in the sorted folder)
 *     names         uint8  [name bytes]   "CLASS/FILE" of each image, NUL-terminated, concatenated
 *     name_offsets  uint64 [n + 1]
 *     class_names   uint8  [..]           every class name of the folder, NUL-terminated
 *   root attributes:
 *     format "dinodistill-shard", version 1, class_count,
 *     first_file, file_count, total_files: the shard covers files
 *     [first_file, first_file + file_count) of the folder's sorted listing
 *     of total_files (unreadable ones among them are left out, so n may be
 *     smaller than file_count).
 *
 * Written to PATH.tmp.PID and renamed to PATH when complete, so a PATH that
 * exists is a whole shard, and an interrupted pack can be run again.
 */
#ifndef DD_DATA_SHARD_H
#define DD_DATA_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "nn/error.h"

#define SHARD_FORMAT "dinodistill-shard"
enum {
    SHARD_VERSION = 1,
    SHARD_CHUNK_BYTES = 64 * 1024,
    SHARD_PATH_MAX = 4096,
};

/* What a shard covers (its root attributes). */
typedef struct ShardInfo {
    uint64_t first_file, file_count, total_files;
    uint64_t class_count;
    uint64_t images;          /* n, when read back */
} ShardInfo;

typedef struct ShardWriter {
    int64_t file;             /* hid_t of the temporary file */
    int64_t images;           /* hid_t of the extendable images dataset */
    char path[SHARD_PATH_MAX], temp_path[SHARD_PATH_MAX + 32];
    unsigned char *pending;   /* bytes not yet appended to images */
    size_t pending_size, pending_capacity;
    uint64_t written;         /* bytes in the images dataset */
    uint64_t *offsets;        /* [count + 1] */
    int32_t *labels;
    uint64_t *name_offsets;   /* [count + 1] */
    char *names;
    size_t count, capacity, names_size, names_capacity;
} ShardWriter;

int shard_writer_open(ShardWriter *writer, const char *path, DdError *err);
/* Appends one encoded image with its label and name ("CLASS/FILE"). */
int shard_writer_add(ShardWriter *writer, const unsigned char *bytes, size_t size, int32_t label, const char *name,
                     DdError *err);
/* Writes the index and attributes, syncs and renames into place;
 * class_names is class_count NUL-terminated names back to back. The writer
 * is finished either way (on failure the temporary file is removed). */
int shard_writer_commit(ShardWriter *writer, const ShardInfo *info, const char *class_names,
                        size_t class_names_bytes, DdError *err);
void shard_writer_abort(ShardWriter *writer);

/* Reads a shard's attributes and image count (to tell whether an existing
 * shard is the one a pack would write). */
int shard_read_info(const char *path, ShardInfo *info, DdError *err);

#endif
