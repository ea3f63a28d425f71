/*
 * mpi_test.c - the runner behind mpi_test.h.
 */
#include "tests/mpi/mpi_test.h"

#include <mpi.h>

int mpi_test_main(const TestCase *cases, int count, int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < count; i++) {
        memset(&test_state, 0, sizeof test_state);
        cases[i].run();
        int local[2] = {test_state.failed_checks > 0, test_state.skipped}, any[2];
        MPI_Allreduce(local, any, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (local[0]) fprintf(stderr, "rank %d: FAIL %s: %s\n", rank, cases[i].name, test_state.first_failure);
        if (rank == 0) {
            if (any[0]) printf("FAIL %s (on %d ranks; reasons on stderr)\n", cases[i].name, size);
            else if (any[1]) printf("skipped %s: %s\n", cases[i].name, test_state.first_failure);
            else printf("ok %s (%d ranks)\n", cases[i].name, size);
            fflush(stdout);
        }
        if (any[0]) failed++;
        else if (any[1]) skipped++;
        else passed++;
    }
    if (rank == 0) printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    MPI_Finalize();
    return failed ? 1 : 0;
}
