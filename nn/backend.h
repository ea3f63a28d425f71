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
    /* Multi-head softmax attention with 2-D RoPE applied on the fly.
     * qkv[B, T, 3, H, Dh] (D = H*Dh) is the qkv projection's output,
     * UNROTATED; for image b, token t and head h its parts are q_t, k_t, v_t
     * [Dh]. The op uses, per head,
     *   q'_t = rope_t(q_t),  k'_t = rope_t(k_t)   for t >= prefix,
     *   q'_t = q_t,          k'_t = k_t           for t <  prefix (CLS, registers),
     *   rope_t(x) = x * cos[t - prefix] + rotate_half(x) * sin[t - prefix],
     * with rotate_half([x1, x2]) = [-x2, x1] over each head's two halves of
     * Dh/2 values and the tables sin, cos [T - prefix, Dh] (nn/rope.h);
     * element-wise, with c = cos[t - prefix], s = sin[t - prefix], i < Dh/2
     * and i' = i + Dh/2:
     *   x'[i]  = x[i]  c[i]  - x[i'] s[i],   x'[i'] = x[i'] c[i'] + x[i] s[i'].
     * v is never rotated. sin and cos may both be NULL: no rotation (q' = q,
     * k' = k for every token; prefix is then ignored). Dh is even when the
     * tables are given. The rotated q', k' are never written to memory.
     *
     * out[B, T, H, Dh] = softmax(q' k'^T / sqrt(Dh)) v per image and head.
     * Saves only lse[B, H, T], the log-sum-exp of each row of scaled scores
     * q'_i . k'_j / sqrt(Dh): no [T, T] matrix outlives the call
     * (memory-efficient attention); the backward recomputes the
     * probabilities p_ij = exp(q'_i . k'_j / sqrt(Dh) - lse_i) from it. */
    void (*attention_forward)(float *out, float *lse, const float *qkv,
                              const float *sin, const float *cos,
                              int B, int T, int prefix, int H, int Dh);
    /* dqkv[B, T, 3, H, Dh] accumulates the gradient with respect to the
     * UNROTATED qkv from dout[B, T, H, Dh], given the same qkv, sin, cos
     * [T - prefix, Dh] (or NULL) and prefix as the forward, and its
     * out[B, T, H, Dh] and lse[B, H, T]. The gradients g' of the rotated
     * q', k' go through the transposed rotation inside the op:
     *   g[i] += g'[i] c[i] + g'[i'] s[i'],   g[i'] += g'[i'] c[i'] - g'[i] s[i]
     * (t >= prefix; g += g' for the prefix tokens and v). */
    void (*attention_backward)(float *dqkv, const float *dout, const float *qkv,
                               const float *out, const float *lse,
                               const float *sin, const float *cos,
                               int B, int T, int prefix, int H, int Dh);

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

    /* ---- heads, losses, Sinkhorn-Knopp, EMA (students/) --------------------
     * Appended for the distillation objective. A backend that does not
     * implement them yet leaves them NULL (tests/nn skips those cases). */

    /* Rows to unit L2 norm: out[N, C] = inp / max(norm, eps) with
     * norm[N] = ||inp[n]||_2 (saved for the backward), as
     * torch.nn.functional.normalize. out may be NULL: only norm is written
     * (the row norms of a weight matrix). */
    void (*l2norm_forward)(float *out, float *norm, const float *inp, int N, int C, float eps);
    /* dinp[N, C] accumulates the gradient of the forward from dout[N, C]:
     * (dout - y (y . dout)) / norm with y = inp / norm where norm > eps,
     * dout / eps where the norm was clamped. */
    void (*l2norm_backward)(float *dinp, const float *dout, const float *inp, const float *norm,
                            int N, int C, float eps);

    /* out[N, C] = inp[rows[n], :]: picks rows (the CLS tokens, the masked
     * patch tokens) of a larger [*, C] tensor; rows[N] are int32 indices. */
    void (*gather_rows)(float *out, const float *inp, const int32_t *rows, int N, int C);
    /* dinp[rows[n], :] += dout[n, :] (rows may repeat; each adds). */
    void (*gather_rows_backward)(float *dinp, const float *dout, const int32_t *rows, int N, int C);

    /* Cross-entropy of the student's tempered softmax against teacher
     * distributions, one row of K prototype scores at a time (K up to
     * 262,144: no [N, K] temporary, the rows are read a few times instead):
     *   loss[n] = - sum_r sum_k t_r[k] * log_softmax(logits[n] / temperature)[k]
     * with t_r = targets[target_rows[n * R + r], :], R targets per row
     * (a local crop against both teacher globals: R = 2). target_rows may be
     * NULL when R = 1: row n uses targets row n. Saves
     * lse[n] = logsumexp(logits[n] / temperature) for the backward.
     * logits[N, K], targets[M, K], target_rows[N, R] (int32). */
    void (*softmax_cross_entropy_forward)(float *loss, float *lse, const float *logits,
                                          const float *targets, const int32_t *target_rows,
                                          int N, int K, int R, float temperature);
    /* dlogits[N, K] accumulates dloss[n] * (p * sum_r sum_k t_r[k] - sum_r t_r) / temperature,
     * p = softmax(logits[n] / temperature) from the saved lse. dlogits must
     * not alias logits. */
    void (*softmax_cross_entropy_backward)(float *dlogits, const float *dloss, const float *logits,
                                           const float *targets, const int32_t *target_rows,
                                           const float *lse, int N, int K, int R, float temperature);

    /* KoLeo on unit rows inp[N, C] (N >= 2): neighbor[n] = the other row of
     * largest inner product (the nearest; the first on ties), and
     * loss[n] = -log(||inp[n] - inp[neighbor[n]] + eps||_2 + eps), the
     * pairwise distance of torch.nn.PairwiseDistance(eps). neighbor is int32. */
    void (*koleo_forward)(float *loss, int32_t *neighbor, const float *inp, int N, int C, float eps);
    /* dinp[N, C] accumulates the gradient of sum_n dloss[n] * loss[n] for the
     * saved neighbours (held fixed), into both rows of each pair. */
    void (*koleo_backward)(float *dinp, const float *dloss, const float *inp, const int32_t *neighbor,
                           int N, int C, float eps);

    /* Sinkhorn-Knopp's building blocks on scores [M, K] (M samples, K prototypes):
     * out[m, k] = exp((inp[m, k] - shift[k]) / temperature); shift[K] may be
     * NULL (no shift); out may be inp (in place). */
    void (*exp_with_temperature)(float *out, const float *inp, const float *shift, int M, int K,
                                 float temperature);
    /* sums[K] = sum over m of x[m, k] (overwrites). */
    void (*column_sums)(float *sums, const float *x, int M, int K);
    /* maxes[K] = max over m of x[m, k] (overwrites; -infinity when M = 0). */
    void (*column_max)(float *maxes, const float *x, int M, int K);
    /* x[m, k] /= divisors[k] in place; a column whose divisor is 0 is set to 0. */
    void (*divide_columns)(float *x, const float *divisors, int M, int K);
    /* Each row of x[M, K] divided by its own sum, in place; a row summing
     * to 0 stays 0. */
    void (*normalize_rows)(float *x, int M, int K);

    /* Exponential moving average: ema[n] = momentum * ema + (1 - momentum) * params. */
    void (*ema_update)(float *ema, const float *params, long n, float momentum);

    /* ---- the teacher's rows on the wire (comm/teacher_payload.h) ---------
     * bf16 values are uint16_t: the top half of an fp32, rounded to nearest,
     * ties to even, exactly as comm/bf16.h's bf16_from_float (a NaN stays a
     * quiet NaN); widening back is exact. Rows sit at arbitrary value offsets
     * starts[] (int64) of a flat bf16 array: the image rows of a slice.
     * Tested bit for bit against comm/bf16.c in tests/nn/test_wire_ops.c. */

    /* out[starts[n] + c] = bf16(inp[n, c]) for inp[N, C]; rows must not
     * overlap; the other values of out are left alone. */
    void (*scatter_rows_to_bf16)(uint16_t *out, const float *inp, const int64_t *starts, int N, int C);
    /* out[n, c] = fp32(inp[starts[n] + c]) for out[N, C] (rows may overlap). */
    void (*gather_rows_from_bf16)(float *out, const uint16_t *inp, const int64_t *starts, int N, int C);

    /* ---- a ViT block with bf16 storage (nn/vit.c) -------------------------
     * block_bf16 = 1 asks nn/vit.c to keep the tensors inside each block in
     * bf16 through the entries below: the LayerNorm outputs, qkv, the
     * attention output, the two projections' outputs, the feed-forward's
     * hidden rows, and the gradients of all of them. The residual stream,
     * the saved statistics (mean, rstd, lse), the parameters and every
     * parameter gradient stay fp32. That halves the memory and the traffic
     * of those tensors and gives the GEMMs bf16 operands.
     *
     * Each entry is the fp32 entry without the _bf16 suffix with the
     * tensors typed uint16_t stored as bf16 (the wire ops' bits): read by
     * exact widening, computed in fp32, written once, rounded to nearest
     * even. An accumulating bf16 output (+=) becomes
     * bf16(widen(old) + the fp32 increment): one rounding per call. The
     * fp32 outputs (dweight, dbias, mean, rstd, lse, a LayerNorm's dinp,
     * the residual) are those of the fp32 entry on the widened inputs, up
     * to the backend's order of summation. Matrices come as a bf16 copy
     * (cast_to_bf16 of the fp32 parameters); biases and scales stay fp32.
     * A backend without them leaves them NULL and block_bf16 0. */
    int block_bf16;
    /* out[n] = bf16(inp[n]). */
    void (*cast_to_bf16)(uint16_t *out, const float *inp, long n);
    /* out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[OC] (fp32, may be NULL).
     * The one exception to one rounding: a backend may round the bias, or
     * the product, before the sum (cuBLASLt's bias epilogue wants a bias of
     * D's type): bf16(inp W^T + bf16(bias)) or bf16(bf16(inp W^T) + bias),
     * within 2^-8 of the largest value. */
    void (*matmul_forward_bf16)(uint16_t *out, const uint16_t *inp, const uint16_t *weight,
                                const float *bias, int N, int C, int OC);
    /* dinp[N, C] (bf16, may be NULL) += dout @ weight; dweight[OC, C] and
     * dbias[OC] (fp32, dbias may be NULL) += as matmul_backward. */
    void (*matmul_backward_bf16)(uint16_t *dinp, float *dweight, float *dbias, const uint16_t *dout,
                                 const uint16_t *inp, const uint16_t *weight, int N, int C, int OC);
    /* out[N, C] in bf16 from the fp32 residual inp[N, C]; mean, rstd fp32. */
    void (*layernorm_forward_bf16)(uint16_t *out, float *mean, float *rstd, const float *inp,
                                   const float *weight, const float *bias, int N, int C, float eps);
    /* dinp[N, C] (fp32, the residual's gradient) += from dout[N, C] (bf16). */
    void (*layernorm_backward_bf16)(float *dinp, float *dweight, float *dbias, const uint16_t *dout,
                                    const float *inp, const float *weight, const float *mean,
                                    const float *rstd, int N, int C);
    /* out[B, T, H, Dh] and qkv[B, T, 3, H, Dh] bf16; lse[B, H, T] fp32. */
    void (*attention_forward_bf16)(uint16_t *out, float *lse, const uint16_t *qkv, const float *sin,
                                   const float *cos, int B, int T, int prefix, int H, int Dh);
    /* dqkv (bf16) += from dout, qkv, out (bf16) and lse (fp32). */
    void (*attention_backward_bf16)(uint16_t *dqkv, const uint16_t *dout, const uint16_t *qkv,
                                    const uint16_t *out, const float *lse, const float *sin,
                                    const float *cos, int B, int T, int prefix, int H, int Dh);
    void (*gelu_forward_bf16)(uint16_t *out, const uint16_t *inp, long n);
    void (*gelu_backward_bf16)(uint16_t *dinp, const uint16_t *dout, const uint16_t *inp, long n);
    void (*swiglu_forward_bf16)(uint16_t *out, const uint16_t *inp, int N, int F);
    void (*swiglu_backward_bf16)(uint16_t *dinp, const uint16_t *dout, const uint16_t *inp, int N, int F);
    /* out, res fp32 (the residual stream); y[N, C] bf16. */
    void (*layerscale_residual_forward_bf16)(float *out, const float *res, const uint16_t *y,
                                             const float *gamma, int N, int C);
    /* dy (bf16) += dout * gamma; dgamma (fp32) += sum of dout * y; dres
     * (fp32) as the fp32 entry, may be NULL. dout fp32. */
    void (*layerscale_residual_backward_bf16)(float *dres, uint16_t *dy, float *dgamma,
                                              const float *dout, const uint16_t *y,
                                              const float *gamma, int N, int C);
} NnBackend;

/* The CPU backend (C + OpenMP + OpenBLAS); always present. */
extern const NnBackend nn_cpu_backend;
/* The same with block_bf16 = 1 ("cpu-bf16"): every ViT block keeps its
 * inner tensors in bf16 as the "cuda" table does, computed in fp32. The
 * oracle of the CUDA bf16 entries and the way to run the bf16 model here. */
extern const NnBackend nn_cpu_bf16_backend;

/* Call first thing in main(): makes OpenBLAS use this CPU's fastest
 * kernels when it detected only generic ones (may re-execute the process;
 * see nn/cpu/cpu_blas_select.c). */
void nn_cpu_select_blas_kernels(char **argv);

/* The CUDA backend ("cuda"), or NULL when the build has no CUDA or no
 * device is present; writes the reason into why (may be NULL) when it
 * returns NULL. Its linear layers and attention multiply on bf16 tensor
 * cores with fp32 accumulation, and its ViT blocks keep their inner tensors
 * in bf16 (block_bf16): the fast default for runs, within about 1e-2 of the
 * CPU rather than fp32 accuracy. Initialising it (either entry
 * point) creates the cuBLAS and cuBLASLt handles and cudaMalloc's the 32 MiB
 * cuBLASLt workspace, kept for the life of the process. */
const NnBackend *nn_cuda_backend(char *why, size_t why_size);
/* The same backend with exact fp32 linear layers and attention and fp32
 * blocks ("cuda-fp32", block_bf16 0): every other entry, the _bf16 ones
 * included, is shared with nn_cuda_backend's table. For comparing with the CPU
 * oracle at fp32 accuracy; NULL and the reason as nn_cuda_backend. */
const NnBackend *nn_cuda_fp32_backend(char *why, size_t why_size);

/* Chooses the CUDA device of a process that is the local_rank-th of its
 * node: device local_rank modulo the node's device count (ranks share
 * devices when there are more ranks than devices). Call before the first
 * nn_cuda_backend; *device gets the index. -1 and the reason in why when
 * there is no device or no CUDA in the build. */
int nn_cuda_select_device(int local_rank, int *device, char *why, size_t why_size);

/* For the benchmark that weighs them (distill bench --compare-epilogues):
 * on = 0 makes the CUDA linear layers add their biases and sum their bias
 * gradients in kernels of their own, as they do where cuBLASLt has no
 * algorithm with the epilogue, instead of in cuBLASLt's epilogues; 1 (the
 * default) fuses them again. Returns the previous setting, or -1 in a build
 * without CUDA. Either way the results agree within bf16 rounding. */
int nn_cuda_fuse_epilogues(int on);

/* Backend by name ("cpu", "cpu-bf16", "cuda" or "cuda-fp32"); NULL and a
 * reason if unavailable. */
const NnBackend *nn_backend_by_name(const char *name, char *why, size_t why_size);
/* 1 when be's memory is host memory (the two cpu tables): nothing to stage,
 * no device to choose. */
int nn_backend_on_host(const NnBackend *be);

#endif
