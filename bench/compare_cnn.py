"""CNN training steps (forward, backward, Adam) at batch 128: nnfast vs the plain-numpy
baseline (bench/numpy_cnn.py) and, when it is installed, PyTorch (CPU), in interleaved rounds
(median of per-round ratios), plus the split of nnfast's step time per layer (and how much of
the conv layers is im2col/col2im). PyTorch is never a dependency: without it, its column is
skipped. Targets: a cnn_small step <= 1.0x PyTorch's time; im2col + col2im < 25% of the conv
layers' time.

    python bench/compare_cnn.py [--models lenet5,cnn_small] [--rounds 9] [--threads 2]
"""

import argparse
import os
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from numpy_cnn import NumpyCNN

import nnfast
from nnfast import _convops, models, nn
from nnfast.optim import Adam


def make_nnfast(name, seed=0):
    nnfast.manual_seed(seed)
    model = getattr(models, name)()
    loss = nn.CrossEntropyLoss()
    opt = Adam(model.parameters(), lr=1e-3)

    def step(x, y):
        opt.zero_grad()
        loss(model(x), y)
        model.backward(loss.backward(), input_grad=False)
        opt.step()

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
        loss(model(xt), yt).backward()
        opt.step()

    return step


def timed(fn, reps):
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def layer_split(model, x, y, reps=5):
    """Seconds per step spent in each layer (forward + backward) and in im2col/col2im."""
    loss = nn.CrossEntropyLoss()
    per_layer = defaultdict(float)
    conv_ops = {"im2col": 0.0, "col2im": 0.0}
    originals = {k: getattr(_convops, k) for k in conv_ops}

    def wrap(name):
        def f(*a, **k):
            t = time.perf_counter()
            r = originals[name](*a, **k)
            conv_ops[name] += time.perf_counter() - t
            return r

        return f

    for k in conv_ops:
        setattr(_convops, k, wrap(k))
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
        for k, f in originals.items():
            setattr(_convops, k, f)
    return {k: v / reps for k, v in per_layer.items()}, {k: v / reps for k, v in conv_ops.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="lenet5,cnn_small")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--reps", type=int, default=3, help="steps per timing")
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
        step(x, y)
        base.step(x, y)
        if tstep:
            tstep(x, y)
        ratios, tn, tb, tt, torch_ratios = [], [], [], [], []
        for _ in range(args.rounds):
            a = timed(lambda s=step: s(x, y), args.reps)
            b = timed(lambda s=base.step: s(x, y), args.reps)
            tn.append(a)
            tb.append(b)
            ratios.append(b / a)
            if tstep:
                c = timed(lambda s=tstep: s(x, y), args.reps)
                tt.append(c)
                torch_ratios.append(a / c)
        print(
            f"{name}: nnfast {np.median(tn) * 1e3:.1f} ms/step ({128 / np.median(tn):.0f} "
            f"samples/s), numpy {np.median(tb) * 1e3:.1f} ms/step; "
            f"nnfast speed-up {np.median(ratios):.2f}x (median of {args.rounds} rounds)"
        )
        if tstep:
            print(f"    PyTorch {np.median(tt) * 1e3:.1f} ms/step; nnfast time / PyTorch time "
                  f"{np.median(torch_ratios):.2f} (target <= 1.0 for cnn_small)")  # fmt: skip
        split, conv_ops = layer_split(model, x, y)
        total = sum(split.values())
        conv_total = sum(v for (i, n), v in split.items() if n == "Conv2d")
        for (i, n), v in sorted(split.items()):
            print(f"    {i}: {n:18} {v * 1e3:7.2f} ms  {100 * v / total:5.1f}%")
        share = sum(conv_ops.values()) / conv_total if conv_total else 0.0
        print(
            f"    im2col {conv_ops['im2col'] * 1e3:.2f} ms + col2im "
            f"{conv_ops['col2im'] * 1e3:.2f} ms = {100 * share:.1f}% of the conv layers' time "
            f"(target < 25%)",
            flush=True,
        )


if __name__ == "__main__":
    main()
