"""nnfast.train: fit/evaluate/predict, XOR, reproducibility, early stopping, non-finite loss."""

import math

import numpy as np
import pytest

import nnfast
from nnfast import nn, optim
from nnfast.train import EarlyStopping, NonFiniteLossError, evaluate, fit, predict

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([0, 1, 1, 0])


def _blobs(rng, n=240, classes=3, dim=6):
    centers = rng.standard_normal((classes, dim)) * 3
    y = rng.integers(0, classes, n)
    return (centers[y] + rng.standard_normal((n, dim))).astype(np.float32), y


def test_xor_mlp_reaches_100_percent():
    nnfast.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2, activation="tanh"), nn.Linear(2, 1))
    loss = nn.BCEWithLogitsLoss()
    hist = fit(model, loss, optim.Adam(model.parameters(), lr=0.05),
               (XOR_X, XOR_Y.astype(np.float32)), epochs=500, batch_size=4, seed=0)  # fmt: skip
    assert hist["accuracy"][-1] == 1.0
    assert ((predict(model, XOR_X)[:, 0] > 0) == XOR_Y).all()


def test_multi_label_accuracy_is_a_fraction_of_the_samples(rng):
    # K labels per sample: each right label counts 1/K of its sample (it counted 1, and the
    # accuracy of 10 samples of 3 labels read 1.5)
    x = rng.standard_normal((10, 4)).astype(np.float32)
    y = (rng.random((10, 3)) > 0.5).astype(np.float32)
    model = nn.Sequential(nn.Linear(4, 3))
    out = model(x)
    want = np.mean((out > 0) == (y > 0.5))
    got = evaluate(model, nn.BCEWithLogitsLoss(), (x, y), batch_size=4)["accuracy"]
    assert got == pytest.approx(want)
    hist = fit(model, nn.BCEWithLogitsLoss(), optim.SGD(model.parameters(), lr=0.0), (x, y),
               epochs=1, batch_size=4, val=(x, y))  # fmt: skip
    assert hist["accuracy"][-1] == pytest.approx(want)
    assert hist["val_accuracy"][-1] == pytest.approx(want)


def _train(seed, x, y, val):
    nnfast.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(6, 16, activation="relu"), nn.Dropout(0.2), nn.BatchNorm1d(16), nn.Linear(16, 3)
    )
    opt = optim.AdamW(model.parameters(), lr=0.01)
    sched = optim.CosineAnnealingLR(opt, T_max=4)
    hist = fit(model, nn.CrossEntropyLoss(label_smoothing=0.05), opt, (x, y), epochs=4,
               batch_size=32, val=val, scheduler=sched)  # fmt: skip
    return model, hist


def test_fit_history_and_bit_identical_reproduction(rng):
    x, y = _blobs(rng)
    val = (x[:60], y[:60])
    m1, h1 = _train(7, x, y, val)
    m2, h2 = _train(7, x, y, val)
    assert h1.epochs == 4 and set(h1) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert h1["loss"] == h2["loss"] and h1["val_accuracy"] == h2["val_accuracy"]
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p1.data, p2.data)
    assert h1["val_accuracy"][-1] > 0.9
    assert h1["lr"][0] == 0.01 and h1["lr"][-1] < 0.01
    _, h3 = _train(8, x, y, val)
    assert h3["loss"] != h1["loss"]
    ev = evaluate(m1, nn.CrossEntropyLoss(label_smoothing=0.05), val)
    assert ev["loss"] == pytest.approx(h1["val_loss"][-1])
    assert predict(m1, x).shape == (len(x), 3) and m1.training


def test_early_stopping_restores_best(rng):
    x, y = _blobs(rng)
    nnfast.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 3))
    stop = EarlyStopping(monitor="val_loss", patience=2)
    # lr so high that validation loss wanders: training must stop and restore the best epoch
    opt = optim.SGD(model.parameters(), lr=5.0)
    hist = fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=50, batch_size=16,
               val=(x[:50], y[:50]), callbacks=[stop], seed=0)  # fmt: skip
    assert hist.stopped_early and hist.epochs < 50
    best = min(hist["val_loss"])
    assert stop.best == best
    assert evaluate(model, nn.CrossEntropyLoss(), (x[:50], y[:50]))["loss"] == pytest.approx(best)


def test_non_finite_loss_names_epoch_and_batch(rng):
    x, y = _blobs(rng, n=64)
    x[40] = np.nan  # batch 3 of 4 (batch_size 16, no shuffling)
    model = nn.Sequential(nn.Linear(6, 3, seed=0))
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 3 of 4") as err:
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (x, y),
            epochs=2, batch_size=16, shuffle=False)  # fmt: skip
    assert err.value.epoch == 1 and err.value.batch == 3


def test_plateau_scheduler_and_mse(rng):
    """fit steps ReduceLROnPlateau with each epoch's loss: noisy targets make the loss plateau,
    and the rates recorded per epoch are torch's rule replayed on the recorded losses."""
    x = rng.standard_normal((64, 3)).astype(np.float32)
    t = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    t += 0.3 * rng.standard_normal(t.shape).astype(np.float32)
    model = nn.Sequential(nn.Linear(3, 1, seed=0))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    hist = fit(model, nn.MSELoss(), opt, (x, t), epochs=30, batch_size=16, seed=0,
               scheduler=optim.ReduceLROnPlateau(opt, patience=2))  # fmt: skip
    lr, best, bad, want = 0.1, math.inf, 0, []
    for loss in hist["loss"]:
        want.append(lr)
        best, bad = (loss, 0) if loss < best * (1 - 1e-4) else (best, bad + 1)
        if bad > 2:
            lr, bad = (lr * 0.1 if lr * 0.9 > 1e-8 else lr), 0
    np.testing.assert_allclose(hist["lr"], want, rtol=1e-12)
    assert want[-1] < 1e-3  # it fired, more than once
    assert hist["accuracy"][-1] is None
    assert hist["loss"][-1] < 0.2  # the noise floor is ~0.08


def test_bad_data():
    model = nn.Sequential(nn.Linear(2, 1))
    opt = optim.SGD(model.parameters())
    with pytest.raises(ValueError, match="3 inputs but 2 targets"):
        fit(model, nn.MSELoss(), opt, (np.zeros((3, 2)), np.zeros(2)), epochs=1)
    with pytest.raises(ValueError, match=r"Linear\(2, 1\): expected input of shape \(N, 2\)"):
        fit(model, nn.MSELoss(), opt, (np.zeros((3, 5)), np.zeros((3, 1))), epochs=1)


def test_predict_of_no_samples_has_the_models_output_shape():
    """It returned a bare (0,): evaluate then failed on 'axis 1 is out of bounds'."""
    model = nn.Sequential(nn.Linear(6, 3))
    assert predict(model, np.zeros((0, 6), np.float32)).shape == (0, 3)
    with pytest.raises(ValueError, match="predict: x must be an array of samples"):
        predict(model, 1.0)


def test_predict_leaves_a_model_in_eval_mode_untouched(monkeypatch):
    """Threads sharing an eval-mode model may call predict: it switches no mode (it used to
    switch to eval and back to the previous mode, racing with another thread's switch)."""
    model = nn.Sequential(nn.Linear(6, 3), nn.Dropout(0.5)).eval()
    calls = []
    monkeypatch.setattr(type(model), "train", lambda self, mode=True: calls.append(mode))
    predict(model, np.ones((4, 6), np.float32))
    assert calls == [] and not model.training
