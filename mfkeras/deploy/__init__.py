"""Deployable artefacts: the SavedModel ``fuse`` signature and LiteRT (TFLite) score networks."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=["saved_model", "tflite"],
    submod_attrs={
        "saved_model": ["FusionModule", "export_saved_model", "score_function"],
    },
)
