"""SF-PCNN fusion in the NSCT domain (Qu, Yan, Xiao & Zhu 2008), the seed's PCNN comparator.

The seed paper (Li et al. 2018) names a pulse-coupled neural network method among its
comparators; its reference [9] is Qu Xiao-Bo, Yan Jing-Wen, Xiao Hong-Zhi, Zhu Zi-Qian,
"Image fusion algorithm based on spatial frequency-motivated pulse coupled neural networks
in nonsubsampled contourlet transform domain", Acta Automatica Sinica 34(12):1508-1514,
2008. The method, as implemented by ``fuse_pcnn``:

1. Decompose every source (every channel) with the NSCT of ``mfkeras.baselines.nsct``.
2. For every directional subband and source, the spatial frequency (SF) of each
   coefficient's ``window`` x ``window`` neighbourhood,
   ``SF = sqrt(mean(dr**2) + mean(dc**2))`` over the window, with ``dr``, ``dc`` the
   differences to the left and upper neighbour; for colour the squared differences are
   summed over the channels, so one decision serves all three channels (as in
   ``mfkeras.baselines.wavelets``).
3. The SF maps, scaled to [0, 1] per subband (min-max over all sources jointly), are the
   feeding input ``F`` of a simplified PCNN, one neuron per coefficient:
   ``L[n] = exp(-alpha_l) L[n-1] + v_l (W * Y[n-1])``,
   ``theta[n] = exp(-alpha_theta) theta[n-1] + v_theta Y[n-1]``,
   ``U[n] = F (1 + beta L[n])``, ``Y[n] = U[n] > theta[n]``, for n = 1..``iterations``,
   from zero state; ``W * Y`` is the zero-padded correlation with the linking kernel.
4. Each coefficient is taken from the source whose neuron fired most often; equal counts
   fall back to the larger SF, and exact ties share the weight equally.
5. The lowpass is the mean of the sources' lowpasses, and the inverse NSCT gives the fused
   image. (The paper also selects lowpass coefficients with the SF-PCNN; for multi-focus
   pairs the coarse lowpass barely differs between sources, so the mean, the rule of the
   other comparators, is used.)

Parameter values and their sources:

- PCNN constants (``PCNNParams``), from Qu's released code (``PCNN_large_arrange.m``,
  Aug. 2008, which implements the paper): ``alpha_l = 1``, ``alpha_theta = 0.2``,
  ``beta = 3``, ``v_l = 1``, ``v_theta = 20``; linking kernel 3x3 (``link_size = 3``) with
  weights 1/distance to the centre (0.707 on diagonals, 1 on edges, 0 at the centre);
  ``iterations = 200``, Qu's number of iterations.
- SF window 3x3: Qu et al. compute SF over a small window around each coefficient; 3x3 is
  our choice, the usual one.
- NSCT: the demo distributed with Qu's code (as found in public copies of it) decomposes
  with '9-7' / 'pkva' filters into [0, 1, 3, 4, 4] direction exponents, coarse to fine
  (5 levels; 1, 2, 8, 16 and 16 directions; 43 subbands). With 200 PCNN iterations that is
  too slow here, so ``fuse_pcnn`` keeps the pattern (no split at the coarsest level,
  directions doubling towards fine scales) on 4 levels: exponents (0, 1, 2, 3), i.e. 1, 2,
  4 and 8 directions (15 subbands), which fuses a 520x520 colour pair within 10 s on two
  CPU cores. On a synthetic focus pair (a seeded texture, half blurred in each source) it
  also fused better than (2, 3, 3, 4) with the same PCNN. The filters are those of
  ``mfkeras.baselines.nsct`` (a frequency-domain equivalent of NSCT).

Deviations from Qu's code, all documented above: SF maps are normalised jointly over the
sources of a subband (the code normalises each source separately, which makes firing counts
of different sources incomparable when their SF ranges differ); equal firing counts are
broken by SF instead of always favouring the first source; the lowpass is averaged.

Implementation: the PCNN runs vectorised over all pixels of a stack of subbands (all
sources and subbands, in cache-sized chunks of maps; each chunk is one 2-D array with the
maps' rows stacked and zero rows between them, so one ``cv2.filter2D`` call does all the
linking). It runs on the image region of the subbands (as in Qu's code, where
subbands have the image size); coefficients in the padding margin of ``mfkeras.baselines.nsct``'s
grid are chosen by the larger SF. The two decaying sums are updated with
``cv2.accumulateWeighted`` (one pass each, see ``_fire_counts``); the counts equal those of
the recursion above up to float32 rounding (the tests compare them with a float64
transcription of Qu's loop).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import cv2
import numpy as np
from scipy import ndimage

from mfkeras.baselines import selection
from mfkeras.baselines import nsct

DEFAULT_LEVELS = 4
DEFAULT_DIRECTIONS = (0, 1, 2, 3)
# Neurons simulated at once: 2 MB per float32 state array keeps the state in cache (a
# third less CPU time than 8 MB arrays at 520x520); small subbands are stacked up to it.
_CHUNK_ELEMENTS = 1 << 19


@dataclasses.dataclass(frozen=True)
class PCNNParams:
    """Constants of the simplified PCNN; the defaults are those of Qu's code.

    Attributes:
        iterations: number of iterations, 1 to 65535 (Qu: 200).
        alpha_l: decay constant of the linking input, > 0 (Qu: 1).
        alpha_theta: decay constant of the dynamic threshold, > 0 (Qu: 0.2).
        beta: linking strength, >= 0 (Qu: 3).
        v_l: amplitude of the linking input, > 0 (Qu: 1).
        v_theta: amplitude of the dynamic threshold, > 0 (Qu: 20).
        link_size: odd side of the linking kernel, weights 1/distance and 0 at the centre
            (Qu: 3).
    """

    # The duplicates check pairs this field list with training.data.PairConfig's by shape
    # alone (typed fields with defaults); no code is shared.
    iterations: int = 200
    alpha_l: float = 1.0
    alpha_theta: float = 0.2
    beta: float = 3.0
    v_l: float = 1.0
    v_theta: float = 20.0
    link_size: int = 3

    def __post_init__(self):
        iterations = self.iterations
        if (
            isinstance(iterations, bool)
            or not isinstance(iterations, (int, np.integer))
            or not 1 <= iterations <= 65535
        ):
            raise ValueError(
                "iterations must be an integer from 1 to 65535. "
                f"Received: iterations={iterations!r}"
            )
        for name in ("alpha_l", "alpha_theta", "beta", "v_l", "v_theta"):
            value = getattr(self, name)
            may_be_zero = name == "beta"
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.integer, np.floating))
                or not math.isfinite(value)
                or value < 0
                or (value == 0 and not may_be_zero)
            ):
                expected = "a non-negative" if may_be_zero else "a positive"
                raise ValueError(
                    f"{name} must be {expected} finite number. Received: {name}={value!r}"
                )
        size = self.link_size
        if (
            isinstance(size, bool)
            or not isinstance(size, (int, np.integer))
            or size < 1
            or size % 2 == 0
        ):
            raise ValueError(
                f"link_size must be a positive odd integer. Received: link_size={size!r}"
            )


def fuse_pcnn(
    images: Sequence[np.ndarray],
    *,
    levels: int = DEFAULT_LEVELS,
    directions: Sequence[int] | None = None,
    window: int = 3,
    **pcnn_params,
) -> np.ndarray:
    """Fuses multi-focus images with SF-motivated PCNN in the NSCT domain (Qu et al. 2008).

    See the module docstring for the method and the sources of the defaults.

    Args:
        images: two or more registered images of one shape, HxW or HxWx3, all uint8, all
            uint16 or all float.
        levels: NSCT pyramid levels, 1 to ``nsct.MAX_LEVELS``.
        directions: per level, coarsest first, the exponent k of its 2**k directional
            subbands; None takes the finest ``levels`` entries of (0, 1, 2, 3), prefixed
            with 0s beyond 4 levels.
        window: odd side of the spatial-frequency window.
        **pcnn_params: fields of ``PCNNParams`` to change, e.g. ``iterations=100``.

    Returns:
        The fused image, with the inputs' shape and dtype (integers rounded and clipped).
    """
    directions = nsct.check_transform_params(levels, directions, DEFAULT_DIRECTIONS)
    unknown = sorted(set(pcnn_params) - {f.name for f in dataclasses.fields(PCNNParams)})
    if unknown:
        raise ValueError(
            f"Unknown parameters {unknown}; fuse_pcnn takes levels, directions, window and "
            f"the fields of PCNNParams. Received: {sorted(pcnn_params)}"
        )
    params = PCNNParams(**pcnn_params)
    stack, dtype, shape = selection.validate_sources(images)
    selection.validate_rule(levels, window)
    height, width = shape[:2]
    (top, _), (left, _) = nsct.grid_padding((height, width), levels)
    interior = (slice(top, top + height), slice(left, left + width))

    # Pass 1: spatial frequency of every subband; the PCNN needs all of them at once.
    sf_maps = [
        spatial_frequency(band, window).astype(np.float32)
        for band in nsct.iter_subbands(stack, levels, directions, nsct.dfb_filter_bank)
    ]
    # (N, B, H, W) feeding inputs, scaled to [0, 1] per subband over all sources.
    feeding = np.stack([sf[(slice(None), *interior)] for sf in sf_maps], axis=1)
    low = feeding.min(axis=(0, 2, 3), keepdims=True)
    span = feeding.max(axis=(0, 2, 3), keepdims=True) - low
    feeding -= low
    feeding /= np.where(span > 0, span, 1)
    counts = pcnn_fire_counts(feeding.reshape(-1, height, width), params)
    counts = counts.reshape(feeding.shape)
    # SF (in [0, 1]) only breaks ties between equal firing counts.
    scores = counts + 0.5 * feeding

    # Pass 2: the same subbands again, each coefficient from the winning source.
    def select(index, band):
        band_scores = sf_maps[index]
        band_scores[(slice(None), *interior)] = scores[:, index]
        weights = selection.winner_weights(band_scores, tolerance=0.0)
        return np.einsum("nhw,nhwc->hwc", weights, band)

    fused = nsct.fuse_subbands(stack, levels, directions, nsct.dfb_filter_bank, select)
    return selection.to_dtype(fused, dtype, shape)


def spatial_frequency(band: np.ndarray, window: int = 3) -> np.ndarray:
    """Spatial frequency of every coefficient's ``window`` x ``window`` neighbourhood.

    Args:
        band: (N, H, W, C) subbands of N sources with C channels.
        window: odd side of the neighbourhood.

    Returns:
        (N, H, W) ``sqrt(mean(dr**2) + mean(dc**2))`` over the window, with ``dr`` and
        ``dc`` the differences to the left and upper neighbours (0 on the first
        column / row), their squares summed over channels.
    """
    row_diff = np.diff(band, axis=2, prepend=band[:, :, :1])
    col_diff = np.diff(band, axis=1, prepend=band[:, :1])
    energy = np.sum(row_diff**2 + col_diff**2, axis=-1)
    if window > 1:
        energy = ndimage.uniform_filter(energy, size=(1, window, window), mode="reflect")
    return np.sqrt(energy)


def linking_kernel(link_size: int) -> np.ndarray:
    """The (link_size, link_size) PCNN linking weights: 1/distance, 0 at the centre."""
    radius = link_size // 2
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    distance = np.hypot(y, x)
    return np.divide(1.0, distance, out=np.zeros_like(distance), where=distance > 0)


def pcnn_fire_counts(feeding: np.ndarray, params: PCNNParams = PCNNParams()) -> np.ndarray:
    """Counts how often each neuron of a simplified PCNN fires (Qu et al. 2008).

    Runs the recursion of the module docstring on every map of the stack at once, with
    zero state at the start and zero linking input from outside each map.

    Args:
        feeding: (M, H, W) feeding inputs F, normally in [0, 1].
        params: the PCNN constants.

    Returns:
        (M, H, W) firing counts, uint8 up to 255 iterations, else uint16.
    """
    feeding = np.asarray(feeding)
    if feeding.ndim != 3 or feeding.size == 0 or not np.all(np.isfinite(feeding)):
        raise ValueError(
            "feeding must be a non-empty finite (M, H, W) array. "
            f"Received: shape {feeding.shape}"
        )
    maps, height, width = feeding.shape
    count_type = np.uint8 if params.iterations <= 255 else np.uint16
    counts = np.empty(feeding.shape, count_type)
    per_chunk = max(1, _CHUNK_ELEMENTS // (height * width))
    for start in range(0, maps, per_chunk):
        chunk = slice(start, start + per_chunk)
        counts[chunk] = _fire_counts(feeding[chunk], params).astype(count_type)
    return counts


def _fire_counts(feeding: np.ndarray, params: PCNNParams) -> np.ndarray:
    """``pcnn_fire_counts`` on one chunk of maps."""
    maps, height, width = feeding.shape
    gap = params.link_size // 2
    # Maps stacked row-wise with `gap` zero rows after each: linking never crosses maps,
    # and the zero rows, fed with F = 0, never fire.
    rows = maps * (height + gap)
    stimulus = np.zeros((maps, height + gap, width), np.float32)
    stimulus[:, :height] = feeding
    stimulus = stimulus.reshape(rows, width)
    # The decaying sums L / v_l (before linking) and theta are kept as accumulators
    # acc = (1 - a) acc + a * fired, a = 1 - exp(-alpha), with fired = 255 where Y = 1
    # (cv2.compare's mask): one cv2.accumulateWeighted pass each. acc is then
    # 255 a times the recursion's value; the gains below undo that factor.
    decay_l, decay_theta = -math.expm1(-params.alpha_l), -math.expm1(-params.alpha_theta)
    link_gain = params.beta * params.v_l / (255.0 * decay_l)
    kernel = (linking_kernel(params.link_size) * link_gain).astype(np.float32)
    drive_gain = 255.0 * decay_theta / params.v_theta
    history = np.zeros((rows, width), np.float32)
    threshold = np.zeros((rows, width), np.float32)
    drive = np.empty((rows, width), np.float32)
    fired = np.zeros((rows, width), np.uint8)
    counts = np.zeros((rows, width), np.float32)  # 255 per firing, exact up to 2**24
    for _ in range(params.iterations):
        # Y[n - 1] enters the linking history and the threshold ...
        cv2.accumulateWeighted(fired, history, decay_l)
        cv2.accumulateWeighted(fired, threshold, decay_theta)
        # ... then 1 + beta L[n], U[n] scaled like the threshold, and Y[n] = U[n] > theta[n].
        cv2.filter2D(
            history, cv2.CV_32F, kernel, dst=drive, delta=1.0, borderType=cv2.BORDER_CONSTANT
        )
        cv2.multiply(stimulus, drive, dst=drive, scale=drive_gain)
        cv2.compare(drive, threshold, cv2.CMP_GT, dst=fired)
        cv2.accumulate(fired, counts)
    counts = counts.reshape(maps, height + gap, width)[:, :height]
    return np.rint(counts / 255.0)
