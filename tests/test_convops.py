"""im2col / col2im and pooling against direct loop references, in both dtypes, and their
numpy fallbacks; bad geometry is rejected with a message naming the shapes."""

import itertools

import numpy as np
import pytest

from nnfast import _convops as C

# (N, C, H, W, kernel, stride, padding, dilation)
CONFIGS = [
    (1, 1, 5, 5, 3, 1, 0, 1),
    (5, 3, 7, 9, 3, 2, 1, 1),
    (2, 16, 6, 5, (3, 2), (1, 3), (1, 0), 1),
    (3, 3, 11, 10, 3, 3, 2, 2),
    (2, 3, 8, 8, 1, 1, 0, 1),
    (1, 2, 9, 7, (2, 3), 2, (0, 1), (2, 1)),
    (5, 1, 28, 28, 5, 1, 0, 1),
]


def ref_im2col(x, geom):
    kh, kw, sh, sw, ph, pw, dh, dw = geom
    n, c, h, w = x.shape
    ho, wo = C.output_shape(h, w, geom)
    cols = np.zeros((n * ho * wo, c * kh * kw), np.float64)
    for b, oh, ow in itertools.product(range(n), range(ho), range(wo)):
        r = (b * ho + oh) * wo + ow
        for ci, i, j in itertools.product(range(c), range(kh), range(kw)):
            ih, iw = oh * sh - ph + i * dh, ow * sw - pw + j * dw
            if 0 <= ih < h and 0 <= iw < w:
                cols[r, (ci * kh + i) * kw + j] = x[b, ci, ih, iw]
    return cols


def ref_conv2d(x, weight, geom):
    """Direct convolution: y[n, o, oh, ow] = sum x[n, c, ih, iw] * weight[o, c, i, j]."""
    kh, kw, sh, sw, ph, pw, dh, dw = geom
    n, c, h, w = x.shape
    ho, wo = C.output_shape(h, w, geom)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, weight.shape[0], ho, wo))
    for i, j in itertools.product(range(kh), range(kw)):
        patch = xp[:, :, i * dh : i * dh + sh * ho : sh, j * dw : j * dw + sw * wo : sw]
        y += np.einsum("nchw,oc->nohw", patch, weight[:, :, i, j])
    return y


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_matches_reference_and_convolves(cfg, dtype, rng):
    n, c, h, w, k, s, p, d = cfg
    geom = C.geometry(k, s, p, d)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    cols = C.im2col(x, k, s, p, d)
    np.testing.assert_array_equal(cols, ref_im2col(x, geom).astype(dtype))
    # the GEMM view of a convolution equals the direct loop convolution
    weight = rng.standard_normal((4, c, geom[0], geom[1]))
    ho, wo = C.output_shape(h, w, geom)
    y = (cols.astype(np.float64) @ weight.reshape(4, -1).T).reshape(n, ho, wo, 4)
    np.testing.assert_allclose(y.transpose(0, 3, 1, 2), ref_conv2d(x, weight, geom), **tol(dtype))


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_col2im_is_the_adjoint(cfg, dtype, rng):
    """<im2col(x), g> == <x, col2im(g)> for every x and g: col2im is im2col's transpose."""
    n, c, h, w, k, s, p, d = cfg
    geom = C.geometry(k, s, p, d)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    g = rng.standard_normal(C.im2col(x, k, s, p, d).shape).astype(dtype)
    dx = C.col2im(g, x.shape, k, s, p, d)
    lhs = np.vdot(ref_im2col(x, geom), g.astype(np.float64))
    np.testing.assert_allclose(np.vdot(x.astype(np.float64), dx), lhs, rtol=1e-5)


def ref_pool(x, geom, op):
    kh, kw, sh, sw, ph, pw, dh, dw = geom
    n, c, h, w = x.shape
    ho, wo = C.output_shape(h, w, geom)
    y = np.zeros((n, c, ho, wo))
    for b, ci, oh, ow in itertools.product(range(n), range(c), range(ho), range(wo)):
        vals = []
        for i, j in itertools.product(range(kh), range(kw)):
            ih, iw = oh * sh - ph + i * dh, ow * sw - pw + j * dw
            inside = 0 <= ih < h and 0 <= iw < w
            if op == "max" and inside:
                vals.append(x[b, ci, ih, iw])
            elif op == "avg":
                vals.append(x[b, ci, ih, iw] if inside else 0.0)
        y[b, ci, oh, ow] = max(vals) if op == "max" else sum(vals) / (kh * kw)
    return y


POOLS = [(2, 4, 8, 8, 2, None, 0, 1), (1, 3, 7, 9, 3, 2, 1, 1), (2, 2, 9, 9, 3, 2, 0, 2)]


@pytest.mark.parametrize("cfg", POOLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool(cfg, dtype, isa, rng):
    n, c, h, w, k, s, p, d = cfg
    geom = C.geometry(k, k if s is None else s, p, d)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y, argmax = C.max_pool2d(x, k, s, p, d)
    np.testing.assert_array_equal(y, ref_pool(x, geom, "max").astype(dtype))
    picked = np.take_along_axis(x.reshape(n, c, -1), argmax.reshape(n, c, -1), axis=2)
    np.testing.assert_array_equal(picked.reshape(y.shape), y)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = C.max_pool2d_backward(dy, argmax, x.shape, k, s, p, d)
    want = np.zeros((n * c, h * w))
    np.add.at(want, (np.arange(n * c)[:, None], argmax.reshape(n * c, -1)), dy.reshape(n * c, -1))
    np.testing.assert_allclose(dx.reshape(n * c, -1), want, **tol(dtype))


@pytest.mark.parametrize("cfg", POOLS[:2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avg_pool(cfg, dtype, rng):
    n, c, h, w, k, s, p, _ = cfg
    geom = C.geometry(k, k if s is None else s, p, 1)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y = C.avg_pool2d(x, k, s, p)
    np.testing.assert_allclose(y, ref_pool(x, geom, "avg"), **tol(dtype))
    # backward is the adjoint of forward
    g = rng.standard_normal(y.shape).astype(dtype)
    dx = C.avg_pool2d_backward(g, x.shape, k, s, p)
    np.testing.assert_allclose(np.vdot(x, dx), np.vdot(y, g), rtol=1e-4)


@pytest.mark.parametrize("dilation", [1, 3])
def test_pool_windows_far_larger_than_the_image_cost_their_taps_inside(dilation, rng):
    """Windows of 2**20 taps around an 8x8 image. Every tap was visited, outside the image too
    (a 2**30 window ran for minutes, past Ctrl-C)."""
    k, (h, w) = 2**20, (8, 8)
    x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
    pad = (k - 1) * dilation // 2
    y, _ = C.max_pool2d(x, k, 1, pad, dilation)

    def taps(o, n):  # the input indices a window reads, by its taps' arithmetic
        base = o - pad
        return [
            r for r in range(n) if (r - base) % dilation == 0 and 0 <= (r - base) // dilation < k
        ]

    want = np.empty_like(y)
    for oh in range(y.shape[2]):
        for ow in range(y.shape[3]):
            want[:, :, oh, ow] = x[:, :, taps(oh, h)][:, :, :, taps(ow, w)].max(axis=(2, 3))
    np.testing.assert_array_equal(y, want)
    if dilation == 1:
        a = C.avg_pool2d(x, k, 1, k // 2)
        assert a.shape[2:] == (h + 1, w + 1)
        total = x.astype(np.float64).sum(axis=(2, 3), keepdims=True) / float(k) ** 2
        np.testing.assert_allclose(a, np.broadcast_to(total, a.shape), rtol=1e-5)
        dx = C.avg_pool2d_backward(np.ones_like(a), x.shape, k, 1, k // 2)
        np.testing.assert_allclose(dx, np.full(x.shape, (h + 1) * (w + 1) / float(k) ** 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_max_pool_window_of_padding_only_is_minus_infinity(dtype):
    """The max of no element: -inf, as torch and ONNX give (it was 0); its gradient goes
    nowhere. A dilated window can straddle a small image and read only padding."""
    x = np.arange(4, dtype=dtype).reshape(1, 1, 1, 4)
    y, argmax = C.max_pool2d(x, (1, 2), 1, (0, 1), (1, 5))
    np.testing.assert_array_equal(y, np.full((1, 1, 1, 1), -np.inf, dtype))
    dx = C.max_pool2d_backward(np.ones_like(y), argmax, x.shape, (1, 2), 1, (0, 1), (1, 5))
    np.testing.assert_array_equal(dx, np.zeros_like(x))


def test_max_pool_nan_propagates():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    y, _ = C.max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and np.isfinite(y.flat[1:]).all()


@pytest.mark.parametrize("di,dj", list(itertools.product((0, 1), (0, 1))))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 9, 71), (1, 2, 5, 3), (3, 1, 2, 34), (1, 2, 4, 13)])
def test_max_pool_2x2_path_ties_and_nan(shape, dtype, di, dj, isa, rng):
    """The 2x2/stride-2 rows on every ISA: the scalar loop (rows of 1 output) and AVX-512's
    kernel for float32 (nnf_pool2_row_s, 16 outputs at a time: rows of 6, 17 and 35 outputs
    run its masked tail and its body): a tie picks the first element in window order, and a
    NaN at any of a window's four positions (row offset di, column offset dj) wins it, in the
    first window and the last (the tail) alike."""
    x = rng.integers(0, 3, shape).astype(dtype)  # many ties
    y, argmax = C.max_pool2d(x, 2)
    n, c, h, w = shape
    ho, wo = h // 2, w // 2
    win = x[:, :, : 2 * ho, : 2 * wo].reshape(n, c, ho, 2, wo, 2).transpose(0, 1, 2, 4, 3, 5)
    first = win.reshape(n, c, ho, wo, 4).argmax(axis=-1)  # first maximum in window order
    oh, ow = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    want_arg = (2 * oh + first // 2) * w + 2 * ow + first % 2
    np.testing.assert_array_equal(y, win.reshape(n, c, ho, wo, 4).max(axis=-1))
    np.testing.assert_array_equal(argmax, want_arg)
    hit = np.zeros(y.shape, bool)
    for oi, oj in {(0, 0), (ho - 1, wo - 1)}:
        x[0, 0, 2 * oi + di, 2 * oj + dj] = np.nan
        hit[0, 0, oi, oj] = True
    y2, argmax2 = C.max_pool2d(x, 2)
    assert np.isnan(y2[hit]).all() and np.isfinite(y2[~hit]).all()
    np.testing.assert_array_equal(argmax2[0, 0, 0, 0], di * w + dj)
    np.testing.assert_array_equal(
        argmax2[0, 0, ho - 1, wo - 1], (2 * ho - 2 + di) * w + 2 * wo - 2 + dj
    )
    np.testing.assert_array_equal(y2[~hit], y[~hit])  # every other window as before
    np.testing.assert_array_equal(argmax2[~hit], argmax[~hit])


def test_global_avg_pool(rng):
    x = rng.standard_normal((3, 4, 5, 6))
    np.testing.assert_allclose(C.global_avg_pool2d(x), x.mean(axis=(2, 3)))
    g = rng.standard_normal((3, 4))
    dx = C.global_avg_pool2d_backward(g, x.shape)
    np.testing.assert_allclose(np.vdot(x, dx), np.vdot(C.global_avg_pool2d(x), g))


def test_bad_geometry_and_inputs():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"kernel 5x5 .* larger than the padded input 4x4"):
        C.im2col(x, 5)
    with pytest.raises(ValueError, match=r"max_pool2d: kernel 3x3 .* padded input 2x2"):
        C.max_pool2d(np.zeros((1, 1, 2, 2)), 3)
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\)"):
        C.im2col(np.zeros((4, 4), np.float32), 3)
    with pytest.raises(TypeError, match="int64"):
        C.im2col(np.zeros((1, 1, 4, 4), np.int64), 3)
    for bad in [0, -1, (1, 2, 3)]:
        with pytest.raises(ValueError, match="im2col: kernel_size"):
            C.im2col(x, bad)
    with pytest.raises(ValueError, match="stride"):
        C.im2col(x, 3, stride=0)
    with pytest.raises(ValueError, match="cols has shape"):
        C.col2im(np.zeros((3, 3), np.float32), x.shape, 3)
    y, argmax = C.max_pool2d(x, 2)
    argmax[0, 0, 0, 0] = 99  # corrupted: must raise, never write out of bounds
    with pytest.raises(ValueError, match="max_pool2d_backward: argmax is out of range for the 4x4"):
        C.max_pool2d_backward(y, argmax, x.shape, 2)


def test_without_the_extension_the_kernels_say_so(monkeypatch):
    """The policy for a missing extension: only GEMM falls back (to SciPy's BLAS)."""
    monkeypatch.setattr(C, "core", None)
    x = np.zeros((1, 1, 4, 4), np.float32)
    for call in (lambda: C.im2col(x, 2), lambda: C.max_pool2d(x, 2), lambda: C.avg_pool2d(x, 2)):
        with pytest.raises(RuntimeError, match="needs nnfast's compiled extension"):
            call()


RANGE = "is out of range for the 4x4 input plane"


def _refuses_bad_argmax(change, error, match, rng):
    x = rng.standard_normal((2, 3, 4, 4))
    y, argmax = C.max_pool2d(x, 2)
    with pytest.raises(error, match=f"max_pool2d_backward: argmax {match}"):
        C.max_pool2d_backward(y, change(argmax.astype(np.int32)), x.shape, 2)


@pytest.mark.parametrize(
    "change,error,match",
    [
        (lambda a: a.astype(np.int64) + 2**32, ValueError, RANGE),
        (lambda a: a.astype(np.int64) - 2**32, ValueError, RANGE),
        (lambda a: a.astype(np.float64) + 0.7, TypeError, "must be an integer array"),
        (lambda a: a.astype(bool), TypeError, "must be an integer array"),
    ],
    ids=["int64+2**32", "int64-2**32", "float", "bool"],
)
def test_max_pool_backward_refuses_a_bad_argmax(change, error, match, rng):
    """argmax was cast to int32 without a check: 2**32 + 1 became 1 and 1.7 became 1. A
    non-int32 argmax is checked in Python before the kernel runs."""
    _refuses_bad_argmax(change, error, match, rng)


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda a: np.where(a == a.flat[0], 16, a), RANGE + r".*\[0, 16\)"),
        (lambda a: np.where(a == a.flat[0], -2, a), RANGE + r".*must be -1 or in"),
    ],
    ids=["int32 16", "int32 -2"],
)
def test_max_pool_backward_refuses_an_int32_argmax_out_of_range(change, match, rng):
    """An int32 argmax goes to the C kernel unchecked in Python: the C check and the numpy
    fallback's must both refuse it."""
    _refuses_bad_argmax(change, ValueError, match, rng)


@pytest.mark.parametrize("dtype", [np.int64, np.uint16])
def test_max_pool_backward_takes_any_integer_argmax_in_range(dtype, rng):
    x = rng.standard_normal((2, 3, 4, 4))
    y, argmax = C.max_pool2d(x, 2)
    dy = rng.standard_normal(y.shape)
    want = C.max_pool2d_backward(dy, argmax, x.shape, 2)
    np.testing.assert_array_equal(C.max_pool2d_backward(dy, argmax.astype(dtype), x.shape, 2), want)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"kernel_size": (2.7, 3)}, "kernel_size"),
        ({"kernel_size": 3.0}, "kernel_size"),
        ({"kernel_size": ("a", 3)}, "kernel_size"),
        ({"kernel_size": "3"}, "kernel_size"),
        ({"kernel_size": True}, "kernel_size"),
        ({"kernel_size": None}, "kernel_size"),
        ({"stride": (1.5, 1)}, "stride"),
        ({"padding": np.float64(1)}, "padding"),
        ({"dilation": (1, np.bool_(True))}, "dilation"),
    ],
)
def test_geometry_refuses_non_integers(kwargs, name):
    """int() truncated 2.7 to 2 and 1.5 to 1: a fractional geometry silently changed."""
    x = np.zeros((1, 1, 6, 6))
    with pytest.raises(TypeError, match=f"im2col: {name} must be an int or a pair of ints"):
        C.im2col(x, **{"kernel_size": 3, **kwargs})


@pytest.mark.parametrize("name", ["kernel_size", "stride", "padding", "dilation"])
@pytest.mark.parametrize("value", [2**31, (1, 2**40)])
def test_geometry_refuses_values_beyond_a_c_int(name, value):
    """The kernels take C ints: 2**40 was an OverflowError from deep inside the extension."""
    with pytest.raises(ValueError, match=f"max_pool2d: {name} must be >= [01] and < 2\\*\\*31"):
        C.max_pool2d(np.zeros((1, 1, 6, 6)), **{"kernel_size": 2, name: value})


def test_geometry_takes_numpy_integers():
    geom = C.geometry(np.int64(3), (np.int32(2), 1), np.uint8(1), [1, np.int16(2)])
    assert geom == (3, 3, 2, 1, 1, 1, 1, 2) and all(type(v) is int for v in geom)


@pytest.mark.parametrize(
    "kind,args",
    [
        # max_pool2d(x, kernel, stride, padding, dilation)
        ("max", (2, 1, 2, 1)),
        ("max", ((3, 2), 1, (1, 2), 1)),
        ("max", (2, 1, 3, 2)),
        ("max", (3, 1, (0, 3), 2)),
        # avg_pool2d(x, kernel, stride, padding): no dilation
        ("avg", (2, 1, 2)),
        ("avg", ((3, 2), 1, (1, 2))),
        ("avg", (3, 1, 2)),
        ("avg", (4, 1, (0, 3))),
    ],
)
def test_pool_padding_at_most_half_the_kernel(kind, args):
    """Wider padding gave a border of 0.0 with argmax -1; torch refuses it too."""
    x = np.ones((1, 1, 5, 5))
    pool = getattr(C, f"{kind}_pool2d")
    with pytest.raises(
        ValueError, match=rf"^{kind}_pool2d: padding .* at most half the kernel extent"
    ):
        pool(x, *args)


def test_pool_padding_of_half_the_dilated_kernel_is_allowed(rng):
    """Half the dilated extent is allowed (torch's rule); a dilated window may still hold padding
    alone there: -inf with index -1, and backward skips it."""
    x = rng.standard_normal((1, 2, 3, 5))
    y, argmax = C.max_pool2d(x, 2, 1, 3, 5)  # extent 6, padding 3
    assert (argmax == -1).any() and (argmax >= 0).any()
    np.testing.assert_array_equal(y[argmax == -1], -np.inf)
    picked = np.take_along_axis(x.reshape(1, 2, -1), argmax.reshape(1, 2, -1), axis=2)
    np.testing.assert_array_equal(picked.reshape(y.shape)[argmax >= 0], y[argmax >= 0])
    dx = C.max_pool2d_backward(np.ones_like(y), argmax, x.shape, 2, 1, 3, 5)
    assert dx.sum() == (argmax >= 0).sum()
    with pytest.raises(ValueError, match="max_pool2d_backward: padding 4x4"):
        C.max_pool2d_backward(np.ones_like(y), argmax, x.shape, 2, 1, 4, 5)


@pytest.mark.skipif(C.core is None, reason="the C kernel's arithmetic (numpy would pad to 17 GB)")
def test_avg_pool_kernel_area_beyond_int():
    """kh * kw = 46341**2 overflowed a C int: the mean came out negative."""
    k, p = 46341, 23170
    y = C.avg_pool2d(np.ones((1, 1, 1, 1), np.float64), k, padding=p)
    np.testing.assert_allclose(y, 1.0 / k**2, rtol=1e-12)
    dx = C.avg_pool2d_backward(np.ones((1, 1, 1, 1)), (1, 1, 1, 1), k, padding=p)
    np.testing.assert_allclose(dx, 1.0 / k**2, rtol=1e-12)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: C.col2im(np.zeros((36, 27)), (1, 3, 8), 3), r"col2im: input_shape must be \(N, C"),
        (lambda: C.col2im(np.zeros((36, 27)), (1, 3, -9, 8), 3), r"col2im: input_shape .* >= 0"),
        (lambda: C.col2im(np.zeros((36, 27)), 5, 3), r"col2im: input_shape must be \(N, C"),
        (lambda: C.col2im(np.zeros((36, 27)), (1, 3, 8.5, 8), 3), "col2im: input_shape"),
        (lambda: C.col2im(np.zeros((36, 27)), (2, 3, 8, 8), 3), r"expected \(72, 27\) for input"),
        (
            lambda: C.max_pool2d_backward(
                np.zeros((1, 3, 2, 2)), np.zeros((1, 3, 2, 2), np.int32), (1, 3, 8, 8), 2
            ),
            r"max_pool2d_backward: dy has shape \(1, 3, 2, 2\), expected \(1, 3, 4, 4\)",
        ),
        (
            lambda: C.avg_pool2d_backward(np.zeros((2, 3, 4, 4)), (1, 3, 8, 8), 2),
            r"avg_pool2d_backward: dy has shape \(2, 3, 4, 4\), expected \(1, 3, 4, 4\)",
        ),
        (
            lambda: C.avg_pool2d_backward(np.zeros((1, 3, 4, 4)), (1, 3, 8), 2),
            r"avg_pool2d_backward: input_shape must be \(N, C, H, W\)",
        ),
        (
            lambda: C.global_avg_pool2d_backward(np.ones((1, 3)), (2, 3, 5, 5)),
            r"global_avg_pool2d_backward: dy has shape \(1, 3\), expected \(2, 3\)",
        ),
        (
            lambda: C.global_avg_pool2d_backward(np.ones(6), (2, 3, 5, 5)),
            r"global_avg_pool2d_backward: dy has shape \(6,\)",
        ),
    ],
)
def test_backward_checks_input_shape_and_dy(call, match):
    """A 3-entry input_shape was 'not enough values to unpack', dy (1, C) broadcast over N."""
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.parametrize(
    "padding,gib",
    [
        (10**6, r"4\.023e\+05 GiB .* \(4000024000036, 27\)"),
        (2**30, r"4\.639e\+11 GiB for a float32"),
    ],
)
def test_im2col_too_large_to_allocate(padding, gib):
    """numpy's bare 'Unable to allocate 393 TiB' (or 'array is too big') named neither the
    function nor the shapes."""
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(MemoryError, match=f"im2col: cannot allocate {gib}.*\\(1, 3, 8, 8\\)"):
        C.im2col(x, 3, padding=padding)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 7, 9), (2, 1, 5, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_2x2_backward_bits(shape, dtype, isa, rng):
    """The 2x2 window's backward gives the bits of a zero fill and a scatter (np.add.at): -0 in
    dy becomes +0, NaN passes, the rows and columns the pooling dropped are 0; an argmax outside
    its own window (a valid pixel) lands where it says (the fused Conv2d + MaxPool2d relies on
    these bits)."""
    x = rng.standard_normal(shape).astype(dtype)
    y, argmax = C.max_pool2d(x, 2)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy[0, 0, 0, 0], dy[-1, -1, -1, -1] = -0.0, np.nan
    n, c, h, w = shape
    for arg in (argmax, argmax.copy()):
        if arg is not argmax:
            arg[0, 0, 0, 0] = h * w - 1  # another window's pixel
        dx = C.max_pool2d_backward(dy, arg, shape, 2)
        want = np.zeros((n * c, h * w), dtype)
        np.add.at(want, (np.arange(n * c)[:, None], arg.reshape(n * c, -1)), dy.reshape(n * c, -1))
        assert dx.tobytes() == want.reshape(shape).tobytes()


def test_im2col_and_col2im_refuse_an_out_that_overlaps_their_input():
    """Written while read: im2col's result was off by up to 1.14, col2im's by 1.0."""
    x = np.random.default_rng(0).standard_normal((1, 2, 2, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="im2col: out overlaps the input"):
        C.im2col(x, 1, out=x.reshape(4, 2))
    cols = C.im2col(x, 1)
    with pytest.raises(ValueError, match="col2im: out overlaps the input"):
        C.col2im(cols, x.shape, 1, out=cols.reshape(1, 2, 2, 2))
    np.testing.assert_array_equal(C.im2col(x, 1, out=np.empty((4, 2), np.float32)), cols)


def test_global_avg_pool2d_backward_refuses_a_non_float_gradient():
    """An int dy gave int zeros where 0.75 was due; float16 passed where others refuse it."""
    for dy in (np.full((1, 1), 3), np.full((1, 1), 3, np.float16)):
        with pytest.raises(TypeError, match="global_avg_pool2d_backward: dy has dtype"):
            C.global_avg_pool2d_backward(dy, (1, 1, 2, 2))
    np.testing.assert_array_equal(
        C.global_avg_pool2d_backward(np.full((1, 1), 3.0), (1, 1, 2, 2)),
        np.full((1, 1, 2, 2), 0.75),
    )
