/* Fused Adam/AdamW step (contract in optim.h): read p, g, m, v once, write p, m, v once.
 * Per-dtype instances of optim_impl.inc. */
#include "optim.h"

#include <float.h>

#include "dtype.h"
#include "isa.h"
#include "parallel.h"

/* Below this many elements per thread, waking the team costs more than it saves: one
 * vectorised thread updates 64k floats in ~35 us, a team wakes in a few. */
#define NNF_ADAM_MIN_PER_THREAD (1 << 16)

/* Subnormal moments turn up in long runs: m shrinks by b1 at every step whose gradient is zero (a
 * weight of a pixel that is dark in most images, a unit whose ReLU stays off) and is subnormal
 * after some 800 such steps at b1 = 0.9; v adds g^2, subnormal for |g| < 1e-19 in float32. On
 * Intel CPUs each operation on or into a subnormal takes a microcode assist: Adam over the MLP
 * benchmark's 235k parameters, 53k of m subnormal, took 215-245 us against 48 us on normal values.
 * So the update runs with flush-to-zero and denormals-are-zero (MXCSR, per thread, restored
 * after): a value below FLT_MIN (DBL_MIN) counts as 0. A flushed m changes p's update by at most
 * lr FLT_MIN / ((1 - b1) eps), 1e-29 lr at the defaults; a flushed v changes its denominator by
 * less than sqrt(FLT_MIN), 1e-19, beside eps. Not with eps below FLT_MIN (DBL_MIN), 0 included,
 * where a flushed v (and eps) would make m / 0. On x86 only: elsewhere the update keeps
 * subnormals. */
#if defined(__SSE__) || defined(__x86_64__) || defined(_M_X64) || defined(_M_AMD64)
#include <xmmintrin.h>
static inline unsigned flush_subnormals_begin(int on) {
    const unsigned saved = _mm_getcsr();
    if (on) _mm_setcsr(saved | 0x8040u); /* FTZ (bit 15) and DAZ (bit 6) */
    return saved;
}
static inline void flush_subnormals_end(unsigned saved) { _mm_setcsr(saved); }
#else
static inline unsigned flush_subnormals_begin(int on) {
    (void)on;
    return 0;
}
static inline void flush_subnormals_end(unsigned saved) { (void)saved; }
#endif

static const float normal_min_s = FLT_MIN;
static const double normal_min_d = DBL_MIN;

#define T float
#define TS s
#include "optim_impl.inc"

#define T double
#define TS d
#include "optim_impl.inc"
