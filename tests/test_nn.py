"""nnfast.nn: gradient checks of every module and loss, shapes, modes, state, bad inputs."""

import re

import numpy as np
import pytest

import nnfast
from nnfast import gradcheck, nn, optim


def _x(rng, *shape):
    x = rng.standard_normal(shape)
    x[np.abs(x) < 1e-2] += 0.05  # keep away from kinks (ReLU, step, maxout ties)
    return x


ACT_CASES = [(name, {}) for name in nn.ACTIVATIONS if name not in ("prelu", "maxout")]


@pytest.mark.parametrize("name,kw", ACT_CASES, ids=[c[0] for c in ACT_CASES])
def test_gradcheck_activations(name, kw, rng):
    assert gradcheck(nn.ACTIVATIONS[name](**kw), _x(rng, 4, 5))


@pytest.mark.parametrize(
    "module",
    [
        nn.LeakyReLU(0.2),
        nn.ELU(0.7),
        nn.Softplus(beta=2.0, threshold=3.0),
        nn.GELU("tanh"),
        nn.PReLU(),
        nn.PReLU(3, init=0.1),
        nn.Maxout(2),
        nn.Softmax(),
        nn.LogSoftmax(),
    ],
    ids=repr,
)
def test_gradcheck_parametrised_activations(module, rng):
    assert gradcheck(module, _x(rng, 4, 6) if not isinstance(module, nn.PReLU) else _x(rng, 4, 3))


@pytest.mark.parametrize("activation", [None, "relu", "tanh", "sigmoid", "gelu"])
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_linear(activation, bias, rng):
    assert gradcheck(nn.Linear(5, 3, bias=bias, activation=activation, seed=1), _x(rng, 4, 5))


def test_gradcheck_batchnorm_dropout_flatten_sequential(rng):
    bn = nn.BatchNorm1d(3)
    bn.weight.data[:] = [0.5, 1.5, -1.0]
    bn.bias.data[:] = [0.1, 0.0, -0.2]
    assert gradcheck(bn, _x(rng, 6, 3))
    assert gradcheck(bn.eval(), _x(rng, 6, 3))
    assert gradcheck(nn.Dropout(0.3, seed=3), _x(rng, 5, 4))
    assert gradcheck(nn.Flatten(), _x(rng, 2, 3, 2))
    model = nn.Sequential(
        nn.Linear(4, 6, activation="tanh", seed=0),
        nn.BatchNorm1d(6),
        nn.Dropout(0.2, seed=1),
        nn.Linear(6, 3, seed=2),
        nn.PReLU(3),
    )
    assert gradcheck(model, _x(rng, 5, 4))


def test_gradcheck_losses(rng):
    x = _x(rng, 5, 4)
    assert gradcheck(nn.MSELoss(), x, rng.standard_normal((5, 4)))
    assert gradcheck(nn.MSELoss("sum"), x, rng.standard_normal((5, 4)))
    labels = np.array([0, 3, 1, 1, 2])
    assert gradcheck(nn.CrossEntropyLoss(), x, labels)
    assert gradcheck(nn.CrossEntropyLoss(label_smoothing=0.1), x, labels)
    assert gradcheck(nn.CrossEntropyLoss(reduction="sum"), x, labels)
    probs = rng.dirichlet(np.ones(4), size=5)
    assert gradcheck(nn.CrossEntropyLoss(), x, probs)
    assert gradcheck(nn.BCEWithLogitsLoss(), x, (rng.random((5, 4)) > 0.5).astype(float))


def test_gradcheck_catches_a_wrong_backward(rng):
    class Bad(nn.Tanh):
        def backward(self, grad_out):
            return super().backward(grad_out) * 1.01

    with pytest.raises(nnfast.GradcheckError, match="input"):
        gradcheck(Bad(), _x(rng, 3, 3))


def test_losses_match_references(rng):
    x = rng.standard_normal((6, 5))
    labels = rng.integers(0, 5, 6)
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    assert nn.CrossEntropyLoss()(x, labels) == pytest.approx(-logp[np.arange(6), labels].mean())
    eps = 0.2
    target = np.full((6, 5), eps / 5)
    target[np.arange(6), labels] += 1 - eps
    ls = nn.CrossEntropyLoss(label_smoothing=eps)(x, labels)
    assert ls == pytest.approx(-(target * logp).sum(1).mean())
    t = rng.random((6, 5))
    bce = np.mean(-t * np.log(1 / (1 + np.exp(-x))) - (1 - t) * np.log(1 - 1 / (1 + np.exp(-x))))
    assert nn.BCEWithLogitsLoss()(x, t) == pytest.approx(bce)
    assert nn.MSELoss()(x, t) == pytest.approx(np.mean((x - t) ** 2))
    # stable for huge logits
    big = np.array([[1e4, -1e4]], np.float32)
    assert np.isfinite(nn.BCEWithLogitsLoss()(big, np.array([[0.0, 1.0]])))
    assert np.isfinite(nn.CrossEntropyLoss()(big, np.array([1])))


def test_smoothing_probability_targets_mixes_in_eps_over_c_as_torch(rng):
    """Rows that do not sum to 1 (here 2): the mix was eps / C times the row's sum, torch's is
    eps / C (x [[1, 2, 3]], t [[0, 2, 0]], eps 0.3: 2.8152 against torch's 2.3929)."""
    x, t = np.array([[1.0, 2.0, 3.0]]), np.array([[0.0, 2.0, 0.0]])
    loss = nn.CrossEntropyLoss(label_smoothing=0.3)
    mixed = 0.7 * t + 0.1
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    assert loss(x, t) == pytest.approx(-(mixed * logp).sum(), rel=1e-12)
    assert loss(x, t) == pytest.approx(2.3929, abs=1e-4)
    assert gradcheck(loss, x, t)


def test_linear_forward_matches_numpy_float32(rng):
    lin = nn.Linear(7, 4, activation="relu", seed=0)
    x = rng.standard_normal((9, 7)).astype(np.float32)
    y = lin(x)
    assert y.dtype == np.float32
    ref = np.maximum(x @ lin.weight.data.T + lin.bias.data, 0)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_backward_accumulates_and_zero_grad(rng):
    lin = nn.Linear(3, 2, seed=0)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    lin(x)
    lin.backward(dy)
    g1 = lin.weight.grad.copy()
    lin.backward(dy)
    np.testing.assert_allclose(lin.weight.grad, 2 * g1, rtol=1e-6)
    lin.zero_grad()
    assert not lin.weight.grad.any() and not lin.bias.grad.any()


def test_dropout_train_and_eval(rng):
    d = nn.Dropout(0.5, seed=0)
    x = np.ones((200, 50), np.float32)
    y = d(x)
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert 0.4 < np.mean(y == 0) < 0.6
    np.testing.assert_array_equal(d.backward(x), y)
    d.eval()
    assert d(x) is x


def test_batchnorm_running_stats(rng):
    bn = nn.BatchNorm1d(3, momentum=0.5)
    x = rng.standard_normal((8, 3)) * 2 + 1
    y = bn(x)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(y.var(0), 1, atol=1e-3)
    np.testing.assert_allclose(bn.running_mean, 0.5 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.5 + 0.5 * x.var(0, ddof=1), rtol=1e-5)
    bn.eval()
    expect = (x - bn.running_mean) / np.sqrt(bn.running_var + bn.eps)
    np.testing.assert_allclose(bn(x), expect, rtol=1e-5)


def test_parameters_state_dict_and_repr():
    nnfast.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(12, 8, activation="relu"), nn.BatchNorm1d(8), nn.Linear(8, 3)
    )
    names = [n for n, _ in model.named_parameters()]
    assert names == ["1.weight", "1.bias", "2.weight", "2.bias", "3.weight", "3.bias"]
    assert model.parameter_count() == 12 * 8 + 8 + 16 + 8 * 3 + 3
    sd = model.state_dict()
    assert "2.running_mean" in sd and "2.num_batches_tracked" in sd
    sd["1.weight"][:] = 0  # a copy: the model is untouched
    assert model[1].weight.data.any()
    model.load_state_dict(sd)
    assert not model[1].weight.data.any()
    with pytest.raises(ValueError, match="shape"):
        model.load_state_dict({**sd, "3.bias": np.zeros(4)})
    with pytest.raises(ValueError, match="missing"):
        model.load_state_dict({k: v for k, v in sd.items() if k != "3.bias"})
    text = repr(model)
    assert "Linear(12, 8, activation='relu')" in text and "-> (N, 3)" in text
    assert "27 params" in text and "total" in text
    model(np.zeros((2, 3, 4), np.float32))
    assert "-> (N, 12)" in repr(model)  # Flatten's output shape is known once an input was seen


def test_repr_of_a_composite_module_lists_its_children():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(4, 3)
            self.dec = nn.Sequential(nn.Linear(3, 2), nn.ReLU())

    lines = repr(Net()).splitlines()
    assert lines[0] == "Net(" and lines[-1] == ")  total 23 params"
    assert lines[1] == "  (enc): Linear(4, 3)  15 params"
    assert (
        lines[2] == "  (dec): Sequential(" and "    (0): Linear(3, 2)  -> (N, 2)  8 params" in lines
    )
    assert repr(nn.Conv2d(1, 2, 3, activation="gelu")).count("\n") == 0  # its _act is private


def test_train_eval_propagate():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_seeding_is_reproducible():
    nnfast.manual_seed(42)
    a = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2))
    nnfast.manual_seed(42)
    b = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2))
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)
    assert not np.array_equal(a[0].weight.data[:2, :2], a[1].weight.data[:2, :2])
    w1, w2 = nn.Linear(5, 4, seed=3).weight.data, nn.Linear(5, 4, seed=3).weight.data
    np.testing.assert_array_equal(w1, w2)


def test_initialisers():
    w = np.empty((300, 200))
    nn.init.xavier_uniform_(w, rng=0)
    assert np.abs(w).max() <= np.sqrt(6 / 500)
    assert w.std() == pytest.approx(np.sqrt(2 / 500), rel=0.05)
    nn.init.kaiming_normal_(w, nonlinearity="relu", rng=0)
    assert w.std() == pytest.approx(np.sqrt(2 / 200), rel=0.05)
    nn.init.xavier_normal_(w, rng=0)
    assert w.std() == pytest.approx(np.sqrt(2 / 500), rel=0.05)
    nn.init.kaiming_uniform_(w, rng=0)  # gain sqrt(2) (a = 0): U(-sqrt(6 / fan_in), ...)
    assert np.abs(w).max() <= np.sqrt(6 / 200)
    assert w.std() == pytest.approx(np.sqrt(2 / 200), rel=0.05)
    lin = nn.Linear(200, 300, seed=0).weight.data  # torch's a = sqrt(5): U(-1/sqrt(in), ...)
    assert np.abs(lin).max() <= 1 / np.sqrt(200)
    assert lin.std() == pytest.approx(1 / np.sqrt(3 * 200), rel=0.05)
    nn.init.orthogonal_(w, rng=0)
    np.testing.assert_allclose(w.T @ w, np.eye(200), atol=1e-10)
    nn.init.zeros_(w)
    assert not w.any()
    p = nn.Parameter(np.empty((3, 4), np.float32))
    nn.init.ones_(p)
    assert (p.data == 1).all()


@pytest.mark.parametrize(
    "layer,x,match",
    [
        (nn.Linear(4, 2), np.zeros((3, 5)), r"Linear\(4, 2\): expected input of shape \(N, 4\)"),
        (nn.Linear(4, 2), np.zeros(4), r"\(N, 4\).*got shape \(4,\)"),
        (nn.BatchNorm1d(3), np.zeros((2, 4)), r"BatchNorm1d.*\(N, 3\)"),
        (nn.Maxout(3), np.zeros((2, 4)), r"Maxout.*\(N, C \* 3"),
        (nn.PReLU(3), np.zeros((2, 4)), r"PReLU.*\(N, 3"),
    ],
)
def test_bad_input_names_layer_and_shape(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer(x)


@pytest.mark.parametrize(
    "layer",
    [nn.Linear(3, 2), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.PReLU(), nn.Maxout(1), nn.Softmax(),
     nn.BatchNorm1d(3), nn.BatchNorm2d(1)],
    ids=repr,
)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.complex64, object, "U3"])
def test_input_that_holds_no_real_numbers_is_refused(layer, dtype):
    """A float conversion would drop complex parts with only a warning."""
    shape = (2, 1, 5, 5) if "2d" in type(layer).__name__.lower() else (2, 3)
    with pytest.raises(TypeError, match=re.escape(f"{layer!r}: input must hold real numbers")):
        layer(np.ones(shape).astype(dtype))


@pytest.mark.parametrize("layer, x_shape", [(nn.Linear(3, 2), (2, 3)), (nn.Tanh(), (2, 3)),
                                            (nn.Conv2d(1, 2, 3), (2, 1, 5, 5))])  # fmt: skip
def test_a_gradient_that_holds_no_real_numbers_is_refused(layer, x_shape):
    y = layer(np.ones(x_shape, np.float32))
    with pytest.raises(TypeError, match=re.escape(f"{layer!r}: grad_out must hold real")):
        layer.backward(np.ones(y.shape, np.complex64))


@pytest.mark.parametrize("layer", [nn.Softmax(dim=2), nn.LogSoftmax(dim=-3)], ids=repr)
def test_softmax_dim_out_of_range_names_the_layer(layer):
    with pytest.raises(ValueError, match=re.escape(f"{layer!r}: dim {layer.dim} is out of range")):
        layer(np.ones((2, 3), np.float32))


def test_save_refuses_what_is_not_a_module(tmp_path):
    with pytest.raises(TypeError, match="save: model must be an nnfast Module, got int"):
        nnfast.io.save(5, tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


_GRAD_CASES = [
    (nn.Linear(3, 2), (4, 3), (4, 3)),
    (nn.Linear(3, 2, activation="tanh"), (4, 3), (3, 2)),
    (nn.Flatten(), (2, 2, 3), (2, 5)),
    (nn.Dropout(0.5), (2, 3), (2, 4)),
    (nn.BatchNorm1d(3), (4, 3), (4, 2)),
    (nn.Softmax(), (2, 3), (2, 4)),
    (nn.LogSoftmax(), (2, 3), (2, 4)),
    (nn.Maxout(2), (2, 4), (2, 3)),
    (nn.PReLU(), (2, 4), (2, 3)),
    (nn.Tanh(), (2, 4), (2, 3)),
]


@pytest.mark.parametrize("layer,x_shape,g_shape", _GRAD_CASES, ids=lambda c: repr(c))
def test_backward_refuses_a_wrong_grad_shape_and_changes_nothing(layer, x_shape, g_shape, rng):
    layer.train()
    y = layer(rng.random(x_shape).astype(np.float32))
    grads = [p.grad.copy() for p in layer.parameters()]
    want = re.escape(f"{layer!r}: grad_out has shape {g_shape}, expected {y.shape}")
    with pytest.raises(ValueError, match=want):
        layer.backward(np.zeros(g_shape))
    for p, g in zip(layer.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
    if not isinstance(layer, nn.Dropout):  # Dropout without a mask is the identity
        with pytest.raises(RuntimeError, match="before forward"):
            type(layer)(**layer.get_config()).backward(y)


def test_backward_converts_the_gradient_to_the_layer_dtype():
    for layer in (nn.PReLU(3), nn.PReLU(), nn.Tanh(), nn.Linear(3, 3)):
        layer(np.ones((2, 3), np.float32))
        for g in (np.ones((2, 3)), [[1, 1, 1], [1, 1, 1]]):  # float64, then ints in a list
            assert layer.backward(g).dtype == np.float32


@pytest.mark.parametrize("loss", [nn.MSELoss(), nn.CrossEntropyLoss(), nn.BCEWithLogitsLoss()],
                         ids=repr)  # fmt: skip
@pytest.mark.parametrize("what", ["input", "target"])
@pytest.mark.parametrize("dtype", [np.complex64, object, "U3"])
def test_losses_refuse_what_holds_no_real_numbers(loss, what, dtype):
    """Complex parts were dropped (MSELoss of 1+5j against 1 was 0), strings parsed and None
    made the loss NaN; nnfast.functional refused them all already."""
    x, t = np.zeros((2, 3)), np.zeros((2, 3))
    bad = {"input": x, "target": t}
    bad[what] = bad[what].astype(dtype)
    with pytest.raises(TypeError, match=re.escape(f"{loss!r}: {what} must hold real numbers")):
        loss(bad["input"], bad["target"])


@pytest.mark.parametrize("loss", [nn.MSELoss(), nn.CrossEntropyLoss(), nn.BCEWithLogitsLoss()],
                         ids=repr)  # fmt: skip
@pytest.mark.parametrize("target", [np.zeros((0, 3)), np.zeros(0, int)])
def test_losses_refuse_an_empty_batch(loss, target):
    """CrossEntropyLoss named an internal function for labels and returned -0.0 for class
    probabilities."""
    if target.ndim == 1 and not isinstance(loss, nn.CrossEntropyLoss):
        target = target.astype(float).reshape(0, 3)
    with pytest.raises(ValueError, match=re.escape(f"{loss!r}: the batch is empty")):
        loss(np.zeros((0, 3)), target)


def test_bad_loss_inputs():
    with pytest.raises(ValueError, match="labels must be in"):
        nn.CrossEntropyLoss()(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="CrossEntropyLoss: target must be integer labels"):
        nn.CrossEntropyLoss()(np.zeros((2, 3)), np.array([True, False]))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: logits of shape \(2, 0\) have no"):
        nn.CrossEntropyLoss()(np.zeros((2, 0)), np.array([0, 0]))
    with pytest.raises(ValueError, match="shape"):
        nn.MSELoss()(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="unknown activation"):
        nn.Linear(2, 2, activation="swishy")


def _bn_model():
    nnfast.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


@pytest.mark.parametrize(
    "key,bad",
    [
        ("2.bias", np.full(2, "x")),
        ("1.num_batches_tracked", np.array("x")),
        ("1.running_var", np.array([None] * 4)),
    ],
    ids=["str-param", "str-buffer", "object-buffer"],
)
def test_failed_load_state_dict_changes_nothing(key, bad):
    model = _bn_model()
    before = model.state_dict()
    # every other value differs, so a load that wrote anything before failing shows
    other = {k: v + 1 for k, v in before.items()}
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        model.load_state_dict({**other, key: bad})
    after = model.state_dict()
    assert all(np.array_equal(after[k], before[k]) for k in before)


def test_load_state_dict_converts_to_the_model_dtype():
    model = _bn_model()
    sd = {
        k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in model.state_dict().items()
    }
    model.load_state_dict(sd)
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert model[1].num_batches_tracked.dtype == np.int64


def _step(model, opt):
    opt.zero_grad()
    model(np.arange(6, dtype=np.float32).reshape(2, 3) ** 2)
    model.backward(np.arange(4, dtype=np.float32).reshape(2, 2))
    opt.step()


def test_astype_to_the_same_dtype_keeps_training():
    m = nn.Sequential(nn.Linear(3, 2, seed=0))
    opt = optim.SGD(m.parameters(), lr=0.1)
    m.astype("float32")
    before = m[0].weight.data.copy()
    _step(m, opt)
    assert not np.array_equal(m[0].weight.data, before)


def test_astype_after_building_an_optimizer_is_refused():
    m = nn.Sequential(nn.Linear(3, 2, seed=0), nn.BatchNorm1d(2))
    opt = optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="before creating the optimizer"):
        m.astype("float64")
    assert all(p.dtype == np.float32 for p in m.parameters())
    assert m[1].running_mean.dtype == np.float32
    before = m[0].weight.data.copy()
    _step(m, opt)  # still trains
    assert not np.array_equal(m[0].weight.data, before)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: nn.ELU(alpha=-0.5), "ELU: alpha must be finite and >= 0"),
        (lambda: nn.LeakyReLU(negative_slope=float("inf")), "LeakyReLU: negative_slope"),
        (lambda: nn.Softplus(beta=0.0), "Softplus: beta must be finite and > 0"),
        (lambda: nn.Softplus(threshold=float("nan")), "Softplus: threshold must be finite"),
    ],
)
def test_activation_parameters_are_checked_when_built(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "args,err,match",
    [
        ((0, 3), ValueError, "Linear: in_features must be"),
        ((4, -1), ValueError, "Linear: out_features must be"),
        ((2.5, 3), TypeError, "Linear: in_features must be a whole number"),
        (("4", 3), TypeError, "Linear: in_features"),
        ((True, 3), TypeError, "Linear: in_features"),
    ],
)
def test_linear_sizes_must_be_whole_numbers(args, err, match):
    with pytest.raises(err, match=match):
        nn.Linear(*args)


def test_linear_sizes_take_numpy_integers():
    layer = nn.Linear(np.int64(4), np.int32(3))
    assert (layer.in_features, layer.out_features) == (4, 3)
    assert type(layer.in_features) is int and type(layer.out_features) is int


def test_a_deep_copied_model_is_its_own_and_an_optimizer_refuses_copies():
    """A copied model and optimizer trained nothing (the copy's parameters were not the
    copied optimizer's buffers); a copied model listed the original's optimizer and refused
    astype; pickling failed on a WeakSet."""
    import copy
    import pickle

    model = nn.Sequential(nn.Linear(3, 2))
    opt = nnfast.optim.Adam(model.parameters())
    with pytest.raises(TypeError, match="Adam cannot be copied or pickled: build one over"):
        copy.deepcopy((model, opt))
    with pytest.raises(TypeError, match="Adam cannot be copied or pickled"):
        pickle.dumps(opt)
    twin = copy.deepcopy(model)
    assert not twin[0].weight.optimizers
    twin.astype("float64")  # the original's optimizer holds the original only
    assert model[0].weight.dtype == np.float32
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back[0].weight.data, model[0].weight.data)
    opt2 = nnfast.optim.Adam(back.parameters())
    opt2.load_state_dict(opt.state_dict())


def test_a_parameter_never_shares_its_gradient_with_its_data():
    w = np.ones(3, np.float32)
    p = nn.Parameter(w, grad=w)
    p.zero_grad()
    assert not p.grad.any() and p.data.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("make", [lambda: nn.Linear(8, 5), lambda: nn.Conv2d(8, 5, 3)])
def test_a_weight_from_a_strided_view_and_a_weight_of_another_dtype(make, rng):
    """A Parameter copies a transposed or strided array to C order (Conv2d's kernels refused
    it); a weight and bias of two dtypes are a TypeError naming the layer."""
    m, ref = make(), make()
    x = rng.standard_normal((2, 8, 6, 6) if isinstance(m, nn.Conv2d) else (2, 8), np.float32)
    w = rng.standard_normal(m.weight.shape[::-1], np.float32)
    m.weight = nn.Parameter(w.transpose())
    assert m.weight.data.flags.c_contiguous
    ref.weight.data = w.transpose()
    ref.bias.data = m.bias.data
    np.testing.assert_array_equal(m(x), ref(x))
    m.weight = nn.Parameter(w.transpose().astype(np.float64))
    with pytest.raises(TypeError, match=r"weight is float64 but bias is float32"):
        m(x)


@pytest.mark.parametrize(
    "act, err, what",
    [
        (lambda m: m.train("False"), TypeError, "train: mode must be True or False"),
        (lambda m: m.train(None), TypeError, "train: mode must be True or False"),
        (lambda m: setattr(m[0], "weight", np.zeros((2, 3))), TypeError,
         r"Linear.weight is a parameter: assign a Parameter \(or to .weight.data\)"),
        (lambda m: setattr(m[0], "bias", 0.0), TypeError, "Linear.bias is a parameter"),
        (lambda m: m.append(3), TypeError, "Sequential.append: expected a Module, got int"),
        (lambda m: setattr(m, "0", "relu"), TypeError, "Sequential: layer 0 must be a Module"),
        (lambda m: setattr(m, "5", nn.ReLU()), ValueError, "Sequential: there is no layer 5"),
        (lambda m: m[5], IndexError, "Sequential: index 5 is out of range for 1 layers"),
        (lambda m: nn.register(3), TypeError, "register: expected a Module subclass"),
    ],
)  # fmt: skip
def test_the_module_api_names_what_it_cannot_take(act, err, what):
    """'False' trained; an array for a weight vanished from parameters() and failed at
    forward; appended strings failed at forward."""
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(err, match=what):
        act(model)
    assert len(model) == 1 and model.training and isinstance(model[0].weight, nn.Parameter)


def test_a_layer_set_by_name_is_the_one_forward_runs():
    """parameters() saw the new layer while forward ran the old one."""
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    new = nn.Linear(2, 2)
    model.__setattr__("1", new)  # as setattr(model, "1", new)
    assert model[1] is new and any(p is new.weight for p in model.parameters())
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(model(x), new(model[0](x)))


def test_register_refuses_a_name_taken_by_another_class():
    """A user class named Linear replaced nnfast's: every nn.Linear model became unsavable."""

    class Linear(nn.Module):
        pass

    with pytest.raises(ValueError, match=r"register: the name Linear is nnfast\.nn\.layers"):
        nn.register(Linear)
    assert nn.MODULES["Linear"] is nn.Linear


def test_a_partial_state_dict_of_torch_names_is_not_read_as_nnfast_names():
    """strict=False with torch names plus an extra key loaded src[1] into dst[2]: the keys
    were read as nnfast names, which overlap torch's (0, 2, ...)."""

    def mk(s):
        return nn.Sequential(nn.Linear(4, 8, activation="relu", seed=s),
                             nn.Linear(8, 8, activation="relu", seed=s + 1),
                             nn.Linear(8, 3, seed=s + 2))  # fmt: skip

    src, dst = mk(0), mk(10)
    names = src.torch_state_dict_names()  # nnfast name -> torch name: 1.weight -> 2.weight
    torch_sd = {t: src.state_dict()[n] for n, t in names.items()}
    with pytest.raises(ValueError, match=r"\['2.bias', '2.weight'\] name different arrays"):
        dst.load_state_dict({**torch_sd, "head.extra": np.zeros(1)}, strict=False)
    np.testing.assert_array_equal(dst[2].weight.data, mk(10)[2].weight.data)  # unchanged
    # one naming alone, with a key of neither: loaded, and what was not is reported
    result = dst.load_state_dict({"0.weight": src[0].weight.data, "x": np.zeros(1)},
                                 strict=False)  # fmt: skip
    assert result.unexpected_keys == ["x"] and "0.bias" in result.missing_keys
    np.testing.assert_array_equal(dst[0].weight.data, src[0].weight.data)
    assert dst.load_state_dict(torch_sd) == ([], [])


@pytest.mark.parametrize(
    "make, err, what",
    [
        (lambda: nn.Sequential(nn.Linear(2, 2)).astype(None), TypeError, "got dtype None"),
        (lambda: nn.Linear(2, 2, dtype=None), TypeError, "got dtype None"),
        (lambda: nn.Conv2d(2, 2, 3, activation=nn.PReLU(2)), TypeError,
         "Conv2d: activation must be a name such as 'relu' or 'prelu', got PReLU"),
        (lambda: nn.LeakyReLU(None), TypeError, "LeakyReLU: negative_slope must be a real"),
        (lambda: nn.LeakyReLU("0.1"), TypeError, "LeakyReLU: negative_slope must be a real"),
        (lambda: nn.Softplus(beta="2"), TypeError, "Softplus: beta must be a real number"),
    ],
)  # fmt: skip
def test_layer_settings_of_the_wrong_kind_are_named(make, err, what):
    """astype(None) converted to float64 (np.dtype(None)); a PReLU instance as a Conv2d's
    activation ran but could not be saved; '0.1' was parsed and None failed in float()."""
    with pytest.raises(err, match=re.escape(what) if "(" not in what else what):
        make()


def test_save_refuses_a_module_its_file_could_not_rebuild(tmp_path):
    """It wrote the file, whose load then failed: 'missing 1 required positional argument'."""

    @nn.register
    class Scaled(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, x):
            return self.k * x

    try:
        with pytest.raises(ValueError, match=r"save: Scaled cannot be rebuilt from its get_conf"):
            nnfast.io.save(nn.Sequential(Scaled(2)), tmp_path / "m.npz")
        assert not (tmp_path / "m.npz").exists()
    finally:
        del nn.MODULES["Scaled"]
