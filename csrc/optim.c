/* Fused Adam/AdamW step (contract in optim.h): read p, g, m, v once, write p, m, v once.
 * Per-dtype instances of optim_impl.inc. */
#include "optim.h"

#include "dtype.h"
#include "isa.h"
#include "parallel.h"

/* Below this many elements per thread, waking the team costs more than it saves: one
 * vectorised thread updates 64k floats in ~35 us, a team wakes in a few. */
#define NNF_ADAM_MIN_PER_THREAD (1 << 16)

/* Subnormal moments turn up in long runs: m shrinks by b1 at every step whose gradient is
 * zero (a weight of a pixel that is dark in most images, a unit whose ReLU stays off) and is
 * subnormal after some 800 such steps at b1 = 0.9, v's g^2 after fewer. On Intel CPUs each
 * operation on or into a subnormal takes a microcode assist: Adam over the MLP benchmark's
 * 235k parameters, 53k of m subnormal, took 235 us against 48 us on normal values. The
 * update runs with flush-to-zero and denormals-are-zero instead: a moment below FLT_MIN
 * (DBL_MIN) counts as 0, which moves p by less than 1e-30 of the learning rate. Per thread
 * (MXCSR), restored after. */
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define FLUSH_SUBNORMALS_BEGIN                                                                 \
    const unsigned mxcsr_saved = _mm_getcsr();                                                 \
    _mm_setcsr(mxcsr_saved | 0x8040u) /* FTZ (bit 15) and DAZ (bit 6) */
#define FLUSH_SUBNORMALS_END _mm_setcsr(mxcsr_saved)
#else
#define FLUSH_SUBNORMALS_BEGIN (void)0
#define FLUSH_SUBNORMALS_END (void)0
#endif

#define T float
#define TS s
#include "optim_impl.inc"

#define T double
#define TS d
#include "optim_impl.inc"
