# Convolution and pooling helpers (csrc/conv.h); included by _core.pyx.
from libc.stdint cimport int32_t


cdef extern from "conv.h" nogil:
    ctypedef struct nnf_conv_geom:
        int kh, kw, sh, sw, ph, pw, dh, dw
    Py_ssize_t nnf_conv_out_size(Py_ssize_t size, int k, int s, int p, int d)
    int nnf_im2col_s(const float *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                     const nnf_conv_geom *g, float *cols)
    int nnf_im2col_d(const double *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                     const nnf_conv_geom *g, double *cols)
    int nnf_col2im_s(const float *cols, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                     const nnf_conv_geom *g, float *dx)
    int nnf_col2im_d(const double *cols, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                     Py_ssize_t w, const nnf_conv_geom *g, double *dx)
    int nnf_conv_direct_fwd_s(const float *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                              Py_ssize_t w, const float *wk, Py_ssize_t cout, const float *bias,
                              int relu, const nnf_conv_geom *g, const nnf_conv_geom *pool,
                              float *y, int32_t *argmax)
    int nnf_conv_direct_fwd_d(const double *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                              Py_ssize_t w, const double *wk, Py_ssize_t cout,
                              const double *bias, int relu, const nnf_conv_geom *g,
                              const nnf_conv_geom *pool, double *y, int32_t *argmax)
    int nnf_conv_direct_bwd_w_s(const float *x, const float *dy, const float *y, Py_ssize_t n,
                                Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t cout,
                                const nnf_conv_geom *g, const nnf_conv_geom *pool,
                                const int32_t *argmax, int beta, float *dwk, float *db)
    int nnf_conv_direct_bwd_w_d(const double *x, const double *dy, const double *y,
                                Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                                Py_ssize_t cout, const nnf_conv_geom *g,
                                const nnf_conv_geom *pool, const int32_t *argmax, int beta,
                                double *dwk, double *db)
    int nnf_conv_direct_bwd_x_s(const float *dy, const float *y, const float *wk, Py_ssize_t n,
                                Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t cout,
                                const nnf_conv_geom *g, const nnf_conv_geom *pool,
                                const int32_t *argmax, float *dx)
    int nnf_conv_direct_bwd_x_d(const double *dy, const double *y, const double *wk,
                                Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                                Py_ssize_t cout, const nnf_conv_geom *g,
                                const nnf_conv_geom *pool, const int32_t *argmax, double *dx)
    int nnf_conv_gemm_fwd_s(const float *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                            Py_ssize_t w, const float *wk, Py_ssize_t cout, const float *bias,
                            int act, double param, int bf16, const nnf_conv_geom *g,
                            const nnf_conv_geom *pool, float *y, int32_t *argmax)
    int nnf_conv_gemm_fwd_d(const double *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                            Py_ssize_t w, const double *wk, Py_ssize_t cout, const double *bias,
                            int act, double param, int bf16, const nnf_conv_geom *g,
                            const nnf_conv_geom *pool, double *y, int32_t *argmax)
    int nnf_conv_gemm_bwd_s(const float *x, const float *dy, Py_ssize_t n, Py_ssize_t c,
                            Py_ssize_t h, Py_ssize_t w, const float *wk, Py_ssize_t cout,
                            int bf16, const nnf_conv_geom *g, const nnf_conv_geom *pool,
                            const int32_t *argmax, int beta, float *dwk, float *dx)
    int nnf_conv_gemm_bwd_d(const double *x, const double *dy, Py_ssize_t n, Py_ssize_t c,
                            Py_ssize_t h, Py_ssize_t w, const double *wk, Py_ssize_t cout,
                            int bf16, const nnf_conv_geom *g, const nnf_conv_geom *pool,
                            const int32_t *argmax, int beta, double *dwk, double *dx)
    void nnf_conv_profile(int on, double *seconds)
    int nnf_conv_winograd(int on)
    int nnf_conv_winograd_packed(int on)
    int nnf_conv_winograd_fused(int on)
    Py_ssize_t nnf_conv_direct_dx(Py_ssize_t max_k)
    bint nnf_conv_direct_fits(Py_ssize_t h, Py_ssize_t w, Py_ssize_t ho, Py_ssize_t wo,
                              const nnf_conv_geom *g)
    int nnf_conv_implicit(int on)
    int nnf_maxpool_fwd_s(const float *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                          Py_ssize_t w, const nnf_conv_geom *g, float *y, int32_t *argmax)
    int nnf_maxpool_fwd_d(const double *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                          Py_ssize_t w, const nnf_conv_geom *g, double *y, int32_t *argmax)
    int nnf_maxpool_bwd_s(const float *dy, const int32_t *argmax, Py_ssize_t n, Py_ssize_t c,
                          Py_ssize_t h, Py_ssize_t w, const nnf_conv_geom *g, float *dx)
    int nnf_maxpool_bwd_d(const double *dy, const int32_t *argmax, Py_ssize_t n, Py_ssize_t c,
                          Py_ssize_t h, Py_ssize_t w, const nnf_conv_geom *g, double *dx)
    int nnf_avgpool_fwd_s(const float *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                          Py_ssize_t w, const nnf_conv_geom *g, float *y)
    int nnf_avgpool_fwd_d(const double *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                          Py_ssize_t w, const nnf_conv_geom *g, double *y)
    int nnf_avgpool_bwd_s(const float *dy, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                          Py_ssize_t w, const nnf_conv_geom *g, float *dx)
    int nnf_avgpool_bwd_d(const double *dy, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h,
                          Py_ssize_t w, const nnf_conv_geom *g, double *dx)


cdef nnf_conv_geom _geom(tuple g) except *:
    cdef nnf_conv_geom out
    out.kh, out.kw, out.sh, out.sw, out.ph, out.pw, out.dh, out.dw = g
    return out


cdef int _float_type(cnp.ndarray a, str what) except -1:
    """NPY_FLOAT32 or NPY_FLOAT64 for a C-contiguous float array, else raise."""
    cdef int t = cnp.PyArray_TYPE(a)
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        raise TypeError(f"{what}: dtype must be float32 or float64")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{what}: arrays must be C-contiguous")
    return t


def conv_direct_fits(Py_ssize_t h, Py_ssize_t w, Py_ssize_t ho, Py_ssize_t wo, tuple geom):
    """Whether the direct kernels take an h x w -> ho x wo convolution of ``geom`` (conv.h's
    nnf_conv_direct_fits: their scratch stays of the images' size)."""
    cdef nnf_conv_geom g = _geom(geom)
    return nnf_conv_direct_fits(h, w, ho, wo, &g)


def conv_out_size(Py_ssize_t size, int k, int s, int p, int d):
    """Output length along one axis; -1 when the window does not fit the padded input."""
    return nnf_conv_out_size(size, k, s, p, d)


def im2col(cnp.ndarray x, tuple geom, cnp.ndarray cols):
    """cols (N*Ho*Wo, C*KH*KW) = im2col(x (N, C, H, W)); arrays C-contiguous, one dtype."""
    cdef int t = _float_type(x, "im2col")
    _float_type(cols, "im2col")
    cdef nnf_conv_geom g = _geom(geom)
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t ho = nnf_conv_out_size(h, g.kh, g.sh, g.ph, g.dh)
    cdef Py_ssize_t wo = nnf_conv_out_size(w, g.kw, g.sw, g.pw, g.dw)
    if (x.ndim != 4 or cols.ndim != 2 or ho < 0 or wo < 0 or cnp.PyArray_TYPE(cols) != t
            or cols.shape[0] != n * ho * wo or cols.shape[1] != c * g.kh * g.kw):
        raise ValueError("im2col: inconsistent shapes or geometry")
    cdef int status
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_im2col_s(<const float *>cnp.PyArray_DATA(x), n, c, h, w, &g,
                                  <float *>cnp.PyArray_DATA(cols))
    else:
        with nogil:
            status = nnf_im2col_d(<const double *>cnp.PyArray_DATA(x), n, c, h, w, &g,
                                  <double *>cnp.PyArray_DATA(cols))
    check_status(status, "im2col")


def col2im(cnp.ndarray cols, tuple geom, cnp.ndarray dx):
    """dx (N, C, H, W) = col2im(cols (N*Ho*Wo, C*KH*KW)), overwriting dx."""
    cdef int t = _float_type(cols, "col2im")
    _float_type(dx, "col2im")
    cdef nnf_conv_geom g = _geom(geom)
    cdef Py_ssize_t n = dx.shape[0], c = dx.shape[1], h = dx.shape[2], w = dx.shape[3]
    cdef Py_ssize_t ho = nnf_conv_out_size(h, g.kh, g.sh, g.ph, g.dh)
    cdef Py_ssize_t wo = nnf_conv_out_size(w, g.kw, g.sw, g.pw, g.dw)
    if (dx.ndim != 4 or cols.ndim != 2 or ho < 0 or wo < 0 or cnp.PyArray_TYPE(dx) != t
            or cols.shape[0] != n * ho * wo or cols.shape[1] != c * g.kh * g.kw):
        raise ValueError("col2im: inconsistent shapes or geometry")
    cdef int status
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_col2im_s(<const float *>cnp.PyArray_DATA(cols), n, c, h, w, &g,
                                  <float *>cnp.PyArray_DATA(dx))
    else:
        with nogil:
            status = nnf_col2im_d(<const double *>cnp.PyArray_DATA(cols), n, c, h, w, &g,
                                  <double *>cnp.PyArray_DATA(dx))
    check_status(status, "col2im")


cdef int _check_pool(str what, cnp.ndarray big, cnp.ndarray small, nnf_conv_geom *g) except -1:
    """big is the (N, C, H, W) input side, small the (N, C, Ho, Wo) output side."""
    cdef int t = _float_type(big, what)
    _float_type(small, what)
    if big.ndim != 4 or small.ndim != 4 or cnp.PyArray_TYPE(small) != t:
        raise ValueError(f"{what}: expected 4-D arrays of one dtype")
    cdef Py_ssize_t ho = nnf_conv_out_size(big.shape[2], g.kh, g.sh, g.ph, g.dh)
    cdef Py_ssize_t wo = nnf_conv_out_size(big.shape[3], g.kw, g.sw, g.pw, g.dw)
    if (ho < 0 or wo < 0 or small.shape[0] != big.shape[0] or small.shape[1] != big.shape[1]
            or small.shape[2] != ho or small.shape[3] != wo):
        raise ValueError(f"{what}: inconsistent shapes or geometry")
    return t


cdef int _check_argmax(cnp.ndarray argmax, cnp.ndarray y, str what="max_pool2d") except -1:
    if (cnp.PyArray_TYPE(argmax) != cnp.NPY_INT32 or not cnp.PyArray_IS_C_CONTIGUOUS(argmax)
            or argmax.size != y.size):
        raise ValueError(f"{what}: argmax must be a C-contiguous int32 array shaped like y")
    return 0


def max_pool2d(cnp.ndarray x, tuple geom, cnp.ndarray y, cnp.ndarray argmax):
    cdef nnf_conv_geom g = _geom(geom)
    cdef int t = _check_pool("max_pool2d", x, y, &g)
    _check_argmax(argmax, y)
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int status
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_maxpool_fwd_s(<const float *>cnp.PyArray_DATA(x), n, c, h, w, &g,
                                       <float *>cnp.PyArray_DATA(y),
                                       <int32_t *>cnp.PyArray_DATA(argmax))
    else:
        with nogil:
            status = nnf_maxpool_fwd_d(<const double *>cnp.PyArray_DATA(x), n, c, h, w, &g,
                                       <double *>cnp.PyArray_DATA(y),
                                       <int32_t *>cnp.PyArray_DATA(argmax))
    check_status(status, "max_pool2d")


def max_pool2d_backward(cnp.ndarray dy, cnp.ndarray argmax, tuple geom, cnp.ndarray dx):
    cdef nnf_conv_geom g = _geom(geom)
    cdef int t = _check_pool("max_pool2d_backward", dx, dy, &g)
    _check_argmax(argmax, dy)
    cdef Py_ssize_t n = dx.shape[0], c = dx.shape[1], h = dx.shape[2], w = dx.shape[3]
    cdef int status
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_maxpool_bwd_s(<const float *>cnp.PyArray_DATA(dy),
                                       <const int32_t *>cnp.PyArray_DATA(argmax), n, c, h, w,
                                       &g, <float *>cnp.PyArray_DATA(dx))
    else:
        with nogil:
            status = nnf_maxpool_bwd_d(<const double *>cnp.PyArray_DATA(dy),
                                       <const int32_t *>cnp.PyArray_DATA(argmax), n, c, h, w,
                                       &g, <double *>cnp.PyArray_DATA(dx))
    if status != NNF_OK:  # the shapes and geometry passed above: an index was out of range
        raise ValueError(f"max_pool2d_backward: argmax is out of range for the {h}x{w} input "
                         f"plane (indices must be -1 or in [0, {h * w}))")


def avg_pool2d(cnp.ndarray x, tuple geom, cnp.ndarray y):
    cdef nnf_conv_geom g = _geom(geom)
    cdef int t = _check_pool("avg_pool2d", x, y, &g)
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int status
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_avgpool_fwd_s(<const float *>cnp.PyArray_DATA(x), n, c, h, w, &g,
                                       <float *>cnp.PyArray_DATA(y))
    else:
        with nogil:
            status = nnf_avgpool_fwd_d(<const double *>cnp.PyArray_DATA(x), n, c, h, w, &g,
                                       <double *>cnp.PyArray_DATA(y))
    check_status(status, "avg_pool2d")


def avg_pool2d_backward(cnp.ndarray dy, tuple geom, cnp.ndarray dx):
    cdef nnf_conv_geom g = _geom(geom)
    cdef int t = _check_pool("avg_pool2d_backward", dx, dy, &g)
    cdef Py_ssize_t n = dx.shape[0], c = dx.shape[1], h = dx.shape[2], w = dx.shape[3]
    cdef int status
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_avgpool_bwd_s(<const float *>cnp.PyArray_DATA(dy), n, c, h, w, &g,
                                       <float *>cnp.PyArray_DATA(dx))
    else:
        with nogil:
            status = nnf_avgpool_bwd_d(<const double *>cnp.PyArray_DATA(dy), n, c, h, w, &g,
                                       <double *>cnp.PyArray_DATA(dx))
    check_status(status, "avg_pool2d_backward")


cdef int _check_conv(str what, cnp.ndarray x, cnp.ndarray wk, cnp.ndarray y,
                     nnf_conv_geom *g, const nnf_conv_geom *pool=NULL) except -1:
    """x (N, C, H, W), wk (Cout, C, KH, KW) and y (N, Cout, Ho, Wo) consistent, one dtype; with
    a pooling geometry, y is the pooled output (N, Cout, Hp, Wp)."""
    cdef int t = _float_type(x, what)
    _float_type(wk, what)
    _float_type(y, what)
    if x.ndim != 4 or wk.ndim != 4 or y.ndim != 4:
        raise ValueError(f"{what}: expected 4-D arrays")
    cdef Py_ssize_t ho = nnf_conv_out_size(x.shape[2], g.kh, g.sh, g.ph, g.dh)
    cdef Py_ssize_t wo = nnf_conv_out_size(x.shape[3], g.kw, g.sw, g.pw, g.dw)
    if pool != NULL and ho >= 0 and wo >= 0:
        ho = nnf_conv_out_size(ho, pool.kh, pool.sh, pool.ph, pool.dh)
        wo = nnf_conv_out_size(wo, pool.kw, pool.sw, pool.pw, pool.dw)
    if (cnp.PyArray_TYPE(wk) != t or cnp.PyArray_TYPE(y) != t or ho < 0 or wo < 0
            or wk.shape[1] != x.shape[1] or wk.shape[2] != g.kh or wk.shape[3] != g.kw
            or y.shape[0] != x.shape[0] or y.shape[1] != wk.shape[0] or y.shape[2] != ho
            or y.shape[3] != wo):
        raise ValueError(f"{what}: inconsistent shapes, dtypes or geometry")
    return t


cdef int _writeable(str what, cnp.ndarray out, str name) except -1:
    """ValueError unless the output array `out` may be written."""
    if not cnp.PyArray_ISWRITEABLE(out):
        raise ValueError(f"{what}: {name} must be writeable")
    return 0


cdef const void *_bias_data(str what, bias, int t, Py_ssize_t cout,
                            str name="bias") except? NULL:
    """The data of a contiguous (Cout,) bias (or its gradient, `name`) of dtype t, or NULL for
    None."""
    if bias is None:
        return NULL
    cdef cnp.ndarray b = bias
    if (cnp.PyArray_TYPE(b) != t or not cnp.PyArray_IS_C_CONTIGUOUS(b) or b.ndim != 1
            or b.shape[0] != cout):
        raise ValueError(f"{what}: {name} must be a contiguous (Cout,) array of x's dtype")
    return cnp.PyArray_DATA(b)


cdef const nnf_conv_geom *_pool_geom(str what, pool, argmax, cnp.ndarray y,
                                     nnf_conv_geom *pg, bint written=True) except? NULL:
    """The fused max pooling's geometry (in pg) with argmax checked against y (and writeable
    if ``written``), or NULL for pool None."""
    if pool is None:
        return NULL
    pg[0] = _geom(pool)
    if not isinstance(argmax, cnp.ndarray):
        raise TypeError(f"{what}: a fused pooling needs an int32 argmax array")
    _check_argmax(argmax, y, what)
    if written:
        _writeable(what, argmax, "argmax")
    return pg


cdef const nnf_conv_geom *_pooled_grad(str what, pool, argmax, cnp.ndarray dy, y,
                                       nnf_conv_geom *pg, const int32_t **pa) except? NULL:
    """A backward's pooling, whose gradient dy then is: its geometry (in pg) and argmax's data
    (in pa) checked against dy, or NULL (pa NULL) for pool None. ReLU's output y must be None
    with one (its derivative belongs on dy)."""
    pa[0] = NULL
    cdef const nnf_conv_geom *pp = _pool_geom(what, pool, argmax, dy, pg, False)
    if pp == NULL:
        return NULL
    if y is not None:
        raise ValueError(f"{what}: y must be None with a pooling (apply ReLU's derivative to dy)")
    pa[0] = <const int32_t *>cnp.PyArray_DATA(argmax)
    return pp


cdef int _check_pooled_status(int status, str what, const nnf_conv_geom *pool) except -1:
    """check_status, naming argmax when a backward through a pooling was refused (its other
    arguments were checked before)."""
    if status == NNF_EINVAL and pool != NULL:
        raise ValueError(f"{what}: argmax is out of range for the convolution's output plane "
                         "(indices must be -1 or in [0, Ho*Wo))")
    return check_status(status, what)


def conv2d_direct(cnp.ndarray x, cnp.ndarray wk, bias, tuple geom, bint relu, cnp.ndarray y,
                  pool=None, argmax=None):
    """y (N, Cout, Ho, Wo) = relu?(conv(x, wk) + bias) without a column matrix (conv.h); with
    ``pool`` (a max pooling's geometry) y is its pooling (N, Cout, Hp, Wp) and argmax (int32,
    like y) the indices into each Ho*Wo plane, as max_pool2d gives them."""
    cdef nnf_conv_geom g = _geom(geom), pg
    cdef const nnf_conv_geom *pp = _pool_geom("conv2d_direct", pool, argmax, y, &pg)
    cdef int t = _check_conv("conv2d_direct", x, wk, y, &g, pp)
    _writeable("conv2d_direct", y, "y")
    cdef int32_t *pa = <int32_t *>cnp.PyArray_DATA(argmax) if pp != NULL else NULL
    cdef const void *pb = _bias_data("conv2d_direct", bias, t, wk.shape[0])
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t cout = wk.shape[0]
    cdef int status
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_conv_direct_fwd_s(<const float *>cnp.PyArray_DATA(x), n, c, h, w,
                                           <const float *>cnp.PyArray_DATA(wk), cout,
                                           <const float *>pb, relu, &g, pp,
                                           <float *>cnp.PyArray_DATA(y), pa)
    else:
        with nogil:
            status = nnf_conv_direct_fwd_d(<const double *>cnp.PyArray_DATA(x), n, c, h, w,
                                           <const double *>cnp.PyArray_DATA(wk), cout,
                                           <const double *>pb, relu, &g, pp,
                                           <double *>cnp.PyArray_DATA(y), pa)
    check_status(status, "conv2d_direct")


cdef const void *_relu_output_data(str what, y, cnp.ndarray dy) except? NULL:
    """The data of ReLU's output y, like dy (shape, dtype, C order), or NULL for None."""
    if y is None:
        return NULL
    cdef cnp.ndarray u = y
    if (cnp.PyArray_TYPE(u) != cnp.PyArray_TYPE(dy) or not cnp.PyArray_IS_C_CONTIGUOUS(u)
            or (<object>u).shape != (<object>dy).shape):
        raise ValueError(f"{what}: y must be a C-contiguous array like dy")
    return cnp.PyArray_DATA(u)


def conv2d_direct_backward_weight(cnp.ndarray x, cnp.ndarray dy, tuple geom, bint accumulate,
                                  cnp.ndarray dwk, y=None, db=None, pool=None, argmax=None):
    """dwk (Cout, C, KH, KW) = (or += with accumulate) the weight gradient for dy, and db (Cout,)
    = the bias gradient if given; dy times ReLU's derivative if y, its output, is given. With
    ``pool`` (a max pooling's geometry; y None), dy is that pooling's gradient (N, Cout, Hp, Wp)
    and argmax (int32, like dy) the forward's, as conv2d_direct gives them: the output's
    gradient is dy scattered there (max_pool2d_backward), built a band at a time in cache."""
    cdef str what = "conv2d_direct_backward_weight"
    cdef nnf_conv_geom g = _geom(geom), pg
    cdef const int32_t *pa
    cdef const nnf_conv_geom *pp = _pooled_grad(what, pool, argmax, dy, y, &pg, &pa)
    cdef int t = _check_conv(what, x, dwk, dy, &g, pp)
    _writeable(what, dwk, "dwk")
    cdef const void *pu = _relu_output_data(what, y, dy)
    cdef void *pdb = <void *>_bias_data(what, db, t, dwk.shape[0], "db")
    if db is not None:
        _writeable(what, db, "db")
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t cout = dwk.shape[0]
    cdef int status
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_conv_direct_bwd_w_s(<const float *>cnp.PyArray_DATA(x),
                                             <const float *>cnp.PyArray_DATA(dy),
                                             <const float *>pu, n, c, h, w, cout, &g, pp, pa,
                                             accumulate, <float *>cnp.PyArray_DATA(dwk),
                                             <float *>pdb)
    else:
        with nogil:
            status = nnf_conv_direct_bwd_w_d(<const double *>cnp.PyArray_DATA(x),
                                             <const double *>cnp.PyArray_DATA(dy),
                                             <const double *>pu, n, c, h, w, cout, &g, pp, pa,
                                             accumulate, <double *>cnp.PyArray_DATA(dwk),
                                             <double *>pdb)
    _check_pooled_status(status, what, pp)


def conv2d_direct_backward_input(cnp.ndarray dy, cnp.ndarray wk, tuple geom, cnp.ndarray dx,
                                 y=None, pool=None, argmax=None):
    """dx (N, C, H, W) = the input gradient for dy (N, Cout, Ho, Wo), overwriting dx; dy times
    ReLU's derivative if y, its output, is given. ``pool`` and argmax as for
    conv2d_direct_backward_weight."""
    cdef str what = "conv2d_direct_backward_input"
    cdef nnf_conv_geom g = _geom(geom), pg
    cdef const int32_t *pa
    cdef const nnf_conv_geom *pp = _pooled_grad(what, pool, argmax, dy, y, &pg, &pa)
    cdef int t = _check_conv(what, dx, wk, dy, &g, pp)
    _writeable(what, dx, "dx")
    cdef const void *pu = _relu_output_data(what, y, dy)
    cdef Py_ssize_t n = dx.shape[0], c = dx.shape[1], h = dx.shape[2], w = dx.shape[3]
    cdef Py_ssize_t cout = wk.shape[0]
    cdef int status
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_conv_direct_bwd_x_s(<const float *>cnp.PyArray_DATA(dy),
                                             <const float *>pu,
                                             <const float *>cnp.PyArray_DATA(wk), n, c, h, w,
                                             cout, &g, pp, pa, <float *>cnp.PyArray_DATA(dx))
    else:
        with nogil:
            status = nnf_conv_direct_bwd_x_d(<const double *>cnp.PyArray_DATA(dy),
                                             <const double *>pu,
                                             <const double *>cnp.PyArray_DATA(wk), n, c, h, w,
                                             cout, &g, pp, pa, <double *>cnp.PyArray_DATA(dx))
    _check_pooled_status(status, what, pp)


def conv2d_gemm(cnp.ndarray x, cnp.ndarray wk, bias, tuple geom, int act, double param,
                bint bf16, cnp.ndarray y, pool=None, argmax=None):
    """y (N, Cout, Ho, Wo) = act(conv(x, wk) + bias), as GEMMs on groups of images (conv.h),
    act an nnf_act id (-1 for none) with its parameter, in the GEMM's epilogue; bf16 rounds
    the GEMM operands to bfloat16 (float32 only). float32 3x3 kernels of stride 1 and
    dilation 1 with at least 8 input channels run as Winograd F(2x2, 3x3) (conv_winograd).
    ``pool`` and argmax as for conv2d_direct."""
    cdef nnf_conv_geom g = _geom(geom), pg
    cdef const nnf_conv_geom *pp = _pool_geom("conv2d_gemm", pool, argmax, y, &pg)
    cdef int t = _check_conv("conv2d_gemm", x, wk, y, &g, pp)
    _writeable("conv2d_gemm", y, "y")
    cdef int32_t *pa = <int32_t *>cnp.PyArray_DATA(argmax) if pp != NULL else NULL
    cdef const void *pb = _bias_data("conv2d_gemm", bias, t, wk.shape[0])
    if bf16 and t != cnp.NPY_FLOAT32:
        raise TypeError("conv2d_gemm: bf16 needs float32 arrays")
    if act < 0:
        act = NNF_ACT_IDENTITY
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t cout = wk.shape[0]
    cdef int status
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_conv_gemm_fwd_s(<const float *>cnp.PyArray_DATA(x), n, c, h, w,
                                         <const float *>cnp.PyArray_DATA(wk), cout,
                                         <const float *>pb, act, param, bf16, &g, pp,
                                         <float *>cnp.PyArray_DATA(y), pa)
    else:
        with nogil:
            status = nnf_conv_gemm_fwd_d(<const double *>cnp.PyArray_DATA(x), n, c, h, w,
                                         <const double *>cnp.PyArray_DATA(wk), cout,
                                         <const double *>pb, act, param, 0, &g, pp,
                                         <double *>cnp.PyArray_DATA(y), pa)
    check_status(status, "conv2d_gemm")


def conv2d_gemm_backward(cnp.ndarray x, cnp.ndarray dy, cnp.ndarray wk, tuple geom,
                         bint accumulate, bint bf16, cnp.ndarray dwk, dx, pool=None,
                         argmax=None):
    """dwk (Cout, C, KH, KW) = (or += with accumulate) the weight gradient for dy
    (N, Cout, Ho, Wo), and dx (N, C, H, W) = the input gradient unless dx is None. ``pool``
    and argmax as for conv2d_direct_backward_weight: each group's output gradient is built
    in the thread's cache."""
    cdef nnf_conv_geom g = _geom(geom), pg
    cdef const int32_t *pa
    cdef const nnf_conv_geom *pp = _pooled_grad("conv2d_gemm_backward", pool, argmax, dy, None,
                                                &pg, &pa)
    cdef int t = _check_conv("conv2d_gemm_backward", x, dwk, dy, &g, pp)
    _check_conv("conv2d_gemm_backward", x, wk, dy, &g, pp)
    _writeable("conv2d_gemm_backward", dwk, "dwk")
    if bf16 and t != cnp.NPY_FLOAT32:
        raise TypeError("conv2d_gemm_backward: bf16 needs float32 arrays")
    cdef void *pdx = NULL
    cdef cnp.ndarray dxa
    if dx is not None:
        dxa = dx
        _float_type(dxa, "conv2d_gemm_backward")
        if cnp.PyArray_TYPE(dxa) != t or (<object>dxa).shape != (<object>x).shape:
            raise ValueError("conv2d_gemm_backward: dx must be shaped like x, of its dtype")
        _writeable("conv2d_gemm_backward", dxa, "dx")
        pdx = cnp.PyArray_DATA(dxa)
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t cout = wk.shape[0]
    cdef int status
    if t == cnp.NPY_FLOAT32:
        with nogil:
            status = nnf_conv_gemm_bwd_s(<const float *>cnp.PyArray_DATA(x),
                                         <const float *>cnp.PyArray_DATA(dy), n, c, h, w,
                                         <const float *>cnp.PyArray_DATA(wk), cout, bf16, &g,
                                         pp, pa, accumulate, <float *>cnp.PyArray_DATA(dwk),
                                         <float *>pdx)
    else:
        with nogil:
            status = nnf_conv_gemm_bwd_d(<const double *>cnp.PyArray_DATA(x),
                                         <const double *>cnp.PyArray_DATA(dy), n, c, h, w,
                                         <const double *>cnp.PyArray_DATA(wk), cout, 0, &g,
                                         pp, pa, accumulate, <double *>cnp.PyArray_DATA(dwk),
                                         <double *>pdx)
    _check_pooled_status(status, "conv2d_gemm_backward", pp)


def conv_profile(bint on):
    """Benchmark hook: (column seconds, total seconds) the batched convolutions (GEMM path,
    Winograd, direct kernels) spent since the last call, summed over threads (conv.h's
    nnf_conv_profile says what counts as column work); counting continues only while ``on``."""
    cdef double seconds[2]
    nnf_conv_profile(on, seconds)
    return seconds[0], seconds[1]


def conv_direct_dx(max_k=None):
    """Benchmark and test hook: the GEMM path takes the input gradient of layers with
    C*KH*KW <= max_k from the direct kernel (conv.h's nnf_conv_direct_dx; 0: never). Sets it
    unless ``max_k`` is None; returns the limit before. Not for use while convolutions run."""
    if max_k is not None:
        from nnfast._validate import integer  # the one integer check (TypeError, ValueError)

        max_k = integer(max_k, "max_k", "conv_direct_dx", low=0)
    return nnf_conv_direct_dx(-1 if max_k is None else max_k)


def conv_implicit(on=None):
    """Benchmark and test hook: the GEMM path takes its forward product and weight gradient
    from the implicit kernels, which read the image in place, where they apply (True, the
    default; conv.h's nnf_conv_implicit), or from GEMMs on column matrices (False). Sets it
    unless ``on`` is None; returns the setting before. Not for use while convolutions run."""
    if on is not None and not isinstance(on, bool):
        raise TypeError(f"conv_implicit: on must be a bool or None, got {type(on).__name__}")
    return bool(nnf_conv_implicit(-1 if on is None else int(on)))


_WINOGRAD_MODES = ("off", "auto", "always")


def conv_winograd(mode=None):
    """Benchmark and test hook: when float32 3x3 stride-1 convolutions run as Winograd
    F(2x2, 3x3): ``"auto"`` (the default: from 8 input channels), ``"always"``, or ``"off"``
    (plain GEMMs). Sets it unless ``mode`` is None; returns the mode before. Not for use while
    convolutions run."""
    if mode is not None and mode not in _WINOGRAD_MODES:
        raise ValueError(f"conv_winograd: mode must be one of {_WINOGRAD_MODES} or None")
    cdef int new = -1 if mode is None else _WINOGRAD_MODES.index(mode)
    return _WINOGRAD_MODES[nnf_conv_winograd(new)]


def conv_winograd_packed(on=None):
    """Test and benchmark hook: Winograd's bf16 GEMMs take operands packed by the convolution
    while the transforms' outputs are in cache (True, the default), or run through the bf16
    GEMM on whole groups (False); the results are the same to the bit, AMX's tile kernel's
    too. Sets it unless ``on`` is None; returns the setting before. Not for use while
    convolutions run."""
    if on is not None and not isinstance(on, bool):
        raise TypeError(f"conv_winograd_packed: on must be a bool or None, got {type(on).__name__}")
    return bool(nnf_conv_winograd_packed(-1 if on is None else int(on)))


def conv_winograd_fused(on=None):
    """Test and benchmark hook: Winograd's float32 forward and backward call the GEMMs'
    micro-kernel on their operands in place, transforming a few tiles at a time (True, the
    default), or run the GEMM on whole groups (False); the results are the same to the bit
    unless the GEMM would split a product's depth between threads. A job of too few groups to
    share between the threads always takes the second route. Sets it unless ``on`` is None;
    returns the setting before. Not for use while convolutions run."""
    if on is not None and not isinstance(on, bool):
        raise TypeError(f"conv_winograd_fused: on must be a bool or None, got {type(on).__name__}")
    return bool(nnf_conv_winograd_fused(-1 if on is None else int(on)))
