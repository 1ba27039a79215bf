"""pytest-benchmark tables for the element-wise kernels: fused forward + backward against the
numpy multi-pass equivalent and numpy.copyto (one thread's copy: compare_eltwise.py takes the
roof on the kernels' threads), same sizes, same run.
Ratios from interleaved rounds: bench/compare_eltwise.py."""

import numpy as np
import pytest
from eltwise_cases import NUMPY, fused, numpy_pair, numpy_xent, operands, xent_operands

import nnfast.functional as F

SIZES = {"1M": 2**20, "16M": 2**24}


@pytest.fixture(scope="module", params=list(SIZES))
def data(request):
    return request.param, operands(SIZES[request.param])


@pytest.mark.parametrize("impl", ["nnfast", "numpy"])
@pytest.mark.parametrize("name", list(NUMPY))
def test_activation(benchmark, data, name, impl):
    size, (x, dy, y, dx) = data
    benchmark.group = f"{name} fwd+bwd {size}"
    if impl == "numpy":
        benchmark(numpy_pair(name, x, dy))
        return
    y.fill(np.nan)  # checked below: a kernel that skips part of its output cannot look fast
    dx.fill(np.nan)
    benchmark(fused(name, x, dy, y, dx)[2])
    f, b = NUMPY[name]
    want_y = f(x)
    np.testing.assert_allclose(y, want_y, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(dx, b(dy, x, want_y), rtol=1e-3, atol=1e-4)


def test_copy(benchmark, data):
    size, (x, _, y, _) = data
    benchmark.group = f"copyto {size}"
    benchmark(np.copyto, y, x)


@pytest.mark.parametrize("impl", ["nnfast", "numpy"])
@pytest.mark.parametrize("shape", [(128, 10), (4096, 1000)])
def test_softmax_cross_entropy(benchmark, shape, impl):
    logits, labels = xent_operands(*shape)
    benchmark.group = f"softmax_cross_entropy {shape}"
    g = np.full_like(logits, np.nan)
    got = []

    def ours():  # loss and gradient in one call, as CrossEntropyLoss makes it
        got[:] = [F.softmax_cross_entropy_with_grad(logits, labels, out=g)[0]]

    benchmark(ours if impl == "nnfast" else (lambda: numpy_xent(logits, labels)))
    if impl == "nnfast":
        loss, want = numpy_xent(logits, labels)
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-7)
        assert got[0] == pytest.approx(loss, rel=1e-5)
