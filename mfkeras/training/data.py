"""Training pairs for the patch classifier: images -> blurred copies -> 16x16 patch pairs.

Every image is decoded, converted to grayscale and scaled to [0, 1]. Blur level
``k`` (1..K) is ``k`` applications of a Gaussian filter (sigma 2, 7x7 support,
borders reflected like OpenCV's default ``BORDER_REFLECT_101``). Patches are cut
at the same random positions in the sharp image and in one randomly chosen
blur level, and each position yields two pairs: ``(sharp, blurred)`` with
label 1 ("patch_a is the focused one") and ``(blurred, sharp)`` with label 0,
so the labels are balanced exactly.

The hot path is pure TensorFlow (no ``py_function``): parallel ``map``, stateless
random ops seeded by ``(seed, element index)``, hence deterministic given a seed.
The validation pairs come from images held out by file, never by patch.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Optional, Union

import numpy as np
import tensorflow as tf

from mfkeras.io.config_json import JsonConfig
from mfkeras.training.split import is_development_image
from mfkeras.io.images import IMAGE_EXTENSIONS
from mfkeras.network.model import INPUT_A, INPUT_B

# TensorFlow has no TIFF decoder: those files are decoded once by OpenCV while
# scanning the folder and kept in memory as PNG bytes.
_TIFF_EXTENSIONS = (".tif", ".tiff")


@dataclasses.dataclass(frozen=True)
class PairConfig(JsonConfig):
    """How patch pairs are made from images.

    Attributes:
        patch_size: side of the square patches.
        blur_levels: K, the number of blur levels; level k is k Gaussian passes.
        blur_sigma: standard deviation of the Gaussian, in pixels.
        blur_size: side of the Gaussian's support (odd).
        patches_per_image: random positions cut from a training image each time
            it is visited; each position gives two pairs.
        min_std: drop a position when both of its patches have a standard
            deviation below this (near-flat patches carry no focus cue); 0 keeps
            all.
        validation_fraction: share of the folder's images held out for
            validation (by file).
        validation_pairs: size of the fixed validation set (even).
        shuffle_buffer: pairs held by the shuffle buffer of the training stream.
    """

    patch_size: int = 16
    blur_levels: int = 5
    blur_sigma: float = 2.0
    blur_size: int = 7
    patches_per_image: int = 64
    min_std: float = 0.0
    validation_fraction: float = 0.1
    validation_pairs: int = 8192
    shuffle_buffer: int = 16384

    def __post_init__(self):
        if self.patch_size < 2:
            raise ValueError(f"patch_size must be >= 2. Received: patch_size={self.patch_size}")
        if self.blur_levels < 1:
            raise ValueError(f"blur_levels must be >= 1. Received: blur_levels={self.blur_levels}")
        if self.blur_sigma <= 0:
            raise ValueError(f"blur_sigma must be > 0. Received: blur_sigma={self.blur_sigma}")
        if self.blur_size < 1 or self.blur_size % 2 == 0:
            raise ValueError(
                f"blur_size must be a positive odd integer. Received: blur_size={self.blur_size}"
            )
        if self.patches_per_image < 1:
            raise ValueError(
                "patches_per_image must be >= 1. "
                f"Received: patches_per_image={self.patches_per_image}"
            )
        if self.min_std < 0:
            raise ValueError(f"min_std must be >= 0. Received: min_std={self.min_std}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                "validation_fraction must be in (0, 1). "
                f"Received: validation_fraction={self.validation_fraction}"
            )
        if self.validation_pairs < 2 or self.validation_pairs % 2:
            raise ValueError(
                "validation_pairs must be an even number >= 2. "
                f"Received: validation_pairs={self.validation_pairs}"
            )
        if self.shuffle_buffer < 1:
            raise ValueError(
                f"shuffle_buffer must be >= 1. Received: shuffle_buffer={self.shuffle_buffer}"
            )

    @property
    def min_image_size(self) -> int:
        """Smallest usable image side: a patch must fit and the blur border must reflect."""
        return max(self.patch_size, self.blur_size // 2 + 1)



@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """A folder of images, searched recursively (jpg, jpeg, png, bmp, tif, tiff).

    Attributes:
        path: the folder. A share of its files (``PairConfig.validation_fraction``)
            is held out for validation.
        exclude_development: leave out the development split's images
            (:func:`is_development_image`), so that models are evaluated on images they
            were never trained on.
    """

    path: str
    exclude_development: bool = False

    def to_dict(self) -> dict:
        """Returns the source as plain JSON-serialisable types."""
        return {"kind": "folder", "path": self.path, "exclude_development": self.exclude_development}


@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """A TensorFlow Datasets image dataset, ``voc/2012`` by default.

    Attributes:
        name: the tfds dataset name; examples must have an ``"image"`` feature.
        data_dir: where tfds keeps prepared data (``None``: tfds' default).
        download: whether tfds may download and prepare the data.
        train_split: split whose images make training pairs.
        validation_split: split whose images make the held-out pairs.
    """

    name: str = "voc/2012"
    data_dir: Optional[str] = None
    download: bool = False
    train_split: str = "train"
    validation_split: str = "validation"

    def to_dict(self) -> dict:
        """Returns the source as plain JSON-serialisable types."""
        return {"kind": "tfds", **dataclasses.asdict(self)}


DataSource = Union[ImageFolder, TfdsSource]


def source_from_dict(data: dict) -> DataSource:
    """Rebuilds a data source from its ``to_dict()`` output.

    Args:
        data: a dict with ``"kind"`` ``"folder"`` or ``"tfds"`` and the fields.

    Returns:
        An :class:`ImageFolder` or a :class:`TfdsSource`.
    """
    data = dict(data)
    kind = data.pop("kind", None)
    if kind == "folder":
        return ImageFolder(**data)
    if kind == "tfds":
        return TfdsSource(**data)
    raise ValueError(f"Unknown data source kind. Expected 'folder' or 'tfds'. Received: {kind!r}")


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    """The usable images of a folder, as found by :func:`scan_image_folder`.

    Attributes:
        paths: usable files, sorted.
        contents: for each file, its bytes when they had to be converted (TIFF
            to PNG), else ``b""`` (read from disk when needed).
        num_unreadable: files skipped because they could not be decoded.
        num_too_small: files skipped because they are smaller than a patch.
    """

    paths: tuple
    contents: tuple
    num_unreadable: int = 0
    num_too_small: int = 0

    def subset(self, indices) -> "ImageFiles":
        """Returns the files at ``indices`` (skip counts are kept)."""
        return dataclasses.replace(
            self,
            paths=tuple(self.paths[i] for i in indices),
            contents=tuple(self.contents[i] for i in indices),
        )


@dataclasses.dataclass(frozen=True)
class PairData:
    """Datasets of patch pairs ready for ``model.fit``.

    Attributes:
        train: endless, shuffled, batched ``({"patch_a", "patch_b"}, label)``.
        validation: the fixed held-out pairs, batched, same structure.
        num_train_images: images feeding ``train`` (``None`` if unknown).
        num_validation_images: held-out images feeding ``validation``.
        num_validation_pairs: pairs in ``validation``.
        description: JSON-friendly summary (source, counts) for model cards.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    num_train_images: Optional[int]
    num_validation_images: Optional[int]
    num_validation_pairs: int
    description: dict


def gaussian_kernel(sigma: float = 2.0, size: int = 7) -> np.ndarray:
    """Returns the normalised 1-D Gaussian taps (OpenCV's ``getGaussianKernel``).

    Args:
        sigma: standard deviation in pixels.
        size: number of taps (odd).

    Returns:
        float64 array of shape ``(size,)`` summing to 1.
    """
    if size < 1 or size % 2 == 0 or sigma <= 0:
        raise ValueError(
            f"Expected an odd size >= 1 and sigma > 0. Received: size={size}, sigma={sigma}"
        )
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-(x**2) / (2.0 * sigma**2))
    return taps / taps.sum()


def blur_stack(image: tf.Tensor, levels: int, sigma: float = 2.0, size: int = 7) -> tf.Tensor:
    """Returns the image and its ``levels`` successively blurred copies.

    Level k is k applications of the separable Gaussian, each with reflected
    borders (``cv2.BORDER_REFLECT_101``), so level k equals k calls of
    ``cv2.GaussianBlur(x, (size, size), sigma)``.

    Args:
        image: float32 tensor (H, W, 1); H and W must exceed ``size // 2``.
        levels: number of blurred copies K.
        sigma: Gaussian standard deviation.
        size: Gaussian support.

    Returns:
        float32 tensor (K + 1, H, W, 1); index 0 is the input.
    """
    taps = tf.constant(gaussian_kernel(sigma, size), tf.float32)
    rows = tf.reshape(taps, (size, 1, 1, 1))
    cols = tf.reshape(taps, (1, size, 1, 1))
    half = size // 2
    current = image[tf.newaxis]
    stack = [current]
    for _ in range(levels):
        padded = tf.pad(current, [[0, 0], [half, half], [half, half], [0, 0]], mode="REFLECT")
        current = tf.nn.conv2d(padded, rows, strides=1, padding="VALID")
        current = tf.nn.conv2d(current, cols, strides=1, padding="VALID")
        stack.append(current)
    return tf.concat(stack, axis=0)


def to_grayscale(image: tf.Tensor) -> tf.Tensor:
    """Converts a decoded image (uint8 or float, 1/3/4 channels) to float32 (H, W, 1) in [0, 1].

    Args:
        image: (H, W, C) tensor; integer types are scaled by their maximum.

    Returns:
        float32 (H, W, 1).
    """
    image = tf.image.convert_image_dtype(image, tf.float32)
    channels = image.shape[-1]
    if channels == 4:
        image = image[..., :3]
        channels = 3
    if channels == 3:
        image = tf.image.rgb_to_grayscale(image)
    elif channels is None:
        image = tf.cond(
            tf.shape(image)[-1] >= 3,
            lambda: tf.image.rgb_to_grayscale(image[..., :3]),
            lambda: image[..., :1],
        )
    return tf.clip_by_value(tf.ensure_shape(image, (None, None, 1)), 0.0, 1.0)


def image_pairs(
    image: tf.Tensor, seed: tf.Tensor, config: PairConfig, num_positions: Optional[int] = None
):
    """Cuts labelled patch pairs from one grayscale image.

    For every random position, a blur level is drawn uniformly in 1..K and two
    pairs are emitted next to each other: ``(sharp, blurred)`` label 1, then
    ``(blurred, sharp)`` label 0. Positions whose two patches both have a
    standard deviation below ``config.min_std`` are dropped.

    Args:
        image: float32 (H, W, 1) in [0, 1], at least ``config.min_image_size`` a side.
        seed: int tensor of shape (2,) for the stateless random ops.
        config: the pair recipe.
        num_positions: positions to draw (default ``config.patches_per_image``).

    Returns:
        ``(patch_a, patch_b, label)``: float32 (2N, S, S, 1) twice and int32 (2N,).
    """
    size = config.patch_size
    count = num_positions or config.patches_per_image
    stack = blur_stack(image, config.blur_levels, config.blur_sigma, config.blur_size)[..., 0]
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    top = tf.random.stateless_uniform([count], seeds[0], 0, height - size + 1, tf.int32)
    left = tf.random.stateless_uniform([count], seeds[1], 0, width - size + 1, tf.int32)
    level = tf.random.stateless_uniform(
        [count], seeds[2], 1, config.blur_levels + 1, tf.int32
    )
    offsets = tf.range(size, dtype=tf.int32)
    rows = tf.broadcast_to((top[:, None] + offsets)[:, :, None], (count, size, size))
    cols = tf.broadcast_to((left[:, None] + offsets)[:, None, :], (count, size, size))

    def cut(levels):
        planes = tf.broadcast_to(levels[:, None, None], (count, size, size))
        return tf.gather_nd(stack, tf.stack([planes, rows, cols], axis=-1))

    sharp = cut(tf.zeros_like(level))
    blurred = cut(level)
    if config.min_std > 0:
        keep = tf.maximum(
            tf.math.reduce_std(sharp, axis=[1, 2]), tf.math.reduce_std(blurred, axis=[1, 2])
        ) >= config.min_std
        sharp = tf.boolean_mask(sharp, keep)
        blurred = tf.boolean_mask(blurred, keep)
    kept = tf.shape(sharp)[0]
    # Interleave so that any even-length prefix stays balanced.
    patch_a = tf.reshape(tf.stack([sharp, blurred], axis=1), (-1, size, size, 1))
    patch_b = tf.reshape(tf.stack([blurred, sharp], axis=1), (-1, size, size, 1))
    label = tf.tile(tf.constant([1, 0], tf.int32), [kept])
    return patch_a, patch_b, label


def _fits(image: tf.Tensor, min_size: int) -> tf.Tensor:
    shape = tf.shape(image)
    return tf.logical_and(shape[0] >= min_size, shape[1] >= min_size)


def scan_image_folder(path: str, min_size: int = 16, exclude_development: bool = False) -> ImageFiles:
    """Finds the usable images of a folder, recursively.

    Each candidate file is decoded once; unreadable files and files smaller than
    ``min_size`` are skipped and counted, with one warning for all of them.

    Args:
        path: the folder.
        min_size: smallest usable height and width.
        exclude_development: leave out the development split (:func:`is_development_image`).

    Returns:
        The usable files as :class:`ImageFiles`.

    Raises:
        FileNotFoundError: ``path`` is not a directory.
        ValueError: no image file, or no usable one, is found.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Expected a directory of images. Received: path={path!r}")
    candidates = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not (
                exclude_development and is_development_image(name)
            ):
                candidates.append(os.path.join(root, name))
    if not candidates:
        raise ValueError(
            f"No image files ({', '.join(IMAGE_EXTENSIONS)}) found under path={path!r}."
        )
    paths, contents, unreadable, too_small = [], [], [], []
    for file_path in candidates:
        shape, inline = _probe_image(file_path)
        if shape is None:
            unreadable.append(file_path)
        elif min(shape) < min_size:
            too_small.append(file_path)
        else:
            paths.append(file_path)
            contents.append(inline)
    if unreadable or too_small:
        examples = ", ".join(os.path.basename(p) for p in (unreadable + too_small)[:5])
        warnings.warn(
            f"Skipped {len(unreadable)} unreadable and {len(too_small)} too small "
            f"(< {min_size} px) of {len(candidates)} image files under {path!r} (e.g. {examples}).",
            stacklevel=2,
        )
    if not paths:
        raise ValueError(
            f"None of the {len(candidates)} image files under path={path!r} is usable: "
            f"{len(unreadable)} unreadable, {len(too_small)} smaller than {min_size} px."
        )
    return ImageFiles(tuple(paths), tuple(contents), len(unreadable), len(too_small))


def _probe_image(file_path: str):
    """Returns ``((height, width), inline_bytes)``, or ``(None, b"")`` if unreadable."""
    if file_path.lower().endswith(_TIFF_EXTENSIONS):
        import cv2  # Only TIFF needs OpenCV.

        image = cv2.imread(file_path, cv2.IMREAD_COLOR)
        if image is None:
            return None, b""
        ok, encoded = cv2.imencode(".png", image)
        return (image.shape[:2] if ok else None), (encoded.tobytes() if ok else b"")
    try:
        data = tf.io.read_file(file_path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.OpError, ValueError):
        return None, b""
    return tuple(int(d) for d in image.shape[:2]), b""


def split_holdout(num_files: int, fraction: float, seed: int):
    """Splits file indices into training and held-out sets.

    Args:
        num_files: number of files (>= 2).
        fraction: share held out; at least one file on each side.
        seed: seed of the permutation.

    Returns:
        ``(train_indices, validation_indices)``, each sorted.
    """
    if num_files < 2:
        raise ValueError(
            f"Need at least 2 usable images to hold some out. Received: num_files={num_files}"
        )
    order = np.random.default_rng(seed).permutation(num_files)
    held = min(num_files - 1, max(1, int(round(num_files * fraction))))
    return sorted(order[held:].tolist()), sorted(order[:held].tolist())


def _decode_file(path: tf.Tensor, inline: tf.Tensor) -> tf.Tensor:
    data = tf.cond(tf.strings.length(inline) > 0, lambda: inline, lambda: tf.io.read_file(path))
    return to_grayscale(tf.io.decode_image(data, channels=3, expand_animations=False))


def _folder_images(files: ImageFiles) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((list(files.paths), list(files.contents)))


def _pairs(
    elements: tf.data.Dataset,
    to_image,
    config: PairConfig,
    seed: int,
    num_positions: Optional[int] = None,
) -> tf.data.Dataset:
    """Maps (index, element) to unbatched pair examples."""

    def make(index, element):
        image = to_image(*element) if isinstance(element, tuple) else to_image(element)
        element_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])
        return image, element_seed

    def cut(image, element_seed):
        patch_a, patch_b, label = image_pairs(image, element_seed, config, num_positions)
        return {INPUT_A: patch_a, INPUT_B: patch_b}, label

    return (
        elements.enumerate()
        .map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .filter(lambda image, _: _fits(image, config.min_image_size))
        .map(cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .unbatch()
    )


def _train_stream(elements, to_image, num_elements, config, batch_size, seed):
    buffer = num_elements if num_elements else 512
    elements = elements.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    return (
        _pairs(elements, to_image, config, seed)
        .shuffle(config.shuffle_buffer, seed=seed + 1)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def _fixed_pairs(elements, to_image, num_elements, config, batch_size, seed):
    """Materialises the validation pairs once, in memory, spread over all held-out images."""
    per_image = config.patches_per_image
    if num_elements:
        per_image = max(1, math.ceil(config.validation_pairs / (2 * num_elements)))
    stream = _pairs(elements, to_image, config, seed, per_image).take(config.validation_pairs)
    batches = list(stream.batch(4096).as_numpy_iterator())
    if not batches:
        raise ValueError(
            "The held-out images gave no validation pairs (all too small or flat; "
            f"min_std={config.min_std})."
        )
    inputs = {key: np.concatenate([b[0][key] for b in batches]) for key in (INPUT_A, INPUT_B)}
    labels = np.concatenate([b[1] for b in batches])
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE), len(labels)


def make_datasets(
    source: DataSource,
    config: PairConfig = PairConfig(),
    batch_size: int = 128,
    seed: int = 0,
    validation_batch_size: Optional[int] = None,
) -> PairData:
    """Builds the training stream and the fixed held-out pairs.

    For an :class:`ImageFolder`, ``config.validation_fraction`` of its usable
    files (chosen by ``seed``) are held out. For a :class:`TfdsSource`, the
    validation split is the held-out set.

    Args:
        source: where the images come from.
        config: how pairs are made.
        batch_size: training batch size.
        seed: makes file split, patch positions, blur levels and order reproducible.
        validation_batch_size: batch size of the validation set (default ``batch_size``).

    Returns:
        A :class:`PairData`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    validation_batch_size = validation_batch_size or batch_size
    if isinstance(source, ImageFolder):
        files = scan_image_folder(source.path, config.min_image_size, source.exclude_development)
        train_index, val_index = split_holdout(len(files.paths), config.validation_fraction, seed)
        train_files, val_files = files.subset(train_index), files.subset(val_index)
        train = _train_stream(
            _folder_images(train_files), _decode_file, len(train_index), config, batch_size, seed
        )
        validation, num_pairs = _fixed_pairs(
            _folder_images(val_files),
            _decode_file,
            len(val_index),
            config,
            validation_batch_size,
            seed + 7919,
        )
        description = {
            **source.to_dict(),
            "num_images": len(files.paths),
            "num_unreadable": files.num_unreadable,
            "num_too_small": files.num_too_small,
            "train_images": len(train_index),
            "validation_images": len(val_index),
            "validation_pairs": num_pairs,
        }
        return PairData(train, validation, len(train_index), len(val_index), num_pairs, description)
    if isinstance(source, TfdsSource):
        train_split, val_split, info = _load_tfds(source)

        def to_image(example):
            return to_grayscale(example["image"])

        num_train = _split_size(info, source.train_split)
        num_val = _split_size(info, source.validation_split)
        train = _train_stream(
            train_split, to_image, min(num_train or 512, 2048), config, batch_size, seed
        )
        validation, num_pairs = _fixed_pairs(
            val_split, to_image, num_val, config, validation_batch_size, seed + 7919
        )
        description = {
            **source.to_dict(),
            "train_images": num_train,
            "validation_images": num_val,
            "validation_pairs": num_pairs,
        }
        return PairData(train, validation, num_train, num_val, num_pairs, description)
    raise TypeError(
        f"Expected an ImageFolder or a TfdsSource. Received: {type(source).__name__} {source!r}"
    )


def _split_size(info, split: str) -> Optional[int]:
    try:
        return int(info.splits[split].num_examples) or None
    except (KeyError, TypeError, ValueError):
        return None


def _load_tfds(source: TfdsSource):
    import tensorflow_datasets as tfds  # Imported lazily: heavy, and folders don't need it.

    try:
        (train, validation), info = tfds.load(
            source.name,
            split=[source.train_split, source.validation_split],
            data_dir=source.data_dir,
            download=source.download,
            shuffle_files=False,
            with_info=True,
        )
    except Exception as error:  # tfds raises AssertionError, OSError, network errors...
        raise RuntimeError(
            f"Could not load tfds dataset {source.name!r} (data_dir={source.data_dir!r}, "
            f"download={source.download}): {error}\n"
            "Point data_dir at a copy prepared with "
            f"`tfds build {source.name} --data_dir=...` on a machine with internet access, "
            "or train from a folder of images with image_dir."
        ) from error
    return train, validation, info


def preview(dataset: tf.data.Dataset, path: str, num_pairs: int = 16, columns: int = 4) -> str:
    """Writes a PNG grid of sample pairs with their labels.

    Args:
        dataset: batched or unbatched ``({"patch_a", "patch_b"}, label)`` pairs.
        path: the PNG to write; parent folders are created.
        num_pairs: how many pairs to show.
        columns: pairs per row.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if num_pairs < 1 or columns < 1:
        raise ValueError(
            "num_pairs and columns must be >= 1. "
            f"Received: num_pairs={num_pairs}, columns={columns}"
        )
    if len(dataset.element_spec[1].shape) == 1:
        dataset = dataset.unbatch()
    samples = list(dataset.take(num_pairs).as_numpy_iterator())
    if not samples:
        raise ValueError("The dataset is empty: nothing to preview.")
    rows = math.ceil(len(samples) / columns)
    figure = Figure(figsize=(2.4 * columns, 1.5 * rows))
    FigureCanvasAgg(figure)
    for index, (inputs, label) in enumerate(samples):
        axis = figure.add_subplot(rows, columns, index + 1)
        patch_a, patch_b = inputs[INPUT_A][..., 0], inputs[INPUT_B][..., 0]
        pair = np.concatenate([patch_a, np.ones((patch_a.shape[0], 1)), patch_b], axis=1)
        axis.imshow(pair, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axis.set_title("label 1: A sharp" if label == 1 else "label 0: B sharp", fontsize=8)
        axis.axis("off")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
