"""Hostile files: every reader is fed mutated files (bytes flipped, cut, inserted, dropped;
records rewritten with arbitrary JSON). The only outcome allowed is the documented exception
(ValueError, or IDXError, a ValueError, for IDX files): never a crash, a hang or another
exception type. Bounded and derandomized, so the suite stays fast and CI stable."""

import json
import os
import tempfile
from io import BytesIO

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import nnfast  # noqa: E402
from nnfast import io as nio  # noqa: E402
from nnfast import nn, optim  # noqa: E402
from nnfast.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from nnfast.data import IDXError, read_idx, write_idx  # noqa: E402

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _model():
    nnfast.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, activation="relu"),
        nn.BatchNorm2d(2),
        nn.Flatten(),
        nn.Linear(8, 3, activation="tanh"),
        nn.PReLU(3),
    )


def _bytes_of(write, suffix):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f" + suffix)
        write(path)
        with open(path, "rb") as f:
            return f.read()


@st.composite
def _mutated(draw, base: bytes):
    """``base`` with a few byte edits, biased towards the first and last 600 bytes (headers,
    a zip's central directory), where a format's sizes and offsets live."""
    data = bytearray(base)
    n = draw(st.integers(1, 4))
    for _ in range(n):
        if not data:
            break
        top = len(data) - 1
        pos = draw(
            st.one_of(
                st.integers(0, min(top, 600)),
                st.integers(max(0, top - 600), top),
                st.integers(0, top),
            )
        )
        kind = draw(st.sampled_from(["set", "flip", "cut", "insert", "delete", "zero4"]))
        if kind == "set":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        else:  # a size field set to something huge
            data[pos : pos + 4] = b"\xff\xff\xff\x7f"
    return bytes(data)


def _read_mutated(data: bytes, suffix: str, reader, allowed=ValueError):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f" + suffix)
        with open(path, "wb") as f:
            f.write(data)
        try:
            reader(path)
        except allowed:
            pass


NPZ = _bytes_of(lambda p: nio.save(_model(), p, metadata={"dataset": "mnist"}), ".npz")


@FUZZ
@given(_mutated(NPZ))
def test_fuzz_npz_model_files(data):
    _read_mutated(data, ".npz", nio.load)
    _read_mutated(data, ".npz", nio.read_metadata)


def _write_checkpoint(path):
    model = _model()
    opt = optim.Adam(model.parameters())
    save_checkpoint(path, model, opt, state={"epoch": 1})


CKPT = _bytes_of(_write_checkpoint, ".npz")


def _load_ckpt(path):
    model = _model()
    load_checkpoint(path, model, optim.Adam(model.parameters()))
    load_checkpoint(path)


@FUZZ
@given(_mutated(CKPT))
def test_fuzz_checkpoints(data):
    _read_mutated(data, ".npz", _load_ckpt)


pytest.importorskip("safetensors")
SAFETENSORS = _bytes_of(lambda p: nio.save(_model(), p), ".safetensors")


@FUZZ
@given(_mutated(SAFETENSORS))
def test_fuzz_safetensors(data):
    _read_mutated(data, ".safetensors", nio.load)


IDX_PLAIN = _bytes_of(lambda p: write_idx(p, np.arange(60, dtype=np.uint8).reshape(3, 4, 5)), "")
IDX_FLOAT = _bytes_of(lambda p: write_idx(p, np.linspace(0, 1, 12).reshape(3, 4)), "")
IDX_GZ = _bytes_of(lambda p: write_idx(p, np.arange(60, dtype=np.int16).reshape(6, 10)), ".gz")


@FUZZ
@given(st.one_of(_mutated(IDX_PLAIN), _mutated(IDX_FLOAT), _mutated(IDX_GZ)))
def test_fuzz_idx(data):
    _read_mutated(data, ".idx", read_idx, IDXError)


# --- the JSON records, rewritten with arbitrary JSON ------------------------------------------
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.sampled_from(["Linear", "Conv2d", "Sequential", "BatchNorm2d", "relu", "float64"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node, prefix=()):
    """Every (path of keys) inside a JSON tree."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


with np.load(BytesIO(NPZ)) as _z:
    ARRAYS = {k: _z[k] for k in _z.files}
RECORD = json.loads(str(ARRAYS["__nnfast__"]))
RECORD_PATHS = list(_paths(RECORD))


@FUZZ
@given(st.sampled_from(RECORD_PATHS), _json)
def test_fuzz_architecture_records(where, value):
    record = json.loads(json.dumps(RECORD))
    if where:
        node = record
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = value
    else:
        record = value
    arrays = {**ARRAYS, "__nnfast__": np.array(json.dumps(record))}

    def write(path):
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    data = _bytes_of(write, ".npz")
    _read_mutated(data, ".npz", nio.load)


@pytest.mark.parametrize("depth", [600, 5000])
def test_deeply_nested_record_is_a_value_error_naming_the_file(tmp_path, depth):
    """Deep enough to exhaust the recursion of the JSON parser (5000) or of the model
    builder (600): a ValueError naming the file, not a RecursionError."""
    arch = '{"type": "Sequential", "modules": [' * depth + "]}" * depth
    text = json.dumps({**RECORD, "architecture": None}).replace(
        '"architecture": null', f'"architecture": {arch}'
    )
    path = tmp_path / "deep.npz"
    with open(path, "wb") as f:
        np.savez(f, **{**ARRAYS, "__nnfast__": np.array(text)})
    with pytest.raises(ValueError, match=r"deep\.npz.*nested too deeply"):
        nio.load(path)
