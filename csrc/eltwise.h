/* Fused element-wise kernels: activations with bias, their derivatives, softmax and losses.
 *
 * Layout: every tensor is a contiguous (outer, C, inner) block; a bias or per-channel
 * parameter has C entries. (N, F) with a per-feature bias is outer = N, C = F, inner = 1;
 * (N, C, H, W) with a per-channel bias is outer = N, C = C, inner = H * W; a plain activation is
 * outer = 1, C = 1, inner = size. Outputs are assigned (=), never accumulated, including db.
 * Every entry point returns NNF_OK or a negative status (cpu.h); nothing prints or aborts. */
#ifndef NNFAST_ELTWISE_H
#define NNFAST_ELTWISE_H

#include <stddef.h>
#include <stdint.h>

#include "cpu.h"

/* Every activation, once, in id order: X(ID, name, from_output, cost). This list generates
 * the enum below, the per-ISA kernel tables (eltwise_table.inc), the cost and from-output
 * tables (eltwise.c) and the names Python sees (nnf_act_name); nothing else lists them.
 *   name         the Python name and the stem of the kernels (relu_fwd_s_avx2, ...)
 *   from_output  1: the backward takes the forward's OUTPUT y as `u`; 0: its INPUT (the
 *                pre-activation x + bias)
 *   cost         work per element (~multiply-adds) for nnf_threads_for: memory-bound acts are
 *                cheap, the transcendental ones pay for a thread team sooner
 * a and b are the parameters (unused ones ignored): LEAKY_RELU a = slope; ELU a = alpha;
 * SOFTPLUS a = beta, b = threshold (as torch: x when beta * x > threshold). */
#define NNF_ACTIVATIONS(X)                                                                    \
    X(IDENTITY, identity, 1, 1)                                                               \
    X(STEP, step, 1, 1) /* x > 0 ? 1 : 0, derivative 0 */                                     \
    X(SIGMOID, sigmoid, 1, 8)                                                                 \
    X(TANH, tanh, 1, 8)                                                                       \
    X(ARCTAN, arctan, 0, 8)                                                                   \
    X(RELU, relu, 1, 1)                                                                       \
    X(LEAKY_RELU, leaky_relu, 1, 1) /* backward from y needs slope >= 0; else pass x */       \
    X(ELU, elu, 1, 8)               /* backward from y needs alpha >= 0 */                    \
    X(SOFTPLUS, softplus, 0, 12)                                                              \
    X(GELU, gelu, 0, 12) /* 0.5 x (1 + erf(x / sqrt 2)) */                                    \
    X(GELU_TANH, gelu_tanh, 0, 8) /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */       \
    X(SILU, silu, 0, 8)

typedef enum {
#define NNF_ACT_ENUM_(ID, name, from_output, cost) NNF_ACT_##ID,
    NNF_ACTIVATIONS(NNF_ACT_ENUM_)
#undef NNF_ACT_ENUM_
    NNF_ACT_COUNT
} nnf_act;

/* The name of `act` ("relu"), or NULL for an id out of range. */
const char *nnf_act_name(int act);

/* 1 if the backward of `act` takes the output y, 0 if it takes the input x. */
int nnf_act_from_output(int act);

/* y = act(x + bias[c]) over (outer, C, inner); bias may be NULL; preact, if not NULL, receives
 * x + bias. y may alias x (in place). OpenMP above a size threshold. */
int nnf_act_fwd_s(int act, float a, float b, ptrdiff_t outer, ptrdiff_t c, ptrdiff_t inner,
                  const float *x, const float *bias, float *y, float *preact);
int nnf_act_fwd_d(int act, double a, double b, ptrdiff_t outer, ptrdiff_t c, ptrdiff_t inner,
                  const double *x, const double *bias, double *y, double *preact);

/* dx = dy * act'(.) computed from u (see above), and, if db is not NULL, db[c] = sum of dx over
 * outer and inner (the bias gradient), in the same pass. dx may alias dy. */
int nnf_act_bwd_s(int act, float a, float b, ptrdiff_t outer, ptrdiff_t c, ptrdiff_t inner,
                  const float *dy, const float *u, float *dx, float *db);
int nnf_act_bwd_d(int act, double a, double b, ptrdiff_t outer, ptrdiff_t c, ptrdiff_t inner,
                  const double *dy, const double *u, double *dx, double *db);

/* GEMM epilogue entry: for each of `rows` rows of length n (row r at c + r * ldc):
 * if preact != NULL, preact[r * ld_preact + j] = c + bias; then c = act(c + bias) in place.
 * bias (n entries) may be NULL. param is `a` above (softplus: beta, threshold 20).
 * Single-threaded (the caller is inside its own parallel region), active ISA. */
int nnf_bias_act_rows_s(int act, float param, ptrdiff_t rows, ptrdiff_t n, float *c,
                        ptrdiff_t ldc, const float *bias, float *preact, ptrdiff_t ld_preact);
int nnf_bias_act_rows_d(int act, double param, ptrdiff_t rows, ptrdiff_t n, double *c,
                        ptrdiff_t ldc, const double *bias, double *preact, ptrdiff_t ld_preact);

/* PReLU over (outer, C, inner): y = x > 0 ? x : alpha[c] * x. Backward takes the input x:
 * dx = dy * (x > 0 ? 1 : alpha[c]), dalpha[c] = sum dy * x over x <= 0 (assigned). */
int nnf_prelu_fwd_s(ptrdiff_t outer, ptrdiff_t c, ptrdiff_t inner, const float *x,
                    const float *alpha, float *y);
int nnf_prelu_fwd_d(ptrdiff_t outer, ptrdiff_t c, ptrdiff_t inner, const double *x,
                    const double *alpha, double *y);
int nnf_prelu_bwd_s(ptrdiff_t outer, ptrdiff_t c, ptrdiff_t inner, const float *dy,
                    const float *x, const float *alpha, float *dx, float *dalpha);
int nnf_prelu_bwd_d(ptrdiff_t outer, ptrdiff_t c, ptrdiff_t inner, const double *dy,
                    const double *x, const double *alpha, double *dx, double *dalpha);

/* Maxout: x is (outer, C * k, inner) read as (outer, C, k, inner); y and argmax (the piece,
 * 0..k-1) are (outer, C, inner). NaN wins (propagates). Backward scatters dy into dx (zeroed). */
int nnf_maxout_fwd_s(ptrdiff_t outer, ptrdiff_t c, ptrdiff_t k, ptrdiff_t inner, const float *x,
                     float *y, int64_t *argmax);
int nnf_maxout_fwd_d(ptrdiff_t outer, ptrdiff_t c, ptrdiff_t k, ptrdiff_t inner,
                     const double *x, double *y, int64_t *argmax);
int nnf_maxout_bwd_s(ptrdiff_t outer, ptrdiff_t c, ptrdiff_t k, ptrdiff_t inner,
                     const float *dy, const int64_t *argmax, float *dx);
int nnf_maxout_bwd_d(ptrdiff_t outer, ptrdiff_t c, ptrdiff_t k, ptrdiff_t inner,
                     const double *dy, const int64_t *argmax, double *dx);

/* Row-wise softmax (log_ = 0) or log-softmax (log_ = 1) of a (rows, n) matrix, stable. */
int nnf_softmax_s(int log_, ptrdiff_t rows, ptrdiff_t n, const float *x, float *y);
int nnf_softmax_d(int log_, ptrdiff_t rows, ptrdiff_t n, const double *x, double *y);

/* Softmax cross-entropy of logits (rows, n) with labels in [0, n) and label smoothing eps
 * (target (1 - eps) onehot + eps / n): *loss = mean over rows. Backward:
 * dx = scale * (softmax(x) - target), scale usually 1 / rows. NNF_EINVAL for a bad label. */
int nnf_softmax_xent_fwd_s(ptrdiff_t rows, ptrdiff_t n, const float *x, const int64_t *labels,
                           double eps, double *loss);
int nnf_softmax_xent_fwd_d(ptrdiff_t rows, ptrdiff_t n, const double *x, const int64_t *labels,
                           double eps, double *loss);
int nnf_softmax_xent_bwd_s(ptrdiff_t rows, ptrdiff_t n, const float *x, const int64_t *labels,
                           double eps, double scale, float *dx);
int nnf_softmax_xent_bwd_d(ptrdiff_t rows, ptrdiff_t n, const double *x, const int64_t *labels,
                           double eps, double scale, double *dx);
/* Both at once, one exp per logit: *loss as forward, dx as backward (dx may alias x). */
int nnf_softmax_xent_s(ptrdiff_t rows, ptrdiff_t n, const float *x, const int64_t *labels,
                       double eps, double scale, double *loss, float *dx);
int nnf_softmax_xent_d(ptrdiff_t rows, ptrdiff_t n, const double *x, const int64_t *labels,
                       double eps, double scale, double *loss, double *dx);

/* Binary cross-entropy with logits, stable: *sum = sum max(x,0) - x t + log1p(exp(-|x|));
 * backward dx = scale * (sigmoid(x) - t). MSE: *sum = sum (p - t)^2; dx = scale * (p - t). */
int nnf_bce_logits_fwd_s(ptrdiff_t n, const float *x, const float *t, double *sum);
int nnf_bce_logits_fwd_d(ptrdiff_t n, const double *x, const double *t, double *sum);
int nnf_bce_logits_bwd_s(ptrdiff_t n, const float *x, const float *t, double scale, float *dx);
int nnf_bce_logits_bwd_d(ptrdiff_t n, const double *x, const double *t, double scale,
                         double *dx);
int nnf_mse_fwd_s(ptrdiff_t n, const float *p, const float *t, double *sum);
int nnf_mse_fwd_d(ptrdiff_t n, const double *p, const double *t, double *sum);
int nnf_mse_bwd_s(ptrdiff_t n, const float *p, const float *t, double scale, float *dx);
int nnf_mse_bwd_d(ptrdiff_t n, const double *p, const double *t, double scale, double *dx);

/* The vectorised math, exposed for its accuracy test: y = f(x) with the active ISA. */
typedef enum {
    NNF_MATH_EXP = 0,
    NNF_MATH_EXPM1 = 1,
    NNF_MATH_LOG = 2,
    NNF_MATH_LOG1P = 3,
    NNF_MATH_TANH = 4,
    NNF_MATH_ERF = 5,
    NNF_MATH_ATAN = 6,
    NNF_MATH_SIGMOID = 7,
    NNF_MATH_COUNT = 8
} nnf_math_fn;
int nnf_vmath_s(int fn, ptrdiff_t n, const float *x, float *y);
int nnf_vmath_d(int fn, ptrdiff_t n, const double *x, double *y);

/* Per-ISA kernel table (nnf_eltwise_kernels_<isa> in eltwise_kernel_<isa>.c; isa.h). Spans are
 * contiguous. fwd: y = f(x + bias[i] + bs) (bias per element, may be NULL), pre = x + ...
 * if not NULL. bwd: dx = dy * f'(u), dbv[i] += dx[i] if dbv not NULL, returns sum of dx. */
typedef void (*nnf_act_fwd_span_s)(ptrdiff_t n, const float *x, const float *bias, float bs,
                                   float *y, float *pre, float a, float b);
typedef void (*nnf_act_fwd_span_d)(ptrdiff_t n, const double *x, const double *bias,
                                   double bs, double *y, double *pre, double a, double b);
typedef double (*nnf_act_bwd_span_s)(ptrdiff_t n, const float *dy, const float *u, float *dx,
                                     float *dbv, float a, float b);
typedef double (*nnf_act_bwd_span_d)(ptrdiff_t n, const double *dy, const double *u,
                                     double *dx, double *dbv, double a, double b);
typedef struct {
    nnf_act_fwd_span_s fwd_s[NNF_ACT_COUNT];
    nnf_act_bwd_span_s bwd_s[NNF_ACT_COUNT];
    nnf_act_fwd_span_d fwd_d[NNF_ACT_COUNT];
    nnf_act_bwd_span_d bwd_d[NNF_ACT_COUNT];
    void (*math_s)(int fn, ptrdiff_t n, const float *x, float *y);
    void (*math_d)(int fn, ptrdiff_t n, const double *x, double *y);
    /* one softmax row: returns log(sum exp(x - max)), the row's max (0 if it is infinite)
     * into *max; writes y (softmax or log-softmax) if y != NULL; *dsum (if not NULL) = the
     * sum of x - max. Apart, as max + log(sum) rounds log(sum) away far from 0 (the loss of
     * logits near 1e30 read 0 for log 3). */
    double (*lse_row_s)(int log_, ptrdiff_t n, const float *x, float *y, double *max,
                        double *dsum);
    double (*lse_row_d)(int log_, ptrdiff_t n, const double *x, double *y, double *max,
                        double *dsum);
    /* y = scale * (exp((x - max) - lsum) - tgt_off), tgt_off subtracted from every element;
     * max and lsum as lse_row gives them */
    void (*xent_bwd_row_s)(ptrdiff_t n, const float *x, double max, double lsum, double off,
                           double scale, float *dx);
    void (*xent_bwd_row_d)(ptrdiff_t n, const double *x, double max, double lsum, double off,
                           double scale, double *dx);
    double (*bce_fwd_s)(ptrdiff_t n, const float *x, const float *t);
    double (*bce_fwd_d)(ptrdiff_t n, const double *x, const double *t);
    void (*bce_bwd_s)(ptrdiff_t n, const float *x, const float *t, float scale, float *dx);
    void (*bce_bwd_d)(ptrdiff_t n, const double *x, const double *t, double scale, double *dx);
} nnf_eltwise_kernels;


#endif
