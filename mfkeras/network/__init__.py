"""The Siamese patch classifier, its all-convolutional rebuild, the per-pixel decision network,
precision, released weights and shipped models; loaded lazily (``config`` and ``zoo`` import no TensorFlow)."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=[
        "cache", "config", "convert", "decision_config", "decision_model", "geometry", "model",
        "precision", "released", "zoo",
    ],
    submod_attrs={
        "config": ["ModelConfig", "PRESETS", "POOL", "get_preset"],
        "model": ["build_branch", "build_patch_model", "config_from_model"],
        "convert": [
            "ScoreNetwork",
            "StackHead",
            "TapSumConv2D",
            "as_score_network",
            "score_map_flops",
            "to_fully_convolutional",
            "to_stack_head",
        ],
        "decision_config": ["DECISION_PRESETS", "DecisionConfig", "get_decision_preset"],
        "decision_model": ["DecisionNetwork", "build_decision_model", "is_decision_model"],
        "precision": ["cast_network", "compute_network"],
        "released": ["liu2017_keras_weights", "load_liu2017_mat", "read_liu2017_mat"],
        "zoo": [
            "ModelNotFoundError",
            "available_models",
            "litert_dir",
            "load_litert_network",
            "load_patch_model",
            "model_card",
            "resolve_model_path",
        ],
    },
)
