"""Halo removal against the layered defocus model it inverts, computed here by hand."""

import cv2
import numpy as np
import pytest

from mfkeras.evaluation import groundtruth
from mfkeras.fusion import halo
from mfkeras.fusion.blending import blend_stack


def _texture(shape, seed=0, sigma=2.0):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random(shape), (0, 0), sigma)
    image = (image - image.min()) / (image.max() - image.min())
    return np.round(20 + image * 215).astype(np.uint8)


def _layers(shape, count):
    """Depth labels: nested discs, 0 the farthest layer."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for layer in range(1, count):
        radius = min(shape) * (0.42 - 0.12 * layer)
        labels[np.hypot(y - shape[0] / 2, x - shape[1] / 2) < radius] = layer
    return labels


def _scene(count=2, kind="disc", radius=3.0, shape=(96, 110, 3)):
    """A layered render: frame i is sharp on layer count - 1 - i, with one-hot true weights."""
    truth = _texture(shape)
    depth = _layers(shape[:2], count)
    frames = [groundtruth.render_frame(truth, depth, count - 1 - i, kind, radius) for i in range(count)]
    weights = np.stack([(depth == count - 1 - i) for i in range(count)]).astype(np.float32)
    grays = [f.mean(axis=-1) / 255 for f in frames]
    return truth, frames, weights, grays


def _band_error(truth, fused, weights):
    near = np.zeros(weights.shape[1:], bool)
    for w in weights:
        edge = cv2.dilate(w, np.ones((15, 15))) != cv2.erode(w, np.ones((15, 15)))
        near |= edge
    return np.sqrt(np.mean((truth[near].astype(float) - fused[near]) ** 2))


@pytest.mark.parametrize("kind, radius", [("disc", 2.0), ("disc", 3.5), ("gaussian", 3.0), ("gaussian", 6.0)])
def test_estimate_defocus_recovers_the_kernel_that_blurred_the_region(kind, radius):
    sharp = _texture((90, 120), seed=3).astype(np.float64) / 255
    kernel = halo.defocus_kernel(kind, radius)
    blurred = cv2.filter2D(sharp, -1, kernel, borderType=cv2.BORDER_REFLECT)
    region = np.zeros(sharp.shape, bool)
    region[:, :70] = True
    blurred[:, 70:] = 0.5  # what lies outside the region must not matter
    np.testing.assert_array_equal(halo.estimate_defocus(sharp, blurred, region), kernel)


def test_estimate_defocus_gives_none_for_a_sliver():
    sharp = _texture((60, 60)).astype(np.float64)
    region = np.zeros(sharp.shape, bool)
    region[:, 20:23] = True
    assert halo.estimate_defocus(sharp, sharp, region) is None


def test_the_far_sides_pixels_are_the_model_solved_by_hand():
    truth, frames, weights, grays = _scene()
    fused = halo.blend_without_halos(frames, weights[1:], grays)
    near, far = (f.astype(np.float64) for f in frames)
    kernel = halo.defocus_kernel("disc", 3.0)
    share = cv2.filter2D(weights[0].astype(np.float64), -1, kernel, borderType=cv2.BORDER_REFLECT)
    light = np.stack([cv2.filter2D(weights[0] * near[..., c], -1, kernel, borderType=cv2.BORDER_REFLECT)
                      for c in range(3)], -1)
    clean = np.clip((far - light) / np.maximum(1 - share, halo.MIN_OWN_SHARE)[..., None],
                    np.minimum(near, far), np.maximum(near, far))
    on_far_side = weights[1] == 1
    assert np.abs(fused[on_far_side] - clean[on_far_side]).max() <= 1.0
    # ... nearer the truth than the plain blend (where the clip lets it: the truth of a
    # texture's peak can lie outside both sources' values).
    plain = blend_stack(frames, weights[1:])
    assert _band_error(truth, fused, weights) < 0.85 * _band_error(truth, plain, weights)


def test_out_of_reach_pixels_are_the_plain_blend_and_all_lie_between_the_sources():
    truth, frames, weights, grays = _scene(kind="gaussian", radius=2.0)
    fused = halo.blend_without_halos(frames, weights[1:], grays)
    plain = blend_stack(frames, weights[1:])
    reach = halo.defocus_kernel("gaussian", 2.0).shape[0]
    edge = cv2.dilate(weights[0], np.ones((reach, reach))) != cv2.erode(weights[0], np.ones((reach, reach)))
    np.testing.assert_array_equal(fused[~edge], plain[~edge])
    assert not np.array_equal(fused[edge], plain[edge])
    assert np.all(fused >= np.minimum(*frames)) and np.all(fused <= np.maximum(*frames))


def test_identical_frames_and_swapped_inputs():
    truth, frames, weights, grays = _scene()
    same = [frames[1], frames[1].copy()]
    np.testing.assert_array_equal(halo.blend_without_halos(same, weights[1:], [grays[1]] * 2), frames[1])
    forward = halo.blend_without_halos(frames, weights[1:], grays).astype(int)
    backward = halo.blend_without_halos(frames[::-1], weights[::-1][1:], grays[::-1]).astype(int)
    assert np.abs(forward - backward).max() <= 1


def test_stacks_lose_their_halos_too():
    truth, frames, weights, grays = _scene(count=3, radius=2.0, shape=(120, 120, 3))
    fused = halo.blend_without_halos(frames, weights[1:], grays)
    plain = blend_stack(frames, weights[1:])
    assert _band_error(truth, fused, weights) < 0.85 * _band_error(truth, plain, weights)
    assert np.all(fused >= np.minimum.reduce(frames)) and np.all(fused <= np.maximum.reduce(frames))


def test_large_images_are_fitted_at_a_reduced_scale(monkeypatch):
    truth, frames, weights, grays = _scene(radius=6.0, shape=(160, 176, 3))
    plain = blend_stack(frames, weights[1:])
    whole = halo.blend_without_halos(frames, weights[1:], grays)
    monkeypatch.setattr(halo, "ESTIMATION_SIDE", 80)  # scale 2: kernels of radius 3 at half size
    fused = halo.blend_without_halos(frames, weights[1:], grays)
    assert not np.array_equal(fused, whole)
    assert _band_error(truth, fused, weights) < 0.92 * _band_error(truth, plain, weights)
    assert _band_error(truth, fused, weights) < 1.02 * _band_error(truth, whole, weights)
    assert np.all(fused >= np.minimum(*frames)) and np.all(fused <= np.maximum(*frames))


def test_gray_and_float_images_keep_their_kind():
    truth, frames, weights, grays = _scene()
    gray = [f[..., 0] for f in frames]
    fused = halo.blend_without_halos(gray, weights[1:], grays)
    assert fused.shape == gray[0].shape and fused.dtype == np.uint8
    colour = halo.blend_without_halos([np.repeat(g[..., None], 3, -1) for g in gray], weights[1:], grays)
    np.testing.assert_array_equal(fused, colour[..., 0])
    unit = halo.blend_without_halos([f.astype(np.float32) / 255 for f in frames], weights[1:], grays)
    assert unit.dtype == np.float32
    assert np.abs(unit * 255 - halo.blend_without_halos(frames, weights[1:], grays)).max() <= 0.51
    deep = halo.blend_without_halos([f.astype(np.uint16) * 257 for f in frames], weights[1:], grays)
    assert deep.dtype == np.uint16
    assert np.abs(deep / 257 - halo.blend_without_halos(frames, weights[1:], grays)).max() <= 0.51


def test_a_source_without_weight_changes_nothing_and_is_not_cleaned(monkeypatch):
    truth, frames, weights, grays = _scene()
    pair = halo.blend_without_halos(frames, weights[1:], grays)
    fits = []
    fit = halo._best_kernel
    monkeypatch.setattr(halo, "_best_kernel", lambda p, b: fits.append(p is not None) or fit(p, b))
    # A third frame, a copy of the second, with weight zero everywhere: same bounds, same blend.
    unused = np.concatenate([weights[1:], np.zeros_like(weights[:1])])
    fused = halo.blend_without_halos([*frames, frames[1].copy()], unused, [*grays, grays[1]])
    np.testing.assert_array_equal(fused, pair)
    # Fits: the two used frames from each other only (the unused frame has no sharp region to
    # spill from, and nothing of it is cleaned).
    assert sum(fits) == 2


def test_each_sharp_frame_is_blurred_by_the_candidates_once(monkeypatch):
    truth, frames, weights, grays = _scene(count=3, radius=2.0, shape=(120, 120, 3))
    sharp_frames = []
    predict = halo._candidate_predictions
    monkeypatch.setattr(halo, "_candidate_predictions", lambda s, r: sharp_frames.append(s) or predict(s, r))
    fitted = []
    monkeypatch.setattr(halo, "defocus_blur", lambda v, k: fitted.append(k) or cv2.filter2D(
        v, -1, k, borderType=cv2.BORDER_REFLECT))
    halo.blend_without_halos(frames, weights[1:], grays)
    assert len(sharp_frames) == 3  # not 6: one per frame with a sharp region, whatever it is fitted against
    # Each of the six (frame, other frame) spills got the kernel estimate_defocus finds for it.
    expected = [halo.estimate_defocus(grays[other], grays[own], weights[other] > 0.5).astype(np.float32)
                for own in range(3) for other in range(3) if other != own]
    assert len(fitted) == 6 and all(np.array_equal(k, e) for k, e in zip(fitted, expected))


def test_row_blocks_do_not_change_the_result(monkeypatch):
    truth, frames, weights, grays = _scene(shape=(300, 90, 3))
    whole = halo.blend_without_halos(frames, weights[1:], grays)
    monkeypatch.setattr(halo, "_BLOCK_PIXELS", 37 * 90)
    np.testing.assert_array_equal(halo.blend_without_halos(frames, weights[1:], grays), whole)
    monkeypatch.setattr(halo, "ESTIMATION_SIDE", 40)  # and at a reduced scale (3), blocks or not
    blocks = halo.blend_without_halos(frames, weights[1:], grays)
    assert not np.array_equal(blocks, blend_stack(frames, weights[1:]))  # kernels were fitted and applied
    monkeypatch.setattr(halo, "_BLOCK_PIXELS", 1000 * 90)
    np.testing.assert_array_equal(halo.blend_without_halos(frames, weights[1:], grays), blocks)
    monkeypatch.setattr(halo, "_BLOCK_BYTES", 1)  # one row at a time, whatever _BLOCK_PIXELS says
    upsampled = []
    rows_of = halo._upsampled_rows
    monkeypatch.setattr(halo, "_upsampled_rows", lambda v, s, r: upsampled.append(r) or rows_of(v, s, r))
    np.testing.assert_array_equal(halo.blend_without_halos(frames, weights[1:], grays), blocks)
    assert len(upsampled) == 2 * 300 and all(r.stop - r.start == 1 for r in upsampled)  # both sources, each row


@pytest.mark.parametrize("change, message", [
    (lambda f, w, g: (f[:1], w[:0], g[:1]), "two or more"),
    (lambda f, w, g: ([f[0], f[1][:-1]], w, g), "one shape"),
    (lambda f, w, g: (f, w[0], g), "weights must be"),
    (lambda f, w, g: (f, np.concatenate([w, w]), g), "weights must be"),
    (lambda f, w, g: (f, w, g[:1]), "grays must be"),
    (lambda f, w, g: (f, w, [g[0], g[1][:-2]]), "grays must be"),
])
def test_bad_inputs_are_named(change, message):
    truth, frames, weights, grays = _scene()
    with pytest.raises(ValueError, match=message):
        halo.blend_without_halos(*change(frames, weights[1:], grays))
    with pytest.raises(ValueError, match="one"):
        halo.estimate_defocus(grays[0], grays[1][:-1], weights[0] > 0.5)


def test_upsampled_rows_are_the_rows_of_a_whole_resize():
    small = cv2.GaussianBlur(np.random.default_rng(1).random((40, 50, 6)).astype(np.float32), (0, 0), 2)
    whole = cv2.resize(small, (200, 160), interpolation=cv2.INTER_LINEAR)
    for rows in (slice(0, 37), slice(37, 101), slice(150, 406)):
        got = halo._upsampled_rows(small, (160, 200), rows)
        assert got.shape == whole[rows].shape
        np.testing.assert_allclose(got, whole[rows], atol=1e-5)
    np.testing.assert_array_equal(halo._upsampled_rows(small, (40, 50), slice(3, 9)), small[3:9])
    # wider than OpenCV's remap allows (32767 pixels) is fine too
    wide = halo._upsampled_rows(small[..., 0], (120, 40000), slice(0, 10))
    np.testing.assert_allclose(wide, cv2.resize(small[..., 0], (40000, 120), interpolation=cv2.INTER_LINEAR)[:10],
                               atol=1e-5)


def test_any_memory_layout_and_channel_count():
    truth, frames, weights, grays = _scene()
    fused = halo.blend_without_halos(frames, weights[1:], grays)
    # Transposed (non-contiguous) frames give the transposed result.
    turned = halo.blend_without_halos([f.transpose(1, 0, 2) for f in frames], weights[1:].transpose(0, 2, 1),
                                      [g.T for g in grays])
    np.testing.assert_array_equal(turned, fused.transpose(1, 0, 2))
    # A fourth channel is cleaned on its own: the first three are those of the colour result.
    alpha = [np.concatenate([f, f[..., :1]], -1) for f in frames]
    four = halo.blend_without_halos(alpha, weights[1:], grays)
    assert four.shape == (*fused.shape[:2], 4)
    assert np.abs(four[..., :3].astype(int) - fused).max() <= 1 and np.mean(four[..., :3] != fused) < 1e-3
    np.testing.assert_array_equal(four[..., 3], four[..., 0])
