"""Score map -> focus map -> decision map: consistency verification and refinement (NumPy)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from mfkeras.fusion import row_blocks
from mfkeras.fusion.options import PATCH_RULE, FusionOptions


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
        (H, W) float64 focus map; with one score per pixel (stride and window 1), the
        score map itself.
    """
    height, width = shape
    if stride == 1 and patch_size == 1 and tuple(np.shape(score_map)) == (height, width):
        return score_map
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


# Rows of the guided filter computed at a time, at least 8x the 2 radius rows each block also
# reads above and below: a 6000x4000 map filtered (radius 1) in 0.2 s in such blocks against
# 2.2 s whole, on two threads (one below 2 Mpx); the results equal the whole image's.
_GUIDED_ROWS = 128


# Its one twin is mfkeras.deploy.saved_model.guided_filter (TensorFlow ops inside the SavedModel).
def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with box means over the in-image part of each window.

    Computed in float32 (the box sums are exact to ~1e-7 relative, far below eps),
    which halves the memory of full-resolution photographs, in blocks of rows (on every core
    for images of 2 Mpx and more).

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
    height = guide.shape[0]
    out = np.empty(guide.shape, np.float32)
    reach = 2 * radius  # an output row depends on the input rows this close to it

    def filter_rows(rows: slice) -> None:
        top, bottom = max(0, rows.start - reach), min(height, rows.stop + reach)
        filtered = _guided_filter_block(guide[top:bottom], source[top:bottom], radius, eps)
        out[rows] = filtered[rows.start - top : rows.stop - top]

    workers = row_blocks.worker_count(guide.size)
    blocks = row_blocks.split_rows(height, max(_GUIDED_ROWS, 8 * reach), workers)
    row_blocks.for_each_block(filter_rows, blocks, workers)
    return out


def _guided_filter_block(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """The guided filter of a whole block (its edges are the image's)."""
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


def first_argmax(maps: np.ndarray) -> np.ndarray:
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
    options = options.with_rule(PATCH_RULE)  # fields left unset: the reference code's rule
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
    return _nearest_kept_labels(labels, small)


def _nearest_kept_labels(labels: np.ndarray, small: np.ndarray) -> np.ndarray:
    """``labels`` with each ``small`` pixel given the label of the nearest other pixel (int32).

    OpenCV's labelled distance transform (5x5 Euclidean mask) numbers every kept pixel and
    gives each small pixel the number of its nearest one.
    """
    _, nearest = cv2.distanceTransformWithLabels(
        small.astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    label_of = np.zeros(int(nearest.max()) + 1, np.int32)
    label_of[nearest[~small]] = labels[~small]
    return label_of[nearest]


def verify_consistency(initial: np.ndarray, options: FusionOptions) -> np.ndarray:
    """Applies the configured consistency verification to a binary decision map."""
    options = options.with_rule(PATCH_RULE)  # fields left unset: the reference code's rule
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
    return refine_weights(decision.astype(np.float32), guide, options)


def refine_weights(weights: np.ndarray, guide: np.ndarray, options: FusionOptions) -> np.ndarray:
    """Refines blending weights as ``options.refine`` says (unset fields: the reference rule)."""
    options = options.with_rule(PATCH_RULE)
    if options.refine == "guided":
        return guided_filter(guide, weights, options.guided_radius, options.guided_eps)
    if options.refine == "dilate":
        side = 2 * options.dilate_radius + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        return cv2.dilate(weights, kernel)
    return weights


def decision_boundary_band(decision: np.ndarray, band: int) -> np.ndarray:
    """Pixels whose (2 band + 1)^2 window (clipped at the edges) holds more than one value
    of a binary decision or label map."""
    side = 2 * band + 1
    kernel = np.ones((side, side), np.uint8)
    values = np.ascontiguousarray(decision, np.float32)
    return cv2.dilate(values, kernel) != cv2.erode(values, kernel)


def soften_boundary(weights: np.ndarray, decision: np.ndarray, focus: np.ndarray, options: FusionOptions) -> np.ndarray:
    """The weights with the focus map in place of them within ``options.soft_band`` pixels of
    the decision's boundary (unset: the reference rule, which keeps the weights)."""
    band = options.with_rule(PATCH_RULE).soft_band
    if band == 0:
        return weights
    return np.where(decision_boundary_band(decision, band), focus.astype(weights.dtype), weights)


def soften_stack_boundary(
    weights: np.ndarray, labels: np.ndarray, initial: np.ndarray, focus: np.ndarray, options: FusionOptions
) -> np.ndarray:
    """A stack's (N, H, W) weights with its (N, H, W) focus maps in their place within
    ``options.soft_band`` pixels of a label boundary, where the consistency check kept the
    network's label (``labels == initial``); the focus maps must sum to 1 at each pixel."""
    band = options.with_rule(PATCH_RULE).soft_band
    if band == 0:
        return weights
    soft = decision_boundary_band(labels, band) & (labels == initial)
    return np.where(soft[None], focus.astype(weights.dtype), weights)
