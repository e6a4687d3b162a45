import cv2
import numpy as np
import pytest

from mfkeras.fusion import align


def _textured(shape, seed=0):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 2.0)
    image = (image - image.min()) / (image.max() - image.min())
    return (image * 255).astype(np.uint8)


def _similarity(angle_deg, scale, shift, centre):
    matrix = cv2.getRotationMatrix2D(centre, angle_deg, scale)
    matrix[:, 2] += shift
    return np.vstack([matrix, [0, 0, 1]])


def _rms_error(estimated, true, shape):
    rows, cols = np.mgrid[0 : shape[0] : 8, 0 : shape[1] : 8]
    points = np.stack([cols.ravel(), rows.ravel(), np.ones(rows.size)])
    diff = (estimated @ points)[:2] / (estimated @ points)[2] - (true @ points)[:2] / (true @ points)[2]
    return float(np.sqrt((diff**2).sum(axis=0).mean()))


@pytest.mark.parametrize("method", ["ecc", "features"])
@pytest.mark.parametrize("motion", ["affine", "homography"])
def test_known_shift_rotation_and_scale_are_recovered(method, motion):
    reference = _textured((300, 340), seed=1)
    shape = reference.shape
    # The frame's pixel (x', y') shows the reference point warp^-1 (x', y').
    true = _similarity(1.5, 1.03, (4.3, -2.6), (170.0, 150.0))
    frame = cv2.warpPerspective(reference, np.linalg.inv(true), (shape[1], shape[0]), flags=cv2.INTER_LINEAR)
    # align_images maps reference coordinates to frame coordinates.
    result = align.align_images([reference, frame], reference_index=0, motion=motion, method=method)
    assert _rms_error(result.warps[1], np.linalg.inv(true), shape) <= 0.5
    top, bottom, left, right = result.crop
    aligned = result.images[1].astype(float)
    expected = reference[top:bottom, left:right].astype(float)
    assert aligned.shape == expected.shape
    assert np.abs(aligned - expected).mean() < 6.0


def test_crop_keeps_only_area_covered_by_all_frames():
    masks = [np.ones((50, 60), bool), np.ones((50, 60), bool)]
    masks[1][:5] = False
    masks[1][:, -3:] = False
    assert align.common_area(masks) == (5, 50, 0, 57)


def test_reference_defaults_to_the_middle_frame():
    frames = [_textured((64, 64), seed=s) for s in (2, 2, 2)]
    result = align.align_images(frames)
    assert result.reference_index == 1
    np.testing.assert_allclose(result.warps[0], np.eye(3), atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"motion": "rigid"}, "motion"), ({"method": "sift"}, "method"), ({"reference_index": 5}, "reference_index")],
)
def test_bad_options_are_named(kwargs, message):
    frames = [_textured((64, 64))] * 2
    with pytest.raises(ValueError, match=message):
        align.align_images(frames, **kwargs)


def test_progress_sees_every_frame_of_the_alignment():
    rng = np.random.default_rng(2)
    texture = cv2.GaussianBlur(rng.random((96, 112)), (0, 0), 2.0)
    base = np.round(255 * (texture - texture.min()) / np.ptp(texture)).astype(np.uint8)
    frames = [base, np.roll(base, 2, axis=1), np.roll(base, -1, axis=0)]
    seen = []

    def progress(iterable, description):
        items = list(iterable)
        seen.append((description, len(items)))
        return items

    with_bar = align.align_images(frames, 0, progress=progress)
    assert seen == [("alignment", 3)]
    without = align.align_images(frames, 0)
    assert with_bar.crop == without.crop
    np.testing.assert_array_equal(with_bar.images[1], without.images[1])
