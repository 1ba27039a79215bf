"""The vectorised math in csrc/eltwise_kernel.inc held to its stated error against numpy float64.

Errors are in ulps of the correctly rounded result, over the range where the result is a normal
number (below it, results flush gradually or to zero: an absolute error under the smallest
normal). float64 is compared with numpy's float64 (itself within ~1 ulp)."""

import numpy as np
import pytest
from scipy import special

from nnfast._native import core

REF = {
    "exp": np.exp,
    "expm1": np.expm1,
    "log": np.log,
    "log1p": np.log1p,
    "tanh": np.tanh,
    "erf": special.erf,
    "atan": np.arctan,
    "sigmoid": special.expit,
}
# range where the result is normal in float32, (float32 bound, float64 bound) in ulps
CASES = {
    "exp": ((-87.0, 88.7), 2, 2),
    "expm1": ((-30.0, 88.0), 2, 3),
    "log": ((1.2e-38, 3e38), 2, 2),
    "log1p": ((-0.999, 1e30), 3, 3),
    "tanh": ((-20.0, 20.0), 3, 4),
    "erf": ((-6.0, 6.0), 4, 4),
    "atan": ((-1e6, 1e6), 2, 2),
    "sigmoid": ((-87.0, 100.0), 3, 4),
}


def _points(lo, hi):
    if lo > 0:
        return np.geomspace(lo, hi, 200_001)
    pts = [np.linspace(lo, hi, 200_001)]
    for s in (1, -1):  # the neighbourhood of 0, where relative error is hardest
        pts.append(s * np.geomspace(1e-30, min(1.0, hi if s > 0 else -lo), 20_001))
    x = np.concatenate(pts)
    return x[(x >= lo) & (x <= hi)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn", list(CASES))
def test_vmath_ulp(isa, fn, dtype):
    (lo, hi), b32, b64 = CASES[fn]
    x = _points(lo, hi).astype(dtype)
    y = np.empty_like(x)
    core.vmath(fn, x, y)
    ref = REF[fn](x.astype(np.float64))
    ulp = np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)
    err = np.abs(y - ref) / ulp
    worst = int(np.argmax(err))
    bound = b32 if dtype == np.float32 else b64
    assert err[worst] <= bound, f"{fn}: {err[worst]:.2f} ulp at x={x[worst]!r}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vmath_special_values(isa, dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e4, -1e4, 1.0, 3.0], dtype)
    y = np.empty_like(x)
    with np.errstate(all="ignore"):
        for fn in CASES:
            core.vmath(fn, x, y)
            ref = REF[fn](x.astype(np.float64)).astype(dtype)
            np.testing.assert_allclose(y, ref, rtol=1e-6, atol=0, err_msg=fn)
