/* Fused Adam/AdamW step (contract in optim.h): read p, g, m, v once, write p, m, v once.
 * Element-wise, so the result does not depend on the thread count.
 *
 * Built with -fno-math-errno (setup.py): sqrt of v >= 0 never sets errno, and errno handling
 * would keep the compiler from vectorising the loop. The span loop takes restrict pointers and
 * lives outside any OpenMP region, where GCC vectorises it fully; threads each run one span. */
#include <math.h>

#include "optim.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many elements per thread, waking the team costs more than it saves: one
 * vectorised thread updates 64k floats in ~35 us, a team wakes in a few (on an idle machine;
 * on an oversubscribed one any barrier can cost a scheduler tick, as for the GEMMs). */
#define NNF_ADAM_MIN_PER_THREAD (1 << 16)

/* The span loop is divide- and sqrt-bound at SSE width: GCC compiles one clone per ISA and
 * picks at load time (ifunc), so no dispatch table is needed for this one loop. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define NNF_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NNF_CLONES
#endif

#define NNF_DEFINE_ADAM(NAME, T, SQRT)                                                        \
    NNF_CLONES static void NAME##_span(ptrdiff_t n, T *restrict p, const T *restrict g, T *restrict m,   \
                            T *restrict v, T step, T b1, T b2, T eps_hat, T decay) {          \
        const T c1 = 1 - b1, c2 = 1 - b2;                                                     \
        for (ptrdiff_t i = 0; i < n; i++) {                                                   \
            const T gi = g[i];                                                                \
            const T mi = b1 * m[i] + c1 * gi;                                                 \
            const T vi = b2 * v[i] + c2 * gi * gi;                                            \
            m[i] = mi;                                                                        \
            v[i] = vi;                                                                        \
            p[i] = p[i] * decay - step * mi / (SQRT(vi) + eps_hat);                           \
        }                                                                                     \
    }                                                                                         \
    int NAME(ptrdiff_t n, T *p, const T *g, T *m, T *v, T step, T b1, T b2, T eps_hat,        \
             T decay, int threads) {                                                          \
        if (n < 0) return -1;                                                                 \
        int nt = threads < 1 ? 1 : threads;                                                   \
        if (n < (ptrdiff_t)nt * NNF_ADAM_MIN_PER_THREAD) nt = (int)(n / NNF_ADAM_MIN_PER_THREAD); \
        if (nt <= 1) {                                                                        \
            NAME##_span(n, p, g, m, v, step, b1, b2, eps_hat, decay);                         \
            return 0;                                                                         \
        }                                                                                     \
        NNF_OMP_PARALLEL(nt) {                                                                \
            const int t = NNF_THREAD_ID(), k = NNF_THREAD_COUNT();                            \
            /* 64-byte aligned chunks of about n / k elements */                              \
            const ptrdiff_t per = ((n + k - 1) / k + 15) & ~(ptrdiff_t)15;                    \
            const ptrdiff_t lo = per * t < n ? per * t : n;                                   \
            const ptrdiff_t hi = lo + per < n ? lo + per : n;                                 \
            NAME##_span(hi - lo, p + lo, g + lo, m + lo, v + lo, step, b1, b2, eps_hat, decay); \
        }                                                                                     \
        return 0;                                                                             \
    }

#ifdef _OPENMP
#define NNF_OMP_PARALLEL(nt) _Pragma("omp parallel num_threads(nt)")
#define NNF_THREAD_ID() omp_get_thread_num()
#define NNF_THREAD_COUNT() omp_get_num_threads()
#else
#define NNF_OMP_PARALLEL(nt)
#define NNF_THREAD_ID() 0
#define NNF_THREAD_COUNT() 1
#endif

NNF_DEFINE_ADAM(nnf_adam_f32, float, sqrtf)
NNF_DEFINE_ADAM(nnf_adam_f64, double, sqrt)
