"""Scoring fusion methods on a folder of source pairs: tables, bar chart and gallery.

The flow of `mfkeras-evaluate`: `find_pairs` lists the source pairs of a dataset folder
(reporting broken ones instead of failing), `resolve_method` turns method specs into
fusion callables, `find_precomputed` finds fused images of other methods stored as
``<pair>_<METHOD>.*``, and `evaluate` fuses and scores every (pair, method) with
`mfkeras.evaluation.metrics.evaluate_all`. `summarise`, `markdown_table`, `rank`, `summary_markdown`,
`bar_chart_png` and `gallery_png` turn the rows into the seed's Table 1 and Figs. 5-7.

A pair or method that fails never stops a run: it becomes a row whose ``error`` column says
why, with NaN metrics, and is left out of the means.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import io
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

import cv2
import numpy as np

from mfkeras.io import images
from mfkeras.evaluation import metrics

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# The two naming styles of source pairs, as (first, second) suffix tags.
SOURCE_TAGS = (("A", "B"), ("1", "2"))
# Specs of the transform-domain comparators: name -> (module, function).
TRANSFORM_METHODS = {
    "dwt": ("mfkeras.baselines.wavelets", "fuse_dwt"),
    "lpt": ("mfkeras.baselines.wavelets", "fuse_lpt"),
    "dtcwt": ("mfkeras.baselines.wavelets", "fuse_dtcwt"),
    "nsct": ("mfkeras.baselines.nsct", "fuse_nsct"),
    "nsst": ("mfkeras.baselines.nsst", "fuse_nsst"),
    "pcnn": ("mfkeras.baselines.pcnn", "fuse_pcnn"),
}
MODEL_PREFIX = "mfkeras:"
LIU_MAT_PREFIX = "liu_mat:"
LIU_MAT_LABEL = "liu2017_released"
TIME_COLUMN = "time_s"
# The text columns of a row; the others are floats.
TEXT_COLUMNS = ("pair", "method", "error")

_SOURCE_PATTERN = re.compile(r"^(?P<name>.+)_(?P<tag>[AB12])$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Pair:
    """A source pair of a dataset folder.

    Attributes:
        name: the pair name, the file stem without ``_A``/``_B`` (or ``_1``/``_2``).
        paths: the two source files in order; fewer when a partner is missing.
        skip_reason: why the pair cannot be used, or None when it can.
    """

    name: str
    paths: tuple
    skip_reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.skip_reason is None


@dataclasses.dataclass(frozen=True)
class Method:
    """A fusion method to evaluate.

    Attributes:
        name: the label used in tables and file names, e.g. ``"DWT"`` or ``"liu2017_released"``.
        fuse: called as ``fuse([a, b])``; returns the fused image (same shape and dtype).
        spec: the spec it was resolved from.
    """

    name: str
    fuse: Callable[[Sequence[np.ndarray]], np.ndarray]
    spec: str


def _image_files(folder: str) -> list:
    if not os.path.isdir(folder):
        raise images.ImageError(f"Not a directory: {folder}")
    return sorted(
        entry.path
        for entry in os.scandir(folder)
        if entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
    )


def find_pairs(folder: str) -> list:
    """Lists the source pairs of a folder (``<name>_A.*``/``<name>_B.*`` or ``_1``/``_2``).

    Every source is read, so a pair with a missing partner, an unreadable file, sizes that
    differ or gray mixed with colour is returned with a ``skip_reason`` instead of raising.

    Args:
        folder: the dataset folder.

    Returns:
        The pairs sorted by name, usable and skipped ones alike.
    """
    found = {}
    for path in _image_files(folder):
        match = _SOURCE_PATTERN.match(Path(path).stem)
        if match:
            found.setdefault(match["name"], {}).setdefault(match["tag"].upper(), []).append(path)
    if not found:
        raise images.ImageError(
            f"No source pairs in {folder}: expected files named <name>_A.<ext> and <name>_B.<ext> "
            f"(or <name>_1 / <name>_2) with one of the extensions {', '.join(IMAGE_EXTENSIONS)}."
        )
    return [_make_pair(name, tags) for name, tags in sorted(found.items())]


def _make_pair(name: str, tags: dict) -> Pair:
    listed = sorted(p for paths in tags.values() for p in paths)
    duplicated = [paths for paths in tags.values() if len(paths) > 1]
    if duplicated:
        return Pair(name, tuple(listed), f"ambiguous sources: {', '.join(duplicated[0])}")
    styles = [style for style in SOURCE_TAGS if set(style) & set(tags)]
    if len(styles) > 1:
        return Pair(name, tuple(listed), f"mixes _A/_B and _1/_2 naming: {', '.join(listed)}")
    first, second = styles[0]
    if first not in tags or second not in tags:
        present, absent = (first, second) if first in tags else (second, first)
        return Pair(name, tuple(listed), f"missing partner: no {name}_{absent}.* beside {tags[present][0]}")
    paths = (tags[first][0], tags[second][0])
    try:
        sources = [images.read_image(path) for path in paths]
    except images.ImageError as error:
        return Pair(name, paths, f"unreadable source: {error}")
    a, b = sources
    if a.shape != b.shape or a.dtype != b.dtype:
        return Pair(
            name, paths, f"sources differ: {paths[0]} is {a.shape} {a.dtype}, {paths[1]} is {b.shape} {b.dtype}"
        )
    return Pair(name, paths)


def find_precomputed(folder: str, pair_names: Iterable[str]) -> dict:
    """Finds fused images of other methods named ``<pair>_<METHOD>.*``.

    The pair names are known, so the method is what follows the longest pair name that
    prefixes the file stem; method names may contain underscores (``DCT_Corr``). Sources
    (``<pair>_A`` etc.) and files of unknown pairs are ignored.

    Args:
        folder: the folder of fused images.
        pair_names: the pair names of the dataset.

    Returns:
        ``{method: {pair: path}}``, methods in sorted order.
    """
    names = sorted(set(pair_names), key=len, reverse=True)
    source_tags = {tag for style in SOURCE_TAGS for tag in style}
    found = {}
    for path in _image_files(folder):
        stem = Path(path).stem
        pair = next((n for n in names if stem.startswith(n + "_") and len(stem) > len(n) + 1), None)
        if pair is None:
            continue
        method = stem[len(pair) + 1 :]
        if method.upper() in source_tags:
            continue
        by_pair = found.setdefault(method, {})
        if pair in by_pair:
            raise images.ImageError(
                f"Two fused images of method {method!r} for pair {pair!r}: {by_pair[pair]} and {path}"
            )
        by_pair[pair] = path
    return dict(sorted(found.items()))


def validate_method_spec(spec: str) -> str:
    """Checks a method spec without loading anything, and returns the method's label.

    Args:
        spec: ``dwt``, ``lpt``, ``dtcwt``, ``nsct``, ``nsst``, ``pcnn``,
            ``mfkeras:<shipped name or .keras path>`` or ``liu_mat:<path to cnnmodel.mat>``.

    Returns:
        The label used in tables, e.g. ``"DWT"``, ``"mfkeras_li2018"``, ``"liu2017_released"``.
    """
    from mfkeras.network import zoo

    text = str(spec).strip()
    if text.lower() in TRANSFORM_METHODS:
        return text.upper()
    if text.startswith(MODEL_PREFIX) and text[len(MODEL_PREFIX) :]:
        path = zoo.resolve_model_path(text[len(MODEL_PREFIX) :])
        stem = path.parent.name if path.name == zoo.MODEL_FILE else path.stem
        return f"mfkeras_{stem}"
    if text.startswith(LIU_MAT_PREFIX) and text[len(LIU_MAT_PREFIX) :]:
        path = text[len(LIU_MAT_PREFIX) :]
        if not path.lower().endswith(".mat"):
            raise ValueError(f"liu_mat: needs the path of the released cnnmodel.mat. Received: {spec!r}")
        zoo.resolve_model_path(path)
        return LIU_MAT_LABEL
    raise ValueError(
        f"Unknown method {spec!r}. Expected one of {', '.join(TRANSFORM_METHODS)}, "
        f"{MODEL_PREFIX}<shipped model or .keras file> or {LIU_MAT_PREFIX}<path to cnnmodel.mat>."
    )


def resolve_method(spec: str) -> Method:
    """Turns a method spec into a fusion callable (loading the model for CNN methods).

    Args:
        spec: as for `validate_method_spec`.

    Returns:
        The `Method`. Models are loaded and traced once here, so that fusion times measure
        fusion alone.
    """
    label = validate_method_spec(spec)
    text = str(spec).strip()
    if text.lower() in TRANSFORM_METHODS:
        module_name, function_name = TRANSFORM_METHODS[text.lower()]
        try:
            function = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as error:
            raise ValueError(
                f"Method {text!r} needs {module_name}.{function_name}, which is not available: {error}"
            ) from error
    else:
        from mfkeras import fusion
        from mfkeras.network import zoo

        model = zoo.load_patch_model(text.split(":", 1)[1])

        def function(sources):
            return fusion.fuse(sources, model).fused

    # One call on a tiny pair, outside any timing: lazy imports, and the model's score
    # network is converted and traced once (its signature takes any size).
    rng = np.random.default_rng(0)
    function([rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(2)])
    return Method(label, function, text)


def jpeg_roundtrip(image: np.ndarray, quality: int = 75) -> np.ndarray:
    """Encodes an image as baseline JPEG (4:2:0 chroma subsampling) and decodes it again.

    This is how the published Lytro results were stored; scoring our outputs the same way
    compares like with like.

    Args:
        image: uint8 gray (H, W) or RGB (H, W, 3).
        quality: JPEG quality, 1 to 100.

    Returns:
        The decoded image, same shape and dtype.
    """
    return _decode(jpeg_bytes(image, quality), np.asarray(image))


def jpeg_bytes(image: np.ndarray, quality: int = 75) -> bytes:
    """Encodes an RGB or gray uint8 image as a JPEG file with 4:2:0 chroma subsampling.

    Args:
        image: uint8 gray (H, W) or RGB (H, W, 3).
        quality: JPEG quality, 1 to 100.

    Returns:
        The JPEG file contents.
    """
    array = np.asarray(image)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(
            f"JPEG needs a uint8 image of shape (H, W) or (H, W, 3). Received: dtype={array.dtype}, shape={array.shape}"
        )
    if not (isinstance(quality, (int, np.integer)) and 1 <= quality <= 100):
        raise ValueError(f"JPEG quality must be an integer from 1 to 100. Received: quality={quality!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    # Explicit, so the protocol does not depend on OpenCV's default.
    if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
    bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    ok, encoded = cv2.imencode(".jpg", bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {array.shape} as JPEG.")
    return encoded.tobytes()


def _decode(payload: bytes, like: np.ndarray) -> np.ndarray:
    flag = cv2.IMREAD_COLOR if like.ndim == 3 else cv2.IMREAD_GRAYSCALE
    decoded = cv2.imdecode(np.frombuffer(payload, np.uint8), flag)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB) if like.ndim == 3 else decoded


def evaluate(
    pairs: Sequence[Pair],
    methods: Sequence[Method],
    precomputed: Optional[Mapping[str, Mapping[str, str]]] = None,
    metric_names: Optional[Sequence[str]] = None,
    jpeg_quality: Optional[int] = None,
    progress: bool = True,
    on_fused: Optional[Callable[[Pair, str, np.ndarray], None]] = None,
) -> list:
    """Fuses every pair with every method and scores it, plus precomputed fused images.

    Args:
        pairs: from `find_pairs`; skipped pairs become one error row each.
        methods: from `resolve_method`.
        precomputed: ``{method: {pair: path}}`` from `find_precomputed`, scored as stored.
        metric_names: columns of `mfkeras.evaluation.metrics.METRICS`; all when None.
        jpeg_quality: if set, our methods' outputs are JPEG-encoded at this quality (4:2:0)
            before scoring, as the published results were; precomputed images are not.
        progress: show a tqdm progress bar over the pairs.
        on_fused: called as ``on_fused(pair, method_name, fused)`` with each image scored
            (after the JPEG round trip), e.g. to save it or keep it for a gallery.

    Returns:
        One dict per (pair, method): ``pair``, ``method``, ``time_s`` (fusion seconds; NaN
        for precomputed images), ``error`` ("" when fine) and one float per metric. A pair
        that cannot be used gives one row with an empty ``method``.
    """
    metric_names = _check_metric_names(metric_names)
    precomputed = dict(precomputed or {})
    labels = [m.name for m in methods] + list(precomputed)
    clashes = sorted({label for label in labels if labels.count(label) > 1})
    if clashes:
        raise ValueError(f"Method names must be unique across methods and precomputed folders. Received twice: {clashes}")
    if jpeg_quality is not None:
        jpeg_bytes(np.zeros((8, 8), np.uint8), jpeg_quality)  # Validates the quality up front.
    rows = []
    iterator = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc="pairs", unit="pair")
    for pair in iterator:
        if progress:
            iterator.set_postfix_str(pair.name)
        if not pair.ok:
            warnings.warn(f"Skipping pair {pair.name}: {pair.skip_reason}", stacklevel=2)
            rows.append(_row(pair.name, "", math.nan, pair.skip_reason, metric_names))
            continue
        try:
            sources = [images.read_image(path) for path in pair.paths]
        except images.ImageError as error:
            warnings.warn(f"Skipping pair {pair.name}: {error}", stacklevel=2)
            rows.append(_row(pair.name, "", math.nan, str(error), metric_names))
            continue
        for method in methods:
            start = time.perf_counter()
            try:
                fused = method.fuse(sources)
                seconds = time.perf_counter() - start
                if jpeg_quality is not None:
                    fused = jpeg_roundtrip(fused, jpeg_quality)
            except Exception as error:  # One failing method must not end a long run.
                rows.append(_failed(pair.name, method.name, error, metric_names))
                continue
            rows.append(_score(pair.name, method.name, sources, fused, seconds, metric_names))
            if on_fused is not None and not rows[-1]["error"]:
                on_fused(pair, method.name, fused)
        for method, by_pair in precomputed.items():
            if pair.name not in by_pair:
                continue
            try:
                fused = images.read_image(by_pair[pair.name])
            except images.ImageError as error:
                rows.append(_failed(pair.name, method, error, metric_names))
                continue
            rows.append(_score(pair.name, method, sources, fused, math.nan, metric_names))
            if on_fused is not None and not rows[-1]["error"]:
                on_fused(pair, method, fused)
    return rows


def _check_metric_names(metric_names) -> list:
    if metric_names is None:
        return list(metrics.METRICS)
    names = [metric_names] if isinstance(metric_names, str) else list(metric_names)
    unknown = [name for name in names if name not in metrics.METRICS]
    if unknown or not names:
        raise ValueError(f"Unknown metric names {unknown}; expected some of {list(metrics.METRICS)}. Received: {names}")
    return names


def _row(pair: str, method: str, seconds: float, error: str, metric_names, values=None) -> dict:
    values = values or {}
    return {
        "pair": pair,
        "method": method,
        TIME_COLUMN: seconds,
        "error": error or "",
        **{name: float(values.get(name, math.nan)) for name in metric_names},
    }


def _failed(pair: str, method: str, error: Exception, metric_names) -> dict:
    message = f"{type(error).__name__}: {error}"
    warnings.warn(f"{pair} / {method} failed: {message}", stacklevel=3)
    return _row(pair, method, math.nan, message, metric_names)


def _score(pair: str, method: str, sources, fused, seconds: float, metric_names) -> dict:
    try:
        if np.shape(fused)[:2] != np.shape(sources[0])[:2]:
            raise ValueError(f"fused image is {np.shape(fused)}, the sources are {np.shape(sources[0])}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", metrics.UndefinedMetricWarning)
            values = metrics.evaluate_all(sources[0], sources[1], fused, metric_names)
    except ValueError as error:
        return _failed(pair, method, error, metric_names)
    for warning in caught:
        # Repeated with the pair and method, so the NaN can be traced in the CSV.
        warnings.warn(f"{pair} / {method}: {warning.message}", warning.category, stacklevel=3)
    return _row(pair, method, seconds, "", metric_names, values)


def rows_csv(rows: Sequence[Mapping]) -> bytes:
    """The rows of `evaluate` as CSV (floats with full precision, NaN as ``nan``)."""
    if not rows:
        return b""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue().encode()


def read_rows_csv(path: str) -> list:
    """Reads a CSV written by `rows_csv` back into rows (floats parsed)."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        for key, value in row.items():
            if key not in TEXT_COLUMNS:
                row[key] = float(value)
    return rows


def errors(rows: Sequence[Mapping]) -> list:
    """The rows of `evaluate` that failed, as ``(pair, method, reason)``."""
    return [(row["pair"], row["method"], row["error"]) for row in rows if row["error"]]


def summarise(rows: Sequence[Mapping]) -> dict:
    """Means over pairs of every method, failed rows left out.

    A metric that is NaN for some pairs is averaged over the others.

    Args:
        rows: from `evaluate`.

    Returns:
        ``{method: {"pairs": count, "time_s": mean, <metric>: mean, ...}}`` in the order the
        methods first appear.
    """
    grouped = {}
    for row in rows:
        if not row["error"]:
            grouped.setdefault(row["method"], []).append(row)
    means = {}
    for method, method_rows in grouped.items():
        columns = [k for k in method_rows[0] if k not in TEXT_COLUMNS]
        summary = {"pairs": len(method_rows)}
        for column in columns:
            values = np.array([row[column] for row in method_rows], dtype=np.float64)
            summary[column] = float(np.mean(values[~np.isnan(values)])) if (~np.isnan(values)).any() else math.nan
        means[method] = summary
    return means


def higher_is_better(column: str) -> bool:
    """The direction of a metric column (fusion time is lower-is-better)."""
    if column == TIME_COLUMN:
        return False
    if column not in metrics.METRICS:
        raise ValueError(f"Unknown column {column!r}; expected {TIME_COLUMN} or one of {list(metrics.METRICS)}")
    return metrics.METRICS[column][0].higher_is_better


def best_methods(means: Mapping[str, Mapping[str, float]], column: str, decimals: int = 4) -> set:
    """The methods with the best value of a column (ties at ``decimals`` places included)."""
    values = {m: round(s[column], decimals) for m, s in means.items() if not math.isnan(s.get(column, math.nan))}
    if not values:
        return set()
    best = max(values.values()) if higher_is_better(column) else min(values.values())
    return {method for method, value in values.items() if value == best}


def markdown_table(
    means: Mapping[str, Mapping[str, float]],
    metric_names: Sequence[str],
    decimals: int = 4,
    show_time: bool = False,
) -> str:
    """A Markdown table of means, the best value of each column in bold.

    Args:
        means: from `summarise`.
        metric_names: the metric columns, in order.
        decimals: decimals shown (and compared for ties).
        show_time: add the mean fusion time in seconds (lower is better).

    Returns:
        The table; arrows in the header give each column's direction.
    """
    columns = list(metric_names) + ([TIME_COLUMN] if show_time else [])
    arrows = {column: "↑" if higher_is_better(column) else "↓" for column in columns}
    lines = [
        "| Method | " + " | ".join(f"{c} {arrows[c]}" for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    best = {column: best_methods(means, column, decimals) for column in columns}
    for method, summary in means.items():
        cells = []
        for column in columns:
            value = summary.get(column, math.nan)
            text = "–" if math.isnan(value) else f"{value:.{decimals}f}"
            cells.append(f"**{text}**" if method in best[column] else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rank(means: Mapping[str, Mapping[str, float]], metric: str) -> list:
    """Orders methods from best to worst by one metric (NaN last).

    Args:
        means: from `summarise`.
        metric: a metric column.

    Returns:
        ``[(rank, method, value), ...]``; equal values share a rank (1, 2, 2, 4, ...).
    """
    sign = -1.0 if higher_is_better(metric) else 1.0
    defined = [(m, s[metric]) for m, s in means.items() if not math.isnan(s.get(metric, math.nan))]
    ordered = sorted(defined, key=lambda item: sign * item[1])
    ranked = []
    for index, (method, value) in enumerate(ordered):
        position = ranked[-1][0] if ranked and ranked[-1][2] == value else index + 1
        ranked.append((position, method, value))
    missing = [m for m in means if m not in dict(defined)]
    return ranked + [(len(ordered) + 1, m, math.nan) for m in missing]


def ranking_markdown(
    means: Mapping[str, Mapping[str, float]],
    metric: str,
    highlight: Iterable[str] = (),
    decimals: int = 4,
) -> str:
    """A Markdown ranking table by one metric, the ``highlight`` methods in bold."""
    highlight = set(highlight)
    lines = [f"| Rank | Method | {metric} {'↑' if higher_is_better(metric) else '↓'} |", "|---:|---|---:|"]
    for position, method, value in rank(means, metric):
        name = f"**{method}**" if method in highlight else method
        lines.append(f"| {position} | {name} | {'–' if math.isnan(value) else f'{value:.{decimals}f}'} |")
    return "\n".join(lines) + "\n"


def summary_markdown(
    rows: Sequence[Mapping],
    metric_names: Sequence[str],
    title: str,
    protocol: str,
    rank_by: Sequence[str] = (),
    ours: Iterable[str] = (),
) -> str:
    """The Markdown report of a run: tables of means, rankings and skipped entries.

    Metrics that ignore the sources (EN, AG, SD, SF, EI: the seed's Table 1) and metrics
    that compare the fused image with the sources get separate tables.

    Args:
        rows: from `evaluate`.
        metric_names: the metric columns, in order.
        title: the report's heading.
        protocol: how the images were scored (e.g. lossless or JPEG), stated in every table.
        rank_by: metrics to rank the methods by.
        ours: the methods run here (bold in rankings; their fusion time is shown).

    Returns:
        The Markdown text.
    """
    ours = list(ours)
    means = summarise(rows)
    counts = sorted({summary["pairs"] for summary in means.values()})
    used = sorted({row["pair"] for row in rows if not row["error"]})
    lines = [
        f"# {title}",
        "",
        f"Protocol: {protocol}.",
        "",
        f"Means over {len(used)} pairs"
        + (f" (per method: {', '.join(map(str, counts))} pairs)" if len(counts) > 1 else "")
        + ". Best value per column in bold; ↑ higher is better, ↓ lower is better."
        + (" `time_s`: fusion seconds per pair on this machine (– for precomputed images)." if ours else ""),
        "",
    ]
    no_reference = [m for m in metric_names if not metrics.METRICS[m][0].needs_sources]
    with_sources = [m for m in metric_names if metrics.METRICS[m][0].needs_sources]
    groups = [
        ("Metrics of the fused image alone (the seed's Table 1; IE = EN)", no_reference,
         "They do not look at the sources and reward noise and ringing as much as detail."),
        ("Fusion metrics (the fused image compared with the sources)", with_sources, ""),
    ]
    groups = [group for group in groups if group[1]]
    for index, (heading, columns, note) in enumerate(groups):
        if len(groups) > 1:
            lines += [f"## {heading}", ""]
        if note:
            lines += [note, ""]
        show_time = bool(ours) and index == len(groups) - 1
        lines += [markdown_table(means, columns, show_time=show_time).rstrip("\n"), ""]
    for metric in rank_by:
        lines += [
            f"## Ranking by {metric}",
            "",
            f"Protocol: {protocol}." + (" Methods run here in bold." if ours else ""),
            "",
            ranking_markdown(means, metric, highlight=ours).rstrip("\n"),
            "",
        ]
    failures = errors(rows)
    if failures:
        lines += ["## Skipped", ""]
        lines += [f"- {pair} {method or '(pair)'}: {reason}" for pair, method, reason in failures]
        lines.append("")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _tight_layout_below_title(figure) -> None:
    # Leaves about 0.3 inch for the suptitle, whatever the figure's height.
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.3 / figure.get_figheight()))


def _png(figure) -> bytes:
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
    return _png(figure)


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
    return _png(figure)
