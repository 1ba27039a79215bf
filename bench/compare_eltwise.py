"""Element-wise kernel ratios in interleaved rounds (fused, numpy, copy, fused, numpy, ...).

For each activation, forward + backward on n float32 elements: the speed-up over numpy's
multi-pass equivalent, and the share of copy bandwidth each fused kernel reaches (forward moves
2 arrays, backward 3; numpy.copyto of the same array moves 2). Softmax cross-entropy
(loss + gradient in one call, as CrossEntropyLoss uses it) against numpy. Medians of per-round
ratios; see compare_gemm.py for why.

    python bench/compare_eltwise.py [--rounds 7] [--threads 2] [--sizes 1M,16M]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from compare_gemm import time_call
from eltwise_cases import (
    NUMPY,
    TARGET_3X,
    fused,
    numpy_pair,
    numpy_xent,
    operands,
    xent_operands,
)

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
    print(f"nnfast {nnfast.info()['version']}, ISA {nnfast.get_isa()}, {args.threads} threads")
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
            ref = numpy_pair(name, x, dy)
            copy = lambda cp=cp, x=x: np.copyto(cp, x)  # noqa: E731
            both(), ref(), copy()
            r_np, r_fw, r_bw, t_both, t_ref = [], [], [], [], []
            for _ in range(args.rounds):
                tb, tr, tc = (
                    time_call(both, args.min_seconds),
                    time_call(ref, args.min_seconds),
                    time_call(copy, args.min_seconds),
                )
                tf, tw = time_call(fwd, args.min_seconds), time_call(bwd, args.min_seconds)
                r_np.append(tr / tb)
                r_fw.append(tc / tf)  # 2 arrays each
                r_bw.append(1.5 * tc / tw)  # 3 arrays vs 2
                t_both.append(tb)
                t_ref.append(tr)
            sp, fw, bw = np.median(r_np), np.median(r_fw), np.median(r_bw)
            flags = []
            if n == 2**20 and name in TARGET_3X and sp < 3:
                flags.append("<3x")
            if n >= 2**24 and min(fw, bw) < 0.7:
                flags.append("<70% bw")
            missed += bool(flags)
            print(
                f"{name:9} {size:>5} {np.median(t_both) * 1e6:10.0f} {np.median(t_ref) * 1e6:9.0f} "
                f"{sp:8.2f} {fw:7.2f} {bw:7.2f}  {' '.join(flags)}",
                flush=True,
            )
    for shape in [(128, 10), (4096, 1000)]:
        logits, labels = xent_operands(*shape)
        g = np.empty_like(logits)

        def ours(logits=logits, labels=labels, g=g):  # what CrossEntropyLoss calls
            F.softmax_cross_entropy_with_grad(logits, labels, out=g)

        def theirs(logits=logits, labels=labels):
            numpy_xent(logits, labels)

        ratios = []
        for _ in range(args.rounds):
            ratios.append(time_call(theirs, args.min_seconds) / time_call(ours, args.min_seconds))
        print(f"softmax_cross_entropy {shape}: fused loss+grad {np.median(ratios):.2f}x numpy")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
