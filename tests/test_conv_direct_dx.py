"""The GEMM path's input gradient from the direct kernel (layers with C*KH*KW up to
core.conv_direct_dx's limit) and from the groups' GEMM and fold (limit 0): both against a
float64 reference built from im2col / col2im, every ISA, both dtypes; the weight gradient is
the same either way; the hook's bad values."""

import numpy as np
import pytest
from helpers import conv_reference

from nnfast import _convops
from nnfast._native import core

# (N, Cin, H, W, Cout, kernel, stride, padding, dilation)
CONFIGS = [
    (3, 6, 12, 12, 16, 5, 1, 0, 1),  # LeNet-5's second layer
    (1, 1, 9, 11, 4, 3, 2, 1, 1),  # batch 1, 1 channel, stride
    (2, 3, 10, 9, 5, (3, 2), (1, 2), (2, 1), (2, 1)),  # odd sizes, padding, dilation
    (2, 8, 7, 7, 3, 5, 1, 2, 1),  # K = 200, the default limit
    (2, 1, 28, 28, 4, 3, 1, 1, 1),  # input rows longer than a vector (AVX-512's spans)
    (1, 2, 21, 37, 3, (3, 5), 1, (1, 2), (2, 3)),  # dilated rows longer than a vector
    (1, 1, 80, 81, 2, 3, 1, 1, 1),  # 6480 pixels: the kernel's bands end mid-row
    # AVX-512's rows in registers (rows of at most 8 outputs and 16 inputs, kw 3 or 5)
    (2, 11, 7, 8, 5, 3, 1, 0, 1),  # 11 channels: a block of 10 and one of 1; 6-wide rows
    (3, 3, 9, 7, 4, (4, 3), 1, (2, 1), 1),  # kh 4, padding
    (1, 2, 5, 12, 3, (2, 5), 1, 0, 1),  # rows of 8 from 12, kh 2
    # rows 1 wide in and out, and taps that only ever read padding: the fold once added their
    # zeros before the plane (found by AddressSanitizer; no value test can see it)
    (2, 1, 3, 1, 2, (1, 3), 1, (0, 2), (1, 2)),
]


pytestmark = pytest.mark.usefixtures("conv_hooks")


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_direct_and_folded_input_gradients(cfg, dtype, isa, rng):
    n, cin, h, wd, cout, k, s, p, d = cfg
    geom = _convops.geometry(k, s, p, d)
    x = rng.standard_normal((n, cin, h, wd)).astype(dtype)
    w = rng.standard_normal((cout, cin, geom[0], geom[1])).astype(dtype)
    ho, wo = _convops.output_shape(h, wd, geom)
    dy = rng.standard_normal((n, cout, ho, wo)).astype(dtype)
    _, dw_want, dx_want = conv_reference(x, w, geom, dy)
    tol = 1e-4 if dtype == "float32" else 1e-12
    got = {}
    for limit in (10**9, 0):  # the direct kernel, then the groups' fold
        core.conv_direct_dx(limit)
        dw, dx = np.full_like(w, np.nan), np.full_like(x, np.nan)
        core.conv2d_gemm_backward(x, dy, w, geom, False, False, dw, dx)
        np.testing.assert_allclose(dx, dx_want, rtol=tol, atol=tol * np.abs(dx_want).max())
        np.testing.assert_allclose(dw, dw_want, rtol=tol, atol=tol * np.abs(dw_want).max())
        dw2 = dw.copy()
        core.conv2d_gemm_backward(x, dy, w, geom, True, False, dw2, dx)  # accumulates into dW
        np.testing.assert_allclose(dw2, 2 * dw, rtol=tol, atol=tol * np.abs(dw).max())
        got[limit] = dw
    assert got[0].tobytes() == got[10**9].tobytes()  # the weight gradient is the same either way


def test_the_limit_hook():
    before = core.conv_direct_dx(150)
    assert core.conv_direct_dx() == 150
    assert core.conv_direct_dx(before) == 150
    with pytest.raises(ValueError, match="conv_direct_dx"):
        core.conv_direct_dx(-1)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match="conv_direct_dx"):
            core.conv_direct_dx(bad)
    assert core.conv_direct_dx(np.int64(150)) == before  # numpy integers are integers
    core.conv_direct_dx(before)
