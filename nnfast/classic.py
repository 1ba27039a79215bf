"""Classic single-unit learners: Rosenblatt's perceptron, Widrow-Hoff's Adaline, Hebb's rule.

Each is a binary classifier with a scikit-learn shape: ``fit(X, y)``, ``predict(X)``,
``score(X, y)``; ``y`` holds any two class labels. The online rules loop over samples (that is
the algorithm), each update vectorised over the features.

On data that is not linearly separable (XOR) the perceptron cannot converge: it stops after
``max_epochs``, sets ``converged_ = False`` and warns with ``ConvergenceWarning``.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import _validate
from ._random import generator


class ConvergenceWarning(UserWarning):
    """A learner stopped at its epoch limit without converging."""


def _check_rule(name, lr, max_epochs=1):
    """(lr, max_epochs) as float and int, or ValueError naming the learner."""
    lr = _validate.real(lr, "lr", name, low=0.0, low_open=True)
    return lr, _validate.integer(max_epochs, "max_epochs", name, low=1)


def _check_seed(name, seed):
    """None, a numpy Generator, or an int >= 0 (what generator() takes), else named."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    return _validate.integer(seed, "seed", name, low=0, kinds="an int, a Generator or None")


def _features(name, X):
    """X as float64, or TypeError / ValueError naming the learner: strings were parsed,
    complex parts dropped, and NaN learned into the weights."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name}: X must hold real numbers, got dtype {X.dtype}")
    X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name}: X holds NaN or infinite values")
    return X


def _labels(name, y, n):
    """y of shape (n,), of numbers without NaN or of strings, else named."""
    y = np.asarray(y)
    if y.dtype.kind not in "biufUS":
        raise TypeError(f"{name}: y must hold numbers or strings, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{name}: y must have shape ({n},), got {y.shape}")
    if y.dtype.kind == "f" and np.isnan(y).any():  # NaN != NaN: its samples matched no class
        raise ValueError(f"{name}: y holds NaN labels")
    return y


class _Binary:
    def _prepare(self, X, y):
        name = type(self).__name__
        X = _features(name, X)
        if X.ndim != 2:
            raise ValueError(f"{name}: X must be 2-D (samples, features), got {X.shape}")
        y = _labels(name, y, len(X))
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(
                f"{type(self).__name__}: needs exactly two classes, got {len(classes)}: {classes}"
            )
        self.classes_ = classes
        return X, np.where(y == classes[1], 1.0, -1.0)  # bipolar targets

    def _check_X(self, X):
        if not hasattr(self, "weights"):
            raise RuntimeError(f"{type(self).__name__}: call fit before predict")
        X = _features(type(self).__name__, X)
        if X.ndim != 2 or X.shape[1] != len(self.weights):
            raise ValueError(
                f"{type(self).__name__}: expected X of shape (N, {len(self.weights)}), got "
                f"{X.shape}"
            )
        return X

    def decision_function(self, X):
        """The net input w . x + b for each sample."""
        return self._check_X(X) @ self.weights + self.bias

    def predict(self, X):
        return np.where(self.decision_function(X) >= 0, self.classes_[1], self.classes_[0])

    def score(self, X, y):
        """Fraction of samples classified correctly."""
        predicted = self.predict(X)
        return float(np.mean(predicted == _labels(type(self).__name__, y, len(predicted))))


class Perceptron(_Binary):
    """Rosenblatt (1958): a threshold unit, w += lr (t - o) x on each misclassified sample.

    Converges in finitely many updates on linearly separable data (Novikoff's theorem).
    Otherwise it stops after ``max_epochs`` passes with ``converged_ = False``.

    Attributes: ``weights``, ``bias``, ``converged_``, ``n_epochs_``, ``errors_`` (per epoch).
    """

    def __init__(self, lr=1.0, max_epochs=100, shuffle=True, seed=None):
        self.lr, self.max_epochs = _check_rule("Perceptron", lr, max_epochs)
        self.shuffle, self.seed = shuffle, _check_seed("Perceptron", seed)

    def fit(self, X, y):
        X, t = self._prepare(X, y)
        rng = generator(self.seed)
        self.weights = np.zeros(X.shape[1])
        self.bias = 0.0
        self.errors_ = []
        self.converged_ = False
        order = np.arange(len(X))
        for _epoch in range(self.max_epochs):
            if self.shuffle:
                order = rng.permutation(len(X))
            errors = 0
            for i in order:
                o = 1.0 if X[i] @ self.weights + self.bias >= 0 else -1.0
                if o != t[i]:
                    step = self.lr * (t[i] - o) / 2  # = lr * t: bipolar targets
                    self.weights += step * X[i]
                    self.bias += step
                    errors += 1
            self.errors_.append(errors)
            if errors == 0:
                self.converged_ = True
                break
        self.n_epochs_ = len(self.errors_)
        if not self.converged_:
            warnings.warn(
                f"Perceptron did not converge after {self.max_epochs} epochs "
                f"({self.errors_[-1]} misclassified in the last one): the classes are probably "
                f"not linearly separable (XOR is the classic example)",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self


class Adaline(_Binary):
    """Widrow & Hoff (1960), ADAptive LInear NEuron: the delta (LMS) rule on the linear output,
    w += lr (t - w . x - b) x per sample, targets +-1, then a threshold for prediction.

    Stops when the epoch's mean squared error improves by less than ``tol``.
    Attributes: ``weights``, ``bias``, ``cost_`` (mean squared error per epoch), ``n_epochs_``.
    """

    def __init__(self, lr=0.01, max_epochs=50, tol=1e-6, shuffle=True, seed=None):
        self.lr, self.max_epochs = _check_rule("Adaline", lr, max_epochs)
        self.tol = _validate.real(tol, "tol", "Adaline", low=0.0)
        self.shuffle, self.seed = shuffle, _check_seed("Adaline", seed)

    def fit(self, X, y):
        X, t = self._prepare(X, y)
        rng = generator(self.seed)
        self.weights = np.zeros(X.shape[1])
        self.bias = 0.0
        self.cost_ = []
        order = np.arange(len(X))
        for _epoch in range(self.max_epochs):
            if self.shuffle:
                order = rng.permutation(len(X))
            for i in order:
                err = t[i] - (X[i] @ self.weights + self.bias)
                self.weights += self.lr * err * X[i]
                self.bias += self.lr * err
            residual = t - (X @ self.weights + self.bias)
            cost = float(np.mean(residual**2))
            if not np.isfinite(cost):
                raise FloatingPointError(
                    f"Adaline diverged at epoch {_epoch + 1} (cost {cost}); lower lr={self.lr}"
                )
            self.cost_.append(cost)
            if len(self.cost_) > 1 and abs(self.cost_[-2] - cost) < self.tol:
                break
        self.n_epochs_ = len(self.cost_)
        return self


class Hebbian(_Binary):
    """Hebb's rule (1949) for one bipolar unit: w += lr t x for every sample (one pass), so
    w = lr X^T t. Learns e.g. AND/OR on bipolar inputs; no error correction."""

    def __init__(self, lr=1.0):
        self.lr, _ = _check_rule("Hebbian", lr)

    def fit(self, X, y):
        X, t = self._prepare(X, y)
        self.weights = self.lr * (X.T @ t)
        self.bias = self.lr * float(t.sum())
        return self
