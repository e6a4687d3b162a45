"""Shared fixtures: the optional ../shared data folder and small random models."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
LIU_MAT = SHARED_DIR / "ref" / "liu2017" / "cnnmodel.mat"


def shared_path(*parts) -> Path:
    """Returns a path under ../shared, skipping the test when it is absent."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data folder beside the clone)")
    return path


@pytest.fixture(scope="session")
def released_model():
    """The authors' released weights as a Keras patch model (skips without ../shared)."""
    from mfkeras.network.released import load_liu2017_mat

    return load_liu2017_mat(shared_path("ref", "liu2017", "cnnmodel.mat"))


def randomize_weights(model, seed: int = 0, scale: float = 0.1):
    """Fills every variable of ``model`` (biases included) with seeded normal values."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(0.0, scale, variable.shape).astype("float32"))
    return model
