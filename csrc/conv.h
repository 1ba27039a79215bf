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
