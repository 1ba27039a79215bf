/* bf16 GEMM with fp32 accumulation: C = alpha * bf16(op(A)) @ bf16(op(B)) + beta * C.
 *
 * A, B and C are float32, laid out as in gemm.h (row-major, leading dimensions, transpose
 * flags). Packing rounds each operand to bf16 once (round to nearest even; subnormals become
 * signed zeros and NaN stays NaN, as VCVTNE2PS2BF16 does), so every product is exact and only
 * the fp32 accumulation rounds. The epilogue (bias, activation, preact) is gemm.h's.
 *
 * Two kinds of kernel give the same rounding on every CPU:
 * - pairs: AVX512_BF16's vdpbf16ps, on operands packed as bf16 K-pairs (one 32-bit word holds
 *   op(A)(i, 2q) in its low half and op(A)(i, 2q + 1) in its high half; likewise B);
 * - emulated: the ISA path's fp32 micro-kernel on bf16-rounded values stored as fp32, each
 *   K-pair swapped in packing so that the fp32 FMAs add a pair's odd product first, as
 *   vdpbf16ps does. The products are exact, so the sums match vdpbf16ps bit for bit except
 *   where vdpbf16ps flushes a subnormal partial sum to zero, within one K block: the fp32
 *   kernels' blocks are shorter (256 generic, 512 AVX2), and a block's sum added to C's adds
 *   in another order than one running sum, so past them the bits differ (within the bound).
 * A third, AMX's tile kernel (below), rounds its sums otherwise; where it runs it serves every
 * bf16 product. */
#ifndef NNFAST_GEMM_BF16_H
#define NNFAST_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "gemm.h"

int nnf_gemm_bf16(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                  const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float beta,
                  float *c, ptrdiff_t ldc, const nnf_gemm_epilogue *ep);

/* x rounded to bf16, returned as float32 (the low 16 bits zero): the packing's rounding. */
static inline float nnf_bf16_round(float x) {
    union {
        float f;
        uint32_t u;
    } v = {.f = x};
    if ((v.u & 0x7f800000u) == 0) /* zero or subnormal: a zero of the same sign */
        v.u &= 0x80000000u;
    else if ((v.u & 0x7fffffffu) > 0x7f800000u) /* NaN: kept, made quiet */
        v.u = (v.u | 0x00400000u) & 0xffff0000u;
    else /* round to nearest even; the carry may reach the exponent (and Inf) */
        v.u = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) & 0xffff0000u;
    return v.f;
}

/* Packs one sliver of an operand for a kernel, converting as it goes: the sliver has TILE rows
 * (MR of A, or NR columns of op(B)), of which the first t are read, element (i, p) at
 * x[i*rs + p*ks] for p < kc; the rest, and the odd last pair's second half, are zeros.
 * Layout: pairs kernels get (kc + 1) / 2 groups of TILE 32-bit K-pairs; emulated kernels get
 * kc rounded up to even groups of TILE floats. */
typedef void (*nnf_bf16_pack_fn)(int TILE, int t, ptrdiff_t kc, const float *x, ptrdiff_t rs,
                                 ptrdiff_t ks, void *dst);

/* Pairs micro-kernel contract (the emulated kernels keep gemm.h's nnf_sgemm_ukr):
 *   C[0:m, 0:n] := alpha * Ap @ Bp + beta * C[0:m, 0:n]      (m <= MR, n <= NR)
 * over kq K-pairs: Ap holds kq groups of MR pairs, Bp kq groups of NR pairs. beta == 0
 * overwrites C; only the m x n corner is written. next_b (NULL for none) is next_bytes of
 * packed B that the caller multiplies next, which the kernel may bring into L2 meanwhile. */
typedef void (*nnf_bgemm_ukr)(ptrdiff_t kq, const uint32_t *a, const uint32_t *b, float *c,
                              ptrdiff_t ldc, float alpha, float beta, int m, int n,
                              const void *next_b, size_t next_bytes);

/* The same on A given as MR rows of pairs, lda words apart (pair q of row i at a[i*lda + q]):
 * rows m to MR - 1 may be read but are not used, so they must be readable. */
typedef void (*nnf_bgemm_ukr_rows)(ptrdiff_t kq, const uint32_t *a, ptrdiff_t lda,
                                   const uint32_t *b, float *c, ptrdiff_t ldc, float alpha,
                                   float beta, int m, int n);

/* Converts t rows of k float32 values (row i at x[i*rs], contiguous) into rows of (k + 1) / 2
 * pairs, ldd words apart (an odd last value pairs a zero), rounded as the packing rounds. */
typedef void (*nnf_bf16_pack_rows_fn)(ptrdiff_t t, ptrdiff_t k, const float *x, ptrdiff_t rs,
                                      uint32_t *dst, ptrdiff_t ldd);

typedef struct {
    int mr, nr;     /* register tile */
    int mc, kc, nc; /* A block (mc x kc) and B panel (kc x nc); kc counts K elements, even */
    void *fn;       /* nnf_bgemm_ukr when pairs, else nnf_sgemm_ukr (packed A) */
    const char *name;
    int pairs;      /* 1: bf16 K-pairs (vdpbf16ps); 0: emulated on fp32 storage */
    nnf_bf16_pack_fn pack;
    const char *features; /* CPU features it needs beyond its ISA path's (cpu.h spelling) */
    /* pairs kernels may also take A as rows of pairs: the micro-kernel (nnf_bgemm_ukr_rows)
     * and the conversion into that layout (NULL both when not) */
    void *fn_rows;
    nnf_bf16_pack_rows_fn pack_rows;
    /* Tile kernels (AMX) differ from the layouts above (nnf_gemm_bf16 and nnf_gemm_bf16_packed
     * drive them): kstep > 2 pads every packed K block with zeros to a multiple of kstep and gives
     * the micro-kernel the padded kq; pack_a packs A's slivers in the kernel's own layout (a piece
     * along K from a multiple of kstep p0 still goes p0 * MR * 2 bytes in) while pack packs B's as
     * above; ready checks, beyond `features`, what nnf_cpu_has cannot (CPUID bits it does not know,
     * the OS's permission), and begin and end bracket each thread's run of micro-kernel calls (tile
     * configuration and release). 0 and NULL for the others. */
    int kstep;
    nnf_bf16_pack_fn pack_a;
    int (*ready)(void);
    void (*begin)(void);
    void (*end)(void);
} nnf_gemm_bf16_ukernel;

/* Each ISA path has one native bf16 kernel in its row of the dispatch table (isa.h), defined by
 * the path's kernel files as nnf_gemm_bf16_ukernel_<path>: fn is NULL for a path without one
 * (or a build whose compiler could not make it), and then the path runs emulated. */

/* The AVX-512 path's tile kernel (gemm_bf16_kernel_amx.c; fn NULL when not built): AMX's
 * TDPBF16PS, 16 x 16 fp32 sums over 32 K per instruction. Its sums round otherwise than
 * vdpbf16ps's (70% of the outputs of a 32 x 64 x 32 product had the same bits; adding each
 * pair's two products one by one, in either order, does not give AMX's), so it is a choice
 * of its own: nnf_gemm_bf16 uses it on the AVX-512 path when the CPU and OS allow and
 * nnf_gemm_bf16_set_tiles has not turned it off. */
extern const nnf_gemm_bf16_ukernel nnf_gemm_bf16_ukernel_amx;

/* 1 for a tile kernel (AMX's): its own A layout (pack_a) and K padding (kstep) */
static inline int nnf_bf16_is_tile_kernel(const nnf_gemm_bf16_ukernel *uk) {
    return uk->kstep > 2;
}

/* The packing of A's slivers: a tile kernel's own layout, else B's */
static inline nnf_bf16_pack_fn nnf_bf16_pack_a(const nnf_gemm_bf16_ukernel *uk) {
    return uk->pack_a ? uk->pack_a : uk->pack;
}

/* k rounded up to what packing pads it to: whole K-pairs, or a tile kernel's kstep */
static inline ptrdiff_t nnf_bf16_padded_k(const nnf_gemm_bf16_ukernel *uk, ptrdiff_t k) {
    const ptrdiff_t step = nnf_bf16_is_tile_kernel(uk) ? uk->kstep : 2;
    return (k + step - 1) / step * step;
}

/* 1 if the tile kernel is built and this CPU and OS can run it (asks the OS once). */
int nnf_gemm_bf16_tiles_supported(void);

/* Turns the tile kernel on (the default) or off for nnf_gemm_bf16, for tests and benchmarks:
 * NNF_OK, or NNF_EISA when asked for on a machine that cannot run it. */
int nnf_gemm_bf16_set_tiles(int on);
int nnf_gemm_bf16_tiles_on(void); /* 1 if supported and not turned off */

/* The kernel nnf_gemm_bf16 uses now: the tile kernel when it is on, supported and the active
 * path is AVX-512, else the path's native kernel when it has one and the CPU has its extra
 * features, else the path's widest fp32 kernel, emulated. */
void nnf_gemm_bf16_gemm_ukernel(nnf_gemm_bf16_ukernel *uk);

/* Packed operands, for a caller that converts once what it multiplies often, or that packs
 * while the values are still in cache (Winograd's transforms): op(A) as ceil(m / MR) slivers
 * and op(B) as ceil(n / NR) slivers, each packed k deep by uk->pack as the sliver of MR rows of
 * op(A) (NR columns of op(B)) from its first row (column), nnf_bf16_sliver_bytes(uk, MR, k)
 * (NR) bytes apart. A sliver may be packed in pieces along K: the piece from an even p0 goes
 * p0 * TILE * (uk->pairs ? 2 : 4) bytes into it. */
static inline size_t nnf_bf16_sliver_bytes(const nnf_gemm_bf16_ukernel *uk, int tile,
                                           ptrdiff_t k) {
    return (size_t)tile * (size_t)nnf_bf16_padded_k(uk, k) * (uk->pairs ? 2u : 4u);
}

/* The depth of nnf_gemm_bf16's K blocks for a K of k: near-equal, a multiple of 2 (or of a
 * tile kernel's kstep), at most uk->kc. */
ptrdiff_t nnf_gemm_bf16_kc(const nnf_gemm_bf16_ukernel *uk, ptrdiff_t k);

/* C (m x n, ldc) = Ap @ Bp + beta * C on the calling thread, for operands packed as above for
 * uk (nnf_gemm_bf16_gemm_ukernel's; a tile kernel's A by its pack_a, each K block padded to its
 * kstep); k >= 1, beta == 0 overwrites C. A tile kernel's configuration is the caller's to
 * load (uk->begin, once for a run of calls on its thread) and release (uk->end) around it:
 * loading it for each of a Winograd group's 16 to 32 products was 1.5% of cnn_small's bf16 step.
 * With lda > 0 (a kernel with fn_rows only), Ap is instead op(A)'s m rows as rows of pairs
 * (uk->pack_rows'), lda words apart, with MR - 1 rows' worth of readable memory after the
 * last. The same products, summed in the same order, as nnf_gemm_bf16 with alpha 1 and no
 * epilogue on the operands they were packed from, so the results are the same to the bit.
 * NNF_EINVAL for a bad size or pointer. */
int nnf_gemm_bf16_packed(const nnf_gemm_bf16_ukernel *uk, ptrdiff_t m, ptrdiff_t n,
                         ptrdiff_t k, const void *ap, ptrdiff_t lda, const void *bp, float beta,
                         float *c, ptrdiff_t ldc);

#endif
