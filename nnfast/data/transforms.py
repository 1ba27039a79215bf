"""Batch transforms for data augmentation: ``RandomShift``, ``RandomAffine``,
``RandomHorizontalFlip``, ``Normalize`` and ``Compose``, applied by :class:`DataLoader` to
each batch of images (N, H, W) or (N, C, H, W).

A transform is called as ``t(x, rng)`` on a whole batch and returns a new array (a batch may be
a read-only view of the data set). Random transforms draw one set of parameters per image from
``rng``; the DataLoader passes a generator derived from its seed, the epoch and the batch
number, so an epoch's augmented batches are a function of those alone and a resumed run sees
the same ones. The warps run in C (``csrc/image.c``), one call per batch; the flip is one
numpy copy.
"""

from __future__ import annotations

import numpy as np

from .._validate import integer, real

__all__ = [
    "Compose",
    "Normalize",
    "RandomAffine",
    "RandomHorizontalFlip",
    "RandomShift",
    "Transform",
]

# Bounds past which a parameter means nothing more (a shift wider than any image, more than a
# turn either way, a zoom that leaves one pixel) and numpy's draws would overflow
_MAX_SHIFT = 2**30
_MAX_DEGREES = 360.0
_MAX_SCALE = 1e6


class Transform:
    """Base class: ``__call__(x, rng=None)`` maps a batch to a new batch.

    ``random`` is True for transforms that draw from ``rng`` (None: a fresh generator from
    :func:`nnfast.manual_seed`'s stream, for use outside a DataLoader).
    """

    random = False

    def __call__(self, x, rng=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"

    def _config(self):
        return {}


class Compose(Transform):
    """Apply ``transforms`` in order; they share the generator (so the whole chain is seeded
    by the one the DataLoader passes). Plain callables ``f(x)`` are allowed too."""

    def __init__(self, transforms):
        try:
            transforms = list(transforms)
        except TypeError:
            raise TypeError(
                f"Compose: transforms must be a list of callables, got {type(transforms).__name__}"
            ) from None
        for t in transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got {t!r}")
        self.transforms = transforms

    @property
    def random(self):
        return any(getattr(t, "random", False) for t in self.transforms)

    def __call__(self, x, rng=None):
        if self.random:
            rng = _generator(rng)
        for t in self.transforms:
            x = t(x, rng) if isinstance(t, Transform) else t(x)
        return x

    def __repr__(self):
        return f"Compose([{', '.join(map(repr, self.transforms))}])"


class Normalize(Transform):
    """``(x - mean) / std``, per channel (axis 1 of (N, C, H, W)) when given sequences.

    Parameters
    ----------
    mean : float or sequence of floats (one per channel)
    std : float or sequence of floats, each > 0
    """

    def __init__(self, mean, std):
        self.mean = _floats(mean, "mean", "Normalize")
        self.std = _floats(std, "std", "Normalize", positive=True)

    def __call__(self, x, rng=None):
        x = _float_images(x, "Normalize", ranks=None)
        c = x.shape[1] if x.ndim == 4 else 1
        stats = []
        for name, v in (("mean", self.mean), ("std", self.std)):
            if len(v) not in (1, c):
                raise ValueError(
                    f"Normalize: {name} has {len(v)} values but the input of shape {x.shape} "
                    f"has {c} channel(s)"
                )
            with np.errstate(over="ignore"):
                a = np.asarray(v, x.dtype)
            # in float32, mean 1e300 was inf and std 1e-300 was 0: images of inf and NaN
            if not np.isfinite(a).all() or (name == "std" and not (a > 0).all()):
                raise ValueError(
                    f"Normalize: {name} {list(v)} is not a finite{' nonzero' * (name == 'std')} "
                    f"{x.dtype} number (the images' dtype)"
                )
            stats.append(a.reshape(-1, 1, 1) if x.ndim == 4 and len(v) > 1 else a[0])
        mean, std = stats
        try:
            with np.errstate(over="raise"):
                return (x - mean) / std
        except FloatingPointError:  # std 1e-45 in float32: images of inf
            raise ValueError(
                f"Normalize: (x - {self.mean}) / {self.std} overflows the {x.dtype} images"
            ) from None

    def _config(self):
        return {"mean": self.mean, "std": self.std}


class RandomShift(Transform):
    """Shift each image by whole pixels, independently along each axis by an integer drawn
    uniformly from [-max_px, max_px]; pixels shifted in read ``fill``.

    Parameters
    ----------
    max_px : int in [0, 2**30]
    fill : float
        The value of uncovered pixels: 0, or the normalised background (``-mean / std``).
    """

    random = True

    def __init__(self, max_px, fill=0.0):
        self.max_px = integer(max_px, "max_px", "RandomShift", low=0, high=_MAX_SHIFT)
        self.fill = real(fill, "fill", "RandomShift")

    def __call__(self, x, rng=None):
        x = _float_images(x, "RandomShift")
        n = len(x)
        d = _generator(rng).integers(-self.max_px, self.max_px + 1, size=(n, 2))
        mats = np.zeros((n, 6))
        mats[:, 0] = mats[:, 4] = 1.0
        mats[:, 2], mats[:, 5] = -d[:, 0], -d[:, 1]  # output (i, j) reads (i - dy, j - dx)
        return _warp(x, mats, self.fill, "RandomShift")

    def _config(self):
        return {"max_px": self.max_px, "fill": self.fill}


class RandomAffine(Transform):
    """Rotate, scale and translate each image about its centre by parameters drawn uniformly
    per image, resampled bilinearly; uncovered pixels read ``fill`` (names as torchvision's).

    Parameters
    ----------
    degrees : float in [0, 360] or (min, max) within [-360, 360]
        Rotation angle range in degrees (counter-clockwise); a number d means (-d, d).
    translate : (a, b) in [0, 1], optional
        Largest shift as a fraction of the width (a) and height (b); shifts are not rounded.
    scale : (min, max), 0 < min <= max <= 1e6, optional
        Zoom factor range (1 keeps the size).
    fill : float
        The value of uncovered pixels.
    """

    random = True

    def __init__(self, degrees, translate=None, scale=None, fill=0.0):
        what = "RandomAffine"
        if isinstance(degrees, (tuple, list)):
            self.degrees = _interval(degrees, "degrees", what, -_MAX_DEGREES, _MAX_DEGREES, False)
        else:
            d = real(degrees, "degrees", what, low=0.0, high=_MAX_DEGREES)
            self.degrees = (-d, d)
        if translate is None:
            self.translate = (0.0, 0.0)
        else:
            pair = _pair(translate, "translate", what)
            self.translate = tuple(real(v, "translate", what, low=0.0, high=1.0) for v in pair)
        self.scale = (
            (1.0, 1.0) if scale is None else _interval(scale, "scale", what, 0.0, _MAX_SCALE)
        )
        self.fill = real(fill, "fill", what)

    def __call__(self, x, rng=None):
        x = _float_images(x, "RandomAffine")
        n, h, w = len(x), x.shape[-2], x.shape[-1]
        rng = _generator(rng)
        theta = np.deg2rad(rng.uniform(*self.degrees, size=n))
        s = rng.uniform(*self.scale, size=n)
        tx = rng.uniform(-1.0, 1.0, size=n) * (self.translate[0] * w)
        ty = rng.uniform(-1.0, 1.0, size=n) * (self.translate[1] * h)
        # output point p = c + s R (q - c) + t, so the source q = c + R^-1 (p - c - t) / s with
        # (row, col) coordinates and R a counter-clockwise turn on screen (rows point down)
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        cos, sin = np.cos(theta) / s, np.sin(theta) / s
        mats = np.empty((n, 6))
        mats[:, 0], mats[:, 1] = cos, sin
        mats[:, 3], mats[:, 4] = -sin, cos
        oy, ox = cy + ty, cx + tx
        mats[:, 2] = cy - cos * oy - sin * ox
        mats[:, 5] = cx + sin * oy - cos * ox
        return _warp(x, mats, self.fill, "RandomAffine")

    def _config(self):
        return {"degrees": self.degrees, "translate": self.translate, "scale": self.scale,
                "fill": self.fill}  # fmt: skip


class RandomHorizontalFlip(Transform):
    """Mirror each image left to right with probability ``p`` (drawn per image).

    Parameters
    ----------
    p : float in [0, 1]
    """

    random = True

    def __init__(self, p=0.5):
        self.p = real(p, "p", "RandomHorizontalFlip", low=0.0, high=1.0)

    def __call__(self, x, rng=None):
        x = _float_images(x, "RandomHorizontalFlip")
        flip = _generator(rng).random(len(x)) < self.p
        return np.where(flip.reshape((-1,) + (1,) * (x.ndim - 1)), x[..., ::-1], x)

    def _config(self):
        return {"p": self.p}


# --- helpers ------------------------------------------------------------------------------------


def _generator(rng):
    if rng is None:
        from .._random import generator

        return generator(None)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator or None, got {rng!r}")
    return rng


def _float_images(x, what, ranks=(3, 4)):
    """x as a float array (integers become float32) of one of ``ranks``, else ValueError."""
    x = np.asarray(x)
    if ranks is not None and x.ndim not in ranks:
        raise ValueError(
            f"{what}: expected a batch of images (N, H, W) or (N, C, H, W), got shape {x.shape}"
        )
    if x.dtype.kind in "iub":
        return x.astype(np.float32)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{what}: expected float32, float64 or integer images, got {x.dtype}")
    return x


def _warp(x, mats, fill, what="warp"):
    """Resample x (N, [C,] H, W) through the per-image source maps mats (N, 6) (image.h)."""
    from .._native import core

    if abs(fill) > float(np.finfo(x.dtype).max):  # it was inf in float32 images
        raise ValueError(f"{what}: fill {fill} is past the range of the {x.dtype} images")

    if x.size == 0:  # no pixels to resample (and no sample axis to fold the channels into)
        return x.copy()
    x4 = np.ascontiguousarray(x.reshape(len(x), -1, *x.shape[-2:]))
    y = np.empty_like(x4)
    if core is not None:
        core.warp_affine(x4, mats, float(fill), y)
    else:
        _warp_numpy(x4, mats, fill, y)
    return y.reshape(x.shape)


def _warp_numpy(x, mats, fill, y):
    """The C kernel's arithmetic in numpy, for builds without the extension."""
    n, c, h, w = x.shape
    i, j = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    m = mats[:, :, None, None]
    sy = m[:, 0] * i + m[:, 1] * j + m[:, 2]  # (N, H, W)
    sx = m[:, 3] * i + m[:, 4] * j + m[:, 5]
    out = ~((sy > -1) & (sy < h) & (sx > -1) & (sx < w))
    sy, sx = np.where(out, 0, sy), np.where(out, 0, sx)
    r0, s0 = np.floor(sy), np.floor(sx)
    fy, fx = (sy - r0)[:, None], (sx - s0)[:, None]
    # padded by one fill pixel on each side, so every neighbour index is in range
    xp = np.pad(x.astype(float), ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=fill)
    flat = xp.reshape(n, c, -1)

    def at(dr, ds):
        idx = ((r0 + dr + 1) * (w + 2) + (s0 + ds + 1)).astype(np.intp).reshape(n, 1, -1)
        return np.take_along_axis(flat, idx, axis=2).reshape(n, c, h, w)

    v = (1 - fy) * ((1 - fx) * at(0, 0) + fx * at(0, 1)) + fy * (
        (1 - fx) * at(1, 0) + fx * at(1, 1)
    )
    exact = (fy == 0) & (fx == 0)
    v = np.where(exact, at(0, 0), v)
    y[...] = np.where(out[:, None], fill, v)


def _pair(value, name, what):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{what}: {name} must be a pair of numbers, got {value!r}")
    return value


def _interval(value, name, what, low=None, high=None, low_open=True):
    """(lo, hi) with lo <= hi, both above low (or at it, unless low_open) and at most high."""
    pair = _pair(value, name, what)
    lo, hi = (real(v, name, what, low=low, high=high, low_open=low_open) for v in pair)
    if lo > hi:
        raise ValueError(f"{what}: {name} must be (min, max) with min <= max, got {value!r}")
    return (lo, hi)


def _floats(value, name, what, positive=False):
    items = list(value) if isinstance(value, (tuple, list, np.ndarray)) else [value]
    if not items:
        raise ValueError(f"{what}: {name} must not be empty")
    return [real(v, name, what, low=0.0 if positive else None, low_open=True) for v in items]
