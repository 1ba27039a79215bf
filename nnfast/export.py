"""Models that leave nnfast: ONNX graphs for inference, and the equivalent PyTorch code.

    nnfast.export.to_onnx(model, "m.onnx", input_shape=(1, 28, 28))
    print(nnfast.export.torch_code(model))

Both work from ``Module.torch_modules()``: each nnfast layer is the torch module of the same
name followed by its fused activation as a module of its own (the names under which
``nnfast.io`` writes ``.safetensors`` files). ONNX needs the ``onnx`` package (``pip install
"nnfast[onnx]"``; ``onnxruntime`` runs the graphs).

The ONNX graph: opset :data:`OPSET` and IR version :data:`IR_VERSION` (pinned, so current
runtimes load it), one input ``input`` of shape ``(N, *input_shape)`` with a dynamic batch
``N``, one output ``output``; inference only (Dropout is left out, BatchNorm uses its running
statistics). Each torch module maps to these ONNX operators:

================= ==============================================================
Linear            Gemm (transB=1)
Conv2d            Conv
MaxPool2d         MaxPool
AvgPool2d         AveragePool (count_include_pad=1)
AdaptiveAvgPool2d GlobalAveragePool
BatchNorm1d/2d    BatchNormalization (without running statistics: ReduceMean,
                  Sub, Mul, Add, Sqrt, Div, Mul, Add)
Flatten           Flatten (start_dim=1, end_dim=-1), else Reshape
Dropout, Identity (nothing)
ReLU, Sigmoid,    Relu, Sigmoid, Tanh, Atan, LeakyRelu, Elu
Tanh, Arctan,
LeakyReLU, ELU
Softplus          Mul, Softplus, Div, Greater, Where (torch's beta and threshold)
GELU              Div, Erf, Add, Mul (erf form) or Pow, Mul, Add, Tanh (tanh form)
SiLU              Sigmoid, Mul
BinaryStep        Greater, Cast, IsNaN, Where
PReLU             PRelu (the slope shaped (C, 1, 1) for images)
Maxout            Reshape, ReduceMax
Softmax           Softmax; LogSoftmax: LogSoftmax
================= ==============================================================
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import io
from .nn.module import (
    Module,
    Sequential,
    TorchModule,
    UnsupportedModuleError,
    torch_translation,
)

__all__ = ["IR_VERSION", "OPSET", "UnsupportedModuleError", "to_onnx", "torch_code"]

#: The ONNX opset the graphs use (ai.onnx domain), and the IR version they declare.
OPSET = 17
IR_VERSION = 8


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(
            'ONNX export needs the onnx package: pip install "nnfast[onnx]"'
        ) from None
    return onnx


# --- ONNX ----------------------------------------------------------------------------------------
class _Graph:
    """The nodes and initializers being built, with fresh tensor names."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.helper = onnx.helper
        self.dtype = np.dtype(dtype)
        self.nodes = []
        self.inits = []
        self._n = 0

    def name(self, hint):
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, hint, value, dtype=None):
        """An initializer holding ``value`` (the model's dtype unless ``dtype``)."""
        arr = np.asarray(value, dtype=dtype or self.dtype)
        name = self.name(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type, inputs, hint=None, **attrs):
        out = self.name(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _pairs(kwargs, key):
    v = kwargs[key]
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def _emit(g: _Graph, mod: TorchModule, x: str, shape, arrays: dict) -> str:
    """Append the nodes of one torch module applied to tensor ``x`` of ``shape``; returns the
    output tensor's name. ``arrays`` maps the module's torch tensor names to arrays."""
    t, kw = mod.type, mod.kwargs
    if t == "Sequential":
        raise AssertionError("nested Sequentials are walked by _walk")
    if t == "Linear":
        ins = [x, g.const("weight", arrays["weight"])]
        if kw["bias"]:
            ins.append(g.const("bias", arrays["bias"]))
        return g.op("Gemm", ins, transB=1)
    if t == "Conv2d":
        ins = [x, g.const("weight", arrays["weight"])]
        if kw["bias"]:
            ins.append(g.const("bias", arrays["bias"]))
        ph, pw = _pairs(kw, "padding")
        return g.op(
            "Conv", ins, kernel_shape=_pairs(kw, "kernel_size"), strides=_pairs(kw, "stride"),
            pads=[ph, pw, ph, pw], dilations=_pairs(kw, "dilation"),
        )  # fmt: skip
    if t in ("MaxPool2d", "AvgPool2d"):
        ph, pw = _pairs(kw, "padding")
        attrs = dict(kernel_shape=_pairs(kw, "kernel_size"), strides=_pairs(kw, "stride"),
                     pads=[ph, pw, ph, pw])  # fmt: skip
        if t == "MaxPool2d":
            return g.op("MaxPool", [x], dilations=_pairs(kw, "dilation"), **attrs)
        return g.op("AveragePool", [x], count_include_pad=1, **attrs)
    if t == "AdaptiveAvgPool2d":
        return g.op("GlobalAveragePool", [x])
    if t in ("BatchNorm1d", "BatchNorm2d"):
        return _batchnorm(g, kw, x, shape, arrays)
    if t == "Flatten":
        return _flatten(g, kw, x, shape)
    if t in ("Dropout", "Identity"):
        return x
    simple = {"ReLU": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Arctan": "Atan"}
    if t in simple:
        return g.op(simple[t], [x])
    if t == "LeakyReLU":
        return g.op("LeakyRelu", [x], alpha=float(kw["negative_slope"]))
    if t == "ELU":
        return g.op("Elu", [x], alpha=float(kw["alpha"]))
    if t == "Softplus":  # torch: x where beta x > threshold, else log(1 + exp(beta x)) / beta
        beta, threshold = float(kw["beta"]), float(kw["threshold"])
        bx = x if beta == 1.0 else g.op("Mul", [x, g.const("beta", beta)])
        sp = g.op("Softplus", [bx])
        if beta != 1.0:
            sp = g.op("Div", [sp, g.const("beta", beta)])
        big = g.op("Greater", [bx, g.const("threshold", threshold)])
        return g.op("Where", [big, x, sp])
    if t == "GELU":
        half_x = g.op("Mul", [x, g.const("half", 0.5)])
        if kw.get("approximate", "none") == "tanh":  # tanh(sqrt(2/pi) (x + 0.044715 x^3))
            cube = g.op("Pow", [x, g.const("three", 3.0)])
            inner = g.op("Add", [x, g.op("Mul", [cube, g.const("c", 0.044715)])])
            t_ = g.op("Tanh", [g.op("Mul", [inner, g.const("k", math.sqrt(2 / math.pi))])])
        else:  # erf(x / sqrt(2))
            t_ = g.op("Erf", [g.op("Div", [x, g.const("sqrt2", math.sqrt(2.0))])])
        return g.op("Mul", [half_x, g.op("Add", [t_, g.const("one", 1.0)])])
    if t == "SiLU":
        return g.op("Mul", [x, g.op("Sigmoid", [x])])
    if t == "BinaryStep":  # 1 where x > 0, else 0; NaN stays NaN, as nnfast's kernel keeps it
        positive = g.op("Greater", [x, g.const("zero", 0.0)])
        step = g.op("Cast", [positive], to=g.helper.np_dtype_to_tensor_dtype(g.dtype))
        return g.op("Where", [g.op("IsNaN", [x]), x, step])
    if t == "PReLU":
        slope = np.asarray(arrays["weight"])
        if slope.size > 1 and len(shape) > 2:  # per channel: broadcast along axis 1
            slope = slope.reshape(-1, *([1] * (len(shape) - 2)))
        return g.op("PRelu", [x, g.const("slope", slope)])
    if t == "Maxout":  # (N, C k, ...) read as (N, C, k, ...), max over the k pieces
        k = int(kw["pool_size"])
        c = shape[1] // k
        target = g.const("shape", [0, c, k, *shape[2:]], np.int64)
        return g.op("ReduceMax", [g.op("Reshape", [x, target])], axes=[2], keepdims=0)
    if t in ("Softmax", "LogSoftmax"):
        return g.op(t, [x], axis=int(kw["dim"]))
    raise UnsupportedModuleError(f"to_onnx: {t} has no ONNX translation")


def _batchnorm(g, kw, x, shape, arrays):
    c = int(kw["num_features"])
    eps = float(kw["eps"])
    w = arrays.get("weight", np.ones(c)) if kw["affine"] else np.ones(c)
    b = arrays.get("bias", np.zeros(c)) if kw["affine"] else np.zeros(c)
    if kw["track_running_stats"]:
        ins = [x, g.const("scale", w), g.const("bias", b)]
        ins += [g.const("mean", arrays["running_mean"]), g.const("var", arrays["running_var"])]
        return g.op("BatchNormalization", ins, epsilon=eps)
    # no running statistics: nnfast normalises with the batch's own, in eval() too
    axes = [0, *range(2, len(shape))]
    cshape = [c, *([1] * (len(shape) - 2))]
    mean = g.op("ReduceMean", [x], axes=axes, keepdims=1)
    xc = g.op("Sub", [x, mean])
    var = g.op("ReduceMean", [g.op("Mul", [xc, xc])], axes=axes, keepdims=1)
    std = g.op("Sqrt", [g.op("Add", [var, g.const("eps", eps)])])
    y = g.op("Div", [xc, std])
    y = g.op("Mul", [y, g.const("scale", np.reshape(w, cshape))])
    return g.op("Add", [y, g.const("bias", np.reshape(b, cshape))])


def _flatten(g, kw, x, shape):
    nd = len(shape)
    s, e = int(kw["start_dim"]) % nd, int(kw["end_dim"]) % nd
    if s == 1 and e == nd - 1:
        return g.op("Flatten", [x], axis=1)
    target = [0] * s + [-1] + list(shape[e + 1 :])
    return g.op("Reshape", [x, g.const("shape", target, np.int64)])


def _walk(g, module: Module, x, shape):
    """Emit ``module`` (an nnfast module) applied to ``x`` of ``shape``; returns (x, shape)."""
    if isinstance(module, Sequential):
        torch_translation(module)  # a subclass with a forward of its own is refused
        for m in module:
            x, shape = _walk(g, m, x, shape)
        return x, shape
    mods = torch_translation(module)
    sd = module.state_dict()
    out_shape = module.output_shape(shape)
    # what a layer's activation module reads: the layer's own output (a Maxout after a Conv2d
    # halves its channels; reshaped by the halved count, the graph failed)
    own = getattr(module, "pre_activation_shape", module.output_shape)(shape)
    for i, mod in enumerate(mods):
        arrays = {t: sd[n] for t, n in mod.tensors.items()}
        if mod.type == "Sequential":
            raise UnsupportedModuleError(f"to_onnx: {type(module).__name__} nests a Sequential")
        x = _emit(g, mod, x, shape if i == 0 else own, arrays)
    return x, out_shape


def to_onnx(model: Module, path, input_shape, *, check: bool = True):
    """Write ``model`` as an ONNX inference graph to ``path``; returns the ``onnx.ModelProto``.

    Parameters
    ----------
    model : Module
        Any nnfast model built from the modules in this module's table (else
        :class:`UnsupportedModuleError` naming the module). Exported as it is now: in eval
        mode, in its dtype (float32, or float64 where the runtime implements it).
    path : str or PathLike, or None
        Where to write (atomically); None writes nothing.
    input_shape : tuple of int
        The shape of one sample, without the batch: ``(784,)`` or ``(1, 28, 28)``. The graph's
        input is ``(N, *input_shape)`` with ``N`` dynamic.
    check : bool
        Run ``onnx.checker.check_model(full_check=True)`` (shape inference included).
    """
    onnx = _onnx()
    from . import _validate

    if isinstance(input_shape, (int, np.integer)):
        input_shape = (input_shape,)
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__"):
        raise TypeError(f"to_onnx: input_shape must be a tuple of ints, got {input_shape!r}")
    dims = [
        _validate.integer(d, f"input_shape[{i}]", "to_onnx", low=1)
        for i, d in enumerate(input_shape)
    ]
    if not isinstance(model, Module):
        raise TypeError(f"to_onnx: model must be an nnfast Module, got {type(model).__name__}")
    dtype = model.dtype or np.dtype(np.float32)
    g = _Graph(onnx, dtype)
    was_training = model.training
    model.eval()
    try:
        out, out_shape = _walk(g, model, "input", (None, *dims))
    finally:
        model.train(was_training)
    if out == "input":  # a graph that computes nothing still needs a node
        out = g.op("Identity", [out])
    g.nodes.append(onnx.helper.make_node("Identity", [out], ["output"]))
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))

    def value_info(name, shape):
        dims_ = ["N" if i == 0 else d for i, d in enumerate(shape)]
        return onnx.helper.make_tensor_value_info(name, elem, dims_)

    graph = onnx.helper.make_graph(
        g.nodes, "nnfast", [value_info("input", (None, *dims))],
        [value_info("output", out_shape)], initializer=g.inits,
    )  # fmt: skip
    proto = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="nnfast",
        ir_version=IR_VERSION,
    )
    if check:
        onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        from ._atomic import atomic_write

        with atomic_write(os.fspath(path)) as f:
            f.write(proto.SerializeToString())
    return proto


# --- PyTorch code --------------------------------------------------------------------------------
_CUSTOM = {
    "BinaryStep": '''class BinaryStep(nn.Module):
    """1 where x > 0, else 0, NaN where x is NaN (nnfast's "step" activation)."""

    def forward(self, x):
        return torch.where(torch.isnan(x), x, (x > 0).to(x.dtype))
''',
    "Arctan": """class Arctan(nn.Module):
    def forward(self, x):
        return torch.atan(x)
""",
    "Maxout": '''class Maxout(nn.Module):
    """Max over groups of pool_size consecutive channels: (N, C k, ...) -> (N, C, ...)."""

    def __init__(self, pool_size=2):
        super().__init__()
        self.pool_size = pool_size

    def forward(self, x):
        n, ck, *rest = x.shape
        return x.reshape(n, ck // self.pool_size, self.pool_size, *rest).amax(dim=2)
''',
}


def _code(mod: TorchModule, indent: str, used: set) -> str:
    if mod.type == "Sequential":
        inner = "".join(f"{indent}    {_code(c, indent + '    ', used)},\n" for c in mod.children)
        return f"nn.Sequential(\n{inner}{indent})"
    args = ", ".join(
        f"{k}={tuple(v) if isinstance(v, list) else v!r}" for k, v in mod.kwargs.items()
    )
    if mod.type in _CUSTOM:
        used.add(mod.type)
        return f"{mod.type}({args})"
    return f"nn.{mod.type}({args})"


def torch_code(model: Module) -> str:
    """Python source that builds the equivalent PyTorch model as ``model``: paste it, then
    ``model.load_state_dict(safetensors.torch.load_file("m.safetensors"))`` on a file
    ``nnfast.io.save`` wrote loads with ``strict=True`` and gives the same outputs.

    Raises :class:`UnsupportedModuleError` naming a module without a PyTorch equivalent."""
    used: set = set()
    body = _code(model.torch_root(), "", used)
    parts = ["import torch\nfrom torch import nn\n"]
    parts += [_CUSTOM[name] for name in sorted(used)]
    parts.append(f"model = {body}\n")
    return "\n\n".join(parts)


def load_and_export(src, dst, input_shape=None):
    """``nnfast export``: the model at ``src`` (``.npz`` or ``.safetensors``) to ONNX at
    ``dst``; ``input_shape`` defaults to the file's metadata (``input_shape``), else the first
    layer's width if it is a Linear (io.input_shape). Returns the input shape used."""
    if os.path.exists(dst) and os.path.exists(src) and os.path.samefile(src, dst):
        raise ValueError(f"export: {dst} is the model file itself; write the ONNX elsewhere")
    mf = io.open_model_file(src)
    model = io.load_model_file(mf)
    if input_shape is None:
        input_shape = io.input_shape(model, mf.metadata)
    if input_shape is None:
        raise ValueError(f"export: {src} records no input_shape; give --input-shape")
    to_onnx(model, dst, tuple(input_shape))
    return tuple(input_shape)
