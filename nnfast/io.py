"""Save and load models: one ``.npz`` with every parameter and buffer, plus a JSON record of the
architecture, so a model is rebuilt without the code that made it. Never pickled.

The record (array ``__nnfast__``) holds the format version, the dtype, a tree of
``{"type": class name, "config": constructor arguments, "modules": [children]}`` (types are
looked up in ``nnfast.nn.MODULES``; register your own with ``nnfast.nn.register``) and optional
``metadata`` (JSON: the CLI stores the data set, class names, input shape and the input
normalisation there, read back with :func:`read_metadata`). Other array names that start with
``__`` are reserved for nnfast (a training checkpoint keeps its optimizer state there) and are
ignored by :func:`load`, so a checkpoint loads as a model.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .data._atomic import atomic_write
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


def build(record: dict, where: str = "architecture") -> Module:
    """A freshly initialised module from an :func:`architecture` record.

    ``where`` names the record in error messages (children are ``modules[i]`` below it).
    """

    def malformed(problem):
        return ValueError(f"load: malformed architecture record at {where}: {problem}")

    if not isinstance(record, dict) or "type" not in record:
        raise malformed(f"expected an object with a 'type', got {record!r}")
    name = record["type"]
    if not isinstance(name, str):
        raise malformed(f"'type' must be a string, got {name!r}")
    cls = MODULES.get(name)
    if cls is None:
        raise ValueError(f"load: unknown layer type {name!r}; known types: {sorted(MODULES)}")
    config = record.get("config", {})
    if not isinstance(config, dict):
        raise malformed(f"'config' must be an object, got {config!r}")
    if issubclass(cls, Sequential):
        modules = record.get("modules", [])
        if not isinstance(modules, list):
            raise malformed(f"'modules' must be a list, got {modules!r}")
        return cls(*[build(r, f"{where}.modules[{i}]") for i, r in enumerate(modules)])
    # the record is untrusted: any failure (a bad argument, a layer too large to allocate) means
    # the file is malformed, not that the caller's code is wrong
    try:
        return cls(**config)
    except Exception as err:
        raise malformed(f"cannot build {name} from {config}: {type(err).__name__}: {err}") from err


def model_arrays(model: Module, metadata=None) -> dict:
    """The arrays :func:`save` writes: ``model.state_dict()`` plus the JSON record."""
    record = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": str(model.dtype or np.dtype(np.float32)),
        "architecture": architecture(model),
    }
    if metadata is not None:
        record["metadata"] = metadata
    arrays = dict(model.state_dict())
    reserved = [k for k in arrays if k.startswith("__")]
    if reserved:
        raise ValueError(f"save: array names starting with '__' are reserved, got {reserved}")
    arrays[RECORD_KEY] = np.array(json.dumps(record))
    return arrays


def write_npz(path, arrays: dict) -> None:
    """``np.savez(path, **arrays)`` atomically (a temporary file in the same directory, then a
    rename, so ``path`` is never left half-written); refuses arrays that numpy would pickle."""
    for name, a in arrays.items():
        dtype = np.asarray(a).dtype
        if dtype.hasobject:
            raise ValueError(
                f"save: array {name!r} has dtype {dtype}, which numpy stores only by pickling; "
                f"nnfast files are never pickled"
            )
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def save(model: Module, path, metadata=None) -> None:
    """Write ``model`` to ``path`` (an ``.npz``) atomically, never leaving it half-written.

    ``metadata`` is an optional JSON-serialisable dict kept with the model (see
    :func:`read_metadata`).
    """
    write_npz(path, model_arrays(model, metadata))


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


def _json(path, raw, what: str, name: str) -> dict:
    """A JSON record stored as a 0-d string array; ValueError naming ``what`` if corrupt."""
    try:
        record = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise ValueError(f"{what}: {path} has a corrupt {name} record ({err})") from None
    if not isinstance(record, dict):
        raise ValueError(
            f"{what}: {path} has a malformed {name} record: a JSON {type(record).__name__}, "
            f"not an object"
        )
    return record


def _record(path, arrays) -> dict:
    raw = arrays.pop(RECORD_KEY, None)
    if raw is None:
        raise ValueError(f"load: {path} has no {RECORD_KEY!r} record; it was not saved by nnfast")
    record = _json(path, raw, "load", "architecture")
    if record.get("format") != FORMAT or record.get("version") != VERSION:
        raise ValueError(
            f"load: {path} has format {record.get('format')!r} version {record.get('version')!r}; "
            f"this nnfast reads {FORMAT!r} version {VERSION}"
        )
    if not isinstance(record.get("metadata", {}), (dict, type(None))):
        raise ValueError(
            f"load: {path} has a malformed architecture record: 'metadata' must be an object, "
            f"got {record['metadata']!r}"
        )
    return record


def read_metadata(path) -> dict:
    """The ``metadata`` dict saved with the model at ``path`` (empty if none was given)."""
    path = os.fspath(path)
    return dict(_record(path, _read(path)).get("metadata") or {})


def load(path) -> Module:
    """Rebuild the model saved at ``path`` and load its arrays.

    Raises ValueError for a truncated or non-npz file, an unknown layer type, a missing array or
    a shape mismatch; the model is returned only when every array loaded.
    """
    path = os.fspath(path)
    arrays = _read(path)
    record = _record(path, arrays)
    arrays = {k: v for k, v in arrays.items() if not k.startswith("__")}
    model = build(record.get("architecture"))
    dtype = record.get("dtype", "float32")
    if dtype in ("float32", "float64") and model.dtype is not None and model.dtype != dtype:
        model.astype(dtype)
    try:
        model.load_state_dict(arrays, strict=True)
    except ValueError as err:
        raise ValueError(f"load: {path}: {err}") from None
    return model
