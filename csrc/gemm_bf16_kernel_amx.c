/* AMX bf16 GEMM micro-kernel: the AVX-512 path's tile kernel (gemm_bf16.h). This file alone is
 * compiled with -mamx-tile -mamx-bf16 and the AVX512_BF16 flags; it runs only where the CPU
 * has AMX-TILE and AMX-BF16 and the OS lets the process use the tile data (Linux asks for it
 * through arch_prctl). One TDPBF16PS multiplies a 16-row tile of A (16 rows of 32 bf16) by a
 * tile of B (16 K-pairs of 16 columns) into 16 x 16 fp32 sums; the 32 x 32 kernel keeps four
 * such sums in tiles 4-7 and loads two tiles of each operand per 32 K (each used twice).
 * B is packed as for vdpbf16ps (K-pairs of NR columns: two tiles side by side, 128 bytes a
 * K-pair), A in blocks of 32 K, each MR rows of 16 K-pairs (a tile is 16 of those rows); both
 * padded with zeros to a multiple of 32 K, which adds nothing to the sums. */
#include "gemm_bf16.h"

#ifdef NNF_HAVE_AMX /* set by setup.py when the compiler accepts this file's flags */
#include <cpuid.h>
#include <immintrin.h>
#include <string.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define MR 32
#define NR 32
#define KSTEP 32 /* K per tile row: 16 pairs of 32 bits */

#include "gemm_bf16_pack_avx512bf16.inc"

/* A's layout: blocks of 16 K-pairs (one tile row's 32 K), each TILE rows of 16 pairs, so that
 * a tile of A is 1 KB in one piece and A streams in order as B does. (Rows of the whole K
 * block, a page apart at KC = 2048, ran about as fast on 1024^3 and 2048^3 in a first,
 * uninterleaved look.) Pair q of row i is at word (q / 16) * TILE * 16 + i * 16 + q % 16. */
#define APAIR(TILE, i, q) (((q) / 16) * (TILE) * 16 + (i) * 16 + (q) % 16)

/* pack_a of gemm_bf16.h: kc rounded up to KSTEP, in blocks of 16 pairs; rows t.. and pairs
 * past kc are zeros. */
static void pack_a_blocks(int TILE, int t, ptrdiff_t kc, const float *x, ptrdiff_t rs,
                        ptrdiff_t ks, void *dst_) {
    uint32_t *dst = (uint32_t *)dst_;
    const ptrdiff_t kq = (kc + 1) / 2, kqp = (kc + KSTEP - 1) / KSTEP * KSTEP / 2;
    if (ks == 1) { /* K along memory: each row converts in order, a block at a time */
        for (ptrdiff_t q0 = 0; q0 < kq; q0 += 16) {
            const ptrdiff_t k0 = 2 * q0, kb = kc - k0 < KSTEP ? kc - k0 : KSTEP;
            uint32_t *blk = dst + APAIR(TILE, 0, q0);
            pack_rows_pairs(t, kb, x + k0, rs, blk, 16);
            const int tail = (int)((kb + 1) / 2); /* pairs written of each row */
            for (int i = 0; i < TILE; i++) {
                const int from = i < t ? tail : 0;
                if (from < 16) memset(blk + i * 16 + from, 0, (size_t)(16 - from) * 4);
            }
        }
    } else if (rs == 1 && TILE % 16 == 0) {
        /* rows along memory (a transposed A): 16 rows' pairs of one K-pair per register, then
         * 16 x 16 register transposes into rows */
        const ptrdiff_t whole = kc / 2;
        for (int i0 = 0; i0 < TILE; i0 += 16) {
            const int valid = t - i0 >= 16 ? 16 : t - i0 > 0 ? t - i0 : 0;
            const __mmask16 in = (__mmask16)((1u << valid) - 1);
            for (ptrdiff_t q0 = 0; q0 < kqp; q0 += 16) {
                __m512i r[16];
                for (int s = 0; s < 16; s++) {
                    const ptrdiff_t q = q0 + s;
                    if (q >= kq || !valid) {
                        r[s] = _mm512_setzero_si512();
                        continue;
                    }
                    const float *x0 = x + 2 * q * ks + i0;
                    const __m512 lo = _mm512_maskz_loadu_ps(in, x0);
                    const __m512 hi =
                        q < whole ? _mm512_maskz_loadu_ps(in, x0 + ks) : _mm512_setzero_ps();
                    r[s] = interleave_bf16(lo, hi);
                }
                transpose_16x16(r);
                for (int i = 0; i < 16; i++)
                    _mm512_storeu_si512(dst + APAIR(TILE, i0 + i, q0), r[i]);
            }
        }
    } else {
        for (ptrdiff_t q = 0; q < kqp; q++)
            for (int i = 0; i < TILE; i++) {
                const float *xi = x + i * rs + 2 * q * ks;
                dst[APAIR(TILE, i, q)] =
                    i < t && q < kq ? pair_scalar(xi[0], 2 * q + 1 < kc ? xi[ks] : 0.0f) : 0u;
            }
    }
}

/* pack of gemm_bf16.h for B: vdpbf16ps's K-pairs, then zero pairs up to the padded depth. A
 * piece along K from p0 (a multiple of KSTEP) is padded only when it is the last. */
static void pack_b_pairs(int TILE, int t, ptrdiff_t kc, const float *x, ptrdiff_t rs,
                         ptrdiff_t ks, void *dst_) {
    uint32_t *dst = (uint32_t *)dst_;
    const ptrdiff_t kq = (kc + 1) / 2, kqp = (kc + KSTEP - 1) / KSTEP * KSTEP / 2;
    pack_pairs(TILE, t, kc, x, rs, ks, dst);
    if (kqp > kq) memset(dst + kq * TILE, 0, (size_t)(kqp - kq) * (size_t)TILE * 4);
}

/* Tile registers 0-7, each 16 rows of 64 bytes (palette 1). Static: GCC's _tile_loadconfig
 * tells the compiler it reads 8 bytes, so the stores of a configuration built on the stack
 * could be dropped as dead. */
static const struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) tile_config = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

static void tiles_begin(void) { _tile_loadconfig(&tile_config); }

static void tiles_end(void) { _tile_release(); }

/* The contract of nnf_bgemm_ukr on pack_a's layout: kq (a multiple of 16) pairs of MR rows,
 * and kq groups of NR pairs of B. A whole tile with alpha 1 and beta 0 or 1 reads and writes C
 * through the tiles; the rest goes through a buffer. */
static void bgemm_ukr_32x32_amx(ptrdiff_t kq, const uint32_t *a, const uint32_t *b, float *c,
                                ptrdiff_t ldc, float alpha, float beta, int m, int n,
                                const void *next_b, size_t next_bytes) {
    const ptrdiff_t ldcb = ldc * 4; /* bytes */
    const int direct = m == MR && n == NR && alpha == 1.0f && (beta == 0.0f || beta == 1.0f);
    if (direct && beta == 1.0f) {
        _tile_loadd(4, c, ldcb);
        _tile_loadd(5, c + 16, ldcb);
        _tile_loadd(6, c + 16 * ldc, ldcb);
        _tile_loadd(7, c + 16 * ldc + 16, ldcb);
    } else {
        _tile_zero(4);
        _tile_zero(5);
        _tile_zero(6);
        _tile_zero(7);
    }
    /* next_b's lines to L2, spread over the K steps */
    const char *pf = (const char *)next_b;
    const size_t lines = next_b ? (next_bytes + 63) / 64 : 0, steps = (size_t)kq / (KSTEP / 2);
    const size_t per_step = steps ? (lines + steps - 1) / steps : 0;
    size_t line = 0;
    /* C's lines, written at the end, fetched for writing over the first K steps, two rows a
     * step (only when the tiles write C with beta 0: beta 1 loaded them). 128x784x256 1.06x
     * as fast, 1024^3 and 2048^3 within noise (2 threads, 16 interleaved rounds). */
    const int own_c = direct && beta == 0.0f;
    /* each load just before the first product that needs it: 2-8% faster on 2048^3 and ~2%
     * on 1024^3 than the four loads first, 128x784x256 within noise (2 threads, 4
     * interleaved rounds) */
    for (ptrdiff_t q = 0; q < kq; q += KSTEP / 2) {
        const size_t end = line + per_step < lines ? line + per_step : lines;
        for (; line < end; line++) _mm_prefetch(pf + 64 * line, _MM_HINT_T1);
        if (own_c && q < MR * (KSTEP / 2) / 2) {
            float *row = c + (q / (KSTEP / 2)) * 2 * ldc;
            _m_prefetchw(row);
            _m_prefetchw(row + 16);
            _m_prefetchw(row + ldc);
            _m_prefetchw(row + ldc + 16);
        }
        _tile_loadd(0, a + APAIR(MR, 0, q), 64);
        _tile_loadd(2, b + q * NR, NR * 4);
        _tile_dpbf16ps(4, 0, 2);
        _tile_loadd(3, b + q * NR + 16, NR * 4);
        _tile_dpbf16ps(5, 0, 3);
        _tile_loadd(1, a + APAIR(MR, 16, q), 64);
        _tile_dpbf16ps(6, 1, 2);
        _tile_dpbf16ps(7, 1, 3);
    }
    if (direct) {
        _tile_stored(4, c, ldcb);
        _tile_stored(5, c + 16, ldcb);
        _tile_stored(6, c + 16 * ldc, ldcb);
        _tile_stored(7, c + 16 * ldc + 16, ldcb);
        return;
    }
    float acc[MR * NR] __attribute__((aligned(64)));
    _tile_stored(4, acc, NR * 4);
    _tile_stored(5, acc + 16, NR * 4);
    _tile_stored(6, acc + 16 * NR, NR * 4);
    _tile_stored(7, acc + 16 * NR + 16, NR * 4);
    const __mmask16 m0 = row_mask_lo(n), m1 = row_mask_hi(n);
    for (int i = 0; i < m; i++)
        store_row_32(c + i * ldc, _mm512_load_ps(acc + i * NR), _mm512_load_ps(acc + i * NR + 16),
                     alpha, beta, m0, m1);
}

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* What `features` (nnf_cpu_has) does not cover: CPUID says AMX-TILE and AMX-BF16, the OS
 * saves the tile state (XCR0 bits 17 and 18), and (Linux) the process is granted the tile
 * data. */
static int tiles_ready(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!(d & (1u << 22)) || !(d & (1u << 24))) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return 0;
#if defined(__linux__)
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return 0;
#endif
}

const nnf_gemm_bf16_ukernel nnf_gemm_bf16_ukernel_amx = {
    /* measured (1024^3, 2048^3, 128x784x256, 128x3136x128; 2 threads, Xeon with AMX, one
     * uninterleaved run each): kc 2048 beat 1024 by 5-35% (one pass over C rather than two),
     * 512 and 256 did worse; mc 64 to 192 within the noise, 512 worse */
    .mr = MR, .nr = NR, .mc = 128, .kc = 2048, .nc = 4096,
    .fn = (void *)bgemm_ukr_32x32_amx,
    .name = "bgemm_ukr_32x32_amx",
    .pairs = 1,
    .pack = pack_b_pairs,
    .features = "avx512bf16,avx512bw", /* and AMX, which tiles_ready checks */
    .kstep = KSTEP,
    .pack_a = pack_a_blocks,
    .ready = tiles_ready,
    .begin = tiles_begin,
    .end = tiles_end,
};
#else
const nnf_gemm_bf16_ukernel nnf_gemm_bf16_ukernel_amx = {0};
#endif
