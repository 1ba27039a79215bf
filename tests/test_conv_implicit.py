"""The GEMM path's implicit kernels (stride-1 layers whose Cout is a multiple of the vector
lanes and whose output rows are at least 4 wide read the image in place): forward with bias,
activations and the fused pooling, and the weight gradient (with either input gradient),
against a float64 reference and against the GEMMs on column matrices (core.conv_implicit
off), every ISA, both dtypes, odd sizes; that the path is taken (and that the column-work
counters see every path); the hook's bad values."""

import numpy as np
import pytest
from helpers import conv_reference

from nnfast import _convops, _gemm
from nnfast._native import core

# (N, Cin, H, W, Cout, kernel, padding, dilation); Cout 16 or 32 is a multiple of every ISA's
# lanes in both dtypes
CONFIGS = [
    (3, 6, 12, 12, 16, 5, 0, 1),  # LeNet-5's second layer: 8 x 8 outputs, K = 150
    (2, 3, 9, 11, 16, 3, 1, 1),  # padding; 9 rows (an odd last one), 11 columns (overlap)
    (1, 2, 13, 20, 32, (3, 5), (2, 1), (2, 1)),  # two channel blocks, dilation
    (1, 4, 5, 12, 16, (5, 3), 0, 1),  # a single output row, K = 60
    (2, 1, 7, 8, 16, (7, 1), 0, 1),  # rows exactly 8 wide, K = 7 (fewer than a tap block)
    (2, 5, 9, 12, 16, 3, 0, 1),  # rows 10 wide: tiles of 5
    (1, 3, 7, 7, 32, 3, 1, 1),  # rows 7 wide: one tile of 7
    (2, 2, 6, 6, 16, 3, 0, 1),  # rows 4 wide, the narrowest taken
]
POOLED = CONFIGS[:3] + CONFIGS[5:]  # two rows or more
POOL = _convops.pool_geometry(2, None, 0, 1, "conv2d_gemm")


pytestmark = pytest.mark.usefixtures("conv_hooks")


def _layer(cfg, dtype, rng):
    n, cin, h, wd, cout, k, p, d = cfg
    geom = _convops.geometry(k, 1, p, d)
    x = rng.standard_normal((n, cin, h, wd)).astype(dtype)
    w = rng.standard_normal((cout, cin, geom[0], geom[1])).astype(dtype)
    bias = rng.standard_normal(cout).astype(dtype)
    ho, wo = _convops.output_shape(h, wd, geom)
    assert wo >= 4  # the implicit kernels take it
    return x, w, bias, geom, (n, cout, ho, wo)


def _tol(dtype):
    return 1e-4 if dtype == "float32" else 1e-12


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_forward_against_reference(cfg, dtype, activation, isa, rng):
    x, w, bias, geom, shape = _layer(cfg, dtype, rng)
    want, _, _ = conv_reference(x, w, geom)
    want = want + bias[:, None, None]
    want = {None: want, "relu": np.maximum(want, 0), "tanh": np.tanh(want)}[activation]
    act, param = _gemm._common_act(activation)
    y = np.full(shape, np.nan, dtype)
    core.conv2d_gemm(x, w, bias, geom, act, param, False, y)
    tol = _tol(dtype)
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("cfg", POOLED)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pooled_forward_against_the_gemms(cfg, dtype, isa, rng):
    x, w, bias, geom, (n, cout, ho, wo) = _layer(cfg, dtype, rng)
    act, param = _gemm._common_act("relu")
    got = []
    for on in (True, False):
        core.conv_implicit(on)
        y = np.full((n, cout, ho // 2, wo // 2), np.nan, dtype)
        argmax = np.full(y.shape, -7, np.int32)
        core.conv2d_gemm(x, w, bias, geom, act, param, False, y, POOL, argmax)
        got.append((y, argmax))
    (y, am), (y_gemm, am_gemm) = got
    np.testing.assert_allclose(y, y_gemm, rtol=_tol(dtype), atol=_tol(dtype))
    np.testing.assert_array_equal(am, am_gemm)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dx_from", ["direct", "fold", None])
def test_weight_gradient_against_reference(cfg, dtype, dx_from, isa, rng):
    x, w, _, geom, shape = _layer(cfg, dtype, rng)
    dy = rng.standard_normal(shape).astype(dtype)
    _, dw_want, dx_want = conv_reference(x, w, geom, dy)
    core.conv_direct_dx(0 if dx_from == "fold" else 10**9)
    dw = np.full_like(w, np.nan)
    dx = None if dx_from is None else np.full_like(x, np.nan)
    core.conv2d_gemm_backward(x, dy, w, geom, False, False, dw, dx)
    tol = _tol(dtype)
    np.testing.assert_allclose(dw, dw_want, rtol=tol, atol=tol * np.abs(dw_want).max())
    if dx is not None:
        np.testing.assert_allclose(dx, dx_want, rtol=tol, atol=tol * np.abs(dx_want).max())
    dw2 = dw.copy()
    core.conv2d_gemm_backward(x, dy, w, geom, True, False, dw2, None)  # adds into dW
    np.testing.assert_allclose(dw2, 2 * dw, rtol=tol, atol=tol * np.abs(dw).max())


@pytest.mark.parametrize("cfg", POOLED)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pooled_weight_gradient_against_the_scattered_one(cfg, dtype, isa, rng):
    """dy as a 2 x 2 max pooling's gradient and argmax: the same bits as its scatter."""
    x, w, bias, geom, (n, cout, ho, wo) = _layer(cfg, dtype, rng)
    y = np.empty((n, cout, ho // 2, wo // 2), dtype)
    argmax = np.empty(y.shape, np.int32)
    core.conv2d_gemm(x, w, bias, geom, -1, 0.0, False, y, POOL, argmax)
    g = rng.standard_normal(y.shape).astype(dtype)
    dy = np.zeros((n, cout, ho, wo), dtype)
    core.max_pool2d_backward(g, argmax, POOL, dy)
    dw_pooled, dw = np.empty_like(w), np.empty_like(w)
    core.conv2d_gemm_backward(x, g, w, geom, False, False, dw_pooled, None, POOL, argmax)
    core.conv2d_gemm_backward(x, dy, w, geom, False, False, dw, None)
    assert dw_pooled.tobytes() == dw.tobytes()


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c[6] == 0])  # unpadded: no copy
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_implicit_kernels_write_no_columns(cfg, dtype, isa, rng):
    """With the hook on, the forward and the weight gradient write no column matrix (the
    profile's column time is 0) on every ISA path and dtype; off, they do: so the tests above
    ran the implicit kernels, not the GEMMs (the padded configs take the same route)."""
    x, w, bias, geom, shape = _layer(cfg, dtype, rng)
    y = np.empty(shape, dtype)
    dw = np.empty_like(w)
    seconds = {}
    for on in (True, False):
        core.conv_implicit(on)
        core.conv_profile(True)
        core.conv2d_gemm(x, w, bias, geom, -1, 0.0, False, y)
        core.conv2d_gemm_backward(x, y, w, geom, False, False, dw, None)
        seconds[on] = core.conv_profile(False)
    assert seconds[True][0] == 0 and seconds[True][1] > 0
    assert seconds[False][0] > 0


def test_the_hook():
    before = core.conv_implicit(False)
    assert core.conv_implicit() is False
    assert core.conv_implicit(before) is False
    for bad in (1, "on", 0.0):
        with pytest.raises(TypeError, match="conv_implicit: on must be a bool"):
            core.conv_implicit(bad)


def test_the_direct_kernels_count_their_copies(rng):
    """conv_profile covers the direct kernels too: their shifted copies of the image are
    column work, within the time of their chunks."""
    geom = _convops.geometry(5)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    w = rng.standard_normal((6, 1, 5, 5)).astype(np.float32)
    y = np.empty((4, 6, 24, 24), np.float32)
    core.conv_profile(True)
    core.conv2d_direct(x, w, None, geom, True, y)
    columns, total = core.conv_profile(False)
    assert 0 < columns < total
