"""The per-pixel decision network, built with the Keras functional API (built-in layers only).

``model([image_a, image_b])`` maps two (batch, H, W, 1) gray images in [0, 1] to
(batch, H, W, 1) probabilities that A is the sharper source at each pixel. It is fully
convolutional as built, so the same model trains on crops and fuses whole images; a
``.keras`` file loads with plain ``keras.models.load_model``.
"""

from __future__ import annotations

import dataclasses

import keras

from mfkeras.network.decision_config import DecisionConfig, DecisionGeometry, get_decision_preset
from mfkeras.network.cache import BuildCache
from mfkeras.network.geometry import IMAGE_A, IMAGE_B
from mfkeras.network.model import BRANCH_NAME, kernel_regularizer

HEAD_NAME = "head"
SCORE_NAME = "score"
# The branch's 1x1 convolution over its concatenated layer outputs.
MIX_NAME = "mix"


def build_decision_branch(config: DecisionConfig, weight_decay: float = 0.0) -> keras.Model:
    """The branch both images share: (B, H, W, 1) -> (B, H, W, feature_channels)."""
    image = keras.Input((None, None, 1), name="image")
    x, outputs = image, []
    for index, (filters, dilation) in enumerate(zip(config.widths, config.dilations), start=1):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", dilation_rate=dilation, activation="relu",
            kernel_regularizer=kernel_regularizer(weight_decay), name=f"conv{index}",
        )(x)
        outputs.append(x)
    stacked = keras.layers.Concatenate(axis=-1, name="scales")(outputs)
    features = keras.layers.Conv2D(
        config.feature_channels, 1, activation="relu",
        kernel_regularizer=kernel_regularizer(weight_decay), name=MIX_NAME,
    )(stacked)
    return keras.Model(image, features, name=BRANCH_NAME)


def build_decision_head(config: DecisionConfig, weight_decay: float = 0.0) -> keras.Model:
    """The head on two feature maps: concatenation, a hidden 1x1 layer, a sigmoid score.

    Its first layer is linear in the concatenated features, which is what the O(N) stack
    rule (:func:`mfkeras.network.convert.to_stack_head`) splits per image.
    """
    shape = (None, None, config.feature_channels)
    features_a = keras.Input(shape, name="features_a")
    features_b = keras.Input(shape, name="features_b")
    x = keras.layers.Concatenate(axis=-1, name="concat")([features_a, features_b])
    x = keras.layers.Conv2D(
        config.head_units, 1, activation="relu", kernel_regularizer=kernel_regularizer(weight_decay),
        name="compare",
    )(x)
    # A 1-unit sigmoid is the 2-way softmax with its logits folded (p1 = sigmoid(l1 - l0)).
    score = keras.layers.Conv2D(
        1, 1, activation="sigmoid", kernel_regularizer=kernel_regularizer(weight_decay), name=SCORE_NAME
    )(x)
    return keras.Model([features_a, features_b], score, name=HEAD_NAME)


def build_decision_model(config: DecisionConfig | str, weight_decay: float = 0.0) -> keras.Model:
    """Builds the Siamese decision network (shared branch, head on both feature maps).

    Args:
        config: a :class:`DecisionConfig` or the name of a decision preset.
        weight_decay: Caffe-style weight decay applied to kernels (0 disables).

    Returns:
        The uncompiled ``keras.Model``, inputs ``image_a`` and ``image_b``.
    """
    if isinstance(config, str):
        config = get_decision_preset(config)
    image_a = keras.Input((None, None, 1), name=IMAGE_A)
    image_b = keras.Input((None, None, 1), name=IMAGE_B)
    branch = build_decision_branch(config, weight_decay)
    head = build_decision_head(config, weight_decay)
    return keras.Model([image_a, image_b], head([branch(image_a), branch(image_b)]), name=config.name)


def is_decision_model(model) -> bool:
    """Whether ``model`` is a decision network (a branch with a ``mix`` layer and a head)."""
    if not isinstance(model, keras.Model):
        return False
    names = {layer.name for layer in model.layers}
    if BRANCH_NAME not in names or HEAD_NAME not in names:
        return False
    return MIX_NAME in {layer.name for layer in model.get_layer(BRANCH_NAME).layers}


def decision_config_from_model(model: keras.Model) -> DecisionConfig:
    """Recovers the :class:`DecisionConfig` of a model built by :func:`build_decision_model`."""
    if not is_decision_model(model):
        raise ValueError(
            f"Expected a decision network with sub-models {BRANCH_NAME!r} and {HEAD_NAME!r}. "
            f"Received: model {getattr(model, 'name', model)!r}"
        )
    branch = model.get_layer(BRANCH_NAME)
    convs = [layer for layer in branch.layers if isinstance(layer, keras.layers.Conv2D) and layer.name != MIX_NAME]
    head_convs = [layer for layer in model.get_layer(HEAD_NAME).layers if isinstance(layer, keras.layers.Conv2D)]
    return DecisionConfig(
        name=model.name,
        widths=tuple(int(layer.filters) for layer in convs),
        dilations=tuple(int(layer.dilation_rate[0]) for layer in convs),
        feature_channels=int(branch.get_layer(MIX_NAME).filters),
        head_units=int(head_convs[0].filters),
    )


@dataclasses.dataclass(frozen=True)
class DecisionNetwork(BuildCache):
    """A decision network with the geometry the fusion steps read (one score per pixel).

    Attributes:
        model: the Keras model, ``model = head(branch(A), branch(B))``.
        branch: the shared branch.
        head: the head on two feature maps.
        config: the architecture.
    """

    model: keras.Model
    branch: keras.Model
    head: keras.Model
    config: DecisionConfig
    _built: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    stride = 1
    patch_size = 1
    dense = False

    @property
    def geometry(self) -> DecisionGeometry:
        """Halo and map size without the Keras models (what tiling needs)."""
        return DecisionGeometry(self.config)

    @property
    def receptive_field(self) -> int:
        """Halo a tile needs so that its inner decisions equal the whole image's."""
        return self.config.receptive_field

    def output_shape_for(self, height: int, width: int) -> tuple:
        """The score-map shape: the image's own."""
        return (height, width)


def as_decision_network(model: keras.Model) -> DecisionNetwork:
    """Wraps a decision model (no conversion: it is fully convolutional as built)."""
    return DecisionNetwork(model, model.get_layer(BRANCH_NAME), model.get_layer(HEAD_NAME), decision_config_from_model(model))
