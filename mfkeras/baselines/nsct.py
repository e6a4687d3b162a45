"""Nonsubsampled contourlet transform (NSCT) and NSCT-domain multi-focus fusion.

The seed paper (Li et al. 2018, section 4) compares its CNN with NSCT fusion (da Cunha, Zhou
& Do 2006). No maintained Python NSCT exists, so this module implements one with NumPy/SciPy
as a *frequency-domain equivalent* of the classical design rather than its ladder-structure
filters ('pyrexc'/'maxflat' pyramid, 'vk'/'dmaxflat7' directional filters):

- Grid. The image is extended symmetrically by ``2 ** (levels + 1)`` pixels on each side
  (then up to a size with a fast real FFT) and treated as periodic on that grid; every
  filter is a real, point-symmetric frequency response applied with ``scipy.fft``, so all
  subbands are real, have the size of the padded grid (no subsampling, shift invariant)
  and the image is cropped back after reconstruction. Any image size works.
- Nonsubsampled pyramid. Meyer-type radial windows: the lowpass of level j is
  ``phi_j(r) = cos(pi/2 * nu(3 * r * 2**(j-1) / pi - 1))``, 1 for
  ``r <= pi / (3 * 2**(j-1))`` and 0 for ``r >= 2 * pi / (3 * 2**(j-1))`` (``r = |omega|``,
  ``nu`` the Meyer polynomial), ``phi_0 = 1``. The bandpass of level j is
  ``psi_j = sqrt(phi_{j-1}**2 - phi_j**2)``; this is the "a trous" pyramid with per-level
  filters ``H0 = phi_j / phi_{j-1}``, ``H1 = psi_j / phi_{j-1}``, ``|H0|^2 + |H1|^2 = 1``.
- Nonsubsampled directional filter bank. Level j is split into ``2**k`` wedges with the
  ideal passbands of the Bamberger-Smith DFB used by NSCT: equal-slope wedges, half of them
  in the horizontal cone ``|wy| <= |wx|`` and half in the vertical cone, with wedge edges on
  the axes and diagonals. Wedges are smooth: along the pseudo-polar direction coordinate
  (slope ``wy/wx`` in the horizontal cone, ``wx/wy`` in the vertical one, glued at the
  diagonals into a circle of length 4) the squared windows are raised-cosine (Meyer) bumps
  that overlap their neighbours by half a wedge and sum to exactly 1 (a partition of unity).
- Hence ``phi_J**2 + sum_j psi_j**2 * sum_m D_jm**2 = 1`` at every frequency: the transform is
  a tight (Parseval) frame, reconstruction is exact up to float rounding (~1e-15 relative)
  and coefficient energy equals the energy of the padded image.

Coefficients are ordered as in the NSCT toolbox: the lowpass, then the levels from coarsest
to finest; ``directions`` gives the exponent k of each level's ``2**k`` subbands, coarsest
first (the toolbox's ``nlevels``). The default (2, 3, 3, 4) gives 4, 8, 8 and 16 directions.

Fusion (``fuse_nsct``), the classical NSCT rule: the lowpass is the mean of the sources'
lowpasses; in every directional subband each coefficient is taken from the source with the
highest activity, the sum of |coefficient| over a ``window`` x ``window`` neighbourhood
(choose-max over N sources). The rule is the one of ``mfkeras.baselines.wavelets`` (shared code), so
NSCT and the DWT/LPT/DT-CWT baselines differ only in the transform: colour images get one
selection per coefficient shared by the three channels (activity summed over channels),
ties share the weight equally, and an optional 3x3 majority filter (consistency check) is
off by default, as in the classical NSCT rule. ``mfkeras.baselines.nsst`` and ``mfkeras.baselines.pcnn`` build
on the grid, pyramid and fusion loop of this module.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import numpy as np
from scipy import fft as sp_fft

from mfkeras.baselines import selection

DEFAULT_LEVELS = 4
DEFAULT_DIRECTIONS = (2, 3, 3, 4)
MAX_LEVELS = 6
MAX_DIRECTION_EXPONENT = 6
# Length of the pseudo-polar direction coordinate: two cones of slopes in [-1, 1].
_DIRECTION_PERIOD = 4.0


@dataclasses.dataclass(frozen=True, eq=False)
class Coefficients:
    """Subbands of one image in a nonsubsampled transform (NSCT or NSST).

    Every subband has the shape of the padded FFT grid, (Hp, Wp); the image occupies
    ``[top:top + H, left:left + W]`` of it, where ``padding = ((top, bottom), (left, right))``.

    Attributes:
        lowpass: the coarsest lowpass band, (Hp, Wp).
        bands: one array (2**k, Hp, Wp) of directional subbands per pyramid level, coarsest
            level first.
        directions: the exponents k of the levels, coarsest first.
        image_shape: (H, W) of the decomposed image.
        padding: the symmetric padding of the image in the grid.
        transform: ``"nsct"`` or ``"nsst"``, the transform that made the coefficients.
    """

    lowpass: np.ndarray
    bands: tuple
    directions: tuple
    image_shape: tuple
    padding: tuple
    transform: str

    @property
    def levels(self) -> int:
        return len(self.bands)


@dataclasses.dataclass(frozen=True, eq=False)
class FilterBank:
    """Real frequency responses on the rfft2 half-grid of a (Hp, Wp) image.

    Attributes:
        grid_shape: (Hp, Wp).
        lowpass: (Hp, Wp // 2 + 1) response of the coarsest lowpass.
        bands: per level, coarsest first, a (2**k, Hp, Wp // 2 + 1) array of directional
            bandpass responses. The squares of all responses sum to 1 at every frequency.
    """

    grid_shape: tuple
    lowpass: np.ndarray
    bands: tuple

    def band_filters(self):
        """Yields every directional response, coarsest level first."""
        for level in self.bands:
            yield from level


def nsct_decompose(
    image: np.ndarray,
    levels: int = DEFAULT_LEVELS,
    directions: Sequence[int] | None = None,
) -> Coefficients:
    """Decomposes a 2-D image with the nonsubsampled contourlet transform.

    Args:
        image: a real 2-D array (one channel), any size, finite values.
        levels: number of pyramid levels, 1 to ``MAX_LEVELS``.
        directions: per level, coarsest first, the exponent k (0 to
            ``MAX_DIRECTION_EXPONENT``) of its 2**k directional subbands; its length must
            be ``levels``. None takes the finest ``levels`` entries of (2, 3, 3, 4),
            prefixed with 2s beyond 4 levels.

    Returns:
        The coefficients; ``nsct_reconstruct`` inverts them exactly.
    """
    directions = check_transform_params(levels, directions)
    return analyze(image, levels, directions, dfb_filter_bank, "nsct")


def nsct_reconstruct(coeffs: Coefficients) -> np.ndarray:
    """Reconstructs an image from its NSCT coefficients.

    Args:
        coeffs: the result of ``nsct_decompose``, possibly with modified subbands.

    Returns:
        The (H, W) float64 image.
    """
    return synthesize(coeffs, dfb_filter_bank, "nsct")


# Its one twin is mfkeras.baselines.nsst.fuse_nsst (same signature, shearlet filter bank).
def fuse_nsct(
    images: Sequence[np.ndarray],
    *,
    levels: int = DEFAULT_LEVELS,
    directions: Sequence[int] | None = None,
    window: int = 3,
    consistency_check: bool = False,
) -> np.ndarray:
    """Fuses multi-focus images in the NSCT domain.

    Mean of the lowpass bands; choose-max of the directional coefficients by the sum of
    |coefficient| over a ``window`` x ``window`` neighbourhood (see the module docstring).

    Args:
        images: two or more registered images of one shape, HxW or HxWx3, all uint8, all
            uint16 or all float.
        levels: number of pyramid levels, 1 to ``MAX_LEVELS``.
        directions: per level, coarsest first, the exponent k of its 2**k directional
            subbands; None for the default (2, 3, 3, 4) (see ``nsct_decompose``).
        window: odd side of the activity window; 1 compares single coefficients.
        consistency_check: whether to apply a 3x3 majority filter to selection maps.

    Returns:
        The fused image, with the inputs' shape and dtype (integers rounded and clipped).
    """
    directions = check_transform_params(levels, directions)
    return fuse_choose_max(images, levels, directions, dfb_filter_bank, window, consistency_check)


# --- Shared by nsct, nsst and pcnn: parameters, analysis, synthesis, fusion -----------------


def check_transform_params(levels, directions, default=DEFAULT_DIRECTIONS) -> tuple:
    """Validates ``levels`` and ``directions``; returns the direction exponents as a tuple.

    ``directions=None`` takes the finest ``levels`` entries of ``default``, prefixed with
    copies of its first entry when there are more levels.
    """
    if (
        isinstance(levels, bool)
        or not isinstance(levels, (int, np.integer))
        or not 1 <= levels <= MAX_LEVELS
    ):
        raise ValueError(
            f"levels must be an integer from 1 to {MAX_LEVELS}. Received: levels={levels!r}"
        )
    if directions is None:
        return ((default[0],) * max(0, levels - len(default)) + tuple(default))[-levels:]
    try:
        exponents = tuple(directions)
    except TypeError:
        exponents = None
    if (
        exponents is None
        or len(exponents) != levels
        or not all(
            isinstance(k, (int, np.integer))
            and not isinstance(k, bool)
            and 0 <= k <= MAX_DIRECTION_EXPONENT
            for k in exponents
        )
    ):
        raise ValueError(
            f"directions must hold one integer from 0 to {MAX_DIRECTION_EXPONENT} per "
            f"pyramid level ({levels} levels). Received: directions={directions!r}"
        )
    return tuple(int(k) for k in exponents)


def grid_padding(shape: tuple, levels: int) -> tuple:
    """Symmetric padding ((top, bottom), (left, right)) that puts an image on a fast grid.

    The margin of ``2 ** (levels + 1)`` pixels keeps the periodic wrap-around of the FFT
    away from the image for the coarsest filters; the rest rounds up to a size with a fast
    real FFT.
    """
    margin = 2 ** (levels + 1)
    padding = []
    for size in shape:
        extra = sp_fft.next_fast_len(size + 2 * margin, real=True) - size - 2 * margin
        padding.append((margin + extra // 2, margin + extra - extra // 2))
    return tuple(padding)


def analyze(
    image: np.ndarray,
    levels: int,
    directions: tuple,
    make_bank: Callable[..., FilterBank],
    transform: str,
) -> Coefficients:
    """Decomposes one 2-D image with the filter bank ``make_bank(grid, levels, directions)``."""
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(
            f"{transform}_decompose takes one non-empty 2-D (H, W) image; decompose colour "
            f"images channel by channel. Received: image of shape {image.shape}"
        )
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(
            f"{transform}_decompose takes a real numeric image. Received: dtype {image.dtype}"
        )
    if not np.all(np.isfinite(image)):
        raise ValueError(
            f"{transform}_decompose needs finite values. Received: an image with NaN or "
            "infinite values"
        )
    padding = grid_padding(image.shape, levels)
    padded = np.pad(image.astype(np.float64), padding, mode="symmetric")
    bank = make_bank(padded.shape, levels, directions)
    spectrum = sp_fft.rfft2(padded, workers=-1)
    lowpass = sp_fft.irfft2(spectrum * bank.lowpass, s=padded.shape, workers=-1)
    bands = tuple(
        sp_fft.irfft2(spectrum * level, s=padded.shape, workers=-1) for level in bank.bands
    )
    return Coefficients(lowpass, bands, directions, image.shape, padding, transform)


def synthesize(
    coeffs: Coefficients, make_bank: Callable[..., FilterBank], transform: str
) -> np.ndarray:
    """Inverts ``analyze``: sums every subband filtered once more by its own response."""
    if not isinstance(coeffs, Coefficients) or coeffs.transform != transform:
        received = getattr(coeffs, "transform", type(coeffs).__name__)
        raise ValueError(
            f"{transform}_reconstruct takes the result of {transform}_decompose. "
            f"Received: coefficients of {received!r}"
        )
    if len(coeffs.bands) != len(coeffs.directions):
        raise ValueError(
            f"coeffs must hold one band per entry of directions={coeffs.directions}. "
            f"Received: {len(coeffs.bands)} band(s)"
        )
    grid = coeffs.lowpass.shape
    bank = make_bank(grid, coeffs.levels, coeffs.directions)
    for level, (band, response) in enumerate(zip(coeffs.bands, bank.bands)):
        if band.shape != response.shape[:1] + grid:
            raise ValueError(
                f"Level {level} must hold subbands of shape {response.shape[:1] + grid}. "
                f"Received: {band.shape}"
            )
    spectrum = sp_fft.rfft2(coeffs.lowpass, workers=-1) * bank.lowpass
    for band, response in zip(coeffs.bands, bank.bands):
        spectrum += np.sum(sp_fft.rfft2(band, workers=-1) * response, axis=0)
    image = sp_fft.irfft2(spectrum, s=grid, workers=-1)
    (top, _), (left, _) = coeffs.padding
    height, width = coeffs.image_shape
    return image[top : top + height, left : left + width]


def fuse_choose_max(images, levels, directions, make_bank, window, consistency_check):
    """Fuses with the rule of ``mfkeras.baselines.wavelets``: mean lowpass, windowed choose-max.

    ``directions`` must already have passed ``check_transform_params``.
    """
    stack, dtype, shape = selection.validate_sources(images)
    selection.validate_rule(levels, window)

    def select(index, band):
        return selection.choose_max(band, window, consistency_check)

    fused = fuse_subbands(stack, levels, directions, make_bank, select)
    return selection.to_dtype(fused, dtype, shape)


def fuse_subbands(stack, levels, directions, make_bank, select) -> np.ndarray:
    """Fuses a (N, H, W, C) float stack in a nonsubsampled transform; returns (H, W, C).

    The lowpass of the result is the sources' mean lowpass. Each directional subband
    (see ``iter_subbands``) goes to ``select(index, band)``, which returns the fused subband
    (Hp, Wp, C); it is synthesized at once, so memory stays at a few grids per source.
    """
    spectra, bank, padding = _stack_spectra(stack, levels, directions, make_bank)
    grid = bank.grid_shape
    # Analysis and synthesis each apply the response: the mean lowpass costs one product.
    fused = spectra.mean(axis=0) * bank.lowpass**2
    for index, (response, band) in enumerate(_subbands(spectra, bank)):
        chosen = select(index, band)
        fused += sp_fft.rfft2(np.moveaxis(chosen, -1, 0), workers=-1) * response
    image = sp_fft.irfft2(fused, s=grid, workers=-1)
    (top, _), (left, _) = padding
    _, height, width, _ = stack.shape
    return np.moveaxis(image[:, top : top + height, left : left + width], 0, -1)


def iter_subbands(stack, levels, directions, make_bank):
    """Yields the directional subbands of a (N, H, W, C) float stack, coarsest first.

    Each is an array (N, Hp, Wp, C) on the padded grid of ``grid_padding``: one subband
    for every source and channel.
    """
    spectra, bank, _ = _stack_spectra(stack, levels, directions, make_bank)
    for _, band in _subbands(spectra, bank):
        yield band


def _stack_spectra(stack, levels, directions, make_bank):
    """Pads a (N, H, W, C) stack; returns its (N, C, Hp, Wp // 2 + 1) spectra, bank, padding."""
    _, height, width, _ = stack.shape
    padding = grid_padding((height, width), levels)
    padded = np.pad(stack, ((0, 0), *padding, (0, 0)), mode="symmetric")
    bank = make_bank(padded.shape[1:3], levels, directions)
    return sp_fft.rfft2(np.moveaxis(padded, -1, 1), workers=-1), bank, padding


def _subbands(spectra, bank):
    for response in bank.band_filters():
        band = sp_fft.irfft2(spectra * response, s=bank.grid_shape, workers=-1)
        yield response, np.moveaxis(band, 1, -1)


# --- Filter design ---------------------------------------------------------------------------


def frequency_grid(grid_shape: tuple) -> tuple:
    """Angular frequencies (wy, wx) in [-pi, pi) of a full (Hp, Wp) FFT grid, each (Hp, Wp)."""
    wy = 2 * np.pi * sp_fft.fftfreq(grid_shape[0])
    wx = 2 * np.pi * sp_fft.fftfreq(grid_shape[1])
    return np.meshgrid(wy, wx, indexing="ij")


def meyer_taper(t: np.ndarray) -> np.ndarray:
    """cos(pi/2 * nu(t)): 1 for t <= 0, 0 for t >= 1, and taper(t)**2 + taper(1-t)**2 = 1."""
    t = np.clip(t, 0.0, 1.0)
    nu = t**4 * (35 - 84 * t + 70 * t**2 - 20 * t**3)
    # Exact zeros beyond the transition (cos(pi/2) is 6e-17): supports stay compact.
    return np.where(t < 1, np.cos(0.5 * np.pi * nu), 0.0)


def pyramid_windows(grid_shape: tuple, levels: int) -> tuple:
    """Nonsubsampled pyramid responses on the full FFT grid.

    Args:
        grid_shape: (Hp, Wp).
        levels: number of pyramid levels.

    Returns:
        ``(lowpass, bandpasses)``: the (Hp, Wp) coarsest lowpass ``phi_levels`` and the list
        of bandpasses ``psi_j``, coarsest first; ``lowpass**2 + sum(psi**2) == 1``.
    """
    wy, wx = frequency_grid(grid_shape)
    radius = np.hypot(wy, wx)
    previous = np.ones(grid_shape)
    bandpasses = []
    for level in range(1, levels + 1):
        lowpass = meyer_taper(3 * radius * 2.0 ** (level - 1) / np.pi - 1)
        bandpasses.append(np.sqrt(np.maximum(previous**2 - lowpass**2, 0.0)))
        previous = lowpass
    return previous, bandpasses[::-1]


def direction_coordinate(grid_shape: tuple) -> np.ndarray:
    """Pseudo-polar direction of every frequency of the full grid, in [0, 4).

    ``1 + wy/wx`` in the horizontal cone (|wy| <= |wx|), ``3 - wx/wy`` in the vertical cone:
    continuous across the diagonals, periodic (4 ~ 0), equal for w and -w.
    """
    wy, wx = frequency_grid(grid_shape)
    horizontal = np.abs(wy) <= np.abs(wx)
    with np.errstate(divide="ignore", invalid="ignore"):
        coordinate = np.where(horizontal, 1 + wy / wx, 3 - wx / wy)
    # The zero frequency has no direction (all bandpasses vanish there).
    coordinate[0, 0] = 1.0
    return np.mod(coordinate, _DIRECTION_PERIOD)


def direction_windows(grid_shape: tuple, count: int, centred: bool) -> np.ndarray:
    """Squared directional windows: ``count`` smooth wedges that sum to 1 everywhere.

    The wedges are equal intervals of the direction coordinate (``direction_coordinate``);
    neighbours overlap by half a wedge with Meyer tapers. Values at w and -w are averaged
    so that the responses stay point-symmetric (real subbands) on even-sized grids, where
    the Nyquist row and column are their own mirror images.

    Args:
        grid_shape: (Hp, Wp).
        count: number of wedges.
        centred: False puts wedge edges on the axes (and, for 4 or more wedges, on the
            diagonals), the passbands of the contourlet DFB; True centres a wedge on each
            axis, the shearlet layout (shear 0 and its neighbours, glued at the diagonals).

    Returns:
        A (count, Hp, Wp) array of squared window values; wedge 0 starts at or after the
        -45 degree diagonal and the index grows with the direction coordinate.
    """
    if count == 1:
        return np.ones((1, *grid_shape))
    offset = (count / 4 - 0.5) % 1 if centred else 0.0
    position = direction_coordinate(grid_shape) * count / _DIRECTION_PERIOD - offset
    windows = np.empty((count, *grid_shape))
    for m in range(count):
        # Distance from the wedge centre in wedges, on a circle of `count` wedges.
        distance = np.abs(np.mod(position - m - 0.5 + count / 2, count) - count / 2)
        windows[m] = meyer_taper(2 * distance - 0.5) ** 2
    mirrored = np.roll(windows[:, ::-1, ::-1], 1, axis=(1, 2))
    return 0.5 * (windows + mirrored)


def make_filter_bank(grid_shape: tuple, levels: int, directions: tuple, centred: bool):
    """Pyramid bandpasses times directional windows, as responses on the rfft2 half-grid."""
    lowpass, bandpasses = pyramid_windows(grid_shape, levels)
    half = grid_shape[1] // 2 + 1
    bands = []
    for bandpass, exponent in zip(bandpasses, directions):
        windows = direction_windows(grid_shape, 2**exponent, centred)
        responses = bandpass[np.newaxis, :, :half] * np.sqrt(windows[:, :, :half])
        responses.setflags(write=False)
        bands.append(responses)
    lowpass = np.ascontiguousarray(lowpass[:, :half])
    lowpass.setflags(write=False)
    return FilterBank(tuple(grid_shape), lowpass, tuple(bands))


@functools.lru_cache(maxsize=4)
def dfb_filter_bank(grid_shape: tuple, levels: int, directions: tuple) -> FilterBank:
    """The NSCT filter bank: wedge edges on the axes and diagonals, as in the DFB."""
    return make_filter_bank(tuple(grid_shape), levels, tuple(directions), centred=False)
