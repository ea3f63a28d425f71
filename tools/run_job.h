/*
 * run_job.h - the program every rank of a `distill run` job executes inside
 * mpirun: plan, communicators, resume, the iteration loop of its role
 * (teacher or student), status lines, consistent checkpoints, failures.
 */
#ifndef DD_TOOLS_RUN_JOB_H
#define DD_TOOLS_RUN_JOB_H

#include "tools/run_config.h"

/* Exit status of a job stopped by a loss that is not finite; with
 * `on_nan: rollback` the supervisor restarts it from the last checkpoint,
 * skipping that iteration. */
enum { RUN_EXIT_NAN = 75 };
/* Exit status of a job the balancer stopped at a checkpoint after writing
 * RUN_DIR/plan_override (new ranks per group); the supervisor starts it
 * again, and the new job plans from the override (tools/balancer.h). */
enum { RUN_EXIT_REPLAN = 76 };

typedef struct RunJobOptions {
    const char *config_path;
    const char *run_dir;
    const char *backend;        /* "cpu", "cuda" or "cuda-fp32" */
    long stop_after;            /* > 0: stop once this many iterations are done (tests) */
    int debug_crop_checksums;   /* exchange global-crop checksums between teacher and students */
} RunJobOptions;

/* Runs this rank's part of the job (MPI is initialised and finalised
 * inside); returns the process exit status. */
int run_job(const RunJobOptions *options, int argc, char **argv);

/* The number of ranks a run uses: its `ranks`, or one per group. */
int run_rank_count(const RunConfig *config);

#endif
