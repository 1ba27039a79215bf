"""Run-time configuration shared by every kernel: thread count, ISA path, BLAS thread cap."""

from __future__ import annotations

import os
import warnings

from . import _validate
from ._native import IMPORT_ERROR, core

_num_threads = 1
_blas_threads_applied = None
# Compute-bound kernels gain nothing past one thread per logical CPU, but a few times more is
# legitimate (experiments, tests of the thread partitioning); far more only costs memory for
# thread stacks (the pool runs a job on fewer threads when it cannot start more). The machine's CPU
# count (not the affinity mask) keeps a count valid under a narrow `taskset`; the floor keeps
# small CI machines usable for such tests. Far below the C int range.
MAX_THREADS = max(16, 4 * (os.cpu_count() or 1))
_THREADS_EXPECTED = f"a whole number from 1 to {MAX_THREADS}"


def _default_threads() -> int:
    for var in ("NNFAST_NUM_THREADS", "OMP_NUM_THREADS"):
        raw = os.environ.get(var, "").strip()
        if not raw:
            continue
        try:
            n = int(raw.split(",")[0])  # OMP_NUM_THREADS may list nesting levels: "4,2"
        except ValueError:
            n = 0
        if 1 <= n <= MAX_THREADS:
            return n
        warnings.warn(
            f"nnfast: ignoring {var}={raw!r} (expected {_THREADS_EXPECTED})", stacklevel=3
        )
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for nnfast's kernels and for the SciPy BLAS it hands work to.

    ``n`` is an integer (numpy integers too) from 1 to ``MAX_THREADS``: 4 times the machine's
    CPU count, at least 16. Without threads (or without the native extension) nnfast's own
    kernels run on one thread.
    """
    global _num_threads
    count = _validate.integer(n, "n", "set_num_threads", low=1, high=MAX_THREADS)
    if core is not None:
        core.set_num_threads(count)
    _num_threads = count


def get_num_threads() -> int:
    """The thread count set by :func:`set_num_threads` (or from the environment at import)."""
    return _num_threads


def cap_blas_threads() -> None:
    """Limit SciPy's BLAS pool to our thread count: nnfast's pool beside a pthreads OpenBLAS
    pool would oversubscribe the cores. Cheap after the first call for a given count."""
    global _blas_threads_applied
    if _blas_threads_applied == _num_threads:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=_num_threads, user_api="blas")
    _blas_threads_applied = _num_threads


def set_isa(name: str) -> None:
    """Force an ISA path for the native kernels: ``"generic"``, ``"avx2"`` or ``"avx512"``.

    Raises ValueError when the name is unknown or this build or CPU cannot run it.
    """
    if core is None:
        raise RuntimeError(f"set_isa: the native extension is not available ({IMPORT_ERROR})")
    if not isinstance(name, str):
        raise TypeError(f"set_isa: name must be a str such as 'avx2', got {type(name).__name__}")
    core.set_isa(name)


def get_isa() -> str | None:
    """The ISA path the native kernels use now (None without the native extension)."""
    return None if core is None else core.isa_active()


def _init() -> None:
    set_num_threads(_default_threads())
    forced = os.environ.get("NNFAST_ISA", "").strip().lower()
    if forced and core is not None:
        try:
            core.set_isa(forced)
        except ValueError as err:
            warnings.warn(f"nnfast: NNFAST_ISA={forced!r} ignored: {err}", stacklevel=3)


_init()
