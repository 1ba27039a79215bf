/* Convolution and pooling helpers (see conv.h): geometry checks and per-dtype instances of
 * conv_impl.inc. */
#include "conv.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "isa.h"
#include "parallel.h"

ptrdiff_t nnf_conv_out_size(ptrdiff_t in, int k, int s, int p, int d) {
    if (in < 0 || k < 1 || s < 1 || p < 0 || d < 1) return -1;
    const ptrdiff_t span = (ptrdiff_t)d * (k - 1) + 1;
    if (in + 2 * (ptrdiff_t)p < span) return -1;
    return (in + 2 * (ptrdiff_t)p - span) / s + 1;
}

static int check_geom(ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, const nnf_conv_geom *g,
                      ptrdiff_t *ho, ptrdiff_t *wo) {
    if (!g || n < 0 || c < 0) return NNF_EINVAL;
    *ho = nnf_conv_out_size(h, g->kh, g->sh, g->ph, g->dh);
    *wo = nnf_conv_out_size(w, g->kw, g->sw, g->pw, g->dw);
    return (*ho < 0 || *wo < 0) ? NNF_EINVAL : NNF_OK;
}

/* Keeps a loop the compiler vectorised in a function of its own: inlined into the pooling
 * loop nest, GCC left it scalar. */
#if defined(__GNUC__) || defined(__clang__)
#define NNF_NOINLINE __attribute__((noinline))
#else
#define NNF_NOINLINE
#endif

/* Threads for `items` independent items of `work_each` element operations (a double: a pooling
 * window's area times the outputs can pass PTRDIFF_MAX). */
static int batch_threads(ptrdiff_t items, double work_each) {
    int nt = nnf_threads_for((double)items * work_each);
    if (nt > items) nt = items < 1 ? 1 : (int)items;
    return nt;
}

#define T float
#define TS s
#include "conv_impl.inc"

#define T double
#define TS d
#include "conv_impl.inc"

#define T float
#define TS s
#include "conv_direct_impl.inc"

#define T double
#define TS d
#include "conv_direct_impl.inc"
