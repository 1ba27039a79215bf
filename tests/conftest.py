"""Shared fixtures: ISA paths and thread counts to run kernels under, seeded data."""

import os

import numpy as np
import pytest
from helpers import bf16_paths

import nnfast
from nnfast._native import IMPORT_ERROR, core

if core is None and not os.environ.get("NNFAST_DISABLE_NATIVE"):
    # Tests would silently exercise only the SciPy fallback: refuse instead.
    raise pytest.UsageError(
        f"nnfast's native extension did not import ({IMPORT_ERROR}). Install the package with "
        f"`pip install .` and run `pytest` (not `python -m pytest`, which puts the source tree, "
        f"without the compiled extension, first on sys.path)."
    )

ISAS = core.isa_supported() if core is not None else []


@pytest.fixture(params=ISAS or [None])
def isa(request):
    """Run the test once per ISA path this machine supports."""
    if request.param is None:
        pytest.skip("no native extension")
    before = nnfast.get_isa()
    nnfast.set_isa(request.param)
    yield request.param
    nnfast.set_isa(before)


@pytest.fixture(params=bf16_paths() or [None], ids=lambda p: p and p[0] + "-tiles" * p[1])
def bf16_path(request):
    """Run the test once per bf16 GEMM kernel this machine runs: ("avx512", True) is AMX."""
    if request.param is None:
        pytest.skip("no native extension")
    isa, tiles = request.param
    before = nnfast.get_isa(), core.set_bf16_tiles(tiles)
    nnfast.set_isa(isa)
    yield request.param
    nnfast.set_isa(before[0])
    core.set_bf16_tiles(before[1])


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    before = nnfast.get_num_threads()
    nnfast.set_num_threads(request.param)
    yield request.param
    nnfast.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def conv_hooks():
    """The convolution test hooks restored after the test (core.conv_direct_dx's limit and
    core.conv_implicit's setting); yields the direct-dx limit before it."""
    limit, implicit = core.conv_direct_dx(), core.conv_implicit()
    yield limit
    core.conv_direct_dx(limit)
    core.conv_implicit(implicit)
