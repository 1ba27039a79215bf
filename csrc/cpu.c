/* Thread count and aligned scratch memory (see cpu.h); the ISA dispatch is in isa.c. */
#include "cpu.h"

#include <stdlib.h>

#include "parallel.h"

#ifdef NNF_HAVE_THREADS
#include <pthread.h>
#endif

static int num_threads = 1;

int nnf_get_num_threads(void) { return num_threads; }

int nnf_set_num_threads(int n) {
    if (n < 1) return NNF_EINVAL;
    num_threads = nnf_threads_enabled() ? n : 1;
    return NNF_OK;
}

int nnf_threads_for(double work) {
    /* Waking a team costs a few microseconds: about 50k multiply-adds per extra thread. */
    const double per_thread = 5.0e4;
    int n = num_threads;
    if (work < per_thread * n) n = (int)(work / per_thread);
    return n < 1 ? 1 : n;
}

void *nnf_aligned_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
#if defined(_WIN32)
    p = _aligned_malloc(bytes, 64);
#else
    if (posix_memalign(&p, 64, bytes) != 0) p = NULL;
#endif
    return p;
}

void nnf_aligned_free(void *p) {
#if defined(_WIN32)
    _aligned_free(p);
#else
    free(p);
#endif
}

#ifdef NNF_HAVE_THREADS
typedef struct {
    void *p;
    size_t bytes;
    int out; /* lent to a call */
} pack_buffer;

static pthread_key_t pack_buffer_key;
static pthread_once_t pack_buffer_once = PTHREAD_ONCE_INIT;
static int pack_buffer_keyed; /* 0: the key could not be made; every call allocates */

static void pack_buffer_free(void *v) {
    pack_buffer *b = (pack_buffer *)v;
    nnf_aligned_free(b->p);
    free(b);
}

static void pack_buffer_make_key(void) {
    pack_buffer_keyed = pthread_key_create(&pack_buffer_key, pack_buffer_free) == 0;
}

/* This thread's buffer record, NULL when it has none; made first if `make`. */
static pack_buffer *thread_pack_buffer(int make) {
    pthread_once(&pack_buffer_once, pack_buffer_make_key);
    if (!pack_buffer_keyed) return NULL;
    pack_buffer *b = (pack_buffer *)pthread_getspecific(pack_buffer_key);
    if (b || !make) return b;
    b = (pack_buffer *)calloc(1, sizeof *b);
    if (b && pthread_setspecific(pack_buffer_key, b) != 0) {
        free(b);
        b = NULL;
    }
    return b;
}

void *nnf_pack_buffer_acquire(size_t bytes) {
    pack_buffer *b = bytes <= NNF_PACK_BUFFER_KEEP ? thread_pack_buffer(1) : NULL;
    if (!b || b->out) return nnf_aligned_alloc(bytes);
    if (b->bytes < bytes || !b->p) {
        void *p = nnf_aligned_alloc(bytes);
        if (!p) return NULL;
        nnf_aligned_free(b->p);
        b->p = p;
        b->bytes = bytes;
    }
    b->out = 1;
    return b->p;
}

void nnf_pack_buffer_release(void *p) {
    if (!p) return;
    pack_buffer *b = thread_pack_buffer(0);
    if (b && b->out && b->p == p)
        b->out = 0;
    else
        nnf_aligned_free(p);
}
#else
void *nnf_pack_buffer_acquire(size_t bytes) { return nnf_aligned_alloc(bytes); }
void nnf_pack_buffer_release(void *p) { nnf_aligned_free(p); }
#endif
