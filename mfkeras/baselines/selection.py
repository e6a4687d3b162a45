"""The fusion rule and input checks shared by the transform-domain baselines.

Used by ``mfkeras.baselines.wavelets``, ``nsct``, ``nsst`` and ``pcnn``: the lowpass band is
the mean of the sources; each detail coefficient comes from the source with the highest
windowed activity (choose-max), optionally followed by a 3x3 majority filter (consistency
check). See ``mfkeras.baselines.wavelets`` for the full description.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from mfkeras.io.validate import validate_images

# Shortest image side accepted: one decomposition level of every method still fits.
MIN_SIDE = 8
# The coarsest pyramid / DT-CWT band keeps at least this many pixels on its short side.
MIN_TOP_SIDE = 4


# --- Validation and conversion ------------------------------------------------------------


def validate_sources(images) -> tuple[np.ndarray, np.dtype, tuple]:
    """Checks the sources; returns them as float64 (N, H, W, C), their dtype and shape."""
    arrays = validate_images(images, min_side=MIN_SIDE, unit_float=False, single_channel=False)
    first = arrays[0]
    stack = np.stack(arrays).astype(np.float64)
    if first.ndim == 2:
        stack = stack[..., np.newaxis]
    return stack, first.dtype, first.shape


def validate_rule(levels, window) -> None:
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"levels must be a positive integer. Received: levels={levels!r}")
    if (
        isinstance(window, bool)
        or not isinstance(window, (int, np.integer))
        or window < 1
        or window % 2 == 0
    ):
        raise ValueError(f"window must be a positive odd integer. Received: window={window!r}")


def cap_levels(levels: int, shape: tuple) -> int:
    """Caps pyramid levels so that the coarsest band keeps its short side >= 4 pixels."""
    return max(1, min(levels, int(math.log2(min(shape[:2]) / MIN_TOP_SIDE))))


def to_dtype(fused: np.ndarray, dtype: np.dtype, shape: tuple) -> np.ndarray:
    fused = fused.reshape(shape)
    if np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        return np.clip(np.rint(fused), limits.min, limits.max).astype(dtype)
    return fused.astype(dtype)


# --- The fusion rule ----------------------------------------------------------------------


def fuse_in_transform_domain(images, levels, window, consistency_check, make_transform):
    """Checks the sources and the rule, fuses them with :func:`fuse_bands`, restores the dtype.

    ``make_transform(shape)`` receives the sources' shape and returns the
    ``(decompose, reconstruct)`` pair of one transform (it may raise ValueError for
    its own parameters).
    """
    stack, dtype, shape = validate_sources(images)
    validate_rule(levels, window)
    decompose, reconstruct = make_transform(shape)
    fused = fuse_bands(stack, decompose, reconstruct, window, consistency_check)
    return to_dtype(fused, dtype, shape)


def fuse_bands(stack, decompose, reconstruct, window, consistency_check) -> np.ndarray:
    """Fuses a (N, H, W, C) stack: mean of lowpass bands, choose-max on detail bands.

    ``decompose`` maps the stack to ``(lowpass, bands)``, arrays with a leading source axis
    and channels last; ``reconstruct`` maps one image's ``(lowpass, bands)`` back to
    (H, W, C).
    """
    lowpass, bands = decompose(stack)
    fused_bands = [choose_max(band, window, consistency_check) for band in bands]
    return reconstruct(lowpass.mean(axis=0), fused_bands)


def choose_max(band: np.ndarray, window: int, consistency_check: bool) -> np.ndarray:
    """Fuses one detail band (N, h, w, C), real or complex, into (h, w, C)."""
    activity = np.abs(band).sum(axis=-1)
    if window > 1:
        activity = ndimage.uniform_filter(activity, size=(1, window, window), mode="reflect")
    weights = winner_weights(activity, tolerance=0.0)
    if consistency_check:
        # Majority filter: each source's share of the 3x3 neighbourhood's votes. Votes of
        # tied sources are fractional, so tolerate rounding when comparing the shares.
        votes = ndimage.uniform_filter(weights, size=(1, 3, 3), mode="reflect")
        weights = winner_weights(votes, tolerance=1e-9)
    return (weights[..., np.newaxis] * band).sum(axis=0)


def winner_weights(scores: np.ndarray, tolerance: float) -> np.ndarray:
    """Weights (N, h, w): 1/k for the k sources tied for the highest score, else 0."""
    is_best = scores >= scores.max(axis=0) - tolerance
    return is_best / is_best.sum(axis=0)
