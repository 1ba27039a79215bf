"""Atomic writes stay atomic and tidy: stale temporary files of killed writers, file modes,
symbolic links, long names and full disks."""

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from nnfast import io as nio
from nnfast import models
from nnfast._atomic import atomic_write

posix = pytest.mark.skipif(os.name != "posix", reason="POSIX signals, modes and flock")


def _killed_writer(path, sig):
    """Start a process that writes ``path`` through atomic_write and stops mid-write; kill it
    with ``sig``. Returns once it is dead, its temporary file left behind."""
    code = textwrap.dedent(f"""
        import sys, time
        from nnfast._atomic import atomic_write
        with atomic_write({str(path)!r}) as f:
            f.write(b"x" * 1000)
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"writing\n"
    proc.send_signal(sig)
    proc.wait(timeout=30)


@posix
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path, sig):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")
    _killed_writer(path, sig)
    left = [p.name for p in tmp_path.iterdir() if p.name != "model.npz"]
    assert len(left) == 1 and left[0].endswith(".tmp")
    assert path.read_bytes() == b"old"
    other = tmp_path / "other.npz"  # another target's writes leave it alone
    with atomic_write(other) as f:
        f.write(b"o")
    assert (tmp_path / left[0]).exists()
    with atomic_write(path) as f:
        f.write(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "other.npz"]
    assert path.read_bytes() == b"new"


@posix
def test_a_live_writers_temporary_file_is_kept(tmp_path):
    path = tmp_path / "f.bin"
    with atomic_write(path) as outer:
        outer.write(b"outer")
        with atomic_write(path) as inner:  # a second writer meanwhile: must not remove ours
            inner.write(b"inner")
    assert path.read_bytes() == b"outer"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@posix
def test_overwriting_keeps_the_mode(tmp_path):
    path = tmp_path / "secret.npz"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    nio.save(models.mlp(hidden=(4,)), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o640)
    nio.save(models.mlp(hidden=(4,)), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


@posix
def test_a_symlink_is_written_through(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "model.npz"
    target.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    nio.save(models.mlp(hidden=(4,)), link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert nio.load(link).parameter_count() == nio.load(target).parameter_count()
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["model.npz"]


def test_a_name_at_the_length_limit_can_be_written(tmp_path):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    path = tmp_path / ("m" * (limit - 4) + ".npz")
    nio.save(models.mlp(hidden=(4,)), path)
    assert nio.load(path).parameter_count() > 0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left") as info:
        nio.save(models.mlp(hidden=(4,)), path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_only_a_regular_file_is_replaced(tmp_path):
    """A FIFO (or /dev/null, /dev/full) was replaced by a regular file, as root a device node
    too; a directory raised from os.replace. Each is refused before anything is written."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(fifo)
    for target in (fifo, link):
        with pytest.raises(FileExistsError, match="exists and is not a regular file") as err:
            with atomic_write(target) as f:
                f.write(b"x")
        assert err.value.filename == str(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    (tmp_path / "d").mkdir()
    with pytest.raises(FileExistsError, match="exists and is a directory"):
        with atomic_write(tmp_path / "d") as f:
            f.write(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "fifo", "link"]
