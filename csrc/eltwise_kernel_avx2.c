/* AVX2 + FMA element-wise and optimizer kernels (this file alone is compiled with -mavx2 -mfma).
 * The template's select and min/max primitives as single intrinsics (vblendv, vmin, vmax). */
#include <math.h>
#include <string.h>

#include "eltwise.h"
#include "conv.h"
#include "optim.h"

#ifdef NNF_HAVE_AVX2 /* set by setup.py when the compiler accepts this file's ISA flags */
#include <immintrin.h>

#define ISA avx2
#define VB 32

#define T float
#define IT int32_t
#define TS s
#define VM V
#define VGT(a, b) ((V)_mm256_cmp_ps(VEC(a), VEC(b), _CMP_GT_OQ))
#define VLT(a, b) ((V)_mm256_cmp_ps(VEC(a), VEC(b), _CMP_LT_OQ))
#define VEQ(a, b) ((V)_mm256_cmp_ps(VEC(a), VEC(b), _CMP_EQ_OQ))
#define VNAN(a) ((V)_mm256_cmp_ps(a, a, _CMP_UNORD_Q))
#define SEL(m, a, b) ((V)_mm256_blendv_ps(VEC(b), VEC(a), m))
#define VMINX(x, c) ((V)_mm256_min_ps(VEC(c), x))
#define VMAXX(x, c) ((V)_mm256_max_ps(VEC(c), x))
#define FMA(a, b, c) ((V)_mm256_fmadd_ps(a, b, c))
#include "eltwise_kernel.inc"

#define T double
#define IT int64_t
#define TS d
#define VM V
#define VGT(a, b) ((V)_mm256_cmp_pd(VEC(a), VEC(b), _CMP_GT_OQ))
#define VLT(a, b) ((V)_mm256_cmp_pd(VEC(a), VEC(b), _CMP_LT_OQ))
#define VEQ(a, b) ((V)_mm256_cmp_pd(VEC(a), VEC(b), _CMP_EQ_OQ))
#define VNAN(a) ((V)_mm256_cmp_pd(a, a, _CMP_UNORD_Q))
#define SEL(m, a, b) ((V)_mm256_blendv_pd(VEC(b), VEC(a), m))
#define VMINX(x, c) ((V)_mm256_min_pd(VEC(c), x))
#define VMAXX(x, c) ((V)_mm256_max_pd(VEC(c), x))
#define FMA(a, b, c) ((V)_mm256_fmadd_pd(a, b, c))
#include "eltwise_kernel.inc"

#include "eltwise_table.inc"
#include "optim_kernel.inc"
#include "conv_kernel.inc"
#else
nnf_eltwise_kernels nnf_eltwise_kernels_avx2;
nnf_optim_kernels nnf_optim_kernels_avx2;
nnf_conv_kernels nnf_conv_kernels_avx2;
#endif
