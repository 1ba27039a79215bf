"""Convolution and pooling building blocks on NCHW arrays: im2col / col2im, max and average
pooling (forward and backward), global average pooling.

The C kernels (csrc/conv.c) do the work; without the native extension these functions raise
RuntimeError (the tests keep loop references as their oracle). Geometry arguments follow
torch.nn: an int or an (h, w) pair of whole numbers below 2**31 (2.5 is refused, not
truncated); a pooling padding is at most half the kernel.
"""

from __future__ import annotations

import math

import numpy as np

from . import _validate
from ._arrays import overlaps
from ._native import core


def _core(what):
    """The compiled extension, or RuntimeError: without it only nnfast.gemm runs (on SciPy's
    BLAS); see the README's policy for the missing extension."""
    if core is None:
        raise RuntimeError(f"{what} needs nnfast's compiled extension (pip install .)")
    return core


#: Geometry values and channel counts are C ints in the kernels.
INT_MAX = 2**31 - 1


def _whole(items, minimum, what, name, value, kind):
    """items as Python ints in [minimum, INT_MAX], else TypeError / ValueError showing value."""
    try:  # the one policy: 2.5, 2.0 and "3" are TypeErrors, never truncated or parsed
        out = [_validate.integer(v, name, what) for v in items]
    except TypeError:
        raise TypeError(f"{what}: {name} must be {kind}, got {value!r}") from None
    if min(out) < minimum or max(out) > INT_MAX:
        raise ValueError(f"{what}: {name} must be >= {minimum} and < 2**31, got {value!r}")
    return out


def whole(value, name: str, minimum: int, what: str) -> int:
    """``value`` as an int in [minimum, 2**31 - 1]: TypeError unless it is an integer (numpy
    ints yes, bool and 3.0 no), ValueError out of range; messages start with ``what``."""
    return _whole((value,), minimum, what, name, value, "a whole number")[0]


def _pair(value, name: str, minimum: int, what: str) -> tuple[int, int]:
    items = value if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{what}: {name} must be an int or a pair of ints, got {value!r}")
    a, b = items
    if type(a) is int and type(b) is int and minimum <= a <= INT_MAX and minimum <= b <= INT_MAX:
        return (a, b)  # the usual case, kept fast: every layer call parses its geometry
    return tuple(_whole(items, minimum, what, name, value, "an int or a pair of ints"))


def geometry(kernel_size, stride=1, padding=0, dilation=1, what: str = "geometry") -> tuple:
    """The 8-tuple (kh, kw, sh, sw, ph, pw, dh, dw) the kernels take; errors name ``what``."""
    kh, kw = _pair(kernel_size, "kernel_size", 1, what)
    sh, sw = _pair(stride, "stride", 1, what)
    ph, pw = _pair(padding, "padding", 0, what)
    dh, dw = _pair(dilation, "dilation", 1, what)
    return (kh, kw, sh, sw, ph, pw, dh, dw)


def pool_geometry(kernel_size, stride=None, padding=0, dilation=1, what: str = "pool") -> tuple:
    """:func:`geometry` for pooling: ``stride`` None means the kernel, and, as in torch, the
    padding may be at most half the (dilated) kernel extent: wider padding only adds windows
    that hold padding alone."""
    stride = kernel_size if stride is None else stride
    geom = geometry(kernel_size, stride, padding, dilation, what)
    kh, kw, _, _, ph, pw, dh, dw = geom
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if ph > eh // 2 or pw > ew // 2:
        raise ValueError(
            f"{what}: padding {ph}x{pw} must be at most half the kernel extent {eh}x{ew} "
            f"(kernel {kh}x{kw}, dilation {dh}x{dw})"
        )
    return geom


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    span = d * (k - 1) + 1
    return -1 if size + 2 * p < span else (size + 2 * p - span) // s + 1


def output_shape(h: int, w: int, geom: tuple, what="conv") -> tuple[int, int]:
    """(Ho, Wo) for an H x W input; ValueError naming ``what`` (a name, or a module: formatted
    only then) if the window does not fit."""
    kh, kw, sh, sw, ph, pw, dh, dw = geom
    ho, wo = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
    if ho < 1 or wo < 1:
        eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        raise ValueError(
            f"{what}: kernel {kh}x{kw} (dilation {dh}x{dw}, extent {eh}x{ew}) is larger than "
            f"the padded input {h + 2 * ph}x{w + 2 * pw} (input {h}x{w}, padding {ph}x{pw})"
        )
    return ho, wo


def _check_nchw(x, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{what}: input has dtype {x.dtype}; expected float32 or float64")
    if x.ndim != 4:
        raise ValueError(f"{what}: expected a 4-D (N, C, H, W) input, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _input_shape(input_shape, what: str) -> tuple:
    """The (N, C, H, W) a backward was given as a tuple of ints, or ValueError naming what."""
    dims = tuple(input_shape) if np.iterable(input_shape) else ()
    if len(dims) != 4:
        raise ValueError(f"{what}: input_shape must be (N, C, H, W), got {input_shape!r}")
    return tuple(_whole(dims, 0, what, "input_shape", input_shape, "(N, C, H, W) of ints"))


def empty(shape, dtype, what, input_shape=None) -> np.ndarray:
    """``np.empty``, but a request too large to allocate is a MemoryError naming ``what`` (a
    name or a module, formatted only then), the shape and ``input_shape``: an absurd padding
    asks for terabytes, and numpy's own message names neither."""
    try:
        return np.empty(shape, dtype)
    except (MemoryError, ValueError):  # ValueError: more bytes than an index can address
        gib = math.prod(shape) * np.dtype(dtype).itemsize / 2**30
        source = "" if input_shape is None else f" (input of shape {tuple(input_shape)})"
        raise MemoryError(
            f"{what}: cannot allocate {gib:.4g} GiB for a {np.dtype(dtype).name} array of shape "
            f"{tuple(shape)}{source}"
        ) from None


def _check_out(out, shape, dtype, what: str, input_shape=None, source=None) -> np.ndarray:
    """``out`` checked (or a new array): of ``shape`` and ``dtype``, C-contiguous, writeable and
    apart from ``source``, the array read (written while read, the result was wrong)."""
    if out is None:
        return empty(shape, dtype, what, input_shape)
    if not isinstance(out, np.ndarray) or out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"{what}: out must be a {np.dtype(dtype).name} array of shape {shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{what}: out must be C-contiguous and writeable")
    if source is not None and overlaps(out, source):
        raise ValueError(f"{what}: out overlaps the input; pass a separate output array")
    return out


# --- public functions --------------------------------------------------------------------------


def im2col(x, kernel_size, stride=1, padding=0, dilation=1, out=None) -> np.ndarray:
    """Unfold an (N, C, H, W) array into columns of shape (N*Ho*Wo, C*KH*KW).

    Row ``(n*Ho + oh)*Wo + ow`` is the receptive field of output pixel (oh, ow) of image n,
    ordered (c, i, j); padding reads as 0. A convolution is ``cols @ W.reshape(Cout, -1).T``.
    """
    x = _check_nchw(x, "im2col")
    geom = geometry(kernel_size, stride, padding, dilation, "im2col")
    n, c, h, w = x.shape
    ho, wo = output_shape(h, w, geom, "im2col")
    cols = _check_out(out, (n * ho * wo, c * geom[0] * geom[1]), x.dtype, "im2col", x.shape, x)
    _core("im2col").im2col(x, geom, cols)
    return cols


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1, out=None):
    """The adjoint of :func:`im2col`: sum columns back into an (N, C, H, W) array."""
    n, c, h, w = _input_shape(input_shape, "col2im")
    geom = geometry(kernel_size, stride, padding, dilation, "col2im")
    ho, wo = output_shape(h, w, geom, "col2im")
    cols = np.ascontiguousarray(cols)
    if cols.dtype not in (np.float32, np.float64):
        raise TypeError(f"col2im: cols has dtype {cols.dtype}; expected float32 or float64")
    want = (n * ho * wo, c * geom[0] * geom[1])
    if cols.shape != want:
        raise ValueError(
            f"col2im: cols has shape {cols.shape}, expected {want} for input_shape {(n, c, h, w)}"
        )
    dx = _check_out(out, (n, c, h, w), cols.dtype, "col2im", source=cols)
    _core("col2im").col2im(cols, geom, dx)
    return dx


def _pool_grad_input(dy, input_shape, geom, what):
    """dy checked against the pooling output of input_shape, and a dx to fill."""
    dy = _check_nchw(dy, what)
    n, c, h, w = shape = _input_shape(input_shape, what)
    want = (n, c, *output_shape(h, w, geom, what))
    if dy.shape != want:
        raise ValueError(f"{what}: dy has shape {dy.shape}, expected {want} for input {shape}")
    return dy, empty(shape, dy.dtype, what)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1):
    """Max pooling of (N, C, H, W): returns ``(y, argmax)``, argmax int32 indices into each
    H*W input plane (for :func:`max_pool2d_backward`). ``stride`` defaults to the kernel;
    ``padding`` is at most half the dilated kernel."""
    x = _check_nchw(x, "max_pool2d")
    geom = pool_geometry(kernel_size, stride, padding, dilation, "max_pool2d")
    n, c, h, w = x.shape
    ho, wo = output_shape(h, w, geom, "max_pool2d")
    y = empty((n, c, ho, wo), x.dtype, "max_pool2d", x.shape)
    argmax = np.empty((n, c, ho, wo), np.int32)
    _core("max_pool2d").max_pool2d(x, geom, y, argmax)
    return y, argmax


def max_pool2d_backward(dy, argmax, input_shape, kernel_size, stride=None, padding=0, dilation=1):
    """Gradient of :func:`max_pool2d`: dy scattered to the argmax positions."""
    what = "max_pool2d_backward"
    geom = pool_geometry(kernel_size, stride, padding, dilation, what)
    dy, dx = _pool_grad_input(dy, input_shape, geom, what)
    argmax = np.asarray(argmax)
    if argmax.shape != dy.shape:
        raise ValueError(f"{what}: argmax {argmax.shape} and dy {dy.shape} differ")
    n, c, h, w = dx.shape
    if argmax.dtype != np.int32:
        # a cast would wrap 2**32 + 1 to 1 and truncate 1.7 to 1; the C kernel checks int32
        if argmax.dtype.kind not in "iu":
            raise TypeError(f"{what}: argmax must be an integer array, got dtype {argmax.dtype}")
        if argmax.size and (argmax.min() < -1 or argmax.max() >= h * w):
            raise ValueError(
                f"{what}: argmax is out of range for the {h}x{w} input plane (indices must be "
                f"-1 or in [0, {h * w}))"
            )
    _core(what).max_pool2d_backward(dy, np.ascontiguousarray(argmax, np.int32), geom, dx)
    return dx


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Average pooling of (N, C, H, W); padding (at most half the kernel) counts as zeros in
    the mean (PyTorch's default ``count_include_pad=True``)."""
    x = _check_nchw(x, "avg_pool2d")
    geom = pool_geometry(kernel_size, stride, padding, 1, "avg_pool2d")
    n, c, h, w = x.shape
    ho, wo = output_shape(h, w, geom, "avg_pool2d")
    y = empty((n, c, ho, wo), x.dtype, "avg_pool2d", x.shape)
    _core("avg_pool2d").avg_pool2d(x, geom, y)
    return y


def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0):
    """Gradient of :func:`avg_pool2d`."""
    what = "avg_pool2d_backward"
    geom = pool_geometry(kernel_size, stride, padding, 1, what)
    dy, dx = _pool_grad_input(dy, input_shape, geom, what)
    _core(what).avg_pool2d_backward(dy, geom, dx)
    return dx


def global_avg_pool2d(x) -> np.ndarray:
    """Mean over H and W: (N, C, H, W) -> (N, C)."""
    x = _check_nchw(x, "global_avg_pool2d")
    _has_pixels(x.shape, "global_avg_pool2d")
    return x.mean(axis=(2, 3), dtype=x.dtype)


def _has_pixels(shape, what):
    if 0 in shape[2:]:  # the mean of no pixels: NaN and numpy's warnings
        raise ValueError(f"{what}: planes of {shape[2]}x{shape[3]} pixels have no average")


def global_avg_pool2d_backward(dy, input_shape) -> np.ndarray:
    """Gradient of :func:`global_avg_pool2d`: dy (N, C) / (H*W) spread over each plane."""
    what = "global_avg_pool2d_backward"
    n, c, h, w = _input_shape(input_shape, what)
    _has_pixels((n, c, h, w), what)
    dy = np.asarray(dy)
    if dy.dtype not in (np.float32, np.float64):  # an int dy gave int zeros for 0.75
        raise TypeError(f"{what}: dy has dtype {dy.dtype}; expected float32 or float64")
    if dy.shape != (n, c):
        raise ValueError(
            f"{what}: dy has shape {dy.shape}, expected {(n, c)} for input {(n, c, h, w)}"
        )
    out = empty((n, c, h, w), dy.dtype, what)
    out[...] = (dy / (h * w))[:, :, None, None]
    return out
