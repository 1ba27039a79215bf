/* The ISA dispatch table: one row per path of NNF_ISAS (cpu.h), the active one picked once per
 * kernel call. A row holds what a path brings: its name and CPU features and the kernel table of
 * each family, which the path's kernel files define (empty when setup.py could not build them).
 * A new per-ISA table is one field here and one entry in isa.c's row. */
#ifndef NNFAST_ISA_H
#define NNFAST_ISA_H

#include <stddef.h>

#include "conv.h"
#include "cpu.h"
#include "eltwise.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "optim.h"

typedef struct {
    const char *name;     /* "avx2" */
    const char *features; /* "avx2,fma": comma-separated, as GCC spells them */
    nnf_gemm_ukernels *gemm; /* not const: nnf_gemm_set_blocking retunes it */
    const nnf_gemm_bf16_ukernel *bf16; /* native bf16 kernel; fn NULL: emulated on gemm's */
    const nnf_eltwise_kernels *eltwise;
    const nnf_optim_kernels *optim;
    const nnf_conv_kernels *conv;
} nnf_isa_desc;

/* Indexed by nnf_isa. */
extern const nnf_isa_desc nnf_isa_table[NNF_ISA_COUNT];

/* The row of the active ISA (nnf_isa_active()). */
const nnf_isa_desc *nnf_isa_current(void);

/* The entries of `isa`'s tables that are NULL although the path is compiled in, as
 * "eltwise.fwd_s[relu]" names separated by ", ", written to buf (size bytes, truncated) for the
 * tests; returns how many there are (0 for a complete or not compiled path). */
int nnf_isa_missing(nnf_isa isa, char *buf, size_t size);

#endif
