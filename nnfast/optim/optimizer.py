"""Optimizers over ``Parameter(data, grad)`` lists (torch.optim names and semantics).

Each parameter group is moved into one flat ``data`` and one flat ``grad`` buffer (see
:func:`flatten_parameters`), so every update below is a few in-place numpy passes over one
array, with the temporaries allocated once. Adam/AdamW use a fused one-pass C kernel when the
native extension is present.

The parameter contract (as in PyTorch, without its silent traps):

- ``p.data = w`` and ``p.grad = g`` copy into the buffers the optimizer steps on (see
  ``nnfast.nn.Parameter``), so user code that sets gradients or weights is honoured.
- A parameter listed twice (in one group or in two) is a ValueError.
- A parameter may be held by several optimizers. A group whose parameters tile another
  optimizer's flat buffer exactly (an optimizer rebuilt over the same model) shares that
  buffer; a group that holds only part of one (a second optimizer over one layer) keeps its
  own buffers and copies the parameters in and out around each step. Either way every
  optimizer steps on the parameters' current values; no optimizer detaches another's.
- Hyper-parameters are checked when the optimizer is built, when a group is added and when a
  state is loaded (``nnfast._validate``: TypeError for a wrong type, ValueError for NaN,
  infinities and values out of range).

Ordered from simple to complex: SGD, Adagrad, RMSprop, AdamW (Adam is AdamW with no decay).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from .. import _validate
from .._arrays import flat_base
from .._native import core as _native

OPTIMIZERS: dict[str, type] = {}


def flatten_parameters(params):
    """Move ``params``' data and grads into two contiguous 1-D buffers; returns them.

    Parameters already laid out that way are left alone (the buffers are shared). All must
    share one dtype (TypeError).
    """
    params = list(params)
    if not params:
        return np.empty(0, np.float32), np.empty(0, np.float32)
    dtypes = {p.dtype for p in params}
    if len(dtypes) != 1:
        raise TypeError(
            f"parameters of one group must share a dtype, got {sorted(map(str, dtypes))}"
        )
    data = flat_base([p.data for p in params])
    grad = flat_base([p.grad for p in params])
    if data is not None and grad is not None:
        return data, grad
    (dtype,) = dtypes
    data, grad = _gather(params, dtype)
    o = 0
    for p in params:
        n = p.size
        p.set_storage(data[o : o + n].reshape(p.shape), grad[o : o + n].reshape(p.shape))
        o += n
    return data, grad


def _gather(params, dtype, data=None, grad=None):
    """The parameters' data and (materialised) grads copied, in order, into two flat buffers."""
    total = sum(p.size for p in params)
    if data is None:
        data, grad = np.empty(total, dtype), np.empty(total, dtype)
    o = 0
    for p in params:
        n = p.size
        data[o : o + n] = p.data.reshape(-1)
        grad[o : o + n] = p.grad.reshape(-1)
        o += n
    return data, grad


def _scatter(params, data):
    o = 0
    for p in params:
        n = p.size
        p.data[...] = data[o : o + n].reshape(p.shape)
        o += n


def _register(cls):
    OPTIMIZERS[cls.__name__.lower()] = cls
    return cls


class Optimizer:
    """Base class: parameter groups, flat buffers, ``zero_grad``, ``step`` and state_dict.

    ``params`` is an iterable of Parameters, or of dicts ``{"params": [...], "lr": ...}`` for
    per-group hyper-parameters. Subclasses implement ``_init_state(data)`` and
    ``_update(group, data, grad, state)``.
    """

    #: the hyper-parameters' checks: name -> (kind, keyword arguments of nnfast._validate);
    #: kind "real", "flag" or "betas". Subclasses extend it.
    _HYPER: ClassVar[dict] = {"lr": ("real", {"low": 0.0}), "weight_decay": ("real", {"low": 0.0})}

    def __init__(self, params, defaults):
        self.defaults = self._check_hyper(dict(defaults), type(self).__name__)
        self.param_groups = []
        self._flat = []  # per group: (data, grad), the flat buffers the update runs on
        self._shared = []  # per group: True when the buffers are copies (see add_param_group)
        self.state = []
        if hasattr(params, "named_parameters"):
            raise TypeError(f"{type(self).__name__}: pass model.parameters(), not the model")
        if (isinstance(params, (np.ndarray, dict)) or hasattr(params, "set_storage")
                or not hasattr(params, "__iter__")):  # fmt: skip
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Parameters or of "
                f"parameter-group dicts, got {type(params).__name__}"
            )
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            self.add_param_group(g)

    def __reduce_ex__(self, protocol):
        # a copy's flat buffers would not be its parameters' storage: its steps reached no
        # model (a deep-copied model and optimizer trained nothing)
        raise TypeError(
            f"{type(self).__name__} cannot be copied or pickled: build one over the copied "
            f"model's parameters and give it this one's state_dict()"
        )

    def add_param_group(self, group: dict) -> None:
        """Add a group ``{"params": [...], hyper-parameter: value, ...}``; the hyper-parameters
        not given take the optimizer's defaults."""
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: a parameter group must be a dict with 'params'")
        group = dict(group)
        params = group["params"]
        if not (hasattr(params, "set_storage") or hasattr(params, "__iter__")):
            raise TypeError(f"{name}: a group's params must be Parameters, got "
                            f"{type(params).__name__}")  # fmt: skip
        params = [params] if hasattr(params, "set_storage") else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not hasattr(p, "set_storage"):
                raise TypeError(
                    f"{name}: expected nnfast.nn.Parameter objects, got {type(p).__name__}"
                )
            if id(p) in seen:
                raise ValueError(f"{name}: {p!r} appears more than once; list each parameter once")
            seen.add(id(p))
        unknown = sorted(set(group) - set(self.defaults) - {"params", "initial_lr"})
        if unknown:
            raise TypeError(f"{name}: unknown hyper-parameter(s) {unknown}")
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        group = self._check_hyper(group, name)
        group["params"] = params
        dtypes = {p.dtype for p in params}
        tiled = flat_base([p.data for p in params]) is not None and (
            flat_base([p.grad for p in params]) is not None
        )
        if not tiled and any(p.optimizers for p in params) and len(dtypes) == 1:
            # part of another optimizer's flat buffer: moving it would detach that optimizer
            data, grad = _gather(params, dtypes.pop())
            shared = True
        else:
            data, grad = flatten_parameters(params)
            shared = False
        for p in params:
            p.add_optimizer(self)
        self.param_groups.append(group)
        self._flat.append((data, grad))
        self._shared.append(shared)
        state = self._init_state(group, data)
        state["step"] = 0
        self.state.append(state)

    @classmethod
    def _check_hyper(cls, group: dict, what: str) -> dict:
        """``group`` with its known hyper-parameters checked and normalised (a copy)."""
        group = dict(group)
        for k, (kind, kw) in cls._HYPER.items():
            if k not in group:
                continue
            v = group[k]
            if kind == "real":
                group[k] = _validate.real(v, k, what, **kw)
            elif kind == "flag":
                group[k] = _validate.flag(v, k, what)
            else:  # betas: two coefficients in [0, 1)
                if isinstance(v, (str, bytes, set, frozenset, dict)) or not hasattr(v, "__len__"):
                    # a set's order is its hash's, not the one written
                    raise TypeError(f"{what}: {k} must be a pair of real numbers, got {v!r}")
                if len(v) != 2:
                    raise ValueError(f"{what}: {k} must be a pair of real numbers, got {v!r}")
                group[k] = tuple(
                    _validate.real(b, f"{k}[{i}]", what, low=0.0, high=1.0, high_open=True)
                    for i, b in enumerate(v)
                )
        if "initial_lr" in group:  # set by a scheduler
            group["initial_lr"] = _validate.real(group["initial_lr"], "initial_lr", what, low=0.0)
        return group

    def _init_state(self, group, data) -> dict:
        """Per-group state arrays; keys starting with "_" are scratch, not saved."""
        return {}

    def zero_grad(self) -> None:
        """Set every gradient to zero. Deferred (see ``nnfast.nn.Parameter``): the layers'
        backward then writes gradients instead of adding them to a buffer of zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad()

    def step(self) -> None:
        """One update of every parameter from its accumulated gradient."""
        for group, (data, grad), shared, state in zip(
            self.param_groups, self._flat, self._shared, self.state
        ):
            params = group["params"]
            if shared:
                _gather(params, data.dtype, data, grad)
            else:
                for p in params:  # the zeros of parameters backward did not reach
                    p.materialize_grad()
            state["step"] += 1
            self._update(group, data, grad, state)
            if shared:
                _scatter(params, data)

    def _update(self, group, data, grad, state):
        raise NotImplementedError

    # --- resuming -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Hyper-parameters and state (copies): enough to resume training exactly."""
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        for g, (data, _) in zip(groups, self._flat):
            g["num_elements"] = int(data.size)
        state = []
        for s in self.state:
            state.append(
                {
                    k: (v.copy() if isinstance(v, np.ndarray) else v)
                    for k, v in s.items()
                    if not k.startswith("_")
                }
            )
        return {"type": type(self).__name__, "param_groups": groups, "state": state}

    #: state arrays that are running sums of squares: never negative (nor NaN) when saved
    _NONNEGATIVE_STATE: ClassVar[tuple] = ()

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` returned; checked fully before anything changes.

        The saved state must be this class's (``type``, when recorded), with this optimizer's
        hyper-parameters (``params``, torch's parameter indices, is ignored) and exactly the
        state its hyper-parameters keep, as arrays of the parameters' shapes."""
        name = type(self).__name__
        what = f"{name}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"param_groups", "state"} <= set(state_dict):
            raise ValueError(f"{what}: expected a dict with 'param_groups' and 'state'")
        saved_type = state_dict.get("type", name)
        if saved_type != name:
            raise ValueError(f"{what}: the state was saved by {saved_type}, not by {name}")
        groups, states = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)) or not isinstance(states, (list, tuple)):
            raise ValueError(f"{what}: 'param_groups' and 'state' must be lists")
        if not all(isinstance(x, dict) for x in (*groups, *states)):
            raise ValueError(f"{what}: every parameter group and state must be a dict")
        if len(groups) != len(self.param_groups) or len(states) != len(groups):
            raise ValueError(
                f"{what}: {len(groups)} parameter groups and {len(states)} states saved, "
                f"{len(self.param_groups)} groups here"
            )
        known = set(self.defaults) | {"num_elements", "initial_lr", "params"}
        checked, expected = [], []
        for i, (g, s, (data, _)) in enumerate(zip(groups, states, self._flat)):
            unknown = sorted(set(g) - known)
            if unknown:
                raise ValueError(f"{what}: group {i} has hyper-parameters {unknown}, which {name} "
                                 f"does not take")  # fmt: skip
            with _validate.saved_data():
                checked.append(self._check_hyper(g, f"{what}: group {i}"))
            n = g.get("num_elements", data.size)
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n != data.size:
                raise ValueError(
                    f"{what}: group {i} has {g.get('num_elements')} elements saved but "
                    f"{data.size} here"
                )
            # the state this group's (saved) hyper-parameters keep
            group = {**self.param_groups[i], **checked[-1]}
            keys = {k for k in self._init_state(group, data) if not k.startswith("_")} | {"step"}
            expected.append(keys)
            if set(s) != keys:
                raise ValueError(
                    f"{what}: group {i} saved state {sorted(s)}, expected {sorted(keys)}"
                )
            for k, saved in s.items():
                where = f"{what}: state {k!r} of group {i}"
                if k == "step":
                    if isinstance(saved, bool) or not isinstance(saved, (int, np.integer)):
                        raise ValueError(f"{where} must be an integer, got {saved!r}")
                    if saved < 0:
                        raise ValueError(f"{where} must be >= 0, got {saved}")
                    continue
                if not isinstance(saved, np.ndarray):
                    raise ValueError(f"{where} must be an array, got {type(saved).__name__}")
                if saved.shape != data.shape:
                    raise ValueError(f"{where} has shape {saved.shape}, expected {data.shape}")
                # float64 -> float32 converts; strings or objects are corruption
                if not np.can_cast(saved.dtype, data.dtype, "same_kind"):
                    raise ValueError(f"{where} has dtype {saved.dtype}, expected {data.dtype}")
                if k in self._NONNEGATIVE_STATE and not np.all(saved >= 0):
                    raise ValueError(f"{where} holds negative or NaN values; it must be >= 0")
        for i, (g, s, keys) in enumerate(zip(checked, states, expected)):
            for k, v in g.items():
                if k not in ("num_elements", "params"):
                    self.param_groups[i][k] = v
            st = self.state[i]
            for k in [k for k in st if not k.startswith("_") and k not in keys]:
                del st[k]  # kept for hyper-parameters the saved group does not have
            for k, saved in s.items():
                cur = st.get(k)
                if k == "step":
                    st[k] = int(saved)
                elif isinstance(cur, np.ndarray):
                    cur[...] = saved
                else:
                    st[k] = saved.astype(self._flat[i][0].dtype)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            hyper = ", ".join(f"{k}={v}" for k, v in g.items() if k != "params")
            lines.append(f"  group {i}: {len(g['params'])} params, {hyper}")
        return "\n".join([*lines, ")"])


@_register
class SGD(Optimizer):
    """Stochastic gradient descent with momentum (Polyak; Sutskever et al. 2013 for Nesterov),
    as torch: g = grad + wd p; buf = momentum buf + (1 - dampening) g (buf = g at step 1);
    g = g + momentum buf if nesterov else buf; p -= lr g. ``lr`` defaults to torch's 1e-3 (it
    was 0.01)."""

    _HYPER: ClassVar[dict] = {
        **Optimizer._HYPER,
        "momentum": ("real", {"low": 0.0}),
        "dampening": ("real", {"low": 0.0, "high": 1.0}),
        "nesterov": ("flag", {}),
    }

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):  # fmt: skip
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)  # fmt: skip
        defaults = self._check_hyper(defaults, "SGD")
        if defaults["nesterov"] and (defaults["momentum"] <= 0 or defaults["dampening"] != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening 0")
        super().__init__(params, defaults)

    def _init_state(self, group, data):
        state = {"_tmp": np.empty_like(data)}
        if group["momentum"]:
            state["momentum_buffer"] = np.zeros_like(data)
        return state

    def _update(self, group, data, grad, state):
        lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
        damp, t = group["dampening"], state["_tmp"]
        g = grad
        if wd:
            np.multiply(data, wd, out=t)
            t += grad
            g = t
        if mom:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.zeros_like(data)
            if state["step"] == 1:
                buf[...] = g
            else:
                buf *= mom
                if damp:
                    buf += (1 - damp) * g
                else:
                    buf += g
            if group["nesterov"]:
                if g is t:  # t = g + mom * buf, in place
                    t += mom * buf
                else:
                    np.multiply(buf, mom, out=t)
                    t += g
                g = t
            else:
                g = buf
        np.multiply(g, lr, out=t)
        data -= t


@_register
class Adagrad(Optimizer):
    """Duchi et al. (2011), as torch: sum += g^2; p -= lr / (1 + (t-1) lr_decay) g / (sqrt(sum)
    + eps)."""

    _HYPER: ClassVar[dict] = {
        **Optimizer._HYPER,
        "lr_decay": ("real", {"low": 0.0}),
        "eps": ("real", {"low": 0.0}),
    }

    def __init__(self, params, lr=0.01, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10):  # fmt: skip
        self._init_acc = _validate.real(
            initial_accumulator_value, "initial_accumulator_value", "Adagrad", low=0.0
        )
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      eps=eps))  # fmt: skip

    _NONNEGATIVE_STATE: ClassVar[tuple] = ("sum",)

    def _init_state(self, group, data):
        return {"sum": np.full_like(data, self._init_acc), "_tmp": np.empty_like(data)}

    def _update(self, group, data, grad, state):
        s, t = state["sum"], state["_tmp"]
        g = grad
        if group["weight_decay"]:
            g = data * group["weight_decay"]
            g += grad
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        np.multiply(g, g, out=t)
        s += t
        np.sqrt(s, out=t)
        t += group["eps"]
        np.divide(g, t, out=t)
        t *= clr
        data -= t


@_register
class RMSprop(Optimizer):
    """Tieleman & Hinton (2012), as torch: v = alpha v + (1 - alpha) g^2 (centered: minus the
    squared running mean of g); buf = momentum buf + g / (sqrt(v) + eps); p -= lr buf."""

    _HYPER: ClassVar[dict] = {
        **Optimizer._HYPER,
        "alpha": ("real", {"low": 0.0, "high": 1.0, "low_open": True}),
        "eps": ("real", {"low": 0.0}),
        "momentum": ("real", {"low": 0.0}),
        "centered": ("flag", {}),
    }

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):  # fmt: skip
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))  # fmt: skip

    _NONNEGATIVE_STATE: ClassVar[tuple] = ("square_avg",)

    def _init_state(self, group, data):
        state = {"square_avg": np.zeros_like(data), "_tmp": np.empty_like(data)}
        if group["centered"]:
            state["grad_avg"] = np.zeros_like(data)
        if group["momentum"]:
            state["momentum_buffer"] = np.zeros_like(data)
        return state

    def _update(self, group, data, grad, state):
        a, t, sq = group["alpha"], state["_tmp"], state["square_avg"]
        g = grad
        if group["weight_decay"]:
            g = data * group["weight_decay"]
            g += grad
        sq *= a
        np.multiply(g, 1 - a, out=t)  # (1 - a) g before g: g^2 overflowed from |g| ~ 2e19 on
        t *= g
        sq += t
        if group["centered"]:
            ga = state["grad_avg"]
            ga *= a
            ga += (1 - a) * g
            np.multiply(ga, ga, out=t)
            np.subtract(sq, t, out=t)
            # v >= m^2 exactly (Jensen, the averages' weights summing to <= 1), but not always
            # once rounded: a steady float32 gradient made it -1 ulp, and sqrt NaN
            np.maximum(t, 0, out=t)
            np.sqrt(t, out=t)
        else:
            np.sqrt(sq, out=t)
        t += group["eps"]
        if group["momentum"]:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            np.divide(g, t, out=t)
            buf += t
            np.multiply(buf, group["lr"], out=t)
        else:
            np.divide(g, t, out=t)
            t *= group["lr"]
        data -= t


@_register
class AdamW(Optimizer):
    """Adam (Kingma & Ba, 2015) with decoupled weight decay (Loshchilov & Hutter, 2019):

        p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p -= lr m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)

    computed as the paper's efficient form with torch's placement of eps:
    p -= (lr sqrt(1 - b2^t) / (1 - b1^t)) m / (sqrt(v) + eps sqrt(1 - b2^t)).
    One fused pass in C when the native extension is present, else 13 in-place numpy passes.
    """

    _HYPER: ClassVar[dict] = {
        **Optimizer._HYPER,
        "betas": ("betas", {}),
        "eps": ("real", {"low": 0.0}),
    }

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    _NONNEGATIVE_STATE: ClassVar[tuple] = ("exp_avg_sq",)

    def _init_state(self, group, data):
        state = {"exp_avg": np.zeros_like(data), "exp_avg_sq": np.zeros_like(data)}
        if _native is None:
            state["_tmp"] = np.empty_like(data)
        return state

    def _update(self, group, data, grad, state):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        bc1, sqrt_bc2 = 1 - b1**t, math.sqrt(1 - b2**t)
        step_size, eps_hat, decay = lr * sqrt_bc2 / bc1, eps * sqrt_bc2, 1 - lr * wd
        if _native is not None:
            _native.adam(data, grad, m, v, step_size, b1, b2, eps_hat, decay)
            return
        tmp = state.get("_tmp")
        if tmp is None:
            tmp = state["_tmp"] = np.empty_like(data)
        if wd:
            data *= decay
        m *= b1
        np.multiply(grad, 1 - b1, out=tmp)
        m += tmp
        v *= b2
        np.multiply(grad, grad, out=tmp)
        tmp *= 1 - b2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += eps_hat
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        data -= tmp


@_register
class Adam(AdamW):
    """Adam (Kingma & Ba, 2015): AdamW with no decoupled decay. A ``weight_decay`` here is the
    L2 penalty added to the gradient (``g + wd p``), as in torch.optim.Adam."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _update(self, group, data, grad, state):
        if group["weight_decay"]:  # L2 penalty coupled to the gradient, as torch.optim.Adam
            grad = grad + group["weight_decay"] * data
            group = {**group, "weight_decay": 0.0}
        super()._update(group, data, grad, state)
