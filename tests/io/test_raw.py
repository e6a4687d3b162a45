"""Camera RAW development, on small CFA DNG files the tests write with tifffile.

The camera of these files sees linear sRGB scaled by its as-shot neutral, so a
development with the camera's white balance, no brightness changes and the sRGB
curve must give exactly ``srgb(scene)``: the reference values come from the sRGB
formula, not from LibRaw.
"""

import io

import numpy as np
import pytest
import tifffile

from mfkeras.io import images, metadata, raw

from conftest import HEIGHT, PATCHES, WIDTH, _scene, _srgb, _write_dng

ENCODED_ATOL = 0.005 * 65535  # demosaicing of flat patches is exact up to rounding


def _patch_mean(image, top, left):
    return image[top + 4:top + 12, left + 4:left + 12].reshape(-1, 3).mean(axis=0)


def test_dng_develops_to_srgb_with_the_camera_white_balance(tmp_path):
    scene = _scene()
    image = raw.read_raw(_write_dng(tmp_path / "frame.dng", scene))
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint16
    for top, left, colour in PATCHES:
        np.testing.assert_allclose(_patch_mean(image, top, left), _srgb(colour) * 65535, atol=ENCODED_ATOL,
                                   err_msg=f"patch at ({top}, {left}) of colour {colour}")
    # Mid-gray stays mid-gray, and a brighter patch stays as bright as the scene says.
    assert 0.45 < _patch_mean(image, 32, 0).mean() / 65535 < 0.48
    assert _patch_mean(image, 0, 0).min() < 0.96 * 65535


def test_darker_frame_is_developed_darker(tmp_path):
    # No per-frame brightness choice: half the light gives the sRGB value of half the light.
    bright = raw.read_raw(_write_dng(tmp_path / "bright.dng", _scene()))
    dark = raw.read_raw(_write_dng(tmp_path / "dark.dng", _scene() * 0.5))
    np.testing.assert_allclose(_patch_mean(dark, 32, 0), _srgb(0.09) * 65535, atol=ENCODED_ATOL)
    assert _patch_mean(dark, 0, 0).mean() < _patch_mean(bright, 0, 0).mean() - 0.1 * 65535


def test_camera_orientation_is_applied(tmp_path):
    image = raw.read_raw(_write_dng(tmp_path / "portrait.dng", _scene(), orientation=6))
    assert image.shape == (WIDTH, HEIGHT, 3)
    # Rotated 90 degrees clockwise: the bright top-left patch is now at the top right.
    np.testing.assert_allclose(_patch_mean(image, 0, HEIGHT - 16), _srgb(0.9) * 65535, atol=ENCODED_ATOL)


@pytest.mark.parametrize("payload, reason", [
    (b"this is no raw file" * 20, "Unsupported file format"),
    ("truncated", "LibRaw"),
])
def test_unreadable_raw_names_the_file_and_the_reason(tmp_path, payload, reason):
    path = tmp_path / "broken.nef"
    if payload == "truncated":
        whole = _write_dng(tmp_path / "whole.dng", _scene())
        payload = open(whole, "rb").read()[:700]
    path.write_bytes(payload)
    with pytest.raises(images.ImageError, match=f"broken.nef.*{reason}"):
        raw.read_raw(str(path))


def test_missing_raw_file(tmp_path):
    with pytest.raises(images.ImageError, match="not found"):
        raw.read_raw(str(tmp_path / "missing.cr2"))


def test_raw_extensions():
    assert raw.is_raw_path("a/B.NEF") and raw.is_raw_path("x.dng") and not raw.is_raw_path("x.tif")
    assert not set(raw.RAW_EXTENSIONS) & set(images.IMAGE_EXTENSIONS)
    assert all(extension == extension.lower() and extension.startswith(".") for extension in raw.RAW_EXTENSIONS)


def test_raw_frame_metadata_names_the_camera_but_keeps_dng_tags_out(tmp_path):
    reference = metadata.read_metadata(_write_dng(tmp_path / "frame.dng", _scene()))
    encoded = images.encode_image("fused.tif", np.zeros((8, 8, 3), np.uint16))
    fused = metadata.embed_metadata(encoded, ".tif", reference, "mfkeras test")
    with tifffile.TiffFile(io.BytesIO(fused)) as tiff:
        page = tiff.pages[0]
        assert not tiff.is_dng
        assert page.tags["Make"].value == "mfkeras" and page.tags["Model"].value == "Test CFA"
        assert page.tags["UniqueCameraModel"].value == "mfkeras Test CFA"
        assert page.photometric == tifffile.PHOTOMETRIC.RGB and page.shape == (8, 8, 3)
        for dropped in ("CFAPattern", "CFARepeatPatternDim", "BlackLevel", "WhiteLevel", "ColorMatrix1",
                        "AsShotNeutral"):
            assert dropped not in page.tags
