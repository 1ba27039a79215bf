"""One validation policy for arguments, used by every public entry point (a leaf: no nnfast
imports).

- A value of the wrong *type* is a TypeError: a string, None, a bool where a number is wanted,
  a float (even 2.0) where a whole number is wanted. Numbers are never parsed from strings and
  never truncated (``int(2.5)`` is not how a batch size is chosen).
- A value of the right type but outside its range (NaN and infinities included, unless allowed)
  is a ValueError.

Every message starts with ``what`` (the function or class the user called) and names the
argument: ``"SGD: lr must be finite and >= 0, got nan"``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import operator

import numpy as np

__all__ = ["flag", "integer", "one_of", "real"]


@contextlib.contextmanager
def saved_data():
    """Checks of a saved state (load_state_dict): it is data, so a value of the wrong type is a
    bad value, a ValueError like the others."""
    try:
        yield
    except TypeError as err:
        raise ValueError(str(err)) from None


def _got(value) -> str:
    if value is None:
        return "None"
    text = repr(value)
    return f"a {type(value).__name__} {text if len(text) <= 60 else text[:60] + '...'}"


def integer(value, name: str, what: str, *, low=None, high=None, kinds="an int") -> int:
    """``value`` as a Python int in [low, high] (None: unbounded).

    TypeError unless it is an integer (Python or numpy; bool, 3.0 and "3" are refused),
    ValueError outside the range. ``kinds`` says what is accepted, in the TypeError's message.
    """
    if isinstance(value, bool):
        raise TypeError(f"{what}: {name} must be {kinds}, got {_got(value)}")
    try:  # operator.index refuses 2.5, 2.0 and "3", which int() would truncate or parse
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{what}: {name} must be {kinds}, got {_got(value)}") from None
    if (low is not None and v < low) or (high is not None and v > high):
        shown = v if abs(v) < 10**30 else f"{str(v)[:20]}... ({len(str(v))} digits)"
        raise ValueError(f"{what}: {name} must be a whole number {_range(low, high)}, got {shown}")
    return v


def real(
    value, name: str, what: str, *, low=None, high=None, low_open=False, high_open=False,
    finite=True,
) -> float:  # fmt: skip
    """``value`` as a Python float within the bounds (``low_open``/``high_open``: exclusive).

    TypeError unless it is a real number (Python or numpy ints and floats; bool and strings
    are refused), ValueError for NaN, for infinities when ``finite``, and outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what}: {name} must be a real number, got {_got(value)}")
    v = float(value)
    bad = math.isnan(v) or (finite and math.isinf(v))
    if low is not None:
        bad = bad or (v <= low if low_open else v < low)
    if high is not None:
        bad = bad or (v >= high if high_open else v > high)
    if bad:
        cond = _range(low, high, low_open, high_open)
        cond = f"finite and {cond}" if finite and cond != "finite" else cond
        raise ValueError(f"{what}: {name} must be {cond}, got {v}")
    return v


def flag(value, name: str, what: str) -> bool:
    """``value`` as a bool if it is one (numpy's too), else TypeError: the strings 'no' and
    'False' and None were taken for True, False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what}: {name} must be True or False, got {value!r}")
    return bool(value)


def one_of(value, name: str, what: str, options) -> object:
    """``value`` if it is one of ``options`` (compared with ==), else ValueError listing them
    (TypeError if it is not even of the options' type, such as None for a string choice)."""
    options = tuple(options)
    kinds = tuple({type(o) for o in options})
    if not isinstance(value, kinds):
        raise TypeError(f"{what}: {name} must be one of {list(options)}, got {_got(value)}")
    if value not in options:
        raise ValueError(f"{what}: {name} must be one of {list(options)}, got {value!r}")
    return value


def _fmt(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _range(low, high, low_open=False, high_open=False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_fmt(low)}, {_fmt(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_fmt(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_fmt(high)}"
    return "finite"
