"""Speed when nnfast does not own every core: the contention table of issue 11.

A GEMM 128x784x256 (float32) and the MLP 784-256-128-10 training step (batch 128, Adam), for
nnfast and, when it is installed, PyTorch, in these situations:

- quiet, 1 thread and N threads (``--threads``, default 2);
- after a numpy matmul: a (128x784) @ (784x784) float32 product through numpy's OpenBLAS (N
  threads) right before each call, whose workers are still spinning when the call starts;
- busy core: another process spinning on one CPU (pinned there), at 1 and N threads;
- 2 processes: two processes each running nnfast at N threads at once, as two MPI ranks on one
  machine do (nnfast only).

Every timing follows bench/timing.py: interleaved rounds, each timing after the previous one's
threads have gone idle, outputs filled with NaN and checked. The busy process is stopped
(SIGSTOP) except during the busy-core timings. The ratios the issue's targets are phrased in
are medians of per-round ratios:

1. GEMM rate right after a numpy matmul / quiet 1-thread rate (target >= 0.9);
2. busy core, N threads: GEMM and MLP step speed / quiet 1-thread speed (>= 0.9);
3. MLP step time with a numpy x @ W before each step / quiet 1-thread step time (<= 1.1).

    python bench/compare_contention.py [--rounds 7] [--min-seconds 0.1] [--threads 2]
                                       [--no-torch]

PyTorch is never a dependency of nnfast: run this with an interpreter that has it (a throwaway
environment made with --system-site-packages, nnfast installed there or on PYTHONPATH).
With the default --min-seconds a round takes about 4 s per library plus 1 s for the two
processes: the default 7 rounds take about a minute with PyTorch, half that without.
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from mlp_cases import nnfast_step, torch_step
from threadpoolctl import threadpool_limits
from timing import Contender, checker, finite, interleave, settle

import nnfast

M, K, N = 128, 784, 256
GFLOP = 2 * M * K * N / 1e9


def gemm_case(lib, seed=0):
    """(run, out, check): out = a @ b, 128x784x256 float32, by ``lib`` ("nnfast" or "torch")."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    out = np.empty((M, N), np.float32)
    want = a.astype(np.float64) @ b
    if lib == "nnfast":

        def run():
            nnfast.gemm(a, b, out)

    else:
        import torch

        at, bt, ot = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)

        def run():
            torch.matmul(at, bt, out=ot)

    return run, out, checker(out, want, rtol=1e-4, atol=2e-3, what=f"{lib} gemm")


def kernels(lib):
    """{"gemm": Contender fields, "mlp": ...} for one library."""
    run, out, check = gemm_case(lib)
    step = nnfast_step() if lib == "nnfast" else torch_step()
    return {
        "gemm": dict(run=run, out=out, check=check),
        "mlp": dict(run=step, check=finite(step, f"{lib} MLP step")),
    }


class NumpyMatmul:
    """x @ W through numpy's BLAS: (128x784) @ (784x784), float32, into a preallocated out."""

    def __init__(self):
        rng = np.random.default_rng(1)
        self.x = rng.standard_normal((M, K), dtype=np.float32)
        self.w = rng.standard_normal((K, K), dtype=np.float32)
        self.out = np.empty((M, K), np.float32)

    def __call__(self):
        np.matmul(self.x, self.w, out=self.out)


class BusyCore:
    """A process spinning on one CPU (the last of our affinity mask); stopped until resumed."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        os.sched_setaffinity(self.proc.pid, {max(os.sched_getaffinity(0))})
        self.pause()

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self):
        self.proc.kill()
        self.proc.wait()


class Peers:
    """Processes running this script with --worker, each timing the same kernel at once."""

    def __init__(self, n, threads):
        cmd = [sys.executable, __file__, "--worker", "--threads", str(threads)]
        self.procs = [
            subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(n)
        ]
        for p in self.procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("compare_contention: a worker process failed to start")

    def time(self, kernel, min_seconds):
        """Seconds per call of ``kernel`` in each process, all timing at the same time."""
        for p in self.procs:
            p.stdin.write(f"{kernel} {min_seconds}\n")
            p.stdin.flush()
        return [float(p.stdout.readline()) for p in self.procs]

    def close(self):
        for p in self.procs:
            p.stdin.close()
            p.wait()


def worker(threads):
    """--worker: time kernels on request (one line "gemm 0.1" in, seconds per call out)."""
    nnfast.set_num_threads(threads)
    cases = {k: Contender(k, **v) for k, v in kernels("nnfast").items()}
    for c in cases.values():
        c.run()
    print("ready", flush=True)
    for line in sys.stdin:
        kernel, seconds = line.split()
        times = interleave([cases[kernel]], 1, float(seconds), settle_seconds=0, warmup=False)
        print(times[kernel][0], flush=True)


@contextlib.contextmanager
def situation(lib, threads, busy):
    """``lib`` at ``threads`` threads, with the busy process running if ``busy`` is given."""
    if lib == "nnfast":
        nnfast.set_num_threads(threads)
    else:
        import torch

        torch.set_num_threads(threads)
    if busy is not None:
        busy.resume()
    try:
        yield
    finally:
        if busy is not None:
            busy.pause()


def run_rounds(libs, args, busy, peers):
    """{(lib, kernel, situation): seconds per call, one per round}."""
    numpy_matmul = NumpyMatmul()
    nt = args.threads
    situations = {  # name: (threads, before each call, busy process)
        "quiet1": (1, None, None),
        "quiet": (nt, None, None),
        "numpy": (nt, numpy_matmul, None),
        "busy1": (1, None, busy),
        "busy": (nt, None, busy),
    }
    contenders = []
    for lib in libs:
        for kernel, fields in kernels(lib).items():
            for sit, (threads, before, b) in situations.items():
                ctx = lambda lib=lib, t=threads, b=b: situation(lib, t, b)  # noqa: E731
                contenders.append(
                    Contender((lib, kernel, sit), before=before, context=ctx, **fields)
                )
    times = {c.name: [] for c in contenders}
    for r in range(args.rounds):
        got = interleave(contenders, 1, args.min_seconds, warmup=r == 0)
        for name, t in got.items():
            times[name].append(t[0])
        for kernel in ("gemm", "mlp"):
            settle()
            for i, t in enumerate(peers.time(kernel, args.min_seconds)):
                times.setdefault(("nnfast", kernel, f"proc{i}"), []).append(t)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return {k: np.array(v) for k, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2, help="N, the multi-threaded count")
    p.add_argument("--min-seconds", type=float, default=0.1, help="of calls per timing")
    p.add_argument("--no-torch", action="store_true", help="nnfast only")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.threads)
    libs = ["nnfast"]
    if not args.no_torch:
        try:
            import torch

            libs.append("torch")
        except ImportError:
            print("PyTorch is not installed: nnfast only")
    nt = args.threads
    busy, peers = BusyCore(), None
    try:
        peers = Peers(2, nt)
        with threadpool_limits(limits=nt, user_api="blas"):
            t = run_rounds(libs, args, busy, peers)
    finally:
        busy.close()
        if peers is not None:
            peers.close()

    versions = f"nnfast {nnfast.info()['version']} (ISA {nnfast.get_isa()})"
    if "torch" in libs:
        versions += f", torch {torch.__version__}"
    print(f"{versions}; {len(os.sched_getaffinity(0))} CPUs in the affinity mask; "
          f"{args.rounds} interleaved rounds, medians")  # fmt: skip
    rows = [
        ("quiet1", "quiet, 1 thread"),
        ("quiet", f"quiet, {nt} threads"),
        ("numpy", f"after a numpy matmul, {nt} threads"),
        ("busy1", "another process busy on one core, 1 thread"),
        ("busy", f"another process busy on one core, {nt} threads"),
    ]
    header = f"{'situation':46}" + "".join(f"{lib + ' GEMM GF/s':>18}{'MLP ms':>9}" for lib in libs)
    print(header)

    def cells(lib, sit):
        return (f"{GFLOP / np.median(t[lib, 'gemm', sit]):18.1f}"
                f"{np.median(t[lib, 'mlp', sit]) * 1e3:9.3f}")  # fmt: skip

    for sit, label in rows:
        print(f"{label:46}" + "".join(cells(lib, sit) for lib in libs))
    for i in range(2):
        label = f"2 processes running nnfast, {nt} threads: #{i}"
        print(f"{label:46}" + cells("nnfast", f"proc{i}"))

    def r(lib, kernel, num, den):
        """Median over rounds of t[num] / t[den]."""
        return float(np.median(t[lib, kernel, num] / t[lib, kernel, den]))

    def verdict(value, target, higher):
        ok = value >= target if higher else value <= target
        return f"{value:5.2f}{'' if ok else ' MISSED'}"

    print(f"\n{'ratios (medians of per-round ratios)':68}" + "".join(f"{lib:>16}" for lib in libs))
    lines = [
        ("(1) GEMM after numpy matmul, rate / quiet 1-thread rate  (>= 0.9)",
         lambda lib: r(lib, "gemm", "quiet1", "numpy"), 0.9, True),
        (f"    (the aim: quiet {nt}-thread rate / quiet 1-thread rate)",
         lambda lib: r(lib, "gemm", "quiet1", "quiet"), None, True),
        (f"(2) busy core, {nt} threads: GEMM speed / quiet 1-thread  (>= 0.9)",
         lambda lib: r(lib, "gemm", "quiet1", "busy"), 0.9, True),
        (f"    busy core, {nt} threads: MLP step speed / quiet 1-thread  (>= 0.9)",
         lambda lib: r(lib, "mlp", "quiet1", "busy"), 0.9, True),
        ("(3) MLP step after numpy x @ W, time / quiet 1-thread  (<= 1.1)",
         lambda lib: r(lib, "mlp", "numpy", "quiet1"), 1.1, False),
    ]  # fmt: skip
    missed = 0
    for label, fn, target, higher in lines:
        vals = [fn(lib) for lib in libs]
        if target and "nnfast" in libs:
            v = vals[libs.index("nnfast")]
            missed += not (v >= target if higher else v <= target)
        print(f"{label:68}" + "".join(
            f"{(verdict(v, target, higher) if target and lib == 'nnfast' else f'{v:5.2f}'):>16}"
            for lib, v in zip(libs, vals)))  # fmt: skip
    for kernel in ("gemm", "mlp"):
        each = [r("nnfast", kernel, "quiet1", f"proc{i}") for i in range(2)]
        print(f"    2 processes, {kernel} speed of each / quiet 1-thread (nnfast): "
              f"{each[0]:.2f}, {each[1]:.2f}")  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
