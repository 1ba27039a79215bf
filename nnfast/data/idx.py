"""IDX files (the MNIST format): read and write, plain or gzip-compressed, with validation.

Layout: two zero bytes, a type code, the number of dimensions ``ndim``; then ``ndim`` big-endian
uint32 sizes; then the payload, ``prod(sizes)`` big-endian items, C order, and nothing after it.

    type code   0x08   0x09  0x0B   0x0C   0x0D     0x0E
    dtype       uint8  int8  int16  int32  float32  float64

Compression is detected from the content (gzip starts with 1f 8b, IDX with 00 00), so a file
that was gunzipped but kept its ``.gz`` name, or the reverse, still reads. Writing compresses
when the name ends in ``.gz``.
"""

import gzip
import math
import os
import struct
import zlib

import numpy as np

from .. import _validate
from .._atomic import atomic_write

__all__ = ["IDX_DTYPES", "IDXError", "read_idx", "write_idx"]

# type code -> big-endian dtype of the payload
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 22  # 4 MiB: gzip payloads are read in chunks, so a corrupt header claiming
# terabytes fails with "truncated" after reading what the file holds, not with a MemoryError


class IDXError(ValueError):
    """A file is not a valid IDX file; the message names the file and what is wrong."""


def _fail(path, what):
    raise IDXError(f"{os.fspath(path)}: {what}")


def _read_exact(f, n):
    """Read up to n bytes (fewer only at end of stream)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(n - len(buf), _CHUNK))
        if not chunk:
            break
        buf += chunk
    return buf


def _parse_header(path, head4, f):
    """Check the magic and type code, read the sizes; return (dtype, shape, header length)."""
    if len(head4) < 4:
        _fail(path, f"truncated header: {len(head4)} bytes, an IDX header needs at least 4")
    if head4[0] != 0 or head4[1] != 0:
        _fail(path, f"wrong magic: starts with {bytes(head4[:2]).hex()}, an IDX file with 0000")
    code, ndim = head4[2], head4[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        _fail(path, f"unknown type code 0x{code:02X} (known: {known})")
    dims = _read_exact(f, 4 * ndim)
    if len(dims) < 4 * ndim:
        _fail(path, f"truncated header: {ndim} dimensions announced, {len(dims) // 4} present")
    shape = struct.unpack(f">{ndim}I", dims)
    return IDX_DTYPES[code], shape, 4 + 4 * ndim


def _payload_size(shape, dtype):
    return math.prod(shape) * dtype.itemsize  # Python ints: no overflow on a corrupt header


def _to_array(path, buf, dtype, shape):
    try:
        arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
    except ValueError as err:  # over 64 dimensions, or sizes beside a 0 too big for numpy
        what = f"shape {shape}" if len(shape) <= 8 else f"{len(shape)}-dimensional shape"
        _fail(path, f"the header's {what} cannot be a numpy array ({err})")
    if dtype.byteorder == ">":  # to native order (a copy); uint8/int8 stay a view of buf
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def _read_plain(path, f):
    size = os.fstat(f.fileno()).st_size
    dtype, shape, header = _parse_header(path, f.read(4), f)
    want = _payload_size(shape, dtype)
    have = size - header
    if have < want:
        _fail(path, f"truncated payload: shape {shape} needs {want} bytes, file has {have}")
    if have > want:
        _fail(path, f"{have - want} trailing bytes after the payload of shape {shape}")
    buf = bytearray(want)
    if f.readinto(buf) != want:
        _fail(path, "file changed while being read")
    return _to_array(path, buf, dtype, shape)


def _read_gzip(path, f):
    try:
        with gzip.GzipFile(fileobj=f, mode="rb") as g:
            dtype, shape, _ = _parse_header(path, g.read(4), g)
            want = _payload_size(shape, dtype)
            buf = _read_exact(g, want)
            if len(buf) < want:
                _fail(
                    path,
                    f"truncated payload: shape {shape} needs {want} bytes, "
                    f"the decompressed file has {len(buf)}",
                )
            extra = len(_read_exact(g, _CHUNK))  # also reaches the gzip CRC check
            if extra:
                more = "or more " if extra == _CHUNK else ""
                _fail(path, f"{extra} {more}trailing bytes after the payload of shape {shape}")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        what = "truncated gzip stream" if isinstance(e, EOFError) else "corrupt gzip data"
        raise IDXError(f"{os.fspath(path)}: {what} ({e})") from e
    return _to_array(path, buf, dtype, shape)


def read_idx(path):
    """Read an IDX file, plain or gzip-compressed.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    numpy.ndarray
        Shape and dtype from the header (uint8, int8, int16, int32, float32 or float64), native
        byte order, C-contiguous, writeable.

    Raises
    ------
    IDXError (a ValueError)
        Wrong magic, unknown type code, truncated header or payload, trailing bytes, corrupt or
        truncated gzip data, a shape numpy cannot hold. The message names the file.
    OSError
        The file cannot be opened.
    """
    with open(path, "rb") as f:
        if f.read(2) == _GZIP_MAGIC:
            f.seek(0)
            return _read_gzip(path, f)
        f.seek(0)
        return _read_plain(path, f)


def write_idx(path, array, *, compresslevel=6):
    """Write ``array`` as an IDX file, atomically (temporary file beside it, then rename).

    Parameters
    ----------
    path : str or os.PathLike
        Gzip-compressed if the name ends in ``.gz``.
    array : array_like
        dtype uint8, int8, int16, int32, float32 or float64 (any byte order), at most 255
        dimensions, each below 2**32.
    compresslevel : int
        gzip level for ``.gz`` names (6: gzip's default; 9 is much slower for little gain).

    Raises
    ------
    ValueError
        The dtype or shape cannot be stored in IDX, or compresslevel is not 0..9.
    """
    compresslevel = _validate.integer(compresslevel, "compresslevel", "write_idx", low=0, high=9)
    arr = np.asarray(array)
    code = _CODE_OF.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(
            f"write_idx: IDX cannot store dtype {arr.dtype}; convert to one of uint8, int8, "
            f"int16, int32, float32, float64"
        )
    if arr.ndim > 255 or any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"write_idx: IDX cannot store shape {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = np.ascontiguousarray(arr, dtype=IDX_DTYPES[code])
    with atomic_write(path) as f:
        if os.fspath(path).endswith(".gz"):
            # mtime=0 and no file name in the header: the same array gives the same bytes
            with gzip.GzipFile(
                filename="", fileobj=f, mode="wb", compresslevel=compresslevel, mtime=0
            ) as g:
                g.write(header)
                g.write(payload.reshape(-1).view(np.uint8))
        else:
            f.write(header)
            f.write(payload.reshape(-1).view(np.uint8))
