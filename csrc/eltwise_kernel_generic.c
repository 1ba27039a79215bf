/* Portable element-wise kernels: 16-byte GCC/Clang vectors (SSE2 on x86-64), baseline flags.
 * Other compilers get the scalar reference kernels of eltwise.c instead. */
#include <math.h>
#include <string.h>

#include "eltwise.h"

#if defined(__GNUC__) || defined(__clang__)
#define ISA generic
#define VB 16

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
        identity_##dir##_##ts##_generic, step_##dir##_##ts##_generic, sigmoid_##dir##_##ts##_generic,     \
            tanh_##dir##_##ts##_generic, arctan_##dir##_##ts##_generic, relu_##dir##_##ts##_generic,       \
            leaky_relu_##dir##_##ts##_generic, elu_##dir##_##ts##_generic,                              \
            softplus_##dir##_##ts##_generic, gelu_##dir##_##ts##_generic,                               \
            gelu_tanh_##dir##_##ts##_generic, silu_##dir##_##ts##_generic                               \
    }

nnf_eltwise_kernels nnf_eltwise_kernels_generic = {
    ACTS(s, fwd), ACTS(s, bwd), ACTS(d, fwd), ACTS(d, bwd),
    math_s_generic, math_d_generic,
    lse_row_s_generic, lse_row_d_generic,
    xent_bwd_row_s_generic, xent_bwd_row_d_generic,
    bce_fwd_s_generic, bce_fwd_d_generic,
    bce_bwd_s_generic, bce_bwd_d_generic,
};
#else
nnf_eltwise_kernels nnf_eltwise_kernels_generic;
#endif
