"""Training of the per-pixel decision network on generated multi-focus crops.

The loss is pixel-wise: a binary cross-entropy against which source is nearer in focus
(weighted, so that pixels equally far from focus in both do not count), plus the mean
absolute error of the soft-blended crop against the all-in-focus truth, which pulls the
decision towards the source that is closer to the truth where a defocused foreground
spreads over the background (the halo zone). Optimised as the paper does: SGD with
momentum 0.9, weight decay and a step-decay learning rate (:class:`Recipe`).
Checkpoints, backups (resume) and the CSV log live in the run directory.
"""

from __future__ import annotations

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from mfkeras.network.decision_config import DecisionConfig, get_decision_preset
from mfkeras.network.decision_model import build_decision_model
from mfkeras.network.geometry import IMAGE_A, IMAGE_B
from mfkeras.network.zoo import DECISION_MODEL_FILE
from mfkeras.training import decision_data
from mfkeras.training.data import ImageFolder, TfdsSource, _load_tfds
from mfkeras.training.provenance import describe_machine
from mfkeras.training.trainer import RECIPES, Recipe, make_optimizer

MODEL_CARD_FILE = "model_card.json"
BEST_CHECKPOINT = os.path.join("checkpoints", "best.keras")
# Weights of the loss terms (decision_loss); fused-crop errors are ~0.01 per pixel.
LABEL_WEIGHT = 0.5
BEST_SCALE = 0.01
FUSED_ERROR_WEIGHT = 10.0
_EPS = 1e-6



def _split_targets(targets):
    return [targets[..., k : k + 1] for k in range(len(decision_data.TARGET_CHANNELS))]


def decision_loss(targets, probability, fused_error_weight: float = FUSED_ERROR_WEIGHT):
    """Per-crop loss: the label and best-source cross-entropies plus the fused-crop error.

    * label: which frame is nearer in focus at the pixel's depth (weighted so that pixels
      equally far from focus in both count for nothing), at ``LABEL_WEIGHT``;
    * best source: which frame is closer to the truth at the pixel, weighted by how much
      closer (``min(1, |e_a - e_b| / BEST_SCALE)``); beyond the layer labels, this is what
      wins in the halo zone, where a defocused foreground spreads over the background;
    * ``fused_error_weight`` x the mean absolute error of the soft-blended crop.

    Args:
        targets: (B, H, W, 5) channels of :data:`decision_data.TARGET_CHANNELS`.
        probability: (B, H, W, 1) predicted probability that frame A is the sharper.
        fused_error_weight: weight of the fused-crop error.

    Returns:
        (B,) losses.
    """
    target, weight, frame_a, frame_b, truth = _split_targets(targets)
    p = keras.ops.clip(keras.ops.cast(probability, "float32"), _EPS, 1.0 - _EPS)
    axes = (1, 2, 3)

    def cross_entropy(y):
        return -(y * keras.ops.log(p) + (1.0 - y) * keras.ops.log(1.0 - p))

    label = keras.ops.sum(weight * cross_entropy(target), axis=axes) / (keras.ops.sum(weight, axis=axes) + 1.0)
    error_a, error_b = keras.ops.abs(frame_a - truth), keras.ops.abs(frame_b - truth)
    best = keras.ops.cast(error_a < error_b, "float32")
    importance = keras.ops.minimum(keras.ops.abs(error_a - error_b) / BEST_SCALE, 1.0)
    best_source = keras.ops.mean(importance * cross_entropy(best), axis=axes)
    fused = p * frame_a + (1.0 - p) * frame_b
    fused_error = keras.ops.mean(keras.ops.abs(fused - truth), axis=axes)
    return LABEL_WEIGHT * label + best_source + fused_error_weight * fused_error


def decision_accuracy(targets, probability):
    """Per-crop share of counted pixels (weight 1) whose decision matches the target."""
    target, weight = _split_targets(targets)[:2]
    correct = keras.ops.cast((keras.ops.cast(probability, "float32") > 0.5) == (target > 0.5), "float32")
    axes = (1, 2, 3)
    return keras.ops.sum(weight * correct, axis=axes) / keras.ops.maximum(keras.ops.sum(weight, axis=axes), 1.0)


def source_images(source, max_side: int, limit: int | None = None) -> list:
    """The all-in-focus RGB images of a data source (development split left out if asked)."""
    if isinstance(source, ImageFolder):
        images = decision_data.folder_images(source.path, source.exclude_development, max_side)
        return images[:limit] if limit else images
    if isinstance(source, TfdsSource):
        train, _, _ = _load_tfds(source)
        return decision_data.tfds_images(train, exclude_development=True, max_side=max_side, limit=limit)
    raise TypeError(f"Expected an ImageFolder or a TfdsSource. Received: {type(source).__name__}")


def load_or_generate_samples(source, output_dir: str, data_config, seed: int, processes: int = 1, limit=None):
    """The run's generated samples: read from its cache file, else generated and cached."""
    path = os.path.join(output_dir, decision_data.CACHE_FILE)
    if os.path.isfile(path):
        return decision_data.load_samples(path)
    images = source_images(source, data_config.max_side, limit)
    samples = decision_data.generate_samples(images, seed, data_config, processes)
    os.makedirs(output_dir, exist_ok=True)
    decision_data.save_samples(samples, path)
    return samples


def _crop_dataset(samples, data_config, batch_size: int, seed: int) -> tf.data.Dataset:
    size = data_config.crop_size
    signature = (
        tf.TensorSpec((size, size, 1), tf.float32),
        tf.TensorSpec((size, size, 1), tf.float32),
        tf.TensorSpec((size, size, len(decision_data.TARGET_CHANNELS)), tf.float32),
    )
    dataset = tf.data.Dataset.from_generator(
        lambda: decision_data.crop_stream(samples, data_config, seed), output_signature=signature
    )
    dataset = dataset.map(lambda a, b, t: ({IMAGE_A: a, IMAGE_B: b}, t))
    return dataset.batch(batch_size).prefetch(2)


def compile_decision_model(
    config: DecisionConfig, recipe: Recipe, fused_error_weight: float = FUSED_ERROR_WEIGHT
) -> keras.Model:
    """The regularised decision network, compiled with the recipe's SGD and the pixel loss."""
    if not fused_error_weight >= 0:
        raise ValueError(f"fused_error_weight must be >= 0. Received: {fused_error_weight}")

    def loss(targets, probability):
        return decision_loss(targets, probability, fused_error_weight)

    model = build_decision_model(config, weight_decay=recipe.weight_decay)
    model.compile(optimizer=make_optimizer(recipe), loss=loss, metrics=[decision_accuracy])
    return model


def clean_decision_copy(model: keras.Model, config: DecisionConfig) -> keras.Model:
    """An unregularised, uncompiled copy with the same weights (loads without mfkeras)."""
    copy = build_decision_model(config)
    copy.set_weights(model.get_weights())
    return copy


def _finished_result(output_dir: str, config: DecisionConfig, recipe: Recipe) -> dict | None:
    """The result of a run that already finished with this architecture and recipe, else None."""
    path = os.path.join(output_dir, "result.json")
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(output_dir, DECISION_MODEL_FILE))):
        return None
    with open(path) as f:
        result = json.load(f)
    same = result.get("config") == config.to_dict() and result.get("recipe") == recipe.to_dict()
    return result if same else None


def train_decision_model(
    config: DecisionConfig | str,
    source,
    output_dir: str,
    recipe: Recipe = RECIPES["decision"],
    data_config: decision_data.DecisionDataConfig = decision_data.DecisionDataConfig(),
    validation_interval: int = 250,
    validation_crops: int = 256,
    seed: int = 0,
    processes: int = 1,
    image_limit: int | None = None,
    initial_weights: str | None = None,
    verbose: int = 2,
    fused_error_weight: float = FUSED_ERROR_WEIGHT,
) -> dict:
    """Trains a decision network; resumes from the run directory's backup if there is one.

    A run directory whose run finished (same architecture and recipe) returns its result
    without training again.

    Args:
        config: the architecture or a decision preset name.
        source: an :class:`ImageFolder` or :class:`TfdsSource` of all-in-focus images.
        output_dir: the run directory (sample cache, checkpoints, backup, log, result).
        recipe: the optimisation recipe.
        data_config: how crops are made.
        validation_interval: steps per Keras epoch (validation, checkpoint, backup).
        validation_crops: fixed held-out crops.
        seed: seeds generation, crops and weights.
        processes: processes generating samples.
        image_limit: use at most this many images (quick runs, tests).
        initial_weights: a ``.keras`` decision model of the same architecture to start
            from (fine-tuning) instead of a random initialisation.
        verbose: ``model.fit`` verbosity.
        fused_error_weight: weight of the fused-crop error in :func:`decision_loss`.

    Returns:
        The run's result: the best held-out loss and accuracy, steps, seconds, paths.
    """
    if isinstance(config, str):
        config = get_decision_preset(config)
    finished = _finished_result(output_dir, config, recipe)
    if finished is not None:
        return finished
    os.makedirs(output_dir, exist_ok=True)
    keras.utils.set_random_seed(seed)
    samples = load_or_generate_samples(source, output_dir, data_config, seed, processes, image_limit)
    train_samples, validation_samples = decision_data.split_samples(samples, data_config.validation_fraction, seed)
    frames_a, frames_b, targets = decision_data.fixed_crops(validation_samples, data_config, validation_crops, seed + 1)
    validation = tf.data.Dataset.from_tensor_slices(({IMAGE_A: frames_a, IMAGE_B: frames_b}, targets)).batch(recipe.batch_size)
    model = compile_decision_model(config, recipe, fused_error_weight)
    if initial_weights:
        model.set_weights(keras.models.load_model(initial_weights, compile=False).get_weights())
    epochs = math.ceil(recipe.steps / validation_interval)
    os.makedirs(os.path.join(output_dir, "checkpoints"), exist_ok=True)
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup")),
        keras.callbacks.ModelCheckpoint(
            os.path.join(output_dir, BEST_CHECKPOINT), monitor="val_loss", save_best_only=True
        ),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "log.csv"), append=True),
    ]
    start = time.time()
    history = model.fit(
        _crop_dataset(train_samples, data_config, recipe.batch_size, seed),
        validation_data=validation,
        epochs=epochs,
        steps_per_epoch=validation_interval,
        callbacks=callbacks,
        verbose=verbose,
    )
    best = keras.models.load_model(os.path.join(output_dir, BEST_CHECKPOINT), compile=False)
    val_loss = history.history.get("val_loss") or [float("nan")]
    result = {
        "config": config.to_dict(),
        "recipe": recipe.to_dict(),
        "data": data_config.to_dict(),
        "source": source.to_dict(),
        "samples": {"train": len(train_samples), "validation": len(validation_samples)},
        "steps": recipe.steps,
        "seconds_this_run": round(time.time() - start, 1),
        "best_val_loss": float(np.nanmin(val_loss)),
        "best_val_accuracy": float(np.nanmax(history.history.get("val_decision_accuracy") or [float("nan")])),
        "seed": seed,
        "initial_weights": initial_weights,
        "fused_error_weight": fused_error_weight,
    }
    clean = clean_decision_copy(best, config)
    clean.save(os.path.join(output_dir, DECISION_MODEL_FILE))
    with open(os.path.join(output_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def export_decision_model(run_dir: str, export_dir: str, card: dict | None = None) -> str:
    """Copies a run's decision model into a shipped-model folder with its model card."""
    model = keras.models.load_model(os.path.join(run_dir, DECISION_MODEL_FILE), compile=False)
    os.makedirs(export_dir, exist_ok=True)
    model.save(os.path.join(export_dir, DECISION_MODEL_FILE))
    with open(os.path.join(run_dir, "result.json")) as f:
        result = json.load(f)
    card = {**result, "kind": "decision", "machine": describe_machine(), **(card or {})}
    with open(os.path.join(export_dir, MODEL_CARD_FILE), "w") as f:
        json.dump(card, f, indent=2)
    return export_dir
