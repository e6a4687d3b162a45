"""Objective quality metrics for multi-focus image fusion.

Every metric follows the project's metric specification, METRICS.md in the shared
docs (section numbers below refer to it): grey images are built with MATLAB's `rgb2gray` formula, kept
as float64 on 0..255, and each metric reproduces the MATLAB code the spec names.
`evaluate_all` computes several metrics from images as loaded and shares their
intermediate results (histograms, gradients, local moments, phase congruency).

A metric that is undefined for an input (a 0/0 its definition cannot resolve)
returns NaN and issues an `UndefinedMetricWarning`; constant images that give a
well-defined value (for example SF = 0) return it without a warning.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Callable, Iterable, Optional

import cv2
import numpy as np

from mfkeras.io.color import GRAY_WEIGHTS

# MATLAB rgb2gray coefficients (spec section 0.2).
_PEAK = 255.0


class UndefinedMetricWarning(RuntimeWarning):
    """A metric is undefined for the given images and NaN was returned."""


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """Describes one metric column.

    Attributes:
        name: the column name, e.g. ``"QABF"``.
        higher_is_better: whether a larger value means a better fusion.
        range: the (low, high) bounds of the value; ``math.inf`` if unbounded.
        needs_sources: whether the metric compares F with the sources A and B.
        description: a one-line description.
    """

    name: str
    higher_is_better: bool
    range: tuple
    needs_sources: bool
    description: str


class _Undefined(Exception):
    """Raised inside a metric to make it return NaN with a warning."""


# ---------------------------------------------------------------------------
# Input handling.


def to_metric_gray(image: np.ndarray) -> np.ndarray:
    """Converts an image as loaded to the grey input of every metric.

    RGB uses MATLAB's `rgb2gray` formula on uint8 data, rounded half away from
    zero; a grey uint8 image is only cast.

    Args:
        image: uint8 array of shape (H, W) or (H, W, 3), channels in RGB order.

    Returns:
        float64 array of shape (H, W) with integer values in 0..255.
    """
    return _to_gray(image, "image")


def _to_gray(image, arg: str) -> np.ndarray:
    array = np.asarray(image)
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)
    if array.dtype != np.uint8 or not shape_ok or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(
            f"`{arg}` must be a non-empty uint8 array of shape (H, W) or (H, W, 3). "
            f"Received: dtype={array.dtype}, shape={array.shape}"
        )
    if array.ndim == 2:
        return array.astype(np.float64)
    rgb = array.astype(np.float64)
    c_r, c_g, c_b = GRAY_WEIGHTS
    return _round_half_away(rgb[..., 0] * c_r + rgb[..., 1] * c_g + rgb[..., 2] * c_b)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    # Exact for non-negative input, unlike floor(x + 0.5) just below a tie.
    low = np.floor(x)
    return low + (x - low >= 0.5)


def _check_gray(array, arg: str, metric: str) -> np.ndarray:
    x = np.asarray(array)
    if x.ndim != 2 or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(
            f"{metric}: `{arg}` must be a 2-D real grey image (see to_metric_gray). "
            f"Received: dtype={x.dtype}, shape={x.shape}"
        )
    x = x.astype(np.float64, copy=False)
    finite = np.isfinite(x)
    if not finite.all():
        raise ValueError(
            f"{metric}: `{arg}` must hold finite values. "
            f"Received: {np.count_nonzero(~finite)} non-finite values such as {x[~finite][0]}"
        )
    if x.size and (x.min() < 0.0 or x.max() > _PEAK):
        raise ValueError(
            f"{metric}: `{arg}` must hold values in 0..255. Received: min={x.min()}, max={x.max()}"
        )
    return x


def _check_integer_levels(x: np.ndarray, arg: str, metric: str) -> None:
    if not np.array_equal(x, np.round(x)):
        raise ValueError(
            f"{metric} uses a 256-bin histogram, so `{arg}` must hold integer grey levels 0..255. "
            f"Received: non-integer values such as {x[x != np.round(x)][0]!r}"
        )


def _check_shapes(metric: str, min_side: int, **arrays: np.ndarray) -> None:
    shapes = {arg: x.shape for arg, x in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{metric}: the images must have the same shape. Received: {shapes}")
    shape = next(iter(shapes.values()))
    if min(shape) < min_side:
        raise ValueError(
            f"{metric} needs images of at least {min_side}x{min_side} pixels. Received: shape={shape}"
        )


# ---------------------------------------------------------------------------
# Filtering and statistics helpers.


def _gauss_1d(size: int, sigma: float) -> np.ndarray:
    # fspecial('gaussian', size, sigma) is the outer product of this with itself.
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(offsets * offsets) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


_WINDOWS = {
    "gauss7": _gauss_1d(7, 1.5),  # Q_Y
    "gauss11": _gauss_1d(11, 1.5),  # SSIM and Q_P
    "box8": np.ones(8),  # Q_W; sums scaled by 1/64 afterwards, exact on integers
}

# corr_same_zero kernels; cv2.filter2D correlates (does not flip the kernel).
_SOBEL_VIFB_X = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
_SOBEL_LIU_X = -_SOBEL_VIFB_X
_SOBEL_Y = np.array([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]])
_SOBEL_EI = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


def _filter_same(x: np.ndarray, kernel_x, kernel_y, border=cv2.BORDER_CONSTANT) -> np.ndarray:
    return cv2.sepFilter2D(x, cv2.CV_64F, kernel_x, kernel_y, borderType=border)


def _filter_valid(x: np.ndarray, window: str) -> np.ndarray:
    kernel = _WINDOWS[window]
    size = kernel.size
    anchor = size // 2  # OpenCV's default anchor, also for even sizes
    out = _filter_same(x, kernel, kernel)
    out = out[anchor : x.shape[0] - (size - 1 - anchor), anchor : x.shape[1] - (size - 1 - anchor)]
    if window == "box8":
        out = out * (1.0 / 64.0)
    return out


def _correlate_same(x: np.ndarray, kernel: np.ndarray, border=cv2.BORDER_CONSTANT) -> np.ndarray:
    return cv2.filter2D(x, cv2.CV_64F, kernel, borderType=border)


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return abs(float(np.sum(p * np.log2(p))))  # abs: a single level gives -0.0


def _normalize1(x: np.ndarray) -> np.ndarray:
    """Liu's `normalize1`: min-max stretch to 0..255, rounded half away from zero."""
    low, high = x.min(), x.max()
    if low == high:
        # The original leaves an all-zero image alone and turns any other constant
        # image into 0/0; both carry no information, so both map to zeros.
        return np.zeros_like(x)
    return _round_half_away(((x - low) / (high - low)) * 255.0)


def _ssim_map(mean_x, mean_y, var_x, var_y, cov_xy, c1: float, c2: float) -> np.ndarray:
    return ((2.0 * mean_x * mean_y + c1) * (2.0 * cov_xy + c2)) / (
        (mean_x * mean_x + mean_y * mean_y + c1) * (var_x + var_y + c2)
    )


def _is_constant(x: np.ndarray) -> bool:
    return bool(x.min() == x.max())


# ---------------------------------------------------------------------------
# Phase congruency (spec section 13.1, Liu's myphasecong3).

_PC_NSCALE = 4
_PC_NORIENT = 6
_PC_EPS = 1e-4


@functools.lru_cache(maxsize=2)  # about 52 MB per 520x520 bank
def _phase_congruency_bank(rows: int, cols: int):
    """Log-Gabor filters and per-orientation noise constants for one image size."""

    def axis(n):
        if n % 2:
            return np.arange(-(n - 1) / 2, (n - 1) / 2 + 1) / (n - 1)
        return np.arange(-n / 2, n / 2) / n

    x, y = np.meshgrid(axis(cols), axis(rows))
    radius = np.sqrt(x * x + y * y)
    theta = np.arctan2(-y, x)
    lowpass = 1.0 / (1.0 + (radius / 0.45) ** 30)
    radius[rows // 2, cols // 2] = 1.0
    radius, theta, lowpass = (np.fft.ifftshift(a) for a in (radius, theta, lowpass))
    sin_theta, cos_theta = np.sin(theta), np.cos(theta)

    log_gabor = []
    for s in range(_PC_NSCALE):
        fo = 1.0 / (3.0 * 2.1**s)
        lg = np.exp(-(np.log(radius / fo) ** 2) / (2.0 * math.log(0.55) ** 2)) * lowpass
        lg[0, 0] = 0.0
        log_gabor.append(lg)

    theta_sigma = math.pi / _PC_NORIENT / 1.2
    filters = np.empty((_PC_NORIENT, _PC_NSCALE, rows, cols))
    noise_terms = []  # (EM_n, SAn2, SAiAj) per orientation
    for o in range(_PC_NORIENT):
        angle = o * math.pi / _PC_NORIENT
        ds = sin_theta * math.cos(angle) - cos_theta * math.sin(angle)
        dc = cos_theta * math.cos(angle) + sin_theta * math.sin(angle)
        dtheta = np.abs(np.arctan2(ds, dc))
        spread = np.exp(-(dtheta * dtheta) / (2.0 * theta_sigma**2))
        spatial = []
        for s in range(_PC_NSCALE):
            filters[o, s] = log_gabor[s] * spread
            spatial.append(np.fft.ifft2(filters[o, s]).real * math.sqrt(rows * cols))
        em_n = float(np.sum(filters[o, 0] ** 2))
        san2 = sum(float(np.sum(h * h)) for h in spatial)
        saiaj = sum(
            float(np.sum(spatial[s] * spatial[t]))
            for s in range(_PC_NSCALE)
            for t in range(s + 1, _PC_NSCALE)
        )
        noise_terms.append((em_n, san2, saiaj))
    return filters, tuple(noise_terms)


def _phase_congruency(image: np.ndarray):
    """Returns (PC, maximum moment, minimum moment) maps of a 0..255 grey image."""
    rows, cols = image.shape
    filters, noise_terms = _phase_congruency_bank(rows, cols)
    spectrum = cv2.dft(image, flags=cv2.DFT_COMPLEX_OUTPUT)  # (rows, cols, 2)
    product = np.empty_like(spectrum)
    spectrum_c, product_c = (x.view(np.complex128)[..., 0] for x in (spectrum, product))
    # Accumulators: total energy, total sum of amplitudes, covx2, covy2, covxy.
    sums = np.zeros((5, rows, cols))
    block = max(1, 16384 // cols)  # rows per block: keeps the elementwise work in cache
    for o in range(_PC_NORIENT):
        responses = []
        for s in range(_PC_NSCALE):
            np.multiply(spectrum_c, filters[o, s], out=product_c)
            eo = cv2.idft(product, flags=cv2.DFT_SCALE | cv2.DFT_COMPLEX_OUTPUT)
            responses.append(eo.view(np.complex128)[..., 0])
        threshold = _pc_noise_threshold(responses[0], noise_terms[o])
        angle = o * math.pi / _PC_NORIENT
        for start in range(0, rows, block):
            part = slice(start, start + block)
            _pc_accumulate([eo[part] for eo in responses], threshold, angle, sums[:, part])

    total_energy, total_sum_an, cov_x2, cov_y2, cov_xy = sums
    pc = total_energy / (total_sum_an + _PC_EPS)
    cov_x2 /= _PC_NORIENT / 2
    cov_y2 /= _PC_NORIENT / 2
    cov_xy /= _PC_NORIENT  # this copy of phasecong3 divides by norient, not norient/4
    denom = np.sqrt(cov_xy * cov_xy + (cov_x2 - cov_y2) ** 2) + _PC_EPS
    return pc, (cov_x2 + cov_y2 + denom) / 2.0, (cov_x2 + cov_y2 - denom) / 2.0


def _pc_noise_threshold(eo_finest: np.ndarray, noise_terms) -> float:
    """Noise energy threshold T of one orientation, from the finest-scale response."""
    em_n, san2, saiaj = noise_terms
    squared = np.abs(eo_finest).ravel()
    squared *= squared
    half = squared.size // 2
    if squared.size % 2:
        squared.partition(half)
        median_e2n = float(squared[half])
    else:
        squared.partition([half - 1, half])
        median_e2n = float((squared[half - 1] + squared[half]) / 2.0)
    noise_power = (-median_e2n / math.log(0.5)) / em_n
    en2 = 2.0 * noise_power * san2 + 4.0 * noise_power * saiaj
    tau = math.sqrt(en2 / 2.0)
    k = 2.0
    return (tau * math.sqrt(math.pi / 2.0) + k * math.sqrt((2.0 - math.pi / 2.0) * tau**2)) / 1.7


def _pc_accumulate(responses, threshold: float, angle: float, sums: np.ndarray) -> None:
    """Adds one orientation's energy, amplitude and moment terms to `sums` in place."""
    cut_off, g = 0.5, 10.0
    sum_eo = responses[0] + responses[1]
    for eo in responses[2:]:
        sum_eo += eo
    amplitude = np.abs(responses[0])
    sum_an, max_an = amplitude.copy(), amplitude
    for eo in responses[1:]:
        amplitude = np.abs(eo)
        sum_an += amplitude
        max_an = np.maximum(max_an, amplitude)

    # sum_s (E*ME + O*MO - |E*MO - O*ME|) with (ME, MO) = (sumE, sumO) / XE.
    sum_e, sum_o = sum_eo.real, sum_eo.imag
    energy = sum_e * sum_e + sum_o * sum_o
    xe = np.sqrt(energy) + _PC_EPS
    for eo in responses:
        energy -= np.abs(eo.real * sum_o - eo.imag * sum_e)
    energy /= xe
    energy -= threshold
    np.maximum(energy, 0.0, out=energy)

    width = sum_an / (max_an + _PC_EPS) / _PC_NSCALE
    energy *= 1.0 / (1.0 + np.exp((cut_off - width) * g))  # weight * Energy
    sums[0] += energy
    sums[1] += sum_an
    pc_o = energy / sum_an  # no eps: 0/0 where every response vanishes
    cx, cy = pc_o * math.cos(angle), pc_o * math.sin(angle)
    sums[2] += cx * cx
    sums[3] += cy * cy
    sums[4] += cx * cy


# ---------------------------------------------------------------------------
# Shared intermediate results.


class _Context:
    """Intermediate results of one (A, B, F) triple, computed once on demand."""

    def __init__(self, a: Optional[np.ndarray], b: Optional[np.ndarray], fused: np.ndarray):
        self.images = {"a": a, "b": b, "f": fused}
        self._memo = {}

    def _get(self, key, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def image(self, k: str) -> np.ndarray:
        return self.images[k]

    def histogram(self, k: str) -> np.ndarray:
        return self._get(
            ("hist", k), lambda: np.bincount(self.images[k].astype(np.intp).ravel(), minlength=256)
        )

    def normalized(self, k: str) -> np.ndarray:
        return self._get(("norm1", k), lambda: _normalize1(self.images[k]))

    def local_mean(self, window: str, k: str, k2: Optional[str] = None) -> np.ndarray:
        def compute():
            x = self.images[k] if k2 is None else self.images[k] * self.images[k2]
            return _filter_valid(x, window)

        key = (window,) + tuple(sorted((k,) if k2 is None else (k, k2)))
        return self._get(key, compute)

    def local_moments(self, window: str, k: str, k2: str):
        """Returns (mean_k, mean_k2, var_k, var_k2, cov) over a valid window."""
        mx, my = self.local_mean(window, k), self.local_mean(window, k2)
        var_x = self.local_mean(window, k, k) - mx * mx
        var_y = self.local_mean(window, k2, k2) - my * my
        cov = self.local_mean(window, k, k2) - mx * my
        return mx, my, var_x, var_y, cov

    def flat7(self, k: str) -> np.ndarray:
        def compute():
            x = self.images[k]
            kernel = np.ones((7, 7), np.uint8)
            flat = cv2.dilate(x, kernel) == cv2.erode(x, kernel)
            return flat[3:-3, 3:-3]

        return self._get(("flat7", k), compute)

    def sobel_vifb(self, k: str):
        def compute():
            x = self.images[k]
            sx = _correlate_same(x, _SOBEL_VIFB_X)
            sy = _correlate_same(x, _SOBEL_Y)
            with np.errstate(divide="ignore", invalid="ignore"):
                angle = np.where(sx == 0, math.pi / 2, np.arctan(sy / sx))
            return np.sqrt(sx * sx + sy * sy), angle

        return self._get(("sobel_vifb", k), compute)

    def sobel_liu(self, k: str):
        def compute():
            x = self.images[k]
            sx = _correlate_same(x, _SOBEL_LIU_X)
            sy = _correlate_same(x, _SOBEL_Y)
            magnitude = np.sqrt(sx * sx + sy * sy)
            return magnitude, np.arctan(sy / np.where(sx == 0, 1e-5, sx))

        return self._get(("sobel_liu", k), compute)

    def phase_congruency(self, k: str):
        return self._get(("pc", k), lambda: _phase_congruency(self.images[k]))

    def chen_blum_contrast(self, k: str) -> np.ndarray:
        def compute():
            x = self.normalized(k)
            csf = _chen_blum_csf(*x.shape)
            filtered = np.fft.irfft2(np.fft.rfft2(x) * csf, s=x.shape)
            g1 = _chen_blum_gaussian(2.0)
            g2 = _chen_blum_gaussian(4.0)
            ratio = _filter_same(filtered, *g1) / _filter_same(filtered, *g2)
            c = np.abs(ratio - 1.0)
            return c**3 / (c**2 + 1e-4)

        return self._get(("qcb", k), compute)


@functools.lru_cache(maxsize=4)
def _chen_blum_csf(rows: int, cols: int) -> np.ndarray:
    """The DoG contrast-sensitivity filter on rfft2's half spectrum (section 11)."""
    u = (np.arange(cols) - cols // 2) * (2.0 / cols)
    v = (np.arange(rows) - rows // 2) * (2.0 / rows)
    u, v = np.meshgrid(u * cols / 30.0, v * rows / 30.0)
    r = np.sqrt(u * u + v * v)
    csf = np.exp(-((r / 15.3870) ** 2)) - 0.7622 * np.exp(-((r / 1.3456) ** 2))
    # The filter is real and even on the DFT grid, so a real image stays real.
    return np.fft.ifftshift(csf)[:, : cols // 2 + 1]


@functools.lru_cache(maxsize=2)
def _chen_blum_gaussian(sigma: float):
    """Separable 31x31 Gaussian of section 11, deliberately not renormalised."""
    offsets = np.arange(-15.0, 16.0)
    e = np.exp(-(offsets * offsets) / (2.0 * sigma * sigma))
    return e / (2.0 * math.pi * sigma * sigma), e


# ---------------------------------------------------------------------------
# Metric implementations; each takes a _Context (spec section in the docstring).


def _en(ctx: _Context) -> float:
    """Section 1."""
    return _entropy_bits(ctx.histogram("f"))


def _ag(ctx: _Context) -> float:
    """Section 2."""
    f = ctx.image("f")
    gy, gx = np.gradient(f)
    rows, cols = f.shape
    return float(np.sum(np.sqrt((gx * gx + gy * gy) / 2.0)) / ((rows - 1) * (cols - 1)))


def _sd(ctx: _Context) -> float:
    """Section 3."""
    return float(np.std(ctx.image("f")))


def _sf(ctx: _Context) -> float:
    """Section 4."""
    f = ctx.image("f")
    rf = np.sum(np.diff(f, axis=1) ** 2) / f.size
    cf = np.sum(np.diff(f, axis=0) ** 2) / f.size
    return float(np.sqrt(rf + cf))


def _ei(ctx: _Context) -> float:
    """Section 5."""
    f = ctx.image("f")
    gx = _correlate_same(f, _SOBEL_EI, cv2.BORDER_REPLICATE)
    gy = _correlate_same(f, _SOBEL_EI.T, cv2.BORDER_REPLICATE)
    return float(np.mean(np.sqrt(gx * gx + gy * gy)))


def _ce(ctx: _Context) -> float:
    """Section 6."""
    q_counts = ctx.histogram("f")
    q = q_counts / q_counts.sum()
    terms = []
    for k, arg in (("a", "A"), ("b", "B")):
        p_counts = ctx.histogram(k)
        both = (p_counts > 0) & (q_counts > 0)
        if not both.any():
            raise _Undefined(f"{arg} and F share no grey level, so CE({arg},F) has no terms")
        p = p_counts[both] / p_counts.sum()
        terms.append(np.sum(p * np.log2(p / q[both])))
    return float((terms[0] + terms[1]) / 2.0)


_QG = (0.9994, -15.0, 0.5)  # Tg, kg, Dg
_QA = (0.9879, -22.0, 0.8)  # Ta, ka, Da


def _sigmoid(x: np.ndarray, params) -> np.ndarray:
    top, slope, mid = params
    return top / (1.0 + np.exp(slope * (x - mid)))


def _qabf(ctx: _Context) -> float:
    """Section 7 (VIFB)."""
    g_f, a_f = ctx.sobel_vifb("f")
    num, den = 0.0, 0.0
    for k in ("a", "b"):
        g_x, a_x = ctx.sobel_vifb(k)
        low, high = np.minimum(g_x, g_f), np.maximum(g_x, g_f)
        strength = np.divide(low, high, out=np.zeros_like(low), where=high > 0)
        q_g = np.where(g_x == g_f, _QG[0], _sigmoid(strength, _QG))
        q_a = _sigmoid(1.0 - np.abs(a_x - a_f) / (math.pi / 2), _QA)
        num = num + q_g * q_a * g_x
        den = den + g_x
    total = float(np.sum(den))
    if total == 0.0:
        raise _Undefined("neither source has any gradient (both are all zero)")
    return float(np.sum(num)) / total


def _qabf_l(ctx: _Context) -> float:
    """Section 8 (Liu's metricXydeas)."""
    g_a, a_a = ctx.sobel_liu("a")
    g_b, a_b = ctx.sobel_liu("b")
    g_f, a_f = ctx.sobel_liu("f")
    if not (g_a.any() or g_b.any()):
        raise _Undefined("neither source has any gradient (both are all zero)")

    def guard(g):
        return np.where(g == 0, 1e-5, g)

    # Order of the 1e-5 guards as in the original (section 8, step 3).
    bigger = g_a > g_f
    g_a2, g_f2 = guard(g_a), guard(g_f)
    strength_a = np.where(bigger, g_f / g_a2, g_a2 / g_f2)
    bigger = g_b > g_f2
    g_b2 = guard(g_b)
    strength_b = np.where(bigger, g_f2 / g_b2, g_b2 / g_f2)

    def q(strength, angle_x):
        return _sigmoid(strength, _QG) * _sigmoid(1.0 - 2.0 * np.abs(angle_x - a_f) / math.pi, _QA)

    num = q(strength_a, a_a) * g_a2 + q(strength_b, a_b) * g_b2
    return float(np.sum(num) / np.sum(g_a2 + g_b2))


def _mutual_information_terms(ctx: _Context, k: str):
    """Returns (I(X,F), H_X, H_F) in bits on normalize1'd images (section 9)."""

    def compute():
        x = ctx.normalized(k).astype(np.intp).ravel()
        f = ctx.normalized("f").astype(np.intp).ravel()
        joint = np.bincount(x * 256 + f, minlength=256 * 256)
        h_x = _entropy_bits(np.bincount(x, minlength=256))
        h_f = _entropy_bits(np.bincount(f, minlength=256))
        return h_x + h_f - _entropy_bits(joint), h_x, h_f

    return ctx._get(("mi", k), compute)


def _mi(ctx: _Context) -> float:
    """Section 9, MI."""
    return float(_mutual_information_terms(ctx, "a")[0] + _mutual_information_terms(ctx, "b")[0])


def _nmi(ctx: _Context) -> float:
    """Section 9, NMI."""
    total = 0.0
    for k, arg in (("a", "A"), ("b", "B")):
        i, h_x, h_f = _mutual_information_terms(ctx, k)
        if h_x + h_f == 0.0:
            raise _Undefined(f"{arg} and F are both constant, so I({arg},F)/(H_{arg}+H_F) is 0/0")
        total += i / (h_x + h_f)
    return float(2.0 * total)


def _qy(ctx: _Context) -> float:
    """Section 10, stabilised."""
    c = 2e-16
    flat = {k: ctx.flat7(k) for k in "abf"}

    def ssim(kx, ky):
        mx, my, vx, vy, cov = ctx.local_moments("gauss7", kx, ky)
        vx = np.where(flat[kx], 0.0, vx)
        vy = np.where(flat[ky], 0.0, vy)
        cov = np.where(flat[kx] | flat[ky], 0.0, cov)
        return _ssim_map(mx, my, vx, vy, cov, c, c), vx, vy

    ssim_ab, var_a, var_b = ssim("a", "b")
    ssim_af = ssim("a", "f")[0]
    ssim_bf = ssim("b", "f")[0]
    both_flat = (var_a + var_b) == 0
    var_a = var_a + 0.5 * both_flat
    var_b = var_b + 0.5 * both_flat
    lam = var_a / (var_a + var_b)
    q = np.where(ssim_ab >= 0.75, lam * ssim_af + (1.0 - lam) * ssim_bf, np.maximum(ssim_af, ssim_bf))
    return float(np.mean(q))


def _qcb(ctx: _Context) -> float:
    """Section 11."""
    for k, arg in (("a", "A"), ("b", "B"), ("f", "F")):
        if _is_constant(ctx.image(k)):
            raise _Undefined(f"{arg} is constant, so its local contrast is 0/0")
    c_a, c_b, c_f = (ctx.chen_blum_contrast(k) for k in "abf")
    q_af = np.where(c_a < c_f, c_a / c_f, c_f / c_a)
    q_bf = np.where(c_b < c_f, c_b / c_f, c_f / c_b)
    s_a, s_b = c_a * c_a, c_b * c_b
    return float(np.mean(s_a / (s_a + s_b) * q_af + s_b / (s_a + s_b) * q_bf))


def _qw(ctx: _Context) -> float:
    """Section 12 (Liu's metricPeilla, option 2)."""
    c = (1e-6 * 255.0) ** 2
    _, _, var_a, var_b, _ = ctx.local_moments("box8", "a", "b")
    both_flat = (var_a + var_b) == 0
    var_a = var_a + 0.5 * both_flat
    var_b = var_b + 0.5 * both_flat
    lam = var_a / (var_a + var_b)
    ssim_fa = _ssim_map(*ctx.local_moments("box8", "f", "a"), c, c)
    ssim_fb = _ssim_map(*ctx.local_moments("box8", "f", "b"), c, c)
    weight = np.maximum(var_a, var_b)
    weight = weight / np.sum(weight)
    return float(np.sum(weight * (lam * ssim_fa + (1.0 - lam) * ssim_fb)))


def _qp(ctx: _Context) -> float:
    """Section 13 (Liu's metricZhao)."""
    if _is_constant(ctx.image("f")):
        raise _Undefined("F is constant, so its phase-congruency moments are 0/0")
    feats = {k: ctx.phase_congruency(k) for k in "abf"}
    pc_a, pc_b = feats["a"][0], feats["b"][0]
    pick_a = pc_a > pc_b
    pc_max = np.where(pick_a, pc_a, pc_b)
    masks = (pc_a > 0.1, pc_b > 0.1, pc_max > 0.1)
    count = int(np.count_nonzero(masks[2]))
    if count == 0:
        raise _Undefined("no pixel of either source has phase congruency above 0.1")
    g = _WINDOWS["gauss11"]
    c = 1e-4

    def local(x):
        return _filter_same(x, g, g)

    score = 1.0
    for i in range(3):  # PC, maximum moment, minimum moment
        x_f = feats["f"][i]
        mean_f = local(x_f)
        var_f = local(x_f * x_f) - mean_f * mean_f
        sources = (feats["a"][i], feats["b"][i], np.where(pick_a, feats["a"][i], feats["b"][i]))
        best = None
        for x, mask in zip(sources, masks):
            x = np.where(mask, x, 0.0)
            mean_x = local(x)
            var_x = local(x * x) - mean_x * mean_x
            cov = local(x * x_f) - mean_x * mean_f
            r = np.where(mask, (cov + c) / (np.sqrt(np.abs(var_x * var_f)) + c), 0.0)
            best = r if best is None else np.maximum(best, r)
        score *= float(np.sum(best)) / count
    return score


def _ssim_against(ctx: _Context, k: str) -> float:
    c1, c2 = (0.01 * _PEAK) ** 2, (0.03 * _PEAK) ** 2
    return float(np.mean(_ssim_map(*ctx.local_moments("gauss11", k, "f"), c1, c2)))


def _mean_ssim(ctx: _Context) -> float:
    """Section 14."""
    return (_ssim_against(ctx, "a") + _ssim_against(ctx, "b")) / 2.0


# ---------------------------------------------------------------------------
# Public API.


@dataclasses.dataclass(frozen=True)
class _Impl:
    function: Callable[[_Context], float]
    min_side: int  # smallest image side the definition allows
    integer_levels: bool  # whether the metric takes a 256-bin histogram


_IMPLS = {
    "EN": _Impl(_en, 1, True),
    "AG": _Impl(_ag, 2, False),
    "SD": _Impl(_sd, 1, False),
    "SF": _Impl(_sf, 1, False),
    "EI": _Impl(_ei, 1, False),
    "CE": _Impl(_ce, 1, True),
    "QABF": _Impl(_qabf, 1, False),
    "QABF_L": _Impl(_qabf_l, 1, False),
    "MI": _Impl(_mi, 1, False),
    "NMI": _Impl(_nmi, 1, False),
    "QY": _Impl(_qy, 7, False),
    "QCB": _Impl(_qcb, 1, False),
    "QW": _Impl(_qw, 8, False),
    "QP": _Impl(_qp, 2, False),
    "SSIM": _Impl(_mean_ssim, 11, False),
}


def _run(name: str, ctx: _Context, stacklevel: int) -> float:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        try:
            value = _IMPLS[name].function(ctx)
            if not math.isfinite(value):
                raise _Undefined("a 0/0 occurred in its intermediate maps")
        except _Undefined as reason:
            warnings.warn(
                f"{name} is undefined for these images: {reason}. Returning NaN.",
                UndefinedMetricWarning,
                stacklevel=stacklevel + 1,
            )
            return math.nan
    return float(value)


def _evaluate_one(name: str, a, b, fused) -> float:
    impl = _IMPLS[name]
    arrays = {"fused": fused} if a is None else {"a": a, "b": b, "fused": fused}
    arrays = {arg: _check_gray(x, arg, name) for arg, x in arrays.items()}
    _check_shapes(name, impl.min_side, **arrays)
    if impl.integer_levels:
        for arg, x in arrays.items():
            _check_integer_levels(x, arg, name)
    ctx = _Context(arrays.get("a"), arrays.get("b"), arrays["fused"])
    return _run(name, ctx, stacklevel=3)


def entropy(fused: np.ndarray) -> float:
    """EN (the paper's IE): Shannon entropy of F's grey levels, in bits.

    Args:
        fused: 2-D grey image with integer levels 0..255 (see `to_metric_gray`).

    Returns:
        The entropy, 0..8; higher is better.
    """
    return _evaluate_one("EN", None, None, fused)


def average_gradient(fused: np.ndarray) -> float:
    """AG: VIFB's average gradient of F.

    Args:
        fused: 2-D grey image, float 0..255.

    Returns:
        The average gradient, >= 0; higher is better.
    """
    return _evaluate_one("AG", None, None, fused)


def standard_deviation(fused: np.ndarray) -> float:
    """SD: population standard deviation (ddof=0) of F.

    Args:
        fused: 2-D grey image, float 0..255.

    Returns:
        The standard deviation, 0..127.5; higher is better.
    """
    return _evaluate_one("SD", None, None, fused)


def spatial_frequency(fused: np.ndarray) -> float:
    """SF: spatial frequency of F (row and column differences over M*N).

    Args:
        fused: 2-D grey image, float 0..255.

    Returns:
        The spatial frequency, >= 0; higher is better.
    """
    return _evaluate_one("SF", None, None, fused)


def edge_intensity(fused: np.ndarray) -> float:
    """EI: mean Sobel gradient magnitude of F (replicated border).

    Args:
        fused: 2-D grey image, float 0..255.

    Returns:
        The edge intensity, >= 0; higher is better.
    """
    return _evaluate_one("EI", None, None, fused)


# Deliberate twins: one thin public wrapper per metric, each with its own docstring (range,
# direction, NaN cases), all delegating to _evaluate_one.
def cross_entropy(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """CE: VIFB's cross-entropy between each source's and F's histograms, averaged.

    Args:
        a: first source, 2-D grey image with integer levels 0..255.
        b: second source, same shape.
        fused: fused image, same shape.

    Returns:
        The cross-entropy in bits; lower is better. NaN (with a warning) when a
        source shares no grey level with F.
    """
    return _evaluate_one("CE", a, b, fused)


def qabf(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """QABF: Xydeas and Petrovic's edge preservation Q^AB/F, VIFB version.

    Args:
        a: first source, 2-D grey image, float 0..255.
        b: second source, same shape.
        fused: fused image, same shape.

    Returns:
        Q^AB/F in [0, 0.9873]; higher is better. NaN (with a warning) when both
        sources are all zero.
    """
    return _evaluate_one("QABF", a, b, fused)


def qabf_liu(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """QABF_L: Q^AB/F as in Liu's corrected `metricXydeas`.

    Args:
        a: first source, 2-D grey image, float 0..255.
        b: second source, same shape.
        fused: fused image, same shape.

    Returns:
        Q^AB/F in [0, 0.9873]; higher is better. NaN (with a warning) when both
        sources are all zero, where only the code's 1e-5 guards would set it.
    """
    return _evaluate_one("QABF_L", a, b, fused)


def mutual_information(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """MI: I(A,F) + I(B,F) in bits, on min-max stretched images.

    A constant image has zero information (the original code divides by zero).

    Args:
        a: first source, 2-D grey image, float 0..255.
        b: second source, same shape.
        fused: fused image, same shape.

    Returns:
        The mutual information, 0..16; higher is better.
    """
    return _evaluate_one("MI", a, b, fused)


def normalized_mutual_information(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """NMI: Hossny et al.'s normalised mutual information (Liu's Q_MI).

    Args:
        a: first source, 2-D grey image, float 0..255.
        b: second source, same shape.
        fused: fused image, same shape.

    Returns:
        NMI in [0, 2]; higher is better. NaN (with a warning) when F and a source
        are both constant.
    """
    return _evaluate_one("NMI", a, b, fused)


def qy(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """QY: Yang et al.'s SSIM-based metric, stabilised on flat 7x7 windows.

    Args:
        a: first source, 2-D grey image at least 7x7, float 0..255.
        b: second source, same shape.
        fused: fused image, same shape.

    Returns:
        Q_Y in [-1, 1]; higher is better.
    """
    return _evaluate_one("QY", a, b, fused)


def qcb(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """QCB: Chen and Blum's human-perception-based metric.

    Args:
        a: first source, 2-D grey image, float 0..255.
        b: second source, same shape.
        fused: fused image, same shape.

    Returns:
        Q_CB in [0, 1]; higher is better. NaN (with a warning) when any image
        is constant.
    """
    return _evaluate_one("QCB", a, b, fused)


def qw(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """QW: Piella and Heijmans' weighted fusion quality index (8x8 windows).

    Args:
        a: first source, 2-D grey image at least 8x8, float 0..255.
        b: second source, same shape.
        fused: fused image, same shape.

    Returns:
        Q_W in [-1, 1]; higher is better.
    """
    return _evaluate_one("QW", a, b, fused)


def qp(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """QP: Zhao et al.'s phase-congruency metric.

    Args:
        a: first source, 2-D grey image, float 0..255.
        b: second source, same shape.
        fused: fused image, same shape.

    Returns:
        Q_P, nominally in [0, 1]; higher is better. NaN (with a warning) when F
        is constant or no source pixel has phase congruency above 0.1.
    """
    return _evaluate_one("QP", a, b, fused)


def mean_ssim(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """SSIM column: the mean of `ssim(a, fused)` and `ssim(b, fused)`.

    Args:
        a: first source, 2-D grey image at least 11x11, float 0..255.
        b: second source, same shape.
        fused: fused image, same shape.

    Returns:
        The mean SSIM in [-1, 1]; higher is better (VIFB reports twice this).
    """
    return _evaluate_one("SSIM", a, b, fused)


def ssim(reference: np.ndarray, image: np.ndarray) -> float:
    """SSIM of an image against a ground truth (Wang et al. 2004).

    Gaussian 11x11 window with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, valid
    positions only, population moments.

    Args:
        reference: 2-D grey ground truth at least 11x11, float 0..255.
        image: 2-D grey image of the same shape.

    Returns:
        The mean SSIM in [-1, 1]; higher is better.
    """
    ref = _check_gray(reference, "reference", "ssim")
    img = _check_gray(image, "image", "ssim")
    _check_shapes("ssim", 11, reference=ref, image=img)
    return _ssim_against(_Context(ref, None, img), "a")


def psnr(reference: np.ndarray, image: np.ndarray) -> float:
    """Peak signal-to-noise ratio with peak 255, in dB.

    Args:
        reference: 2-D grey ground truth, float 0..255.
        image: 2-D grey image of the same shape.

    Returns:
        The PSNR; higher is better; ``inf`` when the images are identical.
    """
    ref = _check_gray(reference, "reference", "psnr")
    img = _check_gray(image, "image", "psnr")
    _check_shapes("psnr", 1, reference=ref, image=img)
    mse = float(np.mean((ref - img) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(_PEAK * _PEAK / mse)


_CE_LOW = -math.log2(math.e) / math.e  # a restricted KL sum is at least min p*log2(p)
_QABF_HIGH = _QG[0] * _QA[0]

METRICS = {
    info.name: (info, function)
    for info, function in (
        (MetricInfo("EN", True, (0.0, 8.0), False, "information entropy (IE), bits"), entropy),
        (MetricInfo("AG", True, (0.0, math.inf), False, "average gradient"), average_gradient),
        (MetricInfo("SD", True, (0.0, 127.5), False, "standard deviation"), standard_deviation),
        (MetricInfo("SF", True, (0.0, math.inf), False, "spatial frequency"), spatial_frequency),
        (MetricInfo("EI", True, (0.0, math.inf), False, "edge intensity"), edge_intensity),
        (MetricInfo("CE", False, (_CE_LOW, math.inf), True, "cross-entropy, bits"), cross_entropy),
        (MetricInfo("QABF", True, (0.0, _QABF_HIGH), True, "Q^AB/F, VIFB code"), qabf),
        (MetricInfo("QABF_L", True, (0.0, _QABF_HIGH), True, "Q^AB/F, Liu's code"), qabf_liu),
        (MetricInfo("MI", True, (0.0, 16.0), True, "mutual information, bits"), mutual_information),
        (
            MetricInfo("NMI", True, (0.0, 2.0), True, "normalised mutual information"),
            normalized_mutual_information,
        ),
        (MetricInfo("QY", True, (-1.0, 1.0), True, "Yang et al. SSIM-based, stabilised"), qy),
        (MetricInfo("QCB", True, (0.0, 1.0), True, "Chen-Blum perceptual"), qcb),
        (MetricInfo("QW", True, (-1.0, 1.0), True, "Piella weighted fusion quality"), qw),
        (MetricInfo("QP", True, (0.0, 1.0), True, "Zhao et al. phase congruency"), qp),
        (MetricInfo("SSIM", True, (-1.0, 1.0), True, "mean SSIM of F against A and B"), mean_ssim),
    )
}
"""Column name -> (MetricInfo, function), in the spec's column order.

The function takes (fused) when `needs_sources` is False, else (a, b, fused),
all float64 grey images on 0..255 (see `to_metric_gray`).
"""


def evaluate_all(
    a: np.ndarray, b: np.ndarray, fused: np.ndarray, names: Optional[Iterable[str]] = None
) -> dict:
    """Computes several metrics of one fusion, sharing intermediate results.

    Args:
        a: first source as loaded, uint8 of shape (H, W) or (H, W, 3), RGB order.
        b: second source, same (H, W).
        fused: fused image, same (H, W).
        names: metric columns to compute (keys of `METRICS`); all when None.

    Returns:
        Dict of column name -> float, in the order requested.
    """
    if names is None:
        names = tuple(METRICS)
    else:
        names = (names,) if isinstance(names, str) else tuple(names)
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise ValueError(
                f"Unknown metric names {unknown}; expected some of {list(METRICS)}. "
                f"Received: names={names}"
            )
    grays = {arg: _to_gray(x, arg) for arg, x in (("a", a), ("b", b), ("fused", fused))}
    _check_shapes("evaluate_all", 1, **grays)
    for name in names:
        _check_shapes(name, _IMPLS[name].min_side, **grays)
    ctx = _Context(grays["a"], grays["b"], grays["fused"])
    return {name: _run(name, ctx, stacklevel=2) for name in names}
