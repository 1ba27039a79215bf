"""Thin Cython bindings of the C kernels in csrc/: pointers in, status codes out.

Argument checking that users see happens in Python (nnfast/_gemm.py); here only the checks that
keep C memory-safe are repeated. The GIL is released around every kernel call.
"""

cimport numpy as cnp

cnp.import_array()


cdef extern from "cpu.h" nogil:
    int NNF_OK, NNF_EINVAL, NNF_ENOMEM, NNF_EISA
    ctypedef int nnf_isa
    int NNF_ISA_COUNT
    const char *nnf_isa_name(nnf_isa isa)
    const char *nnf_isa_features(nnf_isa isa)
    int nnf_cpu_has(const char *features)
    int nnf_isa_compiled(nnf_isa isa)
    int nnf_isa_supported(nnf_isa isa)
    nnf_isa nnf_isa_best()
    nnf_isa nnf_isa_active()
    int nnf_isa_set(nnf_isa isa)
    int nnf_get_num_threads()
    int nnf_set_num_threads(int n)


cdef extern from "parallel.h" nogil:
    int nnf_threads_enabled()


cdef extern from "isa.h" nogil:
    int nnf_isa_missing(nnf_isa isa, char *buf, size_t size)


cdef extern from "gemm.h" nogil:
    ctypedef int nnf_gemm_variant
    int nnf_sgemm(nnf_gemm_variant variant, int trans_a, int trans_b, Py_ssize_t m,
                  Py_ssize_t n, Py_ssize_t k, float alpha, const float *a, Py_ssize_t lda,
                  const float *b, Py_ssize_t ldb, float beta, float *c, Py_ssize_t ldc)
    int nnf_dgemm(nnf_gemm_variant variant, int trans_a, int trans_b, Py_ssize_t m,
                  Py_ssize_t n, Py_ssize_t k, double alpha, const double *a, Py_ssize_t lda,
                  const double *b, Py_ssize_t ldb, double beta, double *c, Py_ssize_t ldc)
    ctypedef struct nnf_gemm_epilogue:
        const void *bias
        int act
        double param
        void *preact
        Py_ssize_t ld_preact
    int nnf_sgemm_ep(nnf_gemm_variant variant, int trans_a, int trans_b, Py_ssize_t m,
                     Py_ssize_t n, Py_ssize_t k, float alpha, const float *a, Py_ssize_t lda,
                     const float *b, Py_ssize_t ldb, float beta, float *c, Py_ssize_t ldc,
                     const nnf_gemm_epilogue *ep)
    int nnf_dgemm_ep(nnf_gemm_variant variant, int trans_a, int trans_b, Py_ssize_t m,
                     Py_ssize_t n, Py_ssize_t k, double alpha, const double *a,
                     Py_ssize_t lda, const double *b, Py_ssize_t ldb, double beta, double *c,
                     Py_ssize_t ldc, const nnf_gemm_epilogue *ep)
    int NNF_GEMM_MAX_UKR
    ctypedef struct nnf_gemm_ukernel:
        int mr, nr, mc, kc, nc
        void *fn
        const char *name
    ctypedef struct nnf_gemm_ukernels:
        nnf_gemm_ukernel ukr[2][3]
    const nnf_gemm_ukernels *nnf_gemm_active_ukernels()
    int nnf_gemm_set_blocking(int dtype_index, int mc, int kc, int nc)
    void nnf_gemm_force_driver(int driver)


cdef extern from "gemm_bf16.h" nogil:
    int nnf_gemm_bf16(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      float alpha, const float *a, Py_ssize_t lda, const float *b,
                      Py_ssize_t ldb, float beta, float *c, Py_ssize_t ldc,
                      const nnf_gemm_epilogue *ep)
    ctypedef struct nnf_gemm_bf16_ukernel:
        int mr, nr, mc, kc, nc
        void *fn
        const char *name
        int pairs
        const char *features
        int kstep
    void nnf_gemm_bf16_gemm_ukernel(nnf_gemm_bf16_ukernel *uk)
    int nnf_bf16_is_tile_kernel(const nnf_gemm_bf16_ukernel *uk)
    int nnf_gemm_bf16_tiles_supported()
    int nnf_gemm_bf16_set_tiles(int on)
    int nnf_gemm_bf16_tiles_on()


cdef extern from "isa.h" nogil:
    ctypedef struct nnf_isa_desc:
        const nnf_gemm_bf16_ukernel *bf16
    const nnf_isa_desc nnf_isa_table[]


GEMM_VARIANTS = {"naive": 0, "blocked": 1, "packed": 2}


cdef int check_status(int status, str what) except -1:
    if status == NNF_OK:
        return 0
    if status == NNF_ENOMEM:
        raise MemoryError(f"{what}: could not allocate a work buffer")
    if status == NNF_EISA:
        raise ValueError(f"{what}: this ISA path is not compiled in or not supported by this CPU")
    raise ValueError(f"{what}: invalid arguments (status {status})")


# --- CPU dispatch and threads ------------------------------------------------------------------

def isa_names():
    """Names of every ISA path nnfast knows, in order of preference (worst first)."""
    return [nnf_isa_name(i).decode() for i in range(NNF_ISA_COUNT)]


def isa_features(str name):
    """The CPU features ISA path `name` needs, as GCC spells them (["avx2", "fma"])."""
    cdef nnf_isa isa = _isa_index(name)
    return [f for f in nnf_isa_features(isa).decode().split(",") if f]


def cpu_has(str features):
    """Whether this CPU has every feature of a comma-separated list ("avx2,fma")."""
    return bool(nnf_cpu_has(features.encode()))


def isa_missing(str name):
    """The NULL entries of a compiled-in path's kernel tables ("eltwise.fwd_s[relu]", ...)."""
    cdef nnf_isa isa = _isa_index(name)
    cdef char buf[4096]
    if nnf_isa_missing(isa, buf, sizeof(buf)) == 0:
        return []
    return buf.decode().split(", ")


def isa_bf16_kernel(str name):
    """Path `name`'s native bf16 GEMM kernel in its table row, as {"name", "features" (beyond
    the path's)}, or None where the path (or this build) has none and bf16 runs emulated."""
    cdef const nnf_gemm_bf16_ukernel *k = nnf_isa_table[_isa_index(name)].bf16
    if k.fn == NULL:
        return None
    return {"name": k.name.decode(), "features": [f for f in k.features.decode().split(",") if f]}


cdef nnf_isa _isa_index(str name) except -1:
    names = isa_names()
    if name not in names:
        raise ValueError(f"unknown ISA {name!r}; expected one of {names}")
    return names.index(name)


def isa_compiled():
    return [nnf_isa_name(i).decode() for i in range(NNF_ISA_COUNT) if nnf_isa_compiled(i)]


def isa_supported():
    return [nnf_isa_name(i).decode() for i in range(NNF_ISA_COUNT) if nnf_isa_supported(i)]


def isa_best():
    return nnf_isa_name(nnf_isa_best()).decode()


def isa_active():
    return nnf_isa_name(nnf_isa_active()).decode()


def set_isa(str name):
    if nnf_isa_set(_isa_index(name)) != NNF_OK:
        raise ValueError(
            f"ISA {name!r} is not usable here; this build and CPU support {isa_supported()}"
        )


def threads_enabled():
    """True if this build has nnfast's thread pool (csrc/parallel.c)."""
    return bool(nnf_threads_enabled())


def get_num_threads():
    return nnf_get_num_threads()


def set_num_threads(int n):
    check_status(nnf_set_num_threads(n), "set_num_threads")


def gemm_kernels():
    """The micro-kernels the active ISA uses, widest first: {'float32': [{...}, ...], ...}."""
    cdef const nnf_gemm_ukernels *ks = nnf_gemm_active_ukernels()
    cdef nnf_gemm_ukernel k
    out = {}
    for i, dtype in enumerate(("float32", "float64")):
        out[dtype] = []
        for j in range(NNF_GEMM_MAX_UKR):
            k = ks.ukr[i][j]
            if k.fn == NULL:
                break
            out[dtype].append({"name": k.name.decode(), "mr": k.mr, "nr": k.nr,
                               "mc": k.mc, "kc": k.kc, "nc": k.nc})
    return out


def gemm_bf16_kernels():
    """The kernel of every precision="bf16" product on the active ISA (nnfast.gemm, the layers'
    and the convolutions'), as [{...}]. "emulated" means the fp32 kernel of gemm_kernels() fed
    bf16-rounded operands (no AVX512_BF16 in use) and "tiles" AMX's tile kernel."""
    cdef nnf_gemm_bf16_ukernel b
    nnf_gemm_bf16_gemm_ukernel(&b)
    return [{"name": b.name.decode(), "mr": b.mr, "nr": b.nr, "mc": b.mc, "kc": b.kc,
             "nc": b.nc, "emulated": not b.pairs, "tiles": bool(nnf_bf16_is_tile_kernel(&b))}]


def bf16_tiles_supported():
    """True if this build has the AMX tile kernel and this CPU and OS can run it."""
    return bool(nnf_gemm_bf16_tiles_supported())


def set_bf16_tiles(bint on):
    """Tests and benchmarks: the AMX tile kernel on (the default) or off for precision="bf16"
    GEMMs on the AVX-512 path; returns the previous setting. RuntimeError for on where this
    build, CPU or OS cannot run it."""
    before = bool(nnf_gemm_bf16_tiles_on())
    if nnf_gemm_bf16_set_tiles(on) != NNF_OK:
        raise RuntimeError("set_bf16_tiles: this build, CPU or OS cannot run AMX tiles")
    return before


def set_gemm_blocking(str dtype, int mc, int kc, int nc):
    """Tuning hook (benchmarks only): the active ISA's MC, KC, NC for one dtype."""
    index = {"float32": 0, "float64": 1}[dtype]
    if nnf_gemm_set_blocking(index, mc, kc, nc) != NNF_OK:
        raise ValueError("set_gemm_blocking: mc must be a multiple of MR and nc of NR")


def force_gemm_driver(driver):
    """Tuning hook (benchmarks only): None = by shape, "small" or "goto"."""
    nnf_gemm_force_driver({None: -1, "small": 0, "goto": 1}[driver])


# --- GEMM --------------------------------------------------------------------------------------

def gemm(int variant, bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
         double alpha, cnp.ndarray a, Py_ssize_t lda, cnp.ndarray b, Py_ssize_t ldb,
         double beta, cnp.ndarray c, Py_ssize_t ldc, cnp.ndarray bias=None, int act=-1,
         double param=0.0, cnp.ndarray preact=None, bint bf16=False):
    """C = act(alpha * op(A) @ op(B) + beta * C + bias) on row-major buffers (csrc/gemm.h).

    a, b, c are arrays of one dtype (float32 or float64) whose data pointers are where the
    row-major operands start; lda, ldb, ldc are their leading dimensions in elements. With
    bias (n entries), act >= 0 (an nnf_act) or preact (a C-contiguous (m, n) array receiving
    the pre-activation), the epilogue is applied to each tile of C while it is in cache.
    bf16 (float32 only) rounds A and B to bf16 and accumulates in fp32 (csrc/gemm_bf16.h).
    """
    cdef int status
    cdef int dtype = cnp.PyArray_TYPE(c)
    cdef nnf_gemm_epilogue ep
    cdef nnf_gemm_epilogue *pep = NULL
    if cnp.PyArray_TYPE(a) != dtype or cnp.PyArray_TYPE(b) != dtype:
        raise TypeError("gemm: a, b and out must have one dtype")
    if not cnp.PyArray_ISWRITEABLE(c):
        raise ValueError("gemm: out is read-only")
    if bias is not None or act >= 0 or preact is not None:
        ep.act = act if act >= 0 else 0
        ep.param = param
        ep.bias = NULL
        ep.preact = NULL
        ep.ld_preact = n
        if bias is not None:
            if (cnp.PyArray_TYPE(bias) != dtype or not cnp.PyArray_IS_C_CONTIGUOUS(bias)
                    or bias.size != n):
                raise ValueError(f"gemm: bias must be a contiguous array of {n} entries")
            ep.bias = cnp.PyArray_DATA(bias)
        if preact is not None:
            if (cnp.PyArray_TYPE(preact) != dtype or not cnp.PyArray_IS_C_CONTIGUOUS(preact)
                    or preact.size != m * n or not cnp.PyArray_ISWRITEABLE(preact)):
                raise ValueError(f"gemm: preact_out must be a writeable contiguous ({m}, {n}) array")
            ep.preact = cnp.PyArray_DATA(preact)
        pep = &ep
    if bf16 and dtype != cnp.NPY_FLOAT32:
        raise TypeError("gemm: bf16 needs float32 operands")
    if bf16:
        with nogil:
            status = nnf_gemm_bf16(trans_a, trans_b, m, n, k, <float>alpha,
                                   <const float *>cnp.PyArray_DATA(a), lda,
                                   <const float *>cnp.PyArray_DATA(b), ldb, <float>beta,
                                   <float *>cnp.PyArray_DATA(c), ldc, pep)
    elif dtype == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_sgemm_ep(variant, trans_a, trans_b, m, n, k, <float>alpha,
                                  <const float *>cnp.PyArray_DATA(a), lda,
                                  <const float *>cnp.PyArray_DATA(b), ldb, <float>beta,
                                  <float *>cnp.PyArray_DATA(c), ldc, pep)
    elif dtype == cnp.NPY_FLOAT64:
        with nogil:
            status = nnf_dgemm_ep(variant, trans_a, trans_b, m, n, k, alpha,
                                  <const double *>cnp.PyArray_DATA(a), lda,
                                  <const double *>cnp.PyArray_DATA(b), ldb, beta,
                                  <double *>cnp.PyArray_DATA(c), ldc, pep)
    else:
        raise TypeError("gemm: dtype must be float32 or float64")
    check_status(status, "gemm")



# --- GEMM: the common call, checked here ---------------------------------------------------------

cdef bint _row_major(cnp.ndarray x, Py_ssize_t *ld, bint *transposed):
    """Mirrors nnfast._gemm._layout: False when x cannot be handed to C uncopied; else *ld and
    *transposed (x is stored column-major, i.e. it is a row-major x.T)."""
    cdef Py_ssize_t rows = cnp.PyArray_DIM(x, 0), cols = cnp.PyArray_DIM(x, 1)
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(x)
    cdef Py_ssize_t s0 = cnp.PyArray_STRIDE(x, 0), s1 = cnp.PyArray_STRIDE(x, 1)
    if s0 % item or s1 % item:
        return False
    s0 //= item
    s1 //= item
    if cols <= 1 or s1 == 1:
        ld[0] = max(cols, 1) if rows <= 1 else s0
        if ld[0] >= max(cols, 1):
            transposed[0] = False
            return True
    if rows <= 1 or s0 == 1:
        ld[0] = max(rows, 1) if cols <= 1 else s1
        if ld[0] >= max(rows, 1):
            transposed[0] = True
            return True
    return False


cdef bint _extent(cnp.ndarray x, char **lo, char **hi):
    """The bytes x spans: [lo, hi). False for an empty array."""
    cdef char *p = <char *>cnp.PyArray_DATA(x)
    cdef char *end = p + cnp.PyArray_ITEMSIZE(x)
    cdef int d
    for d in range(cnp.PyArray_NDIM(x)):
        if cnp.PyArray_DIM(x, d) == 0:
            return False
        if cnp.PyArray_STRIDE(x, d) < 0:
            p += (cnp.PyArray_DIM(x, d) - 1) * cnp.PyArray_STRIDE(x, d)
        else:
            end += (cnp.PyArray_DIM(x, d) - 1) * cnp.PyArray_STRIDE(x, d)
    lo[0] = p
    hi[0] = end
    return True


cdef bint _apart(cnp.ndarray x, cnp.ndarray y):
    """True when x and y certainly share no memory (disjoint byte ranges)."""
    cdef char *xl
    cdef char *xh
    cdef char *yl
    cdef char *yh
    if not _extent(x, &xl, &xh) or not _extent(y, &yl, &yh):
        return True
    return xh <= yl or yh <= xl


def gemm_common(a, b, out, alpha, beta, bint trans_a, bint trans_b, bias, int act,
                double param, preact, bint bf16=False):
    """nnfast.gemm's everyday call (the packed variant, which "auto" means) with its checks done
    here: returns the result, or None when anything is unusual (another type or dtype, a
    layout that needs a copy, a possible overlap, an empty or k == 0 product, a shape error),
    and nnfast._gemm.gemm then takes the full path, which also raises the errors. bf16 takes
    float32 operands to the bf16 kernels."""
    if type(a) is not cnp.ndarray or type(b) is not cnp.ndarray:
        return None
    if (type(alpha) is not float and type(alpha) is not int) or (
            type(beta) is not float and type(beta) is not int):
        return None
    cdef cnp.ndarray A = a, B = b, C
    cdef int dtype = cnp.PyArray_TYPE(A)
    if (dtype != cnp.NPY_FLOAT32 and dtype != cnp.NPY_FLOAT64) or cnp.PyArray_TYPE(B) != dtype:
        return None
    # the type number ignores byte order: a big-endian >f4 is NPY_FLOAT32 too
    if not cnp.PyArray_ISNOTSWAPPED(A) or not cnp.PyArray_ISNOTSWAPPED(B):
        return None
    if bf16 and dtype != cnp.NPY_FLOAT32:
        return None
    if cnp.PyArray_NDIM(A) != 2 or cnp.PyArray_NDIM(B) != 2:
        return None
    cdef Py_ssize_t m = cnp.PyArray_DIM(A, 1 if trans_a else 0)
    cdef Py_ssize_t k = cnp.PyArray_DIM(A, 0 if trans_a else 1)
    cdef Py_ssize_t n = cnp.PyArray_DIM(B, 0 if trans_b else 1)
    if cnp.PyArray_DIM(B, 1 if trans_b else 0) != k or m == 0 or n == 0 or k == 0:
        return None
    cdef double alpha_d = alpha, beta_d = beta
    if alpha_d == 0.0:
        return None
    cdef Py_ssize_t lda, ldb, ldc
    cdef bint ta, tb, tc
    cdef cnp.npy_intp dims[2]
    if not _row_major(A, &lda, &ta) or not _row_major(B, &ldb, &tb):
        return None
    if out is None:
        if beta_d != 0.0:
            return None
        dims[0] = m
        dims[1] = n
        C = cnp.PyArray_EMPTY(2, dims, dtype, 0)
        ldc = n
    else:
        if type(out) is not cnp.ndarray:
            return None
        C = out
        if (cnp.PyArray_TYPE(C) != dtype or cnp.PyArray_NDIM(C) != 2
                or cnp.PyArray_DIM(C, 0) != m or cnp.PyArray_DIM(C, 1) != n
                or not cnp.PyArray_ISWRITEABLE(C) or not cnp.PyArray_ISNOTSWAPPED(C)):
            return None
        if not _row_major(C, &ldc, &tc) or tc:
            return None  # a column-major out: the Python path computes C^T instead
        if not _apart(C, A) or not _apart(C, B):
            return None
    cdef nnf_gemm_epilogue ep
    cdef nnf_gemm_epilogue *pep = NULL
    cdef cnp.ndarray V
    if bias is not None or act >= 0 or preact is not None:
        ep.act = act if act >= 0 else 0
        ep.param = param
        ep.bias = NULL
        ep.preact = NULL
        ep.ld_preact = n
        if bias is not None:
            if type(bias) is not cnp.ndarray:
                return None
            V = bias
            if (cnp.PyArray_TYPE(V) != dtype or cnp.PyArray_NDIM(V) != 1
                    or cnp.PyArray_DIM(V, 0) != n or not cnp.PyArray_IS_C_CONTIGUOUS(V)
                    or not cnp.PyArray_ISNOTSWAPPED(V)):
                return None
            ep.bias = cnp.PyArray_DATA(V)
        if preact is not None:
            if type(preact) is not cnp.ndarray:
                return None
            V = preact
            if (cnp.PyArray_TYPE(V) != dtype or cnp.PyArray_NDIM(V) != 2
                    or cnp.PyArray_DIM(V, 0) != m or cnp.PyArray_DIM(V, 1) != n
                    or not cnp.PyArray_IS_C_CONTIGUOUS(V) or not cnp.PyArray_ISWRITEABLE(V)
                    or not cnp.PyArray_ISNOTSWAPPED(V)
                    or not _apart(V, A) or not _apart(V, B) or not _apart(V, C)):
                return None
            ep.preact = cnp.PyArray_DATA(V)
        pep = &ep
    cdef int status
    if bf16:
        with nogil:
            status = nnf_gemm_bf16(trans_a != ta, trans_b != tb, m, n, k, <float>alpha_d,
                                   <const float *>cnp.PyArray_DATA(A), lda,
                                   <const float *>cnp.PyArray_DATA(B), ldb, <float>beta_d,
                                   <float *>cnp.PyArray_DATA(C), ldc, pep)
    elif dtype == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_sgemm_ep(2, trans_a != ta, trans_b != tb, m, n, k, <float>alpha_d,
                                  <const float *>cnp.PyArray_DATA(A), lda,
                                  <const float *>cnp.PyArray_DATA(B), ldb, <float>beta_d,
                                  <float *>cnp.PyArray_DATA(C), ldc, pep)
    else:
        with nogil:
            status = nnf_dgemm_ep(2, trans_a != ta, trans_b != tb, m, n, k, alpha_d,
                                  <const double *>cnp.PyArray_DATA(A), lda,
                                  <const double *>cnp.PyArray_DATA(B), ldb, beta_d,
                                  <double *>cnp.PyArray_DATA(C), ldc, pep)
    check_status(status, "gemm")
    return C

include "_eltwise.pxi"
include "_conv.pxi"
include "_optim.pxi"
include "_image.pxi"
