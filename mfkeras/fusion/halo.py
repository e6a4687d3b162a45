"""Defocus-halo removal: each source cleaned of the other sources' defocused spill, then blended.

Near a focus boundary a frame focused on the far side holds, on top of its sharp content, the
near side's defocused light (the halo). The layered thin-lens model says how much: frame i at
a pixel is ``blur_ij(w_j I_j) + (1 - blur_ij(w_j)) clean_i`` summed over the other frames j,
where ``w_j`` are the fusion weights (where frame j is sharp) and ``blur_ij`` is the defocus
kernel that frame j's sharp content has in frame i. The kernel is fitted from the images
themselves (frame i against blurred copies of frame j inside frame j's sharp region: a disc
or a Gaussian of radius 0.5-24 px in half-pixel steps at the estimation scale, which is the
image's own up to a short side of ``ESTIMATION_SIDE`` and reduced by a whole factor s above it,
so radii 0.5 s-24 s px), the model is solved for ``clean_i``, and the result is clipped between
the sources' values at each pixel, so with non-negative weights that sum to at most 1 a fused
pixel still lies between the sources'. Every source is cleaned as if the others were in front of
it: where one is not, its clipped correction is small (measured on the development split,
README). A source whose weight is zero everywhere is not cleaned (it still bounds the clip).
Pixels out of a kernel's reach of any other source's weight are the plain blend's.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from mfkeras.fusion import row_blocks
from mfkeras.fusion.blending import blend_stack, round_to_dtype

KERNELS = ("disc", "gaussian")
# Radii (pixels, at the estimation scale) the fitted kernel is chosen from.
KERNEL_RADII = tuple(np.arange(0.5, 24.01, 0.5).tolist())
# Images are fitted and their spill computed at a scale whose short side is at most this.
ESTIMATION_SIDE = 640
# Pixels sampled inside a region to fit its kernel (at most FIT_VALUES window values in all);
# regions with fewer than MIN_FIT_SAMPLES are left unchanged.
FIT_SAMPLES = 4096
FIT_VALUES = 2**22
MIN_FIT_SAMPLES = 64
# Smallest share of a pixel's light the model leaves to its own source (1 - spill).
MIN_OWN_SHARE = 0.05
# Rows cleaned at a time: about _BLOCK_PIXELS pixels (so a block's arrays stay in cache: a
# 6000x4000 pair's halo removal took 2.4 s in 21-row blocks against 3.9 s in 256-row ones, on
# two threads of a 2-core x86), and fewer where the block's float copies of every source
# (spill, 4 (C + 1) bytes a pixel, and values, 8 C) would pass _BLOCK_BYTES over all threads.
_BLOCK_PIXELS = 2**17
_BLOCK_BYTES = 2**27


def defocus_kernel(kind: str, radius: float) -> np.ndarray:
    """A normalised disc (anti-aliased pillbox) or Gaussian (sigma = radius / 2) kernel."""
    if kind not in KERNELS:
        raise ValueError(f"kind must be one of {KERNELS}. Received: kind={kind!r}")
    if radius <= 0:
        return np.ones((1, 1), np.float64)
    half = int(np.ceil(radius if kind == "disc" else 1.5 * radius)) + 1
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    if kind == "disc":
        kernel = np.clip(radius + 0.5 - np.hypot(x, y), 0.0, 1.0)
    else:
        kernel = np.exp(-(x * x + y * y) / (2 * (radius / 2) ** 2))
    return kernel / kernel.sum()


def defocus_blur(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``values`` convolved with ``kernel`` (edges reflected), as the layered model blurs."""
    if kernel.shape == (1, 1):
        return values
    return cv2.filter2D(values, -1, kernel, borderType=cv2.BORDER_REFLECT)


@functools.lru_cache(maxsize=None)
def _candidates(max_half: int) -> tuple:
    """The candidate kernels of half side at most ``max_half``, and all of them zero-padded to
    that size as the columns of one (side^2, K) float32 matrix."""
    side = 2 * max_half + 1
    kernels, columns = [], []
    for kind in KERNELS:
        for radius in KERNEL_RADII:
            kernel = defocus_kernel(kind, radius)
            half = kernel.shape[0] // 2
            if half <= max_half:
                padded = np.zeros((side, side))
                padded[max_half - half : max_half + half + 1, max_half - half : max_half + half + 1] = kernel
                kernels.append(kernel)
                columns.append(padded.ravel())
    return kernels, np.stack(columns, axis=1).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _kernel_halves() -> tuple:
    """The candidates' half sides, largest first."""
    return tuple(sorted({defocus_kernel(k, r).shape[0] // 2 for k in KERNELS for r in KERNEL_RADII}, reverse=True))


def estimate_defocus(sharp: np.ndarray, blurred: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    """The candidate kernel k for which ``blur_k(sharp)`` best matches ``blurred`` in ``region``.

    Least squares over up to ``FIT_SAMPLES`` pixels (a fixed pseudo-random choice) that lie a
    whole kernel inside the region, so only the region's own content is blurred.

    Args:
        sharp: (H, W) gray image sharp in ``region``.
        blurred: (H, W) gray image of the same scene.
        region: (H, W) bool, where ``sharp`` is the sharp source.

    Returns:
        The fitted kernel (odd square, sums to 1), or None when the region has fewer than
        ``MIN_FIT_SAMPLES`` such pixels even for the smallest kernels.
    """
    shapes = {np.shape(sharp), np.shape(blurred), np.shape(region)}
    if len(shapes) != 1 or len(np.shape(sharp)) != 2:
        raise ValueError(f"sharp, blurred and region must be one (H, W) shape. Received: {sorted(shapes)}")
    return _best_kernel(_candidate_predictions(sharp, region), blurred)


def _candidate_predictions(sharp: np.ndarray, region: np.ndarray):
    """Every candidate kernel's blur of ``sharp`` at the sampled pixels of ``region``:
    (kernels, rows, cols, (samples, K) predictions), or None when too few pixels fit. They
    depend on the sharp frame only, so one set serves every frame fitted against it."""
    for max_half in _kernel_halves():  # the largest kernels that fit enough pixels of the region
        inner = cv2.erode(np.asarray(region, np.uint8), np.ones((2 * max_half + 1,) * 2, np.uint8),
                          borderType=cv2.BORDER_CONSTANT, borderValue=0)
        rows, cols = np.nonzero(inner)
        if rows.size >= MIN_FIT_SAMPLES:
            break
    else:
        return None
    side = 2 * max_half + 1
    samples = min(FIT_SAMPLES, max(MIN_FIT_SAMPLES, FIT_VALUES // (side * side)))
    if rows.size > samples:
        chosen = np.random.default_rng(0).choice(rows.size, samples, replace=False)
        rows, cols = rows[chosen], cols[chosen]
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(sharp, np.float32), (side, side))
    patches = windows[rows - max_half, cols - max_half].reshape(rows.size, side * side)
    kernels, matrix = _candidates(max_half)
    return kernels, rows, cols, patches @ matrix


def _best_kernel(predictions, blurred: np.ndarray) -> np.ndarray | None:
    """The kernel of ``predictions`` (from :func:`_candidate_predictions`) nearest ``blurred``."""
    if predictions is None:
        return None
    kernels, rows, cols, predicted = predictions
    errors = ((predicted - np.asarray(blurred, np.float32)[rows, cols, None]) ** 2).mean(axis=0)
    return kernels[int(np.argmin(errors))]


def _scale_for(shape: tuple) -> int:
    return max(1, math.ceil(min(shape) / ESTIMATION_SIDE))


def _linear_taps(size: int, small: int, start: int, stop: int) -> tuple:
    """Source indices and weights of output positions start..stop-1 of a bilinear resize from
    ``small`` to ``size`` samples (``cv2.resize``'s mapping: centres aligned, edges clamped)."""
    where = (np.arange(start, stop, dtype=np.float64) + 0.5) * (small / size) - 0.5
    where = np.clip(where, 0, small - 1)
    low = np.floor(where).astype(np.intp)
    high = np.minimum(low + 1, small - 1)
    return low, high, (where - low).astype(np.float32)


def _upsampled_rows(values: np.ndarray, shape: tuple, rows: slice) -> np.ndarray:
    """Rows ``rows`` of ``values`` (H', W'[, C]) resized bilinearly to ``shape`` (H, W): the
    rows interpolated here, then the columns by ``cv2.resize`` (any width)."""
    if values.shape[:2] == tuple(shape):
        return values[rows]
    height, width = shape
    top, bottom, fy = _linear_taps(height, values.shape[0], rows.start, min(rows.stop, height))
    values = np.asarray(values, np.float32)
    fy = fy[(slice(None), *(None,) * (values.ndim - 1))]  # broadcast over columns and channels
    lines = values[top] + fy * (values[bottom] - values[top])
    return cv2.resize(lines, (width, lines.shape[0]), interpolation=cv2.INTER_LINEAR).reshape(
        lines.shape[0], width, *values.shape[2:])


def _check_inputs(images, weights, grays) -> None:
    if len(images) < 2 or any(np.shape(image) != np.shape(images[0]) for image in images):
        raise ValueError(f"images must be two or more arrays of one shape. Received shapes: "
                         f"{[np.shape(image) for image in images]}")
    shape = np.shape(images[0])[:2]
    if np.shape(weights) != (len(images) - 1, *shape):
        raise ValueError(f"weights must be (N - 1, H, W) = {(len(images) - 1, *shape)}, the weights of "
                         f"images[1:]. Received: {np.shape(weights)}")
    if len(grays) != len(images) or any(np.shape(gray) != shape for gray in grays):
        raise ValueError(f"grays must be one (H, W) = {shape} gray image per image. Received shapes: "
                         f"{[np.shape(gray) for gray in grays]}")


def blend_without_halos(images, weights: np.ndarray, grays) -> np.ndarray:
    """Blends the sources as :func:`blend_stack` does, after removing each one's defocus halo.

    Args:
        images: N equal-shape images, (H, W) or (H, W, C).
        weights: (N - 1, H, W) weights of ``images[1:]``; ``images[0]`` has the rest (1 minus
            their sum), as for :func:`blend_stack`. For a pair ``(first, second)`` with first's
            weights ``w``: ``blend_without_halos([second, first], w[None], [gray(second), gray(first)])``.
        grays: the images' (H, W) gray versions (any common scale); kernels are fitted on them.

    Returns:
        The fused image, same shape and dtype as the images; ``blend_stack(images, weights)``
        wherever no other source's kernel reaches.
    """
    _check_inputs(images, weights, grays)
    fused = blend_stack(images, weights)
    count, shape = len(images), np.shape(images[0])[:2]
    scale = _scale_for(shape)
    small_shape = (max(1, shape[0] // scale), max(1, shape[1] // scale))

    def small(values):
        if scale == 1:
            return np.asarray(values, np.float32)
        return cv2.resize(np.asarray(values, np.float32), small_shape[::-1], interpolation=cv2.INTER_AREA)

    small_weights = [small(w) for w in weights]
    small_weights.insert(0, 1.0 - np.sum(small_weights, axis=0))
    small_grays = [small(g) for g in grays]
    colour = [image if image.ndim == 3 else image[..., None] for image in images]
    channels = colour[0].shape[2]
    # Each source's light where it is sharp, premultiplied: its weight, then weight x colour.
    lights = [None] * count

    def light(index):
        if lights[index] is None:
            weight = small_weights[index][..., None]
            lights[index] = np.concatenate([weight, small(colour[index]).reshape(*small_shape, channels) * weight], -1)
        return lights[index]

    # What reaches each source from the others: the share of its light, then that light per channel.
    # (None for a source whose weight is zero everywhere: its cleaned pixels would count for nothing.)
    predictions = {}  # per other source: its candidates' blur at its sampled pixels, fitted once

    def kernel_for(own, other):
        if other not in predictions:
            region = small_weights[other] > 0.5
            predictions[other] = _candidate_predictions(small_grays[other], region) if region.any() else None
        return _best_kernel(predictions[other], small_grays[own])

    spills = []
    for own in range(count):
        if not np.any(small_weights[own] > 0):
            spills.append(None)
            continue
        spill = np.zeros((*small_shape, channels + 1), np.float32)
        for other in range(count):
            kernel = None if other == own else kernel_for(own, other)
            if kernel is not None:
                spill += defocus_blur(light(other), kernel.astype(np.float32)).reshape(spill.shape)
        spills.append(spill)
    out = fused if fused.ndim == 3 else fused[..., None]

    def clean_rows(rows: slice) -> None:
        # Only pixels the spill reaches change: clean every source there and blend them again.
        near = [None if spill is None else _upsampled_rows(spill, shape, rows) for spill in spills]
        touched = np.any([n[..., 0] > 1e-4 for n in near if n is not None], axis=0)
        if not touched.any():
            return
        stacked = np.empty((count, np.count_nonzero(touched), channels))  # float64 (N, T, C)
        for number, image in enumerate(colour):
            stacked[number] = image[rows][touched]
        lowest, highest = stacked[0].copy(), stacked[0].copy()
        for values in stacked[1:]:
            np.minimum(lowest, values, out=lowest)
            np.maximum(highest, values, out=highest)
        block_weights = [w[rows][touched].astype(np.float64) for w in weights]
        block_weights.insert(0, 1.0 - np.sum(block_weights, axis=0))
        total = np.zeros(stacked.shape[1:])
        for own, spill in enumerate(near):
            if spill is None:
                continue
            spill = spill[touched]
            own_share = np.maximum(1.0 - spill[:, :1], MIN_OWN_SHARE)
            clean = np.subtract(stacked[own], spill[:, 1:])
            clean /= own_share
            np.clip(clean, lowest, highest, out=clean)
            clean *= block_weights[own][:, None]
            total += clean
        out[rows][touched] = round_to_dtype(total, images[0].dtype)

    workers = row_blocks.worker_count(shape[0] * shape[1])
    bound = _BLOCK_BYTES // (workers * max(1, shape[1]) * count * (12 * channels + 4))
    blocks = row_blocks.split_rows(shape[0], max(1, min(_BLOCK_PIXELS // max(1, shape[1]), bound)), workers)
    row_blocks.for_each_block(clean_rows, blocks, workers)
    return out if fused.ndim == 3 else out[..., 0]
