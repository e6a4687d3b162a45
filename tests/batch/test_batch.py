"""Batch fusion: stack discovery, manifests, the resumable runner and `mfkeras-fuse --batch_dir`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfkeras.batch import runner, stacks
from mfkeras.io import images
from mfkeras.network.config import POOL, ModelConfig
from mfkeras.network.model import build_patch_model

from conftest import randomize_weights

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "fuse.py"


def _pair(seed, shape=(40, 48, 3)):
    rng = np.random.default_rng(seed)
    sharp = (cv2.GaussianBlur(rng.random(shape), (0, 0), 1.0) * 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.5)
    mask = np.zeros(shape[:2], bool)
    mask[:, : shape[1] // 2] = True
    a = np.where(mask[..., None], sharp, blurred)
    b = np.where(mask[..., None], blurred, sharp)
    return a, b


@pytest.fixture(scope="module")
def model():
    return randomize_weights(build_patch_model(ModelConfig("tiny", (4, POOL, 8), (8,))), seed=5)


@pytest.fixture()
def batch(tmp_path):
    """Three good stacks (one of three frames), one with a corrupt frame, one with sizes that differ."""
    root = tmp_path / "batch"
    for index, name in enumerate(["obj_1", "obj_2", "obj_10"]):
        folder = root / name
        folder.mkdir(parents=True)
        a, b = _pair(index)
        images.write_image(str(folder / "frame_1.png"), a)
        images.write_image(str(folder / "frame_2.png"), b)
        if name == "obj_10":
            images.write_image(str(folder / "frame_10.png"), a)
    corrupt = root / "obj_corrupt"
    corrupt.mkdir()
    images.write_image(str(corrupt / "f1.png"), _pair(7)[0])
    (corrupt / "f2.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    sizes = root / "obj_sizes"
    sizes.mkdir()
    images.write_image(str(sizes / "f1.png"), _pair(8)[0])
    images.write_image(str(sizes / "f2.png"), _pair(8, shape=(32, 48, 3))[1])
    lonely = root / "single"
    lonely.mkdir()
    images.write_image(str(lonely / "only.png"), _pair(9)[0])
    (root / "notes.txt").write_text("not a stack")
    return root


def test_find_stacks_natural_order_and_two_frames_minimum(batch):
    found = stacks.find_stacks(str(batch))
    assert [s.name for s in found] == ["obj_1", "obj_2", "obj_10", "obj_corrupt", "obj_sizes"]
    assert [Path(p).name for p in found[2].paths] == ["frame_1.png", "frame_2.png", "frame_10.png"]


def test_find_stacks_rejects_a_folder_without_stacks(tmp_path):
    with pytest.raises(images.ImageError, match="No stacks in"):
        stacks.find_stacks(str(tmp_path))
    with pytest.raises(images.ImageError, match="not a directory"):
        stacks.find_stacks(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    "line, expected",
    [
        ('["s/a/1.png", "s/a/2.png"]', stacks.Stack("a", ("s/a/1.png", "s/a/2.png"))),
        ('{"name": "x", "paths": ["1.png", "2.png"]}', stacks.Stack("x", ("1.png", "2.png"))),
        ("gs://b/k/1.jpg, gs://b/k/2.jpg", stacks.Stack("k", ("gs://b/k/1.jpg", "gs://b/k/2.jpg"))),
        ("   ", None),
        ("# a comment", None),
    ],
)
def test_manifest_lines(line, expected):
    assert stacks.parse_manifest_line(line) == expected


@pytest.mark.parametrize(
    "line, message",
    [
        ('["only.png"]', "at least 2 frames"),
        ("[1, 2]", "must list frame paths"),
        ('{"name": "../up", "paths": ["a.png", "b.png"]}', "plain file stem"),
        ("[not json", "not valid JSON"),
    ],
)
def test_bad_manifest_lines_are_named(line, message):
    with pytest.raises(images.ImageError, match=message):
        stacks.parse_manifest_line(line)


def test_output_path_checks_the_extension(tmp_path):
    assert stacks.output_path(str(tmp_path), "s", ".TIF") == str(tmp_path / "s.tif")
    with pytest.raises(images.ImageError, match="output_ext must be one of"):
        stacks.output_path(str(tmp_path), "s", "gif")


def test_batch_fuses_each_stack_as_fuse_does_and_reports_failures(batch, model, tmp_path):
    from mfkeras.fusion import fuse

    out = tmp_path / "out"
    out.mkdir()
    (out / (images.TEMPORARY_PREFIX + "left_by_a_killed_run")).write_bytes(b"partial")
    report = runner.fuse_batch(stacks.find_stacks(str(batch)), model, str(out))
    assert (report["stacks"], report["fused"], report["failed"], report["skipped"]) == (5, 3, 2, 0)
    reasons = {f["stack"]: f["reason"] for f in report["failures"]}
    assert "not a readable image" in reasons["obj_corrupt"].lower()
    assert "same shape" in reasons["obj_sizes"] and "f2.png" in reasons["obj_sizes"]
    for stack in stacks.find_stacks(str(batch))[:3]:
        expected = fuse([images.read_image(p) for p in stack.paths], model).fused
        np.testing.assert_array_equal(images.read_image(str(out / f"{stack.name}.png")), expected)
    assert sorted(p.name for p in out.iterdir()) == [
        "batch_report.json", "obj_1.png", "obj_10.png", "obj_2.png"
    ]
    assert json.loads((out / "batch_report.json").read_text())["failures"] == report["failures"]


def test_batch_resumes_without_redoing_finished_stacks(batch, model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # As if a killed run had finished obj_1 only: its output is kept, not recomputed.
    sentinel = np.full((40, 48, 3), 7, np.uint8)
    images.write_image(str(out / "obj_1.png"), sentinel)
    good = [s for s in stacks.find_stacks(str(batch)) if not s.name.startswith("obj_c") and s.name != "obj_sizes"]
    report = runner.fuse_batch(good, model, str(out))
    assert (report["fused"], report["skipped"]) == (2, 1)
    np.testing.assert_array_equal(images.read_image(str(out / "obj_1.png")), sentinel)
    again = runner.fuse_batch(good, model, str(out))
    assert (again["fused"], again["skipped"]) == (0, 3)
    forced = runner.fuse_batch(good, model, str(out), overwrite=True)
    assert forced["fused"] == 3
    assert not np.array_equal(images.read_image(str(out / "obj_1.png")), sentinel)


def test_batch_rejects_repeated_names(model, tmp_path):
    twice = [stacks.Stack("s", ("a.png", "b.png"))] * 2
    with pytest.raises(images.ImageError, match="unique"):
        runner.fuse_batch(twice, model, str(tmp_path))


def _run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_cli_batch_exit_status_summary_and_resume(batch, model, tmp_path):
    model.save(tmp_path / "tiny.keras")
    out = tmp_path / "cli_out"
    args = [f"--batch_dir={batch}", f"--output_dir={out}", f"--model={tmp_path / 'tiny.keras'}",
            "--output_ext=jpg"]
    proc = _run(*args)
    assert proc.returncode == 1, proc.stderr
    assert "3 fused, 0 skipped (output exists), 2 failed of 5 stacks" in proc.stdout
    assert "failed: obj_corrupt" in proc.stderr and "failed: obj_sizes" in proc.stderr
    assert sorted(p.name for p in out.glob("*.jpg")) == ["obj_1.jpg", "obj_10.jpg", "obj_2.jpg"]
    for name in ("obj_corrupt", "obj_sizes"):
        for path in (batch / name).iterdir():
            os.remove(path)
        (batch / name).rmdir()
    again = _run(*args)
    assert again.returncode == 0, again.stderr
    assert "0 fused, 3 skipped (output exists), 0 failed of 3 stacks" in again.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch_dir=nowhere", "--output_dir=o"], "not a directory: nowhere"),
        (["--batch_dir=."], "needs both --batch_dir and --output_dir"),
        (["--batch_dir=.", "--output_dir=o", "a.png"], "takes no input images"),
        (["--batch_dir={batch}", "--output_dir=o", "--output_ext=gif"], "output_ext must be one of"),
    ],
)
def test_cli_batch_bad_flags_one_line_status_2(batch, args, message):
    proc = _run(*[a.format(batch=batch) for a in args])
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
