/*
 * folder_index.h - the index of an image folder ROOT/CLASS/IMAGE.jpg|jpeg|png,
 * so a source of 1.3M images opens without walking 1.3M directory entries.
 *
 * The listing is sorted: classes by name (the label is the class's
 * position), then files by name within a class; image i of the index is
 * sample id i. The index is one binary file, mapped read-only:
 *
 *     FolderIndexHeader
 *     FolderIndexClass   [class_count]   name, first image, the folder's mtime
 *     uint64_t           [image_count]   offset of each file name in the blob
 *     char               [blob_bytes]    NUL-terminated class and file names
 *
 * with a checksum over everything after the header. It is kept at
 * ROOT/.distill-index, or, when ROOT is read-only, under
 * $XDG_CACHE_HOME/dinodistill (default ~/.cache/dinodistill), written to a
 * temporary name (host and pid in it) and renamed, so ranks that index a
 * shared folder at the same moment each rename a whole, identical file. It is current when ROOT still holds exactly
 * its class folders and none of them has a new mtime (a file added or
 * removed in CLASS changes CLASS's mtime): one readdir of ROOT and one stat
 * per class, not a walk of the files.
 */
#ifndef DD_DATA_FOLDER_INDEX_H
#define DD_DATA_FOLDER_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "nn/error.h"

enum { FOLDER_INDEX_PATH_MAX = 4096 };

/* A listing in memory, as folder_listing_scan finds it (or a test builds it). */
typedef struct FolderListing {
    char **classes;            /* [class_count], sorted */
    int64_t *class_mtime_ns;   /* [class_count] */
    int class_count;
    char **files;              /* [file_count], names inside their class folder */
    uint32_t *file_class;      /* [file_count]; files sorted by (class, name) */
    uint64_t file_count;
    size_t file_capacity;
} FolderListing;

/* Lists ROOT's class folders (not hidden) and, when with_files, their image
 * files (.jpg, .jpeg, .png in any case, not hidden), sorted. */
int folder_listing_scan(FolderListing *listing, const char *root, int with_files, DdError *err);
/* Appends a file to class `label` (keeps the listing sorted only if called in order). */
int folder_listing_add(FolderListing *listing, uint32_t label, const char *name, DdError *err);
void folder_listing_free(FolderListing *listing);

typedef struct FolderIndex {
    const unsigned char *memory;   /* mapped file or heap buffer */
    size_t size;
    int mapped;                    /* 1: munmap, 0: free */
    uint64_t class_count, image_count;
    const struct FolderIndexClass *class_table;
    const uint64_t *names;
    const char *blob;
    uint64_t blob_bytes;
} FolderIndex;

/* The index of ROOT: a current index file mapped, or else ROOT listed, the
 * index built and written to the first location that takes it (kept in
 * memory if none does, with a note to problems, which may be NULL). */
struct DataProblems;
int folder_index_open(FolderIndex *index, const char *root, struct DataProblems *problems, DdError *err);

/* Serialises a listing (the index in memory; not written anywhere). */
int folder_index_build(FolderIndex *index, const FolderListing *listing, DdError *err);
/* Writes an index atomically (path.tmp.PID, fsync, rename). */
int folder_index_write(const FolderIndex *index, const char *path, DdError *err);
/* Maps an index file and checks its structure and checksum. */
int folder_index_map(FolderIndex *index, const char *path, DdError *err);
void folder_index_free(FolderIndex *index);

/* 1 if ROOT has exactly the index's class folders, with the same mtimes. */
int folder_index_is_current(const FolderIndex *index, const char *root);

/* Where the index of ROOT lives: candidate 0 is ROOT/.distill-index, 1 the
 * cache folder. Returns -1 when candidate does not exist (no HOME). */
int folder_index_location(const char *root, int candidate, char *path, size_t cap);

/* Class name, file name and label of image i (< image_count). NULL names
 * when the index is inconsistent there. */
const char *folder_index_class_name(const FolderIndex *index, uint64_t label);
const char *folder_index_file(const FolderIndex *index, uint64_t i, uint32_t *label);

#endif
