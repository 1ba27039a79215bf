"""Shared cases for the element-wise benchmarks: numpy multi-pass baselines of each kernel."""

import numpy as np
from scipy.special import erf, expit

import nnfast.functional as F

SQ2 = np.float32(np.sqrt(2.0))
PDF = np.float32(1 / np.sqrt(2 * np.pi))


def _np_gelu_bwd(dy, x):
    return dy * (0.5 * (1 + erf(x / SQ2)) + x * np.exp(-0.5 * x * x) * PDF)


# name -> (numpy forward, numpy backward(dy, x, y)); float32 in, float32 out
NUMPY = {
    "relu": (lambda x: np.maximum(x, 0), lambda dy, x, y: np.where(y > 0, dy, 0)),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda dy, x, y: dy * y * (1 - y)),
    "tanh": (np.tanh, lambda dy, x, y: dy * (1 - y * y)),
    "gelu": (lambda x: 0.5 * x * (1 + erf(x / SQ2)), lambda dy, x, y: _np_gelu_bwd(dy, x)),
    "softplus": (lambda x: np.logaddexp(0, x), lambda dy, x, y: dy * expit(x)),
    "elu": (
        lambda x: np.where(x > 0, x, np.expm1(x)),
        lambda dy, x, y: np.where(y > 0, dy, dy * (y + 1)),
    ),
    "silu": (lambda x: x * expit(x), lambda dy, x, y: dy * expit(x) * (1 + x * (1 - expit(x)))),
}
# the >= 3x numpy target at 1M elements applies to these
TARGET_3X = ("sigmoid", "tanh", "gelu", "softplus", "elu")


def operands(n, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    dy = rng.standard_normal(n).astype(np.float32)
    return x, dy, np.empty_like(x), np.empty_like(x)


def fused(name, x, dy, y, dx):
    act = F.ACTIVATION_FUNCTIONS[name]
    u = y if act.from_output else x

    def fwd():
        act.forward(x, out=y)

    def bwd():
        act.backward(dy, u, out=dx)

    def both():
        fwd()
        bwd()

    return fwd, bwd, both


def numpy_pair(name, x, dy):
    f, b = NUMPY[name]

    def both():
        y = f(x)
        b(dy, x, y)

    return both


def xent_operands(n, k, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k)).astype(np.float32), rng.integers(0, k, n)


def numpy_xent(x, labels):
    """Loss and gradient the numpy way (max, exp, sum, log, gather; softmax - onehot)."""
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = float((np.log(s[:, 0]) + m[:, 0] - x[np.arange(n), labels]).mean())
    g = e / s
    g[np.arange(n), labels] -= 1
    g /= n
    return loss, g
