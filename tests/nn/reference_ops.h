/*
 * reference_ops.h - a plain float64 implementation of every op in
 * nn/backend.h: the oracle tests/nn/test_ops.c compares each backend with.
 *
 * Every function has the signature and semantics of its NnBackend entry,
 * with double in place of float: same shapes, same layouts, same in-place
 * ops, and every *_backward accumulates (+=) exactly where the backend's
 * does (rope_backward overwrites, as the contract says). Written for
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

/* In place on the q, k parts of qkv[B, T, 3, H, Dh] for t >= prefix:
 * x <- x * cos[t - prefix] + rotate_half(x) * sin[t - prefix];
 * sin, cos [T - prefix, Dh]. */
void ref_rope_forward(double *qkv, const double *sin, const double *cos,
                      int B, int T, int prefix, int H, int Dh);
/* The transpose of ref_rope_forward, in place on dqkv[B, T, 3, H, Dh]
 * (overwrites, like the backend op). */
void ref_rope_backward(double *dqkv, const double *sin, const double *cos,
                       int B, int T, int prefix, int H, int Dh);

/* sin[Hp*Wp, Dh], cos[Hp*Wp, Dh]: the formula of nn/rope.h, computed
 * independently of nn/rope.c (per output index, periods via exp/log). */
void ref_rope_tables(double *sin_table, double *cos_table, int Hp, int Wp, int Dh,
                     double base, double rescale);

/* out[B, T, H, Dh] = softmax(q k^T / sqrt(Dh)) v from qkv[B, T, 3, H, Dh];
 * writes probs[B, H, T, T]. */
void ref_attention_forward(double *out, double *probs, const double *qkv,
                           int B, int T, int H, int Dh);
/* dqkv[B, T, 3, H, Dh] += the gradient through attention of dout[B, T, H, Dh]. */
void ref_attention_backward(double *dqkv, const double *dout, const double *qkv,
                            const double *probs, int B, int T, int H, int Dh);

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

#endif
