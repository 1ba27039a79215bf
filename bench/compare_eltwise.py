"""Element-wise kernel ratios in interleaved rounds (fused, numpy, copy, fused, numpy, ...).

For each activation, forward + backward on n float32 elements: the speed-up over numpy's
multi-pass equivalent (in-place passes into outputs of its own, as nnfast's; numpy's ufuncs run
on one thread, nnfast's kernels on --threads: run --threads 1 for a thread-for-thread
comparison), and the share of copy bandwidth each fused kernel reaches (forward moves
2 arrays, backward 3; numpy.copyto of the same array moves 2, in as many pieces as threads,
each on a thread of its own: the roof the threaded kernels share). Softmax cross-entropy (loss
+ gradient in one call, as CrossEntropyLoss uses it) against numpy. Medians of per-round
ratios, outputs checked (bench/timing.py).

    python bench/compare_eltwise.py [--rounds 7] [--threads 2] [--sizes 1M,16M]
"""

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from eltwise_cases import (
    NUMPY,
    TARGET_3X,
    fused,
    numpy_pair,
    numpy_xent,
    operands,
    xent_operands,
)
from timing import Contender, checker, interleave, median, ratio

import nnfast
import nnfast.functional as F


def _n(s):
    return int(float(s[:-1]) * 2**20) if s[-1] in "Mm" else int(s)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=0.05)
    p.add_argument("--sizes", default="1M,16M")
    args = p.parse_args(argv)
    nnfast.set_num_threads(args.threads)
    pool = ThreadPoolExecutor(args.threads)  # the copy's threads (idle between calls)
    print(f"nnfast {nnfast.info()['version']}, ISA {nnfast.get_isa()}, {args.threads} threads "
          f"(numpy's ufuncs: 1)")  # fmt: skip
    print(
        f"{'act':9} {'n':>5} {'fwd+bwd us':>10} {'numpy us':>9} {'x numpy':>8} "
        f"{'fwd bw':>7} {'bwd bw':>7}  (bw = share of copy bandwidth)"
    )
    missed = 0
    for size in args.sizes.split(","):
        n = _n(size)
        x, dy, y, dx = operands(n)
        cp = np.empty_like(x)
        for name in NUMPY:
            fwd, bwd, both = fused(name, x, dy, y, dx)
            f, b = NUMPY[name]
            want_y = f(x)
            want_dx = b(dy, x, want_y)
            check_y = checker(y, want_y, rtol=1e-3, atol=1e-4, what=f"{name} forward")
            check_dx = checker(dx, want_dx, rtol=1e-3, atol=1e-4, what=f"{name} backward")
            # the roof on the kernels' threads (one np.copyto ran at 15 GB/s, two at 37)
            pieces = list(zip(np.array_split(cp.reshape(-1), args.threads),
                              np.array_split(x.reshape(-1), args.threads)))  # fmt: skip

            def copy(pieces=pieces):
                list(pool.map(lambda ds: np.copyto(*ds), pieces))

            def check_both(check_y=check_y, check_dx=check_dx):
                check_y()
                check_dx()

            times = interleave(
                [
                    Contender("both", both, out=(y, dx), check=check_both),
                    Contender("numpy", numpy_pair(name, x, dy)),
                    Contender("copy", copy, out=cp, check=checker(cp, x, rtol=0, atol=0)),
                    Contender("fwd", fwd, out=y, check=check_y),
                    # reads y (from_output activations): the fwd timing just rewrote it
                    Contender("bwd", bwd, out=dx, check=check_dx),
                ],
                args.rounds,
                args.min_seconds,
            )
            sp = ratio(times, "numpy", "both")
            fw = ratio(times, "copy", "fwd")  # 2 arrays each
            bw = 1.5 * ratio(times, "copy", "bwd")  # 3 arrays vs 2
            flags = []
            if n == 2**20 and name in TARGET_3X and sp < 3:
                flags.append("<3x")
            if n >= 2**24 and min(fw, bw) < 0.7:
                flags.append("<70% bw")
            missed += bool(flags)
            print(
                f"{name:9} {size:>5} {median(times, 'both') * 1e6:10.0f} "
                f"{median(times, 'numpy') * 1e6:9.0f} {sp:8.2f} {fw:7.2f} {bw:7.2f}  "
                f"{' '.join(flags)}",
                flush=True,
            )
    for shape in [(128, 10), (4096, 1000)]:
        logits, labels = xent_operands(*shape)
        g = np.empty_like(logits)
        _, want_g = numpy_xent(logits, labels)

        def ours(logits=logits, labels=labels, g=g):  # what CrossEntropyLoss calls
            F.softmax_cross_entropy_with_grad(logits, labels, out=g)

        def theirs(logits=logits, labels=labels):
            numpy_xent(logits, labels)

        times = interleave(
            [
                Contender("ours", ours, out=g, check=checker(g, want_g, rtol=1e-4, atol=1e-7)),
                Contender("numpy", theirs),
            ],
            args.rounds,
            args.min_seconds,
        )
        print(f"softmax_cross_entropy {shape}: fused loss+grad "
              f"{ratio(times, 'numpy', 'ours'):.2f}x numpy")  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
