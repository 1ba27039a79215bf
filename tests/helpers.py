"""Helpers shared by several test files (imported as `helpers`: pytest puts tests/ on sys.path)."""

import os
import signal
import time

import numpy as np

from nnfast import functional as F
from nnfast.data import write_idx


def write_tiny_mnist(d, n_train=320, n_test=100, seed=0):
    """The four MNIST IDX files in directory d (created), learnable in one epoch: class k is a
    bright 10x4 bar at one of ten places, plus noise. Returns d."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        x = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(y):
            r, c = 2 + 12 * (k // 5), 2 + 5 * (k % 5)
            x[i, r : r + 10, c : c + 4] = 250
        write_idx(d / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", y)
    return d


def signal_after_checkpoint(p, ckpt, sig, timeout=60):
    """Send sig to the running process p once the checkpoint file ckpt exists; returns p's
    (stdout, stderr). Whatever happens, p (and its process group, if it leads one) is gone."""
    try:
        deadline = time.monotonic() + timeout
        while not ckpt.exists():
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, f"no checkpoint after {timeout} s"
            time.sleep(0.05)
        time.sleep(0.3)
        p.send_signal(sig)
        return p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # mpiexec and its ranks
            except OSError:
                p.kill()


def bf16_paths():
    """The bf16 GEMM's kernels here, as (ISA path, tiles): each supported path's with AMX's tile
    kernel off, then the tile kernel (the AVX-512 path's, csrc/gemm_bf16.h) where this CPU and
    OS run it."""
    from nnfast._native import core

    if core is None:
        return []
    paths = [(isa, False) for isa in core.isa_supported()]
    return [*paths, ("avx512", True)] if core.bf16_tiles_supported() else paths


def round_bf16(x):
    """float32 -> float32 holding the bf16 value: 8 significant bits, ties to even (np.rint),
    subnormals to a zero of the same sign, overflow to Inf, NaN kept. An independent
    implementation by frexp/ldexp, not the bit trick of the C code."""
    x = np.asarray(x, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        mant, exp = np.frexp(x.astype(np.float64))
        r = np.ldexp(np.rint(mant * 256.0) / 256.0, exp).astype(np.float32)
    tiny = np.abs(x) < np.finfo(np.float32).tiny
    r = np.where(tiny, np.copysign(np.float32(0), x), r)
    return np.where(np.isfinite(x), r, x).astype(np.float32)


def conv_reference(x, w, geom, dy=None):
    """A convolution in float64 through im2col, geom as _convops.geometry gives it:
    y (N, Cout, Ho, Wo) = conv(x, w), and for an output gradient dy also
    dW = dY^T cols and dx = col2im(dY W); returns (y, dW, dx), None for those without dy."""
    kh, kw, sh, sw, ph, pw, dh, dwl = geom
    args = (kh, kw), (sh, sw), (ph, pw), (dh, dwl)
    n, cout = x.shape[0], w.shape[0]
    cols = F.im2col(x.astype(np.float64), *args)  # (N*Ho*Wo, K)
    wm = w.astype(np.float64).reshape(cout, -1)
    ho = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    y = (cols @ wm.T).reshape(n, ho, -1, cout).transpose(0, 3, 1, 2)
    if dy is None:
        return y, None, None
    dyr = dy.astype(np.float64).transpose(0, 2, 3, 1).reshape(-1, cout)
    dw = (dyr.T @ cols).reshape(w.shape)
    return y, dw, F.col2im(dyr @ wm, x.shape, *args)
