"""The lists C dispatches from: the activation list (NNF_ACTIVATIONS in csrc/eltwise.h) as
Python sees it, and the ISA table (NNF_ISAS in csrc/cpu.h, rows in csrc/isa.c): every row
complete, detection as the CPU reports it, NNFAST_ISA forcing each path."""

import os
import platform
import sys

import numpy as np
import pytest

import nnfast
import nnfast.functional as F
from nnfast import _runtime, nn
from nnfast._native import core
from nnfast.nn import Linear
from nnfast.optim import Adam

pytestmark = pytest.mark.skipif(core is None, reason="needs the native extension")


def test_python_activations_are_cs_list():
    ids = core.activation_ids()
    assert list(ids.values()) == list(range(len(ids)))  # dense ids, in C's order
    public = set(ids) - {"gelu_tanh"}  # gelu(approximate="tanh")
    assert set(F.ACTIVATION_FUNCTIONS) == public
    # prelu and maxout have kernels of their own
    assert set(nn.ACTIVATIONS) - {"prelu", "maxout"} == public
    for name in public:
        assert F.ACTIVATION_FUNCTIONS[name].from_output == core.act_from_output(ids[name])
    assert F.act_kernel_args("t", "gelu", {"approximate": "tanh"})[0] == ids["gelu_tanh"]
    assert F.act_kernel_args("t", "gelu", {})[0] == ids["gelu"]


X86_64 = platform.machine().lower() in ("x86_64", "amd64")


def test_every_isa_row_is_complete():
    names = core.isa_names()
    assert names[0] == "generic" and core.isa_features("generic") == []
    for name in names:
        assert core.isa_missing(name) == [], name
    if X86_64 and sys.platform.startswith("linux"):  # setup.py builds every path with GCC/Clang
        assert core.isa_compiled() == names
        # the one native bf16 kernel is the avx512 row's; the other paths emulate bf16
        bf16 = {name: core.isa_bf16_kernel(name) for name in names}
        assert bf16.pop("avx512")["name"].endswith("_avx512bf16")
        assert set(bf16.values()) == {None}
    for query in (core.isa_missing, core.isa_bf16_kernel):
        with pytest.raises(ValueError, match="unknown ISA"):
            query("sse9")


@pytest.mark.parametrize("bad", [3, None, b"avx2"])
def test_set_isa_names_a_name_that_is_not_a_str(bad):
    before = nnfast.get_isa()
    with pytest.raises(TypeError, match="set_isa: name must be a str"):
        nnfast.set_isa(bad)
    assert nnfast.get_isa() == before


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="needs /proc/cpuinfo")
def test_isa_support_follows_the_cpu_flags():
    """A path is supported exactly when the CPU lists each of its features (as /proc/cpuinfo
    spells them, without underscores), so a feature isa.c cannot check shows up here."""
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    have = {flag.replace("_", "") for flag in flags}
    for feature in ("avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512bf16"):
        assert core.cpu_has(feature) == (X86_64 and feature in have), feature
    assert core.cpu_has("") and not core.cpu_has("sse9") and not core.cpu_has("avx2,sse9")
    want = [n for n in core.isa_compiled() if set(core.isa_features(n)) <= have]
    assert core.isa_supported() == want
    assert nnfast.info()["isa_supported"] == want


@pytest.mark.parametrize("name", core.isa_supported() if core is not None else [])
def test_nnfast_isa_forces_each_path(name, monkeypatch):
    """NNFAST_ISA (read at import by _runtime._init, which test_gemm runs in a fresh process
    for one path) picks the row every kernel family dispatches from: the GEMM kernels it
    reports are that path's, and activations and Adam run on it."""
    before_isa, before_threads = nnfast.get_isa(), nnfast.get_num_threads()
    monkeypatch.setenv("NNFAST_ISA", name)
    try:
        _runtime._init()
        assert nnfast.get_isa() == name
        kernels = [u["name"] for d in nnfast.info()["gemm_kernels"].values() for u in d]
        assert kernels and all(k.endswith(f"_{name}") for k in kernels), kernels
        # the bf16 kernel: AMX's tile kernel on the avx512 row where it runs, else the row's
        # native kernel, or its fp32 one
        (bf16,) = nnfast.info()["bf16_kernels"]
        native = core.isa_bf16_kernel(name)
        if name == "avx512" and core.bf16_tiles_supported():
            assert bf16["name"].endswith("_amx") and bf16["tiles"]
        elif native and core.cpu_has(",".join(native["features"])):
            assert bf16["name"] == native["name"] and not bf16["emulated"]
        else:
            assert bf16["name"] == kernels[0] and bf16["emulated"]
        x = np.linspace(-3, 3, 101, dtype=np.float32)
        assert np.array_equal(F.relu(x), np.maximum(x, 0))
        m = Linear(3, 2, seed=0)
        opt = Adam(m.parameters(), lr=0.1)
        w = m.weight.data.copy()
        m.weight.grad[...] = 1
        opt.step()
        np.testing.assert_allclose(m.weight.data, w - 0.1, atol=1e-5)
    finally:
        nnfast.set_isa(before_isa)
        nnfast.set_num_threads(before_threads)


def test_info_reports_scipys_blas_not_numpys(monkeypatch):
    """numpy's OpenBLAS is named libscipy_openblas64_ too: matching "scipy" in the path
    reported whichever came first (numpy's 0.3.31 for SciPy's 0.3.30 after a numpy product)."""
    import scipy
    import threadpoolctl

    from nnfast import _info

    site = os.path.dirname(os.path.dirname(scipy.__file__))
    libs = [
        {"user_api": "blas", "internal_api": "openblas", "version": "0.3.31", "num_threads": 2,
         "filepath": os.path.join(site, "numpy.libs", "libscipy_openblas64_-x.so")},
        {"user_api": "blas", "internal_api": "openblas", "version": "0.3.30", "num_threads": 2,
         "filepath": os.path.join(site, "scipy.libs", "libscipy_openblas-y.so")},
    ]  # fmt: skip
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: libs)
    assert _info._blas_description() == "openblas 0.3.30 (2 threads)"
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: libs[:1])  # SciPy's elsewhere
    assert _info._blas_description() == "openblas 0.3.31 (2 threads)"
