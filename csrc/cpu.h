/* CPU feature detection, ISA dispatch and the thread count shared by every kernel family.
 *
 * The ISA is detected once (first use) and may be forced to any path that is both compiled in
 * and supported by this CPU, so tests can run every path on one machine. The thread count is
 * set from Python (nnfast.set_num_threads); C never reads the environment. */
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

typedef enum { NNF_ISA_GENERIC = 0, NNF_ISA_AVX2 = 1, NNF_ISA_AVX512 = 2, NNF_ISA_COUNT = 3 } nnf_isa;

const char *nnf_isa_name(nnf_isa isa);
int nnf_isa_compiled(nnf_isa isa);  /* 1 if this build contains the path */
int nnf_isa_supported(nnf_isa isa); /* 1 if compiled in and this CPU (and OS) can run it */
nnf_isa nnf_isa_best(void);         /* the best supported path */
nnf_isa nnf_isa_active(void);       /* the path kernels use now */
int nnf_isa_set(nnf_isa isa);       /* NNF_OK or NNF_EISA */

int nnf_get_num_threads(void);
int nnf_set_num_threads(int n);     /* NNF_OK, or NNF_EINVAL for n < 1; 1 without threads */

/* Threads worth using for `work` units (~multiply-adds): small jobs stay on one thread. */
int nnf_threads_for(double work);

/* 64-byte aligned scratch memory; NULL on failure. */
void *nnf_aligned_alloc(size_t bytes);
void nnf_aligned_free(void *p);

#endif
