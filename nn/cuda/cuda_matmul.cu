/*
 * cuda_matmul.cu - linear layers on cuBLAS sgemm (fp32), in PyTorch's weight
 * layout: out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[OC].
 *
 * cuBLAS is column-major: a row-major [R, S] matrix is, to cuBLAS, the
 * column-major S x R matrix with leading dimension S (its transpose). So
 *   inp    [N, C]   is  inp^T    C x N   (ld C)
 *   weight [OC, C]  is  weight^T C x OC  (ld C)
 *   out    [N, OC]  is  out^T    OC x N  (ld OC)
 * and each row-major product is written as the column-major product of the
 * transposes. The backward uses beta = 1: gradients accumulate (backend.h).
 */
#include "nn/cuda/cuda_common.cuh"

/* out[N, OC] += bias[OC] broadcast over rows. */
__global__ static void add_bias_kernel(float *out, const float *bias, long N, int OC) {
    CUDA_GRID_STRIDE_LOOP(i, N * OC) { out[i] += bias[i % OC]; }
}

/* out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[OC]; bias may be NULL. */
void cuda_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                         int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return;
    const float one = 1.0f, zero = 0.0f;
    /* out^T (OC x N) = (weight^T)^T (OC x C) * inp^T (C x N) */
    CUBLAS_CHECK(cublasSgemm(cuda_cublas_handle(), CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &one,
                             weight, C, inp, C, &zero, out, OC));
    if (bias) {
        long n = (long)N * OC;
        add_bias_kernel<<<cuda_grid_for(n), CUDA_BLOCK>>>(out, bias, N, OC);
        CUDA_CHECK_LAUNCH();
    }
}

/* value(r, c) = dout[r, c]: the column sums are dbias. */
struct RowMajorValue {
    const float *x;
    int cols;
    __device__ float operator()(long r, int c) const { return x[r * cols + c]; }
};

/* dinp[N, C]     += dout[N, OC] @ weight[OC, C]
 * dweight[OC, C] += dout^T @ inp[N, C]
 * dbias[OC]      += sum over N of dout
 * Any of dinp, dweight, dbias may be NULL (not needed). */
void cuda_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, int N, int C, int OC) {
    if (N <= 0 || C <= 0 || OC <= 0) return;
    cublasHandle_t handle = cuda_cublas_handle();
    const float one = 1.0f;
    if (dinp) {
        /* dinp^T (C x N) += weight^T (C x OC) * dout^T (OC x N) */
        CUBLAS_CHECK(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, &one,
                                 weight, C, dout, OC, &one, dinp, C));
    }
    if (dweight) {
        /* dweight^T (C x OC) += inp^T (C x N) * (dout^T)^T (N x OC) */
        CUBLAS_CHECK(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, &one,
                                 inp, C, dout, OC, &one, dweight, C));
    }
    if (dbias) {
        RowMajorValue value = {dout, OC};
        column_sum(dbias, N, OC, value);
    }
}
