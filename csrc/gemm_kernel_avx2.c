/* AVX2 + FMA GEMM micro-kernels (this file alone is compiled with -mavx2 -mfma). Wide tiles
 * are 6 x 2 vectors as in BLIS's Haswell kernel: 12 ymm accumulators, two B loads and six
 * broadcasts per step, within the two loads per cycle of most AVX2 cores. Narrow 12 x 1-vector
 * tiles serve skinny N. Edges use maskload/maskstore. */
#include "gemm.h"
#include "gemm_bf16.h"

#ifdef NNF_HAVE_AVX2 /* set by setup.py when the compiler accepts this file's ISA flags */
#include <immintrin.h>

/* -1 in the first n of 8 int32 lanes: a sliding window over this table */
static const int lane_mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline __m256i lane_mask32(int n) {
    return _mm256_loadu_si256((const __m256i *)(lane_mask_table + 8 - n));
}
/* -1 in the first n of 4 int64 lanes */
static inline __m256i lane_mask64(int n) { return lane_mask32(2 * n); }

/* float32 */
#define T float
#define VEC __m256
#define VLEN 8
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTOREU(p, v) _mm256_storeu_ps((p), (v))
#define VSET1(x) _mm256_set1_ps(x)
#define VZERO() _mm256_setzero_ps()
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm256_mul_ps((a), (b))
#define VLOAD_PART(p, n) _mm256_maskload_ps((p), lane_mask32(n))
#define VSTORE_PART(p, v, n) _mm256_maskstore_ps((p), lane_mask32(n), (v))
#define MR 6
#define NV 2
#define UKR_NAME sgemm_ukr_6x16_avx2
#include "gemm_ukernel.inc"
#define MR 12
#define NV 1
#define UKR_NAME sgemm_ukr_12x8_avx2
#include "gemm_ukernel.inc"
#include "gemm_vec_undef.inc"

/* float64 */
#define T double
#define VEC __m256d
#define VLEN 4
#define VLOADU(p) _mm256_loadu_pd(p)
#define VSTOREU(p, v) _mm256_storeu_pd((p), (v))
#define VSET1(x) _mm256_set1_pd(x)
#define VZERO() _mm256_setzero_pd()
#define VFMA(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define VMUL(a, b) _mm256_mul_pd((a), (b))
#define VLOAD_PART(p, n) _mm256_maskload_pd((p), lane_mask64(n))
#define VSTORE_PART(p, v, n) _mm256_maskstore_pd((p), lane_mask64(n), (v))
#define MR 6
#define NV 2
#define UKR_NAME dgemm_ukr_6x8_avx2
#include "gemm_ukernel.inc"
#include "gemm_vec_undef.inc"

#include "gemm_pack_avx2.inc"

nnf_gemm_ukernels nnf_gemm_ukernels_avx2 = {.ukr = {
    [0] = { /* float32 */
        NNF_GEMM_UKERNEL(sgemm_ukr_6x16_avx2, 6, 16, 72, 512, 4096, spack_bt_avx2),
        NNF_GEMM_UKERNEL(sgemm_ukr_12x8_avx2, 12, 8, 72, 512, 4096, spack_bt_avx2),
    },
    [1] = { /* float64 */
        NNF_GEMM_UKERNEL(dgemm_ukr_6x8_avx2, 6, 8, 48, 512, 4096, dpack_bt_avx2),
    },
}};
#else
nnf_gemm_ukernels nnf_gemm_ukernels_avx2;
#endif

/* No native bf16 kernel (AVX2 has no bf16 dot product): bf16 products run emulated on the
 * fp32 kernels above. */
const nnf_gemm_bf16_ukernel nnf_gemm_bf16_ukernel_avx2 = {0};
