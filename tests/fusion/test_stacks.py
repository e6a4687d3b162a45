"""Fusion of three or more frames (joint O(N) scoring and sequential pairs)."""

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfkeras import fusion
from mfkeras.network.config import POOL, ModelConfig
from mfkeras.network.model import build_patch_model

from conftest import randomize_weights, shared_path


@pytest.fixture(scope="module")
def tiny_model():
    return randomize_weights(build_patch_model(ModelConfig("tiny", (4, POOL, 8), (8,))), seed=21, scale=0.3)


def test_label_consistency_relabels_small_regions_from_their_surroundings():
    labels = np.zeros((60, 60), np.int32)
    labels[:, 30:] = 1
    labels[40:, :] = 2
    labels[10:13, 10:13] = 1  # a 9-pixel island of 1 inside 0
    labels[5:7, 50:52] = 2  # a 4-pixel island of 2 inside 1
    cleaned = fusion.verify_label_consistency(labels, 3, fusion.FusionOptions(area_ratio=0.01))
    expected = np.zeros((60, 60), np.int32)
    expected[:, 30:] = 1
    expected[40:, :] = 2
    np.testing.assert_array_equal(cleaned, expected)


def test_largest_mode_keeps_one_region_per_label():
    labels = np.zeros((40, 40), np.int32)
    labels[:, 20:] = 1
    labels[2:6, 2:6] = 1
    cleaned = fusion.verify_label_consistency(labels, 2, fusion.FusionOptions(consistency="largest"))
    assert (cleaned[:, :20] == 0).all() and (cleaned[:, 20:] == 1).all()


@pytest.mark.parametrize("method", ["joint", "sequential"])
def test_three_identical_frames_come_back_exactly(tiny_model, method):
    rng = np.random.default_rng(1)
    frame = (cv2.GaussianBlur(rng.random((40, 48, 3)), (0, 0), 1.0) * 255).astype(np.uint8)
    result = fusion.fuse([frame, frame, frame], tiny_model, fusion.FusionOptions(stack_method=method))
    np.testing.assert_array_equal(result.fused, frame)


def test_joint_stack_maps_have_documented_shapes(tiny_model):
    rng = np.random.default_rng(2)
    frames = [rng.random((40, 44), dtype=np.float32) for _ in range(4)]
    result = fusion.fuse(frames, tiny_model)
    assert result.score_map.shape[0] == 4 and result.focus_map.shape == (4, 40, 44)
    assert result.source_index.shape == (40, 44) and result.source_index.max() < 4
    np.testing.assert_allclose(result.final_decision.sum(axis=0), 1.0, atol=1e-5)


def _band_stack(sharp, count, sigma=2.5):
    blurred = cv2.GaussianBlur(sharp, (0, 0), sigma)
    width = sharp.shape[1]
    edges = np.linspace(0, width, count + 1).astype(int)
    frames, truth = [], np.zeros(sharp.shape[:2], np.int32)
    for index in range(count):
        frame = blurred.copy()
        frame[:, edges[index] : edges[index + 1]] = sharp[:, edges[index] : edges[index + 1]]
        frames.append(frame)
        truth[:, edges[index] : edges[index + 1]] = index
    return frames, truth


@pytest.mark.parametrize("method", ["joint", "sequential"])
def test_bands_of_a_synthetic_stack_are_recovered(released_model, method):
    sharp = cv2.imread(str(shared_path("data", "lytro", "lytro_08_A.jpg")), cv2.IMREAD_GRAYSCALE)[60:380, 40:480]
    frames, truth = _band_stack(sharp, 3)
    result = fusion.fuse(frames, released_model, fusion.FusionOptions(stack_method=method))
    assert (result.source_index == truth).mean() >= 0.95
    error = np.abs(result.fused.astype(float) - sharp).mean()
    assert error < min(np.abs(f.astype(float) - sharp).mean() for f in frames) / 3


@st.composite
def _frames(draw):
    height = draw(st.integers(16, 36))
    width = draw(st.integers(16, 36))
    channels = draw(st.sampled_from([None, 3]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32]))
    count = draw(st.integers(2, 3))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels is None else (height, width, channels)
    base = rng.random(shape)
    frames = [np.clip(base + rng.normal(0, 0.2, shape) * (i > 0), 0, 1) for i in range(count)]
    if dtype == np.float32:
        return [f.astype(np.float32) for f in frames]
    top = np.iinfo(dtype).max
    return [np.round(f * top).astype(dtype) for f in frames]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=_frames(), refine=st.sampled_from(["guided", "dilate", "none"]))
def test_fusion_properties(tiny_model, frames, refine):
    result = fusion.fuse(frames, tiny_model, fusion.FusionOptions(refine=refine))
    assert result.fused.shape == frames[0].shape and result.fused.dtype == frames[0].dtype
    stack = np.stack(frames).astype(np.float64)
    slack = 1e-6 if frames[0].dtype == np.float32 else 0
    assert (result.fused >= stack.min(axis=0) - slack).all()
    assert (result.fused <= stack.max(axis=0) + slack).all()
    same = fusion.fuse([frames[0]] * len(frames), tiny_model, fusion.FusionOptions(refine=refine))
    np.testing.assert_array_equal(same.fused, frames[0])


def test_patch_classifiers_keep_the_all_pairs_rule(tiny_model):
    from mfkeras.fusion import inference
    from mfkeras.io.color import to_unit_gray

    rng = np.random.default_rng(22)
    frames = [(rng.random((40, 48)) * 255).astype(np.uint8) for _ in range(3)]
    network = fusion.pipeline.as_score_network(tiny_model)
    grays = [to_unit_gray(f) for f in frames]
    for scoring, options in [
        ("all_pairs", fusion.FusionOptions()),
        ("knockout", fusion.FusionOptions(stack_scoring="knockout")),
    ]:
        expected = inference.stack_scores(network, grays, stack_scoring=scoring)
        np.testing.assert_allclose(fusion.fuse(frames, tiny_model, options).score_map, expected, atol=1e-6)
    knockout = inference.stack_scores(network, grays, stack_scoring="knockout")
    assert not np.allclose(knockout, inference.stack_scores(network, grays), atol=1e-3)


def test_small_regions_take_a_nearest_kept_label():
    import scipy.ndimage

    from mfkeras.fusion.decision import _nearest_kept_labels

    rng = np.random.default_rng(23)
    labels = cv2.resize(rng.integers(0, 5, (12, 12)).astype(np.int32), (240, 240), interpolation=cv2.INTER_NEAREST)
    small = cv2.resize((rng.random((24, 24)) < 0.15).astype(np.uint8), (240, 240), interpolation=cv2.INTER_NEAREST)
    small = small.astype(bool)
    got = _nearest_kept_labels(labels, small)
    np.testing.assert_array_equal(got[~small], labels[~small])
    nearest_any = scipy.ndimage.distance_transform_edt(small)
    to_label = np.stack([scipy.ndimage.distance_transform_edt(small | (labels != k)) for k in range(5)])
    chosen = np.take_along_axis(to_label, got[None].astype(np.int64), axis=0)[0]
    # The chosen label is within the 5x5 mask's approximation of the exact nearest distance.
    assert (chosen[small] <= 1.02 * nearest_any[small] + 1e-9).mean() >= 0.995
    assert (chosen[small] <= 1.1 * nearest_any[small] + 1.0).all()


def test_a_joint_stack_of_more_than_64_frames_picks_its_one_sharp_frame():
    """Label maps index any number of frames (np.choose, used before, stops at 64)."""
    from mfkeras.network import zoo

    rng = np.random.default_rng(5)
    sharp = (cv2.GaussianBlur(rng.random((64, 64, 3)), (0, 0), 0.8) * 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.5)
    frames = [blurred] * 69 + [sharp]
    result = fusion.fuse(frames, zoo.load_patch_model(), fusion.FusionOptions(stack_method="joint"))
    assert (result.source_index == 69).mean() >= 0.95
    assert np.abs(result.fused.astype(float) - sharp).mean() < np.abs(blurred.astype(float) - sharp).mean() / 3


def test_select_by_labels_takes_each_pixel_from_its_frame_beyond_64_frames():
    rng = np.random.default_rng(4)
    for shape, count in (((5, 7), 3), ((5, 7, 3), 3), ((4, 6), 80)):
        frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]
        labels = rng.integers(0, count, shape[:2])
        chosen = fusion.select_by_labels(labels, frames)
        assert chosen.shape == shape and chosen.dtype == np.uint8
        for y in range(shape[0]):
            for x in range(shape[1]):
                assert np.array_equal(chosen[y, x], frames[labels[y, x]][y, x])


def test_select_by_labels_rejects_labels_that_do_not_fit():
    frames = [np.zeros((4, 4), np.uint8)] * 2
    with pytest.raises(ValueError, match="labels must be"):
        fusion.select_by_labels(np.zeros((4, 5), np.int32), frames)
    for labels in (np.full((4, 4), 2), np.full((4, 4), -1)):
        with pytest.raises(ValueError, match=r"0\.\.1"):
            fusion.select_by_labels(labels, frames)
    with pytest.raises(ValueError, match="integer"):
        fusion.select_by_labels(np.full((4, 4), 0.9), frames)
    with pytest.raises(ValueError, match="share one shape and dtype"):
        fusion.select_by_labels(np.zeros((4, 4), np.int32), [frames[0], np.zeros((4, 4), np.uint16)])
