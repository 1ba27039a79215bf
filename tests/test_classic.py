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


def test_perceptron_and_adaline_updates_by_hand():
    """One epoch in sample order, against the rules written out: Rosenblatt's
    w += lr (t - o) / 2 x on a mistake (bipolar t, o), Widrow-Hoff's w += lr (t - w.x - b) x."""
    x = np.array([[1.0, 2.0], [-1.0, 0.5], [0.5, -1.0]])
    y = np.array([1, 0, 0])  # bipolar targets +1, -1, -1
    p = Perceptron(lr=0.5, max_epochs=1, shuffle=False)
    with pytest.warns(ConvergenceWarning):
        p.fit(x, y)
    # sample 0: w.x + b = 0 -> o = +1 = t, no update; sample 1: 0 -> o = +1 != -1:
    # w = -0.5 * [-1, 0.5] = [0.5, -0.25], b = -0.5; sample 2: 0.25 + 0.25 - 0.5 = 0 -> o = +1
    # != -1: w -= 0.5 * [0.5, -1] -> [0.25, 0.25], b = -1
    np.testing.assert_allclose(p.weights, [0.25, 0.25])
    assert p.bias == -1.0 and p.errors_ == [2]
    a = Adaline(lr=0.1, max_epochs=1, shuffle=False).fit(x, y)
    # err = t - (w.x + b); w += 0.1 err x, b += 0.1 err. sample 0: err = 1 - 0 = 1:
    # w = [0.1, 0.2], b = 0.1; sample 1: w.x + b = -0.1 + 0.1 + 0.1 = 0.1, err = -1.1:
    # w += -0.11 * [-1, 0.5] -> [0.21, 0.145], b = -0.01; sample 2: 0.105 - 0.145 - 0.01
    # = -0.05, err = -0.95: w += -0.095 * [0.5, -1] -> [0.1625, 0.24], b = -0.105.
    # cost: residuals t - (w.x + b) = [0.4625, -0.8525, -0.73625], mean square 0.4942421875
    np.testing.assert_allclose(a.weights, [0.1625, 0.24], rtol=1e-12)
    assert a.bias == pytest.approx(-0.105, rel=1e-12) and a.n_epochs_ == 1
    assert a.cost_ == pytest.approx([0.4942421875], rel=1e-12)


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
    for bad in (0, -3):
        with pytest.raises(ValueError, match="Perceptron: max_epochs must be a whole number"):
            Perceptron(max_epochs=bad)
    for bad in (2.5, 3.0, "3", None):  # never truncated or parsed: a wrong type
        with pytest.raises(TypeError, match="Perceptron: max_epochs must be an int"):
            Perceptron(max_epochs=bad)
    with pytest.raises(ValueError, match="Adaline: lr must be finite and > 0"):
        Adaline(lr=0)
    with pytest.raises(ValueError, match="Hebbian: lr must be finite and > 0"):
        Hebbian(lr=-1)
    with pytest.raises(ValueError, match="Hebbian: lr must be finite and > 0, got nan"):
        Hebbian(lr=float("nan"))
    with pytest.raises(TypeError, match="Hebbian: lr must be a real number"):
        Hebbian(lr="0.1")


@pytest.mark.parametrize("learner", [Perceptron, Adaline, Hebbian])
@pytest.mark.parametrize(
    "x, y, err, what",
    [
        (X, [0, np.nan, np.nan, 0], ValueError, "y holds NaN labels"),
        (X, np.array([0, None, 1, 1], object), TypeError, "y must hold numbers or strings"),
        (X.astype(str), AND, TypeError, "X must hold real numbers, got dtype <U"),
        (X.astype(complex), AND, TypeError, "X must hold real numbers, got dtype complex"),
        (np.where(X == 1, np.nan, X), AND, ValueError, "X holds NaN or infinite values"),
    ],
)  # fmt: skip
def test_bad_data_is_named(learner, x, y, err, what):
    """NaN labels made every target -1 (NaN != NaN), and one class was learned; strings were
    parsed, complex parts dropped, and NaN features learned into Hebb's weights."""
    with pytest.raises(err, match=f"{learner.__name__}: {what}"):
        learner().fit(x, y)


def test_score_takes_labels_of_the_samples_shape():
    """A column of labels was compared by broadcasting: 0.625 for a perfect fit."""
    model = Perceptron(seed=0).fit(X, AND)
    assert model.score(X, AND) == 1.0
    for bad in (AND[:, None], AND[:1]):
        with pytest.raises(ValueError, match=r"Perceptron: y must have shape \(4,\)"):
            model.score(X, bad)


@pytest.mark.parametrize(
    "make, err, what",
    [
        (lambda: Perceptron(seed="a"), TypeError, "Perceptron: seed must be an int, a Generator"),
        (lambda: Perceptron(seed=-1), ValueError, "Perceptron: seed must be a whole number"),
        (lambda: Adaline(seed=1.5), TypeError, "Adaline: seed must be an int"),
        (lambda: Adaline(tol=float("nan")), ValueError, "Adaline: tol must be finite"),
        (lambda: Adaline(tol=-1), ValueError, "Adaline: tol must be finite and >= 0"),
        (lambda: Adaline(tol="0.1"), TypeError, "Adaline: tol must be a real number"),
    ],
)
def test_bad_settings_are_named_at_construction(make, err, what):
    with pytest.raises(err, match=what):
        make()
