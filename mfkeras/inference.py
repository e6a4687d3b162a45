"""Score maps from a whole-image network: grayscale conversion and batched inference."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mfkeras.convert import ScoreNetwork

# ITU-R BT.601 luma weights as MATLAB's rgb2gray uses them (the reference's convention).
GRAY_WEIGHTS = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])


def to_gray(image: np.ndarray) -> np.ndarray:
    """Converts an RGB or gray image with values in [0, 1] to float32 gray.

    Args:
        image: (H, W), (H, W, 1) or (H, W, 3) array, RGB channel order.

    Returns:
        (H, W) float32 gray image, BT.601 weights.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 3:
        return (image.astype(np.float64) @ GRAY_WEIGHTS).astype(np.float32)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise ValueError(f"Expected a (H, W), (H, W, 1) or (H, W, 3) image. Received shape {image.shape}")
    return image.astype(np.float32)


_PREDICT_FUNCTIONS = {}


def _predict_function(network: ScoreNetwork):
    key = id(network.model)
    entry = _PREDICT_FUNCTIONS.get(key)
    if entry is None or entry[0] is not network.model:
        spec = tf.TensorSpec((None, None, None, 1), tf.float32)

        def predict(a, b):
            # One branch call on the stacked images uses the cores better than two.
            features = network.branch(tf.concat([a, b], axis=0), training=False)
            count = tf.shape(a)[0]
            return network.head([features[:count], features[count:]], training=False)

        function = tf.function(predict, input_signature=[spec, spec])
        entry = (network.model, function)
        _PREDICT_FUNCTIONS[key] = entry
    return entry[1]


def score_map(
    network: ScoreNetwork, gray_a: np.ndarray, gray_b: np.ndarray, symmetric: bool = False
) -> np.ndarray:
    """Computes the score map of two gray images in one pass.

    Args:
        network: the all-convolutional network.
        gray_a: (H, W) float image in [0, 1].
        gray_b: (H, W) float image in [0, 1], same shape.
        symmetric: average s(A, B) and 1 - s(B, A), which makes swapping the
            inputs invert the scores exactly (twice the work).

    Returns:
        (H', W') float32 probabilities that A is focused, see ``ScoreNetwork``.
    """
    a = np.asarray(gray_a, np.float32)[None, :, :, None]
    b = np.asarray(gray_b, np.float32)[None, :, :, None]
    predict = _predict_function(network)
    if not symmetric:
        return predict(a, b).numpy()[0, :, :, 0]
    scores = predict(np.concatenate([a, b]), np.concatenate([b, a])).numpy()[..., 0]
    return 0.5 * (scores[0] + 1.0 - scores[1])
