"""Headline GEMM ratios, measured in interleaved rounds (packed, blas, packed, blas, ...).

Each round times both variants back to back (bench/timing.py: after the other's threads have
gone idle, outputs checked) and the median of the per-round ratios is reported.

    python bench/compare_gemm.py [--rounds 15] [--threads 2] [--only mlp,im2col]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from gemm_cases import BACKWARD, IM2COL, MLP, SQUARES, flops, label, operands
from timing import Contender, checker, interleave, median, ratio

import nnfast

# (group, cases, dtype, variant, baseline, target ratio of baseline time to variant time)
TARGETS = [
    ("squares", SQUARES[2:], np.float32, "packed", "blas", 0.90),
    ("squares64", SQUARES, np.float64, "packed", "blas", 0.85),
    ("mlp", MLP, np.float32, "packed", "blas", 1.0),
    ("backward", BACKWARD, np.float32, "packed", "blas", 1.0),
    ("im2col", IM2COL, np.float32, "packed", "blas", 1.0),
    ("blocked", [SQUARES[1]], np.float32, "blocked", "naive", 5.0),
    # the fused bias + ReLU epilogue: faster than a separate pass, within 5% of the plain GEMM
    ("epilogue", [MLP[0], IM2COL[2]], np.float32, "fused", "unfused", 1.0),
    ("epilogue", [MLP[0]], np.float32, "fused", "plain", 0.95),
]


def contender(case, dtype, variant):
    """A call of one variant on a case, with its output checked against numpy: a GEMM variant
    name, or for the epilogue "fused" (bias + ReLU in the GEMM), "unfused" (GEMM, then
    F.bias_act) or "plain" (GEMM)."""
    import nnfast.functional as F

    a, b, out = operands(case, dtype)
    _, k, n, ta, tb = case
    bias = np.linspace(-1, 1, n).astype(dtype)
    want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)
    if variant in ("fused", "unfused"):
        want = np.maximum(want + bias, 0)
    if variant == "fused":

        def run():
            nnfast.gemm(a, b, out, trans_a=ta, trans_b=tb, bias=bias, activation="relu")

    elif variant == "unfused":

        def run():
            nnfast.gemm(a, b, out, trans_a=ta, trans_b=tb)
            F.bias_act(out, bias, "relu", out=out)

    else:
        v = "packed" if variant == "plain" else variant

        def run():
            nnfast.gemm(a, b, out, trans_a=ta, trans_b=tb, variant=v)

    tol = 1e-3 * np.sqrt(k) if dtype == np.float32 else 1e-9 * np.sqrt(k)
    check = checker(out, want, rtol=tol, atol=tol, what=f"{variant} {label(case)}")
    return Contender(variant, run, out=out, check=check)


def compare(case, dtype, variant, baseline, rounds, min_seconds):
    times = interleave(
        [contender(case, dtype, variant), contender(case, dtype, baseline)], rounds, min_seconds
    )
    gflop = flops(case) / 1e9
    gv, gb = gflop / median(times, variant), gflop / median(times, baseline)
    return ratio(times, baseline, variant), gv, gb


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=0.05, help="per timing in a round")
    p.add_argument(
        "--only", default="", help="comma-separated groups: " + ",".join(t[0] for t in TARGETS)
    )
    args = p.parse_args(argv)
    nnfast.set_num_threads(args.threads)
    only = set(filter(None, args.only.split(",")))
    info = nnfast.info()
    print(
        f"nnfast {info['version']}, ISA {info['isa']}, {args.threads} threads, BLAS {info['blas']}"
    )
    print(
        f"{'group':10} {'shape':22} {'dtype':8} {'variant':>8} {'GF/s':>7} {'base':>6} {'GF/s':>7} "
        f"{'ratio':>6} {'target':>6}"
    )
    missed = 0
    for group, cases, dtype, variant, baseline, target in TARGETS:
        if only and group not in only:
            continue
        for case in cases:
            ratio, gv, gb = compare(case, dtype, variant, baseline, args.rounds, args.min_seconds)
            ok = ratio >= target
            missed += not ok
            print(
                f"{group:10} {label(case):22} {np.dtype(dtype).name:8} {variant:>8} {gv:7.1f} "
                f"{baseline:>6} {gb:7.1f} {ratio:6.2f} {target:5.2f}{'' if ok else '  MISSED'}",
                flush=True,
            )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
