"""Checks that arrays are fusable images: the one validator of the library and its scripts."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

# The smallest side the CNN pipeline accepts: one 16x16 patch.
MIN_SIDE = 16


def validate_images(
    images: Sequence[np.ndarray],
    *,
    min_side: int = MIN_SIDE,
    unit_float: bool = True,
    single_channel: bool = True,
    names: Optional[Sequence[str]] = None,
) -> list:
    """Checks that ``images`` are two or more images of one shape and dtype.

    Args:
        images: the candidate inputs.
        min_side: the smallest height and width accepted.
        unit_float: float images must be float32 or float64 with values in [0, 1]
            (the CNN pipeline); False accepts any finite float (the baselines).
        single_channel: also accept (H, W, 1) arrays.
        names: what to call each image in messages (file paths); default ``images[i]``.

    Returns:
        The images as a list of arrays.
    """
    if isinstance(images, np.ndarray) or not isinstance(images, Sequence):
        described = type(images).__name__
        if isinstance(images, np.ndarray):
            described += f" of shape {images.shape}"
        raise ValueError(
            "images must be a sequence (e.g. a list) of 2 or more images. "
            f"Received: images of type {described}"
        )
    if len(images) < 2:
        raise ValueError(f"Fusion needs at least 2 images. Received: {len(images)} image(s)")
    arrays = [np.asarray(image) for image in images]
    names = list(names) if names is not None else [f"images[{i}]" for i in range(len(arrays))]
    for name, array in zip(names, arrays):
        _check_one(name, array, min_side, unit_float, single_channel)
    first = arrays[0]
    for name, array in zip(names[1:], arrays[1:]):
        if (array.ndim == 3 and array.shape[2] == 3) != (first.ndim == 3 and first.shape[2] == 3):
            raise ValueError(
                f"Cannot mix grayscale and colour images. Received: {names[0]} of shape "
                f"{first.shape} and {name} of shape {array.shape}"
            )
        if array.shape != first.shape:
            raise ValueError(
                f"All images must have the same shape. Received: {names[0]} of shape "
                f"{first.shape} and {name} of shape {array.shape}"
            )
        if array.dtype != first.dtype:
            raise ValueError(
                f"All images must have the same dtype. Received: {names[0]} of dtype "
                f"{first.dtype} and {name} of dtype {array.dtype}"
            )
    return arrays


def _check_one(name: str, array: np.ndarray, min_side: int, unit_float: bool, single_channel: bool):
    channels = (1, 3) if single_channel else (3,)
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in channels)):
        shapes = "HxW (gray) or HxWx3 (colour)" + (", or HxWx1" if single_channel else "")
        raise ValueError(f"Each image must be {shapes}. Received: {name} of shape {array.shape}")
    floats = (np.float32, np.float64) if unit_float else (np.floating,)
    if array.dtype not in (np.uint8, np.uint16) and not any(
        np.issubdtype(array.dtype, kind) for kind in floats
    ):
        allowed = "float32 or float64" if unit_float else "float"
        raise ValueError(
            f"Images must be uint8, uint16 or {allowed}. Received: {name} of dtype {array.dtype}"
        )
    if min(array.shape[:2]) < min_side:
        raise ValueError(
            f"Images must be at least {min_side}x{min_side} pixels. "
            f"Received: {name} of shape {array.shape}"
        )
    if array.dtype.kind == "f":
        bad = array.size - np.count_nonzero(np.isfinite(array))
        if bad:
            raise ValueError(
                f"Images must hold finite values. Received: {name} with {bad} NaN or infinite value(s)"
            )
        if unit_float:
            low, high = float(array.min()), float(array.max())
            if low < 0.0 or high > 1.0:
                raise ValueError(
                    f"Float images must have values in [0, 1]. Received: {name} with range "
                    f"[{low}, {high}]"
                )
