/* Fused Adam/AdamW step (contract in optim.h): read p, g, m, v once, write p, m, v once.
 * Element-wise, so the result does not depend on the thread count. */
#include <math.h>

#include "optim.h"

/* Below this many elements per thread, waking the team costs more than it saves. */
#define NNF_ADAM_MIN_PER_THREAD 16384

#define NNF_DEFINE_ADAM(NAME, T, SQRT)                                                        \
    int NAME(ptrdiff_t n, T *p, const T *g, T *m, T *v, T step, T b1, T b2, T eps_hat,        \
             T decay, int threads) {                                                          \
        if (n < 0) return -1;                                                                 \
        const int nt = (threads < 1 || n < 2 * NNF_ADAM_MIN_PER_THREAD) ? 1 : threads;        \
        const T c1 = 1 - b1, c2 = 1 - b2;                                                     \
        _Pragma("omp parallel for simd num_threads(nt) schedule(static) if(nt > 1)")          \
        for (ptrdiff_t i = 0; i < n; i++) {                                                   \
            const T gi = g[i];                                                                \
            const T mi = b1 * m[i] + c1 * gi;                                                 \
            const T vi = b2 * v[i] + c2 * gi * gi;                                            \
            m[i] = mi;                                                                        \
            v[i] = vi;                                                                        \
            p[i] = p[i] * decay - step * mi / (SQRT(vi) + eps_hat);                           \
        }                                                                                     \
        return 0;                                                                             \
    }

NNF_DEFINE_ADAM(nnf_adam_f32, float, sqrtf)
NNF_DEFINE_ADAM(nnf_adam_f64, double, sqrt)
