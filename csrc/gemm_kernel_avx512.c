/* AVX-512 GEMM micro-kernels (this file alone is compiled with -mavx512f -mavx512vl -mavx2
 * -mfma; used only when the CPU has them). Zen 4 executes a 512-bit FMA as two halves, so the
 * gain over AVX2 is fewer instructions per FMA, 32 registers and masked edge tiles.
 * float32 tiles: 12x32 for wide products; 24x16 and 24x8 (ymm, same FLOP rate on Zen 4) for
 * skinny N, where a wider tile would mostly multiply padding. */
#include "gemm.h"

#ifdef NNF_HAVE_AVX512 /* set by setup.py when the compiler accepts this file's ISA flags */
#include <immintrin.h>

#define MASK(n) ((1u << (n)) - 1)

/* float32, zmm */
#define T float
#define VEC __m512
#define VLEN 16
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTOREU(p, v) _mm512_storeu_ps((p), (v))
#define VSET1(x) _mm512_set1_ps(x)
#define VZERO() _mm512_setzero_ps()
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm512_mul_ps((a), (b))
#define VLOAD_PART(p, n) _mm512_maskz_loadu_ps((__mmask16)MASK(n), (p))
#define VSTORE_PART(p, v, n) _mm512_mask_storeu_ps((p), (__mmask16)MASK(n), (v))
#define MR 12
#define NV 2
#define UKR_NAME sgemm_ukr_12x32_avx512
#include "gemm_ukernel.inc"
#define MR 24
#define NV 1
#define UKR_NAME sgemm_ukr_24x16_avx512
#include "gemm_ukernel.inc"
#include "gemm_vec_undef.inc"

/* float32, ymm with AVX-512VL masks */
#define T float
#define VEC __m256
#define VLEN 8
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTOREU(p, v) _mm256_storeu_ps((p), (v))
#define VSET1(x) _mm256_set1_ps(x)
#define VZERO() _mm256_setzero_ps()
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm256_mul_ps((a), (b))
#define VLOAD_PART(p, n) _mm256_maskz_loadu_ps((__mmask8)MASK(n), (p))
#define VSTORE_PART(p, v, n) _mm256_mask_storeu_ps((p), (__mmask8)MASK(n), (v))
#define MR 24
#define NV 1
#define UKR_NAME sgemm_ukr_24x8_avx512
#include "gemm_ukernel.inc"
#include "gemm_vec_undef.inc"

/* float64, zmm */
#define T double
#define VEC __m512d
#define VLEN 8
#define VLOADU(p) _mm512_loadu_pd(p)
#define VSTOREU(p, v) _mm512_storeu_pd((p), (v))
#define VSET1(x) _mm512_set1_pd(x)
#define VZERO() _mm512_setzero_pd()
#define VFMA(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define VMUL(a, b) _mm512_mul_pd((a), (b))
#define VLOAD_PART(p, n) _mm512_maskz_loadu_pd((__mmask8)MASK(n), (p))
#define VSTORE_PART(p, v, n) _mm512_mask_storeu_pd((p), (__mmask8)MASK(n), (v))
#define MR 12
#define NV 2
#define UKR_NAME dgemm_ukr_12x16_avx512
#include "gemm_ukernel.inc"
#define MR 24
#define NV 1
#define UKR_NAME dgemm_ukr_24x8_avx512
#include "gemm_ukernel.inc"
#include "gemm_vec_undef.inc"

#include "gemm_pack_avx2.inc"

nnf_gemm_ukernels nnf_gemm_ukernels_avx512 = {.ukr = {
    [0] = { /* float32 */
        NNF_GEMM_UKERNEL(sgemm_ukr_12x32_avx512, 12, 32, 48, 1024, 4096, spack_bt_avx2),
        NNF_GEMM_UKERNEL(sgemm_ukr_24x16_avx512, 24, 16, 48, 1024, 4096, spack_bt_avx2),
        NNF_GEMM_UKERNEL(sgemm_ukr_24x8_avx512, 24, 8, 48, 1024, 4096, spack_bt_avx2),
    },
    [1] = { /* float64 */
        NNF_GEMM_UKERNEL(dgemm_ukr_12x16_avx512, 12, 16, 48, 512, 4096, dpack_bt_avx2),
        NNF_GEMM_UKERNEL(dgemm_ukr_24x8_avx512, 24, 8, 48, 512, 4096, dpack_bt_avx2),
    },
}};
#else
nnf_gemm_ukernels nnf_gemm_ukernels_avx512;
#endif

/* The avx512 path's bf16 kernel, nnf_gemm_bf16_ukernel_avx512, is in gemm_bf16_kernel_avx512bf16.c:
 * it needs the AVX512_BF16 flags, which this file must not be compiled with. */
