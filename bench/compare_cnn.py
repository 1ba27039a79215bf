"""CNN training steps (forward, backward, Adam) at batch 128: nnfast vs the plain-numpy
baseline (bench/numpy_cnn.py) and, when it is installed, PyTorch (CPU), in interleaved rounds
(median of per-round ratios, each contender timed after the others' threads have gone idle:
bench/timing.py), plus the split of the step time per layer, forward and backward, for nnfast
and PyTorch side by side (interleaved rounds like the steps, medians; and how much of the
convolutions' time goes to column work, from the C kernels' own counters: core.conv_profile).
PyTorch is never a dependency: without it, its columns are skipped. The same model with every
convolution as plain GEMMs on unfolded columns (no direct, implicit or Winograd kernels:
``gemm_only``) runs as a fourth contender, and in the per-layer table. Targets (issue 14): a
cnn_small step <= 0.5x PyTorch's time, a lenet5 step <= 0.35x; the column work <= 10% of the
conv layers' time.

    python bench/compare_cnn.py [--models lenet5,cnn_small] [--rounds 9] [--threads 2]
"""

import argparse
import contextlib
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(__file__))
from numpy_cnn import NumpyCNN
from timing import Contender, finite, interleave, median, ratio, settle

import nnfast
from nnfast import models, nn
from nnfast._native import core
from nnfast.nn import conv as conv_module
from nnfast.optim import Adam


@contextlib.contextmanager
def gemm_only(on=True):
    """Every Conv2d as plain GEMMs on unfolded columns while active: the direct kernel,
    Winograd, the implicit kernels and the direct kernel's input gradient off."""
    before = (conv_module.DIRECT_MAX_K, core.conv_winograd(), core.conv_direct_dx(),
              core.conv_implicit())  # fmt: skip
    if on:
        conv_module.DIRECT_MAX_K = 0
        core.conv_winograd("off")
        core.conv_direct_dx(0)
        core.conv_implicit(False)
    try:
        yield
    finally:
        conv_module.DIRECT_MAX_K = before[0]
        core.conv_winograd(before[1])
        core.conv_direct_dx(before[2])
        core.conv_implicit(before[3])


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
    """The same architecture in PyTorch, as a Sequential of nnfast's layers (a convolution or
    linear layer with its ReLU is one entry), and its step closure; None without torch."""
    try:
        import torch
        from torch import nn as tnn
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def relu(layer):
        return tnn.Sequential(layer, tnn.ReLU())

    if name == "lenet5":
        layers = [relu(tnn.Conv2d(1, 6, 5)), tnn.MaxPool2d(2), relu(tnn.Conv2d(6, 16, 5)),
                  tnn.MaxPool2d(2), tnn.Flatten(), relu(tnn.Linear(256, 120)),
                  relu(tnn.Linear(120, 84)), tnn.Linear(84, 10)]  # fmt: skip
    else:
        layers = [relu(tnn.Conv2d(1, 32, 3, padding=1)), tnn.MaxPool2d(2),
                  relu(tnn.Conv2d(32, 64, 3, padding=1)), tnn.MaxPool2d(2), tnn.Flatten(),
                  relu(tnn.Linear(3136, 128)), tnn.Linear(128, 10)]  # fmt: skip
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

    return model, step


def fused_pairs(model):
    """Indices i of the layers that run fused with layer i + 1 in the model's forward (a
    Conv2d and its MaxPool2d): the per-layer tables show such a pair as one row."""
    return {
        i
        for i in range(len(model) - 1)
        if getattr(model[i], "fuses_with", lambda m: 0)(model[i + 1])
    }


def merge_pairs(layers, starts):
    """layers with each pair (i, i + 1), i in starts, as one (name, forward, backward) at i;
    the others keep their index (a placeholder None stands at i + 1)."""
    out = list(layers)
    for i in starts:
        (n1, f1, b1), (n2, f2, b2) = layers[i], layers[i + 1]
        out[i] = (f"{n1}+{n2}", lambda h, f1=f1, f2=f2: f2(f1(h)),
                  lambda g, b1=b1, b2=b2: b1(b2(g)))  # fmt: skip
        out[i + 1] = None
    return out


def nnfast_layers(model, y):
    """(layers, loss gradient) for :func:`layer_split`: each layer as (name, forward, backward),
    the first without its input gradient (as in the step); a fused pair as one entry."""
    layers = []
    for i, m in enumerate(model):
        backward = m.backward
        if i == 0 and m.can_skip_input_grad:
            backward = lambda g, m=m: m.backward(g, input_grad=False)  # noqa: E731
        layers.append((type(m).__name__, m, backward))
    starts = fused_pairs(model)
    layers = merge_pairs(layers, starts)
    for i in starts:  # the pair's forward and backward are one fused call, as in the model's
        a, b = model[i], model[i + 1]
        skip = {"input_grad": False} if i == 0 and a.can_skip_input_grad else {}
        layers[i] = (layers[i][0], lambda h, a=a, b=b: a.forward_fused(h, b),
                     lambda g, a=a, b=b, kw=skip: a.backward_fused(g, b, **kw))  # fmt: skip
    loss = nn.CrossEntropyLoss()

    def loss_grad(h):
        loss(h, y)
        return loss.backward()

    return layers, loss_grad


def torch_layers(model, y, starts=()):
    """:func:`nnfast_layers` for a PyTorch Sequential: each layer's forward starts a graph of
    its own (from its input, detached), so its backward is that layer's alone; the pairs
    (i, i + 1) for i in starts as one entry, like nnfast's fused ones."""
    import torch

    layers = []
    for i, m in enumerate(model):
        state = {}

        def forward(h, m=m, state=state, first=i == 0):
            state["in"] = h.detach().requires_grad_(not first)
            state["out"] = m(state["in"])
            return state["out"]

        def backward(g, state=state):
            state["out"].backward(g)
            return state["in"].grad

        name = type(m[0] if isinstance(m, torch.nn.Sequential) else m).__name__
        layers.append((name, forward, backward))
    layers = merge_pairs(layers, starts)
    loss, yt = torch.nn.CrossEntropyLoss(), torch.from_numpy(y)

    def loss_grad(h):
        h = h.detach().requires_grad_()
        loss(h, yt).backward()
        return h.grad

    return layers, loss_grad


#: steps per layer_split (after one untimed)
SPLIT_STEPS = 5


def layer_split(layers, loss_grad, x, reps=SPLIT_STEPS):
    """Seconds per step in each layer's forward and in its backward, {(i, name): (fwd, bwd)},
    over ``reps`` steps (without the optimizer) after one untimed."""
    fwd, bwd = np.zeros(len(layers)), np.zeros(len(layers))
    live = [i for i, layer in enumerate(layers) if layer is not None]  # merged pairs: one
    for rep in range(reps + 1):
        h = x
        for i in live:
            t = time.perf_counter()
            h = layers[i][1](h)
            fwd[i] += (time.perf_counter() - t) * (rep > 0)
        g = loss_grad(h)
        for i in reversed(live):
            t = time.perf_counter()
            g = layers[i][2](g)
            bwd[i] += (time.perf_counter() - t) * (rep > 0)
    return {(i, layers[i][0]): (fwd[i] / reps, bwd[i] / reps) for i in live}


def interleaved_splits(sides, rounds):
    """:func:`layer_split` of each side in turn, ``rounds`` times, each after the other sides'
    threads have gone idle (bench/timing.py); sides: {label: (layers, loss_grad, x, context)}.
    Returns {label: {(i, name): (median fwd, median bwd)}} and the rounds themselves
    ({label: [{(i, name): (fwd, bwd)}, ...]}, for medians of per-round ratios)."""
    runs = {label: [] for label in sides}
    for _ in range(rounds):
        for label, (layers, loss_grad, x, context) in sides.items():
            settle()
            with context():
                runs[label].append(layer_split(layers, loss_grad, x))
    medians = {
        label: {key: tuple(np.median([r[key] for r in rs], axis=0)) for key in rs[0]}
        for label, rs in runs.items()
    }
    return medians, runs


@contextlib.contextmanager
def column_work(totals, on=False):
    """The C kernel's column-work counters on while active, added into totals [columns, all];
    with ``on`` every Conv2d as plain GEMMs too (gemm_only)."""
    core.conv_profile(True)
    try:
        with gemm_only(on):
            yield
    finally:
        columns, total = core.conv_profile(False)
        totals[0] += columns
        totals[1] += total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="lenet5,cnn_small")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--min-seconds", type=float, default=0.1, help="of steps per timing")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    nnfast.set_num_threads(args.threads)
    # numpy's BLAS on as many threads (set_num_threads leaves it alone): it took every core
    with threadpool_limits(limits=args.threads, user_api="blas"):
        return _compare(args)


def _compare(args):
    """The comparison main() sets up; 1 if a target was missed, else 0."""
    missed = 0
    rng = np.random.default_rng(0)
    x = rng.random((128, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    for name in args.models.split(","):
        model, step = make_nnfast(name)
        base = NumpyCNN(name)
        made = make_torch(name, args.threads)
        tmodel, tstep = made if made else (None, None)
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
            f"    all convolutions as plain GEMMs: {median(times, 'nnfast-gemm') * 1e3:.1f} "
            f"ms/step; nnfast time / that time {ratio(times, 'nnfast', 'nnfast-gemm'):.2f}"
        )
        if tstep:
            target = {"cnn_small": 0.5, "lenet5": 0.35}.get(name)
            r = ratio(times, "nnfast", "torch")
            flag = "  MISSED" if target and r > target else ""
            missed += bool(flag)
            wanted = f" (target <= {target}){flag}" if target else ""
            print(f"    PyTorch {median(times, 'torch') * 1e3:.1f} ms/step; nnfast time / "
                  f"PyTorch time {r:.2f}{wanted}")  # fmt: skip
        columns = {"nnfast": [0.0, 0.0], "GEMM only": [0.0, 0.0]}
        layers, loss_grad = nnfast_layers(model, y)
        sides = {
            label: (layers, loss_grad, x, lambda c=c, on=on: column_work(c, on))
            for (label, c), on in zip(columns.items(), (False, True))
        }
        if tmodel is not None:
            import torch

            sides["PyTorch"] = (*torch_layers(tmodel, y, fused_pairs(model)), torch.from_numpy(x),
                                contextlib.nullcontext)  # fmt: skip
        splits, split_runs = interleaved_splits(sides, args.rounds)
        rounds = f"median of {args.rounds} rounds of {SPLIT_STEPS} steps"
        print(f"    per layer, ms per step ({rounds}):")
        head = "".join(f"{label + ' fwd':>16}{'bwd':>7}" for label in splits)
        ratio_head = f"{'nnfast / PyTorch':>18}" if "PyTorch" in splits else ""
        print(f"    {'layer':24}{head}{ratio_head}")
        for key in sorted(splits["nnfast"]):
            i, n = key
            cells = "".join(f"{v[key][0] * 1e3:16.2f}{v[key][1] * 1e3:7.2f}"
                            for v in splits.values())  # fmt: skip
            if "PyTorch" in splits:  # the median of the rounds' ratios
                pairs = zip(split_runs["nnfast"], split_runs["PyTorch"])
                per_round = [sum(a[key]) / sum(b[key]) for a, b in pairs]
                cells += f"{np.median(per_round):18.2f}"
            print(f"    {f'{i}: {n}':24}{cells}")
        sums = "".join(f"{sum(map(sum, v.values())) * 1e3:23.2f}" for v in splits.values())
        print(f"    {'all layers (fwd + bwd)':24}{sums}")
        for label, (col, total) in columns.items():
            # thread-seconds over thread-seconds, every batched convolution (GEMM path,
            # Winograd, direct kernels; conv.h's nnf_conv_profile says what counts)
            share = col / total if total else 0.0
            steps = args.rounds * (SPLIT_STEPS + 1)  # the untimed step counts here too
            target = ""  # nnfast's own paths only; the GEMM-only row is for comparison
            if label == "nnfast":
                target = " (target <= 10%)" + ("  MISSED" if share > 0.10 else "")
                missed += share > 0.10
            print(
                f"    {label}: column work {col / steps * 1e3:.2f} of "
                f"{total / steps * 1e3:.2f} thread-ms per step in the convolutions = "
                f"{100 * share:.1f}%{target}",
                flush=True,
            )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
