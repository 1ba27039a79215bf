"""Callbacks of :func:`nnfast.train.fit`: progress bar, checkpoints, metrics files, early stopping.

    from nnfast.callbacks import Checkpoint, EarlyStopping, MetricsWriter, ProgressBar
    callbacks = [ProgressBar(), MetricsWriter("m.csv"), EarlyStopping(patience=3),
                 Checkpoint("ck/checkpoint.npz")]
    fit(model, loss, opt, (x, y), epochs=10, val_split=0.1, callbacks=callbacks)
    # interrupted: the same call with resume= continues it (in a new process, with the model
    # and optimizer built as before)
    fit(model, loss, opt, (x, y), epochs=10, val_split=0.1, callbacks=callbacks,
        resume="ck/checkpoint.npz")

``fit`` calls each hook of every callback, in list order, with the :class:`~nnfast.train.FitState`
of the run (``state.model``, ``state.optimizer``, ``state.history``, ``state.epoch``, ...).
A hook asks to end training with ``state.stop("epoch")`` (after the current epoch; asked in
``on_epoch_begin`` before the epoch's first batch, the epoch does not start) or
``state.stop("batch")`` (after the current batch: an interruption, which a :class:`Checkpoint`
records so that ``resume=`` continues exactly there). In a distributed run every rank runs the
hooks; the callbacks here print and write files on rank 0 only.
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import json
import os
import signal
import sys

import numpy as np

from . import _validate

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "MetricsWriter", "ProgressBar"]


class Callback:
    """Base class: every hook does nothing. ``on_train_end`` is called however training ends,
    with ``state.error`` set to the exception when it raised."""

    def on_train_begin(self, state):
        pass

    def on_epoch_begin(self, state, epoch: int):
        pass

    def on_batch_end(self, state, batch: int, logs: dict):
        """``batch`` counts from 1 in the epoch; ``logs`` has ``loss`` and ``size`` (this
        rank's batch) and the epoch's running ``mean_loss``, ``accuracy`` (or None), ``seen``
        (samples of this rank) and ``elapsed`` (seconds)."""

    def on_epoch_end(self, state, epoch: int, logs: dict):
        """``logs`` is the epoch's row of the history (``state.history.rows()[-1]``)."""

    def on_train_end(self, state):
        pass

    def state_dict(self):
        """What a :class:`Checkpoint` keeps of this callback, so that a resumed run goes on as
        the uninterrupted one would: a dict of JSON values and numpy arrays, or None."""
        return None

    def load_state_dict(self, state):
        """Take back a saved :meth:`state_dict`: ``fit(resume=...)`` calls it after
        ``on_train_begin``, for the callbacks of the checkpoint's classes, in order."""


def _is_root(state) -> bool:
    return state.rank == 0


class ProgressBar(Callback):
    """A tqdm bar per epoch (running loss, accuracy, samples/s) and a summary line per epoch.

    Parameters
    ----------
    bar : bool
        Show the bar (on ``sys.stderr``); False prints only the per-epoch lines.
    file : text file, optional
        Where the per-epoch lines go (default ``sys.stdout``).
    val_name : str
        What the validation metrics are called in the lines ("val"; the CLI says "test" when
        it validates on the test set).
    """

    def __init__(self, bar=True, file=None, val_name="val"):
        if file is not None and not callable(getattr(file, "write", None)):
            raise TypeError(f"ProgressBar: file must be an open text file (with write), got "
                            f"{type(file).__name__}")  # fmt: skip
        self.bar, self.file, self.val_name = bool(bar), file, val_name
        self._bar = None

    def on_epoch_begin(self, state, epoch):
        if not (self.bar and _is_root(state)):
            return
        from tqdm import tqdm

        done = state.num_samples * state.batch // state.num_batches  # resumed mid-epoch
        self._bar = tqdm(total=state.num_samples, initial=done,
                         desc=f"epoch {epoch}/{state.epochs}", unit="img", unit_scale=True,
                         leave=False, file=sys.stderr, dynamic_ncols=True,
                         mininterval=0.5)  # fmt: skip

    def on_batch_end(self, state, batch, logs):
        if self._bar is None:
            return
        self._bar.update(logs["size"] * state.world_size)
        if batch % 20 == 1 or batch == state.num_batches:
            acc = logs["accuracy"]
            rate = logs["seen"] * state.world_size / max(logs["elapsed"], 1e-9)
            text = f"loss {logs['mean_loss']:.4f} "
            text += "" if acc is None else f"acc {100 * acc:.2f}% "
            self._bar.set_postfix_str(f"{text}{rate:,.0f} samples/s", refresh=False)

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_epoch_end(self, state, epoch, logs):
        self._close()
        if not _is_root(state):
            return
        width = len(str(state.epochs))
        parts = [f"epoch {epoch:>{width}}/{state.epochs}", f"loss {logs['loss']:.4f}"]
        if logs["accuracy"] is not None:
            parts.append(f"acc {100 * logs['accuracy']:.2f}%")
        v = self.val_name
        if logs["val_loss"] is not None:
            parts.append(f"{v} loss {logs['val_loss']:.4f}")
        if logs["val_accuracy"] is not None:
            parts.append(f"{v} acc {100 * logs['val_accuracy']:.2f}%")
        parts.append(f"lr {logs['lr']:.2e}")
        parts.append(f"{logs['time']:.1f}s ({logs['samples_per_s']:,.0f} samples/s)")
        print("  ".join(parts), file=self.file or sys.stdout, flush=True)

    def on_train_end(self, state):
        self._close()


METRIC_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time",
                 "samples_per_s")  # fmt: skip


class MetricsWriter(Callback):
    """Write the history's rows after every epoch, atomically: CSV when ``path`` ends in
    ``.csv``, else JSON lines (``.jsonl``, ``.json``, ``.ndjson``). The fields are
    :data:`METRIC_FIELDS`; a resumed run rewrites the file with the restored epochs first."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def on_epoch_end(self, state, epoch, logs):
        if _is_root(state):
            write_metrics(self.path, state.history.rows())


def write_metrics(path, rows):
    """``rows`` (dicts with :data:`METRIC_FIELDS`) as CSV or JSON lines, atomically."""
    from ._atomic import atomic_write

    text = _io.StringIO()
    rows = [{k: r.get(k) for k in METRIC_FIELDS} for r in rows]
    if str(path).lower().endswith(".csv"):
        w = csv.DictWriter(text, fieldnames=METRIC_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    else:
        for row in rows:
            text.write(json.dumps(row) + "\n")
    with atomic_write(path) as f:
        f.write(text.getvalue().encode())


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs; with ``restore_best_weights`` the model gets the best epoch's weights back.

    ``mode`` is "min", "max" or "auto" (max for names containing "acc", else min).
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto",
                 restore_best_weights=True):  # fmt: skip
        if not isinstance(monitor, str):
            raise TypeError(f"EarlyStopping: monitor must be a metric's name, got {monitor!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.patience = _validate.integer(patience, "patience", "EarlyStopping", low=0)
        self.min_delta = abs(_validate.real(min_delta, "min_delta", "EarlyStopping"))
        self.restore_best_weights = bool(restore_best_weights)
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self._best_state = None

    def on_train_begin(self, state):
        self.best, self.best_epoch, self.wait, self._best_state = None, None, 0, None

    def on_epoch_end(self, state, epoch, logs):
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
                self._best_state = state.model.state_dict()
            return
        self.wait += 1
        if self.wait >= self.patience:
            state.stop("epoch", reason=self._reason())

    def on_epoch_begin(self, state, epoch):
        # resumed from a checkpoint of the epoch where it stopped the run: no epoch more
        if self.wait and self.wait >= self.patience:  # wait 0 after an improvement
            state.stop("epoch", reason=self._reason())

    def _reason(self):
        return (f"EarlyStopping: {self.monitor} did not improve for {self.wait} epochs "
                f"(best {self.best:.6g} at epoch {self.best_epoch})")  # fmt: skip

    def on_train_end(self, state):
        # stopped inside an epoch: an interruption to resume, whose weights (in a Checkpoint
        # written after this hook, too) must be the trained ones
        if state.error is not None or state.partial is not None:
            return
        if self.restore_best_weights and self._best_state is not None:
            state.model.load_state_dict(self._best_state)

    _WEIGHTS = "best_weights."

    def state_dict(self):
        """best, best_epoch and wait, and the best epoch's weights (``best_weights.<name>``)."""
        sd = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}
        sd.update({self._WEIGHTS + k: v for k, v in (self._best_state or {}).items()})
        return sd

    def load_state_dict(self, state):
        what = "EarlyStopping.load_state_dict"
        best, epoch = state.get("best"), state.get("best_epoch")
        with _validate.saved_data():
            best = None if best is None else _validate.real(best, "best", what, finite=False)
            epoch = None if epoch is None else _validate.integer(epoch, "best_epoch", what, low=1)
            wait = _validate.integer(state.get("wait"), "wait", what, low=0)
        if (best is None) != (epoch is None):
            raise ValueError(f"{what}: best {best!r} and best_epoch {epoch!r} go together")
        weights = {k[len(self._WEIGHTS) :]: v for k, v in state.items()
                   if k.startswith(self._WEIGHTS)}  # fmt: skip
        if any(not isinstance(v, np.ndarray) for v in weights.values()):
            raise ValueError(f"{what}: the best weights must be arrays")
        self.best, self.best_epoch, self.wait = best, epoch, wait
        self._best_state = weights if weights and self.restore_best_weights else None


class Checkpoint(Callback):
    """Write a training checkpoint after every epoch, and when training is interrupted.

    The file (see :mod:`nnfast.checkpoint`) holds the model, optimizer, scheduler, Dropout's
    random streams, the callbacks' states and ``fit``'s progress, so ``fit(..., resume=path)``
    continues the run with the same weights, bit for bit, as an uninterrupted one (same data,
    seed and thread count). An epoch's checkpoint is written after every callback's
    ``on_epoch_end`` (also when one of them raised), wherever this one is in the list. Written
    atomically, on rank 0 only; the directory is created when training begins, and again at
    each epoch's end if it went away (other outputs may go into it).

    With ``signals`` (the default), the first Ctrl-C (SIGINT) or SIGTERM (what ``timeout`` and
    batch schedulers send) asks ``fit`` to stop after the current batch: it then writes the
    checkpoint and returns, with ``history.interrupted`` set and :attr:`signal` the signal's
    number. A second Ctrl-C raises KeyboardInterrupt at once.

    Parameters
    ----------
    path : str or PathLike
    metadata : dict, optional
        Model metadata, as for :func:`nnfast.io.save` (the data set, its normalisation).
    state : dict, optional
        Extra JSON-serialisable record saved beside fit's progress (the CLI's configuration).
    signals : bool
    """

    def __init__(self, path, metadata=None, state=None, signals=True):
        from .io import record_json

        for name, value in (("metadata", metadata), ("state", state)):
            if value is not None:  # refused now, not at the first save
                record_json("Checkpoint", name, value)
        self.path = os.fspath(path)
        self.metadata, self.extra, self.signals = metadata, dict(state or {}), bool(signals)
        self.signal = None
        self._previous = {}

    def save(self, state):
        """Write the checkpoint of ``state`` now (rank 0 only)."""
        if not _is_root(state):
            return
        from .checkpoint import save_checkpoint

        self._make_directory()
        record = {**self.extra, "fit": state.state_dict()}
        save_checkpoint(self.path, state.model, state.optimizer, state.scheduler, record,
                        self.metadata, state.callbacks)  # fmt: skip

    def _handle(self, signum, frame):
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        self._state.stop("batch", reason=signal.Signals(signum).name)

    def _make_directory(self):
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)

    def on_train_begin(self, state):
        self.signal, self._state = None, state
        if _is_root(state):
            self._make_directory()
        if not self.signals:
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)

    def on_epoch_end(self, state, epoch, logs):
        if _is_root(state):  # again, for the callbacks after this one that write into it
            self._make_directory()

    def _after_epoch_end(self, state):
        # after every callback's on_epoch_end, whatever the list's order: an EarlyStopping
        # after this one has then counted the epoch (and stopped the run, which a resume from
        # here must know)
        self.save(state)

    def on_train_end(self, state):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        if state.error is None and state.partial is not None:  # stopped inside an epoch
            self.save(state)
