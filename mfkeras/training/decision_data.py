"""Training data of the per-pixel decision network: generated multi-focus crops with truth.

Every training image becomes one generated pair or three-frame stack
(:func:`mfkeras.evaluation.groundtruth.make_sample`, rendered in gray), kept in a cache file
so that a resumed run does not generate again. Training crops are cut from these samples: two
different frames, a per-pixel target (1 where the first frame is the sharper, i.e. nearer in
focus to the pixel's depth layer), a weight (0 where both frames are equally far from focus)
and the all-in-focus truth. Crops prefer focus boundaries, where the decision is hard.
No TensorFlow here except for reading tfds sources.
"""

from __future__ import annotations

import dataclasses
import os
from multiprocessing import get_context
from typing import Iterator

import numpy as np

from mfkeras.evaluation.groundtruth import DefocusConfig, make_sample
from mfkeras.io.config_json import JsonConfig
from mfkeras.training.split import is_development_image

# Channels of a crop's target array: target, weight, frame A, frame B, truth (all in [0, 1]).
TARGET_CHANNELS = ("target", "weight", "frame_a", "frame_b", "truth")
CACHE_FILE = "decision_samples.npz"


@dataclasses.dataclass(frozen=True)
class DecisionDataConfig(JsonConfig):
    """How training crops are made.

    Attributes:
        crop_size: side of the square training crops.
        stack_share: share of images made into three-frame stacks (the rest are pairs).
        boundary_share: share of crops centred on a focus boundary.
        max_side: images are shrunk to at most this side before generation (speed).
        noise_std: largest standard deviation of the Gaussian noise added to the frames.
        validation_fraction: share of the images held out for validation.
    """

    crop_size: int = 128
    stack_share: float = 0.3
    boundary_share: float = 0.7
    max_side: int = 400
    noise_std: float = 0.01
    validation_fraction: float = 0.05

    def __post_init__(self):
        if self.crop_size < 16:
            raise ValueError(f"crop_size must be >= 16. Received: crop_size={self.crop_size}")
        for name in ("stack_share", "boundary_share", "validation_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]. Received: {name}={value}")


@dataclasses.dataclass
class DecisionSamples:
    """Generated samples kept in memory.

    Attributes:
        frames: per sample, (N, H, W) uint8 gray frames; frame i is sharp on layer i.
        truth: per sample, (H, W) uint8 all-in-focus gray image.
        labels: per sample, (H, W) uint8, the frame that is sharp at each pixel.
    """

    frames: list
    truth: list
    labels: list

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, indices) -> "DecisionSamples":
        """The samples at ``indices``."""
        return DecisionSamples(*([part[i] for i in indices] for part in (self.frames, self.truth, self.labels)))


def _shrunk(image: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    scale = max_side / max(image.shape[:2])
    if scale >= 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _generate_one(job):
    image, seed, frames, max_side = job
    image = _shrunk(image, max_side)
    try:
        sample = make_sample(image, frames, seed, DefocusConfig(), gray=True)
    except ValueError:  # no usable depth layers in this image
        return None
    return np.stack(sample.frames), sample.truth, sample.labels.astype(np.uint8)


def generate_samples(
    images: list, seed: int, config: DecisionDataConfig = DecisionDataConfig(), processes: int = 1
) -> DecisionSamples:
    """Makes one pair or three-frame stack per image, deterministically given ``seed``.

    Args:
        images: RGB (H, W, 3) uint8 all-in-focus images.
        seed: seed of the layers, kernels and the pair/stack choice.
        config: the data settings.
        processes: worker processes (generation is CPU-bound GrabCut and filtering).

    Returns:
        The :class:`DecisionSamples` (images without usable layers are skipped).
    """
    rng = np.random.default_rng(seed)
    kinds = np.where(rng.random(len(images)) < config.stack_share, 3, 2)
    jobs = [(image, seed * 100003 + index, int(kinds[index]), config.max_side) for index, image in enumerate(images)]
    if processes > 1:
        with get_context("spawn").Pool(processes) as pool:
            results = pool.map(_generate_one, jobs, chunksize=8)
    else:
        results = [_generate_one(job) for job in jobs]
    kept = [r for r in results if r is not None]
    return DecisionSamples([r[0] for r in kept], [r[1] for r in kept], [r[2] for r in kept])


def save_samples(samples: DecisionSamples, path: str) -> None:
    """Writes samples to one ``.npz`` file, atomically (a temporary file renamed into place)."""
    arrays = {}
    for index in range(len(samples)):
        arrays[f"frames_{index}"] = samples.frames[index]
        arrays[f"truth_{index}"] = samples.truth[index]
        arrays[f"labels_{index}"] = samples.labels[index]
    temporary = f"{path}.partial.npz"
    np.savez(temporary, count=np.int64(len(samples)), **arrays)
    os.replace(temporary, path)


def load_samples(path: str) -> DecisionSamples:
    """Reads samples written by :func:`save_samples`."""
    with np.load(path) as data:
        count = int(data["count"])
        return DecisionSamples(
            [data[f"frames_{i}"] for i in range(count)],
            [data[f"truth_{i}"] for i in range(count)],
            [data[f"labels_{i}"] for i in range(count)],
        )


def split_samples(samples: DecisionSamples, fraction: float, seed: int) -> tuple:
    """``(train, validation)`` samples, ``fraction`` of them held out (at least one each side)."""
    from mfkeras.training.data import split_holdout

    train, validation = split_holdout(len(samples), fraction, seed)
    return samples.subset(train), samples.subset(validation)


def boundary_pixels(labels: np.ndarray) -> np.ndarray:
    """(K, 2) row, column of pixels whose right or lower neighbour has another label."""
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return np.argwhere(edge)


def pair_target(labels: np.ndarray, first: int, second: int) -> tuple:
    """Per-pixel target (first frame nearer focus) and weight (the frames differ in focus)."""
    distance_first = np.abs(labels.astype(np.int32) - first)
    distance_second = np.abs(labels.astype(np.int32) - second)
    return (distance_first < distance_second).astype(np.float32), (distance_first != distance_second).astype(np.float32)


def make_crop(samples: DecisionSamples, index: int, config: DecisionDataConfig, rng: np.random.Generator) -> tuple:
    """One training crop of sample ``index``: ``(frame_a, frame_b, targets)``.

    Returns:
        frame_a, frame_b: (S, S, 1) float32 in [0, 1] (noise added); targets: (S, S, 5)
        float32 with the channels of :data:`TARGET_CHANNELS`.
    """
    frames, truth, labels = samples.frames[index], samples.truth[index], samples.labels[index]
    size = config.crop_size
    height, width = labels.shape
    if min(height, width) < size:
        raise ValueError(f"Sample {index} is {height}x{width}, smaller than crop_size={size}.")
    edges = boundary_pixels(labels) if rng.random() < config.boundary_share else np.zeros((0, 2))
    if len(edges):
        row, col = edges[rng.integers(len(edges))]
        top = int(np.clip(row - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, height - size))
        left = int(np.clip(col - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, width - size))
    else:
        top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    window = (slice(top, top + size), slice(left, left + size))
    first, second = rng.choice(len(frames), 2, replace=False)
    target, weight = pair_target(labels[window], int(first), int(second))
    noise = rng.uniform(0.0, config.noise_std)
    a = frames[first][window] / 255.0 + rng.normal(0.0, noise, (size, size))
    b = frames[second][window] / 255.0 + rng.normal(0.0, noise, (size, size))
    a, b = np.clip(a, 0.0, 1.0).astype(np.float32), np.clip(b, 0.0, 1.0).astype(np.float32)
    targets = np.stack([target, weight, a, b, truth[window] / 255.0], axis=-1).astype(np.float32)
    flips = rng.integers(0, 2, 2)
    arrays = [a[..., None], b[..., None], targets]
    if flips[0]:
        arrays = [x[::-1] for x in arrays]
    if flips[1]:
        arrays = [x[:, ::-1] for x in arrays]
    return tuple(np.ascontiguousarray(x) for x in arrays)


def crop_stream(samples: DecisionSamples, config: DecisionDataConfig, seed: int) -> Iterator[tuple]:
    """Endless crops of random samples, reproducible given ``seed``."""
    rng = np.random.default_rng(seed)
    usable = [i for i, labels in enumerate(samples.labels) if min(labels.shape) >= config.crop_size]
    if not usable:
        raise ValueError(f"No generated sample is at least crop_size={config.crop_size} on each side.")
    while True:
        yield make_crop(samples, usable[int(rng.integers(len(usable)))], config, rng)


def fixed_crops(samples: DecisionSamples, config: DecisionDataConfig, count: int, seed: int) -> tuple:
    """``count`` crops stacked into arrays ``(frames_a, frames_b, targets)`` (validation)."""
    stream = crop_stream(samples, config, seed)
    crops = [next(stream) for _ in range(count)]
    return tuple(np.stack([c[k] for c in crops]) for k in range(3))


def folder_images(path: str, exclude_development: bool, max_side: int) -> list:
    """The RGB uint8 images of a folder (recursive, sorted), shrunk to ``max_side``."""
    from mfkeras.io.images import list_images, read_image

    if not os.path.isdir(path):
        raise FileNotFoundError(f"Expected a directory of images. Received: path={path!r}")
    images = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for file_path in list_images(root):
            if exclude_development and is_development_image(file_path):
                continue
            image = read_image(str(file_path))
            if image.dtype != np.uint8:
                image = (image // 257).astype(np.uint8)
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=-1)
            images.append(_shrunk(image, max_side))
    if not images:
        raise ValueError(f"No readable images under path={path!r}.")
    return images


def tfds_images(examples, exclude_development: bool, max_side: int, limit: int | None = None) -> list:
    """RGB uint8 images of a tfds split (``image`` feature; ``image/filename`` for the split)."""
    images = []
    for example in examples.as_numpy_iterator():
        name = example.get("image/filename", b"")
        name = name.decode() if isinstance(name, bytes) else str(name)
        if exclude_development and name and is_development_image(name):
            continue
        image = example["image"]
        images.append(_shrunk(np.repeat(image, 3, -1) if image.shape[-1] == 1 else image, max_side))
        if limit is not None and len(images) >= limit:
            break
    return images
