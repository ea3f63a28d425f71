/*
 * atomic_file.h - a stdio file that appears under its name complete or not
 * at all: written as PATH.tmp.PID, then flushed, synced, renamed into place,
 * and the folder synced. An aborted or failed write leaves any old PATH as
 * it was and removes the temporary file.
 */
#ifndef DD_NN_ATOMIC_FILE_H
#define DD_NN_ATOMIC_FILE_H

#include <stdio.h>

#include "nn/error.h"

enum { ATOMIC_FILE_PATH_MAX = 4096 };

typedef struct AtomicFile {
    FILE *stream;                              /* write here */
    char path[ATOMIC_FILE_PATH_MAX];           /* the final name */
    char temp_path[ATOMIC_FILE_PATH_MAX + 32]; /* PATH.tmp.PID */
} AtomicFile;

int atomic_file_open(AtomicFile *file, const char *path, DdError *err);
/* Finishes the file; on failure (a write error seen by ferror, a full
 * disk at flush or sync) the temporary file is removed. */
int atomic_file_commit(AtomicFile *file, DdError *err);
void atomic_file_abort(AtomicFile *file);

#endif
