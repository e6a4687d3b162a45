import cv2
import numpy as np
import pytest

from mfkeras import fusion
from mfkeras.network.config import POOL, ModelConfig
from mfkeras.network.model import build_patch_model

from conftest import band_by_loop, randomize_weights, shared_path

TINY = ModelConfig("tiny", (4, POOL, 8), (8,))


@pytest.fixture(scope="module")
def tiny_model():
    return randomize_weights(build_patch_model(TINY), seed=12, scale=0.3)


def _textured(shape, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random(shape), (0, 0), 1.0)
    image = (image - image.min()) / (image.max() - image.min())
    if dtype == np.uint8:
        return np.round(image * 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.round(image * 65535).astype(np.uint16)
    return image.astype(dtype)


@pytest.mark.parametrize(
    "shape, dtype",
    [((40, 52), np.uint8), ((40, 52, 3), np.uint8), ((33, 47, 3), np.uint16), ((36, 36), np.float32)],
)
@pytest.mark.parametrize("refine", ["guided", "dilate", "none"])
def test_fusing_an_image_with_itself_returns_it(tiny_model, shape, dtype, refine):
    image = _textured(shape, seed=1, dtype=dtype)
    result = fusion.fuse([image, image.copy()], tiny_model, fusion.FusionOptions(refine=refine))
    assert result.fused.dtype == image.dtype and result.fused.shape == image.shape
    np.testing.assert_array_equal(result.fused, image)


def test_patch_classifiers_blend_without_halo_removal_unless_asked(tiny_model):
    a, b = _textured((48, 56, 3), seed=4), _textured((48, 56, 3), seed=5)
    result = fusion.fuse([a, b], tiny_model)
    np.testing.assert_array_equal(result.fused, fusion.blend(a, b, result.final_decision))
    from mfkeras.fusion import halo
    from mfkeras.io.color import to_unit_gray

    asked = fusion.fuse([a, b], tiny_model, fusion.FusionOptions(halo_removal=True))
    np.testing.assert_array_equal(asked.final_decision, result.final_decision)
    grays = [to_unit_gray(image) for image in (b, a)]
    np.testing.assert_array_equal(asked.fused, halo.blend_without_halos([b, a], result.final_decision[None], grays))
    assert np.any(asked.fused != result.fused)


def test_focus_map_matches_an_explicit_loop():
    rng = np.random.default_rng(2)
    for stride, shape in [(2, (37, 45)), (8, (40, 33)), (1, (20, 24)), (3, (35, 29))]:
        scores = rng.random(((shape[0] - 16) // stride + 2, (shape[1] - 16) // stride + 2))
        total, count = np.zeros(shape), np.zeros(shape)
        for j in range(scores.shape[0]):
            for i in range(scores.shape[1]):
                y, x = stride * j, stride * i
                if y < shape[0] and x < shape[1]:
                    total[y : y + 16, x : x + 16] += scores[j, i]
                    count[y : y + 16, x : x + 16] += 1
        expected = total / np.maximum(count, 1)
        got = fusion.focus_map(scores, shape, stride, 16)
        np.testing.assert_allclose(got, expected, atol=1e-12)


def test_remove_small_regions_drops_specks_and_fills_holes():
    mask = np.zeros((60, 60), bool)
    mask[:, :30] = True  # big region of ones
    mask[10:13, 10:13] = False  # 9-pixel hole inside it
    mask[40:42, 45:47] = True  # 4-pixel speck in the zeros
    mask[50, 50] = mask[51, 51] = True  # diagonal neighbours: one 8-connected region of 2
    cleaned = fusion.remove_small_regions(mask, min_area=10)
    expected = np.zeros((60, 60), bool)
    expected[:, :30] = True
    np.testing.assert_array_equal(cleaned, expected)
    # A threshold below the speck sizes keeps everything.
    np.testing.assert_array_equal(fusion.remove_small_regions(mask, min_area=2), mask)


def test_keep_largest_regions():
    mask = np.zeros((50, 50), bool)
    mask[:, :20] = True
    mask[5:8, 40:48] = True  # a second, smaller region of ones
    mask[30:35, 5:10] = False  # a hole
    expected = np.zeros((50, 50), bool)
    expected[:, :20] = True
    np.testing.assert_array_equal(fusion.keep_largest_regions(mask), expected)


def test_guided_filter_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    guide, source = rng.random((23, 29)), (rng.random((23, 29)) > 0.5).astype(float)
    radius, eps = 3, 0.1

    def window_mean(values):
        out = np.zeros_like(values)
        for y in range(values.shape[0]):
            for x in range(values.shape[1]):
                out[y, x] = values[
                    max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1
                ].mean()
        return out

    mean_i, mean_p = window_mean(guide), window_mean(source)
    a = (window_mean(guide * source) - mean_i * mean_p) / (window_mean(guide**2) - mean_i**2 + eps)
    b = mean_p - a * mean_i
    expected = window_mean(a) * guide + window_mean(b)
    np.testing.assert_allclose(fusion.guided_filter(guide, source, radius, eps), expected, atol=2e-6)


def test_blend_rounds_half_away_from_zero_and_saturates():
    first = np.array([[10, 11, 255]], np.uint8)
    second = np.array([[11, 12, 250]], np.uint8)
    weights = np.array([[0.5, 0.5, 1.5]])
    # 10.5 -> 11, 11.5 -> 12, 257.5 -> 255
    np.testing.assert_array_equal(fusion.blend(first, second, weights), [[11, 12, 255]])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_round_to_dtype_is_half_away_from_zero_then_saturated(dtype):
    from mfkeras.fusion.blending import round_to_dtype

    info = np.iinfo(dtype)
    edges = [-1e9, info.min - 0.5, -2.5, -0.5, -0.49, 0.0, 0.49, 0.5, 1.5, 2.5, 254.5, 255.5, info.max - 0.5,
             info.max + 0.49, 1e9]
    values = np.concatenate([edges, np.random.default_rng(0).uniform(info.min - 9, info.max + 9, 5000)])
    for kind in (np.float64, np.float32):
        cast = values.astype(kind)
        expected = [min(max(int(np.sign(v)) * int(np.floor(abs(float(v)) + 0.5)), info.min), info.max) for v in cast]
        got = round_to_dtype(cast.copy(), dtype)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, np.array(expected))
    integers = np.array([info.min, -3, 5, 300, info.max], np.int64)  # integer input: saturated only
    np.testing.assert_array_equal(round_to_dtype(integers, dtype), np.clip(integers, info.min, info.max))


def test_three_images_fuse_pairwise_in_sequence(tiny_model):
    images = [_textured((32, 40), seed=s) for s in (4, 5, 6)]
    result = fusion.fuse(images, tiny_model, fusion.FusionOptions(stack_method="sequential"))
    assert len(result.steps) == 2
    first = fusion.fuse(images[:2], tiny_model).fused
    np.testing.assert_array_equal(result.steps[0].fused, first)
    last = fusion.fuse([first, images[2]], tiny_model)
    np.testing.assert_array_equal(result.fused, last.fused)
    expected_index = np.where(last.decision, np.where(result.steps[0].decision, 0, 1), 2)
    np.testing.assert_array_equal(result.source_index, expected_index)


@pytest.mark.parametrize(
    "images, message",
    [
        ([np.zeros((20, 20), np.uint8)], "at least 2 images"),
        ([np.zeros((20, 20), np.uint8), np.zeros((20, 21), np.uint8)], r"\(20, 20\).*\(20, 21\)"),
        ([np.zeros((15, 20), np.uint8)] * 2, "at least 16"),
        ([np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.uint8)], "mix grayscale and colour"),
        ([np.zeros((20, 20, 1), np.uint8), np.zeros((20, 20), np.uint8)], "same shape"),
        ([np.full((20, 20), np.nan, np.float32)] * 2, "NaN"),
        ([np.full((20, 20), 2.0, np.float32)] * 2, r"\[0, 1\]"),
        ([np.zeros((20, 20, 4), np.uint8)] * 2, "shape"),
        ([np.zeros((20, 20), np.int32)] * 2, "dtype"),
    ],
)
def test_bad_inputs_are_named(tiny_model, images, message):
    with pytest.raises(ValueError, match=message):
        fusion.fuse(images, tiny_model)


@pytest.mark.parametrize("band", [1, 2, 4])
def test_decision_boundary_band_matches_a_loop(band):
    rng = np.random.default_rng(band)
    decision = cv2.GaussianBlur(rng.random((23, 31)), (0, 0), 2.0) > 0.5
    decision[:, :3] = True  # a boundary near the image's edge
    expected = band_by_loop(decision, band)
    assert 0 < expected.mean() < 1
    np.testing.assert_array_equal(fusion.decision_boundary_band(decision, band), expected)


def test_soft_band_takes_the_focus_map_near_the_boundary_only(tiny_model):
    a, b = _textured((40, 52, 3), seed=3), _textured((40, 52, 3), seed=4)
    hard = fusion.fuse([a, b], tiny_model, fusion.FusionOptions(soft_band=0))
    soft = fusion.fuse([a, b], tiny_model, fusion.FusionOptions(soft_band=2))
    band = band_by_loop(hard.decision, 2)
    assert 0 < band.mean() < 1
    np.testing.assert_array_equal(soft.decision, hard.decision)
    np.testing.assert_allclose(soft.final_decision[band], hard.focus_map[band], atol=1e-7)
    np.testing.assert_array_equal(soft.final_decision[~band], hard.final_decision[~band])
    # Patch classifiers keep the reference rule: no soft band unless asked.
    np.testing.assert_array_equal(fusion.fuse([a, b], tiny_model).final_decision, hard.final_decision)


@pytest.mark.parametrize(
    "kwargs",
    [{"refine": "blur"}, {"consistency": "majority"}, {"area_ratio": 1.5}, {"guided_eps": 0}, {"inference_dtype": "int8"},
     {"soft_band": -1}, {"soft_band": 2.5}, {"halo_removal": 1}],
)
def test_bad_options_are_named(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs)).split("_")[0]):
        fusion.FusionOptions(**kwargs)


@pytest.fixture(scope="module")
def demo_pair():
    from pathlib import Path

    demo = Path(__file__).resolve().parents[2] / "demo"
    return [_rgb(demo / f"demo_{s}.jpg") for s in "AB"]


# Largest score change by model and precision on the demo pair. The decision network scores
# every pixel from raw grey differences, so its lower-precision scores move more per pixel
# (measured: XLA float32 1.4e-5, bfloat16 0.065), while its decisions hold as well.
SCORE_TOLERANCES = {
    "pixel_decision": {"float32": 5e-5, "float16": 2e-2, "bfloat16": 0.15},
    "liu2017_single_fc": {"float32": 1e-5, "float16": 1e-2, "bfloat16": 5e-2},
}


@pytest.mark.parametrize("name", sorted(SCORE_TOLERANCES))
@pytest.mark.parametrize("inference_dtype, jit_compile", [("float32", True), ("bfloat16", False), ("float16", True)])
def test_precision_and_xla_options_keep_the_fusion(demo_pair, name, inference_dtype, jit_compile):
    """Shipped models on the demo pair: scores close, decisions >= 99.5 % equal."""
    from mfkeras.network import zoo

    model = zoo.load_patch_model(name)
    reference = fusion.fuse(demo_pair, model)
    options = fusion.FusionOptions(inference_dtype=inference_dtype, jit_compile=jit_compile)
    got = fusion.fuse(demo_pair, model, options)
    assert got.score_map.dtype == np.float32
    difference = np.abs(got.score_map - reference.score_map).max()
    assert difference <= SCORE_TOLERANCES[name][inference_dtype]
    if inference_dtype != "float32":
        assert difference > 1e-6  # the network really ran in the lower precision
    if jit_compile:
        from mfkeras.network import precision

        network = precision.compute_network(fusion.as_score_network(model), inference_dtype)
        assert "pair_xla" in network.built_kinds  # the XLA function was used
    assert np.mean(got.decision == reference.decision) >= 0.995
    assert np.abs(got.fused.astype(int) - reference.fused).mean() <= 1.0


def test_stacks_take_the_precision_options(demo_pair):
    from mfkeras.network import zoo

    model = zoo.load_patch_model()
    frames = [demo_pair[0], demo_pair[1], cv2.GaussianBlur(demo_pair[0], (0, 0), 2.0)]
    reference = fusion.fuse(frames, model)
    got = fusion.fuse(frames, model, fusion.FusionOptions(inference_dtype="bfloat16", jit_compile=True))
    assert np.abs(got.score_map - reference.score_map).max() > 1e-6  # computed in bfloat16
    assert np.mean(got.source_index == reference.source_index) >= 0.99
    assert np.abs(got.fused.astype(int) - reference.fused).mean() <= 1.0


def _rgb(path):
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("pair", ["lytro_01", "lytro_09"])
def test_swapping_inputs_inverts_the_decision_map(released_model, pair):
    a = _rgb(shared_path("data", "lytro", f"{pair}_A.jpg"))
    b = _rgb(shared_path("data", "lytro", f"{pair}_B.jpg"))
    forward = fusion.fuse([a, b], released_model)
    backward = fusion.fuse([b, a], released_model)
    # The network is not antisymmetric by construction, so this holds only mostly.
    assert (forward.initial_decision != backward.initial_decision).mean() >= 0.99
    assert (forward.decision != backward.decision).mean() >= 0.99


def test_symmetric_scoring_inverts_exactly(released_model):
    a = _rgb(shared_path("data", "grayscale", "clock_A.png"))
    b = _rgb(shared_path("data", "grayscale", "clock_B.png"))
    symmetric = fusion.FusionOptions(symmetric=True)
    forward = fusion.fuse([a, b], released_model, symmetric)
    backward = fusion.fuse([b, a], released_model, symmetric)
    np.testing.assert_allclose(forward.score_map, 1.0 - backward.score_map, atol=1e-6)
    ties = np.abs(forward.focus_map - 0.5) < 1e-6
    assert np.array_equal(forward.initial_decision[~ties], ~backward.initial_decision[~ties])


def test_complementary_blurred_halves_are_recovered(released_model):
    sharp = cv2.cvtColor(
        cv2.imread(str(shared_path("data", "lytro", "lytro_08_A.jpg"))), cv2.COLOR_BGR2GRAY
    )
    sharp = sharp[100:420, 100:420]
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    half = sharp.shape[1] // 2
    a, b = sharp.copy(), blurred.copy()
    a[:, half:], b[:, half:] = blurred[:, half:], sharp[:, half:]
    result = fusion.fuse([a, b], released_model)
    expected = np.zeros(sharp.shape, bool)
    expected[:, :half] = True
    assert (result.decision == expected).mean() >= 0.98


def test_first_argmax_equals_numpy_including_ties():
    rng = np.random.default_rng(4)
    maps = rng.integers(0, 4, (7, 30, 40)).astype(np.float32)  # many ties
    got = fusion.first_argmax(maps)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.argmax(maps, axis=0))


@pytest.mark.parametrize("radius, eps", [(1, 1e-3), (3, 0.1), (8, 0.1)])
def test_guided_filter_in_row_blocks_equals_the_whole_image(monkeypatch, radius, eps):
    from mfkeras.fusion import decision, row_blocks

    rng = np.random.default_rng(radius)
    guide = cv2.GaussianBlur(rng.random((203, 61)), (0, 0), 2).astype(np.float32)
    source = (rng.random((203, 61)) > 0.5).astype(np.float32)
    whole = decision._guided_filter_block(guide, source, radius, eps)
    monkeypatch.setattr(decision, "_GUIDED_ROWS", 1)  # blocks of 16 radius rows, 8x their reach
    for workers in (1, 3):
        monkeypatch.setattr(row_blocks, "worker_count", lambda pixels: workers)
        blocks = fusion.guided_filter(guide, source, radius, eps)
        assert blocks.dtype == np.float32
        # Box sums accumulate in float64 from each block's first row: equal to float32 rounding
        # (exactly, for the default model's radius 1).
        if radius == 1:
            np.testing.assert_array_equal(blocks, whole)
        np.testing.assert_allclose(blocks, whole, rtol=0, atol=1e-6)
    cut = decision._guided_filter_block(guide[:40], source[:40], radius, eps)  # no rows below row 39
    assert np.abs(cut[39] - whole[39]).max() > 1e-3  # so the blocks do need their reach
