"""The ground-truth generator: deterministic, object-shaped layers, layered defocus with halos."""

import cv2
import numpy as np
import pytest

from mfkeras.evaluation import groundtruth, reference


def _scene(seed=0, shape=(96, 128)):
    """A textured background with a bright textured disc in front: an object GrabCut can find."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.random((*shape, 3)), (0, 0), 1.0)
    image = 60 + 80 * texture
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disc = (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (shape[0] / 3.2) ** 2
    image[disc] = 150 + 100 * texture[disc][:, ::-1]
    return np.clip(image, 0, 255).astype(np.uint8)


def test_same_seed_same_sample_other_seed_other_sample():
    image = _scene()
    first, again = groundtruth.make_sample(image, 2, seed=3), groundtruth.make_sample(image, 2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first.frames, again.frames))
    assert np.array_equal(first.labels, again.labels)
    other = groundtruth.make_sample(image, 2, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(first.frames, other.frames))


@pytest.mark.parametrize("frames", [2, 3, 5])
def test_each_frame_is_exact_where_it_is_sharp_away_from_boundaries(frames):
    image = _scene(1)
    sample = groundtruth.make_sample(image, frames, seed=frames)
    assert sorted(np.unique(sample.labels)) == list(range(frames))
    assert np.array_equal(sample.truth, image)
    reach = groundtruth.defocus_kernel(sample.kernel, sample.radius_step * (frames - 1)).shape[0]
    far = ~reference.boundary_band(sample.labels, k=reach)
    for index, frame in enumerate(sample.frames):
        sharp = (sample.labels == index) & far
        if sharp.any():
            assert np.array_equal(frame[sharp], image[sharp])
        blurred = (sample.labels != index) & far
        if blurred.any():
            assert np.abs(frame[blurred].astype(int) - image[blurred]).mean() > 0.5
    assert not np.array_equal(sample.frames[0], sample.frames[-1])


def test_defocused_foreground_spreads_over_the_sharp_background():
    image = _scene(2)
    image[:, 64:] = np.clip(image[:, 64:].astype(int) + 90, 0, 255)  # a bright near layer
    labels = np.zeros(image.shape[:2], np.int32)
    labels[:, 64:] = 1  # layer 1 (near) on the right half
    focus_far = groundtruth.render_frame(image, labels, focus=0, kernel="disc", radius_step=4.0)
    focus_near = groundtruth.render_frame(image, labels, focus=1, kernel="disc", radius_step=4.0)
    # Focused far: the background next to the boundary is covered by the blurred foreground (halo).
    assert (focus_far[:, 61:64].astype(int) - image[:, 61:64]).mean() > 10
    assert np.array_equal(focus_far[:, :50], image[:, :50])
    # Focused near: the sharp foreground cuts the blurred background cleanly.
    assert np.array_equal(focus_near[:, 64:], image[:, 64:])


def test_kernels_are_normalised_and_bad_settings_named():
    for kind in groundtruth.KERNELS:
        for radius in (0, 1.5, 4):
            assert groundtruth.defocus_kernel(kind, radius).sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        groundtruth.defocus_kernel("box", 2)
    with pytest.raises(ValueError, match="frames must be >= 2"):
        groundtruth.make_sample(_scene(), 1, seed=0)
    with pytest.raises(ValueError, match="kernels must be from"):
        groundtruth.DefocusConfig(kernels=("box",))


def test_lens_kernels_outside_the_halo_family_have_their_shapes():
    for kind in groundtruth.LENS_KERNELS:
        for radius in (0, 1.5, 6):
            kernel = groundtruth.lens_kernel(kind, radius)
            assert kernel.sum() == pytest.approx(1.0) and np.all(kernel >= 0)
            np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-12)  # point-symmetric
    radius = 12.0
    # The hexagon covers the area of a regular hexagon of circumradius r: (3 sqrt 3 / 2) r^2.
    raw = groundtruth.lens_kernel("hexagon", radius)
    support = raw / raw.max()
    assert support.sum() == pytest.approx(1.5 * np.sqrt(3) * radius**2, rel=0.02)
    half = raw.shape[0] // 2
    # Corners on the y axis (circumradius 12), flat sides across x (apothem = r sqrt(3) / 2 = 10.4).
    assert raw[half + 11, half] > 0 and raw[half, half + 11] == 0 and raw[half, half + 10] > 0
    ring = groundtruth.lens_kernel("ring", radius)
    half = ring.shape[0] // 2
    assert ring[half, half + 11] == pytest.approx(ring[half, half] * (1 + (11 / radius) ** 2))
    np.testing.assert_array_equal(groundtruth.lens_kernel("disc", 3.0), groundtruth.defocus_kernel("disc", 3.0))
    with pytest.raises(ValueError, match="kind must be one of"):
        groundtruth.lens_kernel("box", 2)


@pytest.mark.parametrize("kind", ["hexagon", "ring"])
def test_samples_render_with_lens_kernels_outside_the_family(kind):
    image = _scene(3)
    config = groundtruth.DefocusConfig(kernels=(kind,))
    sample = groundtruth.make_sample(image, 2, seed=5, config=config)
    assert sample.kernel == kind
    default = groundtruth.make_sample(image, 2, seed=5)
    np.testing.assert_array_equal(sample.labels, default.labels)  # the kernel choice alone differs
    near = sample.labels == 0
    expected = groundtruth.render_frame(image, 1 - sample.labels, 1, kind, sample.radius_step)  # frame 0: the near layer
    np.testing.assert_array_equal(sample.frames[0], expected)
    assert not np.array_equal(sample.frames[1][near], default.frames[1][near])


def test_development_split_is_fixed_by_name():
    names = [f"2007_{i:06d}.jpg" for i in range(2000)]
    chosen = [n for n in names if groundtruth.is_development_image(n)]
    assert 0.09 < len(chosen) / len(names) < 0.16
    assert chosen == [n for n in names if groundtruth.is_development_image("some/dir/" + n)]


def test_development_images_are_the_split_and_samples_are_deterministic(tmp_path):
    from mfkeras.io import images

    names = [f"2008_{i:06d}.png" for i in range(40)]
    chosen = [n for n in names if groundtruth.is_development_image(n)]
    assert 0 < len(chosen) < len(names)
    for number, name in enumerate(names):
        images.write_image(str(tmp_path / name), _scene(number % 3))
    found = groundtruth.development_images(str(tmp_path))
    assert [p.rsplit("/", 1)[-1] for p in found] == sorted(chosen)
    first = groundtruth.development_sample(found, len(found) + 1, 2)
    again = groundtruth.development_sample(found, len(found) + 1, 2)
    # Image index cycles (len + 1 -> image 1), the seed is the index itself.
    expected = groundtruth.make_sample(images.read_image(found[1]), 2, seed=len(found) + 1)
    for frame, same, reference_frame in zip(first.frames, again.frames, expected.frames):
        assert np.array_equal(frame, same) and np.array_equal(frame, reference_frame)


def test_development_sample_skips_an_image_that_cannot_be_split(tmp_path):
    from mfkeras.io import images

    flat, textured = str(tmp_path / "deep.png"), str(tmp_path / "scene.png")
    images.write_image(flat, np.full((32, 32, 3), 1000, np.uint16))  # the generator takes uint8 only
    images.write_image(textured, _scene(0))
    with pytest.raises(ValueError):
        groundtruth.make_sample(images.read_image(flat), 2, seed=0)
    sample = groundtruth.development_sample([flat, textured], 0, 2)
    assert np.array_equal(sample.truth, _scene(0))
    with pytest.raises(ValueError, match="No development image"):
        groundtruth.development_sample([flat], 0, 2)
    with pytest.raises(ValueError, match="sources is empty"):
        groundtruth.development_sample([], 0, 2)


@pytest.mark.parametrize("index, frames, message", [(-1, 2, "index must be"), (1.5, 2, "index must be"),
                                                    (0, 1, "frames must be")])
def test_development_sample_refuses_a_bad_index_or_frame_count(tmp_path, index, frames, message):
    from mfkeras.io import images

    path = str(tmp_path / "scene.png")
    images.write_image(path, _scene(0))
    with pytest.raises(ValueError, match=message):
        groundtruth.development_sample([path], index, frames)
