/*
 * compare_states.c - `compare_states A.h5 B.h5 TOLERANCE`: compares the
 * parameters, EMA and AdamW moments of two student checkpoint files tensor
 * by tensor and prints the largest relative difference (max|a-b| / max|b|
 * per tensor).
 * Exits 0 when it is at most TOLERANCE (0: bit for bit), 1 otherwise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/tensor_file.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: compare_states A.h5 B.h5 TOLERANCE\n");
        return 2;
    }
    const double tolerance = atof(argv[3]);
    DdError err;
    TensorFile a, b;
    if (tensor_file_open(&a, argv[1], &err) != 0 || tensor_file_open(&b, argv[2], &err) != 0) {
        fprintf(stderr, "compare_states: %s\n", err.message);
        return 1;
    }
    TensorFileEntry *entries = NULL;
    int count = 0;
    if (tensor_file_list(&a, &entries, &count, &err) != 0) {
        fprintf(stderr, "compare_states: %s\n", err.message);
        return 1;
    }
    double worst = 0;
    int compared = 0, identical = 1;
    const char *worst_name = "";
    for (int i = 0; i < count; i++) {
        static const char *const compared_prefixes[] = {"params.", "ema.", "adam_m.", "adam_v."};
        int wanted = 0;
        for (size_t p = 0; p < sizeof compared_prefixes / sizeof *compared_prefixes; p++)
            wanted |= strncmp(entries[i].name, compared_prefixes[p], strlen(compared_prefixes[p])) == 0;
        if (!wanted) continue;
        long n = (long)tensor_shape_count(&entries[i].shape);
        float *x = malloc((size_t)(n + 1) * sizeof(float)), *y = malloc((size_t)(n + 1) * sizeof(float));
        if (!x || !y || tensor_file_read(&a, entries[i].name, &entries[i].shape, x, &err) != 0 ||
            tensor_file_read(&b, entries[i].name, &entries[i].shape, y, &err) != 0) {
            fprintf(stderr, "compare_states: %s\n", err.message);
            return 1;
        }
        double max_diff = 0, max_ref = 0;
        for (long j = 0; j < n; j++) {
            double d = fabs((double)x[j] - y[j]);
            if (!(d == d)) d = INFINITY;
            if (d > max_diff) max_diff = d;
            if (fabs(y[j]) > max_ref) max_ref = fabs(y[j]);
        }
        identical &= memcmp(x, y, (size_t)n * sizeof(float)) == 0;
        double rel = max_diff > 0 ? max_diff / (max_ref > 0 ? max_ref : 1e-30) : 0;
        if (rel > worst) worst = rel, worst_name = entries[i].name;
        compared++;
        free(x);
        free(y);
    }
    printf("compared %d tensors: largest relative difference %.3g (%s), %s\n", compared, worst, worst_name,
           identical ? "bit for bit identical" : "not bit for bit identical");
    tensor_file_close(&a);
    tensor_file_close(&b);
    free(entries);
    if (compared == 0) return 1;
    return tolerance == 0 ? !identical : worst > tolerance;
}
