/*
 * launch.c - running this executable under mpirun (see launch.h).
 *
 * mpirun is told --oversubscribe (a demo runs more ranks than cores) and
 * --bind-to none (OpenMP threads of a rank may use any core); as root it also
 * needs --allow-run-as-root. DD_MPIRUN overrides the launcher's path.
 */
#include "tools/launch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int launched_under_mpi(void) {
    static const char *const markers[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof markers / sizeof markers[0]; i++)
        if (getenv(markers[i])) return 1;
    return 0;
}

int run_under_mpirun(int ranks, int argc, char **argv) {
    char self[4096];
    ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
    if (length <= 0) {
        fprintf(stderr, "distill: cannot find its own executable: %s\n", strerror(errno));
        return 1;
    }
    self[length] = '\0';
    const char *mpirun = getenv("DD_MPIRUN") ? getenv("DD_MPIRUN") : "mpirun";
    char rank_text[16];
    snprintf(rank_text, sizeof rank_text, "%d", ranks);
    const char *fixed[] = {mpirun, "--oversubscribe", "--bind-to", "none", "-n", rank_text};
    const int fixed_count = (int)(sizeof fixed / sizeof fixed[0]);
    char **args = calloc((size_t)(fixed_count + 2 + argc), sizeof *args);
    if (!args) return 1;
    int n = 0;
    for (int i = 0; i < fixed_count; i++) args[n++] = (char *)fixed[i];
    if (geteuid() == 0) args[n++] = "--allow-run-as-root";
    args[n++] = self;
    for (int i = 1; i < argc; i++) args[n++] = argv[i];
    args[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child == 0) {
        execvp(mpirun, args);
        fprintf(stderr, "distill: cannot start %s to launch %d ranks: %s\n", mpirun, ranks, strerror(errno));
        _exit(127);
    }
    free(args);
    if (child < 0) {
        fprintf(stderr, "distill: cannot fork to launch %d ranks: %s\n", ranks, strerror(errno));
        return 1;
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0)
        if (errno != EINTR) return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
