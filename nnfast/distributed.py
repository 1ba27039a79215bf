"""Data-parallel training over MPI through mpi4py, with Horovod's and torch.distributed's names.

    # mpiexec -n 4 python train.py          (pip install "nnfast[mpi]" brings mpi4py and MPICH)
    from nnfast import distributed as dist
    dist.init()
    fit(model, loss, opt, (x, y), epochs=10, batch_size=32)   # distributed: size() > 1

or by hand::

    opt = dist.DistributedOptimizer(optim.Adam(model.parameters()))
    dist.broadcast_parameters(model)             # every rank starts from rank 0's weights
    dist.broadcast_optimizer_state(opt)
    sampler = dist.DistributedSampler(len(x), shuffle=True, seed=0)
    loader = DataLoader(x, y, batch_size=32, sampler=sampler)
    for epoch in range(10):
        for xb, yb in loader.batches(epoch):     # this rank's shard, reshuffled per epoch
            opt.zero_grad(); loss(model(xb), yb); model.backward(loss.backward())
            opt.step()                           # gradients averaged over the ranks first

Every rank holds the whole model and a shard of the data; before each update the gradients are
averaged with one ``Allreduce`` of the optimizer's flat gradient buffer (per parameter group),
in place, through mpi4py's buffer (upper-case) calls, never pickling. So the ranks' weights stay
identical, and N ranks with batch B each step like one process with batch N x B. BatchNorm's
running statistics are not averaged: each rank keeps its own (rank 0's are the ones saved).

An exception on any rank aborts the whole job (``init`` installs an excepthook that calls
``MPI.COMM_WORLD.Abort`` once mpiexec has read the rank's output), so a failing rank never
leaves the others waiting forever.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import traceback

import numpy as np

from ._validate import flag, integer

__all__ = [
    "DistributedOptimizer",
    "DistributedSampler",
    "allreduce_mean",
    "barrier",
    "broadcast_buffers",
    "broadcast_optimizer_state",
    "broadcast_parameters",
    "init",
    "is_initialized",
    "local_rank",
    "local_size",
    "rank",
    "size",
]

NEEDS = "pip install 'nnfast[mpi]' (mpi4py and MPICH)"

_comm = None  # the world communicator once init() ran
_local = None  # the ranks on this machine


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError(
            f"distributed training needs mpi4py and an MPI library, which are not installed "
            f"({err}): {NEEDS}"
        ) from None
    return MPI


def init(threads=None) -> None:
    """Start MPI (if mpi4py has not) and set this process up as one rank of the job.

    Safe to call more than once. Installs an excepthook that aborts the job when this rank
    raises. Unless ``threads`` is given, or ``NNFAST_NUM_THREADS`` / ``OMP_NUM_THREADS`` is
    set, each rank uses the CPUs of its affinity mask divided by the ranks sharing that mask
    on this machine (ranks bound to their own cores by ``mpiexec -bind-to core`` keep theirs).

    Raises
    ------
    ImportError
        mpi4py is not installed (one line naming the extra ``nnfast[mpi]``).
    """
    global _comm, _local
    if _comm is not None:
        return
    MPI = _mpi()
    if not MPI.Is_initialized():
        MPI.Init()
    comm = MPI.COMM_WORLD
    _local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    _comm = comm
    _install_excepthook(MPI)
    env = any(os.environ.get(v, "").strip() for v in ("NNFAST_NUM_THREADS", "OMP_NUM_THREADS"))
    if threads is not None or not env:
        import nnfast

        nnfast.set_num_threads(threads if threads is not None else _threads_per_rank())


def _threads_per_rank() -> int:
    """The CPUs of this rank's affinity mask, shared among the ranks on this machine that
    have the same mask."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = list(range(os.cpu_count() or 1))
    mask = np.zeros(max(max(cpus) + 1, os.cpu_count() or 1), np.uint8)
    mask[cpus] = 1
    width = np.array([mask.size], np.int64)
    _local.Allreduce(_mpi().IN_PLACE, width, op=_mpi().MAX)
    padded = np.zeros(int(width[0]), np.uint8)
    padded[: mask.size] = mask
    masks = np.empty((_local.Get_size(), padded.size), np.uint8)
    _local.Allgather(padded, masks)
    sharing = int(np.count_nonzero((masks == padded).all(axis=1)))
    return max(1, len(cpus) // sharing)


def _install_excepthook(MPI) -> None:
    previous = sys.excepthook

    def abort_on_error(kind, value, tb):
        # this rank's traceback first, in one write when it is Python's own hook: ranks that
        # fail together write to the launcher at once, and a traceback written line by line
        # came out interleaved with the other rank's (1 run in 100 on a busy machine)
        own = previous is sys.__excepthook__
        if not (own and _write_at_once("".join(traceback.format_exception(kind, value, tb)))):
            previous(kind, value, tb)
        if MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1:
            _wait_for_output_to_leave()
            MPI.COMM_WORLD.Abort(1)

    sys.excepthook = abort_on_error


def _write_at_once(text) -> bool:
    """Write ``text`` to stderr's file descriptor in as few write calls as it takes (one, up
    to the pipe's buffer); False if stderr has no descriptor."""
    try:
        sys.stderr.flush()
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    data = text.encode(sys.stderr.encoding or "utf-8", "backslashreplace")
    while data:
        try:
            data = data[os.write(fd, data) :]
        except InterruptedError:
            continue
        except OSError:
            return False
    return True


def _wait_for_output_to_leave(timeout=5.0) -> None:
    """Flush stdout and stderr and wait (at most ``timeout`` seconds) until the launcher has
    read them from their pipes.

    MPICH's mpiexec (Hydra) exits as soon as an abort reaches it and drops the ranks' output
    still on its way, so without this wait a failing rank's traceback went missing (in 1-2
    of 40 runs; in 2 of 30 when both ranks refused a mismatched run). Its proxy forwards a
    rank's output and the rank's abort in the order it reads them, so output it has read
    before the abort arrives reaches mpiexec's stderr first. When several ranks abort at
    once, only the first one's output is sure to arrive (``_check_same_run``'s message is
    the same on every rank). Only pipes are waited for: a file or terminal has no reader.
    """
    import stat
    import struct

    try:
        import fcntl
        import termios
    except ImportError:  # not POSIX
        return
    fds = []
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
            fd = stream.fileno()
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                fds.append(fd)
        except (AttributeError, OSError, ValueError):  # None, closed, or not a real file
            pass

    def unread(fd):
        try:  # FIONREAD on either end of a pipe: the bytes written and not yet read
            return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
        except OSError:
            return 0

    deadline = time.monotonic() + timeout
    while fds and time.monotonic() < deadline:
        fds = [fd for fd in fds if unread(fd)]
        if fds:
            time.sleep(0.001)


def _world():
    if _comm is None:
        raise RuntimeError("nnfast.distributed: call nnfast.distributed.init() first")
    return _comm


def is_initialized() -> bool:
    """Whether :func:`init` ran."""
    return _comm is not None


def rank() -> int:
    """This process's rank, 0 .. size() - 1."""
    return _world().Get_rank()


def size() -> int:
    """The number of ranks in the job."""
    return _world().Get_size()


def local_rank() -> int:
    """This process's rank among those on the same machine."""
    _world()
    return _local.Get_rank()


def local_size() -> int:
    """The number of ranks on this machine."""
    _world()
    return _local.Get_size()


def barrier() -> None:
    """Wait until every rank got here."""
    _world().Barrier()


def _allreduce_sum(a: np.ndarray) -> np.ndarray:
    """Sum a contiguous array over the ranks, in place."""
    _world().Allreduce(_mpi().IN_PLACE, a, op=_mpi().SUM)
    return a


def _ranks_differing(record) -> list:
    """The ranks whose ``record`` (JSON) differs from rank 0's, on every rank (one Allgather of
    hashes): every rank then raises alike, and none waits in a collective the others left."""
    digest = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).digest()
    mine = np.frombuffer(digest, np.uint8).copy()
    every = np.empty((size(), mine.size), np.uint8)
    _world().Allgather(mine, every)
    return [r for r in range(size()) if not np.array_equal(every[r], every[0])]


def _ranks(differ) -> str:
    return f"rank{'s' if len(differ) > 1 else ''} {', '.join(map(str, differ))} of {size()}"


def allreduce_mean(value):
    """The mean over the ranks of ``value`` (a number, or an array of the same shape on every
    rank), e.g. a metric; a float for a number, a new float64 array for an array.

    Every rank's shape is compared first: arrays of other sizes hung the job or mixed values
    (MPI sums buffers, not shapes)."""
    problem = None
    if value is None or isinstance(value, (str, bytes)):
        problem = f"allreduce_mean: expected a number or an array, got {value!r}"
    else:
        try:
            a = np.array(value, dtype=np.float64, copy=True, ndmin=1)
        except (TypeError, ValueError) as err:
            problem = f"allreduce_mean: expected numbers, got {value!r} ({err})"
    shape = None if problem else list(np.shape(value))
    differ = _ranks_differing(["allreduce_mean", shape])
    if problem:
        raise TypeError(problem)
    if differ:
        raise ValueError(f"allreduce_mean: {_ranks(differ)} gave values of another shape than "
                         f"rank 0; this rank's is {tuple(shape)}")  # fmt: skip
    _allreduce_sum(a)
    a /= size()
    return float(a[0]) if np.ndim(value) == 0 else a.reshape(np.shape(value))


def _bcast_json(obj, root=0):
    """``obj`` of rank ``root`` (JSON-serialisable) on every rank, as buffers (no pickle)."""
    comm = _world()
    data = json.dumps(obj).encode() if comm.Get_rank() == root else b""
    n = np.array([len(data)], np.int64)
    comm.Bcast(n, root=root)
    buf = (
        np.frombuffer(data, np.uint8).copy()
        if comm.Get_rank() == root
        else np.empty(n[0], np.uint8)
    )
    comm.Bcast(buf, root=root)
    return json.loads(buf.tobytes().decode())


def _gather_json(obj, root=0):
    """The list of every rank's ``obj`` (JSON-serialisable) on rank ``root``, None elsewhere."""
    comm = _world()
    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    width = np.array([data.size], np.int64)
    comm.Allreduce(_mpi().IN_PLACE, width, op=_mpi().MAX)
    mine = np.zeros(int(width[0]), np.uint8)  # JSON never holds NUL bytes: padding is safe
    mine[: data.size] = data
    every = np.empty((comm.Get_size(), mine.size), np.uint8) if comm.Get_rank() == root else None
    comm.Gather(mine, every, root=root)
    if comm.Get_rank() != root:
        return None
    return [json.loads(row.tobytes().rstrip(b"\0").decode()) for row in every]


def _bcast_array(a: np.ndarray, root: int) -> None:
    """Broadcast ``a`` in place (through a contiguous copy if it is not contiguous)."""
    if a.flags.c_contiguous:
        _world().Bcast(a, root=root)
    else:
        tmp = np.ascontiguousarray(a)
        _world().Bcast(tmp, root=root)
        a[...] = tmp


def broadcast_parameters(model, root=0) -> None:
    """Give every rank rank ``root``'s parameters and buffers (BatchNorm's running statistics).

    ``model`` is a Module or a list of Parameters. Call it before training, so that every
    rank starts from the same weights (``fit`` does).
    """
    if hasattr(model, "parameters") and callable(model.parameters):
        named = [(n, p.data) for n, p in model.named_parameters()]
        named += _buffers(model)
    else:
        named = [(str(i), p.data) for i, p in enumerate(model)]
    _broadcast_named("broadcast_parameters", "parameters", named, root)


def broadcast_buffers(model, root=0) -> None:
    """Give every rank rank ``root``'s buffers (BatchNorm's running statistics), as
    ``broadcast_parameters`` does with the parameters too. ``fit`` calls it at each epoch's end,
    so that every rank validates with the statistics of the model rank 0 saves."""
    _broadcast_named("broadcast_buffers", "buffers", _buffers(model), root)


def _buffers(model):
    return [(n, b) for n, b in model.named_buffers() if isinstance(b, np.ndarray)]


def _broadcast_named(what, kind, named, root):
    # the same names, shapes and dtypes everywhere first: another model hung a rank in Bcast,
    # or filled its PReLU slopes with BatchNorm's weights
    differ = _ranks_differing([[n, list(a.shape), a.dtype.str] for n, a in named])
    if differ:
        raise ValueError(f"{what}: {_ranks(differ)} hold other {kind} than rank 0 (names, "
                         f"shapes or dtypes); this rank's: "
                         f"{[(n, a.shape, str(a.dtype)) for n, a in named][:8]}")  # fmt: skip
    for _, a in named:
        _bcast_array(a, root)


def broadcast_optimizer_state(optimizer, root=0) -> None:
    """Give every rank rank ``root``'s optimizer state: hyper-parameters, step counts and
    moment buffers (after rank ``root`` resumed from a checkpoint, say)."""
    opt = getattr(optimizer, "optimizer", optimizer)
    is_root = _world().Get_rank() == root
    if is_root:
        sd = opt.state_dict()
        arrays = [{k for k, v in s.items() if isinstance(v, np.ndarray)} for s in sd["state"]]
        head = {
            "param_groups": sd["param_groups"],
            "scalars": [
                {k: v for k, v in s.items() if k not in a} for s, a in zip(sd["state"], arrays)
            ],
            "arrays": [sorted(a) for a in arrays],
        }
    head = _bcast_json(head if is_root else None, root)
    states = []
    for i, (scalars, keys) in enumerate(zip(head["scalars"], head["arrays"])):
        state = dict(scalars)
        data = opt._flat[i][0]
        for k in keys:
            buf = opt.state[i].get(k) if is_root else None
            if buf is None:
                buf = np.empty_like(data)
            _bcast_array(buf, root)
            state[k] = buf
        states.append(state)
    if not is_root:
        opt.load_state_dict({"param_groups": head["param_groups"], "state": states})


class DistributedOptimizer:
    """Wrap ``optimizer`` so that ``step()`` first averages the gradients over the ranks.

    The optimizer keeps each parameter group's gradients in one flat buffer; ``step()`` sums it
    over the ranks with one ``Allreduce(MPI.IN_PLACE, buffer)`` per group and divides by the
    number of ranks, then runs the wrapped step. Everything else (``zero_grad``,
    ``param_groups``, ``state_dict``, schedulers) goes to the wrapped optimizer.

    Attributes
    ----------
    optimizer : Optimizer
        The wrapped one.
    allreduce_seconds : float
        Time spent in the Allreduce calls so far (for benchmarks).
    """

    def __init__(self, optimizer):
        init()
        if isinstance(optimizer, DistributedOptimizer):
            raise TypeError("DistributedOptimizer: the optimizer is already distributed")
        if not hasattr(optimizer, "_flat"):
            raise TypeError(
                f"DistributedOptimizer: expected an nnfast optimizer, got "
                f"{type(optimizer).__name__}"
            )
        sizes = [[int(g.size), g.dtype.str] for _, g in optimizer._flat]
        differ = _ranks_differing(["DistributedOptimizer", sizes])
        if differ:  # the Allreduce of unequal buffers aborted the job, or mixed them
            raise ValueError(f"DistributedOptimizer: {_ranks(differ)} hold parameters of other "
                             f"sizes than rank 0; this rank's groups: {sizes}")  # fmt: skip
        self.optimizer = optimizer
        self.allreduce_seconds = 0.0

    def __getattr__(self, name):  # only for what this class does not define
        if name == "optimizer":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def synchronize(self) -> None:
        """Average the gradients over the ranks (``step`` does it first)."""
        MPI, comm, n = _mpi(), _world(), size()
        for group, (_, grad) in zip(self.optimizer.param_groups, self.optimizer._flat):
            for p in group["params"]:  # pending zeros of parameters backward did not reach
                p.materialize_grad()
            start = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, grad, op=MPI.SUM)
            self.allreduce_seconds += time.perf_counter() - start
            if n > 1:
                grad *= grad.dtype.type(1.0 / n)

    def step(self) -> None:
        self.synchronize()
        self.optimizer.step()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict) -> None:
        self.optimizer.load_state_dict(state_dict)

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def __repr__(self):
        return f"DistributedOptimizer({self.optimizer!r})"


class DistributedSampler:
    """This rank's share of ``n`` samples, with ``torch.utils.data.DistributedSampler``'s rules.

    Each epoch the indices ``0 .. n-1`` are permuted (``shuffle``; the order is a function of
    ``(seed, epoch)``, the same as :meth:`DataLoader.order`'s), then padded by repeating
    indices from the start until every rank gets as many (or, with ``drop_last``, cut to a
    multiple of the ranks), and rank ``r`` takes ``indices[r::num_replicas]``.

    Parameters
    ----------
    n : int or sized
        The number of samples (or a data set, of which ``len()`` is taken).
    num_replicas, rank : int, optional
        Default: :func:`size` and :func:`rank` (``init`` must have run).
    shuffle : bool
    seed : int >= 0
    drop_last : bool

    Use it as ``DataLoader(x, y, sampler=sampler)``; ``set_epoch(e)`` (or ``indices(e)``)
    chooses the epoch.
    """

    def __init__(self, n, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        what = "DistributedSampler"
        n = n if isinstance(n, (int, np.integer)) and not isinstance(n, bool) else _len(n)
        self.n = integer(n, "n", what, low=0)
        self.num_replicas = size() if num_replicas is None else num_replicas
        self.num_replicas = integer(self.num_replicas, "num_replicas", what, low=1)
        r = globals()["rank"]() if rank is None else rank
        self.rank = integer(r, "rank", what, low=0)
        if self.rank >= self.num_replicas:
            raise ValueError(
                f"DistributedSampler: rank {self.rank} is not below num_replicas "
                f"{self.num_replicas}"
            )
        self.shuffle = flag(shuffle, "shuffle", what)
        self.drop_last = flag(drop_last, "drop_last", what)
        self.seed = integer(seed, "seed", what, low=0)
        self.epoch = 0
        k = self.num_replicas
        # as torch: drop_last trims to a multiple of the ranks, else pads up to one
        self.num_samples = self.n // k if self.drop_last else -(-self.n // k)
        self.total_size = self.num_samples * k

    def indices(self, epoch=None) -> np.ndarray:
        """This rank's sample indices for ``epoch`` (default: the one set by ``set_epoch``)."""
        from .data.loader import epoch_order

        epoch = (
            self.epoch if epoch is None else integer(epoch, "epoch", "DistributedSampler", low=0)
        )
        idx = epoch_order(self.n, self.seed, epoch, self.shuffle)
        if not self.drop_last:
            pad = self.total_size - self.n
            if pad and self.n:
                idx = np.concatenate([idx, np.resize(idx, pad)])  # repeats from the start
        else:
            idx = idx[: self.total_size]
        return idx[self.rank : self.total_size : self.num_replicas]

    def set_epoch(self, epoch) -> None:
        self.epoch = integer(epoch, "epoch", "DistributedSampler.set_epoch", low=0)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples


def _len(data):
    if isinstance(data, (str, bytes)):  # a string's length is no number of samples
        raise TypeError(f"DistributedSampler: n must be a number of samples or a sized data "
                        f"set, got {type(data).__name__} {data!r}")  # fmt: skip
    try:
        return len(data)
    except TypeError:
        raise TypeError(
            f"DistributedSampler: n must be a number of samples or a sized data set, got "
            f"{type(data).__name__}"
        ) from None


def _check_same_run(model, optimizer, loss, scheduler, options) -> None:
    """Raise ValueError on every rank unless all ranks build the same model and run: a hash of
    the architecture record, the optimizer's and scheduler's settings, the loss, the GEMM
    backend and matmul precision and ``options`` is compared with rank 0's."""
    from . import io
    from ._gemm import get_gemm_backend, get_matmul_precision

    opt = getattr(optimizer, "optimizer", optimizer)
    record = {
        "gemm": [get_gemm_backend(), get_matmul_precision()],
        "architecture": io.architecture(model),
        "optimizer": [type(opt).__name__, opt.state_dict()["param_groups"]],
        "scheduler": None if scheduler is None else [type(scheduler).__name__,
                                                     scheduler.state_dict()],
        "loss": [type(loss).__name__, {k: v for k, v in vars(loss).items()
                                       if isinstance(v, (int, float, str, bool, type(None)))}],
        "options": options,
        # the record has no dtypes: a float64 copy of the model passed, then failed in Bcast
        "dtypes": [p.dtype.str for p in model.parameters()],
    }  # fmt: skip
    differ = _ranks_differing(record)
    if differ:
        raise ValueError(
            f"distributed: {_ranks(differ)} started a different model or run than "
            f"rank 0 (architecture, optimizer, scheduler, loss, GEMM precision, epochs, batch "
            f"size, data or seed differ): start every rank with the same command"
        )
