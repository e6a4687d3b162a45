"""Multi-focus pairs and stacks with their ground truth, made from all-in-focus images.

Depth layers follow the image's own object boundaries: each nearer layer is the foreground
GrabCut finds in a random rectangle (a random smooth blob only when GrabCut finds no usable
object). Each frame focuses one layer; every other layer is defocused by a disc or Gaussian
kernel whose radius grows with its depth distance (or, to test methods on lenses outside that
family, a six-bladed aperture's hexagon or a bright-rimmed disc), and the layers are composited back to
front with premultiplied alpha (a layered thin-lens model). So a defocused foreground spreads
over the sharp background behind it, which is what makes halos, and a sharp foreground cuts a
defocused background cleanly. Everything is deterministic given the seed.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from mfkeras.fusion.halo import KERNELS, defocus_blur, defocus_kernel  # noqa: F401  (KERNELS re-exported)
from mfkeras.io.color import to_gray
from mfkeras.training.split import is_development_image  # noqa: F401  (the split, re-exported)

# Kernels the generator renders with: the halo model's family (KERNELS, the default) and two
# lens shapes outside it, for measuring how methods fare on defocus they were not fitted to.
LENS_KERNELS = (*KERNELS, "hexagon", "ring")


def lens_kernel(kind: str, radius: float) -> np.ndarray:
    """A normalised defocus kernel of one of ``LENS_KERNELS`` with radius ``radius`` pixels.

    ``disc`` and ``gaussian`` are :func:`defocus_kernel`'s; ``hexagon`` is the anti-aliased
    image of a six-bladed aperture (circumradius ``radius``); ``ring`` is a disc twice as bright
    at its rim as at its centre (over-corrected spherical aberration, "soap-bubble" bokeh).
    """
    if kind in KERNELS:
        return defocus_kernel(kind, radius)
    if kind not in LENS_KERNELS:
        raise ValueError(f"kind must be one of {LENS_KERNELS}. Received: kind={kind!r}")
    if radius <= 0:
        return np.ones((1, 1), np.float64)
    half = int(np.ceil(radius)) + 1
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    if kind == "hexagon":
        apothem = radius * np.sqrt(3.0) / 2.0
        angles = np.deg2rad([0.0, 60.0, 120.0])  # the normals of the three pairs of sides
        distance = np.max([np.abs(x * np.cos(a) + y * np.sin(a)) for a in angles], axis=0)
        kernel = np.clip(apothem + 0.5 - distance, 0.0, 1.0)
    else:
        rho = np.hypot(x, y)
        kernel = np.clip(radius + 0.5 - rho, 0.0, 1.0) * (1.0 + np.minimum(rho / radius, 1.0) ** 2)
    return kernel / kernel.sum()


@dataclasses.dataclass(frozen=True)
class DefocusConfig:
    """How defocused the layers are.

    Attributes:
        radius_steps: blur radii (pixels) per unit of depth distance to choose from.
        kernels: the defocus kernels to choose from (``LENS_KERNELS``; default ``disc`` and
            ``gaussian``, the family halo removal fits).
        min_layer_fraction: the smallest share of the image each layer of a pair must keep;
            with N layers each must keep ``2 / N`` of it.
        grabcut_tries: random rectangles tried per layer before falling back to a blob.
    """

    radius_steps: tuple = (2.0, 3.0, 4.0, 6.0)
    kernels: tuple = KERNELS
    min_layer_fraction: float = 0.08
    grabcut_tries: int = 6

    def __post_init__(self):
        if not self.radius_steps or min(self.radius_steps) <= 0:
            raise ValueError(f"radius_steps must be positive. Received: radius_steps={self.radius_steps}")
        unknown = [k for k in self.kernels if k not in LENS_KERNELS]
        if unknown or not self.kernels:
            raise ValueError(f"kernels must be from {LENS_KERNELS}. Received: kernels={self.kernels}")


@dataclasses.dataclass
class Sample:
    """One generated pair or stack.

    Attributes:
        frames: the N frames, uint8 like the source; frame i is sharp on layer i.
        truth: the all-in-focus source image.
        labels: (H, W) int32, which frame is sharp at each pixel (the true focus map).
        kernel: the defocus kernel used; radius_step: blur radius per depth unit.
    """

    frames: list
    truth: np.ndarray
    labels: np.ndarray
    kernel: str
    radius_step: float


def _grabcut_object(image: np.ndarray, rng: np.random.Generator, config: DefocusConfig):
    """A foreground mask GrabCut finds in a random rectangle, or None."""
    height, width = image.shape[:2]
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for _ in range(config.grabcut_tries):
        h, w = int(height * rng.uniform(0.3, 0.7)), int(width * rng.uniform(0.3, 0.7))
        top, left = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        mask = np.zeros((height, width), np.uint8)
        cv2.setRNGSeed(int(rng.integers(0, 2**31)))
        cv2.grabCut(bgr, mask, (left, top, w, h), np.zeros((1, 65)), np.zeros((1, 65)), 3, cv2.GC_INIT_WITH_RECT)
        found = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        found = cv2.morphologyEx(found.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)) > 0
        if config.min_layer_fraction <= found.mean() <= 0.6:
            return found
    return None


def _blob(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """A smooth random region covering about a third of the image (the fallback)."""
    field = cv2.GaussianBlur(rng.standard_normal(shape), (0, 0), min(shape) / 8)
    return field > np.quantile(field, 0.65)


def depth_labels(image: np.ndarray, layers: int, rng: np.random.Generator, config: DefocusConfig) -> np.ndarray:
    """(H, W) int32 depth layers, 0 the farthest; each nearer layer occludes the ones behind it."""
    least = config.min_layer_fraction * 2 / layers
    for _ in range(10):
        labels = np.zeros(image.shape[:2], np.int32)
        for layer in range(1, layers):
            found = _grabcut_object(image, rng, config)
            labels[found if found is not None else _blob(labels.shape, rng)] = layer
        shares = np.bincount(labels.ravel(), minlength=layers) / labels.size
        if shares.min() >= least:
            return labels
    raise ValueError(f"Could not split the image into {layers} depth layers of at least "
                     f"{least:.1%} each; try another image or fewer layers.")


def render_frame(image: np.ndarray, labels: np.ndarray, focus: int, kernel: str, radius_step: float) -> np.ndarray:
    """The frame focused on layer ``focus``: layers composited back to front, each defocused.

    Premultiplied "over": a layer's colour and coverage are blurred together, so its defocused
    edge spreads over what lies behind it. The farthest layer is blurred by normalised
    convolution, so the background hidden behind nearer layers does not darken its blur.
    """
    source = image.astype(np.float64)
    colour = source if source.ndim == 3 else source[..., None]
    result = None
    for layer in range(int(labels.max()) + 1):
        weights = lens_kernel(kernel, radius_step * abs(layer - focus))
        alpha = (labels == layer).astype(np.float64)
        blurred_alpha = defocus_blur(alpha, weights)
        blurred_colour = np.stack([defocus_blur(colour[..., c] * alpha, weights) for c in range(colour.shape[2])], -1)
        if result is None:
            result = blurred_colour / np.maximum(blurred_alpha, 1e-6)[..., None]
            result[blurred_alpha < 1e-6] = colour[blurred_alpha < 1e-6]
        else:
            result = blurred_colour + (1.0 - blurred_alpha)[..., None] * result
    result = result if source.ndim == 3 else result[..., 0]
    return np.clip(np.rint(result), 0, np.iinfo(image.dtype).max).astype(image.dtype)


def make_sample(
    image: np.ndarray, frames: int, seed: int, config: DefocusConfig = DefocusConfig(), gray: bool = False
) -> Sample:
    """A pair (``frames=2``) or an N-frame stack with ground truth, from one all-in-focus image.

    Frame i is focused on depth layer ``frames - 1 - i``: the first frame on the nearest layer.
    With ``gray``, the layers are found in the colour image but the frames and the truth are
    its gray version (what training needs, at a third of the rendering work).
    """
    if frames < 2:
        raise ValueError(f"frames must be >= 2. Received: frames={frames}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8. Received: dtype {image.dtype}")
    rng = np.random.default_rng(seed)
    depth = depth_labels(image, frames, rng, config)
    kernel = config.kernels[int(rng.integers(len(config.kernels)))]
    radius_step = float(config.radius_steps[int(rng.integers(len(config.radius_steps)))])
    source = np.rint(to_gray(image)).astype(np.uint8) if gray and image.ndim == 3 else image
    rendered = [render_frame(source, depth, frames - 1 - i, kernel, radius_step) for i in range(frames)]
    return Sample(rendered, source, (frames - 1 - depth).astype(np.int32), kernel, radius_step)


def development_images(folder: str) -> list:
    """The development split's all-in-focus images in a folder, which training leaves out.

    Args:
        folder: a folder of all-in-focus images (the VOC crops).

    Returns:
        Their sorted paths, those `is_development_image` selects.
    """
    from mfkeras.io import images

    return [path for path in images.list_images(folder) if is_development_image(path)]


def development_sample(sources: list, index: int, frames: int, config: DefocusConfig | None = None) -> Sample:
    """Sample ``index`` of the development split: from image ``index`` (cycled) with seed ``index``.

    An image that cannot be split into ``frames`` layers gives way to the next one,
    deterministically, so the split is the same on every machine.

    Args:
        sources: paths of the all-in-focus images (`development_images`).
        index: the sample's number, 0 or more.
        frames: 2 for a pair, N for an N-frame stack.
        config: the defocus model; default ``DefocusConfig()``.

    Returns:
        The `Sample`.
    """
    from mfkeras.io import images

    if not sources:
        raise ValueError("sources is empty: no all-in-focus images to make a sample from.")
    if not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be a non-negative integer. Received: index={index!r}")
    if frames < 2:
        raise ValueError(f"frames must be >= 2. Received: frames={frames}")
    config = config or DefocusConfig()
    for offset in range(len(sources)):
        try:
            image = images.read_image(sources[(index + offset) % len(sources)])
            return make_sample(image, frames, seed=index, config=config)
        except ValueError:
            continue
    raise ValueError(f"No development image splits into {frames} depth layers.")
