/* AVX-512 element-wise and optimizer kernels (this file alone is compiled with -mavx512f
 * -mavx512vl ...).
 * The template's primitives as intrinsics: comparisons into mask registers, one-instruction
 * blends, min/max, and vscalef for p * 2^n (overflow and gradual underflow included). */
#include <math.h>
#include <string.h>

#include "eltwise.h"
#include "conv.h"
#include "optim.h"

#ifdef NNF_HAVE_AVX512 /* set by setup.py when the compiler accepts this file's ISA flags */
#include <immintrin.h>

#define ISA avx512
#define VB 64

#define T float
#define IT int32_t
#define TS s
#define VM __mmask16
#define VGT(a, b) _mm512_cmp_ps_mask(VEC(a), VEC(b), _CMP_GT_OQ)
#define VLT(a, b) _mm512_cmp_ps_mask(VEC(a), VEC(b), _CMP_LT_OQ)
#define VEQ(a, b) _mm512_cmp_ps_mask(VEC(a), VEC(b), _CMP_EQ_OQ)
#define VNAN(a) _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q)
#define SEL(m, a, b) ((V)_mm512_mask_blend_ps(m, VEC(b), VEC(a)))
#define VMINX(x, c) ((V)_mm512_min_ps(VEC(c), x))
#define VMAXX(x, c) ((V)_mm512_max_ps(VEC(c), x))
#define FMA(a, b, c) ((V)_mm512_fmadd_ps(a, b, c))
#define POW2(p, n) ((V)_mm512_scalef_ps(p, n))
#include "eltwise_kernel.inc"

#define T double
#define IT int64_t
#define TS d
#define VM __mmask8
#define VGT(a, b) _mm512_cmp_pd_mask(VEC(a), VEC(b), _CMP_GT_OQ)
#define VLT(a, b) _mm512_cmp_pd_mask(VEC(a), VEC(b), _CMP_LT_OQ)
#define VEQ(a, b) _mm512_cmp_pd_mask(VEC(a), VEC(b), _CMP_EQ_OQ)
#define VNAN(a) _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q)
#define SEL(m, a, b) ((V)_mm512_mask_blend_pd(m, VEC(b), VEC(a)))
#define VMINX(x, c) ((V)_mm512_min_pd(VEC(c), x))
#define VMAXX(x, c) ((V)_mm512_max_pd(VEC(c), x))
#define FMA(a, b, c) ((V)_mm512_fmadd_pd(a, b, c))
#define POW2(p, n) ((V)_mm512_scalef_pd(p, n))
#include "eltwise_kernel.inc"

#include "eltwise_table.inc"
#include "optim_kernel.inc"
#include "conv_kernel.inc"
#else
nnf_eltwise_kernels nnf_eltwise_kernels_avx512;
nnf_optim_kernels nnf_optim_kernels_avx512;
nnf_conv_kernels nnf_conv_kernels_avx512;
#endif
