"""The per-pixel decision network: config, build, geometry, conversion and save/load."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from mfkeras.network import convert
from mfkeras.network.decision_config import DECISION_PRESETS, DecisionConfig, DecisionGeometry
from mfkeras.network.decision_model import (
    DecisionNetwork,
    build_decision_model,
    decision_config_from_model,
    is_decision_model,
)
from mfkeras.network.model import build_patch_model

TINY = DecisionConfig(name="tiny", widths=(4, 5, 4), dilations=(1, 2, 3), feature_channels=3, head_units=4)


def _randomised(config, seed=0):
    model = build_decision_model(config)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def _predict(model, a, b):
    return model.predict({"image_a": a[None, ..., None], "image_b": b[None, ..., None]}, verbose=0)[0, ..., 0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"widths": (4, 4), "dilations": (1,)}, "equal length"),
        ({"widths": (), "dilations": ()}, "non-empty"),
        ({"widths": (0,), "dilations": (1,)}, "positive"),
        ({"feature_channels": 0}, "feature_channels"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DecisionConfig(name="bad", **kwargs)


def test_config_round_trips_through_json():
    config = DECISION_PRESETS["pixel_decision"]
    assert DecisionConfig.from_json(config.to_json()) == config


def test_flops_match_the_layer_shapes():
    # Independent count: every Conv2D's k*k*Cin*Cout per pixel, the branch twice.
    model = build_decision_model(TINY)
    per_pixel = 0
    for sub, copies in (("branch", 2), ("head", 1)):
        for layer in model.get_layer(sub).layers:
            if isinstance(layer, keras.layers.Conv2D):
                kernel = layer.get_weights()[0]
                per_pixel += copies * kernel.size
    assert TINY.flops(30, 20) == 2 * 30 * 20 * per_pixel


def test_default_preset_fits_the_cost_budget():
    assert DECISION_PRESETS["pixel_decision"].flops(520, 520) <= 10e9


def test_output_is_a_probability_per_pixel():
    model = _randomised(TINY)
    rng = np.random.default_rng(1)
    a, b = rng.random((23, 31), np.float32), rng.random((23, 31), np.float32)
    scores = _predict(model, a, b)
    assert scores.shape == (23, 31)
    assert np.all((scores >= 0) & (scores <= 1))


def test_receptive_field_is_exactly_the_sum_of_dilations():
    model = _randomised(TINY)
    halo = TINY.receptive_field  # 6
    rng = np.random.default_rng(2)
    a, b = rng.random((41, 41), np.float32), rng.random((41, 41), np.float32)
    base = _predict(model, a, b)
    changed = a.copy()
    changed[20, 20] += 0.5
    moved = np.abs(_predict(model, changed, b) - base) > 0
    rows, cols = np.nonzero(moved)
    assert rows.min() == 20 - halo and rows.max() == 20 + halo
    assert cols.min() == 20 - halo and cols.max() == 20 + halo


def test_config_is_recovered_from_the_model():
    model = build_decision_model(TINY)
    assert decision_config_from_model(model) == TINY
    assert is_decision_model(model)
    assert not is_decision_model(build_patch_model("liu2017"))


def test_as_score_network_wraps_a_decision_model_once():
    model = build_decision_model(TINY)
    network = convert.as_score_network(model)
    assert isinstance(network, DecisionNetwork)
    assert convert.as_score_network(model, dense=True) is network
    assert (network.stride, network.patch_size, network.receptive_field) == (1, 1, 6)
    assert network.output_shape_for(17, 9) == (17, 9)
    assert DecisionGeometry(TINY).output_shape_for(17, 9) == (17, 9)


def test_stack_head_split_equals_the_head():
    model = _randomised(TINY, seed=3)
    network = convert.as_score_network(model)
    stack_head = convert.to_stack_head(network)
    rng = np.random.default_rng(4)
    fa = rng.random((1, 9, 11, TINY.feature_channels), np.float32)
    fb = rng.random((1, 9, 11, TINY.feature_channels), np.float32)
    expected = network.head.predict([fa, fb], verbose=0)
    pa = stack_head.projector.predict(fa, verbose=0)
    pb = stack_head.projector.predict(fb, verbose=0)
    units = stack_head.units
    got = stack_head.tail.predict(pa[..., :units] + pb[..., units:] + stack_head.bias, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_saved_model_loads_with_plain_keras(tmp_path):
    model = _randomised(TINY, seed=5)
    path = tmp_path / "decision_model.keras"
    model.save(path)
    rng = np.random.default_rng(6)
    a, b = rng.random((15, 13), np.float32), rng.random((15, 13), np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    script = (
        "import sys, numpy as np, keras; "
        "assert 'mfkeras' not in sys.modules; "
        f"m = keras.models.load_model(r'{path}', compile=False); "
        f"a = np.load(r'{tmp_path / 'a.npy'}'); b = np.load(r'{tmp_path / 'b.npy'}'); "
        "s = m.predict({'image_a': a[None, ..., None], 'image_b': b[None, ..., None]}, verbose=0); "
        f"np.save(r'{tmp_path / 's.npy'}', s[0, ..., 0]); "
        "assert 'mfkeras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), _predict(model, a, b), atol=1e-6)
