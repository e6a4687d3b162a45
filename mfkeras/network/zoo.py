"""The trained models shipped in ``saved_models/`` and how to load any patch model."""

from __future__ import annotations

import json
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_DIR = PACKAGE_DIR.parent


def _data_dir(name: str) -> Path:
    """The package-data copy (installed wheel) first, else the repository's top-level folder."""
    packaged = PACKAGE_DIR / name
    return packaged if packaged.is_dir() else REPO_DIR / name


SAVED_MODELS_DIR = _data_dir("saved_models")
DEMO_DIR = _data_dir("demo")
MODEL_FILE = "patch_model.keras"
DECISION_MODEL_FILE = "decision_model.keras"
# What a shipped model's folder holds: a patch classifier or a per-pixel decision network.
MODEL_FILES = (DECISION_MODEL_FILE, MODEL_FILE)
CARD_FILE = "model_card.json"
LITERT_DIR = "litert"
# The model `mfkeras-fuse` uses when none is named; chosen on quality and speed (README).
DEFAULT_MODEL = "pixel_decision"


def demo_pair() -> tuple:
    """Paths of the bundled demo pair (demo_A.jpg, demo_B.jpg)."""
    return DEMO_DIR / "demo_A.jpg", DEMO_DIR / "demo_B.jpg"


class ModelNotFoundError(FileNotFoundError):
    """No usable model where one was asked for."""


def available_models(directory: Path = SAVED_MODELS_DIR) -> list:
    """Names of the shipped models (sub-folders holding a patch or decision model)."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if _model_file(p) is not None)


def _model_file(folder: Path) -> Path | None:
    """The model file of a shipped-model folder, or None."""
    for name in MODEL_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def model_card(name: str, directory: Path = SAVED_MODELS_DIR) -> dict:
    """Reads the model card of a shipped model."""
    path = directory / name / CARD_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"No model card at {path}")
    return json.loads(path.read_text())


def resolve_model_path(spec: str | None = None, directory: Path = SAVED_MODELS_DIR) -> Path:
    """Finds the file behind a model spec without loading it (and without TensorFlow).

    Args:
        spec: None for the default shipped model, the name of a folder in
            ``saved_models/``, a ``.keras`` file, or the authors' ``cnnmodel.mat``.
        directory: where shipped models live.

    Returns:
        The path of the ``.keras`` or ``.mat`` file.
    """
    if spec is None:
        spec = DEFAULT_MODEL
    if str(spec).lower().endswith((".mat", ".keras")):
        path = Path(spec)
    else:
        path = _model_file(directory / str(spec)) or directory / str(spec) / MODEL_FILE
    if not path.is_file():
        shipped = available_models(directory)
        raise ModelNotFoundError(
            f"No trained model at {path}. Shipped models: {shipped or 'none yet'}. Train one with "
            "`mfkeras-train` (see README), pass the path of a .keras file as spec, or load the authors' "
            "released weights with load_liu2017_mat(path)."
        )
    return path


def litert_dir(
    spec: str | None = None, directory: Path = SAVED_MODELS_DIR, quantization: str = "float32"
) -> Path | None:
    """The LiteRT bundle of a shipped model, or None if it has none.

    The float32 bundle is ``<name>/litert``, a quantized one ``<name>/litert_<quantization>``.
    Only shipped models (by name, or None for the default) have bundles; ``.keras`` and
    ``.mat`` files run on the Keras backend.
    """
    if spec is not None and str(spec).lower().endswith((".mat", ".keras")):
        return None
    folder = LITERT_DIR if quantization == "float32" else f"{LITERT_DIR}_{quantization}"
    bundle = directory / str(spec or DEFAULT_MODEL) / folder
    return bundle if (bundle / "litert.json").is_file() else None


def load_litert_network(
    spec: str | None = None, directory: Path = SAVED_MODELS_DIR, num_threads=None, quiet: bool = True,
    quantization: str = "float32",
):
    """Loads a shipped model's LiteRT bundle (no TensorFlow); see :func:`litert_dir`.

    ``num_threads`` defaults to every core; ``quiet`` keeps the runtime's log lines off stderr.
    """
    from mfkeras.fusion.litert import LiteRTNetwork

    bundle = litert_dir(spec, directory, quantization)
    if bundle is None:
        resolve_model_path(spec, directory)  # names a missing model clearly
        raise ModelNotFoundError(
            f"Model {spec or DEFAULT_MODEL!r} has no {quantization} LiteRT files "
            f"(saved_models/<name>/{LITERT_DIR}...); write them with mfkeras-export --litert_dir, "
            "or use the Keras backend."
        )
    return LiteRTNetwork(bundle, num_threads=num_threads, quiet=quiet)


def load_patch_model(spec: str | None = None, directory: Path = SAVED_MODELS_DIR):
    """Loads a model by shipped name, ``.keras`` path or released ``.mat`` path.

    A shipped model is a patch classifier or a per-pixel decision network; both fuse
    through :func:`mfkeras.fusion.fuse`.

    Args:
        spec: as for :func:`resolve_model_path`.
        directory: where shipped models live.

    Returns:
        The Keras patch model.
    """
    path = resolve_model_path(spec, directory)
    if path.suffix.lower() == ".mat":
        from mfkeras.network.released import load_liu2017_mat

        return load_liu2017_mat(path)
    import keras

    return keras.models.load_model(os.fspath(path), compile=False)
