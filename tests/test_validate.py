"""One validation policy (nnfast._validate): a wrong type is a TypeError, a bad value a
ValueError, and numbers are never truncated (int(2.5)) or parsed ("3")."""

import math

import numpy as np
import pytest

import nnfast
from nnfast import _validate, cli, models, nn, optim
from nnfast.data import DataLoader
from nnfast.train import evaluate, predict


@pytest.mark.parametrize("good", [0, 3, np.int64(3), np.uint8(3), 10**30])
def test_integer_takes_integers(good):
    assert _validate.integer(good, "n", "f", low=0) == int(good)
    assert type(_validate.integer(good, "n", "f")) is int


@pytest.mark.parametrize("bad", [2.5, 2.0, np.float64(2), "3", None, True, np.True_, [3]])
def test_integer_refuses_other_types(bad):
    with pytest.raises(TypeError, match=r"^f: n must be an int, got"):
        _validate.integer(bad, "n", "f")


def test_integer_ranges():
    with pytest.raises(ValueError, match=r"^f: n must be a whole number >= 1, got 0$"):
        _validate.integer(0, "n", "f", low=1)
    with pytest.raises(ValueError, match=r"in \[1, 8\], got 9"):
        _validate.integer(9, "n", "f", low=1, high=8)
    with pytest.raises(ValueError, match=r"digits"):  # a huge number is not printed whole
        _validate.integer(-(10**400), "n", "f", low=0)


def test_real():
    assert _validate.real(np.float32(0.5), "x", "f", low=0.0, high=1.0) == 0.5
    assert _validate.real(3, "x", "f") == 3.0
    for bad in ("0.1", None, True, 1j, [1.0]):
        with pytest.raises(TypeError, match=r"^f: x must be a real number"):
            _validate.real(bad, "x", "f")
    for bad, kw in [
        (math.nan, {}),
        (math.inf, {}),
        (-1.0, {"low": 0.0}),
        (0.0, {"low": 0.0, "low_open": True}),
        (1.0, {"high": 1.0, "high_open": True}),
    ]:
        with pytest.raises(ValueError, match=r"^f: x must be"):
            _validate.real(bad, "x", "f", **kw)
    assert _validate.real(math.inf, "x", "f", finite=False) == math.inf


def test_one_of():
    assert _validate.one_of("min", "mode", "f", ("min", "max")) == "min"
    with pytest.raises(ValueError, match=r"\['min', 'max'\], got 'median'"):
        _validate.one_of("median", "mode", "f", ("min", "max"))
    with pytest.raises(TypeError):
        _validate.one_of(None, "mode", "f", ("min", "max"))


def _sched(cls, **kw):
    return cls(optim.SGD([nn.Parameter(np.zeros(2))], lr=0.1), **kw)


# where the old code truncated (int(2.5)) or compared a string (bare TypeError)
CALLS = [
    (lambda: nn.PReLU(2.5), TypeError, "PReLU: num_parameters must be an int"),
    (lambda: nn.PReLU(init="0.1"), TypeError, "PReLU: init must be a real number"),
    (lambda: nn.Maxout(2.0), TypeError, "Maxout: pool_size must be an int"),
    (lambda: nn.Maxout(0), ValueError, "Maxout: pool_size must be a whole number >= 1"),
    (lambda: nn.Flatten(1.5), TypeError, "Flatten: start_dim must be an int"),
    (lambda: nn.Softmax(dim=1.0), TypeError, "Softmax: dim must be an int"),
    (lambda: nn.LogSoftmax(dim="1"), TypeError, "LogSoftmax: dim must be an int"),
    (lambda: nn.Dropout("0.5"), TypeError, "Dropout: p must be a real number"),
    (lambda: nn.Dropout(1.0), ValueError, r"Dropout: p must be finite and in \[0, 1\)"),
    (lambda: nn.Dropout(math.nan), ValueError, "Dropout: p must be"),
    (
        lambda: nn.CrossEntropyLoss(label_smoothing="0.1"),
        TypeError,
        "CrossEntropyLoss: label_smoothing must be a real number",
    ),
    (lambda: _sched(optim.StepLR, step_size=1.5), TypeError, "StepLR: step_size must be an int"),
    (lambda: _sched(optim.StepLR, step_size=0), ValueError, "StepLR: step_size must be a whole"),
    (lambda: _sched(optim.CosineAnnealingLR, T_max=2.0), TypeError, "CosineAnnealingLR: T_max"),
    (lambda: _sched(optim.LinearLR, total_iters="5"), TypeError, "LinearLR: total_iters"),
    (lambda: _sched(optim.LinearWarmup, warmup_steps=0.5), TypeError, "LinearWarmup: warmup"),
    (lambda: _sched(optim.ReduceLROnPlateau, mode="median"), ValueError, "ReduceLROnPlateau: mode"),
    (
        lambda: _sched(optim.ReduceLROnPlateau, patience=1.5),
        TypeError,
        "ReduceLROnPlateau: patience",
    ),
    (lambda: _sched(optim.ReduceLROnPlateau, factor=1.0), ValueError, "ReduceLROnPlateau: factor"),
    (lambda: nnfast.manual_seed("3"), TypeError, "manual_seed: seed must be an int"),
    (lambda: nnfast.manual_seed(-1), ValueError, "manual_seed: seed must be a whole number"),
    (lambda: nnfast.set_num_threads(2.0), TypeError, "set_num_threads: n must be an int"),
    (lambda: DataLoader(np.zeros(4), batch_size=2.0), TypeError, "DataLoader: batch_size"),
    (lambda: nn.Linear(2.0, 3), TypeError, "Linear: in_features must be"),
    (lambda: nn.Conv2d(1, 2, 2.5), TypeError, "Conv2d: kernel_size must be"),
]


@pytest.mark.parametrize("call, error, match", CALLS)
def test_one_policy_everywhere(call, error, match):
    with pytest.raises(error, match=f"^{match}"):
        call()


@pytest.mark.parametrize("fn", [predict, evaluate])
def test_predict_and_evaluate_refuse_batch_size_zero(fn):
    model = nn.Sequential(nn.Linear(3, 2))
    args = (np.zeros((4, 3), np.float32),)
    if fn is evaluate:
        args = (nn.CrossEntropyLoss(), (args[0], np.zeros(4, np.int64)))
    with pytest.raises(ValueError, match=f"^{fn.__name__}: batch_size must be a whole number >= 1"):
        fn(model, *args, batch_size=0)


def test_dropout_backward_before_forward_raises():
    d = nn.Dropout(0.5)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        d.backward(np.ones(3))
    d.eval()
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(d.backward(d(x)), x)  # eval: the identity, checked shape
    with pytest.raises(ValueError, match="grad_out has shape"):
        d.backward(np.ones(4))


def test_cli_predict_refuses_nan_pixels(tmp_path, capsys):
    path = tmp_path / "m.npz"
    nnfast.io.save(models.mlp(hidden=(8,)), path)
    x = np.full((1, 28, 28), 0.5, np.float32)
    x[0, 3, 4] = np.nan
    np.save(tmp_path / "nan.npy", x)
    assert cli.main(["predict", str(path), str(tmp_path / "nan.npy")]) == 1
    err = capsys.readouterr().err
    assert "nan.npy" in err and "NaN or infinite" in err
