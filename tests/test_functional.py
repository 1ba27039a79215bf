"""nnfast.functional: every kernel against a numpy float64 reference (odd sizes, both dtypes,
every ISA path), central finite differences of every derivative (float64), stability at +-1e4
and NaN, and the errors bad input raises."""

import numpy as np
import pytest
from scipy.special import erf, expit

import nnfast
import nnfast.functional as F
from nnfast import _convops

SQRT2 = np.sqrt(2.0)
K = np.sqrt(2 / np.pi)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(K * (x + 0.044715 * x**3)))


# name -> (params, forward reference, derivative reference d(x))
REF = {
    "identity": ({}, lambda x: x, lambda x: np.ones_like(x)),
    "step": ({}, lambda x: (x > 0) * 1.0, lambda x: np.zeros_like(x)),
    "sigmoid": ({}, expit, lambda x: expit(x) * (1 - expit(x))),
    "tanh": ({}, np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "arctan": ({}, np.arctan, lambda x: 1 / (1 + x * x)),
    "relu": ({}, lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    "leaky_relu": (
        {"negative_slope": 0.1},
        lambda x: np.where(x > 0, x, 0.1 * x),
        lambda x: np.where(x > 0, 1, 0.1),
    ),
    "elu": (
        {"alpha": 1.5},
        lambda x: np.where(x > 0, x, 1.5 * np.expm1(np.minimum(x, 0))),
        lambda x: np.where(x > 0, 1, 1.5 * np.exp(np.minimum(x, 0))),
    ),
    "softplus": (
        {"beta": 2.0, "threshold": 10.0},
        lambda x: np.where(2 * x > 10, x, np.logaddexp(0, 2 * x) / 2),
        lambda x: np.where(2 * x > 10, 1, expit(2 * x)),
    ),
    "gelu": (
        {},
        lambda x: 0.5 * x * (1 + erf(x / SQRT2)),
        lambda x: 0.5 * (1 + erf(x / SQRT2)) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi),
    ),
    "gelu_tanh": ({"approximate": "tanh"}, _gelu_tanh, None),
    "silu": ({}, lambda x: x * expit(x), lambda x: expit(x) * (1 + x * (1 - expit(x)))),
}
NAMES = list(REF)
SIZES = [0, 1, 7, 13, 97, 1031]
DTYPES = [np.float32, np.float64]


def test_every_c_activation_has_a_reference():
    assert set(REF) == set(nnfast._native.core.activation_ids())


def _act(name):
    return "gelu" if name == "gelu_tanh" else name


def _tol(dtype):
    return dict(rtol=5e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def _u(name, x, y):
    return y if F.ACTIVATION_FUNCTIONS[_act(name)].from_output else x


def _data(rng, n, dtype, scale=4.0):
    return (rng.standard_normal(n) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_activation_vs_reference(isa, rng, name, dtype):
    params, fref, dref = REF[name]
    act = F.ACTIVATION_FUNCTIONS[_act(name)]
    for n in SIZES:
        x = _data(rng, 2 * n, dtype)[::2]  # non-contiguous
        y = act.forward(x, **params)
        assert y.dtype == dtype and y.shape == x.shape
        np.testing.assert_allclose(y, fref(x.astype(np.float64)), **_tol(dtype))
        dy = _data(rng, n, dtype, 1.0)
        dx = act.backward(dy, _u(name, x, y), **params)
        if dref is not None:
            ref = dy * dref(x.astype(np.float64))
            np.testing.assert_allclose(dx, ref, **_tol(dtype))


@pytest.mark.parametrize("name", NAMES)
def test_activation_finite_differences(rng, name):
    params, _fref, _ = REF[name]
    act = F.ACTIVATION_FUNCTIONS[_act(name)]
    x = rng.uniform(-6, 6, 257)
    x = x[np.abs(x) > 1e-3]  # away from the kinks
    if name == "softplus":
        x = x[np.abs(2 * x - 10) > 1e-3]
    h = 1e-6
    numeric = (act.forward(x + h, **params) - act.forward(x - h, **params)) / (2 * h)
    dy = rng.standard_normal(x.shape)
    dx = act.backward(dy, _u(name, x, act.forward(x, **params)), **params)
    np.testing.assert_allclose(dx, dy * numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_stability(isa, name, dtype):
    params, fref, _ = REF[name]
    act = F.ACTIVATION_FUNCTIONS[_act(name)]
    x = np.array([-1e4, -100, -30, 30, 100, 1e4, np.nan], dtype)
    with np.errstate(all="ignore"):
        ref = fref(x.astype(np.float64))
    y = act.forward(x, **params)
    assert np.isnan(y[-1])
    assert np.all(np.isfinite(y[:-1]))
    np.testing.assert_allclose(y[:-1], ref[:-1], rtol=1e-6, atol=1e-30)
    dx = act.backward(np.ones_like(x), _u(name, x, y), **params)
    assert np.all(np.isfinite(dx[:-1]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "gelu", "tanh", "softplus"])
@pytest.mark.parametrize("shape", [(1, 1), (13, 7), (5, 3, 4, 7), (2, 70, 33, 33)])
def test_bias_act(isa, threads, rng, name, dtype, shape):
    params, fref, dref = REF[name]
    x = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    pre = np.empty_like(x)
    y = F.bias_act(x, b, name, preact_out=pre, **params)
    bb = b.reshape((1, -1) + (1,) * (x.ndim - 2))
    u64 = x.astype(np.float64) + bb
    np.testing.assert_allclose(pre, u64, **_tol(dtype))
    np.testing.assert_allclose(y, fref(u64), **_tol(dtype))
    dy = rng.standard_normal(shape).astype(dtype)
    dx, db = F.bias_act_backward(
        dy, y if F.ACTIVATION_FUNCTIONS[name].from_output else pre, name, **params
    )
    ref = dy * dref(u64)
    np.testing.assert_allclose(dx, ref, **_tol(dtype))
    axes = (0, *tuple(range(2, x.ndim)))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else _tol(dtype)
    np.testing.assert_allclose(db, ref.sum(axis=axes), **tol)


def test_bias_act_out_and_no_bias(rng):
    x = rng.standard_normal((6, 5)).astype(np.float32)
    out = np.empty((5, 6), np.float32).T  # non-contiguous out is filled too
    assert F.bias_act(x, None, "relu", out=out) is out
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    buf = np.empty_like(x)
    assert F.relu(x, out=buf) is buf


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (4, 3), (3, 5, 2, 3)])
def test_prelu(isa, rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    c = shape[1] if len(shape) > 1 else 1
    alpha = rng.uniform(0, 0.5, c).astype(dtype)
    a = alpha.reshape((1, -1) + (1,) * (x.ndim - 2)) if x.ndim > 1 else alpha
    np.testing.assert_allclose(F.prelu(x, alpha), np.where(x > 0, x, a * x), **_tol(dtype))
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dalpha = F.prelu_backward(dy, x, alpha)
    np.testing.assert_allclose(dx, np.where(x > 0, dy, a * dy), **_tol(dtype))
    ref = np.where(x > 0, 0, dy * x)
    ref = ref.sum(axis=(0, *tuple(range(2, x.ndim)))) if x.ndim > 1 else ref.sum(keepdims=True)
    np.testing.assert_allclose(dalpha, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k", [((5, 12), 3), ((2, 6, 3, 5), 2), ((1, 1), 1)])
def test_maxout(isa, rng, dtype, shape, k):
    x = rng.standard_normal(shape).astype(dtype)
    y, arg = F.maxout(x, k)
    pieces = x.reshape((shape[0], shape[1] // k, k, *shape[2:]))
    np.testing.assert_array_equal(y, pieces.max(axis=2))
    np.testing.assert_array_equal(arg, pieces.argmax(axis=2))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = F.maxout_backward(dy, arg, k)
    ref = np.zeros_like(pieces)
    np.put_along_axis(ref, np.expand_dims(arg, 2), np.expand_dims(dy, 2), axis=2)
    np.testing.assert_array_equal(dx, ref.reshape(shape))


def _log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (13, 97), (2, 3, 10)])
def test_softmax(isa, rng, dtype, shape):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    ref = _log_softmax(x.astype(np.float64))
    np.testing.assert_allclose(F.log_softmax(x), ref, **_tol(dtype))
    np.testing.assert_allclose(F.softmax(x), np.exp(ref), **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_stable(isa, dtype):
    x = np.array([[1e4, -1e4, 0], [-1e4, -1e4, -1e4], [np.nan, 0, 1]], dtype)
    s = F.softmax(x)
    np.testing.assert_allclose(s[:2], [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    assert np.isnan(s[2]).all()
    ls = F.log_softmax(x)
    np.testing.assert_allclose(ls[0], [0, -2e4, -1e4], rtol=1e-6)
    loss = F.softmax_cross_entropy(x[:2], [1, 0])
    np.testing.assert_allclose(loss, (2e4 + np.log(3)) / 2, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_arrays_in_the_other_byte_order_are_read_as_their_values(rng, dtype):
    """'>f4' is float32 stored big-endian: converted, as the layers did (gemm and functional
    called it a dtype that is not float32 or float64)."""
    x = rng.standard_normal((5, 7)).astype(dtype)
    swapped = x.astype(np.dtype(dtype).newbyteorder("S"))
    np.testing.assert_array_equal(F.relu(swapped), F.relu(x))
    np.testing.assert_array_equal(F.softmax(swapped), F.softmax(x))
    np.testing.assert_array_equal(nnfast.gemm(swapped, swapped.T), nnfast.gemm(x, x.T))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [1e3, 1e6, -1e6])
def test_log_softmax_keeps_its_precision_far_from_zero(isa, rng, dtype, offset):
    """(x - max) - log(sum), not x - (max + log(sum)): the latter rounded log(sum) to max's
    ulp (log_softmax of [1e6, 1e6] in float32 gave -0.6875 for -log 2 = -0.6931)."""
    x = (rng.standard_normal((4, 37)) + offset).astype(dtype)
    ref = _log_softmax(x.astype(np.float64))  # x is exact in float64: x - max is too
    np.testing.assert_allclose(F.log_softmax(x), ref, rtol=0, atol=8 * np.finfo(dtype).eps)
    big = np.array([[offset, offset]], dtype)
    np.testing.assert_allclose(F.log_softmax(big), [[-np.log(2)] * 2], rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("offset", [1e6, -1e15, 1e30])
def test_softmax_cross_entropy_keeps_its_precision_far_from_zero(isa, rng, dtype, eps, offset):
    """The loss as (lse - max) - (x - max): lse - x cancelled (logits all near 1e30 gave 0 for
    log 3), and so did the gradient alone, from exp(x - lse)."""
    x = (rng.standard_normal((6, 17)) * 3 + offset).astype(dtype)
    labels = rng.integers(0, 17, 6)
    ls = _log_softmax(x.astype(np.float64))
    target = np.full(x.shape, eps / 17)
    target[np.arange(6), labels] += 1 - eps
    ref_loss, ref_grad = -(target * ls).sum() / 6, (np.exp(ls) - target) / 6
    tol = 16 * np.finfo(dtype).eps
    loss, grad = F.softmax_cross_entropy_with_grad(x, labels, label_smoothing=eps)
    np.testing.assert_allclose(loss, ref_loss, rtol=tol)
    np.testing.assert_allclose(F.softmax_cross_entropy(x, labels, eps), ref_loss, rtol=tol)
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=tol)
    np.testing.assert_allclose(F.softmax_cross_entropy_backward(x, labels, eps), ref_grad,
                               rtol=0, atol=tol)  # fmt: skip
    same = np.full((2, 3), offset, dtype)
    np.testing.assert_allclose(F.softmax_cross_entropy(same, [2, 0], eps), np.log(3), rtol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (37, 11), (8, 1000)])
def test_softmax_cross_entropy(isa, threads, rng, dtype, eps, shape):
    n, k = shape
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    labels = rng.integers(0, k, n)
    ls = _log_softmax(x.astype(np.float64))
    target = np.full(shape, eps / k)
    target[np.arange(n), labels] += 1 - eps
    ref = -(target * ls).sum() / n
    np.testing.assert_allclose(
        F.softmax_cross_entropy(x, labels, label_smoothing=eps),
        ref,
        rtol=1e-5 if dtype == np.float32 else 1e-12,
        atol=1e-12,
    )
    grad = F.softmax_cross_entropy_backward(x, labels, label_smoothing=eps)
    np.testing.assert_allclose(grad, (np.exp(ls) - target) / n, **_tol(dtype))
    # fused loss + gradient, also in place (out=logits)
    loss, g2 = F.softmax_cross_entropy_with_grad(x, labels, label_smoothing=eps)
    assert loss == pytest.approx(F.softmax_cross_entropy(x, labels, label_smoothing=eps), rel=1e-12)
    np.testing.assert_allclose(g2, (np.exp(ls) - target) / n, **_tol(dtype))
    loss3, g3 = F.softmax_cross_entropy_with_grad(x, labels, label_smoothing=eps, out=x)
    assert g3 is x and loss3 == loss
    np.testing.assert_array_equal(g3, g2)


def test_softmax_cross_entropy_finite_differences(rng):
    x = rng.standard_normal((4, 5))
    labels = np.array([0, 4, 2, 2])
    g = F.softmax_cross_entropy_backward(x, labels, 0.1)
    h = 1e-6
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        num[i] = (
            F.softmax_cross_entropy(x + e, labels, 0.1)
            - F.softmax_cross_entropy(x - e, labels, 0.1)
        ) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 13, 1031])
def test_mse_and_bce(isa, rng, dtype, n):
    if n == 0:
        return
    p = (rng.standard_normal(n) * 3).astype(dtype)
    t = rng.uniform(0, 1, n).astype(dtype)
    p64, t64 = p.astype(np.float64), t.astype(np.float64)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(F.mse_loss(p, t), ((p64 - t64) ** 2).mean(), rtol=rtol)
    np.testing.assert_allclose(F.mse_loss(p, t, "sum"), ((p64 - t64) ** 2).sum(), rtol=rtol)
    np.testing.assert_allclose(F.mse_loss_backward(p, t), 2 * (p64 - t64) / n, **_tol(dtype))
    bce = np.maximum(p64, 0) - p64 * t64 + np.log1p(np.exp(-np.abs(p64)))
    np.testing.assert_allclose(F.binary_cross_entropy_with_logits(p, t), bce.mean(), rtol=rtol)
    np.testing.assert_allclose(
        F.binary_cross_entropy_with_logits_backward(p, t, "sum"), expit(p64) - t64, **_tol(dtype)
    )


def test_losses_finite_differences(rng):
    p, t = rng.standard_normal(6), rng.uniform(0, 1, 6)
    h = 1e-6
    for f, fb in [
        (F.mse_loss, F.mse_loss_backward),
        (F.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits_backward),
    ]:
        num = [(f(p + h * e, t) - f(p - h * e, t)) / (2 * h) for e in np.eye(6)]
        np.testing.assert_allclose(fb(p, t), num, rtol=1e-6, atol=1e-9)


def test_bce_stable():
    x = np.array([1e4, -1e4, 0, np.nan], np.float32)
    t = np.array([0, 1, 0.5, 1], np.float32)
    assert F.binary_cross_entropy_with_logits(x[:3], t[:3], "sum") == pytest.approx(2e4 + np.log(2))
    assert np.isnan(F.binary_cross_entropy_with_logits(x, t))
    np.testing.assert_allclose(
        F.binary_cross_entropy_with_logits_backward(x[:3], t[:3], "sum"), [1, -1, 0]
    )


def test_registry():
    assert set(F.ACTIVATION_FUNCTIONS) >= {
        "relu",
        "sigmoid",
        "tanh",
        "gelu",
        "silu",
        "softplus",
        "elu",
    }
    assert (
        F.ACTIVATION_FUNCTIONS["sigmoid"].from_output
        and not F.ACTIVATION_FUNCTIONS["gelu"].from_output
    )
    assert F.ACTIVATION_FUNCTIONS["relu"].forward is F.relu


def test_bad_input():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="b has shape"):
        F.bias_act(x, np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        F.bias_act(x, np.zeros(3, np.float64))
    with pytest.raises(TypeError, match="int64"):
        F.relu(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="unknown activation"):
        F.bias_act(x, None, "swish2")
    with pytest.raises(ValueError, match="y has shape"):
        F.sigmoid_backward(np.zeros(3, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="labels must be in"):
        F.softmax_cross_entropy(x, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="labels must be in"):
        F.softmax_cross_entropy(x, [0, -1, 2, 0])
    with pytest.raises(TypeError, match="labels must be integers"):
        F.softmax_cross_entropy(x, np.zeros(4))
    with pytest.raises(ValueError, match="labels has shape"):
        F.softmax_cross_entropy(x, [0, 1])
    with pytest.raises(ValueError, match="target has shape"):
        F.mse_loss(x, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(x, x, reduction="max")
    with pytest.raises(ValueError, match="alpha has"):
        F.prelu(x, np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="multiple of k"):
        F.maxout(x, 2)
    with pytest.raises(ValueError, match="read-only"):
        ro = np.zeros_like(x)
        ro.flags.writeable = False
        F.relu(x, out=ro)
    with pytest.raises(TypeError, match="unexpected keyword argument 'alpha'"):
        F.relu(x, alpha=2.0)  # relu's signature has no parameters
    with pytest.raises(TypeError, match="elu takes no parameter"):
        F.elu(x, slope=2.0)


# --- out= overlapping an input -----------------------------------------------------------------


def _shifted(rng, shape, dtype=np.float32):
    """(x, out): arrays of `shape` one element apart in the same buffer."""
    buf = rng.standard_normal(int(np.prod(shape)) + 1).astype(dtype)
    return buf[:-1].reshape(shape), buf[1:].reshape(shape)


_OVERLAP_CASES = {  # case -> (call(x, out), the function's name, the input out overlaps)
    "relu": (lambda x, o: F.relu(x, out=o), "relu", "x"),
    "gelu": (lambda x, o: F.gelu(x, out=o), "gelu", "x"),
    "relu_backward dy": (lambda x, o: F.relu_backward(x, x + 1, out=o), "relu_backward", "dy"),
    "relu_backward y": (lambda x, o: F.relu_backward(x + 1, x, out=o), "relu_backward", "y"),
    "gelu_backward x": (lambda x, o: F.gelu_backward(x + 1, x, out=o), "gelu_backward", "x"),
    "bias_act": (lambda x, o: F.bias_act(x, x[0] + 1, "relu", out=o), "bias_act", "x"),
    "bias_act preact_out": (
        lambda x, o: F.bias_act(x, None, "relu", preact_out=o),
        "bias_act",
        "x",
    ),
    "bias_act_backward": (
        lambda x, o: F.bias_act_backward(x, x + 1, out=o),
        "bias_act_backward",
        "dy",
    ),
    "prelu": (lambda x, o: F.prelu(x, np.ones(x.shape[1], x.dtype), out=o), "prelu", "x"),
    "prelu_backward": (
        lambda x, o: F.prelu_backward(x + 1, x, x[0] + 1, out=o),
        "prelu_backward",
        "x",
    ),
    "softmax": (lambda x, o: F.softmax(x, out=o), "softmax", "x"),
    "log_softmax": (lambda x, o: F.log_softmax(x, out=o), "log_softmax", "x"),
    "xent_backward": (
        lambda x, o: F.softmax_cross_entropy_backward(x, [0] * len(x), out=o),
        "softmax_cross_entropy_backward",
        "logits",
    ),
    "xent_with_grad": (
        lambda x, o: F.softmax_cross_entropy_with_grad(x, [0] * len(x), out=o),
        "softmax_cross_entropy_with_grad",
        "logits",
    ),
    "mse_backward": (
        lambda x, o: F.mse_loss_backward(x + 1, x, out=o),
        "mse_loss_backward",
        "target",
    ),
    "bce_backward": (
        lambda x, o: F.binary_cross_entropy_with_logits_backward(x, x + 1, out=o),
        "binary_cross_entropy_with_logits_backward",
        "logits",
    ),
}


@pytest.mark.parametrize("noncontiguous_out", [False, True])
@pytest.mark.parametrize("case", list(_OVERLAP_CASES))
def test_out_partly_overlapping_an_input_raises(rng, case, noncontiguous_out):
    call, what, name = _OVERLAP_CASES[case]
    x, out = _shifted(rng, (5, 4))
    if noncontiguous_out:  # out is filled from a scratch array: overlapping it is refused too
        buf = rng.standard_normal(41).astype(np.float32)
        x, out = buf[:20].reshape(5, 4), buf[1:].reshape(4, 10)[:, ::2].T
    before = out.copy()
    with pytest.raises(ValueError, match=rf"^{what}: \w+ overlaps {name} "):
        call(x, out)
    np.testing.assert_array_equal(out, before)  # nothing written


def test_out_overlap_examples(rng):
    buf = rng.standard_normal(10001).astype(np.float32)
    with pytest.raises(ValueError, match="relu: out overlaps x"):
        F.relu(buf[:-1], out=buf[1:])
    y, b = rng.standard_normal((4, 3)).astype(np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="bias_act: preact_out overlaps out"):
        F.bias_act(y, b, "relu", out=y, preact_out=y)
    with pytest.raises(ValueError, match="bias_act: out overlaps b"):
        F.bias_act(y, y[1], "relu", out=y)  # in place over x, but b is a row of it
    # interleaved without sharing an element: allowed
    x = rng.standard_normal(10).astype(np.float32)
    both = np.empty(20, np.float32)
    both[::2] = x
    np.testing.assert_array_equal(F.relu(both[::2], out=both[1::2]), np.maximum(x, 0))


def _out_result(r):
    """The array written to out: r, or grad of (loss, grad), or dx of (dx, db)."""
    if not isinstance(r, tuple):
        return r
    return r[1] if isinstance(r[0], float) else r[0]


def _check_in_place(fn, *args, i=0, **kw):
    """out = args[i] (the array itself, or another view of its memory) gives fn(*args)."""
    ref = _out_result(fn(*args, **kw))
    for view in (lambda a: a, lambda a: a[...]):
        a = [v.copy() if isinstance(v, np.ndarray) else v for v in args]
        got = _out_result(fn(*a, out=view(a[i]), **kw))
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(a[i], ref)


@pytest.mark.parametrize("name", NAMES)
def test_activation_out_exactly_an_input_is_in_place(rng, name):
    x = rng.standard_normal((6, 5))
    params = REF[name][0]
    act = F.ACTIVATION_FUNCTIONS[_act(name)]
    _check_in_place(act.forward, x, **params)
    _check_in_place(act.backward, x, x * 0.5 + 1, **params)  # out = dy
    _check_in_place(act.backward, x, x * 0.5 + 1, i=1, **params)  # out = u


def test_out_exactly_an_input_is_in_place(rng):
    x, b = rng.standard_normal((6, 5)), rng.standard_normal(5)
    _check_in_place(F.bias_act, x, b, "gelu")
    _check_in_place(F.bias_act_backward, x, x + 1, "tanh")
    _check_in_place(F.prelu, x, b)
    _check_in_place(F.prelu_backward, x, x + 1, b)
    _check_in_place(F.prelu_backward, x, x + 1, b, i=1)
    _check_in_place(F.softmax, x)
    _check_in_place(F.log_softmax, x)
    labels = np.arange(6) % 5
    _check_in_place(F.softmax_cross_entropy_backward, x, labels, 0.1)
    _check_in_place(F.softmax_cross_entropy_with_grad, x, labels, 0.1)
    _check_in_place(F.mse_loss_backward, x, x + 1)
    _check_in_place(F.mse_loss_backward, x, x + 1, i=1)
    _check_in_place(F.binary_cross_entropy_with_logits_backward, x, x * 0)
    # either of out and preact_out may be x, the other separate (gemm's epilogue: out=x)
    for in_place in ("out", "preact_out"):
        xc, sep = x.copy(), np.empty_like(x)
        y, pre = (xc, sep) if in_place == "out" else (sep, xc)
        F.bias_act(xc, b, "relu", out=y, preact_out=pre)
        np.testing.assert_array_equal(pre, x + b)
        np.testing.assert_array_equal(y, np.maximum(x + b, 0))
    xs = x.copy()[:, ::2]  # non-contiguous: computed from a copy, then written back
    ref = np.maximum(xs, 0)
    assert F.relu(xs, out=xs) is xs
    np.testing.assert_array_equal(xs, ref)


def test_maxout_refuses_any_overlap(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="maxout: out overlaps x"):
        F.maxout(x, 1, out=x)
    y, arg = F.maxout(x, 2)
    with pytest.raises(ValueError, match="maxout_backward: out overlaps dy"):
        F.maxout_backward(x, np.zeros((3, 4), np.int64), 1, out=x)
    buf = np.zeros(30, np.float32)
    buf[:6] = y.reshape(-1)
    with pytest.raises(ValueError, match="maxout_backward: out overlaps dy"):
        F.maxout_backward(buf[:6].reshape(3, 2), arg, 2, out=buf[4:16].reshape(3, 4))


# --- activation parameters out of range --------------------------------------------------------

NAN, INF = float("nan"), float("inf")
_BAD_PARAMS = [
    ("leaky_relu", {"negative_slope": -0.5}, r"negative_slope must be finite and >= 0 \(the "),
    ("leaky_relu", {"negative_slope": NAN}, "negative_slope must be finite and >= 0"),
    ("leaky_relu", {"negative_slope": INF}, "negative_slope must be finite and >= 0"),
    ("elu", {"alpha": -0.5}, "alpha must be finite and >= 0"),
    ("elu", {"alpha": NAN}, "alpha must be finite and >= 0"),
    ("elu", {"alpha": INF}, "alpha must be finite and >= 0"),
    ("softplus", {"beta": 0.0}, "beta must be finite and > 0"),
    ("softplus", {"beta": -1.0}, "beta must be finite and > 0"),
    ("softplus", {"beta": NAN}, "beta must be finite and > 0"),
    ("softplus", {"beta": INF}, "beta must be finite and > 0"),
    ("softplus", {"threshold": NAN}, "threshold must be finite, got nan"),
    ("softplus", {"threshold": -INF}, "threshold must be finite, got -inf"),
    # float32 kernels take them as floats: ELU's alpha 1e308 turned zeros into NaN
    ("elu", {"alpha": 1e308}, r"alpha must be at most 3.402823e\+38 in magnitude"),
    ("leaky_relu", {"negative_slope": 1e39}, "negative_slope must be at most 3.402823e"),
    ("softplus", {"beta": 1e300}, "beta must be at most 3.402823e"),
]


@pytest.mark.parametrize("act, params, message", _BAD_PARAMS)
def test_activation_parameter_out_of_range(act, params, message):
    x = np.linspace(-2, 2, 8).reshape(2, 4)
    fns = F.ACTIVATION_FUNCTIONS[act]
    for name, call in [
        (act, lambda: fns.forward(x, **params)),
        (f"{act}_backward", lambda: fns.backward(x, x, **params)),
        ("bias_act", lambda: F.bias_act(x, None, act, **params)),
        ("bias_act_backward", lambda: F.bias_act_backward(x, x, act, **params)),
    ]:
        with pytest.raises(ValueError, match=f"^{name}: {message}"):
            call()


def test_activation_parameter_range_reaches_gemm():
    """gemm's fused epilogue applies F's rule too (nn's layers: tests/test_nn.py)."""
    x = np.linspace(-2, 2, 8).reshape(2, 4)
    with pytest.raises(ValueError, match="gemm: alpha must be finite and >= 0"):
        nnfast.gemm(x, x.T, activation="elu", activation_params={"alpha": -1.0})


def test_activation_parameter_bounds_allowed():
    x = np.linspace(-2, 2, 9)
    np.testing.assert_array_equal(F.leaky_relu(x, negative_slope=0.0), np.maximum(x, 0))
    np.testing.assert_array_equal(F.elu(x, alpha=0.0), np.maximum(x, 0))
    np.testing.assert_allclose(
        F.softplus(x, threshold=-1.0), np.where(x > -1, x, np.log1p(np.exp(x)))
    )
    np.testing.assert_array_equal(F.elu(np.zeros(3, np.float32), alpha=3e38), np.zeros(3))
    np.testing.assert_allclose(F.softplus(x, threshold=1e300), np.log1p(np.exp(x)))
    dx = F.elu_backward(np.ones_like(x), F.elu(x, alpha=0.5), alpha=0.5)
    np.testing.assert_allclose(dx, np.where(x > 0, 1, 0.5 * np.exp(x)), rtol=1e-12)


# --- 0-d arrays keep their shape ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_activation_0d(name, dtype):
    params, fref, dref = REF[name]
    act = F.ACTIVATION_FUNCTIONS[_act(name)]
    x = dtype(-0.75)
    y = act.forward(x, **params)
    assert y.shape == () and y.dtype == dtype
    np.testing.assert_allclose(y, fref(np.float64(x)), **_tol(dtype))
    out = np.empty((), dtype)
    assert act.forward(x, out=out, **params) is out
    np.testing.assert_array_equal(out, y)
    dx = act.backward(dtype(1), _u(name, x, y), **params)
    assert dx.shape == () and dx.dtype == dtype
    if dref is not None:  # dy = 1: dx is the derivative at x
        np.testing.assert_allclose(dx, dref(np.float64(x)), **_tol(dtype))
    assert act.backward(dtype(1), _u(name, x, y), out=out, **params) is out
    np.testing.assert_array_equal(out, dx)


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda x: F.relu(x), 0.0),
        (lambda x: F.softmax(x), 1.0),
        (lambda x: F.log_softmax(x), 0.0),
        (lambda x: F.prelu(x, np.float32(0.5)), -1.0),
        (lambda x: F.prelu_backward(np.float32(1), x, np.float32(0.5))[0], 0.5),
        (lambda x: F.mse_loss_backward(x, np.float32(0)), -4.0),
        (lambda x: F.binary_cross_entropy_with_logits_backward(x, np.float32(0)), expit(-2.0)),
    ],
)
def test_0d_shape_preserved(call, expected):
    y = call(np.float32(-2))
    assert y.shape == ()
    np.testing.assert_allclose(y, expected, rtol=1e-6)


# --- messages ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: F.maxout(x, 1), "maxout: expected x of shape"),
        (lambda x: F.maxout_backward(x, np.zeros(5, np.int64), 1), "maxout_backward: expected dy"),
        (lambda x: F.bias_act(x), "bias_act: expected x of shape"),
        (lambda x: F.bias_act_backward(x, x), "bias_act_backward: expected dy of shape"),
    ],
)
def test_1d_input_to_nc_functions(call, message):
    with pytest.raises(ValueError, match=rf"^{message} .*got shape \(5,\)"):
        call(np.zeros(5, np.float32))


@pytest.mark.parametrize("k", [-1, 0, 1.5, True, "2", None])
def test_maxout_backward_checks_k(k):
    dy, arg = np.zeros((2, 3), np.float32), np.zeros((2, 3), np.int64)
    error, must = (ValueError, "a whole number >= 1") if k in (-1, 0) else (TypeError, "an int")
    with pytest.raises(error, match=rf"^maxout_backward: k must be {must}"):
        F.maxout_backward(dy, arg, k)
    with pytest.raises(error, match=rf"^maxout: k must be {must}"):
        F.maxout(np.zeros((2, 6), np.float32), k)


@pytest.mark.parametrize("dtype", [np.uint64, np.uint32, np.int8])
def test_label_range_message_shows_the_given_values(dtype):
    big = np.iinfo(dtype).max
    labels = np.array([0, big], dtype)
    x = np.zeros((2, 3), np.float32)
    for fn in (F.softmax_cross_entropy, F.softmax_cross_entropy_backward):
        with pytest.raises(
            ValueError, match=rf"labels must be in \[0, 3\), got values in \[0, {big}\]"
        ):
            fn(x, labels)
    with pytest.raises(ValueError, match=rf"got values in \[0, {big}\]"):
        F.softmax_cross_entropy_with_grad(x, labels)


# --- the convolution and pooling building blocks are re-exported --------------------------------

# README: "The building blocks are in nnfast.functional (im2col, col2im, max_pool2d,
# avg_pool2d, ... and their backwards)"
CONV_BLOCKS = [
    "im2col",
    "col2im",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
]


@pytest.mark.parametrize("name", CONV_BLOCKS)
def test_conv_blocks_reexported(name):
    assert getattr(F, name) is getattr(_convops, name)


def test_prelu_takes_python_numbers_for_alpha_in_the_inputs_dtype():
    """The docstring's one broadcast value, 0.25, was refused as float64 for float32 input."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    for alpha in (0.25, [0.25], (0.25,)):
        np.testing.assert_array_equal(F.prelu(x, alpha), np.where(x > 0, x, np.float32(0.25) * x))
    with pytest.raises(TypeError, match="prelu: alpha has dtype bool"):
        F.prelu(x, [True])


def test_global_average_of_empty_planes_is_refused():
    """It returned NaN with numpy's 'Mean of empty slice' warnings (the layer refused it)."""
    with pytest.raises(ValueError, match="global_avg_pool2d: planes of 0x0 pixels"):
        F.global_avg_pool2d(np.empty((1, 2, 0, 0), np.float32))
    with pytest.raises(ValueError, match="global_avg_pool2d_backward: planes of 0x3 pixels"):
        F.global_avg_pool2d_backward(np.ones((1, 2)), (1, 2, 0, 3))
