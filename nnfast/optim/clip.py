"""Gradient clipping over Parameter lists (also importable as ``nnfast.nn.utils``, torch's home
for it).

Optimizers move every parameter of a group into one contiguous ``grad`` buffer (see
:func:`nnfast.optim.flatten_parameters`), so the global gradient norm is then one dot product.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate
from .._arrays import flat_base


def _grads(parameters, what):
    if hasattr(parameters, "grad"):
        parameters = [parameters]
    if hasattr(parameters, "named_parameters"):  # a model: its parameters() were meant
        raise TypeError(f"{what}: pass model.parameters(), not the model")
    try:
        parameters = list(parameters)
    except TypeError:
        raise TypeError(f"{what}: parameters must be Parameters, got "
                        f"{type(parameters).__name__}") from None  # fmt: skip
    if not all(hasattr(p, "grad") and hasattr(p, "set_storage") for p in parameters):
        raise TypeError(f"{what}: parameters must be nnfast Parameters")
    grads = [p.grad for p in parameters]
    base = flat_base(grads)
    return [base] if base is not None else [g.reshape(-1) for g in grads]


def _norm(arrays) -> float:
    return math.sqrt(sum(float(np.dot(a, a)) for a in arrays))  # per-array sums in float64


def grad_norm(parameters) -> float:
    """The global L2 norm of the parameters' gradients."""
    return _norm(_grads(parameters, "grad_norm"))


def clip_grad_norm_(parameters, max_norm: float, eps: float = 1e-6) -> float:
    """Scale gradients in place so their global L2 norm is at most ``max_norm`` (>= 0).

    Returns the norm before clipping (inf or NaN when a gradient is not finite; the gradients
    are then left untouched).
    """
    max_norm = _validate.real(max_norm, "max_norm", "clip_grad_norm_", low=0.0, finite=False)
    eps = _validate.real(eps, "eps", "clip_grad_norm_", low=0.0)
    grads = _grads(parameters, "clip_grad_norm_")
    norm = _norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + eps)
        for g in grads:
            g *= scale
    return norm
