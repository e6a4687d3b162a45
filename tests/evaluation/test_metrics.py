"""Tests for mfkeras.evaluation.metrics: goldens from the shared data, and invariants that need none."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import warnings
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

from mfkeras.evaluation import metrics

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
GOLDENS = SHARED / "docs" / "metric_goldens.json"
GOLDEN_RTOL = 1e-6

SOURCE_METRICS = [name for name, (info, _) in metrics.METRICS.items() if info.needs_sources]
FUSED_ONLY_METRICS = [name for name, (info, _) in metrics.METRICS.items() if not info.needs_sources]


def _golden_params():
    if not GOLDENS.exists():
        skip = pytest.mark.skip(reason=f"shared goldens not found at {GOLDENS}")
        return [pytest.param(None, marks=skip)]
    cases = json.loads(GOLDENS.read_text())["cases"]
    return [pytest.param(i, id=f"{c['pair']}_{c['method']}") for i, c in enumerate(cases)]


@functools.lru_cache(maxsize=None)
def _golden(index: int):
    """Returns (case, {'A','B','F'}: RGB uint8, {'A','B','F'}: grey float64, evaluate_all result)."""
    case = json.loads(GOLDENS.read_text())["cases"][index]
    rgb = {}
    for key, rel in case["files"].items():
        bgr = cv2.imread(str(GOLDENS.parent / rel), cv2.IMREAD_COLOR)
        assert bgr is not None, f"cannot read {GOLDENS.parent / rel}"
        rgb[key] = np.ascontiguousarray(bgr[..., ::-1])
    gray = {key: metrics.to_metric_gray(image) for key, image in rgb.items()}
    return case, rgb, gray, metrics.evaluate_all(rgb["A"], rgb["B"], rgb["F"])


def _call(name, a, b, fused):
    info, function = metrics.METRICS[name]
    return function(a, b, fused) if info.needs_sources else function(fused)


def _smooth_image(seed: int, shape=(64, 64), sigma=2.0) -> np.ndarray:
    """Integer grey image 0..255 with structure at several scales."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    x = x + 0.3 * ndimage.gaussian_filter(rng.standard_normal(shape), sigma / 4)
    x = (x - x.min()) / (x.max() - x.min())
    return np.round(x * 255.0)


def _multifocus_triple(seed: int, shape=(64, 64)):
    """Sources each blurred on one half, and a fused image that is neither."""
    sharp = _smooth_image(seed, shape, sigma=1.5)
    blurred = np.round(ndimage.gaussian_filter(sharp, 2.0))
    half = shape[1] // 2
    a, b = sharp.copy(), sharp.copy()
    a[:, half:] = blurred[:, half:]
    b[:, :half] = blurred[:, :half]
    fused = np.round(0.7 * sharp + 0.3 * blurred)
    return a, b, fused


# ---------------------------------------------------------------------------
# Goldens (need ../shared beside the repository).


@pytest.mark.parametrize("index", _golden_params())
def test_golden_inputs_match_checksums_and_grey_sums(index):
    case, rgb, gray, _ = _golden(index)
    for key, rel in case["files"].items():
        digest = hashlib.sha256((GOLDENS.parent / rel).read_bytes()).hexdigest()
        assert digest == case["sha256"][key], key
        assert rgb[key].shape[:2] == tuple(case["image_size"])
        assert gray[key].sum() == case["gray_pixel_sum"][key], key


@pytest.mark.parametrize("name", list(metrics.METRICS))
@pytest.mark.parametrize("index", _golden_params())
def test_evaluate_all_matches_goldens(index, name):
    case, _, _, result = _golden(index)
    expected = case["metrics_full_precision"][name]
    assert result[name] == pytest.approx(expected, rel=GOLDEN_RTOL, abs=0.0)


@pytest.mark.parametrize("index", _golden_params())
def test_public_functions_match_evaluate_all_on_goldens(index):
    _, _, gray, result = _golden(index)
    for name in metrics.METRICS:
        value = _call(name, gray["A"], gray["B"], gray["F"])
        assert value == pytest.approx(result[name], rel=1e-12, abs=0.0), name


# ---------------------------------------------------------------------------
# Grey conversion.

# (R, G, B) -> 0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B, worked by hand.
HAND_PIXELS = [
    ((0, 0, 0), 0.0),
    ((255, 0, 0), 76.0),  # 76.228685429913
    ((0, 255, 0), 150.0),  # 149.696033985036 (truncation would give 149)
    ((0, 0, 255), 29.0),  # 29.075330585051
    ((10, 20, 30), 18.0),  # 2.98936 + 11.74086 + 3.42063 = 18.15085
    ((255, 255, 255), 255.0),  # the coefficients sum to 0.999999999999999
    ((246, 197, 108), 202.0),  # 201.5000045647: the .5 case closest to a tie, rounds up
    ((0, 49, 138), 44.0),  # 44.4999954353: just below .5, rounds down
]


@pytest.mark.parametrize("rgb,expected", HAND_PIXELS)
def test_to_metric_gray_hand_computed_pixels(rgb, expected):
    image = np.array([[rgb]], dtype=np.uint8)
    out = metrics.to_metric_gray(image)
    assert out.dtype == np.float64 and out.shape == (1, 1)
    assert out[0, 0] == expected


def test_to_metric_gray_matches_exact_rational_rounding():
    coefficients = [Fraction(c) for c in ("0.298936021293775", "0.587043074451121", "0.114020904255103")]
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (1, 2000, 3), dtype=np.uint8)
    out = metrics.to_metric_gray(pixels)[0]
    for (r, g, b), got in zip(pixels[0], out):
        exact = coefficients[0] * int(r) + coefficients[1] * int(g) + coefficients[2] * int(b)
        assert got == math.floor(exact + Fraction(1, 2)), (r, g, b)


def test_to_metric_gray_passes_grey_through():
    gray = np.array([[0, 17], [128, 255]], dtype=np.uint8)
    out = metrics.to_metric_gray(gray)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, gray.astype(np.float64))


@pytest.mark.parametrize(
    "image,fragment",
    [
        (np.zeros((4, 4), np.float64), "dtype=float64"),
        (np.zeros((4, 4, 4), np.uint8), "shape=(4, 4, 4)"),
        (np.zeros((4, 4, 1), np.uint8), "shape=(4, 4, 1)"),
        (np.zeros(4, np.uint8), "shape=(4,)"),
        (np.zeros((0, 4), np.uint8), "shape=(0, 4)"),
        (np.zeros((4, 4), np.uint16), "dtype=uint16"),
    ],
)
def test_to_metric_gray_rejects_other_inputs(image, fragment):
    with pytest.raises(ValueError, match="Received") as error:
        metrics.to_metric_gray(image)
    assert fragment in str(error.value)


# ---------------------------------------------------------------------------
# Independent computations of the simple metrics.


@pytest.mark.parametrize("levels,bits", [((0, 255), 1.0), ((3, 9, 100, 200), 2.0), ((42,), 0.0)])
def test_entropy_of_equally_frequent_levels(levels, bits):
    image = np.resize(np.array(levels, np.float64), (8, 8))
    assert metrics.entropy(image) == pytest.approx(bits, abs=1e-15)


@pytest.mark.parametrize("seed", [0, 1])
def test_standard_deviation_is_population_std(seed):
    image = _smooth_image(seed, (17, 23))
    assert metrics.standard_deviation(image) == pytest.approx(np.std(image, ddof=0), rel=1e-14)
    assert metrics.standard_deviation(image) != pytest.approx(np.std(image, ddof=1), rel=1e-6)


def test_spatial_frequency_by_explicit_loops():
    image = _smooth_image(3, (6, 7))
    rows, cols = image.shape
    rf = sum((image[i, j] - image[i, j - 1]) ** 2 for i in range(rows) for j in range(1, cols))
    cf = sum((image[i, j] - image[i - 1, j]) ** 2 for i in range(1, rows) for j in range(cols))
    expected = math.sqrt(rf / (rows * cols) + cf / (rows * cols))
    assert metrics.spatial_frequency(image) == pytest.approx(expected, rel=1e-13)


def test_average_gradient_by_explicit_loops():
    image = _smooth_image(4, (5, 8))
    rows, cols = image.shape

    def derivative(line, k):
        if k == 0:
            return line[1] - line[0]
        if k == len(line) - 1:
            return line[-1] - line[-2]
        return (line[k + 1] - line[k - 1]) / 2

    total = 0.0
    for i in range(rows):
        for j in range(cols):
            gx, gy = derivative(image[i], j), derivative(image[:, j], i)
            total += math.sqrt((gx * gx + gy * gy) / 2)
    assert metrics.average_gradient(image) == pytest.approx(total / ((rows - 1) * (cols - 1)), rel=1e-13)


def test_edge_intensity_matches_scipy_sobel_with_nearest_border():
    image = _smooth_image(5, (20, 30))
    gx = ndimage.sobel(image, axis=1, mode="nearest")
    gy = ndimage.sobel(image, axis=0, mode="nearest")
    assert metrics.edge_intensity(image) == pytest.approx(np.mean(np.hypot(gx, gy)), rel=1e-13)


def test_cross_entropy_hand_computed():
    a = np.array([[0, 0, 1, 1]], np.float64)  # p = (1/2, 1/2)
    f = np.array([[0, 1, 1, 1]], np.float64)  # q = (1/4, 3/4)
    expected_af = 0.5 * math.log2(0.5 / 0.25) + 0.5 * math.log2(0.5 / 0.75)
    assert metrics.cross_entropy(a, f, f) == pytest.approx((expected_af + 0.0) / 2, rel=1e-14)


def test_mutual_information_hand_computed():
    # F = A (1 bit); B is a checkerboard, independent of F (0 bits).
    a = np.zeros((4, 4))
    a[:, 2:] = 255
    b = (np.indices((4, 4)).sum(axis=0) % 2) * 255.0
    assert metrics.mutual_information(a, b, a) == pytest.approx(1.0, abs=1e-14)
    # NMI = 2 * (1 / (1 + 1) + 0 / (1 + 1)).
    assert metrics.normalized_mutual_information(a, b, a) == pytest.approx(1.0, abs=1e-14)


def test_psnr_hand_computed():
    reference = np.zeros((4, 5))
    assert metrics.psnr(reference, reference + 1.0) == pytest.approx(20 * math.log10(255), rel=1e-14)
    assert metrics.psnr(reference, reference + 5.0) == pytest.approx(20 * math.log10(255 / 5), rel=1e-14)
    assert metrics.psnr(reference, reference) == math.inf


@pytest.mark.parametrize("c1,c2", [(10.0, 10.0), (10.0, 200.0), (0.0, 255.0)])
def test_ssim_of_constant_images_is_the_luminance_term(c1, c2):
    k1, k2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = (2 * c1 * c2 + k1) / (c1 * c1 + c2 * c2 + k1)  # contrast term is k2 / k2
    assert k2 > 0
    got = metrics.ssim(np.full((12, 13), c1), np.full((12, 13), c2))
    assert got == pytest.approx(expected, rel=1e-13)


def test_ssim_of_an_image_with_itself_is_one_and_drops_with_noise():
    image = _smooth_image(6)
    assert metrics.ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 20, image.shape), 0, 255)
    assert metrics.ssim(image, noisy) < 0.9


# ---------------------------------------------------------------------------
# Invariants.


@pytest.mark.parametrize("value", [0, 7, 255])
@pytest.mark.parametrize("name", FUSED_ONLY_METRICS)
def test_fused_only_metrics_of_a_constant_image_are_zero(name, value):
    image = np.full((9, 12), float(value))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _call(name, None, None, image) == 0.0


# Q^AB/F as Liu wrote it modifies g_F before treating B (spec 8.3), so it is
# symmetric only up to its 1e-5 guards; every other definition is symmetric.
SWAP_RTOL = {name: 1e-12 for name in SOURCE_METRICS}
SWAP_RTOL["QABF_L"] = 1e-6


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", SOURCE_METRICS)
def test_source_metrics_are_invariant_to_swapping_sources(name, seed):
    a, b, fused = _multifocus_triple(seed)
    forward = _call(name, a, b, fused)
    assert math.isfinite(forward)
    assert _call(name, b, a, fused) == pytest.approx(forward, rel=SWAP_RTOL[name], abs=1e-15)


def test_swap_check_would_see_an_asymmetric_metric():
    # Guards the test above: swapping sources does change what the images are.
    a, b, fused = _multifocus_triple(0)
    assert metrics.ssim(a, fused) != pytest.approx(metrics.ssim(b, fused), rel=1e-3)


_TG, _TA = 0.9994, 0.9879
PERFECT_SCORES = {
    "SSIM": 1.0,
    "QY": 1.0,
    "QW": 1.0,
    "QCB": 1.0,
    "NMI": 2.0,
    "CE": 0.0,
    # Equal magnitudes give Tg (VIFB) or the sigmoid at G = 1 (Liu); equal
    # angles give the orientation sigmoid at Al = 1.
    "QABF": _TG * _TA / (1 + math.exp(-22 * 0.2)),
    "QABF_L": _TG / (1 + math.exp(-15 * 0.5)) * _TA / (1 + math.exp(-22 * 0.2)),
}


@pytest.mark.parametrize("name,expected", sorted(PERFECT_SCORES.items()))
def test_fused_equal_to_identical_sources_gives_the_perfect_score(name, expected):
    image = _smooth_image(7)
    assert _call(name, image, image, image) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_mutual_information_of_identical_images_is_twice_the_entropy():
    image = _smooth_image(8)  # spans 0..255, so normalize1 leaves it unchanged
    expected = 2 * metrics.entropy(image)
    assert metrics.mutual_information(image, image, image) == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_lie_in_the_stated_ranges(seed):
    a, b, fused = (x.astype(np.uint8) for x in _multifocus_triple(seed))
    for name, value in metrics.evaluate_all(a, b, fused).items():
        low, high = metrics.METRICS[name][0].range
        assert low <= value <= high, (name, value)


def test_a_better_fusion_scores_better_in_the_stated_direction():
    a, b, _ = _multifocus_triple(9)
    sharp = _smooth_image(9, sigma=1.5)
    good = metrics.evaluate_all(*(x.astype(np.uint8) for x in (a, b, sharp)))
    blurred = np.round(ndimage.gaussian_filter(sharp, 2.0))
    poor = metrics.evaluate_all(*(x.astype(np.uint8) for x in (a, b, blurred)))
    for name in ("QABF", "QABF_L", "SF", "AG", "EI", "QP", "SSIM", "QW"):
        better = good[name] > poor[name]
        assert better == metrics.METRICS[name][0].higher_is_better, name


def test_metric_table_describes_every_metric():
    assert list(metrics.METRICS) == [
        "EN", "AG", "SD", "SF", "EI", "CE", "QABF", "QABF_L", "MI", "NMI", "QY", "QCB", "QW", "QP", "SSIM",
    ]  # fmt: skip
    for name, (info, function) in metrics.METRICS.items():
        assert info.name == name and callable(function)
        assert info.range[0] < info.range[1]
        assert info.higher_is_better == (name != "CE")


# ---------------------------------------------------------------------------
# Undefined cases: NaN with a warning naming the metric, never an exception.

ZERO = np.zeros((24, 24))
SEVEN = np.full((24, 24), 7.0)
TWO_HUNDRED = np.full((24, 24), 200.0)
TEXTURE = _smooth_image(10, (24, 24))
TEXTURE_2 = _smooth_image(11, (24, 24))

UNDEFINED_CASES = [
    pytest.param("CE", SEVEN, SEVEN, TWO_HUNDRED, "share no grey level", id="CE-disjoint-levels"),
    pytest.param("QABF", ZERO, ZERO, TEXTURE, "gradient", id="QABF-black-sources"),
    pytest.param("QABF_L", ZERO, ZERO, TEXTURE, "gradient", id="QABF_L-black-sources"),
    pytest.param("NMI", SEVEN, TEXTURE, SEVEN, "constant", id="NMI-constant-A-and-F"),
    pytest.param("QCB", SEVEN, TEXTURE, TEXTURE_2, "constant", id="QCB-constant-source"),
    pytest.param("QCB", TEXTURE, TEXTURE_2, ZERO, "constant", id="QCB-constant-fused"),
    pytest.param("QP", TEXTURE, TEXTURE_2, SEVEN, "constant", id="QP-constant-fused"),
    pytest.param("QP", SEVEN, ZERO, TEXTURE, "phase congruency", id="QP-featureless-sources"),
]


@pytest.mark.parametrize("name,a,b,fused,reason", UNDEFINED_CASES)
def test_undefined_metric_returns_nan_with_a_warning(name, a, b, fused, reason):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = _call(name, a, b, fused)
        from_all = metrics.evaluate_all(*(x.astype(np.uint8) for x in (a, b, fused)), names=[name])
    assert math.isnan(value) and math.isnan(from_all[name])
    assert [w.category for w in caught] == [metrics.UndefinedMetricWarning] * 2
    assert all(name in str(w.message) and reason in str(w.message) for w in caught)


@pytest.mark.parametrize(
    "name,a,b,fused,expected",
    [
        # Every window is flat: the structure term is C2 / C2, the luminance term remains.
        pytest.param("QY", SEVEN, SEVEN, TWO_HUNDRED, (2800 + 2e-16) / (40049 + 2e-16), id="QY"),
        pytest.param("QW", SEVEN, SEVEN, TWO_HUNDRED, (2800 + 6.5025e-8) / (40049 + 6.5025e-8), id="QW"),
        pytest.param("MI", SEVEN, ZERO, TEXTURE, 0.0, id="MI"),
        pytest.param("NMI", TEXTURE, TEXTURE_2, SEVEN, 0.0, id="NMI-constant-F-only"),
        pytest.param("CE", SEVEN, SEVEN, SEVEN, 0.0, id="CE"),
    ],
)
def test_constant_inputs_that_are_well_defined_do_not_warn(name, a, b, fused, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _call(name, a, b, fused) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_qp_with_one_featureless_source_follows_the_other():
    # A constant source never passes the PC > 0.1 mask, so Q_P is defined.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = metrics.qp(SEVEN, TEXTURE, TEXTURE)
    assert 0.0 < value <= 1.0


# ---------------------------------------------------------------------------
# evaluate_all and input validation.


@pytest.mark.parametrize("shape", [(40, 48), (41, 37)])  # even and odd frequency grids
def test_evaluate_all_matches_the_public_functions(shape):
    a, b, fused = (x.astype(np.uint8) for x in _multifocus_triple(12, shape))
    result = metrics.evaluate_all(a, b, fused)
    assert list(result) == list(metrics.METRICS)
    grey = [x.astype(np.float64) for x in (a, b, fused)]
    for name, value in result.items():
        assert value == _call(name, *grey), name


def test_evaluate_all_computes_named_metrics_in_order_and_accepts_rgb():
    a, b, fused = (x.astype(np.uint8) for x in _multifocus_triple(13, (32, 32)))
    rgb_fused = np.repeat(fused[..., None], 3, axis=2)
    result = metrics.evaluate_all(a, b, rgb_fused, names=["QW", "EN"])
    assert list(result) == ["QW", "EN"]
    assert result["EN"] == metrics.entropy(fused.astype(np.float64))
    assert metrics.evaluate_all(a, b, fused, names="SD") == {"SD": metrics.standard_deviation(fused)}


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        (dict(names=["QABF", "Q_ABF"]), "Q_ABF"),
        (dict(fused=np.zeros((32, 33), np.uint8)), "same shape"),
        (dict(fused=np.zeros((32, 32), np.float64)), "`fused`"),
        (dict(a=np.zeros((8, 8), np.uint8), b=np.zeros((8, 8), np.uint8), fused=np.zeros((8, 8), np.uint8)),
         "11x11"),
    ],
)
def test_evaluate_all_rejects_bad_arguments(kwargs, fragment):
    blank = np.zeros((32, 32), np.uint8)
    arguments = dict(a=blank, b=blank, fused=blank)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match="Received") as error:
        metrics.evaluate_all(**arguments)
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    "call,fragment",
    [
        (lambda: metrics.qabf(ZERO, ZERO, np.zeros((24, 24, 3))), "`fused`"),
        (lambda: metrics.qabf(ZERO, np.zeros((24, 25)), ZERO), "same shape"),
        (lambda: metrics.entropy(np.full((4, 4), 1.5)), "integer grey levels"),
        (lambda: metrics.cross_entropy(ZERO, ZERO, ZERO + 0.25), "integer grey levels"),
        (lambda: metrics.qy(np.zeros((6, 6)), np.zeros((6, 6)), np.zeros((6, 6))), "7x7"),
        (lambda: metrics.standard_deviation(np.full((4, 4), 300.0)), "0..255"),
        (lambda: metrics.ssim(np.full((12, 12), np.nan), np.zeros((12, 12))), "finite"),
    ],
)
def test_metric_functions_reject_bad_inputs(call, fragment):
    with pytest.raises(ValueError, match="Received") as error:
        call()
    assert fragment in str(error.value)
