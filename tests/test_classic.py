"""nnfast.classic: perceptron convergence and non-convergence, Adaline, Hebb."""

import numpy as np
import pytest

from nnfast.classic import Adaline, ConvergenceWarning, Hebbian, Perceptron

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
AND = np.array([0, 0, 0, 1])
XOR = np.array([0, 1, 1, 0])


def test_perceptron_learns_and():
    p = Perceptron(seed=0).fit(X, AND)
    assert p.converged_ and p.score(X, AND) == 1.0 and p.errors_[-1] == 0


def test_perceptron_reports_non_convergence_on_xor():
    with pytest.warns(ConvergenceWarning, match="did not converge after 25 epochs"):
        p = Perceptron(max_epochs=25, seed=0).fit(X, XOR)
    assert not p.converged_ and p.n_epochs_ == 25 and p.score(X, XOR) < 1.0


def test_adaline_delta_rule(rng):
    x = rng.standard_normal((100, 2))
    y = np.where(x @ [1.0, -1.0] + 0.2 > 0, "yes", "no")
    a = Adaline(lr=0.01, max_epochs=30, seed=0).fit(x, y)
    assert a.score(x, y) > 0.95
    assert a.cost_[-1] < a.cost_[0]
    assert set(a.predict(x)) <= {"yes", "no"}


def test_hebbian_bipolar_and():
    xb = 2 * X - 1
    h = Hebbian().fit(xb, AND)
    np.testing.assert_array_equal(h.weights, [2, 2])
    assert h.bias == -2 and h.score(xb, AND) == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="two classes"):
        Perceptron().fit(X, [0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        Perceptron(seed=0).fit(X, AND).predict(np.zeros((2, 3)))
