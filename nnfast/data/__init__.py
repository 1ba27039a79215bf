"""Data for nnfast: IDX files, MNIST and Fashion-MNIST (download, checksums, cache), batches.

    read_idx(path) -> ndarray             write_idx(path, array)
    MNIST(root=None, train=True, download=True, dtype="float32", normalize=True)
    FashionMNIST(...)                     load_mnist(root) -> ((x, y), (x_test, y_test))
    DataLoader(x, y, batch_size=128, shuffle=True, seed=None, drop_last=False,
               dtype=np.float32, transform=None)
    Compose([RandomAffine(degrees, translate, scale, fill), RandomShift(max_px),
             RandomHorizontalFlip(p), Normalize(m, s)])

Importing this package imports numpy and a few small standard-library modules only; urllib is
imported when a download starts.
"""

from .datasets import (
    DATASETS,
    MNIST,
    DownloadError,
    FashionMNIST,
    cache_dir,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
)
from .idx import IDXError, read_idx, write_idx
from .loader import DataLoader
from .transforms import (
    Compose,
    Normalize,
    RandomAffine,
    RandomHorizontalFlip,
    RandomShift,
    Transform,
)

__all__ = [
    "DATASETS",
    "MNIST",
    "Compose",
    "DataLoader",
    "DownloadError",
    "FashionMNIST",
    "IDXError",
    "Normalize",
    "RandomAffine",
    "RandomHorizontalFlip",
    "RandomShift",
    "Transform",
    "cache_dir",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
    "write_idx",
]
