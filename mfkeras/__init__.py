"""mfkeras: CNN-based multi-focus image fusion with Keras.

The public API, loaded on first use so that ``import mfkeras`` (and
``from mfkeras import FusionOptions``) does not import TensorFlow::

    import mfkeras
    model = mfkeras.load_model()            # the shipped default
    result = mfkeras.fuse([mfkeras.read_image("a.jpg"), mfkeras.read_image("b.jpg")], model)
    mfkeras.write_image("fused.png", result.fused)
"""

import importlib

__version__ = "0.2.0"

# Modules and the public names taken from them as they are.
_PUBLIC_FROM = {
    "mfkeras.fusion.pipeline": ("fuse",),
    "mfkeras.fusion.options": ("FusionOptions",),
    "mfkeras.fusion.result": ("FusionResult",),
    "mfkeras.io.images": ("read_image", "read_images", "write_image", "ImageError"),
    "mfkeras.network.config": ("ModelConfig", "get_preset"),
    "mfkeras.network.zoo": ("available_models",),
}
_PUBLIC = {name: (module, name) for module, names in _PUBLIC_FROM.items() for name in names}
_PUBLIC["load_model"] = ("mfkeras.network.zoo", "load_patch_model")
_PUBLIC["presets"] = ("mfkeras.network.config", "PRESETS")
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
