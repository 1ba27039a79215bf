"""bf16 GEMM and mixed-precision training steps against nnfast's fp32 (and PyTorch's bf16 when
it is installed), in interleaved rounds (bf16, fp32, [torch], bf16, fp32, ...; bench/timing.py:
each timed after the others' threads have gone idle, outputs NaN-filled before and checked
after), median per-round ratios.

    python bench/compare_bf16.py [--rounds 15] [--threads 2] [--parts gemm,steps]

Targets (issue 15): the bf16 GEMM >= 1.8x nnfast's fp32 packed GEMM on 1024^3 and 2048^3 and
>= 1.0x PyTorch's bf16 matmul there and on 128x784x256; the MLP step in bf16 <= 0.7x the fp32
step and <= 0.4x PyTorch's step under torch.autocast("cpu", dtype=torch.bfloat16); the
cnn_small step in bf16 <= 0.7x its fp32 step. The peak of vdpbf16ps is twice the fp32 FMA peak.
"""

import argparse
import functools
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from compare_cnn import make_nnfast
from gemm_cases import flops, label, operands
from mlp_cases import nnfast_step, torch_step
from timing import Contender, checker, finite, interleave, median, ratio

import nnfast

CASES = [(1024, 1024, 1024, False, False), (2048, 2048, 2048, False, False),
         (128, 784, 256, False, False)]  # fmt: skip
# (case, contender, baseline, least ratio of baseline time to contender time)
TARGETS = {("1024x1024x1024", "fp32"): 1.8, ("2048x2048x2048", "fp32"): 1.8}
TORCH_TARGET = 1.0
# (step, baseline): most bf16 step time / baseline step time
STEP_TARGETS = {("mlp", "fp32"): 0.7, ("mlp", "torch_autocast"): 0.4, ("cnn_small", "fp32"): 0.7}


def round_bf16(x):
    """float32 -> the bf16 value as float32 (ties to even), for the reference."""
    mant, exp = np.frexp(x.astype(np.float64))
    return np.ldexp(np.rint(mant * 256) / 256, exp).astype(np.float32)


def gemm_contenders(case, threads):
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
    torch.set_num_threads(threads)
    at, bt = torch.from_numpy(a).bfloat16(), torch.from_numpy(b).bfloat16()
    res = {}

    def run_torch():
        res["c"] = torch.matmul(at, bt)

    def check_torch():  # torch rounds its output to bf16: 2**-8 relative on top
        got = res.pop("c").float().numpy()
        np.testing.assert_allclose(got, ref16, rtol=2**-7, atol=tol, err_msg="torch bf16")

    cs.append(Contender("torch_bf16", run_torch, check=check_torch))
    return cs


def under_precision(precision, step):
    """``step`` run with nnfast's matmul precision set to ``precision``."""

    def run():
        with nnfast.matmul_precision(precision):
            return step()

    return run


def step_contenders(name, threads):
    """One training step of model ``name`` ("mlp" or "cnn_small", batch 128, Adam) per
    contender: nnfast in bf16 and in fp32 (the same seed), and for the MLP PyTorch under
    autocast when it is installed."""
    rng = np.random.default_rng(0)
    x, y = rng.random((128, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 128)
    steps = {}
    for precision in ("bf16", "fp32"):
        step = nnfast_step() if name == "mlp" else functools.partial(make_nnfast(name)[1], x, y)
        steps[precision] = under_precision(precision, step)
    if name == "mlp":
        autocast = torch_step(autocast=True)
        if autocast is not None:
            import torch

            torch.set_num_threads(threads)
            steps["torch_autocast"] = autocast
    return [Contender(k, s, check=finite(s, f"{name} {k}")) for k, s in steps.items()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=0.1, help="per timing in a round")
    p.add_argument("--parts", default="gemm,steps", help="gemm, steps (MLP and cnn_small)")
    args = p.parse_args(argv)
    parts = args.parts.split(",")
    if not parts or not set(parts) <= {"gemm", "steps"}:
        p.error(f"--parts: expected a comma-separated list of gemm and steps, got {args.parts!r}")
    nnfast.set_num_threads(args.threads)
    info = nnfast.info()
    kernels = ", ".join(f"{k['name']}{' (emulated)' if k['emulated'] else ''}"
                        for k in info["bf16_kernels"])  # fmt: skip
    print(f"nnfast {info['version']}, ISA {info['isa']}, {args.threads} threads, bf16 kernels "
          f"{kernels}")  # fmt: skip
    if "gemm" in parts:
        print(f"{'shape':16} {'bf16 GF/s':>9} {'vs':>10} {'GF/s':>7} {'ratio':>6} {'target':>6}")
    missed = 0
    for case in CASES if "gemm" in parts else ():
        cs = gemm_contenders(case, args.threads)
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
    for name in ("mlp", "cnn_small") if "steps" in parts else ():
        cs = step_contenders(name, args.threads)
        times = interleave(cs, args.rounds, args.min_seconds)
        what = "784-256-128-10" if name == "mlp" else "conv 32-64, fc 128"
        print(f"{name} step ({what}, batch 128, Adam): bf16 {1e3 * median(times, 'bf16'):.3f} ms")
        for c in cs[1:]:
            r = ratio(times, "bf16", c.name)
            target = STEP_TARGETS[name, c.name]
            missed += r > target
            print(f"    {c.name} {1e3 * median(times, c.name):.3f} ms, bf16 / {c.name} "
                  f"{r:.2f} (target <= {target:.2f}){'  MISSED' if r > target else ''}",
                  flush=True)  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
