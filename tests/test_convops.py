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
    fallback = np.empty_like(cols)
    C._im2col_numpy(x, geom, fallback)
    np.testing.assert_array_equal(fallback, cols)


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
    fallback = np.empty_like(dx)
    C._col2im_numpy(g, geom, fallback)
    np.testing.assert_allclose(fallback, dx, **tol(dtype))


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
def test_max_pool(cfg, dtype, rng):
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


def test_max_pool_nan_propagates():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    y, _ = C.max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and np.isfinite(y.flat[1:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 9, 71), (1, 2, 5, 3), (3, 1, 2, 34)])
def test_max_pool_2x2_path_ties_and_nan(shape, dtype, rng):
    """The vectorised 2x2/stride-2 rows (odd sizes, vector body and tail): a tie picks the first
    element in window order, and a NaN anywhere in a window wins it."""
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
    x[0, 0, 2 * ho - 1, 2 * wo - 2] = np.nan
    y, argmax = C.max_pool2d(x, 2)
    assert (
        np.isnan(y[0, 0, ho - 1, wo - 1]) and np.isfinite(np.delete(y.ravel(), ho * wo - 1)).all()
    )
    assert argmax[0, 0, ho - 1, wo - 1] == (2 * ho - 1) * w + 2 * wo - 2


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
    for bad in [0, -1, (1, 2, 3), "3"]:
        with pytest.raises(ValueError, match="kernel_size"):
            C.im2col(x, bad)
    with pytest.raises(ValueError, match="stride"):
        C.im2col(x, 3, stride=0)
    with pytest.raises(ValueError, match="cols has shape"):
        C.col2im(np.zeros((3, 3), np.float32), x.shape, 3)
    y, argmax = C.max_pool2d(x, 2)
    argmax[0, 0, 0, 0] = 99  # corrupted: must raise, never write out of bounds
    with pytest.raises(ValueError, match="max_pool2d_backward"):
        C.max_pool2d_backward(y, argmax, x.shape, 2)
