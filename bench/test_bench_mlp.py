"""One MLP training step (784-256-128-10, batch 128, float32, forward + backward + Adam) on 2
threads: nnfast against plain numpy in the same run. Samples/s are in ``extra_info``.

    pytest bench/test_bench_mlp.py --benchmark-only
"""

import numpy as np
import pytest
from mlp_cases import BATCH, nnfast_step, numpy_step, torch_step
from threadpoolctl import threadpool_limits

import nnfast

IMPLS = {"nnfast": nnfast_step, "numpy": numpy_step, "torch": torch_step}


@pytest.fixture(autouse=True)
def _two_threads():
    before = nnfast.get_num_threads()
    nnfast.set_num_threads(2)
    with threadpool_limits(limits=2, user_api="blas"):
        yield
    nnfast.set_num_threads(before)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_mlp_train_step(benchmark, impl):
    step = IMPLS[impl]()
    if step is None:
        pytest.skip(f"{impl} is not installed")
    if impl == "torch":
        import torch

        torch.set_num_threads(2)
    benchmark.group = "mlp 784-256-128-10 train step, batch 128"
    step()  # warm-up
    benchmark.pedantic(step, rounds=30, iterations=5, warmup_rounds=2)
    benchmark.extra_info["samples_per_s"] = BATCH / benchmark.stats.stats.median
    assert np.isfinite(float(step()))  # a step that silently did nothing would look fast
