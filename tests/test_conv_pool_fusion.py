"""Conv2d (no activation or ReLU) + MaxPool2d fused in a Sequential, forward and backward: the
same bits as the two modules run one after the other (output, argmax, dx and the weight
gradient; the bias gradient up to the order of its sum), on both convolution paths, every ISA,
both dtypes, odd sizes where pooling drops a row, ties and NaN; against a plain numpy
reference; gradcheck; bad arguments to the kernels."""

import numpy as np
import pytest

import nnfast
from nnfast import _convops, nn
from nnfast._native import core
from nnfast.nn import conv as conv_module

# (N, Cin, H, W, Cout, kernel, padding, pool kernel, pool stride, pool padding)
CONFIGS = [
    (2, 1, 28, 28, 6, 5, 0, 2, None, 0),  # LeNet-5's first pair
    (3, 1, 13, 11, 4, 3, 1, 2, None, 0),  # odd output: pooling drops a row and a column
    (1, 3, 9, 10, 5, 3, 0, 2, None, 0),  # batch 1, 3 channels, 7x8 output
    (2, 6, 12, 12, 16, 5, 0, 2, None, 0),  # LeNet-5's second pair
    (2, 3, 10, 9, 3, 3, 1, 3, 2, 1),  # a padded, overlapping window: the generic pooling
    (2, 8, 11, 9, 5, 3, 1, 2, None, 0),  # 8 channels, 3x3: Winograd on the GEMM path
]


@pytest.fixture(params=["gemm", "direct"])
def conv_path(request, monkeypatch):
    monkeypatch.setattr(conv_module, "DIRECT_MAX_K", 0 if request.param == "gemm" else 10**9)
    return request.param


def _pair(cfg, activation, dtype, seed=0):
    n, cin, h, w, cout, k, p, pk, ps, pp = cfg
    conv = nn.Conv2d(cin, cout, k, padding=p, activation=activation, dtype=dtype, seed=seed)
    return nn.Sequential(conv, nn.MaxPool2d(pk, stride=ps, padding=pp))


def _run(model, x, dys):
    """Output, the pool's argmax, and (dx, dW, db) after each of two backward passes (the
    second adds into the parameter gradients)."""
    out = []
    model.zero_grad()
    for dy in dys:
        y = model(x)
        out += [y.copy(), model[1]._argmax.copy()]
        dx = model.backward(dy.astype(y.dtype))
        out += [dx, model[0].weight.grad.copy(), model[0].bias.grad.copy()]
    return out


def _fused_and_not(cfg, activation, dtype, x, monkeypatch, rng, model=None):
    model = model or _pair(cfg, activation, dtype)
    shape = model.output_shape(x.shape)
    dys = [rng.standard_normal(shape) for _ in range(2)]
    results = []
    for fuse in (True, False):
        monkeypatch.setattr(conv_module, "FUSE_POOL", fuse)
        results.append(_run(model, x, dys))
        # the first run did fuse both ways, or the two runs prove nothing
        assert model[0]._pooled == fuse and model[0].ran_fused(model[1]) == fuse
    return results


def _assert_same_bits(results):
    """Every result the same to the bit but the bias gradients (every fifth, see _run): the
    fused backward sums them over the pooled gradient, in another order."""
    for i, (a, b) in enumerate(zip(*results)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        if i % 5 == 4:
            np.testing.assert_allclose(a, b, rtol=1e-5 if a.dtype == np.float32 else 1e-12,
                                       atol=1e-6 if a.dtype == np.float32 else 1e-14)  # fmt: skip
            continue
        assert a.tobytes() == b.tobytes(), f"result {i} differs"


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", None])
def test_fused_equals_unfused(cfg, dtype, activation, conv_path, isa, rng, monkeypatch):
    x = rng.standard_normal(cfg[:4]).astype(dtype)
    results = _fused_and_not(cfg, activation, dtype, x, monkeypatch, rng)
    _assert_same_bits(results)


@pytest.mark.parametrize("cfg", [CONFIGS[3], CONFIGS[5]], ids=["gemm", "winograd"])
def test_fused_equals_unfused_in_bf16(cfg, bf16_path, rng, monkeypatch):
    """Under set_matmul_precision("bf16") too (the bf16 GEMMs and Winograd's packed route read
    the output gradient the fused backward builds)."""
    monkeypatch.setattr(conv_module, "DIRECT_MAX_K", 0)
    x = rng.standard_normal(cfg[:4]).astype(np.float32)
    with nnfast.matmul_precision("bf16"):
        results = _fused_and_not(cfg, "relu", "float32", x, monkeypatch, rng)
    _assert_same_bits(results)


def test_the_sequential_runs_the_pair_fused(rng, monkeypatch, conv_path):
    """One C call with the pooling's two arguments; two modules' calls with FUSE_POOL off."""
    calls = []
    real = core.conv2d_gemm if conv_path == "gemm" else core.conv2d_direct
    monkeypatch.setattr(core, real.__name__, lambda *a: calls.append(len(a)) or real(*a))
    base = 8 if conv_path == "gemm" else 6  # the arguments without a pooling
    x = rng.standard_normal(CONFIGS[1][:4]).astype(np.float32)
    model = _pair(CONFIGS[1], "relu", "float32")
    model(x)
    assert calls == [base + 2]
    monkeypatch.setattr(conv_module, "FUSE_POOL", False)
    calls.clear()
    model(x)
    assert calls == [base]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[3], CONFIGS[5]], ids=["odd", "16", "8x3x3"])
def test_ties_and_nan_pick_what_max_pool2d_picks(dtype, cfg, conv_path, isa, rng, monkeypatch):
    """A zero weight makes every window a tie (the first element wins); a bias below 0 makes
    ReLU's output 0 everywhere (ties, and no gradient through ReLU); NaN in x reaches the
    output of the windows that read it (NaN wins). On the GEMM path 16 output channels take
    the implicit kernels and 8 input channels 3x3 Winograd (float32), which pool their
    output's rows along channels, going by planes when a NaN is among them."""
    for bias, nan in ((0.5, False), (-0.5, False), (0.5, True)):
        model = _pair(cfg, "relu", dtype)
        model[0].weight.data[...] = 0
        model[0].bias.data[...] = bias
        x = rng.standard_normal(cfg[:4]).astype(dtype)
        if nan:
            model[0].weight.data[:, :, 1, 1] = 1.0
            x[0, 0, 4, 5] = np.nan
        results = _fused_and_not(cfg, "relu", dtype, x, monkeypatch, rng, model)
        _assert_same_bits(results)
        y, argmax = results[0][:2]
        if nan:
            assert np.isnan(y).any()
        elif bias > 0:
            assert (argmax.reshape(-1, argmax.shape[-1]) % 2 == 0).all()  # the first of the row


def test_fused_output_matches_a_numpy_reference(rng):
    """The pooled output and argmax against max pooling written with numpy on the unfused
    convolution's output (2x2 windows; the first of equal values wins)."""
    cfg = CONFIGS[1]
    model = _pair(cfg, "relu", "float64")
    x = rng.standard_normal(cfg[:4])
    y = model(x)
    full = np.maximum(model[0].forward(x), 0)  # the convolution alone, unfused
    n, c, ho, wo = full.shape
    hp, wp = ho // 2, wo // 2
    win = full[:, :, : 2 * hp, : 2 * wp].reshape(n, c, hp, 2, wp, 2).transpose(0, 1, 2, 4, 3, 5)
    win = win.reshape(n, c, hp, wp, 4)
    first = win.argmax(axis=-1)  # numpy's argmax: the first maximum
    np.testing.assert_array_equal(y, win.max(axis=-1))
    oh, ow = np.meshgrid(np.arange(hp), np.arange(wp), indexing="ij")
    want = (2 * oh + first // 2) * wo + 2 * ow + first % 2
    model(x)
    np.testing.assert_array_equal(model[1]._argmax, want)


@pytest.mark.parametrize("activation", ["relu", None])
def test_fused_pair_gradcheck(activation, rng, conv_path):
    model = _pair(CONFIGS[1], activation, "float64", seed=3)
    x = rng.standard_normal((2, *CONFIGS[1][1:4]))
    assert nnfast.gradcheck(model, x)


def test_other_activations_and_followers_run_unfused(rng):
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    pool = nn.MaxPool2d(2)
    assert nn.Conv2d(1, 2, 3, activation="tanh").forward_fused(x, pool) is None
    assert nn.Conv2d(1, 2, 3).forward_fused(x, nn.AvgPool2d(2)) is None
    assert nn.Linear(4, 4).forward_fused(x, pool) is None
    model = nn.Sequential(nn.Conv2d(1, 2, 3, activation="tanh", seed=1), nn.MaxPool2d(2))
    y = model(x)
    np.testing.assert_array_equal(y, model[1](model[0](x)))


class _DoubledConv(nn.Conv2d):
    def forward(self, x):
        return 2 * super().forward(x)


class _HalvedPool(nn.MaxPool2d):
    def forward(self, x):
        return super().forward(x) / 2


def _doubled_forward(module):
    """``module`` with its instance's forward replaced by one that doubles the output."""
    forward = module.forward
    module.forward = lambda x: 2 * forward(x)
    return module


@pytest.mark.parametrize(
    "make",
    [
        lambda: (_DoubledConv(1, 2, 3, activation="relu", seed=1), nn.MaxPool2d(2)),
        lambda: (nn.Conv2d(1, 2, 3, activation="relu", seed=1), _HalvedPool(2)),
        lambda: (_doubled_forward(nn.Conv2d(1, 2, 3, activation="relu", seed=1)), nn.MaxPool2d(2)),
        lambda: (nn.Conv2d(1, 2, 3, activation="relu", seed=1), _doubled_forward(nn.MaxPool2d(2))),
    ],
    ids=["conv subclass", "pool subclass", "conv instance", "pool instance"],
)
def test_a_replaced_forward_is_never_skipped(make, rng):
    # a fused pass runs Conv2d's and MaxPool2d's own forward: it must not stand in for another
    conv, pool = make()
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    assert not conv.fuses_with(pool)
    y = nn.Sequential(conv, pool)(x)
    np.testing.assert_array_equal(y, pool(conv(x)))


def test_pool_larger_than_the_output_is_a_clear_error(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, activation="relu"), nn.MaxPool2d(5))
    with pytest.raises(ValueError, match="MaxPool2d"):
        model(rng.standard_normal((1, 1, 5, 5)).astype(np.float32))


@pytest.mark.parametrize("kernel", ["conv2d_gemm", "conv2d_direct"])
def test_kernel_rejects_bad_pooling_arguments(kernel, rng):
    x = rng.standard_normal((2, 1, 9, 9)).astype(np.float32)
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    geom = _convops.geometry(3)
    pool = _convops.pool_geometry(2, None, 0, 1, "test")
    y = np.empty((2, 3, 3, 3), np.float32)  # the 7x7 output pooled
    fn = getattr(core, kernel)
    head = (x, w, None, geom, -1, 0.0, False) if kernel == "conv2d_gemm" else (x, w, None, geom, 1)
    fn(*head, y, pool, np.empty(y.shape, np.int32))  # fine
    with pytest.raises(TypeError, match="argmax"):
        fn(*head, y, pool, None)
    with pytest.raises(ValueError, match=f"{kernel}: argmax"):
        fn(*head, y, pool, np.empty(y.shape, np.int64))
    with pytest.raises(ValueError, match="argmax"):
        fn(*head, y, pool, np.empty((2, 3, 3, 2), np.int32))
    read_only = np.empty(y.shape, np.int32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="argmax"):
        fn(*head, y, pool, read_only)
    with pytest.raises(ValueError, match="inconsistent"):  # y shaped like the unpooled output
        fn(*head, np.empty((2, 3, 7, 7), np.float32), pool, np.empty((2, 3, 7, 7), np.int32))
    big = _convops.pool_geometry(8, None, 0, 1, "test")  # larger than the 7x7 output
    with pytest.raises(ValueError):
        fn(*head, y, big, np.empty(y.shape, np.int32))


@pytest.mark.parametrize("kernel", ["gemm", "direct_weight", "direct_input"])
def test_backward_kernels_reject_bad_pooling_arguments(kernel, rng):
    """The backward kernels with a pooling's gradient: bad argmax arrays, indices out of the
    output plane, and ReLU's output given with a pooling are clear errors."""
    x = rng.standard_normal((2, 1, 9, 9)).astype(np.float32)
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    geom = _convops.geometry(3)
    pool = _convops.pool_geometry(2, None, 0, 1, "test")
    dy = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)  # the 7x7 output pooled
    argmax = np.zeros(dy.shape, np.int32)
    gw, dx = np.empty_like(w), np.empty_like(x)
    name = {"gemm": "conv2d_gemm_backward", "direct_weight": "conv2d_direct_backward_weight",
            "direct_input": "conv2d_direct_backward_input"}[kernel]  # fmt: skip

    def call(dy, pool, argmax, y=None):
        if kernel == "gemm":
            assert y is None
            return core.conv2d_gemm_backward(x, dy, w, geom, False, False, gw, dx, pool, argmax)
        if kernel == "direct_weight":
            return core.conv2d_direct_backward_weight(x, dy, geom, False, gw, y, None, pool,
                                                      argmax)  # fmt: skip
        return core.conv2d_direct_backward_input(dy, w, geom, dx, y, pool, argmax)

    call(dy, pool, argmax)  # fine
    for bad in (-2, 49, 2**31 - 1):  # the output plane is 7x7
        wrong = argmax.copy()
        wrong[1, 2, 0, 1] = bad
        with pytest.raises(ValueError, match=f"{name}: argmax is out of range"):
            call(dy, pool, wrong)
    call(dy, pool, np.full(dy.shape, -1, np.int32))  # -1 (a window of padding) adds nothing
    with pytest.raises(TypeError, match="argmax"):
        call(dy, pool, None)
    with pytest.raises(ValueError, match="argmax"):
        call(dy, pool, argmax.astype(np.int64))
    with pytest.raises(ValueError, match="inconsistent"):  # dy shaped like the unpooled output
        call(rng.standard_normal((2, 3, 7, 7)).astype(np.float32), pool,
             np.zeros((2, 3, 7, 7), np.int32))  # fmt: skip
    if kernel != "gemm":
        with pytest.raises(ValueError, match="y must be None"):
            call(dy, pool, argmax, y=np.ones_like(dy))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", ["gemm", "implicit", "direct"])
@pytest.mark.parametrize("pooling", ["3x3/2 pad 1", "2x2 own", "2x2 one foreign", "2x2 random"])
def test_backward_kernels_equal_the_scatter_then_the_kernel(path, dtype, pooling, isa, rng):
    """A pooling's gradient passed to the backward kernels gives the bits of scattering it
    with max_pool2d_backward first: overlapping windows add, -1 adds nothing, -0 gives +0, a
    2x2 pooling's indices in their own windows or not; 8 channels in float32 run Winograd,
    16 output channels the implicit kernels, which unpool along channels."""
    n, c, h, wd = 3, 8 if path == "gemm" else 2, 11, 10
    cout = 16 if path == "implicit" else 5
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((cout, c, 3, 3)).astype(dtype)
    geom = _convops.geometry(3, padding=1)
    ho, wo = h, wd
    if pooling.startswith("3x3"):
        pool = _convops.pool_geometry(3, 2, 1, 1, "test")
        hp, wp = (ho + 2 - 3) // 2 + 1, (wo + 2 - 3) // 2 + 1
    else:
        pool = _convops.pool_geometry(2, None, 0, 1, "test")
        hp, wp = ho // 2, wo // 2  # 11 rows: the last is no window's
    dy = rng.standard_normal((n, cout, hp, wp)).astype(dtype)
    dy[0, 0, 0, :2] = -0.0
    argmax = rng.integers(-1, ho * wo, dy.shape).astype(np.int32)
    if pooling in ("2x2 own", "2x2 one foreign"):  # each index in its own window
        oh, ow = np.meshgrid(np.arange(hp), np.arange(wp), indexing="ij")
        k = rng.integers(0, 4, dy.shape)
        argmax = ((2 * oh + k // 2) * wo + 2 * ow + k % 2).astype(np.int32)
        if pooling == "2x2 one foreign":
            argmax[1, 2, 3, 1] = argmax[1, 2, 0, 0]
    full = np.empty((n, cout, ho, wo), dtype)
    core.max_pool2d_backward(dy, argmax, pool, full)
    # (dW, db, dx) each way; db only from the direct kernel
    got, want = [np.zeros_like(w), np.zeros(cout, dtype)], [np.zeros_like(w), np.zeros(cout, dtype)]
    dx_got, dx_want = np.empty_like(x), np.empty_like(x)
    if path != "direct":
        core.conv2d_gemm_backward(x, dy, w, geom, False, False, got[0], dx_got, pool, argmax)
        core.conv2d_gemm_backward(x, full, w, geom, False, False, want[0], dx_want)
    else:
        core.conv2d_direct_backward_weight(x, dy, geom, False, got[0], None, got[1], pool,
                                           argmax)  # fmt: skip
        core.conv2d_direct_backward_weight(x, full, geom, False, want[0], None, want[1])
        core.conv2d_direct_backward_input(dy, w, geom, dx_got, None, pool, argmax)
        core.conv2d_direct_backward_input(full, w, geom, dx_want)
    for a, b in zip([*got, dx_got], [*want, dx_want]):
        assert a.tobytes() == b.tobytes()
