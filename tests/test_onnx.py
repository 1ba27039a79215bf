"""ONNX export: every model in nnfast.models and a model per activation and layer, checked with
onnx.checker (full check) and run in onnxruntime against nnfast's outputs."""

import numpy as np
import pytest

import nnfast
import nnfast.functional as F
from nnfast import cli, models, nn
from nnfast.export import IR_VERSION, OPSET, to_onnx, torch_code

onnx = pytest.importorskip("onnx")  # the [onnx] extra; installed by [test]
ort = pytest.importorskip("onnxruntime")

RTOL = 1e-5


def _run(proto, x):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _check(model, shape, batch=3, seed=0):
    """Export, check, run: the largest difference relative to the output's scale."""
    model.eval()
    proto = to_onnx(model, None, shape)
    x = np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)
    ref = model(x)
    got = _run(proto, x)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    scale = max(float(np.abs(ref).max()), 1e-30)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=RTOL * scale)
    return proto


@pytest.mark.parametrize("name", ["mlp", "lenet5", "cnn_small"])
def test_every_model_matches_onnxruntime(name, tmp_path):
    nnfast.manual_seed(0)
    model = models.MODELS[name](dropout=0.2) if name != "lenet5" else models.lenet5()
    proto = _check(model, (1, 28, 28))
    assert proto.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)]
    # the batch is dynamic: another batch size runs in the same graph
    x = np.random.default_rng(1).standard_normal((7, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(_run(proto, x), model(x), rtol=RTOL, atol=RTOL * 10)
    assert "Dropout" not in {n.op_type for n in proto.graph.node}


def _activation_model(name):
    cls = {**nn.ACTIVATIONS, "softmax": nn.Softmax, "log_softmax": nn.LogSoftmax}[name]
    if name == "maxout":
        return nn.Sequential(nn.Linear(6, 8), nn.Maxout(2))
    if name == "prelu":
        return nn.Sequential(nn.Linear(6, 8), nn.PReLU(8), nn.Linear(8, 4), nn.PReLU())
    fused = name if name in F.ACTIVATION_FUNCTIONS else None  # fused in Linear, then as a module
    return nn.Sequential(nn.Linear(6, 8, activation=fused), nn.Linear(8, 8), cls())


ACTS = [*nn.ACTIVATIONS, "softmax", "log_softmax"]


@pytest.mark.parametrize("name", ACTS)
def test_every_activation_matches_onnxruntime(name):
    nnfast.manual_seed(1)
    model = _activation_model(name)
    _distinct_statistics(model)
    _check(model, (6,), batch=64)


def _conv(**kw):
    return nn.Conv2d(2, 4, 3, **kw)


LAYERS = {
    "conv-stride-pad-dilation-nobias": (
        nn.Sequential(
            nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), bias=False)
        ),
        (2, 9, 8),
    ),
    "conv-unfused-activation": (nn.Sequential(_conv(activation="gelu")), (2, 7, 7)),
    "conv-prelu": (nn.Sequential(_conv(activation="prelu")), (2, 7, 7)),
    "maxpool-pad-dilation": (
        nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1, dilation=2)),
        (3, 11, 10),
    ),
    "avgpool-pad": (nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1)), (3, 9, 9)),
    "global-avgpool": (nn.Sequential(_conv(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), (2, 6, 6)),
    "batchnorm2d": (nn.Sequential(_conv(), nn.BatchNorm2d(4, eps=1e-3)), (2, 6, 6)),
    "batchnorm1d": (nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4, affine=False)), (5,)),
    "batchnorm-batch-stats": (
        nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4, track_running_stats=False)),
        (5,),
    ),
    "prelu-images": (nn.Sequential(_conv(), nn.PReLU(4, init=0.1)), (2, 6, 6)),
    "maxout-images": (nn.Sequential(_conv(), nn.Maxout(2)), (2, 6, 6)),
    "flatten-middle": (nn.Sequential(nn.Flatten(2, 3), nn.Softmax(dim=1)), (3, 4, 5)),
    "softmax-dim1-images": (nn.Sequential(nn.LogSoftmax(dim=1)), (3, 4, 5)),
    "softplus-beta": (nn.Sequential(nn.Linear(4, 6), nn.Softplus(beta=2.0, threshold=3.0)), (4,)),
    "gelu-tanh": (nn.Sequential(nn.Linear(4, 6), nn.GELU(approximate="tanh")), (4,)),
    "elu-leaky": (nn.Sequential(nn.Linear(4, 6), nn.ELU(0.5), nn.LeakyReLU(0.2)), (4,)),
    "dropout-identity": (nn.Sequential(nn.Dropout(0.5), nn.Identity()), (4,)),
    "nested": (nn.Sequential(nn.Sequential(nn.Linear(4, 3, activation="tanh")), nn.ReLU()), (4,)),
    "plain-linear": (nn.Linear(4, 3, activation="sigmoid"), (4,)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_matches_onnxruntime(name):
    nnfast.manual_seed(2)
    model, shape = LAYERS[name]
    _distinct_statistics(model)
    _check(model, shape, batch=5)


def _distinct_statistics(model):
    """Per-channel values that differ from channel to channel, so a layout error shows."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.track_running_stats:
            m.running_mean[:] = np.linspace(-1, 1, m.num_features)
            m.running_var[:] = np.linspace(0.5, 2, m.num_features)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
            m.weight.data = np.linspace(0.5, 1.5, m.num_features)
            m.bias.data = np.linspace(-0.3, 0.3, m.num_features)
        if isinstance(m, nn.PReLU):
            m.weight.data = np.linspace(-0.5, 0.5, m.num_parameters)


def test_unexportable_module_is_named():
    @nn.register
    class Doubler(nn.Module):
        def forward(self, x):
            return 2 * x

    try:
        with pytest.raises(nn.UnsupportedModuleError, match="Doubler"):
            to_onnx(nn.Sequential(nn.Linear(2, 2), Doubler()), None, (2,))
        with pytest.raises(nn.UnsupportedModuleError, match="Doubler"):
            torch_code(nn.Sequential(Doubler()))
    finally:
        del nn.MODULES["Doubler"]


@pytest.mark.parametrize(
    "shape, exc", [("784", TypeError), ((0,), ValueError), ((2.5,), TypeError), (None, TypeError)]
)
def test_bad_input_shape(shape, exc):
    with pytest.raises(exc, match="input_shape"):
        to_onnx(nn.Linear(2, 2), None, shape)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((3, 28, 28), r"Conv2d\(1, 4, .*expected 1 input channels, got shape \(None, 3, 28, 28\)"),
        ((1, 28, 31), r"Linear\(676, 10\): expected input of shape \(N, 676\).*\(None, 728\)"),
        ((784,), r"Conv2d\(1, 4, .*expected a 4-D \(N, C, H, W\) input"),
    ],
)
def test_an_input_shape_the_model_cannot_take_names_the_layer(tmp_path, capsys, shape, match):
    """Refused before anything is written: such a graph fails only when a runtime runs it."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(676, 10))
    with pytest.raises(ValueError, match=match):
        to_onnx(model, tmp_path / "m.onnx", shape)
    nnfast.io.save(model, tmp_path / "m.npz")
    dims = ",".join(map(str, shape))
    argv = ["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx"), "--input-shape", dims]
    assert cli.main(argv) == 1
    assert "input" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_export_refuses_to_overwrite_its_model(tmp_path, capsys):
    """It wrote the ONNX graph over the .npz it read."""
    nnfast.io.save(nn.Linear(4, 2), tmp_path / "m.npz")
    before = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "link.npz").symlink_to(tmp_path / "m.npz")
    for dst in ("m.npz", "link.npz"):
        assert cli.main(["export", str(tmp_path / "m.npz"), str(tmp_path / dst)]) == 1
        assert "is the model file itself" in capsys.readouterr().err
    assert (tmp_path / "m.npz").read_bytes() == before


def test_cli_export(tmp_path, capsys):
    nnfast.manual_seed(3)
    model = models.lenet5()
    nnfast.io.save(model, tmp_path / "m.npz", metadata={"input_shape": [1, 28, 28]})
    assert cli.main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")]) == 0
    assert "(N, 1, 28, 28)" in capsys.readouterr().out
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(_run(proto, x), model.eval()(x), rtol=RTOL, atol=1e-6)
    # from a safetensors file, the input shape from the first layer
    mlp = nn.Sequential(nn.Linear(5, 3, activation="relu"), nn.Linear(3, 2))
    nnfast.io.save(mlp, tmp_path / "m.safetensors")
    assert cli.main(["export", str(tmp_path / "m.safetensors"), str(tmp_path / "b.onnx")]) == 0
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    proto = onnx.load(str(tmp_path / "b.onnx"))
    np.testing.assert_allclose(_run(proto, x), mlp(x), rtol=RTOL, atol=1e-6)
    assert cli.main(["export", str(tmp_path / "nope.npz"), str(tmp_path / "c.onnx")]) == 1
    assert "no model file" in capsys.readouterr().err


def test_torch_code_lists_the_equivalent_sequential():
    code = torch_code(nn.Sequential(nn.Linear(784, 256, activation="relu"), nn.Linear(256, 10)))
    assert "nn.Linear(in_features=784, out_features=256, bias=True),\n    nn.ReLU()," in code
    assert "class " not in code
    code = torch_code(nn.Sequential(nn.Linear(4, 4, activation="step"), nn.Arctan(), nn.Maxout()))
    for name in ("BinaryStep", "Arctan", "Maxout"):
        assert f"class {name}(nn.Module):" in code
    compile(code, "<torch_code>", "exec")  # valid Python


class _Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


class _Doubled(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


def _replaced_forward():
    lin = nn.Linear(4, 4)
    lin.forward = lambda x: -nn.Linear.forward(lin, x)
    return lin


@pytest.mark.parametrize(
    "make, owner",
    [
        (lambda: nn.Sequential(_Residual(nn.Linear(4, 4, activation="tanh")), nn.Linear(4, 2)),
         "_Residual replaces the forward of Sequential"),
        (lambda: nn.Sequential(_Doubled(4, 2)), "_Doubled replaces the forward of Linear"),
        (lambda: nn.Sequential(_replaced_forward()),
         "a Linear whose forward was replaced replaces the forward of Linear"),
    ],
)  # fmt: skip
def test_a_module_with_a_forward_of_its_own_is_not_exported_as_its_parent(make, owner):
    """They inherited their parent's translation: the ONNX graph and the torch code computed
    the parent's output (up to 0.6 away from nnfast's), without a word."""
    model = make()
    for export in (lambda: to_onnx(model, None, (4,)), lambda: torch_code(model)):
        with pytest.raises(nnfast.export.UnsupportedModuleError, match=owner):
            export()


def test_a_conv_whose_maxout_halves_its_channels_exports():
    """The Maxout read the layer's output shape after itself (3 channels for the conv's 6):
    the graph's Reshape failed, and Conv2d.output_shape said 6, so a Linear after it was
    refused."""
    model = nn.Sequential(nn.Conv2d(2, 6, 3, activation="maxout", seed=0), nn.Flatten(),
                          nn.Linear(27, 4, seed=1))  # fmt: skip
    assert model[0].output_shape((None, 2, 5, 5)) == (None, 3, 3, 3)
    _check(model, (2, 5, 5))
    _check(model[0], (2, 5, 5))


def test_step_keeps_nan_in_the_graph_as_the_kernel_does():
    """The kernel keeps NaN; the graph (and torch_code) gave 0 there, while the export's own
    comment said it followed the kernel."""
    model = nn.Sequential(nn.Linear(3, 4, activation="step", seed=0)).eval()
    x = np.array([[np.nan, 0.0, 1.0], [1.0, -2.0, 0.5]], np.float32)
    ref = model(x)
    assert np.isnan(ref[0]).all() and not np.isnan(ref[1]).any()
    np.testing.assert_array_equal(_run(to_onnx(model, None, (3,)), x), ref)
    assert "torch.isnan(x)" in torch_code(model)
