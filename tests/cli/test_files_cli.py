"""Photographers' files through `mfkeras-fuse`: metadata kept or stripped, RAW stacks, orientation."""

import io
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import PIL.ImageCms
import pytest

from mfkeras.io import images, metadata
from mfkeras.network.config import POOL, ModelConfig
from mfkeras.network.model import build_patch_model

from conftest import _scene, _write_dng, randomize_weights

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "fuse.py"
SRGB = PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    randomize_weights(build_patch_model(ModelConfig("tiny", (4, POOL, 8), (8,))), seed=3).save(path)
    return str(path)


def _frames(seed=0, shape=(48, 64, 3)):
    rng = np.random.default_rng(seed)
    sharp = (cv2.GaussianBlur(rng.random(shape), (0, 0), 1.0) * 255).astype(np.uint8)
    return sharp, cv2.GaussianBlur(sharp, (0, 0), 2.0)


def _camera_jpeg(path, rgb, icc=SRGB, make="Nikon"):
    image = PIL.Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x010F], exif[0x0110], exif[0x0112] = make, "D850", 1
    exif.get_ifd(0x8769)[0x9003] = "2026:12:01 10:00:00"  # DateTimeOriginal
    image.save(path, exif=exif.tobytes(), icc_profile=icc, quality=95)
    return str(path)


def _run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("extension", [".jpg", ".png", ".tif"])
def test_fused_file_carries_the_reference_frames_metadata(tmp_path, model_path, extension):
    a, b = _frames()
    paths = [_camera_jpeg(tmp_path / "a.jpg", a), _camera_jpeg(tmp_path / "b.jpg", b, make="Other")]
    out = tmp_path / f"fused{extension}"
    proc = _run(*paths, "-o", str(out), f"--model={model_path}")
    assert proc.returncode == 0, proc.stderr
    carried = metadata.read_metadata(str(out))
    assert carried.icc == SRGB
    with PIL.Image.open(out) as fused:
        exif = fused.getexif()
        assert (exif[0x010F], exif[0x0110], exif[0x0112]) == ("Nikon", "D850", 1)  # the first frame's
        assert exif[0x0131].startswith("mfkeras ")
        assert exif.get_ifd(0x8769)[0x9003] == "2026:12:01 10:00:00"
    stripped = tmp_path / f"stripped{extension}"
    proc = _run(*paths, "-o", str(stripped), f"--model={model_path}", "--strip_metadata")
    assert proc.returncode == 0, proc.stderr
    bare = metadata.read_metadata(str(stripped))
    assert bare.icc is None and bare.xmp is None
    with PIL.Image.open(stripped) as image:
        assert 0x010F not in image.getexif() and 0x8769 not in image.getexif()  # no camera, no EXIF IFD
    np.testing.assert_array_equal(images.read_image(str(stripped)), images.read_image(str(out)))


def test_frames_with_another_icc_profile_are_named_in_a_warning(tmp_path, model_path):
    a, b = _frames(1)
    other = PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile("LAB")).tobytes()
    paths = [_camera_jpeg(tmp_path / "a.jpg", a), _camera_jpeg(tmp_path / "b.jpg", b, icc=other)]
    proc = _run(*paths, "-o", str(tmp_path / "f.jpg"), f"--model={model_path}")
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "b.jpg carry an ICC profile other than" in warning[0]


def test_corrupt_exif_fuses_anyway_with_a_warning(tmp_path, model_path):
    a, b = _frames(2)
    good = _camera_jpeg(tmp_path / "b.jpg", b)
    buffer = io.BytesIO()
    PIL.Image.fromarray(a).save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    # An APP1 "Exif" segment whose TIFF structure is garbage, right after SOI.
    body = b"Exif\0\0" + b"II*\0" + b"\xff" * 40
    segment = b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body
    (tmp_path / "a.jpg").write_bytes(data[:2] + segment + data[2:])
    out = tmp_path / "f.png"
    proc = _run(str(tmp_path / "a.jpg"), good, "-o", str(out), f"--model={model_path}")
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "warning" in proc.stderr and "a.jpg" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_raw_stack_fuses_to_sixteen_bit_tiff(tmp_path, model_path):
    scene = _scene()
    sharp = _write_dng(tmp_path / "frame_1.dng", scene)
    blurred = _write_dng(tmp_path / "frame_2.dng", cv2.GaussianBlur(scene, (0, 0), 2.0))
    out = tmp_path / "fused.tif"
    proc = _run(str(tmp_path), "-o", str(out), f"--model={model_path}")
    assert proc.returncode == 0, proc.stderr
    fused = images.read_image(str(out))
    developed = [images.read_image(p) for p in (sharp, blurred)]
    assert fused.dtype == np.uint16 and fused.shape == developed[0].shape
    low, high = np.minimum(*developed).astype(int), np.maximum(*developed).astype(int)
    assert np.all(fused >= low - 1) and np.all(fused <= high + 1)
    with PIL.Image.open(out) as tiff:
        assert tiff.getexif()[0x0110] == "Test CFA"  # the camera model the DNG names
    unreadable = tmp_path / "broken.nef"
    unreadable.write_bytes(b"not a raw file" * 100)
    proc = _run(str(unreadable), sharp, "-o", str(tmp_path / "never.tif"), f"--model={model_path}")
    assert proc.returncode == 2 and "Not a readable camera RAW file" in proc.stderr
    assert not (tmp_path / "never.tif").exists() and unreadable.stat().st_size == 1400


def test_tiff_orientation_is_applied_once(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:5, :5] = 255
    for extension in (".jpg", ".tif"):
        image = PIL.Image.fromarray(rgb)
        exif = image.getexif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to display
        image.save(tmp_path / f"o6{extension}", exif=exif.tobytes(), quality=95)
        shown = images.read_image(str(tmp_path / f"o6{extension}"))
        assert shown.shape == (30, 20, 3), extension
        assert shown[:5, -5:].mean() > 200 and shown[-5:, :5].mean() < 50, extension


def test_sixteen_bit_tiff_in_gives_sixteen_bit_tiff_out(tmp_path, model_path):
    rng = np.random.default_rng(7)
    sharp = (cv2.GaussianBlur(rng.random((48, 64, 3)), (0, 0), 1.0) * 65535).astype(np.uint16)
    frames = [sharp, cv2.GaussianBlur(sharp, (0, 0), 2.0)]
    paths = []
    for index, frame in enumerate(frames):
        paths.append(str(tmp_path / f"deep_{index}.tif"))
        images.write_image(paths[-1], frame)
    out = tmp_path / "fused.tif"
    proc = _run(*paths, "-o", str(out), f"--model={model_path}")
    assert proc.returncode == 0, proc.stderr
    fused = images.read_image(str(out))
    assert fused.dtype == np.uint16 and fused.shape == (48, 64, 3)
    assert np.all(fused.astype(int) >= np.minimum(*frames).astype(int) - 1)
    assert np.all(fused.astype(int) <= np.maximum(*frames).astype(int) + 1)
    assert np.abs(fused.astype(int) - sharp).mean() < np.abs(frames[1].astype(int) - sharp).mean()


def test_truncated_tiff_is_one_line_and_nothing_is_written(tmp_path, model_path):
    a, b = _frames(3)
    good = tmp_path / "a.tif"
    images.write_image(str(good), a)
    payload = images.encode_image("b.tif", b)
    cut = tmp_path / "b.tif"
    cut.write_bytes(payload[: len(payload) // 2])
    out = tmp_path / "never.tif"
    proc = _run(str(good), str(cut), "-o", str(out), f"--model={model_path}")
    assert proc.returncode == 2 and "truncated" in proc.stderr and "b.tif" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
    assert cut.stat().st_size == len(payload) // 2
