"""TFLite (LiteRT) conversion of the score-map network and interpreter helpers.

Two flavours of model, each in any of ``QUANTIZATIONS``:

* dynamic size: inputs ``image_a``, ``image_b`` float32 [1, H, W, 1] in [0, 1];
  the runtime is told the size with ``resize_tensor_input`` (the signature
  runner does it for us). Output ``score_map`` [1, H', W', 1].
* fixed tile (for GPU delegates, which want static shapes): inputs
  ``image_a``, ``image_b`` and ``valid`` float32 [1, T, T, 1]. The host cuts the
  image into overlapping tiles (:func:`mfkeras.fusion.scoring.plan_tiles`, halo =
  ``ScoreNetwork.receptive_field``, tiles on the stride grid), places each at
  the top-left of a T x T canvas and marks its pixels in ``valid``. The model
  zeroes every feature map outside ``valid``, which is exactly the zero padding
  the network applies at an image edge, so each tile is scored as if it were
  the whole (cut) image and the stitched map equals the untiled one.

The interpreter comes from ``ai_edge_litert`` (LiteRT, the maintained package;
``tf.lite.Interpreter`` is deprecated in TensorFlow 2.21 and warns so), falling
back to ``tf.lite.Interpreter`` when LiteRT is not installed.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf

from mfkeras.deploy import saved_model as export
from mfkeras.fusion import litert, scoring
from mfkeras.fusion.litert import SCORE_MAP, SIGNATURE_KEY
from mfkeras.fusion.options import QUANTIZATIONS
from mfkeras.io.images import write_bytes_atomic
from mfkeras.network.convert import IMAGE_A, IMAGE_B, ScoreNetwork, to_stack_head
from mfkeras.network.decision_model import MIX_NAME, DecisionNetwork

VALID = "valid"


def _branch_layers(network: ScoreNetwork) -> list:
    return [layer for layer in network.branch.layers if not isinstance(layer, keras.layers.InputLayer)]


def _tile_signature(network: ScoreNetwork, tile_size: int):
    """The fixed-tile score function and its input signature (see the module docstring)."""
    if isinstance(network, DecisionNetwork):
        raise ValueError(
            "Fixed-tile models are made for patch classifiers; a decision network's dynamic-size "
            "model takes any tile (tile_size=None)."
        )
    grid = network.config.stride
    if tile_size < 2 * network.patch_size or tile_size % grid:
        raise ValueError(
            f"tile_size must be a multiple of {grid} and at least {2 * network.patch_size}. "
            f"Received: tile_size={tile_size}"
        )
    layers = _branch_layers(network)
    same = network.config.padding == "same"

    def branch(image, valid):
        x = image * valid
        for layer in layers:
            x = layer(x, training=False)
            if not same:
                continue  # 'valid' layers never pad: nothing outside the tile reaches kept scores.
            if isinstance(layer, keras.layers.Conv2D):
                x = x * valid
            else:
                valid = layer(valid)  # the pools shrink the mask as they shrink the features
        return x

    def score(image_a, image_b, valid):
        # Batch-1 tensors throughout: GPU delegates handle little else.
        return {SCORE_MAP: network.head([branch(image_a, valid), branch(image_b, valid)], training=False)}

    shape = (1, tile_size, tile_size, 1)
    return score, [tf.TensorSpec(shape, tf.float32, name=name) for name in (IMAGE_A, IMAGE_B, VALID)]


# Decision networks are traced at this size and resized at run time: with static shapes the
# converter folds each dilated convolution (SpaceToBatch, Conv2D, BatchToSpace) into one
# dilated CONV_2D that XNNPACK runs whole; traced with dynamic shapes it keeps the three ops
# and their shape arithmetic, which ran a 320x320 tile 1.5x slower in 2.1x the memory.
DECISION_TRACE_SIDE = 64


def _image_spec(network, name: str, batch=1):
    side = DECISION_TRACE_SIDE if isinstance(network, DecisionNetwork) else None
    return tf.TensorSpec((batch, side, side, 1), tf.float32, name=name)


def traced_branch(network: ScoreNetwork):
    """The branch as the LiteRT files compute it.

    Patch classifiers: ``network.branch`` itself. Decision networks: their 1x1 mix over the
    concatenated layer outputs becomes a sum of one 1x1 convolution per layer (the mix kernel
    split by input channel). The same function with the floats summed in another order (scores
    within a few 1e-6), but no concatenated tensor is built, so each layer's output is dropped
    once the next layer and its share of the mix have read it: a 500-pixel tile of the default
    scored 24 % faster, a 215-pixel one 9 % (XNNPACK, 2-core x86).

    Args:
        network: the float32 score network (a ``DecisionNetwork`` or a patch classifier's).

    Returns:
        A function of a (B, H, W, 1) float32 image tensor giving the branch's features.
    """
    if not isinstance(network, DecisionNetwork):
        return lambda image: network.branch(image, training=False)
    mix = network.branch.get_layer(MIX_NAME)
    layers = [layer for layer in _branch_layers(network) if isinstance(layer, keras.layers.Conv2D) and layer is not mix]
    names = [layer.name for layer in layers]
    if names != [f"conv{index}" for index in range(1, len(layers) + 1)] or not mix.use_bias:
        raise ValueError(f"Expected a branch of conv1..convN and a biased {MIX_NAME!r} layer, as "
                         f"build_decision_branch makes it. Received: layers {names}, mix bias {mix.use_bias}")
    kernel, bias = (np.asarray(weight, np.float32) for weight in mix.get_weights())
    if kernel.shape[2] != sum(layer.filters for layer in layers):
        raise ValueError(f"The {MIX_NAME!r} kernel must take every layer's outputs "
                         f"({sum(layer.filters for layer in layers)} channels). Received: {kernel.shape}")
    shares = np.split(kernel, np.cumsum([layer.filters for layer in layers])[:-1], axis=2)

    def branch(image):
        x, total = image, None
        for layer, share in zip(layers, shares):
            x = layer(x, training=False)
            part = tf.nn.conv2d(x, share, strides=1, padding="SAME")
            total = part if total is None else total + part
        return mix.activation(total + bias)

    return branch


def _dynamic_signature(network: ScoreNetwork):
    branch = traced_branch(network)

    def score(image_a, image_b):
        features = [branch(image) for image in (image_a, image_b)]
        return {SCORE_MAP: network.head(features, training=False)}

    return score, [_image_spec(network, name) for name in (IMAGE_A, IMAGE_B)]


def tile_function(network: ScoreNetwork, tile_size: int):
    """The fixed-tile score function in TensorFlow, as the TFLite tile model computes it.

    Args:
        network: the all-convolutional network.
        tile_size: T, the tile side in pixels (a multiple of the pooling stride,
            at least twice the patch size).

    Returns:
        A ``tf.function`` (image_a, image_b, valid) [1, T, T, 1] ->
        ``{"score_map": [1, T', T', 1]}``; scores whose window leaves ``valid``
        are meaningless.
    """
    score, signature = _tile_signature(network, tile_size)
    return tf.function(score, input_signature=signature)


def convert(network: ScoreNetwork, quantization: str, tile_size: int | None = None) -> bytes:
    """Converts the score-map network to a TFLite flatbuffer.

    Args:
        network: the all-convolutional network (float32).
        quantization: ``float32`` (no quantization), ``float16`` (float16
            weights, computed in float32 on CPU or float16 on GPU delegates) or
            ``dynamic_int8`` (int8 weights, activations quantized on the fly).
        tile_size: None for the dynamic-size model, else the side of the
            fixed-tile model (see the module docstring).

    Returns:
        The ``.tflite`` model bytes, signature ``serving_default``.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}. Received: {quantization!r}")
    if not isinstance(network, (ScoreNetwork, DecisionNetwork)):
        raise TypeError(f"network must be a ScoreNetwork or a DecisionNetwork. Received {type(network).__name__}.")
    if tile_size is None:
        function, signature = _dynamic_signature(network)
    else:
        function, signature = _tile_signature(network, tile_size)
    return _convert_function(function, signature, (network.branch, network.head), quantization)


def _convert_function(function, signature, models, quantization: str) -> bytes:
    concrete = tf.function(function, input_signature=signature).get_concrete_function()
    # The converter saves `holder` as a SavedModel and reloads it in graph mode to fold
    # the weights into constants; that needs the tf.Variables tracked, not their Keras wrappers.
    holder = tf.Module()
    holder.network_variables = export.tensorflow_variables(*models)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def convert_stack(network: ScoreNetwork, quantization: str = "float32") -> tuple:
    """Converts the O(N) stack split of the network for the LiteRT backend.

    Returns:
        ``(project_bytes, tail_bytes, stack_head)``: the per-frame projection (branch and
        first head layer, no bias) and the per-pair tail, see :mod:`mfkeras.fusion.litert`.
    """
    stack_head = to_stack_head(network)
    branch = traced_branch(network)

    def project(frames):
        features = branch(frames)
        return {litert.PROJECTION: stack_head.projector(features, training=False)}

    def tail(pre_activation):
        return {litert.SCORES: stack_head.tail(pre_activation, training=False)}

    batch = scoring.FRAMES_PER_CALL if isinstance(network, DecisionNetwork) else None
    frames = [_image_spec(network, litert.FRAMES, batch)]
    pre = [tf.TensorSpec((None, None, None, stack_head.units), tf.float32, name=litert.PRE_ACTIVATION)]
    project_bytes = _convert_function(
        project, frames, (network.branch, stack_head.projector), quantization
    )
    tail_bytes = _convert_function(tail, pre, (stack_head.tail,), quantization)
    return project_bytes, tail_bytes, stack_head


def write_litert_bundle(network: ScoreNetwork, directory: str, name: str, quantization: str = "float32") -> dict:
    """Writes the LiteRT backend's files for a strided network into ``directory``.

    Args:
        network: the all-convolutional network (not dense).
        directory: the bundle folder, created if needed (``saved_models/<name>/litert``
            for a shipped model's float32 bundle).
        name: the model's name, recorded in the manifest.
        quantization: one of ``QUANTIZATIONS`` (see :func:`convert`), for all three models.

    Returns:
        ``{file name: size in bytes}`` of what was written.
    """
    if network.dense:
        raise ValueError("The LiteRT backend runs the strided network. Received: a dense network.")
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}. Received: {quantization!r}")
    project_bytes, tail_bytes, stack_head = convert_stack(network, quantization)
    payloads = {
        litert.PAIR_FILE: convert(network, quantization),
        litert.PROJECT_FILE: project_bytes,
        litert.TAIL_FILE: tail_bytes,
    }
    manifest = {
        "name": name,
        "kind": "decision" if isinstance(network, DecisionNetwork) else "patch",
        "model_config": network.config.to_dict(),
        "units": int(stack_head.units),
        "bias": [float(b) for b in stack_head.bias],
        "files": sorted(payloads),
        "quantization": quantization,
        "tensorflow": tf.__version__,
    }
    payloads[litert.MANIFEST_FILE] = (json.dumps(manifest, indent=2) + "\n").encode()
    os.makedirs(directory, exist_ok=True)
    for file_name, payload in payloads.items():
        write_bytes_atomic(os.path.join(directory, file_name), payload)
    return {file_name: len(payload) for file_name, payload in payloads.items()}


def interpreter_package() -> str:
    """Which interpreter :func:`make_interpreter` uses: ``ai_edge_litert`` or ``tensorflow``."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return "tensorflow"
    return "ai_edge_litert"


def make_interpreter(model_content: bytes, num_threads: int | None = None):
    """Creates an interpreter for a converted model (LiteRT if installed, else ``tf.lite``).

    Args:
        model_content: the ``.tflite`` bytes.
        num_threads: CPU threads (None: the runtime's default).

    Returns:
        The interpreter, tensors not yet allocated.
    """
    if interpreter_package() == "ai_edge_litert":
        from ai_edge_litert.interpreter import Interpreter
    else:
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_content=model_content, num_threads=num_threads)


def _gray_batch(gray: np.ndarray) -> np.ndarray:
    return np.asarray(gray, np.float32)[None, :, :, None]


def score_map(interpreter, gray_a: np.ndarray, gray_b: np.ndarray) -> np.ndarray:
    """Runs a dynamic-size model on two gray images.

    Args:
        interpreter: from :func:`make_interpreter` on a model converted with ``tile_size=None``.
        gray_a: (H, W) float image in [0, 1].
        gray_b: (H, W) float image in [0, 1], same shape.

    Returns:
        (H', W') float32 scores, as :func:`mfkeras.fusion.inference.score_map`.
    """
    if np.shape(gray_a) != np.shape(gray_b) or np.ndim(gray_a) != 2:
        raise ValueError(
            f"Expected two (H, W) images of one shape. Received {np.shape(gray_a)} and {np.shape(gray_b)}."
        )
    runner = interpreter.get_signature_runner(SIGNATURE_KEY)
    # The runner resizes the inputs (resize_tensor_input) and reallocates when the size changes.
    outputs = runner(**{IMAGE_A: _gray_batch(gray_a), IMAGE_B: _gray_batch(gray_b)})
    return np.array(outputs[SCORE_MAP][0, :, :, 0])


def tiled_score_map(interpreter, network: ScoreNetwork, gray_a: np.ndarray, gray_b: np.ndarray) -> np.ndarray:
    """Runs a fixed-tile model over an image of any size and stitches the scores.

    Args:
        interpreter: from :func:`make_interpreter` on a model converted with a ``tile_size``.
        network: the network the model was converted from (stride, window, halo).
        gray_a: (H, W) float image in [0, 1].
        gray_b: (H, W) float image in [0, 1], same shape.

    Returns:
        (H', W') float32 scores, equal to the untiled score map.
    """
    runner = interpreter.get_signature_runner(SIGNATURE_KEY)
    tile_size = int(interpreter.get_input_details()[0]["shape"][1])
    return tiled_scores(
        lambda a, b, valid: runner(**{IMAGE_A: a, IMAGE_B: b, VALID: valid})[SCORE_MAP],
        network,
        gray_a,
        gray_b,
        tile_size,
    )


def run_score_map(interpreter, network: ScoreNetwork, gray_a, gray_b, tile_size: int | None):
    """Scores a pair with a model from :func:`convert`, dynamic-size or fixed-tile.

    Args:
        interpreter: from :func:`make_interpreter`.
        network: the network the model was converted from.
        gray_a: (H, W) float image in [0, 1].
        gray_b: (H, W) float image in [0, 1], same shape.
        tile_size: the ``tile_size`` the model was converted with (None: dynamic size).

    Returns:
        (H', W') float32 scores.
    """
    if tile_size is None:
        return score_map(interpreter, gray_a, gray_b)
    return tiled_score_map(interpreter, network, gray_a, gray_b)


def tiled_scores(run_tile, network: ScoreNetwork, gray_a, gray_b, tile_size: int) -> np.ndarray:
    """Scores an image pair tile by tile with any fixed-tile runner and stitches the result.

    Args:
        run_tile: callable ``(a, b, valid) -> scores`` on [1, T, T, 1] float32
            arrays (a TFLite signature runner or :func:`tile_function`).
        network: the network (stride, window, halo).
        gray_a: (H, W) float image in [0, 1].
        gray_b: (H, W) float image in [0, 1], same shape.
        tile_size: T.

    Returns:
        (H', W') float32 scores.
    """
    if np.shape(gray_a) != np.shape(gray_b) or np.ndim(gray_a) != 2:
        raise ValueError(
            f"Expected two (H, W) images of one shape. Received {np.shape(gray_a)} and {np.shape(gray_b)}."
        )
    height, width = np.shape(gray_a)
    scores = np.empty(network.output_shape_for(height, width), np.float32)
    canvas = np.zeros((3, 1, tile_size, tile_size, 1), np.float32)
    for tile in scoring.plan_tiles(network, height, width, tile_size):
        rows = tile.image_rows.stop - tile.image_rows.start
        cols = tile.image_cols.stop - tile.image_cols.start
        canvas[:] = 0.0
        canvas[0, 0, :rows, :cols, 0] = gray_a[tile.image_rows, tile.image_cols]
        canvas[1, 0, :rows, :cols, 0] = gray_b[tile.image_rows, tile.image_cols]
        canvas[2, 0, :rows, :cols, 0] = 1.0
        local = np.asarray(run_tile(canvas[0], canvas[1], canvas[2]))[0, :, :, 0]
        scores[tile.score_rows, tile.score_cols] = local[tile.local_rows, tile.local_cols]
    return scores
