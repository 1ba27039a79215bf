"""safetensors files under the names of the equivalent torch.nn.Sequential, and torch-style
state_dicts loaded into nnfast models. PyTorch is not a dependency: the expected names and
shapes are written out here by hand from torch.nn's definitions."""

import json

import numpy as np
import pytest

import nnfast
import nnfast.io as nio
from nnfast import models, nn

st = pytest.importorskip("safetensors.numpy")  # the [safetensors] extra; installed by [test]

# torch.nn.Sequential(Linear(784, 256), ReLU(), Linear(256, 10)).state_dict() names and shapes
TWO_LAYERS = {"0.weight": (256, 784), "0.bias": (256,), "2.weight": (10, 256), "2.bias": (10,)}

# nnfast.models as torch Sequentials: Flatten, Linear, ReLU, Linear, ReLU, Linear
MLP = {
    "1.weight": (256, 784),
    "1.bias": (256,),
    "3.weight": (128, 256),
    "3.bias": (128,),
    "5.weight": (10, 128),
    "5.bias": (10,),
}
# Conv2d, ReLU, MaxPool2d, Conv2d, ReLU, MaxPool2d, Flatten, Linear, ReLU, Linear, ReLU, Linear
LENET5 = {
    "0.weight": (6, 1, 5, 5),
    "0.bias": (6,),
    "3.weight": (16, 6, 5, 5),
    "3.bias": (16,),
    "7.weight": (120, 256),
    "7.bias": (120,),
    "9.weight": (84, 120),
    "9.bias": (84,),
    "11.weight": (10, 84),
    "11.bias": (10,),
}
# Conv2d, ReLU, MaxPool2d, Conv2d, ReLU, MaxPool2d, Flatten, Linear, ReLU, Linear
CNN_SMALL = {
    "0.weight": (32, 1, 3, 3),
    "0.bias": (32,),
    "3.weight": (64, 32, 3, 3),
    "3.bias": (64,),
    "7.weight": (128, 3136),
    "7.bias": (128,),
    "9.weight": (10, 128),
    "9.bias": (10,),
}


def _bn_model():
    """Linear, ELU, BatchNorm1d, PReLU, Dropout, Linear in torch; BatchNorm2d after a conv."""
    return nn.Sequential(
        nn.Linear(6, 4, activation="elu"),
        nn.BatchNorm1d(4),
        nn.PReLU(4),
        nn.Dropout(0.5),
        nn.Linear(4, 3, bias=False),
    )


BN = {
    "0.weight": (4, 6),
    "0.bias": (4,),
    "2.weight": (4,),
    "2.bias": (4,),
    "2.running_mean": (4,),
    "2.running_var": (4,),
    "2.num_batches_tracked": (),
    "3.weight": (4,),
    "5.weight": (3, 4),
}

CASES = [
    (lambda: nn.Sequential(nn.Linear(784, 256, activation="relu"), nn.Linear(256, 10)), TWO_LAYERS),
    (models.mlp, MLP),
    (models.lenet5, LENET5),
    (models.cnn_small, CNN_SMALL),
    (_bn_model, BN),
]
IDS = ["two-layers", "mlp", "lenet5", "cnn_small", "batchnorm"]


@pytest.mark.parametrize("make, expected", CASES, ids=IDS)
def test_safetensors_keys_are_torch_sequential_names(tmp_path, make, expected):
    model = make()
    path = tmp_path / "m.safetensors"
    nio.save(model, path, metadata={"dataset": "mnist"})
    tensors = st.load_file(str(path))
    assert {k: v.shape for k, v in tensors.items()} == expected
    assert list(model.torch_state_dict_names().values()) == list(expected)
    # the values are the model's, renamed
    for n, t in model.torch_state_dict_names().items():
        np.testing.assert_array_equal(tensors[t], model.state_dict()[n])
    if "2.num_batches_tracked" in expected:
        assert tensors["2.num_batches_tracked"].dtype == np.int64  # as torch stores it
    with open(path, "rb") as f:  # the header's __metadata__ holds the architecture record
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    record = json.loads(header["__metadata__"]["__nnfast__"])
    assert record["architecture"] == nio.architecture(model)
    assert nio.read_metadata(path) == {"dataset": "mnist"}


def _outputs(model, shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return model.eval()(x)


@pytest.mark.parametrize("make, expected", CASES, ids=IDS)
def test_round_trip_through_safetensors_and_a_torch_style_state_dict(tmp_path, make, expected):
    """nnfast -> safetensors -> (torch names, as torch would write them) -> nnfast."""
    nnfast.manual_seed(1)
    model = make()
    if isinstance(model[0], nn.Linear) and model[0].in_features == 6:
        model(np.random.default_rng(2).standard_normal((8, 6)).astype(np.float32))  # stats
    shape = (3, 6) if "2.running_var" in expected else (3, 1, 28, 28)
    if model[0].__class__ is nn.Linear and model[0].in_features == 784:
        shape = (3, 784)
    ref = _outputs(model, shape)
    path = tmp_path / "m.safetensors"
    nio.save(model, path)
    np.testing.assert_array_equal(_outputs(nio.load(path), shape), ref)

    # a file written by another program (torch's save_file: torch names, no nnfast record)
    foreign = tmp_path / "torch.safetensors"
    st.save_file(st.load_file(str(path)), str(foreign))
    with pytest.raises(ValueError, match="no nnfast architecture record"):
        nio.load(foreign)
    nnfast.manual_seed(2)
    fresh = make()
    fresh.load_state_dict(st.load_file(str(foreign)))  # torch names, numpy arrays
    np.testing.assert_array_equal(_outputs(fresh, shape), ref)


def test_torch_names_with_a_wrong_shape_name_the_key():
    model = nn.Sequential(nn.Linear(5, 4, activation="tanh"), nn.Linear(4, 2))
    sd = {"0.weight": np.zeros((4, 5)), "0.bias": np.zeros(4), "2.weight": np.zeros((2, 3))}
    sd["2.bias"] = np.zeros(2)
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"2\.weight \(nnfast 1\.weight\) has shape \(2, 3\)"):
        model.load_state_dict(sd)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    del sd["2.bias"]  # named as the caller named it (it read 1.bias, which sd never had)
    with pytest.raises(ValueError, match=r"missing arrays \['2\.bias \(nnfast 1\.bias\)'\]"):
        model.load_state_dict(sd)


def test_load_state_dict_refuses_what_is_not_a_mapping():
    with pytest.raises(TypeError, match="mapping"):
        nn.Linear(2, 2).load_state_dict([np.zeros((2, 2))])


def test_a_module_without_a_torch_equivalent_is_named(tmp_path):
    @nn.register
    class Doubler(nn.Module):
        def forward(self, x):
            return 2 * x

    try:
        with pytest.raises(nn.UnsupportedModuleError, match="Doubler"):
            nio.save(nn.Sequential(nn.Linear(2, 2), Doubler()), tmp_path / "m.safetensors")
        assert not list(tmp_path.iterdir())
    finally:
        del nn.MODULES["Doubler"]


def test_truncated_safetensors_is_a_value_error_naming_the_file(tmp_path):
    path = tmp_path / "m.safetensors"
    nio.save(models.mlp(), path)
    data = path.read_bytes()
    for cut in (4, 100, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"m\.safetensors"):
            nio.load(path)


def _leaky_model():
    return nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.01), nn.Dropout(0.25), nn.Linear(4, 2))


def test_a_changed_weight_or_record_is_refused_by_its_checksum(tmp_path):
    """safetensors keeps no checksum: a flipped bit in a weight, or a slope edited in the
    record, loaded as another model without a word."""
    path = tmp_path / "m.safetensors"
    nio.save(_leaky_model(), path)
    data = path.read_bytes()
    record = data.find(b"0.01")
    for i, change in ((len(data) - 1, lambda b: b ^ 1), (record + 3, lambda b: ord("3"))):
        bad = bytearray(data)
        bad[i] = change(bad[i])
        path.write_bytes(bytes(bad))
        with pytest.raises(ValueError, match=r"m\.safetensors is corrupt: its weights or arch"):
            nio.load(path)
    path.write_bytes(data)
    nio.load(path)


def test_a_file_without_a_checksum_loads_and_a_layer_without_its_config_is_refused(tmp_path):
    """Files of nnfast before the checksum have none; a layer's record without 'config' would
    have been built with its defaults (Dropout 0.5 for the file's 0.25)."""
    model = _leaky_model()
    record = nio._record(model, None)
    tensors = {nio_name: a for nio_name, a in zip(model.torch_state_dict_names().values(),
                                                  model.state_dict().values())}  # fmt: skip
    path = tmp_path / "m.safetensors"
    path.write_bytes(
        st.save(tensors, metadata={"format": "nnfast", nio.RECORD_KEY: json.dumps(record)})
    )
    loaded = nio.load(path)
    assert loaded[2].p == 0.25
    del record["architecture"]["modules"][2]["config"]
    path.write_bytes(
        st.save(tensors, metadata={"format": "nnfast", nio.RECORD_KEY: json.dumps(record)})
    )
    with pytest.raises(ValueError, match=r"modules\[2\]: Dropout has no 'config'"):
        nio.load(path)
