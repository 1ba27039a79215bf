"""The baseline for CNN training steps: LeNet-5 and cnn_small written in plain numpy.

im2col with ``sliding_window_view`` and one copy, GEMMs through numpy (OpenBLAS), col2im as
one strided add per kernel position, 2x2 max pooling by reshape, ReLU in place, softmax
cross-entropy, and Adam as in-place ufuncs: what a careful numpy user would write. Same
architectures as ``nnfast.models.lenet5`` / ``cnn_small`` (NCHW, float32).
"""

import math

import numpy as np


def im2col(x, k, pad):
    """(N, C, H, W) -> (N*Ho*Wo, C*k*k), stride 1."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))  # N,C,Ho,Wo,k,k
    n, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * k * k), ho, wo


def col2im(cols, shape, k, pad):
    n, c, h, w = shape
    ho, wo = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    r = cols.reshape(n, ho, wo, c, k, k).transpose(0, 3, 4, 5, 1, 2)  # N,C,k,k,Ho,Wo
    out = np.zeros((n, c, h + 2 * pad, w + 2 * pad), cols.dtype)
    for i in range(k):
        for j in range(k):
            out[:, :, i : i + ho, j : j + wo] += r[:, :, i, j]
    return out[:, :, pad : pad + h, pad : pad + w] if pad else out


class Conv:
    def __init__(self, cin, cout, k, pad, rng):
        bound = 1 / np.sqrt(cin * k * k)
        self.w = rng.uniform(-bound, bound, (cout, cin * k * k)).astype(np.float32)
        self.b = rng.uniform(-bound, bound, cout).astype(np.float32)
        self.k, self.pad = k, pad

    def forward(self, x):
        self.shape = x.shape
        self.cols, ho, wo = im2col(x, self.k, self.pad)
        y = self.cols @ self.w.T + self.b  # (N*Ho*Wo, Cout)
        n = x.shape[0]
        y = y.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)
        y = np.ascontiguousarray(y)
        np.maximum(y, 0, out=y)
        self.y = y
        return y

    def backward(self, dy, input_grad=True):
        dy = dy * (self.y > 0)
        n, cout = dy.shape[:2]
        d_rows = dy.transpose(0, 2, 3, 1).reshape(-1, cout)
        self.gw = d_rows.T @ self.cols
        self.gb = d_rows.sum(axis=0)
        if not input_grad:  # the first layer's: nnfast and PyTorch skip it too
            return None
        return col2im(d_rows @ self.w, self.shape, self.k, self.pad)


class Pool:
    def forward(self, x):
        n, c, h, w = x.shape
        r = x.reshape(n, c, h // 2, 2, w // 2, 2)
        y = r.max(axis=(3, 5))
        self.mask = r == y[:, :, :, None, :, None]
        return y

    def backward(self, dy):
        d = self.mask * dy[:, :, :, None, :, None]
        n, c, h2, _, w2, _ = d.shape
        return d.reshape(n, c, h2 * 2, w2 * 2)


class Dense:
    def __init__(self, fin, fout, relu, rng):
        bound = 1 / np.sqrt(fin)
        self.w = rng.uniform(-bound, bound, (fin, fout)).astype(np.float32)
        self.b = rng.uniform(-bound, bound, fout).astype(np.float32)
        self.relu = relu

    def forward(self, x):
        self.shape = x.shape
        self.x = x.reshape(len(x), -1)
        y = self.x @ self.w
        y += self.b
        if self.relu:
            np.maximum(y, 0, out=y)
        self.y = y
        return y

    def backward(self, dy):
        if self.relu:
            dy = dy * (self.y > 0)
        self.gw = self.x.T @ dy
        self.gb = dy.sum(axis=0)
        return (dy @ self.w.T).reshape(self.shape)


class NumpyCNN:
    """``lenet5`` or ``cnn_small`` with Adam (lr 1e-3)."""

    def __init__(self, name="cnn_small", seed=0, lr=1e-3):
        rng = np.random.default_rng(seed)
        if name == "lenet5":
            self.layers = [Conv(1, 6, 5, 0, rng), Pool(), Conv(6, 16, 5, 0, rng), Pool(),
                           Dense(256, 120, True, rng), Dense(120, 84, True, rng),
                           Dense(84, 10, False, rng)]  # fmt: skip
        else:
            self.layers = [Conv(1, 32, 3, 1, rng), Pool(), Conv(32, 64, 3, 1, rng), Pool(),
                           Dense(3136, 128, True, rng), Dense(128, 10, False, rng)]  # fmt: skip
        self.params = [(m, a) for m in self.layers if hasattr(m, "w") for a in ("w", "b")]
        self.m = [np.zeros_like(getattr(m, a)) for m, a in self.params]
        self.v = [np.zeros_like(getattr(m, a)) for m, a in self.params]
        self.lr, self.t = lr, 0

    def step(self, x, y):
        h = x
        for m in self.layers:
            h = m.forward(h)
        p = np.exp(h - h.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        loss = -float(np.log(p[rows, y]).mean())
        p[rows, y] -= 1
        g = p / len(y)
        for i, m in reversed(list(enumerate(self.layers))):
            g = m.backward(g, input_grad=False) if i == 0 else m.backward(g)
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        step = self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)  # a float: float32 math
        for (mod, a), m, v in zip(self.params, self.m, self.v):
            grad = getattr(mod, "g" + a)
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            getattr(mod, a)[...] -= step * m / (np.sqrt(v) + eps)
        return loss
