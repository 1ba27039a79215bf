"""nnfast vs plain numpy: one MLP training step, interleaved rounds, median of the ratios.

    python bench/compare_mlp.py [--rounds 15] [--threads 2]

Each round times nnfast then numpy back to back (after letting the other's threads go idle),
so the machine's drift cancels in the per-round ratio. Target: >= 1.5x numpy.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from mlp_cases import BATCH, STEPS_PER_EPOCH, nnfast_step, numpy_step
from threadpoolctl import threadpool_limits

import nnfast

SETTLE_SECONDS = 0.25


def time_call(fn, min_seconds):
    """Seconds per call, after letting the previous library's threads go idle."""
    time.sleep(SETTLE_SECONDS)
    fn()
    reps, start = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / reps


def interleave(fns, rounds, min_seconds):
    """Per-implementation lists of seconds per call, timed in alternation each round."""
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(time_call(fn, min_seconds))
    return times


def report(times, baseline, target=None):
    ref = np.array(times[baseline])
    print(f"{'impl':8} {'ms/step':>8} {'samples/s':>10} {'s/epoch':>8} {'vs ' + baseline:>10}")
    for name, t in times.items():
        t = np.array(t)
        med = float(np.median(t))
        ratio = float(np.median(ref / t))
        print(f"{name:8} {med * 1e3:8.3f} {BATCH / med:10.0f} {med * STEPS_PER_EPOCH:8.3f} "
              f"{ratio:9.2f}x")  # fmt: skip
    return float(np.median(ref / np.array(times[next(iter(times))])))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=0.1)
    args = p.parse_args(argv)
    nnfast.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        fns = {"nnfast": nnfast_step(), "numpy": numpy_step()}
        times = interleave(fns, args.rounds, args.min_seconds)
    print(f"MLP 784-256-128-10, batch {BATCH}, float32, Adam, {args.threads} threads, "
          f"ISA {nnfast.get_isa()}, {args.rounds} interleaved rounds (median)")  # fmt: skip
    ratio = report(times, "numpy")
    print(f"nnfast / numpy speed-up: {ratio:.2f}x (target >= 1.5x): "
          f"{'met' if ratio >= 1.5 else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
