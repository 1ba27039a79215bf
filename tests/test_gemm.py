"""nnfast.gemm against numpy (float64 reference) for every variant, dtype, transpose, ISA path
and thread count, on odd shapes, views and out=; and every bad input it must reject."""

import subprocess
import sys
import threading

import numpy as np
import pytest

import nnfast
from nnfast._runtime import MAX_THREADS

VARIANTS = ["naive", "blocked", "packed", "blas", "auto"]
# (M, K, N): empty, 1, primes, around the register tiles (MR <= 12, NR <= 32) and block sizes
SHAPES = [
    (0, 3, 4),
    (3, 0, 4),
    (1, 1, 1),
    (7, 13, 5),
    (12, 17, 32),
    (13, 33, 31),
    (25, 7, 65),
    (127, 129, 65),
    (200, 300, 130),
]


def reference(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None):
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    r = alpha * (opa.astype(np.float64) @ opb.astype(np.float64))
    if beta != 0.0:
        r += beta * c.astype(np.float64)
    return r


def assert_close(got, want, k, dtype):
    """Elementwise error bound that grows with K (rounding in a length-K dot product)."""
    eps = np.finfo(dtype).eps
    scale = np.abs(want).max() if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=8 * eps * max(k, 1) * max(scale, 1.0))


def operands(rng, m, k, n, dtype, trans_a, trans_b):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)]
)
def test_variants_match_numpy(isa, threads, rng, variant, dtype, trans_a, trans_b):
    for m, k, n in SHAPES:
        a, b = operands(rng, m, k, n, dtype, trans_a, trans_b)
        got = nnfast.gemm(a, b, trans_a=trans_a, trans_b=trans_b, variant=variant)
        assert got.dtype == dtype and got.shape == (m, n)
        assert_close(got, reference(a, b, trans_a, trans_b), k, dtype)


@pytest.mark.parametrize("variant", ["blocked", "packed", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_odd_shape(isa, rng, variant, dtype):
    # crosses every cache block (KC, MC) and the threaded paths
    m, k, n = 257, 511, 1025
    for trans_a, trans_b in [(False, False), (True, True)]:
        a, b = operands(rng, m, k, n, dtype, trans_a, trans_b)
        got = nnfast.gemm(a, b, trans_a=trans_a, trans_b=trans_b, variant=variant)
        assert_close(got, reference(a, b, trans_a, trans_b), k, dtype)


def test_every_registered_kernel_around_its_tile(isa, threads, rng):
    """XNNPACK-style sweep: for each registered micro-kernel, M and N below, at and above its
    MR and NR, K across a cache block, through both drivers of the packed variant; B stored
    transposed, and (N = NR) row-major, whose rows the small driver then reads in place."""
    from nnfast._native import core

    for dtype, kernels in core.gemm_kernels().items():
        for kern in kernels:
            mr, nr = kern["mr"], kern["nr"]
            ms = sorted({1, mr - 1, mr, mr + 1, 2 * mr + 3} - {0})
            ns = sorted({1, nr - 1, nr, nr + 1} - {0})
            for driver in ("small", "goto"):
                core.force_gemm_driver(driver)
                try:
                    for m in ms:
                        for n in ns:
                            for k in (1, 7, kern["kc"] + 5):
                                for tb in (True, False) if n == nr else (True,):
                                    a, b = operands(rng, m, k, n, dtype, False, tb)
                                    got = nnfast.gemm(a, b, trans_b=tb, variant="packed")
                                    assert_close(got, reference(a, b, False, tb), k, dtype)
                finally:
                    core.force_gemm_driver(None)


@pytest.mark.parametrize(
    "m,k,n",
    [
        (73728 // 8, 25, 6),
        (1024, 150, 16),
        (600, 300, 700),
        (8, 3000, 9),
        (7, 9001, 25),
        (16, 4097, 100),  # K split because it dwarfs M and N, though there are tiles enough
        (64, 1030, 200),  # two equal K blocks of 520 (f32 with NR 32 caps blocks at 1024)
        (2000, 16, 150),  # five column slivers: M split, the busiest thread has fewer tiles
    ],
)
def test_packed_paths(isa, threads, rng, m, k, n):
    """Skinny, long-K and Goto-sized products reach each packed driver and thread split."""
    a, b = operands(rng, m, k, n, np.float32, False, False)
    assert_close(nnfast.gemm(a, b, variant="packed"), reference(a, b), k, np.float32)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_alpha_beta_out(isa, rng, variant, dtype):
    m, k, n = 37, 41, 43
    a, b = operands(rng, m, k, n, dtype, False, False)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    for alpha, beta in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25), (0.0, 3.0), (1.5, -1.0)]:
        out = c0.copy()
        ret = nnfast.gemm(a, b, out, alpha=alpha, beta=beta, variant=variant)
        assert ret is out
        assert_close(out, reference(a, b, alpha=alpha, beta=beta, c=c0), k, dtype)


@pytest.mark.parametrize("variant", VARIANTS)
def test_beta_zero_overwrites_nan(variant, rng):
    a, b = operands(rng, 20, 30, 40, np.float32, False, False)
    out = np.full((20, 40), np.nan, np.float32)
    nnfast.gemm(a, b, out, beta=0.0, variant=variant)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_nan_and_inf_propagate(variant, rng):
    a, b = operands(rng, 16, 16, 40, np.float32, False, False)
    a[3, 5] = np.nan
    b[2, 7] = np.inf
    got = nnfast.gemm(a, b, variant=variant)
    want = reference(a, b)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


def layouts(x):
    """The same matrix as C-ordered, Fortran-ordered, a .T view of a transposed copy, a strided
    slice, a view with no unit stride (copied internally) and a read-only array."""
    big = np.zeros((x.shape[0] * 2, x.shape[1] * 3), x.dtype)
    big[::2, ::3] = x
    ro = x.copy()
    ro.flags.writeable = False
    padded = np.zeros((x.shape[0], x.shape[1] + 5), x.dtype)
    padded[:, : x.shape[1]] = x
    return {
        "C": np.ascontiguousarray(x),
        "F": np.asfortranarray(x),
        "T-view": np.ascontiguousarray(x.T).T,
        "row-slice": padded[:, : x.shape[1]],
        "no-unit-stride": big[::2, ::3],
        "read-only": ro,
    }


@pytest.mark.parametrize("variant", ["naive", "packed", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_operand_layouts(rng, variant, dtype):
    m, k, n = 19, 23, 29
    a, b = operands(rng, m, k, n, dtype, False, False)
    want = reference(a, b)
    for la, av in layouts(a).items():
        for lb, bv in layouts(b).items():
            got = nnfast.gemm(av, bv, variant=variant)
            assert_close(got, want, k, dtype), (la, lb)


@pytest.mark.parametrize("variant", ["naive", "packed", "blas"])
def test_out_layouts(rng, variant):
    m, k, n = 19, 23, 29
    a, b = operands(rng, m, k, n, np.float64, False, False)
    c0 = rng.standard_normal((m, n))
    want = reference(a, b, alpha=2.0, beta=0.5, c=c0)
    for name, view in layouts(c0).items():
        if name == "read-only":
            continue
        out = view.copy(order="K") if name in ("C", "F") else view
        if name not in ("C", "F"):
            out[...] = c0
        nnfast.gemm(a, b, out, alpha=2.0, beta=0.5, variant=variant)
        assert_close(out, want, k, np.float64), name


@pytest.fixture
def full_path(monkeypatch):
    """A function running nnfast.gemm with the Cython common call refused (the Python path)."""
    import nnfast._gemm as gemm_module

    if gemm_module.core is None:
        pytest.skip("needs the native extension")

    def run(*args, **kw):
        with monkeypatch.context() as mp:
            mp.setattr(gemm_module.core, "gemm_common", lambda *a: None)
            return nnfast.gemm(*args, **kw)

    return run


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
def test_common_call_matches_the_full_path(rng, full_path, dtype, trans_a, trans_b):
    """The packed variant (and "auto") check their everyday call in Cython (core.gemm_common)
    and hand anything unusual to the Python path: both paths must agree for every layout of a,
    b and out, with and without the epilogue."""
    m, k, n = 19, 23, 29
    a, b = operands(rng, m, k, n, dtype, trans_a, trans_b)
    bias = rng.standard_normal(n).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    kw = {"trans_a": trans_a, "trans_b": trans_b}
    for la, av in layouts(a).items():
        for lb, bv in layouts(b).items():
            want = full_path(av, bv, **kw)
            assert_close(nnfast.gemm(av, bv, **kw), want, k, dtype), (la, lb)
    want = full_path(a, b, c0.copy(), alpha=2.0, beta=0.5, **kw)
    for name, view in layouts(c0).items():
        if name == "read-only":
            continue
        out = view.copy(order="K") if name in ("C", "F") else view
        out[...] = c0
        nnfast.gemm(a, b, out, alpha=2, beta=0.5, variant="packed", **kw)
        assert_close(out, want, k, dtype), name
    pre_want = np.empty((m, n), dtype)
    want = full_path(a, b, bias=bias, activation="tanh", preact_out=pre_want, **kw)
    pre = np.empty((m, n), dtype)
    got = nnfast.gemm(a, b, bias=bias, activation="tanh", preact_out=pre, **kw)
    assert_close(got, want, k, dtype)
    assert_close(pre, pre_want, k, dtype)


def test_common_call_skips_the_python_checks(rng, monkeypatch):
    """The everyday call never reaches the Python argument checks (the point of the Cython
    path); an unusual one still does."""
    import nnfast._gemm as gemm_module

    if gemm_module.core is None:
        pytest.skip("needs the native extension")
    a, b = operands(rng, 5, 7, 3, np.float32, False, True)

    def fail(*args):
        raise AssertionError("the Python checks ran")

    monkeypatch.setattr(gemm_module, "_check_matrix", fail)
    got = nnfast.gemm(a, b, trans_b=True, bias=np.ones(3, np.float32), activation="relu")
    assert_close(got, np.maximum(reference(a, b, trans_b=True) + 1, 0), 7, np.float32)
    with pytest.raises(AssertionError, match="Python checks"):
        nnfast.gemm(a.tolist(), b, trans_b=True)


def test_matmul(rng):
    a, b = operands(rng, 5, 6, 7, np.float32, False, False)
    assert_close(nnfast.matmul(a, b), reference(a, b), 6, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_k_split_across_threads(threads, rng, dtype):
    """A weight gradient (M*N tiny, K long) splits K across threads; alpha/beta still apply."""
    m, k, n = 6, 20011, 25
    a, b = operands(rng, m, k, n, dtype, True, False)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    for alpha, beta in [(1.0, 0.0), (0.5, 2.0)]:
        out = c0.copy()
        nnfast.gemm(a, b, out, alpha=alpha, beta=beta, trans_a=True, variant="packed")
        assert_close(out, reference(a, b, True, False, alpha, beta, c0), k, dtype)


def test_gil_released_concurrent_calls(rng):
    a, b = operands(rng, 300, 200, 250, np.float32, False, False)
    want = reference(a, b)
    results = [None] * 4

    def work(i):
        results[i] = nnfast.gemm(a, b, variant="packed")

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for r in results:
        assert_close(r, want, 200, np.float32)


# --- bad input ---------------------------------------------------------------------------------


@pytest.fixture
def ab():
    return np.ones((3, 4), np.float32), np.ones((4, 5), np.float32)


def test_inner_dimension_mismatch(ab):
    a, _ = ab
    with pytest.raises(ValueError, match=r"a has 4 columns but b has 5 rows"):
        nnfast.gemm(a, np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match=r"op\(a\) has shape \(4, 3\)"):
        nnfast.gemm(a, np.ones((4, 2), np.float32), trans_a=True)


@pytest.mark.parametrize("bad", [np.ones(4, np.float32), np.ones((2, 2, 2), np.float32), 3.0])
def test_wrong_ndim(ab, bad):
    with pytest.raises(ValueError, match="must be 2-D"):
        nnfast.gemm(bad, ab[1])


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, np.complex64, bool])
def test_bad_dtype(ab, dtype):
    with pytest.raises(TypeError, match="a has dtype"):
        nnfast.gemm(ab[0].astype(dtype), ab[1])


def test_mixed_dtypes(ab):
    with pytest.raises(TypeError, match="a is float32 but b is float64"):
        nnfast.gemm(ab[0], ab[1].astype(np.float64))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("which", ["a", "b", "out", "bias", "preact_out"])
def test_byte_swapped_operand(variant, which, rng):
    """A big-endian >f4 array has numpy's float32 type number but its bytes reversed: the C
    kernels would read or write garbage. Every variant (the fast common call too) reads an
    operand or bias in the CPU's byte order, as the layers do, and refuses such an output,
    naming it (writing a converted copy would lose the result)."""
    ops = {
        "a": rng.standard_normal((3, 4)).astype(np.float32),
        "b": rng.standard_normal((4, 5)).astype(np.float32),
        "out": np.empty((3, 5), np.float32),
        "bias": rng.standard_normal(5).astype(np.float32),
        "preact_out": np.empty((3, 5), np.float32),
    }
    want = nnfast.gemm(ops["a"], ops["b"], bias=ops["bias"], activation="tanh", variant=variant)
    ops[which] = ops[which].astype(ops[which].dtype.newbyteorder(">"))
    call = dict(bias=ops["bias"], activation="tanh", variant=variant)
    if which in ("out", "preact_out"):
        with pytest.raises(TypeError, match=f"gemm: {which} (has dtype >f4|must be a float32)"):
            nnfast.gemm(ops["a"], ops["b"], **{which: ops[which]}, **call)
    else:
        np.testing.assert_array_equal(nnfast.gemm(ops["a"], ops["b"], **call), want)


def test_bad_out(ab):
    a, b = ab
    with pytest.raises(ValueError, match=r"out has shape \(5, 3\)"):
        nnfast.gemm(a, b, np.empty((5, 3), np.float32))
    with pytest.raises(TypeError, match="out has dtype float64"):
        nnfast.gemm(a, b, np.empty((3, 5), np.float64))
    ro = np.empty((3, 5), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        nnfast.gemm(a, b, ro)
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        nnfast.gemm(a, b, [[0.0] * 5] * 3)
    with pytest.raises(ValueError, match="needs an out array"):
        nnfast.gemm(a, b, beta=1.0)


def test_out_overlapping_input():
    buf = np.ones((4, 8), np.float32)
    a, out = buf[:, :5], buf[:, 3:]
    with pytest.raises(ValueError, match="out overlaps a"):
        nnfast.gemm(a, np.ones((5, 5), np.float32), out)
    # disjoint halves of one buffer are fine
    nnfast.gemm(buf[:, :4], np.ones((4, 4), np.float32), buf[:, 4:])
    np.testing.assert_array_equal(buf[:, 4:], 4.0)
    sq = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="out overlaps b"):
        nnfast.gemm(np.ones((4, 4), np.float32), sq, sq)


def test_bad_variant_and_scalars(ab):
    with pytest.raises(ValueError, match="unknown variant 'fast'"):
        nnfast.gemm(*ab, variant="fast")
    with pytest.raises(TypeError, match="alpha must be a real number"):
        nnfast.gemm(*ab, alpha="2")
    with pytest.raises(TypeError, match="beta must be a real number"):
        nnfast.gemm(*ab, np.zeros((3, 5), np.float32), beta=1j)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        nnfast.gemm(*ab, alpha=True)
    # an int past float's range, on the everyday call's path and the checked one
    with pytest.raises(ValueError, match=r"alpha is too large for a float \(401 digits\)"):
        nnfast.gemm(*ab, alpha=10**400)
    with pytest.raises(ValueError, match="beta is too large for a float"):
        nnfast.gemm(
            *ab, np.zeros((3, 5), np.float32), beta=-(10**400), bias=np.zeros(5, np.float32)
        )


@pytest.mark.parametrize("name", ["trans_a", "trans_b"])
@pytest.mark.parametrize("bad", ["no", "", np.array([1, 0]), 2, -1, 1.0, None])
def test_bad_transpose_flag(name, bad):
    """A flag must be a bool: "no" is truthy and an array has no single truth value. Checked
    before a variant is chosen, so one call covers them all."""
    a = np.ones((4, 4), np.float32)
    with pytest.raises(TypeError, match=f"gemm: {name} must be True or False"):
        nnfast.gemm(a, a, **{name: bad})


@pytest.mark.parametrize(
    "on,off", [(True, False), (np.True_, np.False_), (1, 0), (np.int64(1), np.int64(0))]
)
def test_transpose_flag_types(rng, on, off):
    """Each flag type means what the bool does (converted to bool before any variant runs)."""
    a, b = operands(rng, 5, 7, 3, np.float32, True, False)
    got = nnfast.gemm(a, b, trans_a=on, trans_b=off)
    assert_close(got, reference(a, b, trans_a=True), 7, np.float32)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dest", ["out", "preact_out"])
def test_bias_overlapping_an_output(rng, variant, dest):
    """The epilogue reads bias while writing out and preact_out: an overlap would corrupt the
    result (the common call in Cython does not check it; the Python path does)."""
    m, k, n = 64, 32, 48
    a, b = operands(rng, m, k, n, np.float32, False, False)
    buf = np.zeros((m + 1, n), np.float32)
    buf[0] = 1.0
    other = np.empty((m, n), np.float32)
    out, pre = (buf[:m], other) if dest == "out" else (other, buf[:m])
    with pytest.raises(ValueError, match=f"gemm: bias overlaps {dest}"):
        nnfast.gemm(a, b, out, bias=buf[0], activation="relu", preact_out=pre, variant=variant)
    # a bias in the same buffer but apart from the outputs is fine
    out, pre = (buf[1:], other) if dest == "out" else (other, buf[1:])
    nnfast.gemm(a, b, out, bias=buf[0], preact_out=pre, variant=variant)
    np.testing.assert_allclose(out, a @ b + 1.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(pre, out)


# --- configuration -----------------------------------------------------------------------------


def test_threads_api():
    before = nnfast.get_num_threads()
    try:
        nnfast.set_num_threads(1)
        assert nnfast.get_num_threads() == 1
        for good in (np.int64(2), np.uint8(1), MAX_THREADS):
            nnfast.set_num_threads(good)
            assert nnfast.get_num_threads() == good and type(nnfast.get_num_threads()) is int
            assert nnfast.info()["num_threads"] == good
        nnfast.set_num_threads(2)
        too_many = (MAX_THREADS + 1, 10**6, 2**31, 2**64, np.int64(2**40))
        wrong_type = (1.5, "2", True, np.True_, np.float64(2), None)
        for bad in (0, -1, *too_many, *wrong_type):
            error = TypeError if any(bad is w for w in wrong_type) else ValueError
            with pytest.raises(error, match="set_num_threads: n must be"):
                nnfast.set_num_threads(bad)
            assert nnfast.get_num_threads() == 2 == nnfast.info()["num_threads"]
    finally:
        nnfast.set_num_threads(before)


def test_isa_api():
    info = nnfast.info()
    assert info["native"] and info["isa"] in info["isa_supported"]
    assert "generic" in info["isa_compiled"]
    with pytest.raises(ValueError, match="unknown ISA"):
        nnfast.set_isa("sse9")


def run_python(code, **env):
    """Run code in a fresh interpreter, outside the source tree (which has no compiled
    extension and would shadow the installed package)."""
    import os
    import tempfile

    full_env = dict(os.environ, **env)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tempfile.gettempdir(),
    )


def test_environment_threads_and_isa():
    code = "import nnfast; print(nnfast.get_num_threads(), nnfast.get_isa())"
    r = run_python(code, NNFAST_NUM_THREADS="3", OMP_NUM_THREADS="7", NNFAST_ISA="generic")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["3", "generic"]
    r = run_python(code, NNFAST_NUM_THREADS="", OMP_NUM_THREADS="5,2", NNFAST_ISA="")
    assert r.stdout.split()[0] == "5"
    r = run_python(code, NNFAST_NUM_THREADS="lots", NNFAST_ISA="sse9")
    assert r.returncode == 0 and "ignoring NNFAST_NUM_THREADS" in r.stderr
    assert "NNFAST_ISA='sse9' ignored" in r.stderr


@pytest.mark.parametrize(
    "var,raw",
    [
        ("NNFAST_NUM_THREADS", str(MAX_THREADS + 1)),
        ("NNFAST_NUM_THREADS", "99999999999"),  # more than a C int holds
        ("OMP_NUM_THREADS", "1000000"),
    ],
)
def test_environment_thread_count_too_large(var, raw):
    """Ignored like a non-number, with a warning: the next variable (or the CPU count)
    applies, and import does not fail."""
    # the CPUs this process may run on: the documented fallback when no variable applies
    code = (
        "import os, nnfast; print(nnfast.get_num_threads(), len(os.sched_getaffinity(0))"
        " if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1)"
    )
    env = {"NNFAST_NUM_THREADS": "", "OMP_NUM_THREADS": "", var: raw}
    if var == "NNFAST_NUM_THREADS":
        env["OMP_NUM_THREADS"] = "2"
    r = run_python(code, **env)
    assert r.returncode == 0, r.stderr
    assert f"ignoring {var}={raw!r} (expected a whole number from 1 to" in r.stderr
    n, cpus = map(int, r.stdout.split())
    assert n == (2 if var == "NNFAST_NUM_THREADS" else cpus)


def test_scipy_fallback_without_extension():
    code = """
import numpy as np, nnfast
info = nnfast.info()
assert not info["native"] and info["blas_fallback"], info
rng = np.random.default_rng(0)
a = rng.standard_normal((30, 20)).astype(np.float32)
b = rng.standard_normal((40, 20)).astype(np.float32)
c = np.ones((30, 40), np.float32)
nnfast.gemm(a, b, c, trans_b=True, alpha=2.0, beta=0.5)
np.testing.assert_allclose(c, 2 * a @ b.T + 0.5, rtol=1e-4, atol=1e-4)
f = np.asfortranarray(np.ones((30, 40)))
nnfast.gemm(a.astype(np.float64), b.T.astype(np.float64), f, beta=1.0)
np.testing.assert_allclose(f, a.astype(np.float64) @ b.T + 1, rtol=1e-10)
try:
    nnfast.gemm(a, b.T, variant="packed")
except RuntimeError as err:
    assert "native extension" in str(err)
else:
    raise AssertionError("packed without the extension must raise")
try:
    nnfast.gemm(a, b.T, precision="bf16")
except RuntimeError as err:
    assert "precision='bf16' needs the native extension" in str(err), err
    assert "disabled by NNFAST_DISABLE_NATIVE" in str(err), err
else:
    raise AssertionError("bf16 without the extension must raise")
print("ok")
"""
    r = run_python(code, NNFAST_DISABLE_NATIVE="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_c_core_builds_and_runs_without_threads(tmp_path):
    """The C sources compile without the thread pool (no pthreads: NNF_HAVE_THREADS unset) and
    stay correct, single-threaded. Built here with the system C compiler, called via ctypes."""
    import ctypes
    import shutil
    from pathlib import Path

    csrc = Path(__file__).resolve().parent.parent / "csrc"
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not (csrc / "gemm.c").exists():
        pytest.skip("needs a C compiler and the source checkout")
    lib = tmp_path / "libnnfast_nothreads.so"
    srcs = [str(p) for p in sorted(csrc.glob("*.c"))]  # ISA files build empty without flags
    r = subprocess.run(
        [cc, "-O1", "-shared", "-fPIC", "-std=gnu11", "-Wall", "-o", str(lib), *srcs],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    dll = ctypes.CDLL(str(lib))
    assert dll.nnf_threads_enabled() == 0
    assert dll.nnf_set_num_threads(4) == 0 and dll.nnf_get_num_threads() == 1
    sz, f32, ptr = ctypes.c_ssize_t, ctypes.c_float, ctypes.c_void_p
    dll.nnf_sgemm.argtypes = [ctypes.c_int] * 3 + [sz] * 3 + [f32, ptr, sz, ptr, sz, f32, ptr, sz]
    rng = np.random.default_rng(0)
    m, k, n = 37, 300, 45
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = np.empty((m, n), np.float32)
    pa, pb, pc = a.ctypes.data, b.ctypes.data, c.ctypes.data
    for variant in (0, 1, 2):
        assert dll.nnf_sgemm(variant, 0, 0, m, n, k, 1.0, pa, k, pb, n, 0.0, pc, n) == 0
        assert_close(c, reference(a, b), k, np.float32)
    # bad arguments give a status code, never a crash: lda too small, unknown variant
    assert dll.nnf_sgemm(2, 0, 0, m, n, k, 1.0, pa, k - 1, pb, n, 0.0, pc, n) != 0
    assert dll.nnf_sgemm(7, 0, 0, m, n, k, 1.0, pa, k, pb, n, 0.0, pc, n) != 0
