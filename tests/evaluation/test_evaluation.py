"""mfkeras.evaluation pairs, runner, report and figures, and `mfkeras-evaluate`, on tiny synthetic pairs."""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfkeras.baselines import wavelets as baselines
from mfkeras.evaluation import figures, report, runner
from mfkeras.evaluation import pairs as source_pairs
from mfkeras.evaluation import metrics

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "evaluate.py"
SIZE = (40, 48)


def _focus_pair(seed: int, colour: bool = True):
    """A sharp texture, blurred on the right in A and on the left in B."""
    rng = np.random.default_rng(seed)
    shape = SIZE + ((3,) if colour else ())
    sharp = (cv2.GaussianBlur(rng.random(shape), (0, 0), 1.0) * 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    half = SIZE[1] // 2
    a, b = sharp.copy(), sharp.copy()
    a[:, half:] = blurred[:, half:]
    b[:, :half] = blurred[:, :half]
    return a, b


def _write(path: Path, image: np.ndarray) -> None:
    # OpenCV writes BGR; the tests only compare what mfkeras reads back (RGB).
    assert cv2.imwrite(str(path), image[..., ::-1] if image.ndim == 3 else image)


@pytest.fixture
def dataset(tmp_path):
    """Two good pairs (both naming styles), one lone source and one size mismatch."""
    a, b = _focus_pair(0)
    _write(tmp_path / "alpha_A.png", a)
    _write(tmp_path / "alpha_B.png", b)
    a, b = _focus_pair(1)
    _write(tmp_path / "beta_1.png", a)
    _write(tmp_path / "beta_2.png", b)
    _write(tmp_path / "lone_B.png", a)
    _write(tmp_path / "size_A.png", a)
    _write(tmp_path / "size_B.png", b[:32])
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_find_pairs_both_naming_styles_and_skip_reasons(dataset):
    pairs = {pair.name: pair for pair in source_pairs.find_pairs(str(dataset))}
    assert sorted(pairs) == ["alpha", "beta", "lone", "size"]
    assert pairs["alpha"].ok and [Path(p).name for p in pairs["alpha"].paths] == ["alpha_A.png", "alpha_B.png"]
    assert pairs["beta"].ok and [Path(p).name for p in pairs["beta"].paths] == ["beta_1.png", "beta_2.png"]
    assert pairs["lone"].skip_reason.startswith("missing partner: no lone_A.*")
    assert "size_A.png is (40, 48, 3)" in pairs["size"].skip_reason
    assert "size_B.png is (32, 48, 3)" in pairs["size"].skip_reason


@pytest.mark.parametrize(
    "files, reason",
    [
        (["x_A.png", "x_B.png", "x_B.jpg"], "ambiguous sources"),
        (["x_A.png", "x_2.png"], "mixes _A/_B and _1/_2"),
        (["x_A.png", "gray:x_B.png"], "sources differ"),
    ],
)
def test_find_pairs_other_skip_reasons(tmp_path, files, reason):
    a, _ = _focus_pair(0)
    for name in files:
        gray = name.startswith("gray:")
        _write(tmp_path / name.removeprefix("gray:"), a[..., 0] if gray else a)
    (pair,) = source_pairs.find_pairs(str(tmp_path))
    assert not pair.ok and pair.skip_reason.startswith(reason), pair.skip_reason


def test_find_pairs_rejects_a_folder_without_pairs(tmp_path):
    _write(tmp_path / "image.png", _focus_pair(0)[0])
    with pytest.raises(ValueError, match="No source pairs"):
        source_pairs.find_pairs(str(tmp_path))


def test_find_precomputed_splits_method_names_with_underscores(tmp_path):
    for name in [
        "lytro_01_DCT_Corr.jpg",
        "lytro_01_NSCT_SR.jpg",
        "lytro_01_CNN.jpg",
        "lytro_02_NSCT_SR.png",
        "lytro_02_A.jpg",  # A source, not a method.
        "lytro_03_CNN.jpg",  # A pair that is not in the dataset.
        "lytro_1_CNN.jpg",  # A pair name that only looks like one.
    ]:
        (tmp_path / name).write_bytes(b"")
    found = source_pairs.find_precomputed(str(tmp_path), ["lytro_01", "lytro_02", "lytro_1"])
    assert {m: sorted(p) for m, p in found.items()} == {
        "CNN": ["lytro_01", "lytro_1"],
        "DCT_Corr": ["lytro_01"],
        "NSCT_SR": ["lytro_01", "lytro_02"],
    }
    assert Path(found["NSCT_SR"]["lytro_02"]).name == "lytro_02_NSCT_SR.png"


def test_find_precomputed_prefers_the_longest_pair_name(tmp_path):
    (tmp_path / "scene_x_GFF.png").write_bytes(b"")
    found = source_pairs.find_precomputed(str(tmp_path), ["scene", "scene_x"])
    assert found == {"GFF": {"scene_x": str(tmp_path / "scene_x_GFF.png")}}


def test_find_precomputed_rejects_two_files_for_one_image(tmp_path):
    (tmp_path / "p_GFF.png").write_bytes(b"")
    (tmp_path / "p_GFF.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="Two fused images of method 'GFF' for pair 'p'"):
        source_pairs.find_precomputed(str(tmp_path), ["p"])


MEANS = {
    "M1": {"QABF": 0.70, "CE": 0.30, "time_s": 2.0},
    "M2": {"QABF": 0.75, "CE": 0.50, "time_s": 1.0},
    "M3": {"QABF": 0.72, "CE": 0.20, "time_s": math.nan},
}


def test_markdown_table_bolds_the_best_in_each_metrics_direction():
    table = report.markdown_table(MEANS, ["QABF", "CE"], show_time=True)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert "**0.7500**" in rows["M2"] and "**0.7000**" not in rows["M1"]  # QABF: max.
    assert "**0.2000**" in rows["M3"] and "**0.3000**" not in rows["M1"]  # CE: min.
    assert "**1.0000**" in rows["M2"] and "| – |" in rows["M3"] + " |"  # time: min, NaN shown as –.
    assert table.splitlines()[0] == "| Method | QABF ↑ | CE ↓ | time_s ↓ |"


def test_markdown_table_bolds_ties():
    table = report.markdown_table({"a": {"EN": 7.0}, "b": {"EN": 7.00001}, "c": {"EN": 6.0}}, ["EN"])
    assert table.count("**") == 4


def test_rank_orders_by_direction_and_shares_ties():
    assert [m for _, m, _ in report.rank(MEANS, "QABF")] == ["M2", "M3", "M1"]
    assert [m for _, m, _ in report.rank(MEANS, "CE")] == ["M3", "M1", "M2"]
    tied = {"a": {"NMI": 1.0}, "b": {"NMI": 1.0}, "c": {"NMI": 0.5}, "d": {"NMI": math.nan}}
    assert [(r, m) for r, m, _ in report.rank(tied, "NMI")] == [(1, "a"), (1, "b"), (3, "c"), (4, "d")]


@pytest.mark.parametrize("colour", [True, False])
def test_jpeg_roundtrip_changes_the_image_but_keeps_shape_and_dtype(colour):
    image, _ = _focus_pair(2, colour)
    decoded = runner.jpeg_roundtrip(image, quality=75)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert not np.array_equal(decoded, image)
    error = np.abs(decoded.astype(float) - image).mean()
    assert 0 < error < 20
    # Higher quality is closer to the original.
    assert np.abs(runner.jpeg_roundtrip(image, quality=95).astype(float) - image).mean() < error


def test_jpeg_bytes_use_420_subsampling():
    from PIL import Image, JpegImagePlugin
    import io

    image, _ = _focus_pair(2)
    with Image.open(io.BytesIO(runner.jpeg_bytes(image, 75))) as jpeg:
        assert JpegImagePlugin.get_sampling(jpeg) == 2  # PIL's code for 4:2:0.


@pytest.mark.parametrize("quality", [0, 101, 75.5])
def test_jpeg_rejects_bad_quality(quality):
    with pytest.raises(ValueError, match="quality"):
        runner.jpeg_bytes(np.zeros((8, 8), np.uint8), quality)


@pytest.mark.parametrize("spec", ["wavelet", "mfkeras:", "liu_mat:model.keras", "DWT2"])
def test_resolve_method_rejects_unknown_specs(spec):
    with pytest.raises(ValueError, match="Received|Unknown method"):
        runner.resolve_method(spec)


def test_resolve_method_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No trained model"):
        runner.resolve_method(f"mfkeras:{tmp_path / 'absent.keras'}")


def test_resolve_method_names_baselines():
    method = runner.resolve_method("DTCWT")
    assert method.name == "DTCWT" and method.fuse is baselines.fuse_dtcwt


def test_evaluate_matches_a_direct_metrics_call(dataset):
    pairs = [p for p in source_pairs.find_pairs(str(dataset)) if p.ok]
    methods = [runner.resolve_method(name) for name in ("dwt", "lpt")]
    names = ["EN", "SF", "CE", "QABF", "NMI"]
    seen = []
    rows = runner.evaluate(
        pairs, methods, None, names, progress=False, on_fused=lambda p, m, f: seen.append((p.name, m))
    )
    assert [(r["pair"], r["method"]) for r in rows] == [
        ("alpha", "DWT"), ("alpha", "LPT"), ("beta", "DWT"), ("beta", "LPT")
    ]
    assert seen == [(r["pair"], r["method"]) for r in rows]
    from mfkeras.io import images

    for row, pair, fuse in zip(rows, [pairs[0]] * 2 + [pairs[1]] * 2, [baselines.fuse_dwt, baselines.fuse_lpt] * 2):
        a, b = (images.read_image(path) for path in pair.paths)
        expected = metrics.evaluate_all(a, b, fuse([a, b]), names)
        assert {k: row[k] for k in names} == pytest.approx(expected, rel=1e-12)
        assert row["error"] == "" and row["time_s"] > 0


def test_evaluate_scores_precomputed_images_as_stored_and_jpeg_only_ours(dataset, tmp_path_factory):
    pairs = [p for p in source_pairs.find_pairs(str(dataset)) if p.ok]
    from mfkeras.io import images

    a, b = (images.read_image(path) for path in pairs[0].paths)
    published = tmp_path_factory.mktemp("published")
    stored = baselines.fuse_lpt([a, b])
    images.write_image(str(published / "alpha_LP_T.png"), stored)
    precomputed = source_pairs.find_precomputed(str(published), ["alpha", "beta"])
    rows = runner.evaluate(
        pairs[:1], [runner.resolve_method("lpt")], precomputed, ["QABF"], jpeg_quality=75, progress=False
    )
    by_method = {row["method"]: row for row in rows}
    assert by_method["LP_T"]["QABF"] == pytest.approx(metrics.qabf(*map(metrics.to_metric_gray, (a, b, stored))))
    assert math.isnan(by_method["LP_T"]["time_s"])
    jpeg = runner.jpeg_roundtrip(stored, 75)
    assert by_method["LPT"]["QABF"] == pytest.approx(metrics.qabf(*map(metrics.to_metric_gray, (a, b, jpeg))))
    assert by_method["LPT"]["QABF"] < by_method["LP_T"]["QABF"]


def test_evaluate_completes_and_reports_broken_pairs_and_methods(dataset):
    pairs = source_pairs.find_pairs(str(dataset))
    (dataset / "beta_2.png").write_bytes(b"corrupt")  # Broken after detection.

    def broken(images):
        raise RuntimeError("boom")

    methods = [runner.resolve_method("dwt"), runner.Method("BROKEN", broken, "test")]
    with pytest.warns(UserWarning):
        rows = runner.evaluate(pairs, methods, None, ["EN", "QABF"], progress=False)
    failures = {(pair, method): reason for pair, method, reason in report.errors(rows)}
    assert set(failures) == {("alpha", "BROKEN"), ("beta", ""), ("lone", ""), ("size", "")}
    assert failures[("alpha", "BROKEN")] == "RuntimeError: boom"
    assert "Not a readable image" in failures[("beta", "")]
    means = report.summarise(rows)
    assert list(means) == ["DWT"] and means["DWT"]["pairs"] == 1


def test_evaluate_gives_nan_with_a_warning_for_an_undefined_metric(tmp_path):
    flat = np.full((32, 32), 128, np.uint8)
    _write(tmp_path / "flat_A.png", flat)
    _write(tmp_path / "flat_B.png", flat)
    constant = runner.Method("CONST", lambda images: images[0].copy(), "test")
    with pytest.warns(metrics.UndefinedMetricWarning, match="flat / CONST"):
        rows = runner.evaluate(source_pairs.find_pairs(str(tmp_path)), [constant], None, ["NMI", "SF"], progress=False)
    assert math.isnan(rows[0]["NMI"]) and rows[0]["SF"] == 0.0 and rows[0]["error"] == ""


def test_evaluate_rejects_unknown_metrics_and_clashing_names(dataset):
    pairs = source_pairs.find_pairs(str(dataset))
    dwt = runner.resolve_method("dwt")
    with pytest.raises(ValueError, match="Unknown metric names \\['IE'\\]"):
        runner.evaluate(pairs, [dwt], None, ["IE"], progress=False)
    with pytest.raises(ValueError, match="unique.*DWT"):
        runner.evaluate(pairs, [dwt], {"DWT": {}}, ["EN"], progress=False)


def test_summarise_ignores_nan_pairs_and_csv_round_trips(tmp_path):
    rows = [
        {"pair": "p1", "method": "M", "time_s": 1.0, "error": "", "QW": 0.5},
        {"pair": "p2", "method": "M", "time_s": 3.0, "error": "", "QW": math.nan},
        {"pair": "p3", "method": "", "time_s": math.nan, "error": "missing partner", "QW": math.nan},
    ]
    assert report.summarise(rows) == {"M": {"pairs": 2, "time_s": 2.0, "QW": 0.5}}
    path = tmp_path / "rows.csv"
    path.write_bytes(report.rows_csv(rows))
    back = report.read_rows_csv(str(path))
    assert back[0] == rows[0] and math.isnan(back[1]["QW"]) and back[2]["error"] == "missing partner"


def test_summary_markdown_separates_no_reference_metrics_and_states_the_protocol():
    rows = [
        {"pair": "p", "method": "OURS", "time_s": 1.0, "error": "", "EN": 7.0, "QABF": 0.7},
        {"pair": "p", "method": "THEIRS", "time_s": math.nan, "error": "", "EN": 7.1, "QABF": 0.6},
        {"pair": "q", "method": "", "time_s": math.nan, "error": "missing partner", "EN": math.nan, "QABF": math.nan},
    ]
    text = report.summary_markdown(rows, ["EN", "QABF"], "T", "JPEG 75", rank_by=["QABF"], ours=["OURS"])
    first, fusion = text.split("## Fusion metrics")[0], text.split("## Fusion metrics")[1].split("## Ranking")[0]
    assert "| EN ↑ |" in first and "QABF" not in first.split("| Method")[1]
    assert "| QABF ↑ | time_s ↓ |" in fusion and "**7.1000**" in first
    assert "| 1 | **OURS** | 0.7000 |" in text and "| 2 | THEIRS | 0.6000 |" in text
    assert text.count("Protocol: JPEG 75.") == 2 and "- q (pair): missing partner" in text


def test_bar_chart_and_gallery_are_pngs(dataset):
    (pair,) = [p for p in source_pairs.find_pairs(str(dataset)) if p.name == "alpha"]
    from mfkeras.io import images

    a, b = (images.read_image(path) for path in pair.paths)
    fused = {"DWT": baselines.fuse_dwt([a, b]), "LPT": baselines.fuse_lpt([a, b])}
    for payload in (
        figures.bar_chart_png(MEANS, ["QABF", "CE"]),
        figures.gallery_png(pair, fused, inset_box=(10, 20, 8, 8)),
        figures.gallery_png(pair, fused),
    ):
        assert payload.startswith(b"\x89PNG") and cv2.imdecode(np.frombuffer(payload, np.uint8), 1) is not None


def test_draw_inset_magnifies_the_box_into_the_far_corner():
    image = np.zeros((60, 80), np.uint8)
    image[5:10, 5:10] = 200  # Inside the box at the top left.
    picture = figures.draw_inset(image, (4, 4, 8, 8), zoom=3)
    assert picture.shape == (60, 80, 3)
    inset = picture[60 - 24 - 1 : 59, 80 - 24 - 1 : 79]  # Bottom-right corner.
    assert (inset[6:15, 6:15] == 200).all()  # The bright square, 3x larger.
    assert tuple(picture[4, 4]) == (255, 0, 0)  # The source box is outlined in red.
    with pytest.raises(ValueError, match="inside the 60x80 image"):
        figures.draw_inset(image, (55, 0, 8, 8))


def test_choose_inset_box_finds_where_methods_differ():
    first = np.full((64, 64), 100, np.uint8)
    second = first.copy()
    second[40:48, 8:16] = 200
    top, left, height, width = figures.choose_inset_box({"x": first, "y": second}, side=8)
    assert (top, left, height, width) == (40, 8, 8, 8)


# --- The script, run as users run it --------------------------------------------------------


def _run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env)


def test_script_writes_csv_markdown_and_pngs(dataset, tmp_path_factory):
    published = tmp_path_factory.mktemp("published")
    from mfkeras.io import images

    a, b = (images.read_image(str(dataset / f"alpha_{t}.png")) for t in "AB")
    images.write_image(str(published / "alpha_Other_Method.png"), baselines.fuse_dwt([a, b]))
    out = tmp_path_factory.mktemp("run") / "results"
    proc = _run(
        f"--dataset_dir={dataset}", "--methods=dwt,lpt", f"--precomputed_dir={published}",
        "--metrics=EN,CE,QABF", "--jpeg_quality=75", f"--output_dir={out}", "--save_fused", "--noprogress",
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "bar_chart.png", "fused", "gallery_alpha.png", "per_pair.csv", "run.json", "summary.md"
    ]
    with open(out / "per_pair.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2 * 2 + 1 + 2  # Two pairs x two methods, one precomputed, two skipped pairs.
    summary = (out / "summary.md").read_text()
    assert "| Other_Method |" in summary and "JPEG-encoded at quality 75" in summary
    assert "## Ranking by QABF" in summary and "missing partner" in summary
    assert sorted(p.name for p in (out / "fused").iterdir()) == [
        "alpha_DWT.png", "alpha_LPT.png", "beta_DWT.png", "beta_LPT.png"
    ]
    # The saved image is the one scored: JPEG artefacts included, lossless file.
    with open(out / "per_pair.csv") as stream:
        row = next(r for r in csv.DictReader(stream) if (r["pair"], r["method"]) == ("alpha", "DWT"))
    saved = images.read_image(str(out / "fused" / "alpha_DWT.png"))
    assert float(row["QABF"]) == pytest.approx(metrics.evaluate_all(a, b, saved, ["QABF"])["QABF"], rel=1e-12)
    assert not np.array_equal(saved, baselines.fuse_dwt([a, b]))
    # Existing results are kept unless --overwrite.
    proc = _run(f"--dataset_dir={dataset}", "--methods=dwt", f"--output_dir={out}")
    assert proc.returncode == 2 and "--overwrite" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--dataset_dir is required"),
        (["--dataset_dir={absent}"], "not a directory"),
        (["--dataset_dir={data}", "--methods=wavelet"], "Unknown method 'wavelet'"),
        (["--dataset_dir={data}", "--methods=mfkeras:absent_model"], "No trained model"),
        (["--dataset_dir={data}", "--methods=dwt", "--metrics=IE"], "Unknown --metrics ['IE']"),
        (["--dataset_dir={data}", "--methods=dwt", "--jpeg_quality=0"], "--jpeg_quality must be from 1 to 100"),
        (["--dataset_dir={data}", "--methods=dwt", "--precomputed_dir={absent}"], "--precomputed_dir is not"),
        (["--dataset_dir={data}", "--methods=dwt", "--gallery_pair=lone"], "missing partner"),
        (["--dataset_dir={data}"], "Nothing to evaluate"),
    ],
)
def test_script_bad_input_is_one_line_and_status_2(dataset, tmp_path_factory, args, message):
    out = tmp_path_factory.mktemp("bad") / "results"
    values = {"data": dataset, "absent": dataset / "absent"}
    proc = _run(*(a.format(**values) for a in args), f"--output_dir={out}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mfkeras-evaluate: error:"), proc.stderr
    assert message in lines[0]
