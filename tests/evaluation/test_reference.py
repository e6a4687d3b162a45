"""PSNR, SSIM and the boundary-band PSNR against hand computations."""

import math

import cv2
import numpy as np
import pytest

from mfkeras.evaluation import reference


def test_boundary_band_by_hand():
    labels = np.zeros((6, 20), np.int32)
    labels[:, 10:] = 1
    band = reference.boundary_band(labels, k=2)
    # Columns 9 and 10 touch the other label (distance 1), 8 and 11 are 2 away, 7 and 12 are 3.
    assert np.array_equal(np.flatnonzero(band[0]), [8, 9, 10, 11])
    assert np.all(band == band[0])
    assert not reference.boundary_band(np.zeros((6, 20), np.int32), k=2).any()


def test_boundary_band_psnr_by_hand():
    labels = np.zeros((6, 20), np.int32)
    labels[:, 10:] = 1
    truth = np.full((6, 20), 100, np.uint8)
    image = truth.copy()
    image[:, 9] = 110  # inside the band: squared error 100 on 6 of its 24 pixels
    image[:, 0] = 200  # outside the band
    expected_band = 10 * math.log10(255**2 / (6 * 100 / 24))
    assert reference.boundary_band_psnr(truth, image, labels, k=2) == pytest.approx(expected_band)
    expected_all = 10 * math.log10(255**2 / ((6 * 100 + 6 * 100**2) / 120))
    assert reference.psnr(truth, image) == pytest.approx(expected_all)
    assert reference.psnr(truth, truth) == math.inf


def test_ssim_is_one_for_identical_images_and_falls_with_noise():
    rng = np.random.default_rng(0)
    truth = (cv2.GaussianBlur(rng.random((40, 50, 3)), (0, 0), 2.0) * 255).astype(np.uint8)
    scores = [
        reference.ssim(truth, np.clip(truth + rng.normal(0, sigma, truth.shape), 0, 255).astype(np.uint8))
        for sigma in (5, 20, 60)
    ]
    assert reference.ssim(truth, truth) == pytest.approx(1.0)
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: reference.psnr(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8)), "one shape and dtype"),
        (lambda: reference.psnr(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool)),
         "selects no pixel"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_truth_scores_are_the_three_metrics_and_nan_without_an_image():
    labels = np.zeros((16, 24), np.int32)
    labels[:, 12:] = 1
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    image = np.clip(truth.astype(int) + rng.integers(-5, 6, truth.shape), 0, 255).astype(np.uint8)
    scores = reference.truth_scores(truth, image, labels, k=3)
    assert scores == {"psnr": reference.psnr(truth, image),
                      "band_psnr": reference.boundary_band_psnr(truth, image, labels, 3),
                      "ssim": reference.ssim(truth, image)}
    assert all(math.isnan(v) for v in reference.truth_scores(truth, None, labels).values())

