/* GEMM: C = alpha * op(A) @ op(B) + beta * C, float32 and float64.
 *
 * Row-major storage with leading dimensions: op(A) is M x K, op(B) is K x N, C is M x N.
 * trans_a = 0: A[i*lda + p];  trans_a = 1: A is stored K x M, A[p*lda + i]  (likewise B).
 * beta == 0 overwrites C (NaN in C never leaks through); k == 0 gives C = beta * C.
 * Every entry point returns NNF_OK or a negative status (cpu.h); nothing prints or aborts. */
#ifndef NNFAST_GEMM_H
#define NNFAST_GEMM_H

#include <stddef.h>

#include "cpu.h"

typedef enum {
    NNF_GEMM_NAIVE = 0,   /* triple loop: the reference */
    NNF_GEMM_BLOCKED = 1, /* cache blocking + OpenMP, compiler-vectorised inner loop */
    NNF_GEMM_PACKED = 2   /* Goto/BLIS: packed panels and an ISA-specific register micro-kernel */
} nnf_gemm_variant;

/* Optional epilogue, applied to each tile of C as it is finished, while it is in cache:
 *   preact = alpha * op(A) @ op(B) + beta * C + bias     (if preact != NULL, ld_preact)
 *   C      = act(alpha * op(A) @ op(B) + beta * C + bias)
 * bias holds N entries of the GEMM's dtype (one per column of C) or is NULL; act is an nnf_act
 * from eltwise.h (NNF_ACT_IDENTITY for none) and param its parameter (leaky slope, ELU alpha,
 * softplus beta). Pass NULL for a plain GEMM. */
typedef struct {
    const void *bias;
    int act;
    double param;
    void *preact;
    ptrdiff_t ld_preact;
} nnf_gemm_epilogue;

int nnf_sgemm_ep(nnf_gemm_variant variant, int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n,
                 ptrdiff_t k, float alpha, const float *a, ptrdiff_t lda, const float *b,
                 ptrdiff_t ldb, float beta, float *c, ptrdiff_t ldc, const nnf_gemm_epilogue *ep);
int nnf_dgemm_ep(nnf_gemm_variant variant, int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n,
                 ptrdiff_t k, double alpha, const double *a, ptrdiff_t lda, const double *b,
                 ptrdiff_t ldb, double beta, double *c, ptrdiff_t ldc,
                 const nnf_gemm_epilogue *ep);

/* The epilogue on rows x cols of a float32 C starting at (i, j), as the drivers apply it to
 * each finished tile; nothing for ep NULL (the bf16 driver shares it). */
void nnf_gemm_epilogue_s(const nnf_gemm_epilogue *ep, ptrdiff_t i, ptrdiff_t j, ptrdiff_t rows,
                         ptrdiff_t cols, float *c, ptrdiff_t ldc);

/* NNF_OK if the sizes, leading dimensions and epilogue (may be NULL) describe a valid GEMM,
 * else NNF_EINVAL: the checks every GEMM entry point makes first. */
int nnf_gemm_check_args(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                        ptrdiff_t lda, ptrdiff_t ldb, ptrdiff_t ldc, const nnf_gemm_epilogue *ep);

/* Plain GEMM: nnf_?gemm_ep with no epilogue. */
int nnf_sgemm(nnf_gemm_variant variant, int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n,
              ptrdiff_t k, float alpha, const float *a, ptrdiff_t lda, const float *b,
              ptrdiff_t ldb, float beta, float *c, ptrdiff_t ldc);
int nnf_dgemm(nnf_gemm_variant variant, int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n,
              ptrdiff_t k, double alpha, const double *a, ptrdiff_t lda, const double *b,
              ptrdiff_t ldb, double beta, double *c, ptrdiff_t ldc);

/* Micro-kernel contract, written once for every ISA (gemm_kernel_<isa>.c):
 *   C[0:m, 0:n] := alpha * Ap @ Bp + beta * C[0:m, 0:n]      (m <= MR, n <= NR)
 * Ap is MR x k with element (i, p) at a[i*rs_a + p*cs_a]: packed (rs_a = 1, cs_a = MR) or
 * read in place. Bp is k x NR with element (p, j) at b[p*rs_b + j]. All MR rows of Ap and NR
 * columns of Bp must be readable (callers pad edges); only the m x n corner of C is written. */
typedef void (*nnf_sgemm_ukr)(ptrdiff_t k, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
                              const float *b, ptrdiff_t rs_b, float *c, ptrdiff_t ldc,
                              float alpha, float beta, int m, int n);
typedef void (*nnf_dgemm_ukr)(ptrdiff_t k, const double *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
                              const double *b, ptrdiff_t rs_b, double *c, ptrdiff_t ldc,
                              double alpha, double beta, int m, int n);

/* Packing a transposed B (B^T row-major, leading dimension ldb) for the micro-kernel:
 *   bp[p*NR + j] = b[j*ldb + p] for p < kc, j < nr;  bp[p*NR + j] = 0 for nr <= j < NR. */
typedef void (*nnf_spack_bt)(ptrdiff_t kc, int nr, const float *b, ptrdiff_t ldb, float *bp,
                             int NR);
typedef void (*nnf_dpack_bt)(ptrdiff_t kc, int nr, const double *b, ptrdiff_t ldb, double *bp,
                             int NR);

/* One micro-kernel and the cache blocking it was tuned with. */
typedef struct {
    int mr, nr;     /* register tile */
    int mc, kc, nc; /* packed A block (mc x kc, L2) and B panel (kc x nc, L3) */
    void *fn;       /* nnf_sgemm_ukr or nnf_dgemm_ukr */
    const char *name;
    void *pack_bt;  /* nnf_?pack_bt with SIMD transposes, or NULL for the scalar copy */
} nnf_gemm_ukernel;

/* A registry entry for micro-kernel `func` (named after it), register tile MR x NR, blocking
 * MC, KC, NC and B^T packing PACK_BT (or NULL). */
#define NNF_GEMM_UKERNEL(func, MR, NR, MC, KC, NC, PACK_BT)                                   \
    {.mr = MR, .nr = NR, .mc = MC, .kc = KC, .nc = NC, .fn = (void *)func, .name = #func,    \
     .pack_bt = (void *)PACK_BT}

/* Per-ISA registry (nnf_gemm_ukernels_<isa>; isa.h): for each dtype (index 0 = float32,
 * 1 = float64) up to NNF_GEMM_MAX_UKR kernels, widest first. The first serves every product;
 * a narrower one (fn != NULL) takes products whose N fits its NR, since a wide tile on a
 * skinny N mostly multiplies padding. */
#define NNF_GEMM_MAX_UKR 3
typedef struct {
    nnf_gemm_ukernel ukr[2][NNF_GEMM_MAX_UKR];
} nnf_gemm_ukernels;


/* The kernels the active ISA uses (what nnfast.info() reports). */
const nnf_gemm_ukernels *nnf_gemm_active_ukernels(void);

/* Of one dtype's registry row uks, the kernel the packed GEMM multiplies a product of N = n
 * with when it does not pack A: the narrowest whose NR covers n, else the widest. */
const nnf_gemm_ukernel *nnf_gemm_kernel_for(const nnf_gemm_ukernel *uks, ptrdiff_t n);

/* One kc x nr sliver (nr <= uk->nr) of a float32 op(B), element (p, j) at b[p*rs_b + j*cs_b],
 * packed for uk as the GEMMs pack it: kc rows of uk->nr values, zero past nr. */
void nnf_sgemm_pack_b(const nnf_gemm_ukernel *uk, ptrdiff_t kc, int nr, const float *b,
                      ptrdiff_t rs_b, ptrdiff_t cs_b, float *bp);

/* The depth of the K blocks into which that GEMM cuts a float32 product of depth k for kernel
 * uk when it does not split K between threads (the last block may be shorter): each block's
 * sums are added to C, so a caller that calls uk on the same blocks, beta 1 after the first,
 * gets the same bits. */
ptrdiff_t nnf_sgemm_small_depth(const nnf_gemm_ukernel *uk, ptrdiff_t k);

/* Tuning hook for benchmarks: change the active ISA's cache blocking for one dtype's kernels.
 * mc must be a multiple of MR; NNF_EINVAL otherwise. Not thread-safe against running GEMMs. */
int nnf_gemm_set_blocking(int dtype_index, int mc, int kc, int nc);

/* Tuning hook for benchmarks: which driver the packed variant uses.
 * -1 = by shape (default), 0 = small products (A read in place), 1 = Goto (A and B packed). */
void nnf_gemm_force_driver(int driver);

#endif
