"""Mini-batches over in-memory arrays: seeded shuffling, drop_last, per-batch dtype conversion."""

import numpy as np

from .. import _validate
from .transforms import Transform

__all__ = ["DataLoader"]


def epoch_order(n, seed, epoch, shuffle):
    """The order of n samples in an epoch: a permutation drawn from (seed, epoch) when
    shuffling, else 0..n-1. DataLoader and DistributedSampler share it, so that one rank's
    shuffle is the single-process one."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


class DataLoader:
    """Iterate over ``(x_batch, y_batch)`` pairs, reshuffled every epoch.

    Parameters
    ----------
    x : ndarray (N, ...) or a data set with ``data`` and ``targets`` (e.g. :class:`MNIST`)
        Samples along the first axis. Kept as given (uint8 images stay uint8 in memory): only
        each batch is gathered and converted, so an epoch never copies the whole set at once.
    y : ndarray (N, ...), optional
        Targets; without them the loader yields ``x_batch`` alone.
    batch_size : int
    shuffle : bool
        A new permutation every epoch. Without shuffling, batches are consecutive slices.
    seed : int >= 0, numpy.random.Generator, optional
        The order of epoch ``e`` is a function of ``(seed, e)`` only, so a run resumed at epoch
        ``e`` sees the same batches as an uninterrupted one. None draws a seed, a Generator
        gives one (``self.seed``).
    drop_last : bool
        Drop the last batch if it is smaller than ``batch_size``.
    dtype : dtype or None
        ``x_batch`` is converted to it (default float32); None keeps ``x``'s dtype. ``y_batch``
        keeps ``y``'s dtype.
    transform : callable, optional
        Applied to each gathered ``x_batch`` before the dtype conversion, e.g.
        ``MNIST(dtype="uint8").transform`` to scale and standardise per batch. A
        :class:`~nnfast.data.transforms.Transform` (``RandomAffine``, ``Compose``...) is called
        as ``transform(x_batch, rng)`` with a generator that is a function of ``(seed, epoch,
        batch number)`` alone, so augmentation is reproducible and survives a resume; with a
        sampler that has a ``rank`` above 0, of the rank too, so that the ranks of a
        distributed run draw their own (rank 0 draws as one process does).
    sampler : optional
        Chooses the samples of each epoch and their order instead of ``shuffle``: an object with
        ``indices(epoch)`` (an int array) and ``len()``, e.g.
        :class:`nnfast.distributed.DistributedSampler` for this rank's shard.

    Notes
    -----
    Iterating starts epoch ``self.epoch`` and then advances it; ``set_epoch(e)`` chooses it. A
    sampler that keeps an epoch (``sampler.set_epoch``) keeps the loader's: either sets it.
    Batches are fresh arrays, except without shuffle, transform or a dtype change, when they
    are read-only views of ``x`` and ``y``.

    Examples
    --------
    >>> loader = DataLoader(x, y, batch_size=128, seed=0)   # doctest: +SKIP
    >>> for epoch in range(10):
    ...     for xb, yb in loader:                          # xb float32 (128, 28, 28)
    ...         ...
    """

    def __init__(
        self,
        x,
        y=None,
        batch_size=128,
        shuffle=True,
        seed=None,
        drop_last=False,
        dtype=np.float32,
        transform=None,
        sampler=None,
    ):
        if y is None and hasattr(x, "data") and hasattr(x, "targets"):
            x, y = x.data, x.targets
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError("DataLoader: x must have a first (sample) axis")
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0 or len(y) != len(x):
                raise ValueError(
                    f"DataLoader: x has {len(x)} samples but y has shape {np.shape(y)}"
                )
        self.x, self.y = x, y
        self.batch_size = _whole_number("batch_size", batch_size, 1)
        self.shuffle = _validate.flag(shuffle, "shuffle", "DataLoader")
        if seed is None:
            self.seed = int(np.random.SeedSequence().entropy % 2**63)
        elif isinstance(seed, np.random.Generator):
            self.seed = int(seed.integers(2**63))
        else:
            self.seed = _whole_number("seed", seed, 0, "an int or a numpy Generator")
        self.drop_last = _validate.flag(drop_last, "drop_last", "DataLoader")
        self.dtype = None if dtype is None else np.dtype(dtype)
        if transform is not None and not callable(transform):
            raise TypeError(
                f"DataLoader: transform must be callable (or None), got {type(transform).__name__}"
            )
        self.transform = transform
        if sampler is not None and not callable(getattr(sampler, "indices", None)):
            raise TypeError(
                f"DataLoader: sampler must have an indices(epoch) method, got "
                f"{type(sampler).__name__}"
            )
        n = getattr(sampler, "n", None)  # a DistributedSampler's sample count
        if isinstance(n, int) and n != len(x):
            raise ValueError(f"DataLoader: the sampler shares out {n} samples, but x has {len(x)}")
        self.sampler = sampler
        self._epoch = 0

    def _sampler_epoch(self):
        """Whether the sampler keeps the epoch (``set_epoch`` and ``epoch``, as
        DistributedSampler and torch's samplers do): then it is the loader's too."""
        return callable(getattr(self.sampler, "set_epoch", None)) and isinstance(
            getattr(self.sampler, "epoch", None), int
        )

    @property
    def epoch(self):
        """The epoch the next iteration runs: the sampler's when it keeps one (torch's
        ``sampler.set_epoch(e)`` before each epoch chose nothing here), else the loader's."""
        return self.sampler.epoch if self._sampler_epoch() else self._epoch

    @epoch.setter
    def epoch(self, epoch):
        if self._sampler_epoch():
            self.sampler.set_epoch(epoch)
        else:
            self._epoch = epoch

    def _epoch_size(self):
        return len(self.x) if self.sampler is None else len(self.sampler)

    def __len__(self):
        """Number of batches per epoch."""
        n, b = self._epoch_size(), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def num_samples(self):
        """Samples seen per epoch (``len(x)`` or the sampler's length, less the dropped tail
        with ``drop_last``)."""
        return len(self) * self.batch_size if self.drop_last else self._epoch_size()

    def set_epoch(self, epoch):
        """The epoch the next iteration runs (its shuffle order); e.g. when resuming."""
        self.epoch = _validate.integer(epoch, "epoch", "DataLoader.set_epoch", low=0)

    def order(self, epoch=None):
        """Sample indices of ``epoch`` (default: the next one) in the order they are visited."""
        if epoch is None:
            epoch = self.epoch
        epoch = _validate.integer(epoch, "epoch", "DataLoader.order", low=0)
        if self.sampler is not None:
            idx = np.asarray(self.sampler.indices(epoch), dtype=np.intp)
            if idx.size and not (0 <= idx.min() and idx.max() < len(self.x)):
                bad = idx[(idx < 0) | (idx >= len(self.x))][0]
                raise IndexError(
                    f"DataLoader: the sampler's index {bad} (epoch {epoch}) is outside the "
                    f"{len(self.x)} samples"
                )
            return idx
        return epoch_order(len(self.x), self.seed, epoch, self.shuffle)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self.batches(epoch)

    def batches(self, epoch, start=0):
        """The batches of ``epoch`` from batch number ``start`` on (0-based), without touching
        ``self.epoch``: a resumed run skips the batches it has done, with no gathering."""
        epoch = _validate.integer(epoch, "epoch", "DataLoader.batches", low=0)
        start = _validate.integer(start, "start", "DataLoader.batches", low=0)
        idx = self.order(epoch) if self.shuffle or self.sampler is not None else None
        n, b = self._epoch_size(), self.batch_size
        stop = n - n % b if self.drop_last else n
        for lo in range(start * b, stop, b):
            hi = min(lo + b, n)
            if idx is None:  # slices: views, made read-only so a batch cannot edit the data
                xb, yb = self.x[lo:hi], None if self.y is None else self.y[lo:hi]
                xb = _readonly(xb)
                yb = None if yb is None else _readonly(yb)
            else:
                sel = idx[lo:hi]
                xb = self.x[sel]
                yb = None if self.y is None else self.y[sel]
            if self.transform is not None:
                xb = self.transform_batch(xb, epoch, lo // b)
            if self.dtype is not None and xb.dtype != self.dtype:
                xb = xb.astype(self.dtype)
            yield xb if yb is None else (xb, yb)

    def transform_batch(self, xb, epoch, batch):
        """``transform`` applied to ``xb`` as iteration applies it to batch number ``batch``
        (0-based) of ``epoch``: random transforms get the generator of that position."""
        if isinstance(self.transform, Transform):
            key = [self.seed, int(epoch), int(batch)]
            rank = getattr(self.sampler, "rank", 0)
            if rank:  # every rank drew the same shifts and angles for its batch k
                key.append(int(rank))
            return self.transform(xb, np.random.default_rng(key))
        return self.transform(xb)


def _whole_number(name, value, minimum, kinds="an int"):
    """``value`` as an int >= ``minimum`` (see nnfast._validate: 2.0 is a TypeError too)."""
    return _validate.integer(value, name, "DataLoader", low=minimum, kinds=kinds)


def _readonly(a):
    v = a.view()
    v.flags.writeable = False
    return v
