"""Learning-rate schedulers (torch.optim.lr_scheduler names).

Call ``scheduler.step()`` once per epoch (or per batch, for warm-up), after ``optimizer.step()``.
Each epoch-indexed scheduler sets ``lr = _lr_at(base_lr, epoch)`` in closed form, so resuming
from ``state_dict()`` gives exactly the same rates. ``ReduceLROnPlateau.step(metric)`` reacts to
a validation metric instead.
"""

from __future__ import annotations

import math
import numbers

from .. import _validate

SCHEDULERS: dict[str, type] = {}


def _register(cls):
    SCHEDULERS[cls.__name__] = cls
    return cls


def _check_optimizer(optimizer, what):
    if not isinstance(getattr(optimizer, "param_groups", None), list):
        raise TypeError(f"{what}: optimizer must be an nnfast optimizer, got "
                        f"{type(optimizer).__name__}")  # fmt: skip


def _check_state(scheduler, state):
    """``state`` as a dict saved by this scheduler's class, else ValueError naming it."""
    name = type(scheduler).__name__
    if not isinstance(state, dict):
        raise ValueError(f"{name}.load_state_dict: expected a dict, got {type(state).__name__}")
    saved = state.get("type", name)  # states from before the type was recorded: taken as ours
    if saved != name:
        raise ValueError(f"{name}.load_state_dict: the state was saved by {saved}, not by {name}")
    return f"{name}.load_state_dict"


class LRScheduler:
    """Base class: subclasses give ``_lr_at(base_lr, epoch)``."""

    def __init__(self, optimizer, last_epoch=-1):
        name = type(self).__name__
        _check_optimizer(optimizer, name)
        # -1: a new schedule (the first step makes it epoch 0); torch's meaning
        last_epoch = _validate.integer(last_epoch, "last_epoch", name, low=-1)
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def _lr_at(self, base_lr, epoch):
        raise NotImplementedError

    def step(self):
        self.last_epoch += 1
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = self._lr_at(base, self.last_epoch)

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {"type": type(self).__name__, "last_epoch": self.last_epoch,
                "base_lrs": list(self.base_lrs)}  # fmt: skip

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s epoch and base rates (checked first) and set the rate."""
        what = _check_state(self, state)
        base = state.get("base_lrs")
        groups = len(self.optimizer.param_groups)
        with _validate.saved_data():
            epoch = _validate.integer(state.get("last_epoch"), "last_epoch", what, low=0)
            if not isinstance(base, list) or len(base) != groups:
                raise ValueError(f"{what}: base_lrs must be a list of {groups} rates, got {base!r}")
            base = [_validate.real(b, f"base_lrs[{i}]", what, low=0.0) for i, b in enumerate(base)]
        self.base_lrs, self.last_epoch = base, epoch - 1
        self.step()


@_register
class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = _validate.integer(step_size, "step_size", "StepLR", low=1)
        # a decay: above 1 the rate grows without bound, to inf and NaN weights
        self.gamma = _validate.real(gamma, "gamma", "StepLR", low=0.0, high=1.0)
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)


@_register
class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2 (Loshchilov & Hutter,
    2017, without restarts); stays at eta_min after T_max."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max = _validate.integer(T_max, "T_max", "CosineAnnealingLR", low=1)
        self.eta_min = _validate.real(eta_min, "eta_min", "CosineAnnealingLR", low=0.0)
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, epoch):
        e = min(epoch, self.T_max)
        return (
            self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * e / self.T_max)) / 2
        )


@_register
class LinearLR(LRScheduler):
    """lr = base_lr * factor, factor going linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` steps, then constant."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):  # fmt: skip
        self.start_factor = _validate.real(start_factor, "start_factor", "LinearLR", low=0.0)
        self.end_factor = _validate.real(end_factor, "end_factor", "LinearLR", low=0.0)
        self.total_iters = _validate.integer(total_iters, "total_iters", "LinearLR", low=1)
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, epoch):
        frac = min(epoch, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * frac)


@_register
class LinearWarmup(LRScheduler):
    """Linear warm-up from ``start_factor * base_lr`` to ``base_lr`` over ``warmup_steps`` steps,
    then the schedule ``after`` (a scheduler built on the same optimizer, counted from the end of
    the warm-up), or a constant rate when ``after`` is None."""

    def __init__(self, optimizer, warmup_steps, after=None, start_factor=0.0, last_epoch=-1):
        self.warmup_steps = _validate.integer(warmup_steps, "warmup_steps", "LinearWarmup", low=1)
        if after is not None and not isinstance(after, LRScheduler):
            raise TypeError(f"LinearWarmup: `after` must be an epoch-indexed scheduler (StepLR, "
                            f"CosineAnnealingLR, ...), got {type(after).__name__}")  # fmt: skip
        if after is not None and after.optimizer is not optimizer:
            raise ValueError("LinearWarmup: `after` must schedule the same optimizer")
        self.after = after
        self.start_factor = _validate.real(start_factor, "start_factor", "LinearWarmup", low=0.0)
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, epoch):
        w = self.warmup_steps
        if epoch < w:
            return base_lr * (self.start_factor + (1 - self.start_factor) * epoch / w)
        if self.after is None:
            return base_lr
        return self.after._lr_at(base_lr, epoch - w)


@_register
class ReduceLROnPlateau:
    """Multiply the rate by ``factor`` when ``metric`` (passed to ``step``) has not improved for
    ``patience`` epochs (``mode="min"``: lower is better; ``"max"``: higher). An improvement is
    relative by ``threshold`` (``threshold_mode="rel"``) or absolute (``"abs"``)."""

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):  # fmt: skip
        what = "ReduceLROnPlateau"
        _check_optimizer(optimizer, what)
        self.optimizer = optimizer
        self.mode = _validate.one_of(mode, "mode", what, ("min", "max"))
        self.threshold_mode = _validate.one_of(threshold_mode, "threshold_mode", what,
                                               ("rel", "abs"))  # fmt: skip
        self.factor = _validate.real(factor, "factor", what, low=0.0, high=1.0, low_open=True,
                                     high_open=True)  # fmt: skip
        self.patience = _validate.integer(patience, "patience", what, low=0)
        self.threshold = _validate.real(threshold, "threshold", what, low=0.0)
        self.cooldown = _validate.integer(cooldown, "cooldown", what, low=0)
        self.min_lr = _validate.real(min_lr, "min_lr", what, low=0.0)
        self.eps = _validate.real(eps, "eps", what, low=0.0)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def _is_better(self, a):
        rel = self.threshold_mode == "rel"
        if self.mode == "min":
            return a < (self.best * (1 - self.threshold) if rel else self.best - self.threshold)
        return a > (self.best * (1 + self.threshold) if rel else self.best + self.threshold)

    def step(self, metric):
        if isinstance(metric, bool) or not isinstance(metric, numbers.Real):
            raise TypeError(f"ReduceLROnPlateau.step: metric must be a real number, got "
                            f"{metric!r}")  # fmt: skip
        metric = float(metric)  # NaN is never an improvement, as in torch
        self.last_epoch += 1
        if self._is_better(metric):
            self.best, self.num_bad_epochs = metric, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for g in self.optimizer.param_groups:
                new = max(g["lr"] * self.factor, self.min_lr)
                if g["lr"] - new > self.eps:
                    g["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    _STATE = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")

    def state_dict(self):
        return {"type": type(self).__name__, **{k: getattr(self, k) for k in self._STATE}}

    def load_state_dict(self, state):
        what = _check_state(self, state)
        with _validate.saved_data():
            best = _validate.real(state.get("best"), "best", what, finite=False)  # inf: none yet
            counts = {k: _validate.integer(state.get(k), k, what, low=0) for k in self._STATE[1:]}
        self.best = best
        for k, v in counts.items():
            setattr(self, k, v)
