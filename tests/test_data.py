"""nnfast.data: IDX round trips and every corrupt-file case; MNIST-style lookup, download
(against a local HTTP server: mirrors, checksums, cache) and loading; the batch iterator."""

import gzip
import hashlib
import http.server
import os
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from nnfast._atomic import atomic_write
from nnfast.data import (
    DATASETS,
    MNIST,
    DataLoader,
    DownloadError,
    FashionMNIST,
    IDXError,
    cache_dir,
    load_dataset,
    read_idx,
    write_idx,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test reads or writes the user's cache or $NNFAST_DATA."""
    monkeypatch.delenv("NNFAST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def md5(data):
    return hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 5, 4), (2, 0, 3), (1, 1, 1, 2)])
def test_idx_round_trip(tmp_path, dtype, suffix, shape):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    a = rng.uniform(info.min / 2, info.max / 2, size=shape).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == shape and b.flags.c_contiguous and b.flags.writeable
    np.testing.assert_array_equal(a, b)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_idx_bytes_are_big_endian_and_exact(tmp_path):
    a = np.array([[1, -2, 3], [256, 0, -32768]], dtype="<i2")
    write_idx(tmp_path / "a.idx", a)
    raw = (tmp_path / "a.idx").read_bytes()
    assert raw == bytes([0, 0, 0x0B, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + a.astype(">i2").tobytes()
    # a big-endian input array is written the same way
    write_idx(tmp_path / "b.idx", a.astype(">i2"))
    assert (tmp_path / "b.idx").read_bytes() == raw
    # .gz is plain gzip of the same bytes, and the same array gives the same file
    write_idx(tmp_path / "a.idx.gz", a)
    gz = (tmp_path / "a.idx.gz").read_bytes()
    assert gzip.decompress(gz) == raw
    write_idx(tmp_path / "a.idx.gz", a)
    assert (tmp_path / "a.idx.gz").read_bytes() == gz


def test_idx_compression_is_detected_from_content(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "a.idx", a)
    write_idx(tmp_path / "b.idx.gz", a)
    os.rename(tmp_path / "a.idx", tmp_path / "plain-named.gz")
    os.rename(tmp_path / "b.idx.gz", tmp_path / "gzip-named.idx")
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-named.gz"), a)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "gzip-named.idx")), a)


def test_idx_scalar(tmp_path):
    write_idx(tmp_path / "s.idx", np.float64(2.5))
    s = read_idx(tmp_path / "s.idx")
    assert s.shape == () and s == 2.5


def _valid_idx():
    header = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3])
    return header, bytes(range(6))


def _corrupt_cases():
    header, payload = _valid_idx()
    return {
        "empty": (b"", "truncated header"),
        "short magic": (b"\x00\x00\x08", "truncated header"),
        "missing dims": (header[:8], "truncated header"),
        "truncated payload": (header + payload[:5], "truncated payload"),
        "no payload": (header, "truncated payload"),
        "trailing bytes": (header + payload + b"\x00", "trailing bytes"),
        "wrong magic": (b"\x01\x00" + header[2:] + payload, "wrong magic"),
        "text file": (b"hello, world\n", "wrong magic"),
        "bad type code": (header[:2] + b"\x0a" + header[3:] + payload, "type code 0x0A"),
        "int64 type code": (header[:2] + b"\x0f" + header[3:] + payload, "type code 0x0F"),
    }


def _unholdable_headers():
    def header(code, dims):
        return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)

    return {
        "65 dimensions": (header(0x08, [1] * 65) + b"\x07", "65-dimensional shape"),
        "255 dimensions": (header(0x08, [1] * 255) + b"\x07", "255-dimensional shape"),
        "a 0 beside huge sizes": (header(0x08, [0, 2**32 - 1, 2**32 - 1]), "too big"),
    }


def _bad_idx_cases():
    return {**_corrupt_cases(), **_unholdable_headers()}


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("case", list(_bad_idx_cases()))
def test_idx_corrupt_files(tmp_path, case, compressed):
    data, what = _bad_idx_cases()[case]
    path = tmp_path / ("bad.idx.gz" if compressed else "bad.idx")
    path.write_bytes(gzip.compress(data) if compressed else data)
    with pytest.raises(IDXError, match=what) as e:
        read_idx(path)
    assert isinstance(e.value, ValueError)
    assert str(e.value).startswith(f"{path}: ")


def test_idx_huge_dims_in_corrupt_header_fail_cleanly(tmp_path):
    header = bytes([0, 0, 0x0E, 3]) + b"\xff\xff\xff\xff" * 3  # 2**96 * 8 bytes claimed
    for name, data in (("h.idx", header + b"x" * 10), ("h.idx.gz", gzip.compress(header))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(IDXError, match="truncated payload"):
            read_idx(tmp_path / name)


def _gzip_cases():
    header, payload = _valid_idx()
    good = gzip.compress(header + payload)
    flipped = bytearray(good)
    flipped[-8] ^= 0xFF  # CRC32 in the trailer
    body = bytearray(good)
    body[12] ^= 0xFF  # inside the deflate stream
    return {
        "truncated stream": (good[:-10], "truncated gzip"),
        "crc mismatch": (bytes(flipped), "corrupt gzip"),
        "corrupt deflate data": (bytes(body), "gzip"),
        "gzip magic then garbage": (b"\x1f\x8b" + b"\x00" * 30, "gzip"),
        "gzip magic only": (b"\x1f\x8b", "gzip"),
        "garbage after the stream": (good + b"garbage!", "gzip"),
    }


@pytest.mark.parametrize("case", list(_gzip_cases()))
def test_idx_bad_gzip(tmp_path, case):
    data, what = _gzip_cases()[case]
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(data)
    with pytest.raises(IDXError, match=what) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_idx_missing_file_is_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.idx")


@pytest.mark.parametrize("bad", [np.arange(3, dtype=np.int64), np.ones(3, bool), np.ones(2, "c8")])
def test_write_idx_rejects_unstorable_dtypes(tmp_path, bad):
    path = tmp_path / "a.idx"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match=f"dtype {bad.dtype}"):
        write_idx(path, bad)
    assert path.read_bytes() == b"old"
    assert len(list(tmp_path.iterdir())) == 1


def test_atomic_write_failure_leaves_target_untouched(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write(b"half")
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_atomic_write_into_a_missing_directory_names_the_target(tmp_path):
    path = tmp_path / "nodir" / "f.bin"
    with pytest.raises(FileNotFoundError) as e, atomic_write(path):
        pass
    assert e.value.filename == str(path) and ".tmp" not in str(e.value)


# ---------------------------------------------------------------------------------------------
# Data sets: a tiny MNIST served by a local HTTP server

N_TRAIN, N_TEST = 6, 4


def tiny_arrays():
    rng = np.random.default_rng(7)
    return {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": np.array([0, 1, 2, 3, 9, 5], np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.array([7, 2, 1, 0], np.uint8),
    }


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """name -> bytes of the four tiny .gz files, as a publisher would serve them."""
    d = tmp_path_factory.mktemp("published")
    out = {}
    for name, arr in tiny_arrays().items():
        write_idx(d / name, arr)
        out[name] = (d / name).read_bytes()
    return out


@pytest.fixture
def tiny(tiny_files):
    """An MNIST subclass whose published md5s are those of the tiny files."""

    class TinyMNIST(MNIST):
        name = "tiny-mnist"
        resources = {n: md5(b) for n, b in tiny_files.items()}  # noqa: RUF012
        mirrors = ()

    return TinyMNIST


class Server:
    """http.server on 127.0.0.1, an ephemeral port, in a thread; counts the requests."""

    def __init__(self, files):
        self.files = dict(files)  # URL path -> bytes
        self.requests = []
        self.trickle = threading.Event()  # set: paths under /trickle/ are sent a byte at a time
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                # /cut/: a Content-Length past the end; /silent/: headers, then nothing;
                # /trickle/: a byte every 20 ms (both until the client leaves)
                cut = 100 if self.path.startswith("/cut/") else 0
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + cut))
                self.end_headers()
                if self.path.startswith("/silent/"):
                    server.trickle.wait(10)
                    return
                if not self.path.startswith("/trickle/"):
                    self.wfile.write(body)
                    return
                for i in range(len(body)):
                    if server.trickle.wait(0.02):
                        return
                    try:
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, prefix):
        return f"http://127.0.0.1:{self.httpd.server_port}/{prefix}/"

    def close(self):
        self.trickle.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tiny_files):
    s = Server({f"/good/{n}": b for n, b in tiny_files.items()})
    yield s
    s.close()


@pytest.fixture
def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def test_download_into_cache_then_load(tiny, server, tmp_path):
    ds = tiny(train=True, mirrors=[server.url("good")], timeout=5)
    cache = tmp_path / "xdg-cache" / "nnfast" / "tiny-mnist"
    assert cache_dir("tiny-mnist") == cache
    # all four are fetched, so the test split needs no network later
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)
    assert sorted(server.requests) == sorted(f"/good/{n}" for n in FILES)
    arrays = tiny_arrays()
    np.testing.assert_array_equal(ds.raw_data, arrays["train-images-idx3-ubyte.gz"])
    assert ds.targets.dtype == np.int64 and ds.targets.tolist() == [0, 1, 2, 3, 9, 5]
    assert ds.data.dtype == np.float32 and ds.data.shape == (N_TRAIN, 28, 28)
    want = (arrays["train-images-idx3-ubyte.gz"] / 255.0 - MNIST.mean) / MNIST.std
    np.testing.assert_allclose(ds.data, want, rtol=1e-5, atol=1e-5)
    assert len(ds) == N_TRAIN and ds[2][1] == 2 and ds.files[0].parent == cache


def test_cached_files_are_not_fetched_again(tiny, server):
    tiny(train=True, mirrors=[server.url("good")], timeout=5)
    n = len(server.requests)
    test = tiny(train=False, mirrors=[server.url("good")], timeout=5)
    tiny(train=True, mirrors=[server.url("good")], timeout=5)
    assert len(server.requests) == n == 4
    assert test.targets.tolist() == [7, 2, 1, 0]


def test_download_into_root_when_given(tiny, server, tmp_path):
    """Into root/<dataset>, not root: another data set of the same file names (Fashion-MNIST
    after MNIST) found the first one's files there and loaded them as its own."""
    root = tmp_path / "my-data"
    tiny(root, train=False, mirrors=[server.url("good")], timeout=5)
    assert sorted(p.name for p in (root / tiny.name).iterdir()) == sorted(FILES)
    assert not (tmp_path / "xdg-cache").exists()

    class Other(tiny):
        name = "other-tiny"

    with pytest.raises(FileNotFoundError, match="not found"):
        Other(root, train=False, download=False)


def test_root_with_a_tilde_is_the_home_directory(tiny, server, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    ds = tiny("~/data", train=False, mirrors=[server.url("good")], timeout=5)
    assert ds.files[0].parent == tmp_path / "home" / "data" / tiny.name
    assert not (tmp_path / "~").exists()


def _serve_as(server, tiny_files, prefix, name, tiny):
    """A fresh data set (nothing cached) whose only mirror is server's /prefix/."""
    for n, b in tiny_files.items():
        server.files[f"/{prefix}/{n}"] = b * 10 if prefix == "trickle" else b

    class Fresh(tiny):
        pass

    Fresh.name = name
    return Fresh


def test_a_stalled_mirror_hands_over_to_the_next(tiny, server, tiny_files):
    """A byte every 20 ms beat the per-read timeout for ever; a mirror that sends less than
    STALL_BYTES in any timeout span has stalled, and the next one is tried."""
    fresh = _serve_as(server, tiny_files, "trickle", "tiny-trickle", tiny)
    ds = fresh(train=True, mirrors=[server.url("trickle"), server.url("good")], timeout=0.3)
    assert ds.targets.tolist() == [0, 1, 2, 3, 9, 5]
    alone = _serve_as(server, tiny_files, "trickle", "tiny-trickle-alone", tiny)
    with pytest.raises(DownloadError, match=r"/trickle/\S+: stalled: \d+ bytes in the last 0.3 s"):
        alone(train=False, mirrors=[server.url("trickle")], timeout=0.3)


@pytest.mark.parametrize(
    "prefix, what",
    [("silent", r"timed out after 0 bytes"), ("cut", r"(incomplete download|IncompleteRead)")],
)
def test_a_mirror_error_names_the_mirror_not_the_file(tiny, server, tiny_files, prefix, what):
    """A mirror that went quiet after its headers was reported against the local file
    ('... timed out: /path/t10k-images-idx3-ubyte.gz'), which reads as a disk problem."""
    fresh = _serve_as(server, tiny_files, prefix, f"tiny-{prefix}", tiny)
    with pytest.raises(DownloadError) as e:
        fresh(train=False, mirrors=[server.url(prefix)], timeout=0.3)
    line = next(x for x in str(e.value).splitlines() if f"/{prefix}/" in x)
    assert re.search(what, line), line
    assert str(cache_dir(fresh.name)) not in line


def test_checksum_mismatch_leaves_nothing_behind(tiny, server, tiny_files):
    name = "train-labels-idx1-ubyte.gz"
    server.files[f"/bad/{name}"] = gzip.compress(b"not what was published")
    for other in FILES:
        if other != name:
            server.files[f"/bad/{other}"] = tiny_files[other]
    with pytest.raises(DownloadError, match="checksum mismatch") as e:
        tiny(train=True, mirrors=[server.url("bad")], timeout=5)
    assert name in str(e.value) and tiny.resources[name] in str(e.value)
    cache = cache_dir("tiny-mnist")
    assert name not in os.listdir(cache)
    assert not [p for p in os.listdir(cache) if p.startswith(".")]  # no temporary file


def test_failing_mirrors_fall_through_to_the_next(tiny, server, closed_port_url, tiny_files):
    name = "train-images-idx3-ubyte.gz"
    server.files[f"/corrupt/{name}"] = tiny_files[name][:-5]  # a cut-off copy: md5 differs
    mirrors = [closed_port_url, server.url("missing"), server.url("corrupt"), server.url("good")]
    ds = tiny(train=True, mirrors=mirrors, timeout=5)
    assert len(ds) == N_TRAIN
    assert f"/missing/{name}" in server.requests  # 404 there, then the next mirror
    assert f"/corrupt/{name}" in server.requests
    assert sorted(r for r in server.requests if r.startswith("/good/")) == sorted(
        f"/good/{n}" for n in FILES
    )


def test_offline_error_says_which_files_to_put_where(tiny, closed_port_url):
    with pytest.raises(DownloadError) as e:
        tiny(train=True, mirrors=[closed_port_url], timeout=5)
    msg = str(e.value)
    assert isinstance(e.value, OSError)
    assert "Put these four files" in msg
    for name in FILES:
        assert name in msg and tiny.resources[name] in msg
    assert str(cache_dir("tiny-mnist")) in msg
    assert closed_port_url in msg


@pytest.mark.parametrize(
    "kw, err, what",
    [
        ({"mirrors": "http://127.0.0.1:9/"}, TypeError, "mirrors must be a list of base URLs"),
        ({"mirrors": 5}, TypeError, "mirrors must be a list of base URLs"),
        ({"mirrors": [None]}, TypeError, r"mirrors must be base URLs \(str\)"),
        ({"timeout": None}, TypeError, "timeout must be a real number"),
        ({"timeout": "1"}, TypeError, "timeout must be a real number"),
        ({"timeout": 0}, ValueError, "timeout must be finite and > 0"),
    ],
)
def test_bad_mirrors_and_timeouts_are_named(tiny, tmp_path, kw, err, what):
    """A string's characters were tried as mirrors; timeout=None waited for ever on a server
    that accepted and never answered."""
    with pytest.raises(err, match=f"TinyMNIST: {what}"):
        tiny(tmp_path, **kw)


def test_a_root_that_is_a_file_is_named(tiny, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"TinyMNIST: root .*f is not a directory"):
        tiny(tmp_path / "f")


def test_images_and_labels_come_from_one_directory(tiny, tmp_path, monkeypatch):
    """Fashion-MNIST's test images in --data-dir were paired with MNIST's labels elsewhere."""
    arrays = tiny_arrays()
    (tmp_path / "root").mkdir()
    (tmp_path / "env" / "tiny-mnist").mkdir(parents=True)
    write_idx(tmp_path / "root" / "t10k-images-idx3-ubyte.gz", arrays["t10k-images-idx3-ubyte.gz"])
    write_idx(tmp_path / "env" / "tiny-mnist" / "t10k-labels-idx1-ubyte.gz",
              arrays["t10k-labels-idx1-ubyte.gz"])  # fmt: skip
    monkeypatch.setenv("NNFAST_DATA", str(tmp_path / "env"))
    for download in (True, False):
        with pytest.raises(FileNotFoundError, match="must be in one directory; found t10k-images"):
            tiny(tmp_path / "root", train=False, download=download)
    # both in one of the directories searched: that pair, whichever came first alone
    write_idx(tmp_path / "env" / "tiny-mnist" / "t10k-images-idx3-ubyte.gz",
              arrays["t10k-images-idx3-ubyte.gz"])  # fmt: skip
    ds = tiny(tmp_path / "root", train=False, download=False)
    assert {p.parent for p in ds.files} == {tmp_path / "env" / "tiny-mnist"}


def test_an_empty_split_is_refused(tiny, tmp_path):
    """An empty test set trained, then failed on 'float division by zero' before saving."""
    d = tmp_path / "d"
    d.mkdir()
    write_idx(d / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28), np.uint8))
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz holds no images"):
        tiny(d, train=False, download=False)


def test_a_download_directory_that_cannot_be_made_says_where_to_put_files(tiny, tmp_path):
    """An unwritable cache gave a bare '[Errno 1] Operation not permitted'. (A file in the
    way stands in for permissions, which root, running the tests in CI, does not lack.)"""
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        DownloadError, match=r"cannot create .*file/sub/tiny-mnist to download into"
    ) as e:
        tiny(tmp_path / "file" / "sub", train=False)
    assert "Put these four files" in str(e.value)


def test_download_false_missing_files(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\.gz") as e:
        tiny(tmp_path / "empty", train=False, download=False)
    assert str(tmp_path / "empty") in str(e.value)
    assert not (tmp_path / "empty").exists()


def put(directory, arrays=None, compressed=True, compresslevel=6):
    directory.mkdir(parents=True, exist_ok=True)
    for name, arr in (arrays or tiny_arrays()).items():
        write_idx(directory / (name if compressed else name[:-3]), arr, compresslevel=compresslevel)
    return directory


def test_lookup_order_root_then_env_then_cache(tiny, tmp_path, monkeypatch):
    def labelled(first):
        arrays = tiny_arrays()
        arrays["train-labels-idx1-ubyte.gz"] = arrays["train-labels-idx1-ubyte.gz"].copy()
        arrays["train-labels-idx1-ubyte.gz"][0] = first
        return arrays

    put(cache_dir("tiny-mnist"), labelled(1))
    assert tiny(download=False).targets[0] == 1
    monkeypatch.setenv("NNFAST_DATA", str(tmp_path / "env"))
    put(tmp_path / "env" / "tiny-mnist", labelled(2))
    assert tiny(download=False).targets[0] == 2
    put(tmp_path / "root" / "tiny-mnist", labelled(3))  # root/<name>
    assert tiny(tmp_path / "root", download=False).targets[0] == 3
    put(tmp_path / "root", labelled(4))  # root itself comes first
    assert tiny(tmp_path / "root", download=False).targets[0] == 4


def test_home_cache_without_xdg(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("tiny-mnist") == tmp_path / "home" / ".cache" / "nnfast" / "tiny-mnist"
    put(cache_dir("tiny-mnist"))
    assert len(tiny(train=False, download=False)) == N_TEST


def test_local_files_recompressed_or_uncompressed_are_accepted(tiny, tmp_path, tiny_files):
    # Debian recompressed Fashion-MNIST: the .gz md5s differ from the published ones, the
    # payloads do not. Local files are checked as IDX, not by the md5 of their bytes.
    d = put(tmp_path / "recompressed", compresslevel=1)
    assert md5((d / FILES[0]).read_bytes()) != tiny.resources[FILES[0]]
    assert len(tiny(d, download=False)) == N_TRAIN
    d = put(tmp_path / "gunzipped", compressed=False)
    ds = tiny(d, train=False, download=False, dtype="uint8")
    np.testing.assert_array_equal(ds.data, tiny_arrays()["t10k-images-idx3-ubyte.gz"])


@pytest.mark.parametrize(
    "name, arr, what",
    [
        ("train-images-idx3-ubyte.gz", np.zeros((6, 28, 27), np.uint8), r"\(N, 28, 28\)"),
        ("train-images-idx3-ubyte.gz", np.zeros((6, 28, 28), np.float32), "float32"),
        ("train-labels-idx1-ubyte.gz", np.zeros((6, 1), np.uint8), r"shape \(N,\)"),
        ("train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8), "6 images but"),
        ("train-labels-idx1-ubyte.gz", np.full(6, 10, np.uint8), "label 10 out of range"),
    ],
)
def test_local_files_of_the_wrong_shape(tiny, tmp_path, name, arr, what):
    arrays = tiny_arrays()
    arrays[name] = arr
    put(tmp_path, arrays)
    with pytest.raises(ValueError, match=what) as e:
        tiny(tmp_path, download=False)
    assert str(tmp_path) in str(e.value)


def test_corrupt_local_file_names_it(tiny, tmp_path):
    put(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IDXError, match="truncated gzip") as e:
        tiny(tmp_path, download=False)
    assert str(path) in str(e.value)


def test_dtypes_and_normalisation(tiny, tmp_path):
    put(tmp_path)
    raw = tiny_arrays()["train-images-idx3-ubyte.gz"]
    u8 = tiny(tmp_path, dtype="uint8", download=False)
    assert u8.data.dtype == np.uint8 and u8.data is u8.raw_data
    unit = tiny(tmp_path, dtype=np.float64, normalize=False, download=False)
    assert unit.data.dtype == np.float64
    np.testing.assert_allclose(unit.data, raw / 255.0)
    batch = u8.transform(raw[:2])  # per batch, as DataLoader(transform=...) uses it
    np.testing.assert_allclose(batch, (raw[:2] / 255.0 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="dtype"):
        tiny(tmp_path, dtype="int32", download=False)


def test_registry_and_class_names():
    assert DATASETS == {"mnist": MNIST, "fashion-mnist": FashionMNIST}
    assert FashionMNIST.classes[0] == "T-shirt/top" and FashionMNIST.classes[9] == "Ankle boot"
    assert len(MNIST.classes) == 10
    for cls in DATASETS.values():
        assert sorted(cls.resources) == sorted(FILES)
        assert all(m.startswith(("https://", "http://")) for m in cls.mirrors)
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("cifar10")


def test_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, nnfast.data; "
        "print(sorted(m for m in ('urllib.request', 'http.client', 'ssl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "[]", out.stderr


# ---------------------------------------------------------------------------------------------
# The real data sets, where they are (never downloaded by the tests)


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="no local MNIST")
def test_real_mnist():
    (x, y), (xt, yt) = load_dataset("mnist", SHARED / "mnist", download=False, dtype="uint8")
    assert x.shape == (60000, 28, 28) and y.shape == (60000,) and x.dtype == np.uint8
    assert xt.shape == (10000, 28, 28) and yt.shape == (10000,) and yt.dtype == np.int64
    assert y.min() == 0 and y.max() == 9 and yt.min() == 0 and yt.max() == 9
    assert np.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert int(x[0].sum(dtype=np.int64)) == 27525 and y[0] == 5 and yt[0] == 7


@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="no local Fashion-MNIST")
def test_real_fashion_mnist_recompressed_by_debian():
    ds = FashionMNIST(SHARED / "fashion-mnist", train=True, download=False, dtype="uint8")
    assert ds.data.shape == (60000, 28, 28) and ds.targets.shape == (60000,)
    assert ds.targets.min() == 0 and ds.targets.max() == 9
    assert round(float(ds.data.mean()), 2) == 72.94


# ---------------------------------------------------------------------------------------------
# DataLoader


def epoch_batches(loader):
    return [(xb.copy(), yb.copy()) for xb, yb in loader]


def test_loader_seeded_order_is_reproducible():
    x = np.arange(50, dtype=np.uint8).reshape(50, 1)
    y = np.arange(50, dtype=np.int64)
    a = DataLoader(x, y, batch_size=8, seed=3)
    b = DataLoader(x, y, batch_size=8, seed=3)
    a0, a1 = epoch_batches(a), epoch_batches(a)
    b0 = epoch_batches(b)
    for (xa, ya), (xb, yb) in zip(a0, b0):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    order0, order1 = np.concatenate([y for _, y in a0]), np.concatenate([y for _, y in a1])
    assert not np.array_equal(order0, order1)  # a new permutation each epoch
    assert not np.array_equal(order0, np.arange(50))
    # epoch e's order depends only on (seed, e): a resumed run sees the same batches
    c = DataLoader(x, y, batch_size=8, seed=3)
    c.set_epoch(1)
    np.testing.assert_array_equal(np.concatenate([y for _, y in c]), order1)
    np.testing.assert_array_equal(a.order(0), order0)
    other = DataLoader(x, y, batch_size=8, seed=4)
    assert not np.array_equal(np.concatenate([y for _, y in other]), order0)
    assert isinstance(DataLoader(x, y).seed, int)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize(
    "n, batch, drop_last",
    [(50, 8, False), (50, 8, True), (48, 8, True), (5, 8, False), (5, 8, True), (0, 4, False)],
)
def test_loader_covers_every_sample_once(n, batch, drop_last, shuffle):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n)
    loader = DataLoader(x, y, batch_size=batch, shuffle=shuffle, seed=0, drop_last=drop_last)
    batches = list(loader)
    assert len(batches) == len(loader) == (n // batch if drop_last else -(-n // batch))
    sizes = [len(yb) for _, yb in batches]
    assert all(s == batch for s in sizes[:-1])
    if drop_last:
        assert all(s == batch for s in sizes)
    seen = np.concatenate([yb for _, yb in batches]) if batches else np.array([], int)
    assert len(seen) == loader.num_samples
    assert len(np.unique(seen)) == len(seen)
    if not drop_last:
        assert sorted(seen.tolist()) == list(range(n))
    for xb, yb in batches:
        np.testing.assert_array_equal(xb, x[yb])  # pairs stay together
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(len(seen)))


def test_loader_dtype_and_transform():
    x = np.arange(40, dtype=np.uint8).reshape(10, 2, 2)
    y = np.arange(10)
    xb, yb = next(iter(DataLoader(x, y, batch_size=4, seed=0)))
    assert xb.dtype == np.float32 and yb.dtype == y.dtype and xb.shape == (4, 2, 2)
    np.testing.assert_array_equal(xb, x[yb])
    xb, _ = next(iter(DataLoader(x, y, batch_size=4, dtype=None)))
    assert xb.dtype == np.uint8
    xb, _ = next(iter(DataLoader(x, y, batch_size=4, dtype=np.float64)))
    assert xb.dtype == np.float64
    seen = []

    def scale(b):
        seen.append(b.dtype)
        return b / 255.0  # float64 out, then converted to float32

    xb, yb = next(iter(DataLoader(x, y, batch_size=4, transform=scale, seed=1)))
    assert seen == [np.uint8] and xb.dtype == np.float32
    np.testing.assert_allclose(xb, x[yb] / 255.0, rtol=1e-6)
    # without targets the loader yields the batches alone
    assert [b.shape for b in DataLoader(x, batch_size=6, shuffle=False)] == [(6, 2, 2), (4, 2, 2)]


def test_loader_does_not_copy_or_expose_the_data():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6)
    xb, _ = next(iter(DataLoader(x, y, batch_size=4, shuffle=False)))
    assert np.shares_memory(xb, x) and not xb.flags.writeable  # a read-only view
    with pytest.raises(ValueError):
        xb[0, 0] = 99.0
    xb, _ = next(iter(DataLoader(x, y, batch_size=4, seed=0)))
    xb[:] = -1  # a gathered batch is the caller's to change
    np.testing.assert_array_equal(x, np.arange(12, dtype=np.float32).reshape(6, 2))


def test_loader_takes_a_dataset(tiny, tmp_path):
    put(tmp_path)
    ds = tiny(tmp_path, dtype="uint8", download=False)
    batches = list(DataLoader(ds, batch_size=4, seed=0, transform=ds.transform))
    assert [len(yb) for _, yb in batches] == [4, 2]
    xb, yb = batches[0]
    assert xb.dtype == np.float32 and yb.dtype == np.int64
    np.testing.assert_allclose(xb, ds.transform(ds.raw_data[_positions(ds.targets, yb)]))


def _positions(targets, labels):
    # the tiny training labels are distinct, so each label identifies its sample
    return [int(np.flatnonzero(targets == v)[0]) for v in labels]


def test_loader_bad_arguments():
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="5 samples"):
        DataLoader(x, np.zeros(4))
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(x, batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):  # never truncated
        DataLoader(x, batch_size=2.5)
    with pytest.raises(ValueError, match=r"first \(sample\) axis"):
        DataLoader(np.float32(1.0))


@pytest.mark.parametrize(
    "kwargs, error, what",
    [
        ({"batch_size": None}, TypeError, "batch_size must be an int, got None"),
        ({"batch_size": "4"}, TypeError, "batch_size must be an int, got a str '4'"),
        ({"batch_size": True}, TypeError, "batch_size must be an int, got a bool True"),
        ({"batch_size": float("nan")}, TypeError, "batch_size must be an int, got a float nan"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int, got a float 2.0"),
        ({"seed": -1}, ValueError, "seed must be a whole number >= 0, got -1"),
        ({"seed": -(10**400)}, ValueError, "seed must be a whole number >= 0, got -1000"),
        ({"seed": 1.5}, TypeError, "seed must be an int or a numpy Generator, got a float 1.5"),
        ({"seed": "abc"}, TypeError, "seed must be an int or a numpy Generator, got a str"),
        ({"seed": False}, TypeError, "seed must be an int or a numpy Generator, got a bool"),
        ({"shuffle": "no"}, TypeError, "shuffle must be True or False, got 'no'"),
        ({"drop_last": "False"}, TypeError, "drop_last must be True or False, got 'False'"),
    ],
)
def test_loader_bad_batch_size_and_seed(kwargs, error, what):
    with pytest.raises(error) as e:
        DataLoader(np.zeros((5, 2)), **kwargs)
    assert str(e.value).startswith(f"DataLoader: {what}")


@pytest.mark.parametrize(
    "call, error, what",
    [
        (lambda d: d.set_epoch(2.7), TypeError, "DataLoader.set_epoch: epoch must be an int"),
        (lambda d: d.set_epoch("3"), TypeError, "DataLoader.set_epoch: epoch must be an int"),
        (lambda d: d.set_epoch(None), TypeError, "DataLoader.set_epoch: epoch must be an int"),
        (lambda d: d.set_epoch(-1), ValueError, "DataLoader.set_epoch: epoch must be a whole"),
        (lambda d: d.order(1.5), TypeError, "DataLoader.order: epoch must be an int"),
        (lambda d: list(d.batches(-1)), ValueError, "DataLoader.batches: epoch must be a whole"),
        (lambda d: list(d.batches(0, start=-1)), ValueError, "DataLoader.batches: start must"),
        (lambda d: list(d.batches(0, start=1.5)), TypeError, "DataLoader.batches: start must"),
    ],
)
def test_loader_epochs_and_starts_are_whole_numbers(call, error, what):
    """Never truncated or parsed: set_epoch(2.7) ran epoch 2, and start=-1 yielded an empty
    batch and then the whole epoch."""
    loader = DataLoader(np.zeros((10, 2)), np.arange(10), batch_size=4, seed=0)
    with pytest.raises(error) as e:
        call(loader)
    assert str(e.value).startswith(what)
    assert loader.epoch == 0


def test_loader_runs_the_epoch_its_sampler_was_set_to():
    """torch's idiom, sampler.set_epoch(e) before each epoch (or a new loader on a sampler set
    to e), chose nothing: the loader ran its own epoch 0's order."""
    from nnfast.distributed import DistributedSampler

    x, y = np.zeros((10, 2)), np.arange(10)
    sampler = DistributedSampler(10, 2, 1, seed=1)
    sampler.set_epoch(3)
    loader = DataLoader(x, y, batch_size=10, sampler=sampler)
    assert loader.epoch == 3
    np.testing.assert_array_equal(next(iter(loader))[1], sampler.indices(3))
    assert sampler.epoch == 4  # iterating advanced both
    loader.set_epoch(1)
    assert sampler.epoch == 1
    np.testing.assert_array_equal(next(iter(loader))[1], sampler.indices(1))


def test_loader_names_a_sampler_index_outside_the_data():
    class Sampler:
        def __len__(self):
            return 3

        def indices(self, epoch):
            return [0, 10 + epoch, 2]

    loader = DataLoader(np.zeros((10, 2)), sampler=Sampler())
    with pytest.raises(IndexError, match=r"sampler's index 10 \(epoch 0\) is outside the 10"):
        list(loader)
    with pytest.raises(IndexError, match=r"index 11 \(epoch 1\)"):
        loader.order(1)


def test_loader_refuses_a_transform_it_cannot_call():
    with pytest.raises(TypeError, match="DataLoader: transform must be callable"):
        DataLoader(np.zeros((5, 2)), transform=5)


def test_loader_whole_number_arguments_and_generator_seed():
    x = np.arange(10)
    loader = DataLoader(x, batch_size=np.int64(4), seed=np.uint8(3))
    assert (loader.batch_size, loader.seed) == (4, 3) and type(loader.batch_size) is int
    a, b = (DataLoader(x, seed=np.random.default_rng(7)) for _ in range(2))
    np.testing.assert_array_equal(a.order(), b.order())
    # the seed is one draw from the generator (the loader's documented rule)
    assert a.seed == int(np.random.default_rng(7).integers(2**63)) and type(a.seed) is int


@pytest.mark.parametrize("level", [12, -1, 2.5])
def test_write_idx_names_a_bad_compresslevel(tmp_path, level):
    """12 failed in zlib with 'Invalid initialization option'."""
    with pytest.raises((TypeError, ValueError), match="write_idx: compresslevel must be"):
        write_idx(tmp_path / "a.gz", np.zeros(3, np.uint8), compresslevel=level)
