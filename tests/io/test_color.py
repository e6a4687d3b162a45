"""Pixel conversions: unit range and BT.601 grey."""

import numpy as np
import pytest

from mfkeras.io.color import GRAY_WEIGHTS, to_gray, to_unit_gray, to_unit_range


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_unit_gray_equals_the_float64_route(dtype):
    rng = np.random.default_rng(0)
    image = rng.integers(0, np.iinfo(dtype).max + 1, (37, 29, 3)).astype(dtype)
    expected = (image.astype(np.float64) / np.iinfo(dtype).max) @ GRAY_WEIGHTS
    got = to_unit_gray(image)
    assert got.dtype == np.float32 and got.shape == (37, 29)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-7)  # two float32 roundings
    np.testing.assert_allclose(got, to_gray(to_unit_range(image)), rtol=0, atol=2e-7)  # two float32 roundings


def test_unit_gray_of_gray_and_float_images():
    gray = np.array([[0, 255], [128, 51]], np.uint8)
    np.testing.assert_allclose(to_unit_gray(gray), gray / 255.0, atol=1e-7)
    floats = np.random.default_rng(1).random((4, 5, 3))
    np.testing.assert_array_equal(to_unit_gray(floats), to_gray(floats))


def test_gray_in_row_blocks_equals_one_product(monkeypatch):
    from mfkeras.io import color

    image = np.random.default_rng(2).integers(0, 256, (53, 17, 3)).astype(np.uint8)
    whole = (image.astype(np.float64) @ GRAY_WEIGHTS).astype(np.float32)
    for pixels in (1, 17 * 5, 10**6):  # one row, 5-row blocks (the last shorter), one block
        monkeypatch.setattr(color, "_GRAY_BLOCK_PIXELS", pixels)
        np.testing.assert_array_equal(to_gray(image), whole)
