"""nnfast vs PyTorch (CPU): one MLP training step, interleaved rounds, median of the ratios.

    python bench/compare_torch.py [--rounds 15] [--threads 2]

PyTorch is not a dependency: install it in a throwaway environment to run this. Without it
the script says so and exits 0. Target: an nnfast epoch <= 0.6x PyTorch's time.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from compare_mlp import report
from mlp_cases import BATCH, nnfast_step, numpy_step, torch_step
from threadpoolctl import threadpool_limits
from timing import Contender, finite, interleave, ratio

import nnfast


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=0.1)
    args = p.parse_args(argv)
    step = torch_step()
    if step is None:
        print("compare_torch: PyTorch is not installed; skipped")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    nnfast.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        steps = {"nnfast": nnfast_step(), "torch": step, "numpy": numpy_step()}
        contenders = [Contender(k, s, check=finite(s, k)) for k, s in steps.items()]
        times = interleave(contenders, args.rounds, args.min_seconds)
    print(f"MLP 784-256-128-10, batch {BATCH}, float32, Adam, {args.threads} threads, "
          f"torch {torch.__version__}, {args.rounds} interleaved rounds (median)")  # fmt: skip
    report(times, "torch")
    r = ratio(times, "nnfast", "torch")
    flag = "" if r <= 0.6 else "  MISSED"
    print(f"nnfast epoch time / torch epoch time: {r:.2f} (target <= 0.6){flag}")
    return 1 if flag else 0


if __name__ == "__main__":
    sys.exit(main())
