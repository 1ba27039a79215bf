/* Fused Adam/AdamW step (contract in optim.h): read p, g, m, v once, write p, m, v once.
 * Per-dtype instances of optim_impl.inc. */
#include "optim.h"

#include "dtype.h"
#include "isa.h"
#include "parallel.h"

/* Below this many elements per thread, waking the team costs more than it saves: one
 * vectorised thread updates 64k floats in ~35 us, a team wakes in a few. */
#define NNF_ADAM_MIN_PER_THREAD (1 << 16)

#define T float
#define TS s
#include "optim_impl.inc"

#define T double
#define TS d
#include "optim_impl.inc"
