"""Classical transform-domain multi-focus fusion baselines: DWT, Laplacian pyramid, DT-CWT.

The seed paper (Li et al. 2018, section 4) compares its CNN with, among others, DWT and
Laplacian-pyramid (LPT) fusion; the dual-tree complex wavelet (DT-CWT) is the usual
shift-invariant wavelet baseline. All three share one fusion rule and differ only in the
transform:

- the lowpass band (approximation / top of the pyramid) is the mean of the sources;
- in every detail band each coefficient is taken from the source with the highest activity,
  the sum of |coefficient| over a ``window`` x ``window`` neighbourhood (choose-max);
- the selection map of each band then goes through a 3x3 majority filter, the consistency
  check of Li, Manjunath & Mitra (1995), so that isolated choices follow their neighbours.

Colour images get one selection per coefficient, shared by the three channels: the activity
sums |coefficient| over the channels. All channels of a coefficient thus come from the same
source (no colour fringes from channels that disagree), and the rule does not depend on the
channel order (RGB, or BGR as read by OpenCV). The transforms themselves run per channel.

With more than two sources the rule generalises directly: choose-max over N, majority over
N labels, mean of N lowpass bands. Exact ties (e.g. identical sources) share the weight
equally, which keeps the result independent of the order of the sources.

Every ``fuse_*`` function has the interface of mfkeras' model-based fusion,
``fuse_xxx(images, **params) -> np.ndarray``: ``images`` are two or more registered images
of one shape, HxW (gray) or HxWx3 (colour), all uint8, all uint16 or all float (any range).
The result has the inputs' shape and dtype. Integer results are rounded and clipped to the
dtype's range. Float results are not clipped: the valid range of float input is not known
here, and choose-max can overshoot the sources' range slightly next to strong edges; clip
them yourself (e.g. to [0, 1]) if needed.
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Callable, Sequence

import cv2
import numpy as np
import pywt
from scipy import ndimage

# Shortest image side accepted: one decomposition level of every method still fits.
MIN_SIDE = 8
# The coarsest pyramid / DT-CWT band keeps at least this many pixels on its short side.
_MIN_TOP_SIDE = 4
# Filters of the dtcwt package that reconstruct to rounding error. Left out: the "_bp"
# variants, and qshift_32, whose round trip is off by ~1e-8.
DTCWT_BIORTS = ("antonini", "legall", "near_sym_a", "near_sym_b")
DTCWT_QSHIFTS = ("qshift_06", "qshift_a", "qshift_b", "qshift_c", "qshift_d")


def fuse_dwt(
    images: Sequence[np.ndarray],
    *,
    wavelet: str = "sym4",
    levels: int = 4,
    window: int = 3,
    consistency_check: bool = True,
) -> np.ndarray:
    """Fuses multi-focus images in the discrete wavelet domain (PyWavelets).

    Uses ``pywt.wavedec2`` / ``waverec2`` with symmetric boundary extension; odd sizes are
    handled by cropping the reconstruction.

    Args:
        images: two or more registered images of one shape, HxW or HxWx3, all uint8, all
            uint16 or all float.
        wavelet: a discrete wavelet name of PyWavelets. The default ``"sym4"`` fused
            synthetic focus pairs better than db2, db4 or bior2.2 (nearly symmetric and
            short enough to keep the seam narrow).
        levels: decomposition levels; capped at ``pywt.dwt_max_level`` for the image size.
        window: odd side of the window over which |coefficient| is summed to measure
            activity; 1 compares single coefficients.
        consistency_check: whether to apply the 3x3 majority filter to selection maps.

    Returns:
        The fused image, with the inputs' shape and dtype.
    """
    stack, dtype, shape = _validate_images(images)
    _validate_rule(levels, window)
    try:
        wavelet = pywt.Wavelet(wavelet)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "wavelet must name a discrete wavelet of PyWavelets, see "
            f"pywt.wavelist(kind='discrete'). Received: wavelet={wavelet!r}"
        ) from error
    levels = max(1, min(levels, pywt.dwt_max_level(min(shape[:2]), wavelet.dec_len)))
    fused = _fuse(
        stack,
        functools.partial(_dwt_decompose, wavelet=wavelet, levels=levels),
        functools.partial(_dwt_reconstruct, wavelet=wavelet, size=shape[:2]),
        window,
        consistency_check,
    )
    return _to_dtype(fused, dtype, shape)


def fuse_lpt(
    images: Sequence[np.ndarray],
    *,
    levels: int = 4,
    window: int = 3,
    consistency_check: bool = True,
) -> np.ndarray:
    """Fuses multi-focus images in the Laplacian pyramid domain (OpenCV pyramids).

    Uses ``cv2.pyrDown`` / ``cv2.pyrUp`` (with the finer level's size, so odd sizes are
    exact). The lowpass band is the top Gaussian level.

    Args:
        images: two or more registered images of one shape, HxW or HxWx3, all uint8, all
            uint16 or all float.
        levels: number of Laplacian levels; capped so that the top level keeps at least 4
            pixels on its short side.
        window: odd side of the window over which |coefficient| is summed to measure
            activity; 1 compares single coefficients.
        consistency_check: whether to apply the 3x3 majority filter to selection maps.

    Returns:
        The fused image, with the inputs' shape and dtype.
    """
    stack, dtype, shape = _validate_images(images)
    _validate_rule(levels, window)
    fused = _fuse(
        stack,
        functools.partial(_lpt_decompose, levels=_cap_levels(levels, shape)),
        _lpt_reconstruct,
        window,
        consistency_check,
    )
    return _to_dtype(fused, dtype, shape)


def fuse_dtcwt(
    images: Sequence[np.ndarray],
    *,
    levels: int = 4,
    biort: str = "near_sym_b",
    qshift: str = "qshift_b",
    window: int = 3,
    consistency_check: bool = True,
) -> np.ndarray:
    """Fuses multi-focus images in the dual-tree complex wavelet domain (dtcwt package).

    Activity is the magnitude of the complex highpass coefficients; each of the six
    orientations of a level is one band. Odd sizes are padded symmetrically by one row or
    column (what the transform needs) and cropped back.

    Args:
        images: two or more registered images of one shape, HxW or HxWx3, all uint8, all
            uint16 or all float.
        levels: decomposition levels; capped so that the coarsest band keeps at least 4
            pixels on its short side.
        biort: level-1 filters, one of ``DTCWT_BIORTS``.
        qshift: filters of the other levels, one of ``DTCWT_QSHIFTS``.
        window: odd side of the window over which |coefficient| is summed to measure
            activity; 1 compares single coefficients.
        consistency_check: whether to apply the 3x3 majority filter to selection maps.

    Returns:
        The fused image, with the inputs' shape and dtype.
    """
    stack, dtype, shape = _validate_images(images)
    _validate_rule(levels, window)
    if biort not in DTCWT_BIORTS:
        raise ValueError(f"biort must be one of {DTCWT_BIORTS}. Received: biort={biort!r}")
    if qshift not in DTCWT_QSHIFTS:
        raise ValueError(f"qshift must be one of {DTCWT_QSHIFTS}. Received: qshift={qshift!r}")
    transform = _dtcwt_transform(biort, qshift)
    fused = _fuse(
        stack,
        functools.partial(
            _dtcwt_decompose, transform=transform, levels=_cap_levels(levels, shape)
        ),
        functools.partial(_dtcwt_reconstruct, transform=transform, size=shape[:2]),
        window,
        consistency_check,
    )
    return _to_dtype(fused, dtype, shape)


BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "dwt": fuse_dwt,
    "lpt": fuse_lpt,
    "dtcwt": fuse_dtcwt,
}


def get_baseline(name: str) -> Callable[..., np.ndarray]:
    """Returns the fusion function of a classical baseline.

    Args:
        name: one of the keys of ``BASELINES``: ``"dwt"``, ``"lpt"`` or ``"dtcwt"``.

    Returns:
        The function, called as ``fuse(images, **params)``.
    """
    if name not in BASELINES:
        raise ValueError(
            f"Unknown baseline. Expected one of {sorted(BASELINES)}. Received: name={name!r}"
        )
    return BASELINES[name]


# --- Validation and conversion ------------------------------------------------------------


def _validate_images(images) -> tuple[np.ndarray, np.dtype, tuple]:
    """Checks the sources; returns them as float64 (N, H, W, C), their dtype and shape."""
    if isinstance(images, np.ndarray) or not isinstance(images, Sequence):
        described = type(images).__name__
        if isinstance(images, np.ndarray):
            described += f" of shape {images.shape}"
        raise ValueError(
            "images must be a sequence (e.g. a list) of 2 or more images. "
            f"Received: images of type {described}"
        )
    if len(images) < 2:
        raise ValueError(f"Fusion needs at least 2 images. Received: {len(images)} image(s)")
    arrays = [np.asarray(image) for image in images]
    first = arrays[0]
    for i, array in enumerate(arrays):
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
            raise ValueError(
                "Each image must be HxW (gray) or HxWx3 (colour). "
                f"Received: images[{i}] of shape {array.shape}"
            )
        if array.dtype not in (np.uint8, np.uint16) and not np.issubdtype(
            array.dtype, np.floating
        ):
            raise ValueError(
                "Images must be uint8, uint16 or float. "
                f"Received: images[{i}] of dtype {array.dtype}"
            )
        if array.shape != first.shape:
            raise ValueError(
                "All images must have the same shape. Received: images[0] of shape "
                f"{first.shape} and images[{i}] of shape {array.shape}"
            )
        if array.dtype != first.dtype:
            raise ValueError(
                "All images must have the same dtype. Received: images[0] of dtype "
                f"{first.dtype} and images[{i}] of dtype {array.dtype}"
            )
        if np.issubdtype(array.dtype, np.floating):
            bad = array.size - np.count_nonzero(np.isfinite(array))
            if bad:
                raise ValueError(
                    "Images must hold finite values. "
                    f"Received: images[{i}] with {bad} NaN or infinite value(s)"
                )
    if min(first.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"Images must be at least {MIN_SIDE}x{MIN_SIDE} pixels. "
            f"Received: images of shape {first.shape}"
        )
    stack = np.stack(arrays).astype(np.float64)
    if first.ndim == 2:
        stack = stack[..., np.newaxis]
    return stack, first.dtype, first.shape


def _validate_rule(levels, window) -> None:
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"levels must be a positive integer. Received: levels={levels!r}")
    if (
        isinstance(window, bool)
        or not isinstance(window, (int, np.integer))
        or window < 1
        or window % 2 == 0
    ):
        raise ValueError(f"window must be a positive odd integer. Received: window={window!r}")


def _cap_levels(levels: int, shape: tuple) -> int:
    """Caps pyramid levels so that the coarsest band keeps its short side >= 4 pixels."""
    return max(1, min(levels, int(math.log2(min(shape[:2]) / _MIN_TOP_SIDE))))


def _to_dtype(fused: np.ndarray, dtype: np.dtype, shape: tuple) -> np.ndarray:
    fused = fused.reshape(shape)
    if np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        return np.clip(np.rint(fused), limits.min, limits.max).astype(dtype)
    return fused.astype(dtype)


# --- The fusion rule ----------------------------------------------------------------------


def _fuse(stack, decompose, reconstruct, window, consistency_check) -> np.ndarray:
    """Fuses a (N, H, W, C) stack: mean of lowpass bands, choose-max on detail bands.

    ``decompose`` maps the stack to ``(lowpass, bands)``, arrays with a leading source axis
    and channels last; ``reconstruct`` maps one image's ``(lowpass, bands)`` back to
    (H, W, C).
    """
    lowpass, bands = decompose(stack)
    fused_bands = [_choose_max(band, window, consistency_check) for band in bands]
    return reconstruct(lowpass.mean(axis=0), fused_bands)


def _choose_max(band: np.ndarray, window: int, consistency_check: bool) -> np.ndarray:
    """Fuses one detail band (N, h, w, C), real or complex, into (h, w, C)."""
    activity = np.abs(band).sum(axis=-1)
    if window > 1:
        activity = ndimage.uniform_filter(activity, size=(1, window, window), mode="reflect")
    weights = _winner_weights(activity, tolerance=0.0)
    if consistency_check:
        # Majority filter: each source's share of the 3x3 neighbourhood's votes. Votes of
        # tied sources are fractional, so tolerate rounding when comparing the shares.
        votes = ndimage.uniform_filter(weights, size=(1, 3, 3), mode="reflect")
        weights = _winner_weights(votes, tolerance=1e-9)
    return (weights[..., np.newaxis] * band).sum(axis=0)


def _winner_weights(scores: np.ndarray, tolerance: float) -> np.ndarray:
    """Weights (N, h, w): 1/k for the k sources tied for the highest score, else 0."""
    is_best = scores >= scores.max(axis=0) - tolerance
    return is_best / is_best.sum(axis=0)


# --- Discrete wavelet transform -----------------------------------------------------------


def _dwt_decompose(stack, wavelet, levels):
    coeffs = pywt.wavedec2(stack, wavelet, mode="symmetric", level=levels, axes=(1, 2))
    return coeffs[0], [band for detail in coeffs[1:] for band in detail]


def _dwt_reconstruct(lowpass, bands, wavelet, size):
    details = [tuple(bands[i : i + 3]) for i in range(0, len(bands), 3)]
    image = pywt.waverec2([lowpass, *details], wavelet, mode="symmetric", axes=(0, 1))
    # Symmetric mode returns one extra row / column for odd sizes.
    return image[: size[0], : size[1]]


# --- Laplacian pyramid --------------------------------------------------------------------


def _pyr_down(image: np.ndarray) -> np.ndarray:
    down = cv2.pyrDown(image)
    # OpenCV drops a trailing channel axis of length 1.
    return down.reshape(down.shape[0], down.shape[1], image.shape[2])


def _pyr_up(image: np.ndarray, size: tuple) -> np.ndarray:
    up = cv2.pyrUp(image, dstsize=(size[1], size[0]))
    return up.reshape(size[0], size[1], image.shape[2])


def _lpt_decompose(stack, levels):
    gaussian, bands = stack, []
    for _ in range(levels):
        down = np.stack([_pyr_down(image) for image in gaussian])
        up = np.stack([_pyr_up(d, g.shape) for d, g in zip(down, gaussian)])
        bands.append(gaussian - up)
        gaussian = down
    return gaussian, bands


def _lpt_reconstruct(lowpass, bands):
    image = lowpass
    for band in reversed(bands):
        image = band + _pyr_up(image, band.shape)
    return image


# --- Dual-tree complex wavelet transform --------------------------------------------------


def _dtcwt_decompose(stack, transform, levels):
    _, height, width, channels = stack.shape
    padded = np.pad(stack, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="symmetric")
    pyramids = [
        [transform.forward(image[..., c], nlevels=levels) for c in range(channels)]
        for image in padded
    ]
    lowpass = np.stack([np.stack([p.lowpass for p in row], axis=-1) for row in pyramids])
    bands = []
    for level in range(levels):
        # (N, h, w, 6, C) -> one band per orientation.
        highpass = np.stack(
            [np.stack([p.highpasses[level] for p in row], axis=-1) for row in pyramids]
        )
        bands.extend(highpass[:, :, :, d, :] for d in range(highpass.shape[3]))
    return lowpass, bands


def _dtcwt_reconstruct(lowpass, bands, transform, size):
    import dtcwt

    orientations = 6
    channels = []
    for c in range(lowpass.shape[-1]):
        highpasses = tuple(
            np.stack([band[..., c] for band in bands[i : i + orientations]], axis=-1)
            for i in range(0, len(bands), orientations)
        )
        pyramid = dtcwt.numpy.Pyramid(lowpass[..., c], highpasses)
        channels.append(transform.inverse(pyramid))
    return np.stack(channels, axis=-1)[: size[0], : size[1]]


@functools.lru_cache(maxsize=None)
def _dtcwt_transform(biort: str, qshift: str):
    # Imported here because `import dtcwt` also imports TensorFlow (its tf backend).
    import dtcwt

    _make_dtcwt_numpy2_compatible()
    return dtcwt.numpy.Transform2d(biort=biort, qshift=qshift)


def _make_dtcwt_numpy2_compatible() -> None:
    """Repairs dtcwt's numpy backend on numpy >= 2, where it fails with AttributeError.

    dtcwt 0.13 and 0.14 (the latest releases) call ``np.asfarray`` and ``np.issubsctype``,
    both removed in numpy 2.0, from two helpers in ``dtcwt.utils``. Each dtcwt module binds
    the helpers by name, so the numpy-2-safe equivalents below are rebound in every loaded
    dtcwt module; numpy itself is left alone. Nothing changes where the helpers work.
    """
    import dtcwt.utils

    try:
        dtcwt.utils.appropriate_complex_type_for(np.zeros(1))
        return
    except AttributeError:
        pass
    replacements = (
        ("asfarray", dtcwt.utils.asfarray, _asfarray),
        (
            "appropriate_complex_type_for",
            dtcwt.utils.appropriate_complex_type_for,
            _appropriate_complex_type_for,
        ),
    )
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "dtcwt" or name.startswith("dtcwt.")):
            continue
        for attribute, broken, fixed in replacements:
            if getattr(module, attribute, None) is broken:
                setattr(module, attribute, fixed)


def _asfarray(array) -> np.ndarray:
    """numpy 1's ``np.asfarray`` as dtcwt used it: floats pass through, others -> float64."""
    array = np.asarray(array)
    return array if np.issubdtype(array.dtype, np.inexact) else array.astype(np.float64)


def _appropriate_complex_type_for(array) -> np.dtype:
    """dtcwt's helper without ``np.issubsctype``: complex64 for float32, else complex128."""
    array = _asfarray(array)
    if np.issubdtype(array.dtype, np.complexfloating):
        return array.dtype
    return np.dtype(np.complex64 if array.dtype == np.float32 else np.complex128)
