"""Pictures of a fusion: the maps as PNG files and the seed's Fig. 3 layout."""

from __future__ import annotations

import io
import os

import cv2
import numpy as np

from mfkeras import images
from mfkeras.fusion import FusionResult, blend


def map_to_uint8(values: np.ndarray, shape: tuple | None = None) -> np.ndarray:
    """Scales a [0, 1] map to uint8, optionally resized (nearest) to ``shape``."""
    scaled = np.clip(np.asarray(values, np.float64), 0.0, 1.0) * 255.0
    out = np.floor(scaled + 0.5).astype(np.uint8)
    if shape is not None and out.shape != tuple(shape):
        out = cv2.resize(out, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return out


def map_images(result: FusionResult) -> dict:
    """The maps of a fusion as uint8 images keyed by file stem."""
    shape = result.focus_map.shape
    return {
        "score_map": map_to_uint8(result.score_map, shape),
        "focus_map": map_to_uint8(result.focus_map),
        "initial_decision": map_to_uint8(result.initial_decision),
        "decision": map_to_uint8(result.decision),
        "final_decision": map_to_uint8(result.final_decision),
    }


def save_maps(result: FusionResult, directory: str) -> list:
    """Writes the maps of a fusion as PNG files into an existing directory.

    Returns:
        The written paths.
    """
    written = []
    for stem, picture in map_images(result).items():
        path = os.path.join(directory, f"{stem}.png")
        images.write_image(path, picture)
        written.append(path)
    return written


def figure_png(result: FusionResult, first: np.ndarray, second: np.ndarray) -> bytes:
    """Renders the seed's Fig. 3 (initial and final decision maps and fused images) as PNG.

    Args:
        result: a two-image fusion result.
        first: the first source image (its weights are the decision maps).
        second: the second source image.

    Returns:
        The PNG file contents.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    initial_fused = blend(first, second, result.initial_decision.astype(np.float64))
    panels = [
        ("Initial decision map", result.initial_decision, "gray"),
        ("Initial fused image", initial_fused, None),
        ("Final decision map", np.clip(result.final_decision, 0, 1), "gray"),
        ("Fused image", result.fused, None),
    ]
    figure, axes = plt.subplots(2, 2, figsize=(8, 8))
    for axis, (title, picture, cmap) in zip(axes.ravel(), panels):
        if cmap is None and picture.ndim == 2:
            cmap = "gray"
        if np.issubdtype(picture.dtype, np.integer):
            picture = picture / np.iinfo(picture.dtype).max
        axis.imshow(picture, cmap=cmap, vmin=0, vmax=1)
        axis.set_title(title)
        axis.axis("off")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
