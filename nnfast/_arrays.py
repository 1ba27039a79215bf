"""Memory-layout helpers that several floors need (a leaf: no nnfast imports).

``overlaps`` decides whether two arrays share memory (gemm and functional refuse outputs that
partly overlap their inputs); ``native_order`` takes float arrays stored in the other byte
order (big-endian files, ``'>f4'``) into the CPU's, which the kernels read; ``flat_base``
recognises arrays that tile one flat buffer (the layout optimizers give their parameters).
"""

from __future__ import annotations

import numpy as np

__all__ = ["flat_base", "native_order", "overlaps"]


def overlaps(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether ``x`` and ``y`` share memory; True when that is too costly to decide."""
    if not np.may_share_memory(x, y):
        return False
    try:
        return bool(np.shares_memory(x, y, max_work=100_000))
    except np.exceptions.TooHardError:  # too costly to decide: assume they overlap
        return True


def native_order(x: np.ndarray) -> np.ndarray:
    """``x``, or a copy in the CPU's byte order if it is a float32/float64 array stored in
    the other one (layers converted such arrays; gemm and functional called '>f4' a dtype
    that is not float32)."""
    if x.dtype.kind == "f" and not x.dtype.isnative and x.dtype.itemsize in (4, 8):
        return x.astype(x.dtype.newbyteorder("="))
    return x


def flat_base(arrays):
    """The 1-D array that ``arrays`` tile exactly, in order and contiguously, else None."""
    if not arrays:
        return None
    base = arrays[0].base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    start = base.__array_interface__["data"][0]
    offset = 0
    item = base.itemsize
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous or a.dtype != base.dtype:
            return None
        if a.__array_interface__["data"][0] != start + offset * item:
            return None
        offset += a.size
    return base if offset == base.size else None
