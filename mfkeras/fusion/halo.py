"""Defocus-halo removal: each source cleaned of the other sources' defocused spill, then blended.

Near a focus boundary a frame focused on the far side holds, on top of its sharp content, the
near side's defocused light (the halo). The layered thin-lens model says how much: frame i at
a pixel is ``blur_ij(w_j I_j) + (1 - blur_ij(w_j)) clean_i`` summed over the other frames j,
where ``w_j`` are the fusion weights (where frame j is sharp) and ``blur_ij`` is the defocus
kernel that frame j's sharp content has in frame i. The kernel is fitted from the images
themselves (frame i against blurred copies of frame j inside frame j's sharp region, a disc
or a Gaussian of any radius on a half-pixel grid), the model is solved for ``clean_i``, and
the result is clipped between the sources' values at each pixel, so a fused pixel still lies
between the sources'. Every source is cleaned as if the others were in front of it: where one
is not, its clipped correction is small (measured on the development split, README). Away from
boundaries (farther than a kernel's reach) nothing changes.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

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
_ROWS = 256


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


def _blur(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    if kernel.shape == (1, 1):
        return values
    return cv2.filter2D(values, -1, kernel, borderType=cv2.BORDER_REFLECT)


def _candidates(max_half: int) -> list:
    """Every candidate kernel whose half side is at most ``max_half``, zero-padded to one size."""
    side = 2 * max_half + 1
    kernels = []
    for kind in KERNELS:
        for radius in KERNEL_RADII:
            kernel = defocus_kernel(kind, radius)
            half = kernel.shape[0] // 2
            if half <= max_half:
                padded = np.zeros((side, side))
                padded[max_half - half : max_half + half + 1, max_half - half : max_half + half + 1] = kernel
                kernels.append((kernel, padded))
    return kernels


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
    halves = sorted({defocus_kernel(kind, radius).shape[0] // 2 for kind in KERNELS for radius in KERNEL_RADII},
                    reverse=True)
    for max_half in halves:  # the largest kernels that fit enough pixels of the region
        inner = cv2.erode(region.astype(np.uint8), np.ones((2 * max_half + 1,) * 2, np.uint8),
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
    candidates = _candidates(max_half)
    predicted = patches @ np.stack([padded.ravel() for _, padded in candidates], axis=1).astype(np.float32)
    errors = ((predicted - np.asarray(blurred, np.float32)[rows, cols, None]) ** 2).mean(axis=0)
    return candidates[int(np.argmin(errors))][0]


def _scale_for(shape: tuple) -> int:
    return max(1, math.ceil(min(shape) / ESTIMATION_SIDE))


def _upsampled_rows(values: np.ndarray, shape: tuple, rows: slice) -> np.ndarray:
    """Rows ``rows`` of ``values`` resized to ``shape`` bilinearly, as ``cv2.resize`` maps them."""
    if values.shape[:2] == tuple(shape):
        return values[rows]
    height, width = shape
    y = (np.arange(rows.start, min(rows.stop, height), dtype=np.float32) + 0.5) * (values.shape[0] / height) - 0.5
    x = (np.arange(width, dtype=np.float32) + 0.5) * (values.shape[1] / width) - 0.5
    map_x, map_y = np.meshgrid(np.clip(x, 0, None), np.clip(y, 0, None))
    values = np.asarray(values, np.float32)
    if values.ndim == 3 and values.shape[2] > 4:  # remap takes up to four channels
        return np.stack([_upsampled_rows(values[..., c], shape, rows) for c in range(values.shape[2])], -1)
    return cv2.remap(values, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def blend_without_halos(images, weights: np.ndarray, grays) -> np.ndarray:
    """Blends the sources by their weights after removing each one's defocus halo.

    Args:
        images: N equal-shape images, (H, W) or (H, W, C), as :func:`blend_stack` takes them.
        weights: (N, H, W) weights of every image, summing to 1 at each pixel.
        grays: the images' (H, W) gray versions (any common scale); kernels are fitted on them.

    Returns:
        The fused image, same shape and dtype as the images: equal to
        ``blend_stack(images, weights[1:])`` wherever no other source's kernel reaches.
    """
    fused = blend_stack(images, weights[1:])
    count, shape = len(images), weights.shape[1:]
    scale = _scale_for(shape)
    small_shape = (max(1, shape[0] // scale), max(1, shape[1] // scale))

    def small(values):
        if scale == 1:
            return np.asarray(values, np.float32)
        return cv2.resize(np.asarray(values, np.float32), small_shape[::-1], interpolation=cv2.INTER_AREA)

    small_weights = [small(w) for w in weights]
    small_grays = [small(g) for g in grays]
    colour = [image if image.ndim == 3 else image[..., None] for image in images]
    channels = colour[0].shape[2]
    # What reaches each source from the others: the share of its light and that light, per channel.
    spills = []
    for own in range(count):
        spill = np.zeros((*small_shape, channels + 1), np.float32)
        for other in range(count):
            region = small_weights[other] > 0.5
            kernel = None if other == own or not region.any() else estimate_defocus(
                small_grays[other], small_grays[own], region)
            if kernel is None:
                continue
            kernel = kernel.astype(np.float32)
            spill[..., 0] += _blur(small_weights[other], kernel)
            for c in range(channels):
                spill[..., c + 1] += _blur(small(colour[other][..., c]) * small_weights[other], kernel)
        spills.append(spill)
    out = fused if fused.ndim == 3 else fused[..., None]
    # Only pixels the spill reaches change: clean every source there and blend them again.
    for start in range(0, shape[0], _ROWS):
        rows = slice(start, start + _ROWS)
        near = [_upsampled_rows(spill, shape, rows) for spill in spills]
        near = [n if n.ndim == 3 else n[..., None] for n in near]
        touched = np.any([n[..., 0] > 1e-4 for n in near], axis=0)
        if not touched.any():
            continue
        stacked = np.stack([c[rows][touched] for c in colour]).astype(np.float32)  # (N, T, C)
        lowest, highest = stacked.min(axis=0), stacked.max(axis=0)
        total = np.zeros(stacked.shape[1:], np.float64)
        for own, spill in enumerate(near):
            own_share = np.maximum(1.0 - spill[..., 0][touched], MIN_OWN_SHARE)[:, None]
            clean = np.clip((stacked[own] - spill[..., 1:][touched]) / own_share, lowest, highest)
            total += weights[own][rows][touched][:, None] * clean
        block = out[rows]
        block[touched] = round_to_dtype(total, images[0].dtype)
    return out if fused.ndim == 3 else out[..., 0]
