"""bf16 GEMM and mixed-precision MLP step against nnfast's fp32, in interleaved rounds
(bf16, fp32, [torch bf16], bf16, fp32, ...; bench/timing.py: each timed after the others'
threads have gone idle, outputs NaN-filled before and checked after), median per-round ratios.

    python bench/compare_bf16.py [--rounds 15] [--threads 2]

Targets (issue 15): the bf16 GEMM >= 1.8x nnfast's fp32 packed GEMM on 1024^3 and 2048^3 and
>= 1.0x PyTorch's bf16 matmul (when PyTorch is installed) there and on 128x784x256; the MLP
step in bf16 <= 0.7x the fp32 step. The peak of vdpbf16ps is twice the fp32 FMA peak.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from gemm_cases import flops, label, operands
from mlp_cases import nnfast_step
from timing import Contender, checker, finite, interleave, median, ratio

import nnfast

CASES = [(1024, 1024, 1024, False, False), (2048, 2048, 2048, False, False),
         (128, 784, 256, False, False)]  # fmt: skip
# (case, contender, baseline, least ratio of baseline time to contender time)
TARGETS = {("1024x1024x1024", "fp32"): 1.8, ("2048x2048x2048", "fp32"): 1.8}
TORCH_TARGET = 1.0
MLP_TARGET = 1 / 0.7


def round_bf16(x):
    """float32 -> the bf16 value as float32 (ties to even), for the reference."""
    mant, exp = np.frexp(x.astype(np.float64))
    return np.ldexp(np.rint(mant * 256) / 256, exp).astype(np.float32)


def gemm_contenders(case):
    a, b, out32 = operands(case, np.float32)
    out16 = np.empty_like(out32)
    k = case[1]
    ref32 = a.astype(np.float64) @ b
    ref16 = round_bf16(a).astype(np.float64) @ round_bf16(b)
    tol = 4e-6 * k  # fp32 accumulation over K terms of unit-variance products
    cs = [
        Contender("bf16", lambda: nnfast.gemm(a, b, out16, precision="bf16"), out=out16,
                  check=checker(out16, ref16, rtol=0, atol=tol, what="bf16 " + label(case))),
        Contender("fp32", lambda: nnfast.gemm(a, b, out32), out=out32,
                  check=checker(out32, ref32, rtol=0, atol=tol, what="fp32 " + label(case))),
    ]  # fmt: skip
    try:
        import torch
    except ImportError:
        return cs
    at, bt = torch.from_numpy(a).bfloat16(), torch.from_numpy(b).bfloat16()
    res = {}

    def run_torch():
        res["c"] = torch.matmul(at, bt)

    def check_torch():  # torch rounds its output to bf16: 2**-8 relative on top
        got = res.pop("c").float().numpy()
        np.testing.assert_allclose(got, ref16, rtol=2**-7, atol=tol, err_msg="torch bf16")

    cs.append(Contender("torch_bf16", run_torch, check=check_torch))
    return cs


def mlp_contenders():
    cs = []
    for precision in ("bf16", "fp32"):
        step = nnfast_step()

        def run(step=step, precision=precision):
            with nnfast.matmul_precision(precision):
                return step()

        cs.append(Contender(f"mlp_{precision}", run, check=finite(run, f"mlp {precision}")))
    return cs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=0.1, help="per timing in a round")
    args = p.parse_args(argv)
    nnfast.set_num_threads(args.threads)
    info = nnfast.info()
    (kern,) = info["bf16_kernels"]
    print(f"nnfast {info['version']}, ISA {info['isa']}, {args.threads} threads, bf16 kernel "
          f"{kern['name']}{' (emulated)' if kern['emulated'] else ''}")  # fmt: skip
    print(f"{'shape':16} {'bf16 GF/s':>9} {'vs':>10} {'GF/s':>7} {'ratio':>6} {'target':>6}")
    missed = 0
    for case in CASES:
        cs = gemm_contenders(case)
        times = interleave(cs, args.rounds, args.min_seconds)
        gflop = flops(case) / 1e9
        for c in cs[1:]:
            r = ratio(times, c.name, "bf16")
            target = TARGETS.get((label(case), c.name), TORCH_TARGET if "torch" in c.name else 0)
            ok = r >= target
            missed += not ok
            print(f"{label(case):16} {gflop / median(times, 'bf16'):9.1f} {c.name:>10} "
                  f"{gflop / median(times, c.name):7.1f} {r:6.2f} {target:6.2f}"
                  f"{'' if ok else '  MISSED'}", flush=True)  # fmt: skip
    times = interleave(mlp_contenders(), args.rounds, args.min_seconds)
    r = ratio(times, "mlp_fp32", "mlp_bf16")
    missed += r < MLP_TARGET
    print(f"MLP step (784-256-128-10, batch 128, Adam): bf16 {1e3 * median(times, 'mlp_bf16'):.3f}"
          f" ms, fp32 {1e3 * median(times, 'mlp_fp32'):.3f} ms, bf16/fp32 {1 / r:.2f} "
          f"(target <= 0.70){'' if r >= MLP_TARGET else '  MISSED'}")  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
