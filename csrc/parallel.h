/* The scheduling layer every parallel kernel goes through: a small persistent thread pool
 * whose threads claim chunks of a job from an atomic counter.
 *
 * A job is n_chunks calls task(ctx, i, worker). The caller takes part, and a thread that the
 * OS has not run yet simply finds no chunk left: a call waits only for chunks that have been
 * claimed, never for a thread that has not started (an OpenMP region's closing barrier waits
 * for every thread of the team, which costs a scheduler time slice on a busy machine).
 * Chunk boundaries come from the problem size and the thread count only, and a chunk computes
 * the same values whichever thread runs it, so results are bit-identical at a given count.
 * Reductions sum per-CHUNK partials in chunk order; `worker` only picks scratch memory. */
#ifndef NNFAST_PARALLEL_H
#define NNFAST_PARALLEL_H

#include <stddef.h>

/* One chunk of a job; worker is in [0, nt) (0 = the calling thread). */
typedef void (*nnf_task_fn)(void *ctx, ptrdiff_t chunk, int worker);

/* Runs task(ctx, i, w) once for each i in [0, n_chunks) on at most nt threads, the caller
 * included, and returns when every chunk is done. nt <= 1 or n_chunks <= 1 runs on the caller
 * alone, as does a call made while the pool is running another caller's job (from a second
 * Python thread, or from inside a task). Never fails: without threads everything runs inline. */
void nnf_parallel_for(ptrdiff_t n_chunks, int nt, nnf_task_fn task, void *ctx);

/* 1 if a job started now would run on the caller alone because the pool is running another
 * (this call is inside a task, or another thread's job is running): a hint for sizing work,
 * which may change at any moment. */
int nnf_parallel_busy(void);

/* [lo, hi) of chunk i when n items are cut into `chunks` near-equal pieces whose inner
 * boundaries are multiples of `align` (>= 1); trailing chunks may be empty. */
void nnf_chunk_range(ptrdiff_t n, ptrdiff_t chunks, ptrdiff_t i, ptrdiff_t align, ptrdiff_t *lo,
                     ptrdiff_t *hi);

/* How many chunks to cut `items` independent items into for nt threads: a few per thread, so
 * that a thread that starts late or is preempted leaves little for the others to wait on. */
ptrdiff_t nnf_chunks_for(ptrdiff_t items, int nt);

/* 1 if this build has the thread pool (0: every job runs on the caller). */
int nnf_threads_enabled(void);

#endif
