"""nnfast.optim: each optimizer against hand-written update equations, resume, schedulers."""

import math
import platform

import numpy as np
import pytest

from nnfast import nn, optim
from nnfast.optim import optimizer as optimizer_module

X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def _params(rng, dtype=np.float64):
    shapes = [(3, 4), (4,), (2, 3)]
    return [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def _grads(rng, params, steps):
    return [[rng.standard_normal(p.shape) for p in params] for _ in range(steps)]


def _run(opt, params, grads):
    for gs in grads:
        opt.zero_grad()
        for p, g in zip(params, gs):
            p.grad += g
        opt.step()


def _flat(params):
    return np.concatenate([p.data.ravel() for p in params])


def _reference(update, params, grads):
    """Apply update(step, p, g, state) element-wise per parameter, in float64."""
    ps = [p.data.astype(np.float64).copy() for p in params]
    states = [{} for _ in ps]
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            ps[i] = update(t, ps[i], g, states[i])
    return np.concatenate([p.ravel() for p in ps])


def _sgd_ref(lr, momentum=0.0, dampening=0.0, wd=0.0, nesterov=False):
    def update(t, p, g, s):
        g = g + wd * p
        if momentum:
            s["buf"] = g.copy() if t == 1 else momentum * s["buf"] + (1 - dampening) * g
            g = g + momentum * s["buf"] if nesterov else s["buf"]
        return p - lr * g

    return update


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"momentum": 0.9},
        {"momentum": 0.9, "nesterov": True},
        {"momentum": 0.8, "dampening": 0.3},
        {"momentum": 0.9, "weight_decay": 0.1},
        {"momentum": 0.9, "weight_decay": 0.1, "nesterov": True},
        {"weight_decay": 0.05},
    ],
    ids=str,
)
def test_sgd(kw, rng):
    params = _params(rng)
    grads = _grads(rng, params, 4)
    ref = _reference(
        _sgd_ref(0.1, kw.get("momentum", 0), kw.get("dampening", 0), kw.get("weight_decay", 0),
                 kw.get("nesterov", False)), params, grads)  # fmt: skip
    _run(optim.SGD(params, lr=0.1, **kw), params, grads)
    np.testing.assert_allclose(_flat(params), ref, rtol=1e-12)


def _adam_paper(lr, b1, b2, eps, wd=0.0, decoupled=True):
    """Kingma & Ba (2015), Algorithm 1 (bias-corrected moments), torch's eps placement."""

    def update(t, p, g, s):
        if wd and not decoupled:
            g = g + wd * p
        if wd and decoupled:
            p = p * (1 - lr * wd)
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
        m_hat = s["m"] / (1 - b1**t)
        v_hat = s["v"] / (1 - b2**t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)

    return update


@pytest.mark.parametrize("native", [True, False], ids=["fused-C", "numpy"])
@pytest.mark.parametrize(
    "cls,kw,decoupled",
    [
        (optim.Adam, {}, True),
        (optim.Adam, {"weight_decay": 0.1}, False),
        (optim.AdamW, {"weight_decay": 0.1}, True),
        (optim.AdamW, {"betas": (0.5, 0.9), "eps": 1e-3, "weight_decay": 0.0}, True),
    ],
)
def test_adam_against_the_paper(cls, kw, decoupled, native, rng, monkeypatch):
    if not native:
        monkeypatch.setattr(optimizer_module, "_native", None)
    elif optimizer_module._native is None:
        pytest.skip("no native extension")
    params = _params(rng)
    grads = _grads(rng, params, 5)
    b1, b2 = kw.get("betas", (0.9, 0.999))
    wd = kw.get("weight_decay", 0.01 if cls is optim.AdamW else 0.0)
    ref = _reference(_adam_paper(0.01, b1, b2, kw.get("eps", 1e-8), wd, decoupled), params, grads)
    _run(cls(params, lr=0.01, **kw), params, grads)
    np.testing.assert_allclose(_flat(params), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_native_matches_numpy_on_every_path(dtype, isa, threads, rng, monkeypatch):
    """The fused kernel on each ISA path and thread count, at sizes below and above the
    threading cut-off (64k elements a thread) and with a tail that fills no vector."""
    if optimizer_module._native is None:
        pytest.skip("no native extension")
    for size in (1, 37, 200_003):
        a = [nn.Parameter(rng.standard_normal(size).astype(dtype))]
        b = [nn.Parameter(a[0].data.copy())]
        grads = _grads(rng, a, 3)
        _run(optim.AdamW(a, lr=0.01), a, grads)
        with monkeypatch.context() as mp:
            mp.setattr(optimizer_module, "_native", None)
            _run(optim.AdamW(b, lr=0.01), b, grads)
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=0)
        np.testing.assert_allclose(a[0].data, b[0].data, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_kernel_flushes_subnormal_moments(dtype, isa, threads):
    """Moments below the smallest normal count as zero (flush-to-zero, which keeps Adam at full
    speed where sparse gradients leave m subnormal); p moves as the unflushed update would, to
    within its rounding; the caller's thread keeps its own handling of subnormals. With eps 0
    or subnormal nothing is flushed."""
    core = optimizer_module._native
    if core is None:
        pytest.skip("no native extension")
    n = 200_003  # threaded
    tiny = np.finfo(dtype).tiny
    p = np.linspace(-1, 1, n).astype(dtype)
    g = np.zeros(n, dtype)
    g[::7] = 1e-3
    m = np.full(n, tiny / 4, dtype)  # subnormal
    m[1::7] = 1e-3
    v = np.full(n, 1e-6, dtype)
    want_m = 0.9 * m.astype(np.float64) + 0.1 * g
    want_v = 0.999 * v.astype(np.float64) + 0.001 * g.astype(np.float64) ** 2
    want_p = p - 1e-2 * want_m / (np.sqrt(want_v) + 1e-8)
    core.adam(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, 1.0)
    normal = np.abs(want_m) >= tiny
    assert not normal[2::7].any()
    if X86:  # elsewhere the update keeps subnormals (csrc/optim.c)
        assert np.all(m[~normal] == 0)
    np.testing.assert_allclose(m[normal], want_m[normal], rtol=1e-6)
    np.testing.assert_allclose(v, want_v, rtol=1e-6)
    np.testing.assert_allclose(p, want_p, rtol=1e-6, atol=1e-7)
    half = np.array(tiny, dtype) * dtype(0.5)  # on this thread, still subnormal
    assert 0 < half < tiny
    # eps 0, or below the smallest normal: no flush, where a flushed v would divide by 0
    for eps in (0.0, tiny / 4):
        m, v = np.full(n, tiny / 4, dtype), np.full(n, tiny / 4, dtype)
        g = np.full(n, np.sqrt(tiny) / 10, dtype)  # g^2 is subnormal
        core.adam(p, g, m, v, 1e-2, 0.9, 0.999, eps, 1.0)
        assert np.all((0 < v) & (v < tiny)) and np.all(np.isfinite(p))


def test_adam_kernel_rejects_bad_buffers():
    core = optimizer_module._native
    if core is None:
        pytest.skip("no native extension")
    p, g, m, v = (np.zeros(8, np.float32) for _ in range(4))
    with pytest.raises(ValueError, match="adam: grad has 7 elements, expected 8"):
        core.adam(p, g[:7], m, v, 0.1, 0.9, 0.999, 1e-8, 1.0)
    with pytest.raises(TypeError, match="adam: exp_avg has dtype float64"):
        core.adam(p, g, m.astype(np.float64), v, 0.1, 0.9, 0.999, 1e-8, 1.0)
    with pytest.raises(ValueError, match="adam: exp_avg_sq must be C-contiguous"):
        core.adam(p, g, m, np.zeros(16, np.float32)[::2], 0.1, 0.9, 0.999, 1e-8, 1.0)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="adam: p is read-only"):
        core.adam(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 1.0)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        core.adam(np.zeros(8, np.int32), g, m, v, 0.1, 0.9, 0.999, 1e-8, 1.0)


@pytest.mark.parametrize(
    "kw", [{}, {"momentum": 0.9}, {"centered": True}, {"centered": True, "momentum": 0.5,
                                                          "weight_decay": 0.1}], ids=str
)  # fmt: skip
def test_rmsprop(kw, rng):
    alpha, eps, lr = 0.9, 1e-8, 0.01
    mom, wd = kw.get("momentum", 0), kw.get("weight_decay", 0)

    def update(t, p, g, s):
        g = g + wd * p
        s["sq"] = alpha * s.get("sq", 0) + (1 - alpha) * g * g
        avg = s["sq"]
        if kw.get("centered"):
            s["ga"] = alpha * s.get("ga", 0) + (1 - alpha) * g
            avg = avg - s["ga"] ** 2
        step = g / (np.sqrt(avg) + eps)
        if mom:
            s["buf"] = mom * s.get("buf", 0) + step
            step = s["buf"]
        return p - lr * step

    params = _params(rng)
    grads = _grads(rng, params, 4)
    ref = _reference(update, params, grads)
    _run(optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, **kw), params, grads)
    np.testing.assert_allclose(_flat(params), ref, rtol=1e-10)


@pytest.mark.parametrize("g", [0.7, 1.3, 0.1])
def test_centered_rmsprop_stays_finite_on_a_steady_float32_gradient(g):
    """v - m^2 is >= 0 exactly but rounds below 0 in float32 after ~1200 equal gradients:
    its square root turned the weights NaN."""
    p = nn.Parameter(np.zeros(64, np.float32))
    opt = optim.RMSprop([p], lr=1e-3, centered=True)
    for _ in range(1500):
        p.grad = np.full(64, g, np.float32)
        opt.step()
    assert np.all(np.isfinite(p.data))


def test_rmsprop_takes_gradients_whose_square_overflows():
    """(1 - alpha) g before g: g^2 overflowed float32 from |g| ~ 2e19 and froze the weights
    (torch's addcmul scales first too)."""
    p = nn.Parameter(np.zeros(1, np.float32))
    opt = optim.RMSprop([p], lr=0.01)
    v = 0.0
    for _ in range(2):
        p.grad = np.array([2e19], np.float32)
        opt.step()
        v = 0.99 * v + 0.01 * 2e19**2  # float64
    step1 = 0.01 * 2e19 / (np.sqrt(0.01 * 2e19**2) + 1e-8)
    np.testing.assert_allclose(p.data, [-(step1 + 0.01 * 2e19 / (np.sqrt(v) + 1e-8))], rtol=1e-6)


def test_adagrad(rng):
    lr, decay, eps, wd = 0.1, 0.01, 1e-10, 0.05

    def update(t, p, g, s):
        g = g + wd * p
        s["sum"] = s.get("sum", 0.5) + g * g
        return p - lr / (1 + (t - 1) * decay) * g / (np.sqrt(s["sum"]) + eps)

    params = _params(rng)
    grads = _grads(rng, params, 4)
    ref = _reference(update, params, grads)
    opt = optim.Adagrad(params, lr=lr, lr_decay=decay, weight_decay=wd,
                        initial_accumulator_value=0.5)  # fmt: skip
    _run(opt, params, grads)
    np.testing.assert_allclose(_flat(params), ref, rtol=1e-10)


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_state_dict_resumes_exactly(name, rng):
    cls = optim.OPTIMIZERS[name]
    kw = {"momentum": 0.9} if name in ("sgd", "rmsprop") else {}
    params_a = _params(rng, np.float32)
    params_b = [nn.Parameter(p.data.copy()) for p in params_a]
    grads = _grads(rng, params_a, 6)
    opt_a = cls(params_a, lr=0.01, **kw)
    _run(opt_a, params_a, grads)  # 6 uninterrupted steps
    opt_b = cls(params_b, lr=0.01, **kw)
    _run(opt_b, params_b, grads[:3])
    saved = opt_b.state_dict()
    snapshot = [p.data.copy() for p in params_b]
    params_c = [nn.Parameter(s) for s in snapshot]  # a fresh process: new params, new optimizer
    opt_c = cls(params_c, lr=0.5, **kw)
    opt_c.load_state_dict(saved)
    assert opt_c.param_groups[0]["lr"] == 0.01
    _run(opt_c, params_c, grads[3:])
    np.testing.assert_array_equal(_flat(params_c), _flat(params_a))
    with pytest.raises(ValueError, match="elements"):
        cls(_params(rng)[:1], lr=0.01, **kw).load_state_dict(saved)
    # a corrupt state array is refused before anything changes
    key = next(k for k, v in saved["state"][0].items() if isinstance(v, np.ndarray))
    bad = {**saved, "state": [{**saved["state"][0], key: saved["state"][0][key].astype(str)}]}
    _refused_and_unchanged(opt_c, bad, f"state '{key}' of group 0 has dtype <U")


def _refused_and_unchanged(opt, state_dict, match):
    """load_state_dict raises ValueError matching ``match`` and leaves ``opt`` as it was."""
    before = opt.state_dict()
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state_dict)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for k, v in before["state"][0].items():
        np.testing.assert_array_equal(after["state"][0][k], v)


def _adam_state(rng):
    params = _params(rng, np.float32)
    opt = optim.Adam(params, lr=0.01)
    _run(opt, params, _grads(rng, params, 2))
    return opt.state_dict()


@pytest.mark.parametrize(
    "edit, what",
    [
        (lambda sd: sd.update(type="SGD"), "the state was saved by SGD, not by Adam"),
        (lambda sd: sd["param_groups"][0].update(momentum=0.9),
         r"group 0 has hyper-parameters \['momentum'\], which Adam does not take"),
        (lambda sd: sd["state"][0].update(junk=np.zeros(3)), r"saved state \['exp_avg', .*'junk'"),
        (lambda sd: sd["state"][0].pop("exp_avg"), r"expected \['exp_avg', 'exp_avg_sq', 'step'\]"),
        (lambda sd: sd["state"][0].update(exp_avg=None), "'exp_avg' of group 0 must be an array"),
        (lambda sd: sd["state"][0].update(exp_avg=0.5), "'exp_avg' of group 0 must be an array"),
        (lambda sd: sd["state"][0]["exp_avg_sq"].__setitem__(0, -1.0),
         "'exp_avg_sq' of group 0 holds negative or NaN values"),
        (lambda sd: sd["state"][0].update(step=True), "'step' of group 0 must be an integer"),
        (lambda sd: sd["state"][0].update(step=-5), "'step' of group 0 must be >= 0, got -5"),
        (lambda sd: sd.update(state=[]), "1 parameter groups and 0 states saved, 1 groups here"),
    ],
)  # fmt: skip
def test_load_state_dict_refuses_a_foreign_or_corrupt_state(rng, edit, what):
    """Each was loaded (an Adam's state made an SGD an Adam at lr 0.001; None became NaN,
    0.5 every element, a negative exp_avg_sq NaN weights at the next step), or loaded in
    part before an error. Nothing changes when refused."""
    saved = _adam_state(rng)
    params = _params(rng, np.float32)
    edit(saved)
    _refused_and_unchanged(optim.Adam(params, lr=0.5), saved, f"Adam.load_state_dict: .*{what}")


def test_load_state_dict_takes_the_saved_hyper_parameters_state(rng):
    """An SGD with momentum loads a state saved without it, and drops its buffer; torch's
    ``params`` indices in a saved group are ignored."""
    params = _params(rng, np.float32)
    plain = optim.SGD(params, lr=0.1)
    _run(plain, params, _grads(rng, params, 2))
    saved = plain.state_dict()
    saved["param_groups"][0]["params"] = [0, 1, 2]
    fresh = [nn.Parameter(p.data.copy()) for p in params]
    opt = optim.SGD(fresh, lr=0.1, momentum=0.9)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["momentum"] == 0.0 and opt.param_groups[0]["params"][0] is fresh[0]
    assert "momentum_buffer" not in opt.state_dict()["state"][0]
    old = {**saved}
    del old["type"]  # a checkpoint from before the type was recorded
    optim.SGD(_params(rng, np.float32), lr=0.1).load_state_dict(old)


def test_a_model_or_nothing_for_parameters_is_named():
    model = nn.Linear(2, 2)
    for make in (lambda: optim.SGD(model), lambda: optim.clip_grad_norm_(model, 1.0)):
        with pytest.raises(TypeError, match=r"pass model.parameters\(\), not the model"):
            make()
    with pytest.raises(TypeError, match="SGD: params must be an iterable of Parameters"):
        optim.SGD(None)
    with pytest.raises(TypeError, match="SGD: a group's params must be Parameters, got NoneType"):
        optim.SGD([{"params": None}])
    with pytest.raises(TypeError, match="clip_grad_norm_: parameters must be Parameters"):
        optim.clip_grad_norm_(None, 1.0)
    # a set's order is its hash's: betas={0.9, 0.99} was taken in that order
    with pytest.raises(TypeError, match="Adam: betas must be a pair of real numbers"):
        optim.Adam(model.parameters(), betas={0.9, 0.99})


@pytest.mark.parametrize(
    "kw, err, what",
    [({"max_norm": "1"}, TypeError, "max_norm must be a real number"),
     ({"max_norm": True}, TypeError, "max_norm must be a real number"),
     ({"max_norm": -1.0}, ValueError, "max_norm must be >= 0"),
     ({"max_norm": 1.0, "eps": float("nan")}, ValueError, "eps must be finite")],
)  # fmt: skip
def test_clip_grad_norm_checks_its_numbers(kw, err, what):
    """'1' failed on '>=', True was 1, and eps NaN turned the gradients NaN."""
    with pytest.raises(err, match=f"clip_grad_norm_: {what}"):
        optim.clip_grad_norm_(list(nn.Linear(2, 2).parameters()), **kw)


def test_flat_buffers_and_zero_grad(rng):
    params = _params(rng)
    views = [p.data for p in params]
    opt = optim.SGD(params, lr=0.1)
    data, grad = opt._flat[0]
    assert data.size == sum(p.size for p in params)
    assert all(np.shares_memory(p.data, data) for p in params)
    assert all(np.array_equal(v, p.data) for v, p in zip(views, params))
    for p in params:
        p.grad += 1
    opt.zero_grad()
    assert all(not p.grad.any() for p in params)  # reading grad writes the deferred zeros
    assert not grad.any()
    optim.Adam(params)  # a second optimizer reuses the existing flat layout
    assert all(np.shares_memory(p.data, data) for p in params)


def _stale_grads(params):
    """Poison the gradient buffers, then zero_grad: the poison must never be seen again."""
    for p in params:
        p.grad[...] = np.nan
    return params


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Linear(5, 3, activation="relu", dtype="float64", seed=0),
        lambda: nn.Conv2d(2, 3, 3, padding=1, dtype="float64", seed=0),
        lambda: nn.Conv2d(2, 3, 1, dtype="float64", seed=0),  # the 1x1 path
        lambda: nn.Conv2d(2, 3, 5, padding=2, dtype="float64", seed=0),  # K = 50: the GEMMs
    ],
    ids=["linear", "conv", "conv1x1", "conv_gemm"],
)
def test_deferred_zero_grad_overwrites_then_accumulates(make, rng):
    """After zero_grad a layer's backward writes its gradients (never reading the old ones);
    a second backward adds to them, as without the deferral."""
    layer = make()
    x = rng.standard_normal((4, 5) if isinstance(layer, nn.Linear) else (2, 2, 5, 5))
    dy = rng.standard_normal(layer(x).shape)
    layer.zero_grad()
    layer.backward(dy)
    once = [p.grad.copy() for p in layer.parameters()]
    _stale_grads(layer.parameters())
    layer.zero_grad()
    layer(x)
    layer.backward(dy)
    for g, ref in zip((p.grad for p in layer.parameters()), once):
        np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-12)
    layer(x)
    layer.backward(dy)
    for g, ref in zip((p.grad for p in layer.parameters()), once):
        np.testing.assert_allclose(g, 2 * ref, rtol=1e-12, atol=1e-12)


def test_deferred_zero_grad_of_an_empty_batch(rng):
    for layer, x in [
        (nn.Linear(5, 3, dtype="float64", seed=0), np.empty((0, 5))),
        (nn.Conv2d(2, 3, 3, dtype="float64", seed=0), np.empty((0, 2, 5, 5))),
    ]:
        y = layer(x)
        _stale_grads(layer.parameters())
        layer.zero_grad()
        layer.backward(np.empty_like(y))
        assert all(not p.grad.any() for p in layer.parameters())


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_step_sees_zeros_of_parameters_backward_missed(name, rng):
    """A parameter no backward reached after zero_grad has a zero gradient in step()."""
    used, unused = nn.Linear(3, 2, seed=0), nn.Linear(3, 2, seed=1)
    params = list(used.parameters()) + list(unused.parameters())
    opt = optim.OPTIMIZERS[name](params, lr=0.1)
    before = [p.data.copy() for p in unused.parameters()]
    _stale_grads(params)
    opt.zero_grad()
    used(rng.standard_normal((4, 3)).astype(np.float32))
    used.backward(np.ones((4, 2), np.float32))
    opt.step()
    for p, b in zip(unused.parameters(), before):
        np.testing.assert_array_equal(p.data, b)
    assert all(np.isfinite(p.data).all() for p in used.parameters())


def test_clip_grad_norm(rng):
    params = _params(rng)
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)
    norm = math.sqrt(sum(float((p.grad**2).sum()) for p in params))
    assert optim.clip_grad_norm_(params, 1e9) == pytest.approx(norm)
    assert optim.clip_grad_norm_(params, 0.5) == pytest.approx(norm)
    assert optim.grad_norm(params) == pytest.approx(0.5, rel=1e-5)
    optim.SGD(params, lr=0.1)  # flattened: one dot product, same answer
    assert nn.clip_grad_norm_(params, 0.25) == pytest.approx(0.5, rel=1e-5)
    assert optim.grad_norm(params) == pytest.approx(0.25, rel=1e-5)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="max_norm must be >= 0"):
            optim.clip_grad_norm_(params, bad)
    assert optim.grad_norm(params) == pytest.approx(0.25, rel=1e-5)  # untouched


def _lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.optimizer.param_groups[0]["lr"])
        sched.step()
    return out


def _opt(lr=1.0):
    return optim.SGD([nn.Parameter(np.zeros(2))], lr=lr)


def test_schedulers():
    np.testing.assert_allclose(_lrs(optim.StepLR(_opt(), 2, gamma=0.5), 5), [1, 1, 0.5, 0.5, 0.25])
    cos = _lrs(optim.CosineAnnealingLR(_opt(), T_max=4, eta_min=0.1), 6)
    np.testing.assert_allclose(cos, [0.1 + 0.9 * (1 + math.cos(math.pi * min(e, 4) / 4)) / 2
                                     for e in range(6)])  # fmt: skip
    np.testing.assert_allclose(_lrs(optim.LinearLR(_opt(), 0.5, 1.0, 2), 4), [0.5, 0.75, 1, 1])
    opt = _opt()
    warm = optim.LinearWarmup(opt, 2, after=optim.StepLR(opt, 1, gamma=0.1))
    np.testing.assert_allclose(_lrs(warm, 5), [0.0, 0.5, 1.0, 0.1, 0.01])
    plateau = optim.ReduceLROnPlateau(opt := _opt(), patience=1, factor=0.5)
    lrs = []
    for metric in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95]:
        plateau.step(metric)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]


def test_scheduler_state_dict():
    a = optim.CosineAnnealingLR(_opt(), T_max=10)
    for _ in range(4):
        a.step()
    b = optim.CosineAnnealingLR(_opt(), T_max=10)
    b.load_state_dict(a.state_dict())
    assert b.get_last_lr() == a.get_last_lr()


@pytest.mark.parametrize(
    "make, err, what",
    [
        (lambda o: optim.LinearLR(o, last_epoch=-5), ValueError, "last_epoch must be a whole"),
        (lambda o: optim.StepLR(o, 2, last_epoch=2.5), TypeError, "last_epoch must be an int"),
        (lambda o: optim.StepLR(o, 2, last_epoch="a"), TypeError, "last_epoch must be an int"),
        (lambda o: optim.StepLR(None, 2), TypeError, "optimizer must be an nnfast optimizer"),
        (lambda o: optim.StepLR(nn.Linear(2, 2), 2), TypeError, "got Linear"),
        (lambda o: optim.ReduceLROnPlateau(None), TypeError, "optimizer must be an nnfast"),
        (lambda o: optim.StepLR(o, 2, gamma=10), ValueError, r"gamma must be finite and in \[0, 1"),
        (lambda o: optim.LinearWarmup(o, 2, after=optim.ReduceLROnPlateau(o)), TypeError,
         "`after` must be an epoch-indexed scheduler"),
        (lambda o: optim.ReduceLROnPlateau(o).step("abc"), TypeError, "metric must be a real"),
    ],
)  # fmt: skip
def test_scheduler_bad_arguments(make, err, what):
    """last_epoch=-5 made LinearLR's rate negative (the step then climbed the gradient)."""
    with pytest.raises(err, match=what):
        make(_opt())


@pytest.mark.parametrize(
    "make, state, what",
    [
        (lambda o: optim.StepLR(o, 2), {"last_epoch": 0, "base_lrs": [float("nan")]},
         r"base_lrs\[0\] must be finite"),
        (lambda o: optim.StepLR(o, 2), {"last_epoch": 0, "base_lrs": [-0.1]}, "base_lrs"),
        (lambda o: optim.StepLR(o, 2), {"last_epoch": 0, "base_lrs": [0.1, 0.1]},
         "base_lrs must be a list of 1 rates"),
        (lambda o: optim.StepLR(o, 2), {}, "last_epoch must be an int, got None"),
        (lambda o: optim.StepLR(o, 2), optim.CosineAnnealingLR(_opt(), 3).state_dict(),
         "the state was saved by CosineAnnealingLR, not by StepLR"),
        (lambda o: optim.ReduceLROnPlateau(o), {"best": float("nan"), "num_bad_epochs": 0,
         "cooldown_counter": 0, "last_epoch": 0}, "best must be"),
        (lambda o: optim.ReduceLROnPlateau(o), {"best": 1.0}, "num_bad_epochs must be an int"),
        (lambda o: optim.ReduceLROnPlateau(o), optim.StepLR(_opt(), 2).state_dict(),
         "saved by StepLR"),
    ],
)  # fmt: skip
def test_scheduler_load_state_dict_refuses_bad_states(make, state, what):
    """A NaN base rate made the weights NaN at the next step; a base_lrs list of another
    length was ignored; {} raised KeyError. Nothing changes when refused."""
    opt = _opt()
    sched = make(opt)
    before, lr = sched.state_dict(), opt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match=f"{type(sched).__name__}.load_state_dict: .*{what}"):
        sched.load_state_dict(state)
    assert sched.state_dict() == before and opt.param_groups[0]["lr"] == lr


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([nn.Parameter(np.zeros(2))], nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        optim.Adam([nn.Parameter(np.zeros(2))], lr=-1)
    p = nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([{"params": [p]}, {"params": [p]}])
