"""Shared cases for the element-wise benchmarks: numpy multi-pass baselines of each kernel."""

import numpy as np
from scipy.special import erf, expit

import nnfast.functional as F

SQ2 = np.float32(np.sqrt(2.0))
PDF = np.float32(1 / np.sqrt(2 * np.pi))


def _out(out, like):
    return np.empty_like(like) if out is None else out


# Each written as a careful numpy user would: in-place passes into the output (numpy's own
# threads: one), so that only the temporaries numpy cannot avoid are allocated (the baselines
# allocated their results, which at 16M elements took twice the time of tanh itself).
def _relu(x, out=None):
    return np.maximum(x, 0, out=_out(out, x))


def _relu_bwd(dy, x, y, out=None):
    return np.multiply(dy, y > 0, out=_out(out, dy))


def _sigmoid(x, out=None):
    y = np.negative(x, out=_out(out, x))
    np.exp(y, out=y)
    y += 1
    return np.reciprocal(y, out=y)


def _sigmoid_bwd(dy, x, y, out=None):
    dx = np.subtract(1, y, out=_out(out, dy))
    dx *= y
    dx *= dy
    return dx


def _tanh_bwd(dy, x, y, out=None):
    dx = np.multiply(y, y, out=_out(out, dy))
    np.subtract(1, dx, out=dx)
    dx *= dy
    return dx


def _gelu(x, out=None):
    y = np.multiply(x, 1 / SQ2, out=_out(out, x))
    erf(y, out=y)
    y += 1
    y *= x
    y *= 0.5
    return y


def _gelu_bwd(dy, x, y, out=None):
    dx = np.multiply(x, 1 / SQ2, out=_out(out, dy))
    erf(dx, out=dx)
    dx += 1
    dx *= 0.5
    dx += x * np.exp(-0.5 * x * x) * PDF
    dx *= dy
    return dx


def _softplus_bwd(dy, x, y, out=None):
    dx = expit(x, out=_out(out, dy))
    dx *= dy
    return dx


def _elu(x, out=None):
    y = np.expm1(x, out=_out(out, x))
    np.copyto(y, x, where=x > 0)
    return y


def _elu_bwd(dy, x, y, out=None):
    dx = np.add(y, 1, out=_out(out, dy))  # y + 1 below 0, and min(y + 1, 1) = 1 above
    np.minimum(dx, 1, out=dx)
    dx *= dy
    return dx


def _silu(x, out=None):
    y = expit(x, out=_out(out, x))
    y *= x
    return y


def _silu_bwd(dy, x, y, out=None):
    s = expit(x)
    dx = np.subtract(1, s, out=_out(out, dy))
    dx *= x
    dx += 1
    dx *= s
    dx *= dy
    return dx


# name -> (numpy forward(x, out=None), numpy backward(dy, x, y, out=None)); float32 in and out
NUMPY = {
    "relu": (_relu, _relu_bwd),
    "sigmoid": (_sigmoid, _sigmoid_bwd),
    "tanh": (lambda x, out=None: np.tanh(x, out=_out(out, x)), _tanh_bwd),
    "gelu": (_gelu, _gelu_bwd),
    "softplus": (lambda x, out=None: np.logaddexp(0, x, out=_out(out, x)), _softplus_bwd),
    "elu": (_elu, _elu_bwd),
    "silu": (_silu, _silu_bwd),
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
    """numpy's forward and backward into outputs of their own, as nnfast's write into y, dx."""
    f, b = NUMPY[name]
    y, dx = np.empty_like(x), np.empty_like(x)

    def both():
        f(x, out=y)
        b(dy, x, y, out=dx)

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
