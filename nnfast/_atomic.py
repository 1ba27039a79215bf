"""Atomic file writes: write a temporary file beside the target, then rename it into place.

A reader never sees a half-written file, and a failed write (an exception, a checksum that does
not match) leaves nothing behind. The temporary file is created with mode 0o666 so the umask
applies, as it would to a plain ``open(path, "wb")``.
"""

import contextlib
import os
import secrets


@contextlib.contextmanager
def atomic_write(path):
    """Context manager yielding a binary file object; on success it replaces ``path``.

    If the ``with`` body raises, the temporary file is removed and ``path`` is left untouched;
    raising is how a caller abandons a write (e.g. on a checksum mismatch).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as err:  # name the file the caller asked for, not the hidden temporary one
        raise type(err)(err.errno, err.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
