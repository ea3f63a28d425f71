/*
 * reference_ops.c - the float64 oracle of every NnBackend op (see
 * reference_ops.h). Each function is the textbook formula, one output
 * element at a time; tests/nn/test_ops.c checks the backward ones against
 * finite differences of the forward ones, so this file is itself tested.
 */
#include "tests/nn/reference_ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- linear layers ------------------------------------------------------ */

void ref_matmul_forward(double *out, const double *inp, const double *weight,
                        const double *bias, int N, int C, int OC) {
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            double sum = bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++) sum += inp[(long)n * C + c] * weight[(long)o * C + c];
            out[(long)n * OC + o] = sum;
        }
    }
}

void ref_matmul_backward(double *dinp, double *dweight, double *dbias,
                         const double *dout, const double *inp, const double *weight,
                         int N, int C, int OC) {
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            const double g = dout[(long)n * OC + o];
            for (int c = 0; c < C; c++) {
                if (dinp) dinp[(long)n * C + c] += g * weight[(long)o * C + c];
                if (dweight) dweight[(long)o * C + c] += g * inp[(long)n * C + c];
            }
            if (dbias) dbias[o] += g;
        }
    }
}

/* ---- patch embedding and tokens --------------------------------------- */

void ref_patchify(double *patches, const double *images, int B, int C, int H, int W, int P) {
    const int Hp = H / P, Wp = W / P;
    const long row_length = (long)C * P * P;
    for (int b = 0; b < B; b++)
        for (int py = 0; py < Hp; py++)
            for (int px = 0; px < Wp; px++) {
                double *row = patches + ((long)b * Hp * Wp + (long)py * Wp + px) * row_length;
                for (int c = 0; c < C; c++)
                    for (int y = 0; y < P; y++)
                        for (int x = 0; x < P; x++) {
                            long image_index = (((long)b * C + c) * H + (long)py * P + y) * W
                                               + (long)px * P + x;
                            row[((long)c * P + y) * P + x] = images[image_index];
                        }
            }
}

static int patch_is_masked(const uint8_t *mask, int b, int p, int Np) {
    return mask && mask[(long)b * Np + p] != 0;
}

void ref_tokens_forward(double *tokens, const double *patch_emb, const double *cls,
                        const double *reg, const double *mask_token, const uint8_t *mask,
                        int B, int Np, int R, int D) {
    const int T = 1 + R + Np;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const double *source;
            if (t == 0) {
                source = cls;
            } else if (t <= R) {
                source = reg + (long)(t - 1) * D;
            } else {
                int p = t - 1 - R;
                source = patch_is_masked(mask, b, p, Np) ? mask_token
                                                         : patch_emb + ((long)b * Np + p) * D;
            }
            memcpy(tokens + ((long)b * T + t) * D, source, sizeof(double) * D);
        }
    }
}

void ref_tokens_backward(double *dpatch_emb, double *dcls, double *dreg, double *dmask_token,
                         const double *dtokens, const uint8_t *mask,
                         int B, int Np, int R, int D) {
    const int T = 1 + R + Np;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            double *target;
            if (t == 0) {
                target = dcls;
            } else if (t <= R) {
                target = dreg + (long)(t - 1) * D;
            } else {
                int p = t - 1 - R;
                target = patch_is_masked(mask, b, p, Np) ? dmask_token
                                                         : dpatch_emb + ((long)b * Np + p) * D;
            }
            const double *row = dtokens + ((long)b * T + t) * D;
            for (int d = 0; d < D; d++) target[d] += row[d];
        }
    }
}

/* ---- normalisation -------------------------------------------------------- */

void ref_layernorm_forward(double *out, double *mean, double *rstd, const double *inp,
                           const double *weight, const double *bias, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        const double *x = inp + (long)n * C;
        double sum = 0.0;
        for (int c = 0; c < C; c++) sum += x[c];
        const double mu = sum / C;
        double squares = 0.0;
        for (int c = 0; c < C; c++) squares += (x[c] - mu) * (x[c] - mu);
        const double r = 1.0 / sqrt(squares / C + eps);
        for (int c = 0; c < C; c++) out[(long)n * C + c] = (x[c] - mu) * r * weight[c] + bias[c];
        mean[n] = mu;
        rstd[n] = r;
    }
}

/* With xhat = (x - mean) * rstd and g = dout * weight:
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)). */
void ref_layernorm_backward(double *dinp, double *dweight, double *dbias, const double *dout,
                            const double *inp, const double *weight,
                            const double *mean, const double *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const double *x = inp + (long)n * C;
        const double *dy = dout + (long)n * C;
        double mean_g = 0.0, mean_g_xhat = 0.0;
        for (int c = 0; c < C; c++) {
            const double xhat = (x[c] - mean[n]) * rstd[n];
            mean_g += dy[c] * weight[c] / C;
            mean_g_xhat += dy[c] * weight[c] * xhat / C;
        }
        for (int c = 0; c < C; c++) {
            const double xhat = (x[c] - mean[n]) * rstd[n];
            const double g = dy[c] * weight[c];
            dinp[(long)n * C + c] += rstd[n] * (g - mean_g - xhat * mean_g_xhat);
            dweight[c] += dy[c] * xhat;
            dbias[c] += dy[c];
        }
    }
}

/* ---- rotary position embedding ------------------------------------------- */

enum { QKV_QUERY = 0, QKV_KEY = 1, QKV_VALUE = 2 };

/* Index of qkv[b, t, part, h, 0] in a [B, T, 3, H, Dh] tensor. */
static long qkv_offset(int b, int t, int part, int h, int T, int H, int Dh) {
    return ((((long)b * T + t) * 3 + part) * H + h) * Dh;
}

/* rotate_half([x1, x2])[j] = [-x2, x1][j] over Dh values. */
static double rotate_half_at(const double *x, int j, int Dh) {
    const int half = Dh / 2;
    return j < half ? -x[j + half] : x[j - half];
}

/* x <- x * cos + rotate_half(x) * sin, over one head's Dh values. */
static void rotate_forward(double *x, const double *sin, const double *cos, int Dh,
                           double *scratch) {
    for (int j = 0; j < Dh; j++) scratch[j] = x[j] * cos[j] + rotate_half_at(x, j, Dh) * sin[j];
    memcpy(x, scratch, sizeof(double) * Dh);
}

/* The transpose of rotate_forward: rotate_half is antisymmetric
 * (R^T = -R), so (diag(cos) + diag(sin) R)^T dy = cos * dy - R (sin * dy). */
static void rotate_transpose(double *dy, const double *sin, const double *cos, int Dh,
                             double *scratch) {
    double *sin_dy = scratch + Dh;
    for (int j = 0; j < Dh; j++) sin_dy[j] = sin[j] * dy[j];
    for (int j = 0; j < Dh; j++) scratch[j] = dy[j] * cos[j] - rotate_half_at(sin_dy, j, Dh);
    memcpy(dy, scratch, sizeof(double) * Dh);
}

/* Applies rotate to every q and k head vector of the patch tokens. */
static void for_each_rotated_vector(double *qkv, const double *sin, const double *cos,
                                    int B, int T, int prefix, int H, int Dh,
                                    void (*rotate)(double *, const double *, const double *,
                                                   int, double *)) {
    double *scratch = malloc(sizeof(double) * 2 * Dh);   /* [2, Dh] */
    if (!scratch) abort();
    for (int b = 0; b < B; b++)
        for (int t = prefix; t < T; t++)
            for (int part = QKV_QUERY; part <= QKV_KEY; part++)
                for (int h = 0; h < H; h++)
                    rotate(qkv + qkv_offset(b, t, part, h, T, H, Dh),
                           sin + (long)(t - prefix) * Dh, cos + (long)(t - prefix) * Dh, Dh,
                           scratch);
    free(scratch);
}


void ref_rope_tables(double *sin_table, double *cos_table, int Hp, int Wp, int Dh,
                     double base, double rescale) {
    const int half = Dh / 2, quarter = Dh / 4;
    for (int p = 0; p < Hp * Wp; p++) {
        const double y = (2.0 * (p / Wp + 0.5) / Hp - 1.0) * rescale;
        const double x = (2.0 * (p % Wp + 0.5) / Wp - 1.0) * rescale;
        for (int j = 0; j < Dh; j++) {
            const int k = j % half;                    /* the table repeats twice */
            const double coordinate = k < quarter ? y : x;
            const int i = k % quarter;
            const double period = exp(log(base) * (2.0 * i) / half);
            const double angle = 2.0 * M_PI * coordinate / period;
            sin_table[(long)p * Dh + j] = sin(angle);
            cos_table[(long)p * Dh + j] = cos(angle);
        }
    }
}

/* ---- attention ------------------------------------------------------------- */

/* p[T] = softmax over keys of the scaled scores of query t (image b, head h);
 * returns the row's log-sum-exp. */
static double attention_row_probs(double *p, const double *qkv, int b, int h, int t,
                                  int T, int H, int Dh) {
    const double scale = 1.0 / sqrt((double)Dh);
    const double *q = qkv + qkv_offset(b, t, QKV_QUERY, h, T, H, Dh);
    double max_score = -INFINITY;
    for (int s = 0; s < T; s++) {
        const double *k = qkv + qkv_offset(b, s, QKV_KEY, h, T, H, Dh);
        double dot = 0.0;
        for (int d = 0; d < Dh; d++) dot += q[d] * k[d];
        p[s] = dot * scale;
        if (p[s] > max_score) max_score = p[s];
    }
    double total = 0.0;
    for (int s = 0; s < T; s++) total += p[s] = exp(p[s] - max_score);
    for (int s = 0; s < T; s++) p[s] /= total;
    return max_score + log(total);
}

/* out[B, T, H, Dh], lse[B, H, T] from qkv[B, T, 3, H, Dh] as it is (no RoPE). */
static void plain_attention_forward(double *out, double *lse, const double *qkv,
                                    int B, int T, int H, int Dh) {
    double *p = malloc(sizeof(double) * T);   /* [T] */
    if (!p) abort();
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                lse[((long)b * H + h) * T + t] = attention_row_probs(p, qkv, b, h, t, T, H, Dh);
                double *o = out + (((long)b * T + t) * H + h) * Dh;
                for (int d = 0; d < Dh; d++) {
                    double sum = 0.0;
                    for (int s = 0; s < T; s++)
                        sum += p[s] * qkv[qkv_offset(b, s, QKV_VALUE, h, T, H, Dh) + d];
                    o[d] = sum;
                }
            }
    free(p);
}

/* With P = softmax(S), S = q k^T * scale, O = P v, and dP = dO v^T:
 * dv += P^T dO;  dS = P * (dP - rowsum(P * dP));  dq += dS k * scale;
 * dk += dS^T q * scale. */
static void plain_attention_backward(double *dqkv, const double *dout, const double *qkv,
                                     int B, int T, int H, int Dh) {
    const double scale = 1.0 / sqrt((double)Dh);
    double *p = malloc(sizeof(double) * T);        /* [T] */
    double *dprobs = malloc(sizeof(double) * T);   /* [T] */
    if (!p || !dprobs) abort();
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                attention_row_probs(p, qkv, b, h, t, T, H, Dh);
                const double *dout_t = dout + (((long)b * T + t) * H + h) * Dh;
                double weighted_dprobs = 0.0;
                for (int s = 0; s < T; s++) {
                    const double *v = qkv + qkv_offset(b, s, QKV_VALUE, h, T, H, Dh);
                    double *dv = dqkv + qkv_offset(b, s, QKV_VALUE, h, T, H, Dh);
                    dprobs[s] = 0.0;
                    for (int d = 0; d < Dh; d++) {
                        dprobs[s] += dout_t[d] * v[d];
                        dv[d] += p[s] * dout_t[d];
                    }
                    weighted_dprobs += p[s] * dprobs[s];
                }
                const double *q = qkv + qkv_offset(b, t, QKV_QUERY, h, T, H, Dh);
                double *dq = dqkv + qkv_offset(b, t, QKV_QUERY, h, T, H, Dh);
                for (int s = 0; s < T; s++) {
                    const double dscore = p[s] * (dprobs[s] - weighted_dprobs) * scale;
                    const double *k = qkv + qkv_offset(b, s, QKV_KEY, h, T, H, Dh);
                    double *dk = dqkv + qkv_offset(b, s, QKV_KEY, h, T, H, Dh);
                    for (int d = 0; d < Dh; d++) {
                        dq[d] += dscore * k[d];
                        dk[d] += dscore * q[d];
                    }
                }
            }
    free(p);
    free(dprobs);
}

/* A copy of qkv[B, T, 3, H, Dh] with q and k of the tokens t >= prefix
 * rotated (not rotated when sin is NULL); free() it. */
static double *rotated_copy(const double *qkv, const double *sin, const double *cos,
                            int B, int T, int prefix, int H, int Dh) {
    const size_t bytes = sizeof(double) * (size_t)B * T * 3 * H * Dh;
    double *rotated = malloc(bytes);
    if (!rotated) abort();
    memcpy(rotated, qkv, bytes);
    if (sin) for_each_rotated_vector(rotated, sin, cos, B, T, prefix, H, Dh, rotate_forward);
    return rotated;
}

void ref_attention_forward(double *out, double *lse, const double *qkv, const double *sin,
                           const double *cos, int B, int T, int prefix, int H, int Dh) {
    double *rotated = rotated_copy(qkv, sin, cos, B, T, prefix, H, Dh);   /* [B, T, 3, H, Dh] */
    plain_attention_forward(out, lse, rotated, B, T, H, Dh);
    free(rotated);
}

/* The gradient with respect to the rotated qkv, then the transposed
 * rotation of it, added to dqkv. */
void ref_attention_backward(double *dqkv, const double *dout, const double *qkv,
                            const double *sin, const double *cos,
                            int B, int T, int prefix, int H, int Dh) {
    const long count = (long)B * T * 3 * H * Dh;
    double *rotated = rotated_copy(qkv, sin, cos, B, T, prefix, H, Dh);   /* [B, T, 3, H, Dh] */
    double *drotated = calloc((size_t)count, sizeof(double));             /* [B, T, 3, H, Dh] */
    if (!drotated) abort();
    plain_attention_backward(drotated, dout, rotated, B, T, H, Dh);
    if (sin) for_each_rotated_vector(drotated, sin, cos, B, T, prefix, H, Dh, rotate_transpose);
    for (long i = 0; i < count; i++) dqkv[i] += drotated[i];
    free(rotated);
    free(drotated);
}

/* ---- pointwise ------------------------------------------------------------ */

static double gelu(double x) { return 0.5 * x * (1.0 + erf(x / M_SQRT2)); }

/* d/dx x Phi(x) = Phi(x) + x phi(x). */
static double gelu_derivative(double x) {
    return 0.5 * (1.0 + erf(x / M_SQRT2)) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
}

void ref_gelu_forward(double *out, const double *inp, long n) {
    for (long i = 0; i < n; i++) out[i] = gelu(inp[i]);
}

void ref_gelu_backward(double *dinp, const double *dout, const double *inp, long n) {
    for (long i = 0; i < n; i++) dinp[i] += dout[i] * gelu_derivative(inp[i]);
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double silu(double x) { return x * sigmoid(x); }
/* d/dx x sigmoid(x) = sigmoid(x) (1 + x (1 - sigmoid(x))). */
static double silu_derivative(double x) {
    return sigmoid(x) * (1.0 + x * (1.0 - sigmoid(x)));
}

void ref_swiglu_forward(double *out, const double *inp, int N, int F) {
    for (int n = 0; n < N; n++)
        for (int f = 0; f < F; f++) {
            const double gate = inp[(long)n * 2 * F + f], up = inp[(long)n * 2 * F + F + f];
            out[(long)n * F + f] = silu(gate) * up;
        }
}

void ref_swiglu_backward(double *dinp, const double *dout, const double *inp, int N, int F) {
    for (int n = 0; n < N; n++)
        for (int f = 0; f < F; f++) {
            const long gate_index = (long)n * 2 * F + f, up_index = gate_index + F;
            const double g = dout[(long)n * F + f];
            dinp[gate_index] += g * silu_derivative(inp[gate_index]) * inp[up_index];
            dinp[up_index] += g * silu(inp[gate_index]);
        }
}

void ref_layerscale_residual_forward(double *out, const double *res, const double *y,
                                     const double *gamma, int N, int C) {
    for (long i = 0; i < (long)N * C; i++) out[i] = res[i] + gamma[i % C] * y[i];
}

void ref_layerscale_residual_backward(double *dres, double *dy, double *dgamma,
                                      const double *dout, const double *y,
                                      const double *gamma, int N, int C) {
    for (long i = 0; i < (long)N * C; i++) {
        dres[i] += dout[i];
        dy[i] += dout[i] * gamma[i % C];
        dgamma[i % C] += dout[i] * y[i];
    }
}

/* ---- optimisation ------------------------------------------------------------ */

void ref_adamw_update(double *params, const double *grads, double *m, double *v, long n,
                      double lr, double beta1, double beta2, double eps,
                      double weight_decay, int t) {
    const double m_correction = 1.0 - pow(beta1, t), v_correction = 1.0 - pow(beta2, t);
    for (long i = 0; i < n; i++) {
        m[i] = beta1 * m[i] + (1.0 - beta1) * grads[i];
        v[i] = beta2 * v[i] + (1.0 - beta2) * grads[i] * grads[i];
        const double m_hat = m[i] / m_correction, v_hat = v[i] / v_correction;
        params[i] -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * params[i]);
    }
}

double ref_sum_squares(const double *x, long n) {
    double sum = 0.0;
    for (long i = 0; i < n; i++) sum += x[i] * x[i];
    return sum;
}

void ref_scale(double *x, double s, long n) {
    for (long i = 0; i < n; i++) x[i] *= s;
}

/* ---- heads, losses, Sinkhorn-Knopp, EMA ----------------------------------------- */

void ref_l2norm_forward(double *out, double *norm, const double *inp, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        double sum = 0.0;
        for (int c = 0; c < C; c++) sum += inp[(long)n * C + c] * inp[(long)n * C + c];
        norm[n] = sqrt(sum);
        if (out)
            for (int c = 0; c < C; c++) out[(long)n * C + c] = inp[(long)n * C + c] / fmax(norm[n], eps);
    }
}

void ref_l2norm_backward(double *dinp, const double *dout, const double *inp, const double *norm,
                         int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        const double *x = inp + (long)n * C, *dy = dout + (long)n * C;
        if (norm[n] <= eps) {
            for (int c = 0; c < C; c++) dinp[(long)n * C + c] += dy[c] / eps;
            continue;
        }
        double dot = 0.0;   /* y . dout */
        for (int c = 0; c < C; c++) dot += x[c] / norm[n] * dy[c];
        for (int c = 0; c < C; c++) dinp[(long)n * C + c] += (dy[c] - x[c] / norm[n] * dot) / norm[n];
    }
}

void ref_gather_rows(double *out, const double *inp, const int32_t *rows, int N, int C) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) out[(long)n * C + c] = inp[(long)rows[n] * C + c];
}

void ref_gather_rows_backward(double *dinp, const double *dout, const int32_t *rows, int N, int C) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) dinp[(long)rows[n] * C + c] += dout[(long)n * C + c];
}

/* The r-th target row of logits row n. */
static const double *ref_target(const double *targets, const int32_t *target_rows, int n, int r,
                                int R, int K) {
    return targets + (long)(target_rows ? target_rows[(long)n * R + r] : n) * K;
}

void ref_softmax_cross_entropy_forward(double *loss, double *lse, const double *logits,
                                       const double *targets, const int32_t *target_rows,
                                       int N, int K, int R, double temperature) {
    for (int n = 0; n < N; n++) {
        const double *x = logits + (long)n * K;
        double max = -INFINITY, sum = 0.0;
        for (int k = 0; k < K; k++) max = fmax(max, x[k] / temperature);
        for (int k = 0; k < K; k++) sum += exp(x[k] / temperature - max);
        lse[n] = max + log(sum);
        loss[n] = 0.0;
        for (int r = 0; r < R; r++) {
            const double *t = ref_target(targets, target_rows, n, r, R, K);
            for (int k = 0; k < K; k++) loss[n] -= t[k] * (x[k] / temperature - lse[n]);
        }
    }
}

void ref_softmax_cross_entropy_backward(double *dlogits, const double *dloss, const double *logits,
                                        const double *targets, const int32_t *target_rows,
                                        const double *lse, int N, int K, int R, double temperature) {
    for (int n = 0; n < N; n++) {
        const double *x = logits + (long)n * K;
        for (int r = 0; r < R; r++) {
            const double *t = ref_target(targets, target_rows, n, r, R, K);
            double mass = 0.0;
            for (int k = 0; k < K; k++) mass += t[k];
            for (int k = 0; k < K; k++) {
                const double p = exp(x[k] / temperature - lse[n]);
                dlogits[(long)n * K + k] += dloss[n] * (p * mass - t[k]) / temperature;
            }
        }
    }
}

/* ||a - b + eps||_2 */
static double ref_pair_distance(const double *a, const double *b, int C, double eps) {
    double sum = 0.0;
    for (int c = 0; c < C; c++) sum += (a[c] - b[c] + eps) * (a[c] - b[c] + eps);
    return sqrt(sum);
}

void ref_koleo_pair_loss(double *loss, const double *inp, const int32_t *neighbor, int N, int C,
                         double eps) {
    for (int n = 0; n < N; n++)
        loss[n] = -log(ref_pair_distance(inp + (long)n * C, inp + (long)neighbor[n] * C, C, eps) + eps);
}

void ref_koleo_forward(double *loss, int32_t *neighbor, const double *inp, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        double best = -INFINITY;
        for (int j = 0; j < N; j++) {
            if (j == n) continue;
            double dot = 0.0;
            for (int c = 0; c < C; c++) dot += inp[(long)n * C + c] * inp[(long)j * C + c];
            if (dot > best) {
                best = dot;
                neighbor[n] = j;
            }
        }
    }
    ref_koleo_pair_loss(loss, inp, neighbor, N, C, eps);
}

void ref_koleo_backward(double *dinp, const double *dloss, const double *inp, const int32_t *neighbor,
                        int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        const double *x = inp + (long)n * C, *y = inp + (long)neighbor[n] * C;
        const double d = ref_pair_distance(x, y, C, eps);
        for (int c = 0; c < C; c++) {
            const double g = -dloss[n] / (d + eps) * (x[c] - y[c] + eps) / d;
            dinp[(long)n * C + c] += g;
            dinp[(long)neighbor[n] * C + c] -= g;
        }
    }
}

void ref_exp_with_temperature(double *out, const double *inp, const double *shift, int M, int K,
                              double temperature) {
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++)
            out[(long)m * K + k] = exp((inp[(long)m * K + k] - (shift ? shift[k] : 0.0)) / temperature);
}

void ref_column_sums(double *sums, const double *x, int M, int K) {
    for (int k = 0; k < K; k++) {
        sums[k] = 0.0;
        for (int m = 0; m < M; m++) sums[k] += x[(long)m * K + k];
    }
}

void ref_column_max(double *maxes, const double *x, int M, int K) {
    for (int k = 0; k < K; k++) {
        maxes[k] = -INFINITY;
        for (int m = 0; m < M; m++) maxes[k] = fmax(maxes[k], x[(long)m * K + k]);
    }
}

void ref_divide_columns(double *x, const double *divisors, int M, int K) {
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++)
            x[(long)m * K + k] = divisors[k] != 0.0 ? x[(long)m * K + k] / divisors[k] : 0.0;
}

void ref_normalize_rows(double *x, int M, int K) {
    for (int m = 0; m < M; m++) {
        double sum = 0.0;
        for (int k = 0; k < K; k++) sum += x[(long)m * K + k];
        if (sum != 0.0)
            for (int k = 0; k < K; k++) x[(long)m * K + k] /= sum;
    }
}

void ref_ema_update(double *ema, const double *params, long n, double momentum) {
    for (long i = 0; i < n; i++) ema[i] = momentum * ema[i] + (1.0 - momentum) * params[i];
}
