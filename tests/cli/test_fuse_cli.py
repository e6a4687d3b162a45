"""The `mfkeras-fuse` script, run as users run it (a subprocess)."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfkeras.network.config import POOL, ModelConfig
from mfkeras.network.model import build_patch_model

from conftest import randomize_weights

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "fuse.py"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model = randomize_weights(build_patch_model(ModelConfig("tiny", (4, POOL, 8), (8,))), seed=3)
    model.save(root / "tiny.keras")
    rng = np.random.default_rng(0)
    base = (cv2.GaussianBlur(rng.random((48, 64, 3)), (0, 0), 1.0) * 255).astype(np.uint8)
    cv2.imwrite(str(root / "a.png"), base)
    cv2.imwrite(str(root / "b.png"), cv2.GaussianBlur(base, (0, 0), 2.0))
    cv2.imwrite(str(root / "small.png"), base[:15, :30])
    cv2.imwrite(str(root / "gray.png"), base[..., 0])
    cv2.imwrite(str(root / "other_size.png"), base[:40])
    return root


def _run(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_fuses_and_writes_maps_and_figure(workspace):
    out = workspace / "fused.png"
    maps = workspace / "maps"
    maps.mkdir()
    proc = _run(
        f"--inputs={workspace / 'a.png'},{workspace / 'b.png'}",
        f"--output={out}",
        f"--model={workspace / 'tiny.keras'}",
        f"--save_maps={maps}",
        f"--plot={workspace / 'fig.png'}",
    )
    assert proc.returncode == 0, proc.stderr
    fused = cv2.imread(str(out))
    assert fused.shape == (48, 64, 3)
    a, b = cv2.imread(str(workspace / "a.png")), cv2.imread(str(workspace / "b.png"))
    # Every output pixel lies between the sources (up to rounding of the blend weights).
    assert np.all(fused.astype(int) >= np.minimum(a, b).astype(int) - 1)
    assert np.all(fused.astype(int) <= np.maximum(a, b).astype(int) + 1)
    assert sorted(p.name for p in maps.iterdir()) == sorted(
        f"{n}.png"
        for n in ("score_map", "focus_map", "initial_decision", "decision", "final_decision", "source_index")
    )
    assert cv2.imread(str(workspace / "fig.png")) is not None


@pytest.mark.parametrize(
    "inputs, output, message",
    [
        ("a.png,missing.png", "x1.png", "not found"),
        ("a.png", "x2.png", "at least two"),
        ("a.png,small.png", "x3.png", "differ|at least 16"),
        ("a.png,gray.png", "x4.png", "mix grayscale and colour"),
        ("a.png,other_size.png", "x5.png", r"\(48, 64, 3\).*\(40, 64, 3\)"),
        ("a.png,b.png", "a.png", "also an input"),
        ("a.png,b.png", "nodir/x6.png", "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_status_2(workspace, inputs, output, message):
    paths = ",".join(str(workspace / p) for p in inputs.split(","))
    before = sorted(os.listdir(workspace))
    proc = _run(f"--inputs={paths}", f"--output={workspace / output}", f"--model={workspace / 'tiny.keras'}")
    assert proc.returncode == 2
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("mfkeras-fuse: error:")]
    assert len(error_lines) == 1 and "Traceback" not in proc.stderr
    # Input errors are found before TensorFlow loads, so nothing else is printed.
    assert proc.stderr.strip() == error_lines[0]
    import re

    assert re.search(message, error_lines[0]), error_lines[0]
    assert sorted(os.listdir(workspace)) == before


def test_existing_output_needs_overwrite(workspace):
    out = workspace / "exists.png"
    out.write_bytes(b"keep me")
    args = [f"--inputs={workspace / 'a.png'},{workspace / 'b.png'}", f"--output={out}", f"--model={workspace / 'tiny.keras'}"]
    proc = _run(*args)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert out.read_bytes() == b"keep me"
    assert _run(*args, "--overwrite").returncode == 0
    assert cv2.imread(str(out)).shape == (48, 64, 3)


def test_missing_model_says_how_to_get_one(workspace):
    proc = _run(
        f"--inputs={workspace / 'a.png'},{workspace / 'b.png'}",
        f"--output={workspace / 'never.png'}",
        f"--model={workspace / 'absent.keras'}",
    )
    assert proc.returncode == 2
    assert "--liu_mat" in proc.stderr and "mfkeras-train" in proc.stderr
    assert not (workspace / "never.png").exists()


def _write_pair(folder, stem, image_a, image_b):
    cv2.imwrite(str(folder / f"{stem}_a.png"), image_a)
    cv2.imwrite(str(folder / f"{stem}_b.png"), image_b)
    return str(folder / f"{stem}_a.png"), str(folder / f"{stem}_b.png")


def test_sixteen_bit_in_gives_sixteen_bit_out(workspace):
    rng = np.random.default_rng(4)
    base = (cv2.GaussianBlur(rng.random((40, 40)), (0, 0), 1.0) * 65535).astype(np.uint16)
    a, b = _write_pair(workspace, "deep", base, cv2.GaussianBlur(base, (0, 0), 2.0))
    out = workspace / "deep_fused.tif"
    proc = _run(f"--inputs={a},{b}", f"--output={out}", f"--model={workspace / 'tiny.keras'}")
    assert proc.returncode == 0, proc.stderr
    fused = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert fused.dtype == np.uint16 and fused.shape == (40, 40)
    refused = _run(f"--inputs={a},{b}", f"--output={workspace / 'deep.jpg'}", f"--model={workspace / 'tiny.keras'}")
    assert refused.returncode == 2 and "16-bit" in refused.stderr
    assert not (workspace / "deep.jpg").exists()


def test_stack_writes_a_colour_source_index_map(workspace):
    rng = np.random.default_rng(5)
    base = (cv2.GaussianBlur(rng.random((48, 48, 3)), (0, 0), 1.0) * 255).astype(np.uint8)
    paths = []
    for index in range(3):
        path = workspace / f"stack_{index}.png"
        cv2.imwrite(str(path), cv2.GaussianBlur(base, (0, 0), 0.5 + index))
        paths.append(str(path))
    maps = workspace / "stack_maps"
    maps.mkdir()
    proc = _run(
        f"--inputs={workspace / 'stack_*.png'}",
        f"--output={workspace / 'stack_fused.png'}",
        f"--model={workspace / 'tiny.keras'}",
        f"--save_maps={maps}",
        f"--plot={workspace / 'stack_fig.png'}",
    )
    assert proc.returncode == 0, proc.stderr
    index_map = cv2.imread(str(maps / "source_index.png"))
    assert index_map.shape == (48, 48, 3)
    assert sorted(p.name for p in maps.glob("focus_map_*.png")) == [f"focus_map_0{i}.png" for i in range(3)]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: (d / "zero.png").write_bytes(b""), "empty"),
        (lambda d: (d / "zero.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage"), "Not a readable image"),
        (lambda d: cv2.imwrite(str(d / "zero.png"), np.zeros((1, 1), np.uint8)), "at least 16"),
    ],
)
def test_unusable_second_input(workspace, setup, message):
    setup(workspace)
    proc = _run(
        f"--inputs={workspace / 'gray.png'},{workspace / 'zero.png'}",
        f"--output={workspace / 'never2.png'}",
        f"--model={workspace / 'tiny.keras'}",
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (workspace / "never2.png").exists()


@pytest.mark.parametrize(
    "inputs, message", [("{d}/no_images", "No images in the folder"), ("{d}/nothing_*.png", "No file matches")]
)
def test_folder_without_images_and_empty_glob(workspace, inputs, message):
    (workspace / "no_images").mkdir(exist_ok=True)
    (workspace / "no_images" / "notes.txt").write_text("no images here")
    spec = inputs.format(d=workspace)
    proc = _run(f"--inputs={spec},{workspace / 'a.png'}", f"--output={workspace / 'never3.png'}",
                f"--model={workspace / 'tiny.keras'}")
    assert proc.returncode == 2 and message in proc.stderr
    assert not (workspace / "never3.png").exists()


def test_align_registers_shifted_frames(workspace):
    rng = np.random.default_rng(6)
    base = (cv2.GaussianBlur(rng.random((120, 140)), (0, 0), 2.0) * 255).astype(np.uint8)
    shift = np.float32([[1, 0, 3], [0, 1, -2]])
    moved = cv2.warpAffine(cv2.GaussianBlur(base, (0, 0), 1.5), shift, (140, 120))
    a, b = _write_pair(workspace, "shifted", base, moved)
    out = workspace / "aligned.png"
    proc = _run(f"--inputs={a},{b}", f"--output={out}", f"--model={workspace / 'tiny.keras'}",
                "--align", "--reference_frame=0")
    assert proc.returncode == 0, proc.stderr
    fused = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    # The border not covered by the shifted frame is cropped.
    assert fused.shape[0] <= 118 and fused.shape[1] <= 137


def test_demo_runs_with_the_shipped_default_model(tmp_path):
    from mfkeras.network import zoo

    if zoo.DEFAULT_MODEL not in zoo.available_models():
        pytest.fail(f"the default model {zoo.DEFAULT_MODEL!r} is not shipped in saved_models/")
    proc = _run("--demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "demo_output"
    fused = cv2.imread(str(out / "fused.png"))
    a = cv2.imread(str(SCRIPT.parents[1] / "demo" / "demo_A.jpg"))
    b = cv2.imread(str(SCRIPT.parents[1] / "demo" / "demo_B.jpg"))
    assert fused.shape == a.shape
    # The result takes from both sources: it equals neither.
    assert np.abs(fused.astype(int) - a).mean() > 0.5 and np.abs(fused.astype(int) - b).mean() > 0.5
    for name in ("figure.png", "decision.png", "focus_map.png", "score_map.png"):
        assert (out / name).is_file()


def test_mixed_precision_and_xla_flags_keep_the_result(tmp_path):
    """--inference_dtype=bfloat16 --jit_compile fuses the demo pair like float32 does."""
    demo = SCRIPT.parents[1] / "demo"
    inputs = f"--inputs={demo / 'demo_A.jpg'},{demo / 'demo_B.jpg'}"
    outputs = {}
    for name, flags in {"float32": [], "bfloat16_xla": ["--inference_dtype=bfloat16", "--jit_compile"]}.items():
        maps = tmp_path / name
        maps.mkdir()
        proc = _run(inputs, f"--output={tmp_path / name}.png", f"--save_maps={maps}", *flags)
        assert proc.returncode == 0, proc.stderr
        outputs[name] = (cv2.imread(str(tmp_path / f"{name}.png")), cv2.imread(str(maps / "decision.png"), 0))
    (fused, decision), (fused_mixed, decision_mixed) = outputs["float32"], outputs["bfloat16_xla"]
    assert np.mean(decision == decision_mixed) >= 0.995
    assert np.abs(fused.astype(int) - fused_mixed).mean() <= 1.0


def test_bad_flag_values_exit_2_without_traceback(workspace):
    for flag, message in [
        ("--inference_dtype=int8", "inference_dtype"),
        ("--stack_scoring=round_robin", "stack_scoring"),
        ("--no_such_flag", "no_such_flag"),
    ]:
        proc = _run(f"--inputs={workspace / 'a.png'},{workspace / 'b.png'}", f"--output={workspace / 'y.png'}", flag)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and message in proc.stderr.splitlines()[0]
        assert proc.stderr.splitlines()[0].startswith("fuse.py: error:")


def test_positional_inputs_and_short_output_match_inputs_flag(workspace):
    model = f"--model={workspace / 'tiny.keras'}"
    by_flag, positional = workspace / "by_flag.png", workspace / "positional.png"
    proc = _run(f"--inputs={workspace / 'a.png'},{workspace / 'b.png'}", f"--output={by_flag}", model)
    assert proc.returncode == 0, proc.stderr
    proc = _run(str(workspace / "a.png"), str(workspace / "b.png"), "-o", str(positional), model)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(cv2.imread(str(positional)), cv2.imread(str(by_flag)))
    both = _run(str(workspace / "a.png"), f"--inputs={workspace / 'b.png'}", "-o", str(workspace / "x.png"), model)
    assert both.returncode == 2 and "not both" in both.stderr


@pytest.mark.parametrize("backend", ["keras", "litert"])
def test_terminal_shows_one_summary_line_and_no_native_logs(workspace, backend):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    a, b = (str(p) for p in _zoo_demo_pair())
    args = [sys.executable, str(SCRIPT), a, b, "-o", str(workspace / f"quiet_{backend}.png"), f"--backend={backend}"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    assert proc.stdout.count("\n") == 1 and f"({backend})" in proc.stdout
    quiet = subprocess.run([*args, "--overwrite", "--quiet"], capture_output=True, text=True, env=env)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    verbose = subprocess.run([*args, "--overwrite", "--verbose"], capture_output=True, text=True, env=env)
    assert verbose.returncode == 0
    if backend == "keras":
        assert "I0000" in verbose.stderr or "oneDNN" in verbose.stderr or "cuda" in verbose.stderr.lower()


def _zoo_demo_pair():
    from mfkeras.network import zoo

    return zoo.demo_pair()


def test_align_only_and_a_saved_registration_reused(workspace, tmp_path):
    rng = np.random.default_rng(6)
    texture = cv2.GaussianBlur(rng.random((120, 140)), (0, 0), 2.0)
    base = np.round(255 * (texture - texture.min()) / np.ptp(texture)).astype(np.uint8)
    shift = np.float32([[1, 0, 3], [0, 1, -2]])
    moved = cv2.warpAffine(cv2.GaussianBlur(base, (0, 0), 1.5), shift, (140, 120))
    a, b = _write_pair(tmp_path, "rig", base, moved)
    model = f"--model={workspace / 'tiny.keras'}"
    frames = tmp_path / "aligned"
    frames.mkdir()
    saved = tmp_path / "rig.json"
    proc = _run(str(a), str(b), f"--align_only={frames}", f"--save_alignment={saved}", "--reference_frame=0")
    assert proc.returncode == 0, proc.stderr
    written = sorted(frames.iterdir())
    assert [p.name for p in written] == [f"{Path(a).stem}.png", f"{Path(b).stem}.png"]
    first, second = (cv2.imread(str(p)) for p in written)
    assert first.shape == second.shape and first.shape[0] <= 118 and first.shape[1] <= 137
    # Registered, the second frame lines up with the first (up to its extra blur) far better
    # than the unregistered frame does over the same area.
    top, left = 3, 0
    rows, cols = first.shape[:2]
    unregistered = cv2.imread(str(b))[top : top + rows, left : left + cols]
    blurred_first = cv2.GaussianBlur(first, (0, 0), 1.5).astype(int)
    assert np.abs(blurred_first - second).mean() < 0.5 * np.abs(blurred_first - unregistered).mean()
    # The same registration, loaded, gives the same fused image as estimating it again.
    by_estimate, by_loaded = tmp_path / "estimated.png", tmp_path / "loaded.png"
    assert _run(str(a), str(b), "-o", str(by_estimate), "--align", "--reference_frame=0", model).returncode == 0
    proc = _run(str(a), str(b), "-o", str(by_loaded), f"--load_alignment={saved}", model)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(cv2.imread(str(by_loaded)), cv2.imread(str(by_estimate)))
    # A registration for other frames is refused in one line.
    small = _write_pair(tmp_path, "other", base[:100], moved[:100])
    proc = _run(*map(str, small), "-o", str(tmp_path / "never.png"), f"--load_alignment={saved}", model)
    assert proc.returncode == 2 and "saved alignment is for 2 frames of 120x140" in proc.stderr
    assert not (tmp_path / "never.png").exists()


def test_oversized_frame_is_refused_in_one_line(workspace, tmp_path):
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    out = tmp_path / "never.png"
    proc = _run(str(workspace / "a.png"), str(bomb), "-o", str(out), f"--model={workspace / 'tiny.keras'}")
    assert proc.returncode == 2 and "over the limit of 250 MP (raise --max_megapixels" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
    small = _run(str(workspace / "a.png"), str(workspace / "b.png"), "-o", str(out), "--max_megapixels=0.001",
                 f"--model={workspace / 'tiny.keras'}")
    assert small.returncode == 2 and "64x48 (0.003072 MP), over the limit of 0.001 MP" in small.stderr and not out.exists()


FULL_DISK = """
import errno, os, sys
def no_space(descriptor):
    raise OSError(errno.ENOSPC, "No space left on device")
os.fsync = no_space
sys.argv = ["mfkeras-fuse", *sys.argv[1:]]
from mfkeras.cli import fuse
fuse.run()
"""


def test_full_disk_is_one_line_and_leaves_nothing(workspace, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(workspace / "a.png"), str(workspace / "b.png"),
         "-o", str(out_dir / "fused.png"), f"--model={workspace / 'tiny.keras'}"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 2 and "No space left on device" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert list(out_dir.iterdir()) == []
    assert (workspace / "a.png").stat().st_size > 0 and (workspace / "b.png").stat().st_size > 0


def test_int8_litert_files_are_chosen_by_flag_and_close_to_float32(tmp_path):
    a, b = (str(p) for p in _zoo_demo_pair())
    float32, int8 = tmp_path / "f32.png", tmp_path / "i8.png"
    # The patch classifier ships int8 files; the default (the decision network) does not.
    model = "--model=liu2017_single_fc"
    assert _run(a, b, "-o", str(float32), model).returncode == 0
    proc = _run(a, b, "-o", str(int8), "--litert_quantization=dynamic_int8", model)
    assert proc.returncode == 0, proc.stderr
    assert "(litert dynamic_int8)" in proc.stdout
    assert np.abs(cv2.imread(str(int8)).astype(int) - cv2.imread(str(float32))).mean() <= 0.5
    missing = _run(a, b, "-o", str(tmp_path / "m.png"), "--litert_quantization=dynamic_int8")
    assert missing.returncode == 2 and "no dynamic_int8 LiteRT files" in missing.stderr
    refused = _run(a, b, "-o", str(tmp_path / "x.png"), "--litert_quantization=dynamic_int8", "--backend=keras")
    assert refused.returncode == 2 and "for the LiteRT backend" in refused.stderr
