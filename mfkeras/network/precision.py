"""The compute precision of a score network: mixed float16 / bfloat16, or a float64 reference."""

from __future__ import annotations

import dataclasses

import keras

from mfkeras.fusion.options import INFERENCE_DTYPES
from mfkeras.network.convert import IMAGE_A, IMAGE_B, ScoreNetwork



def cast_network(network: ScoreNetwork, inference_dtype: str = "float32") -> ScoreNetwork:
    """Returns a copy of ``network`` computing in ``inference_dtype``.

    For float16 and bfloat16 (Keras' ``mixed_*`` policies) the variables stay
    float32 and every layer but the first convolution and the final scoring
    convolution computes in the lower precision. Those two stay float32: the
    first sees raw pixel differences (and costs under 1 % of the work), the last
    decides on which side of 0.5 a probability falls. float64 is a slow,
    near-exact reference for parity checks.

    Args:
        network: the all-convolutional network.
        inference_dtype: one of ``INFERENCE_DTYPES``.

    Returns:
        ``network`` itself for float32, else a new :class:`ScoreNetwork` whose
        ``model`` outputs float32 scores.
    """
    if inference_dtype not in INFERENCE_DTYPES:
        raise ValueError(
            f"inference_dtype must be one of {INFERENCE_DTYPES}. Received: {inference_dtype!r}"
        )
    if inference_dtype == "float32":
        return network
    if inference_dtype == "float64":
        policy = last_policy = "float64"
    else:
        policy, last_policy = f"mixed_{inference_dtype}", "float32"
    first = [layer for layer in network.branch.layers if isinstance(layer, keras.layers.Conv2D)][0]
    last = [layer for layer in network.head.layers if isinstance(layer, keras.layers.Conv2D)][-1]

    def clone(layer):
        dtype = last_policy if layer is first or layer is last else policy
        return layer.__class__.from_config({**layer.get_config(), "dtype": dtype})

    branch = keras.models.clone_model(network.branch, clone_function=clone)
    head = keras.models.clone_model(network.head, clone_function=clone)
    branch.set_weights(network.branch.get_weights())
    head.set_weights(network.head.get_weights())
    inputs = [keras.Input((None, None, 1), name=name) for name in (IMAGE_A, IMAGE_B)]
    scores = head([branch(inputs[0]), branch(inputs[1])])
    name = f"{network.model.name}_{inference_dtype}"
    model = keras.Model(inputs, keras.ops.cast(scores, "float32"), name=name)
    return dataclasses.replace(network, model=model, branch=branch, head=head)


def compute_network(network: ScoreNetwork, inference_dtype: str = "float32") -> ScoreNetwork:
    """:func:`cast_network`, built once per network and precision (the copy keeps its compiled functions)."""
    if inference_dtype == "float32":
        return network
    return network.cached(f"cast_{inference_dtype}", lambda: cast_network(network, inference_dtype))
