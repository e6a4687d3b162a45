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

XYZ_TO_LINEAR_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
NEUTRAL = (0.5, 1.0, 0.8)  # the camera's response to white: red at half, blue at 0.8
BLACK, WHITE = 256, 4095
HEIGHT, WIDTH = 48, 64
# (top, left, linear sRGB) of 16x16 patches on a mid-gray (0.18) field.
PATCHES = [
    (0, 0, (0.9, 0.9, 0.9)),  # bright: above LibRaw's default adjust_maximum threshold (0.75)
    (0, 16, (0.02, 0.02, 0.02)),  # dark
    (16, 0, (0.5, 0.02, 0.02)),  # red
    (16, 16, (0.02, 0.5, 0.02)),  # green
    (16, 32, (0.02, 0.02, 0.5)),  # blue
    (32, 0, (0.18, 0.18, 0.18)),  # mid-gray
]
ENCODED_ATOL = 0.005 * 65535  # demosaicing of flat patches is exact up to rounding


def _srgb(linear):
    linear = np.asarray(linear, float)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def _scene():
    scene = np.full((HEIGHT, WIDTH, 3), 0.18)
    for top, left, colour in PATCHES:
        scene[top:top + 16, left:left + 16] = colour
    return scene


def _write_dng(path, scene, orientation=1):
    camera = scene * NEUTRAL
    mosaic = np.empty(scene.shape[:2])  # RGGB
    mosaic[0::2, 0::2] = camera[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = camera[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = camera[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = camera[1::2, 1::2, 2]
    data = np.round(BLACK + mosaic * (WHITE - BLACK)).astype(np.uint16)

    def rationals(values):
        return [part for value in np.ravel(values) for part in (int(round(value * 10000)), 10000)]

    tifffile.imwrite(path, data, photometric="cfa", subfiletype=0, metadata=None, extratags=[
        (271, "s", 0, "mfkeras", True), (272, "s", 0, "Test CFA", True), (274, "H", 1, orientation, True),
        (33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True),  # CFA pattern RGGB
        (50706, "B", 4, (1, 4, 0, 0), True), (50708, "s", 0, "mfkeras Test CFA", True),  # DNG version, model
        (50714, "H", 1, BLACK, True), (50717, "H", 1, WHITE, True),
        (50721, "2i", 9, rationals(XYZ_TO_LINEAR_SRGB), True), (50778, "H", 1, 21, True),  # ColorMatrix1 at D65
        (50728, "2I", 3, rationals(NEUTRAL), True),  # AsShotNeutral
    ])
    return str(path)


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
