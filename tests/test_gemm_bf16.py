"""nnfast.gemm(precision="bf16") and the matmul-precision setting: every bf16 kernel around its
tile on every ISA path, transposes, out=, alpha/beta and the epilogue against a float64 product
of the bf16-rounded operands; the rounding itself on ties, subnormals, Inf and NaN; bad input.

The bound: the products of bf16 values are exact in fp32, so the only error is fp32
accumulation, at most about (K + 4) * 2**-24 * (|alpha| * |A| @ |B| + |beta| * |C|) per entry.
Operands that were not rounded to bf16 miss the reference by ~2**-9 relative, far outside it.
"""

import os
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest
from helpers import bf16_paths, round_bf16

import nnfast
import nnfast.functional as F
from nnfast._native import core

pytestmark = pytest.mark.skipif(core is None, reason="bf16 needs the native extension")

U = 2.0**-24  # fp32 unit roundoff


def reference(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None):
    """(float64 product of the rounded operands, the error bound of fp32 accumulation)."""
    opa = round_bf16(a.T if trans_a else a).astype(np.float64)
    opb = round_bf16(b.T if trans_b else b).astype(np.float64)
    want = alpha * (opa @ opb)
    mag = abs(alpha) * (np.abs(opa) @ np.abs(opb))
    if beta != 0.0:
        want += beta * c.astype(np.float64)
        mag += abs(beta) * np.abs(c.astype(np.float64))
    k = opa.shape[1]
    return want, (k + 4) * U * mag + 1e-30


def assert_bf16_close(got, a, b, **kw):
    want, bound = reference(a, b, **kw)
    err = np.abs(got.astype(np.float64) - want)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert (err <= bound).all(), f"max error / bound = {(err / bound).max():.3g}"


def operands(rng, m, k, n, trans_a=False, trans_b=False):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    return a, b


def test_bf16_kernel_is_reported(bf16_path):
    isa, tiles = bf16_path
    kernels = core.gemm_bf16_kernels()
    assert nnfast.info()["bf16_kernels"] == kernels
    (kern,) = kernels  # one kernel for every bf16 product, the convolutions' too
    assert kern["tiles"] is tiles
    native = isa == "avx512" and core.cpu_has("avx512bf16")
    assert kern["emulated"] is (not native)
    if tiles:
        assert kern["name"].endswith("_amx")
    elif native:
        assert kern["name"].endswith("_avx512bf16")
    else:  # the path's widest fp32 kernel, fed rounded operands
        assert kern["name"] == core.gemm_kernels()["float32"][0]["name"]


def test_every_bf16_kernel_around_its_tile(bf16_path, threads, rng):
    """M and N below, at and above the tile, K odd and even, across a K block; the
    transposes alternate so that every packing branch meets every edge. M also at and past 4
    and 8, where the AVX512_BF16 kernel's edge slivers change body, and 16 and 17, where AMX's
    two tiles of A meet; K past the 32 of a tile row."""
    (kern,) = core.gemm_bf16_kernels()
    mr, nr, kc = kern["mr"], kern["nr"], kern["kc"]
    ms = sorted({1, 4, 5, 8, 9, 16, 17, mr - 1, mr, mr + 1, 2 * mr + 3} - {0})
    ns = sorted({1, 17, nr - 1, nr, nr + 1} - {0})
    case = 0
    for m in ms:
        for n in ns:
            for k in (1, 2, 7, 33, kc + 5):
                ta, tb = bool(case & 1), bool(case & 2)
                case += 1
                a, b = operands(rng, m, k, n, ta, tb)
                got = nnfast.gemm(a, b, trans_a=ta, trans_b=tb, precision="bf16")
                assert_bf16_close(got, a, b, trans_a=ta, trans_b=tb)


@pytest.mark.parametrize(
    "trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)]
)
def test_transposes_and_sizes(bf16_path, threads, rng, trans_a, trans_b):
    for m, k, n in [(13, 33, 31), (127, 129, 65), (128, 784, 256), (257, 1100, 130)]:
        a, b = operands(rng, m, k, n, trans_a, trans_b)
        got = nnfast.gemm(a, b, trans_a=trans_a, trans_b=trans_b, precision="bf16")
        assert_bf16_close(got, a, b, trans_a=trans_a, trans_b=trans_b)


@pytest.mark.parametrize(
    "m,k,n",
    [
        (200, 300, 800),  # small, A the smaller: chunks split N, each packs A (in MC-row blocks)
        (1000, 100, 40),  # small, B the smaller: chunks split M, each packs B
        (600, 600, 300),  # large: a shared B panel, row blocks in a multiple of the threads
        (5, 3000, 70),  # one row sliver, K blocks
    ],
)
def test_driver_splits(bf16_path, threads, rng, m, k, n):
    """Every way the driver cuts a product into chunks (csrc/gemm_bf16.c), with the epilogue."""
    a, b = operands(rng, m, k, n, trans_b=True)
    bias = rng.standard_normal(n).astype(np.float32)
    got = nnfast.gemm(a, b, trans_b=True, bias=bias, precision="bf16")
    want, bound = reference(a, b, trans_b=True)
    err = np.abs(got.astype(np.float64) - (want + bias))
    assert (err <= bound + 1e-6 * np.abs(want + bias)).all()


@pytest.mark.parametrize("m,k,n", [(70, 700, 2050), (33, 1500, 2048)])
def test_out_at_every_place_in_a_cache_line_gives_the_same_bits(bf16_path, threads, rng, m, k, n):
    """Wide products whose C rows do not start on a cache line take a narrow first column
    sliver on the tile kernel (csrc/gemm_bf16.c, sliver_cols): the same sums, so the same bits
    as into a C on a line, with the epilogue and with beta."""
    a, b = operands(rng, m, k, n)
    bias = rng.standard_normal(n).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    first = {}
    for offset in range(0, 64, 4):
        buf = np.empty(m * n + 16, np.float32)
        start = (-buf.ctypes.data % 64 + offset) % 64 // 4
        out = buf[start : start + m * n].reshape(m, n)
        assert out.ctypes.data % 64 == offset
        for key, kwargs in (("relu", {"bias": bias, "activation": "relu"}),
                            ("beta", {"alpha": 0.5, "beta": 1.0})):  # fmt: skip
            out[...] = c0 if key == "beta" else np.nan
            nnfast.gemm(a, b, out, precision="bf16", **kwargs)
            if key not in first:
                first[key] = out.copy()
                if key == "beta":
                    assert_bf16_close(out, a, b, alpha=0.5, beta=1.0, c=c0)
                continue
            np.testing.assert_array_equal(out.view(np.uint32), first[key].view(np.uint32))


def test_shared_panel_packed_along_k(bf16_path, rng):
    """A shared B panel of a row-major B is packed in pieces along K (csrc/gemm_bf16.c,
    pack_b_chunk): K blocks of odd depth that are no multiple of the pieces, the last sliver
    partial; the same bits at every thread count, whatever the pieces per thread."""
    m, k, n = 600, 1037, 300
    a, b = operands(rng, m, k, n)
    before = nnfast.get_num_threads()
    try:
        results = []
        for nt in (1, 2, 3):
            nnfast.set_num_threads(nt)
            results.append(nnfast.gemm(a, b, precision="bf16"))
    finally:
        nnfast.set_num_threads(before)
    assert_bf16_close(results[0], a, b)
    for got in results[1:]:
        np.testing.assert_array_equal(got.view(np.uint32), results[0].view(np.uint32))


def test_threads_calling_at_once_keep_their_own_packing_buffers(bf16_path, threads, rng):
    """Each calling thread keeps its packing buffer from call to call (csrc/cpu.h,
    nnf_pack_buffer_acquire): threads calling at once, each through products that grow, shrink
    and regrow its buffer, in both precisions, all get the same bits as one thread alone."""
    shapes = [(64, 300, 70), (300, 520, 260), (33, 17, 5), (600, 600, 300), (130, 1100, 90)]
    cases = [(operands(rng, *s), p) for s in shapes for p in ("bf16", "fp32")]
    alone = [nnfast.gemm(a, b, precision=p) for (a, b), p in cases]
    got = [[None] * len(cases) for _ in range(4)]

    def work(t):  # each thread its own order, so that the sizes in flight differ
        for i in np.random.default_rng(t).permutation(len(cases)).tolist() * 2:
            (a, b), p = cases[i]
            got[t][i] = nnfast.gemm(a, b, precision=p)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for ((a, b), p), want in zip(cases, alone):
        if p == "bf16":
            assert_bf16_close(want, a, b)
        else:
            np.testing.assert_allclose(want, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    for t in range(4):
        for i, want in enumerate(alone):
            np.testing.assert_array_equal(got[t][i].view(np.uint32), want.view(np.uint32))


def test_paths_agree_bit_for_bit(rng):
    """With K inside one K block of every kernel, every ISA path (vdpbf16ps or fp32 FMAs on
    rounded operands, any tile) and thread count gives the same bits. AMX's tile kernel, whose
    sums round otherwise (csrc/gemm_bf16.h), gives bits of its own, the same at every thread
    count."""
    a, b = operands(rng, 170, 200, 90)
    a *= 1e3  # values whose sums do round
    results = {}
    before = nnfast.get_isa(), nnfast.get_num_threads(), core.set_bf16_tiles(False)
    try:
        for isa, tiles in bf16_paths():
            nnfast.set_isa(isa)
            core.set_bf16_tiles(tiles)
            for nt in (1, 2, 3, 7):
                nnfast.set_num_threads(nt)
                results[isa, tiles, nt] = nnfast.gemm(a, b, precision="bf16")
    finally:
        nnfast.set_isa(before[0])
        nnfast.set_num_threads(before[1])
        core.set_bf16_tiles(before[2])
    for tiles in (False, True):
        group = {key: got for key, got in results.items() if key[1] is tiles}
        if not group:
            continue
        first = next(iter(group.values()))
        assert_bf16_close(first, a, b)
        for key, got in group.items():
            np.testing.assert_array_equal(got.view(np.uint32), first.view(np.uint32), str(key))


def test_alpha_beta_out_layouts(bf16_path, rng):
    m, k, n = 37, 41, 43
    a, b = operands(rng, m, k, n)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    for alpha, beta in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25), (1.5, -1.0)]:
        for order in ("C", "F"):  # F: computed as C^T = B^T A^T, through the Python path
            out = c0.copy(order=order)
            ret = nnfast.gemm(a, b, out, alpha=alpha, beta=beta, precision="bf16")
            assert ret is out
            assert_bf16_close(out, a, b, alpha=alpha, beta=beta, c=c0)
    strided = np.zeros((m, 2 * n), np.float32)[:, ::2]  # no unit stride: a copy in and out
    strided[...] = c0
    nnfast.gemm(a, b, strided, alpha=2.0, beta=0.5, precision="bf16")
    assert_bf16_close(strided, a, b, alpha=2.0, beta=0.5, c=c0)
    nan = np.full((m, n), np.nan, np.float32)
    nnfast.gemm(a, b, nan, beta=0.0, precision="bf16")  # beta == 0 overwrites
    assert_bf16_close(nan, a, b)
    kzero = nnfast.gemm(np.ones((m, 0), np.float32), np.ones((0, n), np.float32),
                        c0.copy(), beta=2.0, precision="bf16")  # fmt: skip
    np.testing.assert_array_equal(kzero, 2 * c0)


@pytest.mark.parametrize(
    "act,params", [("relu", {}), ("tanh", {}), ("leaky_relu", {"negative_slope": 0.2})]
)
def test_epilogue(bf16_path, threads, rng, act, params):
    """The fused bias + activation (and preact) equal the separate pass over the bf16 product."""
    for m, k, n in [(7, 13, 5), (130, 70, 40), (300, 260, 200)]:
        a, b = operands(rng, m, k, n, trans_b=True)
        bias = rng.standard_normal(n).astype(np.float32)
        plain = nnfast.gemm(a, b, trans_b=True, precision="bf16")
        assert_bf16_close(plain, a, b, trans_b=True)
        pre = np.empty((m, n), np.float32)
        got = nnfast.gemm(a, b, trans_b=True, bias=bias, activation=act, activation_params=params,
                          preact_out=pre, precision="bf16")  # fmt: skip
        np.testing.assert_allclose(pre, plain + bias, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(
            got, F.bias_act(plain, bias, act, **params), rtol=2e-5, atol=2e-5
        )


SPECIAL = np.array(
    [0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0xBF808000,  # 1, ties, near ties
     0x00000001, 0x807FFFFF, 0x00400000, 0x00800000,  # subnormals, the least normal
     0x7F7FFFFF, 0x7F7F7FFF, 0xFF7F8000,  # overflow to Inf, the largest finite bf16, a tie to -Inf
     0x7F800000, 0xFF800000, 0x7FC00000, 0xFFA00000, 0x7F800001, 0x80000000, 0x00000000],
    dtype=np.uint32,
).view(np.float32)  # fmt: skip


def test_rounding_reference():
    """The test's own rounding, on hand-checked cases."""
    r = round_bf16(SPECIAL).view(np.uint32)
    expected = [0x3F800000, 0x3F800000, 0x3F820000, 0x3F810000, 0x3F800000, 0xBF800000,
                0, 0x80000000, 0, 0x00800000,
                0x7F800000, 0x7F7F0000, 0xFF800000, 0x7F800000, 0xFF800000]  # fmt: skip
    assert r[: len(expected)].tolist() == expected
    assert np.isnan(round_bf16(SPECIAL[15:18])).all()


@pytest.mark.parametrize("trans", [False, True])
def test_rounding_in_the_kernels(bf16_path, trans):
    """Special values pass through the packing of A (a K = 1 product with B = [[1]]) and of B
    (with A = [[1]]), both layouts: the result is the rounded value exactly (sign of zero aside:
    the product is added to +0)."""
    x = SPECIAL.reshape(-1, 1)
    one = np.ones((1, 1), np.float32)
    want = round_bf16(SPECIAL)
    a = np.ascontiguousarray(x.T) if trans else x
    got_a = nnfast.gemm(a, one, trans_a=trans, precision="bf16").ravel()
    b = x if trans else np.ascontiguousarray(x.T)
    got_b = nnfast.gemm(one, b, trans_b=trans, precision="bf16").ravel()
    for got in (got_a, got_b):
        np.testing.assert_array_equal(got, want)
        assert np.isnan(got[15:18]).all()


def test_nan_and_inf_propagate(bf16_path, rng):
    a, b = operands(rng, 16, 16, 40)
    a[3, 5] = np.nan
    b[2, 7] = np.inf
    got = nnfast.gemm(a, b, precision="bf16")
    want, _ = reference(a, b)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


def test_matmul_precision_setting(rng):
    a, b = operands(rng, 30, 50, 20)
    fp32 = nnfast.gemm(a, b)
    assert nnfast.get_matmul_precision() == "fp32"
    with nnfast.matmul_precision("bf16"):
        assert nnfast.get_matmul_precision() == "bf16"
        np.testing.assert_array_equal(nnfast.gemm(a, b), nnfast.gemm(a, b, precision="bf16"))
        np.testing.assert_array_equal(nnfast.gemm(a, b, precision="fp32"), fp32)
        a64, b64 = a.astype(np.float64), b.astype(np.float64)  # float64 is never rounded
        np.testing.assert_allclose(nnfast.gemm(a64, b64), a64 @ b64, rtol=1e-12)
        naive = nnfast.gemm(a, b, variant="naive", precision="fp32")
        np.testing.assert_array_equal(nnfast.gemm(a, b, variant="naive"), naive)
    assert nnfast.get_matmul_precision() == "fp32"
    np.testing.assert_array_equal(nnfast.gemm(a, b), fp32)
    with pytest.raises(KeyError):
        with nnfast.matmul_precision("bf16"):
            raise KeyError("inside")
    assert nnfast.get_matmul_precision() == "fp32"


def test_bad_precision(rng):
    a, b = operands(rng, 4, 5, 6)
    for bad in ("fp16", "BF16", None.__class__, 16):
        with pytest.raises(ValueError, match="unknown precision"):
            nnfast.gemm(a, b, precision=bad)
    with pytest.raises(ValueError, match="unknown precision"):
        nnfast.set_matmul_precision("half")
    assert nnfast.get_matmul_precision() == "fp32"
    with pytest.raises(TypeError, match="float32 operands"):
        nnfast.gemm(a.astype(np.float64), b.astype(np.float64), precision="bf16")
    for variant in ("naive", "blocked", "blas"):
        with pytest.raises(ValueError, match="packed kernels"):
            nnfast.gemm(a, b, precision="bf16", variant=variant)


def test_environment_isa_forces_the_emulated_kernel():
    code = "import nnfast; print(nnfast.info()['bf16_kernels'][0]['emulated'])"
    env = dict(os.environ, NNFAST_ISA="generic")
    r = subprocess.run(  # outside the source tree, which would shadow the installed package
        [sys.executable, "-c", code], env=env, capture_output=True, text=True,
        cwd=tempfile.gettempdir(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


def test_tile_kernel_setting(rng):
    """AMX's tile kernel serves only the AVX-512 path, and is refused where it cannot run."""
    a, b = operands(rng, 40, 70, 50)
    if not core.bf16_tiles_supported():
        with pytest.raises(RuntimeError, match="AMX tiles"):
            core.set_bf16_tiles(True)
        assert core.set_bf16_tiles(False) is False
        return
    before = nnfast.get_isa(), core.set_bf16_tiles(True)
    try:
        nnfast.set_isa("avx2")  # a path without it: that path's kernel, emulated
        assert not core.gemm_bf16_kernels()[0]["tiles"]
        assert_bf16_close(nnfast.gemm(a, b, precision="bf16"), a, b)
        nnfast.set_isa("avx512")
        assert core.gemm_bf16_kernels()[0]["tiles"]
        assert core.set_bf16_tiles(False) is True
        assert not core.gemm_bf16_kernels()[0]["tiles"]
    finally:
        nnfast.set_isa(before[0])
        core.set_bf16_tiles(before[1])
