"""EXIF, ICC and XMP of a reference frame, read and carried over to an encoded image.

The source files are written by independent writers (Pillow for 8-bit JPEG and PNG,
OpenCV plus hand-made chunks for 16-bit PNG, a hand-made baseline TIFF with EXIF and
GPS directories), and the results are checked with Pillow's EXIF parser.
"""

import io
import struct
import xml.etree.ElementTree as ElementTree
import zlib

import cv2
import numpy as np
import PIL.Image
import PIL.PngImagePlugin
import pytest
from PIL import ImageCms

from mfkeras.io import images, metadata

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MAKE, MODEL, TAKEN = "Canon", "EOS R5", "2024:05:06 07:08:09"
LATITUDE, LONGITUDE = (48.0, 51.0, 24.0), (2.0, 21.0, 3.0)
SOURCE_SIZE = (640, 480)  # what the source's PixelX/YDimension claim
XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
    'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmp:Rating="4" tiff:Orientation="6">'
    "<dc:creator><rdf:Seq><rdf:li>Ansel Tester</rdf:li></rdf:Seq></dc:creator>"
    '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
ORIENTATION, SOFTWARE, PIXEL_X, PIXEL_Y = 0x0112, 0x0131, 0xA002, 0xA003
SOFTWARE_NAME = "mfkeras 9.9.9"
# (extension, dtype) of every output the fusion CLI writes with metadata.
KINDS = [(".jpg", np.uint8), (".png", np.uint8), (".png", np.uint16), (".tif", np.uint8), (".tif", np.uint16)]
KIND_IDS = [f"{ext[1:]}{np.dtype(dtype).itemsize * 8}" for ext, dtype in KINDS]


def _rgb(dtype, seed, shape=(24, 36, 3)):
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top, shape, dtype=np.int64).astype(dtype)


def _pillow_exif() -> PIL.Image.Exif:
    exif = PIL.Image.Exif()
    exif[0x010F], exif[0x0110], exif[ORIENTATION] = MAKE, MODEL, 6
    photo = exif.get_ifd(EXIF_IFD)
    photo[0x9003] = TAKEN  # DateTimeOriginal
    photo[PIXEL_X], photo[PIXEL_Y] = SOURCE_SIZE
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2], gps[3], gps[4] = "N", LATITUDE, "E", LONGITUDE
    return exif


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _write_png16(path, rgb):
    encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    header_end = 8 + 25  # signature, IHDR
    chunks = (
        _png_chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(ICC))
        + _png_chunk(b"eXIf", _pillow_exif().tobytes()[6:])  # without the "Exif\0\0" of JPEG
        + _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + XMP.encode())
    )
    path.write_bytes(encoded[:header_end] + chunks + encoded[header_end:])


def _ifd(entries, offset: int) -> bytes:
    """A little-endian TIFF directory placed at ``offset``; entries are (tag, type, count, payload)."""
    data_start = offset + 2 + 12 * len(entries) + 4
    table, data = b"", b""
    for tag, kind, count, payload in sorted(entries):
        if len(payload) <= 4:
            table += struct.pack("<HHI", tag, kind, count) + payload.ljust(4, b"\x00")
        else:
            table += struct.pack("<HHII", tag, kind, count, data_start + len(data))
            data += payload + b"\x00" * (len(payload) % 2)
    return struct.pack("<H", len(entries)) + table + b"\x00\x00\x00\x00" + data


def _rationals(values):
    return b"".join(struct.pack("<II", int(v), 1) for v in values)


def _write_tiff(path, rgb):
    """A baseline little-endian RGB TIFF, one uncompressed strip, with EXIF and GPS directories."""
    height, width, _ = rgb.shape
    bits = rgb.dtype.itemsize * 8
    pixels = rgb.astype(rgb.dtype.newbyteorder("<")).tobytes()

    def main_directory(strip, photo, gps):
        long = lambda value: struct.pack("<I", value)  # noqa: E731
        return _ifd([
            (256, 4, 1, long(width)), (257, 4, 1, long(height)), (258, 3, 3, struct.pack("<3H", bits, bits, bits)),
            (259, 3, 1, b"\x01\x00"), (262, 3, 1, b"\x02\x00"), (271, 2, len(MAKE) + 1, MAKE.encode() + b"\x00"),
            (272, 2, len(MODEL) + 1, MODEL.encode() + b"\x00"), (273, 4, 1, long(strip)),
            (ORIENTATION, 3, 1, b"\x06\x00"), (277, 3, 1, b"\x03\x00"), (278, 4, 1, long(height)),
            (279, 4, 1, long(len(pixels))), (284, 3, 1, b"\x01\x00"), (700, 1, len(XMP.encode()), XMP.encode()),
            (EXIF_IFD, 4, 1, long(photo)), (GPS_IFD, 4, 1, long(gps)), (34675, 7, len(ICC), ICC),
        ], 8)

    strip = 8 + len(main_directory(0, 0, 0))
    photo_at = strip + len(pixels)
    photo = _ifd([(0x9003, 2, 20, TAKEN.encode() + b"\x00"), (PIXEL_X, 4, 1, struct.pack("<I", SOURCE_SIZE[0])),
                  (PIXEL_Y, 4, 1, struct.pack("<I", SOURCE_SIZE[1]))], photo_at)
    gps = _ifd([(1, 2, 2, b"N\x00"), (2, 5, 3, _rationals(LATITUDE)), (3, 2, 2, b"E\x00"),
                (4, 5, 3, _rationals(LONGITUDE))], photo_at + len(photo))
    header = b"II*\x00" + struct.pack("<I", 8)
    path.write_bytes(header + main_directory(strip, photo_at, photo_at + len(photo)) + pixels + photo + gps)


def _write_source(path, rgb):
    extension = path.suffix
    if extension == ".tif":
        _write_tiff(path, rgb)
    elif rgb.dtype == np.uint16:
        _write_png16(path, rgb)
    elif extension == ".png":
        info = PIL.PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP)
        PIL.Image.fromarray(rgb).save(path, exif=_pillow_exif().tobytes(), icc_profile=ICC, pnginfo=info)
    else:
        PIL.Image.fromarray(rgb).save(path, exif=_pillow_exif().tobytes(), icc_profile=ICC, xmp=XMP.encode(),
                                      quality=95)
    return str(path)


def _exif_tags(block: bytes):
    exif = PIL.Image.Exif()
    exif.load(block)
    return dict(exif), dict(exif.get_ifd(EXIF_IFD)), dict(exif.get_ifd(GPS_IFD))


def _xmp_properties(packet: str) -> dict:
    """Simple XMP properties by local name, from attributes and from element text."""
    found = {}
    for element in ElementTree.fromstring(packet.encode().split(b"?>", 1)[1].rsplit(b"<?xpacket", 1)[0]).iter():
        for name, value in element.attrib.items():
            found[name.rsplit("}", 1)[-1]] = value
        if element.text and element.text.strip():
            found.setdefault(element.tag.rsplit("}", 1)[-1], element.text.strip())
    return found


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.fixture(params=KINDS, ids=KIND_IDS)
def source(request, tmp_path):
    extension, dtype = request.param
    return _write_source(tmp_path / f"reference{extension}", _rgb(dtype, seed=1)), extension, dtype


def test_read_metadata_finds_exif_icc_and_xmp(source):
    path, _, _ = source
    found = metadata.read_metadata(path)
    main, photo, gps = _exif_tags(found.exif)
    assert (main[0x010F], main[0x0110], main[ORIENTATION]) == (MAKE, MODEL, 6)
    assert photo[0x9003] == TAKEN
    assert (gps[1], gps[3]) == ("N", "E")
    assert tuple(map(float, gps[2])) == LATITUDE and tuple(map(float, gps[4])) == LONGITUDE
    assert found.icc == ICC
    properties = _xmp_properties(found.xmp)
    assert properties["Rating"] == "4" and properties["li"] == "Ansel Tester"


def test_embed_metadata_carries_everything_and_keeps_the_pixels(source, tmp_path):
    path, extension, dtype = source
    reference = metadata.read_metadata(path)
    fused = _rgb(dtype, seed=2, shape=(20, 28, 3))  # another image, another size
    output = tmp_path / f"fused{extension}"
    encoded = images.encode_image(str(output), fused)
    images.write_bytes_atomic(str(output), metadata.embed_metadata(encoded, extension, reference, SOFTWARE_NAME))

    np.testing.assert_array_equal(_decode(output.read_bytes()), _decode(encoded))
    if extension != ".jpg":
        np.testing.assert_array_equal(images.read_image(str(output)), fused)  # Orientation 1: not rotated
    carried = metadata.read_metadata(str(output))
    (main, photo, gps), (old_main, old_photo, old_gps) = _exif_tags(carried.exif), _exif_tags(reference.exif)
    assert (main[ORIENTATION], main[SOFTWARE]) == (1, SOFTWARE_NAME)
    assert (main[0x010F], main[0x0110]) == (old_main[0x010F], old_main[0x0110])
    assert (photo.pop(PIXEL_X), photo.pop(PIXEL_Y)) == (28, 20)
    del old_photo[PIXEL_X], old_photo[PIXEL_Y]
    assert photo == old_photo and gps == old_gps
    assert carried.icc == reference.icc == ICC
    properties, old_properties = _xmp_properties(carried.xmp), _xmp_properties(reference.xmp)
    assert properties.pop("Orientation") == "1" and old_properties.pop("Orientation") == "6"
    assert {k: properties.get(k) for k in old_properties} == old_properties
    with PIL.Image.open(output) as pillow_view:  # an independent reader sees the same profile
        assert pillow_view.getexif()[ORIENTATION] == 1
        if extension != ".tif":
            assert pillow_view.info["icc_profile"] == ICC


def test_png_icc_profile_gets_a_name(tmp_path):
    # PNG readers (libpng, browsers) drop a profile whose name is empty.
    encoded = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint16))[1].tobytes()
    result = metadata.embed_metadata(encoded, ".png", metadata.Metadata(icc=ICC), SOFTWARE_NAME)
    start = result.index(b"iCCP") + 4
    name = result[start:result.index(b"\x00", start)]
    assert 1 <= len(name) <= 79
    (length,) = struct.unpack(">I", result[start - 8:start - 4])
    body = result[start:start + length]
    assert zlib.decompress(body[len(name) + 2:]) == ICC
    assert struct.unpack(">I", result[start + length:start + length + 4])[0] == zlib.crc32(b"iCCP" + body)


def test_corrupt_exif_block_warns_and_keeps_the_rest(tmp_path, capfd):
    clean = tmp_path / "clean.jpg"
    PIL.Image.fromarray(_rgb(np.uint8, seed=3)).save(clean, icc_profile=ICC, xmp=XMP.encode())
    data = clean.read_bytes()
    garbage = b"Exif\x00\x00" + np.random.default_rng(0).bytes(200)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage + data[2:])

    with pytest.warns(metadata.MetadataWarning, match="broken.jpg"):
        found = metadata.read_metadata(str(broken))
    assert found.exif == b""
    assert found.icc == ICC and _xmp_properties(found.xmp)["Rating"] == "4"
    assert capfd.readouterr().out == ""  # exiv2's own messages stay off stdout
    encoded = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    assert _exif_tags(metadata.read_metadata(_save(tmp_path / "out.jpg", metadata.embed_metadata(
        encoded, ".jpg", found, SOFTWARE_NAME))).exif)[0][SOFTWARE] == SOFTWARE_NAME


def _save(path, payload):
    path.write_bytes(payload)
    return str(path)


def test_invalid_xmp_is_left_out_with_a_warning(tmp_path):
    encoded = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    with pytest.warns(metadata.MetadataWarning, match="XMP"):
        result = metadata.embed_metadata(encoded, ".jpg", metadata.Metadata(xmp="<x:xmpmeta><broken"), "s")
    assert metadata.read_metadata(_save(tmp_path / "out.jpg", result)).xmp is None


def test_rgb_profile_is_not_put_on_a_gray_image(tmp_path):
    encoded = cv2.imencode(".png", np.zeros((8, 8), np.uint16))[1].tobytes()
    with pytest.warns(metadata.MetadataWarning, match="gray"):
        result = metadata.embed_metadata(encoded, ".png", metadata.Metadata(icc=ICC), SOFTWARE_NAME)
    assert metadata.read_metadata(_save(tmp_path / "gray.png", result)).icc is None


def test_bmp_passes_through_and_other_types_are_refused():
    encoded = cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    full = metadata.Metadata(exif=_pillow_exif().tobytes()[6:], icc=ICC, xmp=XMP)
    assert metadata.embed_metadata(encoded, ".BMP", full, SOFTWARE_NAME) is encoded
    with pytest.raises(images.ImageError, match="extension='.gif'"):
        metadata.embed_metadata(encoded, ".gif", full, SOFTWARE_NAME)


def test_file_without_metadata_and_missing_file(tmp_path):
    path = _save(tmp_path / "plain.png", cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    assert metadata.read_metadata(path) == metadata.Metadata()
    with pytest.raises(images.ImageError, match="not found"):
        metadata.read_metadata(str(tmp_path / "missing.jpg"))


def test_icc_mismatch_names_the_frames_with_another_profile():
    rewritten = bytearray(ICC)
    rewritten[24:36] = bytes(range(12))  # same profile, embedded at another date
    other = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    frames = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    metadatas = [metadata.Metadata(icc=ICC), metadata.Metadata(icc=bytes(rewritten)),
                 metadata.Metadata(icc=other), metadata.Metadata()]
    assert metadata.icc_mismatch(frames, metadatas) == ["c.jpg", "d.jpg"]
    assert metadata.icc_mismatch(frames, metadatas, reference=3) == ["a.jpg", "b.jpg", "c.jpg"]
    with pytest.raises(ValueError, match="3 paths and 4"):
        metadata.icc_mismatch(frames[:3], metadatas)
