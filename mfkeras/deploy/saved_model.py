"""Deployable artefacts: a SavedModel whose ``fuse`` signature runs the whole pipeline in TensorFlow.

:class:`FusionModule` follows tensorflow/models' ``official/vision/serving`` export
modules: a ``tf.Module`` holding the network's variables, with ``tf.function``
signatures that take images and return a dict of named tensors.

* ``score_map``: ``image_a``, ``image_b`` float32 [B, H, W, 1] in [0, 1] ->
  ``score_map`` float32 [B, H', W', 1] (the all-convolutional score map).
* ``fuse`` (also ``serving_default``): ``image_a``, ``image_b`` uint8 [H, W, C],
  C = 1 or 3 -> ``fused`` uint8 [H, W, C], ``focus_map`` float32 [H, W],
  ``decision_map`` uint8 [H, W] (1 where A is chosen, after consistency
  verification) and ``weight_map`` float32 [H, W] (A's blending weight after
  refinement and the soft band).

``fuse`` blends the sources by that weight map as they are: the halo removal of the Python
pipeline (:mod:`mfkeras.fusion.halo`, on by default after per-pixel decision networks) fits
defocus kernels by a search the graph does not hold, so the module is built with it off and
its ``fused`` equals :func:`mfkeras.fusion.fuse` with ``halo_removal=False``.

The TensorFlow counterparts of the :mod:`mfkeras.fusion` steps carry the same
names here (``focus_map``, ``remove_small_regions``, ``guided_filter``, ...).
Connected components are not a TensorFlow op: :func:`connected_components`
labels 8-connected regions by min-label propagation with pointer jumping in a
``tf.while_loop``.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from mfkeras.network.precision import INFERENCE_DTYPES, cast_network, compute_network  # noqa: F401 (re-exported)
from mfkeras.fusion.options import FusionOptions
from mfkeras.io.color import GRAY_WEIGHTS
from mfkeras.network.convert import IMAGE_A, IMAGE_B, ScoreNetwork, as_score_network

SERVING_SIGNATURES = ("serving_default", "fuse", "score_map")


def score_function(
    network: ScoreNetwork,
    inference_dtype: str = "float32",
    jit_compile: bool = False,
    symmetric: bool = False,
) -> tf.types.experimental.PolymorphicFunction:
    """Builds the batched score-map function, optionally mixed precision and XLA-compiled.

    TensorFlow places it on a GPU when it sees one.

    Args:
        network: the all-convolutional network.
        inference_dtype: one of ``INFERENCE_DTYPES``.
        jit_compile: compile with XLA (one compilation per input shape).
        symmetric: average s(A, B) and 1 - s(B, A), as ``FusionOptions.symmetric``.

    Returns:
        A ``tf.function`` mapping float32 (B, H, W, 1) images A and B in [0, 1]
        to float32 (B, H', W', 1) scores.
    """
    compute = compute_network(network, inference_dtype)
    branch, head = compute.branch, compute.head
    spec = tf.TensorSpec((None, None, None, 1), tf.float32)

    def one_way(a, b):
        # One branch call on the stacked images uses the cores better than two.
        features = branch(tf.concat([a, b], axis=0), training=False)
        count = tf.shape(a)[0]
        return tf.cast(head([features[:count], features[count:]], training=False), tf.float32)

    def scores(image_a, image_b):
        if not symmetric:
            return one_way(image_a, image_b)
        count = tf.shape(image_a)[0]
        both = one_way(tf.concat([image_a, image_b], 0), tf.concat([image_b, image_a], 0))
        return 0.5 * (both[:count] + 1.0 - both[count:])

    return tf.function(scores, input_signature=[spec, spec], jit_compile=jit_compile)


def tensorflow_variables(*models: keras.Model) -> list:
    """The ``tf.Variable`` objects behind the weights of Keras models.

    A SavedModel has to track these, not the Keras wrappers, for graph-mode
    loaders (TensorFlow Serving, ``saved_model_cli run``, the TFLite converter)
    to restore the weights the functions capture.
    """
    return [weight.value for model in models for weight in model.weights]


# --- The fusion steps as TensorFlow ops (counterparts of mfkeras.fusion.decision and blend) ---------------


def to_gray(image: tf.Tensor) -> tf.Tensor:
    """Converts a uint8 [H, W, C] image (C = 1 or 3) to float32 [0, 1] gray, BT.601 weights.

    Computed in float64 and rounded once, as :func:`mfkeras.io.color.to_gray` does.
    """
    channels = tf.shape(image)[-1]
    check = tf.debugging.assert_equal(
        tf.logical_or(channels == 1, channels == 3),
        True,
        message="Images must have 1 or 3 channels (uint8 [H, W, C])",
    )
    with tf.control_dependencies([check]):
        image = tf.identity(image)
    weights = tf.where(
        channels == 3,
        tf.constant(GRAY_WEIGHTS, tf.float64),
        tf.constant([1.0, 0.0, 0.0], tf.float64),
    )[:channels]
    unit = tf.cast(image, tf.float64) / 255.0
    return tf.cast(tf.reduce_sum(unit * weights, axis=-1), tf.float32)


def _trailing_box_sum(values: tf.Tensor, size: int) -> tf.Tensor:
    """Sum over the ``size`` x ``size`` block ending at each pixel (zeros outside)."""
    for axis in (0, 1):
        cumulative = tf.cumsum(values, axis=axis)
        pad = [[size, 0], [0, 0]] if axis == 0 else [[0, 0], [size, 0]]
        shifted = tf.pad(cumulative, pad)
        shifted = shifted[: tf.shape(values)[0]] if axis == 0 else shifted[:, : tf.shape(values)[1]]
        values = cumulative - shifted
    return values


def _centred_box_sum(values: tf.Tensor, radius: int) -> tf.Tensor:
    """Sum over the (2r + 1)^2 window centred on each pixel, zeros outside the image."""
    side = 2 * radius + 1
    for axis in (0, 1):
        pad = [[radius + 1, radius], [0, 0]] if axis == 0 else [[0, 0], [radius + 1, radius]]
        cumulative = tf.cumsum(tf.pad(values, pad), axis=axis)
        if axis == 0:
            values = cumulative[side:] - cumulative[:-side]
        else:
            values = cumulative[:, side:] - cumulative[:, :-side]
    return values


def focus_map(scores: tf.Tensor, shape, stride: int, patch_size: int) -> tf.Tensor:
    """Averages the scores of all windows covering each pixel (as :func:`mfkeras.fusion.decision.focus_map`).

    Args:
        scores: (h, w) scores.
        shape: (H, W) of the image (ints or scalar tensors).
        stride: pixels between neighbouring windows.
        patch_size: window side.

    Returns:
        (H, W) float64 focus map.
    """
    height, width = shape[0], shape[1]
    scores = tf.cast(scores, tf.float64)
    if patch_size % stride == 0:
        # A pixel's windows depend only on its stride cell: average at score resolution.
        cells = patch_size // stride
        rows, cols = -(-height // stride), -(-width // stride)
        used = scores[:rows, :cols]
        pad = [[0, rows - tf.shape(used)[0]], [0, cols - tf.shape(used)[1]]]
        total = _trailing_box_sum(tf.pad(used, pad), cells)
        count = _trailing_box_sum(tf.pad(tf.ones_like(used), pad), cells)
        cell_mean = total / tf.maximum(count, 1.0)
        return tf.repeat(tf.repeat(cell_mean, stride, axis=0)[:height], stride, axis=1)[:, :width]

    def spread(values):
        # Puts score (j, i) at pixel (stride * j, stride * i), zeros between, cut or padded to (H, W).
        rows, cols = tf.shape(values)[0], tf.shape(values)[1]
        grid = tf.pad(values[:, None, :, None], [[0, 0], [0, stride - 1], [0, 0], [0, stride - 1]])
        grid = tf.reshape(grid, [rows * stride, cols * stride])[:height, :width]
        return tf.pad(grid, [[0, height - tf.shape(grid)[0]], [0, width - tf.shape(grid)[1]]])

    total = _trailing_box_sum(spread(scores), patch_size)
    count = _trailing_box_sum(spread(tf.ones_like(scores)), patch_size)
    return total / tf.maximum(count, 1.0)


def connected_components(mask: tf.Tensor) -> tf.Tensor:
    """Labels the 8-connected regions of a binary map.

    Every pixel starts with its own raster index as label. Each round, a pixel
    takes the smallest label in its 3x3 neighbourhood within the mask and hands
    it to the pixel its label points to (hooking, a scatter-min), then labels
    jump twice (a pixel takes the label of the pixel its label points to);
    rounds repeat until nothing changes. Hooking and jumping make this converge
    in a few rounds on blob-like maps, where plain min-propagation needs as many
    rounds as the longest path through a region. Labels always point into their
    own region and only decrease, so each region ends labelled by its smallest
    raster index.

    Args:
        mask: (H, W) bool.

    Returns:
        (H, W) int32: 1 + the raster index of the region's first pixel; 0 off the mask.
    """
    mask = tf.convert_to_tensor(mask, tf.bool)
    height, width = tf.shape(mask)[0], tf.shape(mask)[1]
    size = height * width
    background = size + 1
    index = tf.reshape(tf.range(1, size + 1, dtype=tf.int32), [height, width])
    labels = tf.where(mask, index, background)

    def neighbour_min(values):
        padded = tf.pad(values, [[1, 1], [1, 1]], constant_values=background)
        result = values
        for dy in range(3):
            for dx in range(3):
                if dy != 1 or dx != 1:
                    result = tf.minimum(result, padded[dy : dy + height, dx : dx + width])
        return tf.where(mask, result, background)

    def body(values, _):
        # A lookup table: entry i is the label of raster index i; entry `size` is the background.
        table = tf.concat([tf.reshape(values, [-1]), [background]], axis=0)
        table = tf.tensor_scatter_nd_min(
            table, tf.reshape(values - 1, [-1, 1]), tf.reshape(neighbour_min(values), [-1])
        )
        updated = tf.gather(table, tf.gather(table, values - 1) - 1)
        updated.set_shape(values.shape)
        return updated, tf.reduce_any(tf.not_equal(updated, values))

    labels, _ = tf.while_loop(
        lambda values, changed: changed, body, (labels, tf.constant(True)), parallel_iterations=1
    )
    return tf.where(mask, labels, 0)


def _component_areas(labels: tf.Tensor) -> tf.Tensor:
    """Pixel count of each label (index = label; entry 0 counts the background)."""
    flat = tf.reshape(labels, [-1])
    return tf.math.unsorted_segment_sum(tf.ones_like(flat), flat, tf.size(flat) + 1)


def _drop_small_components(mask: tf.Tensor, min_area) -> tf.Tensor:
    labels = connected_components(mask)
    return tf.logical_and(mask, tf.gather(_component_areas(labels), labels) >= min_area)


def remove_small_regions(mask: tf.Tensor, min_area) -> tf.Tensor:
    """Removes 8-connected regions smaller than ``min_area`` from a mask and its complement.

    Args:
        mask: (H, W) bool map.
        min_area: regions with fewer pixels are removed (ones first, then holes).

    Returns:
        The cleaned (H, W) bool map.
    """
    cleaned = _drop_small_components(mask, min_area)
    return tf.logical_not(_drop_small_components(tf.logical_not(cleaned), min_area))


def _largest_component(mask: tf.Tensor) -> tf.Tensor:
    labels = connected_components(mask)
    areas = _component_areas(labels)
    # Of equal regions the first in raster order wins (OpenCV may order ties differently).
    largest = tf.argmax(areas[1:], output_type=tf.int32) + 1
    return tf.where(tf.reduce_any(mask), tf.equal(labels, largest), mask)


def keep_largest_regions(mask: tf.Tensor) -> tf.Tensor:
    """Keeps only the largest 8-connected region of ones, then of zeros."""
    return tf.logical_not(_largest_component(tf.logical_not(_largest_component(mask))))


# Deliberate twin of mfkeras.fusion.decision.guided_filter in TensorFlow ops (compared in tests/deploy/test_export.py).
def guided_filter(guide: tf.Tensor, source: tf.Tensor, radius: int, eps: float) -> tf.Tensor:
    """He et al.'s guided filter with box means over the in-image part of each window.

    Args:
        guide: (H, W) float guide image.
        source: (H, W) float image to filter.
        radius: window radius (side 2r + 1).
        eps: regularisation.

    Returns:
        (H, W) float64 filtered image, not clipped.
    """
    guide = tf.cast(guide, tf.float64)
    source = tf.cast(source, tf.float64)
    counts = _centred_box_sum(tf.ones_like(guide), radius)

    def mean(values):
        return _centred_box_sum(values, radius) / counts

    mean_guide, mean_source = mean(guide), mean(source)
    covariance = mean(guide * source) - mean_guide * mean_source
    variance = mean(guide * guide) - mean_guide * mean_guide
    a = covariance / (variance + eps)
    b = mean_source - a * mean_guide
    return mean(a) * guide + mean(b)


def dilate(mask: tf.Tensor, radius: int) -> tf.Tensor:
    """Binary dilation by OpenCV's elliptical structuring element of side 2r + 1."""
    import cv2

    side = 2 * radius + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    height, width = tf.shape(mask)[0], tf.shape(mask)[1]
    padded = tf.pad(tf.cast(mask, tf.uint8), [[radius, radius], [radius, radius]])
    result = tf.zeros_like(mask, tf.uint8)
    for dy, dx in zip(*np.nonzero(kernel)):
        result = tf.maximum(result, padded[dy : dy + height, dx : dx + width])
    return tf.cast(result, tf.bool)


# Deliberate twin of mfkeras.fusion.decision.decision_boundary_band in TensorFlow ops (compared in tests/deploy/test_export.py).
def decision_boundary_band(decision: tf.Tensor, band: int) -> tf.Tensor:
    """Pixels whose (2 band + 1)^2 window holds both classes (the window clipped at the edges)."""
    mask = tf.cast(decision, tf.float32)[None, ..., None]
    side = 2 * band + 1
    grown = tf.nn.max_pool2d(mask, side, 1, "SAME")
    shrunk = -tf.nn.max_pool2d(-mask, side, 1, "SAME")
    return (grown != shrunk)[0, ..., 0]


def blend(first: tf.Tensor, second: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """``weights * first + (1 - weights) * second`` of uint8 [H, W, C] images, rounded half away from zero.

    Args:
        first: uint8 (H, W, C) image.
        second: uint8 (H, W, C) image.
        weights: (H, W) float weights of ``first``.

    Returns:
        The blended uint8 (H, W, C) image, saturated to [0, 255].
    """
    weights = tf.cast(weights, tf.float64)[..., None]
    second = tf.cast(second, tf.float64)
    mixed = second + weights * (tf.cast(first, tf.float64) - second)
    rounded = tf.floor(tf.abs(mixed) + 0.5) * tf.sign(mixed)
    return tf.cast(tf.clip_by_value(rounded, 0.0, 255.0), tf.uint8)


# --- The serving module -------------------------------------------------------------------


class FusionModule(tf.Module):
    """Serving module: ``score_map`` and ``fuse`` as ``tf.function`` signatures.

    Args:
        network: the all-convolutional network (or a Keras patch model, converted
            with ``options.dense``).
        options: the fusion switches baked into ``fuse`` (``halo_removal`` unset or False).
        inference_dtype: one of ``INFERENCE_DTYPES`` for the network (None:
            ``options.inference_dtype``).
        jit_compile: XLA-compile the network (None: ``options.jit_compile``).
        name: module name.
    """

    def __init__(
        self,
        network,
        options: FusionOptions = FusionOptions(),
        inference_dtype: str | None = None,
        jit_compile: bool | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        if not isinstance(options, FusionOptions):
            raise TypeError(f"options must be a FusionOptions. Received {type(options).__name__}.")
        inference_dtype = options.inference_dtype if inference_dtype is None else inference_dtype
        jit_compile = options.jit_compile if jit_compile is None else jit_compile
        if options.halo_removal:
            raise ValueError(
                "The SavedModel's fuse blends without halo removal (it is NumPy only); pass "
                "halo_removal=None or False. Received: halo_removal=True"
            )
        network = as_score_network(network, dense=options.dense)
        options = dataclasses.replace(options.with_rule(network.geometry.fusion_rule), halo_removal=False)
        self.options = options
        self.inference_dtype = inference_dtype
        self.stride = network.stride
        self.patch_size = network.patch_size
        compute = cast_network(network, inference_dtype)
        self.network_variables = tensorflow_variables(compute.branch, compute.head)
        self._scores = score_function(compute, "float32", jit_compile, symmetric=False)
        self._fuse_scores = score_function(compute, "float32", jit_compile, options.symmetric)

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, None, None, 1), tf.float32, name=IMAGE_A),
            tf.TensorSpec((None, None, None, 1), tf.float32, name=IMAGE_B),
        ]
    )
    def score_map(self, image_a, image_b):
        """Score map of float32 [B, H, W, 1] images in [0, 1] -> {"score_map": [B, H', W', 1]}."""
        return {"score_map": self._scores(image_a, image_b)}

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, None, None), tf.uint8, name=IMAGE_A),
            tf.TensorSpec((None, None, None), tf.uint8, name=IMAGE_B),
        ]
    )
    def fuse(self, image_a, image_b):
        """Fuses two uint8 [H, W, C] images; see the module docstring for the outputs."""
        options = self.options
        shape = tf.shape(image_a)
        checks = [
            tf.debugging.assert_equal(
                shape, tf.shape(image_b), message="image_a and image_b must have the same shape"
            ),
            tf.debugging.assert_greater_equal(
                tf.minimum(shape[0], shape[1]),
                self.patch_size,
                message=f"Images must be at least {self.patch_size} pixels on each side",
            ),
        ]
        with tf.control_dependencies(checks):  # fail with these messages, not deep inside the network
            # Every later use of the images goes through these identities, so the checks run first.
            image_a, image_b = tf.identity(image_a), tf.identity(image_b)
            gray_a, gray_b = to_gray(image_a), to_gray(image_b)
        height, width = shape[0], shape[1]
        scores = self._fuse_scores(gray_a[None, ..., None], gray_b[None, ..., None])[0, :, :, 0]
        focus = focus_map(scores, (height, width), self.stride, self.patch_size)
        decision = focus > 0.5
        if options.consistency == "remove_small":
            min_area = tf.cast(
                tf.math.ceil(options.area_ratio * tf.cast(height * width, tf.float64)), tf.int32
            )
            decision = remove_small_regions(decision, min_area)
        elif options.consistency == "largest":
            decision = keep_largest_regions(decision)
        weights = tf.cast(decision, tf.float64)
        if options.refine == "guided":
            guide = tf.where(decision, gray_a, gray_b)
            weights = guided_filter(guide, weights, options.guided_radius, options.guided_eps)
        elif options.refine == "dilate":
            weights = tf.cast(dilate(decision, options.dilate_radius), tf.float64)
        if options.clip_weights:
            weights = tf.clip_by_value(weights, 0.0, 1.0)
        if options.soft_band:
            band = decision_boundary_band(decision, options.soft_band)
            weights = tf.where(band, tf.cast(focus, tf.float64), weights)
        return {
            "fused": blend(image_a, image_b, weights),
            "focus_map": tf.cast(focus, tf.float32),
            "decision_map": tf.cast(decision, tf.uint8),
            "weight_map": tf.cast(weights, tf.float32),
        }

    def signatures(self) -> dict:
        """The serving signatures, ``serving_default`` being ``fuse``."""
        fuse = self.fuse.get_concrete_function()
        return {"serving_default": fuse, "fuse": fuse, "score_map": self.score_map.get_concrete_function()}


def export_saved_model(
    export_dir: str | os.PathLike,
    network,
    options: FusionOptions = FusionOptions(),
    inference_dtype: str | None = None,
    jit_compile: bool | None = None,
) -> str:
    """Writes the fusion SavedModel (signatures ``serving_default`` = ``fuse``, ``fuse``, ``score_map``).

    Args:
        export_dir: the SavedModel directory (for TensorFlow Serving, a numbered
            version folder such as ``models/mfkeras/1``).
        network: a :class:`ScoreNetwork` or a Keras patch model.
        options: the fusion switches baked into ``fuse`` (``halo_removal`` unset or False).
        inference_dtype: one of ``INFERENCE_DTYPES`` (None: ``options.inference_dtype``).
        jit_compile: XLA-compile the network (None: ``options.jit_compile``).

    Returns:
        ``export_dir`` as a string.
    """
    module = FusionModule(network, options, inference_dtype=inference_dtype, jit_compile=jit_compile)
    export_dir = os.fspath(export_dir)
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    return export_dir
