"""Atomic file writes: write a temporary file beside the target, then rename it into place (a
leaf: no nnfast imports; used by io, checkpoints, data sets and the CLI).

- A reader never sees a half-written file, and a failed write (an exception, a checksum that
  does not match) leaves nothing behind.
- A writer killed mid-write (SIGKILL, power loss) leaves its temporary file; the next write to
  the same path removes it. Each writer holds an advisory lock (``flock``) on its temporary
  file, so only files whose writer is gone are removed, never a concurrent writer's.
- Overwriting keeps the existing file's permission bits; a new file gets 0o666 less the umask,
  as a plain ``open(path, "wb")`` would.
- A symbolic link is written through: its target is replaced, the link stays.
- Only a regular file is replaced: a device, FIFO or socket at ``path`` is refused (renaming
  over /dev/null, say, would replace the device node with a file).
- The temporary name stays within the file-name length limit whatever the target's name.
- Errors name the file the caller asked for, not the hidden temporary one (a full disk too).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import secrets
import stat

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so stale temporary files are left alone
    fcntl = None

#: Bytes of the target's name kept in a temporary name (file names are at most 255 bytes).
_NAME_KEEP = 160


def _temp_prefix(path: str) -> str:
    """``<dir>/.<name, shortened>.<hash of the name>.``: unique per target, never too long."""
    directory, base = os.path.split(path)
    short = base
    while len(os.fsencode(short)) > _NAME_KEEP:
        short = short[:-1]
    digest = hashlib.sha256(os.fsencode(base)).hexdigest()[:12]
    return os.path.join(directory, f".{short}.{digest}.")


def _remove_stale(prefix: str) -> None:
    """Remove the temporary files of earlier writers of this target that are gone."""
    if fcntl is None:
        return
    for tmp in glob.glob(glob.escape(prefix) + "*.tmp"):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while its writer lives
        except OSError:
            os.close(fd)
            continue
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        os.close(fd)


def _named(err: OSError, path: str) -> OSError:
    """``err`` with ``path`` as its file name (same type and errno)."""
    return type(err)(err.errno, err.strerror or str(err), path)


@contextlib.contextmanager
def atomic_write(path):
    """Context manager yielding a binary file object; on success it replaces ``path``.

    If the ``with`` body raises, the temporary file is removed and ``path`` is left untouched;
    raising is how a caller abandons a write (e.g. on a checksum mismatch).
    """
    path = os.fspath(path)
    if os.path.islink(path):
        path = os.path.realpath(path)  # write through the link: replace its target
    path = os.path.abspath(path)
    try:
        st = os.stat(path)
    except OSError:
        st = None  # a new file: 0o666 less the umask
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise FileExistsError(errno.EEXIST, f"exists and is {kind}; only files are replaced",
                              path)  # fmt: skip
    mode = None if st is None else stat.S_IMODE(st.st_mode)
    prefix = _temp_prefix(path)
    try:
        _remove_stale(prefix)
        while True:
            tmp = f"{prefix}{secrets.token_hex(6)}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            fd = os.open(tmp, flags, 0o666)
            if fcntl is None:
                break
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink:  # not removed as stale between open and lock
                break
            os.close(fd)
    except OSError as err:  # name the file the caller asked for, not the hidden temporary one
        raise _named(err, path) from None
    try:
        if mode is not None and hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            if fcntl is not None:  # renamed while still locked: never taken for stale
                os.replace(tmp, path)
        if fcntl is None:
            os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.filename in (None, tmp):
            raise _named(err, path) from None  # a full disk: which file could not be written
        raise
