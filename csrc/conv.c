/* Convolution and pooling helpers (see conv.h): geometry checks and per-dtype instances of
 * conv_impl.inc. */
#include "conv.h"

#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dtype.h"
#include "eltwise.h"
#include "gemm.h"
#include "gemm_bf16.h"
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

/* A fused convolution's pooling (conv.h): the pooled size (*hp, *wp) of its (ho, wo) output,
 * NNF_EINVAL if the geometry is invalid or argmax cannot index a plane. */
static int conv_pool_check(ptrdiff_t ho, ptrdiff_t wo, const nnf_conv_geom *pool, ptrdiff_t *hp,
                           ptrdiff_t *wp) {
    if (ho * wo > INT32_MAX) return NNF_EINVAL;
    return check_geom(0, 0, ho, wo, pool, hp, wp);
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

/* A batched convolution's groups share one status (the GEMM path and Winograd): the first
 * failure is kept and the groups after it are skipped, leaving the call's outputs undefined.
 * conv_fail returns nonzero if s is a failure. */
static int conv_fail(_Atomic int *status, int s) {
    if (s != NNF_OK) atomic_store_explicit(status, s, memory_order_relaxed);
    return s != NNF_OK;
}

static int conv_failed(_Atomic int *status) {
    return atomic_load_explicit(status, memory_order_relaxed) != NNF_OK;
}

/* The chunks of a batched convolution's job on nt threads; with one, on the caller outside
 * any job, so that each GEMM may use the threads. */
static void conv_run_chunks(ptrdiff_t chunks, int nt, nnf_task_fn fn, void *job) {
    if (nt > 1)
        nnf_parallel_for(chunks, nt, fn, job);
    else
        fn(job, 0, 0);
}


/* 1 if n values from offset off lie inside an input of len. */
static inline int conv_inside(ptrdiff_t off, ptrdiff_t n, ptrdiff_t len) {
    return off >= 0 && off + n <= len;
}

/* Images per group of the GEMM convolution: enough for about 512 output pixels, so that
 * the GEMMs are long enough to amortise packing W (measured on Zen 4: cnn_small's conv2 at 196
 * pixels per image ran its forward 20% faster in groups of 3 than alone, LeNet-5's conv2 at
 * 64 was best in groups of 6 to 8), within a budget of L2 for a group's columns and output
 * (per_image bytes each); at least one. */
static ptrdiff_t conv_group_images(ptrdiff_t per_image, ptrdiff_t pixels, ptrdiff_t n) {
    const ptrdiff_t budget = 1152 << 10, want_pixels = 512;
    ptrdiff_t nb = (want_pixels + pixels - 1) / (pixels > 0 ? pixels : 1);
    if (per_image > 0 && nb > budget / per_image) nb = budget / per_image;
    if (nb > n) nb = n;
    return nb < 1 ? 1 : nb;
}

static _Atomic ptrdiff_t conv_direct_dx_max_k = 200;

ptrdiff_t nnf_conv_direct_dx(ptrdiff_t max_k) {
    return max_k < 0 ? atomic_load(&conv_direct_dx_max_k)
                     : atomic_exchange(&conv_direct_dx_max_k, max_k);
}

static atomic_int conv_implicit_on = 1;

int nnf_conv_implicit(int on) {
    if (on > 1) return NNF_EINVAL;
    return on < 0 ? atomic_load(&conv_implicit_on) : atomic_exchange(&conv_implicit_on, on);
}

/* A 1x1, stride-1, unpadded convolution: its columns are x itself. */
static int conv_pointwise(const nnf_conv_geom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

/* Profiling of the batched convolutions (nnf_conv_profile): thread-seconds spent in column
 * work and in the chunks as a whole, summed over threads. */
static atomic_int conv_profiling;
static _Atomic long long conv_profile_ns[NNF_CONV_PROFILE_SLOTS];

double nnf_conv_profile_clock(void) {
    if (!atomic_load_explicit(&conv_profiling, memory_order_relaxed)) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

void nnf_conv_profile_add(int slot, double t0) {
    if (t0 == 0) return;
    nnf_conv_profile_add_ns(slot, nnf_conv_profile_clock() - t0);
}

void nnf_conv_profile_add_ns(int slot, double ns) {
    if (ns > 0)
        atomic_fetch_add_explicit(&conv_profile_ns[slot], (long long)ns, memory_order_relaxed);
}

void nnf_conv_profile(int on, double *seconds) {
    for (int i = 0; i < NNF_CONV_PROFILE_SLOTS; i++) {
        if (seconds) seconds[i] = (double)atomic_load(&conv_profile_ns[i]) * 1e-9;
        atomic_store(&conv_profile_ns[i], 0);
    }
    atomic_store(&conv_profiling, on != 0);
}

/* The GEMMs of the convolution, float32 optionally in bf16 (nnf_gemm_bf16's kernel, which
 * Winograd's packed route shares when it takes that kernel's layouts); a call from inside a
 * task runs on its thread. */
static int conv_gemm_s(int bf16, int ta, int tb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                       const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, int beta,
                       float *c, ptrdiff_t ldc, const nnf_gemm_epilogue *ep) {
    if (bf16) return nnf_gemm_bf16(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc, ep);
    return nnf_sgemm_ep(NNF_GEMM_PACKED, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, (float)beta, c,
                        ldc, ep);
}

static int conv_gemm_d(int bf16, int ta, int tb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                       const double *a, ptrdiff_t lda, const double *b, ptrdiff_t ldb, int beta,
                       double *c, ptrdiff_t ldc, const nnf_gemm_epilogue *ep) {
    (void)bf16; /* refused for float64 by the caller */
    return nnf_dgemm_ep(NNF_GEMM_PACKED, ta, tb, m, n, k, 1.0, a, lda, b, ldb, (double)beta, c,
                        ldc, ep);
}

/* dst (cout x p) = the transpose of src (p x cout) by the active ISA's SIMD B^T packing
 * (gemm.h's pack_bt, with NR = p); 0 if it has none. */
static int conv_simd_transpose_s(const float *src, ptrdiff_t p, ptrdiff_t cout, float *dst) {
    const nnf_gemm_ukernel *uk = &nnf_gemm_active_ukernels()->ukr[0][0];
    if (!uk->pack_bt || p > INT_MAX) return 0;
    ((nnf_spack_bt)uk->pack_bt)(cout, (int)p, src, cout, dst, (int)p);
    return 1;
}

static int conv_simd_transpose_d(const double *src, ptrdiff_t p, ptrdiff_t cout, double *dst) {
    const nnf_gemm_ukernel *uk = &nnf_gemm_active_ukernels()->ukr[1][0];
    if (!uk->pack_bt || p > INT_MAX) return 0;
    ((nnf_dpack_bt)uk->pack_bt)(cout, (int)p, src, cout, dst, (int)p);
    return 1;
}

/* pooling first: the fused convolutions pool with its conv_pool_planes */
#define T float
#define TS s
#include "conv_impl.inc"

#define T double
#define TS d
#include "conv_impl.inc"

/* Winograd F(2x2, 3x3) (conv_winograd_impl.inc) takes the float32 3x3, stride-1 layers of the
 * GEMM path's entry points (CONV_WINOGRAD in its float32 instance); it uses that path's
 * helpers above and its transpose to NCHW. */
static int wino_applies(const nnf_conv_geom *g, ptrdiff_t c);
static int wino_fwd(const float *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                    const float *wk, ptrdiff_t cout, const float *bias, int act, double param,
                    int bf16, const nnf_conv_geom *g, ptrdiff_t ho, ptrdiff_t wo,
                    const nnf_conv_geom *pool, ptrdiff_t hp, ptrdiff_t wp, float *y,
                    int32_t *argmax);
static int wino_bwd(const float *x, const float *dy, const int32_t *dy_argmax, ptrdiff_t hp,
                    ptrdiff_t wp, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                    const float *wk, ptrdiff_t cout, int bf16, const nnf_conv_geom *g,
                    ptrdiff_t ho, ptrdiff_t wo, int beta, float *dwk, float *dx);

#define T float
#define TS s
#define CONV_WINOGRAD
#include "conv_gemm_impl.inc"

#include "conv_winograd_bf16.inc"
#include "conv_winograd_impl.inc"

#define T double
#define TS d
#include "conv_gemm_impl.inc"

#define T float
#define TS s
#include "conv_direct_impl.inc"

#define T double
#define TS d
#include "conv_direct_impl.inc"
