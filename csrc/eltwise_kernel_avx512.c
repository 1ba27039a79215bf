/* AVX-512 element-wise kernels (this file alone is compiled with -mavx512f -mavx512vl ...). */
#include <math.h>
#include <string.h>

#include "eltwise.h"

#ifdef NNF_HAVE_AVX512 /* set by setup.py when the compiler accepts this file's ISA flags */
#define ISA avx512
#define VB 64

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
        identity_##dir##_##ts##_avx512, step_##dir##_##ts##_avx512, sigmoid_##dir##_##ts##_avx512,     \
            tanh_##dir##_##ts##_avx512, arctan_##dir##_##ts##_avx512, relu_##dir##_##ts##_avx512,       \
            leaky_relu_##dir##_##ts##_avx512, elu_##dir##_##ts##_avx512,                              \
            softplus_##dir##_##ts##_avx512, gelu_##dir##_##ts##_avx512,                               \
            gelu_tanh_##dir##_##ts##_avx512, silu_##dir##_##ts##_avx512                               \
    }

nnf_eltwise_kernels nnf_eltwise_kernels_avx512 = {
    ACTS(s, fwd), ACTS(s, bwd), ACTS(d, fwd), ACTS(d, bwd),
    math_s_avx512, math_d_avx512,
    lse_row_s_avx512, lse_row_d_avx512,
    xent_bwd_row_s_avx512, xent_bwd_row_d_avx512,
    bce_fwd_s_avx512, bce_fwd_d_avx512,
    bce_bwd_s_avx512, bce_bwd_d_avx512,
};
#else
nnf_eltwise_kernels nnf_eltwise_kernels_avx512;
#endif
