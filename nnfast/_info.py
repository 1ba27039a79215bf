"""What this nnfast build can do and what it is using now."""

from __future__ import annotations

import os

from . import _runtime
from ._gemm import get_matmul_precision
from ._native import IMPORT_ERROR, core


def info() -> dict:
    """Version, native extension, ISA paths, threads and BLAS, as a dict.

    Keys: ``version``, ``native`` (bool), ``native_error`` (why it is missing, or None),
    ``isa_compiled``, ``isa_supported``, ``isa`` (in use), ``gemm_kernels`` (per dtype),
    ``bf16_kernels`` (of ``precision="bf16"`` products), ``matmul_precision``, ``threads``,
    ``num_threads``, ``blas_fallback`` (True when every product goes through SciPy) and
    ``blas`` (SciPy's BLAS library, as threadpoolctl reports it).
    """
    from . import __version__

    native = core is not None
    return {
        "version": __version__,
        "native": native,
        "native_error": None if native else IMPORT_ERROR,
        "isa_compiled": core.isa_compiled() if native else [],
        "isa_supported": core.isa_supported() if native else [],
        "isa": core.isa_active() if native else None,
        "gemm_kernels": core.gemm_kernels() if native else {},
        "bf16_kernels": core.gemm_bf16_kernels() if native else [],
        "matmul_precision": get_matmul_precision(),
        "threads": core.threads_enabled() if native else False,
        "num_threads": _runtime.get_num_threads(),
        "blas_fallback": not native,
        "blas": _blas_description(),
    }


def _blas_description() -> str:
    import scipy
    import scipy.linalg  # loads SciPy's BLAS, so that threadpoolctl sees it
    from threadpoolctl import threadpool_info

    libs = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    # SciPy's own directory or its wheel's libraries: numpy's OpenBLAS is named
    # libscipy_openblas64_ too, and which one came first depended on the load order
    root = os.path.dirname(scipy.__file__)
    mine = (root + os.sep, root + ".libs" + os.sep)
    scipy_libs = [p for p in libs if p.get("filepath", "").startswith(mine)] or libs
    if not scipy_libs:
        return "unknown"
    p = scipy_libs[0]
    return f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
