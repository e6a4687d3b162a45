"""Score map -> focus map -> decision map -> consistency verification -> fused image."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import cv2
import keras
import numpy as np

from mfkeras import inference
from mfkeras.convert import ScoreNetwork, to_fully_convolutional

CONSISTENCY_MODES = ("remove_small", "largest", "none")
REFINE_MODES = ("guided", "dilate", "none")
MIN_SIDE = 16


@dataclasses.dataclass(frozen=True)
class FusionOptions:
    """Switches and parameters of the fusion steps (defaults follow the reference code).

    Attributes:
        symmetric: score with the mean of s(A, B) and 1 - s(B, A).
        dense: use the stride-1 ("a trous") score map instead of the strided one.
        consistency: ``remove_small`` (drop regions smaller than
            ``area_ratio * H * W`` in the map and its complement), ``largest``
            (keep only the largest region of each class, as the seed describes)
            or ``none``.
        area_ratio: the small-region threshold as a fraction of the image area.
        refine: ``guided`` (guided filter on the initially fused gray image),
            ``dilate`` (the seed's morphological dilation) or ``none``.
        guided_radius: guided filter radius (window side 2r + 1).
        guided_eps: guided filter regularisation.
        dilate_radius: radius of the elliptical structuring element for ``dilate``.
    """

    symmetric: bool = False
    dense: bool = False
    consistency: str = "remove_small"
    area_ratio: float = 0.01
    refine: str = "guided"
    guided_radius: int = 8
    guided_eps: float = 0.1
    dilate_radius: int = 2

    def __post_init__(self):
        if self.consistency not in CONSISTENCY_MODES:
            raise ValueError(
                f"consistency must be one of {CONSISTENCY_MODES}. Received: {self.consistency!r}"
            )
        if self.refine not in REFINE_MODES:
            raise ValueError(f"refine must be one of {REFINE_MODES}. Received: {self.refine!r}")
        if not 0.0 <= self.area_ratio < 1.0:
            raise ValueError(f"area_ratio must be in [0, 1). Received: {self.area_ratio}")
        if self.guided_radius < 1 or self.guided_eps <= 0 or self.dilate_radius < 0:
            raise ValueError(
                "guided_radius >= 1, guided_eps > 0 and dilate_radius >= 0 are required. "
                f"Received: {self.guided_radius}, {self.guided_eps}, {self.dilate_radius}"
            )


@dataclasses.dataclass
class FusionResult:
    """Everything one fusion produces.

    Attributes:
        fused: the fused image, same shape and dtype as the inputs.
        score_map: (H', W') network scores (probability that A is focused).
        focus_map: (H, W) mean score of all windows covering each pixel.
        initial_decision: (H, W) bool, ``focus_map > 0.5``.
        decision: (H, W) bool, after consistency verification.
        final_decision: (H, W) float weights of the first image after refinement.
        steps: for more than two inputs, the result of each pairwise step.
    """

    fused: np.ndarray
    score_map: np.ndarray
    focus_map: np.ndarray
    initial_decision: np.ndarray
    decision: np.ndarray
    final_decision: np.ndarray
    steps: list = dataclasses.field(default_factory=list)


def focus_map(score_map: np.ndarray, shape: tuple, stride: int, patch_size: int) -> np.ndarray:
    """Averages the scores of all windows covering each pixel.

    Score ``(j, i)`` covers rows ``stride*j .. stride*j + patch_size - 1`` and
    the matching columns; windows are cut at the image edge.

    Args:
        score_map: (h, w) scores.
        shape: (H, W) of the image.
        stride: pixels between neighbouring windows.
        patch_size: window side.

    Returns:
        (H, W) float64 focus map.
    """
    height, width = shape
    grid = np.zeros((height, width))
    ones = np.zeros((height, width))
    rows = min(score_map.shape[0], -(-height // stride))
    cols = min(score_map.shape[1], -(-width // stride))
    grid[: rows * stride : stride, : cols * stride : stride] = score_map[:rows, :cols]
    ones[: rows * stride : stride, : cols * stride : stride] = 1.0
    total = _trailing_box_sum(grid, patch_size)
    count = _trailing_box_sum(ones, patch_size)
    return total / np.maximum(count, 1.0)


def _trailing_box_sum(values: np.ndarray, size: int) -> np.ndarray:
    """Sum over the ``size`` x ``size`` block ending at each pixel (zeros outside)."""
    for axis in (0, 1):
        cumulative = np.cumsum(values, axis=axis)
        shifted = np.zeros_like(cumulative)
        if axis == 0:
            shifted[size:] = cumulative[:-size]
        else:
            shifted[:, size:] = cumulative[:, :-size]
        values = cumulative - shifted
    return values


def remove_small_regions(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Removes 8-connected regions smaller than ``min_area`` from a mask and its complement.

    Args:
        mask: (H, W) bool map.
        min_area: regions with fewer pixels are removed (ones first, then holes).

    Returns:
        The cleaned (H, W) bool map.
    """
    cleaned = _drop_small_components(mask, min_area)
    return ~_drop_small_components(~cleaned, min_area)


def _drop_small_components(mask: np.ndarray, min_area: int) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False  # label 0 is the background of the mask
    return keep[labels]


def keep_largest_regions(mask: np.ndarray) -> np.ndarray:
    """Keeps only the largest 8-connected region of ones, then of zeros.

    Args:
        mask: (H, W) bool map.

    Returns:
        The cleaned (H, W) bool map.
    """
    return ~_largest_component(~_largest_component(mask))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    if count <= 1:
        return mask.copy()
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with box means over the in-image part of each window.

    Args:
        guide: (H, W) float guide image.
        source: (H, W) float image to filter.
        radius: window radius (side 2r + 1).
        eps: regularisation.

    Returns:
        (H, W) float64 filtered image, not clipped.
    """
    guide = np.asarray(guide, np.float64)
    source = np.asarray(source, np.float64)
    size = (2 * radius + 1, 2 * radius + 1)
    counts = cv2.boxFilter(
        np.ones_like(guide), -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT
    )

    def mean(values):
        return cv2.boxFilter(values, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT) / counts

    mean_guide, mean_source = mean(guide), mean(source)
    covariance = mean(guide * source) - mean_guide * mean_source
    variance = mean(guide * guide) - mean_guide * mean_guide
    a = covariance / (variance + eps)
    b = mean_source - a * mean_guide
    return mean(a) * guide + mean(b)


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
    weights = np.asarray(weights, np.float64)
    if first.ndim == 3:
        weights = weights[..., None]
    second = second.astype(np.float64)
    # Written as second + w * (first - second) so that equal inputs come back exactly.
    mixed = second + weights * (first.astype(np.float64) - second)
    if np.issubdtype(first.dtype, np.integer):
        info = np.iinfo(first.dtype)
        rounded = np.floor(np.abs(mixed) + 0.5) * np.sign(mixed)
        return np.clip(rounded, info.min, info.max).astype(first.dtype)
    return mixed.astype(first.dtype)


def to_unit_range(image: np.ndarray) -> np.ndarray:
    """Scales an integer image to float64 [0, 1]; float images are returned as float64."""
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float64) / np.iinfo(image.dtype).max
    return image.astype(np.float64)


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


_NETWORKS = {}


def as_score_network(model, dense: bool = False) -> ScoreNetwork:
    """Returns ``model`` as a :class:`ScoreNetwork`, converting (once) a patch model.

    Args:
        model: a ScoreNetwork or a Keras patch model.
        dense: for patch models, build the stride-1 network.

    Returns:
        The score network.
    """
    if isinstance(model, ScoreNetwork):
        return model
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"model must be a keras patch model or a ScoreNetwork. Received {type(model).__name__}."
        )
    key = (id(model), dense)
    cached = _NETWORKS.get(key)
    if cached is None or cached[0] is not model:
        cached = (model, to_fully_convolutional(model, dense=dense))
        _NETWORKS[key] = cached
    return cached[1]


def fuse(images: Sequence[np.ndarray], model, options: FusionOptions = FusionOptions()) -> FusionResult:
    """Fuses two or more registered multi-focus images.

    Args:
        images: equal-size images, gray or RGB, uint8, uint16 or float in [0, 1].
        model: a Keras patch model or a :class:`ScoreNetwork`.
        options: the fusion switches.

    Returns:
        A :class:`FusionResult`; for more than two images the images are fused
        pairwise in sequence and the maps are those of the last step.
    """
    images = validate_images(images)
    network = as_score_network(model, dense=options.dense)
    result = _fuse_pair(images[0], images[1], network, options)
    steps = [result]
    for image in images[2:]:
        result = _fuse_pair(result.fused, image, network, options)
        steps.append(result)
    if len(steps) > 1:
        result = dataclasses.replace(result, steps=steps)
    return result


def _fuse_pair(first, second, network: ScoreNetwork, options: FusionOptions) -> FusionResult:
    gray_a = inference.to_gray(to_unit_range(first))
    gray_b = inference.to_gray(to_unit_range(second))
    scores = inference.score_map(network, gray_a, gray_b, symmetric=options.symmetric)
    focus = focus_map(scores, gray_a.shape, network.stride, network.patch_size)
    initial = focus > 0.5
    decision = verify_consistency(initial, options)
    final = refine_decision(decision, gray_a, gray_b, options)
    fused = blend(first, second, final)
    return FusionResult(fused, scores, focus, initial, decision, final)


def verify_consistency(initial: np.ndarray, options: FusionOptions) -> np.ndarray:
    """Applies the configured consistency verification to a binary decision map."""
    if options.consistency == "remove_small":
        min_area = math.ceil(options.area_ratio * initial.size)
        return remove_small_regions(initial, min_area)
    if options.consistency == "largest":
        return keep_largest_regions(initial)
    return initial.copy()


def refine_decision(
    decision: np.ndarray, gray_a: np.ndarray, gray_b: np.ndarray, options: FusionOptions
) -> np.ndarray:
    """Turns the binary decision map into the final blending weights of image A."""
    weights = decision.astype(np.float64)
    if options.refine == "guided":
        guide = gray_a.astype(np.float64) * weights + gray_b.astype(np.float64) * (1.0 - weights)
        return guided_filter(guide, weights, options.guided_radius, options.guided_eps)
    if options.refine == "dilate":
        side = 2 * options.dilate_radius + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        return cv2.dilate(decision.astype(np.uint8), kernel).astype(np.float64)
    return weights
