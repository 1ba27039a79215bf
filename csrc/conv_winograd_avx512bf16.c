/* Winograd's transforms with their outputs converted as they are stored, in the layouts the
 * AVX512_BF16 GEMM kernel (gemm_bf16_kernel_avx512bf16.c) reads, for the bf16 route of
 * conv_winograd_bf16.inc: the same float32 sums as conv_winograd_kernel.inc's, rounded with
 * VCVTNE2PS2BF16 as that kernel's packing rounds, so the route skips writing V and Z in float32
 * and reading them back to convert. The forward's and dx's V as rows of pairs (pack_rows'
 * layout); the weight gradient's V and Z as slivers of pairs of tiles (pack_pairs'). This file
 * alone is compiled with -mavx512bf16 (setup.py); the route calls it only with that kernel,
 * which runs only on a CPU with AVX512_BF16. */
#include "conv.h"

#ifdef NNF_HAVE_AVX512BF16 /* set by setup.py when the compiler accepts this file's flags */
#include <immintrin.h>

/* input as rows: 32 channels (c0, c0 + 32) of one tile, masks m0 and m1 loading the first and
 * second 16 (zeros past cin), out storing the pairs that hold a channel. */
static inline void tile_rows(const float *const s[16], ptrdiff_t c0, __mmask16 m0, __mmask16 m1,
                             __mmask16 out, uint32_t *dst, ptrdiff_t ps) {
    for (int k = 0; k < 4; k++) {
        __m512 o[4][2]; /* outputs 4k .. 4k + 3, channels c0 + (0..15) and c0 + (16..31) */
        for (int h = 0; h < 2; h++) {
            const __mmask16 m = h ? m1 : m0;
            const ptrdiff_t c = c0 + 16 * h;
            __m512 t[4];
            for (int l = 0; l < 4; l++) { /* row k of B^T d, column l */
                const __m512 d1 = _mm512_maskz_loadu_ps(m, s[4 + l] + c);
                const __m512 d2 = _mm512_maskz_loadu_ps(m, s[8 + l] + c);
                if (k == 0)
                    t[l] = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, s[l] + c), d2);
                else if (k == 1)
                    t[l] = _mm512_add_ps(d1, d2);
                else if (k == 2)
                    t[l] = _mm512_sub_ps(d2, d1);
                else
                    t[l] = _mm512_sub_ps(d1, _mm512_maskz_loadu_ps(m, s[12 + l] + c));
            }
            o[0][h] = _mm512_sub_ps(t[0], t[2]); /* (B^T d) B */
            o[1][h] = _mm512_add_ps(t[1], t[2]);
            o[2][h] = _mm512_sub_ps(t[2], t[1]);
            o[3][h] = _mm512_sub_ps(t[1], t[3]);
        }
        for (int j = 0; j < 4; j++)
            _mm512_mask_storeu_epi32(dst + (4 * k + j) * ps + c0 / 2, out,
                                     (__m512i)_mm512_cvtne2ps_pbh(o[j][1], o[j][0]));
    }
}

/* The 16 input pixels of tile (the block's index) for wino_input's patch, zeros outside */
static inline void input_sources(const float *xt, const nnf_wino_geom *q, const float *zeros,
                                 ptrdiff_t tile, const float *s[16]) {
    const ptrdiff_t tpi = q->th * q->tw, b = tile / tpi, ty = tile % tpi / q->tw,
                    tx = tile % q->tw;
    for (int k = 0; k < 4; k++) {
        const ptrdiff_t r = 2 * ty - q->offh + k;
        for (int l = 0; l < 4; l++) {
            const ptrdiff_t col = 2 * tx - q->offw + l;
            s[4 * k + l] = r >= 0 && r < q->hin && col >= 0 && col < q->win
                               ? xt + ((b * q->hin + r) * q->win + col) * q->cin
                               : zeros;
        }
    }
}

static void wino_input_rows(const float *xt, ptrdiff_t nb, const nnf_wino_geom *q,
                            const float *zeros, uint32_t *vp, ptrdiff_t kq) {
    const ptrdiff_t cin = q->cin, tiles = nb * q->th * q->tw, ps = tiles * kq;
    const ptrdiff_t whole = cin / 32 * 32, left = cin - whole;
    const __mmask16 m0 = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1);
    const __mmask16 m1 = (__mmask16)(left > 16 ? (1u << (left - 16)) - 1 : 0);
    const __mmask16 out = (__mmask16)((1u << ((left + 1) / 2)) - 1);
    for (ptrdiff_t tile = 0; tile < tiles; tile++) {
        const float *s[16];
        input_sources(xt, q, zeros, tile, s);
        uint32_t *dst = vp + tile * kq;
        for (ptrdiff_t c0 = 0; c0 < whole; c0 += 32)
            tile_rows(s, c0, 0xffffu, 0xffffu, 0xffffu, dst, ps);
        if (left) tile_rows(s, whole, m0, m1, out, dst, ps);
    }
}

/* The weight gradient's operands, K = tiles: both transforms take tiles two at a time (2i and
 * 2i + 1 of the block, the second of an odd last pair all zeros) and write each position's 16
 * channels of the two as pairs (the kernel's pack_pairs: VCVTNE2PS2BF16, then interleaved), a
 * position's row of pairs into buf, whence its slivers of `tile` channels are copied. */

/* bf16 words of (lo, hi) interleaved: word 2t is lo[t], word 2t + 1 is hi[t] */
static inline __m512i interleave_bf16(__m512 lo, __m512 hi) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
    return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

/* Pair q of each position's slivers (slivers of `tile` lanes, sl words apart, a position's
 * es words after the previous one) from its row of pairs in buf (`len` words apart). */
static inline void pairs_to_slivers(const uint32_t *buf, ptrdiff_t len, int tile,
                                    ptrdiff_t slivers, uint32_t *dst, ptrdiff_t sl, ptrdiff_t es,
                                    ptrdiff_t q) {
    for (int e = 0; e < 16; e++)
        for (ptrdiff_t s = 0; s < slivers; s++)
            for (int i = 0; i < tile; i += 16) {
                const __mmask16 m = (__mmask16)(tile - i >= 16 ? 0xffffu : (1u << (tile - i)) - 1);
                _mm512_mask_storeu_epi32(dst + e * es + s * sl + q * tile + i, m,
                                         _mm512_maskz_loadu_epi32(m, buf + e * len + s * tile + i));
            }
}

/* wino_input's outputs 4k .. 4k + 3 of one tile's channels c .. c + 15 (mask m) */
static inline void input_row(const float *const s[16], int k, ptrdiff_t c, __mmask16 m,
                             __m512 o[4]) {
    __m512 t[4];
    for (int l = 0; l < 4; l++) { /* row k of B^T d, column l */
        const __m512 d1 = _mm512_maskz_loadu_ps(m, s[4 + l] + c);
        const __m512 d2 = _mm512_maskz_loadu_ps(m, s[8 + l] + c);
        if (k == 0)
            t[l] = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, s[l] + c), d2);
        else if (k == 1)
            t[l] = _mm512_add_ps(d1, d2);
        else if (k == 2)
            t[l] = _mm512_sub_ps(d2, d1);
        else
            t[l] = _mm512_sub_ps(d1, _mm512_maskz_loadu_ps(m, s[12 + l] + c));
    }
    o[0] = _mm512_sub_ps(t[0], t[2]); /* (B^T d) B */
    o[1] = _mm512_add_ps(t[1], t[2]);
    o[2] = _mm512_sub_ps(t[2], t[1]);
    o[3] = _mm512_sub_ps(t[1], t[3]);
}

/* -x, as C's unary minus: the sign flipped */
static inline __m512 neg(__m512 x) {
    return _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)));
}

/* wino_grad_output's outputs 4k .. 4k + 3 of one tile's channels c .. c + 15 (mask m) */
static inline void grad_output_row(const float *const s[16], int k, ptrdiff_t c, __mmask16 m,
                                   __m512 o[4]) {
    /* A dy: rows d0, d0 + d1, d0 - d1, -d1 (d0 = (a0, a1), d1 = (b0, b1)); then times A^T */
    const __m512 a0 = _mm512_maskz_loadu_ps(m, s[0] + c), a1 = _mm512_maskz_loadu_ps(m, s[1] + c);
    const __m512 b0 = _mm512_maskz_loadu_ps(m, s[2] + c), b1 = _mm512_maskz_loadu_ps(m, s[3] + c);
    __m512 t0, t1;
    if (k == 0)
        t0 = a0, t1 = a1;
    else if (k == 1)
        t0 = _mm512_add_ps(a0, b0), t1 = _mm512_add_ps(a1, b1);
    else if (k == 2)
        t0 = _mm512_sub_ps(a0, b0), t1 = _mm512_sub_ps(a1, b1);
    else
        t0 = neg(b0), t1 = neg(b1);
    o[0] = t0;
    o[1] = _mm512_add_ps(t0, t1);
    o[2] = _mm512_sub_ps(t0, t1);
    o[3] = neg(t1);
}

/* The 4 output pixels of tile's 2x2 block of dyt for wino_grad_output, zeros past the edge */
static inline void grad_sources(const float *dyt, const nnf_wino_geom *q, const float *zeros,
                                ptrdiff_t tile, const float *s[16]) {
    const ptrdiff_t tpi = q->th * q->tw, b = tile / tpi, ty = tile % tpi / q->tw,
                    tx = tile % q->tw;
    for (int e = 0; e < 4; e++) {
        const ptrdiff_t oh = 2 * ty + e / 2, ow = 2 * tx + e % 2;
        s[e] = oh < q->hout && ow < q->wout ? dyt + ((b * q->hout + oh) * q->wout + ow) * q->cout
                                            : zeros;
    }
}

/* Words of a position's row of pairs: its channels rounded up to whole slivers and to 16 (256
 * channels in slivers of 12 or 32) */
#define PAIRS_ROW_WORDS 272

static int wino_pairs(int grad, const float *src, ptrdiff_t nb, const nnf_wino_geom *q,
                      const float *zeros, int tile, uint32_t *dst, ptrdiff_t sl, ptrdiff_t es) {
    const ptrdiff_t ch = grad ? q->cout : q->cin, tiles = nb * q->th * q->tw;
    const ptrdiff_t slivers = (ch + tile - 1) / tile, len = (slivers * tile + 15) / 16 * 16;
    uint32_t buf[16 * PAIRS_ROW_WORDS];
    if (len > PAIRS_ROW_WORDS) return 0;
    for (ptrdiff_t i = 0; 2 * i < tiles; i++) {
        const float *s0[16], *s1[16] = {0};
        const int pair = 2 * i + 1 < tiles; /* else the second of the pair is zero */
        if (grad) {
            grad_sources(src, q, zeros, 2 * i, s0);
            if (pair) grad_sources(src, q, zeros, 2 * i + 1, s1);
        } else {
            input_sources(src, q, zeros, 2 * i, s0);
            if (pair) input_sources(src, q, zeros, 2 * i + 1, s1);
        }
        for (ptrdiff_t c = 0; c < len; c += 16) {
            /* channels past ch (the last sliver's padding) are +0, as pack_pairs leaves them */
            const __mmask16 m =
                (__mmask16)(ch - c >= 16 ? 0xffffu : ch > c ? (1u << (ch - c)) - 1 : 0);
            for (int k = 0; k < 4; k++) {
                __m512 lo[4], hi[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(),
                                       _mm512_setzero_ps(), _mm512_setzero_ps()};
                if (grad) {
                    grad_output_row(s0, k, c, m, lo);
                    if (pair) grad_output_row(s1, k, c, m, hi);
                } else {
                    input_row(s0, k, c, m, lo);
                    if (pair) input_row(s1, k, c, m, hi);
                }
                for (int j = 0; j < 4; j++) {
                    if (m != 0xffffu) { /* -0 from the sign flips would stay there */
                        lo[j] = _mm512_maskz_mov_ps(m, lo[j]);
                        hi[j] = _mm512_maskz_mov_ps(m, hi[j]);
                    }
                    _mm512_storeu_si512(buf + (4 * k + j) * len + c,
                                        interleave_bf16(lo[j], hi[j]));
                }
            }
        }
        pairs_to_slivers(buf, len, tile, slivers, dst, sl, es, i);
    }
    return 1;
}

static int wino_input_pairs(const float *xt, ptrdiff_t nb, const nnf_wino_geom *q,
                            const float *zeros, int tile, uint32_t *dst, ptrdiff_t sl,
                            ptrdiff_t es) {
    return wino_pairs(0, xt, nb, q, zeros, tile, dst, sl, es);
}

static int wino_grad_output_pairs(const float *dyt, ptrdiff_t nb, const nnf_wino_geom *q,
                                  const float *zeros, int tile, uint32_t *dst, ptrdiff_t sl,
                                  ptrdiff_t es) {
    return wino_pairs(1, dyt, nb, q, zeros, tile, dst, sl, es);
}

const nnf_wino_input_rows_fn nnf_wino_input_rows_avx512bf16 = wino_input_rows;
const nnf_wino_pairs_fn nnf_wino_input_pairs_avx512bf16 = wino_input_pairs;
const nnf_wino_pairs_fn nnf_wino_grad_output_pairs_avx512bf16 = wino_grad_output_pairs;
#else
const nnf_wino_input_rows_fn nnf_wino_input_rows_avx512bf16 = 0;
const nnf_wino_pairs_fn nnf_wino_input_pairs_avx512bf16 = 0;
const nnf_wino_pairs_fn nnf_wino_grad_output_pairs_avx512bf16 = 0;
#endif
