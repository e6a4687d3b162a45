"""The fusion pipeline: images -> score maps -> decision -> refined weights -> fused image."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from mfkeras.fusion import scoring
from mfkeras.fusion.blending import blend, blend_stack, select_by_labels
from mfkeras.fusion.decision import (
    first_argmax,
    focus_map,
    refine_decision,
    refine_weights,
    soften_boundary,
    soften_stack_boundary,
    verify_consistency,
    verify_label_consistency,
)
from mfkeras.fusion.halo import blend_without_halos
from mfkeras.fusion.litert import LiteRTNetwork
from mfkeras.fusion.options import KERAS_ONLY_OPTIONS, FusionOptions
from mfkeras.fusion.result import FusionResult
from mfkeras.fusion.timing import NO_TIMES
from mfkeras.io.color import to_gray, to_unit_gray, to_unit_range  # noqa: F401 (re-exported by mfkeras.fusion)
from mfkeras.io.validate import validate_images


def fuse(
    images: Sequence[np.ndarray], model, options: FusionOptions = FusionOptions(), times=None,
    progress=None,
) -> FusionResult:
    """Fuses two or more registered multi-focus images.

    Args:
        images: equal-size images, gray or RGB, uint8, uint16 or float in [0, 1].
        model: a Keras patch model, a :class:`ScoreNetwork` (Keras backend) or a
            :class:`mfkeras.fusion.litert.LiteRTNetwork` (LiteRT backend, no TensorFlow).
        options: the fusion switches.
        times: a :class:`mfkeras.fusion.timing.StageTimes` to add the seconds of the
            score, decision, refine and blend stages to (None: not timed).
        progress: ``progress(iterable, description)`` wraps the loops over tiles and
            stack steps, e.g. with a progress bar (None: no progress shown).

    Returns:
        A :class:`FusionResult` (see there for the map shapes of stacks).
    """
    images = validate_images(images)
    times = times if times is not None else NO_TIMES
    progress = progress or scoring.no_progress
    network = _scoring_network(model, options)
    options = options.with_rule(network.geometry.fusion_rule)
    joint = len(images) > 2 and options.stack_method == "joint"
    tile_side = planned_tile_side(network, options, images[0].shape[:2], frames=len(images) if joint else 2)
    if joint:
        return _fuse_stack(images, network, options, tile_side, times, progress)
    result = _fuse_pair(images[0], images[1], network, options, tile_side, times, progress)
    if len(images) == 2:
        return result
    steps, source_index = [result], result.source_index
    for number, image in progress(list(enumerate(images[2:], start=2)), "frames"):
        result = _fuse_pair(result.fused, image, network, options, tile_side, times, progress)
        source_index = np.where(result.decision, source_index, number)
        steps.append(result)
    return dataclasses.replace(result, source_index=source_index, steps=steps)


def as_score_network(model, dense: bool = False):
    """The Keras score network of a patch model, converted once (imports TensorFlow).

    See :func:`mfkeras.network.convert.as_score_network`; here so that importing this
    module stays free of TensorFlow.
    """
    from mfkeras.network.convert import as_score_network as convert

    return convert(model, dense=dense)


def _scoring_network(model, options: FusionOptions):
    """The network that scores: a LiteRT network as it is, else the Keras score network."""
    if isinstance(model, LiteRTNetwork):
        unsupported = [k for k, v in KERAS_ONLY_OPTIONS.items() if getattr(options, k) != v]
        if unsupported:
            raise ValueError(
                f"The LiteRT backend runs the strided float32 network: {', '.join(unsupported)} "
                "need the Keras backend (a Keras patch model)."
            )
        return model
    from mfkeras.network import precision

    return precision.compute_network(as_score_network(model, dense=options.dense), options.inference_dtype)


def _pair_scores(network, gray_a, gray_b, options: FusionOptions, tile_side, progress):
    if isinstance(network, LiteRTNetwork):
        return network.score_map(
            gray_a, gray_b, symmetric=options.symmetric, max_tile_side=tile_side, progress=progress
        )
    from mfkeras.fusion import inference

    return inference.score_map(
        network,
        gray_a,
        gray_b,
        symmetric=options.symmetric,
        max_tile_side=tile_side,
        jit_compile=options.jit_compile,
        progress=progress,
    )


def _stack_scores(network, grays, options: FusionOptions, tile_side, progress):
    if isinstance(network, LiteRTNetwork):
        return network.stack_scores(
            grays, max_tile_side=tile_side, progress=progress, stack_scoring=options.stack_scoring
        )
    from mfkeras.fusion import inference

    return inference.stack_scores(
        network, grays, max_tile_side=tile_side, jit_compile=options.jit_compile, progress=progress,
        stack_scoring=options.stack_scoring,
    )


def planned_tile_side(network, options: FusionOptions, shape: tuple, frames: int = 2):
    """The largest tile side :func:`fuse` gives ``network`` for images of ``shape`` (H, W), scored
    two at a time or, for ``frames`` > 2, as one joint stack: ``options.max_tile_side`` if set,
    else the memory budget's side, capped for LiteRT networks by
    :meth:`LiteRTNetwork.tile_side_for`; None: untiled."""
    if options.max_tile_side is not None:
        return options.max_tile_side
    side = None
    if options.memory_budget_mb is not None:
        # Pairs, sequential steps and joint stacks alike run the network on two images at a time.
        side = scoring.tile_side_for_budget(network, options.memory_budget_mb * 2**20, images=2)
    if isinstance(network, LiteRTNetwork):
        largest = network.tile_side_for(*shape, frames=frames)
        side = min(side or largest, largest)
    return side


def _fuse_pair(first, second, network, options: FusionOptions, tile_side, times, progress) -> FusionResult:
    with times.stage("score"):
        gray_a = to_unit_gray(first)
        gray_b = to_unit_gray(second)
        scores = _pair_scores(network, gray_a, gray_b, options, tile_side, progress)
    return fuse_scored_pair(first, second, (gray_a, gray_b), scores, network, options, times)


def fuse_scored_pair(
    first, second, grays, scores, network, options: FusionOptions, times=None
) -> FusionResult:
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
        times: as for :func:`fuse`.

    Returns:
        The pair's :class:`FusionResult`.
    """
    times = times if times is not None else NO_TIMES
    options = options.with_rule(network.geometry.fusion_rule)
    gray_a, gray_b = grays
    with times.stage("decision"):
        focus = focus_map(scores, gray_a.shape, network.stride, network.patch_size)
        initial = focus > 0.5
        decision = verify_consistency(initial, options)
    with times.stage("refine"):
        final = refine_decision(decision, gray_a, gray_b, options)
        if options.clip_weights:
            np.clip(final, 0.0, 1.0, out=final)
        final = soften_boundary(final, decision, focus, options)
    with times.stage("blend"):
        if options.halo_removal:
            fused = blend_without_halos([second, first], final[None], [gray_b, gray_a])
        else:
            fused = blend(first, second, final)
    source_index = np.where(decision, 0, 1).astype(np.int32)
    return FusionResult(fused, scores, focus, initial, decision, final, source_index)


def _fuse_stack(images, network, options: FusionOptions, tile_side, times, progress) -> FusionResult:
    with times.stage("score"):
        grays = [to_unit_gray(image) for image in images]
        scores = _stack_scores(network, grays, options, tile_side, progress)
    shape = grays[0].shape
    with times.stage("decision"):
        focus = np.stack([focus_map(s, shape, network.stride, network.patch_size) for s in scores])
        initial = first_argmax(focus)
        labels = verify_label_consistency(initial, len(images), options)
    with times.stage("refine"):
        weights = _stack_weights(labels, grays, options)
        if options.stack_scoring == "knockout":
            # Its scores are the closest contest's two probabilities, so they sum to 1.
            weights = soften_stack_boundary(weights, labels, initial, focus, options)
    with times.stage("blend"):
        if options.halo_removal:
            fused = blend_without_halos(images, weights[1:], grays)
        else:
            fused = blend_stack(images, weights[1:])
    return FusionResult(fused, scores, focus, initial, labels, weights, labels)


def _stack_weights(labels, grays, options: FusionOptions) -> np.ndarray:
    """Refined one-hot weights of every frame, normalised to sum to 1 at each pixel."""
    count, shape = len(grays), grays[0].shape
    guide = select_by_labels(labels, grays)
    weights = np.empty((count, *shape), np.float32)
    for label in range(count):
        one_hot = (labels == label).astype(np.float32)
        weights[label] = refine_weights(one_hot, guide, options)
    if options.clip_weights or options.refine != "none":
        np.clip(weights, 0.0, None, out=weights)
    total = weights.sum(axis=0)
    empty = total <= 1e-6
    weights /= np.where(empty, 1.0, total)
    for label in range(count):
        weights[label][empty] = labels[empty] == label
    return weights
