import numpy as np
import pytest

from mfkeras.network.config import POOL, ModelConfig, get_preset
from mfkeras.network.convert import to_fully_convolutional
from mfkeras.network.model import build_patch_model

from conftest import randomize_weights

VALID_CONFIGS = [
    ModelConfig("valid_two_pools", (8, POOL, 8, POOL), (12,), padding="valid"),
    ModelConfig("valid_one_pool", (8, 8, POOL, 16), (10, 6), padding="valid"),
    ModelConfig("valid_no_fc", (6, POOL, 8), (), padding="valid"),
]
SAME_CONFIGS = ["li2018", "liu2017", "liu2017_single_fc"]


def _random_pair(height, width, seed):
    rng = np.random.default_rng(seed)
    return (
        rng.random((1, height, width, 1), dtype=np.float32),
        rng.random((1, height, width, 1), dtype=np.float32),
    )


@pytest.mark.parametrize("config", VALID_CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("dense", [False, True])
def test_valid_scores_equal_patch_model_on_every_window(config, dense):
    model = randomize_weights(build_patch_model(config), seed=4)
    network = to_fully_convolutional(model, dense=dense)
    height, width = 37, 45
    a, b = _random_pair(height, width, 5)
    scores = network.model([a, b]).numpy()[0, :, :, 0]
    assert scores.shape == network.output_shape_for(height, width)
    windows_a, windows_b, expected_index = [], [], []
    for j in range(scores.shape[0]):
        for i in range(scores.shape[1]):
            y, x = j * network.stride, i * network.stride
            windows_a.append(a[0, y : y + 16, x : x + 16])
            windows_b.append(b[0, y : y + 16, x : x + 16])
            expected_index.append((j, i))
    # Every score has a complete window inside the image.
    assert all(w.shape == (16, 16, 1) for w in windows_a)
    patch_scores = model.predict([np.stack(windows_a), np.stack(windows_b)], verbose=0)[:, 1]
    got = np.array([scores[j, i] for j, i in expected_index])
    assert np.abs(got - patch_scores).max() <= 1e-5
    if dense:
        assert scores.shape == (height - 15, width - 15)


@pytest.mark.parametrize("name", SAME_CONFIGS)
@pytest.mark.parametrize("dense", [False, True])
def test_same_padding_16x16_input_gives_patch_output(name, dense):
    model = randomize_weights(build_patch_model(name), seed=6, scale=0.05)
    network = to_fully_convolutional(model, dense=dense)
    a, b = _random_pair(16, 16, 7)
    expected = model.predict([a, b], verbose=0)[0, 1]
    got = network.model([a, b]).numpy()[0, 0, 0, 0]
    assert abs(got - expected) <= 1e-5


@pytest.mark.parametrize("name", SAME_CONFIGS)
def test_dense_map_subsampled_at_the_stride_equals_strided_map(name):
    model = randomize_weights(build_patch_model(name), seed=8, scale=0.05)
    strided = to_fully_convolutional(model)
    dense = to_fully_convolutional(model, dense=True)
    a, b = _random_pair(41, 52, 9)
    coarse = strided.model([a, b]).numpy()[0, :, :, 0]
    fine = dense.model([a, b]).numpy()[0, :, :, 0]
    assert fine.shape == dense.output_shape_for(41, 52)
    sub = fine[:: strided.stride, :: strided.stride]
    rows, cols = min(sub.shape[0], coarse.shape[0]), min(sub.shape[1], coarse.shape[1])
    assert rows >= coarse.shape[0] - 1 and cols >= coarse.shape[1] - 1
    assert np.abs(sub[:rows, :cols] - coarse[:rows, :cols]).max() <= 1e-5


def test_geometry_is_recorded():
    model = build_patch_model("li2018")
    assert to_fully_convolutional(model).stride == 8
    assert to_fully_convolutional(model, dense=True).stride == 1
    liu = to_fully_convolutional(build_patch_model("liu2017"))
    # conv halos: 1 + 1 pixels at full resolution, 1 pooled pixel = 2 pixels after the pool.
    assert liu.receptive_field == 4
    assert liu.output_shape_for(512, 512) == (249, 249)
    assert liu.patch_size == 16


def test_conversion_copies_weights_instead_of_sharing_them():
    model = randomize_weights(build_patch_model("liu2017_single_fc"), seed=10, scale=0.05)
    network = to_fully_convolutional(model)
    a, b = _random_pair(20, 20, 11)
    before = network.model([a, b]).numpy()
    for variable in model.weights:
        variable.assign(np.zeros(variable.shape, "float32"))
    np.testing.assert_array_equal(network.model([a, b]).numpy(), before)


@pytest.mark.parametrize("dilation", [1, 3])
@pytest.mark.parametrize("filters", [1, 2])
def test_tap_sum_convolution_equals_conv2d(dilation, filters):
    import keras

    from mfkeras.network.convert import TapSumConv2D

    rng = np.random.default_rng(dilation + filters)
    inputs = rng.standard_normal((2, 30, 27, 6)).astype(np.float32)
    kernel = rng.standard_normal((4, 4, 6, filters)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    layers = [
        cls(filters, 4, dilation_rate=dilation, activation="sigmoid") for cls in (keras.layers.Conv2D, TapSumConv2D)
    ]
    outputs = []
    for layer in layers:
        layer.build(inputs.shape)
        layer.set_weights([kernel, bias])
        outputs.append(layer(inputs).numpy())
    assert outputs[1].shape == outputs[0].shape == (2, 30 - 3 * dilation, 27 - 3 * dilation, filters)
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-5)
    # Serialisable like any Keras layer.
    clone = TapSumConv2D.from_config(layers[1].get_config())
    assert clone.dilation_rate == (dilation, dilation) and clone.filters == filters


def test_score_layer_is_close_to_float64_at_full_depth():
    """The 8x8x512 -> 1 score layer, summed tap by tap, stays near float64 (oneDNN Conv2D: 1.2e-5)."""
    import tensorflow as tf

    from mfkeras.network.convert import TapSumConv2D

    rng = np.random.default_rng(0)
    features = rng.random((1, 40, 40, 512), dtype=np.float32)  # non-negative, as after ReLU
    kernel = (rng.standard_normal((8, 8, 512, 1)) * 0.02).astype(np.float32)
    layer = TapSumConv2D(1, 8)
    layer.build(features.shape)
    layer.set_weights([kernel, np.zeros(1, np.float32)])
    exact = tf.nn.conv2d(features.astype(np.float64), kernel.astype(np.float64), 1, "VALID").numpy()
    assert np.abs(layer(features).numpy() - exact).max() <= 2e-6 * np.abs(exact).max()


def test_small_window_heads_use_tap_sums():
    import keras

    from mfkeras.network.convert import TapSumConv2D

    network = to_fully_convolutional(build_patch_model(get_preset("liu2017_single_fc")))
    convs = [layer for layer in network.head.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [type(layer) for layer in convs] == [TapSumConv2D]
    network = to_fully_convolutional(build_patch_model(get_preset("liu2017")))
    convs = [layer for layer in network.head.layers if isinstance(layer, keras.layers.Conv2D)]
    assert not any(isinstance(layer, TapSumConv2D) for layer in convs)  # 64 x 256 maps: direct


def test_tap_sum_convolution_rejects_what_it_cannot_compute():
    from mfkeras.network.convert import TapSumConv2D

    with pytest.raises(ValueError, match="'valid' padding, stride 1"):
        TapSumConv2D(1, 3, padding="same")
    with pytest.raises(ValueError, match="'valid' padding, stride 1"):
        TapSumConv2D(1, 3, strides=2)
