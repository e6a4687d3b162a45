"""Training data and training of the per-pixel decision network."""

import os

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from mfkeras.network.decision_config import DecisionConfig
from mfkeras.training import decision_data, decision_trainer
from mfkeras.training.data import ImageFolder, TfdsSource
from mfkeras.training.trainer import Recipe

TINY = DecisionConfig(name="tiny", widths=(4, 4), dilations=(1, 2), feature_channels=3, head_units=3)
SMALL_DATA = decision_data.DecisionDataConfig(crop_size=32, validation_fraction=0.25)


def _scene(index: int, size: int = 72) -> np.ndarray:
    """A textured background with a differently textured disc: GrabCut finds the disc."""
    rng = np.random.default_rng(index)
    image = (rng.random((size, size, 3)) * 120).astype(np.uint8)
    disc = np.zeros((size, size), np.uint8)
    cv2.circle(disc, (size // 2 + index % 5, size // 2), size // 4, 1, -1)
    image[disc > 0] = 130 + (rng.random((int(disc.sum()), 3)) * 120).astype(np.uint8)
    return image


def _folder(tmp_path, count=4):
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(count):
        cv2.imwrite(str(folder / f"scene_{index}.png"), cv2.cvtColor(_scene(index), cv2.COLOR_RGB2BGR))
    return folder


def test_pair_target_by_hand():
    labels = np.array([[0, 1, 2]])
    target, weight = decision_data.pair_target(labels, 0, 2)
    # Pixel of layer 0: frame 0 is in focus; layer 2: frame 2; layer 1: both one step away.
    np.testing.assert_array_equal(target, [[1, 0, 0]])
    np.testing.assert_array_equal(weight, [[1, 0, 1]])


def test_boundary_pixels_mark_label_changes():
    labels = np.zeros((4, 5), np.uint8)
    labels[:, 3:] = 1
    np.testing.assert_array_equal(decision_data.boundary_pixels(labels), [[r, 2] for r in range(4)])


def test_crops_carry_consistent_targets():
    samples = decision_data.generate_samples([_scene(i) for i in range(3)], seed=1, config=SMALL_DATA)
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b, targets = decision_data.make_crop(samples, 0, SMALL_DATA, rng)
        assert a.shape == b.shape == (32, 32, 1)
        assert targets.shape == (32, 32, len(decision_data.TARGET_CHANNELS))
        np.testing.assert_array_equal(targets[..., 2:3], a)
        np.testing.assert_array_equal(targets[..., 3:4], b)
        assert set(np.unique(targets[..., 0])) <= {0.0, 1.0}


def test_generation_is_deterministic_and_cached_exactly(tmp_path):
    images = [_scene(i) for i in range(3)]
    first = decision_data.generate_samples(images, seed=3, config=SMALL_DATA)
    second = decision_data.generate_samples(images, seed=3, config=SMALL_DATA)
    path = str(tmp_path / "samples.npz")
    decision_data.save_samples(first, path)
    loaded = decision_data.load_samples(path)
    assert len(first) == len(loaded) == 3
    for part in ("frames", "truth", "labels"):
        for x, y, z in zip(getattr(first, part), getattr(second, part), getattr(loaded, part)):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]


def test_loss_and_accuracy_by_hand():
    target = np.array([1.0, 0.0, 1.0, 0.0])
    weight = np.array([1.0, 1.0, 0.0, 1.0])
    a = np.array([0.2, 0.4, 0.6, 0.8])
    b = np.array([0.1, 0.3, 0.5, 0.7])
    truth = np.array([0.2, 0.3, 0.5, 0.9])
    p = np.array([0.9, 0.2, 0.5, 0.6])
    targets = np.stack([target, weight, a, b, truth], -1).reshape(1, 2, 2, 5).astype(np.float32)
    probability = p.reshape(1, 2, 2, 1).astype(np.float32)
    def bce(y):
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))

    error_a, error_b = np.abs(a - truth), np.abs(b - truth)  # 0, .1, .1, .1 and .1, 0, 0, .2
    best = (error_a < error_b).astype(float)  # 1, 0, 0, 1
    importance = np.minimum(np.abs(error_a - error_b) / decision_trainer.BEST_SCALE, 1.0)
    expected = (
        decision_trainer.LABEL_WEIGHT * (weight * bce(target)).sum() / (weight.sum() + 1)
        + np.mean(importance * bce(best))
        + decision_trainer.FUSED_ERROR_WEIGHT * np.mean(np.abs(p * a + (1 - p) * b - truth))
    )
    loss = keras.ops.convert_to_numpy(decision_trainer.decision_loss(targets, probability))
    np.testing.assert_allclose(loss, [expected], rtol=1e-5)
    fused_error = np.mean(np.abs(p * a + (1 - p) * b - truth))
    heavier = keras.ops.convert_to_numpy(decision_trainer.decision_loss(targets, probability, 30.0))
    np.testing.assert_allclose(heavier, [expected + (30.0 - decision_trainer.FUSED_ERROR_WEIGHT) * fused_error], rtol=1e-5)
    # The compiled model trains on the weight it was given.
    recipe = Recipe("tiny", base_lr=0.01, step_size=10, steps=10, batch_size=1)
    model = decision_trainer.compile_decision_model(TINY, recipe, fused_error_weight=30.0)
    compiled = keras.ops.convert_to_numpy(model.loss(targets, probability))
    np.testing.assert_allclose(compiled, heavier, rtol=1e-6)
    with pytest.raises(ValueError, match="fused_error_weight"):
        decision_trainer.compile_decision_model(TINY, recipe, fused_error_weight=-1.0)
    accuracy = keras.ops.convert_to_numpy(decision_trainer.decision_accuracy(targets, probability))
    np.testing.assert_allclose(accuracy, [2 / 3], rtol=1e-6)  # pixel 4 (0.6 > 0.5, target 0) is wrong


def test_folder_images_leave_out_the_development_split(tmp_path):
    folder = _folder(tmp_path, count=12)
    from mfkeras.training.split import is_development_image

    kept = [n for n in sorted(os.listdir(folder)) if not is_development_image(n)]
    assert len(kept) == 11  # scene_7 is the one development image among the twelve
    assert len(decision_data.folder_images(str(folder), True, 400)) == len(kept)
    assert len(decision_data.folder_images(str(folder), False, 400)) == 12


def test_tfds_source_with_mock_data():
    def as_dataset(self, *args, **kwargs):
        def examples():
            for index in range(3):
                yield {"image": _scene(index), "image/filename": f"scene_{index}.jpg"}

        return tf.data.Dataset.from_generator(
            examples,
            output_signature={
                "image": tf.TensorSpec((None, None, 3), tf.uint8),
                "image/filename": tf.TensorSpec((), tf.string),
            },
        )

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        images = decision_trainer.source_images(TfdsSource(), max_side=400)
    assert len(images) == 3
    np.testing.assert_array_equal(images[1], _scene(1))


def test_a_short_run_trains_resumes_and_exports(tmp_path):
    source = ImageFolder(str(_folder(tmp_path, count=4)))
    recipe = Recipe(name="short", base_lr=0.05, step_size=100, steps=4, batch_size=2, weight_decay=1e-4)
    run_dir = str(tmp_path / "run")
    result = decision_trainer.train_decision_model(
        TINY, source, run_dir, recipe=recipe, data_config=SMALL_DATA, validation_interval=2,
        validation_crops=4, verbose=0,
    )
    assert result["steps"] == 4 and np.isfinite(result["best_val_loss"])
    assert os.path.isfile(os.path.join(run_dir, decision_data.CACHE_FILE))
    log = open(os.path.join(run_dir, "log.csv")).read().splitlines()
    assert len(log) == 3  # header and two epochs
    # Run again: the cached samples are reused and the finished run trains no further epoch.
    decision_trainer.train_decision_model(
        TINY, source, run_dir, recipe=recipe, data_config=SMALL_DATA, validation_interval=2,
        validation_crops=4, verbose=0,
    )
    assert len(open(os.path.join(run_dir, "log.csv")).read().splitlines()) == 3
    export_dir = decision_trainer.export_decision_model(run_dir, str(tmp_path / "shipped"))
    model = keras.models.load_model(os.path.join(export_dir, "decision_model.keras"), compile=False)
    assert model.count_params() == decision_trainer.build_decision_model(TINY).count_params()


def test_too_small_samples_are_refused():
    samples = decision_data.generate_samples([_scene(0, size=72)], seed=0, config=SMALL_DATA)
    with pytest.raises(ValueError, match="crop_size=128"):
        next(decision_data.crop_stream(samples, decision_data.DecisionDataConfig(crop_size=128), 0))


@pytest.mark.parametrize("preset", ["pixel_decision", "li2018"])
def test_cli_names_a_missing_image_folder_in_one_line(tmp_path, preset):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "mfkeras.cli.train", f"--preset={preset}", f"--image_dir={tmp_path / 'missing'}",
         f"--output_dir={tmp_path / 'run'}", "--export_dir="],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 2, proc.stderr[-1000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mfkeras-train: error:")]
    assert len(errors) == 1 and "missing" in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("share, frames", [(0.0, 2), (1.0, 3)])
def test_stack_share_sets_how_many_samples_are_stacks(share, frames):
    config = decision_data.DecisionDataConfig(crop_size=32, stack_share=share)
    samples = decision_data.generate_samples([_scene(i) for i in range(3)], seed=2, config=config)
    assert len(samples) == 3
    assert [len(f) for f in samples.frames] == [frames] * 3


@pytest.mark.parametrize("flag, name", [("--stack_share=1.5", "stack_share"), ("--fused_error_weight=-1", "fused_error_weight")])
def test_cli_refuses_bad_decision_settings_in_one_line(tmp_path, flag, name):
    import subprocess
    import sys

    folder = _folder(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "mfkeras.cli.train", "--preset=pixel_decision", f"--image_dir={folder}",
         flag, f"--output_dir={tmp_path / 'run'}", "--export_dir="],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 2, proc.stderr[-1000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mfkeras-train: error:")]
    assert len(errors) == 1 and name in errors[0]
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "run")  # refused before the run directory is made
