/*
 * problems.h - bad input met while loading data: what kinds there are, how
 * many of each a data set has met, and where the one-line reports go.
 *
 * Bad input never stops a run: the sample loader (sample.c) reports each
 * bad file with its sample id, counts it, and loads the next valid sample in
 * its place. Reports go to a caller-supplied function (stderr when none);
 * after DATA_PROBLEMS_LOGGED reports the rest are only counted, so a broken
 * shard of 10,000 images does not flood the log.
 */
#ifndef DD_DATA_PROBLEMS_H
#define DD_DATA_PROBLEMS_H

#include <pthread.h>
#include <stdint.h>

typedef enum DataProblemKind {
    DATA_PROBLEM_UNREADABLE,    /* cannot open or read the file */
    DATA_PROBLEM_EMPTY,         /* zero bytes */
    DATA_PROBLEM_NOT_AN_IMAGE,  /* neither a JPEG nor a PNG signature */
    DATA_PROBLEM_BAD_JPEG,      /* libjpeg-turbo error or warning (truncated, corrupt) */
    DATA_PROBLEM_BAD_PNG,       /* libpng error (bad CRC, truncated) */
    DATA_PROBLEM_TOO_LARGE,     /* over DATA_MAX_IMAGE_PIXELS or DATA_MAX_FILE_BYTES */
    DATA_PROBLEM_BAD_SHARD,     /* a shard that is not HDF5, lacks a dataset, or has a bad index */
    DATA_PROBLEM_KIND_COUNT,
} DataProblemKind;

enum { DATA_PROBLEMS_LOGGED = 100 };

/* Receives one report line (no trailing newline). */
typedef void (*DataLogFunction)(void *context, const char *line);

typedef struct DataProblems {
    pthread_mutex_t lock;
    uint64_t counts[DATA_PROBLEM_KIND_COUNT];
    uint64_t total;
    uint64_t logged;
    DataLogFunction log;      /* NULL: stderr */
    void *log_context;
} DataProblems;

void data_problems_init(DataProblems *p, DataLogFunction log, void *log_context);
void data_problems_destroy(DataProblems *p);
/* Counts one problem of that kind and reports the line (printf format). */
void data_problems_report(DataProblems *p, DataProblemKind kind, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
/* Reports a line that is not a problem (an index rebuilt, a fallback taken); not counted. */
void data_problems_note(DataProblems *p, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* A snapshot of the counts: counts[DATA_PROBLEM_KIND_COUNT] (may be NULL); returns the total. */
uint64_t data_problems_snapshot(DataProblems *p, uint64_t *counts);
/* "truncated or corrupt JPEG" etc. */
const char *data_problem_name(DataProblemKind kind);

#endif
