"""General matrix multiply: argument checks, operand layouts and the choice of backend.

Operands reach C as a pointer, a leading dimension and a transpose flag: a C-ordered matrix is
row-major, a Fortran-ordered one (or a ``.T`` view) is a transposed row-major one, and strided
slices keep their leading dimension. Only a matrix with no unit stride is copied.
"""

from __future__ import annotations

import contextlib
import numbers
import operator

import numpy as np

from . import _runtime
from ._arrays import native_order, overlaps
from ._native import IMPORT_ERROR, core

VARIANTS = ("auto", "naive", "blocked", "packed", "blas")
_NATIVE_VARIANTS = {"naive": 0, "blocked": 1, "packed": 2}
PRECISIONS = ("fp32", "bf16")

_blas_module = None
_backend = "native"  # what variant="auto" means: see set_gemm_backend
_common_acts = None  # activation name -> (C id, default parameter), for core.gemm_common
_precision = "fp32"  # what precision=None means for float32 products: see set_matmul_precision


def set_gemm_backend(name: str) -> None:
    """Route every ``variant="auto"`` product (``Linear`` layers included) to ``"native"``
    (the packed C kernels; SciPy's BLAS when the extension is missing) or ``"blas"`` (SciPy's
    sgemm/dgemm). Explicit variants are unaffected, and so are convolutions, whose GEMMs run
    inside nnfast's C kernel. The CLI's ``--backend`` sets this."""
    global _backend
    if name not in ("native", "blas"):
        raise ValueError(f"set_gemm_backend: expected 'native' or 'blas', got {name!r}")
    _backend = name


def get_gemm_backend() -> str:
    """``"native"`` or ``"blas"``: what :func:`set_gemm_backend` chose (default ``"native"``)."""
    return _backend


def _check_precision(name: str, precision) -> str:
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"{name}: unknown precision {precision!r}; expected one of {PRECISIONS}")
    return precision


def set_matmul_precision(precision: str) -> None:
    """How float32 products without an explicit ``precision`` are computed, the GEMMs of
    ``Linear`` and ``Conv2d`` (forward and backward) included.

    ``"fp32"`` (the default) computes in float32. ``"bf16"`` rounds both operands to bfloat16
    and accumulates in float32 (:func:`gemm` with ``precision="bf16"``): mixed-precision
    training, where parameters, gradients, the optimizer and every non-GEMM operation stay
    float32 (so do convolutions small enough for the direct kernel, which has no GEMM: see
    ``nnfast.nn.conv.DIRECT_MAX_K``; a 1x1 convolution is a GEMM whatever its size). float64
    products are never affected. The setting is process-wide; see :func:`matmul_precision`
    for a scoped one.
    """
    global _precision
    _precision = _check_precision("set_matmul_precision", precision)
    if _precision == "bf16" and core is None:
        _precision = "fp32"
        raise RuntimeError(
            "set_matmul_precision: bf16 needs nnfast's native extension, which is unavailable"
        )


def get_matmul_precision() -> str:
    """``"fp32"`` or ``"bf16"``: what :func:`set_matmul_precision` chose (default ``"fp32"``)."""
    return _precision


@contextlib.contextmanager
def matmul_precision(precision: str):
    """Context manager: :func:`set_matmul_precision` inside the ``with`` block, the previous
    setting restored on leaving it (also on an exception).

    The setting stays process-wide: other threads' products follow it while the block runs,
    and blocks that two threads enter and leave in interleaved order restore each other's
    values (the last to leave wins). Use it from one thread at a time; a thread of its own
    passes ``precision=`` to :func:`gemm`."""
    before = _precision
    set_matmul_precision(precision)
    try:
        yield
    finally:
        set_matmul_precision(before)


def _blas():
    """SciPy's BLAS through Cython (nnfast._native._blas), loaded on first use; None if absent."""
    global _blas_module
    if _blas_module is None:
        try:
            from ._native import _blas as module
        except ImportError:
            module = False
        _blas_module = module
    return _blas_module or None


def _common_act(activation):
    """(C act id, parameter) of an activation with its default parameters (-1 for None)."""
    global _common_acts
    if _common_acts is None:
        from .functional import ACTIVATION_IDS, act_kernel_args

        acts = {name: act_kernel_args("gemm", name, {})[:2] for name in ACTIVATION_IDS}
        _common_acts = {None: (-1, 0.0), **acts}
    return _common_acts.get(activation)


def _check_matrix(name: str, x) -> np.ndarray:
    x = native_order(np.asarray(x))
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"gemm: {name} has dtype {x.dtype}; nnfast computes in float32 or float64 "
            f"(convert with {name}.astype(np.float32))"
        )
    if x.ndim != 2:
        raise ValueError(f"gemm: {name} must be 2-D, got shape {x.shape}")
    return x


def _check_scalar(name: str, x) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"gemm: {name} must be a real number, got {x!r}")
    try:
        return float(x)
    except OverflowError:  # an int past float's range
        raise ValueError(f"gemm: {name} is too large for a float ({len(str(x))} digits)") from None


def _check_flag(name: str, x) -> bool:
    """A transpose flag: a bool, a numpy bool or the integer 0 or 1 (not any truthy value)."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    try:
        if operator.index(x) in (0, 1):
            return bool(x)
    except TypeError:
        pass
    raise TypeError(f"gemm: {name} must be True or False (or 0 or 1), got {x!r}")


def _bias_may_overlap(bias, out, preact_out) -> bool:
    """Whether bias may share memory with out or preact_out: core.gemm_common does not compare
    them, so then the full path decides exactly (a bounds test, no false negatives). Anything
    but a plain ndarray is refused by gemm_common anyway."""
    if type(bias) is not np.ndarray:
        return False
    if type(out) is np.ndarray and np.may_share_memory(bias, out):
        return True
    return type(preact_out) is np.ndarray and np.may_share_memory(bias, preact_out)


def _layout(x: np.ndarray):
    """``(column_major, ld)`` if x can be handed to C as it is, else None (it must be copied)."""
    rows, cols = x.shape
    s0, s1 = x.strides
    item = x.itemsize
    if s0 % item or s1 % item:
        return None
    s0 //= item
    s1 //= item
    if cols <= 1 or s1 == 1:
        ld = max(cols, 1) if rows <= 1 else s0
        if ld >= max(cols, 1):
            return False, ld
    if rows <= 1 or s0 == 1:
        ld = max(rows, 1) if cols <= 1 else s1
        if ld >= max(rows, 1):
            return True, ld
    return None


def _operand(x: np.ndarray, trans: bool):
    """``(array, trans, ld)`` describing x as a row-major matrix starting at x's data pointer."""
    lay = _layout(x)
    if lay is None:
        x = np.ascontiguousarray(x)
        lay = (False, max(x.shape[1], 1))
    column_major, ld = lay
    return x, trans != column_major, ld


def _scipy_gemm(a, b, out, alpha, beta, trans_a, trans_b):
    """The fallback without the compiled extension: SciPy's f2py BLAS wrappers."""
    from scipy.linalg import blas

    f = blas.sgemm if out.dtype == np.float32 else blas.dgemm
    # out.T is Fortran-ordered when out is C-ordered: BLAS then writes into out directly
    res = f(alpha, b.T, a.T, beta=beta, c=out.T, trans_a=trans_b, trans_b=trans_a, overwrite_c=1)
    if not np.shares_memory(res, out):
        out[...] = res.T


def _check_epilogue(bias, activation, activation_params, preact_out, m, n, a, b, out):
    """Validated (bias, (act_id, param, threshold), preact_out) for the GEMM epilogue."""
    from .functional import act_kernel_args

    dtype = a.dtype
    if bias is not None:
        bias = native_order(np.asarray(bias))
        if bias.dtype != dtype:
            raise TypeError(f"gemm: bias has dtype {bias.dtype} but a and b are {dtype}")
        if bias.shape != (n,):
            raise ValueError(
                f"gemm: bias has shape {bias.shape} but op(a) @ op(b) has {n} columns: "
                f"expected shape ({n},)"
            )
    if activation_params is not None and not isinstance(activation_params, dict):
        raise TypeError(
            f"gemm: activation_params must be a dict, got {type(activation_params).__name__}"
        )
    if activation is None and activation_params:  # else the parameters were dropped unread
        raise ValueError(f"gemm: activation_params {activation_params!r} without an activation")
    act = act_kernel_args("gemm", activation or "identity", dict(activation_params or {}))
    if preact_out is not None:
        if not isinstance(preact_out, np.ndarray) or preact_out.dtype != dtype:
            raise TypeError(f"gemm: preact_out must be a {np.dtype(dtype).name} numpy array")
        if preact_out.shape != (m, n):
            raise ValueError(f"gemm: preact_out has shape {preact_out.shape}, expected ({m}, {n})")
        if not (preact_out.flags.c_contiguous and preact_out.flags.writeable):
            raise ValueError("gemm: preact_out must be C-contiguous and writeable")
        for name, x in (("a", a), ("b", b), ("out", out)):
            if overlaps(preact_out, x):
                raise ValueError(f"gemm: preact_out overlaps {name}")
    if bias is not None:
        # the kernels write out (and preact_out) tile by tile while still reading bias
        for name, x in (("out", out), ("preact_out", preact_out)):
            if x is not None and overlaps(bias, x):
                raise ValueError(f"gemm: bias overlaps {name}; pass a copy of it")
        bias = np.ascontiguousarray(bias)
    return bias, act, preact_out


def _epilogue_after(out, bias, activation, activation_params, preact_out):
    """The epilogue as a separate pass, where it cannot be fused (BLAS, transposed out)."""
    from .functional import bias_act

    bias_act(out, bias, activation or "identity", out=out, preact_out=preact_out,
             **dict(activation_params or {}))  # fmt: skip


def gemm(
    a,
    b,
    out=None,
    *,
    alpha=1.0,
    beta=0.0,
    trans_a=False,
    trans_b=False,
    bias=None,
    activation=None,
    activation_params=None,
    preact_out=None,
    variant="auto",
    precision=None,
):
    """General matrix multiply: ``out = alpha * op(a) @ op(b) + beta * out``.

    Parameters
    ----------
    a : ndarray, float32 or float64, shape (M, K), or (K, M) with ``trans_a``
    b : ndarray, same dtype, shape (K, N), or (N, K) with ``trans_b``
    out : ndarray, same dtype, shape (M, N), optional
        Written in place. Required when ``beta != 0``; must not overlap ``a`` or ``b``.
    alpha, beta : float
        ``beta == 0`` overwrites ``out`` (NaN already in it does not propagate).
    trans_a, trans_b : bool (or 0/1)
        Use ``a.T`` / ``b.T``. Transposed, Fortran-ordered and strided operands are not copied.
    bias : ndarray, same dtype, shape (N,), optional
        Added to every row of the product (a per-output-feature bias). Must not overlap
        ``out`` or ``preact_out``.
    activation : str, optional
        An activation name of ``nnfast.functional`` (``"relu"``, ``"tanh"``, ...) applied after
        the bias; ``activation_params`` holds its parameters (``{"negative_slope": 0.1}``).
        Bias and activation are applied to each tile of ``out`` while it is still in cache
        (no second pass), except with ``variant="blas"`` or a non-row-major ``out``.
    preact_out : ndarray, same dtype, shape (M, N), C-contiguous, optional
        Receives the pre-activation ``alpha * op(a) @ op(b) + beta * out + bias``, for
        backward passes that need it.
    variant : {"auto", "naive", "blocked", "packed", "blas"}
        ``naive`` is the reference triple loop, ``blocked`` adds cache blocking and threads,
        ``packed`` is the Goto/BLIS kernel with SIMD micro-kernels, ``blas`` is SciPy's
        sgemm/dgemm and ``auto`` the fastest available (``blas`` after
        ``set_gemm_backend("blas")``).
    precision : {None, "fp32", "bf16"}
        ``"bf16"`` (float32 operands only; the ``packed`` kernels, which ``auto`` then means)
        rounds ``a`` and ``b`` to bfloat16 (round to nearest even, subnormals to zero) and
        accumulates the exact products in float32, twice as fast as float32 where the CPU has
        AVX512_BF16 and with the same results elsewhere. Each entry of the result is within
        about ``K * 2**-24 * sum|a_ik b_kj|`` of the float64 product of the rounded operands.
        ``"fp32"`` computes in the operands' dtype. None (the default) means
        :func:`get_matmul_precision` for float32 products on the native packed kernels, and
        ``"fp32"`` otherwise.

    Returns
    -------
    ndarray, shape (M, N): ``out`` (a new array when ``out`` is None).
    """
    if type(trans_a) is not bool or type(trans_b) is not bool:  # cheap for the everyday call
        trans_a, trans_b = _check_flag("trans_a", trans_a), _check_flag("trans_b", trans_b)
    packed = variant == "packed" or (variant == "auto" and _backend == "native")
    if precision is None:
        explicit = False
        bf16 = _precision == "bf16" and packed  # float32 products only: settled below
    else:
        explicit = bf16 = _check_precision("gemm", precision) == "bf16"
        packed = packed or (bf16 and variant == "auto")
    if packed and core is not None and not activation_params:
        # the everyday call, checked in Cython (the layers make ~10 per training step); None
        # means something needs the checks, copies or messages below
        act = _common_act(activation) if isinstance(activation, (str, type(None))) else None
        if act is not None and bias is not None and (out is not None or preact_out is not None):
            if _bias_may_overlap(bias, out, preact_out):
                act = None  # gemm_common does not compare bias with the outputs
        if act is not None:
            try:
                res = core.gemm_common(
                    a,
                    b,
                    out,
                    alpha,
                    beta,
                    trans_a,
                    trans_b,
                    bias,
                    act[0],
                    act[1],
                    preact_out,
                    bf16,
                )
            except OverflowError:  # alpha or beta past float's range: named below
                res = None
            if res is not None:
                return res
    a = _check_matrix("a", a)
    b = _check_matrix("b", b)
    if a.dtype != b.dtype:
        raise TypeError(
            f"gemm: a is {a.dtype} but b is {b.dtype}; convert one so both dtypes match"
        )
    m, k = a.shape[::-1] if trans_a else a.shape
    k_b, n = b.shape[::-1] if trans_b else b.shape
    if k != k_b:
        raise ValueError(
            f"gemm: op(a) has shape ({m}, {k}) but op(b) has shape ({k_b}, {n}): "
            f"a has {k} columns but b has {k_b} rows"
        )
    if variant not in VARIANTS:
        raise ValueError(f"gemm: unknown variant {variant!r}; expected one of {VARIANTS}")
    if explicit:
        if a.dtype != np.float32:
            raise TypeError(
                f"gemm: precision='bf16' takes float32 operands, but a and b are {a.dtype}"
            )
        if not packed:
            raise ValueError(
                f"gemm: precision='bf16' runs on the packed kernels; variant={variant!r} "
                f"computes in fp32 (use variant='packed' or 'auto')"
            )
        if variant == "auto":
            variant = "packed"
    bf16 = bf16 and a.dtype == np.float32
    alpha = _check_scalar("alpha", alpha)
    beta = _check_scalar("beta", beta)

    if out is None:
        if beta != 0.0:
            raise ValueError(f"gemm: beta={beta} needs an out array to scale and add to")
        out = np.empty((m, n), dtype=a.dtype)
    else:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"gemm: out must be a numpy.ndarray, got {type(out).__name__}")
        if out.dtype != a.dtype:
            raise TypeError(f"gemm: out has dtype {out.dtype} but a and b are {a.dtype}")
        if out.shape != (m, n):
            raise ValueError(
                f"gemm: out has shape {out.shape} but op(a) @ op(b) has shape ({m}, {n})"
            )
        if not out.flags.writeable:
            raise ValueError("gemm: out is read-only")
        for name, x in (("a", a), ("b", b)):
            if overlaps(out, x):
                raise ValueError(f"gemm: out overlaps {name}; pass a separate output array")

    epilogue = bias is not None or activation is not None or preact_out is not None
    epilogue = epilogue or activation_params is not None  # checked, not dropped unread
    if epilogue:
        bias, act, preact_out = _check_epilogue(
            bias, activation, activation_params, preact_out, m, n, a, b, out
        )

    if m == 0 or n == 0:
        return out
    if variant == "auto":
        variant = "packed" if core is not None and _backend == "native" else "blas"
    lay = _layout(out)
    # the native packed drivers fuse the epilogue; elsewhere it is a pass of its own
    fused = epilogue and variant != "blas" and lay is not None and not lay[0]
    if fused and activation == "softplus" and act[2] != 20.0:  # the epilogue fixes threshold=20
        fused = False
    if k == 0 or alpha == 0.0:  # BLAS semantics: op(a) @ op(b) is not evaluated
        if beta == 0.0:
            out.fill(0)
        elif beta != 1.0:
            out *= beta
        if epilogue:
            _epilogue_after(out, bias, activation, activation_params, preact_out)
        return out

    if variant == "blas":
        blas = _blas()
        _runtime.cap_blas_threads()
        if blas is None:
            _scipy_gemm(a, b, out, alpha, beta, trans_a, trans_b)
            if epilogue:
                _epilogue_after(out, bias, activation, activation_params, preact_out)
            return out
        backend = blas.gemm
    else:
        if core is None:
            if bf16:  # the packed kernels alone compute in bf16
                raise RuntimeError(
                    f"gemm: precision='bf16' needs the native extension, which is unavailable "
                    f"({IMPORT_ERROR}); use precision='fp32'"
                )
            raise RuntimeError(
                f"gemm: variant {variant!r} needs the native extension, which is unavailable "
                f"({IMPORT_ERROR}); use variant='blas' or 'auto'"
            )
        code = _NATIVE_VARIANTS[variant]
        extra = (bias, act[0], act[1], preact_out) if fused else ()

        def backend(*args):
            core.gemm(code, *args, *extra, bf16=bf16)

    dest = out if lay is not None else np.empty((m, n), dtype=out.dtype)
    if lay is None:
        lay = (False, n)
        if beta != 0.0:
            dest[...] = out
    a, ta, lda = _operand(a, trans_a)
    b, tb, ldb = _operand(b, trans_b)
    column_major, ldc = lay
    if column_major:  # out holds C^T row-major: C^T = op(b)^T @ op(a)^T
        backend(not tb, not ta, n, m, k, alpha, b, ldb, a, lda, beta, dest, ldc)
    else:
        backend(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, dest, ldc)
    if dest is not out:
        out[...] = dest
    if epilogue and not fused:
        _epilogue_after(out, bias, activation, activation_params, preact_out)
    return out


def matmul(a, b, out=None):
    """The matrix product ``a @ b`` of two 2-D float32 or float64 arrays (see :func:`gemm`)."""
    return gemm(a, b, out)
