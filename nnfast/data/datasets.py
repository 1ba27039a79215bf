"""MNIST and Fashion-MNIST: find the four IDX files, download what is missing, load and check.

Where the files are looked for, in order (each file as ``NAME.gz`` or uncompressed ``NAME``):

1. ``root`` (the CLI's ``--data-dir``), then ``root/<dataset>``;
2. ``$NNFAST_DATA/<dataset>``;
3. the cache, ``$XDG_CACHE_HOME/nnfast/<dataset>``, else ``~/.cache/nnfast/<dataset>``.

``<dataset>`` is ``mnist`` or ``fashion-mnist``. Files that are missing are downloaded (when
``download=True``) into ``root/<dataset>`` if ``root`` is given, else into the cache: each mirror
is tried in turn, the bytes are checked against the data set's published md5 and the file is
renamed into place only if they match. Files found locally are not checked against those md5s
(a re-compressed copy, such as Debian's Fashion-MNIST, is as good as the original); they are
checked as IDX files of the right shape instead: (N, 28, 28) uint8 images, (N,) labels in 0..9,
the same N.
"""

import contextlib
import hashlib
import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from .. import _validate
from .._atomic import atomic_write
from .idx import read_idx

__all__ = [
    "DATASETS",
    "MNIST",
    "DownloadError",
    "FashionMNIST",
    "cache_dir",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
]

DEFAULT_TIMEOUT = 30.0  # seconds, per connection attempt and per read


class DownloadError(OSError):
    """Every mirror failed for a file: the message lists each attempt and where to put files."""


def cache_dir(name=None):
    """The download cache: ``$XDG_CACHE_HOME/nnfast[/name]``, else ``~/.cache/nnfast[/name]``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    base = base / "nnfast"
    return base / name if name else base


def _search_dirs(name, root):
    dirs = []
    if root is not None:
        dirs += [Path(root), Path(root) / name]
    env = os.environ.get("NNFAST_DATA")
    if env:
        dirs.append(Path(env).expanduser() / name)
    dirs.append(cache_dir(name))
    return dirs


def _pair(filenames, dirs):
    """The files (each ``x.gz`` or ``x``) from the first of ``dirs`` that holds all of them,
    or None: an image file is never paired with another directory's labels."""
    for d in dirs:
        found = [_find(f, [d]) for f in filenames]
        if all(found):
            return tuple(found)
    return None


def _find(filename, dirs):
    """First existing ``filename`` (``x.gz``) or its uncompressed twin (``x``) in ``dirs``."""
    plain = filename[:-3] if filename.endswith(".gz") else filename
    for d in dirs:
        for candidate in (d / filename, d / plain):
            if candidate.is_file():
                return candidate
    return None


def _md5(path):
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: A mirror that sends less than this in any ``timeout`` seconds has stalled: a trickle of a
#: byte every half second beat the per-read timeout and never finished (9.9 MB at 2 bytes/s).
STALL_BYTES = 16 * 1024


class _MirrorError(OSError):
    """A mirror's failure (refused, timed out, stalled, cut off), told apart from the
    destination file's: atomic_write names errors without a file name as the file's."""

    def __init__(self, reason, url):
        super().__init__(reason)
        self.filename = url  # not renamed as the destination's error

    def __str__(self):
        return str(self.args[0])


def _fetch(url, dest, md5, timeout):
    """Download ``url`` to ``dest`` atomically if its md5 matches; else raise, leaving nothing.
    The temporary file is made before the request: it keeps the directory, which another
    process's failed download removes if it made it and finds it empty."""
    import time
    import urllib.error
    import urllib.request  # here, not at import: keeps `import nnfast.data` light

    from .. import __version__

    req = urllib.request.Request(url, headers={"User-Agent": f"nnfast/{__version__}"})
    with atomic_write(dest) as f:
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as err:  # "HTTP Error 404: Not Found"
            raise _MirrorError(err, url) from None
        except OSError as err:  # refused, unreachable, timed out: URLError's reason
            raise _MirrorError(getattr(err, "reason", err), url) from None
        with resp:
            size = resp.headers.get("Content-Length")
            h = hashlib.md5(usedforsecurity=False)
            got, window, window_start = 0, 0, time.monotonic()
            while True:
                try:  # read1: what has arrived (read(n) waited for all n bytes of a trickle)
                    chunk = resp.read1(1 << 20)
                except OSError as err:
                    reason = str(err) or type(err).__name__
                    raise _MirrorError(f"{reason} after {got:,} bytes", url) from None
                if not chunk:
                    break
                h.update(chunk)
                f.write(chunk)
                got, window = got + len(chunk), window + len(chunk)
                if time.monotonic() - window_start >= timeout:
                    if window < STALL_BYTES:
                        raise _MirrorError(
                            f"stalled: {window:,} bytes in the last {timeout:g} s (after "
                            f"{got:,}); trying the next mirror", url)  # fmt: skip
                    window, window_start = 0, time.monotonic()
        if size is not None and size.isdigit() and got < int(size):
            raise _MirrorError(f"incomplete download: {got:,} of {int(size):,} bytes", url)
        if h.hexdigest() != md5:
            raise ValueError(f"checksum mismatch: md5 {h.hexdigest()}, expected {md5}")


def _by_count(n):
    return f"{n:,}"


class _IDXImageDataset:
    """Base of MNIST-like data sets: four IDX files, 28x28 uint8 images, labels 0..9.

    Subclasses set ``name``, ``resources``, ``mirrors``, ``classes``, ``mean`` and ``std``.
    """

    name = ""
    # file name -> md5 of the published .gz file
    resources: ClassVar[dict] = {}
    # base URLs, tried in order; a file's URL is base + file name
    mirrors = ()
    classes = ()
    mean = 0.0  # of the training images scaled to [0, 1]
    std = 1.0
    image_shape = (28, 28)
    train_files = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    test_files = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

    def __init__(
        self,
        root=None,
        train=True,
        download=True,
        dtype="float32",
        normalize=True,
        *,
        mirrors=None,
        timeout=DEFAULT_TIMEOUT,
    ):
        dtype = np.dtype(dtype)
        if dtype not in (np.uint8, np.float32, np.float64):
            raise ValueError(
                f"{type(self).__name__}: dtype must be uint8, float32 or float64, not {dtype}"
            )
        name = type(self).__name__
        self.train = bool(train)
        self.dtype = dtype
        self.normalize = bool(normalize)
        if mirrors is not None and (isinstance(mirrors, (str, bytes)) or not hasattr(
                mirrors, "__iter__")):  # fmt: skip
            raise TypeError(f"{name}: mirrors must be a list of base URLs, got {mirrors!r}")
        self.mirrors = tuple(self.mirrors if mirrors is None else mirrors)
        if not all(isinstance(m, str) for m in self.mirrors):
            raise TypeError(f"{name}: mirrors must be base URLs (str), got {self.mirrors!r}")
        # None waited for ever on a server that accepted but never answered
        self.timeout = _validate.real(timeout, "timeout", name, low=0.0, low_open=True)
        if root is not None:  # '~/data' made a directory named ~ in the working directory
            root = Path(os.fspath(root)).expanduser()
        if root is not None and root.exists() and not root.is_dir():
            raise NotADirectoryError(f"{name}: root {root} is not a directory")
        images_path, labels_path = self._locate(root, download)
        images, labels = self._load(images_path, labels_path)
        self.raw_data = images  # uint8 (N, 28, 28), whatever dtype was asked for
        self.data = images if dtype == np.uint8 else self.transform(images, dtype)
        self.targets = labels
        self.files = (images_path, labels_path)

    # -- files ---------------------------------------------------------------------------------

    def _locate(self, root, download):
        dirs = _search_dirs(self.name, root)
        wanted = self.train_files if self.train else self.test_files
        pair = _pair(wanted, dirs)
        if pair:
            return pair
        found = {f: _find(f, dirs) for f in wanted}
        if all(found.values()):
            self._apart(wanted, dirs)
        # root/<dataset>, not root: MNIST's files there were found as Fashion-MNIST's (the
        # same names), and loaded as them
        target = Path(root) / self.name if root is not None else cache_dir(self.name)
        if not download:
            missing = [f for f in wanted if found[f] is None]
            raise FileNotFoundError(
                f"{type(self).__name__}: {', '.join(missing)} not found (download=False). "
                + self._where(target, dirs)
            )
        # Fetch every one of the four that is nowhere to be found, so the other split is there
        # too next time (as torchvision does).
        created = [d for d in (target, *target.parents) if not d.exists()]  # deepest first
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DownloadError(
                f"{type(self).__name__}: cannot create {target} to download "
                f"into ({err.strerror}).\n" + self._where(target, dirs)
            ) from None
        try:
            for f in self.resources:
                if _find(f, dirs) is None:
                    self._download(f, target, dirs)
        except BaseException:
            # a failed run leaves no directories behind that it made (and files it fetched
            # before the failure stay, in a directory that existed)
            for d in created:
                with contextlib.suppress(OSError):  # not empty: something was fetched
                    d.rmdir()
            raise
        return _pair(wanted, dirs) or self._apart(wanted, dirs)

    def _apart(self, wanted, dirs):
        """Each file found, but not in one directory: they may not belong together."""
        where = ", ".join(f"{f} in {_find(f, dirs).parent}" for f in wanted)
        raise FileNotFoundError(
            f"{type(self).__name__}: the images and labels must be in one directory; found {where}"
        )

    def _download(self, filename, target, dirs):
        from http.client import HTTPException  # a cut-off response (IncompleteRead)

        md5 = self.resources[filename]
        errors = []
        for base in self.mirrors:
            url = base.rstrip("/") + "/" + filename
            try:
                _fetch(url, target / filename, md5, self.timeout)
                return
            # URLError, HTTPError, refused connections and timeouts are OSErrors; a checksum
            # mismatch is a ValueError
            except (OSError, ValueError, HTTPException) as e:
                errors.append(f"  {url}: {e}")
        tried = "\n".join(errors) if errors else "  (no mirrors configured)"
        raise DownloadError(
            f"{type(self).__name__}: could not download {filename}; tried:\n{tried}\n"
            + self._where(target, dirs)
        )

    def _where(self, target, dirs):
        files = "\n".join(f"  {f}  (md5 {m})" for f, m in self.resources.items())
        looked = ", ".join(str(d) for d in dirs)
        sources = " or ".join(self.mirrors) if self.mirrors else "the data set's publisher"
        return (
            f"Put these four files (.gz, or uncompressed without the .gz) in {target}:\n"
            f"{files}\n"
            f"They are published at {sources}. Looked in: {looked}. Another directory can be "
            f"given as root= (nnfast train --data-dir DIR) or as $NNFAST_DATA/{self.name}."
        )

    # -- contents ------------------------------------------------------------------------------

    def _load(self, images_path, labels_path):
        images = read_idx(images_path)
        labels = read_idx(labels_path)
        h, w = self.image_shape
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (h, w):
            raise ValueError(
                f"{images_path}: expected {self.name} images, uint8 of shape (N, {h}, {w}); "
                f"found {images.dtype} of shape {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(
                f"{labels_path}: expected {self.name} labels, uint8 of shape (N,); "
                f"found {labels.dtype} of shape {labels.shape}"
            )
        if len(images) == 0:  # an evaluation of nothing divided by zero after training
            raise ValueError(f"{images_path} holds no images")
        if len(images) != len(labels):
            raise ValueError(
                f"{images_path} holds {_by_count(len(images))} images but {labels_path} "
                f"{_by_count(len(labels))} labels"
            )
        if labels.size and labels.max() >= len(self.classes):
            raise ValueError(
                f"{labels_path}: label {labels.max()} out of range 0..{len(self.classes) - 1}"
            )
        return images, labels.astype(np.int64)

    def transform(self, images, dtype=np.float32):
        """uint8 images -> floats: scaled to [0, 1], then standardised if ``self.normalize``.

        Works on any batch (``DataLoader(ds.raw_data, ds.targets, transform=ds.transform)``
        converts per batch instead of holding a float copy of the whole set).
        """
        dtype = np.dtype(dtype)
        x = images.astype(dtype)
        if self.normalize:
            x *= dtype.type(1.0 / (255.0 * self.std))
            x -= dtype.type(self.mean / self.std)
        else:
            x *= dtype.type(1.0 / 255.0)
        return x

    # -- sequence protocol ---------------------------------------------------------------------

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.data[i], self.targets[i]

    def arrays(self):
        """``(data, targets)``: images (N, 28, 28) in the chosen dtype, labels int64 (N,)."""
        return self.data, self.targets

    def __repr__(self):
        split = "train" if self.train else "test"
        return (
            f"{type(self).__name__}(split={split!r}, n={len(self)}, dtype={self.dtype}, "
            f"normalize={self.normalize}, files={[str(f) for f in self.files]})"
        )


class MNIST(_IDXImageDataset):
    """The MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28, labels 0-9.

    Parameters
    ----------
    root : str or os.PathLike, optional
        A directory holding the four files (the CLI's ``--data-dir``); searched first, and where
        downloads go. Without it: ``$NNFAST_DATA/mnist``, then the cache
        (``$XDG_CACHE_HOME/nnfast/mnist`` or ``~/.cache/nnfast/mnist``), where downloads go.
    train : bool
        The 60,000 training images (True) or the 10,000 test images (False).
    download : bool
        Download missing files from the mirrors (checked against the published md5s). With
        False, a missing file raises FileNotFoundError.
    dtype : {"float32", "float64", "uint8"}
        uint8 gives the raw pixels 0-255. Floats are scaled to [0, 1] and, if ``normalize``,
        standardised with the training set's mean and std (``MNIST.mean``, ``MNIST.std``), as
        ``transforms.Normalize((0.1307,), (0.3081,))`` does in torchvision.
    normalize : bool
        For float dtypes: standardise (True) or keep [0, 1] (False, as keras users do).
    mirrors : sequence of str, optional
        Base URLs to download from, tried in order (default ``MNIST.mirrors``).
    timeout : float
        Seconds per connection attempt and per read; a mirror that sends less than 16 KB in any
        such span has stalled, and the next one is tried.

    Attributes
    ----------
    data : ndarray (N, 28, 28), dtype as asked
    targets : ndarray (N,) int64
    raw_data : ndarray (N, 28, 28) uint8
    classes : tuple of str
    files : (Path, Path) the images and labels files read

    Raises
    ------
    DownloadError
        Every mirror failed for a missing file (offline, 404, checksum mismatch); the message
        says which four files to put in which directory.
    FileNotFoundError
        A file is missing and ``download=False``.
    ValueError
        A file is not a valid IDX file (``IDXError``) or not of the expected shape.

    Examples
    --------
    >>> train = MNIST(train=True)                      # doctest: +SKIP
    >>> x, y = train.arrays()                          # (60000, 28, 28) float32, (60000,) int64
    """

    name = "mnist"
    resources: ClassVar[dict] = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    mirrors = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://yann.lecun.com/exdb/mnist/",
    )
    classes = tuple(str(d) for d in range(10))
    mean = 0.1307  # measured on the 60,000 training images: 0.130660, std 0.308108
    std = 0.3081


class FashionMNIST(_IDXImageDataset):
    """Zalando's Fashion-MNIST: 60,000 training and 10,000 test 28x28 images of 10 garments.

    Same parameters, attributes and file names as :class:`MNIST`; the directory name is
    ``fashion-mnist`` (``$NNFAST_DATA/fashion-mnist``, ``~/.cache/nnfast/fashion-mnist``).
    ``classes`` names the labels: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt,
    Sneaker, Bag, Ankle boot.
    """

    name = "fashion-mnist"
    resources: ClassVar[dict] = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    # The authors' S3 bucket (plain HTTP: its website endpoint has no TLS) after their GitHub
    # repository (HTTPS), since md5 alone does not stop a tampered download in transit.
    mirrors = (
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    )
    classes = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    mean = 0.2860  # measured on the 60,000 training images: 0.286041, std 0.353024
    std = 0.3530


# name -> class, for the CLI (--dataset) and saved run records
DATASETS = {"mnist": MNIST, "fashion-mnist": FashionMNIST}


def load_dataset(name, root=None, *, download=True, dtype="float32", normalize=True, **kwargs):
    """Both splits of a data set by name, keras-style: ``((x_train, y_train), (x_test, y_test))``.

    ``name`` is a key of :data:`DATASETS` (``"mnist"``, ``"fashion-mnist"``); the other
    arguments are those of :class:`MNIST`.
    """
    try:
        cls = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None
    out = []
    for train in (True, False):
        ds = cls(root, train, download, dtype, normalize, **kwargs)
        out.append(ds.arrays())
    return tuple(out)


def load_mnist(root=None, **kwargs):
    """``((x_train, y_train), (x_test, y_test))`` of MNIST; arguments as :class:`MNIST`."""
    return load_dataset("mnist", root, **kwargs)


def load_fashion_mnist(root=None, **kwargs):
    """``((x_train, y_train), (x_test, y_test))`` of Fashion-MNIST; arguments as :class:`MNIST`."""
    return load_dataset("fashion-mnist", root, **kwargs)
