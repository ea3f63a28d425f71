/*
 * checkpoint.h - checkpoint folders that are either complete and verified,
 * or ignored.
 *
 * A checkpoint of iteration N is the folder RUN/checkpoints/iter_N (N with
 * nine digits), holding any number of state files (HDF5, one per student
 * group plus one for the run) and a MANIFEST listing each file with its size
 * and CRC-32, written last. The files are first written into
 * iter_N.partial/; committing syncs them, writes the manifest under a
 * temporary name, renames it, renames the folder to iter_N and syncs the
 * parent, then deletes all but the newest `keep` complete checkpoints. A
 * crash, a full disk or a killed rank at any moment leaves either the
 * previous checkpoints untouched plus a .partial folder (removed by the next
 * checkpoint_begin of that iteration), or a complete new one.
 *
 * Loading picks the newest folder whose manifest verifies (every file
 * present, same size, same CRC); a corrupt one is skipped with a warning
 * naming the file and what differed, and the one before it is used.
 */
#ifndef DD_NN_CHECKPOINT_H
#define DD_NN_CHECKPOINT_H

#include <stddef.h>

#include "nn/error.h"

enum { CHECKPOINT_PATH_MAX = 4096, CHECKPOINT_MAX_FILES = 64 };

typedef struct CheckpointWriter {
    char run_dir[CHECKPOINT_PATH_MAX];
    char partial_dir[CHECKPOINT_PATH_MAX];   /* where state files are written */
    long iteration;
} CheckpointWriter;

/* Creates RUN/checkpoints/iter_N.partial/ (emptied if a failed attempt left
 * one). Files written into it are not part of any checkpoint until commit. */
int checkpoint_begin(CheckpointWriter *writer, const char *run_dir, long iteration, DdError *err);

/* The path of state file `name` inside the partial folder (any rank may
 * write its own file there, e.g. on a shared file system). */
int checkpoint_file_path(const CheckpointWriter *writer, const char *name, char *path, size_t size,
                         DdError *err);

/* Verifies every file of the partial folder can be read, writes the
 * manifest, publishes the folder, and keeps the newest `keep` (>= 1). */
int checkpoint_commit(CheckpointWriter *writer, int keep, DdError *err);

/* Removes the partial folder (after a failed write). */
void checkpoint_abandon(CheckpointWriter *writer);

typedef void (*CheckpointWarning)(void *ctx, const char *message);

/* The newest verified checkpoint of run_dir: its folder and iteration.
 * Returns 1 when one was found, 0 when there is none (a fresh run), -1 on
 * an error that is not about a single checkpoint (run_dir unreadable).
 * Checkpoints that fail verification are reported through warn (may be
 * NULL) and skipped. */
int checkpoint_find_latest(const char *run_dir, char *folder, size_t folder_size, long *iteration,
                           CheckpointWarning warn, void *warn_ctx, DdError *err);

/* Verifies one checkpoint folder against its manifest. */
int checkpoint_verify(const char *folder, DdError *err);

#endif
