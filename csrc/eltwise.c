/* Element-wise kernels: dispatch to the active ISA and the thread pool (see eltwise.h).
 *
 * y = act(x + b) and dx = dy * act'(u) over (outer, C, inner) blocks, softmax rows, losses.
 * The per-element work lives in eltwise_kernel.inc (one copy per ISA); this file only checks
 * arguments, picks the kernel once per call and cuts the work into chunks (parallel.h). */
#include "eltwise.h"

#include <math.h>
#include <string.h>

#include <stdatomic.h>

#include "dtype.h"
#include "isa.h"
#include "parallel.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* The tables NNF_ACTIVATIONS (eltwise.h) generates, indexed by nnf_act */
#define NNF_ACT_COST_(ID, name, from_output, cost) [NNF_ACT_##ID] = cost,
#define NNF_ACT_FROM_OUTPUT_(ID, name, from_output, cost) [NNF_ACT_##ID] = from_output,
#define NNF_ACT_NAME_(ID, name, from_output, cost) [NNF_ACT_##ID] = #name,
static const double act_cost[NNF_ACT_COUNT] = {NNF_ACTIVATIONS(NNF_ACT_COST_)};
static const int from_output[NNF_ACT_COUNT] = {NNF_ACTIVATIONS(NNF_ACT_FROM_OUTPUT_)};
static const char *const act_names[NNF_ACT_COUNT] = {NNF_ACTIVATIONS(NNF_ACT_NAME_)};
#undef NNF_ACT_COST_
#undef NNF_ACT_FROM_OUTPUT_
#undef NNF_ACT_NAME_

const char *nnf_act_name(int act) {
    return act >= 0 && act < NNF_ACT_COUNT ? act_names[act] : NULL;
}

int nnf_act_from_output(int act) {
    return act >= 0 && act < NNF_ACT_COUNT ? from_output[act] : 0;
}

static const nnf_eltwise_kernels *kernels(void) {
    const nnf_eltwise_kernels *k = nnf_isa_current()->eltwise;
    return k->fwd_s[0] ? k : NULL; /* NULL: a compiler without vector extensions */
}

#define T float
#define TS s
#include "eltwise_driver.inc"

#define T double
#define TS d
#include "eltwise_driver.inc"
