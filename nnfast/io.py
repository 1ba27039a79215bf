"""Save and load models: an ``.npz`` with every parameter and buffer plus a JSON record of the
architecture, or a ``.safetensors`` file under the names of the equivalent ``torch.nn.Sequential``
(the format follows the suffix). A model is rebuilt without the code that made it. Never
pickled.

The record (array ``__nnfast__`` of an ``.npz``; ``__metadata__["nnfast"]`` of a safetensors
header) holds the format version, the dtype, a tree of ``{"type": class name, "config":
constructor arguments, "modules": [children]}`` (types are looked up in ``nnfast.nn.MODULES``;
register your own with ``nnfast.nn.register``) and optional ``metadata`` (JSON: the CLI stores
the data set, class names, input shape and the input normalisation there, read back with
:func:`read_metadata`). Other ``.npz`` array names that start with ``__`` are reserved for nnfast
(a training checkpoint keeps its optimizer state there) and are ignored by :func:`load`, so a
checkpoint loads as a model.

Files are untrusted. A reader reads the record first, compares the shapes it implies with the
array headers and the sizes the archive declares, and only then builds the model and
decompresses arrays; so a small file cannot make it allocate gigabytes (a record declaring a
huge layer, a compressed bomb). Every malformed file is a ValueError naming it.
"""

from __future__ import annotations

import inspect
import json
import math
import operator
import os
import zipfile
import zlib

import numpy as np

from ._atomic import atomic_write
from .nn.module import MODULES, Module, Sequential

FORMAT = "nnfast"
VERSION = 1
RECORD_KEY = "__nnfast__"
SAFETENSORS_SUFFIX = ".safetensors"

#: The JSON records of a file are read whole: larger ones are refused unread.
MAX_RECORD_BYTES = 16 << 20
#: A compressed ``.npz`` member larger than 1 MiB may expand at most this much (trained weights
#: compress by less than 2x; zeros by 1000x, which is how a compressed bomb is made).
MAX_COMPRESSION_RATIO = 100


# --- the architecture record ---------------------------------------------------------------------
def architecture(model: Module) -> dict:
    """The JSON-serialisable record that :func:`build` turns back into an equal module."""
    name = type(model).__name__
    if MODULES.get(name) is not type(model):
        raise ValueError(
            f"save: {name} is not a registered module type; decorate it with "
            f"@nnfast.nn.register and give it get_config()"
        )
    config = model.get_config()
    if not isinstance(model, Sequential):  # a file load could not rebuild: refused at save
        try:
            inspect.signature(type(model)).bind(**config)
        except TypeError as err:
            raise ValueError(f"save: {name} cannot be rebuilt from its get_config() {config!r} "
                             f"({err}); give it a get_config() of its constructor's "
                             f"arguments") from None  # fmt: skip
    rec = {"type": name, "config": config}
    if isinstance(model, Sequential):
        rec["modules"] = [architecture(m) for m in model]
    return rec


def architecture_difference(a, b, where="model"):
    """Where two architecture records first differ (``a``'s module, then ``b``'s), or None."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return where if a != b else None
    if a.get("type") != b.get("type") or a.get("config") != b.get("config"):
        return f"{where}: {a.get('type')}({a.get('config')}) against {b.get('type')}" \
               f"({b.get('config')})"  # fmt: skip
    ma, mb = a.get("modules", []), b.get("modules", [])
    if len(ma) != len(mb):
        return f"{where}: {len(ma)} modules against {len(mb)}"
    return next((d for i, (x, y) in enumerate(zip(ma, mb))
                 if (d := architecture_difference(x, y, f"{where}[{i}]"))), None)  # fmt: skip


def _malformed(where, problem):
    return ValueError(f"load: malformed architecture record at {where}: {problem}")


def _checked_node(record, where):
    """(class, config) of one record node, or ValueError naming ``where``."""
    if not isinstance(record, dict) or "type" not in record:
        raise _malformed(where, f"expected an object with a 'type', got {_short(record)}")
    name = record["type"]
    if not isinstance(name, str):
        raise _malformed(where, f"'type' must be a string, got {_short(name)}")
    cls = MODULES.get(name)
    if cls is None:
        raise ValueError(f"load: unknown layer type {name!r}; known types: {sorted(MODULES)}")
    if "config" not in record and not issubclass(cls, Sequential):
        # architecture() writes every layer's: without it the layer would get its defaults
        raise _malformed(where, f"{name} has no 'config'")
    config = record.get("config", {})
    if not isinstance(config, dict):
        raise _malformed(where, f"'config' must be an object, got {_short(config)}")
    if issubclass(cls, Sequential):
        modules = record.get("modules", [])
        if not isinstance(modules, list):
            raise _malformed(where, f"'modules' must be a list, got {_short(modules)}")
    return cls, config


def build(record: dict, where: str = "architecture") -> Module:
    """A freshly initialised module from an :func:`architecture` record.

    ``where`` names the record in error messages (children are ``modules[i]`` below it).
    """
    cls, config = _checked_node(record, where)
    if issubclass(cls, Sequential):
        modules = record.get("modules", [])
        return cls(*[build(r, f"{where}.modules[{i}]") for i, r in enumerate(modules)])
    # the record is untrusted: any failure (a bad argument, a layer too large to allocate) means
    # the file is malformed, not that the caller's code is wrong
    try:
        return cls(**config)
    except Exception as err:
        raise _malformed(
            where, f"cannot build {cls.__name__} from {config}: {type(err).__name__}: {err}"
        ) from err


def implied_shapes(record: dict, where: str = "architecture", prefix: str = ""):
    """``{state_dict name: shape}`` that the record's modules will have, computed from their
    configs without building them; None when a module type does not say (``state_shapes``)."""
    cls, config = _checked_node(record, where)
    if issubclass(cls, Sequential):
        out = {}
        for i, r in enumerate(record.get("modules", [])):
            sub = implied_shapes(r, f"{where}.modules[{i}]", f"{prefix}{i}.")
            if sub is None:
                return None
            out.update(sub)
        return out
    try:
        shapes = cls.state_shapes(config)
    except (TypeError, ValueError, KeyError) as err:  # build() reports the bad argument
        raise _malformed(
            where, f"cannot build {cls.__name__} from {config}: {type(err).__name__}: {err}"
        ) from None
    if shapes is None:
        return None
    return {prefix + k: tuple(operator.index(d) for d in v) for k, v in shapes.items()}


def _short(x, limit=200) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[:limit] + "..."


# --- writing -------------------------------------------------------------------------------------
def jsonable(x):
    """``json.dumps``'s ``default``: numpy scalars as Python numbers, tuples and sets as lists;
    anything else a TypeError naming it."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (tuple, set)):
        return list(x)
    raise TypeError(f"cannot store {type(x).__name__} {x!r} as JSON")


def record_json(what: str, name: str, value) -> str:
    """``value`` (a dict, as a JSON object) as JSON text, else TypeError naming ``name``: a file
    written with another kind of record is one that nnfast cannot read back."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError(f"{what}: {name} must be a dict with str keys (a JSON object), got "
                        f"{type(value).__name__}")  # fmt: skip
    try:
        return json.dumps(value, default=jsonable, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what}: {name} is not JSON-serialisable ({err})") from None


def _record(model: Module, metadata) -> dict:
    if metadata is not None:
        metadata = json.loads(record_json("save", "metadata", metadata))
    record = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": str(model.dtype or np.dtype(np.float32)),
        "architecture": architecture(model),
    }
    if metadata is not None:
        record["metadata"] = metadata
    return record


def model_arrays(model: Module, metadata=None) -> dict:
    """The arrays :func:`save` writes to an ``.npz``: ``model.state_dict()`` plus the record."""
    arrays = dict(model.state_dict())
    reserved = [k for k in arrays if k.startswith("__")]
    if reserved:
        raise ValueError(f"save: array names starting with '__' are reserved, got {reserved}")
    arrays[RECORD_KEY] = np.array(json.dumps(_record(model, metadata)))
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


def _safetensors():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ImportError(
            "reading and writing .safetensors files needs the safetensors package: pip install "
            '"nnfast[safetensors]"'
        ) from None
    return safetensors


#: safetensors has no checksum of its own (a zip's members have CRC-32s): a flipped bit in a
#: weight or in the record loaded as another model. nnfast's files keep one in the header.
CRC_KEY = "nnfast_crc32"


def _crc32(record: str, tensors: dict) -> str:
    """CRC-32 of the record and of every tensor's name and bytes, in name order, as hex."""
    crc = zlib.crc32(record.encode())
    for name in sorted(tensors):
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(np.ascontiguousarray(tensors[name]).view(np.uint8).reshape(-1), crc)
    return f"{crc:08x}"


def _is_safetensors(path) -> bool:
    return os.fspath(path).lower().endswith(SAFETENSORS_SUFFIX)


def input_shape(model: Module, metadata: dict):
    """The shape of one input the model was saved for: the metadata's ``input_shape`` (which
    ``nnfast train`` records, and ``save(..., metadata={"input_shape": [784]})`` can), else
    ``[in_features]`` when the first layer is a Linear, else None."""
    if "input_shape" in metadata:
        return metadata["input_shape"]
    first = next((m for m in model.modules() if not isinstance(m, Sequential)), None)
    width = getattr(first, "in_features", None)
    return None if width is None else [width]


def save(model: Module, path, metadata=None) -> None:
    """Write ``model`` to ``path`` atomically, never leaving it half-written.

    ``path`` ending in ``.safetensors`` writes a safetensors file whose tensors have the
    state_dict names of the equivalent ``torch.nn.Sequential`` (see
    ``Module.torch_state_dict_names``; ``nnfast.export.torch_code`` prints that model), with
    the architecture record in the header's ``__metadata__``; it needs the ``safetensors``
    package. Any other path is an ``.npz``.

    ``metadata`` is an optional JSON-serialisable dict kept with the model (see
    :func:`read_metadata`).
    """
    if not isinstance(model, Module):
        raise TypeError(f"save: model must be an nnfast Module, got {type(model).__name__}")
    if not _is_safetensors(path):
        write_npz(path, model_arrays(model, metadata))
        return
    st = _safetensors()
    names = model.torch_state_dict_names()
    tensors = {names[k]: v for k, v in model.state_dict().items()}  # copies: contiguous
    record = json.dumps(_record(model, metadata))
    header = {"format": FORMAT, RECORD_KEY: record, CRC_KEY: _crc32(record, tensors)}
    data = st.numpy.save(tensors, metadata=header)
    with atomic_write(path) as f:
        f.write(data)


# --- reading -------------------------------------------------------------------------------------
def _not_readable(path, kind, err):
    return ValueError(
        f"load: {path} is not a readable nnfast {kind} file (truncated or another format: "
        f"{type(err).__name__}: {err})"
    )


def parse_json(path, raw, what: str, name: str) -> dict:
    """A JSON object from ``raw`` text; ValueError naming ``path`` and ``name`` if it is not
    one (corrupt, another JSON type, or nested too deeply to parse)."""
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as err:
        deep = isinstance(err, RecursionError)
        problem = "nested too deeply" if deep else f"that is corrupt ({err})"
        raise ValueError(f"{what}: {path} has a {name} record {problem}") from None
    if not isinstance(record, dict):
        raise ValueError(
            f"{what}: {path} has a malformed {name} record: a JSON {type(record).__name__}, "
            f"not an object"
        )
    return record


class ModelFile:
    """A model file opened for reading: the record is parsed and every array's shape and
    dtype are known from the headers, but no array has been read yet.

    ``open_model_file(path)`` makes one; :func:`load`, :func:`read_metadata` and
    ``nnfast.checkpoint`` read through it, so a file is opened and checked once.
    """

    def __init__(self, path, kind, record, headers, reader, check=None):
        self.path = path
        self.kind = kind  # "npz" or "safetensors"
        self.record = record
        self.headers = headers  # {name: (shape, dtype)} of every array in the file
        self._reader = reader
        self._check = check

    def check(self, arrays) -> None:
        """ValueError if ``arrays`` (every array of the file, as read) do not match the file's
        checksum; a zip checks its own members as they are read."""
        if self._check is not None:
            self._check(arrays)

    @property
    def metadata(self) -> dict:
        return dict(self.record.get("metadata") or {})

    def read(self, names) -> dict:
        """``{name: array}`` for ``names`` (decompressed and checked now)."""
        return self._reader(list(names))

    def json(self, name: str, what: str) -> dict:
        """The reserved JSON record array ``name`` (a checkpoint's), or None if absent."""
        if name not in self.headers:
            return None
        shape, dtype = self.headers[name]
        if shape != () or dtype.kind != "U":
            raise ValueError(f"{what}: {self.path} has a malformed {name} record")
        if dtype.itemsize > MAX_RECORD_BYTES:
            raise ValueError(f"{what}: {self.path} has a {name} record over {MAX_RECORD_BYTES} B")
        return parse_json(self.path, str(self.read([name])[name]), what, name)


def _npy_header(f):
    """(shape, fortran_order, dtype, header length) of the .npy stream ``f``."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not supported")
    return shape, fortran, dtype, f.tell()


def _open_npz(path) -> ModelFile:
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except Exception as err:  # BadZipFile, EOFError, NotImplementedError (a corrupt version)...
        raise _not_readable(path, ".npz", err) from None
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"load: {path} holds the members {dup} more than once")
        members, headers = {}, {}
        try:
            for info in infos:
                name = info.filename
                if not name.endswith(".npy"):
                    raise ValueError(f"member {name!r} is not a .npy array")
                key = name[:-4]
                big = info.file_size > (1 << 20)
                if big and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
                    raise ValueError(
                        f"member {name!r} expands from {info.compress_size} to {info.file_size} "
                        f"bytes (a compressed bomb?)"
                    )
                with zf.open(info) as f:
                    shape, fortran, dtype, hlen = _npy_header(f)
                if dtype.hasobject:
                    raise ValueError(f"array {key!r} holds Python objects (would need pickle)")
                nbytes = math.prod(shape) * dtype.itemsize
                if nbytes != info.file_size - hlen:
                    raise ValueError(
                        f"array {key!r} declares {nbytes} bytes of data but the archive holds "
                        f"{info.file_size - hlen}"
                    )
                members[key] = info
                headers[key] = (tuple(shape), dtype)
        except ValueError as err:
            raise _not_readable(path, ".npz", err) from None
        except Exception as err:  # zip, zlib and header errors all mean "not ours"
            raise _not_readable(path, ".npz", err) from None
        if RECORD_KEY not in members:
            raise ValueError(
                f"load: {path} has no {RECORD_KEY!r} record; it was not saved by nnfast"
            )
        if members[RECORD_KEY].file_size > MAX_RECORD_BYTES:
            raise ValueError(f"load: {path} has an architecture record over {MAX_RECORD_BYTES} B")

    def reader(keys):
        out = {}
        try:
            with zipfile.ZipFile(path) as z:
                for key in keys:
                    with z.open(members[key]) as f:
                        out[key] = np.lib.format.read_array(f, allow_pickle=False)
                    if out[key].shape != headers[key][0]:
                        raise ValueError(f"array {key!r} is truncated")
        except Exception as err:
            raise _not_readable(path, ".npz", err) from None
        return out

    raw = reader([RECORD_KEY])[RECORD_KEY]
    if raw.shape != () or raw.dtype.kind != "U":
        raise ValueError(f"load: {path} has a malformed architecture record (not a string)")
    record = _checked_record(path, parse_json(path, str(raw), "load", "architecture"))
    return ModelFile(path, "npz", record, headers, reader)


def _open_safetensors(path) -> ModelFile:
    st = _safetensors()
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with st.safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            headers = {}
            for k in f.keys():
                sl = f.get_slice(k)
                headers[k] = (tuple(sl.get_shape()), sl.get_dtype())
    except Exception as err:
        raise _not_readable(path, ".safetensors", err) from None
    raw = meta.get(RECORD_KEY)
    if raw is None:
        raise ValueError(
            f"load: {path} has no nnfast architecture record (written by another program?); "
            f"build the equivalent model and call "
            f"model.load_state_dict(safetensors.numpy.load_file(path))"
        )
    if len(raw) > MAX_RECORD_BYTES:
        raise ValueError(f"load: {path} has an architecture record over {MAX_RECORD_BYTES} B")
    record = _checked_record(path, parse_json(path, raw, "load", "architecture"))

    def reader(keys):
        try:
            with st.safe_open(path, framework="np") as f:
                return {k: f.get_tensor(k) for k in keys}
        except Exception as err:
            raise _not_readable(path, ".safetensors", err) from None

    def check(arrays):
        saved = meta.get(CRC_KEY)  # files of nnfast before it wrote one have none
        if saved is not None and saved != _crc32(raw, arrays):
            raise ValueError(f"load: {path} is corrupt: its weights or architecture record do "
                             f"not match the checksum saved with them")  # fmt: skip

    return ModelFile(path, "safetensors", record, headers, reader, check)


def _checked_record(path, record) -> dict:
    if record.get("format") != FORMAT or record.get("version") != VERSION:
        raise ValueError(
            f"load: {path} has format {_short(record.get('format'))} version "
            f"{_short(record.get('version'))}; this nnfast reads {FORMAT!r} version {VERSION}"
        )
    if not isinstance(record.get("metadata", {}), (dict, type(None))):
        raise ValueError(
            f"load: {path} has a malformed architecture record: 'metadata' must be an object, "
            f"got {_short(record['metadata'])}"
        )
    return record


def open_model_file(path) -> ModelFile:
    """Open ``path`` (``.npz`` or ``.safetensors``, by suffix) for reading: see
    :class:`ModelFile`. FileNotFoundError if it does not exist, else ValueError for anything
    malformed."""
    path = os.fspath(path)
    return _open_safetensors(path) if _is_safetensors(path) else _open_npz(path)


def read_metadata(path) -> dict:
    """The ``metadata`` dict saved with the model at ``path`` (empty if none was given); reads
    only the record, never the arrays."""
    return open_model_file(path).metadata


def load(path) -> Module:
    """Rebuild the model saved at ``path`` (``.npz`` or ``.safetensors``) and load its arrays.

    Raises ValueError for a truncated or foreign file, an unknown layer type, a missing array or
    a shape mismatch; the model is returned only when every array loaded.
    """
    return load_model_file(open_model_file(path))


def load_model_file(mf: ModelFile) -> Module:
    """The model of an opened :class:`ModelFile` (see :func:`load`)."""
    path, arch = mf.path, mf.record.get("architecture")
    dtype = mf.record.get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"load: {path} has dtype {_short(dtype)}; expected float32 or float64")
    shapes = _from_record(path, implied_shapes, arch)
    present = {k: v[0] for k, v in mf.headers.items() if not k.startswith("__")}
    if shapes is not None:  # compare before building: the record may declare huge layers
        _compare_shapes(path, mf.kind, shapes, present)
    model = _from_record(path, build, arch)
    if model.dtype is not None and model.dtype != dtype:
        model.astype(dtype)
    names = list(present)
    arrays = mf.read(names)
    mf.check(arrays)
    _follow_saved_dtypes(model, arrays)
    try:
        model.load_state_dict(arrays, strict=True)
    except ValueError as err:
        raise ValueError(f"load: {path}: {err}") from None
    return model


def _from_record(path, step, arch):
    """``step(arch)`` (implied_shapes or build), its errors about the record (an unknown layer
    type, a malformed node, nesting too deep) naming the file."""
    try:
        return step(arch)
    except RecursionError:
        raise ValueError(f"load: {path} has an architecture record nested too deeply") from None
    except ValueError as err:
        msg = str(err)
        msg = msg[len("load: ") :] if msg.startswith("load: ") else msg
        raise ValueError(f"load: {path}: {msg}") from None


def _follow_saved_dtypes(model: Module, arrays: dict) -> None:
    """Each module whose own floating-point arrays were all saved in the other float dtype
    takes it, so that a model of mixed dtypes, or buffers without parameters (the record's
    dtype is the first parameter's), load as they were saved rather than converted."""
    arrays, _ = model._nnfast_names(arrays)
    for prefix, m in model.named_modules():
        own = [f"{prefix}.{k}" if prefix else k for k in (*m._parameters, *m._buffers)]
        saved = {arrays[k].dtype for k in own if k in arrays and arrays[k].dtype.kind == "f"}
        if len(saved) != 1:
            continue
        (dtype,) = saved
        mine = (*(p.data for p in m._parameters.values()), *m._buffers.values())
        now = {a.dtype for a in mine if isinstance(a, np.ndarray) and a.dtype.kind == "f"}
        if dtype in (np.float32, np.float64) and now != {dtype}:
            m.astype(dtype)


def _compare_shapes(path, kind, shapes, present):
    """ValueError unless the arrays present are those the record implies (by name in an .npz;
    a safetensors file holds torch names, compared as a multiset of shapes)."""
    if kind == "npz":
        missing = sorted(set(shapes) - set(present))
        unexpected = sorted(set(present) - set(shapes))
        if missing or unexpected:
            raise ValueError(
                f"load: {path}: missing arrays {missing}, unexpected arrays {unexpected}"
            )
        for k, shape in shapes.items():
            if present[k] != shape:
                raise ValueError(
                    f"load: {path}: {k} has shape {present[k]} but the architecture record "
                    f"implies {shape}"
                )
        return
    want, have = sorted(shapes.values()), sorted(present.values())
    if want != have:
        raise ValueError(
            f"load: {path}: the architecture record implies {len(want)} tensors of "
            f"{sum(math.prod(s) for s in want)} values, the file holds {len(have)} tensors of "
            f"{sum(math.prod(s) for s in have)}"
        )
