/* AVX2 + FMA GEMM micro-kernels (this file alone is compiled with -mavx2 -mfma). 6 x 16 fp32
 * tiles as in BLIS's Haswell kernel: 12 ymm accumulators, two B loads and six broadcasts per
 * step, within the two loads per cycle of most AVX2 cores. */
#include "gemm.h"

#ifdef NNF_HAVE_AVX2 /* set by setup.py when the compiler accepts this file's ISA flags */
#include <immintrin.h>

/* float32: 6 x 16 tile */
#define T float
#define VEC __m256
#define VLEN 8
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTOREU(p, v) _mm256_storeu_ps((p), (v))
#define VSET1(x) _mm256_set1_ps(x)
#define VZERO() _mm256_setzero_ps()
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm256_mul_ps((a), (b))
#define MR 6
#define NV 2
#define UKR_NAME sgemm_ukr_6x16_avx2
#include "gemm_ukernel.inc"

/* float64: 6 x 8 tile */
#define T double
#define VEC __m256d
#define VLEN 4
#define VLOADU(p) _mm256_loadu_pd(p)
#define VSTOREU(p, v) _mm256_storeu_pd((p), (v))
#define VSET1(x) _mm256_set1_pd(x)
#define VZERO() _mm256_setzero_pd()
#define VFMA(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define VMUL(a, b) _mm256_mul_pd((a), (b))
#define MR 6
#define NV 2
#define UKR_NAME dgemm_ukr_6x8_avx2
#include "gemm_ukernel.inc"

nnf_gemm_ukernels nnf_gemm_ukernels_avx2 = {{
    {6, 16, 72, 512, 4096, (void *)sgemm_ukr_6x16_avx2, "sgemm_ukr_6x16_avx2"},
    {6, 8, 48, 512, 4096, (void *)dgemm_ukr_6x8_avx2, "dgemm_ukr_6x8_avx2"},
}};
#else
nnf_gemm_ukernels nnf_gemm_ukernels_avx2 = {{{0}}};
#endif
