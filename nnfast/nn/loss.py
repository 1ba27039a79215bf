"""Losses: ``loss(input, target)`` returns a Python float and caches what ``backward()`` needs;
``backward(grad=1.0)`` returns d(loss)/d(input), an array shaped like ``input``.

    loss = criterion(model(x), y)
    model.backward(criterion.backward())
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from .. import functional as F
from .._native import core as _core
from .module import Module, register

REDUCTIONS = ("mean", "sum")


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, got {reduction!r}"
            )
        self.reduction = reduction
        self._grad = None

    def __call__(self, input, target):
        return self.forward(input, target)

    def backward(self, grad=1.0):
        """d(loss)/d(input), scaled by ``grad`` (the upstream gradient of the scalar loss)."""
        if self._grad is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        g = self._grad
        return g if grad == 1.0 else g * grad

    def get_config(self):
        return {} if self.reduction == "mean" else {"reduction": self.reduction}


def _float_input(loss, x):
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    return x


@register
class MSELoss(_Loss):
    """Mean (or sum) of squared errors over every element: input and target of one shape."""

    def forward(self, input, target):
        x = _float_input(self, input)
        t = np.asarray(target, dtype=x.dtype)
        if t.shape != x.shape:
            if t.size == x.size and t.ndim <= 1 and x.ndim == 2 and x.shape[1] == 1:
                t = t.reshape(x.shape)
            else:
                raise ValueError(
                    f"MSELoss: input has shape {x.shape} but target has shape {t.shape}"
                )
        diff = x - t
        loss = float(np.dot(diff.ravel(), diff.ravel()))
        scale = 2.0 / x.size if self.reduction == "mean" else 2.0
        diff *= scale
        self._grad = diff
        return loss / x.size if self.reduction == "mean" else loss


@register
class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy from logits (N, C) and integer class labels (N,) in [0, C).

    ``label_smoothing`` = eps mixes the one-hot target with the uniform distribution:
    target = (1 - eps) onehot + eps / C. A float target of shape (N, C) is taken as class
    probabilities. Backward gives (softmax - target) / N for ``reduction="mean"``.
    """

    def __init__(self, label_smoothing=0.0, reduction="mean"):
        super().__init__(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}"
            )
        self.label_smoothing = float(label_smoothing)

    def forward(self, input, target):
        x = _float_input(self, input)
        if x.ndim != 2:
            raise ValueError(
                f"CrossEntropyLoss: expected logits of shape (N, C), got shape {x.shape}"
            )
        n, c = x.shape
        t = np.asarray(target)
        labels = t.dtype.kind in "iu" or t.dtype == bool
        if _core is not None and labels and t.shape == (n,) and n and c:
            if 0 <= t.min() and t.max() < c:  # else the checks below raise
                # the fused kernel: loss and (softmax - target) / N in one pass, exp once
                loss, grad = F.softmax_cross_entropy_with_grad(
                    x, t.astype(np.int64, copy=False), self.label_smoothing
                )
                if self.reduction == "sum":
                    loss *= n
                    grad *= n
                self._grad = grad
                return loss
        # log-softmax, stable: z = x - max; logp = z - log(sum(exp(z)))
        z = x - x.max(axis=1, keepdims=True)
        p = np.exp(z)
        s = p.sum(axis=1, keepdims=True)
        p /= s
        z -= np.log(s)  # z is log-softmax now
        eps = self.label_smoothing
        if t.dtype.kind in "iu" or t.dtype == bool:
            if t.shape != (n,):
                raise ValueError(
                    f"CrossEntropyLoss: labels must have shape ({n},) for logits {x.shape}, "
                    f"got {t.shape}"
                )
            if n and (t.min() < 0 or t.max() >= c):
                raise ValueError(
                    f"CrossEntropyLoss: labels must be in [0, {c}), got values in "
                    f"[{t.min()}, {t.max()}]"
                )
            rows = np.arange(n)
            nll = -z[rows, t]
            losses = (1 - eps) * nll - (eps / c) * z.sum(axis=1) if eps else nll
            grad = p
            if eps:
                grad -= eps / c
            grad[rows, t] -= 1 - eps
        elif t.dtype.kind == "f" and t.shape == x.shape:
            t = t.astype(x.dtype, copy=False)
            if eps:
                t = (1 - eps) * t + eps / c * t.sum(axis=1, keepdims=True)
            losses = -np.einsum("ij,ij->i", t, z)
            grad = p * t.sum(axis=1, keepdims=True) - t
        else:
            raise ValueError(
                f"CrossEntropyLoss: target must be integer labels of shape ({n},) or class "
                f"probabilities of shape {x.shape}; got dtype {t.dtype}, shape {t.shape}"
            )
        if self.reduction == "mean" and n:
            grad /= n
            loss = float(losses.sum()) / n
        else:
            loss = float(losses.sum())
        self._grad = grad
        return loss

    def get_config(self):
        cfg = super().get_config()
        if self.label_smoothing:
            cfg["label_smoothing"] = self.label_smoothing
        return cfg


@register
class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits, stable for large |x|:
    loss = max(x, 0) - x t + log(1 + exp(-|x|)); gradient sigmoid(x) - t."""

    def forward(self, input, target):
        x = _float_input(self, input)
        t = np.asarray(target, dtype=x.dtype)
        if t.shape != x.shape:
            if t.size == x.size and t.ndim <= 1 and x.ndim == 2 and x.shape[1] == 1:
                t = t.reshape(x.shape)
            else:
                raise ValueError(
                    f"BCEWithLogitsLoss: input has shape {x.shape} but target has shape {t.shape}"
                )
        losses = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        grad = expit(x)
        grad -= t
        total = float(losses.sum())
        if self.reduction == "mean":
            grad /= max(x.size, 1)
            total /= max(x.size, 1)
        self._grad = grad
        return total


LOSSES = {
    "mse": MSELoss,
    "cross_entropy": CrossEntropyLoss,
    "bce_with_logits": BCEWithLogitsLoss,
}
