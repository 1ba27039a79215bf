# Fused optimizer updates (csrc/optim.h); included by _core.pyx after _eltwise.pxi (its argument
# checks). Callers (nnfast/optim/optimizer.py) pass flat, C-contiguous buffers of one dtype; the
# checks here only keep C memory-safe.

cdef extern from "optim.h" nogil:
    int nnf_adam_s(Py_ssize_t n, float *p, const float *g, float *m, float *v, float step,
                   float b1, float b2, float eps_hat, float decay)
    int nnf_adam_d(Py_ssize_t n, double *p, const double *g, double *m, double *v,
                   double step, double b1, double b2, double eps_hat, double decay)


def adam(cnp.ndarray p, cnp.ndarray g, cnp.ndarray m, cnp.ndarray v, double step, double b1,
         double b2, double eps_hat, double decay):
    """One Adam/AdamW step in place on p, m, v (see csrc/optim.h), on the shared threads."""
    cdef int t = _float_dtype("adam", p), status
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    _req("adam", "p", p, t, n, True)
    _req("adam", "grad", g, t, n)
    _req("adam", "exp_avg", m, t, n, True)
    _req("adam", "exp_avg_sq", v, t, n, True)
    cdef void *pp = _p(p)
    cdef void *pg = _p(g)
    cdef void *pm = _p(m)
    cdef void *pv = _p(v)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = nnf_adam_s(n, <float *>pp, <const float *>pg, <float *>pm, <float *>pv,
                                <float>step, <float>b1, <float>b2, <float>eps_hat,
                                <float>decay)
        else:
            status = nnf_adam_d(n, <double *>pp, <const double *>pg, <double *>pm,
                                <double *>pv, step, b1, b2, eps_hat, decay)
    check_status(status, "adam")
