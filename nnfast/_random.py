"""Seeding: every random draw in nnfast comes from a ``numpy.random.Generator``.

``manual_seed(s)`` resets one global ``SeedSequence``; each consumer that is not given its own
``seed=`` (a layer's initialiser, a Dropout mask stream, ``fit``'s shuffling) takes the next
child of it. So the same seed, the same construction order and the same thread count give
bit-identical training, and two layers never share a stream.
"""

from __future__ import annotations

import numpy as np

from . import _validate

_root = np.random.SeedSequence()


def manual_seed(seed: int) -> None:
    """Seed every generator nnfast creates from now on (layers, Dropout, ``fit`` shuffling)."""
    global _root
    _root = np.random.SeedSequence(_validate.integer(seed, "seed", "manual_seed", low=0))


def generator(seed=None) -> np.random.Generator:
    """A new Generator: from ``seed`` when given (an int or a Generator, used as is), else the
    next child of the global seed sequence set by :func:`manual_seed`."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        (child,) = _root.spawn(1)
        return np.random.default_rng(child)
    return np.random.default_rng(seed)
