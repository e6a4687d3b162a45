"""Pictures of a fusion: the maps as PNG files and the seed's Fig. 3 layout."""

from __future__ import annotations

import io
import os

import cv2
import numpy as np

from mfkeras.io import images
from mfkeras.fusion.blending import blend
from mfkeras.fusion.result import FusionResult


def map_to_uint8(values: np.ndarray, shape: tuple | None = None) -> np.ndarray:
    """Scales a [0, 1] map to uint8, optionally resized (nearest) to ``shape``."""
    scaled = np.clip(np.asarray(values, np.float64), 0.0, 1.0) * 255.0
    out = np.floor(scaled + 0.5).astype(np.uint8)
    if shape is not None and out.shape != tuple(shape):
        out = cv2.resize(out, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return out


def source_index_image(source_index: np.ndarray, count: int) -> np.ndarray:
    """Colour-codes a source-index ("depth") map: frame 0 dark blue ... last frame yellow.

    Args:
        source_index: (H, W) int map of frame indices.
        count: number of frames.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    import matplotlib

    palette = matplotlib.colormaps["viridis"](np.linspace(0.0, 1.0, max(count, 2)))[:, :3]
    return np.round(palette[source_index] * 255).astype(np.uint8)


def map_images(result: FusionResult) -> dict:
    """The maps of a fusion as uint8 images keyed by file stem."""
    shape = result.source_index.shape
    count = int(result.source_index.max()) + 1 if result.focus_map.ndim == 2 else result.focus_map.shape[0]
    pictures = {"source_index": source_index_image(result.source_index, max(count, 2))}
    if result.focus_map.ndim == 3:  # a joint stack: one focus map per frame
        for index, focus in enumerate(result.focus_map):
            pictures[f"focus_map_{index:02d}"] = map_to_uint8(focus)
        return pictures
    pictures.update(
        score_map=map_to_uint8(result.score_map, shape),
        focus_map=map_to_uint8(result.focus_map),
        initial_decision=map_to_uint8(result.initial_decision),
        decision=map_to_uint8(result.decision),
        final_decision=map_to_uint8(result.final_decision),
    )
    return pictures


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


def figure_png(result: FusionResult, sources: list) -> bytes:
    """Renders the seed's Fig. 3 (initial and final decision maps and fused images) as PNG.

    Args:
        result: a fusion result.
        sources: the images that were fused, in order.

    Returns:
        The PNG file contents.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if result.focus_map.ndim == 3:  # joint stack: label maps instead of binary maps
        count = len(sources)
        initial_fused = np.choose(result.initial_decision[..., None] if sources[0].ndim == 3
                                  else result.initial_decision, sources)
        panels = [
            ("Initial source index", source_index_image(result.initial_decision, count), None),
            ("Initial fused image", initial_fused, None),
            ("Final source index", source_index_image(result.decision, count), None),
            ("Fused image", result.fused, None),
        ]
    else:
        first = result.steps[-2].fused if result.steps else sources[0]
        initial_fused = blend(first, sources[-1], result.initial_decision.astype(np.float64))
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
