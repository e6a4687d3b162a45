"""Tests for the nonsubsampled contourlet transform and NSCT-domain fusion."""

import functools

import numpy as np
import pytest

from mfkeras.baselines import nsct
from mfkeras.baselines import nsst
from test_baselines import _BAD_INPUTS, _blur, _convert, _focus_pair, _mean_abs_error, _textured

SEAM_BAND = 16


def wedge_centre_angle(index, count, centred):
    """Direction, in degrees, of the centre of wedge ``index`` of ``count``, by hand.

    Wedges are equal steps of slope along the directions [-45, 135) degrees (mod 180):
    slope tan(angle) from -1 to 1 in the horizontal cone, then cot(angle) from 1 down to
    -1 in the vertical one. Contourlet wedges start at -45 degrees; shearlet wedges are
    shifted so that one is centred on the horizontal axis.
    """
    offset = (count / 4 - 0.5) % 1 if centred else 0.0
    # Position in [0, 4): slope + 1 in the horizontal cone, 3 - cot in the vertical one.
    coordinate = (index + 0.5 + offset) * 4 / count
    if coordinate <= 2:
        return np.rad2deg(np.arctan(coordinate - 1))
    return np.rad2deg(np.arctan2(1, 3 - coordinate))


def grating(shape, angle_degrees, frequency=0.6 * np.pi):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    angle = np.deg2rad(angle_degrees)
    return np.cos(frequency * (np.cos(angle) * cols + np.sin(angle) * rows))


def focus_pair_error(fuse, shape):
    """Errors of the fused pair, of its sources and of the blur away from the seam."""
    sharp = _textured(shape)
    a, b = _focus_pair(sharp)
    fused = fuse([a, b])
    away = np.ones(shape[:2], bool)
    half = shape[1] // 2
    away[:, half - SEAM_BAND : half + SEAM_BAND] = False
    return {
        "fused": _mean_abs_error(fused, sharp),
        "sources": min(_mean_abs_error(a, sharp), _mean_abs_error(b, sharp)),
        "fused_away": _mean_abs_error(fused[away], sharp[away]),
        "blur_away": _mean_abs_error(_blur(sharp)[away], sharp[away]),
    }


# Contract of every fuse_* function, shared with test_nsst.py and test_pcnn.py.
SELF_FUSION_SHAPES = [(48, 64), (37, 45, 3)]
OUTPUT_SHAPES = [(37, 45), (40, 32, 3)]
DTYPES = [np.uint8, np.uint16, np.float32, np.float64]
FOCUS_PAIR_SHAPES = [(96, 128), (96, 128, 3)]


def check_fuses_an_image_with_itself(fuse, shape, dtype):
    image = _convert(_textured(shape), dtype)
    fused = fuse([image, image])
    if np.issubdtype(dtype, np.integer):
        assert np.abs(fused.astype(np.int64) - image.astype(np.int64)).max() <= 1
    else:
        np.testing.assert_allclose(fused, image, rtol=0, atol=1e-5)


def check_output_shape_and_dtype(fuse, shape, dtype):
    a, b = (_convert(image, dtype) for image in _focus_pair(_textured(shape)))
    fused = fuse([a, b])
    assert fused.shape == shape
    assert fused.dtype == dtype


def check_focus_pair(fuse, shape):
    errors = focus_pair_error(fuse, shape)
    assert errors["fused"] < 0.5 * errors["sources"]
    # Averaging the sources would leave half the blur error away from the seam.
    assert errors["fused_away"] < 0.1 * errors["blur_away"]


def check_three_sources_each_sharp_in_one_third(fuse):
    sharp = _textured((72, 120), seed=3)
    blurred = _blur(sharp)
    sources = []
    for third in range(3):
        source = blurred.copy()
        source[:, 40 * third : 40 * (third + 1)] = sharp[:, 40 * third : 40 * (third + 1)]
        sources.append(source)
    fused = fuse(sources)
    assert _mean_abs_error(fused, sharp) < 0.5 * min(_mean_abs_error(s, sharp) for s in sources)
    # The rule does not depend on the order of the sources.
    np.testing.assert_allclose(fused, fuse(sources[1:] + sources[:1]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(64, 80), (37, 45), (16, 16)])
@pytest.mark.parametrize("levels, directions", [(4, None), (2, (0, 5)), (5, (1, 1, 2, 3, 3))])
def test_reconstruction_is_exact(shape, levels, directions):
    image = np.random.default_rng(0).random(shape)
    coeffs = nsct.nsct_decompose(image, levels=levels, directions=directions)
    reconstructed = nsct.nsct_reconstruct(coeffs)
    assert reconstructed.shape == shape
    assert np.abs(reconstructed - image).max() <= 1e-6


def test_subbands_are_undecimated_with_two_to_the_k_directions_per_level():
    coeffs = nsct.nsct_decompose(np.zeros((37, 45)), levels=4, directions=(2, 3, 3, 4))
    grid = coeffs.lowpass.shape
    assert grid[0] >= 37 and grid[1] >= 45
    assert [band.shape for band in coeffs.bands] == [(n, *grid) for n in (4, 8, 8, 16)]
    (top, bottom), (left, right) = coeffs.padding
    assert (top + 37 + bottom, left + 45 + right) == grid


def test_modified_subbands_change_the_reconstruction_linearly():
    image = _textured((40, 48))
    coeffs = nsct.nsct_decompose(image, levels=3)
    doubled = nsct.Coefficients(
        2 * coeffs.lowpass,
        tuple(2 * band for band in coeffs.bands),
        coeffs.directions,
        coeffs.image_shape,
        coeffs.padding,
        "nsct",
    )
    np.testing.assert_allclose(nsct.nsct_reconstruct(doubled), 2 * image, atol=1e-12)


@pytest.mark.parametrize("grid", [(64, 80), (45, 37), (50, 51)])
def test_filter_responses_square_sum_to_one(grid):
    bank = nsct.dfb_filter_bank(grid, 4, (2, 3, 3, 4))
    total = bank.lowpass**2 + sum(np.sum(level**2, axis=0) for level in bank.bands)
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("count", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("centred", [False, True])
def test_directional_windows_are_a_partition_of_unity(count, centred):
    windows = nsct.direction_windows((48, 50), count, centred)
    assert windows.shape == (count, 48, 50)
    assert windows.min() >= 0
    np.testing.assert_allclose(windows.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    # Point symmetry (w and -w alike) is what keeps every subband real.
    mirrored = np.roll(windows[:, ::-1, ::-1], 1, axis=(1, 2))
    np.testing.assert_allclose(windows, mirrored, atol=1e-15)


def test_pyramid_is_lowpass_and_bandpass_with_shrinking_support():
    lowpass, bandpasses = nsct.pyramid_windows((96, 96), 3)
    radius = np.hypot(*nsct.frequency_grid((96, 96)))
    assert lowpass[0, 0] == 1 and np.all(lowpass[radius >= np.pi / 6] == 0)
    # Coarsest first: each bandpass vanishes at DC and lives at higher frequencies than
    # the previous one.
    centres = [np.sum(radius * band**2) / np.sum(band**2) for band in bandpasses]
    assert all(band[0, 0] == 0 for band in bandpasses)
    assert centres == sorted(centres)
    assert np.all(bandpasses[-1][radius >= 2 * np.pi / 3] == 1)


def test_coefficient_energy_equals_energy_of_the_padded_image():
    image = np.random.default_rng(1).normal(size=(37, 45))
    coeffs = nsct.nsct_decompose(image)
    energy = np.sum(coeffs.lowpass**2) + sum(np.sum(band**2) for band in coeffs.bands)
    padded = np.pad(image, coeffs.padding, mode="symmetric")
    np.testing.assert_allclose(energy, np.sum(padded**2), rtol=1e-10)


@pytest.mark.parametrize("wedge", [0, 3, 6, 8, 11, 15])
def test_a_grating_lands_in_the_wedge_of_its_direction(wedge):
    image = grating((96, 96), wedge_centre_angle(wedge, 16, centred=False))
    coeffs = nsct.nsct_decompose(image, levels=3, directions=(2, 3, 4))
    (top, _), (left, _) = coeffs.padding
    # Centre crop: the symmetric padding mirrors the grating near the borders.
    finest = coeffs.bands[-1][:, top + 24 : top + 72, left + 24 : left + 72]
    energy = np.sum(finest**2, axis=(1, 2))
    assert np.argmax(energy) == wedge
    assert energy.max() > 0.8 * energy.sum()


@pytest.mark.parametrize("shape", SELF_FUSION_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fusing_an_image_with_itself_returns_it(shape, dtype):
    check_fuses_an_image_with_itself(nsct.fuse_nsct, shape, dtype)


@pytest.mark.parametrize("shape", OUTPUT_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_output_shape_and_dtype_match_inputs(shape, dtype):
    check_output_shape_and_dtype(functools.partial(nsct.fuse_nsct, levels=3), shape, dtype)


@pytest.mark.parametrize("shape", FOCUS_PAIR_SHAPES)
def test_fused_focus_pair_is_closer_to_the_sharp_image_than_either_source(shape):
    check_focus_pair(nsct.fuse_nsct, shape)


def test_three_sources_each_sharp_in_one_third():
    check_three_sources_each_sharp_in_one_third(functools.partial(nsct.fuse_nsct, levels=3))


def test_integer_output_is_rounded_and_clipped():
    edge = np.zeros((32, 32))
    edge[:, 16:] = 255.0
    sources = [edge, np.roll(edge, 8, axis=1)]
    exact = nsct.fuse_nsct(sources)
    # Choose-max overshoots next to the edges: the uint8 result must clip, not wrap.
    assert exact.min() < -0.5 and exact.max() > 255.5
    fused = nsct.fuse_nsct([source.astype(np.uint8) for source in sources])
    np.testing.assert_array_equal(fused, np.clip(np.rint(exact), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("case", sorted(_BAD_INPUTS))
def test_bad_images_raise_value_error_naming_them(case):
    images, params, message = _BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        nsct.fuse_nsct(images, **params)


_GRAY = np.zeros((32, 32))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"levels": 7}, r"from 1 to 6. Received: levels=7"),
        ({"levels": 2.0}, r"Received: levels=2.0"),
        ({"levels": 2, "directions": (2, 3, 3)}, r"\(2 levels\). Received: directions=\(2, 3, 3\)"),
        ({"directions": (2, 3, 3, 7)}, r"from 0 to 6 .* Received: directions=\(2, 3, 3, 7\)"),
        ({"directions": 3}, r"Received: directions=3"),
    ],
)
def test_bad_transform_parameters_raise_value_error(params, message):
    with pytest.raises(ValueError, match=message):
        nsct.fuse_nsct([_GRAY, _GRAY], **params)
    with pytest.raises(ValueError, match=message):
        nsct.nsct_decompose(_GRAY, **params)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((16, 16, 3)), r"2-D \(H, W\) image.* Received: image of shape \(16, 16, 3\)"),
        (np.zeros((0, 16)), r"Received: image of shape \(0, 16\)"),
        (np.full((16, 16), np.nan), r"finite values"),
        (np.zeros((16, 16), complex), r"real numeric image. Received: dtype complex128"),
    ],
)
def test_decompose_rejects_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        nsct.nsct_decompose(image)


def test_reconstruct_rejects_coefficients_of_another_transform():
    coeffs = nsst.nsst_decompose(np.zeros((16, 16)))
    with pytest.raises(ValueError, match=r"nsct_decompose. Received: coefficients of 'nsst'"):
        nsct.nsct_reconstruct(coeffs)
    with pytest.raises(ValueError, match=r"Received: coefficients of 'ndarray'"):
        nsct.nsct_reconstruct(np.zeros((16, 16)))
