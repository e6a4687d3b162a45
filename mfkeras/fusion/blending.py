"""Blending sources by per-pixel weights, per colour channel."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mfkeras.fusion import row_blocks


# Pixels blended at a time: a block's float64 arrays stay in cache (see halo._BLOCK_PIXELS).
_BLEND_PIXELS = 2**17


def blend(first: np.ndarray, second: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Computes ``weights * first + (1 - weights) * second`` per channel.

    Integer images are blended on the [0, 1] scale and rounded half away from
    zero, saturating at the dtype's range (as MATLAB converts).

    Args:
        first: (H, W) or (H, W, C) image.
        second: same shape and dtype.
        weights: (H, W) float weights of ``first``.

    Returns:
        The blended image, same shape and dtype as the inputs.
    """
    return blend_stack([second, first], np.asarray(weights)[None])


def blend_stack(images: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Computes ``images[0] + sum_i weights[i - 1] * (images[i] - images[0])``.

    With weights that sum to at most one this is the weighted mean of the
    images; written relative to ``images[0]`` so equal inputs come back exactly.

    Args:
        images: N equal-shape images, (H, W) or (H, W, C).
        weights: (N - 1, H, W) weights of ``images[1:]``.

    Returns:
        The blended image, same shape and dtype as the inputs (integers are
        rounded half away from zero and saturated).
    """
    base_image = images[0]
    out = np.empty_like(base_image)

    def blend_rows(rows: slice) -> None:
        base = base_image[rows].astype(np.float64)
        mixed = base.copy()
        for image, weight in zip(images[1:], weights):
            weight = np.asarray(weight[rows], np.float64)
            if base.ndim == 3:
                weight = weight[..., None]
            mixed += weight * (image[rows].astype(np.float64) - base)
        out[rows] = round_to_dtype(mixed, base_image.dtype)

    workers = row_blocks.worker_count(base_image.shape[0] * base_image.shape[1])
    rows_per_block = max(1, _BLEND_PIXELS // max(1, base_image.shape[1]))
    row_blocks.for_each_block(blend_rows, row_blocks.split_rows(base_image.shape[0], rows_per_block, workers), workers)
    return out


def round_to_dtype(values: np.ndarray, dtype) -> np.ndarray:
    """Float values as ``dtype``: integers rounded half away from zero and saturated."""
    if np.issubdtype(dtype, np.unsignedinteger) and np.issubdtype(np.asarray(values).dtype, np.floating):
        clipped = np.clip(values, 0, np.iinfo(dtype).max)  # the same rounding, in three passes
        clipped += 0.5
        return np.floor(clipped, out=clipped).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.floor(np.abs(values) + 0.5) * np.sign(values), info.min, info.max)
    return values.astype(dtype)


def select_by_labels(labels: np.ndarray, frames) -> np.ndarray:
    """Each pixel from the frame its label names: selection by a focus map.

    Any number of frames (``np.choose`` stops at 64), without stacking them: one frame-sized
    copy, however many frames.

    Args:
        labels: (H, W) integer map, 0 to N - 1: which frame each pixel comes from.
        frames: the N frames, gray (H, W) or colour (H, W, C), one shape and dtype.

    Returns:
        The selected image, shaped and typed like the frames.
    """
    labels = np.asarray(labels)
    frames = [np.asarray(frame) for frame in frames]
    if (not frames or labels.shape != frames[0].shape[:2] or not np.issubdtype(labels.dtype, np.integer)
            or any(frame.shape != frames[0].shape or frame.dtype != frames[0].dtype for frame in frames)):
        raise ValueError(f"labels must be an integer (H, W) map like the frames, which share one shape and dtype. "
                         f"Received: labels {labels.dtype} {labels.shape}, frames "
                         f"{sorted({(str(f.dtype), f.shape) for f in frames})}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(frames)):
        raise ValueError(f"labels must lie in 0..{len(frames) - 1}. Received: {labels.min()}..{labels.max()}")
    selected = frames[0].copy()
    for number, frame in enumerate(frames[1:], start=1):
        where = labels == number
        selected[where] = frame[where]
    return selected
