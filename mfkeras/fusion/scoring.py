"""Backend-independent scoring: tile plans, memory estimates and the O(N) stack rule.

Large images are scored in overlapping tiles. Each tile carries the network's
receptive halo and starts on the stride grid, so the stitched map equals the
untiled one; only memory changes. Everything here is NumPy over a network's
geometry (``stride``, ``patch_size``, ``receptive_field``, ``config``, ``dense``,
``output_shape_for``), which both the Keras and the LiteRT backends provide.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from mfkeras.fusion.options import STACK_SCORINGS

_FLOAT_BYTES = 4


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile: the image region to run and where its scores go.

    Attributes:
        image_rows, image_cols: slices of the image fed to the network.
        score_rows, score_cols: slices of the full score map this tile fills.
        local_rows, local_cols: the matching slices of the tile's own score map.
    """

    image_rows: slice
    image_cols: slice
    score_rows: slice
    score_cols: slice
    local_rows: slice
    local_cols: slice


def _plan_axis(network, length: int, max_side: int | None) -> list:
    if network.stride == 1 and network.patch_size == 1:
        return _plan_axis_uniform(length, max_side, network.receptive_field)
    total = network.output_shape_for(length, length)[0]
    if max_side is None or length <= max_side:
        return [(0, length, 0, total, 0)]
    stride, patch, halo = network.stride, network.patch_size, network.receptive_field
    per_tile = max(1, (max_side - patch - 2 * halo - 2 * stride) // stride + 1)
    spans = []
    for first in range(0, total, per_tile):
        last = min(total, first + per_tile)
        start = max(0, ((stride * first - halo) // stride) * stride)
        stop = min(length, -(-(stride * (last - 1) + patch + halo) // stride) * stride)
        spans.append((start, stop, first, last, first - start // stride))
    return spans


def _plan_axis_uniform(length: int, max_side: int | None, halo: int) -> list:
    """Tiles of one side for networks with a score per pixel, spread evenly over the axis.

    Every tile has the same length (the fewest tiles of at most ``max_side`` that cover the
    axis, each as short as that count allows), so a runtime that plans per input shape
    plans once; tiles at the image's edges keep the image's own border.
    """
    if max_side is None or length <= max_side:
        return [(0, length, 0, length, 0)]
    inner = max(1, max_side - 2 * halo)
    count = max(2, -(-(length - 2 * halo) // inner))
    side = min(length, -(-(length + 2 * (count - 1) * halo) // count))
    starts = [round(index * (length - side) / (count - 1)) for index in range(count)]
    spans, first = [], 0
    for index, start in enumerate(starts):
        last = length if index == count - 1 else (starts[index + 1] + start + side) // 2
        spans.append((start, start + side, first, last, first - start))
        first = last
    return spans


def plan_tiles(network, height: int, width: int, max_side: int | None) -> list:
    """Splits an image into tiles whose stitched scores equal the whole-image scores.

    Args:
        network: the score network (its stride, window and halo set the overlap).
        height: image height.
        width: image width.
        max_side: largest tile side in pixels, or None for one tile.

    Returns:
        A list of :class:`Tile`.
    """
    if max_side is not None and max_side < 2 * network.patch_size:
        raise ValueError(f"Tiles must be at least {2 * network.patch_size} pixels. Received {max_side}.")
    tiles = []
    for r0, r1, j0, j1, jl in _plan_axis(network, height, max_side):
        for c0, c1, i0, i1, il in _plan_axis(network, width, max_side):
            tiles.append(
                Tile(
                    slice(r0, r1), slice(c0, c1), slice(j0, j1), slice(i0, i1),
                    slice(jl, jl + j1 - j0), slice(il, il + i1 - i0),
                )
            )
    return tiles


def bytes_per_pixel(network, images: int = 2) -> float:
    """Estimated peak bytes per input pixel when scoring ``images`` images at once."""
    return network.geometry.activation_bytes_per_pixel(images)


def tile_side_for_budget(network, budget_bytes: float, images: int = 2) -> int:
    """Largest tile side whose network activations fit ``budget_bytes``."""
    side = int(math.sqrt(budget_bytes / bytes_per_pixel(network, images)))
    return max(2 * network.patch_size, side)


def no_progress(iterable, description: str):
    """The ``progress`` of nobody watching: the iterable itself."""
    return iterable


# Frames per call of the per-image projection, as in the pair path (the tile side was sized
# for two): larger batches only spill the caches.
FRAMES_PER_CALL = 2


def stack_scores(
    network,
    grays: list,
    project: Callable[[np.ndarray], np.ndarray],
    tail: Callable[[np.ndarray], np.ndarray],
    units: int,
    bias: np.ndarray,
    max_tile_side: int | None = None,
    progress=None,
    stack_scoring: str = "all_pairs",
) -> np.ndarray:
    """Scores every image of a stack in O(N) network work.

    The branch and the first head layer (``project``) run once per image; only the
    cheap rest of the head (``tail``) runs per compared pair, with the symmetric
    probability ``p(i, k) = (s(i, k) + 1 - s(k, i)) / 2`` that i is the sharper.

    * ``all_pairs``: image i's score is the mean of ``p(i, k)`` over k != i
      (N (N - 1) tails per pixel);
    * ``knockout``: at each pixel the images challenge the sharpest so far in order
      (image k takes over where ``p(k, winner) > 1/2``), 2 (N - 1) tails per pixel.
      The winner's score is the smallest ``p`` of its comparisons and the image of that
      comparison (the runner-up) holds the rest, so at each score pixel the argmax is the
      winner and the scores are the two-image probabilities of the closest contest (a
      strided patch classifier's focus map averages them over windows, so there it is
      the argmax of those means).

    Args:
        network: the network's geometry (a ScoreNetwork or the LiteRT network).
        grays: N >= 2 gray (H, W) float images in [0, 1].
        project: (B, h, w, 1) float32 frames -> (B, h', w', 2U) projections.
        tail: (P, h', w', U) pre-activations -> (P, h', w', 1) scores.
        units: U, the width of the first head layer.
        bias: (U,) bias of the first head layer.
        max_tile_side: tile side bound in pixels; None scores whole images.
        progress: ``progress(iterable, description)`` wraps the loop over tiles (a progress bar).
        stack_scoring: one of :data:`STACK_SCORINGS`.

    Returns:
        (N, H', W') float32 scores, one map per image.
    """
    if stack_scoring not in STACK_SCORINGS:
        raise ValueError(f"stack_scoring must be one of {STACK_SCORINGS}. Received: {stack_scoring!r}")
    progress = progress or no_progress
    count = len(grays)
    height, width = grays[0].shape
    # Pairs per call of the head's tail: their inputs stay within the two-image network's memory.
    pair_bytes_per_pixel = _FLOAT_BYTES * units / network.stride**2
    pairs_per_call = int(np.clip(bytes_per_pixel(network, FRAMES_PER_CALL) / pair_bytes_per_pixel, 1, 16))
    scores = np.zeros((count, *network.output_shape_for(height, width)), np.float32)
    for tile in progress(plan_tiles(network, height, width, max_tile_side), "tiles"):
        u, v = _projections(grays, tile, project, units, bias)
        if stack_scoring == "knockout":
            local = _knockout_scores(u, v, tail)
        else:
            local = _all_pairs_scores(u, v, tail, pairs_per_call)
        scores[:, tile.score_rows, tile.score_cols] = local
    return scores


def _projections(grays, tile, project, units, bias) -> tuple:
    """Per image, the first head layer's two halves (with its bias on the first), where kept."""
    count = len(grays)
    frames = np.stack([g[tile.image_rows, tile.image_cols] for g in grays]).astype(np.float32)[..., None]
    rows, cols = tile.local_rows, tile.local_cols
    kept_shape = (count, rows.stop - rows.start, cols.stop - cols.start, units)
    u, v = np.empty(kept_shape, np.float32), np.empty(kept_shape, np.float32)
    for start in range(0, count, FRAMES_PER_CALL):
        # The tail runs per pixel, so only where this tile's scores are kept.
        kept = project(frames[start : start + FRAMES_PER_CALL])[:, rows, cols]
        np.add(kept[..., :units], bias, out=u[start : start + FRAMES_PER_CALL])
        v[start : start + FRAMES_PER_CALL] = kept[..., units:]
    return u, v


def _all_pairs_scores(u, v, tail, pairs_per_call: int) -> np.ndarray:
    """(N, h, w): each image's mean symmetric probability against every other."""
    count = len(u)
    local = np.zeros(u.shape[:3], np.float32)
    buffer = np.empty((min(pairs_per_call, count), *u.shape[1:]), np.float32)
    for i in range(count):
        # Against every frame, itself included: its own pair adds s / 2 + (1 - s) / 2 = 1 / 2
        # (taken off below) and lets each call read a slice of v rather than a copy.
        for start in range(0, count, pairs_per_call):
            stop = min(count, start + pairs_per_call)
            pre_activation = np.add(u[i], v[start:stop], out=buffer[: stop - start])
            pair_scores = tail(pre_activation)[..., 0]
            local[i] += 0.5 * pair_scores.sum(axis=0)
            local[start:stop] += 0.5 * (1.0 - pair_scores)
    local -= 0.5
    local /= count - 1
    return local


def _knockout_scores(u, v, tail) -> np.ndarray:
    """(N, h, w): the knockout rule of :func:`stack_scores` on one tile's projections."""
    count = len(u)
    winner = np.zeros(u.shape[1:3], np.int64)
    runner_up = np.ones(u.shape[1:3], np.int64)  # the comparison the winner won by least
    winner_u, winner_v = u[0].copy(), v[0].copy()
    confidence = np.ones(winner.shape, np.float32)
    pre_activation = np.empty((2, *u.shape[1:]), np.float32)
    for k in range(1, count):
        np.add(u[k], winner_v, out=pre_activation[0])
        np.add(winner_u, v[k], out=pre_activation[1])
        pair_scores = tail(pre_activation)[..., 0]
        challenger = 0.5 * (pair_scores[0] + 1.0 - pair_scores[1])
        takes_over = challenger > 0.5
        closer = ~takes_over & (1.0 - challenger < confidence)
        runner_up = np.where(takes_over, winner, np.where(closer, k, runner_up))
        winner[takes_over] = k
        np.copyto(winner_u, u[k], where=takes_over[..., None])
        np.copyto(winner_v, v[k], where=takes_over[..., None])
        confidence = np.where(takes_over, challenger, np.minimum(confidence, 1.0 - challenger))
    local = np.zeros(u.shape[:3], np.float32)
    np.put_along_axis(local, runner_up[None], (1.0 - confidence)[None], axis=0)
    np.put_along_axis(local, winner[None], confidence[None], axis=0)
    return local
