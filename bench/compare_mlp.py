"""nnfast vs plain numpy: one MLP training step, interleaved rounds, median of the ratios.

    python bench/compare_mlp.py [--rounds 15] [--threads 2]

Each round times nnfast then numpy back to back (bench/timing.py: after the other's threads
have gone idle), so the machine's drift cancels in the per-round ratio. Target: >= 1.5x numpy.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from mlp_cases import BATCH, STEPS_PER_EPOCH, nnfast_step, numpy_step
from threadpoolctl import threadpool_limits
from timing import Contender, finite, interleave, median, ratio

import nnfast


def report(times, baseline):
    """A table of each implementation's step time and its speed-up over ``baseline``."""
    print(f"{'impl':8} {'ms/step':>8} {'samples/s':>10} {'s/epoch':>8} {'vs ' + baseline:>10}")
    for name in times:
        med = median(times, name)
        print(f"{name:8} {med * 1e3:8.3f} {BATCH / med:10.0f} {med * STEPS_PER_EPOCH:8.3f} "
              f"{ratio(times, baseline, name):9.2f}x")  # fmt: skip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=0.1)
    args = p.parse_args(argv)
    nnfast.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        steps = {"nnfast": nnfast_step(), "numpy": numpy_step()}
        contenders = [Contender(k, s, check=finite(s, k)) for k, s in steps.items()]
        times = interleave(contenders, args.rounds, args.min_seconds)
    print(f"MLP 784-256-128-10, batch {BATCH}, float32, Adam, {args.threads} threads, "
          f"ISA {nnfast.get_isa()}, {args.rounds} interleaved rounds (median)")  # fmt: skip
    report(times, "numpy")
    speedup = ratio(times, "numpy", "nnfast")
    print(f"nnfast / numpy speed-up: {speedup:.2f}x (target >= 1.5x): "
          f"{'met' if speedup >= 1.5 else 'MISSED'}")  # fmt: skip
    return 0 if speedup >= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
