"""Winograd F(2x2, 3x3): float32 3x3, stride-1 convolutions (csrc/conv_winograd_impl.inc)
against float64 window sums, forward and both gradients, fp32 and bf16, every ISA path. The
kernels run with the hook at "always", so that layers of fewer than 8 input channels (which
"auto", the default, leaves on the GEMMs) exercise them too.

Two Python threads on one such layer: test_conv_layers.py's test_eval_forward_from_two_threads
(cnn_small's conv2, 32 input channels, runs here); thread counts: test_threads.py.

Error bounds, with scale the same sums taken over absolute values (sum |x||w| per output for
the forward, likewise for the gradients): in fp32 |got - want| <= 1e-5 * scale elementwise
on these shapes (measured below 3e-7, as on the GEMM path; an output of few products beside
large ones can miss it, csrc/conv_winograd_impl.inc says by how much); in bf16
|got - want| <= 2e-2 * max(scale) over the array (measured below 6e-3: the transformed
operands are rounded to bf16, and the transforms' cancellations then no longer cancel
exactly, so a weight-gradient entry of few products can be off by a fraction of its
neighbours' size). A wrong or missing tile is an error of order 1.
"""

import numpy as np
import pytest

import nnfast
from nnfast import _convops, nn
from nnfast._native import core

# (N, C_in, H, W, C_out, padding): 1x1 and 2x2 images, odd and prime sizes, padding 0, 1, 2
# and uneven, batch 1, C_in 1 and 3, C_out off the vector widths; the last ones make several
# groups of images (a partial last one) and run on the threads
CASES = [
    (1, 1, 1, 1, 1, 1),
    (2, 3, 2, 2, 5, 1),
    (1, 3, 3, 3, 2, 0),
    (3, 1, 5, 7, 17, 0),
    (2, 3, 13, 11, 3, 2),
    (1, 2, 7, 5, 9, (1, 2)),
    (2, 4, 6, 5, 3, 3),
    (9, 16, 14, 14, 33, 1),
    (7, 5, 23, 17, 6, (2, 0)),
    (3, 19, 9, 7, 8, 1),  # C_in past a vector width: the transforms' vector body and tail
    (2, 9, 6, 6, 16, 2),
]


@pytest.fixture
def always():
    before = core.conv_winograd("always")
    yield
    core.conv_winograd(before)


def reference(x, w, b, dy, padding):
    """float64 (y, dW, dx) as sums over the 9 taps of the padded input."""
    ph, pw = padding
    n, c, h, wd = x.shape
    ho, wo = h + 2 * ph - 2, wd + 2 * pw - 2
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)
    y = np.zeros((n, w.shape[0], ho, wo)) + b[None, :, None, None]
    dw = np.zeros(w.shape)
    for i in range(3):
        for j in range(3):
            win = xp[:, :, i : i + ho, j : j + wo]
            y += np.einsum("nchw,oc->nohw", win, w[:, :, i, j])
            dw[:, :, i, j] = np.einsum("nchw,nohw->oc", win, dy)
            dxp[:, :, i : i + ho, j : j + wo] += np.einsum("nohw,oc->nchw", dy, w[:, :, i, j])
    return y, dw, dxp[:, :, ph : ph + h, pw : pw + wd]


def run(x, w, b, dy, geom, bf16, accumulate=False, dw=None):
    y = np.full((x.shape[0], w.shape[0], *dy.shape[2:]), np.nan, np.float32)
    dw = np.full(w.shape, np.nan, np.float32) if dw is None else dw
    dx = np.full(x.shape, np.nan, np.float32)
    core.conv2d_gemm(x, w, b, geom, -1, 0.0, bf16, y)
    core.conv2d_gemm_backward(x, dy, w, geom, accumulate, bf16, dw, dx)
    return y, dw, dx


def draw(rng, case):
    n, c, h, wd, cout, padding = case
    ph, pw = padding if isinstance(padding, tuple) else (padding, padding)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((cout, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    dy = rng.standard_normal((n, cout, h + 2 * ph - 2, wd + 2 * pw - 2)).astype(np.float32)
    return x, w, b, dy, (ph, pw), _convops.geometry(3, 1, (ph, pw), 1)


@pytest.mark.parametrize("case", CASES)
def test_winograd_matches_float64_window_sums(case, isa, rng, always):
    check_window_sums(rng, case, False)


@pytest.mark.parametrize("case", CASES)
def test_winograd_matches_float64_window_sums_in_bf16(case, bf16_path, rng, always):
    """Every bf16 kernel, AMX's tile kernel among them, on the packed route."""
    check_window_sums(rng, case, True)


def check_window_sums(rng, case, bf16):
    x, w, b, dy, padding, geom = draw(rng, case)
    got = run(x, w, b, dy, geom, bf16)
    want = reference(*(a.astype(np.float64) for a in (x, w, b, dy)), padding)
    scale = reference(*(np.abs(a).astype(np.float64) for a in (x, w, b, dy)), padding)
    for name, g, r, s in zip(("y", "dW", "dx"), got, want, scale):
        bound = 2e-2 * s.max() if bf16 else 1e-5 * s + 1e-30
        assert np.all(np.abs(g - r) <= bound), name


def test_winograd_differs_from_the_gemm_path_only_by_rounding(rng, always):
    """The hook really switches paths, and both agree."""
    x, w, b, dy, _, geom = draw(rng, CASES[7])
    wino = run(x, w, b, dy, geom, False)
    core.conv_winograd("off")
    gemm = run(x, w, b, dy, geom, False)
    core.conv_winograd("always")
    for a, g in zip(wino, gemm):
        assert a.tobytes() != g.tobytes()
        np.testing.assert_allclose(a, g, rtol=1e-4, atol=1e-3 * np.abs(g).max())
    for a, g in zip(run(x, w, b, dy, geom, True), wino):  # bf16 did happen
        assert np.abs(a - g).max() > 1e-4 * np.abs(g).max()


@pytest.mark.parametrize("c_in,winograd", [(4, False), (7, False), (8, True), (16, True)])
def test_auto_runs_winograd_from_8_input_channels(c_in, winograd, rng, always):
    x, w, b, dy, _, geom = draw(rng, (3, c_in, 9, 10, 5, 1))
    results = {}
    for mode in ("auto", "off", "always"):  # the fixture puts the mode back
        core.conv_winograd(mode)
        results[mode] = b"".join(a.tobytes() for a in run(x, w, b, dy, geom, False))
    assert results["auto"] == results["always" if winograd else "off"]
    assert results["off"] != results["always"]


def test_winograd_backward_accumulates_into_the_weight_gradient(rng, always):
    x, w, b, dy, _, geom = draw(rng, CASES[8])
    _, dw, dx = run(x, w, b, dy, geom, False)
    _, dw2, dx2 = run(x, w, b, dy, geom, False, accumulate=True, dw=dw.copy())
    np.testing.assert_allclose(dw2, 2 * dw, rtol=1e-6, atol=1e-6 * np.abs(dw).max())
    assert dx2.tobytes() == dx.tobytes()


@pytest.mark.parametrize("case", [CASES[4], CASES[7]])
def test_winograd_gradients_are_the_adjoints_of_its_forward(case, rng, always):
    """Gradcheck-style, in fp32 where central differences drown in rounding: <dy, conv(x)> =
    <dx, x> = <dW, w> for the layer without bias, each side from the Winograd kernels."""
    x, w, _, dy, _, geom = draw(rng, case)
    y, dw, dx = run(x, w, None, dy, geom, False)
    lhs = np.vdot(dy.astype(np.float64), y.astype(np.float64))
    for g, v in ((dx, x), (dw, w)):
        rhs = np.vdot(g.astype(np.float64), v.astype(np.float64))
        assert abs(lhs - rhs) <= 1e-5 * np.abs(dy).sum() * np.abs(y).max()


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_conv2d_layer_on_winograd_matches_float64(activation, rng):
    """Conv2d (3x3, padding 1, 8 channels in) in float32 runs Winograd, with the fused
    activation and bias gradient, and agrees with the same layer in float64 (which stays on
    the GEMM path)."""
    layers = {
        dt: nn.Conv2d(8, 10, 3, padding=1, activation=activation, dtype=dt, seed=4)
        for dt in ("float32", "float64")
    }
    x = rng.standard_normal((5, 8, 9, 8))
    dy = rng.standard_normal((5, 10, 9, 8))
    out = {}
    for dt, conv in layers.items():
        conv.zero_grad()
        y = conv(x.astype(dt))
        dx = conv.backward(dy.astype(dt))
        out[dt] = (y, dx, conv.weight.grad, conv.bias.grad)
    for a, b in zip(out["float32"], out["float64"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_winograd_refuses_a_bad_activation_id(rng, always):
    x, w, b, dy, _, geom = draw(rng, CASES[1])
    y = np.empty((2, 5, 2, 2), np.float32)
    with pytest.raises(ValueError):
        core.conv2d_gemm(x, w, b, geom, 10**6, 0.0, False, y)


def test_an_infinite_input_gives_nan_where_the_gemm_path_gives_inf(always):
    """The documented difference (conv.h): the transforms take differences of pixels, so an
    infinite pixel makes inf - inf in every output whose tile reads it."""
    x = np.zeros((1, 8, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.inf
    w = np.ones((1, 8, 3, 3), np.float32)
    geom = _convops.geometry(3, 1, (0, 0), 1)
    y = np.empty((1, 1, 2, 2), np.float32)
    core.conv2d_gemm(x, w, None, geom, -1, 0.0, False, y)
    assert np.isnan(y).all()
    core.conv_winograd("off")
    core.conv2d_gemm(x, w, None, geom, -1, 0.0, False, y)
    assert np.isposinf(y).all()


# the bf16 route with packed operands (conv_winograd_bf16.inc): several transform blocks of
# odd and of even tiles per image (25, 49, 16 tiles) with a shorter last block, a block of
# one image past 100 tiles, and a weight gradient (then a forward) deeper than the bf16
# kernels' K blocks
PACKED_CASES = [
    *CASES,
    (13, 8, 10, 9, 20, 1),
    (30, 9, 14, 14, 33, 1),
    (11, 12, 7, 7, 40, 1),
    (5, 40, 28, 28, 24, 1),
    (1, 8, 66, 66, 4, 1),
    (1, 1031, 4, 3, 3, 1),
]


def restoring(hook):
    """A fixture that leaves a route hook (core.conv_winograd_packed, ..._fused) as it was."""

    @pytest.fixture
    def fixture():
        before = hook()
        yield
        hook(before)

    return fixture


packed = restoring(core.conv_winograd_packed)
fused = restoring(core.conv_winograd_fused)


def assert_pooled_routes_agree(hook, conv, pool, x, g):
    """The layer with its pooling fused, one thread, forward and backward with a route hook off
    and on: the same bits. Returns {on: (y, dx, dW, db)}."""
    before = nnfast.get_num_threads()
    nnfast.set_num_threads(1)
    results = {}
    try:
        for on in (False, True):
            hook(on)
            conv.zero_grad()
            y = conv.forward_fused(x, pool)
            dx = conv.backward(pool.backward(g))
            results[on] = (y, dx, conv.weight.grad.copy(), conv.bias.grad.copy())
    finally:
        nnfast.set_num_threads(before)
    for got, want in zip(results[True], results[False]):
        assert got.tobytes() == want.tobytes()
    return results


def assert_routes_agree(hook, case, rng, bf16):
    """The forward, dW (accumulated too) and dx with a route hook off and on: the same bits."""
    x, w, b, dy, _, geom = draw(rng, case)
    results = {}
    for on in (False, True):
        hook(on)
        y, dw, dx = run(x, w, b, dy, geom, bf16)
        _, dw2, _ = run(x, w, b, dy, geom, bf16, accumulate=True, dw=dw + 1)
        results[on] = (y, dw, dx, dw2)
    for name, got, want in zip(("y", "dW", "dx", "dW +="), results[True], results[False]):
        assert got.tobytes() == want.tobytes(), name


@pytest.mark.parametrize("case", PACKED_CASES)
def test_bf16_packed_operands_give_the_bits_of_the_bf16_gemm(
    case, bf16_path, threads, rng, always, packed
):
    """Winograd's bf16 GEMMs on operands the convolution packs block by block give what
    nnf_gemm_bf16 gives on whole groups, to the bit: forward, dW (accumulated too) and dx.
    With one thread every case takes the packed route; with two, a job of too few groups to
    share that is big enough to thread leaves the threads to the GEMMs, on the other route.
    On a CPU with AVX512_BF16 the avx512 path's kernel reads V's tiles as rows of pairs; AMX's
    tile kernel takes its own layouts of A and its padded depth."""
    assert_routes_agree(core.conv_winograd_packed, case, rng, True)


def test_bf16_packed_operands_give_the_bits_of_the_bf16_gemm_pooled(bf16_path, rng, packed):
    """The same with the bias, ReLU and 2x2 max pooling fused into the forward (cnn_small's
    conv2 on 13 images, one thread). On AMX's tile kernel its bits are not those of the vector
    kernel: the convolution did run on the tiles."""
    conv = nn.Conv2d(32, 64, 3, padding=1, activation="relu", seed=2)
    pool = nn.MaxPool2d(2)
    x = rng.standard_normal((13, 32, 14, 14)).astype(np.float32)
    g = rng.standard_normal((13, 64, 7, 7)).astype(np.float32)
    with nnfast.matmul_precision("bf16"):
        results = assert_pooled_routes_agree(core.conv_winograd_packed, conv, pool, x, g)
        if bf16_path[1]:
            core.set_bf16_tiles(False)  # the fixture turns them back on
            vector = conv.forward_fused(x, pool)
    if bf16_path[1]:
        assert results[True][0].tobytes() != vector.tobytes()


FUSED_CASES = [*PACKED_CASES, (1, 1031, 3, 3, 20, 1), (2, 20, 5, 5, 1031, 1)]  # K of 2 blocks


@pytest.mark.parametrize("case", FUSED_CASES)
def test_fused_routes_give_the_bits_of_the_gemm_on_whole_groups(
    case, isa, threads, rng, always, fused
):
    """float32 taken a few tiles at a time (the forward, on U^T packed once per call, and dx)
    and dW's products as micro-kernel calls give what the GEMMs on whole groups give, to the
    bit, on every ISA path: the same micro-kernel sums the same products in the same K blocks
    (C_in past one block forward, C_out past one for dx). With one thread every case takes
    the fused routes; with two, a job of too few groups to share leaves the threads to the
    GEMMs."""
    assert_routes_agree(core.conv_winograd_fused, case, rng, False)


def test_fused_routes_give_the_bits_of_the_gemm_on_whole_groups_pooled(isa, rng, fused):
    """The same with the bias, ReLU and 2x2 max pooling fused into the layer (cnn_small's
    conv2 on 13 images, one thread), forward and backward, and the forward still matches
    float64 window sums."""
    conv = nn.Conv2d(32, 64, 3, padding=1, activation="relu", seed=2)
    pool = nn.MaxPool2d(2)
    x = rng.standard_normal((13, 32, 14, 14)).astype(np.float32)
    g = rng.standard_normal((13, 64, 7, 7)).astype(np.float32)
    results = assert_pooled_routes_agree(core.conv_winograd_fused, conv, pool, x, g)
    results = {on: r[0] for on, r in results.items()}
    w = conv.weight.data.astype(np.float64)
    zeros = np.zeros((13, 64, 14, 14))
    y = reference(x.astype(np.float64), w, conv.bias.data.astype(np.float64), zeros, (1, 1))[0]
    y = np.maximum(y, 0).reshape(13, 64, 7, 2, 7, 2).max(axis=(3, 5))
    np.testing.assert_allclose(results[True], y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["conv_winograd_packed", "conv_winograd_fused"])
def test_winograd_route_hooks_take_a_bool(name, packed, fused):
    hook = getattr(core, name)
    with pytest.raises(TypeError, match="bool"):
        hook(1)
    assert hook(False) is True
    assert hook(None) is False


def test_winograd_hook_takes_a_mode():
    with pytest.raises(ValueError, match="mode"):
        core.conv_winograd(True)
    assert core.conv_winograd(None) == "auto"
