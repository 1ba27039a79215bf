/* bf16 GEMM driver (see gemm_bf16.h): the Goto/BLIS loops JC (nc columns), PC (kc depth: pack
 * and convert the B panel, shared by all workers), IC (mc rows: each chunk packs and converts
 * its own A block), JR (NR), IR (MR: the micro-kernel). Both operands are always packed, since
 * packing is where they are converted. Emulated kernels and the scalar fallback of the pairs
 * packer share the rounding of nnf_bf16_round. */
#include "gemm_bf16.h"

#include <string.h>

#include "eltwise.h"
#include "isa.h"
#include "parallel.h"

/* The emulated kernels' packing: bf16-rounded values in fp32, each K-pair swapped. */
static void pack_rounded(int TILE, int t, ptrdiff_t kc, const float *x, ptrdiff_t rs,
                         ptrdiff_t ks, void *dst_) {
    float *dst = (float *)dst_;
    const ptrdiff_t kp = (kc + 1) / 2 * 2;
    for (ptrdiff_t p = 0; p < kp; p++) {
        const ptrdiff_t src = p ^ 1; /* vdpbf16ps adds a pair's odd product first */
        float *d = dst + p * TILE;
        int i = 0;
        if (src < kc) {
            const float *xp = x + src * ks;
            if (rs == 1)
                for (; i < t; i++) d[i] = nnf_bf16_round(xp[i]);
            else
                for (; i < t; i++) d[i] = nnf_bf16_round(xp[i * rs]);
        }
        for (; i < TILE; i++) d[i] = 0;
    }
}

void nnf_gemm_bf16_active_ukernel(nnf_gemm_bf16_ukernel *uk) {
    const nnf_isa_desc *d = nnf_isa_current();
    if (d->bf16->fn && nnf_cpu_has(d->bf16->features)) {
        *uk = *d->bf16;
        return;
    }
    const nnf_gemm_ukernel *f = &d->gemm->ukr[0][0];
    uk->mr = f->mr;
    uk->nr = f->nr;
    uk->mc = f->mc;
    uk->kc = f->kc / 2 * 2;
    uk->nc = f->nc;
    uk->fn = f->fn;
    uk->name = f->name;
    uk->pairs = 0;
    uk->pack = pack_rounded;
    uk->features = "";
}

/* One bf16 GEMM in flight: the problem, the current (jc, pc) block and the packed buffers.
 * Chunks of a job for the scheduling layer (parallel.h). */
typedef struct {
    const nnf_gemm_bf16_ukernel *uk;
    ptrdiff_t m, n, k;
    float alpha, beta;
    const float *a;
    ptrdiff_t rs_a, cs_a;
    const float *b;
    ptrdiff_t rs_b, cs_b;
    float *c;
    ptrdiff_t ldc;
    const nnf_gemm_epilogue *ep;
    size_t esz;         /* bytes per packed element: 2 (pairs) or 4 (emulated) */
    ptrdiff_t kc_max;   /* K-block depth, even */
    ptrdiff_t mc_blk;   /* rows per IC block: a multiple of MR */
    char *bp;           /* the packed B panel */
    char *ap;           /* one packed A block per worker */
    size_t a_bytes;     /* bytes per worker's A block */
    ptrdiff_t jc, nc, pc, kc; /* the current block */
} bgemm_job;

/* Packed bytes of a TILE-wide sliver kc deep (kc rounded up to a whole pair). */
static size_t sliver_bytes(const bgemm_job *j, int tile, ptrdiff_t kc) {
    return (size_t)tile * (size_t)((kc + 1) / 2 * 2) * j->esz;
}

/* Chunk s: pack and convert the s-th NR-column sliver of the current B panel. */
static void pack_b_chunk(void *p, ptrdiff_t s, int worker) {
    const bgemm_job *j = (const bgemm_job *)p;
    const int NR = j->uk->nr;
    const ptrdiff_t col = j->jc + s * NR;
    const int nr = j->n - col < NR ? (int)(j->n - col) : NR;
    (void)worker;
    /* the sliver's rows are op(B)'s columns: op(B)(p, col + t) = b[p*rs_b + (col + t)*cs_b] */
    j->uk->pack(NR, nr, j->kc, j->b + j->pc * j->rs_b + col * j->cs_b, j->cs_b, j->rs_b,
                j->bp + (size_t)s * sliver_bytes(j, NR, j->kc));
}

/* Chunk ib: pack and convert IC block ib of A, then run the JR and IR loops over it. */
static void compute_chunk(void *p, ptrdiff_t ib, int worker) {
    const bgemm_job *j = (const bgemm_job *)p;
    const nnf_gemm_bf16_ukernel *uk = j->uk;
    const int MR = uk->mr, NR = uk->nr;
    const ptrdiff_t ic = ib * j->mc_blk;
    const ptrdiff_t mc = j->m - ic < j->mc_blk ? j->m - ic : j->mc_blk;
    const ptrdiff_t kc = j->kc;
    const size_t a_sl = sliver_bytes(j, MR, kc), b_sl = sliver_bytes(j, NR, kc);
    char *ap = j->ap + (size_t)worker * j->a_bytes;
    for (ptrdiff_t ir = 0; ir < mc; ir += MR) {
        const int mr = mc - ir < MR ? (int)(mc - ir) : MR;
        uk->pack(MR, mr, kc, j->a + (ic + ir) * j->rs_a + j->pc * j->cs_a, j->rs_a, j->cs_a,
                 ap + (size_t)(ir / MR) * a_sl);
    }
    const float beta = j->pc == 0 ? j->beta : 1.0f;
    const int last = j->pc + kc == j->k;
    const ptrdiff_t kq = (kc + 1) / 2;
    for (ptrdiff_t jr = 0; jr < j->nc; jr += NR) {
        const int nr = j->nc - jr < NR ? (int)(j->nc - jr) : NR;
        const char *bs = j->bp + (size_t)(jr / NR) * b_sl;
        for (ptrdiff_t ir = 0; ir < mc; ir += MR) {
            const int mr = mc - ir < MR ? (int)(mc - ir) : MR;
            const char *as = ap + (size_t)(ir / MR) * a_sl;
            float *cij = j->c + (ic + ir) * j->ldc + j->jc + jr;
            if (uk->pairs)
                ((nnf_bgemm_ukr)uk->fn)(kq, (const uint32_t *)as, (const uint32_t *)bs, cij,
                                        j->ldc, j->alpha, beta, mr, nr);
            else
                ((nnf_sgemm_ukr)uk->fn)(2 * kq, (const float *)as, 1, MR, (const float *)bs, NR,
                                        cij, j->ldc, j->alpha, beta, mr, nr);
            if (last && j->ep) {
                const nnf_gemm_epilogue *ep = j->ep;
                const ptrdiff_t i0 = ic + ir, j0 = j->jc + jr;
                nnf_bias_act_rows_s(ep->act, (float)ep->param, mr, nr, cij, j->ldc,
                                    ep->bias ? (const float *)ep->bias + j0 : NULL,
                                    ep->preact ? (float *)ep->preact + i0 * ep->ld_preact + j0
                                               : NULL,
                                    ep->ld_preact);
            }
        }
    }
}

int nnf_gemm_bf16(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                  const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float beta,
                  float *c, ptrdiff_t ldc, const nnf_gemm_epilogue *ep) {
    int status = nnf_gemm_check_args(trans_a, trans_b, m, n, k, lda, ldb, ldc, ep);
    if (status != NNF_OK) return status;
    if (m == 0 || n == 0 || k == 0 || alpha == 0.0f) /* no product to round: fp32's answer */
        return nnf_sgemm_ep(NNF_GEMM_PACKED, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
                            beta, c, ldc, ep);
    nnf_gemm_bf16_ukernel uk;
    nnf_gemm_bf16_active_ukernel(&uk);
    const int MR = uk.mr, NR = uk.nr;
    const int nt = nnf_threads_for((double)m * (double)n * (double)k);
    bgemm_job j = {&uk, m, n, k, alpha, beta, a, trans_a ? 1 : lda, trans_a ? lda : 1, b,
                   trans_b ? 1 : ldb, trans_b ? ldb : 1, c, ldc, ep, uk.pairs ? 2 : 4};
    /* K blocks of near-equal depth (a short last block would cost a pass over C for little) */
    const ptrdiff_t k_blocks = (k + uk.kc - 1) / uk.kc;
    j.kc_max = ((k + k_blocks - 1) / k_blocks + 1) / 2 * 2;
    /* rows per IC block: at most MC, and few enough that every worker gets a block */
    ptrdiff_t mc_blk = (m + nt - 1) / nt;
    mc_blk = (mc_blk + MR - 1) / MR * MR;
    j.mc_blk = mc_blk < uk.mc ? mc_blk : uk.mc;
    const ptrdiff_t n_mblocks = (m + j.mc_blk - 1) / j.mc_blk;
    const ptrdiff_t nc_max = n < uk.nc ? n : uk.nc;
    const size_t b_bytes = (size_t)((nc_max + NR - 1) / NR) * sliver_bytes(&j, NR, j.kc_max);
    j.a_bytes = (size_t)(j.mc_blk / MR) * sliver_bytes(&j, MR, j.kc_max);
    j.bp = (char *)nnf_aligned_alloc(b_bytes + (size_t)nt * j.a_bytes);
    if (!j.bp) return NNF_ENOMEM;
    j.ap = j.bp + b_bytes;
    for (j.jc = 0; j.jc < n; j.jc += uk.nc) {
        j.nc = n - j.jc < uk.nc ? n - j.jc : uk.nc;
        for (j.pc = 0; j.pc < k; j.pc += j.kc_max) {
            j.kc = k - j.pc < j.kc_max ? k - j.pc : j.kc_max;
            nnf_parallel_for((j.nc + NR - 1) / NR, nt, pack_b_chunk, &j);
            nnf_parallel_for(n_mblocks, nt, compute_chunk, &j);
        }
    }
    nnf_aligned_free(j.bp);
    return NNF_OK;
}
