"""Pairs per second: the input pipeline alone vs what a training step consumes, per preset.

The pipeline must deliver at least 3x what training consumes, or it stalls training.
Training is timed on one in-memory batch repeated (no input cost), and optionally
end to end with the real pipeline feeding ``fit``.

  python experiments/benchmark_input.py --image_dir=../shared/data/voc2012-train
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from absl import app, flags

from mfkeras.cli import common as cli

_IMAGE_DIR = flags.DEFINE_string(
    "image_dir", str(Path(__file__).resolve().parents[2] / "shared/data/voc2012-train"), "Folder of training images."
)
_PRESETS = flags.DEFINE_list(
    "presets", ["li2018", "liu2017", "liu2017_single_fc"], "Presets to time."
)
_PRECISIONS = flags.DEFINE_list(
    "precisions", ["float32", "mixed_bfloat16"], "Compute precisions to time training with."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Pairs per batch.")
_PIPELINE_BATCHES = flags.DEFINE_integer(
    "pipeline_batches", 300, "Batches timed from the pipeline."
)
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 40, "Training steps timed per configuration.")
_WARMUP = flags.DEFINE_integer("warmup", 10, "Untimed batches or steps first.")
_END_TO_END = flags.DEFINE_bool("end_to_end", True, "Also time fit fed by the real pipeline.")
_OUTPUT = flags.DEFINE_string(
    "output", str(Path(__file__).resolve().parents[1] / "experiments/results/benchmark_input.json"), "JSON written here."
)


def _pipeline_rate(dataset, batches: int, warmup: int) -> float:
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start, pairs = time.perf_counter(), 0
    for _ in range(batches):
        _, labels = next(iterator)
        pairs += int(labels.shape[0])
    return pairs / (time.perf_counter() - start)


def _training_rate(preset: str, precision: str, dataset, steps: int, warmup: int) -> float:
    import keras

    from mfkeras.training import trainer as training

    keras.mixed_precision.set_global_policy(precision)
    try:
        _, model = training.build_training_model(preset, training.get_recipe("default"))
        model.fit(dataset, steps_per_epoch=warmup, epochs=1, verbose=0, shuffle=False)
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        elapsed = time.perf_counter() - start
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return steps * _BATCH_SIZE.value / elapsed


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import tensorflow as tf

    from mfkeras.training import data, provenance

    pairs = data.make_datasets(
        data.ImageFolder(_IMAGE_DIR.value), data.PairConfig(), batch_size=_BATCH_SIZE.value
    )
    pipeline = _pipeline_rate(pairs.train, _PIPELINE_BATCHES.value, _WARMUP.value)
    one_batch = tf.data.Dataset.from_tensors(next(iter(pairs.train))).repeat()
    rows = []
    for preset in _PRESETS.value:
        for precision in _PRECISIONS.value:
            row = {
                "preset": preset,
                "precision": precision,
                "pipeline_pairs_per_s": pipeline,
                "train_pairs_per_s": _training_rate(
                    preset, precision, one_batch, _TRAIN_STEPS.value, _WARMUP.value
                ),
            }
            if _END_TO_END.value:
                row["fit_with_pipeline_pairs_per_s"] = _training_rate(
                    preset, precision, pairs.train, _TRAIN_STEPS.value, _WARMUP.value
                )
            row["headroom"] = pipeline / row["train_pairs_per_s"]
            rows.append(row)
            print(
                f"{preset:18s} {precision:15s} pipeline {pipeline:8.0f} pairs/s | train "
                f"{row['train_pairs_per_s']:6.0f} pairs/s"
                + (f" | fit+pipeline {row['fit_with_pipeline_pairs_per_s']:6.0f}"
                   if _END_TO_END.value else "")
                + f" | headroom {row['headroom']:.1f}x",
                flush=True,
            )
    result = {
        "batch_size": _BATCH_SIZE.value,
        "hardware": provenance.describe_machine(gpus=True),
        "rows": rows,
        "pipeline_at_least_3x": all(row["headroom"] >= 3 for row in rows),
    }
    cli.write_json(_OUTPUT.value, result)
    print(json.dumps({"pipeline_at_least_3x": result["pipeline_at_least_3x"]}))


if __name__ == "__main__":
    cli.run_main(main)
