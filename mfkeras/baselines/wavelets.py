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
import sys
from typing import Sequence

import cv2
import numpy as np
import pywt

from mfkeras.baselines import selection
from mfkeras.baselines.selection import MIN_SIDE  # noqa: F401  (re-exported)

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

    def transform(shape):
        try:
            discrete = pywt.Wavelet(wavelet)
        except (ValueError, TypeError) as error:
            raise ValueError(
                "wavelet must name a discrete wavelet of PyWavelets, see "
                f"pywt.wavelist(kind='discrete'). Received: wavelet={wavelet!r}"
            ) from error
        capped = max(1, min(levels, pywt.dwt_max_level(min(shape[:2]), discrete.dec_len)))
        return (
            functools.partial(_dwt_decompose, wavelet=discrete, levels=capped),
            functools.partial(_dwt_reconstruct, wavelet=discrete, size=shape[:2]),
        )

    return selection.fuse_in_transform_domain(images, levels, window, consistency_check, transform)


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
        window, consistency_check: the selection rule, as in :func:`fuse_dwt`.

    Returns:
        The fused image, with the inputs' shape and dtype.
    """

    def transform(shape):
        return functools.partial(_lpt_decompose, levels=selection.cap_levels(levels, shape)), (
            _lpt_reconstruct
        )

    return selection.fuse_in_transform_domain(images, levels, window, consistency_check, transform)


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
        window, consistency_check: the selection rule, as in :func:`fuse_dwt`.

    Returns:
        The fused image, with the inputs' shape and dtype.
    """

    def transform(shape):
        if biort not in DTCWT_BIORTS:
            raise ValueError(f"biort must be one of {DTCWT_BIORTS}. Received: biort={biort!r}")
        if qshift not in DTCWT_QSHIFTS:
            raise ValueError(
                f"qshift must be one of {DTCWT_QSHIFTS}. Received: qshift={qshift!r}"
            )
        dual_tree = _dtcwt_transform(biort, qshift)
        return (
            functools.partial(
                _dtcwt_decompose, transform=dual_tree, levels=selection.cap_levels(levels, shape)
            ),
            functools.partial(_dtcwt_reconstruct, transform=dual_tree, size=shape[:2]),
        )

    return selection.fuse_in_transform_domain(images, levels, window, consistency_check, transform)


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
