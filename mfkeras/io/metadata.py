"""The reference frame's EXIF, ICC profile and XMP, carried over to the fused image.

The pixels of the fused image are encoded by OpenCV (``images.encode_image``,
which keeps 16-bit RGB PNG and TIFF); the metadata are then inserted into the
encoded bytes by exiv2 (through pyexiv2), so no format is re-encoded and no
pixel changes.

EXIF travels as a TIFF-structured block, the layout a JPEG APP1 segment or a
PNG eXIf chunk holds. exiv2 writes it, makernotes included, whatever the file
it came from (JPEG, PNG, TIFF or camera RAW).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import struct
import threading
import warnings
import zlib
from typing import Sequence

import cv2
import numpy as np
import PIL.Image
import pyexiv2

from mfkeras.io.images import ImageError

# Output types that can carry metadata; BMP cannot, and passes through unchanged.
METADATA_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
PASS_THROUGH_EXTENSIONS = (".bmp",)

# pyexiv2 keeps exiv2's messages in process-wide state (its log level and the error text
# that it turns into RuntimeError), so one call at a time.
_EXIV2_LOCK = threading.Lock()
_EXIV2_ERRORS_ONLY = 3  # pyexiv2.set_log_level: errors raise, warnings are dropped
_EXIV2_MUTE = 4

# IFD0 tags that describe how the source's pixels were stored, not the picture: wrong for
# the fused image (a TIFF output gets its own from the encoder).
_STORAGE_TAGS = frozenset({
    254, 255,  # NewSubfileType, SubfileType
    256, 257, 258, 259,  # ImageWidth, ImageLength, BitsPerSample, Compression
    262, 273, 277, 278, 279,  # Photometric, StripOffsets, SamplesPerPixel, RowsPerStrip, StripByteCounts
    284, 317, 322, 323, 324, 325,  # PlanarConfiguration, Predictor, tile layout
    330, 338, 339, 347, 530,  # SubIFDs, ExtraSamples, SampleFormat, JPEGTables, YCbCrSubSampling
    700, 34675,  # XMLPacket and InterColorProfile: XMP and ICC travel on their own
    33421, 33422,  # TIFF/EP CFARepeatPatternDim, CFAPattern of a raw IFD0
})
# DNG tags (50706 onwards) describe undeveloped sensor data, and a TIFF with DNGVersion
# would pass for a DNG; only the ones that name the camera and lens are kept.
_DNG_TAGS = range(50706, 53000)
_DNG_DESCRIPTIVE_TAGS = frozenset({50708, 50709, 50735, 50736})  # camera model, serial, LensInfo
# EXIF groups that hold other images than the main one (thumbnail, raw sub-images).
_OTHER_IMAGE_GROUPS = ("Thumbnail", "SubImage", "SubThumb", "Image2", "Image3", "PanaRaw")
_RELATED_SIZE_KEYS = ("Exif.Iop.RelatedImageWidth", "Exif.Iop.RelatedImageLength")
_ICC_HEADER_BYTES = 128
# Header fields that change when the same profile is written again: creation date, profile ID.
_ICC_VOLATILE_FIELDS = ((24, 36), (84, 100))
# PNG requires a 1-79 character name before an iCCP profile; exiv2 writes an empty one
# (exiv2 issue #2354) and libpng then drops the profile.
_PNG_ICC_NAME = b"ICC Profile"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class MetadataWarning(UserWarning):
    """A metadata block that could not be read or embedded; the image itself is fine."""


@dataclasses.dataclass(frozen=True)
class Metadata:
    """The metadata blocks of one image file.

    Attributes:
        exif: the EXIF as a TIFF-structured block (``b"II*\\0..."`` or ``b"MM\\0*..."``,
            what a JPEG APP1 segment holds after ``Exif\\0\\0``); ``b""`` when absent.
        icc: the ICC profile, or None.
        xmp: the XMP packet (XML text), or None.
    """

    exif: bytes = b""
    icc: bytes | None = None
    xmp: str | None = None


def read_metadata(path: str) -> Metadata:
    """Reads the EXIF, ICC profile and XMP of an image or camera RAW file.

    A block that is corrupt gives a ``MetadataWarning`` naming the file, never an
    exception: a garbage EXIF block gives ``exif=b""``, a directory that exiv2 rejects
    (a damaged makernote, say) leaves out only that directory.

    Args:
        path: a JPEG, PNG, TIFF or camera RAW file (any format exiv2 reads).

    Returns:
        The file's ``Metadata``; empty fields for absent blocks.
    """
    if not os.path.isfile(path):
        raise ImageError(f"Input file not found: {path}")
    with open(path, "rb") as stream:
        data = stream.read()
    with _EXIV2_LOCK, _log_level(_EXIV2_ERRORS_ONLY):
        source, keep_exif = _open_source(data, path)
        if source is None:
            return Metadata()
        try:
            return Metadata(
                exif=_read_exif_block(source, path) if keep_exif else b"",
                icc=source.read_icc() or None,
                xmp=_read_xmp_packet(source, path),
            )
        finally:
            source.close()


def embed_metadata(encoded: bytes, extension: str, metadata: Metadata, software: str) -> bytes:
    """Inserts metadata into an encoded image without touching its pixels.

    EXIF Orientation is set to 1 (``read_image`` has already rotated the pixels) and
    Software to ``software``; PixelXDimension/PixelYDimension, where present, are set
    to the encoded image's size, and tags that describe the source's storage, its
    thumbnail or its raw sensor data are dropped. XMP orientation and sizes are
    corrected the same way. An ICC profile whose colour space does not fit the image
    (an RGB profile on a gray image) is left out with a ``MetadataWarning``, as is
    any block exiv2 refuses.

    Args:
        encoded: the image file's bytes (JPEG, PNG or TIFF, 8 or 16 bit, as
            ``images.encode_image`` makes them).
        extension: the output's extension, ``".jpg"``, ``".png"``, ``".tif"`` ...
        metadata: the blocks to insert, usually ``read_metadata(reference_frame)``.
        software: the Software tag, e.g. ``f"mfkeras {mfkeras.__version__}"``.

    Returns:
        The encoded image with the metadata; for ``.bmp``, ``encoded`` unchanged.
    """
    extension = extension.lower() if extension.startswith(".") else "." + extension.lower()
    if extension in PASS_THROUGH_EXTENSIONS:
        return encoded
    if extension not in METADATA_EXTENSIONS:
        raise ImageError(
            f"Metadata can be embedded in {', '.join(METADATA_EXTENSIONS)} files. Received: extension={extension!r}."
        )
    with _EXIV2_LOCK, _log_level(_EXIV2_ERRORS_ONLY):
        try:
            target = pyexiv2.ImageData(bytes(encoded))
        except RuntimeError as error:
            raise ImageError(f"Not a readable {extension} image, cannot embed metadata: {_reason(error)}") from error
        try:
            size = (target.get_pixel_width(), target.get_pixel_height())
            _embed_exif(target, metadata.exif, software, size)
            if metadata.icc:
                _embed_icc(target, metadata.icc, encoded)
            if metadata.xmp:
                _embed_xmp(target, metadata.xmp, size)
            result = target.get_bytes()
        finally:
            target.close()
    if extension == ".png":
        result = _name_png_icc_profile(result)
    return result


def icc_mismatch(paths: Sequence[str], metadatas: Sequence[Metadata], reference: int = 0) -> list:
    """The frames whose ICC profile differs from the reference frame's.

    Profiles are compared byte for byte, except for the header's creation date and
    profile ID, which change when the same profile is embedded again. A frame
    without a profile differs from a reference that has one, and the other way round.

    Args:
        paths: the frames' files, in the order of ``metadatas``.
        metadatas: ``read_metadata`` of each frame.
        reference: index of the frame whose metadata the fused image carries.

    Returns:
        The paths of the frames whose profile differs, in input order.
    """
    if len(paths) != len(metadatas):
        raise ValueError(
            f"Need one Metadata per path. Received: {len(paths)} paths and {len(metadatas)} metadata."
        )
    if not 0 <= reference < len(paths):
        raise ValueError(f"reference must index one of the {len(paths)} frames. Received: reference={reference}.")
    expected = _comparable_icc(metadatas[reference].icc)
    return [
        path
        for index, (path, metadata) in enumerate(zip(paths, metadatas))
        if index != reference and _comparable_icc(metadata.icc) != expected
    ]


# Reading.


def _open_source(data: bytes, path: str):
    """exiv2's view of ``data`` and whether its EXIF can be used; (None, False) if unreadable."""
    try:
        return pyexiv2.ImageData(data), True
    except RuntimeError as error:
        reason = _reason(error)
    # exiv2 reports the first damaged directory and reads on: keep what it recovered.
    source = _open_muted(data)
    if source is not None:
        _warn(f"Damaged metadata in {path} ({reason}); the damaged part is left out.")
        return source, True
    # A corrupt EXIF block stops exiv2 from reading anything: read the file without it.
    stripped = _without_exif_block(data)
    source = _open_muted(stripped) if stripped != data else None
    if source is not None:
        _warn(f"The EXIF block of {path} is corrupt ({reason}); it is left out.")
        return source, False
    _warn(f"No metadata could be read from {path} ({reason}).")
    return None, False


def _open_muted(data: bytes):
    try:
        with _log_level(_EXIV2_MUTE):
            return pyexiv2.ImageData(data)
    except RuntimeError:
        return None


def _read_exif_block(source, path: str) -> bytes:
    # exiv2 serialises the EXIF it parsed (from any format) into a JPEG's APP1 segment.
    carrier = pyexiv2.ImageData(_carrier_jpeg())
    try:
        source.copy_to_another_image(carrier, exif=True, iptc=False, xmp=False, comment=False, icc=False,
                                     thumbnail=False)
        return _jpeg_exif_segment(carrier.get_bytes())
    except RuntimeError as error:
        _warn(f"Could not read the EXIF of {path} ({_reason(error)}); it is left out.")
        return b""
    finally:
        carrier.close()


def _read_xmp_packet(source, path: str) -> str | None:
    try:
        packet = source.read_raw_xmp()
        if not packet or source.read_xmp(encoding="latin-1"):  # parsed: exiv2 accepts it
            return packet or None
    except (UnicodeDecodeError, RuntimeError):
        pass
    _warn(f"The XMP of {path} is not valid UTF-8 XMP; it is left out.")
    return None


# Embedding.


def _embed_exif(target, exif: bytes, software: str, size: tuple) -> None:
    changes = {"Exif.Image.Orientation": "1", "Exif.Image.Software": software}
    if exif:
        try:
            carrier = pyexiv2.ImageData(_carrier_jpeg(exif))
        except (RuntimeError, ValueError) as error:
            _warn(f"The EXIF block could not be parsed ({_reason(error)}); only Software and Orientation are written.")
        else:
            try:
                details = carrier.read_exif_detail(encoding="latin-1")  # keys only; latin-1 never fails
                # Deleted on the JPEG carrier, before the copy, so that a TIFF output's own
                # storage tags stay untouched.
                carrier.modify_exif({key: None for key, detail in details.items() if _not_for_output(key, detail)})
                carrier.copy_to_another_image(target, exif=True, iptc=False, xmp=False, comment=False, icc=False,
                                              thumbnail=False)
                if "Exif.Photo.PixelXDimension" in details:
                    changes["Exif.Photo.PixelXDimension"] = str(size[0])
                    changes["Exif.Photo.PixelYDimension"] = str(size[1])
            except RuntimeError as error:
                _warn(f"exiv2 refused the EXIF block ({_reason(error)}); only Software and Orientation are written.")
            finally:
                carrier.close()
    target.modify_exif(changes)


def _not_for_output(key: str, detail: dict) -> bool:
    group = key.split(".")[1]
    number = detail.get("tagNumber")
    if group.startswith(_OTHER_IMAGE_GROUPS) or key in _RELATED_SIZE_KEYS:
        return True
    if group != "Image":
        return False
    return number in _STORAGE_TAGS or (number in _DNG_TAGS and number not in _DNG_DESCRIPTIVE_TAGS)


def _embed_icc(target, icc: bytes, encoded: bytes) -> None:
    space = icc[16:20] if len(icc) >= _ICC_HEADER_BYTES else b""
    bands = _band_count(encoded)
    if (space, bands) not in ((b"RGB ", 3), (b"GRAY", 1)):
        kind = {1: "gray", 3: "RGB"}.get(bands, f"{bands}-band")
        _warn(f"The ICC profile (colour space {space.decode('latin-1').strip() or 'unknown'!r}) does not fit "
              f"a {kind} image; it is left out.")
        return
    try:
        target.modify_icc(bytes(icc))
    except RuntimeError as error:
        _warn(f"exiv2 refused the ICC profile ({_reason(error)}); it is left out.")


def _band_count(encoded: bytes) -> int | None:
    try:  # Pillow reads the header only.
        with PIL.Image.open(io.BytesIO(encoded)) as image:
            return len(image.getbands())
    except Exception:  # An encoder's output Pillow cannot parse: no profile check possible.
        return None


def _embed_xmp(target, xmp: str, size: tuple) -> None:
    try:
        target.modify_raw_xmp(xmp)
        present = target.read_xmp(encoding="latin-1")
    except RuntimeError as error:
        _warn(f"The XMP packet is not valid ({_reason(error)}); it is left out.")
        with contextlib.suppress(RuntimeError):
            target.clear_xmp()
        return
    corrections = {
        "Xmp.tiff.Orientation": "1",
        "Xmp.tiff.ImageWidth": str(size[0]),
        "Xmp.tiff.ImageLength": str(size[1]),
        "Xmp.exif.PixelXDimension": str(size[0]),
        "Xmp.exif.PixelYDimension": str(size[1]),
    }
    corrections = {key: value for key, value in corrections.items() if key in present}
    if corrections:
        target.modify_xmp(corrections)


# Byte-level helpers.


def _carrier_jpeg(exif: bytes = b"") -> bytes:
    """A 1x1 JPEG (the smallest file exiv2 takes as one), with ``exif`` in an APP1 segment."""
    image = cv2.imencode(".jpg", np.zeros((1, 1), np.uint8))[1].tobytes()
    if not exif:
        return image
    payload = b"Exif\x00\x00" + exif
    if len(payload) + 2 > 0xFFFF:
        raise ValueError(f"an EXIF block of {len(exif)} bytes does not fit a JPEG segment")
    return image[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + image[2:]


def _jpeg_exif_segment(data: bytes) -> bytes:
    return next((segment[10:] for marker, segment in _jpeg_segments(data) if _is_exif(marker, segment)), b"")


def _without_exif_block(data: bytes) -> bytes:
    """``data`` less its JPEG APP1 Exif segments or PNG eXIf chunks (other formats unchanged)."""
    if data.startswith(b"\xff\xd8"):
        segments = list(_jpeg_segments(data))
        header_end = 2 + sum(len(segment) for _, segment in segments)
        kept = b"".join(segment for marker, segment in segments if not _is_exif(marker, segment))
        return data[:2] + kept + data[header_end:]
    if data.startswith(_PNG_SIGNATURE):
        return _PNG_SIGNATURE + b"".join(chunk for kind, chunk in _png_chunks(data) if kind != b"eXIf")
    return data


def _jpeg_segments(data: bytes):
    """(marker, whole segment) pairs of a JPEG's header, from after SOI to the first scan."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF and data[position + 1] not in (0xD9, 0xDA):
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        yield data[position + 1], data[position:position + 2 + length]
        position += 2 + length


def _is_exif(marker: int, segment: bytes) -> bool:
    return marker == 0xE1 and segment[4:10] == b"Exif\x00\x00"


def _png_chunks(data: bytes):
    """(type, whole chunk) pairs of a PNG file, after its signature."""
    position = len(_PNG_SIGNATURE)
    while position + 12 <= len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        yield data[position + 4:position + 8], data[position:position + 12 + length]
        position += 12 + length


def _name_png_icc_profile(data: bytes) -> bytes:
    chunks = []
    for kind, chunk in _png_chunks(data):
        body = chunk[8:-4]
        if kind == b"iCCP" and body.startswith(b"\x00"):
            body = _PNG_ICC_NAME + body
            chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        chunks.append(chunk)
    return _PNG_SIGNATURE + b"".join(chunks)


def _comparable_icc(icc: bytes | None) -> bytes | None:
    if not icc:
        return None
    profile = bytearray(icc)
    for start, end in _ICC_VOLATILE_FIELDS:
        profile[start:end] = bytes(len(profile[start:end]))
    return bytes(profile)


@contextlib.contextmanager
def _log_level(level: int):
    # pyexiv2 prints exiv2's warnings on stdout, where the CLI writes its own output, and
    # raises its errors; only errors are wanted, and they become MetadataWarnings here.
    # pyexiv2 has no getter for the level, so it is left at errors-only afterwards.
    pyexiv2.set_log_level(level)
    try:
        yield
    finally:
        pyexiv2.set_log_level(_EXIV2_ERRORS_ONLY)


def _reason(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _warn(message: str) -> None:
    warnings.warn(message, MetadataWarning, stacklevel=3)
