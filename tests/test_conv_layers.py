"""Conv2d, pooling, BatchNorm2d and the CNN models: forward against a direct loop convolution,
gradcheck of every module, chunked == unchunked, save/load, training, bad input."""

import itertools
import re

import numpy as np
import pytest

import nnfast
from nnfast import functional as F
from nnfast import io, models, nn
from nnfast._native import core
from nnfast.nn import conv as conv_module
from nnfast.optim import Adam
from nnfast.train import fit

# (N, Cin, H, W, Cout, kernel, stride, padding, dilation)
CONV_CONFIGS = [
    (1, 1, 5, 5, 2, 3, 1, 0, 1),
    (5, 3, 9, 7, 4, 3, 2, 1, 1),
    (2, 16, 7, 8, 3, (3, 2), (1, 3), (1, 0), 1),
    (2, 3, 11, 10, 5, 3, 3, 2, 2),
    (5, 3, 6, 6, 16, 1, 1, 0, 1),  # pointwise: no im2col
    (1, 3, 7, 7, 2, 1, 2, 0, 1),  # 1x1 with stride: im2col
]
# shapes for the direct kernel's blocking: rows of pixels longer than one block of vectors and
# not a multiple of it, channel counts that leave every block size, taps past a tap block
DIRECT_CONFIGS = [
    (3, 1, 28, 28, 32, 3, 1, 1, 1),  # cnn_small's first layer
    (2, 1, 28, 28, 6, 5, 1, 0, 1),  # LeNet-5's
    (2, 2, 19, 23, 15, (3, 5), 1, (1, 2), (2, 1)),
    (3, 3, 17, 21, 9, 3, 2, (0, 1), 1),
    (1, 1, 9, 40, 3, (1, 4), (1, 3), (0, 3), 1),
    (2, 1, 80, 81, 2, 3, 1, 1, 1),  # 6480 pixels: bands of the image that end mid-row
]


@pytest.fixture(params=["gemm", "direct"])
def conv_path(request, monkeypatch):
    """Run the test with every Conv2d on the GEMM path, then on the direct kernel (1x1 layers
    with stride 1 and no padding keep their own path)."""
    monkeypatch.setattr(conv_module, "DIRECT_MAX_K", 0 if request.param == "gemm" else 10**9)
    return request.param


def direct_conv(x, w, b, stride, padding, dilation):
    """y[n, o, oh, ow] = b[o] + sum x[n, c, oh*s - p + i*d, ow*s - p + j*d] * w[o, c, i, j]."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, ho, wo)) + (0 if b is None else b[None, :, None, None])
    for bi, oi, oh, ow in itertools.product(range(n), range(o), range(ho), range(wo)):
        for ci, i, j in itertools.product(range(c), range(kh), range(kw)):
            ih, iw = oh * sh - ph + i * dh, ow * sw - pw + j * dw
            if 0 <= ih < h and 0 <= iw < wd:
                y[bi, oi, oh, ow] += x[bi, ci, ih, iw] * w[oi, ci, i, j]
    return y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", ["gemm", "direct"])
def test_window_copies_of_every_row_width(path, dtype, isa, rng, monkeypatch):
    """Both paths' copies of the windows' rows (specialised per output width), every ISA, for
    rows 1 to 32 wide: whole-row copies (2x3 kernels) and one run per tap (3x1), unpadded and
    padded."""
    monkeypatch.setattr(conv_module, "DIRECT_MAX_K", 0 if path == "gemm" else 10**9)
    for wd, (kh, kw), pad in itertools.product(range(3, 31), [(2, 3), (3, 1)], [0, 1]):
        conv = nn.Conv2d(2, 3, (kh, kw), padding=pad, dtype=dtype, seed=4)
        x = rng.standard_normal((3, 2, 5, wd)).astype(dtype)
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        w, ho, wo = conv.weight.data, 5 + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
        want = conv.bias.data[None, :, None, None] + sum(
            np.einsum("nchw,oc->nohw", xp[:, :, i : i + ho, j : j + wo], w[:, :, i, j])
            for i, j in itertools.product(range(kh), range(kw))
        )
        np.testing.assert_allclose(conv(x), want, rtol=1e-5, atol=1e-5, err_msg=f"width {wd}")
        assert conv._direct == (path == "direct")


@pytest.mark.parametrize("cfg", CONV_CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv2d_forward_matches_direct_loops(cfg, dtype, rng, conv_path, isa):
    n, cin, h, w, cout, k, s, p, d = cfg
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, dtype=dtype, seed=1)
    x = rng.standard_normal((n, cin, h, w)).astype(dtype)
    y = conv(x)
    want = direct_conv(x, conv.weight.data, conv.bias.data, conv.stride, conv.padding,
                       conv.dilation)  # fmt: skip
    tol = 1e-4 if dtype == "float32" else 1e-11
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    assert y.dtype == dtype and conv.output_shape(x.shape) == y.shape
    assert conv._direct == (conv_path == "direct" and not conv._pointwise)


@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_conv2d_gradcheck(cfg, rng, conv_path):
    n, cin, h, w, cout, k, s, p, d = cfg
    n = min(n, 2)
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, seed=2)
    assert nnfast.gradcheck(conv, rng.standard_normal((n, cin, h, w)))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_conv2d_fused_activation_gradcheck(activation, rng, conv_path):
    conv = nn.Conv2d(2, 3, 3, padding=1, activation=activation, seed=3)
    assert nnfast.gradcheck(conv, rng.standard_normal((2, 2, 5, 5)))


@pytest.mark.parametrize("cfg", [c for c in CONV_CONFIGS if c[5] != 1] + DIRECT_CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_direct_kernel_matches_the_gemm_path(
    cfg, dtype, activation, isa, rng, monkeypatch, conv_hooks
):
    """Every ISA path of the direct kernel against the GEMM path: the output, two backward
    passes (the second adds into the weight gradient) and the input gradient."""
    n, cin, h, w, cout, k, s, p, d = cfg
    x = rng.standard_normal((n, cin, h, w)).astype(dtype)
    dy = rng.standard_normal((2, n, cout, 1, 1)).astype(dtype)  # broadcast below
    results = []
    for max_k in (0, 10**9):
        monkeypatch.setattr(conv_module, "DIRECT_MAX_K", max_k)
        core.conv_direct_dx(conv_hooks if max_k else 0)  # the GEMM path's from its fold
        conv = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, activation=activation,
                         dtype=dtype, seed=6)  # fmt: skip
        y = conv(x)
        g = np.ascontiguousarray(np.broadcast_to(dy[0], y.shape) * np.linspace(-1, 1, y.size)
                                 .reshape(y.shape)).astype(dtype)  # fmt: skip
        conv.zero_grad()
        dx = conv.backward(g)
        conv(x)
        conv.backward(g[::-1].copy())
        assert conv._direct == (max_k > 0)
        results.append((y, dx, conv.weight.grad.copy(), conv.bias.grad.copy()))
    tol = 2e-5 if dtype == "float32" else 1e-12
    for a, b in zip(*results):  # the weight gradient sums N*Ho*Wo products: scaled by its size
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol * max(1.0, np.abs(a).max()))


@pytest.mark.parametrize(
    "k, stride, padding, dilation, hw",
    [(3, 2**26, 0, 1, 3), (1, 16384, 8192, 1, 1), (3, 1, 8192, 8192, 1), (3, 64, 40, 1, 5)],
)
def test_strides_and_padding_far_past_the_kernel_take_the_gemm_path(
    k, stride, padding, dilation, hw, rng
):
    """The direct kernels' scratch is a padded copy of the image (or of its gradient), sized by
    the stride and the padding: 2**26 on a 3x3 image took 768 MB for one output pixel, padding
    8192 around one pixel 1 GB. Such layers take the GEMM path, whose columns are the output's
    size; the answers are the same."""
    x = rng.standard_normal((2, 1, hw, hw))
    conv = nn.Conv2d(1, 2, k, stride=stride, padding=padding, dilation=dilation,
                     dtype="float64", seed=3)  # fmt: skip
    y = conv(x)
    assert not conv._direct
    want = direct_conv(x, conv.weight.data, conv.bias.data, conv.stride, conv.padding,
                       conv.dilation)  # fmt: skip
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    if y.size <= 64:
        assert nnfast.gradcheck(conv, x)


def test_direct_kernel_ignores_nan_in_a_pending_gradient(rng):
    conv = nn.Conv2d(1, 2, 3, seed=7)
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    conv.weight.grad[...] = np.nan
    conv.zero_grad()  # deferred: the kernel overwrites instead of adding to NaN
    conv.backward(np.ones_like(conv(x)))
    assert conv._direct and np.isfinite(conv.weight.grad).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "geom", [(3, 3, 1, 1, 1, 1, 1, 1), (5, 5, 1, 1, 0, 0, 1, 1), (3, 2, 2, 3, 1, 0, 1, 2)]
)
def test_direct_weight_gradient_reads_only_its_windows(geom, dtype, isa, rng):
    """The weight gradient's vectors run past each output row (into pixels of other windows);
    those must add nothing: an infinite pixel makes only the taps whose windows hold it
    infinite, as a sum over the windows does."""
    kh, kw, sh, sw, ph, pw, dh, dw = geom
    x = rng.standard_normal((2, 2, 9, 13)).astype(dtype)
    x[1, 1, 4, 12] = x[0, 0, 8, 3] = np.inf
    ho, wo = (9 + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (13 + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    dy = rng.standard_normal((2, 3, ho, wo)).astype(dtype)
    dw_ = np.empty((3, 2, kh, kw), dtype)
    core.conv2d_direct_backward_weight(x, dy, geom, False, dw_)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    want = np.empty(dw_.shape)
    for i, j in itertools.product(range(kh), range(kw)):
        win = xp[
            :, :, i * dh : i * dh + (ho - 1) * sh + 1 : sh, j * dw : j * dw + (wo - 1) * sw + 1 : sw
        ]
        want[:, :, i, j] = np.einsum("nchw,nohw->oc", win, dy.astype(np.float64))
    assert np.isinf(want).any() and np.isfinite(want).any()
    tol = 1e-4 if dtype == "float32" else 1e-11
    np.testing.assert_allclose(dw_, want, rtol=tol, atol=tol)


def test_direct_backward_takes_relu_and_bias_in_the_kernel(rng):
    """With y (ReLU's output) the kernels use dy * (y > 0): NaN and 0 in y count as inactive,
    as in F.relu_backward; db is dy * (y > 0) summed per channel. Bad y or db: ValueError."""
    geom = (3, 3, 1, 1, 1, 1, 1, 1)
    x = rng.standard_normal((3, 2, 20, 21))
    w = rng.standard_normal((5, 2, 3, 3))
    y = np.maximum(rng.standard_normal((3, 5, 20, 21)), 0)
    y[0, 0, 0, :3] = [np.nan, 0.0, -0.0]
    dy = rng.standard_normal(y.shape)
    dw, db, dx = np.empty_like(w), np.empty(5), np.empty_like(x)
    core.conv2d_direct_backward_weight(x, dy, geom, False, dw, y, db)
    core.conv2d_direct_backward_input(dy, w, geom, dx, y)
    masked = F.relu_backward(dy, y)
    dw_want, dx_want = np.empty_like(w), np.empty_like(x)
    core.conv2d_direct_backward_weight(x, masked, geom, False, dw_want)
    core.conv2d_direct_backward_input(masked, w, geom, dx_want)
    np.testing.assert_allclose(dw, dw_want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, masked.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_want, rtol=1e-12, atol=1e-12)
    what = "conv2d_direct_backward_weight"
    with pytest.raises(ValueError, match=f"{what}: y must be a C-contiguous array like dy"):
        core.conv2d_direct_backward_weight(x, dy, geom, False, dw, y[:, :4])
    with pytest.raises(ValueError, match=f"{what}: y must be"):
        core.conv2d_direct_backward_weight(x, dy, geom, False, dw, y.astype(np.float32))
    with pytest.raises(ValueError, match=f"{what}: db must be a contiguous"):
        core.conv2d_direct_backward_weight(x, dy, geom, False, dw, y, np.empty(4))
    with pytest.raises(ValueError, match="conv2d_direct_backward_input: y must be"):
        core.conv2d_direct_backward_input(dy, w, geom, dx, y[..., ::2])


def test_backward_without_input_grad(rng, conv_path):
    """input_grad=False returns None and leaves the weight and bias gradients as with it."""
    conv = nn.Conv2d(3, 4, 3, padding=1, activation="relu", seed=5, dtype="float64")
    x = rng.standard_normal((3, 3, 9, 9))
    dy = rng.standard_normal(conv(x).shape)
    conv.backward(dy)
    want = conv.weight.grad.copy(), conv.bias.grad.copy()
    conv.zero_grad()
    assert conv.backward(dy, input_grad=False) is None
    np.testing.assert_allclose(conv.weight.grad, want[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(conv.bias.grad, want[1], rtol=1e-13, atol=1e-13)


def test_gemm_kernels_refuse_bad_arrays(rng):
    """The GEMM path's C entry points: bf16 with float64, outputs of the wrong shape, read-only
    or non-contiguous arrays are clear errors before any C runs."""
    geom = (3, 3, 1, 1, 1, 1, 1, 1)
    x, w = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((5, 4, 3, 3))
    y, dy = np.empty((2, 5, 6, 6)), rng.standard_normal((2, 5, 6, 6))
    dw, dx = np.empty_like(w), np.empty_like(x)
    with pytest.raises(TypeError, match="conv2d_gemm: bf16 needs float32"):
        core.conv2d_gemm(x, w, None, geom, -1, 0.0, True, y)
    with pytest.raises(TypeError, match="conv2d_gemm_backward: bf16 needs float32"):
        core.conv2d_gemm_backward(x, dy, w, geom, False, True, dw, dx)
    with pytest.raises(ValueError, match="conv2d_gemm_backward: dx must be shaped like x"):
        core.conv2d_gemm_backward(x, dy, w, geom, False, False, dw, dx[:1])
    with pytest.raises(ValueError, match="conv2d_gemm: arrays must be C-contiguous"):
        core.conv2d_gemm(np.asfortranarray(x), w, None, geom, -1, 0.0, False, y)
    with pytest.raises(ValueError, match="conv2d_gemm: inconsistent shapes"):
        core.conv2d_gemm(x, w, None, geom, -1, 0.0, False, np.empty((2, 4, 6, 6)))
    for out, call in [
        (y, lambda: core.conv2d_gemm(x, w, None, geom, -1, 0.0, False, y)),
        (dw, lambda: core.conv2d_gemm_backward(x, dy, w, geom, False, False, dw, None)),
        (dx, lambda: core.conv2d_gemm_backward(x, dy, w, geom, False, False, dw, dx)),
    ]:
        out.flags.writeable = False
        with pytest.raises(ValueError, match="must be writeable"):
            call()
        out.flags.writeable = True


@pytest.mark.parametrize(
    "args,kwargs,hw",
    [
        ((3, 4, 3), {"padding": 1}, 30),  # columns of two images fit a group: groups 2, 2, 1
        ((3, 4, 3), {"stride": 2, "padding": 2, "dilation": 2}, 41),
        ((2, 3, 1), {}, 6),  # 1x1: several images per group, unfolded
        ((2, 3, 1), {}, 200),  # 1x1: one image per group, x read in place
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm_path_groups_equal_one_image_at_a_time(args, kwargs, hw, dtype, rng, monkeypatch):
    """The GEMM path cuts a batch into groups of images (a remainder group included): the
    outputs and gradients equal those of each image run alone."""
    monkeypatch.setattr(conv_module, "DIRECT_MAX_K", 0)
    conv = nn.Conv2d(*args, **kwargs, seed=4, dtype=dtype)
    x = rng.standard_normal((5, args[0], hw, hw)).astype(dtype)
    y = conv(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = conv.backward(dy)
    dw = conv.weight.grad.copy()
    conv.zero_grad()
    alone = []
    for i in range(5):
        alone.append((conv(x[i : i + 1]), conv.backward(dy[i : i + 1])))
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(np.concatenate([a for a, _ in alone]), y, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.concatenate([b for _, b in alone]), dx, rtol=tol, atol=tol)
    np.testing.assert_allclose(conv.weight.grad, dw, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "module,shape",
    [
        (nn.MaxPool2d(2), (2, 3, 6, 6)),
        (nn.MaxPool2d(3, stride=2, padding=1), (1, 2, 7, 7)),
        (nn.AvgPool2d(2), (2, 3, 6, 5)),
        (nn.AvgPool2d(3, stride=2, padding=1), (1, 2, 7, 7)),
        (nn.AdaptiveAvgPool2d(1), (2, 3, 4, 5)),
        (nn.BatchNorm2d(3), (4, 3, 3, 3)),
    ],
)
def test_pool_and_batchnorm_gradcheck(module, shape, rng):
    assert nnfast.gradcheck(module, rng.standard_normal(shape))


def test_batchnorm2d_statistics(rng):
    bn = nn.BatchNorm2d(2, momentum=0.5)
    x = rng.standard_normal((8, 2, 4, 4)).astype(np.float32) * 3 + 1
    y = bn(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1, atol=1e-3)
    mean = x.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(bn.running_mean, 0.5 * mean, rtol=1e-5)
    bn.eval()
    y_eval = bn(x)
    want = (x - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var[:, None, None] + 1e-5)
    np.testing.assert_allclose(y_eval, want, rtol=1e-4, atol=1e-5)


def test_conv_bad_input():
    conv = nn.Conv2d(3, 4, 5)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*expected 3 input channels"):
        conv(np.zeros((1, 2, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*4-D \(N, C, H, W\)"):
        conv(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*kernel 5x5 .* padded input 4x4"):
        conv(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool2d.*kernel 3x3"):
        nn.MaxPool2d(3)(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="in_channels"):
        nn.Conv2d(0, 4, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv2d(1, 4, 0)


_CONVS = [nn.Conv2d(5, 7, 3), nn.Conv2d(1, 4, 3), nn.Conv2d(3, 2, 1, padding=1),
          nn.Conv2d(8, 8, 3, activation="relu")]  # fmt: skip


@pytest.mark.parametrize("conv", _CONVS, ids=repr)
def test_conv_backward_names_the_layer_and_the_output_shape(conv, rng):
    """Every kernel path: the direct kernel's message named only the kernel."""
    y = conv(rng.random((2, conv.in_channels, 10, 10)).astype(np.float32))
    grads = [p.grad.copy() for p in conv.parameters()]
    for bad in ((2, conv.out_channels, 11, 11), (2, conv.out_channels, y.shape[2], 1)):
        want = re.escape(f"{conv!r}: grad_out has shape {bad}, expected {y.shape}")
        with pytest.raises(ValueError, match=want):
            conv.backward(np.ones(bad, np.float32))
    for p, g in zip(conv.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)


def test_output_shape_checks_what_it_knows():
    """What export and a model's summary propagate: channels and ranks that a forward would
    refuse are refused by name; unknown (None) sizes pass."""
    conv = nn.Conv2d(3, 4, 3)
    assert conv.output_shape((None, 3, 8, 8)) == (None, 4, 6, 6)
    assert conv.output_shape((None, None, None, 8)) == (None, 4, None, None)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*expected 3 input channels"):
        conv.output_shape((None, 2, 8, 8))
    with pytest.raises(ValueError, match=r"MaxPool2d.*4-D"):
        nn.MaxPool2d(2).output_shape((None, 8, 8))
    with pytest.raises(ValueError, match=r"BatchNorm2d.*expected 3 input channels"):
        nn.BatchNorm2d(3).output_shape((None, 4, 8, 8))
    with pytest.raises(ValueError, match=r"Linear\(5, 2\).*\(N, 5\)"):
        nn.Linear(5, 2).output_shape((None, 6))
    assert nn.Linear(5, 2).output_shape((None, None)) == (None, 2)
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d.*empty plane \(0x4\)"):
        nn.AdaptiveAvgPool2d(1).output_shape((None, 3, 0, 4))


def test_a_summary_survives_a_forward_that_failed_part_way(rng):
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"Linear\(5, 2\)"):
        model(rng.random((2, 4)).astype(np.float32))
    text = repr(model)
    assert "(N, 3)" in text and "-> ?" in text


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.AvgPool2d(2)], ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_backward_takes_the_gradient_in_the_forward_dtype(pool, dtype):
    """Integer (or other float) gradients convert, as for Linear and Conv2d: an int grad
    reached the kernel, whose message named max_pool2d_backward."""
    y = pool(np.arange(32, dtype=dtype).reshape(1, 2, 4, 4))
    for g in (np.ones(y.shape, int), np.ones(y.shape, np.float16)):
        dx = pool.backward(g)
        assert dx.dtype == dtype and dx.shape == (1, 2, 4, 4)


def test_adaptive_average_of_an_empty_plane_is_refused():
    """The mean of no pixels is NaN: refused as the other layers refuse H = 0."""
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d.*empty plane \(0x4\)"):
        nn.AdaptiveAvgPool2d(1)(np.ones((2, 3, 0, 4), np.float32))


@pytest.mark.parametrize("factory", [models.lenet5, models.cnn_small, models.mlp])
def test_models_shapes_and_save_load(factory, rng, tmp_path):
    model = factory()
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    y = model(x)
    assert y.shape == (3, 10)
    assert model.backward(np.ones_like(y)).shape == x.shape
    model.eval()
    io.save(model, tmp_path / "m.npz")
    again = io.load(tmp_path / "m.npz").eval()
    np.testing.assert_array_equal(again(x), model(x))


def test_lenet_trains_on_a_separable_toy_problem(rng):
    """Bright top half vs bright bottom half: a few epochs reach full accuracy."""
    n = 64
    x = rng.random((n, 1, 28, 28)).astype(np.float32) * 0.1
    y = rng.integers(0, 2, n)
    x[y == 0, :, :14] += 1.0
    x[y == 1, :, 14:] += 1.0
    nnfast.manual_seed(0)
    model = models.lenet5(num_classes=2)
    loss = nn.CrossEntropyLoss()
    hist = fit(model, loss, Adam(model.parameters(), lr=3e-3), (x, y), epochs=6,
               batch_size=16, seed=0)  # fmt: skip
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["accuracy"][-1] == 1.0


@pytest.mark.parametrize(
    "args,kwargs,error,match",
    [
        ((3, 4, 3), {"stride": (1.5, 1)}, TypeError, "stride must be an int or a pair"),
        ((3, 4, (2.7, 3)), {}, TypeError, "kernel_size must be an int or a pair"),
        ((3, 4, ("a", 3)), {}, TypeError, "kernel_size must be an int or a pair"),
        ((3, 4, 3), {"padding": 0.5}, TypeError, "padding must be an int or a pair"),
        ((2.5, 4, 3), {}, TypeError, "in_channels must be a whole number"),
        (("3", 4, 3), {}, TypeError, "in_channels must be a whole number"),
        ((3, True, 3), {}, TypeError, "out_channels must be a whole number"),
        ((3, 0, 3), {}, ValueError, "out_channels must be >= 1"),
        ((3, 4, 3), {"stride": 2**40}, ValueError, r"stride must be >= 1 and < 2\*\*31"),
        ((3, 4, 3), {"dilation": (1, 2**31)}, ValueError, r"dilation must be >= 1 and < 2\*\*31"),
    ],
)
def test_conv2d_refuses_fractional_or_huge_geometry(args, kwargs, error, match):
    """int() truncated stride 1.5 to 1 and in_channels 2.5 to 2; 2**40 overflowed in C."""
    with pytest.raises(error, match=f"Conv2d: {match}"):
        nn.Conv2d(*args, **kwargs)


def test_conv2d_takes_numpy_integers(rng):
    conv = nn.Conv2d(np.int64(2), np.int32(3), (np.int64(3), 2), stride=np.uint8(2))
    got = (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride)
    assert got == (2, 3, (3, 2), (2, 2)) and all(type(v) is int for v in got[:2])
    # the pairs' elements too: plain ints of the given values, not numpy scalars equal to them
    assert [(type(v), v) for v in (*conv.kernel_size, *conv.stride)] == [
        (int, v) for v in (3, 2, 2, 2)
    ]
    assert conv(rng.standard_normal((1, 2, 7, 7))).shape == (1, 3, 3, 3)


@pytest.mark.parametrize(
    "factory,match",
    [
        (
            lambda: nn.MaxPool2d(2, padding=2),
            "padding 2x2 must be at most half the kernel extent 2x2",
        ),
        (lambda: nn.MaxPool2d(2, padding=3), "padding 3x3"),
        (lambda: nn.MaxPool2d(3, padding=(1, 2)), "padding 1x2"),
        (
            lambda: nn.MaxPool2d(2, padding=3, dilation=3),
            "padding 3x3 .* extent 4x4 .*dilation 3x3",
        ),
        (lambda: nn.AvgPool2d(2, padding=3), "padding 3x3"),
        (lambda: nn.AvgPool2d((3, 5), padding=(2, 2)), "padding 2x2 .* extent 3x5"),
    ],
)
def test_pool_padding_at_most_half_the_kernel(factory, match):
    """A wider padding returned a border of 0.0 (argmax -1) made of padding alone."""
    with pytest.raises(ValueError, match=f"Pool2d: {match}"):
        factory()


def test_pool_padding_of_half_the_kernel_still_works(rng):
    x = rng.standard_normal((1, 1, 4, 4))
    assert nn.MaxPool2d(2, padding=1)(x).shape == (1, 1, 3, 3)
    assert nn.MaxPool2d(2, padding=2, dilation=3)(x).shape == (1, 1, 3, 3)
    assert nn.AvgPool2d(3, stride=1, padding=1)(x).shape == (1, 1, 4, 4)


@pytest.mark.parametrize(
    "module,bad",
    [
        (nn.AdaptiveAvgPool2d(1), (3, 2, 1, 1)),
        (nn.AdaptiveAvgPool2d(1), (6,)),
        (nn.AdaptiveAvgPool2d(1), (3,)),
        (nn.AdaptiveAvgPool2d(1), (2, 3)),
        (nn.MaxPool2d(2), (2, 3, 3, 2)),
        (nn.MaxPool2d(2), (2, 3, 2)),
        (nn.AvgPool2d(2), (2, 3, 3, 2)),
        (nn.AvgPool2d(2), (1, 3, 2, 2)),
    ],
)
def test_pool_backward_takes_only_the_output_shape(module, bad):
    """AdaptiveAvgPool2d reshaped (3, 2, 1, 1) or (6,) silently; the pools' errors did not name
    the layer."""
    y = module(np.ones((2, 3, 4, 4)))
    name = type(module).__name__
    want = re.escape(f"grad_out has shape {bad}, expected {y.shape}")
    with pytest.raises(ValueError, match=rf"{name}\(.*: {want}"):
        module.backward(np.ones(bad))
    assert module.backward(np.ones(y.shape)).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("cls", [nn.BatchNorm1d, nn.BatchNorm2d])
@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"num_features": 0}, ValueError, "num_features must be >= 1"),
        ({"num_features": 2.5}, TypeError, "num_features must be a whole number"),
        ({"num_features": True}, TypeError, "num_features must be a whole number"),
        ({"eps": -10}, ValueError, "eps must be finite and > 0"),
        ({"eps": 0}, ValueError, "eps must be finite and > 0"),
        ({"eps": float("nan")}, ValueError, "eps must be finite and > 0"),
        ({"eps": float("inf")}, ValueError, "eps must be finite and > 0"),
        ({"momentum": float("nan")}, ValueError, r"momentum must be in \[0, 1\]"),
        ({"momentum": -0.1}, ValueError, r"momentum must be in \[0, 1\]"),
        ({"momentum": 1.5}, ValueError, r"momentum must be in \[0, 1\]"),
        ({"momentum": None}, ValueError, "momentum=None .* not supported"),
    ],
)
def test_batchnorm_refuses_bad_arguments(cls, kwargs, error, match):
    """eps=-10 gave NaN outputs with only a warning, momentum=nan NaN running statistics."""
    with pytest.raises(error, match=f"{cls.__name__}: {match}"):
        cls(**{"num_features": 3, **kwargs})


@pytest.mark.parametrize("momentum", [0.0, 1.0])
def test_batchnorm_momentum_bounds_are_allowed(momentum, rng):
    bn = nn.BatchNorm2d(np.int64(2), momentum=momentum)
    x = rng.standard_normal((4, 2, 3, 3))
    bn(x)
    want = x.mean(axis=(0, 2, 3)) if momentum else 0
    np.testing.assert_allclose(bn.running_mean, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("padding", [10**7, 2**29])
def test_conv2d_output_too_large_to_allocate(padding):
    """numpy's bare 'Unable to allocate ... TiB' named neither the layer nor the shapes."""
    conv = nn.Conv2d(3, 4, 3, padding=padding)
    with pytest.raises(MemoryError, match=r"Conv2d\(3, 4.*cannot allocate .* GiB .*\(1, 3, 8, 8\)"):
        conv(np.zeros((1, 3, 8, 8), np.float32))


@pytest.mark.parametrize(
    "factory,shapes",
    [
        (lambda: nn.Conv2d(1, 8, 3, seed=5), [(8, 1, 28, 28), (5, 1, 27, 26)]),
        (lambda: models.cnn_small(), [(6, 1, 28, 28), (3, 1, 28, 28)]),
    ],
    ids=["conv2d", "cnn_small"],
)
def test_eval_forward_from_two_threads(factory, shapes, rng, conv_path):
    """The README's contract: in eval() mode two threads share one model and both get the
    answers a single thread gets (scratch buffers belong to the calling thread)."""
    import threading

    nnfast.manual_seed(0)
    model = factory()
    model.eval()
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    want = [model(x).copy() for x in xs]
    wrong = []
    start = threading.Barrier(2)

    def work(t):
        start.wait()
        for k in range(60):
            j = (t + k) % len(xs)
            if not np.array_equal(model(xs[j]), want[j]):
                wrong.append((t, k))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert wrong == []


@pytest.mark.parametrize(
    "make, err, what",
    [
        (lambda: models.mlp(dropout=-0.5), ValueError, r"mlp: dropout must be finite and in \[0"),
        (lambda: models.mlp(dropout=float("nan")), ValueError, "mlp: dropout must be finite"),
        (lambda: models.cnn_small(dropout=-1), ValueError, "cnn_small: dropout must be finite"),
        (lambda: models.mlp(dropout="0.5"), TypeError, "mlp: dropout must be a real number"),
        (lambda: models.mlp(256), TypeError, "mlp: hidden must be a list of layer widths"),
        (lambda: models.mlp("256"), TypeError, "mlp: hidden must be a list of layer widths"),
        (lambda: models.mlp([64, 0]), ValueError, "mlp: hidden must be a whole number >= 1"),
        (lambda: models.lenet5(dtype="bogus"), TypeError, "lenet5: data type 'bogus'"),
        (lambda: models.cnn_small(dtype="int8"), TypeError, "cnn_small: nnfast computes in"),
    ],
)
def test_model_factories_name_bad_arguments(make, err, what):
    """A negative or NaN dropout built a model without dropout; mlp('256') said 'out_features
    must be a whole number, got 2'."""
    with pytest.raises(err, match=what):
        make()


@pytest.mark.parametrize("activation", ["prelu", "maxout"])
def test_a_module_activation_takes_the_layers_dtype(activation, rng):
    """PReLU's slope was float32 in a float64 layer: the output came out float32, and backward
    refused the mixed dtypes."""
    conv = nn.Conv2d(1, 4, 3, activation=activation, dtype="float64", seed=0)
    x = rng.standard_normal((2, 1, 5, 5))
    y = conv(x)
    assert y.dtype == np.float64 and all(p.dtype == np.float64 for p in conv.parameters())
    assert nnfast.gradcheck(conv, x)
