"""Losses: ``loss(input, target)`` returns a Python float and caches what ``backward()`` needs;
``backward(grad=1.0)`` returns d(loss)/d(input), an array shaped like ``input``.

    loss = criterion(model(x), y)
    model.backward(criterion.backward())
"""

from __future__ import annotations

import numpy as np

from .. import _validate
from .. import functional as F
from .module import Module, real_array, register

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

    @classmethod
    def state_shapes(cls, config):
        return {}  # no arrays (unknown, a file's record in a Sequential skipped the shape check)

    def backward(self, grad=1.0):
        """d(loss)/d(input), scaled by ``grad`` (the upstream gradient of the scalar loss)."""
        if self._grad is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        g = self._grad
        return g if grad == 1.0 else g * grad

    def get_config(self):
        return {} if self.reduction == "mean" else {"reduction": self.reduction}


def _float_input(loss, x):
    x = real_array(loss, x)
    if x.ndim and len(x) == 0:  # no samples: a mean of nothing
        raise ValueError(f"{loss!r}: the batch is empty (input of shape {x.shape})")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    return x


def _target_like(loss, x, target):
    """target as x's dtype and shape; a flat target for an (N, 1) input is reshaped."""
    t = real_array(loss, target, "target").astype(x.dtype, copy=False)
    if t.shape != x.shape:
        if t.size == x.size and t.ndim <= 1 and x.ndim == 2 and x.shape[1] == 1:
            return t.reshape(x.shape)
        raise ValueError(
            f"{type(loss).__name__}: input has shape {x.shape} but target has shape {t.shape}"
        )
    return t


@register
class MSELoss(_Loss):
    """Mean (or sum) of squared errors over every element: input and target of one shape."""

    def forward(self, input, target):
        x = _float_input(self, input)
        t = _target_like(self, x, target)
        self._grad = F.mse_loss_backward(x, t, self.reduction)
        return F.mse_loss(x, t, self.reduction)


@register
class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy from logits (N, C) and integer class labels (N,) in [0, C).

    ``label_smoothing`` = eps mixes the one-hot target with the uniform distribution:
    target = (1 - eps) onehot + eps / C. A float target of shape (N, C) is taken as class
    probabilities. Backward gives (softmax - target) / N for ``reduction="mean"``.
    """

    def __init__(self, label_smoothing=0.0, reduction="mean"):
        super().__init__(reduction)
        self.label_smoothing = _validate.real(
            label_smoothing, "label_smoothing", "CrossEntropyLoss", low=0.0, high=1.0
        )

    def forward(self, input, target):
        x = _float_input(self, input)
        if x.ndim != 2:
            raise ValueError(
                f"CrossEntropyLoss: expected logits of shape (N, C), got shape {x.shape}"
            )
        n, c = x.shape
        if c == 0:
            raise ValueError(f"CrossEntropyLoss: logits of shape {x.shape} have no classes")
        t = real_array(self, target, "target")
        eps = self.label_smoothing
        scale = n if self.reduction == "sum" else 1
        if t.dtype.kind in "iu":
            if t.shape != (n,):
                raise ValueError(
                    f"CrossEntropyLoss: labels must have shape ({n},) for logits {x.shape}, "
                    f"got {t.shape}"
                )
            # fused softmax + cross-entropy: the mean loss and (p - target) / N, exp once
            try:
                loss, grad = F.softmax_cross_entropy_with_grad(x, t, eps)
            except ValueError:  # name this loss in the error about label values
                err = F.label_range_error("CrossEntropyLoss", t, c) if n else None
                if err is not None:
                    raise err from None
                raise
        elif t.dtype.kind == "f" and t.shape == x.shape:  # class probabilities
            t = t.astype(x.dtype, copy=False)
            if eps:  # torch's mix, whatever a row sums to (eps / C of each row's sum was not)
                t = (1 - eps) * t + eps / c
            logp = F.log_softmax(x)
            loss = -float(np.einsum("ij,ij->", t, logp)) / max(n, 1)
            grad = np.exp(logp)
            grad *= t.sum(axis=1, keepdims=True)
            grad -= t
            grad /= max(n, 1)
        else:
            raise ValueError(
                f"CrossEntropyLoss: target must be integer labels of shape ({n},) or class "
                f"probabilities of shape {x.shape}; got dtype {t.dtype}, shape {t.shape}"
            )
        if scale != 1:
            grad *= scale
        self._grad = grad
        return loss * scale

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
        t = _target_like(self, x, target)
        self._grad = F.binary_cross_entropy_with_logits_backward(x, t, self.reduction)
        return F.binary_cross_entropy_with_logits(x, t, self.reduction)


LOSSES = {
    "mse": MSELoss,
    "cross_entropy": CrossEntropyLoss,
    "bce_with_logits": BCEWithLogitsLoss,
}
