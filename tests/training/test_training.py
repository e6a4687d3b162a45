"""Tests of the Caffe recipe, the training loop, resumption and the shipped files."""

import csv
import json
import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from mfkeras.training import data
from mfkeras.training import trainer as training
from mfkeras.network.config import ModelConfig
from mfkeras.network.model import build_patch_model

TINY = ModelConfig(name="tiny", branch_layers=(8, "pool", 8), fc_units=(16,))
PAIRS = data.PairConfig(patches_per_image=16, validation_pairs=128, shuffle_buffer=256)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index in range(6):
        coarse = rng.random((12, 12))
        image = cv2.resize(coarse, (48, 48), interpolation=cv2.INTER_CUBIC)
        image = image + rng.normal(0, 0.08, image.shape)
        cv2.imwrite(str(folder / f"i{index}.png"), np.clip(255 * image, 0, 255).astype(np.uint8))
    return str(folder)


def _config(steps, interval, base_lr=0.01, **kwargs):
    recipe = training.Recipe(
        name="test", base_lr=base_lr, step_size=1000, steps=steps, batch_size=32, **kwargs
    )
    return training.TrainConfig(recipe=recipe, data=PAIRS, validation_interval=interval)


def test_recipe_and_train_config_json_round_trip():
    config = training.TrainConfig(
        recipe=training.get_recipe("paper"),
        data=data.PairConfig(min_std=0.01),
        precision="mixed_bfloat16",
    )
    assert training.TrainConfig.from_json(config.to_json()) == config
    assert training.Recipe.from_json(config.recipe.to_json()) == config.recipe
    assert config.recipe.base_lr == 1e-6


@pytest.mark.parametrize("field, value", [("base_lr", 0.0), ("momentum", 1.0), ("step_size", 0)])
def test_recipe_rejects_bad_values(field, value):
    kwargs = {"name": "x", "base_lr": 0.1, "step_size": 10, "steps": 10, field: value}
    with pytest.raises(ValueError, match=f"{field}="):
        training.Recipe(**kwargs)


def test_unknown_recipe_lists_the_choices():
    with pytest.raises(ValueError, match=r"\['decision', 'default', 'paper'\]. Received: 'fast'"):
        training.get_recipe("fast")


def test_schedule_is_caffe_step_policy():
    recipe = training.Recipe(name="x", base_lr=0.1, step_size=3, steps=10, gamma=0.5)
    schedule = training.make_schedule(recipe)
    for iteration in [0, 2, 3, 5, 6, 9]:
        expected = 0.1 * 0.5 ** (iteration // 3)
        assert float(schedule(iteration)) == pytest.approx(expected)
        assert recipe.learning_rate(iteration) == pytest.approx(expected)


def test_two_steps_match_hand_computed_caffe_updates():
    """Caffe: v = m v + lr lr_mult (g + wd decay_mult w); w -= v; biases: lr_mult 2, decay 0."""
    lr, momentum, wd, gamma = 0.05, 0.9, 0.01, 0.5
    recipe = training.Recipe(
        name="x", base_lr=lr, step_size=1, steps=2, momentum=momentum, weight_decay=wd, gamma=gamma
    )
    keras.utils.set_random_seed(1)
    _, model = training.build_training_model(TINY, recipe)
    reference = build_patch_model(TINY)  # no regulariser: plain data-loss gradients
    rng = np.random.default_rng(0)
    batches = [
        ({"patch_a": rng.random((4, 16, 16, 1), np.float32),
          "patch_b": rng.random((4, 16, 16, 1), np.float32)}, np.array([1, 0, 1, 1]))
        for _ in range(2)
    ]
    names = [v.path for v in model.trainable_variables]
    weights = [v.numpy().astype(np.float64) for v in model.trainable_variables]
    velocity = [np.zeros_like(w) for w in weights]
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    for iteration, (inputs, labels) in enumerate(batches):
        reference.set_weights([w.astype(np.float32) for w in weights])
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, reference(inputs))
        grads = tape.gradient(loss, reference.trainable_variables)
        step_lr = lr * gamma**iteration
        for i, (name, grad) in enumerate(zip(names, grads)):
            is_bias = name.endswith("bias")
            lr_mult, decay_mult = (2.0, 0.0) if is_bias else (1.0, 1.0)
            velocity[i] = momentum * velocity[i] + step_lr * lr_mult * (
                grad.numpy() + wd * decay_mult * weights[i]
            )
            weights[i] = weights[i] - velocity[i]
        model.train_on_batch(inputs, labels)
    assert int(model.optimizer.iterations.numpy()) == 2
    assert any(name.endswith("bias") for name in names)
    for name, variable, expected in zip(names, model.trainable_variables, weights):
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-4, atol=1e-6, err_msg=name)


def test_caffe_sgd_config_round_trip():
    optimizer = training.CaffeSGD(bias_lr_mult=3.0, learning_rate=0.1, momentum=0.8)
    restored = training.CaffeSGD.from_config(optimizer.get_config())
    assert restored.bias_lr_mult == 3.0 and restored.momentum == pytest.approx(0.8)


def test_train_lowers_loss_and_ships_loadable_files(image_dir, tmp_path):
    config = _config(steps=60, interval=30, base_lr=0.02)
    pairs = data.make_datasets(data.ImageFolder(image_dir), PAIRS, batch_size=32, seed=0)
    keras.utils.set_random_seed(0)
    _, untrained = training.build_training_model(TINY, config.recipe)
    initial_loss = untrained.evaluate(pairs.validation, verbose=0)[0]

    export = tmp_path / "saved_models" / "tiny"
    result = training.train(
        TINY, config, data.ImageFolder(image_dir), str(tmp_path / "run"), export_dir=str(export),
        verbose=0,
    )
    with open(tmp_path / "run" / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert float(history[-1]["val_loss"]) < initial_loss
    assert result["iterations"] == 60
    for name in ["result.json", "train_config.json", "history.csv", "checkpoints/best.keras"]:
        assert (tmp_path / "run" / name).exists(), name

    card = json.loads((export / "model_card.json").read_text())
    assert card["preset"] == "tiny" and card["steps"] == 60 and card["lytro"] is None
    assert card["held_out_pair_accuracy"] == pytest.approx(result["held_out_pair_accuracy"])
    for key in ["recipe", "data", "date", "commit", "hardware", "training_wall_time_s"]:
        assert key in card, key
    # The shipped model loads in a process that never imports mfkeras.
    script = (
        "import sys, json, numpy as np, keras\n"
        f"m = keras.models.load_model({str(export / 'patch_model.keras')!r})\n"
        "x = np.zeros((1, 16, 16, 1), 'float32')\n"
        "p = m({'patch_a': x, 'patch_b': x}).numpy()\n"
        "assert 'mfkeras' not in sys.modules\n"
        "print(json.dumps({'shape': list(p.shape), 'dtype': str(m.dtype_policy.name)}))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True,
        cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": ""},
    ).stdout.strip().splitlines()[-1]
    assert json.loads(output) == {"shape": [1, 2], "dtype": "float32"}
    # The checkpoint keeps the optimiser and loads with mfkeras imported.
    checkpoint = keras.models.load_model(tmp_path / "run" / "checkpoints" / "best.keras")
    assert isinstance(checkpoint.optimizer, training.CaffeSGD)


class _Interrupt(keras.callbacks.Callback):
    """Kills the run after ``epochs`` epochs, after BackupAndRestore has saved."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt("simulated kill")


def test_interrupted_run_resumes_from_saved_step(image_dir, tmp_path):
    config = _config(steps=40, interval=10)
    run_dir = str(tmp_path / "run")
    source = data.ImageFolder(image_dir)
    with pytest.raises(KeyboardInterrupt):
        training.train(TINY, config, source, run_dir, verbose=0, callbacks=[_Interrupt(2)])
    assert os.path.exists(os.path.join(run_dir, "backup"))
    seen = []

    class _Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(int(self.model.optimizer.iterations.numpy()))

        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    result = training.train(TINY, config, source, run_dir, verbose=0, callbacks=[_Record()])
    # Restored after BackupAndRestore's on_train_begin: iteration 20, epochs 2 and 3 left.
    assert seen == [20, 2, 3]
    assert result["iterations"] == 40
    with open(os.path.join(run_dir, "history.csv")) as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == [0, 1, 2, 3]


def test_mismatched_patch_size_is_rejected(tmp_path):
    config = training.TrainConfig(data=data.PairConfig(patch_size=32))
    with pytest.raises(ValueError, match="data patch_size=32"):
        training.train(TINY, config, data.ImageFolder(str(tmp_path)), str(tmp_path / "run"))


def test_train_script_writes_flags_result_and_export(image_dir, tmp_path):
    script = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "experiments", "train.py")
    command = [
        sys.executable, script, "--preset=liu2017_single_fc", f"--image_dir={image_dir}",
        "--steps=2", "--validation_interval=1", "--batch_size=8", "--validation_pairs=16",
        "--patches_per_image=4", "--step_size=1", "--verbose=2",
        f"--output_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'export'}",
    ]
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=str(tmp_path))
    recorded = json.loads((tmp_path / "run" / "flags.json").read_text())
    assert recorded["preset"] == "liu2017_single_fc" and recorded["steps"] == 2
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["iterations"] == 2 and result["recipe"] == "default"
    assert (tmp_path / "run" / "preview.png").exists()
    card = json.loads((tmp_path / "export" / "model_card.json").read_text())
    assert card["recipe"]["step_size"] == 1 and card["recipe"]["batch_size"] == 8
