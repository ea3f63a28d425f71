/*
 * cpu_ops.h - the CPU backend's op functions, shared between the files that
 * implement them (cpu_*.c) and the table that lists them (cpu_backend.c).
 * Semantics of every op: nn/backend.h.
 */
#ifndef DD_NN_CPU_OPS_H
#define DD_NN_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

/* cpu_memory.c */
void *cpu_alloc(size_t bytes);
void cpu_free(void *ptr);
void cpu_zero(void *ptr, size_t bytes);
void cpu_copy(void *dst, const void *src, size_t bytes);
void cpu_synchronize(void);

/* cpu_matmul.c */
void cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                        int N, int C, int OC);
void cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int N, int C, int OC);
/* Runs body with OpenBLAS held to one thread, for sgemm calls made from
 * inside an OpenMP loop (so the two thread pools do not oversubscribe). */
int cpu_blas_threads_begin_serial(void);
void cpu_blas_threads_end_serial(int saved);

/* cpu_attention.c */
void cpu_attention_forward(float *out, float *lse, const float *qkv, const float *sin,
                           const float *cos, int B, int T, int prefix, int H, int Dh);
void cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                            const float *lse, const float *sin, const float *cos, int B, int T,
                            int prefix, int H, int Dh);

/* cpu_norm.c */
void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int N, int C, float eps);
void cpu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const float *mean,
                            const float *rstd, int N, int C);

/* cpu_pointwise.c */
void cpu_patchify(float *patches, const float *images, int B, int C, int H, int W, int P);
void cpu_tokens_forward(float *tokens, const float *patch_emb, const float *cls, const float *reg,
                        const float *mask_token, const uint8_t *mask, int B, int Np, int R, int D);
void cpu_tokens_backward(float *dpatch_emb, float *dcls, float *dreg, float *dmask_token,
                         const float *dtokens, const uint8_t *mask, int B, int Np, int R, int D);
void cpu_gelu_forward(float *out, const float *inp, long n);
void cpu_gelu_backward(float *dinp, const float *dout, const float *inp, long n);
void cpu_swiglu_forward(float *out, const float *inp, int N, int F);
void cpu_swiglu_backward(float *dinp, const float *dout, const float *inp, int N, int F);
void cpu_layerscale_residual_forward(float *out, const float *res, const float *y,
                                     const float *gamma, int N, int C);
void cpu_layerscale_residual_backward(float *dres, float *dy, float *dgamma, const float *dout,
                                      const float *y, const float *gamma, int N, int C);

/* cpu_optim.c */
void cpu_adamw_update(float *params, const float *grads, float *m, float *v, long n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int t);
double cpu_sum_squares(const float *x, long n);
void cpu_scale(float *x, float s, long n);

/* cpu_rows.c */
void cpu_l2norm_forward(float *out, float *norm, const float *inp, int N, int C, float eps);
void cpu_l2norm_backward(float *dinp, const float *dout, const float *inp, const float *norm,
                         int N, int C, float eps);
void cpu_gather_rows(float *out, const float *inp, const int32_t *rows, int N, int C);
void cpu_gather_rows_backward(float *dinp, const float *dout, const int32_t *rows, int N, int C);

/* cpu_loss.c */
void cpu_softmax_cross_entropy_forward(float *loss, float *lse, const float *logits,
                                       const float *targets, const int32_t *target_rows,
                                       int N, int K, int R, float temperature);
void cpu_softmax_cross_entropy_backward(float *dlogits, const float *dloss, const float *logits,
                                        const float *targets, const int32_t *target_rows,
                                        const float *lse, int N, int K, int R, float temperature);
void cpu_koleo_forward(float *loss, int32_t *neighbor, const float *inp, int N, int C, float eps);
void cpu_koleo_backward(float *dinp, const float *dloss, const float *inp, const int32_t *neighbor,
                        int N, int C, float eps);

/* cpu_sinkhorn.c */
void cpu_exp_with_temperature(float *out, const float *inp, const float *shift, int M, int K,
                              float temperature);
void cpu_column_sums(float *sums, const float *x, int M, int K);
void cpu_column_max(float *maxes, const float *x, int M, int K);
void cpu_divide_columns(float *x, const float *divisors, int M, int K);
void cpu_normalize_rows(float *x, int M, int K);

/* cpu_ema.c */
void cpu_ema_update(float *ema, const float *params, long n, float momentum);

/* cpu_bf16_rows.c */
void cpu_scatter_rows_to_bf16(uint16_t *out, const float *inp, const int64_t *starts, int N, int C);
void cpu_gather_rows_from_bf16(float *out, const uint16_t *inp, const int64_t *starts, int N, int C);

/* cpu_bf16_block.c: the block_bf16 entries (uint16_t = bf16) */
void cpu_cast_to_bf16(uint16_t *out, const float *inp, long n);
void cpu_matmul_forward_bf16(uint16_t *out, const uint16_t *inp, const uint16_t *weight,
                             const float *bias, int N, int C, int OC);
void cpu_matmul_backward_bf16(uint16_t *dinp, float *dweight, float *dbias, const uint16_t *dout,
                              const uint16_t *inp, const uint16_t *weight, int N, int C, int OC);
void cpu_layernorm_forward_bf16(uint16_t *out, float *mean, float *rstd, const float *inp,
                                const float *weight, const float *bias, int N, int C, float eps);
void cpu_layernorm_backward_bf16(float *dinp, float *dweight, float *dbias, const uint16_t *dout,
                                 const float *inp, const float *weight, const float *mean,
                                 const float *rstd, int N, int C);
void cpu_attention_forward_bf16(uint16_t *out, float *lse, const uint16_t *qkv, const float *sin,
                                const float *cos, int B, int T, int prefix, int H, int Dh);
void cpu_attention_backward_bf16(uint16_t *dqkv, const uint16_t *dout, const uint16_t *qkv,
                                 const uint16_t *out, const float *lse, const float *sin,
                                 const float *cos, int B, int T, int prefix, int H, int Dh);
void cpu_gelu_forward_bf16(uint16_t *out, const uint16_t *inp, long n);
void cpu_gelu_backward_bf16(uint16_t *dinp, const uint16_t *dout, const uint16_t *inp, long n);
void cpu_swiglu_forward_bf16(uint16_t *out, const uint16_t *inp, int N, int F);
void cpu_swiglu_backward_bf16(uint16_t *dinp, const uint16_t *dout, const uint16_t *inp, int N, int F);
void cpu_layerscale_residual_forward_bf16(float *out, const float *res, const uint16_t *y,
                                          const float *gamma, int N, int C);
void cpu_layerscale_residual_backward_bf16(float *dres, uint16_t *dy, float *dgamma, const float *dout,
                                           const uint16_t *y, const float *gamma, int N, int C);

#endif
