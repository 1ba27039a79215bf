"""Gradient clipping over Parameter lists (also importable as ``nnfast.nn.utils``, torch's home
for it).

Optimizers move every parameter of a group into one contiguous ``grad`` buffer (see
:func:`nnfast.optim.flatten_parameters`), so the global gradient norm is then one dot product.
"""

from __future__ import annotations

import math

import numpy as np

from .._arrays import flat_base


def _grads(parameters):
    if hasattr(parameters, "grad"):
        parameters = [parameters]
    grads = [p.grad for p in parameters]
    base = flat_base(grads)
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
