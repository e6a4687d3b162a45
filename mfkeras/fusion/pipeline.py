"""Score map -> focus map -> decision map -> consistency verification -> fused image."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import cv2
import keras
import numpy as np

from mfkeras.fusion import inference
from mfkeras.network import precision
from mfkeras.network.convert import ScoreNetwork, to_fully_convolutional

CONSISTENCY_MODES = ("remove_small", "largest", "none")
REFINE_MODES = ("guided", "dilate", "none")
STACK_METHODS = ("joint", "sequential")
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
        clip_weights: clip the refined weights to [0, 1] so every fused pixel
            lies between the sources (the reference code does not clip).
        stack_method: for three or more images, ``joint`` (every image scored
            against every other in O(N) network work, one label map) or
            ``sequential`` (pairwise fusion in sequence, the seed's extension).
        max_tile_side: score in tiles of at most this many pixels a side.
        memory_budget_mb: choose the tile side so the network's activations fit
            this budget (ignored when ``max_tile_side`` is set; None never tiles).
            Tiling never changes the result.
        inference_dtype: network precision, one of ``precision.INFERENCE_DTYPES``:
            ``float16`` / ``bfloat16`` are Keras mixed precision (fast on GPUs,
            and bfloat16 on CPUs with AMX), ``float64`` a slow reference.
        jit_compile: XLA-compile the network (one compilation per image size).
    """

    symmetric: bool = False
    dense: bool = False
    consistency: str = "remove_small"
    area_ratio: float = 0.01
    refine: str = "guided"
    guided_radius: int = 8
    guided_eps: float = 0.1
    dilate_radius: int = 2
    clip_weights: bool = True
    stack_method: str = "joint"
    max_tile_side: int | None = None
    memory_budget_mb: float | None = 2048.0
    inference_dtype: str = "float32"
    jit_compile: bool = False

    def __post_init__(self):
        if self.inference_dtype not in precision.INFERENCE_DTYPES:
            raise ValueError(
                f"inference_dtype must be one of {precision.INFERENCE_DTYPES}. Received: {self.inference_dtype!r}"
            )
        if self.consistency not in CONSISTENCY_MODES:
            raise ValueError(
                f"consistency must be one of {CONSISTENCY_MODES}. Received: {self.consistency!r}"
            )
        if self.refine not in REFINE_MODES:
            raise ValueError(f"refine must be one of {REFINE_MODES}. Received: {self.refine!r}")
        if not 0.0 <= self.area_ratio < 1.0:
            raise ValueError(f"area_ratio must be in [0, 1). Received: {self.area_ratio}")
        if self.stack_method not in STACK_METHODS:
            raise ValueError(
                f"stack_method must be one of {STACK_METHODS}. Received: {self.stack_method!r}"
            )
        if self.memory_budget_mb is not None and self.memory_budget_mb <= 0:
            raise ValueError(f"memory_budget_mb must be positive. Received: {self.memory_budget_mb}")
        if self.guided_radius < 1 or self.guided_eps <= 0 or self.dilate_radius < 0:
            raise ValueError(
                "guided_radius >= 1, guided_eps > 0 and dilate_radius >= 0 are required. "
                f"Received: {self.guided_radius}, {self.guided_eps}, {self.dilate_radius}"
            )


@dataclasses.dataclass
class FusionResult:
    """Everything one fusion produces.

    For two images (and sequential stacks, whose maps are the last step's):

    Attributes:
        fused: the fused image, same shape and dtype as the inputs.
        score_map: (H', W') network scores (probability that A is focused).
        focus_map: (H, W) mean score of all windows covering each pixel.
        initial_decision: (H, W) bool, ``focus_map > 0.5``.
        decision: (H, W) bool, after consistency verification.
        final_decision: (H, W) float weights of the first image after refinement.
        source_index: (H, W) int, which input each pixel mostly comes from.
        steps: for sequential stacks, the result of each pairwise step.

    For a joint stack of N images, ``score_map`` is (N, H', W'), ``focus_map``
    (N, H, W), ``initial_decision`` and ``decision`` are (H, W) label maps
    before and after consistency verification, and ``final_decision`` holds the
    (N, H, W) blending weights.
    """

    fused: np.ndarray
    score_map: np.ndarray
    focus_map: np.ndarray
    initial_decision: np.ndarray
    decision: np.ndarray
    final_decision: np.ndarray
    source_index: np.ndarray
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
    if patch_size % stride == 0:
        # A pixel's windows depend only on its stride cell: average at score resolution.
        cells = patch_size // stride
        rows, cols = -(-height // stride), -(-width // stride)
        grid = np.zeros((rows, cols))
        ones = np.zeros((rows, cols))
        used = score_map[:rows, :cols]
        grid[: used.shape[0], : used.shape[1]] = used
        ones[: used.shape[0], : used.shape[1]] = 1.0
        cell_mean = _trailing_box_sum(grid, cells) / np.maximum(_trailing_box_sum(ones, cells), 1.0)
        return np.repeat(np.repeat(cell_mean, stride, axis=0)[:height], stride, axis=1)[:, :width]
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

    Computed in float32 (the box sums are exact to ~1e-7 relative, far below eps),
    which halves the memory of full-resolution photographs.

    Args:
        guide: (H, W) float guide image.
        source: (H, W) float image to filter.
        radius: window radius (side 2r + 1).
        eps: regularisation.

    Returns:
        (H, W) float32 filtered image, not clipped.
    """
    guide = np.asarray(guide, np.float32)
    source = np.asarray(source, np.float32)
    size = (2 * radius + 1, 2 * radius + 1)
    counts = cv2.boxFilter(
        np.ones_like(guide), -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT
    )

    def mean(values):
        return cv2.boxFilter(values, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT) / counts

    mean_guide, mean_source = mean(guide), mean(source)
    a = mean(guide * source)
    a -= mean_guide * mean_source
    variance = mean(guide * guide)
    variance -= mean_guide * mean_guide
    variance += eps
    a /= variance
    del variance
    b = mean_source - a * mean_guide
    del mean_guide, mean_source
    out = mean(a)
    out *= guide
    out += mean(b)
    return out


_BLEND_ROWS = 512


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
    for start in range(0, base_image.shape[0], _BLEND_ROWS):
        rows = slice(start, start + _BLEND_ROWS)
        base = base_image[rows].astype(np.float64)
        mixed = base.copy()
        for image, weight in zip(images[1:], weights):
            weight = np.asarray(weight[rows], np.float64)
            if base.ndim == 3:
                weight = weight[..., None]
            mixed += weight * (image[rows].astype(np.float64) - base)
        if np.issubdtype(base_image.dtype, np.integer):
            info = np.iinfo(base_image.dtype)
            mixed = np.floor(np.abs(mixed) + 0.5) * np.sign(mixed)
            mixed = np.clip(mixed, info.min, info.max)
        out[rows] = mixed
    return out


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
        A :class:`FusionResult` (see there for the map shapes of stacks).
    """
    images = validate_images(images)
    network = precision.compute_network(as_score_network(model, dense=options.dense), options.inference_dtype)
    tile_side = _tile_side(network, options)
    if len(images) > 2 and options.stack_method == "joint":
        return _fuse_stack(images, network, options, tile_side)
    result = _fuse_pair(images[0], images[1], network, options, tile_side)
    if len(images) == 2:
        return result
    steps, source_index = [result], result.source_index
    for number, image in enumerate(images[2:], start=2):
        result = _fuse_pair(result.fused, image, network, options, tile_side)
        source_index = np.where(result.decision, source_index, number)
        steps.append(result)
    return dataclasses.replace(result, source_index=source_index, steps=steps)


def _tile_side(network: ScoreNetwork, options: FusionOptions):
    if options.max_tile_side is not None:
        return options.max_tile_side
    if options.memory_budget_mb is not None:
        # Pairs, sequential steps and joint stacks alike run the network on two images at a time.
        return inference.tile_side_for_budget(network, options.memory_budget_mb * 2**20, images=2)
    return None


def _fuse_pair(first, second, network, options: FusionOptions, tile_side) -> FusionResult:
    gray_a = inference.to_gray(to_unit_range(first))
    gray_b = inference.to_gray(to_unit_range(second))
    scores = inference.score_map(
        network,
        gray_a,
        gray_b,
        symmetric=options.symmetric,
        max_tile_side=tile_side,
        jit_compile=options.jit_compile,
    )
    focus = focus_map(scores, gray_a.shape, network.stride, network.patch_size)
    initial = focus > 0.5
    decision = verify_consistency(initial, options)
    final = refine_decision(decision, gray_a, gray_b, options)
    if options.clip_weights:
        np.clip(final, 0.0, 1.0, out=final)
    fused = blend(first, second, final)
    source_index = np.where(decision, 0, 1).astype(np.int32)
    return FusionResult(fused, scores, focus, initial, decision, final, source_index)


def _fuse_stack(images, network, options: FusionOptions, tile_side) -> FusionResult:
    grays = [inference.to_gray(to_unit_range(image)) for image in images]
    scores = inference.stack_scores(network, grays, max_tile_side=tile_side, jit_compile=options.jit_compile)
    shape = grays[0].shape
    focus = np.stack([focus_map(s, shape, network.stride, network.patch_size) for s in scores])
    initial = _first_argmax(focus)
    labels = verify_label_consistency(initial, len(images), options)
    guide = np.choose(labels, grays)
    weights = np.empty((len(images), *shape), np.float32)
    for label in range(len(images)):
        one_hot = (labels == label).astype(np.float32)
        weights[label] = _refine_weights(one_hot, guide, options)
    if options.clip_weights or options.refine != "none":
        np.clip(weights, 0.0, None, out=weights)
    total = weights.sum(axis=0)
    empty = total <= 1e-6
    weights /= np.where(empty, 1.0, total)
    for label in range(len(images)):
        weights[label][empty] = labels[empty] == label
    fused = blend_stack(images, weights[1:])
    return FusionResult(fused, scores, focus, initial, labels, weights, labels)


def _first_argmax(maps: np.ndarray) -> np.ndarray:
    """``np.argmax(maps, axis=0)`` as int32, one vectorised pass per map (axis-0 argmax is slow)."""
    best = maps[0].copy()
    index = np.zeros(best.shape, np.int32)
    for number in range(1, len(maps)):
        larger = maps[number] > best
        index[larger] = number
        np.maximum(best, maps[number], out=best)
    return index


def verify_label_consistency(labels: np.ndarray, count: int, options: FusionOptions) -> np.ndarray:
    """Consistency verification of a source-index map.

    Regions (8-connected) smaller than ``area_ratio * H * W`` take the label of
    the nearest pixel of a large region; ``largest`` keeps only the largest
    region of each label.

    Args:
        labels: (H, W) int map of source indices.
        count: number of sources.
        options: the fusion options.

    Returns:
        The cleaned (H, W) int32 label map.
    """
    import scipy.ndimage

    if options.consistency == "none":
        return labels.astype(np.int32)
    small = np.zeros(labels.shape, bool)
    for label in range(count):
        mask = labels == label
        if options.consistency == "largest":
            small |= mask & ~_largest_component(mask)
        else:
            small |= mask & ~_drop_small_components(mask, math.ceil(options.area_ratio * labels.size))
    if small.all() or not small.any():
        return labels.astype(np.int32)
    _, (rows, cols) = scipy.ndimage.distance_transform_edt(small, return_indices=True)
    return labels[rows, cols].astype(np.int32)


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
    guide = np.where(decision, gray_a, gray_b)
    return _refine_weights(decision.astype(np.float32), guide, options)


def _refine_weights(weights: np.ndarray, guide: np.ndarray, options: FusionOptions) -> np.ndarray:
    if options.refine == "guided":
        return guided_filter(guide, weights, options.guided_radius, options.guided_eps)
    if options.refine == "dilate":
        side = 2 * options.dilate_radius + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        return cv2.dilate(weights, kernel)
    return weights
