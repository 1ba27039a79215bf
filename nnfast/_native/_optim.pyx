"""Thin Cython binding of the fused optimizer kernels in csrc/optim.c.

Callers (nnfast/optim/optimizer.py) pass flat, C-contiguous buffers of one dtype; the checks
here only keep C memory-safe. The GIL is released around the kernel."""

cdef extern from "optim.h" nogil:
    int nnf_adam_f32(Py_ssize_t n, float *p, const float *g, float *m, float *v, float step,
                     float b1, float b2, float eps_hat, float decay, int threads)
    int nnf_adam_f64(Py_ssize_t n, double *p, const double *g, double *m, double *v,
                     double step, double b1, double b2, double eps_hat, double decay,
                     int threads)

ctypedef fused real:
    float
    double


def adam(real[::1] p, const real[::1] g, real[::1] m, real[::1] v, double step, double b1,
         double b2, double eps_hat, double decay, int threads=1):
    """One Adam/AdamW step in place on p, m, v (see csrc/optim.h)."""
    cdef Py_ssize_t n = p.shape[0]
    cdef int status
    if g.shape[0] != n or m.shape[0] != n or v.shape[0] != n:
        raise ValueError(f"adam: p, g, m, v must have one length, got {n}, {g.shape[0]}, "
                         f"{m.shape[0]}, {v.shape[0]}")
    if n == 0:
        return
    with nogil:
        if real is float:
            status = nnf_adam_f32(n, &p[0], &g[0], &m[0], &v[0], <float>step, <float>b1,
                                  <float>b2, <float>eps_hat, <float>decay, threads)
        else:
            status = nnf_adam_f64(n, &p[0], &g[0], &m[0], &v[0], step, b1, b2, eps_hat, decay,
                                  threads)
    if status != 0:
        raise ValueError(f"adam: invalid arguments (status {status})")
