/*
 * cpu_matmul.c - linear layers on OpenBLAS sgemm (PyTorch weight layout
 * [OC, C]); the bias sums run on OpenMP.
 */
#include <cblas.h>

#include "nn/cpu/cpu_ops.h"

void cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                        int N, int C, int OC) {
    /* out[N, OC] = inp[N, C] @ weight[OC, C]^T (+ bias[OC] broadcast over rows) */
    float beta = 0.0f;
    if (bias) {
        #pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) out[(long)n * OC + o] = bias[o];
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C,
                beta, out, OC);
}

void cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int N, int C, int OC) {
    if (dinp) /* dinp[N, C] += dout[N, OC] @ weight[OC, C] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C,
                    1.0f, dinp, C);
    if (dweight) /* dweight[OC, C] += dout^T @ inp[N, C] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C,
                    1.0f, dweight, C);
    if (dbias) {
        #pragma omp parallel for schedule(static)
        for (int o0 = 0; o0 < OC; o0 += 16) {
            int o1 = o0 + 16 < OC ? o0 + 16 : OC;
            float sum[16] = {0};
            for (int n = 0; n < N; n++) {
                const float *row = dout + (long)n * OC;
                for (int o = o0; o < o1; o++) sum[o - o0] += row[o];
            }
            for (int o = o0; o < o1; o++) dbias[o] += sum[o - o0];
        }
    }
}

/* An OpenMP build of OpenBLAS already runs single-threaded inside our
 * parallel regions (and its openblas_set_num_threads would change OpenMP's
 * own thread count); a pthreads build must be told. */
int cpu_blas_threads_begin_serial(void) {
    if (openblas_get_parallel() == OPENBLAS_OPENMP) return 0;
    int saved = openblas_get_num_threads();
    openblas_set_num_threads(1);
    return saved;
}

void cpu_blas_threads_end_serial(int saved) {
    if (saved > 0) openblas_set_num_threads(saved);
}
