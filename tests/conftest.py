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


def band_by_loop(decision, band: int) -> np.ndarray:
    """Pixels whose (2 band + 1)^2 window, clipped at the image's edges, holds more than one
    value: the soft band written out pixel by pixel."""
    decision = np.asarray(decision)
    height, width = decision.shape
    out = np.zeros(decision.shape, bool)
    for row in range(height):
        for col in range(width):
            window = decision[max(0, row - band) : row + band + 1, max(0, col - band) : col + band + 1]
            out[row, col] = window.min() != window.max()
    return out


def randomize_weights(model, seed: int = 0, scale: float = 0.1):
    """Fills every variable of ``model`` (biases included) with seeded normal values."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(0.0, scale, variable.shape).astype("float32"))
    return model


# A small CFA DNG (RGGB, linear sRGB scaled by the camera's as-shot neutral) that LibRaw develops:
# shared by the RAW reader's tests and the command line's.
XYZ_TO_LINEAR_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
NEUTRAL = (0.5, 1.0, 0.8)  # the camera's response to white: red at half, blue at 0.8
BLACK, WHITE = 256, 4095
HEIGHT, WIDTH = 48, 64
# (top, left, linear sRGB) of 16x16 patches on a mid-gray (0.18) field.
PATCHES = [
    (0, 0, (0.9, 0.9, 0.9)),  # bright: above LibRaw's default adjust_maximum threshold (0.75)
    (0, 16, (0.02, 0.02, 0.02)),  # dark
    (16, 0, (0.5, 0.02, 0.02)),  # red
    (16, 16, (0.02, 0.5, 0.02)),  # green
    (16, 32, (0.02, 0.02, 0.5)),  # blue
    (32, 0, (0.18, 0.18, 0.18)),  # mid-gray
]

def _srgb(linear):
    linear = np.asarray(linear, float)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def _scene():
    scene = np.full((HEIGHT, WIDTH, 3), 0.18)
    for top, left, colour in PATCHES:
        scene[top:top + 16, left:left + 16] = colour
    return scene


def _write_dng(path, scene, orientation=1):
    camera = scene * NEUTRAL
    mosaic = np.empty(scene.shape[:2])  # RGGB
    mosaic[0::2, 0::2] = camera[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = camera[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = camera[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = camera[1::2, 1::2, 2]
    data = np.round(BLACK + mosaic * (WHITE - BLACK)).astype(np.uint16)

    def rationals(values):
        return [part for value in np.ravel(values) for part in (int(round(value * 10000)), 10000)]

    import tifffile

    tifffile.imwrite(path, data, photometric="cfa", subfiletype=0, metadata=None, extratags=[
        (271, "s", 0, "mfkeras", True), (272, "s", 0, "Test CFA", True), (274, "H", 1, orientation, True),
        (33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True),  # CFA pattern RGGB
        (50706, "B", 4, (1, 4, 0, 0), True), (50708, "s", 0, "mfkeras Test CFA", True),  # DNG version, model
        (50714, "H", 1, BLACK, True), (50717, "H", 1, WHITE, True),
        (50721, "2i", 9, rationals(XYZ_TO_LINEAR_SRGB), True), (50778, "H", 1, 21, True),  # ColorMatrix1 at D65
        (50728, "2I", 3, rationals(NEUTRAL), True),  # AsShotNeutral
    ])
    return str(path)


