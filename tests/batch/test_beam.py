"""The batch job on Apache Beam (mfkeras.batch.beam, `mfkeras-fuse-beam`) against the local batch mode."""

import json
import os
import posixpath
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

beam = pytest.importorskip("apache_beam")

from apache_beam.io.filesystem import FileMetadata, FileSystem  # noqa: E402
from apache_beam.io.localfilesystem import LocalFileSystem  # noqa: E402

from mfkeras.batch import beam as batch_beam  # noqa: E402
from mfkeras.batch.runner import fuse_batch  # noqa: E402
from mfkeras.batch.stacks import Stack, find_stacks  # noqa: E402
from mfkeras.fusion.options import FusionOptions  # noqa: E402
from mfkeras.io.images import ImageError  # noqa: E402
from mfkeras.network.config import POOL, ModelConfig  # noqa: E402
from mfkeras.network.model import build_patch_model  # noqa: E402

from conftest import randomize_weights  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "fuse_beam.py"
PAIRS = 6
MULTI_PROCESSING = [
    "--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing",
]
IN_MEMORY = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]


def _pair(seed: int, shape=(48, 64)):
    """A synthetic multi-focus pair: each frame blurs the other's sharp half."""
    rng = np.random.default_rng(seed)
    sharp = (cv2.GaussianBlur(rng.random((*shape, 3)), (0, 0), 1.0) * 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.5)
    half = shape[1] // 2
    a, b = sharp.copy(), sharp.copy()
    a[:, half:], b[:, :half] = blurred[:, half:], blurred[:, :half]
    return a, b


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny random .keras model and a batch folder: six pairs and one stack with a corrupt frame."""
    root = tmp_path_factory.mktemp("beam")
    model = randomize_weights(build_patch_model(ModelConfig("tiny", (4, POOL, 8), (8,))), seed=5)
    model.save(root / "tiny.keras")
    batch = root / "batch"
    for index in range(1, PAIRS + 1):
        folder = batch / f"pair_{index}"
        folder.mkdir(parents=True)
        a, b = _pair(index)
        cv2.imwrite(str(folder / "a.png"), a)
        cv2.imwrite(str(folder / "b.png"), b)
    broken = batch / "broken"
    broken.mkdir()
    cv2.imwrite(str(broken / "a.png"), _pair(0)[0])
    (broken / "b.png").write_bytes(b"not an image at all")
    return root


@pytest.fixture(scope="module")
def local_outputs(workspace):
    """The local batch mode's outputs for the same stacks, the reference."""
    from mfkeras.network import zoo

    out = workspace / "local"
    report = fuse_batch(find_stacks(str(workspace / "batch")), zoo.load_patch_model(str(workspace / "tiny.keras")),
                        str(out))
    assert (report["fused"], report["failed"]) == (PAIRS, 1)
    return out


def _dead_letters(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _assert_same_images(local_dir, beam_dir):
    names = sorted(p.name for p in Path(local_dir).glob("*.png"))
    assert names == [f"pair_{i}.png" for i in range(1, PAIRS + 1)]
    for name in names:
        expected = cv2.imread(str(Path(local_dir) / name)).astype(float)
        actual = cv2.imread(str(Path(beam_dir) / name)).astype(float)
        assert np.abs(actual - expected).mean() <= 0.5, name


def _run_beam(workspace, out, pipeline_args, **kwargs):
    return batch_beam.fuse_batch_beam(
        find_stacks(str(workspace / "batch")), str(out), model_spec=str(workspace / "tiny.keras"),
        pipeline_options=pipeline_args, **kwargs,
    )


@pytest.mark.slow
def test_two_worker_processes_match_the_local_batch_and_dead_letter_the_corrupt_stack(
    workspace, local_outputs
):
    out = workspace / "beam_multi"
    start = time.perf_counter()
    summary = _run_beam(workspace, out, MULTI_PROCESSING)
    print(f"multi_processing, 2 workers: {time.perf_counter() - start:.1f} s")
    _assert_same_images(local_outputs, out)
    [record] = _dead_letters(out / batch_beam.DEAD_LETTER_FILE)
    assert record["name"] == "broken" and record["stage"] == "fuse"
    assert record["paths"] == [str(workspace / "batch" / "broken" / n) for n in ("a.png", "b.png")]
    assert "Not a readable image" in record["error"] and "b.png" in record["error"]
    assert summary["stacks"] == PAIRS + 1
    if summary["fused"] is not None:  # runners that report metrics
        assert (summary["fused"], summary["skipped"], summary["failed"]) == (PAIRS, 0, 1)
    assert not list(out.glob(".tmp-*"))


def test_in_memory_matches_the_local_batch_then_skips_fused_stacks(workspace, local_outputs):
    out = workspace / "beam_in_memory"
    summary = _run_beam(workspace, out, IN_MEMORY)
    _assert_same_images(local_outputs, out)
    assert [r["name"] for r in _dead_letters(out / batch_beam.DEAD_LETTER_FILE)] == ["broken"]
    assert (summary["fused"], summary["skipped"], summary["failed"]) == (PAIRS, 0, 1)

    marker = out / "pair_1.png"
    os.utime(marker, (0, 0))
    again = _run_beam(workspace, out, IN_MEMORY)
    assert (again["fused"], again["skipped"], again["failed"]) == (0, PAIRS, 1)
    assert marker.stat().st_mtime == 0  # skipped, not rewritten

    forced = _run_beam(workspace, out, IN_MEMORY, overwrite=True)
    assert (forced["fused"], forced["skipped"], forced["failed"]) == (PAIRS, 0, 1)
    assert marker.stat().st_mtime > 0


def test_fusion_options_reach_the_workers(workspace, local_outputs, tmp_path):
    from mfkeras.network import zoo

    stacks = [s for s in find_stacks(str(workspace / "batch")) if s.name in ("pair_1", "pair_2")]
    options = FusionOptions(refine="none", consistency="none", symmetric=True)
    fuse_batch(stacks, zoo.load_patch_model(str(workspace / "tiny.keras")), str(tmp_path / "local"), options)
    batch_beam.fuse_batch_beam(stacks, str(tmp_path / "beam"), model_spec=str(workspace / "tiny.keras"),
                               options=options, pipeline_options=IN_MEMORY)
    for stack in stacks:
        expected = cv2.imread(str(tmp_path / "local" / f"{stack.name}.png"))
        assert np.array_equal(cv2.imread(str(tmp_path / "beam" / f"{stack.name}.png")), expected)
        assert not np.array_equal(cv2.imread(str(local_outputs / f"{stack.name}.png")), expected)


def test_the_dead_letter_file_is_a_manifest_of_the_failures(workspace, tmp_path):
    dead_letter = tmp_path / "failures.jsonl"
    good = next(s for s in find_stacks(str(workspace / "batch")) if s.name == "pair_1")
    stacks = [Stack("broken", tuple(str(workspace / "batch" / "broken" / n) for n in ("a.png", "b.png"))),
              Stack("missing", (str(tmp_path / "nope_1.png"), str(tmp_path / "nope_2.png"))), good]
    summary = batch_beam.fuse_batch_beam(
        stacks, str(tmp_path / "out"), model_spec=str(workspace / "tiny.keras"), output_ext="jpg",
        dead_letter=str(dead_letter), pipeline_options=IN_MEMORY,
    )
    assert summary["dead_letter"] == str(dead_letter)
    assert (tmp_path / "out" / f"{good.name}.jpg").is_file()
    assert not (tmp_path / "out" / batch_beam.DEAD_LETTER_FILE).exists()
    retried = batch_beam.read_manifest(str(dead_letter))
    assert sorted((s.name, s.paths) for s in retried) == sorted((s.name, s.paths) for s in stacks[:2])
    errors = {r["name"]: r["error"] for r in _dead_letters(dead_letter)}
    assert "not found" in errors["missing"]


def test_write_failures_reach_the_dead_letter(workspace, tmp_path):
    stack = next(s for s in find_stacks(str(workspace / "batch")) if s.name == "pair_1")
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{stack.name}.png").mkdir()  # a folder where the output file should go
    summary = batch_beam.fuse_batch_beam(
        [stack], str(out), model_spec=str(workspace / "tiny.keras"), overwrite=True,
        pipeline_options=IN_MEMORY,
    )
    [record] = _dead_letters(out / batch_beam.DEAD_LETTER_FILE)
    assert record["name"] == stack.name and record["stage"] == "write"
    assert summary["failed"] == 1


def test_read_manifest_takes_every_line_form_and_names_the_bad_line(tmp_path):
    manifest = tmp_path / "manifest.txt"
    manifest.write_text(
        "# comment\n\n"
        '["x/one/a.png", "x/one/b.png"]\n'
        '{"name": "two", "paths": ["a.png", "b.png", "c.png"], "error": "ignored"}\n'
        "y/three/a.png, y/three/b.png\n"
    )
    stacks = batch_beam.read_manifest(str(manifest))
    assert [(s.name, len(s.paths)) for s in stacks] == [("one", 2), ("two", 3), ("three", 2)]
    manifest.write_text('["a/p/1.png", "a/p/2.png"]\n["only_one.png"]\n')
    with pytest.raises(ImageError, match="line 2"):
        batch_beam.read_manifest(str(manifest))
    with pytest.raises(ImageError, match="Cannot read the manifest"):
        batch_beam.read_manifest(str(tmp_path / "absent.txt"))


def test_stack_names_must_be_unique():
    stacks = [Stack("same", ("a.png", "b.png")), Stack("same", ("c.png", "d.png"))]
    with pytest.raises(ImageError, match="unique"):
        batch_beam.check_unique_names(stacks)


def test_check_model_spec_keeps_shipped_names_and_makes_paths_absolute(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    assert batch_beam.check_model_spec("tiny.keras") == str(workspace / "tiny.keras")
    with pytest.raises(FileNotFoundError, match="No trained model"):
        batch_beam.check_model_spec("absent.keras")


def _run_script(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--output_dir=out"], "exactly one of --batch_dir and --manifest"),
        (["--batch_dir=b", "--manifest=m", "--output_dir=out"], "exactly one of --batch_dir and --manifest"),
        (["--batch_dir=b"], "--output_dir is required"),
        (["--batch_dir=b", "--output_dir=out", "--refine=sharpest"], "refine"),
        (["--batch_dir=b", "--output_dir=out", "--output_ext=gif"], "output_ext must be one of"),
        (["--batch_dir=b", "--output_dir=out", "--area_ratio=lots"], "area_ratio"),
        (["--batch_dir=absent", "--output_dir=out"], "not a directory"),
        (["--batch_dir=b", "--output_dir=out", "--overwirte"], "Unknown flags: --overwirte"),
        (["--batch_dir=b", "--output_dir=out", "--direct_running_mode=sideways"], "direct_running_mode"),
    ],
)
def test_bad_flags_give_one_line_and_exit_status_2(tmp_path, args, message):
    proc = _run_script(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("Pass --helpfull")]
    assert len(lines) == 1 and "error:" in lines[0] and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_exits_0_and_lists_the_flags(tmp_path):
    proc = _run_script("--helpfull", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "--manifest" in proc.stdout and "--dead_letter" in proc.stdout


@pytest.mark.slow
def test_script_fuses_a_manifest_with_beam_options_passed_through(workspace, local_outputs, tmp_path):
    manifest = tmp_path / "manifest.txt"
    stacks = find_stacks(str(workspace / "batch"))
    manifest.write_text("".join(json.dumps({"name": s.name, "paths": list(s.paths)}) + "\n" for s in stacks))
    out = tmp_path / "out"
    proc = _run_script(f"--manifest={manifest}", f"--output_dir={out}",
                       f"--model={workspace / 'tiny.keras'}", "--runner", "DirectRunner",
                       "--direct_running_mode=in_memory")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Fused {PAIRS}, skipped 0 (output exists), failed 1 of {PAIRS + 1} stacks" in proc.stdout
    _assert_same_images(local_outputs, out)
    assert [r["name"] for r in _dead_letters(out / batch_beam.DEAD_LETTER_FILE)] == ["broken"]


class FolderFileSystem(FileSystem):
    """A stand-in for a remote filesystem: ``mfkerastest://key`` is ``<root>/key`` locally.

    Beam finds filesystems by scheme among FileSystem's subclasses, so defining it
    registers it; it serves the in-process runner only.
    """

    PREFIX = "mfkerastest://"
    root = None

    def __init__(self, pipeline_options=None):
        super().__init__(pipeline_options)
        self._local_fs = LocalFileSystem(pipeline_options)

    @classmethod
    def scheme(cls):
        return "mfkerastest"

    def _local(self, url):
        return os.path.join(self.root, url[len(self.PREFIX):])

    def _locals(self, urls):
        return [self._local(url) for url in urls]

    def join(self, basepath, *paths):
        return posixpath.join(basepath, *paths)

    def split(self, path):
        return posixpath.split(path)

    def has_dirs(self):
        return True

    def mkdirs(self, path):
        self._local_fs.mkdirs(self._local(path))

    def _list(self, dir_or_prefix):
        for folder, _, files in os.walk(self._local(dir_or_prefix)):
            for name in files:
                local = os.path.join(folder, name)
                url = self.PREFIX + os.path.relpath(local, self.root)
                yield FileMetadata(url, os.path.getsize(local), os.path.getmtime(local))

    def create(self, path, *args, **kwargs):
        return self._local_fs.create(self._local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return self._local_fs.open(self._local(path), *args, **kwargs)

    def copy(self, source_file_names, destination_file_names):
        self._local_fs.copy(self._locals(source_file_names), self._locals(destination_file_names))

    def rename(self, source_file_names, destination_file_names):
        self._local_fs.rename(self._locals(source_file_names), self._locals(destination_file_names))

    def exists(self, path):
        return self._local_fs.exists(self._local(path))

    def size(self, path):
        return self._local_fs.size(self._local(path))

    def last_updated(self, path):
        return self._local_fs.last_updated(self._local(path))

    def checksum(self, path):
        return self._local_fs.checksum(self._local(path))

    def metadata(self, path):
        local = self._local_fs.metadata(self._local(path))
        return FileMetadata(path, local.size_in_bytes, local.last_updated_in_seconds)

    def delete(self, paths):
        self._local_fs.delete(self._locals(paths))


@pytest.fixture
def bucket(workspace, tmp_path, monkeypatch):
    """The batch folder and the model on the stand-in remote filesystem."""
    monkeypatch.setattr(FolderFileSystem, "root", str(tmp_path))
    shutil.copytree(workspace / "batch", tmp_path / "bucket" / "batch")
    shutil.copy(workspace / "tiny.keras", tmp_path / "bucket" / "tiny.keras")
    return FolderFileSystem.PREFIX + "bucket"


def test_frames_model_and_outputs_on_a_remote_filesystem(bucket, local_outputs, tmp_path):
    stacks = batch_beam.list_stacks(f"{bucket}/batch")
    assert [s.name for s in stacks] == ["broken"] + [f"pair_{i}" for i in range(1, PAIRS + 1)]
    assert stacks[1].paths == (f"{bucket}/batch/pair_1/a.png", f"{bucket}/batch/pair_1/b.png")
    model_spec = batch_beam.check_model_spec(f"{bucket}/tiny.keras")
    with pytest.raises(FileNotFoundError, match="No model file"):
        batch_beam.check_model_spec(f"{bucket}/absent.keras")

    summary = batch_beam.fuse_batch_beam(stacks, f"{bucket}/out", model_spec=model_spec,
                                         pipeline_options=IN_MEMORY)
    assert (summary["fused"], summary["failed"]) == (PAIRS, 1)
    out = tmp_path / "bucket" / "out"
    _assert_same_images(local_outputs, out)
    assert not list(out.glob(".tmp-*"))
    [record] = _dead_letters(out / batch_beam.DEAD_LETTER_FILE)
    assert record["name"] == "broken"
    assert f"{bucket}/batch/broken/b.png" in record["error"]  # the remote name, not the local copy's

    manifest = tmp_path / "bucket" / "manifest.txt"
    manifest.write_text("\n".join(json.dumps(list(s.paths)) for s in stacks[1:3]) + "\n")
    assert batch_beam.read_manifest(f"{bucket}/manifest.txt") == [
        Stack(s.name, s.paths) for s in stacks[1:3]
    ]
    again = batch_beam.fuse_batch_beam(stacks[1:3], f"{bucket}/out", model_spec=model_spec, overwrite=True,
                                       pipeline_options=IN_MEMORY)
    assert (again["fused"], again["failed"]) == (2, 0)
    assert _dead_letters(out / batch_beam.DEAD_LETTER_FILE) == []
