"""Checks that arrays are fusable images."""

from __future__ import annotations

from typing import Sequence

import numpy as np

MIN_SIDE = 16


def validate_images(images: Sequence[np.ndarray]) -> list:
    """Checks that ``images`` are two or more equal-size fusable images.

    Args:
        images: the candidate inputs.

    Returns:
        The images as a list of arrays.
    """
    if isinstance(images, np.ndarray) or len(images) < 2:
        count = 1 if isinstance(images, np.ndarray) else len(images)
        raise ValueError(f"Fusion needs a sequence of at least two images. Received {count}.")
    images = [np.asarray(image) for image in images]
    first = images[0]
    for index, image in enumerate(images):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (1, 3)):
            raise ValueError(
                f"Image {index} must be (H, W), (H, W, 1) or (H, W, 3). Received shape {image.shape}."
            )
        if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
            raise ValueError(
                f"Image {index} must be uint8, uint16, float32 or float64. Received dtype {image.dtype}."
            )
        if image.shape != first.shape or image.dtype != first.dtype:
            raise ValueError(
                f"All images must have the same shape and dtype. Image 0 is {first.shape} "
                f"{first.dtype}, image {index} is {image.shape} {image.dtype}."
            )
        if min(image.shape[:2]) < MIN_SIDE:
            raise ValueError(
                f"Images must be at least {MIN_SIDE} pixels on each side. Received shape {image.shape}."
            )
        if image.dtype.kind == "f":
            if not np.all(np.isfinite(image)):
                raise ValueError(f"Image {index} contains NaN or infinite values.")
            low, high = float(image.min()), float(image.max())
            if low < 0.0 or high > 1.0:
                raise ValueError(
                    f"Float images must have values in [0, 1]. Image {index} has range [{low}, {high}]."
                )
    return images

