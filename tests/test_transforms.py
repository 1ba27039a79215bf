"""Data augmentation: transforms against reference loops, identity parameters, seeding, the
DataLoader's per-batch generators, the numpy fallback, and bad parameters."""

import numpy as np
import pytest

from nnfast.data import (
    Compose,
    DataLoader,
    Normalize,
    RandomAffine,
    RandomHorizontalFlip,
    RandomShift,
)
from nnfast.data import transforms as T


def shift_reference(x, d, fill):
    """Image k shifted by d[k] = (dy, dx) whole pixels: np.roll, then the wrapped-in rows and
    columns set to fill."""
    out = np.empty_like(x)
    for k in range(len(x)):
        dy, dx = d[k]
        img = np.roll(x[k], (dy, dx), axis=(-2, -1))
        if dy > 0:
            img[..., :dy, :] = fill
        elif dy < 0:
            img[..., dy:, :] = fill
        if dx > 0:
            img[..., :dx] = fill
        elif dx < 0:
            img[..., dx:] = fill
        out[k] = img
    return out


def bilinear_reference(x, mats, fill):
    """Pixel by pixel: output (i, j) of image k reads the source point mats[k] @ (i, j, 1)."""
    n, c, h, w = x.shape
    y = np.empty_like(x)

    def px(k, ch, r, s):
        return x[k, ch, r, s] if 0 <= r < h and 0 <= s < w else fill

    for k in range(n):
        a, b, ty, cc, d, tx = mats[k]
        for i in range(h):
            for j in range(w):
                sy, sx = a * i + b * j + ty, cc * i + d * j + tx
                r, s = int(np.floor(sy)), int(np.floor(sx))
                fy, fx = sy - r, sx - s
                for ch in range(c):
                    top = (1 - fx) * px(k, ch, r, s) + fx * px(k, ch, r, s + 1)
                    bottom = (1 - fx) * px(k, ch, r + 1, s) + fx * px(k, ch, r + 1, s + 1)
                    y[k, ch, i, j] = (1 - fy) * top + fy * bottom
    return y


@pytest.mark.parametrize("shape", [(6, 9, 7), (5, 3, 8, 8)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fill", [0.0, -0.5])
def test_shift_is_roll_plus_fill(shape, dtype, fill, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y = RandomShift(3, fill=fill)(x, np.random.default_rng(7))
    d = np.random.default_rng(7).integers(-3, 4, size=(len(x), 2))
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, shift_reference(x, d, fill))


@pytest.mark.parametrize(
    "make", [lambda f: RandomShift(2, fill=f), lambda f: RandomAffine(5, fill=f)]
)
def test_a_fill_past_the_images_dtype_is_refused(make, rng):
    """It was inf in float32 images; float64 images take it."""
    x = rng.standard_normal((2, 5, 5))
    with pytest.raises(ValueError, match=r"fill 1e\+308 is past the range of the float32 images"):
        make(1e308)(x.astype(np.float32), np.random.default_rng(0))
    assert np.isfinite(make(1e308)(x, np.random.default_rng(0))).all()


def test_shift_larger_than_the_image_gives_fill(rng):
    x = rng.standard_normal((20, 3, 3)).astype(np.float32)
    y = RandomShift(50, fill=2.0)(x, np.random.default_rng(0))
    d = np.random.default_rng(0).integers(-50, 51, size=(20, 2))
    np.testing.assert_array_equal(y, shift_reference(x, np.clip(d, -3, 3), 2.0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_warp_against_a_pixel_loop(dtype, rng):
    x = rng.standard_normal((4, 2, 7, 6)).astype(dtype)
    mats = rng.uniform(-1.5, 1.5, (4, 6))
    mats[:, 2] *= 4
    mats[:, 5] *= 4
    want = bilinear_reference(x.astype(float), mats, 0.25)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(T._warp(x, mats, 0.25), want, rtol=tol, atol=tol)


def test_numpy_fallback_matches_the_kernel(monkeypatch, rng):
    x = rng.standard_normal((8, 1, 11, 13)).astype(np.float32)
    aff = RandomAffine(30, translate=(0.2, 0.1), scale=(0.7, 1.3), fill=-0.3)
    shift = RandomShift(4)
    native = [t(x, np.random.default_rng(3)) for t in (aff, shift)]
    from nnfast import _native

    monkeypatch.setattr(_native, "core", None)
    fallback = [t(x, np.random.default_rng(3)) for t in (aff, shift)]
    np.testing.assert_allclose(native[0], fallback[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(native[1], fallback[1])


def test_rotation_by_90_degrees_is_rot90(rng):
    x = rng.standard_normal((3, 1, 9, 9))
    y = RandomAffine((90, 90))(x, rng)
    np.testing.assert_allclose(y, np.rot90(x, 1, axes=(2, 3)), atol=1e-12)


def test_scale_two_zooms_about_the_centre(rng):
    x = rng.standard_normal((2, 9, 9))
    y = RandomAffine(0, scale=(2, 2))(x, rng)
    # output pixel p reads the source point c + (p - c) / 2 with c = 4
    np.testing.assert_allclose(y[:, 4, 4], x[:, 4, 4], atol=1e-12)
    np.testing.assert_allclose(y[:, 6, 2], x[:, 5, 3], atol=1e-12)
    np.testing.assert_allclose(y[:, 5, 4], (x[:, 4, 4] + x[:, 5, 4]) / 2, atol=1e-12)


def test_translate_stays_within_its_fraction():
    x = np.zeros((200, 20, 20))
    x[:, 10, 10] = 1.0
    y = RandomAffine(0, translate=(0.25, 0.0))(x, np.random.default_rng(0))
    cols = (y.sum(axis=1) * np.arange(20)).sum(axis=1) / y.sum(axis=(1, 2))
    rows = (y.sum(axis=2) * np.arange(20)).sum(axis=1) / y.sum(axis=(1, 2))
    np.testing.assert_allclose(rows, 10, atol=1e-9)  # no vertical translation
    assert np.all(np.abs(cols - 10) <= 5 + 1e-9) and np.ptp(cols) > 5  # up to 0.25 * 20


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("shape", [(40, 5, 7), (30, 2, 4, 6)])
def test_flip_against_a_loop(p, shape, rng):
    x = rng.standard_normal(shape)
    y = RandomHorizontalFlip(p)(x, np.random.default_rng(4))
    draws = np.random.default_rng(4).random(len(x))  # one draw per image, in order
    for k in range(len(x)):
        want = x[k][..., ::-1] if draws[k] < p else x[k]
        np.testing.assert_array_equal(y[k], want)
    flipped = sum(not np.array_equal(y[k], x[k]) for k in range(len(x)))
    assert flipped == int((draws < p).sum())
    assert (flipped == len(x)) if p == 1 else (flipped == 0) if p == 0 else 0 < flipped < len(x)


@pytest.mark.parametrize(
    "transform",
    [
        RandomShift(0),
        RandomAffine(0),
        RandomAffine((0, 0), (0, 0), (1, 1), fill=3.0),
        RandomHorizontalFlip(0),
    ],
    ids=repr,
)
@pytest.mark.parametrize("shape", [(4, 28, 28), (3, 2, 5, 6)])
def test_identity_parameters_give_the_identity(transform, shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    y = transform(x, rng)
    assert y is not x
    np.testing.assert_array_equal(y, x)


def test_integer_images_become_float32():
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    y = RandomShift(0)(x, np.random.default_rng(0))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize(
    "mean, std, what",
    [(1e300, 1.0, r"mean \[1e\+300\] is not a finite float32"),
     (0.0, 1e-300, r"std \[1e-300\] is not a finite nonzero float32"),
     (0.0, 1e-45, r"overflows the float32 images")],
)  # fmt: skip
def test_normalize_refuses_what_float32_images_cannot_hold(mean, std, what):
    """Finite parameters past float32's range gave images of inf (and 0 / 0: NaN), with
    numpy's warnings only."""
    x = np.ones((1, 2, 2), np.float32)
    with pytest.raises(ValueError, match=what):
        Normalize(mean, std)(x)
    assert np.isfinite(Normalize(mean, std)(x.astype(np.float64))).all()  # float64 holds them


def test_normalize(rng):
    x = rng.uniform(0, 1, (4, 3, 5, 5)).astype(np.float32)
    y = Normalize([0.1, 0.2, 0.3], [0.5, 1.0, 2.0])(x)
    want = (x - np.array([0.1, 0.2, 0.3])[:, None, None]) / np.array([0.5, 1, 2])[:, None, None]
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    assert y.dtype == np.float32
    np.testing.assert_allclose(Normalize(0.5, 2.0)(x), (x - 0.5) / 2, rtol=1e-6)


def test_compose_applies_in_order_and_is_seeded(rng):
    x = rng.standard_normal((16, 12, 12)).astype(np.float32)
    t = Compose([RandomAffine(15, (0.1, 0.1), (0.9, 1.1)), RandomShift(2), Normalize(1.0, 2.0)])
    a = t(x, np.random.default_rng(5))
    b = t(x, np.random.default_rng(5))
    c = t(x, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    r = np.random.default_rng(5)  # the chain shares one generator, in order
    want = Normalize(1.0, 2.0)(RandomShift(2)(RandomAffine(15, (0.1, 0.1), (0.9, 1.1))(x, r), r))
    np.testing.assert_array_equal(a, want)
    assert "RandomShift(max_px=2" in repr(t)


def test_loader_transform_depends_on_seed_epoch_and_batch_only(rng):
    x = rng.standard_normal((50, 8, 8)).astype(np.float32)
    y = np.arange(50)
    aug = RandomShift(2)

    def epochs(loader, k):
        return [[xb.copy() for xb, _ in loader] for _ in range(k)]

    first = epochs(DataLoader(x, y, batch_size=16, seed=3, transform=aug), 2)
    again = epochs(DataLoader(x, y, batch_size=16, seed=3, transform=aug), 2)
    for e in range(2):
        for a, b in zip(first[e], again[e]):
            np.testing.assert_array_equal(a, b)
    # epoch 1 alone (as a resumed run starts it) gives the same batches
    loader = DataLoader(x, y, batch_size=16, seed=3, transform=aug)
    loader.set_epoch(1)
    for a, (b, _) in zip(first[1], loader):
        np.testing.assert_array_equal(a, b)
    # and so does gathering batch b of epoch 1 by hand
    order = loader.order(1)
    for b in range(len(loader)):
        xb = loader.transform_batch(x[order[b * 16 : (b + 1) * 16]], 1, b)
        np.testing.assert_array_equal(xb, first[1][b])
    # the two epochs are augmented differently (not just reordered)
    unaugmented = [xb for xb, _ in DataLoader(x, y, batch_size=16, seed=3)]
    assert not np.array_equal(first[0][0], unaugmented[0])


def test_loader_plain_callable_transform_is_called_with_the_batch_only(rng):
    x = rng.standard_normal((10, 4)).astype(np.float32)
    batches = list(DataLoader(x, batch_size=4, shuffle=False, transform=lambda b: b * 2))
    np.testing.assert_array_equal(np.concatenate(batches), x * 2)


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: RandomShift(-1), ValueError, r"max_px must be a whole number in \[0, "),
        # past these bounds numpy's draws overflow; they mean nothing more to an image
        (lambda: RandomShift(2**63), ValueError, r"max_px must be a whole number in \[0, "),
        (lambda: RandomAffine(1e308), ValueError, r"degrees must be finite and in \[0, 360\]"),
        (lambda: RandomAffine((-400, 0)), ValueError, r"in \[-360, 360\], got -400"),
        (lambda: RandomAffine(0, scale=(1, 1e300)), ValueError, r"scale must be .* 1e\+06\]"),
        (lambda: RandomShift(1.5), TypeError, "max_px must be an int"),
        (lambda: RandomShift(True), TypeError, "max_px must be an int"),
        (lambda: RandomShift(2, fill=float("nan")), ValueError, "fill must be finite"),
        (lambda: RandomAffine(-5), ValueError, r"degrees must be finite and in \[0, 360\]"),
        (lambda: RandomAffine("10"), TypeError, "degrees must be a real number"),
        (lambda: RandomAffine((20, 10)), ValueError, "degrees must be .min, max."),
        (lambda: RandomAffine(0, scale=(0, 1)), ValueError, r"scale must be finite and in \(0, "),
        (lambda: RandomAffine(0, scale=(-1, 1)), ValueError, r"scale must be finite and in \(0, "),
        (lambda: RandomAffine(0, scale=(1.2, 1.1)), ValueError, "scale must be .min, max."),
        (lambda: RandomAffine(0, scale=1.1), ValueError, "scale must be a pair"),
        (lambda: RandomAffine(0, translate=(1.5, 0)), ValueError, "translate must be finite"),
        (lambda: RandomAffine(0, translate=(0.1,)), ValueError, "translate must be a pair"),
        (lambda: RandomHorizontalFlip(-0.1), ValueError, r"p must be finite and in \[0, 1\]"),
        (lambda: RandomHorizontalFlip(1.5), ValueError, r"in \[0, 1\], got 1.5"),
        (lambda: RandomHorizontalFlip("0.5"), TypeError, "p must be a real number"),
        (lambda: Normalize(0.5, 0.0), ValueError, "std must be finite and > 0"),
        (lambda: Normalize([], 1.0), ValueError, "mean must not be empty"),
        (lambda: Compose([RandomShift(1), 3]), TypeError, "must be callable"),
        (lambda: Compose(5), TypeError, "Compose: transforms must be a list of callables"),
        (lambda: Compose(None), TypeError, "Compose: transforms must be a list of callables"),
    ],
)
def test_bad_parameters_are_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("shape", [(28, 28), (2, 1, 1, 28, 28), (5,)])
@pytest.mark.parametrize(
    "transform", [RandomShift(1), RandomAffine(5), RandomHorizontalFlip()], ids=repr
)
def test_wrong_input_rank_is_a_clear_error(transform, shape):
    with pytest.raises(ValueError, match=r"expected a batch of images \(N, H, W\)"):
        transform(np.zeros(shape, np.float32), np.random.default_rng(0))


def test_other_bad_inputs():
    x = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="mean has 2 values but the input"):
        Normalize([0.1, 0.2], 1.0)(x)
    with pytest.raises(TypeError, match="complex128"):
        RandomShift(1)(x.astype(complex), np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
        RandomShift(1)(x, 3)


def test_the_bounds_themselves_are_accepted():
    assert RandomAffine((-360, 360)).degrees == (-360.0, 360.0)
    assert RandomAffine(360, scale=(1e-3, 1e6)).scale == (1e-3, 1e6)
    assert RandomShift(2**30).max_px == 2**30


@pytest.mark.parametrize(
    "transform", [RandomShift(2), RandomAffine(10, (0.1, 0.1), (0.9, 1.1)), RandomHorizontalFlip()]
)
@pytest.mark.parametrize("shape", [(0, 8, 8), (0, 3, 8, 8), (2, 0, 8), (2, 3, 8, 0)])
def test_an_empty_batch_or_plane_comes_back_empty(transform, shape):
    x = np.zeros(shape, np.float32)
    y = transform(x, np.random.default_rng(0))
    assert y.shape == shape and y.dtype == np.float32
    assert y is not x  # a new array, as for any other batch
