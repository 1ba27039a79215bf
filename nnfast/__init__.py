"""nnfast: neural networks on the CPU, with the hot paths in C."""

from ._gemm import gemm, matmul
from ._info import info
from ._runtime import get_isa, get_num_threads, set_isa, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "gemm",
    "get_isa",
    "get_num_threads",
    "info",
    "matmul",
    "set_isa",
    "set_num_threads",
]
