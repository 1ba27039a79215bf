"""The parameter contract: what a PyTorch user writes to parameters and optimizers is honoured
(assignment, in-place updates, zero_grad, load_state_dict), or refused with an exception."""

import gc
import math

import numpy as np
import pytest

import nnfast
from nnfast import nn, optim


def _sgd_setup():
    p = nn.Parameter(np.ones(4))
    return p, optim.SGD([p], lr=0.1)


def _assign_grad(p, opt):
    p.grad = np.full(4, 2.0)
    opt.step()
    return np.full(4, 1 - 0.1 * 2.0)


def _assign_grad_float32(p, opt):  # float32 values convert into the float64 buffer
    p.grad = np.full(4, 2.0, np.float32)
    opt.step()
    return np.full(4, 0.8)


def _assign_grad_ints(p, opt):
    p.grad = [1, 2, 3, 4]
    opt.step()
    return 1 - 0.1 * np.arange(1.0, 5.0)


def _assign_data(p, opt):
    p.data = np.full(4, 3.0)
    p.grad = np.ones(4)
    opt.step()
    return np.full(4, 3.0 - 0.1)


def _assign_data_expression(p, opt):  # a new array, built from the old one
    p.data = p.data * 2
    p.grad = np.ones(4)
    opt.step()
    return np.full(4, 2.0 - 0.1)


def _inplace_data(p, opt):  # a hand-written update, then the optimizer's
    p.grad = np.ones(4)
    p.data -= 0.5 * p.grad
    opt.step()
    return np.full(4, 1 - 0.5 - 0.1)


def _inplace_grad(p, opt):
    p.grad += 3.0
    p.grad[:2] *= 2
    opt.step()
    return np.array([1 - 0.6, 1 - 0.6, 1 - 0.3, 1 - 0.3])


def _zero_grad_then_assign(p, opt):
    p.grad = np.full(4, 5.0)
    opt.zero_grad()
    p.grad[1] = 1.0
    opt.step()
    return np.array([1.0, 0.9, 1.0, 1.0])


def _grad_none(p, opt):  # torch's set_to_none idiom: no gradient, no step
    p.grad = np.full(4, 5.0)
    p.grad = None
    opt.step()
    return np.ones(4)


def _model_zero_grad(p, opt):
    p.grad = np.full(4, 5.0)
    p.zero_grad()
    opt.step()
    return np.ones(4)


IDIOMS = [
    _assign_grad,
    _assign_grad_float32,
    _assign_grad_ints,
    _assign_data,
    _assign_data_expression,
    _inplace_data,
    _inplace_grad,
    _zero_grad_then_assign,
    _grad_none,
    _model_zero_grad,
]


@pytest.mark.parametrize("idiom", IDIOMS, ids=[f.__name__.strip("_") for f in IDIOMS])
def test_parameter_idiom_reaches_the_optimizer(idiom):
    p, opt = _sgd_setup()
    expected = idiom(p, opt)
    np.testing.assert_allclose(p.data, expected, rtol=1e-12)
    # the optimizer's flat buffer is the parameter's storage
    np.testing.assert_allclose(opt._flat[0][0], expected.reshape(-1), rtol=1e-12)


@pytest.mark.parametrize(
    "name, value, exc, match",
    [
        ("grad", np.ones(5), ValueError, "shape"),
        ("grad", np.ones((4, 1)), ValueError, "shape"),
        ("grad", 2.0, ValueError, "shape"),  # no silent broadcasting
        ("data", np.ones(3), ValueError, "shape"),
        ("data", np.array(["a", "b", "c", "d"]), TypeError, "dtype"),
        ("grad", np.ones(4, complex), TypeError, "dtype"),
        ("grad", np.array([None] * 4), TypeError, "dtype"),
    ],
)
def test_bad_assignment_raises_and_changes_nothing(name, value, exc, match):
    p, opt = _sgd_setup()
    with pytest.raises(exc, match=match):
        setattr(p, name, value)
    np.testing.assert_array_equal(p.data, np.ones(4))
    assert p.data.base is opt._flat[0][0]  # still the optimizer's


def _train_step(model, opt, x, y):
    opt.zero_grad()
    out = model(x)
    model.backward(out - y)
    opt.step()


def test_model_load_state_dict_reaches_the_optimizer(rng):
    model = nn.Sequential(nn.Linear(3, 4, activation="tanh", seed=0), nn.Linear(4, 2, seed=1))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    other = nn.Sequential(nn.Linear(3, 4, activation="tanh", seed=5), nn.Linear(4, 2, seed=6))
    model.load_state_dict(other.state_dict())
    ref_opt = optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    x, y = rng.standard_normal((5, 3)).astype(np.float32), np.zeros((5, 2), np.float32)
    for _ in range(3):
        _train_step(model, opt, x, y)
        _train_step(other, ref_opt, x, y)
    for a, b in zip(model.parameters(), other.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.RMSprop, optim.Adagrad])
def test_optimizer_load_state_dict_resumes_exactly(cls, rng):
    kw = {"momentum": 0.9} if cls in (optim.SGD, optim.RMSprop) else {}

    def fresh():
        m = nn.Sequential(nn.Linear(3, 4, activation="relu", seed=0), nn.Linear(4, 2, seed=1))
        return m, cls(m.parameters(), lr=0.01, **kw)

    x, y = rng.standard_normal((5, 3)).astype(np.float32), np.zeros((5, 2), np.float32)
    a, opt_a = fresh()
    for _ in range(2):
        _train_step(a, opt_a, x, y)
    b, opt_b = fresh()
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(opt_a.state_dict())
    for _ in range(2):
        _train_step(a, opt_a, x, y)
        _train_step(b, opt_b, x, y)
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_optimizer_defaults_are_torchs():
    """SGD's lr defaulted to 0.01 where torch 2.13's is 1e-3 (a differential audit)."""
    p = nn.Parameter(np.ones(2))
    assert optim.SGD([p]).defaults["lr"] == 1e-3
    assert optim.Adam([p]).defaults["lr"] == 1e-3 and optim.AdamW([p]).defaults["lr"] == 1e-3


def test_duplicate_parameters_are_refused():
    p, q = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, q, p])
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([{"params": [p]}, {"params": [q, p]}])
    opt = optim.SGD([p])
    with pytest.raises(ValueError, match="more than once"):
        opt.add_param_group({"params": [p]})


def _shared_cases():
    lin = nn.Linear(4, 4)
    relu = nn.ReLU()
    return [
        ("twice", lambda: nn.Sequential(lin, nn.Tanh(), lin), "layer 2 \\(Linear\\) is already"),
        ("an activation", lambda: nn.Sequential(nn.Linear(4, 4), relu, nn.Linear(4, 4), relu),
         "layer 3 \\(ReLU\\) is already"),
        ("nested", lambda: nn.Sequential(nn.Sequential(lin), nn.Sequential(nn.Tanh(), lin)),
         "layer 1 \\(Sequential\\) holds a Linear that is already"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(3))
def test_a_module_at_two_places_of_a_sequential_is_refused(case):
    """Its backward would use its second place's forward for both (silently wrong gradients)."""
    _, build, match = _shared_cases()[case]
    with pytest.raises(ValueError, match=match):
        build()


def test_appending_or_setting_a_layer_already_there_is_refused_and_changes_nothing():
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    model = nn.Sequential(a, nn.Tanh(), b)
    with pytest.raises(ValueError, match="layer 3 \\(Linear\\) is already"):
        model.append(a)
    with pytest.raises(ValueError, match="layer 2 \\(Linear\\) is already"):
        setattr(model, "2", a)
    assert list(model) == [a, model[1], b] and model._modules["2"] is b
    assert len(model.parameters()) == 4
    setattr(model, "0", a)  # the same module at its own place
    model.append(nn.Linear(4, 4))
    assert len(model) == 4


def test_tied_weights_are_one_parameter_stepped_on_both_gradients(rng):
    a, b = nn.Linear(4, 4, seed=0), nn.Linear(4, 4, seed=1)
    b.weight = a.weight
    tied = nn.Sequential(a, nn.Tanh(), b).astype("float64")
    assert [n for n, _ in tied.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(tied.parameters()) == 3 and tied.parameter_count() == 16 + 4 + 4
    x = rng.standard_normal((5, 4))
    assert nnfast.gradcheck(tied, x)
    # the gradient is the sum of both places' (an untied copy's two weight gradients)
    c, d = nn.Linear(4, 4), nn.Linear(4, 4)
    c.weight.data, c.bias.data = a.weight.data, a.bias.data
    d.weight.data, d.bias.data = a.weight.data, b.bias.data
    untied = nn.Sequential(c, nn.Tanh(), d).astype("float64")
    dy = rng.standard_normal((5, 4))
    for m in (tied, untied):
        m.zero_grad()
        m(x)
        m.backward(dy)
    np.testing.assert_allclose(a.weight.grad, c.weight.grad + d.weight.grad, rtol=1e-12)
    opt = optim.SGD(tied.parameters(), lr=0.1)
    opt.step()
    assert b.weight is a.weight
    np.testing.assert_allclose(a.weight.data, c.weight.data - 0.1 * a.weight.grad, rtol=1e-12)
    sd = tied.state_dict()
    np.testing.assert_array_equal(sd["0.weight"], sd["2.weight"])


def test_two_optimizers_over_overlapping_parameters_both_step(rng):
    """torch semantics: each optimizer steps on the parameters' current values."""
    model = nn.Sequential(nn.Linear(3, 4, seed=0), nn.Linear(4, 2, seed=1))
    ref = nn.Sequential(nn.Linear(3, 4, seed=0), nn.Linear(4, 2, seed=1))
    opt_all = optim.SGD(model.parameters(), lr=0.1)
    opt_last = optim.SGD(model[1].parameters(), lr=0.05)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    for _ in range(3):
        for m in (model, ref):
            m.zero_grad()
            m.backward(np.ones_like(m(x)))
        opt_all.step()
        opt_last.step()
        # by hand: layer 0 steps with lr 0.1, layer 1 with 0.1 then 0.05 on the same gradient
        for i, p in enumerate(ref.parameters()):
            p.data -= (0.1 + (0.05 if i >= 2 else 0.0)) * p.grad
    for a, b in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-6)


def test_rebuilt_optimizer_shares_the_buffer_and_the_old_one_still_works():
    p = nn.Parameter(np.ones(3))
    old = optim.SGD([p], lr=0.1)
    new = optim.SGD([p], lr=0.2)
    p.grad = np.ones(3)
    new.step()
    old.step()
    np.testing.assert_allclose(p.data, 1 - 0.2 - 0.1)
    assert set(map(id, p.optimizers)) == {id(old), id(new)}


BAD_HYPER = [
    (optim.SGD, {"lr": math.nan}, ValueError, "lr"),
    (optim.SGD, {"lr": math.inf}, ValueError, "lr"),
    (optim.SGD, {"lr": "0.1"}, TypeError, "lr"),
    (optim.SGD, {"lr": None}, TypeError, "lr"),
    (optim.SGD, {"momentum": math.nan}, ValueError, "momentum"),
    (optim.SGD, {"weight_decay": -1.0}, ValueError, "weight_decay"),
    (optim.SGD, {"weight_decay": math.inf}, ValueError, "weight_decay"),
    (optim.SGD, {"nesterov": "yes"}, TypeError, "nesterov"),
    (optim.RMSprop, {"alpha": 0.0}, ValueError, "alpha"),
    (optim.RMSprop, {"alpha": 1.5}, ValueError, "alpha"),
    (optim.RMSprop, {"eps": -1e-8}, ValueError, "eps"),
    (optim.Adam, {"betas": (0.9,)}, ValueError, "betas"),
    (optim.Adam, {"betas": (0.9, 0.99, 0.5)}, ValueError, "betas"),
    (optim.Adam, {"betas": (0.9, 1.0)}, ValueError, "betas"),
    (optim.Adam, {"betas": (0.9, 5.0)}, ValueError, "betas"),
    (optim.Adam, {"betas": (-0.1, 0.9)}, ValueError, "betas"),
    (optim.Adam, {"betas": 0.9}, TypeError, "betas"),
    (optim.AdamW, {"betas": "ab"}, TypeError, "betas"),
    (optim.Adagrad, {"lr_decay": math.nan}, ValueError, "lr_decay"),
    (optim.Adagrad, {"initial_accumulator_value": -1}, ValueError, "initial_accumulator"),
]


@pytest.mark.parametrize("cls, kw, exc, match", BAD_HYPER)
def test_bad_hyper_parameters_are_refused_at_construction(cls, kw, exc, match):
    with pytest.raises(exc, match=match):
        cls([nn.Parameter(np.ones(2))], **kw)


@pytest.mark.parametrize("cls, kw, exc, match", [c for c in BAD_HYPER if "initial" not in c[3]])
def test_bad_hyper_parameters_are_refused_by_load_state_dict(cls, kw, exc, match):
    opt = cls([nn.Parameter(np.ones(2))])
    sd = opt.state_dict()
    sd["param_groups"][0].update(kw)
    before = dict(opt.param_groups[0])
    with pytest.raises(ValueError, match=match):  # a saved state is data: always ValueError
        opt.load_state_dict(sd)
    assert opt.param_groups[0] == before


def test_bad_per_group_hyper_parameters_are_refused():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="lr"):
        optim.SGD([{"params": [p], "lr": math.nan}])
    with pytest.raises(TypeError, match="unknown hyper-parameter"):
        optim.SGD([{"params": [p], "betas": (0.9, 0.9)}])


def test_astype_after_an_optimizer_raises_and_works_once_it_is_gone():
    model = nn.Sequential(nn.Linear(3, 2))
    opt = optim.SGD(model.parameters())
    with pytest.raises(ValueError, match="held by an optimizer"):
        model.astype("float64")
    assert model.dtype == np.float32
    model.astype("float32")  # no change: allowed
    del opt
    gc.collect()
    model.astype("float64")
    assert model.dtype == np.float64
    opt = optim.SGD(model.parameters(), lr=0.1)
    model[0].weight.grad = np.ones((2, 3))
    w = model[0].weight.data.copy()
    opt.step()
    np.testing.assert_allclose(model[0].weight.data, w - 0.1)
