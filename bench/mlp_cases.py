"""The MLP training step measured by the benchmarks: nnfast, plain numpy, and PyTorch."""

import contextlib

import numpy as np
from numpy_mlp import NumpyMLP

import nnfast
from nnfast import nn, optim

SIZES = (784, 256, 128, 10)
BATCH = 128
STEPS_PER_EPOCH = 60000 // BATCH + 1  # an MNIST-sized epoch


def data(seed=0, batch=BATCH):
    rng = np.random.default_rng(seed)
    return rng.random((batch, SIZES[0]), dtype=np.float32), rng.integers(0, SIZES[-1], batch)


def nnfast_step(seed=0):
    """A closure running one nnfast training step (forward, backward, Adam)."""
    nnfast.manual_seed(seed)
    layers = [nn.Linear(a, b, activation="relu") for a, b in zip(SIZES[:-2], SIZES[1:-1])]
    model = nn.Sequential(*layers, nn.Linear(SIZES[-2], SIZES[-1]))
    loss = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x, y = data(seed)

    def step():
        opt.zero_grad()
        value = loss(model(x), y)
        model.backward(loss.backward(), input_grad=False)
        opt.step()
        return value

    return step


def numpy_step(seed=0):
    mlp = NumpyMLP(SIZES, BATCH, seed=seed)
    x, y = data(seed)
    return lambda: mlp.step(x, y)


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

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            value = loss(model(xt), yt)
        value.backward()
        opt.step()
        return value.item()

    return step
