/*
 * mpi_test.h - the test harness under mpirun: every rank runs every case;
 * a case fails when it fails on any rank (each failing rank prints its
 * reason on stderr), and rank 0 alone prints the "ok/FAIL" lines and the
 * closing "N passed, N failed, N skipped".
 */
#ifndef DD_TESTS_MPI_TEST_H
#define DD_TESTS_MPI_TEST_H

#include "tests/test.h"

int mpi_test_main(const TestCase *cases, int count, int argc, char **argv);

#define MPI_TEST_MAIN(...)                                                          \
    int main(int argc, char **argv) {                                               \
        static const TestCase cases_[] = {__VA_ARGS__};                             \
        return mpi_test_main(cases_, (int)(sizeof cases_ / sizeof cases_[0]), argc, argv); \
    }

#endif
