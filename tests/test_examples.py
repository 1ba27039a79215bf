"""The examples run and do what they claim, on tiny synthetic data (no MNIST needed)."""

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import nnfast
from nnfast import nn, optim
from nnfast.data import write_idx
from nnfast.train import predict

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SMALL = {"z_dim": 8, "g_hidden": (16, 32), "d_hidden": (32, 16)}


def load_example(name):
    """examples/<name>.py as a module; skips the test outside the source checkout."""
    path = EXAMPLES / f"{name}.py"
    if not path.exists():
        pytest.skip("needs the source checkout")
    spec = importlib.util.spec_from_file_location(f"{name}_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


@pytest.fixture(scope="module")
def gan():
    return load_example("gan_mnist")


def test_xor_example_perceptron_fails_and_mlp_solves(capsys):
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    xor = np.array([0, 1, 1, 0])
    perceptron, model = load_example("xor").main()
    assert not perceptron.converged_ and perceptron.score(x, xor) < 1.0
    assert ((predict(model, x)[:, 0] > 0) == xor).all()
    out = capsys.readouterr().out
    assert "converged=False" in out and "accuracy 1.00" in out


def bars(n, seed=0):
    """n flat 28x28 images in [-1, 1]: dark, with one bright row at a random height."""
    x = np.full((n, 28, 28), -1.0, np.float32)
    x[np.arange(n), np.random.default_rng(seed).integers(4, 24, n)] = 1.0
    return x.reshape(n, 784)


def small_gan64(gan, seed=1):
    """A small G, D in float64 (for finite differences), their Adams and the loss."""
    nnfast.manual_seed(seed)
    g, d = (m.astype(np.float64) for m in gan.build(**SMALL))
    g_opt, d_opt = (optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (g, d))
    return g, d, g_opt, d_opt, nn.BCEWithLogitsLoss()


def record_grads(opt, model):
    """Make ``opt.step`` first append a copy of ``model``'s gradients to the returned list."""
    seen, step = [], opt.step

    def step_and_record():
        seen.append([p.grad.copy() for p in model.parameters()])
        step()

    opt.step = step_and_record
    return seen


def test_gan_trains_both_networks_reproducibly(gan):
    x = bars(256)
    runs = [
        gan.train(x, 2, batch_size=32, seed=s, log=lambda line: None, **SMALL) for s in (0, 0, 1)
    ]
    nnfast.manual_seed(0)
    initial = gan.build(**SMALL)  # what train(seed=0) starts from
    (g, d, history), (g2, d2, history2), (g3, _, _) = runs
    for m, m0, m2 in zip((g, d), initial, (g2, d2)):
        for name, w in m.state_dict().items():
            assert not np.array_equal(w, m0.state_dict()[name]), f"{name} did not train"
            np.testing.assert_array_equal(w, m2.state_dict()[name])  # same seed, same bits
    assert [dict(r, time=0) for r in history] == [dict(r, time=0) for r in history2]
    assert not np.array_equal(g.state_dict()["2.weight"], g3.state_dict()["2.weight"])
    for r in history:
        assert np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"])
        assert 0 < r["d_x"] < 1 and 0 < r["d_g_z"] < 1


def test_gan_generator_gradient_comes_through_discriminator(gan):
    """G's gradient in its update is d/dG of the non-saturating loss -log D(G(z)), with D as
    updated by the same step: central differences on a few weights of every G parameter."""
    g, d, g_opt, d_opt, loss = small_gan64(gan)
    rng = np.random.default_rng(0)
    real, z = bars(16, seed=1), rng.standard_normal((16, 8))
    g_at_step = copy.deepcopy(g)  # the D half of the step does not change G
    grads = record_grads(g_opt, g)
    gan.train_step(g, d, g_opt, d_opt, loss, real, z)  # after it, d is the D the G half saw

    ones, eps = np.ones((16, 1)), 1e-6
    for (name, p), analytic in zip(g_at_step.named_parameters(), grads[0]):
        flat = p.data.reshape(-1)
        for i in rng.choice(flat.size, 4, replace=False):
            old = flat[i]
            flat[i] = old + eps
            up = loss(d(g_at_step(z)), ones)
            flat[i] = old - eps
            down = loss(d(g_at_step(z)), ones)
            flat[i] = old
            numeric = (up - down) / (2 * eps)
            assert analytic.reshape(-1)[i] == pytest.approx(numeric, rel=1e-5, abs=1e-9), name


def test_gan_generator_step_does_not_leak_into_discriminator_update(gan):
    """The pass through D in a G step adds to D's gradients; D's next update must not see it:
    its gradient is that of the D loss of its own batch alone."""
    g, d, g_opt, d_opt, loss = small_gan64(gan)
    rng = np.random.default_rng(0)
    grads = record_grads(d_opt, d)
    gan.train_step(g, d, g_opt, d_opt, loss, bars(16, seed=1), rng.standard_normal((16, 8)))
    g_now, d_now = copy.deepcopy(g), copy.deepcopy(d)
    real, z = bars(16, seed=2), rng.standard_normal((16, 8))
    gan.train_step(g, d, g_opt, d_opt, loss, real, z)

    for p in d_now.parameters():
        p.grad[...] = 0
    fake = g_now(z)
    for x, label in ((real, 1.0), (fake, 0.0)):
        loss(d_now(x), np.full((16, 1), label))
        d_now.backward(loss.backward())
    for (name, p), got in zip(d_now.named_parameters(), grads[1]):
        np.testing.assert_allclose(got, p.grad, rtol=1e-12, atol=1e-15, err_msg=name)


def test_gan_main_writes_samples_and_generator(gan, tmp_path, capsys):
    images = ((bars(128) + 1) * 127.5).astype(np.uint8).reshape(128, 28, 28)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(128, np.uint8))
    out, saved = tmp_path / "samples.png", tmp_path / "g.npz"
    g, history = gan.main(["--data-dir", str(tmp_path), "--epochs", "1", "--out", str(out),
                           "--save", str(saved)])  # fmt: skip
    written = out if out.exists() else out.with_suffix(".npy")  # .npy without matplotlib
    assert written.exists() and len(history) == 1
    assert "epoch 1/1  D loss" in capsys.readouterr().out
    z = np.random.default_rng(0).standard_normal((3, 64), np.float32)
    np.testing.assert_array_equal(nnfast.io.load(saved)(z), g(z))


def test_every_submodule_is_reachable_after_import_nnfast():
    """The docs write nnfast.export.to_onnx(...) after `import nnfast`: AttributeError, as
    export, models and distributed were imported by nothing (a fresh interpreter, since this
    one has imported them all)."""
    import subprocess
    import sys
    import tempfile

    names = repr(nnfast._ON_FIRST_USE)
    code = f"import nnfast; print([getattr(nnfast, n).__name__ for n in {names}])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tempfile.gettempdir())  # not the source tree  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == repr([f"nnfast.{n}" for n in nnfast._ON_FIRST_USE])
