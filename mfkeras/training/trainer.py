"""Training of the patch classifier with the seed's Caffe recipe, through ``model.fit``.

Caffe's momentum SGD, ``v = m v + lr lr_mult (g + wd decay_mult w); w -= v``, maps
onto Keras pieces exactly:

* weight decay on kernels only: ``build_patch_model(..., weight_decay=wd)`` adds
  ``L2(wd / 2)`` regularisers to kernels, whose gradient is ``wd * w``; biases
  have none (Caffe ``decay_mult: 0``);
* biases at twice the learning rate (Caffe ``lr_mult: 2``): :class:`CaffeSGD`, a
  ``keras.optimizers.SGD`` that multiplies the learning rate of rank-1 variables
  by ``bias_lr_mult``;
* the "step" policy, ``lr = base_lr * gamma ** floor(iter / step_size)``:
  ``keras.optimizers.schedules.ExponentialDecay(staircase=True)``;
* softmax loss: sparse categorical cross-entropy on the softmax output.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import importlib.util
import json
import math
import os
import shutil
import time
import warnings
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from mfkeras.io.config_json import JsonConfig, lookup
from mfkeras.network.config import ModelConfig, get_preset
from mfkeras.training.provenance import describe_machine, git_commit
from mfkeras.training.data import DataSource, PairConfig, make_datasets
from mfkeras.network.model import build_patch_model

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DISTRIBUTIONS = ("default", "mirrored", "multi_worker")
PATCH_MODEL_FILE = "patch_model.keras"
MODEL_CARD_FILE = "model_card.json"
BEST_CHECKPOINT = os.path.join("checkpoints", "best.keras")


@dataclasses.dataclass(frozen=True)
class Recipe(JsonConfig):
    """The optimisation recipe (Caffe solver numbers).

    Attributes:
        name: identifier recorded with the run.
        base_lr: base learning rate.
        momentum: SGD momentum.
        weight_decay: Caffe weight decay on kernels (biases are not decayed).
        bias_lr_mult: learning-rate multiplier of biases (Caffe ``lr_mult``).
        gamma: factor of the "step" policy.
        step_size: iterations between two multiplications by ``gamma``.
        batch_size: pairs per iteration (global, over all replicas).
        steps: total iterations.
    """

    name: str
    base_lr: float
    step_size: int
    steps: int
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    bias_lr_mult: float = 2.0
    gamma: float = 0.5

    def __post_init__(self):
        for field in ("base_lr", "step_size", "steps", "batch_size", "gamma", "bias_lr_mult"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{field} must be > 0. Received: {field}={getattr(self, field)}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1). Received: momentum={self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(
                f"weight_decay must be >= 0. Received: weight_decay={self.weight_decay}"
            )

    def learning_rate(self, iteration: int) -> float:
        """Base learning rate at ``iteration`` under the "step" policy."""
        return self.base_lr * self.gamma ** (iteration // self.step_size)



RECIPES = {
    # The seed as printed: base LR 1e-6. Batch size, step size and length are not given;
    # these follow Liu et al. 2017's Caffe solver. In practice (li2018, batch 128, VOC
    # pairs) the loss stays at ln 2 + weight decay (0.963) and held-out accuracy at ~51 %
    # after 500 iterations: with inputs in [0, 1] the steps are ~3000x too small.
    "paper": Recipe(name="paper", base_lr=1e-6, step_size=10000, steps=30000, batch_size=128),
    # Same solver with a learning rate that converges: 3e-3 gives li2018 98.9 % held-out
    # accuracy after 800 iterations, while 1e-2 diverges for li2018 after ~300 iterations
    # (liu2017 tolerates it). 16k iterations with 3 halvings fit ~45 min of a 2-core CPU
    # in mixed_bfloat16.
    "default": Recipe(name="default", base_lr=3e-3, step_size=5000, steps=16000, batch_size=128),
    # The per-pixel decision network (mfkeras.training.decision_trainer): batches of 16
    # 128x128 crops, 262k decisions a step.
    "decision": Recipe(
        name="decision", base_lr=0.02, step_size=2500, steps=6000, batch_size=16,
        weight_decay=1e-4, gamma=0.3,
    ),
}


def get_recipe(name: str) -> Recipe:
    """Returns the frozen :class:`Recipe` ``RECIPES[name]`` (ValueError names the choices)."""
    return lookup(RECIPES, name, "recipe")


@dataclasses.dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """Everything about a training run except the architecture and the data source.

    Attributes:
        recipe: the optimisation recipe.
        data: how pairs are made.
        validation_interval: iterations between validations (one Keras epoch);
            also the checkpoint and backup interval.
        seed: seeds weights, file split, patches and order.
        precision: ``"float32"``, ``"mixed_bfloat16"`` (fast on CPUs with AMX)
            or ``"mixed_float16"`` (GPUs). Saved models are float32 either way.
    """

    recipe: Recipe = RECIPES["default"]
    data: PairConfig = PairConfig()
    validation_interval: int = 1000
    seed: int = 0
    precision: str = "float32"

    def __post_init__(self):
        if self.validation_interval < 1:
            raise ValueError(
                f"validation_interval must be >= 1. Received: {self.validation_interval}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {PRECISIONS}. Received: precision={self.precision!r}"
            )

    @property
    def epochs(self) -> int:
        """Number of Keras epochs (validation intervals) covering ``recipe.steps``."""
        return math.ceil(self.recipe.steps / self.validation_interval)

    def to_dict(self) -> dict:
        """Returns the config as plain JSON-serialisable types."""
        return {
            "recipe": self.recipe.to_dict(),
            "data": self.data.to_dict(),
            "validation_interval": self.validation_interval,
            "seed": self.seed,
            "precision": self.precision,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Builds a config from :meth:`to_dict` output."""
        data = dict(data)
        data["recipe"] = Recipe.from_dict(data["recipe"])
        data["data"] = PairConfig.from_dict(data["data"])
        return cls(**data)


@keras.saving.register_keras_serializable(package="mfkeras")
class CaffeSGD(keras.optimizers.SGD):
    """Momentum SGD whose rank-1 variables (biases) learn ``bias_lr_mult`` times faster.

    With momentum this equals Caffe's ``lr_mult`` on biases: the momentum buffer
    accumulates ``lr * bias_lr_mult * grad``. Weight decay is not done here but by
    the model's kernel regularisers, so biases get none, as in Caffe.

    Args:
        bias_lr_mult: learning-rate multiplier of rank-1 variables.
        **kwargs: passed to ``keras.optimizers.SGD``.
    """

    def __init__(self, bias_lr_mult: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.bias_lr_mult = float(bias_lr_mult)

    def update_step(self, gradient, variable, learning_rate):
        if len(variable.shape) == 1:
            learning_rate = learning_rate * self.bias_lr_mult
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "bias_lr_mult": self.bias_lr_mult}


def make_schedule(recipe: Recipe) -> keras.optimizers.schedules.LearningRateSchedule:
    """Caffe's "step" policy: ``base_lr * gamma ** floor(iteration / step_size)``.

    Args:
        recipe: the recipe.

    Returns:
        A staircase ``keras.optimizers.schedules.ExponentialDecay``.
    """
    return keras.optimizers.schedules.ExponentialDecay(
        recipe.base_lr, decay_steps=recipe.step_size, decay_rate=recipe.gamma, staircase=True
    )


def make_optimizer(recipe: Recipe) -> CaffeSGD:
    """Builds the optimiser of a recipe: step-policy LR, momentum, bias LR multiplier.

    Args:
        recipe: the recipe.

    Returns:
        A :class:`CaffeSGD` with an ``ExponentialDecay(staircase=True)`` schedule.
    """
    return CaffeSGD(
        bias_lr_mult=recipe.bias_lr_mult,
        learning_rate=make_schedule(recipe),
        momentum=recipe.momentum,
    )


def build_training_model(model_config: ModelConfig | str, recipe: Recipe):
    """Builds the regularised patch model and the compiled model that trains it.

    The training model shares every layer with the patch model and only adds a
    float32 softmax on its logits, so that mixed precision computes the loss in
    float32.

    Args:
        model_config: the architecture or a preset name.
        recipe: the optimisation recipe (weight decay, optimiser).

    Returns:
        ``(patch_model, training_model)``; the second is compiled.
    """
    if isinstance(model_config, str):
        model_config = get_preset(model_config)
    patch_model = build_patch_model(model_config, weight_decay=recipe.weight_decay)
    logits = patch_model.get_layer("logits").output
    probabilities = keras.layers.Softmax(dtype="float32", name="softmax_float32")(logits)
    training_model = keras.Model(
        patch_model.inputs, probabilities, name=f"{model_config.name}_train"
    )
    training_model.compile(
        optimizer=make_optimizer(recipe),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return patch_model, training_model


def clean_copy(patch_model: keras.Model, model_config: ModelConfig) -> keras.Model:
    """Returns a float32, unregularised, uncompiled copy of a patch model.

    It holds only built-in Keras objects, so its ``.keras`` file loads with
    ``keras.models.load_model`` in a process that never imports mfkeras.

    Args:
        patch_model: a model from :func:`build_patch_model` (any policy, any decay).
        model_config: its architecture.

    Returns:
        The copy, with the same weights.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build_patch_model(model_config)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.set_weights([np.asarray(w, np.float32) for w in patch_model.get_weights()])
    return copy


def pair_accuracy(model: keras.Model, dataset: tf.data.Dataset) -> float:
    """Fraction of pairs whose arg-max class equals the label.

    Args:
        model: a patch model (softmax over 2 classes).
        dataset: batched ``(inputs, label)`` pairs.

    Returns:
        The accuracy in [0, 1].
    """
    correct = total = 0
    for inputs, labels in dataset:
        predicted = np.argmax(model(inputs, training=False), axis=-1)
        correct += int(np.sum(predicted == labels.numpy()))
        total += int(labels.shape[0])
    if total == 0:
        raise ValueError("The dataset is empty: cannot compute an accuracy.")
    return correct / total


class _MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """``MultiWorkerMirroredStrategy`` whose ``reduce`` takes what Keras 3 gives it.

    Keras 3.15's TensorFlow trainer, with more than one worker, calls
    ``strategy.reduce`` in two ways that ``MultiWorkerMirroredStrategy`` rejects
    (keras-team/keras#20329, #20585, tensorflow/tensorflow#72388):

    * ``fit`` and ``evaluate`` reduce a whole ``(inputs, labels)`` batch at once to
      build the model: "Attempt to convert a value ({'patch_a': PerReplica...";
      ``MirroredStrategy.reduce`` maps over such structures, so this one does too;
    * every step reduces its scalar metrics with ``axis=0``: "Invalid reduction
      dimension 0 for input with 0 dimensions"; a scalar has no axis to reduce
      besides the replicas, so scalars are reduced over the replicas only.
    """

    def reduce(self, reduce_op, value, axis):
        def reduce_leaf(leaf):
            rank = self.experimental_local_results(leaf)[0].shape.rank
            leaf_axis = None if rank == 0 else axis
            return super(_MultiWorkerStrategy, self).reduce(reduce_op, leaf, leaf_axis)

        return tf.nest.map_structure(reduce_leaf, value)


def make_strategy(distribution: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy of a distribution name.

    ``"multi_worker"`` reads the cluster from ``TF_CONFIG``, as TensorFlow defines, and
    must be created before any other TensorFlow operation of the program (TensorFlow
    raises "Collective ops must be configured at program startup" otherwise).

    Args:
        distribution: one of :data:`DISTRIBUTIONS`.

    Returns:
        The strategy: the default one, a ``MirroredStrategy`` over the local GPUs or a
        ``MultiWorkerMirroredStrategy``.
    """
    if distribution == "default":
        return tf.distribute.get_strategy()
    if distribution == "mirrored":
        return tf.distribute.MirroredStrategy()
    if distribution == "multi_worker":
        return _MultiWorkerStrategy()
    raise ValueError(
        f"distribution must be one of {DISTRIBUTIONS}. Received: distribution={distribution!r}"
    )


def _distribution_name(strategy: tf.distribute.Strategy) -> str:
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "default"


def _worker_index(strategy: tf.distribute.Strategy) -> Optional[int]:
    """Task index of this process in a multi-worker cluster; None on a single machine."""
    resolver = strategy.cluster_resolver
    if resolver is None or resolver.task_type is None:
        return None
    return int(resolver.task_id)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: the ``chief`` task, or else worker 0.

    TensorFlow's multi-worker rule: a cluster without a ``chief`` job has worker 0 as chief;
    a single machine is always chief.
    """
    resolver = strategy.cluster_resolver
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of a model's weights as float32 bytes, in ``get_weights()`` order."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight, np.float32).tobytes())
    return digest.hexdigest()


def _tensorboard_installed() -> bool:
    # TensorFlow's tf.summary needs the separate tensorboard package.
    return importlib.util.find_spec("tensorboard") is not None


def _best_logged(csv_path: str, key: str = "val_accuracy") -> Optional[float]:
    """Best value of ``key`` in a CSVLogger file, so a resumed run keeps its best checkpoint."""
    if not os.path.exists(csv_path):
        return None
    with open(csv_path, newline="") as f:
        values = [float(row[key]) for row in csv.DictReader(f) if row.get(key)]
    return max(values) if values else None


def train(
    model_config: ModelConfig | str,
    train_config: TrainConfig,
    data_source: DataSource,
    output_dir: str,
    export_dir: Optional[str] = None,
    distribution: str | tf.distribute.Strategy = "default",
    verbose: int | str = 1,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict:
    """Trains a patch model with ``model.fit`` and exports it.

    ``output_dir`` receives ``train_config.json``, ``checkpoints/best.keras`` (best
    validation accuracy, with optimiser), ``backup/`` (``BackupAndRestore``: calling
    ``train`` again with the same ``output_dir`` resumes a killed run at its last
    validation interval), ``tensorboard/``, ``history.csv`` and ``result.json``.
    ``export_dir`` (if given) receives the best weights as a plain float32
    ``patch_model.keras`` and a ``model_card.json``.

    With several workers (``MultiWorkerMirroredStrategy``) only the chief writes these
    files. Every other worker keeps just its backup, in ``output_dir/workertemp_<index>/``
    (its own folder, as in TensorFlow's multi-worker tutorial), so that it resumes with
    the chief, and deletes that folder when the run ends. Keras 3 saves without collective
    ops, so the chief's checkpoints need no other worker.

    Args:
        model_config: architecture or preset name.
        train_config: recipe, pair config, intervals, seed, precision.
        data_source: an ``ImageFolder`` or a ``TfdsSource``.
        output_dir: the run directory.
        export_dir: where to ship the model; None skips the export.
        distribution: ``"default"`` (one device), ``"mirrored"`` (all local GPUs),
            ``"multi_worker"`` (cluster from ``TF_CONFIG``) or a strategy made by
            :func:`make_strategy` (scripts make it first: see there).
        verbose: ``model.fit`` verbosity (1: progress bar, 2: a line per interval).
        callbacks: extra Keras callbacks.

    Returns:
        The result dict also written to ``result.json``. Other workers return only the
        name, fit logs and wall time; ``final_weights_sha256`` (:func:`weights_digest`
        of the weights that ``fit`` ended with) is the same on every worker.
    """
    if isinstance(model_config, str):
        model_config = get_preset(model_config)
    if model_config.patch_size != train_config.data.patch_size:
        raise ValueError(
            "The model and the pairs disagree on the patch size. Received: "
            f"model patch_size={model_config.patch_size}, "
            f"data patch_size={train_config.data.patch_size}"
        )
    strategy = distribution
    if not isinstance(strategy, tf.distribute.Strategy):
        strategy = make_strategy(distribution)
    chief = is_chief(strategy)
    run_dir = _prepare_run_dir(strategy, chief, output_dir, model_config, train_config, data_source)
    start = time.time()
    keras.utils.set_random_seed(train_config.seed)
    pairs = make_datasets(
        data_source, train_config.data, batch_size=train_config.recipe.batch_size,
        seed=train_config.seed,
    )
    patch_model, fit_logs = _fit(
        model_config, train_config, pairs, strategy, run_dir, verbose, callbacks
    )
    wall_time = time.time() - start
    result = {"model": model_config.name, "recipe": train_config.recipe.name, **fit_logs}
    if not chief:
        shutil.rmtree(run_dir, ignore_errors=True)
        return {**result, "wall_time_s": wall_time}

    result["wall_time_s"] = wall_time
    return _finish_on_chief(
        patch_model, model_config, train_config, pairs, data_source, strategy, result, output_dir,
        export_dir,
    )


def _prepare_run_dir(strategy, chief, output_dir, model_config, train_config, data_source) -> str:
    """The chief's run directory (with ``train_config.json``), or another worker's backup folder."""
    if not chief:
        return os.path.join(output_dir, f"workertemp_{_worker_index(strategy)}")
    os.makedirs(output_dir, exist_ok=True)
    _write_json(
        os.path.join(output_dir, "train_config.json"),
        {"model": model_config.to_dict(), "train": train_config.to_dict(),
         "data_source": data_source.to_dict()},
    )
    return output_dir


def _finish_on_chief(
    patch_model, model_config, train_config, pairs, data_source, strategy, result, output_dir, export_dir
) -> dict:
    """Held-out accuracies, the export with its model card, and ``result.json``."""
    shipped = clean_copy(patch_model, model_config)
    result.update(
        **_held_out_accuracies(shipped, pairs, data_source, train_config),
        validation_pairs=pairs.num_validation_pairs,
    )
    if export_dir:
        machine = {**describe_machine(gpus=True), "precision": train_config.precision,
                   "distribution": _distribution_name(strategy),
                   "replicas": strategy.num_replicas_in_sync}
        card = _model_card(model_config, train_config, pairs, result, machine)
        result["export"] = export_model(shipped, export_dir, card)
    _write_json(os.path.join(output_dir, "result.json"), result)
    return result


def _write_json(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2)


class _SameRestoredStep(keras.callbacks.Callback):
    """Stops a multi-worker run whose workers restored different steps from their backups.

    Each worker restores its own backup; a kill between two workers' saves leaves them an
    interval apart, and their collective ops would no longer match (a hang, or a late
    error). Runs after ``BackupAndRestore.on_train_begin``; every worker sees the same sums,
    so all of them raise or none.
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        super().__init__()
        self.strategy = strategy

    def on_train_begin(self, logs=None):
        step = float(self.model.optimizer.iterations.numpy())
        # Over all replicas, n * sum(step^2) == sum(step)^2 only if every step is equal.
        per_replica = self.strategy.experimental_distribute_values_from_function(
            lambda _: tf.constant([step, step * step], tf.float64)
        )
        total, squares = self.strategy.reduce("SUM", per_replica, axis=None).numpy()
        replicas = self.strategy.num_replicas_in_sync
        if replicas * squares != total * total:
            raise RuntimeError(
                "The workers restored different steps from their backups (this one: "
                f"{step:.0f}, mean {total / replicas:g}). Copy the chief's backup/ folder "
                "over each worker's workertemp_<index>/backup/, or delete them all to start "
                "again."
            )


def _fit_callbacks(
    output_dir: str, strategy: tf.distribute.Strategy, extra: Sequence[keras.callbacks.Callback]
) -> list:
    """Backup (resume); on the chief also best checkpoint, CSV history and TensorBoard."""
    resume = [keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup"))]
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        resume.append(_SameRestoredStep(strategy))
    if not is_chief(strategy):
        return [*resume, *extra]
    csv_path = os.path.join(output_dir, "history.csv")
    best_path = os.path.join(output_dir, BEST_CHECKPOINT)
    os.makedirs(os.path.dirname(best_path), exist_ok=True)
    fit_callbacks = [
        *resume,
        keras.callbacks.ModelCheckpoint(
            best_path,
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            initial_value_threshold=_best_logged(csv_path),
        ),
        keras.callbacks.CSVLogger(csv_path, append=True),
        *extra,
    ]
    if _tensorboard_installed():
        fit_callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard")))
    else:
        warnings.warn("The tensorboard package is not installed: no TensorBoard logs.")
    return fit_callbacks


def _fit(model_config, train_config, pairs, strategy, output_dir, verbose, callbacks) -> tuple:
    """Builds and fits the model under the run's precision; loads the best checkpoint.

    Returns:
        ``(patch_model, logs)``: the trained patch model and the iteration count,
        digest of the final weights, best logged validation accuracy and last
        epoch's logs.
    """
    train_data = pairs.train
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        options = tf.data.Options()
        shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        options.experimental_distribute.auto_shard_policy = shard_policy
        train_data = train_data.with_options(options)
    best_path = os.path.join(output_dir, BEST_CHECKPOINT)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(train_config.precision)
    try:
        with strategy.scope():
            patch_model, training_model = build_training_model(model_config, train_config.recipe)
        history = training_model.fit(
            train_data,
            epochs=train_config.epochs,
            steps_per_epoch=train_config.validation_interval,
            validation_data=pairs.validation,
            callbacks=_fit_callbacks(output_dir, strategy, callbacks),
            verbose=verbose,
            shuffle=False,  # the stream is already shuffled
        )
        iterations = int(training_model.optimizer.iterations.numpy())
        final_digest = weights_digest(training_model)
        if os.path.exists(best_path):
            training_model.load_weights(best_path)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    return patch_model, {
        "iterations": iterations,
        "final_weights_sha256": final_digest,
        "best_val_accuracy_logged": _best_logged(os.path.join(output_dir, "history.csv")),
        "final_epoch_logs": {k: float(v[-1]) for k, v in history.history.items() if v},
    }


def _held_out_accuracies(shipped, pairs, data_source, train_config) -> dict:
    """Held-out pair accuracy; with ``min_std`` > 0 also over all patches, flat ones kept."""
    accuracies = {"held_out_pair_accuracy": pair_accuracy(shipped, pairs.validation)}
    if train_config.data.min_std > 0:
        unfiltered = dataclasses.replace(train_config.data, min_std=0.0)
        all_pairs = make_datasets(
            data_source, unfiltered, batch_size=train_config.recipe.batch_size,
            seed=train_config.seed,
        )
        accuracies["held_out_pair_accuracy_all_patches"] = pair_accuracy(
            shipped, all_pairs.validation
        )
    return accuracies


def _model_card(model_config, train_config, pairs, result, machine) -> dict:
    """The model card fields of a finished run (see :func:`export_model`)."""
    return {
        "preset": model_config.name,
        "model_config": model_config.to_dict(),
        "recipe": train_config.recipe.to_dict(),
        "train_config": train_config.to_dict(),
        "data": pairs.description,
        "steps": result["iterations"],
        "held_out_pair_accuracy": result["held_out_pair_accuracy"],
        "held_out_pair_accuracy_all_patches": result.get("held_out_pair_accuracy_all_patches"),
        "lytro": None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "hardware": machine,
        "training_wall_time_s": result["wall_time_s"],
    }


def export_model(patch_model: keras.Model, export_dir: str, card: dict) -> dict:
    """Saves a shippable patch model and its model card.

    Args:
        patch_model: a float32 model without custom objects (see :func:`clean_copy`).
        export_dir: the folder, created if needed.
        card: the model card fields.

    Returns:
        ``{"patch_model": path, "model_card": path, "size_bytes": n}``.
    """
    os.makedirs(export_dir, exist_ok=True)
    model_path = os.path.join(export_dir, PATCH_MODEL_FILE)
    card_path = os.path.join(export_dir, MODEL_CARD_FILE)
    patch_model.save(model_path)
    size = os.path.getsize(model_path)
    with open(card_path, "w") as f:
        json.dump({**card, "patch_model_file": PATCH_MODEL_FILE, "size_bytes": size}, f, indent=2)
    return {"patch_model": model_path, "model_card": card_path, "size_bytes": size}

