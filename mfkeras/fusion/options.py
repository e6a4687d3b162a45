"""Fusion switches and every choice the command line offers; imports no TensorFlow."""

from __future__ import annotations

import dataclasses

CONSISTENCY_MODES = ("remove_small", "largest", "none")
REFINE_MODES = ("guided", "dilate", "none")
STACK_METHODS = ("joint", "sequential")
STACK_SCORINGS = ("all_pairs", "knockout")
INFERENCE_DTYPES = ("float32", "float16", "bfloat16", "float64")
QUANTIZATIONS = ("float32", "float16", "dynamic_int8")
ALIGN_MODELS = ("affine", "homography")
ALIGN_METHODS = ("ecc", "features")
BACKENDS = ("keras", "litert")

# The rule after a patch classifier, as the reference code has it; decision networks bring
# their own (mfkeras.network.decision_config). FusionOptions fields left at None take these.
PATCH_RULE = {
    "area_ratio": 0.01, "guided_radius": 8, "guided_eps": 0.1, "stack_scoring": "all_pairs", "soft_band": 0,
    "halo_removal": False,
}

# The options only the Keras backend runs, with the values the LiteRT backend's files have.
KERAS_ONLY_OPTIONS = {"dense": False, "inference_dtype": "float32", "jit_compile": False}

@dataclasses.dataclass(frozen=True)
class FusionOptions:
    """Switches and parameters of the fusion steps (defaults follow the reference code).

    Attributes:
        symmetric: score with the mean of s(A, B) and 1 - s(B, A).
        dense: use the stride-1 ("a trous") score map instead of the strided one.
        consistency: ``remove_small`` (drop regions smaller than
            ``area_ratio * H * W`` in the map and its complement), ``largest``
            (keep only the largest region of each class, as the seed describes)
            or ``none``.
        area_ratio: the small-region threshold as a fraction of the image area; None: the
            network's own (0.01 for patch classifiers, as the reference code).
        refine: ``guided`` (guided filter on the initially fused gray image),
            ``dilate`` (the seed's morphological dilation) or ``none``.
        guided_radius: guided filter radius (window side 2r + 1); None: the network's
            own (8 for patch classifiers, as the reference code; see ``fusion_rule`` of
            the network's geometry).
        guided_eps: guided filter regularisation; None: the network's own (0.1 for patch
            classifiers).
        dilate_radius: radius of the elliptical structuring element for ``dilate``.
        soft_band: within this many pixels of the decision's boundary (where the
            (2 soft_band + 1)^2 window holds more than one label) the weights are the
            network's own probabilities instead of the refined binary decision: a pair's
            focus map, or on joint knockout stacks the winner's and runner-up's
            probabilities of their closest contest where consistency kept the label;
            0 keeps the refined decision everywhere; None: the network's own (0 for patch
            classifiers). It applies whatever ``refine`` is (so ``dilate`` with
            ``dilate_radius <= soft_band`` has no effect and ``none`` is no longer a
            binary mask; pass 0 for those), and joint ``all_pairs`` stacks ignore it (their
            scores are not weights). Pairs take the probability throughout the band, also
            where it disagrees with the verified decision: the band follows the verified
            boundary, so only disagreements within ``soft_band`` pixels of it come back.
        halo_removal: before blending, clean each source near focus boundaries of the
            other sources' defocused spill, with defocus kernels fitted from the images
            (:mod:`mfkeras.fusion.halo`); fused pixels stay between the sources'. None: the
            network's own (False for patch classifiers, as the reference code).
        clip_weights: clip the refined weights to [0, 1] so every fused pixel
            lies between the sources (the reference code does not clip).
        stack_method: for three or more images, ``joint`` (every image scored
            against every other in O(N) network work, one label map) or
            ``sequential`` (pairwise fusion in sequence, the seed's extension).
        stack_scoring: how ``joint`` compares the images, one of ``STACK_SCORINGS``:
            ``all_pairs`` (each image's mean probability against every other, N (N - 1)
            head tails per pixel) or ``knockout`` (each image against the sharpest so
            far, 2 (N - 1)); None: the network's own (``all_pairs`` for patch
            classifiers, ``knockout`` for decision networks).
        max_tile_side: score in tiles of at most this many pixels a side.
        memory_budget_mb: choose the tile side so the network's activations fit
            this budget (ignored when ``max_tile_side`` is set; None never tiles).
            Tiling changes the scores only by float rounding (~1e-7).
        inference_dtype: network precision, one of ``INFERENCE_DTYPES``:
            ``float16`` / ``bfloat16`` are Keras mixed precision (fast on GPUs,
            and bfloat16 on CPUs with AMX), ``float64`` a slow reference.
        jit_compile: XLA-compile the network (one compilation per image size).
    """

    symmetric: bool = False
    dense: bool = False
    consistency: str = "remove_small"
    area_ratio: float | None = None
    refine: str = "guided"
    guided_radius: int | None = None
    guided_eps: float | None = None
    dilate_radius: int = 2
    soft_band: int | None = None
    halo_removal: bool | None = None
    clip_weights: bool = True
    stack_method: str = "joint"
    stack_scoring: str | None = None
    max_tile_side: int | None = None
    memory_budget_mb: float | None = 2048.0
    inference_dtype: str = "float32"
    jit_compile: bool = False

    def __post_init__(self):
        if self.inference_dtype not in INFERENCE_DTYPES:
            raise ValueError(
                f"inference_dtype must be one of {INFERENCE_DTYPES}. Received: {self.inference_dtype!r}"
            )
        if self.consistency not in CONSISTENCY_MODES:
            raise ValueError(
                f"consistency must be one of {CONSISTENCY_MODES}. Received: {self.consistency!r}"
            )
        if self.refine not in REFINE_MODES:
            raise ValueError(f"refine must be one of {REFINE_MODES}. Received: {self.refine!r}")
        if self.area_ratio is not None and not 0.0 <= self.area_ratio < 1.0:
            raise ValueError(f"area_ratio must be in [0, 1). Received: {self.area_ratio}")
        if self.stack_method not in STACK_METHODS:
            raise ValueError(
                f"stack_method must be one of {STACK_METHODS}. Received: {self.stack_method!r}"
            )
        if self.stack_scoring is not None and self.stack_scoring not in STACK_SCORINGS:
            raise ValueError(
                f"stack_scoring must be one of {STACK_SCORINGS}. Received: {self.stack_scoring!r}"
            )
        if self.memory_budget_mb is not None and self.memory_budget_mb <= 0:
            raise ValueError(f"memory_budget_mb must be positive. Received: {self.memory_budget_mb}")
        band_bad = not isinstance(self.soft_band, int) or isinstance(self.soft_band, bool) or self.soft_band < 0
        if self.soft_band is not None and band_bad:
            raise ValueError(f"soft_band must be an integer >= 0. Received: {self.soft_band!r}")
        if self.halo_removal is not None and not isinstance(self.halo_removal, bool):
            raise ValueError(f"halo_removal must be True or False. Received: {self.halo_removal!r}")
        radius_bad = self.guided_radius is not None and self.guided_radius < 1
        eps_bad = self.guided_eps is not None and self.guided_eps <= 0
        if radius_bad or eps_bad or self.dilate_radius < 0:
            raise ValueError(
                "guided_radius >= 1, guided_eps > 0 and dilate_radius >= 0 are required. "
                f"Received: {self.guided_radius}, {self.guided_eps}, {self.dilate_radius}"
            )

    def with_rule(self, rule: dict) -> "FusionOptions":
        """These options with the fields left at None taken from a network's ``fusion_rule``."""
        return dataclasses.replace(
            self, **{key: value for key, value in rule.items() if getattr(self, key) is None}
        )

    @classmethod
    def from_text(cls, text: str) -> "FusionOptions":
        """Options from ``key=value,...`` (field names, as the ``mfkeras-fuse`` flags; '' gives the defaults).

        Booleans (also ``halo_removal``) read ``true``/``false``; the other fields that default
        to None read a number or a choice.
        """
        defaults, changes = cls(), {}
        types = {field.name: str(field.type) for field in dataclasses.fields(cls)}
        for item in filter(None, text.split(",")):
            key, separator, value = item.partition("=")
            if not separator or key not in {field.name for field in dataclasses.fields(cls)}:
                raise ValueError(f"Expected key=value with a FusionOptions field as key. Received: {item!r}")
            current = getattr(defaults, key)
            if types[key].startswith("bool"):
                if value.lower() not in ("true", "false"):
                    raise ValueError(f"{key} takes true or false. Received: {value!r}")
                changes[key] = value.lower() == "true"
            elif current is not None:
                changes[key] = type(current)(value)
            else:
                changes[key] = _number_or_text(value)
        return cls(**changes)


def _number_or_text(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
