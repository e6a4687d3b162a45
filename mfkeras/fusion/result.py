"""What one fusion returns."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class FusionResult:
    """Everything one fusion produces.

    For two images (and sequential stacks, whose maps are the last step's):

    Attributes:
        fused: the fused image, same shape and dtype as the inputs.
        score_map: (H', W') network scores (probability that A is focused).
        focus_map: (H, W) mean score of all windows covering each pixel.
        initial_decision: (H, W) bool, ``focus_map > 0.5``.
        decision: (H, W) bool, after consistency verification.
        final_decision: (H, W) float weights of the first image after refinement and the
            soft band (``FusionOptions.soft_band``).
        source_index: (H, W) int, which input each pixel mostly comes from.
        steps: for sequential stacks, the result of each pairwise step.

    For a joint stack of N images, ``score_map`` is (N, H', W'), ``focus_map``
    (N, H, W), ``initial_decision`` and ``decision`` are (H, W) label maps
    before and after consistency verification, and ``final_decision`` holds the
    (N, H, W) blending weights.
    """

    fused: np.ndarray
    score_map: np.ndarray
    focus_map: np.ndarray
    initial_decision: np.ndarray
    decision: np.ndarray
    final_decision: np.ndarray
    source_index: np.ndarray
    steps: list = dataclasses.field(default_factory=list)
