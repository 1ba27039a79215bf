"""CNN training steps (forward, backward, Adam) at batch 128: nnfast vs the plain-numpy
baseline (bench/numpy_cnn.py) and, when it is installed, PyTorch (CPU), in interleaved rounds
(median of per-round ratios, each contender timed after the others' threads have gone idle:
bench/timing.py), plus the split of nnfast's step time per layer (and how much of
the GEMM convolutions' time goes to unfolding and folding columns, from the C kernel's own
counters). PyTorch is never a dependency: without it, its column is skipped. The same model
with every convolution on the GEMM path (``DIRECT_MAX_K = 0``) runs as a fourth contender, and
its per-layer split beside the default one. Targets (issue 14): a cnn_small step <= 0.5x
PyTorch's time, a lenet5 step <= 0.35x; the column work <= 10% of the conv layers' time.

    python bench/compare_cnn.py [--models lenet5,cnn_small] [--rounds 9] [--threads 2]
"""

import argparse
import contextlib
import os
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from numpy_cnn import NumpyCNN
from timing import Contender, finite, interleave, median, ratio

import nnfast
from nnfast import models, nn
from nnfast._native import core
from nnfast.nn import conv as conv_module
from nnfast.optim import Adam


@contextlib.contextmanager
def gemm_only(on=True):
    """Every Conv2d on the GEMM path while active (the direct kernel off)."""
    before = conv_module.DIRECT_MAX_K
    conv_module.DIRECT_MAX_K = 0 if on else before
    try:
        yield
    finally:
        conv_module.DIRECT_MAX_K = before


def make_nnfast(name, seed=0):
    nnfast.manual_seed(seed)
    model = getattr(models, name)()
    loss = nn.CrossEntropyLoss()
    opt = Adam(model.parameters(), lr=1e-3)

    def step(x, y):
        opt.zero_grad()
        value = loss(model(x), y)
        model.backward(loss.backward(), input_grad=False)
        opt.step()
        return value

    return model, step


def make_torch(name, threads):
    """A PyTorch step closure for the same architecture, or None without torch."""
    try:
        import torch
        from torch import nn as tnn
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if name == "lenet5":
        layers = [tnn.Conv2d(1, 6, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5),
                  tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(256, 120), tnn.ReLU(),
                  tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10)]  # fmt: skip
    else:
        layers = [tnn.Conv2d(1, 32, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
                  tnn.Conv2d(32, 64, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                  tnn.Linear(3136, 128), tnn.ReLU(), tnn.Linear(128, 10)]  # fmt: skip
    model = tnn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = tnn.CrossEntropyLoss()

    def step(x, y):
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        opt.zero_grad()
        value = loss(model(xt), yt)
        value.backward()
        opt.step()
        return value.item()

    return step


def layer_split(model, x, y, reps=5):
    """Seconds per step spent in each layer (forward + backward), and the thread-seconds of
    the GEMM convolutions: (in column work, in all)."""
    loss = nn.CrossEntropyLoss()
    per_layer = defaultdict(float)
    core.conv_profile(True)
    try:
        for _ in range(reps):
            h = x
            for i, m in enumerate(model):
                t = time.perf_counter()
                h = m(h)
                per_layer[(i, type(m).__name__)] += time.perf_counter() - t
            loss(h, y)
            g = loss.backward()
            for i in reversed(range(len(model))):
                m = model[i]
                t = time.perf_counter()
                g = (
                    m.backward(g, input_grad=False)
                    if i == 0 and m.can_skip_input_grad
                    else m.backward(g)
                )
                per_layer[(i, type(m).__name__)] += time.perf_counter() - t
    finally:
        columns, total = core.conv_profile(False)
    return {k: v / reps for k, v in per_layer.items()}, (columns / reps, total / reps)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="lenet5,cnn_small")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--min-seconds", type=float, default=0.1, help="of steps per timing")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    nnfast.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.random((128, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    for name in args.models.split(","):
        model, step = make_nnfast(name)
        base = NumpyCNN(name)
        tstep = make_torch(name, args.threads)
        _, gemm_step = make_nnfast(name)

        def step_gemm(x, y, s=gemm_step):
            with gemm_only():
                return s(x, y)

        steps = {"nnfast": step, "nnfast-gemm": step_gemm, "numpy": base.step}
        if tstep:
            steps["torch"] = tstep
        # each timed after the others' BLAS threads have gone idle (bench/timing.py): timed
        # right after the numpy baseline, PyTorch measured 56 ms per cnn_small step, not 30-40
        contenders = [
            Contender(k, lambda s=s: s(x, y), check=finite(lambda s=s: s(x, y), k))
            for k, s in steps.items()
        ]
        times = interleave(contenders, args.rounds, args.min_seconds)
        tn = median(times, "nnfast")
        print(
            f"{name}: nnfast {tn * 1e3:.1f} ms/step ({128 / tn:.0f} samples/s), numpy "
            f"{median(times, 'numpy') * 1e3:.1f} ms/step; nnfast speed-up "
            f"{ratio(times, 'numpy', 'nnfast'):.2f}x (median of {args.rounds} rounds)"
        )
        print(
            f"    all convolutions on the GEMM path: {median(times, 'nnfast-gemm') * 1e3:.1f} "
            f"ms/step; nnfast time / that time {ratio(times, 'nnfast', 'nnfast-gemm'):.2f}"
        )
        if tstep:
            target = {"cnn_small": 0.5, "lenet5": 0.35}.get(name)
            print(f"    PyTorch {median(times, 'torch') * 1e3:.1f} ms/step; nnfast time / "
                  f"PyTorch time {ratio(times, 'nnfast', 'torch'):.2f}"
                  + (f" (target <= {target})" if target else ""))  # fmt: skip
        splits = {}
        for label, off in (("default", False), ("GEMM only", True)):
            with gemm_only(off):
                splits[label] = layer_split(model, x, y)
        print(f"    {'layer (forward + backward)':24} {'default':>14} {'GEMM only':>14}")
        totals = {k: sum(v[0].values()) for k, v in splits.items()}
        for key in sorted(splits["default"][0]):
            i, n = key
            cells = [f"{v[0][key] * 1e3:7.2f} ms {100 * v[0][key] / totals[k]:3.0f}%"
                     for k, v in splits.items()]  # fmt: skip
            print(f"    {i}: {n:21} {cells[0]:>14} {cells[1]:>14}")
        for label, (_, (columns, total)) in splits.items():
            # thread-seconds over thread-seconds: the direct layers have no column work, so
            # this share of the GEMM convolutions bounds the share of all conv layers
            share = columns / total if total else 0.0
            print(
                f"    {label}: column work (unfold + fold) {columns * 1e3:.2f} of "
                f"{total * 1e3:.2f} thread-ms in the GEMM convolutions = {100 * share:.1f}% "
                f"(target <= 10%)",
                flush=True,
            )


if __name__ == "__main__":
    main()
