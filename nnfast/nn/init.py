"""Weight initialisers (torch.nn.init names), each filling an array in place from a Generator.

``fan_in``/``fan_out`` follow torch: for a weight of shape (out, in, *kernel) they are
``in * prod(kernel)`` and ``out * prod(kernel)``. Every function takes ``rng`` (a
``numpy.random.Generator``, an int seed, or None for the next stream of ``nnfast.manual_seed``)
and returns the array it filled. A :class:`~nnfast.nn.Parameter` is accepted for ``w`` too.
"""

from __future__ import annotations

import math

import numpy as np

from .._random import generator

__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "ones_",
    "orthogonal_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

_GAINS = {
    "linear": 1.0,
    "identity": 1.0,
    "sigmoid": 1.0,
    "conv2d": 1.0,
    "tanh": 5.0 / 3,
    "relu": math.sqrt(2.0),
    "selu": 3.0 / 4,
}


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for an activation (as torch.nn.init.calculate_gain)."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    try:
        return _GAINS[nonlinearity]
    except KeyError:
        raise ValueError(
            f"calculate_gain: unknown nonlinearity {nonlinearity!r}; expected one of "
            f"{sorted([*_GAINS, 'leaky_relu'])}"
        ) from None


def _array(w) -> np.ndarray:
    return w.data if hasattr(w, "grad") else w


def _fans(w: np.ndarray):
    if w.ndim < 2:
        raise ValueError(f"fan in and fan out need an array of at least 2 dims, got {w.shape}")
    receptive = int(np.prod(w.shape[2:], dtype=np.int64))
    return w.shape[1] * receptive, w.shape[0] * receptive


def _fill_uniform(w, bound, rng):
    a = _array(w)
    a[...] = generator(rng).uniform(-bound, bound, size=a.shape)
    return a


def _fill_normal(w, std, rng):
    a = _array(w)
    a[...] = generator(rng).normal(0.0, std, size=a.shape)
    return a


def constant_(w, value: float):
    a = _array(w)
    a.fill(value)
    return a


def zeros_(w):
    return constant_(w, 0.0)


def ones_(w):
    return constant_(w, 1.0)


def xavier_uniform_(w, gain: float = 1.0, rng=None):
    """Glorot & Bengio (2010): U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_array(w))
    return _fill_uniform(w, gain * math.sqrt(6.0 / (fan_in + fan_out)), rng)


def xavier_normal_(w, gain: float = 1.0, rng=None):
    """Glorot & Bengio (2010): N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_array(w))
    return _fill_normal(w, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


def _kaiming_std(w, a, mode, nonlinearity):
    fan_in, fan_out = _fans(_array(w))
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(w, a: float = 0.0, mode: str = "fan_in", nonlinearity="leaky_relu", rng=None):
    """He et al. (2015): U(-b, b) with b = gain * sqrt(3 / fan)."""
    return _fill_uniform(w, math.sqrt(3.0) * _kaiming_std(w, a, mode, nonlinearity), rng)


def kaiming_normal_(w, a: float = 0.0, mode: str = "fan_in", nonlinearity="leaky_relu", rng=None):
    """He et al. (2015): N(0, std^2) with std = gain / sqrt(fan)."""
    return _fill_normal(w, _kaiming_std(w, a, mode, nonlinearity), rng)


def orthogonal_(w, gain: float = 1.0, rng=None):
    """Saxe et al. (2014): a (semi-)orthogonal matrix from the QR of a Gaussian one, rows
    flattened over the trailing dimensions."""
    a = _array(w)
    if a.ndim < 2:
        raise ValueError(f"orthogonal_: needs at least 2 dims, got shape {a.shape}")
    rows, cols = a.shape[0], a.size // a.shape[0]
    flat = generator(rng).normal(size=(rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))  # uniform over the orthogonal group
    if rows < cols:
        q = q.T
    a[...] = (gain * q).reshape(a.shape)
    return a
