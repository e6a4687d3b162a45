"""Scoring fusion methods on the source pairs of a dataset folder.

The flow of `mfkeras-evaluate`: `mfkeras.evaluation.pairs.find_pairs` lists the source pairs
of a dataset folder, `resolve_method` turns method specs into fusion callables,
`mfkeras.evaluation.pairs.find_precomputed` finds fused images of other methods, and
`evaluate` fuses and scores every (pair, method) with
`mfkeras.evaluation.metrics.evaluate_all`, optionally after a JPEG round trip
(`jpeg_roundtrip`) as the published results were stored. `mfkeras.evaluation.report`
turns the rows into tables and `mfkeras.evaluation.figures` into the bar chart and gallery.

A pair or method that fails never stops a run: it becomes a row whose ``error`` column says
why, with NaN metrics, and is left out of the means.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Callable, Mapping, Optional, Sequence

import cv2
import numpy as np

from mfkeras.baselines.registry import BASELINES
from mfkeras.io import images
from mfkeras.evaluation import metrics
from mfkeras.evaluation.pairs import Pair
from mfkeras.evaluation.report import TIME_COLUMN

# Specs of the transform-domain comparators: name -> (module, function).
# The transform-domain baselines, by name (the one registry in mfkeras.baselines).
TRANSFORM_METHODS = BASELINES
MODEL_PREFIX = "mfkeras:"
LIU_MAT_PREFIX = "liu_mat:"
LIU_MAT_LABEL = "liu2017_released"


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
        stem = path.parent.name if path.name in zoo.MODEL_FILES else path.stem
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
        function = TRANSFORM_METHODS[text.lower()]
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
    _check_labels(methods, precomputed, jpeg_quality)
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


def _check_labels(methods, precomputed, jpeg_quality) -> None:
    labels = [m.name for m in methods] + list(precomputed)
    clashes = sorted({label for label in labels if labels.count(label) > 1})
    if clashes:
        raise ValueError(f"Method names must be unique across methods and precomputed folders. Received twice: {clashes}")
    if jpeg_quality is not None:
        jpeg_bytes(np.zeros((8, 8), np.uint8), jpeg_quality)  # Validates the quality up front.


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

