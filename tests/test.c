/*
 * test.c - the runner behind test.h.
 */
#include "tests/test.h"

#include "nn/backend.h"

TestState test_state;

int test_main(const TestCase *cases, int count, int argc, char **argv) {
    nn_cpu_select_blas_kernels(argv);
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < count; i++) {
        if (filter && !strstr(cases[i].name, filter)) continue;
        memset(&test_state, 0, sizeof test_state);
        cases[i].run();
        if (test_state.skipped) {
            printf("skipped %s: %s\n", cases[i].name, test_state.first_failure);
            skipped++;
        } else if (test_state.failed_checks) {
            printf("FAIL %s: %s (%d failed checks)\n", cases[i].name,
                   test_state.first_failure, test_state.failed_checks);
            failed++;
        } else {
            printf("ok %s\n", cases[i].name);
            passed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    fflush(stdout);
    return failed ? 1 : 0;
}

static double relative_error(const float *a, long n, double (*b_at)(const void *, long), const void *b) {
    double max_diff = 0, max_ref = 0;
    for (long i = 0; i < n; i++) {
        double x = a[i], y = b_at(b, i);
        if (!isfinite(x) || !isfinite(y)) return INFINITY;
        double d = fabs(x - y);
        if (d > max_diff) max_diff = d;
        if (fabs(y) > max_ref) max_ref = fabs(y);
    }
    return max_diff / (max_ref > 1e-30 ? max_ref : 1e-30);
}
static double double_at(const void *b, long i) { return ((const double *)b)[i]; }
static double float_at(const void *b, long i) { return ((const float *)b)[i]; }

double test_relative_error(const float *a, const double *b, long n) {
    return relative_error(a, n, double_at, b);
}
double test_relative_error_ff(const float *a, const float *b, long n) {
    return relative_error(a, n, float_at, b);
}
