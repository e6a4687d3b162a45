import pytest

from mfkeras.network.config import POOL, PRESETS, ModelConfig, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name):
    config = PRESETS[name]
    assert ModelConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "name, pools, feature_size, channels",
    [("li2018", 3, 2, 256), ("liu2017", 1, 8, 256), ("liu2017_single_fc", 1, 8, 256)],
)
def test_preset_geometry(name, pools, feature_size, channels):
    config = get_preset(name)
    assert config.num_pools == pools
    assert config.stride == 2**pools
    assert config.feature_size == feature_size
    assert config.feature_channels == channels


def test_valid_padding_geometry():
    config = ModelConfig("v", (8, POOL, 8, POOL), (4,), padding="valid")
    # 16 -> conv 14 -> pool 7 -> conv 5 -> pool 2
    assert config.feature_size == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"padding": "full"}, "padding"),
        ({"branch_layers": (8, "avg")}, "branch_layers"),
        ({"branch_layers": (POOL,)}, "at least one convolution"),
        ({"fc_units": (0,)}, "fc_units"),
        ({"branch_layers": (8, 8, 8, 8, 8, 8, 8, 8), "padding": "valid"}, "too small"),
    ],
)
def test_invalid_configs_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig("bad", **kwargs)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="li2018"):
        get_preset("vgg")
