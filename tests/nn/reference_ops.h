/*
 * reference_ops.h - a plain float64 implementation of every op in
 * nn/backend.h: the oracle tests/nn/test_ops.c compares each backend with.
 *
 * Every function has the signature and semantics of its NnBackend entry,
 * with double in place of float: same shapes, same layouts, same in-place
 * ops, and every *_backward accumulates (+=) exactly where the backend's
 * does. Written for
 * clarity, not speed: straight loops, one output element at a time.
 */
#ifndef DD_TESTS_NN_REFERENCE_OPS_H
#define DD_TESTS_NN_REFERENCE_OPS_H

#include <stdint.h>

/* out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[OC]; bias may be NULL. */
void ref_matmul_forward(double *out, const double *inp, const double *weight,
                        const double *bias, int N, int C, int OC);
/* dinp[N, C] += dout @ weight; dweight[OC, C] += dout^T @ inp; dbias[OC] +=
 * column sums of dout[N, OC]. dinp and dbias may be NULL. */
void ref_matmul_backward(double *dinp, double *dweight, double *dbias,
                         const double *dout, const double *inp, const double *weight,
                         int N, int C, int OC);

/* patches[B, Hp*Wp, C*P*P] from images[B, C, H, W]; row order (c, y, x). */
void ref_patchify(double *patches, const double *images, int B, int C, int H, int W, int P);

/* tokens[B, 1+R+Np, D] = [cls, reg[R, D], patch_emb[B, Np, D] or mask_token
 * where mask[B, Np] != 0]; mask may be NULL. */
void ref_tokens_forward(double *tokens, const double *patch_emb, const double *cls,
                        const double *reg, const double *mask_token, const uint8_t *mask,
                        int B, int Np, int R, int D);
/* Scatters dtokens[B, T, D] into dpatch_emb[B, Np, D], dcls[D], dreg[R, D],
 * dmask_token[D] (all +=); dmask_token may be NULL when mask is NULL. */
void ref_tokens_backward(double *dpatch_emb, double *dcls, double *dreg, double *dmask_token,
                         const double *dtokens, const uint8_t *mask,
                         int B, int Np, int R, int D);

/* out[N, C] = (inp - mean) * rstd * weight[C] + bias[C] per row, with the
 * biased (population) variance; writes mean[N], rstd[N] = 1/sqrt(var + eps). */
void ref_layernorm_forward(double *out, double *mean, double *rstd, const double *inp,
                           const double *weight, const double *bias, int N, int C, double eps);
/* dinp[N, C], dweight[C], dbias[C] += the gradients of the forward above. */
void ref_layernorm_backward(double *dinp, double *dweight, double *dbias, const double *dout,
                            const double *inp, const double *weight,
                            const double *mean, const double *rstd, int N, int C);

/* sin[Hp*Wp, Dh], cos[Hp*Wp, Dh]: the formula of nn/rope.h, computed
 * independently of nn/rope.c (per output index, periods via exp/log). */
void ref_rope_tables(double *sin_table, double *cos_table, int Hp, int Wp, int Dh,
                     double base, double rescale);

/* Attention with RoPE, in two plain steps: a rotated copy of
 * qkv[B, T, 3, H, Dh] (q, k of the tokens t >= prefix:
 * x <- x * cos[t - prefix] + rotate_half(x) * sin[t - prefix], with
 * sin, cos [T - prefix, Dh]; no rotation when sin is NULL), then
 * out[B, T, H, Dh] = softmax(q k^T / sqrt(Dh)) v on the copy; writes
 * lse[B, H, T], the log-sum-exp of each row of scaled scores. */
void ref_attention_forward(double *out, double *lse, const double *qkv, const double *sin,
                           const double *cos, int B, int T, int prefix, int H, int Dh);
/* dqkv[B, T, 3, H, Dh] += the gradient of the forward above with respect to
 * the unrotated qkv, from dout[B, T, H, Dh]: attention's backward on the
 * rotated copy (the probabilities recomputed, nothing taken from the
 * forward), then the transposed rotation. */
void ref_attention_backward(double *dqkv, const double *dout, const double *qkv,
                            const double *sin, const double *cos,
                            int B, int T, int prefix, int H, int Dh);

/* out[n] = x * Phi(x) (exact erf GELU); dinp[n] += dout * gelu'(inp). */
void ref_gelu_forward(double *out, const double *inp, long n);
void ref_gelu_backward(double *dinp, const double *dout, const double *inp, long n);

/* out[N, F] = silu(inp[N, 0:F]) * inp[N, F:2F]; dinp[N, 2F] +=. */
void ref_swiglu_forward(double *out, const double *inp, int N, int F);
void ref_swiglu_backward(double *dinp, const double *dout, const double *inp, int N, int F);

/* out[N, C] = res + gamma[C] * y; backward: dres += dout, dy += dout * gamma,
 * dgamma[C] += sum over N of dout * y. */
void ref_layerscale_residual_forward(double *out, const double *res, const double *y,
                                     const double *gamma, int N, int C);
void ref_layerscale_residual_backward(double *dres, double *dy, double *dgamma,
                                      const double *dout, const double *y,
                                      const double *gamma, int N, int C);

/* One AdamW step t >= 1 on params[n], m[n], v[n], in place (see backend.h). */
void ref_adamw_update(double *params, const double *grads, double *m, double *v, long n,
                      double lr, double beta1, double beta2, double eps,
                      double weight_decay, int t);

/* sum of x[i]^2. */
double ref_sum_squares(const double *x, long n);
/* x[n] *= s. */
void ref_scale(double *x, double s, long n);

/* out[N, C] = inp / max(||inp||, eps) per row (out may be NULL), norm[N];
 * backward: dinp[N, C] += the gradient through the forward. */
void ref_l2norm_forward(double *out, double *norm, const double *inp, int N, int C, double eps);
void ref_l2norm_backward(double *dinp, const double *dout, const double *inp, const double *norm,
                         int N, int C, double eps);

/* out[N, C] = inp[rows[n], :]; backward: dinp[rows[n], :] += dout[n, :]. */
void ref_gather_rows(double *out, const double *inp, const int32_t *rows, int N, int C);
void ref_gather_rows_backward(double *dinp, const double *dout, const int32_t *rows, int N, int C);

/* loss[N] = - sum_r targets[target_rows[n, r]] . log_softmax(logits[n] / temperature),
 * lse[N] = logsumexp(logits[n] / temperature); target_rows NULL: row n, R = 1.
 * Backward: dlogits[N, K] += dloss[n] * sum_r (softmax * mass_r - t_r) / temperature. */
void ref_softmax_cross_entropy_forward(double *loss, double *lse, const double *logits,
                                       const double *targets, const int32_t *target_rows,
                                       int N, int K, int R, double temperature);
void ref_softmax_cross_entropy_backward(double *dlogits, const double *dloss, const double *logits,
                                        const double *targets, const int32_t *target_rows,
                                        const double *lse, int N, int K, int R, double temperature);

/* KoLeo on rows inp[N, C]: neighbor[n] = argmax over j != n of inp[n] . inp[j];
 * loss[n] = -log(||inp[n] - inp[neighbor[n]] + eps|| + eps). pair_loss is
 * the same for given neighbours (what the backward differentiates). */
void ref_koleo_forward(double *loss, int32_t *neighbor, const double *inp, int N, int C, double eps);
void ref_koleo_pair_loss(double *loss, const double *inp, const int32_t *neighbor, int N, int C,
                         double eps);
void ref_koleo_backward(double *dinp, const double *dloss, const double *inp, const int32_t *neighbor,
                        int N, int C, double eps);

/* Sinkhorn-Knopp blocks on x[M, K]: out = exp((inp - shift[k]) / temperature)
 * (shift may be NULL); sums[K] = column sums; maxes[K] = column maxima
 * (-infinity for M = 0); x /= divisors[k] (0 where the divisor is 0); each
 * row divided by its sum (rows summing to 0 stay). */
void ref_exp_with_temperature(double *out, const double *inp, const double *shift, int M, int K,
                              double temperature);
void ref_column_sums(double *sums, const double *x, int M, int K);
void ref_column_max(double *maxes, const double *x, int M, int K);
void ref_divide_columns(double *x, const double *divisors, int M, int K);
void ref_normalize_rows(double *x, int M, int K);

/* ema[n] = momentum * ema + (1 - momentum) * params. */
void ref_ema_update(double *ema, const double *params, long n, double momentum);

#endif
