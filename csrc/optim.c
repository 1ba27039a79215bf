/* Fused Adam/AdamW step (contract in optim.h): read p, g, m, v once, write p, m, v once.
 * Per-dtype instances of optim_impl.inc. */
#include <math.h>

#include "optim.h"

#include "dtype.h"
#include "parallel.h"

/* Below this many elements per thread, waking the team costs more than it saves: one
 * vectorised thread updates 64k floats in ~35 us, a team wakes in a few. */
#define NNF_ADAM_MIN_PER_THREAD (1 << 16)

/* The ISA paths' function attributes; optim_impl.inc uses each only where setup.py built that
 * path's kernel files (NNF_HAVE_AVX2 / NNF_HAVE_AVX512), so the CPU check covers it. */
#define NNF_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define NNF_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))

#define T float
#define TS s
#define SQRT sqrtf
#include "optim_impl.inc"

#define T double
#define TS d
#define SQRT sqrt
#include "optim_impl.inc"
