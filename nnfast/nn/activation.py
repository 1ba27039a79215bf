"""Activation modules, and the registry ``ACTIVATIONS`` mapping names to them.

Each activation caches its input and output in ``forward``; ``backward(dy)`` returns
``dy * act'(x)`` computed from whichever is cheaper. Shapes are unchanged: any (N, ...) array.
PReLU learns one slope per channel (axis 1) or one shared slope; Maxout reduces axis 1 by its
``pool_size``.
"""

from __future__ import annotations

import numpy as np

from .. import _validate
from .. import functional as F
from .module import Module, Parameter, TorchModule, _float_dtype, real_array, register

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


def _number(owner, name, value):
    """A hyper-parameter as a float, not parsed from a string (None failed in float()); its
    range is the kernel's to check (_check_config)."""
    return _validate.real(value, name, type(owner).__name__, finite=False)


def _as_float(owner, x):
    x = real_array(owner, x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    return x


class _Elementwise(Module):
    """y = f(x) element-wise by the fused C kernel ``nnfast.functional.ACTIVATION_FUNCTIONS[name]``;
    backward takes y or x, whichever the kernel's derivative is written in. Subclasses only
    declare their hyper-parameters (``get_config`` doubles as the kernel's keywords)."""

    def forward(self, x):
        x = _as_float(self, x)
        fn = F.ACTIVATION_FUNCTIONS[self.name]
        y = fn.forward(x, **self.get_config())
        self._u = y if fn.from_output else x
        return y

    @classmethod
    def state_shapes(cls, config):
        return {}

    def torch_modules(self):
        # torch.nn's class of the same name and arguments (BinaryStep and Arctan are defined
        # by nnfast.export.torch_code)
        return [TorchModule(type(self).__name__, self.get_config(), {})]

    def _check_config(self):
        """Refuse parameters the kernel cannot take now, not at the first forward."""
        F.act_kernel_args(type(self).__name__, self.name, self.get_config())

    def backward(self, grad_out):
        u = getattr(self, "_u", None)
        if u is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        dy = self._grad_out(grad_out, u.shape, u.dtype)
        return F.ACTIVATION_FUNCTIONS[self.name].backward(dy, u, **self.get_config())


@_activation("identity")
class Identity(Module):
    """Returns its input unchanged (and the gradient too)."""

    def forward(self, x):
        return x

    def backward(self, grad_out):
        return grad_out

    @classmethod
    def state_shapes(cls, config):
        return {}

    def torch_modules(self):
        return [TorchModule("Identity", {}, {})]


@_activation("step")
class BinaryStep(_Elementwise):
    """Heaviside step: 1 where x > 0, else 0. Its derivative is taken as 0 everywhere."""


@_activation("sigmoid")
class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x))."""


@_activation("tanh")
class Tanh(_Elementwise):
    """tanh(x)."""


@_activation("arctan")
class Arctan(_Elementwise):
    """arctan(x)."""


@_activation("relu")
class ReLU(_Elementwise):
    """max(x, 0)."""


@_activation("leaky_relu")
class LeakyReLU(_Elementwise):
    """x where x > 0, else negative_slope * x."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = _number(self, "negative_slope", negative_slope)
        self._check_config()

    def get_config(self):
        return {"negative_slope": self.negative_slope}


@_activation("elu")
class ELU(_Elementwise):
    """x where x > 0, else alpha (exp(x) - 1)."""

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = _number(self, "alpha", alpha)
        self._check_config()

    def get_config(self):
        return {"alpha": self.alpha}


@_activation("softplus")
class Softplus(_Elementwise):
    """log(1 + exp(beta x)) / beta, the identity where beta x > threshold (as torch)."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta = _number(self, "beta", beta)
        self.threshold = _number(self, "threshold", threshold)
        self._check_config()

    def get_config(self):
        return {"beta": self.beta, "threshold": self.threshold}


@_activation("gelu")
class GELU(_Elementwise):
    """x * Phi(x) (``approximate="none"``, erf form) or its tanh approximation."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def get_config(self):
        return {} if self.approximate == "none" else {"approximate": self.approximate}


@_activation("silu")
class SiLU(_Elementwise):
    """x * sigmoid(x)."""


@_activation("prelu")
class PReLU(Module):
    """max(x, 0) + alpha * min(x, 0) with a learnable ``alpha``: one shared slope
    (``num_parameters=1``) or one per channel (axis 1 of an (N, C, ...) input)."""

    def __init__(self, num_parameters=1, init=0.25, *, dtype="float32"):
        super().__init__()
        self.num_parameters = _validate.integer(num_parameters, "num_parameters", "PReLU", low=1)
        self.init = _validate.real(init, "init", "PReLU")
        self.weight = Parameter(np.full(self.num_parameters, init, _float_dtype(dtype)))
        self._x = None

    def forward(self, x):
        x = real_array(self, x).astype(self.weight.dtype, copy=False)
        if self.num_parameters != 1 and (x.ndim < 2 or x.shape[1] != self.num_parameters):
            raise ValueError(
                f"{self!r}: expected input of shape (N, {self.num_parameters}, ...), got {x.shape}"
            )
        self._x = x
        return F.prelu(x, self.weight.data)

    def backward(self, grad_out):
        if self._x is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        dy = self._grad_out(grad_out, self._x.shape, self._x.dtype)
        dx, dalpha = F.prelu_backward(dy, self._x, self.weight.data)
        self.weight.grad += dalpha.sum() if self.num_parameters == 1 else dalpha
        return dx

    def get_config(self):
        return {"num_parameters": self.num_parameters, "init": self.init}

    @classmethod
    def state_shapes(cls, config):
        n = _validate.integer(config.get("num_parameters", 1), "num_parameters", "PReLU", low=1)
        return {"weight": (n,)}

    def torch_modules(self):
        return [TorchModule("PReLU", self.get_config(), {"weight": "weight"})]


@_activation("maxout")
class Maxout(Module):
    """Max over groups of ``pool_size`` consecutive channels (axis 1):
    (N, C * pool_size, ...) -> (N, C, ...) (Goodfellow et al., 2013)."""

    def __init__(self, pool_size=2):
        super().__init__()
        self.pool_size = _validate.integer(pool_size, "pool_size", "Maxout", low=1)
        self._argmax = None

    def forward(self, x):
        x = _as_float(self, x)
        k = self.pool_size
        if x.ndim < 2 or x.shape[1] % k:
            raise ValueError(
                f"{self!r}: expected input of shape (N, C * {k}, ...), got shape {x.shape}"
            )
        y, self._argmax = F.maxout(x, k)
        self._dtype = x.dtype
        return y

    def backward(self, grad_out):
        if self._argmax is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        dy = self._grad_out(grad_out, self._argmax.shape, self._dtype)
        return F.maxout_backward(dy, self._argmax, self.pool_size)

    def output_shape(self, input_shape):
        if input_shape is None or len(input_shape) < 2 or input_shape[1] is None:
            return input_shape and (*input_shape[:1], None, *input_shape[2:])
        return (input_shape[0], input_shape[1] // self.pool_size, *input_shape[2:])

    def get_config(self):
        return {"pool_size": self.pool_size}

    @classmethod
    def state_shapes(cls, config):
        return {}

    def torch_modules(self):
        return [TorchModule("Maxout", self.get_config(), {})]  # defined by torch_code


def _check_dim(layer, x):
    if not -x.ndim <= layer.dim < x.ndim:
        raise ValueError(f"{layer!r}: dim {layer.dim} is out of range for input of shape {x.shape}")


@register
class Softmax(Module):
    """Row-wise softmax over ``dim`` (stable: the row maximum is subtracted first)."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = _validate.integer(dim, "dim", type(self).__name__)
        self._y = None

    def forward(self, x):
        x = _as_float(self, x)
        _check_dim(self, x)
        if self.dim in (-1, x.ndim - 1):
            z = F.softmax(x)
        else:
            z = x - x.max(axis=self.dim, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=self.dim, keepdims=True)
        self._y = z
        return z

    def backward(self, grad_out):
        y = self._y
        if y is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        dy = self._grad_out(grad_out, y.shape, y.dtype)
        return y * (dy - (dy * y).sum(axis=self.dim, keepdims=True))

    def get_config(self):
        return {"dim": self.dim}

    @classmethod
    def state_shapes(cls, config):
        return {}

    def torch_modules(self):
        return [TorchModule(type(self).__name__, self.get_config(), {})]


@register
class LogSoftmax(Module):
    """Row-wise log-softmax over ``dim``."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = _validate.integer(dim, "dim", type(self).__name__)
        self._y = None

    def forward(self, x):
        x = _as_float(self, x)
        _check_dim(self, x)
        if self.dim in (-1, x.ndim - 1):
            z = F.log_softmax(x)
        else:
            z = x - x.max(axis=self.dim, keepdims=True)
            z -= np.log(np.exp(z).sum(axis=self.dim, keepdims=True))
        self._y = z
        return z

    def backward(self, grad_out):
        if self._y is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        dy = self._grad_out(grad_out, self._y.shape, self._y.dtype)
        return dy - np.exp(self._y) * dy.sum(axis=self.dim, keepdims=True)

    def get_config(self):
        return {"dim": self.dim}

    @classmethod
    def state_shapes(cls, config):
        return {}

    def torch_modules(self):
        return [TorchModule(type(self).__name__, self.get_config(), {})]
