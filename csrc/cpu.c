/* Thread count and aligned scratch memory (see cpu.h); the ISA dispatch is in isa.c. */
#include "cpu.h"

#include <stdlib.h>

#include "parallel.h"

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
