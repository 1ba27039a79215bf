# Batched image warps (csrc/image.h); included by _core.pyx.


cdef extern from "image.h" nogil:
    int nnf_warp_affine_s(const float *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                          Py_ssize_t w, const double *mats, double fill, float *y)
    int nnf_warp_affine_d(const double *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                          Py_ssize_t w, const double *mats, double fill, double *y)


def warp_affine(cnp.ndarray x, cnp.ndarray mats, double fill, cnp.ndarray y):
    """y (N, C, H, W) = x resampled through mats (N, 6) float64 (see image.h); C-contiguous."""
    cdef int t = _float_type(x, "warp_affine")
    _float_type(y, "warp_affine")
    if (x.ndim != 4 or y.ndim != 4 or cnp.PyArray_TYPE(y) != t
            or cnp.PyArray_TYPE(mats) != cnp.NPY_FLOAT64 or not cnp.PyArray_IS_C_CONTIGUOUS(mats)
            or mats.ndim != 2 or mats.shape[1] != 6 or mats.shape[0] != x.shape[0]
            or any(x.shape[i] != y.shape[i] for i in range(4))):
        raise ValueError("warp_affine: inconsistent shapes or dtypes")
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int status
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_warp_affine_s(<const float *>cnp.PyArray_DATA(x), n, c, h, w,
                                       <const double *>cnp.PyArray_DATA(mats), fill,
                                       <float *>cnp.PyArray_DATA(y))
    else:
        with nogil:
            status = nnf_warp_affine_d(<const double *>cnp.PyArray_DATA(x), n, c, h, w,
                                       <const double *>cnp.PyArray_DATA(mats), fill,
                                       <double *>cnp.PyArray_DATA(y))
    check_status(status, "warp_affine")
