/* Batched image warps for data augmentation (float32 and float64).
 *
 * nnf_warp_affine: y (N, C, H, W) = x (N, C, H, W) resampled through one affine map per image.
 *   mats (N, 6), row n = (a, b, ty, c, d, tx): output pixel (i, j) of image n reads the source
 *   point (a*i + b*j + ty, c*i + d*j + tx) (row, column), bilinearly; neighbours outside the
 *   image read `fill`. A point on the pixel grid copies that pixel exactly, so whole-pixel
 *   shifts and the identity are exact. y is overwritten (=) and must not overlap x. */
#ifndef NNFAST_IMAGE_H
#define NNFAST_IMAGE_H

#include <stddef.h>

#include "cpu.h"

int nnf_warp_affine_s(const float *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                      const double *mats, double fill, float *y);
int nnf_warp_affine_d(const double *x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                      const double *mats, double fill, double *y);

#endif
