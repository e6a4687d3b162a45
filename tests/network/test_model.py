import keras
import numpy as np
import pytest

from mfkeras.network.config import POOL, PRESETS, ModelConfig
from mfkeras.network.model import BRANCH_NAME, build_patch_model, config_from_model

from conftest import randomize_weights


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_shapes_and_config_recovery(name):
    model = build_patch_model(name)
    assert [tuple(i.shape) for i in model.inputs] == [(None, 16, 16, 1)] * 2
    assert [i.name for i in model.inputs] == ["patch_a", "patch_b"]
    assert tuple(model.output.shape) == (None, 2)
    assert config_from_model(model) == PRESETS[name]


def test_li2018_layout():
    branch = build_patch_model("li2018").get_layer(BRANCH_NAME)
    convs = [layer.filters for layer in branch.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [64, 64, 128, 128, 256]
    assert tuple(branch.output.shape) == (None, 2, 2, 256)


def test_branch_weights_are_shared():
    model = randomize_weights(build_patch_model(ModelConfig("tiny", (4, POOL, 4), (8,))))
    branch = model.get_layer(BRANCH_NAME)
    # One branch sub-model: its variables are the only convolution variables of the model.
    conv_vars = [v for v in model.weights if "conv" in v.path]
    assert {id(v) for v in conv_vars} == {id(v) for v in branch.weights}
    rng = np.random.default_rng(1)
    a = rng.random((3, 16, 16, 1), dtype=np.float32)
    b = rng.random((3, 16, 16, 1), dtype=np.float32)
    before_ab = model.predict([a, b], verbose=0)
    before_ba = model.predict([b, a], verbose=0)
    kernel = branch.get_layer("conv1").kernel
    kernel.assign(kernel.numpy() * 3.0)
    after_ab = model.predict([a, b], verbose=0)
    after_ba = model.predict([b, a], verbose=0)
    # Changing the one kernel changes the outputs for both input orders.
    assert np.abs(after_ab - before_ab).max() > 1e-4
    assert np.abs(after_ba - before_ba).max() > 1e-4


def test_outputs_are_probabilities():
    model = randomize_weights(build_patch_model("liu2017_single_fc"), scale=0.05)
    rng = np.random.default_rng(2)
    x = rng.random((4, 16, 16, 1), dtype=np.float32)
    y = model.predict([x, x[::-1]], verbose=0)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
    assert (y >= 0).all()


def test_save_and_reload_round_trip(tmp_path):
    model = randomize_weights(build_patch_model("li2018"), scale=0.05)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    rng = np.random.default_rng(3)
    x = rng.random((2, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(
        loaded.predict([x, x[::-1]], verbose=0), model.predict([x, x[::-1]], verbose=0), atol=1e-6
    )
    assert config_from_model(loaded) == PRESETS["li2018"]


def test_weight_decay_regularises_kernels_only():
    model = build_patch_model("li2018", weight_decay=5e-4)
    # 5 convolutions + 3 dense kernels, no biases.
    assert len(model.losses) == 8


def test_config_from_foreign_model_is_a_clear_error():
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="branch"):
        config_from_model(model)
