/* bf16 GEMM driver (see gemm_bf16.h): the Goto/BLIS loops JC (nc columns), PC (kc depth), then
 * one job of compute chunks, each a block of A's rows by a block of B's columns, packing and
 * converting its own A rows mc at a time, JR (NR), IR (MR: the micro-kernel). Both operands are
 * always packed, since packing is where they are converted. B is packed either once per (JC,
 * PC) block in a pass before the chunks (shared by all; the chunks then split the rows into a
 * multiple of the threads, of equal sizes) or, for small products, by each chunk itself (the
 * chunks then split the larger operand between the threads and each packs the smaller one
 * whole: no pass, no barrier and no packed line that another core wrote).
 * Emulated kernels and the scalar fallback of the pairs packer share the rounding of
 * nnf_bf16_round. */
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

/* The active ISA path's own kernel (nnf_gemm_bf16_gemm_ukernel without the tile kernel) */
static void path_ukernel(nnf_gemm_bf16_ukernel *uk) {
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
    uk->fn_rows = NULL;
    uk->pack_rows = NULL;
    uk->kstep = 0;
    uk->pack_a = NULL;
    uk->ready = NULL;
    uk->begin = uk->end = NULL;
}

/* Tile kernel on or off for nnf_gemm_bf16; racing first calls compute the same value. */
static int tiles_wanted = 1;
static volatile int tiles_ok = -1; /* -1: not asked yet */

int nnf_gemm_bf16_tiles_supported(void) {
    if (tiles_ok < 0) {
        const nnf_gemm_bf16_ukernel *t = &nnf_gemm_bf16_ukernel_amx;
        tiles_ok = t->fn != NULL && nnf_isa_supported(NNF_ISA_AVX512) &&
                   nnf_cpu_has(t->features) && t->ready && t->ready();
    }
    return tiles_ok;
}

int nnf_gemm_bf16_set_tiles(int on) {
    if (on && !nnf_gemm_bf16_tiles_supported()) return NNF_EISA;
    tiles_wanted = on != 0;
    return NNF_OK;
}

int nnf_gemm_bf16_tiles_on(void) { return tiles_wanted && nnf_gemm_bf16_tiles_supported(); }

void nnf_gemm_bf16_gemm_ukernel(nnf_gemm_bf16_ukernel *uk) {
    if (nnf_isa_active() == NNF_ISA_AVX512 && nnf_gemm_bf16_tiles_on())
        *uk = nnf_gemm_bf16_ukernel_amx;
    else
        path_ukernel(uk);
}

ptrdiff_t nnf_gemm_bf16_kc(const nnf_gemm_bf16_ukernel *uk, ptrdiff_t k) {
    /* K blocks of near-equal depth (a short last block would cost a pass over C for little),
     * whole kstep deep but the last, so that only the last is padded */
    const ptrdiff_t k_blocks = (k + uk->kc - 1) / uk->kc;
    return nnf_bf16_padded_k(uk, (k + k_blocks - 1) / k_blocks);
}

/* A product is small when a chunk's packing (the smaller operand whole and its share of the
 * other, for one K block) fits this part of L2: each chunk then packs all it multiplies, with no
 * packing pass before, and no packed data moves between cores (on a machine whose two cores
 * sit on different CCDs, packed lines written by one core and read by the other cost more than
 * converting the smaller operand twice). */
#define PRIVATE_BYTES (512 * 1024)

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
    ptrdiff_t m_sl;     /* MR-row slivers of A */
    ptrdiff_t mc_sl;    /* slivers of A packed at a time: MC rows */
    ptrdiff_t row_blocks, col_blocks; /* compute chunks: row_blocks x col_blocks of slivers */
    ptrdiff_t taper_body; /* > 0: row blocks tapered (row_block_range), body blocks per half */
    ptrdiff_t b_chunks; /* chunks of the packing pass of a shared panel */
    ptrdiff_t sweep;    /* rows of B per piece of that pass (B along rows) */
    int b_private;      /* 1: each chunk packs its B slivers too (small products) */
    char *bp;           /* the B panel all chunks share (b_private = 0) */
    char *scratch;      /* per worker: its A block (then its B slivers when b_private) */
    size_t a_bytes, worker_bytes; /* of a worker's A block, and of its whole scratch */
    ptrdiff_t lead;     /* > 0: column sliver 0 is this wide, the others' C rows on lines */
    ptrdiff_t jc, nc, pc, kc; /* the current block */
} bgemm_job;

/* A tile kernel writes C 64 bytes a row; where C's rows do not start on a cache line (numpy
 * gives 16-byte alignment), each tile row straddles two lines, and each line at a sliver's
 * edge is written by two calls: a 2048^3 product into a C 16 or 48 bytes past a line ran
 * 0.92-0.93x as fast on one thread, 0.96-0.98x on two, as into one on a line (Xeon with AMX,
 * medians of 15 interleaved calls). A narrow first sliver (the columns up to the first line)
 * puts every other sliver's rows on lines, for one more sliver's products (NR / n of them).
 * Into a C 16 bytes past a line, against the slivers as they were (one process per build, 12
 * interleaved rounds; the same C on a line read 1.02, the runs' drift): 2048^3 1.058 on two
 * threads and 1.076 on one, 1024^3 1.027 (16 bytes) and 1.021 (48), no gain there. */
#define LEAD_MIN_N 2048

/* The number of column slivers of the current block */
static ptrdiff_t block_slivers(const bgemm_job *j) {
    const int NR = j->uk->nr;
    return j->lead ? 1 + (j->nc - j->lead + NR - 1) / NR : (j->nc + NR - 1) / NR;
}

/* Column sliver t of the current block: its first column of C and its width */
static void sliver_cols(const bgemm_job *j, ptrdiff_t t, ptrdiff_t *col, int *nr) {
    const int NR = j->uk->nr;
    ptrdiff_t c = j->jc + t * NR, w = NR;
    if (j->lead) /* one block (jc 0): lead columns, then whole slivers */
        c = t ? j->lead + (t - 1) * NR : 0, w = t ? NR : j->lead;
    *col = c;
    *nr = (int)(j->n - c < w ? j->n - c : w);
}

/* Packs and converts A's MR-row sliver s of the current K block to dst. */
static void pack_a_sliver(const bgemm_job *j, ptrdiff_t s, char *dst) {
    const int MR = j->uk->mr;
    const ptrdiff_t row = s * MR;
    const int mr = j->m - row < MR ? (int)(j->m - row) : MR;
    nnf_bf16_pack_a(j->uk)(MR, mr, j->kc, j->a + row * j->rs_a + j->pc * j->cs_a, j->rs_a,
                           j->cs_a, dst);
}

/* Packs and converts rows [p0, p0 + kp) (p0 even) of the current B panel's NR-column sliver t
 * into that sliver at dst. */
static void pack_b_rows(const bgemm_job *j, ptrdiff_t t, ptrdiff_t p0, ptrdiff_t kp, char *dst) {
    const int NR = j->uk->nr;
    ptrdiff_t col;
    int nr;
    sliver_cols(j, t, &col, &nr);
    /* the sliver's rows are op(B)'s columns: op(B)(p, col + i) = b[p*rs_b + (col + i)*cs_b] */
    j->uk->pack(NR, nr, kp, j->b + (j->pc + p0) * j->rs_b + col * j->cs_b, j->cs_b, j->rs_b,
                dst + (size_t)p0 * (size_t)NR * j->esz);
}

/* When B's rows run along memory (B not transposed), B is packed SWEEP_ROWS whole rows at a
 * time across every sliver, the shared panel's pass and a chunk's private slivers alike: B
 * streams in from memory in order. Sliver by sliver, each row gives a sliver only its NR
 * values (one or two cache lines of a page of their own at N = 1024, and no pattern for the
 * hardware prefetcher to follow); measured on Zen 4 (1024^3, 2 threads, both orders in the
 * same process, B from DRAM), the pass took 0.45-0.9x as long this way, and a chunk's four
 * private slivers of 128x784x256 on AMX 0.8x (11.8-12.7 us against 14.7-15.2). Even, so that
 * every piece starts on a whole K-pair. */
#define SWEEP_ROWS 16 /* or a tile kernel's kstep, when larger: pieces pad only at the end */
#define SWEEP_CHUNKS_PER_THREAD 8

/* Rows [k0, k1) (k0 a multiple of j->sweep) of the current B panel's slivers [t0, t1), each
 * to its place in the slivers at dst: whole rows at a time when B runs along rows, else
 * sliver by sliver. */
static void pack_b_block(const bgemm_job *j, ptrdiff_t t0, ptrdiff_t t1, ptrdiff_t k0,
                         ptrdiff_t k1, char *dst) {
    const size_t b_sl = nnf_bf16_sliver_bytes(j->uk, j->uk->nr, j->kc);
    const ptrdiff_t step = j->cs_b == 1 ? j->sweep : k1 - k0;
    for (ptrdiff_t p0 = k0; p0 < k1; p0 += step) {
        const ptrdiff_t kp = k1 - p0 < step ? k1 - p0 : step;
        for (ptrdiff_t t = t0; t < t1; t++)
            pack_b_rows(j, t, p0, kp, dst + (size_t)(t - t0) * b_sl);
    }
}

/* Chunk ch of the packing pass of a shared B panel: rows of K across every sliver (B along
 * rows) or a run of slivers. */
static void pack_b_chunk(void *p, ptrdiff_t ch, int worker) {
    const bgemm_job *j = (const bgemm_job *)p;
    (void)worker;
    const int NR = j->uk->nr;
    const size_t b_sl = nnf_bf16_sliver_bytes(j->uk, NR, j->kc);
    const ptrdiff_t n_sl = block_slivers(j);
    if (j->cs_b == 1) {
        ptrdiff_t k0, k1;
        nnf_chunk_range(j->kc, j->b_chunks, ch, j->sweep, &k0, &k1);
        pack_b_block(j, 0, n_sl, k0, k1, j->bp);
    } else {
        ptrdiff_t t0, t1;
        nnf_chunk_range(n_sl, j->b_chunks, ch, 1, &t0, &t1);
        pack_b_block(j, t0, t1, 0, j->kc, j->bp + (size_t)t0 * b_sl);
    }
}

/* A shared panel's row blocks when tapered: each half of A's slivers is cut into taper_body
 * blocks of at most MC rows, then, towards the middle, blocks of 2 and 1 slivers. The pool's
 * caller takes chunks from the front and its other thread from the back (parallel.c), so with
 * two threads they meet in the middle, where a block is now a sliver rather than MC rows: the
 * thread that finishes first waits at most about one sliver for the other (a block of MC rows
 * took ~0.25 ms at 1024^3), and is then not yet asleep when the next call comes (a woken thread
 * can take 0.3-0.6 ms to run again on a busy machine). */
#define TAPER 3 /* slivers in the tapered blocks of a half: 2 + 1 */

static void row_block_range(const bgemm_job *j, ptrdiff_t r, ptrdiff_t *s0, ptrdiff_t *s1) {
    if (!j->taper_body) {
        nnf_chunk_range(j->m_sl, j->row_blocks, r, 1, s0, s1);
        return;
    }
    const ptrdiff_t half = j->m_sl / 2, per = j->taper_body + 2; /* blocks per half */
    const int back = r >= per;
    const ptrdiff_t h = back ? j->m_sl - half : half, base = back ? half : 0;
    const ptrdiff_t i = back ? 2 * per - 1 - r : r; /* counted from the half's outer end */
    ptrdiff_t lo, hi; /* within the half, from its outer end */
    if (i < j->taper_body) {
        nnf_chunk_range(h - TAPER, j->taper_body, i, 1, &lo, &hi);
    } else if (i == j->taper_body) {
        lo = h - TAPER, hi = h - 1;
    } else {
        lo = h - 1, hi = h;
    }
    /* the back half counts from its end */
    *s0 = back ? base + h - hi : lo;
    *s1 = back ? base + h - lo : hi;
}

/* Chunk ch: one block of A's row slivers by one block of B's column slivers. Packs the B block
 * into the worker's scratch when private, then, MC rows at a time, the A rows (likewise) and
 * the JR and IR loops over them. */
static void compute_chunk(void *p, ptrdiff_t ch, int worker) {
    const bgemm_job *j = (const bgemm_job *)p;
    const nnf_gemm_bf16_ukernel *uk = j->uk;
    const int MR = uk->mr, NR = uk->nr;
    const ptrdiff_t kc = j->kc;
    const size_t a_sl = nnf_bf16_sliver_bytes(j->uk, MR, kc);
    const size_t b_sl = nnf_bf16_sliver_bytes(j->uk, NR, kc);
    ptrdiff_t s0, s1, t0, t1; /* row slivers [s0, s1), column slivers [t0, t1) */
    row_block_range(j, ch / j->col_blocks, &s0, &s1);
    nnf_chunk_range(block_slivers(j), j->col_blocks, ch % j->col_blocks, 1, &t0, &t1);
    char *ap = j->scratch + (size_t)worker * j->worker_bytes;
    const char *bp = j->bp + (size_t)t0 * b_sl; /* sliver t at bp + (t - t0) * b_sl */
    if (j->b_private) {
        char *mine = ap + j->a_bytes;
        pack_b_block(j, t0, t1, 0, kc, mine);
        bp = mine;
    }
    const float beta = j->pc == 0 ? j->beta : 1.0f;
    const int last = j->pc + kc == j->k;
    const ptrdiff_t kq = nnf_bf16_padded_k(uk, kc) / 2;
    if (uk->begin) uk->begin();
    for (ptrdiff_t sb = s0; sb < s1; sb += j->mc_sl) {
        const ptrdiff_t se = s1 - sb < j->mc_sl ? s1 : sb + j->mc_sl;
        for (ptrdiff_t s = sb; s < se; s++) pack_a_sliver(j, s, ap + (size_t)(s - sb) * a_sl);
        for (ptrdiff_t t = t0; t < t1; t++) {
            ptrdiff_t j0;
            int nr;
            sliver_cols(j, t, &j0, &nr);
            const char *bs = bp + (size_t)(t - t0) * b_sl;
            /* a shared panel's slivers come from L3: each call brings its share of the next
             * one into L2 (a tile kernel's 2048^3 1.01-1.08x as fast, 6 interleaved rounds) */
            const char *next = !j->b_private && t + 1 < t1 ? bs + b_sl : NULL;
            const size_t share = (b_sl + (size_t)(se - sb) - 1) / (size_t)(se - sb);
            for (ptrdiff_t s = sb; s < se; s++) {
                const ptrdiff_t i0 = s * MR;
                const int mr = j->m - i0 < MR ? (int)(j->m - i0) : MR;
                const char *as = ap + (size_t)(s - sb) * a_sl;
                float *cij = j->c + i0 * j->ldc + j0;
                const size_t from = (size_t)(s - sb) * share;
                const size_t left = next && from < b_sl ? b_sl - from : 0;
                const size_t pf = left < share ? left : share;
                if (uk->pairs)
                    ((nnf_bgemm_ukr)uk->fn)(kq, (const uint32_t *)as, (const uint32_t *)bs, cij,
                                            j->ldc, j->alpha, beta, mr, nr,
                                            pf ? next + from : NULL, pf);
                else
                    ((nnf_sgemm_ukr)uk->fn)(2 * kq, (const float *)as, 1, MR,
                                            (const float *)bs, NR, cij, j->ldc, j->alpha, beta,
                                            mr, nr);
                if (last) nnf_gemm_epilogue_s(j->ep, i0, j0, mr, nr, j->c, j->ldc);
            }
        }
    }
    if (uk->end) uk->end();
}

/* n rounded up to a whole number of 64-byte lines */
static size_t whole_lines(size_t n) { return (n + 63) / 64 * 64; }

int nnf_gemm_bf16(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                  const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float beta,
                  float *c, ptrdiff_t ldc, const nnf_gemm_epilogue *ep) {
    int status = nnf_gemm_check_args(trans_a, trans_b, m, n, k, lda, ldb, ldc, ep);
    if (status != NNF_OK) return status;
    if (m == 0 || n == 0 || k == 0 || alpha == 0.0f) /* no product to round: fp32's answer */
        return nnf_sgemm_ep(NNF_GEMM_PACKED, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
                            beta, c, ldc, ep);
    nnf_gemm_bf16_ukernel uk;
    nnf_gemm_bf16_gemm_ukernel(&uk);
    const int MR = uk.mr, NR = uk.nr;
    int nt = nnf_threads_for((double)m * (double)n * (double)k);
    /* a job would run inline (this call is inside a task, such as a convolution's group GEMM):
     * plan for one thread, or small products would pack their smaller operand once per chunk */
    if (nt > 1 && nnf_parallel_busy()) nt = 1;
    bgemm_job j = {&uk, m, n, k, alpha, beta, a, trans_a ? 1 : lda, trans_a ? lda : 1, b,
                   trans_b ? 1 : ldb, trans_b ? ldb : 1, c, ldc, ep, uk.pairs ? 2 : 4};
    j.kc_max = nnf_gemm_bf16_kc(&uk, k);
    j.sweep = uk.kstep > SWEEP_ROWS ? uk.kstep : SWEEP_ROWS;
    j.m_sl = (m + MR - 1) / MR;
    const ptrdiff_t nc_max = n < uk.nc ? n : uk.nc, n_sl = (nc_max + NR - 1) / NR;
    const size_t a_sl = nnf_bf16_sliver_bytes(&uk, MR, j.kc_max);
    const size_t b_sl = nnf_bf16_sliver_bytes(&uk, NR, j.kc_max);
    const size_t a_all = (size_t)j.m_sl * a_sl, b_all = (size_t)n_sl * b_sl;
    j.mc_sl = uk.mc / MR > 0 ? uk.mc / MR : 1;
    j.row_blocks = j.col_blocks = 1;
    if (a_all <= b_all && a_all + b_all / (size_t)nt <= PRIVATE_BYTES) {
        j.b_private = 1; /* small, A the smaller: every chunk packs all of A and its columns */
        j.col_blocks = n_sl < nt ? n_sl : nt;
    } else if (b_all < a_all && b_all + a_all / (size_t)nt <= PRIVATE_BYTES) {
        j.b_private = 1; /* small, B the smaller: every chunk packs all of B and its rows */
        j.row_blocks = j.m_sl < nt ? j.m_sl : nt;
    } else { /* a shared B panel; row blocks of at most MC rows, a multiple of nt of them */
        j.row_blocks = (j.m_sl + j.mc_sl - 1) / j.mc_sl;
        if (j.m_sl >= nt) j.row_blocks = (j.row_blocks + nt - 1) / nt * nt;
        /* two threads, and each half has blocks of MC rows to taper */
        if (nt == 2 && j.mc_sl > 2 && j.m_sl / 2 >= TAPER + j.mc_sl) {
            j.taper_body = (j.m_sl - j.m_sl / 2 - TAPER + j.mc_sl - 1) / j.mc_sl; /* larger half */
            j.row_blocks = 2 * (j.taper_body + 2);
        }
    }
    {
        const ptrdiff_t rows =
            j.taper_body ? j.mc_sl : (j.m_sl + j.row_blocks - 1) / j.row_blocks;
        j.a_bytes = whole_lines((size_t)(rows < j.mc_sl ? rows : j.mc_sl) * a_sl);
    }
    j.worker_bytes = j.a_bytes;
    if (j.b_private) j.worker_bytes += (size_t)((n_sl + j.col_blocks - 1) / j.col_blocks) * b_sl;
    j.worker_bytes = whole_lines(j.worker_bytes);
    const uintptr_t c_line = (uintptr_t)c % 64;
    if (nnf_bf16_is_tile_kernel(&uk) && !j.b_private && n >= LEAD_MIN_N && n <= uk.nc &&
        ldc % 16 == 0 && c_line % 4 == 0 && c_line)
        j.lead = (ptrdiff_t)(64 - c_line) / 4;
    const size_t shared = j.b_private ? 0 : whole_lines(b_all + (j.lead ? b_sl : 0));
    j.bp = (char *)nnf_pack_buffer_acquire(shared + (size_t)nt * j.worker_bytes);
    if (!j.bp) return NNF_ENOMEM;
    j.scratch = j.bp + shared;
    for (j.jc = 0; j.jc < n; j.jc += uk.nc) {
        j.nc = n - j.jc < uk.nc ? n - j.jc : uk.nc;
        for (j.pc = 0; j.pc < k; j.pc += j.kc_max) {
            j.kc = k - j.pc < j.kc_max ? k - j.pc : j.kc_max;
            if (!j.b_private) {
                const ptrdiff_t units = j.cs_b == 1 ? (j.kc + j.sweep - 1) / j.sweep
                                                    : (j.nc + NR - 1) / NR;
                const ptrdiff_t most = (ptrdiff_t)nt * SWEEP_CHUNKS_PER_THREAD;
                j.b_chunks = nt > 1 && units > most ? most : nt > 1 ? units : 1;
                nnf_parallel_for(j.b_chunks, nt, pack_b_chunk, &j);
            }
            nnf_parallel_for(j.row_blocks * j.col_blocks, nt, compute_chunk, &j);
        }
    }
    nnf_pack_buffer_release(j.bp);
    return NNF_OK;
}

/* The K blocks, each over B's slivers and A's (as compute_chunk calls the micro-kernel, with
 * its beta for the first block and 1 after). */
int nnf_gemm_bf16_packed(const nnf_gemm_bf16_ukernel *uk, ptrdiff_t m, ptrdiff_t n,
                         ptrdiff_t k, const void *ap, ptrdiff_t lda, const void *bp, float beta,
                         float *c, ptrdiff_t ldc) {
    if (!uk || !uk->fn || !ap || !bp || !c || m < 0 || n < 0 || k < 1 || ldc < n || lda < 0 ||
        (lda > 0 && (!uk->fn_rows || lda < (k + 1) / 2)))
        return NNF_EINVAL;
    const int MR = uk->mr, NR = uk->nr;
    const size_t esz = uk->pairs ? 2 : 4;
    const size_t a_sl = nnf_bf16_sliver_bytes(uk, MR, k), b_sl = nnf_bf16_sliver_bytes(uk, NR, k);
    const ptrdiff_t kc_max = nnf_gemm_bf16_kc(uk, k);
    for (ptrdiff_t pc = 0; pc < k; pc += kc_max) {
        const ptrdiff_t kc = k - pc < kc_max ? k - pc : kc_max;
        const ptrdiff_t kq = nnf_bf16_padded_k(uk, kc) / 2; /* a tile kernel's padded depth */
        const float b_pc = pc == 0 ? beta : 1.0f;
        for (ptrdiff_t j0 = 0; j0 < n; j0 += NR) {
            const int nr = n - j0 < NR ? (int)(n - j0) : NR;
            const char *bs = (const char *)bp + (size_t)(j0 / NR) * b_sl + (size_t)pc * NR * esz;
            for (ptrdiff_t i0 = 0; i0 < m; i0 += MR) {
                const int mr = m - i0 < MR ? (int)(m - i0) : MR;
                float *cij = c + i0 * ldc + j0;
                if (lda > 0) { /* rows of pairs: this K block from pair pc / 2 of row i0 */
                    ((nnf_bgemm_ukr_rows)uk->fn_rows)(kq, (const uint32_t *)ap + i0 * lda + pc / 2,
                                                      lda, (const uint32_t *)bs, cij, ldc, 1.0f,
                                                      b_pc, mr, nr);
                    continue;
                }
                const char *as =
                    (const char *)ap + (size_t)(i0 / MR) * a_sl + (size_t)pc * MR * esz;
                if (uk->pairs)
                    ((nnf_bgemm_ukr)uk->fn)(kq, (const uint32_t *)as, (const uint32_t *)bs, cij,
                                            ldc, 1.0f, b_pc, mr, nr, NULL, 0);
                else
                    ((nnf_sgemm_ukr)uk->fn)(2 * kq, (const float *)as, 1, MR, (const float *)bs,
                                            NR, cij, ldc, 1.0f, b_pc, mr, nr);
            }
        }
    }
    return NNF_OK;
}
