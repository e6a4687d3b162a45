"""experiments/benchmark_metric_agreement.py: its summary, a small run checked independently, bad flags."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
_PATH = ROOT / "experiments" / "benchmark_metric_agreement.py"
_SPEC = importlib.util.spec_from_file_location("benchmark_metric_agreement", _PATH)
benchmark = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(benchmark)


def test_summary_ranks_the_truth_and_counts_concordance_per_metric_direction():
    truth = benchmark.TRUTH
    per_sample = [
        {truth: {"psnr": 50.0, "band_psnr": 40.0, "NMI": 1.0, "CE": 0.02},
         "a": {"psnr": 40.0, "band_psnr": 30.0, "NMI": 1.2, "CE": 0.01},
         "b": {"psnr": 30.0, "band_psnr": 35.0, "NMI": 0.9, "CE": 0.03}},
        {truth: {"psnr": 52.0, "band_psnr": 42.0, "NMI": 1.1, "CE": 0.02},
         "a": {"psnr": 41.0, "band_psnr": 31.0, "NMI": 1.3, "CE": 0.01},
         "b": {"psnr": 31.0, "band_psnr": 36.0, "NMI": 0.8, "CE": 0.03}},
    ]
    summary = benchmark.summarise(per_sample, ["NMI", "CE"])
    assert summary["means"]["a"]["psnr"] == pytest.approx(40.5)
    # NMI prefers a over the truth; CE (lower is better) does too.
    assert summary["truth_rank"] == {"NMI": 2, "CE": 2}
    # PSNR order truth > a > b: NMI agrees on (truth, b) and (a, b), not on (truth, a).
    assert summary["concordance_psnr"]["NMI"] == pytest.approx(2 / 3)
    assert summary["concordance_psnr"]["CE"] == pytest.approx(2 / 3)
    # Band order truth > b > a: NMI agrees only on (truth, b).
    assert summary["concordance_band"]["NMI"] == pytest.approx(1 / 3)


def test_summary_stores_no_infinite_psnr_for_the_lossless_truth():
    truth = benchmark.TRUTH
    rows = {truth: {"psnr": np.inf, "band_psnr": np.inf, "NMI": 1.0},
            "a": {"psnr": 40.0, "band_psnr": 30.0, "NMI": 1.2}}
    summary = benchmark.summarise([rows], ["NMI"])
    assert summary["means"][truth]["psnr"] is None and summary["means"][truth]["band_psnr"] is None
    assert summary["concordance_psnr"]["NMI"] == 0.0
    json.dumps(summary, allow_nan=False)


def _scene(seed, shape=(64, 80)):
    import cv2

    rng = np.random.default_rng(seed)
    image = 60 + 120 * cv2.GaussianBlur(rng.random((*shape, 3)), (0, 0), 1.0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image[(yy - 32) ** 2 + (xx - 40) ** 2 < 400] += 60
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_a_small_run_scores_the_oracle_as_computed_independently(tmp_path):
    from mfkeras.evaluation import groundtruth, metrics, reference
    from mfkeras.io import images

    voc = tmp_path / "voc"
    voc.mkdir()
    for number in range(40):
        images.write_image(str(voc / f"2008_{number:06d}.png"), _scene(number))
    out = tmp_path / "agreement.json"
    completed = subprocess.run(
        [sys.executable, str(_PATH), f"--voc_dir={voc}", "--pairs=1", "--jpeg_quality=0", "--liu_mat=",
         "--baselines=", "--metrics=NMI,QABF", f"--lytro_dir={tmp_path / 'none'}", f"--output_json={out}"],
        capture_output=True, text=True, cwd=str(tmp_path),
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(out.read_text())
    summary = report["development"]["lossless"]
    assert set(report["development"]) == {"lossless"} and "lytro_jpeg" not in report
    sample = groundtruth.development_sample(groundtruth.development_images(str(voc)), 0, 2)
    oracle = np.choose(sample.labels[..., None], sample.frames)
    row = summary["means"][benchmark.ORACLE]
    assert row["psnr"] == pytest.approx(reference.psnr(sample.truth, oracle))
    gray = metrics.to_metric_gray
    a, b = gray(sample.frames[0]), gray(sample.frames[1])
    assert row["NMI"] == pytest.approx(metrics.normalized_mutual_information(a, b, gray(oracle)))
    assert summary["means"][benchmark.TRUTH]["psnr"] is None
    assert summary["means"][benchmark.TRUTH]["NMI"] == pytest.approx(
        metrics.normalized_mutual_information(a, b, gray(sample.truth)))
    assert summary["rows"] == [benchmark.TRUTH, benchmark.ORACLE, "mfkeras default",
                               "mfkeras default, no halo removal", "mfkeras default, selection",
                               "mfkeras default, 8x8-block selection"]


def test_a_metric_that_ignores_the_sources_is_refused_in_one_line(tmp_path):
    out = tmp_path / "agreement.json"
    completed = subprocess.run(
        [sys.executable, str(_PATH), "--metrics=NMI,EN", f"--output_json={out}"], capture_output=True, text=True,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().count("\n") == 0 and "EN" in completed.stderr
    assert not out.exists()
