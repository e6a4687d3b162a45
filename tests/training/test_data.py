"""Tests of the patch-pair input pipeline (mfkeras.training.data)."""

import os
import warnings

import cv2
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from mfkeras.training import data

SMALL = data.PairConfig(patches_per_image=8, validation_pairs=64, shuffle_buffer=64)


def _texture(seed, height=40, width=48, offset=0.0, scale=1.0):
    """A smooth random texture, uint8, 3 channels."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 4, width // 4, 3))
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image = image + rng.normal(0, 0.05, image.shape)
    return np.clip(255 * (offset + scale * image), 0, 255).astype(np.uint8)


def _write_folder(folder, count=6, **kwargs):
    os.makedirs(folder, exist_ok=True)
    for index in range(count):
        cv2.imwrite(os.path.join(folder, f"image{index}.png"), _texture(index, **kwargs))
    return str(folder)


def _first_batch(dataset):
    inputs, labels = next(iter(dataset))
    return {k: v.numpy() for k, v in inputs.items()}, labels.numpy()


def _gradient_energy(patches):
    return np.sum(np.diff(patches, axis=1) ** 2, axis=(1, 2, 3)) + np.sum(
        np.diff(patches, axis=2) ** 2, axis=(1, 2, 3)
    )


def test_pair_config_json_round_trip():
    config = data.PairConfig(blur_levels=3, min_std=0.02)
    assert data.PairConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "kwargs, message",
    [({"blur_size": 6}, "blur_size=6"), ({"validation_pairs": 3}, "validation_pairs=3"),
     ({"blur_levels": 0}, "blur_levels=0")],
)
def test_pair_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.PairConfig(**kwargs)


def test_source_dict_round_trip():
    for source in (data.ImageFolder("/x"), data.TfdsSource(data_dir="/d", download=True)):
        assert data.source_from_dict(source.to_dict()) == source


def test_gaussian_kernel_matches_opencv():
    np.testing.assert_allclose(
        data.gaussian_kernel(2.0, 7), cv2.getGaussianKernel(7, 2.0)[:, 0], rtol=1e-12
    )


def test_blur_level_k_is_k_gaussian_applications():
    image = np.random.default_rng(0).random((23, 31)).astype(np.float64)
    stack = data.blur_stack(tf.constant(image[..., None], tf.float32), levels=5).numpy()
    assert stack.shape == (6, 23, 31, 1)
    expected = image
    np.testing.assert_allclose(stack[0, ..., 0], image, atol=1e-7)
    for level in range(1, 6):
        expected = cv2.GaussianBlur(expected, (7, 7), 2.0, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(stack[level, ..., 0], expected, atol=2e-6)


def test_image_pairs_balanced_interleaved_and_sharp_first():
    image = _texture(1, 24, 24)
    gray = data.to_grayscale(tf.constant(image))
    patch_a, patch_b, label = (
        t.numpy() for t in data.image_pairs(gray, tf.constant([3, 4]), SMALL, num_positions=20)
    )
    assert patch_a.shape == patch_b.shape == (40, 16, 16, 1)
    np.testing.assert_array_equal(label, np.tile([1, 0], 20))
    # The label-0 pair is the label-1 pair swapped.
    np.testing.assert_array_equal(patch_a[0::2], patch_b[1::2])
    np.testing.assert_array_equal(patch_b[0::2], patch_a[1::2])
    # patch_a of a label-1 pair is a crop of the original image...
    plane = gray.numpy()[..., 0]
    crops = {plane[y:y + 16, x:x + 16].tobytes() for y in range(9) for x in range(9)}
    assert all(p[..., 0].tobytes() in crops for p in patch_a[0::2])
    # ...and carries more gradient energy than its blurred partner.
    assert np.all(_gradient_energy(patch_a[0::2]) > _gradient_energy(patch_b[0::2]))


def test_validation_set_balanced_and_held_out_by_file(tmp_path):
    # Each file has its own brightness band, so a patch's mean names its file.
    folder = tmp_path / "images"
    os.makedirs(folder)
    for index in range(8):
        image = _texture(index, 32, 32, offset=0.1 * index + 0.1, scale=0.04)
        cv2.imwrite(str(folder / f"f{index}.png"), image)
    config = data.PairConfig(patches_per_image=8, validation_fraction=0.25, validation_pairs=64)
    pairs = data.make_datasets(data.ImageFolder(str(folder)), config, batch_size=8, seed=3)
    files = data.scan_image_folder(str(folder))
    train_index, val_index = data.split_holdout(len(files.paths), 0.25, seed=3)
    assert set(train_index).isdisjoint(val_index)
    assert sorted(train_index + val_index) == list(range(8))
    assert pairs.num_validation_images == len(val_index) == 2
    labels, owners = [], set()
    for inputs, label in pairs.validation:
        labels.append(label.numpy())
        first_is_sharp = label.numpy()[:, None, None, None] == 1
        sharp = np.where(first_is_sharp, inputs["patch_a"], inputs["patch_b"])
        owners |= set(np.floor((sharp.mean(axis=(1, 2, 3)) - 0.1) / 0.1 + 0.5).astype(int))
    labels = np.concatenate(labels)
    assert len(labels) == pairs.num_validation_pairs == 64
    assert np.sum(labels == 1) == np.sum(labels == 0) == 32
    assert owners == set(val_index)


def test_same_seed_same_batches_other_seed_differs(tmp_path):
    source = data.ImageFolder(_write_folder(tmp_path / "images"))
    first = _first_batch(data.make_datasets(source, SMALL, batch_size=16, seed=5).train)
    again = _first_batch(data.make_datasets(source, SMALL, batch_size=16, seed=5).train)
    other = _first_batch(data.make_datasets(source, SMALL, batch_size=16, seed=6).train)
    np.testing.assert_array_equal(first[0]["patch_a"], again[0]["patch_a"])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0]["patch_a"], other[0]["patch_a"])


def test_train_batches_have_model_inputs(tmp_path):
    source = data.ImageFolder(_write_folder(tmp_path / "images"))
    inputs, labels = _first_batch(data.make_datasets(source, SMALL, batch_size=16, seed=0).train)
    assert inputs["patch_a"].shape == inputs["patch_b"].shape == (16, 16, 16, 1)
    assert inputs["patch_a"].dtype == np.float32 and labels.dtype == np.int32
    assert 0.0 <= inputs["patch_a"].min() and inputs["patch_a"].max() <= 1.0


def test_flat_patches_are_dropped():
    image = np.zeros((32, 64), np.float32) + 0.5
    image[:, 32:] = np.random.default_rng(0).random((32, 32))
    gray = tf.constant(image[..., None])
    keep_all = data.image_pairs(gray, tf.constant([0, 1]), SMALL, num_positions=200)
    filtered = data.image_pairs(
        gray, tf.constant([0, 1]), data.PairConfig(min_std=0.02), num_positions=200
    )
    assert keep_all[2].shape[0] == 400
    count = filtered[2].shape[0]
    assert 0 < count < 400 and count % 2 == 0
    stds = np.maximum(np.std(filtered[0], axis=(1, 2, 3)), np.std(filtered[1], axis=(1, 2, 3)))
    assert stds.min() >= 0.02
    assert np.sum(filtered[2].numpy() == 1) == count // 2


def test_folder_is_recursive_and_reads_every_format(tmp_path):
    folder = tmp_path / "images"
    os.makedirs(folder / "nested" / "deeper")
    for index, extension in enumerate(["jpg", "png", "bmp", "tif"]):
        cv2.imwrite(str(folder / "nested" / "deeper" / f"i{index}.{extension}"), _texture(index))
    (folder / "notes.txt").write_text("not an image")
    files = data.scan_image_folder(str(folder))
    assert [os.path.splitext(p)[1] for p in files.paths] == [".jpg", ".png", ".bmp", ".tif"]
    pairs = data.make_datasets(data.ImageFolder(str(folder)), SMALL, batch_size=8)
    assert pairs.num_train_images + pairs.num_validation_images == 4
    assert _first_batch(pairs.train)[0]["patch_a"].shape == (8, 16, 16, 1)


def test_corrupt_and_tiny_files_are_skipped_with_one_counted_warning(tmp_path):
    folder = _write_folder(tmp_path / "images", count=3)
    with open(os.path.join(folder, "garbage.jpg"), "wb") as f:
        f.write(b"\xff\xd8 definitely not a jpeg")
    good = open(os.path.join(folder, "image0.png"), "rb").read()
    with open(os.path.join(folder, "truncated.png"), "wb") as f:
        f.write(good[: len(good) // 3])
    cv2.imwrite(os.path.join(folder, "tiny.png"), _texture(9, 8, 8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = data.scan_image_folder(folder)
    messages = [str(w.message) for w in caught if "Skipped" in str(w.message)]
    assert len(messages) == 1
    assert "Skipped 2 unreadable and 1 too small" in messages[0]
    assert (files.num_unreadable, files.num_too_small, len(files.paths)) == (2, 1, 3)


def test_empty_folder_is_an_error(tmp_path):
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="No image files"):
        data.make_datasets(data.ImageFolder(str(tmp_path / "empty")))


def test_folder_without_usable_images_is_an_error(tmp_path):
    os.makedirs(tmp_path / "bad")
    (tmp_path / "bad" / "a.png").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="Skipped 1 unreadable"):
        with pytest.raises(ValueError, match="None of the 1 image files"):
            data.scan_image_folder(str(tmp_path / "bad"))


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        data.scan_image_folder(str(tmp_path / "missing"))


def test_tfds_source_with_mock_data_skips_tiny_images():
    sizes = [(8, 12), (40, 36), (5, 5), (32, 48), (20, 20), (10, 50)]

    def as_dataset(self, *args, **kwargs):
        def examples():
            for index, (height, width) in enumerate(sizes):
                yield {"image": _texture(index, height, width)}

        return tf.data.Dataset.from_generator(
            examples, output_signature={"image": tf.TensorSpec((None, None, 3), tf.uint8)}
        )

    config = data.PairConfig(patches_per_image=4, validation_pairs=32, shuffle_buffer=32)
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        pairs = data.make_datasets(data.TfdsSource(), config, batch_size=8, seed=0)
        inputs, labels = _first_batch(pairs.train)
    assert inputs["patch_a"].shape == (8, 16, 16, 1)
    # Only the three images of at least 16x16 give pairs: 3 images x 4 positions x 2.
    assert pairs.num_validation_pairs == 24
    assert pairs.description["kind"] == "tfds"


def test_tfds_random_mock_data_works():
    with tfds.testing.mock_data(num_examples=6):
        pairs = data.make_datasets(data.TfdsSource(), SMALL, batch_size=4, seed=0)
        inputs, labels = _first_batch(pairs.train)
    assert inputs["patch_b"].shape == (4, 16, 16, 1)
    assert set(labels) <= {0, 1}


def test_tfds_without_data_explains_the_way_out(tmp_path):
    with pytest.raises(RuntimeError, match=r"data_dir.*image_dir"):
        data.make_datasets(data.TfdsSource(data_dir=str(tmp_path), download=False))


def test_preview_writes_a_png(tmp_path):
    source = data.ImageFolder(_write_folder(tmp_path / "images"))
    pairs = data.make_datasets(source, SMALL, batch_size=8)
    path = data.preview(pairs.train, str(tmp_path / "out" / "preview.png"), num_pairs=6, columns=3)
    image = cv2.imread(path)
    assert image is not None and image.shape[0] > 50 and image.shape[1] > 100


def test_development_images_can_be_kept_out_of_training(tmp_path):
    from mfkeras.training.split import is_development_image

    folder = _write_folder(tmp_path / "images", count=24)
    names = sorted(os.listdir(folder))
    development = [n for n in names if is_development_image(n)]
    assert 0 < len(development) < len(names)
    every = data.scan_image_folder(folder)
    kept = data.scan_image_folder(folder, exclude_development=True)
    assert sorted(os.path.basename(p) for p in every.paths) == names
    assert sorted(os.path.basename(p) for p in kept.paths) == sorted(set(names) - set(development))
    source = data.ImageFolder(folder, exclude_development=True)
    assert data.source_from_dict(source.to_dict()) == source
    assert data.source_from_dict({"kind": "folder", "path": folder}) == data.ImageFolder(folder)
