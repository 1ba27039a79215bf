"""fit's callbacks, stops, validation split and exact resume from a Checkpoint."""

import csv
import json
import shutil

import numpy as np
import pytest

import nnfast
from nnfast import nn, optim
from nnfast.callbacks import (
    METRIC_FIELDS,
    Callback,
    Checkpoint,
    EarlyStopping,
    MetricsWriter,
    ProgressBar,
)
from nnfast.checkpoint import load_checkpoint, save_checkpoint
from nnfast.data import DataLoader
from nnfast.train import HISTORY_KEYS, fit, split_validation


def _blobs(n=200, classes=3, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim)) * 3
    y = rng.integers(0, classes, n)
    return (centers[y] + rng.standard_normal((n, dim))).astype(np.float32), y


def _setup(seed=3):
    """A model with a random stream (Dropout), AdamW and a cosine schedule."""
    nnfast.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16, activation="relu"), nn.Dropout(0.2), nn.Linear(16, 3))
    opt = optim.AdamW(model.parameters(), lr=0.01)
    return model, opt, optim.CosineAnnealingLR(opt, T_max=3)


class Recorder(Callback):
    def __init__(self, stop_at=None, when="batch"):
        self.calls, self.stop_at, self.when = [], stop_at, when

    def on_train_begin(self, state):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, state, epoch):
        self.calls.append(("epoch_begin", epoch))

    def on_batch_end(self, state, batch, logs):
        self.calls.append(("batch", state.epoch, batch))
        if (state.epoch, batch) == self.stop_at:
            state.stop(self.when)

    def on_epoch_end(self, state, epoch, logs):
        self.calls.append(("epoch_end", epoch))

    def on_train_end(self, state):
        self.calls.append(("train_end", state.error))


def test_hooks_order_and_one_history_shape():
    x, y = _blobs()
    model, opt, sched = _setup()
    rec = Recorder()
    h = fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=2, batch_size=64, seed=0,
            val_split=0.25, scheduler=sched, callbacks=[rec])  # fmt: skip
    batches = [("batch", e, b) for e in (1, 2) for b in (1, 2, 3)]  # 150 samples / 64
    assert rec.calls == [("train_begin",), ("epoch_begin", 1), *batches[:3], ("epoch_end", 1),
                         ("epoch_begin", 2), *batches[3:], ("epoch_end", 2),
                         ("train_end", None)]  # fmt: skip
    assert tuple(h) == HISTORY_KEYS and h.epochs == 2 and h["epoch"] == [1, 2]
    assert all(v is not None for k in HISTORY_KEYS for v in h[k])
    assert h.rows()[1]["val_accuracy"] == h["val_accuracy"][1]
    assert not h.stopped_early and not h.interrupted


def test_stop_after_epoch_and_after_batch():
    x, y = _blobs()
    model, opt, _ = _setup()
    h = fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=5, batch_size=64, seed=0,
            callbacks=[Recorder(stop_at=(2, 1), when="epoch")])  # fmt: skip
    assert h.epochs == 2 and h.stopped_early and not h.interrupted
    rec = Recorder(stop_at=(2, 2))
    h = fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=5, batch_size=64, seed=0,
            callbacks=[rec])  # fmt: skip
    assert h.epochs == 1 and h.interrupted and h.stopped_at == (2, 2)
    assert rec.calls[-2:] == [("batch", 2, 2), ("train_end", None)]
    with pytest.raises(ValueError, match="'epoch' or 'batch'"):
        nnfast.train.FitState().stop("now")


def test_error_reaches_on_train_end_and_is_raised():
    x, y = _blobs(n=64)
    x[40] = np.nan
    model, opt, _ = _setup()
    rec = Recorder()
    with pytest.raises(nnfast.train.NonFiniteLossError, match="epoch 1, batch 3 of 4"):
        fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=1, batch_size=16, shuffle=False,
            callbacks=[rec])  # fmt: skip
    assert isinstance(rec.calls[-1][1], nnfast.train.NonFiniteLossError)


def _run(tmp_path, epochs, stop_at=None, resume=None, name="ck.npz", loader=False, seed=5):
    x, y = _blobs()
    model, opt, sched = _setup()
    ck = Checkpoint(tmp_path / name)
    train = DataLoader(x, y, batch_size=32) if loader else (x, y)
    h = fit(model, nn.CrossEntropyLoss(), opt, train, epochs=epochs, batch_size=32, seed=seed,
            val_split=0.2, scheduler=sched, callbacks=[ck, Recorder(stop_at)],
            resume=resume)  # fmt: skip
    return model, h


@pytest.mark.parametrize("loader", [False, True], ids=["arrays", "DataLoader"])
def test_resume_mid_epoch_and_between_epochs_is_bit_identical(tmp_path, loader):
    straight, h1 = _run(tmp_path, 3, name="a.npz", loader=loader)
    _, h = _run(tmp_path, 3, stop_at=(2, 3), loader=loader)  # 160 samples: 5 batches
    assert h.interrupted and h.epochs == 1
    saved = load_checkpoint(tmp_path / "ck.npz")["state"]["fit"]
    assert (saved["epoch"], saved["batch"]) == (1, 3)
    _, h = _run(tmp_path, 3, stop_at=(2, 5), resume=tmp_path / "ck.npz", loader=loader)
    assert h.interrupted and h.stopped_at == (2, 0) and h.epochs == 2
    resumed, h2 = _run(tmp_path, 3, resume=tmp_path / "ck.npz", loader=loader)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert h1[k] == h2[k], k


@pytest.mark.parametrize("seed", [6, None])
def test_a_resume_holds_out_the_checkpoints_validation_samples(tmp_path, seed):
    """The split took the call's seed and the shuffling the checkpoint's: a resume with
    another seed (or None, drawn afresh) trained on other samples without a word."""
    straight, h1 = _run(tmp_path, 2, name="a.npz")
    _run(tmp_path, 2, stop_at=(2, 3))
    resumed, h2 = _run(tmp_path, 2, resume=tmp_path / "ck.npz", seed=seed)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    assert h1["val_loss"] == h2["val_loss"]


def _tamper(path, out, edit):
    ck = load_checkpoint(path)
    state = json.loads(json.dumps(ck["state"]))
    edit(state)
    x, y = _blobs()
    model, opt, sched = _setup()
    load_checkpoint(path, model, opt, sched)
    save_checkpoint(out, model, opt, sched, state)
    return out


@pytest.mark.parametrize(
    "edit, what",
    [
        (lambda s: s.pop("fit"), "holds no progress of nnfast.train.fit"),
        (lambda s: s["fit"].update(version=7), "version 7"),
        (lambda s: s["fit"].update(epoch="1"), "epoch is '1', not a whole number"),
        (lambda s: s["fit"].update(batch=99), "batch is 99, not a whole number in 0..4"),
        (lambda s: s["fit"].update(num_train=10), "trained on 10 samples, this run has 160"),
        (lambda s: s["fit"].update(num_batches=3), "3 batches per epoch, this run 5"),
        (lambda s: s["fit"]["history"].pop("lr"), "history must have the keys"),
        (lambda s: s["fit"]["history"]["loss"].append(1.0), "one entry per epoch"),
        (lambda s: s["fit"]["history"]["loss"].__setitem__(0, "x"), "other than numbers"),
        (lambda s: s["fit"].update(partial=None), "batch count and running sums disagree"),
        (lambda s: s["fit"]["partial"].update(seen=-1), "running sums must be"),
    ],
)  # fmt: skip
def test_unresumable_checkpoint_is_named(tmp_path, edit, what):
    _run(tmp_path, 3, stop_at=(2, 3))
    bad = _tamper(tmp_path / "ck.npz", tmp_path / "bad.npz", edit)
    with pytest.raises(ValueError) as err:
        _run(tmp_path, 3, resume=bad)
    assert str(err.value).startswith(f"{bad}: cannot resume: ") and what in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "saved_with, resumed_with, what",
    [
        ("cosine", "step", r"the scheduler state does not load \(StepLR.load_state_dict: the "
                           r"state was saved by CosineAnnealingLR"),
        ("cosine", None, "was saved with CosineAnnealingLR: pass it as scheduler="),
        (None, "step", "holds no scheduler state"),
    ],
)  # fmt: skip
def test_resume_with_another_scheduler_is_refused(tmp_path, saved_with, resumed_with, what):
    """Each resumed silently before: a schedule restarted at epoch 0, or another's epoch."""
    x, y = _blobs()

    def run(sched_kind, resume=None):
        model, opt, _ = _setup()
        makers = {"cosine": lambda: optim.CosineAnnealingLR(opt, T_max=3),
                  "step": lambda: optim.StepLR(opt, 2), None: lambda: None}  # fmt: skip
        ck = Checkpoint(tmp_path / "ck.npz")
        fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=2, batch_size=32, seed=5,
            scheduler=makers[sched_kind](), resume=resume, callbacks=[ck])  # fmt: skip

    run(saved_with)
    with pytest.raises(ValueError, match=what) as err:
        run(resumed_with, resume=tmp_path / "ck.npz")
    assert str(tmp_path / "ck.npz") in str(err.value)


def _fit_with(**change):
    model, opt, _ = _setup()
    kw = {"model": model, "loss": nn.CrossEntropyLoss(), "optimizer": opt, "train": _blobs(n=32),
          "epochs": 1, **change}  # fmt: skip
    return fit(**kw)


@pytest.mark.parametrize(
    "change, err, what",
    [
        ({"loss": nn.CrossEntropyLoss}, TypeError, r"loss must be a loss module such as nn."
                                                   r"CrossEntropyLoss\(\), got the class"),
        ({"optimizer": None}, TypeError, "optimizer must be an nnfast optimizer, got NoneType"),
        ({"scheduler": object()}, TypeError, "scheduler must be an LR scheduler, got object"),
        ({"callbacks": ProgressBar()}, TypeError, "callbacks must be a list of Callbacks"),
        ({"callbacks": [object()]}, TypeError, r"callbacks\[0\] is a object, not a Callback"),
        ({"model": "m"}, TypeError, "model must be an nnfast Module, got str"),
        ({"train": (np.zeros((4, 6)), 3)}, ValueError,
         "^train: inputs and targets must be arrays with a sample axis"),
    ],
)  # fmt: skip
def test_fit_names_an_argument_of_the_wrong_kind(change, err, what):
    """Each failed deep inside: 'truth value of an array is ambiguous', AttributeError,
    'len() of unsized object'."""
    with pytest.raises(err, match=what if what.startswith("^") else f"fit: {what}"):
        _fit_with(**change)


def test_other_parts_name_an_argument_of_the_wrong_kind(tmp_path):
    model, _, _ = _setup()
    with pytest.raises(ValueError, match=r"predict: x must be an array of samples"):
        nnfast.train.predict(model, 1.0)
    with pytest.raises(TypeError, match="ProgressBar: file must be an open text file"):
        ProgressBar(file="out.txt")
    with pytest.raises(TypeError, match="save_checkpoint: optimizer must be an nnfast optim"):
        save_checkpoint(tmp_path / "c.npz", model, optimizer=model)
    assert not (tmp_path / "c.npz").exists()


def test_resume_of_a_missing_file():
    model, opt, _ = _setup()
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at /nonexistent\.npz"):
        fit(model, nn.CrossEntropyLoss(), opt, _blobs(), epochs=1, resume="/nonexistent.npz")


def test_resume_with_another_model_of_the_same_shapes_is_refused(tmp_path):
    """Its weights fit: a tanh model resumed a relu one's run without a word."""
    _run(tmp_path, 3, stop_at=(2, 3))
    nnfast.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 16, activation="tanh"), nn.Dropout(0.2), nn.Linear(16, 3))
    opt = optim.AdamW(model.parameters(), lr=0.01)
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"was saved from another model \(model\[0\]: Linear\("
                                         r".*'tanh'.* against Linear\(.*'relu'"):  # fmt: skip
        fit(model, nn.CrossEntropyLoss(), opt, _blobs(), epochs=3, batch_size=32, seed=5,
            val_split=0.2, scheduler=optim.CosineAnnealingLR(opt, T_max=3),
            resume=tmp_path / "ck.npz")  # fmt: skip
    for k, v in model.state_dict().items():  # refused before anything loaded
        np.testing.assert_array_equal(v, before[k])


def test_an_optimizer_of_another_model_is_refused():
    """It trained nothing: three epochs of the same loss."""
    model, _, _ = _setup()
    _, other, _ = _setup()
    with pytest.raises(ValueError, match="the optimizer holds none of the model's parameters"):
        fit(model, nn.CrossEntropyLoss(), other, _blobs(), epochs=1)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_metrics_writer_and_progress_lines(tmp_path, capsys, suffix):
    x, y = _blobs()
    model, opt, _ = _setup()
    path = tmp_path / f"m{suffix}"
    fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=2, batch_size=50, val_split=0.1,
        callbacks=[MetricsWriter(path), ProgressBar(bar=False)], seed=1)  # fmt: skip
    text = path.read_text()
    if suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        assert list(rows[0]) == list(METRIC_FIELDS)
    else:
        rows = [json.loads(line) for line in text.splitlines()]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2  loss ") and "val acc" in lines[1]


def _run_es(tmp_path, patience, stop_at=None, resume=None, early_first=True):
    """_run's model and schedule, with an EarlyStopping and a Checkpoint in either order."""
    x, y = _blobs()
    model, opt, sched = _setup()
    es = EarlyStopping(patience=patience, monitor="val_accuracy")
    ck = Checkpoint(tmp_path / "ck.npz", signals=False)
    cbs = [es, ck] if early_first else [ck, es]
    h = fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=6, batch_size=32, seed=5,
            val_split=0.2, scheduler=sched, callbacks=[*cbs, Recorder(stop_at)],
            resume=resume)  # fmt: skip
    return model, h, es


@pytest.mark.parametrize("early_first", [True, False], ids=["EarlyStopping first", "after"])
@pytest.mark.parametrize("patience, stop_at", [(100, (4, 2)), (1, (2, 3)), (1, (1, 5))])
def test_resume_with_early_stopping_is_bit_identical(tmp_path, patience, stop_at, early_first):
    """EarlyStopping's best, wait and best weights go into the checkpoint, and an interrupted
    run's weights stay as trained whatever the callbacks' order: EarlyStopping put the best
    epoch's weights back before a later Checkpoint saved the mid-epoch state, and a resumed
    run counted its patience afresh."""
    straight, h1, es1 = _run_es(tmp_path, patience)
    _, h, _ = _run_es(tmp_path, patience, stop_at=stop_at, early_first=early_first)
    assert h.interrupted  # (1, 5), the epoch's last batch, ends it: stopped_at (1, 0)
    saved = load_checkpoint(tmp_path / "ck.npz")["callbacks"]
    assert [s and s["type"] for s in saved] == (
        ["EarlyStopping", None, None] if early_first else [None, "EarlyStopping", None]
    )
    resumed, h2, es2 = _run_es(tmp_path, patience, resume=tmp_path / "ck.npz")
    assert (h2.epochs, h2.stopped_early) == (h1.epochs, h1.stopped_early)
    assert (es2.best, es2.best_epoch, es2.wait) == (es1.best, es1.best_epoch, es1.wait)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    for k in ("loss", "val_loss", "val_accuracy", "lr"):
        assert h1[k] == h2[k], k


@pytest.mark.parametrize("early_first", [True, False], ids=["EarlyStopping first", "after"])
def test_resuming_a_run_early_stopping_ended_trains_no_more(tmp_path, early_first):
    """The checkpoint of the epoch where EarlyStopping stopped the run resumes to the same end:
    no epoch more (it trained one, then stopped again), the best epoch's weights restored."""
    straight, h1, es1 = _run_es(tmp_path, 1, early_first=early_first)
    assert h1.stopped_early and h1.epochs < 6 and "EarlyStopping: val_accuracy" in h1.stop_reason
    record = tmp_path / "ck.npz"
    before = record.read_bytes()
    counter = Recorder()
    x, y = _blobs()
    model, opt, sched = _setup()
    es = EarlyStopping(patience=1, monitor="val_accuracy")
    ck = Checkpoint(record, signals=False)
    h2 = fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=6, batch_size=32, seed=5,
             val_split=0.2, scheduler=sched, resume=record,
             callbacks=[*([es, ck] if early_first else [ck, es]), counter])  # fmt: skip
    assert not [c for c in counter.calls if c[0] in ("batch", "epoch_end")]
    assert (h2.epochs, h2.stopped_early, h2.interrupted) == (h1.epochs, True, False)
    assert h2.stop_reason == h1.stop_reason
    assert (es.best, es.best_epoch, es.wait) == (es1.best, es1.best_epoch, es1.wait)
    for a, b in zip(straight.parameters(), model.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    assert record.read_bytes() == before  # nothing trained, nothing rewritten
    # a larger patience goes on training from there
    model, opt, sched = _setup()
    h3 = fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=6, batch_size=32, seed=5,
             val_split=0.2, scheduler=sched, resume=record,
             callbacks=[EarlyStopping(patience=100, monitor="val_accuracy")])  # fmt: skip
    assert h3.epochs == 6 and not h3.stopped_early


def test_an_epochs_checkpoint_is_written_when_a_later_callback_fails(tmp_path):
    class Fails(Callback):
        def on_epoch_end(self, state, epoch, logs):
            if epoch == 2:
                raise OSError("the metrics disk went away")

    x, y = _blobs()
    model, opt, _ = _setup()
    cbs = [Checkpoint(tmp_path / "ck.npz", signals=False), Fails()]
    with pytest.raises(OSError, match="went away"):
        fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=3, batch_size=32, callbacks=cbs)
    assert load_checkpoint(tmp_path / "ck.npz")["state"]["fit"]["epoch"] == 2


def test_a_checkpoint_directory_that_went_away_is_made_again_for_what_follows(tmp_path):
    """Outputs may go into the checkpoint's directory (nnfast train --metrics-out ck/m.csv)."""
    ck = tmp_path / "ck"

    class Remove(Callback):
        def on_epoch_begin(self, state, epoch):
            if epoch == 2:
                shutil.rmtree(ck)

    x, y = _blobs()
    model, opt, _ = _setup()
    cbs = [Checkpoint(ck / "ck.npz", signals=False), MetricsWriter(ck / "m.csv"), Remove()]
    h = fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=3, batch_size=32, callbacks=cbs)
    assert h.epochs == 3 and sorted(p.name for p in ck.iterdir()) == ["ck.npz", "m.csv"]


def test_patience_zero_stops_at_the_first_epoch_without_improvement():
    x, y = _blobs()
    model, opt, _ = _setup()
    seen = []

    class Watch(EarlyStopping):
        def on_epoch_end(self, state, epoch, logs):
            super().on_epoch_end(state, epoch, logs)
            seen.append(self.wait)

    h = fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=8, batch_size=32, seed=5,
            val_split=0.2, callbacks=[Watch(patience=0, monitor="val_loss")])  # fmt: skip
    assert seen[:-1] == [0] * (len(seen) - 1) and h.epochs == len(seen)
    assert seen[-1] == 1 or (h.epochs == 8 and seen[-1] == 0)


def test_a_checkpoint_without_callback_states_resumes_them_afresh(tmp_path):
    """Checkpoints from before callbacks' states were kept (none here: no callbacks)."""
    x, y = _blobs()
    model, opt, sched = _setup()
    fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=1, batch_size=32, seed=5,
        val_split=0.2, scheduler=sched, callbacks=[Checkpoint(tmp_path / "ck.npz")])  # fmt: skip
    assert load_checkpoint(tmp_path / "ck.npz")["callbacks"] == [None]
    _, h, es = _run_es(tmp_path, 100, resume=tmp_path / "ck.npz")
    assert h.epochs == 6 and es.best_epoch >= 2


@pytest.mark.parametrize(
    "edit, what",
    [
        (lambda st: st.update(wait=-1), "wait must be a whole number >= 0"),
        (lambda st: st.update(best="x"), "best must be a real number"),
        (lambda st: st.update(best=None), "best None and best_epoch"),
    ],
)
def test_a_bad_saved_callback_state_is_named(tmp_path, edit, what):
    _run_es(tmp_path, 100, stop_at=(3, 2))

    class Tampered(EarlyStopping):
        def state_dict(self):
            sd = super().state_dict()
            edit(sd)
            return sd

    model, opt, sched = _setup()
    ck = load_checkpoint(tmp_path / "ck.npz", model, opt, sched)
    es = Tampered(monitor="val_accuracy")
    es.load_state_dict(ck["callbacks"][0]["state"])
    save_checkpoint(tmp_path / "bad.npz", model, opt, sched, ck["state"], callbacks=[es])
    # the file's record names the class it saved, Tampered: resume it with one
    x, y = _blobs()
    model, opt, sched = _setup()
    with pytest.raises(ValueError) as err:
        fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=6, batch_size=32, seed=5,
            val_split=0.2, scheduler=sched, callbacks=[Tampered(monitor="val_accuracy")],
            resume=tmp_path / "bad.npz")  # fmt: skip
    assert str(err.value).startswith(f"resume: {tmp_path / 'bad.npz'}: Tampered's saved state")
    assert what in str(err.value)


def test_a_malformed_callbacks_record_is_named(tmp_path):
    class Odd(Callback):
        def state_dict(self):
            return [1, 2]

    model, opt, _ = _setup()
    with pytest.raises(TypeError, match=r"Odd.state_dict\(\) returned list, not a dict"):
        save_checkpoint(tmp_path / "c.npz", model, opt, callbacks=[Odd()])
    assert not (tmp_path / "c.npz").exists()


def test_every_on_train_end_runs_when_one_raises(tmp_path):
    """A Checkpoint after a failing on_train_end still puts the signal handlers back."""
    import signal

    class Boom(Callback):
        def on_train_end(self, state):
            raise RuntimeError("boom")

    before = signal.getsignal(signal.SIGINT)
    x, y = _blobs(n=64)
    model, opt, _ = _setup()
    rec = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=1, batch_size=32,
            callbacks=[Boom(), Checkpoint(tmp_path / "c.npz"), rec])  # fmt: skip
    assert signal.getsignal(signal.SIGINT) is before
    assert rec.calls[-1] == ("train_end", None)


@pytest.mark.parametrize(
    "kw, err, what",
    [
        ({"patience": "3"}, TypeError, "patience must be an int"),
        ({"patience": 2.7}, TypeError, "patience must be an int"),
        ({"patience": -1}, ValueError, "patience must be a whole number >= 0"),
        ({"min_delta": float("nan")}, ValueError, "min_delta must be finite"),
        ({"min_delta": "x"}, TypeError, "min_delta must be a real number"),
        ({"monitor": None}, TypeError, "monitor must be a metric's name"),
    ],
)
def test_early_stopping_bad_arguments(kw, err, what):
    with pytest.raises(err, match=f"EarlyStopping: {what}"):
        EarlyStopping(**kw)


def test_early_stopping_asks_to_stop_after_the_epoch():
    x, y = _blobs()
    model, _, _ = _setup()
    stop = EarlyStopping(monitor="val_accuracy", patience=1, min_delta=1.0)
    h = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (x, y),
            epochs=10, val_split=0.2, callbacks=[stop], seed=0)  # fmt: skip
    assert h.epochs == 2 and h.stopped_early and not h.interrupted and stop.best_epoch == 1


def test_validation_split():
    x, y = np.arange(100, dtype=np.float32)[:, None], np.arange(100)
    (xt, yt), (xv, yv) = split_validation(x, y, 0.1, seed=4)
    assert len(xv) == 10 and len(xt) == 90 and set(yv).isdisjoint(yt)
    assert (np.diff(yt) > 0).all()  # the rest keep their order
    assert np.array_equal(split_validation(x, y, 0.1, seed=4)[1][1], yv)
    assert not np.array_equal(split_validation(x, y, 0.1, seed=5)[1][1], yv)
    for bad in (1.0, -0.1, "0.1", True):
        with pytest.raises(ValueError, match="val_split must be a number in"):
            split_validation(x, y, bad, seed=0)
    with pytest.raises(ValueError, match="leaves none to train on"):
        split_validation(x[:1], y[:1], 0.5, seed=0)
    model, opt, _ = _setup()
    with pytest.raises(ValueError, match="give val or val_split, not both"):
        fit(model, nn.CrossEntropyLoss(), opt, _blobs(), epochs=1, val=_blobs(), val_split=0.1)


@pytest.mark.parametrize(
    "kw, err, what",
    [
        ({"epochs": -1}, ValueError, "epochs must be a whole number >= 0"),
        ({"epochs": 1.5}, TypeError, "epochs must be a whole number >= 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be a whole number >= 1"),
        ({"seed": -2}, ValueError, "seed must be a whole number >= 0"),
    ],
)
def test_bad_options(kw, err, what):
    model, opt, _ = _setup()
    with pytest.raises(err, match=what):
        fit(model, nn.CrossEntropyLoss(), opt, _blobs(), **{"epochs": 1, **kw})
