"""Tests for SF-PCNN fusion in the NSCT domain (Qu et al. 2008)."""

import functools

import numpy as np
import pytest
from scipy import signal

from mfkeras.baselines import pcnn
from test_baselines import _BAD_INPUTS
from test_nsct import (
    DTYPES,
    FOCUS_PAIR_SHAPES,
    OUTPUT_SHAPES,
    SELF_FUSION_SHAPES,
    check_focus_pair,
    check_fuses_an_image_with_itself,
    check_output_shape_and_dtype,
    check_three_sources_each_sharp_in_one_third,
)


def reference_fire_counts(
    feeding, iterations, alpha_l, alpha_theta, beta, v_l, v_theta, link_size
):
    """Qu's PCNN_large_arrange.m loop, one map at a time, in float64."""
    size = link_size
    radius = size // 2
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    weights = np.zeros((size, size))
    off_centre = (y != 0) | (x != 0)
    weights[off_centre] = 1 / np.sqrt(y[off_centre] ** 2 + x[off_centre] ** 2)
    result = []
    for stimulus in feeding:
        linking = np.zeros_like(stimulus)
        threshold = np.zeros_like(stimulus)
        fired = np.zeros_like(stimulus)
        counts = np.zeros_like(stimulus)
        for _ in range(iterations):
            linking = np.exp(-alpha_l) * linking + v_l * signal.convolve2d(fired, weights, "same")
            threshold = np.exp(-alpha_theta) * threshold + v_theta * fired
            fired = (stimulus * (1 + beta * linking) > threshold).astype(float)
            counts += fired
        result.append(counts)
    return np.array(result)


@pytest.mark.parametrize(
    "iterations, params",
    [
        (200, {}),
        (80, {"alpha_l": 0.06931, "beta": 0.2}),
        (300, {"link_size": 5, "alpha_theta": 0.5, "v_theta": 5.0}),
        (40, {"link_size": 1, "v_l": 2.0}),
    ],
)
def test_fire_counts_match_the_reference_loop(iterations, params):
    feeding = np.random.default_rng(0).random((3, 19, 23))
    settings = {"alpha_l": 1.0, "alpha_theta": 0.2, "beta": 3.0, "v_l": 1.0, "v_theta": 20.0}
    expected = reference_fire_counts(
        feeding, iterations, **{**settings, "link_size": 3, **params}
    )
    counts = pcnn.pcnn_fire_counts(feeding, pcnn.PCNNParams(iterations=iterations, **params))
    assert counts.dtype == (np.uint8 if iterations <= 255 else np.uint16)
    np.testing.assert_array_equal(counts, expected)


@pytest.mark.parametrize("chunk_elements", [1 << 19, 3000])
def test_maps_of_a_stack_do_not_link_to_each_other(monkeypatch, chunk_elements):
    # 20 maps of 1200 neurons: all in one chunk, or ten chunks of 2 maps.
    monkeypatch.setattr(pcnn, "_CHUNK_ELEMENTS", chunk_elements)
    feeding = np.random.default_rng(1).random((20, 30, 40))
    params = pcnn.PCNNParams(iterations=100)
    together = pcnn.pcnn_fire_counts(feeding, params)
    alone = np.stack([pcnn.pcnn_fire_counts(f[np.newaxis], params)[0] for f in feeding])
    np.testing.assert_array_equal(together, alone)


def test_stronger_stimulus_fires_more_often():
    feeding = np.linspace(0, 1, 64).reshape(1, 8, 8)
    counts = pcnn.pcnn_fire_counts(feeding, pcnn.PCNNParams(beta=0.0)).ravel()
    assert counts[0] == 0 and np.all(np.diff(counts.astype(int)) >= 0)
    assert counts[-1] > counts[1] > 0


def test_linking_kernel_is_inverse_distance():
    expected = [[2**-0.5, 1, 2**-0.5], [1, 0, 1], [2**-0.5, 1, 2**-0.5]]
    np.testing.assert_allclose(pcnn.linking_kernel(3), expected)
    assert pcnn.linking_kernel(5)[0, 2] == 0.5


def test_spatial_frequency_of_a_window():
    band = np.zeros((1, 5, 5, 2))
    band[0, 2, 2] = [3.0, 4.0]  # |difference| 5 across both channels
    sf = pcnn.spatial_frequency(band, window=3)
    # Centre window: the pixel differs from its left and upper neighbours, and its right
    # and lower neighbours differ from it: 4 squared differences of 25, mean over 9.
    np.testing.assert_allclose(sf[0, 2, 2], np.sqrt(4 * 25 / 9))
    np.testing.assert_allclose(sf[0, 0, 0], 0)
    np.testing.assert_allclose(pcnn.spatial_frequency(band, window=1)[0, 2, 2], np.sqrt(50))


@pytest.mark.parametrize("shape", SELF_FUSION_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fusing_an_image_with_itself_returns_it(shape, dtype):
    fuse = functools.partial(pcnn.fuse_pcnn, iterations=50)
    check_fuses_an_image_with_itself(fuse, shape, dtype)


@pytest.mark.parametrize("shape", OUTPUT_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_output_shape_and_dtype_match_inputs(shape, dtype):
    fuse = functools.partial(pcnn.fuse_pcnn, levels=2, iterations=30)
    check_output_shape_and_dtype(fuse, shape, dtype)


@pytest.mark.parametrize("shape", FOCUS_PAIR_SHAPES)
def test_fused_focus_pair_is_closer_to_the_sharp_image_than_either_source(shape):
    check_focus_pair(pcnn.fuse_pcnn, shape)


def test_three_sources_each_sharp_in_one_third():
    check_three_sources_each_sharp_in_one_third(functools.partial(pcnn.fuse_pcnn, iterations=100))


@pytest.mark.parametrize("case", ["one image", "different shapes", "inf", "four channels"])
def test_bad_images_raise_value_error_naming_them(case):
    images, params, message = _BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        pcnn.fuse_pcnn(images, **params)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"iterations": 0}, r"from 1 to 65535. Received: iterations=0"),
        ({"iterations": 20.0}, r"Received: iterations=20.0"),
        ({"alpha_theta": 0.0}, r"alpha_theta must be a positive .* Received: alpha_theta=0.0"),
        ({"beta": -1.0}, r"beta must be a non-negative .* Received: beta=-1.0"),
        ({"v_theta": float("nan")}, r"Received: v_theta=nan"),
        ({"link_size": 4}, r"positive odd integer. Received: link_size=4"),
        ({"link_size": -1}, r"Received: link_size=-1"),
        ({"iteration": 20}, r"Unknown parameters \['iteration'\]; .* Received: \['iteration'\]"),
        ({"levels": 3, "directions": (1, 2)}, r"\(3 levels\). Received: directions=\(1, 2\)"),
        ({"window": 0}, r"Received: window=0"),
    ],
)
def test_bad_parameters_raise_value_error(params, message):
    gray = np.zeros((32, 32))
    with pytest.raises(ValueError, match=message):
        pcnn.fuse_pcnn([gray, gray], **params)


def test_fire_counts_reject_a_bad_stack():
    with pytest.raises(ValueError, match=r"\(M, H, W\) array. Received: shape \(8, 8\)"):
        pcnn.pcnn_fire_counts(np.zeros((8, 8)))
