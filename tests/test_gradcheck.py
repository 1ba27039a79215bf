"""nnfast.gradcheck itself: it passes a correct backward, fails a wrong one, and fails (never
passes) when the output or a gradient is NaN or inf."""

import numpy as np
import pytest

import nnfast
from nnfast import nn


class _Square(nn.Module):
    """y = x^2 with a configurable backward: correct, wrong, or NaN; the forward returns
    ``above`` where x > 1 (a NaN or inf there puts one into the numeric gradient only)."""

    def __init__(self, backward="correct", above=None):
        super().__init__()
        self.kind, self.above = backward, above

    def forward(self, x):
        self._x = x
        y = x * x
        return y if self.above is None else np.where(x > 1.0, self.above, y)

    def backward(self, grad_out):
        g = {"correct": 2.0, "wrong": 3.0, "nan": np.nan}[self.kind]
        return grad_out * g * self._x


def test_passes_and_fails(rng):
    x = rng.standard_normal((3, 4))
    assert nnfast.gradcheck(_Square(), x)
    with pytest.raises(nnfast.GradcheckError, match=r"_Square: d/dinput\[\d+, \d+\] analytic"):
        nnfast.gradcheck(_Square("wrong"), x)
    assert nnfast.gradcheck(_Square("wrong"), x, raise_exception=False) is False


def _x_at_kink(rng):
    x = rng.uniform(-0.5, 0.5, (3, 4))
    x[1, 2] = 1.0  # finite output; x + eps gives `above`
    return x


@pytest.mark.parametrize(
    "make, x, message",
    [
        (lambda: _Square(), "nan_input", r"the output\[1, 2\] is nan \(not finite\)"),
        (lambda: nn.Softplus(), "nan_input", r"Softplus: the output\[1, 2\] is nan"),
        (lambda: nn.Linear(4, 2), "nan_input", r"Linear: the output\[1, \d\] is nan"),
        (lambda: _Square("nan"), "finite", r"analytic d/dinput\[0, 0\] is nan"),
        (lambda: _Square(above=np.nan), "kink", r"numeric d/dinput\[1, 2\] is nan"),
        (lambda: _Square(above=np.inf), "kink", r"numeric d/dinput\[1, 2\] is inf"),
    ],
)
def test_nonfinite_fails(rng, make, x, message):
    x = {
        "finite": rng.standard_normal((3, 4)),
        "nan_input": np.where(np.arange(12).reshape(3, 4) == 6, np.nan, 0.5),
        "kink": _x_at_kink(rng),
    }[x]
    with pytest.raises(nnfast.GradcheckError, match=message):
        nnfast.gradcheck(make(), x)
    assert nnfast.gradcheck(make(), x, raise_exception=False) is False


def test_nonfinite_loss_fails():
    x = np.array([[0.0, np.inf]])
    with pytest.raises(nnfast.GradcheckError, match=r"MSELoss: the output is inf \(not finite\)"):
        nnfast.gradcheck(nn.MSELoss(), x, np.zeros_like(x))


@pytest.mark.parametrize(
    "kw, err, what",
    [({"atol": float("nan")}, ValueError, "atol must be finite"),
     ({"rtol": float("nan")}, ValueError, "rtol must be finite"),
     ({"eps": 0}, ValueError, "eps must be finite and > 0"),
     ({"eps": "1e-6"}, TypeError, "eps must be a real number"),
     ({"seed": "a"}, TypeError, "seed must be an int")],
)  # fmt: skip
def test_gradcheck_checks_its_settings(kw, err, what):
    """A NaN tolerance passed a backward that returned zeros (err > NaN is False); eps 0
    divided by zero even with raise_exception=False."""
    with pytest.raises(err, match=f"gradcheck: {what}"):
        nnfast.gradcheck(nn.Tanh(), np.ones((2, 3)), raise_exception=False, **kw)


def test_gradcheck_names_what_is_not_a_module():
    with pytest.raises(TypeError, match="gradcheck: expected an nnfast Module or loss, got ufunc"):
        nnfast.gradcheck(np.tanh, np.ones((2, 3)))
