"""Metrics against a ground-truth all-in-focus image: PSNR, SSIM and the boundary-band PSNR.

The boundary band holds the pixels within ``k`` pixels (Euclidean) of a change of the true
focus label, the zone where halos appear; PSNR restricted to it tells how a method handles
focus boundaries, which whole-image PSNR dilutes.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from mfkeras.io.color import GRAY_WEIGHTS

DEFAULT_BAND = 8


def _peak(dtype) -> float:
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def _check_same(truth: np.ndarray, image: np.ndarray) -> None:
    if truth.shape != image.shape or truth.dtype != image.dtype:
        raise ValueError(
            "truth and image must have one shape and dtype. Received: "
            f"truth {truth.shape} {truth.dtype}, image {image.shape} {image.dtype}"
        )


def psnr(truth: np.ndarray, image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB over all pixels (and channels), or over ``mask``.

    The peak is the dtype's maximum (255 for uint8) or 1.0 for floats; identical images give inf.
    """
    _check_same(truth, image)
    error = (truth.astype(np.float64) - image.astype(np.float64)) ** 2
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != truth.shape[:2]:
            raise ValueError(f"mask must be {truth.shape[:2]}. Received: mask of shape {mask.shape}")
        if not mask.any():
            raise ValueError("mask selects no pixel.")
        error = error[mask]
    mse = float(error.mean())
    return math.inf if mse == 0 else 10.0 * math.log10(_peak(truth.dtype) ** 2 / mse)


def boundary_band(labels: np.ndarray, k: float = DEFAULT_BAND) -> np.ndarray:
    """Pixels whose distance to the nearest pixel of another label is at most ``k``.

    Args:
        labels: (H, W) integer map of which frame is sharp at each pixel.
        k: the band's half width in pixels.

    Returns:
        (H, W) bool band; all False when there is a single label.
    """
    labels = np.asarray(labels)
    band = np.zeros(labels.shape, bool)
    for value in np.unique(labels):
        inside = (labels == value).astype(np.uint8)
        if inside.all():
            continue
        # Distance of each pixel of this label to the nearest pixel of any other label.
        distance = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        band |= (inside > 0) & (distance <= k)
    return band


def boundary_band_psnr(truth: np.ndarray, image: np.ndarray, labels: np.ndarray, k: float = DEFAULT_BAND) -> float:
    """PSNR within ``k`` pixels of the true focus boundary (see :func:`boundary_band`)."""
    return psnr(truth, image, boundary_band(labels, k))


def ssim(truth: np.ndarray, image: np.ndarray) -> float:
    """Mean SSIM of Wang et al. (2004) on BT.601 grey: 11x11 Gaussian window, sigma 1.5."""
    _check_same(truth, image)
    peak = _peak(truth.dtype)

    def gray(x):
        x = x.astype(np.float64)
        return x @ np.asarray(GRAY_WEIGHTS, np.float64) if x.ndim == 3 else x

    x, y = gray(truth), gray(image)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2

    def mean(values):
        return cv2.GaussianBlur(values, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = mean(x), mean(y)
    vx, vy, cxy = mean(x * x) - mx * mx, mean(y * y) - my * my, mean(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim_map.mean())


def truth_scores(truth: np.ndarray, image: np.ndarray | None, labels: np.ndarray, k: float = DEFAULT_BAND) -> dict:
    """PSNR, boundary-band PSNR (``k``) and SSIM of one fused image against the truth.

    Args:
        truth: the all-in-focus image.
        image: the fused image, same shape and dtype; None when a method gave none.
        labels: (H, W) true focus labels (which frame is sharp at each pixel).
        k: half width of the boundary band, pixels.

    Returns:
        ``{"psnr", "band_psnr", "ssim"}``, NaN each when ``image`` is None.
    """
    if image is None:
        return {"psnr": math.nan, "band_psnr": math.nan, "ssim": math.nan}
    return {"psnr": psnr(truth, image), "band_psnr": boundary_band_psnr(truth, image, labels, k),
            "ssim": ssim(truth, image)}

