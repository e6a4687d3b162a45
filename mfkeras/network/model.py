"""The Siamese patch classifier, built with the Keras functional API."""

from __future__ import annotations

import keras

from mfkeras.network.config import POOL, ModelConfig, get_preset

BRANCH_NAME = "branch"
INPUT_A = "patch_a"
INPUT_B = "patch_b"
LOGITS_NAME = "logits"


def kernel_regularizer(weight_decay: float):
    # Caffe's weight decay adds wd * w to the gradient; keras' L2(l2) adds 2 * l2 * w.
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


def build_branch(config: ModelConfig, weight_decay: float = 0.0) -> keras.Model:
    """Builds the branch sub-model that both patches share.

    Args:
        config: the architecture.
        weight_decay: Caffe-style weight decay applied to kernels (0 disables).

    Returns:
        A ``keras.Model`` named ``"branch"`` mapping (S, S, 1) to the feature stack.
    """
    inputs = keras.Input((config.patch_size, config.patch_size, 1), name="patch")
    x = inputs
    conv_index = pool_index = 0
    for item in config.branch_layers:
        if item == POOL:
            pool_index += 1
            x = keras.layers.MaxPooling2D(
                2, 2, padding=config.padding, name=f"pool{pool_index}"
            )(x)
        else:
            conv_index += 1
            x = keras.layers.Conv2D(
                item,
                config.kernel_size,
                padding=config.padding,
                activation="relu",
                kernel_regularizer=kernel_regularizer(weight_decay),
                name=f"conv{conv_index}",
            )(x)
    return keras.Model(inputs, x, name=BRANCH_NAME)


def build_patch_model(config: ModelConfig | str, weight_decay: float = 0.0) -> keras.Model:
    """Builds the Siamese patch classifier.

    Two inputs ``patch_a`` and ``patch_b`` of shape (S, S, 1), float32 in [0, 1],
    go through one shared branch; the feature stacks are concatenated on
    channels (A first), flattened and classified by fully connected layers into
    a 2-way softmax. Class 1 means "patch_a is the focused one".

    Args:
        config: a :class:`ModelConfig` or the name of a preset.
        weight_decay: Caffe-style weight decay applied to kernels (0 disables).

    Returns:
        The uncompiled ``keras.Model``, named after the config.
    """
    if isinstance(config, str):
        config = get_preset(config)
    shape = (config.patch_size, config.patch_size, 1)
    patch_a = keras.Input(shape, name=INPUT_A)
    patch_b = keras.Input(shape, name=INPUT_B)
    branch = build_branch(config, weight_decay)
    features = keras.layers.Concatenate(axis=-1, name="concat")([branch(patch_a), branch(patch_b)])
    x = keras.layers.Flatten(name="flatten")(features)
    for index, units in enumerate(config.fc_units, start=1):
        x = keras.layers.Dense(
            units,
            activation="relu",
            kernel_regularizer=kernel_regularizer(weight_decay),
            name=f"fc{index}",
        )(x)
    logits = keras.layers.Dense(
        2, kernel_regularizer=kernel_regularizer(weight_decay), name=LOGITS_NAME
    )(x)
    probabilities = keras.layers.Softmax(name="softmax")(logits)
    return keras.Model([patch_a, patch_b], probabilities, name=config.name)


def config_from_model(patch_model: keras.Model) -> ModelConfig:
    """Recovers the architecture of a patch model built by :func:`build_patch_model`.

    Args:
        patch_model: a model with a ``"branch"`` sub-model and Dense layers.

    Returns:
        The matching :class:`ModelConfig`.
    """
    try:
        branch = patch_model.get_layer(BRANCH_NAME)
    except ValueError as error:
        raise ValueError(
            f"Expected a Siamese patch model with a sub-model named {BRANCH_NAME!r}. "
            f"Received: model {patch_model.name!r} with layers "
            f"{[layer.name for layer in patch_model.layers]}"
        ) from error
    items, paddings, kernels = [], set(), set()
    for layer in branch.layers:
        if isinstance(layer, keras.layers.Conv2D):
            items.append(int(layer.filters))
            paddings.add(layer.padding)
            kernels.add(int(layer.kernel_size[0]))
        elif isinstance(layer, keras.layers.MaxPooling2D):
            items.append(POOL)
    dense_units = [
        int(layer.units) for layer in patch_model.layers if isinstance(layer, keras.layers.Dense)
    ]
    if len(paddings) != 1 or len(kernels) != 1 or not dense_units or dense_units[-1] != 2:
        raise ValueError(
            "The patch model does not follow the mfkeras layout (uniform padding and kernel "
            f"size, Dense output of 2). Received: paddings={paddings}, kernels={kernels}, "
            f"dense units={dense_units}"
        )
    return ModelConfig(
        name=patch_model.name,
        branch_layers=tuple(items),
        fc_units=tuple(dense_units[:-1]),
        padding=paddings.pop(),
        patch_size=int(branch.input_shape[1]),
        kernel_size=kernels.pop(),
    )
