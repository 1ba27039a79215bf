/* Portable GEMM micro-kernels: GCC/Clang vector extensions (16-byte vectors, which every
 * SIMD ISA has; the compiler lowers them to scalars elsewhere), plain scalars otherwise.
 * Compiled with the baseline flags only, so it runs on any CPU. */
#include <string.h>

#include "gemm.h"
#include "gemm_bf16.h"

#if defined(__GNUC__) || defined(__clang__)
typedef float vf4 __attribute__((vector_size(16)));
typedef double vd2 __attribute__((vector_size(16)));

static inline vf4 vf4_load(const float *p) { vf4 v; memcpy(&v, p, sizeof v); return v; }
static inline vd2 vd2_load(const double *p) { vd2 v; memcpy(&v, p, sizeof v); return v; }
static inline void vf4_store(float *p, vf4 v) { memcpy(p, &v, sizeof v); }
static inline void vd2_store(double *p, vd2 v) { memcpy(p, &v, sizeof v); }

/* float32: 4 x 8 tile */
#define T float
#define VEC vf4
#define VLEN 4
#define VLOADU(p) vf4_load(p)
#define VSTOREU(p, v) vf4_store((p), (v))
#define VSET1(x) ((vf4){0} + (x))
#define VZERO() ((vf4){0})
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VMUL(a, b) ((a) * (b))
#define MR 4
#define NV 2
#define UKR_NAME sgemm_ukr_4x8_generic
#include "gemm_ukernel.inc"
#include "gemm_vec_undef.inc"

/* float64: 4 x 4 tile */
#define T double
#define VEC vd2
#define VLEN 2
#define VLOADU(p) vd2_load(p)
#define VSTOREU(p, v) vd2_store((p), (v))
#define VSET1(x) ((vd2){0} + (x))
#define VZERO() ((vd2){0})
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VMUL(a, b) ((a) * (b))
#define MR 4
#define NV 2
#define UKR_NAME dgemm_ukr_4x4_generic
#include "gemm_ukernel.inc"
#include "gemm_vec_undef.inc"

#else /* scalar fallback for other compilers */
#define T float
#define VEC float
#define VLEN 1
#define VLOADU(p) (*(p))
#define VSTOREU(p, v) (*(p) = (v))
#define VSET1(x) (x)
#define VZERO() 0.0f
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VMUL(a, b) ((a) * (b))
#define MR 4
#define NV 8
#define UKR_NAME sgemm_ukr_4x8_generic
#include "gemm_ukernel.inc"
#include "gemm_vec_undef.inc"

#define T double
#define VEC double
#define VLEN 1
#define VLOADU(p) (*(p))
#define VSTOREU(p, v) (*(p) = (v))
#define VSET1(x) (x)
#define VZERO() 0.0
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VMUL(a, b) ((a) * (b))
#define MR 4
#define NV 4
#define UKR_NAME dgemm_ukr_4x4_generic
#include "gemm_ukernel.inc"
#include "gemm_vec_undef.inc"
#endif

nnf_gemm_ukernels nnf_gemm_ukernels_generic = {.ukr = {
    [0] = {NNF_GEMM_UKERNEL(sgemm_ukr_4x8_generic, 4, 8, 128, 256, 2048, NULL)}, /* float32 */
    [1] = {NNF_GEMM_UKERNEL(dgemm_ukr_4x4_generic, 4, 4, 128, 256, 2048, NULL)}, /* float64 */
}};

/* No native bf16 kernel: bf16 products run emulated on the fp32 kernel above. */
const nnf_gemm_bf16_ukernel nnf_gemm_bf16_ukernel_generic = {0};
