/* GEMM entry points: argument checks, variant and kernel choice (see gemm.h). The drivers are
 * in gemm_driver.inc, instantiated here for float32 and float64. */
#include "gemm.h"

#include <string.h>

#include "dtype.h"
#include "eltwise.h"
#include "isa.h"
#include "parallel.h"

const nnf_gemm_ukernels *nnf_gemm_active_ukernels(void) { return nnf_isa_current()->gemm; }

int nnf_gemm_set_blocking(int dtype_index, int mc, int kc, int nc) {
    if (dtype_index < 0 || dtype_index > 1) return NNF_EINVAL;
    nnf_gemm_ukernel *uks = nnf_isa_current()->gemm->ukr[dtype_index];
    for (int i = 0; i < NNF_GEMM_MAX_UKR && uks[i].fn; i++)
        if (mc < uks[i].mr || mc % uks[i].mr || kc < 1 || nc < uks[i].nr || nc % uks[i].nr)
            return NNF_EINVAL;
    for (int i = 0; i < NNF_GEMM_MAX_UKR && uks[i].fn; i++) {
        uks[i].mc = mc;
        uks[i].kc = kc;
        uks[i].nc = nc;
    }
    return NNF_OK;
}

/* Per-core caches assumed by the small-product driver (Zen 4: 32 KiB L1d, 1 MiB L2; recent
 * Intel cores have at least as much). */
#define NNF_L1_BYTES (32 << 10)
#define NNF_L2_BYTES (1 << 20)
/* The least depth per thread worth a K split with its reduction of partial products. */
#define NNF_SPLIT_K_MIN_DEPTH 1024

int nnf_gemm_check_args(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                        ptrdiff_t lda, ptrdiff_t ldb, ptrdiff_t ldc, const nnf_gemm_epilogue *ep) {
    if (m < 0 || n < 0 || k < 0) return NNF_EINVAL;
    const ptrdiff_t a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
    if (lda < (a_cols > 1 ? a_cols : 1) || ldb < (b_cols > 1 ? b_cols : 1) ||
        ldc < (n > 1 ? n : 1))
        return NNF_EINVAL;
    if (ep && (ep->act < 0 || ep->act >= NNF_ACT_COUNT || (ep->preact && ep->ld_preact < n)))
        return NNF_EINVAL;
    return NNF_OK;
}

/* The packed variant reads A in place (gemm_small) unless A blocks are reused across enough
 * column slivers and rows to repay packing them. */
static int forced_driver = -1;

void nnf_gemm_force_driver(int driver) { forced_driver = driver < 0 ? -1 : driver > 0; }

/* Packing A pays once a block of it is reused across many column slivers and the product is
 * large. Measured on Zen 4: float32 from about 800^3 on (below, reading A in place is faster,
 * by 1.5x at the MLP shapes); float64, whose K blocks in L1 are half as deep, from about 400^3. */
static int use_goto(const nnf_gemm_ukernel *uk, size_t elem_size, ptrdiff_t m, ptrdiff_t n,
                    ptrdiff_t k) {
    if (forced_driver >= 0) return forced_driver;
    const double min_work = elem_size == 4 ? 5.0e8 : 6.0e7;
    return (double)m * (double)n * (double)k >= min_work && n >= 8 * uk->nr && m >= 8 * uk->mr;
}

const nnf_gemm_ukernel *nnf_gemm_kernel_for(const nnf_gemm_ukernel *uks, ptrdiff_t n) {
    const nnf_gemm_ukernel *best = &uks[0];
    for (int i = 1; i < NNF_GEMM_MAX_UKR && uks[i].fn; i++)
        if (uks[i].nr >= n && uks[i].nr < best->nr) best = &uks[i];
    return best;
}

#define T float
#define TS s
#include "gemm_driver.inc"

#define T double
#define TS d
#include "gemm_driver.inc"

void nnf_sgemm_pack_b(const nnf_gemm_ukernel *uk, ptrdiff_t kc, int nr, const float *b,
                      ptrdiff_t rs_b, ptrdiff_t cs_b, float *bp) {
    pack_b_sliver_s(uk, uk->nr, kc, nr, b, rs_b, cs_b, bp);
}

ptrdiff_t nnf_sgemm_small_depth(const nnf_gemm_ukernel *uk, ptrdiff_t k) {
    return depth_block_s(k, small_kc_cap_s(uk));
}

void nnf_gemm_epilogue_s(const nnf_gemm_epilogue *ep, ptrdiff_t i, ptrdiff_t j, ptrdiff_t rows,
                         ptrdiff_t cols, float *c, ptrdiff_t ldc) {
    epilogue_s(ep, i, j, rows, cols, c, ldc);
}

/* One entry point per dtype: map transposes to strides, handle the trivial cases, dispatch. */
#define DEFINE_GEMM(T, TS, PFX, DTYPE_INDEX)                                                  \
    int nnf_##PFX##gemm_ep(nnf_gemm_variant variant, int trans_a, int trans_b, ptrdiff_t m,     \
                           ptrdiff_t n, ptrdiff_t k, T alpha, const T *a, ptrdiff_t lda,        \
                           const T *b, ptrdiff_t ldb, T beta, T *c, ptrdiff_t ldc,              \
                           const nnf_gemm_epilogue *ep) {                                       \
        int status = nnf_gemm_check_args(trans_a, trans_b, m, n, k, lda, ldb, ldc, ep);         \
        if (status != NNF_OK) return status;                                                    \
        if (variant < NNF_GEMM_NAIVE || variant > NNF_GEMM_PACKED) return NNF_EINVAL;           \
        if (m == 0 || n == 0) return NNF_OK;                                                    \
        const gemm_args_##TS g = {m, n, k, alpha, beta, a, trans_a ? 1 : lda,                 \
                                    trans_a ? lda : 1, b, trans_b ? 1 : ldb,                    \
                                    trans_b ? ldb : 1, c, ldc, ep};                             \
        const int nt = nnf_threads_for((double)m * (double)n * (double)k);                      \
        if (k == 0 || alpha == (T)0) {                                                          \
            scale_c_##TS(m, n, beta, c, ldc);                                                 \
        } else if (variant == NNF_GEMM_NAIVE) {                                                 \
            gemm_naive_##TS(m, n, k, alpha, a, g.rs_a, g.cs_a, b, g.rs_b, g.cs_b, beta, c,    \
                              ldc);                                                             \
        } else if (variant == NNF_GEMM_BLOCKED) {                                               \
            gemm_blocked_##TS(&g, nt);                                                        \
        } else { /* the packed drivers apply the epilogue tile by tile */                       \
            const nnf_gemm_ukernel *uks = nnf_gemm_active_ukernels()->ukr[DTYPE_INDEX];         \
            if (use_goto(&uks[0], sizeof(T), m, n, k)) return gemm_goto_##TS(&uks[0], &g, nt); \
            return gemm_small_##TS(nnf_gemm_kernel_for(uks, n), &g, nt);                      \
        }                                                                                       \
        /* the reference variants apply it afterwards, over the whole of C */                   \
        epilogue_##TS(ep, 0, 0, m, n, c, ldc);                                                \
        return NNF_OK;                                                                          \
    }                                                                                           \
    int nnf_##PFX##gemm(nnf_gemm_variant variant, int trans_a, int trans_b, ptrdiff_t m,        \
                        ptrdiff_t n, ptrdiff_t k, T alpha, const T *a, ptrdiff_t lda,           \
                        const T *b, ptrdiff_t ldb, T beta, T *c, ptrdiff_t ldc) {               \
        return nnf_##PFX##gemm_ep(variant, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,    \
                                  beta, c, ldc, NULL);                                          \
    }

DEFINE_GEMM(float, s, s, 0)
DEFINE_GEMM(double, d, d, 1)
