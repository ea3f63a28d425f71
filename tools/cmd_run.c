/*
 * cmd_run.c - `distill run [CONFIG.yaml]`: the service's main job.
 *
 * Started by hand, it checks the config, then supervises: it runs itself
 * under mpirun with the ranks the run needs and waits. A job stopped by a
 * loss that is not finite, with `on_nan: rollback`, is started again from
 * the last checkpoint with that iteration skipped (a few times at most).
 * A job the online balancer stopped at a checkpoint to move ranks between
 * groups is started again on its new plan (tools/balancer.h).
 * Started by mpirun, it is one rank of the job (run_job.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/commands.h"
#include "tools/launch.h"
#include "tools/run_job.h"

enum { MAX_ROLLBACKS = 5, MAX_REPLANS = 3 };

static void print_run_help(FILE *out) {
    fprintf(out,
            "usage: distill run [CONFIG.yaml] [--run-dir DIR] [--ranks N]\n"
            "                   [--backend cpu|cpu-bf16|cuda|cuda-fp32] [--stop-after N]\n\n"
            "Distils the run's teacher into all its students at once: one teacher group and one\n"
            "group per student, under mpirun (started automatically). Without CONFIG, runs\n"
            "configs/runs/demo.yaml: a tiny teacher, four tiny students, synthetic images.\n"
            "Everything goes to the run folder (default runs/NAME): the effective config, the plan,\n"
            "checkpoints. Started again on the same folder, a run resumes from its newest intact\n"
            "checkpoint, on any number of ranks.\n\n"
            "  --run-dir DIR     the run folder (default runs/NAME of the config)\n"
            "  --ranks N         MPI ranks (default: the config's `ranks`, else one per group)\n"
            "  --backend NAME    cpu (default), cpu-bf16 (cpu with bf16 ViT blocks, as cuda),\n"
            "                    cuda (bf16 tensor-core matmuls) or cuda-fp32 (exact fp32\n"
            "                    matmuls: the ones compared with the CPU)\n"
            "  --stop-after N    stop once N iterations of the schedule are done (for tests)\n");
}

int cmd_run(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        print_run_help(stdout);
        return 0;
    }
    static const struct option long_options[] = {
        {"run-dir", required_argument, 0, 'd'}, {"ranks", required_argument, 0, 'r'},
        {"backend", required_argument, 0, 'b'}, {"stop-after", required_argument, 0, 's'},
        {0, 0, 0, 0},
    };
    RunJobOptions options = {.config_path = "configs/runs/demo.yaml", .backend = "cpu"};
    int ranks = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'd': options.run_dir = optarg; break;
        case 'b': options.backend = optarg; break;
        case 'r':
        case 's': {
            long value = strtol(optarg, &end, 10);
            if (*end || value < 1) {
                fprintf(stderr, "distill run: expected a positive integer for --%s, found '%s'\n",
                        c == 'r' ? "ranks" : "stop-after", optarg);
                return 2;
            }
            if (c == 'r') ranks = (int)value;
            else options.stop_after = value;
            break;
        }
        default: print_run_help(stderr); return 2;
        }
    }
    if (optind < argc - 1) {
        fprintf(stderr, "distill run: expected at most one config file, found %d\n", argc - optind);
        return 2;
    }
    if (optind == argc - 1) options.config_path = argv[optind];

    DdError err;
    static RunConfig config;
    if (run_config_load(&config, options.config_path, &err) != 0) {
        fprintf(stderr, "distill run: %s\n", err.message);
        return 1;
    }
    char default_dir[128];
    if (!options.run_dir) {
        snprintf(default_dir, sizeof default_dir, "runs/%s", config.name);
        options.run_dir = default_dir;
    }

    if (launched_under_mpi()) {
        /* a rank of the job: argv is re-read inside MPI_Init, then ours */
        return run_job(&options, argc, argv);
    }
    if (ranks == 0) ranks = run_rank_count(&config);
    /* the ranks get the run folder explicitly, so all of them agree */
    char **child = calloc((size_t)argc + 4, sizeof *child);   /* distill run ARGS --run-dir DIR */
    if (!child) return 1;
    int n = 0;
    child[n++] = "distill";
    for (int i = 0; i < argc; i++) child[n++] = argv[i];
    child[n++] = "--run-dir";
    child[n++] = (char *)options.run_dir;
    printf("distill run: %s on %d ranks, run folder %s\n", options.config_path, ranks, options.run_dir);
    int status = 0, rollbacks = 0, replans = 0;
    for (;;) {
        status = run_under_mpirun(ranks, n, child);
        if (status == RUN_EXIT_NAN && config.on_nan == NAN_ROLLBACK && rollbacks < MAX_ROLLBACKS) {
            fprintf(stderr, "distill run: a loss was not finite; rolling back to the last checkpoint and skipping "
                            "that iteration's batch (restart %d of %d)\n", ++rollbacks, MAX_ROLLBACKS);
        } else if (status == RUN_EXIT_REPLAN && replans < MAX_REPLANS) {
            printf("distill run: the balancer re-planned the groups at a checkpoint; restarting on the new plan "
                   "(restart %d of %d)\n", ++replans, MAX_REPLANS);
            fflush(stdout);
        } else {
            break;
        }
    }
    free(child);
    if (status != 0) fprintf(stderr, "distill run: the job ended with status %d\n", status);
    return status;
}
