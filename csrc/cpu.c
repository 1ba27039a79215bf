/* CPU feature detection, ISA dispatch and thread count (see cpu.h). */
#include "cpu.h"

#include <stdlib.h>

#include "parallel.h"

/* NNF_HAVE_AVX2 / NNF_HAVE_AVX512 are defined by setup.py for the kernel files it could build
 * with those ISA flags (x86-64 with GCC or Clang). */

static const char *const isa_names[NNF_ISA_COUNT] = {"generic", "avx2", "avx512"};

/* -1 = not detected yet; racing first calls all compute the same value. */
static volatile int active_isa = -1;
static int num_threads = 1;

const char *nnf_isa_name(nnf_isa isa) {
    return (isa >= 0 && isa < NNF_ISA_COUNT) ? isa_names[isa] : "unknown";
}

int nnf_isa_compiled(nnf_isa isa) {
    switch (isa) {
    case NNF_ISA_GENERIC: return 1;
#ifdef NNF_HAVE_AVX2
    case NNF_ISA_AVX2: return 1;
#endif
#ifdef NNF_HAVE_AVX512
    case NNF_ISA_AVX512: return 1;
#endif
    default: return 0;
    }
}

int nnf_isa_supported(nnf_isa isa) {
    if (!nnf_isa_compiled(isa)) return 0;
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    switch (isa) {
    case NNF_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case NNF_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default: return 1;
    }
#else
    return isa == NNF_ISA_GENERIC;
#endif
}

nnf_isa nnf_isa_best(void) {
    for (int isa = NNF_ISA_COUNT - 1; isa > 0; isa--)
        if (nnf_isa_supported((nnf_isa)isa)) return (nnf_isa)isa;
    return NNF_ISA_GENERIC;
}

nnf_isa nnf_isa_active(void) {
    if (active_isa < 0) active_isa = nnf_isa_best();
    return (nnf_isa)active_isa;
}

int nnf_isa_set(nnf_isa isa) {
    if (!nnf_isa_supported(isa)) return NNF_EISA;
    active_isa = isa;
    return NNF_OK;
}

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
