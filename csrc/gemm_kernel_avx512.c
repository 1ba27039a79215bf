/* AVX-512F GEMM micro-kernels (this file alone is compiled with -mavx512f -mavx2 -mfma; used
 * only when the CPU has them). Zen 4 executes a 512-bit FMA as two halves, so the gain over
 * AVX2 is fewer instructions per FMA and 32 registers: 24 accumulators. */
#include "gemm.h"

#ifdef NNF_HAVE_AVX512 /* set by setup.py when the compiler accepts this file's ISA flags */
#include <immintrin.h>

/* float32: 12 x 32 tile */
#define T float
#define VEC __m512
#define VLEN 16
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTOREU(p, v) _mm512_storeu_ps((p), (v))
#define VSET1(x) _mm512_set1_ps(x)
#define VZERO() _mm512_setzero_ps()
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm512_mul_ps((a), (b))
#define MR 12
#define NV 2
#define UKR_NAME sgemm_ukr_12x32_avx512
#include "gemm_ukernel.inc"

/* float64: 12 x 16 tile */
#define T double
#define VEC __m512d
#define VLEN 8
#define VLOADU(p) _mm512_loadu_pd(p)
#define VSTOREU(p, v) _mm512_storeu_pd((p), (v))
#define VSET1(x) _mm512_set1_pd(x)
#define VZERO() _mm512_setzero_pd()
#define VFMA(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define VMUL(a, b) _mm512_mul_pd((a), (b))
#define MR 12
#define NV 2
#define UKR_NAME dgemm_ukr_12x16_avx512
#include "gemm_ukernel.inc"

nnf_gemm_ukernels nnf_gemm_ukernels_avx512 = {{
    {12, 32, 48, 1024, 4096, (void *)sgemm_ukr_12x32_avx512, "sgemm_ukr_12x32_avx512"},
    {12, 16, 48, 512, 4096, (void *)dgemm_ukr_12x16_avx512, "dgemm_ukr_12x16_avx512"},
}};
#else
nnf_gemm_ukernels nnf_gemm_ukernels_avx512 = {{{0}}};
#endif
