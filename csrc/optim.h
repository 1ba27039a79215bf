/* Fused optimizer updates: one pass over contiguous parameter, gradient and state arrays.
 *
 * Adam / AdamW (Kingma & Ba 2015; decoupled decay, Loshchilov & Hutter 2019), per element i:
 *     p[i] *= decay;  m[i] = b1 m[i] + (1 - b1) g[i];  v[i] = b2 v[i] + (1 - b2) g[i]^2
 *     p[i] -= step * m[i] / (sqrt(v[i]) + eps_hat)
 * with the caller folding the bias corrections into step and eps_hat. p, m, v are updated in
 * place (=); g is read only. Runs on the active ISA path and the shared thread count (cpu.h);
 * element-wise, so the result depends on neither. Returns NNF_OK, or NNF_EINVAL for n < 0. */
#ifndef NNFAST_OPTIM_H
#define NNFAST_OPTIM_H

#include <stddef.h>

#include "cpu.h"

int nnf_adam_s(ptrdiff_t n, float *p, const float *g, float *m, float *v, float step, float b1,
               float b2, float eps_hat, float decay);
int nnf_adam_d(ptrdiff_t n, double *p, const double *g, double *m, double *v, double step,
               double b1, double b2, double eps_hat, double decay);

/* Per-ISA kernel table (optim_kernel.inc, built into eltwise_kernel_<isa>.c with that ISA's
 * flags): the update above over n contiguous elements, on the calling thread. */
typedef void (*nnf_adam_span_s)(ptrdiff_t n, float *restrict p, const float *restrict g,
                                float *restrict m, float *restrict v, float step, float b1,
                                float b2, float eps_hat, float decay);
typedef void (*nnf_adam_span_d)(ptrdiff_t n, double *restrict p, const double *restrict g,
                                double *restrict m, double *restrict v, double step, double b1,
                                double b2, double eps_hat, double decay);
typedef struct {
    nnf_adam_span_s adam_s;
    nnf_adam_span_d adam_d;
} nnf_optim_kernels;

#endif
