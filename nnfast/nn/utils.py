"""Flat parameter buffers and gradient clipping.

Optimizers move every parameter of a group into one contiguous ``data`` buffer and one ``grad``
buffer (each Parameter's arrays become views into them), so zeroing gradients is one fill, the
global gradient norm is one dot product and an update is a handful of passes over one array
instead of a handful per parameter.
"""

from __future__ import annotations

import math

import numpy as np


def _flat_base(arrays):
    """The 1-D array that ``arrays`` tile exactly, in order and contiguously, else None."""
    if not arrays:
        return None
    base = arrays[0].base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    start = base.__array_interface__["data"][0]
    offset = 0
    item = base.itemsize
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous or a.dtype != base.dtype:
            return None
        if a.__array_interface__["data"][0] != start + offset * item:
            return None
        offset += a.size
    return base if offset == base.size else None


def flatten_parameters(params):
    """Move ``params``' data and grads into two contiguous 1-D buffers; returns them.

    Parameters already laid out that way are left alone. All must share one dtype.
    """
    params = list(params)
    if not params:
        return np.empty(0, np.float32), np.empty(0, np.float32)
    dtypes = {p.dtype for p in params}
    if len(dtypes) != 1:
        raise TypeError(
            f"parameters of one group must share a dtype, got {sorted(map(str, dtypes))}"
        )
    data = _flat_base([p.data for p in params])
    grad = _flat_base([p.grad for p in params])
    if data is not None and grad is not None:
        return data, grad
    total = sum(p.size for p in params)
    (dtype,) = dtypes
    data = np.empty(total, dtype)
    grad = np.empty(total, dtype)
    o = 0
    for p in params:
        n = p.size
        data[o : o + n] = p.data.ravel()
        grad[o : o + n] = p.grad.ravel()
        p.data = data[o : o + n].reshape(p.shape)
        p.grad = grad[o : o + n].reshape(p.data.shape)
        o += n
    return data, grad


def _grads(parameters):
    if hasattr(parameters, "grad"):
        parameters = [parameters]
    grads = [p.grad for p in parameters]
    base = _flat_base(grads)
    return [base] if base is not None else [g.reshape(-1) for g in grads]


def _norm(arrays) -> float:
    return math.sqrt(sum(float(np.dot(a, a)) for a in arrays))  # per-array sums in float64


def grad_norm(parameters) -> float:
    """The global L2 norm of the parameters' gradients."""
    return _norm(_grads(parameters))


def clip_grad_norm_(parameters, max_norm: float, eps: float = 1e-6) -> float:
    """Scale gradients in place so their global L2 norm is at most ``max_norm`` (>= 0).

    Returns the norm before clipping (inf or NaN when a gradient is not finite; the gradients
    are then left untouched).
    """
    if not max_norm >= 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    grads = _grads(parameters)
    norm = _norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + eps)
        for g in grads:
            g *= scale
    return norm
