"""Pictures of fusions and evaluations, as PNG files.

The maps of one fusion and the seed's Fig. 3 layout (`map_images`, `save_maps`,
`figure_png`); the bar chart of an evaluation's means (Fig. 7, `bar_chart_png`) and the
gallery of fused images with a magnified inset (Figs. 5-6, `gallery_png`).
"""

from __future__ import annotations

import io
import math
import os
from typing import Iterable, Mapping, Optional, Sequence

import cv2
import numpy as np

from mfkeras.io import images
from mfkeras.evaluation import metrics
from mfkeras.evaluation.pairs import Pair
from mfkeras.evaluation.report import best_methods, higher_is_better
from mfkeras.fusion.blending import blend, select_by_labels
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
    plt = _pyplot()
    if result.focus_map.ndim == 3:  # joint stack: label maps instead of binary maps
        count = len(sources)
        initial_fused = select_by_labels(result.initial_decision, sources)
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
    return png_bytes(figure)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _tight_layout_below_title(figure) -> None:
    # Leaves about 0.3 inch for the suptitle, whatever the figure's height.
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.3 / figure.get_figheight()))



def png_bytes(figure) -> bytes:
    """Renders a matplotlib figure as PNG (100 dpi), closes it and returns the file contents."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    _pyplot().close(figure)
    return buffer.getvalue()


def bar_chart_png(
    means: Mapping[str, Mapping[str, float]],
    metric_names: Sequence[str],
    highlight: Iterable[str] = (),
) -> bytes:
    """The seed's Fig. 7: mean score of each method, one panel per metric.

    Metrics have very different scales (EN about 7, SD about 40), so each gets its own
    panel and value axis; the axis is zoomed to the values so that differences show, and
    the best bar has a black outline.

    Args:
        means: from `summarise`.
        metric_names: the metrics to plot, one panel each.
        highlight: methods drawn in a strong colour (e.g. ours); all when empty.

    Returns:
        The PNG file contents.
    """
    plt = _pyplot()
    methods = list(means)
    highlight = set(highlight) or set(methods)
    shown = [m for m in methods if m in highlight]
    palette = plt.get_cmap("tab10" if len(shown) <= 10 else "tab20")
    colours = [palette(shown.index(m) % palette.N) if m in highlight else "0.75" for m in methods]
    # Panels side by side up to about 20 inches; many methods get fewer, wider panels.
    width = max(2.5, (0.28 if len(methods) <= 10 else 0.2) * len(methods) + 1.0)
    columns = max(1, min(4, len(metric_names), int(20 // width)))
    rows = math.ceil(len(metric_names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, 3.4 * rows), squeeze=False)
    positions = np.arange(len(methods))
    for axis, metric in zip(axes.ravel(), metric_names):
        values = np.array([means[m].get(metric, math.nan) for m in methods], dtype=np.float64)
        best = best_methods(means, metric)
        axis.bar(
            positions,
            np.nan_to_num(values),
            color=colours,
            edgecolor=["black" if m in best else "none" for m in methods],
            linewidth=1.5,
        )
        finite = values[np.isfinite(values)]
        if finite.size:
            low, high = finite.min(), finite.max()
            pad = 0.15 * (high - low) if high > low else 0.05 * abs(high) or 0.05
            axis.set_ylim(low - pad, high + pad)
        direction = "higher" if higher_is_better(metric) else "lower"
        axis.set_title(f"{metric} ({direction} is better)", fontsize=10)
        axis.set_xticks(positions)
        axis.set_xticklabels(methods, rotation=90 if len(methods) > 6 else 30, ha="center" if len(methods) > 6 else "right", fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    for axis in axes.ravel()[len(metric_names) :]:
        axis.axis("off")
    figure.suptitle("Mean score per method (value axes zoomed; best outlined)", fontsize=11)
    _tight_layout_below_title(figure)
    return png_bytes(figure)


def choose_inset_box(fused_by_method: Mapping[str, np.ndarray], side: Optional[int] = None) -> tuple:
    """Picks the square where the methods' fused images disagree most.

    Args:
        fused_by_method: fused images of one pair, all the same size.
        side: the square's side; an eighth of the short image side when None.

    Returns:
        ``(top, left, height, width)``.
    """
    grays = np.stack([metrics.to_metric_gray(_as_uint8(image)) for image in fused_by_method.values()])
    height, width = grays.shape[1:]
    side = side or max(8, min(height, width) // 8)
    spread = grays.std(axis=0) if len(grays) > 1 else np.abs(cv2.Laplacian(grays[0], cv2.CV_64F))
    summed = cv2.boxFilter(spread, -1, (side, side), normalize=False, borderType=cv2.BORDER_CONSTANT)
    # boxFilter centres the window; keep windows that lie inside the image.
    half = side // 2
    valid = summed[half : height - (side - half) + 1, half : width - (side - half) + 1]
    top, left = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(top), int(left), side, side


def _as_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.integer):
        return (image.astype(np.float64) / np.iinfo(image.dtype).max * 255 + 0.5).astype(np.uint8)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def draw_inset(image: np.ndarray, box: Sequence[int], zoom: int = 3) -> np.ndarray:
    """Returns an RGB copy of ``image`` with ``box`` outlined and magnified in a corner.

    The inset goes to the corner farthest from the box.

    Args:
        image: gray or RGB image.
        box: ``(top, left, height, width)`` inside the image.
        zoom: magnification of the inset.

    Returns:
        The uint8 RGB picture.
    """
    picture = _as_uint8(image)
    picture = np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture.copy()
    height, width = picture.shape[:2]
    top, left, box_h, box_w = (int(v) for v in box)
    if top < 0 or left < 0 or box_h < 1 or box_w < 1 or top + box_h > height or left + box_w > width:
        raise ValueError(f"Inset box must lie inside the {height}x{width} image. Received: box={tuple(box)}")
    zoom = max(1, min(int(zoom), (height - 2) // box_h // 2 or 1, (width - 2) // box_w // 2 or 1))
    crop = picture[top : top + box_h, left : left + box_w]
    inset = cv2.resize(crop, (box_w * zoom, box_h * zoom), interpolation=cv2.INTER_NEAREST)
    inset_h, inset_w = inset.shape[:2]
    at_bottom = top + box_h / 2 < height / 2
    at_right = left + box_w / 2 < width / 2
    y = height - inset_h - 1 if at_bottom else 1
    x = width - inset_w - 1 if at_right else 1
    red, thickness = (255, 0, 0), max(1, min(height, width) // 200)
    cv2.rectangle(picture, (left, top), (left + box_w - 1, top + box_h - 1), red, thickness)
    picture[y : y + inset_h, x : x + inset_w] = inset
    cv2.rectangle(picture, (x, y), (x + inset_w - 1, y + inset_h - 1), red, thickness)
    return picture


def gallery_png(
    pair: Pair,
    fused_by_method: Mapping[str, np.ndarray],
    inset_box: Optional[Sequence[int]] = None,
    zoom: int = 3,
) -> bytes:
    """The seed's Figs. 5-6: the sources and each method's fused image with a magnified inset.

    Args:
        pair: the source pair (its files are read for the first two panels).
        fused_by_method: ``{method: fused image}`` of that pair.
        inset_box: ``(top, left, height, width)`` of the magnified region; None picks the
            region where the fused images differ most (`choose_inset_box`).
        zoom: magnification of the inset.

    Returns:
        The PNG file contents.
    """
    if not pair.ok:
        raise ValueError(f"Pair {pair.name} cannot be shown: {pair.skip_reason}")
    if not fused_by_method:
        raise ValueError(f"No fused images of pair {pair.name} to show.")
    panels = {f"Source {tag}": images.read_image(path) for tag, path in zip("AB", pair.paths)}
    panels.update(fused_by_method)
    if inset_box is None:
        inset_box = choose_inset_box(fused_by_method)
    plt = _pyplot()
    count = len(panels)
    columns = min(4, count)
    rows = math.ceil(count / columns)
    height, width = next(iter(panels.values())).shape[:2]
    panel_w = 3.2
    figure, axes = plt.subplots(
        rows, columns, figsize=(panel_w * columns, panel_w * height / width * rows + 0.35 * rows), squeeze=False
    )
    for axis, (title, picture) in zip(axes.ravel(), panels.items()):
        axis.imshow(draw_inset(picture, inset_box, zoom))
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    for axis in axes.ravel()[count:]:
        axis.axis("off")
    figure.suptitle(f"{pair.name}: red box magnified {zoom}x in the inset", fontsize=10)
    _tight_layout_below_title(figure)
    return png_bytes(figure)

