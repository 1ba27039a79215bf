"""nnfast: neural networks on the CPU, with the hot paths in C."""

from . import classic, io, nn, optim, train
from ._gemm import (
    gemm,
    get_gemm_backend,
    get_matmul_precision,
    matmul,
    matmul_precision,
    set_gemm_backend,
    set_matmul_precision,
)
from ._gradcheck import GradcheckError, gradcheck
from ._info import info
from ._random import manual_seed
from ._runtime import get_isa, get_num_threads, set_isa, set_num_threads

__version__ = "0.1.0"

#: submodules that ``import nnfast`` leaves for their first use (``nnfast.export.to_onnx``,
#: as the docs write it, raised AttributeError)
_ON_FIRST_USE = ("callbacks", "data", "distributed", "export", "functional", "models")


def __getattr__(name):
    if name in _ON_FIRST_USE:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GradcheckError",
    "__version__",
    "classic",
    "gemm",
    "get_gemm_backend",
    "get_isa",
    "get_matmul_precision",
    "get_num_threads",
    "gradcheck",
    "info",
    "io",
    "manual_seed",
    "matmul",
    "matmul_precision",
    "nn",
    "optim",
    "set_gemm_backend",
    "set_isa",
    "set_matmul_precision",
    "set_num_threads",
    "train",
]
