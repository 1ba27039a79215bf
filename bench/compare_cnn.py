"""CNN training steps (forward, backward, Adam) at batch 128: nnfast vs the plain-numpy
baseline (bench/numpy_cnn.py), in interleaved rounds (median of per-round ratios), plus the
split of nnfast's step time per layer (and how much of the conv layers is im2col/col2im).

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
        step(x, y)
        base.step(x, y)
        ratios, tn, tb = [], [], []
        for _ in range(args.rounds):
            a = timed(lambda s=step: s(x, y), args.reps)
            b = timed(lambda s=base.step: s(x, y), args.reps)
            tn.append(a)
            tb.append(b)
            ratios.append(b / a)
        print(
            f"{name}: nnfast {np.median(tn) * 1e3:.1f} ms/step ({128 / np.median(tn):.0f} "
            f"samples/s), numpy {np.median(tb) * 1e3:.1f} ms/step; "
            f"nnfast speed-up {np.median(ratios):.2f}x (median of {args.rounds} rounds)"
        )
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
