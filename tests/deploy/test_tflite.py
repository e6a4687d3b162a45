"""TFLite conversion of the score-map network: parity per quantization, dynamic sizes, tiling."""

import numpy as np
import pytest

from mfkeras.deploy import saved_model as export
from mfkeras import fusion
from mfkeras.fusion import inference
from mfkeras.deploy import tflite
from mfkeras.network.config import POOL, ModelConfig
from mfkeras.network.model import build_patch_model

from conftest import randomize_weights, shared_path

TINY = ModelConfig("tiny", (4, POOL, 8), (8,))
# No hidden FC layer: the score layer is a window convolution with one output (TapSumConv2D).
TINY_SINGLE_FC = ModelConfig("tiny_single_fc", (4, POOL, 8), ())
# Score bounds vs Keras for the random tiny model; the Lytro test checks decisions.
TOLERANCE = {"float32": 1e-4, "float16": 5e-3, "dynamic_int8": 5e-2}


@pytest.fixture(scope="module")
def tiny_model():
    return randomize_weights(build_patch_model(TINY), seed=21, scale=0.3)


@pytest.fixture(
    scope="module",
    params=[(TINY, False), (TINY, True), (TINY_SINGLE_FC, False), (TINY_SINGLE_FC, True)],
    ids=["strided", "dense", "tap_sum_strided", "tap_sum_dense"],
)
def network(request):
    config, dense = request.param
    model = randomize_weights(build_patch_model(config), seed=21, scale=0.3)
    return fusion.as_score_network(model, dense=dense)


def _grays(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.random((2, *shape)).astype(np.float32)


@pytest.mark.parametrize("quantization", tflite.QUANTIZATIONS)
def test_dynamic_model_matches_keras_at_several_sizes(network, quantization):
    interpreter = tflite.make_interpreter(tflite.convert(network, quantization))
    for shape in [(45, 61), (32, 32), (70, 41)]:  # resized in place, larger and smaller
        gray_a, gray_b = _grays(shape, seed=shape[0])
        expected = inference.score_map(network, gray_a, gray_b)
        got = tflite.score_map(interpreter, gray_a, gray_b)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=TOLERANCE[quantization])


@pytest.mark.parametrize("shape", [(20, 27), (64, 64), (75, 61), (130, 97)])
def test_tiles_stitch_to_the_untiled_map(network, shape):
    """The masked fixed-tile function, tiled on the host, equals the whole-image network."""
    tile = tflite.tile_function(network, 48)
    gray_a, gray_b = _grays(shape, seed=3)
    got = tflite.tiled_scores(
        lambda a, b, valid: tile(a, b, valid)["score_map"].numpy(), network, gray_a, gray_b, 48
    )
    np.testing.assert_allclose(got, inference.score_map(network, gray_a, gray_b), atol=1e-5)


@pytest.mark.parametrize("quantization", tflite.QUANTIZATIONS)
def test_fixed_tile_model_matches_keras(tiny_model, quantization):
    network = fusion.as_score_network(tiny_model)
    interpreter = tflite.make_interpreter(tflite.convert(network, quantization, tile_size=48))
    details = interpreter.get_input_details()
    assert all(list(d["shape"]) == [1, 48, 48, 1] and -1 not in d["shape_signature"] for d in details)
    gray_a, gray_b = _grays((75, 130), seed=4)
    got = tflite.tiled_score_map(interpreter, network, gray_a, gray_b)
    expected = inference.score_map(network, gray_a, gray_b)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE[quantization])


def test_interpreter_prefers_litert():
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        assert tflite.interpreter_package() == "tensorflow"
    else:
        assert tflite.interpreter_package() == "ai_edge_litert"


def test_bad_arguments_are_rejected(tiny_model):
    network = fusion.as_score_network(tiny_model)
    with pytest.raises(ValueError, match="quantization must be one of"):
        tflite.convert(network, "int4")
    with pytest.raises(ValueError, match="tile_size must be a multiple of 2"):
        tflite.convert(network, "float32", tile_size=33)
    with pytest.raises(ValueError, match="at least 32"):
        tflite.tile_function(network, 16)
    with pytest.raises(TypeError, match="ScoreNetwork"):
        tflite.convert(tiny_model, "float32")
    with pytest.raises(ValueError, match="same shape|one shape"):
        tflite.tiled_scores(None, network, np.zeros((20, 20)), np.zeros((20, 21)), 32)


@pytest.fixture(scope="module")
def lytro_crops():
    """256 x 320 gray crops of two Lytro pairs (the full 20 pairs are in the README figures)."""
    from mfkeras.io import images

    crops = []
    for name in ("03", "12"):
        pair = [images.read_image(str(shared_path("data", "lytro", f"lytro_{name}_{s}.jpg"))) for s in "AB"]
        crops.append([fusion.to_gray(fusion.to_unit_range(x[130:386, 90:410])) for x in pair])
    return crops


@pytest.fixture(scope="module", params=["shipped_default", "released"])
def lytro_network(request):
    """The shipped default model and the authors' released weights, as score networks."""
    if request.param == "released":
        return fusion.as_score_network(request.getfixturevalue("released_model"))
    from mfkeras.network import zoo

    return fusion.as_score_network(zoo.load_patch_model())


@pytest.fixture(scope="module")
def lytro_references(lytro_network, lytro_crops):
    """Keras float32 scores (the library's) and near-exact float64 scores of each crop."""
    exact = export.score_function(lytro_network, "float64")
    return [
        (
            inference.score_map(lytro_network, a, b),
            exact(a[None, ..., None], b[None, ..., None]).numpy()[0, ..., 0],
        )
        for a, b in lytro_crops
    ]


def _least_agreement(network, quantization: str) -> float:
    """The decision agreement a conversion must keep: 99 %, except int8 weights of the 12-channel
    per-pixel default, which the README documents as missing that bar (not shipped; ~93-96 %)."""
    per_pixel = network.stride == 1 and network.patch_size == 1
    return 0.9 if (per_pixel and quantization == "dynamic_int8") else 0.99


@pytest.mark.slow
@pytest.mark.parametrize("quantization", tflite.QUANTIZATIONS)
def test_tflite_keeps_scores_and_decisions_on_lytro(lytro_network, lytro_crops, lytro_references, quantization):
    network = lytro_network
    interpreter = tflite.make_interpreter(tflite.convert(network, quantization))
    for (gray_a, gray_b), (keras_scores, exact_scores) in zip(lytro_crops, lytro_references):
        got = tflite.score_map(interpreter, gray_a, gray_b)
        if quantization == "float32":
            assert np.abs(got - keras_scores).max() <= 1e-4
            assert np.abs(got - exact_scores).max() <= 1e-4
            # The tap-summed score layer keeps Keras itself close to the exact network.
            assert np.abs(keras_scores - exact_scores).max() <= 2e-5
        focus = [
            fusion.focus_map(s, gray_a.shape, network.stride, network.patch_size) for s in (got, keras_scores)
        ]
        assert np.mean((focus[0] > 0.5) == (focus[1] > 0.5)) >= _least_agreement(network, quantization)


def test_decision_branch_is_traced_as_a_sum_of_per_layer_mixes_with_the_same_features():
    from mfkeras.network.decision_config import DecisionConfig
    from mfkeras.network.decision_model import as_decision_network, build_decision_model

    config = DecisionConfig(name="tiny_decision", widths=(3, 4, 5), dilations=(1, 2, 3), feature_channels=7,
                            head_units=4)
    network = as_decision_network(randomize_weights(build_decision_model(config), seed=5, scale=0.5))
    image = np.random.default_rng(2).random((1, 30, 37, 1)).astype(np.float32)
    expected = np.asarray(network.branch(image, training=False))
    assert expected.max() > 0  # the relu leaves features to compare
    np.testing.assert_allclose(np.asarray(tflite.traced_branch(network)(image)), expected, atol=1e-5)
    # The converted pair model never holds the concatenated layer outputs (3 + 4 + 5 channels).
    interpreter = tflite.make_interpreter(tflite.convert(network, "float32"))
    channels = {int(detail["shape"][-1]) for detail in interpreter.get_tensor_details() if len(detail["shape"]) == 4}
    assert sum(config.widths) not in channels and {3, 4, 5, 7} <= channels
    gray_a, gray_b = _grays((41, 33), seed=8)
    np.testing.assert_allclose(tflite.score_map(interpreter, gray_a, gray_b),
                               inference.score_map(network, gray_a, gray_b), atol=1e-5)
