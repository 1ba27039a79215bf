"""GEMM with the fused bias + activation epilogue against the GEMM followed by the separate
nnfast.functional pass (and a numpy reference), for every variant, ISA path and driver."""

import numpy as np
import pytest

import nnfast
import nnfast.functional as F

ACTS = [
    ("relu", {}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("gelu", {"approximate": "tanh"}),
    ("leaky_relu", {"negative_slope": 0.2}),
    ("elu", {"alpha": 0.7}),
    ("softplus", {"beta": 2.0}),
    ("identity", {}),
]


def unfused(a, b, bias, act, params, trans_b=False, c0=None, alpha=1.0, beta=0.0):
    out = None if c0 is None else c0.copy()
    y = nnfast.gemm(a, b, out, trans_b=trans_b, alpha=alpha, beta=beta, variant="naive")
    pre = y.copy() if bias is None else y + bias
    return F.bias_act(y, bias, act, **params), pre


@pytest.mark.parametrize("act,params", ACTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_epilogue_matches_separate_pass(isa, threads, rng, act, params, dtype):
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    # small-driver shapes (skinny and MLP-like), a long-K split, and a Goto-sized product
    for m, k, n in [(7, 13, 5), (37, 64, 33), (130, 70, 10), (5, 20000, 20), (900, 700, 800)]:
        if m * n * k > 1e8 and (act, dtype) != ("relu", np.float32):
            continue
        a = (rng.standard_normal((m, k)) / np.sqrt(k)).astype(dtype)
        b = rng.standard_normal((n, k)).astype(dtype)
        bias = rng.standard_normal(n).astype(dtype)
        want, want_pre = unfused(a, b, bias, act, params, trans_b=True)
        for variant in ("packed", "blocked"):
            pre = np.empty((m, n), dtype)
            got = nnfast.gemm(
                a, b, trans_b=True, bias=bias, activation=act, activation_params=params,
                preact_out=pre, variant=variant,
            )  # fmt: skip
            np.testing.assert_allclose(got, want, **tol)
            np.testing.assert_allclose(pre, want_pre, **tol)


@pytest.mark.parametrize("variant", ["packed", "blas", "naive"])
def test_epilogue_with_alpha_beta_and_layouts(rng, variant):
    m, k, n = 29, 31, 37
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((k, n))
    bias = rng.standard_normal(n)
    c0 = rng.standard_normal((m, n))
    want, _ = unfused(a, b, bias, "relu", {}, c0=c0, alpha=0.5, beta=2.0)
    for out in (c0.copy(), np.asfortranarray(c0)):  # row-major (fused) and column-major out
        nnfast.gemm(a, b, out, alpha=0.5, beta=2.0, bias=bias, activation="relu", variant=variant)
        np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


def test_epilogue_bias_only_and_activation_only(rng):
    a = rng.standard_normal((10, 6)).astype(np.float32)
    b = rng.standard_normal((6, 4)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    ref = a.astype(np.float64) @ b
    np.testing.assert_allclose(nnfast.gemm(a, b, bias=bias), ref + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        nnfast.gemm(a, b, activation="relu"), np.maximum(ref, 0), rtol=1e-5, atol=1e-5
    )


def test_epilogue_bad_input(rng):
    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"bias has shape \(4,\) .* expected shape \(5,\)"):
        nnfast.gemm(a, b, bias=np.ones(4, np.float32))
    with pytest.raises(TypeError, match="bias has dtype float64"):
        nnfast.gemm(a, b, bias=np.ones(5))
    with pytest.raises(ValueError, match="unknown activation 'swish9'"):
        nnfast.gemm(a, b, activation="swish9")
    with pytest.raises(ValueError, match=r"preact_out has shape \(5, 3\)"):
        nnfast.gemm(a, b, activation="relu", preact_out=np.empty((5, 3), np.float32))
    with pytest.raises(TypeError, match="takes no parameter"):
        nnfast.gemm(a, b, activation="relu", activation_params={"alpha": 1.0})
    # parameters without an activation were dropped unread, unknown keys included
    with pytest.raises(ValueError, match=r"activation_params \{'bogus': 1\} without an act"):
        nnfast.gemm(a, b, activation_params={"bogus": 1})
    with pytest.raises(ValueError, match="without an activation"):
        nnfast.gemm(a, b, activation_params={"negative_slope": 0.1}, precision="bf16")
    with pytest.raises(TypeError, match="activation_params must be a dict, got int"):
        nnfast.gemm(a, b, activation="leaky_relu", activation_params=5)
    np.testing.assert_array_equal(nnfast.gemm(a, b, activation_params={}), a @ b)
