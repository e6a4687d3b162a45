"""experiments/benchmark_metric_agreement.py: a small run checked by independent computation, bad flags."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "benchmark_metric_agreement.py"
TRUTH, ORACLE = "ground truth", "true focus map, selection"
DEFAULT_ROWS = ["mfkeras default", "mfkeras default, no halo removal", "mfkeras default, selection",
                "mfkeras default, 8x8-block selection"]


def _scene(seed, shape=(64, 80)):
    import cv2

    rng = np.random.default_rng(seed)
    image = 60 + 120 * cv2.GaussianBlur(rng.random((*shape, 3)), (0, 0), 1.0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image[(yy - 32) ** 2 + (xx - 40) ** 2 < 400] += 60
    return np.clip(image, 0, 255).astype(np.uint8)


def _nmi(a, b, fused):
    from mfkeras.evaluation import metrics

    gray = metrics.to_metric_gray
    return metrics.normalized_mutual_information(gray(a), gray(b), gray(fused))


@pytest.mark.slow
def test_a_small_run_matches_independent_computations(tmp_path):
    from mfkeras import fusion
    from mfkeras.evaluation import agreement, groundtruth, reference, runner
    from mfkeras.io import images
    from mfkeras.network import zoo

    voc, lytro, published = tmp_path / "voc", tmp_path / "lytro", tmp_path / "published"
    for folder in (voc, lytro, published):
        folder.mkdir()
    for number in range(40):
        images.write_image(str(voc / f"2008_{number:06d}.png"), _scene(number))
    sources = groundtruth.development_images(str(voc))
    sample = groundtruth.development_sample(sources, 0, 2)
    lytro_pair = groundtruth.development_sample(sources, 5, 2).frames
    images.write_image(str(lytro / "p1_A.png"), lytro_pair[0])
    images.write_image(str(lytro / "p1_B.png"), lytro_pair[1])
    images.write_image(str(published / "p1_DCT_EOL.png"), lytro_pair[1])
    out = tmp_path / "agreement.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), f"--voc_dir={voc}", "--pairs=1", "--jpeg_quality=75", "--liu_mat=",
         "--baselines=", "--metrics=NMI,QABF", f"--lytro_dir={lytro}", f"--published_dir={published}",
         f"--output_json={out}"],
        capture_output=True, text=True, cwd=str(tmp_path),
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["development"]) == {"lossless", "jpeg75"}
    lossless, jpeg = report["development"]["lossless"], report["development"]["jpeg75"]
    assert lossless["rows"] == jpeg["rows"] == [TRUTH, ORACLE, *DEFAULT_ROWS]

    oracle = np.choose(sample.labels[..., None], sample.frames)
    assert lossless["means"][ORACLE]["psnr"] == pytest.approx(reference.psnr(sample.truth, oracle))
    assert lossless["means"][ORACLE]["NMI"] == pytest.approx(_nmi(*sample.frames, oracle))
    assert lossless["means"][TRUTH]["psnr"] is None and lossless["left_out"][TRUTH]["psnr"] == 1

    # The JPEG protocol: the methods fuse the encoded frames and every row is encoded once more.
    def encode(image):
        return runner.jpeg_roundtrip(image, 75)

    frames = [encode(frame) for frame in sample.frames]
    model = zoo.load_patch_model()
    result = fusion.fuse(frames, model)
    first = result.decision.astype(bool)
    snapped = agreement.block_aligned(first, 8)
    assert not np.array_equal(snapped, first)  # the 8x8 row differs from the plain selection here
    expected = {
        TRUTH: encode(sample.truth),
        ORACLE: encode(np.choose(sample.labels[..., None], frames)),
        "mfkeras default": encode(result.fused),
        "mfkeras default, no halo removal": encode(
            fusion.fuse(frames, model, fusion.FusionOptions(halo_removal=False)).fused),
        "mfkeras default, selection": encode(np.where(first[..., None], frames[0], frames[1])),
        "mfkeras default, 8x8-block selection": encode(np.where(snapped[..., None], frames[0], frames[1])),
    }
    assert not np.array_equal(expected["mfkeras default"], expected["mfkeras default, no halo removal"])
    for name, image in expected.items():
        assert jpeg["means"][name]["NMI"] == pytest.approx(_nmi(*frames, image)), name
        if name != TRUTH:
            assert jpeg["means"][name]["psnr"] == pytest.approx(reference.psnr(sample.truth, image)), name

    probe = report["lytro_jpeg"]
    assert probe["DCT_EOL"]["pairs"] == 1
    assert probe["DCT_EOL"]["NMI"] == pytest.approx(_nmi(*lytro_pair, lytro_pair[1]))
    decision = fusion.fuse(lytro_pair, model).decision.astype(bool)
    expected = encode(np.where(decision[..., None], lytro_pair[0], lytro_pair[1]))
    assert probe["mfkeras default, selection"]["NMI"] == pytest.approx(_nmi(*lytro_pair, expected))


@pytest.mark.parametrize("flags, named", [
    (["--metrics=NMI,EN"], "EN"), (["--liu_mat=/no/such/cnnmodel.mat"], "liu_mat"),
    (["--lytro_dir=/no/such/folder"], "lytro_dir"), (["--lytro_dir=.", "--published_dir=/no/such/folder"], "published_dir"),
])
def test_bad_flags_are_refused_in_one_line_before_any_work(tmp_path, flags, named):
    out = tmp_path / "agreement.json"
    completed = subprocess.run([sys.executable, str(SCRIPT), *flags, f"--output_json={out}"],
                               capture_output=True, text=True, cwd=str(tmp_path))
    assert completed.returncode == 2
    assert completed.stderr.strip().count("\n") == 0 and named in completed.stderr
    assert not out.exists()
