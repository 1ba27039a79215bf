/* CPU feature detection, ISA dispatch and the thread count shared by every kernel family.
 *
 * The ISA is detected once (first use) and may be forced to any path that is both compiled in
 * and supported by this CPU, so tests can run every path on one machine (isa.c, isa.h). The
 * thread count is set from Python (nnfast.set_num_threads); C never reads the environment. */
#ifndef NNFAST_CPU_H
#define NNFAST_CPU_H

#include <stddef.h>

/* Status codes returned by every nnfast C entry point (0 = success). */
enum {
    NNF_OK = 0,
    NNF_EINVAL = -1, /* an argument is out of range (negative size, ld too small, ...) */
    NNF_ENOMEM = -2, /* a work buffer could not be allocated */
    NNF_EISA = -3    /* the requested ISA is not compiled in or not supported by this CPU */
};

/* Every ISA path, one row each, worst first: X(ID, name, "features").
 * Adding an ISA is its kernel files (gemm_kernel_<name>.c and eltwise_kernel_<name>.c, which
 * define that ISA's kernel tables, empty when NNF_HAVE_<ID> is not defined, and its bf16 GEMM
 * kernel nnf_gemm_bf16_ukernel_<name>, empty when it has none: gemm_bf16.h) plus a row here;
 * isa.c builds the dispatch table from this list and setup.py reads it too.
 *   features  what the CPU must have, comma-separated as GCC spells them: setup.py compiles the
 *             kernel files with -m<feature> for each and NNF_HAVE_<ID> defined; at run time
 *             every feature is checked (the names isa.c knows). "" = the baseline: built with
 *             the core's flags, runs anywhere, always compiled. */
#define NNF_ISAS(X)                                                                           \
    X(GENERIC, generic, "")                                                                   \
    X(AVX2, avx2, "avx2,fma")                                                                 \
    X(AVX512, avx512, "avx512f,avx512vl,avx2,fma")

typedef enum {
#define NNF_ISA_ENUM_(ID, name, features) NNF_ISA_##ID,
    NNF_ISAS(NNF_ISA_ENUM_)
#undef NNF_ISA_ENUM_
    NNF_ISA_COUNT
} nnf_isa;

/* The ISA dispatch (isa.c; the kernel tables of each path are in isa.h). */
const char *nnf_isa_name(nnf_isa isa);     /* "avx2", or "unknown" out of range */
const char *nnf_isa_features(nnf_isa isa); /* "avx2,fma", or "" */
int nnf_isa_compiled(nnf_isa isa);  /* 1 if this build contains the path */
int nnf_isa_supported(nnf_isa isa); /* 1 if compiled in and this CPU (and OS) can run it */
nnf_isa nnf_isa_best(void);         /* the best supported path */
nnf_isa nnf_isa_active(void);       /* the path kernels use now */
int nnf_isa_set(nnf_isa isa);       /* NNF_OK or NNF_EISA */

/* 1 if this CPU (and OS) has every feature of a comma-separated list spelt as in NNF_ISAS
 * ("avx512bf16,avx512bw"; "" has them all), for kernels that need more than their path's
 * features. 0 if a name is one isa.c does not check. */
int nnf_cpu_has(const char *features);

int nnf_get_num_threads(void);
int nnf_set_num_threads(int n);     /* NNF_OK, or NNF_EINVAL for n < 1; 1 without threads */

/* Threads worth using for `work` units (~multiply-adds): small jobs stay on one thread. */
int nnf_threads_for(double work);

/* 64-byte aligned scratch memory; NULL on failure. */
void *nnf_aligned_alloc(size_t bytes);
void nnf_aligned_free(void *p);

/* A GEMM's packing buffer: 64-byte aligned, at least `bytes`, NULL on failure. The calling
 * thread keeps one (up to NNF_PACK_BUFFER_KEEP bytes) from call to call, so that a GEMM does
 * not fault in, zero and evict fresh pages each time; a call while the thread's buffer is out
 * (nested), a larger one, or a build without threads gets memory of its own. Each thread's
 * buffer is freed when the thread exits. Give it back with nnf_pack_buffer_release. */
#define NNF_PACK_BUFFER_KEEP ((size_t)16 << 20)
void *nnf_pack_buffer_acquire(size_t bytes);
void nnf_pack_buffer_release(void *p);

#endif
