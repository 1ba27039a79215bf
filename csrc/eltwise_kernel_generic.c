/* Portable element-wise, optimizer and direct-convolution kernels, baseline flags. The
 * element-wise and convolution ones are GCC/Clang vectors (SSE2 on x86-64); other compilers get
 * empty tables for them (the element-wise entry points then return NNF_EISA). The optimizer
 * spans are plain C, built everywhere. */
#include <math.h>
#include <string.h>

#include "eltwise.h"
#include "conv.h"
#include "optim.h"

#define ISA generic

#if defined(__GNUC__) || defined(__clang__)
#define VB 16

#define T float
#define IT int32_t
#define TS s
#include "eltwise_kernel.inc"

#define T double
#define IT int64_t
#define TS d
#include "eltwise_kernel.inc"

#include "eltwise_table.inc"
#else
nnf_eltwise_kernels nnf_eltwise_kernels_generic;
#endif

#include "optim_kernel.inc"

#if defined(__GNUC__) || defined(__clang__) /* the direct convolution needs vector extensions */
#include "conv_kernel.inc"
#else
nnf_conv_kernels nnf_conv_kernels_generic;
#endif
