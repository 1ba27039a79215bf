"""The MLP training step measured by the benchmarks: nnfast, plain numpy, and PyTorch."""

import contextlib

import numpy as np
from numpy_mlp import NumpyMLP

import nnfast
from nnfast import nn, optim

SIZES = (784, 256, 128, 10)
BATCH = 128
STEPS_PER_EPOCH = 60000 // BATCH + 1  # an MNIST-sized epoch


#: Each step closure starts its model and optimizer over, in place, every this many steps.
#: Trained on one batch, weights whose gradient stays 0 (behind dead ReLUs) have Adam moments
#: that decay into float32's subnormals from about step 700, where numpy's and PyTorch's Adam
#: took 2-3x as long (nnfast's flushes them): a run of more rounds compared a slower regime,
#: so every contender is timed over the same first steps of training.
RESTART_STEPS = 500


def data(seed=0, batch=BATCH):
    rng = np.random.default_rng(seed)
    return rng.random((batch, SIZES[0]), dtype=np.float32), rng.integers(0, SIZES[-1], batch)


def restarting(step, restart):
    """``step`` that calls ``restart()`` before every RESTART_STEPS-th step after the first."""
    count = 0

    def run():
        nonlocal count
        if count and count % RESTART_STEPS == 0:
            restart()
        count += 1
        return step()

    return run


def nnfast_step(seed=0):
    """A closure running one nnfast training step (forward, backward, Adam)."""
    nnfast.manual_seed(seed)
    layers = [nn.Linear(a, b, activation="relu") for a, b in zip(SIZES[:-2], SIZES[1:-1])]
    model = nn.Sequential(*layers, nn.Linear(SIZES[-2], SIZES[-1]))
    loss = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x, y = data(seed)
    params0, opt0 = [p.data.copy() for p in model.parameters()], opt.state_dict()

    def step():
        opt.zero_grad()
        value = loss(model(x), y)
        model.backward(loss.backward(), input_grad=False)
        opt.step()
        return value

    def restart():
        for p, p0 in zip(model.parameters(), params0):
            p.data[...] = p0
        opt.load_state_dict(opt0)

    return restarting(step, restart)


def numpy_step(seed=0):
    mlp = NumpyMLP(SIZES, BATCH, seed=seed)
    x, y = data(seed)
    params0 = [p.copy() for p in mlp.params]

    def restart():
        for p, p0, m, v in zip(mlp.params, params0, mlp.m, mlp.v):
            p[...] = p0
            m.fill(0)
            v.fill(0)
        mlp.t = 0

    return restarting(lambda: mlp.step(x, y), restart)


def torch_step(seed=0, autocast=False):
    """A closure running one PyTorch training step, or None when PyTorch is not installed.
    ``autocast``: forward and loss under ``torch.autocast("cpu", dtype=torch.bfloat16)``, the
    PyTorch counterpart of nnfast's bf16 matmul precision (weights and Adam stay fp32)."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(seed)
    mods = []
    for a, b in zip(SIZES[:-2], SIZES[1:-1]):
        mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*mods, torch.nn.Linear(SIZES[-2], SIZES[-1]))
    loss = torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    params0 = [p.detach().clone() for p in model.parameters()]

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            value = loss(model(xt), yt)
        value.backward()
        opt.step()
        return value.item()

    def restart():
        with torch.no_grad():
            for p, p0 in zip(model.parameters(), params0):
                p.copy_(p0)
        opt.state.clear()  # Adam starts its moments afresh at the next step

    return restarting(step, restart)
