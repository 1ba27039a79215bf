"""Parameter, Module and Sequential: layers without an autograd tape.

Every module caches in ``forward`` what its ``backward`` needs. ``backward(grad_out)``
*accumulates* (``+=``) into its parameters' ``.grad`` and *returns* the gradient with respect to
its input, so gradients flow through any stack of modules (a GAN backpropagates through the
discriminator into the generator with the same two calls).

Modules are registered by class name in ``MODULES`` so a model can be rebuilt from a JSON record
of its architecture (``nnfast.io``) or named on the command line.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from .. import _validate

MODULES: dict[str, type] = {}


def register(cls):
    """Class decorator: make ``cls`` constructible by name (``MODULES[cls.__name__]``).

    A name taken by another class is refused: replacing nnfast's ``Linear`` with a user class
    of that name made every saved ``nn.Linear`` model unsavable and unloadable."""
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise TypeError(f"register: expected a Module subclass, got {cls!r}")
    taken = MODULES.get(cls.__name__)
    if taken is not None and taken is not cls and (
        taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):  # fmt: skip
        raise ValueError(f"register: the name {cls.__name__} is {taken.__module__}."
                         f"{taken.__qualname__}'s; give the class another name")  # fmt: skip
    MODULES[cls.__name__] = cls
    return cls


class _LoadResult(NamedTuple):
    """What load_state_dict did not load: torch's ``(missing_keys, unexpected_keys)``."""

    missing_keys: list
    unexpected_keys: list


class UnsupportedModuleError(ValueError):
    """A module that has no PyTorch (or ONNX) equivalent; the message names it."""


def runs_own_forward(module, cls) -> bool:
    """True if calling ``module`` runs ``cls.forward``: not a ``forward`` or ``__call__`` that a
    subclass or the instance itself replaced (which a fused pass or a translation of ``cls``
    would skip)."""
    return (type(module).forward is cls.forward and type(module).__call__ is Module.__call__
            and "forward" not in vars(module))  # fmt: skip


def torch_translation(module) -> list:
    """``module.torch_modules()``, or UnsupportedModuleError where ``module`` replaced the
    forward that the translation it inherits describes (a Sequential subclass adding its
    input back, a Linear doubling its output: exported as plain ones, they gave other
    outputs without a word)."""
    owner = next(c for c in type(module).__mro__ if "torch_modules" in vars(c))
    if owner is not Module and not runs_own_forward(module, owner):
        who = type(module).__name__
        who = f"a {who} whose forward was replaced" if "forward" in vars(module) else who
        raise UnsupportedModuleError(
            f"{who} replaces the forward of {owner.__name__}, whose PyTorch and ONNX "
            f"translation it would inherit; define its own torch_modules()"
        )
    return module.torch_modules()


class TorchModule(NamedTuple):
    """One module of the equivalent ``torch.nn.Sequential`` (see :meth:`Module.torch_modules`).

    ``type`` is a ``torch.nn`` class name (or, for ``BinaryStep``, ``Arctan`` and ``Maxout``,
    a small class that ``nnfast.export.torch_code`` defines); ``kwargs`` its constructor
    arguments; ``tensors`` maps its state_dict names to this nnfast module's; ``children`` are
    a Sequential's modules.
    """

    type: str
    kwargs: dict
    tensors: dict
    children: tuple = ()

    def prefixed(self, prefix: str) -> TorchModule:
        """The same module with ``prefix`` before every nnfast name (a child's view)."""
        return TorchModule(
            self.type,
            self.kwargs,
            {k: prefix + v for k, v in self.tensors.items()},
            tuple(c.prefixed(prefix) for c in self.children),
        )


def weight_and_bias(module):
    """(weight.data, bias.data or None) of a Linear or Conv2d, or TypeError naming the module
    when a Parameter assigned since gave them two dtypes (the kernels refused them with errors
    that named neither)."""
    w, b = module.weight.data, None if module.bias is None else module.bias.data
    if b is not None and b.dtype != w.dtype:
        raise TypeError(
            f"{module!r}: weight is {w.dtype} but bias is {b.dtype}; a layer computes in one "
            f"dtype (assign both in it, or convert with module.astype)"
        )
    return w, b


def _float_dtype(dtype) -> np.dtype:
    if dtype is None:  # np.dtype(None) is float64: astype(None) converted silently
        raise TypeError("nnfast computes in float32 or float64, got dtype None")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"nnfast computes in float32 or float64, got dtype {dtype}")
    return dtype


class Parameter:
    """A learnable array and its gradient, both of the same shape and dtype.

    ``data`` is updated in place by optimizers; ``grad`` is accumulated by ``backward`` and reset
    by ``zero_grad``. An optimizer moves both into its flat buffers (``data`` and ``grad`` are
    then views into them), so hold on to the Parameter, not to ``param.data`` or ``param.grad``.

    Assigning ``param.data = w`` or ``param.grad = g`` *copies* ``w`` or ``g`` into the arrays
    the parameter already has (which an optimizer may own), after checking that the shape is the
    same (ValueError) and that the dtype converts within its kind (TypeError for strings,
    complex numbers or objects; float64 -> float32 and integers convert). So a value assigned is
    what the optimizer steps on, as in PyTorch; an assignment never detaches the parameter.
    ``param.grad = None`` is ``zero_grad()``: a zero gradient, which optimizers step on (torch
    skips a parameter whose grad is None); leave parameters out of the optimizer to freeze them.
    A transposed or strided ``data`` is copied to C order.

    ``zero_grad`` is deferred: the zeros are written when ``grad`` is next read, and a layer
    whose backward writes the whole gradient (through :meth:`grad_target`) never writes them.
    An array taken from ``grad`` before ``zero_grad`` is not reset by it, but it is the same
    array: the next read of ``grad`` zeroes it and the next backward writes into it (torch's
    ``set_to_none`` allocates a new one). Copy it to keep it.
    """

    __slots__ = ("__weakref__", "_data", "_grad", "_optimizers", "_zero_pending")

    def __init__(self, data, grad=None):
        data = np.asarray(data)
        if data.dtype not in (np.float32, np.float64):
            data = _converted("Parameter", "data", data, np.dtype(np.float32))
        # the kernels read weights in C order: a transposed or strided view is copied (Conv2d
        # refused one with an error from deep inside its kernels)
        if not data.flags.c_contiguous:
            data = data.copy(order="C")
        if grad is None:
            grad = np.zeros_like(data)
        else:
            grad = np.asarray(grad)
            if grad.shape != data.shape:
                raise ValueError(
                    f"Parameter: grad has shape {grad.shape} but data has shape {data.shape}"
                )
            grad = _converted("Parameter", "grad", grad, data.dtype)
            if np.shares_memory(grad, data):  # zero_grad would then zero the weights
                grad = grad.copy()
        self._optimizers = weakref.WeakSet()  # the optimizers whose buffers hold this parameter
        self.set_storage(data, grad)

    def __reduce__(self):
        """Copies (copy.deepcopy, pickle) are new parameters that no optimizer holds: the
        original's optimizers stay with the original (a WeakSet does not pickle, and a copy
        that listed them refused astype for an optimizer it is not in)."""
        return (Parameter, (self._data, self.grad))

    def set_storage(self, data: np.ndarray, grad: np.ndarray) -> None:
        """Point ``data`` and ``grad`` at these arrays (same shape, one float dtype), keeping
        nothing of the old ones: what an optimizer does when it moves the parameter into its
        flat buffers, and what ``Module.astype`` does. Ordinary code assigns to ``data`` and
        ``grad`` instead, which copies."""
        self._data = data
        self._grad = grad
        self._zero_pending = False

    def add_optimizer(self, optimizer) -> None:
        """Record that ``optimizer`` holds this parameter (see :attr:`optimizers`)."""
        self._optimizers.add(optimizer)

    @property
    def optimizers(self) -> list:
        """The live optimizers that hold this parameter."""
        return list(self._optimizers)

    @property
    def data(self) -> np.ndarray:
        """The parameter's values; assignment copies into them (see the class docstring)."""
        return self._data

    @data.setter
    def data(self, value):
        if value is not self._data:  # `p.data -= x` assigns the same array back
            self._data[...] = self._checked("data", value)

    @property
    def grad(self) -> np.ndarray:
        """The accumulated gradient, like ``data``; assignment copies into it."""
        if self._zero_pending:
            self.materialize_grad()
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is None:
            self.zero_grad()
            return
        if value is not self._grad:
            self._grad[...] = self._checked("grad", value)
        self._zero_pending = False

    def _checked(self, name, value):
        value = np.asarray(value)
        if value.shape != self._data.shape:
            raise ValueError(
                f"Parameter: cannot assign an array of shape {value.shape} to {name} of shape "
                f"{self._data.shape} (assignment copies into the parameter's own array)"
            )
        return _converted("Parameter", name, value, self._data.dtype)

    def zero_grad(self) -> None:
        """Reset the gradient to zero (deferred: see the class docstring)."""
        self._zero_pending = True

    def materialize_grad(self) -> None:
        """Write the zeros a deferred ``zero_grad`` left pending, if any."""
        if self._zero_pending:
            self._grad.fill(0)
            self._zero_pending = False

    def grad_target(self):
        """``(grad, beta)`` for a kernel that computes ``grad = beta * grad + new`` over the
        whole array: beta is 0.0 while a ``zero_grad`` is pending (its zeros are never
        written), else 1.0."""
        if self._zero_pending:
            self._zero_pending = False
            return self._grad, 0.0
        return self._grad, 1.0

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def size(self):
        return self._data.size

    def __repr__(self):
        return f"Parameter(shape={self._data.shape}, dtype={self._data.dtype})"


def _converted(what, name, value, dtype):
    """``value`` converted to ``dtype`` if numpy casts it within its kind (float64 -> float32,
    integers -> floats), else TypeError: strings, objects or complex numbers are not weights."""
    if value.dtype == dtype:
        return value
    if value.dtype.kind not in "biuf" or not np.can_cast(value.dtype, dtype, "same_kind"):
        raise TypeError(f"{what}: {name} of dtype {value.dtype} does not convert to {dtype}")
    return value.astype(dtype)


def real_array(owner, x, name="input"):
    """``x`` as an array, or TypeError naming ``owner`` unless it holds real numbers (float,
    integer or bool): a float conversion drops complex parts silently and fails on the rest."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{owner!r}: {name} must hold real numbers, got dtype {x.dtype}")
    return x


class Module:
    """Base class of every layer, activation and container.

    Subclasses implement ``forward(x)`` and ``backward(grad_out)``, and ``get_config()`` returning
    the constructor arguments (JSON-serialisable) so the module can be saved and rebuilt.
    Parameters, buffers (non-learnable state such as running means) and sub-modules assigned as
    attributes are registered automatically, in assignment order.
    """

    #: True when ``backward(grad_out, input_grad=False)`` skips computing the input gradient
    #: (a first Linear layer saves a whole GEMM). Sequential uses it for its first module.
    can_skip_input_grad = False

    def __init__(self):
        d = self.__dict__
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_modules"] = OrderedDict()
        d["training"] = True

    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__()")
        if name in d["_parameters"] and not isinstance(value, Parameter) and value is not None:
            # an array or number there was dropped from parameters() and failed at forward
            raise TypeError(f"{type(self).__name__}.{name} is a parameter: assign a Parameter "
                            f"(or to .{name}.data), got {type(value).__name__}")  # fmt: skip
        # a name that stays a parameter or a module keeps its place (state_dict's order)
        if not isinstance(value, Parameter):
            d["_parameters"].pop(name, None)
        if not isinstance(value, Module):
            d["_modules"].pop(name, None)
        if isinstance(value, Parameter):
            d["_parameters"][name] = value
        elif isinstance(value, Module):
            d["_modules"][name] = value
        elif name in d["_buffers"]:
            d["_buffers"][name] = value
        d[name] = value

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Non-learnable state saved in ``state_dict`` (e.g. BatchNorm running statistics)."""
        self._buffers[name] = value
        self.__dict__[name] = value

    # --- computation ---------------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad_out):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward_fused(self, x, following):
        """``following(self(x))`` computed in one pass, or None where this module does not fuse
        with ``following`` (the default). Sequential asks each module about the next one; both
        keep the state their ``backward`` needs, as if each had run its own forward."""
        return None

    def ran_fused(self, following):
        """True if the last forward was a fused ``forward_fused(x, following)`` whose backward
        ``backward_fused`` runs in one pass (Sequential asks; False by default)."""
        return False

    def backward_fused(self, grad_out, following, input_grad=True):
        """``self.backward(following.backward(grad_out))`` in one pass, where ``ran_fused``."""
        raise NotImplementedError(f"{type(self).__name__}.backward_fused")

    def _grad_out(self, grad_out, shape, dtype=None):
        """``grad_out`` as an array of ``dtype`` (None: its own) with the forward output's
        ``shape``, or ValueError naming this module; backward checks before touching a grad."""
        dy = real_array(self, grad_out, "grad_out")
        dy = dy if dtype is None else dy.astype(dtype, copy=False)
        if dy.shape != tuple(shape):
            raise ValueError(
                f"{self!r}: grad_out has shape {dy.shape}, expected {tuple(shape)} (the shape of "
                f"the forward's output)"
            )
        return dy

    def output_shape(self, input_shape):
        """Shape of the output for an input of ``input_shape`` (None entries are unknown)."""
        return input_shape

    # --- parameters and state ------------------------------------------------------------------
    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix=""):
        for mod_name, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        """Every Parameter of this module and its sub-modules, in a stable order, each once: a
        Parameter that several modules share (tied weights) is listed where it first occurs,
        as torch does, so that an optimizer steps it once on the sum of its gradients."""
        seen = set()
        return [p for _, p in self.named_parameters() if not (id(p) in seen or seen.add(id(p)))]

    def named_buffers(self, prefix=""):
        for mod_name, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                yield (f"{mod_name}.{name}" if mod_name else name), b

    def parameter_count(self) -> int:
        """The number of learnable scalars."""
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        """Reset every parameter's gradient (deferred: see :class:`Parameter`)."""
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode: bool = True):
        mode = _validate.flag(mode, "mode", "train")  # 'False' trained, None evaluated
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self):
        return self.train(False)

    def astype(self, dtype):
        """Convert every parameter and floating-point buffer to ``dtype`` (float32 or float64),
        in place; arrays already of ``dtype`` are kept as they are.

        Convert before creating the optimizer (as with torch's ``.to()``): an optimizer holds
        its parameters in flat buffers of one dtype, with state of that dtype, so converting a
        parameter that a live optimizer holds raises ValueError (and changes nothing). Build a
        new optimizer after converting.
        """
        dtype = _float_dtype(dtype)
        for name, p in self.named_parameters():
            if p.dtype != dtype and p.optimizers:
                raise ValueError(
                    f"astype: parameter {name} is held by an optimizer "
                    f"({type(p.optimizers[0]).__name__}), whose buffers and state cannot follow "
                    f"a change to {dtype}; convert the model with astype before creating the "
                    f"optimizer"
                )
        for m in self.modules():
            for p in m._parameters.values():
                if p.dtype != dtype:
                    p.set_storage(p.data.astype(dtype), p.grad.astype(dtype))
            for name, b in list(m._buffers.items()):
                if isinstance(b, np.ndarray) and b.dtype.kind == "f" and b.dtype != dtype:
                    setattr(m, name, b.astype(dtype))
        return self

    @property
    def dtype(self):
        for p in self.parameters():
            return p.dtype
        return None

    def state_dict(self) -> OrderedDict:
        """Copies of every parameter and buffer array, keyed like ``"0.weight"``."""
        sd = OrderedDict()
        for name, p in self.named_parameters():
            sd[name] = p.data.copy()
        for name, b in self.named_buffers():
            sd[name] = np.array(b, copy=True)
        return sd

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays into the parameters and buffers, in place, converted to their dtypes.

        Everything is checked and converted (missing and unexpected keys, shapes, dtypes that
        do not convert within their kind, such as strings or objects to floats) before anything
        is written, so a failed load (ValueError naming the array) leaves the module unchanged.

        The names are this module's (``state_dict()``) or those of the equivalent torch model
        (:meth:`torch_state_dict_names`), so a torch ``state_dict`` of numpy arrays (for
        example from ``safetensors.numpy.load_file``) loads as it is. Returns, as torch does,
        ``(missing_keys, unexpected_keys)`` (nnfast names; both empty when ``strict``).
        """
        targets = {}
        for name, p in self.named_parameters():
            targets[name] = ("param", p)
        for mod_name, m in self.named_modules():
            for bname in m._buffers:
                targets[f"{mod_name}.{bname}" if mod_name else bname] = ("buffer", (m, bname))
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(
                f"load_state_dict: expected a mapping of names to arrays, got "
                f"{type(state_dict).__name__}"
            )
        state_dict, given = self._nnfast_names(state_dict)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            if given:  # the caller's keys were torch's: name the missing ones so too
                torch_names = self.torch_state_dict_names()
                missing = [f"{torch_names[k]} (nnfast {k})" if torch_names.get(k, k) != k
                           else k for k in missing]  # fmt: skip
            raise ValueError(
                f"load_state_dict: missing arrays {missing}, unexpected arrays {unexpected}"
            )
        plan = []
        for name, (kind, target) in targets.items():
            if name not in state_dict:
                continue
            label = given[name] + f" (nnfast {name})" if name in given else name
            value = np.asarray(state_dict[name])
            current = target.data if kind == "param" else getattr(*target)
            if value.shape != np.shape(current):
                raise ValueError(
                    f"load_state_dict: {label} has shape {value.shape} but the model expects "
                    f"{np.shape(current)}"
                )
            if not isinstance(current, np.ndarray):
                try:
                    value = type(current)(value)
                except (TypeError, ValueError) as err:
                    raise ValueError(f"load_state_dict: {label}: {err}") from None
            # same_kind: float64 -> float32 is a conversion, str or object -> float is corruption
            elif np.can_cast(value.dtype, current.dtype, "same_kind"):
                value = value.astype(current.dtype)
            else:
                raise ValueError(
                    f"load_state_dict: {label} has dtype {value.dtype}, which does not convert to "
                    f"the model's {current.dtype}"
                )
            if kind == "buffer":
                target[0].check_buffer(target[1], value, label)
            plan.append((kind, target, value))
        for kind, target, value in plan:
            if kind == "param":
                target.data[...] = value
            else:
                m, bname = target
                cur = getattr(m, bname)
                if isinstance(cur, np.ndarray):
                    cur[...] = value
                else:
                    setattr(m, bname, value)
        return _LoadResult(missing, [given.get(k, k) for k in unexpected])

    def check_buffer(self, name: str, value: np.ndarray, label: str) -> None:
        """ValueError if ``value`` cannot be this module's buffer ``name`` (``label`` names it
        in the message); ``load_state_dict`` calls it before writing anything."""

    @classmethod
    def state_shapes(cls, config: dict):
        """``{state_dict name: shape}`` a module built from ``config`` will have, computed
        without building it (so a loader can compare a file's record with its arrays before
        allocating anything); None when unknown. TypeError or ValueError for a bad config."""
        return None

    # --- PyTorch names -------------------------------------------------------------------------
    def torch_modules(self) -> list:
        """The modules of the equivalent ``torch.nn.Sequential``, as a list of
        :class:`TorchModule`: one per layer, then its fused activation as a module of its own.
        Raises :class:`UnsupportedModuleError` naming a module without an equivalent."""
        raise UnsupportedModuleError(
            f"{type(self).__name__} has no PyTorch or ONNX equivalent (define torch_modules())"
        )

    def torch_root(self) -> TorchModule:
        """The equivalent torch model: a Sequential of :meth:`torch_modules`, or that one
        module itself when there is only one (a plain Linear is a torch Linear)."""
        mods = torch_translation(self)
        if len(mods) == 1:
            return mods[0]
        return TorchModule("Sequential", {}, {}, tuple(mods))

    def torch_state_dict_names(self) -> OrderedDict:
        """``{nnfast state_dict name: torch state_dict name}`` of the equivalent torch model,
        in torch's order: ``Sequential(Linear(784, 256, activation="relu"), Linear(256, 10))``
        gives ``0.weight -> 0.weight``, ``0.bias -> 0.bias``, ``1.weight -> 2.weight``,
        ``1.bias -> 2.bias``."""
        names = OrderedDict()

        def walk(mod, prefix):
            for t, n in mod.tensors.items():
                names[n] = prefix + t
            for i, child in enumerate(mod.children):
                walk(child, f"{prefix}{i}.")

        walk(self.torch_root(), "")
        return names

    def _nnfast_names(self, state_dict):
        """``(state_dict keyed by nnfast names, {nnfast name: name given})``: as given when
        every key is an nnfast name, else renamed from the equivalent torch model's names when
        every key is one of those (a torch ``state_dict``)."""
        own = {name for name, _ in self.named_parameters()} | {n for n, _ in self.named_buffers()}
        keys = list(state_dict.keys())
        if all(k in own for k in keys):
            return state_dict, {}
        try:
            to_nnfast = {t: n for n, t in self.torch_state_dict_names().items()}
        except UnsupportedModuleError:
            return state_dict, {}
        if all(k in to_nnfast for k in keys):
            return {to_nnfast[k]: state_dict[k] for k in keys}, {to_nnfast[k]: k for k in keys}
        # neither naming alone (a subset, or keys of neither): a key of both namings that
        # names different arrays cannot be read; torch's 2.weight was loaded as nnfast's
        ambiguous = sorted(k for k in keys if k in own and k in to_nnfast and to_nnfast[k] != k)
        if ambiguous:
            raise ValueError(
                f"load_state_dict: {ambiguous} name different arrays in nnfast's naming and "
                f"torch's; give keys of one naming (state_dict() or torch_state_dict_names())"
            )
        named = {to_nnfast.get(k, k): state_dict[k] for k in keys}
        return named, {to_nnfast[k]: k for k in keys if k in to_nnfast and to_nnfast[k] != k}

    # --- description ---------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Constructor arguments, JSON-serialisable, to rebuild this module (see nnfast.io)."""
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())

    def __repr__(self):
        """``Name(config)``; a module with public sub-modules lists them with their parameter
        counts (private ones, such as a layer's own activation, are its implementation)."""
        head = f"{type(self).__name__}({self.extra_repr()}"
        children = [(n, m) for n, m in self._modules.items() if not n.startswith("_")]
        if not children:
            return head + ")"
        lines = [head] + [_child_line(name, m) for name, m in children]
        lines.append(f")  total {self.parameter_count():,} params")
        return "\n".join(lines)


def _child_line(name, module, shape=""):
    """One line of a container's repr: name, indented repr, output shape, parameter count (a
    container's own total closes its repr)."""
    body = repr(module).replace("\n", "\n  ")
    count = "" if "\n" in body else f"  {module.parameter_count():,} params"
    return f"  ({name}): {body}{shape}{count}"


def _fmt_shape(shape):
    if shape is None:
        return "?"
    return (
        "("
        + ", ".join("N" if i == 0 else ("?" if s is None else str(s)) for i, s in enumerate(shape))
        + ")"
    )


@register
class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse.

    ``Sequential(Linear(784, 256, activation="relu"), Linear(256, 10))``. Its repr lists each
    layer with its output shape (once an input has been seen, or where the layer alone fixes
    it) and its parameter count.
    """

    can_skip_input_grad = True  # passed on to the first layer

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (list, tuple)):
            modules = tuple(modules[0])
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, not a Module")
            self._check_not_in(modules[:i], m, i)
            setattr(self, str(i), m)
        self.__dict__["_layers"] = list(modules)
        self.__dict__["_input_shape"] = None

    @staticmethod
    def _check_not_in(others, module, i):
        """ValueError if ``module`` or one of its sub-modules is among ``others``' modules: a
        module keeps the state of its last forward for its backward, so one run at two places
        gave the first place the second's gradients (silently)."""
        theirs = {id(m) for other in others for m in other.modules()}
        shared = next((m for m in module.modules() if id(m) in theirs), None)
        if shared is not None:
            what = f"layer {i} ({type(module).__name__})"
            if shared is not module:
                what += f" holds a {type(shared).__name__} that"
            raise ValueError(
                f"Sequential: {what} is already in this Sequential; a module keeps its last "
                f"forward's state for backward, so it can run at one place only. Use a new "
                f"module for each place (to tie weights, give them the same Parameter: "
                f"b.weight = a.weight)"
            )

    def __len__(self):
        return len(self._layers)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(*self._layers[i])
        try:
            return self._layers[i]
        except IndexError:
            raise IndexError(
                f"Sequential: index {i} is out of range for {len(self)} layers"
            ) from None

    def __iter__(self):
        return iter(self._layers)

    def append(self, module: Module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        self._check_not_in(self._layers, module, len(self._layers))
        self._layers.append(module)
        setattr(self, str(len(self._layers) - 1), module)
        return self

    def __setattr__(self, name, value):
        layers = self.__dict__.get("_layers")
        if layers is not None and name.isdigit():
            # a layer set by name is the one forward runs (parameters() saw the new one,
            # forward ran the old one, or none)
            if int(name) >= len(layers):
                raise ValueError(f"Sequential: there is no layer {name} (of {len(layers)}); "
                                 f"add layers with append")  # fmt: skip
            if not isinstance(value, Module):
                raise TypeError(f"Sequential: layer {name} must be a Module, got "
                                f"{type(value).__name__}")  # fmt: skip
            i = int(name)
            self._check_not_in(layers[:i] + layers[i + 1 :], value, i)
            layers[i] = value
        super().__setattr__(name, value)

    def forward(self, x):
        self.__dict__["_input_shape"] = (None, *np.shape(x)[1:])
        layers, i = self._layers, 0
        while i < len(layers):  # a layer and the next in one pass where they fuse
            y = layers[i].forward_fused(x, layers[i + 1]) if i + 1 < len(layers) else None
            x, i = (layers[i](x), i + 1) if y is None else (y, i + 2)
        return x

    def backward(self, grad_out, input_grad: bool = True):
        """Backpropagate through every layer; with ``input_grad=False`` the first layer may skip
        the gradient with respect to the model's input (returns None then)."""
        layers, i = self._layers, len(self._layers) - 1
        while i >= 0:  # a pair whose forward ran fused goes back in one pass too
            fused = i > 0 and layers[i - 1].ran_fused(layers[i])
            j = i - 1 if fused else i
            skip = j == 0 and not input_grad and layers[0].can_skip_input_grad
            kwargs = {"input_grad": False} if skip else {}
            if fused:
                grad_out = layers[j].backward_fused(grad_out, layers[i], **kwargs)
            else:
                grad_out = layers[j].backward(grad_out, **kwargs)
            i = j - 1
        return grad_out

    def output_shape(self, input_shape):
        for m in self._layers:
            input_shape = m.output_shape(input_shape)
        return input_shape

    @classmethod
    def state_shapes(cls, config):
        return None  # nnfast.io walks the children's records itself

    def torch_modules(self):
        children = []
        for i, m in enumerate(self._layers):
            children += [c.prefixed(f"{i}.") for c in torch_translation(m)]
        return [TorchModule("Sequential", {}, {}, tuple(children))]

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        shape = self._input_shape
        for i, m in enumerate(self._layers):
            try:  # the shape of a forward that failed part way may not fit every layer
                shape = m.output_shape(shape)
            except ValueError:
                shape = None
            lines.append(_child_line(i, m, f"  -> {_fmt_shape(shape)}"))
        lines.append(f")  total {self.parameter_count():,} params")
        return "\n".join(lines)
