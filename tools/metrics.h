/*
 * metrics.h - per-group throughput metrics of a run (issue 6, part 3).
 *
 * Every monitor.every iterations each group's leader measures a window
 * (MetricsWindow, all doubles, sent to rank 0 as MPI_DOUBLE); rank 0 folds
 * it into the group's row of a MetricsBoard (running counters, rates, ETA).
 * A row is written as one JSON object per line to RUN_DIR/metrics.jsonl,
 * exposed in the Prometheus text format (prometheus.h), and read back by
 * `distill top` and `distill plot`. One table of fields (metrics.c) drives
 * all four, so names and meanings are written once; docs/metrics.md
 * documents them.
 */
#ifndef DD_TOOLS_METRICS_H
#define DD_TOOLS_METRICS_H

#include <stdio.h>

#include "nn/error.h"

enum { METRICS_MAX_GROUPS = 17, METRICS_NAME_MAX = 64 };

/* What a group leader measured over its last monitor window. */
typedef struct MetricsWindow {
    double group;              /* 0: the teacher, 1 + s: student s */
    double iteration;          /* iterations done at the end of the window */
    double steps;              /* iterations in the window */
    double seconds;            /* wall time of the window */
    double images;             /* images the whole group processed in the window */
    double busy_seconds;       /* the leader's compute in the window */
    double bytes;              /* received (student) or sent (teacher) by the leader in the window */
    double loss, dino_local, dino_global, ibot, koleo, lr;   /* the window's last step; students only */
    double data_errors;        /* bad samples the leader's loader met since it opened */
} MetricsWindow;

enum { METRICS_WINDOW_DOUBLES = sizeof(MetricsWindow) / sizeof(double) };

/* One group's row: the last window and the counters since rank 0 started. */
typedef struct GroupMetrics {
    char group[METRICS_NAME_MAX];
    int teacher;                   /* 1 for the teacher group */
    double time;                   /* Unix seconds when rank 0 took the record */
    double iteration, iterations_total, ranks;
    double images_per_second, iteration_seconds;
    double busy_seconds, idle_seconds, busy_fraction;   /* of the window */
    double bytes_received, bytes_sent;                  /* of the window */
    double loss, dino_local, dino_global, ibot, koleo, lr;
    double eta_seconds;
    double images_total, busy_seconds_total, idle_seconds_total, bytes_received_total, bytes_sent_total;
    double data_errors_total;
    double teacher_heads_random;   /* teacher: 1 when its heads were drawn at random (no trained heads given) */
    double imbalance;              /* the balancer's: slowest rank / mean - 1 of its averages (0: off or 1 rank) */
    double balancer_moves_total;   /* in-group moves of images the balancer made */
} GroupMetrics;

typedef struct MetricsBoard {
    GroupMetrics groups[METRICS_MAX_GROUPS];
    int group_count;
} MetricsBoard;

/* Names the rows (names[0] the teacher's model) with their ranks; the
 * counters start at zero. */
void metrics_board_init(MetricsBoard *board, const char *const *names, const int *ranks, int count,
                        long iterations_total);
/* Folds a window into its group's row; returns the row (NULL for a group
 * index out of range). */
const GroupMetrics *metrics_board_add(MetricsBoard *board, const MetricsWindow *window);

/* One JSON object and a newline. */
void metrics_write_json(FILE *out, const GroupMetrics *row);
/* Parses a line written by metrics_write_json; -1 with err on a line that
 * is not an object or lacks a field. */
int metrics_read_json(const char *line, GroupMetrics *row, DdError *err);

/* The Prometheus text exposition of every row (HELP and TYPE lines,
 * label group="NAME"). */
void metrics_write_prometheus(FILE *out, const MetricsBoard *board);
/* Reads an exposition back into rows, for `distill top URL`: every
 * sample of a known metric sets its group's field. */
void metrics_read_prometheus(const char *text, MetricsBoard *board);

/* Reads the records of a metrics.jsonl file into *rows (malloc'd, the
 * caller frees), in file order; tail_bytes > 0 reads only the last
 * tail_bytes of the file (what `top` needs of a long run). Lines that do
 * not parse are skipped. Returns 0, or -1 with err when the file cannot be
 * read. */
int metrics_read_file(const char *path, long tail_bytes, GroupMetrics **rows, int *count, DdError *err);
/* The newest row of each group, groups in order of first appearance. */
void metrics_board_from_rows(MetricsBoard *board, const GroupMetrics *rows, int count);

#endif
