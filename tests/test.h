/*
 * test.h - the tiny test harness every test program uses.
 *
 * A test program is a list of cases; each case calls CHECK(...) and the
 * harness prints one line per case ("ok <name>" or "FAIL <name>: why") and
 * a closing "N passed, N failed" line; the exit status is 1 if anything
 * failed. Skips are explicit: a case calls SKIP("reason") and the line
 * reads "skipped <name>: reason".
 */
#ifndef DD_TEST_H
#define DD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TestState {
    int failed_checks;     /* in the current case */
    int skipped;           /* the current case called SKIP */
    char first_failure[2048];
} TestState;

extern TestState test_state;

#define CHECK(cond, ...)                                                           \
    do {                                                                           \
        if (!(cond)) {                                                             \
            if (test_state.failed_checks++ == 0) {                                 \
                int n_ = snprintf(test_state.first_failure,                        \
                                  sizeof test_state.first_failure, "%s:%d: ",      \
                                  __FILE__, __LINE__);                             \
                snprintf(test_state.first_failure + n_,                            \
                         sizeof test_state.first_failure - n_, __VA_ARGS__);       \
            }                                                                      \
        }                                                                          \
    } while (0)

#define SKIP(...)                                                                  \
    do {                                                                           \
        test_state.skipped = 1;                                                    \
        snprintf(test_state.first_failure, sizeof test_state.first_failure,        \
                 __VA_ARGS__);                                                     \
        return;                                                                    \
    } while (0)

typedef struct TestCase {
    const char *name;
    void (*run)(void);
} TestCase;

/* Runs the cases whose name contains filter (all if filter is NULL);
 * returns the process exit status. */
int test_main(const TestCase *cases, int count, int argc, char **argv);

/* Relative error max|a-b| / max(max|b|, tiny), NaN-aware: returns INFINITY
 * when any value is NaN or Inf. */
double test_relative_error(const float *a, const double *b, long n);
double test_relative_error_ff(const float *a, const float *b, long n);

#define TEST_MAIN(...)                                                             \
    int main(int argc, char **argv) {                                              \
        static const TestCase cases_[] = {__VA_ARGS__};                            \
        return test_main(cases_, (int)(sizeof cases_ / sizeof cases_[0]), argc, argv); \
    }
#define TEST(fn) {#fn, fn}

#endif
