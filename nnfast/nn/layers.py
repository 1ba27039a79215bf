"""Linear, Dropout, BatchNorm1d, Flatten.

Shapes: N is the batch. Each layer's ``forward`` caches what ``backward`` needs; ``backward``
adds (``+=``) into parameter gradients and returns a new array for the input gradient.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _gemm, _validate
from .. import functional as F
from .._convops import whole
from .._random import generator
from . import init
from .activation import activation_module
from .module import (
    Module,
    Parameter,
    TorchModule,
    _float_dtype,
    real_array,
    register,
    weight_and_bias,
)

gemm = _gemm.gemm


def _with_activation(layer: TorchModule, activation) -> list:
    """A layer's torch modules: the layer, then its fused activation as a module of its own."""
    if activation is None:
        return [layer]
    return [layer, *activation_module(activation).torch_modules()]


def _check_shape(layer, shape, width, what="features"):
    """ValueError naming the layer unless ``shape`` (None entries unknown) is (N, width)."""
    shape = tuple(shape)
    if len(shape) != 2 or shape[1] not in (None, width):
        raise ValueError(
            f"{layer!r}: expected input of shape (N, {width}) ({width} {what}), got shape {shape}"
        )


def _check_input(layer, x, width, what="features"):
    """x as an array, or ValueError naming the layer and the shape unless it is (N, width)."""
    x = real_array(layer, x)
    _check_shape(layer, x.shape, width, what)
    return x


@register
class Linear(Module):
    """``y = act(x @ W.T + b)``: x (N, in_features) -> y (N, out_features).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
        Learn a per-output bias ``b`` of shape (out_features,).
    activation : str or None
        A name from ``nnfast.nn.ACTIVATIONS`` (``"relu"``, ``"tanh"``, ...) applied to the output;
        backward goes through it first.
    dtype : float32 (default) or float64
    seed : int, Generator or None
        For the initial weights; None takes the next stream of ``nnfast.manual_seed``.

    The weight is (out_features, in_features) and initialised as in torch:
    U(-1/sqrt(in), 1/sqrt(in)) for weight and bias. Inputs of another dtype are converted.
    """

    can_skip_input_grad = True

    def __init__(
        self, in_features, out_features, bias=True, activation=None, *, dtype="float32", seed=None
    ):
        super().__init__()
        self.in_features = whole(in_features, "in_features", 1, "Linear")
        self.out_features = whole(out_features, "out_features", 1, "Linear")
        dtype = _float_dtype(dtype)
        rng = generator(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        w = np.empty((self.out_features, self.in_features), dtype)
        self.weight = Parameter(init.kaiming_uniform_(w, a=math.sqrt(5), rng=rng))
        if bias:
            b = rng.uniform(-bound, bound, size=self.out_features).astype(dtype)
            self.bias = Parameter(b)
        else:
            self.bias = None
        if activation is not None and activation not in F.ACTIVATION_FUNCTIONS:
            raise ValueError(
                f"Linear: unknown activation {activation!r}; expected one of "
                f"{sorted(F.ACTIVATION_FUNCTIONS)} (use a separate layer for prelu and maxout)"
            )
        self.activation = activation
        self._x = self._u = None
        self._precision = "fp32"  # the last forward's products' (its backward's too)

    def forward(self, x):
        """x (N, in_features) -> (N, out_features)."""
        w, b = weight_and_bias(self)
        x = _check_input(self, x, self.in_features)
        if x.dtype != w.dtype:
            x = x.astype(w.dtype)
        self._x = x
        # what the forward's products take (bf16 on nnfast's kernels only), kept for backward:
        # a backward outside the forward's matmul_precision block went fp32 (Conv2d's did not)
        bf16 = w.dtype == np.float32 and _gemm.get_matmul_precision() == "bf16"
        self._precision = "bf16" if bf16 and _gemm.get_gemm_backend() == "native" else "fp32"
        act = self.activation
        # y = act(x @ W.T + b): bias and activation applied to each GEMM tile while in cache;
        # keep what the derivative is written in (the output, or the pre-activation)
        # (the precision passed, not read again: set from another thread in between, the
        # forward ran in one and the backward in the other)
        p = self._precision
        if act is None or F.ACTIVATION_FUNCTIONS[act].from_output:
            y = gemm(x, w, trans_b=True, bias=b, activation=act, precision=p)
            self._u = y
        else:
            z = np.empty((x.shape[0], self.out_features), w.dtype)
            y = gemm(x, w, trans_b=True, bias=b, activation=act, preact_out=z, precision=p)
            self._u = z
        return y

    def backward(self, grad_out, input_grad=True):
        """grad_out (N, out) -> dx (N, in) (assigned); W.grad += dy.T @ x, b.grad += sum(dy)."""
        if self._x is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        dy = self._grad_out(grad_out, self._u.shape, self.weight.dtype)
        has_bias = self.bias is not None
        if self.activation is not None:  # dz = dy * act'(.) and db = sum(dz) in one pass
            dy, db = F.bias_act_backward(dy, self._u, self.activation, bias_grad=has_bias)
        elif has_bias:
            db = dy.sum(axis=0)
        if has_bias:
            self.bias.grad += db
        gw, beta = self.weight.grad_target()
        gemm(dy, self._x, gw, trans_a=True, beta=beta, precision=self._precision)
        if not input_grad:
            return None
        # dx (N, in) = dy (N, out) @ W (out, in)
        return gemm(dy, self.weight.data, precision=self._precision)

    def output_shape(self, input_shape):
        if input_shape is None:
            return (None, self.out_features)
        _check_shape(self, input_shape, self.in_features)
        return (input_shape[0], self.out_features)

    @classmethod
    def state_shapes(cls, config):
        n_in = whole(config.get("in_features"), "in_features", 1, "Linear")
        n_out = whole(config.get("out_features"), "out_features", 1, "Linear")
        shapes = {"weight": (n_out, n_in)}
        if config.get("bias", True):
            shapes["bias"] = (n_out,)
        return shapes

    def torch_modules(self):
        kwargs = {"in_features": self.in_features, "out_features": self.out_features}
        kwargs["bias"] = self.bias is not None
        tensors = {"weight": "weight", **({"bias": "bias"} if self.bias is not None else {})}
        return _with_activation(TorchModule("Linear", kwargs, tensors), self.activation)

    def get_config(self):
        cfg = {"in_features": self.in_features, "out_features": self.out_features}
        if self.bias is None:
            cfg["bias"] = False
        if self.activation is not None:
            cfg["activation"] = self.activation
        return cfg

    def extra_repr(self):
        s = f"{self.in_features}, {self.out_features}"
        if self.bias is None:
            s += ", bias=False"
        if self.activation is not None:
            s += f", activation={self.activation!r}"
        return s


@register
class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = _validate.integer(start_dim, "start_dim", "Flatten")
        self.end_dim = _validate.integer(end_dim, "end_dim", "Flatten")
        self._shape = None

    def _new_shape(self, shape):
        nd = len(shape)
        s = self.start_dim % nd if nd else 0
        e = self.end_dim % nd if nd else 0
        if s > e:
            raise ValueError(f"{self!r}: input of shape {tuple(shape)} has no dims {s}..{e}")
        mid = None if any(d is None for d in shape[s : e + 1]) else math.prod(shape[s : e + 1])
        return (*shape[:s], mid, *shape[e + 1 :])

    def forward(self, x):
        x = np.asarray(x)
        self._shape = x.shape
        return x.reshape(self._new_shape(x.shape))

    def backward(self, grad_out):
        if self._shape is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        return self._grad_out(grad_out, self._new_shape(self._shape)).reshape(self._shape)

    def output_shape(self, input_shape):
        return None if input_shape is None else self._new_shape(input_shape)

    def get_config(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    @classmethod
    def state_shapes(cls, config):
        return {}

    def torch_modules(self):
        return [TorchModule("Flatten", self.get_config(), {})]


@register
class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the
    rest by ``1 / (1 - p)``; in ``eval()`` the identity. ``seed`` fixes the mask stream."""

    def __init__(self, p=0.5, *, seed=None):
        super().__init__()
        self.p = _validate.real(p, "p", "Dropout", low=0.0, high=1.0, high_open=True)
        self._rng = generator(seed)
        self._mask = None
        self._shape = None  # the last forward's input shape

    def forward(self, x):
        x = np.asarray(x)
        self._shape = x.shape
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
        # mask = (u >= p) / (1 - p): one array, reused by backward
        mask = self._rng.random(x.shape, dtype=dtype)
        np.greater_equal(mask, self.p, out=mask, casting="unsafe")
        mask *= 1.0 / (1.0 - self.p)
        self._mask = mask
        return x * mask

    def backward(self, grad_out):
        if self._shape is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        if self._mask is None:
            return self._grad_out(grad_out, self._shape)
        return self._grad_out(grad_out, self._mask.shape) * self._mask

    def get_config(self):
        return {"p": self.p}

    @classmethod
    def state_shapes(cls, config):
        return {}

    def torch_modules(self):
        return [TorchModule("Dropout", self.get_config(), {})]


def _channel_dot(a, b):
    """sum of a * b over every axis but 1, without a temporary: (N, C, ...) -> (C,)."""
    idx = "abcdefgh"[: a.ndim]
    return np.einsum(f"{idx},{idx}->b", a, b)


class _BatchNorm(Module):
    """Batch normalisation (Ioffe & Szegedy, 2015) per channel (axis 1) of (N, C, ...) inputs,
    statistics over every other axis. Subclasses check the input's shape (``_check``).

    Training normalises with the batch mean and biased variance and updates
    ``running_mean``/``running_var`` (unbiased) with ``momentum``; ``eval()`` uses the running
    statistics. ``affine`` learns ``weight`` (gamma) and ``bias`` (beta) of shape (C,).
    """

    def __init__(
        self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
        *, dtype="float32",
    ):  # fmt: skip
        super().__init__()
        name = type(self).__name__
        self.num_features = whole(num_features, "num_features", 1, name)
        if momentum is None:
            raise ValueError(
                f"{name}: momentum=None (torch's cumulative average) is not supported; give a "
                f"float in [0, 1]"
            )
        self.eps = float(eps)
        self.momentum = float(momentum)
        # a negative eps makes NaN outputs, a NaN momentum NaN running statistics
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"{name}: eps must be finite and > 0, got {eps!r}")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1], got {momentum!r}")
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dtype = _float_dtype(dtype)
        if self.affine:
            self.weight = Parameter(np.ones(self.num_features, dtype))
            self.bias = Parameter(np.zeros(self.num_features, dtype))
        else:
            self.weight = self.bias = None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype))
            self.register_buffer("running_var", np.ones(self.num_features, dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        self._cache = None

    def _check_shape(self, shape):
        """ValueError naming this layer unless ``shape`` (None entries unknown) fits it."""
        raise NotImplementedError

    def forward(self, x):
        x = real_array(self, x)
        self._check_shape(x.shape)
        dtype = self.weight.dtype if self.affine else (
            self.running_mean.dtype if self.track_running_stats else x.dtype
        )  # fmt: skip
        if x.dtype != dtype:
            x = x.astype(dtype)
        axes = (0, *range(2, x.ndim))  # every axis but the channels'
        cshape = (1, -1) + (1,) * (x.ndim - 2)  # (C,) broadcast along axis 1
        batch_stats = self.training or not self.track_running_stats
        if batch_stats:
            n = x.size // self.num_features
            if n < 2 and self.training:
                raise ValueError(f"{self!r}: training needs more than 1 value per channel, got {n}")
            mean = x.mean(axis=axes)
            xc = x - mean.reshape(cshape)
            var = _channel_dot(xc, xc) / n
            if self.training and self.track_running_stats:
                m = self.momentum
                self.running_mean *= 1 - m
                self.running_mean += m * mean
                self.running_var *= 1 - m
                self.running_var += (m * n / max(n - 1, 1)) * var
                self.num_batches_tracked += 1
        else:
            xc = x - self.running_mean.reshape(cshape)
            var = self.running_var
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(dtype)
        x_hat = xc
        x_hat *= inv_std.reshape(cshape)
        self._cache = (x_hat, inv_std, batch_stats)
        if not self.affine:
            return x_hat.copy()
        return x_hat * self.weight.data.reshape(cshape) + self.bias.data.reshape(cshape)

    def backward(self, grad_out):
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        x_hat, inv_std, batch_stats = self._cache
        dy = self._grad_out(grad_out, x_hat.shape, x_hat.dtype)
        axes = (0, *range(2, dy.ndim))
        cshape = (1, -1) + (1,) * (dy.ndim - 2)
        g = self.weight.data if self.affine else 1.0
        sum_dy = dy.sum(axis=axes)
        sum_dy_xhat = _channel_dot(dy, x_hat)
        if self.affine:
            self.weight.grad += sum_dy_xhat
            self.bias.grad += sum_dy
        scale = np.reshape(g * inv_std, cshape)
        if not batch_stats:
            return dy * scale
        n = dy.size // self.num_features
        # dx = g * inv_std / N * (N dy - sum(dy) - x_hat * sum(dy * x_hat))
        dx = x_hat * (sum_dy_xhat / n).reshape(cshape)
        dx += (sum_dy / n).reshape(cshape)
        np.subtract(dy, dx, out=dx)
        dx *= scale
        return dx

    def output_shape(self, input_shape):
        if input_shape is not None:
            self._check_shape(input_shape)
        return input_shape

    def check_buffer(self, name, value, label):
        # a negative or NaN variance makes every output NaN; a negative count is corruption
        if name in ("running_var", "num_batches_tracked") and not np.all(value >= 0):
            raise ValueError(
                f"load_state_dict: {label} holds negative or NaN values; it must be >= 0"
            )
        if name == "running_mean" and not np.all(np.isfinite(value)):
            raise ValueError(f"load_state_dict: {label} holds NaN or infinite values")

    @classmethod
    def state_shapes(cls, config):
        c = (whole(config.get("num_features"), "num_features", 1, cls.__name__),)
        shapes = {}
        if config.get("affine", True):
            shapes.update(weight=c, bias=c)
        if config.get("track_running_stats", True):
            shapes.update(running_mean=c, running_var=c, num_batches_tracked=())
        return shapes

    def torch_modules(self):
        kwargs = {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}
        kwargs.update(affine=self.affine, track_running_stats=self.track_running_stats)
        names = (["weight", "bias"] if self.affine else []) + (
            ["running_mean", "running_var", "num_batches_tracked"]
            if self.track_running_stats
            else []
        )
        return [TorchModule(type(self).__name__, kwargs, {n: n for n in names})]

    def get_config(self):
        cfg = {"num_features": self.num_features}
        if self.eps != 1e-5:
            cfg["eps"] = self.eps
        if self.momentum != 0.1:
            cfg["momentum"] = self.momentum
        if not self.affine:
            cfg["affine"] = False
        if not self.track_running_stats:
            cfg["track_running_stats"] = False
        return cfg


@register
class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) inputs: statistics over the batch, per feature."""

    def _check_shape(self, shape):
        _check_shape(self, shape, self.num_features, "channels")
