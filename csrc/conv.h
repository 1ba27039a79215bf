/* Convolution and pooling helpers for NCHW tensors (float32 and float64).
 *
 * im2col: x (N, C, H, W) -> cols (N*Ho*Wo, C*KH*KW): row r = (n, oh, ow) holds the receptive
 *   field of one output pixel, column (c, i, j); padding reads as 0. A convolution is then
 *   Y (N*Ho*Wo, Cout) = cols @ W^T with W (Cout, C*KH*KW).
 * col2im: the adjoint, dx (N, C, H, W) = sum of each column entry into the pixel it came from;
 *   dx is overwritten (=), overlapping windows accumulate.
 * Ho = (H + 2*ph - dh*(KH-1) - 1) / sh + 1, likewise Wo. OpenMP over the batch.
 * Pooling: y (N, C, Ho, Wo) from x (N, C, H, W) with the same geometry (no dilation for avg).
 * Max pooling stores, per output, the argmax as an index into its H*W input plane (-1 when the
 * window holds only padding); backward scatters dy there (dx =) and returns NNF_EINVAL if an
 * index is outside -1..H*W-1 (nothing is written out of bounds). Average pooling divides by the
 * window size including padding (PyTorch's count_include_pad=True default). */
#ifndef NNFAST_CONV_H
#define NNFAST_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "cpu.h"

typedef struct {
    int kh, kw; /* kernel */
    int sh, sw; /* stride */
    int ph, pw; /* zero padding on each side */
    int dh, dw; /* dilation */
} nnf_conv_geom;

/* Output size along one axis, or -1 if the geometry is invalid or the window exceeds the
 * padded input. */
ptrdiff_t nnf_conv_out_size(ptrdiff_t in, int k, int s, int p, int d);

int nnf_im2col_s(const float *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                 const nnf_conv_geom *g, float *cols);
int nnf_im2col_d(const double *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                 const nnf_conv_geom *g, double *cols);
int nnf_col2im_s(const float *cols, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                 const nnf_conv_geom *g, float *dx);
int nnf_col2im_d(const double *cols, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                 const nnf_conv_geom *g, double *dx);

/* Convolution as GEMMs over groups of images (conv_gemm_impl.inc), one call per layer:
 * x (N, C, H, W), wk (Cout, C, KH, KW), y (N, Cout, Ho, Wo); no column matrix of the batch.
 * fwd: y = act(conv(x, wk) + bias) (=), bias NULL for none, act an nnf_act (eltwise.h) with
 * its parameter, applied in the GEMM's epilogue (NNF_EINVAL if out of range).
 * With a pooling geometry `pool` (else NULL), y is instead that max pooling of the output,
 * (N, Cout, Hp, Wp), with argmax its indices into each Ho*Wo plane (as nnf_maxpool_fwd gives
 * them, ties and NaN alike); the output itself never leaves the thread's cache. NNF_EINVAL if
 * the pooling does not fit the output.
 * bwd: dwk (=, or += when beta is 1) the weight gradient for dy, and dx (=) the input
 * gradient unless dx is NULL. With `pool` (else NULL), dy is the gradient of that max pooling
 * of the output, (N, Cout, Hp, Wp), and the output's gradient its scatter at argmax (as
 * nnf_maxpool_bwd): each group's is built in the thread's cache, so the results equal those
 * for the scattered dy to the bit; NNF_EINVAL if an index is outside -1..Ho*Wo-1. bf16 1 runs
 * the GEMMs as nnf_gemm_bf16 does (float32 only, NNF_EINVAL for float64). NNF_ENOMEM if the
 * scratch (columns per thread, weight-gradient partials per chunk) cannot be allocated; on any
 * error dwk is left as it was, and y or dx hold undefined values. */
int nnf_conv_gemm_fwd_s(const float *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                        const float *wk, ptrdiff_t cout, const float *bias, int act,
                        double param, int bf16, const nnf_conv_geom *g,
                        const nnf_conv_geom *pool, float *y, int32_t *argmax);
int nnf_conv_gemm_fwd_d(const double *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                        const double *wk, ptrdiff_t cout, const double *bias, int act,
                        double param, int bf16, const nnf_conv_geom *g,
                        const nnf_conv_geom *pool, double *y, int32_t *argmax);
int nnf_conv_gemm_bwd_s(const float *x, const float *dy, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h,
                        ptrdiff_t w, const float *wk, ptrdiff_t cout, int bf16,
                        const nnf_conv_geom *g, const nnf_conv_geom *pool,
                        const int32_t *argmax, int beta, float *dwk, float *dx);
int nnf_conv_gemm_bwd_d(const double *x, const double *dy, ptrdiff_t n, ptrdiff_t c,
                        ptrdiff_t h, ptrdiff_t w, const double *wk, ptrdiff_t cout, int bf16,
                        const nnf_conv_geom *g, const nnf_conv_geom *pool,
                        const int32_t *argmax, int beta, double *dwk, double *dx);

/* The input gradient of a layer with C*KH*KW at most nnf_conv_direct_dx's limit (200 unless
 * set) comes from nnf_conv_direct_bwd_x rather than the groups' GEMM and fold (not in bf16,
 * not for 1x1 layers that read x in place, and not where Winograd takes the layer): the
 * direct kernel's windows stay in L1, and at batch 128 it took 0.72-0.81x the time for K =
 * 75, 144, 150 and 200, 1.3-1.6x for K = 288 and 576. Benchmark and test hook: sets the limit
 * (0: never) unless max_k < 0; returns the limit before. Not for use while convolutions run. */
ptrdiff_t nnf_conv_direct_dx(ptrdiff_t max_k);

/* Stride-1 layers whose Cout is a multiple of the ISA's vector lanes and whose output rows
 * are at least NNF_CONV_IMPLICIT_COLS wide (but not 1x1 ones that read x in place, nor
 * batches of fewer images than the threads the call is worth) take the forward's product and
 * the weight gradient of the functions above from the implicit kernels (nnf_conv_kernels),
 * which read the image in place, rather than from GEMMs on a column matrix (not in bf16; a
 * folded dx still takes its GEMM and fold). At batch 128, LeNet-5's second layer took 0.58x the time forward and 0.60x
 * for its weight gradient. Benchmark and test hook: 1 (the default) as above, 0 never; -1
 * leaves it. Returns the setting before (NNF_EINVAL above 1). Not for use while convolutions
 * run. */
int nnf_conv_implicit(int on);

/* Float32 3x3 convolutions of stride 1 and dilation 1 with at least 8 input channels run as
 * Winograd F(2x2, 3x3) in the functions above (conv_winograd_impl.inc): same contracts, 2.25x
 * fewer multiplies, the direct sum's error in float32 (about 2.5x the GEMMs' in bf16). One
 * difference: the transforms take differences of pixels, so an infinite input (or one near
 * float32's overflow) gives NaN, not +-inf, in the outputs whose tiles read it.
 * Benchmark and test hook: mode OFF sends them to the GEMMs, AUTO (the default) as above,
 * ALWAYS whatever the channels; -1 leaves it. Returns the mode before (NNF_EINVAL above
 * ALWAYS or below -1). Not for use while convolutions run. */
#define NNF_CONV_WINOGRAD_OFF 0
#define NNF_CONV_WINOGRAD_AUTO 1
#define NNF_CONV_WINOGRAD_ALWAYS 2
int nnf_conv_winograd(int mode);

/* Test and benchmark hook: Winograd's bf16 GEMMs take operands the convolution packs itself
 * while the transforms' outputs are in cache (1, the default; conv_winograd_bf16.inc), or run
 * through nnf_gemm_bf16 on whole groups (0); the results are the same to the bit, AMX's tile
 * kernel's too. -1 leaves it. Returns the setting before (NNF_EINVAL above 1). Not for use
 * while convolutions run. */
int nnf_conv_winograd_packed(int on);

/* Test and benchmark hook: Winograd's float32 forward and backward call the GEMMs'
 * micro-kernel on their operands in place, transforming a few tiles at a time (1, the
 * default; conv_winograd_impl.inc), or run the GEMM on whole groups (0); the results are the
 * same to the bit where the GEMM does not split a product's depth between threads (it does
 * from 1024 per thread). A job of too few groups to share between the threads always takes
 * the second route. -1 leaves it. Returns the setting before (NNF_EINVAL above 1). Not for
 * use while convolutions run. */
int nnf_conv_winograd_fused(int on);

/* Benchmark hook: seconds[i] gets the thread-seconds the batched convolutions (the GEMM path,
 * Winograd and the direct kernels) have spent, since the last call, in their column work
 * (slot 0: the GEMM path's unfolding and folding and the implicit kernels' padded copy of an
 * image; Winograd's transforms, its transposes of x to NHWC and of dx's rows back (its fold);
 * the direct kernels' shifted copies of the image and the fold of their input gradient. Not
 * the transposes of the output and the output gradient between NCHW and pixel-major rows,
 * with the pooling's scatter into them, which any GEMM on columns has too, nor the bias and
 * activation, nor the pooling) and in all (slot 1); the
 * counters restart, and keep counting only while `on` (off by default: no clock reads).
 * nnf_conv_profile_clock is the counters' clock (0 while off), and nnf_conv_profile_add adds
 * the time since t0 to a slot (nothing for t0 0): the kernels count with them;
 * nnf_conv_profile_add_ns adds a time summed elsewhere (in ns, of that clock's differences),
 * for a caller that times many short spans and would otherwise add each to the shared
 * counter. */
#define NNF_CONV_PROFILE_COLUMNS 0
#define NNF_CONV_PROFILE_TOTAL 1
#define NNF_CONV_PROFILE_SLOTS 2
void nnf_conv_profile(int on, double *seconds);
double nnf_conv_profile_clock(void);
void nnf_conv_profile_add(int slot, double t0);
void nnf_conv_profile_add_ns(int slot, double ns);

/* Direct convolution, for layers whose C*KH*KW is small (the GEMM would be degenerate and the
 * column matrix mostly copies): x (N, C, H, W), wk (Cout, C, KH, KW), y (N, Cout, Ho, Wo).
 * fwd: y = act(conv(x, wk) + bias) (=), bias NULL for none, relu 1 for ReLU else identity;
 * with `pool` max-pooled as nnf_conv_gemm_fwd does (argmax likewise).
 * The backward functions take the gradient as dy, times ReLU's derivative (y > 0) if y (the
 * forward's output with relu) is not NULL:
 * bwd_w: dwk (=, or += when beta is 1) the sum over the batch of dy (*) x, and db (=) dy summed
 * per channel if db is not NULL.
 * bwd_x: dx (=) the transposed convolution of dy with wk. With `pool`, y must be NULL and dy
 * is a max pooling's gradient standing for its scatter at argmax, as for nnf_conv_gemm_bwd
 * (built a band of pixels at a time in the kernel's scratch; NNF_EINVAL for an index out of
 * range, with dwk and db left as they were, dx undefined). NNF_ENOMEM if the scratch (one image's
 * windows per thread, bwd_w's per-chunk partial sums) cannot be allocated, NNF_EISA if the build
 * has no direct kernels (a compiler without GCC's vector extensions). */
int nnf_conv_direct_fwd_s(const float *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                          const float *wk, ptrdiff_t cout, const float *bias, int relu,
                          const nnf_conv_geom *g, const nnf_conv_geom *pool, float *y,
                          int32_t *argmax);
int nnf_conv_direct_fwd_d(const double *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                          const double *wk, ptrdiff_t cout, const double *bias, int relu,
                          const nnf_conv_geom *g, const nnf_conv_geom *pool, double *y,
                          int32_t *argmax);
int nnf_conv_direct_bwd_w_s(const float *x, const float *dy, const float *y, ptrdiff_t n,
                            ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cout,
                            const nnf_conv_geom *g, const nnf_conv_geom *pool,
                            const int32_t *argmax, int beta, float *dwk, float *db);
int nnf_conv_direct_bwd_w_d(const double *x, const double *dy, const double *y, ptrdiff_t n,
                            ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cout,
                            const nnf_conv_geom *g, const nnf_conv_geom *pool,
                            const int32_t *argmax, int beta, double *dwk, double *db);
int nnf_conv_direct_bwd_x_s(const float *dy, const float *y, const float *wk, ptrdiff_t n,
                            ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cout,
                            const nnf_conv_geom *g, const nnf_conv_geom *pool,
                            const int32_t *argmax, float *dx);
int nnf_conv_direct_bwd_x_d(const double *dy, const double *y, const double *wk, ptrdiff_t n,
                            ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cout,
                            const nnf_conv_geom *g, const nnf_conv_geom *pool,
                            const int32_t *argmax, double *dx);

/* The pooling gradient's part of a backward with `pool`: dst[(a - lo) * stride] += g[o] for
 * each of the `count` outputs o whose argmax a lies in [lo, hi), in output order (as
 * nnf_maxpool_bwd adds them); other indices, -1 among them, add nothing. Returns nonzero if an
 * index is neither -1 nor in [0, np) (checked as the indices are read: a separate pass over
 * them would cost a trip to memory). */
#define NNF_CONV_SCATTER_(T, TS)                                                              \
    static inline int nnf_conv_scatter_##TS(T *dst, ptrdiff_t stride, ptrdiff_t lo,           \
                                            ptrdiff_t hi, const T *g, const int32_t *arg,     \
                                            ptrdiff_t count, ptrdiff_t np) {                  \
        /* index + 1 as uint32: -1 -> 0, below -1 -> 2^31 or more */                        \
        const uint32_t end = np >= (ptrdiff_t)UINT32_MAX ? UINT32_MAX : (uint32_t)np + 1u;    \
        uint32_t bad = 0;                                                                     \
        for (ptrdiff_t o = 0; o < count; o++) {                                               \
            const ptrdiff_t a = (ptrdiff_t)arg[o] - lo;                                       \
            bad |= (uint32_t)arg[o] + 1u >= end;                                              \
            if ((size_t)a < (size_t)(hi - lo)) dst[a * stride] += g[o];                       \
        }                                                                                     \
        return bad != 0;                                                                      \
    }
NNF_CONV_SCATTER_(float, s)
NNF_CONV_SCATTER_(double, d)
#undef NNF_CONV_SCATTER_

/* The output widths (MNIST's layers') for which the copies of windows' rows (copy_rows of the
 * kernel table below) are compiled with the width as a constant: X(w) for each. Those copies then
 * take no branches per row, where the same code with a run-time width took 3-4 times as long on
 * LeNet-5's second layer. */
#define NNF_CONV_ROW_WIDTHS(X) X(4) X(7) X(8) X(10) X(12) X(14) X(24) X(26) X(28)

/* 1 for the 2x2, stride-2, unpadded, undilated max pooling: the one with row kernels (the
 * forward's pool2_row and pool2_rows_s, the backward's unpool2_plane_s and unpool2_rows_s). */
static inline int nnf_conv_pool_2x2(const nnf_conv_geom *g) {
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 &&
           g->dh == 1 && g->dw == 1;
}

/* Outputs [*lo, *hi) along one axis (wo of them) whose input index o*s - p + off, for a
 * kernel tap at offset off (its index times the dilation), falls inside [0, w). */
static inline void nnf_conv_valid_range(ptrdiff_t wo, ptrdiff_t w, int s, int p, ptrdiff_t off,
                                        ptrdiff_t *lo, ptrdiff_t *hi) {
    const ptrdiff_t first = p - off, end = w + p - off; /* o*s must be in [first, end) */
    ptrdiff_t a = first <= 0 ? 0 : (first + s - 1) / s;
    ptrdiff_t b = end <= 0 ? 0 : (end + s - 1) / s;
    if (a > wo) a = wo;
    if (b > wo) b = wo;
    *lo = a;
    *hi = b < a ? a : b;
}

/* Whether the direct kernels' scratch (a padded copy of the input, or of its gradient:
 * nnf_conv_direct_layout) stays of the images' size: padding or a stride far past the kernel
 * (2**26 on a 3x3 image took 768 MB, padding 8192 around a 1x1 image 1 GB) go to the GEMM
 * path instead, whose columns are the output's size. */
static inline int nnf_conv_direct_fits(ptrdiff_t h, ptrdiff_t w, ptrdiff_t ho, ptrdiff_t wo,
                                       const nnf_conv_geom *g) {
    const double rows = (double)h + 2.0 * g->ph + g->sh, cols = (double)w + 2.0 * g->pw + g->sw;
    return rows * cols <= 4.0 * ((double)h * (double)w + (double)ho * (double)wo) + 4096.0;
}

/* Taps [*lo, *hi) of a window of k taps, d apart from input index base, that fall inside
 * [0, n): a window far larger than the image then costs what its taps inside do. */
static inline void nnf_conv_tap_range(ptrdiff_t base, ptrdiff_t d, ptrdiff_t k, ptrdiff_t n,
                                      ptrdiff_t *lo, ptrdiff_t *hi) {
    ptrdiff_t a = base >= 0 ? 0 : (-base + d - 1) / d;
    ptrdiff_t b = base >= n ? 0 : (n - base + d - 1) / d; /* the first tap at n or past */
    if (a > k) a = k;
    if (b > k) b = k;
    *lo = a;
    *hi = b < a ? a : b;
}

/* The taps of output (oh, ow)'s window that fall inside an h x w image: rows bh + i * dh for
 * i in [i0, i1), columns bw + j * dw for j in [j0, j1) (nnf_conv_tap_range along each axis). */
typedef struct {
    ptrdiff_t bh, bw, i0, i1, j0, j1;
} nnf_conv_window;

static inline nnf_conv_window nnf_conv_window_taps(const nnf_conv_geom *g, ptrdiff_t oh,
                                                   ptrdiff_t ow, ptrdiff_t h, ptrdiff_t w) {
    nnf_conv_window t = {.bh = oh * g->sh - g->ph, .bw = ow * g->sw - g->pw};
    nnf_conv_tap_range(t.bh, g->dh, g->kh, h, &t.i0, &t.i1);
    nnf_conv_tap_range(t.bw, g->dw, g->kw, w, &t.j0, &t.j1);
    return t;
}

/* Per-ISA kernel table of the direct convolution (conv_kernel.inc, built into
 * eltwise_kernel_<isa>.c with that ISA's flags). Each runs nb images on the calling thread,
 * x (nb, C, H, W), y and dy (nb, Cout, Ho, Wo), with a scratch of nnf_conv_direct_layout's size,
 * 64-byte aligned and zeroed before the first call (the kernels keep the zeros they rely on):
 * fwd writes y (=); bwd_w writes part (=) the images' weight gradient (Cout, C*KH*KW), then
 * their bias gradient (Cout); bwd_x writes dx (nb, C, H, W) (=) from wkt, the weight transposed
 * to (C*KH*KW, Cout). The backward ones take y NULL or ReLU's output, as above, or with
 * argmax (y NULL) dy as the gradient of the max pooling `pool` of the output (nb, Cout, Hp,
 * Wp) standing for its scatter there; they return nonzero if an index was out of range
 * (nnf_conv_scatter), else 0.
 * fwd and bwd_w read an image from xs (C, SH, KW, hq, Wo), one shifted copy of it per kernel
 * column (and row phase of the stride): xs[ci, a, j, r, ow] = the zero-padded image at row
 * r*SH + a, column ow*SW + j*DW. Tap (ci, i, j) of output pixel p = oh*Wo + ow is then
 * xs[ci, i*DH % SH, j, oh + i*DH / SH, ow]: for every tap, the image's pixels are one run of
 * xs, at the tap's offset, and vectors run along it with no row ends (KW copies of the image
 * where the windows tap-major are KH*KW). bwd_x multiplies a band of pixels' windows' gradients
 * into the scratch tap-major (kk rows of bs values) and adds them back to their pixels (at stride
 * 1 into the padded gradient NNF_CONV_PADDED). Bands of nnf_conv_band(...) pixels (whole blocks
 * of NNF_CONV_BLOCK_BYTES, so the kernels' blocks of vectors never leave a row of the scratch)
 * keep the scratch within about NNF_CONV_BAND_BYTES however large the image. */
#define NNF_CONV_VEC_BYTES 64
#define NNF_CONV_BLOCK_BYTES 128
#define NNF_CONV_BAND_BYTES ((ptrdiff_t)256 << 10)
static inline ptrdiff_t nnf_conv_band(ptrdiff_t kk, ptrdiff_t cout, ptrdiff_t np,
                                      ptrdiff_t size) {
    const ptrdiff_t blk = NNF_CONV_BLOCK_BYTES / size;
    ptrdiff_t most = NNF_CONV_BAND_BYTES / ((kk + 1 + cout) * size) / blk * blk;
    if (most < blk) most = blk;
    const ptrdiff_t bands = np > most ? (np + most - 1) / most : 1;
    const ptrdiff_t each = (np + bands - 1) / bands; /* as even as whole blocks allow */
    return each < 1 ? blk : (each + blk - 1) / blk * blk;
}
#define NNF_CONV_PADDED(c, h, w, g)                                                           \
    ((c) * ((h) + 2 * (ptrdiff_t)(g)->ph) * ((w) + 2 * (ptrdiff_t)(g)->pw))

/* Where each part of a kernel's scratch starts, in values of `size` bytes, each on a 64-byte
 * line: off, the tap offsets (max(kk, Cout) ptrdiff_t; bwd_x's are its rows of dY); for fwd
 * (kind 0) and bwd_w (kind 1) xs (above, then a block that the vectors read past its end),
 * bwd_w's dyc (Cout rows of bs: a band's dY) and vacc (Cout * (kk + 1) vectors of at most
 * NNF_CONV_VEC_BYTES); for bwd_x (kind 2) cols (its band's windows' gradients, kk rows of bs),
 * dyc (Cout rows of bs) and xs (the padded gradient). hq: xs's rows per phase; total: the
 * whole size. */
typedef struct {
    ptrdiff_t hq, bs, off, xs, cols, dyc, vacc, total;
} nnf_conv_direct_plan;

static inline void nnf_conv_direct_layout(nnf_conv_direct_plan *q, int kind, ptrdiff_t c,
                                          ptrdiff_t h, ptrdiff_t w, ptrdiff_t cout,
                                          ptrdiff_t ho, ptrdiff_t wo, const nnf_conv_geom *g,
                                          ptrdiff_t size) {
    const ptrdiff_t kk = c * g->kh * g->kw, line = NNF_CONV_VEC_BYTES / size;
    const ptrdiff_t taps = kk > cout ? kk : cout;
    q->hq = (h + 2 * (ptrdiff_t)g->ph + g->sh - 1) / g->sh;
    q->off = 0;
    q->cols = ((taps * (ptrdiff_t)sizeof(ptrdiff_t) + size - 1) / size + line - 1) / line * line;
    if (kind == 2) {
        q->bs = nnf_conv_band(kk, cout, ho * wo, size);
        q->dyc = q->vacc = q->cols + kk * q->bs;
        q->xs = q->dyc + cout * q->bs;
        q->total = q->xs + NNF_CONV_PADDED(c, h, w, g);
        return;
    }
    q->bs = nnf_conv_band(0, cout, ho * wo, size);
    q->xs = q->cols;
    const ptrdiff_t xs = c * g->sh * g->kw * q->hq * wo + NNF_CONV_BLOCK_BYTES / size;
    q->dyc = q->xs + (xs + line - 1) / line * line;
    q->vacc = q->dyc + (kind == 1 ? cout * q->bs : 0);
    q->total = q->vacc + (kind == 1 ? cout * (kk + 1) * (NNF_CONV_VEC_BYTES / size) : 0);
}
#define NNF_CONV_KERNEL_TYPES_(T, TS)                                                         \
    typedef void (*nnf_conv_fwd_image_##TS)(T *y, const T *x, ptrdiff_t nb, const T *wk,     \
                                             const T *bias, int relu, ptrdiff_t c, ptrdiff_t h, \
                                             ptrdiff_t w, ptrdiff_t cout, ptrdiff_t ho,       \
                                             ptrdiff_t wo, const nnf_conv_geom *g, T *scratch); \
    typedef int (*nnf_conv_bwd_w_image_##TS)(T *part, const T *dy, const T *y,                \
                                               const int32_t *argmax,                         \
                                               const nnf_conv_geom *pool, const T *x,         \
                                               ptrdiff_t nb, ptrdiff_t c, ptrdiff_t h,        \
                                               ptrdiff_t w, ptrdiff_t cout, ptrdiff_t ho,     \
                                               ptrdiff_t wo, const nnf_conv_geom *g,          \
                                               T *scratch);                                   \
    typedef int (*nnf_conv_bwd_x_image_##TS)(T *dx, const T *dy, const T *y,                  \
                                               const int32_t *argmax,                         \
                                               const nnf_conv_geom *pool,                     \
                                               const T *wkt, ptrdiff_t nb, ptrdiff_t c,       \
                                               ptrdiff_t h, ptrdiff_t w, ptrdiff_t cout,      \
                                               ptrdiff_t ho, ptrdiff_t wo,                    \
                                               const nnf_conv_geom *g, T *scratch);       \
    typedef void (*nnf_conv_copy_rows_##TS)(T *dst, const T *src, ptrdiff_t stride,          \
                                              ptrdiff_t wo, ptrdiff_t rows);                  \
    typedef void (*nnf_conv_implicit_fwd_##TS)(T *yt, const T *x, ptrdiff_t nb, const T *wkt,  \
                                                const ptrdiff_t *off, ptrdiff_t c, ptrdiff_t h, \
                                                ptrdiff_t w, ptrdiff_t cout, ptrdiff_t ho,     \
                                                ptrdiff_t wo, const nnf_conv_geom *g,          \
                                                T *scratch);                                   \
    typedef void (*nnf_conv_implicit_bwd_w_##TS)(T *dwt, const T *x, const T *dyt,            \
                                                  ptrdiff_t nb, const ptrdiff_t *off,          \
                                                  ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,       \
                                                  ptrdiff_t cout, ptrdiff_t ho, ptrdiff_t wo,  \
                                                  const nnf_conv_geom *g, T *scratch);
NNF_CONV_KERNEL_TYPES_(float, s)
NNF_CONV_KERNEL_TYPES_(double, d)
#undef NNF_CONV_KERNEL_TYPES_

/* Winograd F(2x2, 3x3) transforms of float32 (conv_winograd_kernel.inc, per ISA), for one
 * group of nb images of a convolution whose input planes (cin, hin, win) are read at row
 * 2*ty - offh + (0..3) and column 2*tx - offw + (0..3) for the 2x2 output tile (ty, tx) (an
 * offset may be negative), outputs (cout, hout, wout) in th x tw tiles; tile index
 * (b*th + ty)*tw + tx, `tiles` of them. Every array is channel-minor; zeros holds max(cin, cout)
 * zeros, read in place of pixels outside an image.
 * input: v (16, tiles, cin) (=) B^T d B of the 4x4 patches d of xt (nb, hin, win, cin);
 * grad_output: z (16, tiles, cout) (=) A dy A^T of the 2x2 blocks of dyt (nb, hout, wout,
 *   cout), zero past the edge;
 * input_grad: dxt (nb, hin, win, cin) (=) the sums of B dV B^T of the tiles of dv (16, tiles,
 *   cin) over the patches input reads, what falls outside the image added to junk (cin);
 * output: out (nb*hout*wout + 1, cout) (=) A^T M A of the tiles of m (16, tiles, cout), the
 *   outputs past the edge written to the last row.
 * input_tiles, input_grad_tiles and output_tiles do the same for the nt tiles from tile t0
 * only (the float32 fused routes' blocks of a few tiles): tile t0 + i's values at v (dv) +
 * i*cin + p*ps (p the position in the 16 of the transformed domain); input_grad_tiles adds
 * to dxt, which its caller zeroes; output_tiles reads channels co0..co0 + nco - 1 at m + i*ldm
 * + p*ps and writes them to those columns of out's rows. */
typedef struct {
    ptrdiff_t cin, hin, win, offh, offw, cout, hout, wout, th, tw;
} nnf_wino_geom;
typedef void (*nnf_wino_input_fn)(const float *xt, ptrdiff_t nb, const nnf_wino_geom *q,
                                  const float *zeros, float *v);
typedef void (*nnf_wino_grad_output_fn)(const float *dyt, ptrdiff_t nb, const nnf_wino_geom *q,
                                        const float *zeros, float *z);
typedef void (*nnf_wino_input_grad_fn)(const float *dv, ptrdiff_t nb, const nnf_wino_geom *q,
                                       float *junk, float *dxt);
typedef void (*nnf_wino_output_fn)(const float *m, ptrdiff_t nb, const nnf_wino_geom *q,
                                   float *out);
typedef void (*nnf_wino_input_tiles_fn)(const float *xt, const nnf_wino_geom *q,
                                        const float *zeros, ptrdiff_t t0, ptrdiff_t nt,
                                        ptrdiff_t ps, float *v);
typedef void (*nnf_wino_input_grad_tiles_fn)(const float *dv, const nnf_wino_geom *q,
                                             ptrdiff_t t0, ptrdiff_t nt, ptrdiff_t ps,
                                             float *junk, float *dxt);
typedef void (*nnf_wino_output_tiles_fn)(const float *m, ptrdiff_t nb, const nnf_wino_geom *q,
                                         ptrdiff_t t0, ptrdiff_t nt, ptrdiff_t ps,
                                         ptrdiff_t ldm, ptrdiff_t co0, ptrdiff_t nco,
                                         float *out);
/* input with V written as rows of bf16 pairs for the AVX512_BF16 GEMM kernel: row (p, tile) at
 * vp + (p*tiles + tile)*kq, kq = (cin + 1) / 2, what that kernel's pack_rows makes of input's
 * V (conv_winograd_avx512bf16.c; NULL in a build without it). */
typedef void (*nnf_wino_input_rows_fn)(const float *xt, ptrdiff_t nb, const nnf_wino_geom *q,
                                       const float *zeros, uint32_t *vp, ptrdiff_t kq);
extern const nnf_wino_input_rows_fn nnf_wino_input_rows_avx512bf16;

/* One output row of the 2x2, stride-2, unpadded max pooling of float32 rows r0 and r1 (2*wo
 * values each) into yr and ar: the maximum, and its index row_base + 2*ow + (0, 1, w or w + 1),
 * ties to the earlier element in window order. Returns nonzero if any value was NaN (the caller
 * then redoes the row, since NaN must win). NULL in a table whose ISA has none: the scalar
 * loop of conv_impl.inc (pool2_row) runs instead, as it does for float64. */
typedef int (*nnf_pool2_row_s)(const float *r0, const float *r1, ptrdiff_t wo, int32_t w,
                               int32_t row_base, float *yr, int32_t *ar);

/* The 2x2, stride-2, unpadded max pooling of nb images' pixel-major rows src (nb, h, w, c)
 * into dst and arg (nb, ho, wo, c): the maxima, and their indices ih*w + iw in their planes,
 * ties to the earlier element in window order as pool2_row. Returns nonzero if any value was
 * NaN, dst and arg then undefined (the caller pools by planes, where NaN wins). */
typedef int (*nnf_pool2_rows_s)(const float *src, ptrdiff_t nb, ptrdiff_t h, ptrdiff_t w,
                                ptrdiff_t c, ptrdiff_t ho, ptrdiff_t wo, float *dst,
                                int32_t *arg);
/* dst (nb, h, w, c), pixel-major, = what zeroing it and scattering (nnf_conv_scatter) that
 * pooling's gradient g at its argmax arg, both (nb, ho, wo, c), would give, when every index
 * lies in its own window. Returns nonzero, dst then undefined, if one does not. */
typedef int (*nnf_unpool2_rows_s)(const float *g, const int32_t *arg, ptrdiff_t nb,
                                  ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, ptrdiff_t ho,
                                  ptrdiff_t wo, float *dst);
/* (Both NULL in a table built without them, as with a compiler without GCC's vector
 * extensions: the callers then pool by planes and scatter.) */

typedef struct {
    nnf_conv_fwd_image_s direct_fwd_s;
    nnf_conv_fwd_image_d direct_fwd_d;
    nnf_conv_bwd_w_image_s direct_bwd_w_s;
    nnf_conv_bwd_w_image_d direct_bwd_w_d;
    nnf_conv_bwd_x_image_s direct_bwd_x_s;
    nnf_conv_bwd_x_image_d direct_bwd_x_d;
    nnf_wino_input_fn wino_input;
    nnf_wino_grad_output_fn wino_grad_output;
    nnf_wino_input_grad_fn wino_input_grad;
    nnf_wino_output_fn wino_output;
    nnf_wino_input_tiles_fn wino_input_tiles;
    nnf_wino_output_tiles_fn wino_output_tiles;
    nnf_wino_input_grad_tiles_fn wino_input_grad_tiles;
    nnf_pool2_row_s pool2_row_s;
    nnf_pool2_rows_s pool2_rows_s;
    nnf_unpool2_rows_s unpool2_rows_s;
    /* `rows` rows of wo values, `stride` apart in src, one after another into dst, reading
     * and writing nothing else (the direct kernels' shifted copies and the GEMM path's
     * columns) */
    nnf_conv_copy_rows_s copy_rows_s;
    nnf_conv_copy_rows_d copy_rows_d;
    /* The GEMM path's implicit products (conv_implicit_kernel.inc), for stride 1, Cout a
     * multiple of implicit_lanes_s (_d) and Wo >= NNF_CONV_IMPLICIT_COLS (NULL where the
     * ISA has none); x holds nb images (C, H, W), and off[t] is the offset of tap t = (ci, i,
     * j) from an output pixel's corner in the padded image (C, H + 2*ph, W + 2*pw):
     * (ci*(H + 2*ph) + i*dh)*(W + 2*pw) + j*dw; scratch holds that padded image and is zero
     * where nothing writes (its border) when there is padding.
     * fwd: yt (nb*Ho*Wo, Cout), pixel-major, (=) conv(x, wkt) with wkt (K, Cout) = W^T;
     * bwd_w: dwt (K, Cout) += the weight gradient (transposed) for dyt (nb*Ho*Wo, Cout). */
    nnf_conv_implicit_fwd_s implicit_fwd_s;
    nnf_conv_implicit_fwd_d implicit_fwd_d;
    nnf_conv_implicit_bwd_w_s implicit_bwd_w_s;
    nnf_conv_implicit_bwd_w_d implicit_bwd_w_d;
    int implicit_lanes_s, implicit_lanes_d;
} nnf_conv_kernels;
/* the implicit forward's tile widths (implicit_width): the narrowest is the least Wo taken */
#define NNF_CONV_IMPLICIT_COLS 4
#define NNF_CONV_IMPLICIT_COLS_MAX 8

int nnf_maxpool_fwd_s(const float *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                      const nnf_conv_geom *g, float *y, int32_t *argmax);
int nnf_maxpool_fwd_d(const double *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                      const nnf_conv_geom *g, double *y, int32_t *argmax);
int nnf_maxpool_bwd_s(const float *dy, const int32_t *argmax, ptrdiff_t n, ptrdiff_t c,
                      ptrdiff_t h, ptrdiff_t w, const nnf_conv_geom *g, float *dx);
int nnf_maxpool_bwd_d(const double *dy, const int32_t *argmax, ptrdiff_t n, ptrdiff_t c,
                      ptrdiff_t h, ptrdiff_t w, const nnf_conv_geom *g, double *dx);
int nnf_avgpool_fwd_s(const float *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                      const nnf_conv_geom *g, float *y);
int nnf_avgpool_fwd_d(const double *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                      const nnf_conv_geom *g, double *y);
int nnf_avgpool_bwd_s(const float *dy, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                      const nnf_conv_geom *g, float *dx);
int nnf_avgpool_bwd_d(const double *dy, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                      const nnf_conv_geom *g, double *dx);

#endif
