"""The public API: what ``import mfkeras`` offers, and that the light parts load without TensorFlow."""

import json
import subprocess
import sys

import numpy as np
import pytest

import mfkeras
from mfkeras.fusion import options


def _modules_after(statement: str) -> set:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "statement",
    [
        "import mfkeras",
        "from mfkeras import FusionOptions, ModelConfig, presets, read_image, write_image",
        "from mfkeras.fusion import FusionOptions, CONSISTENCY_MODES, REFINE_MODES, STACK_METHODS, "
        "INFERENCE_DTYPES, QUANTIZATIONS, ALIGN_MODELS, ALIGN_METHODS",
        "import mfkeras.io, mfkeras.network.zoo, mfkeras.network.config",
    ],
)
def test_light_imports_load_no_tensorflow(statement):
    loaded = _modules_after(statement)
    assert not {"tensorflow", "keras"} & loaded, sorted({"tensorflow", "keras"} & loaded)


def test_pipeline_loads_without_tensorflow_and_keras_models_load_it():
    loaded = _modules_after("import mfkeras\nmfkeras.fuse")
    assert "mfkeras.fusion.pipeline" in loaded and not {"tensorflow", "keras"} & loaded
    loaded = _modules_after("import mfkeras\nmfkeras.load_model()")
    assert {"tensorflow", "keras"} <= loaded


def test_public_names_are_the_library_objects():
    from mfkeras.fusion.pipeline import fuse
    from mfkeras.io.images import read_image
    from mfkeras.network.config import PRESETS
    from mfkeras.network.zoo import load_patch_model

    assert mfkeras.fuse is fuse and mfkeras.read_image is read_image
    assert mfkeras.load_model is load_patch_model and mfkeras.presets is PRESETS
    assert {"li2018", "liu2017", "liu2017_single_fc"} <= set(mfkeras.presets)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        mfkeras.nothing_here  # noqa: B018


def test_options_reject_values_outside_the_offered_choices():
    for field, choices in [
        ("consistency", options.CONSISTENCY_MODES),
        ("refine", options.REFINE_MODES),
        ("stack_method", options.STACK_METHODS),
        ("stack_scoring", options.STACK_SCORINGS),
        ("inference_dtype", options.INFERENCE_DTYPES),
    ]:
        for choice in choices:
            assert getattr(mfkeras.FusionOptions(**{field: choice}), field) == choice
        with pytest.raises(ValueError, match=f"{field} must be one of"):
            mfkeras.FusionOptions(**{field: "bogus"})


def test_public_image_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    path = tmp_path / "frame.png"
    mfkeras.write_image(str(path), sharp)
    np.testing.assert_array_equal(mfkeras.read_image(str(path)), sharp)


def test_options_from_text_read_each_field_kind():
    parsed = mfkeras.FusionOptions.from_text(
        "stack_scoring=all_pairs,guided_radius=4,guided_eps=0.01,symmetric=true,area_ratio=0.02,refine=dilate,"
        "halo_removal=false"
    )
    expected = mfkeras.FusionOptions(
        stack_scoring="all_pairs", guided_radius=4, guided_eps=0.01, symmetric=True, area_ratio=0.02, refine="dilate",
        halo_removal=False,
    )
    assert parsed == expected and isinstance(parsed.guided_radius, int)
    assert mfkeras.FusionOptions.from_text("") == mfkeras.FusionOptions()
    for text, message in [
        ("no_such_field=1", "FusionOptions field"),
        ("symmetric", "key=value"),
        ("symmetric=maybe", "true or false"),
        ("halo_removal=1", "true or false"),
        ("stack_scoring=round_robin", "stack_scoring must be one of"),
    ]:
        with pytest.raises(ValueError, match=message):
            mfkeras.FusionOptions.from_text(text)
