"""nnfast.io: round trip, atomic writes, and every corrupt-file case is a clear ValueError."""

import json
import os
import re
import stat
import tracemalloc
import zipfile

import numpy as np
import pytest

import nnfast
import nnfast.io as nio
from nnfast import nn, optim
from nnfast.checkpoint import load_checkpoint, save_checkpoint


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
    with zipfile.ZipFile(path) as zf:
        for member in zf.namelist():
            with zf.open(member) as f:
                version = np.lib.format.read_magic(f)
                read_header = getattr(np.lib.format, f"read_array_header_{version[0]}_0")
                assert not read_header(f)[2].hasobject, member
    with np.load(path, allow_pickle=False) as z:
        json.loads(str(z["__nnfast__"]))


def test_save_refuses_arrays_that_would_be_pickled(tmp_path, monkeypatch):
    class Tagged(nn.Identity):
        def __init__(self):
            super().__init__()
            self.register_buffer("tags", np.array(["a", 1], dtype=object))

    monkeypatch.setitem(nn.MODULES, "Tagged", Tagged)
    with pytest.raises(ValueError, match=r"'0\.tags'.*pickled"):
        nio.save(nn.Sequential(Tagged()), tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_saved_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with open(tmp_path / "plain", "wb"):
            pass
        nio.save(_model(), tmp_path / "m.npz")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)


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
    with pytest.raises(ValueError, match=r"load: .*bad\.npz: unknown layer type 'Conv9d'"):
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


def _arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _edit(path, record):
    """A copy of the model file at ``path`` with ``record(rec)`` applied to its JSON record."""
    arrays = _arrays(path)
    rec = json.loads(str(arrays["__nnfast__"]))
    rec = record(rec) or rec
    bad = path.with_name("bad.npz")
    _write(bad, **{**arrays, "__nnfast__": np.array(json.dumps(rec))})
    return bad


def _set(keys, value):
    def edit(rec):
        node = rec
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value

    return edit


HUGE = {"in_features": 10**7, "out_features": 10**7}  # 364 TiB of weights


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda rec: [1, 2], "a JSON list"),
        (lambda rec: 5, "a JSON int"),
        (_set(["architecture", "modules", 1, "type"], ["Linear"]), r"modules\[1\]: 'type'"),
        (_set(["architecture", "modules"], 5), "'modules' must be a list"),
        (_set(["architecture", "modules", 1, "config"], 5), "'config' must be an object"),
        (
            _set(["architecture", "modules", 1, "config"], {"in_features": "12"}),
            r"modules\[1\]: cannot build Linear",
        ),
        (_set(["metadata"], 5), "'metadata' must be an object"),
    ],
    ids=["list", "int", "type-list", "modules-int", "config-int", "huge-layer", "metadata-int"],
)
def test_malformed_records_raise_value_error(tmp_path, edit, match):
    good = tmp_path / "good.npz"
    nio.save(_model(), good)
    bad = _edit(good, edit)
    with pytest.raises(ValueError, match="malformed architecture record") as info:
        nio.load(bad)
    assert re.search(match, str(info.value))


@pytest.mark.parametrize("loss", [False, True], ids=["layers", "with a loss"])
def test_huge_declared_layers_are_refused_before_allocating(tmp_path, loss):
    """A record declaring layers far larger than its arrays is refused from the headers. A
    loss said nothing of its arrays, so a record holding one was built unchecked: a 1.4 KB file
    declaring Linear(6000, 6000) beside an MSELoss allocated 432 MB first."""
    good = tmp_path / "good.npz"
    nio.save(_model(), good)

    def edit(rec):
        _set(["architecture", "modules", 1, "config"], HUGE)(rec)
        if loss:
            rec["architecture"]["modules"].append({"type": "MSELoss", "config": {}})

    bad = _edit(good, edit)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"1.weight has shape \(8, 12\) but the architecture"):
            nio.load(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


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


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("metadata", ["abc", [1, 2], {1: "x"}, {"f": object()}])
def test_metadata_nnfast_cannot_read_back_is_refused_at_save(tmp_path, suffix, metadata):
    """Such files were written, then refused by load: 'metadata' must be an object."""
    path = tmp_path / f"m{suffix}"
    with pytest.raises(TypeError, match="save: metadata "):
        nnfast.io.save(nn.Linear(2, 2), path, metadata=metadata)
    assert not path.exists()


def test_numpy_scalars_in_metadata_are_stored_as_numbers(tmp_path):
    meta = {"mean": np.float32(0.5), "shape": (1, 28, 28), "n": np.int64(3)}
    nnfast.io.save(nn.Linear(2, 2), tmp_path / "m.npz", metadata=meta)
    assert nnfast.io.read_metadata(tmp_path / "m.npz") == {"mean": 0.5, "shape": [1, 28, 28],
                                                           "n": 3}  # fmt: skip


def test_checkpoint_records_nnfast_cannot_read_back_are_refused(tmp_path):
    from nnfast.callbacks import Checkpoint
    from nnfast.checkpoint import read_checkpoint_state

    with pytest.raises(TypeError, match="save_checkpoint: state must be a dict"):
        save_checkpoint(tmp_path / "c.npz", nn.Linear(2, 2), state="abc")
    with pytest.raises(TypeError, match=r"save_checkpoint: state is not JSON-serialisable"):
        save_checkpoint(tmp_path / "c.npz", nn.Linear(2, 2), state={"k": {1, 2j}})
    assert not (tmp_path / "c.npz").exists()
    for kw in ({"metadata": "x"}, {"state": [1, 2]}):
        with pytest.raises(TypeError, match=f"Checkpoint: {next(iter(kw))} must be a dict"):
            Checkpoint(tmp_path / "c.npz", **kw)
    save_checkpoint(tmp_path / "c.npz", nn.Linear(2, 2), state={"epoch": np.int64(2)})
    assert read_checkpoint_state(tmp_path / "c.npz") == {"epoch": 2}


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_each_module_loads_in_the_dtype_it_was_saved_in(tmp_path, suffix, rng):
    """The record's dtype is the first parameter's: a float64 layer after a float32 one, and
    float64 buffers without parameters, came back float32."""
    bn = nn.BatchNorm1d(3, affine=False, dtype="float64")
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3).astype(np.float64), bn)
    model(rng.random((8, 3)).astype(np.float32))  # running statistics of float64 values
    nnfast.io.save(model, tmp_path / f"m{suffix}")
    back = nnfast.io.load(tmp_path / f"m{suffix}")
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    x = rng.random((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(back.eval()(x), model.eval()(x))
    only = nn.Sequential(nn.BatchNorm1d(3, affine=False, dtype="float64"))
    nnfast.io.save(only, tmp_path / f"b{suffix}")
    assert nnfast.io.load(tmp_path / f"b{suffix}")[0].running_mean.dtype == np.float64


def test_unregistered_module_is_refused(tmp_path):
    class Mine(nn.Identity):
        pass

    with pytest.raises(ValueError, match="not a registered module"):
        nio.save(nn.Sequential(Mine()), tmp_path / "x.npz")


def _train_step(model, opt, seed):
    """One forward/backward/step on a random batch: the optimizer's step and momentum move."""
    x = np.random.default_rng(seed).standard_normal((5, 3, 4)).astype(np.float32)
    opt.zero_grad()
    y = model(x)
    model.backward(np.ones_like(y))
    opt.step()


def test_failed_checkpoint_load_changes_nothing(tmp_path):
    src = _model()
    src_opt = optim.SGD(src.parameters(), lr=0.1, momentum=0.9)
    _train_step(src, src_opt, seed=1)  # step 1, a momentum buffer that is not zeros
    save_checkpoint(tmp_path / "ck.npz", src, src_opt)
    arrays = _arrays(tmp_path / "ck.npz")
    buf = arrays["__optim__.0.momentum_buffer"]
    assert buf.any()
    _write(
        tmp_path / "bad.npz", **{**arrays, "__optim__.0.momentum_buffer": np.full(buf.shape, "x")}
    )

    model = _model()
    for p in model.parameters():  # differ from the checkpoint everywhere
        p.data += 1
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.5)
    for seed in (2, 3):  # two steps on other data: step 2, another momentum buffer
        _train_step(model, opt, seed)
    model_before, opt_before = model.state_dict(), opt.state_dict()
    saved = src_opt.state_dict()["state"][0]
    assert opt_before["state"][0]["step"] == 2 != saved["step"]
    assert not np.allclose(opt_before["state"][0]["momentum_buffer"], saved["momentum_buffer"])
    assert not np.allclose(opt_before["state"][0]["momentum_buffer"], 0)
    with pytest.raises(
        ValueError,
        match=r"the optimizer state does not load .*state 'momentum_buffer' of group 0 has dtype",
    ):
        load_checkpoint(tmp_path / "bad.npz", model, opt)
    after = model.state_dict()
    assert after.keys() == model_before.keys()
    assert all(np.array_equal(after[k], model_before[k]) for k in model_before)
    opt_after = opt.state_dict()
    assert opt_after["param_groups"] == opt_before["param_groups"]
    assert opt_after["state"][0]["step"] == opt_before["state"][0]["step"] == 2
    np.testing.assert_array_equal(
        opt_after["state"][0]["momentum_buffer"], opt_before["state"][0]["momentum_buffer"]
    )


def test_a_compressed_bomb_is_refused_from_its_sizes(tmp_path):
    model = nn.Sequential(nn.Linear(1024, 1024))  # 4 MiB of weights
    arrays = nio.model_arrays(model)
    arrays["0.weight"] = np.zeros_like(arrays["0.weight"])  # zeros: compress ~1000x
    path = tmp_path / "bomb.npz"
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        for read in (nio.load, nio.read_metadata):
            with pytest.raises(ValueError, match=r"bomb\.npz.*compressed bomb"):
                read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_read_metadata_does_not_decompress_the_arrays(tmp_path):
    path = tmp_path / "big.npz"
    nio.save(nn.Sequential(nn.Linear(1024, 1024)), path, metadata={"dataset": "mnist"})
    tracemalloc.start()
    try:
        assert nio.read_metadata(path) == {"dataset": "mnist"}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # the weights are 4 MiB


def test_duplicate_members_are_refused(tmp_path):
    good = tmp_path / "good.npz"
    nio.save(_model(), good)
    bad = tmp_path / "dup.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        with pytest.warns(UserWarning, match="Duplicate name"):
            dst.writestr("1.weight.npy", src.read("1.weight.npy"))
    with pytest.raises(ValueError, match=r"members \['1.weight.npy'\] more than once"):
        nio.load(bad)


@pytest.mark.parametrize("name, value", [("running_var", -1.0), ("running_var", np.nan),
                                         ("running_mean", np.inf)])  # fmt: skip
def test_impossible_batchnorm_statistics_are_refused(tmp_path, name, value):
    good = tmp_path / "good.npz"
    nio.save(_model(), good)
    arrays = _arrays(good)
    arrays[f"2.{name}"][1] = value
    _write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=rf"2\.{name} holds"):
        nio.load(tmp_path / "bad.npz")


def test_evaluate_and_predict_open_the_model_file_once(tmp_path, monkeypatch):
    from nnfast import cli, models

    path = tmp_path / "m.npz"
    nio.save(models.mlp(hidden=(8,)), path)
    opened = []
    real = nio.open_model_file
    monkeypatch.setattr(nio, "open_model_file", lambda p: opened.append(p) or real(p))
    cli._load_model(str(path))
    assert opened == [str(path)]
