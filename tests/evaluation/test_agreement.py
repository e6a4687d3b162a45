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
    for block in (0, 8.0):
        with pytest.raises(ValueError, match="block must be"):
            agreement.block_aligned(np.zeros((4, 4), bool), block)


TRUTH = "ground truth"


def test_summary_ranks_the_truth_in_each_metrics_direction_and_counts_concordance():
    per_sample = [
        {TRUTH: {"psnr": 50.0, "band_psnr": 40.0, "NMI": 1.0, "CE": 0.005},
         "a": {"psnr": 40.0, "band_psnr": 30.0, "NMI": 1.2, "CE": 0.01},
         "b": {"psnr": 30.0, "band_psnr": 35.0, "NMI": 0.9, "CE": 0.03}},
        {TRUTH: {"psnr": 52.0, "band_psnr": 42.0, "NMI": 1.1, "CE": 0.005},
         "a": {"psnr": 41.0, "band_psnr": 31.0, "NMI": 1.3, "CE": 0.01},
         "b": {"psnr": 31.0, "band_psnr": 36.0, "NMI": 0.8, "CE": 0.03}},
    ]
    summary = agreement.agreement_summary(per_sample, ["NMI", "CE"], TRUTH)
    assert summary["rows"] == [TRUTH, "a", "b"]
    # The truth with the highest NMI is first, with the lowest last (ranks in each direction).
    for value, rank in ((2.0, 1), (0.1, 3)):
        for sample in per_sample:
            sample[TRUTH]["NMI"] = value
        assert agreement.agreement_summary(per_sample, ["NMI"], TRUTH)["truth_rank"]["NMI"] == rank
    for sample, nmi in zip(per_sample, (1.0, 1.1)):
        sample[TRUTH]["NMI"] = nmi
    assert summary["means"]["a"]["psnr"] == pytest.approx(40.5)
    # NMI prefers a over the truth; CE is lower-is-better and the truth has the lowest.
    assert summary["truth_rank"] == {"NMI": 2, "CE": 1}
    # PSNR order truth > a > b: NMI agrees on (truth, b) and (a, b), not on (truth, a); CE on all.
    assert summary["concordance_psnr"]["NMI"] == pytest.approx(2 / 3)
    assert summary["concordance_psnr"]["CE"] == 1.0
    # Band order truth > b > a: NMI agrees only on (truth, b).
    assert summary["concordance_band"]["NMI"] == pytest.approx(1 / 3)
    assert summary["left_out"] == {}


def test_summary_leaves_infinite_values_out_of_means_and_counts_them():
    import json

    per_sample = [
        {TRUTH: {"psnr": np.inf, "band_psnr": np.inf, "NMI": 1.0}, "a": {"psnr": 40.0, "band_psnr": 30.0, "NMI": 1.2}},
        {TRUTH: {"psnr": 55.0, "band_psnr": np.inf, "NMI": 1.0}, "a": {"psnr": 42.0, "band_psnr": 32.0, "NMI": 0.9}},
    ]
    summary = agreement.agreement_summary(per_sample, ["NMI"], TRUTH)
    assert summary["means"][TRUTH]["psnr"] == 55.0 and summary["means"][TRUTH]["band_psnr"] is None
    assert summary["left_out"] == {TRUTH: {"psnr": 1, "band_psnr": 2}}
    assert summary["concordance_psnr"]["NMI"] == 0.5  # inf still orders: truth > a in both samples
    json.dumps(summary, allow_nan=False)
    undefined = agreement.agreement_summary(
        [{TRUTH: {"psnr": 1.0, "band_psnr": 1.0, "NMI": 1.0}, "a": {"psnr": 1.0, "band_psnr": 1.0, "NMI": 2.0}}],
        ["NMI"], TRUTH)
    assert undefined["concordance_psnr"]["NMI"] is None


def test_finite_mean_counts_what_it_leaves_out():
    assert agreement.finite_mean([1.0, np.inf, 3.0, np.nan]) == (2.0, 2)
    assert agreement.finite_mean([np.inf]) == (None, 1)


def test_summary_needs_the_truth_row_in_every_sample():
    with pytest.raises(ValueError, match="per_sample is empty"):
        agreement.agreement_summary([], ["NMI"], TRUTH)
    with pytest.raises(ValueError, match="same rows"):
        agreement.agreement_summary([{"a": {"psnr": 1.0, "band_psnr": 1.0, "NMI": 1.0}}], ["NMI"], TRUTH)
    rows = {TRUTH: {"psnr": 1.0, "band_psnr": 1.0, "NMI": 1.0}}
    with pytest.raises(ValueError, match="same rows"):
        agreement.agreement_summary([rows, {**rows, "a": rows[TRUTH]}], ["NMI"], TRUTH)
