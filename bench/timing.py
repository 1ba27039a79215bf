"""How every comparison in bench/ is timed: interleaved rounds, settled machine, checked outputs.

The machine's speed drifts by up to 1.8x within minutes and other jobs share it, so a claim
"X is N times faster than Y" comes from interleaved rounds (X, Y, X, Y, ...) and the median of
the per-round ratios, never from absolute times taken minutes apart.

numpy's OpenBLAS workers (and torch's, and an OpenMP team) spin for ~0.1 s after each call: a
contender timed right after another library's BLAS call runs on a contended machine. So every
timing starts after a short sleep (:data:`SETTLE_SECONDS`) that lets them go idle.

A speed counts only where the output was checked: a contender's ``out`` arrays are filled
with NaN before its timed calls and its ``check`` runs after them, so a kernel that silently
skips part of its work cannot look fast.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

# OpenBLAS's workers spin ~0.1 s after a call before they sleep; 0.25 s leaves a margin.
SETTLE_SECONDS = 0.25


def settle(seconds: float = SETTLE_SECONDS) -> None:
    """Wait until the thread pools of whatever ran last (numpy, torch, nnfast) have gone idle."""
    time.sleep(seconds)


def time_call(fn, min_seconds=0.05, *, before=None, settle_seconds=SETTLE_SECONDS) -> float:
    """Seconds per call of ``fn()``: after :func:`settle` and one untimed call, ``fn`` is called
    until at least ``min_seconds`` of calls have been timed.

    ``before``, if given, is called (untimed) before each call of ``fn``: a situation to
    measure in, such as a numpy matmul whose BLAS threads are still spinning when ``fn`` runs.
    """
    settle(settle_seconds)
    if before is not None:
        before()
    fn()
    reps, elapsed = 0, 0.0
    if before is None:
        start = time.perf_counter()
        while elapsed < min_seconds or reps == 0:
            fn()
            reps += 1
            elapsed = time.perf_counter() - start
        return elapsed / reps
    while elapsed < min_seconds or reps == 0:
        before()
        start = time.perf_counter()
        fn()
        elapsed += time.perf_counter() - start
        reps += 1
    return elapsed / reps


@dataclass
class Contender:
    """One side of a comparison.

    run : the call to time (its result is ignored)
    out : array(s) ``run`` overwrites completely; filled with NaN before each timing
    check : called after each timing; raises (``np.testing.assert_allclose``) if ``out`` is wrong
    before : untimed call before each call of ``run`` (see :func:`time_call`)
    context : returns a context manager entered around the timing: the situation to time in
        (a thread count, a competing process let loose)
    """

    name: str
    run: Callable[[], object]
    out: np.ndarray | tuple | None = None
    check: Callable[[], None] | None = None
    before: Callable[[], object] | None = None
    context: Callable[[], contextlib.AbstractContextManager] | None = None

    def _outs(self):
        if self.out is None:
            return ()
        return self.out if isinstance(self.out, (tuple, list)) else (self.out,)


def interleave(
    contenders, rounds, min_seconds=0.05, settle_seconds=SETTLE_SECONDS, warmup=True
) -> dict:
    """Seconds per call of each contender, one timing of each per round, in turn.

    Returns {name: ndarray of ``rounds`` timings}. With ``warmup`` each contender first runs
    once untimed (allocations, thread pools, page faults).
    """
    for c in contenders if warmup else ():
        c.run()
    times = {c.name: [] for c in contenders}
    for _ in range(rounds):
        for c in contenders:
            for o in c._outs():
                o.fill(np.nan)
            with c.context() if c.context else contextlib.nullcontext():
                times[c.name].append(
                    time_call(c.run, min_seconds, before=c.before, settle_seconds=settle_seconds)
                )
            if c.check is not None:
                c.check()
    return {name: np.array(t) for name, t in times.items()}


def ratio(times: dict, num: str, den: str) -> float:
    """Median over rounds of ``times[num] / times[den]``: above 1 when ``den`` is faster."""
    return float(np.median(np.asarray(times[num]) / np.asarray(times[den])))


def median(times: dict, name: str) -> float:
    """Median seconds per call of one contender."""
    return float(np.median(times[name]))


def checker(got, want, rtol=1e-4, atol=1e-5, what=""):
    """A ``check`` comparing an output array with its reference (NaN, i.e. unwritten, fails)."""

    def check():
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)

    return check


def finite(fn, what=""):
    """A ``check`` for contenders without an output array (a training step): calls ``fn`` once
    more and fails unless what it returns (the loss) is finite."""

    def check():
        value = float(fn())
        if not np.isfinite(value):
            raise AssertionError(f"{what or fn}: returned {value}")

    return check
