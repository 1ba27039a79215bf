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
    int nnf_isa_compiled(nnf_isa isa)
    int nnf_isa_supported(nnf_isa isa)
    nnf_isa nnf_isa_best()
    nnf_isa nnf_isa_active()
    int nnf_isa_set(nnf_isa isa)
    int nnf_openmp_enabled()
    int nnf_get_num_threads()
    int nnf_set_num_threads(int n)


cdef extern from "gemm.h" nogil:
    ctypedef int nnf_gemm_variant
    int nnf_sgemm(nnf_gemm_variant variant, int trans_a, int trans_b, Py_ssize_t m,
                  Py_ssize_t n, Py_ssize_t k, float alpha, const float *a, Py_ssize_t lda,
                  const float *b, Py_ssize_t ldb, float beta, float *c, Py_ssize_t ldc)
    int nnf_dgemm(nnf_gemm_variant variant, int trans_a, int trans_b, Py_ssize_t m,
                  Py_ssize_t n, Py_ssize_t k, double alpha, const double *a, Py_ssize_t lda,
                  const double *b, Py_ssize_t ldb, double beta, double *c, Py_ssize_t ldc)
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


def isa_compiled():
    return [nnf_isa_name(i).decode() for i in range(NNF_ISA_COUNT) if nnf_isa_compiled(i)]


def isa_supported():
    return [nnf_isa_name(i).decode() for i in range(NNF_ISA_COUNT) if nnf_isa_supported(i)]


def isa_best():
    return nnf_isa_name(nnf_isa_best()).decode()


def isa_active():
    return nnf_isa_name(nnf_isa_active()).decode()


def set_isa(str name):
    names = isa_names()
    if name not in names:
        raise ValueError(f"unknown ISA {name!r}; expected one of {names}")
    if nnf_isa_set(names.index(name)) != NNF_OK:
        raise ValueError(
            f"ISA {name!r} is not usable here; this build and CPU support {isa_supported()}"
        )


def openmp_enabled():
    return bool(nnf_openmp_enabled())


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
         double beta, cnp.ndarray c, Py_ssize_t ldc):
    """C = alpha * op(A) @ op(B) + beta * C on row-major buffers (see csrc/gemm.h).

    a, b, c are arrays of one dtype (float32 or float64) whose data pointers are where the
    row-major operands start; lda, ldb, ldc are their leading dimensions in elements.
    """
    cdef int status
    cdef int dtype = cnp.PyArray_TYPE(c)
    if cnp.PyArray_TYPE(a) != dtype or cnp.PyArray_TYPE(b) != dtype:
        raise TypeError("gemm: a, b and out must have one dtype")
    if not cnp.PyArray_ISWRITEABLE(c):
        raise ValueError("gemm: out is read-only")
    if dtype == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_sgemm(variant, trans_a, trans_b, m, n, k, <float>alpha,
                               <const float *>cnp.PyArray_DATA(a), lda,
                               <const float *>cnp.PyArray_DATA(b), ldb, <float>beta,
                               <float *>cnp.PyArray_DATA(c), ldc)
    elif dtype == cnp.NPY_FLOAT64:
        with nogil:
            status = nnf_dgemm(variant, trans_a, trans_b, m, n, k, alpha,
                               <const double *>cnp.PyArray_DATA(a), lda,
                               <const double *>cnp.PyArray_DATA(b), ldb, beta,
                               <double *>cnp.PyArray_DATA(c), ldc)
    else:
        raise TypeError("gemm: dtype must be float32 or float64")
    check_status(status, "gemm")


include "_eltwise.pxi"
