# Element-wise kernels (csrc/eltwise.h), included by _core.pyx. Thin: every array must already
# be C-contiguous with the dtype and size C expects (nnfast/functional.py arranges that); these
# checks only keep C memory-safe. One C call per function, without the GIL.

from libc.stdint cimport int64_t


cdef extern from "eltwise.h" nogil:
    int NNF_ACT_COUNT
    int NNF_ACT_IDENTITY
    const char *nnf_act_name(int act)
    int nnf_act_from_output(int act)
    int nnf_act_fwd_s(int act, float a, float b, Py_ssize_t outer, Py_ssize_t c,
                      Py_ssize_t inner, const float *x, const float *bias, float *y,
                      float *preact)
    int nnf_act_fwd_d(int act, double a, double b, Py_ssize_t outer, Py_ssize_t c,
                      Py_ssize_t inner, const double *x, const double *bias, double *y,
                      double *preact)
    int nnf_act_bwd_s(int act, float a, float b, Py_ssize_t outer, Py_ssize_t c,
                      Py_ssize_t inner, const float *dy, const float *u, float *dx, float *db)
    int nnf_act_bwd_d(int act, double a, double b, Py_ssize_t outer, Py_ssize_t c,
                      Py_ssize_t inner, const double *dy, const double *u, double *dx,
                      double *db)
    int nnf_prelu_fwd_s(Py_ssize_t outer, Py_ssize_t c, Py_ssize_t inner, const float *x,
                        const float *alpha, float *y)
    int nnf_prelu_fwd_d(Py_ssize_t outer, Py_ssize_t c, Py_ssize_t inner, const double *x,
                        const double *alpha, double *y)
    int nnf_prelu_bwd_s(Py_ssize_t outer, Py_ssize_t c, Py_ssize_t inner, const float *dy,
                        const float *x, const float *alpha, float *dx, float *dalpha)
    int nnf_prelu_bwd_d(Py_ssize_t outer, Py_ssize_t c, Py_ssize_t inner, const double *dy,
                        const double *x, const double *alpha, double *dx, double *dalpha)
    int nnf_maxout_fwd_s(Py_ssize_t outer, Py_ssize_t c, Py_ssize_t k, Py_ssize_t inner,
                         const float *x, float *y, int64_t *argmax)
    int nnf_maxout_fwd_d(Py_ssize_t outer, Py_ssize_t c, Py_ssize_t k, Py_ssize_t inner,
                         const double *x, double *y, int64_t *argmax)
    int nnf_maxout_bwd_s(Py_ssize_t outer, Py_ssize_t c, Py_ssize_t k, Py_ssize_t inner,
                         const float *dy, const int64_t *argmax, float *dx)
    int nnf_maxout_bwd_d(Py_ssize_t outer, Py_ssize_t c, Py_ssize_t k, Py_ssize_t inner,
                         const double *dy, const int64_t *argmax, double *dx)
    int nnf_softmax_s(int log_, Py_ssize_t rows, Py_ssize_t n, const float *x, float *y)
    int nnf_softmax_d(int log_, Py_ssize_t rows, Py_ssize_t n, const double *x, double *y)
    int nnf_softmax_xent_fwd_s(Py_ssize_t rows, Py_ssize_t n, const float *x,
                               const int64_t *labels, double eps, double *loss)
    int nnf_softmax_xent_fwd_d(Py_ssize_t rows, Py_ssize_t n, const double *x,
                               const int64_t *labels, double eps, double *loss)
    int nnf_softmax_xent_bwd_s(Py_ssize_t rows, Py_ssize_t n, const float *x,
                               const int64_t *labels, double eps, double scale, float *dx)
    int nnf_softmax_xent_bwd_d(Py_ssize_t rows, Py_ssize_t n, const double *x,
                               const int64_t *labels, double eps, double scale, double *dx)
    int nnf_softmax_xent_s(Py_ssize_t rows, Py_ssize_t n, const float *x,
                           const int64_t *labels, double eps, double scale, double *loss,
                           float *dx)
    int nnf_softmax_xent_d(Py_ssize_t rows, Py_ssize_t n, const double *x,
                           const int64_t *labels, double eps, double scale, double *loss,
                           double *dx)
    int nnf_bce_logits_fwd_s(Py_ssize_t n, const float *x, const float *t, double *sum)
    int nnf_bce_logits_fwd_d(Py_ssize_t n, const double *x, const double *t, double *sum)
    int nnf_bce_logits_bwd_s(Py_ssize_t n, const float *x, const float *t, double scale,
                             float *dx)
    int nnf_bce_logits_bwd_d(Py_ssize_t n, const double *x, const double *t, double scale,
                             double *dx)
    int nnf_mse_fwd_s(Py_ssize_t n, const float *p, const float *t, double *sum)
    int nnf_mse_fwd_d(Py_ssize_t n, const double *p, const double *t, double *sum)
    int nnf_mse_bwd_s(Py_ssize_t n, const float *p, const float *t, double scale, float *dx)
    int nnf_mse_bwd_d(Py_ssize_t n, const double *p, const double *t, double scale,
                      double *dx)
    int nnf_vmath_s(int fn, Py_ssize_t n, const float *x, float *y)
    int nnf_vmath_d(int fn, Py_ssize_t n, const double *x, double *y)


cdef int _req(str what, str name, a, int dtype, Py_ssize_t size, bint write=False) except -1:
    """a is a C-contiguous ndarray of `dtype` with `size` elements (writeable if `write`)."""
    if not isinstance(a, cnp.ndarray):
        raise TypeError(f"{what}: {name} must be a numpy array")
    cdef cnp.ndarray arr = a
    if cnp.PyArray_TYPE(arr) != dtype:
        raise TypeError(f"{what}: {name} has dtype {arr.dtype}, expected {cnp.PyArray_DescrFromType(dtype)}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{what}: {name} must be C-contiguous")
    if cnp.PyArray_SIZE(arr) != size:
        raise ValueError(f"{what}: {name} has {cnp.PyArray_SIZE(arr)} elements, expected {size}")
    if write and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{what}: {name} is read-only")
    return 0


cdef inline void *_p(a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef int _float_dtype(str what, cnp.ndarray x) except -1:
    cdef int t = cnp.PyArray_TYPE(x)
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        raise TypeError(f"{what}: dtype must be float32 or float64, got {x.dtype}")
    return t


def activation_ids():
    """C's activation list (NNF_ACTIVATIONS in csrc/eltwise.h) as {name: id}, in id order."""
    return {nnf_act_name(i).decode(): i for i in range(NNF_ACT_COUNT)}


def act_from_output(int act):
    return bool(nnf_act_from_output(act))


def act_forward(int act, double a, double b, Py_ssize_t outer, Py_ssize_t c, Py_ssize_t inner,
                cnp.ndarray x, bias, cnp.ndarray y, pre):
    """y = act(x + bias[c]) over (outer, c, inner); bias and pre (x + bias out) may be None."""
    cdef int t = _float_dtype("act_forward", x), status
    cdef Py_ssize_t n = outer * c * inner
    _req("act_forward", "x", x, t, n)
    _req("act_forward", "out", y, t, n, True)
    if bias is not None:
        _req("act_forward", "bias", bias, t, c)
    if pre is not None:
        _req("act_forward", "preact_out", pre, t, n, True)
    cdef void *px = _p(x)
    cdef void *pb = _p(bias)
    cdef void *py = _p(y)
    cdef void *pp = _p(pre)
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_act_fwd_s(act, <float>a, <float>b, outer, c, inner, <const float *>px,
                                   <const float *>pb, <float *>py, <float *>pp)
    else:
        with nogil:
            status = nnf_act_fwd_d(act, a, b, outer, c, inner, <const double *>px,
                                   <const double *>pb, <double *>py, <double *>pp)
    check_status(status, "act_forward")


def act_backward(int act, double a, double b, Py_ssize_t outer, Py_ssize_t c, Py_ssize_t inner,
                 cnp.ndarray dy, cnp.ndarray u, cnp.ndarray dx, db):
    """dx = dy * act'(u); db[c] = sum of dx over outer and inner if db is not None."""
    cdef int t = _float_dtype("act_backward", dy), status
    cdef Py_ssize_t n = outer * c * inner
    _req("act_backward", "dy", dy, t, n)
    _req("act_backward", "u", u, t, n)
    _req("act_backward", "out", dx, t, n, True)
    if db is not None:
        _req("act_backward", "db", db, t, c, True)
    cdef void *pdy = _p(dy)
    cdef void *pu = _p(u)
    cdef void *pdx = _p(dx)
    cdef void *pdb = _p(db)
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_act_bwd_s(act, <float>a, <float>b, outer, c, inner, <const float *>pdy,
                                   <const float *>pu, <float *>pdx, <float *>pdb)
    else:
        with nogil:
            status = nnf_act_bwd_d(act, a, b, outer, c, inner, <const double *>pdy,
                                   <const double *>pu, <double *>pdx, <double *>pdb)
    check_status(status, "act_backward")


def prelu_forward(Py_ssize_t outer, Py_ssize_t c, Py_ssize_t inner, cnp.ndarray x,
                  cnp.ndarray alpha, cnp.ndarray y):
    cdef int t = _float_dtype("prelu", x), status
    cdef Py_ssize_t n = outer * c * inner
    _req("prelu", "x", x, t, n)
    _req("prelu", "alpha", alpha, t, c)
    _req("prelu", "out", y, t, n, True)
    cdef void *px = _p(x)
    cdef void *pa = _p(alpha)
    cdef void *py = _p(y)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = nnf_prelu_fwd_s(outer, c, inner, <const float *>px, <const float *>pa,
                                     <float *>py)
        else:
            status = nnf_prelu_fwd_d(outer, c, inner, <const double *>px, <const double *>pa,
                                     <double *>py)
    check_status(status, "prelu")


def prelu_backward(Py_ssize_t outer, Py_ssize_t c, Py_ssize_t inner, cnp.ndarray dy,
                   cnp.ndarray x, cnp.ndarray alpha, cnp.ndarray dx, cnp.ndarray dalpha):
    cdef int t = _float_dtype("prelu_backward", dy), status
    cdef Py_ssize_t n = outer * c * inner
    _req("prelu_backward", "dy", dy, t, n)
    _req("prelu_backward", "x", x, t, n)
    _req("prelu_backward", "alpha", alpha, t, c)
    _req("prelu_backward", "out", dx, t, n, True)
    _req("prelu_backward", "dalpha", dalpha, t, c, True)
    cdef void *pdy = _p(dy)
    cdef void *px = _p(x)
    cdef void *pa = _p(alpha)
    cdef void *pdx = _p(dx)
    cdef void *pda = _p(dalpha)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = nnf_prelu_bwd_s(outer, c, inner, <const float *>pdy, <const float *>px,
                                     <const float *>pa, <float *>pdx, <float *>pda)
        else:
            status = nnf_prelu_bwd_d(outer, c, inner, <const double *>pdy, <const double *>px,
                                     <const double *>pa, <double *>pdx, <double *>pda)
    check_status(status, "prelu_backward")


def maxout_forward(Py_ssize_t outer, Py_ssize_t c, Py_ssize_t k, Py_ssize_t inner,
                   cnp.ndarray x, cnp.ndarray y, cnp.ndarray argmax):
    cdef int t = _float_dtype("maxout", x), status
    if k < 1:
        raise ValueError("maxout: k must be >= 1")
    _req("maxout", "x", x, t, outer * c * k * inner)
    _req("maxout", "out", y, t, outer * c * inner, True)
    _req("maxout", "argmax", argmax, cnp.NPY_INT64, outer * c * inner, True)
    cdef void *px = _p(x)
    cdef void *py = _p(y)
    cdef void *pa = _p(argmax)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = nnf_maxout_fwd_s(outer, c, k, inner, <const float *>px, <float *>py,
                                      <int64_t *>pa)
        else:
            status = nnf_maxout_fwd_d(outer, c, k, inner, <const double *>px, <double *>py,
                                      <int64_t *>pa)
    check_status(status, "maxout")


def maxout_backward(Py_ssize_t outer, Py_ssize_t c, Py_ssize_t k, Py_ssize_t inner,
                    cnp.ndarray dy, cnp.ndarray argmax, cnp.ndarray dx):
    cdef int t = _float_dtype("maxout_backward", dy), status
    if k < 1:
        raise ValueError("maxout_backward: k must be >= 1")
    _req("maxout_backward", "dy", dy, t, outer * c * inner)
    _req("maxout_backward", "argmax", argmax, cnp.NPY_INT64, outer * c * inner)
    _req("maxout_backward", "out", dx, t, outer * c * k * inner, True)
    cdef void *pdy = _p(dy)
    cdef void *pa = _p(argmax)
    cdef void *pdx = _p(dx)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = nnf_maxout_bwd_s(outer, c, k, inner, <const float *>pdy,
                                      <const int64_t *>pa, <float *>pdx)
        else:
            status = nnf_maxout_bwd_d(outer, c, k, inner, <const double *>pdy,
                                      <const int64_t *>pa, <double *>pdx)
    if status != NNF_OK:
        raise ValueError(f"maxout_backward: argmax has entries outside [0, {k})")


def softmax(bint log_, Py_ssize_t rows, Py_ssize_t n, cnp.ndarray x, cnp.ndarray y):
    cdef int t = _float_dtype("softmax", x), status
    _req("softmax", "x", x, t, rows * n)
    _req("softmax", "out", y, t, rows * n, True)
    cdef void *px = _p(x)
    cdef void *py = _p(y)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = nnf_softmax_s(log_, rows, n, <const float *>px, <float *>py)
        else:
            status = nnf_softmax_d(log_, rows, n, <const double *>px, <double *>py)
    check_status(status, "softmax")


def softmax_xent_forward(Py_ssize_t rows, Py_ssize_t n, cnp.ndarray x, cnp.ndarray labels,
                         double eps):
    cdef int t = _float_dtype("softmax_cross_entropy", x), status
    cdef double loss = 0
    _req("softmax_cross_entropy", "logits", x, t, rows * n)
    _req("softmax_cross_entropy", "labels", labels, cnp.NPY_INT64, rows)
    cdef void *px = _p(x)
    cdef void *pl = _p(labels)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = nnf_softmax_xent_fwd_s(rows, n, <const float *>px, <const int64_t *>pl,
                                            eps, &loss)
        else:
            status = nnf_softmax_xent_fwd_d(rows, n, <const double *>px, <const int64_t *>pl,
                                            eps, &loss)
    check_status(status, "softmax_cross_entropy")
    return loss


def softmax_xent_backward(Py_ssize_t rows, Py_ssize_t n, cnp.ndarray x, cnp.ndarray labels,
                          double eps, double scale, cnp.ndarray dx):
    cdef int t = _float_dtype("softmax_cross_entropy_backward", x), status
    _req("softmax_cross_entropy_backward", "logits", x, t, rows * n)
    _req("softmax_cross_entropy_backward", "labels", labels, cnp.NPY_INT64, rows)
    _req("softmax_cross_entropy_backward", "out", dx, t, rows * n, True)
    cdef void *px = _p(x)
    cdef void *pl = _p(labels)
    cdef void *pdx = _p(dx)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = nnf_softmax_xent_bwd_s(rows, n, <const float *>px, <const int64_t *>pl,
                                            eps, scale, <float *>pdx)
        else:
            status = nnf_softmax_xent_bwd_d(rows, n, <const double *>px, <const int64_t *>pl,
                                            eps, scale, <double *>pdx)
    check_status(status, "softmax_cross_entropy_backward")


def softmax_xent(Py_ssize_t rows, Py_ssize_t n, cnp.ndarray x, cnp.ndarray labels,
                 double eps, double scale, cnp.ndarray dx):
    """Loss (returned) and gradient (into dx) in one pass."""
    cdef int t = _float_dtype("softmax_cross_entropy_with_grad", x), status
    cdef double loss = 0
    _req("softmax_cross_entropy_with_grad", "logits", x, t, rows * n)
    _req("softmax_cross_entropy_with_grad", "labels", labels, cnp.NPY_INT64, rows)
    _req("softmax_cross_entropy_with_grad", "out", dx, t, rows * n, True)
    cdef void *px = _p(x)
    cdef void *pl = _p(labels)
    cdef void *pdx = _p(dx)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = nnf_softmax_xent_s(rows, n, <const float *>px, <const int64_t *>pl,
                                        eps, scale, &loss, <float *>pdx)
        else:
            status = nnf_softmax_xent_d(rows, n, <const double *>px, <const int64_t *>pl,
                                        eps, scale, &loss, <double *>pdx)
    check_status(status, "softmax_cross_entropy_with_grad")
    return loss


def pair_loss_forward(str kind, cnp.ndarray x, cnp.ndarray target):
    """Sum of the element-wise loss: kind "bce" (x = logits) or "mse" (x = prediction)."""
    cdef int t = _float_dtype(kind, x), status
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef double s = 0
    cdef bint bce = kind == "bce"
    _req(kind, "input", x, t, n)
    _req(kind, "target", target, t, n)
    cdef void *px = _p(x)
    cdef void *pt = _p(target)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            if bce:
                status = nnf_bce_logits_fwd_s(n, <const float *>px, <const float *>pt, &s)
            else:
                status = nnf_mse_fwd_s(n, <const float *>px, <const float *>pt, &s)
        else:
            if bce:
                status = nnf_bce_logits_fwd_d(n, <const double *>px, <const double *>pt, &s)
            else:
                status = nnf_mse_fwd_d(n, <const double *>px, <const double *>pt, &s)
    check_status(status, kind)
    return s


def pair_loss_backward(str kind, cnp.ndarray x, cnp.ndarray target, double scale,
                       cnp.ndarray dx):
    """dx = scale * (sigmoid(x) - target) for "bce", scale * (x - target) for "mse"."""
    cdef int t = _float_dtype(kind, x), status
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef bint bce = kind == "bce"
    _req(kind, "input", x, t, n)
    _req(kind, "target", target, t, n)
    _req(kind, "out", dx, t, n, True)
    cdef void *px = _p(x)
    cdef void *pt = _p(target)
    cdef void *pdx = _p(dx)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            if bce:
                status = nnf_bce_logits_bwd_s(n, <const float *>px, <const float *>pt, scale,
                                              <float *>pdx)
            else:
                status = nnf_mse_bwd_s(n, <const float *>px, <const float *>pt, scale,
                                       <float *>pdx)
        else:
            if bce:
                status = nnf_bce_logits_bwd_d(n, <const double *>px, <const double *>pt, scale,
                                              <double *>pdx)
            else:
                status = nnf_mse_bwd_d(n, <const double *>px, <const double *>pt, scale,
                                       <double *>pdx)
    check_status(status, kind)


VMATH = {"exp": 0, "expm1": 1, "log": 2, "log1p": 3, "tanh": 4, "erf": 5, "atan": 6,
         "sigmoid": 7}


def vmath(str fn, cnp.ndarray x, cnp.ndarray y):
    """y = fn(x) with nnfast's vectorised math on the active ISA (for accuracy tests)."""
    cdef int t = _float_dtype("vmath", x), status
    cdef int f = VMATH[fn]
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    _req("vmath", "x", x, t, n)
    _req("vmath", "out", y, t, n, True)
    cdef void *px = _p(x)
    cdef void *py = _p(y)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = nnf_vmath_s(f, n, <const float *>px, <float *>py)
        else:
            status = nnf_vmath_d(f, n, <const double *>px, <double *>py)
    check_status(status, "vmath")
