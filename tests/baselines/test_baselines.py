"""Tests for the classical DWT, Laplacian-pyramid and DT-CWT fusion baselines."""

import cv2
import numpy as np
import pytest
import pywt

from mfkeras.baselines import wavelets as baselines
from mfkeras.baselines import registry, selection

METHODS = sorted(registry.WAVELET_BASELINES)
SEAM_BAND = 16
BLUR_SIGMA = 2.5


def _textured(shape, seed=0):
    """A seeded noise texture, lightly smoothed, scaled to [0, 1] (float64)."""
    noise = np.random.default_rng(seed).random(shape)
    texture = cv2.GaussianBlur(noise, (0, 0), 1.0)
    return (texture - texture.min()) / (texture.max() - texture.min())


def _blur(image):
    return cv2.GaussianBlur(image, (0, 0), BLUR_SIGMA)


def _focus_pair(sharp):
    """A is sharp on the left half, B on the right half; each is blurred elsewhere."""
    blurred, half = _blur(sharp), sharp.shape[1] // 2
    a, b = sharp.copy(), sharp.copy()
    a[:, half:] = blurred[:, half:]
    b[:, :half] = blurred[:, :half]
    return a, b


def _convert(image, dtype):
    """Maps a [0, 1] float image to ``dtype`` (full range for integer types)."""
    if np.issubdtype(dtype, np.integer):
        return np.rint(image * np.iinfo(dtype).max).astype(dtype)
    return image.astype(dtype)


def _mean_abs_error(image, reference):
    return np.abs(image.astype(np.float64) - reference.astype(np.float64)).mean()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(48, 64), (37, 45), (37, 45, 3), (64, 48, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_fusing_an_image_with_itself_returns_it(method, shape, dtype):
    image = _convert(_textured(shape), dtype)
    fused = registry.get_baseline(method)([image, image])
    if np.issubdtype(dtype, np.integer):
        difference = np.abs(fused.astype(np.int64) - image.astype(np.int64))
        assert difference.max() <= 1
    else:
        atol = 1e-12 if dtype == np.float64 else 1e-6
        np.testing.assert_allclose(fused, image, rtol=0, atol=atol)


@pytest.mark.parametrize("method", METHODS)
def test_fusing_a_float_image_of_any_range_with_itself_returns_it(method):
    image = _textured((40, 56, 3)) * 1000.0 - 300.0
    fused = registry.get_baseline(method)([image, image, image])
    np.testing.assert_allclose(fused, image, rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(37, 45), (37, 45, 3), (64, 80), (33, 64, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float16, np.float32, np.float64])
def test_output_shape_and_dtype_match_inputs(method, shape, dtype):
    a, b = (_convert(image, dtype) for image in _focus_pair(_textured(shape)))
    fused = registry.get_baseline(method)([a, b])
    assert fused.shape == shape
    assert fused.dtype == dtype


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(96, 128), (96, 128, 3), (95, 131)])
def test_fused_focus_pair_is_closer_to_the_sharp_image_than_either_source(method, shape):
    sharp = _textured(shape)
    a, b = _focus_pair(sharp)
    fused = registry.get_baseline(method)([a, b])

    error = _mean_abs_error(fused, sharp)
    assert error < 0.5 * min(_mean_abs_error(a, sharp), _mean_abs_error(b, sharp))
    # Away from the seam the fused image must match the in-focus source closely; averaging
    # the sources would leave half the blur error there.
    half = shape[1] // 2
    away = np.ones(shape[:2], bool)
    away[:, half - SEAM_BAND : half + SEAM_BAND] = False
    blur_error = _mean_abs_error(_blur(sharp)[away], sharp[away])
    assert _mean_abs_error(fused[away], sharp[away]) < 0.1 * blur_error


@pytest.mark.parametrize("method", METHODS)
def test_fused_uint8_colour_pair_is_closer_to_the_sharp_image(method):
    sharp = _convert(_textured((80, 96, 3)), np.uint8)
    a, b = (_convert(image / 255.0, np.uint8) for image in _focus_pair(sharp.astype(np.float64)))
    fused = registry.get_baseline(method)([a, b])
    error = _mean_abs_error(fused, sharp)
    assert error < 0.5 * min(_mean_abs_error(a, sharp), _mean_abs_error(b, sharp))


@pytest.mark.parametrize("method", METHODS)
def test_choose_max_is_symmetric_in_the_sources(method):
    fuse = registry.get_baseline(method)
    sharp = _textured((64, 72, 3))
    a, b = _focus_pair(sharp)
    # Identical rows give exact ties in activity, which must not favour the first source.
    a[:24], b[:24] = sharp[:24], sharp[:24]
    np.testing.assert_allclose(fuse([a, b]), fuse([b, a]), rtol=0, atol=1e-12)
    a8, b8 = _convert(a, np.uint8), _convert(b, np.uint8)
    difference = fuse([a8, b8]).astype(int) - fuse([b8, a8]).astype(int)
    assert np.abs(difference).max() <= 1


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("channels", [(), (3,)])
def test_three_sources_each_sharp_in_one_third(method, channels):
    shape = (72, 120) + channels
    sharp = _textured(shape, seed=3)
    blurred = _blur(sharp)
    sources = []
    for third in range(3):
        source = blurred.copy()
        source[:, 40 * third : 40 * (third + 1)] = sharp[:, 40 * third : 40 * (third + 1)]
        sources.append(source)
    fuse = registry.get_baseline(method)

    fused = fuse(sources)

    assert fused.shape == shape
    error = _mean_abs_error(fused, sharp)
    assert error < 0.5 * min(_mean_abs_error(s, sharp) for s in sources)
    rotated = fuse(sources[1:] + sources[:1])
    np.testing.assert_allclose(fused, rotated, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_integer_output_is_rounded_and_clipped_not_wrapped(method):
    # Hard black/white squares: choose-max overshoots next to the edges.
    squares = np.kron(np.indices((6, 6)).sum(axis=0) % 2, np.ones((8, 8))) * 255.0
    a, b = _focus_pair(squares)
    fuse = registry.get_baseline(method)
    fused_float = fuse([a, b])
    assert fused_float.min() < -0.5 or fused_float.max() > 255.5  # Float output is unclipped.

    a8, b8 = np.rint(a).astype(np.uint8), np.rint(b).astype(np.uint8)
    expected = np.clip(np.rint(fuse([a8.astype(np.float64), b8.astype(np.float64)])), 0, 255)
    np.testing.assert_array_equal(fuse([a8, b8]), expected.astype(np.uint8))


# sym4 fits two levels on a 37-pixel side without boundary-dominated coefficients.
LEVELS = 2


@pytest.mark.parametrize("consistency_check", [True, False])
def test_majority_filter_overrules_an_isolated_choice(consistency_check):
    # Source 0 wins everywhere except at one coefficient, where source 1 is stronger.
    band = np.zeros((2, 7, 7, 1))
    band[0] = 2.0
    band[1] = 1.0
    band[1, 3, 3] = 50.0
    fused = selection.choose_max(band, window=1, consistency_check=consistency_check)
    expected = np.full((7, 7, 1), 2.0)
    if not consistency_check:
        expected[3, 3] = 50.0
    np.testing.assert_array_equal(fused, expected)


def test_ties_do_not_favour_the_first_source():
    # The sources tie everywhere but at the centre, where source 1 is stronger. Tied votes
    # are shared, so the centre keeps source 1's coefficient in either order; giving ties
    # to the first source would let the majority filter flip the centre in one order.
    band = np.ones((2, 5, 5, 1))
    band[1, 2, 2] = 1.5
    for ordered in (band, band[::-1]):
        fused = selection.choose_max(ordered, window=1, consistency_check=True)
        assert fused[2, 2, 0] == 1.5
        assert np.all(np.delete(fused.ravel(), 12) == 1.0)


@pytest.mark.parametrize("window, expected", [(1, -9.0), (3, 3.0)])
def test_window_activity_sums_magnitudes_over_the_neighbourhood(window, expected):
    # At the centre source 1 has the larger single coefficient (-9, compared by
    # magnitude), source 0 the larger 3x3 sum of magnitudes (9 x 3 > 9 + 8 x 1).
    band = np.zeros((2, 5, 5, 1))
    band[0] = 3.0
    band[1] = 1.0
    band[1, 2, 2] = -9.0
    fused = selection.choose_max(band, window=window, consistency_check=False)
    assert fused[2, 2, 0] == expected


def test_colour_channels_share_one_choice_per_coefficient():
    # Source 1 is stronger in channel 0 alone; source 0 has the larger channel sum.
    band = np.zeros((2, 4, 4, 3))
    band[0] = [2.0, 2.0, 2.0]
    band[1] = [5.0, 0.0, 0.0]
    fused = selection.choose_max(band, window=1, consistency_check=False)
    np.testing.assert_array_equal(fused, band[0])


def _round_trip(method, stack):
    """Decomposes a (1, H, W, C) stack and rebuilds it; returns (image, bands)."""
    size = stack.shape[1:3]
    if method == "dwt":
        wavelet = pywt.Wavelet("sym4")
        lowpass, bands = baselines._dwt_decompose(stack, wavelet=wavelet, levels=LEVELS)
        rebuilt = baselines._dwt_reconstruct(
            lowpass[0], [band[0] for band in bands], wavelet=wavelet, size=size
        )
    elif method == "lpt":
        lowpass, bands = baselines._lpt_decompose(stack, levels=LEVELS)
        rebuilt = baselines._lpt_reconstruct(lowpass[0], [band[0] for band in bands])
    else:
        transform = baselines._dtcwt_transform("near_sym_b", "qshift_b")
        lowpass, bands = baselines._dtcwt_decompose(stack, transform=transform, levels=LEVELS)
        rebuilt = baselines._dtcwt_reconstruct(
            lowpass[0], [band[0] for band in bands], transform=transform, size=size
        )
    return rebuilt, bands


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(64, 64, 1), (37, 45, 3), (50, 33, 1)])
def test_transform_round_trip_is_exact(method, shape):
    image = np.random.default_rng(7).normal(size=shape)
    rebuilt, bands = _round_trip(method, image[np.newaxis])
    np.testing.assert_allclose(rebuilt, image, rtol=0, atol=1e-10)
    bands_per_level = {"dwt": 3, "lpt": 1, "dtcwt": 6}[method]
    assert len(bands) == LEVELS * bands_per_level
    # The detail bands carry the noise's energy, and each level has its own size.
    assert all(np.abs(band).mean() > 0.01 for band in bands)
    assert len({band.shape[1] for band in bands}) == LEVELS


def test_dtcwt_transform_works_with_the_installed_numpy():
    transform = baselines._dtcwt_transform("near_sym_a", "qshift_a")
    pyramid = transform.forward(np.ones((16, 16), np.float32), nlevels=2)
    assert pyramid.highpasses[0].dtype == np.complex64
    assert pyramid.lowpass.dtype == np.float32


def test_dtcwt_pads_odd_sizes_itself_so_dtcwt_logs_no_warning(caplog):
    image = _textured((37, 45))
    with caplog.at_level("WARNING"):
        baselines.fuse_dtcwt([image, image])
    assert not caplog.records


def test_get_baseline_returns_each_function():
    assert registry.get_baseline("dwt") is baselines.fuse_dwt
    assert registry.get_baseline("lpt") is baselines.fuse_lpt
    assert registry.get_baseline("dtcwt") is baselines.fuse_dtcwt


def test_get_baseline_rejects_unknown_names_listing_the_valid_ones():
    with pytest.raises(
        ValueError,
        match=r"\['dtcwt', 'dwt', 'lpt', 'nsct', 'nsst', 'pcnn'\]. Received: name='wavelet'",
    ):
        registry.get_baseline("wavelet")


_GRAY = np.zeros((32, 32), np.float64)

_BAD_INPUTS = {
    "one image": (
        [_GRAY],
        {},
        r"at least 2 images. Received: 1 image",
    ),
    "bare array": (
        np.stack([_GRAY, _GRAY]),
        {},
        r"sequence .* Received: images of type ndarray of shape \(2, 32, 32\)",
    ),
    "different shapes": (
        [_GRAY, np.zeros((32, 40))],
        {},
        r"same shape. Received: images\[0\] of shape \(32, 32\) and "
        r"images\[1\] of shape \(32, 40\)",
    ),
    "nan": (
        [_GRAY, np.where(np.eye(32, dtype=bool), np.nan, 0.0)],
        {},
        r"finite values. Received: images\[1\] with 32 NaN or infinite",
    ),
    "inf": (
        [np.full((32, 32), np.inf), _GRAY],
        {},
        r"finite values. Received: images\[0\] with 1024 NaN or infinite",
    ),
    "four dims": (
        [np.zeros((32, 32, 3, 1))] * 2,
        {},
        r"HxW \(gray\) or HxWx3 \(colour\). Received: images\[0\] of shape \(32, 32, 3, 1\)",
    ),
    "four channels": (
        [np.zeros((32, 32, 4))] * 2,
        {},
        r"Received: images\[0\] of shape \(32, 32, 4\)",
    ),
    "one dim": (
        [np.zeros(32)] * 2,
        {},
        r"Received: images\[0\] of shape \(32,\)",
    ),
    "int32": (
        [np.zeros((32, 32), np.int32)] * 2,
        {},
        r"uint8, uint16 or float. Received: images\[0\] of dtype int32",
    ),
    "mixed dtypes": (
        [np.zeros((32, 32), np.uint8), _GRAY],
        {},
        r"same dtype. Received: images\[0\] of dtype uint8 and images\[1\] of dtype float64",
    ),
    "too small": (
        [np.zeros((4, 32))] * 2,
        {},
        r"at least 8x8 pixels. Received: images\[0\] of shape \(4, 32\)",
    ),
    "zero levels": ([_GRAY] * 2, {"levels": 0}, r"Received: levels=0"),
    "even window": ([_GRAY] * 2, {"window": 4}, r"positive odd integer. Received: window=4"),
    "float window": ([_GRAY] * 2, {"window": 3.0}, r"Received: window=3.0"),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", sorted(_BAD_INPUTS))
def test_bad_input_raises_value_error_naming_it(method, case):
    images, params, message = _BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        registry.get_baseline(method)(images, **params)


@pytest.mark.parametrize(
    "method, params, message",
    [
        ("dwt", {"wavelet": "db99x"}, r"discrete wavelet .* Received: wavelet='db99x'"),
        ("dwt", {"wavelet": "morl"}, r"Received: wavelet='morl'"),
        ("dtcwt", {"biort": "qshift_a"}, r"biort must be one of .* Received: biort='qshift_a'"),
        ("dtcwt", {"qshift": "qshift_32"}, r"qshift must be one of .* Received: qshift='qshift_32"),
    ],
)
def test_bad_method_parameters_raise_value_error(method, params, message):
    with pytest.raises(ValueError, match=message):
        registry.get_baseline(method)([_GRAY, _GRAY], **params)
