"""Activation modules, and the registry ``ACTIVATIONS`` mapping names to them.

Each activation caches its input and output in ``forward``; ``backward(dy)`` returns
``dy * act'(x)`` computed from whichever is cheaper. Shapes are unchanged: any (N, ...) array.
PReLU learns one slope per channel (axis 1) or one shared slope; Maxout reduces axis 1 by its
``pool_size``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from .module import Module, Parameter, _float_dtype, register

ACTIVATIONS: dict[str, type] = {}


def _activation(name):
    def deco(cls):
        ACTIVATIONS[name] = cls
        cls.name = name
        return register(cls)

    return deco


def activation_module(name):
    """A fresh activation module for ``name`` (None -> None), or ValueError listing the names."""
    if name is None:
        return None
    if isinstance(name, Module):
        return name
    try:
        cls = ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        ) from None
    return cls()


def _as_float(x):
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    return x


class _Elementwise(Module):
    """y = f(x) element-wise; subclasses give ``_f(x)`` and ``_df(dy, x, y)``."""

    def forward(self, x):
        x = _as_float(x)
        y = self._f(x)
        self._x, self._y = x, y
        return y

    def backward(self, grad_out):
        if getattr(self, "_y", None) is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        dy = np.asarray(grad_out, dtype=self._y.dtype)
        if dy.shape != self._y.shape:
            raise ValueError(
                f"{self!r}: grad_out has shape {dy.shape} but the output had shape {self._y.shape}"
            )
        return self._df(dy, self._x, self._y)


@_activation("identity")
class Identity(Module):
    """Returns its input unchanged (and the gradient too)."""

    def forward(self, x):
        return x

    def backward(self, grad_out):
        return grad_out


@_activation("step")
class BinaryStep(_Elementwise):
    """Heaviside step: 1 where x >= 0, else 0. Its derivative is taken as 0 everywhere."""

    def _f(self, x):
        return (x >= 0).astype(x.dtype)

    def _df(self, dy, x, y):
        return np.zeros_like(dy)


@_activation("sigmoid")
class Sigmoid(_Elementwise):
    def _f(self, x):
        return special.expit(x)

    def _df(self, dy, x, y):
        return dy * y * (1 - y)


@_activation("tanh")
class Tanh(_Elementwise):
    def _f(self, x):
        return np.tanh(x)

    def _df(self, dy, x, y):
        return dy * (1 - y * y)


@_activation("arctan")
class Arctan(_Elementwise):
    def _f(self, x):
        return np.arctan(x)

    def _df(self, dy, x, y):
        return dy / (1 + x * x)


@_activation("relu")
class ReLU(_Elementwise):
    def _f(self, x):
        return np.maximum(x, 0)

    def _df(self, dy, x, y):
        return np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)


@_activation("leaky_relu")
class LeakyReLU(_Elementwise):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def _f(self, x):
        return np.where(x > 0, x, x * self.negative_slope).astype(x.dtype, copy=False)

    def _df(self, dy, x, y):
        return np.where(x > 0, dy, dy * self.negative_slope).astype(dy.dtype, copy=False)

    def get_config(self):
        return {"negative_slope": self.negative_slope}


@_activation("elu")
class ELU(_Elementwise):
    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = float(alpha)

    def _f(self, x):
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype)

    def _df(self, dy, x, y):
        return np.where(x > 0, dy, dy * (y + self.alpha)).astype(dy.dtype, copy=False)

    def get_config(self):
        return {"alpha": self.alpha}


@_activation("softplus")
class Softplus(_Elementwise):
    """log(1 + exp(beta x)) / beta, the identity where beta x > threshold (as torch)."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta = float(beta)
        self.threshold = float(threshold)

    def _f(self, x):
        bx = x * self.beta
        y = np.logaddexp(0, bx) / self.beta
        return np.where(bx > self.threshold, x, y).astype(x.dtype, copy=False)

    def _df(self, dy, x, y):
        bx = x * self.beta
        return np.where(bx > self.threshold, dy, dy * special.expit(bx)).astype(dy.dtype)

    def get_config(self):
        return {"beta": self.beta, "threshold": self.threshold}


_SQRT_2_PI = math.sqrt(2.0 / math.pi)


@_activation("gelu")
class GELU(_Elementwise):
    """x * Phi(x) (``approximate="none"``, erf form) or its tanh approximation."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _f(self, x):
        if self.approximate == "tanh":
            return 0.5 * x * (1 + np.tanh(_SQRT_2_PI * (x + 0.044715 * x**3)))
        return 0.5 * x * (1 + special.erf(x / math.sqrt(2.0)))

    def _df(self, dy, x, y):
        if self.approximate == "tanh":
            t = np.tanh(_SQRT_2_PI * (x + 0.044715 * x**3))
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_PI * (1 + 3 * 0.044715 * x * x)
        else:
            d = 0.5 * (1 + special.erf(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / math.sqrt(
                2 * math.pi
            )
        return (dy * d).astype(dy.dtype, copy=False)

    def get_config(self):
        return {} if self.approximate == "none" else {"approximate": self.approximate}


@_activation("gelu_tanh")
class GELUTanh(GELU):
    def __init__(self):
        super().__init__("tanh")

    def get_config(self):
        return {}


@_activation("silu")
class SiLU(_Elementwise):
    def _f(self, x):
        return x * special.expit(x)

    def _df(self, dy, x, y):
        s = special.expit(x)
        return dy * s * (1 + x * (1 - s))


@_activation("prelu")
class PReLU(Module):
    """max(x, 0) + alpha * min(x, 0) with a learnable ``alpha``: one shared slope
    (``num_parameters=1``) or one per channel (axis 1 of an (N, C, ...) input)."""

    def __init__(self, num_parameters=1, init=0.25, *, dtype="float32"):
        super().__init__()
        self.num_parameters = int(num_parameters)
        self.init = float(init)
        self.weight = Parameter(np.full(self.num_parameters, init, _float_dtype(dtype)))
        self._x = None

    def _alpha(self, x):
        a = self.weight.data
        if self.num_parameters == 1:
            return a[0]
        if x.ndim < 2 or x.shape[1] != self.num_parameters:
            raise ValueError(
                f"{self!r}: expected input of shape (N, {self.num_parameters}, ...), got {x.shape}"
            )
        return a.reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward(self, x):
        x = np.asarray(x, dtype=self.weight.dtype)
        self._x = x
        return np.where(x > 0, x, x * self._alpha(x))

    def backward(self, grad_out):
        x = self._x
        dy = np.asarray(grad_out, dtype=x.dtype)
        neg = x <= 0
        contrib = np.where(neg, dy * x, 0)
        if self.num_parameters == 1:
            self.weight.grad += contrib.sum()
        else:
            axes = (0, *range(2, x.ndim))
            self.weight.grad += contrib.sum(axis=axes)
        return np.where(neg, dy * self._alpha(x), dy)

    def get_config(self):
        return {"num_parameters": self.num_parameters, "init": self.init}


@_activation("maxout")
class Maxout(Module):
    """Max over groups of ``pool_size`` consecutive channels (axis 1):
    (N, C * pool_size, ...) -> (N, C, ...) (Goodfellow et al., 2013)."""

    def __init__(self, pool_size=2):
        super().__init__()
        if pool_size < 1:
            raise ValueError(f"Maxout: pool_size must be >= 1, got {pool_size}")
        self.pool_size = int(pool_size)
        self._cache = None

    def forward(self, x):
        x = _as_float(x)
        k = self.pool_size
        if x.ndim < 2 or x.shape[1] % k:
            raise ValueError(
                f"{self!r}: expected input of shape (N, C * {k}, ...), got shape {x.shape}"
            )
        g = x.reshape(x.shape[0], x.shape[1] // k, k, *x.shape[2:])
        idx = g.argmax(axis=2)
        self._cache = (x.shape, idx)
        return np.take_along_axis(g, idx[:, :, None], axis=2)[:, :, 0]

    def backward(self, grad_out):
        shape, idx = self._cache
        dy = np.asarray(grad_out)
        k = self.pool_size
        dg = np.zeros((shape[0], shape[1] // k, k, *shape[2:]), dy.dtype)
        np.put_along_axis(dg, idx[:, :, None], dy[:, :, None], axis=2)
        return dg.reshape(shape)

    def output_shape(self, input_shape):
        if input_shape is None or len(input_shape) < 2 or input_shape[1] is None:
            return input_shape and (*input_shape[:1], None, *input_shape[2:])
        return (input_shape[0], input_shape[1] // self.pool_size, *input_shape[2:])

    def get_config(self):
        return {"pool_size": self.pool_size}


@register
class Softmax(Module):
    """Row-wise softmax over ``dim`` (stable: the row maximum is subtracted first)."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = int(dim)

    def forward(self, x):
        x = _as_float(x)
        z = x - x.max(axis=self.dim, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=self.dim, keepdims=True)
        self._y = z
        return z

    def backward(self, grad_out):
        y = self._y
        dy = np.asarray(grad_out, dtype=y.dtype)
        return y * (dy - (dy * y).sum(axis=self.dim, keepdims=True))

    def get_config(self):
        return {"dim": self.dim}


@register
class LogSoftmax(Module):
    """Row-wise log-softmax over ``dim``."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = int(dim)

    def forward(self, x):
        x = _as_float(x)
        z = x - x.max(axis=self.dim, keepdims=True)
        z -= np.log(np.exp(z).sum(axis=self.dim, keepdims=True))
        self._y = z
        return z

    def backward(self, grad_out):
        dy = np.asarray(grad_out, dtype=self._y.dtype)
        return dy - np.exp(self._y) * dy.sum(axis=self.dim, keepdims=True)

    def get_config(self):
        return {"dim": self.dim}
