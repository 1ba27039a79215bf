/* Winograd's input transform with its output converted as it is stored, for the AVX512_BF16
 * GEMM kernel's rows of pairs (gemm_bf16_kernel_avx512bf16.c): V (16, tiles, cin) = B^T d B of
 * wino_input (conv_winograd_kernel.inc), the same float32 sums, each row (p, tile) written as
 * its (cin + 1) / 2 pairs kq words apart, converted with VCVTNE2PS2BF16 as that kernel's
 * pack_rows converts (an odd last channel pairs a zero). The bf16 route of conv_winograd_bf16.inc
 * then skips writing V in float32 and reading it back to convert. This file alone is compiled
 * with -mavx512bf16 (setup.py); the route calls it only with that kernel, which runs only on a
 * CPU with AVX512_BF16. */
#include "conv.h"

#ifdef NNF_HAVE_AVX512BF16 /* set by setup.py when the compiler accepts this file's flags */
#include <immintrin.h>

/* 32 channels (c0, c0 + 32) of one tile: masks m0 and m1 load the first and second 16 (zeros
 * past cin), out stores the pairs that hold a channel. */
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

static void wino_input_rows(const float *xt, ptrdiff_t nb, const nnf_wino_geom *q,
                            const float *zeros, uint32_t *vp, ptrdiff_t kq) {
    const ptrdiff_t cin = q->cin, tiles = nb * q->th * q->tw, ps = tiles * kq;
    const ptrdiff_t whole = cin / 32 * 32, left = cin - whole;
    const __mmask16 m0 = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1);
    const __mmask16 m1 = (__mmask16)(left > 16 ? (1u << (left - 16)) - 1 : 0);
    const __mmask16 out = (__mmask16)((1u << ((left + 1) / 2)) - 1);
    for (ptrdiff_t b = 0; b < nb; b++)
        for (ptrdiff_t ty = 0; ty < q->th; ty++)
            for (ptrdiff_t tx = 0; tx < q->tw; tx++) {
                const float *s[16];
                for (int k = 0; k < 4; k++) {
                    const ptrdiff_t r = 2 * ty - q->offh + k;
                    for (int l = 0; l < 4; l++) {
                        const ptrdiff_t col = 2 * tx - q->offw + l;
                        s[4 * k + l] = r >= 0 && r < q->hin && col >= 0 && col < q->win
                                           ? xt + ((b * q->hin + r) * q->win + col) * cin
                                           : zeros;
                    }
                }
                uint32_t *dst = vp + ((b * q->th + ty) * q->tw + tx) * kq;
                for (ptrdiff_t c0 = 0; c0 < whole; c0 += 32)
                    tile_rows(s, c0, 0xffffu, 0xffffu, 0xffffu, dst, ps);
                if (left) tile_rows(s, whole, m0, m1, out, dst, ps);
            }
}

const nnf_wino_input_rows_fn nnf_wino_input_rows_avx512bf16 = wino_input_rows;
#else
const nnf_wino_input_rows_fn nnf_wino_input_rows_avx512bf16 = 0;
#endif
