"""Rebuilds a Siamese patch classifier as an all-convolutional score-map network.

The dense layers become convolutions: the first one a convolution whose kernel
covers the whole flattened feature map, the following ones 1x1 convolutions. The
2-way softmax is folded into one sigmoid output, ``p1 = sigmoid(l1 - l0)``, which
is the softmax probability of class 1 ("A is focused").

With ``dense=True`` the pools run at stride 1 and every later layer is dilated
by the stride accumulated so far (the "a trous" rebuild), giving one score per
pixel offset instead of one per ``2 ** pools`` pixels.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from mfkeras.network.config import POOL, ModelConfig
from mfkeras.network.cache import BuildCache
from mfkeras.network.geometry import IMAGE_A, IMAGE_B, ScoreGeometry, output_length, receptive_field
from mfkeras.network.model import BRANCH_NAME, config_from_model


@keras.saving.register_keras_serializable(package="mfkeras")
class DilatedMaxPool2D(keras.layers.Layer):
    """2x2 max-pool at stride 1 whose taps are ``dilation`` pixels apart.

    At positions that are multiples of ``dilation`` it reproduces a 2x2 stride-2
    pool of the layer ``dilation`` times coarser. With ``padding="same"`` the
    input is padded at the bottom and right only, as Keras' stride-2 'same'
    pooling does; zeros are used, which is exact for the non-negative (post-ReLU
    or image) inputs this network pools.
    """

    def __init__(self, dilation: int = 1, padding: str = "same", **kwargs):
        super().__init__(**kwargs)
        self.dilation = int(dilation)
        self.padding = padding

    def call(self, inputs):
        d = self.dilation
        if self.padding == "same":
            inputs = keras.ops.pad(inputs, [[0, 0], [0, d], [0, d], [0, 0]])
        shape = keras.ops.shape(inputs)
        height, width = shape[1] - d, shape[2] - d
        top = keras.ops.maximum(inputs[:, :height, :width], inputs[:, :height, d : d + width])
        bottom = keras.ops.maximum(
            inputs[:, d : d + height, :width], inputs[:, d : d + height, d : d + width]
        )
        return keras.ops.maximum(top, bottom)

    def get_config(self):
        return {**super().get_config(), "dilation": self.dilation, "padding": self.padding}


@keras.saving.register_keras_serializable(package="mfkeras")
class TapSumConv2D(keras.layers.Conv2D):
    """A 'valid' k x k convolution with few output channels, computed tap by tap.

    One 1x1 convolution maps the input to one channel per (tap, output) and the
    k * k shifted maps are summed. The result is the same as ``Conv2D``'s, but
    each dot product runs over C inputs instead of k * k * C. For the score
    layer (8 x 8 x 512 -> 1) that makes oneDNN's float32 result about 30 times
    closer to the exact one (its error over the 32,768 terms of a one-output
    convolution grows as a single accumulator's would) and the layer about 3
    times faster.
    The kernel variable keeps ``Conv2D``'s shape, so weights transfer unchanged.
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.padding != "valid" or tuple(self.strides) != (1, 1) or self.groups != 1:
            raise ValueError("TapSumConv2D supports 'valid' padding, stride 1 and groups=1 only.")

    def convolution_op(self, inputs, kernel):
        rows, cols, channels, filters = self.kernel_size + (kernel.shape[2], self.filters)
        dilation_rows, dilation_cols = self.dilation_rate
        # (k, k, C, F) -> (1, 1, C, k * k * F): output channel (i * k + j) * F + f is tap (i, j).
        per_tap = keras.ops.reshape(
            keras.ops.transpose(kernel, (2, 0, 1, 3)), (1, 1, channels, rows * cols * filters)
        )
        # Channels first, so that each tap's F maps are whole planes and the shifted sums read
        # contiguous rows.
        maps = keras.ops.transpose(keras.ops.conv(inputs, per_tap, padding="valid"), (0, 3, 1, 2))
        shape = keras.ops.shape(maps)
        height = shape[2] - (rows - 1) * dilation_rows
        width = shape[3] - (cols - 1) * dilation_cols
        total = None
        for i in range(rows):
            for j in range(cols):
                first = (i * cols + j) * filters
                top, left = i * dilation_rows, j * dilation_cols
                term = maps[:, first : first + filters, top : top + height, left : left + width]
                total = term if total is None else total + term
        return keras.ops.transpose(total, (0, 2, 3, 1))


# A k x k layer with at most this many (tap, output) maps uses TapSumConv2D.
TAP_SUM_MAX_MAPS = 256


def _window_conv(filters: int, kernel_size, dilation: int, **kwargs) -> keras.layers.Conv2D:
    """The layer for a 'valid' window convolution: TapSumConv2D when its maps are few."""
    rows, cols = kernel_size
    if rows * cols > 1 and rows * cols * filters <= TAP_SUM_MAX_MAPS:
        return TapSumConv2D(filters, kernel_size, padding="valid", dilation_rate=dilation, **kwargs)
    return keras.layers.Conv2D(filters, kernel_size, padding="valid", dilation_rate=dilation, **kwargs)


@dataclasses.dataclass(frozen=True)
class ScoreNetwork(BuildCache):
    """An all-convolutional score-map network and where its scores sit.

    Score ``(j, i)`` is the probability that image A is the focused one in the
    ``patch_size`` x ``patch_size`` window whose top-left pixel is
    ``(stride * j, stride * i)``.

    Attributes:
        model: Keras model, inputs ``image_a`` and ``image_b`` (batch, H, W, 1)
            float32 in [0, 1], output (batch, H', W', 1) scores.
        branch: the whole-image branch, (batch, H, W, 1) -> feature maps.
        head: the classifier on two feature maps, ``model`` = head(branch(A), branch(B)).
        config: the architecture of the patch classifier.
        stride: pixels between neighbouring scores (``2 ** pools``, or 1 if dense).
        dense: whether this is the stride-1 ("a trous") rebuild.
        receptive_field: pixels on each side of a window that can influence its
            score through 'same' padding (0 for 'valid' configs).
    """

    model: keras.Model
    branch: keras.Model
    head: keras.Model
    config: ModelConfig
    stride: int
    dense: bool
    receptive_field: int
    _built: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def patch_size(self) -> int:
        """Side of the window each score describes."""
        return self.config.patch_size

    @property
    def geometry(self) -> ScoreGeometry:
        """Stride, window and halo without the Keras models (what tiling needs)."""
        return ScoreGeometry(self.config, self.dense)

    def output_shape_for(self, height: int, width: int) -> tuple:
        """Returns the score-map shape for an image of the given size."""
        return self.geometry.output_shape_for(height, width)


def to_fully_convolutional(patch_model: keras.Model, dense: bool = False) -> ScoreNetwork:
    """Rebuilds a patch classifier as an all-convolutional score-map network.

    Args:
        patch_model: a Siamese patch model from :func:`mfkeras.network.model.build_patch_model`
            (or one with the same layout, e.g. loaded from a ``.keras`` file).
        dense: if True, build the stride-1 "a trous" network.

    Returns:
        A :class:`ScoreNetwork` whose model shares no variables with ``patch_model``
        but holds exact copies (reshaped) of its weights.
    """
    config = config_from_model(patch_model)
    image_a = keras.Input((None, None, 1), name=IMAGE_A)
    image_b = keras.Input((None, None, 1), name=IMAGE_B)
    fcn_branch, branch_weights, dilation = _rebuild_branch(patch_model.get_layer(BRANCH_NAME), dense)
    head, head_weights = _rebuild_head(patch_model, config, dilation, dense)
    weights = branch_weights + head_weights
    suffix = "_dense" if dense else ""
    model = keras.Model(
        [image_a, image_b], head([fcn_branch(image_a), fcn_branch(image_b)]), name=f"{config.name}_fcn{suffix}"
    )
    for layer, values in weights:
        layer.set_weights([np.asarray(v, dtype=np.float32) for v in values])
    return ScoreNetwork(
        model=model,
        branch=fcn_branch,
        head=head,
        config=config,
        stride=1 if dense else config.stride,
        dense=dense,
        receptive_field=receptive_field(config),
    )


def _rebuild_branch(branch: keras.Model, dense: bool):
    """The branch on whole images; returns it, its (layer, weights) pairs and the final dilation."""
    branch_input = keras.Input((None, None, 1), name="image")
    x = branch_input
    dilation = 1
    weights = []
    for layer in branch.layers:
        if isinstance(layer, keras.layers.Conv2D):
            new_layer = keras.layers.Conv2D(
                layer.filters,
                layer.kernel_size,
                padding=layer.padding,
                dilation_rate=dilation,
                activation="relu",
                name=layer.name,
            )
            x = new_layer(x)
            weights.append((new_layer, layer.get_weights()))
        elif isinstance(layer, keras.layers.MaxPooling2D):
            if dense:
                x = DilatedMaxPool2D(dilation, padding=layer.padding, name=layer.name)(x)
                dilation *= 2
            else:
                x = keras.layers.MaxPooling2D(2, 2, padding=layer.padding, name=layer.name)(x)
    return keras.Model(branch_input, x, name=BRANCH_NAME), weights, dilation


def _rebuild_head(patch_model: keras.Model, config: ModelConfig, dilation: int, dense: bool):
    """The dense layers as window convolutions on two feature maps; returns the head and its weights."""
    features_a = keras.Input((None, None, config.feature_channels), name="features_a")
    features_b = keras.Input((None, None, config.feature_channels), name="features_b")
    features = keras.layers.Concatenate(axis=-1, name="concat")([features_a, features_b])
    dense_layers = [layer for layer in patch_model.layers if isinstance(layer, keras.layers.Dense)]
    size, channels = config.feature_size, 2 * config.feature_channels
    y = features
    weights = []
    for index, layer in enumerate(dense_layers):
        kernel, bias = layer.get_weights()
        is_first, is_last = index == 0, index == len(dense_layers) - 1
        if is_first:
            # Flatten is row-major over (row, col, channel): the dense kernel reshapes exactly.
            kernel = kernel.reshape(size, size, channels, kernel.shape[-1])
        else:
            kernel = kernel.reshape(1, 1, kernel.shape[0], kernel.shape[1])
        if is_last:
            # softmax([l0, l1])[1] == sigmoid(l1 - l0).
            kernel = kernel[..., 1:2] - kernel[..., 0:1]
            bias = bias[1:2] - bias[0:1]
        conv = _window_conv(
            kernel.shape[-1],
            kernel.shape[:2],
            dilation if is_first else 1,
            activation="sigmoid" if is_last else "relu",
            name="score" if is_last else f"{layer.name}_conv",
        )
        y = conv(y)
        weights.append((conv, [kernel, bias]))
    excess = output_length(config, config.patch_size, dense) - 1
    if excess > 0 and config.padding == "valid":
        # Floor pooling ignores the last rows of a window, so the a trous network also
        # scores offsets whose full window leaves the image; those are cut away.
        y = keras.layers.Cropping2D(((0, excess), (0, excess)), name="crop")(y)
    return keras.Model([features_a, features_b], y, name="head"), weights


def score_map_flops(config: ModelConfig, height: int, width: int, dense: bool = False) -> int:
    """Analytic multiply-add count x 2 of the score-map network on an image pair.

    Args:
        config: the architecture (a patch classifier's, or a decision network's).
        height: image height.
        width: image width.
        dense: count the stride-1 network.

    Returns:
        Floating-point operations (2 per multiply-add), both branches included.
    """
    from mfkeras.network.decision_config import DecisionConfig

    if isinstance(config, DecisionConfig):  # one score per pixel whatever ``dense`` says
        return config.flops(height, width)
    rows, cols, channels, dilation, flops = height, width, 1, 1, 0
    for item in config.branch_layers:
        if item == POOL:
            if dense:
                if config.padding == "valid":
                    rows, cols = rows - dilation, cols - dilation
                dilation *= 2
            elif config.padding == "valid":
                rows, cols = rows // 2, cols // 2
            else:
                rows, cols = -(-rows // 2), -(-cols // 2)
            continue
        if config.padding == "valid":
            shrink = (config.kernel_size - 1) * dilation
            rows, cols = rows - shrink, cols - shrink
        flops += 2 * 2 * rows * cols * config.kernel_size**2 * channels * item
        channels = item
    shrink = (config.feature_size - 1) * dilation
    rows, cols = rows - shrink, cols - shrink
    widths = [2 * channels * config.feature_size**2, *config.fc_units, 1]
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        flops += 2 * rows * cols * fan_in * fan_out
    return flops


@dataclasses.dataclass(frozen=True)
class StackHead:
    """The head split at its first (linear) layer, for scoring many images in O(N).

    The first head layer is linear in the concatenated features, so for images
    i and k its pre-activation is ``u_i + v_k + bias`` with ``u = projector(f)[..., :U]``
    and ``v = projector(f)[..., U:]`` computed once per image.

    Attributes:
        projector: features (B, h, w, C) -> (B, h', w', 2U) projections, no bias.
        tail: pre-activations (B, h', w', U) -> scores (B, h', w', 1).
        bias: (U,) bias of the first head layer.
        units: U.
    """

    projector: keras.Model
    tail: keras.Model
    bias: np.ndarray
    units: int


def to_stack_head(network: ScoreNetwork) -> StackHead:
    """Splits the head of a score network into a per-image projector and a pair tail.

    Args:
        network: a score network from :func:`to_fully_convolutional`.

    Returns:
        The :class:`StackHead`; ``tail(u_a + v_b + bias)`` equals ``head(f_a, f_b)``.
    """
    layers = [layer for layer in network.head.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Cropping2D))]
    first = layers[0]
    kernel, bias = first.get_weights()
    channels = network.config.feature_channels
    units = kernel.shape[-1]
    features = keras.Input((None, None, channels), name="features")
    projection = _window_conv(
        2 * units,
        kernel.shape[:2],
        first.dilation_rate,
        use_bias=False,
        name="projection",
    )
    projector = keras.Model(features, projection(features), name="projector")
    projection.set_weights([np.concatenate([kernel[:, :, :channels], kernel[:, :, channels:]], axis=-1)])

    pre_activation = keras.Input((None, None, units), name="pre_activation")
    y = keras.layers.Activation(first.activation, name="first_activation")(pre_activation)
    copies = []
    for layer in layers[1:]:
        if isinstance(layer, keras.layers.Cropping2D):
            y = keras.layers.Cropping2D(layer.cropping, name=layer.name)(y)
            continue
        clone = keras.layers.Conv2D(
            layer.filters, 1, activation=layer.activation, name=layer.name
        )
        y = clone(y)
        copies.append((clone, layer.get_weights()))
    tail = keras.Model(pre_activation, y, name="tail")
    for clone, values in copies:
        clone.set_weights(values)
    return StackHead(projector=projector, tail=tail, bias=bias.astype(np.float32), units=units)


# Attribute on a patch model holding its converted networks, set past Keras' attribute tracking.
_SCORE_NETWORKS_ATTRIBUTE = "_mfkeras_score_networks"


def as_score_network(model, dense: bool = False) -> ScoreNetwork:
    """Returns ``model`` as a :class:`ScoreNetwork`, converting a patch model once.

    The converted network is kept on the patch model itself, so it lives as
    long as the model and no longer.

    Args:
        model: a ScoreNetwork, a DecisionNetwork, a Keras patch model or a Keras
            decision model (:mod:`mfkeras.network.decision_model`, wrapped as it is).
        dense: for patch models, build the stride-1 network.

    Returns:
        The score network.
    """
    from mfkeras.network.decision_model import DecisionNetwork, as_decision_network, is_decision_model

    if isinstance(model, (ScoreNetwork, DecisionNetwork)):
        return model
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"model must be a keras patch model or a ScoreNetwork. Received {type(model).__name__}."
        )
    networks = model.__dict__.get(_SCORE_NETWORKS_ATTRIBUTE)
    if networks is None:
        networks = {}
        object.__setattr__(model, _SCORE_NETWORKS_ATTRIBUTE, networks)
    if is_decision_model(model):
        # Already fully convolutional with one score per pixel: ``dense`` changes nothing.
        if "decision" not in networks:
            networks["decision"] = as_decision_network(model)
        return networks["decision"]
    if dense not in networks:
        networks[dense] = to_fully_convolutional(model, dense=dense)
    return networks[dense]
