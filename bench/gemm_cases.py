"""The GEMM shapes nnfast is tuned for, shared by the pytest-benchmark suite and the
interleaved ratio script. (M, K, N, trans_a, trans_b)."""

import numpy as np

SQUARES = [(s, s, s, False, False) for s in (256, 512, 1024, 2048)]
MLP = [(128, 784, 256, False, False), (128, 256, 128, False, False), (128, 128, 10, False, False)]
BACKWARD = [(784, 128, 256, True, False), (128, 256, 784, False, True)]
IM2COL = [
    (73728, 25, 6, False, False),
    (8192, 150, 16, False, False),
    (25088, 288, 64, False, False),
]


def label(case):
    m, k, n, ta, tb = case
    return f"{m}x{k}x{n}" + ("^T_a" if ta else "") + ("^T_b" if tb else "")


def operands(case, dtype, seed=0):
    """a, b and out for a case, with a and b stored transposed where the case says so."""
    m, k, n, ta, tb = case
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b, np.empty((m, n), dtype)


def flops(case):
    m, k, n, _, _ = case
    return 2.0 * m * n * k
