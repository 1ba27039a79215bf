"""nnfast.io: round trip, atomic writes, and every corrupt-file case is a clear ValueError."""

import json
import os

import numpy as np
import pytest

import nnfast
import nnfast.io as nio
from nnfast import nn


def _model(dtype="float32"):
    nnfast.manual_seed(3)
    m = nn.Sequential(
        nn.Flatten(),
        nn.Linear(12, 8, activation="gelu"),
        nn.BatchNorm1d(8, momentum=0.2),
        nn.PReLU(8),
        nn.Dropout(0.1),
        nn.Linear(8, 6, bias=False, activation="leaky_relu"),
        nn.Maxout(2),
        nn.Linear(3, 2),
    )
    m(np.random.default_rng(0).standard_normal((16, 3, 4)).astype(np.float32))  # running stats
    return m.astype(dtype).eval()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_identical_predictions(tmp_path, dtype, rng):
    m = _model(dtype)
    path = tmp_path / "model.npz"
    nio.save(m, path)
    m2 = nio.load(path).eval()
    assert nio.architecture(m2) == nio.architecture(m)
    x = rng.standard_normal((5, 3, 4))
    np.testing.assert_array_equal(m(x), m2(x))
    assert m2.dtype == dtype
    assert not [f for f in os.listdir(tmp_path) if f != "model.npz"]  # no temporary left


def test_never_pickles(tmp_path):
    path = tmp_path / "m.npz"
    nio.save(_model(), path)
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
        json.loads(str(z["__nnfast__"]))


def _write(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_corrupt_files_raise_value_error(tmp_path):
    good = tmp_path / "good.npz"
    nio.save(_model(), good)
    data = good.read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"not a readable nnfast \.npz"):
        nio.load(bad)
    bad.write_bytes(b"hello, world" * 10)
    with pytest.raises(ValueError, match=r"not a readable nnfast \.npz"):
        nio.load(bad)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not a readable"):
        nio.load(tmp_path / "one.npy")

    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    record = json.loads(str(arrays["__nnfast__"]))

    record["architecture"]["modules"][1]["type"] = "Conv9d"
    _write(bad, **{**arrays, "__nnfast__": np.array(json.dumps(record))})
    with pytest.raises(ValueError, match="unknown layer type 'Conv9d'"):
        nio.load(bad)

    _write(bad, **{k: v for k, v in arrays.items() if k != "1.weight"})
    with pytest.raises(ValueError, match=r"missing arrays \['1.weight'\]"):
        nio.load(bad)

    _write(bad, **{**arrays, "7.bias": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"7.bias has shape \(3,\)"):
        nio.load(bad)

    _write(bad, **{k: v for k, v in arrays.items() if k != "__nnfast__"})
    with pytest.raises(ValueError, match="not saved by nnfast"):
        nio.load(bad)


def test_failed_save_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    nio.save(_model(), path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        nio.save(_model(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


def test_unregistered_module_is_refused(tmp_path):
    class Mine(nn.Identity):
        pass

    with pytest.raises(ValueError, match="not a registered module"):
        nio.save(nn.Sequential(Mine()), tmp_path / "x.npz")
