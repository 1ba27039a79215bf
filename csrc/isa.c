/* The ISA dispatch table, CPU feature detection and the active path (see cpu.h and isa.h). */
#include "isa.h"

#include <stdio.h>
#include <string.h>

/* Each path's kernel tables, defined by its kernel files. (Macro parameters are named so that
 * they do not clash with the field names below.) */
#define NNF_ISA_EXTERNS_(ID, id, feats)                                                      \
    extern nnf_gemm_ukernels nnf_gemm_ukernels_##id;                                          \
    extern const nnf_gemm_bf16_ukernel nnf_gemm_bf16_ukernel_##id;                            \
    extern nnf_eltwise_kernels nnf_eltwise_kernels_##id;                                      \
    extern nnf_optim_kernels nnf_optim_kernels_##id;                                          \
    extern nnf_conv_kernels nnf_conv_kernels_##id;
NNF_ISAS(NNF_ISA_EXTERNS_)
#undef NNF_ISA_EXTERNS_

#define NNF_ISA_ROW_(ID, id, feats)                                                          \
    [NNF_ISA_##ID] = {                                                                        \
        .name = #id,                                                                          \
        .features = feats,                                                                    \
        .gemm = &nnf_gemm_ukernels_##id,                                                      \
        .bf16 = &nnf_gemm_bf16_ukernel_##id,                                                  \
        .eltwise = &nnf_eltwise_kernels_##id,                                                 \
        .optim = &nnf_optim_kernels_##id,                                                     \
        .conv = &nnf_conv_kernels_##id,                                                       \
    },
const nnf_isa_desc nnf_isa_table[NNF_ISA_COUNT] = {NNF_ISAS(NNF_ISA_ROW_)};
#undef NNF_ISA_ROW_

/* -1 = not detected yet; racing first calls all compute the same value. */
static volatile int active_isa = -1;

const char *nnf_isa_name(nnf_isa isa) {
    return (isa >= 0 && isa < NNF_ISA_COUNT) ? nnf_isa_table[isa].name : "unknown";
}

const char *nnf_isa_features(nnf_isa isa) {
    return (isa >= 0 && isa < NNF_ISA_COUNT) ? nnf_isa_table[isa].features : "";
}

/* The entries of a row's tables: how many there are, and a ", "-separated list of the NULL
 * ones as "what[sub]" in buf (truncated to size). */
typedef struct {
    char *buf;
    size_t size, used;
    int total, missing;
} entry_scan;

static void entry(entry_scan *l, int present, const char *what, const char *sub) {
    l->total++;
    if (present) return;
    if (l->buf && l->used < l->size) {
        int w = snprintf(l->buf + l->used, l->size - l->used, "%s%s%s%s%s",
                         l->missing ? ", " : "", what, sub ? "[" : "", sub ? sub : "",
                         sub ? "]" : "");
        l->used = w < 0 || (size_t)w >= l->size - l->used ? l->size : l->used + (size_t)w;
    }
    l->missing++;
}

static void scan_row(const nnf_isa_desc *d, entry_scan *l) {
    static const char *const dtypes[2] = {"float32", "float64"};
    for (int t = 0; t < 2; t++) /* the first kernel serves every product; the others are optional */
        entry(l, d->gemm->ukr[t][0].fn != NULL, "gemm.ukr", dtypes[t]);
    const nnf_eltwise_kernels *e = d->eltwise;
    for (int a = 0; a < NNF_ACT_COUNT; a++) {
        entry(l, e->fwd_s[a] != NULL, "eltwise.fwd_s", nnf_act_name(a));
        entry(l, e->bwd_s[a] != NULL, "eltwise.bwd_s", nnf_act_name(a));
        entry(l, e->fwd_d[a] != NULL, "eltwise.fwd_d", nnf_act_name(a));
        entry(l, e->bwd_d[a] != NULL, "eltwise.bwd_d", nnf_act_name(a));
    }
#define NNF_ENTRY_(table, field) entry(l, d->table->field != NULL, #table "." #field, NULL);
    NNF_ENTRY_(eltwise, math_s)
    NNF_ENTRY_(eltwise, math_d)
    NNF_ENTRY_(eltwise, lse_row_s)
    NNF_ENTRY_(eltwise, lse_row_d)
    NNF_ENTRY_(eltwise, xent_bwd_row_s)
    NNF_ENTRY_(eltwise, xent_bwd_row_d)
    NNF_ENTRY_(eltwise, bce_fwd_s)
    NNF_ENTRY_(eltwise, bce_fwd_d)
    NNF_ENTRY_(eltwise, bce_bwd_s)
    NNF_ENTRY_(eltwise, bce_bwd_d)
    NNF_ENTRY_(optim, adam_s)
    NNF_ENTRY_(optim, adam_d)
    NNF_ENTRY_(conv, direct_fwd_s)
    NNF_ENTRY_(conv, direct_fwd_d)
    NNF_ENTRY_(conv, direct_bwd_w_s)
    NNF_ENTRY_(conv, direct_bwd_w_d)
    NNF_ENTRY_(conv, direct_bwd_x_s)
    NNF_ENTRY_(conv, direct_bwd_x_d)
#undef NNF_ENTRY_
}

/* A path is built when setup.py compiled its kernel files with its flags: then some of its
 * entries are there (and all must be; a file built without them defines empty tables). */
int nnf_isa_missing(nnf_isa isa, char *buf, size_t size) {
    if (buf && size) buf[0] = '\0';
    if (isa < 0 || isa >= NNF_ISA_COUNT) return 0;
    entry_scan l = {buf, size, 0, 0, 0};
    scan_row(&nnf_isa_table[isa], &l);
    return l.missing < l.total ? l.missing : 0;
}

static int row_built(nnf_isa isa) {
    entry_scan l = {NULL, 0, 0, 0, 0};
    scan_row(&nnf_isa_table[isa], &l);
    return l.missing == 0;
}

/* Compiled in = built and complete: an incomplete row is never used (nnf_isa_missing and the
 * tests name what it lacks). */
int nnf_isa_compiled(nnf_isa isa) {
    if (isa == NNF_ISA_GENERIC) return 1; /* the baseline, the fallback of every other path */
    return isa > 0 && isa < NNF_ISA_COUNT && row_built(isa);
}

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
/* The features a row of NNF_ISAS may name: __builtin_cpu_supports takes only a literal. */
#define NNF_CPU_FEATURES(X)                                                                   \
    X("avx2") X("fma") X("avx512f") X("avx512vl") X("avx512bw") X("avx512dq") X("avx512bf16")

/* 1 if the CPU (and OS) has feature f[0:len]; 0 for a feature the list above does not know */
static int cpu_has_one(const char *f, size_t len) {
#define NNF_CPU_HAS_(lit)                                                                     \
    if (len == sizeof(lit) - 1 && memcmp(f, lit, len) == 0) return __builtin_cpu_supports(lit) != 0;
    __builtin_cpu_init();
    NNF_CPU_FEATURES(NNF_CPU_HAS_)
#undef NNF_CPU_HAS_
    return 0;
}
#else
static int cpu_has_one(const char *f, size_t len) {
    (void)f;
    (void)len;
    return 0;
}
#endif

int nnf_cpu_has(const char *features) {
    for (const char *f = features; *f;) {
        const size_t len = strcspn(f, ",");
        if (!cpu_has_one(f, len)) return 0;
        f += len + (f[len] == ',');
    }
    return 1;
}

int nnf_isa_supported(nnf_isa isa) {
    return nnf_isa_compiled(isa) && nnf_cpu_has(nnf_isa_table[isa].features);
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

const nnf_isa_desc *nnf_isa_current(void) { return &nnf_isa_table[nnf_isa_active()]; }
