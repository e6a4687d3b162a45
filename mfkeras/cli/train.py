"""Trains a Siamese patch classifier and ships it to saved_models/<name>/.

Example (offline, from a folder of images):

  python experiments/train.py --preset=li2018 --recipe=default \
      --image_dir=../shared/data/voc2012-train --output_dir=runs/li2018

Running the same command again after an interruption resumes the run. On several
machines each runs the same command with its own TF_CONFIG (README, "mfkeras-train").
"""

from __future__ import annotations

import dataclasses
import json
import os

from absl import app, flags

from mfkeras.cli import common as cli
from mfkeras.training import data
from mfkeras.training import trainer as training
from mfkeras.network.config import PRESETS, get_preset
from mfkeras.network.decision_config import DECISION_PRESETS, get_decision_preset

_PRESET = flags.DEFINE_enum(
    "preset", "li2018", sorted(PRESETS) + sorted(DECISION_PRESETS),
    "Architecture preset: a patch classifier, or a per-pixel decision network (pixel_decision).",
)
_RECIPE = flags.DEFINE_enum(
    "recipe", None, sorted(training.RECIPES),
    "Optimisation recipe (default: 'decision' for decision presets, else 'default').",
)
_BASE_LR = flags.DEFINE_float("base_lr", None, "Overrides the recipe's base learning rate.")
_MOMENTUM = flags.DEFINE_float("momentum", None, "Overrides the recipe's momentum.")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", None, "Overrides the recipe's weight decay.")
_BIAS_LR_MULT = flags.DEFINE_float("bias_lr_mult", None, "Overrides the biases' LR multiplier.")
_GAMMA = flags.DEFINE_float("gamma", None, "Overrides the step policy's gamma.")
_STEP_SIZE = flags.DEFINE_integer("step_size", None, "Overrides the step policy's step size.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Overrides the recipe's batch size.")
_STEPS = flags.DEFINE_integer("steps", None, "Overrides the recipe's number of iterations.")
_VALIDATION_INTERVAL = flags.DEFINE_integer(
    "validation_interval", 1000, "Iterations between validations, checkpoints and backups."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of weights, file split, patches and order.")
_PRECISION = flags.DEFINE_enum(
    "precision", "float32", list(training.PRECISIONS),
    "Compute precision; mixed_bfloat16 is fast on CPUs with AMX, mixed_float16 on GPUs.",
)
_DISTRIBUTION = flags.DEFINE_enum(
    "distribution", "auto", ["auto", *training.DISTRIBUTIONS],
    "auto: multi_worker if TF_CONFIG is set, mirrored with several GPUs, else default.",
)
_IMAGE_DIR = flags.DEFINE_string("image_dir", None, "Folder of training images (recursive).")
_EXCLUDE_DEVELOPMENT = flags.DEFINE_bool(
    "exclude_development", False,
    "Leave out the ground-truth development split's images (mfkeras.evaluation.groundtruth).",
)
_TFDS_NAME = flags.DEFINE_string("tfds_name", "voc/2012", "tfds dataset used without --image_dir.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir holding a prepared copy.")
_DOWNLOAD = flags.DEFINE_bool("download", False, "Let tfds download and prepare the data.")
_BLUR_LEVELS = flags.DEFINE_integer("blur_levels", 5, "Number of blur levels K.")
_PATCHES_PER_IMAGE = flags.DEFINE_integer("patches_per_image", 64, "Positions per image visit.")
_MIN_STD = flags.DEFINE_float("min_std", 0.0, "Drop positions whose patches are all flatter.")
_VALIDATION_FRACTION = flags.DEFINE_float("validation_fraction", 0.1, "Images held out.")
_VALIDATION_PAIRS = flags.DEFINE_integer("validation_pairs", 8192, "Held-out pairs.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Run directory (default runs/<name>).")
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "Where the shipped model goes (default saved_models/<name>; '' skips)."
)
_NAME = flags.DEFINE_string("name", None, "Name of the shipped model (default: the preset).")
_VERBOSE = flags.DEFINE_integer("verbose", 1, "fit verbosity: 1 progress bar, 2 one line/interval.")
_PREVIEW = flags.DEFINE_bool("preview", True, "Write preview.png of training pairs.")
_PROCESSES = flags.DEFINE_integer(
    "processes", None, "Processes generating a decision network's samples (default: every core)."
)
_INIT_FROM = flags.DEFINE_string(
    "init_from", None, "Decision presets: start from this .keras model's weights (fine-tuning)."
)
_FUSED_ERROR_WEIGHT = flags.DEFINE_float(
    "fused_error_weight", 10.0, "Decision networks: weight of the fused-crop error in the loss."
)
_CROP_SIZE = flags.DEFINE_integer("crop_size", 128, "Training crop side of a decision network.")
_STACK_SHARE = flags.DEFINE_float(
    "stack_share", 0.3, "Decision presets: share of images made into three-frame stacks (the rest pairs)."
)


def _recipe() -> training.Recipe:
    default = "decision" if _PRESET.value in DECISION_PRESETS else "default"
    recipe = training.get_recipe(_RECIPE.value or default)
    overrides = {
        "base_lr": _BASE_LR.value,
        "momentum": _MOMENTUM.value,
        "weight_decay": _WEIGHT_DECAY.value,
        "bias_lr_mult": _BIAS_LR_MULT.value,
        "gamma": _GAMMA.value,
        "step_size": _STEP_SIZE.value,
        "batch_size": _BATCH_SIZE.value,
        "steps": _STEPS.value,
    }
    return dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})


def _distribution() -> str:
    if _DISTRIBUTION.value != "auto":
        return _DISTRIBUTION.value
    if os.environ.get("TF_CONFIG"):
        return "multi_worker"
    import tensorflow as tf

    return "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"


def _source():
    if _IMAGE_DIR.value:
        return data.ImageFolder(_IMAGE_DIR.value, exclude_development=_EXCLUDE_DEVELOPMENT.value)
    return data.TfdsSource(name=_TFDS_NAME.value, data_dir=_DATA_DIR.value, download=_DOWNLOAD.value)


def _train_decision_network():
    """The per-pixel decision network: generated crops, pixel-wise loss (decision_trainer)."""
    from mfkeras.training import decision_data, decision_trainer

    config = get_decision_preset(_PRESET.value)
    name = _NAME.value or config.name
    config = dataclasses.replace(config, name=name)
    output_dir = _OUTPUT_DIR.value or os.path.join("runs", name)
    export_dir = _EXPORT_DIR.value if _EXPORT_DIR.value is not None else os.path.join("saved_models", name)
    # Settings are checked before the run directory is made: a refused run leaves nothing behind.
    data_config = decision_data.DecisionDataConfig(
        crop_size=_CROP_SIZE.value, stack_share=_STACK_SHARE.value, validation_fraction=_VALIDATION_FRACTION.value
    )
    recipe = _recipe()
    if not _FUSED_ERROR_WEIGHT.value >= 0:
        raise ValueError(f"fused_error_weight must be >= 0. Received: {_FUSED_ERROR_WEIGHT.value}")
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "flags.json"), "w") as f:
        json.dump(flags.FLAGS.flag_values_dict(), f, indent=2, default=str)
    result = decision_trainer.train_decision_model(
        config,
        _source(),
        output_dir,
        recipe=recipe,
        data_config=data_config,
        validation_interval=_VALIDATION_INTERVAL.value,
        seed=_SEED.value,
        processes=_PROCESSES.value or os.cpu_count() or 1,
        initial_weights=_INIT_FROM.value,
        verbose=_VERBOSE.value,
        fused_error_weight=_FUSED_ERROR_WEIGHT.value,
    )
    if export_dir:
        decision_trainer.export_decision_model(output_dir, export_dir)
    print(json.dumps(result, indent=2))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    with cli.clean_errors("mfkeras-train"):
        if _PRESET.value in DECISION_PRESETS:
            return _train_decision_network()
        return _train_patch_classifier()


def _train_patch_classifier():
    """The Siamese patch classifier on VOC patch pairs (trainer)."""
    model_config = get_preset(_PRESET.value)
    name = _NAME.value or model_config.name
    output_dir = _OUTPUT_DIR.value or os.path.join("runs", name)
    export_dir = _EXPORT_DIR.value if _EXPORT_DIR.value is not None else os.path.join(
        "saved_models", name
    )
    pair_config = data.PairConfig(
        patch_size=model_config.patch_size,
        blur_levels=_BLUR_LEVELS.value,
        patches_per_image=_PATCHES_PER_IMAGE.value,
        min_std=_MIN_STD.value,
        validation_fraction=_VALIDATION_FRACTION.value,
        validation_pairs=_VALIDATION_PAIRS.value,
    )
    train_config = training.TrainConfig(
        recipe=_recipe(),
        data=pair_config,
        validation_interval=_VALIDATION_INTERVAL.value,
        seed=_SEED.value,
        precision=_PRECISION.value,
    )
    source = _source()
    # Before any TensorFlow op: MultiWorkerMirroredStrategy configures collectives at startup.
    strategy = training.make_strategy(_distribution())
    if training.is_chief(strategy):
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "flags.json"), "w") as f:
            json.dump(flags.FLAGS.flag_values_dict(), f, indent=2, default=str)
        if _PREVIEW.value:
            preview_data = data.make_datasets(source, pair_config, batch_size=16, seed=_SEED.value)
            data.preview(preview_data.train, os.path.join(output_dir, "preview.png"))
    result = training.train(
        model_config,
        train_config,
        source,
        output_dir,
        export_dir=export_dir or None,
        distribution=strategy,
        verbose=_VERBOSE.value,
    )
    print(json.dumps(result, indent=2))


def run():
    cli.run_main(main)


if __name__ == "__main__":
    run()
