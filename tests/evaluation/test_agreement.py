"""Concordance of a metric with ground truth, and decision maps aligned to JPEG's blocks."""

import itertools

import numpy as np
import pytest

from mfkeras.evaluation import agreement


def _by_hand(metric, reference, higher_is_better):
    """Concordance counted pair by pair, the textbook way."""
    concordant = discordant = 0
    for row_m, row_r in zip(metric, reference):
        for i, j in itertools.combinations(range(len(row_m)), 2):
            dm, dr = row_m[i] - row_m[j], row_r[i] - row_r[j]
            if not higher_is_better:
                dm = -dm
            if np.isnan(dm) or np.isnan(dr) or dm == 0 or dr == 0:
                continue
            if (dm > 0) == (dr > 0):
                concordant += 1
            else:
                discordant += 1
    return concordant / (concordant + discordant)


def test_concordance_of_a_small_table_by_hand():
    reference = np.array([[30.0, 40.0, 35.0], [20.0, 25.0, 25.0]])
    metric = np.array([[0.1, 0.3, 0.2], [0.5, 0.4, 0.6]])
    # Sample 1: all three pairs agree. Sample 2: (0,1) disagrees, (0,2) agrees, (1,2) tied in PSNR.
    assert agreement.concordance(metric, reference) == pytest.approx(4 / 5)
    assert agreement.concordance(metric, reference, higher_is_better=False) == pytest.approx(1 / 5)
    assert agreement.concordance(reference, reference) == 1.0
    assert agreement.concordance(-reference, reference) == 0.0


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_concordance_matches_pairwise_counting_with_ties_and_nans(higher_is_better):
    rng = np.random.default_rng(7)
    reference = rng.integers(0, 4, (12, 5)).astype(float)
    metric = rng.integers(0, 4, (12, 5)).astype(float)
    metric[3, 2] = np.nan
    reference[5, 0] = np.nan
    got = agreement.concordance(metric, reference, higher_is_better)
    assert got == pytest.approx(_by_hand(metric, reference, higher_is_better))


def test_concordance_without_any_ordered_pair_is_nan_and_shapes_are_checked():
    assert np.isnan(agreement.concordance(np.ones((2, 3)), np.arange(6.0).reshape(2, 3)))
    with pytest.raises(ValueError, match="Received: shapes"):
        agreement.concordance(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="Received: shapes"):
        agreement.concordance(np.ones(3), np.ones(3))


def test_block_aligned_takes_each_tiles_majority():
    decision = np.zeros((10, 12), bool)
    decision[:8, :5] = True  # tile (0,0): 40 of 64 -> True; tile (0,1): 0 -> False
    decision[8:, 8:] = True  # bottom-right 2x4 remainder tile, all True
    decision[8:, 3:5] = True  # bottom-left 2x8 remainder: 4 of 16 -> False
    got = agreement.block_aligned(decision, 8)
    expected = np.zeros_like(decision)
    expected[:8, :8] = True
    expected[8:, 8:] = True
    assert np.array_equal(got, expected)


def test_block_aligned_ties_go_to_the_second_source_and_is_idempotent():
    decision = np.zeros((8, 8), bool)
    decision[:, :4] = True  # exactly half
    assert not agreement.block_aligned(decision, 8).any()
    rng = np.random.default_rng(1)
    random_map = rng.random((37, 51)) > 0.4
    once = agreement.block_aligned(random_map, 8)
    assert np.array_equal(agreement.block_aligned(once, 8), once)
    for top in range(0, 37, 8):
        for left in range(0, 51, 8):
            tile = once[top : top + 8, left : left + 8]
            assert tile.all() or not tile.any()
    assert np.array_equal(agreement.block_aligned(random_map, 1), random_map)


@pytest.mark.parametrize("bad, match", [(np.zeros((4, 4)), "bool map"), (np.zeros(4, bool), "bool map")])
def test_block_aligned_rejects_bad_maps(bad, match):
    with pytest.raises(ValueError, match=match):
        agreement.block_aligned(bad, 8)
    with pytest.raises(ValueError, match="block must be"):
        agreement.block_aligned(np.zeros((4, 4), bool), 0)
