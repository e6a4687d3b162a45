"""Score maps from a whole-image network: tiling and stacks.

Large images are scored in overlapping tiles. Each tile carries the network's
receptive halo and starts on the stride grid, so the stitched map equals the
untiled one; only memory changes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from mfkeras.network.config import POOL
from mfkeras.network.convert import ScoreNetwork, to_stack_head

_FLOAT_BYTES = 4
# Measured peak-to-estimate ratio of TensorFlow's CPU convolutions (workspace, copies).
_MEMORY_SAFETY = 3.0


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


def _plan_axis(network: ScoreNetwork, length: int, max_side: int | None) -> list:
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


def plan_tiles(network: ScoreNetwork, height: int, width: int, max_side: int | None) -> list:
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


def bytes_per_pixel(network: ScoreNetwork, images: int = 2) -> float:
    """Estimated peak bytes per input pixel when scoring ``images`` images at once."""
    config = network.config
    scale, channels, peak = 1, 1, 0.0
    for item in config.branch_layers:
        if item == POOL:
            if not network.dense:
                scale *= 4
            continue
        peak = max(peak, (channels + item) / scale)
        channels = item
    return _FLOAT_BYTES * images * peak * _MEMORY_SAFETY


def tile_side_for_budget(network: ScoreNetwork, budget_bytes: float, images: int = 2) -> int:
    """Largest tile side whose network activations fit ``budget_bytes``."""
    side = int(math.sqrt(budget_bytes / bytes_per_pixel(network, images)))
    return max(2 * network.patch_size, side)


def _pair_function(network: ScoreNetwork, jit_compile: bool = False):
    def build():
        spec = tf.TensorSpec((None, None, None, 1), tf.float32)

        @tf.function(input_signature=[spec, spec], jit_compile=jit_compile)
        def predict(a, b):
            # One branch call on the stacked images uses the cores better than two.
            features = network.branch(tf.concat([a, b], axis=0), training=False)
            count = tf.shape(a)[0]
            return tf.cast(network.head([features[:count], features[count:]], training=False), tf.float32)

        return predict

    return network.cached("pair_xla" if jit_compile else "pair", build)


def score_map(
    network: ScoreNetwork,
    gray_a: np.ndarray,
    gray_b: np.ndarray,
    symmetric: bool = False,
    max_tile_side: int | None = None,
    jit_compile: bool = False,
) -> np.ndarray:
    """Computes the score map of two gray images, in tiles if asked.

    Args:
        network: the all-convolutional network.
        gray_a: (H, W) float image in [0, 1].
        gray_b: (H, W) float image in [0, 1], same shape.
        symmetric: average s(A, B) and 1 - s(B, A), which makes swapping the
            inputs invert the scores exactly (twice the work).
        max_tile_side: tile side bound in pixels; None scores the whole image at once.
        jit_compile: XLA-compile the network.

    Returns:
        (H', W') float32 probabilities that A is focused, see ``ScoreNetwork``.
    """
    predict = _pair_function(network, jit_compile)
    height, width = gray_a.shape
    scores = np.empty(network.output_shape_for(height, width), np.float32)
    for tile in plan_tiles(network, height, width, max_tile_side):
        a = np.asarray(gray_a[tile.image_rows, tile.image_cols], np.float32)[None, :, :, None]
        b = np.asarray(gray_b[tile.image_rows, tile.image_cols], np.float32)[None, :, :, None]
        if symmetric:
            both = predict(np.concatenate([a, b]), np.concatenate([b, a])).numpy()[..., 0]
            local = 0.5 * (both[0] + 1.0 - both[1])
        else:
            local = predict(a, b).numpy()[0, :, :, 0]
        scores[tile.score_rows, tile.score_cols] = local[tile.local_rows, tile.local_cols]
    return scores


def _stack_functions(network: ScoreNetwork, jit_compile: bool = False):
    def build():
        stack_head = to_stack_head(network)
        spec = tf.TensorSpec((None, None, None, 1), tf.float32)

        @tf.function(input_signature=[spec], jit_compile=jit_compile)
        def project(gray):
            return tf.cast(stack_head.projector(network.branch(gray, training=False), training=False), tf.float32)

        pre_spec = tf.TensorSpec((None, None, None, stack_head.units), tf.float32)

        @tf.function(input_signature=[pre_spec], jit_compile=jit_compile)
        def tail(pre_activation):
            return stack_head.tail(pre_activation, training=False)

        return stack_head, project, tail

    return network.cached("stack_xla" if jit_compile else "stack", build)


_FRAMES_PER_CALL = 2


def stack_scores(
    network: ScoreNetwork, grays: list, max_tile_side: int | None = None, jit_compile: bool = False
) -> np.ndarray:
    """Scores every image of a stack against every other in O(N) network work.

    The branch and the first head layer run once per image; only the cheap rest
    of the head runs per ordered pair. Image i's score is the mean over k != i
    of ``(s(i, k) + 1 - s(k, i)) / 2``.

    Args:
        network: the score network.
        grays: N >= 2 gray (H, W) float images in [0, 1].
        max_tile_side: tile side bound in pixels; None scores whole images.
        jit_compile: XLA-compile the network.

    Returns:
        (N, H', W') float32 scores, one map per image.
    """
    stack_head, project, tail = _stack_functions(network, jit_compile)
    count = len(grays)
    height, width = grays[0].shape
    units = stack_head.units
    # Pairs per call of the head's tail: their inputs stay within the two-image network's memory.
    pair_bytes_per_pixel = _FLOAT_BYTES * units / network.stride**2
    pairs_per_call = int(np.clip(bytes_per_pixel(network, _FRAMES_PER_CALL) / pair_bytes_per_pixel, 1, 16))
    scores = np.zeros((count, *network.output_shape_for(height, width)), np.float32)
    for tile in plan_tiles(network, height, width, max_tile_side):
        batch = np.stack([g[tile.image_rows, tile.image_cols] for g in grays]).astype(np.float32)[..., None]
        # Two frames per call, as in the pair path (the tile side was sized for two): larger
        # batches only spill the caches.
        projected = [project(batch[start : start + _FRAMES_PER_CALL]) for start in range(0, count, _FRAMES_PER_CALL)]
        projections = [chunk[index : index + 1] for chunk in projected for index in range(chunk.shape[0])]
        u = [p[..., :units] + stack_head.bias for p in projections]
        v = [p[..., units:] for p in projections]
        local = None
        pairs = [(i, k) for i in range(count) for k in range(count) if i != k]
        for batch_start in range(0, len(pairs), pairs_per_call):
            batch = pairs[batch_start : batch_start + pairs_per_call]
            pair_scores = tail(tf.concat([u[i] + v[k] for i, k in batch], axis=0)).numpy()[..., 0]
            if local is None:
                local = np.zeros((count, *pair_scores.shape[1:]), np.float32)
            for (i, k), s in zip(batch, pair_scores):
                local[i] += 0.5 * s
                local[k] += 0.5 * (1.0 - s)
        local /= count - 1
        scores[:, tile.score_rows, tile.score_cols] = local[:, tile.local_rows, tile.local_cols]
    return scores

