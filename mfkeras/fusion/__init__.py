"""Fusion: score maps, decision maps, refinement and blending; loaded lazily.

``options`` imports no TensorFlow: ``from mfkeras.fusion import FusionOptions``
stays cheap, and so do the choices the command line offers.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=[
        "align", "blending", "decision", "halo", "inference", "litert", "options", "pipeline", "result",
        "row_blocks", "scoring",
    ],
    submod_attrs={
        "options": [
            "FusionOptions",
            "CONSISTENCY_MODES",
            "REFINE_MODES",
            "STACK_METHODS",
            "STACK_SCORINGS",
            "INFERENCE_DTYPES",
            "QUANTIZATIONS",
            "ALIGN_MODELS",
            "ALIGN_METHODS",
            "BACKENDS",
        ],
        "result": ["FusionResult"],
        "litert": ["LiteRTNetwork"],
        "pipeline": ["fuse", "fuse_scored_pair", "as_score_network", "to_gray", "to_unit_range", "validate_images"],
        "decision": [
            "focus_map",
            "remove_small_regions",
            "keep_largest_regions",
            "guided_filter",
            "verify_consistency",
            "verify_label_consistency",
            "refine_decision",
            "refine_weights",
            "decision_boundary_band",
            "soften_boundary",
            "soften_stack_boundary",
            "first_argmax",
        ],
        "blending": ["blend", "blend_stack", "select_by_labels"],
    },
)
