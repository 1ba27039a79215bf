/* AVX512_BF16 GEMM micro-kernel: the avx512 path's bf16 kernel (this file alone is compiled
 * with -mavx512bf16 and the AVX-512 flags; used only when the CPU has AVX512_BF16). vdpbf16ps
 * does 32 multiply-adds per zmm instruction, twice an fp32 FMA's 16. The 12 x 32 tile keeps the
 * fp32 kernel's shape: 24 zmm accumulators, per K-pair two B loads and twelve 32-bit
 * broadcasts of A's pairs. Packing (gemm_bf16_pack_avx512bf16.inc) converts with
 * VCVTNE2PS2BF16 (round to nearest even, subnormals to zero), which nnf_bf16_round matches. */
#include "gemm_bf16.h"

#ifdef NNF_HAVE_AVX512BF16 /* set by setup.py when the compiler accepts this file's flags */
#include <immintrin.h>

#define MR 12
#define NR 32

#include "gemm_bf16_pack_avx512bf16.inc"

/* The micro-kernel contracts of gemm_bf16.h, 12 x 32, on A's pair (i, q) at a[i*rs + q*qs]:
 * packed (rs 1, qs MR) or as rows of pairs (rs lda, qs 1); computed for the first ROWS rows
 * (a constant once inlined: 4, 8 or MR), the m of an edge sliver rounded up. */
static inline __attribute__((always_inline)) void bgemm_tile(const int ROWS, ptrdiff_t kq,
                                                             const uint32_t *a, ptrdiff_t rs,
                                                             ptrdiff_t qs, const uint32_t *b,
                                                             float *c, ptrdiff_t ldc, float alpha,
                                                             float beta, int m, int n) {
    __m512 acc[MR][2];
    for (int i = 0; i < ROWS; i++) {
        acc[i][0] = _mm512_setzero_ps();
        acc[i][1] = _mm512_setzero_ps();
        /* C is read (or written) only after the k loop: start fetching its rows now */
        __builtin_prefetch(c + i * ldc, 1, 3);
        __builtin_prefetch(c + i * ldc + NR - 1, 1, 3);
    }
    for (ptrdiff_t q = 0; q < kq; q++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 16);
#if defined(__clang__)
#pragma unroll
#else
#pragma GCC unroll 12
#endif
        for (int i = 0; i < ROWS; i++) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i * rs]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
        }
        a += qs;
        b += NR;
    }
    const __mmask16 m0 = row_mask_lo(n), m1 = row_mask_hi(n);
    for (int i = 0; i < ROWS && i < m; i++)
        store_row_32(c + i * ldc, acc[i][0], acc[i][1], alpha, beta, m0, m1);
}

/* An edge sliver of m rows costs the rows it has, to the next multiple of 4, rather than MR:
 * Winograd's blocks of 98 tiles end in a sliver of 2 rows, its weight gradient's 64 output
 * channels in one of 4, a batch of 128 in one of 8. Each row's sums are the same either way. */
static inline __attribute__((always_inline)) void bgemm_12x32(ptrdiff_t kq, const uint32_t *a,
                                                              ptrdiff_t rs, ptrdiff_t qs,
                                                              const uint32_t *b, float *c,
                                                              ptrdiff_t ldc, float alpha,
                                                              float beta, int m, int n) {
    if (m <= 4)
        bgemm_tile(4, kq, a, rs, qs, b, c, ldc, alpha, beta, m, n);
    else if (m <= 8)
        bgemm_tile(8, kq, a, rs, qs, b, c, ldc, alpha, beta, m, n);
    else
        bgemm_tile(MR, kq, a, rs, qs, b, c, ldc, alpha, beta, m, n);
}

static void bgemm_ukr_12x32_avx512bf16(ptrdiff_t kq, const uint32_t *a, const uint32_t *b,
                                       float *c, ptrdiff_t ldc, float alpha, float beta, int m,
                                       int n, const void *next_b, size_t next_bytes) {
    (void)next_b, (void)next_bytes; /* the prefetch was measured for the tile kernel only */
    bgemm_12x32(kq, a, 1, MR, b, c, ldc, alpha, beta, m, n);
}

static void bgemm_ukr_rows_12x32_avx512bf16(ptrdiff_t kq, const uint32_t *a, ptrdiff_t lda,
                                            const uint32_t *b, float *c, ptrdiff_t ldc,
                                            float alpha, float beta, int m, int n) {
    bgemm_12x32(kq, a, lda, 1, b, c, ldc, alpha, beta, m, n);
}

const nnf_gemm_bf16_ukernel nnf_gemm_bf16_ukernel_avx512 = {
    .mr = MR,
    .nr = NR,
    /* mc measured (bench/compare_bf16.py shapes, 2 threads, Zen 4, interleaved): 48 rows beat
     * 96 by 5% on 1024^3 and 2048^3; 24, 36, 60, 144 and 192 did no better, nor kc 768 or 1536 */
    .mc = 48,
    .kc = 1024,
    .nc = 4096,
    .fn = (void *)bgemm_ukr_12x32_avx512bf16,
    .name = "bgemm_ukr_12x32_avx512bf16",
    .pairs = 1,
    .pack = pack_pairs,
    .features = "avx512bf16,avx512bw",
    .fn_rows = (void *)bgemm_ukr_rows_12x32_avx512bf16,
    .pack_rows = pack_rows_pairs,
};
#else
const nnf_gemm_bf16_ukernel nnf_gemm_bf16_ukernel_avx512 = {0};
#endif
