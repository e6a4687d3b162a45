import numpy as np
import pytest

from mfkeras.fusion import inference, scoring
from mfkeras.io import color
from mfkeras.network.config import POOL, ModelConfig
from mfkeras.network.convert import to_fully_convolutional, to_stack_head
from mfkeras.network.model import build_patch_model

from conftest import randomize_weights

CONFIGS = ["li2018", "liu2017_single_fc", ModelConfig("valid", (8, POOL, 8, POOL), (12,), padding="valid")]


def _pair(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.random(shape, dtype=np.float32), rng.random(shape, dtype=np.float32)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("dense", [False, True])
def test_tiled_score_map_equals_untiled(config, dense):
    model = randomize_weights(build_patch_model(config), seed=1, scale=0.05)
    network = to_fully_convolutional(model, dense=dense)
    a, b = _pair((131, 150), seed=2)
    tiles = scoring.plan_tiles(network, 131, 150, 56)
    rows = {t.score_rows.start for t in tiles}
    cols = {t.score_cols.start for t in tiles}
    assert len(rows) >= 2 and len(cols) >= 2  # several tiles in both directions
    full = inference.score_map(network, a, b)
    tiled = inference.score_map(network, a, b, max_tile_side=56)
    assert np.abs(full - tiled).max() <= 1e-5


def test_tiles_cover_the_score_map_exactly_once():
    network = to_fully_convolutional(build_patch_model("liu2017_single_fc"))
    shape = network.output_shape_for(300, 211)
    hits = np.zeros(shape, int)
    for tile in scoring.plan_tiles(network, 300, 211, 64):
        hits[tile.score_rows, tile.score_cols] += 1
        assert tile.image_rows.start % network.stride == 0
    assert (hits == 1).all()


def test_memory_budget_sets_a_tile_side_that_grows_with_the_budget():
    network = to_fully_convolutional(build_patch_model("liu2017_single_fc"))
    small = scoring.tile_side_for_budget(network, 64 * 2**20)
    large = scoring.tile_side_for_budget(network, 1024 * 2**20)
    assert 32 <= small < large
    # Activations scale with the tile area: 16x the budget gives about 4x the side.
    assert 3.5 <= large / small <= 4.5


@pytest.mark.parametrize("config", CONFIGS[:2], ids=str)
def test_stack_head_reproduces_the_pair_head(config):
    model = randomize_weights(build_patch_model(config), seed=3, scale=0.05)
    network = to_fully_convolutional(model)
    head = to_stack_head(network)
    a, b = _pair((1, 40, 44, 1), seed=4)
    projections = [head.projector(network.branch(x)).numpy() for x in (a, b)]
    got = head.tail(projections[0][..., : head.units] + projections[1][..., head.units :] + head.bias)
    np.testing.assert_allclose(got.numpy(), network.model([a, b]).numpy(), atol=1e-5)


def test_stack_scores_of_two_images_are_the_symmetric_pair_scores():
    model = randomize_weights(build_patch_model("li2018"), seed=5, scale=0.05)
    network = to_fully_convolutional(model)
    a, b = _pair((72, 80), seed=6)
    stacked = inference.stack_scores(network, [a, b])
    symmetric = inference.score_map(network, a, b, symmetric=True)
    np.testing.assert_allclose(stacked[0], symmetric, atol=1e-5)
    np.testing.assert_allclose(stacked[1], 1.0 - symmetric, atol=1e-5)


def test_stack_scores_match_explicit_pairwise_scoring_and_tiling():
    model = randomize_weights(build_patch_model("liu2017_single_fc"), seed=7, scale=0.05)
    network = to_fully_convolutional(model)
    rng = np.random.default_rng(8)
    grays = [rng.random((70, 90), dtype=np.float32) for _ in range(4)]
    expected = np.zeros((4, *network.output_shape_for(70, 90)))
    for i in range(4):
        for k in range(4):
            if i != k:
                s = inference.score_map(network, grays[i], grays[k])
                expected[i] += 0.5 * s / 3
                expected[k] += 0.5 * (1 - s) / 3
    np.testing.assert_allclose(inference.stack_scores(network, grays), expected, atol=1e-5)
    tiled = inference.stack_scores(network, grays, max_tile_side=40)
    np.testing.assert_allclose(tiled, expected, atol=1e-5)


def test_gray_conversion_uses_the_reference_weights():
    pixel = np.array([[[0.2, 0.5, 0.9]]])
    expected = 0.298936021293775 * 0.2 + 0.587043074451121 * 0.5 + 0.114020904255103 * 0.9
    assert abs(color.to_gray(pixel)[0, 0] - expected) < 1e-7


class _PerPixelGeometry:
    """The geometry of a network with one score per pixel and a halo, nothing else."""

    stride = 1
    patch_size = 1
    dense = False

    def __init__(self, halo):
        self.receptive_field = halo

    def output_shape_for(self, height, width):
        return (height, width)


@pytest.mark.parametrize("halo", [0, 3, 32])
@pytest.mark.parametrize("length", [37, 200, 521, 999])
@pytest.mark.parametrize("max_side", [80, 97, 256])
def test_per_pixel_tiles_share_one_shape_and_keep_their_halo(halo, length, max_side):
    network = _PerPixelGeometry(halo)
    tiles = scoring.plan_tiles(network, length, 64, max_side)
    hits = np.zeros((length, 64), int)
    shapes = set()
    for tile in tiles:
        hits[tile.score_rows, tile.score_cols] += 1
        rows = tile.image_rows
        shapes.add((rows.stop - rows.start, tile.image_cols.stop - tile.image_cols.start))
        # A kept score sees `halo` pixels of context, or the image's own border.
        assert tile.score_rows.start == 0 or tile.score_rows.start - rows.start >= halo
        assert tile.score_rows.stop == length or rows.stop - tile.score_rows.stop >= halo
        assert tile.score_rows.start - rows.start == tile.local_rows.start
        assert tile.score_rows.stop - tile.score_rows.start == tile.local_rows.stop - tile.local_rows.start
    assert (hits == 1).all()
    assert len(shapes) == 1  # one interpreter plan for every tile
    side = shapes.pop()[0]
    assert side <= max(max_side, 2 * halo + 1) or len(tiles) == 1
    if length > max_side:
        assert len(tiles) >= 2


def _pair_probabilities(network, grays):
    """(N, N, H', W'): p(i, k) that image i is the sharper, from explicit symmetric pair scoring."""
    count = len(grays)
    probabilities = np.full((count, count, *network.output_shape_for(*grays[0].shape)), 0.5)
    for i in range(count):
        for k in range(count):
            if i != k:
                probabilities[i, k] = inference.score_map(network, grays[i], grays[k], symmetric=True)
    return probabilities


def _knockout_pixel_by_pixel(probabilities):
    """The knockout rule written out per pixel: each image challenges the sharpest so far."""
    count, _, height, width = probabilities.shape
    scores = np.zeros((count, height, width))
    for row in range(height):
        for col in range(width):
            winner, runner_up, confidence = 0, 1, 1.0
            for k in range(1, count):
                p = probabilities[k, winner, row, col]
                if p > 0.5:
                    winner, runner_up, confidence = k, winner, p
                elif 1.0 - p < confidence:
                    runner_up, confidence = k, 1.0 - p
            scores[runner_up, row, col] = 1.0 - confidence
            scores[winner, row, col] = confidence
    return scores


def _clear_pixels(probabilities, margin=1e-4):
    """Pixels where no pair is within ``margin`` of a tie (float noise cannot flip a comparison)."""
    count = len(probabilities)
    return (np.abs(probabilities - 0.5) > margin).sum(axis=(0, 1)) == count * (count - 1)


def test_knockout_matches_the_rule_applied_pixel_by_pixel_tiled_or_not():
    model = randomize_weights(build_patch_model("liu2017_single_fc"), seed=9, scale=0.05)
    network = to_fully_convolutional(model)
    rng = np.random.default_rng(10)
    grays = [rng.random((70, 90), dtype=np.float32) for _ in range(5)]
    probabilities = _pair_probabilities(network, grays)
    clear = _clear_pixels(probabilities)
    assert clear.mean() >= 0.8, clear.mean()
    expected = _knockout_pixel_by_pixel(probabilities)
    for tile_side in (None, 40):
        got = inference.stack_scores(network, grays, max_tile_side=tile_side, stack_scoring="knockout")
        np.testing.assert_allclose(got[:, clear], expected[:, clear], atol=1e-5)
        np.testing.assert_allclose(got.sum(axis=0), 1.0, atol=1e-5)
        # The winner holds the largest score, so the decision is the knockout's winner.
        np.testing.assert_array_equal(got.argmax(axis=0)[clear], expected.argmax(axis=0)[clear])


def test_knockout_of_two_images_is_all_pairs():
    model = randomize_weights(build_patch_model("li2018"), seed=11, scale=0.05)
    network = to_fully_convolutional(model)
    grays = list(_pair((72, 80), seed=12))
    knockout = inference.stack_scores(network, grays, stack_scoring="knockout")
    np.testing.assert_allclose(knockout, inference.stack_scores(network, grays), atol=1e-6)


def test_unknown_stack_scoring_is_refused_by_name():
    network = to_fully_convolutional(randomize_weights(build_patch_model("li2018"), seed=1, scale=0.05))
    with pytest.raises(ValueError, match="stack_scoring must be one of"):
        inference.stack_scores(network, list(_pair((40, 40), seed=1)), stack_scoring="round_robin")
