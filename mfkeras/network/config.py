"""Architecture configuration of the Siamese patch classifier and its named presets."""

from __future__ import annotations

import dataclasses
from typing import Union

from mfkeras.io.config_json import JsonConfig, lookup

POOL = "pool"
PADDINGS = ("same", "valid")

BranchLayer = Union[int, str]


@dataclasses.dataclass(frozen=True)
class ModelConfig(JsonConfig):
    """Describes one Siamese patch-classifier architecture.

    Attributes:
        name: a short identifier, used for file and model names.
        branch_layers: the branch as a sequence of items; an integer is a 3x3
            stride-1 convolution with that many filters followed by ReLU, the
            string ``"pool"`` is a 2x2 stride-2 max-pool (padded like the
            convolutions).
        fc_units: widths of the hidden fully connected layers (ReLU) that follow
            the concatenated, flattened branch features; the 2-way output layer
            is always appended.
        padding: ``"same"`` or ``"valid"`` for every convolution.
        patch_size: side of the square input patches.
        kernel_size: side of every convolution kernel.
    """

    name: str
    branch_layers: tuple = (64, 64, POOL, 128, 128, POOL, 256, POOL)
    fc_units: tuple = (256, 128)
    padding: str = "same"
    patch_size: int = 16
    kernel_size: int = 3

    def __post_init__(self):
        object.__setattr__(self, "branch_layers", tuple(self.branch_layers))
        object.__setattr__(self, "fc_units", tuple(int(u) for u in self.fc_units))
        if self.padding not in PADDINGS:
            raise ValueError(
                f"padding must be one of {PADDINGS}. Received: padding={self.padding!r}"
            )
        for item in self.branch_layers:
            if item != POOL and not (isinstance(item, int) and item > 0):
                raise ValueError(
                    "branch_layers items must be positive ints (conv filters) or "
                    f"'{POOL}'. Received: {item!r} in branch_layers={self.branch_layers}"
                )
        if not any(isinstance(item, int) for item in self.branch_layers):
            raise ValueError(
                f"branch_layers needs at least one convolution. Received: {self.branch_layers}"
            )
        if any(u <= 0 for u in self.fc_units):
            raise ValueError(f"fc_units must be positive. Received: fc_units={self.fc_units}")
        if self.feature_size < 1:
            raise ValueError(
                f"patch_size={self.patch_size} is too small for {self.branch_layers} "
                f"with padding={self.padding!r}: the branch output would be empty."
            )

    @property
    def num_pools(self) -> int:
        """Number of 2x2 stride-2 max-pools in the branch."""
        return sum(1 for item in self.branch_layers if item == POOL)

    @property
    def stride(self) -> int:
        """Output stride of the branch in pixels (2 ** pools)."""
        return 2 ** self.num_pools

    @property
    def feature_size(self) -> int:
        """Spatial side of the branch output for one patch."""
        size = self.patch_size
        for item in self.branch_layers:
            if item == POOL:
                size = -(-size // 2) if self.padding == "same" else size // 2
            elif self.padding == "valid":
                size -= self.kernel_size - 1
        return size

    @property
    def feature_channels(self) -> int:
        """Channels of the branch output (filters of its last convolution)."""
        return [item for item in self.branch_layers if item != POOL][-1]

    def to_dict(self) -> dict:
        """Returns the config as plain JSON-serialisable types."""
        return {
            "name": self.name,
            "branch_layers": list(self.branch_layers),
            "fc_units": list(self.fc_units),
            "padding": self.padding,
            "patch_size": self.patch_size,
            "kernel_size": self.kernel_size,
        }


PRESETS = {
    # The seed paper (Li et al. 2018): five convolutions, three pools, FC 256 and FC 128.
    "li2018": ModelConfig(
        name="li2018",
        branch_layers=(64, 64, POOL, 128, 128, POOL, 256, POOL),
        fc_units=(256, 128),
    ),
    # The CNN of Liu et al. 2017 that the seed builds on.
    "liu2017": ModelConfig(
        name="liu2017",
        branch_layers=(64, 128, POOL, 256),
        fc_units=(256,),
    ),
    # Liu et al. 2017 as released by its authors: the 8x8x512 features go straight to FC 2.
    "liu2017_single_fc": ModelConfig(
        name="liu2017_single_fc",
        branch_layers=(64, 128, POOL, 256),
        fc_units=(),
    ),
}


def get_preset(name: str) -> ModelConfig:
    """Returns the frozen :class:`ModelConfig` ``PRESETS[name]`` (ValueError names the choices)."""
    return lookup(PRESETS, name, "preset")
