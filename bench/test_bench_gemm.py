"""GEMM variants side by side: one table per shape (``pytest bench/ --benchmark-only``).

GFLOP/s of each row is in its ``extra_info``; the naive reference runs only where it finishes
in reasonable time. Ratios for the targets come from ``bench/compare_gemm.py`` (interleaved).
"""

import numpy as np
import pytest
from gemm_cases import BACKWARD, IM2COL, MLP, SQUARES, flops, label, operands

import nnfast

NAIVE_MAX_FLOPS = 2 * 512**3


def cases():
    for case in SQUARES + MLP + BACKWARD + IM2COL:
        dtypes = [np.float32, np.float64] if case in SQUARES else [np.float32]
        for dtype in dtypes:
            for variant in ("naive", "blocked", "packed", "blas"):
                if variant == "naive" and flops(case) > NAIVE_MAX_FLOPS:
                    continue
                if variant == "blocked" and flops(case) > 2 * 1024**3:
                    continue
                yield pytest.param(
                    case, dtype, variant, id=f"{label(case)}-{np.dtype(dtype).name}-{variant}"
                )


@pytest.mark.parametrize("case,dtype,variant", list(cases()))
def test_gemm(benchmark, case, dtype, variant):
    a, b, out = operands(case, dtype)
    _, _, _, ta, tb = case
    benchmark.group = f"gemm {label(case)} {np.dtype(dtype).name}"
    out.fill(np.nan)  # checked below: a variant that skips part of out cannot look fast
    benchmark(nnfast.gemm, a, b, out, trans_a=ta, trans_b=tb, variant=variant)
    benchmark.extra_info["GFLOP/s"] = round(flops(case) / benchmark.stats.stats.median / 1e9, 1)
    want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)
    assert np.allclose(out, want, rtol=1e-3, atol=1e-3 * np.sqrt(case[1]))
