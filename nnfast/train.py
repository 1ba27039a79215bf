"""The training loop: ``fit``, ``evaluate``, ``predict``.

    history = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters()), (x, y),
                  epochs=10, batch_size=128, val_split=0.1, seed=0,
                  callbacks=[ProgressBar(), Checkpoint("ck.npz"), EarlyStopping(patience=3)])
    history["val_accuracy"][-1]

``fit`` is nnfast's one epoch loop: the ``nnfast train`` command is a recipe and callbacks
(:mod:`nnfast.callbacks`) over it. Data are ``(inputs, targets)`` pairs of arrays with the
samples along axis 0, or a :class:`~nnfast.data.DataLoader`. Accuracy is reported for
CrossEntropyLoss (argmax against integer labels) and BCEWithLogitsLoss (logit > 0 against
target > 0.5). The same ``seed`` (and thread count) gives bit-identical training.

Resuming is bit-identical because everything a step depends on is either restored from the
checkpoint (weights, optimizer and scheduler state, Dropout's random streams, the running sums
of the current epoch) or a function of (seed, epoch) alone (the shuffling order, as
``DataLoader.order``). A checkpoint written inside an epoch records how many of its batches are
done; ``resume=`` skips exactly those.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import time

import numpy as np

from . import _validate
from ._gemm import PRECISIONS, get_matmul_precision, matmul_precision
from ._random import generator
from .callbacks import Callback, EarlyStopping, ProgressBar
from .data.loader import DataLoader
from .nn.loss import BCEWithLogitsLoss, CrossEntropyLoss
from .optim.lr_scheduler import ReduceLROnPlateau

__all__ = ["Callback", "EarlyStopping", "FitState", "History", "NonFiniteLossError",
           "evaluate", "fit", "predict"]  # fmt: skip

# the version of fit's progress record in checkpoints; a checkpoint with another one is refused
_STATE_VERSION = 1
HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time",
                "samples_per_s")  # fmt: skip


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; ``epoch``, ``batch`` and the ``history`` so far are kept."""

    def __init__(self, message, epoch, batch, history):
        super().__init__(message)
        self.epoch, self.batch, self.history = epoch, batch, history


class History(dict):
    """Per-epoch metrics, one list per key of :data:`HISTORY_KEYS` (``history["loss"]``,
    ``["val_accuracy"]``, ...), one entry per completed epoch; None where a metric does not
    apply (accuracy of a regression, validation without validation data).

    ``stopped_early`` tells whether a callback ended training before its last epoch,
    ``interrupted`` whether that was a stop after a batch (Ctrl-C, SIGTERM,
    ``state.stop("batch")``), ``stopped_at`` is then ``(epoch, batch)`` (batch 0 when the
    epoch had just ended; an unfinished epoch is not in the history) and ``stop_reason`` says
    why (e.g. "SIGINT").
    """

    stopped_early = False
    interrupted = False
    stop_reason = None
    stopped_at = None  # (epoch, batch) of an interruption; batch 0: after that epoch
    num_batches = None  # per epoch (of a rank)

    def __init__(self, data=None):
        super().__init__({k: [] for k in HISTORY_KEYS})
        if data:
            for k in HISTORY_KEYS:
                self[k] = list(data[k])

    @property
    def epochs(self) -> int:
        return len(self["loss"])

    def rows(self) -> list:
        """The epochs as dicts (one per row of a metrics file)."""
        return [{k: self[k][i] for k in HISTORY_KEYS} for i in range(self.epochs)]

    def append(self, row: dict) -> None:
        for k in HISTORY_KEYS:
            self[k].append(row[k])


class FitState:
    """What callbacks see of a run of :func:`fit`.

    Attributes
    ----------
    model, optimizer, scheduler, loss
        As given to ``fit`` (``optimizer`` is the DistributedOptimizer in a distributed run).
    history : History
    epochs : int
        The last epoch of the run.
    epoch : int
        The current epoch, from 1.
    batch : int
        Batches done in the current epoch.
    num_batches : int
        Batches per epoch (of each rank).
    num_samples : int
        Training samples per epoch, over all ranks.
    partial : dict or None
        Running sums of the current epoch while it is unfinished (``loss_sum``, ``correct``,
        ``seen``, ``time``); None between epochs.
    seed : int
        The seed of the shuffling order and the validation split.
    rank, world_size : int
        0 and 1 unless distributed.
    error : BaseException or None
        Set when training raised (seen by ``on_train_end``).
    callbacks : list
        The run's callbacks, in order (a :class:`~nnfast.callbacks.Checkpoint` saves their
        ``state_dict``).
    """

    def __init__(self, **kw):
        self.__dict__.update(kw)
        self.epoch, self.batch, self.partial, self.error = 0, 0, None, None
        self.precision = get_matmul_precision()  # the layers' matmuls (a resume: the saved one)
        self.callbacks = []
        self.resumed_callbacks = None  # a resumed run's saved callback states (_resume)
        self.ranks = None  # distributed: every rank's random streams and running sums
        self._stop = None
        self._reason = None

    def stop(self, when="epoch", reason=None):
        """Ask ``fit`` to stop after the current ``"epoch"`` or ``"batch"``."""
        if when not in ("epoch", "batch"):
            raise ValueError(f"FitState.stop: when must be 'epoch' or 'batch', got {when!r}")
        if self._stop != "batch":
            self._stop = when
        self._reason = reason or self._reason or f"stop after the {when} requested"

    @property
    def stop_requested(self):
        """None, "epoch" or "batch"."""
        return self._stop

    def state_dict(self) -> dict:
        """fit's progress, as saved in checkpoints (JSON)."""
        return {
            "version": _STATE_VERSION,
            "epoch": self.epoch_done,
            "batch": self.batch if self.partial is not None else 0,
            "partial": self.partial if self.batch else None,
            "precision": self.precision,
            "history": dict(self.history),
            "seed": self.seed,
            "num_train": self.num_train,
            "num_batches": self.num_batches,
            "world_size": self.world_size,
            "ranks": self.ranks,
        }


def _check_parts(model, loss, optimizer, scheduler, callbacks):
    """TypeError naming the argument of fit that is not what it must be (each failed deep
    inside: a loss class for an instance, a lone callback for a list, ...)."""
    from .nn import Module

    if not isinstance(model, Module):
        raise TypeError(f"fit: model must be an nnfast Module, got {type(model).__name__}")
    if isinstance(loss, type) or not (callable(loss) and hasattr(loss, "backward")):
        shown = f"the class {loss.__name__}" if isinstance(loss, type) else type(loss).__name__
        raise TypeError(f"fit: loss must be a loss module such as nn.CrossEntropyLoss(), got "
                        f"{shown}")  # fmt: skip
    if not all(hasattr(optimizer, k) for k in ("step", "zero_grad", "param_groups")):
        raise TypeError(f"fit: optimizer must be an nnfast optimizer, got "
                        f"{type(optimizer).__name__}")  # fmt: skip
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"fit: scheduler must be an LR scheduler, got {type(scheduler).__name__}")
    if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"fit: callbacks must be a list of Callbacks, got "
                        f"{type(callbacks).__name__}")  # fmt: skip
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise TypeError(f"fit: callbacks[{i}] is a {type(cb).__name__}, not a Callback")


def _check_data(name, data):
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(f"{name} must be an (inputs, targets) pair of arrays")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"{name}: inputs and targets must be arrays with a sample axis, got "
                         f"shapes {x.shape} and {y.shape}")  # fmt: skip
    if len(x) != len(y):
        raise ValueError(f"{name}: {len(x)} inputs but {len(y)} targets")
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    return x, y


def _correct(loss, out, y):
    """Correct predictions in a batch, in samples (a sample of K labels counts 1/K per label
    right, so that accuracy stays a fraction of the samples), or None when accuracy does not
    apply."""
    if isinstance(loss, CrossEntropyLoss) and y.ndim == 1:
        return int(np.count_nonzero(out.argmax(axis=1) == y))
    if isinstance(loss, BCEWithLogitsLoss):
        right = np.count_nonzero((out > 0) == (y.reshape(out.shape) > 0.5))
        labels = out.size // len(out) if len(out) else 1
        return int(right) if labels == 1 else right / labels
    return None


def _count(value):
    """A sum of _correct's counts: an int when whole (single-label), else the float."""
    value = float(value)
    return int(value) if value.is_integer() else value


def _backward(model, grad):
    if getattr(model, "can_skip_input_grad", False):
        return model.backward(grad, input_grad=False)
    return model.backward(grad)


def _seed_int(seed):
    if seed is None or isinstance(seed, np.random.Generator):
        return int(generator(seed).integers(2**63))
    return _whole("seed", seed, 0, "a whole number >= 0, a Generator or None")


def _whole(name, value, low, what=None, caller="fit"):
    """``value`` as an int (nnfast._validate: TypeError unless it is an integer, ValueError
    unless it is >= ``low``); ``what`` describes what is accepted."""
    return _validate.integer(value, name, caller, low=low, kinds=what or f"a whole number >= {low}")


def split_validation(x, y, fraction, seed):
    """``(x_train, y_train), (x_val, y_val)``: a seeded ``fraction`` of the samples held out
    (at least one, and at least one left to train on); the rest keep their order."""
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, numbers.Real)
        or not (0 <= fraction < 1)
    ):
        raise ValueError(f"fit: val_split must be a number in [0, 1), got {fraction!r}")
    n = len(x)
    n_val = max(1, round(n * fraction))
    if n_val >= n:
        raise ValueError(f"fit: val_split {fraction} of {n} samples leaves none to train on")
    held = np.zeros(n, bool)
    held[np.random.default_rng([seed, 0x7A11]).permutation(n)[:n_val]] = True
    return (x[~held], y[~held]), (x[held], y[held])


def _resume_state(path, saved, state, loader_len, num_train):
    """fit's progress from a checkpoint's record, checked against this run; every problem is one
    ValueError naming the file."""

    def bad(problem):
        return ValueError(f"{path}: cannot resume: {problem}")

    rec = saved.get("fit") if isinstance(saved, dict) else None
    if not isinstance(rec, dict):
        raise bad("it holds no progress of nnfast.train.fit (written by another tool or an older "
                  "nnfast)")  # fmt: skip
    if rec.get("version") != _STATE_VERSION:
        raise bad(f"its progress record has version {rec.get('version')!r}, this nnfast reads "
                  f"{_STATE_VERSION}")  # fmt: skip

    def whole(key, low=0, high=None):
        v = rec.get(key)
        too_big = high is not None and isinstance(v, int) and v > high
        if not isinstance(v, int) or isinstance(v, bool) or v < low or too_big:
            rng = f">= {low}" if high is None else f"in {low}..{high}"
            raise bad(f"{key} is {v!r}, not a whole number {rng}")
        return v

    seed = whole("seed")
    if whole("num_train", 1) != num_train:
        raise bad(f"it was trained on {rec['num_train']} samples, this run has {num_train}")
    if whole("num_batches", 1) != loader_len:
        raise bad(f"it has {rec['num_batches']} batches per epoch, this run {loader_len} (a "
                  f"different batch size or number of ranks)")  # fmt: skip
    if whole("world_size", 1) != state.world_size:
        raise bad(f"it was written by a run on {rec['world_size']} ranks, this one has "
                  f"{state.world_size}")  # fmt: skip
    epoch = whole("epoch")
    batch = whole("batch", 0, loader_len - 1)
    hist = rec.get("history")
    if not isinstance(hist, dict) or set(hist) != set(HISTORY_KEYS):
        raise bad(f"its history must have the keys {', '.join(HISTORY_KEYS)}")
    lengths = {len(v) if isinstance(v, list) else -1 for v in hist.values()}
    if lengths != {epoch}:
        raise bad(f"its history does not hold one entry per epoch for {epoch} epochs")
    for k, v in hist.items():
        if not all(e is None or (isinstance(e, (int, float)) and not isinstance(e, bool))
                   for e in v):  # fmt: skip
            raise bad(f"its history of {k} holds something other than numbers")
    partial = rec.get("partial")
    if (partial is None) != (batch == 0):
        raise bad("its batch count and running sums disagree")
    if partial is not None:
        _check_partial(bad, partial)
    ranks = rec.get("ranks")
    if ranks is not None and not (
        isinstance(ranks, list)
        and len(ranks) == state.world_size
        and all(isinstance(r, dict) and isinstance(r.get("rng"), dict)
                and all(isinstance(v, dict) for v in r["rng"].values())
                and (r.get("partial") is None) == (partial is None) for r in ranks)
    ):  # fmt: skip
        raise bad(f"its per-rank records must be a list of {state.world_size}, each with its "
                  f"random streams and running sums")  # fmt: skip
    if partial is not None and ranks is not None:
        for r in ranks:
            _check_partial(bad, r["partial"])
    precision = rec.get("precision")  # None: a checkpoint from before it was recorded
    if precision not in (None, *PRECISIONS):
        raise bad(f"its matmul precision is {precision!r}, not one of {PRECISIONS}")
    return seed, epoch, batch, partial, History(hist), ranks, precision


def _check_partial(bad, partial):
    keys = {"loss_sum", "correct", "seen", "time"}
    if not isinstance(partial, dict) or set(partial) != keys or not all(
        isinstance(partial[k], (int, float)) and not isinstance(partial[k], bool)
        and math.isfinite(partial[k]) and partial[k] >= 0 for k in keys
    ):  # fmt: skip
        raise bad(f"its running sums must be the numbers >= 0 {', '.join(sorted(keys))}")


def _dist_module(distributed):
    """The nnfast.distributed module when this run is distributed, else None."""
    if distributed is False:
        return None
    if distributed is None:
        mpi = sys.modules.get("mpi4py.MPI")  # never import MPI just to find out
        if mpi is None or not mpi.Is_initialized() or mpi.COMM_WORLD.Get_size() == 1:
            return None
    from . import distributed as dist

    dist.init()
    return dist


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
    val_split=0.0,
    resume=None,
    distributed=None,
):
    """Train ``model`` with mini-batch gradient descent; returns a :class:`History`.

    Parameters
    ----------
    model : Module
    loss : a loss module (``nn.CrossEntropyLoss()``, ...)
    optimizer : Optimizer over ``model.parameters()``
    train : (inputs, targets) or DataLoader
        A DataLoader brings its own batch size, transform and dtype (``batch_size`` and
        ``shuffle`` are then ignored); its order comes from ``seed``.
    epochs : int
        Train until this epoch (a resumed run continues to it).
    batch_size : int
        Per rank in a distributed run (as in torch and Horovod).
    val : (inputs, targets), optional
        Evaluated after every epoch (``val_loss``, ``val_accuracy``).
    scheduler : LR scheduler, optional
        Stepped once per epoch (ReduceLROnPlateau gets val_loss, else loss).
    callbacks : list of :class:`nnfast.callbacks.Callback`
        E.g. ``ProgressBar()``, ``Checkpoint(path)``, ``MetricsWriter(path)``,
        ``EarlyStopping()``; called in order.
    shuffle : bool
        Reshuffle the training set every epoch.
    seed : int, Generator or None
        Seed of the shuffling order and the validation split (None: drawn from the
        ``nnfast.manual_seed`` stream). A resumed run takes its checkpoint's.
    verbose : bool or "stderr"
        Print one line per epoch (a :class:`ProgressBar` without the bar).
    val_split : float in [0, 1)
        Hold out this seeded fraction of ``train`` as the validation set (instead of ``val``).
    resume : path, optional
        A checkpoint written by :class:`nnfast.callbacks.Checkpoint` for this model, optimizer,
        scheduler and data: training continues where it stopped, bit-identically.
    distributed : bool or None
        Data-parallel over MPI (:mod:`nnfast.distributed`): each rank trains on its shard
        (DistributedSampler), gradients are averaged, metrics are over all ranks. None: when
        mpi4py is initialised with more than one rank.

    Raises
    ------
    NonFiniteLossError
        When a batch's loss is NaN or infinite, naming the epoch and batch.
    ValueError
        Bad data or options, or a ``resume`` checkpoint that does not fit this run (one line
        naming the file).
    """
    _check_parts(model, loss, optimizer, scheduler, callbacks)
    dist = _dist_module(distributed)
    rank, size = (dist.rank(), dist.size()) if dist else (0, 1)
    if isinstance(train, DataLoader):
        template = train
        x, y = train.x, train.y
        if y is None:
            raise ValueError("fit: the DataLoader must yield (inputs, targets)")
    else:
        template = None
        x, y = _check_data("train", train)
    if val is not None:
        val = _check_data("val", val)
    epochs, batch_size = _whole("epochs", epochs, 0), _whole("batch_size", batch_size, 1)
    if val is not None and val_split:
        raise ValueError("fit: give val or val_split, not both")
    seed = _seed_int(seed)
    if dist:
        seed = dist._bcast_json(seed)  # rank 0's, when each rank drew its own
    whole = x, y
    if val_split:
        (x, y), val = split_validation(x, y, val_split, seed)
    loader = _make_loader(template, x, y, batch_size, shuffle, seed, dist, rank, size)
    mine = {id(p) for p in model.parameters()}  # _check_parts checked param_groups
    if mine and not mine & {id(p) for g in optimizer.param_groups for p in g["params"]}:
        raise ValueError("fit: the optimizer holds none of the model's parameters (was it built "
                         "for another model?)")  # fmt: skip
    if dist:  # every rank the same run first: its message says more than the wrapper's
        dist._check_same_run(model, optimizer, loss, scheduler, {
            "epochs": int(epochs), "batch_size": loader.batch_size, "num_train": len(x),
            "num_val": 0 if val is None else len(val[0]), "shuffle": bool(shuffle),
            "seed": seed, "resume": resume is not None})  # fmt: skip
        if not isinstance(optimizer, dist.DistributedOptimizer):
            optimizer = dist.DistributedOptimizer(optimizer)
    state = FitState(
        model=model, optimizer=optimizer, scheduler=scheduler, loss=loss, history=History(),
        epochs=int(epochs), num_batches=len(loader), num_samples=loader.num_samples * size,
        num_train=len(x), seed=seed, rank=rank, world_size=size, epoch_done=0,
    )  # fmt: skip
    if resume is not None:
        _resume(state, resume, model, optimizer, scheduler, loader, dist)
        if val_split and state.seed != seed:  # the held-out samples of the checkpoint's run
            (x, y), val = split_validation(*whole, val_split, state.seed)  # (the same sizes)
        seed = state.seed
        loader = _make_loader(template, x, y, batch_size, shuffle, seed, dist, rank, size)
    elif dist:
        dist.broadcast_parameters(model)
        dist.broadcast_optimizer_state(optimizer)
        _own_streams(model, rank)
    state.history.num_batches = len(loader)
    callbacks = list(callbacks)
    if verbose:
        callbacks.append(ProgressBar(bar=False, file=sys.stderr if verbose == "stderr" else None))
    state.callbacks = callbacks
    try:
        for cb in callbacks:
            cb.on_train_begin(state)
        _restore_callbacks(callbacks, state.resumed_callbacks, resume)
        # the layers' matmul precision of the run (a resumed one: its checkpoint's; the setting
        # around this call comes back after)
        with matmul_precision(state.precision):
            _loop(state, loader, val, callbacks, dist)
    except BaseException as err:
        state.error = err
        raise
    finally:
        model.train()
        _train_end(callbacks, state)
    return state.history


def _train_end(callbacks, state):
    """Every callback's on_train_end, however the others' end (a Checkpoint puts the signal
    handlers back there); then the first one's error, unless training raised already."""
    first = None
    for cb in callbacks:
        try:
            cb.on_train_end(state)
        except BaseException as err:
            first = first or err
    if first is not None and state.error is None:
        raise first


def _restore_callbacks(callbacks, saved, path):
    """Give each callback the state a resumed checkpoint saved for one of its class: the k-th
    of a class gets the k-th saved. Others start afresh, as do callbacks resumed from a
    checkpoint that kept none."""
    by_type = {}
    for entry in saved or ():
        if entry is not None:
            by_type.setdefault(entry["type"], []).append(entry["state"])
    for cb in callbacks:
        states = by_type.get(type(cb).__name__)
        if not states:
            continue
        try:
            cb.load_state_dict(states.pop(0))
        except (TypeError, ValueError) as err:
            raise ValueError(f"resume: {path}: {type(cb).__name__}'s saved state does not "
                             f"load ({err})") from None  # fmt: skip


def _callback_shapes(states):
    """The saved callback states as the resume reply sends them: JSON values, and each array's
    shape and dtype (the arrays follow, _bcast_callback_states)."""
    return [
        None if s is None else {
            "type": s["type"],
            "scalars": {k: v for k, v in s["state"].items() if not isinstance(v, np.ndarray)},
            "arrays": {k: [list(v.shape), v.dtype.str] for k, v in s["state"].items()
                       if isinstance(v, np.ndarray)},
        }
        for s in states
    ]  # fmt: skip


def _bcast_callback_states(dist, shapes, states):
    """Every rank's copy of rank 0's saved callback states (``states`` there, None elsewhere;
    ``shapes`` from _callback_shapes, on every rank)."""
    out = []
    for i, entry in enumerate(shapes):
        if entry is None:
            out.append(None)
            continue
        arrays = {}
        for k, (shape, dtype) in entry["arrays"].items():
            a = states[i]["state"][k] if states is not None else np.empty(shape, np.dtype(dtype))
            dist._bcast_array(a, 0)
            arrays[k] = a
        out.append({"type": entry["type"], "state": {**entry["scalars"], **arrays}})
    return out


def _make_loader(template, x, y, batch_size, shuffle, seed, dist, rank, size):
    sampler = None
    if dist:
        sampler = dist.DistributedSampler(len(x), num_replicas=size, rank=rank, shuffle=shuffle,
                                          seed=seed)  # fmt: skip
    if template is None:
        return DataLoader(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed, dtype=None,
                          sampler=sampler)  # fmt: skip
    # the caller's loader, with its transform, dtype and batch size; the data may be the part
    # left by val_split, the order is seeded by fit
    return DataLoader(x, y, batch_size=template.batch_size, shuffle=template.shuffle, seed=seed,
                      drop_last=template.drop_last, dtype=template.dtype,
                      transform=template.transform, sampler=sampler)  # fmt: skip


def _resume(state, path, model, optimizer, scheduler, loader, dist):
    from .checkpoint import load_checkpoint

    path = os.fspath(path)
    reply = callback_states = None
    if state.rank == 0:
        try:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"resume: no checkpoint at {path}")
            ckpt = load_checkpoint(path, model, getattr(optimizer, "optimizer", optimizer),
                                   scheduler, same_run=True)  # fmt: skip
            saved, callback_states = ckpt["state"], ckpt["callbacks"]
            seed, epoch, batch, partial, history, ranks, precision = _resume_state(
                path, saved, state, len(loader), state.num_train
            )
            sched = None if scheduler is None else scheduler.state_dict()
            reply = {"seed": seed, "epoch": epoch, "batch": batch, "partial": partial,
                     "history": dict(history), "scheduler": sched, "ranks": ranks,
                     "callbacks": _callback_shapes(callback_states),
                     "precision": precision}  # fmt: skip
        except (OSError, ValueError) as err:
            if dist is None:
                raise
            reply = {"error": f"{type(err).__name__}: {err}"}
    if dist:
        reply = dist._bcast_json(reply)
        if "error" in reply:  # every rank raises the same error: no rank waits for another
            raise ValueError(reply["error"])
        dist.broadcast_parameters(model)
        dist.broadcast_optimizer_state(optimizer)
        if state.rank != 0 and scheduler is not None:
            scheduler.load_state_dict(reply["scheduler"])
        mine = None if reply["ranks"] is None else reply["ranks"][state.rank]
        if state.rank != 0 and mine is not None:
            _set_rngs(model, mine["rng"], path)
        if mine is not None and reply["partial"] is not None:
            reply["partial"] = mine["partial"]  # this rank's own sums: the same additions
        callback_states = _bcast_callback_states(dist, reply["callbacks"], callback_states)
    state.resumed_callbacks = callback_states
    state.precision = reply["precision"] or state.precision
    state.seed = reply["seed"]
    state.history = History(reply["history"])
    state.history.num_batches = len(loader)
    state.epoch_done = reply["epoch"]
    state.epoch = reply["epoch"] + (1 if reply["partial"] is not None else 0)
    state.batch = reply["batch"]
    state.partial = reply["partial"]


def _loop(state, loader, val, callbacks, dist):
    model, loss, optimizer, scheduler = state.model, state.loss, state.optimizer, state.scheduler
    per_sample = getattr(loss, "reduction", "mean") == "mean"
    n_batches = state.num_batches
    flag = np.zeros(1)  # a rank's stop request, summed over the ranks after every batch
    model.train()
    for epoch in range(state.epoch_done + 1, state.epochs + 1):
        state.epoch = epoch
        first = state.batch
        p = state.partial or {"loss_sum": 0.0, "correct": 0, "seen": 0, "time": 0.0}
        loss_sum, correct, seen = float(p["loss_sum"]), p["correct"], int(p["seen"])
        counted = True
        start = time.perf_counter() - p["time"]
        state.partial = {"loss_sum": loss_sum, "correct": correct, "seen": seen, "time": p["time"]}
        for cb in callbacks:
            cb.on_epoch_begin(state, epoch)
        if first == 0 and _agreed(state.stop_requested == "epoch", flag, dist):
            # asked before the epoch's first batch (a resumed EarlyStopping that had stopped
            # the run): the epoch does not start
            state.epoch, state.partial = epoch - 1, None
            _finish(state, epoch - 1, 0)
            return
        b = first
        for xb, yb in loader.batches(epoch - 1, start=first):
            b += 1
            optimizer.zero_grad()
            out = model(xb)
            value = loss(out, yb)
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"fit: the loss is {value} at epoch {epoch}, batch {b} of {n_batches}: "
                    f"training diverged (try a smaller learning rate, gradient clipping, or "
                    f"check the inputs for NaN/inf)",
                    epoch, b, state.history,
                )  # fmt: skip
            _backward(model, loss.backward())
            optimizer.step()
            loss_sum += value * (len(xb) if per_sample else 1)
            c = _correct(loss, out, yb) if counted else None
            if c is None:
                counted = False
            else:
                correct += c
            seen += len(xb)
            elapsed = time.perf_counter() - start
            state.batch = b
            state.partial = {"loss_sum": loss_sum, "correct": correct, "seen": seen,
                             "time": elapsed}  # fmt: skip
            logs = {"loss": value, "size": len(xb), "mean_loss": loss_sum / seen,
                    "accuracy": correct / seen if counted else None, "seen": seen,
                    "elapsed": elapsed}  # fmt: skip
            for cb in callbacks:
                cb.on_batch_end(state, b, logs)
            # every rank stops at the same batch, whichever rank asked
            stop = _agreed(state.stop_requested == "batch", flag, dist)
            if stop and state.stop_requested is None:
                state.stop("batch", reason="another rank asked to stop")
            if stop and b < n_batches:
                _gather_ranks(state, dist)  # each rank's own sums, before they are merged
                if dist:  # the record's sums are the whole job's
                    sums = np.array([loss_sum, correct, seen], np.float64)
                    dist._allreduce_sum(sums)
                    state.partial = {"loss_sum": float(sums[0]), "correct": _count(sums[1]),
                                     "seen": int(sums[2]), "time": elapsed}  # fmt: skip
                _finish(state, epoch, b)
                return
        # the epoch is complete: metrics over all ranks, validation, scheduler, callbacks
        train_time = time.perf_counter() - start
        sums = np.array([loss_sum, correct, seen], np.float64)
        if dist:
            dist._allreduce_sum(sums)
        n = sums[2]
        row = {"epoch": epoch, "loss": float(sums[0] / n),
               "accuracy": float(sums[1] / n) if counted else None,
               "val_loss": None, "val_accuracy": None,
               "lr": float(optimizer.param_groups[0]["lr"]), "time": train_time,
               "samples_per_s": float(n / max(train_time, 1e-9))}  # fmt: skip
        if dist:  # rank 0's running statistics everywhere: validation reads the saved model's,
            # and a resumed run's (resume gives every rank rank 0's) reads the same
            dist.broadcast_buffers(model)
        if val is not None:
            ev = _evaluate(model, loss, val, 256, dist)
            row["val_loss"], row["val_accuracy"] = ev["loss"], ev["accuracy"]
            model.train()
        if scheduler is not None:
            if isinstance(scheduler, ReduceLROnPlateau):
                scheduler.step(row["val_loss"] if val is not None else row["loss"])
            else:
                scheduler.step()
        state.history.append(row)
        state.epoch_done, state.batch, state.partial = epoch, 0, None
        _gather_ranks(state, dist)
        try:
            for cb in callbacks:
                cb.on_epoch_end(state, epoch, row)
        finally:  # a Checkpoint writes once every callback has had the epoch's end, or failed
            for cb in callbacks:
                after = getattr(cb, "_after_epoch_end", None)
                if after is not None:
                    after(state)
        if _agreed(state.stop_requested is not None, flag, dist):
            if epoch < state.epochs:
                _finish(state, epoch, 0)
            return


def _agreed(stop, flag, dist):
    """Whether this rank or any other asks to stop (``stop`` alone outside a distributed run);
    ``flag`` is the one-element array the sum goes through."""
    if not dist:
        return stop
    flag[0] = stop
    dist._allreduce_sum(flag)
    return flag[0] > 0


def _streams(model):
    from .checkpoint import _random_modules

    return _random_modules(model)


def _own_streams(model, rank):
    """Give each rank other than 0 its own random streams (Dropout masks), derived from the
    stream it was built with: the same masks on every rank would tie their samples together.
    Rank 0 keeps its streams, so a 1-rank run is the plain run."""
    if rank:
        for m in _streams(model).values():
            m._rng = np.random.default_rng([int(m._rng.integers(2**63)), rank])


def _gather_ranks(state, dist):
    """Every rank's random streams and running sums into ``state.ranks`` on rank 0, for the
    checkpoint: a resume gives each rank its own back, so it adds up the same numbers in the
    same order as an uninterrupted run."""
    if dist:
        rng = {name: m._rng.bit_generator.state for name, m in _streams(state.model).items()}
        state.ranks = dist._gather_json({"rng": rng, "partial": state.partial})


def _set_rngs(model, states, path):
    mods = _streams(model)
    try:
        for name, st in states.items():
            mods[name]._rng.bit_generator.state = st
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: cannot resume: a rank's random stream does not load "
                         f"({type(err).__name__}: {err})") from None  # fmt: skip


def _finish(state, epoch, batch):
    h = state.history
    h.stopped_early = True
    h.interrupted = state.stop_requested == "batch"
    h.stopped_at = (epoch, batch) if h.interrupted else None
    h.stop_reason = state._reason or "another rank asked to stop"


def _batches(n, batch_size):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def predict(model, x, batch_size=256):
    """Model outputs for ``x`` in eval mode, batch by batch.

    A model in training mode is switched to eval for the call and back after, which threads
    sharing it would race on; a model already in eval mode is not touched, so any number of
    threads may call predict on it (the README's threading contract)."""
    batch_size = _whole("batch_size", batch_size, 1, caller="predict")
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError(f"predict: x must be an array of samples, got shape {x.shape}")
    was_training = model.training
    if was_training:
        model.eval()
    try:
        outs = [np.array(model(x[s]), copy=True) for s in _batches(len(x), batch_size)]
        if not outs:  # no samples: the model's output shape, of none (not a bare (0,))
            outs = [np.array(model(x), copy=True)]
    finally:
        if was_training:
            model.train()
    return np.concatenate(outs)


def evaluate(model, loss, data, batch_size=256):
    """``{"loss": mean loss, "accuracy": fraction correct or None}`` over ``data`` in eval mode."""
    batch_size = _whole("batch_size", batch_size, 1, caller="evaluate")
    return _evaluate(model, loss, _check_data("data", data), batch_size, None)


def _evaluate(model, loss, data, batch_size, dist):
    """evaluate(); distributed, each rank takes every size-th sample and the sums are added."""
    x, y = data
    n = len(x)
    if dist:
        x, y = x[dist.rank() :: dist.size()], y[dist.rank() :: dist.size()]
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
    if dist:
        sums = np.array([total, correct, counted], np.float64)
        dist._allreduce_sum(sums)
        total, correct, counted = float(sums[0]), _count(sums[1]), sums[2] == dist.size()
    return {"loss": total / n, "accuracy": correct / n if counted else None}
