"""Parity of the exported artefacts with the Python pipeline, pair by pair.

The SavedModel's ``fuse`` signature is compared with :func:`mfkeras.fusion.fuse`; each
TFLite score model is run through the same NumPy steps after scoring
(:func:`mfkeras.fusion.pipeline.fuse_scored_pair`), so only the scores differ.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from mfkeras.deploy import saved_model, tflite
from mfkeras.fusion.options import FusionOptions
from mfkeras.fusion.pipeline import fuse, fuse_scored_pair
from mfkeras.io import images
from mfkeras.io.color import to_unit_gray
from mfkeras.network.convert import ScoreNetwork


def compare_with_pipeline(
    saved_model_dir: str,
    network: ScoreNetwork,
    options: FusionOptions,
    pairs: Sequence[tuple],
    tflite_files: Optional[dict] = None,
    tflite_dir: Optional[str] = None,
    on_pair: Optional[Callable[[dict], None]] = None,
) -> dict:
    """Compares a written SavedModel (and TFLite files) with the Python pipeline.

    Args:
        saved_model_dir: the SavedModel, loaded back from disk.
        network: the score network it was exported from.
        options: the fusion options it was exported with; the reference runs them in float32.
        pairs: ``(name, path_a, path_b)`` triples.
        tflite_files: ``{file name: {"tile_size": T or None, ...}}`` under ``tflite_dir``.
        tflite_dir: the folder of ``tflite_files``.
        on_pair: called with each pair's row as soon as it is measured.

    Returns:
        ``{"summary": ..., "pairs": [row, ...]}``.
    """
    tflite_files = tflite_files or {}
    served = tf.saved_model.load(saved_model_dir).signatures["fuse"]
    # Near-exact scores: TFLite and TensorFlow float32 each round differently.
    exact = saved_model.score_function(network, "float64") if tflite_files else None
    interpreters = {
        name: (info["tile_size"], tflite.make_interpreter(Path(tflite_dir, name).read_bytes()))
        for name, info in tflite_files.items()
    }
    reference_options = dataclasses.replace(options, inference_dtype="float32", jit_compile=False)
    rows = []
    for name, path_a, path_b in pairs:
        a, b = images.read_image(path_a), images.read_image(path_b)
        row, reference = _saved_model_row(name, a, b, served, network, reference_options)
        grays = tuple(to_unit_gray(x) for x in (a, b))
        if exact is not None:
            exact_scores = exact(*(g[None, ..., None] for g in grays)).numpy()[0, ..., 0]
            row["keras_float32_vs_float64"] = float(np.abs(reference.score_map - exact_scores).max())
        for file_name, (tile_size, interpreter) in interpreters.items():
            scores = tflite.run_score_map(interpreter, network, *grays, tile_size)
            result = fuse_scored_pair(a, b, grays, scores, network, options)
            row["tflite"][file_name] = _tflite_figures(result, reference, exact_scores)
        rows.append(row)
        if on_pair is not None:
            on_pair(row)
    return {"summary": summarize(rows, list(tflite_files)), "pairs": rows}


def _saved_model_row(name, a, b, served, network, reference_options) -> tuple:
    """Runs the pipeline and the served signature on one pair; returns (row, reference)."""
    start = time.perf_counter()
    reference = fuse([a, b], network, reference_options)
    python_s = time.perf_counter() - start
    start = time.perf_counter()
    out = {k: v.numpy() for k, v in served(image_a=tf.constant(a), image_b=tf.constant(b)).items()}
    served_s = time.perf_counter() - start
    diff = np.abs(out["fused"].astype(np.int32) - reference.fused.astype(np.int32))
    row = {
        "pair": name,
        "decision_agreement": float(np.mean(out["decision_map"].astype(bool) == reference.decision)),
        "fused_mean_abs_diff": float(diff.mean()),
        "fused_max_abs_diff": int(diff.max()),
        "focus_map_max_abs_diff": float(np.abs(out["focus_map"] - reference.focus_map).max()),
        "python_s": python_s,
        "served_s": served_s,
        "tflite": {},
    }
    return row, reference


def _tflite_figures(result, reference, exact_scores) -> dict:
    """How a TFLite-scored fusion differs from the float32 reference and float64 scores."""
    fused_diff = np.abs(result.fused.astype(np.int32) - reference.fused.astype(np.int32))
    return {
        "fused_mean_abs_diff": float(fused_diff.mean()),
        "score_max_abs_diff": float(np.abs(result.score_map - reference.score_map).max()),
        "score_max_abs_diff_vs_float64": float(np.abs(result.score_map - exact_scores).max()),
        "initial_decision_agreement": float(
            np.mean(result.initial_decision == reference.initial_decision)
        ),
        "decision_agreement": float(np.mean(result.decision == reference.decision)),
    }


def summarize(rows: Sequence[dict], tflite_names: Sequence[str]) -> dict:
    """The worst and mean figures over the pairs, for the SavedModel and each TFLite file."""
    summary = {
        "pairs": len(rows),
        "min_decision_agreement": min(r["decision_agreement"] for r in rows),
        "mean_decision_agreement": float(np.mean([r["decision_agreement"] for r in rows])),
        "max_fused_mean_abs_diff": max(r["fused_mean_abs_diff"] for r in rows),
        "mean_fused_mean_abs_diff": float(np.mean([r["fused_mean_abs_diff"] for r in rows])),
        "tflite": {},
    }
    if tflite_names:
        summary["keras_float32_vs_float64"] = max(r["keras_float32_vs_float64"] for r in rows)
    for file_name in tflite_names:
        entries = [r["tflite"][file_name] for r in rows]
        summary["tflite"][file_name] = {
            "max_score_abs_diff": max(e["score_max_abs_diff"] for e in entries),
            "max_score_abs_diff_vs_float64": max(e["score_max_abs_diff_vs_float64"] for e in entries),
            "min_initial_decision_agreement": min(e["initial_decision_agreement"] for e in entries),
            "min_decision_agreement": min(e["decision_agreement"] for e in entries),
            "mean_initial_decision_agreement": float(
                np.mean([e["initial_decision_agreement"] for e in entries])
            ),
            "max_fused_mean_abs_diff": max(e["fused_mean_abs_diff"] for e in entries),
        }
    return summary


def compare_backends(pairs: Sequence[tuple], keras_model, litert_network, options=None) -> dict:
    """Compares the LiteRT backend with the Keras backend, pair by pair.

    Args:
        pairs: ``(name, path_a, path_b)`` triples.
        keras_model: the Keras patch model.
        litert_network: its :class:`mfkeras.fusion.litert.LiteRTNetwork`.
        options: the fusion options of both runs (default ``FusionOptions()``).

    Returns:
        ``{"summary": {...}, "pairs": [row, ...]}``: per pair the largest score difference,
        the decision agreement, the fused mean absolute difference and both run times.
    """
    options = options or FusionOptions()
    rows = []
    for name, path_a, path_b in pairs:
        sources = [images.read_image(path_a), images.read_image(path_b)]
        results, seconds = {}, {}
        for backend, model in (("keras", keras_model), ("litert", litert_network)):
            start = time.perf_counter()
            results[backend] = fuse(sources, model, options)
            seconds[backend] = time.perf_counter() - start
        keras_result, lite_result = results["keras"], results["litert"]
        rows.append({
            "pair": name,
            "score_max_abs_diff": float(np.abs(lite_result.score_map - keras_result.score_map).max()),
            "decision_agreement": float(np.mean(lite_result.decision == keras_result.decision)),
            "fused_mean_abs_diff": float(
                np.abs(lite_result.fused.astype(np.int32) - keras_result.fused.astype(np.int32)).mean()
            ),
            "keras_s": seconds["keras"],
            "litert_s": seconds["litert"],
        })
    summary = {
        "pairs": len(rows),
        "max_score_abs_diff": max(r["score_max_abs_diff"] for r in rows),
        "min_decision_agreement": min(r["decision_agreement"] for r in rows),
        "mean_decision_agreement": float(np.mean([r["decision_agreement"] for r in rows])),
        "max_fused_mean_abs_diff": max(r["fused_mean_abs_diff"] for r in rows),
        "median_keras_s": float(np.median([r["keras_s"] for r in rows])),
        "median_litert_s": float(np.median([r["litert_s"] for r in rows])),
    }
    return {"summary": summary, "pairs": rows}
