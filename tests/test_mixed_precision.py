"""Mixed-precision training: set_matmul_precision("bf16") puts the GEMMs of Linear and Conv2d
(forward and backward) on bf16 operands with fp32 accumulation, while parameters, gradients,
the optimizer, BatchNorm and the losses stay float32; ``nnfast train --precision bf16``
records the precision in its checkpoint and --resume keeps it."""

import numpy as np
import pytest
from helpers import round_bf16 as bf16
from helpers import write_tiny_mnist

import nnfast
from nnfast import _cli_train, cli, io, nn, optim
from nnfast._native import core
from nnfast.checkpoint import load_checkpoint
from nnfast.train import fit

pytestmark = pytest.mark.skipif(core is None, reason="bf16 needs the native extension")


@pytest.fixture(autouse=True)
def _restore_globals():
    threads, backend = nnfast.get_num_threads(), nnfast.get_gemm_backend()
    yield
    nnfast.set_matmul_precision("fp32")
    nnfast.set_num_threads(threads)
    nnfast.set_gemm_backend(backend)


def test_linear_forward_and_backward_run_in_bf16(rng):
    nnfast.manual_seed(0)
    layer = nn.Linear(40, 24)
    x = rng.standard_normal((16, 40)).astype(np.float32)
    dy = rng.standard_normal((16, 24)).astype(np.float32)
    w, b = layer.weight.data, layer.bias.data
    with nnfast.matmul_precision("bf16"):
        y = layer(x)
        layer.zero_grad()
        dx = layer.backward(dy)
    # the exact products of the rounded operands, to fp32 accumulation (K <= 40)
    x64, w64, dy64 = (bf16(v).astype(np.float64) for v in (x, w, dy))
    np.testing.assert_allclose(y, x64 @ w64.T + b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(dx, dy64 @ w64, rtol=0, atol=1e-5)
    np.testing.assert_allclose(layer.weight.grad, dy64.T @ x64, rtol=0, atol=1e-5)
    # and not the fp32 ones
    assert np.abs(y - (x.astype(np.float64) @ w.T + b)).max() > 1e-4
    for p in layer.parameters():
        assert p.data.dtype == p.grad.dtype == np.float32


def test_a_backward_takes_its_forwards_precision(rng):
    """Linear's backward followed the setting at backward time: outside the forward's bf16
    block it went fp32 (Conv2d's kept the forward's)."""
    nnfast.manual_seed(0)
    layer = nn.Linear(40, 24)
    x = rng.standard_normal((16, 40)).astype(np.float32)
    dy = rng.standard_normal((16, 24)).astype(np.float32)
    with nnfast.matmul_precision("bf16"):
        layer(x)
    layer.zero_grad()
    dx = layer.backward(dy)  # fp32 around it now
    x64, w64, dy64 = (bf16(v).astype(np.float64) for v in (x, layer.weight.data, dy))
    np.testing.assert_allclose(dx, dy64 @ w64, rtol=0, atol=1e-5)
    np.testing.assert_allclose(layer.weight.grad, dy64.T @ x64, rtol=0, atol=1e-5)
    layer(x)  # and the other way round
    with nnfast.matmul_precision("bf16"):
        dx = layer.backward(dy)
    np.testing.assert_allclose(dx, dy.astype(np.float64) @ layer.weight.data, rtol=1e-5, atol=1e-6)


def test_conv2d_forward_and_backward_run_in_bf16(bf16_path, rng):
    """A convolution on the GEMM path (C_in*KH*KW above DIRECT_MAX_K: smaller ones
    run nnfast's direct kernel, which has no GEMM and stays fp32); a 3x3 kernel of stride 1
    would run Winograd, whose products are of transformed values (test_conv_winograd.py)."""
    from nnfast.nn.conv import DIRECT_MAX_K

    nnfast.manual_seed(0)
    conv = nn.Conv2d(6, 8, (3, 2), padding=1)
    assert 6 * 3 * 2 > DIRECT_MAX_K
    x = rng.standard_normal((4, 6, 9, 9)).astype(np.float32)
    dy = rng.standard_normal((4, 8, 9, 10)).astype(np.float32)

    def run():
        conv.zero_grad()
        y = conv(x)
        return y, conv.backward(dy), conv.weight.grad.copy()

    fp32 = run()
    with nnfast.matmul_precision("bf16"):
        mixed = run()
    # the same layer on rounded inputs and weights, in fp32, is the bf16 result to accumulation
    w = conv.weight.data.copy()
    conv.weight.data[...] = bf16(w)
    x, dy = bf16(x), bf16(dy)
    rounded = run()
    conv.weight.data[...] = w
    for got, want, ref in zip(mixed, rounded, fp32):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-4 * np.abs(want).max())
        assert np.abs(got - ref).max() > 1e-4 * np.abs(ref).max()  # bf16 did happen


def test_conv2d_bf16_products_are_the_bf16_gemms(bf16_path, rng):
    """The convolutions' bf16 products run on nnfast.gemm's kernel, AMX's tile kernel where it
    runs: on the GEMM path each image's output is, to the bit, gemm(im2col(x), W^T) + bias,
    and one image's weight gradient gemm(dY, im2col(x)) (AMX's sums and vdpbf16ps's differ in
    about 30% of such outputs)."""
    from nnfast import _convops
    from nnfast.nn.conv import DIRECT_MAX_K

    conv = nn.Conv2d(6, 8, (3, 2), padding=1, seed=0)  # not 3x3: no Winograd
    assert 6 * 3 * 2 > DIRECT_MAX_K
    x = rng.standard_normal((3, 6, 9, 9)).astype(np.float32)
    dy = rng.standard_normal((1, 8, 9, 10)).astype(np.float32)
    with nnfast.matmul_precision("bf16"):
        y = conv(x)
        conv.zero_grad()
        conv(x[:1])
        conv.backward(dy)
    w = conv.weight.data.reshape(8, -1)
    for xi, yi in zip(x, y):
        cols = _convops.im2col(xi[None], (3, 2), 1, 1, 1)  # (pixels, 6 * 3 * 2)
        want = nnfast.gemm(cols, w, trans_b=True, precision="bf16") + conv.bias.data
        assert yi.reshape(8, -1).tobytes() == want.T.tobytes()
    cols = _convops.im2col(x[:1], (3, 2), 1, 1, 1)
    want = nnfast.gemm(dy.reshape(8, -1), cols, precision="bf16")
    assert conv.weight.grad.reshape(8, -1).tobytes() == want.tobytes()


def _blobs(rng, n=480, classes=4, dim=20):
    centers = rng.standard_normal((classes, dim)) * 0.4
    y = rng.integers(0, classes, n)
    return (centers[y] + rng.standard_normal((n, dim))).astype(np.float32), y


def _images(rng, n=192):
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    for i, k in enumerate(y):
        x[i, 0, 2 * k : 2 * k + 3, 1:6] += 0.7
    return x, y


def _fit(model_fn, data, precision, epochs):
    nnfast.manual_seed(3)
    model = model_fn()
    opt = optim.Adam(model.parameters(), lr=0.01)
    with nnfast.matmul_precision(precision):
        hist = fit(model, nn.CrossEntropyLoss(), opt, data, epochs=epochs, batch_size=32, seed=3)
    return model, hist


MODELS = {
    "mlp": (
        lambda: nn.Sequential(
            nn.Linear(20, 64, activation="relu"), nn.BatchNorm1d(64), nn.Linear(64, 4)
        ),
        _blobs,
        6,
    ),
    "cnn": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1, activation="relu"),
            nn.Conv2d(6, 6, 3, padding=1, activation="relu"),  # K = 54: the GEMM path
            nn.Flatten(),
            nn.Linear(384, 3),
        ),
        _images,
        3,
    ),
}


@pytest.mark.parametrize("name", MODELS)
def test_bf16_training_tracks_fp32(rng, name):
    """Same seed, same data: each epoch's mean loss in bf16 is within 0.01 + 3% of fp32's,
    and the final accuracies within 3 points (measured: within 0.003 and 0.5 points). bf16
    keeps 8 significant bits: products are off by up to 2**-8 relative, which training
    absorbs as noise."""
    model_fn, data_fn, epochs = MODELS[name]
    data = data_fn(rng)
    m32, h32 = _fit(model_fn, data, "fp32", epochs)
    m16, h16 = _fit(model_fn, data, "bf16", epochs)
    l32, l16 = np.array(h32["loss"]), np.array(h16["loss"])
    assert (np.abs(l16 - l32) <= 0.01 + 0.03 * l32).all(), (l32, l16)
    assert l16[-1] < 0.6 * l16[0]  # it learns
    assert abs(h16["accuracy"][-1] - h32["accuracy"][-1]) <= 0.03
    assert not np.array_equal(l16, l32)  # the GEMMs did change precision
    # master weights stay fp32, not rounded to bf16
    for p in m16.parameters():
        assert p.data.dtype == p.grad.dtype == np.float32
    w = m16.parameters()[0].data
    assert not np.array_equal(w, bf16(w))


# --- the CLI --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A tiny MNIST: class k is a bright bar at one of ten places, plus noise."""
    return write_tiny_mnist(tmp_path_factory.mktemp("mnist"), 256, 64)


def test_fit_records_the_precision_and_resume_keeps_it(rng, tmp_path):
    """Checkpoints written through fit kept no precision: a bf16 run resumed outside its
    matmul_precision block went on in fp32, no longer bit for bit the uninterrupted run."""
    from nnfast.callbacks import Callback, Checkpoint

    data = _blobs(rng)

    class StopAt(Callback):
        def on_batch_end(self, state, batch, logs):
            if (state.epoch, batch) == (2, 4):
                state.stop("batch")

    def run(stop=False, resume=None):
        nnfast.manual_seed(3)
        model = nn.Sequential(nn.Linear(20, 32, activation="relu"), nn.Linear(32, 4))
        opt = optim.Adam(model.parameters(), lr=0.01)
        callbacks = [Checkpoint(tmp_path / "ck.npz", signals=False)] + ([StopAt()] if stop else [])
        fit(model, nn.CrossEntropyLoss(), opt, data, epochs=3, batch_size=32, seed=3,
            callbacks=callbacks, resume=resume)  # fmt: skip
        return np.concatenate([p.data.ravel() for p in model.parameters()])

    with nnfast.matmul_precision("bf16"):
        straight = run()
        run(stop=True)
    assert load_checkpoint(tmp_path / "ck.npz")["state"]["fit"]["precision"] == "bf16"
    resumed = run(resume=tmp_path / "ck.npz")  # outside the block
    np.testing.assert_array_equal(resumed, straight)
    assert nnfast.get_matmul_precision() == "fp32"  # the setting around fit comes back


def _train_args(data_dir, out, *extra):
    return ["train", "--data-dir", str(data_dir), "--checkpoint-dir", str(out / "ck"),
            "--save", str(out / "model.npz"), "--seed", "1", "--quiet", "--hidden", "16",
            "--batch-size", "32", *extra]  # fmt: skip


def test_cli_precision_is_recorded_and_resume_keeps_it(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = cli.build_parser().parse_args(
        _train_args(data_dir, run, "--epochs", "2", "--precision", "bf16")
    )
    seen = []

    def spy(epoch, batch):  # the precision in force while the CLI trains
        seen.append(nnfast.get_matmul_precision())
        return (epoch, batch) == (1, 3)

    with pytest.raises(_cli_train.TrainingInterrupted):
        _cli_train.run(args, on_batch=spy)
    assert set(seen) == {"bf16"}
    assert nnfast.get_matmul_precision() == "fp32"  # restored after the run
    ckpt = run / "ck" / "checkpoint.npz"
    assert load_checkpoint(ckpt)["state"]["config"]["precision"] == "bf16"
    # resumed without --precision: the checkpoint's
    seen.clear()
    args = cli.build_parser().parse_args(_train_args(data_dir, run, "--resume"))
    assert (
        _cli_train.run(args, on_batch=lambda e, b: seen.append(nnfast.get_matmul_precision())) == 0
    )
    assert set(seen) == {"bf16"}
    assert load_checkpoint(ckpt)["state"]["config"]["precision"] == "bf16"
    for value in io.load(run / "model.npz").state_dict().values():  # the saved model is fp32
        assert value.dtype == np.float32
    capsys.readouterr()
    assert cli.main(_train_args(data_dir, run, "--resume", "--precision", "fp32")) == 1
    assert "trained with --precision bf16" in capsys.readouterr().err
    # nor on SciPy's BLAS, where its Linear layers would train in fp32 (it was accepted)
    assert cli.main(_train_args(data_dir, run, "--resume", "--backend", "blas")) == 1
    assert (
        "trained with --precision bf16, which runs on nnfast's kernels" in capsys.readouterr().err
    )
    assert nnfast.get_gemm_backend() == "native"
    # fp32 is the default and is recorded too
    assert cli.main(_train_args(data_dir, tmp_path / "fp32", "--epochs", "1")) == 0
    cfg = load_checkpoint(tmp_path / "fp32" / "ck" / "checkpoint.npz")["state"]["config"]
    assert cfg["precision"] == "fp32"


def test_cli_bad_precision(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(_train_args(data_dir, tmp_path, "--precision", "fp16"))
    capsys.readouterr()
    rc = cli.main(_train_args(data_dir, tmp_path, "--precision", "bf16", "--backend", "blas"))
    assert rc == 1
    assert "--precision bf16" in capsys.readouterr().err
