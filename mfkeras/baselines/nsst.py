"""Nonsubsampled shearlet transform (NSST) and NSST-domain multi-focus fusion.

The seed paper (Li et al. 2018, section 4) compares its CNN with NSST fusion (its reference
[22], Kong et al. 2015). The NSST of Easley, Labate & Lim (2008) is a nonsubsampled
Laplacian pyramid whose bandpasses are split by shearing filters designed in the frequency
domain. This module implements it with NumPy/SciPy, in the frequency domain throughout:

- Grid and pyramid: shared with ``mfkeras.baselines.nsct`` (symmetric padding to a fast FFT grid,
  Meyer-type nonsubsampled pyramid with ``|H0|^2 + |H1|^2 = 1`` at every level).
- Shearing filters: on the pseudo-polar direction coordinate of ``mfkeras.baselines.nsct`` (slope
  ``t = wy/wx`` in the horizontal cone, ``wx/wy`` in the vertical cone), level j with
  exponent k has ``2**k`` windows ``W(2**(k-2) * t - l)``: translates of one Meyer window
  along the slope axis, i.e. one window sheared by the shear matrices ``[[1, 0], [l, 1]]``
  (``2**(k-2)`` finer shears per unit slope), centred on shear 0 (the axes). The two shears
  that meet at each diagonal (``t = +-1``) are glued into one window shared by both cones,
  as in the tight shearlet frames of Hauser & Steidl (FFST, 2012), so the ``2**k`` windows
  cover all directions once. Their squares sum to 1, which makes the transform a tight frame
  with exact reconstruction (error ~1e-15 relative) like the NSCT.
- The NSCT differs only in where the wedges sit: its DFB passbands have *edges* on the axes
  and diagonals, the shearlets are *centred* on them; and the defaults differ: NSST uses
  (3, 3, 4, 4), i.e. 8, 8, 16 and 16 directions from coarse to fine, the ``dcomp`` of the
  NSST toolbox examples (``shear_parameters.dcomp = [3 3 4 4]``).

Fusion (``fuse_nsst``) uses the same rule as ``fuse_nsct``: mean lowpass; choose-max of the
shearlet coefficients by the sum of |coefficient| over a ``window`` x ``window``
neighbourhood; colour images share one selection per coefficient across channels.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from mfkeras.baselines import nsct

DEFAULT_LEVELS = 4
DEFAULT_DIRECTIONS = (3, 3, 4, 4)


def nsst_decompose(
    image: np.ndarray,
    levels: int = DEFAULT_LEVELS,
    directions: Sequence[int] | None = None,
) -> nsct.Coefficients:
    """Decomposes a 2-D image with the nonsubsampled shearlet transform.

    Args:
        image: a real 2-D array (one channel), any size, finite values.
        levels: number of pyramid levels, 1 to ``nsct.MAX_LEVELS``.
        directions: per level, coarsest first, the exponent k (0 to
            ``nsct.MAX_DIRECTION_EXPONENT``) of its 2**k shearlet subbands; its length must
            be ``levels``. None takes the finest ``levels`` entries of (3, 3, 4, 4),
            prefixed with 3s beyond 4 levels.

    Returns:
        The coefficients (an ``nsct.Coefficients`` with ``transform="nsst"``);
        ``nsst_reconstruct`` inverts them exactly.
    """
    directions = nsct.check_transform_params(levels, directions, DEFAULT_DIRECTIONS)
    return nsct.analyze(image, levels, directions, shear_filter_bank, "nsst")


def nsst_reconstruct(coeffs: nsct.Coefficients) -> np.ndarray:
    """Reconstructs an image from its NSST coefficients.

    Args:
        coeffs: the result of ``nsst_decompose``, possibly with modified subbands.

    Returns:
        The (H, W) float64 image.
    """
    return nsct.synthesize(coeffs, shear_filter_bank, "nsst")


# Deliberate twin of mfkeras.baselines.nsct.fuse_nsct: the same signature and rule over the
# shearlet filter bank, so that the registry can call either the same way.
def fuse_nsst(
    images: Sequence[np.ndarray],
    *,
    levels: int = DEFAULT_LEVELS,
    directions: Sequence[int] | None = None,
    window: int = 3,
    consistency_check: bool = False,
) -> np.ndarray:
    """Fuses multi-focus images in the NSST domain.

    Mean of the lowpass bands; choose-max of the shearlet coefficients by the sum of
    |coefficient| over a ``window`` x ``window`` neighbourhood.

    Args:
        images: two or more registered images of one shape, HxW or HxWx3, all uint8, all
            uint16 or all float.
        levels: number of pyramid levels, 1 to ``nsct.MAX_LEVELS``.
        directions: per level, coarsest first, the exponent k of its 2**k shearlet
            subbands; None for the default (3, 3, 4, 4) (see ``nsst_decompose``).
        window: odd side of the activity window; 1 compares single coefficients.
        consistency_check: whether to apply a 3x3 majority filter to selection maps.

    Returns:
        The fused image, with the inputs' shape and dtype (integers rounded and clipped).
    """
    directions = nsct.check_transform_params(levels, directions, DEFAULT_DIRECTIONS)
    return nsct.fuse_choose_max(
        images, levels, directions, shear_filter_bank, window, consistency_check
    )


@functools.lru_cache(maxsize=4)
def shear_filter_bank(grid_shape: tuple, levels: int, directions: tuple) -> nsct.FilterBank:
    """The NSST filter bank: shearlet windows centred on the axes (see the module docstring)."""
    return nsct.make_filter_bank(tuple(grid_shape), levels, tuple(directions), centred=True)
