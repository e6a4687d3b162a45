import os
import stat
import threading

import cv2
import numpy as np
import pytest

from mfkeras.io import images


def _write(path, array):
    assert cv2.imwrite(str(path), array)
    return str(path)


def test_colour_is_returned_in_rgb_order(tmp_path):
    bgr = np.zeros((20, 20, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    image = images.read_image(_write(tmp_path / "c.png", bgr))
    assert image.shape == (20, 20, 3)
    assert image[0, 0].tolist() == [0, 0, 200]


def test_sixteen_bit_gray_round_trip(tmp_path):
    gray = (np.arange(400, dtype=np.uint16).reshape(20, 20) * 150).astype(np.uint16)
    path = _write(tmp_path / "g.png", gray)
    image = images.read_image(path)
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, gray)
    out = tmp_path / "out.tif"
    images.write_image(str(out), image)
    np.testing.assert_array_equal(images.read_image(str(out)), gray)


def test_alpha_is_dropped_with_a_warning(tmp_path):
    bgra = np.full((20, 20, 4), 7, np.uint8)
    path = _write(tmp_path / "a.png", bgra)
    with pytest.warns(UserWarning, match="alpha"):
        image = images.read_image(path)
    assert image.shape == (20, 20, 3)


@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    import PIL.Image

    array = np.zeros((20, 30, 3), np.uint8)
    array[:5, :5] = 255  # white top-left corner
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / f"rot.{suffix}"
    PIL.Image.fromarray(array).save(path, exif=exif, quality=100)
    image = images.read_image(str(path))
    assert image.shape == (30, 20, 3)
    # The white corner is now at the top right.
    assert image[:4, -4:].mean() > 200 and image[:4, :4].mean() < 50
    plain = tmp_path / f"plain.{suffix}"
    PIL.Image.fromarray(array).save(plain, quality=100)
    assert images.read_image(str(plain)).shape == (20, 30, 3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: str(d / "missing.png"), "not found"),
        (lambda d: str(d), "directory"),
        (lambda d: _touch(d / "empty.png", b""), "empty"),
        (lambda d: _touch(d / "junk.png", b"this is not an image"), "Not a readable image"),
    ],
)
def test_unusable_inputs_are_named(tmp_path, make, message):
    with pytest.raises(images.ImageError, match=message):
        images.read_image(make(tmp_path))


def _touch(path, payload):
    path.write_bytes(payload)
    return str(path)


def test_glob_that_matches_nothing(tmp_path):
    with pytest.raises(images.ImageError, match="No file matches"):
        images.expand_inputs([str(tmp_path / "*.png")])


def test_glob_expands_sorted(tmp_path):
    for name in ("b.png", "a.png", "c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    assert images.expand_inputs([str(tmp_path / "*.png")]) == [
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
    ]


def test_output_checks(tmp_path):
    source = tmp_path / "in.png"
    source.write_bytes(b"x")
    with pytest.raises(images.ImageError, match="also an input"):
        images.check_output_path(str(source), [str(source)], overwrite=True)
    with pytest.raises(images.ImageError, match="exists"):
        images.check_output_path(str(source), [], overwrite=False)
    with pytest.raises(images.ImageError, match="does not exist"):
        images.check_output_path(str(tmp_path / "nope" / "out.png"))
    with pytest.raises(images.ImageError, match="extensions"):
        images.check_output_path(str(tmp_path / "out.gif"))
    images.check_output_path(str(tmp_path / "new.png"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    with pytest.raises(images.ImageError, match="not writable"):
        images.check_output_path(str(locked / "out.png"))


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old contents")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        images.write_bytes_atomic(str(target), b"new contents")
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_sixteen_bit_jpeg_is_refused(tmp_path):
    with pytest.raises(images.ImageError, match="16-bit"):
        images.write_image(str(tmp_path / "x.jpg"), np.zeros((4, 4), np.uint16))


def test_palette_images_are_read_as_rgb(tmp_path):
    import PIL.Image

    rng = np.random.default_rng(0)
    rgb = (rng.random((20, 24, 3)) * 255).astype(np.uint8)
    palette = PIL.Image.fromarray(rgb).convert("P", palette=PIL.Image.ADAPTIVE, colors=8)
    path = tmp_path / "palette.png"
    palette.save(path)
    image = images.read_image(str(path))
    np.testing.assert_array_equal(image, np.array(palette.convert("RGB")))


def test_directory_without_write_permission_is_named(tmp_path, monkeypatch):
    real_access = os.access

    def no_write(path, mode):
        return False if mode == os.W_OK else real_access(path, mode)

    monkeypatch.setattr(os, "access", no_write)
    with pytest.raises(images.ImageError, match="not writable"):
        images.check_output_path(str(tmp_path / "out.png"))


def test_infinite_float_input_is_refused_by_the_python_api():
    from mfkeras import fusion

    frame = np.zeros((20, 20), np.float32)
    frame[3, 4] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        fusion.validate_images([frame, np.zeros((20, 20), np.float32)])


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_umask_permissions(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = tmp_path / "out.png"
        images.write_image(str(path), np.zeros((4, 4), np.uint8))
        reference = tmp_path / "plain"
        reference.write_bytes(b"")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_one_validator_serves_pipeline_baselines_and_scripts():
    from mfkeras.io.validate import validate_images

    small = [np.zeros((10, 12), np.uint8)] * 2
    with pytest.raises(ValueError, match=r"at least 16x16 pixels. Received: images\[0\] of shape \(10, 12\)"):
        validate_images(small)
    assert len(validate_images(small, min_side=8)) == 2
    with pytest.raises(ValueError, match=r"Received: a.png of shape \(16, 16\) and b.png of shape \(16, 17\)"):
        validate_images([np.zeros((16, 16)), np.zeros((16, 17))], names=["a.png", "b.png"])
    out_of_range = [np.full((16, 16), 2.0)] * 2
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        validate_images(out_of_range)
    assert len(validate_images(out_of_range, unit_float=False)) == 2
    with pytest.raises(ValueError, match="HxWx3"):
        validate_images([np.zeros((16, 16, 1))] * 2, single_channel=False)


def test_expand_inputs_natural_order_for_globs_and_folders(tmp_path):
    for name in ("frame_10.png", "frame_2.png", "frame_1.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    expected = [str(tmp_path / f"frame_{i}.png") for i in (1, 2, 10)]
    assert images.expand_inputs([str(tmp_path / "frame_*.png")]) == expected
    assert images.expand_inputs([str(tmp_path)]) == expected
    # Explicit paths keep the order given.
    assert images.expand_inputs(expected[::-1]) == expected[::-1]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(images.ImageError, match="No images in the folder"):
        images.expand_inputs([str(empty)])


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose valid IHDR announces ``width`` x ``height``, followed by a few bytes of pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_oversized_header_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(60000, 60000))
    with pytest.raises(images.ImageError, match=r"60000x60000 \(3600 MP\), over the limit of 250 MP"):
        images.read_image(str(bomb))
    frame = tmp_path / "frame.png"
    images.write_image(str(frame), np.zeros((100, 120, 3), np.uint8))
    with pytest.raises(images.ImageError, match="over the limit"):
        images.read_image(str(frame), max_pixels=100 * 119)
    assert images.read_image(str(frame), max_pixels=100 * 120).shape == (100, 120, 3)


def test_frame_that_would_not_fit_in_memory_is_refused(tmp_path, monkeypatch):
    frame = tmp_path / "frame.png"
    images.write_image(str(frame), np.zeros((100, 120, 3), np.uint8))
    monkeypatch.setattr(images, "available_memory", lambda: 10_000)
    with pytest.raises(images.ImageError, match=r"needs about .* GiB and .* GiB of memory is available"):
        images.read_image(str(frame))


@pytest.mark.parametrize("extension", [".tif", ".png", ".jpg"])
def test_truncated_file_is_named_without_decoder_noise(tmp_path, capfd, extension):
    rng = np.random.default_rng(1)
    payload = images.encode_image("x" + extension, (rng.random((120, 160, 3)) * 255).astype(np.uint8))
    path = tmp_path / ("cut" + extension)
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(images.ImageError, match="truncated"):
        images.read_image(str(path))
    assert capfd.readouterr().err == ""


def test_full_disk_leaves_neither_output_nor_temporary(tmp_path, monkeypatch):
    import errno

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "fused.png"
    monkeypatch.setattr(images.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        images.write_image(str(target), np.zeros((20, 20), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_sigkill_while_writing_leaves_no_partial_file_under_the_final_name(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "fused.png"
    started = tmp_path / "started"
    script = f"""
import os, time
from mfkeras.io import images
real_fdopen = os.fdopen
def slow_fdopen(*args, **kwargs):
    stream = real_fdopen(*args, **kwargs)
    write = stream.write
    def slow_write(data):
        write(data[: len(data) // 2])
        open({str(started)!r}, "w").close()
        time.sleep(60)
        return write(data[len(data) // 2 :])
    stream.write = slow_write
    return stream
images.os.fdopen = slow_fdopen
images.write_bytes_atomic({str(target)!r}, b"x" * 1_000_000)
"""
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the writer never started"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    assert not target.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "started"]
    assert len(leftovers) == 1 and leftovers[0].startswith(images.TEMPORARY_PREFIX)


def test_read_images_equals_reading_each_in_order(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    paths = []
    for index in range(5):
        paths.append(str(tmp_path / f"frame_{index}.png"))
        cv2.imwrite(paths[-1], rng.integers(0, 256, (20 + index, 31, 3)).astype(np.uint8))
    monkeypatch.setattr(images.os, "cpu_count", lambda: 3)
    monkeypatch.setattr(images, "_PARALLEL_DECODE_BYTES", 1)
    threads = set()
    decode = images._decoded
    monkeypatch.setattr(images, "_decoded", lambda path: threads.add(threading.current_thread().name) or decode(path))
    got = images.read_images(paths)
    assert threading.current_thread().name not in threads  # decoded on the pool's threads
    assert [frame.shape[0] for frame in got] == [20, 21, 22, 23, 24]  # in the order given
    for frame, path in zip(got, paths):
        np.testing.assert_array_equal(frame, images.read_image(path))


def test_read_images_names_a_bad_file_before_decoding_any(tmp_path, monkeypatch):
    good = str(tmp_path / "good.png")
    cv2.imwrite(good, np.zeros((16, 16, 3), np.uint8))
    empty, missing = tmp_path / "empty.png", str(tmp_path / "missing.png")
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(images.encode_image("x.png", np.zeros((16, 16, 3), np.uint8))[:40])
    decoded = []
    decode = images._decoded
    monkeypatch.setattr(images, "_decoded", lambda path: decoded.append(path) or decode(path))
    monkeypatch.setattr(images.os, "cpu_count", lambda: 2)
    with pytest.raises(images.ImageError, match="empty"):
        images.read_images([good, str(empty), missing])
    with pytest.raises(images.ImageError, match="not found"):
        images.read_images([good, missing, str(empty)])
    assert decoded == []
    with pytest.raises(images.ImageError, match="corrupt.png"):
        images.read_images([good, str(corrupt)])


def test_stderr_silencing_is_shared_by_threads_and_restored():
    import threading

    from mfkeras.io.stderr import native_stderr_silenced

    def identity():
        status = os.fstat(2)
        return status.st_dev, status.st_ino, status.st_rdev

    before, null = identity(), os.stat(os.devnull).st_rdev
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():  # enters first, leaves while the second is still inside
        with native_stderr_silenced():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def second():
        a_in.wait(5)
        with native_stderr_silenced():
            b_in.set()
            a_out.wait(5)
            seen["inside after the first left"] = os.fstat(2).st_rdev == null

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"inside after the first left": True}
    assert identity() == before  # the last one out restored the real descriptor
