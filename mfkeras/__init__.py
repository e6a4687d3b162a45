"""mfkeras: CNN-based multi-focus image fusion with Keras.

The public API, loaded on first use so that ``import mfkeras`` (and
``from mfkeras import FusionOptions``) does not import TensorFlow::

    import mfkeras
    model = mfkeras.load_model()            # the shipped default
    result = mfkeras.fuse([mfkeras.read_image("a.jpg"), mfkeras.read_image("b.jpg")], model)
    mfkeras.write_image("fused.png", result.fused)
"""

import importlib

__version__ = "0.1.0"

# Public name -> (module, attribute).
_PUBLIC = {
    "fuse": ("mfkeras.fusion.pipeline", "fuse"),
    "FusionOptions": ("mfkeras.fusion.options", "FusionOptions"),
    "FusionResult": ("mfkeras.fusion.result", "FusionResult"),
    "load_model": ("mfkeras.network.zoo", "load_patch_model"),
    "available_models": ("mfkeras.network.zoo", "available_models"),
    "read_image": ("mfkeras.io.images", "read_image"),
    "write_image": ("mfkeras.io.images", "write_image"),
    "ImageError": ("mfkeras.io.images", "ImageError"),
    "ModelConfig": ("mfkeras.network.config", "ModelConfig"),
    "presets": ("mfkeras.network.config", "PRESETS"),
    "get_preset": ("mfkeras.network.config", "get_preset"),
}
_SUBPACKAGES = ("baselines", "cli", "deploy", "evaluation", "fusion", "io", "network", "training")

__all__ = sorted(_PUBLIC) + list(_SUBPACKAGES)


def __getattr__(name):
    if name in _PUBLIC:
        module, attribute = _PUBLIC[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
