"""Save and load models: one ``.npz`` with every parameter and buffer, plus a JSON record of the
architecture, so a model is rebuilt without the code that made it. Never pickled.

The record (array ``__nnfast__``) holds the format version, the dtype and a tree of
``{"type": class name, "config": constructor arguments, "modules": [children]}``; types are
looked up in ``nnfast.nn.MODULES`` (register your own with ``nnfast.nn.register``).
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from .nn.module import MODULES, Module, Sequential

FORMAT = "nnfast"
VERSION = 1
RECORD_KEY = "__nnfast__"


def architecture(model: Module) -> dict:
    """The JSON-serialisable record that :func:`build` turns back into an equal module."""
    name = type(model).__name__
    if MODULES.get(name) is not type(model):
        raise ValueError(
            f"save: {name} is not a registered module type; decorate it with "
            f"@nnfast.nn.register and give it get_config()"
        )
    rec = {"type": name, "config": model.get_config()}
    if isinstance(model, Sequential):
        rec["modules"] = [architecture(m) for m in model]
    return rec


def build(record: dict) -> Module:
    """A freshly initialised module from an :func:`architecture` record."""
    if not isinstance(record, dict) or "type" not in record:
        raise ValueError(f"load: malformed architecture record {record!r}")
    name = record["type"]
    cls = MODULES.get(name)
    if cls is None:
        raise ValueError(f"load: unknown layer type {name!r}; known types: {sorted(MODULES)}")
    config = record.get("config", {})
    if issubclass(cls, Sequential):
        return cls(*[build(r) for r in record.get("modules", [])])
    try:
        return cls(**config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"load: cannot build {name} from {config}: {err}") from None


def save(model: Module, path) -> None:
    """Write ``model`` to ``path`` (an ``.npz``) atomically: a temporary file in the same
    directory, then a rename, so ``path`` is never left half-written."""
    path = os.fspath(path)
    record = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": str(model.dtype or np.dtype(np.float32)),
        "architecture": architecture(model),
    }
    arrays = dict(model.state_dict())
    if RECORD_KEY in arrays:
        raise ValueError(f"save: an array may not be named {RECORD_KEY!r}")
    arrays[RECORD_KEY] = np.array(json.dumps(record))
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nnfast-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read(path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("it holds a single array, not an .npz archive")
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as err:  # zip, zlib, npy-header and pickle refusals all mean "not ours"
        raise ValueError(
            f"load: {path} is not a readable nnfast .npz file (truncated or another format: "
            f"{type(err).__name__}: {err})"
        ) from None


def load(path) -> Module:
    """Rebuild the model saved at ``path`` and load its arrays.

    Raises ValueError for a truncated or non-npz file, an unknown layer type, a missing array or
    a shape mismatch; the model is returned only when every array loaded.
    """
    path = os.fspath(path)
    arrays = _read(path)
    raw = arrays.pop(RECORD_KEY, None)
    if raw is None:
        raise ValueError(f"load: {path} has no {RECORD_KEY!r} record; it was not saved by nnfast")
    try:
        record = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise ValueError(f"load: {path} has a corrupt architecture record ({err})") from None
    if record.get("format") != FORMAT or record.get("version") != VERSION:
        raise ValueError(
            f"load: {path} has format {record.get('format')!r} version {record.get('version')!r}; "
            f"this nnfast reads {FORMAT!r} version {VERSION}"
        )
    model = build(record.get("architecture"))
    dtype = record.get("dtype", "float32")
    if dtype in ("float32", "float64") and model.dtype is not None and model.dtype != dtype:
        model.astype(dtype)
    try:
        model.load_state_dict(arrays, strict=True)
    except ValueError as err:
        raise ValueError(f"load: {path}: {err}") from None
    return model
