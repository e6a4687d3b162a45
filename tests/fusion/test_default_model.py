"""The shipped default, the per-pixel decision network: invariants on real pairs, both backends."""

from pathlib import Path

import numpy as np
import pytest

from mfkeras.fusion import FusionOptions, inference, pipeline
from mfkeras.io import images
from mfkeras.io.color import to_gray, to_unit_gray, to_unit_range
from mfkeras.network import zoo
from mfkeras.network.convert import as_score_network
from mfkeras.network.decision_model import DecisionNetwork

from conftest import band_by_loop

REPO_ROOT = Path(__file__).resolve().parents[2]
LYTRO = REPO_ROOT.parent / "shared" / "data" / "lytro"


@pytest.fixture(scope="module")
def default_model():
    return zoo.load_patch_model()


@pytest.fixture(scope="module")
def demo_sources():
    return [images.read_image(str(p)) for p in zoo.demo_pair()]


def _pairs(demo_sources):
    pairs = [demo_sources]
    if (LYTRO / "lytro_03_A.jpg").is_file():
        pairs.append([images.read_image(str(LYTRO / f"lytro_03_{s}.jpg")) for s in "AB"])
    return pairs


def test_default_is_a_decision_network_within_budget(default_model):
    network = as_score_network(default_model)
    assert isinstance(network, DecisionNetwork)
    assert zoo.DEFAULT_MODEL == "pixel_decision"
    assert network.config.flops(520, 520) <= 10e9


def test_swapping_the_inputs_inverts_the_decision(default_model, demo_sources):
    for first, second in _pairs(demo_sources):
        forward = pipeline.fuse([first, second], default_model)
        backward = pipeline.fuse([second, first], default_model)
        assert np.mean(forward.decision != backward.decision) >= 0.99
        raw = np.mean((forward.score_map > 0.5) != (backward.score_map > 0.5))
        assert raw >= 0.99, raw


def test_identical_frames_return_the_frame(default_model, demo_sources):
    frame = demo_sources[0]
    for frames in ([frame, frame], [frame, frame, frame]):
        np.testing.assert_array_equal(pipeline.fuse(frames, default_model).fused, frame)


def test_every_fused_pixel_lies_between_the_sources(default_model, demo_sources):
    for first, second in _pairs(demo_sources):
        fused = pipeline.fuse([first, second], default_model).fused.astype(int)
        low = np.minimum(first, second).astype(int)
        high = np.maximum(first, second).astype(int)
        assert np.all(fused >= low) and np.all(fused <= high)


def test_the_default_rule_blends_without_halos_by_the_refined_weights(default_model, demo_sources):
    from mfkeras.fusion import halo
    from mfkeras.fusion.blending import blend

    result = pipeline.fuse(demo_sources, default_model)
    first, second = demo_sources
    expected = halo.blend_without_halos(
        [second, first], result.final_decision[None], [to_unit_gray(second), to_unit_gray(first)]
    )
    np.testing.assert_array_equal(result.fused, expected)
    plain = pipeline.fuse(demo_sources, default_model, FusionOptions(halo_removal=False))
    np.testing.assert_array_equal(plain.final_decision, result.final_decision)
    np.testing.assert_array_equal(plain.fused, blend(*demo_sources, result.final_decision))
    changed = np.any(plain.fused != result.fused, axis=-1)
    assert 0 < changed.mean() < 0.5


def test_the_sharp_side_is_chosen_on_the_demo_pair(default_model, demo_sources):
    # The demo pair: A is sharp on the left half... checked against a focus measure instead of
    # assuming: where one source's local Laplacian energy is 4x the other's, the decision follows.
    import cv2

    result = pipeline.fuse(demo_sources, default_model)
    grays = [to_gray(to_unit_range(s)) for s in demo_sources]
    energy = [cv2.blur(cv2.Laplacian(g, cv2.CV_32F) ** 2, (15, 15)) for g in grays]
    clear_a, clear_b = energy[0] > 4 * energy[1], energy[1] > 4 * energy[0]
    assert clear_a.mean() > 0.05 and clear_b.mean() > 0.05
    assert result.decision[clear_a].mean() >= 0.95
    assert (~result.decision[clear_b]).mean() >= 0.95


def test_tiled_scores_equal_untiled(default_model, demo_sources):
    network = as_score_network(default_model)
    a, b = (to_gray(to_unit_range(s)) for s in demo_sources)
    whole = inference.score_map(network, a, b)
    np.testing.assert_allclose(inference.score_map(network, a, b, max_tile_side=150), whole, atol=1e-5)
    tiled = pipeline.fuse(demo_sources, default_model, FusionOptions(max_tile_side=150))
    np.testing.assert_array_equal(tiled.fused, pipeline.fuse(demo_sources, default_model).fused)


def test_litert_bundle_tiled_equals_untiled_and_matches_keras(default_model, demo_sources):
    lite = zoo.load_litert_network()
    a, b = (to_gray(to_unit_range(s)) for s in demo_sources)
    untiled = lite.score_map(a, b, max_tile_side=None)
    np.testing.assert_allclose(lite.score_map(a, b, max_tile_side=150), untiled, atol=1e-5)
    keras_scores = inference.score_map(as_score_network(default_model), a, b)
    np.testing.assert_allclose(untiled, keras_scores, atol=1e-4)


def test_stacks_use_the_knockout_rule_unless_told_otherwise(default_model, demo_sources):
    network = as_score_network(default_model)
    first, second = (s[:160, :200] for s in demo_sources)
    frames = [first, second, ((first.astype(int) + second) // 2).astype(np.uint8)]
    grays = [to_unit_gray(f) for f in frames]
    for scoring, options in [("knockout", FusionOptions()), ("all_pairs", FusionOptions(stack_scoring="all_pairs"))]:
        expected = inference.stack_scores(network, grays, stack_scoring=scoring)
        got = pipeline.fuse(frames, default_model, options).score_map
        np.testing.assert_allclose(got, expected, atol=1e-5)
    knockout = inference.stack_scores(network, grays, stack_scoring="knockout")
    assert not np.allclose(knockout, inference.stack_scores(network, grays, stack_scoring="all_pairs"), atol=1e-3)


def test_stack_soft_band_blends_the_closest_contest_near_label_boundaries(default_model, demo_sources):
    first, second = (s[:160, :200] for s in demo_sources)
    frames = [first, second, ((first.astype(int) + second) // 2).astype(np.uint8)]
    hard = pipeline.fuse(frames, default_model, FusionOptions(soft_band=0))
    soft = pipeline.fuse(frames, default_model)  # the model's own rule: soft_band 2
    np.testing.assert_array_equal(soft.decision, hard.decision)
    # Knockout scores: the winner and the runner-up of its closest contest, summing to 1.
    assert ((hard.focus_map > 0).sum(axis=0) <= 2).all()
    np.testing.assert_allclose(hard.focus_map.sum(axis=0), 1.0, atol=1e-5)
    band = band_by_loop(hard.decision, 2) & (hard.decision == hard.initial_decision)
    assert 0.01 < band.mean() < 0.9
    np.testing.assert_allclose(soft.final_decision[:, band], hard.focus_map[:, band], atol=1e-6)
    np.testing.assert_array_equal(soft.final_decision[:, ~band], hard.final_decision[:, ~band])
    stack = np.stack(frames)
    assert ((soft.fused >= stack.min(axis=0)) & (soft.fused <= stack.max(axis=0))).all()
