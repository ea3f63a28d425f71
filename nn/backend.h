/*
 * backend.h - the op API: every compute primitive the models use, as a table
 * of function pointers that each backend (cpu, cuda) fills in.
 *
 * Model code (nn/vit.c, students/, teacher/) calls only these entries, so a
 * new backend plugs in without touching it. Conventions, for every op:
 *   - tensors are dense, row-major fp32 arrays in the backend's memory
 *     (host memory for cpu, device memory for cuda);
 *   - shapes are given by the int arguments and written in the comment as
 *     [A, B, C] with the last index fastest;
 *   - linear layers use PyTorch's layout: weight [OC, C], out = inp W^T + b;
 *   - every *_backward ACCUMULATES (+=) into each gradient it writes, so the
 *     caller zeroes gradient buffers once per step and residual branches just
 *     add; the exceptions say so;
 *   - a NULL gradient pointer means "not needed" wherever it is allowed.
 * The cpu backend (nn/cpu/) is the readable oracle every other backend is
 * tested against (tests/nn/).
 */
#ifndef DD_NN_BACKEND_H
#define DD_NN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef struct NnBackend {
    const char *name;

    /* ---- memory ---------------------------------------------------- */
    void *(*alloc)(size_t bytes);                   /* zero-filled; NULL on failure */
    void (*free)(void *ptr);
    void (*zero)(void *ptr, size_t bytes);
    void (*copy_to_device)(void *dst, const void *host_src, size_t bytes);
    void (*copy_to_host)(void *host_dst, const void *src, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);   /* device to device */
    void (*synchronize)(void);

    /* ---- linear layers ------------------------------------------------ */
    /* out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[OC]; bias may be NULL. */
    void (*matmul_forward)(float *out, const float *inp, const float *weight,
                           const float *bias, int N, int C, int OC);
    /* dinp[N, C] += dout[N, OC] @ weight[OC, C]
     * dweight[OC, C] += dout^T @ inp[N, C]
     * dbias[OC] += sum over N of dout.  dinp and dbias may be NULL. */
    void (*matmul_backward)(float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp, const float *weight,
                            int N, int C, int OC);

    /* ---- patch embedding and tokens -------------------------------- */
    /* patches[B, Hp*Wp, C*P*P] from images[B, C, H, W], Hp = H/P, Wp = W/P.
     * Patch p = py*Wp + px; within a row the order is (c, y, x), which makes
     * a conv weight [D, C, P, P] a matmul weight [D, C*P*P]. No backward:
     * images carry no gradient. */
    void (*patchify)(float *patches, const float *images, int B, int C, int H, int W, int P);

    /* tokens[B, T, D] with T = 1 + R + Np, rows [cls, reg_0..reg_{R-1}, patch_0..];
     * patch_emb[B, Np, D]; cls[D]; reg[R, D]; mask_token[D]; mask[B, Np]
     * (uint8, may be NULL): where mask[b, p] != 0 the patch row is replaced
     * by mask_token (iBOT masking). */
    void (*tokens_forward)(float *tokens, const float *patch_emb, const float *cls,
                           const float *reg, const float *mask_token, const uint8_t *mask,
                           int B, int Np, int R, int D);
    /* Scatters dtokens[B, T, D] back: dpatch_emb[B, Np, D] (unmasked rows),
     * dcls[D], dreg[R, D], dmask_token[D] (masked rows). All accumulate;
     * dmask_token may be NULL when mask is NULL. */
    void (*tokens_backward)(float *dpatch_emb, float *dcls, float *dreg, float *dmask_token,
                            const float *dtokens, const uint8_t *mask,
                            int B, int Np, int R, int D);

    /* ---- normalisation ------------------------------------------------- */
    /* out[N, C] = (inp - mean) * rstd * weight[C] + bias[C], per row;
     * saves mean[N] and rstd[N] for the backward. */
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int N, int C, float eps);
    /* dinp[N, C], dweight[C], dbias[C] accumulate. */
    void (*layernorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight,
                               const float *mean, const float *rstd, int N, int C);

    /* ---- attention ------------------------------------------------------ */
    /* 2-D RoPE, in place on the q and k parts of qkv[B, T, 3, H, Dh] (D = H*Dh)
     * for the patch tokens t = prefix .. T-1:
     *   x <- x * cos[t - prefix] + rotate_half(x) * sin[t - prefix]
     * with rotate_half([x1, x2]) = [-x2, x1] over each head's Dh values and
     * sin, cos [T - prefix, Dh] (see nn/rope.h). v and the prefix tokens
     * are left alone. */
    void (*rope_forward)(float *qkv, const float *sin, const float *cos,
                         int B, int T, int prefix, int H, int Dh);
    /* The transpose: in place on dqkv[B, T, 3, H, Dh], turning gradients with
     * respect to the rotated q, k into gradients with respect to the
     * unrotated ones. (Overwrites; does not accumulate.) */
    void (*rope_backward)(float *dqkv, const float *sin, const float *cos,
                          int B, int T, int prefix, int H, int Dh);

    /* out[B, T, H, Dh] = softmax(q k^T / sqrt(Dh)) v per batch and head, read
     * from qkv[B, T, 3, H, Dh]; saves probs[B, H, T, T] for the backward. */
    void (*attention_forward)(float *out, float *probs, const float *qkv,
                              int B, int T, int H, int Dh);
    /* dqkv[B, T, 3, H, Dh] accumulates from dout[B, T, H, Dh]. */
    void (*attention_backward)(float *dqkv, const float *dout, const float *qkv,
                               const float *probs, int B, int T, int H, int Dh);

    /* ---- pointwise ------------------------------------------------------ */
    /* out[n] = gelu(inp[n]) (exact, erf form, as torch.nn.GELU()). */
    void (*gelu_forward)(float *out, const float *inp, long n);
    /* dinp[n] += dout[n] * gelu'(inp[n]). */
    void (*gelu_backward)(float *dinp, const float *dout, const float *inp, long n);

    /* out[N, F] = silu(inp[N, 0:F]) * inp[N, F:2F]   (gate first, then up). */
    void (*swiglu_forward)(float *out, const float *inp, int N, int F);
    /* dinp[N, 2F] accumulates. */
    void (*swiglu_backward)(float *dinp, const float *dout, const float *inp, int N, int F);

    /* out[N, C] = res[N, C] + gamma[C] * y[N, C]   (LayerScale and residual). */
    void (*layerscale_residual_forward)(float *out, const float *res, const float *y,
                                        const float *gamma, int N, int C);
    /* dres += dout; dy += dout * gamma; dgamma[C] += sum over N of dout * y.
     * dres may be NULL: the caller then keeps dout itself as the gradient of
     * the residual input and adds the branch's gradient into it afterwards
     * (how vit_backward runs the residual stream in one buffer). */
    void (*layerscale_residual_backward)(float *dres, float *dy, float *dgamma,
                                         const float *dout, const float *y,
                                         const float *gamma, int N, int C);

    /* ---- optimisation --------------------------------------------------- */
    /* AdamW on n parameters, step t >= 1 (bias correction uses t):
     *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
     *   p -= lr * ( (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + wd * p ) */
    void (*adamw_update)(float *params, const float *grads, float *m, float *v, long n,
                         float lr, float beta1, float beta2, float eps, float weight_decay, int t);
    /* Returns sum of x[i]^2 in double precision (for norms and clipping). */
    double (*sum_squares)(const float *x, long n);
    /* x[n] *= s. */
    void (*scale)(float *x, float s, long n);
} NnBackend;

/* The CPU backend (C + OpenMP + OpenBLAS); always present. */
extern const NnBackend nn_cpu_backend;

/* Call first thing in main(): makes OpenBLAS use this CPU's fastest
 * kernels when it detected only generic ones (may re-execute the process;
 * see nn/cpu/cpu_blas_select.c). */
void nn_cpu_select_blas_kernels(char **argv);

/* The CUDA backend, or NULL when the build has no CUDA or no device is
 * present; writes the reason into why (may be NULL) when it returns NULL. */
const NnBackend *nn_cuda_backend(char *why, size_t why_size);

/* Backend by name ("cpu" or "cuda"); NULL and a reason if unavailable. */
const NnBackend *nn_backend_by_name(const char *name, char *why, size_t why_size);

#endif
