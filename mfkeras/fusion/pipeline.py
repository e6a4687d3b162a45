"""The fusion pipeline: images -> score maps -> decision -> refined weights -> fused image."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from mfkeras.fusion import inference
from mfkeras.fusion.blending import blend, blend_stack
from mfkeras.fusion.decision import (
    first_argmax,
    focus_map,
    refine_decision,
    refine_weights,
    verify_consistency,
    verify_label_consistency,
)
from mfkeras.fusion.options import FusionOptions
from mfkeras.fusion.result import FusionResult
from mfkeras.io.color import to_gray, to_unit_range
from mfkeras.io.validate import validate_images
from mfkeras.network import precision
from mfkeras.network.convert import ScoreNetwork, as_score_network


def fuse(images: Sequence[np.ndarray], model, options: FusionOptions = FusionOptions()) -> FusionResult:
    """Fuses two or more registered multi-focus images.

    Args:
        images: equal-size images, gray or RGB, uint8, uint16 or float in [0, 1].
        model: a Keras patch model or a :class:`ScoreNetwork`.
        options: the fusion switches.

    Returns:
        A :class:`FusionResult` (see there for the map shapes of stacks).
    """
    images = validate_images(images)
    network = precision.compute_network(as_score_network(model, dense=options.dense), options.inference_dtype)
    tile_side = _tile_side(network, options)
    if len(images) > 2 and options.stack_method == "joint":
        return _fuse_stack(images, network, options, tile_side)
    result = _fuse_pair(images[0], images[1], network, options, tile_side)
    if len(images) == 2:
        return result
    steps, source_index = [result], result.source_index
    for number, image in enumerate(images[2:], start=2):
        result = _fuse_pair(result.fused, image, network, options, tile_side)
        source_index = np.where(result.decision, source_index, number)
        steps.append(result)
    return dataclasses.replace(result, source_index=source_index, steps=steps)


def _tile_side(network: ScoreNetwork, options: FusionOptions):
    if options.max_tile_side is not None:
        return options.max_tile_side
    if options.memory_budget_mb is not None:
        # Pairs, sequential steps and joint stacks alike run the network on two images at a time.
        return inference.tile_side_for_budget(network, options.memory_budget_mb * 2**20, images=2)
    return None


def _fuse_pair(first, second, network, options: FusionOptions, tile_side) -> FusionResult:
    gray_a = to_gray(to_unit_range(first))
    gray_b = to_gray(to_unit_range(second))
    scores = inference.score_map(
        network,
        gray_a,
        gray_b,
        symmetric=options.symmetric,
        max_tile_side=tile_side,
        jit_compile=options.jit_compile,
    )
    return fuse_scored_pair(first, second, (gray_a, gray_b), scores, network, options)


def fuse_scored_pair(first, second, grays, scores, network, options: FusionOptions) -> FusionResult:
    """The steps after scoring: focus map, decision, consistency, refinement, blend.

    Used by :func:`fuse` and by anything that computes score maps another way (the
    TFLite parity checks of :mod:`mfkeras.deploy.parity`).

    Args:
        first: the first source as given to :func:`fuse`.
        second: the second source, same shape.
        grays: the sources' (H, W) float32 gray images in [0, 1] (the refinement guide).
        scores: their (H', W') score map.
        network: what scored them (its ``stride`` and ``patch_size`` place the scores).
        options: the fusion switches.

    Returns:
        The pair's :class:`FusionResult`.
    """
    gray_a, gray_b = grays
    focus = focus_map(scores, gray_a.shape, network.stride, network.patch_size)
    initial = focus > 0.5
    decision = verify_consistency(initial, options)
    final = refine_decision(decision, gray_a, gray_b, options)
    if options.clip_weights:
        np.clip(final, 0.0, 1.0, out=final)
    fused = blend(first, second, final)
    source_index = np.where(decision, 0, 1).astype(np.int32)
    return FusionResult(fused, scores, focus, initial, decision, final, source_index)


def _fuse_stack(images, network, options: FusionOptions, tile_side) -> FusionResult:
    grays = [to_gray(to_unit_range(image)) for image in images]
    scores = inference.stack_scores(network, grays, max_tile_side=tile_side, jit_compile=options.jit_compile)
    shape = grays[0].shape
    focus = np.stack([focus_map(s, shape, network.stride, network.patch_size) for s in scores])
    initial = first_argmax(focus)
    labels = verify_label_consistency(initial, len(images), options)
    guide = np.choose(labels, grays)
    weights = np.empty((len(images), *shape), np.float32)
    for label in range(len(images)):
        one_hot = (labels == label).astype(np.float32)
        weights[label] = refine_weights(one_hot, guide, options)
    if options.clip_weights or options.refine != "none":
        np.clip(weights, 0.0, None, out=weights)
    total = weights.sum(axis=0)
    empty = total <= 1e-6
    weights /= np.where(empty, 1.0, total)
    for label in range(len(images)):
        weights[label][empty] = labels[empty] == label
    fused = blend_stack(images, weights[1:])
    return FusionResult(fused, scores, focus, initial, labels, weights, labels)

