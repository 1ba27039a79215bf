"""The ``nnfast`` command line end to end, on a tiny synthetic MNIST written by the tests."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import signal_after_checkpoint, write_tiny_mnist

import nnfast
from nnfast import _cli_train, cli, io, models, nn
from nnfast.callbacks import METRIC_FIELDS
from nnfast.checkpoint import load_checkpoint
from nnfast.data import write_idx

N_TRAIN, N_TEST = 320, 100


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_mnist(tmp_path_factory.mktemp("mnist"), N_TRAIN, N_TEST)


@pytest.fixture(autouse=True)
def _restore_globals():
    threads, backend = nnfast.get_num_threads(), nnfast.get_gemm_backend()
    yield
    nnfast.set_num_threads(threads)
    nnfast.set_gemm_backend(backend)


def _train_args(data_dir, tmp_path, *extra):
    return ["train", "--data-dir", str(data_dir), "--checkpoint-dir", str(tmp_path / "ck"),
            "--save", str(tmp_path / "model.npz"), "--seed", "1", "--quiet", *extra]  # fmt: skip


def _weights(path):
    return io.load(path).state_dict()


def _edit_checkpoint_state(path, edit):
    """Rewrite the checkpoint at path with edit(state) applied to its saved state."""
    with np.load(path) as z:
        arrays = dict(z)
    record = json.loads(str(arrays["__checkpoint__"]))
    edit(record["state"])
    arrays["__checkpoint__"] = np.array(json.dumps(record))
    io.write_npz(path, arrays)


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_train_save_evaluate_predict(data_dir, tmp_path, capsys):
    metrics = tmp_path / "m.jsonl"
    rc = cli.main(_train_args(data_dir, tmp_path, "--epochs", "2", "--metrics-out", str(metrics),
                              "--val-split", "0"))  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    acc = float(out.split("test accuracy: ")[1].split("%")[0])
    assert acc > 60, out
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[0]) == set(METRIC_FIELDS)
    assert rows[-1]["val_accuracy"] == pytest.approx(acc / 100, abs=1e-4)
    model = tmp_path / "model.npz"
    meta = io.read_metadata(model)
    assert meta["dataset"] == "mnist" and meta["input_shape"] == [1, 28, 28]
    assert meta["mean"] == nnfast.data.MNIST.mean

    assert cli.main(["evaluate", str(model), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"accuracy {acc:.2f}%" in out
    assert "per-class accuracy" in out and "confusion matrix" in out
    # a checkpoint is a model file too
    assert cli.main(["evaluate", str(tmp_path / "ck" / "checkpoint.npz"),
                     "--data-dir", str(data_dir)]) == 0  # fmt: skip
    assert f"accuracy {acc:.2f}%" in capsys.readouterr().out

    # predict: the same images as .npy (uint8, floats in [0, 1]) and IDX give the same answers
    test = nnfast.data.MNIST(data_dir, train=False, dtype="uint8")
    np.save(tmp_path / "x.npy", test.data[:5])
    np.save(tmp_path / "xf.npy", test.data[:5].astype(np.float32) / 255)
    write_idx(tmp_path / "x.idx", test.data[:5])
    np.save(tmp_path / "one.npy", test.data[0])
    files = [str(tmp_path / f) for f in ("x.npy", "xf.npy", "x.idx", "one.npy")]
    assert cli.main(["predict", str(model), *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 16
    preds = [line.split(": ")[1].split(" ")[0] for line in lines]
    assert preds[:5] == preds[5:10] == preds[10:15] and preds[15] == preds[0]
    probs = [float(t.split(":")[1]) for t in lines[0].split("  ")[1].split()]
    assert len(probs) == 10 and sum(probs) == pytest.approx(1, abs=0.01)
    truth = [str(v) for v in test.targets[:5]]
    assert sum(p == t for p, t in zip(preds[:5], truth)) >= 3


def test_predict_png(data_dir, tmp_path, capsys):
    pil = pytest.importorskip("PIL.Image")
    assert cli.main(_train_args(data_dir, tmp_path, "--epochs", "1")) == 0
    test = nnfast.data.MNIST(data_dir, train=False, dtype="uint8")
    pil.fromarray(test.data[0]).save(tmp_path / "a.png")
    pil.fromarray(255 - test.data[0]).save(tmp_path / "inv.png")
    np.save(tmp_path / "a.npy", test.data[0])
    capsys.readouterr()
    model = str(tmp_path / "model.npz")
    assert cli.main(["predict", model, str(tmp_path / "a.png"), str(tmp_path / "a.npy")]) == 0
    assert cli.main(["predict", "--invert", model, str(tmp_path / "inv.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len({line.split(": ", 1)[1] for line in lines}) == 1  # same class and probabilities
    pil.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "big.png")
    assert cli.main(["predict", model, str(tmp_path / "big.png")]) == 1
    assert "expected 28x28" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """A model file trained one epoch on the tiny data set, and its test images (uint8)."""
    d = tmp_path_factory.mktemp("trained")
    assert cli.main(_train_args(data_dir, d, "--epochs", "1")) == 0
    return str(d / "model.npz"), nnfast.data.MNIST(data_dir, train=False, dtype="uint8").data


def _predicted(capsys, model, *files, invert=False):
    """predict's printed class and probabilities, per image, for files (exit 0 checked)."""
    capsys.readouterr()
    assert cli.main(["predict", *(["--invert"] if invert else []), model, *map(str, files)]) == 0
    return [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()]


def test_predict_reads_transparency_over_black_and_refuses_16_bit_and_float_images(
    trained, tmp_path, capsys
):
    """convert('L') clipped a 16-bit image to 0 and 255 (7 at 99.8% for 97.5%) and a float
    TIFF in [0, 1] to 0 and 1 (the all-black image's answer), and dropped a digit drawn in
    the alpha channel."""
    pil = pytest.importorskip("PIL.Image")
    model, images = trained
    pil.fromarray(images[0]).save(tmp_path / "grey.png")
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 255, images[0]  # white, shaped by its opacity
    pil.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    want = _predicted(capsys, model, tmp_path / "grey.png")
    assert _predicted(capsys, model, tmp_path / "alpha.png") == want
    pil.fromarray(images[0].astype(np.uint16) * 257).save(tmp_path / "g16.png")
    pil.fromarray(images[0].astype(np.float32) / 255).save(tmp_path / "f.tiff")
    for name in ("g16.png", "f.tiff"):
        assert cli.main(["predict", model, str(tmp_path / name)]) == 1
        assert "(16-bit or floating-point); give an 8-bit" in capsys.readouterr().err


def test_predict_inverts_each_image_on_its_own_and_checks_pixel_ranges(trained, tmp_path, capsys):
    """--invert took the file's maximum, so an image's answer depended on the others; pixels
    outside 0..255 or [0, 1] gave 100%-confident answers."""
    model, images = trained
    x = images[:2].astype(np.float32) / 255
    dim = 0.6 * (1 - x[1])  # a dark-on-light image whose lightest pixel is 0.6
    np.save(tmp_path / "alone.npy", dim)
    np.save(tmp_path / "stack.npy", np.stack([1 - x[0], dim]))
    alone = _predicted(capsys, model, tmp_path / "alone.npy", invert=True)
    assert _predicted(capsys, model, tmp_path / "stack.npy", invert=True)[1] == alone[0]
    for name, bad in (("neg.npy", -x), ("u16.npy", images[:2].astype(np.uint16) * 257)):
        np.save(tmp_path / name, bad)
        assert cli.main(["predict", model, str(tmp_path / name)]) == 1
        assert "are outside" in capsys.readouterr().err


def test_predict_takes_a_softmax_models_outputs_as_probabilities(trained, tmp_path, capsys):
    """A model ending in Softmax had a second softmax applied (22.7% for 97.5%)."""
    model, images = trained
    np.save(tmp_path / "a.npy", images[:3])
    want = _predicted(capsys, model, tmp_path / "a.npy")
    plain = io.load(model)
    meta = io.read_metadata(model)
    for last in (nn.Softmax(), nn.LogSoftmax()):
        io.save(nn.Sequential(*list(plain), last), tmp_path / "s.npz", metadata=meta)
        got = _predicted(capsys, str(tmp_path / "s.npz"), tmp_path / "a.npy")
        assert [g.split()[:2] for g in got] == [w.split()[:2] for w in want]  # class and %


def test_a_model_saved_from_python_without_metadata_is_fed_its_first_linears_width(
    trained, data_dir, tmp_path, capsys
):
    """The README's Python MLP, Linear(784, ...) first and saved with no metadata, was fed
    (1, 28, 28) images by evaluate and predict, and refused."""
    model, images = trained
    plain = io.load(model)
    assert isinstance(plain[0], nn.Flatten) and isinstance(plain[1], nn.Linear)
    io.save(nn.Sequential(*list(plain)[1:]), tmp_path / "py.npz")  # what Python code saves
    np.save(tmp_path / "a.npy", images[:3])
    want = _predicted(capsys, model, tmp_path / "a.npy")
    assert _predicted(capsys, str(tmp_path / "py.npz"), tmp_path / "a.npy") == want
    assert cli.main(["evaluate", str(tmp_path / "py.npz"), "--data-dir", str(data_dir)]) == 0


@pytest.mark.parametrize("model", ["lenet5", "cnn"])
def test_train_conv_models(data_dir, tmp_path, capsys, model):
    args = _train_args(data_dir, tmp_path, "--model", model, "--epochs", "1", "--batch-size", "64")
    assert cli.main(args) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert cli.main(["evaluate", str(tmp_path / "model.npz"), "--data-dir", str(data_dir)]) == 0


def test_options_csv_step_schedule_blas(data_dir, tmp_path, capsys):
    metrics = tmp_path / "m.csv"
    args = _train_args(data_dir, tmp_path, "--epochs", "2", "--hidden", "32", "--optimizer",
                       "momentum", "--lr-schedule", "step", "--backend", "blas", "--threads",
                       "1", "--metrics-out", str(metrics), "--dropout", "0")  # fmt: skip
    assert cli.main(args) == 0
    lines = metrics.read_text().splitlines()
    assert lines[0].split(",") == list(METRIC_FIELDS)
    lrs = [float(line.split(",")[5]) for line in lines[1:]]
    assert lrs == pytest.approx([0.05, 0.005])  # momentum's default rate, x0.1 after epochs/2
    assert nnfast.get_gemm_backend() == "blas" and nnfast.get_num_threads() == 1
    record = load_checkpoint(tmp_path / "ck" / "checkpoint.npz")["state"]["config"]
    assert record["hidden"] == [32] and record["optimizer"] == "momentum"


def test_plot(data_dir, tmp_path, capsys):
    plot = tmp_path / "curves.png"
    args = _train_args(data_dir, tmp_path, "--epochs", "1", "--hidden", "16", "--plot", str(plot))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert cli.main(args) == 1
        assert "pip install 'nnfast[plot]'" in capsys.readouterr().err
        return
    assert cli.main(args) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("augment", [[], ["--augment", "affine"]], ids=["plain", "augmented"])
def test_resume_mid_epoch_is_bit_identical(data_dir, tmp_path, capsys, augment):
    # default mlp recipe: dropout (a random stream), AdamW, cosine schedule
    common = ["--epochs", "2", "--batch-size", "32", *augment]
    straight = tmp_path / "straight"
    assert cli.main(_train_args(data_dir, straight, *common)) == 0

    parts = tmp_path / "parts"
    args = cli.build_parser().parse_args(_train_args(data_dir, parts, *common))
    with pytest.raises(_cli_train.TrainingInterrupted, match="epoch 1, batch 4 of 9"):
        _cli_train.run(args, on_batch=lambda epoch, batch: (epoch, batch) == (1, 4))
    state = load_checkpoint(parts / "ck" / "checkpoint.npz")["state"]["fit"]
    assert (state["epoch"], state["batch"]) == (0, 4)
    # interrupted again, at the end of epoch 1
    args = cli.build_parser().parse_args(_train_args(data_dir, parts, "--resume"))
    with pytest.raises(_cli_train.TrainingInterrupted, match="after epoch 1 of 2"):
        _cli_train.run(args, on_batch=lambda epoch, batch: batch == 9)
    # a new run over the unfinished one's checkpoint is refused, which stays as it was
    before = (parts / "ck" / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert cli.main(_train_args(data_dir, parts, *common)) == 1
    err = capsys.readouterr().err
    assert "holds an unfinished run (mlp on mnist, epoch 1 of 2): continue it with --resume" in err
    assert (parts / "ck" / "checkpoint.npz").read_bytes() == before
    assert cli.main(_train_args(data_dir, parts, "--resume")) == 0
    _assert_same_weights(_weights(straight / "model.npz"), _weights(parts / "model.npz"))
    assert cli.main(_train_args(data_dir, parts, *common)) == 0  # over a finished run's
    a = load_checkpoint(straight / "ck" / "checkpoint.npz")
    b = load_checkpoint(parts / "ck" / "checkpoint.npz")
    ha, hb = a["state"]["fit"]["history"], b["state"]["fit"]["history"]
    assert len(ha["loss"]) == 2
    for k in ha.keys() - {"time", "samples_per_s"}:
        assert ha[k] == hb[k], k


def test_augment_changes_training_and_is_recorded(data_dir, tmp_path, capsys):
    common = ["--epochs", "1", "--hidden", "16"]
    for name in ("none", "shift", "flip"):
        assert cli.main(_train_args(data_dir, tmp_path / name, *common, "--augment", name)) == 0
        state = load_checkpoint(tmp_path / name / "ck" / "checkpoint.npz")["state"]
        assert state["config"]["augment"] == name
    a = _weights(tmp_path / "none/model.npz")
    for name in ("shift", "flip"):
        b = _weights(tmp_path / name / "model.npz")
        assert any(not np.array_equal(a[k], b[k]) for k in a), name
    capsys.readouterr()
    rc = cli.main(_train_args(data_dir, tmp_path / "shift", "--resume", "--augment", "affine"))
    assert rc == 1
    assert "--resume: the checkpoint was trained with --augment shift" in capsys.readouterr().err


def test_label_smoothing_reaches_the_loss_and_is_recorded(data_dir, tmp_path, capsys):
    common = ["--epochs", "1", "--hidden", "16"]
    for name, eps in (("plain", []), ("smoothed", ["--label-smoothing", "0.2"])):
        assert cli.main(_train_args(data_dir, tmp_path / name, *common, *eps)) == 0
    plain = load_checkpoint(tmp_path / "plain/ck/checkpoint.npz")["state"]
    smoothed = load_checkpoint(tmp_path / "smoothed/ck/checkpoint.npz")["state"]
    assert (plain["config"]["label_smoothing"], smoothed["config"]["label_smoothing"]) == (0, 0.2)
    # the smoothed targets raise the loss of the same predictions, and move the weights
    assert smoothed["fit"]["history"]["loss"][0] > plain["fit"]["history"]["loss"][0]
    a, b = _weights(tmp_path / "plain/model.npz"), _weights(tmp_path / "smoothed/model.npz")
    assert any(not np.array_equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    args = _train_args(data_dir, tmp_path / "smoothed", "--resume", "--label-smoothing", "0.1")
    assert cli.main(args) == 1
    assert "trained with --label-smoothing 0.2, not 0.1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--label-smoothing", "1"])
    assert "--label-smoothing: must be in [0, 1), got 1" in capsys.readouterr().err


def test_augment_presets_fill_with_the_background():
    from nnfast.data import RandomAffine, RandomHorizontalFlip, RandomShift

    meta = {"mean": 0.25, "std": 0.5}
    assert _cli_train.build_augmentation("none", meta) is None
    shift = _cli_train.build_augmentation("shift", meta)
    assert isinstance(shift, RandomShift) and (shift.max_px, shift.fill) == (2, -0.5)
    affine = _cli_train.build_augmentation("affine", meta)
    assert isinstance(affine, RandomAffine) and affine.fill == -0.5
    flip = _cli_train.build_augmentation("flip", meta)  # takes no fill
    assert isinstance(flip, RandomHorizontalFlip) and flip.p == 0.5


def test_the_recipe_changes_with_the_data_set_where_that_paid():
    def cfg(*argv):
        args = cli.build_parser().parse_args(["train", "--seed", "0", *argv])
        return _cli_train.resolve_config(args)

    mnist, fashion = cfg("--model", "cnn"), cfg("--model", "cnn", "--dataset", "fashion-mnist")
    assert (mnist["augment"], fashion["augment"]) == ("affine", "flip")
    assert (mnist["label_smoothing"], fashion["label_smoothing"]) == (0.0, 0.1)
    assert (mnist["channels"], fashion["channels"]) == ([32, 64], [48, 96])
    changed = ("dataset", "augment", "label_smoothing", "channels")
    assert {k: v for k, v in fashion.items() if k not in changed} == {
        k: v for k, v in mnist.items() if k not in changed
    }
    # an option given wins, and the other models keep their recipe
    assert (
        cfg("--model", "cnn", "--dataset", "fashion-mnist", "--augment", "affine")["augment"]
        == "affine"
    )
    assert cfg("--model", "lenet5", "--dataset", "fashion-mnist")["augment"] == "affine"
    assert cfg("--model", "cnn", "--label-smoothing", "0.05")["label_smoothing"] == 0.05
    assert cfg("--model", "cnn", "--dataset", "fashion-mnist", "--channels", "8,16")[
        "channels"
    ] == [8, 16]
    assert cfg("--model", "mlp", "--dataset", "fashion-mnist")["channels"] is None


def test_channels_widen_the_cnn_and_resume_keeps_them(data_dir, tmp_path, capsys):
    args = _train_args(data_dir, tmp_path, "--model", "cnn", "--channels", "3,5", "--epochs", "1")
    assert cli.main(args) == 0
    convs = [a for a in _weights(tmp_path / "model.npz").values() if a.ndim == 4]
    assert [w.shape for w in convs] == [(3, 1, 3, 3), (5, 3, 3, 3)]
    record = json.loads(str(np.load(tmp_path / "ck" / "checkpoint.npz")["__checkpoint__"]))
    assert record["state"]["config"]["channels"] == [3, 5]
    capsys.readouterr()
    assert cli.main([*args, "--resume", "--channels", "4,5"]) == 1
    assert "the checkpoint was trained with --channels [3, 5]" in capsys.readouterr().err
    # resuming without --model, the checkpoint's cnn takes --channels
    resumed = _train_args(data_dir, tmp_path, "--resume", "--channels", "3,5", "--epochs", "2")
    assert cli.main(resumed) == 0


def test_a_cnn_checkpoint_from_before_channels_resumes_with_32_and_64(data_dir, tmp_path):
    args = _train_args(data_dir, tmp_path, "--model", "cnn", "--epochs", "1")
    assert cli.main(args) == 0
    # as an older nnfast wrote it
    _edit_checkpoint_state(tmp_path / "ck" / "checkpoint.npz",
                           lambda s: s["config"].pop("channels"))  # fmt: skip
    assert cli.main([*args, "--resume", "--epochs", "2"]) == 0
    convs = [a for a in _weights(tmp_path / "model.npz").values() if a.ndim == 4]
    assert [w.shape[0] for w in convs] == [32, 64]


def test_resume_extends_a_constant_rate_run(data_dir, tmp_path, capsys):
    common = ["--lr-schedule", "none", "--hidden", "32"]
    assert cli.main(_train_args(data_dir, tmp_path / "a", *common, "--epochs", "2")) == 0
    assert cli.main(_train_args(data_dir, tmp_path / "b", *common, "--epochs", "1")) == 0
    assert cli.main(_train_args(data_dir, tmp_path / "b", "--resume", "--epochs", "2")) == 0
    _assert_same_weights(_weights(tmp_path / "a/model.npz"), _weights(tmp_path / "b/model.npz"))
    # a run-defining option that contradicts the checkpoint is refused
    capsys.readouterr()
    rc = cli.main(_train_args(data_dir, tmp_path / "b", "--resume", "--lr", "0.5"))
    assert rc == 1
    assert "--resume: the checkpoint was trained with --lr" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["train", "--epochs", "many"],
        ["train", "--model", "resnet"],
        ["train", "--hidden", "256,-1"],
        ["train", "--channels", "32"],
        ["train", "--channels", "32,0"],
        ["train", "--lr", "-1"],
        ["train", "--metrics-out", "m.txt"],
        ["train", "--dropout", "1.5"],
        ["train", "--threads", "0"],
        ["train", "--threads", str(nnfast._runtime.MAX_THREADS + 1)],
        ["train", "--val-split", "1"],
        ["train", "--augment", "mirror"],
        ["bench", "gemm", "--threads", "100000"],
        ["evaluate"],
        ["predict", "model.npz"],
        ["bench", "gemm", "--sizes", "x"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "model, option",
    [
        ("lenet5", ["--hidden", "64"]),
        ("cnn", ["--hidden", "64"]),
        ("lenet5", ["--dropout", "0.1"]),
        ("mlp", ["--channels", "8,16"]),
        ("lenet5", ["--channels", "8,16"]),
    ],
)
def test_option_the_model_does_not_take_is_a_usage_error(data_dir, tmp_path, capsys, model, option):
    with pytest.raises(SystemExit) as exc:
        cli.main(_train_args(data_dir, tmp_path, "--model", model, *option))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: nnfast train" in err
    assert f"{option[0]} does not apply to --model {model}" in err
    assert not (tmp_path / "ck").exists()


def test_an_option_the_default_model_does_not_take_is_a_usage_error(data_dir, tmp_path, capsys):
    """Without --model the mlp is trained: --channels would be ignored, so it is refused."""
    with pytest.raises(SystemExit) as exc:
        cli.main(_train_args(data_dir, tmp_path, "--channels", "8,16"))
    assert exc.value.code == 2
    assert "--channels does not apply to --model mlp" in capsys.readouterr().err
    assert not (tmp_path / "ck").exists()


def _err_of(argv, capsys):
    """Run ``nnfast argv`` in-process: it must exit 1 with one line on stderr, no traceback."""
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("nnfast: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "flag, path, what",
    [
        ("--save", "nodir/x.npz", "the directory {tmp}/nodir does not exist"),
        ("--metrics-out", "nodir/m.csv", "the directory {tmp}/nodir does not exist"),
        ("--plot", "nodir/p.png", "the directory {tmp}/nodir does not exist"),
        ("--save", "afile/x.npz", "{tmp}/afile is not a directory"),
        ("--save", "adir", "is a directory, not a file"),
        ("--checkpoint-dir", "afile/ck", "{tmp}/afile is not a directory"),
        ("--checkpoint-dir", "afile", "{tmp}/afile is not a directory"),
    ],
)
def test_unwritable_output_fails_before_training(data_dir, tmp_path, capsys, flag, path, what):
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    path = str(tmp_path / path)
    err = _err_of([*_train_args(data_dir, tmp_path, "--epochs", "1"), flag, path], capsys)
    assert err == f"nnfast: error: {flag} {path}: {what.format(tmp=tmp_path)}\n"
    assert not (tmp_path / "ck").exists() and not (tmp_path / "model.npz").exists()


def test_outputs_may_go_into_the_checkpoint_directory_it_creates(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    argv = _train_args(data_dir, tmp_path, "--epochs", "1", "--hidden", "8", "--checkpoint-dir",
                       str(run / "ck"), "--save", str(run / "model.npz"), "--metrics-out",
                       str(run / "ck" / "m.csv"))  # fmt: skip
    assert cli.main(argv) == 0
    assert (run / "model.npz").is_file() and (run / "ck" / "m.csv").is_file()


def test_output_directory_not_writable(data_dir, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access  # tests run as root too, where every directory is writable
    monkeypatch.setattr(os, "access", lambda p, mode: p != str(ro) and real_access(p, mode))
    path = str(ro / "x.npz")
    err = _err_of(_train_args(data_dir, tmp_path, "--save", path), capsys)
    assert err == f"nnfast: error: --save {path}: the directory {ro} is not writable\n"


def test_missing_output_directory_from_the_shell(data_dir, tmp_path):
    p = _run(["train", "--data-dir", str(data_dir), "--save", "nodir/x.npz"], tmp_path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert err == "nnfast: error: --save nodir/x.npz: the directory nodir does not exist\n"
    assert not (tmp_path / "checkpoints").exists()


def _model_file(tmp_path, model=None, **meta):
    meta = {"dataset": "mnist", "input_shape": [1, 28, 28], "mean": 0.13, "std": 0.31, **meta}
    path = tmp_path / "model.npz"
    io.save(model or models.mlp(hidden=(4,)), path, metadata=meta)
    return str(path)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize(
    "model, meta, what",
    [
        (lambda: models.mlp(hidden=(4,), num_classes=20), {},
         ": the model has 20 outputs but mnist has 10 classes"),
        (None, {"dataset": "cifar"},
         ": unknown dataset 'cifar' in its metadata (known: mnist, fashion-mnist)"),
        (None, {"dataset": ["mnist"]}, ": unknown dataset ['mnist'] in its metadata"),
        (None, {"input_shape": [3, 32, 32]},
         " expects inputs of shape (3, 32, 32) but the images are 28x28"),
        (None, {"input_shape": "28x28"},
         " expects inputs of shape '28x28' but the images are 28x28"),
        (models.lenet5, {"input_shape": [784]},
         ": the model does not take inputs of shape (784,) (Conv2d"),
        (None, {"std": 0}, ": its metadata has std 0; it must be a finite number > 0"),
        (None, {"std": -1.5}, ": its metadata has std -1.5; it must be a finite number > 0"),
        (None, {"mean": float("nan")}, ": its metadata has mean nan; it must be a finite number"),
        (None, {"mean": "0.1"}, ": its metadata has mean '0.1', not a number"),
    ],
)  # fmt: skip
def test_bad_model_file_is_named(data_dir, tmp_path, capsys, command, model, meta, what):
    path = _model_file(tmp_path, model and model(), **meta)
    np.save(tmp_path / "x.npy", np.zeros((2, 28, 28), np.uint8))
    argv = {"evaluate": ["evaluate", path, "--data-dir", str(data_dir)],
            "predict": ["predict", path, str(tmp_path / "x.npy")]}[command]  # fmt: skip
    assert _err_of(argv, capsys).startswith(f"nnfast: error: {path}{what}")


def test_model_metadata_fallbacks(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 28, 28), np.uint8))
    model = tmp_path / "model.npz"
    for meta in (None, {"input_shape": [784]}):  # none: mnist's; 784 pixels fit an mlp
        io.save(models.mlp(hidden=(4,)), model, metadata=meta)
        assert cli.main(["predict", str(model), str(tmp_path / "x.npy")]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2


@pytest.mark.parametrize("shape", [(0, 28, 28), (0, 784), (0,), (0, 1, 28, 28)])
@pytest.mark.parametrize("suffix", [".npy", ".idx"])
def test_predict_file_without_images(tmp_path, capsys, shape, suffix):
    model = _model_file(tmp_path)
    path = str(tmp_path / f"x{suffix}")
    empty = np.zeros(shape, np.uint8)
    np.save(path, empty) if suffix == ".npy" else write_idx(path, empty)
    assert _err_of(["predict", model, path], capsys) == f"nnfast: error: {path} holds no images\n"


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_runtime_errors_exit_1_with_one_line(data_dir, tmp_path, capsys):
    assert "no model file" in _err_of(["evaluate", str(tmp_path / "missing.npz")], capsys)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "not a readable nnfast .npz" in _err_of(
        ["predict", str(tmp_path / "junk.npz"), "x"], capsys
    )
    assert cli.main(_train_args(data_dir, tmp_path, "--epochs", "1", "--hidden", "8")) == 0
    model = str(tmp_path / "model.npz")
    assert "no such file" in _err_of(["predict", model, str(tmp_path / "nope.npy")], capsys)
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    assert "expected 28x28" in _err_of(["predict", model, str(tmp_path / "bad.npy")], capsys)
    (tmp_path / "bad.idx").write_bytes(b"\x00\x00\x08")
    assert str(tmp_path / "bad.idx") in _err_of(
        ["predict", model, str(tmp_path / "bad.idx")], capsys
    )
    assert "no checkpoint" in _err_of(_train_args(data_dir, tmp_path / "new", "--resume"), capsys)
    diverging = _train_args(
        data_dir, tmp_path, "--epochs", "1", "--lr", "1e30", "--optimizer", "sgd"
    )
    assert "diverged" in _err_of(diverging, capsys)
    # --debug shows the traceback instead
    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", "evaluate", str(tmp_path / "missing.npz")])
    with pytest.raises(FileNotFoundError):
        cli.main(["evaluate", str(tmp_path / "missing.npz"), "--debug"])


def test_info_and_bench(capsys):
    assert cli.main(["info"]) == 0
    assert "GEMM backend of the layers: native" in capsys.readouterr().out
    assert cli.main(["bench", "gemm", "--sizes", "48,64", "--rounds", "2", "--naive-max",
                     "48", "--threads", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[3:]]
    assert [(r[0], r[1]) for r in rows] == [
        ("48", "naive"), ("48", "blocked"), ("48", "packed"), ("48", "blas"),
        ("64", "blocked"), ("64", "packed"), ("64", "blas"),
    ]  # fmt: skip
    assert all(float(r[2]) > 0 for r in rows) and rows[3][3] == "1.00x"


def _run(args, cwd, **kw):
    env = {**os.environ, "NNFAST_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "nnfast", *args]
    pipe = subprocess.PIPE
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=pipe, stderr=pipe, text=True, **kw)


def test_python_m_usage_error_exits_2(tmp_path):
    p = _run(["train", "--optimizer", "lbfgs"], tmp_path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "invalid choice" in err


def test_sigint_writes_a_loadable_checkpoint(data_dir, tmp_path):
    # slow enough: the cnn at batch size 4, many epochs; interrupt once the first checkpoint exists
    ckpt = tmp_path / "ck" / "checkpoint.npz"
    p = _run(["train", "--data-dir", str(data_dir), "--model", "cnn", "--epochs", "50",
              "--batch-size", "4", "--seed", "3", "--checkpoint-dir", "ck"], tmp_path)  # fmt: skip
    out, err = signal_after_checkpoint(p, ckpt, signal.SIGINT)
    assert p.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("nnfast: interrupted") and "--resume" in last
    assert "Traceback" not in err
    assert re.search(r"epoch +1/50 +loss", out)
    ck = load_checkpoint(ckpt)
    state = ck["state"]["fit"]
    assert state["epoch"] >= 1 and ck["state"]["config"]["model"] == "cnn"
    assert len(state["history"]["loss"]) == state["epoch"]
    assert io.load(ckpt).state_dict().keys() == ck["model"].state_dict().keys()
    assert not [f for f in os.listdir(tmp_path / "ck") if f.endswith(".tmp")]


def test_validation_split_reports_the_test_set_once(data_dir, tmp_path, capsys):
    loud = [a for a in _train_args(data_dir, tmp_path, "--epochs", "2", "--hidden", "16")
            if a != "--quiet"]  # fmt: skip
    assert cli.main(loud) == 0
    out = capsys.readouterr().out
    epochs = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(epochs) == 2 and all("val acc" in e and "test" not in e for e in epochs)
    assert "0.1 of the training set held out" in out and out.count("test accuracy") == 1
    assert cli.main([*loud[:-4], "--epochs", "1", "--val-split", "0"]) == 0
    assert "test acc" in capsys.readouterr().out.splitlines()[1]


def test_failed_download_leaves_no_new_directories(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(nnfast.data.MNIST, "mirrors", ())
    missing = tmp_path / "missing" / "deeper"
    argv = ["train", "--data-dir", str(missing), "--checkpoint-dir", str(tmp_path / "ck"),
            "--save", str(tmp_path / "m.npz")]  # fmt: skip
    assert cli.main(argv) == 1
    assert "could not download" in capsys.readouterr().err  # with where to put the files
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize(
    "edit, what",
    [
        (lambda s: s.pop("config"), "holds no nnfast train configuration"),
        (lambda s: s["config"].pop("val_split"), "its configuration has no 'val_split'"),
        (lambda s: s["config"].update(batch_size=0), "has batch_size 0, which is not valid"),
        (lambda s: s["config"].update(model="resnet"), "has model 'resnet', which is not valid"),
        (lambda s: s["config"].update(epochs="2"), "has epochs '2', which is not valid"),
        (lambda s: s["config"].update(label_smoothing=1.0),
         "has label_smoothing 1.0, which is not valid"),
        (lambda s: s["config"].update(channels=[4]), "has channels [4], which is not valid"),
        (lambda s: s.pop("fit"), "holds no progress of nnfast.train.fit"),
        (lambda s: s["fit"]["history"].update(lr=[]), "one entry per epoch"),
    ],
)  # fmt: skip
def test_unresumable_checkpoint_fails_with_one_line(data_dir, tmp_path, capsys, edit, what):
    args = _train_args(data_dir, tmp_path, "--epochs", "1", "--hidden", "8")
    assert cli.main(args) == 0
    path = tmp_path / "ck" / "checkpoint.npz"
    _edit_checkpoint_state(path, edit)
    err = _err_of([*args, "--resume"], capsys)
    assert err.startswith(f"nnfast: error: {path}: cannot resume: ") and what in err, err


def test_model_file_is_not_resumable(data_dir, tmp_path, capsys):
    path = tmp_path / "ck" / "checkpoint.npz"
    path.parent.mkdir()
    io.save(models.mlp(hidden=(4,)), path)
    err = _err_of(_train_args(data_dir, tmp_path, "--resume"), capsys)
    assert (
        err
        == f"nnfast: error: load_checkpoint: {path} is a model file, not a training checkpoint\n"
    )


def test_sigterm_writes_a_checkpoint_that_resumes(data_dir, tmp_path):
    ckpt = tmp_path / "ck" / "checkpoint.npz"
    argv = ["train", "--data-dir", str(data_dir), "--model", "cnn", "--epochs", "30",
            "--batch-size", "4", "--seed", "3", "--checkpoint-dir", "ck", "--quiet"]  # fmt: skip
    p = _run(argv, tmp_path)
    out, err = signal_after_checkpoint(p, ckpt, signal.SIGTERM)
    assert p.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("nnfast: interrupted")
    state = load_checkpoint(ckpt)["state"]["fit"]
    assert state["epoch"] >= 1
    # resume it for one more epoch (of what is left in it: --epochs fixes the end)
    done = state["epoch"] + (1 if state["batch"] else 0)
    p = _run([*argv, "--resume", "--epochs", str(done + 1)], tmp_path)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert f", {done + 1} epochs)" in out


def test_predict_names_a_directory_and_an_empty_npy(trained, tmp_path, capsys):
    model, _ = trained
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "empty.npy").write_bytes(b"")
    for name, what in (("dir.png", "is a directory; give image files"),
                       ("empty.npy", "empty.npy: not a readable .npy array")):  # fmt: skip
        assert cli.main(["predict", model, str(tmp_path / name)]) == 1
        assert what in capsys.readouterr().err


def test_bench_gemm_of_a_tiny_size_ends(capsys):
    """--sizes 1 ran 1e8 calls a timing (half an hour each, silently)."""
    assert cli.main(["bench", "gemm", "--sizes", "1", "--rounds", "1"]) == 0
    assert "blas" in capsys.readouterr().out


def test_sigterm_outside_training_is_one_line_and_143(monkeypatch, capsys):
    """Before training (while the data load) SIGTERM's default ended the process without a
    word (status -15), where Ctrl-C printed 'nnfast: interrupted'."""

    def terminated(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises first
        return 0

    monkeypatch.setattr(cli, "_cmd_info", terminated)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["info"]) == 143
    assert capsys.readouterr().err.strip() == "nnfast: terminated"
    assert signal.getsignal(signal.SIGTERM) == before  # given back
