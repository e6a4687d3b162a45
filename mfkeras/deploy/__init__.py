"""Deployable artefacts: the SavedModel ``fuse`` signature, LiteRT (TFLite) score networks,
and the parity checks that compare both with the Python pipeline."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=["parity", "saved_model", "tflite"],
    submod_attrs={
        "saved_model": ["FusionModule", "export_saved_model", "score_function"],
        "parity": ["compare_backends", "compare_with_pipeline"],
    },
)
