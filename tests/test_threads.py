"""Every parallel kernel at 1, 2, 3 and 7 threads equals its reference and is bit-identical
from run to run at a given count; the same beside a process that keeps a core busy, from two
Python threads at once, in a forked child and under OMP_THREAD_LIMIT=1.

Correctness only: nothing here is timed. Outputs are filled with NaN before each call where
the caller owns them, so a chunk that is never written shows up as NaN, not as stale data.
Problem sizes are just above what 7 threads need to split the work (about 50k multiply-adds
per thread), so every count really runs in parallel.
"""

import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest
from helpers import round_bf16

import nnfast
import nnfast.functional as F
from nnfast import _convops
from nnfast._native import core
from nnfast.nn import Parameter
from nnfast.optim import AdamW

COUNTS = (1, 2, 3, 7)
REPEATS = 3


@contextlib.contextmanager
def num_threads(n):
    before = nnfast.get_num_threads()
    nnfast.set_num_threads(n)
    try:
        yield
    finally:
        nnfast.set_num_threads(before)


@contextlib.contextmanager
def gemm_driver(name):
    """Force the packed variant's driver ("small" reads A in place, "goto" packs both)."""
    core.force_gemm_driver(name)
    try:
        yield
    finally:
        core.force_gemm_driver(None)


def nan(shape, dtype=np.float32):
    return np.full(shape, np.nan, dtype)


# --- the cases ----------------------------------------------------------------------------------
# Each builder takes an rng and returns (run, want, tol): run() calls the kernel on fixed inputs
# and returns a tuple of fresh results; want is the float64 reference of each; tol = (rtol, atol).


def _gemm(variant, m, k, n, trans_a=False, driver=None, epilogue=False):
    def build(rng):
        a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32) if epilogue else None
        want = (a.T if trans_a else a).astype(np.float64) @ b
        if epilogue:
            want = np.maximum(want + bias, 0)

        def run():
            out = nan((m, n))
            ctx = gemm_driver(driver) if driver else contextlib.nullcontext()
            with ctx:
                nnfast.gemm(a, b, out, trans_a=trans_a, variant=variant, bias=bias,
                            activation="relu" if epilogue else None)  # fmt: skip
            return (out,)

        return run, (want,), (0, 1e-5 * k)

    return build


def _act(name, shape, bias):
    ref_fwd = {"relu": lambda u: np.maximum(u, 0), "sigmoid": lambda u: 1 / (1 + np.exp(-u))}
    ref_bwd = {"relu": lambda y: (y > 0).astype(np.float64), "sigmoid": lambda y: y * (1 - y)}

    def build(rng):
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        b = rng.standard_normal(shape[1]).astype(np.float32) if bias else None
        bshape = (1, shape[1]) + (1,) * (len(shape) - 2)
        u = x.astype(np.float64) + (b.reshape(bshape) if bias else 0)
        y_want = ref_fwd[name](u)
        y_in = y_want.astype(np.float32)  # both take their backward from the output y
        dx_want = dy * ref_bwd[name](y_in.astype(np.float64))
        axes = (0, *range(2, len(shape)))
        want = (y_want, dx_want) + ((dx_want.sum(axis=axes),) if bias else ())

        def run():
            y, dx = nan(shape), nan(shape)
            if bias:
                F.bias_act(x, b, name, out=y)
                dx_got, db = F.bias_act_backward(dy, y_in, name, out=dx)
                return y, dx_got, db
            getattr(F, name)(x, out=y)
            getattr(F, name + "_backward")(dy, y_in, out=dx)
            return y, dx

        return run, want, (1e-5, 1e-6 * (1 + np.prod(shape) / shape[1]) ** 0.5)

    return build


def _softmax(rng):
    x = rng.standard_normal((4096, 100)).astype(np.float32)
    e = np.exp(x - x.max(axis=1, keepdims=True).astype(np.float64))
    want = e / e.sum(axis=1, keepdims=True)

    def run():
        y = nan(x.shape)
        F.softmax(x, out=y)
        return (y,)

    return run, (want,), (1e-5, 1e-7)


def _softmax_xent(rng, loss_values=False):
    rows, k = 4096, 100
    logits = rng.standard_normal((rows, k)).astype(np.float32)
    labels = rng.integers(0, k, rows)
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(rows), labels].mean()
    grad = np.exp(logp)
    grad[np.arange(rows), labels] -= 1
    grad /= rows

    def run():  # the fused call CrossEntropyLoss makes, and forward and backward apart
        g, g2 = nan(logits.shape), nan(logits.shape)
        value, _ = F.softmax_cross_entropy_with_grad(logits, labels, out=g)
        F.softmax_cross_entropy_backward(logits, labels, out=g2)
        if loss_values:
            return np.float64(value), np.float64(F.softmax_cross_entropy(logits, labels))
        return g, g2

    return run, ((loss, loss) if loss_values else (grad, grad)), (1e-5, 1e-8)


def _pair_loss(kind, loss_value=False):
    def build(rng):
        n = 1 << 18
        x = rng.standard_normal(n).astype(np.float32)
        x64 = x.astype(np.float64)
        if kind == "mse":
            t = rng.standard_normal(n).astype(np.float32)
            fwd, bwd = F.mse_loss, F.mse_loss_backward
            loss, grad = ((x64 - t) ** 2).mean(), 2 * (x64 - t) / n
        else:
            t = rng.random(n).astype(np.float32)
            fwd = F.binary_cross_entropy_with_logits
            bwd = F.binary_cross_entropy_with_logits_backward
            loss = (np.logaddexp(0, x64) - t * x64).mean()
            grad = (1 / (1 + np.exp(-x64)) - t) / n

        def run():
            if loss_value:
                return (np.float64(fwd(x, t)),)
            g = nan(n)
            bwd(x, t, out=g)
            return (g,)

        return run, ((loss,) if loss_value else (grad,)), (1e-5, 1e-11)

    return build


GEOM = dict(kernel_size=3, stride=1, padding=1, dilation=1)
CONV_X = (16, 8, 28, 28)  # im2col: (12544, 72)


def _windows(x, geom):
    """(N, C, Ho, Wo, KH, KW) strided view of the zero-padded windows of x."""
    kh, kw, sh, sw, ph, pw, dh, dw = geom
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    v = np.lib.stride_tricks.sliding_window_view(xp, span, axis=(2, 3))
    return v[:, :, ::sh, ::sw, ::dh, ::dw]


def _im2col_reference(x, geom, cols):
    cols[...] = _windows(x, geom).transpose(0, 2, 3, 1, 4, 5).reshape(cols.shape)


def _col2im_reference(cols, geom, dx):
    """The adjoint of im2col: each window's column entries added back where they came from."""
    kh, kw, sh, sw, ph, pw, dh, dw = geom
    n, c, h, w = dx.shape
    ho, wo = _convops.output_shape(h, w, geom)
    r = cols.reshape(n, ho, wo, c, kh, kw)
    padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dx.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * ho, sh)
            padded[:, :, rows, j * dw : j * dw + sw * wo : sw] += r[..., i, j].transpose(0, 3, 1, 2)
    dx[...] = padded[:, :, ph : ph + h, pw : pw + w]


def _im2col(rng):
    x = rng.standard_normal(CONV_X).astype(np.float32)
    geom = _convops.geometry(**GEOM)
    want = np.empty((16 * 28 * 28, 8 * 9))
    _im2col_reference(x.astype(np.float64), geom, want)

    def run():
        cols = nan(want.shape)
        F.im2col(x, **GEOM, out=cols)
        return (cols,)

    return run, (want,), (0, 0)


def _col2im(rng):
    cols = rng.standard_normal((16 * 28 * 28, 8 * 9)).astype(np.float32)
    want = np.empty(CONV_X)
    _col2im_reference(cols.astype(np.float64), _convops.geometry(**GEOM), want)

    def run():
        dx = nan(CONV_X)
        F.col2im(cols, CONV_X, **GEOM, out=dx)
        return (dx,)

    return run, (want,), (1e-6, 1e-6)


def _conv_reference(x, w, b, dy, relu):
    """float64 (y, dW, dx) of a 3x3, padding-1 convolution (GEOM) for output gradient dy; with
    relu, y is ReLU's output and dy is first multiplied by its derivative (y > 0 in float32)."""
    geom = _convops.geometry(**GEOM)
    win = _windows(x.astype(np.float64), geom)  # (N, C, Ho, Wo, KH, KW)
    y = np.einsum("nchwij,ocij->nohw", win, w.astype(np.float64)) + b[:, None, None]
    dym = dy.astype(np.float64)
    if relu:
        y = np.maximum(y, 0)
        dym = dym * (y.astype(np.float32) > 0)
    dw = np.einsum("nohw,nchwij->ocij", dym, win)
    cout = w.shape[0]
    cols = dym.transpose(0, 2, 3, 1).reshape(-1, cout) @ w.reshape(cout, -1).astype(np.float64)
    dx = np.empty(x.shape)
    _col2im_reference(cols, geom, dx)
    return y, dw, dym, dx


def _conv_direct(rng):
    """The direct kernel (C*KH*KW <= DIRECT_MAX_K): forward with ReLU, both gradients."""
    x = rng.standard_normal((16, 2, 28, 28)).astype(np.float32)  # 16 x 8 x 784 x 18 MACs
    w = rng.standard_normal((8, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    dy = rng.standard_normal((16, 8, 28, 28)).astype(np.float32)
    geom = _convops.geometry(**GEOM)
    y_want, dw_want, dym, dx_want = _conv_reference(x, w, b, dy, relu=True)
    y_in = y_want.astype(np.float32)  # the backward takes ReLU's derivative from it

    def run():
        y, dw, db, dx = nan((16, 8, 28, 28)), nan(w.shape), nan(8), nan(x.shape)
        core.conv2d_direct(x, w, b, geom, True, y)
        core.conv2d_direct_backward_weight(x, dy, geom, False, dw, y_in, db)
        core.conv2d_direct_backward_input(dy, w, geom, dx, y_in)
        return y, dw, db, dx

    want = (y_want, dw_want, dym.sum(axis=(0, 2, 3)), dx_want)
    return run, want, (1e-5, 1e-3)


def _conv_gemm(x_shape, cout, bf16=False, winograd=False):
    """The GEMM convolution, forward and backward (weight and input gradients), against the
    window sums. 16 images make several groups, spread over the threads; 2 images are too few
    groups, so they run in turn and each GEMM takes the threads. With bf16 the inputs are bf16
    values already, so the bf16 GEMMs (inside the tasks) have the same exact products.
    winograd: the same layer as Winograd F(2x2, 3x3) (else forced onto the GEMMs); in bf16
    its transformed operands round, so the outputs are compared divided by their scale (the
    window sums of absolute values), within test_conv_winograd.py's bound."""

    def build(rng):
        def draw(shape):
            v = rng.standard_normal(shape).astype(np.float32)
            return round_bf16(v) if bf16 else v

        x, w = draw(x_shape), draw((cout, x_shape[1], 3, 3))
        b = rng.standard_normal(cout).astype(np.float32)
        dy = draw((x_shape[0], cout, *x_shape[2:]))  # padding 1: the output is H x W
        geom = _convops.geometry(**GEOM)
        y, dw, _, dx = _conv_reference(x, w, b, dy, relu=False)
        scales = (1.0, 1.0, 1.0)
        if bf16 and winograd:
            ay, adw, _, adx = _conv_reference(np.abs(x), np.abs(w), np.abs(b), np.abs(dy), False)
            scales = (ay.max(), adw.max(), adx.max())

        def run():
            out, gw, gx = nan(y.shape), nan(w.shape), nan(x_shape)
            before = core.conv_winograd("always" if winograd else "off")
            try:
                core.conv2d_gemm(x, w, b, geom, -1, 0.0, bf16, out)
                core.conv2d_gemm_backward(x, dy, w, geom, False, bf16, gw, gx)
            finally:
                core.conv_winograd(before)
            return tuple(a / s for a, s in zip((out, gw, gx), scales))

        want = tuple(a / s for a, s in zip((y, dw, dx), scales))
        return run, want, (0.0, 2e-2) if bf16 and winograd else (1e-4, 1e-3)

    return build


POOL_X = (32, 16, 28, 28)


def _pool(kind):
    def build(rng):
        x = rng.standard_normal(POOL_X).astype(np.float32)
        n, c, h, w = POOL_X
        dy = rng.standard_normal((n, c, h // 2, w // 2)).astype(np.float32)
        win = x.astype(np.float64).reshape(n, c, h // 2, 2, w // 2, 2)
        if kind == "max":
            y_want = win.max(axis=(3, 5))
            hit = win == y_want[:, :, :, None, :, None]  # random floats: no ties
            dx_want = (hit * dy[:, :, :, None, :, None]).reshape(POOL_X)

            def run():
                y, argmax = F.max_pool2d(x, 2)
                return y, F.max_pool2d_backward(dy, argmax, POOL_X, 2)

        else:
            y_want = win.mean(axis=(3, 5))
            dx_want = np.repeat(np.repeat(dy / 4.0, 2, axis=2), 2, axis=3)

            def run():
                return F.avg_pool2d(x, 2), F.avg_pool2d_backward(dy, POOL_X, 2)

        return run, (y_want, dx_want), (1e-6, 1e-6)

    return build


def _adam(rng):
    n = 1 << 19  # the kernel gives each thread at least 64k elements
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(2)]
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 0.1
    p, m, v = p0.astype(np.float64), np.zeros(n), np.zeros(n)
    for t, g in enumerate(grads, 1):
        p *= 1 - lr * wd
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g.astype(np.float64) ** 2
        p -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)

    def run():
        param = Parameter(p0.copy())
        opt = AdamW([param], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
        for g in grads:
            param.grad[...] = g
            opt.step()
        return (param.data.copy(),)

    return run, (p,), (1e-5, 1e-6)


def _conv_pool(x_shape, cout, kernel, direct):
    """Conv2d (ReLU) and MaxPool2d(2) fused in a Sequential, forward and backward, against the
    same pair unfused in float64, on the direct kernel or the GEMM path."""

    def build(rng):
        from nnfast import nn
        from nnfast.nn import conv as conv_module

        x = rng.standard_normal(x_shape).astype(np.float32)
        model = nn.Sequential(nn.Conv2d(x_shape[1], cout, kernel, activation="relu", seed=3),
                              nn.MaxPool2d(2))  # fmt: skip
        dy = rng.standard_normal(model.output_shape(x_shape)).astype(np.float32)
        limits = {"DIRECT_MAX_K": 10**9 if direct else 0}

        def run(fuse=True, dtype=np.float32):
            before = {k: getattr(conv_module, k) for k in (*limits, "FUSE_POOL")}
            vars(conv_module).update(limits, FUSE_POOL=fuse)
            try:
                m = nn.Sequential(*model) if dtype == np.float32 else _in_float64(model)
                m.zero_grad()
                y = m(x.astype(dtype))
                dx = m.backward(dy.astype(dtype))
                return y, dx, m[0].weight.grad.copy(), m[0].bias.grad.copy()
            finally:
                vars(conv_module).update(before)

        return run, run(fuse=False, dtype=np.float64), (1e-4, 1e-4)

    return build


def _in_float64(model):
    from nnfast import nn

    conv = model[0]
    c64 = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, activation="relu",
                    dtype="float64")  # fmt: skip
    c64.weight.data[...] = conv.weight.data
    c64.bias.data[...] = conv.bias.data
    return nn.Sequential(c64, nn.MaxPool2d(2))


CASES = {
    "gemm_naive": _gemm("naive", 96, 200, 150),
    "gemm_blocked": _gemm("blocked", 128, 784, 256),
    "gemm_packed": _gemm("packed", 128, 784, 256),
    "gemm_packed_small_driver": _gemm("packed", 128, 784, 256, driver="small"),
    "gemm_packed_goto_driver": _gemm("packed", 300, 500, 400, driver="goto"),
    "gemm_bias_relu": _gemm("auto", 128, 784, 256, epilogue=True),
    "gemm_split_k": _gemm("auto", 16, 40000, 16),
    "gemm_split_k_trans_a": _gemm("auto", 16, 40000, 16, trans_a=True),
    "relu": _act("relu", (384, 1024), bias=False),
    "relu_bias": _act("relu", (384, 1024), bias=True),
    "sigmoid": _act("sigmoid", (8, 16, 24, 24), bias=False),
    "sigmoid_bias": _act("sigmoid", (8, 16, 24, 24), bias=True),
    "softmax": _softmax,
    "softmax_cross_entropy": _softmax_xent,
    "mse_backward": _pair_loss("mse"),
    "bce_with_logits_backward": _pair_loss("bce"),
    # scalar reductions: partial sums must be added in a fixed order
    "softmax_cross_entropy_loss": functools.partial(_softmax_xent, loss_values=True),
    "mse_loss": _pair_loss("mse", loss_value=True),
    "bce_with_logits_loss": _pair_loss("bce", loss_value=True),
    "im2col": _im2col,
    "col2im": _col2im,
    "conv_direct": _conv_direct,
    "conv2d_gemm": _conv_gemm(CONV_X, 12),
    "conv2d_gemm_few_images": _conv_gemm((2, 8, 56, 56), 12),
    "conv2d_gemm_bf16": _conv_gemm(CONV_X, 12, bf16=True),
    "conv2d_winograd": _conv_gemm(CONV_X, 12, winograd=True),
    "conv2d_winograd_few_images": _conv_gemm((2, 8, 56, 56), 12, winograd=True),
    "conv2d_winograd_bf16": _conv_gemm(CONV_X, 12, bf16=True, winograd=True),
    "max_pool2d": _pool("max"),
    "conv_relu_max_pool2d_direct": _conv_pool((16, 1, 28, 28), 8, 5, direct=True),
    "conv_relu_max_pool2d_gemm": _conv_pool(CONV_X, 12, 3, direct=False),
    "avg_pool2d": _pool("avg"),
    "adam": _adam,
}


def check(name, counts=COUNTS, repeats=REPEATS):
    run, want, (rtol, atol) = CASES[name](np.random.default_rng(7))
    for nt in counts:
        with num_threads(nt):
            first = run()
            for i, (got, ref) in enumerate(zip(first, want)):
                np.testing.assert_allclose(
                    got, ref, rtol=rtol, atol=atol, err_msg=f"{name}, output {i}, {nt} threads"
                )
            for _ in range(repeats - 1):
                again = run()
                for i, (got, ref) in enumerate(zip(again, first)):
                    assert np.asarray(got).tobytes() == np.asarray(ref).tobytes(), (
                        f"{name}, output {i}, {nt} threads: differs from the first run"
                    )


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_at_each_thread_count(name):
    check(name)


@pytest.fixture(scope="module")
def busy_core():
    """A process spinning on one CPU for the duration of the tests that use it."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(proc.pid, {cpus[-1]})
    except (AttributeError, OSError):  # not Linux: it still competes for a core
        pass
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_beside_a_busy_process(busy_core, name):
    check(name, counts=(2, 3), repeats=2)
    assert busy_core.poll() is None  # it was competing all along


def test_two_python_threads_at_once():
    """Kernels called from two Python threads at the same time (the GIL is released) each
    get their own correct result, again and again."""
    names = ["gemm_packed", "gemm_split_k", "relu_bias", "softmax_cross_entropy", "adam"]
    built = {name: CASES[name](np.random.default_rng(3)) for name in names}
    errors = []

    def work():
        try:
            for _ in range(2):
                for name, (run, want, (rtol, atol)) in built.items():
                    for got, ref in zip(run(), want):
                        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, err_msg=name)
        except Exception as err:  # reported by the main thread
            errors.append(err)

    with num_threads(2):
        ts = [threading.Thread(target=work) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert not errors, errors[0]


def run_script(code, timeout=30, **env):
    """Run code in a fresh interpreter in its own session; a hang kills the whole group (a
    multiprocessing pool's workers too) and fails the test instead of stalling the suite."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        start_new_session=True,
        cwd=tempfile.gettempdir(),  # outside the source tree, which would shadow the install
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        pytest.fail(f"the script did not finish within {timeout} s (a hang)")
    assert proc.returncode == 0, err
    return out


ISA_FLIP_SCRIPT = """
import threading, time
import numpy as np
import nnfast
from nnfast import nn

nnfast.set_num_threads(1)
isas = nnfast.info()["isa_supported"]
conv = nn.Conv2d(6, 4, 5, padding=2, seed=0).eval()  # 4 output channels: generic's lanes only
x = np.random.default_rng(0).standard_normal((4, 6, 12, 12)).astype(np.float32)
refs = []
for isa in isas:
    nnfast.set_isa(isa)
    refs.append(conv(x).copy())
stop, bad, calls = [False], [], [0]

def work():
    while not stop[0]:
        y = conv(x)
        calls[0] += 1
        if not any(np.array_equal(y, r) for r in refs):
            bad.append(y)

ts = [threading.Thread(target=work) for _ in range(2)]
for t in ts:
    t.start()
end, k = time.perf_counter() + 1.0, 0
while time.perf_counter() < end:
    nnfast.set_isa(isas[k % len(isas)])
    k += 1
stop[0] = True
for t in ts:
    t.join()
print(len(isas), calls[0], len(bad))
"""


def test_set_isa_while_other_threads_convolve():
    """Each call keeps the kernels it planned with: a convolution planned on the generic path's
    4 lanes ran AVX-512's 16-lane kernels once another thread switched, past its buffers (a
    heap corruption that aborted the process within 0.2 s)."""
    isas, calls, bad = map(int, run_script(ISA_FLIP_SCRIPT).split())
    if isas < 2:
        pytest.skip("one ISA path on this machine")
    assert calls > 0 and bad == 0


BLOCKING_FLIP_SCRIPT = """
import threading, time
import numpy as np
import nnfast
from nnfast._native import core
nnfast.set_num_threads(2)
rng = np.random.default_rng(0)
a = rng.standard_normal((300, 300)).astype(np.float32)
b = rng.standard_normal((300, 700)).astype(np.float32)
want = a.astype(np.float64) @ b
core.force_gemm_driver("goto")
mr, nr = (core.gemm_kernels()["float32"][0][k] for k in ("mr", "nr"))
stop = threading.Event()
def flip():  # nc of 2 and 16 slivers: a product that re-read it overran its B buffer
    i = 0
    while not stop.is_set():
        core.set_gemm_blocking("float32", 4 * mr, 128, (2 if i % 2 else 16) * nr)
        i += 1
t = threading.Thread(target=flip)
t.start()
calls = bad = 0
t0 = time.time()
while time.time() - t0 < 1.0:
    out = np.full((300, 700), np.nan, np.float32)
    nnfast.gemm(a, b, out)
    calls += 1
    bad += not np.abs(out - want).max() <= 1e-3
stop.set()
t.join()
print(calls, bad)
"""


def test_gemm_blocking_changed_while_a_product_runs():
    """The tuning hook changes the kernel table in place: a product that sized its packing
    buffer from one NC and stepped by another wrote past the buffer (AddressSanitizer) and
    left columns unwritten (68 wrong products in 318)."""
    calls, bad = map(int, run_script(BLOCKING_FLIP_SCRIPT).split())
    assert calls > 0 and bad == 0


# The three products issue 11 names: a 128x784x256 layer, a split-K weight gradient and ReLU.
# kernels(seed) returns each one's largest error against numpy: NaN where it left out unwritten.
KERNELS_SCRIPT = """
import os
import numpy as np
import nnfast
import nnfast.functional as F

def kernels(seed):
    rng = np.random.default_rng(seed)
    errs = []
    for m, k, n, ta in [(128, 784, 256, False), (16, 40000, 16, True)]:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        out = np.full((m, n), np.nan, np.float32)
        nnfast.gemm(a, b, out, trans_a=ta)
        want = (a.T if ta else a).astype(np.float64) @ b
        errs.append(float(np.abs(out - want).max() / k))
    x = rng.standard_normal((512, 1024)).astype(np.float32)
    y = np.full_like(x, np.nan)
    F.relu(x, out=y)
    errs.append(float(np.abs(y - np.maximum(x, 0)).max()))
    return errs

nnfast.set_num_threads(2)
"""


def assert_small(errs):
    assert all(e < 1e-5 for e in errs), f"largest error of each kernel (NaN: unwritten): {errs}"


def test_after_fork():
    """Children forked after the parent ran nnfast's threads (a multiprocessing pool with the
    fork start method, and a bare os.fork) run the kernels correctly, without hanging on
    threads that did not survive the fork."""
    out = run_script(
        KERNELS_SCRIPT
        + """
import multiprocessing
kernels(0)
with multiprocessing.get_context("fork").Pool(2) as pool:
    for errs in pool.map(kernels, range(4)):
        print(*errs)
pid = os.fork()
if pid == 0:
    os._exit(0 if max(kernels(9)) < 1e-5 else 1)  # NaN compares False: exit 1
print("bare fork exit status", os.waitpid(pid, 0)[1])
"""
    )
    lines = out.splitlines()
    assert len(lines) == 5 and lines[-1] == "bare fork exit status 0", out
    for line in lines[:-1]:
        assert_small([float(e) for e in line.split()])


def test_omp_thread_limit_1():
    """OMP_THREAD_LIMIT=1 once made the OpenMP runtime grant one thread where nnfast split the
    work for two, leaving half of each output unwritten; whatever the runtime grants, every
    chunk is computed."""
    out = run_script(KERNELS_SCRIPT + "print(*kernels(0))", OMP_THREAD_LIMIT="1")
    assert_small([float(e) for e in out.split()])


def test_blas_thread_cap_as_documented():
    """README: set_num_threads leaves numpy's and SciPy's BLAS pools alone, and so do the
    everyday products; the first product handed to BLAS caps every loaded BLAS library."""
    out = run_script("""
import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_info, threadpool_limits
import nnfast

def counts():
    return sorted(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")

threadpool_limits(limits=1, user_api="blas")  # OpenBLAS refuses more than the CPUs
nnfast.set_num_threads(2)
a = np.ones((64, 64), np.float32)
nnfast.gemm(a, a)
print(*counts())
nnfast.gemm(a, a, variant="blas")
print(*counts())
""")  # fmt: skip
    untouched, capped = (line.split() for line in out.splitlines())
    assert len(untouched) >= 1 and set(untouched) == {"1"}, out  # numpy's and SciPy's
    assert set(capped) == {"2"}, out
