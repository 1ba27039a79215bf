/* AVX2 + FMA element-wise kernels (this file alone is compiled with -mavx2 -mfma). */
#include <math.h>
#include <string.h>

#include "eltwise.h"

#ifdef NNF_HAVE_AVX2 /* set by setup.py when the compiler accepts this file's ISA flags */
#define ISA avx2
#define VB 32

#define T float
#define IT int32_t
#define TS s
#include "eltwise_kernel.inc"

#define T double
#define IT int64_t
#define TS d
#include "eltwise_kernel.inc"

#define ACTS(ts, dir)                                                                             \
    {                                                                                             \
        identity_##dir##_##ts##_avx2, step_##dir##_##ts##_avx2, sigmoid_##dir##_##ts##_avx2,     \
            tanh_##dir##_##ts##_avx2, arctan_##dir##_##ts##_avx2, relu_##dir##_##ts##_avx2,       \
            leaky_relu_##dir##_##ts##_avx2, elu_##dir##_##ts##_avx2,                              \
            softplus_##dir##_##ts##_avx2, gelu_##dir##_##ts##_avx2,                               \
            gelu_tanh_##dir##_##ts##_avx2, silu_##dir##_##ts##_avx2                               \
    }

nnf_eltwise_kernels nnf_eltwise_kernels_avx2 = {
    ACTS(s, fwd), ACTS(s, bwd), ACTS(d, fwd), ACTS(d, bwd),
    math_s_avx2, math_d_avx2,
    lse_row_s_avx2, lse_row_d_avx2,
    xent_bwd_row_s_avx2, xent_bwd_row_d_avx2,
    bce_fwd_s_avx2, bce_fwd_d_avx2,
    bce_bwd_s_avx2, bce_bwd_d_avx2,
};
#else
nnf_eltwise_kernels nnf_eltwise_kernels_avx2;
#endif
