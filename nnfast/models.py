"""Ready-made models for 28 x 28 single-channel images (MNIST, Fashion-MNIST).

Each returns an ``nnfast.nn.Sequential`` trainable with ``nnfast.train.fit`` and saved with
``nnfast.io.save``. ``MODELS`` maps the CLI's ``--model`` names to these functions.
"""

from __future__ import annotations

from ._validate import integer, real
from .nn import Conv2d, Dropout, Flatten, Linear, MaxPool2d, Sequential
from .nn.module import _float_dtype


def _dropout(p, what):
    """p in [0, 1): a negative or NaN one built a model without dropout, '0.5' failed on >."""
    return real(p, "dropout", what, low=0.0, high=1.0, high_open=True)


def _dtype(dtype, what):
    try:
        return _float_dtype(dtype)
    except TypeError as err:  # numpy's "data type 'bogus' not understood", named
        raise TypeError(f"{what}: {err}") from None


def _widths(hidden):
    """The hidden widths: a list of whole numbers (256 alone, or '256', is not one)."""
    if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
        raise TypeError(f"mlp: hidden must be a list of layer widths, got {hidden!r}")
    return [integer(h, "hidden", "mlp", low=1) for h in hidden]


def mlp(hidden=(256, 128), in_features=784, num_classes=10, activation="relu", dropout=0.0,
        *, dtype="float32"):  # fmt: skip
    """Flatten, then ``Linear`` layers of the ``hidden`` widths with ``activation`` (and
    ``Dropout(dropout)`` after each when > 0), then a linear classifier of ``num_classes``."""
    dropout, dtype = _dropout(dropout, "mlp"), _dtype(dtype, "mlp")
    layers = [Flatten()]
    width = in_features
    for h in _widths(hidden):
        layers.append(Linear(width, h, activation=activation, dtype=dtype))
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = h
    layers.append(Linear(width, num_classes, dtype=dtype))
    return Sequential(*layers)


def lenet5(num_classes=10, *, dtype="float32"):
    """LeNet-5 (LeCun et al., 1998) with ReLU and max pooling, for 1 x 28 x 28 inputs:
    conv5x5-6, pool 2, conv5x5-16, pool 2, 256 -> 120 -> 84 -> classes."""
    dtype = _dtype(dtype, "lenet5")
    return Sequential(
        Conv2d(1, 6, 5, activation="relu", dtype=dtype),
        MaxPool2d(2),
        Conv2d(6, 16, 5, activation="relu", dtype=dtype),
        MaxPool2d(2),
        Flatten(),
        Linear(16 * 4 * 4, 120, activation="relu", dtype=dtype),
        Linear(120, 84, activation="relu", dtype=dtype),
        Linear(84, num_classes, dtype=dtype),
    )


def cnn_small(num_classes=10, dropout=0.0, *, channels=(32, 64), dtype="float32"):
    """conv3x3-C1, ReLU, max pool 2, conv3x3-C2, ReLU, max pool 2, linear 128, linear classes
    (padding 1, so 28 -> 14 -> 7), for 1 x 28 x 28 inputs; ``channels`` = (C1, C2)."""
    c1, c2 = _channels(channels)
    dropout, dtype = _dropout(dropout, "cnn_small"), _dtype(dtype, "cnn_small")
    layers = [
        Conv2d(1, c1, 3, padding=1, activation="relu", dtype=dtype),
        MaxPool2d(2),
        Conv2d(c1, c2, 3, padding=1, activation="relu", dtype=dtype),
        MaxPool2d(2),
        Flatten(),
        Linear(c2 * 7 * 7, 128, activation="relu", dtype=dtype),
    ]
    if dropout > 0:
        layers.append(Dropout(dropout))
    layers.append(Linear(128, num_classes, dtype=dtype))
    return Sequential(*layers)


def _channels(channels):
    """(C1, C2) from a pair of positive whole numbers (_validate's errors otherwise)."""
    try:
        c1, c2 = channels
    except (TypeError, ValueError):
        raise TypeError(f"cnn_small: channels must be a pair (C1, C2), got {channels!r}") from None
    return tuple(integer(c, "channels", "cnn_small", low=1) for c in (c1, c2))


MODELS = {"mlp": mlp, "lenet5": lenet5, "cnn": cnn_small, "cnn_small": cnn_small}
