"""Convolution and pooling building blocks on NCHW arrays: im2col / col2im, max and average
pooling (forward and backward), global average pooling.

The C kernels (csrc/conv.c) do the work; without the native extension the same functions run
in numpy (slower, same results). Geometry arguments follow torch.nn: an int or an (h, w) pair.
"""

from __future__ import annotations

import numpy as np

from ._native import core


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(int(v) for v in value)
    else:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair


def geometry(kernel_size, stride=1, padding=0, dilation=1) -> tuple:
    """The 8-tuple (kh, kw, sh, sw, ph, pw, dh, dw) the kernels take."""
    kh, kw = _pair(kernel_size, "kernel_size", 1)
    sh, sw = _pair(stride, "stride", 1)
    ph, pw = _pair(padding, "padding", 0)
    dh, dw = _pair(dilation, "dilation", 1)
    return (kh, kw, sh, sw, ph, pw, dh, dw)


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    span = d * (k - 1) + 1
    return -1 if size + 2 * p < span else (size + 2 * p - span) // s + 1


def output_shape(h: int, w: int, geom: tuple, what: str = "conv") -> tuple[int, int]:
    """(Ho, Wo) for an H x W input; ValueError naming ``what`` if the window does not fit."""
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


def _check_out(out, shape, dtype, what: str) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray) or out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"{what}: out must be a {np.dtype(dtype).name} array of shape {shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{what}: out must be C-contiguous and writeable")
    return out


# --- numpy versions, used without the native extension -----------------------------------------


def _windows(x, geom, pad_value=0.0):
    """(N, C, Ho, Wo, KH, KW) strided view of the windows of x (padded with pad_value)."""
    kh, kw, sh, sw, ph, pw, dh, dw = geom
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    v = np.lib.stride_tricks.sliding_window_view(xp, (span_h, span_w), axis=(2, 3))
    return v[:, :, ::sh, ::sw, ::dh, ::dw]


def _im2col_numpy(x, geom, cols):
    n, c = x.shape[:2]
    win = _windows(x, geom)  # (N, C, Ho, Wo, KH, KW)
    cols[...] = win.transpose(0, 2, 3, 1, 4, 5).reshape(cols.shape)


def _col2im_numpy(cols, geom, dx):
    kh, kw, sh, sw, ph, pw, dh, dw = geom
    n, c, h, w = dx.shape
    ho, wo = output_shape(h, w, geom)
    r = cols.reshape(n, ho, wo, c, kh, kw)
    padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dx.dtype)
    for i in range(kh):
        for j in range(kw):
            hs, ws = i * dh, j * dw
            padded[:, :, hs : hs + sh * ho : sh, ws : ws + sw * wo : sw] += r[
                :, :, :, :, i, j
            ].transpose(0, 3, 1, 2)
    dx[...] = padded[:, :, ph : ph + h, pw : pw + w]


# --- public functions --------------------------------------------------------------------------


def im2col(x, kernel_size, stride=1, padding=0, dilation=1, out=None) -> np.ndarray:
    """Unfold an (N, C, H, W) array into columns of shape (N*Ho*Wo, C*KH*KW).

    Row ``(n*Ho + oh)*Wo + ow`` is the receptive field of output pixel (oh, ow) of image n,
    ordered (c, i, j); padding reads as 0. A convolution is ``cols @ W.reshape(Cout, -1).T``.
    """
    x = _check_nchw(x, "im2col")
    geom = geometry(kernel_size, stride, padding, dilation)
    n, c, h, w = x.shape
    ho, wo = output_shape(h, w, geom, "im2col")
    cols = _check_out(out, (n * ho * wo, c * geom[0] * geom[1]), x.dtype, "im2col")
    if core is not None:
        core.im2col(x, geom, cols)
    else:
        _im2col_numpy(x, geom, cols)
    return cols


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1, out=None):
    """The adjoint of :func:`im2col`: sum columns back into an (N, C, H, W) array."""
    n, c, h, w = (int(v) for v in input_shape)
    geom = geometry(kernel_size, stride, padding, dilation)
    ho, wo = output_shape(h, w, geom, "col2im")
    cols = np.ascontiguousarray(cols)
    if cols.dtype not in (np.float32, np.float64):
        raise TypeError(f"col2im: cols has dtype {cols.dtype}; expected float32 or float64")
    want = (n * ho * wo, c * geom[0] * geom[1])
    if cols.shape != want:
        raise ValueError(f"col2im: cols has shape {cols.shape}, expected {want}")
    dx = _check_out(out, (n, c, h, w), cols.dtype, "col2im")
    if core is not None:
        core.col2im(cols, geom, dx)
    else:
        _col2im_numpy(cols, geom, dx)
    return dx


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1):
    """Max pooling of (N, C, H, W): returns ``(y, argmax)``, argmax int32 indices into each
    H*W input plane (for :func:`max_pool2d_backward`). ``stride`` defaults to the kernel."""
    x = _check_nchw(x, "max_pool2d")
    geom = geometry(kernel_size, kernel_size if stride is None else stride, padding, dilation)
    n, c, h, w = x.shape
    ho, wo = output_shape(h, w, geom, "max_pool2d")
    y = np.empty((n, c, ho, wo), x.dtype)
    argmax = np.empty((n, c, ho, wo), np.int32)
    if core is not None:
        core.max_pool2d(x, geom, y, argmax)
    else:
        win = _windows(x, geom, pad_value=-np.inf)
        flat = win.reshape(n, c, ho, wo, -1)
        k = np.argmax(flat, axis=-1)
        y[...] = np.take_along_axis(flat, k[..., None], -1)[..., 0]
        kh, kw, sh, sw, ph, pw, dh, dw = geom
        ih = np.arange(ho)[:, None] * sh - ph + (k // kw) * dh
        iw = np.arange(wo)[None, :] * sw - pw + (k % kw) * dw
        argmax[...] = ih * w + iw
    return y, argmax


def max_pool2d_backward(dy, argmax, input_shape, kernel_size, stride=None, padding=0, dilation=1):
    """Gradient of :func:`max_pool2d`: dy scattered to the argmax positions."""
    geom = geometry(kernel_size, kernel_size if stride is None else stride, padding, dilation)
    dy = _check_nchw(dy, "max_pool2d_backward")
    dx = np.empty(tuple(int(v) for v in input_shape), dy.dtype)
    if argmax.shape != dy.shape:
        raise ValueError(f"max_pool2d_backward: argmax {argmax.shape} and dy {dy.shape} differ")
    if core is not None:
        core.max_pool2d_backward(dy, np.ascontiguousarray(argmax, np.int32), geom, dx)
    else:
        n, c, h, w = dx.shape
        dx[...] = 0
        flat = dx.reshape(n * c, h * w)
        idx = argmax.reshape(n * c, -1)
        np.add.at(flat, (np.arange(n * c)[:, None], idx), dy.reshape(n * c, -1))
    return dx


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Average pooling of (N, C, H, W); padding counts as zeros in the mean (PyTorch's
    default ``count_include_pad=True``)."""
    x = _check_nchw(x, "avg_pool2d")
    geom = geometry(kernel_size, kernel_size if stride is None else stride, padding, 1)
    n, c, h, w = x.shape
    ho, wo = output_shape(h, w, geom, "avg_pool2d")
    y = np.empty((n, c, ho, wo), x.dtype)
    if core is not None:
        core.avg_pool2d(x, geom, y)
    else:
        y[...] = _windows(x, geom).mean(axis=(-2, -1))
    return y


def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0):
    """Gradient of :func:`avg_pool2d`."""
    geom = geometry(kernel_size, kernel_size if stride is None else stride, padding, 1)
    dy = _check_nchw(dy, "avg_pool2d_backward")
    dx = np.empty(tuple(int(v) for v in input_shape), dy.dtype)
    if core is not None:
        core.avg_pool2d_backward(dy, geom, dx)
    else:
        n, c, h, w = dx.shape
        ho, wo = dy.shape[2:]
        kh, kw = geom[:2]
        cols = np.broadcast_to(
            (dy / (kh * kw)).transpose(0, 2, 3, 1)[..., None, None], (n, ho, wo, c, kh, kw)
        )
        _col2im_numpy(np.ascontiguousarray(cols).reshape(n * ho * wo, -1), geom, dx)
    return dx


def global_avg_pool2d(x) -> np.ndarray:
    """Mean over H and W: (N, C, H, W) -> (N, C)."""
    x = _check_nchw(x, "global_avg_pool2d")
    return x.mean(axis=(2, 3), dtype=x.dtype)


def global_avg_pool2d_backward(dy, input_shape) -> np.ndarray:
    """Gradient of :func:`global_avg_pool2d`: dy / (H*W) spread over each plane."""
    n, c, h, w = (int(v) for v in input_shape)
    dy = np.asarray(dy)
    out = np.empty((n, c, h, w), dy.dtype)
    out[...] = (dy / (h * w))[:, :, None, None]
    return out
