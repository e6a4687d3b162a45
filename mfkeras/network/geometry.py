"""Where the scores of an all-convolutional network sit: stride, window, halo, map size.

Pure Python over a :class:`ModelConfig`, so that tiling and the LiteRT backend know a
network's geometry without TensorFlow.
"""

from __future__ import annotations

import dataclasses

from mfkeras.fusion.options import PATCH_RULE
from mfkeras.network.config import POOL, ModelConfig

FLOAT_BYTES = 4
# Measured peak-to-estimate ratio of TensorFlow's CPU convolutions (workspace, copies).
MEMORY_SAFETY = 3.0

# Input names of the score network (Keras inputs, SavedModel and TFLite signatures).
IMAGE_A = "image_a"
IMAGE_B = "image_b"


def output_length(config: ModelConfig, length: int, dense: bool, cropped: bool = False) -> int:
    """Score-map length along one axis of ``length`` pixels (``cropped``: dense maps trimmed)."""
    dilation = 1
    for item in config.branch_layers:
        if item == POOL:
            if dense:
                length = length - dilation if config.padding == "valid" else length
                dilation *= 2
            else:
                length = length // 2 if config.padding == "valid" else -(-length // 2)
        elif config.padding == "valid":
            length -= (config.kernel_size - 1) * (dilation if dense else 1)
    length -= (config.feature_size - 1) * (dilation if dense else 1)
    if cropped and dense and config.padding == "valid":
        length -= output_length(config, config.patch_size, dense) - 1
    return length


def receptive_field(config: ModelConfig) -> int:
    """Pixels beyond a window's edge that reach its score through 'same' padding."""
    if config.padding == "valid":
        return 0
    halo, scale = 0, 1
    for item in config.branch_layers:
        if item == POOL:
            scale *= 2
        else:
            halo += (config.kernel_size // 2) * scale
    return halo


@dataclasses.dataclass(frozen=True)
class ScoreGeometry:
    """The geometry of a score network, without the network.

    Attributes:
        config: the architecture of the patch classifier.
        dense: whether scores are stride-1 ("a trous").
    """

    config: ModelConfig
    dense: bool = False

    # The fusion rule the reference code uses after a patch classifier.
    fusion_rule = PATCH_RULE

    @property
    def stride(self) -> int:
        """Pixels between neighbouring scores."""
        return 1 if self.dense else self.config.stride

    @property
    def patch_size(self) -> int:
        """Side of the window each score describes."""
        return self.config.patch_size

    @property
    def receptive_field(self) -> int:
        """Halo of 'same'-padded configs (0 for 'valid')."""
        return receptive_field(self.config)

    def output_shape_for(self, height: int, width: int) -> tuple:
        """Returns the score-map shape for an image of the given size."""
        return tuple(output_length(self.config, n, self.dense, cropped=True) for n in (height, width))

    def activation_bytes_per_pixel(self, images: int = 2) -> float:
        """Estimated peak bytes per input pixel when scoring ``images`` images at once."""
        scale, channels, peak = 1, 1, 0.0
        for item in self.config.branch_layers:
            if item == POOL:
                if not self.dense:
                    scale *= 4
                continue
            peak = max(peak, (channels + item) / scale)
            channels = item
        return FLOAT_BYTES * images * peak * MEMORY_SAFETY
