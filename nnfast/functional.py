"""Activations, derivatives, softmax and losses on numpy arrays: ``import nnfast.functional as F``.

Every function takes float32 or float64 arrays and returns arrays of the same dtype (and, for
the element-wise ones, shape, 0-d included); ``out=`` receives the result (and is returned).
``out`` may be an input itself (in place, except for maxout) but must not share only part of
an input's memory (ValueError). The work is done by fused C kernels (one pass over memory,
vectorised, OpenMP above a size threshold). Backward functions take the upstream gradient
``dy`` first and *return* the input gradient (they never accumulate). The convolution and
pooling building blocks (``im2col``, ``col2im``, ``max_pool2d``, ...) are here too.

Activation backward functions take ``u``: the forward's output ``y`` for the activations whose
derivative is cheaper from the output (``ACTIVATION_FUNCTIONS[name].from_output``: identity, step,
sigmoid, tanh, relu, leaky_relu, elu), the forward's input ``x`` for the others.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple

import numpy as np

from . import _validate
from ._arrays import native_order, overlaps

# the convolution and pooling building blocks of nnfast._convops (which does not import this
# module) are part of this API: F.im2col, F.max_pool2d_backward, ...
from ._convops import avg_pool2d as avg_pool2d
from ._convops import avg_pool2d_backward as avg_pool2d_backward
from ._convops import col2im as col2im
from ._convops import global_avg_pool2d as global_avg_pool2d
from ._convops import global_avg_pool2d_backward as global_avg_pool2d_backward
from ._convops import im2col as im2col
from ._convops import max_pool2d as max_pool2d
from ._convops import max_pool2d_backward as max_pool2d_backward
from ._native import core


def _native():
    if core is None:
        raise RuntimeError("nnfast.functional needs the compiled extension (pip install .)")
    return core


# --- argument checks ---------------------------------------------------------------------------


def _array(what: str, name: str, x, dtype=None) -> np.ndarray:
    """x as a C-contiguous float32/float64 array (copied only if it is not one already)."""
    x = native_order(np.asarray(x))
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"{what}: {name} has dtype {x.dtype}; nnfast computes in float32 or float64 "
            f"(convert with {name}.astype(np.float32))"
        )
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{what}: {name} has dtype {x.dtype} but the input is {np.dtype(dtype)}")
    # np.ascontiguousarray would turn a 0-d array into shape (1,)
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def _same_shape(what: str, name: str, x: np.ndarray, ref_name: str, ref: np.ndarray):
    if x.shape != ref.shape:
        raise ValueError(f"{what}: {name} has shape {x.shape} but {ref_name} has shape {ref.shape}")


def _real(what: str, name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{what}: {name} must be a real number, got {v!r}")
    return float(v)


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.shape == b.shape
        and a.strides == b.strides
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def _check_overlap(what, name, out, reads, in_place=True):
    """ValueError if ``out`` shares memory with one of ``reads`` ((name, array or None) pairs):
    the kernels read and write in one pass, so a shifted or partial overlap reads values they
    have already overwritten. ``out`` exactly an input is allowed if ``in_place``."""
    for in_name, a in reads:
        if a is None or (in_place and a is out) or not np.may_share_memory(out, a):
            continue
        if in_place and _same_view(out, a):
            continue
        if overlaps(out, a):
            how = f"may be {in_name} itself, not part of it" if in_place else "must be separate"
            raise ValueError(f"{what}: {name} overlaps {in_name} ({name} {how})")


class _Out:
    """Where a kernel writes: ``out`` itself when C can write it directly, else a scratch array
    copied into ``out`` by ``done()``. ``reads`` are the (name, array) inputs of the kernel,
    which ``out`` must not overlap (see _check_overlap)."""

    def __init__(self, what, out, shape, dtype, reads, name="out", in_place=True):
        self.out = out
        if out is None:
            self.buf = np.empty(shape, dtype)
            return
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{what}: {name} must be a numpy array")
        if out.shape != tuple(shape):
            raise ValueError(f"{what}: {name} has shape {out.shape}, expected {tuple(shape)}")
        if out.dtype != dtype:
            raise TypeError(f"{what}: {name} has dtype {out.dtype}, expected {np.dtype(dtype)}")
        if not out.flags.writeable:
            raise ValueError(f"{what}: {name} is read-only")
        _check_overlap(what, name, out, reads, in_place)
        self.buf = out if out.flags.c_contiguous else np.empty(shape, dtype)

    def done(self) -> np.ndarray:
        if self.out is not None and self.buf is not self.out:
            self.out[...] = self.buf
            return self.out
        return self.buf


# --- activations -------------------------------------------------------------------------------

# C's activation list (NNF_ACTIVATIONS in csrc/eltwise.h) as {name: id}; each is public under
# its C name except gelu_tanh, which is gelu(approximate="tanh")
_C_ACTIVATION_IDS = core.activation_ids() if core is not None else {}
ACTIVATION_IDS = {name: i for name, i in _C_ACTIVATION_IDS.items() if name != "gelu_tanh"}


_DEFAULT_ACTIVATION_PARAMS = {}  # act -> (C act id, a, b) with default parameters, filled on use


def act_kernel_args(what: str, act: str, params: dict):
    """``(C act id, a, b)`` for an activation name and its keyword parameters, checked
    (errors start with ``what``): what the fused kernels take. Internal API shared with
    ``nnfast._gemm`` and ``nnfast.nn``, not for users."""
    if params:
        return _resolve_act_params(what, act, params)
    got = _DEFAULT_ACTIVATION_PARAMS.get(act)  # every layer's call: memoised
    if got is None:
        got = _DEFAULT_ACTIVATION_PARAMS[act] = _resolve_act_params(what, act, {})
    return got


_ACT_DEFAULTS = {
    "leaky_relu": {"negative_slope": 0.01},
    "elu": {"alpha": 1.0},
    "softplus": {"beta": 1.0, "threshold": 20.0},
    "gelu": {"approximate": "none"},
}

_FLOAT32_MAX = float(np.finfo(np.float32).max)

# (act, parameter) -> (lowest value, is it allowed, why): every parameter must also be finite
_PARAM_RANGES = {
    ("leaky_relu", "negative_slope"): (0.0, True, "the backward is computed from the output"),
    ("elu", "alpha"): (0.0, True, "the backward is computed from the output"),
    ("softplus", "beta"): (0.0, False, None),
    ("softplus", "threshold"): (-math.inf, False, None),
}


def _resolve_act_params(what: str, act: str, params: dict):
    _native()  # the names come from it
    if act not in ACTIVATION_IDS:
        raise ValueError(
            f"{what}: unknown activation {act!r}; expected one of {list(ACTIVATION_IDS)}"
        )
    allowed = _ACT_DEFAULTS.get(act, {})
    unknown = set(params) - set(allowed)
    if unknown:
        raise TypeError(f"{what}: {act} takes no parameter(s) {sorted(unknown)}")
    p = {**allowed, **params}
    if act == "gelu":
        if p["approximate"] not in ("none", "tanh"):
            raise ValueError(
                f"{what}: approximate must be 'none' or 'tanh', got {p['approximate']!r}"
            )
        return _C_ACTIVATION_IDS["gelu_tanh" if p["approximate"] == "tanh" else "gelu"], 0.0, 0.0
    vals = [_real(what, k, v) for k, v in p.items()]
    for k, v in zip(p, vals):
        lo, closed, why = _PARAM_RANGES[act, k]
        if not (math.isfinite(v) and (v >= lo if closed else v > lo)):
            bound = "" if lo == -math.inf else f" and {'>=' if closed else '>'} {lo:g}"
            because = f" ({why})" if why else ""
            raise ValueError(f"{what}: {k} must be finite{bound}{because}, got {v}")
        # the float32 kernels take it as a float: past its range it was inf (ELU's alpha 1e308
        # turned zeros into NaN); a threshold past it means no threshold, as inf does there
        if k != "threshold" and abs(v) > _FLOAT32_MAX:
            raise ValueError(f"{what}: {k} must be at most {_FLOAT32_MAX:.7g} in magnitude "
                             f"(float32's range), got {v}")  # fmt: skip
    vals += [0.0, 0.0]
    return ACTIVATION_IDS[act], vals[0], vals[1]


def _layout(what, name, shape):
    """(outer, C, inner) of an (N, C, ...) array: channel axis 1."""
    if len(shape) < 2:
        raise ValueError(
            f"{what}: expected {name} of shape (N, F) or (N, C, H, W), got shape {shape}"
        )
    inner = math.prod(shape[2:])
    return shape[0], shape[1], inner


def bias_act(x, b=None, act="relu", *, out=None, preact_out=None, **params):
    """``act(x + b)`` with the bias broadcast along axis 1, in one pass.

    Parameters
    ----------
    x : ndarray (N, F) or (N, C, H, W) (any (N, C, ...)), float32 or float64
    b : ndarray (F,) or (C,), same dtype, or None
    act : activation name (``ACTIVATION_FUNCTIONS``); its parameters as keywords
        (``negative_slope=``, ``alpha=``, ``beta=``, ``threshold=``, ``approximate=``)
    out : ndarray like x, optional
    preact_out : ndarray like x, optional: receives ``x + b`` (what the backward of the
        activations computed from their input needs)

    Returns
    -------
    ndarray like x
    """
    what = "bias_act"
    x = _array(what, "x", x)
    outer, c, inner = _layout(what, "x", x.shape)
    if b is not None:
        b = _array(what, "b", b, x.dtype)
        if b.ndim != 1 or b.shape[0] != c:
            raise ValueError(
                f"{what}: b has shape {b.shape} but x has {c} features/channels "
                f"(axis 1 of {x.shape})"
            )
    return _act_forward(what, x, b, act, params, out, preact_out, (outer, c, inner))


def _act_forward(what, x, b, act, params, out, preact_out, layout):
    aid, pa, pb = act_kernel_args(what, act, params)
    reads = (("x", x), ("b", b))
    o = _Out(what, out, x.shape, x.dtype, reads)
    pre = None
    if preact_out is not None:
        pre = _Out(what, preact_out, x.shape, x.dtype, reads, "preact_out")
        _check_overlap(what, "preact_out", preact_out, (("out", out),), in_place=False)
    _native().act_forward(aid, pa, pb, *layout, x, b, o.buf, None if pre is None else pre.buf)
    if pre is not None:
        pre.done()
    return o.done()


def bias_act_backward(dy, u, act="relu", *, out=None, bias_grad=True, **params):
    """Gradients of ``bias_act``: ``(dx, db)`` in one pass, ``dx = dy * act'(.)``.

    Parameters
    ----------
    dy : ndarray (N, F) or (N, C, ...), the upstream gradient
    u : ndarray like dy: the forward's output y if ``ACTIVATION_FUNCTIONS[act].from_output``, else
        its pre-activation ``x + b`` (``preact_out``)
    bias_grad : compute db (sum of dx over every axis but 1); else db is None

    Returns
    -------
    (dx, db) : dx like dy, db (C,) or None
    """
    what = "bias_act_backward"
    dy = _array(what, "dy", dy)
    u = _array(what, "u", u, dy.dtype)
    _same_shape(what, "u", u, "dy", dy)
    layout = _layout(what, "dy", dy.shape)
    db = np.empty(layout[1], dy.dtype) if bias_grad else None
    dx = _act_backward(what, dy, "u", u, act, params, out, layout, db)
    return dx, db


def _act_backward(what, dy, uname, u, act, params, out, layout, db=None):
    aid, pa, pb = act_kernel_args(what, act, params)
    o = _Out(what, out, dy.shape, dy.dtype, (("dy", dy), (uname, u)))
    _native().act_backward(aid, pa, pb, *layout, dy, u, o.buf, db)
    return o.done()


def _act(name, x, out, params):
    """``name``'s forward on any shape: the work of every function below."""
    x = _array(name, "x", x)
    return _act_forward(name, x, None, name, params, out, None, (1, 1, x.size))


def _act_grad(name, dy, u, out, params):
    """``name``'s backward: ``dy * act'(.)`` from u, the forward's output or input (see
    ``ACTIVATION_FUNCTIONS[name].from_output``)."""
    what = f"{name}_backward"
    uname = "y" if ACTIVATION_FUNCTIONS[name].from_output else "x"
    dy = _array(what, "dy", dy)
    u = _array(what, uname, u, dy.dtype)
    _same_shape(what, uname, u, "dy", dy)
    return _act_backward(what, dy, uname, u, name, params, out, (1, 1, dy.size))


# Each activation: ``f(x, out=None, **params)`` for any float32/float64 array (out: like x) and
# ``f_backward(dy, u, out=None, **params)``, u being the forward's output y for the activations
# computed from it (``ACTIVATION_FUNCTIONS[name].from_output``) and its input x for the others.


def identity(x, out=None):
    """``y = x``."""
    return _act("identity", x, out, {})


def identity_backward(dy, u, out=None):
    """Gradient of ``identity``: ``dy`` (u: y)."""
    return _act_grad("identity", dy, u, out, {})


def step(x, out=None):
    """Binary step: ``y = 1 if x > 0 else 0`` (derivative 0)."""
    return _act("step", x, out, {})


def step_backward(dy, u, out=None):
    """Gradient of ``step``: zeros (u: y)."""
    return _act_grad("step", dy, u, out, {})


def sigmoid(x, out=None):
    """``y = 1 / (1 + exp(-x))``, stable for any x."""
    return _act("sigmoid", x, out, {})


def sigmoid_backward(dy, u, out=None):
    """Gradient of ``sigmoid``: ``dy y (1 - y)`` (u: y)."""
    return _act_grad("sigmoid", dy, u, out, {})


def tanh(x, out=None):
    """``y = tanh(x)``."""
    return _act("tanh", x, out, {})


def tanh_backward(dy, u, out=None):
    """Gradient of ``tanh``: ``dy (1 - y^2)`` (u: y)."""
    return _act_grad("tanh", dy, u, out, {})


def arctan(x, out=None):
    """``y = arctan(x)``."""
    return _act("arctan", x, out, {})


def arctan_backward(dy, u, out=None):
    """Gradient of ``arctan``: ``dy / (1 + x^2)`` (u: x)."""
    return _act_grad("arctan", dy, u, out, {})


def relu(x, out=None):
    """``y = max(x, 0)``."""
    return _act("relu", x, out, {})


def relu_backward(dy, u, out=None):
    """Gradient of ``relu``: ``dy`` where y > 0, else 0 (u: y)."""
    return _act_grad("relu", dy, u, out, {})


def leaky_relu(x, out=None, **params):
    """``y = x if x > 0 else negative_slope * x`` (negative_slope=0.01 >= 0)."""
    return _act("leaky_relu", x, out, params)


def leaky_relu_backward(dy, u, out=None, **params):
    """Gradient of ``leaky_relu`` (u: y; negative_slope as in the forward)."""
    return _act_grad("leaky_relu", dy, u, out, params)


def elu(x, out=None, **params):
    """``y = x if x > 0 else alpha * (exp(x) - 1)`` (alpha=1.0 >= 0)."""
    return _act("elu", x, out, params)


def elu_backward(dy, u, out=None, **params):
    """Gradient of ``elu`` (u: y; alpha as in the forward)."""
    return _act_grad("elu", dy, u, out, params)


def softplus(x, out=None, **params):
    """``y = log(1 + exp(beta x)) / beta``, ``x`` where ``beta x > threshold`` (beta=1.0,
    threshold=20.0, as torch)."""
    return _act("softplus", x, out, params)


def softplus_backward(dy, u, out=None, **params):
    """Gradient of ``softplus`` (u: x; beta and threshold as in the forward)."""
    return _act_grad("softplus", dy, u, out, params)


def gelu(x, out=None, **params):
    """``y = x Phi(x)`` (approximate='none', erf form) or the tanh form (approximate='tanh')."""
    return _act("gelu", x, out, params)


def gelu_backward(dy, u, out=None, **params):
    """Gradient of ``gelu`` (u: x; approximate as in the forward)."""
    return _act_grad("gelu", dy, u, out, params)


def silu(x, out=None):
    """``y = x sigmoid(x)``."""
    return _act("silu", x, out, {})


def silu_backward(dy, u, out=None):
    """Gradient of ``silu`` (u: x)."""
    return _act_grad("silu", dy, u, out, {})


class Activation(NamedTuple):
    """A registry entry: ``forward(x, out=None, **params)``, ``backward(dy, u, out=None,
    **params)`` where u is y if ``from_output`` else x."""

    forward: Callable
    backward: Callable
    from_output: bool


#: The element-wise activations as functions, by name: ``{"relu": Activation(relu,
#: relu_backward, from_output=True), ...}`` (``nnfast.nn.ACTIVATIONS`` holds the modules).
#: Whether the backward takes the output comes from the C kernels.
def _entry(name, forward, backward):
    from_output = bool(core.act_from_output(ACTIVATION_IDS[name])) if core is not None else False
    return Activation(forward, backward, from_output)


ACTIVATION_FUNCTIONS: dict[str, Activation] = {
    "identity": _entry("identity", identity, identity_backward),
    "step": _entry("step", step, step_backward),
    "sigmoid": _entry("sigmoid", sigmoid, sigmoid_backward),
    "tanh": _entry("tanh", tanh, tanh_backward),
    "arctan": _entry("arctan", arctan, arctan_backward),
    "relu": _entry("relu", relu, relu_backward),
    "leaky_relu": _entry("leaky_relu", leaky_relu, leaky_relu_backward),
    "elu": _entry("elu", elu, elu_backward),
    "softplus": _entry("softplus", softplus, softplus_backward),
    "gelu": _entry("gelu", gelu, gelu_backward),
    "silu": _entry("silu", silu, silu_backward),
}
if core is not None and set(ACTIVATION_FUNCTIONS) != set(ACTIVATION_IDS):
    raise ImportError(  # the C list (NNF_ACTIVATIONS) and the functions above must agree
        f"nnfast.functional: C activations {sorted(ACTIVATION_IDS)} but Python functions "
        f"{sorted(ACTIVATION_FUNCTIONS)}"
    )


# --- PReLU and maxout --------------------------------------------------------------------------


def _prelu_alpha(what, alpha, x):
    # Python numbers (one, or a list) take x's dtype: 0.25 was refused as float64
    items = alpha if isinstance(alpha, (list, tuple)) else [alpha]
    if not isinstance(alpha, np.ndarray) and all(
        isinstance(a, numbers.Real) and not isinstance(a, (bool, np.generic)) for a in items
    ):
        alpha = np.array(items, x.dtype)
    alpha = _array(what, "alpha", alpha, x.dtype).reshape(-1)
    c = x.shape[1] if x.ndim >= 2 else 1
    if alpha.size == 1 and c != 1:
        alpha = np.full(c, alpha[0], x.dtype)
    if alpha.size != c:
        raise ValueError(f"{what}: alpha has {alpha.size} entries but x has {c} channels (axis 1)")
    return alpha


def _prelu_layout(what, x):
    return _layout(what, "x", x.shape) if x.ndim >= 2 else (1, 1, x.size)


def prelu(x, alpha, out=None):
    """``y = x if x > 0 else alpha[c] * x``, alpha per channel (axis 1; one value broadcasts).

    x : (N, C, ...) or 1-D; alpha : (C,) or (1,). Returns an array like x."""
    what = "prelu"
    x = _array(what, "x", x)
    alpha = _prelu_alpha(what, alpha, x)
    o = _Out(what, out, x.shape, x.dtype, (("x", x), ("alpha", alpha)))
    _native().prelu_forward(*_prelu_layout(what, x), x, alpha, o.buf)
    return o.done()


def prelu_backward(dy, x, alpha, out=None):
    """Gradients of ``prelu``: ``(dx, dalpha)``; dalpha has C entries (summed over the rest)
    even when a single alpha was broadcast (sum it then)."""
    what = "prelu_backward"
    dy = _array(what, "dy", dy)
    x = _array(what, "x", x, dy.dtype)
    _same_shape(what, "x", x, "dy", dy)
    alpha = _prelu_alpha(what, alpha, x)
    o = _Out(what, out, x.shape, x.dtype, (("dy", dy), ("x", x), ("alpha", alpha)))
    dalpha = np.empty(alpha.size, x.dtype)
    _native().prelu_backward(*_prelu_layout(what, x), dy, x, alpha, o.buf, dalpha)
    return o.done(), dalpha


def _pieces(what, k) -> int:
    return _validate.integer(k, "k", what, low=1)


def maxout(x, k, out=None):
    """Maxout over ``k`` pieces along axis 1: x (N, C*k, ...) read as (N, C, k, ...).

    Returns ``(y, argmax)``: y (N, C, ...), argmax int64 (N, C, ...) the winning piece (keep it
    for the backward). NaN propagates."""
    what = "maxout"
    x = _array(what, "x", x)
    k = _pieces(what, k)
    outer, ck, inner = _layout(what, "x", x.shape)
    if ck % k:
        raise ValueError(f"{what}: axis 1 of x has {ck} entries, not a multiple of k={k}")
    shape = (outer, ck // k, *x.shape[2:])
    o = _Out(what, out, shape, x.dtype, (("x", x),), in_place=False)
    argmax = np.empty(shape, np.int64)
    _native().maxout_forward(outer, ck // k, k, inner, x, o.buf, argmax)
    return o.done(), argmax


def maxout_backward(dy, argmax, k, out=None):
    """Gradient of ``maxout``: dy (N, C, ...) scattered to winning pieces of dx (N, C*k, ...)."""
    what = "maxout_backward"
    dy = _array(what, "dy", dy)
    k = _pieces(what, k)
    argmax = np.ascontiguousarray(argmax)
    if argmax.dtype != np.int64:
        raise TypeError(f"{what}: argmax must be the int64 array maxout returned")
    _same_shape(what, "argmax", argmax, "dy", dy)
    outer, c, inner = _layout(what, "dy", dy.shape)
    shape = (outer, c * k, *dy.shape[2:])
    # dx is zeroed before dy is scattered into it: no overlap at all
    o = _Out(what, out, shape, dy.dtype, (("dy", dy), ("argmax", argmax)), in_place=False)
    _native().maxout_backward(outer, c, k, inner, dy, argmax, o.buf)
    return o.done()


# --- softmax and losses ------------------------------------------------------------------------


def _rows(x):
    n = x.shape[-1] if x.ndim else 1
    return (x.size // n if n else 0), n


def softmax(x, out=None):
    """Softmax along the last axis, stable (max subtracted). x : (..., n)."""
    x = _array("softmax", "x", x)
    o = _Out("softmax", out, x.shape, x.dtype, (("x", x),))
    _native().softmax(False, *_rows(x), x, o.buf)
    return o.done()


def log_softmax(x, out=None):
    """Log-softmax along the last axis: ``x - max - log(sum(exp(x - max)))``."""
    x = _array("log_softmax", "x", x)
    o = _Out("log_softmax", out, x.shape, x.dtype, (("x", x),))
    _native().softmax(True, *_rows(x), x, o.buf)
    return o.done()


def _labels(what, labels, n_rows):
    """labels as a contiguous int64 (n_rows,) array; their range is checked by the kernels,
    which fail on a label outside [0, classes) (see label_range_error). A uint64 label >= 2**63
    wraps to a negative int64, which the kernels refuse too."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(
            f"{what}: labels must be integers (class indices), got dtype {labels.dtype}"
        )
    if labels.shape != (n_rows,):
        raise ValueError(f"{what}: labels has shape {labels.shape}, expected ({n_rows},)")
    return np.ascontiguousarray(labels, np.int64)


def label_range_error(what, labels, n_classes):
    """The error for labels outside [0, n_classes), or None if they are all inside."""
    lo, hi = labels.min(), labels.max()
    if lo < 0 or hi >= n_classes:
        return ValueError(f"{what}: labels must be in [0, {n_classes}), got values in [{lo}, {hi}]")
    return None


def _xent_call(what, kernel, logits, labels, raw_labels, *args):
    """kernel(rows, classes, logits, labels, *args); a label out of range (which the kernel
    refuses) is reported with the caller's values (raw_labels, before the cast to int64)."""
    n, k = logits.shape
    try:
        return kernel(n, k, logits, labels, *args)
    except ValueError:
        err = label_range_error(what, raw_labels, k)
        if err is not None:
            raise err from None
        raise


def _xent_args(what, logits, labels, label_smoothing):
    logits = _array(what, "logits", logits)
    if logits.ndim != 2:
        raise ValueError(f"{what}: logits must be (N, classes), got shape {logits.shape}")
    n, k = logits.shape
    if n == 0 or k == 0:
        raise ValueError(f"{what}: logits is empty (shape {logits.shape})")
    eps = _real(what, "label_smoothing", label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"{what}: label_smoothing must be in [0, 1], got {eps}")
    raw = np.asarray(labels)
    return logits, _labels(what, raw, n), raw, eps


def softmax_cross_entropy(logits, labels, label_smoothing=0.0):
    """Mean cross-entropy of ``softmax(logits)`` against integer labels (torch's
    ``cross_entropy``): the target is ``(1 - s) onehot + s / classes``.

    logits : (N, classes) float32/float64; labels : (N,) integers in [0, classes).
    Returns a Python float."""
    what = "softmax_cross_entropy"
    logits, labels, raw, eps = _xent_args(what, logits, labels, label_smoothing)
    return _xent_call(what, _native().softmax_xent_forward, logits, labels, raw, eps)


def softmax_cross_entropy_backward(logits, labels, label_smoothing=0.0, out=None):
    """Gradient of the mean loss w.r.t. logits: ``(softmax(logits) - target) / N``."""
    what = "softmax_cross_entropy_backward"
    logits, labels, raw, eps = _xent_args(what, logits, labels, label_smoothing)
    o = _Out(what, out, logits.shape, logits.dtype, (("logits", logits), ("labels", labels)))
    _xent_call(what, _native().softmax_xent_backward, logits, labels, raw, eps,
               1.0 / len(labels), o.buf)  # fmt: skip
    return o.done()


def softmax_cross_entropy_with_grad(logits, labels, label_smoothing=0.0, out=None):
    """Loss and gradient at once (one exp per logit): ``(softmax_cross_entropy(...),
    softmax_cross_entropy_backward(...))``; ``out`` may be ``logits`` itself.

    Returns ``(loss, grad)``: a Python float and an (N, classes) array."""
    what = "softmax_cross_entropy_with_grad"
    logits, labels, raw, eps = _xent_args(what, logits, labels, label_smoothing)
    o = _Out(what, out, logits.shape, logits.dtype, (("logits", logits), ("labels", labels)))
    loss = _xent_call(what, _native().softmax_xent, logits, labels, raw, eps,
                      1.0 / len(labels), o.buf)  # fmt: skip
    return loss, o.done()


def _pair(what, a_name, a, target):
    a = _array(what, a_name, a)
    target = _array(what, "target", target, a.dtype)
    _same_shape(what, "target", target, a_name, a)
    return a, target


def _reduction(what, reduction, size):
    if reduction == "mean":
        return 1.0 / size if size else float("nan")
    if reduction == "sum":
        return 1.0
    raise ValueError(f"{what}: reduction must be 'mean' or 'sum', got {reduction!r}")


def mse_loss(pred, target, reduction="mean"):
    """``mean((pred - target)^2)`` (or the sum). Returns a Python float."""
    pred, target = _pair("mse_loss", "pred", pred, target)
    scale = _reduction("mse_loss", reduction, pred.size)
    return _native().pair_loss_forward("mse", pred, target) * scale


def mse_loss_backward(pred, target, reduction="mean", out=None):
    """Gradient of ``mse_loss`` w.r.t. pred: ``2 (pred - target) / size`` (or without /size)."""
    what = "mse_loss_backward"
    pred, target = _pair(what, "pred", pred, target)
    scale = 2.0 * _reduction(what, reduction, pred.size)
    o = _Out(what, out, pred.shape, pred.dtype, (("pred", pred), ("target", target)))
    _native().pair_loss_backward("mse", pred, target, scale, o.buf)
    return o.done()


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """``mean(max(x, 0) - x t + log(1 + exp(-|x|)))``: BCE of ``sigmoid(x)``, stable for any x."""
    what = "binary_cross_entropy_with_logits"
    logits, target = _pair(what, "logits", logits, target)
    scale = _reduction(what, reduction, logits.size)
    return _native().pair_loss_forward("bce", logits, target) * scale


def binary_cross_entropy_with_logits_backward(logits, target, reduction="mean", out=None):
    """Gradient w.r.t. the logits: ``(sigmoid(x) - t) / size`` (or without /size)."""
    what = "binary_cross_entropy_with_logits_backward"
    logits, target = _pair(what, "logits", logits, target)
    scale = _reduction(what, reduction, logits.size)
    o = _Out(what, out, logits.shape, logits.dtype, (("logits", logits), ("target", target)))
    _native().pair_loss_backward("bce", logits, target, scale, o.buf)
    return o.done()
