"""Score maps from a whole-image Keras network, in tiles and for stacks (the Keras backend).

Tile plans and the O(N) stack rule are backend-independent (:mod:`mfkeras.fusion.scoring`);
this module runs them with compiled TensorFlow functions cached on the network.
"""

from __future__ import annotations


import numpy as np
import tensorflow as tf

from mfkeras.fusion import scoring
from mfkeras.fusion.scoring import plan_tiles
from mfkeras.network.convert import ScoreNetwork, to_stack_head

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
    progress=None,
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
        progress: ``progress(iterable, description)`` wraps the loop over tiles.

    Returns:
        (H', W') float32 probabilities that A is focused, see ``ScoreNetwork``.
    """
    progress = progress or scoring.no_progress
    predict = _pair_function(network, jit_compile)
    height, width = gray_a.shape
    scores = np.empty(network.output_shape_for(height, width), np.float32)
    for tile in progress(plan_tiles(network, height, width, max_tile_side), "tiles"):
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


def stack_scores(
    network: ScoreNetwork, grays: list, max_tile_side: int | None = None, jit_compile: bool = False,
    progress=None, stack_scoring: str = "all_pairs",
) -> np.ndarray:
    """Scores every image of a stack in O(N) network work (:func:`scoring.stack_scores`).

    The branch and the first head layer run once per image; only the cheap rest
    of the head runs per compared pair. With ``all_pairs``, image i's score is the
    mean over k != i of ``(s(i, k) + 1 - s(k, i)) / 2``; ``knockout`` compares each
    image with the sharpest so far.

    Args:
        network: the score network.
        grays: N >= 2 gray (H, W) float images in [0, 1].
        max_tile_side: tile side bound in pixels; None scores whole images.
        jit_compile: XLA-compile the network.
        stack_scoring: one of :data:`scoring.STACK_SCORINGS`.

    Returns:
        (N, H', W') float32 scores, one map per image.
    """
    stack_head, project, tail = _stack_functions(network, jit_compile)
    return scoring.stack_scores(
        network,
        grays,
        lambda frames: project(frames).numpy(),
        lambda pre_activation: tail(pre_activation).numpy(),
        stack_head.units,
        stack_head.bias,
        max_tile_side,
        progress,
        stack_scoring,
    )
