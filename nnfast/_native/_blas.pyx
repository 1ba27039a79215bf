"""SciPy's BLAS sgemm/dgemm on row-major buffers, with the GIL released.

scipy.linalg.cython_blas links nothing at build time: the function pointers come from SciPy at
import. BLAS is column-major, so the row-major C = op(A) @ op(B) is computed as the
column-major C^T = op(B)^T @ op(A)^T: the same buffers, operands swapped.
"""

cimport numpy as cnp
from scipy.linalg.cython_blas cimport dgemm, sgemm

cnp.import_array()

cdef int INT_MAX = 2147483647


def gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
         cnp.ndarray a, Py_ssize_t lda, cnp.ndarray b, Py_ssize_t ldb, double beta,
         cnp.ndarray c, Py_ssize_t ldc):
    """Same contract as nnfast._native._core.gemm (without the variant)."""
    for value in (m, n, k, lda, ldb, ldc):
        if value > INT_MAX:
            raise ValueError("gemm: dimensions beyond 2**31 - 1 exceed the BLAS interface")
    cdef int dtype = cnp.PyArray_TYPE(c)
    if cnp.PyArray_TYPE(a) != dtype or cnp.PyArray_TYPE(b) != dtype:
        raise TypeError("gemm: a, b and out must have one dtype")
    if not cnp.PyArray_ISWRITEABLE(c):
        raise ValueError("gemm: out is read-only")
    cdef char ta = b"T" if trans_b else b"N"
    cdef char tb = b"T" if trans_a else b"N"
    cdef int im = <int>n, jn = <int>m, kk = <int>k
    cdef int la = <int>max(ldb, 1), lb = <int>max(lda, 1), lc = <int>max(ldc, 1)
    cdef float salpha = <float>alpha, sbeta = <float>beta
    if m == 0 or n == 0:
        return
    if dtype == cnp.NPY_FLOAT32:
        with nogil:
            sgemm(&ta, &tb, &im, &jn, &kk, &salpha, <float *>cnp.PyArray_DATA(b), &la,
                  <float *>cnp.PyArray_DATA(a), &lb, &sbeta, <float *>cnp.PyArray_DATA(c), &lc)
    elif dtype == cnp.NPY_FLOAT64:
        with nogil:
            dgemm(&ta, &tb, &im, &jn, &kk, &alpha, <double *>cnp.PyArray_DATA(b), &la,
                  <double *>cnp.PyArray_DATA(a), &lb, &beta, <double *>cnp.PyArray_DATA(c), &lc)
    else:
        raise TypeError("gemm: dtype must be float32 or float64")
