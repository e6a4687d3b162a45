"""Tests for the nonsubsampled shearlet transform and NSST-domain fusion."""

import functools

import numpy as np
import pytest

from mfkeras.baselines import nsct
from mfkeras.baselines import nsst
from test_baselines import _BAD_INPUTS
from test_nsct import (
    DTYPES,
    FOCUS_PAIR_SHAPES,
    OUTPUT_SHAPES,
    SELF_FUSION_SHAPES,
    check_focus_pair,
    check_fuses_an_image_with_itself,
    check_output_shape_and_dtype,
    check_three_sources_each_sharp_in_one_third,
    grating,
    wedge_centre_angle,
)


@pytest.mark.parametrize("shape", [(64, 80), (37, 45), (16, 17)])
@pytest.mark.parametrize("levels, directions", [(4, None), (3, (1, 2, 5))])
def test_reconstruction_is_exact(shape, levels, directions):
    image = np.random.default_rng(0).random(shape)
    coeffs = nsst.nsst_decompose(image, levels=levels, directions=directions)
    reconstructed = nsst.nsst_reconstruct(coeffs)
    assert reconstructed.shape == shape
    assert np.abs(reconstructed - image).max() <= 1e-6


def test_default_is_8_8_16_16_shearlet_subbands():
    coeffs = nsst.nsst_decompose(np.zeros((37, 45)))
    assert coeffs.transform == "nsst"
    assert [band.shape[0] for band in coeffs.bands] == [8, 8, 16, 16]
    assert all(band.shape[1:] == coeffs.lowpass.shape for band in coeffs.bands)


@pytest.mark.parametrize("grid", [(64, 80), (45, 37)])
def test_filter_responses_square_sum_to_one(grid):
    bank = nsst.shear_filter_bank(grid, 4, (3, 3, 4, 4))
    total = bank.lowpass**2 + sum(np.sum(level**2, axis=0) for level in bank.bands)
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)


def test_shares_the_pyramid_of_the_nsct():
    nsct_bank = nsct.dfb_filter_bank((48, 64), 3, (2, 3, 3))
    nsst_bank = nsst.shear_filter_bank((48, 64), 3, (2, 3, 3))
    np.testing.assert_array_equal(nsst_bank.lowpass, nsct_bank.lowpass)
    for nsct_level, nsst_level in zip(nsct_bank.bands, nsst_bank.bands):
        np.testing.assert_allclose(
            np.sum(nsst_level**2, axis=0), np.sum(nsct_level**2, axis=0), atol=1e-12
        )


def test_coefficient_energy_equals_energy_of_the_padded_image():
    image = np.random.default_rng(1).normal(size=(40, 33))
    coeffs = nsst.nsst_decompose(image)
    energy = np.sum(coeffs.lowpass**2) + sum(np.sum(band**2) for band in coeffs.bands)
    padded = np.pad(image, coeffs.padding, mode="symmetric")
    np.testing.assert_allclose(energy, np.sum(padded**2), rtol=1e-10)


def _finest_energy(decompose, angle):
    coeffs = decompose(grating((96, 96), angle), levels=3, directions=(2, 3, 4))
    (top, _), (left, _) = coeffs.padding
    # Centre crop: the symmetric padding mirrors the grating near the borders.
    finest = coeffs.bands[-1][:, top + 24 : top + 72, left + 24 : left + 72]
    return np.sum(finest**2, axis=(1, 2))


@pytest.mark.parametrize("wedge", [0, 2, 5, 8, 10, 14])
def test_a_grating_lands_in_the_shear_of_its_direction(wedge):
    energy = _finest_energy(nsst.nsst_decompose, wedge_centre_angle(wedge, 16, centred=True))
    assert np.argmax(energy) == wedge
    assert energy.max() > 0.8 * energy.sum()


@pytest.mark.parametrize("angle", [0.0, 90.0])
def test_shearlets_are_centred_on_the_axes_where_contourlet_wedges_meet(angle):
    shear = _finest_energy(nsst.nsst_decompose, angle)
    contour = _finest_energy(nsct.nsct_decompose, angle)
    assert shear.max() > 0.95 * shear.sum()
    top_two = np.sort(contour)[-2:]
    assert top_two.sum() > 0.95 * contour.sum() and top_two[0] > 0.3 * contour.sum()


@pytest.mark.parametrize("shape", SELF_FUSION_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fusing_an_image_with_itself_returns_it(shape, dtype):
    check_fuses_an_image_with_itself(nsst.fuse_nsst, shape, dtype)


@pytest.mark.parametrize("shape", OUTPUT_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_output_shape_and_dtype_match_inputs(shape, dtype):
    check_output_shape_and_dtype(functools.partial(nsst.fuse_nsst, levels=2), shape, dtype)


@pytest.mark.parametrize("shape", FOCUS_PAIR_SHAPES)
def test_fused_focus_pair_is_closer_to_the_sharp_image_than_either_source(shape):
    check_focus_pair(nsst.fuse_nsst, shape)


def test_three_sources_each_sharp_in_one_third():
    check_three_sources_each_sharp_in_one_third(functools.partial(nsst.fuse_nsst, levels=3))


@pytest.mark.parametrize("case", ["one image", "different shapes", "nan", "four dims"])
def test_bad_images_raise_value_error_naming_them(case):
    images, params, message = _BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        nsst.fuse_nsst(images, **params)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"levels": 0}, r"from 1 to 6. Received: levels=0"),
        ({"directions": (3, 3, 4)}, r"\(4 levels\). Received: directions=\(3, 3, 4\)"),
        ({"directions": (3, 3, 4, -1)}, r"Received: directions=\(3, 3, 4, -1\)"),
        ({"window": 2}, r"positive odd integer. Received: window=2"),
    ],
)
def test_bad_parameters_raise_value_error(params, message):
    gray = np.zeros((32, 32))
    with pytest.raises(ValueError, match=message):
        nsst.fuse_nsst([gray, gray], **params)


def test_reconstruct_rejects_nsct_coefficients():
    coeffs = nsct.nsct_decompose(np.zeros((16, 16)))
    with pytest.raises(ValueError, match=r"nsst_decompose. Received: coefficients of 'nsct'"):
        nsst.nsst_reconstruct(coeffs)
