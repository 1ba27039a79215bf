"""The baseline: the MLP 784-256-128-10 (ReLU, softmax cross-entropy, Adam) in plain numpy.

Written the way a careful numpy user would: OpenBLAS GEMMs with ``out=``, every activation,
gradient and temporary preallocated for the batch size, in-place element-wise passes, and
Adam as in-place ufuncs over each parameter (13 passes each). It is the yardstick that
``nnfast.nn`` + ``nnfast.optim`` must beat.
"""

import math

import numpy as np


class NumpyMLP:
    def __init__(self, sizes=(784, 256, 128, 10), batch=128, lr=1e-3, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.W, self.b = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1 / np.sqrt(fan_in)
            self.W.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
            self.b.append(rng.uniform(-bound, bound, fan_out).astype(dtype))
        self.params = self.W + self.b
        self.grads = [np.zeros_like(p) for p in self.params]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.tmp = [np.empty_like(p) for p in self.params]
        self.h = [np.empty((batch, n), dtype) for n in sizes[1:]]  # layer outputs
        self.dh = [np.empty((batch, n), dtype) for n in sizes[1:]]  # their gradients
        self.mask = [np.empty((batch, n), bool) for n in sizes[1:-1]]
        self.lr, self.t = lr, 0
        self.batch = batch

    def step(self, x, y):
        """Forward, backward and one Adam update on a batch; returns the mean loss."""
        W, b, h, dh = self.W, self.b, self.h, self.dh
        n_layers = len(W)
        inp = x
        for i in range(n_layers):
            np.dot(inp, W[i], out=h[i])
            h[i] += b[i]
            if i < n_layers - 1:
                np.maximum(h[i], 0, out=h[i])
            inp = h[i]
        # softmax cross-entropy, gradient (p - onehot) / N written into dh[-1]
        logits, p = h[-1], dh[-1]
        np.subtract(logits, logits.max(axis=1, keepdims=True), out=p)
        np.exp(p, out=p)
        p /= p.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        loss = -float(np.log(p[rows, y]).mean())
        p[rows, y] -= 1
        p /= len(y)
        gW, gb = self.grads[:n_layers], self.grads[n_layers:]
        for i in reversed(range(n_layers)):
            prev = x if i == 0 else h[i - 1]
            np.dot(prev.T, dh[i], out=gW[i])
            np.sum(dh[i], axis=0, out=gb[i])
            if i > 0:
                np.dot(dh[i], W[i].T, out=dh[i - 1])
                np.greater(h[i - 1], 0, out=self.mask[i - 1])
                dh[i - 1] *= self.mask[i - 1]
        self._adam()
        return loss

    def _adam(self, b1=0.9, b2=0.999, eps=1e-8):
        self.t += 1
        # Python floats: numpy's float64 scalars made two of the passes below float64 loops
        # with casts (its Adam took 1.64x as long)
        bc1, sqrt_bc2 = 1 - b1**self.t, math.sqrt(1 - b2**self.t)
        step, eps_hat = self.lr * sqrt_bc2 / bc1, eps * sqrt_bc2
        for p, g, m, v, t in zip(self.params, self.grads, self.m, self.v, self.tmp):
            m *= b1
            np.multiply(g, 1 - b1, out=t)
            m += t
            v *= b2
            np.multiply(g, g, out=t)
            t *= 1 - b2
            v += t
            np.sqrt(v, out=t)
            t += eps_hat
            np.divide(m, t, out=t)
            t *= step
            p -= t
