"""The training loop: ``fit``, ``evaluate``, ``predict`` and callbacks (early stopping).

    history = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters()), (x, y),
                  epochs=10, batch_size=128, val=(xv, yv), seed=0)
    history["val_accuracy"][-1]

Data are ``(inputs, targets)`` pairs of arrays with the samples along axis 0. Accuracy is
reported for CrossEntropyLoss (argmax against integer labels) and BCEWithLogitsLoss (logit > 0
against target > 0.5). The same ``seed`` (and thread count) gives bit-identical training.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from ._random import generator
from .nn.loss import BCEWithLogitsLoss, CrossEntropyLoss
from .optim.lr_scheduler import ReduceLROnPlateau


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; ``epoch``, ``batch`` and the ``history`` so far are kept."""

    def __init__(self, message, epoch, batch, history):
        super().__init__(message)
        self.epoch, self.batch, self.history = epoch, batch, history


class History(dict):
    """Per-epoch metrics: ``history["loss"]``, ``["accuracy"]``, ``["val_loss"]``,
    ``["val_accuracy"]``, ``["lr"]``, ``["time"]`` (lists, one entry per completed epoch).
    ``stopped_early`` tells whether a callback ended training."""

    stopped_early = False

    @property
    def epochs(self) -> int:
        return len(self.get("loss", ()))


class Callback:
    """Hooks called by ``fit``. ``on_epoch_end`` returns True to stop training."""

    def on_train_begin(self, model, optimizer):
        pass

    def on_epoch_end(self, epoch: int, logs: dict):
        return None

    def on_train_end(self, model):
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs; with ``restore_best_weights`` the model gets the best epoch's weights back.

    ``mode`` is "min", "max" or "auto" (max for names containing "acc", else min).
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto",
                 restore_best_weights=True):  # fmt: skip
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), abs(min_delta)
        self.mode, self.restore_best_weights = mode, restore_best_weights
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self._best_state = None
        self._model = None

    def on_train_begin(self, model, optimizer):
        self._model = model
        self.best, self.best_epoch, self.wait, self._best_state = None, None, 0, None

    def on_epoch_end(self, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            raise ValueError(
                f"EarlyStopping: metric {self.monitor!r} is not available; have "
                f"{sorted(k for k, v in logs.items() if v is not None)}"
            )
        if self.mode == "min":
            better = self.best is None or value < self.best - self.min_delta
        else:
            better = self.best is None or value > self.best + self.min_delta
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self._best_state = self._model.state_dict()
            return None
        self.wait += 1
        return self.wait >= self.patience

    def on_train_end(self, model):
        if self.restore_best_weights and self._best_state is not None:
            model.load_state_dict(self._best_state)


def _check_data(name, data):
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(f"{name} must be an (inputs, targets) pair of arrays")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if len(x) != len(y):
        raise ValueError(f"{name}: {len(x)} inputs but {len(y)} targets")
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    return x, y


def _correct(loss, out, y):
    """Number of correct predictions in a batch, or None when accuracy does not apply."""
    if isinstance(loss, CrossEntropyLoss) and y.ndim == 1:
        return int(np.count_nonzero(out.argmax(axis=1) == y))
    if isinstance(loss, BCEWithLogitsLoss):
        return int(np.count_nonzero((out > 0) == (y.reshape(out.shape) > 0.5)))
    return None


def _backward(model, grad):
    if getattr(model, "can_skip_input_grad", False):
        return model.backward(grad, input_grad=False)
    return model.backward(grad)


def fit(
    model,
    loss,
    optimizer,
    train,
    epochs,
    batch_size=32,
    val=None,
    scheduler=None,
    callbacks=(),
    shuffle=True,
    seed=None,
    verbose=False,
):
    """Train ``model`` with mini-batch gradient descent; returns a :class:`History`.

    Parameters
    ----------
    model : Module
    loss : a loss module (``nn.CrossEntropyLoss()``, ...)
    optimizer : Optimizer over ``model.parameters()``
    train, val : (inputs, targets)
    epochs, batch_size : int
    scheduler : LR scheduler stepped once per epoch (ReduceLROnPlateau gets val_loss, else loss)
    callbacks : Callbacks, e.g. ``EarlyStopping()``
    shuffle : reshuffle the training set every epoch
    seed : int or None, for the shuffling order (None: the next ``nnfast.manual_seed`` stream)
    verbose : print one line per epoch

    Raises
    ------
    NonFiniteLossError
        When a batch's loss is NaN or infinite, naming the epoch and batch.
    """
    x, y = _check_data("train", train)
    if val is not None:
        val = _check_data("val", val)
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"fit: need epochs >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    rng = generator(seed)
    per_sample = getattr(loss, "reduction", "mean") == "mean"
    n = len(x)
    n_batches = math.ceil(n / batch_size)
    history = History()
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"):
        history[key] = []
    for cb in callbacks:
        cb.on_train_begin(model, optimizer)
    model.train()
    order = np.arange(n)
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        if shuffle:
            order = rng.permutation(n)
        total, correct, counted = 0.0, 0, True
        for b in range(n_batches):
            if shuffle:
                idx = order[b * batch_size : (b + 1) * batch_size]
                xb, yb = x[idx], y[idx]
            else:
                xb, yb = (
                    x[b * batch_size : (b + 1) * batch_size],
                    y[b * batch_size : (b + 1) * batch_size],
                )
            optimizer.zero_grad()
            out = model(xb)
            value = loss(out, yb)
            if not math.isfinite(value):
                model.eval()
                raise NonFiniteLossError(
                    f"fit: the loss is {value} at epoch {epoch}, batch {b + 1} of {n_batches}; "
                    f"training stopped (try a smaller learning rate, gradient clipping, or check "
                    f"the inputs for NaN/inf)",
                    epoch, b + 1, history,
                )  # fmt: skip
            _backward(model, loss.backward())
            optimizer.step()
            total += value * (len(xb) if per_sample else 1)
            c = _correct(loss, out, yb) if counted else None
            if c is None:
                counted = False
            else:
                correct += c
        logs = {
            "loss": total / n,
            "accuracy": correct / n if counted else None,
            "val_loss": None,
            "val_accuracy": None,
            "lr": optimizer.param_groups[0]["lr"],
        }
        if val is not None:
            ev = evaluate(model, loss, val)
            logs["val_loss"], logs["val_accuracy"] = ev["loss"], ev["accuracy"]
            model.train()
        if scheduler is not None:
            if isinstance(scheduler, ReduceLROnPlateau):
                scheduler.step(logs["val_loss"] if val is not None else logs["loss"])
            else:
                scheduler.step()
        logs["time"] = time.perf_counter() - start
        for k in history:
            history[k].append(logs[k])
        if verbose:
            parts = [f"epoch {epoch}/{epochs}"]
            parts += [f"{k} {v:.4f}" for k, v in logs.items() if v is not None and k != "time"]
            parts.append(f"{logs['time']:.2f}s")
            print("  ".join(parts), file=sys.stderr if verbose == "stderr" else sys.stdout)
        stop = False
        for cb in callbacks:
            stop = bool(cb.on_epoch_end(epoch, logs)) or stop
        if stop:
            history.stopped_early = True
            break
    for cb in callbacks:
        cb.on_train_end(model)
    return history


def _batches(n, batch_size):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def predict(model, x, batch_size=256):
    """Model outputs for ``x`` in eval mode (the previous mode is restored), batch by batch."""
    x = np.asarray(x)
    was_training = model.training
    model.eval()
    try:
        outs = [np.array(model(x[s]), copy=True) for s in _batches(len(x), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outs) if outs else np.empty((0,))


def evaluate(model, loss, data, batch_size=256):
    """``{"loss": mean loss, "accuracy": fraction correct or None}`` over ``data`` in eval mode."""
    x, y = _check_data("data", data)
    was_training = model.training
    model.eval()
    per_sample = getattr(loss, "reduction", "mean") == "mean"
    total, correct, counted = 0.0, 0, True
    try:
        for s in _batches(len(x), batch_size):
            out = model(x[s])
            total += loss(out, y[s]) * (s.stop - s.start if per_sample else 1)
            c = _correct(loss, out, y[s]) if counted else None
            if c is None:
                counted = False
            else:
                correct += c
    finally:
        model.train(was_training)
    return {"loss": total / len(x), "accuracy": correct / len(x) if counted else None}
