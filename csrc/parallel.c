/* The thread pool behind nnf_parallel_for (see parallel.h).
 *
 * One job at a time, published through a single 64-bit word: generation | back | front, the
 * unclaimed chunks being [front, back). A thread claims one by compare-and-swap on the whole
 * word, so a thread that read a stale job can never claim a chunk of a newer one; the job's
 * task and ctx are used only by a thread whose claim then succeeds, and the caller cannot
 * return (and reuse ctx) before every claimed chunk has been counted done. Idle threads spin with `pause` for a short while, so
 * back-to-back kernel calls find them awake, then sleep on a condition variable. */
#include "parallel.h"

#include "cpu.h"

void nnf_chunk_range(ptrdiff_t n, ptrdiff_t chunks, ptrdiff_t i, ptrdiff_t align, ptrdiff_t *lo,
                     ptrdiff_t *hi) {
    if (chunks < 1) chunks = 1;
    if (align < 1) align = 1;
    const ptrdiff_t units = (n + align - 1) / align; /* whole aligned units */
    const ptrdiff_t base = units / chunks, extra = units % chunks;
    /* the first `extra` chunks take one unit more */
    const ptrdiff_t u0 = i * base + (i < extra ? i : extra);
    const ptrdiff_t u1 = u0 + base + (i < extra ? 1 : 0);
    *lo = u0 * align < n ? u0 * align : n;
    *hi = u1 * align < n ? u1 * align : n;
}

ptrdiff_t nnf_chunks_for(ptrdiff_t items, int nt) {
    if (nt <= 1 || items <= 1) return 1;
    const ptrdiff_t want = (ptrdiff_t)nt * 4;
    return items < want ? items : want;
}

#if defined(NNF_HAVE_THREADS)

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getcpu, CPU_SET */
#endif
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* The job word: generation (24 bits), then the unclaimed chunks [front, back) (20 bits each). */
#define GEN_BITS 24
#define CNT_BITS 20
#define CNT_MAX ((1u << CNT_BITS) - 1)
#define PACK(gen, back, front) \
    (((uint64_t)(gen) << (2 * CNT_BITS)) | ((uint64_t)(back) << CNT_BITS) | (uint64_t)(front))
#define GEN_OF(s) ((uint32_t)((s) >> (2 * CNT_BITS)) & ((1u << GEN_BITS) - 1))
#define BACK_OF(s) ((uint32_t)((s) >> CNT_BITS) & CNT_MAX)
#define FRONT_OF(s) ((uint32_t)(s)&CNT_MAX)
#define ONE_BACK ((uint64_t)1 << CNT_BITS)

/* How long idle threads spin before they sleep. A training step makes kernel calls a few to a
 * few tens of microseconds apart; spinning across such gaps saves a wake-up per call, and
 * stopping soon after leaves the cores to other work. */
#define WORKER_SPIN_NS 100000
#define CALLER_SPIN_NS 200000
#define MAX_WORKERS 1024
/* A stall: the caller, done with every chunk it could claim, waited longer than its own share
 * took (and at least STALL_MIN_NS) for a chunk another thread had claimed. That thread was
 * preempted mid-chunk, so another process or a spinning BLAS pool holds its core; the caller
 * then runs jobs alone for SOLO_BASE_NS, a period that doubles with each further stall (up to
 * 2^SOLO_MAX_SHIFT times) and halves for each such period that passes without one, so a
 * machine that stays busy is tried rarely. Between solo periods every job uses the threads.
 * From a solo period of zero, a stall counts only when the previous one was at most
 * STALL_PAIR_JOBS threaded jobs before: a core that another process holds stalls most jobs,
 * while a quiet virtual machine stalls a job now and then (one in ~300 back-to-back 60 us
 * GEMMs here, by ~120 us each): going solo on each of those left the other thread a fifth of
 * the chunks.
 * Jobs that had to wake sleeping workers count neither way (their late start is the wake-up).
 * Who runs a chunk never changes what it computes, so this changes speed only. */
#define STALL_MIN_NS 20000
#define STALL_PAIR_JOBS 8
#define SOLO_BASE_NS 1000000
#define SOLO_MAX_SHIFT 8

static _Atomic uint64_t job_word;
static nnf_task_fn _Atomic job_task;
static void *_Atomic job_ctx;
static _Atomic ptrdiff_t job_n;      /* chunks in the current job */
static _Atomic int job_nt;           /* threads allowed on the current job, caller included */
static _Atomic int caller_cpu = -1;  /* where the caller of the latest job ran */
static _Atomic ptrdiff_t job_done;   /* chunks of the current job finished */
static _Atomic int pool_busy;        /* a caller owns the job slot */
static _Atomic int sleepers;         /* workers blocked on wake_cv */
static _Atomic int caller_sleeping;  /* the caller is blocked on done_cv */
static int n_workers;                /* started; changed under lock */
static int64_t solo_until;           /* the caller's backoff after a stall (pool_busy holder) */
static int solo_shift;
static int64_t solo_changed;         /* when solo_shift last changed */
static uint64_t threaded_jobs;       /* jobs offered to the threads so far */
static uint64_t last_stall_job;      /* threaded_jobs at the latest stall; 0: none yet */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Claims and runs chunks of generation `gen` until none is left. The caller takes chunks from
 * the front and the other threads from the back, so that with two threads each one's chunks
 * are neighbours (adjacent output columns or rows: no cache line written by both, and the
 * hardware prefetcher's neighbouring lines are its own) unless one of them falls behind. */
static void run_chunks(uint32_t gen, int worker) {
    uint64_t s = atomic_load_explicit(&job_word, memory_order_acquire);
    while (GEN_OF(s) == gen && FRONT_OF(s) < BACK_OF(s)) {
        /* read before the claim: a successful claim proves they belong to this generation
         * (the caller rewrites them only after every chunk of it is done) */
        const nnf_task_fn task = atomic_load_explicit(&job_task, memory_order_relaxed);
        void *const ctx = atomic_load_explicit(&job_ctx, memory_order_relaxed);
        const ptrdiff_t n = atomic_load_explicit(&job_n, memory_order_relaxed);
        if (worker >= atomic_load_explicit(&job_nt, memory_order_relaxed)) return;
        const uint64_t claimed = worker == 0 ? s + 1 : s - ONE_BACK;
        if (!atomic_compare_exchange_weak_explicit(&job_word, &s, claimed, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* s now holds the current word */
        task(ctx, worker == 0 ? (ptrdiff_t)FRONT_OF(s) : (ptrdiff_t)BACK_OF(s) - 1, worker);
        /* seq_cst on both sides of the caller_sleeping handshake */
        if (atomic_fetch_add(&job_done, 1) + 1 == n && atomic_load(&caller_sleeping)) {
            pthread_mutex_lock(&lock);
            pthread_cond_broadcast(&done_cv);
            pthread_mutex_unlock(&lock);
        }
        s = atomic_load_explicit(&job_word, memory_order_acquire);
    }
}

#if defined(__linux__)
static int current_cpu(void) { return sched_getcpu(); }

/* The kernel's wake-affine heuristic likes to wake a thread on its waker's CPU, and the load
 * balancer leaves it there while the other CPUs hold any work: the worker and the caller then
 * share one core, and the worker's chunks and spinning only slow the caller down. A worker
 * that finds itself on the caller's CPU steps off it: its mask without that CPU moves it, and
 * the original mask is put back at once. */
static void leave_cpu(int cpu) {
    cpu_set_t mask, others;
    if (cpu < 0 || sched_getaffinity(0, sizeof mask, &mask) != 0) return;
    others = mask;
    CPU_CLR(cpu, &others);
    if (CPU_COUNT(&others) > 0 && sched_setaffinity(0, sizeof others, &others) == 0)
        sched_setaffinity(0, sizeof mask, &mask);
}
#else
static int current_cpu(void) { return -1; }
static void leave_cpu(int cpu) { (void)cpu; }
#endif

static void *worker_main(void *arg) {
    const int id = (int)(intptr_t)arg;
    uint32_t seen = GEN_OF(atomic_load(&job_word));
    for (;;) {
        uint64_t s = atomic_load_explicit(&job_word, memory_order_acquire);
        if (GEN_OF(s) == seen) { /* idle: spin a little, then sleep until the next job */
            const int64_t until = now_ns() + WORKER_SPIN_NS;
            for (int i = 1; GEN_OF(s) == seen; i++) {
                CPU_RELAX();
                /* stop spinning past the deadline, or on the caller's CPU, where it would take
                 * the caller's time */
                if ((i & 63) == 0 && (now_ns() > until || current_cpu() == atomic_load_explicit(
                                                             &caller_cpu, memory_order_relaxed)))
                    break;
                s = atomic_load_explicit(&job_word, memory_order_acquire);
            }
            if (GEN_OF(s) == seen) {
                pthread_mutex_lock(&lock);
                atomic_fetch_add(&sleepers, 1);
                while (GEN_OF(atomic_load(&job_word)) == seen) pthread_cond_wait(&wake_cv, &lock);
                atomic_fetch_sub(&sleepers, 1);
                pthread_mutex_unlock(&lock);
                s = atomic_load_explicit(&job_word, memory_order_acquire);
            }
        }
        seen = GEN_OF(s);
        const int cpu = atomic_load_explicit(&caller_cpu, memory_order_relaxed);
        if (cpu >= 0 && current_cpu() == cpu) leave_cpu(cpu);
        run_chunks(seen, id);
    }
    return NULL;
}

/* fork() copies the pool's memory but not its threads: the child starts over with none (and
 * with locks nobody else holds); the prepare handler keeps the lock consistent meanwhile. */
static void atfork_prepare(void) { pthread_mutex_lock(&lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&lock); }
static void atfork_child(void) {
    n_workers = 0;
    solo_until = 0;
    solo_shift = 0;
    solo_changed = 0;
    threaded_jobs = 0;
    last_stall_job = 0;
    atomic_store(&sleepers, 0);
    atomic_store(&caller_sleeping, 0);
    atomic_store(&pool_busy, 0);
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&wake_cv, NULL);
    pthread_cond_init(&done_cv, NULL);
}
static void register_atfork(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

/* Starts workers up to `want` (ids 1..want); returns how many exist. Signals stay with the
 * process's other threads (Python handles them on its main thread). */
static int ensure_workers(int want) {
    if (want > MAX_WORKERS) want = MAX_WORKERS;
    if (n_workers >= want) return n_workers;
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&lock);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (n_workers < want) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int err =
            pthread_create(&th, &attr, worker_main, (void *)(intptr_t)(n_workers + 1));
        pthread_attr_destroy(&attr);
        if (err) break; /* out of threads: the job runs on those there are */
        n_workers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    const int have = n_workers;
    pthread_mutex_unlock(&lock);
    return have;
}

void nnf_parallel_for(ptrdiff_t n_chunks, int nt, nnf_task_fn task, void *ctx) {
    if (n_chunks <= 0) return;
    if (nt > n_chunks) nt = (int)n_chunks;
    int expected = 0;
    if (nt <= 1 || n_chunks > (ptrdiff_t)CNT_MAX ||
        !atomic_compare_exchange_strong(&pool_busy, &expected, 1)) {
        for (ptrdiff_t i = 0; i < n_chunks; i++) task(ctx, i, 0);
        return;
    }
    const int64_t t_start = now_ns();
    if (t_start < solo_until) {
        for (ptrdiff_t i = 0; i < n_chunks; i++) task(ctx, i, 0);
        atomic_store_explicit(&pool_busy, 0, memory_order_release);
        return;
    }
    const int have = ensure_workers(nt - 1);
    if (have < nt - 1) nt = have + 1;
    threaded_jobs++;
    atomic_store_explicit(&job_task, task, memory_order_relaxed);
    atomic_store_explicit(&job_ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&job_n, n_chunks, memory_order_relaxed);
    atomic_store_explicit(&job_nt, nt, memory_order_relaxed);
    atomic_store_explicit(&job_done, 0, memory_order_relaxed);
    atomic_store_explicit(&caller_cpu, current_cpu(), memory_order_relaxed);
    const uint32_t gen =
        (GEN_OF(atomic_load_explicit(&job_word, memory_order_relaxed)) + 1) & ((1u << GEN_BITS) - 1);
    atomic_store(&job_word, PACK(gen, n_chunks, 0)); /* seq_cst: paired with the sleepers count */
    const int woke = atomic_load(&sleepers) > 0;
    if (woke) {
        pthread_mutex_lock(&lock);
        pthread_cond_broadcast(&wake_cv);
        pthread_mutex_unlock(&lock);
    }
    run_chunks(gen, 0);
    /* wait for chunks other threads claimed: spin briefly, then sleep */
    int stalled = 0;
    if (atomic_load_explicit(&job_done, memory_order_acquire) != n_chunks) {
        const int64_t t_mine = now_ns();
        const int64_t until = t_mine + CALLER_SPIN_NS;
        for (int i = 1; atomic_load_explicit(&job_done, memory_order_acquire) != n_chunks; i++) {
            CPU_RELAX();
            if ((i & 63) == 0 && now_ns() > until) {
                pthread_mutex_lock(&lock);
                atomic_store(&caller_sleeping, 1);
                while (atomic_load(&job_done) != n_chunks) pthread_cond_wait(&done_cv, &lock);
                atomic_store(&caller_sleeping, 0);
                pthread_mutex_unlock(&lock);
                break;
            }
        }
        const int64_t t_end = now_ns(), waited = t_end - t_mine;
        /* not after waking workers: a thread woken from sleep starts late (a training step's
         * first call after the data loader or the optimizer, for one), which says nothing of
         * a core being taken; counted as a stall it sent whole steps solo */
        stalled = !woke && waited > STALL_MIN_NS && waited > t_mine - t_start;
        if (stalled) { /* from a solo period of zero, only the second of a pair counts */
            const int paired = last_stall_job && threaded_jobs - last_stall_job <= STALL_PAIR_JOBS;
            last_stall_job = threaded_jobs;
            if (solo_shift == 0 && !paired) stalled = 0;
        }
        if (stalled) {
            solo_until = t_end + ((int64_t)SOLO_BASE_NS << solo_shift);
            if (solo_shift < SOLO_MAX_SHIFT) solo_shift++;
            solo_changed = t_end;
        }
    }
    /* a job without a stall: the next solo period may be shorter, one halving per period */
    if (!stalled && !woke && solo_shift > 0) {
        const int64_t now = now_ns();
        if (now - solo_changed > ((int64_t)SOLO_BASE_NS << solo_shift)) {
            solo_shift--;
            solo_changed = now;
        }
    }
    atomic_store_explicit(&pool_busy, 0, memory_order_release);
}

int nnf_threads_enabled(void) { return 1; }

int nnf_parallel_busy(void) { return atomic_load_explicit(&pool_busy, memory_order_relaxed); }

#else /* no threads: every job runs on the caller */

void nnf_parallel_for(ptrdiff_t n_chunks, int nt, nnf_task_fn task, void *ctx) {
    (void)nt;
    for (ptrdiff_t i = 0; i < n_chunks; i++) task(ctx, i, 0);
}

int nnf_threads_enabled(void) { return 0; }

int nnf_parallel_busy(void) { return 0; }

#endif
