/* AVX512_BF16 GEMM micro-kernel and packing: the avx512 path's bf16 kernel (this file alone is
 * compiled with -mavx512bf16 and the AVX-512 flags; used only when the CPU has AVX512_BF16). vdpbf16ps does 32
 * multiply-adds per zmm instruction, twice an fp32 FMA's 16. The 12 x 32 tile keeps the fp32
 * kernel's shape: 24 zmm accumulators, per K-pair two B loads and twelve 32-bit broadcasts of
 * A's pairs. Packing converts with VCVTNE2PS2BF16 (round to nearest even, subnormals to zero),
 * which nnf_bf16_round matches. */
#include "gemm_bf16.h"

#ifdef NNF_HAVE_AVX512BF16 /* set by setup.py when the compiler accepts this file's flags */
#include <immintrin.h>

#define MR 12
#define NR 32

/* bf16 words of (lo, hi) interleaved: word 2t is lo[t], word 2t + 1 is hi[t] */
static inline __m512i interleave_bf16(__m512 lo, __m512 hi) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
    return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

/* r[i] element j -> r[j] element i, for 16 x 16 32-bit elements: within 128-bit lanes by
 * unpacking 32- and then 64-bit elements, then across lanes with two rounds of shuffles. */
static inline void transpose_16x16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* u[4g + j] holds, in 128-bit lane L, rows 4g..4g+3 of column 4L + j */
    for (int g = 0; g < 16; g += 4) {
        u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int j = 0; j < 4; j++) {
        const __m512i w0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44);
        const __m512i w1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xee);
        const __m512i w2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44);
        const __m512i w3 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xee);
        r[j] = _mm512_shuffle_i32x4(w0, w2, 0x88);
        r[4 + j] = _mm512_shuffle_i32x4(w0, w2, 0xdd);
        r[8 + j] = _mm512_shuffle_i32x4(w1, w3, 0x88);
        r[12 + j] = _mm512_shuffle_i32x4(w1, w3, 0xdd);
    }
}

static inline uint32_t pair_scalar(float lo, float hi) {
    union {
        float f;
        uint32_t u;
    } l = {.f = nnf_bf16_round(lo)}, h = {.f = nnf_bf16_round(hi)};
    return (l.u >> 16) | (h.u & 0xffff0000u);
}

/* The packing of gemm_bf16.h (nnf_bf16_pack_fn) into 32-bit K-pairs. */
static void pack_pairs(int TILE, int t, ptrdiff_t kc, const float *x, ptrdiff_t rs,
                       ptrdiff_t ks, void *dst_) {
    uint32_t *dst = (uint32_t *)dst_;
    const ptrdiff_t kq = (kc + 1) / 2;
    if (rs == 1 && TILE <= 64) {
        /* the tile runs along memory: convert rows 2q and 2q + 1, 16 lanes at a time, with
         * each 16 lanes' masks worked out once (worked out in the loop they cost 3x the
         * conversion: Winograd's weight-gradient operands, 12 and 32 lanes, Zen 4) */
        __mmask16 in[4], out[4];
        const int chunks = (TILE + 15) / 16;
        for (int c = 0; c < chunks; c++) {
            const int lanes = t - 16 * c >= 16 ? 16 : t - 16 * c > 0 ? t - 16 * c : 0;
            const int o = TILE - 16 * c >= 16 ? 16 : TILE - 16 * c;
            in[c] = (__mmask16)((1u << lanes) - 1);
            out[c] = (__mmask16)((1u << o) - 1);
        }
        const ptrdiff_t whole = kc / 2; /* pairs with both rows; an odd last row pairs a zero */
        for (ptrdiff_t q = 0; q < kq; q++) {
            const float *x0 = x + 2 * q * ks, *x1 = x0 + ks;
            for (int c = 0; c < chunks; c++) {
                const __m512 lo = _mm512_maskz_loadu_ps(in[c], x0 + 16 * c);
                const __m512 hi =
                    q < whole ? _mm512_maskz_loadu_ps(in[c], x1 + 16 * c) : _mm512_setzero_ps();
                _mm512_mask_storeu_epi32(dst + q * TILE + 16 * c, out[c], interleave_bf16(lo, hi));
            }
        }
    } else if (ks == 1) {
        /* K runs along memory: 32 values of a row convert to 16 pairs in order; 16 rows of
         * 16 pairs are transposed in registers so that each pair's tile row is one store */
        for (int i0 = 0; i0 < TILE; i0 += 16) {
            const int rows = TILE - i0 < 16 ? TILE - i0 : 16;
            const int valid = t - i0 >= 16 ? 16 : t - i0 > 0 ? t - i0 : 0;
            for (ptrdiff_t q0 = 0; q0 < kq; q0 += 16) {
                const ptrdiff_t left = kc - 2 * q0;
                const __mmask16 m0 = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1);
                const __mmask16 m1 =
                    (__mmask16)(left >= 32 ? 0xffffu : left > 16 ? (1u << (left - 16)) - 1 : 0);
                __m512i r[16];
                for (int i = 0; i < 16; i++) {
                    if (i < valid) {
                        const float *xi = x + (i0 + i) * rs + 2 * q0;
                        r[i] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, xi + 16),
                                                            _mm512_maskz_loadu_ps(m0, xi));
                    } else {
                        r[i] = _mm512_setzero_si512();
                    }
                }
                transpose_16x16(r);
                const int nq = kq - q0 < 16 ? (int)(kq - q0) : 16;
                for (int s = 0; s < nq; s++)
                    _mm512_mask_storeu_epi32(dst + (q0 + s) * TILE + i0,
                                             (__mmask16)((1u << rows) - 1), r[s]);
            }
        }
    } else {
        for (ptrdiff_t q = 0; q < kq; q++)
            for (int i = 0; i < TILE; i++) {
                const float *xi = x + i * rs + 2 * q * ks;
                dst[q * TILE + i] =
                    i < t ? pair_scalar(xi[0], 2 * q + 1 < kc ? xi[ks] : 0.0f) : 0u;
            }
    }
}

/* pack_rows of gemm_bf16.h: each row's values converted 32 at a time, in order, which gives
 * the pairs in order (VCVTNE2PS2BF16 puts its second source in the low half). */
static void pack_rows_pairs(ptrdiff_t t, ptrdiff_t k, const float *x, ptrdiff_t rs,
                            uint32_t *dst, ptrdiff_t ldd) {
    const ptrdiff_t whole = k / 32 * 32, left = k - whole; /* a last, partial block of left */
    const __mmask16 m0 = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1);
    const __mmask16 m1 = (__mmask16)(left > 16 ? (1u << (left - 16)) - 1 : 0);
    const __mmask16 out = (__mmask16)((1u << ((left + 1) / 2)) - 1);
    for (ptrdiff_t i = 0; i < t; i++) {
        const float *xi = x + i * rs;
        uint32_t *di = dst + i * ldd;
        for (ptrdiff_t p = 0; p < whole; p += 32) {
            const __m512 lo = _mm512_loadu_ps(xi + p), hi = _mm512_loadu_ps(xi + p + 16);
            _mm512_storeu_si512(di + p / 2, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
        if (left)
            _mm512_mask_storeu_epi32(
                di + whole / 2, out,
                (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, xi + whole + 16),
                                             _mm512_maskz_loadu_ps(m0, xi + whole)));
    }
}

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
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const __mmask16 m0 = (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1);
    const __mmask16 m1 = (__mmask16)(n >= 32 ? 0xffffu : n > 16 ? (1u << (n - 16)) - 1 : 0);
    for (int i = 0; i < ROWS && i < m; i++) {
        float *ci = c + i * ldc;
        __m512 r0 = acc[i][0], r1 = acc[i][1];
        if (alpha != 1.0f) { /* 1 * x is x: no multiply for the usual alpha */
            r0 = _mm512_mul_ps(va, r0);
            r1 = _mm512_mul_ps(va, r1);
        }
        if (beta != 0.0f) { /* beta == 0 overwrites: NaN in C does not leak through */
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
        }
        _mm512_mask_storeu_ps(ci, m0, r0);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
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
                                       int n) {
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
