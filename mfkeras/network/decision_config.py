"""Architecture of the per-pixel decision network and its geometry; imports no TensorFlow.

The decision network maps a registered pair straight to a focus map at full resolution
(the seed's "direct mapping between source and focus map"): a shared branch of 3x3
convolutions with growing dilation (no pooling, so every pixel gets its own decision and
tiles need no grid alignment) whose layers are concatenated and mixed by a 1x1
convolution, and a head of 1x1 convolutions on the two branches' features.
"""

from __future__ import annotations

import dataclasses

from mfkeras.io.config_json import JsonConfig, lookup
from mfkeras.network.geometry import FLOAT_BYTES, MEMORY_SAFETY


@dataclasses.dataclass(frozen=True)
class DecisionConfig(JsonConfig):
    """Describes one per-pixel decision network.

    Attributes:
        name: a short identifier, used for file and model names.
        widths: filters of the branch's 3x3 convolutions (ReLU), in order.
        dilations: dilation of each of those convolutions.
        feature_channels: channels of the branch output (a 1x1 convolution over the
            concatenated outputs of every branch convolution).
        head_units: width of the head's hidden 1x1 convolution on the two feature maps.
    """

    name: str
    widths: tuple = (12, 12, 12, 12, 12, 12)
    dilations: tuple = (1, 1, 2, 4, 8, 16)
    feature_channels: int = 16
    head_units: int = 16

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if not self.widths or len(self.widths) != len(self.dilations):
            raise ValueError(
                "widths and dilations must be non-empty and of equal length. "
                f"Received: widths={self.widths}, dilations={self.dilations}"
            )
        if min(self.widths) < 1 or min(self.dilations) < 1:
            raise ValueError(
                f"widths and dilations must be positive. Received: {self.widths}, {self.dilations}"
            )
        if self.feature_channels < 1 or self.head_units < 1:
            raise ValueError(
                "feature_channels and head_units must be positive. "
                f"Received: {self.feature_channels}, {self.head_units}"
            )

    def to_dict(self) -> dict:
        """Returns the config as plain JSON-serialisable types."""
        return {**dataclasses.asdict(self), "widths": list(self.widths), "dilations": list(self.dilations)}

    @property
    def receptive_field(self) -> int:
        """Pixels on each side of a pixel that reach its decision (sum of the dilations)."""
        return sum(self.dilations)

    def flops(self, height: int, width: int) -> int:
        """Multiply-adds x 2 of the network on a ``height`` x ``width`` pair (both branches)."""
        per_pixel, channels = 0, 1
        for filters in self.widths:
            per_pixel += 9 * channels * filters
            channels = filters
        per_pixel += sum(self.widths) * self.feature_channels
        per_pair = 2 * self.feature_channels * self.head_units + self.head_units
        return 2 * height * width * (2 * per_pixel + per_pair)


# The fusion rule after a per-pixel decision, chosen on the development split (README,
# "Quality against ground truth"): a narrow guided filter that keeps boundaries where the
# network put them, and a smaller small-region threshold; then the network's own
# probability within 2 pixels of the decision's boundary, where the halo zone needs a
# mixture of the sources rather than either. Stacks: the knockout comparison, whose scores
# give that band its weights (binary, it was within 0.01 dB of all pairs at a fraction of
# the head work). Last, each source is cleaned of the others' defocused spill before the
# blend (halo removal): the defocused near side's light is subtracted from the far side's
# sharp frame, which no weighting of the sources can do.
DECISION_RULE = {
    "area_ratio": 0.003, "guided_radius": 1, "guided_eps": 1e-3, "stack_scoring": "knockout", "soft_band": 2,
    "halo_removal": True,
}


@dataclasses.dataclass(frozen=True)
class DecisionGeometry:
    """Where a decision network's scores sit: one per pixel, so the map is the image's size."""

    config: DecisionConfig

    fusion_rule = DECISION_RULE
    stride = 1
    patch_size = 1
    dense = False

    @property
    def receptive_field(self) -> int:
        """Halo a tile needs so that its inner decisions equal the whole image's."""
        return self.config.receptive_field

    def output_shape_for(self, height: int, width: int) -> tuple:
        """The score-map shape: the image's own."""
        return (height, width)

    def activation_bytes_per_pixel(self, images: int = 2) -> float:
        """Estimated peak bytes per input pixel when running ``images`` images at once."""
        widest = max(self.config.widths)
        # The concatenated branch outputs are alive together with the layer being computed (the
        # Keras graph; the LiteRT files sum per-layer mixes instead and hold about half this).
        floats = sum(self.config.widths) + widest + self.config.feature_channels
        return FLOAT_BYTES * images * floats * MEMORY_SAFETY


DECISION_PRESETS = {
    # The default of mfkeras-fuse: 8.66 GFLOP for a 520x520 pair, 32-pixel reach.
    "pixel_decision": DecisionConfig(name="pixel_decision"),
}


def get_decision_preset(name: str) -> DecisionConfig:
    """Returns ``DECISION_PRESETS[name]`` (ValueError names the choices)."""
    return lookup(DECISION_PRESETS, name, "decision preset")
