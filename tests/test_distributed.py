"""nnfast.distributed: the sampler's rules without MPI; every MPI case in an ``mpiexec -n 2``
subprocess with a timeout (a deadlock fails the test instead of hanging the suite)."""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback

import numpy as np
import pytest
from helpers import signal_after_checkpoint, write_tiny_mnist

from nnfast.data import DataLoader
from nnfast.distributed import DistributedSampler

MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="mpi4py / mpiexec not installed (pip install '.[mpi]'; CI installs it)",
)
ENV = {**os.environ, "NNFAST_NUM_THREADS": "1"}


# --- the sampler, without MPI ---------------------------------------------------------------
def _shards(n, k, **kw):
    return [DistributedSampler(n, num_replicas=k, rank=r, **kw).indices(0).tolist()
            for r in range(k)]  # fmt: skip


def test_sampler_shards_pad_and_drop_as_torch():
    # torch: indices padded with indices[:padding] to a multiple of the ranks, rank r takes
    # indices[r::k]; drop_last cuts to ceil((n - k) / k) per rank
    assert _shards(10, 3, shuffle=False) == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]
    assert _shards(10, 3, shuffle=False, drop_last=True) == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert _shards(2, 5, shuffle=False) == [[0], [1], [0], [1], [0]]  # padding > n repeats
    assert _shards(9, 3, shuffle=False, drop_last=True) == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    s = DistributedSampler(10, num_replicas=3, rank=1)
    assert len(s) == 4 and s.total_size == 12 and len(list(s)) == 4


def test_sampler_shuffles_per_epoch_and_covers_the_data():
    parts = _shards(100, 4, seed=3)
    assert sorted(np.concatenate(parts)) == list(range(100))
    s = DistributedSampler(100, num_replicas=4, rank=2, seed=3)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first and sorted(s.indices(1)) != sorted(first)  # another shard too
    assert DistributedSampler(100, num_replicas=4, rank=2, seed=3).indices(1).tolist() == list(s)
    assert DistributedSampler(100, num_replicas=4, rank=2, seed=4).indices(0).tolist() != first
    # one replica visits the DataLoader's order: a 1-rank run is the plain run
    from nnfast.data import DataLoader

    one = DistributedSampler(50, num_replicas=1, rank=0, seed=7)
    loader = DataLoader(np.zeros((50, 1)), np.zeros(50), seed=7)
    assert np.array_equal(one.indices(2), loader.order(2))


@pytest.mark.parametrize(
    "kw, err, what",
    [
        ({"num_replicas": 2, "rank": 2}, ValueError, "rank 2 is not below num_replicas 2"),
        ({"num_replicas": 0, "rank": 0}, ValueError, "num_replicas must be a whole number >= 1"),
        ({"num_replicas": 2, "rank": -1}, ValueError, "rank must be a whole number >= 0"),
        ({"num_replicas": 2.5, "rank": 0}, TypeError, "num_replicas must be an int"),
        ({"num_replicas": 2, "rank": 0, "seed": -1}, ValueError, "seed must be a whole number"),
        ({"num_replicas": 2, "rank": 0, "shuffle": "no"}, TypeError, "shuffle must be True or"),
        ({"num_replicas": 2, "rank": 0, "drop_last": "False"}, TypeError, "drop_last must be"),
    ],
)
def test_sampler_refuses_bad_arguments(kw, err, what):
    with pytest.raises(err, match=what):
        DistributedSampler(10, **kw)
    for data in (object(), "10"):  # a string counted as a data set of its length
        with pytest.raises(TypeError, match="a number of samples or a sized data set"):
            DistributedSampler(data, num_replicas=1, rank=0)


@pytest.mark.parametrize(
    "epoch, err, what",
    [("3", TypeError, "epoch must be an int"), (2.7, TypeError, "epoch must be an int"),
     (None, TypeError, "epoch must be an int"), (-1, ValueError, "epoch must be a whole")],
)  # fmt: skip
def test_sampler_epochs_are_whole_numbers(epoch, err, what):
    """'3' was parsed, 2.7 truncated, and -1 failed later inside numpy."""
    sampler = DistributedSampler(10, num_replicas=2, rank=0)
    with pytest.raises(err, match=f"DistributedSampler.set_epoch: {what}"):
        sampler.set_epoch(epoch)
    if epoch is not None:  # indices(None): the epoch set_epoch chose
        with pytest.raises(err, match=f"DistributedSampler: {what}"):
            sampler.indices(epoch)
    assert sampler.epoch == 0


def test_each_rank_draws_its_own_augmentation():
    """Batch k's shifts were a function of (seed, epoch, k) alone: every rank shifted its
    images alike, and a global batch of 12 equal images held 4 distinct ones on 3 ranks (11 in
    one process). Rank 0 draws as one process does."""
    from nnfast.data import RandomShift

    img = np.zeros((24, 1, 12, 12), np.float32)
    img[:, :, 4:8, 4:8] = 1.0
    y = np.zeros(24, np.int64)

    def first_batch(sampler):
        loader = DataLoader(img, y, batch_size=4, seed=0, transform=RandomShift(2), sampler=sampler)
        return next(iter(loader.batches(0)))[0]

    ranks = [first_batch(DistributedSampler(24, num_replicas=3, rank=r, seed=0)) for r in range(3)]
    assert not np.array_equal(ranks[0], ranks[1]) and not np.array_equal(ranks[1], ranks[2])
    np.testing.assert_array_equal(ranks[0], first_batch(None))
    np.testing.assert_array_equal(ranks[2], first_batch(DistributedSampler(24, 3, 2, seed=0)))


def test_a_loader_refuses_a_sampler_of_another_size():
    """It yielded samples of the first 5 of 10 only."""
    with pytest.raises(ValueError, match="the sampler shares out 5 samples, but x has 10"):
        DataLoader(np.zeros((10, 2)), sampler=DistributedSampler(5, num_replicas=2, rank=1))


# --- without mpi4py -------------------------------------------------------------------------
def _python(code, cwd, timeout=60):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_without_mpi4py_one_line_names_the_extra(tmp_path):
    block = "import sys; sys.modules['mpi4py'] = None\n"
    p = _python(block + "import nnfast.distributed as d\ntry:\n    d.init()\nexcept ImportError "
                "as e:\n    print(e)", tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("\n") == 1 and "pip install 'nnfast[mpi]'" in p.stdout
    p = _python(block + "from nnfast.cli import main\nsys.exit(main(['train', '--distributed']))",
                tmp_path)  # fmt: skip
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("nnfast: error: ") and "pip install 'nnfast[mpi]'" in p.stderr
    assert os.listdir(tmp_path) == []


def test_a_failing_rank_waits_until_its_output_is_read(monkeypatch):
    """mpiexec (MPICH's Hydra) drops the output still on its way when a rank aborts: the
    excepthook first flushes and waits until the launcher has read the rank's pipes."""
    from nnfast.distributed import _wait_for_output_to_leave

    r, w = os.pipe()
    with os.fdopen(w, "w") as stream, os.fdopen(r, "rb", buffering=0) as launcher:
        monkeypatch.setattr(sys, "stderr", stream)
        got = []

        def busy_launcher():  # reads the pipe only after a while
            time.sleep(0.2)
            got.append(launcher.read(99))

        reader = threading.Thread(target=busy_launcher)
        reader.start()
        stream.write("ValueError: rank 1 differs\n")  # still in the stream's buffer
        _wait_for_output_to_leave(timeout=60)
        os.set_blocking(r, False)
        assert launcher.read(99) is None  # nothing left in the pipe: the launcher took it
        reader.join()
        assert got == [b"ValueError: rank 1 differs\n"]
        stream.write("nobody reads this\n")
        _wait_for_output_to_leave(timeout=0.05)  # gives up instead of hanging the rank


def test_a_failing_rank_writes_its_traceback_at_once(monkeypatch):
    """Ranks that fail together write to the launcher at once: each traceback goes out in one
    write, so that the lines of two ranks' tracebacks do not interleave."""
    from nnfast.distributed import _install_excepthook

    class NoMPI:  # not initialised: the hook writes and does not abort
        @staticmethod
        def Is_initialized():
            return False

    writes = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(data) or real_write(fd, data))
    r, w = os.pipe()
    with os.fdopen(w, "w") as stream, os.fdopen(r, "rb", buffering=0) as launcher:
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
        _install_excepthook(NoMPI)
        try:
            raise ValueError("distributed: rank 1 of 2 differs")
        except ValueError as err:
            sys.excepthook(type(err), err, err.__traceback__)
            expected = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        assert writes == [expected.encode()]
        assert launcher.read(len(writes[0]) + 99) == writes[0]
        assert expected.count("\n") > 2 and "ValueError: distributed: rank 1" in expected


# --- under mpiexec -n 2 -------------------------------------------------------------------
def _mpirun(args, cwd, timeout=120, n=2):
    """Run ``mpiexec -n 2 args`` in its own process group; kill the group on a timeout."""
    p = subprocess.Popen([MPIEXEC, "-n", str(n), *args], cwd=cwd, env=ENV, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)  # fmt: skip
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"mpiexec did not finish in {timeout} s (deadlock?)\n{out}\n{err}")
    return p.returncode, out, err


def _script(tmp_path, body):
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


@needs_mpi
def test_two_ranks_of_64_step_as_one_process_of_128(tmp_path):
    """20 Adam steps, DistributedSampler(shuffle=False): parameters equal to float32 tolerance,
    and bit-identical on both ranks."""
    rc, out, err = _mpirun(_script(tmp_path, """
        import numpy as np, nnfast
        from nnfast import nn, optim, distributed as dist
        from nnfast.data import DataLoader
        dist.init()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((128 * 20, 12)).astype(np.float32)
        y = rng.integers(0, 4, len(x))
        def build():
            nnfast.manual_seed(1 + dist.rank())  # different on purpose: broadcast fixes it
            return nn.Sequential(nn.Linear(12, 16, activation="tanh"), nn.Linear(16, 4))
        m, loss = build(), nn.CrossEntropyLoss()
        opt = dist.DistributedOptimizer(optim.Adam(m.parameters(), lr=1e-2))
        dist.broadcast_parameters(m)
        dist.broadcast_optimizer_state(opt)
        sampler = dist.DistributedSampler(len(x), shuffle=False)
        steps = 0
        for xb, yb in DataLoader(x, y, batch_size=64, sampler=sampler).batches(0):
            opt.zero_grad(); loss(m(xb), yb); m.backward(loss.backward()); opt.step()
            steps += 1
        assert steps == 20 and opt.optimizer.state[0]["step"] == 20
        mine = np.concatenate([p.data.ravel() for p in m.parameters()])
        every = np.empty((dist.size(), mine.size), mine.dtype)
        dist._world().Allgather(mine, every)
        assert np.array_equal(every[0], every[1]), "the ranks' parameters differ"
        if dist.rank() == 0:
            nnfast.manual_seed(1)
            ref = nn.Sequential(nn.Linear(12, 16, activation="tanh"), nn.Linear(16, 4))
            o = optim.Adam(ref.parameters(), lr=1e-2)
            for b in range(20):
                o.zero_grad(); loss(ref(x[b * 128:(b + 1) * 128]), y[b * 128:(b + 1) * 128])
                ref.backward(loss.backward()); o.step()
            want = np.concatenate([p.data.ravel() for p in ref.parameters()])
            np.testing.assert_allclose(mine, want, rtol=1e-5, atol=1e-6)
            print("equivalent", dist.allreduce_mean(1.0 + dist.rank()))
        else:
            dist.allreduce_mean(1.0 + dist.rank())
    """), tmp_path)  # fmt: skip
    assert rc == 0, err
    assert out.split() == ["equivalent", "1.5"]


@needs_mpi
def test_fit_distributed_stops_and_resumes_bit_identically(tmp_path):
    """With Dropout: every rank's random streams are saved and restored; with EarlyStopping,
    its best weights go from rank 0's checkpoint to every rank."""
    rc, out, err = _mpirun(_script(tmp_path, """
        import numpy as np, nnfast
        from nnfast import nn, optim, distributed as dist
        from nnfast.callbacks import Callback, Checkpoint, EarlyStopping
        from nnfast.train import fit
        dist.init()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((300, 6)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
        class StopAt(Callback):
            def __init__(self, at): self.at = at
            def on_batch_end(self, state, batch, logs):
                if (state.epoch, batch) == self.at and dist.rank() == 1:
                    state.stop("batch")  # one rank asks: both stop at the same batch
        class Masks(Callback):  # each rank draws its own Dropout masks
            def on_train_begin(self, state):
                if state.epoch_done == 0:
                    st = state.model[1]._rng.bit_generator.state["state"]["state"]
                    every = dist._gather_json(str(st))
                    assert dist.rank() != 0 or every[0] != every[1], every
        def run(ck, stop=None, resume=None):
            nnfast.manual_seed(2)
            m = nn.Sequential(nn.Linear(6, 16, activation="relu"), nn.Dropout(0.3),
                              nn.Linear(16, 3))
            opt = optim.AdamW(m.parameters(), lr=0.01)
            sched = optim.CosineAnnealingLR(opt, T_max=3)
            # the cosine schedule's lr is highest in epoch 1: its weights come back at the end,
            # on the resumed run from the checkpoint (rank 0) through a broadcast (rank 1)
            es = EarlyStopping(monitor="lr", mode="max", patience=5)
            h = fit(m, nn.CrossEntropyLoss(), opt, (x, y), epochs=3, batch_size=16, seed=4,
                    val_split=0.1, scheduler=sched, resume=resume,
                    callbacks=[es, Checkpoint(ck), StopAt(stop), Masks()])
            h.best_epoch = es.best_epoch
            return m, h
        a, ha = run("a.npz")
        _, hb = run("b.npz", stop=(2, 3))
        assert hb.interrupted and hb.stopped_at == (2, 3) and hb.epochs == 1, hb.stopped_at
        b, hb = run("b.npz", resume="b.npz")
        params = np.concatenate([p.data.ravel() for p in b.parameters()])
        every = np.empty((2, params.size), params.dtype)
        dist._world().Allgather(params, every)
        assert np.array_equal(every[0], every[1])
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert np.array_equal(pa.data, pb.data)
        assert ha["loss"] == hb["loss"] and ha["val_accuracy"] == hb["val_accuracy"]
        assert ha.best_epoch == hb.best_epoch == 1
        assert ha.num_batches == 9  # 270 samples, 135 per rank, batch 16
        every = dist._gather_json(len(ha["loss"]))  # one print: ranks' lines could interleave
        if dist.rank() == 0:
            print("ok", *every)
    """), tmp_path)  # fmt: skip
    assert rc == 0, err
    assert out.split() == ["ok", "3", "3"]
    assert sorted(os.listdir(tmp_path)) == ["a.npz", "b.npz", "job.py"]  # rank 0 wrote them


@needs_mpi
def test_cli_distributed_ctrl_c_and_resume(tmp_path):
    data = write_tiny_mnist(tmp_path / "data")
    train = [sys.executable, "-m", "nnfast", "train", "--distributed", "--data-dir", str(data),
             "--hidden", "8", "--batch-size", "4", "--seed", "1", "--checkpoint-dir", "ck",
             "--save", "m.npz", "--quiet"]  # fmt: skip
    p = subprocess.Popen([MPIEXEC, "-n", "2", *train, "--epochs", "500"], cwd=tmp_path, env=ENV,
                         text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)  # fmt: skip
    ckpt = tmp_path / "ck" / "checkpoint.npz"
    # Ctrl-C to mpiexec, which passes it on to the ranks
    out, err = signal_after_checkpoint(p, ckpt, signal.SIGINT)
    assert p.returncode == 130, err
    assert err.count("nnfast: interrupted") == 1 and "--resume" in err  # rank 0 alone says it
    from nnfast.checkpoint import read_checkpoint_state

    state = read_checkpoint_state(ckpt)["fit"]
    assert state["world_size"] == 2 and state["epoch"] >= 1
    more = state["epoch"] + 2
    rc, out, err = _mpirun([*train, "--resume", "--epochs", str(more)], tmp_path)
    assert rc == 0, err
    assert out.count("test accuracy") == 1 and f", {more} epochs)" in out
    assert read_checkpoint_state(ckpt)["fit"]["epoch"] == more


@needs_mpi
def test_a_rank_that_raises_ends_the_job(tmp_path):
    start = time.monotonic()
    rc, out, err = _mpirun(_script(tmp_path, """
        from nnfast import distributed as dist
        dist.init()
        if dist.rank() == 1:
            raise RuntimeError("rank one gave up")
        dist.barrier()  # rank 0 would wait here forever
    """), tmp_path, timeout=60)  # fmt: skip
    assert rc != 0 and "RuntimeError: rank one gave up" in err
    assert time.monotonic() - start < 30


@needs_mpi
@pytest.mark.parametrize(
    "case, error",
    [
        ("mean_sizes", "ValueError: allreduce_mean: rank 1 of 2 gave values of another shape"),
        ("mean_empty", "ValueError: allreduce_mean: rank 1 of 2 gave values of another shape"),
        ("mean_none", "TypeError: allreduce_mean: expected a number or an array, got None"),
        ("broadcast", "ValueError: broadcast_parameters: rank 1 of 2 hold other parameters"),
        ("optimizer", "ValueError: DistributedOptimizer: rank 1 of 2 hold parameters of other"),
    ],
)
def test_ranks_that_disagree_are_refused_on_every_rank(tmp_path, case, error):
    """Each hung a rank in a collective (allreduce_mean of 2 and 1 values, of 0 and 3;
    broadcast_parameters with more parameters on rank 1), mixed values silently (rank 1's
    mean of 2 and 1 values was 2.0; PReLU slopes took BatchNorm's weights) or aborted the
    job inside MPI. Every rank now raises the same error and goes on."""
    rc, out, err = _mpirun([*_script(tmp_path, """
        import sys
        import numpy as np
        from nnfast import nn, optim, distributed as dist
        dist.init()
        case, r = sys.argv[1], dist.rank()
        layers = [nn.Linear(4, 4)] + ([nn.PReLU(4), nn.PReLU(4)] if r else [nn.BatchNorm1d(4)])
        call = {
            "mean_sizes": lambda: dist.allreduce_mean(np.ones(2 - r)),
            "mean_empty": lambda: dist.allreduce_mean(np.ones(3 * (1 - r))),
            "mean_none": lambda: dist.allreduce_mean(None if r else 1.0),
            "broadcast": lambda: dist.broadcast_parameters(nn.Sequential(*layers)),
            "optimizer": lambda: dist.DistributedOptimizer(
                optim.SGD(nn.Linear(4, 4 + r).parameters())),
        }[case]
        try:
            call()
            said = "no error"
        except (TypeError, ValueError) as e:
            said = f"{type(e).__name__}: {e}"
        every = dist._gather_json(said)  # every rank is still in step; one print (no interleaving)
        if r == 0:
            print(*every, sep=chr(10))
    """), case], tmp_path, timeout=60)  # fmt: skip
    assert rc == 0, err
    rank0, rank1 = out.splitlines()
    assert rank1.startswith(error), out
    # None on rank 1 alone: rank 0's 1.0 is refused as another shape
    assert rank0.startswith(error if case != "mean_none" else "ValueError: allreduce_mean"), out


@needs_mpi
@pytest.mark.parametrize("what", ["width", "batch", "precision", "dtype"])
def test_ranks_with_different_models_are_refused(tmp_path, what):
    rc, out, err = _mpirun([*_script(tmp_path, """
        import numpy as np
        from nnfast import nn, optim, distributed as dist
        from nnfast.train import fit
        dist.init()
        import nnfast, sys
        what = sys.argv[1]
        width = 16 if dist.rank() == 0 or what != "width" else 32
        m = nn.Sequential(nn.Linear(4, width), nn.Linear(width, 2))
        x, y = np.zeros((40, 4), np.float32), np.zeros(40, np.int64)
        if what == "precision" and dist.rank() == 1:
            nnfast.set_matmul_precision("bf16")
        if what == "dtype" and dist.rank() == 1:  # the architecture record has no dtype
            m.astype("float64")
        fit(m, nn.CrossEntropyLoss(), optim.SGD(m.parameters()), (x, y), epochs=1,
            batch_size=8 if dist.rank() == 0 or what != "batch" else 4)
        print("trained")
    """), what], tmp_path, timeout=60)  # fmt: skip
    assert rc != 0
    assert "ValueError: distributed: rank 1 of 2 started a different model or run" in err
    assert "trained" not in out


@needs_mpi
def test_threads_per_rank_share_the_affinity_mask(tmp_path):
    env = {k: v for k, v in ENV.items() if k not in ("NNFAST_NUM_THREADS", "OMP_NUM_THREADS")}
    code = """
        import os, nnfast
        from nnfast import distributed as dist
        dist.init()
        mine = [dist.rank(), dist.local_rank(), dist.local_size(), nnfast.get_num_threads(),
                len(os.sched_getaffinity(0))]
        every = dist._gather_json(mine)  # one print: the ranks' lines could interleave
        if dist.rank() == 0:
            for row in every:
                print(*row)
    """
    p = subprocess.run([MPIEXEC, "-n", "2", *_script(tmp_path, code)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    rows = sorted(tuple(map(int, line.split())) for line in p.stdout.splitlines())
    assert [r[:3] for r in rows] == [(0, 0, 2), (1, 1, 2)]
    assert all(threads == max(1, cpus // 2) for *_, threads, cpus in rows)


@needs_mpi
def test_validation_reads_the_saved_models_batchnorm_statistics(tmp_path):
    """Each rank validated with its own running statistics: the history's val_loss was not the
    saved model's (1.001125 against 0.998629 on 3 ranks), and a resumed run, whose ranks all
    take rank 0's, validated differently from the uninterrupted one."""
    rc, out, err = _mpirun(
        _script(
            tmp_path,
            """
        import numpy as np, nnfast
        from nnfast import nn, optim, distributed as dist
        from nnfast.train import evaluate, fit
        dist.init()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((301, 6)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
        nnfast.manual_seed(2)
        m = nn.Sequential(nn.Linear(6, 16, activation="relu"), nn.BatchNorm1d(16), nn.Linear(16, 3))
        h = fit(m, nn.CrossEntropyLoss(), optim.Adam(m.parameters(), lr=0.01), (x, y), epochs=2,
                batch_size=8, seed=4, val=(x[:60], y[:60]))
        stats = np.concatenate([m[1].running_mean, m[1].running_var])
        every = np.empty((dist.size(), stats.size), stats.dtype)
        dist._world().Allgather(stats, every)
        assert np.array_equal(every[0], every[1]), "the ranks' running statistics differ"
        if dist.rank() == 0:
            m.eval()
            ev = evaluate(m, nn.CrossEntropyLoss(), (x[:60], y[:60]))
            assert abs(h["val_loss"][-1] - ev["loss"]) < 1e-6, (h["val_loss"][-1], ev["loss"])
            print("validated with the saved statistics")
    """,
        ),
        tmp_path,
    )
    assert rc == 0, err
    assert "validated with the saved statistics" in out


@needs_mpi
def test_cli_ranks_started_with_other_options_are_refused(tmp_path):
    """Rank 0's configuration was broadcast and ran on every rank, whatever the others were
    given (an MPMD launch: mpiexec -n 1 A : -n 1 B)."""
    data = write_tiny_mnist(tmp_path / "data")
    train = [sys.executable, "-m", "nnfast", "train", "--distributed", "--data-dir", str(data),
             "--batch-size", "4", "--epochs", "1", "--checkpoint-dir", "ck", "--quiet"]  # fmt: skip
    p = subprocess.Popen([MPIEXEC, "-n", "1", *train, "--hidden", "8", ":", "-n", "1", *train,
                          "--hidden", "16", "--threads", "1"], cwd=tmp_path, env=ENV, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)  # fmt: skip
    try:
        out, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("mpiexec did not finish (a rank waited for the other)")
    assert p.returncode != 0
    assert "rank 1 of 2: started with other options than rank 0" in err
    assert not (tmp_path / "ck").exists()
    rc, out, err = _mpirun([*train, "--hidden", "8"], tmp_path)  # the same, --threads aside
    assert rc == 0, err
